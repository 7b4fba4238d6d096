"""The study in the MLflow UI, as a person sees it: a real ``mlflow server`` on loopback over a finished
tiny study (autofr-search, then autofr-export), checked in a real headless chromium opened at the link
autofr-search prints. Skips only when chromium is absent (``.ci/run`` installs it)."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import redirect_stdout
from pathlib import Path

import optuna
import pytest
import torch

from autofr.cli import export as export_cli
from autofr.cli import search as search_cli
from autofr.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG
from tests.browser import HeadlessChromium, find_chromium
from tests.conftest import save_tiny_digit_pipeline

# .ci/run sets AUTOFR_TEST_REQUIRE_BROWSER once it installed chromium: there a missing browser fails
pytestmark = pytest.mark.skipif(
    find_chromium() is None and not os.environ.get("AUTOFR_TEST_REQUIRE_BROWSER"),
    reason="no chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)",
)

STUDY = "tiny_ui"
N_TRIALS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=3) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
            raise AssertionError(f"{url} did not answer (exit {process.poll()}): {tail}")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server`` on 127.0.0.1 (free port), SQLite backend and proxied artifacts in a tmp folder."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        yield url, process, log
    finally:
        stop(process)


@pytest.fixture(scope="module")
def finished_study(mlflow_server, tmp_path_factory):
    """A 3-trial study searched and exported against the server; what autofr-search printed."""
    url, process, log = mlflow_server
    root = tmp_path_factory.mktemp("ui_study")
    torch.set_num_threads(1)
    save_tiny_digit_pipeline(root / "tiny")  # while the server starts
    wait_until_healthy(url, process, log)
    overrides = [
        f"model.path={root / 'tiny'}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "space.steps=[6,8]",
        "space.max_interval=3",
        "quality.proxy=ssim",
        "quality.proxy_samples=8",
        "quality.fid_samples=16",
        "quality.batch_size=8",
        "quality.fid_reference=full_compute",
        f"search.n_trials={N_TRIALS}",
        "search.confirm_max=3",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        f"storage.journal_path={root / 'journal.log'}",
        f"tracking.uri={url}",
        f"out_dir={root / 'out'}",
        f"cache_dir={root / 'cache'}",
        f"study_name={STUDY}",
    ]
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert search_cli.main(overrides) == 0
        # the lowest FID at any speed: full compute (a measured-speed policy would depend on timing noise)
        assert export_cli.main([*overrides, "export.policy=best_at_speedup", "export.min_speedup=0"]) == 0
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "journal.log")))
    study = optuna.load_study(study_name=STUDY, storage=journal)
    return {"url": url, "out": printed.getvalue(), "study": study, "out_dir": root / "out", "root": root}


def test_search_and_export_print_the_runs_page_and_log_the_schedule(finished_study):
    import mlflow

    out, url, study = finished_study["out"], finished_study["url"], finished_study["study"]
    client = mlflow.MlflowClient(url)
    experiment = client.get_experiment_by_name("autofr")
    assert experiment.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND
    page = f"{url}/#/experiments/{experiment.experiment_id}/runs?workflowType=machine_learning"
    assert f"MLflow UI: open {page} in a browser" in out
    parent = study.user_attrs["mlflow_parent_run_id"]
    assert f"logged to MLflow run {parent} as export/schedule.json" in out
    logged = {a.path for a in client.list_artifacts(parent, "export")}
    assert logged == {"export/schedule.json"}


def test_the_browser_shows_the_parent_run_its_trials_the_front_and_the_schedule(finished_study, tmp_path):
    from PIL import Image

    url, study = finished_study["url"], finished_study["study"]
    link = re.search(r"MLflow UI: open (\S+) in a browser", finished_study["out"]).group(1)
    parent = study.user_attrs["mlflow_parent_run_id"]
    experiment_id = study.user_attrs["mlflow_experiment_id"]
    front = Image.open(finished_study["out_dir"] / "front.png")
    with HeadlessChromium(tmp_path / "profile") as browser:
        try:
            # the printed link opens the experiment on its runs (not the GenAI overview), parent first
            browser.open(link)
            browser.wait_for(
                f"!!document.querySelector('[row-id=\"{parent}\"]')", what=f"the parent run's row ({parent})"
            )
            browser.wait_for_text(STUDY)
            assert "/runs" in browser.url() and "/overview" not in browser.url()
            assert "trial-0" not in browser.text()  # nested runs sit under their parent, collapsed
            browser.evaluate(
                f'document.querySelector(\'[row-id="{parent}"] '
                'button[data-component-id*="runnamecellrenderer"]\').click()'
            )
            complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
            assert len(complete) == N_TRIALS
            for trial in complete:
                browser.wait_for_text(f"trial-{trial.number}", timeout_s=30)

            # the parent run's artifacts: the front plot rendered at its real size, the table, the schedule
            artifacts = f"{url}/#/experiments/{experiment_id}/runs/{parent}/artifacts"
            browser.open(f"{artifacts}/summary/front.png?workflowType=machine_learning")
            size = browser.wait_for(
                "(() => { const shown = [...document.images].filter(i => i.complete && i.naturalWidth > 0"
                " && i.src.startsWith('blob:')); return shown.length ? [shown[0].naturalWidth, shown[0].naturalHeight]"
                " : null })()",
                what="the front image",
            )
            assert tuple(size) == front.size
            for name in ("front.png", "front.html", "front_table.csv", "front_table.md", "hypervolume.png", "export"):
                assert name in browser.text()
            browser.click_text("front_table.csv")
            browser.wait_for_text("full compute")
            browser.click_text("export")
            browser.click_text("schedule.json")
            browser.wait_for_text("format_version")
            browser.wait_for_text(f'"study": "{STUDY}"')
        except AssertionError:
            browser.screenshot(tmp_path / "failure.png")
            raise
