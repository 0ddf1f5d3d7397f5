"""Priors against scipy densities and quadrature; the Monte-Carlo prior term against the analytic one."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from neuroq.bayes import GaussianMixtureLinear, GaussianPrior, ScaleMixturePrior, log_prior

DT = torch.float64


def test_gaussian_prior_matches_scipy():
    p = GaussianPrior(0.3, 1.7)
    theta = torch.randn(4, 5, dtype=DT)
    assert float(p.log_prob(theta)) == pytest.approx(stats.norm(0.3, 1.7).logpdf(theta.numpy()).sum(), rel=1e-12)
    means = torch.randn(3, 2, dtype=DT)
    scales = 0.2 + torch.rand(3, 2, dtype=DT)
    got = p.expected_log_prob(means, scales).numpy()
    for k in range(3):
        ref = sum(integrate.quad(lambda t: stats.norm.pdf(t, float(means[k, d]), float(scales[k, d]))
                                 * stats.norm.logpdf(t, 0.3, 1.7), -30, 30)[0] for d in range(2))
        assert got[k] == pytest.approx(ref, rel=1e-8)


def test_scale_mixture_prior_matches_scipy():
    p = ScaleMixturePrior(0.3, 1.5, 0.05)
    theta = torch.randn(50, dtype=DT) * 0.5
    ref = np.log(0.3 * stats.norm(0, 1.5).pdf(theta.numpy()) + 0.7 * stats.norm(0, 0.05).pdf(theta.numpy())).sum()
    assert float(p.log_prob(theta)) == pytest.approx(ref, rel=1e-12)
    assert p.expected_log_prob(torch.zeros(2, 3), torch.ones(2, 3)) is None


def test_mc_prior_term_is_unbiased_for_the_analytic_one():
    layer = GaussianMixtureLinear(3, 2, K=3, prior=GaussianPrior(0.0, 0.8), init_scale=0.4).double()
    layer.group.double()
    analytic = float(log_prior(torch.nn.Sequential(layer), "analytic").detach())
    vals = []
    with torch.no_grad():
        for _ in range(3000):
            layer.group.resample()
            vals.append(float(layer.expected_log_prior("mc")))
    vals = np.asarray(vals)
    assert abs(vals.mean() - analytic) < 4 * vals.std(ddof=1) / math.sqrt(vals.size)


def test_bad_priors_are_named():
    with pytest.raises(ValueError, match="std must be > 0"):
        GaussianPrior(0.0, 0.0)
    with pytest.raises(ValueError, match="pi must be < 1"):
        ScaleMixturePrior(1.0)
    layer = GaussianMixtureLinear(2, 2, prior=ScaleMixturePrior())
    with pytest.raises(ValueError, match="no analytic expectation"):
        layer.expected_log_prior("analytic")
    assert torch.isfinite(layer.expected_log_prior("auto"))  # falls back to the weight sample
