r"""Pre-activation residual block for spiking networks.

He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks" (ECCV 2016) ordering, used for
deep SNNs with PSPN by Ikegawa, Saiin, Sawada, Natori (Sensors 2022, arXiv 2203.01544):

.. math::
    a_l = \mathcal{N}(\mathrm{Norm}_1(x_l)),\qquad
    x_{l+1} = \mathrm{Conv}_2\bigl(\mathcal{N}(\mathrm{Norm}_2(\mathrm{Conv}_1(a_l)))\bigr) + P(x_l, a_l)

where :math:`\mathcal{N}` is a spiking neuron, and the shortcut :math:`P` is the identity
:math:`x_l` when shapes match, else a strided 1x1 convolution of the block's input spikes
:math:`a_l` (He et al.'s projection on the pre-activated input).  The residual stream
:math:`x_l` is real-valued (a sum of postsynaptic potentials); every convolution receives
spikes, so it costs only accumulates (SOPs).  This shortcut handling is a reconstruction (neuroq's
reading, not confirmed by the paper): the paper's own could not be read.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from .._validate import check_choice, check_int
from .container import SeqOp, make_neuron
from .norm import PSPNorm2d

NORMS = ("pspn", "bn", "none")


def make_norm(norm: Union[str, Callable[[int], nn.Module]], channels: int, step_mode: str = "m") -> nn.Module:
    """Normalization of a ``[T, N, C, H, W]`` (``'m'``) or ``[N, C, H, W]`` (``'s'``) potential.

    ``'pspn'``: :class:`~neuroq.layer.PSPNorm2d` (second raw moment over (T, N, H, W));
    ``'bn'``: ``BatchNorm2d`` with statistics over (T, N, H, W) too (tdBN-like sharing);
    ``'none'``: identity; or a callable ``channels -> module``."""
    if callable(norm) and not isinstance(norm, str):
        return norm(channels)
    check_choice("norm", norm, NORMS)
    if norm == "pspn":
        return PSPNorm2d(channels, step_mode=step_mode)
    if norm == "bn":
        bn = nn.BatchNorm2d(channels)
        return SeqOp(bn) if step_mode == "m" else bn
    return nn.Identity()


def _wrap(op: nn.Module, step_mode: str) -> nn.Module:
    return SeqOp(op) if step_mode == "m" else op


def default_neuron() -> nn.Module:
    """LIF, tau = 2, soft gradient through the reset detached (SpikingJelly defaults otherwise)."""
    from ..neuron import LIFNode

    return LIFNode(tau=2.0, detach_reset=True, step_mode="m")


class PreActBlock(nn.Module):
    r"""Spiking pre-activation residual block: norm -> neuron -> conv, twice, plus the shortcut
    (equations in :mod:`neuroq.layer.residual`).

    Args:
        in_channels / out_channels: channels of :math:`x_l` / :math:`x_{l+1}`.
        stride: stride of the first 3x3 conv (and of the projection shortcut).
        norm: ``'pspn'`` (default), ``'bn'``, ``'none'`` or a callable ``channels -> module``.
        neuron: factory returning a spiking neuron (default LIF, tau 2); its ``step_mode`` is set to
            the block's.
        step_mode: ``'m'`` (input ``[T, N, C, H, W]``, default) or ``'s'`` (``[N, C, H, W]``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 norm: Union[str, Callable[[int], nn.Module]] = "pspn",
                 neuron: Optional[Callable[[], nn.Module]] = None, step_mode: str = "m"):
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, ge=1)
        self.out_channels = check_int("out_channels", out_channels, ge=1)
        self.stride = check_int("stride", stride, ge=1)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.norm1 = make_norm(norm, in_channels, step_mode)
        self.neuron1 = make_neuron(neuron, step_mode, default_neuron)
        self.conv1 = _wrap(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), step_mode)
        self.norm2 = make_norm(norm, out_channels, step_mode)
        self.neuron2 = make_neuron(neuron, step_mode, default_neuron)
        self.conv2 = _wrap(nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False), step_mode)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = _wrap(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), step_mode)
        else:
            self.shortcut = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[T, N, C_in, H, W]`` (``'m'``) or ``[N, C_in, H, W]`` (``'s'``) -> the next residual stream,
        ``[T, N, C_out, H', W']`` or ``[N, C_out, H', W']`` (``H' = ceil(H / stride)``)."""
        need = 5 if self.step_mode == "m" else 4
        if x.dim() != need:
            lay = "[T, N, C, H, W]" if self.step_mode == "m" else "[N, C, H, W]"
            raise ValueError(f"PreActBlock in step_mode={self.step_mode!r} expects {lay}, got shape {tuple(x.shape)}")
        a = self.neuron1(self.norm1(x))
        sc = x if self.shortcut is None else self.shortcut(a)
        out = self.conv1(a)
        out = self.conv2(self.neuron2(self.norm2(out)))
        return out + sc
