"""Reusable units: the places in a diffusers denoiser whose output can be cached and reused.

A *unit* is one sub-module whose (expensive) output is computed at some sampling steps and reused
from a cache at the others, following FRDiff:

========================  ============================  ==================================================
model family              unit kind                     what is cached / what is recomputed every step
========================  ============================  ==================================================
UNet (both classes)       ``resnet`` (ResnetBlock2D)    output of ``conv1`` (after norm1, act, resampling);
                                                        time-embedding add, norm2, conv2, shortcut recomputed
UNet2DModel               ``attention`` (Attention      the attention branch (output minus residual);
                          with a residual connection)   added to the *current* residual
UNet2DConditionModel      ``transformer``               the whole inner output of the spatial transformer;
                          (Transformer2DModel)          added to the *current* residual
DiT / PixArt              ``self_attention`` (attn1),   the module output (before the adaLN gate); the
                          ``cross_attention`` (attn2),  norms and gates are recomputed with the current
                          ``feed_forward`` (ff)         timestep
========================  ============================  ==================================================

Units are discovered from the model itself, so a search space built from them fits every model of
a supported family. Each unit carries a stable name (its module path), a kind, a *stage* (used to
group units in a search space) and, once measured, its cost in MACs at the run's input shape.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import torch

from autofr.errors import UnsupportedModelError

logger = logging.getLogger(__name__)

UNIT_KINDS = ("resnet", "attention", "transformer", "self_attention", "cross_attention", "feed_forward")

SUPPORTED_MODEL_CLASSES = (
    "UNet2DModel",
    "UNet2DConditionModel",
    "DiTTransformer2DModel",
    "PixArtTransformer2DModel",
)

_DIT_BRANCHES = {"attn1": "self_attention", "attn2": "cross_attention", "ff": "feed_forward"}


@dataclass
class ReusableUnit:
    """One reusable sub-module of a denoiser.

    Attributes:
        name: module path inside the denoiser (``down_blocks.1.resnets.0``); stable across loads.
        kind: one of :data:`UNIT_KINDS`; decides what is cached (see the module docstring).
        stage: coarse position in the network (``down_blocks.1``, ``mid_block``, ``blocks.early``),
            used to share one reuse interval among neighbouring units in a search space.
        module: the hooked ``nn.Module``.
        macs: multiply-accumulates skipped when the unit is reused, per sample, at the measured
            input shape (``None`` until :func:`measure_unit_macs` ran).
    """

    name: str
    kind: str
    stage: str
    module: torch.nn.Module = field(repr=False)
    macs: int | None = None

    @property
    def cached_module(self) -> torch.nn.Module:
        """The module whose output is cached (``conv1`` for resnet units, the unit itself otherwise)."""
        return self.module.conv1 if self.kind == "resnet" else self.module


def resolve_denoiser(pipe_or_model) -> torch.nn.Module:
    """The denoiser of a diffusers pipeline (``unet``/``transformer``/``denoiser``) or the model itself."""
    if isinstance(pipe_or_model, torch.nn.Module):
        return pipe_or_model
    for attribute in ("unet", "transformer", "denoiser"):
        model = getattr(pipe_or_model, attribute, None)
        if isinstance(model, torch.nn.Module):
            return model
    raise UnsupportedModelError(
        f"{type(pipe_or_model).__name__} has no denoiser: pass a diffusers pipeline with a `unet` or "
        f"`transformer` component, or the model itself ({', '.join(SUPPORTED_MODEL_CLASSES)})"
    )


def _model_family(model: torch.nn.Module) -> str:
    # Match on class names along the MRO so subclasses of the supported diffusers classes work too.
    for cls in type(model).__mro__:
        if cls.__name__ in SUPPORTED_MODEL_CLASSES:
            return cls.__name__
    raise UnsupportedModelError(
        f"{type(model).__name__} is not supported: autofr discovers reusable units in "
        f"{', '.join(SUPPORTED_MODEL_CLASSES)}"
    )


def _stage_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("down_blocks", "up_blocks") and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def discover_units(pipe_or_model) -> list[ReusableUnit]:
    """List the reusable units of a supported denoiser, in execution-independent module order.

    Raises:
        UnsupportedModelError: the model class is not one of :data:`SUPPORTED_MODEL_CLASSES`.
    """
    model = resolve_denoiser(pipe_or_model)
    family = _model_family(model)
    units: list[ReusableUnit] = []
    if family in ("UNet2DModel", "UNet2DConditionModel"):
        claimed: list[str] = []
        for name, module in model.named_modules():
            if any(name.startswith(prefix + ".") for prefix in claimed):
                continue  # inside a unit already (e.g. attention inside a spatial transformer)
            cls = type(module).__name__
            if cls == "ResnetBlock2D":
                units.append(ReusableUnit(name, "resnet", _stage_of(name), module))
            elif cls == "Transformer2DModel":
                units.append(ReusableUnit(name, "transformer", _stage_of(name), module))
                claimed.append(name)
            elif cls == "Attention" and getattr(module, "residual_connection", False):
                units.append(ReusableUnit(name, "attention", _stage_of(name), module))
                claimed.append(name)
    else:  # DiT and PixArt: per transformer block, each branch its own unit
        blocks = list(model.transformer_blocks)
        for index, block in enumerate(blocks):
            third = ("early", "middle", "late")[min(2, 3 * index // max(1, len(blocks)))]
            for attribute, kind in _DIT_BRANCHES.items():
                branch = getattr(block, attribute, None)
                if branch is not None:
                    name = f"transformer_blocks.{index}.{attribute}"
                    units.append(ReusableUnit(name, kind, f"blocks.{third}", branch))
    if not units:
        raise UnsupportedModelError(f"found no reusable units in {type(model).__name__}: nothing to schedule")
    return units


def model_fingerprint(pipe_or_model, units: list[ReusableUnit] | None = None) -> str:
    """A short hash of the denoiser class, its unit names and kinds, and their parameter shapes.

    Two loads of the same architecture share a fingerprint (weights do not enter it); a schedule
    made for another architecture does not match.
    """
    model = resolve_denoiser(pipe_or_model)
    units = units if units is not None else discover_units(model)
    digest = hashlib.sha256(_model_family(model).encode())
    for unit in units:
        shapes = ",".join("x".join(map(str, p.shape)) for p in unit.module.parameters())
        digest.update(f"|{unit.name}:{unit.kind}:{shapes}".encode())
    return digest.hexdigest()[:16]
