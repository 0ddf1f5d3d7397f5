r"""Quantized layers of MaQD (Sawada, Saiin, Suetake, arXiv 2403.14999): weight-standardized,
:math:`M_w`-state convolution / linear layers and the :math:`M_a`-state activation.

Forward of :class:`QuantConv2d` / :class:`QuantLinear` (full-precision master weights :math:`W`):

.. math::
    \hat W_{o,:} = \frac{W_{o,:} - \operatorname{mean}(W_{o,:})}{\sqrt{\operatorname{var}(W_{o,:}) + \epsilon}}
    \quad\text{(weight standardization, Qiao et al. 2019, per output channel over its fan-in)},

.. math::
    W^q = g \odot Q_w(\hat W; M_w),\qquad y = W^q * x + b,

with :math:`Q_w` the symmetric scaled round-clip of :func:`neuroq.quant.quantize_weight` and an
optional learnable per-output-channel gain :math:`g` (initialised to :math:`1/\sqrt{\text{fan-in}}`,
the scaling of OTTT's ``ScaledWSConv2d``; useful for a classifier not followed by a normalization).
Gradients reach :math:`W` through the STE of :math:`Q_w` and through the standardization.

:class:`QuantAct`: :math:`a = \Delta_a\,\mathrm{clip}(\lfloor h/\Delta_a + \tfrac12\rfloor, 0, M_a-1)` with
:math:`\Delta_a = r/(M_a-1)`; :math:`M_a = 2` is a single-step spiking neuron with threshold :math:`\Delta_a/2`.

Both conv/linear classes subclass ``nn.Conv2d`` / ``nn.Linear``, so :class:`neuroq.energy.EnergyMeter`
counts them as synaptic layers with no registration.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as tF

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real, check_step_input
from ..neuron.base import Neuron
from ..quant import ActQuantizer, WeightQuantizer


def _check_states(name, states):
    if states is None:
        return None
    return check_int(name, states, ge=2)


def standardize_weight(w: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    r"""Weight standardization :math:`\hat W_{o,:} = (W_{o,:} - \mu_o)/\sqrt{\sigma_o^2 + \epsilon}`,
    mean and (biased) variance over every axis but the first (Qiao et al., arXiv 1903.10520)."""
    dims = tuple(range(1, w.dim()))
    mean = w.mean(dim=dims, keepdim=True)
    var = w.var(dim=dims, unbiased=False, keepdim=True)
    return (w - mean) * torch.rsqrt(var + eps)


class _QuantWeightMixin:
    """Shared weight path: standardize -> quantize -> gain."""

    def _init_quant(self, w_states, w_step, ws_eps, gain, weight_standardization):
        self.w_states = _check_states("w_states", w_states)
        self.ws_eps = check_real("ws_eps", ws_eps, gt=0)
        self.weight_standardization = check_bool("weight_standardization", weight_standardization)
        check_bool("gain", gain)
        self.quantizer = None if self.w_states is None else WeightQuantizer(self.w_states, w_step)
        if gain:
            fan_in = self.weight[0].numel()
            self.gain = nn.Parameter(torch.full((self.weight.shape[0],), 1.0 / math.sqrt(fan_in)))
        else:
            self.register_parameter("gain", None)

    def _gain_view(self):
        return self.gain.view(-1, *([1] * (self.weight.dim() - 1)))

    def standardized_weight(self) -> torch.Tensor:
        """:math:`\\hat W` (or :math:`W` itself with ``weight_standardization=False``)."""
        if self.weight_standardization:
            return standardize_weight(self.weight, self.ws_eps)
        return self.weight

    def quantized_weight(self) -> torch.Tensor:
        """The effective (fake-quantized) weight :math:`g \\odot Q_w(\\hat W)` used in forward."""
        w = self.standardized_weight()
        if self.quantizer is not None:
            w = self.quantizer(w)
        if self.gain is not None:
            w = w * self._gain_view()
        return w

    @torch.no_grad()
    def integer_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(int32 weights, per-output-channel float scale)`` with
        ``ints * scale[:, None, ...] == quantized_weight()`` (requires ``w_states``)."""
        if self.quantizer is None:
            raise ValueError(f"{type(self).__name__} has w_states=None (full precision): no integer weights")
        ints, s = self.quantizer.integer(self.standardized_weight())
        scale = torch.full((ints.shape[0],), float(s), dtype=self.weight.dtype, device=self.weight.device)
        if self.gain is not None:
            scale = scale * self.gain.detach()
        return ints, scale


