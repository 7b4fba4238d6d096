"""The calibrated warm start: schedules read off one full-compute run, enqueued before the search.

The study's change profile at a step count (:mod:`autofr.search.timing`: one full-compute run on a
few samples, stored with the study) gives, per group, how much the value it would cache changes from
one step to the next (``|v_t - v_{t-1}| / |v_{t-1}|``). A group may reuse its value for ``K - 1``
steps when the change that accumulates over any ``K``-step window of its keyframe grid stays below a
threshold; the group gets the largest such ``K`` (up to ``space.max_interval``). Several thresholds,
a few step counts and mixing on or off give the candidates; they sit near the front from the first
trials, so the sampler starts there.

MagCache's rule (its magnitude ratios, thresholds 0.06 / 0.12 / 0.24, at most 3 skips in a row, the
first 20% of steps computed) is enqueued the same way where the space has the stack and calibrated
timing: the peer's own decision, as an autofr schedule the search has to improve on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from autofr.config import SearchSettings
from autofr.search.origin import Origin
from autofr.search.timing import StepProfile

logger = logging.getLogger(__name__)

MAGCACHE_THRESHOLDS = (0.06, 0.12, 0.24)


def group_intervals(
    change: dict[str, list[float]], groups, threshold: float, max_interval: int, steps: int
) -> dict[str, int]:
    """Per group, the largest interval whose accumulated change within any keyframe window stays at
    or below ``threshold`` (1 when even two steps change too much). ``change[group][t]`` is the change
    from step ``t`` to ``t + 1``."""
    intervals = {}
    for group in groups:
        series = change.get(group) or []
        if not series:
            intervals[group] = 1
            continue
        length = len(series)
        chosen = 1
        for interval in range(min(max_interval, steps), 1, -1):
            drift = max(sum(series[t0 : min(t0 + interval - 1, length)]) for t0 in range(0, steps, interval))
            if drift <= threshold:
                chosen = interval
                break
        intervals[group] = chosen
    return intervals


def calibrated_entries(
    space,
    profiles: Callable[[int], StepProfile],
    step_counts: tuple[int, ...],
    thresholds: tuple[float, ...] = SearchSettings.calibrated_thresholds,
    mixing_options: tuple[bool, ...] = (False,),
) -> list[tuple[Origin, str, dict]]:
    """``(origin, label, params)`` of the calibrated schedules for ``space``: every threshold at every
    step count, with each of ``mixing_options`` (FRDiff's mixing when True) the space allows;
    duplicates and full compute are dropped. Uniform intervals on the innermost level of the space (the
    sub-layers; the outer levels start from MagCache's rule, DeepCache and the block split), so only
    where the space has uniform timing."""
    entries, seen = [], set()
    if space.timing == "calibrated":
        return entries
    groups = space.groups_at(space.levels[-1])
    for steps in step_counts:
        if steps not in space.steps:
            continue
        profile = profiles(steps)
        change = {group: series[1:] for group, series in profile.change.items()}  # step t -> t + 1
        for threshold in thresholds:
            intervals = group_intervals(change, groups, threshold, space.max_interval, steps)
            if all(k == 1 for k in intervals.values()):
                continue
            for mixing in mixing_options:
                if mixing and space.mixing == "off" or not mixing and space.mixing == "on":
                    continue
                params = space.params_for(intervals, mixing, steps)
                key = tuple(sorted(params.items()))
                if key in seen:
                    continue
                seen.add(key)
                label = f"calibrated {threshold:g}, {steps} steps" + (" +mixing" if mixing else "")
                entries.append((Origin.CALIBRATED, label, params))
    logger.info("calibrated warm start: %d schedules", len(entries))
    return entries


def magcache_entries(space, thresholds: tuple[float, ...] = MAGCACHE_THRESHOLDS) -> list[tuple[Origin, str, dict]]:
    """MagCache's rule at each threshold, at the model's step count, as hand-set references."""
    entries = []
    for threshold in thresholds:
        params = space.magcache_params(threshold)
        if params is not None:
            entries.append((Origin.MAGCACHE_RULE, f"MagCache's rule {threshold:g}", params))
    return entries
