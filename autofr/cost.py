"""Cost model: MACs per unit, and the speedup a schedule predicts from them.

MACs are *measured* with ``torch.utils.flop_counter`` on one forward pass at the run's input shape
(batch 1), so they include everything a unit really executes. Attention is counted through the math
SDPA backend, whose matmuls the counter sees on every device.

The predicted speedup of a schedule is ``full MACs / executed MACs`` where

    executed = sum over steps the network runs of (model MACs - sum of MACs of units reused at that step)
    full     = num_inference_steps * model MACs

An outer unit (a block, the stack) costs the MACs of its blocks; where it reuses, its inner units do
not run, so only the outermost reused unit at a step is subtracted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from autofr.errors import ScheduleError, UnsupportedModelError
from autofr.inputs import batched_inputs, capture_inputs, example_inputs  # noqa: F401  (public here too)
from autofr.reuse._outputs import first_input, shape_of
from autofr.reuse.units import ReusableUnit, discover_units, resolve_denoiser, unit_parents
from autofr.schedule import ReuseSchedule, StepPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCost:
    """MACs of one denoiser forward (batch 1) and of each reusable unit inside it (every level)."""

    total_macs: int
    unit_macs: dict[str, int]
    sample_shape: tuple[int, ...]
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)  # enclosing units of each unit

    @property
    def reusable_fraction(self) -> float:
        """Share of the forward's MACs that sits in reusable units (the most reuse can save)."""
        outermost = [name for name, macs in self.unit_macs.items() if not self.parents.get(name)]
        return sum(self.unit_macs[name] for name in outermost) / max(1, self.total_macs)

    def plan(self, schedule: ReuseSchedule) -> StepPlan:
        """The schedule unrolled over this model's units (nesting included)."""
        return schedule.plan(list(self.unit_macs), self.parents)


