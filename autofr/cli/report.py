"""``autofr-report``: a study's front table in the terminal; plots and tables into ``out_dir``.

    autofr-report                                   # the study of the default config
    autofr-report study_name=my_study storage=postgres
    autofr-report report.all_trials=true            # every completed trial in the table
    autofr-report report.log_to_tracking=false      # do not touch MLflow

Writes front.png / front.html (speed vs proxy and vs FID, Pareto front, full compute and FRDiff
marked), front_table.csv / .md and hypervolume.png into ``out_dir``, and logs them to the study's
MLflow parent run when the tracking store is reachable and the run exists. All keys: conf/report.yaml.
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from autofr.cli._config import cli_main, compose
from autofr.cli.export import load_study
from autofr.errors import TrackingError

logger = logging.getLogger(__name__)


def report(cfg: DictConfig) -> dict:
    """Print the front table and write (and log) the study's plots; returns the written paths."""
    from optuna.trial import TrialState

    from autofr.report import write_study_report
    from autofr.search.front import confirmed_trials, format_table, front_table, hypervolume_history

    study = load_study(cfg)
    options = cfg.report
    plotlyjs = {"cdn": "cdn", "inline": True}.get(str(options.get("plotlyjs", "cdn")))
    if plotlyjs is None:
        from autofr.errors import ConfigError

        raise ConfigError(f"report.plotlyjs={options.plotlyjs!r} is unknown: use cdn or inline")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    attrs = study.user_attrs
    print(f"study {study.study_name!r} ({attrs.get('model_id', 'unknown model')}): "
          f"{states.count(TrialState.COMPLETE)} complete, {states.count(TrialState.FAIL)} failed, "
          f"{len(confirmed_trials(study))} confirmed with {attrs.get('fid_name', 'FID')}")
    print()
    print(format_table(front_table(study, all_trials=bool(options.get("all_trials", False)))))
    print("\n* on the Pareto front (speed vs FID where confirmed, else vs the proxy); "
          "speed columns are speedups over full compute")
    if attrs.get("proxy_fid_spearman") is not None:
        kendall = attrs.get("proxy_fid_kendall")
        print(f"proxy {attrs.get('proxy_name', 'proxy')} vs {attrs.get('fid_name', 'FID')}: "
              f"Spearman {attrs['proxy_fid_spearman']:.2f}" + (f", Kendall {kendall:.2f}" if kendall is not None else ""))
    history = hypervolume_history(study)
    if history:
        print(f"hypervolume (predicted speedup x proxy) after {history[-1][0]} trials: {history[-1][1]:.4g}")

    out_dir = str(cfg.out_dir)
    paths, logged_to = None, None
    parent = attrs.get("mlflow_parent_run_id")
    if options.get("log_to_tracking", True) and parent:
        paths, logged_to = _log_to_tracking(cfg, study, parent, out_dir, plotlyjs)
    if paths is None:
        paths = write_study_report(study, out_dir, include_plotlyjs=plotlyjs)
    print(f"\nwrote {', '.join(path.name for path in paths.values())} to {out_dir}")
    if logged_to is not None:
        print(f"logged to MLflow run {parent}; browse: {logged_to.ui_command()}")
    return paths


def _log_to_tracking(cfg, study, parent: str, out_dir: str, plotlyjs):
    """Log the report to the parent run; a tracking problem is a note, not a failure."""
    from autofr.tracking import Tracker, mask_uri

    tracker = Tracker.from_config(cfg.tracking)
    if not tracker.store_exists():
        print(f"note: no MLflow store at {mask_uri(tracker.uri)}; plots written locally only", file=sys.stderr)
        return None, None
    try:
        tracker.check()
        if not tracker.run_exists(parent):
            print(f"note: the study's MLflow parent run {parent} is not in {mask_uri(tracker.uri)}; "
                  "plots written locally only", file=sys.stderr)
            return None, None
        return tracker.log_study_summary(parent, study, out_dir, include_plotlyjs=plotlyjs), tracker
    except TrackingError as error:
        print(f"note: {error}; plots written locally only", file=sys.stderr)
        return None, None


def main(argv: list[str] | None = None) -> int:
    def body(overrides: list[str]) -> int:
        report(compose("report", overrides))
        return 0

    return cli_main(__doc__, body, argv)


if __name__ == "__main__":
    sys.exit(main())
