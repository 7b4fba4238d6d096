"""Config composition and console set-up shared by the command-line tools.

Configs live in the repository's ``conf/`` (Hydra config groups) and ``studies/`` (study presets,
selected with ``study=<name>``; ``conf/study`` links to it). A built package carries both as
``autofr/_conf/`` (see setup.py). Set ``AUTOFR_CONF_DIR`` to use another ``conf/``.

Console output is for people: autofr's own log records at ``$AUTOFR_LOG_LEVEL`` (default WARNING),
third-party libraries' notices (diffusers, MLflow, Optuna, Python warnings) only at ERROR unless
``AUTOFR_LOG_LEVEL`` is set, in which case they are shown at that level too.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from autofr.errors import AutoFRError, ConfigError

logger = logging.getLogger(__name__)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Where a built package carries conf/ (with studies/ as its ``study`` group); written by setup.py.
PACKAGED_CONF_NAME = "_conf"
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


def conf_dir() -> Path:
    """The ``conf/`` directory: ``$AUTOFR_CONF_DIR``, the source checkout's, or the copy in the package.

    A checkout (or an editable install) is recognised by ``pyproject.toml`` and ``conf/config.yaml``
    next to the ``autofr`` package; an installed wheel has ``autofr/_conf/``.
    """
    override = os.environ.get("AUTOFR_CONF_DIR")
    if override:
        if not (Path(override).expanduser() / "config.yaml").is_file():
            raise ConfigError(
                f"AUTOFR_CONF_DIR={override} has no config.yaml: point it at a conf/ directory "
                "like the repository's, or unset it"
            )
        return Path(override).expanduser().resolve()
    checkout = _PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "conf" / "config.yaml").is_file():
        return checkout / "conf"
    packaged = _PACKAGE_DIR / PACKAGED_CONF_NAME
    if (packaged / "config.yaml").is_file():
        return packaged
    raise ConfigError(
        f"cannot find autofr's conf/ directory (no source checkout around {_PACKAGE_DIR} and no "
        f"packaged {packaged}): reinstall autofr, or set AUTOFR_CONF_DIR to the repository's conf/"
    )


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with ``key=value`` overrides; a bad override is a one-line ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from autofr.config import register_configs

    register_configs()  # the settings dataclasses as the schema of their groups
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        cause = error.__cause__
        if cause is not None and str(cause).strip():  # what the schema said about the value
            message += f": {str(cause).strip().splitlines()[0]}"
        raise ConfigError(f"bad configuration: {message} (see `--help` for the keys)") from None


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
