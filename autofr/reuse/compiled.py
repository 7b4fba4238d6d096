"""Schedules under ``torch.compile``: compiled regions hold only the units' own work.

``module.compile(...)`` (what diffusers' ``compile_repeated_blocks`` calls on every repeated block, and
what ``model.compile()`` is) makes ``module(...)`` run ``torch.compile(module._call_impl)``: everything
its forward reaches, hooks included. A reuse decision traced there is Python state Dynamo guards on (each
new step recompiles, and past ``recompile_limit`` the module runs eagerly) and breaks the graph. So no
compiled region of a scheduled model contains an autofr hook. A compile request on a module is carried
out on the largest parts of it that hold no hook:

* a module with no hook in it (an embedder, a block no unit touches): compiled as asked;
* a hooked module with no other hook inside (a block or stack span's block, an attention or
  feed-forward unit, a resnet's ``conv1``): its own work, the forward the hooks wrap, is compiled;
  the hooks run eagerly around it, decide, and call the compiled work where the unit computes;
* anything else (the denoiser, a block that holds sub-layer units, a resnet with a ``conv1`` unit):
  the same, one level down; its own few ops between its children (adds, chunks, gates) run eagerly,
  and so do its children that are single ``torch.nn`` layers (a Linear, a norm, a conv).

Either order works. After ``apply_schedule``, every module with a hook in it has a per-instance
``compile`` that does the above with the arguments given (``torch.compile``'s); ``apply_schedule`` on a
compiled model does it with the settings the compiled module holds. ``remove_schedule`` undoes it and
leaves the model compiled as it was asked to be. Compiled code therefore reads no step, branch or cache
dictionary: it recompiles only where full compute would (a new shape), and a schedule or step count
changes nothing in it.

With CUDA graphs (``mode="reduce-overhead"``, ``"max-autotune"``) a compiled region's outputs live in
memory the next replay overwrites, so the caches copy what they keep from a compiled region.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch

from autofr.errors import ScheduleError

logger = logging.getLogger(__name__)

CompileFn = Callable[[Callable], Callable]  # a callable -> its compiled version, with one request's settings

_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


class CompiledRegions:
    """Where a scheduled denoiser is compiled, and how to give the model its own compile state back."""

    def __init__(
        self,
        denoiser: torch.nn.Module,
        hooked: Iterable[torch.nn.Module],
        on_cuda_graphs: Callable[[], None] = lambda: None,
    ) -> None:
        self.denoiser = denoiser
        self.on_cuda_graphs = on_cuda_graphs  # the caches must copy what they keep from compiled regions
        names = {id(module): name for name, module in denoiser.named_modules(remove_duplicate=False)}
        hooked_names = {names[id(module)] for module in hooked if id(module) in names}
        self.holds_hook = {""}  # names of the modules with a hook in them (themselves included)
        for name in hooked_names:
            parts = name.split(".") if name else []
            self.holds_hook.update(".".join(parts[:i]) for i in range(len(parts) + 1))
        self.hooked = hooked_names
        self.names = names
        self.uses_cuda_graphs = False
        self._undo: list[Callable[[], None]] = []
        self._requests: list[tuple[torch.nn.Module, tuple, dict]] = []  # compile calls to redo on removal

    # ------------------------------------------------------------------ install and remove
    def install(self) -> None:
        """Route compile requests on every module with a hook in it, and move compiles already made."""
        for name, module in self.denoiser.named_modules():
            if name not in self.holds_hook:
                continue
            compiled = module.__dict__.get("_compiled_call_impl")
            if compiled is not None:
                self._move_existing(module, compiled)
            module.compile = self._compile_method(module)
            self._undo.append(functools.partial(module.__dict__.pop, "compile", None))

    def remove(self) -> list[tuple[torch.nn.Module, tuple, dict]]:
        """Undo every change; returns the compile requests to make again once the hooks are gone."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        requests, self._requests = self._requests, []
        return requests

    def _cuda_graphs(self) -> None:
        if not self.uses_cuda_graphs:
            self.uses_cuda_graphs = True
            self.on_cuda_graphs()

    # ------------------------------------------------------------------ placing a compile request
    def place(self, module: torch.nn.Module, compile_fn: CompileFn) -> None:
        """Compile the largest parts of ``module`` that hold no hook (see the module docstring)."""
        name = self.names.get(id(module))
        if _is_torch_module(module):  # Dynamo starts no frame in torch.nn
            for child in module.children():  # a container (ModuleList, Sequential): its members
                self.place(child, compile_fn)
            return  # a single layer (a Linear, a norm, a conv): one op, as fast eager
        if name is None or name not in self.holds_hook:
            self._compile_whole(module, compile_fn)
        elif name in self.hooked and not self._holds_other_hooks(name):
            self._compile_own_work(module, compile_fn)
        else:
            for child in module.children():
                self.place(child, compile_fn)

    def _holds_other_hooks(self, name: str) -> bool:
        prefix = name + "." if name else ""
        return any(other != name and other.startswith(prefix) for other in self.hooked)

    def _compile_whole(self, module: torch.nn.Module, compile_fn: CompileFn) -> None:
        before = module.__dict__.get("_compiled_call_impl")
        module._compiled_call_impl = compile_fn(module._call_impl)
        self._undo.append(functools.partial(setattr, module, "_compiled_call_impl", before))

    def _compile_own_work(self, module: torch.nn.Module, compile_fn: CompileFn) -> None:
        innermost = module._diffusers_hook._fn_refs[0]
        attribute = "original_forward" if innermost.original_forward is not None else "forward"
        own_work = getattr(innermost, attribute)
        plain = getattr(own_work, "_autofr_own_work", own_work)  # compiled twice: compile the plain forward
        compiled = compile_fn(plain)
        compiled._autofr_own_work = plain
        setattr(innermost, attribute, compiled)
        self._undo.append(functools.partial(setattr, innermost, attribute, own_work))

    def _compile_method(self, module: torch.nn.Module) -> Callable:
        """The per-instance ``compile`` of a module with a hook in it: ``torch.compile``'s arguments."""

        @functools.wraps(type(module).compile)
        def compile(*args, **kwargs) -> None:
            if _cuda_graph_settings(kwargs):
                self._cuda_graphs()
            self._requests.append((module, args, kwargs))
            self.place(module, lambda fn: torch.compile(fn, *args, **kwargs))

        return compile

    def _move_existing(self, module: torch.nn.Module, compiled: Callable) -> None:
        """``module`` was compiled before the schedule came: compile its parts with the same settings."""
        context = _dynamo_context(compiled)
        if context is None:
            raise ScheduleError(
                f"{type(module).__name__} is compiled in a way autofr cannot read: "
                "apply the schedule first, then compile (module.compile() or compile_repeated_blocks())"
            )
        if _context_uses_cuda_graphs(context):
            self._cuda_graphs()
        module._compiled_call_impl = None
        self._undo.append(functools.partial(setattr, module, "_compiled_call_impl", compiled))
        self.place(module, context)


