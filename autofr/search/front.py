"""Pareto fronts, hypervolume and export policies over a study's records.

Pure functions of :class:`~autofr.search.records.TrialRecord` lists; nothing here touches Optuna's
storage, MLflow, the model or the disk. The Pareto and hypervolume maths is Optuna's own (through
:mod:`autofr.execution._optuna`). Speed is the *measured* speedup where a trial was timed, else the
predicted one (:attr:`TrialRecord.speed`); quality is FID-N where confirmed.

Peers (other libraries' caches, origin ``peer``) are baselines, not schedules: the fronts, the
hypervolume and the export policies are over the study's schedules only, and :class:`StudyAnswer`
names the fastest peer within the target beside the fastest hand-set reference.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autofr.errors import ConfigError
from autofr.execution import _optuna
from autofr.search.records import StudyRecords, TrialRecord
from autofr.target import QualityTarget

POLICIES = ("fastest_within", "best_at_speedup", "knee")
MEASURES = ("fid", "proxy")


# ---------------------------------------------------------------------- Pareto and hypervolume
def _losses(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> tuple[list[int], np.ndarray]:
    """Indices of the finite points and their coordinates as losses (every column minimised)."""
    signs = [-1.0 if up else 1.0 for up in maximize]
    kept, rows = [], []
    for index, point in enumerate(points):
        if len(point) != len(signs):
            raise ValueError(f"point {index} has {len(point)} objectives, expected {len(signs)}")
        if all(isinstance(v, (int, float)) and math.isfinite(v) for v in point):
            kept.append(index)
            rows.append([s * float(v) for s, v in zip(signs, point)])
    return kept, np.asarray(rows, dtype=float).reshape(len(rows), len(signs))


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool] = (True, False)) -> list[int]:
    """Indices (in input order) of the non-dominated points. ``maximize[k]`` says whether objective
    ``k`` is maximised; equal points are all kept; a point with a non-finite coordinate is never on
    the front."""
    kept, losses = _losses(points, maximize)
    return [kept[i] for i in np.flatnonzero(_optuna.is_pareto_front(losses))]


def pareto_layers(points: Sequence[Sequence[float]], maximize: Sequence[bool] = (True, False)) -> list[list[int]]:
    """The non-domination layers of ``points``: layer 0 is the Pareto front, layer 1 the front of the
    rest, and so on (indices in input order within each layer)."""
    kept, losses = _losses(points, maximize)
    ranks = _optuna.nondomination_ranks(losses)
    layers: list[list[int]] = [[] for _ in range(int(ranks.max()) + 1 if len(ranks) else 0)]
    for index, rank in zip(kept, ranks):
        layers[int(rank)].append(index)
    return layers


def hypervolume_2d(points: Iterable[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` (maximise ``x`` = speed, minimise ``y`` = FID or proxy) and
    bounded by ``reference = (x_ref, y_ref)``. Points not strictly better than the reference in both
    coordinates add nothing."""
    _, losses = _losses(list(points), (True, False))
    return _optuna.compute_hypervolume(losses, np.array([-float(reference[0]), float(reference[1])]))


def hypervolume_reference(trials: Sequence[TrialRecord]) -> tuple[float, float]:
    """The reference point of :func:`hypervolume_history`: speed 1.0 (full compute) and the worst
    proxy among the feasible completed trials, fixed over the whole history so the curve is
    comparable from trial to trial."""
    proxies = [t.values[1] for t in schedules(trials) if t.complete and t.feasible and math.isfinite(t.values[1])]
    return 1.0, (max(proxies) if proxies else 0.0)


