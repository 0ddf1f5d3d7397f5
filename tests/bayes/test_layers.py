"""Gaussian-mixture layers: forward against torch's own ops with the drawn weights, the sampling
distribution against the mixture's CDF (scipy), pathwise gradients against closed-form expectations,
the resampling policies, shared groups, SpikingJelly containers, and argument checks."""
from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as tF
from scipy import stats
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import layer as sjl

from neuroq.bayes.mixture import inverse_softplus
from neuroq.bayes import (
    GaussianMixtureConv2d, GaussianMixtureLinear, MixtureGroup, bayesify, mixture_groups, mixture_rsample,
)
from neuroq.neuron import LIFNode

DT = torch.float64


# ---------------------------------------------------------------------------------------------
# forward = torch op with the held sample
# ---------------------------------------------------------------------------------------------
def test_linear_forward_uses_the_held_sample_for_every_layout():
    layer = GaussianMixtureLinear(5, 3, K=3, resample="reset", init_scale=0.2)
    x = torch.randn(4, 6, 5)  # [T, N, in]
    p = layer.sample_parameters()
    torch.testing.assert_close(layer(x), tF.linear(x, p["weight"], p["bias"]))
    torch.testing.assert_close(layer(x[0]), tF.linear(x[0], p["weight"], p["bias"]))
    # the sample is one of the components' draws: mu_k + sigma_k * eps
    k = layer.group.component
    eps = (p["weight"] - layer.weight_means[k]) / layer.scales("weight")[k]
    assert eps.abs().max() < 6 and eps.std() > 0.5


