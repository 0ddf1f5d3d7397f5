r"""OTTT's online LIF neuron (Xiao et al., "Online Training Through Time for Spiking Neural Networks",
NeurIPS 2022): the membrane is detached between steps in training and every neuron keeps a presynaptic
trace for the gradient of the next synapse (see :class:`neuroq.layer.ottt.OTTTSequential`)."""
from __future__ import annotations

from ..functional import saf as FS
from .lif import LIFNode


class OnlineLIFNode(LIFNode):
    r"""LIF neuron for OTTT: soft reset, membrane detached between steps in training, presynaptic trace.

    .. math::
        u[t] = \lambda\,\mathrm{sg}(v[t-1]) + I[t],\quad s[t] = \Theta(u[t]-V_{th}),\quad
        v[t] = u[t] - V_{th}s[t],\quad \hat a[t] = \lambda\hat a[t-1] + \mathrm{sg}(s[t])

    (:math:`\mathrm{sg}` = stop-gradient; ``decay_input=False`` gives :math:`\lambda = 1-1/\tau`).
    The trace is kept in ``trace`` (training mode only).  Single-step mode.
    """

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 surrogate_function=None):
        super().__init__(tau, decay_input, v_threshold, None, surrogate_function, True, "s", "torch", False)
        self.register_memory("trace", None)

    def step(self, x, v):
        if self.training:
            v = v.detach()
        return super().step(x, v)

    def single_step_forward(self, x):
        s = super().single_step_forward(x)
        if self.training:
            sd = s.detach()
            self.trace = sd if self.trace is None else FS.decay(self.tau) * self.trace + sd
        return s
