"""Feature extractors for FID/KID, feature statistics, and real-data references.

Feature extractors (``feature=`` of :class:`~autofr.quality.fid.FID`, ``KID`` and ``kid_small``):

``"digits"``
    The embedded digit classifier's penultimate features (``autofr.models.load_digit_classifier``),
    for the embedded 16x16 digit models. Nothing is downloaded.
``"inception"``
    Inception-v3 pool3 features (2048-d, torch-fidelity's port of the 2015-12-05 TF weights, the
    network every published FID uses), for real models. The weights come from a local file: the
    ``inception_weights`` path, else ``$AUTOFR_INCEPTION_WEIGHTS``, else torch-fidelity's own download
    location in the torch hub cache. Missing weights raise :class:`~autofr.errors.QualityError`;
    there is no fallback network and no download.
``"pixels"``
    Smoke tests only: each image average-pooled to 4x4 per channel (48 features for RGB). Needs no
    weights and measures little; FID on it is not comparable to any published FID.
any ``nn.Module``
    Maps images (N, C, H, W) in [0, 1] to features (N, D) and has an integer ``num_features``
    attribute (D). An optional ``feature_id`` string names it in reference-cache keys.

A real-data reference is images, a folder of images, or an ``.npz`` file with ``mu`` and ``sigma``
(as written by pytorch-fid / torch-fidelity), loaded by :func:`reference_images_or_stats`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autofr.errors import QualityError
from autofr.files import atomic_path
from autofr.quality._identity import module_fingerprint
from autofr.quality.measure import images_of

logger = logging.getLogger(__name__)

INCEPTION_WEIGHTS_ENV = "AUTOFR_INCEPTION_WEIGHTS"
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


# --------------------------------------------------------------------------- feature extractors


class DigitFeatures(nn.Module):
    """Penultimate features of the embedded digit classifier, for (N, 1, 16, 16) images in [0, 1]."""

    def __init__(self, classifier: nn.Module | None = None) -> None:
        super().__init__()
        if classifier is None:
            from autofr.models import load_digit_classifier

            classifier = load_digit_classifier()
        self.classifier = classifier.eval()
        with torch.no_grad():
            probe = torch.zeros(2, 1, 16, 16, device=_device_of(self.classifier))
            self.num_features = int(self.classifier.features(probe).shape[-1])
        self.feature_id = f"digit-classifier-{module_fingerprint(self.classifier)}"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images.float())


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (2048-d) from torch-fidelity's FID network, weights from a local file.

    Takes float images (N, C, H, W) in [0, 1]; grayscale is repeated to RGB, images are quantised to
    uint8 and resized to 299x299 the way torch-fidelity does, so values match published FIDs.
    """

    num_features = 2048

    def __init__(self, weights_path: str | os.PathLike | None = None) -> None:
        super().__init__()
        path = find_inception_weights(weights_path)
        try:
            import torch_fidelity  # noqa: F401
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ModuleNotFoundError:
            raise QualityError("Inception FID needs torch-fidelity: pip install 'autofr[fid]'") from None
        self.inception = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        )
        self.feature_id = "inception-v3-2015-12-05-pool3"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return self.inception((images.clamp(0, 1) * 255).round().to(torch.uint8))


class PixelFeatures(nn.Module):
    """Images average-pooled to 4x4 per channel: an offline feature for smoke tests (grey repeated to RGB)."""

    num_features = 48
    feature_id = "pixels-4x4-rgb"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        return torch.nn.functional.adaptive_avg_pool2d(images.float(), 4).flatten(1)


def find_inception_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """The local Inception weights file: ``weights_path``, else ``$AUTOFR_INCEPTION_WEIGHTS``, else torch hub's cache.

    Raises:
        QualityError: the file is not there (the message names the path and where to get the file).
    """
    if weights_path is None:
        weights_path = (
            os.environ.get(INCEPTION_WEIGHTS_ENV) or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
        )
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise QualityError(
            f"Inception weights not found at {path}: download {INCEPTION_WEIGHTS_URL} there "
            f"(or set quality.inception_weights / ${INCEPTION_WEIGHTS_ENV} to the file)"
        )
    return path


def resolve_feature(feature: str | nn.Module, inception_weights: str | os.PathLike | None = None) -> nn.Module:
    """A feature extractor from a name (``"digits"``, ``"inception"``) or a module with ``num_features``."""
    if isinstance(feature, nn.Module):
        if not isinstance(getattr(feature, "num_features", None), int):
            raise QualityError(
                f"feature module {type(feature).__name__} has no integer num_features: set it to its feature dimension"
            )
        return feature.eval()
    if feature == "digits":
        return DigitFeatures()
    if feature == "inception":
        return InceptionFeatures(inception_weights)
    if feature == "pixels":
        return PixelFeatures()
    raise QualityError(f"unknown feature extractor {feature!r}: use 'digits', 'inception', 'pixels' or an nn.Module")


