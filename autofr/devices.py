"""Whether this machine can run a model on the requested device in the requested dtype.

:func:`check_device_dtype` runs before any weights are loaded, so ``model.device=cuda`` on a machine
without CUDA, or ``model.dtype=float8_e4m3fn`` on a CPU, is one :class:`~autofr.errors.ConfigError`
line that says what to use instead, not a traceback from deep inside torch.

The dtype check is a probe, not a table: the layers diffusion denoisers are made of (convolution,
group norm, SiLU, attention, linear) run once on a few numbers in that dtype on that device, and the
answer is cached per (device, dtype).
"""

from __future__ import annotations

import functools
import logging

import torch

from autofr.errors import ConfigError

logger = logging.getLogger(__name__)

#: Dtypes a diffusion pipeline is usually run in (the hint of the error messages).
COMMON_DTYPES = ("float32", "float16", "bfloat16")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a :class:`torch.device` that exists on this machine, else a one-line ConfigError."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(
            f"device {str(device)!r} is not a torch device: use cpu, cuda, cuda:<index> or mps"
        ) from None
    kind = resolved.type
    if kind == "cpu":
        return resolved
    if kind == "cuda":
        if not torch.cuda.is_available():
            why = (
                "this torch is a CPU-only build"
                if torch.version.cuda is None
                else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
            )
            raise ConfigError(
                f"device {str(device)!r} is not available: {why} (torch {torch.__version__}); "
                "use model.device=cpu, or install a CUDA build of torch"
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ConfigError(
                f"device {str(device)!r} is not available: this machine has {count} CUDA device(s) "
                f"(cuda:0..cuda:{count - 1})"
            )
        return resolved
    backend = getattr(torch.backends, kind, None) if kind == "mps" else getattr(torch, kind, None)
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ConfigError(
            f"device {str(device)!r} is not available on this machine (torch {torch.__version__}): "
            "use model.device=cpu"
        )
    return resolved


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """A dtype name (``float16``, ``torch.bfloat16``) or :class:`torch.dtype` as a floating-point
    :class:`torch.dtype`, else a one-line ConfigError."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        name = str(dtype).strip().removeprefix("torch.")
        resolved = getattr(torch, name, None)
        if not isinstance(resolved, torch.dtype):
            raise ConfigError(f"dtype {str(dtype)!r} is not a torch dtype: use one of {', '.join(COMMON_DTYPES)}")
    if not resolved.is_floating_point:
        raise ConfigError(
            f"dtype {_name(resolved)} cannot hold a diffusion model's weights: use a floating-point "
            f"dtype ({', '.join(COMMON_DTYPES)})"
        )
    return resolved


def check_device_dtype(device: str | torch.device, dtype: str | torch.dtype) -> tuple[torch.device, torch.dtype]:
    """The device and dtype resolved (:func:`resolve_device`, :func:`resolve_dtype`) once a probe of
    the usual denoiser layers ran there; raises :class:`ConfigError` (one line) when it cannot."""
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype)
    problem = _probe(str(resolved_device), resolved_dtype)
    if problem:
        raise ConfigError(
            f"dtype {_name(resolved_dtype)} cannot run on {resolved_device} ({problem}): "
            f"use model.dtype={_suggestion(str(resolved_device), resolved_dtype)}"
        )
    return resolved_device, resolved_dtype


@functools.cache
def _probe(device: str, dtype: torch.dtype) -> str | None:
    """None when a convolution, group norm, SiLU, attention and linear layer run in ``dtype`` on
    ``device``; else the first line of the reason."""
    try:
        with torch.no_grad():
            x = torch.ones(1, 4, 4, 4, device=device, dtype=dtype)
            x = torch.nn.functional.conv2d(x, torch.ones(4, 4, 3, 3, device=device, dtype=dtype), padding=1)
            x = torch.nn.functional.silu(torch.nn.functional.group_norm(x, 2))
            tokens = x.flatten(2).transpose(1, 2)
            tokens = torch.nn.functional.scaled_dot_product_attention(tokens, tokens, tokens)
            torch.nn.functional.linear(tokens, torch.ones(4, 4, device=device, dtype=dtype)).sum().tolist()
    except (RuntimeError, NotImplementedError, TypeError) as error:
        text = " ".join(str(error).split()) or type(error).__name__
        return text if len(text) <= 160 else text[:157] + "..."
    logger.debug("dtype %s runs on %s", dtype, device)
    return None


def _suggestion(device: str, dtype: torch.dtype) -> str:
    for name in COMMON_DTYPES:
        candidate = getattr(torch, name)
        if candidate != dtype and _probe(device, candidate) is None:
            return name
    return "float32"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def device_description(device: str | torch.device) -> str:
    """The device as a person reads it: ``cuda:0 (NVIDIA H100 80GB HBM3)``, ``cpu``."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        index = resolved.index if resolved.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(resolved)
