r"""SAF neuron: Spike Accumulation Forwarding (Saiin et al., TMLR 2024, arXiv 2310.02772).

The neuron's input is the accumulated synaptic input :math:`\hat U[t]` and its output and only
state is the spike accumulation :math:`\hat a[t]` (:math:`\lambda = 1 - 1/\tau`):

.. math::
    s[t] &= \Theta\big(\hat U[t] - V_{th}(\lambda\hat a[t-1] + 1)\big) \\
    \hat a[t] &= \lambda\,\hat a[t-1] + s[t]

It emits exactly the spikes of the soft-reset LIF neuron
(``LIFNode(tau, decay_input=False, v_reset=None)``) driven by :math:`I[t]` when
:math:`\hat U[t] = \sum_{\tau\le t}\lambda^{t-\tau}I[\tau]`; the layers of
:mod:`neuroq.layer.saf` produce that :math:`\hat U` from :math:`\hat a` of the previous layer with one
synaptic operation per step.  Recover the spikes with
:func:`neuroq.functional.saf.saf_spikes` (:math:`s[t] = \hat a[t] - \lambda\hat a[t-1]`).

Backward: :math:`\partial\hat a[t]/\partial\hat U[t] = SG'(u[t] - V_{th})` with
:math:`u[t] = \hat U[t] - V_{th}\lambda\hat a[t-1]` and :math:`\hat a[t-1]` detached
(``detach_state=True``, SAF's and OTTT's online convention).
"""
from __future__ import annotations

import torch

from ..functional import saf as FS
from ..functional.saf import SAFParameters
from .base import BaseNode, record_property
from .._validate import check_step_input


