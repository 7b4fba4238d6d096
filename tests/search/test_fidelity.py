"""Adaptive fidelity and the calibrated warm start on a tiny digit-shaped pipeline (real generation)."""

from __future__ import annotations

import optuna
import pytest
import torch

from autofr.cli import search as search_cli
from autofr.cli._config import compose
from autofr.config import StudyConfig
from autofr.evaluation import EvalProtocol, generate
from autofr.execution.storage import open_storage
from autofr.models import load_digits_images, load_pipeline
from autofr.quality import DigitFeatures, FeatureStats, extract_features
from autofr.quality.features import frechet_distance
from autofr.reuse import discover_units
from autofr.schedule import ReuseSchedule
from autofr.search.fidelity import AdaptiveScorer, Calibration, FidelityPlan
from autofr.search.records import StudyRecords
from autofr.search.timing import StepProfiles, group_profile, measure_profile
from autofr.search.warmstart import calibrated_entries, group_intervals
from tests.conftest import save_tiny_digit_pipeline

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
STEPS = 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    save_tiny_digit_pipeline(root / "tiny")
    images, _ = load_digits_images("all", size=16)
    FeatureStats.from_features(extract_features(DigitFeatures(), images[:300])).save(root / "real.npz")
    return root


@pytest.fixture(scope="module")
def scorer(tiny):
    pipe = load_pipeline(str(tiny / "tiny"))
    protocol = EvalProtocol(
        num_samples=8, seed=0, batch_size=8, num_inference_steps=STEPS, guidance_scale=2.0, num_classes=10
    )
    plan = FidelityPlan((8, 24), z=2.0, bootstrap=16)
    real = FeatureStats.load(tiny / "real.npz")
    full_top = generate(pipe, protocol.replace(num_samples=24))
    return pipe, protocol, plan, real, AdaptiveScorer(pipe, protocol, plan, DigitFeatures(), real, full_top)


def test_a_trial_far_from_the_target_stays_cheap_and_one_near_it_is_rescored(scorer):
    pipe, protocol, plan, real, adaptive = scorer
    schedule = ReuseSchedule.uniform(pipe, STEPS, 2)
    first = generate(pipe, protocol, schedule)
    far = adaptive.score(schedule, first, limit=1e6, calibration=Calibration(plan))
    assert far.fidelity == 8 and far.samples == 0 and far.sd[8] > 0
    # a limit right at this trial's estimate: within z sd, so more samples decide
    near = adaptive.score(schedule, first, limit=far.estimate, calibration=Calibration(plan))
    assert near.fidelity == 24 and near.samples == 16  # only the new samples are generated
    assert near.deltas[8] == far.deltas[8]
    # the extended statistics equal a direct 24-sample run of the schedule
    direct = generate(pipe, protocol.replace(num_samples=24), schedule)
    full = generate(pipe, protocol.replace(num_samples=24))
    feature = DigitFeatures()
    expected = frechet_distance(
        FeatureStats.from_features(extract_features(feature, direct)), real
    ) - frechet_distance(FeatureStats.from_features(extract_features(feature, full)), real)
    assert near.deltas[24] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # a trial that cannot be the answer (a faster one is already within the target) is not climbed
    assert (
        adaptive.score(schedule, first, limit=far.estimate, calibration=Calibration(plan), may_climb=False).fidelity
        == 8
    )


def test_calibration_maps_a_level_onto_the_top_level():
    plan = FidelityPlan((8, 32), min_pairs=3)

    class Record:
        def __init__(self, low, top):
            self.fidelity_deltas = {8: low, 32: top}

    calibration = Calibration.from_records(plan, [Record(x, 0.5 * x + 0.1) for x in (0.0, 0.2, 0.4, 0.8)])
    estimate, sd = calibration.predict(8, 0.6, 0.0)
    assert estimate == pytest.approx(0.4) and sd == pytest.approx(0.0, abs=1e-9)
    assert Calibration(plan).predict(8, 0.6, 0.1) == pytest.approx((0.6, 0.15))  # identity until enough pairs


