r"""The launch layer both backends share: one calling convention, one flattening, one autograd
plumbing.

A backend is a :class:`Kernels` object that says how to run each kernel on its device
(:mod:`neuroq.ops.cpu`: ctypes calls into the C++ library; :mod:`neuroq.ops.cuda`: CuPy launches).
Everything else is here, the same for both:

* the launchers :func:`if_family` and :func:`saf` take the backend, then what every registered
  launcher takes (see :mod:`neuroq.ops`): the input sequence, the initial state, the **parameter
  record** of :mod:`neuroq.functional` and the surrogate; they check the case (device, storage
  dtype, a device version of the surrogate: :class:`~neuroq.ops.Unsupported` otherwise), let the
  backend pack the record's constants (:mod:`neuroq.ops.params`) and flatten ``[T, ...]`` to
  contiguous ``[T, N]`` (:func:`flat`);
* the output buffers, and the choice between a plain forward (no gradient needed) and the autograd
  Functions :class:`IFFamilyFunction` / :class:`SAFFunction`;
* backward: the incoming gradients cast and flattened (:func:`flat_grad`; a ``None`` gradient stays
  ``None``), the gradient buffers, the gradient of the initial state only when it is needed.

What forward keeps for backward is the backend's choice: the CPU kernels keep their inputs and
recompute the forward per block; the CUDA kernels keep H (the pre-spike potential) in the storage
dtype.  Backward is ``once_differentiable``: a double backward raises instead of being silently
wrong.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from . import KernelOut
from .params import STORAGE_TYPES, require_storage, require_surrogate


class Kernels:
    """How one backend runs the kernels; :func:`if_family`, :func:`saf` and
    :func:`surrogate_backward` call these methods.  Tensors are contiguous, ``[T, N]`` or ``[N]``, of
    one storage dtype; an optional tensor is ``None``.  The ``*_forward`` methods return the tensors
    their backward needs (saved with ``ctx.save_for_backward``; asked for with ``for_backward``)."""

    #: the backend's name in the registry (``'cpu'``, ``'cupy'``)
    name = ""

    def check(self, x: torch.Tensor) -> None:
        """Raise :class:`~neuroq.ops.Unsupported` when the kernels cannot take a tensor like ``x``."""

    def neuron(self, params):
        """The packed constants of an IF/LIF record (from :func:`~neuroq.ops.params.neuron_constants`)."""
        raise NotImplementedError

    def saf(self, params):
        """The packed constants of an SAF record (from :func:`~neuroq.ops.params.saf_constants`)."""
        raise NotImplementedError

    def surrogate(self, sg: tuple):
        """The packed surrogate constants ``sg`` (:func:`~neuroq.ops.params.surrogate_constants`)."""
        raise NotImplementedError

    def empty(self, like: torch.Tensor) -> torch.Tensor:
        """An uninitialised contiguous output buffer shaped like ``like``."""
        return torch.empty_like(like, memory_format=torch.contiguous_format)

    def if_forward(self, c: "Call", x, v0, spike, v_seq, v_last, trace0, trace_last, for_backward: bool) -> tuple:
        """IF/LIF forward into ``spike``, ``v_last`` and the optional ``v_seq``, ``trace_last``."""
        raise NotImplementedError

    def if_backward(self, c: "Call", saved: tuple, g_spike, g_v_seq, g_v_last, g_x, g_v0) -> None:
        """IF/LIF backward from what :meth:`if_forward` returned into ``g_x`` and ``g_v0`` (optional)."""
        raise NotImplementedError

    def saf_forward(self, c: "Call", u, a0, a_seq, a_last, for_backward: bool) -> tuple:
        """SAF forward into ``a_seq`` and ``a_last``."""
        raise NotImplementedError

    def saf_backward(self, c: "Call", saved: tuple, g_a_seq, g_a_last, g_u, g_a0) -> None:
        """SAF backward from what :meth:`saf_forward` returned into ``g_u`` and ``g_a0`` (optional)."""
        raise NotImplementedError

    def surrogate_backward(self, sg, x, g, g_x) -> None:
        """``g_x = g * sg'(x)`` elementwise (``sg`` packed)."""
        raise NotImplementedError

    def step_module(self, prog, dtype):
        """The compiled module of a generated kernel (:class:`~neuroq.ops.generated.StepProgram`) for storage
        ``dtype``."""
        raise NotImplementedError

    def step_constants(self, prog):
        """The packed run-time constants and surrogates of a generated kernel."""
        raise NotImplementedError

    def step_forward(self, c: "StepCall", x, states0, spike, seqs, lasts, for_backward: bool) -> tuple:
        """A generated kernel's forward into ``spike``, the per-state ``lasts`` and the kept ``seqs`` (a tuple
        with ``None`` for a sequence not kept; the kept ones are views of one ``[count, T, N]`` buffer)."""
        raise NotImplementedError

    def step_backward(self, c: "StepCall", saved: tuple, g_spike, g_seqs, g_lasts, g_x, g_states0) -> None:
        """A generated kernel's backward from what :meth:`step_forward` returned into ``g_x`` and the wanted
        ``g_states0`` (``None`` entries: not wanted)."""
        raise NotImplementedError


