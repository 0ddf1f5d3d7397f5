r"""CuPy launchers of neuroq's fused multi-step kernels (``backend='cupy'``): the integrate-and-fire
family, SAF and the elementwise surrogate backward.

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
keeps the subnormal.)  Kernels are compiled by ``cupy.RawModule`` once per (dtype, options); tensors
are passed zero-copy by ``data_ptr`` on ``torch.cuda.current_stream()``.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import KERNEL_DIR, KernelOut, Unsupported, kernel_source, register
from .params import (STORAGE_TYPES, neuron_constants, require_storage, require_surrogate,  # noqa: F401
                     saf_constants, torch_reciprocal)

#: every CUDA source neuroq compiles (checked by tests/ops/test_cuda.py with nvcc/NVRTC)
KERNEL_SOURCES = ("neuron_kernels.cu",)
#: neurons per thread (registers in flight per thread: 2 * ILP loads with the prefetch)
ILP = 4
#: options every kernel is compiled with (FMA contraction off: bit-exact with torch).  CuPy itself
#: appends ``-ftz=true`` and ``--device-as-default-execution-space`` (see CUPY_ADDED_OPTIONS).
BASE_OPTIONS = ("--fmad=false", f"-DNQ_ILP={ILP}")
#: what ``cupy.RawModule`` adds to every NVRTC compile (CuPy 13/14); ``-ftz=true`` flushes fp32
#: subnormals (|x| < 1.18e-38) to zero, which torch's CUDA kernels do not do -- the only place the
#: kernels can differ from the torch reference in the forward pass
CUPY_ADDED_OPTIONS = ("--device-as-default-execution-space", "-ftz=true")

THREADS = 256
#: upper bound on the grid (None: 16 blocks per SM); the kernels grid-stride over tiles of
#: THREADS * ILP neurons; tests lower it to check that T*N larger than one grid is handled.
MAX_BLOCKS: Optional[int] = None


def compile_options(dtype: torch.dtype) -> tuple:
    """NVRTC options for storage ``dtype`` (the second half of the compile-cache key)."""
    if dtype not in STORAGE_TYPES:
        raise TypeError(f"CuPy kernels store fp32, fp16 or bf16, got {dtype}")
    return BASE_OPTIONS + (f"-DNQ_STORAGE={STORAGE_TYPES[dtype]}",)


# ---- compilation cache and launch ------------------------------------------------------------
_MODULES: dict = {}   # (dtype, options) -> cupy.RawModule
_FUNCTIONS: dict = {}  # (dtype, options, device index, name) -> kernel
_SM_COUNT: dict = {}


def _function(name: str, dtype: torch.dtype, device_index: int):
    import cupy

    options = compile_options(dtype)
    key = (dtype, options, device_index, name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        mod = _MODULES.get((dtype, options))
        if mod is None:
            mod = cupy.RawModule(code=kernel_source("neuron_kernels.cu"), options=options)
            _MODULES[(dtype, options)] = mod
        with cupy.cuda.Device(device_index):
            fn = mod.get_function(name)
        _FUNCTIONS[key] = fn
    return fn


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
    fn = _function(name, dtype, index)
    with cupy.cuda.Device(index), _cupy_stream(cupy, torch.cuda.current_stream(index), index):
        fn((grid_size(n, index),), (THREADS,), args)


def _cupy_stream(cupy, torch_stream, index: int):
    """CuPy view of torch's stream: ``Stream.from_external`` (CUDA stream protocol, CuPy >= 14),
    else ``ExternalStream`` (deprecated in CuPy 14)."""
    from_external = getattr(cupy.cuda.Stream, "from_external", None)
    if from_external is not None and hasattr(torch_stream, "__cuda_stream__"):
        return from_external(torch_stream)
    return cupy.cuda.ExternalStream(torch_stream.cuda_stream, index)


def _flat(x_seq: torch.Tensor, v0: torch.Tensor):
    shape = x_seq.shape
    T, N = shape[0], math.prod(shape[1:])
    if tuple(v0.shape) != tuple(shape[1:]):
        v0 = v0.expand(shape[1:])
    x2 = x_seq.contiguous().reshape(T, N)
    v2 = v0.to(device=x_seq.device, dtype=x_seq.dtype).contiguous().reshape(N)
    return shape, T, N, x2, v2


def _flat_grad(g: Optional[torch.Tensor], shape, dtype) -> Optional[torch.Tensor]:
    if g is None:
        return None
    return g.to(dtype).contiguous().reshape(shape)


# ---- IF / LIF --------------------------------------------------------------------------------
def _forward(x2, v0, neuron, store_v_seq: bool, keep_h: bool, trace0=None, trace_decay=0.0, state_shape=None):
    T, N = x2.shape
    state_shape = (N,) if state_shape is None else tuple(state_shape)
    spike = torch.empty_like(x2)
    v_last = torch.empty(state_shape, dtype=v0.dtype, device=v0.device)  # not a view (SpikingJelly detach_()es)
    v_seq = torch.empty_like(x2) if store_v_seq else None
    saved = torch.empty_like(x2) if keep_h else None  # H in the storage dtype (see module docstring)
    tr_last = torch.empty(state_shape, dtype=v0.dtype, device=v0.device) if trace0 is not None else None
    if N > 0:
        _launch("nq_if_family_forward", x2.dtype, x2.device, N,
                (_ptr(x2), _ptr(v0), _ptr(spike), _ptr(v_seq), _ptr(saved), _ptr(v_last), _ptr(trace0),
                 _ptr(tr_last), np.float32(trace_decay), np.int64(N), np.int32(T)) + tuple(neuron))
    return spike, v_last, v_seq, saved, tr_last


class IFFamilyFunction(torch.autograd.Function):
    """Autograd wrapper of the forward/backward kernels:
    ``(x [T,N], v0 [N], trace0 | None) -> (spike, v_last, v_seq | None, trace_last | None)``."""

    @staticmethod
    def forward(ctx, x2, v0, trace0, neuron, sg, store_v_seq, trace_decay, state_shape):
        ctx.set_materialize_grads(False)
        spike, v_last, v_seq, saved, tr_last = _forward(x2, v0, neuron, store_v_seq, True, trace0, trace_decay,
                                                        state_shape)
        ctx.save_for_backward(saved)  # freed after backward (not an attribute that outlives it)
        ctx.neuron, ctx.sg = neuron, sg
        if tr_last is not None:
            ctx.mark_non_differentiable(tr_last)
        return spike, v_last, v_seq, tr_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spike, g_v_last, g_v_seq, _g_trace):
        (saved,) = ctx.saved_tensors
        T, N = saved.shape
        dtype = saved.dtype
        g_x = torch.empty((T, N), dtype=dtype, device=saved.device)
        g_v0 = torch.empty((N,), dtype=dtype, device=saved.device) if ctx.needs_input_grad[1] else None
        if N > 0:
            # keep the contiguous copies referenced until the launch (data_ptr alone does not)
            gs = _flat_grad(g_spike, (T, N), dtype)
            gvs = _flat_grad(g_v_seq, (T, N), dtype)
            gvl = _flat_grad(g_v_last, (N,), dtype)
            _launch("nq_if_family_backward", dtype, saved.device, N,
                    (_ptr(gs), _ptr(gvs), _ptr(gvl), _ptr(saved), _ptr(g_x), _ptr(g_v0),
                     np.int64(N), np.int32(T)) + tuple(ctx.neuron) + tuple(ctx.sg))
        return g_x, g_v0, None, None, None, None, None, None


def if_family_multi_step(x_seq: torch.Tensor, v0: torch.Tensor, neuron: tuple, sg: tuple,
                         store_v_seq: bool = False, trace=None) -> KernelOut:
    """Run the fused kernels on CUDA tensors ``x_seq [T, ...]``, ``v0 [...]`` with constants from
    :func:`neuroq.ops.params.neuron_constants` / ``surrogate_constants``; non-contiguous inputs are
    copied to contiguous ones.  ``trace``: ``(trace0 | None, decay)`` for OTTT's trace."""
    if x_seq.dtype not in STORAGE_TYPES:
        raise TypeError(f"neuroq CuPy kernels store fp32, fp16 or bf16, got {x_seq.dtype}")
    shape, T, N, x2, v2 = _flat(x_seq, v0)
    tr0, decay = None, 0.0
    if trace is not None:
        t0, decay = trace
        tr0 = torch.zeros_like(v2) if t0 is None else t0.detach().to(x_seq.dtype).contiguous().reshape(N)
    if torch.is_grad_enabled() and (x2.requires_grad or v2.requires_grad):
        spike, v_last, v_seq, tr = IFFamilyFunction.apply(x2, v2, tr0, neuron, sg, bool(store_v_seq), decay,
                                                          shape[1:])
    else:
        spike, v_last, v_seq, _, tr = _forward(x2, v2, neuron, bool(store_v_seq), False, tr0, decay, shape[1:])
    return KernelOut(spike.reshape(shape), v_last, v_seq.reshape(shape) if v_seq is not None else None, tr)


