r"""Quantized layers of MaQD (Sawada, Saiin, Suetake, arXiv 2403.14999): weight-standardized,
:math:`M_w`-state convolution / linear layers and the :math:`M_a`-state activation.

Forward of :class:`QuantConv2d` / :class:`QuantLinear` (full-precision master weights :math:`W`):

.. math::
    \hat W_{o,:} = \frac{W_{o,:} - \operatorname{mean}(W_{o,:})}{\sqrt{\operatorname{var}(W_{o,:}) + \epsilon}}
    \quad\text{(weight standardization, Qiao et al. 2019, per output channel over its fan-in)},

.. math::
    W^q = g \odot Q_w(\hat W; M_w),\qquad y = W^q * x + b,

with :math:`Q_w` the symmetric scaled round-clip of :func:`neuroq.functional.quant.quantize_weight` and an
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
import torch.nn.functional as F

from .._validate import check_bool, check_callable, check_choice, check_int, check_real, check_step_input
from ..neuron.base import Neuron
from ..functional.quant import _round_half_up, gaussian_mse_step, quantize_activation, quantize_weight
from .ws import standardize_weight


# ---- the quantizer parts (module forms of neuroq.functional.quant) ----------------------------
def _resolve_surrogate(surrogate):
    """``None``/``'ste'`` -> None (clipped STE); ``'s2nn'`` -> neuroq's S2NN surrogate; callable as is."""
    if surrogate is None or surrogate == "ste":
        return None
    if surrogate == "s2nn":
        from ..surrogate import S2NN

        return S2NN()
    if isinstance(surrogate, str):
        raise ValueError(f"surrogate must be None, 'ste', 's2nn' or a callable (SpikingJelly surrogate), "
                         f"got {surrogate!r}")
    return check_callable("surrogate", surrogate)


class WeightQuantizer(nn.Module):
    r"""Module form of :func:`quantize_weight`: :math:`M` symmetric states, step :math:`\Delta`.

    Args:
        states: number of states :math:`M \ge 2` (odd: includes 0; even: half-integer levels).
        step: :math:`\Delta` in units of the standardized weight's standard deviation; ``None``
            (default) uses :func:`gaussian_mse_step` (MSE-optimal for unit-variance Gaussian weights).
        surrogate: ``None``/``'ste'`` (clipped STE) or a callable surrogate (see :func:`neuroq.functional.quant.round_clip`).
    """

    def __init__(self, states: int, step: Optional[float] = None, surrogate=None):
        super().__init__()
        self.states = check_int("states", states, ge=2)
        self.step = gaussian_mse_step(self.states) if step is None else check_real("step", step, gt=0)
        self.surrogate = _resolve_surrogate(surrogate)

    @property
    def offset(self) -> float:
        """:math:`c = (M-1)/2`."""
        return (self.states - 1) / 2.0

    def forward(self, w_hat: torch.Tensor) -> torch.Tensor:
        r"""Fake-quantize the standardized weight ``w_hat`` to :math:`\Delta\cdot` its :math:`M` symmetric levels
        (same shape; gradients by the STE or the surrogate)."""
        return quantize_weight(w_hat, self.states, self.step, self.surrogate)

    def integer(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, float]:
        r"""``(ints, scale)`` with ``ints * scale == forward(w_hat)``: odd :math:`M`: the integers
        :math:`\{-c..c\}`, scale :math:`\Delta`; even :math:`M`: the odd integers
        :math:`\{-(M-1),-(M-3),..,M-1\}`, scale :math:`\Delta/2`."""
        with torch.no_grad():
            idx = torch.clamp(_round_half_up(w_hat / self.step + self.offset), 0, self.states - 1)
            if self.states % 2:
                return (idx - self.offset).to(torch.int32), self.step
            return (2 * idx - (self.states - 1)).to(torch.int32), self.step / 2

    def extra_repr(self):
        """The number of states and the step, shown in the module's ``repr``."""
        return f"states={self.states}, step={self.step:.4g}"


