"""Example inputs of a denoiser forward: what the cost model measures MACs and latency on.

Two sources, both batch 1:

* built from the model's config, for the families whose call the cost model knows (the four
  original ones, SD3, Flux-shaped transformers): :func:`example_inputs`;
* captured from one real pipeline call (:func:`capture_inputs`): the exact arguments the pipeline
  hands its denoiser (prompt embeddings, packed latents, position ids, guidance, ...), for every
  other denoiser. Captured inputs are kept on the denoiser instance, so later
  ``example_inputs(denoiser)`` calls (e.g. the latency calibration) return them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from autofr.errors import UnsupportedModelError

logger = logging.getLogger(__name__)

_CAPTURED_ATTRIBUTE = "_autofr_example_inputs"


def example_inputs(model: torch.nn.Module, sample_size: int | tuple[int, int] | None = None) -> dict:
    """Batch-1 keyword inputs of the right shapes for a denoiser, built from its config.

    ``sample_size`` is the latent height/width (for Flux-shaped models: the packed token grid side).
    Inputs captured with :func:`capture_inputs` take precedence when no ``sample_size`` is given.

    Raises:
        UnsupportedModelError: the family is not known here and no inputs were captured.
    """
    from autofr.reuse.units import _model_family

    captured = model.__dict__.get(_CAPTURED_ATTRIBUTE)
    if captured is not None and sample_size is None:
        return dict(captured)
    config = model.config
    family = _model_family(model)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype

    def randn(*shape):
        return torch.randn(*shape, device=device, dtype=dtype)

    size = sample_size if sample_size is not None else config.get("sample_size") or 64
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    inputs: dict = {"timestep": torch.tensor([500], device=device)}
    if family == "UNet2DModel":
        inputs["sample"] = randn(1, config.in_channels, height, width)
        if config.num_class_embeds is not None or config.class_embed_type is not None:
            inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    elif family == "UNet2DConditionModel":
        inputs["sample"] = randn(1, config.in_channels, height, width)
        dim = config.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        inputs["encoder_hidden_states"] = randn(1, 77, dim)
        if config.addition_embed_type == "text_time":
            text_dim = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
            inputs["added_cond_kwargs"] = {
                "text_embeds": randn(1, text_dim),
                "time_ids": torch.zeros(1, 6, device=device, dtype=dtype),
            }
        if config.num_class_embeds is not None:
            inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    elif family == "DiTTransformer2DModel":
        inputs["hidden_states"] = randn(1, config.in_channels, height, width)
        inputs["class_labels"] = torch.zeros(1, dtype=torch.long, device=device)
    elif family == "PixArtTransformer2DModel":
        inputs["hidden_states"] = randn(1, config.in_channels, height, width)
        inputs["encoder_hidden_states"] = randn(1, 120, config.caption_channels)
        if config.use_additional_conditions:
            inputs["added_cond_kwargs"] = {
                "resolution": torch.tensor([[height * 8.0, width * 8.0]], device=device, dtype=dtype),
                "aspect_ratio": torch.tensor([[1.0]], device=device, dtype=dtype),
            }
        else:
            inputs["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    elif family == "SD3Transformer2DModel":
        inputs["hidden_states"] = randn(1, config.in_channels, height, width)
        inputs["encoder_hidden_states"] = randn(1, 333, config.joint_attention_dim)  # 77 CLIP + 256 T5 tokens
        inputs["pooled_projections"] = randn(1, config.pooled_projection_dim)
    elif family == "FluxTransformer2DModel":
        tokens, text_tokens = height * width, 512
        inputs["timestep"] = torch.tensor([0.5], device=device, dtype=dtype)  # Flux takes t / 1000
        inputs["hidden_states"] = randn(1, tokens, config.in_channels)
        inputs["encoder_hidden_states"] = randn(1, text_tokens, config.joint_attention_dim)
        inputs["pooled_projections"] = randn(1, config.pooled_projection_dim)
        rows = torch.arange(tokens, device=device) // width
        inputs["img_ids"] = torch.stack(
            [torch.zeros_like(rows), rows, torch.arange(tokens, device=device) % width], 1
        ).to(dtype)
        inputs["txt_ids"] = torch.zeros(text_tokens, 3, device=device, dtype=dtype)
        if config.guidance_embeds:
            inputs["guidance"] = torch.tensor([3.5], device=device, dtype=dtype)
    else:
        raise UnsupportedModelError(
            f"autofr cannot build example inputs for {type(model).__name__} from its config: capture them from "
            "one pipeline call with autofr.inputs.capture_inputs(pipe, protocol) (measure_cost(pipe, protocol=...) does)"
        )
    return inputs


def capture_inputs(pipe: Any, protocol: Any) -> dict:
    """The keyword inputs of the denoiser's first call in one 1-sample pipeline call under
    ``protocol`` (an :class:`autofr.evaluation.EvalProtocol`), cut to batch 1 and kept on the
    denoiser for later :func:`example_inputs` calls."""
    import inspect

    from autofr.evaluation import generate
    from autofr.reuse.units import resolve_denoiser

    model = resolve_denoiser(pipe)
    recorded: dict = {}

    def record(module, args, kwargs):
        if not recorded:
            names = list(inspect.signature(type(module).forward).parameters)[1:]
            recorded.update(dict(zip(names, args)), **kwargs)
        raise _Captured

    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        generate(
            pipe,
            protocol.replace(num_samples=1, batch_size=1, num_inference_steps=min(2, protocol.num_inference_steps)),
        )
    except _Captured:
        pass
    finally:
        handle.remove()
    if not recorded:
        raise UnsupportedModelError(f"{type(pipe).__name__} never called its denoiser: cannot measure its cost")
    sample = recorded.get("hidden_states", recorded.get("sample"))
    batch = sample.shape[0] if isinstance(sample, torch.Tensor) else len(sample) if isinstance(sample, list) else 1
    inputs = {key: _first_sample(value, batch) for key, value in recorded.items() if key != "return_dict"}
    model.__dict__[_CAPTURED_ATTRIBUTE] = inputs
    logger.debug("captured %s inputs from %s: %s", type(model).__name__, type(pipe).__name__, sorted(inputs))
    return dict(inputs)


class _Captured(Exception):
    """Stops the pipeline once the denoiser's inputs are recorded."""


def _first_sample(value: Any, batch: int) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value[:1].clone() if batch > 1 and value.dim() > 0 and value.shape[0] == batch else value.clone()
    if isinstance(value, dict):
        return {key: _first_sample(item, batch) for key, item in value.items()}
    if isinstance(value, list) and batch > 1 and len(value) == batch:
        return [_first_sample(item, 1) for item in value[:1]]
    return value


def batched_inputs(inputs: dict, batch: int) -> dict:
    """``inputs`` (batch 1) repeated to ``batch`` along dim 0 (tensors without a batch dim stay)."""

    def grow(value):
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == 1:
            return value.expand(batch, *value.shape[1:]).contiguous()
        if isinstance(value, dict):
            return {k: grow(v) for k, v in value.items()}
        if isinstance(value, list) and len(value) == 1:
            return value * batch
        return value

    return {key: grow(value) for key, value in inputs.items()}
