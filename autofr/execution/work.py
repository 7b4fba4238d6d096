"""Work items: the stages after the trials, as units of work in the study's own storage.

A study's trials are Optuna trials; everything else it does on a device (the peers' samples, each
candidate's FID at each seed in sample slices, full compute's reference slices, the timing run) is a
:class:`WorkItem`, stored as a trial of a companion study ``<study_name>:work`` in the same storage
(journal file or PostgreSQL), so it gets what trials get:

* **claimed once**: a worker takes a WAITING item by moving it to RUNNING, which the storage lets
  exactly one process do (the same transition ``study.ask`` pops the queue with); two copies of one
  key (two workers added it at once) never both run: the lower-numbered running or finished copy
  wins and the other is PRUNED as a duplicate;
* **heartbeats**: a running item's worker records heartbeats; an item whose worker died (SIGKILL, a
  lost node) is failed after the storage's grace period and a WAITING copy is enqueued (the storage's
  retry callback, ``storage.max_retry``); an item that raises is failed and retried the same way;
  SIGTERM or Ctrl-C fails the running item and enqueues a copy, so re-running the command resumes it;
* **dependencies**: an item runs once every item of the stages in ``after`` is finished (done, or
  failed beyond its retries), and named outside stages (``"trials"``) are ready;
* **quiet items** (timing): taken only while no other item runs on the same device (host and
  device), and no other item starts there until it is done;
* **who did it**: each item records the worker's host, process and device, its seconds (the item's
  value) and its result (a JSON object, in the user attr ``result``).

Each worker calls :meth:`WorkQueue.run` after its trials and stays until every item is finished.
Nothing here knows about diffusion models (:mod:`autofr.search.stages` defines the study's items).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from autofr.execution import _optuna
from autofr.execution.budget import Backoff
from autofr.execution.runtime import Heartbeat, SignalGuard

logger = logging.getLogger(__name__)

WORK_STUDY_SUFFIX = ":work"
RESULT_ATTR = "result"
WORKER_ATTR = "worker"
FAIL_REASON_ATTR = "fail_reason"
DUPLICATE_ATTR = "duplicate_of"
_ITEM_ATTR = "item"
_ATTEMPT_ATTR = "attempt"


def work_study_name(study_name: str) -> str:
    """The name of the companion study that holds ``study_name``'s work items."""
    return f"{study_name}{WORK_STUDY_SUFFIX}"


@dataclass(frozen=True)
class WorkItem:
    """One unit of work: ``key`` is unique in the study; ``stage`` groups items for dependencies and
    progress; ``spec`` (JSON) says what to do."""

    key: str
    stage: str
    after: tuple[str, ...] = ()
    quiet: bool = False
    spec: dict[str, Any] = field(default_factory=dict)

    def to_attr(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "stage": self.stage,
            "after": list(self.after),
            "quiet": self.quiet,
            "spec": self.spec,
        }

    @classmethod
    def from_attr(cls, data: dict[str, Any]) -> WorkItem:
        return cls(
            key=str(data["key"]),
            stage=str(data["stage"]),
            after=tuple(data.get("after") or ()),
            quiet=bool(data.get("quiet")),
            spec=dict(data.get("spec") or {}),
        )


@dataclass(frozen=True)
class WorkerIdentity:
    """Who runs an item: the host, the process and the device (``cuda:0 (NVIDIA H100 ...)``, ``cpu``)."""

    host: str
    pid: int
    device: str

    @classmethod
    def current(cls, device: str) -> WorkerIdentity:
        return cls(socket.gethostname(), os.getpid(), device)

    @property
    def place(self) -> str:
        """The device as a place other workers can share: quiet items keep it to themselves."""
        return f"{self.host}/{self.device}"

    def to_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "device": self.device}


