"""Models autofr can search on: the embedded digit models and any diffusers pipeline.

``EMBEDDED_MODELS`` ship inside the package (``autofr/models/assets``) and load offline:

- ``digits_unet``: class-conditional ``UNet2DModel`` (with attention blocks) on 16x16 digits;
- ``digits_dit``: class-conditional ``DiTTransformer2DModel`` on 16x16 digits;
- ``digits_flux``: ``FluxTransformer2DModel`` (double- and single-stream blocks) on 16x16 digits, the
  class given as a prompt (class tokens through the text inputs).

The first two are ``ClassConditionalPipeline``s with a DDIM scheduler, ``digits_flux`` is a
``ClassConditionalFluxPipeline`` with a flow-matching Euler scheduler; all take class labels the same
way. ``load_digit_classifier`` gives the digit CNN whose features FID/KID on these models use. How they
were trained: ``assets/TRAINING.md``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path

import torch

from autofr.devices import check_device_dtype
from autofr.errors import ConfigError, ModelLoadError
from autofr.models.classifier import DigitClassifier
from autofr.models.digits_data import load_digits_images
from autofr.models.flux_pipeline import ClassConditionalFluxPipeline, ClassTokenEncoder
from autofr.models.pipeline import ClassConditionalPipeline
from autofr.schedulers import build_scheduler, check_scheduler

logger = logging.getLogger(__name__)

__all__ = [
    "ASSETS_DIR",
    "EMBEDDED_MODELS",
    "ClassConditionalFluxPipeline",
    "ClassConditionalPipeline",
    "ClassTokenEncoder",
    "DigitClassifier",
    "load_digit_classifier",
    "load_digits_images",
    "load_pipeline",
    "swap_scheduler",
]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
EMBEDDED_MODELS = ("digits_unet", "digits_dit", "digits_flux")
#: The pipeline classes of autofr's own pipelines, by the ``_class_name`` of their ``model_index.json``.
PIPELINE_CLASSES = {cls.__name__: cls for cls in (ClassConditionalPipeline, ClassConditionalFluxPipeline)}
CLASSIFIER_DIR_NAME = "digits_classifier"
CLASSIFIER_WEIGHTS = "model.safetensors"
CLASSIFIER_CONFIG = "config.json"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def swap_scheduler(pipeline, scheduler: str):
    """Replace ``pipeline.scheduler`` by the named scheduler (:data:`autofr.schedulers.SCHEDULERS`) built
    from the same noise-schedule config."""
    check_scheduler(scheduler, "scheduler")
    if type(pipeline.scheduler).__name__.startswith("FlowMatch"):
        raise ConfigError(
            f"{type(pipeline).__name__} samples by flow matching ({type(pipeline.scheduler).__name__}); the "
            f"{scheduler} scheduler needs a DDPM noise schedule: keep the saved scheduler (model.scheduler=null)"
        )
    pipeline.scheduler = build_scheduler(scheduler, pipeline.scheduler.config)
    return pipeline


@contextlib.contextmanager
def _quiet_loading():
    """Hide diffusers' "Loading pipeline components" progress bar; library code logs instead."""
    from diffusers.utils import logging as diffusers_logging

    was_enabled = diffusers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            diffusers_logging.enable_progress_bar()


