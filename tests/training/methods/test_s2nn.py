"""S2NN (Suetake, Ikegawa, Saiin, Sawada, arXiv 2201.10879): the reduced single-step surrogate and the
single-step neuron."""
import math

import pytest
import torch
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

import neuroq
from neuroq.neuron import IFNode, S2NNNode
from neuroq.surrogate import S2NN, if_rate, per_step_derivative, s2nn_gradient

SJ_PER_STEP = {"sigmoid": sj_surrogate.Sigmoid, "atan": sj_surrogate.ATan}


def explicit_loop_grad(u, t_ref, per_step_sg, v_threshold=1.0):
    """dr/du by autograd through a hand-written t_ref-step soft-reset IF loop (reset in the graph)."""
    u = u.detach().clone().requires_grad_(True)
    v = torch.zeros_like(u)
    spikes = []
    for _ in range(t_ref):
        h = v + u
        s = per_step_sg(h - v_threshold)
        spikes.append(s)
        v = h - v_threshold * s
    r = torch.stack(spikes).mean(0)
    (g,) = torch.autograd.grad(r.sum(), u)
    return r.detach(), g


def s2nn_node_grad(u, **kw):
    u = u.detach().clone().requires_grad_(True)
    node = S2NNNode(v_threshold=kw.get("v_threshold", 1.0), surrogate_function=S2NN(**kw))
    out = node(u)
    (g,) = torch.autograd.grad(out.sum(), u)
    return out.detach(), g


U = torch.linspace(-1.5, 2.5, 401, dtype=torch.float64)


@pytest.mark.parametrize("per_step", ["sigmoid", "atan"])
@pytest.mark.parametrize("t_ref", [1, 2, 3, 5, 8, 16])
@pytest.mark.parametrize("alpha", [1.0, 2.0, 4.0, 6.0])
def test_gradient_equals_bptt_through_explicit_if_loop(per_step, t_ref, alpha):
    sg = SJ_PER_STEP[per_step](alpha=alpha)
    r, g_ref = explicit_loop_grad(U, t_ref, sg)
    s, g = s2nn_node_grad(U, t_ref=t_ref, alpha=alpha, per_step=per_step)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    # forward: one Heaviside step; the loop's rate is the multi-step quantity being reduced
    assert torch.equal(s, (U >= 1.0).to(U.dtype))
    torch.testing.assert_close(if_rate(U, t_ref), r)


@pytest.mark.parametrize("t_ref,alpha,vth", [(4, 4.0, 1.0), (7, 3.0, 0.5), (12, 2.0, 2.0)])
def test_gradient_equals_bptt_through_spikingjelly_ifnode(t_ref, alpha, vth):
    """Same check against SpikingJelly's own multi-step IFNode (soft reset, reset not detached)."""
    u = torch.linspace(-1.0, 3.0 * vth, 257, dtype=torch.float64).requires_grad_(True)
    node = sj_neuron.IFNode(v_threshold=vth, v_reset=None, surrogate_function=sj_surrogate.Sigmoid(alpha=alpha),
                            detach_reset=False, step_mode="m")
    rate = node(u.unsqueeze(0).expand(t_ref, -1)).mean(0)
    (g_ref,) = torch.autograd.grad(rate.sum(), u)
    _, g = s2nn_node_grad(u, t_ref=t_ref, alpha=alpha, v_threshold=vth)
    torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-12)


def test_spikingjelly_surrogate_as_per_step_module():
    sg = sj_surrogate.PiecewiseQuadratic(alpha=1.5)
    _, g_ref = explicit_loop_grad(U, 6, sg)
    _, g = s2nn_node_grad(U, t_ref=6, per_step=sg)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_t_ref_one_is_the_per_step_surrogate(alpha):
    x = U - 1.0
    torch.testing.assert_close(s2nn_gradient(U, 1, alpha), per_step_derivative(x, alpha, "sigmoid"))
    sg = torch.sigmoid(alpha * x)
    torch.testing.assert_close(s2nn_gradient(U, 1, alpha), alpha * sg * (1 - sg))


