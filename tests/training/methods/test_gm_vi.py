"""Acceptance checks for Gaussian-mixture VI with the entropy approximation (Furuya et al.,
arXiv 2202.13059).

* the approximation is the analytic Gaussian entropy for K = 1 (scipy);
* sum_k w_k H(N_k) <= H_MC <= approximation on overlapping mixtures, each gap many standard errors wide;
* |approximation - H_MC| falls as the separation ratio grows and is ~0 for well-separated components,
  below the Bhattacharyya bound (K-1) exp(-s^2/4) derived in neuroq.bayes.entropy;
* the ELBO's single-sample gradient is unbiased against a large-sample estimator that enumerates the
  components (no pathwise field), with a tolerance from the standard errors;
* the ELBO with the stated data-set-size scaling equals the log evidence at the exact posterior of a
  conjugate model (so prior and entropy are summed over the weights, not averaged);
* the KL agrees with bayesian-torch's LinearReparameterization (which averages it per element);
* bayesify keeps a model's outputs (and a spiking model's spikes and energy) in the zero-variance limit;
* a Bayesian SNN holds one weight sample over the T steps of an input, in single- and multi-step mode;
* the method ``gm-vi``: its step is unbiased for the negative ELBO (written out by hand: with the
  approximation and fixed weights it decouples into per-component mean-field terms) and lowers it; its
  prediction is the log of the mean probability over the components; the loop gives it the training-split
  size; it trains, reloads and meters from the CLI, refuses foreign options, and joins ``neuroq compare``.
"""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as tF
from scipy import stats
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import layer as sjl

from neuroq.bayes import (
    GaussianMixtureLinear, GaussianPrior, bayesify, elbo, entropy_error_bound, gaussian_entropy,
    kl_divergence, mixture_entropy_approx, mixture_entropy_lower, mixture_entropy_mc, mixture_groups, mixture_layers,
    separation_ratio,
)
from neuroq.bayes.mixture import inverse_softplus
from neuroq.energy import EnergyMeter
from neuroq.neuron import LIFNode

DT = torch.float64


def _mc(w, mu, sd, n=20000, seed=0):
    h, se = mixture_entropy_mc(w, mu, sd, n_samples=n, generator=torch.Generator().manual_seed(seed))
    return float(h), float(se)


# ---------------------------------------------------------------------------------------------
# entropy approximation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D", [1, 3, 50])
def test_k1_approximation_is_the_analytic_gaussian_entropy(D):
    g = torch.Generator().manual_seed(D)
    mu = torch.randn(1, D, generator=g, dtype=DT)
    sd = 0.1 + torch.rand(1, D, generator=g, dtype=DT)
    w = torch.ones(1, dtype=DT)
    ref = stats.multivariate_normal(mu[0].numpy(), np.diag(sd[0].numpy() ** 2)).entropy()
    assert float(mixture_entropy_approx(w, mu, sd)) == pytest.approx(ref, rel=1e-12)
    assert float(mixture_entropy_lower(w, mu, sd)) == pytest.approx(ref, rel=1e-12)
    h, se = _mc(w, mu, sd, n=5000)
    assert abs(h - ref) < 4 * se


@pytest.mark.parametrize("K,D,seed", [(2, 1, 0), (3, 2, 1), (4, 5, 2), (3, 20, 3)])
def test_bounds_sandwich_the_entropy_of_overlapping_mixtures(K, D, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.softmax(torch.randn(K, generator=g, dtype=DT), 0)
    sd = 0.5 + torch.rand(K, D, generator=g, dtype=DT)
    mu = 0.8 * torch.randn(K, D, generator=g, dtype=DT) / math.sqrt(D)  # overlapping
    assert float(separation_ratio(mu, sd)) < 1.0
    lower, approx = float(mixture_entropy_lower(w, mu, sd)), float(mixture_entropy_approx(w, mu, sd))
    h, se = _mc(w, mu, sd, n=50000, seed=seed)
    # lower <= H <= approx, and here both gaps are real (several standard errors), so the order is tested
    assert lower + 3 * se < h < approx - 3 * se, (lower, h, approx, se)
    # Kolchinsky-Tracey's Bhattacharyya lower bound holds too: H >= approx - bound
    assert h > approx - float(entropy_error_bound(w, mu, sd)) - 3 * se


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.6, 0.3, 0.1)])
def test_approximation_error_falls_with_the_separation_ratio(weights):
    K, D = len(weights), 3
    g = torch.Generator().manual_seed(K)
    w = torch.tensor(weights, dtype=DT)
    sd = 0.6 + 0.6 * torch.rand(K, D, generator=g, dtype=DT)          # anisotropic, unequal components
    direction = torch.randn(K, D, generator=g, dtype=DT)
    ratios, errors, ses = [], [], []
    for scale in (0.0, 0.3, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0, 9.0):
        mu = scale * direction
        h, se = _mc(w, mu, sd, seed=int(10 * scale))
        s = float(separation_ratio(mu, sd)) if scale > 0 else 0.0
        err = float(mixture_entropy_approx(w, mu, sd)) - h
        ratios.append(s)
        errors.append(err)
        ses.append(se)
        # every point: 0 <= error <= Bhattacharyya bound <= (K-1) exp(-s^2/4)   (within MC error)
        assert -3 * se < err < float(entropy_error_bound(w, mu, sd)) + 3 * se
        assert err < (K - 1) * math.exp(-s * s / 4) + 3 * se
    assert ratios == sorted(ratios)
    # identical components (same means and scales): the error is the whole weight entropy H(w)
    same = sd[:1].expand(K, D)
    h0, se0 = _mc(w, torch.zeros(K, D, dtype=DT), same)
    hw = float(-(w * w.log()).sum())
    assert abs(float(mixture_entropy_approx(w, torch.zeros(K, D, dtype=DT), same)) - h0 - hw) < 3 * se0
    # the error falls along the sweep (non-increasing within the combined MC error)...
    for i in range(len(errors) - 1):
        assert errors[i + 1] < errors[i] + 3 * math.hypot(ses[i], ses[i + 1]), (ratios, errors)
    # ...from H(w) to ~0 once the components are well separated
    assert ratios[-1] > 6 and abs(errors[-1]) < 3 * ses[-1] + 1e-3
    assert errors[0] > 50 * max(abs(errors[-1]), ses[-1])


