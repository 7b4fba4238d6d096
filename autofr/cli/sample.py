"""``autofr-sample``: sample a model with a reuse schedule next to full compute, at the same seeds.

    autofr-sample                                  # digits_unet, FRDiff uniform M=3 with mixing
    autofr-sample schedule=schedule.json           # an exported schedule
    autofr-sample interval=2 mixing=false model=digits_dit num_samples=32 out=grid.png

Writes a PNG grid (top: full compute, bottom: the schedule), prints wall time of both runs and the
reuse accounting (units computed/reused, MACs, predicted speedup, cache memory).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from autofr.cli._config import cli_main, compose


def body(argv: list[str]) -> int:
    cfg = compose("sample", argv)

    import torch

    import autofr
    from autofr.config import ModelSettings, section
    from autofr.cost import measure_cost
    from autofr.evaluation import EvalProtocol, generate
    from autofr.files import atomic_write_bytes
    from autofr.images import sample_grid_png
    from autofr.schedule import ReuseSchedule
    from autofr.search.study import load_model

    model = section(ModelSettings, _container(cfg.model), "model")
    if cfg.schedule:  # validate the file before loading any model
        schedule = ReuseSchedule.from_json(cfg.schedule)
    pipe = load_model(model)
    if not cfg.schedule:
        schedule = ReuseSchedule.uniform(
            pipe, int(cfg.num_inference_steps), int(cfg.interval), mixing=bool(cfg.mixing)
        )
    protocol = EvalProtocol(
        num_samples=int(cfg.num_samples),
        seed=int(cfg.seed),
        batch_size=int(cfg.batch_size),
        num_inference_steps=model.num_inference_steps,
        guidance_scale=model.guidance_scale,
        scheduler=model.scheduler,
        num_classes=None if model.prompts else model.num_classes,
        prompts=model.prompts,
        resolution=model.resolution,
        call_options=dict(model.call_options or {}),
    )
    cost = measure_cost(pipe, protocol=protocol)  # inputs built from the config, or captured from the pipeline
    # warm-up (first calls pay one-off allocation costs), then full compute and the schedule
    generate(pipe, protocol.replace(num_samples=1, batch_size=1, num_inference_steps=2))
    began = time.perf_counter()
    full = generate(pipe, protocol)
    full_seconds = time.perf_counter() - began
    accounting = autofr.apply_schedule(pipe, schedule, cost=cost)
    try:
        began = time.perf_counter()
        reused = generate(pipe, protocol.replace(num_inference_steps=schedule.num_inference_steps))
        reuse_seconds = time.perf_counter() - began
        summary = accounting.summary()
    finally:
        autofr.remove_schedule(pipe)
    out = atomic_write_bytes(
        Path(cfg.out), sample_grid_png(torch.cat([full.images, reused.images]), count=2 * len(full.images))
    )
    print(f"model: {model.name}; schedule: {schedule.describe()}")
    print(f"full compute ({model.num_inference_steps} steps): {full_seconds:.2f} s for {len(full)} samples")
    print(f"with schedule: {reuse_seconds:.2f} s  -> measured speedup {full_seconds / reuse_seconds:.2f}x")
    print(summary)
    print(f"mean |difference| to full compute: {(reused.images - full.images).abs().mean():.4f}")
    print(f"grid (top: full compute, bottom: schedule): {out.resolve()}")
    return 0


def _container(node) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True)


def main(argv: list[str] | None = None) -> int:
    return cli_main(__doc__, body, argv)


if __name__ == "__main__":
    sys.exit(main())
