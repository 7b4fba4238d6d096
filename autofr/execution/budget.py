"""The exact global budget: ``n_trials`` COMPLETE trials over all workers, never more.

FAIL and PRUNED trials do not count. Trial numbers come from the storage in one global order, and

1. a worker asks for a trial only while COMPLETE + RUNNING < n_trials. Otherwise it waits (a running
   trial may still fail and need a replacement) and stops once COMPLETE reaches n_trials, or at
   ``timeout_s`` (:func:`wait_for_open_slot`);
2. before running trial k, it counts the trials numbered below k that are COMPLETE, RUNNING or
   WAITING (each may still complete). Below n_trials: trial k runs (:func:`claim_budget`). So when
   trial k completes, at most n_trials - 1 lower trials can; the highest completed trial bounds the
   total by n_trials;
3. otherwise it waits while a lower trial is RUNNING. Each one completes, fails, or is failed by the
   heartbeat check; as soon as the count drops below n_trials, trial k runs. If it cannot (the
   budget is met, or no lower trial runs any more), trial k is *retired* (:func:`retire`): state
   PRUNED, user attr ``over_budget=True``, never counted; if it carried planned params (a warm start
   or a retry) a WAITING copy is enqueued, so nothing planned is lost. This happens only when
   workers race at the end of a study.

Each decision reads one snapshot of the study (``get_trials(deepcopy=False)``: the journal replays
only new lines, an RDB storage sits behind Optuna's trial cache), so a worker's bookkeeping per trial
stays flat as the study grows (``bench/coordination.py``). Idle waits poll with a backoff.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from autofr.execution import _optuna

logger = logging.getLogger(__name__)

OVER_BUDGET_ATTR = "over_budget"
# How often an idle worker looks at the study again: from POLL_INTERVAL_S up to MAX_POLL_INTERVAL_S.
POLL_INTERVAL_S = 0.5
MAX_POLL_INTERVAL_S = 4.0

_LIVE = (TrialState.COMPLETE, TrialState.RUNNING)


class Backoff:
    """Sleeps that grow by half each time, from ``first`` to ``longest`` seconds."""

    def __init__(self, first: float = POLL_INTERVAL_S, longest: float = MAX_POLL_INTERVAL_S):
        self._next = first
        self._longest = longest

    def sleep(self) -> None:
        time.sleep(self._next)
        self._next = min(self._longest, self._next * 1.5)


def wait_for_open_slot(study: optuna.Study, n_trials: int, deadline: float | None, progress, stale_trials) -> bool:
    """Wait until a new trial may be asked for (True), or the budget is met / time is up (False)."""
    backoff = Backoff()
    while True:
        stale_trials.check()
        live = study.get_trials(deepcopy=False, states=_LIVE)
        completed = sum(trial.state == TrialState.COMPLETE for trial in live)
        progress.show(completed, running=len(live) - completed)
        if completed >= n_trials or (deadline is not None and time.monotonic() >= deadline):
            return False
        if len(live) < n_trials:
            return True
        backoff.sleep()


def claim_budget(study: optuna.Study, number: int, n_trials: int, stale_trials) -> bool:
    """True: trial ``number`` may run; False: the budget is taken (rules 2 and 3 above)."""
    backoff = Backoff()
    while True:
        completed = lower_claims = lower_running = 0
        for trial in study.get_trials(deepcopy=False):
            completed += trial.state == TrialState.COMPLETE
            if trial.number < number and trial.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
                lower_claims += 1
                lower_running += trial.state == TrialState.RUNNING
        if lower_claims < n_trials:
            return True
        if completed >= n_trials or lower_running == 0:
            return False
        backoff.sleep()
        stale_trials.check()


def retire(study: optuna.Study, trial: optuna.Trial) -> None:
    """Trial ``trial`` lost the race for the budget: PRUNED + ``over_budget``; planned params go back
    to the queue."""
    snapshot = snapshot_of(study, trial)
    try:
        trial.set_user_attr(OVER_BUDGET_ATTR, True)
    except UpdateFinishedTrialError:
        return
    if tell_once(study, trial, TrialState.PRUNED) is None:
        return
    logger.info("trial %d retired: the budget is taken by lower-numbered trials", trial.number)
    if snapshot.params or "fixed_params" in snapshot.system_attrs:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=snapshot.params,
                distributions=snapshot.distributions,
                user_attrs=snapshot.user_attrs,
                system_attrs=snapshot.system_attrs,
            )
        )


def tell_once(study, trial, state: TrialState, values: list[float] | None = None) -> FrozenTrial | None:
    """Finish ``trial``; None when another worker had already failed it (its heartbeat went stale)."""
    frozen = study.tell(trial, values, state=state, skip_if_finished=True)
    if frozen.state != state:
        logger.warning(
            "trial %d was already %s (its heartbeat was older than the grace period, so another worker "
            "failed and retried it); this worker's result is dropped",
            trial.number,
            frozen.state.name,
        )
        return None
    return frozen


def snapshot_of(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """A private copy of the trial as stored (the journal storage hands out its live objects)."""
    return copy.deepcopy(_optuna.study_storage(study).get_trial(_optuna.trial_id(trial)))


class StaleTrialCheck:
    """Optuna's ``fail_stale_trials`` (fail dead workers' trials, enqueue their retries), run at
    most once per heartbeat interval: staleness changes no faster, and each check is a query."""

    def __init__(self, study: optuna.Study):
        self._study = study
        storage = _optuna.study_storage(study)
        self._interval = storage.get_heartbeat_interval() if _optuna.heartbeat_enabled(storage) else None
        self._last = -math.inf

    def check(self) -> None:
        if self._interval is None or time.monotonic() - self._last < self._interval:
            return
        self._last = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(self._study)
