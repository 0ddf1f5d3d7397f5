r"""Layer side of Spike Accumulation Forwarding (Saiin et al., TMLR 2024, arXiv 2310.02772).

Between SAF neurons (:class:`neuroq.neuron.SAFNode`) the network carries the spike accumulation
:math:`\hat a^l[t] = \lambda\hat a^l[t-1] + s^l[t]` instead of spikes.  A synaptic layer turns it into
the accumulated input of the next neuron with **one** operation per step:

.. math::
    \hat U^{l+1}[t] = \sum_{\tau\le t}\lambda^{t-\tau}\big(W^l s^l[\tau] + b\big)
                    = W^l\hat a^l[t] + c_t\,b,\qquad c_t = \frac{1-\lambda^t}{1-\lambda}

so a plain ``nn.Conv2d(â)`` with its bias would be wrong (bias not scaled by :math:`c_t`):
:class:`SAFLinear`, :class:`SAFConv2d` and :class:`SAFWSConv2d` keep their bias apart and add
:math:`c_t b`.  Any other op between neurons must be **linear** (commute with the accumulation):
average pooling, flatten, a constant :class:`Scale`, bias-free linear/conv.  Non-linear ops —
max-pooling, BatchNorm (in train mode its statistics depend on the batch; in eval mode its shift is
not scaled by :math:`c_t`, fold it into the conv instead), ReLU, dropout — break the equivalence with
the LIF network; :func:`check_saf_network` (run by :class:`SAFSequential`) raises
:class:`SAFNonLinearError` naming the module.

:class:`SAFInput` accumulates the network input (:math:`\hat x[t] = c_t x` for a directly encoded
image) and :class:`SAFReadout` turns the last layer's :math:`\hat U^{out}` back into the per-step
output :math:`o[t] = \hat U[t] - \lambda\hat U[t-1]` (SAF-E, equal to the LIF network's output) or
the final weighted average :math:`\hat U[t]/c_t` (SAF-F).

:func:`neuroq.convert.saf_from_lif` / :func:`neuroq.convert.lif_from_saf` convert between an ordinary
soft-reset LIF network and its SAF twin, sharing the same weights: both emit the same spikes and outputs.
The energy meter counts SAF synapses like their plain twins (:mod:`neuroq.energy.rules`).
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import _sj
from .._validate import check_choice, check_int, check_real
from ..functional import saf as FS
from .container import leaves
from .ws import Scale, ScaledWSConv2d, standardize_weight


class SAFNonLinearError(ValueError):
    """A non-linear operation sits between SAF neurons (SAF needs linear ops there)."""


# ---------------------------------------------------------------------------------------------
# synapses with c_t-scaled bias
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def _copy_weight_bias(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s weight and (when it has one) bias into ``dst``'s, which have the same shapes."""
    dst.weight.copy_(src.weight)
    if src.bias is not None:
        dst.bias.copy_(src.bias)


class _SAFSynapse(_sj.MemoryModule):
    r"""Base: :math:`\hat U[t] = L(\hat a[t]) + c_t b` for a linear map :math:`L` (subclass ``_linear``)."""

    def __init__(self, tau: float, step_mode: str):
        super().__init__()
        self.tau = check_real("tau", tau, gt=1.0)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.register_memory("t", 0)

    def _linear(self, x: torch.Tensor, bias=None) -> torch.Tensor:
        """The linear map applied to ``x`` plus ``bias`` (``None``: no bias)."""
        raise NotImplementedError

    def _add_bias(self, y: torch.Tensor, c) -> torch.Tensor:
        if self.bias is None:
            return y
        shape = [1] * y.dim()
        shape[1 if self._channel_dim_1 else -1] = -1
        b = self.bias.view(*shape)
        return y + c * b

    _channel_dim_1 = False  # conv: channels on dim 1; linear: last dim

    def single_step_forward(self, x):
        t = int(self.t) + 1
        self.t = t
        # one fused op: the bias argument is c_t * b
        return self._linear(x, None if self.bias is None else self.bias * FS.bias_scale(t, self.tau))

    def multi_step_forward(self, x_seq):
        T, N = x_seq.shape[:2]
        t0 = int(self.t)
        y = self._linear(x_seq.flatten(0, 1))
        if self.bias is not None:
            c = FS.bias_scales(t0, T, self.tau, dtype=y.dtype, device=y.device).repeat_interleave(N)
            c = c.view(-1, *([1] * (y.dim() - 1)))
            y = self._add_bias(y, c)
        self.t = t0 + T
        return y.reshape(T, N, *y.shape[1:])


