"""How autofr's records become MLflow params, metrics and tags (names, limits, masking)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from autofr.masking import mask_url

#: MLflow limits per ``log_batch`` call and per value.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 5000

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")


def flatten_schedule(schedule: Mapping[str, Any]) -> dict[str, str]:
    """A schedule dict (:meth:`ReuseSchedule.to_dict`) as MLflow params:
    ``steps``, ``scheduler``, ``model.class_name``, ``model.fingerprint``, ``mixing.enabled``,
    ``mixing.bias``, ``mixing.slope``, ``unit.<name>.interval`` / ``.offset`` / ``.steps``."""
    params: dict[str, Any] = {
        "steps": schedule.get("num_inference_steps"),
        "scheduler": schedule.get("scheduler"),
        "model.class_name": (schedule.get("model") or {}).get("class_name"),
        "model.fingerprint": (schedule.get("model") or {}).get("fingerprint"),
    }
    mixing = schedule.get("mixing") or {"enabled": False}
    params["mixing.enabled"] = bool(mixing.get("enabled", False))
    if mixing.get("enabled"):
        params["mixing.bias"] = mixing.get("bias")
        params["mixing.slope"] = mixing.get("slope")
    kind = (schedule.get("provenance") or {}).get("kind")
    if kind:
        params["kind"] = kind
    for name, unit in (schedule.get("units") or {}).items():
        if "steps" in unit:
            params[f"unit.{name}.steps"] = ",".join(str(step) for step in unit["steps"])
        else:
            params[f"unit.{name}.interval"] = unit.get("interval", 1)
            params[f"unit.{name}.offset"] = unit.get("offset", 0)
    return {
        param_key(key): text_of(value, MAX_PARAM_VALUE_LENGTH) for key, value in params.items() if value is not None
    }


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted MLflow params; values as text with passwords masked."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name))
        else:
            flat[param_key(name)] = text_of(
                mask_url(value) if isinstance(value, str) else value, MAX_PARAM_VALUE_LENGTH
            )
    return flat


def record_metrics(record) -> dict[str, float]:
    """A trial record's numbers as MLflow metrics; ``proxy_metrics`` become ``proxy.<name>``."""
    metrics: dict[str, float] = {}
    values = {
        "predicted_speedup": record.search_speedup,
        "proxy": record.search_proxy,
        "sampling_seconds": record.sampling_seconds,
        "trial_seconds": record.trial_seconds,
        "constraint": record.constraint,
        "num_inference_steps": record.num_inference_steps,
        "fidelity": record.fidelity,
        "fid_estimate": record.fid_estimate,
    }
    for key, value in values.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[key] = float(value)
    for name, value in record.proxy_metrics.items():
        metrics[f"proxy.{name}"] = float(value)
    if record.confirmation is not None:
        metrics.update(confirmation_metrics(record.confirmation))
    return metrics


def confirmation_metrics(confirmation) -> dict[str, float]:
    """FID (mean and per seed), FID vs full compute, latency and measured speedup as metrics."""
    values = {
        "fid": confirmation.fid,
        "fid_vs_full": confirmation.fid_vs_full,
        "latency_s": confirmation.latency_s,
        "full_latency_s": confirmation.full_latency_s,
        "measured_speedup": confirmation.measured_speedup,
        "speed_gap": confirmation.speed_gap,
    }
    metrics = {key: float(value) for key, value in values.items() if value is not None and math.isfinite(value)}
    for seed, value in confirmation.fid_seeds.items():
        metrics[f"fid.seed{seed}"] = float(value)
    return metrics


def param_key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", str(key))[:250]


def text_of(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def tag_text(value: Any) -> str:
    return text_of(mask_url(str(value)), MAX_TAG_VALUE_LENGTH)
