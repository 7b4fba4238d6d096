"""The MLflow store around the client: first-use locking of a SQLite store, quick reachability
checks, and one-line reasons for store failures."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

from autofr.errors import TrackingError
from autofr.masking import mask_url


@contextlib.contextmanager
def store_lock(database: Path | None) -> Iterator[None]:
    """Serialise a SQLite store's first-time table creation across processes (MLflow's migrations
    collide when several workers open a fresh database at once)."""
    if database is None:
        yield
        return
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = open(database.parent / f".{database.name}.lock", "a")
    except OSError as error:
        raise TrackingError(f"cannot create the MLflow store folder {database.parent} ({error.strerror}): "
                            "pick a writable tracking.uri") from None
    with lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):  # no POSIX locks (Windows, some network file systems)
            pass
        yield


@contextlib.contextmanager
def quick_http(timeout_s: float) -> Iterator[None]:
    """No retries and a short timeout for MLflow's HTTP requests while inside the block."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(math.ceil(timeout_s))))}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def reason_of(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    for marker, short in (("Connection refused", "connection refused"), ("timed out", "no answer in time"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("nodename nor servname", "unknown host"), ("unable to open database file", "cannot open the database file")):
        if marker in text:
            return short
    return mask_url(text if len(text) <= 200 else text[:197] + "...")