class SAFLinear(_SAFSynapse):
    r"""Linear synapse on spike accumulations: :math:`\hat U[t] = W\hat a[t] + c_t b` (module docstring).

    Holds ``weight [out, in]`` and ``bias [out]`` like ``nn.Linear`` (same init) and exposes
    ``in_features`` / ``out_features`` so :class:`neuroq.energy.EnergyMeter` can count it.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        tau: time constant of the neurons (:math:`c_t` uses :math:`\lambda = 1 - 1/\tau`).
        step_mode: ``'s'`` or ``'m'``.
    """

    energy_rule = "linear"  # metered as a linear layer (neuroq.energy.rules)

    def __init__(self, in_features: int, out_features: int, bias: bool = True, tau: float = 2.0,
                 step_mode: str = "s"):
        super().__init__(tau, step_mode)
        self.in_features = check_int("in_features", in_features, ge=1)
        self.out_features = check_int("out_features", out_features, ge=1)
        ref = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def _linear(self, x, bias=None):
        return F.linear(x, self.weight, bias)

    @classmethod
    def from_module(cls, m: nn.Linear, tau: float = 2.0, step_mode: str = "s") -> "SAFLinear":
        """SAF twin of ``m`` with copied weights."""
        out = cls(m.in_features, m.out_features, m.bias is not None, tau, step_mode)
        _copy_weight_bias(out, m)
        return out.to(m.weight.device, m.weight.dtype)

    def to_module(self) -> nn.Linear:
        """The plain ``nn.Linear`` twin of this synapse (copied weight and bias, same device and dtype), for LIF
        inference."""
        m = nn.Linear(self.in_features, self.out_features, self.bias is not None)
        _copy_weight_bias(m, self)
        return m.to(self.weight.device, self.weight.dtype)

    def extra_repr(self):
        """The layer's sizes, bias, ``tau`` and step mode, shown in the module's ``repr``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, " \
               f"tau={self.tau}, step_mode={self.step_mode}"


class SAFConv2d(_SAFSynapse):
    r"""2-D convolution on spike accumulations: :math:`\hat U[t] = W * \hat a[t] + c_t b`.

    Same arguments and attributes as ``nn.Conv2d`` (``padding_mode='zeros'`` only) plus ``tau`` and
    ``step_mode``.
    """

    _channel_dim_1 = True
    energy_rule = "conv"  # metered as a convolution (neuroq.energy.rules)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True, tau: float = 2.0, step_mode: str = "s"):
        super().__init__(tau, step_mode)
        ref = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
            setattr(self, k, getattr(ref, k))
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone()) if bias else None

    def get_weight(self) -> torch.Tensor:
        """The weight the convolution uses: ``weight`` itself (a weight-standardized subclass returns its
        standardized weight)."""
        return self.weight

    def _linear(self, x, bias=None):
        return F.conv2d(x, self.get_weight(), bias, self.stride, self.padding, self.dilation, self.groups)

    @classmethod
    def from_module(cls, m: nn.Conv2d, tau: float = 2.0, step_mode: str = "s") -> "SAFConv2d":
        """SAF twin of ``m`` (a plain ``nn.Conv2d``) with copied weights."""
        if m.padding_mode != "zeros":
            raise ValueError(f"SAFConv2d supports padding_mode='zeros' only, got {m.padding_mode!r}")
        out = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                  m.bias is not None, tau, step_mode)
        _copy_weight_bias(out, m)
        return out.to(m.weight.device, m.weight.dtype)

    def to_module(self) -> nn.Conv2d:
        """The plain ``nn.Conv2d`` twin of this synapse (copied weight and bias, same device and dtype), for LIF
        inference."""
        m = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                      self.dilation, self.groups, self.bias is not None)
        _copy_weight_bias(m, self)
        return m.to(self.weight.device, self.weight.dtype)

    def extra_repr(self):
        """The convolution's shape, bias, ``tau`` and step mode, shown in the module's ``repr``."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}, tau={self.tau}, step_mode={self.step_mode}")


