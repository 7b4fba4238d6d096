"""A class-conditional flow-matching pipeline around diffusers' ``FluxTransformer2DModel``.

The class is the prompt. :class:`ClassTokenEncoder` stands where Flux's text encoders stand: each class
(and the null class ``num_classes``, the unconditional branch of classifier-free guidance) has a few
learned tokens, handed to the transformer as ``encoder_hidden_states`` with ``txt_ids`` of zeros, and a
learned pooled vector, handed over as ``pooled_projections``. The transformer sees the call a Flux text
pipeline makes: ``hidden_states`` (packed latent tokens), ``encoder_hidden_states``,
``pooled_projections``, ``timestep`` (sigma in ``[0, 1]``), ``img_ids`` and ``txt_ids``.

Latent space: an image in model space (``[-1, 1]``, ``(N, 1, 16, 16)``) packed 2x2 into channels
(``pixel_unshuffle``), so latents are ``(N, 4, 8, 8)`` and every latent pixel is one transformer token,
like Flux's packing of its VAE latents. The transformer's config carries ``sample_size`` (the latent
grid, 8) next to ``in_channels`` (4), so tools that draw initial noise from the denoiser's config
(``autofr.evaluation.generate``) draw it in this shape.

Sampling: ``FlowMatchEulerDiscreteScheduler`` (no dynamic shifting, so no ``mu``), velocity
prediction, true classifier-free guidance with the conditional and unconditional branches batched
into one transformer call per step, inside ``transformer.cache_context("cond_uncond", ...)`` so
diffusers' caches (``transformer.enable_cache``) run on it. No host syncs inside the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel, ImagePipelineOutput
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from autofr.errors import ConfigError
from autofr.models.pipeline import check_call_arguments, images_output, initial_latents, validated_class_labels

#: Side of the square of pixels packed into one latent token (Flux packs 2x2 latent pixels too).
PACKING = 2
#: The sampling defaults of ``digits_flux`` (chosen by measurement, ``assets/TRAINING.md``); its quality gate uses them.
DEFAULT_NUM_INFERENCE_STEPS = 28
DEFAULT_GUIDANCE_SCALE = 1.25


class ClassTokenEncoder(ModelMixin, ConfigMixin):
    """Class labels in the shape of a text encoder's output.

    Each of ``num_classes + 1`` labels (the last one is the null class) owns ``tokens_per_class``
    learned token embeddings of width ``joint_attention_dim`` and one learned pooled embedding of
    width ``pooled_projection_dim``, the two inputs a Flux transformer takes from its text encoders.
    """

    @register_to_config
    def __init__(
        self,
        num_classes: int = 10,
        tokens_per_class: int = 4,
        joint_attention_dim: int = 32,
        pooled_projection_dim: int = 32,
    ):
        super().__init__()
        self.token_embedding = torch.nn.Embedding(num_classes + 1, tokens_per_class * joint_attention_dim)
        self.pooled_embedding = torch.nn.Embedding(num_classes + 1, pooled_projection_dim)

    def forward(self, class_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(encoder_hidden_states (N, tokens_per_class, joint_attention_dim), pooled_projections (N, pooled))``."""
        tokens = self.token_embedding(class_labels)
        tokens = tokens.view(class_labels.shape[0], self.config.tokens_per_class, self.config.joint_attention_dim)
        return tokens, self.pooled_embedding(class_labels)


def pack_images(images: torch.Tensor) -> torch.Tensor:
    """Model-space images ``(N, C, H, W)`` -> latents ``(N, C * 4, H / 2, W / 2)``."""
    return F.pixel_unshuffle(images, PACKING)


def unpack_latents(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``(N, C * 4, h, w)`` -> model-space images ``(N, C, 2 h, 2 w)``."""
    return F.pixel_shuffle(latents, PACKING)


def latent_tokens(latents: torch.Tensor) -> torch.Tensor:
    """Latents ``(N, C, h, w)`` -> transformer tokens ``(N, h * w, C)``, row by row."""
    return latents.flatten(2).transpose(1, 2)


def latent_image_ids(grid: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Flux position ids ``(grid * grid, 3)`` of the latent tokens: ``(0, row, column)``."""
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    ids = torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3)
    return ids.to(device=device, dtype=dtype)


