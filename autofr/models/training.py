"""What every denoiser of ``autofr.models.train_digits`` is trained with: data size, label dropout, EMA,
learning-rate schedule, and the summary file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

NUM_CLASSES = 10
NULL_CLASS_LABEL = NUM_CLASSES
IMAGE_SIZE = 16
LABEL_DROPOUT = 0.1
EMA_DECAY = 0.999
WARMUP_STEPS = 200


def learning_rate_factor(step: int, total_steps: int) -> float:
    """Linear warm-up over ``WARMUP_STEPS``, then cosine decay to 10% of the peak."""
    if step < WARMUP_STEPS:
        return (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(1, total_steps - WARMUP_STEPS)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def ema_update(ema_parameters: list[torch.Tensor], parameters: list[torch.Tensor], step: int) -> None:
    """One EMA step with decay ``min(EMA_DECAY, (1 + step) / (10 + step))``."""
    decay = min(EMA_DECAY, (1 + step) / (10 + step))
    with torch.no_grad():
        torch._foreach_lerp_(ema_parameters, [p.detach() for p in parameters], 1.0 - decay)


def update_summary(out: Path, key: str, value: dict) -> None:
    """Write ``value`` under ``key`` into ``<out>/training_summary.json``, keeping the other entries."""
    path = out / "training_summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary[key] = value
    path.write_text(json.dumps(summary, indent=2) + "\n")
