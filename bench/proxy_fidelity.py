"""Proxy fidelity on an embedded digit model: does each fast proxy rank schedules the way FID does?

For a set of reuse schedules (FRDiff's uniform M = 1..6 with and without score mixing, plus random
per-layer schedules), the script measures every quality proxy (latent MSE, PSNR, SSIM, small-sample
KID; distances to the full-compute samples at the proxy protocol) and FID-N with digit-classifier
features against two references (the real digits, and the full-compute samples at the FID
protocol), then prints, per FID reference, each proxy's Spearman rho / Kendall tau against FID and
its cost relative to FID as a markdown table.

The proxy protocol and the FID protocol use different seeds, so a proxy cannot look good merely by
sharing samples with FID. References (full-compute samples, feature statistics) are cached in
``--cache-dir`` (default ``$AUTOFR_CACHE_DIR`` or ``~/.cache/autofr``).

    python bench/proxy_fidelity.py                 # 36 schedules, FID-2k, proxies on 128 samples
    python bench/proxy_fidelity.py --quick         # smoke run: 8 schedules, FID-256, 32-sample proxies
    python bench/proxy_fidelity.py --rescore bench/results/proxy_fidelity_digits_unet.json --json OUT.json
                                                   # proxies only, FID-N reused from an earlier run

``fid_real`` is the one proxy measured against the real digits instead of the full-compute samples
(FID at the proxy's N; see autofr.search.measures.StudyMeasures.build).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

PROXIES = ("latent_mse", "psnr", "ssim", "kid_small", "fid_real")
FULL_DEFAULTS = {"steps": 50, "fid_samples": 2000, "proxy_samples": 128, "random_schedules": 24}
QUICK_DEFAULTS = {"steps": 20, "fid_samples": 256, "proxy_samples": 32, "random_schedules": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_unet", help="embedded model name (default digits_unet)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 50; --quick: 20)")
    parser.add_argument("--guidance-scale", type=float, default=None, help="CFG scale (default: the pipeline's)")
    parser.add_argument("--fid-samples", type=int, default=None, help="N of FID-N (default 2000; --quick: 256)")
    parser.add_argument(
        "--proxy-samples", type=int, default=None, help="samples per proxy evaluation (default 128; --quick: 32)"
    )
    parser.add_argument(
        "--random-schedules", type=int, default=None, help="random per-layer schedules (default 24; --quick: 2)"
    )
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument(
        "--seed", type=int, default=0, help="seeds the FID protocol (proxies use seed + 1) and the random schedules"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write per-schedule values and the tables here")
    parser.add_argument(
        "--rescore",
        type=Path,
        default=None,
        help="a --json file of an earlier run: recompute the proxies on its schedules, reuse its FID-N",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20 steps, 8 schedules, FID-256, 32-sample proxies (explicit options still win)",
    )
    args = parser.parse_args(argv)
    if args.rescore is not None:  # the earlier run's protocol and schedules, whatever was passed here
        earlier = json.loads(Path(args.rescore).read_text())["args"]
        for name, kind in (
            ("model", str),
            ("steps", int),
            ("fid_samples", int),
            ("proxy_samples", int),
            ("random_schedules", int),
            ("seed", int),
            ("guidance_scale", float),
        ):
            value = earlier.get(name, "None")
            setattr(args, name, None if value == "None" else kind(value))
        args.quick = earlier.get("quick") == "True"
    defaults = QUICK_DEFAULTS if args.quick else FULL_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def build_schedules(pipe, steps: int, num_random: int, seed: int, quick: bool) -> list:
    """Uniform M = 1..6 with and without mixing, then random per-layer schedules."""
    from autofr.schedule import Mixing, ReuseSchedule, UnitSchedule

    intervals = (1, 2, 4) if quick else range(1, 7)
    # M=1 computes every step, so mixing never applies: "M=1 +mixing" would repeat the full-compute row.
    schedules = [
        ReuseSchedule.uniform(pipe, steps, m, mixing=mixing)
        for m in intervals
        for mixing in (False, True)
        if not (m == 1 and mixing)
    ]
    rng = random.Random(seed)
    base = ReuseSchedule.uniform(pipe, steps, 1)
    for index in range(num_random):
        units = {}
        for name in base.units:
            interval = rng.randint(1, 6)
            units[name] = UnitSchedule(interval=interval, offset=rng.randrange(interval))
        mixing = Mixing(bias=rng.uniform(0.3, 0.7), slope=rng.choice((10.0, 30.0))) if rng.random() < 0.5 else None
        schedule = dataclasses.replace(
            base, units=units, mixing=mixing, provenance={"kind": f"random per-layer #{index}", "seed": seed}
        )
        schedule.validate()
        schedules.append(schedule)
    return schedules


def load_earlier(path: Path) -> list[dict]:
    """Rows of an earlier --json run; files from before fid_real was a proxy name FID-N ``fid_real``/``fid_full``."""
    rows = json.loads(Path(path).read_text())["schedules"]
    for row in rows:
        if "fid_n_real" not in row:
            for side in ("real", "full"):
                row[f"fid_n_{side}"] = row.pop(f"fid_{side}")
                row[f"fid_n_{side}_seconds"] = row.pop(f"fid_{side}_seconds")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("autofr.quality").setLevel(logging.INFO)  # reference cache hits and misses
    from autofr.evaluation import EvalProtocol, generate
    from autofr.models import load_digit_classifier, load_pipeline
    from autofr.models.digits_data import load_digits_images
    from autofr.quality import DigitFeatures, ReferenceCache, build_measure, format_fidelity_table, proxy_fidelity

    pipe = load_pipeline(args.model, device=args.device)
    features = DigitFeatures(load_digit_classifier(args.device))
    cache = ReferenceCache(args.cache_dir)
    fid_protocol = EvalProtocol(
        num_samples=args.fid_samples,
        seed=args.seed,
        batch_size=args.batch_size,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        scheduler=None,
        num_classes=pipe.num_classes,
    )
    proxy_protocol = fid_protocol.replace(num_samples=args.proxy_samples, seed=args.seed + 1)

    real_images, _ = load_digits_images("all", size=16)
    real_stats = cache.feature_stats(f"digits-all-16px-{len(real_images)}", real_images, features)
    full_stats = (
        None
        if args.rescore
        else cache.reference_stats(pipe, fid_protocol, features, model_id=args.model, progress=True)
    )
    proxy_reference = cache.samples(pipe, proxy_protocol, model_id=args.model)

    measures = {
        name: build_measure(name, reference=proxy_reference)
        for name in PROXIES
        if name not in ("kid_small", "fid_real")
    }
    measures["kid_small"] = build_measure("kid_small", feature=features, reference=proxy_reference)
    measures["fid_real"] = build_measure("fid", feature=features, reference=real_stats)
    earlier = load_earlier(args.rescore) if args.rescore else None
    fid_real = build_measure("fid", feature=features, reference=real_stats)
    fid_full = build_measure("fid", feature=features, reference=full_stats) if full_stats is not None else None

    schedules = build_schedules(pipe, args.steps, args.random_schedules, args.seed, args.quick)
    rows = []
    began_all = time.perf_counter()
    for schedule in tqdm(schedules, desc="schedules", unit="schedule"):
        row = {"schedule": schedule.provenance.get("kind", "?")}
        proxy_batch = generate(pipe, proxy_protocol, schedule=schedule)
        for name, measure in measures.items():
            began = time.perf_counter()
            row[name] = measure.score(proxy_batch)
            row[f"{name}_seconds"] = proxy_batch.seconds + time.perf_counter() - began
        if earlier is not None:  # FID-N from the earlier run; its stored proxies must be reproduced
            old = earlier[len(rows)]
            if old["schedule"] != row["schedule"]:
                raise SystemExit(
                    f"{args.rescore}: schedule {len(rows)} is {old['schedule']!r}, here {row['schedule']!r}: "
                    "rescore with the same --model/--steps/--seed/--random-schedules"
                )
            for name in PROXIES:
                if name in old and abs(old[name] - row[name]) > 1e-4 * max(1.0, abs(old[name])):
                    raise SystemExit(
                        f"{args.rescore}: {name} of {row['schedule']} was {old[name]}, now {row[name]}: "
                        "not the same protocol"
                    )
            row.update({k: old[k] for k in ("fid_n_real", "fid_n_real_seconds", "fid_n_full", "fid_n_full_seconds")})
            rows.append(row)
            continue
        fid_batch = generate(pipe, fid_protocol, schedule=schedule)
        for key, measure in (("fid_n_real", fid_real), ("fid_n_full", fid_full)):
            began = time.perf_counter()
            row[key] = measure.score(fid_batch)
            row[f"{key}_seconds"] = fid_batch.seconds + time.perf_counter() - began
        rows.append(row)

    n = args.fid_samples
    wall_minutes = (time.perf_counter() - began_all) / 60
    print(
        f"## Proxy fidelity on {args.model}, {args.steps} steps, {len(schedules)} schedules, "
        f"proxies on {args.proxy_samples} samples, FID-{n} with digit features ({args.device}, "
        f"{torch.get_num_threads()} threads, {wall_minutes:.0f} min)\n"
    )
    print("| schedule | " + " | ".join(PROXIES) + f" | FID-{n} real | FID-{n} full |")
    print("|---|" + "---:|" * (len(PROXIES) + 2))
    for row in rows:
        print(
            f"| {row['schedule']} | "
            + " | ".join(f"{row[p]:.4g}" for p in PROXIES)
            + f" | {row['fid_n_real']:.4g} | {row['fid_n_full']:.4g} |"
        )
    tables = {}
    for key, label in (("fid_n_real", f"FID-{n} vs real digits"), ("fid_n_full", f"FID-{n} vs full-compute samples")):
        fidelity = proxy_fidelity(
            {p: [row[p] for row in rows] for p in PROXIES},
            [row[key] for row in rows],
            proxy_seconds={p: [row[f"{p}_seconds"] for row in rows] for p in PROXIES},
            fid_seconds=[row[f"{key}_seconds"] for row in rows],
        )
        tables[key] = fidelity
        print(f"\n### {label}\n")
        print(format_fidelity_table(fidelity, fid_name=f"FID-{n}"))
    if args.rescore is not None:
        print(
            f"\n(--rescore: FID-{n} values and seconds are from {args.rescore}; proxy seconds are from this run, "
            "so the cost ratios mix two runs' machine load)"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "protocols": {"fid": fid_protocol.describe(), "proxy": proxy_protocol.describe()},
                    "schedules": rows,
                    "fidelity": tables,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
