"""Several worker processes on one study: global budget, warm starts, killed and interrupted workers,
resume, and local worker processes (spawn_local_workers)."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from optuna.trial import TrialState

from .conftest import finish, running_trial_of, start_together, stop_all, wait_until


def retries_of(trials, number):
    return [trial for trial in trials if trial.system_attrs.get("failed_trial") == number]


def test_three_workers_complete_exactly_the_global_budget(backend, tmp_path):
    n_trials = 8
    workers = start_together(
        backend,
        3,
        f"search.n_trials={n_trials}",
        "sleep_s=0.3",
        "warm_starts=3",
        "fail_numbers=[4]",
        tmp_path=tmp_path,
    )
    try:
        results = [finish(worker) for worker in workers]
    finally:
        stop_all(workers)
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-1500:] for _, _, err in results]
    assert sum("created=True" in out for _, out, _ in results) == 1  # one creator, two loaders

    trials = backend.study().get_trials()
    states = Counter(trial.state for trial in trials)
    assert states[TrialState.COMPLETE] == n_trials
    assert [trial.number for trial in trials] == list(range(len(trials)))
    failed = [trial for trial in trials if trial.state == TrialState.FAIL]
    assert [trial.number for trial in failed] == [4]
    assert failed[0].user_attrs["fail_reason"] == "ValueError: trial 4 was asked to fail"
    # Enqueued once by the creator, each warm start ran once, with its planned params.
    warm = {trial.user_attrs["warm_start"]: trial for trial in trials if "warm_start" in trial.user_attrs}
    assert sorted(trial.user_attrs["warm_start"] for trial in trials if "warm_start" in trial.user_attrs) == [0, 1, 2]
    assert all(warm[i].state == TrialState.COMPLETE and warm[i].params["x"] == (i + 0.5) / 3 for i in range(3))
    # The work was shared, and a trial that lost the race for the budget is marked so.
    assert len({trial.user_attrs["worker_pid"] for trial in trials if trial.state == TrialState.COMPLETE}) >= 2
    assert all(trial.user_attrs.get("over_budget") for trial in trials if trial.state == TrialState.PRUNED)
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0


def test_a_killed_workers_trial_is_failed_and_retried_by_another(backend, tmp_path):
    n_trials = 8  # enough work that a slow-starting victim still gets a trial on a loaded machine
    workers = start_together(backend, 3, f"search.n_trials={n_trials}", "sleep_s=2", tmp_path=tmp_path)
    victim, others = workers[0], workers[1:]
    try:
        killed = wait_until(running_trial_of(backend, victim.pid), 60, "the victim to run a trial")
        victim.send_signal(signal.SIGKILL)
        victim.communicate()
        results = [finish(worker) for worker in others]
    finally:
        stop_all(workers)
    assert [code for code, _, _ in results] == [0, 0], [err[-1500:] for _, _, err in results]

    trials = backend.study().get_trials()
    assert trials[killed.number].state == TrialState.FAIL  # failed by a live worker after the grace period
    retries = retries_of(trials, killed.number)
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[killed.number].params  # same params,
    assert retries[0].user_attrs["first_worker_pid"] == victim.pid  # user attrs copied,
    assert retries[0].user_attrs["worker_pid"] != victim.pid  # run by another worker
    assert Counter(trial.state for trial in trials)[TrialState.COMPLETE] == n_trials


def test_sigterm_fails_the_running_trial_and_a_rerun_resumes(backend):
    first = backend.start("search.n_trials=3", "sleep_s=60", "warm_starts=1")
    try:
        running = wait_until(running_trial_of(backend, first.pid), 60, "the worker to run a trial")
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first, timeout=30)
    finally:
        stop_all([first])
    assert code == 130, err[-1500:]
    trials = backend.study().get_trials()
    interrupted = trials[running.number]
    assert interrupted.state == TrialState.FAIL
    assert interrupted.user_attrs["fail_reason"] == "interrupted"
    assert [trial.state for trial in retries_of(trials, running.number)] == [TrialState.WAITING]

    code, out, err = finish(backend.start("search.n_trials=3", "sleep_s=0.05", "warm_starts=1"))
    assert code == 0, err[-1500:]
    assert "created=False" in out  # the same study, loaded: nothing enqueued again
    trials = backend.study().get_trials()
    assert [trial.number for trial in trials] == list(range(len(trials)))
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    assert len(complete) == 3
    assert all(trial.number > interrupted.number for trial in complete)  # numbers continue
    (retry,) = retries_of(trials, running.number)
    assert retry.state == TrialState.COMPLETE and retry.params == interrupted.params
    assert "fail_reason" not in retry.user_attrs  # the copy is of the trial before it failed
    assert [trial.user_attrs.get("warm_start") for trial in complete].count(0) == 1  # the warm start, once


def test_ctrl_c_fails_the_running_trial(journal_backend):
    worker = journal_backend.start("search.n_trials=2", "sleep_s=60")
    try:
        running = wait_until(running_trial_of(journal_backend, worker.pid), 60, "the worker to run a trial")
        worker.send_signal(signal.SIGINT)
        code, _, err = finish(worker, timeout=30)
    finally:
        stop_all([worker])
    assert code == 130, err[-1500:]
    trial = journal_backend.study().get_trials()[running.number]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"


def test_local_workers_share_one_budget(journal_backend):
    code, out, err = finish(journal_backend.start("search.workers=3", "search.n_trials=6", "sleep_s=0.3"))
    assert code == 0, err[-1500:]
    assert out.count("created=") == 3 and out.count("created=True") == 1
    trials = journal_backend.study().get_trials()
    assert Counter(trial.state for trial in trials)[TrialState.COMPLETE] == 6


def test_sigterm_reaches_every_local_worker(journal_backend):
    parent = journal_backend.start("search.workers=2", "search.n_trials=4", "sleep_s=60")

    def two_running():
        try:
            trials = journal_backend.study().get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except KeyError:
            return None
        return trials if len({trial.user_attrs.get("worker_pid") for trial in trials} - {None}) == 2 else None

    try:
        running = wait_until(two_running, 60, "both local workers to run a trial")
        parent.send_signal(signal.SIGTERM)
        code, _, err = finish(parent, timeout=30)
    finally:
        stop_all([parent])
    assert code == 130, err[-1500:]
    trials = journal_backend.study().get_trials()
    for trial in running:
        assert trials[trial.number].state == TrialState.FAIL
        assert trials[trial.number].user_attrs["fail_reason"] == "interrupted"
    assert not any(trial.state == TrialState.RUNNING for trial in trials)


@pytest.mark.parametrize("n_trials", [0, -1])
def test_a_budget_below_one_is_a_config_error(journal_backend, n_trials):
    code, _, err = finish(journal_backend.start(f"search.n_trials={n_trials}"))
    assert code == 2
    assert err.strip().splitlines() == [f"error: search.n_trials must be a whole number >= 1, not {n_trials}"]


def test_spawn_local_workers_takes_a_whole_command_line_and_reports_failures(journal_backend, monkeypatch):
    import sys

    from autofr.execution import spawn_local_workers

    from .conftest import WORKER

    for key, value in journal_backend.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AUTOFR_STORAGE_URL", raising=False)
    command = [sys.executable, str(WORKER), *journal_backend.overrides(), "search.n_trials=4", "sleep_s=0.1"]
    assert spawn_local_workers(command + ["search.workers=2"], 2) == 0
    assert Counter(t.state for t in journal_backend.study().get_trials())[TrialState.COMPLETE] == 4
    assert spawn_local_workers(command + ["search.n_trials=0"], 2) == 2  # both exit 2: a config error
