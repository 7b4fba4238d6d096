import json

import pytest
import torch

import autofr
from autofr import Mixing, ReuseSchedule, ScheduleError, UnitSchedule, UnsupportedModelError
from autofr.reuse import discover_units, model_fingerprint

from .conftest import TinyPipeline, build_model


def test_units_are_discovered_per_family():
    kinds = {
        family: {u.kind for u in discover_units(build_model(family))}
        for family in ("unet", "unet_cond", "dit", "pixart")
    }
    assert kinds["unet"] == {"resnet", "attention"}
    assert kinds["unet_cond"] == {"resnet", "transformer"}
    assert kinds["dit"] == {"self_attention", "feed_forward"}
    assert kinds["pixart"] == {"self_attention", "cross_attention", "feed_forward"}
    names = [u.name for u in discover_units(build_model("dit"))]
    assert names[:2] == ["transformer_blocks.0.attn1", "transformer_blocks.0.ff"]


def test_unsupported_model_names_the_supported_classes():
    with pytest.raises(UnsupportedModelError, match="UNet2DModel, UNet2DConditionModel, DiTTransformer2DModel"):
        discover_units(torch.nn.Linear(2, 2))


def test_fingerprint_depends_on_architecture_not_weights():
    a, b = build_model("unet"), build_model("unet")
    torch.nn.init.zeros_(b.conv_in.weight)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(build_model("unet_cond"))


def test_uniform_is_frdiff_keyframes_and_mixing_rule():
    pipe = TinyPipeline("unet")
    schedule = ReuseSchedule.uniform(pipe, 50, interval=3, mixing=True)
    plan = schedule.plan([u.name for u in discover_units(pipe)])
    assert [i for i in range(50) if plan.full_keyframe[i]] == list(range(0, 50, 3))
    for i in range(50):
        assert plan.mixing_weight[i] == pytest.approx(min(1, max(0, (30 * (i / 50 - 0.5) + 2) / 4)))
        assert plan.run[i] == (i % 3 == 0 or plan.mixing_weight[i] > 0)
    assert schedule.scheduler == "DDIMScheduler"


def test_json_round_trip(tmp_path):
    pipe = TinyPipeline("dit")
    schedule = ReuseSchedule.uniform(
        pipe, 20, interval=2, mixing=Mixing(0.4, 25.0), provenance={"study": "s", "trial": 3}
    )
    names = list(schedule.units)
    schedule.units[names[0]] = UnitSchedule(steps=(0, 3, 9))
    schedule.units[names[1]] = UnitSchedule(interval=4, offset=2)
    path = schedule.to_json(tmp_path / "out" / "schedule.json")
    loaded = ReuseSchedule.from_json(path)
    assert loaded == schedule
    data = json.loads(path.read_text())
    assert data["format_version"] == 2 and data["model"]["class_name"] == "DiTTransformer2DModel"
    assert data["units"][names[0]] == {"steps": [0, 3, 9]}
    # the file applies in one line
    autofr.apply_schedule(pipe, str(path))
    pipe(num_inference_steps=20)


def _write(tmp_path, data) -> str:
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return str(path)


@pytest.fixture
def valid(tmp_path):
    pipe = TinyPipeline("unet")
    return pipe, ReuseSchedule.uniform(pipe, 10, interval=2).to_dict()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: "{not json", "not valid JSON"),
        (lambda d: d | {"format_version": 99}, "format_version 99 is not supported"),
        (lambda d: {k: v for k, v in d.items() if k != "model"}, "missing field 'model'"),
        (lambda d: d | {"num_inference_steps": 0}, "num_inference_steps 0"),
        (lambda d: d | {"num_inference_steps": "ten"}, "num_inference_steps"),
        (lambda d: d | {"units": {"down_blocks.0.resnets.0": {"interval": 0}}}, "interval 0"),
        (lambda d: d | {"units": {"down_blocks.0.resnets.0": {"interval": 2, "offset": 5}}}, "offset 5"),
        (lambda d: d | {"units": {"down_blocks.0.resnets.0": {"steps": [0, 12]}}}, "steps must be integers"),
        (lambda d: d | {"mixing": {"enabled": True, "bias": 0.5, "slope": -1}}, "slope -1"),
        (lambda d: d | {"mixing": {"enabled": True, "bias": float("nan"), "slope": 30}}, "bias nan"),
        (lambda d: d | {"mixing": {"enabled": True}}, "missing field 'bias'"),
    ],
)
def test_bad_files_raise_one_line_schedule_errors(tmp_path, valid, mutate, message):
    pipe, data = valid
    with pytest.raises(ScheduleError, match=message) as error:
        autofr.apply_schedule(pipe, _write(tmp_path, mutate(data)))
    assert "\n" not in str(error.value)
    assert not hasattr(pipe.unet, "_diffusers_hook"), "nothing may be applied half-way"


def test_schedule_for_another_model_is_refused(tmp_path, valid):
    pipe, data = valid
    cases = [
        (
            data | {"model": {"class_name": "DiTTransformer2DModel", "fingerprint": "x"}},
            "is for a DiTTransformer2DModel",
        ),
        (data | {"units": {"no.such.unit": {"interval": 2}}}, "not in this model"),
        (
            data | {"model": data["model"] | {"fingerprint": "0123456789abcdef"}},
            "fingerprint 0123456789abcdef does not match",
        ),
    ]
    for bad, message in cases:
        with pytest.raises(ScheduleError, match=message):
            autofr.apply_schedule(pipe, _write(tmp_path, bad))
        assert not hasattr(pipe.unet, "_diffusers_hook")
    with pytest.raises(ScheduleError, match="does not exist"):
        autofr.apply_schedule(pipe, str(tmp_path / "missing.json"))


def test_to_json_is_atomic(tmp_path, valid, monkeypatch):
    pipe, data = valid
    schedule = ReuseSchedule.from_dict(data)
    path = tmp_path / "schedule.json"
    path.write_text("previous")
    import os

    monkeypatch.setattr(os, "replace", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk full")))
    with pytest.raises(RuntimeError):
        schedule.to_json(path)
    assert path.read_text() == "previous"
    assert list(tmp_path.iterdir()) == [path]