class Call:
    """The constants of one launch (packed by the backend once; kept by the autograd ctx)."""

    __slots__ = ("neuron", "sg", "store_v_seq", "trace_decay", "state_shape", "detach_state")

    def __init__(self, neuron, sg, state_shape=(), store_v_seq=False, trace_decay=0.0, detach_state=False):
        self.neuron, self.sg, self.store_v_seq, self.trace_decay = neuron, sg, store_v_seq, trace_decay
        self.state_shape = tuple(state_shape)
        self.detach_state = detach_state


def flat(x_seq: torch.Tensor, v0: torch.Tensor):
    """``(shape, T, N, x [T, N], v0 [N])``: contiguous, the state broadcast to one value per neuron
    and on ``x_seq``'s device and dtype."""
    shape = x_seq.shape
    T, N = shape[0], math.prod(shape[1:])
    if tuple(v0.shape) != tuple(shape[1:]):
        v0 = v0.expand(shape[1:])
    x2 = x_seq.contiguous().reshape(T, N)
    v2 = v0.to(device=x_seq.device, dtype=x_seq.dtype).contiguous().reshape(N)
    return shape, T, N, x2, v2


def flat_grad(g: Optional[torch.Tensor], shape, dtype) -> Optional[torch.Tensor]:
    """An incoming gradient in the storage dtype, contiguous, as ``shape`` (``None`` stays ``None``)."""
    return None if g is None else g.to(dtype).contiguous().reshape(shape)


def _state(c: Call, like: torch.Tensor) -> torch.Tensor:
    # the state's own tensor, not a view of a sequence (SpikingJelly detach_()es states)
    return torch.empty(c.state_shape, dtype=like.dtype, device=like.device)


# ---- IF / LIF --------------------------------------------------------------------------------
def _if_forward(k: Kernels, c: Call, x2, v2, trace0, for_backward: bool):
    spike = k.empty(x2)
    v_last = _state(c, v2)
    v_seq = k.empty(x2) if c.store_v_seq else None
    tr_last = _state(c, v2) if trace0 is not None else None
    saved = k.if_forward(c, x2, v2, spike, v_seq, v_last, trace0, tr_last, for_backward)
    return spike, v_last, v_seq, tr_last, saved


