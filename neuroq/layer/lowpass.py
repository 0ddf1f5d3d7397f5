r"""First-order lowpass synapse with a learnable time constant per unit.

The synaptic filter of ABR's spiking libraries (keras-spiking ``Lowpass``, pytorch-spiking
``Lowpass``), used to smooth the spike trains of
:class:`neuroq.neuron.SpikingActivation` (Voelker, Rasmussen, Eliasmith, arXiv 2002.03553):

.. math::
    y_t = (1 - a)\,x_t + a\,y_{t-1},\qquad a = e^{-dt/\tau}

the zero-order-hold discretisation of :math:`\tau\dot y = x - y`, with unit DC gain.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real, check_step_input


class Lowpass(_sj.MemoryModule):
    r"""Lowpass filter :math:`y_t = (1-a)x_t + a\,y_{t-1}`, :math:`a = e^{-dt/\tau}`, learnable :math:`\tau`.

    :math:`\tau` is learnt through :math:`\log\tau` (so it stays positive; keras-spiking learns
    :math:`\tau`, pytorch-spiking learns :math:`a` through a sigmoid: the same family).  The filter
    state :math:`y` is a SpikingJelly memory starting at 0 (``functional.reset_net`` resets it;
    pytorch-spiking instead learns an initial level).

    Args:
        tau: initial time constant, in the units of ``dt`` (> 0).
        units: ``None`` (one :math:`\tau` shared by all units), an int (one per unit of the last
            axis) or a shape broadcast against the trailing axes of one step (e.g. ``(C, 1, 1)`` for
            one per channel of ``[N, C, H, W]``).
        dt: step length (> 0).
        learn_tau: whether :math:`\tau` is a trainable parameter.
        apply_during_training: if False, the filter is the identity in training mode (state
            untouched), as ABR's option (pairs with ``spiking_aware_training=False``).
        step_mode: ``'s'`` (input ``[N, ...]``) or ``'m'`` (input ``[T, N, ...]``).

    Inputs: ``x`` ``[N, ...]`` (``'s'``) or ``[T, N, ...]`` (``'m'``).  Outputs: the same shape.
    Cost: O(T) (one step per time step, ``x_seq.unbind(0)``).

    Example::

        lp = Lowpass(tau=5.0, units=212, step_mode="m")
        y = lp(spikes)                        # spikes [T, N, 212] -> smoothed [T, N, 212]
        neuroq.reset_net(lp)
    """

    def __init__(self, tau: float, units: Optional[Union[int, tuple]] = None, dt: float = 1.0,
                 learn_tau: bool = True, apply_during_training: bool = True, step_mode: str = "s"):
        super().__init__()
        tau = check_real("tau", tau, gt=0)
        self.dt = check_real("dt", dt, gt=0)
        if not (math.isfinite(tau) and math.isfinite(self.dt)):
            raise ValueError(f"tau and dt must be finite, got tau={tau!r}, dt={self.dt!r}")
        if units is None:
            shape: tuple = ()
        elif isinstance(units, tuple):
            shape = tuple(check_int("units entry", u, ge=1) for u in units)
        else:
            shape = (check_int("units", units, ge=1),)
        self.units = units
        self.learn_tau = check_bool("learn_tau", learn_tau)
        self.log_tau = nn.Parameter(torch.full(shape, math.log(tau)), requires_grad=self.learn_tau)
        self.apply_during_training = check_bool("apply_during_training", apply_during_training)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.register_memory("y", None)

    @property
    def tau(self) -> torch.Tensor:
        """:math:`\\tau = e^{\\log\\tau}`, shape ``units``."""
        return self.log_tau.exp()

    def smoothing(self) -> torch.Tensor:
        """:math:`a = e^{-dt/\\tau}` (differentiable in :math:`\\log\\tau`)."""
        return torch.exp(-self.dt * torch.exp(-self.log_tau))

    def _check(self, x: torch.Tensor) -> None:
        shape = tuple(self.log_tau.shape)
        if not shape:
            return
        try:
            ok = torch.broadcast_shapes(tuple(x.shape), shape) == tuple(x.shape)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"Lowpass(units={self.units!r}): a step of shape {tuple(x.shape)} does not broadcast "
                             f"with the per-unit time constants of shape {shape}")

    def _y0(self, x: torch.Tensor) -> torch.Tensor:
        y = self.y
        if isinstance(y, torch.Tensor):
            if y.shape != x.shape:
                raise RuntimeError(f"Lowpass: stored state y has shape {tuple(y.shape)} but this step has shape "
                                   f"{tuple(x.shape)}; call functional.reset_net(model) between batches")
            return y
        return torch.zeros_like(x)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Filter one step ``x`` ``[N, ...]`` (the identity in training when ``apply_during_training`` is False)."""
        check_step_input(type(self).__name__, x, "s")
        if self.training and not self.apply_during_training:
            return x
        self._check(x)
        a = self.smoothing().to(x.dtype)
        self.y = (1 - a) * x + a * self._y0(x)
        return self.y

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Filter a sequence ``[T, N, ...]`` step by step from the stored state; returns ``[T, N, ...]``."""
        check_step_input(type(self).__name__, x_seq, "m")
        if self.training and not self.apply_during_training:
            return x_seq
        self._check(x_seq[0])
        a = self.smoothing().to(x_seq.dtype)
        b = 1 - a
        y = self._y0(x_seq[0])
        out = []
        for x in x_seq.unbind(0):
            y = b * x + a * y
            out.append(y)
        self.y = y
        return torch.stack(out)

    def final(self, x_seq: torch.Tensor) -> torch.Tensor:
        r"""Only the last step of the multi-step filter, in closed form (no loop over time):

        .. math::
            y_{T-1} = a^{T} y_{-1} + (1 - a)\sum_{t=0}^{T-1} a^{T-1-t} x_t

        (:math:`y_{-1}` the stored state, 0 after a reset), equal to ``multi_step_forward(x_seq)[-1]``
        to float rounding, differentiable in :math:`x` and :math:`\log\tau`; the state is left at
        :math:`y_{T-1}`.  A classifier that reads a filtered spike train at the end of a sequence
        needs only this (:class:`neuroq.models.LMUClassifier`).

        Inputs: ``x_seq`` ``[T, N, ...]``.  Outputs: ``[N, ...]``.

        Example::

            lp = Lowpass(tau=20.0, units=212)
            y_end = lp.final(spikes)              # spikes [784, N, 212] -> [N, 212]
        """
        check_step_input(type(self).__name__, x_seq, "m")
        if self.training and not self.apply_during_training:
            return x_seq[-1]
        self._check(x_seq[0])
        T = x_seq.shape[0]
        log_a = (-self.dt * torch.exp(-self.log_tau)).to(x_seq.dtype)
        k = torch.arange(T - 1, -1, -1, dtype=x_seq.dtype, device=x_seq.device).reshape(T, *([1] * (x_seq.dim() - 1)))
        w = torch.exp(k * log_a)                                  # a^(T-1-t), [T, (broadcast)]
        a = torch.exp(log_a)
        y = (1 - a) * (w * x_seq).sum(0)
        if isinstance(self.y, torch.Tensor):
            y = y + torch.exp(T * log_a) * self._y0(x_seq[0])
        self.y = y
        return y

    def extra_repr(self):
        """The filter's options, shown in the module's ``repr``."""
        return (f"units={self.units!r}, dt={self.dt}, learn_tau={self.learn_tau}, "
                f"apply_during_training={self.apply_during_training}, step_mode={self.step_mode}")
