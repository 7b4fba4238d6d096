"""autofr's search against the caches users reach for instead (diffusers' caches, cache-dit), same protocol.

Stages in this order (each resumable; ``--smoke`` runs them all in minutes with meaningless numbers):

    python bench/peers.py check   --model digits_unet    # which peers run on the model, and why the others do not
    python bench/peers.py search  --model digits_flux    # 100-trial search (target 5%, fidelity 64->256->1024) + every peer
    python bench/peers.py confirm --model digits_flux    # FID-2000 at the study's seed: full compute, autofr's
                                                         #   deciding candidates, every peer setting
    python bench/peers.py time    --model digits_flux    # one interleaved timing run over every confirmed point
    python bench/peers.py rescore --model digits_flux    # the points that decide each method's answer, at 3 seeds
    python bench/peers.py report  --model digits_flux    # table (markdown + JSON) and the front plot

Built on ``bench/target_search.py``'s set-up (``bench/_common.py``: its study overrides, run log and workdir layout: one journal, one
MLflow store, one cache with the FID scores per model under ``--workdir``, default ``bench/work/peers``)
with ``study=<model>`` (the model's preset space) and ``search.peers=auto``: every peer that runs on
the model is a trial of the same study, at its documented default and over a sweep of its main knob.

"Within target": the mean FID-2000 over the seeds a point was scored at is at most 1.05 x full
compute's mean at the same seeds (paired: the same noise for every point at a seed). Per method the
table gives its fastest setting within the target and its speed at equal FID: its speed-FID front,
linearly interpolated at the FID of autofr's answer. Speedups are from one interleaved timing run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from _common import (  # bench/ is the script folder
    BENCH_MODELS,
    chosen_or,
    fid_cell,
    point_of,
    record_run,
    rescore,
    smoke,
    study_config,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
GOAL = 1.3  # autofr at least this much faster than the best peer within the target


def config_of(args):
    extra = ["search.peers=auto", "search.timing_repeats=1"]
    return study_config(args, args.sampler, args.seed, extra=extra)


def prepared(args):
    from autofr.search.study import AutoFRStudy

    study = AutoFRStudy.prepare(config_of(args))
    study.open()
    return study


def stage_check(args) -> None:
    """Which peers run on the model (a probe run each), without a study."""
    from autofr.peers import available_peers
    from autofr.search.study import load_model, protocol_for

    config = config_of(args)
    peers, skipped = available_peers(load_model(config.model), protocol_for(config))
    runs = sorted({p.method for p in peers})
    lines = [f"{args.model}: {len(peers)} peer settings run ({', '.join(runs) or 'none'})"]
    lines += [f"  skipped {method}: {reason}" for method, reason in skipped.items()]
    print("\n".join(lines))
    (args.results / f"peers_{args.model}_check.txt").write_text("\n".join(lines) + "\n")


def stage_search(args) -> None:
    began = time.perf_counter()
    study = prepared(args)
    study.run()
    searched = time.perf_counter()
    stage = study.evaluate_peers()
    completed = study.records().completed()
    entry = {
        "seconds": searched - began,
        "peer_seconds": time.perf_counter() - searched,
        "trials": sum(not t.is_peer for t in completed),
        "peers": sum(t.is_peer for t in completed),
        "peers_skipped": stage.skipped,
        "peers_failed": stage.failed,
        "samples": sum(t.samples_generated or 0 for t in completed if not t.is_peer),
    }
    record_run(args, study.config.study_name, entry)
    print(json.dumps({study.config.study_name: entry}))


def confirmer(study, seeds: int):
    from autofr.search.confirm import Confirmer

    config = study.config
    return Confirmer(
        study.model.pipe,
        study.protocol,
        study.measures,
        config.quality.fid_samples,
        fid_seeds=seeds,
        timing_repeats=0,
        cache_dir=config.cache_dir,
        model_id=config.model.name,
    )


def stage_confirm(args) -> None:
    """FID-2000 at one seed for full compute, the deciding schedules and every peer setting."""
    from autofr.search.confirm import confirm_candidates, deciding_order

    study = prepared(args)
    records = study.records()
    schedules = [
        t for t in confirm_candidates(records, 1, None, order=deciding_order, near_target=True) if not t.is_peer
    ]
    peers = sorted((t for t in records.completed() if t.is_peer and t.confirmation is None), key=deciding_order)
    candidates = schedules[: args.confirm_max] + peers
    began = time.perf_counter()
    done = confirmer(study, 1).confirm(study.study, candidates)
    print(
        f"{study.config.study_name}: {len(done)} confirmed ({len(peers)} peers) in {(time.perf_counter() - began) / 60:.1f} min"
    )


def groups(records, trials=None) -> dict[str, list]:
    """Confirmed points (or ``trials``) by method: autofr's schedules, each kind of hand-set reference,
    each peer method."""
    found: dict[str, list] = {}
    for trial in records.confirmed() if trials is None else trials:
        if trial.origin.is_full_compute:
            continue
        if trial.is_peer:
            name = f"peer: {trial.peer['method']}"
        elif trial.is_reference:
            name = f"hand-set: {trial.origin.label}"
        else:
            name = "autofr (searched)"
        found.setdefault(name, []).append(trial)
    return found


def fastest_within(records, trials):
    from autofr.search import front as fronts

    return fronts.fastest_within_target(records, trials)


def deciding_points(records) -> list:
    """Per method its fastest point within the target and the next faster one (the bracket of its
    answer), and every point within 1% of the limit."""
    from autofr.search import front as fronts

    points = {}
    for trials in groups(records).values():
        best = fastest_within(records, trials)
        faster = sorted((t for t in trials if t.speed > (best.speed if best else 1.0)), key=lambda t: t.speed)
        points.update((p.number, p) for p in (best, faster[0] if faster else None) if p is not None)
        for trial in trials:
            limit = fronts.target_limit(records, trial)
            if limit and abs(trial.fid / limit - 1) <= 0.01:
                points[trial.number] = trial
    return [points[number] for number in sorted(points)]


def stage_rescore(args) -> None:
    study = prepared(args)
    rescore(study, confirmer(study, args.seeds), chosen_or(args, deciding_points), args.seeds)


def stage_time(args) -> None:
    """Every confirmed point and full compute, timed interleaved in one run (median of ``--repeats``)."""
    from autofr.search.confirm import apply_timing, candidate_of, interleaved_speedups, timed_generation
    from autofr.search.records import save_confirmation

    study = prepared(args)
    confirmed = [t for t in study.records().confirmed() if not t.origin.is_full_compute]
    candidates = {str(t.number): candidate_of(t) for t in confirmed}
    protocol = study.protocol.replace(num_samples=args.timing_samples, batch_size=args.timing_samples)
    pipe = study.model.pipe
    timed_generation(pipe, protocol.replace(num_samples=1), {"warm-up": None}, repeats=1)
    began = time.perf_counter()
    timings = interleaved_speedups(pipe, protocol, candidates, repeats=args.repeats)
    print(f"timed {len(candidates)} points x {args.repeats} in {(time.perf_counter() - began) / 60:.1f} min")
    for trial in confirmed:
        save_confirmation(
            study.study,
            trial.number,
            apply_timing(trial.confirmation, timings[str(trial.number)], trial.predicted_speedup),
        )
    (Path(args.workdir) / args.model / "peers_timing.json").write_text(
        json.dumps({key: asdict(t) for key, t in timings.items()}, indent=1)
    )


def stage_quick(args) -> None:
    """The comparison at the study's own top fidelity, without FID-2000: per method, the fastest point
    whose FID-1024 difference to full compute (paired, the study's seed) meets the target, all of them
    and full compute timed interleaved in one run (median of ``--repeats``)."""
    from autofr.search import front as fronts
    from autofr.search.confirm import candidate_of, interleaved_speedups, timed_generation

    study = prepared(args)
    records = study.records()
    completed = records.completed()
    top = max(t.fidelity or 0 for t in completed)
    full = records.full_compute().fid_estimate
    limit = fronts.study_target(records).limit(full)
    best = {}
    for name, trials in groups(records, [t for t in completed if not t.origin.is_full_compute]).items():
        inside = fronts.estimated_within(records, trials, top)
        best[name] = (len(trials), max(inside, key=lambda t: t.search_speedup, default=None))
    candidates = {name: candidate_of(t) for name, (_, t) in best.items() if t is not None}
    protocol = study.protocol.replace(num_samples=args.timing_samples, batch_size=args.timing_samples)
    timed_generation(study.model.pipe, protocol.replace(num_samples=1), {"warm-up": None}, repeats=1)
    timings = interleaved_speedups(study.model.pipe, protocol, candidates, repeats=args.repeats)
    speed = {name: timing.speedup for name, timing in timings.items()}
    autofr = speed.get("autofr (searched)")
    lines = [
        f"{args.model}: full compute FID-{top} {full:.4f} (study seed {args.seed}), limit {limit:.4f}; "
        f"{args.timing_samples} samples per timed call, median of {args.repeats}",
        "",
        f"| method | settings | fastest within target at FID-{top} | FID-{top} | speedup (measured, this run) | autofr / it |",
        "|---|---:|---|---:|---:|---:|",
    ]
    rows = []
    for name, (count, trial) in sorted(best.items(), key=lambda item: (not item[0].startswith("autofr"), item[0])):
        if trial is None:
            lines.append(f"| {name} | {count} | none | - | - | - |")
            continue
        ratio = autofr / speed[name] if autofr else None
        label = trial.label or f"trial {trial.number}"
        lines.append(
            f"| {name} | {count} | {label} ({trial.num_inference_steps} steps) | "
            f"{full + trial.fidelity_deltas[top]:.4f} | {speed[name]:.2f}x | "
            f"{'-' if ratio is None else format(ratio, '.2f') + 'x'} |"
        )
        rows.append(
            {
                "method": name,
                "settings": count,
                "trial": trial.number,
                "label": label,
                "fid": full + trial.fidelity_deltas[top],
                "speedup": speed[name],
                "autofr_ratio": ratio,
            }
        )
    peers = [r for r in rows if r["method"].startswith("peer:")]
    best_peer = max(peers, key=lambda r: r["speedup"], default=None)
    if autofr and best_peer:
        lines += [
            "",
            f"autofr {autofr:.2f}x vs the best peer within target, {best_peer['label']} {best_peer['speedup']:.2f}x: "
            f"{autofr / best_peer['speedup']:.2f}x",
        ]
    text = "\n".join(lines)
    print(text)
    (args.results / f"peers_{args.model}_fid{top}.txt").write_text(text + "\n")
    (args.results / f"peers_{args.model}_fid{top}.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "fidelity": top,
                "full_compute_fid": full,
                "limit": limit,
                "rows": rows,
                "timing": {name: asdict(t) for name, t in timings.items()},
            },
            indent=1,
        )
    )


def speed_at(trials, fid: float):
    """``(speed, exact)``: the fastest speed at which the points' speed-FID front reaches ``fid``
    (linear between the two front points around it); ``exact`` False when even the fastest front
    point is better than ``fid`` (then its speed is a lower bound), None when none reaches it."""
    from autofr.search import front as fronts

    points = sorted(((t.speed, t.fid) for t in trials), key=lambda p: p[0])
    front = [points[i] for i in fronts.pareto_front(points)]
    front.sort()
    inside = [p for p in front if p[1] <= fid]
    if not inside:
        return None, True
    best = max(inside)
    faster = [p for p in front if p[0] > best[0]]
    if not faster:
        return best[0], False
    (s1, f1), (s2, f2) = best, min(faster)
    return s1 + (fid - f1) / (f2 - f1) * (s2 - s1) if f2 > f1 else s1, True


def stage_report(args) -> None:
    from autofr.report import write_study_report
    from autofr.search import front as fronts

    study = prepared(args)
    records = study.records()
    found = groups(records)
    autofr = fastest_within(records, found.get("autofr (searched)", []))
    answer_fid = autofr.fid if autofr else None
    rows = []
    for name, trials in sorted(found.items(), key=lambda item: (not item[0].startswith("autofr"), item[0])):
        best = fastest_within(records, trials)
        speed, exact = speed_at(trials, answer_fid) if answer_fid is not None else (None, True)
        rows.append(
            {
                "method": name,
                "settings": len(trials),
                "fastest_within": _point(records, best),
                "speed_at_autofr_fid": speed,
                "exact": exact,
                "autofr_ratio": autofr.speed / best.speed if autofr and best else None,
            }
        )
    peers = [r for r in rows if r["method"].startswith("peer:") and r["fastest_within"]]
    best_peer = max(peers, key=lambda r: r["fastest_within"]["speed"], default=None)
    ratio = autofr.speed / best_peer["fastest_within"]["speed"] if autofr and best_peer else None
    paths = write_study_report(records, study.config.out_dir, include_plotlyjs=True)
    plot = args.results / f"peers_{args.model}.png"
    plot.write_bytes(Path(paths["front_png"]).read_bytes())
    full = fronts.full_compute_fid(records)
    lines = [
        f"{args.model}: full compute FID-2000 {full:.4f}; target {fronts.study_target(records).describe()}; "
        f"peers skipped: "
        + ("; ".join(f"{m} ({r})" for m, r in (records.info.peers_skipped or {}).items()) or "none"),
        "",
        "| method | settings | fastest within target | FID (seeds) / limit | speed at autofr's FID | autofr / it |",
        "|---|---:|---|---|---:|---:|",
    ]
    for row in rows:
        point, speed = row["fastest_within"], row["speed_at_autofr_fid"]
        at = "-" if speed is None else f"{'' if row['exact'] else '>= '}{speed:.2f}x"
        versus = "-" if row["autofr_ratio"] is None else f"{row['autofr_ratio']:.2f}x"
        lines.append(f"| {row['method']} | {row['settings']} | {_cell(point)} | {_fid(point)} | {at} | {versus} |")
    verdict = (
        "no peer within the target"
        if best_peer is None
        else f"autofr {autofr.speed:.2f}x vs the best peer {best_peer['fastest_within']['label']} "
        f"{best_peer['fastest_within']['speed']:.2f}x: {ratio:.2f}x ({'meets' if ratio >= GOAL else 'misses'} "
        f"the {GOAL}x goal)"
        if autofr
        else "autofr has no schedule within the target"
    )
    lines += ["", verdict, f"plot: {plot}"]
    text = "\n".join(lines)
    print(text)
    (args.results / f"peers_{args.model}.txt").write_text(text + "\n")
    (args.results / f"peers_{args.model}.json").write_text(
        json.dumps(
            {
                "model": args.model,
                "full_compute_fid": full,
                "rows": rows,
                "autofr_over_best_peer": ratio,
                "peers_skipped": records.info.peers_skipped,
            },
            indent=1,
        )
    )


def _point(records, trial):
    return point_of(records, trial)


def _cell(point) -> str:
    if point is None:
        return "none"
    return f"{point['label'] or 'trial ' + str(point['trial'])} ({point['steps']} steps), {point['speed']:.2f}x"


def _fid(point) -> str:
    return fid_cell(point)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=["check", "search", "confirm", "time", "rescore", "report", "quick"])
    parser.add_argument("--model", default="digits_flux", choices=BENCH_MODELS)  # studies/bench_<model>.yaml
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--target", default="5%")
    parser.add_argument(
        "--confirm-max", type=int, default=12, help="autofr's deciding schedules to confirm (peers: all)"
    )
    parser.add_argument("--timing-samples", type=int, default=64)
    parser.add_argument("--fid-samples", type=int, default=2000, help="FID-N of the confirmation")
    parser.add_argument("--levels", default="64,256,1024", help="adaptive-fidelity sample counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "work" / "peers"))
    parser.add_argument("--seeds", type=int, default=3, help="FID seeds of the deciding points (rescore)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--points", default=None, help="rescore: these trial numbers instead of the deciding points")
    parser.add_argument("--smoke", action="store_true", help="a quick run of every stage (meaningless numbers)")
    args = parser.parse_args()
    args.fixed, args.timeout_of = None, None  # target_search's study overrides read these
    torch.set_num_threads(args.threads)
    if args.smoke:
        smoke(args)
    args.results = Path(args.workdir) / "results" if args.smoke else RESULTS
    args.results.mkdir(parents=True, exist_ok=True)
    {
        "check": stage_check,
        "search": stage_search,
        "confirm": stage_confirm,
        "rescore": stage_rescore,
        "time": stage_time,
        "report": stage_report,
        "quick": stage_quick,
    }[args.stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
