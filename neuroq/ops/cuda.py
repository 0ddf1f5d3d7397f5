r"""The fused CUDA backend (``backend='cupy'``): neuroq's kernels launched through CuPy -- the
integrate-and-fire family, SAF and the elementwise surrogate backward.

What runs on the GPU is ``neuron_kernels.cu`` + ``kernels.cuh`` (beside this file, the same
per-neuron math the CPU backend compiles): each thread owns ``NQ_ILP`` (4) neurons and loops over
the T steps with their states in registers,

.. math::
    H[t] = f(V[t-1], X[t]),\quad S[t] = \Theta(H[t] - V_{th}),\quad
    V[t] = \begin{cases} H[t](1-S[t]) + V_{reset}S[t] & \text{hard reset}\\
                         H[t] - V_{th}S[t] & \text{soft reset}\end{cases}

with :math:`f` the IF charge :math:`V + X` or one of the LIF charges of
:func:`neuroq.functional.neuron.lif_charge` (SpikingJelly's IF/LIF, Fang et al. 2021/2023).  The
forward kernel writes the spikes, ``V[T-1]``, optionally ``v_seq`` and OTTT's trace, and, only when
a backward pass will follow, ``H`` in the storage dtype (``H`` itself for fp32, ``H - V_th`` for
fp16/bf16, whose sign bit -- hence the spike -- survives the rounding).  It is saved with
``ctx.save_for_backward`` and freed by backward.  The backward kernel runs BPTT in reverse time:

.. math::
    \frac{\partial L}{\partial H[t]} = \frac{\partial L}{\partial S[t]}\sigma'_t
      + \frac{\partial L}{\partial V[t]}\frac{\partial V[t]}{\partial H[t]},\qquad
    \frac{\partial L}{\partial V[t-1]} \mathrel{+}= \frac{\partial L}{\partial H[t]}\frac{\partial H}{\partial V},
    \qquad \frac{\partial L}{\partial X[t]} = \frac{\partial L}{\partial H[t]}\frac{\partial H}{\partial X}

(:math:`\partial V/\partial H = 1 - S + (V_{reset} - H)\sigma'` hard, :math:`1 - V_{th}\sigma'` soft; the
:math:`\sigma'` term is dropped with ``detach_reset``).  Backward is ``once_differentiable`` (a
double backward raises instead of being silently wrong).

The SAF neuron (Saiin et al., "Spike Accumulation Forwarding", TMLR 2024; family ``"saf"``)
gets the same treatment for :math:`s[t] = \Theta(D[t] - V_{th}(\lambda\hat a[t-1]+1))`,
:math:`\hat a[t] = \lambda\hat a[t-1] + s[t]`.

Device surrogates: SpikingJelly's ``Sigmoid``, ``ATan``, ``PiecewiseQuadratic``, ``Rect`` (2.0.0
only) and neuroq's :class:`neuroq.surrogate.S2NN` (per-step ``'sigmoid'``/``'atan'``/``'rect'``).
Anything else raises :class:`neuroq.ops.Unsupported`; the neuron then runs the torch reference.

Bit-exactness: the forward arithmetic repeats the torch reference operation by operation
(``--fmad=false``; ``a / tau`` as ``a * inv_tau`` like torch's CUDA division by a scalar, with
``inv_tau = 1.0f / float(tau)`` computed on the host -- no ``.item()``, no sync, capturable in a
CUDA graph), so fp32 spikes are bit-identical to ``backend='torch'`` on the same GPU.  (CuPy
compiles with ``-ftz=true``: states that underflow below 1.18e-38 are flushed to 0, where torch
keeps the subnormal.)  The kernels are compiled by ``cupy.RawModule`` once per (dtype, options)
(:func:`neuroq.ops.build.cuda_function`); tensors are passed zero-copy by ``data_ptr`` on
``torch.cuda.current_stream()``.  The entry points are written once, in ``entry_points.cuh``, which
``tests/ops/cuda_host_harness.cpp`` also compiles for the host: the tests without a GPU run these
very entry points over an emulated grid.  The launchers are those of :mod:`neuroq.ops.launch` with
:data:`KERNELS`, the GPU's way to run each kernel.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from . import KERNEL_DIR, KernelOut, Unsupported, register
from .build import CUPY_ADDED_OPTIONS, ILP, KERNEL_SOURCES, compile_options, cuda_function, cuda_step_function
from .launch import Kernels, if_family, saf, surrogate_backward
from .params import STORAGE_TYPES, neuron_constants, saf_constants, torch_reciprocal

THREADS = 256
#: upper bound on the grid (None: 16 blocks per SM); the kernels grid-stride over tiles of
#: THREADS * ILP neurons; tests lower it to check that T*N larger than one grid is handled.
MAX_BLOCKS: Optional[int] = None

_SM_COUNT: dict = {}


def grid_size(n: int, device_index: int) -> int:
    """Blocks for ``n`` neurons: one tile of ``THREADS * ILP`` neurons per block, capped."""
    limit = MAX_BLOCKS
    if limit is None:
        if device_index not in _SM_COUNT:
            _SM_COUNT[device_index] = torch.cuda.get_device_properties(device_index).multi_processor_count
        limit = 16 * _SM_COUNT[device_index]
    tile = THREADS * ILP
    return max(1, min((n + tile - 1) // tile, int(limit)))


def _ptr(t: Optional[torch.Tensor]):
    return np.uint64(0 if t is None else t.data_ptr())


def _launch(name: str, dtype: torch.dtype, device: torch.device, n: int, args: tuple) -> None:
    """Launch kernel ``name`` (storage ``dtype``) over ``n`` neurons on ``device``'s current torch stream."""
    if device.type != "cuda":
        raise RuntimeError(f"neuroq CuPy kernels need CUDA tensors, got tensors on {device}")
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = cuda_function(name, dtype, index)
    with cupy.cuda.Device(index), _cupy_stream(cupy, torch.cuda.current_stream(index), index):
        fn((grid_size(n, index),), (THREADS,), args)


