"""optuna-dashboard on a study autofr-search made, started with the README's own commands: on the journal
file of a local run and on PostgreSQL. The dashboard's HTTP API must show the study with its two
objectives named as the report names them (the speed measure and the proxy), not "0" and "1"."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from autofr.cli import search as search_cli
from autofr.search.study import SPEED_OBJECTIVE
from tests.cluster.conftest import fresh_postgres_url  # noqa: F401  (a fixture)
from tests.conftest import save_tiny_digit_pipeline

README = Path(__file__).resolve().parents[2] / "README.md"
PROXY = "ssim"
OBJECTIVES = [SPEED_OBJECTIVE, PROXY]


def readme_command(fragment: str) -> str:
    """The README's ``optuna-dashboard`` command that contains ``fragment`` (comments stripped)."""
    commands = [
        line.split("#", 1)[0].strip()
        for line in README.read_text().splitlines()
        if line.strip().startswith("optuna-dashboard ")
    ]
    found = [command for command in commands if fragment in command]
    assert found, f"README.md has no `optuna-dashboard ...{fragment}...` command (it has: {commands})"
    return found[0]


def readme_storage_url(url: str) -> str:
    """``url`` written as the README's ``export AUTOFR_STORAGE_URL=`` line writes it (its scheme/driver)."""
    exports = [
        line.split("=", 1)[1]
        for line in README.read_text().splitlines()
        if line.startswith("export AUTOFR_STORAGE_URL=")
    ]
    assert exports, "README.md has no `export AUTOFR_STORAGE_URL=...` line"
    return exports[0].split("://", 1)[0] + "://" + url.split("://", 1)[1]


def tiny_overrides(root: Path, study_name: str) -> list[str]:
    return [
        f"model.path={root / 'tiny'}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "space.steps=[6,8]",
        "space.max_interval=3",
        f"quality.proxy={PROXY}",
        "quality.proxy_samples=8",
        "quality.fid_samples=16",
        "quality.batch_size=8",
        "quality.fid_reference=full_compute",
        "search.n_trials=2",
        "search.confirm_max=1",
        "search.measure_speed=false",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        f"cache_dir={root / 'cache'}",
        f"study_name={study_name}",
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def dashboard_study(command: str, cwd: Path, study_name: str, timeout_s: float = 90.0) -> dict:
    """Run ``command --port <free>`` (as a shell would: the README's text, variables expanded) in ``cwd``;
    return the study ``study_name`` as the dashboard's API serves it."""
    port = free_port()
    log = cwd / f"dashboard-{port}.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(log, "wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command} --port {port}"],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                summaries = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-5:])
                    raise AssertionError(
                        f"`{command}` did not serve on port {port} (exit {process.poll()}): {tail}"
                    ) from None
                time.sleep(0.3)
        by_name = {summary["study_name"]: summary for summary in summaries}
        assert study_name in by_name, f"the dashboard lists {sorted(by_name)}"
        return get_json(f"http://127.0.0.1:{port}/api/studies/{by_name[study_name]['study_id']}")
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def assert_named_study(served: dict, study_name: str, out_dir: Path) -> None:
    assert served["name"] == study_name
    assert served["directions"] == ["maximize", "minimize"]
    assert served["objective_names"] == OBJECTIVES
    complete = [trial for trial in served["trials"] if trial["state"] == "Complete"]
    assert len(complete) == 2 and all(len(trial["values"]) == 2 for trial in complete)
    # the report uses the same names: the front plot's axes
    front = (out_dir / "front.html").read_text()
    assert f"{PROXY} (proxy, lower is better)" in front and "predicted speedup" in front


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    torch.set_num_threads(1)
    save_tiny_digit_pipeline(root / "tiny")
    return root


def test_readme_dashboard_command_on_the_journal_of_a_default_run(tiny_model, monkeypatch):
    # the quick start's layout: default storage and tracking under ./autofr_outputs of the working folder
    monkeypatch.delenv("AUTOFR_STORAGE_URL", raising=False)
    monkeypatch.chdir(tiny_model)
    assert search_cli.main(tiny_overrides(tiny_model, "tiny_journal")) == 0
    assert (tiny_model / "autofr_outputs" / "optuna_journal.log").is_file()
    served = dashboard_study(readme_command("optuna_journal.log"), tiny_model, "tiny_journal")
    assert_named_study(served, "tiny_journal", tiny_model / "autofr_outputs" / "tiny_journal")


@pytest.mark.postgres
def test_readme_dashboard_command_on_postgres(tiny_model, fresh_postgres_url, monkeypatch):  # noqa: F811
    monkeypatch.setenv("AUTOFR_STORAGE_URL", readme_storage_url(fresh_postgres_url))
    root = tiny_model / "pg"
    root.mkdir()
    overrides = [
        *tiny_overrides(tiny_model, "tiny_postgres"),
        "storage=postgres",
        f"out_dir={root / 'out'}",
        f"tracking.uri=sqlite:///{root / 'mlflow.db'}",
    ]
    assert search_cli.main(overrides) == 0
    served = dashboard_study(readme_command("$AUTOFR_STORAGE_URL"), root, "tiny_postgres")
    assert_named_study(served, "tiny_postgres", root / "out")
