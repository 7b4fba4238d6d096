"""How one ``autofr-search`` command becomes several workers: local processes or Hydra launcher jobs.

* ``search.workers=N`` (N > 1): N local processes run the same command with ``search.workers=1``
  and ``+worker_only=true``; when all are done, this process summarises.
* ``-m hydra/launcher=slurm ... +worker='range(N)'``: every Hydra job is one worker; the job with
  ``worker=0`` also prints the plan and the summary.

Either way every worker runs trials and then the study's work items (peers, FID slices, timing:
:mod:`autofr.search.stages`) until the last one is done.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from autofr.cli._config import compose, conf_dir
from autofr.errors import ConfigError


def run_local_workers(overrides: list[str], workers: int) -> None:
    """Run ``workers`` worker processes of this search and wait for them (exit status checked)."""
    from autofr.execution import spawn_local_workers

    worker_args = [a for a in overrides if not a.startswith("search.workers=")] + [
        "search.workers=1",
        "+worker_only=true",
    ]
    code = spawn_local_workers([sys.executable, "-m", "autofr.cli.search", *worker_args], workers)
    if code != 0:
        raise ConfigError(f"a worker exited with status {code}; see its output above (re-run to resume)")


def hydra_multirun(argv: list[str], body) -> int:
    """Multirun through Hydra's launchers: ``body(cfg, worker_only)`` runs in every job."""
    import hydra

    # fail fast on a bad (non-sweep) override before anything is submitted
    compose("config", [a for a in argv if not a.startswith("-") and "," not in a and "range(" not in a])

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def worker(cfg: DictConfig) -> None:
        body(cfg, int(cfg.get("worker", 0) or 0) != 0)

    sys.argv = [sys.argv[0], *argv]
    worker()
    return 0