class ActQuantizer(nn.Module):
    r"""Module form of :func:`quantize_activation`: :math:`M` non-negative states
    :math:`\Delta\{0..M-1\}`; ``states=2`` gives spikes.

    Args:
        states: :math:`M \ge 2`.
        step: :math:`\Delta > 0` (default 1: the activations are the integers themselves).
        surrogate: ``None``/``'ste'`` (clipped STE), ``'s2nn'`` (:class:`neuroq.surrogate.S2NN`) or
            any callable / SpikingJelly surrogate (see :func:`neuroq.functional.quant.round_clip`).
    """

    def __init__(self, states: int, step: float = 1.0, surrogate=None):
        super().__init__()
        self.states = check_int("states", states, ge=2)
        self.step = check_real("step", step, gt=0)
        self.surrogate = _resolve_surrogate(surrogate)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r"""Quantize ``h`` to :math:`\Delta\{0..M-1\}` (round, then clip; same shape; gradients by the clipped STE or
        the surrogate)."""
        return quantize_activation(h, self.states, self.step, self.surrogate)

    def extra_repr(self):
        """The number of states and the step, shown in the module's ``repr``."""
        return f"states={self.states}, step={self.step:.4g}"


# ---- the quantized layers --------------------------------------------------------------------
def _check_states(name, states):
    if states is None:
        return None
    return check_int(name, states, ge=2)


def _weight_quantizer(w_states, w_step, weight_quant):
    r"""The weight quantizer part: ``weight_quant`` if given (a module mapping :math:`\hat W` to its
    fake-quantized value, with ``states`` and ``integer(w_hat) -> (ints, scale)`` for export), else the
    shorthand ``WeightQuantizer(w_states, w_step)`` (``None``: full precision)."""
    if weight_quant is None:
        states = _check_states("w_states", w_states)
        return None if states is None else WeightQuantizer(states, w_step)
    if not isinstance(weight_quant, nn.Module) or not callable(getattr(weight_quant, "integer", None)):
        raise TypeError("weight_quant must be an nn.Module quantizer with an integer() method "
                        f"(e.g. neuroq.quant.WeightQuantizer(3)), got {type(weight_quant).__name__}")
    if w_states not in (3, None, getattr(weight_quant, "states", None)) or w_step is not None:
        raise ValueError("pass either weight_quant or the shorthand w_states/w_step, not both "
                         f"(got weight_quant={weight_quant!r}, w_states={w_states!r}, w_step={w_step!r})")
    return weight_quant


class _QuantWeightMixin:
    """Shared weight path: standardize -> quantize -> gain."""

    def _init_quant(self, w_states, w_step, ws_eps, gain, weight_standardization, weight_quant):
        self.ws_eps = check_real("ws_eps", ws_eps, gt=0)
        self.weight_standardization = check_bool("weight_standardization", weight_standardization)
        check_bool("gain", gain)
        if self.weight_standardization and self.weight[0].numel() < 2:
            raise ValueError(f"weight standardization needs a fan-in of at least 2 per output channel, got "
                             f"{self.weight[0].numel()} (use weight_standardization=False)")
        self.quantizer = _weight_quantizer(w_states, w_step, weight_quant)
        self.w_states = None if self.quantizer is None else self.quantizer.states
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
        weight_quant: the weight quantizer as a part (Brevitas style), e.g.
            ``neuroq.quant.WeightQuantizer(3, surrogate=...)`` or your own module with ``states`` and
            ``integer()``; ``w_states``/``w_step`` are the shorthand for ``WeightQuantizer(w_states, w_step)``.

    Example::

        >>> conv = QuantConv2d(1, 8, 3, padding=1, weight_quant=WeightQuantizer(3))
        >>> conv(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 8, 8, 8])
        >>> conv.quantized_weight().unique().numel() <= 3 * 8    # 3 levels x per-channel scale
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, w_states: Optional[int] = 3,
                 w_step: Optional[float] = None, ws_eps: float = 1e-5, gain: bool = False,
                 weight_standardization: bool = True, padding_mode: str = "zeros",
                 weight_quant: Optional[nn.Module] = None):
        check_int("in_channels", in_channels, ge=1)
        check_int("out_channels", out_channels, ge=1)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode)
        self._init_quant(w_states, w_step, ws_eps, gain, weight_standardization, weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``[N, C_in, H, W]`` with :meth:`quantized_weight` (and the bias); returns
        ``[N, C_out, H', W']``."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            raise ValueError(f"QuantConv2d expects input [N, C, H, W], got shape {tuple(getattr(x, 'shape', ()))} "
                             "(wrap it in neuroq.layer.SeqOp for [T, N, C, H, W])")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"QuantConv2d(in_channels={self.in_channels}) got an input with {x.shape[1]} channels "
                             f"(shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise TypeError(f"QuantConv2d: input must be a floating-point tensor, got dtype {x.dtype}")
        return self._conv_forward(x, self.quantized_weight(), self.bias)

    def extra_repr(self):
        """``nn.Conv2d``'s ``repr`` fields plus ``w_states`` and whether there is a gain."""
        return super().extra_repr() + f", w_states={self.w_states}, gain={self.gain is not None}"


