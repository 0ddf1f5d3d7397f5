r"""The fused CPU backend (``backend='cpu'``): the kernels of the C++ library, run through ctypes.

The library is built and cached by :mod:`neuroq.ops.build` (:func:`~neuroq.ops.build.cpu_library`,
one per storage dtype); its C interface is :mod:`neuroq.ops.abi`; the launchers here are those of
:mod:`neuroq.ops.launch` with :data:`KERNELS`, the CPU's way to run each kernel.

Loops (see ``neuron_kernels_cpu.cpp``): OpenMP over blocks of neurons, the time loop outside, a SIMD
loop over the block inside (GCC's ``-fopt-info-vec`` reports these loops vectorised with 64-byte
vectors on AVX-512).  Forward writes only the outputs; backward recomputes the block's forward from
the saved inputs (bit-identical) into an L2-sized scratch, so nothing but the inputs is kept for
backward.  Threads: ``torch.get_num_threads()``.  fp32 forward is bit-identical to the torch
reference (true division by :math:`\tau`, as torch on CPU -- a multiplication only for a
power-of-two tau, where it is exact; FMA contraction off); gradients agree to 1e-5 (the
surrogate's exponential is a vectorisable polynomial, ~2 ulp).

Example::

    >>> import torch
    >>> from neuroq.neuron import LIFNode
    >>> node = LIFNode(step_mode="m", backend="cpu")   # doctest: +SKIP
    >>> node(torch.rand(16, 1024)).shape               # doctest: +SKIP
    torch.Size([16, 1024])
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from . import KernelOut, Unsupported, register
from .abi import NQSAF, NQNeuron, NQSurrogate, fill
from .build import cpu_library as library
from .build import cpu_status as status
from .launch import Kernels, if_family, saf, surrogate_backward
from .params import STORAGE_TYPES, exact_reciprocal, neuron_constants, saf_constants

#: output buffers at least this large get the huge-page advice (see nq_cpu_advise_huge)
HUGE_PAGE_MIN_BYTES = 8 << 20


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else t.data_ptr()


def _ptrs(tensors):
    """A C array of the tensors' data pointers (null for ``None``)."""
    return (ctypes.c_void_p * max(1, len(tensors)))(*[None if t is None else t.data_ptr() for t in tensors])


def _recip(params) -> bool:
    """CPU torch divides by tau; multiplying instead is bit-identical only for a power-of-two tau."""
    tau = getattr(params, "tau", None)
    return tau is not None and exact_reciprocal(tau)


def _threads() -> int:
    return max(1, torch.get_num_threads())


