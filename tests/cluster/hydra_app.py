"""The sleep worker as a Hydra app on the project's conf/, to run the launcher presets for real:

    python tests/cluster/hydra_app.py -m hydra/launcher=local '+worker=range(2)' \
        storage.journal_path=/tmp/j.log study_name=s search.n_trials=4 +sleep_s=0.2

Every job is one worker of the same study (search.workers=1), as with autofr-search.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import optuna
from omegaconf import OmegaConf

from autofr.config import register_configs

register_configs()  # conf/ takes its groups' schema (keys, types, defaults) from autofr's settings dataclasses

HERE = str(Path(__file__).resolve().parent)
CONF = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(config_path=CONF, config_name="config", version_base="1.3")
def main(cfg) -> int:
    # Imported here: submitit runs this function in a fresh process that knows only its pickle.
    sys.path.insert(0, HERE)
    import sleep_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = OmegaConf.merge(
        sleep_worker.DEFAULTS,
        {key: cfg[key] for key in ("storage", "study_name", "search")},
        {key: cfg[key] for key in sleep_worker.DEFAULTS if key in cfg},
    )
    from autofr.cli._config import run_cli

    status = run_cli(lambda argv: sleep_worker.run(settings), [])
    if status:
        raise SystemExit(status)
    return cfg.get("worker")


if __name__ == "__main__":
    main()