class QuantLinear(_QuantWeightMixin, nn.Linear):
    r"""``nn.Linear`` with weight standardization and :math:`M_w`-state weights (MaQD, arXiv 2403.14999).

    :math:`y = (g\odot Q_w(\hat W))\,x + b`; arguments as :class:`QuantConv2d`.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, w_states: Optional[int] = 3,
                 w_step: Optional[float] = None, ws_eps: float = 1e-5, gain: bool = False,
                 weight_standardization: bool = True, weight_quant: Optional[nn.Module] = None):
        check_int("in_features", in_features, ge=1)
        check_int("out_features", out_features, ge=1)
        super().__init__(in_features, out_features, bias)
        self._init_quant(w_states, w_step, ws_eps, gain, weight_standardization, weight_quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[..., in_features]`` times :meth:`quantized_weight` (plus the bias); returns
        ``[..., out_features]``."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear(in_features={self.in_features}) expects input [..., {self.in_features}], "
                             f"got shape {tuple(getattr(x, 'shape', ()))}")
        if not x.is_floating_point():
            raise TypeError(f"QuantLinear: input must be a floating-point tensor, got dtype {x.dtype}")
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self):
        """``nn.Linear``'s ``repr`` fields plus ``w_states`` and whether there is a gain."""
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
        act_quant: the activation quantizer as a part, e.g. ``neuroq.quant.ActQuantizer(4, step=0.25)``
            (then ``a_states``/``a_range``/``surrogate`` are not given).

    Inputs/Outputs: any shape, elementwise (``[N, ...]`` in ``'s'``, ``[T, N, ...]`` in ``'m'``).

    Example::

        >>> act = QuantAct(a_states=2)            # a single-step spike: Theta(h - 1/2)
        >>> act(torch.tensor([[0.2, 0.5, 0.9]]))
        tensor([[0., 1., 1.]])
    """

    def __init__(self, a_states: Optional[int] = 2, a_range: float = 1.0, surrogate=None, step_mode: str = "s",
                 act_quant: Optional[nn.Module] = None):
        super().__init__()
        if act_quant is not None:
            if not isinstance(act_quant, ActQuantizer):
                raise TypeError(f"act_quant must be a neuroq.quant.ActQuantizer, got {type(act_quant).__name__}")
            if a_states not in (2, act_quant.states) or surrogate is not None:
                raise ValueError("pass either act_quant or the shorthand a_states/a_range/surrogate, not both")
            self.quantizer = act_quant
            self.a_states, self.step = act_quant.states, act_quant.step
            self.a_range = self.step * (self.a_states - 1)
        else:
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
        """Quantize one step ``[N, ...]`` elementwise (a ReLU when ``a_states`` is ``None``)."""
        check_step_input(type(self).__name__, x, "s")
        return self._act(x)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Quantize ``[T, N, ...]`` elementwise (no state: the same map as one step)."""
        check_step_input(type(self).__name__, x_seq, "m")
        return self._act(x_seq)

    def extra_repr(self):
        """The number of states, the range and the step mode, shown in the module's ``repr``."""
        return f"a_states={self.a_states}, a_range={self.a_range}, step_mode={self.step_mode}"
