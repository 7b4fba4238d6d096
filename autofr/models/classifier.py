"""A small CNN that recognises 16x16 digits; the feature extractor for FID/KID on the digit models."""

from __future__ import annotations

import torch
from torch import nn


def _conv_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class DigitClassifier(nn.Module):
    """CNN for ``(N, 1, 16, 16)`` digit images in ``[0, 1]``.

    ``forward`` returns class logits ``(N, num_classes)``; ``features`` returns the penultimate,
    globally pooled activation ``(N, feature_dim)`` that FID/KID on digits is computed from.

    Args:
        num_classes: number of digit classes.
        widths: channels of the three stages (16x16, 8x8, 4x4); the last one is ``feature_dim``.
    """

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (32, 64, 128)):
        super().__init__()
        first, second, third = widths
        self.num_classes = num_classes
        self.widths = tuple(widths)
        self.backbone = nn.Sequential(
            *_conv_block(1, first),
            *_conv_block(first, first),
            nn.MaxPool2d(2),
            *_conv_block(first, second),
            *_conv_block(second, second),
            nn.MaxPool2d(2),
            *_conv_block(second, third),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(third, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    @property
    def config(self) -> dict:
        """Constructor arguments, stored next to the weights."""
        return {"num_classes": self.num_classes, "widths": list(self.widths)}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, feature_dim)`` of images in ``[0, 1]``."""
        return self.backbone(images * 2.0 - 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))