@dataclass(frozen=True)
class ItemRecord:
    """One stored copy of an item (an item retried after a failure has several)."""

    item: WorkItem
    number: int
    trial_id: int
    state: TrialState
    worker: dict[str, Any] | None
    seconds: float | None
    result: dict[str, Any] | None
    fail_reason: str | None
    duplicate: bool

    @classmethod
    def of(cls, frozen: optuna.trial.FrozenTrial) -> ItemRecord:
        attrs = frozen.user_attrs
        return cls(
            item=WorkItem.from_attr(attrs[_ITEM_ATTR]),
            number=frozen.number,
            trial_id=_optuna.trial_id(frozen),
            state=frozen.state,
            worker=attrs.get(WORKER_ATTR),
            seconds=frozen.values[0] if frozen.values else None,
            result=attrs.get(RESULT_ATTR),
            fail_reason=attrs.get(FAIL_REASON_ATTR),
            duplicate=DUPLICATE_ATTR in attrs,
        )

    @property
    def place(self) -> str | None:
        return f"{self.worker['host']}/{self.worker['device']}" if self.worker else None


@dataclass(frozen=True)
class KeyState:
    """Where one key stands over all its copies: ``done`` (a copy completed), ``pending`` (a copy waits
    or runs) or ``failed`` (every copy failed, no retry left)."""

    item: WorkItem
    status: str
    record: ItemRecord  # the completed copy, else the live one, else the last failed one


