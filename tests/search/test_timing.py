"""Calibrated timing: keyframes where change accumulates, MagCache's rule as a point of the space."""

import optuna
import pytest

from autofr import ConfigError
from autofr.reuse import discover_units, model_fingerprint
from autofr.reuse.units import LEVELS
from autofr.search.space import STACK_GROUP, SearchSpace
from autofr.search.timing import StepProfile, StepProfiles, calibrated_steps, warmup_steps

from ..conftest import TinyPipeline


def magcache_decisions(ratios, threshold, max_skip, retention, steps):
    """diffusers' MagCache head-block decision, step by step (hooks/mag_cache.py), written out."""
    accumulated_ratio, accumulated_err, accumulated_steps = 1.0, 0.0, 0
    have_residual, compute = False, []
    retention_step = int(retention * steps + 0.5)
    for step in range(steps):
        should_compute = True
        if step >= retention_step:
            accumulated_ratio *= ratios[step]
            accumulated_steps += 1
            accumulated_err += abs(1.0 - accumulated_ratio)
            if have_residual and accumulated_err <= threshold and accumulated_steps <= max_skip:
                should_compute = False
            else:
                accumulated_ratio, accumulated_steps, accumulated_err = 1.0, 0, 0.0
        if should_compute:
            compute.append(step)
            have_residual = True
    return tuple(compute)


@pytest.mark.parametrize("threshold", [0.06, 0.12, 0.24])
def test_magcache_rule_is_the_calibrated_rule_with_its_own_settings(threshold):
    steps = 28
    ratios = [1.0] + [1.0 - 0.04 * (1 - t / steps) ** 2 + 0.01 * (t % 3) for t in range(1, steps)]
    ours = calibrated_steps(ratios, threshold, max_reuse=3, warmup=warmup_steps(0.2, steps))
    assert ours == magcache_decisions(ratios, threshold, 3, 0.2, steps)
    assert len(ours) < steps  # it does skip


def test_more_keyframes_where_the_profile_changes_more():
    steps = 30
    busy_then_still = [1.0] + [0.8 if t < 15 else 0.999 for t in range(1, steps)]
    compute = calibrated_steps(busy_then_still, threshold=0.1, max_reuse=5, warmup=0)
    early = sum(1 for s in compute if s < 15)
    late = sum(1 for s in compute if s >= 15)
    assert early == 15 and late < 5  # every early step computes; the still half reuses up to the cap
    assert calibrated_steps(busy_then_still, threshold=0.1, max_reuse=2, warmup=0).count(29) + late >= 1
    # a warm-up computes the first steps whatever the profile says
    assert calibrated_steps([1.0] * steps, threshold=10.0, max_reuse=5, warmup=4)[:4] == (0, 1, 2, 3)


def make_space(timing="calibrated", **overrides):
    pipe = TinyPipeline("dit")
    units = discover_units(pipe, levels=LEVELS)
    cfg = {"max_interval": 4, "steps": [6, 8], "timing": timing, "levels": list(LEVELS)} | overrides
    space = SearchSpace.from_config(cfg, units, type(pipe.denoiser).__name__, model_fingerprint(pipe), 8)
    return pipe, units, space


def flat_profile(space, steps, ratio=0.99):
    return StepProfile(
        steps,
        {g: [0.0] + [0.01] * (steps - 1) for g in space.groups},
        {g: [1.0] + [ratio] * (steps - 1) for g in space.groups},
    )


def test_calibrated_space_gives_explicit_steps_per_group_and_magcache_as_params():
    pipe, units, space = make_space()
    assert STACK_GROUP in space.groups and any(g.startswith("block.") for g in space.groups)
    measured = []
    profiles = StepProfiles(lambda steps: measured.append(steps) or flat_profile(space, steps))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    params = space.magcache_params(0.12)
    study.enqueue_trial(params)
    trial = study.ask()
    schedule = space.suggest(trial, profiles)
    stack = schedule.units["stack"]
    # MagCache's rule: the first 20% compute, then at most 3 reuses in a row
    assert stack.steps is not None and stack.steps[:2] == (0, 1) and len(stack.steps) < 8
    assert all(unit.steps is None and unit.interval == 1 for name, unit in schedule.units.items() if name != "stack")
    for _ in range(12):
        trial = study.ask()
        schedule = space.suggest(trial, profiles)
        level = trial.params["level"]
        groups = {name.split(".", 1)[1] for name in trial.params if name.startswith(("threshold.", "interval."))}
        assert groups == set(space.groups_at(level))  # one level per trial
        reusing = {name for name, unit in schedule.units.items() if unit.steps is not None or unit.interval > 1}
        assert all(u.level == level for u in units if u.name in reusing)
        assert ("warmup" in trial.params) == (trial.params.get("timing", space.timing) == "calibrated")
        study.tell(trial, (1.0, 1.0))
    assert set(measured) <= {6, 8} and len(measured) == len(set(measured))  # measured once per step count
    with pytest.raises(ConfigError, match="change profiles"):
        space.suggest(study.ask())


def test_uniform_space_has_no_magcache_point_and_bad_timing_is_a_config_error():
    _, _, space = make_space(timing="uniform")
    assert space.magcache_params(0.12) is None
    labels = [label for _, label, _ in space.warm_start()]
    assert "front/back split N=2" in labels and "FRDiff M=2" in labels
    with pytest.raises(ConfigError, match="space.timing='sometimes'"):
        make_space(timing="sometimes")
    with pytest.raises(ConfigError, match="space.levels"):
        make_space(levels=["stacks"])


def test_full_compute_in_a_calibrated_space_computes_everything():
    _, _, space = make_space()
    ((_, label, params),) = space.warm_start()
    assert label == "full compute"
    profiles = StepProfiles(lambda steps: flat_profile(space, steps, ratio=1.0))  # nothing changes at all
    schedule = space.suggest(optuna.trial.FixedTrial(params), profiles)
    assert all(all(unit.compute_mask(schedule.num_inference_steps)) for unit in schedule.units.values())
