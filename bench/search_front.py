"""Searched front vs hand-set baselines on the embedded digit models.

Runs an Auto-FR study (``--trials`` trials including its warm start, FID-N confirmation of every
proxy-front member, the two best proxies and every warm-start reference). The hand-set baselines
are warm-start trials of the same study, so they share its protocol exactly: full compute at
DDIM-50 and at ``--baseline-steps`` (10-40), FRDiff uniform M=2,3,4 with and without mixing.
Every confirmed point gets FID-N against real digits and against the full-compute DDIM-50 samples;
then all points are timed side by side in one run (interleaved, median of ``--repeats``), so the
speedups are ratios taken together. Prints the table, which baselines the searched front does not
dominate, the hypervolume ratio (searched front / baselines) and the goal check (fastest searched
point with FID <= 1.05 x FID(DDIM-50)).

    python bench/search_front.py --model digits_unet --trials 100 --fid-samples 2000 --threads 1 --proxy latent_mse
    python bench/search_front.py --model digits_unet --trials 12 --fid-samples 200 --quick   # smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits_unet")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--fid-samples", type=int, default=2000)
    parser.add_argument("--proxy-samples", type=int, default=64)
    parser.add_argument("--baseline-steps", default="10,20,30,40")
    parser.add_argument("--sampler", default="tpe", help="tpe | nsga2 | gp")
    parser.add_argument("--proxy", default=None, help="quality.proxy (default: the quality config's)")
    parser.add_argument("--threshold", default="0.01",
                        help="proxy constraint: trials above it are infeasible; a number, or a ratio to the "
                             "full-compute proxy like 1.2x (fid_real); default 0.01; 0 = none")
    parser.add_argument("--confirm-layers", type=int, default=1,
                        help="confirm this many non-dominated layers of the proxy front with FID (search.confirm_layers)")
    parser.add_argument("--confirm-proxies", default="",
                        help="comma-separated recorded metrics whose (speed, metric) fronts are confirmed too "
                             "(search.confirm_proxies), e.g. latent_mse")
    parser.add_argument("--speed-model", default="latency", help="macs | latency (calibrated on this machine)")
    parser.add_argument("--timing-samples", type=int, default=64, help="samples per timed generation")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats (median)")
    parser.add_argument("--seed", type=int, default=0,
                        help="study seed: the sampler's, the proxy's and FID-N's (a replicate of the whole benchmark)")
    parser.add_argument("--workdir", default=None, help="keeps storage, MLflow and caches (default: a temp dir)")
    parser.add_argument("--confirm-only", action="store_true",
                        help="run (or resume) the study and its FID confirmation, then stop before timing: time later, "
                             "on an otherwise idle machine, with the same arguments")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import optuna

    from autofr.cli._config import compose
    from autofr.cli.search import search
    from autofr.schedule import ReuseSchedule
    from autofr.search.front import hypervolume_2d, pareto_front, trial_records
    from autofr.execution.storage import open_storage
    from autofr.search.study import load_model, protocol_from_config, timed_generation

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="autofr-bench-"))
    baseline_steps = [int(s) for s in args.baseline_steps.split(",") if s]
    overrides = [
        f"model={args.model}", f"study_name=bench_{args.model}_{args.trials}", f"search.n_trials={args.trials}",
        f"quality.fid_samples={args.fid_samples}", f"quality.proxy_samples={args.proxy_samples}",
        f"sampler={args.sampler}", f"space.baseline_steps=[{','.join(map(str, baseline_steps))}]",
        f"search.speed_model={args.speed_model}",
        "search.confirm_top_k=2", "search.confirm_max=null", f"search.confirm_layers={args.confirm_layers}", "search.progress=false",
        f"search.confirm_proxies=[{args.confirm_proxies}]",
        f"storage.journal_path={workdir / 'journal.log'}", f"tracking.uri=sqlite:///{workdir / 'mlflow.db'}",
        f"out_dir={workdir / 'out'}", f"cache_dir={workdir / 'cache'}", f"seed={args.seed}",
    ]
    if args.proxy:
        overrides.append(f"quality.proxy={args.proxy}")
    if args.threshold not in ("0", "0.0", "none"):
        overrides.append(f"quality.threshold={args.threshold}")
    cfg = compose("config", overrides)

    began = time.perf_counter()
    search(cfg)
    search_seconds = time.perf_counter() - began
    if args.confirm_only:
        print(f"study and FID confirmation done in {search_seconds / 60:.1f} min (--confirm-only: not timed)")
        return
    study = optuna.load_study(study_name=cfg.study_name, storage=open_storage(cfg.storage))

    base_steps = int(cfg.model.num_inference_steps)
    points = []  # [label, kind, steps, speed, fid, fid_vs_full, predicted speed]
    schedules = {}
    for trial in trial_records(study):
        attrs = trial.user_attrs
        if "fid" not in attrs:
            continue
        origin = attrs.get("origin")
        kind = "baseline" if origin in ("baseline", "frdiff", "reduced_steps") else "searched"
        label = attrs.get("label") or f"trial {trial.number}"
        if origin == "baseline":
            label = f"DDIM-{base_steps} (full compute)"
        elif origin == "reduced_steps":
            label = f"DDIM-{attrs['num_inference_steps']}"
        schedules[label] = ReuseSchedule.from_dict(attrs["schedule"])
        points.append([label, kind, attrs["num_inference_steps"], None, attrs["fid"], attrs["fid_vs_full"],
                       attrs["predicted_speedup"]])

    # Every point timed side by side in one run: interleaved, median of --repeats.
    pipe = load_model(cfg)
    timing = protocol_from_config(cfg).replace(num_samples=args.timing_samples)
    timed_generation(pipe, timing.replace(num_samples=1), {"warm-up": None}, repeats=1)
    began = time.perf_counter()
    full_label = f"DDIM-{base_steps} (full compute)"
    if full_label not in schedules:  # the reference is timed in the same rounds as everything else
        schedules = {full_label: None, **schedules}
    seconds = timed_generation(pipe, timing, schedules, repeats=args.repeats)
    timing_minutes = (time.perf_counter() - began) / 60
    for point in points:
        point[3] = seconds[full_label] / seconds[point[0]]

    baselines = [p for p in points if p[1] == "baseline"]
    searched = [p for p in points if p[1] == "searched"]
    front_idx = pareto_front([(p[3], p[4]) for p in searched]) if searched else []
    front = [searched[i] for i in front_idx]
    fid_50 = next(p[4] for p in points if p[0].startswith(f"DDIM-{base_steps} (full"))

    def dominated(b):
        return any(f[3] >= b[3] and f[4] <= b[4] and (f[3] > b[3] or f[4] < b[4]) for f in front)

    reference = (1.0, max(p[4] for p in points) * 1.1)
    hv_front = hypervolume_2d([(p[3], p[4]) for p in front], reference)
    hv_base = hypervolume_2d([(p[3], p[4]) for p in baselines], reference)
    hv_all = hypervolume_2d([(p[3], p[4]) for p in front + baselines], reference)
    within = [p for p in searched if p[4] <= 1.05 * fid_50]
    best = max(within, key=lambda p: p[3]) if within else None
    within_base = [p for p in baselines if p[4] <= 1.05 * fid_50]
    best_base = max(within_base, key=lambda p: p[3]) if within_base else None

    print(f"\n## {cfg.model.name}: {args.trials}-trial search ({args.sampler}, {args.speed_model} speed model, proxy threshold "
          f"{args.threshold or 'none'}), FID-{args.fid_samples} (digit features), proxy {cfg.quality.proxy} on "
          f"{args.proxy_samples} samples, seeds from {cfg.seed}\n")
    print(f"search wall time (trials + FID confirmation + MLflow): {search_seconds / 60:.1f} min; side-by-side "
          f"timing of all {len(points)} points: {timing_minutes:.1f} min ({args.timing_samples} samples, median of "
          f"{args.repeats}); {torch.get_num_threads()} thread(s), {'cuda' if torch.cuda.is_available() else 'cpu'}\n")
    print(f"| point | kind | steps | measured speedup | predicted ({args.speed_model}) | FID-{args.fid_samples} vs real "
          "| FID vs full compute | on front / dominated |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for p in sorted(points, key=lambda p: -p[3]):
        flag = "front" if p in front else ("dominated by front" if p[1] == "baseline" and dominated(p) else "")
        print(f"| {p[0]} | {p[1]} | {p[2]} | {p[3]:.2f}x | {p[6]:.2f}x | {p[4]:.3f} | {p[5]:.3f} | {flag} |")
    undominated = [b[0] for b in baselines if not dominated(b)]
    print(f"\nbaselines not dominated by the searched front: {undominated or 'none'}")
    print(f"hypervolume (speed x FID, ref speed 1.0, FID {reference[1]:.3f}): front {hv_front:.4f}, "
          f"baselines {hv_base:.4f}, ratio {hv_front / max(hv_base, 1e-12):.2f} (front+baselines {hv_all:.4f})")
    limit = 1.05 * fid_50
    if best:
        print(f"goal: fastest searched point with FID <= 1.05 x FID(DDIM-{base_steps}) = {limit:.3f}: "
              f"{best[0]} at {best[3]:.2f}x (FID {best[4]:.3f})")
    else:
        print(f"goal: no searched point within 1.05 x FID(DDIM-{base_steps}) = {limit:.3f}")
    if best_base:
        print(f"fastest baseline within it: {best_base[0]} at {best_base[3]:.2f}x (FID {best_base[4]:.3f})")
    (HERE / "results").mkdir(exist_ok=True)
    stem = f"search_front_{cfg.model.name}" + (f"_seed{args.seed}" if args.seed else "")
    (HERE / "results" / f"{stem}.json").write_text(json.dumps(
        {"points": points, "hypervolume": {"front": hv_front, "baselines": hv_base}, "fid_ddim50": fid_50,
         "fid_samples": args.fid_samples, "trials": args.trials, "threshold": args.threshold,
         "sampler": args.sampler, "seed": args.seed, "search_minutes": search_seconds / 60}, indent=1))
    _plot(points, front, cfg.model.name, args, HERE / "results" / f"{stem}.png")


def _plot(points, front, name, args, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    searched = [p for p in points if p[1] == "searched"]
    ax.scatter([p[3] for p in searched], [p[4] for p in searched], s=14, c="tab:blue", alpha=0.6, label="searched (confirmed)")
    front = sorted(front, key=lambda p: p[3])
    ax.plot([p[3] for p in front], [p[4] for p in front], "-o", c="tab:blue", ms=5, label="searched front")
    for p in points:
        if p[1] == "baseline":
            marker = "s" if p[0].startswith("DDIM") else "^"
            ax.scatter([p[3]], [p[4]], marker=marker, s=40, c="tab:red" if marker == "s" else "tab:orange")
            ax.annotate(p[0].replace(" (full compute)", ""), (p[3], p[4]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xlabel("measured speedup vs DDIM-50")
    ax.set_ylabel(f"FID-{args.fid_samples} vs real digits")
    ax.set_title(f"{name}: searched front vs DDIM-k (squares) and FRDiff (triangles)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def replot(json_path: str) -> None:
    """Redraw the plot from a results JSON written by a previous run."""
    import types

    data = json.loads(Path(json_path).read_text())
    points = [tuple(p) for p in data["points"]]
    searched = [p for p in points if p[1] == "searched"]
    from autofr.search.front import pareto_front

    front = [searched[i] for i in pareto_front([(p[3], p[4]) for p in searched])]
    name = Path(json_path).stem.replace("search_front_", "")
    fid_samples = int(data.get("fid_samples", 500))
    _plot(points, front, name, types.SimpleNamespace(fid_samples=fid_samples), Path(json_path).with_suffix(".png"))


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--replot":
        replot(sys.argv[2])
    else:
        main()
