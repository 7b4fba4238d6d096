"""How autofr talks to a diffusers pipeline: the noise it is handed and how samples come back.

Latent layouts
    *Spatial* pipelines (the denoiser takes ``(N, C, h, w)`` latents: Stable Diffusion, SDXL, SD3,
    PixArt, Sana, the embedded digit models) are handed the initial noise through ``latents=`` and run
    with ``output_type="latent"``; the latents are decoded here with ``pipe.vae``
    (``scaling_factor``/``shift_factor``). *Packed* (Flux, Qwen-Image: ``_pack_latents``) and *video*
    pipelines (a ``num_frames`` argument: Wan, HunyuanVideo, LTX, ...) draw their own noise from the
    per-sample generators (batch-size independent all the same) and decode it themselves
    (``output_type="pt"``); their final latents, in the pipeline's own layout, come from
    ``callback_on_step_end``.
Video
    Every frame counts as one image: a batch of N videos of F frames gives N*F images, frame j of
    video i paired with frame j of the reference's video i, so FID-N of a video model is over N*F
    frames and the paired proxies compare frame by frame.
Pixel space and legacy pipelines
    Pipelines without a VAE give the final sample in model space from ``callback_on_step_end``
    (else the images mapped back, ``2 * x - 1``); legacy VAE pipelines without latent output
    (``DiTPipeline``) are run with ``output_type="pt"`` while the input of ``pipe.vae.decode`` is
    recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from autofr.errors import ConfigError

if TYPE_CHECKING:
    from autofr.evaluation import EvalProtocol


def denoiser_of(pipe: Any) -> torch.nn.Module:
    """The pipeline's denoising network (``unet``, ``transformer``, ``denoiser`` or ``prior``)."""
    for name in ("unet", "transformer", "denoiser", "prior"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise ConfigError(
        f"{type(pipe).__name__} has no unet, transformer or denoiser: autofr evaluates diffusers denoising pipelines"
    )


def latent_layout(pipe: Any, parameters: Any) -> str:
    """``spatial``, ``packed`` or ``video`` (see the module docs)."""
    if "num_frames" in parameters:
        return "video"
    if hasattr(pipe, "_pack_latents"):
        return "packed"
    return "spatial"


def _spatial_size(sample_size: Any) -> tuple[int, int]:
    if isinstance(sample_size, int):
        return sample_size, sample_size
    return tuple(sample_size)  # type: ignore[return-value]


def initial_noise(pipe: Any, protocol: EvalProtocol, parameters: Any) -> torch.Tensor | None:
    if "latents" not in parameters or latent_layout(pipe, parameters) != "spatial":
        return None
    denoiser = denoiser_of(pipe)
    channels = denoiser.config.in_channels
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        factor = getattr(pipe, "vae_scale_factor", None) or 2 ** (len(vae.config.block_out_channels) - 1)
        if protocol.resolution is not None:
            height = width = protocol.resolution // factor
        else:
            height, width = _spatial_size(denoiser.config.sample_size)
    else:
        height, width = _spatial_size(denoiser.config.sample_size)
        if protocol.resolution is not None and (height, width) != (protocol.resolution, protocol.resolution):
            if "height" not in parameters:
                raise ConfigError(
                    f"{type(pipe).__name__} samples {height}x{width} pixels only: set resolution to {height} or null"
                )
            height = width = protocol.resolution
    generator = torch.Generator("cpu").manual_seed(protocol.seed)
    return torch.randn((protocol.num_samples, channels, height, width), generator=generator, dtype=torch.float32)


def run_batch(pipe, vae, parameters, kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """One pipeline call -> (images in [0, 1], latents), both float32 on the CPU."""
    if vae is None:
        final: list[torch.Tensor] = []
        if "callback_on_step_end" in parameters:
            kwargs["callback_on_step_end"] = _record_latents(final)
        images = _as_tensor(pipe(**kwargs, output_type="pt").images, type(pipe).__name__)
        latents = final[-1] if final else images * 2 - 1
        return images.float().cpu(), latents.float().cpu()
    if "latents" in parameters and latent_layout(pipe, parameters) == "spatial":
        latents = _as_tensor(pipe(**kwargs, output_type="latent").images, type(pipe).__name__)
        return _decode(vae, latents).float().cpu(), latents.float().cpu()
    if "callback_on_step_end" in parameters:  # packed and video latents: the pipeline decodes its own layout
        final = []
        kwargs["callback_on_step_end"] = _record_latents(final)
        output = pipe(**kwargs, output_type="pt")
        frames = getattr(output, "frames", None)
        if frames is not None:  # (N, F, C, H, W) videos: every frame is one image
            frames = _as_tensor(frames, type(pipe).__name__)
            images = frames.reshape(-1, *frames.shape[2:])
        else:
            images = _as_tensor(output.images, type(pipe).__name__)
        if not final:
            raise ConfigError(
                f"{type(pipe).__name__} reported no latents through callback_on_step_end: it cannot be evaluated"
            )
        return images.float().cpu(), final[-1].float().cpu()
    # Legacy VAE pipelines (DiTPipeline) have no latent output: record what they decode.
    recorded: list[torch.Tensor] = []
    original_decode = vae.decode

    def recording_decode(z, *args, **decode_kwargs):
        recorded.append(z.detach())
        return original_decode(z, *args, **decode_kwargs)

    vae.decode = recording_decode
    try:
        images = _as_tensor(pipe(**kwargs, output_type="pt").images, type(pipe).__name__)
    finally:
        del vae.decode
    scaling = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    latents = (recorded[-1].float() - shift) * scaling
    return images.float().cpu(), latents.cpu()


def _record_latents(final: list[torch.Tensor]):
    """A diffusers ``callback_on_step_end`` that keeps the latents after the last step."""

    def record(pipe, step_index, timestep, callback_kwargs):
        final[:] = [callback_kwargs["latents"].detach()]
        return {}

    return record


def _as_tensor(images: Any, pipeline_name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise ConfigError(
            f"{pipeline_name} did not return a tensor for output_type='pt'/'latent': it cannot be evaluated"
        )
    return images


@torch.no_grad()
def _decode(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    scaling = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    upcast = vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False)
    original_dtype = vae.dtype
    if upcast:  # SDXL's fp16 VAE overflows; its pipeline decodes in float32 too.
        vae.to(torch.float32)
    try:
        decoded = vae.decode((latents / scaling + shift).to(vae.dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(original_dtype)
    return (decoded / 2 + 0.5).clamp(0, 1)
