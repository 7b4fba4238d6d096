"""Feature-reuse hooks: what is reused, when, and how it is undone.

``apply_schedule(pipe_or_model, schedule)`` registers, per module instance, through diffusers'
``HookRegistry`` (classes are never changed):

* one :class:`DenoiserHook` on the denoiser: it keeps the step index, skips the network where the
  mixing weight is 0, and mixes the output with the jump score (see :mod:`autofr.schedule`);
* one :class:`UnitHook` per reusable unit: at its compute steps the unit runs as usual (its output
  is cached if a later step will reuse it); at its other steps the cached value is used and only the
  cheap, timestep-dependent part is recomputed;
* for resnet units, a :class:`Conv1CaptureHook` on ``conv1`` that caches its output.

The step index is a plain Python int advanced once per denoiser call, so the hot path has no
host-device synchronisation. It resets at the start of every pipeline call: when applied to a
pipeline, the scheduler's ``set_timesteps`` (called once at the start of every diffusers pipeline
call) is wrapped on the instance to reset the state and check the step count; for a bare model the
state resets after ``num_inference_steps`` calls and whenever the batch shape changes at a step
other than 0. ``reset_schedule_state(model)`` resets it by hand.

``remove_schedule`` removes every hook and the wrapper and gives the original modules back.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

from autofr.errors import ScheduleError
from autofr.reuse.accounting import ReuseAccounting
from autofr.reuse.units import ReusableUnit, discover_units, model_fingerprint, resolve_denoiser
from autofr.schedule import ReuseSchedule, StepPlan

logger = logging.getLogger(__name__)

HOOK_NAME = "autofr_reuse"
_CAPTURE_HOOK_NAME = "autofr_reuse_capture"
_SESSION_ATTRIBUTE = "_autofr_session"


class StepClock:
    """The step index shared by all hooks of one applied schedule."""

    __slots__ = ("step",)

    def __init__(self) -> None:
        self.step = 0


class UnitHook(ModelHook):
    """Computes or reuses one unit at each step (see the kinds in :mod:`autofr.reuse.units`)."""

    _is_stateful = True

    def __init__(self, unit: ReusableUnit, plan: StepPlan, clock: StepClock) -> None:
        super().__init__()
        self.name = unit.name
        self.kind = unit.kind
        self.clock = clock
        self.compute = plan.unit_compute[unit.name]
        # Cache after computing at step i only if the unit reuses before it computes again.
        self.store = _store_mask(self.compute, plan.run)
        self.cached: torch.Tensor | None = None
        self.computed = 0
        self.reused = 0
        if self.kind == "attention":
            self.rescale = float(getattr(unit.module, "rescale_output_factor", 1.0))

    def reset_state(self, module):
        self.cached = None
        return module

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        step = self.clock.step
        if self.compute[step]:
            self.computed += 1
            if self.kind == "resnet":
                # conv1's capture hook stores its output when self.store[step]
                return self.fn_ref.original_forward(*args, **kwargs)
            output = self.fn_ref.original_forward(*args, **kwargs)
            if self.store[step]:
                self.cached = self._branch(output, args, kwargs)
            return output
        self.reused += 1
        if self.kind == "resnet":
            return _resnet_tail(module, self.cached, *args, **kwargs)
        if self.kind in ("attention", "transformer"):
            residual = _first_input(args, kwargs)
            if self.kind == "attention" and self.rescale != 1.0:
                residual = residual / self.rescale
            output = residual + self.cached
            if self.kind == "transformer":
                return _wrap_like_transformer(output, kwargs)
            return output
        return self.cached  # DiT / PixArt branch output

    def _branch(self, output, args, kwargs) -> torch.Tensor:
        """What to cache: the branch without the residual for residual units, the output otherwise."""
        if self.kind == "attention":
            residual = _first_input(args, kwargs)
            return output - (residual / self.rescale if self.rescale != 1.0 else residual)
        if self.kind == "transformer":
            sample = output[0] if isinstance(output, tuple) else output.sample
            return sample - _first_input(args, kwargs)
        return output


class Conv1CaptureHook(ModelHook):
    """Caches a resnet block's ``conv1`` output into its :class:`UnitHook` when the plan says so."""

    def __init__(self, owner: UnitHook) -> None:
        super().__init__()
        self.owner = owner

    def post_forward(self, module, output):
        owner = self.owner
        if owner.store[owner.clock.step]:
            owner.cached = output
        return output


