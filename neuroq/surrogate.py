r"""neuroq's surrogate gradients (SpikingJelly-compatible ``SurrogateFunctionBase`` subclasses).

:class:`S2NN` — the single-step surrogate of S²NN/S³NN (Suetake, Ikegawa, Saiin, Sawada,
"S³NN: Time step reduction of spiking surrogate gradients for training energy efficient
single-step spiking neural networks", arXiv 2201.10879, *Neural Networks* 2023).  The paper's
own surrogate was not available to us; neuroq's default derives one the way the paper's abstract
describes, "reducing the surrogate gradient for multi-time-step SNNs to a single time step" (neuroq's
own derivation, not confirmed against the paper).  The derivation is in :class:`S2NN`'s docstring;
:func:`s2nn_gradient` evaluates it exactly and :func:`if_rate` gives the multi-step rate whose gradient
it is.

Every surrogate here works on SpikingJelly 0.0.0.0.14 and 2.0.0: the base class is built with
``alpha=`` by keyword, ``spiking_function(x, alpha, ...)`` is static, and :meth:`forward` is
overridden so the extra parameters (``t_ref``, ``v_threshold``, ``per_step``) are used on both.
"""
from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn as nn

from . import _sj
from ._validate import check_int
from ._validate import check_real
from .functional.s2nn import PER_STEP, S2NNParameters  # noqa: F401  (PER_STEP: re-exported)


def per_step_derivative(x: torch.Tensor, alpha: float, per_step: Union[str, nn.Module] = "sigmoid") -> torch.Tensor:
    r"""Derivative :math:`\sigma'_\alpha(x)` of a per-step surrogate at ``x = h - V_th``.

    * ``'sigmoid'``: :math:`\alpha\,\mathrm{sig}(\alpha x)(1-\mathrm{sig}(\alpha x))` (SpikingJelly ``Sigmoid``)
    * ``'atan'``: :math:`\frac{\alpha/2}{1 + (\frac{\pi}{2}\alpha x)^2}` (SpikingJelly ``ATan``)
    * ``'rect'``: :math:`\alpha\,\mathbb{1}[|x| < \frac{1}{2\alpha}]` (rectangular / box surrogate)
    * a SpikingJelly surrogate module: its backward at ``x`` (evaluated with autograd).
    """
    if isinstance(per_step, nn.Module):
        with torch.enable_grad():
            xx = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(per_step(xx).sum(), xx)
        return g
    if per_step == "sigmoid":
        sg = torch.sigmoid(alpha * x)
        return alpha * sg * (1.0 - sg)
    if per_step == "atan":
        return (alpha / 2.0) / (1.0 + (math.pi / 2.0 * alpha * x) ** 2)
    if per_step == "rect":
        return alpha * (x.abs() < 0.5 / alpha).to(x.dtype)
    raise ValueError(f"per_step must be one of {PER_STEP} or a SpikingJelly surrogate module, got {per_step!r}")


def if_rate(u: torch.Tensor, t_ref: int, v_threshold: float = 1.0) -> torch.Tensor:
    r"""Firing rate :math:`r(u) = \frac{1}{T_{ref}}\sum_{t=1}^{T_{ref}} s_t` of a soft-reset IF neuron
    (threshold :math:`V_{th}`, :math:`v_0 = 0`) driven by the constant input ``u`` for ``t_ref`` steps:
    :math:`h_t = v_{t-1} + u,\ s_t = \Theta(h_t - V_{th}),\ v_t = h_t - V_{th}s_t`.

    For :math:`0 \le u \le V_{th}` this is :math:`\lfloor T_{ref}u/V_{th}\rfloor / T_{ref}` (up to float
    rounding at the steps), 0 for :math:`u < 0` and 1 for :math:`u > V_{th}`."""
    check_int("t_ref", t_ref, ge=1)
    v = torch.zeros_like(u)
    n = torch.zeros_like(u)
    for _ in range(t_ref):
        h = v + u
        s = (h - v_threshold >= 0).to(u.dtype)
        n = n + s
        v = h - v_threshold * s
    return n / t_ref


