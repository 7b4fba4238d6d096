"""Reuse schedules: which unit computes at which step, and how scores are mixed.

The schedule format (``format_version`` 2; version-1 files load and apply unchanged)
------------------------------------------------------------------------------------
A sampling run has ``T = num_inference_steps`` denoiser calls, steps ``i = 0 .. T-1`` in the
pipeline's order (step 0 is pure noise).

*Per-unit compute steps.* Every reusable unit ``u`` (see :mod:`autofr.reuse.units`) computes at
the steps of its own set ``C_u`` and reuses its cached output at every other step:

* ``{"interval": M, "offset": o}`` gives ``C_u = {0} | {i >= o : (i - o) % M == 0}``;
* ``{"steps": [...]}`` gives ``C_u`` explicitly (step 0 is always added);
* a unit absent from ``units`` computes at every step (``M = 1``).

Step 0 always computes everything, so every cache is filled before it is read.

*Nested units* (version 2). Units come at three levels (:data:`autofr.reuse.units.LEVELS`): the
whole block stack (``stack``), one block or UNet stage (``transformer_blocks.3``, ``down_blocks.1``)
and the sub-layers inside blocks (version 1 knew only these). A unit *runs* at step ``i`` when the
network runs and every unit enclosing it computes at ``i``; where an outer unit reuses, nothing
inside it runs, whatever the inner schedules say. A unit that runs reuses the value cached the
last time it ran and computed. Version 2 adds the outer unit names; a version-1 file names only
sub-layers and means exactly what it meant.

*Full keyframes.* The steps at which *every* unit computes: ``K = intersection of all C_u``. At a
full keyframe the network output is the exact full-compute output; it becomes the *jump score*
``eps_key`` that later steps mix with. Step 0 is always a full keyframe.

*Score mixing* (FRDiff). With ``r = i / T`` and ``lambda(r) = clip((s * (r - b) + 2) / 4, 0, 1)``
(bias ``b``, slope ``s``; FRDiff uses ``b = 0.5, s = 30``):

* at a full keyframe the network runs and ``eps = eps_full`` (which becomes ``eps_key``);
* elsewhere, if ``lambda = 0`` the network is **not run** and ``eps = eps_key`` (reduced NFE);
* elsewhere, the network runs with feature reuse and ``eps = lambda * eps_FR + (1 - lambda) * eps_key``.

With mixing off, ``lambda = 1`` at every step: pure feature reuse, the network runs at every step.

*FRDiff's uniform setting* is every unit at interval ``M``, offset 0: then ``K = range(0, T, M)``,
exactly the reference code's keyframes, and the rule above is the paper's rule.

A schedule is tied to a model architecture (class name + fingerprint of unit names and parameter
shapes) and to a step count; applying it elsewhere raises :class:`~autofr.errors.ScheduleError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autofr.errors import ScheduleError

FORMAT_VERSION = 2
#: Every format this autofr reads.
READABLE_VERSIONS = (1, 2)

#: FRDiff's reference mixing parameters.
FRDIFF_MIXING_BIAS = 0.5
FRDIFF_MIXING_SLOPE = 30.0

MAX_SLOPE = 1000.0


@dataclass(frozen=True)
class Mixing:
    """FRDiff score mixing ``lambda(r) = clip((slope * (r - bias) + 2) / 4, 0, 1)``.

    Attributes:
        bias: where the ramp from reduced-NFE (lambda 0) to feature reuse (lambda 1) is centred, as a
            fraction of the run. Larger: more early steps skip the network (faster, coarser).
        slope: how steep the ramp is; the ramp spans ``r`` in ``[bias - 2/slope, bias + 2/slope]``.
    """

    bias: float = FRDIFF_MIXING_BIAS
    slope: float = FRDIFF_MIXING_SLOPE

    def weight(self, step: int, num_steps: int) -> float:
        r = step / num_steps
        return min(1.0, max(0.0, (self.slope * (r - self.bias) + 2.0) / 4.0))

    def validate(self) -> None:
        if not (isinstance(self.bias, (int, float)) and math.isfinite(self.bias) and -1.0 <= self.bias <= 2.0):
            raise ScheduleError(f"mixing bias {self.bias!r} is out of range: use a number in [-1, 2] (FRDiff: 0.5)")
        if not (isinstance(self.slope, (int, float)) and math.isfinite(self.slope) and 0 < self.slope <= MAX_SLOPE):
            raise ScheduleError(
                f"mixing slope {self.slope!r} is out of range: use a number in (0, {MAX_SLOPE:g}] (FRDiff: 30)"
            )


@dataclass(frozen=True)
class UnitSchedule:
    """When one unit computes: every ``interval`` steps from ``offset``, or at explicit ``steps``."""

    interval: int = 1
    offset: int = 0
    steps: tuple[int, ...] | None = None

    def compute_mask(self, num_steps: int) -> list[bool]:
        if self.steps is not None:
            mask = [False] * num_steps
            for step in self.steps:
                mask[step] = True
        else:
            mask = [i >= self.offset and (i - self.offset) % self.interval == 0 for i in range(num_steps)]
        mask[0] = True
        return mask

    def validate(self, name: str, num_steps: int) -> None:
        if self.steps is not None:
            if any(not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < num_steps for s in self.steps):
                raise ScheduleError(f"unit {name!r}: steps must be integers in [0, {num_steps - 1}]")
            return
        if (
            not isinstance(self.interval, int)
            or isinstance(self.interval, bool)
            or not 1 <= self.interval <= num_steps
        ):
            raise ScheduleError(f"unit {name!r}: interval {self.interval!r} must be an integer in [1, {num_steps}]")
        if (
            not isinstance(self.offset, int)
            or isinstance(self.offset, bool)
            or not 0 <= self.offset < max(1, self.interval)
        ):
            raise ScheduleError(f"unit {name!r}: offset {self.offset!r} must be an integer in [0, interval)")

    def to_dict(self) -> dict:
        if self.steps is not None:
            return {"steps": list(self.steps)}
        return {"interval": self.interval, "offset": self.offset}


@dataclass(frozen=True)
class StepPlan:
    """A schedule unrolled over its steps (plain Python lists, read in the hot loop)."""

    num_steps: int
    run: list[bool]  # does the network run at this step
    full_keyframe: list[bool]  # does every unit compute at this step
    mixing_weight: list[float]  # lambda at this step (1.0 with mixing off)
    unit_compute: dict[str, list[bool]]  # per unit: computes (True) or reuses (False) at this step
    unit_runs: dict[str, list[bool]]  # per unit: the network runs and no enclosing unit reuses

    def unit_counts(self, name: str) -> tuple[int, int]:
        """(computed, reused) calls of a unit over the run (steps where it runs)."""
        mask, runs = self.unit_compute[name], self.unit_runs[name]
        computed = sum(1 for i in range(self.num_steps) if runs[i] and mask[i])
        reused = sum(1 for i in range(self.num_steps) if runs[i] and not mask[i])
        return computed, reused

    def keeps(self, name: str) -> list[bool]:
        """Per step: must the unit keep what it computes there? Yes when a later step where it runs
        reuses before it computes again (a unit that never reuses keeps nothing)."""
        compute, runs = self.unit_compute[name], self.unit_runs[name]
        keep = [False] * self.num_steps
        reuse_ahead = False
        for step in range(self.num_steps - 1, -1, -1):
            if not runs[step]:
                continue
            if compute[step]:
                keep[step] = reuse_ahead
                reuse_ahead = False
            else:
                reuse_ahead = True
        return keep

    def reused_at(self, step: int) -> list[str]:
        """The units that run and reuse at ``step`` (their inner units do not run at all)."""
        return [name for name, mask in self.unit_compute.items() if self.unit_runs[name][step] and not mask[step]]


@dataclass
class ReuseSchedule:
    """A per-unit feature-reuse schedule with optional score mixing, for one model and step count.

    See the module docstring for the exact semantics. Build one with :meth:`uniform`, by hand, or
    from a search; save it with :meth:`to_json`, load it with :meth:`from_json`, apply it with
    :func:`autofr.apply_schedule`.
    """

    model_class: str
    fingerprint: str
    num_inference_steps: int
    units: dict[str, UnitSchedule] = field(default_factory=dict)
    mixing: Mixing | None = None
    scheduler: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def full_compute(cls, model, num_inference_steps: int, **kwargs) -> ReuseSchedule:
        """The schedule that computes everything at every step (the baseline)."""
        return cls.uniform(model, num_inference_steps, interval=1, mixing=False, **kwargs)

    @classmethod
    def uniform(
        cls,
        model,
        num_inference_steps: int,
        interval: int,
        mixing: bool | Mixing | None = False,
        scheduler: str | None = None,
        provenance: dict | None = None,
        levels: tuple[str, ...] = ("sublayer",),
    ) -> ReuseSchedule:
        """FRDiff's uniform-M setting: every unit computes every ``interval`` steps (keyframes
        ``range(0, T, interval)``). ``mixing=True`` uses FRDiff's reference mixing (b=0.5, s=30).
        ``levels`` picks the units that reuse: FRDiff's sub-layers (default), ``("block",)`` every
        block, ``("stack",)`` the whole block stack (every other unit computes at every step)."""
        from autofr.reuse.units import discover_units, model_fingerprint, resolve_denoiser

        denoiser = resolve_denoiser(model)
        units = discover_units(denoiser, levels=tuple(levels))
        kind = f"uniform M={interval}" + (" +mixing" if mixing else "")
        if tuple(levels) != ("sublayer",):
            kind += f" ({', '.join(levels)})"
        schedule = cls(
            model_class=type(denoiser).__name__,
            fingerprint=model_fingerprint(denoiser),
            num_inference_steps=int(num_inference_steps),
            units={u.name: UnitSchedule(interval=interval) for u in units},
            mixing=_as_mixing(mixing),
            scheduler=scheduler if scheduler is not None else _scheduler_name(model),
            provenance=dict(provenance or {}, kind=kind),
        )
        schedule.validate()
        return schedule

    # ------------------------------------------------------------------ semantics
    def plan(self, unit_names: list[str], parents: Mapping[str, tuple[str, ...]] | None = None) -> StepPlan:
        """Unroll the schedule over its steps for a model whose units are ``unit_names``; ``parents``
        gives each unit's enclosing units (:func:`autofr.reuse.units.unit_parents`; none: flat)."""
        steps = self.num_inference_steps
        every_step = [True] * steps
        unit_compute = {
            name: (self.units[name].compute_mask(steps) if name in self.units else every_step) for name in unit_names
        }
        full = [all(mask[i] for mask in unit_compute.values()) for i in range(steps)]
        if self.mixing is None:
            weight = [1.0] * steps
        else:
            weight = [self.mixing.weight(i, steps) for i in range(steps)]
        run = [full[i] or weight[i] > 0.0 for i in range(steps)]
        parents = parents or {}
        unit_runs = {}
        for name in unit_names:
            outer = [unit_compute[p] for p in parents.get(name, ()) if p in unit_compute]
            unit_runs[name] = [run[i] and all(mask[i] for mask in outer) for i in range(steps)]
        return StepPlan(steps, run, full, weight, unit_compute, unit_runs)

    def describe(self) -> str:
        """One line: steps, intervals, mixing."""
        intervals = sorted({u.interval for u in self.units.values() if u.steps is None})
        mixing = f"mixing b={self.mixing.bias:g} s={self.mixing.slope:g}" if self.mixing else "no mixing"
        explicit = [name for name, u in self.units.items() if u.steps is not None]
        keyframes = ""
        if explicit:
            counts = sorted({len(set(self.units[name].steps) | {0}) for name in explicit})
            keyframes = (
                f", explicit keyframes on {len(explicit)} unit(s) ({'/'.join(map(str, counts))} computed steps)"
            )
        return f"{self.num_inference_steps} steps, intervals {intervals or [1]}{keyframes}, {mixing}"

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Check ranges and types; raises :class:`ScheduleError` with what to fix."""
        steps = self.num_inference_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 10_000:
            raise ScheduleError(f"num_inference_steps {steps!r} must be an integer in [1, 10000]")
        for name, unit in self.units.items():
            unit.validate(name, steps)
        if self.mixing is not None:
            self.mixing.validate()

    def check_model(self, model_class: str, fingerprint: str, unit_names: list[str]) -> None:
        """Raise :class:`ScheduleError` unless this schedule fits a model with these identities."""
        if model_class != self.model_class:
            raise ScheduleError(
                f"schedule is for a {self.model_class} but the model is a {model_class}: export a schedule for this model"
            )
        unknown = sorted(set(self.units) - set(unit_names))
        if unknown:
            raise ScheduleError(
                f"schedule names {len(unknown)} unit(s) not in this model (e.g. {unknown[0]!r}): it was made for another architecture"
            )
        if fingerprint != self.fingerprint:
            raise ScheduleError(
                f"schedule fingerprint {self.fingerprint} does not match the model's {fingerprint}: "
                f"it was made for another architecture of {model_class}; search again for this model"
            )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "model": {"class_name": self.model_class, "fingerprint": self.fingerprint},
            "num_inference_steps": self.num_inference_steps,
            "scheduler": self.scheduler,
            "mixing": (
                {"enabled": True, "bias": self.mixing.bias, "slope": self.mixing.slope}
                if self.mixing is not None
                else {"enabled": False}
            ),
            "units": {name: unit.to_dict() for name, unit in self.units.items()},
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "schedule") -> ReuseSchedule:
        if not isinstance(data, Mapping):
            raise ScheduleError(f"{source}: expected a JSON object at the top level")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise ScheduleError(
                f"{source}: format_version {version!r} is not supported (this autofr reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}); re-export the schedule with this autofr"
            )
        try:
            model = data["model"]
            mixing_data = data.get("mixing") or {"enabled": False}
            mixing = None
            if mixing_data.get("enabled", False):
                mixing = Mixing(float(mixing_data["bias"]), float(mixing_data["slope"]))
            units = {}
            for name, unit in dict(data.get("units", {})).items():
                if "steps" in unit:
                    units[name] = UnitSchedule(steps=tuple(sorted(set(unit["steps"]))))
                else:
                    units[name] = UnitSchedule(interval=unit.get("interval", 1), offset=unit.get("offset", 0))
            schedule = cls(
                model_class=str(model["class_name"]),
                fingerprint=str(model["fingerprint"]),
                num_inference_steps=data["num_inference_steps"],
                units=units,
                mixing=mixing,
                scheduler=data.get("scheduler"),
                provenance=dict(data.get("provenance") or {}),
            )
        except KeyError as missing:
            raise ScheduleError(
                f"{source}: missing field {missing}; see the schedule format in autofr/schedule.py"
            ) from None
        except (TypeError, ValueError, AttributeError) as error:
            raise ScheduleError(
                f"{source}: malformed value ({error}); see the schedule format in autofr/schedule.py"
            ) from None
        try:
            schedule.validate()
        except ScheduleError as error:
            raise ScheduleError(f"{source}: {error}") from None
        return schedule

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the schedule atomically (a reader never sees half a file)."""
        from autofr.files import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> ReuseSchedule:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ScheduleError(f"schedule file {path} does not exist: check the path") from None
        except OSError as error:
            raise ScheduleError(f"cannot read schedule file {path}: {error.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ScheduleError(
                f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); fix or re-export it"
            ) from None
        return cls.from_dict(data, source=str(path))


def _as_mixing(mixing: bool | Mixing | None) -> Mixing | None:
    if mixing is True:
        return Mixing()
    if mixing is False or mixing is None:
        return None
    if isinstance(mixing, Mixing):
        return mixing
    raise ScheduleError(f"mixing must be True, False or a Mixing(bias, slope), not {mixing!r}")


def _scheduler_name(pipe_or_model) -> str | None:
    scheduler = getattr(pipe_or_model, "scheduler", None)
    return type(scheduler).__name__ if scheduler is not None else None
