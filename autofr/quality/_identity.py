"""Cheap identity fingerprints of models, used in reference-cache keys."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

_VALUES_PER_TENSOR = 64


def module_fingerprint(module: torch.nn.Module) -> str:
    """Hex digest of a module's class, config and a strided sample of every parameter and buffer.

    Changes when the architecture, the config or (practically always) the weights change; costs a
    few small reads per tensor, so it is cheap even for billion-parameter models.
    """
    digest = hashlib.sha256(type(module).__name__.encode())
    digest.update(_config_json(module).encode())
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            flat = tensor.detach().reshape(-1)
            stride = max(1, flat.numel() // _VALUES_PER_TENSOR)
            sample = flat[::stride][:_VALUES_PER_TENSOR].float().cpu().numpy()
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(sample.tobytes())
    return digest.hexdigest()[:20]


def pipeline_fingerprint(pipe: Any) -> str:
    """Hex digest of a pipeline's class, its modules (see :func:`module_fingerprint`) and its scheduler config."""
    digest = hashlib.sha256(type(pipe).__name__.encode())
    components = getattr(pipe, "components", None) or {
        name: value for name, value in vars(pipe).items() if isinstance(value, torch.nn.Module)
    }
    for name in sorted(components):
        component = components[name]
        if isinstance(component, torch.nn.Module):
            digest.update(f"{name}={module_fingerprint(component)}".encode())
        elif component is not None and hasattr(component, "config"):
            digest.update(f"{name}={type(component).__name__}:{_config_json(component)}".encode())
    return digest.hexdigest()[:20]


def feature_id(module: torch.nn.Module) -> str:
    """The feature extractor's ``feature_id`` attribute, or its class name and fingerprint."""
    given = getattr(module, "feature_id", None)
    if isinstance(given, str) and given:
        return given
    return f"{type(module).__name__}-{module_fingerprint(module)}"


def _config_json(obj: Any) -> str:
    config = getattr(obj, "config", None)
    if config is None:
        return ""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    try:
        return json.dumps(dict(config), sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(config)
