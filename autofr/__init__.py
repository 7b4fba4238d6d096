"""autofr: automatic per-layer feature-reuse schedules (FRDiff / Auto-FR) for diffusers models.

The public door::

    import autofr
    schedule = autofr.ReuseSchedule.from_json("schedule.json")
    autofr.apply_schedule(pipe, schedule)      # or apply_schedule(pipe, "schedule.json")
    images = pipe(...).images
    autofr.remove_schedule(pipe)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: The public names and the module each comes from; they load on first use, so ``import autofr.execution``
#: (or any light part of the package) does not pull in torch and diffusers.
_PUBLIC = {
    "AutoFRError": "autofr.errors",
    "ConfigError": "autofr.errors",
    "ModelLoadError": "autofr.errors",
    "QualityError": "autofr.errors",
    "ScheduleError": "autofr.errors",
    "StorageError": "autofr.errors",
    "TrackingError": "autofr.errors",
    "UnsupportedModelError": "autofr.errors",
    "apply_schedule": "autofr.reuse",
    "discover_units": "autofr.reuse",
    "get_accounting": "autofr.reuse",
    "remove_schedule": "autofr.reuse",
    "reset_schedule_state": "autofr.reuse",
    "Mixing": "autofr.schedule",
    "ReuseSchedule": "autofr.schedule",
    "UnitSchedule": "autofr.schedule",
}

__all__ = [
    "AutoFRError",
    "ConfigError",
    "Mixing",
    "ModelLoadError",
    "QualityError",
    "ReuseSchedule",
    "ScheduleError",
    "StorageError",
    "TrackingError",
    "UnitSchedule",
    "UnsupportedModelError",
    "apply_schedule",
    "discover_units",
    "get_accounting",
    "remove_schedule",
    "reset_schedule_state",
]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'autofr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})


if TYPE_CHECKING:  # what static tools and IDEs see
    from autofr.errors import (
        AutoFRError,
        ConfigError,
        ModelLoadError,
        QualityError,
        ScheduleError,
        StorageError,
        TrackingError,
        UnsupportedModelError,
    )
    from autofr.reuse import apply_schedule, discover_units, get_accounting, remove_schedule, reset_schedule_state
    from autofr.schedule import Mixing, ReuseSchedule, UnitSchedule
