"""The coverage check of one denoiser class: discover units, schedule them, check the reuse.

Used by ``tests/reuse/test_coverage.py`` (one parametrised case per class) and by
``bench/coverage.py`` (which writes the coverage table into the README). A bare-model sampling
loop (``x <- x - 0.1 * model(x, t)``, a new timestep every step) runs:

1. without hooks (the reference);
2. with an interval-1 schedule: must be bit-identical to 1;
3. with FRDiff's uniform M=2 (no mixing): every unit must compute at the even steps and reuse at
   the odd ones (the accounting counts it), and the result must be finite;
4. with M=2 again: bit-identical to 3 (nothing leaks from one run into the next);
5. after ``remove_schedule``: bit-identical to 1, no hook left on any module.

Steps 3 and 4 run at every unit level the class has: the sub-layers, every block at M=2, and the
whole block stack at M=2 (a model without block lists has only the first).
"""

from __future__ import annotations

import inspect
from collections import Counter
from dataclasses import dataclass, field

import torch

import autofr
from autofr import ReuseSchedule
from autofr.cost import measure_cost
from autofr.reuse import discover_units
from autofr.reuse.units import LEVELS

STEPS = 4


@dataclass
class CoverageResult:
    class_name: str
    units_by_kind: dict[str, int] = field(default_factory=dict)
    levels: tuple[str, ...] = ()  # the unit levels checked
    reusable_share: float | None = None
    error: str | None = None
    cost_note: str | None = None  # why the MAC share could not be measured

    @property
    def passed(self) -> bool:
        return self.error is None


def _timestep(template, step: int, scale: float):
    value = scale * (1.0 - step / (STEPS + 1))
    if isinstance(template, torch.Tensor):
        if template.dtype.is_floating_point:
            return torch.full_like(template, value)
        return torch.full_like(template, int(round(value)))
    return value if isinstance(template, float) else int(round(value))


def _update(x, out):
    if isinstance(x, list):
        return [_update(a, b) for a, b in zip(x, out)]
    if isinstance(out, torch.Tensor) and out.shape == x.shape:
        return x - 0.1 * out
    if isinstance(out, torch.Tensor) and out.numel() >= x.numel():
        return x - 0.1 * out.reshape(-1)[: x.numel()].reshape(x.shape)
    return x * 0.9


def _prediction(output):
    if isinstance(output, (tuple, list)) and not isinstance(output, torch.Tensor):
        return output[0]
    return getattr(output, "sample", output)


@torch.no_grad()
def sample_loop(model, inputs: dict, sample_key: str, timestep_key: str, scale: float):
    kwargs = dict(inputs)
    if "return_dict" in inspect.signature(model.forward).parameters:
        kwargs["return_dict"] = False
    x = kwargs[sample_key]
    for step in range(STEPS):
        kwargs[sample_key] = x
        kwargs[timestep_key] = _timestep(inputs[timestep_key], step, scale)
        x = _update(x, _prediction(model(**kwargs)))
    return x


def _equal(a, b) -> bool:
    if isinstance(a, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return torch.equal(a, b)


def _finite(a) -> bool:
    if isinstance(a, list):
        return all(_finite(x) for x in a)
    return bool(torch.isfinite(a).all())


def _check_reuse_at_m2(model, loop, level: str) -> str | None:
    """M=2 on the units of one level: they reuse as planned, the result is finite, two runs agree."""
    schedule = ReuseSchedule.uniform(model, STEPS, interval=2, levels=(level,))
    accounting = autofr.apply_schedule(model, schedule)
    first = loop()
    expected = (STEPS + 1) // 2, STEPS // 2
    # a unit called k times per forward (one module applied to both streams) computes and reuses k times
    wrong = [
        name
        for name, count in accounting.units.items()
        if name in schedule.units
        and (
            count.reused == 0
            or count.computed % expected[0]
            or count.reused % expected[1]
            or count.computed // expected[0] != count.reused // expected[1]
        )
    ]
    if wrong:
        count = accounting.units[wrong[0]]
        return (
            f"M=2: {len(wrong)} unit(s) did not reuse as planned (e.g. {wrong[0]}: computed "
            f"{count.computed}, reused {count.reused}, planned {expected})"
        )
    if not _finite(first):
        return "M=2 gives NaN or inf"
    if not _equal(loop(), first):
        return "two consecutive M=2 runs differ"
    return None


def check_denoiser(
    class_name: str, model, inputs: dict, sample_key: str, timestep_key: str, scale: float, measure: bool = True
) -> CoverageResult:
    """Run the five checks of the module docstring; the result says what failed, if anything."""
    result = CoverageResult(class_name)
    try:
        units = discover_units(model)
    except autofr.UnsupportedModelError as error:
        result.error = f"unsupported: {error}"
        return result
    result.units_by_kind = dict(Counter(unit.kind for unit in units))

    def loop():
        return sample_loop(model, inputs, sample_key, timestep_key, scale)

    reference = loop()
    autofr.apply_schedule(model, ReuseSchedule.uniform(model, STEPS, interval=1, levels=LEVELS))
    if not _equal(loop(), reference):
        result.error = "interval-1 schedule is not bit-identical to the model without hooks"
        return result
    levels = [level for level in reversed(LEVELS) if discover_units(model, levels=(level,))]
    result.levels = tuple(levels)
    for level in levels:
        error = _check_reuse_at_m2(model, loop, level)
        if error:
            result.error = f"{level} level: {error}"
            return result
    autofr.remove_schedule(model)
    if not _equal(loop(), reference):
        result.error = "after remove_schedule the model does not compute as before"
        return result
    if any(hasattr(module, "_diffusers_hook") for module in model.modules()):
        result.error = "remove_schedule left a hook registry behind"
        return result
    if measure:  # the MAC share is informative (measured last: a failing counter must not disturb the checks)
        try:
            result.reusable_share = measure_cost(model, units, inputs=dict(inputs)).reusable_fraction
        except Exception as error:
            result.cost_note = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}"
    return result
