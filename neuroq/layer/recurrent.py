r"""Recurrent spiking layer: LIF neurons whose input current includes their own previous spikes.

:class:`SpikingRNN` is the spiking counterpart of ``torch.nn.RNN``: the hidden state passed from
one step to the next is the **spike vector** :math:`s_{t-1}\in\{0,1\}^m`, and each unit is a LIF
neuron (the charge / fire / reset of :mod:`neuroq.functional.neuron`, the same equations as
:class:`neuroq.neuron.LIFNode`).  It is the recurrent spiking network that spectral pruning
(:mod:`neuroq.prune`; Furuya et al., AISTATS 2022) treats with spikes as the hidden states.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_callable, check_choice, check_int, check_step_input
from ..functional import neuron as neuron_fn
from ..neuron.base import Neuron


class SpikingRNN(Neuron):
    r"""Recurrent layer of LIF neurons driven by the input and by the previous step's spikes.

    Per time step :math:`t = 1..T` (state :math:`V[0] = V_{reset}` (0 for soft reset),
    :math:`s_0 = 0`):

    .. math::
        I_t &= W_x x_t + W_h s_{t-1} + b                       &&\text{input current}\\
        H_t &= V_{t-1} + \tfrac{1}{\tau}\bigl(I_t - (V_{t-1} - V_{reset})\bigr)
                                                                &&\text{LIF charge (decay\_input)}\\
        s_t &= \Theta(H_t - V_{th})                             &&\text{fire (surrogate backward)}\\
        V_t &= H_t (1 - s_t) + V_{reset}\, s_t \;\text{(hard)}\quad\text{or}\quad H_t - V_{th} s_t
                                                                \;\text{(soft, } V_{reset}=\text{None)}

    (``decay_input=False``: :math:`H_t = V_{t-1} - \frac{1}{\tau}(V_{t-1}-V_{reset}) + I_t`.)
    Symbols: :math:`x_t` input ``[N, input_size]``, :math:`s_t` spikes ``[N, hidden_size]``,
    :math:`W_x` = ``ih.weight`` ``[hidden, input]``, :math:`b` = ``ih.bias``,
    :math:`W_h` = ``hh.weight`` ``[hidden, hidden]`` (no bias).  Gradients flow through the
    recurrent spikes (BPTT with the surrogate).  The state (``v`` and the last spikes ``s``) is
    SpikingJelly memory: call ``functional.reset_net(model)`` between sequences.

    The two projections are ``nn.Linear`` modules, so :class:`neuroq.energy.EnergyMeter` counts
    the input projection (MACs for real input, SOPs for spikes) and the recurrent synapses (SOPs:
    each spike times ``hidden_size``) without any special rule.

    Args:
        input_size: features per step of the input.
        hidden_size: number of recurrent LIF units :math:`m`.
        bias: learnable bias :math:`b` on the input projection.
        tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset:
            as :class:`neuroq.neuron.LIFNode`.
        step_mode: ``'m'`` (default; input ``[T, N, input_size]``) or ``'s'`` (one step ``[N, input_size]``).
        store_v_seq: in multi-step mode keep ``v_seq`` ``[T, N, hidden_size]`` (after reset).

    Inputs / Outputs:
        * ``'m'``: ``x_seq [T, N, input_size]`` -> spikes ``[T, N, hidden_size]``
        * ``'s'``: ``x [N, input_size]`` -> spikes ``[N, hidden_size]``

    Example::

        >>> import torch
        >>> from spikingjelly.activation_based import functional
        >>> rnn = SpikingRNN(28, 64, tau=2.0)
        >>> s = rnn(torch.rand(28, 16, 28))      # rows of a 28x28 image as a sequence
        >>> s.shape
        torch.Size([28, 16, 64])
        >>> functional.reset_net(rnn)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, tau: float = 2.0,
                 decay_input: bool = True, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 surrogate_function=None, detach_reset: bool = False, step_mode: str = "m",
                 store_v_seq: bool = False):
        super().__init__()
        self.input_size = check_int("input_size", input_size, ge=1)
        self.hidden_size = check_int("hidden_size", hidden_size, ge=1)
        check_bool("bias", bias)
        #: the neuron's one parameter record (validated: tau > 1, finite values, v_threshold > v_reset)
        self.params = neuron_fn.LIFParameters(tau=tau, decay_input=decay_input, v_threshold=v_threshold,
                                              v_reset=v_reset, detach_reset=detach_reset)
        if surrogate_function is None:
            surrogate_function = _sj.default_surrogate()
        self.surrogate_function = check_callable("surrogate_function", surrogate_function)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.store_v_seq = check_bool("store_v_seq", store_v_seq)
        self.ih = nn.Linear(input_size, hidden_size, bias=bias)
        self.hh = nn.Linear(hidden_size, hidden_size, bias=False)
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.register_memory("s", 0.0)
        self.v_seq = None

    # ---- input ----------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, mode: str) -> None:
        check_step_input("SpikingRNN", x, mode)
        rank = 3 if mode == "m" else 2
        if x.dim() != rank or x.shape[-1] != self.input_size:
            layout = "[T, N, input_size]" if mode == "m" else "[N, input_size]"
            raise ValueError(f"SpikingRNN in step_mode={mode!r} expects input of shape {layout} with "
                             f"input_size={self.input_size}, got shape {tuple(x.shape)}")

    def step(self, current: torch.Tensor, v: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""One step, pure: input-projected current :math:`W_x x_t + b`, state ``(v, s_{t-1})`` -> ``(s_t, v_t)``."""
        return neuron_fn.lif_step(current + self.hh(s), v, self.params, self.surrogate_function)

    tau = property(lambda self: self.params.tau)
    decay_input = property(lambda self: self.params.decay_input)
    v_threshold = property(lambda self: self.params.v_threshold)
    v_reset = property(lambda self: self.params.v_reset)
    detach_reset = property(lambda self: self.params.detach_reset)

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, input_size]`` -> spikes ``[N, hidden_size]``, from the stored ``v`` and previous
        spikes ``s``, which are then updated."""
        self._check(x, "s")
        cur = self.ih(x)
        s, v = self.step(cur, self._stored_state("v", cur), self._stored_state("s", cur))
        self.v, self.s = v, s
        return s

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A sequence ``[T, N, input_size]`` -> spikes ``[T, N, hidden_size]``, continuing from the stored state
        (the input projection is one matrix product over all steps, the recurrence a loop).  Keeps ``v_seq`` when
        ``store_v_seq``."""
        self._check(x_seq, "m")
        cur_seq = self.ih(x_seq)                      # all T input projections in one matmul
        v = self._stored_state("v", cur_seq[0])
        s = self._stored_state("s", cur_seq[0])
        spikes, vs = [], []
        for cur in cur_seq.unbind(0):                 # O(T): no x_seq[t] indexing in the loop
            s, v = self.step(cur, v, s)
            spikes.append(s)
            if self.store_v_seq:
                vs.append(v)
        self.v, self.s = v, s
        if self.store_v_seq:
            self.v_seq = torch.stack(vs)
        return torch.stack(spikes)

    def reset(self):
        """Reset the memories ``v`` and ``s`` to their initial values and drop ``v_seq``."""
        super().reset()
        self.v_seq = None

    def extra_repr(self) -> str:
        """The layer's sizes, LIF parameters and step mode, shown in the module's ``repr``."""
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, tau={self.tau}, "
                f"decay_input={self.decay_input}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"detach_reset={self.detach_reset}, step_mode={self.step_mode}")
