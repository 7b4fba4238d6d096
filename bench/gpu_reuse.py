"""Feature reuse on real-size denoisers on a GPU, eager and compiled: measured vs predicted speedup, syncs, memory.

    python bench/gpu_reuse.py                 # CUDA: real sizes, bf16 (--dtype float16 for fp16)
    python bench/gpu_reuse.py --device cpu    # no GPU: the same run on small models (smoke test)

Three random-init denoisers (speed does not depend on the weights), each sampled with a plain
bare-model loop (``x <- x - 0.05 * model(x, t)``, one call per step, inside ``cache_context("cond")``
where the model has one, as diffusers' pipelines call it) at batch 1:

* ``sd15_unet``: SD1.5's UNet2DConditionModel configuration at 512 px (64x64 latents, 77 text tokens);
* ``dit_xl_2``: DiT-XL/2 at 256 px (32x32x4 latents, 28 blocks of 1152 wide);
* ``flux_shaped``: a FluxTransformer2DModel with FLUX.1's real widths (24 heads x 128, T5 width
  4096) and few layers (2 dual-stream, 4 single-stream blocks) at 1024 px (4096 image + 512 text tokens).

Settings: full compute, FRDiff's uniform M=2 and M=3 (sub-layer units), each with and without score
mixing (b=0.5, s=30), every block at M=2 and the whole block stack at M=2 and M=3; on Flux also the
peers diffusers runs there at their defaults (FirstBlockCache 0.05, TaylorSeerCache every 5,
MagCache 0.06 with diffusers' FLUX ratios; cache-dit's DBCache needs a pipeline: ``bench/compiled.py``).
Each setting runs eager and compiled: installed, then the blocks compiled (``compile_repeated_blocks``,
or every block unit's module where the model names none; ``fullgraph=True`` for autofr's schedules,
``False`` for the peers, whose ``torch.compiler.disable`` islands need it), one Dynamo for the whole
model with ``recompile_limit`` 64 (so no setting falls back to eager for being compiled after
others). All interleaved and repeated: the median wall time, the measured speedup over full compute
of the same mode (and compiled over eager full compute), the MAC-predicted speedup (``autofr.cost``)
and their ratio (goal: >= 0.9); graphs compiled and graph breaks in a setting's first compiled run,
graphs its second run compiled (recompilations); ``syncs``: each setting's compiled run once under
``torch.cuda.set_sync_debug_mode("error")`` (``none``: no host-device synchronisation; full compute
shows what the model does by itself); ``cache MiB`` is what autofr's caches hold after the run
(accounting) and, on CUDA, ``peak MiB`` the run's peak allocation.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from diffusers import DiTTransformer2DModel, FluxTransformer2DModel, UNet2DConditionModel, WanTransformer3DModel
from torch._dynamo.utils import counters

import autofr
from autofr import Mixing, ReuseSchedule
from autofr.cost import measure_cost
from autofr.reuse import discover_units
from autofr.reuse.units import LEVELS

SETTINGS = [  # label, interval, score mixing, unit levels that reuse
    ("full compute", 1, False, ("sublayer",)),
    ("FRDiff M=2", 2, False, ("sublayer",)),
    ("FRDiff M=2 +mixing", 2, True, ("sublayer",)),
    ("FRDiff M=3", 3, False, ("sublayer",)),
    ("FRDiff M=3 +mixing", 3, True, ("sublayer",)),
    ("every block M=2", 2, False, ("block",)),
    ("stack M=2", 2, False, ("stack",)),
    ("stack M=3", 3, False, ("stack",)),
]
MODES = ("eager", "compiled")
BACKEND = ["inductor"]  # --backend: eager goes through Dynamo (graphs, breaks, guards) without code generation


def sd15_unet(small: bool):
    width = (32, 64, 64, 64) if small else (320, 640, 1280, 1280)
    model = UNet2DConditionModel(
        sample_size=16 if small else 64,
        in_channels=4,
        out_channels=4,
        layers_per_block=1 if small else 2,
        block_out_channels=width,
        cross_attention_dim=64 if small else 768,
        attention_head_dim=8,
        norm_num_groups=16 if small else 32,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    size = model.config.sample_size

    def inputs(device, dtype):
        return {
            "sample": torch.randn(1, 4, size, size, device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(1, 77, model.config.cross_attention_dim, device=device, dtype=dtype),
        }

    return model, "sample", inputs, 1000.0


def dit_xl_2(small: bool):
    model = DiTTransformer2DModel(
        num_attention_heads=4 if small else 16,
        attention_head_dim=16 if small else 72,
        in_channels=4,
        out_channels=8,
        num_layers=4 if small else 28,
        sample_size=16 if small else 32,
        patch_size=2,
        num_embeds_ada_norm=1000,
    )
    size = model.config.sample_size

    def inputs(device, dtype):
        return {
            "hidden_states": torch.randn(1, 4, size, size, device=device, dtype=dtype),
            "class_labels": torch.tensor([207], device=device),
        }

    return model, "hidden_states", inputs, 1000.0


def flux_shaped(small: bool):
    heads, head_dim = (4, 16) if small else (24, 128)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=2,
        num_single_layers=4,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=64 if small else 4096,
        pooled_projection_dim=64 if small else 768,
        axes_dims_rope=(4, 6, 6) if small else (16, 56, 56),
        guidance_embeds=True,
    )
    side, text = (16, 64) if small else (64, 512)

    def inputs(device, dtype):
        rows = torch.arange(side * side, device=device)
        img_ids = torch.stack([torch.zeros_like(rows), rows // side, rows % side], 1).to(dtype)
        return {
            "hidden_states": torch.randn(1, side * side, 64, device=device, dtype=dtype),
            "encoder_hidden_states": torch.randn(
                1, text, model.config.joint_attention_dim, device=device, dtype=dtype
            ),
            "pooled_projections": torch.randn(1, model.config.pooled_projection_dim, device=device, dtype=dtype),
            "img_ids": img_ids,
            "txt_ids": torch.zeros(text, 3, device=device, dtype=dtype),
            "guidance": torch.full((1,), 3.5, device=device, dtype=dtype),
        }

    return model, "hidden_states", inputs, 1.0


MODELS = {"sd15_unet": sd15_unet, "dit_xl_2": dit_xl_2, "flux_shaped": flux_shaped}


def peer_configs(name: str, steps: int) -> dict:
    """diffusers' caches at their documented defaults, on the model that has them (CacheMixin)."""
    if name != "flux_shaped":
        return {}
    from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    return {
        "peer: FirstBlockCache 0.05": lambda: FirstBlockCacheConfig(threshold=0.05),
        "peer: TaylorSeerCache every 5": lambda: TaylorSeerCacheConfig(cache_interval=5),
        "peer: MagCache 0.06": lambda: MagCacheConfig(
            threshold=0.06, num_inference_steps=steps, mag_ratios=FLUX_MAG_RATIOS
        ),
    }


