"""One Auto-FR study: everything checked up front, then create/open, run, confirm; read its records.

    study = AutoFRStudy.prepare(StudyConfig.from_hydra(cfg))   # validates; writes nothing
    study.open()          # create or resume the Optuna study (+ warm start, MLflow parent run)
    study.run()           # this process's worker on the shared budget
    study.run_stages()    # with every other worker: peers, FID-N of the deciding candidates, timing
    study.records()       # the records: autofr-search reports them (autofr.report) and logs them (MLflow)

``study.plan()`` says what the study will cost before it runs (``autofr-plan``). ``evaluate_peers()``
and ``confirm()`` run the peer and confirmation stages in this process alone (benchmarks, the API).

:meth:`AutoFRStudy.prepare` checks the config, the quality measures (Inception weights, real data),
the storage and the tracking target (reachable, writable: nothing is created), loads the model and
builds the search space. A bad input is one line before any study, run or file exists.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna

from autofr.config import ModelSettings, StudyConfig
from autofr.errors import AutoFRError, StorageError
from autofr.evaluation import EvalProtocol, generate
from autofr.execution import check_storage, mask_url, open_storage, open_study, run_worker, wait_for_user_attr
from autofr.search.confirm import Confirmer, confirm_candidates, deciding_order, record_proxy_fidelity
from autofr.search.fidelity import AdaptiveScorer, FidelityPlan
from autofr.search.measures import REAL_DATA_PROXY, StudyMeasures
from autofr.search.objective import Adaptive, Objective
from autofr.search.peer_trials import PeerStage, evaluate_peers
from autofr.search.plan import DeviceBudget, StudyPlan, estimate
from autofr.search.records import (
    READY_ATTR,
    StudyInfo,
    StudyRecords,
    TrialRecord,
    enqueue_reference,
    peer_trial_count,
    schedule_key,
)
from autofr.search.space import SearchSpace
from autofr.search.speed import build_speed_model
from autofr.search.timing import StepProfiles, group_profile, measure_profile
from autofr.search.warmstart import calibrated_entries, magcache_entries
from autofr.target import QualityTarget
from autofr.tracking import Tracker

logger = logging.getLogger(__name__)

DIRECTIONS = ("maximize", "minimize")
#: The name of the study's first objective (its second is the quality measure's, ``quality.proxy``).
SPEED_OBJECTIVE = "predicted_speedup"


def load_model(model: ModelSettings):
    """The pipeline of ``model.*`` on its device and dtype."""
    from autofr.models import load_pipeline

    # load_pipeline checks the device and the dtype name before anything is loaded
    return load_pipeline(
        model.path, device=model.device, dtype=model.dtype, scheduler=model.scheduler, unit_rules=model.units
    )


def protocol_for(config: StudyConfig) -> EvalProtocol:
    """The study's fixed evaluation protocol (the proxy's N; FID-N replaces ``num_samples``)."""
    model = config.model
    return EvalProtocol(
        num_samples=config.quality.proxy_samples,
        seed=config.seed,
        batch_size=config.quality.batch_size,
        num_inference_steps=model.num_inference_steps,
        guidance_scale=model.guidance_scale,
        scheduler=model.scheduler,
        resolution=model.resolution,
        num_classes=model.num_classes if not model.prompts else None,
        prompts=model.prompts,
        call_options=dict(model.call_options or {}),
    )


def open_existing(config_storage, study_name: str) -> optuna.Study:
    """A study that must exist (export, report): a missing journal or study is a one-line
    :class:`StorageError`, and nothing is created."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = check_storage(config_storage)
    if settings.url is None and not Path(settings.journal_path).expanduser().is_file():
        raise StorageError(
            f"no Optuna journal at {settings.journal_path}: run autofr-search first, or set "
            "storage.journal_path (and study_name) to the study's"
        )
    storage = open_storage(settings)
    where = mask_url(settings.url) if settings.url else str(settings.journal_path)
    try:
        return optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        known = (
            f" (it holds: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''})"
            if names
            else " (it holds no study)"
        )
        raise StorageError(f"no study {study_name!r} in the Optuna storage {where}{known}: set study_name=") from None


