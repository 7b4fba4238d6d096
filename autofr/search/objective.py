"""The per-trial objective: schedule -> samples -> (predicted speedup, quality proxy) -> TrialResult.

Every trial is sampled with the study's fixed :class:`~autofr.evaluation.EvalProtocol` at the
trial's own step count, from the same initial noise as the full-compute reference (made once at
the model's reference step count and cached), so the paired proxy measures exactly what the
schedule changed. Speed is predicted by the :class:`~autofr.search.speed.SpeedModel`, relative to
full compute at the reference step count. What a trial measured is written once, as a
:class:`~autofr.search.records.TrialResult`.
"""

from __future__ import annotations

import logging
import math
import time

from optuna.trial import TrialState

from autofr.errors import QualityError
from autofr.evaluation import EvalProtocol, SampleBatch, generate
from autofr.report.grid import sample_grid_png
from autofr.search.measures import StudyMeasures, resolve_threshold
from autofr.search.records import TrialRecord, TrialResult, mark_origin, record_failure, schedule_key
from autofr.search.space import SearchSpace
from autofr.search.speed import SpeedModel

logger = logging.getLogger(__name__)


class Objective:
    """``objective(trial) -> (predicted speedup, proxy)``; records what it did as a TrialResult.

    Args:
        pipe: the pipeline, sampled through :func:`autofr.evaluation.generate`.
        space: turns trial parameters into a schedule.
        protocol: seeds, labels/prompts, N and batch size of every proxy evaluation.
        reference: full compute's samples under ``protocol`` (the paired proxies' reference).
        measures: the study's proxy and the extra metrics every trial records.
        speed: the speed objective.
        keep_grids: keep a PNG grid of each trial's samples in :attr:`grids` (for MLflow).
    """

    def __init__(self, pipe, space: SearchSpace, protocol: EvalProtocol, reference: SampleBatch,
                 measures: StudyMeasures, speed: SpeedModel, keep_grids: bool = True) -> None:
        self.pipe = pipe
        self.space = space
        self.protocol = protocol
        self.proxy_name = measures.proxy
        self.measures = {name: measures.build(name, reference) for name in (measures.proxy, *measures.extra)}
        self.speed = speed
        self.full_compute_proxy = float(self.measures[self.proxy_name].score(reference))
        self.threshold = resolve_threshold(measures.threshold, self.proxy_name, self.full_compute_proxy)
        self.keep_grids = keep_grids
        self.grids: dict[int, bytes] = {}
        self._grid_by_schedule: dict[str, bytes] = {}
        self._scored: dict[str, tuple[int, TrialResult]] = {}  # schedule key -> (trial, result)
        self._seen: set[int] = set()

    def __call__(self, trial) -> tuple[float, float]:
        schedule = self.space.suggest(trial)
        mark_origin(trial)
        result = TrialResult(schedule=schedule.to_dict(), num_inference_steps=schedule.num_inference_steps,
                             predicted_speedup=self.speed.predicted_speedup(schedule))
        key = schedule_key(result.schedule)
        twin = self._twin(trial, key)
        if twin is not None:  # the sampler proposed a schedule already scored: same protocol, same result
            number, earlier = twin
            result.proxy, result.proxy_metrics, result.duplicate_of = earlier.proxy, earlier.proxy_metrics, number
            result.sampling_seconds = result.trial_seconds = 0.0
            self._finish(trial, result, key, grid=self._grid_by_schedule.get(key))
            return result.predicted_speedup, result.proxy
        began = time.perf_counter()
        try:
            samples = generate(self.pipe, self.protocol.replace(num_inference_steps=schedule.num_inference_steps), schedule)
        except QualityError as error:
            record_failure(trial, str(error))
            raise
        metrics = {}
        for name, measure in self.measures.items():
            measure.reset()
            metrics[name] = float(measure.score(samples))
        proxy = metrics[self.proxy_name]
        if not math.isfinite(proxy):
            reason = f"{self.proxy_name} is {proxy}: the schedule produced unusable samples"
            record_failure(trial, reason)
            raise QualityError(reason)
        result.proxy, result.proxy_metrics = proxy, metrics
        result.sampling_seconds, result.trial_seconds = samples.seconds, time.perf_counter() - began
        self._finish(trial, result, key, grid=sample_grid_png(samples.images) if self.keep_grids else None)
        return result.predicted_speedup, proxy

    def _finish(self, trial, result: TrialResult, key: str, grid: bytes | None) -> None:
        if self.threshold is not None:
            result.constraint = result.proxy - self.threshold  # feasible when <= 0
            trial.set_constraint("proxy_threshold", result.constraint)
        result.write(trial)
        self._scored.setdefault(key, (trial.number, result))
        if self.keep_grids and grid is not None:
            self.grids[trial.number] = self._grid_by_schedule[key] = grid

    def _twin(self, trial, key: str) -> tuple[int, TrialResult] | None:
        """An earlier complete trial with the same schedule (sampling is deterministic), or None.
        Trials of other workers are indexed as they appear, each once."""
        if key not in self._scored:
            for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if other.number in self._seen or other.number == trial.number:
                    continue
                self._seen.add(other.number)
                earlier = TrialRecord.from_frozen(other)
                if earlier.proxy is not None:
                    self._scored.setdefault(earlier.schedule_key(), (other.number, TrialResult.of(earlier)))
        return self._scored.get(key)
