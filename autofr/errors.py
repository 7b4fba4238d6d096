"""Project exceptions.

Every error a user can cause (a bad schedule file, an unknown model, a bad override, an unreachable
storage or tracking server) raises a subclass of :class:`AutoFRError` whose message is one line that
says what is wrong and how to fix it. Command-line tools catch :class:`AutoFRError`, print the message
and exit non-zero.
"""


class AutoFRError(Exception):
    """Base class of every error autofr raises on purpose."""


class ScheduleError(AutoFRError):
    """A reuse schedule is malformed, out of range, or made for another model / step count."""


class UnsupportedModelError(AutoFRError):
    """The model class has no known reusable units."""


class ConfigError(AutoFRError):
    """A configuration value or override is invalid."""


class ModelLoadError(AutoFRError):
    """Model weights could not be found or loaded."""


class StorageError(AutoFRError):
    """The Optuna storage could not be reached or used."""


class TrackingError(AutoFRError):
    """The MLflow tracking server or store could not be reached or used."""


class QualityError(AutoFRError):
    """A quality measure could not be computed (missing feature weights, NaN samples, ...)."""
