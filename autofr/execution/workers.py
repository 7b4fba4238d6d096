"""Workers: many processes, one study, one global trial budget.

Any number of processes run one study together: local processes from :func:`spawn_local_workers`
(``autofr-search search.workers=4``), SLURM array jobs from the submitit launcher
(``autofr-search -m hydra/launcher=slurm storage=postgres +worker='range(8)'``), or
commands started by hand on several machines. Each does::

    storage = open_storage(cfg.storage)
    study, created = open_study(storage, cfg.study_name, directions=["maximize", "minimize"], sampler=sampler)
    if created:          # True in exactly one process, even when all start at once
        enqueue warm starts; create the MLflow parent run; study.set_user_attr("mlflow_parent_run_id", ...)
    else:                # the others wait until the creator has finished setting up
        wait_for_user_attr(study, "mlflow_parent_run_id", timeout_s=600)
    run_worker(study, objective, n_trials=cfg.search.n_trials)

The creator sets the attribute the others wait for *last*, after enqueueing, so no worker asks for
a trial before the warm starts are in the queue. Running the same command again resumes: the study
is loaded, nothing is enqueued twice, trial numbers continue.

**The budget is global**: ``n_trials`` COMPLETE trials over all workers, never more; the rules are
in :mod:`autofr.execution.budget`. WAITING trials left when the budget is met (e.g. more warm starts
than n_trials) stay queued for a resume with a larger budget.

**Failures**: an objective that raises (or returns NaN or the wrong number of values) marks its
trial FAIL with user attr ``fail_reason`` and the worker goes on. A worker killed outright
(SIGKILL, node loss) stops sending heartbeats; after the storage's grace period another worker fails
its trial and Optuna's retry callback enqueues a WAITING copy with the same params and user attrs
(see :mod:`autofr.execution.storage`). SIGTERM or Ctrl-C marks the running trial FAIL with
``fail_reason="interrupted"``, enqueues the same kind of copy (so a resume evaluates it) and raises
:class:`WorkerInterrupted` (a ``KeyboardInterrupt``: the command exits non-zero). So does SIGUSR2,
which submitit sends a SLURM job ``signal_delay_s`` before its time limit (and which would otherwise
surface inside the objective as submitit's ``UncompletedJobError``). A signal that
arrives while the worker writes to the storage takes effect right after the write; a second one
takes effect at once.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autofr.errors import ConfigError, StorageError
from autofr.execution import _optuna
from autofr.execution.budget import (
    POLL_INTERVAL_S,
    Backoff,
    StaleTrialCheck,
    claim_budget,
    retire,
    snapshot_of,
    tell_once,
    wait_for_open_slot,
)
from autofr.execution.runtime import Heartbeat, Progress, SignalGuard, WorkerInterrupted  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

FAIL_REASON_ATTR = "fail_reason"
INTERRUPTED = "interrupted"
_FAIL_REASON_MAX_CHARS = 1000

Objective = Callable[[optuna.Trial], Sequence[float]]


@dataclass
class WorkerSummary:
    """What one :func:`run_worker` call did; ``study_completed`` counts all workers' COMPLETE trials."""

    completed: int = 0
    failed: int = 0
    pruned: int = 0
    over_budget: int = 0
    study_completed: int = 0
    timed_out: bool = False
    stopped: bool = False  # stop_when said so


