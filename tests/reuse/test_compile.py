"""Schedules under torch.compile: no graph break, no recompilation in the second run, eager's results.

Dynamo's counters are read after each sampling run of a tiny Flux-family model (bare loop) and a tiny
UNet (pipeline with its scheduler). One case per model compiles with inductor (the C compiler);
the others use the ``eager`` backend, which goes through Dynamo's capture, guards and recompiles the
same way and keeps the suite fast.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters
from torch.utils._python_dispatch import TorchDispatchMode

import autofr
from autofr import ReuseSchedule
from autofr.errors import ScheduleError

from ..conftest import TinyPipeline
from .test_levels import STEPS, run, tiny_flux


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def dynamo_counts() -> tuple[int, int]:
    """(graph breaks, graphs compiled) since the counters were cleared; then clears them."""
    breaks = sum(counters["graph_break"].values())
    graphs = counters["stats"]["unique_graphs"]
    counters.clear()
    return breaks, graphs


def compile_model(model, how: str, backend: str) -> None:
    if how == "regional":
        model.compile_repeated_blocks(fullgraph=True, backend=backend)
    else:
        model.compile(backend=backend)


@pytest.mark.parametrize(
    "level, how, order, backend",
    [
        ("sublayer", "regional", "apply, then compile", "inductor"),
        ("block", "regional", "compile, then apply", "eager"),
        ("stack", "regional", "apply, then compile", "eager"),
        ("sublayer", "whole", "compile, then apply", "eager"),
        ("block", "whole", "apply, then compile", "eager"),
    ],
)
def test_a_compiled_schedule_on_flux_has_no_graph_break_and_compiles_nothing_in_its_second_run(
    level, how, order, backend
):
    model, inputs = tiny_flux()
    schedule = ReuseSchedule.uniform(model, STEPS, interval=2, levels=(level,))
    autofr.apply_schedule(model, schedule)
    eager = run(model, inputs)
    autofr.remove_schedule(model)

    if order == "apply, then compile":
        autofr.apply_schedule(model, schedule)
        compile_model(model, how, backend)
    else:
        compile_model(model, how, backend)
        autofr.apply_schedule(model, schedule)
    first = run(model, inputs)
    breaks, graphs = dynamo_counts()
    assert breaks == 0 and graphs >= 1  # fullgraph=True on the blocks would have raised at a break
    if how == "whole":  # the embedders, the output head and the work of both block classes: all compiled
        assert graphs >= 5
    second = run(model, inputs)
    assert dynamo_counts() == (0, 0)  # nothing traced again: no step value reached compiled code
    torch.testing.assert_close(first, eager, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(second, eager, rtol=1e-3, atol=1e-4)
    accounting = autofr.get_accounting(model)
    assert sum(count.reused for count in accounting.units.values()) > 0  # it really reused, compiled


def test_a_compiled_schedule_on_a_unet_pipeline_has_no_graph_break_and_compiles_nothing_in_its_second_run():
    pipe = TinyPipeline("unet_cond")
    schedule = ReuseSchedule.uniform(pipe, 6, interval=2)
    autofr.apply_schedule(pipe, schedule)
    eager = pipe(num_inference_steps=6)
    pipe.unet.compile_repeated_blocks(fullgraph=True)  # inductor
    first = pipe(num_inference_steps=6)
    breaks, graphs = dynamo_counts()
    assert breaks == 0 and graphs >= 1
    second = pipe(num_inference_steps=6)
    assert dynamo_counts() == (0, 0)
    torch.testing.assert_close(first, eager, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(second, eager, rtol=1e-3, atol=1e-4)
    assert sum(count.reused for count in autofr.get_accounting(pipe).units.values()) > 0


def test_a_new_schedule_on_a_compiled_model_compiles_nothing_new():
    model, inputs = tiny_flux()
    every_third = ReuseSchedule.uniform(model, STEPS, interval=3, levels=("block",))
    autofr.apply_schedule(model, every_third)
    eager = run(model, inputs)
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=("block",)))
    model.compile_repeated_blocks(fullgraph=True, backend="eager")
    run(model, inputs)
    dynamo_counts()
    autofr.apply_schedule(model, every_third)  # replaces the schedule; the model stays compiled
    compiled = run(model, inputs)
    assert dynamo_counts() == (0, 0)
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-4)


def test_removing_a_schedule_leaves_the_model_compiled_as_asked_and_computing_as_before():
    model, inputs = tiny_flux()
    full = run(model, inputs)
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=("block",)))
    model.compile_repeated_blocks(fullgraph=True, backend="eager")
    assert all(block._compiled_call_impl is None for block in model.transformer_blocks)  # decisions stay eager
    autofr.remove_schedule(model)
    assert all(block._compiled_call_impl is not None for block in model.transformer_blocks)
    assert "compile" not in model.transformer_blocks[0].__dict__
    torch.testing.assert_close(run(model, inputs), full, rtol=1e-3, atol=1e-4)


def test_a_torch_compile_wrapper_is_refused_with_what_to_do_instead():
    model, _ = tiny_flux()
    schedule = ReuseSchedule.uniform(model, STEPS, interval=2)
    with pytest.raises(ScheduleError, match="model.compile"):
        autofr.apply_schedule(torch.compile(model), schedule)


class HostReads(TorchDispatchMode):
    """Counts the ops that read a tensor's value on the host (a host-device sync on a GPU)."""

    READS = ("aten._local_scalar_dense", "aten.is_nonzero", "aten.equal")

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func).rsplit(".", 1)[0] in self.READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("level", ["sublayer", "block", "stack"])
def test_a_scheduled_run_reads_no_tensor_value_on_the_host_beyond_the_models_own(level):
    model, inputs = tiny_flux()
    with HostReads() as alone:
        run(model, inputs)
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=(level,)))
    with HostReads() as scheduled:
        run(model, inputs)
    assert sum(count.reused for count in autofr.get_accounting(model).units.values()) > 0
    assert scheduled.count == alone.count  # the CPU stand-in for set_sync_debug_mode("error") on a GPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("level", ["sublayer", "block", "stack"])
def test_a_compiled_schedule_never_synchronises_with_the_device(level):
    model, inputs = tiny_flux()
    model = model.cuda()
    inputs = {name: value.cuda() for name, value in inputs.items()}
    if synchronises(model, inputs) is not None:
        pytest.skip(f"the model synchronises by itself: {synchronises(model, inputs)}")
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=(level,)))
    model.compile_repeated_blocks(fullgraph=True)
    run_on_device(model, inputs)  # compiles (compilation may synchronise)
    torch.cuda.synchronize()
    assert synchronises(model, inputs) is None


def synchronises(model, inputs) -> str | None:
    """None if a sampling run does no host-device synchronisation, else what the sync debug mode raised."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        run_on_device(model, inputs)
        return None
    except RuntimeError as error:
        return str(error).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")


@torch.no_grad()
def run_on_device(model, inputs):
    x = inputs["hidden_states"]
    timesteps = torch.linspace(1.0, 0.2, STEPS, device=x.device)
    for step in range(STEPS):
        out = model(**{**inputs, "hidden_states": x}, timestep=timesteps[step : step + 1], return_dict=False)[0]
        x = x - 0.1 * out
    return x
