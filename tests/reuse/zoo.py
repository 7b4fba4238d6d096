"""Tiny random-init configurations of diffusers denoisers, one per class, with their forward inputs.

Sizes follow diffusers' own model tests (a layer or two, widths of 8-32, a few tokens), so every
class builds and runs in well under a second on one CPU thread. ``CASES`` drive the coverage test
(``tests/reuse/test_coverage.py``) and the coverage table (``bench/coverage.py``); ``NOT_RUN``
lists the classes of diffusers 0.42 that are not run here, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

_generator = torch.Generator().manual_seed(0)


def R(*shape):
    """A fixed random float tensor (the generator is reset before every case's inputs are built)."""
    return torch.randn(*shape, generator=_generator)


def T(*shape, dtype=torch.float32):
    """A timestep placeholder: the coverage loop replaces its values at every step."""
    return torch.full(shape, 500 if not dtype.is_floating_point else 0.5, dtype=dtype)


@dataclass(frozen=True)
class Case:
    class_name: str
    config: dict
    make_inputs: Callable[[], dict]
    sample: str = "hidden_states"  # the latent input the loop updates
    timestep: str = "timestep"
    scale: float = 900.0  # timestep at step 0 (flow-matching models that take t in [0, 1]: 1.0)

    def build(self):
        import diffusers

        torch.manual_seed(0)
        return getattr(diffusers, self.class_name)(**self.config).eval()

    def inputs(self) -> dict:
        _generator.manual_seed(0)
        return self.make_inputs()


def _wan_animate_2_cache():
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache

    return WanAnimate2KVCache(2)


CASES = [
    Case('AceStepTransformer1DModel', {'hidden_size': 32, 'intermediate_size': 64, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'head_dim': 8, 'in_channels': 24, 'audio_acoustic_hidden_dim': 8, 'patch_size': 2, 'rope_theta': 10000.0, 'rms_norm_eps': 1e-06, 'sliding_window': 16},
         lambda: {'hidden_states': R(2, 8, 8), 'timestep': T(2,), 'timestep_r': R(2,), 'encoder_hidden_states': R(2, 10, 32), 'context_latents': R(2, 8, 16)}),
    Case('AllegroTransformer3DModel', {'num_attention_heads': 2, 'attention_head_dim': 8, 'in_channels': 4, 'out_channels': 4, 'num_layers': 1, 'cross_attention_dim': 16, 'sample_width': 8, 'sample_height': 8, 'sample_frames': 8, 'caption_channels': 8},
         lambda: {'hidden_states': R(2, 4, 2, 8, 8), 'encoder_hidden_states': R(2, 16, 8), 'timestep': T(2, dtype=torch.int64)}),
    Case('AnyFlowFARTransformer3DModel', {'patch_size': [1, 2, 2], 'compressed_patch_size': [1, 4, 4], 'full_chunk_limit': 3, 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'rope_max_seq_len': 32, 'gate_value': 0.25, 'deltatime_type': 'r'},
         lambda: {'hidden_states': R(1, 4, 4, 16, 16), 'timestep': T(1, 4), 'r_timestep': R(1, 4), 'encoder_hidden_states': R(1, 12, 16), 'chunk_partition': [2, 2]}),
    Case('AnyFlowTransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'rope_max_seq_len': 32, 'gate_value': 0.25, 'deltatime_type': 'r'},
         lambda: {'hidden_states': R(1, 2, 4, 16, 16), 'timestep': T(1, 2), 'r_timestep': R(1, 2), 'encoder_hidden_states': R(1, 12, 16)}),
    Case('AuraFlowTransformer2DModel', {'sample_size': 32, 'patch_size': 2, 'in_channels': 4, 'num_mmdit_layers': 1, 'num_single_dit_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 4, 'caption_projection_dim': 32, 'joint_attention_dim': 32, 'out_channels': 4, 'pos_embed_max_size': 256},
         lambda: {'hidden_states': R(2, 4, 32, 32), 'encoder_hidden_states': R(2, 256, 32), 'timestep': T(2, dtype=torch.int64)}),
    Case('BriaFiboTransformer2DModel', {'patch_size': 1, 'in_channels': 48, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 2, 'joint_attention_dim': 64, 'text_encoder_dim': 32, 'pooled_projection_dim': None, 'axes_dims_rope': [0, 4, 4]},
         lambda: {'hidden_states': R(1, 256, 48), 'encoder_hidden_states': R(1, 32, 64), 'img_ids': R(256, 3), 'txt_ids': R(32, 3), 'timestep': T(1,), 'text_encoder_layers': [R(1, 32, 32), R(1, 32, 32)]}, scale=1.0),
    Case('BriaTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'pooled_projection_dim': None, 'axes_dims_rope': [0, 4, 4]},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'img_ids': R(16, 3), 'txt_ids': R(48, 3), 'timestep': T(1,)}, scale=1.0),
    Case('ChromaTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 16, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'axes_dims_rope': [4, 4, 8], 'approximator_num_channels': 8, 'approximator_hidden_dim': 16, 'approximator_layers': 1},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'img_ids': R(16, 3), 'txt_ids': R(48, 3), 'timestep': T(1,)}, scale=1.0),
    Case('ChronoEditTransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 8, 'in_channels': 16, 'out_channels': 16, 'text_dim': 32, 'freq_dim': 16, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'eps': 1e-06, 'image_dim': None, 'added_kv_proj_dim': None, 'rope_max_seq_len': 64, 'pos_embed_seq_len': None, 'rope_temporal_skip_len': 8},
         lambda: {'hidden_states': R(1, 16, 2, 8, 8), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 12, 32), 'encoder_hidden_states_image': None}),
    Case('CogVideoXTransformer3DModel', {'num_attention_heads': 2, 'attention_head_dim': 8, 'in_channels': 4, 'out_channels': 4, 'time_embed_dim': 2, 'text_embed_dim': 8, 'num_layers': 2, 'sample_width': 8, 'sample_height': 8, 'sample_frames': 8, 'patch_size': 2, 'patch_size_t': None, 'temporal_compression_ratio': 4, 'max_text_seq_length': 8},
         lambda: {'hidden_states': R(2, 1, 4, 8, 8), 'encoder_hidden_states': R(2, 8, 8), 'timestep': T(2, dtype=torch.int64)}),
    Case('CogView3PlusTransformer2DModel', {'patch_size': 2, 'in_channels': 4, 'num_layers': 2, 'attention_head_dim': 4, 'num_attention_heads': 2, 'out_channels': 4, 'text_embed_dim': 8, 'time_embed_dim': 8, 'condition_dim': 2, 'pos_embed_max_size': 8, 'sample_size': 8},
         lambda: {'hidden_states': R(2, 4, 8, 8), 'encoder_hidden_states': R(2, 8, 8), 'original_size': torch.full((2, 2), 64, dtype=torch.int64), 'target_size': torch.full((2, 2), 64, dtype=torch.int64), 'crop_coords': torch.full((2, 2), 0, dtype=torch.int64), 'timestep': T(2, dtype=torch.int64)}),
    Case('CogView4Transformer2DModel', {'patch_size': 2, 'in_channels': 4, 'num_layers': 2, 'attention_head_dim': 4, 'num_attention_heads': 4, 'out_channels': 4, 'text_embed_dim': 8, 'time_embed_dim': 8, 'condition_dim': 4},
         lambda: {'hidden_states': R(2, 4, 8, 8), 'encoder_hidden_states': R(2, 8, 8), 'timestep': T(2, dtype=torch.int64), 'original_size': torch.full((2, 2), 64, dtype=torch.int64), 'target_size': torch.full((2, 2), 64, dtype=torch.int64), 'crop_coords': torch.full((2, 2), 0, dtype=torch.int64)}),
    Case('ConsisIDTransformer3DModel', {'num_attention_heads': 2, 'attention_head_dim': 8, 'in_channels': 4, 'out_channels': 4, 'time_embed_dim': 2, 'text_embed_dim': 8, 'num_layers': 1, 'sample_width': 8, 'sample_height': 8, 'sample_frames': 8, 'patch_size': 2, 'temporal_compression_ratio': 4, 'max_text_seq_length': 8, 'cross_attn_interval': 1, 'is_kps': False, 'is_train_face': True, 'cross_attn_dim_head': 1, 'cross_attn_num_heads': 1, 'LFE_id_dim': 2, 'LFE_vit_dim': 2, 'LFE_depth': 5, 'LFE_dim_head': 8, 'LFE_num_heads': 2, 'LFE_num_id_token': 1, 'LFE_num_querie': 1, 'LFE_output_dim': 10, 'LFE_ff_mult': 1, 'LFE_num_scale': 1},
         lambda: {'hidden_states': R(2, 1, 4, 8, 8), 'encoder_hidden_states': R(2, 8, 8), 'timestep': T(2, dtype=torch.int64), 'id_vit_hidden': [R(2, 2, 2)], 'id_cond': R(2, 2)}),
    Case('Cosmos3OmniTransformer', {'head_dim': 6, 'hidden_act': 'relu2', 'hidden_size': 12, 'intermediate_size': 24, 'latent_channel': 2, 'latent_patch_size': 1, 'num_attention_heads': 2, 'num_hidden_layers': 2, 'num_key_value_heads': 1, 'patch_latent_dim': 2, 'qk_norm_for_text': False, 'rms_norm_eps': 1e-05, 'rope_axes_dim': [1, 1, 1], 'rope_theta': 100000000.0, 'vocab_size': 32},
         lambda: {'input_ids': torch.tensor([1, 2], dtype=torch.int64).reshape(2,), 'text_indexes': torch.tensor([0, 1], dtype=torch.int64).reshape(2,), 'position_ids': torch.full((3, 3), 0, dtype=torch.int64), 'und_len': 2, 'sequence_length': 3, 'vision_tokens': [R(1, 2, 1, 1, 1)], 'vision_token_shapes': [(1, 1, 1)], 'vision_sequence_indexes': torch.full((1,), 2, dtype=torch.int64), 'vision_mse_loss_indexes': torch.full((1,), 2, dtype=torch.int64), 'vision_timesteps': T(1), 'vision_noisy_frame_indexes': [torch.full((1,), 0, dtype=torch.int64)]},
         sample='vision_tokens', timestep='vision_timesteps', scale=1.0),
    Case('DiTTransformer2DModel', {'in_channels': 4, 'out_channels': 8, 'activation_fn': 'gelu-approximate', 'num_attention_heads': 2, 'attention_head_dim': 4, 'attention_bias': True, 'num_layers': 1, 'norm_type': 'ada_norm_zero', 'num_embeds_ada_norm': 8, 'patch_size': 2, 'sample_size': 8},
         lambda: {'hidden_states': R(4, 4, 8, 8), 'timestep': T(4, dtype=torch.int64), 'class_labels': torch.tensor([0, 3, 1, 0], dtype=torch.int64).reshape(4,)}),
    Case('EasyAnimateTransformer3DModel', {'attention_head_dim': 16, 'num_attention_heads': 2, 'in_channels': 4, 'mmdit_layers': 2, 'num_layers': 2, 'out_channels': 4, 'patch_size': 2, 'sample_height': 60, 'sample_width': 90, 'text_embed_dim': 16, 'time_embed_dim': 8, 'time_position_encoding_type': '3d_rope', 'timestep_activation_fn': 'silu'},
         lambda: {'hidden_states': R(2, 4, 2, 16, 16), 'timestep': T(2, dtype=torch.int64), 'timestep_cond': None, 'encoder_hidden_states': R(2, 16, 16), 'encoder_hidden_states_t5': None, 'inpaint_latents': None, 'control_latents': None}),
    Case('ErnieImageTransformer2DModel', {'hidden_size': 16, 'num_attention_heads': 1, 'num_layers': 1, 'ffn_hidden_size': 16, 'in_channels': 16, 'out_channels': 16, 'patch_size': 1, 'text_in_dim': 16, 'rope_theta': 256, 'rope_axes_dim': [8, 4, 4], 'eps': 1e-06, 'qk_layernorm': True},
         lambda: {'hidden_states': R(1, 16, 16, 16), 'timestep': T(1,), 'text_bth': R(1, 16, 16), 'text_lens': torch.full((1,), 16, dtype=torch.int64)}, scale=1.0),
    Case('Flux2Transformer2DModel', {'patch_size': 1, 'in_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 16, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'timestep_guidance_channels': 256, 'axes_dims_rope': [4, 4, 4, 4]},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'img_ids': torch.tensor([0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 2, 0, 0, 1, 3, 0, 0, 2, 0, 0, 0, 2, 1, 0, 0, 2, 2, 0, 0, 2, 3, 0, 0, 3, 0, 0, 0, 3, 1, 0, 0, 3, 2, 0, 0, 3, 3, 0], dtype=torch.int64).reshape(1, 16, 4), 'txt_ids': torch.tensor([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 10, 0, 0, 0, 11, 0, 0, 0, 12, 0, 0, 0, 13, 0, 0, 0, 14, 0, 0, 0, 15, 0, 0, 0, 16, 0, 0, 0, 17, 0, 0, 0, 18, 0, 0, 0, 19, 0, 0, 0, 20, 0, 0, 0, 21, 0, 0, 0, 22, 0, 0, 0, 23, 0, 0, 0, 24, 0, 0, 0, 25, 0, 0, 0, 26, 0, 0, 0, 27, 0, 0, 0, 28, 0, 0, 0, 29, 0, 0, 0, 30, 0, 0, 0, 31, 0, 0, 0, 32, 0, 0, 0, 33, 0, 0, 0, 34, 0, 0, 0, 35, 0, 0, 0, 36, 0, 0, 0, 37, 0, 0, 0, 38, 0, 0, 0, 39, 0, 0, 0, 40, 0, 0, 0, 41, 0, 0, 0, 42, 0, 0, 0, 43, 0, 0, 0, 44, 0, 0, 0, 45, 0, 0, 0, 46, 0, 0, 0, 47], dtype=torch.int64).reshape(1, 48, 4), 'timestep': T(1,), 'guidance': R(1,)}, scale=1.0),
    Case('FluxTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 16, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'pooled_projection_dim': 32, 'axes_dims_rope': [4, 4, 8]},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'pooled_projections': R(1, 32), 'img_ids': R(16, 3), 'txt_ids': R(48, 3), 'timestep': T(1,)}, scale=1.0),
    Case('GlmImageTransformer2DModel', {'patch_size': 2, 'in_channels': 4, 'out_channels': 4, 'num_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 2, 'text_embed_dim': 32, 'time_embed_dim': 16, 'condition_dim': 8, 'prior_vq_quantizer_codebook_size': 64},
         lambda: {'hidden_states': R(1, 4, 8, 8), 'encoder_hidden_states': R(1, 12, 32), 'prior_token_id': torch.full((1,), 44, dtype=torch.int64), 'prior_token_drop': torch.full((1,), False, dtype=torch.bool), 'timestep': T(1, dtype=torch.int64), 'target_size': torch.full((1, 2), 8.0, dtype=torch.float32), 'crop_coords': torch.full((1, 2), 0.0, dtype=torch.float32)}),
    Case('HeliosTransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'rope_dim': [4, 4, 4], 'has_multi_term_memory_patch': True, 'guidance_cross_attn': True, 'zero_history_timestep': True, 'is_amplify_history': False},
         lambda: {'hidden_states': R(1, 4, 2, 16, 16), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 12, 16), 'indices_hidden_states': torch.full((1, 2), 1.0, dtype=torch.float32), 'indices_latents_history_short': torch.full((1, 1), 1.0, dtype=torch.float32), 'indices_latents_history_mid': torch.full((1, 1), 1.0, dtype=torch.float32), 'indices_latents_history_long': torch.full((1, 4), 1.0, dtype=torch.float32), 'latents_history_short': R(1, 4, 1, 16, 16), 'latents_history_mid': R(1, 4, 1, 16, 16), 'latents_history_long': R(1, 4, 4, 16, 16)}),
    Case('HiDreamImageTransformer2DModel', {'patch_size': 2, 'in_channels': 4, 'out_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 4, 'caption_channels': [8, 4], 'text_emb_dim': 8, 'num_routed_experts': 2, 'num_activated_experts': 2, 'axes_dims_rope': [4, 2, 2], 'max_resolution': [32, 32], 'llama_layers': [0, 1], 'force_inference_output': True},
         lambda: {'hidden_states': R(2, 4, 32, 32), 'encoder_hidden_states_t5': R(2, 8, 8), 'encoder_hidden_states_llama3': R(2, 2, 8, 4), 'pooled_embeds': R(2, 8), 'timesteps': T(2, dtype=torch.int64)}, timestep='timesteps'),
    Case('HunyuanDiT2DModel', {'sample_size': 8, 'patch_size': 2, 'in_channels': 4, 'num_layers': 1, 'attention_head_dim': 8, 'num_attention_heads': 2, 'cross_attention_dim': 8, 'cross_attention_dim_t5': 8, 'pooled_projection_dim': 4, 'hidden_size': 16, 'text_len': 4, 'text_len_t5': 4, 'activation_fn': 'gelu-approximate'},
         lambda: {'hidden_states': R(2, 4, 8, 8), 'encoder_hidden_states': R(2, 4, 8), 'text_embedding_mask': torch.full((2, 4), 1.0, dtype=torch.float32), 'encoder_hidden_states_t5': R(2, 4, 8), 'text_embedding_mask_t5': torch.full((2, 4), 1.0, dtype=torch.float32), 'timestep': T(2,), 'image_meta_size': torch.tensor([1024.0, 1024.0, 16.0, 16.0, 0.0, 0.0, 1024.0, 1024.0, 16.0, 16.0, 0.0, 0.0], dtype=torch.float32).reshape(2, 6), 'style': torch.full((2,), 0, dtype=torch.int64), 'image_rotary_emb': [R(1, 8), R(1, 8)]}),
    Case('HunyuanVideo15Transformer3DModel', {'in_channels': 4, 'out_channels': 4, 'num_attention_heads': 2, 'attention_head_dim': 8, 'num_layers': 2, 'num_refiner_layers': 1, 'mlp_ratio': 2.0, 'patch_size': 1, 'patch_size_t': 1, 'text_embed_dim': 16, 'text_embed_2_dim': 8, 'image_embed_dim': 12, 'rope_axes_dim': [2, 2, 4], 'target_size': 16, 'task_type': 't2v'},
         lambda: {'hidden_states': R(1, 4, 1, 8, 8), 'timestep': T(1,), 'encoder_hidden_states': R(1, 6, 16), 'encoder_hidden_states_2': R(1, 4, 8), 'encoder_attention_mask': torch.full((1, 6), 1.0, dtype=torch.float32), 'encoder_attention_mask_2': torch.full((1, 4), 1.0, dtype=torch.float32), 'image_embeds': R(1, 3, 12)}, scale=1.0),
    Case('HunyuanVideoFramepackTransformer3DModel', {'in_channels': 4, 'out_channels': 4, 'num_attention_heads': 2, 'attention_head_dim': 10, 'num_layers': 1, 'num_single_layers': 1, 'num_refiner_layers': 1, 'patch_size': 2, 'patch_size_t': 1, 'guidance_embeds': True, 'text_embed_dim': 16, 'pooled_projection_dim': 8, 'rope_axes_dim': [2, 4, 4], 'image_condition_type': None, 'has_image_proj': True, 'image_proj_dim': 16, 'has_clean_x_embedder': True},
         lambda: {'hidden_states': R(1, 4, 3, 4, 4), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 12, 16), 'pooled_projections': R(1, 8), 'encoder_attention_mask': torch.full((1, 12), 1.0, dtype=torch.float32), 'guidance': torch.full((1,), 44, dtype=torch.int64), 'image_embeds': R(1, 12, 16), 'indices_latents': torch.full((3,), 1.0, dtype=torch.float32), 'latents_clean': R(1, 4, 2, 4, 4), 'indices_latents_clean': torch.full((2,), 1.0, dtype=torch.float32), 'latents_history_2x': R(1, 4, 2, 4, 4), 'indices_latents_history_2x': torch.full((2,), 1.0, dtype=torch.float32), 'latents_history_4x': R(1, 4, 8, 4, 4), 'indices_latents_history_4x': torch.full((8,), 1.0, dtype=torch.float32)}),
    Case('HunyuanVideoTransformer3DModel', {'in_channels': 4, 'out_channels': 4, 'num_attention_heads': 2, 'attention_head_dim': 10, 'num_layers': 1, 'num_single_layers': 1, 'num_refiner_layers': 1, 'patch_size': 1, 'patch_size_t': 1, 'guidance_embeds': True, 'text_embed_dim': 16, 'pooled_projection_dim': 8, 'rope_axes_dim': [2, 4, 4], 'image_condition_type': None},
         lambda: {'hidden_states': R(1, 4, 1, 16, 16), 'timestep': T(1,), 'encoder_hidden_states': R(1, 12, 16), 'pooled_projections': R(1, 8), 'encoder_attention_mask': torch.full((1, 12), 1.0, dtype=torch.float32), 'guidance': R(1,)}),
    Case('Ideogram4Transformer2DModel', {'in_channels': 16, 'num_layers': 2, 'attention_head_dim': 8, 'num_attention_heads': 4, 'intermediate_size': 32, 'adaln_dim': 16, 'llm_features_dim': 24, 'rope_theta': 10000, 'mrope_section': [2, 1, 1], 'norm_eps': 1e-05},
         lambda: {'hidden_states': R(1, 8, 16), 'encoder_hidden_states': R(1, 8, 24), 'timestep': T(1,), 'position_ids': torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 65536, 65536, 65536, 65536, 65536, 65537, 65536, 65537, 65536, 65536, 65537, 65537], dtype=torch.int64).reshape(1, 8, 3), 'segment_ids': torch.full((1, 8), 1, dtype=torch.int64), 'indicator': torch.tensor([3, 3, 3, 3, 2, 2, 2, 2], dtype=torch.int64).reshape(1, 8)}, scale=1.0),
    Case('JoyImageEditPlusTransformer3DModel', {'patch_size': [1, 2, 2], 'in_channels': 16, 'hidden_size': 32, 'num_attention_heads': 2, 'text_dim': 16, 'num_layers': 2, 'rope_dim_list': [4, 6, 6], 'theta': 256},
         lambda: {'hidden_states': R(1, 2, 16, 1, 2, 2), 'encoder_hidden_states': R(1, 12, 16), 'timestep': T(1,), 'shape_list': [[(1, 1, 1), (1, 1, 1)]]}, scale=1.0),
    Case('JoyImageEditTransformer3DModel', {'patch_size': [1, 2, 2], 'in_channels': 16, 'hidden_size': 32, 'num_attention_heads': 2, 'text_dim': 16, 'num_layers': 2, 'rope_dim_list': [4, 6, 6], 'theta': 256},
         lambda: {'hidden_states': R(1, 16, 1, 4, 4), 'encoder_hidden_states': R(1, 12, 16), 'timestep': T(1,)}, scale=1.0),
    Case('Krea2Transformer2DModel', {'in_channels': 16, 'num_layers': 2, 'attention_head_dim': 8, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'intermediate_size': 32, 'timestep_embed_dim': 8, 'text_hidden_dim': 16, 'num_text_layers': 3, 'text_num_attention_heads': 2, 'text_num_key_value_heads': 1, 'text_intermediate_size': 16, 'num_layerwise_text_blocks': 1, 'num_refiner_text_blocks': 1, 'axes_dims_rope': [4, 2, 2], 'rope_theta': 1000.0, 'norm_eps': 1e-05},
         lambda: {'hidden_states': R(1, 4, 16), 'encoder_hidden_states': R(1, 4, 3, 16), 'timestep': T(1,), 'position_ids': R(8, 3), 'encoder_attention_mask': torch.tensor([True, True, True, False], dtype=torch.bool).reshape(1, 4)}, scale=1.0),
    Case('LTX2VideoTransformer3DModel', {'in_channels': 4, 'out_channels': 4, 'patch_size': 1, 'patch_size_t': 1, 'num_attention_heads': 2, 'attention_head_dim': 8, 'cross_attention_dim': 16, 'audio_in_channels': 4, 'audio_out_channels': 4, 'audio_num_attention_heads': 2, 'audio_attention_head_dim': 4, 'audio_cross_attention_dim': 8, 'num_layers': 2, 'qk_norm': 'rms_norm_across_heads', 'caption_channels': 16, 'rope_double_precision': False},
         lambda: {'hidden_states': R(2, 512, 4), 'audio_hidden_states': R(2, 9, 4), 'encoder_hidden_states': R(2, 16, 16), 'audio_encoder_hidden_states': R(2, 16, 16), 'timestep': T(2,), 'encoder_attention_mask': torch.full((2, 16), True, dtype=torch.bool), 'num_frames': 2, 'height': 16, 'width': 16, 'audio_num_frames': 9, 'fps': 25.0}),
    Case('LTXVideoTransformer3DModel', {'in_channels': 4, 'out_channels': 4, 'num_attention_heads': 2, 'attention_head_dim': 8, 'cross_attention_dim': 16, 'num_layers': 1, 'qk_norm': 'rms_norm_across_heads', 'caption_channels': 16},
         lambda: {'hidden_states': R(2, 512, 4), 'encoder_hidden_states': R(2, 16, 16), 'timestep': T(2, dtype=torch.int64), 'encoder_attention_mask': torch.full((2, 16), True, dtype=torch.bool), 'num_frames': 2, 'height': 16, 'width': 16}),
    Case('LatteTransformer3DModel', {'sample_size': 8, 'num_layers': 1, 'patch_size': 2, 'attention_head_dim': 4, 'num_attention_heads': 2, 'caption_channels': 8, 'in_channels': 4, 'cross_attention_dim': 8, 'out_channels': 8, 'attention_bias': True, 'activation_fn': 'gelu-approximate', 'num_embeds_ada_norm': 1000, 'norm_type': 'ada_norm_single', 'norm_elementwise_affine': False, 'norm_eps': 1e-06},
         lambda: {'hidden_states': R(2, 4, 1, 8, 8), 'encoder_hidden_states': R(2, 8, 8), 'timestep': T(2, dtype=torch.int64), 'enable_temporal_attentions': True}),
    Case('LongCatAudioDiTTransformer', {'dit_dim': 64, 'dit_depth': 2, 'dit_heads': 4, 'dit_text_dim': 32, 'latent_dim': 8, 'text_conv': False},
         lambda: {'hidden_states': R(1, 16, 8), 'encoder_hidden_states': R(1, 10, 32), 'encoder_attention_mask': torch.full((1, 10), True, dtype=torch.bool), 'attention_mask': torch.full((1, 16), True, dtype=torch.bool), 'timestep': T(1,)}, scale=1.0),
    Case('LongCatImageTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 16, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'pooled_projection_dim': 32, 'axes_dims_rope': [4, 4, 8]},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'img_ids': R(16, 3), 'txt_ids': R(48, 3), 'timestep': T(1,), 'guidance': R(1,)}, scale=1.0),
    Case('Lumina2Transformer2DModel', {'sample_size': 16, 'patch_size': 2, 'in_channels': 4, 'hidden_size': 24, 'num_layers': 2, 'num_refiner_layers': 1, 'num_attention_heads': 3, 'num_kv_heads': 1, 'multiple_of': 2, 'ffn_dim_multiplier': None, 'norm_eps': 1e-05, 'scaling_factor': 1.0, 'axes_dim_rope': [4, 2, 2], 'axes_lens': [128, 128, 128], 'cap_feat_dim': 32},
         lambda: {'hidden_states': R(2, 4, 16, 16), 'encoder_hidden_states': R(2, 16, 32), 'timestep': T(2,), 'encoder_attention_mask': torch.full((2, 16), True, dtype=torch.bool)}, scale=1.0),
    Case('LuminaNextDiT2DModel', {'sample_size': 16, 'patch_size': 2, 'in_channels': 4, 'hidden_size': 24, 'num_layers': 2, 'num_attention_heads': 3, 'num_kv_heads': 1, 'multiple_of': 16, 'ffn_dim_multiplier': None, 'norm_eps': 1e-05, 'learn_sigma': False, 'qk_norm': True, 'cross_attention_dim': 32, 'scaling_factor': 1.0},
         lambda: {'hidden_states': R(2, 4, 16, 16), 'encoder_hidden_states': R(2, 16, 32), 'timestep': T(2,), 'encoder_mask': torch.tensor([-1.1258398294448853, -1.152360200881958, -0.2505785822868347, -0.4338788092136383, 0.8487103581428528, 0.6920091509819031, -0.31601276993751526, -2.1152193546295166, 0.32227492332458496, -1.2633347511291504, 0.34998318552970886, 0.30813392996788025, 0.11984150856733322, 1.237657904624939, 1.1167771816253662, -0.2472781538963318, -1.3526537418365479, -1.6959311962127686, 0.5666506290435791, 0.7935083508491516, 0.5988394618034363, -1.5550950765609741, -0.3413603901863098, 1.85300612449646, 0.750189483165741, -0.5854975581169128, -0.1733967512845993, 0.18347793817520142, 1.3893661499023438, 1.586334228515625, 0.946298360824585, -0.843676745891571], dtype=torch.float32).reshape(2, 16), 'image_rotary_emb': R(384, 384, 4), 'cross_attention_kwargs': {}}, scale=1.0),
    Case('MiniMaxH3Transformer3DModel', {'num_attention_heads': 2, 'attention_head_dim': 16, 'hidden_size': 24, 'num_layers': 2, 'num_refiner_layers': 2, 'ffn_dim': 32, 'in_channels': 4, 'audio_in_channels': 6, 'patch_size': [1, 2, 2], 'text_dim': 8, 'freq_dim': 8, 'time_embed_hidden_dim': 24, 'time_embed_dim': 16, 'rope_freq_dim': 2},
         lambda: {'hidden_states': R(2, 8, 16), 'audio_hidden_states': R(2, 6, 6), 'encoder_hidden_states': R(2, 4, 8), 'timestep': T(2,), 'timestep_indices': torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.int64).reshape(18,), 'token_tags': torch.tensor([1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0], dtype=torch.int64).reshape(18,), 'position_ids': R(18, 3), 'video_indices': torch.tensor([10, 11, 12, 13, 14, 15, 16, 17], dtype=torch.int64).reshape(8,), 'audio_indices': torch.tensor([4, 5, 6, 7, 8, 9], dtype=torch.int64).reshape(6,), 'text_indices': torch.tensor([0, 1, 2, 3], dtype=torch.int64).reshape(4,)}, scale=1.0),
    Case('MiniMaxMusic3Transformer1DModel', {'in_channels': 8, 'condition_dim': 16, 'num_layers': 2, 'num_attention_heads': 2, 'attention_head_dim': 8, 'ff_inner_dim': 32, 'rotary_dim': 4, 'fourier_embedding_dim': 8},
         lambda: {'hidden_states': R(1, 8, 24), 'encoder_hidden_states': R(1, 24, 16), 'timestep': T(1,)}, scale=1.0),
    Case('MochiTransformer3DModel', {'patch_size': 2, 'num_attention_heads': 2, 'attention_head_dim': 8, 'num_layers': 2, 'pooled_projection_dim': 16, 'in_channels': 4, 'out_channels': None, 'qk_norm': 'rms_norm', 'text_embed_dim': 16, 'time_embed_dim': 4, 'activation_fn': 'swiglu', 'max_sequence_length': 16},
         lambda: {'hidden_states': R(2, 4, 2, 16, 16), 'encoder_hidden_states': R(2, 16, 16), 'timestep': T(2, dtype=torch.int64), 'encoder_attention_mask': torch.full((2, 16), True, dtype=torch.bool)}),
    Case('MotifVideoTransformer3DModel', {'in_channels': 33, 'out_channels': 16, 'num_attention_heads': 2, 'attention_head_dim': 12, 'num_layers': 1, 'num_single_layers': 1, 'num_decoder_layers': 0, 'mlp_ratio': 4.0, 'patch_size': 1, 'patch_size_t': 1, 'qk_norm': 'rms_norm', 'norm_type': 'layer_norm', 'text_embed_dim': 32, 'image_embed_dim': 4, 'rope_theta': 256.0, 'rope_axes_dim': [4, 4, 4], 'enable_text_cross_attention_dual': False, 'enable_text_cross_attention_single': False},
         lambda: {'hidden_states': R(1, 33, 3, 8, 8), 'encoder_hidden_states': R(1, 12, 32), 'timestep': T(1, dtype=torch.int64)}),
    Case('NucleusMoEImageTransformer2DModel', {'patch_size': 2, 'in_channels': 16, 'out_channels': 4, 'num_layers': 2, 'attention_head_dim': 16, 'num_attention_heads': 4, 'joint_attention_dim': 16, 'axes_dims_rope': [8, 4, 4], 'moe_enabled': False, 'capacity_factors': [8.0, 8.0]},
         lambda: {'hidden_states': R(1, 16, 16), 'encoder_hidden_states': R(1, 8, 16), 'encoder_hidden_states_mask': torch.full((1, 8), 1, dtype=torch.int64), 'timestep': T(1,), 'img_shapes': [(1, 4, 4)]}, scale=1.0),
    Case('OmniGenTransformer2DModel', {'hidden_size': 16, 'num_attention_heads': 4, 'num_key_value_heads': 4, 'intermediate_size': 32, 'num_layers': 20, 'pad_token_id': 0, 'vocab_size': 1000, 'in_channels': 4, 'time_step_dim': 4, 'rope_scaling': {'long_factor': [1, 2], 'short_factor': [1, 2]}},
         lambda: {'hidden_states': R(2, 4, 8, 8), 'timestep': T(2,), 'input_ids': torch.tensor([4, 9, 3, 0, 3, 9, 7, 3, 7, 3, 1, 6, 6, 9, 8, 6, 6, 8, 4, 3, 6, 9, 1, 4, 4, 1, 9, 9, 9, 0, 1, 2, 3, 0, 5, 5, 2, 9, 1, 8, 8, 3, 6, 9, 1, 7, 3, 5], dtype=torch.int64).reshape(2, 24), 'input_img_latents': [R(1, 4, 8, 8)], 'input_image_sizes': {0: [[0, 16]]}, 'attention_mask': torch.full((2, 41, 41), 1.0, dtype=torch.float32), 'position_ids': torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40], dtype=torch.int64).reshape(2, 41)}, scale=1.0),
    Case('OvisImageTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'out_channels': 4, 'num_layers': 1, 'num_single_layers': 1, 'attention_head_dim': 16, 'num_attention_heads': 2, 'joint_attention_dim': 32, 'axes_dims_rope': [4, 4, 8]},
         lambda: {'hidden_states': R(1, 16, 4), 'encoder_hidden_states': R(1, 48, 32), 'img_ids': R(16, 3), 'txt_ids': R(48, 3), 'timestep': T(1,)}, scale=1.0),
    Case('PRXTransformer2DModel', {'in_channels': 16, 'patch_size': 2, 'context_in_dim': 32, 'hidden_size': 32, 'mlp_ratio': 2.0, 'num_heads': 2, 'depth': 2, 'axes_dim': [8, 8], 'theta': 10000},
         lambda: {'hidden_states': R(1, 16, 8, 8), 'encoder_hidden_states': R(1, 8, 32), 'timestep': T(1,)}, scale=1.0),
    Case('PixArtTransformer2DModel', {'sample_size': 8, 'num_layers': 1, 'patch_size': 2, 'attention_head_dim': 2, 'num_attention_heads': 2, 'in_channels': 4, 'cross_attention_dim': 8, 'out_channels': 8, 'attention_bias': True, 'activation_fn': 'gelu-approximate', 'num_embeds_ada_norm': 8, 'norm_type': 'ada_norm_single', 'norm_elementwise_affine': False, 'norm_eps': 1e-06, 'use_additional_conditions': False, 'caption_channels': None},
         lambda: {'hidden_states': R(4, 4, 8, 8), 'timestep': T(4, dtype=torch.int64), 'encoder_hidden_states': R(4, 8, 8), 'added_cond_kwargs': {'aspect_ratio': None, 'resolution': None}}),
    Case('PriorTransformer', {'num_attention_heads': 2, 'attention_head_dim': 4, 'num_layers': 2, 'embedding_dim': 8, 'num_embeddings': 7, 'additional_embeddings': 4},
         lambda: {'hidden_states': R(4, 8), 'timestep': 2, 'proj_embedding': R(4, 8), 'encoder_hidden_states': R(4, 7, 8)}),
    Case('QwenImageTransformer2DModel', {'patch_size': 2, 'in_channels': 16, 'out_channels': 4, 'num_layers': 2, 'attention_head_dim': 16, 'num_attention_heads': 4, 'joint_attention_dim': 16, 'guidance_embeds': False, 'axes_dims_rope': [8, 4, 4]},
         lambda: {'hidden_states': R(1, 16, 16), 'encoder_hidden_states': R(1, 8, 16), 'encoder_hidden_states_mask': torch.full((1, 8), 1, dtype=torch.int64), 'timestep': T(1,), 'img_shapes': [(1, 4, 4)]}, scale=1.0),
    Case('SD3Transformer2DModel', {'sample_size': 16, 'patch_size': 1, 'in_channels': 4, 'num_layers': 2, 'attention_head_dim': 8, 'num_attention_heads': 4, 'caption_projection_dim': 32, 'joint_attention_dim': 32, 'pooled_projection_dim': 64, 'out_channels': 4, 'pos_embed_max_size': 96, 'dual_attention_layers': [], 'qk_norm': None},
         lambda: {'hidden_states': R(1, 4, 16, 16), 'encoder_hidden_states': R(1, 16, 32), 'pooled_projections': R(1, 64), 'timestep': T(1, dtype=torch.int64)}),
    Case('SanaTransformer2DModel', {'patch_size': 1, 'in_channels': 4, 'out_channels': 4, 'num_layers': 1, 'attention_head_dim': 4, 'num_attention_heads': 2, 'num_cross_attention_heads': 2, 'cross_attention_head_dim': 4, 'cross_attention_dim': 8, 'caption_channels': 8, 'sample_size': 32},
         lambda: {'hidden_states': R(2, 4, 32, 32), 'encoder_hidden_states': R(2, 8, 8), 'timestep': T(2, dtype=torch.int64)}),
    Case('SanaVideoTransformer3DModel', {'in_channels': 16, 'out_channels': 16, 'num_attention_heads': 2, 'attention_head_dim': 12, 'num_layers': 2, 'num_cross_attention_heads': 2, 'cross_attention_head_dim': 12, 'cross_attention_dim': 24, 'caption_channels': 16, 'mlp_ratio': 2.5, 'dropout': 0.0, 'attention_bias': False, 'sample_size': 8, 'patch_size': [1, 2, 2], 'norm_elementwise_affine': False, 'norm_eps': 1e-06, 'qk_norm': 'rms_norm_across_heads', 'rope_max_seq_len': 32},
         lambda: {'hidden_states': R(1, 16, 2, 16, 16), 'encoder_hidden_states': R(1, 12, 16), 'timestep': T(1, dtype=torch.int64)}),
    Case('SkyReelsV2Transformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'rope_max_seq_len': 32},
         lambda: {'hidden_states': R(1, 4, 2, 16, 16), 'encoder_hidden_states': R(1, 12, 16), 'timestep': T(1, dtype=torch.int64)}),
    Case('StableAudio3DiTModel', {'io_channels': 8, 'patch_size': 1, 'embed_dim': 32, 'depth': 2, 'num_heads': 4, 'cond_token_dim': 16, 'global_cond_dim': 12, 'local_add_cond_dim': 5, 'timestep_features_dim': 16, 'ff_mult': 2, 'num_memory_tokens': 3, 'use_differential_attention': False},
         lambda: {'hidden_states': R(2, 8, 16), 'timestep': T(2,), 'encoder_hidden_states': R(2, 4, 16), 'global_hidden_states': R(2, 12)}, scale=1.0),
    Case('TransformerTemporalModel', {'num_attention_heads': 8, 'attention_head_dim': 4, 'in_channels': 4, 'num_layers': 1, 'norm_num_groups': 1},
         lambda: {'hidden_states': R(2, 4, 32, 32), 'timestep': T(2, dtype=torch.int64)}),
    Case('UNet1DModel', {'block_out_channels': [8, 8, 16, 16], 'in_channels': 14, 'out_channels': 14, 'time_embedding_type': 'positional', 'use_timestep_embedding': True, 'flip_sin_to_cos': False, 'freq_shift': 1.0, 'out_block_type': 'OutConv1DBlock', 'mid_block_type': 'MidResTemporalBlock1D', 'down_block_types': ['DownResnetBlock1D', 'DownResnetBlock1D', 'DownResnetBlock1D', 'DownResnetBlock1D'], 'up_block_types': ['UpResnetBlock1D', 'UpResnetBlock1D', 'UpResnetBlock1D'], 'act_fn': 'swish'},
         lambda: {'sample': R(4, 14, 16), 'timestep': T(4, dtype=torch.int64)}, sample='sample'),
    Case('UNet2DModel', {'block_out_channels': [4, 8], 'norm_num_groups': 2, 'down_block_types': ['DownBlock2D', 'AttnDownBlock2D'], 'up_block_types': ['AttnUpBlock2D', 'UpBlock2D'], 'attention_head_dim': 3, 'out_channels': 3, 'in_channels': 3, 'layers_per_block': 2, 'sample_size': 32},
         lambda: {'sample': R(4, 3, 32, 32), 'timestep': T(1, dtype=torch.int64)}, sample='sample'),
    Case('UNet3DConditionModel', {'block_out_channels': [4, 8], 'norm_num_groups': 4, 'down_block_types': ['CrossAttnDownBlock3D', 'DownBlock3D'], 'up_block_types': ['UpBlock3D', 'CrossAttnUpBlock3D'], 'cross_attention_dim': 8, 'attention_head_dim': 2, 'out_channels': 4, 'in_channels': 4, 'layers_per_block': 1, 'sample_size': 16},
         lambda: {'sample': R(1, 4, 2, 8, 8), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 4, 8)}, sample='sample'),
    Case('UNetControlNetXSModel', {'sample_size': 16, 'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D'], 'up_block_types': ['CrossAttnUpBlock2D', 'UpBlock2D'], 'block_out_channels': [4, 8], 'cross_attention_dim': 8, 'transformer_layers_per_block': 1, 'num_attention_heads': 2, 'norm_num_groups': 4, 'upcast_attention': False, 'ctrl_block_out_channels': [2, 4], 'ctrl_num_attention_heads': 4, 'ctrl_max_norm_num_groups': 2, 'ctrl_conditioning_embedding_out_channels': [2, 2]},
         lambda: {'sample': R(4, 4, 16, 16), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(4, 4, 8), 'controlnet_cond': R(4, 3, 32, 32), 'conditioning_scale': 1}, sample='sample'),
    Case('UNetMotionModel', {'block_out_channels': [16, 32], 'norm_num_groups': 16, 'down_block_types': ['CrossAttnDownBlockMotion', 'DownBlockMotion'], 'up_block_types': ['UpBlockMotion', 'CrossAttnUpBlockMotion'], 'cross_attention_dim': 16, 'num_attention_heads': 2, 'out_channels': 4, 'in_channels': 4, 'layers_per_block': 1, 'sample_size': 16},
         lambda: {'sample': R(1, 4, 2, 8, 8), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(2, 4, 16)}, sample='sample'),
    Case('UNetSpatioTemporalConditionModel', {'block_out_channels': [32, 64], 'down_block_types': ['CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'], 'up_block_types': ['UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'], 'cross_attention_dim': 32, 'num_attention_heads': 8, 'out_channels': 4, 'in_channels': 4, 'layers_per_block': 1, 'sample_size': 8, 'projection_class_embeddings_input_dim': 96, 'addition_time_embed_dim': 32},
         lambda: {'sample': R(1, 2, 4, 8, 8), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 1, 32), 'added_time_ids': torch.tensor([[6.0, 127.0, 0.02]])}, sample='sample'),
    Case('WanAnimate2Transformer3DModel', {'patch_size': [1, 2, 2], 'text_len': 16, 'in_dim': 36, 'dim': 128, 'ffn_dim': 256, 'freq_dim': 64, 'text_dim': 32, 'out_dim': 16, 'num_heads': 4, 'num_layers': 2, 'cross_attn_norm': True, 'use_img_emb': True},
         lambda: {'hidden_states': [R(16, 2, 4, 4)], 'timestep': T(1,), 'encoder_hidden_states': [R(8, 32)], 'condition_latents': [R(20, 2, 4, 4)], 'encoder_hidden_states_image': R(1, 4, 1280), 'kv_cache': _wan_animate_2_cache(), 'kv_cache_mode': 'extract', 'seq_len': 8, 'offset_grid_sizes': torch.full((1, 3), 2, dtype=torch.int64)}, scale=1.0),
    Case('WanAnimateTransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 12, 'latent_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'image_dim': 16, 'rope_max_seq_len': 32, 'motion_encoder_channel_sizes': {'4': 16, '8': 16, '16': 16}, 'motion_encoder_size': 16, 'motion_style_dim': 8, 'motion_dim': 4, 'motion_encoder_dim': 16, 'face_encoder_hidden_dim': 16, 'face_encoder_num_heads': 2, 'inject_face_latents_blocks': 2},
         lambda: {'hidden_states': R(1, 12, 21, 16, 16), 'timestep': T(1, dtype=torch.int64), 'encoder_hidden_states': R(1, 12, 16), 'encoder_hidden_states_image': R(1, 12, 16), 'pose_hidden_states': R(1, 4, 20, 16, 16), 'face_pixel_values': R(1, 3, 77, 16, 16)}),
    Case('WanTransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 4, 'out_channels': 4, 'text_dim': 16, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 2, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'rope_max_seq_len': 32},
         lambda: {'hidden_states': R(1, 4, 2, 16, 16), 'encoder_hidden_states': R(1, 12, 16), 'timestep': T(1, dtype=torch.int64)}),
    Case('WanVACETransformer3DModel', {'patch_size': [1, 2, 2], 'num_attention_heads': 2, 'attention_head_dim': 12, 'in_channels': 16, 'out_channels': 16, 'text_dim': 32, 'freq_dim': 256, 'ffn_dim': 32, 'num_layers': 4, 'cross_attn_norm': True, 'qk_norm': 'rms_norm_across_heads', 'rope_max_seq_len': 32, 'vace_layers': [0, 2], 'vace_in_channels': 48},
         lambda: {'hidden_states': R(1, 16, 2, 16, 16), 'encoder_hidden_states': R(1, 12, 32), 'control_hidden_states': R(1, 48, 2, 16, 16), 'timestep': T(1, dtype=torch.int64)}),
    Case('ZImageTransformer2DModel', {'all_patch_size': [2], 'all_f_patch_size': [1], 'in_channels': 16, 'dim': 16, 'n_layers': 1, 'n_refiner_layers': 1, 'n_heads': 1, 'n_kv_heads': 2, 'qk_norm': True, 'cap_feat_dim': 16, 'rope_theta': 256.0, 't_scale': 1000.0, 'axes_dims': [8, 4, 4], 'axes_lens': [256, 32, 32]},
         lambda: {'x': [R(16, 1, 16, 16)], 'cap_feats': [R(16, 16)], 't': T(1,)}, sample='x', timestep='t', scale=1.0),
]

