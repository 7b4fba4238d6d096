"""Schedules and peers under torch.compile on the embedded models: speed, compile time, graphs, recompilations, syncs.

    python bench/compiled.py                          # digits_flux, digits_dit, digits_unet (one thread)
    python bench/compiled.py --models digits_flux --repeats 9 --samples 8
    python bench/compiled.py --quick --backend eager  # smoke run: digits_flux, 1 repeat, 2 samples, 3 steps

Per model, every unit level (FRDiff's sub-layers at M=2 and M=3, every block at M=2, the stack at
M=2) and the peers that run on it at their default settings (FirstBlockCache, TaylorSeerCache,
MagCache, cache-dit's DBCache) and, on digits_flux, at their fastest settings within the 5% FID
target (``bench/peers.py``; FRDiff M=2 is within it too), eager and compiled. Compiled means: the schedule or cache is
installed, then the denoiser is compiled, regionally (``compile_repeated_blocks``, or each block
unit's module where the model names no repeated blocks) or whole (``model.compile()``, ``--how
whole``), with default Dynamo settings and ``fullgraph=False`` for all (a peer's
``torch.compiler.disable`` islands need it).

Two phases:

* compile report: per setting, from a fresh Dynamo (``torch._dynamo.reset()``), two sampling runs:
  the first run's seconds (compile included), the graphs it compiled and its graph breaks, the
  graphs the second run compiled (recompilations: zero if no run-time state reaches compiled code),
  how often Dynamo hit ``recompile_limit`` (the module then runs eagerly), and host reads of a
  device value per run (``.item()``, ``bool(tensor)``: a host-device synchronisation on a GPU; counted
  on an eager run with a dispatch mode, so it works on CPU);
* timing: one interleaved run; each repeat times, per mode (eager, compiled; the order alternates),
  full compute, every setting (the order rotates), full compute again, each timed run after an untimed
  one; a setting's ratio in a repeat is the mean of the two full-compute times of its mode over its
  own time; the table gives the median and the min-max spread over repeats. ``recompile_limit`` is
  raised to 64 for the timing, so that no setting falls back to eager for having been compiled after
  the others. ``compiled / eager`` is the compiled speedup over the eager one (goal: >= 0.95); ``vs
  eager full`` is the median compiled time of the setting against eager full compute's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch._dynamo.utils import counters
from torch.utils._python_dispatch import TorchDispatchMode

import autofr
from autofr import ReuseSchedule
from autofr.config import load_study_config
from autofr.cost import measure_cost
from autofr.evaluation import generate
from autofr.peers import Peer, available_peers, peer_enabled
from autofr.pipeline_io import denoiser_of
from autofr.reuse import discover_units
from autofr.reuse.units import LEVELS
from autofr.search.study import load_model, protocol_for

MODELS = ("digits_flux", "digits_dit", "digits_unet")
PEERS = ("first_block_cache", "taylorseer_cache", "mag_cache", "dbcache")
#: Each peer's fastest setting within 5% of full compute's FID-2000 (three seeds), bench/README.md "Peers".
WITHIN_TARGET = {
    "digits_flux": ("MagCache 0.12", "DBCache F1B0 0.24", "FirstBlockCache 0.1", "TaylorSeer every 4"),
}
MODES = ("eager", "compiled")
BACKEND = ["inductor"]  # --backend: eager goes through Dynamo (graphs, breaks, guards) without code generation
HOST_READS = {"aten._local_scalar_dense.default", "aten.is_nonzero.default", "aten.equal.default"}


# ---------------------------------------------------------------------- what runs
def schedules_for(pipe, steps: int) -> dict[str, ReuseSchedule | None]:
    return {
        "full compute": None,
        "FRDiff M=2 (sub-layer)": ReuseSchedule.uniform(pipe, steps, 2),
        "FRDiff M=3 (sub-layer)": ReuseSchedule.uniform(pipe, steps, 3),
        "every block M=2 (block)": ReuseSchedule.uniform(pipe, steps, 2, levels=("block",)),
        "stack M=2 (stack)": ReuseSchedule.uniform(pipe, steps, 2, levels=("stack",)),
    }


def peers_for(pipe, protocol, model: str) -> tuple[dict[str, Peer], dict[str, str]]:
    """Each peer's default setting, and on digits_flux its fastest setting within the 5% FID target."""
    peers, skipped = available_peers(pipe, protocol, PEERS)
    chosen = {}
    for peer in peers:
        if peer.label in WITHIN_TARGET.get(model, ()):
            chosen[f"peer: {peer.label} (within target)"] = peer
        elif peer.default:
            chosen[f"peer: {peer.label}"] = peer
    return chosen, skipped