@pytest.mark.parametrize("vth", [1.0, 0.5])
def test_large_t_ref_limit_is_the_box(vth):
    """dr/du -> (1/V_th) 1[0 < u < V_th] as T_ref grows; finite T_ref is visibly not the box."""
    u = torch.linspace(-1.0, 2.0, 601, dtype=torch.float64) * vth
    inside = (u > 0.05 * vth) & (u < 0.95 * vth)
    outside = (u < -0.3 * vth) | (u > 1.3 * vth)
    errs = {}
    for t_ref in (4, 64, 2048):
        g = s2nn_gradient(u, t_ref, 4.0, vth)
        box = inside.to(u.dtype) / vth
        errs[t_ref] = float((g - box)[inside | outside].abs().max()) * vth
    assert errs[2048] < 0.03, errs
    assert errs[4] > 0.1 and errs[64] > errs[2048], errs
    # the rate itself tends to the ramp u / V_th on [0, V_th]
    r = if_rate(u, 2048, vth)
    ramp = (u / vth).clamp(0, 1)
    assert float((r - ramp).abs().max()) < 1e-3


def test_s2nn_gradient_is_its_gradient_method():
    sg = S2NN(t_ref=5, alpha=3.0, v_threshold=0.8)
    x = torch.randn(50, dtype=torch.float64)
    xx = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(sg(xx).sum(), xx)
    torch.testing.assert_close(g, sg.gradient(x))


@pytest.mark.parametrize("factory", [lambda: sj_surrogate.Sigmoid(alpha=4.0), lambda: sj_surrogate.ATan(),
                                     lambda: sj_surrogate.PiecewiseQuadratic(), lambda: S2NN(t_ref=3)])
def test_any_spikingjelly_surrogate_works_in_s2nnnode(factory):
    sg = factory()
    vth = 1.0
    x = torch.randn(6, 4, dtype=torch.float64) * 2
    xx = x.clone().requires_grad_(True)
    out = S2NNNode(v_threshold=vth, surrogate_function=sg)(xx)
    (g,) = torch.autograd.grad(out.sum(), xx)
    assert torch.equal(out.detach(), (x >= vth).to(x.dtype))
    y = (x - vth).requires_grad_(True)
    (g_ref,) = torch.autograd.grad(factory()(y).sum(), y)
    torch.testing.assert_close(g, g_ref)
    assert float(g.abs().sum()) > 0


def test_multi_step_is_stateless_and_equals_single_steps():
    x = torch.randn(5, 3, 7) * 2
    m = S2NNNode(step_mode="m")
    s = S2NNNode(step_mode="s")
    out_m = m(x)
    out_s = torch.stack([s(x[t]) for t in range(5)])
    assert torch.equal(out_m, out_s)
    assert torch.equal(out_m, (x >= 1.0).float())
    # no state: a second call gives the same result, and reset_net is harmless
    assert torch.equal(m(x), out_m)
    neuroq.reset_net(m)
    assert torch.equal(m(x), out_m)
    # contrast: an IF neuron run for several steps does carry state
    assert not torch.equal(IFNode(step_mode="m")(x), out_m)


def test_s2nn_surrogate_in_a_spikingjelly_neuron():
    node = sj_neuron.IFNode(surrogate_function=S2NN(t_ref=8, alpha=2.0), step_mode="s")
    x = (torch.randn(40, dtype=torch.float64) * 2).requires_grad_(True)
    out = node(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(out.detach(), (x.detach() >= 1.0).to(x.dtype))
    torch.testing.assert_close(g, s2nn_gradient(x.detach(), 8, 2.0))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="t_ref"):
        S2NN(t_ref=0)
    with pytest.raises(TypeError, match="t_ref"):
        S2NN(t_ref=2.5)
    with pytest.raises(ValueError, match="alpha"):
        S2NN(alpha=-1.0)
    with pytest.raises(ValueError, match="v_threshold"):
        S2NN(v_threshold=0.0)
    with pytest.raises(ValueError, match="per_step"):
        S2NN(per_step="tanh")
    with pytest.raises(ValueError, match="v_threshold"):
        S2NNNode(v_threshold=-1.0)
    with pytest.raises(ValueError, match="v_threshold"):
        S2NNNode(v_threshold=0.5, surrogate_function=S2NN(v_threshold=1.0))
    with pytest.raises(TypeError, match="surrogate_function"):
        S2NNNode(surrogate_function=3)
    with pytest.raises(ValueError, match="step_mode"):
        S2NNNode(step_mode="x")
    with pytest.raises(ValueError, match=r"\[T, N"):
        S2NNNode(step_mode="m")(torch.ones(3))
    with pytest.raises(NotImplementedError, match="spiking"):
        S2NN(spiking=False)(torch.ones(2))