class DenoiserHook(ModelHook):
    """Advances the step index, skips the network where lambda is 0, and mixes scores."""

    _is_stateful = True

    def __init__(self, schedule: ReuseSchedule, plan: StepPlan, clock: StepClock, unit_hooks: list[UnitHook]) -> None:
        super().__init__()
        self.schedule = schedule
        self.plan = plan
        self.clock = clock
        self.unit_hooks = unit_hooks
        self.num_steps = plan.num_steps
        self.mixing_on = schedule.mixing is not None
        self.keyframe_score: torch.Tensor | None = None
        self.keyframe_output: Any = None
        self.batch_shape: tuple | None = None
        self.accounting = ReuseAccounting.empty(schedule, [h.name for h in unit_hooks])

    def reset_state(self, module):
        self.clock.step = 0
        self.keyframe_score = None
        self.keyframe_output = None
        self.batch_shape = None
        for hook in self.unit_hooks:
            hook.cached = None
        return module

    def begin_call(self) -> None:
        """Start a new sampling run (called at the start of every pipeline call)."""
        if self.clock.step != 0:
            logger.warning("the previous sampling run stopped at step %d of %d; starting a new run",
                           self.clock.step, self.num_steps)
        self.reset_state(None)
        self.accounting.begin_run()
        for hook in self.unit_hooks:
            hook.computed = hook.reused = 0

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        step = self.clock.step
        sample = _first_input(args, kwargs)
        if step == 0:
            if self.batch_shape is not None or self.accounting.calls:
                # A bare model run back to back: a new run starts after the last step.
                self.begin_call()
            self.batch_shape = sample.shape
        elif sample.shape != self.batch_shape:
            logger.warning("input shape changed from %s to %s at step %d: starting a new run",
                           tuple(self.batch_shape), tuple(sample.shape), step)
            self.begin_call()
            self.batch_shape = sample.shape
            step = 0
        plan = self.plan
        self.accounting.calls += 1
        if not plan.run[step]:
            output = self._rebuild(self.keyframe_output, self.keyframe_score, kwargs)
            self.accounting.skipped += 1
        else:
            output = self.fn_ref.original_forward(*args, **kwargs)
            if self.mixing_on:
                score = _sample_of(output)
                if plan.full_keyframe[step]:
                    self.keyframe_score = score
                    self.keyframe_output = output
                else:
                    weight = plan.mixing_weight[step]
                    if weight < 1.0:
                        output = self._rebuild(output, torch.lerp(self.keyframe_score, score, weight), kwargs)
        self._advance(step)
        return output

    def _advance(self, step: int) -> None:
        step += 1
        if step == self.num_steps:
            self.accounting.end_run(self.unit_hooks)
            for hook in self.unit_hooks:  # free cached features between runs
                hook.cached = None
            self.keyframe_score = self.keyframe_output = None
            step = 0
        self.clock.step = step

    @staticmethod
    def _rebuild(template, score: torch.Tensor, kwargs):
        if kwargs.get("return_dict", True) is False or isinstance(template, tuple):
            return (score,)
        return type(template)(sample=score)


class _ReuseSession:
    """Everything one ``apply_schedule`` installed, so ``remove_schedule`` can undo it."""

    def __init__(self, denoiser, schedule, units, denoiser_hook, scheduler, original_set_timesteps):
        self.denoiser = denoiser
        self.schedule = schedule
        self.units = units
        self.denoiser_hook = denoiser_hook
        self.scheduler = scheduler
        self.original_set_timesteps = original_set_timesteps

    @property
    def accounting(self) -> ReuseAccounting:
        return self.denoiser_hook.accounting


def apply_schedule(pipe_or_model, schedule: ReuseSchedule | str | Any, *, cost=None) -> ReuseAccounting:
    """Install a reuse schedule on a diffusers pipeline or denoiser; returns its live accounting.

    ``schedule`` is a :class:`ReuseSchedule` or a path to a schedule JSON file. The schedule is fully
    validated against the model before anything is installed; a schedule already installed is
    replaced. ``cost`` (a :class:`autofr.cost.ModelCost`) lets the accounting report MACs.
    """
    if not isinstance(schedule, ReuseSchedule):
        schedule = ReuseSchedule.from_json(schedule)
    denoiser = resolve_denoiser(pipe_or_model)
    units = discover_units(denoiser)
    names = [u.name for u in units]
    schedule.check_model(type(denoiser).__name__, model_fingerprint(denoiser, units), names)
    scheduler = None if isinstance(pipe_or_model, torch.nn.Module) else getattr(pipe_or_model, "scheduler", None)
    if schedule.scheduler and scheduler is not None and type(scheduler).__name__ != schedule.scheduler:
        logger.warning("schedule was searched with %s; the pipeline uses %s", schedule.scheduler,
                       type(scheduler).__name__)
    if getattr(denoiser, _SESSION_ATTRIBUTE, None) is not None:
        remove_schedule(denoiser)

    plan = schedule.plan(names)
    clock = StepClock()
    unit_hooks = []
    for unit in units:
        hook = UnitHook(unit, plan, clock)
        HookRegistry.check_if_exists_or_initialize(unit.module).register_hook(hook, HOOK_NAME)
        if unit.kind == "resnet":
            HookRegistry.check_if_exists_or_initialize(unit.module.conv1).register_hook(
                Conv1CaptureHook(hook), _CAPTURE_HOOK_NAME
            )
        unit_hooks.append(hook)
    denoiser_hook = DenoiserHook(schedule, plan, clock, unit_hooks)
    HookRegistry.check_if_exists_or_initialize(denoiser).register_hook(denoiser_hook, HOOK_NAME)
    if cost is not None:
        denoiser_hook.accounting.set_cost(cost)

    original_set_timesteps = None
    if scheduler is not None and hasattr(scheduler, "set_timesteps"):
        original_set_timesteps = scheduler.__dict__.get("set_timesteps")
        bound = scheduler.set_timesteps

        def set_timesteps(*args, **kwargs):
            result = bound(*args, **kwargs)
            calls = len(scheduler.timesteps)
            if calls != schedule.num_inference_steps:
                raise ScheduleError(
                    f"the schedule is for {schedule.num_inference_steps} steps but the pipeline runs {calls}: "
                    f"call it with num_inference_steps={schedule.num_inference_steps} or export a schedule for {calls} steps"
                )
            denoiser_hook.begin_call()
            return result

        scheduler.set_timesteps = set_timesteps
    session = _ReuseSession(denoiser, schedule, units, denoiser_hook, scheduler, original_set_timesteps)
    setattr(denoiser, _SESSION_ATTRIBUTE, session)
    logger.info("applied reuse schedule to %s: %s", type(denoiser).__name__, schedule.describe())
    return denoiser_hook.accounting


