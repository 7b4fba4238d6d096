"""FID and KID through torchmetrics, with a pluggable feature extractor (:mod:`autofr.quality.features`).

The reference of :class:`FID` is real data (images, a folder of images, or an ``.npz`` file with
``mu`` and ``sigma``), the full-compute samples of the same protocol, or :class:`FeatureStats`
(e.g. cached by :class:`autofr.quality.reference.ReferenceCache`). FID is biased by the sample
count: compare values only at equal N.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

import torch
from torch import nn

from autofr.errors import QualityError
from autofr.quality.features import (
    FeatureStats,
    reference_images_or_stats,
    resolve_feature,
)
from autofr.quality.measure import QualityMeasure, images_of

logger = logging.getLogger(__name__)


class FID(QualityMeasure):
    """Fréchet distance between feature Gaussians of candidate and reference samples (torchmetrics FID).

    Biased by the sample count: compare values only at equal N (``FID-2k`` = 2000 samples).

    Args:
        feature: ``"digits"``, ``"inception"`` or a feature module (see the module docs).
        reference: real images, an image folder, an ``.npz`` of ``mu``/``sigma``, FeatureStats, or
            the full-compute SampleBatch; may also be given later with :meth:`set_reference`.
        inception_weights: local Inception weights file for ``feature="inception"``.
        batch_size: images per feature-extractor call.
        image_size: resize folder references to this size.
        device: where features are computed (the extractor is moved there).
    """

    name = "fid"

    def __init__(
        self,
        feature: str | nn.Module = "digits",
        reference: Any = None,
        *,
        inception_weights: str | os.PathLike | None = None,
        batch_size: int = 64,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.feature = resolve_feature(feature, inception_weights).to(device)
        self.batch_size = batch_size
        self.image_size = image_size
        self.device = torch.device(device)
        self._metric = self._new_metric()
        self._has_reference = False
        if reference is not None:
            self.set_reference(reference)

    def _new_metric(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=self.feature, reset_real_features=False).to(self.device)

    def set_reference(self, reference: Any) -> None:
        reference = reference_images_or_stats(reference, self.image_size)
        self._metric = self._new_metric()
        if isinstance(reference, FeatureStats):
            self._load_stats(reference)
        else:
            for start in range(0, len(reference), self.batch_size):
                self._metric.update(reference[start : start + self.batch_size].to(self.device), real=True)
        self._has_reference = True

    def _load_stats(self, stats: FeatureStats) -> None:
        dim = self.feature.num_features
        if stats.mu.shape != (dim,):
            raise QualityError(
                f"reference statistics have {stats.mu.shape[0]} features but the extractor gives {dim}: "
                "use statistics made with the same feature extractor"
            )
        n = max(int(stats.num_samples), 2)  # any n >= 2 reproduces mu and sigma exactly
        mu = torch.as_tensor(stats.mu, dtype=torch.float64, device=self.device)
        sigma = torch.as_tensor(stats.sigma, dtype=torch.float64, device=self.device)
        self._metric.real_features_sum = mu * n
        self._metric.real_features_cov_sum = sigma * (n - 1) + n * torch.outer(mu, mu)
        self._metric.real_features_num_samples = torch.tensor(n, device=self.device)

    def update(self, samples: Any) -> None:
        images = images_of(samples)
        for start in range(0, len(images), self.batch_size):
            self._metric.update(images[start : start + self.batch_size].to(self.device), real=False)

    def compute(self) -> float:
        if not self._has_reference:
            raise QualityError("FID has no reference: call set_reference() with real data or full-compute samples")
        if int(self._metric.fake_features_num_samples) < 2:
            raise QualityError("FID needs at least 2 candidate samples: call update() with more samples")
        self._metric.orig_dtype = torch.float64
        value = float(self._metric.compute())
        return max(value, 0.0)  # the matrix square root can leave -1e-12 for identical sets

    def reset(self) -> None:
        self._metric.reset()


class KID(QualityMeasure):
    """Kernel Inception Distance (torchmetrics; unbiased MMD², mean over random subsets).

    Unbiased, so it can be slightly negative for near-identical sets; lower is better. Subsets are
    drawn from a fixed seed, so the value is deterministic. ``report()`` adds ``kid_std``.

    Args: as :class:`FID` (no ``.npz``/FeatureStats references: KID needs the features), plus
        subsets: number of random subsets; subset_size: their size (capped at the sample counts);
        seed: seeds the subset draws.
    """

    name = "kid"

    def __init__(
        self,
        feature: str | nn.Module = "digits",
        reference: Any = None,
        *,
        inception_weights: str | os.PathLike | None = None,
        subsets: int = 100,
        subset_size: int = 1000,
        seed: int = 0,
        batch_size: int = 64,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.feature = resolve_feature(feature, inception_weights).to(device)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.batch_size, self.image_size, self.device = batch_size, image_size, torch.device(device)
        self._metric = self._new_metric()
        self._has_reference = False
        self._std = float("nan")
        if reference is not None:
            self.set_reference(reference)

    def _new_metric(self):
        from torchmetrics.image.kid import KernelInceptionDistance

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            return KernelInceptionDistance(
                feature=self.feature, subsets=self.subsets, subset_size=self.subset_size, reset_real_features=False
            ).to(self.device)

    def set_reference(self, reference: Any) -> None:
        reference = reference_images_or_stats(reference, self.image_size)
        if isinstance(reference, FeatureStats):
            raise QualityError(
                "KID needs reference images, not mean/covariance statistics: pass images or a SampleBatch"
            )
        self._metric = self._new_metric()
        for start in range(0, len(reference), self.batch_size):
            self._metric.update(reference[start : start + self.batch_size].to(self.device), real=True)
        self._has_reference = True

    def update(self, samples: Any) -> None:
        images = images_of(samples)
        for start in range(0, len(images), self.batch_size):
            self._metric.update(images[start : start + self.batch_size].to(self.device), real=False)

    def compute(self) -> float:
        if not self._has_reference:
            raise QualityError("KID has no reference: call set_reference() with real data or full-compute samples")
        real = sum(len(f) for f in self._metric.real_features)
        fake = sum(len(f) for f in self._metric.fake_features)
        if min(real, fake) < 2:
            raise QualityError(
                "KID needs at least 2 candidate and 2 reference samples: call update() with more samples"
            )
        self._metric.subset_size = min(self.subset_size, real, fake)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            mean, std = self._metric.compute()
        self._std = float(std)
        return float(mean)

    def report(self) -> dict[str, float]:
        value = self.compute()
        return {"kid": value, "kid_std": self._std}

    def reset(self) -> None:
        self._metric.reset()