# ---------------------------------------------------------------------------------------------
# ELBO gradients: unbiased
# ---------------------------------------------------------------------------------------------
def _regression_net(seed, mean_jitter, weight_grad):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 1))
    bnet = bayesify(net, K=3, mixing="learned", init_scale=0.3, mean_jitter=mean_jitter, weight_grad=weight_grad)
    with torch.no_grad():
        bnet[0].group.logits.copy_(torch.tensor([0.5, -0.3, 0.0]))
    return bnet


def _loglik(out, y, noise=0.5):
    return (-0.5 * ((y - out.squeeze(-1)) / noise) ** 2 - math.log(noise) - 0.5 * math.log(2 * math.pi)).sum()


def _params(bnet):
    l1, l2 = bnet[0], bnet[2]
    return [l1.group.logits, l1.weight_means, l1.bias_means, l2.weight_means, l2.bias_means,
            l1.weight_rhos, l1.bias_rhos, l2.weight_rhos, l2.bias_rhos]


def _reference_objective(bnet, x, y, n_data, eps):
    """The per-data-point ELBO with the component sum done exactly: sum_k w_k E_{N_k}[.] (plain
    reparameterisation per component, gradients to w through w itself) and the entropy and prior terms
    written out from their closed forms."""
    l1, l2 = bnet[0], bnet[2]
    w = torch.softmax(l1.group.logits, 0)
    s = {n: tF.softplus(getattr(layer, f"{n2}_rhos")) for n, (layer, n2) in
         {"W1": (l1, "weight"), "b1": (l1, "bias"), "W2": (l2, "weight"), "b2": (l2, "bias")}.items()}
    m = {"W1": l1.weight_means, "b1": l1.bias_means, "W2": l2.weight_means, "b2": l2.bias_means}
    B = x.shape[0]
    data = 0.0
    for k in range(3):
        th = {n: m[n][k] + s[n][k] * eps[n][k] for n in m}                      # [L, ...]
        h = torch.tanh(torch.einsum("bi,loi->lbo", x, th["W1"]) + th["b1"][:, None, :])
        out = torch.einsum("lbo,lpo->lbp", h, th["W2"]) + th["b2"][:, None, :]
        ll = (-0.5 * ((y - out[..., 0]) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)).sum(1)
        data = data + w[k] * ll.mean() / B
    ent = sum((w * (torch.log(s[n]).flatten(1).sum(1) + 0.5 * s[n][0].numel() * (1 + math.log(2 * math.pi))))
              .sum() for n in s) - (w * w.log()).sum()
    prior = sum((w * (-0.5 * (m[n] ** 2 + s[n] ** 2).flatten(1).sum(1)
                      - 0.5 * m[n][0].numel() * math.log(2 * math.pi))).sum() for n in m)
    return data + (ent + prior) / n_data


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=g)
    return x, torch.sin(2 * x[:, 0]) + 0.3 * torch.randn(16, generator=g)


def _library_gradients(bnet, x, y, n_data, M):
    """M single-sample gradients of neuroq's per-data-point ELBO: mean and standard error."""
    params = _params(bnet)
    single = []
    for _ in range(M):
        terms = elbo(bnet, _loglik(bnet(x), y), batch_size=x.shape[0], n_data=n_data)
        single.append(torch.cat([t.flatten() for t in torch.autograd.grad(terms.elbo, params)]))
    A = torch.stack(single)
    return A.mean(0), A.std(0) / math.sqrt(M)


