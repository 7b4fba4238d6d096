"""autofr: automatic per-layer feature-reuse schedules (FRDiff / Auto-FR) for diffusers models.

The public door::

    import autofr
    schedule = autofr.ReuseSchedule.from_json("schedule.json")
    autofr.apply_schedule(pipe, schedule)      # or apply_schedule(pipe, "schedule.json")
    images = pipe(...).images
    autofr.remove_schedule(pipe)
"""

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
from autofr.reuse import (
    apply_schedule,
    discover_units,
    get_accounting,
    remove_schedule,
    reset_schedule_state,
)
from autofr.schedule import Mixing, ReuseSchedule, UnitSchedule

__version__ = "0.1.0"

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