class SAFWSConv2d(SAFConv2d):
    r"""Scaled weight-standardized convolution on spike accumulations (:class:`ScaledWSConv2d` weights,
    :math:`\hat U[t] = \hat W * \hat a[t] + c_t b`).  Extra arguments ``gain`` and ``eps``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, gain: bool = True, eps: float = 1e-4, tau: float = 2.0, step_mode: str = "s"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, tau,
                         step_mode)
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1)) if gain else None
        self.eps = check_real("eps", eps, gt=0)

    def get_weight(self):
        """The scaled standardized weight, ``standardize_weight(weight, eps, scaled=True, gain=gain)``."""
        return standardize_weight(self.weight, self.eps, scaled=True, gain=self.gain)

    @classmethod
    def from_module(cls, m: nn.Conv2d, tau: float = 2.0, step_mode: str = "s") -> "SAFWSConv2d":
        """SAF twin of a weight-standardized conv (neuroq's :class:`ScaledWSConv2d` or SpikingJelly's
        ``WSConv2d``: both have ``gain`` and ``eps``)."""
        gain = getattr(m, "gain", None)
        out = cls(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
                  m.bias is not None, gain is not None, float(m.eps), tau, step_mode)
        _copy_weight_bias(out, m)
        if gain is not None:
            with torch.no_grad():
                out.gain.copy_(gain)
        return out.to(m.weight.device, m.weight.dtype)

    def to_module(self) -> ScaledWSConv2d:
        """The :class:`ScaledWSConv2d` twin of this synapse (copied weight, bias and gain), for LIF inference."""
        m = ScaledWSConv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                           self.dilation, self.groups, self.bias is not None, self.gain is not None, self.eps)
        _copy_weight_bias(m, self)
        if self.gain is not None:
            with torch.no_grad():
                m.gain.copy_(self.gain)
        return m.to(self.weight.device, self.weight.dtype)


# ---------------------------------------------------------------------------------------------
# network input / output
# ---------------------------------------------------------------------------------------------
class SAFInput(_sj.MemoryModule):
    r"""Accumulate the network input: :math:`\hat x[t] = \lambda\hat x[t-1] + x[t]` (:math:`c_t x` for a
    constant, directly encoded image).  The first SAF synapse reads :math:`\hat x[t]`."""

    def __init__(self, tau: float = 2.0, step_mode: str = "s"):
        super().__init__()
        self.tau = check_real("tau", tau, gt=1.0)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.register_memory("acc", None)

    def single_step_forward(self, x):
        r"""Accumulate one step: ``x`` ``[N, ...]`` -> :math:`\hat x[t] = \lambda\hat x[t-1] + x` (the stored
        accumulation is detached)."""
        acc = x if self.acc is None else FS.decay(self.tau) * self.acc + x
        self.acc = acc.detach()
        return acc

    def multi_step_forward(self, x_seq):
        r"""Accumulate ``x_seq`` ``[T, N, ...]`` from the stored accumulation; returns :math:`\hat x` ``[T, N, ...]``
        and stores the last step, detached."""
        acc = FS.accumulate(x_seq, self.tau, None if self.acc is None else self.acc)
        self.acc = acc[-1].detach()
        return acc

    def extra_repr(self):
        """``tau`` and the step mode, shown in the module's ``repr``."""
        return f"tau={self.tau}, step_mode={self.step_mode}"


