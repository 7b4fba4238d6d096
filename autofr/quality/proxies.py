"""Fast quality proxies: distance of a candidate's samples to the full-compute samples.

The reference is the full-compute :class:`~autofr.evaluation.SampleBatch` made with the same
protocol (same noise, labels/prompts, scheduler and steps), so without reuse every proxy is at its
perfect value, 0, and it grows as the schedule degrades the samples. All ``compute()`` values are
lower-is-better (see :mod:`autofr.quality.measure`):

===============  =====================================================  ==========================
name             ``compute()`` (objective)                              ``report()`` adds
===============  =====================================================  ==========================
``latent_mse``   mean squared error of the final latents                 --
``psnr``         ``max_db - mean per-image PSNR`` (dB short of the cap)  ``psnr_db``
``ssim``         ``1 - mean per-image SSIM``                             ``ssim_value``
``kid_small``    biased MMD² (polynomial kernel, as KID) of features     --
===============  =====================================================  ==========================

PSNR convention: per-image PSNR ``10 log10(1 / MSE)`` on images in [0, 1], capped at ``max_db``
(default 100 dB, where float32 rounding lives) so identical images give the cap instead of +inf;
the objective is the shortfall from the cap, so 0 for full compute. Use ``psnr_db`` from
``report()`` for tables.

``kid_small`` is meant for the small N of a search trial: it uses the biased (V-statistic) MMD²
estimate, which is never negative and exactly 0 for identical sample sets, unlike the unbiased KID
estimator of :class:`autofr.quality.fid.KID` (which is negative for identical sets).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from autofr.errors import QualityError
from autofr.quality.features import extract_features, resolve_feature
from autofr.quality.measure import QualityMeasure, images_of, latents_of


class PairedMeasure(QualityMeasure):
    """Base of proxies comparing candidate sample i with reference sample i.

    Subclasses say what they compare (``compares = "latents"`` or ``"images"``) and implement
    :meth:`per_sample`; candidates must be added in protocol order.
    """

    paired = True
    compares = "images"

    def __init__(self, reference: Any = None) -> None:
        self._reference: torch.Tensor | None = None
        self._values: list[torch.Tensor] = []
        self._offset = 0
        if reference is not None:
            self.set_reference(reference)

    def _select(self, samples: Any) -> torch.Tensor:
        return latents_of(samples) if self.compares == "latents" else images_of(samples)

    def set_reference(self, reference: Any) -> None:
        self._reference = self._select(reference).cpu()
        self.reset()

    def update(self, samples: Any) -> None:
        if self._reference is None:
            raise QualityError(f"{self.name} has no reference: call set_reference() with the full-compute SampleBatch")
        candidate = self._select(samples).cpu()
        reference = self._reference[self._offset : self._offset + len(candidate)]
        if candidate.shape != reference.shape:
            raise QualityError(
                f"{self.name}: candidate {self.compares} {tuple(candidate.shape)} at sample {self._offset} do not match "
                f"the reference {tuple(reference.shape)}: make both with the same evaluation protocol"
            )
        self._values.append(self.per_sample(candidate, reference))
        self._offset += len(candidate)

    def per_sample(self, candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """One value per sample (natural units, e.g. PSNR in dB)."""
        raise NotImplementedError

    def _mean(self) -> float:
        if not self._values:
            raise QualityError(f"{self.name} has no candidate samples: call update() first")
        return float(torch.cat(self._values).double().mean())

    def reset(self) -> None:
        self._values = []
        self._offset = 0


class LatentMSE(PairedMeasure):
    """Mean squared error of the final latents against full compute (the FRDiff Auto-FR loss)."""

    name = "latent_mse"
    compares = "latents"

    def per_sample(self, candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (candidate.double() - reference.double()).square().flatten(1).mean(1)

    def compute(self) -> float:
        return self._mean()


class PSNR(PairedMeasure):
    """Per-image PSNR against full compute; objective ``max_db - mean PSNR`` (see the module docs)."""

    name = "psnr"

    def __init__(self, reference: Any = None, *, max_db: float = 100.0) -> None:
        self.max_db = max_db
        super().__init__(reference)

    def per_sample(self, candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        mse = (candidate.double() - reference.double()).square().flatten(1).mean(1)
        psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-300))
        return psnr.clamp(max=self.max_db)

    def compute(self) -> float:
        return max(self.max_db - self._mean(), 0.0)

    def report(self) -> dict[str, float]:
        return {"psnr": self.compute(), "psnr_db": self._mean()}


class SSIM(PairedMeasure):
    """Per-image SSIM (torchmetrics, Gaussian 11x11 window) against full compute; objective ``1 - mean SSIM``."""

    name = "ssim"

    def per_sample(self, candidate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        from torchmetrics.functional.image import structural_similarity_index_measure

        ssim = structural_similarity_index_measure(candidate, reference, data_range=1.0, reduction="none")
        identical = (candidate == reference).flatten(1).all(1)
        return torch.where(identical, torch.ones_like(ssim), ssim.reshape(-1))

    def compute(self) -> float:
        return max(1.0 - self._mean(), 0.0)

    def report(self) -> dict[str, float]:
        return {"ssim": self.compute(), "ssim_value": self._mean()}


class SmallSampleKID(QualityMeasure):
    """Biased MMD² between candidate and reference features, polynomial kernel ``(x.y / D + 1)^3``.

    Args:
        feature: ``"digits"``, ``"inception"`` or a feature module (see :mod:`autofr.quality.fid`).
        reference: the full-compute SampleBatch (or any reference images).
        inception_weights: local Inception weights for ``feature="inception"``.
        batch_size: images per feature-extractor call.
    """

    name = "kid_small"

    def __init__(
        self,
        feature: str | nn.Module = "digits",
        reference: Any = None,
        *,
        inception_weights: str | None = None,
        batch_size: int = 64,
    ) -> None:
        self.feature = resolve_feature(feature, inception_weights)
        self.batch_size = batch_size
        self._reference_features: torch.Tensor | None = None
        self._features: list[torch.Tensor] = []
        if reference is not None:
            self.set_reference(reference)

    def set_reference(self, reference: Any) -> None:
        self._reference_features = extract_features(self.feature, reference, self.batch_size)
        self.reset()

    def update(self, samples: Any) -> None:
        self._features.append(extract_features(self.feature, samples, self.batch_size))

    def compute(self) -> float:
        if self._reference_features is None:
            raise QualityError("kid_small has no reference: call set_reference() with the full-compute SampleBatch")
        if not self._features:
            raise QualityError("kid_small has no candidate samples: call update() first")
        return polynomial_mmd2(torch.cat(self._features), self._reference_features)

    def reset(self) -> None:
        self._features = []


def polynomial_mmd2(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef: float = 1.0) -> float:
    """Biased MMD² with KID's kernel ``(x.y / D + coef)^degree``: >= 0, and 0 when the sets are equal."""
    gamma = 1.0 / x.shape[1]
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    return max(float(k_xx.mean() + k_yy.mean() - 2 * k_xy.mean()), 0.0)