@dataclass(frozen=True)
class StageProgress:
    """One stage across all workers: items done / total, workers active, time left at the current rate."""

    stage: str
    done: int
    failed: int
    total: int
    running: int
    workers: int
    left_s: float | None

    def line(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        left = "" if self.left_s is None else f", ~{_duration(self.left_s)} left"
        active = f", {self.workers} worker{'s' if self.workers != 1 else ''} active" if self.running else ""
        return f"stage {self.stage}: {self.done}/{self.total} done{failed}{active}{left}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class WorkQueue:
    """The work items of one study (see the module docstring). Build it with :meth:`open`."""

    def __init__(self, study: optuna.Study, worker: WorkerIdentity, max_retry: int | None = 2) -> None:
        self.study = study
        self.worker = worker
        self.max_retry = max_retry
        self._storage: BaseStorage = _optuna.study_storage(study)
        self._study_id = _optuna.study_id(study)

    @classmethod
    def open(cls, storage: BaseStorage, study_name: str, worker: WorkerIdentity, max_retry: int | None = 2):
        """The queue of ``study_name`` in ``storage``, created on first use by any worker."""
        name = work_study_name(study_name)
        try:
            study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
        except DuplicatedStudyError:
            study = optuna.load_study(study_name=name, storage=storage)
        return cls(study, worker, max_retry)

    # ------------------------------------------------------------------ reading
    def records(self, states: tuple[TrialState, ...] | None = None) -> list[ItemRecord]:
        trials = self._storage.get_all_trials(self._study_id, deepcopy=False, states=states)
        return [ItemRecord.of(frozen) for frozen in trials if _ITEM_ATTR in frozen.user_attrs]

    def keys(self, records: list[ItemRecord] | None = None) -> dict[str, KeyState]:
        """Every key's state, in the order the keys were first added."""
        grouped: dict[str, list[ItemRecord]] = {}
        for record in records if records is not None else self.records():
            if not record.duplicate:
                grouped.setdefault(record.item.key, []).append(record)
        states = {}
        for key, copies in grouped.items():
            done = [r for r in copies if r.state is TrialState.COMPLETE]
            live = [r for r in copies if r.state in (TrialState.WAITING, TrialState.RUNNING)]
            if done:
                states[key] = KeyState(done[0].item, "done", done[0])
            elif live:
                states[key] = KeyState(live[0].item, "pending", live[0])
            else:
                states[key] = KeyState(copies[-1].item, "failed", copies[-1])
        return states

    def result(self, key: str) -> dict[str, Any] | None:
        """The result of ``key``'s completed copy, or None."""
        state = self.keys().get(key)
        return state.record.result if state is not None and state.status == "done" else None

    def results(self, stage: str) -> dict[str, dict[str, Any]]:
        """The results of the stage's completed items, by key."""
        return {
            key: state.record.result or {}
            for key, state in self.keys().items()
            if state.item.stage == stage and state.status == "done"
        }

    def progress(self, records: list[ItemRecord] | None = None) -> list[StageProgress]:
        """One :class:`StageProgress` per stage, in the order the stages first appear."""
        records = records if records is not None else self.records()
        keys = self.keys(records)
        stages: dict[str, list[KeyState]] = {}
        for state in keys.values():
            stages.setdefault(state.item.stage, []).append(state)
        rows = []
        for stage, states in stages.items():
            done = [s for s in states if s.status == "done"]
            failed = sum(s.status == "failed" for s in states)
            running = [r for r in records if r.item.stage == stage and r.state is TrialState.RUNNING]
            workers = len({(r.worker or {}).get("host", "?") + str((r.worker or {}).get("pid")) for r in running})
            left = None
            spent = [s.record.seconds for s in done if s.record.seconds is not None]
            remaining = len(states) - len(done) - failed
            if spent and remaining:
                left = sum(spent) / len(spent) * remaining / max(1, workers)
            elif not remaining:
                left = 0.0
            rows.append(StageProgress(stage, len(done), failed, len(states), len(running), workers, left))
        return rows

    # ------------------------------------------------------------------ writing
    def add(self, items: Iterable[WorkItem]) -> int:
        """Enqueue the items whose keys the queue does not hold yet; returns how many were added."""
        known = {record.item.key for record in self.records()}
        added = 0
        for item in items:
            if item.key in known:
                continue
            known.add(item.key)
            self._enqueue(item, attempt=0)
            added += 1
        return added

    def _enqueue(self, item: WorkItem, attempt: int) -> None:
        self.study.enqueue_trial({}, user_attrs={_ITEM_ATTR: item.to_attr(), _ATTEMPT_ATTR: attempt})

    # ------------------------------------------------------------------ running
    def run(
        self,
        execute: Callable[[WorkItem], dict[str, Any]],
        ready: Callable[[str], bool] = lambda stage: True,
        on_done: Callable[[WorkItem, list[StageProgress]], None] | None = None,
        catch: tuple[type[Exception], ...] = (Exception,),
    ) -> int:
        """Claim and run items until every item of the queue is finished; returns how many this worker ran.

        ``execute(item) -> result`` does the work; ``ready(stage)`` says whether an outside stage named
        in an item's ``after`` (``"trials"``) is finished; ``on_done(item, progress)`` follows each
        item this worker finished.
        """
        ran, finished = 0, None
        backoff = Backoff()
        with SignalGuard() as guard:
            while True:
                # one read of the queue per item: the claim, the duplicate check and the progress line
                # of the item finished last all come from it
                with guard.deferred():
                    records = self.records()
                if finished is not None and on_done is not None:
                    on_done(finished, self.progress(records))
                finished = None
                keys = self.keys(records)
                if all(state.status != "pending" for state in keys.values()):
                    return ran
                claimed = self._claim(records, keys, _Memo(ready), guard)
                if claimed is None:
                    with guard.deferred():
                        self._fail_stale()  # nothing to do here: look for items whose worker died
                    backoff.sleep()
                    continue
                if claimed is _RETRY:
                    continue
                backoff = Backoff()
                if self._run_one(claimed, execute, catch, guard):
                    ran += 1
                    finished = claimed.item

    def _fail_stale(self) -> None:
        if _optuna.heartbeat_enabled(self._storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(self.study)

    def _ready(self, item: WorkItem, keys: dict[str, KeyState], ready: Callable[[str], bool]) -> bool:
        stages = {state.item.stage for state in keys.values()}
        for stage in item.after:
            if stage in stages:
                if any(s.item.stage == stage and s.status == "pending" for s in keys.values()):
                    return False
            elif not ready(stage):
                return False
        return True

    def _claim(self, records, keys, ready, guard) -> ItemRecord | None:
        """The item this worker now holds, None when nothing is claimable, or :data:`_RETRY` when this
        view of the queue turned out old (another worker took an item first): look again."""
        here = self.worker.place
        running_here = [r for r in records if r.state is TrialState.RUNNING and r.place == here]
        if any(r.item.quiet for r in running_here):
            return None  # the device is kept quiet for a timing run
        for record in records:
            if record.state is not TrialState.WAITING or not self._ready(record.item, keys, ready):
                continue
            if record.item.quiet and running_here:
                continue  # a timing run waits for the device to be free
            with guard.deferred():
                try:
                    if not self._storage.set_trial_state_values(record.trial_id, TrialState.RUNNING):
                        return _RETRY  # another worker took it first
                except UpdateFinishedTrialError:
                    return _RETRY  # another worker took it and finished it since this worker looked
                self._storage.set_trial_user_attr(record.trial_id, WORKER_ATTR, self.worker.to_attr())
            if self._is_duplicate(record, records):
                return _RETRY
            return record
        return None

    def _is_duplicate(self, claimed: ItemRecord, records: list[ItemRecord]) -> bool:
        """True (and the claimed copy PRUNED) when another copy of its key is done, or runs with a lower
        number. ``records`` is the view the claim was made from: every claim that fails sends the worker
        to a new view, so a lower copy another worker holds is seen before a higher one is claimed."""
        for other in records:
            if other.item.key != claimed.item.key or other.number == claimed.number or other.duplicate:
                continue
            if other.state is TrialState.COMPLETE or (
                other.state is TrialState.RUNNING and other.number < claimed.number
            ):
                self._storage.set_trial_user_attr(claimed.trial_id, DUPLICATE_ATTR, other.number)
                self._storage.set_trial_state_values(claimed.trial_id, TrialState.PRUNED)
                return True
        return False

    def _run_one(self, record: ItemRecord, execute, catch, guard) -> bool:
        """Run one claimed item; True if it completed here."""
        heartbeat = Heartbeat(self._storage, record.trial_id).start()
        try:
            if record.item.quiet:
                self._wait_for_quiet(record)
            began = time.perf_counter()
            try:
                result = execute(record.item)
            except catch as error:
                heartbeat.stop()
                with guard.deferred():
                    self._fail(record, _reason(error), retry=True)
                return False
            seconds = time.perf_counter() - began
            heartbeat.stop()
            with guard.deferred():
                try:
                    self._storage.set_trial_user_attr(record.trial_id, RESULT_ATTR, result)
                    if not self._storage.set_trial_state_values(record.trial_id, TrialState.COMPLETE, [seconds]):
                        raise UpdateFinishedTrialError
                except UpdateFinishedTrialError:
                    logger.warning("item %s finished after it was given up (no heartbeat): its result is dropped")
                    return False
            logger.info("item %s done in %.1f s", record.item.key, seconds)
            return True
        except BaseException as error:
            heartbeat.stop()
            with guard.deferred():
                interrupted = isinstance(error, KeyboardInterrupt)
                self._fail(record, "interrupted" if interrupted else _reason(error), retry=interrupted, force=True)
            raise

    def _wait_for_quiet(self, record: ItemRecord) -> None:
        """Wait until the items other workers started on this device before the claim are done."""
        backoff = Backoff()
        while any(
            r.state is TrialState.RUNNING and r.place == self.worker.place and r.number != record.number
            for r in self.records()
        ):
            backoff.sleep()

    def _fail(self, record: ItemRecord, reason: str, retry: bool, force: bool = False) -> None:
        """Fail the running copy and, while retries are left (or ``force``), enqueue another."""
        try:
            self._storage.set_trial_user_attr(record.trial_id, FAIL_REASON_ATTR, reason)
            self._storage.set_trial_state_values(record.trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            return
        logger.warning("item %s failed: %s", record.item.key, reason)
        attempt = int(self._storage.get_trial(record.trial_id).user_attrs.get(_ATTEMPT_ATTR, 0))
        if retry and (force or self.max_retry is None or attempt < self.max_retry):
            self._enqueue(record.item, attempt=attempt + 1)


class _Memo:
    """``ready(stage)`` asked once per stage for one view of the queue."""

    def __init__(self, ready: Callable[[str], bool]) -> None:
        self._ready = ready
        self._answers: dict[str, bool] = {}

    def __call__(self, stage: str) -> bool:
        if stage not in self._answers:
            self._answers[stage] = self._ready(stage)
        return self._answers[stage]


#: what :meth:`WorkQueue._claim` returns when its view of the queue was old
_RETRY = object()


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (f"{type(error).__name__}: {text}" if text else type(error).__name__)[:1000]
