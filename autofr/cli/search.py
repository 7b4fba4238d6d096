"""``autofr-search``: run an Auto-FR study (a Hydra app driving Optuna).

    autofr-search                                   # embedded digits_unet, ~30 trials, local storage + MLflow
    autofr-search model=digits_dit sampler=nsga2 search.n_trials=100
    autofr-search search.workers=4                  # 4 local worker processes on one study
    autofr-search -m hydra/launcher=slurm storage=postgres +worker='range(8)'   # 8 SLURM jobs on one study
    autofr-search study=sd15 model.path=/models/stable-diffusion-v1-5

Re-running the same command resumes the study: same Optuna study, same MLflow parent run.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from autofr.cli._config import compose, conf_dir, run_cli
from autofr.errors import AutoFRError, ConfigError

logger = logging.getLogger("autofr.search")


def _progress(iterable, desc: str, total: int | None = None, enabled: bool = True):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def search(cfg: DictConfig, worker_only: bool = False) -> int:
    """Run one worker of the study and, unless ``worker_only``, confirm the front and summarise."""
    import optuna

    from autofr.cost import measure_cost
    from autofr.quality import ReferenceCache
    from autofr.reuse import discover_units, model_fingerprint, resolve_denoiser
    from autofr.search.objective import EXTRA_METRICS, Objective
    from autofr.search.space import SearchSpace
    from autofr.search.storage import mask_url, open_storage
    from autofr.search.study import (build_sampler, build_speed_model, confirm, confirm_proxies, feature_options,
                                     load_model, protocol_from_config, proxy_real_reference)
    from autofr.search.workers import open_study, run_worker, wait_for_user_attr
    from autofr.tracking import Tracker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out_dir = Path(cfg.out_dir)
    show = bool(cfg.search.progress)
    # Everything that can fail on bad input fails here, before any trial runs.
    sampler = build_sampler(cfg.sampler)
    SearchSpace.check_config(cfg.space)
    real = proxy_real_reference(cfg)  # proxy and threshold settings, before anything is written
    confirm_proxies(cfg)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    tracker.check()
    pipe = load_model(cfg)
    denoiser = resolve_denoiser(pipe)
    units = discover_units(denoiser)
    protocol = protocol_from_config(cfg)
    cost = measure_cost(pipe, units, protocol=protocol)  # inputs built from the config, or captured from the pipeline
    space = SearchSpace.from_config(
        cfg.space, units, type(denoiser).__name__, model_fingerprint(denoiser, units),
        int(cfg.model.num_inference_steps), type(pipe.scheduler).__name__,
    )
    storage = open_storage(cfg.storage)  # after every config check: a bad override creates nothing
    speed = build_speed_model(cfg, denoiser, units, cost, cfg.get("cache_dir"))
    print(f"autofr: {cfg.model.name} ({type(denoiser).__name__}, {len(units)} reusable units, "
          f"{cost.total_macs / 1e6:.1f} M MACs per forward, {100 * cost.reusable_fraction:.0f}% reusable)")
    print(space.size_summary())

    study, created = open_study(storage, cfg.study_name, directions=["maximize", "minimize"], sampler=sampler)
    if created:
        study.set_user_attr("model_id", str(cfg.model.name))
        study.set_user_attr("protocol", protocol.describe())
        study.set_user_attr("space", space.describe())
        study.set_user_attr("proxy_name", str(cfg.quality.proxy))
        study.set_user_attr("baseline_steps", int(cfg.model.num_inference_steps))
        url = cfg.storage.get("url") or os.environ.get("AUTOFR_STORAGE_URL")
        study.set_user_attr("storage", mask_url(str(url)) if url else str(cfg.storage.get("journal_path")))
        if cfg.search.warm_start:
            for origin, label, params in space.warm_start():
                study.enqueue_trial(params, user_attrs={"origin": origin, "label": label})
        parent = tracker.create_parent_run(cfg.study_name, _flat_config(cfg))
        study.set_user_attr("mlflow_parent_run_id", parent)
        study.set_user_attr("mlflow_experiment_id", tracker.experiment_id)
    parent = wait_for_user_attr(study, "mlflow_parent_run_id", timeout_s=120)
    print(f"study {cfg.study_name!r} ({'new' if created else 'resumed'}) in {study.user_attrs.get('storage')}; "
          f"MLflow parent run {parent}")

    cache = ReferenceCache(cfg.get("cache_dir"))
    reference = cache.samples(pipe, protocol, model_id=cfg.model.name, progress=show)
    extra = tuple(name for name in EXTRA_METRICS
                  if name != cfg.quality.proxy and (name != "fid_real" or real is not None))
    objective = Objective(pipe, space, protocol, reference, str(cfg.quality.proxy), extra, speed,
                          threshold=cfg.quality.get("threshold"), keep_grids=bool(cfg.tracking.log_samples),
                          real_reference=real, feature_options=feature_options(cfg))
    if objective.threshold is not None:
        print(f"constraint: {cfg.quality.proxy} <= {objective.threshold:.4g} "
              f"(full compute scores {objective.full_compute_proxy:.4g})")

    def log_trial(study, frozen):
        grid = objective.grids.pop(frozen.number, None)
        artifacts = {"samples.png": grid} if grid else {}
        try:
            tracker.log_trial_from_optuna(parent, frozen, artifacts=artifacts)
        except AutoFRError as error:  # the Optuna storage stays the source of truth
            logger.warning("trial %d not logged to MLflow: %s", frozen.number, error)

    run_worker(study, objective, int(cfg.search.n_trials), timeout_s=cfg.search.get("timeout_s"),
               callbacks=(log_trial,), progress=show)
    if worker_only:
        return 0
    _wait_for_running_trials(study, timeout_s=float(cfg.storage.get("grace_period") or 120) * 2)

    rows = confirm(study, pipe, cfg, protocol, cache,
                   progress=lambda it, desc: _progress(it, desc, enabled=show),
                   tracker=lambda trial, record: tracker.log_confirmation(parent, trial.number, record))
    tracker.log_study_summary(parent, study, out_dir)
    _print_summary(cfg, study, out_dir, tracker)
    return 0


def _wait_for_running_trials(study, timeout_s: float) -> None:
    """Let other workers finish their last trials before the front is confirmed (bounded)."""
    import optuna

    deadline = time.monotonic() + timeout_s
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if time.monotonic() > deadline:
            logger.warning("trials still running after %.0f s; confirming the front without them", timeout_s)
            return
        time.sleep(1.0)


def _flat_config(cfg: DictConfig) -> dict:
    from autofr.search.storage import mask_url

    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = mask_url(str(node)) if "url" in prefix or "uri" in prefix else str(node)

    walk("", OmegaConf.to_container(cfg, resolve=True))
    return flat


def _print_summary(cfg, study, out_dir: Path, tracker) -> None:
    from autofr.search.front import format_table, front_table

    print()
    print(format_table(front_table(study)))
    spearman = study.user_attrs.get("proxy_fid_spearman")
    if spearman is not None:
        print(f"\nproxy {study.user_attrs.get('proxy_name')} vs {study.user_attrs.get('fid_name')}: "
              f"Spearman {spearman:.2f}, Kendall {study.user_attrs.get('proxy_fid_kendall'):.2f}")
    print(f"\nresults: {out_dir.resolve()}")
    print(f"MLflow UI: {tracker.ui_command()}")
    print(f"export a schedule: autofr-export study_name={cfg.study_name} export.policy=knee")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    multirun = any(a in ("-m", "--multirun") for a in argv)
    overrides = [a for a in argv if not a.startswith("-") and not a.startswith("hydra")]

    def body(_argv):
        if multirun:
            return _hydra_multirun(argv)
        cfg = compose("config", overrides)
        workers = int(cfg.search.workers)
        if workers > 1:
            from autofr.search.workers import spawn_local_workers

            worker_args = [a for a in overrides if not a.startswith("search.workers=")] + ["search.workers=1", "+worker_only=true"]
            code = spawn_local_workers([sys.executable, "-m", "autofr.cli.search", *worker_args], workers)
            if code != 0:
                raise ConfigError(f"a worker exited with status {code}; see its output above (re-run to resume)")
            cfg = compose("config", overrides)
        return search(cfg, worker_only=bool(cfg.get("worker_only", False)))

    return run_cli(body, argv)


def _hydra_multirun(argv: list[str]) -> int:
    """Multirun through Hydra's launchers (e.g. ``hydra/launcher=slurm``): every job is one worker.

    The job with ``worker=0`` (``+worker='range(N)'``) also confirms the front and writes the summary
    once the budget is complete; re-running without ``-m`` does the same on demand.
    """
    import hydra

    # fail fast on a bad (non-sweep) override before anything is submitted
    compose("config", [a for a in argv if not a.startswith("-") and "," not in a and "range(" not in a])

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def worker(cfg: DictConfig) -> None:
        search(cfg, worker_only=int(cfg.get("worker", 0) or 0) != 0)

    sys.argv = [sys.argv[0], *argv]
    worker()
    return 0


if __name__ == "__main__":
    sys.exit(main())
