"""Block and stack units: exact residual reuse, nesting, one cache per run of blocks, format-1 files."""

import json

import pytest
import torch
from diffusers import FluxTransformer2DModel

import autofr
from autofr import ReuseSchedule, UnitSchedule
from autofr.reuse import discover_units, model_fingerprint
from autofr.reuse.units import LEVELS, unit_parents

from ..conftest import TinyPipeline
from .test_hooks import frdiff_reference

STEPS = 4


def tiny_flux(layers=2, single_layers=2):
    torch.manual_seed(0)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=layers,
        num_single_layers=single_layers,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8],
    ).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(1, 16, 4, generator=generator),
        "encoder_hidden_states": torch.randn(1, 8, 32, generator=generator),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "img_ids": torch.randn(16, 3, generator=generator),
        "txt_ids": torch.randn(8, 3, generator=generator),
    }
    return model, inputs


@torch.no_grad()
def run(model, inputs, steps=STEPS):
    """A bare sampling loop: a new timestep every step, the sample moved by the prediction."""
    x = inputs["hidden_states"]
    for step in range(steps):
        timestep = torch.full((1,), 1.0 - step / (steps + 1))
        out = model(**{**inputs, "hidden_states": x}, timestep=timestep, return_dict=False)[0]
        x = x - 0.1 * out
    return x


def schedule_for(model, units: dict[str, UnitSchedule], steps=STEPS):
    base = ReuseSchedule.full_compute(model, steps)
    return ReuseSchedule(base.model_class, base.fingerprint, steps, units, None, base.scheduler)


def test_levels_nest_stack_blocks_sublayers_on_a_dual_stream_model():
    model, _ = tiny_flux()
    units = discover_units(model, levels=LEVELS)
    levels = [u.level for u in units]
    assert levels.count("stack") == 1 and levels.count("block") == 4
    stack = units[0]
    assert stack.blocks == (
        "transformer_blocks.0",
        "transformer_blocks.1",
        "single_transformer_blocks.0",
        "single_transformer_blocks.1",
    )
    parents = unit_parents(units)
    assert parents["transformer_blocks.1"] == ("stack",)
    assert parents["single_transformer_blocks.0.attn"] == ("stack", "single_transformer_blocks.0")
    # outer units do not change the fingerprint: format-1 schedules keep matching
    assert model_fingerprint(model, units) == model_fingerprint(model)


def test_a_reused_stack_adds_the_last_computed_residual_to_the_current_input_on_both_streams():
    model, inputs = tiny_flux()
    first, last_dual = model.transformer_blocks[0], model.transformer_blocks[-1]
    last = model.single_transformer_blocks[-1]
    seen = {"in": [], "out": [], "dual_out": []}
    first.register_forward_pre_hook(
        lambda m, a, k: seen["in"].append((k["hidden_states"].clone(), k["encoder_hidden_states"].clone())),
        with_kwargs=True,
    )
    last_dual.register_forward_hook(lambda m, a, o: seen["dual_out"].append(o))
    last.register_forward_hook(lambda m, a, o: seen["out"].append((o[1].clone(), o[0].clone())))
    # the stack computes at steps 0 and 2 and reuses at 1 and 3
    autofr.apply_schedule(model, schedule_for(model, {"stack": UnitSchedule(interval=2)}))
    run(model, inputs)
    for reused, computed in ((1, 0), (3, 2)):
        residual = [seen["out"][computed][s] - seen["in"][computed][s] for s in (0, 1)]
        for stream in (0, 1):  # image stream, text stream
            assert torch.equal(seen["out"][reused][stream], seen["in"][reused][stream] + residual[stream])
    assert len(seen["dual_out"]) == 4  # the blocks are called (hooks hand values through), nothing inside runs
    accounting = autofr.get_accounting(model)
    assert (accounting.units["stack"].computed, accounting.units["stack"].reused) == (2, 2)
    assert accounting.units["transformer_blocks.0.attn"].computed == 2  # inner units ran only at 0 and 2
    assert accounting.units["transformer_blocks.0.attn"].reused == 0


