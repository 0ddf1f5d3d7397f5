r"""Scaled round-clip quantizers of MaQD (Sawada, Saiin, Suetake, "Magic for the Age of Quantized
DNNs", arXiv 2403.14999) and integer export of a quantized model.

MaQD quantizes weights (after weight standardization) and activations "using the same function",
the **scaled round-clip**

.. math::
    Q(x;\ \Delta, l, h) = \Delta\cdot\operatorname{clip}\bigl(\operatorname{round}(x/\Delta),\ l,\ h\bigr),

with integer bounds :math:`l \le h` (in units of the step :math:`\Delta`).  neuroq rounds half up,
:math:`\operatorname{round}(z) = \lfloor z + \tfrac12\rfloor`, everywhere, so the quantizer equals a
sum of Heaviside steps with :math:`\Theta(0) = 1` (SpikingJelly's convention):

.. math::
    \operatorname{clip}(\lfloor z + \tfrac12\rfloor, l, h) = l + \sum_{k=l+1}^{h} \Theta\bigl(z - k + \tfrac12\bigr).

**Backward.**  By default the clipped straight-through estimator (STE):
:math:`\partial Q/\partial x = \mathbb{1}[\,l \le x/\Delta \le h\,]` (1 between the outermost levels,
0 outside).  With ``surrogate=sg`` (any SpikingJelly surrogate, e.g. ``surrogate.Sigmoid()``, or
neuroq's :class:`neuroq.surrogate.S2NN`), the quantizer is evaluated as the Heaviside sum above with
each :math:`\Theta` replaced by ``sg``: forward identical, backward
:math:`\partial Q/\partial x = \sum_{k=l+1}^{h} sg'(x/\Delta - k + \tfrac12)`.
(With the STE and a :math:`\Delta` that requires grad, autograd also yields the LSQ step gradient
:math:`\partial Q/\partial\Delta = q - \mathbb{1}[l\le z\le h]\,z`; neuroq's layers keep :math:`\Delta` fixed.)

The paper's exact constants could not be read, so the ones used here are neuroq's choice; the level sets
below are neuroq's reading of the abstract (a reconstruction, not confirmed by the paper):

* **weights**, :math:`M_w` states, symmetric: levels :math:`\Delta_w\{-\tfrac{M_w-1}{2},\dots,\tfrac{M_w-1}{2}\}`
  (0 included for odd :math:`M_w`, half-integers for even :math:`M_w`), see :func:`quantize_weight`;
* **activations**, :math:`M_a` states, non-negative: levels :math:`\Delta_a\{0,\dots,M_a-1\}`;
  :math:`M_a = 2` gives spikes :math:`\Delta_a\,\Theta(h - \Delta_a/2)`, see :func:`quantize_activation`.

The module forms (:class:`neuroq.layer.quant.WeightQuantizer`, ``ActQuantizer``) are the parts the
quantized layers take (``QuantLinear(..., weight_quant=WeightQuantizer(3))``); :mod:`neuroq.quant.integer`
turns a trained model into integers.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Optional, Union

import torch

from .._validate import check_callable, check_int, check_real

__all__ = ["round_clip", "quantize_weight", "quantize_activation", "gaussian_mse_step"]


def _round_half_up(z: torch.Tensor) -> torch.Tensor:
    return torch.floor(z + 0.5)


class _RoundClipSTE(torch.autograd.Function):
    """``clip(floor(z + 1/2), lo, hi)`` on unit-step input ``z``; backward: STE inside [lo, hi]."""

    @staticmethod
    def forward(ctx, z, lo, hi):
        ctx.save_for_backward((z >= lo) & (z <= hi))
        return torch.clamp(_round_half_up(z), lo, hi)

    @staticmethod
    def backward(ctx, g):
        (mask,) = ctx.saved_tensors
        return g * mask.to(g.dtype), None, None


def _unit_round_clip(z: torch.Tensor, lo: int, hi: int, surrogate: Optional[Callable]) -> torch.Tensor:
    """Integer index ``clip(round(z), lo, hi)`` with STE or Heaviside-sum surrogate backward."""
    if surrogate is None:
        return _RoundClipSTE.apply(z, lo, hi)
    if hi == lo:
        return torch.full_like(z, float(lo))
    # vectorised Heaviside sum: one surrogate call on a [h-l, *z.shape] tensor
    k = torch.arange(lo + 1, hi + 1, dtype=z.dtype, device=z.device).view(-1, *([1] * z.dim()))
    steps = surrogate(z.unsqueeze(0) - k + 0.5)
    return lo + steps.sum(0)


def _check_bounds(lo, hi):
    lo = check_int("lo", lo)
    hi = check_int("hi", hi)
    if hi < lo:
        raise ValueError(f"hi must be >= lo, got lo={lo}, hi={hi}")
    return lo, hi


def _check_delta(delta):
    if isinstance(delta, torch.Tensor):
        if not bool((torch.isfinite(delta) & (delta > 0)).all()):
            raise ValueError("delta must be finite and > 0 everywhere")
        return delta
    return check_real("delta", delta, gt=0)


def round_clip(x: torch.Tensor, delta: Union[float, torch.Tensor], lo: int, hi: int,
               surrogate: Optional[Callable] = None) -> torch.Tensor:
    r"""Scaled round-clip :math:`Q(x;\Delta,l,h) = \Delta\,\mathrm{clip}(\lfloor x/\Delta + \frac12\rfloor, l, h)`
    (MaQD, arXiv 2403.14999).

    Args:
        x: input tensor.
        delta: step :math:`\Delta > 0` (a float or a tensor broadcastable to ``x``, e.g. per channel).
        lo, hi: integer clip bounds :math:`l \le h` in units of :math:`\Delta`; the output takes the
            :math:`h - l + 1` values :math:`\Delta\{l,\dots,h\}`.
        surrogate: ``None`` for the clipped STE :math:`\mathbb{1}[l \le x/\Delta \le h]`, or a callable
            (SpikingJelly surrogate) ``sg`` with Heaviside forward, giving
            :math:`\sum_{k=l+1}^{h} sg'(x/\Delta - k + \frac12)` in backward.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    delta = _check_delta(delta)
    lo, hi = _check_bounds(lo, hi)
    if surrogate is not None:
        check_callable("surrogate", surrogate)
    return delta * _unit_round_clip(x / delta, lo, hi, surrogate)


