r"""Torch reference of Spike Accumulation Forwarding (SAF) — the definition a CuPy kernel mirrors.

SAF (Saiin, Shirakawa, Yoshihara, Sawada, Kusumoto, "Spike Accumulation Forwarding for Effective
Training of Spiking Neural Networks", TMLR 2024, arXiv 2310.02772) unrolls the soft-reset LIF neuron
(:math:`\lambda = 1 - 1/\tau`, ``decay_input=False``, ``v_reset=None``)

.. math::
    u[t] = \lambda\,(u[t-1] - V_{th}\,s[t-1]) + I[t],\qquad s[t] = \Theta(u[t] - V_{th})

into a neuron whose only state is the spike accumulation
:math:`\hat a[t] = \lambda\hat a[t-1] + s[t] = \sum_{\tau\le t}\lambda^{t-\tau}s[\tau]`, driven by the
accumulated input :math:`\hat U[t] = \sum_{\tau\le t}\lambda^{t-\tau} I[\tau]`:

.. math::
    u[t] &= \hat U[t] - V_{th}\,\lambda\,\hat a[t-1] \\
    s[t] &= \Theta\big(\hat U[t] - V_{th}(\lambda\hat a[t-1] + 1)\big) \\
    \hat a[t] &= \lambda\,\hat a[t-1] + s[t]

With ``decay_input=True`` (SpikingJelly's default LIF, :math:`I[t] = X[t]/\tau`) the neuron divides
:math:`\hat U` by :math:`\tau` first.  For a layer :math:`I^{l+1}[t] = W^l s^l[t] + b` the
accumulated input is :math:`\hat U^{l+1}[t] = W^l\hat a^l[t] + c_t\,b` with
:math:`c_t = \sum_{\tau=1}^{t}\lambda^{t-\tau} = (1-\lambda^t)/(1-\lambda)` — one synaptic operation per
step on :math:`\hat a` instead of OTTT's two (on the spikes and on the trace).

Backward (SAF's online convention): :math:`\hat a[t-1]` is detached, so
:math:`\partial\hat a[t]/\partial\hat U[t] = \mathrm{SG}'(u[t] - V_{th})` — exactly OTTT's
:math:`\partial s[t]/\partial I[t]` with the membrane detached between steps.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from .._validate import check_real, check_step_input
from ._records import check_record_bool, param, set_field


def decay(tau: float) -> float:
    r""":math:`\lambda = 1 - 1/\tau`."""
    return 1.0 - 1.0 / tau


def bias_scale(t: int, tau: float) -> float:
    r"""Bias factor of step ``t`` (1-based): :math:`c_t = (1-\lambda^t)/(1-\lambda) = \sum_{k<t}\lambda^k`."""
    lam = decay(tau)
    return float(sum(lam ** k for k in range(t)))


def bias_scales(t0: int, T: int, tau: float, dtype=None, device=None) -> torch.Tensor:
    r""":math:`[c_{t_0+1}, \dots, c_{t_0+T}]` as a tensor (``t0`` steps already done)."""
    return torch.tensor([bias_scale(t0 + k + 1, tau) for k in range(T)], dtype=dtype, device=device)


class _SRBoxSpike(torch.autograd.Function):
    r"""Heaviside forward; backward :math:`\mathbb 1[0 < \tilde I < V_{th}]` w.r.t. the drive.

    ``x`` is :math:`u - V_{th}` (forward only), ``i_norm`` the Spike-Representation input
    :math:`\tilde I = \hat U/c_t`.  Gradient is passed to ``x``: the derivative of the spike w.r.t.
    :math:`\hat U` is then the SR indicator (see :func:`saf_step`, ``sr_ct``).
    """

    @staticmethod
    def forward(ctx, x, i_norm, v_threshold):
        ctx.save_for_backward(i_norm)
        ctx.v_threshold = v_threshold
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (i_norm,) = ctx.saved_tensors
        box = ((i_norm > 0) & (i_norm < ctx.v_threshold)).to(grad.dtype)
        return grad * box, None, None


@dataclasses.dataclass(frozen=True, kw_only=True)
class SAFParameters:
    r"""Parameters of the SAF neuron (Saiin et al., TMLR 2024): the soft-reset LIF it unrolls.

    :math:`\lambda = 1 - 1/\tau`; ``decay_input`` divides the drive by :math:`\tau` (SpikingJelly's
    ``LIFNode(decay_input=True)``); ``detach_state`` treats :math:`\hat a[t-1]` as a constant in
    backward (SAF's and OTTT's online convention); ``sr_box`` swaps the spike's backward for the
    Spike-Representation indicator (SAF-F's Theorem 2; torch only).  The reset is always soft, so
    ``v_reset`` is ``None`` and ``detach_reset`` is ``False`` (read-only, for code that treats every
    neuron alike).

    Example: ``SAFParameters(tau=2.0, v_threshold=1.0)``.
    """

    tau: float = param(2.0, "membrane time constant tau (> 1); lambda = 1 - 1/tau")
    decay_input: bool = param(False, "divide the accumulated input by tau (SpikingJelly's decay_input)")
    v_threshold: float = param(1.0, "firing threshold V_th (> 0)")
    detach_state: bool = param(True, "detach the accumulation a[t-1] in backward (SAF/OTTT online convention)")
    sr_box: bool = param(False, "Spike-Representation indicator 1[0 < U/c_t < V_th] as the spike's backward")

    def __post_init__(self):
        set_field(self, "tau", check_real("tau", self.tau, gt=1.0))
        set_field(self, "v_threshold", check_real("v_threshold", self.v_threshold, gt=0.0))
        for name in ("decay_input", "detach_state", "sr_box"):
            check_record_bool(self, name)

    @property
    def v_reset(self):
        """Always ``None``: SAF unrolls the soft-reset neuron."""
        return None

    @property
    def detach_reset(self) -> bool:
        """Always ``False``."""
        return False

    @property
    def lam(self) -> float:
        r""":math:`\lambda = 1 - 1/\tau`."""
        return decay(self.tau)


def saf_step(u_hat: torch.Tensor, a_prev: torch.Tensor, p: SAFParameters,
             surrogate_function: Optional[Callable] = None, sr_ct: Optional[float] = None) -> torch.Tensor:
    r"""One SAF step: :math:`(\hat U[t], \hat a[t-1]) \mapsto \hat a[t]` (see module docstring).

    Args:
        u_hat: accumulated input :math:`\hat U[t]`, ``[N, ...]``.
        a_prev: accumulation :math:`\hat a[t-1]` (zeros at the first step), ``[N, ...]``.
        p: :class:`SAFParameters` (``detach_state``: :math:`\hat a[t-1]` constant in backward).
        sr_ct: when given (the step's :math:`c_t`), the spike's backward is the Spike-Representation
            indicator :math:`\partial s/\partial\hat U = \mathbb 1[0 < \hat U/c_t < V_{th}]`
            instead of the surrogate (the condition under which SAF-F's gradient is
            :math:`V_{th}` times the SR gradient; see :mod:`neuroq.training.methods.online`).

    Returns :math:`\hat a[t]`, ``[N, ...]``.
    """
    lam = decay(p.tau)
    a = a_prev.detach() if p.detach_state else a_prev
    drive = u_hat / p.tau if p.decay_input else u_hat
    x = drive - p.v_threshold * (lam * a + 1.0)
    if sr_ct is not None:
        s = _SRBoxSpike.apply(x, drive / sr_ct, p.v_threshold)
    else:
        s = surrogate_function(x)
    return lam * a + s


def saf_multi_step(u_hat_seq: torch.Tensor, a0: torch.Tensor, p: SAFParameters,
                   surrogate_function: Optional[Callable] = None, t0: int = 0):
    r"""SAF neuron over T steps: ``u_hat_seq [T, N, ...]``, ``a0 [N, ...]`` -> ``(a_seq [T, N, ...], a_last)``.

    Per step (:math:`\lambda = 1-1/\tau`, :math:`D[t] = \hat U[t]` or :math:`\hat U[t]/\tau` with
    ``decay_input``):

    .. math::
        s[t] = \Theta\big(D[t] - V_{th}(\lambda\hat a[t-1] + 1)\big),\qquad
        \hat a[t] = \lambda\hat a[t-1] + s[t]

    backward through ``surrogate_function`` (``SG'(D[t] - V_{th}(\lambda\hat a[t-1]+1))``) with
    :math:`\hat a[t-1]` detached when ``p.detach_state`` (the default).  ``t0`` is the number of steps
    already done before ``u_hat_seq[0]`` (only used by ``p.sr_box``, which swaps the surrogate for the
    Spike-Representation indicator :math:`\mathbb 1[0 < D[t]/c_t < V_{th}]`).

    A kernel must return the same ``a_seq`` exactly (spikes are 0/1, so :math:`\hat a` is a sum of
    powers of :math:`\lambda`) and the same input gradient to rounding.
    """
    if u_hat_seq.dim() < 2:
        raise ValueError(f"saf_multi_step expects u_hat_seq of shape [T, N, ...], got {tuple(u_hat_seq.shape)}")
    a = a0
    out = []
    for t, u in enumerate(u_hat_seq.unbind(0)):
        ct = bias_scale(t0 + t + 1, p.tau) if p.sr_box else None
        a = saf_step(u, a, p, surrogate_function, ct)
        out.append(a)
    if not out:
        raise ValueError("saf_multi_step needs at least one time step (T >= 1), got u_hat_seq of shape "
                         f"{tuple(u_hat_seq.shape)}")
    return torch.stack(out), a


def accumulate(x_seq: torch.Tensor, tau: float, a0: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Leaky accumulation over the first axis: :math:`\hat x[t] = \lambda\hat x[t-1] + x[t]`."""
    check_step_input("accumulate", x_seq, "m")
    lam = decay(tau)
    acc = None if a0 is None else a0
    out = []
    for x in x_seq.unbind(0):
        acc = lam * (torch.zeros_like(x) if acc is None else acc) + x
        out.append(acc)
    return torch.stack(out)


def deaccumulate(acc_seq: torch.Tensor, tau: float, prev: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Inverse of :func:`accumulate`: :math:`x[t] = \hat x[t] - \lambda\hat x[t-1]`."""
    lam = decay(tau)
    first = acc_seq[:1] if prev is None else acc_seq[:1] - lam * prev.unsqueeze(0)
    return torch.cat([first, acc_seq[1:] - lam * acc_seq[:-1]], 0)


def saf_spikes(a_seq: torch.Tensor, tau: float, a0: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Spikes of an SAF neuron from its accumulations: :math:`s[t] = \hat a[t] - \lambda\hat a[t-1]`
    (rounded to 0/1, which removes the float error of the subtraction)."""
    return torch.round(deaccumulate(a_seq.detach(), tau, a0))
