"""The ``storage`` config group, validated (:class:`StorageSettings`), and the retry callback every
storage shares (a dead worker's trial is enqueued again)."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning

from autofr.errors import ConfigError

STORAGE_URL_ENV = "AUTOFR_STORAGE_URL"


@dataclass(frozen=True)
class StorageSettings:
    """The ``storage`` config group, validated.

    Attributes:
        url: RDB URL (``postgresql://user:password@host:5432/db``); None selects the journal file.
        journal_path: journal file used when ``url`` is None.
        heartbeat_interval: seconds between heartbeats of a running trial. Each beat is one small
            write (one journal line or one row update), so 10-60 s is plenty for minute-long trials.
        grace_period: seconds without a heartbeat after which a RUNNING trial is failed and retried.
            Larger than ``heartbeat_interval`` (2-4x): too small fails trials of live but stalled
            workers (swapping, NFS hiccups), too large delays the retry of a dead worker's trial.
        max_retry: how many times a dead worker's trial is retried (None: without limit).
        connect_timeout_s: how long the up-front reachability check waits for the database.
    """

    url: str | None = None
    journal_path: str | None = None
    heartbeat_interval: int = 30
    grace_period: int = 120
    max_retry: int | None = 2
    connect_timeout_s: int = 10

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> StorageSettings:
        """Validated settings from the ``storage`` group (a mapping): missing numbers take the field defaults
        (a missing ``grace_period`` 4 x the heartbeat interval); a missing ``journal_path`` with no URL is
        an error, not the default path."""
        defaults = {spec.name: spec.default for spec in dataclasses.fields(cls)}

        def number(key: str, default: Any, minimum: int) -> int:
            value = cfg.get(key, default)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value < minimum
                or value != int(value)
            ):
                raise ConfigError(f"storage.{key} must be a whole number >= {minimum}, not {value!r}")
            return int(value)

        url = cfg.get("url") or os.environ.get(STORAGE_URL_ENV) or None
        if url is not None and not isinstance(url, str):
            raise ConfigError(f"storage.url must be a database URL string, not {type(url).__name__}")
        journal_path = cfg.get("journal_path")
        if url is None and not journal_path:
            raise ConfigError(
                f"no Optuna storage: set storage.url=postgresql://user:password@host:5432/db (or ${STORAGE_URL_ENV}), "
                "or use storage=journal"
            )
        heartbeat_interval = number("heartbeat_interval", defaults["heartbeat_interval"], 1)
        grace_period = number("grace_period", 4 * heartbeat_interval, 1)
        if grace_period <= heartbeat_interval:
            raise ConfigError(
                f"storage.grace_period ({grace_period} s) must exceed storage.heartbeat_interval "
                f"({heartbeat_interval} s), or live trials are failed as dead: use 2-4x the interval"
            )
        max_retry = None if cfg.get("max_retry", 2) is None else number("max_retry", defaults["max_retry"], 0)
        return cls(
            url=url,
            journal_path=None if url else str(journal_path),
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            max_retry=max_retry,
            connect_timeout_s=number("connect_timeout_s", defaults["connect_timeout_s"], 1),
        )


def retry_callback(max_retry: int | None):
    """Optuna's callback that enqueues a copy of a failed trial (params, user and system attrs)."""
    callback_class = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if callback_class is None:  # Optuna < 4.9
        callback_class = optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return callback_class(max_retry=max_retry)
