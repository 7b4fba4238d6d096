"""The budget rules and trial outcomes of run_worker, in one process on a journal file."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

from autofr.errors import StorageError
from autofr.execution.budget import StaleTrialCheck, claim_budget, retire
from autofr.execution.storage import open_storage
from autofr.execution.workers import open_study, run_worker, wait_for_user_attr

pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage")


@pytest.fixture
def study(tmp_path):
    storage = open_storage({"journal_path": str(tmp_path / "journal.log"), "heartbeat_interval": 1, "grace_period": 2})
    study, created = open_study(
        storage, "budget", ["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    assert created
    return study


def objective(trial):
    x = trial.suggest_float("x", 0.0, 1.0)
    return x, 1.0 - x


def complete_one(study):
    study.add_trial(
        optuna.trial.create_trial(
            params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)}, values=[0.5, 0.5]
        )
    )


def test_objective_errors_and_nans_fail_their_trial_and_do_not_count(study):
    outcomes = iter([RuntimeError("CUDA out of memory"), math.nan, None, None])

    def flaky(trial):
        x = trial.suggest_float("x", 0.0, 1.0)
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return (outcome, 1.0) if outcome is not None else (x, 1.0 - x)

    summary = run_worker(study, flaky, n_trials=2, progress=False)
    assert (summary.completed, summary.failed, summary.study_completed) == (2, 2, 2)
    reasons = [t.user_attrs.get("fail_reason") for t in study.trials if t.state == TrialState.FAIL]
    assert reasons[0] == "RuntimeError: CUDA out of memory" and reasons[1].startswith(
        "ValueError: the objective returned NaN"
    )


def test_an_exception_outside_catch_fails_the_trial_and_stops_the_worker(study):
    def broken(trial):
        raise KeyError("missing")

    with pytest.raises(KeyError):
        run_worker(study, broken, n_trials=3, catch=(ValueError,), progress=False)
    (trial,) = study.trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "KeyError: 'missing'"


def test_timeout_stops_asking_but_finishes_the_trial_in_hand(study):
    def slow(trial):
        time.sleep(0.3)
        return objective(trial)

    summary = run_worker(study, slow, n_trials=100, timeout_s=0.5, progress=False)
    assert summary.timed_out and 1 <= summary.completed <= 3
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_a_trial_runs_only_while_lower_numbered_claims_leave_room(study):
    complete_one(study)  # trial 0: COMPLETE
    study.enqueue_trial({"x": 0.25})  # trial 1: WAITING (may still complete)
    trial = study.ask(fixed_distributions={})  # pops trial 1 ...
    assert trial.number == 1
    study.enqueue_trial({"x": 0.75})  # trial 2: WAITING
    late = study._storage.create_new_trial(study._study_id)  # trial 3: RUNNING, asked last
    check = StaleTrialCheck(study)
    assert claim_budget(study, 3, n_trials=4, stale_trials=check)  # 3 lower claims < 4
    # Budget 3 and trial 1 still RUNNING: trial 3 waits for it; trial 1 fails, so trial 3 may run.
    threading.Timer(0.3, lambda: study.tell(trial, state=TrialState.FAIL)).start()
    started = time.monotonic()
    assert claim_budget(study, 3, n_trials=3, stale_trials=check)
    assert time.monotonic() - started >= 0.25
    # Budget 2: trial 0 COMPLETE and trial 2 WAITING take it, nothing lower runs: trial 3 is retired,
    # and being a plain trial (no planned params) it is not queued again.
    assert not claim_budget(study, 3, n_trials=2, stale_trials=check)
    retire(study, optuna.Trial(study, late))
    retired = study.trials[3]
    assert retired.state == TrialState.PRUNED and retired.user_attrs["over_budget"] is True
    assert len(study.trials) == 4


def test_a_retired_warm_start_goes_back_to_the_queue(study):
    study.enqueue_trial({"x": 0.25}, user_attrs={"warm_start": 0})
    trial = study.ask()
    retire(study, trial)
    requeued = study.trials[-1]
    assert requeued.state == TrialState.WAITING and requeued.user_attrs == {"warm_start": 0}
    assert requeued.system_attrs["fixed_params"] == {"x": 0.25}


def test_a_trial_left_running_without_a_heartbeat_is_failed_and_retried(study):
    orphan = study.ask()  # a worker that died before its first heartbeat
    orphan.suggest_float("x", 0.0, 1.0)
    summary = run_worker(study, objective, n_trials=2, progress=False)
    assert summary.study_completed == 2
    trials = study.trials
    assert trials[orphan.number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == orphan.number)
    assert retry.state == TrialState.COMPLETE and retry.params == trials[orphan.number].params
    assert Counter(t.state for t in trials)[TrialState.COMPLETE] == 2


def test_waiting_for_the_creator_times_out_with_a_hint(study):
    study.set_user_attr("parent_run_id", "abc")
    assert wait_for_user_attr(study, "parent_run_id", timeout_s=1) == "abc"
    with pytest.raises(StorageError, match="may have died while setting it up"):
        wait_for_user_attr(study, "never_set", timeout_s=0.2, poll_s=0.05)
