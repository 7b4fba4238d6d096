"""The feature-reuse engine: unit discovery, hooks, accounting."""

from autofr.reuse.accounting import ReuseAccounting
from autofr.reuse.hooks import apply_schedule, get_accounting, remove_schedule, reset_schedule_state
from autofr.reuse.units import (
    SUPPORTED_MODEL_CLASSES,
    UNIT_KINDS,
    ReusableUnit,
    UnitRules,
    attach_unit_rules,
    discover_units,
    model_fingerprint,
    resolve_denoiser,
)

__all__ = [
    "ReusableUnit",
    "ReuseAccounting",
    "SUPPORTED_MODEL_CLASSES",
    "UNIT_KINDS",
    "UnitRules",
    "apply_schedule",
    "attach_unit_rules",
    "discover_units",
    "get_accounting",
    "model_fingerprint",
    "remove_schedule",
    "reset_schedule_state",
    "resolve_denoiser",
]
