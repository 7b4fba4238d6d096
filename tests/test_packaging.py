"""A built package runs on its own: the wheel carries conf/ and studies/ (and the embedded models), and
installed non-editable into a fresh venv, `autofr-search study=digits_unet` runs from an unrelated folder.

The wheel is built without build isolation (this venv's setuptools: nothing is downloaded, no CUDA torch
is pulled); the fresh venv sees this venv's packages through a path entry (not its .pth files, so not the
editable autofr) and gets autofr from the wheel alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What the build reads; everything else in the checkout (tests, bench, .venv) stays out of the package.
BUILD_INPUTS = ("autofr", "conf", "studies", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
PRESETS = sorted(path.name for path in (ROOT / "studies").glob("*.yaml"))
CONF_FILES = sorted(
    str(path.relative_to(ROOT / "conf"))
    for path in (ROOT / "conf").rglob("*.yaml")
    if "study" not in path.relative_to(ROOT / "conf").parts
)


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    return done


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The build inputs copied out of the checkout, so building writes nothing into it."""
    source = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(
                origin, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "_conf")
            )
        else:
            shutil.copy2(origin, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(source_copy, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(source_copy),
        ],
        cwd=out,
    )
    wheels = list(out.glob("autofr-*.whl"))
    assert len(wheels) == 1, f"expected one wheel, found {wheels}"
    return wheels[0]


def test_the_wheel_carries_configs_presets_and_models(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f"autofr/_conf/{name}" for name in CONF_FILES if f"autofr/_conf/{name}" not in names]
    missing += [f"autofr/_conf/study/{name}" for name in PRESETS if f"autofr/_conf/study/{name}" not in names]
    missing += [
        f"autofr/models/assets/{model}/model_index.json"
        for model in ("digits_unet", "digits_dit")
        if f"autofr/models/assets/{model}/model_index.json" not in names
    ]
    assert not missing, f"the wheel lacks {missing}"
    assert len(CONF_FILES) > 10 and "digits_unet.yaml" in PRESETS
    assert not [name for name in names if name.startswith(("tests/", "bench/", "conf/", "studies/"))]


def test_the_sdist_carries_what_the_wheel_is_built_from(source_copy, tmp_path):
    code = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    name = run([sys.executable, "-c", code, str(tmp_path)], cwd=source_copy).stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / name) as sdist:
        members = {member.split("/", 1)[1] for member in sdist.getnames() if "/" in member}
        sdist.extractall(tmp_path / "unpacked", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert {"setup.py", "conf/config.yaml", "autofr/models/assets/digits_unet/model_index.json"} <= members
    assert {f"studies/{preset}" for preset in PRESETS} <= members
    # and a wheel built from the unpacked sdist (as `python -m build` does) has the presets too
    unpacked = next((tmp_path / "unpacked").iterdir())
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "from_sdist"),
            str(unpacked),
        ],
        cwd=tmp_path,
    )
    names = zipfile.ZipFile(next((tmp_path / "from_sdist").glob("*.whl"))).namelist()
    assert {f"autofr/_conf/study/{preset}" for preset in PRESETS} <= set(names)


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with autofr from the wheel; the dependencies come from this venv's site-packages."""
    venv = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    python = venv / "bin" / "python"
    site = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv).stdout.strip()
    )
    (site / "_autofr_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=venv,
    )
    return venv


def clean_env(venv: Path) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("AUTOFR_CONF_DIR", "PYTHONPATH", "AUTOFR_STORAGE_URL", "MLFLOW_TRACKING_URI", "VIRTUAL_ENV")
    }
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "OMP_NUM_THREADS": "1"}


def test_the_installed_package_finds_its_own_configs(installed, tmp_path):
    code = "import autofr, autofr.config as c; print(autofr.__file__); print(c.conf_dir())"
    lines = run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, env=clean_env(installed)).stdout.split()
    package = Path(lines[0]).parent
    assert package.is_relative_to(installed), f"autofr was imported from {package}, not from the wheel"
    assert Path(lines[1]) == package / "_conf"


def test_a_two_trial_search_from_an_unrelated_folder(installed, tmp_path):
    elsewhere = tmp_path / "somewhere_else"
    elsewhere.mkdir()
    search = installed / "bin" / "autofr-search"
    done = run(
        [
            str(search),
            "study=digits_unet",
            "search.n_trials=2",
            "quality.proxy_samples=8",
            "quality.fid_samples=16",
            "quality.batch_size=16",
            "search.confirm_max=2",
            "model.num_inference_steps=10",
            "space.steps=[6,10]",
            "space.baseline_steps=[6]",
            "search.progress=false",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        cwd=elsewhere,
        env=clean_env(installed),
    )
    assert "study 'digits_unet' (new)" in done.stdout and "full compute" in done.stdout
    outputs = elsewhere / "autofr_outputs"
    assert (outputs / "optuna_journal.log").is_file() and (outputs / "mlflow.db").is_file()
    assert (outputs / "digits_unet" / "front.png").is_file()
    assert done.stderr.strip() == "", f"the search printed to stderr: {done.stderr[-1500:]}"
