"""The journal-file storage with heartbeats: local and NFS studies without a database server."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import TrialState

from autofr.errors import StorageError
from autofr.execution import _optuna
from autofr.execution.settings import StorageSettings, retry_callback

logger = logging.getLogger(__name__)

# Trial system attr of the journal heartbeat: [trial_id, unix time]. The trial id guards against the
# copy a retried trial inherits from the trial it retries.
HEARTBEAT_ATTR = "autofr:heartbeat"


class HeartbeatJournalStorage(JournalStorage, _optuna.BaseHeartbeat):
    """Optuna's ``JournalStorage`` with Optuna's heartbeat protocol (``BaseHeartbeat``).

    Optuna 5's journal storage records no heartbeats, so a trial whose worker was killed would stay
    RUNNING for ever. Here a heartbeat is a trial system attr ``autofr:heartbeat = [trial_id, unix
    time]`` written through the journal like any other update; a RUNNING trial is stale when its
    last heartbeat (or, before the first one, its start time) is older than ``grace_period``.
    Because of this class, ``optuna.storages.fail_stale_trials`` and the retry callback handle the
    journal exactly as they handle ``RDBStorage``; there is no queue besides Optuna's WAITING trials.

    Clock caveat: heartbeats carry the writer's wall clock and are compared with the reader's (an
    RDB compares database-server times). On one machine this is exact; across machines sharing the
    journal over NFS the clocks must agree (NTP) to well within ``grace_period``.
    """

    def __init__(self, backend, *, heartbeat_interval: int, grace_period: int, heartbeat_stale_trial_callback=None):
        super().__init__(backend)
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.heartbeat_stale_trial_callback = heartbeat_stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, [trial_id, time.time()])
        except UpdateFinishedTrialError:
            pass  # another worker already failed the trial as stale; the worker learns it at tell time

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            beat = trial.system_attrs.get(HEARTBEAT_ATTR)
            if isinstance(beat, list) and len(beat) == 2 and beat[0] == _optuna.trial_id(trial):
                last_sign_of_life = float(beat[1])
            elif trial.datetime_start is not None:
                last_sign_of_life = trial.datetime_start.timestamp()  # naive local time, as replayed
            else:
                continue
            if now - last_sign_of_life > self.grace_period:
                stale.append(_optuna.trial_id(trial))
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self):
        return self.heartbeat_stale_trial_callback

    # Optuna < 4.9 asks for the callback under this name.
    def get_failed_trial_callback(self):
        return self.heartbeat_stale_trial_callback


def open_journal(settings: StorageSettings) -> HeartbeatJournalStorage:
    path = Path(settings.journal_path).expanduser()
    created: list[Path] = []  # what this call created, removed again if opening fails
    try:
        # Workers started together open the same new journal at once: whoever creates a folder or the
        # file first owns it (and removes it again if opening fails); the others just use it.
        missing = [parent for parent in reversed(path.parents) if not parent.exists()]
        for directory in missing:
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            created.append(directory)
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            created.append(path)
        except FileExistsError:
            pass
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
        _check_is_journal(path)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
        storage = HeartbeatJournalStorage(
            backend,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            heartbeat_stale_trial_callback=retry_callback(settings.max_retry),
        )
    except OSError as error:
        _remove(created)
        reason = error.strerror or str(error)
        raise StorageError(
            f"cannot write the Optuna journal {path}: {reason}; set storage.journal_path to a writable file "
            "(on a shared file system when workers run on several machines)"
        ) from None
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        _remove(created)
        raise StorageError(
            f"{path} is not an Optuna journal file: point storage.journal_path at a journal or a new file"
        ) from None
    logger.info(
        "Optuna storage: journal %s (heartbeat every %d s, grace %d s)",
        path,
        settings.heartbeat_interval,
        settings.grace_period,
    )
    return storage


def _check_is_journal(path: Path) -> None:
    """Raise ValueError unless ``path`` is empty or starts with a journal record; Optuna's reader
    would skip a bad last line as half-written, and appending to someone's file would ruin it."""
    with open(path, "rb") as journal:
        first_line = journal.readline(1 << 20)
    if first_line:
        record = json.loads(first_line)
        if not isinstance(record, dict) or "op_code" not in record:
            raise ValueError("not a journal record")


def _remove(created: list[Path]) -> None:
    for created_path in reversed(created):
        try:
            created_path.unlink() if created_path.is_file() else created_path.rmdir()
        except OSError:
            pass


def check_journal(settings: StorageSettings) -> None:
    """Raise :class:`StorageError` unless the journal can be opened, creating nothing."""
    path = Path(settings.journal_path).expanduser()
    try:
        if path.exists():
            if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
            _check_is_journal(path)
            return
        existing = next(parent for parent in path.parents if parent.exists())
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as error:
        raise StorageError(
            f"cannot write the Optuna journal {path}: {error.strerror or error}; set storage.journal_path to a "
            "writable file (on a shared file system when workers run on several machines)"
        ) from None
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise StorageError(
            f"{path} is not an Optuna journal file: point storage.journal_path at a journal or a new file"
        ) from None