def _cupy_stream(cupy, torch_stream, index: int):
    """CuPy view of torch's stream: ``Stream.from_external`` (CUDA stream protocol, CuPy >= 14),
    else ``ExternalStream`` (deprecated in CuPy 14)."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None and hasattr(torch_stream, "__cuda_stream__"):
        return from_external(torch_stream)
    return cupy.cuda.ExternalStream(torch_stream.cuda_stream, index)


def _run(name: str, like: torch.Tensor, n: int, args: tuple) -> None:
    if n > 0:  # (a grid of no blocks is no launch)
        _launch(name, like.dtype, like.device, n, args)


def _step_launch(source: str, name: str, dtype: torch.dtype, device: torch.device, n: int, args: tuple) -> None:
    """Launch kernel ``name`` of a generated kernel's CUDA ``source`` (compiled once per source and dtype)
    over ``n`` neurons on ``device``'s current torch stream."""
    if device.type != "cuda":
        raise RuntimeError(f"neuroq CuPy kernels need CUDA tensors, got tensors on {device}")
    import cupy

    index = device.index if device.index is not None else torch.cuda.current_device()
    fn = cuda_step_function(source, name, dtype, index)
    with cupy.cuda.Device(index), _cupy_stream(cupy, torch.cuda.current_stream(index), index):
        fn((grid_size(n, index),), (THREADS,), args)


def _run_step(source: str, name: str, like: torch.Tensor, n: int, args: tuple) -> None:
    if n > 0:
        _step_launch(source, name, like.dtype, like.device, n, args)


