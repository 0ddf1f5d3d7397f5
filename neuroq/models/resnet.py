r"""Deep pre-activation residual SNNs (depth 6n+2: 20, 56, 110, ...).

Architecture (He et al. 2016, CIFAR-style ResNet with pre-activation blocks; SNN use with PSPN by
Ikegawa, Saiin, Sawada, Natori, Sensors 2022, arXiv 2203.01544):

.. math::
    x_0 &= \mathrm{Conv}_{3\times3}(\text{image})                      &&\text{stem (real input: MACs)}\\
    x_{l+1} &= \mathrm{PreActBlock}(x_l)                               &&3 \text{ stages} \times n \text{ blocks, widths } w, 2w, 4w\\
    \text{logits}[t] &= \mathrm{Linear}(\mathrm{AvgPool}(\mathcal{N}(\mathrm{Norm}(x_L))))[t]

Depth counts the stem, the 2 convs of each of the 3n blocks and the classifier: 6n + 2.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from .._validate import check_int
from ..layer.container import SeqOp, make_neuron
from ..layer.residual import NORMS, PreActBlock, default_neuron, make_norm


class PreActResNet(nn.Module):
    """Multi-step pre-activation spiking ResNet; see :func:`preact_resnet`."""

    def __init__(self, depth: int = 20, norm: Union[str, Callable[[int], nn.Module]] = "pspn",
                 neuron: Optional[Callable[[], nn.Module]] = None, T: int = 4, in_channels: int = 1,
                 num_classes: int = 10, width: int = 16):
        super().__init__()
        check_int("depth", depth, ge=8)
        if (depth - 2) % 6 != 0:
            raise ValueError(f"depth must be 6n+2 (e.g. 20, 32, 44, 56, 110), got {depth}")
        self.depth = depth
        self.blocks_per_stage = (depth - 2) // 6
        self.T = check_int("T", T, ge=1)
        check_int("in_channels", in_channels, ge=1)
        check_int("num_classes", num_classes, ge=2)
        check_int("width", width, ge=1)
        self.norm_kind = norm if isinstance(norm, str) else getattr(norm, "__name__", "custom")
        self.stem = SeqOp(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False))
        cin = width
        for i, (w, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2)), start=1):
            blocks = []
            for b in range(self.blocks_per_stage):
                blocks.append(PreActBlock(cin, w, stride if b == 0 else 1, norm, neuron, "m"))
                cin = w
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.head_norm = make_norm(norm, cin, "m")
        self.head_neuron = make_neuron(neuron, "m", default_neuron)
        self.pool = SeqOp(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` (repeated over T: direct encoding) or ``[T, N, C, H, W]`` -> ``[T, N, classes]``."""
        if x.dim() == 4:
            x = x.unsqueeze(0).expand(self.T, *x.shape)
        elif x.dim() != 5:
            raise ValueError(f"PreActResNet expects [N, C, H, W] or [T, N, C, H, W], got shape {tuple(x.shape)}")
        cin = self.stem[0].in_channels
        if x.shape[2] != cin:
            raise ValueError(f"PreActResNet(in_channels={cin}) got an input with {x.shape[2]} channels "
                             f"(shape {tuple(x.shape)})")
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.pool(self.head_neuron(self.head_norm(x)))
        return self.fc(x)


def preact_resnet(depth: int = 20, norm: Union[str, Callable[[int], nn.Module]] = "pspn",
                  neuron: Optional[Callable[[], nn.Module]] = None, T: int = 4, in_channels: int = 1,
                  num_classes: int = 10, width: int = 16) -> PreActResNet:
    """Build a depth-``depth`` (6n+2) pre-activation spiking ResNet.

    Args:
        depth: 6n + 2 (20, 56, 110 ...).
        norm: ``'pspn'`` | ``'bn'`` | ``'none'`` (see :func:`neuroq.layer.residual.make_norm`) or a callable.
        neuron: factory of the spiking neuron (default ``LIFNode(tau=2, detach_reset=True)``); it is put
            in step mode ``'m'``.  Use ``neuroq.neuron.S2NNNode`` with ``T=1`` for a single-step net.
        T: time steps a 4-D image input is repeated over.
        in_channels, num_classes, width: input channels, classes, width of the first stage (16 in He et al.).
    """
    return PreActResNet(depth, norm, neuron, T, in_channels, num_classes, width)


__all__ = ["PreActResNet", "preact_resnet", "NORMS"]
