r"""Generated kernels, part 2: one program per neuron configuration, compiled once per structure.

A :class:`neuroq.neuron.BaseNode` without a hand-written kernel -- a user's neuron, a neuron with
several states, a subclass of ``LIFNode`` that overrides its charge -- runs a kernel generated from
its own pure :meth:`~neuroq.neuron.BaseNode.step` under ``backend='auto' | 'cpu' | 'cupy'``:

* :func:`program` traces the step (:mod:`neuroq.ops.codegen`) once per neuron class and attribute
  values (numbers, strings, parameter records, and those of its submodules such as the surrogate's
  ``alpha``) and keeps the result;
* the emitted source has the step's numbers as *run-time* constants, so neurons that differ only in
  them (another ``tau``, ``v_threshold``, ``alpha``) share one compiled module: on the CPU a shared
  library built by :func:`neuroq.ops.build.step_library` in the cache of the hand-written kernels
  (keyed by a hash of the source, the flags, the compiler and the CPU), on CUDA a ``cupy.RawModule``;
* :func:`launch` runs it through the shared launch layer (:func:`neuroq.ops.launch.step_family`:
  flattening, output buffers, the autograd Function whose backward is the traced step's
  vector-Jacobian product).

A step the generator cannot compile raises :class:`~neuroq.ops.Unsupported` naming the op; the
neuron then runs the torch loop and says so once (:class:`neuroq.neuron.BaseNode`).  The notice is
one line, e.g. ``neuroq: MyNode.step uses torch.sort, which the generated kernels do not support;
MyNode runs the torch loop over its step()``.

Example::

    >>> import torch, neuroq
    >>> class QIF(neuroq.neuron.BaseNode):
    ...     def neuronal_charge(self, x, v):
    ...         return v + (x + v * v) / 2.0
    >>> print(neuroq.ops.generated_source(QIF()).splitlines()[0])   # doctest: +ELLIPSIS
    // neuroq: kernel generated from QIF.step ...
"""
from __future__ import annotations

import ctypes
import dataclasses
import enum
import threading
from collections import OrderedDict
from typing import Optional

import numpy as np
import torch

from . import StepOut, Unsupported
from . import codegen
from .params import STORAGE_TYPES, require_storage, surrogate_constants

#: the most programs kept (least recently used dropped first)
MAX_PROGRAMS = 256

_PROGRAMS: "OrderedDict[tuple, StepProgram]" = OrderedDict()
_LOCK = threading.Lock()

#: the loop template of each target, included after the emitted struct
TEMPLATES = {"cpu": "step_kernels_cpu.cpp", "cuda": "step_kernels.cu"}


class StepProgram:
    """One traced step: its :class:`~neuroq.ops.codegen.StepGraph`, the source per target and the packed
    constants per backend (built on first use)."""

    def __init__(self, graph: codegen.StepGraph):
        self.graph = graph
        self.n_states = graph.n_states
        self.sg_constants = [surrogate_constants(m) for m in graph.surrogates]
        self._emitted = {}
        self.packed = {}  # backend name -> what its kernels take (ctypes arrays, numpy scalars)

    def emitted(self, target: str) -> codegen.Emitted:
        """The emitted struct and constants for ``target`` (``'cpu'`` or ``'cuda'``)."""
        e = self._emitted.get(target)
        if e is None:
            e = self._emitted[target] = codegen.emit(self.graph, target)
        return e

    @property
    def n_save(self) -> int:
        """Values per neuron and step the backward is recomputed from (``NQStep::NSAVE``; the same on every
        target: the cut depends on the graph alone)."""
        return self.emitted("cpu").n_save

    def text(self, target: str) -> str:
        """The source compiled for ``target``: the emitted struct between the includes of ``kernels.cuh``
        and of the loop template (``#include`` lines as written)."""
        return (f"// neuroq: kernel generated from {self.graph.name} by neuroq/ops/codegen.py\n"
                '#include "kernels.cuh"\n\n' + self.emitted(target).struct + f'\n#include "{TEMPLATES[target]}"\n')


def _freeze(v, depth=0):
    """A hashable stand-in for an attribute value (numbers, strings, records, containers of them);
    anything else by identity."""
    if v is None or isinstance(v, (bool, int, float, str, bytes, torch.dtype, enum.Enum)):
        return v
    if isinstance(v, (tuple, list)) and depth < 3:
        return (type(v).__name__,) + tuple(_freeze(x, depth + 1) for x in v)
    if isinstance(v, dict) and depth < 3:
        return ("dict",) + tuple(sorted((str(k), _freeze(x, depth + 1)) for k, x in v.items()))
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return (type(v).__qualname__,) + tuple(_freeze(getattr(v, f.name), depth + 1) for f in dataclasses.fields(v))
    if isinstance(v, torch.Tensor):
        return ("tensor", id(v))
    return ("object", type(v).__qualname__, id(v))


_SKIP = frozenset({"_parameters", "_buffers", "_modules", "_memories", "_memories_rv", "_non_persistent_buffers_set",
                   "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
                   "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
                   "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
                   "_is_full_backward_hook", "_neuroq_backend", "_neuroq_store_seqs", "v_seq"})


