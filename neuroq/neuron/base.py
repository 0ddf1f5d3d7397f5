r"""neuroq's neuron base class.

A subclass states its **charge** equation and, where it differs from the default, its fire and
reset; it gets single- and multi-step modes, ``functional.reset_net``, ``store_v_seq``, backend
dispatch, :class:`neuroq.energy.EnergyMeter` and :mod:`neuroq.viz` for free.

Per time step (SpikingJelly's three-stage convention):

.. math::
    H[t] &= f(V[t-1], X[t])                    &&\text{charge (subclass)}\\
    S[t] &= \Theta(H[t] - V_{th})              &&\text{fire (surrogate gradient backward)}\\
    V[t] &= \begin{cases} H[t](1-S[t]) + V_{reset}S[t] & \text{hard reset}\\
                          H[t] - V_{th}S[t] & \text{soft reset } (V_{reset}=\text{None})\end{cases}

Example — a quadratic integrate-and-fire neuron::

    class QIFNode(neuroq.neuron.BaseNode):
        def __init__(self, tau=2.0, **kw):
            super().__init__(**kw)
            self.tau = tau
        def neuronal_charge(self, x, v):
            return v + (x + v * v) / self.tau
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import _sj
from .._validate import check_bool, check_callable, check_choice, check_real, check_step_input
from ..backend import BACKENDS, resolve
from ..functional import neuron as F


class Neuron(_sj.MemoryModule):
    """Marker base class of every neuroq neuron (spiking or quantizing activation with step modes).

    :func:`is_neuron` -- what :mod:`neuroq.viz` records and :class:`neuroq.energy.EnergyMeter`
    counts as a neuron layer -- recognises subclasses of this class and SpikingJelly's own neurons.
    A neuron exposes ``step_mode`` and, where it has one, ``v_threshold``.
    """


def is_neuron(m) -> bool:
    """True for neuroq neurons (:class:`Neuron`) and SpikingJelly's own (any stateful module defined
    in ``spikingjelly.activation_based.neuron``, on 0.0.0.0.14 and 2.0.0)."""
    if isinstance(m, Neuron):
        return True
    return isinstance(m, _sj.MemoryModule) and type(m).__module__.startswith("spikingjelly.activation_based.neuron")


class BaseNode(Neuron):
    """Spiking neuron with membrane state ``v``; subclasses implement :meth:`neuronal_charge`.

    Args:
        v_threshold: firing threshold :math:`V_{th}`.
        v_reset: reset potential for hard reset, or ``None`` for soft reset (subtract :math:`V_{th}`).
        surrogate_function: any SpikingJelly surrogate (default ``surrogate.Sigmoid(alpha=4.)``).
        detach_reset: detach the spike in the reset path.
        step_mode: ``'s'`` (input ``[N, ...]``) or ``'m'`` (input ``[T, N, ...]``).
        backend: ``'auto'`` | ``'torch'`` | ``'cupy'`` for multi-step mode.
        store_v_seq: in multi-step mode keep ``v_seq`` (``[T, N, ...]``, after reset).
    """

    #: name of the CuPy kernel family, or None when the neuron has no kernel.
    kernel_family: Optional[str] = None

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset: bool = False, step_mode: str = "s", backend: str = "auto",
                 store_v_seq: bool = False):
        super().__init__()
        self.v_threshold = check_real("v_threshold", v_threshold)
        self.v_reset = check_real("v_reset", v_reset, allow_none=True)
        if surrogate_function is None:
            surrogate_function = _sj.default_surrogate()
        self.surrogate_function = check_callable("surrogate_function", surrogate_function)
        self.detach_reset = check_bool("detach_reset", detach_reset)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.backend = backend
        self.store_v_seq = check_bool("store_v_seq", store_v_seq)
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))
        self.v_seq = None

    @property
    def supported_backends(self):
        return BACKENDS

    # Our own property: SpikingJelly 0.0.0.0.14's setter would reject 'auto' and import CuPy.
    @property
    def backend(self) -> str:
        return self._neuroq_backend

    @backend.setter
    def backend(self, value: str):
        self._neuroq_backend = check_choice("backend", value, BACKENDS)

    # ---- what a subclass states -------------------------------------------------------
    def neuronal_charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Return the pre-spike potential :math:`H[t]` from input ``x`` and state ``v``."""
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge(x, v)")

    def neuronal_fire(self, h: torch.Tensor) -> torch.Tensor:
        return F.fire(h, self.v_threshold, self.surrogate_function)

    def neuronal_reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        return F.hard_or_soft_reset(h, spike, self.v_threshold, self.v_reset, self.detach_reset)

    # ---- machinery ----------------------------------------------------------------------
    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step, pure: ``(x, v) -> (spike, v_next)``."""
        h = self.neuronal_charge(x, v)
        s = self.neuronal_fire(h)
        return s, self.neuronal_reset(h, s)

    def _initial_v(self, x: torch.Tensor) -> torch.Tensor:
        v = self.v
        if isinstance(v, torch.Tensor):
            if v.shape != x.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: stored state v has shape {tuple(v.shape)} but this input "
                    f"step has shape {tuple(x.shape)}; call spikingjelly's functional.reset_net(model) "
                    "(or neuroq.reset_net) between batches"
                )
            return v
        return torch.full_like(x, float(v))

    def single_step_forward(self, x: torch.Tensor):
        check_step_input(type(self).__name__, x, "s")
        s, v = self.step(x, self._initial_v(x))
        self.v = v
        return s

    def multi_step_torch(self, x_seq: torch.Tensor, v: torch.Tensor):
        """Torch reference over T steps: ``-> (spike_seq, v_last, v_seq | None)``."""
        return F.multi_step(self.step, x_seq, v, self.store_v_seq)

    def kernel_params(self) -> dict:
        """Scalar parameters passed to the CuPy kernel of :attr:`kernel_family`."""
        return {}

    def multi_step_forward(self, x_seq: torch.Tensor):
        check_step_input(type(self).__name__, x_seq, "m")
        v0 = self._initial_v(x_seq[0])
        backend = resolve(self.backend, x_seq, self.kernel_family or type(self).__name__)
        if backend == "cupy":
            from .. import cuda

            out = cuda.lookup(self.kernel_family)(
                x_seq, v0, surrogate_function=self.surrogate_function, store_v_seq=self.store_v_seq,
                **self.kernel_params())
            if out is NotImplemented:  # the kernel declines (e.g. a surrogate with no device version)
                out = self.multi_step_torch(x_seq, v0)
            spikes, v, v_seq = out
        else:
            spikes, v, v_seq = self.multi_step_torch(x_seq, v0)
        self.v = v
        if self.store_v_seq:
            self.v_seq = v_seq
        return spikes

    def reset(self):
        super().reset()
        self.v_seq = None

    def extra_repr(self):
        return (f"v_threshold={self.v_threshold}, v_reset={self.v_reset}, detach_reset={self.detach_reset}, "
                f"step_mode={self.step_mode}, backend={self.backend}")
