"""FID-N of chosen confirmed points of a bench study at more seeds: how much of a gap is noise?

``bench/target_search.py`` scores every point with FID-N at one seed (0), with common random numbers
(every schedule starts from the same noise). Two points a few thousandths of FID apart may swap at
another seed. This script re-scores chosen trials of a finished study at ``--seeds`` with the
study's own protocol and reference (the same code path as the confirmation), then prints each
point's FID per seed, its mean and sd, and for each ``--pairs`` A-B the paired difference per seed
(same noise for A and B at each seed), its mean and sd.

    OMP_NUM_THREADS=1 python bench/fid_seeds.py --model digits_unet --workdir W_UNET --points 0,4,37 \\
        --seeds 0,1,2 --pairs 37-4 --json bench/results/fid_seeds_digits_unet.json

Seed 0 is recomputed too when listed, which checks that the stored confirmation is reproduced.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits_unet")
    parser.add_argument("--trials", type=int, default=100, help="the bench study's trial count (names the study)")
    parser.add_argument("--workdir", required=True, help="the --workdir of a finished bench/target_search.py run")
    parser.add_argument("--study", default=None, help="study name (default: bench_<model>_<trials>)")
    parser.add_argument("--points", required=True, help="comma-separated trial numbers")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--pairs", default="", help="comma-separated A-B trial pairs for paired differences")
    parser.add_argument("--fid-samples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import model_and_measures, open_bench_study

    from autofr.evaluation import generate
    from autofr.schedule import ReuseSchedule
    from autofr.search.records import StudyRecords

    config, study = open_bench_study(
        args.model,
        args.study or f"bench_{args.model}_{args.trials}",
        Path(args.workdir),
        f"quality.fid_samples={args.fid_samples}",
    )
    records = StudyRecords.load(study)
    pipe, protocol, measures = model_and_measures(config)
    protocol = protocol.replace(num_samples=args.fid_samples)
    fid = measures.fid(measures.real_reference)

    points = [int(p) for p in args.points.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    pairs = [tuple(int(x) for x in pair.split("-")) for pair in args.pairs.split(",") if pair]
    scores: dict[int, dict[int, float]] = {}
    for number in points:
        trial = records.trial(number)
        schedule = ReuseSchedule.from_dict(trial.schedule)
        stored = (
            trial.confirmation.fid_seeds.get(str(config.seed), trial.confirmation.fid)
            if trial.confirmation is not None
            else None
        )
        for seed in seeds:
            began = time.perf_counter()
            samples = generate(
                pipe, protocol.replace(seed=seed, num_inference_steps=schedule.num_inference_steps), schedule
            )
            fid.reset()
            scores.setdefault(number, {})[seed] = value = float(fid.score(samples))
            check = ""
            if seed == config.seed and stored is not None and records.info.fid_name == f"fid_{args.fid_samples}":
                check = f" (stored confirmation {stored:.4f}: {'reproduced' if abs(stored - value) < 1e-4 else 'NOT reproduced'})"
            print(
                f"trial {number} seed {seed}: FID-{args.fid_samples} {value:.4f}{check} [{time.perf_counter() - began:.0f} s]",
                flush=True,
            )

    def label(number: int) -> str:
        return records.trial(number).label or f"trial {number}"

    print("\n| point | steps | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
    print("|---|---:|" + "---:|" * (len(seeds) + 2))
    for number in points:
        values = [scores[number][s] for s in seeds]
        sd = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(
            f"| {label(number)} | {records.trial(number).num_inference_steps} | "
            + " | ".join(f"{v:.4f}" for v in values)
            + f" | {statistics.fmean(values):.4f} | {sd:.4f} |"
        )
    if pairs:
        print("\n| paired difference | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd |")
        print("|---|" + "---:|" * (len(seeds) + 2))
        for a, b in pairs:
            diffs = [scores[a][s] - scores[b][s] for s in seeds]
            sd = statistics.stdev(diffs) if len(diffs) > 1 else float("nan")
            print(
                f"| {label(a)} - {label(b)} | "
                + " | ".join(f"{d:+.4f}" for d in diffs)
                + f" | {statistics.fmean(diffs):+.4f} | {sd:.4f} |"
            )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "fid_samples": args.fid_samples,
                    "seeds": seeds,
                    "scores": {label(n): scores[n] for n in points},
                    "pairs": [[label(a), label(b)] for a, b in pairs],
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
