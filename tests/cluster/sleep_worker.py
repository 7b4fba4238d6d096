"""A search worker whose objective only sleeps: the cluster tests run it as a real process.

    python tests/cluster/sleep_worker.py study_name=s search.n_trials=6 sleep_s=0.3 warm_starts=2 \
        storage.journal_path=/tmp/j.log          # or $AUTOFR_STORAGE_URL for PostgreSQL

Arguments are dotted ``key=value`` overrides like autofr-search's. It goes through the same calls
as the search command: ``search.workers=N`` (N > 1) hands over to
:func:`autofr.execution.spawn_local_workers`, which re-runs this script N times with
``search.workers=1``; a worker calls open_storage, open_study (the creator enqueues the warm starts,
then sets ``setup_done``; the others wait for it) and run_worker. Prints ``created=<bool>`` once
the study is open. ``barrier=<dir>``: before opening the study, create ``<dir>/<pid>`` and wait
for ``<dir>/go``, so a test can start several workers at the same instant. Exit status: 0 done,
2 an autofr error (one line on stderr), 130 interrupted.

The objective suggests ``x`` in [0, 1], records ``worker_pid`` (this process) and, unless the
trial already has it (a retry copies user attrs), ``first_worker_pid``; fails when its trial
number is in ``fail_numbers``; sleeps ``sleep_s``; returns ``(x, 1 - x)``.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna
from omegaconf import OmegaConf

from autofr.cli._config import run_cli  # as the autofr commands: errors -> 2, interrupts -> 130
from autofr.execution import open_study, run_worker, spawn_local_workers, wait_for_user_attr
from autofr.execution.storage import open_storage

# `import autofr.execution` loads neither torch nor diffusers (autofr/__init__.py is lazy): workers start in a second.
ROOT = Path(__file__).resolve().parents[2]

DEFAULTS = {
    "study_name": "sleep",
    "search": {"n_trials": 4, "workers": 1, "progress": False, "timeout_s": None},
    "sleep_s": 0.2,
    "warm_starts": 0,
    "fail_numbers": [],
    "setup_timeout_s": 60,
    "barrier": None,
}


def config(argv: list[str]):
    storage = OmegaConf.load(ROOT / "conf" / "storage" / "journal.yaml")
    return OmegaConf.merge({"storage": storage, **DEFAULTS}, OmegaConf.from_dotlist(argv))


def main(argv: list[str]) -> int:
    cfg = config(argv)
    if cfg.search.workers > 1:
        return spawn_local_workers(argv, cfg.search.workers, command=[sys.executable, str(Path(__file__).resolve())])
    return run(cfg)


def run(cfg) -> int:
    if cfg.barrier:
        barrier = Path(cfg.barrier)
        (barrier / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while not (barrier / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    storage = open_storage(cfg.storage)
    study, created = open_study(
        storage, cfg.study_name, directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler()
    )
    if created:
        for index in range(cfg.warm_starts):
            study.enqueue_trial({"x": (index + 0.5) / cfg.warm_starts}, user_attrs={"warm_start": index})
        study.set_user_attr("setup_done", True)
    else:
        wait_for_user_attr(study, "setup_done", cfg.setup_timeout_s)
    print(f"created={created}", flush=True)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        x = trial.suggest_float("x", 0.0, 1.0)
        # first_worker_pid before worker_pid: the kill test waits for worker_pid, so both are stored
        if "first_worker_pid" not in trial.user_attrs:
            trial.set_user_attr("first_worker_pid", os.getpid())
        trial.set_user_attr("worker_pid", os.getpid())
        if trial.number in cfg.fail_numbers:
            raise ValueError(f"trial {trial.number} was asked to fail")
        time.sleep(cfg.sleep_s)
        return x, 1.0 - x

    run_worker(study, objective, cfg.search.n_trials, timeout_s=cfg.search.timeout_s, progress=cfg.search.progress)
    return 0


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sys.exit(run_cli(main))
