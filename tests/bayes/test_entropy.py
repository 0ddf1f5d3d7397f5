"""Mixture density, Monte-Carlo entropy, separation ratio and Bhattacharyya bound of neuroq.bayes,
each against an independent reference (scipy densities and quadrature, closed forms).

The paper's acceptance checks (K = 1, the sandwich, the separation sweep) are in
tests/training/methods/test_gm_vi.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from neuroq.bayes import (
    bhattacharyya_coefficients, component_log_prob, entropy_error_bound, gaussian_entropy, mixture_entropy_approx,
    mixture_entropy_lower, mixture_entropy_mc, mixture_log_prob, mixture_rsample, separation_ratio,
    systematic_components, weight_entropy,
)

DT = torch.float64


def _random_mixture(K, D, spread=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(K, generator=g, dtype=DT), 0)
    mu = spread * torch.randn(K, D, generator=g, dtype=DT)
    sd = 0.3 + torch.rand(K, D, generator=g, dtype=DT)
    return w, mu, sd


@pytest.mark.parametrize("K,D", [(1, 1), (3, 1), (2, 4), (4, 3)])
def test_log_prob_matches_scipy(K, D):
    w, mu, sd = _random_mixture(K, D, seed=K * 10 + D)
    z = torch.randn(7, D, dtype=DT) * 2
    ref = np.log(sum(float(w[k]) * stats.multivariate_normal(mu[k].numpy(), np.diag(sd[k].numpy() ** 2)).pdf(z.numpy())
                     for k in range(K)))
    got = mixture_log_prob(z, w, mu, sd).numpy()
    np.testing.assert_allclose(got, np.atleast_1d(ref), rtol=1e-10, atol=1e-10)


def test_log_prob_is_finite_in_high_dimension():
    # densities far below float64's smallest number: logsumexp keeps log q finite
    w, mu, sd = _random_mixture(3, 5000, spread=3.0, seed=1)
    z = mu[1:2] + sd[1:2] * torch.randn(1, 5000, dtype=DT)
    lp = mixture_log_prob(z, w, mu, sd)
    assert torch.isfinite(lp).all() and float(lp) < -1000


def test_gaussian_entropy_matches_scipy():
    sd = torch.tensor([[0.5, 2.0, 1.0], [0.1, 0.2, 3.0]], dtype=DT)
    ref = [stats.multivariate_normal(np.zeros(3), np.diag(s.numpy() ** 2)).entropy() for s in sd]
    np.testing.assert_allclose(gaussian_entropy(sd).numpy(), ref, rtol=1e-12)


def test_mc_entropy_matches_quadrature_in_1d():
    w = torch.tensor([0.2, 0.5, 0.3], dtype=DT)
    mu = torch.tensor([[-1.0], [0.3], [2.0]], dtype=DT)
    sd = torch.tensor([[0.6], [0.4], [1.1]], dtype=DT)

    W, M, SD = w.numpy(), mu[:, 0].numpy(), sd[:, 0].numpy()

    def q(x):  # scipy's normal density, vectorised over the components
        return float((W * stats.norm.pdf(x, M, SD)).sum())

    ref, _ = integrate.quad(lambda x: -q(x) * math.log(q(x)) if q(x) > 0 else 0.0, -12, 14, limit=200)
    h, se = mixture_entropy_mc(w, mu, sd, n_samples=40000, generator=torch.Generator().manual_seed(0))
    assert abs(float(h) - ref) < 4 * float(se), (float(h), ref, float(se))
    # the bounds bracket the quadrature value
    assert float(mixture_entropy_lower(w, mu, sd)) < ref < float(mixture_entropy_approx(w, mu, sd))


def test_mc_standard_error_is_the_spread_of_repeated_estimates():
    w, mu, sd = _random_mixture(3, 2, seed=3)
    runs = [mixture_entropy_mc(w, mu, sd, n_samples=500, generator=torch.Generator().manual_seed(s)) for s in range(60)]
    est = np.array([float(h) for h, _ in runs])
    se = np.mean([float(s) for _, s in runs])
    # the reported SE matches the empirical std of independent estimates (within 30 %)
    assert 0.7 < est.std(ddof=1) / se < 1.3


def test_separation_ratio_definition_and_invariances():
    mu = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [1.0, -1.0, 2.0]], dtype=DT)
    s_iso = torch.tensor([0.5, 1.5, 1.0], dtype=DT)
    sd = s_iso.unsqueeze(1).expand(3, 3).clone()
    S = separation_ratio(mu, sd, reduction="none").numpy()
    for i in range(3):
        for j in range(3):
            expect = 0.0 if i == j else np.linalg.norm(mu[i] - mu[j]) / float(s_iso[i] + s_iso[j])
            assert S[i, j] == pytest.approx(expect, rel=1e-12)
    assert float(separation_ratio(mu, sd)) == pytest.approx(S[~np.eye(3, dtype=bool)].min())
    # invariant under any per-coordinate affine change of the weights x -> c * x + t (c_d != 0), which
    # the isotropic ||mu_i - mu_j|| / (s_i + s_j) is not
    c = torch.tensor([2.0, -0.1, 7.0], dtype=DT)
    S2 = separation_ratio(mu * c + 5.0, sd * c.abs(), reduction="none").numpy()
    np.testing.assert_allclose(S2, S, rtol=1e-12)
    iso = np.linalg.norm((mu[0] - mu[1]) * c) / float((s_iso[0] + s_iso[1]) * c.abs().mean())
    assert abs(iso - S[0, 1]) > 0.1
    assert math.isinf(float(separation_ratio(mu[:1], sd[:1])))


def _bc_numeric_1d(m1, s1, m2, s2):
    f = lambda x: math.sqrt(stats.norm.pdf(x, m1, s1) * stats.norm.pdf(x, m2, s2))  # noqa: E731
    val, _ = integrate.quad(f, -30, 30, limit=200)
    return val


def test_bhattacharyya_coefficients_match_quadrature():
    mu = torch.tensor([[0.0, 1.0], [1.5, -0.5]], dtype=DT)
    sd = torch.tensor([[0.7, 1.2], [1.1, 0.4]], dtype=DT)
    bc = bhattacharyya_coefficients(mu, sd).numpy()
    # a product density: the coefficient factorises over coordinates
    ref = np.prod([_bc_numeric_1d(float(mu[0, d]), float(sd[0, d]), float(mu[1, d]), float(sd[1, d]))
                   for d in range(2)])
    assert bc[0, 1] == pytest.approx(ref, rel=1e-7)
    np.testing.assert_allclose(np.diag(bc), 1.0, rtol=1e-12)


@pytest.mark.parametrize("spread", [0.0, 0.5, 2.0, 6.0])
def test_error_bound_is_between_zero_and_the_separation_bound(spread):
    w, mu, sd = _random_mixture(4, 3, spread=spread, seed=7)
    b = float(entropy_error_bound(w, mu, sd))
    s = float(separation_ratio(mu, sd))
    assert 0.0 <= b <= 3 * math.exp(-s * s / 4) + 1e-12
    # and below the largest possible error H(w) (identical components)
    assert b <= float(-(w * w.log()).sum()) + 1e-12


def test_bad_arguments_are_named():
    w, mu, sd = _random_mixture(2, 3)
    with pytest.raises(ValueError, match="sum to 1"):
        mixture_entropy_approx(w * 2, mu, sd)
    with pytest.raises(ValueError, match="scales must all be > 0"):
        mixture_entropy_approx(w, mu, -sd)
    with pytest.raises(ValueError, match="shape of means"):
        mixture_entropy_approx(w, mu, sd[:, :2])
    with pytest.raises(ValueError, match=r"\[K, D"):
        mixture_entropy_approx(w, mu[0], sd[0])
    with pytest.raises(ValueError, match="n_samples"):
        mixture_entropy_mc(w, mu, sd, n_samples=1)
    with pytest.raises(ValueError, match="reduction"):
        separation_ratio(mu, sd, reduction="mean")
    with pytest.raises(ValueError, match="z must have shape"):
        mixture_log_prob(torch.zeros(4, 2, dtype=DT), w, mu, sd)


# ---------------------------------------------------------------------------------------------
# the responsibility estimator of the approximation error
# ---------------------------------------------------------------------------------------------
def _exact_entropy_1d(w, mu, sd):
    """H[q] of a 1-D mixture by adaptive quadrature (scipy), the independent reference."""
    from scipy import integrate
    from scipy.stats import norm

    def q(x):
        return sum(wk * norm.pdf(x, m, s) for wk, m, s in zip(w, mu, sd))

    lo, hi = min(mu) - 12 * max(sd), max(mu) + 12 * max(sd)
    val, _ = integrate.quad(lambda x: -q(x) * np.log(max(q(x), 1e-300)), lo, hi, limit=400,
                            points=sorted(mu))
    return val


@pytest.mark.parametrize("sep", [0.0, 0.7, 2.0, 5.0])
def test_entropy_approx_error_matches_quadrature_in_1d(sep):
    from neuroq.bayes import entropy_approx_error

    w = [0.5, 0.3, 0.2]
    mu = [0.0, sep, -1.3 * sep]
    sd = [1.0, 0.7, 1.3]
    W = torch.tensor(w, dtype=torch.float64)
    MU = torch.tensor(mu, dtype=torch.float64).view(3, 1)
    SD = torch.tensor(sd, dtype=torch.float64).view(3, 1)
    exact = float(mixture_entropy_approx(W, MU, SD)) - _exact_entropy_1d(w, mu, sd)
    for stratified in (True, False):
        est, se = entropy_approx_error(W, MU, SD, n_samples=30000, stratified=stratified,
                                       generator=torch.Generator().manual_seed(1))
        assert abs(float(est) - exact) < 4 * float(se) + 1e-9, (stratified, float(est), exact, float(se))
    assert exact >= -1e-9


def test_entropy_approx_error_resolves_high_dimensions():
    """D = 5000: the plain MC difference cannot resolve an error below log K (its SE is tens of nats
    here), the responsibility estimator gives H(w) for coincident components and 0 for separated ones."""
    from neuroq.bayes import entropy_approx_error

    g = torch.Generator().manual_seed(0)
    K, D = 3, 5000
    w = torch.full((K,), 1 / K, dtype=torch.float64)
    sd = 0.5 + torch.rand(1, D, generator=g, dtype=torch.float64).expand(K, D)
    mu0 = torch.randn(1, D, generator=g, dtype=torch.float64).expand(K, D)
    est, se = entropy_approx_error(w, mu0, sd, n_samples=300, generator=g)
    assert float(est) == pytest.approx(math.log(3), abs=1e-9) and float(se) < 1e-9
    mu = mu0 + 0.2 * torch.randn(K, D, generator=g, dtype=torch.float64)   # s ~ 0.2 sqrt(2 D)/(2 sd) >> 1
    assert float(separation_ratio(mu, sd)) > 5
    est, se = entropy_approx_error(w, mu, sd, n_samples=300, generator=g)
    assert float(est) < 1e-6
    _, se_mc = mixture_entropy_mc(w, mu, sd, n_samples=300, generator=g)
    assert float(se_mc) > 1.0  # what the difference of two separate estimates would have to beat


_W, _MU, _SD = _random_mixture(2, 3)
_NAN = float("nan")


@pytest.mark.parametrize("call,exc,match", [
    # shapes of means/scales are compared before any reshape
    (lambda: bhattacharyya_coefficients(torch.zeros(2, 3, dtype=DT), torch.ones(5, 3, dtype=DT)), ValueError,
     "bhattacharyya_coefficients: scales must have the shape of means"),
    (lambda: bhattacharyya_coefficients(_MU, -_SD), ValueError, "scales must all be > 0"),
    (lambda: separation_ratio([[0.0]], _SD), TypeError, "means must be a torch.Tensor"),
    (lambda: separation_ratio(_MU, _SD.clone().fill_(_NAN)), ValueError, "scales must be finite"),
    (lambda: component_log_prob(torch.zeros(3, dtype=DT), _MU, _SD), ValueError,
     r"component_log_prob: z must have shape \[S, 3\]"),
    (lambda: component_log_prob(torch.zeros(4, 3, dtype=DT), _MU, _SD[:, :2]), ValueError, "shape of means"),
    (lambda: component_log_prob(torch.full((4, 3), _NAN, dtype=DT), _MU, _SD), ValueError, "z must be finite"),
    (lambda: mixture_log_prob(torch.zeros(4, 3, dtype=torch.long), _W, _MU, _SD), TypeError, "z must be a floating"),
    # component scales must be finite and > 0
    (lambda: gaussian_entropy(-torch.ones(2, 3)), ValueError, "gaussian_entropy: scales must all be > 0"),
    (lambda: gaussian_entropy(torch.zeros(2, 3)), ValueError, "gaussian_entropy: scales must all be > 0"),
    (lambda: gaussian_entropy(torch.full((2, 3), _NAN)), ValueError, "gaussian_entropy: scales must be finite"),
    (lambda: gaussian_entropy(torch.full((2, 3), float("inf"))), ValueError, "scales must be finite"),
    (lambda: mixture_entropy_approx(_W, _MU.clone().fill_(float("inf")), _SD), ValueError, "means must be finite"),
    # mixing weights: finite, >= 0, sum to 1
    (lambda: weight_entropy(torch.tensor([0.9, 0.9])), ValueError, "weight_entropy: weights must be non-negative "
     "and sum to 1"),
    (lambda: weight_entropy(torch.tensor([-0.5, 1.5])), ValueError, "weights must be non-negative and sum to 1"),
    (lambda: weight_entropy(torch.tensor([_NAN, 1.0])), ValueError, "weight_entropy: weights must be finite"),
    (lambda: weight_entropy(torch.tensor([1, 0])), TypeError, "weights must be a floating-point tensor"),
    (lambda: mixture_entropy_approx(torch.tensor([_NAN, _NAN], dtype=DT), _MU, _SD), ValueError,
     "mixture_entropy_approx: weights must be finite"),
    (lambda: mixture_entropy_lower(torch.tensor([_NAN, 1.0], dtype=DT), _MU, _SD), ValueError, "weights must be finite"),
    (lambda: entropy_error_bound(torch.tensor([_NAN, 1.0], dtype=DT), _MU, _SD), ValueError, "weights must be finite"),
    (lambda: systematic_components(torch.tensor([-0.5, 1.5]), 4), ValueError,
     "systematic_components: weights must be non-negative and sum to 1"),
    (lambda: systematic_components(torch.tensor([_NAN, _NAN]), 4), ValueError,
     "systematic_components: weights must be finite"),
    (lambda: systematic_components(torch.tensor([0.9, 0.9]), 4), ValueError, "sum to 1"),
    (lambda: mixture_rsample(torch.tensor([_NAN, 0.0]), _MU.float(), _SD.float()), ValueError,
     "mixture_rsample: logits must be finite"),
])
def test_refuses_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_valid_edge_input_is_still_accepted():
    # a zero mixing weight is allowed (0 log 0 = 0), and weights that sum to 1 up to rounding
    assert float(weight_entropy(torch.tensor([1.0, 0.0]))) == 0.0
    assert systematic_components(torch.tensor([0.5, 0.5 + 1e-6]), 4).tolist() == [0, 0, 1, 1]
    assert bhattacharyya_coefficients(_MU, _SD).shape == (2, 2)
    assert component_log_prob(torch.zeros(4, 3, dtype=DT), _MU, _SD).shape == (4, 2)
