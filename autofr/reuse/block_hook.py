"""Block and stack units: a span of consecutive blocks that computes, or is skipped with a cached residual.

A *span* is what one outer unit (see :mod:`autofr.reuse.units`) caches: the whole block stack, or a
run of consecutive blocks that share one schedule (so N neighbouring blocks with one schedule hold
one residual per stream, not N). One :class:`BlockHook` sits on every block of a span; a block in
several spans (a block inside the stack) has one hook that knows all of them, outermost first.

At a step where a span computes, its blocks run as usual (their sub-layer units follow their own
schedules); if a later step will reuse, the first block records its input streams and the last one
stores ``output - input`` per stream (the image stream and, in dual-stream blocks, the text stream).
At a step where it reuses, the first block returns ``input + residual`` at once and every later
block of the span hands its input straight back: nothing inside the span runs. UNet stages have no
residual (their shape changes): each stage of a span caches its own output and returns it.

How a block's streams enter and leave it (argument names, tuple positions) comes from diffusers'
``TransformerBlockRegistry`` where it knows the class; otherwise the first argument is the image
stream, ``encoder_hidden_states`` the text stream, and positions in a returned tuple are matched by
shape at the first call. Every decision reads plain Python lists indexed by the step: the hot path
has no host-device synchronisation.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from diffusers.hooks import ModelHook

from autofr.reuse import _outputs

logger = logging.getLogger(__name__)


def _registry_metadata(block_class: type):
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry
    except ImportError:  # pragma: no cover - diffusers without the registry
        return None
    for cls in block_class.__mro__:
        try:
            return TransformerBlockRegistry.get(cls)
        except (ValueError, KeyError):
            continue
    return None


class BlockSignature:
    """Where a block's streams enter (argument names) and leave it (positions in its output).

    The image stream (``hidden``) is every block's; dual-stream blocks add the text stream, audio-video
    blocks an audio stream. Learned at the block's first call (:meth:`learn`): the registry's
    positions where the shapes agree with them, else by matching each output's shape to an input's.
    """

    def __init__(self, block: torch.nn.Module) -> None:
        parameters = list(inspect.signature(type(block).forward).parameters)[1:]
        self.positions = {name: index for index, name in enumerate(parameters)}
        metadata = _registry_metadata(type(block))
        named = metadata is not None and metadata.hidden_states_argument_name in self.positions
        self.hidden_name = metadata.hidden_states_argument_name if named else None
        if self.hidden_name is None:
            self.hidden_name = "hidden_states" if "hidden_states" in self.positions else parameters[0]
        encoder_name = metadata.encoder_hidden_states_argument_name if named else "encoder_hidden_states"
        self.encoder_name = encoder_name if encoder_name in self.positions else None
        self.registry = (
            (metadata.return_hidden_states_index, metadata.return_encoder_hidden_states_index)
            if metadata is not None
            else None
        )
        self.outputs: dict[str, int | None] = {}  # stream (argument name) -> output position (None: the output)
        self.output_length = 0
        self.nones: list[int] = []  # output positions that are always None
        self.complete = True  # every output position is a stream or None (so the block can hand its inputs back)
        self.seen = False

    def argument(self, name: str, args, kwargs) -> Any:
        if name in kwargs:
            return kwargs[name]
        index = self.positions.get(name)
        return args[index] if index is not None and index < len(args) else None

    def tensors_in(self, args, kwargs) -> dict[str, torch.Tensor]:
        """Every tensor argument by name (what a span's first block records)."""
        found = {name: value for name, value in kwargs.items() if isinstance(value, torch.Tensor)}
        for name, index in self.positions.items():
            if index < len(args) and isinstance(args[index], torch.Tensor):
                found[name] = args[index]
        return found

    def streams_in(self, args, kwargs) -> dict[str, torch.Tensor]:
        return {name: self.argument(name, args, kwargs) for name in self.outputs}

    def streams_out(self, output: Any) -> dict[str, torch.Tensor]:
        return {name: (output if index is None else output[index]) for name, index in self.outputs.items()}

    def build(self, streams: dict[str, torch.Tensor]) -> Any:
        """The block's output made of its streams."""
        if self.outputs.get(self.hidden_name, 0) is None:
            return streams[self.hidden_name]
        values: list[Any] = [None] * self.output_length
        for name, index in self.outputs.items():
            values[index] = streams[name]
        return tuple(values)

    def learn(self, output: Any, args, kwargs) -> None:
        """At the block's first call: which output position carries which input stream."""
        self.seen = True
        inputs = self.tensors_in(args, kwargs)
        if not isinstance(output, tuple):
            self.outputs = {self.hidden_name: None}
            return
        self.output_length = len(output)
        shapes = [tuple(v.shape) if isinstance(v, torch.Tensor) else None for v in output]

        def fits(name: str | None, index: int | None) -> bool:
            stream = inputs.get(name) if name else None
            if stream is None or index is None or index >= len(output) or shapes[index] is None:
                return False
            return shapes[index] == tuple(stream.shape) or _fused(output[index], stream)

        found: dict[str, int] = {}
        if self.registry is not None:
            hidden_at, encoder_at = self.registry
            # an entry that names no text stream for a block that takes one and returns a pair is stale
            stale = encoder_at is None and self.encoder_name in inputs and len(output) > 1
            if not stale and fits(self.hidden_name, hidden_at):
                found[self.hidden_name] = hidden_at
                if fits(self.encoder_name, encoder_at):
                    found[self.encoder_name] = encoder_at
        if self.hidden_name not in found:
            # by shape; where the image and the text stream share one, diffusers returns (text, image)
            candidates = [i for i in range(len(output)) if fits(self.hidden_name, i)]
            exact = [i for i in candidates if shapes[i] == tuple(inputs[self.hidden_name].shape)]
            if exact or candidates:
                found[self.hidden_name] = (exact or candidates)[-1]
        for index in range(len(output)):
            if index in found.values():
                continue
            name = next(
                (n for n, v in inputs.items() if n not in found and shapes[index] == tuple(v.shape)),
                None,
            )
            if name is not None:
                found[name] = index
        self.outputs = found
        self.nones = [i for i, value in enumerate(output) if value is None]  # e.g. SD3's last block: (None, image)
        self.complete = self.hidden_name in found and len(found) + len(self.nones) == len(output)


class BlockSpan:
    """One outer unit's cache over its run of blocks: residuals (or stage outputs) per branch."""

    def __init__(
        self,
        name: str,
        mode: str,
        blocks: list[torch.nn.Module],
        compute: list[bool],
        store: list[bool],
        unit_names: list[str] | None = None,
    ) -> None:
        self.name = name
        self.unit_names = unit_names or [name]  # the outer units this span stands for (one schedule)
        self.mode = mode  # "residual" (transformer blocks) or "output" (UNet stages)
        self.blocks = blocks
        self.first, self.last = blocks[0], blocks[-1]
        self.compute = compute
        self.store = store
        self.residuals: dict[Any, dict[str, torch.Tensor]] = {}  # branch -> residual per stream
        self.inputs: dict[Any, tuple[dict, tuple]] = {}  # branch -> the first block's tensor inputs, versions
        self.hidden_name, self.encoder_name = "hidden_states", None  # the first block's stream arguments
        self.outputs: dict[tuple, Any] = {}  # output mode: (branch, block) -> the stage's output
        self.computed = 0
        self.reused = 0
        self.broken: str | None = None  # why this span cannot be reused on this model (said once)
        self.copy_outputs = False  # under CUDA graphs a compiled stage's output is overwritten by the next replay

    def has_cache(self, branch: Any, block: torch.nn.Module) -> bool:
        if self.mode == "output":
            return (branch, id(block)) in self.outputs
        return branch in self.residuals

    def clear(self) -> None:
        self.residuals.clear()
        self.inputs.clear()
        self.outputs.clear()

    def cache_bytes(self) -> int:
        held = [tuple(r.values()) for r in self.residuals.values()] + list(self.outputs.values())
        return sum(_outputs.nbytes(value) for value in held)

    def give_up(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
            logger.warning(
                "unit %s cannot be reused on this model (%s): it computes at every step; "
                "name the model's blocks in model.units.blocks or drop the level with model.units.kinds",
                self.name,
                reason,
            )
        self.compute = [True] * len(self.compute)
        self.clear()


class BlockHook(ModelHook):
    """On one block: skip it, or run it and fill the caches of the spans it starts or ends."""

    _is_stateful = True

    def __init__(self, block: torch.nn.Module, spans: list[BlockSpan], clock) -> None:
        super().__init__()
        self.block = block
        self.spans = spans  # outermost first
        self.clock = clock
        self.signature = BlockSignature(block) if any(s.mode == "residual" for s in spans) else None
        for span in spans:
            if block is span.first and self.signature is not None:
                span.hidden_name, span.encoder_name = self.signature.hidden_name, self.signature.encoder_name

    def reset_state(self, module):
        for span in self.spans:
            span.clear()
        return module

    def new_forward(self, module: torch.nn.Module, *args, **kwargs):
        step, branch = self.clock.step, self.clock.branch
        block = self.block
        output = None
        computing = []  # the spans (outermost first) that compute at this block now
        for span in self.spans:
            if not span.compute[step] and span.has_cache(branch, block):
                output = self._reuse(span, branch, args, kwargs)
                break
            computing.append(span)
            if block is span.first:
                span.computed += 1
                if span.mode == "residual" and (span.store[step] or not span.compute[step]):
                    inputs = self.signature.tensors_in(args, kwargs)
                    span.inputs[branch] = (inputs, _outputs.tensor_versions(tuple(inputs.values())))
        if output is None:
            output = self.fn_ref.original_forward(*args, **kwargs)
            signature = self.signature
            if signature is not None and not signature.seen:
                signature.learn(output, args, kwargs)
                if not signature.complete:
                    for span in self.spans:
                        span.give_up(f"{type(block).__name__} returns values that are not its input streams")
        for span in computing:
            if span.mode == "output":
                if span.store[step] or not span.compute[step]:
                    span.outputs[(branch, id(block))] = _outputs.clone(output) if span.copy_outputs else output
            elif block is span.last and branch in span.inputs:
                self._store_residual(span, branch, output)
        return output

    def _reuse(self, span: BlockSpan, branch: Any, args, kwargs) -> Any:
        """The span reuses: its first block adds the residuals, the later ones hand their input back."""
        block = self.block
        if block is span.first:
            span.reused += 1
        if span.mode == "output":
            return span.outputs[(branch, id(block))]
        streams = self.signature.streams_in(args, kwargs)
        if block is span.first:
            residuals = span.residuals[branch]
            streams = {
                name: value + residuals[name] if name in residuals else value for name, value in streams.items()
            }
        return self.signature.build(streams)

    def _store_residual(self, span: BlockSpan, branch: Any, output: Any) -> None:
        inputs, versions = span.inputs.pop(branch)
        if versions != _outputs.tensor_versions(tuple(inputs.values())):
            span.give_up("a block changes its input in place")
            return
        signature = self.signature
        outputs = signature.streams_out(output)
        hidden_in, hidden_out = inputs.get(span.hidden_name), outputs.get(signature.hidden_name)
        if not isinstance(hidden_out, torch.Tensor) or not isinstance(hidden_in, torch.Tensor):
            span.give_up("its blocks do not pass the image stream as a tensor")
            return
        residuals = {}
        if _fused(hidden_out, hidden_in):  # the last block sees [text, image] as one sequence (single-stream)
            text_length = hidden_out.shape[1] - hidden_in.shape[1]
            hidden_out, text_out = hidden_out[:, text_length:], hidden_out[:, :text_length]
            text_in = inputs.get(span.encoder_name) if span.encoder_name else None
            if isinstance(text_in, torch.Tensor) and text_in.shape == text_out.shape:
                residuals[span.encoder_name] = text_out - text_in
        if hidden_out.shape != hidden_in.shape:
            span.give_up(f"the image stream changes shape from {tuple(hidden_in.shape)} to {tuple(hidden_out.shape)}")
            return
        residuals[span.hidden_name] = hidden_out - hidden_in
        for name, value in outputs.items():
            if name == signature.hidden_name or name in residuals:
                continue
            before = inputs.get(name)
            if isinstance(value, torch.Tensor) and isinstance(before, torch.Tensor) and value.shape == before.shape:
                residuals[name] = value - before
        span.residuals[branch] = residuals


def _fused(hidden_out: torch.Tensor, hidden_in: torch.Tensor) -> bool:
    return (
        isinstance(hidden_out, torch.Tensor)
        and isinstance(hidden_in, torch.Tensor)
        and hidden_out.ndim == hidden_in.ndim == 3
        and hidden_out.shape[0] == hidden_in.shape[0]
        and hidden_out.shape[2] == hidden_in.shape[2]
        and hidden_out.shape[1] > hidden_in.shape[1]
    )