@pytest.mark.parametrize("mean_jitter,weight_grad", [(0.3, "pathwise"), (3.0, "score")])
def test_elbo_gradient_is_unbiased(mean_jitter, weight_grad):
    """Overlapping components (separation ratio ~0.8) with the pathwise mixing-weight gradient, and
    well-separated ones (~8.5) with the score-function one (the pathwise field's variance grows like
    exp(s^2 / 2) and is heavy-tailed there: its sample standard error is no longer a valid tolerance)."""
    bnet = _regression_net(0, mean_jitter, weight_grad)
    params = _params(bnet)
    x, y = _data()
    n_data = 100
    mean_a, se_a = _library_gradients(bnet, x, y, n_data, 600)
    # the large-sample reference (20 batches of 1000 samples per component)
    l1, l2 = bnet[0], bnet[2]
    shapes = {"W1": l1.weight_means.shape, "b1": l1.bias_means.shape,
              "W2": l2.weight_means.shape, "b2": l2.bias_means.shape}
    ref = []
    for _ in range(20):
        eps = {n: torch.randn(sh[0], 1000, *sh[1:]) for n, sh in shapes.items()}
        obj = _reference_objective(bnet, x, y, n_data, eps)
        ref.append(torch.cat([t.flatten() for t in torch.autograd.grad(obj, params)]))
    R = torch.stack(ref)
    mean_r, se_r = R.mean(0), R.std(0) / math.sqrt(R.shape[0])
    se = torch.sqrt(se_a ** 2 + se_r ** 2)
    z = (mean_a - mean_r) / se
    # 105 parameters, a 4.5-sigma band each (family-wise false-alarm rate < 1e-3)
    assert z.abs().max() < 4.5, z
    # the check has power: many gradients are far from zero in standard errors
    assert (mean_r[3:54].abs() / se[3:54]).max() > 10           # component means
    if weight_grad == "score":
        assert (mean_r[:3].abs() / se[:3]).max() > 8            # mixing logits


# ---------------------------------------------------------------------------------------------
# ELBO scaling: equals the log evidence at the exact posterior of a conjugate model
# ---------------------------------------------------------------------------------------------
def _conjugate_problem():
    g = torch.Generator().manual_seed(4)
    N, noise, s = 40, 0.4, 1.5
    z = torch.randn(N, 2, generator=g, dtype=DT)
    x1 = z[:, 0] - z[:, 0].mean()
    x2 = z[:, 1] - z[:, 1].mean()
    x2 = x2 - (x2 @ x1) / (x1 @ x1) * x1        # columns [1, x1, x2] orthogonal: diagonal posterior
    X = torch.stack([x1, x2], 1)
    y = 0.7 * x1 - 1.2 * x2 + 0.3 + noise * torch.randn(N, generator=g, dtype=DT)
    Phi = torch.cat([torch.ones(N, 1, dtype=DT), X], 1)
    prec = torch.diagonal(Phi.T @ Phi) / noise ** 2 + 1 / s ** 2
    mean = (Phi.T @ y) / noise ** 2 / prec
    cov = noise ** 2 * np.eye(N) + s ** 2 * (Phi @ Phi.T).numpy()
    log_z = stats.multivariate_normal(np.zeros(N), cov).logpdf(y.numpy())
    return X, y, noise, s, mean, prec.rsqrt(), log_z


def test_elbo_at_the_exact_posterior_is_the_log_evidence():
    X, y, noise, s, mean, std, log_z = _conjugate_problem()
    N, B = X.shape[0], 8
    layer = GaussianMixtureLinear(2, 1, K=1, prior=GaussianPrior(0.0, s), init_scale=0.1).double()
    with torch.no_grad():
        layer.bias_means.copy_(mean[:1].view(1, 1))
        layer.weight_means.copy_(mean[1:].view(1, 1, 2))
        layer.bias_rhos.copy_(inverse_softplus(std[:1]).view(1, 1))
        layer.weight_rhos.copy_(inverse_softplus(std[1:]).view(1, 1, 2))
    net = nn.Sequential(layer)
    g = torch.Generator().manual_seed(0)
    full, mean_kl = [], []
    with torch.no_grad():
        for i in range(1500):
            idx = torch.randperm(N, generator=g)[:B]
            ll = _loglik(net(X[idx]), y[idx], noise)
            t = elbo(net, ll, batch_size=B, n_data=N, per_datapoint=False)
            full.append(float(t.elbo))
            if i < 20:  # the per-data-point ELBO is the full one over N
                assert float(elbo(net, ll, batch_size=B, n_data=N).elbo) * N == pytest.approx(full[-1], rel=1e-10)
            # bayesian-torch's convention: KL averaged per element of each tensor
            mean_kl.append(float(t.log_likelihood) - float(t.kl) / 3)
    full, mean_kl = np.asarray(full), np.asarray(mean_kl)
    se = full.std(ddof=1) / math.sqrt(full.size)
    assert abs(full.mean() - log_z) < 4 * se, (full.mean(), log_z, se)
    assert abs(mean_kl.mean() - log_z) > 20 * se  # averaging the KL per element would be wrong
    # any other posterior has a lower ELBO
    with torch.no_grad():
        layer.weight_means += 0.1
        worse = np.mean([float(elbo(net, _loglik(net(X), y, noise), N, N, per_datapoint=False).elbo)
                         for _ in range(300)])
    assert worse < log_z - 10 * se


