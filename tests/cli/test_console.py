"""What a person reads on the console: a device or dtype the machine cannot run is one line and exit code 2
(before anything is written), and library notices (diffusers' `accelerate` notice) appear only when
AUTOFR_LOG_LEVEL asks for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autofr.cli import sample as sample_cli
from autofr.cli import search as search_cli
from tests.conftest import save_tiny_digit_pipeline

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE_NOTICE = "pip install accelerate"
no_cuda = pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA: the no-CUDA error cannot happen"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("console") / "tiny"
    save_tiny_digit_pipeline(path)
    return path


def search_overrides(tmp_path: Path, tiny: Path, *extra: str) -> list[str]:
    return [
        f"model.path={tiny}",
        "model.name=tiny",
        f"storage.journal_path={tmp_path / 'out' / 'journal.log'}",
        f"tracking.uri=sqlite:///{tmp_path / 'out' / 'mlflow.db'}",
        f"out_dir={tmp_path / 'out' / 'study'}",
        f"cache_dir={tmp_path / 'cache'}",
        "search.progress=false",
        "search.speed_model=macs",  # deterministic speeds: the latency model is timed on this machine
        *extra,
    ]


def one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, f"not one line: {err!r}"
    assert err.startswith("error: ")
    return err


@no_cuda
def test_sample_on_a_missing_cuda_device_is_one_line_and_exit_2(tiny, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert sample_cli.main([f"model.path={tiny}", "model.device=cuda", f"out={out}"]) == 2
    err = one_line_error(capsys)
    assert "device 'cuda' is not available" in err and "model.device=cpu" in err
    assert not out.exists()


@no_cuda
def test_search_on_a_missing_cuda_device_fails_before_writing_anything(tiny, tmp_path, capsys):
    assert search_cli.main(search_overrides(tmp_path, tiny, "model.device=cuda:0")) == 2
    err = one_line_error(capsys)
    assert "device 'cuda:0' is not available" in err
    assert not (tmp_path / "out").exists()  # no journal, no MLflow store, no study folder


@pytest.mark.parametrize(
    "dtype, fragment",
    [
        ("float8_e4m3fn", "dtype float8_e4m3fn cannot run on cpu"),  # a float dtype the CPU kernels lack
        ("int8", "dtype int8 cannot hold a diffusion model's weights"),
        ("fp16", "dtype 'fp16' is not a torch dtype"),
    ],
)
def test_a_dtype_the_device_cannot_run_is_one_line_and_exit_2(tiny, tmp_path, capsys, dtype, fragment):
    assert sample_cli.main([f"model.path={tiny}", f"model.dtype={dtype}", f"out={tmp_path / 'grid.png'}"]) == 2
    assert fragment in one_line_error(capsys)
    assert search_cli.main(search_overrides(tmp_path, tiny, f"model.dtype={dtype}")) == 2
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_an_unknown_log_level_is_one_line_and_exit_2(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AUTOFR_LOG_LEVEL", "chatty")
    assert sample_cli.main([f"model.path={tiny}", f"out={tmp_path / 'grid.png'}"]) == 2
    assert "AUTOFR_LOG_LEVEL='chatty' is not a log level" in one_line_error(capsys)


def sample_in_a_fresh_process(tiny: Path, out: Path, log_level: str | None) -> subprocess.CompletedProcess:
    """``autofr-sample`` as its console script runs it (a fresh interpreter: nothing imported yet)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AUTOFR_LOG_LEVEL", "DIFFUSERS_VERBOSITY", "MLFLOW_LOGGING_LEVEL")
    }
    env["OMP_NUM_THREADS"] = "1"
    if log_level:
        env["AUTOFR_LOG_LEVEL"] = log_level
    code = "import sys; from autofr.cli.sample import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            f"model.path={tiny}",
            "model.num_inference_steps=4",
            "num_samples=2",
            "batch_size=2",
            f"out={out}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_library_notices_only_when_asked_for(tiny, tmp_path):
    quiet = sample_in_a_fresh_process(tiny, tmp_path / "quiet.png", None)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "", f"stderr should be empty, got: {quiet.stderr[:800]!r}"
    assert "measured speedup" in quiet.stdout and (tmp_path / "quiet.png").is_file()

    verbose = sample_in_a_fresh_process(tiny, tmp_path / "verbose.png", "INFO")
    assert verbose.returncode == 0, verbose.stderr
    assert ACCELERATE_NOTICE in verbose.stderr  # diffusers' notice, shown because it was asked for
    assert "INFO autofr.models: loaded" in verbose.stderr  # and autofr's own log
