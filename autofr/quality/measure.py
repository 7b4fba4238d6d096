"""The one interface every quality measure shares (the registry that builds them by name is
:mod:`autofr.quality.registry`).

A measure compares candidate samples with a fixed reference, torchmetrics style::

    measure = build_measure("ssim", reference=full_compute_batch)
    measure.update(candidate_batch)        # any number of times
    value = measure.compute()              # the objective value
    measure.reset()                        # forget the candidate, keep the reference

or in one go: ``measure.score(candidate_batch)``.

Convention for ``compute()``: the objective value, **lower is better**, and 0 (up to float
rounding) means "indistinguishable from the reference". For distances this is the distance itself
(``latent_mse``, ``fid``, ``kid``, ``kid_small``); for similarities it is the shortfall from the
perfect value (``ssim`` -> ``1 - SSIM``; ``psnr`` -> ``cap - PSNR`` in dB, see
:class:`autofr.quality.proxies.PSNR`). ``report()`` gives the values as people read them (PSNR in
dB, SSIM, KID's standard deviation), for logging next to the objective value.

Paired measures (``paired = True``) compare sample ``i`` with reference sample ``i``: their reference
must be the full-compute :class:`~autofr.evaluation.SampleBatch` of the same protocol, and updates
must come in protocol order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from autofr.errors import QualityError


class QualityMeasure(ABC):
    """Compares candidate samples with a reference; ``compute()`` is lower-is-better, 0 = perfect."""

    #: Registry name, used in configs (``quality.measure: ssim``).
    name: ClassVar[str]
    #: True when sample i is compared with reference sample i (same protocol, same noise).
    paired: ClassVar[bool] = False

    @abstractmethod
    def set_reference(self, reference: Any) -> None:
        """Fix what candidates are compared with; clears candidate samples."""

    @abstractmethod
    def update(self, samples: Any) -> None:
        """Add candidate samples: a :class:`~autofr.evaluation.SampleBatch` or images (N, C, H, W) in [0, 1]."""

    @abstractmethod
    def compute(self) -> float:
        """The objective value over all samples added since the last reset (lower is better, 0 = perfect)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the candidate samples; the reference stays."""

    def report(self) -> dict[str, float]:
        """Values for people and logs, keyed by metric name; includes the objective value."""
        return {self.name: self.compute()}

    def score(self, samples: Any) -> float:
        """``reset(); update(samples); compute()`` for one candidate, leaving the measure reset."""
        self.reset()
        try:
            self.update(samples)
            return self.compute()
        finally:
            self.reset()


def images_of(samples: Any) -> torch.Tensor:
    """Images (N, C, H, W) of a SampleBatch or an image tensor, as float32."""
    images = getattr(samples, "images", samples)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise QualityError(
            f"expected a SampleBatch or an image tensor (N, C, H, W) in [0, 1], got {type(samples).__name__}"
        )
    return images.float()


def latents_of(samples: Any) -> torch.Tensor:
    """Latents of a SampleBatch, as float32."""
    latents = getattr(samples, "latents", None)
    if not isinstance(latents, torch.Tensor):
        raise QualityError(
            f"this measure compares latents: pass a SampleBatch from autofr.evaluation.generate, not {type(samples).__name__}"
        )
    return latents.float()