# ---------------------------------------------------------------------------------------------
# KL against bayesian-torch
# ---------------------------------------------------------------------------------------------
def test_kl_matches_bayesian_torch_summed_over_elements():
    """bayesian-torch 0.5.0 (installed into a private directory for the tests; the project's ``dev``
    extra should add it).  Its ``prior_variance`` argument is used as the prior's standard deviation,
    and its ``kl_loss`` is the per-element mean of the KL of the weight plus that of the bias."""
    bt = pytest.importorskip("bayesian_torch.layers")
    torch.manual_seed(0)
    prior_std = 0.7
    ref = bt.LinearReparameterization(5, 3, prior_mean=0.0, prior_variance=prior_std, posterior_rho_init=-2.0)
    ours = GaussianMixtureLinear(5, 3, K=1, prior=GaussianPrior(0.0, prior_std))
    with torch.no_grad():
        ours.weight_means.copy_(ref.mu_weight.unsqueeze(0))
        ours.weight_rhos.copy_(ref.rho_weight.unsqueeze(0))
        ours.bias_means.copy_(ref.mu_bias.unsqueeze(0))
        ours.bias_rhos.copy_(ref.rho_bias.unsqueeze(0))
    with torch.no_grad():
        kl = float(kl_divergence(ours))
        sw, sb = torch.log1p(torch.exp(ref.rho_weight)), torch.log1p(torch.exp(ref.rho_bias))
        kl_w = float(ref.kl_div(ref.mu_weight, sw, ref.prior_weight_mu, ref.prior_weight_sigma))
        kl_b = float(ref.kl_div(ref.mu_bias, sb, ref.prior_bias_mu, ref.prior_bias_sigma))
        assert kl == pytest.approx(15 * kl_w + 3 * kl_b, rel=1e-5)
        assert float(ref.kl_loss()) == pytest.approx(kl_w + kl_b, rel=1e-6)  # their per-element means
        # and torch.distributions' closed form, summed
        p = torch.distributions.Normal(0.0, prior_std)
        td = (torch.distributions.kl_divergence(torch.distributions.Normal(ref.mu_weight, sw), p).sum()
              + torch.distributions.kl_divergence(torch.distributions.Normal(ref.mu_bias, sb), p).sum())
        assert kl == pytest.approx(float(td), rel=1e-5)
    # same posterior, same output distribution: mean x mu + b, variance x^2 sigma^2 + sigma_b^2
    x = torch.randn(1, 5)
    with torch.no_grad():
        a = torch.stack([ref(x)[0][0] for _ in range(2000)])
        b = torch.stack([ours(x)[0] for _ in range(2000)])
    mean = (x @ ref.mu_weight.T + ref.mu_bias)[0]
    var = (x ** 2 @ (sw ** 2).T + sb ** 2)[0]
    for s in (a, b):
        assert ((s.mean(0) - mean).abs() / (var / 2000).sqrt()).max() < 4.5
        assert ((s.var(0) / var) - 1).abs().max() < 0.15  # the sample variance's sd is ~3 % here


# ---------------------------------------------------------------------------------------------
# bayesify: zero-variance limit
# ---------------------------------------------------------------------------------------------
def _max_diff(net, bnet, x, draws=3):
    with torch.no_grad():
        y = net(x)
        return max(float((bnet(x) - y).abs().max()) for _ in range(draws))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_bayesify_keeps_the_outputs_in_the_zero_variance_limit(arch):
    torch.manual_seed(0)
    if arch == "mlp":
        net, x = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)), torch.randn(8, 6)
    else:
        net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Flatten(),
                            nn.Linear(36, 3))
        x = torch.randn(5, 2, 8, 8)
    diffs = [_max_diff(net, bayesify(net, K=3, init_scale=s), x) for s in (1e-2, 1e-4, 1e-6)]
    assert diffs[1] < diffs[0] / 30 and diffs[2] < diffs[1] / 30, diffs   # ~ proportional to init_scale
    assert diffs[2] < 1e-4
    assert _max_diff(net, bayesify(net, K=3, init_scale=0.3), x) > 0.05  # a real posterior does change them