class IFFamilyFunction(torch.autograd.Function):
    """``(x [T,N], v0 [N], trace0 [N] | None, kernels, call) -> (spike, v_last, v_seq | None,
    trace_last | None)``; the trace carries no gradient."""

    @staticmethod
    def forward(ctx, x2, v2, trace0, k, c):
        """Run the backend's IF/LIF forward and save what its backward needs; the trace is marked
        non-differentiable."""
        ctx.set_materialize_grads(False)
        spike, v_last, v_seq, tr_last, saved = _if_forward(k, c, x2, v2, trace0, True)
        ctx.save_for_backward(*saved)  # freed by backward (not an attribute that outlives it)
        ctx.k, ctx.c = k, c
        if tr_last is not None:
            ctx.mark_non_differentiable(tr_last)
        return spike, v_last, v_seq, tr_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spike, g_v_last, g_v_seq, _g_trace):
        """Gradients of ``x`` and ``v0`` (the latter only when needed) from those of the spikes, ``v_last`` and
        ``v_seq``, by the backend's IF/LIF backward."""
        saved = ctx.saved_tensors
        T, N = saved[0].shape
        dtype, device = saved[0].dtype, saved[0].device
        # the flattened gradients stay referenced until the kernel has run (a data_ptr alone does not)
        gs = flat_grad(g_spike, (T, N), dtype)
        gvs = flat_grad(g_v_seq, (T, N), dtype)
        gvl = flat_grad(g_v_last, (N,), dtype)
        g_x = ctx.k.empty(saved[0])
        g_v0 = torch.empty((N,), dtype=dtype, device=device) if ctx.needs_input_grad[1] else None
        ctx.k.if_backward(ctx.c, saved, gs, gvs, gvl, g_x, g_v0)
        return g_x, g_v0, None, None, None


def if_family(k: Kernels, x_seq: torch.Tensor, v0: torch.Tensor, params, surrogate_function,
              store_v_seq: bool = False, trace=None) -> KernelOut:
    r"""The IF/LIF family on backend ``k`` (``params``: an :class:`~neuroq.functional.IFParameters`
    or :class:`~neuroq.functional.LIFParameters`): ``x_seq [T, ...]``, ``v0 [...]`` (broadcast) ->
    :class:`~neuroq.ops.KernelOut` ``(spike_seq, v_last, v_seq | None, trace_last | None)``.

    ``trace``: ``(trace0 [...] | None, decay)`` to also run OTTT's presynaptic trace
    :math:`\hat a[t] = \lambda\hat a[t-1] + S[t]` (no gradient).  Raises
    :class:`~neuroq.ops.Unsupported` for a tensor the backend cannot take, a dtype other than
    fp32/fp16/bf16 or a surrogate without a device version."""
    k.check(x_seq)
    require_storage(x_seq.dtype)
    sg = require_surrogate(surrogate_function)
    neuron = k.neuron(params)
    shape, T, N, x2, v2 = flat(x_seq, v0)
    c = Call(neuron, k.surrogate(sg), shape[1:], store_v_seq=bool(store_v_seq))
    tr0 = None
    if trace is not None:
        t0, decay = trace
        c.trace_decay = float(decay)  # rounded to fp32 by the backend, as torch rounds the scalar
        tr0 = torch.zeros_like(v2) if t0 is None else t0.detach().to(x_seq.dtype).contiguous().reshape(N)
    if torch.is_grad_enabled() and (x2.requires_grad or v2.requires_grad):
        spike, v_last, v_seq, tr = IFFamilyFunction.apply(x2, v2, tr0, k, c)
    else:
        spike, v_last, v_seq, tr, _ = _if_forward(k, c, x2, v2, tr0, False)
    return KernelOut(spike.reshape(shape), v_last, v_seq.reshape(shape) if v_seq is not None else None, tr)


# ---- SAF -------------------------------------------------------------------------------------
def _saf_forward(k: Kernels, c: Call, u2, a2, for_backward: bool):
    a_seq = k.empty(u2)
    a_last = _state(c, a2)
    saved = k.saf_forward(c, u2, a2, a_seq, a_last, for_backward)
    return a_seq, a_last, saved