def s2nn_gradient(u: torch.Tensor, t_ref: int, alpha: float, v_threshold: float = 1.0,
                  per_step: Union[str, nn.Module] = "sigmoid") -> torch.Tensor:
    r"""The reduced (single-step) surrogate gradient :math:`\frac{dr}{du}(u)`, evaluated exactly.

    It is the BPTT surrogate gradient of :func:`if_rate` (reset kept in the graph), i.e. the finite
    sum of the :class:`S2NN` docstring, computed by the forward-mode recursion

    .. math::
        g_1 = 1,\quad g_{t+1} = 1 + g_t\,(1 - V_{th}\,\sigma'_t),\quad
        \frac{dr}{du} = \frac{1}{T_{ref}}\sum_{t=1}^{T_{ref}} \sigma'_t\, g_t,
        \quad \sigma'_t = \sigma'_\alpha(h_t - V_{th}),

    along the forward trajectory :math:`h_t` of the IF neuron (cost: ``t_ref`` elementwise steps).

    ``t_ref`` must be an integer >= 1, ``v_threshold`` finite and > 0, ``alpha`` finite and > 0
    (unless ``per_step`` is a module, whose own parameters apply).

    Inputs: ``u`` of any shape.  Outputs: :math:`dr/du`, same shape and dtype.

    Example::

        >>> import torch
        >>> from neuroq.surrogate import s2nn_gradient
        >>> g = s2nn_gradient(torch.tensor([0.5]), t_ref=1, alpha=4.0)   # T_ref = 1: sigmoid'(u - 1)
        >>> round(float(g), 4)
        0.42
    """
    check_int("t_ref", t_ref, ge=1)
    check_real("v_threshold", v_threshold, gt=0)
    if not isinstance(per_step, nn.Module):
        check_real("alpha", alpha, gt=0)
    v = torch.zeros_like(u)
    g = torch.ones_like(u)
    acc = torch.zeros_like(u)
    for _ in range(t_ref):
        h = v + u
        x = h - v_threshold
        d = per_step_derivative(x, alpha, per_step)
        acc = acc + d * g
        s = (x >= 0).to(u.dtype)
        v = h - v_threshold * s
        g = 1.0 + g * (1.0 - v_threshold * d)
    return acc / t_ref


class _S2NNSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, t_ref, alpha, v_threshold, per_step):
        ctx.save_for_backward(x)
        ctx.params = (t_ref, alpha, v_threshold, per_step)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        t_ref, alpha, v_threshold, per_step = ctx.params
        with torch.no_grad():
            if isinstance(per_step, str) and x.dtype in (torch.float32, torch.float16, torch.bfloat16):
                from .ops.dispatch import surrogate_backward
                from .ops.params import s2nn_constants

                fused = surrogate_backward(x, grad_output, s2nn_constants(t_ref, alpha, v_threshold, per_step))
                if fused is not None:  # one fused pass instead of t_ref elementwise torch steps
                    return fused, None, None, None, None
            g = s2nn_gradient(x.detach() + v_threshold, t_ref, alpha, v_threshold, per_step)
        return grad_output * g.to(grad_output.dtype), None, None, None, None


