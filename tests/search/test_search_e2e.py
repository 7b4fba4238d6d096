"""A short study on a tiny model, end to end: search -> MLflow -> export -> apply reproduces the trial."""

import json
from pathlib import Path

import mlflow
import optuna
import pytest
import torch

import autofr
from autofr.cli import export as export_cli
from autofr.cli import search as search_cli
from autofr.cli._config import compose
from autofr.config import StudyConfig
from autofr.evaluation import generate
from autofr.execution.storage import open_storage
from autofr.images import sample_grid_png
from autofr.quality import ReferenceCache, build_measure
from autofr.search.study import load_model, protocol_for
from tests.conftest import save_tiny_digit_pipeline, tiny_study_overrides

N_TRIALS = 10


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    save_tiny_digit_pipeline(root / "tiny")
    return root


def overrides(root: Path, *extra: str) -> list[str]:
    return [
        *tiny_study_overrides(root / "tiny"),
        "quality.fid_samples=16",
        f"search.n_trials={N_TRIALS}",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        "sampler.n_startup_trials=4",
        f"storage.journal_path={root / 'journal.log'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"out_dir={root / 'out'}",
        f"cache_dir={root / 'cache'}",
        "study_name=tiny_e2e",
        *extra,
    ]


@pytest.fixture(scope="module")
def searched(workdir):
    torch.set_num_threads(1)
    # make one trial produce NaN samples: the study must record it as failed and go on
    from autofr.search import objective as objective_module

    call = objective_module.Objective.__call__

    def poisoned(self, trial):
        if trial.number == 8:
            weight = self.pipe.denoiser.conv_out.weight
            saved = weight.detach().clone()
            with torch.no_grad():
                weight.fill_(float("nan"))
            try:
                return call(self, trial)
            finally:
                with torch.no_grad():
                    weight.copy_(saved)
        return call(self, trial)

    objective_module.Objective.__call__ = poisoned
    try:
        code = search_cli.main(overrides(workdir))
    finally:
        objective_module.Objective.__call__ = call
    assert code == 0
    cfg = compose("config", overrides(workdir))
    study = optuna.load_study(study_name="tiny_e2e", storage=open_storage(cfg.storage))
    return cfg, study


def test_search_completes_its_budget_despite_a_nan_trial(searched):
    cfg, study = searched
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == N_TRIALS
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1 and failed[0].number == 8
    assert "NaN" in failed[0].user_attrs["fail_reason"] or "nan" in failed[0].user_attrs["fail_reason"]
    labels = {t.user_attrs.get("label") for t in study.trials}
    assert {"full compute", "FRDiff M=2", "FRDiff M=3 +mixing"} <= labels
    baseline = next(t for t in study.trials if t.user_attrs.get("origin") == "baseline")
    assert baseline.values[0] == pytest.approx(1.0) and baseline.values[1] == pytest.approx(0.0, abs=1e-12)
    confirmed = [k for k in study.user_attrs if k.startswith("confirmed:")]
    assert confirmed, "front candidates were confirmed with FID"
    assert "fid" in study.user_attrs[confirmed[0]]


def test_mlflow_holds_the_parent_and_every_trial_once(searched):
    cfg, study = searched
    client = mlflow.MlflowClient(cfg.tracking.uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000
    )
    numbers = [int(run.data.tags["autofr.trial_number"]) for run in children]
    assert len(numbers) == len(set(numbers)) == len(study.trials)
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert len(finished) == N_TRIALS
    run = finished[0]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert any(p.endswith(".json") for p in artifacts) and any(p.endswith(".png") for p in artifacts)
    assert any(key.startswith("unit.") or key.startswith("interval") or "steps" in key for key in run.data.params)
    parent_artifacts = {a.path for a in client.list_artifacts(parent)}
    assert parent_artifacts, "the study summary (front plot, table) is logged to the parent run"


