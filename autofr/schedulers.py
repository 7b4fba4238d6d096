"""The diffusion schedulers (diffusers' word; Optuna's is *sampler*) autofr swaps into a pipeline by name.

The one list: ``model.scheduler`` (config), :func:`autofr.models.load_pipeline` and the evaluation
protocol all accept exactly these names. Each is built from the pipeline's own scheduler config, so the
noise schedule stays; ``None`` (``model.scheduler=null``) keeps the checkpoint's scheduler as it is
(flow-matching pipelines need that). Nothing here imports diffusers until a scheduler is built.
"""

from __future__ import annotations

from typing import Any

from autofr.errors import ConfigError

#: Scheduler name -> diffusers scheduler class name and the options it is built with.
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "dpmsolver++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_ancestral": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def check_scheduler(name: str | None, where: str = "model.scheduler") -> None:
    """Raise a one-line :class:`ConfigError` unless ``name`` is a scheduler of :data:`SCHEDULERS` or None."""
    if name is not None and name not in SCHEDULERS:
        raise ConfigError(
            f"{where}={name!r} is unknown: use one of {', '.join(SCHEDULERS)} (or null: the checkpoint's own)"
        )


def scheduler_class(name: str):
    """The diffusers class of scheduler ``name`` and its options."""
    import diffusers

    class_name, options = SCHEDULERS[name]
    return getattr(diffusers, class_name), options


def build_scheduler(name: str, config: Any):
    """Scheduler ``name`` built from a pipeline's scheduler ``config`` (its noise schedule)."""
    cls, options = scheduler_class(name)
    return cls.from_config(config, **options)