CASES += [
    Case("UNet2DConditionModel", {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
                                  "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                                  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "cross_attention_dim": 8,
                                  "attention_head_dim": 4, "norm_num_groups": 4},
         lambda: {"sample": R(1, 4, 8, 8), "timestep": T(1, dtype=torch.int64), "encoder_hidden_states": R(1, 6, 8)},
         sample="sample"),
    Case("HunyuanImageTransformer2DModel", {"in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 8,
                                            "num_layers": 1, "num_single_layers": 1, "num_refiner_layers": 1,
                                            "patch_size": [1, 1], "text_embed_dim": 16, "text_embed_2_dim": 16,
                                            "rope_axes_dim": [4, 4]},
         lambda: {"hidden_states": R(1, 4, 4, 4), "timestep": T(1), "encoder_hidden_states": R(1, 8, 16),
                  "encoder_attention_mask": torch.ones(1, 8), "encoder_hidden_states_2": R(1, 4, 16),
                  "encoder_attention_mask_2": torch.ones(1, 4)}),
    Case("Kandinsky5Transformer3DModel", {"in_visual_dim": 4, "in_text_dim": 16, "in_text_dim2": 8, "time_dim": 16,
                                          "out_visual_dim": 4, "patch_size": [1, 2, 2], "model_dim": 16, "ff_dim": 32,
                                          "num_text_blocks": 1, "num_visual_blocks": 2, "axes_dims": [2, 2, 4],
                                          "visual_cond": False, "attention_type": "regular"},
         lambda: {"hidden_states": R(1, 1, 4, 4, 4), "encoder_hidden_states": R(1, 6, 16), "pooled_projections": R(1, 8),
                  "timestep": T(1), "visual_rope_pos": [torch.arange(1), torch.arange(2), torch.arange(2)],
                  "text_rope_pos": torch.arange(6), "scale_factor": (1.0, 1.0, 1.0)}, scale=1.0),
    Case("Kandinsky3UNet", {"in_channels": 4, "time_embedding_dim": 4, "groups": 2, "attention_head_dim": 4,
                            "layers_per_block": 3, "block_out_channels": [32, 64], "cross_attention_dim": 4,
                            "encoder_hid_dim": 32},
         lambda: {"sample": R(1, 4, 8, 8), "timestep": T(1, dtype=torch.int64), "encoder_hidden_states": R(1, 5, 32),
                  "encoder_attention_mask": torch.ones(1, 5)}, sample="sample"),
    Case("StableAudioDiTModel", {"sample_size": 8, "in_channels": 3, "num_layers": 2, "attention_head_dim": 4,
                                 "num_attention_heads": 2, "num_key_value_attention_heads": 1, "out_channels": 3,
                                 "cross_attention_dim": 4, "time_proj_dim": 8, "global_states_input_dim": 8,
                                 "cross_attention_input_dim": 4},
         lambda: {"hidden_states": R(1, 3, 8), "timestep": T(1), "encoder_hidden_states": R(1, 5, 4),
                  "global_hidden_states": R(1, 1, 8)}, scale=1.0),
    Case("I2VGenXLUNet", {"sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [8, 16],
                          "layers_per_block": 1, "down_block_types": ["CrossAttnDownBlock3D", "DownBlock3D"],
                          "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D"], "cross_attention_dim": 8,
                          "attention_head_dim": 4, "num_attention_heads": 2, "norm_num_groups": 4},
         lambda: {"sample": R(1, 4, 2, 8, 8), "timestep": T(1, dtype=torch.int64), "fps": torch.tensor([16]),
                  "image_latents": R(1, 4, 2, 8, 8), "image_embeddings": R(1, 8), "encoder_hidden_states": R(1, 5, 8)},
         sample="sample"),
]

