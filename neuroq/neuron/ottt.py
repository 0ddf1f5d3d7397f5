r"""OTTT's online LIF neuron (Xiao et al., "Online Training Through Time for Spiking Neural Networks",
NeurIPS 2022): the membrane is detached between steps in training and every neuron keeps a presynaptic
trace for the gradient of the next synapse (see :class:`neuroq.layer.OTTTSequential`)."""
from __future__ import annotations

from typing import Optional

from .._validate import check_step_input
from ..functional import neuron as neuron_fn
from ..functional import saf as FS
from ..functional.neuron import LIFParameters
from .lif import LIFNode


class OnlineLIFNode(LIFNode):
    r"""LIF neuron for OTTT: soft reset, membrane detached between steps in training, presynaptic trace.

    .. math::
        u[t] = \lambda\,\mathrm{sg}(v[t-1]) + I[t],\quad s[t] = \Theta(u[t]-V_{th}),\quad
        v[t] = u[t] - V_{th}s[t],\quad \hat a[t] = \lambda\hat a[t-1] + \mathrm{sg}(s[t])

    (:math:`\mathrm{sg}` = stop-gradient; ``decay_input=False`` gives :math:`\lambda = 1-1/\tau`).
    The trace is kept in ``trace`` (training mode only).  One training step is one fused kernel call
    (charge, fire, reset and trace together) where the ``'cpu'`` / ``'cupy'`` kernel applies.

    Args:
        tau: membrane time constant (> 1).
        decay_input: divide the input by ``tau`` (OTTT: ``False``).
        v_threshold: :math:`V_{th}`.
        surrogate_function: SpikingJelly surrogate (default ``Sigmoid(alpha=4.)``).
        backend: ``'auto'`` | ``'torch'`` | ``'cpu'`` | ``'cupy'``.

    Inputs: ``x`` ``[N, ...]`` (single-step mode; in eval mode multi-step ``[T, N, ...]`` works too).

    Outputs: spikes of the same shape; ``v`` and, in training, ``trace`` ``[N, ...]`` on the module.

    Example::

        >>> import torch
        >>> from neuroq.neuron import OnlineLIFNode
        >>> node = OnlineLIFNode(tau=2.0).train()
        >>> [node(torch.full((1,), 0.8)).item() for _ in range(3)]   # u = 0.8, 1.2, 0.9
        [0.0, 1.0, 0.0]
        >>> node.trace.tolist()       # 0.5 * (0.5 * 0 + 1) + 0
        [0.5]
    """

    # its own family member: the kernel runs it with the membrane detached and the trace (training)
    kernel_family = "lif"

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 surrogate_function=None, backend: str = "auto", params: Optional[LIFParameters] = None):
        if params is None:
            params = LIFParameters(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=None,
                                   detach_reset=True)
        super().__init__(surrogate_function=surrogate_function, step_mode="s", backend=backend, params=params)
        self.register_memory("trace", None)

    def step(self, x, v):
        """One step, pure: the LIF step with ``v`` detached first in training (no gradient through time)."""
        if self.training:
            v = v.detach()
        return super().step(x, v)

    def single_step_forward(self, x):
        r"""One step ``x`` ``[N, ...]`` -> spikes; updates ``v`` and, in training, the trace
        :math:`\hat a[t] = \lambda\hat a[t-1] + s[t]` (spikes detached)."""
        check_step_input(type(self).__name__, x, "s")
        v0 = self._initial_v(x)
        if self.training:
            v0 = v0.detach()
        trace = (self.trace, FS.decay(self.params.tau)) if self.training else None
        out = self._kernel(x.unsqueeze(0), v0, False, trace=trace)
        if out is None:
            s, v = self.step(x, v0)
            if self.training:
                sd = s.detach()
                self.trace = sd if self.trace is None else FS.decay(self.params.tau) * self.trace + sd
        else:
            s, v = out.out[0], out.state
            if self.training:
                self.trace = out.trace
        self.v = v
        return s

    def multi_step_forward(self, x_seq):
        """``x_seq`` ``[T, N, ...]`` -> spikes ``[T, N, ...]``.  In training, a loop over :meth:`step` with the
        membrane detached between steps (the trace is not kept); in eval, the plain LIF forward."""
        if self.training:  # detached membrane between steps: the generic loop over step()
            check_step_input(type(self).__name__, x_seq, "m")
            spikes, self.v, v_seq = neuron_fn.multi_step(self.step, x_seq, self._initial_v(x_seq[0]), self.store_v_seq)
            if self.store_v_seq:
                self.v_seq = v_seq
            return spikes
        return super().multi_step_forward(x_seq)