class SAFFunction(torch.autograd.Function):
    """``(u_hat [T,N], a0 [N], kernels, call) -> (a_seq, a_last)``."""

    @staticmethod
    def forward(ctx, u2, a2, k, c):
        """Run the backend's SAF forward and save what its backward needs."""
        ctx.set_materialize_grads(False)
        a_seq, a_last, saved = _saf_forward(k, c, u2, a2, True)
        ctx.save_for_backward(*saved)
        ctx.k, ctx.c = k, c
        return a_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_a_seq, g_a_last):
        """Gradients of ``u_hat`` and ``a0`` (the latter only when needed and the state is not detached) from those
        of ``a_seq`` and ``a_last``, by the backend's SAF backward."""
        saved = ctx.saved_tensors
        T, N = saved[0].shape
        dtype, device = saved[0].dtype, saved[0].device
        ga, gl = flat_grad(g_a_seq, (T, N), dtype), flat_grad(g_a_last, (N,), dtype)  # referenced until the run
        g_u = ctx.k.empty(saved[0])
        want_a0 = ctx.needs_input_grad[1] and not ctx.c.detach_state
        g_a0 = torch.empty((N,), dtype=dtype, device=device) if want_a0 else None
        ctx.k.saf_backward(ctx.c, saved, ga, gl, g_u, g_a0)
        return g_u, g_a0, None, None


def saf(k: Kernels, u_hat_seq: torch.Tensor, a0: torch.Tensor, params, surrogate_function,
        store_v_seq: bool = False) -> KernelOut:
    """The SAF neuron on backend ``k`` (``params``: :class:`~neuroq.functional.SAFParameters`):
    ``-> KernelOut(a_seq, a_last, a_seq | None)`` equal to :func:`neuroq.functional.saf.saf_multi_step`
    (:class:`~neuroq.ops.Unsupported` for ``sr_box`` and the cases of :func:`if_family`)."""
    k.check(u_hat_seq)
    require_storage(u_hat_seq.dtype)
    consts = k.saf(params)  # Unsupported for sr_box
    sg = require_surrogate(surrogate_function)
    if params.detach_state:
        a0 = a0.detach()
    shape, T, N, u2, a2 = flat(u_hat_seq, a0)
    c = Call(consts, k.surrogate(sg), shape[1:], detach_state=bool(params.detach_state))
    if torch.is_grad_enabled() and (u2.requires_grad or a2.requires_grad):
        a_seq, a_last = SAFFunction.apply(u2, a2, k, c)
    else:
        a_seq, a_last, _ = _saf_forward(k, c, u2, a2, False)
    a_seq = a_seq.reshape(shape)
    return KernelOut(a_seq, a_last, a_seq if store_v_seq else None)


# ---- elementwise surrogate backward ----------------------------------------------------------
def surrogate_backward(k: Kernels, x: torch.Tensor, grad: torch.Tensor, sg: Optional[tuple]) -> Optional[torch.Tensor]:
    """``grad * sg'(x)`` in one fused pass on backend ``k`` (``sg``: surrogate constants of
    :mod:`neuroq.ops.params`), or ``None`` for a case without a kernel (the caller uses torch)."""
    if sg is None or x.dtype not in STORAGE_TYPES:
        return None
    xc = x.contiguous()
    gc = grad.to(x.dtype).expand_as(x).contiguous()
    out = k.empty(xc)
    k.surrogate_backward(k.surrogate(sg), xc, gc, out)
    return out


# ---- generated kernels (a neuron's own step, neuroq.ops.generated) --------------------------------
class StepCall:
    """The constants of one launch of a generated kernel (kept by the autograd ctx)."""

    __slots__ = ("module", "consts", "sg", "n_states", "store", "state_shape", "n_save")

    def __init__(self, module, consts, sg, n_states, store, state_shape, n_save=0):
        self.module, self.consts, self.sg = module, consts, sg
        self.n_states, self.store, self.state_shape = n_states, tuple(store), tuple(state_shape)
        self.n_save = n_save  # values per neuron and step the backward is recomputed from (NQStep::NSAVE)


