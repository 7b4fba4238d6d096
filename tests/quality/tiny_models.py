"""Tiny random-init models for offline quality/evaluation tests.

`TinyClassPipeline` mirrors the call signature of autofr.models' `ClassConditionalPipeline`
(class labels, optional `latents=`, images in [0, 1]) on a UNet small enough to sample 16x16 digits
in milliseconds. `TinyFeatures` stands in for the digit classifier's `features`.
"""

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

NUM_CLASSES = 10


class TinyClassPipeline(DiffusionPipeline):
    """Class-conditional pixel-space pipeline with the call signature of autofr's ClassConditionalPipeline."""

    def __init__(self, denoiser, scheduler):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        class_labels,
        num_inference_steps=50,
        guidance_scale=1.0,
        generator=None,
        latents=None,
        output_type="pt",
        callback_on_step_end=None,
    ):
        config = self.denoiser.config
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        shape = (len(labels), config.in_channels, config.sample_size, config.sample_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, dtype=self.denoiser.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        sample = latents * self.scheduler.init_noise_sigma
        null = torch.full_like(labels, NUM_CLASSES)
        for index, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = self.scheduler.scale_model_input(sample, t)
            if guidance_scale > 1:
                both = self.denoiser(torch.cat([model_input] * 2), t, class_labels=torch.cat([null, labels])).sample
                uncond, cond = both.chunk(2)
                prediction = torch.lerp(uncond, cond, guidance_scale)
            else:
                prediction = self.denoiser(model_input, t, class_labels=labels).sample
            sample = self.scheduler.step(prediction, t, sample).prev_sample
            if callback_on_step_end is not None:
                outputs = callback_on_step_end(self, index, t, {"latents": sample})
                sample = (outputs or {}).get("latents", sample)
        images = (sample / 2 + 0.5).clamp(0, 1)
        return ImagePipelineOutput(images=images)


def tiny_unet(seed=0):
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=4,
        num_class_embeds=NUM_CLASSES + 1,
    ).eval()


def tiny_class_pipeline(seed=0):
    # A random UNet predicting x0 ("sample") gives smooth DDIM trajectories: fewer steps -> steadily
    # larger distance to the many-step result, which is what the proxies must see.
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type="sample", clip_sample=False)
    pipe = TinyClassPipeline(denoiser=tiny_unet(seed), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class TinyFeatures(nn.Module):
    """A random CNN mapping (N, 1, 16, 16) images in [0, 1] to (N, 32) features."""

    num_features = 32

    def __init__(self, seed=0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(128, self.num_features),
        )
        for parameter in self.parameters():
            with torch.no_grad():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        self.eval()

    def forward(self, images):
        return self.net(images.float())


def real_digits(n=None):
    """sklearn's bundled 8x8 digits, upsampled to (N, 1, 16, 16) in [0, 1] (no download)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    images = torch.nn.functional.interpolate(images, size=16, mode="bilinear", align_corners=False).clamp(0, 1)
    labels = torch.tensor(data.target)
    if n is not None:
        images, labels = images[:n], labels[:n]
    return images, labels
