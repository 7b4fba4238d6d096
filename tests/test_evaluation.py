import pytest
import torch
from diffusers import (
    AutoencoderKL,
    DDIMPipeline,
    DDIMScheduler,
    DiffusionPipeline,
    DiTPipeline,
    DiTTransformer2DModel,
    UNet2DModel,
)
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput

from autofr.errors import ConfigError, QualityError
from autofr.evaluation import EvalProtocol, SampleBatch, generate
from tests.quality.tiny_models import tiny_class_pipeline


@pytest.fixture(scope="module")
def pipe():
    return tiny_class_pipeline()


def protocol(**changes):
    return EvalProtocol(num_samples=6, batch_size=6, num_inference_steps=4, num_classes=10, seed=1).replace(**changes)


def test_the_protocol_is_deterministic_and_independent_of_batch_size(pipe):
    one_batch = generate(pipe, protocol())
    again = generate(pipe, protocol())
    small_batches = generate(pipe, protocol(batch_size=4))
    assert isinstance(one_batch, SampleBatch) and len(one_batch) == 6
    assert torch.equal(one_batch.images, again.images) and torch.equal(one_batch.latents, again.latents)
    assert torch.allclose(one_batch.images, small_batches.images, atol=1e-5)
    assert one_batch.seconds > 0
    other_seed = generate(pipe, protocol(seed=2))
    assert not torch.allclose(one_batch.images, other_seed.images)


def test_samples_are_cpu_images_in_unit_range_with_unclamped_final_latents(pipe):
    batch = generate(pipe, protocol())
    assert batch.images.device.type == "cpu" and batch.images.dtype == torch.float32
    assert batch.images.shape == batch.latents.shape == (6, 1, 16, 16)
    assert 0 <= batch.images.min() and batch.images.max() <= 1
    assert torch.allclose(batch.images, (batch.latents / 2 + 0.5).clamp(0, 1))
    assert batch.protocol == protocol()


def test_describe_records_everything_and_the_cache_key_ignores_only_batch_size():
    description = protocol().describe()
    assert description["num_samples"] == 6 and description["seed"] == 1 and description["scheduler"] == "ddim"
    assert description["labels"] == "i % num_classes"
    assert protocol(num_samples=12).class_labels() == [i % 10 for i in range(12)]
    assert protocol(batch_size=2).cache_key() == protocol().cache_key()
    keys = {
        protocol(**change).cache_key() for change in ({}, {"seed": 2}, {"num_inference_steps": 5}, {"resolution": 16})
    }
    assert len(keys) == 4
    text = EvalProtocol(num_samples=3, prompts=["a cat", "a dog"])
    assert text.sample_prompts() == ["a cat", "a dog", "a cat"] and text.describe()["prompts"] == ["a cat", "a dog"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"num_samples": 0}, "num_samples"),
        ({"scheduler": "dpm"}, "unknown scheduler 'dpm'"),
        ({"prompts": ("a cat",)}, "both num_classes and prompts"),
    ],
)
def test_bad_protocols_raise_config_errors(changes, message):
    with pytest.raises(ConfigError, match=message):
        protocol(**changes)


def test_the_protocol_must_fit_the_pipeline(pipe):
    with pytest.raises(ConfigError, match="set num_classes"):
        generate(pipe, protocol(num_classes=None))
    with pytest.raises(ConfigError, match="set resolution to 16"):
        generate(pipe, protocol(resolution=32))


def test_the_protocol_sampler_is_used_for_the_call_only(pipe):
    own = pipe.scheduler
    euler = generate(pipe, protocol(scheduler="euler"))
    assert pipe.scheduler is own
    ddim = generate(pipe, protocol())
    assert not torch.allclose(euler.images, ddim.images)
    kept = generate(pipe, protocol(scheduler=None))
    assert torch.equal(kept.images, ddim.images)


def test_nan_samples_raise_quality_error(pipe):
    hook = pipe.denoiser.register_forward_hook(
        lambda module, args, output: type(output)(sample=output.sample * float("nan"))
    )
    try:
        with pytest.raises(QualityError, match="NaN or inf in 6 of 6 samples.*schedule is unstable"):
            generate(pipe, protocol())
    finally:
        hook.remove()


def test_a_schedule_is_applied_for_the_call_and_removed_even_when_sampling_fails(pipe):
    ReuseSchedule = pytest.importorskip("autofr.schedule").ReuseSchedule
    schedule = ReuseSchedule.uniform(pipe, 4, interval=2)
    full = generate(pipe, protocol())
    reused = generate(pipe, protocol(), schedule=schedule)
    assert not torch.allclose(full.images, reused.images)
    assert torch.equal(generate(pipe, protocol()).images, full.images)

    hook = pipe.denoiser.register_forward_hook(
        lambda module, args, output: type(output)(sample=output.sample * float("nan"))
    )
    try:
        with pytest.raises(QualityError):
            generate(pipe, protocol(), schedule=schedule)
    finally:
        hook.remove()
    assert torch.equal(generate(pipe, protocol()).images, full.images)


