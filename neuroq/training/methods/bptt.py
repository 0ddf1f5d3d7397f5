"""Baselines trained with backpropagation through time: ``lif``, ``if`` (multi-step spiking) and
``ann`` (the same network with ReLU, one step)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ...neuron import IFNode, LIFNode
from ...functional import IFParameters, LIFParameters
from ..config import record_option
from .base import FeedForwardConfig, Method, TimeConfig, register


@dataclass
class IFConfig(TimeConfig, FeedForwardConfig):
    """Options of ``--method if``: time steps ``T``, the reference MLP/CNN and the threshold ``v_threshold``."""

    v_threshold: float = record_option(IFParameters, "v_threshold")


@dataclass
class LIFConfig(IFConfig):
    """Options of ``--method lif``: :class:`IFConfig` plus the membrane time constant ``tau``."""

    tau: float = record_option(LIFParameters, "tau")


@register("lif")
class LIFMethod(Method):
    """``--method lif``: the reference MLP/CNN with multi-step :class:`~neuroq.neuron.LIFNode` neurons
    (hard reset to 0, reset detached, the neuron's default surrogate), trained by BPTT over ``T`` steps."""

    help = "multi-step LIF network trained with BPTT and surrogate gradients"
    Config = LIFConfig
    kinds = ("image", "frames")

    def neuron(self):
        """Factory of multi-step LIF neurons with the configured ``tau`` and ``v_threshold``."""
        c = self.config
        return lambda: LIFNode(tau=c.tau, v_threshold=c.v_threshold, detach_reset=True, step_mode="m")


@register("if")
class IFMethod(Method):
    """``--method if``: as :class:`LIFMethod` with non-leaky :class:`~neuroq.neuron.IFNode` neurons."""

    help = "multi-step IF network trained with BPTT"
    Config = IFConfig
    kinds = ("image", "frames")

    def neuron(self):
        """Factory of multi-step IF neurons with the configured ``v_threshold``."""
        c = self.config
        return lambda: IFNode(v_threshold=c.v_threshold, detach_reset=True, step_mode="m")


@register("ann")
class ANNMethod(Method):
    """``--method ann``: the reference MLP/CNN with ReLU, run for one step (the non-spiking baseline)."""

    help = "the same architecture with ReLU (non-spiking baseline, one step)"
    Config = FeedForwardConfig

    def neuron(self):
        """``nn.ReLU`` (the class is the factory)."""
        return nn.ReLU