def test_warm_start_reuses_a_unit_that_barely_changes_and_recomputes_one_that_changes_every_step():
    groups = {"still": ["a", "b"], "busy": ["c"], "mixed": ["d"]}
    steps = 20
    series = {"a": [0.001] * 19, "b": [0.002] * 19, "c": [0.5] * 19, "d": [0.01] * 15 + [0.3] * 4}
    per_unit = {name: {"change": [0.0, *s], "ratio": [1.0] * 20} for name, s in series.items()}
    change = {group: s[1:] for group, s in group_profile(per_unit, groups, steps).change.items()}
    intervals = group_intervals(change, groups, threshold=0.1, max_interval=6, steps=steps)
    assert intervals == {"still": 6, "busy": 1, "mixed": 1}  # the late steps of "mixed" change too much
    assert group_intervals(change, groups, threshold=0.35, max_interval=6, steps=steps)["mixed"] == 2


def test_calibrated_schedules_come_from_a_real_full_compute_run(tiny):
    from autofr.search.space import SearchSpace

    pipe = load_pipeline(str(tiny / "tiny"))
    units = discover_units(pipe)
    protocol = EvalProtocol(
        num_samples=4, seed=0, batch_size=4, num_inference_steps=8, guidance_scale=2.0, num_classes=10
    )
    profile = measure_profile(pipe, protocol, units, 8)
    assert set(profile) == {u.name for u in units}
    assert all(len(p["change"]) == 8 and all(c >= 0 for c in p["change"]) for p in profile.values())
    assert all(len(p["ratio"]) == 8 and all(r > 0 for r in p["ratio"]) for p in profile.values())
    space = SearchSpace.from_config(
        {"grouping": "stage", "max_interval": 4, "steps": [6, 8], "mixing": "choice", "timing": "uniform"},
        units,
        type(pipe.denoiser).__name__,
        "fp",
        8,
    )
    profiles = StepProfiles(
        lambda steps: group_profile(measure_profile(pipe, protocol, units, steps), space.groups, steps)
    )
    entries = calibrated_entries(space, profiles, (8, 6), thresholds=(0.2, 1.0, 5.0), mixing_options=(False, True))
    assert entries and all(origin == "calibrated" for origin, _, _ in entries)
    study = optuna.create_study(directions=["maximize", "minimize"])
    loosest = []
    for _, label, params in entries:
        study.enqueue_trial(params)
        trial = study.ask()
        schedule = space.suggest(trial)
        assert schedule.num_inference_steps in (6, 8)
        if label.startswith("calibrated 5,"):
            loosest.append(max(unit.interval for unit in schedule.units.values()))
        study.tell(trial, (1.0, 1.0))
    assert loosest and max(loosest) > 1  # a loose threshold lets some group reuse