class SAFNode(BaseNode):
    r"""Spike-accumulation neuron: takes :math:`\hat U[t]`, emits :math:`\hat a[t]` (module docstring).

    .. math::
        s[t] = \Theta\big(D[t] - V_{th}(\lambda\hat a[t-1] + 1)\big),\quad
        \hat a[t] = \lambda\hat a[t-1] + s[t],\quad \lambda = 1 - 1/\tau

    with :math:`D[t] = \hat U[t]` (or :math:`\hat U[t]/\tau` with ``decay_input``).  The state is
    stored in ``v`` (as in every :class:`~neuroq.neuron.BaseNode`, so SpikingJelly's ``reset_net``,
    ``detach`` and the backend dispatch work unchanged) and is also readable as :attr:`a_hat`.
    Kernel family ``"saf"`` (fused ``'cpu'`` / ``'cupy'`` kernels for multi-step mode and the fused
    single step of SAF-E; ``sr_box`` runs the torch reference).

    Args:
        tau: membrane time constant (> 1); :math:`\lambda = 1 - 1/\tau`.
        decay_input: divide :math:`\hat U` by ``tau`` (equivalent to ``LIFNode(decay_input=True)``);
            SAF/OTTT use ``False``.
        v_threshold: :math:`V_{th}` (> 0).
        surrogate_function: SpikingJelly surrogate (default ``Sigmoid(alpha=4.)``, OTTT's choice).
        detach_state: detach :math:`\hat a[t-1]` in backward (the SAF online convention).
        sr_box: use the Spike-Representation indicator
            :math:`\partial s[t]/\partial\hat U[t] = \mathbb 1[0 < \hat U[t]/c_t < V_{th}]` as the spike's
            backward instead of the surrogate (the condition of SAF-F's Theorem 2; torch backend only).
        step_mode: ``'s'`` (``[N, ...]``) or ``'m'`` (``[T, N, ...]``).
        backend: ``'auto'`` | ``'torch'`` | ``'cpu'`` | ``'cupy'``.
        store_v_seq: keep the accumulations of the last multi-step call in ``v_seq``.
        params: a :class:`~neuroq.functional.SAFParameters` instead of the five parameters above.

    Inputs: :math:`\hat U` ``[N, ...]`` (``'s'``) or ``[T, N, ...]`` (``'m'``, T >= 1).

    Outputs: :math:`\hat a` of the same shape; the step counter ``t`` advances by the steps run.

    Example::

        >>> import torch
        >>> from neuroq.neuron import SAFNode
        >>> node = SAFNode(tau=2.0, step_mode="m")
        >>> node(torch.tensor([[0.4], [1.3], [0.6], [2.0]])).flatten().tolist()
        [0.0, 1.0, 0.5, 1.25]
    """

    kernel_family = "saf"
    params_type = SAFParameters

    tau = record_property("tau", "``params.tau`` (> 1, settable)")
    decay_input = record_property("decay_input", "``params.decay_input`` (settable)")
    detach_state = record_property("detach_state", "``params.detach_state`` (settable)")
    sr_box = record_property("sr_box", "``params.sr_box`` (settable)")

    def __init__(self, tau: float = 2.0, decay_input: bool = False, v_threshold: float = 1.0,
                 surrogate_function=None, detach_state: bool = True, sr_box: bool = False,
                 step_mode: str = "s", backend: str = "auto", store_v_seq: bool = False, params=None):
        if params is None:
            params = SAFParameters(tau=tau, decay_input=decay_input, v_threshold=v_threshold,
                                   detach_state=detach_state, sr_box=sr_box)
        super().__init__(surrogate_function=surrogate_function, step_mode=step_mode, backend=backend,
                         store_v_seq=store_v_seq, params=params)
        self.register_memory("t", 0)

    @property
    def lam(self) -> float:
        r""":math:`\lambda = 1 - 1/\tau`."""
        return FS.decay(self.params.tau)

    @property
    def a_hat(self):
        r"""The spike accumulation :math:`\hat a[t]` after the last step (same object as ``v``)."""
        return self.v

    def neuronal_charge(self, x, v):
        r"""Membrane potential before firing: :math:`u[t] = D[t] - V_{th}\lambda\hat a[t-1]`."""
        p = self.params
        drive = x / p.tau if p.decay_input else x
        return drive - p.v_threshold * self.lam * v

    def step(self, x: torch.Tensor, v: torch.Tensor):
        """One step, pure: ``(u_hat, a_prev) -> (a, a)`` (output and new state are both :math:`\\hat a`)."""
        p = self.params
        ct = FS.bias_scale(int(self.t) + 1, p.tau) if p.sr_box else None
        a = FS.saf_step(x, v, p, self.surrogate_function, ct)
        return a, a

    def _check_backend(self) -> None:
        if self.params.sr_box and self.backend in ("cpu", "cupy"):
            raise RuntimeError(f"SAFNode(sr_box=True) has no {self.backend!r} kernel (its backward is the torch "
                               "Spike-Representation indicator); use backend='torch' or 'auto'")

    def _kernel(self, x_seq, v0, store_v_seq, **extra):
        # no kernel implements sr_box's backward (the torch Spike-Representation indicator)
        return None if self.params.sr_box else super()._kernel(x_seq, v0, store_v_seq, **extra)

    def single_step_forward(self, x: torch.Tensor):
        r"""One step: :math:`\hat U[t]` ``[N, ...]`` -> :math:`\hat a[t]` (also stored in ``v``); the step counter
        ``t`` advances by one."""
        check_step_input(type(self).__name__, x, "s")
        self._check_backend()
        a0 = self._initial_v(x)
        out = self._kernel(x.unsqueeze(0), a0, False)
        a = self.step(x, a0)[0] if out is None else out.state
        self.v = a
        self.t = int(self.t) + 1
        return a

    def multi_step_torch(self, x_seq, v):
        """Torch reference over T steps (:func:`neuroq.functional.saf.saf_multi_step`):
        ``-> (a_seq, a_last, a_seq | None)``, the last kept only with ``store_v_seq``."""
        a_seq, a_last = FS.saf_multi_step(x_seq, v, self.params, self.surrogate_function, int(self.t))
        return a_seq, a_last, (a_seq if self.store_v_seq else None)

    def multi_step_forward(self, x_seq: torch.Tensor):
        r"""BaseNode's multi-step forward (kernel or :meth:`multi_step_torch`; the output and ``v`` are
        :math:`\hat a`), then the step counter ``t`` advances by T."""
        self._check_backend()
        a_seq = super().multi_step_forward(x_seq)
        self.t = int(self.t) + x_seq.shape[0]
        return a_seq

    def extra_repr(self):
        """The neuron's parameters, step mode and backend, shown in the module's ``repr``."""
        p = self.params
        return (f"tau={p.tau}, v_threshold={p.v_threshold}, decay_input={p.decay_input}, "
                f"detach_state={p.detach_state}, sr_box={p.sr_box}, step_mode={self.step_mode}, "
                f"backend={self.backend}")