@torch.inference_mode()
def sample(model, sample_key, inputs, timesteps, sync):
    """One sampling run over the bare denoiser; wall seconds (synchronised only before and after)."""
    kwargs = dict(inputs)
    x = kwargs.pop(sample_key)
    context = getattr(model, "cache_context", None)
    sync()
    began = time.perf_counter()
    for t in timesteps:
        with context("cond") if context is not None else contextlib.nullcontext():
            out = model(**{sample_key: x}, timestep=t, **kwargs, return_dict=False)[0]
        x = x - 0.05 * out[:, : x.shape[1]]
    sync()
    return time.perf_counter() - began


def syncs_in_a_run(model, sample_key, inputs, timesteps) -> str | None:
    """None if a sampling run does no host-device synchronisation, else the error's first line."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        sample(model, sample_key, inputs, timesteps, lambda: None)
        return None
    except RuntimeError as error:
        return str(error).splitlines()[0][:100]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def compile_blocks(model, fullgraph: bool) -> None:
    """Regional compilation: the repeated blocks, or every block unit's module where none are named."""
    if getattr(model, "_repeated_blocks", None):
        model.compile_repeated_blocks(fullgraph=fullgraph, backend=BACKEND[0])
        return
    for unit in discover_units(model, levels=("block",)):
        for module in unit.block_modules:
            module.compile(fullgraph=fullgraph, backend=BACKEND[0])