def measure_cost(
    pipe_or_model,
    units: list[ReusableUnit] | None = None,
    sample_size: int | tuple[int, int] | None = None,
    inputs: dict | None = None,
    protocol=None,
) -> ModelCost:
    """Measure MACs of one forward and of each unit; fills ``unit.macs`` and caches per input shape.

    The inputs are ``inputs``, else built from the config (:func:`autofr.inputs.example_inputs`),
    else, for a pipeline and an evaluation ``protocol``, captured from one pipeline call
    (:func:`autofr.inputs.capture_inputs`). Call it before a schedule is applied (hooks would change
    what runs).
    """
    model = resolve_denoiser(pipe_or_model)
    units = units if units is not None else discover_units(model)
    if inputs is None:
        try:
            inputs = example_inputs(model, sample_size)
        except UnsupportedModelError:
            if protocol is None or isinstance(pipe_or_model, torch.nn.Module):
                raise
            inputs = capture_inputs(pipe_or_model, protocol)
    try:
        shape = shape_of(first_input((), inputs))
    except ScheduleError:
        shape = None
    cache = model.__dict__.setdefault("_autofr_cost_cache", {})
    key = (shape, tuple(unit.name for unit in units))
    if key in cache:
        cost = cache[key]
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        prefix = type(model).__name__ + "."
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(**inputs, return_dict=False)
        per_module = {key[len(prefix) :]: sum(ops.values()) // 2 for key, ops in counter.get_flop_counts().items()}
        unit_macs = {}
        for unit in units:
            if unit.level != "sublayer":
                unit_macs[unit.name] = sum(int(per_module.get(path, 0)) for path in unit.blocks)
                continue
            path = unit.name + ".conv1" if unit.mode == "conv1" else unit.name
            unit_macs[unit.name] = int(per_module.get(path, 0))
        cost = ModelCost(int(counter.get_total_flops() // 2), unit_macs, shape, unit_parents(units))
        cache[key] = cost
        logger.debug(
            "measured %s: %.3g MMACs per forward, %.0f%% in reusable units",
            type(model).__name__,
            cost.total_macs / 1e6,
            100 * cost.reusable_fraction,
        )
    for unit in units:
        unit.macs = cost.unit_macs[unit.name]
    return cost


def executed_macs(plan: StepPlan, cost: ModelCost) -> int:
    """MACs (batch 1) that a schedule executes over a whole sampling run."""
    total = 0
    for step in range(plan.num_steps):
        if plan.run[step]:
            total += cost.total_macs - sum(cost.unit_macs[name] for name in plan.reused_at(step))
    return total


def predicted_speedup(schedule: ReuseSchedule, cost: ModelCost, baseline_steps: int | None = None) -> float:
    """Full-compute MACs over the schedule's executed MACs.

    ``baseline_steps`` (default: the schedule's own step count) sets the full-compute reference, so a
    30-step schedule can be compared with a 50-step baseline.
    """
    plan = cost.plan(schedule)
    steps = baseline_steps if baseline_steps is not None else schedule.num_inference_steps
    return steps * cost.total_macs / max(1, executed_macs(plan, cost))


def calibrate_latency(
    pipe_or_model,
    inputs: dict,
    units: list[ReusableUnit] | None = None,
    repeats: int = 3,
) -> tuple[float, dict[str, float]]:
    """Time one forward and each unit inside it once per repeat (median): the latency model.

    Returns ``(forward_seconds, unit_seconds)`` at the given inputs (use the search's real batch,
    classifier-free guidance doubling included). A reused resnet unit saves its ``conv1`` and
    everything before it; other units save their whole module; an outer unit saves the time from its
    first block's start to its last block's end.
    """
    import statistics
    import time

    model = resolve_denoiser(pipe_or_model)
    units = units if units is not None else discover_units(model)
    device = next(model.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    starts: dict[str, float] = {}
    samples: dict[str, list[float]] = {u.name: [] for u in units}
    handles = []
    for unit in units:
        first, last = (
            (unit.block_modules[0], unit.block_modules[-1]) if unit.block_modules else (unit.cached_module,) * 2
        )
        name = unit.name

        def pre(module, args, name=name):
            sync()
            starts[name] = time.perf_counter()

        def post(module, args, output, name=name):
            sync()
            samples[name].append(time.perf_counter() - starts[name])

        handles += [first.register_forward_pre_hook(pre), last.register_forward_hook(post)]
    forwards = []
    try:
        with torch.no_grad():
            model(**inputs)  # warm-up
            for values in samples.values():
                values.clear()
            for _ in range(repeats):
                sync()
                began = time.perf_counter()
                model(**inputs)
                sync()
                forwards.append(time.perf_counter() - began)
    finally:
        for handle in handles:
            handle.remove()
    unit_seconds = {name: statistics.median(values) for name, values in samples.items() if values}
    forward = statistics.median(forwards)
    # What reusing really saves, per level: a forward with every unit of the level reusing, timed
    # with the hooks installed, against the forward. It prices what a reused unit still runs (the
    # hooks, residual adds, a resnet's tail) and the timer's own overhead; each unit's share follows
    # its own measured time.
    for level in {unit.level for unit in units}:
        names = [unit.name for unit in units if unit.level == level and unit.name in unit_seconds]
        timed = sum(unit_seconds[name] for name in names)
        saved = forward - _reusing_forward_seconds(model, inputs, level, repeats, sync)
        scale = min(max(saved, 0.0), forward) / timed if timed > 0 else 0.0
        for name in names:
            unit_seconds[name] *= scale
    return forward, unit_seconds


def _reusing_forward_seconds(model, inputs: dict, level: str, repeats: int, sync) -> float:
    """Median seconds of a forward in which every unit of ``level`` reuses its cache (hooks on)."""
    import statistics
    import time

    from autofr.reuse.hooks import apply_schedule, remove_schedule

    apply_schedule(model, ReuseSchedule.uniform(model, 2, interval=2, levels=(level,)))
    seconds = []
    try:
        with torch.no_grad():
            for _ in range(repeats + 1):  # a bare model: odd calls reuse what even calls cached
                model(**inputs)
                sync()
                began = time.perf_counter()
                model(**inputs)
                sync()
                seconds.append(time.perf_counter() - began)
    finally:
        remove_schedule(model)
    return statistics.median(seconds[1:])
