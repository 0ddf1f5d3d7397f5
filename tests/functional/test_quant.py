"""neuroq.functional.quant: the scaled round-clip quantizers of MaQD (Sawada, Saiin, Suetake, arXiv 2403.14999):
exactly M levels, idempotence, round half up, the straight-through and surrogate gradients, the Gaussian
MSE-optimal step (closed form for M = 2)."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroq import quant as Q

HSET = settings(max_examples=25, deadline=None)
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4)
deltas = st.floats(0.01, 10.0, allow_nan=False, allow_infinity=False)


def _cover(delta, lo, hi, shape, seed, offset=0.0):
    """Random tensor of ``shape`` plus a grid that reaches every bin of [lo, hi] (and beyond)."""
    g = torch.Generator().manual_seed(seed)
    rnd = (torch.randn(shape, generator=g, dtype=torch.float64) * (hi - lo + 2) * delta / 2).flatten()
    grid = torch.linspace(lo - 2, hi + 2, int(8 * (hi - lo + 4)), dtype=torch.float64) * delta + offset
    return torch.cat([rnd, grid])


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_weight_quantizer_has_exactly_M_symmetric_levels(M, delta, shape, seed):
    c = (M - 1) / 2
    x = _cover(delta, -c, c, shape, seed)
    q = Q.quantize_weight(x, M, delta)
    levels = torch.unique(q)
    assert levels.numel() == M
    expect = delta * (torch.arange(M, dtype=torch.float64) - c)
    assert torch.allclose(levels, expect, rtol=0, atol=1e-12 * delta)
    assert torch.allclose(levels, -levels.flip(0), rtol=0, atol=1e-12 * delta)  # symmetric about 0
    assert (0.0 in levels.tolist()) == (M % 2 == 1)  # odd M includes 0, even M does not


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_activation_quantizer_has_exactly_M_nonnegative_levels(M, delta, shape, seed):
    x = _cover(delta, 0, M - 1, shape, seed)
    q = Q.quantize_activation(x, M, delta)
    levels = torch.unique(q)
    assert levels.numel() == M
    assert torch.equal(levels, delta * torch.arange(M, dtype=torch.float64))


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_quantizers_are_idempotent(M, delta, shape, seed):
    x = _cover(delta, -M, M, shape, seed)
    qw = Q.quantize_weight(x, M, delta)
    assert torch.equal(Q.quantize_weight(qw, M, delta), qw)
    qa = Q.quantize_activation(x, M, delta)
    assert torch.equal(Q.quantize_activation(qa, M, delta), qa)
    r = Q.round_clip(x, delta, -3, 5)
    assert torch.equal(Q.round_clip(r, delta, -3, 5), r)


def test_round_clip_definition_and_round_half_up():
    x = torch.tensor([-10.0, -1.5, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 10.0])
    got = Q.round_clip(x, 1.0, -1, 2)
    assert got.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0]
    # delta scales input and output
    assert torch.equal(Q.round_clip(3 * x, 3.0, -1, 2), 3 * got)


@HSET
@given(M=st.integers(2, 9), delta=st.floats(0.1, 5.0), seed=st.integers(0, 10_000))
def test_ste_gradient_is_one_inside_clip_range_and_zero_outside(M, delta, seed):
    g = torch.Generator().manual_seed(seed)
    # activations: clip range [0, (M-1) delta]
    z = (torch.rand(500, generator=g, dtype=torch.float64) * (M + 3) - 2)
    z = z[(z - z.round()).abs() > 1e-6]  # keep away from the range ends
    h = (z * delta).requires_grad_(True)
    Q.quantize_activation(h, M, delta).sum().backward()
    inside = (z >= 0) & (z <= M - 1)
    assert torch.equal(h.grad, inside.to(h.dtype))
    assert inside.any() and (~inside).any()
    # weights: clip range |w| <= c delta
    c = (M - 1) / 2
    w = ((torch.rand(500, generator=g, dtype=torch.float64) * 2 - 1) * (c + 2) * delta)
    w = w[((w.abs() / delta) - c).abs() > 1e-6].requires_grad_(True)
    Q.quantize_weight(w, M, delta).sum().backward()
    assert torch.equal(w.grad, (w.detach().abs() <= c * delta).to(w.dtype))


def test_surrogate_backward_is_sum_of_step_surrogates():
    from spikingjelly.activation_based import surrogate

    alpha, M, delta = 4.0, 4, 0.7
    h = torch.linspace(-2, 4, 301, dtype=torch.float64).requires_grad_(True)
    q = Q.quantize_activation(h, M, delta, surrogate=surrogate.Sigmoid(alpha=alpha))
    assert torch.equal(q.detach(), Q.quantize_activation(h.detach(), M, delta))  # same forward
    q.sum().backward()
    z = h.detach() / delta
    expect = torch.zeros_like(z)
    for k in range(1, M):
        s = torch.sigmoid(alpha * (z - k + 0.5))
        expect += alpha * s * (1 - s)  # d/dh [delta * sg(h/delta - k + 1/2)] = sg'(.)
    assert torch.allclose(h.grad, expect, atol=1e-12)


def test_gaussian_mse_step_binary_closed_form_and_monotone():
    # M = 2: the optimal level is E|X| = sqrt(2/pi), i.e. step 2 sqrt(2/pi)
    assert abs(Q.gaussian_mse_step(2) - 2 * math.sqrt(2 / math.pi)) < 1e-3
    steps = [Q.gaussian_mse_step(m) for m in (2, 3, 5, 16)]
    assert steps == sorted(steps, reverse=True)