@contextlib.contextmanager
def installed(model, setting, compiled: bool, cost):
    """A schedule (autofr) or a cache config (a peer) on ``model``, then its blocks compiled; undone after.
    Yields autofr's accounting (None for a peer)."""
    accounting = None
    if isinstance(setting, ReuseSchedule):
        accounting = autofr.apply_schedule(model, setting, cost=cost)
    else:
        model.enable_cache(setting())
    try:
        if compiled:
            compile_blocks(model, fullgraph=accounting is not None)
        yield accounting
    finally:
        if accounting is not None:
            autofr.remove_schedule(model)
        else:
            model.disable_cache()
        for module in model.modules():
            module._compiled_call_impl = None


def bench(name: str, small: bool, device: str, dtype: torch.dtype, steps: int, repeats: int) -> list[str]:
    torch.manual_seed(0)
    model, sample_key, make_inputs, scale = MODELS[name](small)
    model = model.to(device=device, dtype=dtype).eval()
    inputs = make_inputs(device, dtype)
    timesteps = [torch.full((1,), scale * (1 - i / steps), device=device, dtype=dtype) for i in range(steps)]
    units = discover_units(model, levels=LEVELS)  # every level, so outer units get their MACs
    cost = measure_cost(model, units, inputs=dict(inputs, timestep=timesteps[0]))
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    settings = {
        label: ReuseSchedule.uniform(model, steps, interval=m, mixing=Mixing() if mix else False, levels=levels)
        for label, m, mix, levels in SETTINGS
    }
    settings.update(peer_configs(name, steps))
    torch._dynamo.reset()
    torch._dynamo.config.recompile_limit = 64
    times = {(label, mode): [] for label in settings for mode in MODES}
    predicted, cache_mib, peak_mib, dynamo, syncs, failed = {}, {}, {}, {}, {}, {}
    sample(model, sample_key, inputs, timesteps[:2], sync)  # warm-up
    for label, setting in settings.items():  # compile once, count, check syncs
        counters.clear()
        try:
            with installed(model, setting, True, cost):
                began = time.perf_counter()
                sample(model, sample_key, inputs, timesteps, sync)
                first_s = time.perf_counter() - began
                breaks, graphs = sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]
                counters.clear()
                sample(model, sample_key, inputs, timesteps, sync)
                dynamo[label] = (first_s, graphs, breaks, counters["stats"]["unique_graphs"])
                if cuda:
                    syncs[label] = syncs_in_a_run(model, sample_key, inputs, timesteps)
        except Exception as error:  # a setting that does not compile on this model
            failed[label] = f"{type(error).__name__}: {' '.join(str(error).split())[:120]}"
    for repeat in range(repeats):
        order = list(settings)[repeat % len(settings) :] + list(settings)[: repeat % len(settings)]
        for label in order:
            for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                if mode == "compiled" and label in failed:
                    continue
                with installed(model, settings[label], mode == "compiled", cost) as accounting:
                    if cuda:
                        torch.cuda.reset_peak_memory_stats()
                    times[(label, mode)].append(sample(model, sample_key, inputs, timesteps, sync))
                    if accounting is not None:
                        predicted[label] = accounting.predicted_speedup
                        cache_mib[label] = accounting.cache_bytes / 2**20
                    if cuda:
                        peak_mib[(label, mode)] = torch.cuda.max_memory_allocated() / 2**20
    full = {mode: statistics.median(times[("full compute", mode)]) for mode in MODES}
    lines = [
        f"{name} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters, {cost.total_macs / 1e9:.1f} "
        f"GMACs per step, {100 * cost.reusable_fraction:.0f}% reusable, {len(cost.unit_macs)} units; {steps} steps, "
        f"{dtype}, {device}, median of {repeats}; compiled full compute {full['eager'] / full['compiled']:.2f}x "
        "eager full compute)",
        "| setting | eager s | eager | compiled s | compiled | compiled / eager | vs eager full | MAC-predicted "
        "| measured / predicted (eager) | 1st compiled run s | graphs | breaks | recompiles (run 2) | syncs "
        "| cache MiB | peak MiB (eager / compiled) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for label in settings:
        eager_s = statistics.median(times[(label, "eager")])
        eager = full["eager"] / eager_s
        row = [label, f"{eager_s:.3f}", f"{eager:.2f}x"]
        if label in failed:
            row += [f"compile failed: {failed[label]}"] + [""] * 12
        else:
            compiled_s = statistics.median(times[(label, "compiled")])
            compiled = full["compiled"] / compiled_s
            first_s, graphs, breaks, recompiles = dynamo[label]
            pred = predicted.get(label)
            sync_cell = "n/a (CPU)" if not cuda else ("none" if syncs[label] is None else syncs[label])
            peak = f"{peak_mib[(label, 'eager')]:.0f} / {peak_mib[(label, 'compiled')]:.0f}" if cuda else "unmeasured"
            row += [
                f"{compiled_s:.3f}",
                f"{compiled:.2f}x",
                f"{compiled / eager:.2f}",
                f"{full['eager'] / compiled_s:.2f}x",
                f"{pred:.2f}x" if pred else "-",
                f"{eager / pred:.2f}" if pred else "-",
                f"{first_s:.1f}",
                str(graphs),
                str(breaks),
                str(recompiles),
                sync_cell,
                f"{cache_mib[label]:.1f}" if label in cache_mib else "-",
                peak,
            ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


# ---------------------------------------------------------------------- cache memory at real sizes, from shapes
def flux_dev_1024():
    """FLUX.1-dev's transformer (19 dual-stream, 38 single-stream blocks) at 1024 px, 512 text tokens."""
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    side, text = 64, 512
    inputs = {
        "hidden_states": torch.randn(1, side * side, 64),
        "encoder_hidden_states": torch.randn(1, text, 4096),
        "pooled_projections": torch.randn(1, 768),
        "img_ids": torch.randn(side * side, 3),
        "txt_ids": torch.randn(text, 3),
        "guidance": torch.full((1,), 3.5),
        "timestep": torch.full((1,), 1.0),
    }
    return model, inputs


def wan21_14b_720p():
    """Wan2.1-T2V-14B's transformer (40 blocks of 5120) at 1280x720, 81 frames (21 x 90 x 160 latents)."""
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2),
        num_attention_heads=40,
        attention_head_dim=128,
        in_channels=16,
        out_channels=16,
        text_dim=4096,
        freq_dim=256,
        ffn_dim=13824,
        num_layers=40,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
    )
    inputs = {
        "hidden_states": torch.randn(1, 16, 21, 90, 160),
        "encoder_hidden_states": torch.randn(1, 512, 4096),
        "timestep": torch.full((1,), 999.0),
    }
    return model, inputs


