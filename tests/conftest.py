"""Tiny random-init diffusers models of the four supported families, and a plain sampling loop.

Everything here is built from configs: no weights are downloaded.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DiTTransformer2DModel,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PixArtTransformer2DModel,
    UNet2DConditionModel,
    UNet2DModel,
)

# Tiny models: on a shared 2-core machine two OpenMP threads stall each other whenever another
# process holds a core (measured: 190 s vs 16 s for tests/models), so every test runs on one thread.
torch.set_num_threads(1)

FAMILIES = ("unet", "unet_cond", "dit", "pixart")


def tiny_study_overrides(model_path) -> list[str]:
    """The model, space and quality overrides of a short study of :func:`save_tiny_digit_pipeline`'s model
    (8 steps, proxy SSIM on 8 samples, FID against full compute's samples); a test adds the rest."""
    return [
        f"model.path={model_path}",
        "model.name=tiny",
        "model.num_inference_steps=8",
        "model.guidance_scale=2.0",
        "space.steps=[6,8]",
        "space.max_interval=3",
        "quality.proxy_samples=8",
        "quality.batch_size=8",
        "quality.fid_reference=full_compute",
        "quality.proxy=ssim",
    ]


def save_tiny_digit_pipeline(path) -> None:
    """A random-init 16x16 one-channel class-conditional UNet pipeline (digit-shaped) saved to ``path``."""
    from autofr.models.pipeline import ClassConditionalPipeline

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        attention_head_dim=8,
        num_class_embeds=11,
    )
    ClassConditionalPipeline(unet, DDIMScheduler(num_train_timesteps=1000)).save_pretrained(path)


def build_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "unet":
        model = UNet2DModel(
            sample_size=8,
            in_channels=2,
            out_channels=2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            attention_head_dim=8,
            num_class_embeds=4,
        )
    elif family == "unet_cond":
        model = UNet2DConditionModel(
            sample_size=8,
            in_channels=2,
            out_channels=2,
            block_out_channels=(8, 16),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            norm_num_groups=4,
            cross_attention_dim=12,
            attention_head_dim=4,
        )
    elif family == "dit":
        model = DiTTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=2,
            out_channels=2,
            num_layers=3,
            sample_size=8,
            patch_size=2,
            num_embeds_ada_norm=4,
            norm_num_groups=4,
        )
    elif family == "pixart":
        model = PixArtTransformer2DModel(
            num_attention_heads=2,
            attention_head_dim=8,
            in_channels=2,
            out_channels=2,
            num_layers=3,
            cross_attention_dim=16,
            sample_size=8,
            patch_size=2,
            caption_channels=12,
            norm_num_groups=4,
        )
    else:
        raise ValueError(family)
    return model.eval()


SCHEDULERS = {
    "ddim": lambda: DDIMScheduler(num_train_timesteps=1000),
    "dpmsolver++": lambda: DPMSolverMultistepScheduler(num_train_timesteps=1000, algorithm_type="dpmsolver++"),
    "euler": lambda: EulerDiscreteScheduler(num_train_timesteps=1000),
}


class TinyPipeline:
    """A plain diffusers-style sampling loop with batched classifier-free guidance.

    Like every diffusers pipeline, it calls ``scheduler.set_timesteps`` once per call and the
    denoiser once per step.
    """

    def __init__(self, family: str, scheduler: str = "ddim"):
        self.family = family
        model = build_model(family)
        self.unet = model if family.startswith("unet") else None
        self.transformer = None if family.startswith("unet") else model
        self.scheduler = SCHEDULERS[scheduler]()

    @property
    def denoiser(self):
        return self.unet if self.unet is not None else self.transformer

    def conditioning(self, batch: int) -> dict:
        """Conditional and unconditional inputs, concatenated (uncond first) for one batched call."""
        generator = torch.Generator().manual_seed(1)
        if self.family in ("unet", "dit"):
            labels = torch.arange(batch) % 3
            return {"class_labels": torch.cat([torch.full_like(labels, 3), labels])}
        width = 12
        cond = torch.randn(batch, 5, width, generator=generator)
        states = torch.cat([torch.zeros_like(cond), cond])
        if self.family == "pixart":
            return {"encoder_hidden_states": states, "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
        return {"encoder_hidden_states": states}

    @torch.no_grad()
    def __call__(self, batch: int = 2, num_inference_steps: int = 10, seed: int = 0, guidance_scale: float = 3.0):
        model = self.denoiser
        self.scheduler.set_timesteps(num_inference_steps)
        generator = torch.Generator().manual_seed(seed)
        latents = torch.randn(batch, 2, 8, 8, generator=generator) * self.scheduler.init_noise_sigma
        extra = self.conditioning(batch)
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * 2), t)
            timestep = t.expand(model_input.shape[0])
            if self.family.startswith("unet"):
                out = model(model_input, timestep, return_dict=False, **extra)[0]
            else:
                out = model(hidden_states=model_input, timestep=timestep, return_dict=False, **extra)[0]
            uncond, cond = out.chunk(2)
            noise = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents).prev_sample
        return latents


@pytest.fixture(params=FAMILIES)
def family(request):
    return request.param


@pytest.fixture
def pipeline(family):
    return TinyPipeline(family)
