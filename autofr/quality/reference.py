"""References computed once and kept on disk: full-compute samples and feature statistics.

A study compares hundreds of candidates with the same full-compute samples and the same real-data
(or full-compute) feature statistics; :class:`ReferenceCache` computes each once and reloads it in
every later trial, worker and resumed study.

Keys
    Reference samples: the model identity (``model_id`` if given, plus a fingerprint of the
    pipeline's config, weights and scheduler config) and :meth:`EvalProtocol.cache_key`, which
    covers the step count, scheduler, seed, N, resolution, guidance, labels/prompts (batch size left
    out: it does not change the samples). Feature statistics: a caller-chosen ``source_id`` naming
    the image set plus the feature extractor's identity.
Files
    ``<cache_dir>/references/<model>-<steps>steps-<N>-<key>.safetensors`` (``images``, ``latents``;
    the protocol and generation seconds in the metadata) and ``<cache_dir>/stats/<source>-<key>.npz``
    (``mu``, ``sigma``, ``num_samples``). No pickle. Written to a temporary file and renamed, so a
    killed job never leaves a half-written reference and parallel workers can share the directory.
Location
    ``cache_dir`` argument, else ``$AUTOFR_CACHE_DIR``, else ``~/.cache/autofr``.

``hits`` and ``misses`` count lookups, and every hit is logged with its path, so a test or a user
can tell whether a reference was reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from autofr.errors import AutoFRError, QualityError
from autofr.evaluation import EvalProtocol, SampleBatch, generate
from autofr.files import atomic_path
from autofr.quality._identity import feature_id, pipeline_fingerprint
from autofr.quality.features import FeatureStats, extract_features

logger = logging.getLogger(__name__)

CACHE_DIR_ENV = "AUTOFR_CACHE_DIR"
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """``$AUTOFR_CACHE_DIR`` or ``~/.cache/autofr``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "autofr").expanduser()


class ReferenceCache:
    """Full-compute reference samples and reference feature statistics, cached on disk.

    Args:
        cache_dir: where the files live; default :func:`default_cache_dir`.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None) -> None:
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ reference samples

    def samples_key(self, pipe: Any, protocol: EvalProtocol, model_id: str | None = None) -> str:
        """Identity of the full-compute samples of ``pipe`` under ``protocol``."""
        parts = {
            "format": FORMAT_VERSION,
            "model_id": model_id,
            "model": pipeline_fingerprint(pipe),
            "protocol": protocol.cache_key(),
        }
        return _digest(parts)

    def samples_path(self, pipe: Any, protocol: EvalProtocol, model_id: str | None = None) -> Path:
        """Where :meth:`samples` keeps the reference samples."""
        name = _slug(model_id or type(pipe).__name__)
        key = self.samples_key(pipe, protocol, model_id)
        return (
            self.cache_dir
            / "references"
            / f"{name}-{protocol.num_inference_steps}steps-{protocol.num_samples}-{key}.safetensors"
        )

    def samples(
        self, pipe: Any, protocol: EvalProtocol, model_id: str | None = None, progress: bool = False
    ) -> SampleBatch:
        """The full-compute samples of ``pipe`` under ``protocol``, generated on the first call only.

        ``pipe`` must have no reuse schedule installed. ``model_id`` (e.g. ``"digits_unet"``) names
        the file; the identity itself also includes the pipeline's fingerprint.
        """
        path = self.samples_path(pipe, protocol, model_id)
        cached = self._load_samples(path, protocol)
        if cached is not None:
            return cached
        _require_full_compute(pipe)
        batch = generate(pipe, protocol, schedule=None, progress=progress)
        metadata = {
            "format": str(FORMAT_VERSION),
            "model_id": model_id or "",
            "protocol": json.dumps(protocol.describe(), sort_keys=True),
            "seconds": repr(batch.seconds),
        }
        from safetensors.torch import save_file

        _write_via(
            path,
            lambda tmp: save_file(
                {"images": batch.images.contiguous(), "latents": batch.latents.contiguous()}, tmp, metadata=metadata
            ),
        )
        logger.info("reference samples: computed and cached %s", path)
        return batch

    def _load_samples(self, path: Path, protocol: EvalProtocol) -> SampleBatch | None:
        if not path.is_file():
            self.misses += 1
            return None
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as file:
                metadata = file.metadata() or {}
                images, latents = file.get_tensor("images"), file.get_tensor("latents")
        except (OSError, SafetensorError) as error:
            logger.warning("reference samples: unreadable cache file %s (%s); recomputing", path, error)
            self.misses += 1
            return None
        self.hits += 1
        logger.info("reference samples: cache hit %s", path)
        return SampleBatch(
            images=images, latents=latents, seconds=float(metadata.get("seconds", "0")), protocol=protocol
        )

    # ------------------------------------------------------------------ feature statistics

    def stats_path(self, source_id: str, feature: nn.Module) -> Path:
        """Where :meth:`feature_stats` keeps the statistics of ``source_id`` under ``feature``."""
        key = _digest({"format": FORMAT_VERSION, "source": source_id, "feature": feature_id(feature)})
        return self.cache_dir / "stats" / f"{_slug(source_id)[:60]}-{key}.npz"

    def feature_stats(
        self,
        source_id: str,
        images: Any | Callable[[], Any],
        feature: nn.Module,
        batch_size: int = 64,
    ) -> FeatureStats:
        """Feature mean/covariance of an image set, computed on the first call only.

        Args:
            source_id: names the image set exactly (e.g. ``"digits-test-16px-2000"``); the cache
                trusts it, so include the split, size and count.
            images: images (N, C, H, W) in [0, 1], a SampleBatch, or a function returning either
                (called only on a cache miss).
            feature: the feature extractor (its ``feature_id`` or fingerprint is part of the key).
        """
        path = self.stats_path(source_id, feature)
        if path.is_file():
            try:
                stats = FeatureStats.load(path)
            except QualityError as error:
                logger.warning("reference statistics: unreadable cache file %s (%s); recomputing", path, error)
            else:
                self.hits += 1
                logger.info("reference statistics: cache hit %s", path)
                return stats
        self.misses += 1
        source = images() if callable(images) else images
        stats = FeatureStats.from_features(extract_features(feature, source, batch_size))
        stats.save(path)
        logger.info("reference statistics: computed and cached %s", path)
        return stats

    def reference_stats(
        self,
        pipe: Any,
        protocol: EvalProtocol,
        feature: nn.Module,
        model_id: str | None = None,
        progress: bool = False,
    ) -> FeatureStats:
        """Feature statistics of the full-compute samples (both cached): FID against the model itself."""
        source_id = f"full-{model_id or type(pipe).__name__}-{self.samples_key(pipe, protocol, model_id)}"
        return self.feature_stats(source_id, lambda: self.samples(pipe, protocol, model_id, progress), feature)


def _require_full_compute(pipe: Any) -> None:
    """Refuse to record a reference from a pipeline that has a reuse schedule installed."""
    try:
        from autofr.reuse import get_accounting

        get_accounting(pipe)
    except (ImportError, AutoFRError):
        return  # no engine, or no schedule installed: full compute
    raise QualityError(
        "a reuse schedule is installed on the pipeline: call autofr.remove_schedule(pipe) before computing the reference"
    )


def _digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


def _write_via(path: Path, write: Callable[[str], None]) -> None:
    with atomic_path(path) as tmp:
        write(str(tmp))
