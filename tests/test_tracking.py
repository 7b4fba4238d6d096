"""MLflow tracking against a real local store: parent and child runs, artifacts, idempotent trial
logging, the study summary, password masking, and a fast one-line error for an unreachable server."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import torch

from autofr.errors import TrackingError
from autofr.masking import mask_url as mask_uri
from autofr.report import study_summary, write_study_report
from autofr.search.records import Confirmation, StudyRecords, TrialRecord
from autofr.tracking import Tracker, flatten_schedule, ui_command
from tests.search.test_front import build_study, schedule_dict

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating MLflow's tables takes seconds)."""
    folder = tmp_path_factory.mktemp("mlflow")
    tracker = Tracker(f"sqlite:///{folder}/nested/mlflow.db", "autofr-test")
    tracker.check()
    return tracker


def artifact_names(tracker: Tracker, run_id: str, path: str | None = None) -> set[str]:
    return {Path(item.path).name for item in tracker.client.list_artifacts(run_id, path)}


def test_parent_and_child_runs_with_artifacts(store, tmp_path):
    parent = store.create_parent_run(
        "study-a", {"storage": {"url": "postgresql://autofr:s3cret@db:5432/optuna"}, "seed": 0}
    )
    assert Path(store.uri[len("sqlite:///") :]).is_file()
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"\x89PNG fake grid")
    schedule = schedule_dict(3, True)
    child = store.log_trial(
        parent,
        7,
        schedule,
        params={f"search.p{i}": i for i in range(150)},
        metrics={"proxy": 0.02, "bad": float("nan")},
        artifacts={"samples.png": grid},
        tags={"autofr.origin": "search"},
    )

    run = store.client.get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["autofr.trial_number"] == "7" and run.info.run_name == "trial-7"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["steps"] == "10" and params["mixing.bias"] == "0.5" and params["mixing.enabled"] == "True"
    assert params["unit.down_blocks.0.resnets.0.interval"] == "3"
    assert len([key for key in params if key.startswith("unit.")]) == 2 * len(schedule["units"])
    assert params["search.p149"] == "149" and len(params) > 150  # more than one MLflow batch
    assert run.data.metrics == {"proxy": 0.02}  # the NaN is skipped
    assert artifact_names(store, child) == {"samples.png", "schedule.json"}
    local = Path(store.client.download_artifacts(child, "schedule.json", str(tmp_path)))
    assert json.loads(local.read_text()) == schedule

    parent_params = store.client.get_run(parent).data.params
    assert parent_params["storage.url"] == "postgresql://autofr:***@db:5432/optuna"
    assert "s3cret" not in json.dumps(parent_params)


def test_logging_a_trial_again_updates_its_run(store):
    parent = store.create_parent_run("study-b")
    first = store.log_trial(
        parent, 3, schedule_dict(2, False), metrics={"proxy": 0.1}, artifacts={"samples.png": b"one"}
    )
    again = store.log_trial(parent, 3, schedule_dict(2, False), metrics={"proxy": 0.1}, status="FINISHED")
    confirmed = store.log_confirmation(parent, 3, Confirmation(fid=12.5, measured_speedup=1.8))
    other = store.log_trial(parent, 4, None, metrics={"proxy": 0.3}, status="FAILED")
    assert first == again == confirmed != other
    assert store.trial_runs(parent) == {3: first, 4: other}
    run = store.client.get_run(first)
    assert run.data.metrics == {"proxy": 0.1, "fid": 12.5, "measured_speedup": 1.8}
    assert run.data.tags["autofr.confirmed"] == "true"
    assert store.client.get_run(other).info.status == "FAILED"


def test_study_trials_and_summary(store, tmp_path):
    study = build_study()
    parent = store.create_parent_run(study.study_name)
    for trial in study.get_trials():
        store.log_trial_record(
            parent, TrialRecord.from_frozen(trial), artifacts={"samples.png": b"grid"} if trial.number == 0 else None
        )
    runs = store.trial_runs(parent)
    assert sorted(runs) == list(range(8))  # every trial once, the failed one included
    failed = store.client.get_run(runs[7])
    assert failed.info.status == "FAILED" and failed.data.tags["autofr.fail_reason"] == "NaN samples"
    baseline = store.client.get_run(runs[0])
    assert baseline.data.tags["autofr.label"] == "full compute" and baseline.data.metrics["proxy.psnr"] == 40

    records = StudyRecords.load(study)
    paths = write_study_report(records, tmp_path / "out")
    store.log_study_summary(parent, records, paths, study_summary(records))
    store.log_study_summary(parent, records, paths, study_summary(records))  # again: no error, no duplicates
    assert all(path.is_file() and path.stat().st_size > 0 for path in paths.values())
    assert artifact_names(store, parent, "summary") == {path.name for path in paths.values()}
    run = store.client.get_run(parent)
    assert run.data.metrics["proxy_fid_spearman"] == 0.9 and run.data.metrics["fid_full_compute"] == 10.0
    assert run.data.metrics["fidelity.psnr.spearman"] == -0.7
    assert run.data.metrics["trials_confirmed"] == 6 and run.data.metrics["speedup_within_5pct_fid"] == 1.95
    assert run.data.tags["autofr.front_trials"] == "0,1,3,2,4"
    history = store.client.get_metric_history(parent, "hypervolume_by_trials")
    assert sorted(m.step for m in history) == list(range(1, 8))
    assert "<html>" in (tmp_path / "out" / "front.html").read_text()[:2000].lower()
    assert (tmp_path / "out" / "front.png").read_bytes()[:4] == b"\x89PNG"


def test_masking_and_ui_command():
    assert mask_uri("postgresql://user:pa:ss@host:5432/db") == "postgresql://user:***@host:5432/db"
    assert mask_uri("see http://u:p@h/x and sqlite:///a.db") == "see http://u:***@h/x and sqlite:///a.db"
    assert mask_uri("http://host:5000") == "http://host:5000"
    assert mask_uri("mysql://h/db?user=a&password=b&x=1") == "mysql://h/db?user=a&password=***&x=1"
    assert (
        ui_command("sqlite:///autofr_outputs/mlflow.db")
        == "mlflow ui --backend-store-uri sqlite:///autofr_outputs/mlflow.db"
    )
    assert "secret" not in ui_command("postgresql://me:secret@db/mlflow")
    assert "secret" not in repr(Tracker("postgresql://me:secret@db/mlflow"))
    assert flatten_schedule({"num_inference_steps": 5, "units": {"a": {"steps": [0, 2]}}})["unit.a.steps"] == "0,2"


def test_unreachable_server_fails_fast_with_one_line():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(TrackingError) as refused:
        Tracker(f"http://user:hunter2@127.0.0.1:{port}", "x").check()
    assert time.monotonic() - started < 10
    message = str(refused.value)
    assert (
        "\n" not in message
        and "hunter2" not in message
        and "connection refused" in message
        and "tracking.uri" in message
    )

    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        started = time.monotonic()
        with pytest.raises(TrackingError, match="no answer in time"):
            Tracker(f"http://127.0.0.1:{silent.getsockname()[1]}", "x").check(timeout_s=2)
        assert time.monotonic() - started < 10
