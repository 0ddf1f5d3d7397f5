r"""Torch reference of the integrate-and-fire family (no module state, autograd-friendly).

Every neuron is three steps per time step (SpikingJelly's convention):

* charge: :math:`H[t] = f(V[t-1], X[t])`
* fire:   :math:`S[t] = \Theta(H[t] - V_{th})` (surrogate gradient in backward)
* reset:  hard :math:`V[t] = H[t](1 - S[t]) + V_{reset} S[t]`, soft (``v_reset=None``)
  :math:`V[t] = H[t] - V_{th} S[t]`; ``detach_reset`` detaches :math:`S[t]` in the reset only.

The parameters of a family travel as one frozen record (:class:`IFParameters`,
:class:`LIFParameters`, in the style of Norse's ``LIFParameters``): the neuron modules hold one,
these functions and the fused kernels of :mod:`neuroq.ops` take it, and a command line builds
``--tau``, ``--v-threshold`` ... from its fields (each field's ``metadata['help']``).

The arithmetic order matches SpikingJelly's torch path so spikes agree bit for bit.  The loops
iterate ``x_seq.unbind(0)``: indexing ``x_seq[t]`` would make every step's backward fill a whole
``[T, N]`` zero tensor (backward O(T^2)); ``unbind`` gives the same values in O(T).

Example::

    >>> import torch
    >>> from spikingjelly.activation_based import surrogate
    >>> from neuroq.functional.neuron import LIFParameters, lif_multi_step
    >>> p = LIFParameters(tau=2.0, v_threshold=1.0)
    >>> x = torch.full((3, 1), 1.5)
    >>> s, v, _ = lif_multi_step(x, torch.zeros(1), p, surrogate.Sigmoid(alpha=4.0))
    >>> s.flatten().tolist()
    [0.0, 1.0, 0.0]
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from .._validate import check_real, check_step_input
from ._records import check_record_bool, param, set_field


@dataclasses.dataclass(frozen=True, kw_only=True)
class IFParameters:
    r"""Parameters of the integrate-and-fire neuron (and of every :class:`neuroq.neuron.BaseNode`).

    Reset: hard, :math:`V[t] = H[t](1-S[t]) + V_{reset}S[t]`, or soft (``v_reset=None``),
    :math:`V[t] = H[t] - V_{th}S[t]`.  Values must be finite; with hard reset
    ``v_threshold > v_reset`` (otherwise every step would fire).

    Example: ``IFParameters(v_threshold=0.5, v_reset=None)`` (soft reset).
    """

    v_threshold: float = param(1.0, "firing threshold V_th")
    v_reset: Optional[float] = param(0.0, "hard-reset potential V_reset; None: soft reset (subtract V_th)")
    detach_reset: bool = param(False, "detach the spike in the reset path (no gradient through the reset)")

    def __post_init__(self):
        set_field(self, "v_threshold", check_real("v_threshold", self.v_threshold))
        set_field(self, "v_reset", check_real("v_reset", self.v_reset, allow_none=True))
        check_record_bool(self, "detach_reset")
        if self.v_reset is not None and not self.v_threshold > self.v_reset:
            raise ValueError(
                f"v_threshold must be > v_reset with a hard reset, got v_threshold={self.v_threshold} and "
                f"v_reset={self.v_reset} (the neuron would fire at every step); use v_reset=None for a soft reset")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LIFParameters(IFParameters):
    r"""Parameters of the leaky integrate-and-fire neuron: :class:`IFParameters` plus the leak.

    * ``decay_input``: :math:`H = V + (X - (V - V_{reset}))/\tau`
    * otherwise:       :math:`H = V - (V - V_{reset})/\tau + X`

    Example: ``LIFParameters(tau=2.0, decay_input=False, v_reset=None)`` (OTTT/SAF's LIF).
    """

    tau: float = param(2.0, "membrane time constant tau (> 1); the leak per step is 1/tau")
    decay_input: bool = param(True, "divide the input by tau too (SpikingJelly's default)")

    def __post_init__(self):
        super().__post_init__()
        set_field(self, "tau", check_real("tau", self.tau, gt=1.0))
        check_record_bool(self, "decay_input")


def if_charge(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r"""IF: :math:`H = V + X`."""
    return v + x


def lif_charge(x: torch.Tensor, v: torch.Tensor, p: LIFParameters) -> torch.Tensor:
    r"""LIF charge (:class:`LIFParameters`), with :math:`V_{reset}=0` for soft reset:

    * ``decay_input``: :math:`H = V + (X - (V - V_{reset}))/\tau`
    * otherwise:       :math:`H = V - (V - V_{reset})/\tau + X`
    """
    tau, v_reset = p.tau, p.v_reset
    if p.decay_input:
        if v_reset is None or v_reset == 0.0:
            return v + (x - v) / tau
        return v + (x - (v - v_reset)) / tau
    if v_reset is None or v_reset == 0.0:
        return v * (1.0 - 1.0 / tau) + x
    return v - (v - v_reset) / tau + x


def fire(h: torch.Tensor, v_threshold: float, surrogate_function: Callable) -> torch.Tensor:
    r""":math:`S = \Theta(H - V_{th})` through ``surrogate_function`` (its gradient in backward)."""
    return surrogate_function(h - v_threshold)


def hard_or_soft_reset(h: torch.Tensor, spike: torch.Tensor, v_threshold: float,
                       v_reset: Optional[float], detach_reset: bool) -> torch.Tensor:
    r"""Hard :math:`V = (1-S)H + S V_{reset}` or soft (``v_reset=None``) :math:`V = H - S V_{th}`."""
    s = spike.detach() if detach_reset else spike
    if v_reset is None:
        return h - s * v_threshold
    return (1.0 - s) * h + s * v_reset


def multi_step(step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
               x_seq: torch.Tensor, v: torch.Tensor, store_v_seq: bool = False):
    """Run ``step(x_t, v) -> (spike_t, v)`` over the first axis of ``x_seq`` (O(T) time and memory).

    Returns ``(spike_seq, v_last, v_seq or None)``.
    """
    check_step_input("multi_step", x_seq, "m")
    spikes = []
    vs = [] if store_v_seq else None
    for x in x_seq.unbind(0):
        s, v = step(x, v)
        spikes.append(s)
        if vs is not None:
            vs.append(v)
    return torch.stack(spikes), v, (torch.stack(vs) if vs is not None else None)


def multi_step_states(step: Callable, x_seq: torch.Tensor, states: tuple, store: Optional[tuple] = None):
    """Run ``step(x_t, *states) -> (spike_t, *states)`` over the first axis of ``x_seq`` for a neuron with
    several states (O(T) time and memory, as :func:`multi_step`).

    ``store``: per state, whether to keep its sequence.  Returns ``(spike_seq, last states (a tuple),
    state sequences (a tuple, None where not kept))``.

    Example::

        >>> import torch
        >>> step = lambda x, v, a: ((v + x >= 1.0 + a).float(), v + x, 0.5 * a)
        >>> s, (v, a), (v_seq, a_seq) = multi_step_states(step, torch.ones(3, 1), (torch.zeros(1), torch.ones(1)),
        ...                                               (True, False))
        >>> s.flatten().tolist(), v_seq.flatten().tolist(), a_seq
        ([0.0, 1.0, 1.0], [1.0, 2.0, 3.0], None)
    """
    states = tuple(states)
    store = tuple(store) if store is not None else (False,) * len(states)
    spikes = []
    seqs = [[] if keep else None for keep in store]
    for x in x_seq.unbind(0):
        spike, *states = step(x, *states)
        spikes.append(spike)
        for seq, value in zip(seqs, states):
            if seq is not None:
                seq.append(value)
    return torch.stack(spikes), tuple(states), tuple(None if q is None else torch.stack(q) for q in seqs)


def if_step(x: torch.Tensor, v: torch.Tensor, p: IFParameters, surrogate_function: Callable):
    """One IF step ``(x [N, ...], v) -> (spike, v_next)``."""
    h = if_charge(x, v)
    s = fire(h, p.v_threshold, surrogate_function)
    return s, hard_or_soft_reset(h, s, p.v_threshold, p.v_reset, p.detach_reset)


def lif_step(x: torch.Tensor, v: torch.Tensor, p: LIFParameters, surrogate_function: Callable):
    """One LIF step ``(x [N, ...], v) -> (spike, v_next)``."""
    h = lif_charge(x, v, p)
    s = fire(h, p.v_threshold, surrogate_function)
    return s, hard_or_soft_reset(h, s, p.v_threshold, p.v_reset, p.detach_reset)


def if_multi_step(x_seq: torch.Tensor, v: torch.Tensor, p: IFParameters, surrogate_function: Callable,
                  store_v_seq: bool = False):
    """Multi-step IF neuron, ``x_seq: [T, N, ...]`` -> ``(spike_seq, v_last, v_seq|None)``."""
    return multi_step(lambda x, vv: if_step(x, vv, p, surrogate_function), x_seq, v, store_v_seq)


def lif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, p: LIFParameters, surrogate_function: Callable,
                   store_v_seq: bool = False):
    """Multi-step LIF neuron, ``x_seq: [T, N, ...]`` -> ``(spike_seq, v_last, v_seq|None)``."""
    return multi_step(lambda x, vv: lif_step(x, vv, p, surrogate_function), x_seq, v, store_v_seq)
