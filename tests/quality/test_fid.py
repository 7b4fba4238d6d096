import numpy as np
import pytest
import torch
from PIL import Image

from autofr.errors import QualityError
from autofr.quality import FeatureStats, InceptionFeatures, build_measure, extract_features


def test_fid_of_real_data_against_itself_is_zero_and_against_noise_is_large(digits, tiny_features):
    fid = build_measure("fid", feature=tiny_features, reference=digits)
    same = fid.score(digits)
    other_half = build_measure("fid", feature=tiny_features, reference=digits[:900]).score(digits[900:])
    noise = fid.score(torch.rand(len(digits), 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert same < 1e-6
    assert noise > 20 * other_half > 0


def test_fid_from_stats_npz_and_folder_references_agree(digits, tiny_features, tmp_path):
    real, candidate = digits[:200], digits[200:400]
    from_images = build_measure("fid", feature=tiny_features, reference=real).score(candidate)

    stats = FeatureStats.from_features(extract_features(tiny_features, real))
    np.savez(tmp_path / "real.npz", mu=stats.mu, sigma=stats.sigma)  # pytorch-fid layout, no num_samples
    from_npz = build_measure("fid", feature=tiny_features, reference=str(tmp_path / "real.npz")).score(candidate)

    folder = tmp_path / "real"
    folder.mkdir()
    for i, image in enumerate(real):
        Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    quantised = (real * 255).round() / 255
    from_quantised = build_measure("fid", feature=tiny_features, reference=quantised).score(candidate)
    from_folder = build_measure("fid", feature=tiny_features, reference=folder).score(candidate)

    assert from_npz == pytest.approx(from_images, rel=1e-6)
    assert from_folder == pytest.approx(from_quantised, rel=1e-5)


def test_stats_files_are_read_without_pickle(tmp_path, tiny_features):
    np.save(tmp_path / "objects.npy", np.array([{"mu": 1}], dtype=object))
    np.savez(tmp_path / "bad.npz", mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(2))
    with pytest.raises(QualityError, match="bad.npz"):
        FeatureStats.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "nomu.npz", sigma=np.eye(2))
    with pytest.raises(QualityError, match="mu"):
        FeatureStats.load(tmp_path / "nomu.npz")
    np.savez(tmp_path / "small.npz", mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(QualityError, match="same feature extractor"):
        build_measure("fid", feature=tiny_features, reference=tmp_path / "small.npz")


def test_fid_of_full_compute_samples_against_themselves_is_zero(full_batch, fewer_steps_batches, tiny_features):
    fid = build_measure("fid", feature=tiny_features, reference=full_batch)
    assert fid.score(full_batch) < 1e-6
    assert fid.score(fewer_steps_batches[2]) > 1e-3


def test_kid_is_deterministic_and_separates_real_from_noise(digits, tiny_features):
    kid = build_measure("kid", feature=tiny_features, reference=digits[:300], subsets=10, subset_size=100)
    real = kid.score(digits[300:600])
    noise_images = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    noise = kid.score(noise_images)
    assert abs(real) < 0.05 * noise
    assert kid.score(noise_images) == noise
    kid.update(noise_images)
    assert set(kid.report()) == {"kid", "kid_std"}


def test_missing_inception_weights_raise_quality_error_naming_the_path(tmp_path):
    missing = tmp_path / "weights" / "pt_inception-2015-12-05.pth"
    with pytest.raises(QualityError, match="pt_inception-2015-12-05.pth") as error:
        InceptionFeatures(missing)
    assert str(missing) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(QualityError, match=str(missing)):
        build_measure("fid", feature="inception", inception_weights=missing)


def test_inception_weights_default_to_the_env_path(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFR_INCEPTION_WEIGHTS", str(tmp_path / "inception.pth"))
    with pytest.raises(QualityError, match="inception.pth"):
        build_measure("kid", feature="inception")


def test_feature_modules_must_state_their_dimension():
    with pytest.raises(QualityError, match="num_features"):
        build_measure("fid", feature=torch.nn.Flatten())
