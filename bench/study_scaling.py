"""Whole-study scaling: trials, peers, confirmation and timing over 1, 2, 4 and 8 workers.

Sampling costs a fixed sleep per sample, so the run measures coordination (the storage, the work
queue, who waits for whom), not this machine's two cores. Each worker is a process that does what an
``autofr-search`` worker does, through the same code: :func:`autofr.execution.run_worker` for the
trials, then :class:`autofr.execution.work.WorkQueue` for the items of :mod:`autofr.search.stages`
(the same stages, dependencies and quiet items; slices sized by
:func:`autofr.search.plan.fid_slice_size`). Every worker has a device of its own (one GPU each).

A study's *shape* gives the samples each step draws:

* ``default``: the default run (digits_unet: 40 trials on 64 samples climbing to 256, FID-256 at 2
  seeds for 10 points, timing on 64 samples x 3 repeats, no peer runs on a UNet);
* ``flux_dev``: the flux_dev preset (100 trials on 8 samples climbing to 128, 25 peer settings,
  FID-2000 at 2 seeds for 10 points, batches of 4).

Modes: ``stages`` (every worker takes part in every stage: this issue) and ``serial`` (the workers
stop after the trials and worker 0 does the rest: how autofr-search worked before). Parallel
efficiency = wall(1 worker) / (workers x wall(workers)).

    python bench/study_scaling.py                          # both shapes, journal (+ PostgreSQL if set)
    python bench/study_scaling.py --shape flux_dev --workers 1 8 --serial-seconds 60
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {
    "default": dict(
        n_trials=40, proxy=64, levels=(64, 256), fid=256, seeds=2, confirm=10, batch=128, peers=0, repeats=3
    ),
    "flux_dev": dict(
        n_trials=100, proxy=8, levels=(8, 32, 128), fid=2000, seeds=2, confirm=10, batch=4, peers=25, repeats=3
    ),
}


def trial_samples(shape: dict, number: int) -> int:
    """Samples trial ``number`` draws: the proxy's, plus the adaptive-fidelity climbs of the plan's shares."""
    from autofr.search.plan import CLIMBS

    samples, share = shape["proxy"], (number * 7919 % 100) / 100
    for climb, level in zip(CLIMBS, shape["levels"][1:]):
        if share < climb:
            samples = level
    return samples


def timing_samples(shape: dict, points: int) -> int:
    """One interleaved timing run: every point and full compute around each block of 4, repeated."""
    return (points + points // 4 + 1) * shape["repeats"] * min(shape["batch"], shape["proxy"])


def worker(storage_cfg, study_name, shape, per_sample, mode, index, barrier, out) -> None:
    import optuna

    from autofr.execution.storage import open_storage
    from autofr.execution.work import WorkerIdentity, WorkItem, WorkQueue
    from autofr.execution.workers import open_study, run_worker
    from autofr.search import stages as S
    from autofr.search.plan import SCHEDULE_COST, fid_slice_size

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(barrier, str(os.getpid())).touch()
    while not Path(barrier, "go").exists():
        time.sleep(0.005)
    began = time.time()
    storage = open_storage(storage_cfg)
    study, _ = open_study(storage, study_name, ["maximize", "minimize"], sampler=optuna.samplers.RandomSampler())

    def objective(trial):
        x = trial.suggest_float("x", 0, 1)
        time.sleep(trial_samples(shape, trial.number) * per_sample * SCHEDULE_COST)
        return x, 1 - x

    run_worker(study, objective, shape["n_trials"], progress=False)
    ran = 0
    if mode == "stages" or index == 0:
        queue = WorkQueue.open(storage, study_name, WorkerIdentity.current(f"device{index}"))
        size = fid_slice_size(shape["fid"], shape["batch"])
        cuts = [(a, min(a + size, shape["fid"])) for a in range(0, shape["fid"], size)]
        seeds = range(shape["seeds"])
        candidates = range(1, shape["confirm"])  # full compute is candidate 0: its slices are the references
        queue.add(
            [WorkItem(S.PEERS_PLAN, S.PEERS_PLAN)]
            + [
                WorkItem(f"{S.FID_REFERENCE}:{s}:{a}", S.FID_REFERENCE, spec={"n": b - a})
                for s in seeds
                for a, b in cuts
            ]
            + [WorkItem(S.CONFIRM_PLAN, S.CONFIRM_PLAN, after=(S.TRIALS, S.PEERS_PLAN, S.PEERS_RECORD))]
        )

        def execute(item):
            samples, cost = 0, SCHEDULE_COST
            if item.stage == S.PEERS_PLAN and shape["peers"]:
                queue.add(
                    [
                        WorkItem(f"{S.PEERS_SCORE}:{k}", S.PEERS_SCORE, after=(S.PEERS_PLAN,))
                        for k in range(shape["peers"])
                    ]
                    + [
                        WorkItem(S.PEERS_TIME, S.PEERS_TIME, after=(S.PEERS_PLAN, S.TRIALS), quiet=True),
                        WorkItem(S.PEERS_RECORD, S.PEERS_RECORD, after=(S.PEERS_SCORE, S.PEERS_TIME, S.TRIALS)),
                    ]
                )
            elif item.stage == S.PEERS_SCORE:
                samples = shape["proxy"]
            elif item.stage == S.PEERS_TIME:
                samples = timing_samples(shape, shape["peers"])
            elif item.stage == S.CONFIRM_PLAN:
                queue.add(
                    [
                        WorkItem(f"{S.FID_SLICE}:{c}:{s}:{a}", S.FID_SLICE, after=(S.CONFIRM_PLAN,), spec={"n": b - a})
                        for c in candidates
                        for s in seeds
                        for a, b in cuts
                    ]
                    + [
                        WorkItem(f"{S.FID_MERGE}:{c}", S.FID_MERGE, after=(S.FID_REFERENCE, S.FID_SLICE))
                        for c in range(shape["confirm"])
                    ]
                    + [
                        WorkItem(S.TIMING, S.TIMING, after=(S.CONFIRM_PLAN,), quiet=True),
                        WorkItem(S.CONFIRM_RECORD, S.CONFIRM_RECORD, after=(S.FID_MERGE, S.TIMING)),
                    ]
                )
            elif item.stage == S.FID_REFERENCE:
                samples, cost = item.spec["n"], 1.0
            elif item.stage == S.FID_SLICE:
                samples = item.spec["n"]
            elif item.stage == S.TIMING:
                samples = timing_samples(shape, shape["confirm"])
            time.sleep(samples * per_sample * cost)
            return {}

        def trials_done(stage):
            return not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

        ran = queue.run(execute, ready=trials_done)
    Path(out).write_text(json.dumps({"began": began, "ended": time.time(), "items": ran}))


def total_samples(shape: dict) -> float:
    """The study's samples in full-compute units (what one worker sleeps through)."""
    from autofr.search.plan import SCHEDULE_COST

    trials = sum(trial_samples(shape, k) for k in range(shape["n_trials"]))
    peers = shape["peers"] * shape["proxy"] + (timing_samples(shape, shape["peers"]) if shape["peers"] else 0)
    references = shape["seeds"] * shape["fid"]
    slices = (shape["confirm"] - 1) * shape["seeds"] * shape["fid"]
    timing = timing_samples(shape, shape["confirm"])
    return (trials + peers + slices + timing) * SCHEDULE_COST + references


