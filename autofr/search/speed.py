"""The speed objective: a schedule's predicted speedup over full compute.

By MACs (default: exact, machine-independent) or by a latency model calibrated once per machine
(``search.speed_model=latency``: per-unit seconds measured on this device, so reuse of cheap-in-MACs
but slow-in-practice units is priced as it runs). The calibration is cached as JSON keyed by host,
device, torch version, threads, model fingerprint and batch shape; every trial and worker reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from autofr.cost import ModelCost, batched_inputs, calibrate_latency, example_inputs, executed_macs
from autofr.files import atomic_write_text
from autofr.schedule import ReuseSchedule

logger = logging.getLogger(__name__)


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

    def predicted_speedup(self, schedule: ReuseSchedule) -> float:
        plan = self.cost.plan(schedule)
        if self.forward_seconds is None:
            return self.baseline_steps * self.cost.total_macs / max(1, executed_macs(plan, self.cost))
        seconds = schedule.num_inference_steps * self.step_overhead_seconds
        for step in range(plan.num_steps):
            if plan.run[step]:
                seconds += self.forward_seconds - sum(
                    self.unit_seconds.get(name, 0.0) for name in plan.reused_at(step)
                )
        full = self.baseline_steps * (self.forward_seconds + self.step_overhead_seconds)
        return full / max(seconds, 1e-9)


def build_speed_model(
    kind: str, denoiser, units, cost: ModelCost, baseline_steps: int, batch: int, cache_dir: str | Path
) -> SpeedModel:
    """``kind`` is ``macs`` or ``latency``; ``batch`` is the rows per denoiser call (doubled under CFG)."""
    from autofr.reuse import model_fingerprint

    if kind == "macs":
        return SpeedModel(cost, baseline_steps)
    device = next(denoiser.parameters()).device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    key = hashlib.sha256(
        json.dumps(
            [
                platform.node(),
                device_name,
                torch.__version__,
                torch.get_num_threads(),
                model_fingerprint(denoiser, units),
                list(cost.sample_shape),
                batch,
            ]
        ).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir) / "latency" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
    else:
        forward, unit_seconds = calibrate_latency(denoiser, batched_inputs(example_inputs(denoiser), batch), units)
        data = {"forward_seconds": forward, "unit_seconds": unit_seconds, "device": device_name, "batch": batch}
        atomic_write_text(path, json.dumps(data, indent=1))
        logger.info("latency model calibrated: %.4f s per forward at batch %d (%s)", forward, batch, path)
    return SpeedModel(cost, baseline_steps, data["forward_seconds"], data["unit_seconds"])
