"""neuroq's IF/LIF equal SpikingJelly's own (whichever version is installed), spike for spike."""
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import neuron as sjn
from spikingjelly.activation_based import surrogate

import neuroq
from neuroq import _sj
from neuroq.neuron import BaseNode, IFNode, LIFNode

RESETS = [0.0, None, -0.4]


def _pair(kind, **kw):
    if kind == "lif":
        return LIFNode(**kw), sjn.LIFNode(**kw)
    kw.pop("tau", None)
    kw.pop("decay_input", None)
    return IFNode(**kw), sjn.IFNode(**kw)


@pytest.mark.parametrize("kind", ["lif", "if"])
@pytest.mark.parametrize("v_reset", RESETS)
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_multi_step_matches_spikingjelly(kind, v_reset, decay_input, detach_reset, dtype):
    kw = dict(tau=2.5, decay_input=decay_input, v_reset=v_reset, detach_reset=detach_reset,
              step_mode="m", surrogate_function=surrogate.ATan(alpha=2.0))
    ours, ref = _pair(kind, **kw)
    x = (torch.randn(9, 4, 7, 5, dtype=dtype) * 1.3 + 0.3).requires_grad_()
    s1, s2 = ours(x), ref(x)
    assert torch.equal(s1, s2)
    assert s1.sum() > 0 and s1.sum() < s1.numel()  # the test exercises both outcomes
    w = torch.randn_like(s1)
    g1, = torch.autograd.grad((s1 * w).sum() + ours.v.sum(), x)
    g2, = torch.autograd.grad((s2 * w).sum() + ref.v.sum(), x)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(g1, g2, atol=tol, rtol=0)
    torch.testing.assert_close(ours.v, ref.v, atol=tol, rtol=0)


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_single_step_equals_multi_step_and_reset(kind):
    ms, _ = _pair(kind, tau=2.0, step_mode="m", v_reset=None)
    ss, ref = _pair(kind, tau=2.0, step_mode="s", v_reset=None)
    x = torch.randn(6, 3, 8, dtype=torch.float64) * 2
    out_m = ms(x)
    out_s = torch.stack([ss(x[t]) for t in range(6)])
    out_r = torch.stack([ref(x[t]) for t in range(6)])
    assert torch.equal(out_m, out_s) and torch.equal(out_s, out_r)
    net = nn.Sequential(nn.Identity(), ss)
    sjf.reset_net(net)
    assert ss.v == 0.0  # reset restores the scalar initial value
    neuroq.reset_net(net)


def test_store_v_seq_and_shape_mismatch_error():
    n = LIFNode(step_mode="m", store_v_seq=True)
    x = torch.rand(5, 2, 3) * 3
    s = n(x)
    assert n.v_seq.shape == x.shape
    torch.testing.assert_close(n.v_seq[-1], n.v)
    # v after reset is below threshold wherever a spike happened (hard reset to 0)
    assert torch.all(n.v_seq[s.bool()] == 0)
    with pytest.raises(RuntimeError, match="reset_net"):
        n(torch.rand(5, 4, 3))


@pytest.mark.parametrize("bad,match", [
    (dict(tau=1.0), "tau must be > 1"),
    (dict(tau="2"), "tau must be a real number"),
    (dict(step_mode="x"), "step_mode must be one of"),
    (dict(backend="jax"), "backend must be one of"),
    (dict(surrogate_function=3), "surrogate_function must be callable"),
    (dict(v_threshold=None), "v_threshold must be a real number"),
    (dict(detach_reset=1), "detach_reset must be True or False"),
])
def test_constructor_errors_name_the_argument(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LIFNode(**bad)


def test_wrong_rank_for_step_mode():
    with pytest.raises(ValueError, match=r"step_mode='m' expects input of shape \[T, N, \.\.\.\]"):
        LIFNode(step_mode="m")(torch.rand(4))
    with pytest.raises(ValueError, match=r"step_mode='s' expects"):
        IFNode(step_mode="s")(torch.tensor(1.0))


def test_backend_dispatch_on_cpu():
    x = torch.rand(3, 2, 4)
    assert torch.equal(LIFNode(step_mode="m", backend="auto")(x), LIFNode(step_mode="m", backend="torch")(x))
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        LIFNode(step_mode="m", backend="cupy")(x)


def test_cupy_missing_message(monkeypatch):
    from neuroq.ops import dispatch as backend

    backend.cupy_status.cache_clear()
    monkeypatch.setitem(__import__("sys").modules, "cupy", None)  # import fails
    ok, why = backend.cupy_status()
    assert not ok and "pip install neuroq[cuda12]" in why
    backend.cupy_status.cache_clear()


class AdaptiveLIF(BaseNode):
    """A user neuron stating only its charge (plus a threshold that adapts after spikes)."""

    def __init__(self, tau=2.0, **kw):
        super().__init__(**kw)
        self.tau = tau

    def neuronal_charge(self, x, v):
        return v + (x - v) / self.tau


def test_custom_neuron_gets_modes_reset_and_gradients():
    n = AdaptiveLIF(step_mode="m", v_reset=None)
    ref = sjn.LIFNode(tau=2.0, v_reset=None, step_mode="m")
    x = (torch.randn(7, 3, 5, dtype=torch.float64) * 2).requires_grad_()
    s = n(x)
    assert torch.equal(s, ref(x))
    s.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    net = nn.Sequential(nn.Linear(5, 5), n)
    _sj.reset_net(net)
    assert n.v == 0.0


def test_clone_net_after_a_training_step_copies_the_state_detached():
    """copy.deepcopy refuses a net whose neurons hold graph state; clone_net copies it (detached)
    and leaves the original as it was."""
    import copy

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), LIFNode(step_mode="s"))
    net(torch.rand(2, 3) * 3)
    v = net[1].v
    assert v.grad_fn is not None
    with pytest.raises(RuntimeError, match="deepcopy"):
        copy.deepcopy(net)
    twin = neuroq.clone_net(net)
    assert net[1].v is v and v.grad_fn is not None                       # untouched
    assert twin[1].v.grad_fn is None and torch.equal(twin[1].v, v.detach())
    x = torch.rand(2, 3)
    torch.testing.assert_close(twin(x), net(x))                          # the copy continues from the same state
    assert twin[0].weight is not net[0].weight
