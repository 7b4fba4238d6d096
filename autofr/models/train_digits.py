"""Train the embedded digit models: the UNet, DiT and Flux denoisers and the digit classifier.

    python -m autofr.models.train_digits --which all --out autofr/models/assets

Every run is seeded (``--seed``, default 0) and uses the train split of ``load_digits_images``.
Denoisers: epsilon prediction, DDPM noise schedule (1000 steps), 10% of labels dropped to the null
class for classifier-free guidance, AdamW with warm-up and cosine decay, EMA weights saved as a
``ClassConditionalPipeline`` with a DDIM scheduler. After training a denoiser, its conditional-sample
accuracy (the quality gate) is measured with the classifier in ``--out``. A summary of every run is
written to ``<out>/training_summary.json``. ``--which flux`` trains the flow-matching
``FluxTransformer2DModel`` of ``digits_flux`` instead (``autofr.models.train_flux``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from autofr.errors import AutoFRError, ConfigError
from autofr.models.train_flux import DEFAULT_TRAINING as FLUX_TRAINING
from autofr.models.train_flux import train_flux
from autofr.models.training import (
    EMA_DECAY,
    IMAGE_SIZE,
    LABEL_DROPOUT,
    NULL_CLASS_LABEL,
    NUM_CLASSES,
    ema_update,
    learning_rate_factor,
    update_summary,
)

logger = logging.getLogger(__name__)

# Min-SNR-gamma loss weighting (Hang et al. 2023): eps-prediction loss weighted by min(SNR, gamma) / SNR,
# which converges markedly faster than the plain loss.
MIN_SNR_GAMMA = 5.0

# The noise schedule the denoisers are trained with; the saved DDIM scheduler uses the same betas.
# clip_sample stays off: DDIM clips the predicted x0 but not the predicted noise, and with classifier-free
# guidance that mismatch wrecks the samples (conditional accuracy at guidance 3 fell from 100% to ~33%).
NOISE_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_schedule="linear",
    beta_start=1e-4,
    beta_end=0.02,
    prediction_type="epsilon",
    clip_sample=False,
)
SCHEDULER_OVERRIDES = dict(timestep_spacing="trailing")

DENOISER_CONFIGS = {
    "unet": dict(
        sample_size=IMAGE_SIZE,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 24, 48),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=8,
        num_class_embeds=NUM_CLASSES + 1,
    ),
    "dit": dict(
        sample_size=IMAGE_SIZE,
        in_channels=1,
        out_channels=1,
        patch_size=2,
        num_layers=4,
        num_attention_heads=4,
        attention_head_dim=16,
        num_embeds_ada_norm=NUM_CLASSES,
    ),
}

DEFAULT_DENOISER_TRAINING = {
    "unet": dict(steps=3000, batch_size=128, learning_rate=2e-3),
    "dit": dict(steps=3000, batch_size=128, learning_rate=1e-3),
}
GATE = dict(samples_per_class=50, num_inference_steps=50, guidance_scale=3.0, seed=0)


def build_denoiser(which: str) -> torch.nn.Module:
    from diffusers import DiTTransformer2DModel, UNet2DModel

    if which == "unet":
        return UNet2DModel(**DENOISER_CONFIGS["unet"])
    if which == "dit":
        return DiTTransformer2DModel(**DENOISER_CONFIGS["dit"])
    raise ConfigError(f"unknown denoiser {which!r}: use unet or dit")


def count_macs_per_sample(denoiser: torch.nn.Module) -> int:
    """Multiply-accumulates of one forward pass on one 16x16 sample (FlopCounterMode FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = denoiser.training
    denoiser.eval()
    sample = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        denoiser(sample, torch.tensor([500]), class_labels=torch.tensor([0]))
    denoiser.train(was_training)
    return counter.get_total_flops() // 2


def _disable_builtin_label_dropout(denoiser: torch.nn.Module) -> None:
    """DiT blocks each drop labels independently in train mode; the training loop drops them jointly."""
    from diffusers.models.embeddings import LabelEmbedding

    for module in denoiser.modules():
        if isinstance(module, LabelEmbedding):
            module.dropout_prob = 0.0


def train_denoiser(which: str, out: Path, seed: int, steps: int, batch_size: int, learning_rate: float) -> dict:
    from diffusers import DDIMScheduler, DDPMScheduler

    from autofr.models.digits_data import load_digits_images
    from autofr.models.pipeline import ClassConditionalPipeline

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits_images("train", size=IMAGE_SIZE)
    clean_samples = images * 2.0 - 1.0
    noise_scheduler = DDPMScheduler(**NOISE_SCHEDULE)
    alphas_cumprod = noise_scheduler.alphas_cumprod
    signal_to_noise = alphas_cumprod / (1.0 - alphas_cumprod)
    loss_weights = signal_to_noise.clamp(max=MIN_SNR_GAMMA) / signal_to_noise

    denoiser = build_denoiser(which)
    _disable_builtin_label_dropout(denoiser)
    ema_denoiser = copy.deepcopy(denoiser).requires_grad_(False)
    parameters = [p for p in denoiser.parameters()]
    ema_parameters = list(ema_denoiser.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, steps))

    losses = []
    started = time.perf_counter()
    denoiser.train()
    progress = tqdm(range(steps), desc=f"train {which}", unit="step", file=sys.stderr, mininterval=5)
    for step in progress:
        index = torch.randint(len(clean_samples), (batch_size,), generator=generator)
        clean, class_labels = clean_samples[index], labels[index]
        dropped = torch.rand(batch_size, generator=generator) < LABEL_DROPOUT
        class_labels = torch.where(dropped, NULL_CLASS_LABEL, class_labels)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        alpha_bar = alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        noisy = alpha_bar.sqrt() * clean + (1.0 - alpha_bar).sqrt() * noise

        noise_pred = denoiser(noisy, timesteps, class_labels=class_labels, return_dict=False)[0]
        per_sample_loss = F.mse_loss(noise_pred, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (loss_weights[timesteps] * per_sample_loss).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema_update(ema_parameters, parameters, step)
        losses.append(per_sample_loss.mean().item())
        if step % 100 == 99:
            progress.set_postfix(loss=f"{sum(losses[-100:]) / 100:.4f}")
    wall_seconds = time.perf_counter() - started

    ema_denoiser.eval()
    ddim = DDIMScheduler.from_config(noise_scheduler.config, **SCHEDULER_OVERRIDES)
    pipeline = ClassConditionalPipeline(denoiser=ema_denoiser, scheduler=ddim)
    target = out / f"digits_{which}"
    pipeline.save_pretrained(target, safe_serialization=True)
    tail = losses[-200:]
    summary = {
        "model": f"digits_{which}",
        "denoiser_class": type(denoiser).__name__,
        "denoiser_config": DENOISER_CONFIGS[which],
        "noise_schedule": NOISE_SCHEDULE,
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "ema_decay": EMA_DECAY,
        "label_dropout": LABEL_DROPOUT,
        "min_snr_gamma": MIN_SNR_GAMMA,
        "wall_seconds": round(wall_seconds, 1),
        "final_eps_mse_mean_last_200_steps": round(sum(tail) / len(tail), 5),
        "parameters": sum(p.numel() for p in denoiser.parameters()),
        "macs_per_sample_forward": count_macs_per_sample(ema_denoiser),
    }
    logger.info(
        "trained %s in %.0f s, final loss %.4f",
        summary["model"],
        wall_seconds,
        summary["final_eps_mse_mean_last_200_steps"],
    )
    return summary


def train_classifier(out: Path, seed: int, epochs: int = 40, batch_size: int = 64, max_shift: int = 2) -> dict:
    from safetensors.torch import save_file

    from autofr.models import CLASSIFIER_CONFIG, CLASSIFIER_DIR_NAME, CLASSIFIER_WEIGHTS
    from autofr.models.classifier import DigitClassifier
    from autofr.models.digits_data import load_digits_images
    from autofr.models.evaluation import classifier_accuracy

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    images, labels = load_digits_images("train", size=IMAGE_SIZE)
    test_images, test_labels = load_digits_images("test", size=IMAGE_SIZE)
    classifier = DigitClassifier()
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=2e-3, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(images) / batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    padded = F.pad(images, (max_shift,) * 4)
    started = time.perf_counter()
    for _epoch in tqdm(range(epochs), desc="train classifier", unit="epoch", file=sys.stderr):
        classifier.train()
        order = torch.randperm(len(images), generator=generator)
        epoch_loss = 0.0
        for start in range(0, len(images), batch_size):
            index = order[start : start + batch_size]
            # augmentation: a random shift of up to max_shift pixels per image
            shifts = torch.randint(0, 2 * max_shift + 1, (len(index), 2), generator=generator)
            batch = torch.stack(
                [
                    padded[i, :, dy : dy + IMAGE_SIZE, dx : dx + IMAGE_SIZE]
                    for i, (dy, dx) in zip(index.tolist(), shifts.tolist())
                ]
            )
            loss = F.cross_entropy(classifier(batch), labels[index], label_smoothing=0.05)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item() * len(index)
    wall_seconds = time.perf_counter() - started
    classifier.eval()
    accuracy = classifier_accuracy(classifier, test_images, test_labels)
    train_accuracy = classifier_accuracy(classifier, images, labels)
    target = out / CLASSIFIER_DIR_NAME
    target.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, target / CLASSIFIER_WEIGHTS)
    config = {
        **classifier.config,
        "image_size": IMAGE_SIZE,
        "feature_dim": classifier.feature_dim,
        "test_accuracy": round(accuracy, 4),
    }
    (target / CLASSIFIER_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    summary = {
        "model": CLASSIFIER_DIR_NAME,
        "seed": seed,
        "epochs": epochs,
        "batch_size": batch_size,
        "augmentation": f"random shift up to {max_shift} px",
        "wall_seconds": round(wall_seconds, 1),
        "final_loss_last_epoch": round(epoch_loss / len(images), 5),
        "train_accuracy": round(train_accuracy, 4),
        "test_accuracy": round(accuracy, 4),
        "test_samples": len(test_labels),
        "parameters": sum(p.numel() for p in classifier.parameters()),
    }
    logger.info("trained the digit classifier in %.0f s: test accuracy %.4f", wall_seconds, accuracy)
    return summary


def measure_gate(which: str, out: Path) -> dict:
    """Conditional-sample accuracy of ``digits_<which>`` in ``out`` under the classifier in ``out``."""
    from safetensors.torch import load_file

    from autofr.models import ClassConditionalPipeline, DigitClassifier
    from autofr.models.evaluation import conditional_accuracy
    from autofr.models.flux_pipeline import (
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_NUM_INFERENCE_STEPS,
        ClassConditionalFluxPipeline,
    )

    if which == "flux":  # gated at its own defaults: flow-matching Euler steps and guidance
        gate = dict(GATE, num_inference_steps=DEFAULT_NUM_INFERENCE_STEPS, guidance_scale=DEFAULT_GUIDANCE_SCALE)
        pipeline = ClassConditionalFluxPipeline.from_pretrained(out / "digits_flux")
    else:
        gate = GATE
        pipeline = ClassConditionalPipeline.from_pretrained(out / f"digits_{which}")
    config = json.loads((out / "digits_classifier" / "config.json").read_text())
    classifier = DigitClassifier(num_classes=config["num_classes"], widths=tuple(config["widths"]))
    classifier.load_state_dict(load_file(out / "digits_classifier" / "model.safetensors"))
    classifier.eval()
    started = time.perf_counter()
    result = conditional_accuracy(pipeline, classifier, **gate)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    logger.info("digits_%s: conditional accuracy %.4f on %d samples", which, result["accuracy"], result["num_samples"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--which",
        choices=("unet", "dit", "flux", "classifier", "all", "gate"),
        default="all",
        help="what to train; 'gate' only re-measures conditional accuracy of the denoisers in --out",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "assets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="denoiser optimisation steps (default per model)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-gate", action="store_true", help="skip the conditional-accuracy check")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        if args.which in ("classifier", "all"):
            update_summary(out, "digits_classifier", train_classifier(out, args.seed))
        for which in ("unet", "dit", "flux"):
            if args.which in (which, "all"):
                settings = dict(FLUX_TRAINING if which == "flux" else DEFAULT_DENOISER_TRAINING[which])
                for key in ("steps", "batch_size", "learning_rate"):
                    if getattr(args, key) is not None:
                        settings[key] = getattr(args, key)
                if which == "flux":
                    summary = train_flux(out, args.seed, **settings)
                else:
                    summary = train_denoiser(which, out, args.seed, **settings)
                if not args.no_gate:
                    summary["gate"] = measure_gate(which, out)
                update_summary(out, f"digits_{which}", summary)
            elif args.which == "gate" and (out / f"digits_{which}").is_dir():
                path = out / "training_summary.json"
                summary = json.loads(path.read_text()).get(f"digits_{which}", {}) if path.is_file() else {}
                summary["gate"] = measure_gate(which, out)
                update_summary(out, f"digits_{which}", summary)
    except AutoFRError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