@torch.no_grad()
def extract_features(feature: nn.Module, samples: Any, batch_size: int = 64) -> torch.Tensor:
    """Features (N, D) of a SampleBatch or image tensor, float64 on the CPU, computed in batches."""
    images = images_of(samples)
    device = _device_of(feature)
    chunks = [feature(images[i : i + batch_size].to(device)).double().cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(chunks).reshape(len(images), -1)


# --------------------------------------------------------------------------- statistics and references


@dataclass
class FeatureStats:
    """Mean and covariance of features: what FID needs from a reference.

    Stored as ``.npz`` with arrays ``mu`` (D,), ``sigma`` (D, D) and optional ``num_samples``
    (the pytorch-fid / torch-fidelity layout), read without pickle.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_samples: int

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray) -> FeatureStats:
        array = np.asarray(
            features.cpu().numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64
        )
        if array.ndim != 2 or len(array) < 2:
            raise QualityError(
                f"feature statistics need at least 2 samples of (N, D) features, got shape {array.shape}"
            )
        return cls(
            mu=array.mean(axis=0),
            sigma=np.cov(array, rowvar=False).reshape(array.shape[1], array.shape[1]),
            num_samples=len(array),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> FeatureStats:
        path = Path(path).expanduser()
        try:
            with np.load(path, allow_pickle=False) as data:
                if "mu" not in data or "sigma" not in data:
                    raise QualityError(
                        f"{path} has no 'mu'/'sigma' arrays: write it with numpy.savez(path, mu=..., sigma=...)"
                    )
                mu = np.asarray(data["mu"], dtype=np.float64).reshape(-1)
                sigma = np.asarray(data["sigma"], dtype=np.float64)
                num_samples = int(data["num_samples"]) if "num_samples" in data else 0
        except (OSError, ValueError) as error:
            raise QualityError(
                f"cannot read feature statistics {path} ({error}): give an .npz file with mu and sigma"
            ) from None
        if sigma.shape != (len(mu), len(mu)):
            raise QualityError(f"{path}: sigma has shape {sigma.shape} but mu has {len(mu)} entries: they must match")
        return cls(mu=mu, sigma=sigma, num_samples=num_samples)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file + rename)."""
        with atomic_path(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, mu=self.mu, sigma=self.sigma, num_samples=np.int64(self.num_samples))
        return Path(path)


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance of two feature Gaussians, as torchmetrics' FID computes it (float64):
    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 sum sqrt(eig(S_a S_b))``. For bootstraps over cached
    features, where building a metric object per draw would dominate."""
    mu_a, mu_b = torch.from_numpy(a.mu), torch.from_numpy(b.mu)
    sigma_a, sigma_b = torch.from_numpy(a.sigma), torch.from_numpy(b.sigma)
    mean_term = torch.sum((mu_a - mu_b) ** 2)
    trace_term = torch.trace(sigma_a) + torch.trace(sigma_b)
    cross = torch.linalg.eigvals(sigma_a @ sigma_b).sqrt().real.sum()
    return max(float(mean_term + trace_term - 2 * cross), 0.0)


def load_image_folder(folder: str | os.PathLike, image_size: int | None = None) -> torch.Tensor:
    """All images of a folder (sorted by name) as float (N, C, H, W) in [0, 1].

    Grayscale files give C = 1, everything else RGB. ``image_size`` resizes (bicubic) to a square;
    without it all images must have the same size.
    """
    from PIL import Image

    folder = Path(folder).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise QualityError(
            f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}: point the reference at a folder of images"
        )
    arrays = []
    with Image.open(files[0]) as first:
        mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    for file in files:
        with Image.open(file) as image:
            image = image.convert(mode)
            if image_size is not None:
                image = image.resize((image_size, image_size), Image.BICUBIC)
            arrays.append(np.asarray(image, dtype=np.float32) / 255.0)
    if len({a.shape for a in arrays}) > 1:
        raise QualityError(f"images in {folder} differ in size: set the reference image_size to resize them")
    stacked = np.stack(arrays)
    if stacked.ndim == 3:
        stacked = stacked[:, None]
    else:
        stacked = stacked.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(stacked))


def reference_images_or_stats(reference: Any, image_size: int | None = None) -> torch.Tensor | FeatureStats:
    """Normalise a reference: FeatureStats stay, ``.npz`` paths load as FeatureStats, folders load as images."""
    if isinstance(reference, FeatureStats):
        return reference
    if isinstance(reference, (str, os.PathLike)):
        path = Path(reference).expanduser()
        if path.suffix == ".npz":
            return FeatureStats.load(path)
        return load_image_folder(path, image_size)
    return images_of(reference)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
