"""The latency model: every unit level priced, cached per machine and model, invalidated by what changes it."""

import torch

from autofr import ReuseSchedule
from autofr.cost import measure_cost
from autofr.evaluation import EvalProtocol
from autofr.models import load_pipeline
from autofr.reuse import discover_units
from autofr.reuse.units import LEVELS
from autofr.search.speed import build_speed_model

from ..conftest import save_tiny_digit_pipeline


def speed_model(pipe, units, batch, cache_dir, kind="latency"):
    cost = measure_cost(pipe, units)
    protocol = EvalProtocol(num_samples=2, seed=0, batch_size=2, num_inference_steps=8, num_classes=10)
    return build_speed_model(kind, pipe.denoiser, units, cost, 8, batch, cache_dir, pipe=pipe, protocol=protocol)


def test_every_level_is_priced_and_the_calibration_is_cached_until_batch_or_units_change(tmp_path):
    torch.set_num_threads(1)
    save_tiny_digit_pipeline(tmp_path / "tiny")
    pipe = load_pipeline(str(tmp_path / "tiny"))
    units = discover_units(pipe, levels=LEVELS)
    model = speed_model(pipe, units, 2, tmp_path)
    assert set(model.unit_seconds) == {u.name for u in units}
    assert model.step_overhead_seconds >= 0 and model.run_overhead_seconds >= 0
    full = ReuseSchedule.full_compute(pipe, 8)
    stack = ReuseSchedule.uniform(pipe, 8, 2, levels=("stack",))
    frdiff = ReuseSchedule.uniform(pipe, 8, 2)
    assert model.predicted_speedup(full) == 1.0
    assert model.predicted_speedup(stack) > 1.2  # four of eight steps run only the embedders and the head
    assert 1.0 < model.predicted_speedup(frdiff) < model.predicted_speedup(stack)
    cached = list((tmp_path / "latency").glob("*.json"))
    assert len(cached) == 1
    again = speed_model(pipe, units, 2, tmp_path)  # read back, not measured again
    assert again.unit_seconds == model.unit_seconds and len(list((tmp_path / "latency").glob("*.json"))) == 1
    speed_model(pipe, units, 4, tmp_path)  # another batch: another calibration
    speed_model(pipe, [u for u in units if u.level == "sublayer"], 2, tmp_path)  # other units: another one
    assert len(list((tmp_path / "latency").glob("*.json"))) == 3
    macs = speed_model(pipe, units, 2, tmp_path, kind="macs")
    assert macs.forward_seconds is None and macs.predicted_speedup(stack) > 1.5
