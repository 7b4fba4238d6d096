"""What runs beside a worker's trials: the heartbeat thread, stop signals, the progress bar."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any

import optuna

from autofr.execution import _optuna

logger = logging.getLogger(__name__)


class WorkerInterrupted(KeyboardInterrupt):
    """SIGTERM or SIGINT stopped a worker; a ``KeyboardInterrupt``, so command-line tools exit 130."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


class Heartbeat:
    """Records the heartbeat of one running trial: once now, then every interval from a daemon thread."""

    def __init__(self, storage, trial_id: int):
        self._storage = storage
        self._trial_id = trial_id
        self._interval = storage.get_heartbeat_interval() if _optuna.heartbeat_enabled(storage) else None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Heartbeat:
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


def stop_signals() -> tuple[int, ...]:
    """SIGINT, SIGTERM, and the signal SLURM jobs get from submitit before their time limit."""
    preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return tuple(dict.fromkeys(s for s in (signal.SIGINT, signal.SIGTERM, preempt) if s is not None))


class SignalGuard:
    """Stop signals raise :class:`WorkerInterrupted`, held back inside ``deferred()`` blocks."""

    def __init__(self):
        self._depth = 0
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in stop_signals()}
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


class Progress:
    """A tqdm bar over the study's COMPLETE trials (all workers), or nothing."""

    def __init__(self, study: optuna.Study, n_trials: int, enabled: bool):
        self._n_trials = n_trials
        self._enabled = enabled
        self._study_name = study.study_name
        self._bar = None
        self.completed = 0

    def __enter__(self) -> Progress:
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