@pytest.mark.parametrize("kw", [
    dict(padding=1),
    dict(padding="same", padding_mode="reflect"),
    dict(padding=2, padding_mode="circular", stride=2),
    dict(padding=(1, 0), padding_mode="replicate", dilation=2, groups=2, bias=False),
    dict(padding="valid", stride=(2, 1)),
])
def test_conv_forward_matches_nn_conv2d_with_the_sample(kw):
    conv = GaussianMixtureConv2d(4, 6, 3, K=2, resample="reset", init_scale=0.1, **kw)
    ref = nn.Conv2d(4, 6, 3, **kw)
    p = conv.sample_parameters()
    with torch.no_grad():
        ref.weight.copy_(p["weight"])
        if ref.bias is not None:
            ref.bias.copy_(p["bias"])
    x = torch.randn(3, 2, 4, 9, 8)  # [T, N, C, H, W]
    y = conv(x)
    torch.testing.assert_close(y, ref(x.flatten(0, 1)).reshape(3, 2, *y.shape[2:]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv(x[1]), ref(x[1]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# sampling distribution
# ---------------------------------------------------------------------------------------------
def test_weight_samples_follow_the_mixture():
    torch.manual_seed(3)
    layer = GaussianMixtureLinear(2, 1, bias=False, K=3, mixing="learned", init_scale=0.3)
    with torch.no_grad():
        layer.group.logits.copy_(torch.tensor([0.0, 1.0, -1.0]))
        layer.weight_means.copy_(torch.tensor([[[-2.0, 0.0]], [[0.5, 1.0]], [[3.0, -1.0]]]))
    n = 4000
    draws, comps = [], []
    for _ in range(n):
        layer.group.resample()
        draws.append(layer.sampled("weight").detach()[0, 0].item())
        comps.append(layer.group.component)
    w = layer.group.weights.detach().numpy()
    mu = layer.weight_means.detach()[:, 0, 0].numpy()
    sd = layer.scales("weight").detach()[:, 0, 0].numpy()

    def cdf(x):
        return (w * stats.norm.cdf(np.asarray(x)[..., None], mu, sd)).sum(-1)

    assert stats.kstest(draws, cdf).pvalue > 1e-3
    counts = np.bincount(comps, minlength=3)
    assert stats.chisquare(counts, n * w).pvalue > 1e-3


# ---------------------------------------------------------------------------------------------
# pathwise gradients: unbiased against closed-form expectations
# ---------------------------------------------------------------------------------------------
def _f_and_expectation(D, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, generator=g, dtype=DT)
    b = torch.rand(D, generator=g, dtype=DT)
    c = 0.3 * torch.randn(D, generator=g, dtype=DT)

    def f(z):  # [S, D] -> [S]
        return torch.sin(z @ a) + (b * z * z).sum(-1) + torch.exp(z @ c)

    def expectation(w, mu, sd):  # closed form of E_q f, differentiable
        e = (torch.sin(mu @ a) * torch.exp(-0.5 * (sd ** 2) @ (a ** 2)) + ((mu ** 2 + sd ** 2) * b).sum(1)
             + torch.exp(mu @ c + 0.5 * (sd ** 2) @ (c ** 2)))
        return (w * e).sum()
    return f, expectation


def _zscores(estimates, exact):
    G = torch.stack(estimates)
    return (G.mean(0) - exact) / (G.std(0) / math.sqrt(G.shape[0]))


@pytest.mark.parametrize("D,spread", [(1, 1.0), (4, 1.0), (3, 2.5)])
def test_rsample_gradients_are_unbiased(D, spread):
    torch.manual_seed(D)
    K = 3
    logits = torch.tensor([0.3, -0.5, 0.2], dtype=DT, requires_grad=True)
    mu = (spread * torch.randn(K, D, dtype=DT)).requires_grad_()
    # per-coordinate scale ratios below sqrt(2): the logit estimator's variance is finite there
    # (neuroq.bayes.mixture docstring), so a standard-error test is valid
    rho = inverse_softplus(0.8 + 0.3 * torch.rand(K, D, dtype=DT)).requires_grad_()
    f, expectation = _f_and_expectation(D, seed=D)
    params = [logits, mu, rho]
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(
        expectation(torch.softmax(logits, 0), mu, tF.softplus(rho)), params)])
    est = []
    for _ in range(60):  # 60 independent estimates, each the mean of 200 single-sample gradients
        z = mixture_rsample(logits, mu, tF.softplus(rho), 200)
        est.append(torch.cat([g.flatten() for g in torch.autograd.grad(f(z).mean(), params)]))
    z = _zscores(est, exact)
    # 1 + 2 K D parameters: a two-sided 4.5-sigma band per parameter (family-wise error < 1e-3)
    assert z.abs().max() < 4.5, z
    # and the test has power: dropping the mixing-weight gradient would be caught
    assert (exact[:K].abs() / (torch.stack(est).std(0)[:K] / math.sqrt(60))).max() > 8


def test_shared_group_gradients_are_unbiased_across_blocks():
    # two layers = three blocks (W1, b1, W2) of ONE mixture: the logit flux runs over all of them
    torch.manual_seed(11)
    K = 2
    group = MixtureGroup(K=K, mixing="learned", resample="reset")
    l1 = GaussianMixtureLinear(2, 1, bias=True, group=group, init_scale=0.6).double()
    l2 = GaussianMixtureLinear(1, 1, bias=False, group=group, init_scale=0.6).double()
    group.double()
    with torch.no_grad():
        group.logits.copy_(torch.tensor([0.4, -0.4]))
    f, expectation = _f_and_expectation(4, seed=5)
    params = [group.logits, l1.weight_means, l1.bias_means, l2.weight_means,
              l1.weight_rhos, l1.bias_rhos, l2.weight_rhos]

    def flat_means_scales():
        mu = torch.cat([l1.weight_means.reshape(K, -1), l1.bias_means, l2.weight_means.reshape(K, -1)], 1)
        sd = torch.cat([l1.scales("weight").reshape(K, -1), l1.scales("bias"), l2.scales("weight").reshape(K, -1)], 1)
        return mu, sd

    mu, sd = flat_means_scales()
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(expectation(group.weights, mu, sd), params)])
    est = []
    for _ in range(30):
        acc = None
        for _ in range(50):
            group.resample()
            z = torch.cat([l1.sampled("weight").flatten(), l1.sampled("bias"), l2.sampled("weight").flatten()])
            g = torch.autograd.grad(f(z.unsqueeze(0)).sum(), params)
            v = torch.cat([x.flatten() for x in g])
            acc = v if acc is None else acc + v
        est.append(acc / 50)
    z = _zscores(est, exact)
    assert z.abs().max() < 4.5, z