def test_s2nn_method_trains_single_step_binary_network():
    """--method s2nn: T=1, hidden layers receive only binary spikes, and it learns digits."""
    from neuroq.data import load_dataset
    from neuroq.energy import EnergyMeter
    from neuroq.training import methods as M
    from neuroq.training.loop import train_step

    torch.manual_seed(0)
    ds = load_dataset("digits")
    method = M.get("s2nn", arch="mlp", hidden=(128,), t_ref=4, alpha=4.0, per_step="sigmoid", v_threshold=1.0)
    ctx = M.Context()
    model = method.build_model(ds)
    assert method.T == 1
    assert any(isinstance(m, S2NNNode) for m in model.modules())
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(6):
        perm = torch.randperm(len(ds.x_train))
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            model.train()
            train_step(method, model, ds.x_train[b], ds.y_train[b], opt, ctx)
    model.eval()
    with torch.no_grad(), EnergyMeter(model) as meter:
        logits = method.predict(model, ds.x_test, ctx)
    acc = float((logits.argmax(1) == ds.y_test).float().mean())
    assert acc > 0.85, acc
    rep = meter.report()
    kinds = [d["input"] for d in rep["layers"].values()]
    assert kinds[0] == "real" and all(k == "spikes" for k in kinds[1:])
    assert rep["samples"] == len(ds.x_test)
    assert math.isclose(rep["total"]["macs_per_sample"], 64 * 128)  # only the first layer multiplies


def test_the_method_default_backward_is_the_published_surrogate():
    """``--method s2nn`` trains with the paper's surrogate as SpikingJelly/BrainPy implement it: with x = u - V_th,
    dS/du = alpha sigma(alpha x)(1 - sigma(alpha x)) below the threshold and beta / (x + 1) above (closed form,
    no neuroq code); ``s2nn_surrogate='reduced'`` gives neuroq's T_ref-step reduction."""
    from neuroq.surrogate import s2nn_gradient
    from neuroq.training import methods as M

    u = torch.linspace(-1.5, 3.0, 46, dtype=torch.float64) + 0.013  # off the grid of kinks at multiples of V_th
    for alpha, beta, vth in [(4.0, 1.0, 1.0), (2.0, 0.5, 0.7)]:
        node = M.get("s2nn", alpha=alpha, beta=beta, v_threshold=vth).neuron()()
        x = u.clone().float().requires_grad_(True)
        node(x.unsqueeze(0)).sum().backward()
        z = (u - vth).double()
        sig = torch.sigmoid(alpha * z)
        want = torch.where(z < 0, alpha * sig * (1 - sig), beta / (z + 1))
        torch.testing.assert_close(x.grad.double(), want, rtol=1e-5, atol=1e-6)
    node = M.get("s2nn", s2nn_surrogate="reduced", t_ref=4, alpha=4.0).neuron()()
    x = u.clone().float().requires_grad_(True)
    node(x.unsqueeze(0)).sum().backward()
    torch.testing.assert_close(x.grad.double(), s2nn_gradient(u, 4, 4.0, 1.0).double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="s2nn_surrogate must be one of"):
        M.get("s2nn", s2nn_surrogate="bogus")


def test_runs_stored_before_the_option_existed_read_as_the_reduced_surrogate():
    """A checkpoint's method config written before ``s2nn_surrogate`` existed was trained with the reduced
    surrogate: it is rebuilt as such (so resuming or comparing it does not silently change its training)."""
    from neuroq.training.config import from_dict, to_dict
    from neuroq.training.methods.s2nn import S2NNConfig

    old = to_dict(S2NNConfig())
    old.pop("s2nn_surrogate")
    assert from_dict(S2NNConfig, old).s2nn_surrogate == "reduced"
    assert from_dict(S2NNConfig, to_dict(S2NNConfig())).s2nn_surrogate == "published"
