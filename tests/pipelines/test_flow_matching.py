"""Reuse schedules on a flow-matching transformer pipeline (a tiny Flux, built offline).

FluxPipeline sets its FlowMatchEulerDiscreteScheduler with ``sigmas=`` and a resolution-dependent
``mu`` (so the wrapped ``set_timesteps`` must keep its signature), runs the transformer inside
``cache_context("cond")`` and, with true classifier-free guidance, a second time per step inside
``cache_context("uncond")``.
"""

import contextlib
import copy

import pytest
import torch

import autofr
from autofr import ReuseSchedule, ScheduleError
from autofr.evaluation import EvalProtocol, generate
from autofr.reuse import discover_units

from .tiny_t2i import tiny_flux_pipeline

STEPS = 4
CALL = {"height": 32, "width": 32, "num_inference_steps": STEPS, "max_sequence_length": 8, "output_type": "latent"}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = tiny_flux_pipeline(tmp_path_factory.mktemp("flux"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **extra):
    generator = torch.Generator().manual_seed(0)
    return pipe(["a photo of a cat"], generator=generator, **CALL, **extra).images


def test_interval_1_is_bit_identical_and_m2_reuses_every_unit(pipe):
    reference = run(pipe)
    autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, STEPS, interval=1))
    try:
        assert torch.equal(run(pipe), reference)
        accounting = autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, STEPS, interval=2, mixing=True))
        first, second = run(pipe), run(pipe)
    finally:
        autofr.remove_schedule(pipe)
    assert torch.equal(first, second) and not torch.equal(first, reference)
    assert accounting.runs == 2 and accounting.never_fired == []
    kinds = {unit.kind for unit in discover_units(pipe)}
    assert kinds == {"joint_attention", "feed_forward", "context_feed_forward", "self_attention"}
    assert torch.equal(run(pipe), reference)
    assert "set_timesteps" not in pipe.scheduler.__dict__ and "step" not in pipe.scheduler.__dict__


def frdiff_true_cfg_reference(pipe, interval: int):
    """FRDiff with separate caches for the cond and uncond calls, written with plain forward hooks."""
    model = pipe.transformer
    units = discover_units(model)
    cache, state, handles = {}, {"context": None, "calls": {}}, []

    def hook(name):
        def replace(module, args, kwargs, output):
            branch = state["context"]
            step = state["calls"][branch]
            if step % interval == 0:
                cache[name, branch] = output
                return output
            return cache[name, branch]

        return replace

    for unit in units:
        handles.append(unit.module.register_forward_hook(hook(unit.name), with_kwargs=True))

    def count(module, args, kwargs, output):
        state["calls"][state["context"]] += 1

    handles.append(model.register_forward_hook(count, with_kwargs=True))

    @contextlib.contextmanager
    def context(name, **_):
        state["context"] = name
        state["calls"].setdefault(name, 0)
        yield

    model.cache_context = context
    try:
        return run(pipe, true_cfg_scale=2.0, negative_prompt=["night"])
    finally:
        del model.cache_context
        for handle in handles:
            handle.remove()


def test_true_cfg_keeps_one_cache_per_cache_context(pipe):
    expected = frdiff_true_cfg_reference(pipe, interval=2)
    accounting = autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, STEPS, interval=2))
    try:
        result = run(pipe, true_cfg_scale=2.0, negative_prompt=["night"])
    finally:
        autofr.remove_schedule(pipe)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)
    assert accounting.network_calls == 2 * STEPS  # both branches, every step
    for count in accounting.units.values():  # per branch: computed at steps 0 and 2, reused at 1 and 3
        assert (count.computed, count.reused) == (4, 4)


def test_two_calls_per_step_without_cache_context_are_two_branches(pipe):
    """A hand-written loop that calls the denoiser twice per step (cond, then uncond), no cache_context:
    each call keeps its own caches, exactly like two separate copies of the model."""
    scheduler = copy.deepcopy(pipe.scheduler)
    model = pipe.transformer
    latents = torch.randn(1, 64, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(1))
    pooled = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    ids = {"img_ids": torch.zeros(64, 3), "txt_ids": torch.zeros(6, 3)}

    class Loop:
        def __init__(self, cond_model, uncond_model):
            self.scheduler, self.models = scheduler, (cond_model, uncond_model)
            self.transformer = cond_model

        @torch.no_grad()
        def __call__(self):
            self.scheduler.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25], mu=0.5)
            x = latents
            for t in self.scheduler.timesteps:
                timestep = (t / 1000).expand(1)
                cond, uncond = (
                    m(
                        hidden_states=x,
                        timestep=timestep,
                        encoder_hidden_states=text[i : i + 1],
                        pooled_projections=pooled[i : i + 1],
                        return_dict=False,
                        **ids,
                    )[0]
                    for i, m in enumerate(self.models)
                )
                x = self.scheduler.step(uncond + 2.0 * (cond - uncond), t, x, return_dict=False)[0]
            return x

    copies = copy.deepcopy(model), copy.deepcopy(model)
    for replica in copies:
        autofr.apply_schedule(replica, ReuseSchedule.uniform(replica, STEPS, interval=2))
    expected = Loop(*copies)()
    loop = Loop(model, model)
    accounting = autofr.apply_schedule(loop, ReuseSchedule.uniform(model, STEPS, interval=2))
    try:
        result = loop()
    finally:
        autofr.remove_schedule(loop)
    assert torch.equal(result, expected)
    assert all((count.computed, count.reused) == (4, 4) for count in accounting.units.values())


def test_a_schedule_for_another_step_count_refuses_to_run(pipe):
    autofr.apply_schedule(pipe, ReuseSchedule.uniform(pipe, STEPS, interval=2))
    try:
        with pytest.raises(ScheduleError, match=f"for {STEPS} steps but the pipeline runs {STEPS + 1}"):
            pipe(["a cat"], **{**CALL, "num_inference_steps": STEPS + 1})
    finally:
        autofr.remove_schedule(pipe)


def test_the_evaluation_protocol_samples_flux_end_to_end(pipe):
    protocol = EvalProtocol(
        num_samples=3,
        batch_size=3,
        num_inference_steps=STEPS,
        scheduler=None,
        resolution=32,
        prompts=("a photo of a cat", "a red house"),
    )
    full = generate(pipe, protocol)
    assert full.images.shape == (3, 3, 32, 32) and full.latents.shape == (3, 64, 16)  # packed latents
    assert 0 <= full.images.min() and full.images.max() <= 1
    assert torch.allclose(generate(pipe, protocol.replace(batch_size=2)).images, full.images, atol=1e-5)
    assert torch.equal(generate(pipe, protocol, ReuseSchedule.uniform(pipe, STEPS, interval=1)).images, full.images)
    reused = generate(pipe, protocol, ReuseSchedule.uniform(pipe, STEPS, interval=2, mixing=True))
    assert not torch.equal(reused.images, full.images) and torch.isfinite(reused.images).all()
    assert not hasattr(pipe.transformer, "_diffusers_hook")
