r"""Postsynaptic potential normalization (PSPN).

Ikegawa, Saiin, Sawada, Natori, "Rethinking the Role of Normalization and Residual Blocks for
Spiking Neural Networks" (Sensors 22(8):2876, 2022; arXiv 2203.01544): normalize the **postsynaptic
potential** :math:`x` (e.g. a conv output, before the neuron) by its **second raw moment**, with
**no mean subtraction**, so that firing stays controlled in deep SNNs:

.. math::
    m_{2,c} = \mathbb{E}_{(t),n,h,w}\bigl[x_{(t),n,c,h,w}^2\bigr],\qquad
    y = \gamma_c\,\frac{x}{\sqrt{m_{2,c} + \epsilon}}\;(+\,\beta_c)

(compare BatchNorm's :math:`(x-\mu_c)/\sqrt{\sigma_c^2+\epsilon}`).  neuroq's choices where the
paper's text could not be read (its abstract does not give them): statistics per channel, shared
over time steps (over ``(T, N, H, W)`` in step mode ``'m'``, ``(N, H, W)`` in ``'s'``);
per-channel scale :math:`\gamma`; the shift :math:`\beta` is off by default (it would re-introduce the offset the
method removes) and available with ``bias=True``.  At inference the running second moment is used,
and :func:`neuroq.layer.norm.fold` merges the layer into the preceding convolution at no cost.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ... import _sj
from ..._validate import check_bool, check_choice
from .fold import fold
from .running import RunningNorm


class _PSPNormBase(RunningNorm, _sj.base.StepModule):
    """Shared implementation of :class:`PSPNorm1d` / :class:`PSPNorm2d` (see the module docstring)."""

    _ranks_s: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1,
                 affine: bool = True, bias: bool = False, track_running_stats: bool = True,
                 step_mode: str = "s"):
        super().__init__(num_features, eps, momentum, affine)
        check_bool("bias", bias)
        if bias and not affine:
            raise ValueError("bias=True needs affine=True (the shift beta is part of the affine transform)")
        self.track_running_stats = check_bool("track_running_stats", track_running_stats)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features)) if bias else None
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_m2", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_m2", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_m2.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            nn.init.ones_(self.weight)
            if self.bias is not None:
                nn.init.zeros_(self.bias)

    def _check_input(self, x: torch.Tensor) -> int:
        """Validate the layout; return the channel axis."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a torch.Tensor, got {type(x).__name__}")
        extra = 1 if self.step_mode == "m" else 0
        ranks = tuple(r + extra for r in self._ranks_s)
        if x.dim() not in ranks:
            lay = ("[T, " + self._layout[1:]) if extra else self._layout
            raise ValueError(f"{type(self).__name__} in step_mode={self.step_mode!r} expects input {lay} "
                             f"(rank {' or '.join(map(str, ranks))}), got shape {tuple(x.shape)}")
        c_axis = 1 + extra
        if not x.is_floating_point():
            raise TypeError(f"{type(self).__name__}: input must be a floating-point tensor, got dtype {x.dtype}")
        if extra and x.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}: multi-step input needs at least one time step, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[c_axis] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected {self.num_features} channels on axis {c_axis}, "
                             f"got shape {tuple(x.shape)}")
        return c_axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c_axis = self._check_input(x)
        shape = [1] * x.dim()
        shape[c_axis] = self.num_features
        if x.numel() == 0:  # an empty batch: nothing to normalize, and no statistic to update
            return x
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            dims = tuple(d for d in range(x.dim()) if d != c_axis)
            m2 = x.pow(2).mean(dim=dims)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    mom = self._count_batch(m2)
                    self.running_m2.mul_(1.0 - mom).add_(m2.detach().to(self.running_m2.dtype), alpha=mom)
        else:
            m2 = self.running_m2
        scale = torch.rsqrt(m2 + self.eps)
        if self.affine:
            scale = scale * self.weight
        y = x * scale.to(x.dtype).view(shape)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype).view(shape)
        return y

    def inference_affine(self) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        r"""The eval-mode map :math:`y = a_c x + b_c`: ``(a, b)`` with
        :math:`a = \gamma/\sqrt{m_2^{run}+\epsilon}` and :math:`b = \beta` (``None`` without bias)."""
        if not self.track_running_stats:
            raise RuntimeError(f"{type(self).__name__}(track_running_stats=False) normalizes with batch statistics "
                               "at inference too; it has no fixed eval map to fold")
        a = torch.rsqrt(self.running_m2 + self.eps)
        if self.affine:
            a = a * self.weight
        return a.detach(), (self.bias.detach() if self.bias is not None else None)

    def fold_into(self, layer: nn.Module) -> nn.Module:
        """``neuroq.layer.norm.fold(layer, self)``: the preceding layer with this eval-mode
        normalization merged in (the layer itself is not modified)."""
        return fold(layer, self)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}, "
                f"step_mode={self.step_mode}")


class PSPNorm1d(_PSPNormBase):
    r"""PSPN for ``[N, C]`` / ``[N, C, L]`` (step mode ``'s'``) or ``[T, N, C(, L)]`` (``'m'``):
    :math:`y = \gamma_c x / \sqrt{\mathbb{E}[x^2]_c + \epsilon}` (see :mod:`neuroq.layer.norm.psp_norm`).

    Args:
        num_features: channels C.
        eps: :math:`\epsilon` (> 0).
        momentum: running-average factor of the second moment (``None``: cumulative average).
        affine: learn the per-channel scale :math:`\gamma`.
        bias: also learn a shift :math:`\beta` (off by default; needs ``affine``).
        track_running_stats: keep the running second moment used in eval mode.
        step_mode: ``'s'`` or ``'m'`` (statistics shared over T).
    """

    _ranks_s = (2, 3)
    _layout = "[N, C] or [N, C, L]"


class PSPNorm2d(_PSPNormBase):
    r"""PSPN for ``[N, C, H, W]`` (step mode ``'s'``) or ``[T, N, C, H, W]`` (``'m'``):
    :math:`y = \gamma_c x / \sqrt{\mathbb{E}_{(t),n,h,w}[x^2]_c + \epsilon}` (see :mod:`neuroq.layer.norm.psp_norm`).

    Args: as :class:`PSPNorm1d`.
    """

    _ranks_s = (4,)
    _layout = "[N, C, H, W]"
