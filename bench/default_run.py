"""The default run as a new user makes it: ``autofr-search`` then ``autofr-export``, at several seeds.

    python bench/default_run.py --seeds 0,1,2          # each in a fresh folder, timed, then checked at FID-2000

For each seed: a fresh folder and cache, ``autofr-search seed=<s>`` with nothing else changed, then
``autofr-export`` (its default: the fastest confirmed schedule within the target), both timed as
commands (wall clock; the machine's threads). Then the check, at FID-2000 against real digits at three
seeds (paired, the same noise for every point) from the shared cache of ``bench/target_search.py``:
is the exported schedule a searched one, within the target by FID-2000, and faster (measured,
interleaved) than every hand-set baseline within the target?
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def run_default(seed: int, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    env_cache = ["cache_dir=" + str(folder / "cache")]
    began = time.perf_counter()
    search = subprocess.run(
        [sys.executable, "-m", "autofr.cli.search", f"seed={seed}", "search.progress=false", *env_cache],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    search_s = time.perf_counter() - began
    (folder / "search.out").write_text(search.stdout + search.stderr)
    began = time.perf_counter()
    export = subprocess.run(
        [sys.executable, "-m", "autofr.cli.export", f"seed={seed}", *env_cache],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    export_s = time.perf_counter() - began
    (folder / "export.out").write_text(export.stdout + export.stderr)
    return {
        "seed": seed,
        "search_rc": search.returncode,
        "export_rc": export.returncode,
        "search_s": search_s,
        "export_s": export_s,
        "minutes": (search_s + export_s) / 60,
        "export_out": export.stdout.strip().splitlines(),
        "schedule": str(folder / "autofr_outputs" / "digits_unet" / "schedule.json"),
    }


def check(
    runs: list[dict], workdir: Path, fid_seeds: list[int], threads: int, cached_only: bool = False
) -> list[dict]:
    """FID-2000 of each exported schedule and of every hand-set baseline at ``fid_seeds``, and one
    interleaved timing run of all of them against full compute."""
    import torch

    torch.set_num_threads(threads)
    from autofr.config import load_study_config
    from autofr.schedule import ReuseSchedule
    from autofr.search.confirm import Confirmer, interleaved_speedups, timed_generation
    from autofr.search.origin import Origin
    from autofr.search.records import TrialRecord
    from autofr.search.study import AutoFRStudy

    work = workdir / "digits_unet"
    config = load_study_config(
        [
            "quality.fid_samples=2000",
            f"seed={fid_seeds[0]}",
            f"cache_dir={work / 'cache'}",
            f"storage.journal_path={work / 'default_check.log'}",
            f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        ]
    )
    study = AutoFRStudy.prepare(config)

    def confirmer(seeds: int) -> Confirmer:
        return Confirmer(
            study.model.pipe,
            study.protocol,
            study.measures,
            2000,
            fid_seeds=seeds,
            timing_repeats=0,
            cache_dir=config.cache_dir,
            model_id=config.model.name,
        )

    points, every = {}, confirmer(len(fid_seeds))
    for origin, label, params in study.space.warm_start():
        trial = _record(study.space, params, origin, label)
        if cached_only and not origin.is_full_compute and len(every.cached_seeds(trial)) < len(fid_seeds):
            continue  # --cached-handset: only the hand-set points bench/target_search.py scored at every seed
        points[label] = trial
    for run in runs:
        path = Path(run["schedule"])
        if path.is_file():
            data = json.loads(path.read_text())
            points[f"exported seed {run['seed']}"] = TrialRecord(
                number=-1,
                state=None,
                values=None,
                params={},
                origin=Origin.parse(data["provenance"].get("origin")),
                label=f"exported seed {run['seed']}",
                schedule=data,
            )
    # every point at the first seed; the ones that can be within the target (up to 10% above its limit)
    # and every exported schedule at all seeds
    first, scored = confirmer(1), {}
    for label, trial in points.items():
        scored[label] = first.score(trial)
    limit_first = 1.05 * scored["full compute"].fid
    for label, trial in points.items():
        if label == "full compute" or label.startswith("exported") or scored[label].fid <= 1.1 * limit_first:
            began = time.perf_counter()
            scored[label] = every.score(trial)
            print(
                f"{label}: FID-2000 {scored[label].fid:.4f} over {len(scored[label].fid_seeds)} seeds "
                f"[{time.perf_counter() - began:.0f} s]",
                flush=True,
            )
    scored["full compute"] = every.score(points["full compute"])
    schedules = {label: ReuseSchedule.from_dict(t.schedule) for label, t in points.items()}
    protocol = study.protocol.replace(num_samples=64, batch_size=64)
    timed_generation(study.model.pipe, protocol.replace(num_samples=1), {"warm-up": None}, repeats=1)
    timings = interleaved_speedups(study.model.pipe, protocol, schedules, repeats=5)
    rows = []
    for label, confirmation in scored.items():
        speed = timings[label].speedup
        full = confirmation.fid_full_seeds  # full compute at the same seeds as this point: a paired limit
        limit = 1.05 * sum(full.values()) / len(full)
        rows.append(
            {
                "label": label,
                "origin": points[label].origin,
                "reference": points[label].is_reference,
                "fid": confirmation.fid,
                "seeds": len(confirmation.fid_seeds),
                "limit": limit,
                "within": confirmation.fid <= limit,
                "speedup": speed,
            }
        )
    return rows


def _record(space, params, origin, label):
    import optuna

    from autofr.search.records import TrialRecord

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(params)
    trial = study.ask()
    schedule = space.suggest(trial)
    return TrialRecord(
        number=-1, state=None, values=None, params={}, origin=origin, label=label, schedule=schedule.to_dict()
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--folder", default=str(ROOT / "bench" / "work" / "default"))
    parser.add_argument(
        "--workdir", default=str(ROOT / "bench" / "work"), help="bench/target_search.py's (shared FID cache)"
    )
    parser.add_argument("--fid-seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=1, help="threads for the FID-2000 check")
    parser.add_argument("--skip-runs", action="store_true", help="check the runs already in --folder")
    parser.add_argument(
        "--cached-handset",
        action="store_true",
        help="check only the hand-set points whose FID-2000 at every seed is in the shared cache",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = Path(args.folder) / "runs.json"
    if args.skip_runs and results.is_file():
        runs = json.loads(results.read_text())
    else:
        runs = [run_default(seed, Path(args.folder) / f"seed{seed}") for seed in seeds]
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(runs, indent=1))
    for run in runs:
        print(
            f"seed {run['seed']}: search {run['search_s'] / 60:.1f} min + export {run['export_s']:.0f} s "
            f"(exit {run['search_rc']}/{run['export_rc']}); " + (run["export_out"][0] if run["export_out"] else "")
        )
    rows = check(
        runs, Path(args.workdir), [int(s) for s in args.fid_seeds.split(",")], args.threads, args.cached_handset
    )
    handset = [r for r in rows if r["reference"] and r["within"] and r["label"] != "full compute"]
    best = max(handset, key=lambda r: r["speedup"], default=None)
    print("\n| point | origin | FID-2000 (seeds) | limit | within 1.05x | measured speedup |")
    print("|---|---|---:|---:|---|---:|")
    for row in sorted(rows, key=lambda r: r["speedup"]):
        print(
            f"| {row['label']} | {row['origin']} | {row['fid']:.4f} ({row['seeds']}) | {row['limit']:.4f} | "
            f"{'yes' if row['within'] else 'no'} | {row['speedup']:.2f}x |"
        )
    for row in (r for r in rows if r["label"].startswith("exported")):
        verdict = not row["reference"] and row["within"] and (best is None or row["speedup"] > best["speedup"])
        print(
            f"{row['label']}: searched={row['origin']}, within={row['within']}, {row['speedup']:.2f}x vs best hand-set "
            f"{best['label'] + ' ' + format(best['speedup'], '.2f') + 'x' if best else 'none'}: {'PASS' if verdict else 'FAIL'}"
        )
    (ROOT / "bench" / "results" / "default_run.json").write_text(json.dumps({"runs": runs, "points": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