def test_k1_gradient_is_the_ordinary_reparameterisation_gradient():
    layer = GaussianMixtureLinear(3, 2, K=1, resample="reset", init_scale=0.3)
    x = torch.randn(5, 3)
    layer(x).pow(2).sum().backward()
    eps_w, eps_b = (e[0] for e in layer.group._draw.eps)
    ref = {n: getattr(layer, n).detach().clone().requires_grad_()
           for n in ("weight_means", "weight_rhos", "bias_means", "bias_rhos")}
    W = ref["weight_means"][0] + tF.softplus(ref["weight_rhos"][0]) * eps_w
    b = ref["bias_means"][0] + tF.softplus(ref["bias_rhos"][0]) * eps_b
    tF.linear(x, W, b).pow(2).sum().backward()
    for n, t in ref.items():
        torch.testing.assert_close(getattr(layer, n).grad, t.grad)


# ---------------------------------------------------------------------------------------------
# when a new sample is drawn
# ---------------------------------------------------------------------------------------------
def test_resample_forward_draws_every_call_and_reset_holds_until_reset_net():
    x = torch.randn(2, 3)
    fwd = GaussianMixtureLinear(3, 2, K=2, resample="forward", init_scale=0.5)
    assert not torch.allclose(fwd(x), fwd(x))
    held = GaussianMixtureLinear(3, 2, K=2, resample="reset", init_scale=0.5)
    y0 = held(x)
    torch.testing.assert_close(held(x), y0)
    sjf.reset_net(held)
    assert not torch.allclose(held(x), y0)


def test_parameters_may_change_while_a_sample_is_held():
    # the weights are recomputed from the held noise at every call: mu_k + sigma_k * eps
    layer = GaussianMixtureLinear(3, 2, K=2, resample="reset", init_scale=0.5)
    x = torch.randn(4, 3)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer(x).sum().backward()
    opt.step()
    k = layer.group.component
    eps = layer.group._draw.eps[0][0]
    W = layer.weight_means[k] + layer.scales("weight")[k] * eps
    torch.testing.assert_close(layer.sample_parameters()["weight"], W)
    layer(x).sum().backward()  # a new graph: no "backward through the graph a second time"


def test_shared_group_uses_one_component_for_all_layers():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    bnet = bayesify(net, K=4, init_scale=1e-6, mean_jitter=0.0)
    l1, l2 = bnet[0], bnet[2]
    assert l1.group is l2.group and len(mixture_groups(bnet)) == 1
    with torch.no_grad():  # make the components distinguishable
        for layer in (l1, l2):
            for k in range(4):
                layer.weight_means[k] += 10.0 * k
    for _ in range(20):
        bnet(torch.randn(1, 3))
        k = l1.group.component
        for layer in (l1, l2):
            d = (layer.sampled("weight") - layer.weight_means).abs().flatten(1).max(1).values
            assert int(d.argmin()) == k
    per_layer = bayesify(net, K=4, shared=False)
    assert per_layer[0].group is not per_layer[2].group


# ---------------------------------------------------------------------------------------------
# SpikingJelly containers and step modes (both SpikingJelly versions)
# ---------------------------------------------------------------------------------------------
def test_inside_seq_to_ann_container_and_set_step_mode():
    net = nn.Sequential(sjl.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(64, 5)),
                        LIFNode(step_mode="m"))
    bnet = bayesify(net, K=2, init_scale=0.05)
    sjf.set_step_mode(bnet, "m")  # must not touch the mixture layers (they have no step_mode)
    x = torch.rand(3, 2, 1, 4, 4)
    out = bnet(x)
    assert out.shape == (3, 2, 5)
    sjf.reset_net(bnet)


