import optuna
import pytest
from omegaconf import OmegaConf

from autofr import ConfigError, ReuseSchedule
from autofr.reuse import discover_units, model_fingerprint
from autofr.search.space import SearchSpace

from ..conftest import TinyPipeline


def make_space(family="unet", **overrides):
    pipe = TinyPipeline(family)
    units = discover_units(pipe)
    cfg = OmegaConf.create(
        {
            "grouping": "stage",
            "max_interval": 4,
            "offsets": False,
            "mixing": "choice",
            "mixing_bias": [0.2, 0.8],
            "mixing_slope": [5.0, 60.0],
            "steps": [6, 8],
            "timing": "uniform",
        }
        | overrides
    )
    space = SearchSpace.from_config(
        cfg, units, type(pipe.denoiser).__name__, model_fingerprint(pipe), 10, "DDIMScheduler"
    )
    return pipe, units, space


@pytest.mark.parametrize("grouping, expected", [("unit", None), ("stage", None), ("kind", 2), ("global", 1)])
def test_groups_follow_the_models_units(grouping, expected):
    pipe, units, space = make_space(grouping=grouping)
    assert sorted(n for names in space.groups.values() for n in names) == sorted(u.name for u in units)
    if grouping == "unit":
        assert len(space.groups) == len(units)
    elif grouping == "stage":
        assert set(space.groups) == {u.stage for u in units} and len(space.groups) > 2
    else:
        assert len(space.groups) == expected


def test_trials_become_valid_schedules_that_apply():
    pipe, units, space = make_space(grouping="unit", offsets=True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(8):
        trial = study.ask()
        schedule = space.suggest(trial)
        assert schedule.num_inference_steps in (6, 8, 10)
        assert set(schedule.units) == {u.name for u in units}
        assert f"interval.{units[0].name}" in trial.params
        seen.add(schedule.num_inference_steps)
        restored = ReuseSchedule.from_dict(schedule.to_dict())
        assert restored == schedule
        study.tell(trial, (1.0, 1.0))
    assert len(seen) > 1


def test_warm_start_reproduces_frdiff_uniform_settings_and_fewer_step_baselines():
    pipe, units, space = make_space(baseline_steps=[6, 8])
    study = optuna.create_study(directions=["maximize", "minimize"])
    entries = space.warm_start()
    assert [label for _, label, _ in entries] == [
        "full compute",
        "FRDiff M=2",
        "FRDiff M=2 +mixing",
        "FRDiff M=3",
        "FRDiff M=3 +mixing",
        "FRDiff M=4",
        "FRDiff M=4 +mixing",
        "DeepCache-style N=3",
        "DeepCache-style N=4",
        "8 steps",
        "6 steps",
    ]
    stages = list(space.groups)
    for origin, label, params in entries:
        study.enqueue_trial(params)
        trial = study.ask()
        schedule = space.suggest(trial)
        if origin == "deepcache":  # the deep stages reuse, the first and the last stage compute every step
            interval = int(label.split("N=")[1])
            for stage, names in space.groups.items():
                shallow = stage in (stages[0], stages[-1])
                assert all(schedule.units[name].interval == (1 if shallow else interval) for name in names)
            assert schedule.mixing is None and schedule.num_inference_steps == 10
            study.tell(trial, (1.0, 1.0))
            continue
        if origin == "reduced_steps":
            steps = int(label.split()[0])
            expected = ReuseSchedule.full_compute(pipe, steps)
        else:
            steps = 10
            interval = 1 if label == "full compute" else int(label.split("M=")[1][0])
            expected = ReuseSchedule.uniform(pipe, steps, interval, mixing="+mixing" in label)
        assert schedule.units == expected.units and schedule.mixing == expected.mixing
        assert schedule.num_inference_steps == steps
        study.tell(trial, (1.0, 1.0))


def test_size_summary_and_bad_config():
    _, units, space = make_space()
    summary = space.size_summary()
    assert f"{len(units)} units" in summary and "interval 1..4" in summary
    with pytest.raises(ConfigError, match="space.grouping='layers' is unknown"):
        make_space(grouping="layers")
    with pytest.raises(ConfigError, match="max_interval"):
        make_space(max_interval=0)
    assert make_space(baseline_steps=[7, 6])[2].baseline_steps == (6,)  # 7 steps is not in the space
