"""``autofr-export``: pick one schedule from a study's front and write it as a schedule JSON.

    autofr-export                                          # fastest confirmed schedule within the study's target
    autofr-export export.delta=0.1                         # ... within 10% of full compute's FID instead
    autofr-export export.delta_abs=0.5                     # ... within +0.5 FID
    autofr-export export.policy=best_at_speedup export.min_speedup=2
    autofr-export export.policy=knee export.out=knee.json  # the front's knee
    autofr-export export.measure=proxy                     # a study whose front was not confirmed with FID
    autofr-export study_name=my_study storage=postgres     # the same study keys as autofr-search

The study is read from the Optuna storage of the same config as ``autofr-search`` (``study_name``,
``storage.*``); nothing in it changes. The schedule is written atomically with its provenance (study,
trial, policy, speed and quality numbers). Use it with ``autofr.apply_schedule(pipe, "schedule.json")``
or ``autofr-sample schedule=schedule.json``. All keys: conf/export.yaml.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig

from autofr.cli._config import cli_main, compose


def policy_options(export_cfg) -> dict:
    """The options of ``export.policy`` from the ``export`` config section."""
    policy = str(export_cfg.policy)
    keys = {"fastest_within": ("delta", "delta_abs"), "best_at_speedup": ("min_speedup",)}.get(policy, ())
    options = {key: export_cfg.get(key) for key in keys}
    if options.get("delta_abs") is not None:
        options.pop("delta", None)  # an absolute allowance replaces the relative one
    options["measure"] = str(export_cfg.get("measure", "fid"))
    return options


def export(cfg: DictConfig) -> Path:
    """Select a trial with ``cfg.export`` and write its schedule to ``cfg.export.out``; prints a summary."""
    from autofr.execution.settings import StorageSettings
    from autofr.search.export import export_schedule
    from autofr.search.records import StudyRecords
    from autofr.search.study import open_existing

    study = open_existing(StorageSettings.from_config(cfg.storage), str(cfg.study_name))
    exported = export_schedule(
        StudyRecords.load(study), str(cfg.export.policy), policy_options(cfg.export), str(cfg.export.out)
    )
    print("\n".join(exported.lines))
    print(f"wrote {exported.path}")
    _log_to_parent_run(cfg, study, exported)
    print(f"use it: autofr.apply_schedule(pipe, {str(exported.path)!r})  or  autofr-sample schedule={exported.path}")
    return exported.path


def _log_to_parent_run(cfg: DictConfig, study, exported) -> None:
    """Log the exported schedule to the study's MLflow parent run; a tracking problem is a note."""
    from autofr.errors import TrackingError
    from autofr.search.records import StudyInfo
    from autofr.tracking import Tracker

    parent = StudyInfo.read(study).mlflow_parent_run_id
    tracker = Tracker.from_config(cfg.tracking)
    if not parent or not tracker.store_exists():
        return
    problem = tracker.parent_run_problem(parent)
    try:
        if problem is None:
            label = exported.trial.display_label
            name = tracker.log_exported_schedule(parent, exported.path, f"trial {exported.trial.number} ({label})")
            print(f"logged to MLflow run {parent} as {name}")
            return
    except TrackingError as error:
        problem = str(error)
    print(f"note: {problem}; the schedule is not logged to MLflow", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    def body(overrides: list[str]) -> int:
        export(compose("export", overrides))
        return 0

    return cli_main(__doc__, body, argv)


if __name__ == "__main__":
    sys.exit(main())
