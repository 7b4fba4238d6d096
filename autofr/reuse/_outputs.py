"""What a reused unit still computes, and how outputs are taken apart and put back together.

* resnet tails: a resnet block's forward from just after ``conv1``, with ``conv1``'s output given
  (the time-embedding add, norm2, conv2 and the shortcut run with the current inputs);
* outputs: a module's output may be a tensor, a tuple (``return_dict=False``; joint attention
  returns the image and the text stream), a list (per-sample outputs) or a diffusers
  ``BaseOutput``; the helpers here read the sample out of each and rebuild one like it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from autofr.errors import ScheduleError

_INPUT_NAMES = ("hidden_states", "sample", "input_tensor", "x", "visual_embed", "gen_seq")


def first_input(args, kwargs) -> Any:
    """The main input of a module call (the residual of residual units, the sample of a denoiser)."""
    if args:
        return args[0]
    for key in _INPUT_NAMES:
        if key in kwargs:
            return kwargs[key]
    raise ScheduleError("could not find the input tensor of a hooked module; please report this model")


def input_shape(args, kwargs) -> Any:
    """The shape of a denoiser call's main input (the first tensor argument when none is named as usual)."""
    try:
        return shape_of(first_input(args, kwargs))
    except ScheduleError:
        return next((shape_of(v) for v in kwargs.values() if shape_of(v) is not None), None)


def shape_of(value: Any) -> Any:
    """A comparable shape of a tensor or a list of tensors (per-sample inputs)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)):
        return tuple(shape_of(v) for v in value)
    return None


def sample_of(output: Any) -> Any:
    """The denoiser's prediction inside its output (first tuple element, ``.sample``, or the tensor)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple):
        return output[0]
    if dataclasses.is_dataclass(output):
        return getattr(output, dataclasses.fields(output)[0].name)
    return output


def with_sample(template: Any, sample: Any) -> Any:
    """An output shaped like ``template`` (an output object) whose sample is ``sample``."""
    if isinstance(template, tuple):
        return (sample, *template[1:])
    if dataclasses.is_dataclass(template):
        return dataclasses.replace(template, **{dataclasses.fields(template)[0].name: sample})
    return sample


def like_type(output_type: type, sample: Any) -> Any:
    """An output of class ``output_type`` (a tensor, a tuple or a diffusers output class) holding ``sample``."""
    if issubclass(output_type, tuple):
        return (sample,)
    if dataclasses.is_dataclass(output_type):
        return output_type(**{dataclasses.fields(output_type)[0].name: sample})
    return sample


def lerp(start: Any, end: Any, weight: float) -> Any:
    """``start + weight * (end - start)`` for tensors or lists of tensors (score mixing)."""
    if isinstance(start, torch.Tensor):
        return torch.lerp(start, end, weight)
    return type(start)(lerp(s, e, weight) for s, e in zip(start, end))


def subtract(output: Any, residual: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output - residual
    return type(output)(subtract(o, r) for o, r in zip(output, residual))


def add(residual: Any, branch: Any) -> Any:
    if isinstance(residual, torch.Tensor):
        return residual + branch
    return type(residual)(add(r, b) for r, b in zip(residual, branch))


def tensor_versions(value: Any) -> tuple:
    """In-place version counters of the tensors in ``value`` (Python ints: reading them never syncs).
    Tensors made under ``torch.inference_mode`` have none and count as unchanged."""
    if isinstance(value, torch.Tensor):
        return (0,) if value.is_inference() else (value._version,)
    if isinstance(value, (tuple, list)):
        return tuple(v for item in value for v in tensor_versions(item))
    if dataclasses.is_dataclass(value):
        return tensor_versions(tuple(getattr(value, f.name) for f in dataclasses.fields(value)))
    return ()


def clone(value: Any) -> Any:
    """A copy of the tensors in ``value`` (a tensor, tuple or list), the rest as is."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, (tuple, list)):
        return type(value)(clone(v) for v in value)
    return value


def nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(nbytes(v) for v in value)
    if dataclasses.is_dataclass(value):
        return nbytes(tuple(getattr(value, f.name) for f in dataclasses.fields(value)))
    return 0


# --------------------------------------------------------------------------- resnet tails
def _resnet2d_tail(
    block, hidden_states: torch.Tensor, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args, **kwargs
):
    """``ResnetBlock2D.forward`` from just after ``conv1``, with ``conv1``'s output given."""
    if block.upsample is not None:
        input_tensor = block.upsample(input_tensor)
    elif block.downsample is not None:
        input_tensor = block.downsample(input_tensor)
    if block.time_emb_proj is not None and temb is not None:
        if not block.skip_time_act:
            temb = block.nonlinearity(temb)
        temb = block.time_emb_proj(temb)[:, :, None, None]
    if block.time_embedding_norm == "default":
        if temb is not None:
            hidden_states = hidden_states + temb
        hidden_states = block.norm2(hidden_states)
    elif block.time_embedding_norm == "scale_shift":
        time_scale, time_shift = torch.chunk(temb, 2, dim=1)
        hidden_states = block.norm2(hidden_states)
        hidden_states = hidden_states * (1 + time_scale) + time_shift
    else:
        hidden_states = block.norm2(hidden_states)
    hidden_states = block.nonlinearity(hidden_states)
    hidden_states = block.dropout(hidden_states)
    hidden_states = block.conv2(hidden_states)
    if block.conv_shortcut is not None:
        input_tensor = block.conv_shortcut(input_tensor)
    return (input_tensor + hidden_states) / block.output_scale_factor


def _temporal_resnet_tail(
    block, hidden_states: torch.Tensor, input_tensor: torch.Tensor, temb: torch.Tensor, *args, **kwargs
):
    """``TemporalResnetBlock.forward`` from just after ``conv1``."""
    if block.time_emb_proj is not None:
        temb = block.time_emb_proj(block.nonlinearity(temb))[:, :, :, None, None].permute(0, 2, 1, 3, 4)
        hidden_states = hidden_states + temb
    hidden_states = block.norm2(hidden_states)
    hidden_states = block.nonlinearity(hidden_states)
    hidden_states = block.dropout(hidden_states)
    hidden_states = block.conv2(hidden_states)
    if block.conv_shortcut is not None:
        input_tensor = block.conv_shortcut(input_tensor)
    return input_tensor + hidden_states


_TAILS = {"ResnetBlock2D": _resnet2d_tail, "TemporalResnetBlock": _temporal_resnet_tail}


def resnet_tail(block, conv1_output: torch.Tensor, args, kwargs) -> torch.Tensor:
    """Run ``block`` from ``conv1``'s (cached) output on, with the call's current inputs."""
    tail = next(_TAILS[c.__name__] for c in type(block).__mro__ if c.__name__ in _TAILS)
    if not args:
        args = (kwargs.pop("input_tensor"),) if "input_tensor" in kwargs else ()
    return tail(block, conv1_output, *args, **kwargs)
