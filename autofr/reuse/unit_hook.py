"""The per-unit hook: compute or reuse one unit at each step (see the kinds in :mod:`autofr.reuse.units`).

A :class:`UnitHook` keeps one cache per branch (a ``cache_context`` name or the call's order within
its step) and per call within one forward (a module applied to both streams runs twice). At its
compute steps the unit runs as usual and its output is cached if a later step will reuse it; at its
other steps the cached value is used: the whole output (``output`` units), the branch added to the
current input (``residual`` units), or ``conv1``'s output fed to the rest of the resnet block
(``conv1`` units, cached by a :class:`Conv1CaptureHook` on ``conv1``). A cache that the model changed
in place (its tensors' version counters moved) is never reused: the unit computes instead, and its
later caches are copies.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers.hooks import ModelHook

from autofr.reuse import _outputs
from autofr.reuse.units import ReusableUnit
from autofr.schedule import StepPlan

logger = logging.getLogger(__name__)


class StepClock:
    """The step index and current branch shared by all hooks of one applied schedule."""

    __slots__ = ("step", "branch", "call", "calls_in_step", "driven")

    def __init__(self) -> None:
        self.step = 0
        self.branch: Any = 0  # cache_context name, or the call's order within its step
        self.call = 0  # id of the current denoiser call (a unit may run more than once per call)
        self.calls_in_step = 0
        self.driven = False  # True while the wrapped scheduler.step advances the steps


class UnitHook(ModelHook):
    """Computes or reuses one unit at each step; one cache per branch (and per call within a forward)."""

    _is_stateful = True

    def __init__(self, unit: ReusableUnit, plan: StepPlan, clock: StepClock) -> None:
        super().__init__()
        self.name, self.kind, self.mode = unit.name, unit.kind, unit.mode
        self.clock = clock
        self.compute = plan.unit_compute[unit.name]
        # Cache after computing at step i only if the unit reuses before it computes again.
        self.store = plan.keeps(unit.name)
        self.caches: dict[tuple, tuple] = {}  # (branch, occurrence) -> (value, tensor versions, output type)
        self.computed = 0
        self.reused = 0
        self.rescale = float(getattr(unit.module, "rescale_output_factor", 1.0)) if self.mode == "residual" else 1.0
        self.pending_key: tuple | None = None  # where Conv1CaptureHook stores conv1's output
        self.copy_on_store = False  # set once a caller is seen to modify a cached output in place
        self._call, self._occurrence = -1, 0

    def reset_state(self, module):
        self.caches.clear()
        return module

    def cache_bytes(self) -> int:
        return sum(_outputs.nbytes(entry[0]) for entry in self.caches.values())

    def keep(self, key: tuple, value: Any, output_type: type) -> None:
        if self.copy_on_store:
            value = _outputs.clone(value)
        self.caches[key] = (value, _outputs.tensor_versions(value), output_type)

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        clock = self.clock
        step = clock.step
        if clock.call != self._call:
            self._call, self._occurrence = clock.call, 0
        else:
            self._occurrence += 1
        key = (clock.branch, self._occurrence)
        if not self.compute[step]:
            entry = self.caches.get(key)
            if entry is not None and entry[1] == _outputs.tensor_versions(entry[0]):
                self.reused += 1
                return self._reuse(module, entry, args, kwargs)
            self._cannot_reuse(entry)
        self.computed += 1
        store = self.store[step] or not self.compute[step]
        if self.mode == "conv1":
            self.pending_key = key if store else None  # conv1's capture hook stores its output
            return self.fn_ref.original_forward(*args, **kwargs)
        output = self.fn_ref.original_forward(*args, **kwargs)
        if store:
            if self.mode == "residual":
                residual = _outputs.first_input(args, kwargs)
                if self.rescale != 1.0:
                    residual = residual / self.rescale
                self.keep(key, _outputs.subtract(_outputs.sample_of(output), residual), type(output))
            else:
                self.keep(key, output, type(output))
        return output

    def _reuse(self, module, entry, args, kwargs):
        value, _, output_type = entry
        if self.mode == "conv1":
            return _outputs.resnet_tail(module, value, args, dict(kwargs))
        if self.mode == "residual":
            residual = _outputs.first_input(args, kwargs)
            if self.rescale != 1.0:
                residual = residual / self.rescale
            return _outputs.like_type(output_type, _outputs.add(residual, value))
        return value

    def _cannot_reuse(self, entry) -> None:
        """No valid cache for this branch: compute now (correct, not faster) and say why once."""
        if entry is not None and not self.copy_on_store:
            self.copy_on_store = True
            logger.warning(
                "unit %s: the model changes this unit's output in place, so its cache is now copied", self.name
            )


class Conv1CaptureHook(ModelHook):
    """Caches a resnet block's ``conv1`` output into its :class:`UnitHook` when the plan says so."""

    def __init__(self, owner: UnitHook) -> None:
        super().__init__()
        self.owner = owner

    def post_forward(self, module, output):
        owner = self.owner
        if owner.pending_key is not None:
            owner.keep(owner.pending_key, output, torch.Tensor)
            owner.pending_key = None
        return output
