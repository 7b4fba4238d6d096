"""The speed objective: a schedule's predicted speedup over full compute.

By calibrated latency (default, ``search.speed_model=latency``) or by MACs (``macs``: exact and
machine-independent, but blind to the memory-bound work reuse cannot skip: on transformers it
overstated measured speedups by 25-30%). The latency model is measured once per machine and model:

* every unit at every level timed inside one forward (``autofr.cost.calibrate_latency``): a step
  costs the forward minus the outermost units it reuses;
* the pipeline around the denoiser, from full-compute runs at two step counts: a fixed cost per run
  (noise, decoding) and a cost per step beside the forward (the scheduler, guidance), which a step
  pays also where score mixing skips the network.

It is cached as JSON keyed by host, device, torch version, threads, dtype, the model's fingerprint
and unit names, the sample shape and the batch; every trial and worker reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autofr.cost import ModelCost, batched_inputs, calibrate_latency, example_inputs, executed_macs
from autofr.evaluation import EvalProtocol, generate
from autofr.files import atomic_write_text
from autofr.schedule import ReuseSchedule

logger = logging.getLogger(__name__)


#: Bumped when what the calibration measures changes, so older cached calibrations are not read.
LATENCY_MODEL_VERSION = 2


@dataclass
class SpeedModel:
    """Predicted speedup of a schedule vs full compute at ``baseline_steps``.

    ``unit_seconds``/``forward_seconds`` (from :func:`calibrate_latency`) switch from MACs to measured
    per-unit latency: a step costs the full forward minus the units it reuses, plus a fixed overhead.
    """

    cost: ModelCost
    baseline_steps: int
    forward_seconds: float | None = None
    unit_seconds: dict[str, float] = field(default_factory=dict)
    step_overhead_seconds: float = 0.0
    run_overhead_seconds: float = 0.0

    def predicted_speedup(self, schedule: ReuseSchedule) -> float:
        plan = self.cost.plan(schedule)
        if self.forward_seconds is None:
            return self.baseline_steps * self.cost.total_macs / max(1, executed_macs(plan, self.cost))
        seconds = self.run_overhead_seconds + schedule.num_inference_steps * self.step_overhead_seconds
        for step in range(plan.num_steps):
            if plan.run[step]:
                seconds += self.forward_seconds - sum(
                    self.unit_seconds.get(name, 0.0) for name in plan.reused_at(step)
                )
        full = self.run_overhead_seconds + self.baseline_steps * (self.forward_seconds + self.step_overhead_seconds)
        return full / max(seconds, 1e-9)


def build_speed_model(
    kind: str,
    denoiser,
    units,
    cost: ModelCost,
    baseline_steps: int,
    batch: int,
    cache_dir: str | Path,
    pipe=None,
    protocol: EvalProtocol | None = None,
) -> SpeedModel:
    """``kind`` is ``macs`` or ``latency``; ``batch`` is the rows per denoiser call (doubled under CFG).
    With ``pipe`` and ``protocol`` the latency model also measures the pipeline's own overheads."""
    from autofr.reuse import model_fingerprint

    if kind == "macs":
        return SpeedModel(cost, baseline_steps)
    parameter = next(denoiser.parameters())
    device = parameter.device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    identity = [
        LATENCY_MODEL_VERSION,
        platform.node(),
        device_name,
        torch.__version__,
        torch.get_num_threads(),
        str(parameter.dtype),
        model_fingerprint(denoiser, units),
        sorted(unit.name for unit in units),
        list(cost.sample_shape),
        batch,
        protocol.batch_size if protocol is not None else None,
    ]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "latency" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
    else:
        forward, unit_seconds = calibrate_latency(denoiser, batched_inputs(example_inputs(denoiser), batch), units)
        data = {"forward_seconds": forward, "unit_seconds": unit_seconds, "device": device_name, "batch": batch}
        if pipe is not None and protocol is not None:
            run, step, in_pipeline = pipeline_overheads(pipe, protocol)
            # the units were timed at the example inputs: price them at the denoiser's cost inside the pipeline
            scale = in_pipeline / forward
            data["unit_seconds"] = {name: seconds * scale for name, seconds in unit_seconds.items()}
            data["forward_seconds"] = in_pipeline
            data["run_overhead_seconds"], data["step_overhead_seconds"] = run, step
        atomic_write_text(path, json.dumps(data, indent=1))
        logger.info("latency model calibrated: %.4f s per forward at batch %d (%s)", forward, batch, path)
    return SpeedModel(
        cost,
        baseline_steps,
        data["forward_seconds"],
        data["unit_seconds"],
        data.get("step_overhead_seconds", 0.0),
        data.get("run_overhead_seconds", 0.0),
    )


def pipeline_overheads(pipe, protocol: EvalProtocol, repeats: int = 3) -> tuple[float, float, float]:
    """``(per run, per step, denoiser per step)`` seconds of full compute in the pipeline, one batch of
    ``protocol``, from runs at two step counts (medians of ``repeats``): what the pipeline spends beside
    the denoiser once per run and once per step, and what the denoiser's calls of one step cost there
    (classifier-free guidance batched or called twice included)."""
    from autofr.reuse import resolve_denoiser

    denoiser = resolve_denoiser(pipe)
    device = next(denoiser.parameters()).device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    inside = {"seconds": 0.0, "began": 0.0}

    def enter(module, args):
        sync()
        inside["began"] = time.perf_counter()

    def leave(module, args, output):
        sync()
        inside["seconds"] += time.perf_counter() - inside["began"]

    low, high = 2, 6
    batch = protocol.replace(num_samples=protocol.batch_size)
    handles = [denoiser.register_forward_pre_hook(enter), denoiser.register_forward_hook(leave)]
    try:
        generate(pipe, batch.replace(num_inference_steps=low))  # warm-up
        total, network = {}, {}
        for steps in (low, high):
            runs = []
            for _ in range(repeats):
                inside["seconds"] = 0.0
                began = time.perf_counter()
                generate(pipe, batch.replace(num_inference_steps=steps))
                runs.append((time.perf_counter() - began, inside["seconds"]))
            total[steps] = statistics.median(r[0] for r in runs)
            network[steps] = statistics.median(r[1] for r in runs)
    finally:
        for handle in handles:
            handle.remove()
    forward = max(1e-9, (network[high] - network[low]) / (high - low))
    per_step = max(forward, (total[high] - total[low]) / (high - low))
    run_overhead = max(0.0, total[low] - low * per_step)
    return run_overhead, per_step - forward, forward