def test_export_then_apply_reproduces_the_trial(searched, workdir):
    cfg, study = searched
    out = workdir / "exported.json"
    code = export_cli.main(
        overrides(
            workdir,
            "export.policy=best_at_speedup",
            "export.min_speedup=1.0",
            "export.measure=proxy",
            f"export.out={out}",
        )
    )
    assert code == 0 and out.is_file()
    data = json.loads(out.read_text())
    number = data["provenance"]["trial"]
    trial = study.trials[number]
    assert data["units"] == trial.user_attrs["schedule"]["units"]
    # a freshly loaded pipeline with the exported schedule gives the trial's samples again
    config = StudyConfig.from_hydra(cfg)
    pipe = load_model(config.model)
    protocol = protocol_for(config)
    reference = ReferenceCache(cfg.cache_dir).samples(pipe, protocol, model_id=cfg.model.name)
    schedule = autofr.ReuseSchedule.from_json(out)
    samples = generate(pipe, protocol.replace(num_inference_steps=schedule.num_inference_steps), schedule)
    proxy = build_measure(cfg.quality.proxy, reference=reference).score(samples)
    assert proxy == pytest.approx(trial.user_attrs["proxy"], rel=1e-6, abs=1e-9)
    client = mlflow.MlflowClient(cfg.tracking.uri)
    run_id = trial.user_attrs.get("mlflow_run_id") or next(
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
            f"tags.autofr.trial_number = '{number}'",
        )
    )
    grid = next(a.path for a in client.list_artifacts(run_id) if a.path.endswith(".png"))
    logged = Path(client.download_artifacts(run_id, grid, str(workdir))).read_bytes()
    assert logged == sample_grid_png(samples.images)


def test_unreachable_tracking_fails_before_any_trial(workdir, capsys):
    root = workdir / "unreachable"
    code = search_cli.main(overrides(root, "tracking.uri=http://127.0.0.1:9", "study_name=never"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "127.0.0.1:9" in err
    assert not (root / "journal.log").exists()


def test_bad_override_fails_before_any_trial(workdir, capsys):
    code = search_cli.main(
        overrides(
            workdir,
            "space.grouping=layers",
            f"tracking.uri=sqlite:///{workdir / 'bad.db'}",
            f"storage.journal_path={workdir / 'bad.log'}",
        )
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "grouping" in err
    assert not (workdir / "bad.db").exists() and not (workdir / "bad.log").exists()
    code = search_cli.main(["no_such_key=3"])
    assert code == 2 and "no_such_key" in capsys.readouterr().err


def test_a_repeated_schedule_is_scored_once(workdir, monkeypatch):
    from autofr.cost import measure_cost
    from autofr.reuse import discover_units, model_fingerprint, resolve_denoiser
    from autofr.search import objective as objective_module
    from autofr.search.measures import StudyMeasures
    from autofr.search.objective import Objective
    from autofr.search.space import SearchSpace
    from autofr.search.speed import SpeedModel

    cfg = compose("config", overrides(workdir))
    config = StudyConfig.from_hydra(cfg)
    pipe = load_model(config.model)
    denoiser = resolve_denoiser(pipe)
    units = discover_units(denoiser)
    space = SearchSpace.from_config(cfg.space, units, type(denoiser).__name__, model_fingerprint(denoiser, units), 8)
    protocol = protocol_for(config)
    reference = ReferenceCache(workdir / "dup_cache").samples(pipe, protocol, model_id="tiny")
    measures = StudyMeasures("latent_mse", ("ssim",), {"feature": "digits"}, threshold=0.5)
    objective = Objective(pipe, space, protocol, reference, measures, SpeedModel(measure_cost(denoiser, units), 8))
    calls = []
    real_generate = objective_module.generate
    monkeypatch.setattr(objective_module, "generate", lambda *a, **k: calls.append(1) or real_generate(*a, **k))
    study = optuna.create_study(directions=["maximize", "minimize"])
    params = space.params_for_uniform(2, False, steps=6)
    for _ in range(2):
        study.enqueue_trial(params)
    study.enqueue_trial(space.params_for_uniform(3, False, steps=6))
    study.optimize(objective, n_trials=3)
    first, twin, other = study.trials
    assert len(calls) == 2  # the twin was not sampled again
    assert twin.values == first.values and twin.user_attrs["duplicate_of"] == first.number
    assert twin.user_attrs["proxy_metrics"] == first.user_attrs["proxy_metrics"]
    assert twin.constraints == first.constraints and first.constraints
    assert objective.grids[twin.number] == objective.grids[first.number]
    assert "duplicate_of" not in other.user_attrs and other.values != first.values
