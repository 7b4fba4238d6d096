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

**The budget is global**: ``n_trials`` COMPLETE trials over all workers, never more. FAIL and PRUNED
trials do not count. Trial numbers come from the storage in one global order, and

1. a worker asks for a trial only while COMPLETE + RUNNING < n_trials. Otherwise it waits (a running
   trial may still fail and need a replacement) and stops once COMPLETE reaches n_trials, or at
   ``timeout_s``;
2. before running trial k, it counts the trials numbered below k that are COMPLETE, RUNNING or
   WAITING (each may still complete). Below n_trials: trial k runs. So when trial k completes, at
   most n_trials - 1 lower trials can; the highest completed trial bounds the total by n_trials;
3. otherwise it waits while a lower trial is RUNNING. Each one completes, fails, or is failed by the
   heartbeat check; as soon as the count drops below n_trials, trial k runs. If it cannot (the
   budget is met, or no lower trial runs any more), trial k is *retired*: state PRUNED, user attr
   ``over_budget=True``, never counted; if it carried planned params (a warm start or a retry) a
   WAITING copy is enqueued, so nothing planned is lost. This happens only when workers race at
   the end of a study.

WAITING trials left when the budget is met (e.g. more warm starts than n_trials) stay queued for a
resume with a larger budget.

**Failures**: an objective that raises (or returns NaN or the wrong number of values) marks its
trial FAIL with user attr ``fail_reason`` and the worker goes on. A worker killed outright
(SIGKILL, node loss) stops sending heartbeats; after the storage's grace period another worker fails
its trial and Optuna's retry callback enqueues a WAITING copy with the same params and user attrs
(see :mod:`autofr.search.storage`). SIGTERM or Ctrl-C marks the running trial FAIL with
``fail_reason="interrupted"``, enqueues the same kind of copy (so a resume evaluates it) and raises
:class:`WorkerInterrupted` (a ``KeyboardInterrupt``: the command exits non-zero). So does SIGUSR2,
which submitit sends a SLURM job ``signal_delay_s`` before its time limit (and which would otherwise
surface inside the objective as submitit's ``UncompletedJobError``). A signal that
arrives while the worker writes to the storage takes effect right after the write; a second one
takes effect at once.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autofr.errors import ConfigError, StorageError

logger = logging.getLogger(__name__)

FAIL_REASON_ATTR = "fail_reason"
OVER_BUDGET_ATTR = "over_budget"
INTERRUPTED = "interrupted"
# How often an idle worker looks at the study again (budget waits, set-up waits).
POLL_INTERVAL_S = 0.5
_FAIL_REASON_MAX_CHARS = 1000
_SEARCH_ENTRY = "import sys; from autofr.cli.search import main; sys.exit(main())"

Objective = Callable[[optuna.Trial], Sequence[float]]


class WorkerInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped a worker; a ``KeyboardInterrupt``, so command-line tools exit 130."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass
class WorkerSummary:
    """What one :func:`run_worker` call did; ``study_completed`` counts all workers' COMPLETE trials."""

    completed: int = 0
    failed: int = 0
    pruned: int = 0
    over_budget: int = 0
    study_completed: int = 0
    timed_out: bool = False


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
    while True:
        attrs = study.user_attrs
        if key in attrs:
            return attrs[key]
        if time.monotonic() >= deadline:
            raise StorageError(
                f"study {study.study_name!r} still has no {key!r} after {timeout_s:g} s: the process that created "
                "it may have died while setting it up; delete the study (optuna delete-study) or use another study_name"
            )
        time.sleep(poll_s)


def run_worker(
    study: optuna.Study,
    objective: Objective,
    n_trials: int,
    timeout_s: float | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    catch: tuple[type[Exception], ...] = (Exception,),
    progress: bool = True,
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

    Raises:
        ConfigError: ``n_trials`` < 1.
        WorkerInterrupted: SIGTERM or SIGINT; the running trial is FAIL (``fail_reason="interrupted"``).
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"search.n_trials must be a whole number >= 1, not {n_trials!r}")
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    summary = WorkerSummary()
    n_objectives = len(study.directions)
    stale_trials = _StaleTrialCheck(study)
    with _SignalGuard() as guard, _Progress(study, n_trials, progress) as bar:
        while True:
            if not _wait_for_open_slot(study, n_trials, deadline, bar, stale_trials):
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


def spawn_local_workers(argv: Sequence[str], n: int, command: Sequence[str] | None = None) -> int:
    """Run ``n`` worker processes on this machine and wait for them; the exit status to return.

    Each child re-runs the search command line with ``argv`` (the Hydra overrides) plus
    ``search.workers=1``; all but the first also get ``search.progress=false``, so one progress bar
    shows the study. Children share the study through its storage (the journal file or PostgreSQL)
    and its global budget. SIGINT and SIGTERM are forwarded to every child once (children run in
    their own sessions, so a terminal's Ctrl-C reaches them only through this forwarding). A parent
    killed outright (SIGKILL) leaves its children running; they finish the budget on their own.

    Args:
        argv: the command's arguments (``sys.argv[1:]``), or a whole command line that starts with
            this Python (``[sys.executable, "-m", "autofr.cli.search", *overrides]``).
        n: number of worker processes.
        command: the program to run before ``argv``; default: ``autofr-search`` in this Python
            (``python -c "from autofr.cli.search import main; ..."``), or nothing when ``argv``
            is a whole command line.

    Returns:
        0 when every worker exited 0, else the first non-zero status (128 + N for a signal N).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"search.workers must be a whole number >= 1, not {n!r}")
    if command is not None:
        program = list(command)
    elif argv and argv[0] == sys.executable:
        program = []
    else:
        program = [sys.executable, "-c", _SEARCH_ENTRY]
    shared = [arg for arg in argv if not re.match(r"^\+{0,2}search\.workers=", arg)]
    quiet = [arg for arg in shared if not re.match(r"^\+{0,2}search\.progress=", arg)] + ["search.progress=false"]
    children: list[subprocess.Popen] = []

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(n):
            arguments = (shared if index == 0 else quiet) + ["search.workers=1"]
            environment = {**os.environ, "AUTOFR_WORKER_INDEX": str(index), "AUTOFR_WORKERS": str(n)}
            try:
                children.append(subprocess.Popen(program + arguments, env=environment, start_new_session=True))
            except OSError:
                forward(signal.SIGTERM, None)
                for child in children:
                    child.wait()
                raise
        logger.info("started %d local workers (pids %s)", n, ", ".join(str(child.pid) for child in children))
        statuses = [child.wait() for child in children]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    statuses = [128 - status if status < 0 else status for status in statuses]
    failed = [(index, status) for index, status in enumerate(statuses) if status != 0]
    if failed:
        logger.error("%d of %d workers failed: %s", len(failed), n, ", ".join(f"worker {i} exit {s}" for i, s in failed))
        return failed[0][1]
    return 0


# ----------------------------------------------------------------------------------------------
# One trial


def _run_one_trial(study, objective, n_trials, n_objectives, catch, guard, stale_trials) -> tuple[str, FrozenTrial | None]:
    """Ask, claim the budget, evaluate, tell. Returns (WorkerSummary field, finished trial or None)."""
    trial = heartbeat = None
    finished = False  # told (or being told) by this function: never failed a second time
    try:
        with guard.deferred():
            trial = _ask(study)
            heartbeat = _Heartbeat(study._storage, trial._trial_id).start()
        if not _claim_budget(study, trial.number, n_trials, stale_trials):
            heartbeat.stop()
            finished = True
            with guard.deferred():
                _retire(study, trial)
            return "over_budget", None
        try:
            values = _checked_values(objective(trial), n_objectives)
        except optuna.TrialPruned:
            heartbeat.stop()
            finished = True
            with guard.deferred():
                return "pruned", _tell(study, trial, TrialState.PRUNED)
        except catch as error:
            heartbeat.stop()
            finished = True
            with guard.deferred():
                return "failed", _fail(study, trial, _reason(error))
        heartbeat.stop()
        finished = True
        with guard.deferred():
            frozen = _tell(study, trial, TrialState.COMPLETE, values)
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


def _tell(study, trial, state: TrialState, values: list[float] | None = None) -> FrozenTrial | None:
    """Finish ``trial``; None when another worker had already failed it (its heartbeat went stale)."""
    frozen = study.tell(trial, values, state=state, skip_if_finished=True)
    if frozen.state != state:
        logger.warning(
            "trial %d was already %s (its heartbeat was older than the grace period, so another worker "
            "failed and retried it); this worker's result is dropped",
            trial.number, frozen.state.name,
        )
        return None
    return frozen


def _fail(study, trial, reason: str, requeue: bool = False) -> FrozenTrial | None:
    """Mark ``trial`` FAIL with ``fail_reason``; with ``requeue``, enqueue a copy as killed trials get."""
    snapshot = _snapshot(study, trial) if requeue else None
    try:
        trial.set_user_attr(FAIL_REASON_ATTR, reason)
    except UpdateFinishedTrialError:
        pass
    frozen = _tell(study, trial, TrialState.FAIL)
    if frozen is None:
        return None
    logger.warning("trial %d failed: %s", trial.number, reason)
    retry = study._storage.get_heartbeat_stale_trial_callback() if _heartbeat_enabled(study._storage) else None
    if requeue and retry is not None:
        retry(study, snapshot)
    return frozen


def _snapshot(study, trial) -> FrozenTrial:
    """A private copy of the trial as stored (the journal storage hands out its live objects)."""
    return copy.deepcopy(study._storage.get_trial(trial._trial_id))


def _retire(study, trial) -> None:
    """Trial ``trial`` lost the race for the budget: PRUNED + ``over_budget``; planned params go back to the queue."""
    snapshot = _snapshot(study, trial)
    try:
        trial.set_user_attr(OVER_BUDGET_ATTR, True)
    except UpdateFinishedTrialError:
        return
    if _tell(study, trial, TrialState.PRUNED) is None:
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


# ----------------------------------------------------------------------------------------------
# The global budget


def _wait_for_open_slot(study, n_trials: int, deadline: float | None, bar, stale_trials) -> bool:
    """Wait until a new trial may be asked for (True), or the budget is met / time is up (False)."""
    while True:
        stale_trials.check()
        states = [trial.state for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))]
        completed = states.count(TrialState.COMPLETE)
        bar.show(completed, running=len(states) - completed)
        if completed >= n_trials or (deadline is not None and time.monotonic() >= deadline):
            return False
        if len(states) < n_trials:
            return True
        time.sleep(POLL_INTERVAL_S)


def _claim_budget(study, number: int, n_trials: int, stale_trials) -> bool:
    """True: trial ``number`` may run; False: the budget is taken (see the module docstring)."""
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
        time.sleep(POLL_INTERVAL_S)
        stale_trials.check()


class _StaleTrialCheck:
    """Optuna's ``fail_stale_trials`` (fail dead workers' trials, enqueue their retries), run at
    most once per heartbeat interval: staleness changes no faster, and each check is a query."""

    def __init__(self, study: optuna.Study):
        self._study = study
        storage = study._storage
        self._interval = storage.get_heartbeat_interval() if _heartbeat_enabled(storage) else None
        self._last = -math.inf

    def check(self) -> None:
        if self._interval is None or time.monotonic() - self._last < self._interval:
            return
        self._last = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            optuna.storages.fail_stale_trials(self._study)


# ----------------------------------------------------------------------------------------------
# Heartbeat, signals, progress


def _heartbeat_enabled(storage) -> bool:
    return isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None


class _Heartbeat:
    """Records the heartbeat of one running trial: once now, then every interval from a daemon thread."""

    def __init__(self, storage, trial_id: int):
        self._storage = storage
        self._trial_id = trial_id
        self._interval = storage.get_heartbeat_interval() if _heartbeat_enabled(storage) else None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> _Heartbeat:
        if self._interval is not None:
            self._storage.record_heartbeat(self._trial_id)
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self._trial_id}", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as error:  # a storage hiccup must not end the trial; the next beat retries
                logger.warning("heartbeat of trial id %d failed: %s", self._trial_id, error)

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def _stop_signals() -> tuple[int, ...]:
    """SIGINT, SIGTERM, and the signal SLURM jobs get from submitit before their time limit."""
    preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return tuple(dict.fromkeys(s for s in (signal.SIGINT, signal.SIGTERM, preempt) if s is not None))


class _SignalGuard:
    """Stop signals raise :class:`WorkerInterrupted`, held back inside ``deferred()`` blocks."""

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in _stop_signals()}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame) -> None:
        if self._depth and self._pending is None:
            logger.warning("%s received: stopping after this storage write", signal.Signals(signum).name)
            self._pending = signum
            return
        raise WorkerInterrupted(signum)

    @contextlib.contextmanager
    def deferred(self):
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._pending is not None:
                signum, self._pending = self._pending, None
                raise WorkerInterrupted(signum)


class _Progress:
    """A tqdm bar over the study's COMPLETE trials (all workers), or nothing."""

    def __init__(self, study: optuna.Study, n_trials: int, enabled: bool):
        self._n_trials = n_trials
        self._enabled = enabled
        self._study_name = study.study_name
        self._bar = None
        self.completed = 0

    def __enter__(self) -> _Progress:
        if self._enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self._n_trials, desc=self._study_name, unit="trial", dynamic_ncols=True)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.close()

    def show(self, completed: int, running: int) -> None:
        self.completed = completed
        if self._bar is not None:
            self._bar.n = min(completed, self._n_trials)
            self._bar.set_postfix(running=running, refresh=False)
            self._bar.refresh()


def _direction(direction: str | StudyDirection) -> StudyDirection:
    if isinstance(direction, StudyDirection):
        return direction
    try:
        return StudyDirection[str(direction).upper()]
    except KeyError:
        raise ConfigError(f"study direction must be 'maximize' or 'minimize', not {direction!r}") from None