def hypervolume_history(
    trials: Sequence[TrialRecord], reference: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """``(completed trial count, hypervolume)`` after each completed schedule (in trial-number order) over
    the search objectives (predicted speedup, proxy); peers are not counted. Infeasible trials add nothing. The front is
    kept as trials arrive, so the history costs O(trials x front), not O(trials^2)."""
    reference = tuple(reference) if reference is not None else hypervolume_reference(trials)
    history: list[tuple[int, float]] = []
    front: list[tuple[float, float]] = []
    volume = 0.0
    for count, trial in enumerate(
        sorted((t for t in schedules(trials) if t.complete), key=lambda t: t.number), start=1
    ):
        if trial.feasible:
            point = (trial.values[0], trial.values[1])
            if not any(x >= point[0] and y <= point[1] for x, y in front):
                front = [(x, y) for x, y in front if not (point[0] >= x and point[1] <= y)] + [point]
                volume = hypervolume_2d(front, reference)
        history.append((count, volume))
    return history


# ---------------------------------------------------------------------- fronts over records
def schedules(trials: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The trials that hold a schedule (every trial but the peers)."""
    return [t for t in trials if not t.is_peer]


def fid_front(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Confirmed schedules on the Pareto front of speed (max) vs FID (min), slowest first."""
    confirmed = [t for t in schedules(trials) if t.complete and t.confirmation is not None]
    return sorted((confirmed[i] for i in pareto_front([(t.speed, t.fid) for t in confirmed])), key=lambda t: t.speed)


def proxy_layers(trials: Sequence[TrialRecord], layers: int = 1) -> list[list[TrialRecord]]:
    """The first ``layers`` non-dominated layers of the feasible completed trials in (predicted
    speedup, proxy), each fastest first. Layer 1 is the proxy Pareto front; a small-sample proxy is
    noisy, so a schedule just behind it may well beat it on FID (``search.confirm_layers``)."""
    feasible = [t for t in schedules(trials) if t.complete and t.feasible]
    found = pareto_layers([t.values[:2] for t in feasible])[: max(1, int(layers))]
    return [sorted((feasible[i] for i in layer), key=lambda t: -t.values[0]) for layer in found] or [[]]


def proxy_front(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """Feasible completed trials on the Pareto front of the search values, slowest first."""
    return sorted(proxy_layers(trials, 1)[0], key=lambda t: t.values[0])


def metric_front(trials: Sequence[TrialRecord], metric: str) -> list[TrialRecord]:
    """The feasible completed trials non-dominated in (predicted speedup, ``metric``), fastest first,
    where ``metric`` is any measure the trials record in ``proxy_metrics`` (lower is better)."""
    measured = [t for t in schedules(trials) if t.complete and t.feasible and metric in t.proxy_metrics]
    points = [(t.values[0], t.proxy_metrics[metric]) for t in measured]
    return sorted((measured[i] for i in pareto_front(points)), key=lambda t: -t.values[0])


def full_compute_fid(records: StudyRecords) -> float | None:
    """FID of full compute: the full-compute trial's, else the study's ``fid_full_compute``."""
    baseline = records.full_compute()
    if baseline is not None and baseline.confirmation is not None:
        return baseline.fid
    value = records.info.fid_full_compute
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def study_target(records: StudyRecords) -> QualityTarget:
    return QualityTarget.from_info(records.info.target)


def target_limit(records: StudyRecords, trial: TrialRecord | None = None) -> float | None:
    """The highest FID within the study's target; for a confirmed ``trial`` whose confirmation holds
    full compute's FID at the same seeds, the limit from those (a paired comparison)."""
    target = study_target(records)
    if trial is not None and trial.confirmation is not None:
        confirmation = trial.confirmation
        shared = [confirmation.fid_full_seeds[s] for s in confirmation.fid_seeds if s in confirmation.fid_full_seeds]
        if shared:
            return target.limit(sum(shared) / len(shared))
    return target.limit(full_compute_fid(records))


def within_target(records: StudyRecords, trial: TrialRecord) -> bool:
    """A confirmed trial whose (mean) FID is within the study's target."""
    limit = target_limit(records, trial)
    return trial.confirmation is not None and limit is not None and trial.fid <= limit


def close_to_limit(records: StudyRecords, trial: TrialRecord, z: float = 2.0) -> str | None:
    """A warning when a confirmed trial within the target is closer to the limit than ``z`` standard
    errors of its paired difference to full compute over the seeds (None when it is clear of it, or
    when fewer than two seeds leave the noise unmeasured)."""
    confirmation, limit = trial.confirmation, target_limit(records, trial)
    differences = list(confirmation.paired_difference().values()) if confirmation is not None else []
    if limit is None or len(differences) < 2 or trial.fid > limit:
        return None
    mean = sum(differences) / len(differences)
    error = math.sqrt(sum((d - mean) ** 2 for d in differences) / (len(differences) - 1) / len(differences))
    margin, full = limit - trial.fid, trial.fid - mean
    if margin >= z * error or full <= 0:
        return None
    return (
        f"close to the limit: within it by {100 * margin / full:.2f}% of full compute's FID, less than {z:g} "
        f"standard errors of the paired difference over {len(differences)} seeds ({100 * error / full:.2f}%); "
        "more samples or seeds may place it outside"
    )


@dataclass(frozen=True)
class Resolution:
    """Whether the study's target can be told apart at its sample count: the allowance the target
    leaves over full compute's FID, against the noise of a confirmed point's paired difference to full
    compute (its standard error over the FID seeds, pooled over the confirmed points)."""

    allowance: float
    noise: float  # standard error of a point's mean paired difference over its seeds
    seeds: int
    samples: int | None  # N of FID-N
    z: float = 2.0

    @property
    def resolved(self) -> bool:
        return self.allowance >= self.z * self.noise

    @property
    def samples_needed(self) -> int | None:
        """FID-N's N at which the allowance is ``z`` standard errors (the noise falls as 1/sqrt(N))."""
        if self.samples is None or self.allowance <= 0:
            return None
        return math.ceil(self.samples * (self.z * self.noise / self.allowance) ** 2)

    def describe(self) -> str:
        name = f"FID-{self.samples}" if self.samples else "FID"
        if self.resolved:
            return (
                f"resolved: the target allows {self.allowance:.4g} over full compute, {self.allowance / self.noise:.1f} "
                f"standard errors of {name} over {self.seeds} seeds"
            )
        needed = self.samples_needed
        fix = f"FID-{needed} (quality.fid_samples={needed}) or about {math.ceil(self.seeds * (self.z * self.noise / self.allowance) ** 2)} seeds (search.fid_seeds)"
        return (
            f"not resolved at this sample count: the target allows {self.allowance:.4g} over full compute, less than "
            f"{self.z:g} standard errors of {name} over {self.seeds} seeds ({self.z * self.noise:.4g}); which points "
            f"meet it is chance here; {fix} would resolve it"
        )


def resolution(records: StudyRecords, z: float = 2.0) -> Resolution | None:
    """The study's :class:`Resolution`, from its confirmations at two or more seeds (None before)."""
    deviations, seeds = [], []
    for trial in records.confirmed():
        differences = list(trial.confirmation.paired_difference().values())
        if len(differences) >= 2 and not trial.origin.is_full_compute:
            mean = sum(differences) / len(differences)
            deviations += [(d - mean) ** 2 for d in differences]
            seeds.append(len(differences))
    full = full_compute_fid(records)
    limit = target_limit(records)
    if not seeds or full is None or limit is None:
        return None
    variance = sum(deviations) / max(1, len(deviations) - len(seeds))
    typical = round(sum(seeds) / len(seeds))
    digits = re.search(r"(\d+)$", records.info.fid_name or "")
    samples = int(digits.group(1)) if digits else None
    return Resolution(limit - full, math.sqrt(variance / typical), typical, samples, z)


# ---------------------------------------------------------------------- export policies
def select_trial(records: StudyRecords, policy: str, **options: Any) -> TrialRecord:
    """The trial an export policy picks.

    Policies (``measure="fid"`` by default: confirmed trials, speed = :attr:`TrialRecord.speed`):

    * ``fastest_within``: the fastest trial faster than full compute whose quality is at most
      ``Q_full * (1 + delta)`` (``delta`` default 0.05), or ``Q_full + delta_abs`` when ``delta_abs`` is
      given. ``Q_full`` is the full-compute baseline's FID (or proxy).
    * ``best_at_speedup``: the best quality among trials with speed >= ``min_speedup``.
    * ``knee``: the front point farthest from the straight line joining the front's two extremes,
      with both axes normalised to [0, 1] over the front (needs 3 front points).

    ``measure="proxy"`` runs the same policies on the search proxy over all feasible completed trials
    (for studies that were not confirmed). Options set to None are ignored. Raises
    :class:`ConfigError` with what to relax when no trial is eligible.
    """
    options = {key: value for key, value in options.items() if value is not None}
    allowed = {"fastest_within": {"delta", "delta_abs"}, "best_at_speedup": {"min_speedup"}, "knee": set()}
    if policy not in allowed:
        raise ConfigError(f"export policy {policy!r} is unknown: use one of {', '.join(POLICIES)}")
    measure = options.pop("measure", "fid")
    if measure not in MEASURES:
        raise ConfigError(f"export measure {measure!r} is unknown: use fid or proxy")
    unknown = sorted(set(options) - allowed[policy])
    if unknown:
        raise ConfigError(
            f"option {unknown[0]!r} does not apply to policy {policy}: "
            f"it takes {', '.join(sorted(allowed[policy])) or 'no options'}"
        )
    candidates = _candidates(records, measure)
    if not candidates:
        if measure == "fid":
            raise ConfigError(
                f"study {records.name!r} has no FID-confirmed trials: run the confirmation stage "
                "(autofr-search on the same study) or export with export.measure=proxy"
            )
        raise ConfigError(f"study {records.name!r} has no completed feasible trials: run autofr-search first")
    name = "FID" if measure == "fid" else "proxy"

    def quality(trial: TrialRecord) -> float:
        return trial.quality(measure)

    if policy == "fastest_within":
        return _fastest_within(records, candidates, measure, options)

    if policy == "best_at_speedup":
        if "min_speedup" not in options:
            raise ConfigError("policy best_at_speedup needs export.min_speedup (e.g. export.min_speedup=1.5)")
        min_speedup = _number(options, "min_speedup")
        eligible = [t for t in candidates if t.speed >= min_speedup]
        if not eligible:
            fastest = max(t.speed for t in candidates)
            raise ConfigError(
                f"no trial reaches speedup {min_speedup:g}x (fastest: {fastest:.3g}x): lower export.min_speedup"
            )
        return min(eligible, key=lambda t: (quality(t), -t.speed, t.number))

    points = [(t.speed, quality(t)) for t in candidates]
    front = sorted((candidates[i] for i in pareto_front(points)), key=lambda t: t.speed)
    if len(front) < 3:
        raise ConfigError(
            f"policy knee needs 3 trials on the speed-{name} front, the study has {len(front)}: "
            "confirm more trials or use export.policy=fastest_within"
        )
    return knee_point(front, lambda t: (t.speed, quality(t)))


def _fastest_within(records: StudyRecords, candidates: list[TrialRecord], measure: str, options: dict) -> TrialRecord:
    """The fastest candidate faster than full compute within the allowance: ``delta`` / ``delta_abs``
    when given, else the study's target (``search.target``, paired per trial where recorded)."""
    name = "FID" if measure == "fid" else "proxy"
    reference = full_compute_fid(records) if measure == "fid" else _full_compute_proxy(records)
    if "delta_abs" in options or "delta" in options or measure != "fid":
        if reference is None:
            raise ConfigError(
                f"study {records.name!r} has no full-compute {name} to compare with: "
                "confirm the baseline or use export.policy=best_at_speedup"
            )
        if "delta_abs" in options:
            limit, allowance = (
                reference + _number(options, "delta_abs"),
                f"full compute {reference:.4g} + {options['delta_abs']:g}",
            )
        else:
            delta = _number(options, "delta", 0.05)
            limit, allowance = reference * (1.0 + delta), f"full compute {reference:.4g} * (1 + {delta:g})"

        def limit_of(trial: TrialRecord) -> float | None:
            return limit

        hint = "raise export.delta or export.delta_abs"
    else:
        target = study_target(records)
        if target.limit(reference) is None:
            raise ConfigError(
                f"study {records.name!r} has no full-compute FID to compare with: "
                "confirm the baseline or use export.policy=best_at_speedup"
            )
        limit, allowance = target.limit(reference), f"{target.describe()}, {reference:.4g}"

        def limit_of(trial: TrialRecord) -> float | None:
            return target_limit(records, trial)

        hint = "relax the target (export.delta=0.1, or search.target when searching)"
    # full compute itself is never the answer, whatever its timing noise says
    eligible = [
        t
        for t in candidates
        if t.speed > 1.0 and not t.origin.is_full_compute and t.quality(measure) <= (limit_of(t) or -math.inf)
    ]
    if not eligible:
        best = min((t for t in candidates if t.speed > 1.0), key=lambda t: t.quality(measure), default=None)
        closest = f" (best faster trial: {best.quality(measure):.4g})" if best is not None else ""
        raise ConfigError(
            f"no trial faster than full compute has {name} <= {limit:.4g} ({allowance}){closest}: {hint}"
        )
    return max(eligible, key=lambda t: (t.speed, -t.quality(measure), -t.number))


def fastest_within_target(records: StudyRecords, trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The fastest of ``trials`` faster than full compute whose confirmed FID is within the study's
    target (full compute itself aside); ties go to the earlier trial. The one rule of "within target"
    over confirmed points that the answer, the summary and bench share."""
    within = [t for t in trials if t.speed > 1.0 and not t.origin.is_full_compute and within_target(records, t)]
    return sorted(within, key=lambda t: -t.speed)[0] if within else None


def estimated_within(records: StudyRecords, trials: Iterable[TrialRecord], level: int) -> list[TrialRecord]:
    """Without confirmation: the ``trials`` predicted faster than full compute whose FID difference to full
    compute at ``level`` samples (adaptive fidelity, paired at the study's seed) keeps the estimate within the
    study's target, full compute's own estimate being the reference (empty without one)."""
    baseline = records.full_compute()
    full = baseline.fid_estimate if baseline is not None else None
    if full is None:
        return []
    limit = study_target(records).limit(full)
    return [
        t
        for t in trials
        if level in t.fidelity_deltas and full + t.fidelity_deltas[level] <= limit and t.search_speedup > 1
    ]


def fastest_estimated_within(trials: Iterable[TrialRecord], level: int, limit_delta: float) -> float:
    """During the search: the highest predicted speedup among trials whose FID difference to full compute
    at ``level`` samples is within the target's ``limit_delta`` (0.0 when none is). A trial no faster
    than this cannot be the answer, so adaptive fidelity does not climb for it."""
    return max(
        (
            t.predicted_speedup or 0.0
            for t in trials
            if level in t.fidelity_deltas and t.fidelity_deltas[level] <= limit_delta
        ),
        default=0.0,
    )


@dataclass(frozen=True)
class Spread:
    """A value and its range over repeated measurements (``count`` of them; ``low``/``high`` None when
    fewer than two were paired)."""

    value: float
    low: float | None = None
    high: float | None = None
    count: int = 1

    @classmethod
    def of(cls, value: float, samples: Sequence[float]) -> Spread:
        if len(samples) < 2:
            return cls(value, None, None, len(samples))
        return cls(value, min(samples), max(samples), len(samples))

    def to_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "count": self.count}


@dataclass(frozen=True)
class Margin:
    """How the chosen schedule compares with ``other``: the speed ratio (chosen over other; per timing
    repeat where both were timed in the same interleaved run) and the FID difference (chosen minus
    other; per seed both were scored at)."""

    other: TrialRecord
    speed: Spread
    fid: Spread

    @classmethod
    def between(cls, chosen: TrialRecord, other: TrialRecord) -> Margin:
        mine, theirs = chosen.confirmation, other.confirmation
        repeats = []
        if mine is not None and theirs is not None and len(mine.speedup_repeats) == len(theirs.speedup_repeats):
            repeats = [a / b for a, b in zip(mine.speedup_repeats, theirs.speedup_repeats) if b > 0]
        seeds = []
        if mine is not None and theirs is not None:
            seeds = [
                value - theirs.fid_seeds[seed] for seed, value in mine.fid_seeds.items() if seed in theirs.fid_seeds
            ]
        return cls(other, Spread.of(chosen.speed / other.speed, repeats), Spread.of(chosen.fid - other.fid, seeds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial": self.other.number,
            "label": self.other.display_label,
            "speed_ratio": self.speed.to_dict(),
            "fid_difference": self.fid.to_dict(),
        }


@dataclass(frozen=True)
class StudyAnswer:
    """The study's answer, computed once from its records: the fastest confirmed schedule within the
    target (:attr:`chosen`, what ``autofr-export`` writes by default; None with :attr:`problem` saying
    why), the fastest hand-set reference and the fastest peer within the target, the fastest searched
    schedule when a reference wins, and the margins with their spread over FID seeds and timing
    repeats. The summary, ``autofr-export``, MLflow and bench format it; none decides anything itself.
    """

    target: QualityTarget
    chosen: TrialRecord | None
    problem: str | None = None
    full_compute: TrialRecord | None = None
    fastest_reference: TrialRecord | None = None
    fastest_searched: TrialRecord | None = None
    fastest_peer: TrialRecord | None = None
    peers_confirmed: bool = False
    confirmed: bool = False
    resolution: Resolution | None = None  # can the target be told apart at the study's sample count?

    @classmethod
    def of(cls, records: StudyRecords, chosen: TrialRecord | None = None) -> StudyAnswer:
        """The answer of ``records``; ``chosen`` replaces the default pick (an export policy's choice),
        and the others are then measured against it."""
        target, problem = study_target(records), None
        confirmed = records.confirmed()
        if chosen is None and confirmed:
            try:
                chosen = select_default(records)
            except ConfigError as error:
                problem = str(error)
        others = [t for t in confirmed if chosen is None or t.number != chosen.number]
        return cls(
            target=target,
            chosen=chosen,
            problem=problem,
            full_compute=records.full_compute(),
            fastest_reference=fastest_within_target(records, (t for t in others if t.is_reference)),
            fastest_searched=fastest_within_target(
                records, (t for t in others if not t.is_reference and not t.is_peer)
            ),
            fastest_peer=fastest_within_target(records, (t for t in others if t.is_peer)),
            peers_confirmed=any(t.is_peer for t in confirmed),
            confirmed=bool(confirmed),
            resolution=resolution(records),
        )

    @property
    def reference_wins(self) -> bool:
        return self.chosen is not None and self.chosen.is_reference

    @property
    def over_reference(self) -> Margin | None:
        """The chosen schedule against the fastest hand-set reference within the target."""
        if self.chosen is None or self.fastest_reference is None:
            return None
        return Margin.between(self.chosen, self.fastest_reference)

    @property
    def over_searched(self) -> Margin | None:
        """When a reference wins: it against the fastest searched schedule within the target."""
        if self.chosen is None or self.fastest_searched is None:
            return None
        return Margin.between(self.chosen, self.fastest_searched)

    @property
    def over_peer(self) -> Margin | None:
        """The chosen schedule against the fastest peer within the target (a ratio below 1: the peer is faster)."""
        if self.chosen is None or self.fastest_peer is None:
            return None
        return Margin.between(self.chosen, self.fastest_peer)

    @property
    def deciding(self) -> list[int]:
        """The trials that decided the answer: full compute, the chosen one and those it is measured against."""
        points = (self.full_compute, self.chosen, self.fastest_reference, self.fastest_searched, self.fastest_peer)
        return sorted({t.number for t in points if t is not None})

    def lines(self) -> list[str]:
        """What the chosen schedule beat, in plain words (empty without a chosen schedule)."""
        chosen = self.chosen
        if chosen is None:
            return []
        lines = []
        if chosen.is_reference:
            lines.append(
                f"a hand-set baseline wins: {chosen.display_label} ({chosen.speed:.2f}x) is the fastest "
                "confirmed schedule within the target"
            )
            if self.fastest_searched is not None:
                best = self.fastest_searched
                lines.append(
                    f"the fastest searched schedule within the target is trial {best.number} at {best.speed:.2f}x, "
                    f"{chosen.speed / best.speed:.2f}x slower"
                )
            else:
                lines.append("no searched schedule was confirmed within the target")
        elif self.fastest_reference is not None:
            best = self.fastest_reference
            lines.append(
                f"beats the fastest hand-set baseline within the target, {best.display_label} "
                f"({best.speed:.2f}x), by {chosen.speed / best.speed:.2f}x"
            )
        else:
            lines.append("no hand-set baseline faster than full compute was confirmed within the target")
        peer = self.fastest_peer
        if peer is not None and peer.speed > chosen.speed:
            lines.append(
                f"a peer is faster: {peer.label} ({peer.speed:.2f}x) is within the target, "
                f"{peer.speed / chosen.speed:.2f}x faster than this schedule"
            )
        elif peer is not None:
            lines.append(
                f"beats the fastest peer within the target, {peer.label} ({peer.speed:.2f}x), "
                f"by {chosen.speed / peer.speed:.2f}x"
            )
        elif self.peers_confirmed:
            lines.append("no peer faster than full compute was confirmed within the target")
        if self.resolution is not None and not self.resolution.resolved:
            lines.append(self.resolution.describe())
        return lines

    def metrics(self) -> dict[str, float]:
        """Numbers for a tracking run: the chosen speed and FID, and each margin with its range."""
        metrics: dict[str, float] = {}
        if self.chosen is None:
            return metrics
        metrics["answer.speedup"] = self.chosen.speed
        if math.isfinite(self.chosen.fid):
            metrics["answer.fid"] = self.chosen.fid
        for name, margin in (("reference", self.over_reference), ("peer", self.over_peer)):
            if margin is None:
                continue
            for part, spread in (("speed_ratio", margin.speed), ("fid_difference", margin.fid)):
                metrics[f"answer.over_{name}.{part}"] = spread.value
                if spread.low is not None:
                    metrics[f"answer.over_{name}.{part}_low"] = spread.low
                    metrics[f"answer.over_{name}.{part}_high"] = spread.high
        return metrics

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (export provenance, bench results)."""

        def point(trial: TrialRecord | None) -> dict[str, Any] | None:
            if trial is None:
                return None
            return {
                "trial": trial.number,
                "label": trial.display_label,
                "origin": trial.origin.value,
                "speed": trial.speed,
                "fid": trial.fid,
            }

        margins = {
            "over_reference": self.over_reference,
            "over_searched": self.over_searched,
            "over_peer": self.over_peer,
        }
        return {
            "target": self.target.describe(),
            "chosen": point(self.chosen),
            "problem": self.problem,
            "fastest_reference": point(self.fastest_reference),
            "fastest_searched": point(self.fastest_searched),
            "fastest_peer": point(self.fastest_peer),
            **{name: margin.to_dict() if margin is not None else None for name, margin in margins.items()},
            "deciding": self.deciding,
            "resolution": None
            if self.resolution is None
            else {
                "resolved": self.resolution.resolved,
                "allowance": self.resolution.allowance,
                "noise": self.resolution.noise,
                "seeds": self.resolution.seeds,
                "samples": self.resolution.samples,
                "samples_needed": self.resolution.samples_needed,
            },
        }


def select_default(records: StudyRecords) -> TrialRecord:
    """What ``autofr-export`` picks by default: the fastest confirmed schedule within the target."""
    return select_trial(records, "fastest_within")


def knee_point(front: Sequence, coordinates: Callable = lambda point: point):
    """The member of ``front`` farthest from the line joining its extremes (axes normalised to [0, 1]).

    ``coordinates(member) -> (speed, quality)``; speed is maximised, quality minimised. Ties go to the
    faster member.
    """
    xy = [coordinates(member) for member in front]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    normalised = [((x - min(xs)) / span_x, (y - min(ys)) / span_y) for x, y in xy]
    slowest = min(range(len(xy)), key=lambda i: (xs[i], ys[i]))
    fastest = max(range(len(xy)), key=lambda i: (xs[i], -ys[i]))
    (x0, y0), (x1, y1) = normalised[slowest], normalised[fastest]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0

    def distance(i: int) -> float:
        x, y = normalised[i]
        return abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length

    best = max(range(len(xy)), key=lambda i: (distance(i), xs[i]))
    return front[best]


def _candidates(records: StudyRecords, measure: str) -> list[TrialRecord]:
    """What an export policy chooses from: schedules (a peer is no schedule, so it is never picked)."""
    if measure == "fid":
        return schedules(records.confirmed())
    return [t for t in schedules(records.feasible()) if math.isfinite(t.quality("proxy"))]


def _full_compute_proxy(records: StudyRecords) -> float | None:
    baseline = records.full_compute()
    if baseline is None:
        return None
    value = baseline.quality("proxy")
    return value if math.isfinite(value) else None


def _number(options: dict, key: str, default: float | None = None) -> float:
    value = options.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"export.{key}={value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"export.{key}={value!r} must be a finite number >= 0")
    return number