def test_a_search_with_a_target_scores_near_trials_at_more_samples(tiny, tmp_path):
    overrides = [
        f"model.path={tiny / 'tiny'}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "space.steps=[6,8]",
        "space.max_interval=3",
        "space.levels=[sublayer]",  # the schedules these tests reason about: sub-layer intervals
        "space.timing=uniform",
        "quality.proxy=fid_real",
        "quality.fid_reference=real",
        f"quality.real_data={tiny / 'real.npz'}",
        "quality.proxy_samples=8",
        "quality.fid_samples=24",
        "quality.batch_size=8",
        "search.fidelity=[8,24]",
        "search.fidelity_bootstrap=8",
        "search.n_trials=10",
        "search.confirm_max=3",
        "search.fid_seeds=2",
        "search.timing_repeats=1",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        "sampler.n_startup_trials=3",
        "search.target=30%",
        f"storage.journal_path={tmp_path / 'journal.log'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"out_dir={tmp_path / 'out'}",
        f"cache_dir={tmp_path / 'cache'}",
        "study_name=targeted",
    ]
    assert search_cli.main(overrides) == 0
    config = StudyConfig.from_hydra(compose("config", overrides))
    records = StudyRecords.load(optuna.load_study(study_name="targeted", storage=open_storage(config.storage)))
    assert records.info.target == {"kind": "relative", "value": pytest.approx(0.3)}
    completed = records.completed()
    assert len(completed) == 10
    full = records.full_compute()
    assert full.fidelity_deltas == {8: 0.0} and full.constraint < 0  # full compute is exactly itself
    limit = full.fid_estimate * 1.3
    for trial in completed:
        assert trial.values[1] == pytest.approx(trial.fid_estimate)
        assert trial.constraint == pytest.approx(trial.fid_estimate - limit, abs=1e-9)
        assert trial.fidelity in (8, 24) and set(trial.fidelity_deltas) == ({8, 24} if trial.fidelity == 24 else {8})
    assert any(t.origin == "deepcache" for t in records.trials)
    confirmed = records.confirmed()
    assert confirmed and all(len(t.confirmation.fid_seeds) == 2 for t in confirmed)
    assert all(set(t.confirmation.fid_full_seeds) == set(t.confirmation.fid_seeds) for t in confirmed)


def schedule_samplings(monkeypatch) -> list:
    """A list that grows by one each time confirmation samples a schedule (full compute's samples,
    which every confirmation needs at each seed, are not counted)."""
    from autofr.search import confirm as confirm_module

    calls = []
    real_generate = confirm_module.generate

    def counting_generate(pipe, protocol, schedule=None, **kwargs):
        if schedule is not None:
            calls.append(1)
        return real_generate(pipe, protocol, schedule, **kwargs)

    monkeypatch.setattr(confirm_module, "generate", counting_generate)
    return calls


def test_a_confirmation_score_is_computed_once_per_schedule_and_seed(tiny, tmp_path, monkeypatch):
    from autofr.config import ModelSettings, QualitySettings
    from autofr.search.confirm import Confirmer
    from autofr.search.measures import StudyMeasures
    from autofr.search.records import TrialRecord

    pipe = load_pipeline(str(tiny / "tiny"))
    protocol = EvalProtocol(
        num_samples=8, seed=0, batch_size=8, num_inference_steps=STEPS, guidance_scale=2.0, num_classes=10
    )
    measures = StudyMeasures.resolve(
        QualitySettings(proxy="fid_real", real_data=str(tiny / "real.npz"), feature="digits"),
        ModelSettings(name="tiny", path=str(tiny / "tiny"), resolution=16),
    )
    trial = TrialRecord(number=3, state=None, schedule=ReuseSchedule.uniform(pipe, STEPS, 2).to_dict())
    calls = schedule_samplings(monkeypatch)

    def confirmer():
        return Confirmer(
            pipe,
            protocol,
            measures,
            8,
            fid_seeds=2,
            timing_repeats=0,
            cache_dir=tmp_path / "cache",
            model_id="tiny",
        )

    assert confirmer().cached_seeds(trial) == []
    first = confirmer().score(trial)
    assert len(calls) == 2 and set(first.fid_seeds) == {"0", "1"}
    assert confirmer().cached_seeds(trial) == [0, 1]
    again = confirmer().score(trial)  # a new study, a resume: the same scores, nothing sampled
    assert len(calls) == 2 and again.fid_seeds == first.fid_seeds and again.fid_vs_full == first.fid_vs_full
    other = TrialRecord(number=4, state=None, schedule=ReuseSchedule.uniform(pipe, STEPS, 3).to_dict())
    confirmer().score(other)
    assert len(calls) == 4  # another schedule is scored