class SAFReadout(_sj.MemoryModule):
    r"""Turn the last synapse's :math:`\hat U^{out}[t]` into the network output.

    * ``mode='step'``: :math:`o[t] = \hat U[t] - \lambda\hat U[t-1]` — the LIF network's per-step output
      (SAF-E's instantaneous loss; :math:`\hat U[t-1]` is a constant in backward).
    * ``mode='final'``: :math:`\hat U[t]/c_t`, the :math:`\lambda`-weighted average of :math:`o[1..t]`
      (SAF-F's loss on the final accumulation, taken at :math:`t = T`).
    """

    def __init__(self, tau: float = 2.0, mode: str = "step", step_mode: str = "s"):
        super().__init__()
        self.tau = check_real("tau", tau, gt=1.0)
        self.mode = check_choice("mode", mode, ("step", "final"))
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.register_memory("prev", None)
        self.register_memory("t", 0)

    def single_step_forward(self, u):
        r"""One step of :math:`\hat U^{out}` ``[N, ...]`` -> the output of the step (``'step'``) or the weighted
        average so far (``'final'``); the time step counter advances by one."""
        t = int(self.t) + 1
        self.t = t
        if self.mode == "final":
            self.prev = u.detach()
            return u / FS.bias_scale(t, self.tau)
        out = u if self.prev is None else u - FS.decay(self.tau) * self.prev
        self.prev = u.detach()
        return out

    def multi_step_forward(self, u_seq):
        """``u_seq`` ``[T, N, ...]`` -> the outputs of all T steps (``'step'``: de-accumulated; ``'final'``: divided
        by :math:`c_t`), continuing from the stored step and previous value."""
        T = u_seq.shape[0]
        t0 = int(self.t)
        if self.mode == "final":
            c = FS.bias_scales(t0, T, self.tau, dtype=u_seq.dtype, device=u_seq.device)
            out = u_seq / c.view(-1, *([1] * (u_seq.dim() - 1)))
        else:
            out = FS.deaccumulate(u_seq, self.tau, self.prev)
        self.prev = u_seq[-1].detach()
        self.t = t0 + T
        return out

    def extra_repr(self):
        """``tau``, the readout mode and the step mode, shown in the module's ``repr``."""
        return f"tau={self.tau}, mode={self.mode}, step_mode={self.step_mode}"


# ---------------------------------------------------------------------------------------------
# linearity check
# ---------------------------------------------------------------------------------------------
#: parameter-free module types that commute with the spike accumulation (extend with register_linear_op)
_LINEAR_TYPES: list = [nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                       nn.AdaptiveAvgPool3d, nn.Flatten, nn.Identity, Scale]


def register_linear_op(cls: type) -> None:
    """Declare a parameter-free module type linear (allowed between SAF neurons)."""
    if cls not in _LINEAR_TYPES:
        _LINEAR_TYPES.append(cls)


def _why_nonlinear(m: nn.Module):
    from ..neuron.saf import SAFNode

    if isinstance(m, (SAFNode, _SAFSynapse, SAFInput, SAFReadout)):
        return None
    if isinstance(m, tuple(_LINEAR_TYPES)):
        return None
    if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if m.bias is None:
            return None
        return (f"{type(m).__name__} has a bias, which SAF must scale by c_t = (1-λ^t)/(1-λ); use "
                f"SAFLinear/SAFConv2d (saf_from_lif converts it)")
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        if m.training:
            return ("BatchNorm in train mode normalizes with batch statistics of each step, which is not "
                    "linear in the spike accumulation")
        return ("BatchNorm's shift is not scaled by c_t; fold it into the preceding conv/linear first")
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)):
        return "max-pooling is not linear: max over accumulations is not the accumulation of maxima; use AvgPool"
    if isinstance(m, nn.Dropout):
        if m.p == 0 or not m.training:
            return None
        return "dropout draws a new mask every step, which is not linear over time; remove it or use p=0"
    return (f"{type(m).__name__} is not known to be linear; SAF needs linear ops between neurons (register it "
            "with neuroq.layer.saf.register_linear_op if it is)")


def check_saf_network(model: nn.Module) -> None:
    """Raise :class:`SAFNonLinearError` if a non-linear op sits in an SAF network (module docstring)."""
    for name, m, _ in leaves(model):
        why = _why_nonlinear(m)
        if why is not None:
            raise SAFNonLinearError(f"SAF network: module {name!r} ({type(m).__name__}) cannot sit between SAF "
                                    f"neurons: {why}")


class SAFSequential(nn.Sequential):
    """``nn.Sequential`` that checks (at construction and every forward) that it is a valid SAF network
    (:func:`check_saf_network`): BatchNorm switched to train mode later is caught too."""

    def __init__(self, *modules):
        super().__init__(*modules)
        check_saf_network(self)

    def forward(self, x):
        """Check the network again (:func:`check_saf_network`), then run the modules in order."""
        check_saf_network(self)
        return super().forward(x)


def iter_saf_synapses(model: nn.Module) -> Iterable[_SAFSynapse]:
    """The SAF synapses of ``model`` in order."""
    return (m for m in model.modules() if isinstance(m, _SAFSynapse))
