r"""``neuroq train --method maqd``: MaQD quantization-aware training (Sawada, Saiin, Suetake,
arXiv 2403.14999).

The network is single-step: weight-standardized :math:`M_w`-state conv/linear layers, Layer-Batch
Normalization and :math:`M_a`-state activations (:math:`M_a = 2` gives spikes); see
:mod:`neuroq.models.maqd`.  Example::

    neuroq train --method maqd --w-states 3 --a-states 2 --dataset fashion-mnist --data-dir DIR
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Optional, Union

from ...models import maqd_cnn, maqd_mlp, select_arch
from ...models.maqd import NORMS, SURROGATES
from ..config import option, positive_int
from .base import FeedForwardConfig, Method, register


def parse_states(s: str) -> Optional[int]:
    """argparse type: an integer >= 2, or ``fp``/``none`` for full precision (returns ``None``)."""
    if str(s).lower() in ("fp", "none", "full"):
        return None
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"states must be an integer >= 2 or 'fp', got {s!r}")
    if v < 2:
        raise argparse.ArgumentTypeError(f"states must be >= 2 (or 'fp'), got {v}")
    return v


@dataclass
class MaQDConfig(FeedForwardConfig):
    """Options of ``--method maqd``: weight and activation states (``None``: full precision), the
    normalization, the activation range and backward pass, the CNN widths and the states of the first and
    last weight layers (``edge_w_states``, not a command-line option)."""

    w_states: Optional[int] = option(3, "weight states M_w (>= 2) or 'fp' (full precision)", parse=parse_states)
    a_states: Optional[int] = option(2, "activation states M_a (>= 2; 2 = spikes) or 'fp' (ReLU)", parse=parse_states)
    norm: str = option("lbn", "lbn: Layer-Batch Norm reading (a); lbn-b: reading (b); bn: BatchNorm", choices=NORMS)
    a_range: float = option(1.0, "activation range r: the M_a states split [0, r] (step r/(M_a-1))")
    surrogate: str = option("ste", "activation backward: clipped STE, the S2NN surrogate (s2nn: neuroq's reduced; "
                            "s2nn-published: the paper's as SpikingJelly implements it), or SpikingJelly Sigmoid",
                            choices=SURROGATES)
    channels: tuple = option((32, 64), "conv widths of the CNN", nargs="+", parse=positive_int("--channels"))
    edge_w_states: Union[int, None, str] = option("same", "states of the first and last weight layers "
                                                  "('same' as --w-states, or 'fp')", cli=False)

    def __post_init__(self):
        super().__post_init__()
        for k in ("w_states", "a_states"):
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
                raise ValueError(f"{k} must be an integer >= 2 or None (full precision), got {v!r}")
        e = self.edge_w_states
        if e not in ("same", "fp", None) and (isinstance(e, bool) or not isinstance(e, int) or e < 2):
            raise ValueError(f"edge_w_states must be 'same', 'fp', None or an integer >= 2, got {e!r}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {self.norm!r}")
        if self.surrogate not in SURROGATES:
            raise ValueError(f"surrogate must be one of {SURROGATES}, got {self.surrogate!r}")
        self.channels = tuple(self.channels)


@register("maqd")
class MaQDMethod(Method):
    """``--method maqd``: a single-step quantized MLP or CNN (:mod:`neuroq.models.maqd`) trained by the
    common loop."""

    help = "MaQD quantization-aware training: WS + M_w-state weights, LBN, M_a-state activations (T=1)"
    Config = MaQDConfig

    def build_model(self, data):
        """:func:`~neuroq.models.maqd_mlp` or :func:`~neuroq.models.maqd_cnn` for ``data``, as ``arch`` selects."""
        c = self.config
        if select_arch(data.in_shape, c.arch) == "mlp":
            return maqd_mlp(math.prod(data.in_shape), c.hidden, data.num_classes, c.w_states, c.a_states, c.norm,
                            c.surrogate, a_range=c.a_range)
        return maqd_cnn(data.in_shape, data.num_classes, c.w_states, c.a_states, c.channels, c.norm, c.surrogate,
                        c.edge_w_states, a_range=c.a_range)
