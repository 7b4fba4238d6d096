"""Bad input to ``autofr-search``: one line on stderr, exit code 2, an empty folder, no trial run.

Every output of the command (journal, MLflow store, out_dir, reference cache) points into one fresh
folder; after the failure it must still be empty, and the objective must never have been called.
"""

from __future__ import annotations

import socket

import pytest
import torch

from autofr.cli import search as search_cli
from autofr.search import objective as objective_module
from tests.conftest import save_tiny_digit_pipeline

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    save_tiny_digit_pipeline(path)
    return path


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _overrides(folder, tiny, *extra):
    return [
        f"model.path={tiny}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "space.steps=[6,8]",
        "space.max_interval=3",
        "quality.proxy_samples=8",
        "quality.fid_samples=16",
        "quality.batch_size=8",
        "quality.fid_reference=full_compute",
        "quality.proxy=ssim",
        "search.n_trials=3",
        "search.progress=false",
        f"storage.journal_path={folder / 'journal.log'}",
        f"tracking.uri=sqlite:///{folder / 'mlflow.db'}",
        f"out_dir={folder / 'out'}",
        f"cache_dir={folder / 'cache'}",
        "study_name=never",
        *extra,
    ]


CASES = {
    "unknown proxy": (("quality.proxy=nope",), "quality.proxy='nope' is unknown"),
    "negative budget": (("search.n_trials=-3",), "search.n_trials=-3"),
    "missing model path": (("model.path={folder}/no_such_model",), "no diffusers pipeline at"),
    "missing Inception weights": (
        (
            "quality=inception",
            "quality.inception_weights={folder}/missing.pth",
            "quality.fid_reference=full_compute",
            "quality.proxy=ssim",
            "quality.proxy_samples=8",
            "quality.fid_samples=16",
            "quality.batch_size=8",
        ),
        "Inception weights not found",
    ),
    "unwritable journal": (("storage.journal_path={blocker}/journal.log",), "cannot write the Optuna journal"),
    "unreachable PostgreSQL": (
        ("storage.url=postgresql://autofr:pw@127.0.0.1:{port}/autofr", "storage.connect_timeout_s=2"),
        "cannot use the Optuna storage postgresql://autofr:***@127.0.0.1",
    ),
    "unreachable tracking server": (("tracking.uri=http://127.0.0.1:{port}",), "cannot reach MLflow tracking"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tiny, tmp_path, capsys, monkeypatch):
    extra, needle = CASES[case]
    folder = tmp_path / "run"
    folder.mkdir()
    port = _closed_port()
    blocker = tmp_path / "a_file"  # a file where the journal's folder should be
    blocker.write_text("not a folder")
    extra = [item.format(folder=folder, port=port, blocker=blocker) for item in extra]
    calls = []
    original = objective_module.Objective.__call__
    monkeypatch.setattr(
        objective_module.Objective, "__call__", lambda self, trial: calls.append(1) or original(self, trial)
    )
    code = search_cli.main(_overrides(folder, tiny, *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and needle in err, err
    assert "pw@" not in err  # a password never reaches the terminal
    assert list(folder.iterdir()) == [], f"left behind: {sorted(p.name for p in folder.iterdir())}"
    assert calls == []
