"""Console set-up shared by the command-line tools (config composition is :func:`autofr.config.compose`).

Console output is for people: autofr's own log records at ``$AUTOFR_LOG_LEVEL`` (default WARNING),
third-party libraries' notices (diffusers, MLflow, Optuna, Python warnings) only at ERROR unless
``AUTOFR_LOG_LEVEL`` is set, in which case they are shown at that level too.
"""

from __future__ import annotations

import logging
import os
import sys

from omegaconf import DictConfig, OmegaConf

from autofr.config import compose, conf_dir  # noqa: F401  (the commands' composition: autofr.config's)
from autofr.errors import AutoFRError, ConfigError

logger = logging.getLogger(__name__)

LOG_LEVEL_ENV = "AUTOFR_LOG_LEVEL"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Libraries with loggers (or verbosity settings) of their own whose notices are hidden by default.
THIRD_PARTY_LOGGERS = (
    "diffusers",
    "transformers",
    "huggingface_hub",
    "mlflow",
    "optuna",
    "alembic",
    "hydra",
    "urllib3",
    "httpx",
    "matplotlib",
    "PIL",
    "torch",
    "py.warnings",
)


def configure_logging() -> None:
    """Console logging for a command-line run: autofr at ``$AUTOFR_LOG_LEVEL`` (default WARNING),
    third-party libraries at ERROR unless ``AUTOFR_LOG_LEVEL`` is set (then at that level too).
    Raises :class:`ConfigError` for a level name logging does not know."""
    asked = os.environ.get(LOG_LEVEL_ENV, "").strip().upper()
    if asked and asked not in LOG_LEVELS:
        raise ConfigError(
            f"{LOG_LEVEL_ENV}={os.environ[LOG_LEVEL_ENV]!r} is not a log level: use one of {', '.join(LOG_LEVELS)}"
        )
    own = getattr(logging, asked or "WARNING")
    libraries = own if asked else logging.ERROR
    library_name = logging.getLevelName(libraries)
    # Libraries that read their verbosity from the environment when first imported.
    for variable in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY", "HF_HUB_VERBOSITY"):
        os.environ.setdefault(variable, library_name.lower())
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", library_name)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" line per trial
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(libraries)
    logging.getLogger("autofr").setLevel(own)
    logging.captureWarnings(True)  # Python warnings (FutureWarning, UserWarning, ...) become py.warnings records
    for name in THIRD_PARTY_LOGGERS:  # some were configured at import, before this ran
        logging.getLogger(name).setLevel(libraries)


def run_cli(main, argv: list[str] | None = None) -> int:
    """Run a CLI body: an AutoFRError becomes one line on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        configure_logging()
        return main(argv) or 0
    except AutoFRError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def cli_main(doc: str, body, argv: list[str] | None = None) -> int:
    """A command-line entry point: ``--help`` prints ``doc``; otherwise :func:`run_cli` runs ``body(argv)``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(doc)
        return 0
    return run_cli(body, argv)


def progress_bar(iterable, desc: str, total: int | None = None, enabled: bool = True):
    """A progress bar for long work in a command (nothing when ``enabled`` is False)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=not enabled, leave=False)


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)
