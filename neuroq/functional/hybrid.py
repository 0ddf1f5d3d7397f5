r"""Torch reference of the hybrid-spiking quantiser with temporally diffused error.

Voelker, Rasmussen, Eliasmith, "A Spike in Performance: Training Hybrid-Spiking Neural Networks
with Quantized Activation Functions", arXiv 2002.03553; the semantics are those of ABR's
``pytorch_spiking.SpikingActivation`` / ``keras_spiking.SpikingActivationCell``.

Per neuron, with base activation :math:`f`, time step :math:`dt` and state :math:`v \in [0, 1)`:

.. math::
    v &\leftarrow v + f(x_t)\,dt \\
    n_t &= \lfloor v \rfloor \qquad \text{(integer spike count of step } t\text{, may be negative)}\\
    v &\leftarrow v - n_t \qquad \text{(the quantisation error is carried: temporal diffusion)}\\
    a_t &= n_t / dt \qquad \text{(output)}

backward (spiking-aware training): :math:`\partial a_t / \partial x_t := f'(x_t)`.

**Closed form over T steps.**  With the running sum :math:`C_t = v_0 + \sum_{\tau \le t} f(x_\tau)\,dt`
the counts are :math:`n_t = \lfloor C_t \rfloor - \lfloor C_{t-1} \rfloor` (:math:`C_{-1} = v_0`,
:math:`\lfloor v_0 \rfloor = 0`) and the final state is :math:`C_{T-1} - \lfloor C_{T-1} \rfloor`, so
all T steps run at once (a cumulative sum and a floor, no Python loop over time).

**Arithmetic (why the closed form equals the loop bit for bit).**  Evaluated in floating point the two
forms round differently: the loop keeps :math:`v` in :math:`[0, 1)` and rounds each step, the
cumulative sum grows to :math:`|C| \approx T\max|f\,dt|` and loses low bits (in float32 at T = 784
a count near an integer boundary would flip).  neuroq therefore does both in the same exact
integer arithmetic:

1. the rate :math:`r_t = f(x_t)\,dt` is computed in the input's dtype (as ABR does);
2. it is split exactly into an integer part and a fraction, :math:`i_t = \lfloor r_t \rfloor` and
   :math:`\varphi_t = r_t - i_t \in [0, 1)` (in float64);
3. the fraction is put on a fixed-point grid of :data:`FRAC_BITS` = 40 fractional bits,
   :math:`q_t = \mathrm{round}(\varphi_t 2^{40})` (an int64); the state is held on the same grid;
4. loop: :math:`s = k_{t-1} + q_t`, :math:`n_t = i_t + (s \gg 40)`, :math:`k_t = s \bmod 2^{40}`;
   closed form: :math:`c_t = k_{-1} + \sum_{\tau\le t} q_\tau` (int64 cumulative sum),
   :math:`n_t = i_t + (c_t \gg 40) - (c_{t-1} \gg 40)`.

Integer addition is associative, so both forms give identical counts and states for any T (up to
:math:`2^{22}` steps per call, far below the int64 limit :math:`(T+1)\,2^{40} < 2^{63}`), and only the
fraction is accumulated, so the range does not depend on the rates.  The only approximation is
step 3: :math:`|\tilde r_t - r_t| \le 2^{-41}`; for float32 rates with :math:`|r_t| \ge 2^{-16}` the
grid holds :math:`r_t` exactly, so the counts are those of the exact running sum of the float32
rates (more accurate than a float32 loop, whose own rounding is :math:`\approx 2^{-24}` per step).
The state ``v`` is stored as float64 (exact on the grid).  A non-finite rate gives a non-finite
output at that step and leaves the state unchanged.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

#: fractional bits of the fixed-point accumulator (see the module docstring)
FRAC_BITS = 40
_ONE = 1 << FRAC_BITS
_MASK = _ONE - 1
_SCALE = float(_ONE)
#: the largest number of steps one multi-step call accepts (int64 headroom of the cumulative sum)
MAX_STEPS = 1 << 22


# ---------------------------------------------------------------------------------------------
# fixed-point helpers
# ---------------------------------------------------------------------------------------------
def state_to_fixed(v: torch.Tensor) -> torch.Tensor:
    r"""State :math:`v \in [0, 1)` -> int64 on the :math:`2^{-40}` grid (rounded down, so it stays < 1).

    Example::

        state_to_fixed(torch.tensor([0.5]))   # tensor([549755813888]) = 2**39
    """
    return torch.floor(v.to(torch.float64) * _SCALE).to(torch.int64)


def fixed_to_state(k: torch.Tensor) -> torch.Tensor:
    """int64 grid value -> float64 state (exact: 40 bits fit a float64 mantissa).

    Example::

        fixed_to_state(torch.tensor([2 ** 39]))   # tensor([0.5], dtype=torch.float64)
    """
    return k.to(torch.float64) / _SCALE


def _split_rate(r: torch.Tensor):
    """``r -> (i, q, finite)``: integer part (float64), fraction on the grid (int64), and the
    finiteness mask (``None`` when every rate is finite, which one sum tells on the CPU; always a
    mask on CUDA, to avoid a device sync)."""
    r64 = r.detach().to(torch.float64, copy=True)
    finite = None
    if r64.is_cuda or not math.isfinite(float(r64.sum())):
        finite = torch.isfinite(r64)
        r64 = torch.where(finite, r64, torch.zeros((), dtype=r64.dtype, device=r64.device))
    i = torch.floor(r64)
    q = r64.sub_(i).mul_(_SCALE).round_().to(torch.int64)   # in place on the private copy
    return i, q, finite


def _finish(n: torch.Tensor, r: torch.Tensor, finite) -> torch.Tensor:
    # non-finite rates pass through as non-finite counts (the state was not touched by them)
    if finite is None:
        return n
    return torch.where(finite, n, r.detach().to(n.dtype))


# ---------------------------------------------------------------------------------------------
# integer counts from rates (no autograd)
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def spike_counts_step(rate: torch.Tensor, v: torch.Tensor):
    r"""One explicit step of the quantiser on rates :math:`r = f(x)\,dt`.

    :math:`v \leftarrow v + r,\ n = \lfloor v \rfloor,\ v \leftarrow v - n` in the exact fixed-point
    arithmetic of the module docstring.

    Inputs: ``rate`` ``[N, ...]``; ``v`` ``[N, ...]`` (or broadcastable) in :math:`[0, 1)`.
    Outputs: ``(n, v_next)``: counts ``[N, ...]`` (float64, integer-valued), state ``[N, ...]`` float64.

    Example::

        n, v = spike_counts_step(torch.tensor([0.7, 2.5]), torch.tensor([0.5, 0.0]))
        # n = [1., 2.], v = [0.2, 0.5]
    """
    i, q, finite = _split_rate(rate)
    s = q.add_(state_to_fixed(v).expand_as(q))
    n = i.add_(s >> FRAC_BITS)
    return _finish(n, rate, finite), fixed_to_state(s & _MASK)


@torch.no_grad()
def spike_counts_multi_step(rate_seq: torch.Tensor, v: torch.Tensor):
    r"""All T steps at once: :math:`n_t = \lfloor C_t\rfloor - \lfloor C_{t-1}\rfloor` (closed form).

    Equal, bit for bit, to :func:`spike_counts_step` applied over the first axis (module docstring).

    Inputs: ``rate_seq`` ``[T, N, ...]``; ``v`` ``[N, ...]`` (or broadcastable) in :math:`[0, 1)`.
    Outputs: ``(n_seq, v_last)``: counts ``[T, N, ...]`` (float64), final state ``[N, ...]`` float64.

    Example::

        n, v = spike_counts_multi_step(torch.full((4, 1), 0.3), torch.zeros(1))
        # n[:, 0] = [0, 0, 0, 1], v = [0.2]
    """
    T = rate_seq.shape[0]
    if T > MAX_STEPS:
        raise ValueError(f"spike_counts_multi_step: at most {MAX_STEPS} steps per call (int64 headroom), "
                         f"got T={T}; split the sequence and pass the returned state on")
    i, q, finite = _split_rate(rate_seq)
    c = q.cumsum_(0)
    c += state_to_fixed(v).expand_as(c[0])
    k = c >> FRAC_BITS
    v_last = fixed_to_state(c[-1] & _MASK)
    n = i                                   # n_t = i_t + k_t - k_{t-1}, k_{-1} = 0, built in place
    n[0] += k[0]
    if n.shape[0] > 1:
        n[1:] += k[1:] - k[:-1]
    return _finish(n, rate_seq, finite), v_last


# ---------------------------------------------------------------------------------------------
# the activation with its spiking-aware gradient
# ---------------------------------------------------------------------------------------------
class _Quantise(torch.autograd.Function):
    """``fx -> (n / dt, v_next)``; the gradient passes to ``fx`` unchanged (so ``x`` gets ``f'(x)``)."""

    @staticmethod
    def forward(ctx, fx, v, dt, multi):
        r = fx * dt
        n, v_next = (spike_counts_multi_step if multi else spike_counts_step)(r, v)
        a = n.to(fx.dtype).div_(dt)  # same rounding as ABR's float32 ``n / dt``
        ctx.mark_non_differentiable(v_next)
        return a, v_next

    @staticmethod
    def backward(ctx, grad_a, grad_v):
        return grad_a, None, None, None


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not (dt > 0) or dt == float("inf"):
        raise ValueError(f"dt must be a finite real number > 0, got {dt!r}")
    return float(dt)


def spiking_activation_step(x: torch.Tensor, v: torch.Tensor, activation: Callable, dt: float):
    r"""One step of the hybrid-spiking activation: :math:`a = \lfloor v + f(x)dt\rfloor / dt`, state carried.

    Forward: :func:`spike_counts_step` on :math:`r = f(x)\,dt`, output :math:`n / dt`.
    Backward: :math:`\partial a/\partial x = f'(x)` (autograd through ``activation``).

    Inputs: ``x`` ``[N, ...]``; ``v`` ``[N, ...]`` in :math:`[0, 1)`.
    Outputs: ``(a, v_next)``: ``a`` ``[N, ...]`` in ``x``'s dtype, ``v_next`` ``[N, ...]`` float64.

    Example::

        a, v = spiking_activation_step(torch.randn(8, 16), torch.rand(8, 16), torch.relu, dt=0.5)
    """
    dt = _check_dt(dt)
    return _Quantise.apply(activation(x), v, dt, False)


def spiking_activation_multi_step(x_seq: torch.Tensor, v: torch.Tensor, activation: Callable, dt: float):
    r"""T steps of the hybrid-spiking activation at once (closed form, no loop over time).

    Forward: :func:`spike_counts_multi_step` on :math:`r_t = f(x_t)\,dt`, output :math:`n_t / dt`.
    Backward: :math:`\partial a_t/\partial x_t = f'(x_t)`.

    Inputs: ``x_seq`` ``[T, N, ...]``; ``v`` ``[N, ...]`` in :math:`[0, 1)`.
    Outputs: ``(a_seq, v_last)``: ``a_seq`` ``[T, N, ...]`` in ``x_seq``'s dtype, ``v_last`` ``[N, ...]`` float64.

    Example::

        a, v = spiking_activation_multi_step(torch.randn(784, 8, 16), torch.rand(8, 16), torch.tanh, dt=1.0)
    """
    dt = _check_dt(dt)
    return _Quantise.apply(activation(x_seq), v, dt, True)


# ---------------------------------------------------------------------------------------------
# bits of activity
# ---------------------------------------------------------------------------------------------
def bit_length(n: torch.Tensor) -> torch.Tensor:
    r"""Bits of the magnitude of integer-valued ``n``: :math:`\lceil \log_2(1 + |n|) \rceil`
    (0 for 0, 1 for ±1, 2 for ±2..3, 3 for ±4..7, ...), exact (via ``frexp``), float64, same shape.

    Example::

        bit_length(torch.tensor([0., 1., -3., 4.]))   # tensor([0., 1., 2., 3.])
    """
    _, e = torch.frexp(n.detach().to(torch.float64).abs())
    return e.to(torch.float64)


def activity_extremes(counts: torch.Tensor, sample_dims: int = 2):
    r"""Per neuron, over the sample axes: ``(max |n|, any n < 0)``, the two statistics
    :func:`bits_of_activity` reads (a running max and a running or combine them over batches).

    Inputs: ``counts`` ``[T, N, *neurons]`` (``sample_dims=2``) or ``[N, *neurons]`` (``sample_dims=1``).
    Outputs: ``(max_abs, any_neg)``: float64 and bool tensors of shape ``neurons``.

    Example::

        activity_extremes(torch.tensor([[[0., 3., -1.]], [[1., 0., 0.]]]))   # ([1., 3., 1.], [F, F, T])
    """
    if counts.dim() < sample_dims:
        raise ValueError(f"bits_of_activity: counts must have at least sample_dims={sample_dims} axes, "
                         f"got shape {tuple(counts.shape)}")
    c = counts.detach().to(torch.float64)
    c = c.reshape(-1, *c.shape[sample_dims:]) if sample_dims > 0 else c.unsqueeze(0)
    return c.abs().amax(0), c.amin(0) < 0


def neuron_bits(max_abs: torch.Tensor, any_neg: torch.Tensor) -> torch.Tensor:
    r"""Bits of each neuron's activity from its :func:`activity_extremes`:
    :math:`b_i = \lceil \log_2(1 + \max |n_i|) \rceil + \mathbb{1}[\min n_i < 0]` (float64, same shape).

    Example::

        neuron_bits(torch.tensor([1., 3., 1.]), torch.tensor([False, False, True]))   # tensor([1., 2., 2.])
    """
    return bit_length(max_abs) + any_neg.to(torch.float64)


def bits_of_activity(counts: torch.Tensor, sample_dims: int = 2, per_neuron: bool = False):
    r"""Bits a neuron's activity needs: the width of the register that holds every count it emits.

    For neuron :math:`i` with counts :math:`n_{i}` over all recorded time steps and samples,

    .. math::
        b_i = \big\lceil \log_2\big(1 + \max |n_{i}|\big) \big\rceil + \mathbb{1}\big[\min n_{i} < 0\big]

    (magnitude bits, plus a sign bit when the neuron ever emits a negative count); a silent neuron
    needs 0 bits, a binary 0/1 spiking neuron 1 bit, a neuron emitting counts in {-3..3} 3 bits.
    The layer figure is the mean :math:`\bar b = \frac{1}{|I|}\sum_i b_i` over its neurons.  This is
    neuroq's reading of the paper's "activities need at most 3.74 bits on average" (Voelker,
    Rasmussen, Eliasmith, arXiv 2002.03553, abstract; a reconstruction, not confirmed by the paper):
    *at most* = the largest count of each neuron, *on average* = over the neurons.  See
    :func:`significant_bits` for the per-event figure ("1.26 significant bits multiplying each weight").
    It is :func:`neuron_bits` of :func:`activity_extremes`; :class:`neuroq.energy.EnergyMeter` keeps
    the extremes over a run (running max / or) and applies :func:`neuron_bits` to them.

    Inputs: ``counts`` ``[T, N, *neurons]`` (``sample_dims=2``) or ``[N, *neurons]`` (``sample_dims=1``),
    integer-valued (e.g. ``SpikingActivation.counts(output)``).
    Outputs: a float (the mean), or with ``per_neuron`` a float64 tensor of shape ``neurons``.

    Example::

        n = torch.tensor([[[0., 3., -1.]], [[1., 0., 0.]]])   # T=2, N=1, 3 neurons
        bits_of_activity(n, per_neuron=True)                   # tensor([1., 2., 2.])
    """
    if not isinstance(counts, torch.Tensor) or counts.dim() <= sample_dims - 1 or counts.numel() == 0:
        raise ValueError(f"counts must be a non-empty tensor with sample_dims={sample_dims} dimension(s) before the "
                         f"neurons, got {tuple(counts.shape) if isinstance(counts, torch.Tensor) else type(counts).__name__}")
    if counts.is_floating_point() and not bool(torch.isfinite(counts).all()):
        raise ValueError("counts holds NaN or infinite values: spike counts are integers")
    b = neuron_bits(*activity_extremes(counts, sample_dims))
    return b if per_neuron else float(b.mean())


def significant_bits(counts: torch.Tensor) -> float:
    r"""Mean significant bits of the nonzero counts, :math:`\frac{1}{|E|}\sum_{e\in E}\lceil\log_2(1+|n_e|)\rceil`
    over the events :math:`E = \{n \ne 0\}`: the bits of the integer that multiplies a weight per
    event (1 for single spikes).  0.0 when there is no event.

    Inputs: ``counts`` of any shape (integer-valued).  Output: a float.

    Example::

        significant_bits(torch.tensor([0., 1., -1., 3.]))   # (1 + 1 + 2) / 3
    """
    bits, k = event_bits(counts)
    return bits / k if k else 0.0


def event_bits(counts: torch.Tensor) -> tuple[float, int]:
    r"""``(sum of the significant bits of the nonzero counts, number of nonzero counts)``: the two sums
    :func:`significant_bits` divides (which add up over batches).

    Example::

        event_bits(torch.tensor([0., 1., -1., 3.]))   # (4.0, 3)
    """
    c = counts.detach().to(torch.float64)
    nz = c != 0
    return float(bit_length(c[nz]).sum()), int(nz.sum())
