"""One Auto-FR study from a config: set-up, search, confirmation with FID, summary.

The path data takes (each step hands a plain object to the next)::

    config -> pipeline -> units + cost -> SearchSpace -> Optuna study (storage = source of truth)
      -> Objective per trial (proxy + predicted speed) -> MLflow child run per trial
      -> confirm: FID-N and measured speed for the proxy front (+ top-k, + baselines)
      -> front / plots / proxy fidelity -> MLflow parent run

Trial results live in the Optuna storage. Finished trials cannot be changed in Optuna, so the
confirmation of trial ``n`` is stored in the study's user attribute ``confirmed:<n>``;
:func:`autofr.search.front.trial_records` merges it back into each trial's ``user_attrs``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
import torch

from autofr.errors import ConfigError
from autofr.evaluation import EvalProtocol, generate
from autofr.search.front import CONFIRMED_PREFIX, confirmed_trials, pareto_front, schedule_key

logger = logging.getLogger(__name__)


def build_sampler(cfg) -> optuna.samplers.BaseSampler:
    name = cfg.get("name", "tpe")
    seed = cfg.get("seed")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(cfg.get("n_startup_trials", 10)),
                                          multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=int(cfg.get("population_size", 16)))
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=int(cfg.get("n_startup_trials", 10)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"sampler.name={name!r} is unknown: use tpe, nsga2, gp or random")


def protocol_from_config(cfg) -> EvalProtocol:
    model, quality = cfg.model, cfg.quality
    return EvalProtocol(
        num_samples=int(quality.proxy_samples),
        seed=int(cfg.seed),
        batch_size=int(quality.batch_size),
        num_inference_steps=int(model.num_inference_steps),
        guidance_scale=model.get("guidance_scale"),
        scheduler=model.get("scheduler"),
        resolution=None,
        num_classes=model.get("num_classes") if not model.get("prompts") else None,
        prompts=tuple(model.get("prompts") or ()),
        call_options=dict(model.get("call_options") or {}),
    )


def load_model(cfg):
    from autofr.models import load_pipeline

    dtype = getattr(torch, str(cfg.model.get("dtype", "float32")))
    pipe = load_pipeline(cfg.model.path, device=cfg.model.get("device", "cpu"), dtype=dtype,
                         scheduler=cfg.model.get("scheduler"), unit_rules=cfg.model.get("units"))
    return pipe


def timed_generation(pipe, protocol: EvalProtocol, schedules: dict, repeats: int = 2) -> dict[str, float]:
    """Median wall seconds of ``generate`` per schedule, interleaved so machine noise hits all alike."""
    times: dict[str, list[float]] = {key: [] for key in schedules}
    for _ in range(repeats):
        for key, schedule in schedules.items():
            steps = schedule.num_inference_steps if schedule is not None else protocol.num_inference_steps
            began = time.perf_counter()
            generate(pipe, protocol.replace(num_inference_steps=steps), schedule)
            times[key].append(time.perf_counter() - began)
    return {key: sorted(v)[len(v) // 2] for key, v in times.items()}


def proxy_layers(study: optuna.Study, layers: int) -> list[list]:
    """The first ``layers`` non-dominated layers of the feasible complete trials in (speed, proxy)
    space, each fastest first. Layer 1 is the proxy Pareto front (``study.best_trials``); layer 2 is
    the front of what remains, and so on. A small-sample proxy is noisy, so a schedule just behind
    the proxy front may well beat it on FID: ``search.confirm_layers`` confirms those too."""
    first = sorted(study.best_trials, key=lambda t: -t.values[0])
    result = [first]
    taken = {t.number for t in first}
    remaining = [t for t in _feasible(study) if t.number not in taken]
    for _ in range(1, max(1, int(layers))):
        if not remaining:
            break
        layer = [remaining[i] for i in pareto_front([t.values for t in remaining])]
        result.append(sorted(layer, key=lambda t: -t.values[0]))
        taken |= {t.number for t in layer}
        remaining = [t for t in remaining if t.number not in taken]
    return result


def _feasible(study: optuna.Study) -> list:
    """Complete trials that meet the quality constraint (or have none)."""
    return [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if float(t.user_attrs.get("constraint", 0.0)) <= 0.0]


def metric_front(study: optuna.Study, metric: str) -> list:
    """The feasible complete trials non-dominated in (speed, ``metric``), fastest first, where
    ``metric`` is any measure every trial records in ``proxy_metrics`` (lower is better). Proxies
    err differently: ``fid_real`` at small N ranks schedules within a few percent of full
    compute's FID poorly, while a distance to the full-compute output (``latent_mse``) keeps to schedules
    that barely change it. ``search.confirm_proxies`` confirms the fronts of the others as well,
    and FID-N decides."""
    trials = [t for t in _feasible(study) if metric in t.user_attrs.get("proxy_metrics", {})]
    points = [(t.values[0], float(t.user_attrs["proxy_metrics"][metric])) for t in trials]
    return sorted((trials[i] for i in pareto_front(points)), key=lambda t: -t.values[0])


def confirm_candidates(study: optuna.Study, top_k: int, limit: int | None = None, layers: int = 1,
                       proxies: tuple[str, ...] = ()) -> list:
    """Trials to confirm with FID, most important first, at most ``limit``.

    The full-compute baseline first; then the proxy Pareto front (fastest first) interleaved with
    the other warm-start references (FRDiff's settings, then full compute at fewer steps), so both
    stand on the FID plot; then the next ``layers - 1`` non-dominated layers behind the proxy front
    (:func:`proxy_layers`); then the fronts of the other recorded metrics named in ``proxies``
    (:func:`metric_front`); then the ``top_k`` best proxies.
    Trials already confirmed, and trials whose schedule repeats one already chosen or confirmed,
    are skipped.
    """
    trials = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not trials:
        return []
    done = {key[len(CONFIRMED_PREFIX):] for key in study.user_attrs if key.startswith(CONFIRMED_PREFIX)}
    baseline = [t for t in trials if t.user_attrs.get("origin") == "baseline"]
    front, *behind = proxy_layers(study, layers)
    references = [t for t in trials if t.user_attrs.get("origin") == "frdiff"]
    references += [t for t in trials if t.user_attrs.get("origin") == "reduced_steps"]
    interleaved = [t for pair in zip(front, references) for t in pair]
    interleaved += front[len(references):] + references[len(front):]
    interleaved += [t for layer in behind for t in layer]
    interleaved += [t for metric in proxies for t in metric_front(study, metric)]
    by_proxy = sorted(trials, key=lambda t: t.values[1])[:top_k]
    # A sampler may propose one schedule twice (a discrete space, mixing parameters unused when off):
    # confirm each distinct schedule once, and never one whose twin is already confirmed.
    seen = {schedule_key(t) for t in trials if str(t.number) in done}
    ordered = []
    for trial in baseline + interleaved + by_proxy:
        key = schedule_key(trial)
        if key not in seen:
            seen.add(key)
            ordered.append(trial)
    return ordered[:limit] if limit else ordered


def _computes_everything(schedule, steps: int) -> bool:
    """Full compute at the protocol's step count: every unit at every step (mixing then never applies)."""
    return schedule.num_inference_steps == steps and all(
        all(unit.compute_mask(steps)) for unit in schedule.units.values())


def confirm(study, pipe, cfg, protocol: EvalProtocol, cache, progress=None, tracker=None) -> list[dict]:
    """FID-N (vs real data and vs full compute) and measured speedup for the confirm candidates."""
    from autofr.quality import build_measure
    from autofr.quality.fidelity import proxy_fidelity
    from autofr.schedule import ReuseSchedule

    quality = cfg.quality
    fid_protocol = protocol.replace(num_samples=int(quality.fid_samples))
    features = feature_options(cfg)
    full_fid_samples = cache.samples(pipe, fid_protocol, model_id=cfg.model.name)
    fid_vs_full = build_measure("fid", reference=full_fid_samples, **features)
    real = real_reference(cfg)
    fid_vs_real = build_measure("fid", reference=real, **features) if real is not None else None

    def fid_of(samples) -> tuple[float, float]:
        fid_vs_full.reset()
        against_full = fid_vs_full.score(samples)
        against_real = against_full
        if fid_vs_real is not None:
            fid_vs_real.reset()
            against_real = fid_vs_real.score(samples)
        return against_real, against_full

    baseline_real, _ = fid_of(full_fid_samples)
    study.set_user_attr("fid_full_compute", baseline_real)
    study.set_user_attr("fid_name", f"fid_{fid_protocol.num_samples}")
    study.set_user_attr("fid_reference", "real" if fid_vs_real is not None else "full_compute")

    timing_protocol = protocol.replace(num_samples=min(protocol.num_samples, protocol.batch_size))
    candidates = confirm_candidates(study, int(cfg.search.confirm_top_k), cfg.search.get("confirm_max"),
                                    layers=int(cfg.search.get("confirm_layers", 1)),
                                    proxies=confirm_proxies(cfg))
    measure_speed = bool(cfg.search.get("measure_speed", True)) and candidates
    if measure_speed:  # full compute is timed once for all candidates (warm-up run first)
        timed_generation(pipe, timing_protocol.replace(num_samples=1), {"full": None}, repeats=1)
        full_seconds = timed_generation(pipe, timing_protocol, {"full": None}, repeats=1)["full"]
    rows = []
    iterator = progress(candidates, desc="confirming front with FID") if progress else candidates
    for trial in iterator:
        schedule = ReuseSchedule.from_dict(trial.user_attrs["schedule"])
        try:
            if _computes_everything(schedule, fid_protocol.num_inference_steps):
                samples = full_fid_samples  # bit-identical to running it (tests/reuse), so not run again
            else:
                samples = generate(pipe, fid_protocol.replace(num_inference_steps=schedule.num_inference_steps), schedule)
            fid_real, fid_full = fid_of(samples)
        except Exception as error:  # one bad confirmation must not lose the others
            logger.warning("confirming trial %d failed: %s", trial.number, error)
            continue
        record = {"fid": fid_real, "fid_vs_full": fid_full}
        if measure_speed:
            seconds = timed_generation(pipe, timing_protocol, {"trial": schedule}, repeats=1)
            record["latency_s"] = seconds["trial"]
            record["measured_speedup"] = full_seconds / seconds["trial"]
            record["speed_gap"] = record["measured_speedup"] / trial.user_attrs["predicted_speedup"]
        study.set_user_attr(f"{CONFIRMED_PREFIX}{trial.number}", record)
        rows.append({"trial": trial.number, **record})
        if tracker is not None:
            tracker(trial, record)

    confirmed = confirmed_trials(study)
    if len(confirmed) >= 3:
        proxies = {}
        for name in confirmed[0].user_attrs.get("proxy_metrics", {}):
            proxies[name] = [t.user_attrs["proxy_metrics"].get(name, float("nan")) for t in confirmed]
        fidelity = proxy_fidelity(proxies, [t.user_attrs["fid"] for t in confirmed])
        study.set_user_attr("proxy_fidelity", fidelity)
        for row in fidelity:
            if row.get("proxy") == study.user_attrs.get("proxy_name"):
                study.set_user_attr("proxy_fid_spearman", row.get("spearman"))
                study.set_user_attr("proxy_fid_kendall", row.get("kendall"))
    return rows


def confirm_proxies(cfg) -> tuple[str, ...]:
    """``search.confirm_proxies``: recorded metrics whose (speed, metric) fronts are confirmed too.
    A name that is not recorded per trial is a one-line error, before anything is written."""
    from autofr.search.objective import EXTRA_METRICS

    recorded = tuple(dict.fromkeys((*EXTRA_METRICS, str(cfg.quality.proxy))))
    names = cfg.search.get("confirm_proxies") or ()
    if isinstance(names, str):
        names = (names,)
    names = tuple(str(name) for name in names)
    for name in names:
        if name not in recorded:
            raise ConfigError(f"search.confirm_proxies: {name!r} is not recorded per trial; "
                              f"use some of {', '.join(recorded)}")
    return names


def feature_options(cfg) -> dict:
    """FID feature settings from the quality config (feature name, local Inception weights)."""
    options = {"feature": cfg.quality.feature}
    if cfg.quality.get("inception_weights"):
        options["inception_weights"] = cfg.quality.inception_weights
    return options


def proxy_real_reference(cfg):
    """Real data for the ``fid_real`` proxy: required when it is the proxy (one-line error when
    missing), otherwise used for the extra metric where available, else None."""
    from autofr.search.objective import REAL_DATA_PROXY, resolve_threshold

    wanted = str(cfg.quality.proxy) == REAL_DATA_PROXY
    # a malformed threshold fails here, before a study exists (the ratio is checked again on the real value)
    resolve_threshold(cfg.quality.get("threshold"), str(cfg.quality.proxy), 1.0 if wanted else 0.0)
    try:
        real = real_reference(cfg)
    except ConfigError:
        if wanted:
            raise
        return None
    if wanted and real is None:
        raise ConfigError("quality.proxy=fid_real needs quality.fid_reference=real and real data (quality.real_data)")
    return real


def real_reference(cfg):
    """Real images (or an .npz of statistics) to compute FID against; None -> full-compute samples."""
    quality = cfg.quality
    if quality.get("fid_reference", "real") != "real":
        return None
    if quality.get("real_data"):
        return quality.real_data
    if cfg.model.path in ("digits_unet", "digits_dit") or quality.feature == "digits":
        from autofr.models import load_digits_images

        images, _ = load_digits_images("all", size=int(cfg.model.resolution))
        return images
    raise ConfigError("quality.fid_reference=real needs quality.real_data (a folder of images or an .npz of mu/sigma)")


def study_summary_path(cfg) -> Path:
    return Path(cfg.out_dir)


def build_speed_model(cfg, denoiser, units, cost, cache_dir=None):
    """The speed objective: MAC-predicted (default) or a latency model calibrated once per machine.

    The latency calibration is cached as JSON keyed by host, device, torch version, model
    fingerprint and batch shape, so every trial and every worker on the machine reuses it.
    """
    import hashlib
    import json
    import platform

    from autofr.cost import batched_inputs, calibrate_latency, example_inputs
    from autofr.quality.reference import default_cache_dir
    from autofr.reuse import model_fingerprint
    from autofr.search.objective import SpeedModel

    baseline_steps = int(cfg.model.num_inference_steps)
    kind = cfg.search.get("speed_model", "macs")
    if kind == "macs":
        return SpeedModel(cost, baseline_steps)
    if kind != "latency":
        raise ConfigError(f"search.speed_model={kind!r} is unknown: use macs or latency")
    guidance = cfg.model.get("guidance_scale") or 0
    batch = int(cfg.quality.batch_size) * (2 if guidance > 1 else 1)
    device = next(denoiser.parameters()).device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    key = hashlib.sha256(json.dumps([platform.node(), device_name, torch.__version__, torch.get_num_threads(),
                                     model_fingerprint(denoiser, units), list(cost.sample_shape), batch]).encode()).hexdigest()[:16]
    path = Path(cache_dir or default_cache_dir()) / "latency" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text())
    else:
        forward, unit_seconds = calibrate_latency(denoiser, batched_inputs(example_inputs(denoiser), batch), units)
        data = {"forward_seconds": forward, "unit_seconds": unit_seconds, "device": device_name, "batch": batch}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
        logger.info("latency model calibrated: %.4f s per forward at batch %d (%s)", forward, batch, path)
    return SpeedModel(cost, baseline_steps, data["forward_seconds"], data["unit_seconds"])
