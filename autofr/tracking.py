"""MLflow as the browsable view of an Auto-FR study.

The Optuna storage is the source of truth; MLflow mirrors it for people:

* one **parent run** per study (its id lives in the study's user attribute ``mlflow_parent_run_id``,
  so every worker and every resume attaches to the same parent);
* one **child run** per trial, named ``trial-<n>`` and tagged ``mlflow.parentRunId`` and
  ``autofr.trial_number``: params = the schedule flattened (``unit.<name>.interval``,
  ``mixing.bias``, ``steps``, ...), metrics = speed and quality, artifacts = ``schedule.json`` and the
  sample grid. Logging a trial again *updates* its child run, so every trial appears exactly once;
* the **study summary** on the parent: front plot (PNG + interactive HTML), front table (CSV +
  markdown), hypervolume over trials, proxy-fidelity numbers as metrics.

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
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from autofr.errors import AutoFRError, TrackingError

logger = logging.getLogger(__name__)

#: MLflow limits per ``log_batch`` call and per value.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 5000

TRIAL_NUMBER_TAG = "autofr.trial_number"
PARENT_TAG = "mlflow.parentRunId"
#: MLflow 3's experiment kind ("Machine learning" in the experiment's header): training runs, not
#: GenAI traces. MLflow 3.17's UI picks its view from the sidebar switch instead (see experiment_page).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
LOCAL_UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING")

_PASSWORD_IN_URI = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@]+):(?P<password>[^@\s/]+)@")
_PASSWORD_IN_QUERY = re.compile(r"(?i)([?&](?:password|passwd|pwd)=)[^&\s]*")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def mask_uri(text: str) -> str:
    """Replace the password of every ``scheme://user:password@host`` (and ``?password=``) in ``text``
    with ``***``."""
    masked = _PASSWORD_IN_URI.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _PASSWORD_IN_QUERY.sub(r"\1***", masked)


def ui_command(uri: str, experiment_id: str | None = None) -> str:
    """The command that browses the store: ``mlflow ui --backend-store-uri <uri>`` (a server URI is
    simply opened in a browser); with ``experiment_id``, the page that shows its runs."""
    if uri.startswith(("http://", "https://")):
        return f"open {experiment_page(mask_uri(uri), experiment_id) if experiment_id else mask_uri(uri)} in a browser"
    command = f"mlflow ui --backend-store-uri {mask_uri(uri)}"
    return f"{command}, then open {experiment_page(LOCAL_UI_URL, experiment_id)}" if experiment_id else command


def experiment_page(base_url: str, experiment_id: str) -> str:
    """The experiment's runs in the MLflow UI. MLflow 3.17 opens every experiment in the sidebar's
    "GenAI" view unless the "Model training" view is asked for (``workflowType``; the UI remembers
    the view once a person switches it)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def flatten_schedule(schedule: Mapping[str, Any]) -> dict[str, str]:
    """A schedule dict (:meth:`ReuseSchedule.to_dict`) as MLflow params:
    ``steps``, ``scheduler``, ``model.class_name``, ``model.fingerprint``, ``mixing.enabled``,
    ``mixing.bias``, ``mixing.slope``, ``unit.<name>.interval`` / ``.offset`` / ``.steps``."""
    params: dict[str, Any] = {
        "steps": schedule.get("num_inference_steps"),
        "scheduler": schedule.get("scheduler"),
        "model.class_name": (schedule.get("model") or {}).get("class_name"),
        "model.fingerprint": (schedule.get("model") or {}).get("fingerprint"),
    }
    mixing = schedule.get("mixing") or {"enabled": False}
    params["mixing.enabled"] = bool(mixing.get("enabled", False))
    if mixing.get("enabled"):
        params["mixing.bias"] = mixing.get("bias")
        params["mixing.slope"] = mixing.get("slope")
    kind = (schedule.get("provenance") or {}).get("kind")
    if kind:
        params["kind"] = kind
    for name, unit in (schedule.get("units") or {}).items():
        if "steps" in unit:
            params[f"unit.{name}.steps"] = ",".join(str(step) for step in unit["steps"])
        else:
            params[f"unit.{name}.interval"] = unit.get("interval", 1)
            params[f"unit.{name}.offset"] = unit.get("offset", 0)
    return {_param_key(key): _text(value, MAX_PARAM_VALUE_LENGTH) for key, value in params.items() if value is not None}


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted MLflow params; values as text with passwords masked."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        else:
            flat[_param_key(name)] = _text(mask_uri(value) if isinstance(value, str) else value, MAX_PARAM_VALUE_LENGTH)
    return flat


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
    def from_config(cls, cfg) -> "Tracker":
        """From a ``tracking`` config group (``uri``, ``experiment``)."""
        return cls(str(cfg.uri), str(cfg.get("experiment", "autofr")))

    def __repr__(self) -> str:
        return f"Tracker({mask_uri(self.uri)!r}, {self.experiment!r})"

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
        with _quick_http(timeout_s):
            try:
                with self._store_lock():
                    self._experiment_id = self._get_or_create_experiment()
            except AutoFRError:
                raise
            except Exception as error:  # any failure of the store means "cannot track"
                if self.uri.startswith(("http://", "https://")):
                    hint = "start the tracking server or fix tracking.uri (tracking=local for a local store)"
                else:
                    hint = "check the path is writable or pick another tracking.uri"
                raise TrackingError(f"cannot reach MLflow tracking at {mask_uri(self.uri)} ({_reason(error)}): {hint}") from None

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
                return self.client.create_experiment(self.experiment, artifact_location=self._artifact_location(),
                                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
            except MlflowException as error:
                if getattr(error, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(self.experiment)  # another worker created it
        if found.lifecycle_stage == "deleted":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} is deleted in {mask_uri(self.uri)}: restore it "
                f"(mlflow experiments restore --experiment-id {found.experiment_id}) or set tracking.experiment"
            )
        if EXPERIMENT_KIND_TAG not in found.tags:  # made before autofr set the kind; a kind set by hand stays
            self.client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return found.experiment_id

    def _sqlite_path(self) -> Path | None:
        if not self.uri.startswith("sqlite:///"):
            return None
        path = self.uri[len("sqlite:///"):].split("?", 1)[0]
        return Path(path) if path and path != ":memory:" else None

    def _artifact_location(self) -> str | None:
        database = self._sqlite_path()
        return (database.parent / "mlartifacts").resolve().as_uri() if database is not None else None

    @contextlib.contextmanager
    def _store_lock(self) -> Iterator[None]:
        """Serialise a SQLite store's first-time table creation across processes (MLflow's migrations
        collide when several workers open a fresh database at once)."""
        database = self._sqlite_path()
        if database is None:
            yield
            return
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            lock = open(database.parent / f".{database.name}.lock", "a")
        except OSError as error:
            raise TrackingError(f"cannot create the MLflow store folder {database.parent} ({error.strerror}): "
                                "pick a writable tracking.uri") from None
        with lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except (ImportError, OSError):  # no POSIX locks (Windows, some network file systems)
                pass
            yield

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except AutoFRError:
            raise
        except Exception as error:
            raise TrackingError(f"MLflow at {mask_uri(self.uri)} failed to {action} ({_reason(error)}): "
                                "check the tracking server or tracking.uri") from None

    # ------------------------------------------------------------------ runs
    def create_parent_run(self, study_name: str, params: Mapping[str, Any] | None = None,
                          tags: Mapping[str, str] | None = None) -> str:
        """A new parent run for a study; ``params`` (nested mappings allowed) are logged flattened,
        passwords in URI values masked. Returns the run id (store it in the study's user attrs)."""
        experiment_id = self.experiment_id
        with self._errors("create the study's parent run"):
            run = self.client.create_run(experiment_id, run_name=str(study_name), tags={
                "autofr.study_name": str(study_name), "autofr.role": "study", **{k: _tag(v) for k, v in (tags or {}).items()}})
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
            runs = self.client.search_runs([self.experiment_id], f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
                                           max_results=50_000)
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
                run_id = self.client.create_run(experiment_id, start_time=start_time_ms, run_name=f"trial-{trial_number}", tags={
                    PARENT_TAG: parent_run_id, TRIAL_NUMBER_TAG: str(trial_number)}).info.run_id
                existing = {}
                # Two processes logging the same new trial at once: all keep the oldest run.
                runs = self._trial_runs(parent_run_id, trial_number)
                if runs and runs[0].info.run_id != run_id:
                    self.client.delete_run(run_id)
                    run_id, existing = runs[0].info.run_id, runs[0].data.params
            all_params = {**(flatten_schedule(schedule) if schedule else {}), **flatten_params(params or {})}
            conflicts = sorted(key for key, value in all_params.items() if key in existing and existing[key] != value)
            if conflicts:
                logger.warning("trial %d: run %s already has different values for %d param(s) (e.g. %s); kept the old ones",
                               trial_number, run_id, len(conflicts), conflicts[0])
            self._log_params(run_id, {k: v for k, v in all_params.items() if k not in existing})
            self._log_metrics(run_id, metrics or {})
            for key, value in (tags or {}).items():
                self.client.set_tag(run_id, str(key), _tag(value))
            files = dict(artifacts or {})
            if schedule:
                files["schedule.json"] = (json.dumps(dict(schedule), indent=2) + "\n").encode()
            self._log_artifacts(run_id, files)
            self.client.set_terminated(run_id, status=status, end_time=end_time_ms)
        return run_id

    def log_trial_from_optuna(self, parent_run_id: str, trial, artifacts: Mapping[str, str | os.PathLike | bytes] | None = None) -> str:
        """:meth:`log_trial` from an Optuna ``FrozenTrial`` following the autofr conventions
        (``schedule``, ``origin``, ``label``, ``predicted_speedup``, ``proxy``, ``proxy_metrics``,
        confirmation results, ``fail_reason`` in its user attrs)."""
        from optuna.trial import TrialState

        attrs = trial.user_attrs
        status = {TrialState.COMPLETE: "FINISHED", TrialState.FAIL: "FAILED", TrialState.PRUNED: "KILLED"}.get(trial.state, "FAILED")
        metrics = trial_metrics(attrs)
        if trial.values and len(trial.values) == 2:
            metrics.setdefault("predicted_speedup", trial.values[0])
            metrics.setdefault("proxy", trial.values[1])
        tags = {"autofr.origin": attrs.get("origin", "search"), "autofr.label": attrs.get("label", ""),
                "autofr.state": trial.state.name}
        if attrs.get("fail_reason"):
            tags["autofr.fail_reason"] = attrs["fail_reason"]
        return self.log_trial(
            parent_run_id, trial.number, attrs.get("schedule"), params={f"search.{k}": v for k, v in trial.params.items()},
            metrics=metrics, artifacts=artifacts, status=status, tags=tags,
            start_time_ms=_ms(trial.datetime_start), end_time_ms=_ms(trial.datetime_complete),
        )

    def log_confirmation(self, parent_run_id: str, trial_number: int, record: Mapping[str, Any]) -> str:
        """Add a trial's confirmation (``fid``, ``fid_vs_full``, ``measured_speedup``, ...) to its run."""
        return self.log_trial(parent_run_id, trial_number, metrics=trial_metrics(record), tags={"autofr.confirmed": "true"})

    def log_study_summary(self, parent_run_id: str, study, out_dir: str | os.PathLike,
                          include_plotlyjs: str | bool = "cdn") -> dict[str, Path]:
        """Write the study report into ``out_dir`` (:func:`autofr.report.write_study_report`) and log
        it to the parent run under ``summary/``, with proxy fidelity (``proxy_fid_spearman``/``_kendall``
        for the search proxy, ``fidelity.<proxy>.spearman``/``.kendall`` for every proxy), full-compute FID, trial counts,
        hypervolume (per trial count) and the front's trial numbers. Returns the written paths."""
        from optuna.trial import TrialState

        from autofr import report
        from autofr.errors import ConfigError
        from autofr.search import front as fronts

        paths = report.write_study_report(study, out_dir, include_plotlyjs=include_plotlyjs)
        metrics: dict[str, float] = {}
        for key in ("proxy_fid_spearman", "proxy_fid_kendall", "fid_full_compute"):
            metrics[key] = study.user_attrs.get(key)
        for row in study.user_attrs.get("proxy_fidelity") or []:
            if isinstance(row, Mapping) and row.get("proxy"):
                metrics[f"fidelity.{row['proxy']}.spearman"] = row.get("spearman")
                metrics[f"fidelity.{row['proxy']}.kendall"] = row.get("kendall")
        states = [t.state for t in study.get_trials(deepcopy=False)]
        metrics["trials_complete"] = states.count(TrialState.COMPLETE)
        metrics["trials_failed"] = states.count(TrialState.FAIL)
        metrics["trials_confirmed"] = len(fronts.confirmed_trials(study))
        front = fronts.fid_front(study) or fronts.proxy_front(study)
        metrics["front_size"] = len(front)
        try:
            chosen = fronts.select_trial(study, "fastest_within", delta=0.05)
            metrics["speedup_within_5pct_fid"] = fronts.speed_of(chosen)
        except ConfigError:
            pass
        history = fronts.hypervolume_history(study)
        completion = {count: t for count, t in enumerate(sorted(
            (t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values),
            key=lambda t: t.number), start=1)}
        with self._errors("log the study summary"):
            self._log_metrics(parent_run_id, metrics)
            self._log_metrics(parent_run_id, {"hypervolume": history[-1][1]} if history else {})
            from mlflow.entities import Metric

            series = [Metric("hypervolume_by_trials", volume, _ms(completion[count].datetime_complete) or count, count)
                      for count, volume in history if math.isfinite(volume)]
            for start in range(0, len(series), MAX_METRICS_PER_BATCH):
                self.client.log_batch(parent_run_id, metrics=series[start:start + MAX_METRICS_PER_BATCH])
            self.client.set_tag(parent_run_id, "autofr.front_trials", ",".join(str(t.number) for t in front))
            self._log_artifacts(parent_run_id, {f"summary/{path.name}": path for path in paths.values()})
            self.client.set_terminated(parent_run_id, status="FINISHED")
        logger.info("logged the summary of study %s to MLflow run %s", study.study_name, parent_run_id)
        return paths

    def log_exported_schedule(self, parent_run_id: str, path: str | os.PathLike, description: str = "") -> str:
        """Log an exported schedule file to the study's parent run as ``export/<file name>`` (tag
        ``autofr.exported_schedule``: ``description``). Returns the artifact path."""
        name = f"export/{Path(path).name}"
        with self._errors("log the exported schedule"):
            self._log_artifacts(parent_run_id, {name: path})
            self.client.set_tag(parent_run_id, "autofr.exported_schedule", _tag(f"{name}: {description}" if description else name))
        return name

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
            self.client.log_batch(run_id, params=items[start:start + MAX_PARAMS_PER_BATCH])

    def _log_metrics(self, run_id: str, metrics: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_param_key(key), float(value), now, 0) for key, value in metrics.items()
                 if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[start:start + MAX_METRICS_PER_BATCH])

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


