"""Opening storages: a reachable one works; a wrong password, an unreachable server or an unwritable
journal is one StorageError line, quickly, that never shows the password, and creates nothing."""

from __future__ import annotations

import time

import optuna
import pytest
from omegaconf import OmegaConf

from autofr.errors import ConfigError, StorageError
from autofr.execution.journal import HeartbeatJournalStorage
from autofr.execution.storage import mask_url, open_storage
from autofr.execution.workers import open_study

from .conftest import ROOT_CONF, Backend, finish, public_tables


def _password(url: str) -> str:
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://autofr:s3cr3t@db.lab:5432/autofr", "postgresql://autofr:***@db.lab:5432/autofr"),
        ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h/db?user=u&password=pw", "postgresql://h/db?user=u&password=***"),
        (None, "None"),
    ],
)
def test_mask_url_hides_passwords(url, masked):
    assert mask_url(url) == masked


def test_wrong_password_is_one_line_and_creates_nothing(fresh_postgres_url, tmp_path):
    password = _password(fresh_postgres_url)
    wrong = fresh_postgres_url.replace(f":{password}@", ":not-the-password@", 1)
    before = public_tables(fresh_postgres_url)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        open_storage({"url": wrong})
    message = str(raised.value)
    assert time.monotonic() - started < 5
    assert "\n" not in message and "not-the-password" not in message and password not in message
    assert mask_url(wrong) in message and "password" in message and "check the user and password" in message

    # The same through a worker process, with the URL in $AUTOFR_STORAGE_URL: exit 2, one line.
    backend = Backend("postgres", tmp_path, url=wrong)
    code, out, err = finish(backend.start())
    assert code == 2 and "created=" not in out
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: cannot use the Optuna storage")
    assert public_tables(fresh_postgres_url) == before  # no tables (a fresh database stays empty)


@pytest.mark.parametrize(
    ("where", "hint"),
    [
        ("127.0.0.1:1", "check the host and port"),  # nothing listens: refused at once
        ("192.0.2.1:5432", "check the host and port"),  # TEST-NET-1: no route, or no answer until the timeout
    ],
)
def test_unreachable_server_is_one_line_within_the_connect_timeout(where, hint):
    url = f"postgresql://autofr:s3cr3t@{where}/autofr"
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        open_storage({"url": url, "connect_timeout_s": 2})
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert "\n" not in message and "s3cr3t" not in message and hint in message
    assert message.startswith(f"cannot use the Optuna storage postgresql://autofr:***@{where}/autofr: ")


def test_missing_database_names_the_fix(fresh_postgres_url):
    url = fresh_postgres_url.rsplit("/", 1)[0] + "/autofr_no_such_database"
    with pytest.raises(
        StorageError, match=r"database \"autofr_no_such_database\" does not exist; create the database"
    ):
        open_storage({"url": url})


def test_a_fresh_database_gets_optunas_tables_and_one_study(fresh_postgres_url):
    storage = open_storage({"url": fresh_postgres_url, "heartbeat_interval": 1, "grace_period": 3})
    assert {"studies", "trials", "trial_heartbeats"} <= public_tables(fresh_postgres_url)
    study, created = open_study(storage, "one", ["maximize", "minimize"])
    again, created_again = open_study(open_storage({"url": fresh_postgres_url}), "one", ["maximize", "minimize"])
    assert (created, created_again) == (True, False) and again._study_id == study._study_id
    with pytest.raises(ConfigError, match="already exists with directions"):
        open_study(storage, "one", ["minimize", "minimize"])


def test_unwritable_journal_path_is_one_line_and_creates_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    for path in (blocker / "journal.log", tmp_path):
        with pytest.raises(StorageError) as raised:
            open_storage({"journal_path": str(path)})
        assert "\n" not in str(raised.value) and str(path) in str(raised.value)
        assert "set storage.journal_path to a writable file" in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_file_that_is_no_journal_is_refused_untouched(tmp_path):
    other = tmp_path / "notes.txt"
    for text in ("these are my notes\n", '{"a": 1}\n', "line 1\nline 2\n"):
        other.write_text(text)
        with pytest.raises(StorageError, match="is not an Optuna journal file"):
            open_storage({"journal_path": str(other)})
        assert other.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_journal_storage_creates_missing_folders_and_has_heartbeats(tmp_path):
    storage = open_storage(
        {"journal_path": str(tmp_path / "a" / "b" / "journal.log"), "heartbeat_interval": 2, "grace_period": 5}
    )
    assert isinstance(storage, HeartbeatJournalStorage) and storage.get_heartbeat_interval() == 2
    assert (tmp_path / "a" / "b" / "journal.log").is_file()
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    storage.record_heartbeat(trial._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == []
    storage.grace_period = 0  # every heartbeat is now too old
    time.sleep(0.01)
    assert storage._get_stale_trial_ids(study._study_id) == [trial._trial_id]


def test_workers_opening_one_new_journal_at_once_all_succeed(tmp_path):
    """Workers started together race to create the journal's folders and file; none may lose."""
    import threading

    for attempt in range(5):
        path = tmp_path / f"run{attempt}" / "x" / "y" / "journal.log"
        barrier = threading.Barrier(8)
        errors = []

        def open_it(barrier=barrier, path=path, errors=errors):
            barrier.wait()
            try:
                open_storage({"journal_path": str(path)})
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and path.is_file()


def test_storage_presets_and_their_errors(monkeypatch):
    monkeypatch.delenv("AUTOFR_STORAGE_URL", raising=False)
    postgres = OmegaConf.load(ROOT_CONF / "storage" / "postgres.yaml")
    with pytest.raises(ConfigError, match=r"no Optuna storage: set storage.url=postgresql://"):
        open_storage(postgres)
    journal = OmegaConf.load(ROOT_CONF / "storage" / "journal.yaml")
    with pytest.raises(ConfigError, match="must exceed storage.heartbeat_interval"):
        open_storage({**journal, "heartbeat_interval": 30, "grace_period": 30})
    with pytest.raises(ConfigError, match="storage.max_retry must be a whole number >= 0"):
        open_storage({**journal, "max_retry": -1})
