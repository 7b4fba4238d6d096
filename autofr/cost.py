"""Cost model: MACs per unit, and the speedup a schedule predicts from them.

MACs are *measured* with ``torch.utils.flop_counter`` on one forward pass at the run's input shape
(batch 1), so they include everything a unit really executes. Attention is counted through the math
SDPA backend, whose matmuls the counter sees on every device.

The predicted speedup of a schedule is ``full MACs / executed MACs`` where

    executed = sum over steps the network runs of (model MACs - sum of MACs of units reused at that step)
    full     = num_inference_steps * model MACs
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from autofr.reuse.units import ReusableUnit, _model_family, discover_units, resolve_denoiser
from autofr.schedule import ReuseSchedule, StepPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelCost:
    """MACs of one denoiser forward (batch 1) and of each reusable unit inside it."""

    total_macs: int
    unit_macs: dict[str, int]
    sample_shape: tuple[int, ...]

    @property
    def reusable_fraction(self) -> float:
        """Share of the forward's MACs that sits in reusable units (the most reuse can save)."""
        return sum(self.unit_macs.values()) / max(1, self.total_macs)


def example_inputs(model: torch.nn.Module, sample_size: int | tuple[int, int] | None = None) -> dict:
    """Batch-1 keyword inputs of the right shapes for a supported denoiser, built from its config."""
    config = model.config
    family = _model_family(model)
    size = sample_size if sample_size is not None else config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    inputs: dict = {
        "timestep": torch.tensor([500], device=device),
    }
    sample = torch.randn(1, config.in_channels, height, width, device=device, dtype=dtype)
    if family == "UNet2DModel":
        inputs["sample"] = sample
        if config.num_class_embeds is not None or config.class_embed_type is not None:
            inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    elif family == "UNet2DConditionModel":
        inputs["sample"] = sample
        dim = config.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        inputs["encoder_hidden_states"] = torch.randn(1, 77, dim, device=device, dtype=dtype)
        if config.addition_embed_type == "text_time":
            text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            inputs["added_cond_kwargs"] = {
                "text_embeds": torch.randn(1, text_dim, device=device, dtype=dtype),
                "time_ids": torch.zeros(1, 6, device=device, dtype=dtype),
            }
        if config.num_class_embeds is not None:
            inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    elif family == "DiTTransformer2DModel":
        inputs["hidden_states"] = sample
        inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    else:  # PixArtTransformer2DModel
        inputs["hidden_states"] = sample
        inputs["encoder_hidden_states"] = torch.randn(1, 120, config.caption_channels, device=device, dtype=dtype)
        if config.use_additional_conditions:
            inputs["added_cond_kwargs"] = {
                "resolution": torch.tensor([[height * 8.0, width * 8.0]], device=device, dtype=dtype),
                "aspect_ratio": torch.tensor([[1.0]], device=device, dtype=dtype),
            }
        else:
            inputs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    return inputs


def measure_cost(
    pipe_or_model,
    units: list[ReusableUnit] | None = None,
    sample_size: int | tuple[int, int] | None = None,
    inputs: dict | None = None,
) -> ModelCost:
    """Measure MACs of one forward and of each unit; fills ``unit.macs`` and caches per input shape.

    Call it before a schedule is applied (hooks would change what runs).
    """
    model = resolve_denoiser(pipe_or_model)
    units = units if units is not None else discover_units(model)
    inputs = inputs if inputs is not None else example_inputs(model, sample_size)
    shape = tuple((inputs.get("sample") if "sample" in inputs else inputs["hidden_states"]).shape)
    cache = model.__dict__.setdefault("_autofr_cost_cache", {})
    if shape in cache:
        cost = cache[shape]
    else:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        prefix = type(model).__name__ + "."
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(**inputs, return_dict=False)
        per_module = {
            key[len(prefix):]: sum(ops.values()) // 2 for key, ops in counter.get_flop_counts().items()
        }
        unit_macs = {}
        for unit in units:
            key = unit.name + ".conv1" if unit.kind == "resnet" else unit.name
            unit_macs[unit.name] = int(per_module.get(key, 0))
        cost = ModelCost(int(counter.get_total_flops() // 2), unit_macs, shape)
        cache[shape] = cost
        logger.debug("measured %s: %.3g MMACs per forward, %.0f%% in reusable units",
                     type(model).__name__, cost.total_macs / 1e6, 100 * cost.reusable_fraction)
    for unit in units:
        unit.macs = cost.unit_macs[unit.name]
    return cost


def executed_macs(plan: StepPlan, cost: ModelCost) -> int:
    """MACs (batch 1) that a schedule executes over a whole sampling run."""
    total = 0
    for step in range(plan.num_steps):
        if not plan.run[step]:
            continue
        total += cost.total_macs
        for name, mask in plan.unit_compute.items():
            if not mask[step]:
                total -= cost.unit_macs[name]
    return total


def predicted_speedup(schedule: ReuseSchedule, cost: ModelCost, baseline_steps: int | None = None) -> float:
    """Full-compute MACs over the schedule's executed MACs.

    ``baseline_steps`` (default: the schedule's own step count) sets the full-compute reference, so a
    30-step schedule can be compared with a 50-step baseline.
    """
    plan = schedule.plan(list(cost.unit_macs))
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
    everything before it; other units save their whole module.
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
        target = unit.module.conv1 if unit.kind == "resnet" else unit.module
        name = unit.name

        def pre(module, args, name=name):
            sync()
            starts[name] = time.perf_counter()

        def post(module, args, output, name=name):
            sync()
            samples[name].append(time.perf_counter() - starts[name])

        handles += [target.register_forward_pre_hook(pre), target.register_forward_hook(post)]
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
    total = sum(unit_seconds.values())
    if total > forward:  # timer overhead must not make reuse look free
        unit_seconds = {name: s * forward / total for name, s in unit_seconds.items()}
    return forward, unit_seconds


def batched_inputs(inputs: dict, batch: int) -> dict:
    """``inputs`` (batch 1, from :func:`example_inputs`) repeated to ``batch`` along dim 0."""

    def grow(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.expand(batch, *value.shape[1:]).contiguous()
        if isinstance(value, dict):
            return {k: grow(v) for k, v in value.items()}
        return value

    return {key: grow(value) for key, value in inputs.items()}
