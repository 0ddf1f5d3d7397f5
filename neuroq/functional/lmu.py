r"""Torch reference of the Legendre Memory Unit's memory (Voelker, Kajić, Eliasmith, NeurIPS 2019).

The memory is the linear system that keeps a Legendre-polynomial summary of a sliding window of
``theta`` steps of its input :math:`u` (Voelker, Kajić, Eliasmith, NeurIPS 2019; the matrices as
keras-lmu builds them):

.. math::
    A_{ij} &= (2i+1)\begin{cases}-1 & i < j\\ (-1)^{i-j+1} & i \ge j\end{cases},\qquad
    B_i = (2i+1)(-1)^i,\qquad i, j = 0..d-1 \\
    \dot m &= \tfrac{1}{\theta}(A m + B u)

discretised with step 1 by zero-order hold, :math:`\bar A = e^{A/\theta}`,
:math:`\bar B = (A/\theta)^{-1}(\bar A - I)B/\theta` (computed as one block matrix exponential,
equal to ``scipy.signal.cont2discrete(..., method="zoh")``), or by Euler,
:math:`\bar A = I + A/\theta`, :math:`\bar B = B/\theta`.  Per memory channel

.. math::
    m_t = \bar A\,m_{t-1} + \bar B\,u_t .

With no feedback into :math:`u` the memory is a convolution with the impulse response
:math:`H_t = \bar A^t\bar B`: :math:`m_t = \sum_{s\le t} H_{t-s}u_s` (from :math:`m_{-1} = 0`), which
:func:`memory_fft` evaluates for all :math:`t` at once by FFT, zero-padded to :math:`2T` so the
circular convolution equals the linear one (Chilkuri & Eliasmith, ICML 2021, "Parallelizing Legendre
Memory Unit Training").
"""
from __future__ import annotations

from typing import Optional

import torch

from .._validate import check_real

DISCRETIZERS = ("zoh", "euler")


def legendre_ab(order: int, dtype: torch.dtype = torch.float64, device=None):
    r"""Continuous-time Legendre delay system ``(A [order, order], B [order, 1])`` (module docstring).

    Example::

        A, B = legendre_ab(3)
        # A = [[-1, -1, -1], [3, -3, -3], [-5, 5, -5]],  B = [[1], [-3], [5]]
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    q = torch.arange(order, dtype=torch.float64, device=device)
    r = (2 * q + 1)[:, None]
    i, j = q[:, None], q[None, :]
    sign = torch.where((i - j + 1) % 2 == 0, 1.0, -1.0)
    A = torch.where(i < j, -torch.ones_like(sign), sign) * r
    B = torch.where(q % 2 == 0, 1.0, -1.0)[:, None] * r
    return A.to(dtype), B.to(dtype)


def discretize(A: torch.Tensor, B: torch.Tensor, theta: float, method: str = "zoh"):
    r"""Discretise :math:`\dot m = (A m + B u)/\theta` with step 1: ``(Ad [d, d], Bd [d, 1])``.

    * ``'zoh'``: :math:`\exp\begin{bmatrix}A/\theta & B/\theta\\ 0 & 0\end{bmatrix} =
      \begin{bmatrix}\bar A & \bar B\\ 0 & I\end{bmatrix}` (``torch.linalg.matrix_exp``).
    * ``'euler'``: :math:`\bar A = I + A/\theta`, :math:`\bar B = B/\theta`.

    Example::

        Ad, Bd = discretize(*legendre_ab(6), theta=100.0)
    """
    if method not in DISCRETIZERS:
        raise ValueError(f"discretizer must be one of {DISCRETIZERS}, got {method!r}")
    check_real("theta", theta, gt=0)
    d = A.shape[0]
    if method == "euler":
        return torch.eye(d, dtype=A.dtype, device=A.device) + A / theta, B / theta
    m = B.shape[1]
    M = torch.zeros(d + m, d + m, dtype=A.dtype, device=A.device)
    M[:d, :d] = A / theta
    M[:d, d:] = B / theta
    E = torch.linalg.matrix_exp(M)
    return E[:d, :d].contiguous(), E[:d, d:].contiguous()


def lmu_matrices(order: int, theta: float, discretizer: str = "zoh", dtype: torch.dtype = torch.float64,
                 device=None):
    """``discretize(*legendre_ab(order), theta, discretizer)`` in float64, then cast to ``dtype``.

    Outputs: ``(Ad [order, order], Bd [order, 1])``.

    Example::

        Ad, Bd = lmu_matrices(256, 784.0)      # keras-lmu's psMNIST memory
    """
    Ad, Bd = discretize(*legendre_ab(order, device=device), theta, discretizer)
    return Ad.to(dtype), Bd.to(dtype)


def impulse_response(Ad: torch.Tensor, Bd: torch.Tensor, steps: int) -> torch.Tensor:
    r"""Impulse response of the memory, row :math:`t` = :math:`(\bar A^t\bar B)^\top`, ``[steps, order]``.

    Computed by doubling (:math:`\log_2 T` matrix products): rows :math:`L..2L-1` are rows
    :math:`0..L-1` times :math:`(\bar A^L)^\top`.

    Example::

        H = impulse_response(*lmu_matrices(8, 20.0), steps=50)   # [50, 8]; H[0] = Bd[:, 0]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    H = Bd.t()
    P = Ad
    while H.shape[0] < steps:
        H = torch.cat([H, H @ P.t()], dim=0)
        P = P @ P
    return H[:steps].contiguous()