def test_spikingjelly_step_mode_layers_are_converted():
    net = nn.Sequential(sjl.Conv2d(1, 2, 3, padding=1, step_mode="m"), sjl.Flatten(step_mode="m"),
                        sjl.Linear(32, 3, step_mode="m"))
    bnet = bayesify(net, K=2, resample="reset")
    assert isinstance(bnet[0], GaussianMixtureConv2d) and isinstance(bnet[2], GaussianMixtureLinear)
    x = torch.rand(4, 2, 1, 4, 4)
    W = bnet[0].sample_parameters()
    ref = tF.conv2d(x.flatten(0, 1), W["weight"], W["bias"], padding=1).reshape(4, 2, 2, 4, 4)
    torch.testing.assert_close(bnet[0](x), ref, rtol=1e-5, atol=1e-6)
    assert bnet(x).shape == (4, 2, 3)


# ---------------------------------------------------------------------------------------------
# copies, state dicts, dtypes
# ---------------------------------------------------------------------------------------------
def test_deepcopy_pickle_and_state_dict_keep_the_shared_group():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    bnet = bayesify(net, K=3, mixing="learned", init_scale=0.1)
    for other in (copy.deepcopy(bnet), _roundtrip(bnet)):
        assert other[0].group is other[2].group and other[0].group is not bnet[0].group
        assert [layer for layer, _ in other[0].group.blocks()] == [other[0], other[0], other[2], other[2]]
        x = torch.randn(5, 3)
        torch.manual_seed(1)
        a = bnet(x)
        torch.manual_seed(1)
        torch.testing.assert_close(other(x), a)
    fresh = bayesify(net, K=3, mixing="learned")
    fresh.load_state_dict(bnet.state_dict())
    x = torch.randn(5, 3)
    torch.manual_seed(2)
    a = bnet(x)
    torch.manual_seed(2)
    torch.testing.assert_close(fresh(x), a)


def _roundtrip(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_double_precision():
    layer = GaussianMixtureLinear(3, 2, K=2, mixing="learned").double()
    y = layer(torch.randn(4, 3, dtype=DT))
    assert y.dtype == DT
    y.sum().backward()
    assert layer.group.logits.grad is not None


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="K must be >= 1"):
        GaussianMixtureLinear(2, 2, K=0)
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        GaussianMixtureLinear(2, 2, init_scale=0.0)
    with pytest.raises(ValueError, match="mixing must be one of"):
        GaussianMixtureLinear(2, 2, mixing="free")
    with pytest.raises(ValueError, match="resample must be one of"):
        GaussianMixtureLinear(2, 2, resample="never")
    with pytest.raises(ValueError, match=r"expects input \[\.\.\., 2\]"):
        GaussianMixtureLinear(2, 2)(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"\[T, N, 1, H, W\]"):
        GaussianMixtureConv2d(1, 2, 3)(torch.randn(1, 8, 8))
    with pytest.raises(ValueError, match="differs from the group"):
        GaussianMixtureLinear(2, 2, K=3, group=MixtureGroup(K=2))
    with pytest.raises(TypeError, match="prior must have log_prob"):
        GaussianMixtureLinear(2, 2, prior="gauss")
    with pytest.raises(ValueError, match="divisible by groups"):
        GaussianMixtureConv2d(3, 4, 3, groups=2)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        bayesify("net")
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        bayesify(nn.Sequential(nn.ReLU()))


