"""Feed-forward spiking classifiers (MLP and CNN) and the one rule for which of them fits an input.

All models take multi-step input ``[T, N, C, H, W]`` and return ``[T, N, classes]``; the
readout is the last linear layer's output (averaged over T by the training loop).  The neuron is
a factory (``lambda: LIFNode(...)``), so the same builders serve every neuron type (ReLU included).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.fx
import torch.nn as nn

from .._validate import check_choice, check_int, check_real
from ..layer.container import SeqOp, make_neuron

ARCHS = ("auto", "mlp", "cnn")


def select_arch(in_shape: Sequence[int], arch: str = "auto") -> str:
    """``'mlp'`` for inputs of at most 256 values (e.g. 8x8 digits), ``'cnn'`` otherwise, unless ``arch``
    names one."""
    check_choice("arch", arch, ARCHS)
    if arch != "auto":
        return arch
    return "mlp" if math.prod(in_shape) <= 256 else "cnn"


def classifier(in_shape: Sequence[int], num_classes: int, neuron: Callable[[], nn.Module], arch: str = "auto",
               hidden: Sequence[int] = (256, 256), norm: bool = True) -> nn.Sequential:
    """The reference network for an input of shape ``in_shape`` (``[C, H, W]``): :func:`spiking_mlp`
    with ``hidden`` widths or :func:`spiking_cnn`, chosen by :func:`select_arch`."""
    if select_arch(in_shape, arch) == "mlp":
        return spiking_mlp(math.prod(in_shape), tuple(hidden), num_classes, neuron, norm=norm,
                           sample_shape=tuple(in_shape))
    # BatchNorm on the hidden linear layer and conv BatchNorm scales that undo the pooling's shrinkage: without
    # them the network is nearly silent at initialisation and barely learns on 8x8 digits
    # (benchmarks/results/default_cnn_digits.json)
    return spiking_cnn(tuple(in_shape), num_classes, neuron, norm=norm, fc_norm=norm, bn_gain=2.0 if norm else 1.0)


def _neuron(factory: Callable[[], nn.Module]) -> nn.Module:
    return make_neuron(factory, "m")


class FeedForward(nn.Sequential):
    """``nn.Sequential`` of a reference network that checks its input ``[T, N, *sample_shape]`` first (a
    wrong shape is a clear error, not a matrix-multiplication failure deep inside)."""

    def __init__(self, sample_shape: Sequence[int], *layers: nn.Module, flat: bool = False):
        super().__init__(*layers)
        self.sample_shape = tuple(int(v) for v in sample_shape)
        self.flat = flat

    def forward(self, x):
        """Run the layers on ``x`` ``[T, N, *sample_shape]`` (for a flattening MLP: any sample shape with as many
        values) after checking its shape; symbolic-tracing proxies pass unchecked."""
        if isinstance(x, torch.fx.Proxy):  # symbolic tracing (neuroq.nir.trace): no concrete shape
            return super().forward(x)
        if not isinstance(x, torch.Tensor) or x.dim() < 3:
            raise ValueError(f"{type(self).__name__} expects multi-step input [T, N, *{list(self.sample_shape)}], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        got = tuple(x.shape[2:])
        n = math.prod(self.sample_shape)
        if self.flat and len(self.sample_shape) == 1:  # built from a count only: any sample with as many values
            ok, want = math.prod(got) == n, f"{n} values"
        elif self.flat:  # the sample's shape or its flattened form
            ok, want = got in (self.sample_shape, (n,)), f"shape {list(self.sample_shape)} (or [{n}])"
        else:
            ok, want = got == self.sample_shape, f"shape {list(self.sample_shape)}"
        if not ok:
            raise ValueError(f"{type(self).__name__} was built for samples of {want} and takes multi-step input "
                             f"[T, N, *sample] (time first), got input {tuple(x.shape)} (samples {list(got)}); "
                             "encode samples over time first, or call neuroq.load_run(path).predict(x), which "
                             "does")
        return super().forward(x)


def spiking_mlp(in_features: int, hidden: tuple[int, ...], num_classes: int,
                neuron: Callable[[], nn.Module], norm: bool = True, sample_shape=None) -> nn.Sequential:
    """Flatten -> [Linear -> (BatchNorm1d) -> neuron] x len(hidden) -> Linear, multi-step
    (``[T, N, *sample]`` with ``in_features`` values per sample -> ``[T, N, num_classes]``).

    BatchNorm statistics are shared over T and N (``SeqToANNContainer``) and fold into the
    linear layer at inference, so they cost no energy there.  ``sample_shape`` (e.g. ``(1, 8, 8)``) makes the
    input check strict: samples of that shape or flat; without it any sample of ``in_features`` values passes."""
    check_int("in_features", in_features, ge=1)
    check_int("num_classes", num_classes, ge=2)
    layers: list[nn.Module] = [nn.Flatten(start_dim=2)]
    prev = in_features
    for h in hidden:
        check_int("hidden width", h, ge=1)
        if norm:
            layers += [SeqOp(nn.Linear(prev, h), nn.BatchNorm1d(h)), _neuron(neuron)]
        else:
            layers += [nn.Linear(prev, h), _neuron(neuron)]
        prev = h
    layers.append(nn.Linear(prev, num_classes))
    if sample_shape is not None and math.prod(sample_shape) != in_features:
        raise ValueError(f"spiking_mlp: sample_shape {tuple(sample_shape)} has {math.prod(sample_shape)} values, "
                         f"in_features is {in_features}")
    return FeedForward(tuple(sample_shape) if sample_shape is not None else (in_features,), *layers, flat=True)


def spiking_cnn(in_shape: tuple[int, int, int], num_classes: int, neuron: Callable[[], nn.Module],
                channels: tuple[int, int] = (32, 64), hidden: int = 256, norm: bool = True,
                fc_norm: bool = False, bn_gain: float = 1.0) -> nn.Sequential:
    # [T, N, C, H, W] -> [T, N, num_classes]
    """[Conv(3x3)-(BN)-AvgPool(2) -> neuron] x2 -> Linear-(BN1d)-neuron -> Linear, multi-step.

    ``fc_norm`` adds BatchNorm to the hidden linear layer too (bias-free linear, statistics over T and N).
    ``bn_gain`` is the initial scale of the conv blocks' BatchNorm: 2 makes up for the 2x2 average pooling after
    it, which halves the standard deviation of uncorrelated inputs, so the neurons see unit-variance input at
    initialisation (:func:`classifier`'s CNN uses 2 and ``fc_norm=True``).

    Pooling acts on the synaptic current *before* the neuron, so every layer after the first
    receives binary spikes (counted as accumulates by :class:`neuroq.energy.EnergyMeter`); pooling
    after the neuron would hand fractional values to the next conv (MACs).  All ops between
    neurons are linear, so the network is also valid for SAF.
    """
    if len(in_shape) != 3:
        raise ValueError(f"spiking_cnn: in_shape must be (C, H, W), got {tuple(in_shape)}")
    check_real("bn_gain", bn_gain, gt=0)
    c, h, w = in_shape
    c1, c2 = channels
    def block(cin, cout):
        ops = [nn.Conv2d(cin, cout, 3, padding=1, bias=not norm)]
        if norm:
            bn = nn.BatchNorm2d(cout)
            nn.init.constant_(bn.weight, bn_gain)
            ops.append(bn)
        ops.append(nn.AvgPool2d(2))
        return [SeqOp(*ops), _neuron(neuron)]
    layers = block(c, c1) + block(c1, c2)
    feat = c2 * (h // 4) * (w // 4)
    fc = (SeqOp(nn.Linear(feat, hidden, bias=False), nn.BatchNorm1d(hidden)) if fc_norm
          else nn.Linear(feat, hidden))
    layers += [nn.Flatten(start_dim=2), fc, _neuron(neuron), nn.Linear(hidden, num_classes)]
    return FeedForward(in_shape, *layers)