class CupyKernels(Kernels):
    """The ``__global__`` kernels of ``neuron_kernels.cu``, launched with the constants as numpy
    scalars after the tensors (the argument lists of ``entry_points.cuh``).  Forward keeps H (SAF:
    X) in the storage dtype for backward, and writes it only when a backward will follow; a
    ``None`` gradient is a null pointer."""

    name = "cupy"

    def neuron(self, params):
        """The IF/LIF record's constants as the kernel's scalar arguments (multiplication by 1/tau)."""
        return neuron_constants(params, recip_div=True)

    def saf(self, params):
        """The SAF record's constants as the kernel's scalar arguments."""
        return saf_constants(params, recip_div=True)

    def surrogate(self, sg):
        """The surrogate constants ``sg`` as a tuple of kernel arguments."""
        return tuple(sg)

    def if_forward(self, c, x, v0, spike, v_seq, v_last, trace0, trace_last, for_backward):
        """Launch ``nq_if_family_forward`` on ``x`` ``[T, N]``; returns ``(H,)`` (the pre-spike potential in the
        storage dtype) when ``for_backward``, else ``()``."""
        T, N = x.shape
        saved = torch.empty_like(x) if for_backward else None  # H in the storage dtype
        _run("nq_if_family_forward", x, N,
             (_ptr(x), _ptr(v0), _ptr(spike), _ptr(v_seq), _ptr(saved), _ptr(v_last), _ptr(trace0),
              _ptr(trace_last), np.float32(c.trace_decay), np.int64(N), np.int32(T)) + tuple(c.neuron))
        return () if saved is None else (saved,)

    def if_backward(self, c, saved, g_spike, g_v_seq, g_v_last, g_x, g_v0):
        """Launch ``nq_if_family_backward`` from the saved H into ``g_x`` (and ``g_v0``)."""
        (h,) = saved
        T, N = h.shape
        _run("nq_if_family_backward", h, N,
             (_ptr(g_spike), _ptr(g_v_seq), _ptr(g_v_last), _ptr(h), _ptr(g_x), _ptr(g_v0),
              np.int64(N), np.int32(T)) + tuple(c.neuron) + tuple(c.sg))

    def saf_forward(self, c, u, a0, a_seq, a_last, for_backward):
        """Launch ``nq_saf_forward_kernel`` on ``u`` ``[T, N]``; returns ``(X,)`` (the value the backward needs, in
        the storage dtype) when ``for_backward``, else ``()``."""
        T, N = u.shape
        x_saved = torch.empty_like(u) if for_backward else None
        _run("nq_saf_forward_kernel", u, N,
             (_ptr(u), _ptr(a0), _ptr(a_seq), _ptr(x_saved), _ptr(a_last), np.int64(N), np.int32(T))
             + tuple(c.neuron))
        return () if x_saved is None else (x_saved,)

    def saf_backward(self, c, saved, g_a_seq, g_a_last, g_u, g_a0):
        """Launch ``nq_saf_backward_kernel`` from the saved X into ``g_u`` (and ``g_a0``)."""
        (x_saved,) = saved
        T, N = x_saved.shape
        _run("nq_saf_backward_kernel", x_saved, N,
             (_ptr(g_a_seq), _ptr(g_a_last), _ptr(x_saved), _ptr(g_u), _ptr(g_a0), np.int64(N), np.int32(T))
             + tuple(c.neuron) + tuple(c.sg))

    def surrogate_backward(self, sg, x, g, g_x):
        """Launch ``nq_surrogate_backward_kernel``: ``g_x = g * sg'(x)`` over all elements."""
        n = x.numel()
        _run("nq_surrogate_backward_kernel", x, n, (_ptr(x), _ptr(g), _ptr(g_x), np.int64(n)) + tuple(sg))

    # ---- generated kernels (step_entry_points.cuh) ----------------------------------------------
    def step_module(self, prog, dtype):
        """The generated kernel's CUDA source (compiled by CuPy on first launch, per device)."""
        return prog.text("cuda")

    def step_constants(self, prog):
        """The constants and the surrogates' fields of a generated kernel as numpy scalars."""
        from .generated import cuda_constants

        return cuda_constants(prog)

    def step_forward(self, c, x, states0, spike, seqs, lasts, for_backward):
        """Launch ``nq_step_forward``: the states stacked ``[K, N]``, the kept sequences one ``[count, T, N]``
        buffer (``seqs`` are its views) with a bit mask; returns ``(x, saved)`` with ``saved`` the fp32
        values the step's backward is recomputed from, ``[NSAVE, T, N]`` (``NQStep::forward_save``), when
        ``for_backward``, else ``()`` (``x`` only gives the backward its shape and dtype; it is not read)."""
        T, N = x.shape
        K = c.n_states
        st0 = torch.stack(tuple(states0))
        last = torch.empty((K, N), dtype=x.dtype, device=x.device)
        mask = sum(1 << i for i, q in enumerate(seqs) if q is not None)
        seq_base = next((q for q in seqs if q is not None), None)  # slot 0 of the [count, T, N] buffer
        saved = (torch.empty((max(1, c.n_save), T, N), dtype=torch.float32, device=x.device) if for_backward
                 else None)
        _run_step(c.module, "nq_step_forward", x, N,
                  (_ptr(x), _ptr(st0), _ptr(spike), _ptr(seq_base), np.int32(mask), _ptr(saved), _ptr(last),
                   np.int64(N), np.int32(T)) + tuple(c.consts))
        for i, t in enumerate(lasts):
            t.view(-1).copy_(last[i])
        return (x, saved) if for_backward else ()

    def step_backward(self, c, saved, g_spike, g_seqs, g_lasts, g_x, g_states0):
        """Launch ``nq_step_backward`` from the saved values: the wanted initial-state gradients come out
        stacked and are copied into ``g_states0``."""
        x, values = saved
        T, N = x.shape
        K = c.n_states
        mask = sum(1 << i for i, g in enumerate(g_seqs) if g is not None)
        g_seq = torch.stack([g for g in g_seqs if g is not None]) if mask else None
        g_last = None
        if any(g is not None for g in g_lasts):
            g_last = torch.stack([torch.zeros((N,), dtype=x.dtype, device=x.device) if g is None else g
                                  for g in g_lasts])
        want = any(g is not None for g in g_states0)
        g_st0 = torch.empty((K, N), dtype=x.dtype, device=x.device) if want else None
        _run_step(c.module, "nq_step_backward", x, N,
                  (_ptr(values), _ptr(g_spike), _ptr(g_seq), np.int32(mask), _ptr(g_last), _ptr(g_x),
                   _ptr(g_st0), np.int64(N), np.int32(T)) + tuple(c.consts) + tuple(c.sg))
        for i, g in enumerate(g_states0):
            if g is not None:
                g.copy_(g_st0[i])