MEMORY_MODELS = {"FLUX.1-dev, 1024 px": flux_dev_1024, "Wan2.1-T2V-14B, 720p, 81 frames": wan21_14b_720p}


def _nbytes(value) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def cache_memory(build, dtype: torch.dtype = torch.bfloat16) -> dict[str, float]:
    """GB one CFG branch's caches hold when every unit of a level reuses, from one forward on the meta
    device (shapes only: nothing is allocated, no weights are needed)."""
    from autofr.reuse.block_hook import BlockSignature

    with torch.device("meta"):
        model, inputs = build()
        model = model.to(dtype)
        inputs = {
            k: v.to(dtype) if v.is_floating_point() and k not in ("img_ids", "txt_ids") else v
            for k, v in inputs.items()
        }
    units = discover_units(model, levels=LEVELS)
    held: dict[str, int] = {}
    handles = []
    for unit in units:
        if unit.level == "sublayer":
            handles.append(
                unit.cached_module.register_forward_hook(
                    lambda m, a, o, name=unit.name: held.__setitem__(name, _nbytes(o))
                )
            )
            continue
        first, last = unit.block_modules[0], unit.block_modules[-1]
        signature, entered = BlockSignature(first), {}

        def pre(module, args, kwargs, signature=signature, entered=entered):
            entered["inputs"] = (args, kwargs)

        def post(
            module,
            args,
            kwargs,
            output,
            name=unit.name,
            signature=signature,
            entered=entered,
            last_sig=BlockSignature(last),
        ):
            first_args, first_kwargs = entered.pop("inputs")
            last_sig.learn(output, args, kwargs)
            streams = signature.tensors_in(first_args, first_kwargs)
            held[name] = sum(_nbytes(streams.get(stream)) for stream in last_sig.outputs if stream in streams)

        handles += [
            first.register_forward_pre_hook(pre, with_kwargs=True),
            last.register_forward_hook(post, with_kwargs=True),
        ]
    with torch.device("meta"), torch.no_grad():
        model(**inputs, return_dict=False)
    for handle in handles:
        handle.remove()
    by_level = {level: [u for u in units if u.level == level] for level in LEVELS}
    return {
        "sub-layer units (every unit)": sum(held.get(u.name, 0) for u in by_level["sublayer"]) / 1e9,
        "block units (one residual per block)": sum(held.get(u.name, 0) for u in by_level["block"]) / 1e9,
        "stack (one residual)": sum(held.get(u.name, 0) for u in by_level["stack"]) / 1e9,
    }


