r"""The OTTT network container (Xiao et al., "Online Training Through Time for Spiking Neural Networks",
NeurIPS 2022), for SpikingJelly 0.0.0.0.14 and 2.0.0 alike.

The LIF membrane is detached between steps and every neuron keeps a presynaptic trace
:math:`\hat a[t] = \lambda\hat a[t-1] + s[t]` (:class:`neuroq.neuron.OnlineLIFNode`).  Each synaptic op
runs **twice** per step: on the spikes for the forward value and on the trace for the gradient:

.. math::
    o = \mathrm{op}(s)\ \text{(value)},\qquad \nabla_W = \delta\,\hat a^\top,\qquad
    \partial L/\partial s = W^\top\delta .

This duplicated op is the cost Spike Accumulation Forwarding removes (:mod:`neuroq.layer.saf`).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_real
from ..functional import saf as FS
from ..neuron.ottt import OnlineLIFNode


class _Replace(torch.autograd.Function):
    """Forward value of ``x_value``; gradient goes to ``x_grad`` (and to ``x_value``)."""

    @staticmethod
    def forward(ctx, x_grad, x_value):
        return x_value.view_as(x_value)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def ottt_op(op: nn.Module, spike: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    r"""OTTT synapse: value ``op(spike)`` (no graph), gradient through ``op(trace)`` -- two ops."""
    with torch.no_grad():
        value = op(spike)
    for_grad = op(_Replace.apply(spike, trace))
    return _Replace.apply(for_grad, value)


class OTTTSequential(_sj.MemoryModule):
    r"""Single-step OTTT network: a flat sequence (``layers``) of synapses, :class:`OnlineLIFNode` s and
    stateless ops.

    In training mode with gradients enabled, synapses (modules with parameters) after a neuron run
    :func:`ottt_op` on (spike, trace), stateless ops run on both; with ``input_trace`` the network
    input is treated like a spike train too (trace :math:`\hat x[t] = \lambda\hat x[t-1] + x[t]`).
    In eval mode (or without grad) it is the plain LIF network, one step per call.  Step mode
    ``'m'`` (``[T, N, ...]``) loops over the steps.

    Example::

        >>> from neuroq.convert import ottt_from_lif
        >>> net = ottt_from_lif(lif_network)        # a multi-step soft-reset LIF nn.Sequential
        >>> out_t = net(x_seq[t])                    # one step, [N, ...] -> [N, classes]
    """

    def __init__(self, *modules, tau: float = 2.0, input_trace: bool = True, step_mode: str = "s"):
        super().__init__()
        self.layers = nn.ModuleList(modules)
        self.tau = check_real("tau", tau, gt=1.0)
        self.input_trace = check_bool("input_trace", input_trace)
        self.step_mode = step_mode
        self.register_memory("in_trace", None)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def single_step_forward(self, x):
        """One step ``x`` ``[N, ...]``.  In training with gradients enabled, the OTTT forward (spikes for the value,
        traces for the gradient, the input trace updated when ``input_trace``); otherwise the plain network.
        Returns the last layer's output for this step."""
        online = self.training and torch.is_grad_enabled()
        if not online:
            for m in self.layers:
                x = m(x)
            return x
        if self.input_trace:
            xd = x.detach()
            tr = xd if self.in_trace is None else FS.decay(self.tau) * self.in_trace + xd
            self.in_trace = tr
            spike, trace = x, tr
        else:
            spike, trace = x, None
        for m in self.layers:
            if isinstance(m, OnlineLIFNode):
                spike = m(spike)
                trace = m.trace
            elif trace is not None and _has_params(m):
                spike, trace = ottt_op(m, spike, trace), None
            elif trace is not None:
                spike = m(spike)
                with torch.no_grad():
                    trace = m(trace)
            else:
                spike = m(spike)
        return spike

    def multi_step_forward(self, x_seq):
        """Loop :meth:`single_step_forward` over ``x_seq`` ``[T, N, ...]``; returns the outputs stacked,
        ``[T, N, ...]``."""
        return torch.stack([self.single_step_forward(x) for x in x_seq.unbind(0)])
