"""How well do the per-trial proxies rank a bench study's confirmed points, overall and near the goal?

``bench/proxy_fidelity.py`` measures proxy fidelity on a fixed set of schedules. This script asks
the question the search itself poses, on the points a finished ``bench/target_search.py`` study
confirmed with FID-N: Spearman's rho between every recorded proxy (``proxy_metrics``) and FID-N
against real data, over all confirmed points and over those within ``--band`` sampling steps
(where the schedules that compete near full-compute quality live). With ``--fresh-seeds`` it also
re-scores ``fid_real`` at other proxy seeds, to separate a sampler that overfits the one proxy
seed it saw from a proxy that cannot resolve the band at any seed.

    OMP_NUM_THREADS=1 python bench/proxy_band.py --model digits_unet --workdir W_UNET --band 15-35 --fresh-seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits_unet")
    parser.add_argument("--trials", type=int, default=100, help="the bench study's trial count (names the study)")
    parser.add_argument("--study", default=None, help="study name (default: bench_<model>_<trials>)")
    parser.add_argument("--workdir", required=True, help="the --workdir of a finished bench/target_search.py run")
    parser.add_argument("--band", default="15-35", help="step counts LO-HI for the second column")
    parser.add_argument("--fresh-seeds", default="", help="comma-separated proxy seeds to re-score fid_real at")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from scipy.stats import spearmanr

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import model_and_measures, open_bench_study

    from autofr.evaluation import generate
    from autofr.schedule import ReuseSchedule
    from autofr.search.measures import REAL_DATA_PROXY
    from autofr.search.records import StudyRecords

    config, study = open_bench_study(args.model, args.study or f"bench_{args.model}_{args.trials}", Path(args.workdir))
    records = StudyRecords.load(study)
    points = records.confirmed()
    if len(points) < 3:
        raise SystemExit(f"{config.study_name} has {len(points)} confirmed points: run the bench study first")
    lo, hi = (int(x) for x in args.band.split("-"))
    rows = [{"trial": t.number, "steps": t.num_inference_steps, "fid": t.fid, **t.proxy_metrics} for t in points]

    seeds = [int(s) for s in args.fresh_seeds.split(",") if s]
    if seeds:
        pipe, protocol, measures = model_and_measures(config)
        measure = measures.build(REAL_DATA_PROXY, None)
        for row, trial in zip(rows, points):
            schedule = ReuseSchedule.from_dict(trial.schedule)
            for seed in seeds:
                samples = generate(
                    pipe, protocol.replace(seed=seed, num_inference_steps=schedule.num_inference_steps), schedule
                )
                measure.reset()
                row[f"fid_real@{seed}"] = float(measure.score(samples))
            row["fid_real@mean"] = statistics.fmean(row[f"fid_real@{seed}"] for seed in seeds)

    metrics = [k for k in rows[0] if k not in ("trial", "steps", "fid") and all(k in r for r in rows)]
    band = [r for r in rows if lo <= r["steps"] <= hi]

    def rho(subset, metric):
        return (
            float(spearmanr([r[metric] for r in subset], [r["fid"] for r in subset])[0])
            if len(subset) > 2
            else float("nan")
        )

    print(
        f"\n### {config.study_name}: Spearman rho of each proxy vs {records.info.fid_label} "
        f"to {records.info.fid_reference or 'real'} data (proxy seed {config.seed} unless marked @seed)\n"
    )
    print(f"| proxy | all confirmed (n={len(rows)}) | {lo}-{hi} steps (n={len(band)}) |")
    print("|---|---:|---:|")
    table = {}
    for metric in metrics:
        table[metric] = (rho(rows, metric), rho(band, metric))
        print(f"| {metric} | {table[metric][0]:.3f} | {table[metric][1]:.3f} |")
    if args.json is not None:
        args.json.write_text(
            json.dumps({"study": config.study_name, "band": [lo, hi], "rows": rows, "spearman": table}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
