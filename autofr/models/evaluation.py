"""Quality checks of the embedded digit models: classifier accuracy and conditional-sample accuracy."""

from __future__ import annotations

import logging

import torch

from autofr.models.classifier import DigitClassifier

logger = logging.getLogger(__name__)


@torch.no_grad()
def classifier_accuracy(classifier: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` (``(N, 1, 16, 16)`` in ``[0, 1]``) that ``classifier`` labels correctly."""
    classifier.eval()
    predictions = classifier(images).argmax(dim=1)
    return (predictions == labels).float().mean().item()


@torch.no_grad()
def conditional_accuracy(
    pipeline,
    classifier: DigitClassifier,
    samples_per_class: int = 50,
    num_inference_steps: int = 50,
    guidance_scale: float = 3.0,
    seed: int = 0,
    batch_size: int = 500,
) -> dict:
    """Sample ``samples_per_class`` images of every class and report how often ``classifier`` agrees.

    Labels are ``0, 1, ..., 9, 0, 1, ...``; the noise of the whole run comes from one generator seeded
    with ``seed``, drawn batch after batch, so a run is reproducible for a fixed ``batch_size``.
    Returns ``{"accuracy", "per_class", "num_samples", "seed", ...}``.
    """
    num_classes = pipeline.num_classes
    labels = torch.arange(num_classes).repeat(samples_per_class)
    generator = torch.Generator().manual_seed(seed)
    predictions = []
    for start in range(0, len(labels), batch_size):
        batch_labels = labels[start : start + batch_size]
        images = pipeline(
            batch_labels,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
        ).images
        predictions.append(classifier(images.to(next(classifier.parameters()).device)).argmax(dim=1).cpu())
        logger.debug("conditional accuracy: sampled %d/%d", start + len(batch_labels), len(labels))
    correct = torch.cat(predictions) == labels
    per_class = [correct[labels == c].float().mean().item() for c in range(num_classes)]
    return {
        "accuracy": correct.float().mean().item(),
        "per_class": per_class,
        "num_samples": len(labels),
        "samples_per_class": samples_per_class,
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "seed": seed,
        "scheduler": type(pipeline.scheduler).__name__,
    }