def measure(storage: str, shape_name: str, workers: int, mode: str, per_sample: float, scratch: Path) -> dict:
    from bench.coordination import fresh_postgres_database

    drop = None
    if storage == "postgres":
        url, drop = fresh_postgres_database(os.environ["AUTOFR_TEST_POSTGRES_URL"])
        storage_cfg = {"url": url}
    else:
        storage_cfg = {"url": None, "journal_path": str(scratch / f"{shape_name}_{mode}_{workers}.log")}
    name = f"scaling_{shape_name}_{mode}_{workers}"
    barrier = scratch / f"barrier_{name}_{storage}"
    barrier.mkdir()
    context = multiprocessing.get_context("spawn")
    outs = [scratch / f"{name}_{storage}_{k}.json" for k in range(workers)]
    processes = [
        context.Process(
            target=worker,
            args=(storage_cfg, name, SHAPES[shape_name], per_sample, mode, k, str(barrier), str(outs[k])),
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    while len(list(barrier.iterdir())) < workers:
        time.sleep(0.01)
    (barrier / "go").touch()
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise SystemExit(f"a worker failed ({storage}, {shape_name}, {mode}, {workers} workers)")
    results = [json.loads(out.read_text()) for out in outs]
    if drop is not None:
        drop()
    wall = max(r["ended"] for r in results) - min(r["began"] for r in results)
    return {"storage": storage, "shape": shape_name, "mode": mode, "workers": workers, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--mode", nargs="+", default=["serial", "stages"], choices=["serial", "stages"])
    parser.add_argument(
        "--serial-seconds", type=float, default=40.0, help="one worker's sampling time for the whole study"
    )
    args = parser.parse_args()
    storages = ["journal"] + (["postgres"] if os.environ.get("AUTOFR_TEST_POSTGRES_URL") else [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="autofr-scaling-") as scratch:
        for shape in args.shape:
            per_sample = args.serial_seconds / total_samples(SHAPES[shape])
            for storage in storages:
                for mode in args.mode:
                    for workers in args.workers:
                        if mode == "serial" and workers == 1 and "stages" in args.mode:
                            continue  # one worker is the same study either way
                        rows.append(measure(storage, shape, workers, mode, per_sample, Path(scratch)))
                        print(f"done: {rows[-1]}", file=sys.stderr, flush=True)
    print(f"{os.cpu_count()} CPU cores; sleep per sample chosen so one worker samples for {args.serial_seconds:g} s")
    print("| shape | storage | mode | workers | wall s | speedup | parallel efficiency |")
    print("|---|---|---|---:|---:|---:|---:|")
    for row in rows:
        one = next(
            r["wall"]
            for r in rows
            if r["workers"] == 1 and r["shape"] == row["shape"] and r["storage"] == row["storage"]
        )
        speedup = one / row["wall"]
        print(
            f"| {row['shape']} | {row['storage']} | {row['mode']} | {row['workers']} | {row['wall']:.1f} | "
            f"{speedup:.2f}x | {speedup / row['workers']:.2f} |"
        )


if __name__ == "__main__":
    main()
