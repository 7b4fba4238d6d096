"""Feature-reuse hooks: what is reused, when, and how it is undone.

``apply_schedule(pipe_or_model, schedule)`` registers, per module instance, through diffusers'
``HookRegistry`` (classes are never changed):

* one :class:`DenoiserHook` on the denoiser: it knows the step index, skips the network where the
  mixing weight is 0, and mixes the output with the jump score (see :mod:`autofr.schedule`);
* one :class:`UnitHook` per reusable unit that reuses at some step: at its compute steps the unit runs as usual (its output
  is cached if a later step will reuse it); at its other steps the cached value is used and only the
  cheap, timestep-dependent part is recomputed (see the kinds in :mod:`autofr.reuse.units`);
* for resnet units, a :class:`Conv1CaptureHook` on ``conv1`` that caches its output;
* one :class:`~autofr.reuse.block_hook.BlockHook` per block of every outer unit (a block span or the
  whole stack) that reuses at some step: it skips the span with its cached residual (see
  :mod:`autofr.reuse.block_hook`). Consecutive block units with one schedule form one span.

The step clock. Applied to a pipeline, the scheduler's ``set_timesteps`` (called once at the start
of every diffusers pipeline call) and ``step`` are wrapped on the instance, signatures kept: the
first starts a run and checks the step count, the second advances the step. Every denoiser call
between two scheduler steps belongs to one step, so pipelines that call the denoiser twice per step
(true classifier-free guidance) work; each call is a *branch* with its own caches and jump score,
named by the pipeline's ``cache_context(name)`` where it uses one (Flux, Wan, Qwen-Image, ...) and
by its order within the step otherwise. A bare model (no scheduler) counts one step per call and
resets after ``num_inference_steps`` calls and whenever the batch shape changes at a step other
than 0; ``reset_schedule_state(model)`` resets it by hand. Steps and branches are plain Python
values, so the hot path has no host-device synchronisation.

Compiled models (:mod:`autofr.reuse.compiled`): every module with a hook in it gets a per-instance
``compile`` that compiles only its hook-free parts, and modules compiled before the schedule came are
recompiled that way, so the decisions above always run eagerly around compiled work.

``remove_schedule`` removes every hook and wrapper and gives the original modules back, compiled as
they were asked to be.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from autofr.errors import ScheduleError
from autofr.reuse import _outputs
from autofr.reuse.accounting import ReuseAccounting
from autofr.reuse.block_hook import BlockHook, BlockSpan
from autofr.reuse.compiled import CompiledRegions, recompile
from autofr.reuse.unit_hook import Conv1CaptureHook, StepClock, UnitHook
from autofr.reuse.units import LEVELS, ReusableUnit, discover_units, model_fingerprint, resolve_denoiser, unit_parents
from autofr.schedule import ReuseSchedule, StepPlan

try:  # diffusers hands cache_context(name) to every StateManager of a stateful hook
    from diffusers.hooks.hooks import BaseState, StateManager
except ImportError:  # pragma: no cover - diffusers without per-context hook state
    BaseState, StateManager = object, object

logger = logging.getLogger(__name__)

HOOK_NAME = "autofr_reuse"
_BLOCK_HOOK_NAME = "autofr_reuse_block"
_CAPTURE_HOOK_NAME = "autofr_reuse_capture"
_SESSION_ATTRIBUTE = "_autofr_session"


class _NoState(BaseState):
    def reset(self, *args, **kwargs) -> None:
        pass


class _ContextName(StateManager):
    """Receives the name a pipeline gives a denoiser call with ``cache_context(name)``."""

    def __init__(self) -> None:
        super().__init__(_NoState)
        self.name = None

    def set_context(self, context) -> None:  # diffusers >= 0.40: a CacheContext or None
        self.name = None if context is None else getattr(context, "name", context)

    def _set_context(self, name) -> None:  # older diffusers: the name
        self.name = name

    def reset(self, *args, **kwargs) -> None:
        self.name = None


class DenoiserHook(ModelHook):
    """Knows the step and branch, skips the network where lambda is 0, and mixes scores."""

    _is_stateful = True

    def __init__(
        self,
        schedule: ReuseSchedule,
        plan: StepPlan,
        clock: StepClock,
        unit_hooks: list[UnitHook],
        spans: list[BlockSpan] = (),
        reported: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.schedule = schedule
        self.plan = plan
        self.clock = clock
        self.unit_hooks = unit_hooks
        self.spans = list(spans)
        self.num_steps = plan.num_steps
        self.mixing_on = schedule.mixing is not None
        self.context = _ContextName()
        self.keyframes: dict[Any, tuple] = {}  # branch -> (jump score, output it came in)
        self.bare_steps: dict[Any, int] = {}  # bare model: next step of each branch
        self.bare_finished: set = set()
        self.batch_shape: Any = None
        # what the accounting reports: every sub-layer unit, and the outer units the schedule names
        if reported is None:
            reported = [n for n in plan.unit_compute if n in schedule.units or n in {h.name for h in unit_hooks}]
        self.accounting = ReuseAccounting.empty(schedule.describe(), plan, reported)

    def reset_state(self, module):
        clock = self.clock
        clock.step = clock.calls_in_step = 0
        clock.driven = False
        self.keyframes.clear()
        self.bare_steps.clear()
        self.bare_finished.clear()
        self.batch_shape = None
        for hook in self.unit_hooks:
            hook.caches.clear()
        for span in self.spans:
            span.clear()
        return module

    def copy_cached_outputs(self) -> None:
        """Caches copy what they keep (CUDA graphs overwrite a compiled region's outputs at its next replay)."""
        for hook in self.unit_hooks:
            hook.copy_on_store = True
        for span in self.spans:
            span.copy_outputs = True

    def begin_call(self, driven: bool = False) -> None:
        """Start a new sampling run (at the start of every pipeline call, or by hand)."""
        if self.clock.step != 0 or self.bare_steps:
            logger.warning(
                "the previous sampling run stopped at step %d of %d; starting a new run",
                max([self.clock.step, *self.bare_steps.values()]),
                self.num_steps,
            )
        self.reset_state(None)
        self.clock.driven = driven
        self.accounting.begin_run()
        for counter in (*self.unit_hooks, *self.spans):
            counter.computed = counter.reused = 0

    def end_step(self) -> None:
        """The scheduler finished a step: the next denoiser calls belong to the next one."""
        clock = self.clock
        if not clock.driven:
            return
        clock.step += 1
        clock.calls_in_step = 0
        if clock.step >= self.num_steps:
            self._finish_run()

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        clock = self.clock
        name = self.context.name
        if clock.driven:
            step = clock.step
            branch = name if name is not None else clock.calls_in_step
            clock.calls_in_step += 1
        else:
            branch = name if name is not None else 0
            step = clock.step = self._bare_step(branch, _outputs.input_shape(args, kwargs))
        clock.branch = branch
        clock.call += 1
        plan = self.plan
        self.accounting.calls += 1
        keyframe = self.keyframes.get(branch)
        if not plan.run[step] and keyframe is not None:
            output = _outputs.with_sample(keyframe[1], keyframe[0])
            self.accounting.skipped += 1
        else:
            output = self.fn_ref.original_forward(*args, **kwargs)
            if self.mixing_on:
                score = _outputs.sample_of(output)
                if plan.full_keyframe[step] or keyframe is None:
                    self.keyframes[branch] = (score, output)
                else:
                    weight = plan.mixing_weight[step]
                    if weight < 1.0:
                        output = _outputs.with_sample(output, _outputs.lerp(keyframe[0], score, weight))
        if not clock.driven:
            self._bare_advance(branch, step)
        return output

    # ------------------------------------------------------------------ bare models: one step per call
    def _bare_step(self, branch, shape) -> int:
        step = self.bare_steps.get(branch, 0)
        if step == 0:
            if branch in self.bare_finished or (not self.bare_steps and self.batch_shape is not None):
                self.begin_call()  # a bare model run back to back: a new run starts after the last step
            self.batch_shape = shape
        elif shape != self.batch_shape:
            logger.warning(
                "input shape changed from %s to %s at step %d: starting a new run", self.batch_shape, shape, step
            )
            self.begin_call()
            self.batch_shape, step = shape, 0
        return step

    def _bare_advance(self, branch, step: int) -> None:
        step += 1
        if step < self.num_steps:
            self.bare_steps[branch] = step
            return
        self.bare_steps.pop(branch, None)
        self.bare_finished.add(branch)
        if not self.bare_steps:
            shape = self.batch_shape
            self._finish_run()
            self.batch_shape = shape  # so the next call starts a new run

    def _finish_run(self) -> None:
        self.accounting.end_run(self.unit_hooks, self.spans)
        self.reset_state(None)  # free cached features between runs


class _ReuseSession:
    """Everything one ``apply_schedule`` installed, so ``remove_schedule`` can undo it."""

    def __init__(self, denoiser, schedule, units, denoiser_hook, scheduler, originals, regions):
        self.denoiser = denoiser
        self.regions = regions  # where torch.compile requests on the denoiser are carried out
        self.schedule = schedule
        self.units = units
        self.denoiser_hook = denoiser_hook
        self.scheduler = scheduler
        self.originals = originals  # scheduler attribute -> what its instance __dict__ held (or None)

    @property
    def accounting(self) -> ReuseAccounting:
        return self.denoiser_hook.accounting


def apply_schedule(pipe_or_model, schedule: ReuseSchedule | str | Any, *, cost=None, rules=None) -> ReuseAccounting:
    """Install a reuse schedule on a diffusers pipeline or denoiser; returns its live accounting.

    ``schedule`` is a :class:`ReuseSchedule` or a path to a schedule JSON file. The schedule is fully
    validated against the model before anything is installed; a schedule already installed is
    replaced. ``cost`` (a :class:`autofr.cost.ModelCost`) lets the accounting report MACs. ``rules``
    (see :class:`autofr.reuse.units.UnitRules`) must be the unit rules the schedule was made with,
    unless they are attached to the model (:func:`autofr.reuse.attach_unit_rules`).
    """
    if not isinstance(schedule, ReuseSchedule):
        schedule = ReuseSchedule.from_json(schedule)
    denoiser = resolve_denoiser(pipe_or_model)
    if isinstance(getattr(denoiser, "_orig_mod", None), torch.nn.Module):  # torch.compile(model)'s wrapper
        raise ScheduleError(
            f"the denoiser is a torch.compile wrapper of {type(denoiser._orig_mod).__name__}, which hides its modules: "
            "compile it with model.compile() or compile_repeated_blocks() instead (before or after the schedule)"
        )
    units = discover_units(denoiser, rules, levels=LEVELS)
    names = [u.name for u in units]
    schedule.check_model(type(denoiser).__name__, model_fingerprint(denoiser, units), names)
    scheduler = None if isinstance(pipe_or_model, torch.nn.Module) else getattr(pipe_or_model, "scheduler", None)
    if schedule.scheduler and scheduler is not None and type(scheduler).__name__ != schedule.scheduler:
        logger.warning(
            "schedule was searched with %s; the pipeline uses %s", schedule.scheduler, type(scheduler).__name__
        )
    if getattr(denoiser, _SESSION_ATTRIBUTE, None) is not None:
        remove_schedule(denoiser)

    plan = schedule.plan(names, unit_parents(units))
    clock = StepClock()
    unit_hooks = []
    for unit in units:
        if unit.level != "sublayer" or not plan.unit_counts(unit.name)[1]:
            continue  # a unit that never reuses computes as usual: no hook (nothing to trace under compile)
        hook = UnitHook(unit, plan, clock)
        HookRegistry.check_if_exists_or_initialize(unit.module).register_hook(hook, HOOK_NAME)
        if unit.mode == "conv1":
            HookRegistry.check_if_exists_or_initialize(unit.module.conv1).register_hook(
                Conv1CaptureHook(hook), _CAPTURE_HOOK_NAME
            )
        unit_hooks.append(hook)
    spans = _block_spans(units, plan)
    for block, block_spans in _spans_by_block(spans).items():
        HookRegistry.check_if_exists_or_initialize(block).register_hook(
            BlockHook(block, block_spans, clock), _BLOCK_HOOK_NAME
        )
    reported = [u.name for u in units if u.level == "sublayer" or u.name in schedule.units]
    denoiser_hook = DenoiserHook(schedule, plan, clock, unit_hooks, spans, reported)
    registry = HookRegistry.check_if_exists_or_initialize(denoiser)
    registry.register_hook(denoiser_hook, HOOK_NAME)
    _invalidate_registry_cache(registry)
    if cost is not None:
        denoiser_hook.accounting.set_cost(cost)

    originals = {}
    if scheduler is not None and hasattr(scheduler, "set_timesteps"):
        originals = {name: scheduler.__dict__.get(name) for name in ("set_timesteps", "step")}
        bound_set_timesteps = scheduler.set_timesteps

        @functools.wraps(bound_set_timesteps)  # pipelines inspect its signature (sigmas=, timesteps=)
        def set_timesteps(*args, **kwargs):
            result = bound_set_timesteps(*args, **kwargs)
            calls = len(scheduler.timesteps)
            if calls != schedule.num_inference_steps:
                raise ScheduleError(
                    f"the schedule is for {schedule.num_inference_steps} steps but the pipeline runs {calls}: "
                    f"call it with num_inference_steps={schedule.num_inference_steps} or export a schedule for {calls} steps"
                )
            denoiser_hook.begin_call(driven=hasattr(scheduler, "step"))
            return result

        scheduler.set_timesteps = set_timesteps
        if hasattr(scheduler, "step"):
            bound_step = scheduler.step

            @functools.wraps(bound_step)
            def step(*args, **kwargs):
                result = bound_step(*args, **kwargs)
                denoiser_hook.end_step()
                return result

            scheduler.step = step
    hooked = [module for module in _hooked_modules(units, denoiser) if _holds_reuse_hook(module)]
    regions = CompiledRegions(denoiser, hooked, denoiser_hook.copy_cached_outputs)
    regions.install()
    session = _ReuseSession(denoiser, schedule, units, denoiser_hook, scheduler, originals, regions)
    setattr(denoiser, _SESSION_ATTRIBUTE, session)
    logger.info("applied reuse schedule to %s: %s", type(denoiser).__name__, schedule.describe())
    return denoiser_hook.accounting


def remove_schedule(pipe_or_model) -> None:
    """Remove an installed schedule; the model computes exactly as before. No-op if none is installed."""
    denoiser = resolve_denoiser(pipe_or_model)
    session = getattr(denoiser, _SESSION_ATTRIBUTE, None)
    if session is None:
        return
    compile_requests = session.regions.remove()  # before the hooks: compiled own work sits inside them
    for module in _hooked_modules(session.units, denoiser):
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in (HOOK_NAME, _CAPTURE_HOOK_NAME, _BLOCK_HOOK_NAME):
            registry.remove_hook(name, recurse=False)
        _drop_empty_registry(module)
    registry = getattr(denoiser, "_diffusers_hook", None)
    if registry is not None:
        _invalidate_registry_cache(registry)
    if session.scheduler is not None:
        for name, original in session.originals.items():
            if original is not None:
                setattr(session.scheduler, name, original)
            else:
                session.scheduler.__dict__.pop(name, None)
    delattr(denoiser, _SESSION_ATTRIBUTE)
    recompile(compile_requests)  # compiled as the user asked, now without hooks


def get_accounting(pipe_or_model) -> ReuseAccounting:
    """The accounting of the schedule installed on a pipeline or denoiser."""
    session = getattr(resolve_denoiser(pipe_or_model), _SESSION_ATTRIBUTE, None)
    if session is None:
        raise ScheduleError("no reuse schedule is applied to this model: call autofr.apply_schedule first")
    return session.accounting


def reset_schedule_state(pipe_or_model) -> None:
    """Start a new sampling run now (for hand-written sampling loops over a bare model)."""
    session = getattr(resolve_denoiser(pipe_or_model), _SESSION_ATTRIBUTE, None)
    if session is not None:
        session.denoiser_hook.begin_call()


# ---------------------------------------------------------------------- helpers
def _hooked_modules(units: list[ReusableUnit], denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    """Every module that may hold one of the schedule's hooks: the denoiser, the sub-layer units (and a
    resnet unit's ``conv1``) and the blocks of the outer units."""
    sublayers = [u for u in units if u.level == "sublayer"]
    conv1s = [u.module.conv1 for u in sublayers if u.mode == "conv1"]
    blocks = [module for u in units for module in u.block_modules]
    return [denoiser, *(u.module for u in sublayers), *conv1s, *blocks]


def _holds_reuse_hook(module: torch.nn.Module) -> bool:
    registry = getattr(module, "_diffusers_hook", None)
    return registry is not None and any(
        name in registry.hooks for name in (HOOK_NAME, _CAPTURE_HOOK_NAME, _BLOCK_HOOK_NAME)
    )


def _block_spans(units: list[ReusableUnit], plan: StepPlan) -> list[BlockSpan]:
    """The spans of the outer units that reuse at some step where they run: the stack is one span;
    consecutive blocks of one list with one schedule share one; every UNet stage is its own."""
    spans: list[BlockSpan] = []
    members: list[ReusableUnit] = []

    def close() -> None:
        if members:
            name = members[0].name
            modules = [module for unit in members for module in unit.block_modules]
            names = [unit.name for unit in members]
            spans.append(BlockSpan(name, members[0].mode, modules, plan.unit_compute[name], plan.keeps(name), names))
            members.clear()

    for unit in units:
        if unit.level == "sublayer":
            continue
        joins = (
            members
            and unit.level == "block"
            and unit.mode == "residual"
            and members[-1].level == "block"
            and members[-1].name.rsplit(".", 1)[0] == unit.name.rsplit(".", 1)[0]  # the same block list
            and plan.unit_compute[members[-1].name] == plan.unit_compute[unit.name]
        )
        if not joins:
            close()
        if plan.unit_counts(unit.name)[1]:
            members.append(unit)
        else:
            close()
    close()
    return spans


def _spans_by_block(spans: list[BlockSpan]) -> dict[torch.nn.Module, list[BlockSpan]]:
    """Block module -> the spans it belongs to, outermost first (the stack comes first in ``spans``)."""
    by_block: dict[torch.nn.Module, list[BlockSpan]] = {}
    for span in spans:
        for block in span.blocks:
            by_block.setdefault(block, []).append(span)
    return by_block


def _invalidate_registry_cache(registry) -> None:
    invalidate = getattr(registry, "invalidate_child_registries_cache", None)
    if invalidate is not None:
        invalidate()


def _drop_empty_registry(module: torch.nn.Module) -> None:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is not None and not registry.hooks:
        del module._diffusers_hook
        forward = module.__dict__.get("forward")
        if forward is not None and getattr(forward, "__func__", None) is type(module).forward:
            del module.__dict__["forward"]
