"""``autofr-export``: pick one schedule from a study's front and write it as a schedule JSON.

    autofr-export                                          # fastest trial within 5% of full-compute FID
    autofr-export export.delta=0.1                         # ... within 10%
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

import datetime
import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig

from autofr.cli._config import cli_main, compose
from autofr.errors import StorageError

logger = logging.getLogger(__name__)


def load_study(cfg: DictConfig):
    """The study ``cfg.study_name`` from the storage ``cfg.storage``, read-only in spirit: a missing
    journal file or study is a one-line :class:`StorageError` and nothing is created."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = str(cfg.study_name)
    url = cfg.storage.get("url") or os.environ.get("AUTOFR_STORAGE_URL") or None
    journal = cfg.storage.get("journal_path")
    if url is None:
        if not journal:
            raise StorageError("no Optuna storage configured: set storage.journal_path or storage.url")
        if not Path(journal).expanduser().is_file():
            raise StorageError(f"no Optuna journal at {journal}: run autofr-search first, or set storage.journal_path "
                               "(and study_name) to the study's")
    storage = _open_storage(cfg.storage)
    where = _masked(url) if url else str(journal)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        known = f" (it holds: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else " (it holds no study)"
        raise StorageError(f"no study {name!r} in the Optuna storage {where}{known}: set study_name=") from None


def _open_storage(storage_cfg):
    try:
        from autofr.search.storage import open_storage
    except ImportError:  # the search package without its storage module
        return _open_storage_fallback(storage_cfg)
    return open_storage(storage_cfg)


def _open_storage_fallback(storage_cfg):
    import optuna

    url = storage_cfg.get("url") or os.environ.get("AUTOFR_STORAGE_URL") or None
    try:
        if url:
            return optuna.storages.RDBStorage(str(url))
        backend = optuna.storages.journal.JournalFileBackend(str(Path(storage_cfg.journal_path).expanduser()))
        return optuna.storages.JournalStorage(backend)
    except Exception as error:  # driver missing, server down, unreadable file
        where = _masked(url) if url else storage_cfg.journal_path
        raise StorageError(f"cannot open the Optuna storage {where} ({' '.join(str(error).split())[:160]}): "
                           "check storage.url / storage.journal_path") from None


def _masked(url: str) -> str:
    from autofr.tracking import mask_uri

    return mask_uri(str(url))


def policy_options(export_cfg) -> dict:
    """The options of ``export.policy`` from the ``export`` config section."""
    policy = str(export_cfg.policy)
    keys = {"fastest_within": ("delta", "delta_abs"), "best_at_speedup": ("min_speedup",)}.get(policy, ())
    options = {key: export_cfg.get(key) for key in keys}
    if options.get("delta_abs") is not None:
        options.pop("delta")  # an absolute allowance replaces the relative one
    options["measure"] = str(export_cfg.get("measure", "fid"))
    return options


def export(cfg: DictConfig) -> Path:
    """Select a trial with ``cfg.export`` and write its schedule to ``cfg.export.out``; prints a summary."""
    from autofr.schedule import ReuseSchedule
    from autofr.search.front import full_compute_fid, select_trial, speed_of

    study = load_study(cfg)
    policy = str(cfg.export.policy)
    options = policy_options(cfg.export)
    trial = select_trial(study, policy, **options)
    attrs = trial.user_attrs
    if not attrs.get("schedule"):
        raise StorageError(f"trial {trial.number} of study {study.study_name!r} has no schedule recorded: "
                           "it was not made by autofr-search; pick another policy")
    schedule = ReuseSchedule.from_dict(attrs["schedule"], source=f"trial {trial.number} of study {study.study_name!r}")
    fid_full = full_compute_fid(study)
    numbers = {key: attrs.get(key) for key in ("predicted_speedup", "measured_speedup", "proxy", "fid", "fid_vs_full", "latency_s")}
    schedule.provenance = {
        **schedule.provenance,
        "study": study.study_name,
        "storage": study.user_attrs.get("storage"),
        "model_id": study.user_attrs.get("model_id"),
        "trial": trial.number,
        "origin": attrs.get("origin"),
        "label": attrs.get("label"),
        "policy": policy,
        "policy_options": {key: value for key, value in options.items() if value is not None},
        **{key: value for key, value in numbers.items() if value is not None},
        "proxy_name": study.user_attrs.get("proxy_name"),
        "fid_name": study.user_attrs.get("fid_name"),
        "fid_full_compute": fid_full,
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    schedule.provenance = {key: value for key, value in schedule.provenance.items() if value is not None}
    path = schedule.to_json(Path(str(cfg.export.out)))

    label = attrs.get("label") or attrs.get("origin", "search")
    print(f"study {study.study_name!r}: trial {trial.number} ({label}) chosen by {policy}"
          + (f" {_describe(options)}" if _describe(options) else ""))
    speed = f"{speed_of(trial):.2f}x {'measured' if attrs.get('measured_speedup') is not None else 'predicted'}"
    if attrs.get("measured_speedup") is not None and attrs.get("predicted_speedup") is not None:
        speed += f" ({attrs['predicted_speedup']:.2f}x predicted)"
    print(f"  speedup   {speed}; {schedule.describe()}")
    if attrs.get("fid") is not None:
        versus = f" (full compute {fid_full:.4g}, {100 * (attrs['fid'] / fid_full - 1):+.1f}%)" if fid_full else ""
        print(f"  {study.user_attrs.get('fid_name', 'FID')}  {attrs['fid']:.4g}{versus}"
              + (f"; vs full-compute samples {attrs['fid_vs_full']:.4g}" if attrs.get("fid_vs_full") is not None else ""))
    if attrs.get("proxy") is not None:
        print(f"  proxy     {study.user_attrs.get('proxy_name', 'proxy')} {attrs['proxy']:.4g}")
    print(f"wrote {path}")
    _log_to_parent_run(cfg, study, path, f"trial {trial.number} ({label}) chosen by {policy}")
    print(f"use it: autofr.apply_schedule(pipe, {str(path)!r})  or  autofr-sample schedule={path}")
    return path


def _log_to_parent_run(cfg: DictConfig, study, path: Path, description: str) -> None:
    """Log the exported schedule to the study's MLflow parent run; a tracking problem is a note."""
    from autofr.errors import TrackingError
    from autofr.tracking import Tracker, mask_uri

    parent = study.user_attrs.get("mlflow_parent_run_id")
    tracker = Tracker.from_config(cfg.tracking)
    if not parent or not tracker.store_exists():
        return
    try:
        tracker.check()
        if not tracker.run_exists(parent):
            print(f"note: the study's MLflow parent run {parent} is not in {mask_uri(tracker.uri)}; "
                  "the schedule is not logged there", file=sys.stderr)
            return
        name = tracker.log_exported_schedule(parent, path, description)
    except TrackingError as error:
        print(f"note: {error}; the schedule is not logged to MLflow", file=sys.stderr)
        return
    print(f"logged to MLflow run {parent} as {name}")


def _describe(options: dict) -> str:
    shown = {key: value for key, value in options.items() if value is not None and not (key == "measure" and value == "fid")}
    return " ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in shown.items())


def main(argv: list[str] | None = None) -> int:
    def body(overrides: list[str]) -> int:
        export(compose("export", overrides))
        return 0

    return cli_main(__doc__, body, argv)


if __name__ == "__main__":
    sys.exit(main())
