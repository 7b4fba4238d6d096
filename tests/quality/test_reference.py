import logging

import pytest
import torch

from autofr.errors import QualityError
from autofr.quality import ReferenceCache, build_measure, default_cache_dir


def test_a_second_evaluation_hits_the_reference_cache(tiny_pipe, proxy_protocol, tmp_path, caplog):
    protocol = proxy_protocol.replace(num_samples=4, batch_size=4, num_inference_steps=3)
    first = ReferenceCache(tmp_path)
    computed = first.samples(tiny_pipe, protocol, model_id="tiny")
    path = first.samples_path(tiny_pipe, protocol, model_id="tiny")
    assert path.is_file() and path.parent == tmp_path / "references" and "tiny-3steps-4-" in path.name
    assert (first.hits, first.misses) == (0, 1)

    second = ReferenceCache(tmp_path)  # e.g. the next trial or a resumed study
    with caplog.at_level(logging.INFO, logger="autofr.quality.reference"):
        cached = second.samples(tiny_pipe, protocol, model_id="tiny")
    assert (second.hits, second.misses) == (1, 0)
    assert f"cache hit {path}" in caplog.text
    assert torch.equal(cached.images, computed.images) and torch.equal(cached.latents, computed.latents)
    assert cached.seconds == pytest.approx(computed.seconds)
    assert build_measure("latent_mse", reference=cached).score(computed) == 0.0
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


def test_the_key_follows_everything_that_changes_the_samples(tiny_pipe, proxy_protocol, tmp_path):
    cache = ReferenceCache(tmp_path)
    base = proxy_protocol.replace(num_samples=4)
    path = cache.samples_path(tiny_pipe, base, "tiny")
    assert cache.samples_path(tiny_pipe, base.replace(batch_size=2), "tiny") == path
    for changed in (
        base.replace(num_inference_steps=7),
        base.replace(seed=9),
        base.replace(num_samples=5),
        base.replace(scheduler="euler"),
        base.replace(guidance_scale=2.0),
    ):
        assert cache.samples_path(tiny_pipe, changed, "tiny") != path
    assert cache.samples_path(tiny_pipe, base, "other_model") != path
    other_weights = type(tiny_pipe)(
        denoiser=type(tiny_pipe.denoiser).from_config(tiny_pipe.denoiser.config), scheduler=tiny_pipe.scheduler
    )
    assert cache.samples_path(other_weights, base, "tiny") != path


def test_feature_statistics_are_cached_and_not_recomputed(digits, tiny_features, tmp_path):
    cache = ReferenceCache(tmp_path)
    stats = cache.feature_stats("sklearn-digits-all-16px", digits, tiny_features)
    calls = []
    again = ReferenceCache(tmp_path).feature_stats(
        "sklearn-digits-all-16px", lambda: calls.append(1) or digits, tiny_features
    )
    assert calls == [] and again.num_samples == len(digits)
    assert torch.allclose(torch.as_tensor(again.sigma), torch.as_tensor(stats.sigma))
    fid = build_measure("fid", feature=tiny_features, reference=again)
    assert fid.score(digits) < 1e-6


def test_full_compute_statistics_reuse_the_cached_samples(tiny_pipe, proxy_protocol, tiny_features, tmp_path):
    protocol = proxy_protocol.replace(num_samples=4, batch_size=4, num_inference_steps=3)
    cache = ReferenceCache(tmp_path)
    stats = cache.reference_stats(tiny_pipe, protocol, tiny_features, model_id="tiny")
    assert stats.num_samples == 4 and cache.misses == 2
    cache.reference_stats(tiny_pipe, protocol, tiny_features, model_id="tiny")
    assert cache.hits == 1 and cache.misses == 2


def test_the_cache_directory_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOFR_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    assert ReferenceCache().cache_dir == tmp_path / "env-cache"
    assert ReferenceCache(tmp_path / "explicit").cache_dir == tmp_path / "explicit"


def test_a_reference_is_never_recorded_under_a_reuse_schedule(tiny_pipe, proxy_protocol, tmp_path):
    autofr_reuse = pytest.importorskip("autofr.reuse")
    ReuseSchedule = pytest.importorskip("autofr.schedule").ReuseSchedule
    protocol = proxy_protocol.replace(num_samples=2, batch_size=2, num_inference_steps=4)
    autofr_reuse.apply_schedule(tiny_pipe, ReuseSchedule.uniform(tiny_pipe, 4, 2))
    try:
        with pytest.raises(QualityError, match="remove_schedule"):
            ReferenceCache(tmp_path).samples(tiny_pipe, protocol)
    finally:
        autofr_reuse.remove_schedule(tiny_pipe)
    assert not list(tmp_path.rglob("*.safetensors"))