def _module_key(m: torch.nn.Module, depth: int = 0) -> tuple:
    """What a module's traced step may depend on: its attribute values (not tensors that change every
    step: states live in ``_memories``; sequences are skipped) and those of its submodules."""
    items = []
    for k, v in m.__dict__.items():
        if k in _SKIP or k.endswith("_seq") or isinstance(v, torch.Tensor) and k != "_neuroq_params":
            continue
        if k.startswith("_") and k not in ("_neuroq_params", "_store_v_seq"):
            if not isinstance(v, (bool, int, float, str)) or k.startswith("__"):
                continue
        items.append((k, _freeze(v)))
    for k, v in m.__dict__.get("_parameters", {}).items():
        items.append((k, ("parameter", id(v))))
    for k, v in m.__dict__.get("_buffers", {}).items():
        items.append((k, ("buffer", id(v))))
    if depth < 4:
        for k, sub in m.__dict__.get("_modules", {}).items():
            items.append((k, (type(sub), _module_key(sub, depth + 1)) if sub is not None else None))
    return tuple(items)


def program(node) -> StepProgram:
    """The traced program of ``node``'s step (cached per class and attribute values); raises
    :class:`~neuroq.ops.Unsupported` naming what cannot be compiled."""
    key = (type(node), _module_key(node))
    with _LOCK:
        prog = _PROGRAMS.get(key)
        if prog is not None:
            _PROGRAMS.move_to_end(key)
            return prog
    prog = StepProgram(codegen.trace(node))
    with _LOCK:
        _PROGRAMS[key] = prog
        while len(_PROGRAMS) > MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    return prog


def source(node, backend: str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """What :func:`neuroq.ops.generated_source` shows: the constants' values, then the source compiled for
    ``backend`` (``'cpu'`` or ``'cupy'``) with storage ``dtype``."""
    target = {"cpu": "cpu", "cupy": "cuda", "cuda": "cuda"}.get(backend)
    if target is None:
        raise ValueError(f"backend must be 'cpu' or 'cupy', got {backend!r}")
    require_storage(dtype)
    prog = program(node)
    e = prog.emitted(target)
    head = [f"// neuroq: kernel generated from {prog.graph.name} for {backend} (storage {STORAGE_TYPES[dtype]}); "
            f"the run-time constants of this neuron:"]
    for k, v in enumerate(e.consts):
        head.append(f"//   c[{k}] = {float(v)!r}")
    for k, sg in enumerate(prog.sg_constants):
        head.append(f"//   sg[{k}] = {type(prog.graph.surrogates[k]).__name__}: "
                    + ", ".join(f"{f}={v.item()!r}" for f, v in zip(_SG_FIELDS, sg)))
    return "\n".join(head) + "\n" + prog.text(target)


_SG_FIELDS = ("kind", "inner", "t_ref", "a0", "a1", "a2", "vth")


def launch(backend: str, prog: StepProgram, x_seq: torch.Tensor, states0: tuple, store: tuple) -> StepOut:
    """Run ``prog`` on backend ``'cpu'`` or ``'cupy'``: ``x_seq`` ``[T, N, ...]`` from the states ``states0``
    (each ``[N, ...]`` or broadcastable), keeping the sequences ``store`` names (a bool per state)."""
    from .launch import step_family

    if backend == "cpu":
        from .cpu import KERNELS
    elif backend == "cupy":
        from .cuda import KERNELS
    else:
        raise ValueError(backend)
    return step_family(KERNELS, prog, x_seq, tuple(states0), tuple(bool(s) for s in store))


def run(node, x_seq: torch.Tensor, states0: Optional[tuple] = None, store: Optional[tuple] = None,
        backend: Optional[str] = None) -> StepOut:
    """Run ``node``'s generated kernel on ``x_seq`` ``[T, N, ...]`` without touching the module's state:
    from ``states0`` (default: the initial values) on ``backend`` (default: the tensor's device), keeping
    the sequences ``store`` names (default: none).  For tests and benchmarks; the neuron's own forward
    calls it for you."""
    k = len(node.state_names())
    if states0 is None:
        states0 = tuple(torch.full_like(x_seq[0], float(v if v is not None else node._v_init()))
                        for _, v in node.state_spec())
    backend = backend or ("cupy" if x_seq.is_cuda else "cpu")
    return launch(backend, program(node), x_seq, states0, store or (False,) * k)


def cpu_module(prog: StepProgram, dtype: torch.dtype):
    """The CPU library of ``prog`` for storage ``dtype`` (built or loaded once; see
    :func:`neuroq.ops.build.step_library`)."""
    from .build import step_library

    lib = step_library(prog.text("cpu"), dtype)
    return lib


def cpu_constants(prog: StepProgram):
    """``(c, sg)``: the constants as a ctypes float array and the surrogates as an ``NQSurrogate`` array."""
    packed = prog.packed.get("cpu")
    if packed is None:
        from .abi import NQSurrogate, fill

        consts = prog.emitted("cpu").consts
        c = (ctypes.c_float * max(1, len(consts)))(*[float(v) for v in consts])
        sgs = [fill(NQSurrogate, s) for s in prog.sg_constants]
        sg = (NQSurrogate * max(1, len(sgs)))(*sgs)
        packed = prog.packed["cpu"] = (c, sg)
    return packed


def cuda_constants(prog: StepProgram):
    """``(c, sg)``: the constants and the surrogates' fields as numpy scalars, the CUDA kernels' trailing
    arguments."""
    packed = prog.packed.get("cupy")
    if packed is None:
        c = tuple(np.float32(v) for v in prog.emitted("cuda").consts)
        sg = tuple(v for s in prog.sg_constants for v in s)
        packed = prog.packed["cupy"] = (c, sg)
    return packed