def if_family_cupy(x_seq, v0, params, surrogate_function, store_v_seq=False, trace=None) -> KernelOut:
    """CuPy launcher of the IF/LIF family (an :class:`~neuroq.functional.IFParameters` or
    :class:`~neuroq.functional.LIFParameters` record) -> :class:`~neuroq.ops.KernelOut`; raises
    :class:`~neuroq.ops.Unsupported` for a surrogate or dtype without a kernel."""
    require_storage(x_seq.dtype)
    sg = require_surrogate(surrogate_function)
    return if_family_multi_step(x_seq, v0, neuron_constants(params, recip_div=True), sg, store_v_seq, trace)


register("cupy", "if", if_family_cupy)
register("cupy", "lif", if_family_cupy)


# ---- SAF neuron ------------------------------------------------------------------------------
def _saf_forward(u2, a0, consts, keep_x: bool, state_shape=None):
    T, N = u2.shape
    a_seq = torch.empty_like(u2)
    a_last = torch.empty((N,) if state_shape is None else tuple(state_shape), dtype=a0.dtype, device=a0.device)
    x_saved = torch.empty_like(u2) if keep_x else None
    if N > 0:
        _launch("nq_saf_forward_kernel", u2.dtype, u2.device, N,
                (_ptr(u2), _ptr(a0), _ptr(a_seq), _ptr(x_saved), _ptr(a_last), np.int64(N), np.int32(T))
                + tuple(consts))
    return a_seq, a_last, x_saved


