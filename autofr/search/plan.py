"""What a study will cost before it runs, and the device-hour budget that bounds it.

:func:`estimate` turns the study's settings and one timed batch of full compute into samples,
device-hours and wall time per stage for a number of workers (``autofr-plan`` prints it;
``autofr-search`` prints it at its start). The model of each stage:

* **set-up**, in every worker: full compute's reference samples for the proxy (and for the top
  adaptive-fidelity level);
* **trials**: ``n_trials`` times the proxy's samples at the cost of a schedule (:data:`SCHEDULE_COST`
  of full compute's), plus the adaptive-fidelity climbs (:data:`CLIMBS`: the share of trials expected
  at each higher level);
* **peers**: each peer setting on the proxy's samples, and their timing run (one batch, repeated);
* **confirmation**: full compute and ``confirm_max`` candidates at FID-N and ``fid_seeds`` seeds;
* **timing**: the confirmed points and full compute on one batch, ``timing_repeats`` times, on one
  quiet device (the only stage that does not spread over the workers).

:class:`DeviceBudget` (``search.max_device_hours``) fits the plan to the budget before the study
starts, cutting in this order: the confirmation set (down to full compute and one candidate), the
FID seeds (down to one), the top adaptive-fidelity level, then the trials. While the study runs, the
trials stop once their share is spent and the confirmation set is sized to what is left; what was cut
is stored with the study (``StudyInfo.budget``) and printed in the summary.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

#: a schedule's sampling cost as a share of full compute's: the trials and the confirmed points are
#: mostly schedules near 2x (fitted on the default run, 2026-12-07: 9.8 min measured, 10.2 planned)
SCHEDULE_COST = 0.5
#: the share of trials expected to climb to each adaptive-fidelity level above the first
CLIMBS = (0.35, 0.15, 0.05)


#: FID-N is split into at least this many sample slices per seed (each a work item any worker takes)
SLICES_PER_SEED = 16


def fid_slice_size(fid_samples: int, batch_size: int, configured: int | None = None) -> int:
    """Samples per FID work item: ``search.fid_slice``, else whole batches, at least two, about
    :data:`SLICES_PER_SEED` slices per seed (FID-2000 in batches of 4: 128 samples, 16 slices)."""
    if configured:
        return int(configured)
    batches = max(2, math.ceil(fid_samples / SLICES_PER_SEED / batch_size))
    return batches * batch_size


@dataclass(frozen=True)
class StagePlan:
    """One stage: samples drawn, device seconds, and whether it spreads over the workers."""

    name: str
    samples: int
    device_s: float
    parallel: bool = True
    per_worker: bool = False  # every worker does it once (the set-up)

    def wall_s(self, workers: int) -> float:
        if self.per_worker or not self.parallel:
            return self.device_s / (workers if self.per_worker else 1)
        return self.device_s / workers


@dataclass(frozen=True)
class StudyPlan:
    stages: tuple[StagePlan, ...]
    workers: int
    seconds_per_sample: float
    device: str

    @property
    def device_hours(self) -> float:
        return sum(stage.device_s for stage in self.stages) / 3600

    @property
    def wall_s(self) -> float:
        return sum(stage.wall_s(self.workers) for stage in self.stages)

    def stage(self, name: str) -> StagePlan:
        return next(stage for stage in self.stages if stage.name == name)

    def lines(self) -> list[str]:
        """The plan as a table: per stage samples, device-hours and wall time."""
        rows = [
            f"plan: {self.workers} worker{'s' if self.workers != 1 else ''} on {self.device}; full compute "
            f"{self.seconds_per_sample * 1000:.1f} ms per sample",
            f"  {'stage':<14}{'samples':>10}{'device-h':>10}{'wall':>10}",
        ]
        for stage in self.stages:
            note = "  (one quiet device)" if not stage.parallel else ("  (every worker)" if stage.per_worker else "")
            rows.append(
                f"  {stage.name:<14}{stage.samples:>10,}{stage.device_s / 3600:>10.3f}"
                f"{_duration(stage.wall_s(self.workers)):>10}{note}"
            )
        total = sum(stage.samples for stage in self.stages)
        rows.append(f"  {'total':<14}{total:>10,}{self.device_hours:>10.3f}{_duration(self.wall_s):>10}")
        return rows


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(config, seconds_per_sample: float, n_peers: int, device: str, workers: int | None = None) -> StudyPlan:
    """The plan of ``config`` (a :class:`~autofr.config.StudyConfig`) at ``seconds_per_sample`` of full compute."""
    search, quality = config.search, config.quality
    workers = int(workers or search.workers)
    per = float(seconds_per_sample)
    proxy, fid_n, batch = quality.proxy_samples, quality.fid_samples, quality.batch_size
    levels = _fidelity_levels(config)
    setup = proxy + (levels[-1] if len(levels) > 1 else 0)
    climbs = sum(share * (level - proxy) for share, level in zip(CLIMBS, levels[1:]))
    trial_samples = round(search.n_trials * (proxy + climbs))
    peer_samples = n_peers * proxy
    peer_timing = (n_peers + n_peers // 4 + 1) * max(1, search.timing_repeats) * min(batch, proxy) if n_peers else 0
    confirm = search.confirm_max if search.confirm_max is not None else max(10, search.n_trials // 4)
    seeds = max(1, search.fid_seeds)
    references = seeds * fid_n
    candidates = max(0, confirm - 1) * seeds * fid_n
    repeats = search.timing_repeats if search.measure_speed else 0
    per_call = min(batch, proxy)
    timed_points = confirm * repeats * per_call  # the points themselves ...
    timed_full = (confirm // 4 + 1) * repeats * per_call  # ... and full compute around each block of 4
    stages = (
        StagePlan("set-up", setup * workers, setup * workers * per, per_worker=True),
        StagePlan("trials", trial_samples, trial_samples * per * SCHEDULE_COST),
        StagePlan("peers", peer_samples, peer_samples * per * SCHEDULE_COST),
        StagePlan("peer timing", peer_timing, peer_timing * per * SCHEDULE_COST, parallel=False),
        StagePlan("confirmation", references + candidates, (references + candidates * SCHEDULE_COST) * per),
        StagePlan(
            "timing", timed_points + timed_full, (timed_points * SCHEDULE_COST + timed_full) * per, parallel=False
        ),
    )
    return StudyPlan(tuple(s for s in stages if s.samples), workers, per, device)


def _fidelity_levels(config) -> tuple[int, ...]:
    """The adaptive-fidelity sample counts the trials may climb to (just the proxy's N when off)."""
    from autofr.search.fidelity import FidelityPlan
    from autofr.search.measures import REAL_DATA_PROXY

    search, quality = config.search, config.quality
    if search.fidelity == "off" or quality.proxy != REAL_DATA_PROXY or quality.threshold is not None:
        return (quality.proxy_samples,)
    chosen = search.fidelity if isinstance(search.fidelity, tuple) else None
    return tuple(FidelityPlan.default(quality.proxy_samples, quality.fid_samples, chosen).levels)


@dataclass
class DeviceBudget:
    """``search.max_device_hours`` over the whole study (see the module docstring).

    ``changes``: the ``search.*`` settings the fit cut (applied by every worker); ``cuts``: what was
    cut, in words; ``trials_s``: the device seconds the trials may spend."""

    max_device_hours: float
    seconds_per_sample: float
    changes: dict[str, Any]
    cuts: list[str]
    trials_s: float

    @classmethod
    def fit(cls, config, plan: StudyPlan, n_peers: int) -> DeviceBudget:
        """Cut ``config``'s plan until it fits ``search.max_device_hours``."""
        limit = float(config.search.max_device_hours)
        changes: dict[str, Any] = {}
        cuts: list[str] = []

        def planned(**change):
            trial = dataclasses.replace(config, search=dataclasses.replace(config.search, **{**changes, **change}))
            return estimate(trial, plan.seconds_per_sample, n_peers, plan.device, plan.workers)

        current = plan
        search = config.search
        confirm = search.confirm_max if search.confirm_max is not None else max(10, search.n_trials // 4)
        while current.device_hours > limit and confirm > 2:
            confirm -= 1
            changes["confirm_max"] = confirm
            current = planned()
        if "confirm_max" in changes:
            cuts.append(f"confirmation set: {changes['confirm_max']} points (search.confirm_max)")
        if current.device_hours > limit and search.fid_seeds > 1:
            changes["fid_seeds"] = 1
            current = planned()
            cuts.append("FID seeds: 1 (search.fid_seeds)")
        levels = _fidelity_levels(config)
        while current.device_hours > limit and len(levels) > 1:
            levels = levels[:-1]
            changes["fidelity"] = tuple(levels) if len(levels) > 1 else "off"
            current = planned()
        if "fidelity" in changes:
            cuts.append(f"adaptive fidelity: {changes['fidelity']} (search.fidelity)")
        n_trials = search.n_trials
        while current.device_hours > limit and n_trials > 2:
            n_trials = max(2, int(n_trials * 0.8))
            changes["n_trials"] = n_trials
            current = planned()
        if "n_trials" in changes:
            cuts.append(f"trials: {n_trials} (search.n_trials)")
        trials_s = limit * 3600 - sum(s.device_s for s in current.stages if s.name != "trials")
        return cls(limit, plan.seconds_per_sample, changes, cuts, max(trials_s, current.stage("trials").device_s))

    def apply(self, config):
        """``config`` with the fit's cuts."""
        if not self.changes:
            return config
        return dataclasses.replace(config, search=dataclasses.replace(config.search, **self.changes))

    def to_info(self) -> dict[str, Any]:
        return {
            "max_device_hours": self.max_device_hours,
            "seconds_per_sample": self.seconds_per_sample,
            "changes": {k: list(v) if isinstance(v, tuple) else v for k, v in self.changes.items()},
            "cuts": list(self.cuts),
            "trials_s": self.trials_s,
        }

    @classmethod
    def from_info(cls, data: dict[str, Any]) -> DeviceBudget:
        changes = {k: tuple(v) if isinstance(v, list) else v for k, v in (data.get("changes") or {}).items()}
        return cls(
            float(data["max_device_hours"]),
            float(data["seconds_per_sample"]),
            changes,
            list(data.get("cuts") or ()),
            float(data["trials_s"]),
        )

    def confirmations(self, config, spent_s: float, n_candidates: int) -> int:
        """How many candidates (full compute first) the rest of the budget confirms and times."""
        per = self.seconds_per_sample
        quality, search = config.quality, config.search
        seeds = max(1, search.fid_seeds)
        left = self.max_device_hours * 3600 - spent_s - seeds * quality.fid_samples * per
        repeats = search.timing_repeats if search.measure_speed else 0
        timing_each = 1.25 * repeats * min(quality.batch_size, quality.proxy_samples) * per * SCHEDULE_COST
        each = seeds * quality.fid_samples * per * SCHEDULE_COST + timing_each
        fits = 1 + max(0, math.floor(left / each)) if each > 0 else n_candidates
        limit = search.confirm_max if search.confirm_max is not None else n_candidates
        return max(1, min(fits, limit, n_candidates))
