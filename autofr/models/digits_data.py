"""The digits data set: scikit-learn's bundled 8x8 handwritten digits, upsampled for the embedded models.

This is the "real data" the embedded digit models were trained on and the reference set for FID/KID on
them. The train/test split is fixed (stratified 80/20, seed 0), so every module that asks for the test
split gets the same 360 images.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from autofr.errors import ConfigError

SPLITS = ("train", "test", "all")
SPLIT_SEED = 0
TEST_FRACTION = 0.2
NUM_CLASSES = 10
SOURCE_SIZE = 8
SOURCE_MAX_VALUE = 16.0


@functools.lru_cache(maxsize=1)
def _split_indices() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    all_indices = np.arange(len(labels))
    train, test = train_test_split(all_indices, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    return {"train": np.sort(train), "test": np.sort(test), "all": all_indices}


@functools.lru_cache(maxsize=1)
def _source_digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ConfigError(
            "the digits data set needs scikit-learn: install it with `pip install autofr[train]`"
        ) from error
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / SOURCE_MAX_VALUE)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    return images.unsqueeze(1), labels


def load_digits_images(split: str = "train", size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of one split of the digits data set.

    ``images`` is float32 of shape ``(N, 1, size, size)`` in ``[0, 1]`` (the 8x8 originals, values
    0..16, divided by 16 and upsampled bilinearly); ``labels`` is int64 of shape ``(N,)`` in ``0..9``.
    ``split`` is ``"train"`` (1437 images), ``"test"`` (360) or ``"all"`` (1797). The tensors are
    fresh copies, safe to modify.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown digits split {split!r}: use one of {', '.join(SPLITS)}")
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"digits image size must be a positive integer, got {size!r}")
    images, labels = _source_digits()
    indices = torch.from_numpy(_split_indices()[split])
    images, labels = images[indices], labels[indices]
    if size != SOURCE_SIZE:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp_(0.0, 1.0).contiguous(), labels.clone()
