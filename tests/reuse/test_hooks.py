import pytest
import torch

import autofr
from autofr import Mixing, ReuseSchedule, ScheduleError, UnitSchedule
from autofr.cost import measure_cost, predicted_speedup
from autofr.reuse import discover_units

from ..conftest import TinyPipeline


def frdiff_reference(pipe: TinyPipeline, interval: int, mixing: bool, batch=2, steps=12, seed=0):
    """An independent, plain implementation of FRDiff's rule, written with torch forward hooks.

    Keyframes every ``interval`` steps; at other steps every unit's cached feature replaces the fresh
    one; with mixing, eps = lam * eps_FR + (1 - lam) * eps_key and lam == 0 skips the network.
    """
    model = pipe.denoiser
    units = discover_units(model)
    cache, handles = {}, []
    state = {"keyframe": True}

    def make_hook(unit):
        def residual_input(args):
            return args[0]

        def hook(module, args, kwargs, output):
            if unit.kind == "resnet":
                # replace conv1's output
                if state["keyframe"]:
                    cache[unit.name] = output
                    return output
                return cache[unit.name]
            if unit.kind in ("attention", "transformer"):
                x = residual_input(args) if args else kwargs["hidden_states"]
                sample = output[0] if isinstance(output, tuple) else output
                if state["keyframe"]:
                    cache[unit.name] = sample - x
                    return output
                new = x + cache[unit.name]
                return (new,) if isinstance(output, tuple) else new
            if state["keyframe"]:
                cache[unit.name] = output
                return output
            return cache[unit.name]

        return hook

    for unit in units:
        target = unit.module.conv1 if unit.kind == "resnet" else unit.module
        handles.append(target.register_forward_hook(make_hook(unit), with_kwargs=True))
    calls = {"n": 0}
    original_forward = model.forward

    def counted_forward(*args, **kwargs):
        calls["n"] += 1
        return original_forward(*args, **kwargs)

    model.forward = counted_forward
    eps_key = {}
    step_index = {"i": 0}
    inner = model.forward

    def frdiff_forward(*args, **kwargs):
        i = step_index["i"]
        step_index["i"] += 1
        keyframe = i % interval == 0
        state["keyframe"] = keyframe
        lam = min(1.0, max(0.0, (30 * (i / steps - 0.5) + 2) / 4)) if mixing else 1.0
        if keyframe:
            out = inner(*args, **kwargs)
            eps_key["v"] = out[0]
            return out
        if lam == 0.0:
            return (eps_key["v"],)
        out = inner(*args, **kwargs)[0]
        return (lam * out + (1 - lam) * eps_key["v"],)

    model.forward = frdiff_forward
    try:
        result = pipe(batch=batch, num_inference_steps=steps, seed=seed)
    finally:
        del model.forward
        for handle in handles:
            handle.remove()
    return result, calls["n"]


def test_all_keyframe_schedule_is_bit_identical(pipeline):
    baseline = pipeline(num_inference_steps=6)
    schedule = ReuseSchedule.uniform(pipeline, 6, interval=1, mixing=False)
    autofr.apply_schedule(pipeline, schedule)
    assert torch.equal(pipeline(num_inference_steps=6), baseline)


@pytest.mark.parametrize("interval", [2, 3])
@pytest.mark.parametrize("mixing", [False, True])
def test_uniform_matches_independent_frdiff(family, interval, mixing):
    reference_pipe = TinyPipeline(family)
    expected, expected_calls = frdiff_reference(reference_pipe, interval, mixing)
    pipe = TinyPipeline(family)
    accounting = autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, 12, interval=interval, mixing=mixing))
    result = pipe(num_inference_steps=12)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    assert accounting.network_calls == expected_calls
    # the reuse really changed the result (it is not silently full compute)
    assert not torch.allclose(result, TinyPipeline(family)(num_inference_steps=12), atol=1e-6)


def test_reuse_skips_work_and_lambda_zero_skips_the_network():
    pipe = TinyPipeline("unet")
    cost = measure_cost(pipe)
    runs = {"n": 0}
    pipe.unet.conv_in.register_forward_pre_hook(lambda *a: runs.__setitem__("n", runs["n"] + 1))
    schedule = ReuseSchedule.uniform(pipe, 20, interval=3, mixing=True)
    accounting = autofr.apply_schedule(pipe, schedule, cost=cost)
    pipe(num_inference_steps=20)
    plan = schedule.plan(list(cost.unit_macs))
    lam = plan.mixing_weight
    keyframes = [i for i in range(20) if i % 3 == 0]
    assert [i for i in range(20) if plan.full_keyframe[i]] == keyframes
    expected_runs = sum(1 for i in range(20) if i in keyframes or lam[i] > 0)
    assert runs["n"] == expected_runs == accounting.network_calls
    assert accounting.skipped_calls == 20 - expected_runs > 0
    for name, count in accounting.units.items():
        assert (count.computed, count.reused) == plan.unit_counts(name)
        assert count.reused > 0
    assert accounting.macs_executed < accounting.macs_full
    assert accounting.predicted_speedup == pytest.approx(predicted_speedup(schedule, cost))
    assert accounting.predicted_speedup > 1.5
    assert accounting.never_fired == []
    assert "never reused" not in accounting.summary()


