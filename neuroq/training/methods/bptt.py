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
    v_threshold: float = record_option(IFParameters, "v_threshold")


@dataclass
class LIFConfig(IFConfig):
    tau: float = record_option(LIFParameters, "tau")


@register("lif")
class LIFMethod(Method):
    help = "multi-step LIF network trained with BPTT and surrogate gradients"
    Config = LIFConfig
    kinds = ("image", "frames")

    def neuron(self):
        c = self.config
        return lambda: LIFNode(tau=c.tau, v_threshold=c.v_threshold, detach_reset=True, step_mode="m")


@register("if")
class IFMethod(Method):
    help = "multi-step IF network trained with BPTT"
    Config = IFConfig
    kinds = ("image", "frames")

    def neuron(self):
        c = self.config
        return lambda: IFNode(v_threshold=c.v_threshold, detach_reset=True, step_mode="m")


@register("ann")
class ANNMethod(Method):
    help = "the same architecture with ReLU (non-spiking baseline, one step)"
    Config = FeedForwardConfig

    def neuron(self):
        return nn.ReLU
