"""What the bench scripts share (no script imports another): reopening a finished bench study and its model,
protocol and measures; the study settings of bench/target_search.py and bench/peers.py (the bench_target
preset, studies/bench_target.yaml, plus the run's own model, sampler, seed, budget and folders), their run
log, re-scoring at more seeds and the table cells. Studies are built through autofr's public
:func:`autofr.config.load_study_config`; the answer and "within target" come from
:mod:`autofr.search.front` only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

#: The models with a bench preset (studies/bench_<model>.yaml).
BENCH_MODELS = ("digits_unet", "digits_dit", "digits_flux")
#: ``--smoke``: every code path of a bench script in minutes (few steps and samples; numbers meaningless).
SMOKE_OVERRIDES = (
    "model.num_inference_steps=4",
    "space.steps=[3,4]",
    "space.baseline_steps=[3]",
    "space.max_interval=2",
    "quality.batch_size=16",
)


def smoke(args) -> None:
    """Shrink ``args`` to a smoke run in its own folders (``--smoke``); results go to ``<workdir>/results``."""
    args.trials, args.workdir = min(args.trials, 4), str(Path(args.workdir) / "smoke")
    args.fid_samples, args.levels = 16, "8,16"
    args.overrides = SMOKE_OVERRIDES


def open_bench_study(model: str, study_name: str, workdir: Path, *extra: str):
    """``(config, study)`` of a finished bench study kept in ``workdir`` (journal and caches)."""
    from autofr.config import load_study_config
    from autofr.search.study import open_existing

    workdir = Path(workdir)
    if (workdir / model / "journal.log").exists():  # bench/target_search.py keeps one folder per model
        workdir = workdir / model
    if not (workdir / "journal.log").exists():
        raise SystemExit(f"{workdir / 'journal.log'} does not exist: give the --workdir of a finished bench run")
    config = load_study_config(
        [
            f"model={model}",
            f"study_name={study_name}",
            f"storage.journal_path={Path(workdir) / 'journal.log'}",
            f"tracking.uri=sqlite:///{Path(workdir) / 'mlflow.db'}",
            f"cache_dir={Path(workdir) / 'cache'}",
            *extra,
        ]
    )
    return config, open_existing(config.storage, config.study_name)


def model_and_measures(config):
    """``(pipe, protocol, measures)`` of a study config."""
    from autofr.search.measures import StudyMeasures
    from autofr.search.study import load_model, protocol_for

    return load_model(config.model), protocol_for(config), StudyMeasures.resolve(config.quality, config.model)


def overrides(args, sampler: str, seed: int, fixed: int | None = None, timeout: float | None = None) -> list[str]:
    work = Path(args.workdir) / args.model
    name = f"{args.model}_{sampler}_s{seed}" + (f"_fixed{fixed}" if fixed else "")
    fidelity = f"[{fixed}]" if fixed else f"[{args.levels}]"
    extra = [f"quality.proxy_samples={fixed if fixed else args.levels.split(',')[0]}"]
    if timeout:
        extra += [f"search.timeout_s={timeout}", "search.n_trials=100000"]
    return [
        f"study=bench_{args.model}",  # studies/bench_<model>.yaml: the model's preset and what the bench fixes
        f"study_name={name}",
        f"seed={seed}",
        f"sampler={sampler}",
        f"search.n_trials={args.trials}",
        f"quality.fid_samples={args.fid_samples}",
        f"search.fidelity={fidelity}",
        f"search.confirm_max={args.confirm_max}",
        f"search.target={args.target}",
        f"storage.journal_path={work / 'journal.log'}",
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        f"cache_dir={work / 'cache'}",
        f"out_dir={work / 'out' / name}",
        *extra,
        *getattr(args, "overrides", ()),  # --smoke
    ]


def study_config(args, sampler, seed, fixed=None, timeout=None, extra=()):
    from autofr.config import load_study_config

    return load_study_config([*overrides(args, sampler, seed, fixed, timeout), *extra])


def log_path(args) -> Path:
    return Path(args.workdir) / args.model / "runs.json"


def load_log(args) -> dict:
    path = log_path(args)
    return json.loads(path.read_text()) if path.is_file() else {}


def record_run(args, name: str, entry: dict) -> None:
    """Add one study's run to the model's log (read again under a lock: studies run side by side); a
    study that has an entry already (resumed, or its peer stage run later) keeps its total time."""
    import fcntl

    from autofr.files import atomic_write_text

    with open(log_path(args).with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        log = load_log(args)
        previous = log.get(name)
        if previous:  # a resumed study (or a later stage on it): its time is the sum of its runs
            entry = dict(entry)
            for key in ("seconds", "peer_seconds"):
                if key in entry:
                    entry[key] += previous.get(key, 0.0)
            entry["runs"] = previous.get("runs", 1) + 1
        log[name] = entry
        atomic_write_text(log_path(args), json.dumps(log, indent=1))


def with_timing(confirmation, old):
    """``confirmation`` (more FID seeds) carrying ``old``'s speed from the timing run."""
    confirmation.latency_s, confirmation.full_latency_s = old.latency_s, old.full_latency_s
    confirmation.measured_speedup, confirmation.speed_gap = old.measured_speedup, old.speed_gap
    return confirmation


