"""The per-trial objective: schedule -> samples -> (predicted speedup, quality) -> TrialResult.

Every trial is sampled with the study's fixed :class:`~autofr.evaluation.EvalProtocol` at the
trial's own step count, from the same initial noise as the full-compute reference, so paired
measures see exactly what the schedule changed. Speed is predicted by the
:class:`~autofr.search.speed.SpeedModel`.

Quality, the second objective, is either

* **target-driven** (an :class:`Adaptive` set-up: the ``fid_real`` proxy with a ``search.target``):
  the FID-N estimate from :mod:`autofr.search.fidelity`, with more samples for trials near the
  target, and the constraint ``fid_estimate - limit`` (feasible when <= 0), in FID terms; or
* **a fixed proxy** (any measure, on ``quality.proxy_samples``), constrained by ``quality.threshold``
  when one is given.

What a trial measured is written once, as a :class:`~autofr.search.records.TrialResult`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from optuna.trial import TrialState

from autofr.errors import QualityError
from autofr.evaluation import EvalProtocol, SampleBatch, generate
from autofr.images import sample_grid_png
from autofr.search.fidelity import AdaptiveScorer, Calibration, FidelityPlan
from autofr.search.front import fastest_estimated_within
from autofr.search.measures import StudyMeasures, resolve_threshold
from autofr.search.records import TrialRecord, TrialResult, mark_origin, record_failure, schedule_key
from autofr.search.space import SearchSpace
from autofr.search.speed import SpeedModel
from autofr.target import QualityTarget

logger = logging.getLogger(__name__)


@dataclass
class Adaptive:
    """Target-driven scoring: the scorer, its plan, the target, and full compute's top-level FID."""

    scorer: AdaptiveScorer
    plan: FidelityPlan
    target: QualityTarget

    @property
    def full_fid(self) -> float:
        return self.scorer.full_fid[self.plan.top]

    @property
    def limit(self) -> float:
        """The highest FID-N (top level) within the target."""
        return self.target.limit(self.full_fid)

    @property
    def limit_delta(self) -> float:
        """The highest FID difference to full compute within the target."""
        return self.limit - self.full_fid