def test_a_reused_block_skips_its_inner_units_and_a_computing_block_lets_them_reuse():
    model, inputs = tiny_flux()
    calls = {"0": 0, "1": 0}
    model.transformer_blocks[0].attn.register_forward_hook(lambda m, a, o: calls.__setitem__("0", calls["0"] + 1))
    model.transformer_blocks[1].ff.net[0].register_forward_hook(lambda m, a, o: calls.__setitem__("1", calls["1"] + 1))
    schedule = schedule_for(
        model,
        {
            "transformer_blocks.0": UnitSchedule(interval=2),  # reused at 1 and 3
            "transformer_blocks.0.attn": UnitSchedule(interval=1),
            "transformer_blocks.1.ff": UnitSchedule(interval=2),  # its block computes: the ff reuses at 1, 3
        },
    )
    accounting = autofr.apply_schedule(model, schedule)
    run(model, inputs)
    assert calls["0"] == 2  # block 0 ran at 0 and 2 only: its attention never ran at 1 and 3
    assert calls["1"] == 2  # block 1 computed at every step, its feed-forward only at 0 and 2
    assert (
        accounting.units["transformer_blocks.1.ff"].computed,
        accounting.units["transformer_blocks.1.ff"].reused,
    ) == (2, 2)
    assert (accounting.units["transformer_blocks.0"].computed, accounting.units["transformer_blocks.0"].reused) == (
        2,
        2,
    )


def test_consecutive_blocks_with_one_schedule_hold_one_residual_per_stream():
    model, inputs = tiny_flux(layers=3, single_layers=0)
    together = schedule_for(model, {f"transformer_blocks.{i}": UnitSchedule(interval=2) for i in range(3)})
    accounting = autofr.apply_schedule(model, together)
    session = model._autofr_session
    spans = session.denoiser_hook.spans
    assert len(spans) == 1 and spans[0].unit_names == [f"transformer_blocks.{i}" for i in range(3)]
    held = {}
    original = spans[0].clear
    spans[0].clear = lambda: (held.update(cached=dict(spans[0].residuals)), original())[1]  # look before the reset
    run(model, inputs)
    (residuals,) = held["cached"].values()
    assert sorted(residuals) == ["encoder_hidden_states", "hidden_states"]  # one tensor per stream, not per block
    assert all(accounting.units[f"transformer_blocks.{i}"].reused == 2 for i in range(3))
    apart = schedule_for(
        model,
        {
            "transformer_blocks.0": UnitSchedule(interval=2),
            "transformer_blocks.1": UnitSchedule(interval=3),
            "transformer_blocks.2": UnitSchedule(interval=2),
        },
    )
    autofr.apply_schedule(model, apart)
    assert len(model._autofr_session.denoiser_hook.spans) == 3


def test_every_level_is_exact_at_interval_1_and_remove_restores():
    model, inputs = tiny_flux()
    expected = run(model, inputs)
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=1, levels=LEVELS))
    assert torch.equal(run(model, inputs), expected)
    for level in ("stack", "block"):
        autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=(level,)))
        first = run(model, inputs)
        assert not torch.equal(first, expected) and torch.equal(run(model, inputs), first)
    autofr.remove_schedule(model)
    assert torch.equal(run(model, inputs), expected)
    assert not any(hasattr(m, "_diffusers_hook") for m in model.modules())


