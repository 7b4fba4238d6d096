"""Peers: the caches a user reaches for instead of autofr, run as baselines in the study's own protocol.

A peer is one setting of one cache method that is not autofr's: diffusers' built-in caches
(``transformer.enable_cache(config)``, :mod:`autofr.peers.diffusers_caches`) and cache-dit's DBCache
(:mod:`autofr.peers.cache_dit`, the optional ``peers`` extra). Nothing here re-implements a cache:
each source module builds the library's own config and calls the library's own enable and disable.

    peers, skipped = available_peers(pipe, protocol)     # every method that runs, at its default and a sweep
    with peer_enabled(pipe, peers[0]):                  # the cache is on for the block, and off after it
        samples = generate(pipe, protocol)              # the study's seeds, noise and labels

:func:`available_peers` checks each method on the model (does the library support it, does one probe
run of the default setting go through) and returns the settings of every method that runs, plus
``{method: reason}`` for every method that does not (a UNet has no diffusers ``CacheMixin`` and no
cache-dit adapter, a missing library, a probe that raised). :func:`peer_enabled` always removes
the cache again, so full compute after a peer is bit-identical to full compute before it.

A peer is described by plain JSON (:meth:`Peer.describe`), so it can be stored with a trial and
enabled again later (the confirmation, another process). Dynamic caches (FirstBlockCache, DBCache)
decide per batch whether to skip, so unlike a schedule a peer's samples depend on the batch size.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Every peer method, by name: the library it comes from (the source module under autofr.peers).
PEER_METHODS: dict[str, str] = {
    "first_block_cache": "diffusers",
    "taylorseer_cache": "diffusers",
    "mag_cache": "diffusers",
    "faster_cache": "diffusers",
    "pyramid_attention_broadcast": "diffusers",
    "dbcache": "cache_dit",
    "dbcache_taylorseer": "cache_dit",
}
#: ``search.peers`` values besides a list of method names.
PEER_CHOICES = ("auto", "off")


class PeerUnavailable(Exception):
    """A peer method cannot run on this model; the message says why (it is logged and recorded)."""


@dataclass(frozen=True)
class Peer:
    """One setting of one peer method.

    Attributes:
        method: a key of :data:`PEER_METHODS`.
        label: what plots and tables call it, e.g. ``"FirstBlockCache 0.05 (default)"``.
        options: the settings the source module turns into the library's config (plain JSON): the
            swept knob and whatever the method needs besides (MagCache's calibrated ratios, ...).
        default: whether this is the method's documented default setting.
    """

    method: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    default: bool = False

    @property
    def source(self) -> str:
        return PEER_METHODS[self.method]

    def describe(self) -> dict[str, Any]:
        """Plain JSON, stored with the peer's trial; :meth:`from_description` reads it back."""
        return {
            "method": self.method,
            "source": self.source,
            "label": self.label,
            "options": dict(self.options),
            "default": self.default,
        }

    @classmethod
    def from_description(cls, data: dict[str, Any]) -> Peer:
        method = data.get("method")
        if method not in PEER_METHODS:
            raise PeerUnavailable(f"unknown peer method {method!r}: known are {', '.join(PEER_METHODS)}")
        return cls(
            str(method), str(data.get("label", method)), dict(data.get("options") or {}), bool(data.get("default"))
        )

    def key(self) -> str:
        """What the peer computes (its label aside), for spotting a peer already evaluated."""
        return peer_key(self.describe())


def peer_key(description: dict[str, Any]) -> str:
    return json.dumps({k: description.get(k) for k in ("method", "source", "options")}, sort_keys=True)


def _source(name: str):
    if name == "diffusers":
        from autofr.peers import diffusers_caches as module
    else:
        from autofr.peers import cache_dit as module
    return module


def resolve_methods(choice: Any) -> tuple[str, ...]:
    """The methods ``search.peers`` asks for: ``auto`` (all), ``off``/``[]``/None (none), or a list."""
    if choice is None or choice == "off":
        return ()
    if choice == "auto":
        return tuple(PEER_METHODS)
    return tuple(choice)


def available_peers(pipe, protocol, methods: Iterable[str] | str = "auto") -> tuple[list[Peer], dict[str, str]]:
    """``(peers, skipped)``: the default setting and the sweep of every method of ``methods`` that runs
    on ``pipe``, and ``{method: reason}`` for each method that does not.

    A method runs when its library supports the model and one probe run of its default setting (two
    samples of ``protocol`` at its step count) goes through; the probe's samples are not kept.
    """
    from autofr.evaluation import generate

    peers: list[Peer] = []
    skipped: dict[str, str] = {}
    probe = protocol.replace(num_samples=min(2, protocol.num_samples), batch_size=min(2, protocol.num_samples))
    for method in resolve_methods(methods) if isinstance(methods, str) else tuple(methods):
        try:
            if method not in PEER_METHODS:
                raise PeerUnavailable(f"unknown peer method: known are {', '.join(PEER_METHODS)}")
            settings = _source(PEER_METHODS[method]).settings(pipe, method, protocol)
            with peer_enabled(pipe, next(p for p in settings if p.default)):
                generate(pipe, probe)
        except PeerUnavailable as reason:
            skipped[method] = str(reason)
        except Exception as error:  # a library that raises on this model: the peer cannot run here
            skipped[method] = f"its probe run failed: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
        else:
            peers.extend(settings)
            continue
        logger.info("peer %s skipped: %s", method, skipped[method])
    return peers, skipped


@contextlib.contextmanager
def peer_enabled(pipe, peer: Peer) -> Iterator[None]:
    """Enable ``peer``'s cache on ``pipe`` for the block; it is removed afterwards, also on error."""
    with _source(peer.source).enabled(pipe, peer):
        yield


__all__ = [
    "PEER_CHOICES",
    "PEER_METHODS",
    "Peer",
    "PeerUnavailable",
    "available_peers",
    "peer_enabled",
    "peer_key",
    "resolve_methods",
]
