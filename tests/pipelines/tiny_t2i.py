"""Tiny random-init text-to-image pipelines built offline: text encoders and tokenizers from configs
and a hand-made vocabulary, nothing downloaded.

* :func:`tiny_sd_pipeline`: a Stable Diffusion pipeline (CLIP text encoder, UNet2DConditionModel,
  AutoencoderKL, DDIM), SD1.5-shaped;
* :func:`tiny_flux_pipeline`: a Flux pipeline (CLIP + T5 text encoders, FluxTransformer2DModel,
  FlowMatchEulerDiscreteScheduler with resolution-dependent shifting), the flow-matching
  transformer family; true classifier-free guidance calls the transformer twice per step.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

WORDS = ("a", "photo", "of", "red", "blue", "cat", "dog", "house", "tree", "on", "the", "beach", "at", "night")


def clip_tokenizer(directory: Path):
    """A CLIP BPE tokenizer over single characters (no merges): every prompt tokenizes offline."""
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase) + list(string.digits) + list(",.!?'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab.setdefault(symbol, len(vocab))
        vocab.setdefault(symbol + "</w>", len(vocab))
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=16)


def t5_tokenizer(directory: Path):
    """A unigram fast tokenizer with T5's special tokens over a small word vocabulary (T5's own model type)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("\u2581" + word, -1.0) for word in WORDS]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()  # T5's "▁word" pieces
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.save(str(directory / "tokenizer.json"))
    return T5TokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), extra_ids=0, model_max_length=16)


def clip_text_encoder(vocab_size: int, width: int = 32, projection: bool = False):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=16,
        projection_dim=width,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def t5_text_encoder(vocab_size: int, width: int = 32):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=width,
        d_ff=2 * width,
        d_kv=8,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    torch.manual_seed(0)
    return T5EncoderModel(config).eval()


def tiny_vae(latent_channels: int = 4, **extra):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=32,
        **extra,
    ).eval()


def tiny_sd_pipeline(directory: Path):
    """A Stable Diffusion pipeline: 32 px images, 16 px latents (VAE factor 2)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    tokenizer = clip_tokenizer(directory / "_tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()
    return StableDiffusionPipeline(
        vae=tiny_vae(),
        text_encoder=clip_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(num_train_timesteps=1000, clip_sample=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tiny_flux_pipeline(directory: Path, guidance_embeds: bool = False):
    """A Flux pipeline: 32 px images, 16 px latents packed to 8x8 tokens of 16 channels."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    tokenizer = clip_tokenizer(directory / "_tokenizer")
    tokenizer_2 = t5_tokenizer(directory / "_tokenizer_2")
    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=(2, 2, 4),
        guidance_embeds=guidance_embeds,
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256
    )
    return FluxPipeline(
        scheduler=scheduler,
        vae=tiny_vae(shift_factor=0.1, scaling_factor=0.5),
        text_encoder=clip_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=t5_text_encoder(len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def tiny_sd3_pipeline(directory: Path):
    """A Stable Diffusion 3 pipeline (two CLIP encoders and a T5): 32 px images, flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer = clip_tokenizer(directory / "_tokenizer")
    tokenizer_3 = t5_tokenizer(directory / "_tokenizer_3")
    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=64,
        caption_projection_dim=16,
        pooled_projection_dim=64,
        out_channels=4,
        pos_embed_max_size=16,
    ).eval()
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(shift_factor=0.1),
        text_encoder=clip_text_encoder(len(tokenizer), projection=True),
        tokenizer=tokenizer,
        text_encoder_2=clip_text_encoder(len(tokenizer), projection=True),
        tokenizer_2=tokenizer,
        text_encoder_3=t5_text_encoder(len(tokenizer_3), width=64),
        tokenizer_3=tokenizer_3,
    )
