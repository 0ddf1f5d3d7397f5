r"""``neuroq train --method s2nn``: the single-step S²NN network (Suetake, Ikegawa, Saiin, Sawada,
arXiv 2201.10879).

The reference MLP/CNN with :class:`neuroq.neuron.S2NNNode` neurons and one time step: hidden layers
exchange binary spikes once.  The backward pass is, by default, the paper's surrogate as SpikingJelly and
BrainPy implement it (``s2nn_surrogate='published'``); ``'reduced'`` is neuroq's own reduction of a T_ref-step
IF neuron (:class:`neuroq.surrogate.S2NN`), 1.5 points less accurate on Fashion-MNIST (docs/s2nn.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ... import _sj
from ...neuron import S2NNNode
from ...surrogate import PER_STEP, S2NN
from ...functional import S2NNParameters
from ..config import option, positive_float, positive_int, record_option
from .base import FeedForwardConfig, Method, register


#: the backward passes ``--method s2nn`` offers (``s2nn_surrogate``)
S2NN_SURROGATES = ("published", "reduced")


@dataclass
class S2NNConfig(FeedForwardConfig):
    """Options of ``--method s2nn``: the reference MLP/CNN, the neuron's threshold ``v_threshold`` and its
    backward pass ``s2nn_surrogate``: ``published`` (default), the surrogate of the S2NN paper as SpikingJelly
    and BrainPy implement it (``alpha``, ``beta``), or ``reduced``, neuroq's reduction of a ``t_ref``-step IF
    neuron (``t_ref``, ``alpha``, ``per_step``; :class:`neuroq.surrogate.S2NN`)."""

    #: runs stored before ``s2nn_surrogate`` existed trained with neuroq's reduced surrogate
    STORED_BEFORE: ClassVar[dict] = {"s2nn_surrogate": "reduced"}

    s2nn_surrogate: str = option("published", "S2NN backward: published (the paper's surrogate as SpikingJelly "
                                 "implements it: sigmoid'(alpha x) below the threshold, beta/(x+1) above) or "
                                 "reduced (neuroq's T_ref-step IF reduction: --t-ref, --per-step)",
                                 choices=S2NN_SURROGATES)
    beta: float = option(1.0, "published S2NN surrogate: scale of the beta/(x+1) gradient above the threshold",
                         parse=positive_float("--beta"))
    t_ref: int = record_option(S2NNParameters, "t_ref", parse=positive_int("--t-ref"))
    alpha: float = record_option(S2NNParameters, "alpha")
    per_step: str = record_option(S2NNParameters, "per_step", choices=PER_STEP)
    v_threshold: float = record_option(S2NNParameters, "v_threshold")


@register("s2nn")
class S2NNMethod(Method):
    """``--method s2nn``: the reference MLP/CNN with :class:`~neuroq.neuron.S2NNNode` neurons, one time step."""

    help = "single-step S2NN network (binary spikes, T=1) with the S2NN surrogate (published or reduced)"
    Config = S2NNConfig

    def neuron(self):
        """Factory of S2NN neurons whose surrogate is the published S2NN surrogate (SpikingJelly's
        ``surrogate.S2NN(alpha, beta)``) or, with ``s2nn_surrogate='reduced'``, :class:`~neuroq.surrogate.S2NN`
        with the configured parameters."""
        c = self.config
        if c.s2nn_surrogate == "published":
            return lambda: S2NNNode(v_threshold=c.v_threshold, surrogate_function=_sj.surrogate.S2NN(
                alpha=c.alpha, beta=c.beta), step_mode="m")
        return lambda: S2NNNode(v_threshold=c.v_threshold, surrogate_function=S2NN(
            t_ref=c.t_ref, alpha=c.alpha, v_threshold=c.v_threshold, per_step=c.per_step), step_mode="m")
