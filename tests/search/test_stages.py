"""Every stage on the cluster, with real `autofr-search` processes on a tiny model: the workers share the
confirmation items (FID slices, merges, one quiet timing run) on the journal and on PostgreSQL; a worker
killed during confirmation leaves its item to the other and the merged FID equals an uninterrupted
run's; a re-run after an interrupted confirmation does no item twice and times every confirmed point
in one run; `autofr-plan` writes nothing; a device-hour budget cuts confirmation, not correctness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from autofr.execution.storage import open_storage
from autofr.execution.work import WorkerIdentity, WorkQueue
from autofr.search.records import StudyRecords
from tests.cluster.conftest import finish, fresh_postgres_url, stop_all, wait_until  # noqa: F401  (a fixture)
from tests.conftest import save_tiny_digit_pipeline, tiny_study_overrides

FAST_HEARTBEAT = ["storage.heartbeat_interval=1", "storage.grace_period=4"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    save_tiny_digit_pipeline(root / "tiny")
    return root


class Study:
    """One study of the tiny model: its command line, its storage and its work queue."""

    def __init__(self, tiny: Path, tmp_path: Path, url: str | None = None, name: str | None = None):
        self.tiny, self.tmp, self.url = tiny, tmp_path, url
        self.name = name or f"stages_{uuid.uuid4().hex[:6]}"
        self.journal = tmp_path / "journal.log"

    def overrides(self, *extra: str) -> list[str]:
        storage = ["storage=postgres"] if self.url else [f"storage.journal_path={self.journal}"]
        return [
            *tiny_study_overrides(self.tiny / "tiny"),
            "quality.fid_samples=64",
            "search.n_trials=4",  # warm starts only: the same candidates in every study
            "search.peers=off",
            "search.fid_seeds=2",
            "search.fid_slice=16",
            "search.timing_repeats=1",
            "search.speed_model=macs",
            "search.progress=false",
            f"tracking.uri=sqlite:///{self.tmp / 'mlflow.db'}",
            f"out_dir={self.tmp / 'out'}",
            f"cache_dir={self.tmp / 'cache'}",
            f"study_name={self.name}",
            *storage,
            *FAST_HEARTBEAT,
            *extra,
        ]

    def start(self, *extra: str) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if self.url:
            env["AUTOFR_STORAGE_URL"] = self.url
        return subprocess.Popen(
            [sys.executable, "-m", "autofr.cli.search", *self.overrides(*extra)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def storage(self):
        cfg = {"url": self.url, "journal_path": str(self.journal), "heartbeat_interval": 1, "grace_period": 4}
        return open_storage(cfg)

    def queue(self) -> WorkQueue:
        return WorkQueue.open(self.storage(), self.name, WorkerIdentity.current("observer"))

    def records(self) -> StudyRecords:
        import optuna

        return StudyRecords.load(optuna.load_study(study_name=self.name, storage=self.storage()))


def completed(queue: WorkQueue) -> Counter:
    return Counter(r.item.key for r in queue.records() if r.state is TrialState.COMPLETE)


def fids_by_schedule(records: StudyRecords) -> dict[str, tuple[float, float]]:
    return {t.schedule_key(): (t.confirmation.fid, t.confirmation.fid_vs_full) for t in records.confirmed()}


def check_confirmed_once_and_timed_together(study: Study) -> StudyRecords:
    queue = study.queue()
    done = completed(queue)
    assert done and set(done.values()) == {1}, done  # no item twice
    assert all(state.status == "done" for state in queue.keys().values())
    records = study.records()
    confirmed = records.confirmed()
    assert len(confirmed) >= 3
    assert all(t.confirmation.measured_speedup for t in confirmed)  # every confirmed point has a speed,
    (timing,) = [r for r in queue.records() if r.item.stage == "timing" and r.state is TrialState.COMPLETE]
    assert sorted(map(int, timing.result["timings"])) == sorted(t.number for t in confirmed)  # from one timing run
    assert timing.result["device"] == "cpu"
    assert records.info.timing_device == "cpu"
    return records


def run_two_workers(study: Study) -> str:
    code, out, err = finish(study.start("search.workers=2"), timeout=400)
    assert code == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def shared(tiny, tmp_path_factory) -> tuple[Study, str]:
    """An uninterrupted study of two local workers on the journal, and its output."""
    study = Study(tiny, tmp_path_factory.mktemp("shared"))
    return study, run_two_workers(study)


def check_shared(study: Study, out: str) -> None:
    assert "plan: 2 workers on cpu" in out and "confirmation" in out and "stage fid.slice" in out
    assert "confirmed points timed on cpu" in out
    queue = study.queue()
    workers = {r.worker["pid"] for r in queue.records() if r.item.stage.startswith("fid.") and r.worker}
    assert len(workers) == 2  # both took confirmation items
    records = check_confirmed_once_and_timed_together(study)

    # the FIDs merged from slices are those of scoring each candidate whole in one process
    from autofr.cli._config import compose
    from autofr.config import StudyConfig
    from autofr.search.study import AutoFRStudy

    if study.url:
        os.environ["AUTOFR_STORAGE_URL"] = study.url
    try:
        config = StudyConfig.from_hydra(compose("config", study.overrides()))
    finally:
        os.environ.pop("AUTOFR_STORAGE_URL", None)
    torch.set_num_threads(1)
    confirmer = AutoFRStudy.prepare(config).confirmer()
    confirmer._cache = None  # score again, not from the cache the stages filled
    for trial in records.confirmed()[:3]:
        whole = confirmer.score(trial)
        assert trial.confirmation.fid_seeds == pytest.approx(whole.fid_seeds, rel=1e-6, abs=1e-9)
        assert trial.confirmation.fid_vs_full == pytest.approx(whole.fid_vs_full, rel=1e-6, abs=1e-9)


def test_two_workers_share_the_confirmation_items_on_the_journal(shared):
    check_shared(*shared)


def test_two_workers_share_the_confirmation_items_on_postgres(tiny, tmp_path, request):
    study = Study(tiny, tmp_path, url=request.getfixturevalue("fresh_postgres_url"))
    check_shared(study, run_two_workers(study))


def test_a_killed_workers_item_goes_to_the_other_and_a_rerun_finishes_without_repeats(tiny, tmp_path, shared):
    """SIGKILL one worker during confirmation: the other takes its item after the grace period. Then
    SIGKILL the other too and run the command again: it resumes, does no item twice, times every
    confirmed point in one run, and the merged FIDs equal the uninterrupted study's."""
    study = Study(tiny, tmp_path)
    victim, survivor = study.start("+worker_only=true"), study.start("+worker_only=true")
    try:
        running = wait_until(
            lambda: next(
                (
                    r
                    for r in _records_or_none(study)
                    if r.item.stage == "fid.slice"
                    and r.state is TrialState.RUNNING
                    and r.worker
                    and r.worker["pid"] == victim.pid
                ),
                None,
            ),
            300,
            "the victim to sample an FID slice",
            interval=0.05,
        )
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        redone = wait_until(
            lambda: next(
                (
                    r
                    for r in _records_or_none(study)
                    if r.item.key == running.item.key and r.state is TrialState.COMPLETE
                ),
                None,
            ),
            120,
            "the survivor to take the victim's item",
            interval=0.05,
        )
        assert redone.worker["pid"] == survivor.pid
        interrupted = survivor.poll() is None
        if interrupted:
            survivor.send_signal(signal.SIGKILL)
            survivor.communicate()
        code, out, err = finish(study.start(), timeout=300)  # the same command again
    finally:
        stop_all([victim, survivor])
    assert code == 0, err[-3000:]
    copies = [r for r in study.queue().records() if r.item.key == running.item.key]
    assert [c.state for c in copies].count(TrialState.FAIL) == 1  # the victim's copy, failed after the grace
    records = check_confirmed_once_and_timed_together(study)
    assert fids_by_schedule(records) == fids_by_schedule(shared[0].records())  # merged FID: equal