def test_deepcache_is_the_deep_unet_stages_reused():
    pipe = TinyPipeline("unet")
    units = discover_units(pipe, levels=("block",))
    stages = [u.name for u in units]
    assert stages[0] == "down_blocks.0" and stages[-1] == f"up_blocks.{len(pipe.denoiser.up_blocks) - 1}"
    deep = {name: UnitSchedule(interval=2) for name in stages[1:-1]}
    base = ReuseSchedule.full_compute(pipe, 6)
    schedule = ReuseSchedule(base.model_class, base.fingerprint, 6, deep, None, base.scheduler)
    runs = {"deep": 0}
    pipe.denoiser.mid_block.resnets[0].register_forward_hook(
        lambda m, a, o: runs.__setitem__("deep", runs["deep"] + 1)
    )
    accounting = autofr.apply_schedule(pipe, schedule)
    pipe(num_inference_steps=6)
    assert runs["deep"] == 3  # the mid block ran at the even steps only
    assert all(accounting.units[name].reused == 3 for name in deep)


@pytest.mark.parametrize("interval", [2, 3])
def test_a_format_1_file_still_applies_bit_identically(tmp_path, interval):
    pipe = TinyPipeline("dit")
    data = ReuseSchedule.uniform(pipe, 12, interval=interval).to_dict()
    data["format_version"] = 1  # what autofr wrote before block and stack units existed
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    expected, _ = frdiff_reference(TinyPipeline("dit"), interval, mixing=False)
    autofr.apply_schedule(pipe, str(path))
    assert torch.equal(pipe(num_inference_steps=12), expected) or torch.allclose(
        pipe(num_inference_steps=12), expected, rtol=1e-5, atol=1e-5
    )
    assert ReuseSchedule.from_json(path).units == ReuseSchedule.uniform(pipe, 12, interval=interval).units


def test_an_inner_unit_reuses_what_it_computed_the_last_time_it_ran():
    """Block 0 computes at 0, 2, 4; its feed-forward is planned at 0, 2, 3. Step 3 does not run it (the
    block reuses), so at step 4 it reuses its value of step 2, not of step 0."""
    model, inputs = tiny_flux(layers=1, single_layers=1)
    seen = []
    model.transformer_blocks[0].ff.register_forward_hook(lambda m, a, o: seen.append(o.clone()))
    schedule = schedule_for(
        model,
        {
            "transformer_blocks.0": UnitSchedule(steps=(0, 2, 4)),
            "transformer_blocks.0.ff": UnitSchedule(steps=(0, 2, 3)),
        },
        steps=5,
    )
    accounting = autofr.apply_schedule(model, schedule)
    run(model, inputs, steps=5)
    assert len(seen) == 3  # the block ran at 0, 2 and 4
    assert torch.equal(seen[2], seen[1]) and not torch.equal(seen[2], seen[0])
    assert (
        accounting.units["transformer_blocks.0.ff"].computed,
        accounting.units["transformer_blocks.0.ff"].reused,
    ) == (2, 1)


def test_user_rules_name_the_blocks_of_a_model():
    from autofr import ConfigError
    from autofr.reuse import UnitRules

    model, inputs = tiny_flux(layers=2, single_layers=2)
    rules = {"blocks": ["single_transformer_blocks.*"]}  # only the single-stream blocks, say
    units = discover_units(model, rules, levels=("stack", "block"))
    assert [u.name for u in units] == ["stack", "single_transformer_blocks.0", "single_transformer_blocks.1"]
    assert units[0].blocks == ("single_transformer_blocks.0", "single_transformer_blocks.1")
    expected = run(model, inputs)
    autofr.reuse.attach_unit_rules(model, rules)  # every later discovery (schedules, apply) sees them
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=1, levels=LEVELS))
    assert torch.equal(run(model, inputs), expected)
    accounting = autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=2, levels=("stack",)))
    run(model, inputs)
    assert (accounting.units["stack"].computed, accounting.units["stack"].reused) == (2, 2)
    assert UnitRules.coerce({"kinds": {"stack": False}, "blocks": ["single_transformer_blocks.*"]}).blocks
    with pytest.raises(ConfigError, match="model.units.blocks pattern 'layers.\\*' matches no module"):
        discover_units(model, {"blocks": ["layers.*"]}, levels=("block",))
