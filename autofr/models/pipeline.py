"""A class-conditional pixel-space diffusion pipeline with classifier-free guidance.

The denoiser is a ``UNet2DModel`` with class embeddings (``num_class_embeds = num_classes + 1``) or a
``DiTTransformer2DModel`` (``num_embeds_ada_norm = num_classes``); in both the label ``num_classes``
is the null class used for the unconditional branch of classifier-free guidance. The model works in
``[-1, 1]``; images come out in ``[0, 1]``.

The denoising loop is kept lean because searches call it thousands of times: one batched denoiser
call per step (``[unconditional, conditional]`` halves when guidance is on), no host syncs inside the
loop, no progress bar.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from diffusers import DiffusionPipeline, DiTTransformer2DModel, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor

from autofr.errors import ConfigError

OUTPUT_TYPES = ("pt", "np", "pil")


class ClassConditionalPipeline(DiffusionPipeline):
    """Sample images of given classes from a class-conditional denoiser.

    Registered modules: ``denoiser`` (``UNet2DModel`` or ``DiTTransformer2DModel``) and ``scheduler``
    (any diffusers scheduler; tested with DDIM, DPM-Solver++ and Euler).
    """

    model_cpu_offload_seq = "denoiser"

    def __init__(self, denoiser: UNet2DModel | DiTTransformer2DModel, scheduler: SchedulerMixin):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)

    @property
    def num_classes(self) -> int:
        """Number of real classes; the label ``num_classes`` is the null (unconditional) class."""
        config = self.denoiser.config
        if getattr(config, "num_class_embeds", None):
            return config.num_class_embeds - 1
        if getattr(config, "num_embeds_ada_norm", None):
            return config.num_embeds_ada_norm
        raise ConfigError(
            f"{type(self.denoiser).__name__} has no class embedding: a class-conditional denoiser needs "
            "num_class_embeds (UNet2DModel) or num_embeds_ada_norm (DiTTransformer2DModel)"
        )

    @property
    def null_class_label(self) -> int:
        return self.num_classes

    @property
    def num_timesteps(self) -> int:
        """Number of denoising steps of the current (or last) call."""
        return self._num_timesteps

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | list[int] | torch.Tensor,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: Callable[[ClassConditionalPipeline, int, torch.Tensor, dict], dict] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Generate one image per entry of ``class_labels``.

        Args:
            class_labels: class index (``0 .. num_classes - 1``) of each image.
            num_inference_steps: denoising steps; ``scheduler.set_timesteps`` is called once with it.
            guidance_scale: classifier-free guidance weight; ``<= 1`` disables guidance (one
                conditional denoiser call per step instead of a doubled batch).
            generator: seeds the initial noise (and the scheduler's noise, for stochastic schedulers).
            latents: initial noise ``(N, C, H, W)`` in units of a standard normal; scaled by
                ``scheduler.init_noise_sigma`` like freshly drawn noise.
            output_type: ``"pt"`` (float32 CPU tensor ``(N, C, H, W)``), ``"np"`` (``(N, H, W, C)``
                array) or ``"pil"`` (list of images); values in ``[0, 1]``.
            return_dict: return an ``ImagePipelineOutput`` (else a tuple ``(images,)``).
            callback_on_step_end: optional ``fn(pipeline, step_index, timestep, {"latents": ...})``
                called after every step; a returned ``"latents"`` entry replaces the latents.
        """
        check_call_arguments(num_inference_steps, output_type)
        device = self._execution_device
        dtype = self.denoiser.dtype
        labels = validated_class_labels(class_labels, self.num_classes, device)
        batch_size = labels.shape[0]
        config = self.denoiser.config
        shape = (batch_size, config.in_channels, config.sample_size, config.sample_size)
        latents = initial_latents(shape, latents, generator, device, dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(0)  # spares the scheduler a timestep lookup (a host sync)
        latents = latents * self.scheduler.init_noise_sigma
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)

        use_guidance = guidance_scale > 1.0
        if use_guidance:
            model_labels = torch.cat([torch.full_like(labels, self.null_class_label), labels])
        else:
            model_labels = labels
        model_batch = model_labels.shape[0]
        step_kwargs = (
            {"generator": generator} if "generator" in inspect.signature(self.scheduler.step).parameters else {}
        )

        for step_index, timestep in enumerate(timesteps):
            model_input = self.scheduler.scale_model_input(latents, timestep)
            if use_guidance:
                model_input = torch.cat([model_input, model_input])
            noise_pred = self.denoiser(
                model_input, timestep.expand(model_batch), class_labels=model_labels, return_dict=False
            )[0]
            if use_guidance:
                noise_uncond, noise_cond = noise_pred.chunk(2)
                noise_pred = torch.lerp(noise_uncond, noise_cond, guidance_scale)
            latents = self.scheduler.step(noise_pred, timestep, latents, return_dict=False, **step_kwargs)[0]
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(self, step_index, timestep, {"latents": latents})
                if outputs and "latents" in outputs:
                    latents = outputs["latents"]

        images = (latents.float() * 0.5 + 0.5).clamp_(0.0, 1.0).cpu()
        self.maybe_free_model_hooks()
        return images_output(self, images, output_type, return_dict)


def check_call_arguments(num_inference_steps: int, output_type: str) -> None:
    """The checks every class-conditional pipeline makes before sampling."""
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"unknown output_type {output_type!r}: use one of {', '.join(OUTPUT_TYPES)}")
    if num_inference_steps < 1:
        raise ConfigError(f"num_inference_steps must be at least 1, got {num_inference_steps}")


def validated_class_labels(class_labels, num_classes: int, device: torch.device) -> torch.Tensor:
    """``class_labels`` as a 1-D long tensor on ``device``; ConfigError unless every label is a real class."""
    labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
    if labels.numel() == 0:
        raise ConfigError("class_labels is empty: pass at least one class index")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ConfigError(f"class labels must lie in 0..{num_classes - 1}, got {labels.tolist()}")
    return labels.to(device)


def initial_latents(shape: tuple, latents, generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fresh standard-normal noise of ``shape``, or the given ``latents`` after a shape check."""
    if latents is None:
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)
    if tuple(latents.shape) != shape:
        raise ConfigError(f"latents must have shape {shape} for {shape[0]} labels, got {tuple(latents.shape)}")
    return latents.to(device=device, dtype=dtype)


def images_output(pipeline: DiffusionPipeline, images: torch.Tensor, output_type: str, return_dict: bool):
    """Images ``(N, C, H, W)`` in ``[0, 1]`` on the CPU as the requested ``output_type``."""
    if output_type != "pt":
        images = images.permute(0, 2, 3, 1).numpy()
        if output_type == "pil":
            images = pipeline.numpy_to_pil(images)
    if not return_dict:
        return (images,)
    return ImagePipelineOutput(images=images)
