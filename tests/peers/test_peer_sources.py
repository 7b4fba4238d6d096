"""Peers on real models: which caches run where, and that each one is gone again afterwards."""

from __future__ import annotations

import optuna
import pytest
import torch

from autofr.evaluation import EvalProtocol, generate
from autofr.models import load_pipeline
from autofr.peers import PEER_METHODS, Peer, available_peers, peer_enabled
from autofr.reuse import discover_units
from autofr.search.peer_trials import evaluate_peers
from autofr.search.records import StudyInfo

DIFFUSERS_METHODS = [m for m, source in PEER_METHODS.items() if source == "diffusers"]
RUNS_ON_FLUX = {
    "first_block_cache",
    "taylorseer_cache",
    "mag_cache",
    "pyramid_attention_broadcast",
    "dbcache",
    "dbcache_taylorseer",
}


@pytest.fixture(scope="module")
def flux():
    torch.set_num_threads(1)
    pipe = load_pipeline("digits_flux")
    protocol = EvalProtocol(
        num_samples=4,
        batch_size=4,
        num_inference_steps=10,
        num_classes=10,
        seed=0,
        scheduler=None,
        guidance_scale=1.25,
    )
    return pipe, protocol


@pytest.fixture(scope="module")
def flux_peers(flux):
    pipe, protocol = flux
    return available_peers(pipe, protocol)


def _state(pipe):
    """What full compute depends on besides the weights: module order, the pipeline's call, no hooks."""
    transformer = pipe.transformer
    hooks = {
        name: list(module._diffusers_hook.hooks)
        for name, module in transformer.named_modules()
        if getattr(module, "_diffusers_hook", None) is not None and module._diffusers_hook.hooks
    }
    return (
        [name for name, _ in transformer.named_modules()],
        type(pipe).__dict__.get("__call__"),
        hooks,
        "forward" in vars(transformer) and vars(transformer)["forward"].__func__,
    )


def test_every_cache_that_runs_on_flux_is_offered_at_its_default_and_a_sweep(flux_peers):
    peers, skipped = flux_peers
    assert {p.method for p in peers} == RUNS_ON_FLUX
    for method in RUNS_ON_FLUX:
        settings = [p for p in peers if p.method == method]
        assert len(settings) >= 4, f"{method}: a sweep of its main knob"
        assert sum(p.default for p in settings) == 1 and any("(default)" in p.label for p in settings)
        assert len({p.key() for p in settings}) == len(settings)
    defaults = {p.method: p.options for p in peers if p.default}
    assert defaults["first_block_cache"]["threshold"] == 0.05 and defaults["mag_cache"]["threshold"] == 0.06
    assert defaults["taylorseer_cache"]["cache_interval"] == 5
    assert defaults["dbcache"]["residual_diff_threshold"] == 0.08 and defaults["dbcache"]["Fn_compute_blocks"] == 1
    mag = defaults["mag_cache"]["mag_ratios"]
    assert len(mag) == 10 and all(0.5 < r < 1.5 for r in mag), "MagCache ratios calibrated by diffusers' own run"
    assert Peer.from_description(peers[0].describe()) == peers[0]
    # FasterCache's CFG cache splits video/spatial latents; Flux's transformer returns (N, tokens, channels)
    assert set(skipped) == {"faster_cache"} and skipped["faster_cache"].startswith(
        "its probe run failed: RuntimeError"
    )
    assert "dimensions" in skipped["faster_cache"]


def test_full_compute_after_each_peer_is_bit_identical(flux, flux_peers):
    pipe, protocol = flux
    peers, _ = flux_peers
    before, state = generate(pipe, protocol), _state(pipe)
    units = [u.name for u in discover_units(pipe)]
    changed = []
    for peer in [p for p in peers if p.default] + [p for p in peers if not p.default][-3:]:
        with peer_enabled(pipe, peer):
            cached = generate(pipe, protocol)
        changed.append(not torch.equal(cached.latents, before.latents))
        assert torch.equal(generate(pipe, protocol).latents, before.latents), f"{peer.label} left something behind"
        assert _state(pipe) == state, f"{peer.label} changed the model"
    assert any(changed), "the peers do change the samples while enabled"
    with pytest.raises(RuntimeError):  # a peer that fails mid-run is removed too
        with peer_enabled(pipe, Peer("faster_cache", "FasterCache", {"spatial_attention_block_skip_range": 2})):
            generate(pipe, protocol)
    assert torch.equal(generate(pipe, protocol).latents, before.latents) and _state(pipe) == state
    assert [u.name for u in discover_units(pipe)] == units


