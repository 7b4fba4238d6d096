"""The Optuna storage a study lives in, chosen by the ``storage`` config group.

- **Journal file** (``conf/storage/journal.yaml``, the local default): Optuna's ``JournalStorage``
  over a ``JournalFileBackend`` at ``journal_path``. Appends are serialised with
  ``JournalFileSymlinkLock`` (a ``symlink()`` lock: atomic on local disks and on every NFS
  version, unlike ``O_EXCL`` opens before NFSv3 or SQLite's ``fcntl`` locks), so several processes
  on one machine, or on several machines sharing the file over NFS, can work on one study.
- **Relational database** (``conf/storage/postgres.yaml``, clusters): ``RDBStorage(url)``, normally
  PostgreSQL; the URL comes from ``storage.url`` or ``$AUTOFR_STORAGE_URL``.

Both storages run Optuna's heartbeat protocol: a worker records a heartbeat for its running trial
every ``heartbeat_interval`` seconds; a RUNNING trial whose last heartbeat is older than
``grace_period`` belongs to a dead worker (SIGKILL, node lost, job pre-empted), and the next
worker that calls ``optuna.storages.fail_stale_trials`` marks it FAIL and hands it to
``RetryHeartbeatStaleTrialCallback(max_retry)``, which enqueues a WAITING copy with the same params,
distributions, user attrs and system attrs (``fixed_params`` of a warm start included). In
Optuna 5 only ``RDBStorage`` implements heartbeats; :class:`HeartbeatJournalStorage` adds them to
the journal storage with Optuna's own ``BaseHeartbeat`` interface, so ``fail_stale_trials`` and the
retry callback work unchanged (see its docstring for the clock caveat on NFS).

``open_storage`` checks the storage before anything is written: an unreachable server, a wrong
password, a missing database, a missing driver or an unwritable journal path is a one-line
:class:`~autofr.errors.StorageError` naming the (password-masked) storage and what to check, and
leaves no tables, study or files behind. Never log a storage URL without :func:`mask_url`.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import warnings
from collections.abc import Mapping
from typing import Any

from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage

from autofr.errors import StorageError
from autofr.execution import _optuna
from autofr.execution.journal import check_journal, open_journal
from autofr.execution.settings import STORAGE_URL_ENV, StorageSettings, retry_callback
from autofr.masking import mask_url, password_of

logger = logging.getLogger(__name__)

# Serialises Optuna's table creation when several workers open a fresh PostgreSQL database at once.
_SCHEMA_LOCK_KEY = 0x6175746F6672  # "autofr"


def open_storage(cfg: Mapping[str, Any] | StorageSettings) -> BaseStorage:
    """The Optuna storage described by ``cfg`` (the ``storage`` config group), checked and ready.

    Raises:
        ConfigError: a setting is out of range.
        StorageError: the database cannot be reached or used, or the journal file cannot be written;
            nothing was created.
    """
    settings = cfg if isinstance(cfg, StorageSettings) else StorageSettings.from_config(cfg)
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are marked experimental in Optuna; they are what makes
        # killed workers' trials come back, so they are on by design.
        warnings.simplefilter("ignore", ExperimentalWarning)
        if settings.url is not None:
            return _open_database(settings)
        return open_journal(settings)


def check_storage(cfg: Mapping[str, Any] | StorageSettings) -> StorageSettings:
    """Check that the storage can be used, writing nothing: the database answers (no tables are
    made), or the journal file is a journal (or can be created: its nearest existing folder is
    writable). Returns the validated settings.

    Raises:
        ConfigError, StorageError: as :func:`open_storage`, before anything exists.
    """
    settings = cfg if isinstance(cfg, StorageSettings) else StorageSettings.from_config(cfg)
    if settings.url is not None:
        _open_database(settings, create=False)
    else:
        check_journal(settings)
    return settings


# ----------------------------------------------------------------------------------------------
# Relational databases


def _open_database(settings: StorageSettings, create: bool = True) -> BaseStorage | None:
    """Optuna's RDBStorage behind its trial cache; with ``create=False`` only a connection check."""
    import sqlalchemy
    from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
    from sqlalchemy.pool import NullPool

    where = mask_url(settings.url)
    try:
        parsed = sqlalchemy.engine.make_url(settings.url)
    except ArgumentError:
        raise StorageError(
            f"storage.url is not a database URL ({where}): use postgresql://user:password@host:5432/db"
        ) from None
    backend = parsed.get_backend_name()
    url = _with_installed_driver(parsed)
    connect_args = {"connect_timeout": settings.connect_timeout_s} if backend in ("postgresql", "mysql") else {}
    if backend == "sqlite":
        logger.warning("SQLite storage (%s) locks under parallel workers; use the journal file or PostgreSQL", where)

    try:
        probe = sqlalchemy.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (ImportError, NoSuchModuleError) as error:
        hint = "pip install 'autofr[postgres]'" if backend == "postgresql" else "install the database driver"
        raise StorageError(f"no driver for the Optuna storage {where} ({error}): {hint}") from None
    started = time.monotonic()
    try:
        with probe.connect() as connection:
            if not create:
                connection.execute(sqlalchemy.text("SELECT 1"))
                return None
            if backend == "postgresql":
                # One process at a time creates Optuna's tables; the others wait here, then find them.
                connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            try:
                storage = _rdb_storage(url, settings, connect_args)
            finally:
                if backend == "postgresql":
                    connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY})
    except DBAPIError as error:
        raise StorageError(_database_error_message(error, settings, time.monotonic() - started)) from None
    except RuntimeError as error:
        if "table schema" not in str(error):
            raise
        raise StorageError(
            f"the Optuna tables in {where} belong to another Optuna version: run "
            "`optuna storage upgrade --storage <url>` or install the Optuna version that made them"
        ) from None
    finally:
        probe.dispose()
    logger.info(
        "Optuna storage: %s (heartbeat every %d s, grace %d s)",
        where,
        settings.heartbeat_interval,
        settings.grace_period,
    )
    return _optuna.cached_rdb_storage(storage)