class Objective:
    """``objective(trial) -> (predicted speedup, quality)``; records what it did as a TrialResult.

    Args:
        pipe: the pipeline, sampled through :func:`autofr.evaluation.generate`.
        space: turns trial parameters into a schedule.
        protocol: seeds, labels/prompts, N and batch size of every proxy evaluation.
        reference: full compute's samples under ``protocol`` (the paired proxies' reference).
        measures: the study's proxy and the extra metrics every trial records.
        speed: the speed objective.
        keep_grids: keep a PNG grid of each trial's samples in :attr:`grids` (for MLflow).
        adaptive: target-driven scoring (see the module docstring); None: the fixed proxy.
    """

    def __init__(
        self,
        pipe,
        space: SearchSpace,
        protocol: EvalProtocol,
        reference: SampleBatch,
        measures: StudyMeasures,
        speed: SpeedModel,
        keep_grids: bool = True,
        adaptive: Adaptive | None = None,
        profiles=None,
    ) -> None:
        self.pipe = pipe
        self.space = space
        self.protocol = protocol
        self.proxy_name = measures.proxy
        self.measures = {name: measures.build(name, reference) for name in (measures.proxy, *measures.extra)}
        self.speed = speed
        self.adaptive = adaptive
        self.profiles = profiles  # steps -> StepProfile, for calibrated timing (autofr.search.timing)
        self.full_compute_proxy = float(self.measures[self.proxy_name].score(reference))
        self.threshold = (
            None if adaptive else resolve_threshold(measures.threshold, self.proxy_name, self.full_compute_proxy)
        )
        self.keep_grids = keep_grids
        self.grids: dict[int, bytes] = {}
        self._grid_by_schedule: dict[str, bytes] = {}
        self._known: dict[int, TrialRecord] = {}  # finished trials of every worker, read once each

    def describe(self) -> str | None:
        """One line about the constraint, or None when there is none."""
        if self.adaptive is not None:
            a = self.adaptive
            return (
                f"target: {a.target.describe()} (FID-{a.plan.top} <= {a.limit:.4g}; full compute "
                f"{a.full_fid:.4g}); fidelity {' -> '.join(map(str, a.plan.levels))} samples near it"
            )
        if self.threshold is not None:
            return f"constraint: {self.proxy_name} <= {self.threshold:.4g} (full compute scores {self.full_compute_proxy:.4g})"
        return None

    def __call__(self, trial) -> tuple[float, float]:
        schedule = self.space.suggest(trial, self.profiles)
        mark_origin(trial)
        result = TrialResult(
            schedule=schedule.to_dict(),
            num_inference_steps=schedule.num_inference_steps,
            predicted_speedup=self.speed.predicted_speedup(schedule),
        )
        key = schedule_key(result.schedule)
        known = self._refresh(trial)
        twin = next((t for t in known.values() if t.proxy is not None and t.schedule_key() == key), None)
        if twin is not None:  # the sampler proposed a schedule already scored: same protocol, same result
            copied = TrialResult.of(twin)
            copied.schedule, copied.duplicate_of = result.schedule, twin.number
            copied.sampling_seconds = copied.trial_seconds = 0.0
            copied.samples_generated = 0
            return self._finish(trial, copied, key, grid=self._grid_by_schedule.get(key))
        began = time.perf_counter()
        try:
            samples = generate(
                self.pipe, self.protocol.replace(num_inference_steps=schedule.num_inference_steps), schedule
            )
            self.score(result, samples, schedule, known)
        except QualityError as error:
            record_failure(trial, str(error))
            raise
        result.sampling_seconds, result.trial_seconds = samples.seconds, time.perf_counter() - began
        return self._finish(trial, result, key, grid=sample_grid_png(samples.images) if self.keep_grids else None)

    def score(self, result: TrialResult, samples: SampleBatch, schedule, known: dict[int, TrialRecord]) -> None:
        """Fill ``result``'s quality from its first samples: every measure, and with adaptive fidelity
        the FID estimate (more samples of ``schedule`` near the target; ``schedule=None`` samples the
        pipeline as it is, e.g. with a peer's cache enabled). Raises QualityError on a non-finite proxy."""
        metrics = {}
        for name, measure in self.measures.items():
            measure.reset()
            metrics[name] = float(measure.score(samples))
        proxy = metrics[self.proxy_name]
        if not math.isfinite(proxy):
            raise QualityError(f"{self.proxy_name} is {proxy}: the schedule produced unusable samples")
        result.proxy, result.proxy_metrics = proxy, metrics
        result.samples_generated = len(samples)
        if self.adaptive is not None:
            self._score_adaptively(result, schedule, samples, known)

    def _score_adaptively(
        self, result: TrialResult, schedule, samples: SampleBatch, known: dict[int, TrialRecord]
    ) -> None:
        a = self.adaptive
        trials = list(known.values())
        calibration = Calibration.from_records(a.plan, trials)
        # a trial no faster than one already known to be within the target cannot be the answer;
        # a peer (no predicted speedup) is a baseline, not a candidate answer: it always may climb
        fastest = fastest_estimated_within(trials, a.plan.top, a.limit_delta)
        may_climb = result.predicted_speedup is None or result.predicted_speedup > fastest
        score = a.scorer.score(schedule, samples, a.limit_delta, calibration, may_climb=may_climb)
        result.fidelity, result.fidelity_deltas, result.fidelity_sd = score.fidelity, score.deltas, score.sd
        result.samples_generated = (result.samples_generated or 0) + score.samples
        result.fid_estimate, result.fid_estimate_sd = a.full_fid + score.estimate, score.estimate_sd
        result.fid_vs_full_top = score.fid_vs_full_top

    def constrain(self, result: TrialResult) -> float:
        """The quality objective of a scored result (FID estimate, else the proxy); sets its constraint."""
        if self.adaptive is not None:
            result.constraint = result.fid_estimate - self.adaptive.limit
            return result.fid_estimate
        if self.threshold is not None:
            result.constraint = result.proxy - self.threshold
        return result.proxy

    def _finish(self, trial, result: TrialResult, key: str, grid: bytes | None) -> tuple[float, float]:
        value = self.constrain(result)
        if result.constraint is not None:
            trial.set_constraint("quality_target", result.constraint)  # feasible when <= 0
        result.write(trial)
        if self.keep_grids and grid is not None:
            self.grids[trial.number] = self._grid_by_schedule[key] = grid
        return result.predicted_speedup, value

    def _refresh(self, trial) -> dict[int, TrialRecord]:
        """The study's complete trials (all workers), each read into a record once."""
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.number not in self._known and other.number != trial.number:
                self._known[other.number] = TrialRecord.from_frozen(other)
        return self._known