class SAFFunction(torch.autograd.Function):
    """Autograd wrapper of the SAF kernels: ``(u_hat [T,N], a0 [N]) -> (a_seq, a_last)``."""

    @staticmethod
    def forward(ctx, u2, a0, consts, sg, state_shape):
        ctx.set_materialize_grads(False)
        a_seq, a_last, x_saved = _saf_forward(u2, a0, consts, True, state_shape)
        ctx.save_for_backward(x_saved)
        ctx.consts, ctx.sg = consts, sg
        return a_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_a_seq, g_a_last):
        (x_saved,) = ctx.saved_tensors
        T, N = x_saved.shape
        dtype = x_saved.dtype
        detach_state = bool(ctx.consts[1])
        g_u = torch.empty((T, N), dtype=dtype, device=x_saved.device)
        g_a0 = (torch.empty((N,), dtype=dtype, device=x_saved.device)
                if (ctx.needs_input_grad[1] and not detach_state) else None)
        if N > 0:
            ga = _flat_grad(g_a_seq, (T, N), dtype)  # referenced until the launch
            gl = _flat_grad(g_a_last, (N,), dtype)
            _launch("nq_saf_backward_kernel", dtype, x_saved.device, N,
                    (_ptr(ga), _ptr(gl), _ptr(x_saved), _ptr(g_u), _ptr(g_a0), np.int64(N), np.int32(T))
                    + tuple(ctx.consts) + tuple(ctx.sg))
        return g_u, g_a0, None, None, None


def saf_multi_step(u_hat_seq: torch.Tensor, a0: torch.Tensor, consts: tuple, sg: tuple):
    """Run the SAF kernels on CUDA tensors ``u_hat_seq [T, ...]``, ``a0 [...]`` with constants from
    :func:`neuroq.ops.params.saf_constants` / ``surrogate_constants``; ``-> (a_seq, a_last)``."""
    if u_hat_seq.dtype not in STORAGE_TYPES:
        raise TypeError(f"neuroq CuPy kernels store fp32, fp16 or bf16, got {u_hat_seq.dtype}")
    shape, T, N, u2, a2 = _flat(u_hat_seq, a0)
    if torch.is_grad_enabled() and (u2.requires_grad or a2.requires_grad):
        a_seq, a_last = SAFFunction.apply(u2, a2, consts, sg, shape[1:])
    else:
        a_seq, a_last, _ = _saf_forward(u2, a2, consts, False, shape[1:])
    return a_seq.reshape(shape), a_last


def saf_cupy(u_hat_seq, a0, params, surrogate_function, store_v_seq=False) -> KernelOut:
    """CuPy launcher of the SAF neuron (:class:`~neuroq.functional.SAFParameters`):
    ``-> KernelOut(a_seq, a_last, a_seq | None)``."""
    require_storage(u_hat_seq.dtype)
    consts = saf_constants(params, recip_div=True)
    sg = require_surrogate(surrogate_function)
    if params.detach_state:
        a0 = a0.detach()
    a_seq, a_last = saf_multi_step(u_hat_seq, a0, consts, sg)
    return KernelOut(a_seq, a_last, a_seq if store_v_seq else None)


register("cupy", "saf", saf_cupy)


# ---- elementwise surrogate backward ----------------------------------------------------------
def surrogate_backward_cuda(x: torch.Tensor, grad: torch.Tensor, sg: tuple) -> Optional[torch.Tensor]:
    """``grad * sg'(x)`` in one kernel on CUDA tensors (``None`` for a dtype without a kernel)."""
    if sg is None or x.dtype not in STORAGE_TYPES:
        return None
    xc = x.contiguous()
    gc = grad.to(x.dtype).expand_as(x).contiguous()
    out = torch.empty_like(xc)
    n = xc.numel()
    if n > 0:
        _launch("nq_surrogate_backward_kernel", x.dtype, x.device, n,
                (_ptr(xc), _ptr(gc), _ptr(out), np.int64(n)) + tuple(sg))
    return out


__all__ = ["KERNEL_DIR", "KERNEL_SOURCES", "compile_options", "torch_reciprocal", "if_family_cupy", "saf_cupy",
           "surrogate_backward_cuda", "Unsupported"]
