"""Unit discovery by rules: the table's kinds on dual- and single-stream blocks, and user rules."""

import pytest
import torch
from omegaconf import OmegaConf

import autofr
from autofr import ConfigError, ReuseSchedule, UnsupportedModelError
from autofr.reuse import UnitRules, attach_unit_rules, discover_units, model_fingerprint

from .coverage_check import check_denoiser
from .zoo import CASES


def case(name):
    return next(c for c in CASES if c.class_name == name)


def test_flux_blocks_get_joint_attention_both_feed_forwards_and_the_single_stream_mlp():
    units = {u.name: u for u in discover_units(case("FluxTransformer2DModel").build())}
    assert units["transformer_blocks.0.attn"].kind == "joint_attention"
    assert units["transformer_blocks.0.ff"].kind == "feed_forward"
    assert units["transformer_blocks.0.ff_context"].kind == "context_feed_forward"
    assert units["single_transformer_blocks.0.attn"].kind == "self_attention"
    assert units["single_transformer_blocks.0.proj_mlp"].kind == "feed_forward"  # proj_out still runs
    assert "single_transformer_blocks.0.proj_out" not in units
    assert {u.stage for u in units.values()} == {"blocks.early", "single_transformer_blocks.early"}
    assert all(u.mode == "output" for u in units.values())  # norms, modulation and gates run every step


def test_a_3d_video_transformer_gets_self_cross_attention_and_feed_forward_per_block():
    kinds = [(u.name, u.kind) for u in discover_units(case("WanTransformer3DModel").build())]
    assert kinds[:3] == [
        ("blocks.0.attn1", "self_attention"),
        ("blocks.0.attn2", "cross_attention"),
        ("blocks.0.ffn", "feed_forward"),
    ]


def test_user_rules_include_exclude_and_drop_kinds():
    model = case("FluxTransformer2DModel").build()
    table = [u.name for u in discover_units(model)]
    no_context = discover_units(model, {"kinds": {"context_feed_forward": False}})
    assert [u.name for u in no_context] == [n for n in table if not n.endswith("ff_context")]
    no_single = discover_units(model, {"exclude": ["single_transformer_blocks.*"]})
    assert all(not u.name.startswith("single") for u in no_single) and len(no_single) == 3
    only = discover_units(
        model, {"table": False, "include": {"re:single_transformer_blocks\\.\\d+\\.proj_out": "mlp_out"}}
    )
    assert [(u.name, u.kind, u.mode) for u in only] == [("single_transformer_blocks.0.proj_out", "mlp_out", "output")]
    node = OmegaConf.create(
        {"include": {"transformer_blocks.0.norm1": "modulation"}, "kinds": {"modulation": "output"}}
    )
    added = discover_units(model, node)
    assert added[0].name == "transformer_blocks.0.norm1" and len(added) == len(table) + 1


def test_bad_rules_are_one_line_config_errors():
    model = case("FluxTransformer2DModel").build()
    with pytest.raises(ConfigError, match="model.units.include pattern 'blocks.9.attn' matches no module"):
        discover_units(model, {"include": {"blocks.9.attn": "self_attention"}})
    with pytest.raises(ConfigError, match="unknown key 'inclde'"):
        discover_units(model, {"inclde": {}})
    with pytest.raises(ConfigError, match="model.units.kinds.feed_forward"):
        discover_units(model, {"kinds": {"feed_forward": "sometimes"}})
    with pytest.raises(UnsupportedModelError, match="model.units.include"):
        discover_units(model, {"kinds": {k: False for k in autofr.reuse.UNIT_KINDS}})


def test_a_model_the_table_does_not_know_is_scheduled_with_include_rules():
    unet1d = case("UNet1DModel")
    model = unet1d.build()
    with pytest.raises(UnsupportedModelError):
        discover_units(model)
    attach_unit_rules(model, {"include": {"down_blocks.*.resnets.*": "resnet_1d", "mid_block.resnets.*": "resnet_1d"}})
    result = check_denoiser(
        "UNet1DModel", model, unet1d.inputs(), unet1d.sample, unet1d.timestep, unet1d.scale, measure=False
    )
    assert result.passed, result.error
    assert result.units_by_kind == {"resnet_1d": len(discover_units(model))}
    fingerprint = model_fingerprint(model)
    schedule = ReuseSchedule.uniform(model, 4, interval=2)  # attached rules apply everywhere
    assert schedule.fingerprint == fingerprint and set(schedule.units) == {u.name for u in discover_units(model)}
    attach_unit_rules(model, None)
    with pytest.raises(UnsupportedModelError):
        discover_units(model)


def test_residual_units_cache_only_the_branch():
    unet = case("UNet2DConditionModel").build()
    modes = {u.kind: u.mode for u in discover_units(unet)}
    assert modes == {"resnet": "conv1", "transformer": "residual"}
    rules = UnitRules.coerce({"include": {"conv_in": "stem"}, "kinds": {"stem": "output"}})
    assert discover_units(unet, rules)[0].mode == "output"
    assert torch.is_tensor(next(unet.parameters()))


def test_reuse_works_under_inference_mode():
    dit = case("DiTTransformer2DModel")
    model = dit.build()
    with torch.inference_mode():
        result = check_denoiser(
            dit.class_name, model, dit.inputs(), dit.sample, dit.timestep, dit.scale, measure=False
        )
    assert result.passed, result.error