class QuantConv2d(_QuantWeightMixin, nn.Conv2d):
    r"""``nn.Conv2d`` with weight standardization and :math:`M_w`-state weights (MaQD, arXiv 2403.14999).

    See the module docstring for the equations.  Args are those of ``nn.Conv2d`` plus:

    Args:
        w_states: :math:`M_w \ge 2`, or ``None`` for full-precision (standardized) weights.
        w_step: quantizer step in units of :math:`\hat W`'s std; ``None``: MSE-optimal for a Gaussian
            (:func:`neuroq.quant.gaussian_mse_step`).
        ws_eps: :math:`\epsilon` of the standardization.
        gain: learnable per-output-channel gain :math:`g` (init :math:`1/\sqrt{\text{fan-in}}`).
        weight_standardization: turn the standardization off (then the quantizer sees raw weights).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, w_states: Optional[int] = 3,
                 w_step: Optional[float] = None, ws_eps: float = 1e-5, gain: bool = False,
                 weight_standardization: bool = True, padding_mode: str = "zeros"):
        check_int("in_channels", in_channels, ge=1)
        check_int("out_channels", out_channels, ge=1)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode)
        self._init_quant(w_states, w_step, ws_eps, gain, weight_standardization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"QuantConv2d expects input [N, C, H, W], got shape {tuple(x.shape)} "
                             "(wrap it in SeqToANNContainer for [T, N, C, H, W])")
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", w_states={self.w_states}, gain={self.gain is not None}"


class QuantLinear(_QuantWeightMixin, nn.Linear):
    r"""``nn.Linear`` with weight standardization and :math:`M_w`-state weights (MaQD, arXiv 2403.14999).

    :math:`y = (g\odot Q_w(\hat W))\,x + b`; arguments as :class:`QuantConv2d`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, w_states: Optional[int] = 3,
                 w_step: Optional[float] = None, ws_eps: float = 1e-5, gain: bool = False,
                 weight_standardization: bool = True):
        check_int("in_features", in_features, ge=1)
        check_int("out_features", out_features, ge=1)
        super().__init__(in_features, out_features, bias)
        self._init_quant(w_states, w_step, ws_eps, gain, weight_standardization)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tF.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self):
        return super().extra_repr() + f", w_states={self.w_states}, gain={self.gain is not None}"


class QuantAct(Neuron):
    r"""MaQD activation quantizer with :math:`M_a` non-negative states (arXiv 2403.14999):

    .. math::
        \Delta_a = \frac{r}{M_a - 1},\qquad
        a = \Delta_a\,\mathrm{clip}(\lfloor h/\Delta_a + \tfrac12\rfloor,\ 0,\ M_a - 1) \in [0, r],

    i.e. the input range :math:`[0, r]` (``a_range``) is split into :math:`M_a - 1` steps, so the
    output range does not change with :math:`M_a` and large :math:`M_a` tends to the clipped ReLU
    :math:`\min(\max(h, 0), r)`.  Backward: clipped STE :math:`\mathbb 1[0 \le h \le r]` or a
    pluggable surrogate (see :func:`neuroq.quant.round_clip`).  With ``a_states=2`` (and the default
    :math:`r = 1`) the output is a spike :math:`\Theta(h - \tfrac12)`: a single-step spiking neuron
    with threshold ``v_threshold`` :math:`=\Delta_a/2` (recorded by :mod:`neuroq.viz` and the energy
    meter like any neuroq neuron).  The integer form of the output is :math:`a/\Delta_a \in \{0..M_a-1\}`
    (:func:`neuroq.quant.export` folds :math:`\Delta_a` into the next layer's scale).  It has no state;
    ``'s'`` and ``'m'`` step modes give the same elementwise map.

    Args:
        a_states: :math:`M_a \ge 2`, or ``None`` for full precision (plain, unclipped ReLU).
        a_range: :math:`r > 0`, the input mapped to the top level (default 1).
        surrogate: ``None``/``'ste'``, ``'s2nn'`` (:class:`neuroq.surrogate.S2NN`) or any
            callable / SpikingJelly surrogate.
        step_mode: ``'s'`` or ``'m'``.
    """

    def __init__(self, a_states: Optional[int] = 2, a_range: float = 1.0, surrogate=None, step_mode: str = "s"):
        super().__init__()
        self.a_states = _check_states("a_states", a_states)
        self.a_range = check_real("a_range", a_range, gt=0)
        self.step = None if self.a_states is None else self.a_range / (self.a_states - 1)
        self.quantizer = None if self.a_states is None else ActQuantizer(self.a_states, self.step, surrogate)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))

    @property
    def v_threshold(self) -> float:
        """Input level of the first step, :math:`\\Delta_a/2` (0 for the full-precision ReLU)."""
        return 0.0 if self.step is None else self.step / 2

    def _act(self, h):
        if self.quantizer is None:
            return torch.relu(h)
        return self.quantizer(h)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        check_step_input(type(self).__name__, x, "s")
        return self._act(x)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        check_step_input(type(self).__name__, x_seq, "m")
        return self._act(x_seq)

    def extra_repr(self):
        return f"a_states={self.a_states}, a_range={self.a_range}, step_mode={self.step_mode}"