def test_consecutive_calls_are_identical_and_remove_restores(pipeline):
    baseline = pipeline(num_inference_steps=8)
    model = pipeline.denoiser
    autofr.apply_schedule(pipeline, ReuseSchedule.uniform(pipeline, 8, interval=2, mixing=True))
    first = pipeline(num_inference_steps=8)
    second = pipeline(num_inference_steps=8)
    assert torch.equal(first, second)
    assert not torch.equal(first, baseline)
    # a different batch size next: nothing stale from the previous run
    third = pipeline(batch=3, num_inference_steps=8)
    fresh = TinyPipeline(pipeline.family)
    autofr.apply_schedule(fresh, ReuseSchedule.uniform(fresh, 8, interval=2, mixing=True))
    assert torch.equal(third, fresh(batch=3, num_inference_steps=8))
    autofr.remove_schedule(pipeline)
    assert torch.equal(pipeline(num_inference_steps=8), baseline)
    for module in model.modules():
        assert not hasattr(module, "_diffusers_hook")
        assert "forward" not in module.__dict__
    assert "set_timesteps" not in pipeline.scheduler.__dict__


def test_interrupted_run_does_not_leak_into_the_next_call():
    pipe = TinyPipeline("dit")
    autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, 8, interval=2))
    expected = pipe(num_inference_steps=8)
    # run three steps by hand, then abandon the run
    pipe.scheduler.set_timesteps(8)
    sample = torch.randn(4, 2, 8, 8)
    for t in pipe.scheduler.timesteps[:3]:
        pipe.transformer(sample, t.expand(4), class_labels=torch.zeros(4, dtype=torch.long))
    assert torch.equal(pipe(num_inference_steps=8), expected)


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver++", "euler"])
@pytest.mark.parametrize("steps", [7, 25])
def test_step_index_follows_each_scheduler(scheduler, steps):
    pipe = TinyPipeline("unet", scheduler)
    baseline = pipe(num_inference_steps=steps)
    autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, steps, interval=1))
    assert torch.equal(pipe(num_inference_steps=steps), baseline)
    accounting = autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, steps, interval=2))
    result = pipe(num_inference_steps=steps)
    assert accounting.network_calls == steps and accounting.runs == 1
    for count in accounting.units.values():
        assert (count.computed, count.reused) == ((steps + 1) // 2, steps // 2)
    assert torch.isfinite(result).all()


def test_step_count_mismatch_raises_at_call():
    pipe = TinyPipeline("unet")
    autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, 10, interval=2))
    with pytest.raises(ScheduleError, match="for 10 steps but the pipeline runs 12"):
        pipe(num_inference_steps=12)


def test_per_unit_schedule_and_explicit_steps():
    pipe = TinyPipeline("unet")
    names = [u.name for u in discover_units(pipe)]
    schedule = ReuseSchedule.uniform(pipe, 10, interval=1)
    schedule.units[names[0]] = UnitSchedule(interval=3, offset=1)
    schedule.units[names[1]] = UnitSchedule(steps=(0, 4, 5))
    schedule.mixing = Mixing(bias=0.3, slope=20)
    accounting = autofr.apply_schedule(pipe, schedule)
    pipe(num_inference_steps=10)
    plan = schedule.plan(names)
    assert plan.unit_compute[names[0]] == [i == 0 or (i >= 1 and (i - 1) % 3 == 0) for i in range(10)]
    assert plan.unit_compute[names[1]] == [i in (0, 4, 5) for i in range(10)]
    assert plan.full_keyframe == [i in (0, 4) for i in range(10)]
    assert accounting.units[names[0]].reused == plan.unit_counts(names[0])[1] > 0
    assert accounting.units[names[2]].reused == 0


def test_bare_model_hand_loop_with_cfg():
    pipe = TinyPipeline("unet")
    model = pipe.unet
    schedule = ReuseSchedule.uniform(model, 5, interval=2, mixing=False)
    autofr.apply_schedule(model, schedule)  # no scheduler wrapper: steps counted per call

    def run():
        sample = torch.ones(4, 2, 8, 8)
        for t in range(5):
            sample = (
                sample
                - 0.1
                * model(sample, torch.tensor([900 - 100 * t] * 4), class_labels=torch.tensor([3, 3, 0, 1])).sample
            )
        return sample

    first, second = run(), run()
    assert torch.equal(first, second)
    assert autofr.get_accounting(model).units["down_blocks.0.resnets.0"].reused == 2


def test_unit_that_never_runs_is_reported():
    pipe = TinyPipeline("unet")
    accounting = autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, 6, interval=2))
    pipe.unet.mid_block = None  # the pipeline now bypasses the mid-block units
    pipe(num_inference_steps=6)
    assert accounting.never_fired and all(name.startswith("mid_block") for name in accounting.never_fired)
    assert "never reused as planned" in accounting.summary()


def test_resnet_tail_equals_full_block():
    from autofr.reuse._outputs import _resnet2d_tail as _resnet_tail

    model = TinyPipeline("unet").unet
    for block in [m for m in model.modules() if type(m).__name__ == "ResnetBlock2D"]:
        channels = block.norm1.num_channels
        x = torch.randn(2, channels, 4, 4)
        temb = torch.randn(2, block.time_emb_proj.in_features)
        captured = {}
        handle = block.conv1.register_forward_hook(lambda m, a, o, captured=captured: captured.setdefault("h", o))
        with torch.no_grad():
            full = block(x, temb)
            handle.remove()
            tail = _resnet_tail(block, captured["h"], x, temb)
        assert torch.equal(full, tail)