def test_unconditional_pipelines_without_latents_use_per_sample_generators():
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
    )
    ddim = DDIMPipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000))
    unconditional = EvalProtocol(num_samples=5, batch_size=5, num_inference_steps=3)
    whole = generate(ddim, unconditional)
    split = generate(ddim, unconditional.replace(batch_size=2))
    assert whole.images.shape == (5, 1, 8, 8)
    assert torch.allclose(whole.images, split.images, atol=1e-5)
    assert torch.allclose(whole.latents, whole.images * 2 - 1)
    with pytest.raises(ConfigError, match="takes no class labels"):
        generate(ddim, unconditional.replace(num_classes=10))


def tiny_vae():
    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        latent_channels=4,
        block_out_channels=(8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=16,
    ).eval()


class TinyLatentPipeline(DiffusionPipeline):
    """A latent-diffusion pipeline with the Stable Diffusion conventions (latents=, output_type='latent')."""

    def __init__(self, denoiser, vae, scheduler):
        super().__init__()
        self.register_modules(denoiser=denoiser, vae=vae, scheduler=scheduler)
        self.vae_scale_factor = 2

    @torch.no_grad()
    def __call__(self, class_labels, num_inference_steps=50, generator=None, latents=None, output_type="pt"):
        labels = torch.as_tensor(class_labels).reshape(-1)
        if latents is None:
            latents = torch.randn(len(labels), 4, 8, 8, generator=generator[0])
        self.scheduler.set_timesteps(num_inference_steps)
        sample = latents * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            prediction = self.denoiser(sample, t, class_labels=labels).sample
            sample = self.scheduler.step(prediction, t, sample).prev_sample
        if output_type == "latent":
            return ImagePipelineOutput(images=sample)
        decoded = self.vae.decode(sample / self.vae.config.scaling_factor).sample
        return ImagePipelineOutput(images=(decoded / 2 + 0.5).clamp(0, 1))


def test_latent_pipelines_return_final_latents_and_decoded_images():
    torch.manual_seed(0)
    denoiser = UNet2DModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=10,
    ).eval()
    pipe = TinyLatentPipeline(denoiser, tiny_vae(), DDIMScheduler(num_train_timesteps=1000))
    latent_protocol = EvalProtocol(num_samples=3, batch_size=3, num_inference_steps=2, num_classes=10)
    batch = generate(pipe, latent_protocol)
    assert batch.latents.shape == (3, 4, 8, 8) and batch.images.shape == (3, 1, 16, 16)
    noise = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    reference = pipe([0, 1, 2], num_inference_steps=2, latents=noise)
    assert torch.allclose(batch.images, reference.images, atol=1e-5)
    assert torch.allclose(generate(pipe, latent_protocol.replace(batch_size=2)).latents, batch.latents, atol=1e-5)


def test_dit_pipelines_without_latent_output_still_give_latents():
    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=8,
        num_layers=1,
        sample_size=8,
        patch_size=2,
        num_embeds_ada_norm=1000,
        norm_num_groups=4,
    ).eval()
    pipe = DiTPipeline(transformer=transformer, vae=tiny_vae(), scheduler=DDIMScheduler(num_train_timesteps=1000))
    dit_protocol = EvalProtocol(
        num_samples=3, batch_size=2, num_inference_steps=2, num_classes=1000, guidance_scale=2.0
    )
    batch = generate(pipe, dit_protocol)
    assert batch.latents.shape == (3, 4, 8, 8) and batch.images.shape == (3, 1, 16, 16)
    vae = pipe.vae
    decoded = (vae.decode(batch.latents / vae.config.scaling_factor).sample / 2 + 0.5).clamp(0, 1)
    assert torch.allclose(decoded, batch.images, atol=1e-5)
    assert "decode" not in vae.__dict__  # the recording wrapper is gone
    assert torch.allclose(generate(pipe, dit_protocol.replace(batch_size=3)).images, batch.images, atol=1e-5)


def test_call_options_reach_the_pipeline_and_enter_the_cache_key_only_when_set(pipe):
    plain = protocol()
    with_options = protocol(call_options={"guidance_scale_unused": 1})
    assert "call_options" not in plain.describe() and plain.cache_key() != with_options.cache_key()
    with pytest.raises(ConfigError, match="takes no 'guidance_scale_unused'"):
        generate(pipe, with_options)
    with pytest.raises(ConfigError, match="which the protocol itself sets"):
        protocol(call_options={"num_inference_steps": 3})
