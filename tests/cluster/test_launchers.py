"""The Hydra launcher presets (conf/hydra/launcher/): they compose offline against the
hydra-submitit-launcher schema, the SLURM one renders the sbatch script we mean, and the local one
runs a real two-job multirun of workers sharing one study."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.trial import TrialState

from autofr.config import register_configs

from .conftest import ROOT_CONF, Backend

HYDRA_APP = Path(__file__).with_name("hydra_app.py")


def launcher_config(name: str, *overrides: str):
    register_configs()  # the schema of conf/'s groups (autofr.config's settings dataclasses)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Hydra's schema-matching deprecation warning
        with initialize_config_dir(config_dir=str(ROOT_CONF), version_base="1.3"):
            cfg = compose(
                config_name="config", overrides=[f"hydra/launcher={name}", *overrides], return_hydra_config=True
            )
    return cfg.hydra.launcher


def test_slurm_preset_composes_and_renders_the_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    # No SLURM here: submitit's executor refuses to exist without `srun`; its sbatch rendering is real.
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))

    launcher = launcher_config("slurm", "hydra.launcher.partition=gpu", "+worker=3")
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.timeout_min, launcher.gpus_per_node, launcher.array_parallelism) == (720, 1, 8)

    # What SlurmLauncher.launch hands to submitit (hydra_submitit_launcher 1.2).
    params = OmegaConf.to_container(launcher)
    params = {key: value for key, value in params.items() if key not in ("_target_", "submitit_folder", "name")}
    executor = submitit.AutoExecutor(
        folder=tmp_path, cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{key if key in base else f"slurm_{key}": value for key, value in params.items()})
    sbatch = executor._executor._make_submission_file_text("autofr-search", "uid")
    for line in (
        "--partition=gpu",
        "--gpus-per-node=1",
        "--time=720",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}" in sbatch


def test_a_mistyped_launcher_key_is_an_error():
    with pytest.raises(Exception, match="partiton"):
        launcher_config("slurm", "hydra.launcher.partiton=gpu")


def test_local_preset_runs_workers_as_submitit_jobs_on_one_study(tmp_path):
    backend = Backend("journal", tmp_path)
    launcher = launcher_config("local")
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    command = [
        sys.executable,
        str(HYDRA_APP),
        "-m",
        "hydra/launcher=local",
        "+worker=range(2)",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
        f"storage.journal_path={backend.journal_path}",
        f"study_name={backend.study_name}",
        "search.n_trials=4",
        "+sleep_s=0.3",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, env=backend.env())
    assert run.returncode == 0, (run.stdout + run.stderr)[-2000:]
    trials = backend.study().get_trials()
    assert Counter(trial.state for trial in trials)[TrialState.COMPLETE] == 4