class _DropGridSizeNotice(logging.Filter):
    """diffusers notes that ``sample_size`` is no argument of ``FluxTransformer2DModel``; it is ours, and kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("FluxTransformer2DModel" in message and "{'sample_size'" in message)


class ClassConditionalFluxPipeline(DiffusionPipeline):
    """Sample images of given classes with a class-conditional ``FluxTransformer2DModel``.

    Registered modules: ``transformer`` (``FluxTransformer2DModel`` with ``sample_size`` in its
    config), ``scheduler`` (``FlowMatchEulerDiscreteScheduler``) and ``class_encoder``
    (:class:`ClassTokenEncoder`). Same call interface as ``ClassConditionalPipeline``.
    """

    model_cpu_offload_seq = "class_encoder->transformer"

    def __init__(
        self,
        transformer: FluxTransformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        class_encoder: ClassTokenEncoder,
    ):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, class_encoder=class_encoder)
        self._current_timestep = None

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """``DiffusionPipeline.from_pretrained``, without diffusers' notice about the config's ``sample_size``."""
        notice = _DropGridSizeNotice()
        config_logger = logging.getLogger("diffusers.configuration_utils")
        config_logger.addFilter(notice)
        try:
            return super().from_pretrained(*args, **kwargs)
        finally:
            config_logger.removeFilter(notice)

    @property
    def num_classes(self) -> int:
        """Number of real classes; the label ``num_classes`` is the null (unconditional) class."""
        return self.class_encoder.config.num_classes

    @property
    def null_class_label(self) -> int:
        return self.num_classes

    @property
    def num_timesteps(self) -> int:
        """Number of denoising steps of the current (or last) call."""
        return self._num_timesteps

    @property
    def current_timestep(self) -> torch.Tensor | None:
        """Timestep of the step being computed (``None`` outside a call), for PAB/FasterCache callbacks."""
        return self._current_timestep

    @property
    def latent_grid(self) -> int:
        grid = self.transformer.config.get("sample_size")
        if not isinstance(grid, int):
            raise ConfigError(
                "the transformer config has no sample_size: set it to the latent grid size "
                "(image size / 2) with transformer.register_to_config(sample_size=...)"
            )
        return grid

    @torch.no_grad()
    def __call__(
        self,
        class_labels: int | list[int] | torch.Tensor,
        num_inference_steps: int = DEFAULT_NUM_INFERENCE_STEPS,
        guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        callback_on_step_end: Callable[[ClassConditionalFluxPipeline, int, torch.Tensor, dict], dict] | None = None,
    ) -> ImagePipelineOutput | tuple:
        """Generate one image per entry of ``class_labels``.

        Args:
            class_labels: class index (``0 .. num_classes - 1``) of each image.
            num_inference_steps: Euler steps; ``scheduler.set_timesteps`` is called once with it.
            guidance_scale: classifier-free guidance weight; ``<= 1`` disables guidance (one
                conditional transformer call per step instead of a doubled batch).
            generator: seeds the initial noise.
            latents: initial noise ``(N, 4, 8, 8)`` (packed, see the module docs), standard normal.
            output_type: ``"pt"`` (float32 CPU tensor ``(N, 1, 16, 16)``), ``"np"`` (``(N, 16, 16, 1)``
                array) or ``"pil"`` (list of images); values in ``[0, 1]``.
            return_dict: return an ``ImagePipelineOutput`` (else a tuple ``(images,)``).
            callback_on_step_end: optional ``fn(pipeline, step_index, timestep, {"latents": ...})``
                called after every step; a returned ``"latents"`` entry replaces the latents.
        """
        check_call_arguments(num_inference_steps, output_type)
        if not isinstance(self.scheduler, FlowMatchEulerDiscreteScheduler):
            raise ConfigError(
                f"{type(self).__name__} samples by flow matching and needs a FlowMatchEulerDiscreteScheduler, got "
                f"{type(self.scheduler).__name__}: keep the saved scheduler (model.scheduler=null)"
            )
        device = self._execution_device
        dtype = self.transformer.dtype
        labels = validated_class_labels(class_labels, self.num_classes, device)
        batch_size = labels.shape[0]
        grid = self.latent_grid
        shape = (batch_size, self.transformer.config.in_channels, grid, grid)
        latents = initial_latents(shape, latents, generator, device, dtype)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        self.scheduler.set_begin_index(0)  # spares the scheduler a timestep lookup (a host sync)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        sigmas = self.scheduler.sigmas.tolist()  # one sync per call, for the cache context
        model_times = (timesteps / self.scheduler.config.num_train_timesteps).to(dtype)

        use_guidance = guidance_scale > 1.0
        if use_guidance:
            model_labels = torch.cat([torch.full_like(labels, self.null_class_label), labels])
        else:
            model_labels = labels
        model_batch = model_labels.shape[0]
        prompt_embeds, pooled_prompt_embeds = self.class_encoder(model_labels)
        prompt_embeds, pooled_prompt_embeds = prompt_embeds.to(dtype), pooled_prompt_embeds.to(dtype)
        text_ids = torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=dtype)
        image_ids = latent_image_ids(grid, device, dtype)
        context_name = "cond_uncond" if use_guidance else "cond"

        for step_index, timestep in enumerate(timesteps):
            self._current_timestep = timestep
            tokens = latent_tokens(latents)
            if use_guidance:
                tokens = torch.cat([tokens, tokens])
            with self.transformer.cache_context(
                context_name,
                step_index=step_index,
                timestep=timestep,
                num_inference_steps=len(timesteps),
                sigma=sigmas[step_index],
            ):
                velocity = self.transformer(
                    hidden_states=tokens,
                    encoder_hidden_states=prompt_embeds,
                    pooled_projections=pooled_prompt_embeds,
                    timestep=model_times[step_index].expand(model_batch),
                    img_ids=image_ids,
                    txt_ids=text_ids,
                    return_dict=False,
                )[0]
            if use_guidance:
                velocity_uncond, velocity_cond = velocity.chunk(2)
                velocity = torch.lerp(velocity_uncond, velocity_cond, guidance_scale)
            velocity = velocity.transpose(1, 2).reshape(shape)
            latents = self.scheduler.step(velocity, timestep, latents, return_dict=False)[0]
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(self, step_index, timestep, {"latents": latents})
                if outputs and "latents" in outputs:
                    latents = outputs["latents"]
        self._current_timestep = None

        images = (unpack_latents(latents.float()) * 0.5 + 0.5).clamp_(0.0, 1.0).cpu()
        self.maybe_free_model_hooks()
        return images_output(self, images, output_type, return_dict)
