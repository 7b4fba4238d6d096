"""Cluster tests: real worker processes (tests/cluster/sleep_worker.py) on a real journal file and a
real PostgreSQL server. The PostgreSQL cases need ``AUTOFR_TEST_POSTGRES_URL`` (``source
.ci/services.sh`` starts a server and sets it); without it they are skipped and the journal cases run.
Each PostgreSQL case gets a database of its own when the role may create databases.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from autofr.execution.storage import open_storage

WORKER = Path(__file__).with_name("sleep_worker.py")
ROOT_CONF = Path(__file__).resolve().parents[2] / "conf"
POSTGRES_ENV = "AUTOFR_TEST_POSTGRES_URL"
# Short heartbeats so a killed worker's trial comes back within seconds.
FAST_HEARTBEAT = ["storage.heartbeat_interval=1", "storage.grace_period=4"]


def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: `source .ci/services.sh` starts a PostgreSQL server for these tests")
    return url


def _admin_connection(url: str):
    import psycopg2

    connection = psycopg2.connect(url, connect_timeout=5)
    connection.autocommit = True
    return connection


@pytest.fixture
def fresh_postgres_url():
    """A URL to an empty database of its own (dropped afterwards), or the shared one without CREATEDB."""
    import psycopg2

    url = postgres_url()
    name = f"autofr_cluster_{uuid.uuid4().hex[:10]}"
    admin = _admin_connection(url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    except psycopg2.errors.InsufficientPrivilege:
        admin.close()
        yield url
        return
    yield url.rsplit("/", 1)[0] + "/" + name
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def public_tables(url: str) -> set[str]:
    connection = _admin_connection(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            return {row[0] for row in cursor.fetchall()}
    finally:
        connection.close()


class Backend:
    """Where the workers of one test keep their study, and how to look at it from the test."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None = None):
        self.kind = kind
        self.url = url
        self.journal_path = tmp_path / "journal" / "optuna.log"
        self.study_name = f"study_{uuid.uuid4().hex[:8]}"
        self._storage = None

    def overrides(self) -> list[str]:
        journal = [] if self.url else [f"storage.journal_path={self.journal_path}"]
        return [f"study_name={self.study_name}", *journal, *FAST_HEARTBEAT]

    def env(self) -> dict[str, str]:
        # The URL travels in the environment, as on a cluster (and not in `ps` output).
        env = {key: value for key, value in os.environ.items() if key != "AUTOFR_STORAGE_URL"}
        if self.url:
            env["AUTOFR_STORAGE_URL"] = self.url
        return env

    def study(self) -> optuna.Study:
        if self._storage is None:
            cfg = {"url": self.url, "journal_path": str(self.journal_path), "heartbeat_interval": 1, "grace_period": 4}
            self._storage = open_storage(cfg)
        return optuna.load_study(study_name=self.study_name, storage=self._storage)

    def start(self, *overrides: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *self.overrides(), *overrides],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(params=["journal", "postgres"])
def backend(request, tmp_path) -> Backend:
    if request.param == "postgres":
        return Backend("postgres", tmp_path, url=request.getfixturevalue("fresh_postgres_url"))
    return Backend("journal", tmp_path)


@pytest.fixture
def journal_backend(tmp_path) -> Backend:
    return Backend("journal", tmp_path)


def finish(process: subprocess.Popen, timeout: float = 90) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"worker {process.pid} did not finish within {timeout} s; stderr: {err[-2000:]}")
    return process.returncode, out, err


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def running_trial_of(backend: Backend, pid: int):
    """The RUNNING trial whose objective runs in process ``pid``, or None."""

    def find():
        try:
            trials = backend.study().get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the study does not exist yet
            return None
        return next((trial for trial in trials if trial.user_attrs.get("worker_pid") == pid), None)

    return find


def stop_all(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.communicate()


def start_together(backend: Backend, n: int, *overrides: str, tmp_path: Path) -> list[subprocess.Popen]:
    """Start ``n`` workers that open the study at the same instant (after their imports)."""
    barrier = tmp_path / f"barrier_{uuid.uuid4().hex[:6]}"
    barrier.mkdir()
    workers = [backend.start(*overrides, f"barrier={barrier}") for _ in range(n)]
    wait_until(lambda: len(list(barrier.iterdir())) >= n, 60, f"{n} workers to start")
    (barrier / "go").touch()
    return workers
