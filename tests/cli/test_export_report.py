"""autofr-export and autofr-report end to end on a constructed study in a journal file."""

from __future__ import annotations

import json

import optuna
import pytest
import torch

from autofr.cli import export as export_cli
from autofr.cli import report as report_cli
from autofr.schedule import ReuseSchedule
from tests.search.test_front import build_study

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    path = tmp_path_factory.mktemp("storage") / "optuna_journal.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    build_study(storage=storage, study_name="frstudy")
    tracked = build_study(storage=storage, study_name="tracked")
    tracked.set_user_attr("mlflow_parent_run_id", "0123456789abcdef")
    return path


@pytest.fixture
def overrides(journal, tmp_path, monkeypatch):
    monkeypatch.delenv("AUTOFR_STORAGE_URL", raising=False)
    return [
        f"storage.journal_path={journal}",
        "study_name=frstudy",
        f"out_dir={tmp_path}/out",
        f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
    ]


def run(main, argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_writes_the_chosen_schedule(overrides, tmp_path, capsys):
    code, out, err = run(export_cli.main, overrides, capsys)
    assert code == 0, err
    assert "trial 3 (search) chosen by fastest_within (FID within 5% of full compute)" in out
    assert "1.95x measured (2.00x predicted)" in out and "10.45" in out
    path = tmp_path / "out" / "schedule.json"
    assert f"wrote {path}" in out
    schedule = ReuseSchedule.from_json(path)
    provenance = schedule.provenance
    assert provenance["study"] == "frstudy" and provenance["trial"] == 3 and provenance["policy"] == "fastest_within"
    assert (
        provenance["fid"] == 10.45
        and provenance["measured_speedup"] == 1.95
        and provenance["fid_full_compute"] == 10.0
    )
    assert schedule.mixing is not None and schedule.units["down_blocks.0.resnets.0"].interval == 2


@pytest.mark.parametrize(
    "extra, trial",
    [
        (["export.policy=knee"], 2),
        (["export.policy=best_at_speedup", "export.min_speedup=1.6"], 3),
        (["export.delta_abs=0.35"], 1),
        (["export.measure=proxy", "export.policy=best_at_speedup", "export.min_speedup=2.9"], 4),
    ],
)
def test_export_policies(overrides, tmp_path, capsys, extra, trial):
    target = tmp_path / "chosen.json"
    code, out, err = run(export_cli.main, [*overrides, *extra, f"export.out={target}"], capsys)
    assert code == 0, err
    assert json.loads(target.read_text())["provenance"]["trial"] == trial


@pytest.mark.parametrize(
    "extra, message",
    [
        (["export.delta=0"], "raise export.delta"),
        (["export.polcy=knee"], "export.polcy"),
        (["export.policy=fastest"], "use one of fastest_within"),
        (["study_name=nope"], "no study 'nope' in the Optuna storage"),
    ],
)
def test_export_errors_are_one_line_and_write_nothing(overrides, tmp_path, capsys, extra, message):
    code, out, err = run(export_cli.main, [*overrides, *extra], capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_missing_journal_is_one_line_and_creates_nothing(overrides, tmp_path, capsys):
    missing = tmp_path / "no" / "journal.log"
    code, _, err = run(report_cli.main, [*overrides, f"storage.journal_path={missing}"], capsys)
    assert code == 2 and "no Optuna journal at" in err and err.count("\n") == 1
    assert not missing.parent.exists()


def test_report_prints_the_table_and_writes_plots(overrides, tmp_path, capsys):
    code, out, err = run(report_cli.main, overrides, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert "study 'frstudy' (tiny_unet): 7 complete, 1 failed, 6 confirmed with fid_1000" in lines[0]
    header = next(line for line in lines if line.startswith("trial"))
    assert "FID vs full" in header and any("FRDiff M=3 +mixing" in line for line in lines)
    assert "Spearman 0.90, Kendall 0.80" in out
    for name in (
        "front.png",
        "front.html",
        "front_table.csv",
        "front_table.md",
        "hypervolume.png",
        "proxy_fidelity.md",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert not (tmp_path / "mlflow.db").exists()  # no parent run: tracking untouched


def test_report_without_its_tracking_store_notes_it_and_creates_none(overrides, tmp_path, capsys):
    code, out, err = run(report_cli.main, [*overrides, "study_name=tracked", "report.all_trials=true"], capsys)
    assert code == 0
    assert "no MLflow store at" in err and "plots written locally only" in err
    assert not (tmp_path / "mlflow.db").exists()
    assert sum(1 for line in out.splitlines() if line.endswith(("search", "*")) or "search " in line) >= 4


def test_report_logs_to_the_study_parent_run(journal, overrides, tmp_path, capsys):
    from autofr.tracking import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "autofr")
    parent = tracker.create_parent_run("logged")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    build_study(storage=storage, study_name="logged").set_user_attr("mlflow_parent_run_id", parent)
    code, out, err = run(report_cli.main, [*overrides, "study_name=logged"], capsys)
    assert code == 0, err
    assert (
        f"logged to MLflow run {parent}; browse: mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db" in out
    )
    logged = {item.path for item in tracker.client.list_artifacts(parent, "summary")}
    assert "summary/front.png" in logged and "summary/proxy_fidelity.md" in logged
