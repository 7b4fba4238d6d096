"""diffusers' built-in caches as peers: ``denoiser.enable_cache(config)`` with diffusers' own configs.

Each method is run at its documented default and over a sweep of its main knob (the config docstrings
in ``diffusers/hooks/*.py``):

================================  ================================  =========  ======================
method                            knob                              default    sweep
================================  ================================  =========  ======================
``first_block_cache``             ``threshold``                     0.05       0.05 ... 0.8
``taylorseer_cache``              ``cache_interval``                5          2 ... 8
``mag_cache``                     ``threshold``                     0.06       0.03 ... 0.48
``faster_cache``                  ``spatial_attention_block_skip_range``  2    2, 3, 4
``pyramid_attention_broadcast``   ``spatial_attention_block_skip_range``  2    2, 3, 4, 6
================================  ================================  =========  ======================

Every other field keeps diffusers' default. MagCache needs magnitude ratios of the model: they are
calibrated once with diffusers' own ``calibrate=True`` run (full compute on a few samples of the
protocol, at its step count) and stored in the peer's options. PyramidAttentionBroadcast and
FasterCache read the current timestep from ``pipe.current_timestep``.

The caches need diffusers' ``CacheMixin`` on the denoiser (Flux, Qwen-Image, Wan, HunyuanVideo, ...;
not UNets, DiT, PixArt or SD3) and a pipeline that calls the denoiser inside ``cache_context``.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
from collections.abc import Iterator

from autofr.peers import Peer, PeerUnavailable
from autofr.pipeline_io import denoiser_of

logger = logging.getLogger(__name__)

#: method: (diffusers config class, knob, documented default, sweep, label)
SWEEPS = {
    "first_block_cache": (
        "FirstBlockCacheConfig",
        "threshold",
        0.05,
        (0.05, 0.1, 0.2, 0.4, 0.8),
        "FirstBlockCache {}",
    ),
    "taylorseer_cache": ("TaylorSeerCacheConfig", "cache_interval", 5, (2, 3, 4, 5, 6, 8), "TaylorSeer every {}"),
    "mag_cache": ("MagCacheConfig", "threshold", 0.06, (0.03, 0.06, 0.12, 0.24, 0.48), "MagCache {}"),
    "faster_cache": ("FasterCacheConfig", "spatial_attention_block_skip_range", 2, (2, 3, 4), "FasterCache every {}"),
    "pyramid_attention_broadcast": (
        "PyramidAttentionBroadcastConfig",
        "spatial_attention_block_skip_range",
        2,
        (2, 3, 4, 6),
        "PAB every {}",
    ),
}
#: Methods that read the step being computed from ``pipe.current_timestep``.
NEEDS_TIMESTEP = ("faster_cache", "pyramid_attention_broadcast")
#: Samples of the MagCache calibration run.
CALIBRATION_SAMPLES = 8


def settings(pipe, method: str, protocol) -> list[Peer]:
    """The default and the sweep of ``method`` on ``pipe``; :class:`PeerUnavailable` when it cannot run."""
    denoiser = denoiser_of(pipe)
    if not callable(getattr(denoiser, "enable_cache", None)):
        raise PeerUnavailable(f"{type(denoiser).__name__} has no diffusers CacheMixin (enable_cache)")
    if method in NEEDS_TIMESTEP and not hasattr(pipe, "current_timestep"):
        raise PeerUnavailable(f"{type(pipe).__name__} has no current_timestep for the cache's timestep callback")
    _, knob, default, sweep, label = SWEEPS[method]
    extra = {}
    if method == "mag_cache":
        extra = {
            "num_inference_steps": protocol.num_inference_steps,
            "mag_ratios": calibrate_mag_ratios(pipe, protocol),
        }
    return [
        Peer(
            method,
            label.format(value) + (" (default)" if value == default else ""),
            {knob: value, **extra},
            default=value == default,
        )
        for value in sweep
    ]


def build_config(pipe, peer: Peer):
    """diffusers' config object of ``peer`` (a fresh one: diffusers fills some fields in when applying it)."""
    import diffusers.hooks

    config_class = getattr(diffusers.hooks, SWEEPS[peer.method][0])
    options = dict(peer.options)
    if peer.method in NEEDS_TIMESTEP:
        options["current_timestep_callback"] = lambda: pipe.current_timestep
    return config_class(**options)


@contextlib.contextmanager
def enabled(pipe, peer: Peer) -> Iterator[None]:
    """``denoiser.enable_cache`` for the block, ``disable_cache`` after it (every hook removed)."""
    denoiser = denoiser_of(pipe)
    if denoiser.is_cache_enabled:  # someone else's cache: neither replaced nor removed here
        raise PeerUnavailable(f"{type(denoiser).__name__} already has a diffusers cache enabled: disable it first")
    config = build_config(pipe, peer)
    try:
        with _quiet():
            denoiser.enable_cache(config)
    except BaseException:
        _remove(denoiser, config)  # hooks registered before the failure go too
        raise
    try:
        yield
    finally:
        _remove(denoiser, config)


def _remove(denoiser, config) -> None:
    if not denoiser.is_cache_enabled:
        denoiser._cache_config = config  # enable_cache raised half-way: let disable_cache find its hooks
    denoiser.disable_cache()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """FasterCache warns on every enable that it is experimental; that is known here."""
    faster = logging.getLogger("diffusers.hooks.faster_cache")
    level = faster.level
    faster.setLevel(logging.ERROR)
    try:
        yield
    finally:
        faster.setLevel(level)


def calibrate_mag_ratios(pipe, protocol) -> list[float]:
    """MagCache's magnitude ratios of ``pipe`` at ``protocol``'s step count, from diffusers' own
    calibration run (``MagCacheConfig(calibrate=True)``: full compute, every ratio logged at the end)."""
    from autofr.evaluation import generate

    steps = protocol.num_inference_steps
    samples = min(CALIBRATION_SAMPLES, protocol.num_samples)
    captured: list[list[float]] = []

    class Ratios(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if message.startswith("MagCache Calibration Results:"):
                captured.append(ast.literal_eval(message.split(":", 1)[1].strip()))

    mag_logger = logging.getLogger("diffusers.hooks.mag_cache")
    handler, level, propagate = Ratios(), mag_logger.level, mag_logger.propagate
    mag_logger.addHandler(handler)
    mag_logger.setLevel(logging.INFO)
    mag_logger.propagate = False  # the ratios come to this handler only, not to the console
    peer = Peer("mag_cache", "MagCache calibration", {"calibrate": True, "num_inference_steps": steps})
    try:
        with enabled(pipe, peer), contextlib.redirect_stdout(io.StringIO()):  # diffusers also prints them
            generate(pipe, protocol.replace(num_samples=samples, batch_size=samples))
    finally:
        mag_logger.removeHandler(handler)
        mag_logger.setLevel(level)
        mag_logger.propagate = propagate
    if not captured or len(captured[0]) != steps:
        raise PeerUnavailable(
            f"MagCache's calibration gave no ratios for {steps} steps (does the pipeline call "
            "the denoiser inside cache_context?)"
        )
    return [round(float(value), 6) for value in captured[0]]
