"""Coordination overhead per trial: what run_worker costs around an objective that does nothing.

For each storage (the journal file; PostgreSQL when ``AUTOFR_TEST_POSTGRES_URL`` is set, e.g. by
``source .ci/services.sh``) and 1, 4 and 8 worker processes, a fresh study runs ``--trials`` trials
through :func:`autofr.execution.workers.run_worker` (global budget, heartbeats on, stale-trial checks,
budget claims: the production path). The objective returns at once, so all time is coordination:

* ``trials``: COMPLETE trials, checked to equal the budget exactly; ``over budget``: trials that
  lost the race for the last places and were retired (PRUNED, see autofr/execution/workers.py);
* ``trials/s``: the study's completed trials per wall second, all workers together;
* ``coord p50/p95``: per trial and worker, the time outside the objective: asking (incl. popping
  the queue and the first heartbeat), the budget checks, telling, the stale-trial check;
* ``MLflow p95``: with an MLflow tracking URI (``--mlflow``, default ``$AUTOFR_TEST_MLFLOW_URI``),
  each trial also logs one child run as the search does (``MlflowClient.create_run`` + ``log_batch``
  + ``set_terminated``), timed separately; ``-`` without one;
* ``% of 10 s``: (coord p95 + MLflow p95) / 10 s, the share of a 10-second trial lost to coordination.

    python bench/coordination.py                 # 300 trials per row (a few minutes on 2 cores)
    python bench/coordination.py --trials 5000 --workers 1 8 --mlflow ''   # growth up to 4,900 trials
    python bench/coordination.py --trials 100    # quicker

* ``trial k ms``: autofr's bookkeeping per trial when the study holds k trials (median over the 50
  trials numbered just below k); it must stay flat as the study grows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# `import autofr.execution` loads neither torch nor diffusers (autofr/__init__.py is lazy): workers start in a second.

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run ..." line per trial
TRIAL_SECONDS = 10.0
WINDOW = 50  # trials per checkpoint median


def worker(
    storage_cfg: dict, study_name: str, n_trials: int, mlflow_uri: str | None, parent_run: tuple | None, out: str
) -> None:
    import optuna

    from autofr.execution.storage import open_storage
    from autofr.execution.workers import open_study, run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    client = None
    if mlflow_uri:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param

        client = MlflowClient(mlflow_uri)
    study, _ = open_study(
        open_storage(storage_cfg), study_name, ["maximize", "minimize"], sampler=optuna.samplers.RandomSampler()
    )
    marks: list[tuple[int, float, float]] = []  # (trial number, objective entered, objective left)
    mlflow_s: list[float] = []
    told: list[float] = []

    def objective(trial):
        entered = time.perf_counter()
        x = trial.suggest_float("x", 0.0, 1.0)
        if client is not None:
            start = time.perf_counter()
            experiment_id, parent_run_id = parent_run
            run = client.create_run(
                experiment_id, tags={"mlflow.parentRunId": parent_run_id}, run_name=f"trial-{trial.number}"
            )
            now = int(time.time() * 1000)
            client.log_batch(
                run.info.run_id,
                metrics=[Metric("speedup", x, now, 0), Metric("proxy", 1 - x, now, 0)],
                params=[Param("x", str(x)), Param("trial_number", str(trial.number))],
            )
            client.set_terminated(run.info.run_id)
            mlflow_s.append(time.perf_counter() - start)
        marks.append((trial.number, entered, time.perf_counter()))
        return x, 1.0 - x

    started = time.perf_counter()
    run_worker(study, objective, n_trials, callbacks=[lambda s, t: told.append(time.perf_counter())], progress=False)
    # Coordination of trial k: from the previous tell (or the start) to entering the objective, plus
    # from leaving the objective to the end of its tell. Only COMPLETE trials call the callback.
    coordination, previous = [], started
    for (number, entered, left), done in zip(marks, told):
        coordination.append((number, (entered - previous) + (done - left)))
        previous = done
    offset = time.time() - time.perf_counter()  # one wall clock for all workers
    Path(out).write_text(
        json.dumps(
            {
                "coordination_s": coordination,
                "mlflow_s": mlflow_s,
                "first": started + offset,
                "last": (told[-1] if told else started) + offset,
            }
        )
    )


def fresh_postgres_database(url: str):
    import psycopg2

    name = f"autofr_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(url, connect_timeout=5)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')

    def drop():
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    return url.rsplit("/", 1)[0] + "/" + name, drop


def measure(
    storage: str,
    n_workers: int,
    n_trials: int,
    mlflow_uri: str | None,
    scratch: Path,
    checkpoints: tuple[int, ...] = (),
) -> dict:
    import optuna

    from autofr.execution.storage import open_storage
    from autofr.execution.workers import open_study

    drop = None
    if storage == "postgres":
        url, drop = fresh_postgres_database(os.environ["AUTOFR_TEST_POSTGRES_URL"])
        storage_cfg = {"url": url}
    else:
        storage_cfg = {"url": None, "journal_path": str(scratch / f"journal_{n_workers}.log")}
    study_name = f"bench_{storage}_{n_workers}"
    open_study(open_storage(storage_cfg), study_name, ["maximize", "minimize"])  # created before the workers start
    parent_run = None
    if mlflow_uri:
        from mlflow import MlflowClient

        client = MlflowClient(mlflow_uri)
        experiment_id = client.create_experiment(f"autofr-bench-{uuid.uuid4().hex[:8]}")
        parent_run = (experiment_id, client.create_run(experiment_id, run_name=study_name).info.run_id)
    context = multiprocessing.get_context("spawn")
    outs = [str(scratch / f"{storage}_{n_workers}_{index}.json") for index in range(n_workers)]
    processes = [
        context.Process(target=worker, args=(storage_cfg, study_name, n_trials, mlflow_uri, parent_run, out))
        for out in outs
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    if any(process.exitcode for process in processes):
        raise SystemExit(f"a worker failed ({storage}, {n_workers} workers)")
    results = [json.loads(Path(out).read_text()) for out in outs]
    study = optuna.load_study(study_name=study_name, storage=open_storage(storage_cfg))
    trials = study.get_trials(deepcopy=False)
    complete = sum(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    retired = sum(bool(trial.user_attrs.get("over_budget")) for trial in trials)
    if complete != n_trials:
        raise SystemExit(f"the global budget was missed: {complete} COMPLETE trials, not {n_trials}")
    if drop is not None:
        drop()
    by_number = sorted((number, s) for result in results for number, s in result["coordination_s"])
    coordination = sorted(s for _, s in by_number)
    mlflow_s = sorted(s for result in results for s in result["mlflow_s"])
    wall = max(r["last"] for r in results) - min(r["first"] for r in results)
    return {
        "storage": storage,
        "workers": n_workers,
        "complete": complete,
        "retired": retired,
        "trials_per_s": complete / wall,
        "p50_ms": 1000 * statistics.median(coordination),
        "p95_ms": 1000 * percentile(coordination, 95),
        "mlflow_p95_ms": 1000 * percentile(mlflow_s, 95) if mlflow_s else None,
        # bookkeeping at a study size: median over the WINDOW trials numbered just below each checkpoint
        "at_ms": {
            k: 1000 * statistics.median([s for number, s in by_number if k - WINDOW <= number < k])
            for k in checkpoints
            if k <= n_trials and k >= WINDOW
        },
    }


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, round(q / 100 * (len(sorted_values) - 1)))]


def table(rows: list[dict]) -> str:
    lines = [
        "| storage | workers | trials | over budget | trials/s | coord p50 ms | coord p95 ms | MLflow p95 ms | % of 10 s trial |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mlflow = "-" if row["mlflow_p95_ms"] is None else f"{row['mlflow_p95_ms']:.0f}"
        overhead = 100 * (row["p95_ms"] + (row["mlflow_p95_ms"] or 0)) / 1000 / TRIAL_SECONDS
        lines.append(
            f"| {row['storage']} | {row['workers']} | {row['complete']} | {row['retired']} | {row['trials_per_s']:.1f} | "
            f"{row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {mlflow} | {overhead:.2f} % |"
        )
    return "\n".join(lines)


def growth_table(rows: list[dict], checkpoints: tuple[int, ...]) -> str:
    """Per-trial bookkeeping at each study size; the last column is the largest size over the first."""
    shown = [k for k in checkpoints if any(k in row["at_ms"] for row in rows)]
    lines = [
        "| storage | workers | " + " | ".join(f"trial {k} ms" for k in shown) + " | last / first |",
        "|---|---:|" + "---:|" * (len(shown) + 1),
    ]
    for row in rows:
        values = [row["at_ms"].get(k) for k in shown]
        present = [v for v in values if v is not None]
        ratio = f"{present[-1] / present[0]:.2f}x" if len(present) > 1 else "-"
        lines.append(
            f"| {row['storage']} | {row['workers']} | "
            + " | ".join("-" if v is None else f"{v:.1f}" for v in values)
            + f" | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300, help="completed trials per study (global budget)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument(
        "--mlflow",
        default=os.environ.get("AUTOFR_TEST_MLFLOW_URI"),
        help="MLflow tracking URI ('' for none: the growth columns measure autofr's own bookkeeping)",
    )
    parser.add_argument(
        "--checkpoints",
        default="100,1000,4900",
        help="study sizes at which the per-trial cost is reported (median of the 50 trials before); "
        "the last trials of a study wait for the other workers' last trials (the exact "
        "budget), so the largest checkpoint stays short of the budget",
    )
    args = parser.parse_args()
    storages = ["journal"] + (["postgres"] if os.environ.get("AUTOFR_TEST_POSTGRES_URL") else [])
    checkpoints = tuple(int(k) for k in args.checkpoints.split(",") if k)
    rows = []
    with tempfile.TemporaryDirectory(prefix="autofr-bench-") as scratch:
        for storage in storages:
            for n_workers in args.workers:
                rows.append(measure(storage, n_workers, args.trials, args.mlflow or None, Path(scratch), checkpoints))
                print(f"done: {storage}, {n_workers} workers", file=sys.stderr, flush=True)
    print(f"{os.cpu_count()} CPU cores; {args.trials} trials per row; MLflow: {'server' if args.mlflow else 'off'}")
    print(table(rows))
    print()
    print(growth_table(rows, checkpoints))


if __name__ == "__main__":
    main()