def _is_torch_module(module: torch.nn.Module) -> bool:
    return type(module).__module__.startswith("torch.nn.")


def recompile(requests: list[tuple[torch.nn.Module, tuple, dict]]) -> None:
    """Make the user's compile requests again on the unhooked model (after ``remove_schedule``)."""
    for module, args, kwargs in requests:
        torch.nn.Module.compile(module, *args, **kwargs)


# ---------------------------------------------------------------------- reading torch.compile's settings
def _cuda_graph_settings(kwargs: dict) -> bool:
    options = kwargs.get("options") or {}
    return kwargs.get("mode") in _CUDA_GRAPH_MODES or bool(options.get("triton.cudagraphs"))


def _dynamo_context(compiled: Callable) -> Any:
    """The Dynamo context a ``torch.compile``'d function was made with; applied to another function it
    compiles that one with the same backend, mode and ``fullgraph``. ``None`` if it cannot be found."""
    from torch._dynamo.eval_frame import _TorchDynamoContext  # private: the one place autofr reads it

    for cell in getattr(compiled, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if isinstance(value, _TorchDynamoContext):
            return value
    return None


def _context_uses_cuda_graphs(context: Any) -> bool:
    backend = getattr(context, "callback", None)
    for _ in range(4):  # CatchErrorsWrapper -> ConvertFrameAssert -> ... -> the compiler function
        if backend is None:
            break
        config = getattr(backend, "config", None)
        if isinstance(config, dict):
            return bool(config.get("triton.cudagraphs"))
        backend = getattr(backend, "_torchdynamo_orig_backend", None) or getattr(backend, "compiler_fn", None)
    return False
