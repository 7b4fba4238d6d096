"""cache-dit's DBCache as peers (the optional extra: ``pip install 'autofr[peers]'``).

Two methods, both swept over DBCache's main knob, ``residual_diff_threshold`` (default 0.08):

* ``dbcache``: DBCache at cache-dit's defaults (``DBCacheConfig()``: the first 8 blocks always
  computed, none at the end, 8 warm-up steps);
* ``dbcache_taylorseer``: the same with cache-dit's TaylorSeer calibrator (order 1), its
  recommended combination.

The one change to the defaults: on a model with at most 8 blocks in a block group, the first block
only is always computed (F1B0, cache-dit's fastest setting), since cache-dit refuses more first
blocks than the group has and with all of them nothing is left to cache. The embedded ``digits_flux``
(2 double- and 2 single-stream blocks, one group of 4 in cache-dit's Flux adapter) and
``digits_dit`` (4 blocks) run F1B0.

cache-dit knows a model by the class name of its pipeline or of its transformer (its
``BlockAdapterRegister``); for a pipeline it does not know (autofr's own), the adapter registered
for the transformer class is used with this pipeline. cache-dit changes behaviour by patching
``pipe.__class__.__call__`` and ``transformer.forward`` (and, for some models, the forward through
a patch functor); :func:`enabled` calls ``cache_dit.disable_cache`` afterwards and then puts back
whatever it left patched, so full compute is the original model again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator

from autofr.peers import Peer, PeerUnavailable
from autofr.pipeline_io import denoiser_of

KNOB = "residual_diff_threshold"
DEFAULT_THRESHOLD = 0.08
SWEEP = (0.04, 0.08, 0.12, 0.16, 0.24, 0.32)
#: cache-dit's default number of blocks computed first (``DBCacheConfig.Fn_compute_blocks``).
DEFAULT_FIRST_BLOCKS = 8
LABELS = {"dbcache": "DBCache", "dbcache_taylorseer": "DBCache+TaylorSeer"}


def _cache_dit():
    """The cache_dit module; it logs every step of its set-up to stdout at INFO unless told otherwise
    (its level is read once, when it is imported)."""
    os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "error")
    try:
        import cache_dit
    except ImportError:
        raise PeerUnavailable("cache-dit is not installed: pip install 'autofr[peers]'") from None
    return cache_dit


def _registered(pipe):
    """cache-dit's registered adapter (not yet applied) for the pipeline's class, else for its denoiser's."""
    register = _cache_dit().BlockAdapterRegister
    denoiser = denoiser_of(pipe)
    for owner in (pipe, denoiser):
        if register.is_supported(owner):
            return register.get_adapter(owner, skip_post_init=True)
    raise PeerUnavailable(f"cache-dit has no block adapter for {type(pipe).__name__} or {type(denoiser).__name__}")


def _adapter(pipe):
    """The registered adapter built on ``pipe`` and its denoiser (building it applies its patch functor)."""
    return dataclasses.replace(_registered(pipe), pipe=pipe, transformer=denoiser_of(pipe), skip_post_init=False)


def settings(pipe, method: str, protocol) -> list[Peer]:
    """The default and the threshold sweep of ``method``; :class:`PeerUnavailable` when it cannot run."""
    blocks = _registered(pipe).blocks
    groups = blocks if isinstance(blocks, (list, tuple)) else [blocks]
    first = DEFAULT_FIRST_BLOCKS if min(len(group) for group in groups) > DEFAULT_FIRST_BLOCKS else 1
    base = {"Fn_compute_blocks": first, "Bn_compute_blocks": 0, "num_inference_steps": protocol.num_inference_steps}
    if method == "dbcache_taylorseer":
        base["taylorseer_order"] = 1
    name = f"{LABELS[method]} F{first}B0"
    return [
        Peer(
            method,
            f"{name} {value}" + (" (default)" if value == DEFAULT_THRESHOLD else ""),
            {**base, KNOB: value},
            default=value == DEFAULT_THRESHOLD,
        )
        for value in SWEEP
    ]


@contextlib.contextmanager
def enabled(pipe, peer: Peer) -> Iterator[None]:
    """``cache_dit.enable_cache`` for the block; ``cache_dit.disable_cache`` and a restore after it."""
    cache_dit = _cache_dit()
    options = dict(peer.options)
    order = options.pop("taylorseer_order", None)
    calibrator = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=order) if order else None
    denoiser = denoiser_of(pipe)
    saved_call = type(pipe).__dict__.get("__call__")
    saved_attrs, saved_order = dict(vars(denoiser)), list(denoiser._modules)
    adapter = None
    try:
        adapter = _adapter(pipe)
        cache_dit.enable_cache(adapter, cache_config=cache_dit.DBCacheConfig(**options), calibrator_config=calibrator)
        yield
    finally:
        try:
            if adapter is not None:
                cache_dit.disable_cache(adapter)
        finally:
            _restore(pipe, denoiser, saved_call, saved_attrs, saved_order)


def _restore(pipe, denoiser, saved_call, saved_attrs: dict, saved_order: list[str]) -> None:
    """Put back the pipeline class's ``__call__``, the denoiser's own attributes (its forward) and the
    order of its children: cache-dit swaps its block lists in and out with ``mock.patch.object``,
    which moves them to the end of ``_modules`` (and so changes ``named_modules()``, the order in
    which diffusers' caches find the first and last block)."""
    cls = type(pipe)
    if cls.__dict__.get("__call__") is not saved_call:
        if saved_call is None:
            delattr(cls, "__call__")
        else:
            cls.__call__ = saved_call
    for name in [name for name in vars(denoiser) if name not in saved_attrs]:
        if not name.startswith("_diffusers"):  # diffusers' hook registry is created on first use, and stays
            delattr(denoiser, name)
    if "forward" in saved_attrs:
        denoiser.forward = saved_attrs["forward"]
    children = denoiser._modules
    if list(children) != saved_order:
        ordered = {name: children[name] for name in saved_order if name in children}
        ordered.update((name, module) for name, module in children.items() if name not in ordered)
        children.clear()
        children.update(ordered)
