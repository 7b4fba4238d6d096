"""When a group of units computes: uniform intervals, or keyframes where its change accumulates.

*Uniform* timing is FRDiff's: a group computes every ``M`` steps. *Calibrated* timing places
keyframes unevenly, where the group's output changes: from one full-compute run at the trial's step
count, every unit's *magnitude ratio* ``r_t = mean ||v_t|| / ||v_{t-1}||`` (``v`` what the unit caches:
a sub-layer's output, a block's or the stack's residual) is measured, averaged over the group. The
rule is MagCache's, applied to any group:

* steps before ``warmup * T`` always compute;
* after a keyframe, the ratios accumulate: ``R *= r_t``, ``error += |1 - R|``;
* the group reuses at step ``t`` while ``error <= threshold`` and it has reused fewer than
  ``max_reuse`` steps in a row; otherwise it computes and ``R``, ``error`` start again.

MagCache's own setting (threshold 0.06-0.24, ``max_skip_steps`` 3, ``retention_ratio`` 0.2) is the
stack group with those numbers, so MagCache's rule is a point of this space. The profile is measured
once per step count and stored with the study (:class:`StepProfiles`), so every worker and every
resume uses the same one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from autofr.evaluation import EvalProtocol, generate
from autofr.reuse.block_hook import BlockSignature

logger = logging.getLogger(__name__)

TIMINGS = ("uniform", "calibrated", "choice")
#: MagCache's defaults (diffusers' MagCacheConfig): consecutive skips and the share of steps kept.
MAGCACHE_MAX_SKIP = 3
MAGCACHE_RETENTION = 0.2


def warmup_steps(warmup: float, steps: int) -> int:
    """Steps that always compute at the start (MagCache rounds the same way)."""
    return int(warmup * steps + 0.5)


def calibrated_steps(ratios: list[float], threshold: float, max_reuse: int, warmup: int) -> tuple[int, ...]:
    """The compute steps of one group under MagCache's accumulated-error rule (module docstring).
    ``ratios[t]`` is the magnitude ratio from step ``t-1`` to ``t`` (``ratios[0]`` is unused)."""
    compute = []
    accumulated, error, reused = 1.0, 0.0, 0
    for step in range(len(ratios)):
        if step < max(1, warmup):
            compute.append(step)
            continue
        accumulated *= ratios[step]
        error += abs(1.0 - accumulated)
        if error <= threshold and reused < max_reuse:
            reused += 1
            continue
        compute.append(step)
        accumulated, error, reused = 1.0, 0.0, 0
    return tuple(compute)


@dataclass(frozen=True)
class StepProfile:
    """Per group, at one step count: the relative change ``|v_t - v_{t-1}| / |v_{t-1}|`` (for the
    calibrated warm start's intervals) and the magnitude ratio (for calibrated timing), per step."""

    steps: int
    change: dict[str, list[float]]
    ratio: dict[str, list[float]]

    def to_json(self) -> str:
        return json.dumps({"steps": self.steps, "change": self.change, "ratio": self.ratio})

    @classmethod
    def from_json(cls, text: str) -> StepProfile:
        data = json.loads(text)
        return cls(int(data["steps"]), dict(data["change"]), dict(data["ratio"]))


def _hidden_out(output, hidden_in: torch.Tensor):
    """The image stream in a block's output: the tensor, or the tuple element shaped like the input
    (the last one where several are; the image part of a fused [text, image] sequence)."""
    if isinstance(output, torch.Tensor):
        values = [output]
    else:
        values = [v for v in output if isinstance(v, torch.Tensor)]
    same = [v for v in values if v.shape == hidden_in.shape]
    if same:
        return same[-1]
    fused = [v for v in values if v.ndim == 3 and v.shape[0] == hidden_in.shape[0] and v.shape[1] > hidden_in.shape[1]]
    return fused[-1][:, -hidden_in.shape[1] :] if fused else None


@torch.no_grad()
def measure_profile(pipe, protocol: EvalProtocol, units, steps: int) -> dict[str, dict[str, list[float]]]:
    """Per unit, ``{"change": [...], "ratio": [...]}`` over the steps of one full-compute run at
    ``steps`` steps (``protocol.num_samples`` samples). Index 0 is the first step (change 0, ratio 1).
    Pipelines that call the denoiser twice a step (true CFG) are handled: each call is compared with
    the same call one step earlier, and the calls of a step are averaged."""
    values: dict[str, list[torch.Tensor]] = {unit.name: [] for unit in units}
    handles = []

    def keep(name, value):
        if isinstance(value, torch.Tensor):
            values[name].append(value.detach().float().flatten(1).cpu())

    for unit in units:
        if unit.level == "sublayer":

            def output_hook(module, args, output, name=unit.name):
                keep(name, output[0] if isinstance(output, (tuple, list)) else getattr(output, "sample", output))

            handles.append(unit.cached_module.register_forward_hook(output_hook))
            continue
        first, last = unit.block_modules[0], unit.block_modules[-1]
        if unit.mode == "output":  # a UNet stage: its output (the hidden states)

            def stage_hook(module, args, output, name=unit.name):
                keep(name, output[0] if isinstance(output, (tuple, list)) else output)

            handles.append(last.register_forward_hook(stage_hook))
            continue
        signature, entered = BlockSignature(first), {}

        def pre(module, args, kwargs, name=unit.name, signature=signature, entered=entered):
            entered[name] = signature.argument(signature.hidden_name, args, kwargs)

        def post(module, args, output, name=unit.name, entered=entered):
            hidden_in = entered.pop(name, None)
            hidden_out = _hidden_out(output, hidden_in) if isinstance(hidden_in, torch.Tensor) else None
            if hidden_out is not None:
                keep(name, hidden_out - hidden_in)

        handles.append(first.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(last.register_forward_hook(post))
    try:
        generate(pipe, protocol.replace(num_inference_steps=steps))
    finally:
        for handle in handles:
            handle.remove()
    profile = {}
    for name, calls in values.items():
        per_step = max(1, len(calls) // steps)
        change, ratio = [0.0], [1.0]
        for step in range(1, len(calls) // per_step):
            changes, ratios = [], []
            for call in range(per_step):
                previous, current = calls[(step - 1) * per_step + call], calls[step * per_step + call]
                if previous.shape != current.shape:
                    continue
                norm = previous.norm(dim=1).clamp_min(1e-12)
                changes.append(float(((current - previous).norm(dim=1) / norm).mean()))
                ratios.append(float((current.norm(dim=1) / norm).mean()))
            change.append(sum(changes) / len(changes) if changes else 0.0)
            ratio.append(sum(ratios) / len(ratios) if ratios else 1.0)
        profile[name] = {"change": change, "ratio": ratio}
    return profile


def group_profile(per_unit: Mapping[str, Mapping[str, list[float]]], groups: Mapping[str, list[str]], steps: int):
    """The mean profile of each group's units (a :class:`StepProfile`)."""
    change, ratio = {}, {}
    for group, names in groups.items():
        series = [per_unit[name] for name in names if name in per_unit and per_unit[name]["change"]]
        length = min((len(s["change"]) for s in series), default=0)
        change[group] = [sum(s["change"][t] for s in series) / len(series) for t in range(length)]
        ratio[group] = [sum(s["ratio"][t] for s in series) / len(series) for t in range(length)]
    return StepProfile(steps, change, ratio)


class StepProfiles:
    """The study's profiles, one per step count: measured on first use, stored in the study's user
    attributes (``profile:<steps>``) so workers and resumes share them."""

    ATTRIBUTE = "profile:{steps}"

    def __init__(self, measure: Callable[[int], StepProfile], study=None) -> None:
        self.measure = measure
        self.study = study
        self.known: dict[int, StepProfile] = {}

    def attach(self, study) -> None:
        """Store the profiles measured so far (the warm start's, before the study existed) in ``study``,
        and read and write it from now on."""
        self.study = study
        for steps, profile in self.known.items():
            key = self.ATTRIBUTE.format(steps=steps)
            if key not in study.user_attrs:
                study.set_user_attr(key, profile.to_json())

    def __call__(self, steps: int) -> StepProfile:
        if steps in self.known:
            return self.known[steps]
        key = self.ATTRIBUTE.format(steps=steps)
        stored = self.study.user_attrs.get(key) if self.study is not None else None
        if stored is not None:
            profile = StepProfile.from_json(stored)
        else:
            profile = self.measure(steps)
            logger.info("measured the change profile at %d steps", steps)
            if self.study is not None:
                self.study.set_user_attr(key, profile.to_json())
        self.known[steps] = profile
        return profile