def _pipeline_class(directory: Path):
    """autofr's pipeline class for directories saved from one (``PIPELINE_CLASSES``), else ``DiffusionPipeline``."""
    from diffusers import DiffusionPipeline

    try:
        class_name = json.loads((directory / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot read {directory / 'model_index.json'}: {error}") from error
    return PIPELINE_CLASSES.get(class_name, DiffusionPipeline)


T2I_EXTRA_HINT = "pip install 'autofr[t2i]'"


def _check_component_libraries(directory: Path) -> None:
    """A one-line error when the pipeline's text encoders or tokenizers need ``transformers`` and it is missing."""
    try:
        index = json.loads((directory / "model_index.json").read_text())
    except (OSError, ValueError):
        return
    libraries = {value[0] for value in index.values() if isinstance(value, list) and value and value[0]}
    if "transformers" in libraries:
        _require_transformers(f"the pipeline in {directory}")


def _require_transformers(what: str) -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise ModelLoadError(
            f"{what} has text encoders or tokenizers from `transformers`, which is not installed: {T2I_EXTRA_HINT}"
        ) from None


def _load_local(directory: Path, dtype: torch.dtype):
    if not (directory / "model_index.json").is_file():
        raise ModelLoadError(
            f"{directory} is not a diffusers pipeline directory (no model_index.json): "
            "pass a directory written by save_pretrained"
        )
    _check_component_libraries(directory)
    try:
        with _quiet_loading():
            return _pipeline_class(directory).from_pretrained(directory, dtype=dtype)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"cannot load the pipeline in {directory}: {first_line}") from error


def _load_from_hub(model_id: str, dtype: torch.dtype):
    from diffusers import DiffusionPipeline

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")
    try:
        with _quiet_loading():
            return DiffusionPipeline.from_pretrained(model_id, dtype=dtype, local_files_only=offline)
    except AttributeError as error:  # diffusers' error for a component class it cannot import
        _require_transformers(f"hub model {model_id!r}")
        raise ModelLoadError(f"cannot load hub model {model_id!r}: {error}") from error
    except (OSError, ValueError) as error:
        where = "the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face Hub or cache"
        raise ModelLoadError(
            f"no local directory {model_id!r} and no weights of hub model {model_id!r} in {where}: download it first "
            f"(`huggingface-cli download {model_id}`) or pass a local diffusers directory"
        ) from error


def load_pipeline(
    name_or_path: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    scheduler: str | None = None,
    unit_rules=None,
):
    """Load a diffusion pipeline by embedded name, local directory or hub id.

    Args:
        name_or_path: one of ``EMBEDDED_MODELS`` (loaded offline from the package), a local
            directory written by ``save_pretrained``, or a hub id ``org/name`` (from the local
            Hugging Face cache only when ``HF_HUB_OFFLINE`` is set).
        device: where the pipeline runs.
        dtype: weight dtype (a ``torch.dtype`` or its name).
        scheduler: optional scheduler to swap in, a name of :data:`autofr.schedulers.SCHEDULERS`
            (built from the pipeline's own scheduler config); ``None`` keeps the saved one.
        unit_rules: user rules for unit discovery (the ``model.units`` config: include/exclude
            patterns and per-kind overrides, see :class:`autofr.reuse.UnitRules`), attached to the
            denoiser so every later ``discover_units`` sees the same units; ``None``: the rule table.

    Raises:
        ModelLoadError: the name is unknown, the path does not exist, or the weights are missing.
        ConfigError: the scheduler name is unknown, or the device or dtype cannot run on this machine.
    """
    device, dtype = check_device_dtype(device, dtype)
    check_scheduler(scheduler, "scheduler")
    name_or_path = str(name_or_path)
    if name_or_path in EMBEDDED_MODELS:
        directory = ASSETS_DIR / name_or_path
        if not (directory / "model_index.json").is_file():
            raise ModelLoadError(
                f"embedded model {name_or_path!r} is missing from {directory}: reinstall autofr or retrain it "
                "with `python -m autofr.models.train_digits`"
            )
        with _quiet_loading():
            pipeline = _pipeline_class(directory).from_pretrained(directory, dtype=dtype)
    else:
        path = Path(name_or_path).expanduser()
        if path.exists():
            pipeline = _load_local(path, dtype)
        elif _HUB_ID.match(name_or_path) and not name_or_path.startswith((".", "~")):
            pipeline = _load_from_hub(name_or_path, dtype)
        elif os.sep in name_or_path or name_or_path.startswith((".", "~")):
            raise ModelLoadError(f"no diffusers pipeline at {path}: check the path, or download the model there first")
        else:
            raise ModelLoadError(
                f"unknown model {name_or_path!r}: use one of {', '.join(EMBEDDED_MODELS)}, "
                "a local diffusers directory, or a hub id (org/name)"
            )
    if scheduler is not None:
        swap_scheduler(pipeline, scheduler)
    if unit_rules is not None:
        from autofr.reuse import attach_unit_rules

        attach_unit_rules(pipeline, unit_rules)
    pipeline.set_progress_bar_config(disable=True)
    logger.info("loaded %s (%s) on %s", name_or_path, type(pipeline).__name__, device)
    return pipeline.to(device)


def load_digit_classifier(device: str | torch.device = "cpu") -> DigitClassifier:
    """The embedded digit classifier, in eval mode: logits via ``forward``, FID features via ``features``."""
    from safetensors.torch import load_file

    directory = ASSETS_DIR / CLASSIFIER_DIR_NAME
    weights, config_file = directory / CLASSIFIER_WEIGHTS, directory / CLASSIFIER_CONFIG
    if not (weights.is_file() and config_file.is_file()):
        raise ModelLoadError(
            f"the digit classifier is missing from {directory}: reinstall autofr or retrain it with "
            "`python -m autofr.models.train_digits --which classifier`"
        )
    config = json.loads(config_file.read_text())
    classifier = DigitClassifier(num_classes=config["num_classes"], widths=tuple(config["widths"]))
    state = {key: value.float() for key, value in load_file(weights).items()}
    classifier.load_state_dict(state)
    return classifier.to(device).eval()
