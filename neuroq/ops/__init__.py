r"""neuroq's fused multi-step kernels and their dispatch.

* :mod:`neuroq.ops.dispatch` -- ``backend='auto' | 'torch' | 'cpu' | 'cupy'``: which one runs for a
  tensor, install hints, clear errors;
* ``kernels.cuh`` -- the per-neuron math and the parameter structs, device-agnostic, compiled by
  NVRTC (``neuron_kernels.cu``) and by the C++ compiler (``neuron_kernels_cpu.cpp``);
* ``entry_points.cuh`` -- the CUDA kernels' entry points, written once: ``neuron_kernels.cu`` makes
  them ``__global__`` kernels, ``tests/ops/cuda_host_harness.cpp`` host functions for the tests;
* :mod:`neuroq.ops.params` -- kernel constants from the parameter records of :mod:`neuroq.functional`;
* :mod:`neuroq.ops.abi` -- the C interface seen from Python: ctypes structs made from the field lists
  of ``kernels.cuh``, the CPU library's entry-point signatures and ABI check;
* :mod:`neuroq.ops.build` -- compiling and caching: the C++ library (compiler, on-disk cache, locks)
  and the CuPy modules;
* :mod:`neuroq.ops.launch` -- the launch layer both backends share: checks, flattening, output
  buffers, the autograd Functions and the gradient plumbing;
* :mod:`neuroq.ops.codegen` and :mod:`neuroq.ops.generated` -- kernels generated from a neuron's own
  pure step (traced by ``torch.fx``, differentiated, emitted into the same loop templates:
  ``step_kernels_cpu.cpp``, ``step_entry_points.cuh`` / ``step_kernels.cu``); :func:`generated_source`
  shows the code;
* :mod:`neuroq.ops.cpu` and :mod:`neuroq.ops.cuda` -- the two backends: how each kernel runs on
  the device (ctypes calls, CuPy launches), and their registered launchers;
* this module -- the registry of launchers keyed by ``(backend, family)``.

A launcher for family ``"if"``/``"lif"`` is called as
``fn(x_seq, v0, params, surrogate_function, store_v_seq=False, trace=None) -> KernelOut`` (``params``
an :class:`~neuroq.functional.IFParameters` / :class:`~neuroq.functional.LIFParameters`; ``trace`` an
optional ``(trace0, decay)`` for OTTT's presynaptic trace); for ``"saf"`` as
``fn(u_hat_seq, a0, params, surrogate_function, store_v_seq=False) -> KernelOut``.  A launcher that
cannot run a case (a surrogate without a device version, a dtype) raises :class:`Unsupported`;
the neuron then runs its torch reference.  Built in: ``("cpu" | "cupy", "if" | "lif" | "saf")``, and
``"generated"`` (the kernels generated from a neuron's own step run through :mod:`neuroq.ops.generated`).
Importing this package needs neither a compiler, CuPy nor a GPU.

Example -- a third-party kernel for a new family::

    from neuroq import ops
    ops.register("cpu", "my_family", my_launcher)
    class MyNode(neuroq.neuron.BaseNode):
        kernel_family = "my_family"
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import torch

KERNEL_DIR = Path(__file__).resolve().parent
_INCLUDE = re.compile(r'^#include "([^"]+)"\s*$', re.M)


class Unsupported(Exception):
    """Raised by a launcher for a case its kernel does not cover; the message says why."""


class KernelOut(NamedTuple):
    """What a launcher returns: ``out`` [T, N, ...] (spikes, or SAF's accumulations), the last state
    [N, ...], the state sequence [T, N, ...] when asked for (``store_v_seq``) and OTTT's trace."""

    out: torch.Tensor
    state: torch.Tensor
    state_seq: Optional[torch.Tensor] = None
    trace: Optional[torch.Tensor] = None


class StepOut(NamedTuple):
    """What a generated kernel returns: ``out`` [T, N, ...] (spikes), the last states (a tuple, one
    [N, ...] tensor per state) and the state sequences (a tuple, [T, N, ...] or None per state)."""

    out: torch.Tensor
    states: tuple
    state_seqs: tuple


def kernel_source(name: str) -> str:
    """Full text of kernel file ``name`` with neuroq's local ``#include "..."`` inlined, so a cache
    key (a hash of the text) changes whenever a header changes."""
    return expand_includes((KERNEL_DIR / name).read_text())


def expand_includes(text: str) -> str:
    """``text`` with every ``#include "<file>"`` of a file beside this module inlined (recursively)."""
    return _INCLUDE.sub(lambda m: kernel_source(m.group(1)), text)


def generated_source(node, backend: str = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """The source of the kernel generated from ``node``'s pure step (a :class:`neuroq.neuron.BaseNode`) for
    ``backend`` ``'cpu'`` (C++/OpenMP) or ``'cupy'`` (CUDA): a header naming its constants' values, the
    emitted ``struct NQStep`` and the loop template it is compiled with (``#include`` lines as written;
    :func:`expand_includes` inlines them).  Raises :class:`Unsupported` naming an op the generator cannot
    compile.  See :mod:`neuroq.ops.generated`."""
    from . import generated

    return generated.source(node, backend, dtype)


_KERNELS: dict = {}
_loaded: set = set()
_BUILTIN = {"cpu": "neuroq.ops.cpu", "cupy": "neuroq.ops.cuda"}


def register(backend: str, family: str, fn: Callable) -> None:
    """Register launcher ``fn`` for ``(backend, family)`` (replaces an existing one)."""
    _KERNELS[(backend, family)] = fn


def _load_builtin(backend: str) -> None:
    if backend in _loaded or backend not in _BUILTIN:
        return
    _loaded.add(backend)
    import importlib

    importlib.import_module(_BUILTIN[backend])  # registers its launchers; needs no compiler/CuPy


def has_kernel(backend: str, family: Optional[str]) -> bool:
    """Whether a launcher is registered for ``(backend, family)``."""
    if family is None:
        return False
    _load_builtin(backend)
    return (backend, family) in _KERNELS


def lookup(backend: str, family: str) -> Callable:
    """The launcher of ``(backend, family)``; a clear error when there is none."""
    _load_builtin(backend)
    try:
        return _KERNELS[(backend, family)]
    except KeyError:
        have = sorted(f for b, f in _KERNELS if b == backend)
        raise RuntimeError(f"no {backend!r} kernel registered for neuron family {family!r} "
                           f"(registered: {have}); use backend='torch'") from None