def compile_denoiser(denoiser: torch.nn.Module, how: str) -> None:
    if how == "whole":
        denoiser.compile(backend=BACKEND[0])
    elif getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(fullgraph=False, backend=BACKEND[0])
    else:  # no repeated blocks named (UNet2DModel, DiT): each block unit's module, the same regions by hand
        for unit in discover_units(denoiser, levels=("block",)):
            for module in unit.block_modules:
                module.compile(fullgraph=False, backend=BACKEND[0])


def uncompile(denoiser: torch.nn.Module) -> None:
    for module in denoiser.modules():
        module._compiled_call_impl = None


@contextlib.contextmanager
def running(pipe, candidate, compiled: bool, how: str):
    """``candidate`` (a schedule, a peer or None) installed, then the denoiser compiled; all undone after."""
    denoiser = denoiser_of(pipe)
    with contextlib.ExitStack() as stack:
        if isinstance(candidate, ReuseSchedule):
            autofr.apply_schedule(pipe, candidate)
            stack.callback(autofr.remove_schedule, pipe)
        elif isinstance(candidate, Peer):
            stack.enter_context(peer_enabled(pipe, candidate))
        stack.callback(uncompile, denoiser)  # runs first: after the schedule's removal re-compiled it
        if compiled:
            compile_denoiser(denoiser, how)
        yield


# ---------------------------------------------------------------------- what is counted
class _HostReads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in HOST_READS:
            self.count += 1
        return func(*args, **(kwargs or {}))


