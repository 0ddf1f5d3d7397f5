r"""``neuroq train --method s2nn``: the single-step S²NN network (Suetake, Ikegawa, Saiin, Sawada,
arXiv 2201.10879).

The reference MLP/CNN with :class:`neuroq.neuron.S2NNNode` neurons and one time step: hidden layers
exchange binary spikes once; the backward pass uses :class:`neuroq.surrogate.S2NN` (the T_ref-step
surrogate gradient reduced to one step).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...neuron import S2NNNode
from ...surrogate import PER_STEP, S2NN
from ...functional import S2NNParameters
from ..config import record_option, positive_int
from .base import FeedForwardConfig, Method, register


@dataclass
class S2NNConfig(FeedForwardConfig):
    """Options of ``--method s2nn``: the reference MLP/CNN plus the surrogate's ``t_ref``, ``alpha`` and
    ``per_step`` and the neuron's threshold ``v_threshold`` (the surrogate uses the same threshold)."""

    t_ref: int = record_option(S2NNParameters, "t_ref", parse=positive_int("--t-ref"))
    alpha: float = record_option(S2NNParameters, "alpha")
    per_step: str = record_option(S2NNParameters, "per_step", choices=PER_STEP)
    v_threshold: float = record_option(S2NNParameters, "v_threshold")


@register("s2nn")
class S2NNMethod(Method):
    """``--method s2nn``: the reference MLP/CNN with :class:`~neuroq.neuron.S2NNNode` neurons, one time step."""

    help = "single-step S2NN network (binary spikes, T=1) with the reduced multi-step surrogate"
    Config = S2NNConfig

    def neuron(self):
        """Factory of S2NN neurons whose surrogate is :class:`~neuroq.surrogate.S2NN` with the configured
        parameters."""
        c = self.config
        return lambda: S2NNNode(v_threshold=c.v_threshold, surrogate_function=S2NN(
            t_ref=c.t_ref, alpha=c.alpha, v_threshold=c.v_threshold, per_step=c.per_step), step_mode="m")
