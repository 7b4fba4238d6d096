"""The calibrated warm start: schedules read off one full-compute run, enqueued before the search.

One full-compute run on a few samples records, for every unit, how much the output it would cache
changes from one step to the next (``|o_t - o_{t-1}| / |o_{t-1}|``, averaged over the batch). A
group of units may reuse its output for ``K - 1`` steps when the change that accumulates over any
``K``-step window of its keyframe grid stays below a threshold; the group gets the largest such
``K`` (up to ``space.max_interval``). Several thresholds, a few step counts and mixing on or off give
the candidates; they sit near the front from the first trials, so the sampler starts there.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import torch

from autofr.config import SearchSettings
from autofr.evaluation import EvalProtocol, generate
from autofr.search.origin import Origin

logger = logging.getLogger(__name__)


@torch.no_grad()
def change_profile(pipe, protocol: EvalProtocol, units, steps: int) -> dict[str, list[float]]:
    """Per unit, the relative change of its cached output at each step after the first (full compute
    at ``steps`` steps, ``protocol.num_samples`` samples). Pipelines that call the denoiser twice a
    step (true CFG) are handled: each call is compared with the same call one step earlier."""
    outputs: dict[str, list[torch.Tensor]] = defaultdict(list)
    handles = []

    def recorder(name):
        def hook(module, args, output):
            value = output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output)
            outputs[name].append(value.detach().float().flatten(1).cpu())

        return hook

    for unit in units:
        handles.append(unit.cached_module.register_forward_hook(recorder(unit.name)))
    try:
        generate(pipe, protocol.replace(num_inference_steps=steps))
    finally:
        for handle in handles:
            handle.remove()
    profile = {}
    for name, calls in outputs.items():
        per_step = max(1, len(calls) // steps)
        changes = []
        for index in range(per_step, len(calls)):
            previous, current = calls[index - per_step], calls[index]
            if previous.shape != current.shape:
                continue
            norm = previous.norm(dim=1).clamp_min(1e-12)
            changes.append(float(((current - previous).norm(dim=1) / norm).mean()))
        # one value per step transition (averaging the calls within a step)
        profile[name] = [sum(changes[i : i + per_step]) / per_step for i in range(0, len(changes), per_step)]
    return profile


def group_intervals(
    profile: dict[str, list[float]], groups: dict[str, list[str]], threshold: float, max_interval: int, steps: int
) -> dict[str, int]:
    """Per group, the largest interval whose accumulated change within any keyframe window stays at
    or below ``threshold`` (1 when even two steps change too much)."""
    intervals = {}
    for group, names in groups.items():
        series = [profile[name] for name in names if name in profile and profile[name]]
        if not series:
            intervals[group] = 1
            continue
        length = min(len(s) for s in series)
        change = [sum(s[t] for s in series) / len(series) for t in range(length)]  # change[t]: step t -> t+1
        chosen = 1
        for interval in range(min(max_interval, steps), 1, -1):
            drift = max(sum(change[t0 : min(t0 + interval - 1, length)]) for t0 in range(0, steps, interval))
            if drift <= threshold:
                chosen = interval
                break
        intervals[group] = chosen
    return intervals


def calibrated_entries(
    space,
    pipe,
    protocol: EvalProtocol,
    units,
    step_counts: tuple[int, ...],
    thresholds: tuple[float, ...] = SearchSettings.calibrated_thresholds,
    mixing_options: tuple[bool, ...] = (False,),
) -> list[tuple[Origin, str, dict]]:
    """``(origin, label, params)`` of the calibrated schedules for ``space``: every threshold at every
    step count, with each of ``mixing_options`` (FRDiff's mixing when True) the space allows;
    duplicates and full compute are dropped."""
    entries, seen = [], set()
    for steps in step_counts:
        if steps not in space.steps:
            continue
        profile = change_profile(pipe, protocol, units, steps)
        for threshold in thresholds:
            intervals = group_intervals(profile, space.groups, threshold, space.max_interval, steps)
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
                entries.append(
                    (
                        Origin.CALIBRATED,
                        f"calibrated {threshold:g}, {steps} steps" + (" +mixing" if mixing else ""),
                        params,
                    )
                )
    logger.info("calibrated warm start: %d schedules", len(entries))
    return entries
