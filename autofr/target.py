"""The quality target a user accepts: within a tolerance of full compute's FID, or an absolute FID.

``search.target`` takes ``5%`` (FID at most 1.05 x full compute's, the default), ``1.05x`` (the same),
or a plain number (an absolute FID-N value). The question the search answers is "what is the fastest
schedule within the target?"; the proxy constraint, adaptive fidelity, confirmation order and the
export default all follow from it.

"Within target" compares like with like: a confirmed trial's mean FID over its seeds against the
limit computed from full compute's mean FID *at the same seeds* (paired, same initial noise), where
the confirmation recorded them; otherwise against the study's full-compute FID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autofr.errors import ConfigError

DEFAULT_TARGET = "5%"


@dataclass(frozen=True)
class QualityTarget:
    """``kind`` is ``relative`` (``value`` = tolerance, 0.05 = 5%) or ``absolute`` (``value`` = FID)."""

    kind: str
    value: float

    @classmethod
    def parse(cls, text: str | float | int | None) -> QualityTarget:
        raw = DEFAULT_TARGET if text is None else text
        if isinstance(raw, bool):
            raise ConfigError(f"search.target={raw!r} must be like 5%, 1.05x or an absolute FID")
        if isinstance(raw, (int, float)):
            return cls._checked("absolute", float(raw), raw)
        stripped = str(raw).strip().lower()
        try:
            if stripped.endswith("%"):
                return cls._checked("relative", float(stripped[:-1]) / 100.0, raw)
            if stripped.endswith("x"):
                return cls._checked("relative", float(stripped[:-1]) - 1.0, raw)
            return cls._checked("absolute", float(stripped), raw)
        except ValueError:
            raise ConfigError(f"search.target={raw!r} must be like 5%, 1.05x or an absolute FID") from None

    @classmethod
    def _checked(cls, kind: str, value: float, raw) -> QualityTarget:
        if not math.isfinite(value) or value < 0 or (kind == "absolute" and value <= 0):
            raise ConfigError(f"search.target={raw!r} must be a tolerance >= 0% or an FID > 0")
        return cls(kind, value)

    @classmethod
    def from_info(cls, data: dict | None) -> QualityTarget:
        """From the study's recorded target (default 5% for studies made before targets existed)."""
        if not data:
            return cls.parse(None)
        return cls(str(data["kind"]), float(data["value"]))

    def to_info(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    def limit(self, full_compute_fid: float | None) -> float | None:
        """The highest FID within the target (None when it is relative and full compute is unknown)."""
        if self.kind == "absolute":
            return self.value
        if full_compute_fid is None or not math.isfinite(full_compute_fid):
            return None
        return full_compute_fid * (1.0 + self.value)

    def describe(self) -> str:
        if self.kind == "absolute":
            return f"FID <= {self.value:.4g}"
        return f"FID within {100 * self.value:.3g}% of full compute"
