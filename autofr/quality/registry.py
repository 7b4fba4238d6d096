"""Quality measures by name: the built-in ones and any a user registers.

measure = build_measure("ssim", reference=full_compute_batch)
register_measure(MyMeasure)          # a QualityMeasure subclass with a ``name``
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from autofr.errors import ConfigError
from autofr.quality.fid import FID, KID
from autofr.quality.measure import QualityMeasure
from autofr.quality.proxies import PSNR, SSIM, LatentMSE, SmallSampleKID

MeasureClass = TypeVar("MeasureClass", bound=type[QualityMeasure])

_MEASURES: dict[str, type[QualityMeasure]] = {
    cls.name: cls for cls in (FID, KID, LatentMSE, PSNR, SSIM, SmallSampleKID)
}


def register_measure(cls: MeasureClass) -> MeasureClass:
    """Class decorator: make a measure buildable by its ``name`` through :func:`build_measure`."""
    _MEASURES[cls.name] = cls
    return cls


def available_measures() -> list[str]:
    """Names :func:`build_measure` accepts."""
    return sorted(_MEASURES)


def build_measure(name: str, **options: Any) -> QualityMeasure:
    """Build the measure registered as ``name`` with its constructor options.

    Raises:
        ConfigError: unknown name or an option the measure does not take.
    """
    if name not in _MEASURES:
        raise ConfigError(f"unknown quality measure {name!r}: use one of {sorted(_MEASURES)}")
    cls = _MEASURES[name]
    try:
        inspect.signature(cls).bind(**options)
    except TypeError as error:
        raise ConfigError(
            f"quality measure {name!r} does not take these options ({error}): check quality.* in the config"
        ) from None
    return cls(**options)
