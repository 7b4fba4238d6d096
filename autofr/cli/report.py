"""``autofr-report``: a study's front table in the terminal; plots and tables into ``out_dir``.

    autofr-report                                   # the study of the default config
    autofr-report study_name=my_study storage=postgres
    autofr-report report.all_trials=true            # every completed trial in the table
    autofr-report report.log_to_tracking=false      # do not touch MLflow

Writes front.png / front.html (speed vs proxy and vs FID, Pareto front, target line, references and
the exported schedule marked), front_table.csv / .md and hypervolume.png into ``out_dir``, and logs
them to the study's MLflow parent run when the tracking store is reachable and the run exists. All
keys: conf/report.yaml.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from autofr.cli._config import cli_main, compose
from autofr.errors import ConfigError, TrackingError


def report(cfg: DictConfig) -> dict:
    """Print the front table and write (and log) the study's plots; returns the written paths."""
    from optuna.trial import TrialState

    from autofr.execution.settings import StorageSettings
    from autofr.report import study_summary, write_study_report
    from autofr.report.text import summary_text
    from autofr.search.records import StudyRecords
    from autofr.search.study import open_existing
    from autofr.tracking import Tracker

    plotlyjs = {"cdn": "cdn", "inline": True}.get(str(cfg.report.get("plotlyjs", "cdn")))
    if plotlyjs is None:
        raise ConfigError(f"report.plotlyjs={cfg.report.plotlyjs!r} is unknown: use cdn or inline")
    records = StudyRecords.load(open_existing(StorageSettings.from_config(cfg.storage), str(cfg.study_name)))
    info = records.info
    print(
        f"study {records.name!r} ({info.model_id or 'unknown model'}): "
        f"{len(records.by_state(TrialState.COMPLETE))} complete, {len(records.by_state(TrialState.FAIL))} failed, "
        f"{len(records.confirmed())} confirmed with {info.fid_label}\n"
    )
    print(summary_text(records, all_trials=bool(cfg.report.get("all_trials", False))))
    print(
        "\n* on the Pareto front (speed vs FID where confirmed, else vs the proxy); "
        "speed columns are speedups over full compute"
    )
    paths = write_study_report(records, str(cfg.out_dir), include_plotlyjs=plotlyjs)
    print(f"\nwrote {', '.join(path.name for path in paths.values())} to {cfg.out_dir}")
    parent = info.mlflow_parent_run_id
    if cfg.report.get("log_to_tracking", True) and parent:
        tracker = Tracker.from_config(cfg.tracking)
        note = tracker.parent_run_problem(parent)
        if note is None:
            try:
                tracker.log_study_summary(parent, records, paths, study_summary(records))
                print(f"logged to MLflow run {parent}; browse: {tracker.ui_command()}")
            except TrackingError as error:
                note = f"{error}"
        if note is not None:
            print(f"note: {note}; plots written locally only", file=sys.stderr)
    return paths


def main(argv: list[str] | None = None) -> int:
    def body(overrides: list[str]) -> int:
        report(compose("report", overrides))
        return 0

    return cli_main(__doc__, body, argv)


if __name__ == "__main__":
    sys.exit(main())
