"""Wall-clock speedup of feature reuse vs full compute, divided by the MAC-predicted speedup.

Two denoisers of DDPM-CIFAR-10 cost (random init: speed does not depend on the weights):
  * UNet2DModel with the google/ddpm-cifar10-32 configuration (35.7M parameters);
  * DiTTransformer2DModel of DiT-S/2 shape on 32x32x3 inputs (about 33M parameters).

For each, full compute, uniform M=2, M=3 (FRDiff, no mixing) and FRDiff M=3 with score mixing
(b=0.5, s=30) run side by side in one process, interleaved, repeated; the median wall time of each
gives the measured speedup. ``measured / MAC-predicted``: 1.0 means time is exactly proportional to
MACs and the hooks cost nothing; the goal is >= 0.9. MACs ignore memory-bound work that reuse cannot
skip (norms, adaLN modulation, gates, residual adds), so the table also divides by the speedup of a
latency model (every unit timed once on this machine, ``autofr.cost.calibrate_latency``): that ratio
isolates what the hooks themselves cost.

    python bench/reuse_speed.py            # the full table (about 10 minutes on 2 CPU cores)
    python bench/reuse_speed.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import DDIMScheduler, DiTTransformer2DModel, UNet2DModel

import autofr
from autofr import ReuseSchedule
from autofr.cost import calibrate_latency, example_inputs, measure_cost, predicted_speedup
from autofr.search.speed import SpeedModel


def cifar_unet() -> torch.nn.Module:
    return UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    )


def small_dit() -> torch.nn.Module:
    return DiTTransformer2DModel(
        num_attention_heads=6,
        attention_head_dim=64,
        in_channels=3,
        out_channels=3,
        num_layers=12,
        sample_size=32,
        patch_size=2,
        num_embeds_ada_norm=10,
    )


@torch.inference_mode()
def sample(model, scheduler, batch: int, steps: int) -> float:
    """One DDIM sampling run over a bare denoiser; returns wall seconds."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 3, 32, 32, generator=generator)
    labels = torch.arange(batch) % 10
    is_dit = isinstance(model, DiTTransformer2DModel)
    start = time.perf_counter()
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        timestep = t.expand(batch)
        if is_dit:
            eps = model(latents, timestep, class_labels=labels, return_dict=False)[0]
        else:
            eps = model(latents, timestep, return_dict=False)[0]
        latents = scheduler.step(eps, t, latents).prev_sample
    assert torch.isfinite(latents).all()
    return time.perf_counter() - start


class _Pipe:
    """Just enough of a pipeline for apply_schedule to find the denoiser and the scheduler."""

    def __init__(self, model, scheduler):
        self.unet, self.scheduler = model, scheduler


def run(name: str, model, batch: int, steps: int, repeats: int) -> list[dict]:
    model.eval()
    scheduler = DDIMScheduler(num_train_timesteps=1000)
    pipe = _Pipe(model, scheduler)
    cost = measure_cost(model)
    inputs = example_inputs(model)
    inputs["timestep"] = inputs["timestep"].expand(batch)
    inputs = {k: (v.expand(batch, *v.shape[1:]) if hasattr(v, "shape") and v.dim() else v) for k, v in inputs.items()}
    forward, unit_seconds = calibrate_latency(model, inputs)
    latency = SpeedModel(cost, steps, forward, unit_seconds)
    candidates = {
        "full compute": ReuseSchedule.uniform(pipe, steps, interval=1),
        "FRDiff M=2": ReuseSchedule.uniform(pipe, steps, interval=2),
        "FRDiff M=3": ReuseSchedule.uniform(pipe, steps, interval=3),
        "FRDiff M=3 + mixing": ReuseSchedule.uniform(pipe, steps, interval=3, mixing=True),
    }
    times = {label: [] for label in candidates}
    sample(model, scheduler, batch, 3)  # warm-up
    for _ in range(repeats):
        for label, schedule in candidates.items():
            if label == "full compute":
                autofr.remove_schedule(pipe)
            else:
                autofr.apply_schedule(pipe, schedule)
            times[label].append(sample(model, scheduler, batch, steps))
    autofr.remove_schedule(pipe)
    base = statistics.median(times["full compute"])
    rows = []
    for label, schedule in candidates.items():
        wall = statistics.median(times[label])
        predicted = predicted_speedup(schedule, cost)
        measured = base / wall
        by_latency = latency.predicted_speedup(schedule)
        rows.append(
            dict(
                model=name,
                schedule=label,
                wall=wall,
                measured=measured,
                predicted=predicted,
                efficiency=measured / predicted,
                latency=by_latency,
                hook_efficiency=measured / by_latency,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few steps and one repeat (smoke run)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.batch = 12, 1, 2
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for name, build in (("UNet (DDPM-CIFAR10, 35.7M)", cifar_unet), ("DiT-S/2 32x32 (33M)", small_dit)):
        model = build()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(
            f"# {name}: {params:.1f}M parameters, DDIM-{args.steps}, batch {args.batch}, "
            f"{args.repeats} repeats, {args.threads} threads",
            flush=True,
        )
        rows += run(name, model, args.batch, args.steps, args.repeats)
    print()
    print(
        "| model | schedule | wall (s) | measured speedup | MAC-predicted | measured / MAC-predicted | "
        "latency-predicted | measured / latency-predicted |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['model']} | {r['schedule']} | {r['wall']:.2f} | {r['measured']:.2f}x | "
            f"{r['predicted']:.2f}x | {r['efficiency']:.2f} | {r['latency']:.2f}x | {r['hook_efficiency']:.2f} |"
        )


if __name__ == "__main__":
    main()
