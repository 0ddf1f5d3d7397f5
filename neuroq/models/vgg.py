r"""VGG networks of the online-training papers as multi-step soft-reset LIF networks.

:func:`lif_vgg_ws` is OTTT's VGG-11-WS (Xiao et al., NeurIPS 2022; the setup SAF, Saiin et al. TMLR 2024,
reuses): weight-standardized convolutions, soft-reset LIF (tau 2, ``decay_input=False``), the constant
``Scale(2.74)``, average pooling, and a light classifier.  :func:`lif_vgg_bn` is the same shape with
BatchNorm for BPTT.  Convert them with :mod:`neuroq.convert`.
"""
from __future__ import annotations

import torch.nn as nn

from ..layer.container import SeqOp
from ..layer.ws import Scale, ScaledWSConv2d
from ..neuron.lif import LIFNode

# OTTT's VGG ("online_spiking_vgg11_ws"): A = 2x2 average pooling
OTTT_VGG11 = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512)


def _soft_lif(tau, surrogate_function=None, v_threshold=1.0):
    return LIFNode(tau=tau, decay_input=False, v_threshold=v_threshold, v_reset=None,
                   surrogate_function=surrogate_function, detach_reset=True, step_mode="m")


def lif_vgg_ws(cfg=OTTT_VGG11, in_channels: int = 3, num_classes: int = 10, tau: float = 2.0,
               surrogate_function=None, ws_scale: float = 2.74) -> nn.Sequential:
    r"""OTTT's VGG-11-WS as a multi-step soft-reset LIF network (``[T, N, C, H, W]`` in, ``[T, N, classes]``
    out): per conv entry ``ScaledWSConv2d(3x3) -> LIF -> Scale(2.74)``, ``'A'`` = 2x2 average pooling,
    then global average pooling and a linear classifier (OTTT's "light classifier").  Convert it with
    :func:`neuroq.convert.saf_from_lif` (SAF-E/F) or :func:`neuroq.convert.ottt_from_lif` (OTTT_O/A).
    Init as OTTT: Kaiming-normal (fan_out) convs, :math:`N(0, 0.01)` classifier, zero biases."""
    layers: list = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(SeqOp(nn.AvgPool2d(2)))
        else:
            conv = ScaledWSConv2d(c, int(v), 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [SeqOp(conv), _soft_lif(tau, surrogate_function),
                       SeqOp(Scale(ws_scale))]
            c = int(v)
    fc = nn.Linear(c, num_classes)
    nn.init.normal_(fc.weight, 0, 0.01)
    nn.init.zeros_(fc.bias)
    layers += [SeqOp(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)), fc]
    return nn.Sequential(*layers)


def lif_vgg_bn(cfg=OTTT_VGG11, in_channels: int = 3, num_classes: int = 10, tau: float = 2.0,
               surrogate_function=None, neuron=None) -> nn.Sequential:
    """The same VGG shape with ``Conv -> BatchNorm -> LIF`` (BPTT baseline; not SAF-convertible).
    ``neuron``: a factory of the multi-step neuron (default neuroq's soft-reset LIF with ``tau``), e.g.
    SpikingJelly's own ``LIFNode`` for a side-by-side benchmark."""
    layers: list = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(SeqOp(nn.AvgPool2d(2)))
        else:
            layers += [SeqOp(nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v))),
                       neuron() if neuron is not None else _soft_lif(tau, surrogate_function)]
            c = int(v)
    layers += [SeqOp(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)
