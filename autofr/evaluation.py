"""The fixed evaluation protocol: which samples every candidate schedule is judged on.

Every candidate of a study is sampled with the same :class:`EvalProtocol`: the same number of
samples, the same initial noise, the same class labels or prompts, the same scheduler and step
count. Only the reuse schedule differs, so quality differences are the schedule's doing, and paired
proxies (latent MSE, PSNR, SSIM) can compare each sample with the full-compute sample made from the
same noise.

Initial noise
    For pipelines whose ``__call__`` accepts ``latents=`` (Stable Diffusion, PixArt, the embedded
    digit models, ...), the noise of all N samples is drawn once, as
    ``torch.randn((N, C, h, w), generator=torch.Generator("cpu").manual_seed(seed))``, and handed to
    the pipeline slice by slice. Pipelines without ``latents=`` (diffusers' ``DDIMPipeline``,
    ``DiTPipeline``) draw their own noise from the per-sample generators described next. Either way
    sample ``i`` does not depend on the batch size.
Per-sample generators
    ``generator=`` receives one CPU generator per sample, seeded ``seed + 1 + i``, so stochastic
    schedulers (DDPM, ancestral Euler) are batch-size independent too (diffusers' list-of-generators
    convention).
Conditioning
    Class-conditional models: sample ``i`` gets label ``i % num_classes``. Text models: sample ``i``
    gets ``prompts[i % len(prompts)]``. Neither: an unconditional pipeline (``batch_size=``).
Latents
    Pipelines with a VAE are run with ``output_type="latent"`` and decoded here with ``pipe.vae``
    (``scaling_factor``/``shift_factor``); legacy VAE pipelines without latent output (``DiTPipeline``)
    are run with ``output_type="pt"`` while the input of ``pipe.vae.decode`` is recorded. For
    pixel-space pipelines the latents are the final sample in model space before post-processing,
    taken from ``callback_on_step_end`` after the last step; pipelines without that callback give
    the images mapped back to model space (``2 * x - 1``, so values clamped to [0, 1] stay clamped).

A schedule given to :func:`generate` is installed with :func:`autofr.reuse.apply_schedule` for the
call and removed afterwards, also when sampling fails. ``schedule=None`` runs the pipeline as it is:
full compute, as long as nobody installed a schedule on it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from autofr.errors import ConfigError, QualityError
from autofr.pipeline_io import denoiser_of, initial_noise, run_batch  # noqa: F401  (denoiser_of is public here)
from autofr.schedulers import SCHEDULERS, scheduler_class

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalProtocol:
    """The fixed sampling protocol of a study.

    Attributes:
        num_samples: how many samples (N) each candidate is judged on. FID is biased by N: compare
            FID values only at equal N and seed.
        seed: seeds the initial noise (and the per-sample generators of stochastic schedulers).
        batch_size: samples per pipeline call. Affects memory and speed, never the samples, so it is
            left out of :meth:`cache_key`.
        num_inference_steps: denoising steps of the sampler.
        guidance_scale: classifier-free guidance scale; ``None`` keeps the pipeline's default.
        scheduler: scheduler name from :data:`autofr.schedulers.SCHEDULERS` (swapped in for the call, built from the
            pipeline's own scheduler config, so the noise schedule stays); ``None`` keeps the
            pipeline's scheduler as it is.
        resolution: output height = width in pixels for pipelines that take ``height``/``width``;
            ``None`` means the model's native size.
        num_classes: class-conditional models: sample ``i`` gets label ``i % num_classes``.
        prompts: text models: sample ``i`` gets ``prompts[i % len(prompts)]``.
        call_options: extra keyword arguments of every pipeline call (``true_cfg_scale``,
            ``negative_prompt``, ``num_frames``, ``max_sequence_length``, ...), as ``(name, value)``
            pairs or a mapping; each must be a parameter of the pipeline's ``__call__``.
    """

    num_samples: int = 256
    seed: int = 0
    batch_size: int = 64
    num_inference_steps: int = 50
    guidance_scale: float | None = None
    scheduler: str | None = "ddim"
    resolution: int | None = None
    num_classes: int | None = None
    prompts: tuple[str, ...] = ()
    call_options: tuple[tuple[str, Any], ...] = ()

    #: Bumped whenever the meaning of a protocol (noise drawing, label rule) changes.
    FORMAT_VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompts", tuple(self.prompts))
        options = self.call_options.items() if hasattr(self.call_options, "items") else self.call_options
        object.__setattr__(self, "call_options", tuple(sorted((str(k), v) for k, v in options)))
        reserved = {
            "num_inference_steps",
            "prompt",
            "class_labels",
            "latents",
            "generator",
            "guidance_scale",
            "height",
            "width",
            "output_type",
            "batch_size",
        }
        clash = sorted(reserved & {key for key, _ in self.call_options})
        if clash:
            raise ConfigError(
                f"evaluation protocol call_options sets {clash[0]!r}, which the protocol itself sets: remove it"
            )
        for name in ("num_samples", "batch_size", "num_inference_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"evaluation protocol {name}={value!r} is invalid: use a positive integer")
        if self.num_classes is not None and self.num_classes < 1:
            raise ConfigError(
                f"evaluation protocol num_classes={self.num_classes!r} is invalid: use a positive integer"
            )
        if self.num_classes is not None and self.prompts:
            raise ConfigError("evaluation protocol sets both num_classes and prompts: keep the one your model takes")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"unknown scheduler {self.scheduler!r} in the evaluation protocol: use one of {sorted(SCHEDULERS)} or null"
            )
        if self.resolution is not None and self.resolution < 1:
            raise ConfigError(f"evaluation protocol resolution={self.resolution!r} is invalid: use a positive integer")

    def class_labels(self) -> list[int]:
        """Class label of every sample (``i % num_classes``); empty for non-class models."""
        if self.num_classes is None:
            return []
        return [i % self.num_classes for i in range(self.num_samples)]

    def sample_prompts(self) -> list[str]:
        """Prompt of every sample (``prompts[i % len(prompts)]``); empty for non-text models."""
        return [self.prompts[i % len(self.prompts)] for i in range(self.num_samples)] if self.prompts else []

    def describe(self) -> dict[str, Any]:
        """Plain-JSON description of the protocol, recorded with every result."""
        description = dataclasses.asdict(self)
        description["prompts"] = list(self.prompts)
        description["call_options"] = {key: value for key, value in self.call_options}
        if not self.call_options:
            del description["call_options"]  # keeps the cache keys of protocols made before the field existed
        description["format_version"] = self.FORMAT_VERSION
        description["noise"] = "torch.randn((N, C, h, w), generator=torch.Generator('cpu').manual_seed(seed))"
        description["labels"] = "i % num_classes" if self.num_classes is not None else None
        return description

    def cache_key(self) -> str:
        """Hex digest of everything that decides the samples (all fields but ``batch_size``)."""
        description = self.describe()
        del description["batch_size"]
        canonical = json.dumps(description, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]

    def replace(self, **changes: Any) -> EvalProtocol:
        """A copy with some fields changed (e.g. fewer samples for a proxy stage)."""
        return dataclasses.replace(self, **changes)


@dataclass
class SampleBatch:
    """The samples of one protocol run.

    Attributes:
        images: float32 CPU tensor (N, C, H, W) in [0, 1].
        latents: float32 CPU tensor, the final latents (VAE pipelines) or the final sample in model
            space before post-processing (pixel-space pipelines; see the module docs).
        seconds: wall time of the pipeline calls (and VAE decoding), noise drawing excluded.
        protocol: the protocol that made the samples, ``None`` for hand-made batches.
    """

    images: torch.Tensor
    latents: torch.Tensor
    seconds: float = 0.0
    protocol: EvalProtocol | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return self.images.shape[0]


def generate(
    pipe: Any, protocol: EvalProtocol, schedule: Any = None, progress: bool = False, first: int = 0
) -> SampleBatch:
    """Sample ``protocol.num_samples`` images with ``pipe``, optionally under a reuse schedule.

    Sample ``i`` depends only on ``i`` and the protocol (its noise, label or prompt and generator),
    so ``first=k`` gives samples ``k..N-1`` exactly as a whole run would: it extends an earlier run
    of the first ``k`` samples.

    Args:
        pipe: a diffusers pipeline (class-conditional, text-to-image or unconditional).
        protocol: the study's evaluation protocol.
        schedule: a ``ReuseSchedule`` or a path to a schedule JSON file, installed for this call only;
            ``None`` runs the pipeline as it is (full compute).
        progress: show a progress bar over batches.

    Raises:
        QualityError: the samples contain NaN or inf (the schedule is unstable).
        ConfigError: the protocol does not fit the pipeline (labels for a text model, ...).
    """
    parameters = inspect.signature(pipe.__call__).parameters
    conditioning = _conditioning(pipe, protocol, parameters)
    noise = initial_noise(pipe, protocol, parameters)
    vae = getattr(pipe, "vae", None)
    images, latents, seconds = [], [], 0.0
    with (
        _scheduler(pipe, protocol.scheduler),
        _pipeline_progress_bar(pipe, disable=True),
        _reuse_schedule(pipe, schedule),
    ):
        for start in _progress(range(first, protocol.num_samples, protocol.batch_size), progress):
            stop = min(start + protocol.batch_size, protocol.num_samples)
            kwargs = _call_kwargs(pipe, protocol, parameters, conditioning, noise, start, stop)
            began = time.perf_counter()
            batch_images, batch_latents = run_batch(pipe, vae, parameters, kwargs)
            seconds += time.perf_counter() - began
            _check_finite(batch_images, batch_latents, start)
            images.append(batch_images)
            latents.append(batch_latents)
    logger.debug("generated %d samples in %.2f s (%s)", protocol.num_samples, seconds, protocol.cache_key())
    return SampleBatch(images=torch.cat(images), latents=torch.cat(latents), seconds=seconds, protocol=protocol)


def _conditioning(pipe: Any, protocol: EvalProtocol, parameters: Any) -> tuple[str, list] | None:
    if protocol.num_classes is not None:
        if "class_labels" not in parameters:
            raise ConfigError(
                f"{type(pipe).__name__} takes no class labels: unset num_classes in the evaluation protocol"
            )
        return "class_labels", protocol.class_labels()
    if protocol.prompts:
        if "prompt" not in parameters:
            raise ConfigError(f"{type(pipe).__name__} takes no prompts: unset prompts in the evaluation protocol")
        return "prompt", protocol.sample_prompts()
    if "class_labels" in parameters or ("prompt" in parameters and "batch_size" not in parameters):
        raise ConfigError(
            f"{type(pipe).__name__} is conditional: set num_classes (class labels) or prompts in the evaluation protocol"
        )
    return None


def _call_kwargs(pipe, protocol, parameters, conditioning, noise, start, stop) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"num_inference_steps": protocol.num_inference_steps}
    if conditioning is None:
        kwargs["batch_size"] = stop - start
    else:
        name, values = conditioning
        kwargs[name] = values[start:stop]
    if "generator" in parameters:
        kwargs["generator"] = [torch.Generator("cpu").manual_seed(protocol.seed + 1 + i) for i in range(start, stop)]
    if noise is not None:
        denoiser = denoiser_of(pipe)
        kwargs["latents"] = noise[start:stop].to(device=denoiser.device, dtype=denoiser.dtype)
    if protocol.guidance_scale is not None:
        if "guidance_scale" not in parameters:
            raise ConfigError(
                f"{type(pipe).__name__} has no guidance: set guidance_scale to null in the evaluation protocol"
            )
        kwargs["guidance_scale"] = protocol.guidance_scale
    for key, value in protocol.call_options:
        if key not in parameters:
            raise ConfigError(f"{type(pipe).__name__} takes no {key!r}: remove it from the protocol's call_options")
        kwargs[key] = value
    if protocol.resolution is not None and "height" in parameters and "width" in parameters:
        kwargs["height"] = kwargs["width"] = protocol.resolution
    return kwargs


def _check_finite(images: torch.Tensor, latents: torch.Tensor, start: int) -> None:
    bad_images = ~torch.isfinite(images).flatten(1).all(1)
    bad_latents = ~torch.isfinite(latents).flatten(1).all(1)
    if bad_images.any() or bad_latents.any():
        bad = max(int(bad_images.sum()) * len(latents) // max(1, len(images)), int(bad_latents.sum()))
        raise QualityError(
            f"sampling produced NaN or inf in {max(1, bad)} of {len(latents)} samples (batch at sample {start}): "
            "the schedule is unstable; reuse fewer steps or layers"
        )


@contextlib.contextmanager
def _scheduler(pipe: Any, name: str | None) -> Iterator[None]:
    """Swap in the protocol's scheduler for the call; give the pipeline its own back afterwards."""
    if name is None:
        yield
        return
    scheduler_cls, options = scheduler_class(name)
    original = pipe.scheduler
    if type(original) is scheduler_cls and all(original.config.get(k) == v for k, v in options.items()):
        yield
        return
    pipe.scheduler = scheduler_cls.from_config(original.config, **options)
    try:
        yield
    finally:
        pipe.scheduler = original


@contextlib.contextmanager
def _pipeline_progress_bar(pipe: Any, disable: bool) -> Iterator[None]:
    if not hasattr(pipe, "set_progress_bar_config"):
        yield
        return
    saved = copy.copy(getattr(pipe, "_progress_bar_config", {}))
    pipe.set_progress_bar_config(disable=disable)
    try:
        yield
    finally:
        pipe._progress_bar_config = saved


@contextlib.contextmanager
def _reuse_schedule(pipe: Any, schedule: Any) -> Iterator[None]:
    if schedule is None:
        yield
        return
    from autofr.reuse import apply_schedule, remove_schedule

    apply_schedule(pipe, schedule)
    try:
        yield
    finally:
        remove_schedule(pipe)


def _progress(batches: Sequence[int], show: bool):
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, desc="sampling", unit="batch")
