"""Train ``digits_flux``: a tiny class-conditional ``FluxTransformer2DModel`` on 16x16 digits.

Run through the project's training script: ``python -m autofr.models.train_digits --which flux``.

Rectified flow: ``x_sigma = (1 - sigma) x_0 + sigma * noise`` with ``sigma ~ U(0, 1)``, the transformer
predicts the velocity ``noise - x_0`` (plain MSE). The class reaches the transformer as a prompt
would, through :class:`~autofr.models.flux_pipeline.ClassTokenEncoder` (class tokens and a pooled
class vector, trained together with the transformer). 10% of labels are dropped to the null class for
classifier-free guidance. Same data, optimiser, warm-up/cosine schedule, gradient clipping and EMA as
the other embedded denoisers; the EMA weights of both modules are saved as a
``ClassConditionalFluxPipeline`` with a ``FlowMatchEulerDiscreteScheduler``.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from autofr.models.training import (
    EMA_DECAY,
    IMAGE_SIZE,
    LABEL_DROPOUT,
    NULL_CLASS_LABEL,
    NUM_CLASSES,
    ema_update,
    learning_rate_factor,
)

logger = logging.getLogger(__name__)

LATENT_GRID = IMAGE_SIZE // 2
TRANSFORMER_CONFIG = dict(
    in_channels=4,  # 1 image channel packed 2x2
    num_layers=2,  # double-stream (joint attention) blocks
    num_single_layers=2,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=32,
    pooled_projection_dim=32,
    guidance_embeds=False,
    axes_dims_rope=(8, 12, 12),
)
CLASS_ENCODER_CONFIG = dict(
    num_classes=NUM_CLASSES, tokens_per_class=4, joint_attention_dim=32, pooled_projection_dim=32
)
# No resolution-dependent shifting (so no mu): plain linear sigmas from 1 to 0.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
DEFAULT_TRAINING = dict(steps=3000, batch_size=128, learning_rate=1e-3)


def build_flux_modules() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fresh ``(FluxTransformer2DModel, ClassTokenEncoder)`` pair with the shipped configs."""
    from diffusers import FluxTransformer2DModel

    from autofr.models.flux_pipeline import ClassTokenEncoder

    transformer = FluxTransformer2DModel(**TRANSFORMER_CONFIG)
    transformer.register_to_config(sample_size=LATENT_GRID)
    return transformer, ClassTokenEncoder(**CLASS_ENCODER_CONFIG)


def _velocity(
    transformer,
    class_encoder,
    noisy: torch.Tensor,
    sigmas: torch.Tensor,
    labels: torch.Tensor,
    image_ids: torch.Tensor,
    text_ids: torch.Tensor,
) -> torch.Tensor:
    from autofr.models.flux_pipeline import latent_tokens

    prompt_embeds, pooled_prompt_embeds = class_encoder(labels)
    return transformer(
        hidden_states=latent_tokens(noisy),
        encoder_hidden_states=prompt_embeds,
        pooled_projections=pooled_prompt_embeds,
        timestep=sigmas,
        img_ids=image_ids,
        txt_ids=text_ids,
        return_dict=False,
    )[0]


def count_flux_macs_per_sample(transformer: torch.nn.Module, class_encoder: torch.nn.Module) -> int:
    """Multiply-accumulates of one transformer forward on one sample (FlopCounterMode FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    from autofr.models.flux_pipeline import latent_image_ids

    was_training = transformer.training
    transformer.eval()
    noisy = torch.zeros(1, TRANSFORMER_CONFIG["in_channels"], LATENT_GRID, LATENT_GRID)
    image_ids = latent_image_ids(LATENT_GRID, noisy.device, noisy.dtype)
    text_ids = torch.zeros(CLASS_ENCODER_CONFIG["tokens_per_class"], 3)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        _velocity(transformer, class_encoder, noisy, torch.tensor([0.5]), torch.tensor([0]), image_ids, text_ids)
    transformer.train(was_training)
    return counter.get_total_flops() // 2


def train_flux(out: Path, seed: int, steps: int, batch_size: int, learning_rate: float) -> dict:
    from diffusers import FlowMatchEulerDiscreteScheduler

    from autofr.models.digits_data import load_digits_images
    from autofr.models.flux_pipeline import ClassConditionalFluxPipeline, latent_image_ids, latent_tokens, pack_images

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits_images("train", size=IMAGE_SIZE)
    clean_latents = pack_images(images * 2.0 - 1.0)
    image_ids = latent_image_ids(LATENT_GRID, clean_latents.device, clean_latents.dtype)
    text_ids = torch.zeros(CLASS_ENCODER_CONFIG["tokens_per_class"], 3)

    transformer, class_encoder = build_flux_modules()
    ema_transformer = copy.deepcopy(transformer).requires_grad_(False)
    ema_class_encoder = copy.deepcopy(class_encoder).requires_grad_(False)
    parameters = [*transformer.parameters(), *class_encoder.parameters()]
    ema_parameters = [*ema_transformer.parameters(), *ema_class_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, steps))

    losses = []
    started = time.perf_counter()
    transformer.train()
    class_encoder.train()
    progress = tqdm(range(steps), desc="train flux", unit="step", file=sys.stderr, mininterval=5)
    for step in progress:
        index = torch.randint(len(clean_latents), (batch_size,), generator=generator)
        clean, class_labels = clean_latents[index], labels[index]
        dropped = torch.rand(batch_size, generator=generator) < LABEL_DROPOUT
        class_labels = torch.where(dropped, NULL_CLASS_LABEL, class_labels)
        sigmas = torch.rand(batch_size, generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        sigma = sigmas.view(-1, 1, 1, 1)
        noisy = (1.0 - sigma) * clean + sigma * noise

        velocity = _velocity(transformer, class_encoder, noisy, sigmas, class_labels, image_ids, text_ids)
        loss = F.mse_loss(velocity, latent_tokens(noise - clean))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema_update(ema_parameters, parameters, step)
        losses.append(loss.item())
        if step % 100 == 99:
            progress.set_postfix(loss=f"{sum(losses[-100:]) / 100:.4f}")
    wall_seconds = time.perf_counter() - started

    ema_transformer.eval()
    ema_class_encoder.eval()
    pipeline = ClassConditionalFluxPipeline(
        transformer=ema_transformer,
        class_encoder=ema_class_encoder,
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    pipeline.save_pretrained(out / "digits_flux", safe_serialization=True)
    tail = losses[-200:]
    summary = {
        "model": "digits_flux",
        "denoiser_class": type(transformer).__name__,
        "denoiser_config": {**TRANSFORMER_CONFIG, "sample_size": LATENT_GRID},
        "class_encoder_config": CLASS_ENCODER_CONFIG,
        "scheduler_config": SCHEDULER_CONFIG,
        "objective": "rectified flow: velocity noise - x0 at sigma ~ U(0, 1), MSE",
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "ema_decay": EMA_DECAY,
        "label_dropout": LABEL_DROPOUT,
        "wall_seconds": round(wall_seconds, 1),
        "final_velocity_mse_mean_last_200_steps": round(sum(tail) / len(tail), 5),
        "parameters": sum(p.numel() for p in transformer.parameters()),
        "class_encoder_parameters": sum(p.numel() for p in class_encoder.parameters()),
        "macs_per_sample_forward": count_flux_macs_per_sample(ema_transformer, ema_class_encoder),
    }
    logger.info(
        "trained digits_flux in %.0f s, final loss %.4f",
        wall_seconds,
        summary["final_velocity_mse_mean_last_200_steps"],
    )
    return summary