def chosen_or(args, pick):
    """``pick`` (records -> trials), or the trials ``--points`` names."""
    if not args.points:
        return pick
    numbers = [int(n) for n in args.points.split(",")]
    return lambda records: [records.trial(n) for n in numbers]


def rescore(study, scorer, pick, seeds: int) -> None:
    """Score the trials ``pick(records)`` names at ``seeds`` FID seeds (``scorer``: a Confirmer), each
    kept with the speed of its timing run, until every one it names has them (a re-scored point can move
    another into the deciding set); then print each one's verdict: its mean FID over the seeds against
    the limit from full compute's mean at the same seeds."""
    from autofr.search import front as fronts
    from autofr.search.records import save_confirmation

    while True:
        todo = [t for t in pick(study.records()) if t.confirmation is None or len(t.confirmation.fid_seeds) < seeds]
        if not todo:
            break
        for trial in todo:
            began = time.perf_counter()
            confirmation = scorer.score(trial)
            if trial.confirmation is not None:
                confirmation = with_timing(confirmation, trial.confirmation)
            save_confirmation(study.study, trial.number, confirmation)
            print(
                f"trial {trial.number} ({trial.display_label}) at {seeds} seeds [{time.perf_counter() - began:.0f} s]",
                flush=True,
            )
    records = study.records()
    for trial in pick(records):
        limit = fronts.target_limit(records, trial)
        print(
            f"{study.config.study_name} trial {trial.number} ({trial.display_label}): "
            f"FID {trial.fid:.4f} at seeds {sorted(trial.confirmation.fid_seeds)}, limit {limit:.4f}: "
            f"{'within' if fronts.within_target(records, trial) else 'outside'} by {abs(trial.fid / limit - 1):.2%}",
            flush=True,
        )


def point_of(records, trial):
    from autofr.search import front as fronts

    if trial is None:
        return None
    return {
        "trial": trial.number,
        "label": trial.display_label,
        "steps": trial.num_inference_steps,
        "speed": trial.speed,
        "measured": trial.confirmation.measured_speedup is not None,
        "fid": trial.fid,
        "seeds": trial.confirmation.fid_seeds,
        "limit": fronts.target_limit(records, trial),
    }


def cell(point) -> str:
    from autofr.search.origin import Origin

    if point is None:
        return "none"
    name = f"trial {point['trial']}" if point["label"] == Origin.SEARCH else point["label"]  # unlabelled: searched
    return f"{name} ({point['steps']} steps), {point['speed']:.2f}x"


def fid_cell(point) -> str:
    if point is None:
        return "-"
    return f"{point['fid']:.4f} ({len(point['seeds'])}) / {point['limit']:.4f}"