def _targeted_overrides(tiny, tmp_path, name: str, *extra: str) -> list[str]:
    return [
        f"model.path={tiny / 'tiny'}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "space.steps=[6,8]",
        "space.max_interval=3",
        "space.levels=[sublayer]",
        "space.timing=uniform",
        "quality.proxy=fid_real",
        "quality.fid_reference=real",
        f"quality.real_data={tiny / 'real.npz'}",
        "quality.proxy_samples=8",
        "quality.fid_samples=24",
        "quality.batch_size=8",
        "search.fidelity=[8,24]",
        "search.fidelity_bootstrap=8",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        "sampler.n_startup_trials=3",
        "search.target=30%",
        f"storage.journal_path={tmp_path / 'journal.log'}",
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"out_dir={tmp_path / 'out'}",
        f"cache_dir={tmp_path / 'cache'}",
        f"study_name={name}",
        *extra,
    ]


def test_confirmation_takes_a_climbed_trials_own_fid_at_the_studys_seed(tiny, tmp_path, monkeypatch):
    """A trial scored at N = fid_samples holds FID-N at the study's seed: the confirmation reuses it
    (the same value a fresh sampling gives) and samples only the other seeds; all are timed."""
    from autofr.search.confirm import Confirmer
    from autofr.search.study import AutoFRStudy

    overrides = _targeted_overrides(
        tiny,
        tmp_path,
        "reuse",
        "search.n_trials=5",
        "search.fidelity_z=1000",
        "search.warm_start=false",
        "search.confirm_max=3",
        "search.fid_seeds=2",
        "search.timing_repeats=1",
    )
    assert search_cli.main(overrides) == 0
    config = StudyConfig.from_hydra(compose("config", overrides))
    records = StudyRecords.load(optuna.load_study(study_name="reuse", storage=open_storage(config.storage)))
    climbed = [t for t in records.confirmed() if t.fidelity == 24 and t.origin != "baseline"]
    assert climbed and all(t.fid_vs_full_top is not None for t in climbed)
    study = AutoFRStudy.prepare(config)
    fresh = Confirmer(
        study.model.pipe, study.protocol, study.measures, 24, fid_seeds=2, timing_repeats=0
    )  # no cache, no reuse: both seeds sampled again
    for trial in climbed:
        again = fresh.score(trial)
        assert trial.confirmation.fid_seeds["0"] == pytest.approx(again.fid_seeds["0"], rel=1e-3, abs=1e-4)
        assert trial.confirmation.fid_seeds["1"] == pytest.approx(again.fid_seeds["1"], rel=1e-6)
        assert trial.confirmation.fid_vs_full == pytest.approx(again.fid_vs_full, rel=1e-3, abs=1e-4)
    assert all(t.confirmation.measured_speedup > 0 for t in records.confirmed())
    calls = schedule_samplings(monkeypatch)
    reusing = Confirmer(
        study.model.pipe,
        study.protocol,
        study.measures,
        24,
        fid_seeds=2,
        timing_repeats=0,
        reuse_trial_scores=True,
    )
    assert reusing.score(climbed[0]).fid_seeds == pytest.approx(climbed[0].confirmation.fid_seeds)
    assert len(calls) == 1  # seed 1 only


def test_one_timing_run_measures_fewer_steps_faster_and_full_compute_as_itself(tiny):
    from autofr.search.confirm import interleaved_speedups

    pipe = load_pipeline(str(tiny / "tiny"))
    protocol = EvalProtocol(
        num_samples=8, seed=0, batch_size=8, num_inference_steps=16, guidance_scale=2.0, num_classes=10
    )
    candidates = {
        "full as a schedule": ReuseSchedule.uniform(pipe, 16, 1),
        "4 steps": ReuseSchedule.uniform(pipe, 4, 1),
        "8 steps": ReuseSchedule.uniform(pipe, 8, 1),
    }
    timings = interleaved_speedups(pipe, protocol, candidates, repeats=3, block=2)
    assert set(timings) == set(candidates)
    assert 0.7 < timings["full as a schedule"].speedup < 1.4
    assert timings["4 steps"].speedup > timings["8 steps"].speedup > 1.3
    assert all(t.full_seconds > t.seconds for key, t in timings.items() if key != "full as a schedule")
