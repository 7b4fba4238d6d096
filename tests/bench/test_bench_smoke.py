"""bench/ as a user of the package: every script answers --help, and every stage of the two study
benchmarks runs on a tiny budget (``--smoke``: 4 trials of 4 steps, FID-16; the numbers mean nothing).

The stages of a script share one work folder and run in order, as a person runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_"))


def _run(*args: str, timeout: float = 900) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_answers_help(script):
    assert "usage" in _run(str(BENCH / script), "--help", timeout=120).lower()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bench")


TARGET_SEARCH = ["search", "confirm", "rescore", "time", "report", "samplers", "quick"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", TARGET_SEARCH)
def test_target_search_stage_runs_on_a_tiny_budget(stage, work):
    common = ["--smoke", "--model", "digits_unet", "--workdir", str(work / "target"), "--seeds", "0"]
    out = _run(
        str(BENCH / "target_search.py"), stage, *common, "--samplers", "tpe", "--timing-samples", "4", "--repeats", "1"
    )
    if stage == "report":
        assert (work / "target" / "smoke" / "results" / "target_digits_unet_tpe.json").is_file()
        assert "fastest searched within target" in out


PEERS = ["check", "search", "confirm", "time", "rescore", "report", "quick"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", PEERS)
def test_peers_stage_runs_on_a_tiny_budget(stage, work):
    common = ["--smoke", "--model", "digits_dit", "--workdir", str(work / "peers"), "--seeds", "2"]
    _run(str(BENCH / "peers.py"), stage, *common, "--timing-samples", "4", "--repeats", "1")
    if stage == "report":
        assert (work / "peers" / "smoke" / "results" / "peers_digits_dit.json").is_file()


def test_compiled_bench_counts_graphs_breaks_and_recompiles_on_a_tiny_run():
    out = _run(str(BENCH / "compiled.py"), "--quick", "--backend", "eager")
    assert "| full compute |" in out and "| stack M=2 (stack) |" in out
    assert "compile failed" not in out.split("peer:")[0]  # autofr's schedules all compile


def test_gpu_bench_runs_small_on_cpu_and_says_the_gpu_figures_are_unmeasured():
    out = _run(
        str(BENCH / "gpu_reuse.py"), "--device", "cpu", "--models", "flux_shaped", "--steps", "3", "--repeats", "1"
    )
    assert "the GPU figures are unmeasured" in out and "| stack M=2 |" in out