def open_study(
    storage: BaseStorage,
    study_name: str,
    directions: Sequence[str | StudyDirection],
    sampler: optuna.samplers.BaseSampler | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when it exists; ``created`` is True in exactly one process.

    Concurrent creators race on the storage's unique study name: the losers get Optuna's
    ``DuplicatedStudyError`` and load the study instead.

    Raises:
        ConfigError: the study exists with other directions.
    """
    wanted = [_direction(direction) for direction in directions]
    try:
        study = optuna.create_study(storage=storage, study_name=study_name, directions=wanted, sampler=sampler)
        logger.info("created study %r", study_name)
        return study, True
    except DuplicatedStudyError:
        pass
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
    if list(study.directions) != wanted:
        have = [direction.name.lower() for direction in study.directions]
        raise ConfigError(
            f"study {study_name!r} already exists with directions {have}, not "
            f"{[direction.name.lower() for direction in wanted]}: choose another study_name"
        )
    logger.info("resuming study %r (%d trials so far)", study_name, len(study.get_trials(deepcopy=False)))
    return study, False


def wait_for_user_attr(study: optuna.Study, key: str, timeout_s: float, poll_s: float = POLL_INTERVAL_S) -> Any:
    """The value of the study user attr ``key``, waiting up to ``timeout_s`` for the creator to set it.

    Raises:
        StorageError: the attr is still missing after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    backoff = Backoff(first=poll_s)
    while True:
        attrs = study.user_attrs
        if key in attrs:
            return attrs[key]
        if time.monotonic() >= deadline:
            raise StorageError(
                f"study {study.study_name!r} still has no {key!r} after {timeout_s:g} s: the process that created "
                "it may have died while setting it up; delete the study (optuna delete-study) or use another study_name"
            )
        backoff.sleep()


def run_worker(
    study: optuna.Study,
    objective: Objective,
    n_trials: int,
    timeout_s: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    catch: tuple[type[Exception], ...] = (Exception,),
    progress: bool = True,
    stop_when: Callable[[], bool] | None = None,
) -> WorkerSummary:
    """Ask, evaluate and tell trials until the study holds ``n_trials`` COMPLETE trials.

    Args:
        study: the study from :func:`open_study`.
        objective: ``objective(trial) -> (speedup, proxy)``, one value per study direction.
        n_trials: the global budget of COMPLETE trials (all workers together).
        timeout_s: stop asking for new trials after this many seconds (the trial in hand finishes).
        callbacks: ``callback(study, frozen_trial)`` after each finished trial, as in ``Study.optimize``.
        catch: objective exceptions that fail the trial and let the worker go on; any other
            exception fails the trial and is raised.
        progress: show a progress bar of the study's COMPLETE trials.
        stop_when: asked before each new trial; True stops asking (a spent device-hour budget).

    Raises:
        ConfigError: ``n_trials`` < 1.
        WorkerInterrupted: SIGTERM or SIGINT; the running trial is FAIL (``fail_reason="interrupted"``).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"search.n_trials must be a whole number >= 1, not {n_trials!r}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    summary = WorkerSummary()
    n_objectives = len(study.directions)
    stale_trials = StaleTrialCheck(study)
    with SignalGuard() as guard, Progress(study, n_trials, progress) as bar:
        while True:
            if stop_when is not None and stop_when():
                summary.stopped = True
                break
            if not wait_for_open_slot(study, n_trials, deadline, bar, stale_trials):
                summary.timed_out = deadline is not None and time.monotonic() >= deadline
                break
            outcome, frozen = _run_one_trial(study, objective, n_trials, n_objectives, catch, guard, stale_trials)
            setattr(summary, outcome, getattr(summary, outcome) + 1)
            if frozen is not None:
                for callback in callbacks:
                    callback(study, frozen)
        summary.study_completed = bar.completed
    logger.info("worker done: %s", summary)
    return summary


# ----------------------------------------------------------------------------------------------
# One trial


def _run_one_trial(
    study, objective, n_trials, n_objectives, catch, guard, stale_trials
) -> tuple[str, FrozenTrial | None]:
    """Ask, claim the budget, evaluate, tell. Returns (WorkerSummary field, finished trial or None)."""
    trial = heartbeat = None
    finished = False  # told (or being told) by this function: never failed a second time
    try:
        with guard.deferred():
            trial = _ask(study)
            heartbeat = Heartbeat(_optuna.study_storage(study), _optuna.trial_id(trial)).start()
        if not claim_budget(study, trial.number, n_trials, stale_trials):
            heartbeat.stop()
            finished = True
            with guard.deferred():
                retire(study, trial)
            return "over_budget", None
        try:
            values = _checked_values(objective(trial), n_objectives)
        except optuna.TrialPruned:
            heartbeat.stop()
            finished = True
            with guard.deferred():
                return "pruned", tell_once(study, trial, TrialState.PRUNED)
        except catch as error:
            heartbeat.stop()
            finished = True
            with guard.deferred():
                return "failed", _fail(study, trial, _reason(error))
        heartbeat.stop()
        finished = True
        with guard.deferred():
            frozen = tell_once(study, trial, TrialState.COMPLETE, values)
        if frozen is not None:
            logger.info("trial %d complete: %s", frozen.number, frozen.values)
        return "completed", frozen
    except BaseException as error:
        if heartbeat is not None:
            heartbeat.stop()
        if trial is not None and not finished:
            interrupted = isinstance(error, KeyboardInterrupt)
            with guard.deferred():
                _fail(study, trial, INTERRUPTED if interrupted else _reason(error), requeue=interrupted)
        raise


def _ask(study: optuna.Study) -> optuna.Trial:
    with warnings.catch_warnings():
        # This module runs the heartbeat that Study.optimize would run.
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        return study.ask()


def _checked_values(result: Any, n_objectives: int) -> list[float]:
    """The objective's result as one float per direction; ValueError (the trial fails) otherwise."""
    try:
        values = [float(value) for value in (result if n_objectives > 1 or isinstance(result, Sequence) else [result])]
    except (TypeError, ValueError):
        values = []
    if len(values) != n_objectives:
        raise ValueError(f"the objective returned {result!r}, not {n_objectives} numbers")
    if any(math.isnan(value) for value in values):
        raise ValueError(f"the objective returned NaN: {result!r}")
    return values


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:_FAIL_REASON_MAX_CHARS]


def _fail(study, trial, reason: str, requeue: bool = False) -> FrozenTrial | None:
    """Mark ``trial`` FAIL with ``fail_reason``; with ``requeue``, enqueue a copy as killed trials get."""
    snapshot = snapshot_of(study, trial) if requeue else None
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except UpdateFinishedTrialError:
        pass
    frozen = tell_once(study, trial, TrialState.FAIL)
    if frozen is None:
        return None
    logger.warning("trial %d failed: %s", trial.number, reason)
    storage = _optuna.study_storage(study)
    retry = storage.get_heartbeat_stale_trial_callback() if _optuna.heartbeat_enabled(storage) else None
    if requeue and retry is not None:
        retry(study, snapshot)
    return frozen


def _direction(direction: str | StudyDirection) -> StudyDirection:
    if isinstance(direction, StudyDirection):
        return direction
    try:
        return StudyDirection[str(direction).upper()]
    except KeyError:
        raise ConfigError(f"study direction must be 'maximize' or 'minimize', not {direction!r}") from None