def _records_or_none(study: Study):
    try:
        return study.queue().records()
    except Exception:  # the storage or the study does not exist yet
        return []


def test_autofr_plan_writes_nothing_and_exits_0(tiny, tmp_path, capsys):
    from autofr.cli import plan as plan_cli

    study = Study(tiny, tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert plan_cli.main([*study.overrides("search.workers=4"), "search.max_device_hours=0.0001"]) == 0
    out = capsys.readouterr().out
    assert "plan: 4 workers on cpu" in out and "confirmation" in out and "device-h" in out
    assert "search.max_device_hours=0.0001 cuts:" in out
    assert sorted(tmp_path.rglob("*")) == before  # no study, run, cache or output


def test_a_budget_below_the_plan_cuts_confirmation_not_correctness(tiny, tmp_path):
    study = Study(tiny, tmp_path)
    code, out, err = finish(study.start("search.max_device_hours=0.0002", "search.confirm_max=6"), timeout=300)
    assert code == 0, err[-3000:]
    assert "cut by search.max_device_hours" in out
    records = study.records()
    assert records.info.budget["cuts"]
    confirmed = records.confirmed()
    assert 1 <= len(confirmed) < 6
    assert any(t.origin.is_full_compute for t in confirmed)  # full compute stays: every comparison needs it
    assert all(t.confirmation.measured_speedup for t in confirmed)


def test_a_bad_budget_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    from autofr.cli import plan as plan_cli

    study = Study(tiny, tmp_path)
    assert plan_cli.main([*study.overrides(), "search.max_device_hours=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.max_device_hours" in err[0]
