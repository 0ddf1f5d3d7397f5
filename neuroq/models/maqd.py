r"""MaQD networks (Sawada, Saiin, Suetake, arXiv 2403.14999): single-step (``T = 1``) weight-standardized
:math:`M_w`-state conv/linear layers (:class:`neuroq.layer.QuantConv2d` / ``QuantLinear``), Layer-Batch
Normalization and :math:`M_a`-state activations (:class:`neuroq.layer.QuantAct`; :math:`M_a = 2` gives
spikes), wrapped in a :class:`~neuroq.layer.SeqOp` so they take the multi-step layout ``[T, N, ...]``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch.nn as nn

from .. import _sj
from .._validate import check_choice, check_int
from ..layer.container import SeqOp
from ..layer.norm import LayerBatchNorm1d, LayerBatchNorm2d
from ..layer.quant import QuantAct, QuantConv2d, QuantLinear

NORMS = ("lbn", "lbn-b", "bn")
#: activation backward passes: clipped STE, neuroq's reduced S2NN surrogate, the published S2NN surrogate
#: (SpikingJelly's ``surrogate.S2NN``), SpikingJelly's Sigmoid
SURROGATES = ("ste", "s2nn", "s2nn-published", "sigmoid")


def _norm(kind: str, c: int, dims: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(c) if dims == 2 else nn.BatchNorm1d(c)
    cls = LayerBatchNorm2d if dims == 2 else LayerBatchNorm1d
    return cls(c, reading="a" if kind == "lbn" else "b")


def _surrogate(name: str):
    check_choice("surrogate", name, SURROGATES)
    if name == "ste":
        return None
    if name == "s2nn":
        return "s2nn"
    if name == "s2nn-published":
        return _sj.surrogate.S2NN(alpha=4.0, beta=1.0)
    return _sj.default_surrogate()


def maqd_cnn(in_shape: Sequence[int], num_classes: int, w_states: Optional[int] = 3,
             a_states: Optional[int] = 2, channels: Sequence[int] = (32, 64), norm: str = "lbn",
             surrogate: str = "ste", edge_w_states: Union[int, None, str] = "same",
             a_range: float = 1.0) -> SeqOp:
    r"""Small MaQD CNN on ``[T, N, C, H, W]``:
    ``[QuantConv3x3 -> Norm -> QuantAct -> MaxPool2] x len(channels) -> Flatten -> QuantLinear(gain)``.

    Every weight layer (first and last included) has :math:`M_w` states; MaxPool keeps the activations
    on their integer grid (the max of spikes is their OR).  ``w_states``/``a_states`` ``None`` gives
    the full-precision twin (standardized weights, ReLU).  ``edge_w_states`` overrides the states of
    the first and last weight layers (``'same'``: ``w_states``; ``None``: full precision)."""
    check_choice("norm", norm, NORMS)
    edge = w_states if edge_w_states == "same" else edge_w_states
    c, h, w = (int(v) for v in in_shape)
    sg = _surrogate(surrogate)
    layers: list[nn.Module] = []
    prev = c
    for i, ch in enumerate(channels):
        check_int("channels", ch, ge=1)
        layers += [QuantConv2d(prev, ch, 3, padding=1, bias=False, w_states=edge if i == 0 else w_states),
                   _norm(norm, ch, 2),
                   QuantAct(a_states, a_range=a_range, surrogate=sg), nn.MaxPool2d(2)]
        prev = ch
        h, w = h // 2, w // 2
    layers += [nn.Flatten(), QuantLinear(prev * h * w, num_classes, w_states=edge, gain=True)]
    return SeqOp(nn.Sequential(*layers))


def maqd_mlp(in_features: int, hidden: Sequence[int], num_classes: int, w_states: Optional[int] = 3,
             a_states: Optional[int] = 2, norm: str = "lbn", surrogate: str = "ste",
             a_range: float = 1.0) -> SeqOp:
    """MaQD MLP: ``Flatten -> [QuantLinear -> Norm1d -> QuantAct] x len(hidden) -> QuantLinear(gain)``."""
    check_choice("norm", norm, NORMS)
    sg = _surrogate(surrogate)
    layers: list[nn.Module] = [nn.Flatten()]
    prev = int(in_features)
    for hdim in hidden:
        check_int("hidden width", hdim, ge=1)
        layers += [QuantLinear(prev, hdim, bias=False, w_states=w_states), _norm(norm, hdim, 1),
                   QuantAct(a_states, a_range=a_range, surrogate=sg)]
        prev = hdim
    layers.append(QuantLinear(prev, num_classes, w_states=w_states, gain=True))
    return SeqOp(nn.Sequential(*layers))