def test_on_a_unet_no_peer_runs_and_each_reason_is_recorded(tmp_path):
    from tests.conftest import save_tiny_digit_pipeline

    save_tiny_digit_pipeline(tmp_path / "tiny")
    pipe = load_pipeline(str(tmp_path / "tiny"))
    protocol = EvalProtocol(num_samples=2, batch_size=2, num_inference_steps=4, num_classes=10)
    study = optuna.create_study(directions=["maximize", "minimize"])
    stage = evaluate_peers(study, pipe, protocol, objective=None, methods="auto")
    assert not stage.added and set(stage.skipped) == set(PEER_METHODS)
    assert all("UNet2DModel has no diffusers CacheMixin" in stage.skipped[m] for m in DIFFUSERS_METHODS)
    assert "cache-dit has no block adapter" in stage.skipped["dbcache"]
    assert StudyInfo.read(study).peers_skipped == stage.skipped and not study.trials
    assert (
        "skipped: first_block_cache, taylorseer_cache, mag_cache, faster_cache, pyramid_attention_broadcast (UNet2DModel"
        in stage.describe()
        and "DeepCache-style references stand in" in stage.describe()
    )


def test_cache_dit_runs_on_the_dit_where_no_diffusers_cache_does():
    pipe = load_pipeline("digits_dit")
    protocol = EvalProtocol(num_samples=2, batch_size=2, num_inference_steps=6, num_classes=10, guidance_scale=2.0)
    peers, skipped = available_peers(pipe, protocol, ["first_block_cache", "dbcache"])
    assert {p.method for p in peers} == {"dbcache"} and "DiTTransformer2DModel" in skipped["first_block_cache"]
    before = generate(pipe, protocol)
    forward = vars(pipe.denoiser).get("forward")
    with peer_enabled(pipe, next(p for p in peers if p.options["residual_diff_threshold"] == 0.32)):
        generate(pipe, protocol)
    assert vars(pipe.denoiser).get("forward") is forward, "cache-dit's DiT forward patch is undone"
    assert torch.equal(generate(pipe, protocol).latents, before.latents)


def test_a_cache_the_user_enabled_is_neither_replaced_nor_removed(flux, flux_peers):
    from diffusers.hooks import FirstBlockCacheConfig

    from autofr.peers import PeerUnavailable

    pipe, _ = flux
    peers, _ = flux_peers
    pipe.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.3))
    try:
        with pytest.raises(PeerUnavailable, match="already has a diffusers cache enabled"):
            with peer_enabled(pipe, next(p for p in peers if p.method == "mag_cache")):
                pass
        assert isinstance(pipe.transformer._cache_config, FirstBlockCacheConfig)
    finally:
        pipe.transformer.disable_cache()


def test_peers_are_timed_together_and_a_failing_one_keeps_the_others_timings(flux, flux_peers):
    from autofr.search.peer_trials import time_peers

    pipe, protocol = flux
    peers, _ = flux_peers
    good = [p for p in peers if p.method == "first_block_cache"][:2]
    broken = Peer("first_block_cache", "FirstBlockCache broken", {"threshold": "not a number"})
    timings, failed = time_peers(pipe, protocol, good, repeats=1)
    assert set(timings) == {p.key() for p in good} and not failed
    assert all(t.speedup > 0 and t.full_seconds > 0 for t in timings.values())
    timings, failed = time_peers(pipe, protocol, [good[0], broken], repeats=1)
    assert set(timings) == {good[0].key()} and set(failed) == {"FirstBlockCache broken"}
