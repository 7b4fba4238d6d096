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

#: MLflow 3's experiment kind ("Machine learning" in the experiment's header): training runs, not
#: GenAI traces. MLflow 3.17's UI picks its view from the sidebar switch instead (see experiment_page).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default


def ui_command(uri: str, experiment_id: str | None = None) -> str:
    """The command that browses the store: ``mlflow ui --backend-store-uri <uri>`` (a server URI is
    simply opened in a browser); with ``experiment_id``, the page that shows its runs."""
    if uri.startswith(("http://", "https://")):
        return f"open {experiment_page(mask_url(uri), experiment_id) if experiment_id else mask_url(uri)} in a browser"
    command = f"mlflow ui --backend-store-uri {mask_url(uri)}"
    return f"{command}, then open {experiment_page(LOCAL_UI_URL, experiment_id)}" if experiment_id else command


def experiment_page(base_url: str, experiment_id: str) -> str:
    """The experiment's runs in the MLflow UI. MLflow 3.17 opens every experiment in the sidebar's
    "GenAI" view unless the "Model training" view is asked for (``workflowType``; the UI remembers
    the view once a person switches it)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


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
        raise TrackingError(
            f"cannot create the MLflow store folder {database.parent} ({error.strerror}): pick a writable tracking.uri"
        ) from None
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
    settings = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(math.ceil(timeout_s)))),
    }
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
    for marker, short in (
        ("Connection refused", "connection refused"),
        ("timed out", "no answer in time"),
        ("Name or service not known", "unknown host"),
        ("Failed to resolve", "unknown host"),
        ("nodename nor servname", "unknown host"),
        ("unable to open database file", "cannot open the database file"),
    ):
        if marker in text:
            return short
    return mask_url(text if len(text) <= 200 else text[:197] + "...")