def memory_step(u: torch.Tensor, m: torch.Tensor, Ad: torch.Tensor, Bd: torch.Tensor) -> torch.Tensor:
    r"""One step :math:`m_t = \bar A m_{t-1} + \bar B u_t` for every memory channel.

    Inputs: ``u`` ``[N, memory_d]``, ``m`` ``[N, memory_d, order]``, ``Ad`` ``[order, order]``,
    ``Bd`` ``[order, 1]``.  Output: ``[N, memory_d, order]``.

    Example::

        m = memory_step(torch.randn(4, 1), torch.zeros(4, 1, 8), *lmu_matrices(8, 20.0, dtype=torch.float32))
    """
    return m @ Ad.t() + u.unsqueeze(-1) * Bd[:, 0]


def memory_recurrent(u_seq: torch.Tensor, Ad: torch.Tensor, Bd: torch.Tensor,
                     m0: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""The memory over a sequence by the recurrence (:func:`memory_step` per step).

    Inputs: ``u_seq`` ``[T, N, memory_d]``; ``m0`` ``[N, memory_d, order]`` (default 0).
    Output: ``[T, N, memory_d, order]``.

    Example::

        m = memory_recurrent(torch.randn(30, 4, 1), *lmu_matrices(8, 20.0, dtype=torch.float32))
    """
    order = Ad.shape[0]
    m = (torch.zeros(*u_seq.shape[1:], order, dtype=u_seq.dtype, device=u_seq.device) if m0 is None else m0)
    out = []
    for u in u_seq.unbind(0):
        m = memory_step(u, m, Ad, Bd)
        out.append(m)
    return torch.stack(out)


def memory_fft(u_seq: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    r"""The memory over a sequence from zero state, as the convolution :math:`m = H \ast u` by FFT.

    :math:`m_t = \sum_{s=0}^{t} H_{t-s}\,u_s`, with both signals zero-padded to :math:`2T` (so the
    circular convolution of the FFT is the linear one) along the time axis.

    Inputs: ``u_seq`` ``[T, N, memory_d]``; ``H`` ``[>= T, order]`` (:func:`impulse_response`).
    Output: ``[T, N, memory_d, order]`` (``u_seq``'s dtype).

    Example::

        Ad, Bd = lmu_matrices(8, 20.0)
        u = torch.randn(30, 4, 1, dtype=torch.float64)
        torch.allclose(memory_fft(u, impulse_response(Ad, Bd, 30)), memory_recurrent(u, Ad, Bd))  # True
    """
    T = u_seq.shape[0]
    if H.shape[0] < T:
        raise ValueError(f"memory_fft: impulse response has {H.shape[0]} steps, the input {T}")
    Hf = torch.fft.rfft(H[:T].to(u_seq.dtype), n=2 * T, dim=0)     # [T+1, order]
    return _FFTConvolution.apply(u_seq, Hf)


class _FFTConvolution(torch.autograd.Function):
    r""":math:`m = H \ast u` by FFT (forward) and its adjoint, the cross-correlation
    :math:`\partial L/\partial u_s = \sum_{t \ge s}\sum_k G_{t,k} H_{t-s,k}` (backward), also by FFT.

    The backward sums over the order in the frequency domain, so it needs one forward FFT of the
    gradient ``[2T, N, memory_d, order]`` and one small inverse FFT, instead of autograd's replay of
    the forward graph (about half the time on CPU)."""

    @staticmethod
    def forward(ctx, u_seq, Hf):
        T = u_seq.shape[0]
        U = torch.fft.rfft(u_seq, n=2 * T, dim=0)                          # [T+1, N, memory_d]
        ctx.save_for_backward(Hf)
        return torch.fft.irfft(U.unsqueeze(-1) * Hf[:, None, None, :], n=2 * T, dim=0)[:T]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_m):
        (Hf,) = ctx.saved_tensors
        T = grad_m.shape[0]
        # circular correlation on 2T points: lags t - s < 0 wrap onto the zero padding of H
        Gf = torch.fft.rfft(grad_m, n=2 * T, dim=0)                        # [T+1, N, memory_d, order]
        Uf = torch.einsum("fndk,fk->fnd", Gf, Hf.conj())
        return torch.fft.irfft(Uf, n=2 * T, dim=0)[:T], None


def memory_last(u_seq: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    r"""Only the final memory state, from zero state: :math:`m_{T-1} = \sum_{s=0}^{T-1} H_{T-1-s}\,u_s`.

    One matrix product over time (Chilkuri & Eliasmith, ICML 2021: when a classifier reads only the
    last step, the parallel LMU needs no FFT); equal to the last row of :func:`memory_fft` and of
    :func:`memory_recurrent`.  Cost :math:`T\cdot N\cdot d_m\cdot\text{order}` MACs.

    Inputs: ``u_seq`` ``[T, N, memory_d]``; ``H`` ``[>= T, order]`` (:func:`impulse_response`).
    Output: ``[N, memory_d, order]`` (``u_seq``'s dtype).

    Example::

        Ad, Bd = lmu_matrices(8, 20.0)
        u = torch.randn(30, 4, 1, dtype=torch.float64)
        torch.allclose(memory_last(u, impulse_response(Ad, Bd, 30)), memory_recurrent(u, Ad, Bd)[-1])  # True
    """
    T = u_seq.shape[0]
    if H.shape[0] < T:
        raise ValueError(f"memory_last: impulse response has {H.shape[0]} steps, the input {T}")
    return torch.einsum("snd,sk->ndk", u_seq, H[:T].flip(0).to(u_seq.dtype))