class S2NN(_sj.SurrogateFunctionBase):
    r"""Single-step surrogate obtained by reducing a :math:`T_{ref}`-step IF neuron's BPTT surrogate
    gradient to one step (Suetake, Ikegawa, Saiin, Sawada, S²NN/S³NN, arXiv 2201.10879; the derivation
    below is neuroq's own reading of the paper's abstract).

    **Forward** (input ``x = u - V_th``, as every SpikingJelly neuron calls its surrogate):
    :math:`s = \Theta(x) = \Theta(u - V_{th})` with :math:`\Theta(0) = 1`.

    **Backward:** :math:`\partial s/\partial u := dr/du`, where :math:`r(u)` is the firing rate of a
    :math:`T_{ref}`-step soft-reset IF neuron driven by the constant ``u`` and :math:`dr/du` is what
    BPTT with the per-step surrogate :math:`\sigma'_\alpha` gives.

    *Derivation.* With :math:`v_0=0`, for :math:`t = 1..T_{ref}`:
    :math:`h_t = v_{t-1} + u`, :math:`s_t = \Theta(h_t - V_{th})`, :math:`v_t = h_t - V_{th}s_t`,
    and :math:`r = \frac{1}{T_{ref}}\sum_t s_t`.  BPTT replaces :math:`\partial s_t/\partial h_t` by
    :math:`\sigma'_t := \sigma'_\alpha(h_t - V_{th})` (evaluated on the forward trajectory) and keeps the
    reset in the graph, so with :math:`g_t := dh_t/du`:

    .. math::
        g_1 = 1,\qquad g_{t+1} = \frac{dv_t}{du} + 1 = g_t\,(1 - V_{th}\sigma'_t) + 1,
        \qquad \frac{dr}{du} = \frac{1}{T_{ref}}\sum_{t=1}^{T_{ref}} \sigma'_t\, g_t .

    Unrolled, this is the closed form

    .. math::
        \frac{dr}{du} = \frac{1}{T_{ref}} \sum_{t=1}^{T_{ref}} \sigma'_t
        \sum_{k=1}^{t} \prod_{j=k}^{t-1} \bigl(1 - V_{th}\sigma'_j\bigr),\qquad
        h_t - V_{th} = t\,u - V_{th}(n_{t-1} + 1),

    where :math:`n_{t-1}` is the number of spikes before step :math:`t`
    (:math:`\lfloor (t-1)u/V_{th}\rfloor` for :math:`0 \le u \le V_{th}`, 0 below, :math:`t-1` above).
    :func:`s2nn_gradient` evaluates it exactly by the recursion (``t_ref`` elementwise steps in the
    backward pass only; the forward pass is a single Heaviside).

    *Properties.*

    * :math:`T_{ref} = 1`: the sum has one term, :math:`dr/du = \sigma'_\alpha(u - V_{th})`, the
      per-step surrogate itself.
    * :math:`T_{ref} \to \infty`: summing the reset identity :math:`v_{T} = T u - V_{th}\sum_t s_t`
      (which holds in the surrogate graph too) gives
      :math:`dr/du = \frac{1}{V_{th}} - \frac{1}{T_{ref}V_{th}}\frac{dv_{T}}{du}`.  For
      :math:`0 < u < V_{th}` the neuron fires periodically, :math:`dv_T/du` stays bounded (each
      firing step multiplies it by :math:`1 - V_{th}\sigma'_t`, of modulus < 1 when
      :math:`0 < V_{th}\sigma'_t < 2`), and :math:`dr/du \to 1/V_{th}`; outside, :math:`h_t - V_{th}`
      drifts away from 0 linearly in t, :math:`\sigma'_t` vanishes and :math:`dr/du \to 0`.  The limit is
      the box :math:`\frac{1}{V_{th}}\mathbb{1}[0 < u < V_{th}]` — the hard-sigmoid straight-through
      estimator of BNNs; finite :math:`T_{ref}` and :math:`\alpha` give a smoothed, ragged box.
    * Detaching the reset instead would give :math:`g_t = t` and a gradient growing like
      :math:`T_{ref}`, so the reset is kept in the graph.

    Args:
        t_ref: number of steps :math:`T_{ref}` of the multi-step neuron being reduced (>= 1).
        alpha: sharpness :math:`\alpha` of the per-step surrogate (> 0).
        v_threshold: :math:`V_{th}` of the neuron this surrogate serves (the input is ``u - V_th``).
        per_step: the per-step surrogate :math:`\sigma'_\alpha`: ``'sigmoid'`` (default, SpikingJelly's
            default surrogate), ``'atan'``, ``'rect'``, or any SpikingJelly surrogate module (then
            ``alpha`` is ignored and the module's own parameters apply).
        spiking: SpikingJelly's flag; ``False`` (primitive mode) is not defined for this surrogate.

    The four parameters form a :class:`~neuroq.functional.S2NNParameters` record (:attr:`params`).
    Backward of fp32/fp16/bf16 tensors with a string ``per_step`` runs as one fused pass of the
    ``'cpu'``/``'cupy'`` kernel where available (the recursion below, per element).

    Inputs: ``x = u - V_th`` of any shape.  Outputs: :math:`\Theta(x)`, same shape and dtype.

    Example::

        >>> import torch
        >>> from neuroq.surrogate import S2NN
        >>> sg = S2NN(t_ref=4, alpha=4.0)
        >>> x = torch.tensor([-0.5, 0.0, 0.5], requires_grad=True)
        >>> sg(x).tolist()
        [0.0, 1.0, 1.0]

    SpikingJelly's own CuPy neuron backends need a ``cuda_code`` this class does not provide: with
    SpikingJelly neurons use ``backend='torch'``; neuroq's neurons have a device version of it.
    """

    def __init__(self, t_ref: int = 4, alpha: float = 4.0, v_threshold: float = 1.0,
                 per_step: Union[str, nn.Module] = "sigmoid", spiking: bool = True):
        p = S2NNParameters(t_ref=t_ref, alpha=alpha, v_threshold=v_threshold, per_step=per_step)
        super().__init__(alpha=p.alpha)
        self.spiking = spiking
        self.t_ref = p.t_ref
        self.v_threshold = p.v_threshold
        self.per_step = p.per_step

    @property
    def params(self) -> S2NNParameters:
        """The surrogate's parameters as a (validated) :class:`~neuroq.functional.S2NNParameters`."""
        return S2NNParameters(t_ref=self.t_ref, alpha=self.alpha, v_threshold=self.v_threshold,
                              per_step=self.per_step)

    def kernel_constants(self):
        """The fused kernels' arguments for this surrogate (``neuroq.ops.params.SURROGATE_FIELDS``), or
        ``None`` where the kernels have no version of it (a callable ``per_step``, a subclass that may
        change the gradient). The kernels find it by this method: they never import this module."""
        if type(self) is not S2NN or not isinstance(self.per_step, str) or \
                self.per_step not in ("sigmoid", "atan", "rect"):
            return None
        from .ops.params import s2nn_constants

        return s2nn_constants(self.t_ref, self.alpha, self.v_threshold, self.per_step)

    @staticmethod
    def spiking_function(x, alpha, t_ref: int = 4, v_threshold: float = 1.0, per_step="sigmoid"):
        """Heaviside forward, reduced-gradient backward (see the class docstring)."""
        return _S2NNSpike.apply(x, t_ref, alpha, v_threshold, per_step)

    @staticmethod
    def primitive_function(x, alpha):
        """Not defined for this surrogate: raises ``NotImplementedError`` (only ``spiking=True`` is supported)."""
        raise NotImplementedError("S2NN defines a surrogate gradient for spiking mode only "
                                  "(set spiking=True)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Theta(x)` for ``x = u - V_th`` with the reduced gradient in the backward pass (same shape and
        dtype as ``x``); overridden so ``t_ref``, ``v_threshold`` and ``per_step`` reach the spike function on
        both SpikingJelly versions."""
        if not self.spiking:
            return self.primitive_function(x, self.alpha)
        return self.spiking_function(x, self.alpha, self.t_ref, self.v_threshold, self.per_step)

    def gradient(self, x: torch.Tensor) -> torch.Tensor:
        """The backward factor :math:`\\partial s/\\partial x` at ``x = u - V_th`` (no autograd needed)."""
        return s2nn_gradient(x + self.v_threshold, self.t_ref, self.alpha, self.v_threshold, self.per_step)

    def extra_repr(self):
        """``t_ref``, ``alpha``, ``v_threshold``, ``per_step`` and ``spiking``, for the module's ``repr``."""
        ps = self.per_step if isinstance(self.per_step, str) else type(self.per_step).__name__
        return (f"t_ref={self.t_ref}, alpha={self.alpha}, v_threshold={self.v_threshold}, "
                f"per_step={ps}, spiking={self.spiking}")
