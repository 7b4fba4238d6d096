"""MLflow as the browsable view of an Auto-FR study.

The Optuna storage is the source of truth; MLflow mirrors it for people:

* one **parent run** per study (its id lives in the study's user attribute ``mlflow_parent_run_id``,
  so every worker and every resume attaches to the same parent);
* one **child run** per trial, named ``trial-<n>`` and tagged ``mlflow.parentRunId`` and
  ``autofr.trial_number``: params = the schedule flattened (``unit.<name>.interval``,
  ``mixing.bias``, ``steps``, ...), metrics = speed and quality, artifacts = ``schedule.json`` and the
  sample grid. Logging a trial again *updates* its child run, so every trial appears exactly once;
* the **study summary** on the parent: front plot (PNG + interactive HTML), front table (CSV +
  markdown), hypervolume over trials, proxy-fidelity numbers as metrics (all made by
  :mod:`autofr.report`; this module only logs what it is handed).

Everything goes through an explicit :class:`mlflow.MlflowClient` (no global active run), which is safe
with several worker processes. The default local store is SQLite (``conf/tracking/local.yaml``);
its first-time table creation is serialised across processes with a lock file next to the database,
after which concurrent writers are fine. Passwords in URIs are masked in everything logged or printed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from autofr.errors import AutoFRError, TrackingError
from autofr.masking import mask_url
from autofr.tracking.params import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_PER_BATCH,
    confirmation_metrics,
    flatten_params,
    flatten_schedule,
    param_key,
    record_metrics,
    tag_text,
)
from autofr.tracking.store import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    quick_http,
    reason_of,
    store_lock,
    ui_command,
)

logger = logging.getLogger(__name__)

TRIAL_NUMBER_TAG = "autofr.trial_number"
PARENT_TAG = "mlflow.parentRunId"
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING")


class Tracker:
    """One MLflow experiment in one tracking store, for one or many studies.

    Args:
        uri: tracking URI (``sqlite:///path.db``, ``http(s)://host:port``, ``postgresql://...``).
        experiment: experiment name; created on first use. For a SQLite store its artifacts go to
            ``mlartifacts/`` next to the database file.
    """

    def __init__(self, uri: str, experiment: str = "autofr"):
        self.uri = str(uri)
        self.experiment = str(experiment)
        self._client = None
        self._experiment_id: str | None = None

    @classmethod
    def from_config(cls, cfg) -> Tracker:
        """From a ``tracking`` config group (``uri``, ``experiment``)."""
        return cls(str(cfg.uri), str(cfg.get("experiment", "autofr")))

    def __repr__(self) -> str:
        return f"Tracker({mask_url(self.uri)!r}, {self.experiment!r})"

    # ------------------------------------------------------------------ store
    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    @property
    def experiment_id(self) -> str:
        """The experiment's id, creating the experiment (and a SQLite store's tables) on first use."""
        if self._experiment_id is None:
            with self._store_lock(), self._errors("open the experiment"):
                self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    def check(self, timeout_s: float = 5.0) -> None:
        """Raise :class:`TrackingError` (one line) unless the store answers within ``timeout_s``
        (no retries); creates the experiment if missing."""
        self._reachable(timeout_s, create=True)

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Raise :class:`TrackingError` (one line) unless the store can be used, creating nothing: a
        server answers within ``timeout_s``; a SQLite store's folder (or its nearest existing parent)
        is writable."""
        self._reachable(timeout_s, create=False)

    def _reachable(self, timeout_s: float, create: bool) -> None:
        database = self._sqlite_path()
        if database is not None and not create:
            existing = database if database.exists() else next(p for p in database.parents if p.exists())
            if not os.access(existing if existing.is_dir() else existing.parent, os.W_OK | os.X_OK):
                raise TrackingError(
                    f"cannot write the MLflow store {mask_url(self.uri)} (no write access to {existing}): "
                    "check the path is writable or pick another tracking.uri"
                )
            return
        with quick_http(timeout_s):
            try:
                if create:
                    with self._store_lock():
                        self._experiment_id = self._get_or_create_experiment()
                else:
                    self.client.search_experiments(max_results=1)
            except AutoFRError:
                raise
            except Exception as error:  # any failure of the store means "cannot track"
                if self.uri.startswith(("http://", "https://")):
                    hint = "start the tracking server or fix tracking.uri (tracking=local for a local store)"
                else:
                    hint = "check the path is writable or pick another tracking.uri"
                raise TrackingError(
                    f"cannot reach MLflow tracking at {mask_url(self.uri)} ({reason_of(error)}): {hint}"
                ) from None

    def ui_command(self) -> str:
        return ui_command(self.uri, self._experiment_id)

    def store_exists(self) -> bool:
        """False only for a SQLite store whose database file does not exist yet."""
        database = self._sqlite_path()
        return database is None or database.is_file()

    def _get_or_create_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(self.experiment)
        if found is None:
            try:
                return self.client.create_experiment(
                    self.experiment,
                    artifact_location=self._artifact_location(),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND},
                )
            except MlflowException as error:
                if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(self.experiment)  # another worker created it
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} is deleted in {mask_url(self.uri)}: restore it "
                f"(mlflow experiments restore --experiment-id {found.experiment_id}) or set tracking.experiment"
            )
        if EXPERIMENT_KIND_TAG not in found.tags:  # made before autofr set the kind; a kind set by hand stays
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id

    def _sqlite_path(self) -> Path | None:
        if not self.uri.startswith("sqlite:///"):
            return None
        path = self.uri[len("sqlite:///") :].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None

    def _artifact_location(self) -> str | None:
        database = self._sqlite_path()
        return (database.parent / "mlartifacts").resolve().as_uri() if database is not None else None

    def _store_lock(self):
        return store_lock(self._sqlite_path())

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except AutoFRError:
            raise
        except Exception as error:
            raise TrackingError(
                f"MLflow at {mask_url(self.uri)} failed to {action} ({reason_of(error)}): "
                "check the tracking server or tracking.uri"
            ) from None

    # ------------------------------------------------------------------ runs
    def create_parent_run(
        self, study_name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None
    ) -> str:
        """A new parent run for a study; ``params`` (nested mappings allowed) are logged flattened,
        passwords in URI values masked. Returns the run id (store it in the study's user attrs)."""
        experiment_id = self.experiment_id
        with self._errors("create the study's parent run"):
            run = self.client.create_run(
                experiment_id,
                run_name=str(study_name),
                tags={
                    "autofr.study_name": str(study_name),
                    "autofr.role": "study",
                    **{k: tag_text(v) for k, v in (tags or {}).items()},
                },
            )
            self._log_params(run.info.run_id, flatten_params(params or {}))
        logger.info("MLflow parent run %s for study %s", run.info.run_id, study_name)
        return run.info.run_id

    def run_exists(self, run_id: str | None) -> bool:
        """Whether ``run_id`` is an active (not deleted) run in this store."""
        if not run_id:
            return False
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active"

    def find_trial_run(self, parent_run_id: str, trial_number: int) -> str | None:
        """The child run of trial ``trial_number`` under ``parent_run_id`` (the oldest, should there
        ever be two), or None."""
        runs = self._trial_runs(parent_run_id, trial_number)
        return runs[0].info.run_id if runs else None

    def trial_runs(self, parent_run_id: str) -> dict[int, str]:
        """``{trial number: child run id}`` of every trial logged under ``parent_run_id``."""
        with self._errors("list the trial runs"):
            runs = self.client.search_runs(
                [self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=50_000
            )
        found: dict[int, str] = {}
        for run in sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id)):
            number = run.data.tags.get(TRIAL_NUMBER_TAG)
            if number is not None and number.isdigit():
                found.setdefault(int(number), run.info.run_id)
        return found

    def log_trial(
        self,
        parent_run_id: str,
        trial_number: int,
        schedule: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        artifacts: Mapping[str, str | os.PathLike | bytes] | None = None,
        status: str = "FINISHED",
        tags: Mapping[str, Any] | None = None,
        start_time_ms: int | None = None,
        end_time_ms: int | None = None,
    ) -> str:
        """Create or update the child run ``trial-<n>`` of ``parent_run_id``; returns its run id.

        ``schedule`` (a :meth:`ReuseSchedule.to_dict`) is logged flattened as params and as
        ``schedule.json``; ``params`` are extra params (e.g. the Optuna parameters); ``metrics`` skip
        non-finite values; ``artifacts`` maps an artifact name (``samples.png``, ``plots/x.png``) to a
        file path or to bytes. Logging trial ``n`` again updates the same run: new metrics, tags and
        artifacts replace the old ones, params already logged are kept (MLflow params are immutable).
        """
        if status not in RUN_STATUSES:
            raise TrackingError(f"run status {status!r} is not one of {', '.join(RUN_STATUSES)}")
        experiment_id = self.experiment_id
        trial_number = int(trial_number)
        with self._errors(f"log trial {trial_number}"):
            runs = self._trial_runs(parent_run_id, trial_number)
            if runs:
                run_id = runs[0].info.run_id
                existing = runs[0].data.params
            else:
                run_id = self.client.create_run(
                    experiment_id,
                    start_time=start_time_ms,
                    run_name=f"trial-{trial_number}",
                    tags={PARENT_TAG: parent_run_id, TRIAL_NUMBER_TAG: str(trial_number)},
                ).info.run_id
                existing = {}
                # Two processes logging the same new trial at once: all keep the oldest run.
                runs = self._trial_runs(parent_run_id, trial_number)
                if runs and runs[0].info.run_id != run_id:
                    self.client.delete_run(run_id)
                    run_id, existing = runs[0].info.run_id, runs[0].data.params
            all_params = {**(flatten_schedule(schedule) if schedule else {}), **flatten_params(params or {})}
            conflicts = sorted(key for key, value in all_params.items() if key in existing and existing[key] != value)
            if conflicts:
                logger.warning(
                    "trial %d: run %s already has different values for %d param(s) (e.g. %s); kept the old ones",
                    trial_number,
                    run_id,
                    len(conflicts),
                    conflicts[0],
                )
            self._log_params(run_id, {k: v for k, v in all_params.items() if k not in existing})
            self._log_metrics(run_id, metrics or {})
            for key, value in (tags or {}).items():
                self.client.set_tag(run_id, str(key), tag_text(value))
            files = dict(artifacts or {})
            if schedule:
                files["schedule.json"] = (json.dumps(dict(schedule), indent=2) + "\n").encode()
            self._log_artifacts(run_id, files)
            self.client.set_terminated(run_id, status=status, end_time=end_time_ms)
        return run_id

    def log_trial_record(
        self, parent_run_id: str, record, artifacts: Mapping[str, str | os.PathLike | bytes] | None = None
    ) -> str:
        """:meth:`log_trial` from a :class:`~autofr.search.records.TrialRecord`: the schedule, the
        Optuna parameters, speed and quality metrics, origin/label/state/fail reason tags."""
        status = {"COMPLETE": "FINISHED", "FAIL": "FAILED", "PRUNED": "KILLED"}.get(record.state.name, "FAILED")
        metrics = record_metrics(record)
        tags = {"autofr.origin": record.origin.value, "autofr.label": record.label, "autofr.state": record.state.name}
        if record.fail_reason:
            tags["autofr.fail_reason"] = record.fail_reason
        return self.log_trial(
            parent_run_id,
            record.number,
            record.schedule,
            params={f"search.{k}": v for k, v in record.params.items()},
            metrics=metrics,
            artifacts=artifacts,
            status=status,
            tags=tags,
            start_time_ms=_ms(record.datetime_start),
            end_time_ms=_ms(record.datetime_complete),
        )

    def log_confirmation(self, parent_run_id: str, trial_number: int, confirmation) -> str:
        """Add a trial's :class:`~autofr.search.records.Confirmation` to its run."""
        return self.log_trial(
            parent_run_id, trial_number, metrics=confirmation_metrics(confirmation), tags={"autofr.confirmed": "true"}
        )

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
        """Log ``metrics`` at ``step`` to a run (the study's progress on its parent run)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._errors("log metrics"):
            items = [Metric(param_key(key), float(value), now, int(step)) for key, value in metrics.items()]
            self.client.log_batch(run_id, metrics=items[:MAX_METRICS_PER_BATCH])

    def log_study_summary(self, parent_run_id: str, records, paths: Mapping[str, Path], summary) -> None:
        """Log a finished study to its parent run: the report files (under ``summary/``), the
        summary's metrics, the hypervolume series and the front's trial numbers
        (``summary``: :func:`autofr.report.study_summary`)."""
        from mlflow.entities import Metric

        with self._errors("log the study summary"):
            self._log_metrics(parent_run_id, summary.metrics)
            series = [
                Metric("hypervolume_by_trials", volume, stamp or count, count)
                for count, volume, stamp in summary.hypervolume
                if math.isfinite(volume)
            ]
            for start in range(0, len(series), MAX_METRICS_PER_BATCH):
                self.client.log_batch(parent_run_id, metrics=series[start : start + MAX_METRICS_PER_BATCH])
            self.client.set_tag(parent_run_id, "autofr.front_trials", ",".join(str(n) for n in summary.front_trials))
            self._log_artifacts(parent_run_id, {f"summary/{path.name}": path for path in paths.values()})
            self.client.set_terminated(parent_run_id, status="FINISHED")
        logger.info("logged the summary of study %s to MLflow run %s", records.name, parent_run_id)

    def log_exported_schedule(self, parent_run_id: str, path: str | os.PathLike, description: str = "") -> str:
        """Log an exported schedule file to the study's parent run as ``export/<file name>`` (tag
        ``autofr.exported_schedule``: ``description``). Returns the artifact path."""
        name = f"export/{Path(path).name}"
        with self._errors("log the exported schedule"):
            self._log_artifacts(parent_run_id, {name: path})
            self.client.set_tag(
                parent_run_id, "autofr.exported_schedule", tag_text(f"{name}: {description}" if description else name)
            )
        return name

    def parent_run_problem(self, run_id: str | None) -> str | None:
        """Why a command cannot log to the study's parent run ``run_id`` (no store, unreachable, no
        such run), or None when it can. Commands print the reason as a note and go on."""
        if not run_id:
            return "the study has no MLflow parent run"
        if not self.store_exists():
            return f"no MLflow store at {mask_url(self.uri)}"
        try:
            self.check()
        except TrackingError as error:
            return str(error)
        if not self.run_exists(run_id):
            return f"the study's MLflow parent run {run_id} is not in {mask_url(self.uri)}"
        return None

    # ------------------------------------------------------------------ internals
    def _trial_runs(self, parent_run_id: str, trial_number: int) -> list:
        runs = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{PARENT_TAG}` = '{parent_run_id}' and tags.`{TRIAL_NUMBER_TAG}` = '{int(trial_number)}'",
            max_results=10,
        )
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(param_key(key), float(value), now, 0)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def _log_artifacts(self, run_id: str, artifacts: Mapping[str, str | os.PathLike | bytes]) -> None:
        if not artifacts:
            return
        with tempfile.TemporaryDirectory(prefix="autofr-artifacts-") as staging:
            for name, content in artifacts.items():
                relative = Path(name)
                if relative.is_absolute() or ".." in relative.parts:
                    raise TrackingError(f"artifact name {name!r} must be a relative path inside the run")
                target = Path(staging) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, (bytes, bytearray)):
                    target.write_bytes(content)
                else:
                    shutil.copyfile(content, target)
            self.client.log_artifacts(run_id, staging)


def _ms(moment) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None