def trial_metrics(attrs: Mapping[str, Any]) -> dict[str, float]:
    """The numeric results among a trial's user attrs (or a confirmation record) as MLflow metrics;
    ``proxy_metrics`` become ``proxy.<name>``."""
    metrics: dict[str, float] = {}
    for key in ("predicted_speedup", "proxy", "fid", "fid_vs_full", "measured_speedup", "latency_s", "speed_gap",
                "sampling_seconds", "trial_seconds", "constraint", "num_inference_steps"):
        value = attrs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[key] = float(value)
    for name, value in (attrs.get("proxy_metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[f"proxy.{name}"] = float(value)
    return metrics


@contextlib.contextmanager
def _quick_http(timeout_s: float) -> Iterator[None]:
    """No retries and a short timeout for MLflow's HTTP requests while inside the block."""
    settings = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(math.ceil(timeout_s))))}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    for marker, short in (("Connection refused", "connection refused"), ("timed out", "no answer in time"),
                          ("Name or service not known", "unknown host"), ("Failed to resolve", "unknown host"),
                          ("nodename nor servname", "unknown host"), ("unable to open database file", "cannot open the database file")):
        if marker in text:
            return short
    return mask_uri(text if len(text) <= 200 else text[:197] + "...")


def _param_key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", str(key))[:250]


def _text(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tag(value: Any) -> str:
    return _text(mask_uri(str(value)), MAX_TAG_VALUE_LENGTH)


def _ms(moment) -> int | None:
    return int(moment.timestamp() * 1000) if moment is not None else None
