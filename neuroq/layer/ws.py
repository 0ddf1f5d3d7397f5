r"""Weight standardization (Qiao et al., arXiv 1903.10520), in both forms neuroq's methods use.

Per output channel :math:`o`, over its fan-in :math:`i` (every axis but the first):

* ``scaled=False`` (MaQD's form, Sawada et al. arXiv 2403.14999):
  :math:`\hat W_{o} = (W_{o} - \mu_o)/\sqrt{\sigma_o^2 + \epsilon}` with the biased variance;
* ``scaled=True`` (OTTT's ``ScaledWSConv2d``, Xiao et al. NeurIPS 2022):
  :math:`\hat W_{o} = g_o (W_{o} - \mu_o)/\sqrt{\mathrm{fan\_in}\cdot\sigma_o^2 + \epsilon}` with the
  unbiased variance and an optional learnable gain :math:`g`.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._validate import check_real


def standardize_weight(w: torch.Tensor, eps: float = 1e-5, scaled: bool = False,
                       gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weight standardization of ``w`` ``[C_out, ...]`` (module docstring); ``gain`` multiplies the result."""
    if w.dim() < 2 or w[0].numel() < 2:
        raise ValueError(f"weight standardization needs a fan-in of at least 2 per output channel, got a weight "
                         f"of shape {tuple(w.shape)}")
    dims = tuple(range(1, w.dim()))
    mean = w.mean(dim=dims, keepdim=True)
    if scaled:
        var = w.var(dim=dims, keepdim=True)
        out = (w - mean) / torch.sqrt(var * math.prod(w.shape[1:]) + eps)
    else:
        var = w.var(dim=dims, unbiased=False, keepdim=True)
        out = (w - mean) * torch.rsqrt(var + eps)
    return out * gain if gain is not None else out


class ScaledWSConv2d(nn.Conv2d):
    r"""Scaled weight-standardized convolution (OTTT, Xiao et al. NeurIPS 2022): ``nn.Conv2d`` with the
    weight :func:`standardize_weight` ``(scaled=True)``, learnable gain :math:`g` when ``gain=True``.

    Example::

        >>> conv = ScaledWSConv2d(3, 8, 3, padding=1)
        >>> conv(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 8, 16, 16])

    Args: those of ``nn.Conv2d`` plus ``gain`` (learn :math:`g`) and ``eps`` (> 0).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, gain: bool = True, eps: float = 1e-4):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        if self.weight[0].numel() < 2:
            raise ValueError(f"ScaledWSConv2d: weight standardization needs a fan-in (in_channels/groups x kernel) of "
                             f"at least 2, got {self.weight[0].numel()}")
        self.gain = nn.Parameter(torch.ones(out_channels, 1, 1, 1)) if gain else None
        self.eps = check_real("eps", eps, gt=0)

    def get_weight(self) -> torch.Tensor:
        """The standardized weight used in :meth:`forward`:
        ``standardize_weight(weight, eps, scaled=True, gain=gain)``."""
        return standardize_weight(self.weight, self.eps, scaled=True, gain=self.gain)

    def forward(self, x):
        """Convolve ``x`` ``[N, C_in, H, W]`` with :meth:`get_weight` (and the bias)."""
        return F.conv2d(x, self.get_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class Scale(nn.Module):
    r"""Multiply by a constant, :math:`y = s\,x` (OTTT's ``Scale(2.74)`` after its weight-standardized
    convolutions).  Linear, so it may sit between SAF neurons."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = check_real("scale", scale)

    def forward(self, x):
        """``scale * x`` (any shape)."""
        return x * self.scale

    def extra_repr(self):
        """The constant, shown in the module's ``repr``."""
        return f"scale={self.scale}"