def _step_forward(k: Kernels, c: StepCall, x2, s2, for_backward: bool):
    spike = k.empty(x2)
    lasts = tuple(_state(c, x2) for _ in range(c.n_states))
    count = sum(c.store)
    buf = torch.empty((count,) + tuple(x2.shape), dtype=x2.dtype, device=x2.device) if count else None
    slots = iter(range(count))
    seqs = tuple(buf[next(slots)] if keep else None for keep in c.store)
    saved = k.step_forward(c, x2, s2, spike, seqs, lasts, for_backward)
    return spike, lasts, seqs, saved


class StepFunction(torch.autograd.Function):
    """``(x [T,N], kernels, call, *states0 [N]) -> (spike, *last states, *state sequences | None)`` of a
    generated kernel; backward is the traced step's vector-Jacobian product in reverse time."""

    @staticmethod
    def forward(ctx, x2, k, c, *s2):
        """Run the backend's forward of the generated kernel and save what its backward needs."""
        ctx.set_materialize_grads(False)
        spike, lasts, seqs, saved = _step_forward(k, c, x2, s2, True)
        ctx.save_for_backward(*saved)
        ctx.k, ctx.c = k, c
        return (spike, *lasts, *seqs)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spike, *g_rest):
        """Gradients of ``x`` and of the initial states that need one, from those of the spikes, the last states
        and the kept sequences."""
        saved = ctx.saved_tensors
        c = ctx.c
        K = c.n_states
        T, N = saved[0].shape
        dtype, device = saved[0].dtype, saved[0].device
        gs = flat_grad(g_spike, (T, N), dtype)  # referenced until the kernel has run
        g_lasts = tuple(flat_grad(g, (N,), dtype) for g in g_rest[:K])
        g_seqs = tuple(flat_grad(g, (T, N), dtype) if keep else None for g, keep in zip(g_rest[K:], c.store))
        g_x = ctx.k.empty(saved[0])
        g_s0 = tuple(torch.empty((N,), dtype=dtype, device=device) if ctx.needs_input_grad[3 + i] else None
                     for i in range(K))
        ctx.k.step_backward(c, saved, gs, g_seqs, g_lasts, g_x, g_s0)
        return (g_x, None, None, *g_s0)


def step_family(k: Kernels, prog, x_seq: torch.Tensor, states0: tuple, store: tuple):
    """A generated kernel (``prog``: a :class:`~neuroq.ops.generated.StepProgram`) on backend ``k``:
    ``x_seq [T, ...]`` from the states ``states0`` (each ``[...]``, broadcast) ->
    :class:`~neuroq.ops.StepOut` ``(spike_seq, last states, state sequences)``, keeping the sequences
    ``store`` names.  Raises :class:`~neuroq.ops.Unsupported` for a tensor the backend cannot take or a
    dtype other than fp32/fp16/bf16."""
    from . import StepOut

    k.check(x_seq)
    require_storage(x_seq.dtype)
    K = prog.n_states
    if len(states0) != K or len(store) != K:
        raise ValueError(f"the step has {K} state(s), got {len(states0)} initial states and {len(store)} store flags")
    shape = x_seq.shape
    T, N = shape[0], math.prod(shape[1:])
    x2 = x_seq.contiguous().reshape(T, N)
    s2 = tuple((s if tuple(s.shape) == tuple(shape[1:]) else s.expand(shape[1:]))
               .to(device=x_seq.device, dtype=x_seq.dtype).contiguous().reshape(N) for s in states0)
    consts, sg = k.step_constants(prog)
    c = StepCall(k.step_module(prog, x_seq.dtype), consts, sg, K, store, shape[1:], prog.n_save)
    if torch.is_grad_enabled() and (x2.requires_grad or any(s.requires_grad for s in s2)):
        outs = StepFunction.apply(x2, k, c, *s2)
    else:
        spike, lasts, seqs, _ = _step_forward(k, c, x2, s2, False)
        outs = (spike, *lasts, *seqs)
    seqs = tuple(None if q is None else q.reshape(shape) for q in outs[1 + K:])
    return StepOut(outs[0].reshape(shape), tuple(outs[1:1 + K]), seqs)
