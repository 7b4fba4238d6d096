"""Adaptive fidelity: more samples only for the trials whose score lies near the quality target.

Every trial is first scored on the proxy's N samples (level 0). The score is the FID difference to
full compute at the same N and seed, ``FID_N(schedule) - FID_N(full compute)`` against the real
data. Both sets start from the same noise, and FID's small-N bias is close to additive, so it
largely cancels in the difference (a ratio would shrink every difference by the bias instead); the
target speaks about the same difference, ``FID(schedule) <= (1 + tolerance) FID(full compute)``.
The score's noise is measured per trial with a paired bootstrap (the same resampled indices for the
schedule's and full compute's samples).

A :class:`Calibration` fitted on the study's own trials that reached the top level maps a level's
difference to the top level's, so the estimate (and the constraint) is stated in top-level FID terms.
When the estimate lies within ``z`` standard deviations of the target's limit, and the trial could
still be the answer (it is faster than the fastest trial already known to be within the target), the
trial is extended to the next level: only the new samples are generated (sample ``i`` of a protocol
does not depend on N) and their features are appended. Trials far from the target stay cheap.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from autofr.evaluation import EvalProtocol, SampleBatch, generate
from autofr.quality.features import FeatureStats, extract_features, frechet_distance
from autofr.search.records import TrialRecord

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FidelityPlan:
    """The sample counts of each level (increasing; ``levels[0]`` is the proxy's N), how close to the
    limit an estimate must be to climb (``z`` standard deviations), bootstrap draws per score, and
    how many top-level trials a level's calibration needs before it replaces the identity map."""

    levels: tuple[int, ...]
    z: float = 2.0
    bootstrap: int = 32
    min_pairs: int = 4

    @property
    def top(self) -> int:
        return self.levels[-1]

    @classmethod
    def default(
        cls, proxy_samples: int, fid_samples: int, levels=None, z: float = 2.0, bootstrap: int = 32
    ) -> FidelityPlan:
        """``levels`` as given, else the proxy's N times 1, 4 and 16, capped below at FID-N's N."""
        if levels:
            chosen = sorted({int(n) for n in levels})
        else:
            chosen = sorted(
                {
                    n
                    for n in (proxy_samples, 4 * proxy_samples, 16 * proxy_samples)
                    if n <= max(fid_samples, proxy_samples)
                }
            )
        return cls(tuple(chosen), float(z), int(bootstrap))


@dataclass
class FidelityScore:
    """What adaptive scoring found for one trial (the keys of ``deltas``/``sd`` are sample counts)."""

    deltas: dict[int, float]
    sd: dict[int, float]
    estimate: float  # the calibrated FID difference at the top level
    estimate_sd: float
    samples: int  # samples generated for this trial
    seconds: float = 0.0
    fid_vs_full_top: float | None = None  # at the top level: FID against full compute's samples

    @property
    def fidelity(self) -> int:
        return max(self.deltas)


@dataclass
class Calibration:
    """Per level, ``delta_top ~ a + b * delta_level`` fitted on trials scored at both, with the
    residual sd; the identity (with the bootstrap sd inflated by half) until ``min_pairs`` exist."""

    plan: FidelityPlan
    fits: dict[int, tuple[float, float, float, int]] = field(default_factory=dict)  # N -> (a, b, sd, n)

    @classmethod
    def from_records(cls, plan: FidelityPlan, trials: list[TrialRecord]) -> Calibration:
        fits = {}
        for level in plan.levels[:-1]:
            pairs = [
                (t.fidelity_deltas[level], t.fidelity_deltas[plan.top])
                for t in trials
                if level in t.fidelity_deltas and plan.top in t.fidelity_deltas
            ]
            if len(pairs) >= plan.min_pairs:
                x, y = np.array(pairs, dtype=float).T
                if np.ptp(x) > 0:
                    b, a = np.polyfit(x, y, 1)
                    residual = y - (a + b * x)
                    fits[level] = (
                        float(a),
                        float(b),
                        float(np.sqrt(np.sum(residual**2) / max(1, len(x) - 2))),
                        len(x),
                    )
        return cls(plan, fits)

    def predict(self, level: int, delta: float, bootstrap_sd: float) -> tuple[float, float]:
        """``(estimate, sd)`` of the top-level difference from a difference measured at ``level``."""
        if level == self.plan.top:
            return delta, bootstrap_sd
        if level in self.fits:
            a, b, residual_sd, _ = self.fits[level]
            return a + b * delta, math.sqrt(residual_sd**2 + (b * bootstrap_sd) ** 2)
        return delta, 1.5 * bootstrap_sd

    def describe(self) -> dict:
        return {str(level): {"a": a, "b": b, "sd": sd, "n": n} for level, (a, b, sd, n) in self.fits.items()}


class AdaptiveScorer:
    """Scores schedules at rising sample counts against full compute's samples at the same seed.

    Args:
        pipe: the pipeline.
        protocol: the study's protocol (its seed and batch size; N is taken from the plan).
        plan: the fidelity levels.
        feature: the FID feature extractor.
        real: feature statistics of the real data.
        full_top: full compute's samples at the plan's top level (the first N of them are full
            compute's samples at every lower level, from the same noise).
    """

    def __init__(
        self, pipe, protocol: EvalProtocol, plan: FidelityPlan, feature, real: FeatureStats, full_top: SampleBatch
    ) -> None:
        self.pipe, self.plan, self.feature, self.real = pipe, plan, feature, real
        self.protocol = protocol.replace(num_samples=plan.top)
        self.full = extract_features(feature, full_top).numpy()
        self.full_fid = {n: frechet_distance(FeatureStats.from_features(self.full[:n]), real) for n in plan.levels}

    def score(
        self, schedule, first: SampleBatch, limit: float | None, calibration: Calibration, may_climb: bool = True
    ) -> FidelityScore:
        """Score ``schedule`` whose first ``levels[0]`` samples are ``first``; climb while the
        estimate is within ``z`` sd of ``limit`` (the highest FID difference within the target)."""
        began = time.perf_counter()
        features = extract_features(self.feature, first).numpy()
        deltas, sds, samples = {}, {}, 0
        steps = schedule.num_inference_steps if schedule is not None else self.protocol.num_inference_steps
        for index, level in enumerate(self.plan.levels):
            if len(features) < level:  # schedule None: the pipeline as it is (a peer's cache enabled)
                extra = generate(
                    self.pipe,
                    self.protocol.replace(num_samples=level, num_inference_steps=steps),
                    schedule,
                    first=len(features),
                )
                features = np.concatenate([features, extract_features(self.feature, extra).numpy()])
                samples += len(extra)
            deltas[level], sds[level] = self._delta(features[:level], level)
            estimate, sd = calibration.predict(level, deltas[level], sds[level])
            last = index == len(self.plan.levels) - 1
            if last or not may_climb or limit is None or abs(estimate - limit) > self.plan.z * sd:
                break
        vs_full = None
        if self.plan.top in deltas:
            vs_full = frechet_distance(
                FeatureStats.from_features(features[: self.plan.top]), FeatureStats.from_features(self.full)
            )
        return FidelityScore(deltas, sds, estimate, sd, samples, time.perf_counter() - began, vs_full)

    def _delta(self, features: np.ndarray, level: int) -> tuple[float, float]:
        """FID difference to full compute at ``level`` samples and its paired bootstrap sd."""
        delta = frechet_distance(FeatureStats.from_features(features), self.real) - self.full_fid[level]
        generator = np.random.default_rng(level)
        draws = []
        for _ in range(self.plan.bootstrap):
            index = generator.integers(0, level, level)
            full = frechet_distance(FeatureStats.from_features(self.full[index]), self.real)
            draws.append(frechet_distance(FeatureStats.from_features(features[index]), self.real) - full)
        return float(delta), float(np.std(draws, ddof=1)) if len(draws) > 1 else 0.0