#: Classes with a tiny config whose units are found, but whose forward inputs are not built here.
NOT_RUN = {
    "CosmosTransformer3DModel": "needs torchvision, which autofr does not install",
    "Kandinsky6Transformer3DModel": "inputs need the pipeline's audio-video RoPE positions",
    "QwenImage21Transformer2DModel": "inputs need the pipeline's VLM image-slot mask",
    "SanaWMLTX2RefinerTransformer3DModel": "inputs need the refiner's KV cache and RoPE tables",
}
#: Tiny configs of the ``NOT_RUN`` classes: unit discovery is still checked on them.
DISCOVERY_ONLY = {
    "Kandinsky6Transformer3DModel": dict(in_visual_dim=4, out_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16,
                                         model_dim=16, ff_dim=32, num_text_blocks=1, num_visual_blocks=2,
                                         axes_dims=(2, 2, 4), visual_cond=False, in_audio_dim=4, out_audio_dim=4),
    "QwenImage21Transformer2DModel": dict(in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
                                          num_attention_heads=2, context_in_dim=16, mlp_ratio=2, axes_dims_rope=(4, 6, 6)),
    "SanaWMLTX2RefinerTransformer3DModel": dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8,
                                                cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
                                                audio_num_attention_heads=2, audio_attention_head_dim=4,
                                                audio_cross_attention_dim=8, num_layers=1, caption_channels=16),
}
#: Classes in which the rule table finds no unit (the table row says why).
UNSUPPORTED = {"UNet1DModel": "its 1-D resnet blocks have no rule (name them in model.units.include)"}
