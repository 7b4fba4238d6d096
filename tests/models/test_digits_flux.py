"""The embedded digits_flux model: a class-conditional FluxTransformer2DModel with a flow-matching sampler."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from diffusers.hooks import FirstBlockCacheConfig

from autofr.errors import ConfigError
from autofr.evaluation import EvalProtocol, generate
from autofr.models import (
    ASSETS_DIR,
    ClassConditionalFluxPipeline,
    ClassTokenEncoder,
    load_digit_classifier,
    load_pipeline,
)
from autofr.models.evaluation import conditional_accuracy
from autofr.models.flux_pipeline import DEFAULT_GUIDANCE_SCALE, DEFAULT_NUM_INFERENCE_STEPS, unpack_latents


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline("digits_flux")


def _sample(pipeline, seed, labels=(0, 3, 7, 9), steps=4, **kwargs):
    generator = torch.Generator().manual_seed(seed)
    return pipeline(list(labels), num_inference_steps=steps, generator=generator, **kwargs).images


def test_digits_flux_is_a_small_flux_transformer_with_a_flow_matching_sampler(pipeline):
    assert isinstance(pipeline, ClassConditionalFluxPipeline)
    transformer = pipeline.transformer
    assert type(transformer) is FluxTransformer2DModel
    assert len(transformer.transformer_blocks) >= 2 and len(transformer.single_transformer_blocks) >= 2
    assert not transformer.config.guidance_embeds
    assert transformer.config.in_channels == 4 and transformer.config.sample_size == 8
    assert isinstance(pipeline.scheduler, FlowMatchEulerDiscreteScheduler)
    assert not pipeline.scheduler.config.use_dynamic_shifting
    assert isinstance(pipeline.class_encoder, ClassTokenEncoder)
    assert pipeline.num_classes == 10 and pipeline.null_class_label == 10
    size = sum(path.stat().st_size for path in (ASSETS_DIR / "digits_flux").rglob("*") if path.is_file())
    assert size <= 5 * 1024 * 1024


def test_sampling_is_deterministic_and_gives_digit_sized_images(pipeline):
    images = _sample(pipeline, seed=1)
    assert images.shape == (4, 1, 16, 16) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert torch.equal(images, _sample(pipeline, seed=1)), "same generator seed must give the same images"
    assert not torch.equal(images, _sample(pipeline, seed=2))
    assert pipeline.num_timesteps == 4
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    first = pipeline([4, 5], num_inference_steps=3, latents=latents).images
    assert torch.equal(first, pipeline([4, 5], num_inference_steps=3, latents=latents.clone()).images)
    array = _sample(pipeline, seed=0, labels=(1, 2), output_type="np")
    assert array.shape == (2, 16, 16, 1)
    pil = _sample(pipeline, seed=0, labels=(1, 2), output_type="pil")
    assert len(pil) == 2 and pil[0].size == (16, 16) and pil[0].mode == "L"


def test_the_class_reaches_the_transformer_as_a_flux_text_pipeline_would_hand_it(pipeline):
    calls = []

    def record(module, args, kwargs):
        calls.append({key: value for key, value in kwargs.items() if isinstance(value, torch.Tensor)})

    handle = pipeline.transformer.register_forward_pre_hook(record, with_kwargs=True)
    try:
        _sample(pipeline, seed=0, labels=(1, 2, 3), steps=5, guidance_scale=3.0)
        _sample(pipeline, seed=0, labels=(1, 2, 3), steps=2, guidance_scale=1.0)
    finally:
        handle.remove()
    # true classifier-free guidance: one call per step on the doubled batch [unconditional, conditional]
    assert [call["hidden_states"].shape[0] for call in calls] == [6] * 5 + [3] * 2
    first = calls[0]
    assert first["hidden_states"].shape == (6, 64, 4)
    assert first["encoder_hidden_states"].shape == (6, 4, 32) and first["pooled_projections"].shape == (6, 32)
    assert first["txt_ids"].shape == (4, 3) and first["img_ids"].shape == (64, 3)
    null_tokens, null_pooled = pipeline.class_encoder(torch.tensor([10]))
    assert torch.equal(first["encoder_hidden_states"][0], null_tokens[0])
    assert torch.equal(first["pooled_projections"][3], pipeline.class_encoder(torch.tensor([1]))[1][0])
    assert not torch.equal(null_pooled[0], first["pooled_projections"][3])
    sigmas = [float(call["timestep"][0]) for call in calls[:5]]
    assert sigmas[0] == pytest.approx(1.0) and sigmas == sorted(sigmas, reverse=True) and sigmas[-1] > 0


def test_every_call_sets_the_timesteps_once(pipeline):
    counts = []
    original = pipeline.scheduler.set_timesteps
    pipeline.scheduler.set_timesteps = lambda *args, **kwargs: (counts.append(1), original(*args, **kwargs))[1]
    try:
        _sample(pipeline, seed=0, steps=3)
        _sample(pipeline, seed=0, steps=2, guidance_scale=1.0)
    finally:
        del pipeline.scheduler.set_timesteps
    assert counts == [1, 1]


def test_generate_runs_it_with_shared_noise_and_records_packed_latents(pipeline):
    protocol = EvalProtocol(
        num_samples=6, batch_size=6, num_inference_steps=4, num_classes=10, seed=1, scheduler=None, guidance_scale=2.0
    )
    one_batch = generate(pipeline, protocol)
    small_batches = generate(pipeline, protocol.replace(batch_size=4))
    assert one_batch.images.shape == (6, 1, 16, 16) and one_batch.latents.shape == (6, 4, 8, 8)
    assert torch.allclose(one_batch.images, small_batches.images, atol=1e-5)
    assert torch.allclose(one_batch.images, (unpack_latents(one_batch.latents) / 2 + 0.5).clamp(0, 1))
    assert not torch.allclose(one_batch.images, generate(pipeline, protocol.replace(seed=2)).images)


def test_diffusers_first_block_cache_runs_on_it_and_skips_blocks(pipeline):
    labels, steps = list(range(10)), 10
    full = _sample(pipeline, seed=0, labels=labels, steps=steps)
    block_calls = []
    # the cache skips a block's forward but not its module call: count the MLP inside the last block
    handle = pipeline.transformer.single_transformer_blocks[-1].proj_mlp.register_forward_pre_hook(
        lambda module, args: block_calls.append(1)
    )
    pipeline.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.4))
    try:
        cached = _sample(pipeline, seed=0, labels=labels, steps=steps)
    finally:
        pipeline.transformer.disable_cache()
        handle.remove()
    assert 0 < len(block_calls) < steps
    assert (cached - full).abs().mean() < 0.1
    assert torch.equal(_sample(pipeline, seed=0, labels=labels, steps=steps), full), "disable_cache restores it"


def test_ddpm_samplers_do_not_apply_and_say_so(pipeline, tmp_path):
    with pytest.raises(ConfigError, match="flow matching") as error:
        load_pipeline("digits_flux", scheduler="ddim")
    assert "\n" not in str(error.value)
    copy = load_pipeline("digits_flux")
    copy.scheduler = DDIMScheduler()
    with pytest.raises(ConfigError, match="FlowMatchEulerDiscreteScheduler"):
        copy([1], num_inference_steps=2)
    with pytest.raises(ConfigError, match="0..9"):
        pipeline([10], num_inference_steps=2)


def test_local_directory_round_trip(pipeline, tmp_path, capfd):
    pipeline.save_pretrained(tmp_path / "copy")
    capfd.readouterr()
    copy = load_pipeline(str(tmp_path / "copy"))
    assert "sample_size" not in capfd.readouterr().err, "the latent grid size in the config is ours: load it quietly"
    assert isinstance(copy, ClassConditionalFluxPipeline) and copy.transformer.config.sample_size == 8
    assert torch.equal(_sample(copy, seed=3), _sample(pipeline, seed=3))


def test_the_training_script_trains_and_saves_a_loadable_flux_pipeline(tmp_path):
    import json

    from autofr.models.train_digits import main

    assert (
        main(
            [
                "--which",
                "flux",
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--threads",
                "1",
                "--no-gate",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "training_summary.json").read_text())["digits_flux"]
    assert summary["steps"] == 3 and summary["denoiser_class"] == "FluxTransformer2DModel"
    assert summary["macs_per_sample_forward"] == 13_568_000
    trained = load_pipeline(str(tmp_path / "digits_flux"))
    assert isinstance(trained, ClassConditionalFluxPipeline) and trained.transformer.config.sample_size == 8
    assert _sample(trained, seed=0, steps=2).shape == (4, 1, 16, 16)


def test_samples_show_the_requested_digit_at_the_default_guidance(pipeline):
    result = conditional_accuracy(
        pipeline,
        load_digit_classifier(),
        samples_per_class=5,
        num_inference_steps=DEFAULT_NUM_INFERENCE_STEPS,
        guidance_scale=DEFAULT_GUIDANCE_SCALE,
        seed=0,
    )
    assert result["num_samples"] == 50 and result["accuracy"] >= 0.9, result


def test_the_study_preset_samples_through_the_config(tmp_path):
    from autofr.cli._config import compose
    from autofr.config import StudyConfig
    from autofr.search.study import load_model, protocol_for

    cfg = compose("config", ["study=digits_flux"])
    config = StudyConfig.from_hydra(cfg)
    assert cfg.model.path == "digits_flux" and cfg.model.scheduler is None and cfg.quality.feature == "digits"
    assert cfg.model.num_inference_steps == DEFAULT_NUM_INFERENCE_STEPS
    assert cfg.model.guidance_scale == DEFAULT_GUIDANCE_SCALE
    protocol = protocol_for(config).replace(num_samples=4, batch_size=4, num_inference_steps=2)
    batch = generate(load_model(config.model), protocol)
    assert batch.images.shape == (4, 1, 16, 16)
