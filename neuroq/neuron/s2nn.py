r"""S²NN single-step spiking neuron (Suetake, Ikegawa, Saiin, Sawada, arXiv 2201.10879, S²NN/S³NN).

A network of these neurons runs with **one time step**: each layer's postsynaptic potential
:math:`u = W s + b` is turned into a binary spike by

.. math::
    s = \Theta(u - V_{th}),

with no membrane state, leak or reset (an IF/LIF neuron run for one step from zero initial
potential reduces to this).  The backward pass uses ``surrogate_function``; the default is
:class:`neuroq.surrogate.S2NN`, the multi-step surrogate gradient reduced to one step.
"""
from __future__ import annotations

import torch

from .._validate import check_callable, check_choice, check_real, check_step_input
from ..surrogate import S2NN
from .base import Neuron


class S2NNNode(Neuron):
    r"""Single-step neuron :math:`s = \Theta(u - V_{th})`, surrogate gradient in backward.

    It has no temporal state: in step mode ``'s'`` (input ``[N, ...]``) every call is independent,
    and in step mode ``'m'`` (input ``[T, N, ...]``) each step is handled independently (the same as
    calling it T times in ``'s'``).  ``functional.reset_net`` is a no-op on it.

    Args:
        v_threshold: :math:`V_{th}` (> 0, finite).
        surrogate_function: any SpikingJelly surrogate; default
            ``neuroq.surrogate.S2NN(v_threshold=v_threshold)``.  An :class:`~neuroq.surrogate.S2NN`
            must be built for the same ``v_threshold``.  The reduced gradient of ``S2NN`` runs as one
            fused pass (``'cpu'``/``'cupy'`` kernel) for fp32/fp16/bf16 tensors where one is available.
        step_mode: ``'s'`` or ``'m'``.

    Inputs: :math:`u` ``[N, ...]`` (``'s'``) or ``[T, N, ...]`` (``'m'``).

    Outputs: binary spikes :math:`\Theta(u - V_{th})` of the same shape and dtype.

    Example::

        >>> import torch
        >>> from neuroq.neuron import S2NNNode
        >>> S2NNNode(v_threshold=1.0)(torch.tensor([0.5, 1.0, 2.0])).tolist()
        [0.0, 1.0, 1.0]
    """

    def __init__(self, v_threshold: float = 1.0, surrogate_function=None, step_mode: str = "s"):
        super().__init__()
        self.v_threshold = check_real("v_threshold", v_threshold, gt=0)
        if surrogate_function is None:
            surrogate_function = S2NN(v_threshold=self.v_threshold)
        self.surrogate_function = check_callable("surrogate_function", surrogate_function)
        if isinstance(surrogate_function, S2NN) and surrogate_function.v_threshold != self.v_threshold:
            raise ValueError(
                f"surrogate_function is S2NN(v_threshold={surrogate_function.v_threshold}) but the neuron has "
                f"v_threshold={self.v_threshold}; build the surrogate with the neuron's threshold")
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\Theta(u - V_{th})` for one input ``[N, ...]`` (the surrogate gives the backward)."""
        check_step_input(type(self).__name__, x, "s")
        return self.surrogate_function(x - self.v_threshold)

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        r""":math:`\Theta(u - V_{th})` for ``[T, N, ...]`` at once (no state: the same as T single steps)."""
        check_step_input(type(self).__name__, x_seq, "m")
        # elementwise and stateless: all steps at once equals step-by-step
        return self.surrogate_function(x_seq - self.v_threshold)

    def extra_repr(self):
        """The threshold and the step mode, shown in the module's ``repr``."""
        return f"v_threshold={self.v_threshold}, step_mode={self.step_mode}"