class CPUKernels(Kernels):
    """The C++ library's entry points (``nq_cpu_*``), called with the constants as ctypes structs.
    Forward keeps its inputs for backward, which recomputes the forward per block; the backward
    entry points need the sequence gradient (zeros stand in for ``None``)."""

    name = "cpu"

    def check(self, x):
        """Raise :class:`~neuroq.ops.Unsupported` unless ``x`` is on the CPU."""
        if x.device.type != "cpu":
            raise Unsupported(f"the CPU kernels need CPU tensors, got {x.device}")

    def neuron(self, params):
        """The IF/LIF record's constants as an ``NQNeuron`` ctypes struct (division by tau unless it is a power of
        two)."""
        return fill(NQNeuron, neuron_constants(params, recip_div=_recip(params)))

    def saf(self, params):
        """The SAF record's constants as an ``NQSAF`` ctypes struct."""
        return fill(NQSAF, saf_constants(params, recip_div=_recip(params)))

    def surrogate(self, sg):
        """The surrogate constants ``sg`` as an ``NQSurrogate`` ctypes struct."""
        return fill(NQSurrogate, sg)

    def empty(self, like):
        """``torch.empty_like``; a large buffer is advised to use huge pages before the kernel first
        touches it (a fresh 4 KiB-paged 64 MiB buffer costs more page faults than the kernel's own
        work)."""
        out = torch.empty_like(like, memory_format=torch.contiguous_format)
        nbytes = out.numel() * out.element_size()
        if nbytes >= HUGE_PAGE_MIN_BYTES:
            library(out.dtype).nq_cpu_advise_huge(out.data_ptr(), nbytes)
        return out

    def if_forward(self, c, x, v0, spike, v_seq, v_last, trace0, trace_last, for_backward):
        """Run ``nq_cpu_if_forward`` on ``x`` ``[T, N]``; returns ``(x, v0)``, the inputs the backward recomputes
        the forward from."""
        T, N = x.shape
        library(x.dtype).nq_cpu_if_forward(ctypes.byref(c.neuron), _ptr(x), _ptr(v0), _ptr(spike), _ptr(v_seq),
                                           _ptr(v_last), _ptr(trace0), _ptr(trace_last), c.trace_decay, N, T,
                                           _threads())
        return x, v0

    def if_backward(self, c, saved, g_spike, g_v_seq, g_v_last, g_x, g_v0):
        """Run ``nq_cpu_if_backward`` from the saved ``(x, v0)`` into ``g_x`` (and ``g_v0``); a ``None`` spike
        gradient is passed as zeros."""
        x, v0 = saved
        T, N = x.shape
        if g_spike is None:
            g_spike = torch.zeros_like(x)
        library(x.dtype).nq_cpu_if_backward(ctypes.byref(c.neuron), ctypes.byref(c.sg), _ptr(x), _ptr(v0),
                                            _ptr(g_spike), _ptr(g_v_seq), _ptr(g_v_last), _ptr(g_x), _ptr(g_v0),
                                            N, T, _threads())

    def saf_forward(self, c, u, a0, a_seq, a_last, for_backward):
        """Run ``nq_cpu_saf_forward`` on ``u`` ``[T, N]``; returns ``(u, a0)`` for the backward."""
        T, N = u.shape
        library(u.dtype).nq_cpu_saf_forward(ctypes.byref(c.neuron), _ptr(u), _ptr(a0), _ptr(a_seq), _ptr(a_last),
                                            N, T, _threads())
        return u, a0

    def saf_backward(self, c, saved, g_a_seq, g_a_last, g_u, g_a0):
        """Run ``nq_cpu_saf_backward`` from the saved ``(u, a0)`` into ``g_u`` (and ``g_a0``); a ``None`` sequence
        gradient is passed as zeros."""
        u, a0 = saved
        T, N = u.shape
        if g_a_seq is None:
            g_a_seq = torch.zeros_like(u)
        library(u.dtype).nq_cpu_saf_backward(ctypes.byref(c.neuron), ctypes.byref(c.sg), _ptr(u), _ptr(a0),
                                             _ptr(g_a_seq), _ptr(g_a_last), _ptr(g_u), _ptr(g_a0), N, T,
                                             _threads())

    def surrogate_backward(self, sg, x, g, g_x):
        """Run ``nq_cpu_surrogate_backward``: ``g_x = g * sg'(x)`` over all elements."""
        library(x.dtype).nq_cpu_surrogate_backward(ctypes.byref(sg), _ptr(x), _ptr(g), _ptr(g_x), x.numel(),
                                                   _threads())

    # ---- generated kernels (step_kernels_cpu.cpp) ----------------------------------------------
    def step_module(self, prog, dtype):
        """The generated kernel's library for storage ``dtype`` (built once per source)."""
        from .generated import cpu_module

        return cpu_module(prog, dtype)

    def step_constants(self, prog):
        """The constants (ctypes floats) and surrogates (``NQSurrogate`` array) of a generated kernel."""
        from .generated import cpu_constants

        return cpu_constants(prog)

    def step_forward(self, c, x, states0, spike, seqs, lasts, for_backward):
        """Run ``nq_step_forward`` on ``x`` ``[T, N]``; returns ``(x, *states0)``, the inputs the backward
        recomputes the forward from."""
        T, N = x.shape
        c.module.nq_step_forward(c.consts, _ptr(x), _ptrs(states0), _ptr(spike),
                                 _ptrs(seqs) if any(q is not None for q in seqs) else None, _ptrs(lasts), N, T,
                                 _threads())
        return (x, *states0)

    def step_backward(self, c, saved, g_spike, g_seqs, g_lasts, g_x, g_states0):
        """Run ``nq_step_backward`` from the saved ``(x, *states0)`` into ``g_x`` (and the wanted
        ``g_states0``); a ``None`` spike gradient is passed as zeros."""
        x, states0 = saved[0], saved[1:]
        T, N = x.shape
        if g_spike is None:
            g_spike = torch.zeros_like(x)
        c.module.nq_step_backward(c.consts, c.sg, _ptr(x), _ptrs(states0), _ptr(g_spike),
                                  _ptrs(g_seqs) if any(g is not None for g in g_seqs) else None,
                                  _ptrs(g_lasts) if any(g is not None for g in g_lasts) else None,
                                  _ptr(g_x), _ptrs(g_states0), N, T, _threads())


KERNELS = CPUKernels()


def if_family_cpu(x_seq: torch.Tensor, v0: torch.Tensor, params, surrogate_function, store_v_seq: bool = False,
                  trace=None) -> KernelOut:
    """CPU launcher of the IF/LIF family: :func:`neuroq.ops.launch.if_family` on the CPU kernels."""
    return if_family(KERNELS, x_seq, v0, params, surrogate_function, store_v_seq, trace)


def saf_cpu(u_hat_seq: torch.Tensor, a0: torch.Tensor, params, surrogate_function,
            store_v_seq: bool = False) -> KernelOut:
    """CPU launcher of the SAF neuron: :func:`neuroq.ops.launch.saf` on the CPU kernels."""
    return saf(KERNELS, u_hat_seq, a0, params, surrogate_function, store_v_seq)


def surrogate_backward_cpu(x: torch.Tensor, grad: torch.Tensor, sg: tuple) -> Optional[torch.Tensor]:
    """``grad * sg'(x)`` in one fused pass (``x`` a CPU tensor of a storage dtype, ``sg`` the
    surrogate constants of :mod:`neuroq.ops.params`), or ``None`` when there is no kernel for it."""
    if sg is None or x.device.type != "cpu" or x.dtype not in STORAGE_TYPES:
        return None
    try:
        library(x.dtype)
    except RuntimeError:
        return None
    return surrogate_backward(KERNELS, x, grad, sg)


def generated_launcher(*args, **kwargs):
    """The registry entry of the generated kernels (family ``"generated"``: dispatch sees that the backend
    has them); they run through :func:`neuroq.ops.generated.launch`, not through this entry."""
    raise RuntimeError("the generated kernels run through neuroq.ops.generated.launch(backend, program, ...)")


register("cpu", "if", if_family_cpu)
register("cpu", "lif", if_family_cpu)
register("cpu", "saf", saf_cpu)
register("cpu", "generated", generated_launcher)  # the kernels generated from a step (neuroq.ops.generated)

__all__ = ["KERNELS", "CPUKernels", "if_family_cpu", "saf_cpu", "surrogate_backward_cpu", "library", "status"]