@dataclass
class _Model:
    pipe: object
    denoiser: object
    units: list
    cost: object


class AutoFRStudy:
    """One study of one model (see the module docstring). Build it with :meth:`prepare`."""

    def __init__(
        self,
        config: StudyConfig,
        model: _Model,
        space: SearchSpace,
        protocol: EvalProtocol,
        measures: StudyMeasures,
        sampler: optuna.samplers.BaseSampler,
        tracker: Tracker,
    ) -> None:
        self.config = config
        self.model = model
        self.space = space
        self.protocol = protocol
        self.measures = measures
        self.sampler = sampler
        self.tracker = tracker
        self.study: optuna.Study | None = None
        self.created = False
        self._references = None
        self.confirm_seconds: dict[str, float] = {}  # wall seconds of the last confirm(): "fid", "timing"
        # the change profile per step count (calibrated timing and warm start), stored with the study
        self.profiles = StepProfiles(self._measure_profile)
        self.budget: DeviceBudget | None = None  # search.max_device_hours, fitted by the study's creator
        self._plan: StudyPlan | None = None
        self._n_peers: int | None = None
        self._objective: Objective | None = None
        self.trials_summary = None  # what this worker's run() did (a WorkerSummary)

    def _measure_profile(self, steps: int):
        probe = self.protocol.replace(num_samples=min(8, self.protocol.num_samples), batch_size=8)
        per_unit = measure_profile(self.model.pipe, probe, self.model.units, steps)
        return group_profile(per_unit, self.space.groups, steps)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def prepare(cls, config: StudyConfig) -> AutoFRStudy:
        """Check everything, load the model, build the space; nothing is written."""
        from autofr.cost import measure_cost
        from autofr.devices import check_device_dtype
        from autofr.reuse import discover_units, model_fingerprint, resolve_denoiser

        sampler = config.sampler.build()
        check_device_dtype(config.model.device, config.model.dtype)
        SearchSpace.check_config(config.space)
        measures = StudyMeasures.resolve(config.quality, config.model, config.search.confirm_proxies)
        check_storage(config.storage)
        tracker = Tracker(config.tracking.uri, config.tracking.experiment)
        tracker.check_reachable()
        pipe = load_model(config.model)
        denoiser = resolve_denoiser(pipe)
        levels = SearchSpace.settings(config.space).levels
        units = discover_units(pipe, levels=tuple(levels))  # the pipeline carries the user's unit rules
        protocol = protocol_for(config)
        cost = measure_cost(pipe, units, protocol=protocol)  # inputs built from the config, or captured from a call
        space = SearchSpace.from_config(
            config.space,
            units,
            type(denoiser).__name__,
            model_fingerprint(denoiser),
            config.model.num_inference_steps,
            type(pipe.scheduler).__name__,
        )
        return cls(config, _Model(pipe, denoiser, units, cost), space, protocol, measures, sampler, tracker)

    def describe(self) -> list[str]:
        """What will be searched, in two lines."""
        model, cost = self.model, self.model.cost
        return [
            f"autofr: {self.config.model.name} ({type(model.denoiser).__name__}, {len(model.units)} reusable units, "
            f"{cost.total_macs / 1e6:.1f} M MACs per forward, {100 * cost.reusable_fraction:.0f}% reusable)",
            self.space.size_summary(),
        ]

    def open(self) -> bool:
        """Create the study (warm start, metadata, MLflow parent run) or resume it; True if created.
        The creator sets the attribute the other workers wait for last."""
        config = self.config
        storage = open_storage(config.storage)
        # the warm start needs a model run: done before the study exists, so a failure leaves no half-made study
        new = config.study_name not in optuna.get_all_study_names(storage)
        entries = self.warm_start() if config.search.warm_start and new else None
        self.study, self.created = open_study(
            storage, config.study_name, directions=list(DIRECTIONS), sampler=self.sampler
        )
        self.profiles.attach(self.study)
        if self.created:
            study = self.study
            if config.search.max_device_hours is not None:
                plan = self.plan()
                budget = DeviceBudget.fit(config, plan, self.peer_count())
                StudyInfo.update(study, budget=budget.to_info())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([SPEED_OBJECTIVE, config.quality.proxy])  # what optuna-dashboard shows
            where = mask_url(config.storage.url) if config.storage.url else str(config.storage.journal_path)
            StudyInfo.update(
                study,
                model_id=config.model.name,
                protocol=self.protocol.describe(),
                space=self.space.describe(),
                proxy_name=config.quality.proxy,
                baseline_steps=config.model.num_inference_steps,
                storage=where,
            )
            StudyInfo.update(study, target=QualityTarget.parse(config.search.target).to_info())
            if config.search.warm_start:
                for origin, label, params in entries if entries is not None else self.warm_start():
                    enqueue_reference(study, params, origin, label)
            parent = self.tracker.create_parent_run(config.study_name, config.tree)
            StudyInfo.update(study, mlflow_experiment_id=self.tracker.experiment_id)
            StudyInfo.update(study, **{READY_ATTR: parent})
        self.parent_run = wait_for_user_attr(self.study, READY_ATTR, timeout_s=120)
        budget = StudyInfo.read(self.study).budget
        if budget and config.search.max_device_hours is not None:  # the creator's fit, the same in every worker
            self.budget = DeviceBudget.from_info(budget)
            self.config = self.budget.apply(config)
        _ = self.tracker.experiment_id  # known from here on: the printed MLflow link opens the experiment's runs
        return self.created

    @property
    def where(self) -> str:
        return str(StudyInfo.read(self.study).storage)

    # ------------------------------------------------------------------ stages
    def reference_samples(self, protocol: EvalProtocol | None = None):
        """Full compute's samples under ``protocol`` (default: the study's), cached on disk."""
        from autofr.quality import ReferenceCache

        if self._references is None:
            self._references = ReferenceCache(self.config.cache_dir)
        return self._references.samples(
            self.model.pipe,
            protocol or self.protocol,
            model_id=self.config.model.name,
            progress=self.config.search.progress and protocol is None,
        )

    def fidelity_plan(self) -> FidelityPlan | None:
        """The adaptive-fidelity levels, or None when trials are scored at one fidelity: adaptive
        scoring needs the ``fid_real`` proxy (FID against real data) and no ``quality.threshold``."""
        search, quality = self.config.search, self.config.quality
        if search.fidelity == "off" or quality.proxy != REAL_DATA_PROXY or quality.threshold is not None:
            return None
        levels = search.fidelity if isinstance(search.fidelity, tuple) else None
        return FidelityPlan.default(
            quality.proxy_samples, quality.fid_samples, levels, search.fidelity_z, search.fidelity_bootstrap
        )

    def objective(self) -> Objective:
        from autofr.quality import default_cache_dir

        config = self.config
        guidance = config.model.guidance_scale or 0
        batch = config.quality.batch_size * (2 if guidance > 1 else 1)
        speed = build_speed_model(
            config.search.speed_model,
            self.model.denoiser,
            self.model.units,
            self.model.cost,
            config.model.num_inference_steps,
            batch,
            config.cache_dir or default_cache_dir(),
            pipe=self.model.pipe,
            protocol=self.protocol,
        )
        adaptive = None
        plan = self.fidelity_plan()
        if plan is not None:
            full_top = self.reference_samples(self.protocol.replace(num_samples=plan.top))
            scorer = AdaptiveScorer(
                self.model.pipe, self.protocol, plan, self.measures.feature(), self.measures.real_stats(), full_top
            )
            adaptive = Adaptive(scorer, plan, QualityTarget.parse(config.search.target))
        return Objective(
            self.model.pipe,
            self.space,
            self.protocol,
            self.reference_samples(),
            self.measures,
            speed,
            keep_grids=config.tracking.log_samples,
            adaptive=adaptive,
            profiles=self.profiles,
        )

    def warm_start(self) -> list[tuple[str, str, dict]]:
        """The hand-set references and the calibrated schedules (read off a full-compute run)."""
        search = self.config.search
        entries = self.space.warm_start()
        steps = self.config.model.num_inference_steps
        wanted = sorted(
            {min(self.space.steps, key=lambda s: abs(s - round(f * steps))) for f in search.calibrated_steps},
            reverse=True,
        )
        entries += magcache_entries(self.space)
        entries += calibrated_entries(
            self.space, self.profiles, tuple(wanted), search.calibrated_thresholds, search.calibrated_mixing
        )
        return self._distinct(entries)

    def _distinct(self, entries: list[tuple[str, str, dict]]) -> list[tuple[str, str, dict]]:
        """The entries whose schedules differ (MagCache's rule at two thresholds can be one schedule on a
        small model): a repeated schedule would cost a trial and teach the sampler nothing."""
        seen, distinct = set(), []
        for origin, label, params in entries:
            schedule = self.space.suggest(optuna.trial.FixedTrial(params), self.profiles)
            key = schedule_key(schedule.to_dict())
            if key not in seen:
                seen.add(key)
                distinct.append((origin, label, params))
        return distinct

    def run(self, objective: Objective | None = None):
        """Run this process's worker until the global budget is complete; trials go to MLflow."""
        objective = objective or self.objective_for_stages()
        self._objective = objective

        def log_trial(study, frozen):
            grid = objective.grids.pop(frozen.number, None)
            self.log_trial(TrialRecord.from_frozen(frozen), artifacts={"samples.png": grid} if grid else {})

        budget = self.config.search.n_trials + peer_trial_count(self.study)  # peers take no slot of the budget
        self.trials_summary = run_worker(
            self.study,
            objective,
            budget,
            timeout_s=self.config.search.timeout_s,
            callbacks=(log_trial,),
            progress=self.config.search.progress,
            stop_when=self._trials_budget_spent if self.budget is not None else None,
        )
        return self.trials_summary

    def _trials_budget_spent(self) -> bool:
        spent = self.trial_seconds()
        if spent < self.budget.trials_s:
            return False
        completed = len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        self.record_cut(f"trials: stopped at {completed} by the device-hour budget ({spent / 3600:.3f} h spent)")
        return True

    def trial_seconds(self) -> float:
        """Device seconds the study's trials have taken so far (all workers)."""
        return float(sum(t.user_attrs.get("trial_seconds") or 0.0 for t in self.study.get_trials(deepcopy=False)))

    def record_cut(self, text: str) -> None:
        """Store what the device-hour budget cut (once per text) with the study."""
        info = dict(StudyInfo.read(self.study).budget or {})
        cuts = list(info.get("cuts") or ())
        if text not in cuts:
            info["cuts"] = [*cuts, text]
            StudyInfo.update(self.study, budget=info)
            logger.warning("device-hour budget: %s", text)

    def wait_for_running_trials(self) -> None:
        """Let other workers finish their last trials before the front is confirmed (bounded)."""
        deadline = time.monotonic() + 2.0 * self.config.storage.grace_period
        while self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if time.monotonic() > deadline:
                logger.warning("trials still running; confirming the front without them")
                return
            time.sleep(1.0)

    def evaluate_peers(self, progress=None):
        """Other libraries' caches that run on the model (``search.peers``), each scored by the study's
        objective and timed against full compute, stored as trials (:attr:`Origin.PEER`); see
        :mod:`autofr.search.peer_trials`. Returns a :class:`~autofr.search.peer_trials.PeerStage`."""
        methods = self.config.search.peer_methods
        if not methods:
            return PeerStage()
        objective = self.objective_for_stages()

        return evaluate_peers(
            self.study,
            self.model.pipe,
            self.protocol,
            objective,
            methods,
            timing_repeats=self.config.search.timing_repeats,
            progress=progress,
            on_added=self.log_trial,
        )

    def confirm(self, progress=None) -> list:
        """FID-N and measured speed for the candidates that decide the answer (``search.confirm_*``)."""
        search = self.config.search
        records = self.records()
        candidates = confirm_candidates(
            records,
            search.confirm_top_k,
            search.confirm_max,
            layers=search.confirm_layers,
            proxies=self.measures.confirm_proxies,
            order=deciding_order,
            near_target=True,
        )
        confirmer = self.confirmer()
        done = confirmer.confirm(
            self.study,
            candidates,
            progress=progress,
            on_confirmed=lambda trial, c: self.tracker.log_confirmation(self.parent_run, trial.number, c),
        )
        record_proxy_fidelity(self.study)
        self.confirm_seconds = dict(confirmer.seconds)
        return done

    def records(self) -> StudyRecords:
        return StudyRecords.load(self.study)

    # ------------------------------------------------------------------ the plan and the stages
    def plan(self, workers: int | None = None) -> StudyPlan:
        """What the study will cost (:mod:`autofr.search.plan`): one batch of full compute is timed here."""
        if self._plan is None or (workers and workers != self._plan.workers):
            from autofr.devices import device_description

            protocol = self.protocol.replace(num_samples=self.protocol.batch_size)
            generate(self.model.pipe, protocol.replace(num_samples=1))  # one-off costs
            seconds = generate(self.model.pipe, protocol).seconds / protocol.num_samples
            self._plan = estimate(
                self.config, seconds, self.peer_count(), device_description(self.config.model.device), workers
            )
        return self._plan

    def peer_count(self) -> int:
        """How many peer settings run on the model (each method probed once)."""
        if self._n_peers is None:
            from autofr.peers import available_peers

            methods = self.config.search.peer_methods
            self._n_peers = len(available_peers(self.model.pipe, self.protocol, methods)[0]) if methods else 0
        return self._n_peers

    def work_queue(self):
        """This worker's handle on the study's work items (:mod:`autofr.execution.work`)."""
        from autofr.devices import device_description
        from autofr.execution.work import WorkerIdentity, WorkQueue

        worker = WorkerIdentity.current(device_description(self.config.model.device))
        return WorkQueue.open(
            open_storage(self.config.storage), self.config.study_name, worker, self.config.storage.max_retry
        )

    def run_stages(self, show=print) -> int:
        """Take part, with every other worker, in the stages after the trials (peers, confirmation,
        timing) until all are done (:mod:`autofr.search.stages`); returns how many items ran here."""
        from autofr.search.stages import StudyStages

        return StudyStages(self, self.work_queue(), show=show).run()

    def spent_seconds(self, queue) -> float:
        """Device seconds spent so far: the trials and the finished work items."""
        from autofr.search.stages import stage_seconds

        return self.trial_seconds() + stage_seconds(queue)

    def confirmer(self) -> Confirmer:
        """The study's :class:`~autofr.search.confirm.Confirmer` (FID-N at ``search.fid_seeds``, timing)."""
        from autofr.quality import default_cache_dir

        search = self.config.search
        return Confirmer(
            self.model.pipe,
            self.protocol,
            self.measures,
            self.config.quality.fid_samples,
            fid_seeds=search.fid_seeds,
            timing_repeats=search.timing_repeats if search.measure_speed else 0,
            cache_dir=self.config.cache_dir or default_cache_dir(),
            model_id=self.config.model.name,
            reuse_trial_scores=True,
        )

    def objective_for_stages(self) -> Objective:
        """The objective the trials were scored with (built here if this worker ran no trial)."""
        if self._objective is None:
            self._objective = self.objective()
        return self._objective

    def log_trial(self, record: TrialRecord, artifacts: dict | None = None) -> None:
        """A finished trial (a peer too) as a child run of the study's MLflow parent run."""
        try:
            self.tracker.log_trial_record(self.parent_run, record, artifacts=artifacts or {})
        except AutoFRError as error:  # the Optuna storage stays the source of truth
            logger.warning("trial %d not logged to MLflow: %s", record.number, error)

    def log_confirmation(self, number: int, confirmation) -> None:
        try:
            self.tracker.log_confirmation(self.parent_run, number, confirmation)
        except AutoFRError as error:  # the Optuna storage stays the source of truth
            logger.warning("confirmation of trial %d not logged to MLflow: %s", number, error)

    def log_progress(self, row) -> None:
        """One stage's progress (:class:`~autofr.execution.work.StageProgress`) as metrics of the parent run."""
        name = row.stage.replace(".", "_")
        metrics = {f"stage_{name}_done": row.done, f"stage_{name}_total": row.total}
        if row.left_s is not None:
            metrics[f"stage_{name}_left_s"] = row.left_s
        try:
            self.tracker.log_metrics(self.parent_run, metrics, step=row.done)
        except AutoFRError as error:
            logger.warning("progress not logged to MLflow: %s", error)