def _with_installed_driver(parsed) -> str:
    """The URL to connect with: a bare ``postgresql://`` means psycopg 3 to SQLAlchemy 2.1, but
    ``autofr[postgres]`` installs psycopg2, so pick the driver that is installed."""
    import importlib.util

    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def _rdb_storage(url: str, settings: StorageSettings, connect_args: dict) -> RDBStorage:
    # Optuna >= 4.9 renamed failed_trial_callback to heartbeat_stale_trial_callback.
    callback_keyword = (
        "heartbeat_stale_trial_callback"
        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage.__init__).parameters
        else "failed_trial_callback"
    )
    return RDBStorage(
        url,
        engine_kwargs={"pool_pre_ping": True, "connect_args": connect_args},
        heartbeat_interval=settings.heartbeat_interval,
        grace_period=settings.grace_period,
        **{callback_keyword: retry_callback(settings.max_retry)},
    )


def _database_error_message(error: Exception, settings: StorageSettings, elapsed_s: float) -> str:
    """One line: which storage, what went wrong, what to check. The password never appears."""
    where = mask_url(settings.url)
    original = getattr(error, "orig", None) or error
    detail = " ".join(str(original).split())
    password = password_of(settings.url)
    if password:
        detail = detail.replace(password, "***")
    # psycopg2 repeats the host and port (already in the masked URL) and adds a hint of its own.
    detail = re.sub(r'^connection to server (at|on) "?[^"]*"?( \([^)]*\))?, port \d+ failed: ', "", detail)
    detail = detail.split(" Is the server running")[0]
    detail = detail.replace("FATAL:  ", "").replace("FATAL: ", "")
    lowered = detail.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered or "access denied" in lowered:
        hint = f"check the user and password in storage.url or ${STORAGE_URL_ENV}"
    elif "does not exist" in lowered and "database" in lowered:
        hint = "create the database (createdb -O <user> <db>) or fix its name in the URL"
    elif "permission denied" in lowered:
        hint = "let the user create tables in the database (make it the owner: ALTER DATABASE <db> OWNER TO <user>)"
    elif "pg_hba.conf" in lowered:
        hint = "allow this host and user in the server's pg_hba.conf"
    elif "timeout" in lowered or "timed out" in lowered or elapsed_s >= settings.connect_timeout_s:
        hint = (
            f"no answer within {settings.connect_timeout_s} s: check the host and port, the network and firewall, "
            "and that PostgreSQL listens on that address (listen_addresses)"
        )
    else:
        hint = "check the host and port, and that the database server is running and accepts TCP connections"
    return f"cannot use the Optuna storage {where}: {detail.rstrip('.')}; {hint}"