def memory_table() -> list[str]:
    lines = [
        "## Cache memory at real sizes (bf16, one CFG branch; computed from shapes on the meta device)",
        "",
        "| model | sub-layer units | block units | stack |",
        "|---|---:|---:|---:|",
    ]
    for label, build in MEMORY_MODELS.items():
        gb = list(cache_memory(build).values())
        lines.append(f"| {label} | {gb[0]:.2f} GB | {gb[1]:.2f} GB | {gb[2]:.2f} GB |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="bfloat16 (CUDA default), float16, float32 (CPU default)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (CUDA 20, CPU 8)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (CUDA 5, CPU 2)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: Dynamo only, fast)")
    parser.add_argument("--no-memory", action="store_true", help="leave out the cache-memory table at real sizes")
    parser.add_argument("--memory", action="store_true", help="only the cache-memory table at real sizes (no device)")
    args = parser.parse_args(argv)
    if args.memory:
        print("\n".join(memory_table()))
        return 0
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for the small smoke run")
    dtype = getattr(torch, args.dtype or ("bfloat16" if cuda else "float32"))
    if not cuda:
        torch.set_num_threads(1)
    BACKEND[0] = args.backend
    steps = args.steps or (20 if cuda else 8)
    repeats = args.repeats or (5 if cuda else 2)
    card = torch.cuda.get_device_name() if cuda else None
    print(
        f"# autofr GPU reuse bench ({f'real sizes, {card}' if cuda else 'small CPU smoke run: the GPU figures are unmeasured'})"
    )
    for name in args.models.split(","):
        print()
        print("\n".join(bench(name, not cuda, args.device, dtype, steps, repeats)))
    if not args.no_memory:
        print()
        print("\n".join(memory_table()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
