"""Config composition shared by the command-line tools.

Configs live in the repository's ``conf/`` (Hydra config groups) and ``studies/`` (study presets,
selected with ``study=<name>``). Set ``AUTOFR_CONF_DIR`` to use another ``conf/``.
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


def conf_dir() -> Path:
    """The ``conf/`` directory: $AUTOFR_CONF_DIR, the source checkout's, or the packaged copy."""
    candidates = [os.environ.get("AUTOFR_CONF_DIR"), _PACKAGE_DIR.parent / "conf", _PACKAGE_DIR / "_conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "config.yaml").is_file():
            return Path(candidate).resolve()
    raise ConfigError("cannot find autofr's conf/ directory: set AUTOFR_CONF_DIR to the repository's conf/")


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Compose ``config_name`` with ``key=value`` overrides; a bad override is a one-line ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"bad configuration: {message} (see `--help` for the keys)") from None


def run_cli(main, argv: list[str] | None = None) -> int:
    """Run a CLI body: an AutoFRError becomes one line on stderr and exit code 2."""
    logging.basicConfig(level=os.environ.get("AUTOFR_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # no "View run" line per trial
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Creating initial tables" chatter
    try:
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