def test_bayesify_leaves_weight_transforming_subclasses_alone():
    class WSLinear(nn.Linear):
        def forward(self, x):
            w = (self.weight - self.weight.mean(1, keepdim=True))
            return tF.linear(x, w, self.bias)

    net = nn.Sequential(WSLinear(3, 3), nn.Linear(3, 2))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        bnet = bayesify(net, K=2)
    assert isinstance(bnet[0], WSLinear) and isinstance(bnet[1], GaussianMixtureLinear)
    assert any("WSLinear" in str(r.message) for r in rec)


# ---------------------------------------------------------------------------------------------
# forcing components, systematic allocation, and the way back to a deterministic network
# ---------------------------------------------------------------------------------------------
def test_use_component_forces_every_draw_and_restores_free_draws():
    from neuroq.bayes import use_component

    torch.manual_seed(0)
    # components 50 posterior stds apart: the component a weight sample came from is unambiguous
    net = bayesify(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), K=3, init_scale=0.1, mean_jitter=50)
    g = net[0].group
    x = torch.randn(2, 3)
    for k in range(3):
        with use_component(net, k):
            for _ in range(5):
                net(x)
                assert g.component == k
                with torch.no_grad():
                    w = net[0].sampled("weight")
                    nearest = int(((w.unsqueeze(0) - net[0].weight_means) ** 2).flatten(1).sum(1).argmin())
                assert nearest == k
    seen = set()
    for _ in range(60):
        net(x)
        seen.add(g.component)
    assert seen == {0, 1, 2} and g.fixed_component is None
    with pytest.raises(ValueError, match="component"):
        with use_component(net, 3):
            pass


def test_systematic_components_allocate_floor_or_ceil_and_are_unbiased():
    from neuroq.bayes import systematic_components

    g = torch.Generator().manual_seed(0)
    w = torch.tensor([0.55, 0.05, 0.3, 0.1], dtype=DT)
    n = 7
    counts = []
    for _ in range(4000):
        ks = systematic_components(w, n, generator=g)
        c = torch.bincount(ks, minlength=4).double()
        assert bool(((c >= torch.floor(n * w)) & (c <= torch.ceil(n * w))).all()), c
        assert torch.equal(ks, ks.sort().values)
        counts.append(c)
    C = torch.stack(counts)
    se = C.std(0) / math.sqrt(C.shape[0])
    assert float(((C.mean(0) - n * w).abs() / se.clamp_min(1e-12)).max()) < 4.5
    assert systematic_components(torch.full((3,), 1 / 3), 6).tolist() == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("spiking", [False, True])
def test_component_network_is_bayesify_inverted(spiking):
    from neuroq.bayes import component_network, load_component

    torch.manual_seed(1)
    if spiking:  # SpikingJelly's step-mode layers come back as themselves, in their step mode
        net = nn.Sequential(sjl.Conv2d(1, 3, 3, padding=1, step_mode="m"), LIFNode(step_mode="m"),
                            sjl.Flatten(step_mode="m"), sjl.Linear(3 * 36, 4, step_mode="m"))
        x = torch.rand(3, 2, 1, 6, 6) * 4
    else:
        net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 4))
        x = torch.rand(2, 1, 6, 6)
    bnet = bayesify(net, K=3, init_scale=0.2)
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.normal_()
    load_component(bnet, 2, other)
    det = component_network(bnet, component=2)
    assert [type(m) for m in det.modules()] == [type(m) for m in net.modules()]
    if spiking:
        assert det[0].step_mode == "m" and det[3].step_mode == "m"
    assert not mixture_groups(det) and all(not m._forward_pre_hooks for m in det.modules())
    with torch.no_grad():
        torch.testing.assert_close(det(x), other(x))
    sjf.reset_net(det)
    sjf.reset_net(other)
    # the default is the heaviest component (the first for uniform weights): here component 0's means
    first = component_network(bnet)
    torch.testing.assert_close(first[-1].weight, bnet[-1].weight_means[0])
    with pytest.raises(ValueError, match="Linear/Conv2d layers"):
        load_component(bnet, 0, nn.Sequential(nn.Linear(2, 2)))
