"""The quality-targeted search on the embedded digit models, end to end, in resumable stages.

    python bench/target_search.py search  --model digits_unet --sampler tpe --seed 0    # 100 trials, no FID yet
    python bench/target_search.py samplers --model digits_unet                          # compare the samplers' studies
    python bench/target_search.py confirm --model digits_unet --sampler tpe --seed 0    # FID-2000 at the study's seed
    python bench/target_search.py rescore --model digits_unet --sampler tpe --seed 0    # deciding points at 2 more seeds
                                                                                        #   (--points N,M: those trials instead)
    python bench/target_search.py time    --model digits_unet                           # one interleaved timing run
    python bench/target_search.py report  --model digits_unet --sampler tpe             # tables, JSON, the plot
    python bench/target_search.py quick   --model digits_dit --seeds 0,1,2              # without FID-2000 (below)

Every study of a model shares one workdir (``--workdir``, default ``bench/work``): one journal, one
MLflow store, one cache (full-compute references, FID scores: a hand-set schedule is scored once per
seed for all studies). Settings: target 5% of full compute's FID-2000, adaptive fidelity 64 -> 256
-> 1024 samples, FID-2000 against real digits with digit-classifier features, 1 thread per process.

* ``search --fixed N --timeout-of SAMPLER:SEED``: the fixed-fidelity control, every trial on N samples,
  for the wall time the named adaptive study took.
* "within target": the mean FID over the seeds a point was scored at is at most 1.05 x full compute's
  mean at the same seeds (paired: the same noise for every point at a seed).
* The deciding points (fastest searched and fastest hand-set within target, and every point within 1%
  of the limit) are re-scored until each has three seeds; the answer is read after that.
* ``quick``: the studies' own FID estimates instead of FID-2000 (fastest searched and hand-set trial
  within target per seed), timed in one interleaved run; for studies stopped early.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from _common import (  # bench/ is the script folder
    BENCH_MODELS,
    cell,
    chosen_or,
    fid_cell,
    load_log,
    point_of,
    record_run,
    rescore,
    smoke,
    study_config,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOALS = {"digits_unet": 2.5, "digits_dit": 4.0}


def stage_search(args) -> None:
    from autofr.search.study import AutoFRStudy

    timeout = (
        load_log(args)[f"{args.model}_{args.timeout_of.replace(':', '_s')}"]["seconds"] if args.timeout_of else None
    )
    config = study_config(args, args.sampler, args.seed, args.fixed, timeout)
    began = time.perf_counter()
    study = AutoFRStudy.prepare(config)
    study.open()
    study.run()
    records = study.records()
    completed = records.completed()
    entry = {
        "seconds": time.perf_counter() - began,
        "trials": len(completed),
        "samples": sum(t.samples_generated or 0 for t in completed),
        "by_fidelity": {
            str(n): sum(t.fidelity == n for t in completed)
            for n in sorted({t.fidelity for t in completed if t.fidelity})
        },
    }
    record_run(args, config.study_name, entry)
    print(json.dumps({config.study_name: entry}))


def within_at_top(records, top: int | None = None, upto: int | None = None) -> list:
    """The trials whose exact top-level FID difference meets the target and that are faster than full
    compute, among the first ``upto`` trials when given (a 100-trial study read at a smaller budget)."""
    from autofr.search import front as fronts

    top = top or max((t.fidelity or 0 for t in records.completed()), default=0)
    return fronts.estimated_within(records, (t for t in records.completed() if upto is None or t.number < upto), top)


def fastest_at_top(records, top: int | None = None, upto: int | None = None):
    """The fastest of :func:`within_at_top` (None if none)."""
    return max(within_at_top(records, top, upto), key=lambda t: t.search_speedup, default=None)


def open_records(args, sampler, seed, fixed=None):
    from autofr.search.records import StudyRecords
    from autofr.search.study import open_existing

    config = study_config(args, sampler, seed, fixed)
    return config, StudyRecords.load(open_existing(config.storage, config.study_name))


def stage_samplers(args) -> None:
    """Per sampler and seed: the fastest predicted speedup whose exact FID-1024 (at the study's seed)
    meets the target, trials and samples at each fidelity, wall time."""
    from autofr.search.origin import Origin

    log = load_log(args)
    rows = []
    for sampler in args.samplers.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            try:
                config, records = open_records(args, sampler, seed)
            except Exception as error:  # a study not run yet
                print(f"{sampler} seed {seed}: {error}", file=sys.stderr)
                continue
            inside = within_at_top(records, upto=args.upto)
            best = max(inside, key=lambda t: t.search_speedup, default=None)
            own = [t for t in inside if t.origin is Origin.SEARCH]  # the sampler's own proposals, not the warm start
            best_own = max(own, key=lambda t: t.search_speedup, default=None)
            run = log.get(config.study_name, {})
            if args.upto:  # the cost of the first trials only
                first = [t for t in records.completed() if t.number < args.upto]
                run = {
                    "seconds": sum(t.trial_seconds or 0 for t in first),
                    "samples": sum(t.samples_generated or 0 for t in first),
                    "by_fidelity": {str(n): sum(t.fidelity == n for t in first) for n in (64, 256, 1024)},
                }
            rows.append(
                {
                    "sampler": sampler,
                    "seed": seed,
                    "fastest_within_at_1024": best.search_speedup if best else None,
                    "trial": best.number if best else None,
                    "origin": best.origin.value if best else None,
                    "own_within": len(own),
                    "own_fastest": best_own.search_speedup if best_own else None,
                    "minutes": run.get("seconds", 0) / 60,
                    "samples": run.get("samples"),
                    **run.get("by_fidelity", {}),
                }
            )
    print(
        "| sampler | seed | fastest within target (FID-1024, predicted x) | trial (origin) | own proposals within "
        "(fastest) | trials at 64/256/1024 | samples | minutes |"
    )
    print("|---|---:|---:|---|---|---|---:|---:|")
    for row in rows:
        best = "-" if row["fastest_within_at_1024"] is None else f"{row['fastest_within_at_1024']:.2f}"
        own = f"{row['own_within']}" + (f" ({row['own_fastest']:.2f})" if row["own_fastest"] else "")
        counts = "/".join(str(row.get(str(n), 0)) for n in (64, 256, 1024))
        print(
            f"| {row['sampler']} | {row['seed']} | {best} | {row['trial']} ({row['origin']}) | {own} | {counts} | "
            f"{row['samples']} | {row['minutes']:.1f} |"
        )
    suffix = f"_first{args.upto}" if args.upto else ""
    (args.results / f"samplers_{args.model}{suffix}.json").write_text(json.dumps(rows, indent=1))


def stage_confirm(args) -> None:
    from autofr.search.study import AutoFRStudy

    config = study_config(args, args.sampler, args.seed, args.fixed)
    study = AutoFRStudy.prepare(config)
    study.open()
    began = time.perf_counter()
    done = study.confirm()
    print(f"{config.study_name}: {len(done)} confirmed in {(time.perf_counter() - began) / 60:.1f} min")


def deciding_points(records):
    """Fastest searched and hand-set within the target, and every point within 1% of its limit."""
    from autofr.search import front as fronts

    confirmed = [t for t in records.confirmed() if not t.origin.is_full_compute]
    points = [
        fronts.fastest_within_target(records, (t for t in confirmed if not t.is_reference)),
        fronts.fastest_within_target(records, (t for t in confirmed if t.is_reference)),
    ]
    for trial in confirmed:
        limit = fronts.target_limit(records, trial)
        if limit and abs(trial.fid / limit - 1) <= 0.01:
            points.append(trial)
    return sorted({p.number: p for p in points if p is not None}.values(), key=lambda t: t.number)


def stage_rescore(args) -> None:
    from autofr.search.confirm import Confirmer
    from autofr.search.study import AutoFRStudy

    config = study_config(args, args.sampler, args.seed, args.fixed)
    study = AutoFRStudy.prepare(config)
    study.open()
    confirmer = Confirmer(
        study.model.pipe,
        study.protocol,
        study.measures,
        args.fid_samples,
        fid_seeds=3,
        timing_repeats=0,
        cache_dir=config.cache_dir,
        model_id=config.model.name,
    )
    rescore(study, confirmer, chosen_or(args, deciding_points), 3)


def stage_time(args) -> None:
    """Every confirmed schedule of the model's studies, timed in one interleaved run against full
    compute (blocks bracketed by full compute, median of repeats; ``interleaved_speedups``)."""
    from autofr.schedule import ReuseSchedule
    from autofr.search.confirm import apply_timing, interleaved_speedups, timed_generation
    from autofr.search.records import StudyRecords, save_confirmation
    from autofr.search.study import AutoFRStudy, open_existing

    log = load_log(args)
    names = [name for name in log if name.startswith(args.model)]
    configs = {}
    for name in names:
        sampler, seed = name[len(args.model) + 1 :].split("_s")[0], int(name.split("_s")[1].split("_")[0])
        fixed = int(name.split("_fixed")[1]) if "_fixed" in name else None
        configs[name] = study_config(args, sampler, seed, fixed)
    first = AutoFRStudy.prepare(next(iter(configs.values())))
    schedules = {}
    for config in configs.values():
        for trial in StudyRecords.load(open_existing(config.storage, config.study_name)).confirmed():
            schedules.setdefault(trial.schedule_key(), ReuseSchedule.from_dict(trial.schedule))
    protocol = first.protocol.replace(num_samples=args.timing_samples, batch_size=args.timing_samples)
    timed_generation(first.model.pipe, protocol.replace(num_samples=1), {"warm-up": None}, repeats=1)
    began = time.perf_counter()
    timings = interleaved_speedups(first.model.pipe, protocol, schedules, repeats=args.repeats)
    full_seconds = next(iter(timings.values())).full_seconds
    print(
        f"timed {len(schedules)} schedules x {args.repeats} in {(time.perf_counter() - began) / 60:.1f} min; "
        f"full compute {full_seconds:.3f} s"
    )
    for config in configs.values():
        study = open_existing(config.storage, config.study_name)
        for trial in StudyRecords.load(study).confirmed():
            save_confirmation(
                study,
                trial.number,
                apply_timing(trial.confirmation, timings[trial.schedule_key()], trial.predicted_speedup),
            )
    (Path(args.workdir) / args.model / "timing.json").write_text(
        json.dumps(
            {
                "full": full_seconds,
                **{key: t.seconds for key, t in timings.items()},
                "speedups": {key: t.speedup for key, t in timings.items()},
            },
            indent=1,
        )
    )


def stage_quick(args) -> None:
    """Without FID-2000: per study (``--seeds``), the fastest searched (TPE or calibrated) and the fastest
    hand-set trial whose FID estimate (the study's own, at up to the top fidelity, the study's seed)
    meets the target, all timed in one interleaved run; the ratio per seed. For studies stopped before
    their budget, or when FID-2000 does not fit the time."""
    from autofr.schedule import ReuseSchedule
    from autofr.search.confirm import interleaved_speedups, timed_generation
    from autofr.search.origin import Origin
    from autofr.search.study import AutoFRStudy

    rows, schedules, first = [], {}, None
    for seed in (int(s) for s in args.seeds.split(",")):
        config, records = open_records(args, args.sampler, seed)
        first = first or config
        feasible = [
            t for t in records.completed() if t.feasible and not t.origin.is_full_compute and t.search_speedup > 1
        ]
        searched = max((t for t in feasible if not t.is_reference), key=lambda t: t.search_speedup, default=None)
        handset = max((t for t in feasible if t.is_reference), key=lambda t: t.search_speedup, default=None)
        rows.append(
            {
                "seed": seed,
                "trials": len(records.completed()),
                "limit": fronts_limit(records),
                "searched": searched,
                "handset": handset,
            }
        )
        for trial in (searched, handset):
            if trial is not None:
                schedules[trial.schedule_key()] = ReuseSchedule.from_dict(trial.schedule)
    study = AutoFRStudy.prepare(first)
    protocol = study.protocol.replace(num_samples=args.timing_samples, batch_size=args.timing_samples)
    timed_generation(study.model.pipe, protocol.replace(num_samples=1), {"warm-up": None}, repeats=1)
    timings = interleaved_speedups(study.model.pipe, protocol, schedules, repeats=args.repeats)
    print(
        f"{args.model}, {args.sampler}: the study's own FID estimate (top fidelity {args.levels.split(',')[-1]}), "
        f"speed measured in one run ({args.timing_samples} samples, median of {args.repeats})\n"
    )
    print(
        "| seed | trials | fastest searched within target | estimate / limit | fastest hand-set within target | "
        "ratio (measured) | ratio (MACs) |"
    )
    print("|---:|---:|---|---|---|---:|---:|")
    out = []
    for row in rows:
        s, h = row["searched"], row["handset"]
        cell = {}
        for name, t in (("searched", s), ("handset", h)):
            cell[name] = (
                None
                if t is None
                else {
                    "trial": t.number,
                    "label": t.display_label,
                    "steps": t.num_inference_steps,
                    "fidelity": t.fidelity,
                    "predicted": t.search_speedup,
                    "measured": timings[t.schedule_key()].speedup,
                    "estimate": t.fid_estimate,
                }
            )
        measured = cell["searched"]["measured"] / cell["handset"]["measured"] if s and h else None
        predicted = s.search_speedup / h.search_speedup if s and h else None

        def text(c):
            if c is None:
                return "none"
            name = f"trial {c['trial']}" if c["label"] == Origin.SEARCH else c["label"]
            return f"{name} ({c['steps']} steps), {c['measured']:.2f}x ({c['predicted']:.2f}x MACs)"

        estimate = f"{s.fid_estimate:.4f} (N={s.fidelity}) / {row['limit']:.4f}" if s else "-"
        print(
            f"| {row['seed']} | {row['trials']} | {text(cell['searched'])} | {estimate} | {text(cell['handset'])} | "
            f"{measured:.2f}x | {predicted:.2f}x |"
            if measured
            else f"| {row['seed']} | {row['trials']} | {text(cell['searched'])} | {estimate} | {text(cell['handset'])} | - | - |"
        )
        out.append(
            {
                "seed": row["seed"],
                "trials": row["trials"],
                "limit": row["limit"],
                **cell,
                "ratio_measured": measured,
                "ratio_predicted": predicted,
            }
        )
    (args.results / f"quick_{args.model}_{args.sampler}.json").write_text(json.dumps(out, indent=1))


def fronts_limit(records) -> float:
    """The highest FID estimate within the study's target."""
    from autofr.search import front as fronts

    return fronts.study_target(records).limit(records.full_compute().fid_estimate)


def stage_report(args) -> None:
    from autofr.report import write_study_report
    from autofr.search import front as fronts

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        try:
            config, records = open_records(args, args.sampler, seed, args.fixed)
        except Exception as error:
            print(f"seed {seed}: {error}", file=sys.stderr)
            continue
        confirmed = records.confirmed()
        searched = fronts.fastest_within_target(records, (t for t in confirmed if not t.is_reference))
        handset = fronts.fastest_within_target(records, (t for t in confirmed if t.is_reference))
        paths = write_study_report(records, config.out_dir)
        rows.append(
            {
                "seed": seed,
                "searched": point_of(records, searched),
                "handset": point_of(records, handset),
                "ratio": searched.speed / handset.speed if searched and handset else None,
                "plot": str(paths["front_png"]),
            }
        )
    goal = GOALS.get(args.model)
    print(
        f"| seed | fastest searched within target | FID (seeds) / limit | fastest hand-set within target | "
        f"ratio | >= {goal}x | >= 1.3x hand-set |"
    )
    print("|---:|---|---|---|---:|---|---|")
    for row in rows:
        s, h = row["searched"], row["handset"]
        print(
            f"| {row['seed']} | {cell(s)} | {fid_cell(s)} | {cell(h)} | "
            f"{row['ratio']:.2f}x | {'yes' if s and s['speed'] >= goal else 'no'} | "
            f"{'yes' if row['ratio'] and row['ratio'] >= 1.3 else 'no'} |"
            if row["ratio"]
            else f"| {row['seed']} | {cell(s)} | {fid_cell(s)} | {cell(h)} | - | - | - |"
        )
    suffix = f"_fixed{args.fixed}" if args.fixed else ""
    (args.results / f"target_{args.model}_{args.sampler}{suffix}.json").write_text(json.dumps(rows, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["search", "samplers", "confirm", "rescore", "time", "report", "quick"])
    parser.add_argument("--model", default="digits_unet", choices=BENCH_MODELS)  # studies/bench_<model>.yaml
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--samplers", default="tpe,gp,nsga2")
    parser.add_argument("--upto", type=int, default=None, help="samplers: read each study at its first N trials")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--target", default="5%")
    parser.add_argument("--confirm-max", type=int, default=12)
    parser.add_argument("--fixed", type=int, default=None, help="fixed-fidelity control: every trial on N samples")
    parser.add_argument("--timeout-of", default=None, help="SAMPLER:SEED: run for the wall time that study took")
    parser.add_argument("--timing-samples", type=int, default=64)
    parser.add_argument(
        "--fid-samples", type=int, default=2000, help="FID-N of the confirmation (2000; less for a smoke run)"
    )
    parser.add_argument("--levels", default="64,256,1024", help="adaptive-fidelity sample counts")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "work"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", default=None, help="rescore: these trial numbers instead of the deciding points")
    parser.add_argument("--smoke", action="store_true", help="a quick run of a stage (meaningless numbers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        smoke(args)
    args.results = Path(args.workdir) / "results" if args.smoke else RESULTS
    args.results.mkdir(parents=True, exist_ok=True)
    {
        "search": stage_search,
        "samplers": stage_samplers,
        "confirm": stage_confirm,
        "rescore": stage_rescore,
        "time": stage_time,
        "report": stage_report,
        "quick": stage_quick,
    }[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
