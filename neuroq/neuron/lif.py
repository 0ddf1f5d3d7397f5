r"""Integrate-and-fire and leaky integrate-and-fire neurons (SpikingJelly-compatible).

IF:  :math:`H[t] = V[t-1] + X[t]`

LIF (``decay_input=True``):  :math:`H[t] = V[t-1] + \frac{1}{\tau}\left(X[t] - (V[t-1] - V_{reset})\right)`

LIF (``decay_input=False``): :math:`H[t] = V[t-1] - \frac{1}{\tau}(V[t-1] - V_{reset}) + X[t]`

then fire :math:`S[t]=\Theta(H[t]-V_{th})` and hard/soft reset as in :class:`neuroq.neuron.BaseNode`
(Fang et al., "Incorporating learnable membrane time constants", ICCV 2021; SpikingJelly, Science
Advances 2023).  Spikes equal SpikingJelly's ``IFNode``/``LIFNode`` exactly for the same input.
"""
from __future__ import annotations

from typing import Optional

from ..functional import neuron as neuron_fn
from ..functional.neuron import IFParameters, LIFParameters
from .. import _sj
from .base import BaseNode, record_property

_SJ = _sj.sj_neuron_module()


class IFNode(BaseNode, _SJ.IFNode):
    r"""Integrate-and-fire neuron: :math:`H[t] = V[t-1] + X[t]`, then fire and reset
    (:class:`~neuroq.neuron.BaseNode`).

    Symbols: :math:`X[t]` input, :math:`V[t]` membrane after reset, :math:`H[t]` before it,
    :math:`S[t]` spike, :math:`V_{th}` threshold, :math:`V_{reset}` reset potential.

    Args:
        v_threshold, v_reset, detach_reset: the fields of :class:`~neuroq.functional.IFParameters`
            (or pass ``params=IFParameters(...)``).
        surrogate_function, step_mode, backend, store_v_seq: as :class:`~neuroq.neuron.BaseNode`.
            Multi-step mode runs the fused kernel (``'cpu'`` / ``'cupy'``) under ``backend='auto'``
            where one is available.

    Inputs: ``x`` ``[N, ...]`` (``step_mode='s'``) or ``x_seq`` ``[T, N, ...]`` (``'m'``, T >= 1).

    Outputs: spikes (0/1) of the input's shape and dtype; state ``v`` ``[N, ...]`` on the module.

    Example::

        >>> import torch
        >>> from neuroq.neuron import IFNode
        >>> node = IFNode(v_threshold=1.0, v_reset=None, step_mode="m")
        >>> node(torch.full((4, 1), 0.5)).flatten().tolist()
        [0.0, 1.0, 0.0, 1.0]
        >>> node.v.tolist()
        [0.0]
    """

    kernel_family = "if"
    params_type = IFParameters

    def neuronal_charge(self, x, v):
        """IF charge :math:`H[t] = V[t-1] + X[t]`."""
        return neuron_fn.if_charge(x, v)


class LIFNode(BaseNode, _SJ.LIFNode):
    r"""Leaky integrate-and-fire neuron with time constant ``tau`` (> 1).

    .. math::
        H[t] = V[t-1] + \tfrac{1}{\tau}\big(X[t] - (V[t-1] - V_{reset})\big)\ \ (\text{decay\_input}),
        \qquad H[t] = V[t-1] - \tfrac{1}{\tau}(V[t-1] - V_{reset}) + X[t]\ \ (\text{otherwise})

    then fire :math:`S[t]=\Theta(H[t]-V_{th})` and reset (:class:`~neuroq.neuron.BaseNode`);
    :math:`V_{reset} = 0` in the charge for soft reset.

    Args:
        tau: membrane time constant (> 1); the leak per step is :math:`1/\tau`.
        decay_input: whether the input is divided by ``tau`` too.
        v_threshold, v_reset, detach_reset: as :class:`IFNode`; all five are the fields of
            :class:`~neuroq.functional.LIFParameters` (or pass ``params=LIFParameters(...)``);
            ``node.tau`` etc. read and write them.
        surrogate_function, step_mode, backend, store_v_seq: as :class:`~neuroq.neuron.BaseNode`.

    Inputs: ``x`` ``[N, ...]`` (``step_mode='s'``) or ``x_seq`` ``[T, N, ...]`` (``'m'``, T >= 1).

    Outputs: spikes (0/1) of the input's shape and dtype; state ``v`` ``[N, ...]`` on the module.

    Example::

        >>> import torch
        >>> from neuroq.neuron import LIFNode
        >>> node = LIFNode(tau=2.0, step_mode="m")
        >>> node(torch.full((3, 2), 1.5)).tolist()
        [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
        >>> node.tau = 4.0          # validated: node.tau = 1.0 raises "tau must be > 1.0"
        >>> node.params.tau
        4.0
    """

    kernel_family = "lif"
    params_type = LIFParameters

    tau = record_property("tau", "membrane time constant ``params.tau`` (> 1, settable)")
    decay_input = record_property("decay_input", "``params.decay_input`` (settable)")

    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, params=None):
        if params is None:
            params = LIFParameters(tau=tau, decay_input=decay_input, v_threshold=v_threshold, v_reset=v_reset,
                                   detach_reset=detach_reset)
        super().__init__(surrogate_function=surrogate_function, step_mode=step_mode, backend=backend,
                         store_v_seq=store_v_seq, params=params)

    def neuronal_charge(self, x, v):
        """LIF charge: :math:`H[t]` from ``x`` and ``v`` by the leak of ``tau`` (the two forms of the class
        docstring)."""
        return neuron_fn.lif_charge(x, v, self.params)

    def extra_repr(self):
        """:class:`BaseNode`'s ``repr`` fields plus ``tau`` and ``decay_input``."""
        return super().extra_repr() + f", tau={self.params.tau}, decay_input={self.params.decay_input}"
