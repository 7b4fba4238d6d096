"""FID and KID through torchmetrics, with a pluggable feature extractor.

Feature extractors (``feature=`` of :class:`FID`, :class:`KID` and ``kid_small``):

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

The reference of :class:`FID` is real data (images, a folder of images, or an ``.npz`` file with
``mu`` and ``sigma`` as written by pytorch-fid / torch-fidelity), the full-compute samples of the same
protocol, or :class:`FeatureStats` (e.g. cached by :class:`autofr.quality.reference.ReferenceCache`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from autofr.errors import QualityError
from autofr.quality._identity import module_fingerprint
from autofr.quality.measure import QualityMeasure, images_of, register_measure

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
            from torchmetrics.image.fid import NoTrainInceptionV3
            import torch_fidelity  # noqa: F401
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
        weights_path = os.environ.get(INCEPTION_WEIGHTS_ENV) or Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
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
    def from_features(cls, features: torch.Tensor | np.ndarray) -> "FeatureStats":
        array = np.asarray(features.cpu().numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
        if array.ndim != 2 or len(array) < 2:
            raise QualityError(f"feature statistics need at least 2 samples of (N, D) features, got shape {array.shape}")
        return cls(mu=array.mean(axis=0), sigma=np.cov(array, rowvar=False).reshape(array.shape[1], array.shape[1]), num_samples=len(array))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
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
            raise QualityError(f"cannot read feature statistics {path} ({error}): give an .npz file with mu and sigma") from None
        if sigma.shape != (len(mu), len(mu)):
            raise QualityError(f"{path}: sigma has shape {sigma.shape} but mu has {len(mu)} entries: they must match")
        return cls(mu=mu, sigma=sigma, num_samples=num_samples)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary file + rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                np.savez(file, mu=self.mu, sigma=self.sigma, num_samples=np.int64(self.num_samples))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def load_image_folder(folder: str | os.PathLike, image_size: int | None = None) -> torch.Tensor:
    """All images of a folder (sorted by name) as float (N, C, H, W) in [0, 1].

    Grayscale files give C = 1, everything else RGB. ``image_size`` resizes (bicubic) to a square;
    without it all images must have the same size.
    """
    from PIL import Image

    folder = Path(folder).expanduser()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise QualityError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}: point the reference at a folder of images")
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


# --------------------------------------------------------------------------- measures


@register_measure
class FID(QualityMeasure):
    """Fréchet distance between feature Gaussians of candidate and reference samples (torchmetrics FID).

    Biased by the sample count: compare values only at equal N (``FID-2k`` = 2000 samples).

    Args:
        feature: ``"digits"``, ``"inception"`` or a feature module (see the module docs).
        reference: real images, an image folder, an ``.npz`` of ``mu``/``sigma``, FeatureStats, or
            the full-compute SampleBatch; may also be given later with :meth:`set_reference`.
        inception_weights: local Inception weights file for ``feature="inception"``.
        batch_size: images per feature-extractor call.
        image_size: resize folder references to this size.
        device: where features are computed (the extractor is moved there).
    """

    name = "fid"

    def __init__(
        self,
        feature: str | nn.Module = "digits",
        reference: Any = None,
        *,
        inception_weights: str | os.PathLike | None = None,
        batch_size: int = 64,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.feature = resolve_feature(feature, inception_weights).to(device)
        self.batch_size = batch_size
        self.image_size = image_size
        self.device = torch.device(device)
        self._metric = self._new_metric()
        self._has_reference = False
        if reference is not None:
            self.set_reference(reference)

    def _new_metric(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=self.feature, reset_real_features=False).to(self.device)

    def set_reference(self, reference: Any) -> None:
        reference = reference_images_or_stats(reference, self.image_size)
        self._metric = self._new_metric()
        if isinstance(reference, FeatureStats):
            self._load_stats(reference)
        else:
            for start in range(0, len(reference), self.batch_size):
                self._metric.update(reference[start : start + self.batch_size].to(self.device), real=True)
        self._has_reference = True

    def _load_stats(self, stats: FeatureStats) -> None:
        dim = self.feature.num_features
        if stats.mu.shape != (dim,):
            raise QualityError(
                f"reference statistics have {stats.mu.shape[0]} features but the extractor gives {dim}: "
                "use statistics made with the same feature extractor"
            )
        n = max(int(stats.num_samples), 2)  # any n >= 2 reproduces mu and sigma exactly
        mu = torch.as_tensor(stats.mu, dtype=torch.float64, device=self.device)
        sigma = torch.as_tensor(stats.sigma, dtype=torch.float64, device=self.device)
        self._metric.real_features_sum = mu * n
        self._metric.real_features_cov_sum = sigma * (n - 1) + n * torch.outer(mu, mu)
        self._metric.real_features_num_samples = torch.tensor(n, device=self.device)

    def update(self, samples: Any) -> None:
        images = images_of(samples)
        for start in range(0, len(images), self.batch_size):
            self._metric.update(images[start : start + self.batch_size].to(self.device), real=False)

    def compute(self) -> float:
        if not self._has_reference:
            raise QualityError("FID has no reference: call set_reference() with real data or full-compute samples")
        if int(self._metric.fake_features_num_samples) < 2:
            raise QualityError("FID needs at least 2 candidate samples: call update() with more samples")
        self._metric.orig_dtype = torch.float64
        value = float(self._metric.compute())
        return max(value, 0.0)  # the matrix square root can leave -1e-12 for identical sets

    def reset(self) -> None:
        self._metric.reset()


@register_measure
class KID(QualityMeasure):
    """Kernel Inception Distance (torchmetrics; unbiased MMD², mean over random subsets).

    Unbiased, so it can be slightly negative for near-identical sets; lower is better. Subsets are
    drawn from a fixed seed, so the value is deterministic. ``report()`` adds ``kid_std``.

    Args: as :class:`FID` (no ``.npz``/FeatureStats references: KID needs the features), plus
        subsets: number of random subsets; subset_size: their size (capped at the sample counts);
        seed: seeds the subset draws.
    """

    name = "kid"

    def __init__(
        self,
        feature: str | nn.Module = "digits",
        reference: Any = None,
        *,
        inception_weights: str | os.PathLike | None = None,
        subsets: int = 100,
        subset_size: int = 1000,
        seed: int = 0,
        batch_size: int = 64,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.feature = resolve_feature(feature, inception_weights).to(device)
        self.subsets, self.subset_size, self.seed = subsets, subset_size, seed
        self.batch_size, self.image_size, self.device = batch_size, image_size, torch.device(device)
        self._metric = self._new_metric()
        self._has_reference = False
        self._std = float("nan")
        if reference is not None:
            self.set_reference(reference)

    def _new_metric(self):
        from torchmetrics.image.kid import KernelInceptionDistance

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            return KernelInceptionDistance(
                feature=self.feature, subsets=self.subsets, subset_size=self.subset_size, reset_real_features=False
            ).to(self.device)

    def set_reference(self, reference: Any) -> None:
        reference = reference_images_or_stats(reference, self.image_size)
        if isinstance(reference, FeatureStats):
            raise QualityError("KID needs reference images, not mean/covariance statistics: pass images or a SampleBatch")
        self._metric = self._new_metric()
        for start in range(0, len(reference), self.batch_size):
            self._metric.update(reference[start : start + self.batch_size].to(self.device), real=True)
        self._has_reference = True

    def update(self, samples: Any) -> None:
        images = images_of(samples)
        for start in range(0, len(images), self.batch_size):
            self._metric.update(images[start : start + self.batch_size].to(self.device), real=False)

    def compute(self) -> float:
        if not self._has_reference:
            raise QualityError("KID has no reference: call set_reference() with real data or full-compute samples")
        real = sum(len(f) for f in self._metric.real_features)
        fake = sum(len(f) for f in self._metric.fake_features)
        if min(real, fake) < 2:
            raise QualityError("KID needs at least 2 candidate and 2 reference samples: call update() with more samples")
        self._metric.subset_size = min(self.subset_size, real, fake)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            mean, std = self._metric.compute()
        self._std = float(std)
        return float(mean)

    def report(self) -> dict[str, float]:
        value = self.compute()
        return {"kid": value, "kid_std": self._std}

    def reset(self) -> None:
        self._metric.reset()


def _device_of(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")