class _LimitHits(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "recompile_limit" in record.getMessage() or "cache_size_limit" in record.getMessage():
            self.count += 1


def _dynamo_counts() -> tuple[int, int]:
    breaks, graphs = sum(counters["graph_break"].values()), counters["stats"]["unique_graphs"]
    counters.clear()
    return breaks, graphs


def compile_report(pipe, protocol, candidate, how: str) -> dict:
    torch._dynamo.reset()
    counters.clear()
    hits = _LimitHits()
    dynamo_logger = logging.getLogger("torch._dynamo")
    dynamo_logger.addHandler(hits)
    row: dict = {}
    try:
        with running(pipe, candidate, True, how):
            began = time.perf_counter()
            generate(pipe, protocol)
            row["first_run_s"] = time.perf_counter() - began
            row["breaks"], row["graphs"] = _dynamo_counts()
            generate(pipe, protocol)
            row["second_run_breaks"], row["recompiles"] = _dynamo_counts()
    except Exception as error:  # a cache that does not survive compilation on this model
        row["error"] = f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"
    finally:
        dynamo_logger.removeHandler(hits)
    row["limit_hits"] = hits.count
    reads = _HostReads()
    with running(pipe, candidate, False, how), reads:
        generate(pipe, protocol)
    row["host_reads"] = reads.count
    return row


def timed_run(pipe, protocol, candidate, mode: str, how: str) -> float:
    """Seconds of one sampling run of ``candidate`` in ``mode``, after an untimed one (first-call effects)."""
    with running(pipe, candidate, mode == "compiled", how):
        generate(pipe, protocol)
        began = time.perf_counter()
        generate(pipe, protocol)
        return time.perf_counter() - began


# ---------------------------------------------------------------------- the bench of one model
def bench(model: str, repeats: int, samples: int, steps: int | None, how: str, workdir: Path) -> dict:
    config = load_study_config(
        [
            f"study={model}",
            f"cache_dir={workdir / 'cache'}",
            f"storage.journal_path={workdir / 'journal.log'}",
            f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
            *([f"model.num_inference_steps={steps}"] if steps else []),
        ]
    )
    pipe = load_model(config.model)
    protocol = protocol_for(config).replace(num_samples=samples, batch_size=samples)
    steps = config.model.num_inference_steps
    schedules = schedules_for(pipe, steps)
    peers, skipped = peers_for(pipe, protocol, model)
    candidates = {**schedules, **peers}
    predicted, cache_mib = {}, {}
    for label, schedule in schedules.items():
        if schedule is not None:
            accounting = autofr.apply_schedule(pipe, schedule, cost=_cost(pipe))
            generate(pipe, protocol)
            predicted[label], cache_mib[label] = accounting.predicted_speedup, accounting.cache_bytes / 2**20
            autofr.remove_schedule(pipe)
    reports = {label: compile_report(pipe, protocol, candidate, how) for label, candidate in candidates.items()}

    timed = [label for label in candidates if label != "full compute" and "error" not in reports[label]]
    torch._dynamo.config.recompile_limit = 64  # each timed run follows an untimed one, which compiles
    seconds = {(mode, label): [] for mode in MODES for label in ["full compute", *timed]}
    ratios = {(mode, label): [] for mode in MODES for label in timed}
    for repeat in range(repeats):
        order = timed[repeat % len(timed) :] + timed[: repeat % len(timed)]
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            before = timed_run(pipe, protocol, None, mode, how)
            spent = {label: timed_run(pipe, protocol, candidates[label], mode, how) for label in order}
            after = timed_run(pipe, protocol, None, mode, how)
            seconds[(mode, "full compute")] += [before, after]
            for label, value in spent.items():
                seconds[(mode, label)].append(value)
                ratios[(mode, label)].append(0.5 * (before + after) / value)
    rows = []
    for label in candidates:
        row = {"label": label, **reports[label], "predicted": predicted.get(label), "cache_mib": cache_mib.get(label)}
        if label == "full compute" or label in timed:
            for mode in MODES:
                values = ratios.get((mode, label), [1.0])
                row[mode] = (statistics.median(values), min(values), max(values))
                row[f"{mode}_s"] = statistics.median(seconds[(mode, label)])
            row["vs_eager_full"] = statistics.median(seconds[("eager", "full compute")]) / row["compiled_s"]
        rows.append(row)
    return {
        "model": model,
        "steps": steps,
        "samples": samples,
        "repeats": repeats,
        "how": how,
        "backend": BACKEND[0],
        "skipped_peers": skipped,
        "rows": rows,
    }


def _cost(pipe):
    denoiser = denoiser_of(pipe)
    return measure_cost(denoiser, discover_units(denoiser, levels=LEVELS))


# ---------------------------------------------------------------------- the table
def table(result: dict) -> list[str]:
    how = ("regional" if result["how"] == "regional" else "whole model") + f", {result['backend']} backend"
    lines = [
        f"## {result['model']} ({result['steps']} steps, {result['samples']} samples per run, {how} compile, "
        f"median [min-max] of {result['repeats']} interleaved repeats, one thread)",
        "",
        "| setting | eager | compiled | compiled / eager | vs eager full | MAC-pred. | 1st run s | graphs | "
        "breaks | recompiles (run 2) | limit hits | host reads / run | cache MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def speed(value):
        return f"{value[0]:.2f}x [{value[1]:.2f}-{value[2]:.2f}]" if value else "-"

    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['label']} | {speed(row.get('eager'))} | compile failed: {row['error']} |||||||||||")
            continue
        ratio = f"{row['compiled'][0] / row['eager'][0]:.2f}" if row.get("compiled") else "-"
        versus = f"{row['vs_eager_full']:.2f}x" if row.get("vs_eager_full") else "-"
        predicted = f"{row['predicted']:.2f}x" if row.get("predicted") else "-"
        cache = f"{row['cache_mib']:.2f}" if row.get("cache_mib") is not None else "-"
        lines.append(
            f"| {row['label']} | {speed(row.get('eager'))} | {speed(row.get('compiled'))} | {ratio} | "
            f"{versus} | {predicted} | {row['first_run_s']:.1f} | {row['graphs']} | "
            f"{row['breaks']} | {row['recompiles']} | {row['limit_hits']} | {row['host_reads']} | {cache} |"
        )
    if result["skipped_peers"]:
        lines.append("")
        lines += [f"- {method} does not run here: {reason}" for method, reason in result["skipped_peers"].items()]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's preset)")
    parser.add_argument("--how", choices=("regional", "whole"), default="regional")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (eager: Dynamo only, fast)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.repeats, args.samples, args.steps = args.models[:1], 1, 2, 3
    torch.set_num_threads(1)
    BACKEND[0] = args.backend
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            result = bench(model, args.repeats, args.samples, args.steps, args.how, Path(scratch))
            results.append(result)
            print("\n".join(table(result)) + "\n", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