@functools.lru_cache(maxsize=None)
def gaussian_mse_step(states: int) -> float:
    r"""Step :math:`\Delta^*` of the MSE-optimal *uniform* :math:`M`-level symmetric quantizer
    (levels :math:`\Delta\{-\frac{M-1}{2},\dots,\frac{M-1}{2}\}`) for :math:`X\sim\mathcal N(0,1)`:
    :math:`\Delta^* = \arg\min_\Delta \mathbb E[(X - Q_\Delta(X))^2]` (Max, IRE Trans. IT 1960).

    Used as the default weight step, since weight standardization makes each output channel's
    weights zero-mean and unit-variance.  The MSE is evaluated in closed form per bin,
    :math:`\int_a^b (x-y)^2\varphi = [(1+y^2)\Phi(x) + (2y-x)\varphi(x)]_a^b`, and minimised by
    golden-section search; cached per ``states``.  For :math:`M = 2` the optimum is
    :math:`\Delta^* = 2\,\mathbb E|X| = 2\sqrt{2/\pi}`.
    """
    states = check_int("states", states, ge=2)
    c = (states - 1) / 2.0

    def Phi(x):
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))) if math.isfinite(x) else (1.0 if x > 0 else 0.0)

    def phi(x):
        return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0

    def mse(d):
        # sum over bins [t_k, t_k+1] of  int (x - y_k)^2 phi(x) dx = [(1 + y^2) Phi(x) + (2y - x) phi(x)]
        total = 0.0
        for k in range(states):
            y = d * (k - c)
            lo = -math.inf if k == 0 else y - d / 2
            hi = math.inf if k == states - 1 else y + d / 2

            def F(x):
                return (1 + y * y) * Phi(x) + ((2 * y - x) * phi(x) if math.isfinite(x) else 0.0)
            total += F(hi) - F(lo)
        return total

    a, b = 1e-3, 4.0
    g = (math.sqrt(5) - 1) / 2
    x1, x2 = b - g * (b - a), a + g * (b - a)
    f1, f2 = mse(x1), mse(x2)
    for _ in range(80):
        if f1 < f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - g * (b - a)
            f1 = mse(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + g * (b - a)
            f2 = mse(x2)
    return (a + b) / 2


def quantize_weight(w_hat: torch.Tensor, states: int, step: Union[float, torch.Tensor],
                    surrogate: Optional[Callable] = None) -> torch.Tensor:
    r"""Symmetric :math:`M`-state weight quantizer (MaQD, arXiv 2403.14999; neuroq's reading):

    .. math::
        c = \tfrac{M-1}{2},\qquad
        Q_w(\hat W) = \Delta\bigl(\mathrm{clip}(\lfloor \hat W/\Delta + c + \tfrac12\rfloor, 0, M-1) - c\bigr)
        = Q(\hat W + c\Delta;\ \Delta, 0, M-1) - c\Delta .

    Levels :math:`\Delta\{-c,\dots,c\}`: :math:`\{-\Delta,0,\Delta\}` for :math:`M=3`,
    :math:`\{\pm\Delta/2\}` for :math:`M=2`.  Backward (STE): 1 for :math:`|\hat W| \le c\Delta`, else 0.
    """
    states = check_int("states", states, ge=2)
    step = _check_delta(step)
    c = (states - 1) / 2.0
    return step * (_unit_round_clip(w_hat / step + c, 0, states - 1, surrogate) - c)


def quantize_activation(h: torch.Tensor, states: int, step: Union[float, torch.Tensor] = 1.0,
                        surrogate: Optional[Callable] = None) -> torch.Tensor:
    r"""Non-negative :math:`M`-state activation quantizer (MaQD, arXiv 2403.14999):
    :math:`a = Q(h;\ \Delta, 0, M-1) = \Delta\,\mathrm{clip}(\lfloor h/\Delta + \frac12\rfloor, 0, M-1)`.

    :math:`M = 2`: :math:`a = \Delta\,\Theta(h - \Delta/2)`, a single-step spike.  Backward: clipped
    STE :math:`\mathbb{1}[0 \le h \le (M-1)\Delta]` or the surrogate sum (see :func:`round_clip`).
    """
    states = check_int("states", states, ge=2)
    return round_clip(h, step, 0, states - 1, surrogate)