def _spiking_cnn(step_mode="m"):
    torch.manual_seed(1)
    net = nn.Sequential(
        sjl.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2)), LIFNode(step_mode=step_mode),
        nn.Flatten(start_dim=2), sjl.SeqToANNContainer(nn.Linear(64, 10)), LIFNode(step_mode=step_mode),
        nn.Linear(10, 3))
    with torch.no_grad():  # firing rates of ~10-30 % in both spiking layers
        net[0][0].weight *= 2.0
        net[3][0].weight *= 3.0
        net[3][0].bias += 0.5
    return net


def _spikes(net, x):
    rec = []
    hooks = [m.register_forward_hook(lambda m, i, o: rec.append(o.detach().clone()))
             for m in net.modules() if isinstance(m, LIFNode)]
    with torch.no_grad():
        out = net(x)
    for h in hooks:
        h.remove()
    sjf.reset_net(net)
    return out, rec


def test_bayesify_spiking_cnn_keeps_spikes_outputs_and_energy():
    net = _spiking_cnn()
    x = torch.rand(4, 6, 1, 8, 8) * 12  # [T, N, C, H, W], direct encoding
    bnet = bayesify(net, K=3, init_scale=1e-7)
    assert len(mixture_layers(bnet)) == 3 and bnet[0][0].group.resample_mode == "reset"
    out, spikes = _spikes(net, x)
    bout, bspikes = _spikes(bnet, x)
    assert all(0.02 < float(s.mean()) < 0.9 for s in spikes), [float(s.mean()) for s in spikes]
    for s, bs in zip(spikes, bspikes):
        assert torch.equal(s, bs)
    torch.testing.assert_close(bout, out, rtol=0, atol=1e-4)
    reports = []
    for model in (net, bnet):
        with EnergyMeter(model) as meter, torch.no_grad():
            model(x)
        sjf.reset_net(model)
        reports.append(meter.report())
    assert reports[1]["total"]["sops"] == pytest.approx(reports[0]["total"]["sops"])
    assert reports[1]["total"]["macs"] == reports[0]["total"]["macs"] > 0


# ---------------------------------------------------------------------------------------------
# Bayesian SNN: one weight sample over the T steps of an input
# ---------------------------------------------------------------------------------------------
def test_bayesian_snn_holds_the_weight_sample_over_time_steps():
    torch.manual_seed(2)
    T, N = 6, 4
    net = nn.Sequential(nn.Linear(5, 8), LIFNode(step_mode="s"), nn.Linear(8, 2))
    bnet = bayesify(net, K=3, init_scale=0.3)
    seen = []
    hook = bnet[0].register_forward_pre_hook(lambda m, a: seen.append(m.sampled("weight").detach().clone()))
    x = torch.rand(T, N, 5) * 2
    torch.manual_seed(5)
    out_s = torch.stack([bnet(x[t]) for t in range(T)])
    held = {n: layer.sample_parameters() for n, layer in (("0", bnet[0]), ("2", bnet[2]))}
    sjf.reset_net(bnet)
    bnet(x[0])
    hook.remove()
    sjf.reset_net(bnet)
    assert all(torch.equal(seen[0], s) for s in seen[:T]) and not torch.equal(seen[0], seen[T])
    # independent reference: the original network with its weights set to the held sample
    ref = copy.deepcopy(net)
    with torch.no_grad():
        for n, p in held.items():
            ref[int(n)].weight.copy_(p["weight"])
            ref[int(n)].bias.copy_(p["bias"])
        out_ref = torch.stack([ref(x[t]) for t in range(T)])
    sjf.reset_net(ref)
    torch.testing.assert_close(out_s, out_ref)
    # multi-step mode (one call on [T, N, ...]) with the same draw gives the same outputs
    multi = copy.deepcopy(bnet)
    sjf.set_step_mode(multi, "m")
    torch.manual_seed(5)
    with torch.no_grad():
        out_m = multi(x)
    torch.testing.assert_close(out_m, out_s.detach())
    # and inside SeqToANNContainer, where the layer sees [T*N, ...] once
    seq = nn.Sequential(sjl.SeqToANNContainer(bnet[0]), LIFNode(step_mode="m"), sjl.SeqToANNContainer(bnet[2]))
    torch.manual_seed(5)
    with torch.no_grad():
        out_c = seq(x)
    torch.testing.assert_close(out_c, out_s.detach())