def remove_schedule(pipe_or_model) -> None:
    """Remove an installed schedule; the model computes exactly as before. No-op if none is installed."""
    denoiser = resolve_denoiser(pipe_or_model)
    session = getattr(denoiser, _SESSION_ATTRIBUTE, None)
    if session is None:
        return
    for module in [denoiser] + [u.module for u in session.units] + [
        u.module.conv1 for u in session.units if u.kind == "resnet"
    ]:
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in (HOOK_NAME, _CAPTURE_HOOK_NAME):
            registry.remove_hook(name, recurse=False)
        _drop_empty_registry(module)
    if session.scheduler is not None:
        if session.original_set_timesteps is not None:
            session.scheduler.set_timesteps = session.original_set_timesteps
        else:
            session.scheduler.__dict__.pop("set_timesteps", None)
    delattr(denoiser, _SESSION_ATTRIBUTE)


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
def _store_mask(compute: list[bool], run: list[bool]) -> list[bool]:
    steps = len(compute)
    store = [False] * steps
    reuse_ahead = False
    for i in range(steps - 1, -1, -1):
        if not run[i]:
            continue
        if compute[i]:
            store[i] = reuse_ahead
            reuse_ahead = False
        else:
            reuse_ahead = True
    return store


def _first_input(args, kwargs) -> torch.Tensor:
    if args:
        return args[0]
    for key in ("hidden_states", "sample", "input_tensor", "x"):
        if key in kwargs:
            return kwargs[key]
    raise ScheduleError("could not find the input tensor of a hooked module; please report this model")


def _sample_of(output) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output.sample


def _wrap_like_transformer(output: torch.Tensor, kwargs):
    if kwargs.get("return_dict", True) is False:
        return (output,)
    from diffusers.models.modeling_outputs import Transformer2DModelOutput

    return Transformer2DModelOutput(sample=output)


def _resnet_tail(block, hidden_states: torch.Tensor, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs):
    """``ResnetBlock2D.forward`` from just after ``conv1``, with ``conv1``'s output given."""
    if block.upsample is not None:
        input_tensor = block.upsample(input_tensor)
    elif block.downsample is not None:
        input_tensor = block.downsample(input_tensor)
    if block.time_emb_proj is not None and temb is not None:
        if not block.skip_time_act:
            temb = block.nonlinearity(temb)
        temb = block.time_emb_proj(temb)[:, :, None, None]
    if block.time_embedding_norm == "default":
        if temb is not None:
            hidden_states = hidden_states + temb
        hidden_states = block.norm2(hidden_states)
    elif block.time_embedding_norm == "scale_shift":
        time_scale, time_shift = torch.chunk(temb, 2, dim=1)
        hidden_states = block.norm2(hidden_states)
        hidden_states = hidden_states * (1 + time_scale) + time_shift
    else:
        hidden_states = block.norm2(hidden_states)
    hidden_states = block.nonlinearity(hidden_states)
    hidden_states = block.dropout(hidden_states)
    hidden_states = block.conv2(hidden_states)
    if block.conv_shortcut is not None:
        input_tensor = block.conv_shortcut(input_tensor)
    return (input_tensor + hidden_states) / block.output_scale_factor


def _drop_empty_registry(module: torch.nn.Module) -> None:
    registry = getattr(module, "_diffusers_hook", None)
    if registry is not None and not registry.hooks:
        del module._diffusers_hook
        forward = module.__dict__.get("forward")
        if forward is not None and getattr(forward, "__func__", None) is type(module).forward:
            del module.__dict__["forward"]