KERNELS = CupyKernels()


def if_family_cupy(x_seq, v0, params, surrogate_function, store_v_seq=False, trace=None) -> KernelOut:
    """CuPy launcher of the IF/LIF family: :func:`neuroq.ops.launch.if_family` on the CUDA kernels."""
    return if_family(KERNELS, x_seq, v0, params, surrogate_function, store_v_seq, trace)


def saf_cupy(u_hat_seq, a0, params, surrogate_function, store_v_seq=False) -> KernelOut:
    """CuPy launcher of the SAF neuron: :func:`neuroq.ops.launch.saf` on the CUDA kernels."""
    return saf(KERNELS, u_hat_seq, a0, params, surrogate_function, store_v_seq)


def surrogate_backward_cuda(x: torch.Tensor, grad: torch.Tensor, sg: tuple) -> Optional[torch.Tensor]:
    """``grad * sg'(x)`` in one kernel on CUDA tensors (``None`` for a dtype without a kernel)."""
    return surrogate_backward(KERNELS, x, grad, sg)


def generated_launcher(*args, **kwargs):
    """The registry entry of the generated kernels (family ``"generated"``); they run through
    :func:`neuroq.ops.generated.launch`."""
    raise RuntimeError("the generated kernels run through neuroq.ops.generated.launch(backend, program, ...)")


register("cupy", "if", if_family_cupy)
register("cupy", "lif", if_family_cupy)
register("cupy", "saf", saf_cupy)
register("cupy", "generated", generated_launcher)  # the kernels generated from a step (neuroq.ops.generated)

# (the compile settings and storage types stay importable from here, where they used to live)
__all__ = ["KERNELS", "CupyKernels", "if_family_cupy", "saf_cupy", "surrogate_backward_cuda", "Unsupported",
           "KERNEL_DIR", "KERNEL_SOURCES", "ILP", "CUPY_ADDED_OPTIONS", "STORAGE_TYPES", "compile_options",
           "torch_reciprocal"]