def test_bayesian_snn_trains_through_time():
    torch.manual_seed(3)
    net = nn.Sequential(sjl.SeqToANNContainer(nn.Linear(5, 16)), LIFNode(step_mode="m"),
                        sjl.SeqToANNContainer(nn.Linear(16, 3)))
    bnet = bayesify(net, K=2, init_scale=0.05)
    x, y = torch.rand(8, 32, 5) * 2, torch.randint(0, 3, (32,))
    opt = torch.optim.Adam(bnet.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        logits = bnet(x).mean(0)
        terms = elbo(bnet, -tF.cross_entropy(logits, y, reduction="sum"), batch_size=32, n_data=32)
        opt.zero_grad()
        terms.loss.backward()
        opt.step()
        sjf.reset_net(bnet)
        losses.append(float(terms.loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in bnet.parameters() if p.requires_grad)


def test_gaussian_entropy_helper_is_the_per_component_sum():
    sd = torch.tensor([[0.5, 2.0]], dtype=DT)
    assert float(gaussian_entropy(sd)) == pytest.approx(
        sum(stats.norm(0, float(s)).entropy() for s in sd[0]), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# the training method `gm-vi` (neuroq.training.methods.gmvi)
# ---------------------------------------------------------------------------------------------
def _toy_task(n=64, seed=0):
    from neuroq.data import ArrayDataset, TaskData

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 2, 2, generator=g)
    y = (x.flatten(1) @ torch.tensor([2.0, -1.0, 0.5, 1.0]) > 1.0).long() + (x[:, 0, 0, 0] > 0.8).long()
    ds = ArrayDataset(x, y)
    return TaskData("toy", ds, ds, 3, (1, 2, 2))


def _reference_negative_elbo(model, x, y, n_data, prior_std, M, seed):
    """-ELBO / N with the entropy approximation, written out independently of neuroq.bayes: with fixed
    uniform weights it decouples into sum_k w_k [E_{N_k} CE + KL(N_k || p) / N] - H(w) / N (each
    component a mean-field posterior); the forward pass is the 4-8-3 ReLU MLP done by hand, the KL is
    torch.distributions' closed form, the expectation a mean over M samples per component."""
    l1, l2 = mixture_layers(model)
    K = l1.K
    g = torch.Generator().manual_seed(seed)
    prior = torch.distributions.Normal(0.0, prior_std)
    total, var = 0.0, 0.0
    with torch.no_grad():
        for k in range(K):
            ms = [(l.weight_means[k], l.scales("weight")[k], l.bias_means[k], l.scales("bias")[k]) for l in (l1, l2)]
            ce = []
            for _ in range(M):
                (w1, s1, b1, t1), (w2, s2, b2, t2) = ms
                W1 = w1 + s1 * torch.randn(w1.shape, generator=g)
                B1 = b1 + t1 * torch.randn(b1.shape, generator=g)
                W2 = w2 + s2 * torch.randn(w2.shape, generator=g)
                B2 = b2 + t2 * torch.randn(b2.shape, generator=g)
                out = torch.relu(x.flatten(1) @ W1.T + B1) @ W2.T + B2
                ce.append(float(tF.cross_entropy(out, y)))
            kl = sum(float(torch.distributions.kl_divergence(torch.distributions.Normal(m, s), prior).sum())
                     for mm in ms for m, s in ((mm[0], mm[1]), (mm[2], mm[3])))
            total += (np.mean(ce) + kl / n_data) / K
            var += np.var(ce, ddof=1) / M / K ** 2
    return total - math.log(K) / n_data, math.sqrt(var)


def _method(**kw):
    from neuroq.training import get

    opts = dict(base="ann", arch="mlp", hidden=(8,), components=3, init_scale=0.05, mc_samples=6)
    opts.update(kw)
    return get("gm-vi", **opts)


def test_gm_vi_step_is_unbiased_for_and_decreases_the_negative_elbo():
    from neuroq.training import Context, train_step

    torch.manual_seed(0)
    data = _toy_task()
    method = _method()
    model = method.build_model(data)
    x, y = data.train.x, data.train.y
    N = 500
    ctx = Context(n_train=N)
    ref0, se0 = _reference_negative_elbo(model, x, y, N, 1.0, 300, seed=1)
    # the step's loss is an unbiased single-sample estimate of the reference (lr 0: no update)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)
    losses = np.array([train_step(method, model, x, y, frozen, ctx)[0] for _ in range(600)])
    se = math.hypot(losses.std(ddof=1) / math.sqrt(losses.size), se0)
    assert abs(losses.mean() - ref0) < 4 * se, (losses.mean(), ref0, se)
    # ... and the steps lower it
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(60):
        loss, logits = train_step(method, model, x, y, opt, ctx)
        assert math.isfinite(loss) and logits.shape == (64, 3)
    ref1, se1 = _reference_negative_elbo(model, x, y, N, 1.0, 300, seed=2)
    assert ref1 < ref0 - 10 * math.hypot(se0, se1), (ref0, ref1)
    # draw='all' (one weight sample per component, weighted) estimates the same objective
    allm = _method(draw="all")
    losses_all = np.array([train_step(allm, model, x, y, frozen, ctx)[0] for _ in range(200)])
    se_all = math.hypot(losses_all.std(ddof=1) / math.sqrt(losses_all.size), se1)
    assert abs(losses_all.mean() - ref1) < 4 * se_all
    with pytest.raises(ValueError, match="n_train"):
        train_step(method, model, x, y, frozen, Context())


@pytest.mark.parametrize("base,S", [("ann", 6), ("ann", 3), ("lif", 6)])
def test_gm_vi_predict_is_the_log_of_the_mean_probability_over_components(base, S):
    """With posterior stds of 1e-7 every weight sample is its component's mean network, so the S-sample
    predictive is exactly (1/K) sum_k softmax(f_k(x)) with the systematic allocation (S/K samples per
    component); the reference runs the K deterministic networks (component_network) separately."""
    from neuroq.bayes import component_network
    from neuroq.training import Context

    torch.manual_seed(1)
    data = _toy_task()
    method = _method(base=base, init_scale=1e-7, mc_samples=S, T=3, v_threshold=0.3)
    model = method.build_model(data).eval()
    x = data.test.x
    ctx = Context()
    got = method.predict(model, x, ctx)
    ref = 0.0
    inputs = method.inputs(x, ctx)
    with torch.no_grad():
        for k in range(3):
            net = component_network(model, k).eval()
            _sj_reset(net)
            out = net(inputs)
            ref = ref + torch.softmax(out.mean(0), -1) / 3
    torch.testing.assert_close(got, torch.log(ref), rtol=1e-4, atol=1e-4)
    assert got.shape == (64, 3) and torch.allclose(got.exp().sum(1), torch.ones(64), atol=1e-5)
    # components start from independent initialisations: their predictions differ
    with torch.no_grad():
        p = [torch.softmax(component_network(model, k)(inputs).mean(0), -1) for k in range(3)]
    assert float((p[0] - p[1]).abs().max().detach()) > 1e-2
    assert method.T == (1 if base == "ann" else 3)


def _sj_reset(net):
    from neuroq import _sj

    _sj.reset_net(net)


def test_gm_vi_trainer_gives_the_training_split_size_and_converts_for_inference():
    from neuroq.training import TrainConfig, Trainer

    seen = []

    class Spy(type(_method())):
        def compute_loss(self, model, x, y, ctx):
            seen.append(ctx.n_train)
            return super().compute_loss(model, x, y, ctx)

    data = _toy_task(n=100)
    tr = Trainer(Spy(base="lif", arch="mlp", hidden=(8,), components=2, T=2), data,
                 TrainConfig(epochs=1, batch_size=32, val_fraction=0.2), label=None)
    tr.fit()
    assert set(seen) == {80} and len(tr.train_set) == 80
    det = tr.method.inference_network(tr.model)
    assert not mixture_layers(det) and sum(isinstance(m, nn.Linear) for m in det.modules()) == 2
    with EnergyMeter(det) as meter, torch.no_grad():
        det(tr.method.record_input(data.test.x[:4]))
    assert meter.report()["total"]["macs"] > 0


def test_gm_vi_cli_trains_reloads_and_refuses_foreign_options(tmp_path, capsys):
    from neuroq.cli import main
    from neuroq.training import load_run

    out = tmp_path / "run"
    base = ["train", "--dataset", "digits", "--epochs", "1", "--limit-train", "200", "--limit-test", "50",
            "--hidden", "16", "-T", "2", "--quiet"]
    assert main(base + ["--method", "gm-vi", "--components", "2", "--mc-samples", "4", "--init-scale", "0.02",
                        "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["method"] == "gm-vi" and m["method_config"]["components"] == 2 and m["method_config"]["mc_samples"] == 4
    assert 0 <= m["final_test_acc"] <= 1 and (out / "energy.json").is_file() and (out / "raster.png").is_file()
    method, model, ds, cfg = load_run(out / "checkpoint.pt")
    assert method.config.components == 2 and len(mixture_layers(model)) == 2  # 64-16-10
    assert mixture_layers(model)[0].weight_means.shape == (2, 16, 64)
    # options of another method are refused, and gm-vi's options for other methods
    for argv, msg in ((["--method", "lif", "--components", "3"], "--components does not apply to --method lif"),
                      (["--method", "lif", "--mc-samples", "3"], "--mc-samples does not apply to --method lif"),
                      (["--method", "gm-vi", "--w-states", "3"], "--w-states does not apply to --method gm-vi"),
                      (["--method", "gm-vi", "--amp"], "--amp")):
        assert main(base + argv + ["--out", str(tmp_path / "x")]) == 2
        assert msg in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--method", "gm-vi", "--components", "0"])
    assert "--components must be >= 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="base must be one of"):
        _method(base="relu")


@pytest.mark.slow
def test_gm_vi_joins_neuroq_compare(tmp_path):
    from neuroq.cli import main

    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--methods", "lif,gm-vi", "--epochs", "1", "--limit-train", "100",
                 "--limit-test", "30", "--hidden", "16", "-T", "2", "--components", "2", "--mc-samples", "2",
                 "--samples", "10", "--jobs", "2", "--quiet", "--out", str(out)]) == 0
    s = json.loads((out / "compare.json").read_text())
    assert set(s["methods"]) == {"lif", "gm-vi"}
    assert s["methods"]["gm-vi"]["runs"][0]["options"]["components"] == 2
    assert "components" not in s["methods"]["lif"]["runs"][0]["options"]
    assert s["methods"]["gm-vi"]["T"] == 2 and s["methods"]["gm-vi"]["energy_pj"] > 0


def test_gm_vi_learned_mixing_weights_stay_uniform_while_frozen_then_move():
    from neuroq.training import TrainConfig, Trainer

    data = _toy_task(n=96)
    method = _method(mixing="learned", weight_grad="score", freeze_mixing_epochs=1, init_scale=0.05)
    tr = Trainer(method, data, TrainConfig(epochs=1, batch_size=16, val_fraction=0.0, lr=0.05), label=None)
    tr.fit()
    group = mixture_groups(tr.model)[0]
    assert torch.equal(group.logits.detach(), torch.zeros(3))         # frozen during epoch 0
    tr2 = Trainer(method, data, TrainConfig(epochs=3, batch_size=16, val_fraction=0.0, lr=0.05), model=tr.model,
                  label=None)
    tr2.start_epoch = 1
    for epoch in (1, 2):
        order = tr2.begin_epoch(epoch)
        from neuroq.data import batches
        for xb, yb in batches(tr2.train_set, order, 16):
            tr2.train_batch(xb, yb)
    assert group.logits.requires_grad and float(group.logits.detach().abs().max()) > 1e-3
    assert torch.allclose(group.weights.sum(), torch.tensor(1.0))


@pytest.mark.parametrize("marker, json_path, module", [
    ("gm-vi-fashion-mnist", "examples/results/gm_vi_fashion_mnist.json", "examples.gm_vi_fashion_mnist"),
    ("gm-vi-toy", "visualizations/gm_vi_toy.json", "visualizations.gm_vi_toy"),
    ("gm-vi-ece-study", "examples/results/gm_vi_ece_study.json", "examples.gm_vi_fashion_mnist"),
])
def test_docs_result_blocks_are_generated_from_the_committed_json(marker, json_path, module):
    """docs/gm_vi.md's result tables equal what the renderer writes from the committed JSON
    (regenerate with ``python -m <module> --render <json> --write-doc docs/gm_vi.md``)."""
    import importlib
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    mod, doc = importlib.import_module(module), json.loads((root / json_path).read_text())
    md = mod.render_ece_study(doc, json_path) if marker == "gm-vi-ece-study" else mod.render_markdown(doc)
    text = (root / "docs" / "gm_vi.md").read_text()
    start, end = f"<!-- begin:{marker} -->", f"<!-- end:{marker} -->"
    block = text[text.index(start) + len(start):text.index(end)]
    assert block.strip() == md.strip(), f"docs/gm_vi.md's {marker} block is stale: re-render it from {json_path}"


def test_paired_bootstrap_of_a_metric_gap_matches_the_closed_form():
    """The example's paired bootstrap (the ECE-gap study): for the error rate, the difference of two
    classifiers' error is the mean of the paired differences d_i in {-1, 0, 1}, whose 95 % interval is
    mean +- 1.96 sd(d) / sqrt(n); identical predictions give [0, 0]."""
    from examples.gm_vi_fashion_mnist import paired_bootstrap

    gen = torch.Generator().manual_seed(0)
    n, c = 4000, 5
    y = torch.randint(0, c, (n,), generator=gen)
    a = torch.where(torch.rand(n, generator=gen) < 0.8, y, (y + 1) % c)   # 80 % correct
    b = torch.where(torch.rand(n, generator=gen) < 0.7, y, (y + 2) % c)   # 70 % correct, independent
    pa, pb = torch.nn.functional.one_hot(a, c).double(), torch.nn.functional.one_hot(b, c).double()
    err = lambda p, t: (p.argmax(1) != t).double().mean()
    low, high = paired_bootstrap(err, pa, pb, y, resamples=1000)
    d = (b != y).double() - (a != y).double()
    half = 1.96 * float(d.std()) / n ** 0.5
    assert low == pytest.approx(float(d.mean()) - half, abs=0.004)
    assert high == pytest.approx(float(d.mean()) + half, abs=0.004)
    assert paired_bootstrap(err, pa, pa, y, resamples=50) == [0.0, 0.0]
