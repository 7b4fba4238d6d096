"""Reusable units: the places in a diffusers denoiser whose output can be cached and reused.

A *unit* is one sub-module whose (expensive) output is computed at some sampling steps and reused
from a cache at the others, while the cheap, timestep-dependent work around it still runs
(FRDiff). Units are found in the model itself by a short rule table, applied top-down over the
module tree (a module that becomes a unit is not searched further):

=====================  ==========================================  ==============================================
kind                   what the rule matches                       what is cached / recomputed every step
=====================  ==========================================  ==============================================
``resnet``             ``ResnetBlock2D``, ``TemporalResnetBlock``   ``conv1``'s output (after norm1, act,
                                                                   resampling); time-embedding add, norm2, conv2,
                                                                   shortcut are recomputed
``transformer``        a UNet's spatial / temporal transformer     its inner output (output minus input), added
                       (``Transformer2DModel``, ``TransformerTem-  to the *current* input
                       poralModel``, ``TransformerSpatioTemporal-
                       Model``, ``AnimateDiffTransformer3D``)
``temporal_conv``      ``TemporalConvLayer`` (3-D UNets)          its inner output, added to the current input
``attention``          ``Attention`` with a residual connection    the attention branch, added to the current
                       (``UNet2DModel``)                           residual
``self_attention``     per transformer block, each attention       the module output, before the block's
``cross_attention``    module (``Attention``, every                adaLN modulation and gate, which are
``joint_attention``    ``AttentionModuleMixin``, ``*Attention``);  recomputed with the current timestep; a
                       kind from its name: ``attn2``/``cross``     dual-stream (joint) attention caches both the
                       -> cross, added text projections -> joint   image and the text stream it returns
``feed_forward``       per block, its feed-forward (``FeedForward``  the module output, before the gate; in
``context_feed_forward``  or a child named ``ff``/``ffn``/``mlp``/    single-stream blocks (attention beside an
                       ``feed_forward``...; ``ff_context``/``txt_*``  MLP, Flux) the MLP's input projection
                       -> context) and single-stream ``proj_mlp``  ``proj_mlp``; ``proj_out`` still runs
=====================  ==========================================  ==============================================

Besides these *sub-layer* units, two coarser levels hold whole blocks (``levels`` of
:func:`discover_units`; a reused outer unit skips everything inside it):

* ``block``: one transformer block of the model's block lists (``transformer_blocks.3``), cached as
  its residual on every stream (the image stream and, in dual-stream blocks, the text stream); for
  UNets one down / mid / up stage (``down_blocks.1``), cached as its output, so reusing the deep
  stages is DeepCache. Consecutive blocks with one schedule share one residual per stream.
* ``stack``: every block of those lists as one residual unit (UNets: every stage), so a reused step
  runs only the embedders and the output head (MagCache, TeaCache, FirstBlockCache).

Block lists are the denoiser's top-level ``ModuleList``s of transformer blocks (in module order) and
a UNet's ``down_blocks``, ``mid_block`` and ``up_blocks``; ``model.units.blocks`` names them for
models the table does not know. How a block's streams enter and leave it comes from diffusers'
``TransformerBlockRegistry`` where it knows the class, else from the block's signature.

User rules (:class:`UnitRules`: ``include`` / ``exclude`` patterns on module paths and per-kind
overrides) extend or replace the table, so a model it does not know can be scheduled without code.

Each unit carries a stable name (its module path), a kind, a *stage* (used to group units in a
search space) and, once measured, its cost in MACs at the run's input shape.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from autofr.errors import ConfigError, UnsupportedModelError

logger = logging.getLogger(__name__)

UNIT_KINDS = (
    "resnet",
    "attention",
    "transformer",
    "temporal_conv",
    "self_attention",
    "cross_attention",
    "joint_attention",
    "feed_forward",
    "context_feed_forward",
)
#: Unit levels, outermost first: the whole block stack, one block (or UNet stage), a sub-layer.
LEVELS = ("stack", "block", "sublayer")
#: The default of :func:`discover_units`: the sub-layer units (the ones schedule fingerprints name).
SUBLAYER = ("sublayer",)
STACK_UNIT = "stack"
#: How a unit's hook caches: ``conv1`` (a resnet's conv1 output, the block's tail recomputed),
#: ``residual`` (output minus input, added to the current input) or ``output`` (the module output).
CACHE_MODES = ("conv1", "residual", "output")
_KIND_MODES = {"resnet": "conv1", "attention": "residual", "transformer": "residual", "temporal_conv": "residual"}

#: The classes whose units and fingerprints predate the rule table (kept exactly as they were).
SUPPORTED_MODEL_CLASSES = ("UNet2DModel", "UNet2DConditionModel", "DiTTransformer2DModel", "PixArtTransformer2DModel")

RESNET_CLASSES = ("ResnetBlock2D", "TemporalResnetBlock")
RESIDUAL_TRANSFORMER_CLASSES = (
    "Transformer2DModel",
    "TransformerTemporalModel",
    "TransformerSpatioTemporalModel",
    "AnimateDiffTransformer3D",
)
_FF_NAME = re.compile(r"^(ff|ffn|mlp|feed_forward|ff_[a-z0-9]+|[a-z0-9]+_(ff|ffn|mlp)|mlp_[a-z0-9_]+)$")
_CONTEXT_FF_NAME = re.compile(r"(context|txt|text|caption)|^ff_t$")
_FF_CLASS = re.compile(r"(FeedForward|MLP|Mlp|SwiGLU|GLUMBConv|GLUMBTempConv)")
_PREPARING_LIST = re.compile(r"(refiner|context|text|caption)")
#: Block lists that feed a control branch into the main blocks (VACE, ControlNet-like): not blocks here.
_CONTROL_LIST = re.compile(r"(vace|control)")
_UNITS_SETTING = "model.units.include (API: discover_units(model, rules={'include': {PATTERN: KIND}}))"


@dataclass
class ReusableUnit:
    """One reusable sub-module of a denoiser.

    Attributes:
        name: module path inside the denoiser (``down_blocks.1.resnets.0``); stable across loads.
        kind: one of :data:`UNIT_KINDS` or a user kind; decides the search-space group by kind.
        stage: coarse position in the network (``down_blocks.1``, ``mid_block``, ``blocks.early``),
            used to share one reuse interval among neighbouring units in a search space.
        module: the hooked ``nn.Module`` (an outer unit: its last block).
        macs: multiply-accumulates skipped when the unit is reused, per sample, at the measured
            input shape (``None`` until :func:`autofr.cost.measure_cost` ran).
        mode: what is cached, one of :data:`CACHE_MODES` (from the kind unless a rule says otherwise).
        blocks: outer units (``stack``, ``block``): the paths of the blocks they span, in call order.
        block_modules: the modules of ``blocks``.
    """

    name: str
    kind: str
    stage: str
    module: torch.nn.Module = field(repr=False)
    macs: int | None = None
    mode: str = ""
    blocks: tuple[str, ...] = ()
    block_modules: tuple[torch.nn.Module, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.mode:
            self.mode = _KIND_MODES.get(self.kind, "output")

    @property
    def level(self) -> str:
        """``stack``, ``block`` or ``sublayer`` (see :data:`LEVELS`)."""
        return self.kind if self.kind in ("stack", "block") else "sublayer"

    @property
    def cached_module(self) -> torch.nn.Module:
        """The module whose output is cached (``conv1`` for resnet units, the unit itself otherwise)."""
        return self.module.conv1 if self.mode == "conv1" else self.module


@dataclass(frozen=True)
class UnitRules:
    """User rules for unit discovery (config key ``model.units``).

    Patterns match dotted module paths inside the denoiser: shell-style globs (``*`` also crosses
    dots: ``transformer_blocks.*.attn``) or, with a ``re:`` prefix, full-match regular expressions.

    Attributes:
        include: ``{pattern: kind}``: every matching module becomes a unit of that kind (checked
            before the table; a list of patterns gives kind ``module``). Unknown kinds cache the
            module output unless ``kinds`` sets their mode.
        exclude: patterns of modules in which the table finds no units (``include`` still can).
        kinds: per-kind overrides: ``false`` drops every unit of the kind, a cache mode
            (``output``/``residual``) sets how units of that kind are cached, ``true`` keeps them.
        table: ``False`` turns the built-in rule table off: only ``include`` finds units.
        blocks: patterns of the modules that are the model's blocks, in call order (``layers.*``):
            they replace the block lists the table finds (``block`` and ``stack`` units).
    """

    include: Mapping[str, str] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    kinds: Mapping[str, Any] = field(default_factory=dict)
    table: bool = True
    blocks: tuple[str, ...] = ()

    @classmethod
    def coerce(cls, rules: UnitRules | Mapping | None) -> UnitRules:
        """A :class:`UnitRules` from itself, a mapping (a config node) or ``None`` (the table only)."""
        if rules is None:
            return cls()
        if isinstance(rules, cls):
            return rules
        if hasattr(rules, "items") and not isinstance(rules, Mapping):  # an OmegaConf node
            from omegaconf import OmegaConf

            rules = OmegaConf.to_container(rules, resolve=True)
        if not isinstance(rules, Mapping):
            raise ConfigError(f"model.units must be a mapping with include/exclude/kinds/table, not {rules!r}")
        unknown = sorted(set(rules) - {"include", "exclude", "kinds", "table", "blocks"})
        if unknown:
            raise ConfigError(f"model.units: unknown key {unknown[0]!r}; use include, exclude, kinds, table, blocks")
        include = rules.get("include") or {}
        if isinstance(include, (list, tuple)):
            include = {str(pattern): "module" for pattern in include}
        if not isinstance(include, Mapping):
            raise ConfigError("model.units.include must map module-path patterns to kinds (or list patterns)")
        exclude = rules.get("exclude") or ()
        if isinstance(exclude, str):
            exclude = (exclude,)
        kinds = dict(rules.get("kinds") or {})
        for kind, value in kinds.items():
            if not (isinstance(value, bool) or value in ("output", "residual")):
                raise ConfigError(f"model.units.kinds.{kind}={value!r}: use true, false, output or residual")
        blocks = rules.get("blocks") or ()
        if isinstance(blocks, str):
            blocks = (blocks,)
        return cls(
            {str(k): str(v) for k, v in include.items()},
            tuple(str(p) for p in exclude),
            kinds,
            bool(rules.get("table", True)),
            tuple(str(p) for p in blocks),
        )

    @property
    def is_default(self) -> bool:
        return not (self.include or self.exclude or self.kinds or self.blocks) and self.table


_RULES_ATTRIBUTE = "_autofr_unit_rules"


def attach_unit_rules(pipe_or_model, rules: UnitRules | Mapping | None) -> None:
    """Make ``rules`` the default of every later :func:`discover_units` on this denoiser instance
    (so ``apply_schedule``, ``ReuseSchedule.uniform`` and the cost model all see the same units)."""
    model = resolve_denoiser(pipe_or_model)
    coerced = UnitRules.coerce(rules)
    if coerced.is_default:
        model.__dict__.pop(_RULES_ATTRIBUTE, None)
    else:
        discover_units(model, coerced)  # fail now on rules that do not fit the model
        model.__dict__[_RULES_ATTRIBUTE] = coerced


def resolve_denoiser(pipe_or_model) -> torch.nn.Module:
    """The denoiser of a diffusers pipeline (``unet``/``transformer``/``denoiser``) or the model itself."""
    if isinstance(pipe_or_model, torch.nn.Module):
        return pipe_or_model
    for attribute in ("unet", "transformer", "denoiser", "prior"):
        model = getattr(pipe_or_model, attribute, None)
        if isinstance(model, torch.nn.Module):
            return model
    raise UnsupportedModelError(
        f"{type(pipe_or_model).__name__} has no denoiser: pass a diffusers pipeline with a `unet` or "
        "`transformer` component, or the denoiser itself"
    )


def _model_family(model: torch.nn.Module) -> str:
    """The class name that enters fingerprints: a supported base class for subclasses, else the class."""
    for cls in type(model).__mro__:
        if cls.__name__ in SUPPORTED_MODEL_CLASSES:
            return cls.__name__
    return type(model).__name__


# --------------------------------------------------------------------------- the rule table
def _is_attention(module: torch.nn.Module) -> bool:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    if isinstance(module, (Attention, AttentionModuleMixin)):
        return True
    return type(module).__name__.endswith("Attention") and any(True for _ in module.parameters())


def _is_feed_forward(name: str, module: torch.nn.Module) -> bool:
    from diffusers.models.attention import FeedForward

    if isinstance(module, FeedForward):
        return True
    if not any(True for _ in module.parameters()) or "norm" in name:
        return False
    return bool(_FF_NAME.match(name)) or bool(_FF_CLASS.search(type(module).__name__))


def _attention_kind(name: str, module: torch.nn.Module, block: torch.nn.Module | None) -> str:
    joint = getattr(module, "added_kv_proj_dim", None) is not None or getattr(module, "add_q_proj", None) is not None
    if block is not None and not joint:
        joint = any(
            _CONTEXT_FF_NAME.search(child) and _is_feed_forward(child, m) for child, m in block.named_children()
        )
    if joint:
        return "joint_attention"
    if "attn2" in name or "cross" in name.lower() or "_to_" in name or "Cross" in type(module).__name__:
        return "cross_attention"
    return "self_attention"


def _table_kind(name: str, module: torch.nn.Module) -> str | None:
    """The kind the rule table gives a module on its own (before its block is looked at)."""
    cls = type(module).__name__
    if cls in RESNET_CLASSES:
        return "resnet"
    if cls in RESIDUAL_TRANSFORMER_CLASSES and name:
        return "transformer"
    if cls == "TemporalConvLayer":
        return "temporal_conv"
    if cls == "Attention" and getattr(module, "residual_connection", False):
        return "attention"
    return None


def _block_units(block_name: str, block: torch.nn.Module) -> list[tuple[str, str, torch.nn.Module]]:
    """(path, kind, module) of the attention and feed-forward units of one transformer block."""
    children = list(block.named_children())
    if not any(_is_attention(m) for _, m in children) or isinstance(block, torch.nn.ModuleList):
        return []
    prefix = f"{block_name}." if block_name else ""
    found = []
    names = {name for name, _ in children}
    for name, module in children:
        kind = _table_kind(name, module)
        if kind is not None:  # a residual attention inside a block caches its branch, not its output
            found.append((prefix + name, kind, module))
        elif _is_attention(module):
            found.append((prefix + name, _attention_kind(name, module, block), module))
        elif name == "proj_mlp" and "proj_out" in names:  # single-stream block: attention beside an MLP
            found.append((prefix + name, "feed_forward", module))
        elif _is_feed_forward(name, module):
            kind = "context_feed_forward" if _CONTEXT_FF_NAME.search(name) else "feed_forward"
            found.append((prefix + name, kind, module))
    return found


def _stage_of(name: str) -> str:
    parts = name.split(".")
    if parts[0] in ("down_blocks", "up_blocks") and len(parts) > 1:
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _block_stage(name: str, model: torch.nn.Module) -> str:
    """``<list>.early|middle|late`` by the block's index in its list (``blocks`` for the main list)."""
    parts = name.split(".")
    for position, part in enumerate(parts):
        if part.isdigit():
            container = model.get_submodule(".".join(parts[:position])) if position else model
            index, size = int(part), len(container) if hasattr(container, "__len__") else 1
            third = ("early", "middle", "late")[min(2, 3 * index // max(1, size))]
            prefix = ".".join(parts[:position])
            return f"{'blocks' if prefix in ('transformer_blocks', 'blocks') else prefix}.{third}"
    return parts[0]


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    return fnmatch.fnmatchcase(name, pattern)


def discover_units(
    pipe_or_model, rules: UnitRules | Mapping | None = None, levels: tuple[str, ...] = SUBLAYER
) -> list[ReusableUnit]:
    """List the reusable units of a denoiser: the ``levels`` asked for (:data:`LEVELS`), outermost
    first (the stack, the blocks, then the sub-layers, each in module order).

    ``rules`` (a :class:`UnitRules` or a mapping like the ``model.units`` config) adds, removes or
    replaces what the rule table finds; by default the rules attached with :func:`attach_unit_rules`
    apply, else the table alone. A model without block lists has no ``stack`` or ``block`` units.

    Raises:
        UnsupportedModelError: no unit was found (the message names the setting to use).
        ConfigError: a user pattern matches no module, or the rules are malformed.
    """
    model = resolve_denoiser(pipe_or_model)
    rules = UnitRules.coerce(rules if rules is not None else model.__dict__.get(_RULES_ATTRIBUTE))
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ConfigError(f"unit level {unknown[0]!r} is unknown: use {', '.join(LEVELS)}")
    outer = _outer_units(model, rules, levels) if set(levels) - {"sublayer"} else []
    if "sublayer" not in levels:
        return outer
    return outer + _sublayer_units(model, rules)


def _sublayer_units(model: torch.nn.Module, rules: UnitRules) -> list[ReusableUnit]:
    found: list[tuple[str, str, torch.nn.Module, str | None]] = []  # name, kind, module, mode override
    claimed: list[str] = []  # units: nothing inside them is searched
    excluded: list[str] = []  # the table finds nothing inside these
    used = {pattern: False for pattern in (*rules.include, *rules.exclude)}
    in_block: set[str] = set()
    for name, module in model.named_modules():
        if any(name == c or name.startswith(c + ".") for c in claimed):
            continue
        kind = next((k for p, k in rules.include.items() if name and _matches(p, name)), None)
        if kind is not None:
            used[next(p for p in rules.include if _matches(p, name))] = True
            found.append((name, kind, module, None))
            claimed.append(name)
            continue
        for pattern in rules.exclude:
            if name and _matches(pattern, name):
                used[pattern] = True
                excluded.append(name)
        if not rules.table or name in in_block or any(name == e or name.startswith(e + ".") for e in excluded):
            continue
        kind = _table_kind(name, module)
        if kind is not None:
            found.append((name, kind, module, None))
            claimed.append(name)
            continue
        for unit_name, unit_kind, unit_module in _block_units(name, module):
            if not any(unit_name == e or unit_name.startswith(e + ".") for e in excluded):
                found.append((unit_name, unit_kind, unit_module, None))
                claimed.append(unit_name)
            in_block.add(unit_name)
    unused = [pattern for pattern, hit in used.items() if not hit]
    if unused:
        setting = "include" if unused[0] in rules.include else "exclude"
        raise ConfigError(
            f"model.units.{setting} pattern {unused[0]!r} matches no module of {type(model).__name__}: "
            "patterns match dotted module paths such as 'transformer_blocks.0.attn'"
        )
    order = {name: index for index, (name, _) in enumerate(model.named_modules())}
    found.sort(key=lambda entry: order[entry[0]])
    units = []
    for name, kind, module, _ in found:
        override = rules.kinds.get(kind, True)
        if override is False:
            continue
        stage = (
            _stage_of(name)
            if name.split(".")[0] in ("down_blocks", "up_blocks", "mid_block")
            else _block_stage(name, model)
        )
        mode = override if isinstance(override, str) else ""
        if not mode and getattr(module, "residual_connection", False) is True:
            mode = "residual"  # the module adds its own input back: cache only the branch
        units.append(ReusableUnit(name, kind, stage, module, mode=mode))
    if not units:
        raise UnsupportedModelError(
            f"found no reusable units in {type(model).__name__}: the rule table finds resnet, attention and "
            f"feed-forward blocks (as in {', '.join(SUPPORTED_MODEL_CLASSES)}, Flux, SD3, Wan, ...) and none here; "
            f"name the modules to reuse in {_UNITS_SETTING}"
        )
    return units


def model_fingerprint(pipe_or_model, units: list[ReusableUnit] | None = None) -> str:
    """A short hash of the denoiser class, its sub-layer unit names and kinds, and their parameter shapes.

    Two loads of the same architecture share a fingerprint (weights do not enter it); a schedule
    made for another architecture does not match. Outer units (blocks, the stack) are made of the
    same modules and do not enter it, so fingerprints of format-1 schedules still match.
    """
    model = resolve_denoiser(pipe_or_model)
    units = [u for u in units or () if u.level == "sublayer"] or discover_units(model)
    digest = hashlib.sha256(_model_family(model).encode())
    for unit in units:
        shapes = ",".join("x".join(map(str, p.shape)) for p in unit.module.parameters())
        digest.update(f"|{unit.name}:{unit.kind}:{shapes}".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- blocks and the stack
def _is_transformer_block(module: torch.nn.Module) -> bool:
    return any(_is_attention(child) for child in module.modules())


def block_lists(model: torch.nn.Module, rules: UnitRules | None = None) -> tuple[str, list[str]]:
    """``(mode, block paths in call order)``: a UNet's stages (``output``: each caches its output) or
    the transformer blocks of the model's top-level block lists (``residual``); user ``blocks``
    patterns replace the table. Empty when the model has no blocks."""
    rules = rules or UnitRules()
    if rules.blocks:
        used = dict.fromkeys(rules.blocks, False)
        paths = []
        for name, _ in model.named_modules():
            hits = [pattern for pattern in rules.blocks if name and _matches(pattern, name)]
            if hits and not any(name.startswith(p + ".") for p in paths):
                used[hits[0]] = True
                paths.append(name)
        missing = [pattern for pattern, hit in used.items() if not hit]
        if missing:
            raise ConfigError(
                f"model.units.blocks pattern {missing[0]!r} matches no module of {type(model).__name__}: "
                "name the model's blocks, e.g. 'layers.*'"
            )
        return "residual", paths
    if not rules.table:
        return "residual", []
    down, up = getattr(model, "down_blocks", None), getattr(model, "up_blocks", None)
    if isinstance(down, torch.nn.ModuleList) and isinstance(up, torch.nn.ModuleList) and len(down) and len(up):
        stages = [f"down_blocks.{i}" for i in range(len(down))]
        if isinstance(getattr(model, "mid_block", None), torch.nn.Module):
            stages.append("mid_block")
        return "output", stages + [f"up_blocks.{i}" for i in range(len(up))]
    paths = []
    for name, child in model.named_children():
        if _CONTROL_LIST.search(name):
            continue
        if isinstance(child, torch.nn.ModuleList) and len(child) and all(_is_transformer_block(b) for b in child):
            paths += [f"{name}.{index}" for index in range(len(child))]
    return "residual", paths


def _stack_paths(paths: list[str]) -> list[str]:
    """The blocks of the main stack: lists that only prepare one stream (``noise_refiner``,
    ``context_refiner``, ``text_transformer_blocks``) run before the streams meet and stay outside."""
    main = [path for path in paths if not _PREPARING_LIST.search(path.rsplit(".", 1)[0])]
    return main or paths


def _outer_units(model: torch.nn.Module, rules: UnitRules, levels: tuple[str, ...]) -> list[ReusableUnit]:
    mode, paths = block_lists(model, rules)
    if not paths:
        return []
    modules = {path: model.get_submodule(path) for path in paths}
    units = []
    # spatial and temporal lists called in turn (Latte) with reshapes between: no one residual spans them
    interleaved = not rules.blocks and any(p.startswith("temporal_") for p in paths) and len(paths) > 1
    if "stack" in levels and rules.kinds.get("stack", True) is not False and not interleaved:
        stack = paths if rules.blocks else _stack_paths(paths)
        members = tuple(modules[path] for path in stack)
        units.append(
            ReusableUnit(
                STACK_UNIT, "stack", "stack", members[-1], mode=mode, blocks=tuple(stack), block_modules=members
            )
        )
    if "block" in levels and rules.kinds.get("block", True) is not False:
        for path, module in modules.items():
            stage = path if mode == "output" else _block_stage(path, model)
            units.append(
                ReusableUnit(path, "block", stage, module, mode=mode, blocks=(path,), block_modules=(module,))
            )
    return units


def unit_parents(units: list[ReusableUnit]) -> dict[str, tuple[str, ...]]:
    """Per unit, the units that enclose it, outermost first (a reused outer unit skips its inner ones)."""
    outer = [u for u in units if u.level != "sublayer"]
    parents: dict[str, tuple[str, ...]] = {}
    for unit in units:
        inside = []
        for candidate in outer:
            if candidate is unit or (candidate.level == "block" and unit.level == "stack"):
                continue
            if unit.level != "sublayer" and candidate.level == "block":
                continue
            paths = unit.blocks or (unit.name,)
            if all(any(p == b or p.startswith(b + ".") for b in candidate.blocks) for p in paths):
                inside.append(candidate.name)
        parents[unit.name] = tuple(inside)
    return parents
