"""The study's quality measures, resolved and checked before anything runs.

:class:`StudyMeasures` turns the ``quality`` settings into what the objective and the confirmation
need: the proxy name and the extra metrics every trial records, the FID feature extractor (the
Inception weights must be on disk), the real-data reference (an image folder, an ``.npz`` of
statistics, or the digits data set for the embedded models), and the threshold's syntax. Every
problem is one :class:`~autofr.errors.ConfigError` / :class:`~autofr.errors.QualityError` line,
raised by :meth:`StudyMeasures.resolve` before a study, a run or a file exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autofr.config import ModelSettings, QualitySettings
from autofr.errors import ConfigError

REAL_DATA_PROXY = "fid_real"
#: Recorded for every trial beside its proxy (``fid_real`` only where real data exists).
EXTRA_METRICS = ("latent_mse", "psnr", "ssim", "fid_real")
EMBEDDED_DIGIT_MODELS = ("digits_unet", "digits_dit", "digits_flux")


def resolve_threshold(threshold: float | str | None, proxy_name: str, full_compute_proxy: float) -> float | None:
    """``quality.threshold``: an absolute proxy value, or ``"<r>x"``, r times the proxy of full compute
    (for proxies that are not 0 at full compute, such as fid_real)."""
    if threshold is None:
        return None
    text = str(threshold).strip()
    if not text.lower().endswith("x"):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"quality.threshold={threshold!r} is not a number or a ratio like 1.2x") from None
    try:
        ratio = float(text[:-1])
    except ValueError:
        raise ConfigError(f"quality.threshold={threshold!r} is not a number or a ratio like 1.2x") from None
    if not (math.isfinite(full_compute_proxy) and full_compute_proxy > 0):
        raise ConfigError(
            f"quality.threshold={text} is relative to full compute, but {proxy_name} of full compute is "
            f"{full_compute_proxy:g}: give an absolute threshold, or use quality.proxy=fid_real"
        )
    return ratio * full_compute_proxy


@dataclass
class StudyMeasures:
    """The quality measures of one study (see the module docstring)."""

    proxy: str
    extra: tuple[str, ...]
    feature_options: dict[str, Any]
    real_reference: Any = None
    confirm_proxies: tuple[str, ...] = ()
    threshold: float | str | None = None
    fid_reference: str = "real"
    _feature: Any = field(default=None, repr=False)

    @classmethod
    def resolve(
        cls, quality: QualitySettings, model: ModelSettings, confirm_proxies: tuple[str, ...] = ()
    ) -> StudyMeasures:
        from autofr.quality import available_measures

        proxy = quality.proxy
        names = set(available_measures()) | {REAL_DATA_PROXY}
        if proxy not in names - {"fid", "kid"}:
            raise ConfigError(
                f"quality.proxy={proxy!r} is unknown: use one of {', '.join(sorted(names - {'fid', 'kid'}))}"
            )
        wanted_real = proxy == REAL_DATA_PROXY
        # a malformed threshold fails here (the ratio is checked again on the real value)
        resolve_threshold(quality.threshold, proxy, 1.0 if wanted_real else 0.0)
        options: dict[str, Any] = {"feature": quality.feature}
        if quality.inception_weights:
            options["inception_weights"] = quality.inception_weights
        real = _real_reference(quality, model)
        if wanted_real and real is None:
            raise ConfigError(
                "quality.proxy=fid_real needs quality.fid_reference=real and real data (quality.real_data)"
            )
        extra = tuple(
            name for name in EXTRA_METRICS if name != proxy and (name != REAL_DATA_PROXY or real is not None)
        )
        recorded = (proxy, *extra)
        for name in confirm_proxies:
            if name not in recorded:
                raise ConfigError(
                    f"search.confirm_proxies: {name!r} is not recorded per trial; "
                    f"use some of {', '.join(dict.fromkeys((*EXTRA_METRICS, proxy)))}"
                )
        measures = cls(proxy, extra, options, real, tuple(confirm_proxies), quality.threshold, quality.fid_reference)
        measures.feature()  # Inception weights must be on disk now, not after the search
        return measures

    def feature(self):
        """The FID feature extractor (built once)."""
        from autofr.quality import resolve_feature

        if self._feature is None:
            self._feature = resolve_feature(
                self.feature_options["feature"], self.feature_options.get("inception_weights")
            )
        return self._feature

    def real_stats(self):
        """Feature statistics of the real data (computed once), for the adaptive scorer."""
        from autofr.quality.features import FeatureStats, extract_features, reference_images_or_stats

        if getattr(self, "_real_stats", None) is None:
            reference = reference_images_or_stats(self.real_reference)
            self._real_stats = (
                reference
                if isinstance(reference, FeatureStats)
                else FeatureStats.from_features(extract_features(self.feature(), reference))
            )
        return self._real_stats

    def fid(self, reference):
        """An FID measure against ``reference`` with the study's feature extractor."""
        from autofr.quality import build_measure

        return build_measure("fid", reference=reference, feature=self.feature())

    def build(self, name: str, reference):
        """The measure ``name``: ``fid_real`` is FID against the real data at the proxy's small N
        (biased upward: compare at equal N only); every other name is a registered measure against
        the full-compute ``reference``."""
        from autofr.quality import build_measure

        if name == REAL_DATA_PROXY:
            if self.real_reference is None:
                raise ConfigError(
                    "quality.proxy=fid_real needs real data: set quality.real_data (a folder of images "
                    "or an .npz of mu/sigma) and quality.fid_reference=real"
                )
            return self.fid(self.real_reference)
        return build_measure(name, reference=reference)


def _real_reference(quality: QualitySettings, model: ModelSettings):
    """Real images (or an .npz of statistics) to compute FID against; None -> full-compute samples."""
    if quality.fid_reference != "real":
        return None
    if quality.real_data:
        path = Path(quality.real_data).expanduser()
        if not path.exists():
            raise ConfigError(
                f"quality.real_data={quality.real_data} does not exist: give a folder of images or an .npz of mu/sigma"
            )
        return str(path)
    if model.path in EMBEDDED_DIGIT_MODELS or quality.feature == "digits":
        from autofr.models import load_digits_images

        images, _ = load_digits_images("all", size=int(model.resolution or 16))
        return images
    raise ConfigError("quality.fid_reference=real needs quality.real_data (a folder of images or an .npz of mu/sigma)")
