"""Quality measures: FID/KID against real data or full compute, fast proxies, cached references.

One interface (:class:`QualityMeasure`: ``set_reference`` / ``update`` / ``compute`` / ``reset``,
``compute()`` lower-is-better with 0 = perfect), built by name with :func:`build_measure`:

- ``fid``, ``kid`` (:mod:`autofr.quality.fid`): distribution distances, digit or Inception features
  (:mod:`autofr.quality.features`);
- ``latent_mse``, ``psnr``, ``ssim``, ``kid_small`` (:mod:`autofr.quality.proxies`): distances to the
  full-compute samples of the same protocol;

plus :class:`ReferenceCache` (references computed once, kept on disk) and :func:`proxy_fidelity`
(rank correlation of each proxy with FID).
"""

from autofr.quality.features import (
    DigitFeatures,
    FeatureStats,
    InceptionFeatures,
    extract_features,
    find_inception_weights,
    load_image_folder,
    resolve_feature,
)
from autofr.quality.fid import FID, KID
from autofr.quality.fidelity import format_fidelity_table, proxy_fidelity
from autofr.quality.measure import QualityMeasure
from autofr.quality.proxies import PSNR, SSIM, LatentMSE, PairedMeasure, SmallSampleKID, polynomial_mmd2
from autofr.quality.reference import ReferenceCache, default_cache_dir
from autofr.quality.registry import available_measures, build_measure, register_measure

__all__ = [
    "FID",
    "KID",
    "PSNR",
    "SSIM",
    "DigitFeatures",
    "FeatureStats",
    "InceptionFeatures",
    "LatentMSE",
    "PairedMeasure",
    "QualityMeasure",
    "ReferenceCache",
    "SmallSampleKID",
    "available_measures",
    "build_measure",
    "default_cache_dir",
    "extract_features",
    "find_inception_weights",
    "format_fidelity_table",
    "load_image_folder",
    "polynomial_mmd2",
    "proxy_fidelity",
    "register_measure",
    "resolve_feature",
]
