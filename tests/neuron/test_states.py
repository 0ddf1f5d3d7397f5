"""Neurons with several states, through the pure step (``BaseNode.states``).

* a class declares its states (``v`` first; a tuple, or a dict of initial values); mistakes are
  refused when the class is defined, naming the class;
* the base class registers them: initial values, one value per neuron, ``reset_net``, the
  stored-state check (naming the state);
* ``step(x, v, a) -> (spike, v, a)`` is all a neuron writes: single- and multi-step modes agree,
  gradients flow through every state, ``store_v_seq`` / ``store_state_seqs`` keep the sequences;
* ``viz.record`` records the membrane and the further states, the membrane plot draws it, and the
  energy meter counts every state's traffic.
"""
from __future__ import annotations

import pickle

import pytest
import torch

import neuroq
from neuroq import viz
from neuroq.energy import EnergyMeter
from neuroq.neuron import BaseNode


class AdaptiveLIF(BaseNode):
    states = ("v", "a")

    def __init__(self, tau=2.0, beta=0.5, rho=0.8, **kw):
        super().__init__(**kw)
        self.tau, self.beta, self.rho = tau, beta, rho

    def step(self, x, v, a):
        h = v + (x - v) / self.tau
        s = self.surrogate_function(h - self.v_threshold - self.beta * a)
        return s, self.neuronal_reset(h, s), self.rho * a + s


class Izhikevich(BaseNode):
    """Izhikevich's model (2003) per 1 ms step, v in mV scaled by 1/100; u starts at b * v0."""

    states = {"v": -0.65, "u": -0.13}

    def __init__(self, a=0.02, b=0.2, c=-0.65, d=0.08, **kw):
        super().__init__(v_threshold=0.3, v_reset=c, **kw)
        self.a, self.b, self.d = a, b, d

    def step(self, x, v, u):
        h = v + (0.04 * 100.0 * v * v + 5.0 * v + 1.4 - u + x)
        s = self.neuronal_fire(h)
        return s, self.neuronal_reset(h, s), u + self.a * (self.b * v - u) + self.d * s


def _loop(node, x):
    """The step run by hand: (spikes, states after every step)."""
    states = tuple(torch.full_like(x[0], float(init if init is not None else node._v_init()))
                   for _, init in node.state_spec())
    spikes, seqs = [], []
    for xt in x:
        s, *states = node.step(xt, *states)
        spikes.append(s)
        seqs.append(states)
    return torch.stack(spikes), [torch.stack([q[i] for q in seqs]) for i in range(len(states))]


def test_declaring_states_is_checked_when_the_class_is_defined():
    with pytest.raises(TypeError, match=r"NoStep declares the states \(v, a\): write its pure step\(x, v, a\)"):
        class NoStep(BaseNode):
            states = ("v", "a")
    with pytest.raises(TypeError, match=r"VLast.states must name each state once, the membrane 'v' first"):
        class VLast(BaseNode):
            states = ("a", "v")

            def step(self, x, a, v):
                return x, a, v
    with pytest.raises(TypeError, match="Twice.states must name each state once"):
        class Twice(BaseNode):
            states = ("v", "a", "a")

            def step(self, x, v, a, b):
                return x, v, a, b
    with pytest.raises(TypeError, match=r"BadInit.states: the initial value of 'a' must be a number"):
        class BadInit(BaseNode):
            states = {"v": None, "a": "zero"}

            def step(self, x, v, a):
                return x, v, a
    with pytest.raises(TypeError, match=r"Odd.states must be a tuple of state names"):
        class Odd(BaseNode):
            states = "va"
    assert BaseNode.state_names() == ("v",) and AdaptiveLIF.state_names() == ("v", "a")
    assert Izhikevich.state_spec() == (("v", -0.65), ("u", -0.13))


def test_states_are_registered_with_their_initial_values_and_reset():
    n = Izhikevich(step_mode="m")
    assert n.v == -0.65 and n.u == -0.13
    n(torch.rand(5, 2, 3))
    assert n.v.shape == n.u.shape == (2, 3)
    neuroq.reset_net(n)
    assert n.v == -0.65 and n.u == -0.13
    a = AdaptiveLIF(step_mode="m", v_reset=-0.2)
    assert a.v == -0.2 and a.a == 0.0  # v: v_reset by default, the others 0
    a(torch.rand(3, 4))
    with pytest.raises(RuntimeError, match=r"AdaptiveLIF: stored state v has shape \(4,\) but this step needs shape \(5,\)"):
        a(torch.rand(3, 5))
    a.v = torch.zeros(5)  # a state from another batch is refused by its name
    with pytest.raises(RuntimeError, match=r"stored state a has shape \(4,\) but this step needs shape \(5,\)"):
        a(torch.rand(3, 5))


@pytest.mark.parametrize("cls", [AdaptiveLIF, Izhikevich])
def test_single_and_multi_step_run_the_pure_step(cls):
    x = torch.rand(12, 3, 7) * 3.0
    m = cls(step_mode="m", backend="torch")
    s = cls(step_mode="s", backend="torch")
    out_m = m(x)
    out_s = torch.stack([s(xt) for xt in x])
    ref, seqs = _loop(cls(), x)
    assert torch.equal(out_m, ref) and torch.equal(out_s, ref) and 0 < ref.sum() < ref.numel()
    for i, name in enumerate(cls.state_names()):
        assert torch.equal(getattr(m, name), seqs[i][-1]) and torch.equal(getattr(s, name), seqs[i][-1])


def test_gradients_flow_through_every_state():
    x = (torch.rand(10, 4, 5) * 3.0).requires_grad_(True)
    n = AdaptiveLIF(step_mode="m", backend="torch")
    out = n(x)
    (out.sum() + n.a.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the adaptation's gradient reaches earlier inputs: dropping a's path changes the gradient
    g_full = x.grad.clone()
    x.grad = None
    n.reset()
    n.beta = 0.0
    n(x).sum().backward()
    assert not torch.allclose(g_full, x.grad)


def test_store_v_seq_and_store_state_seqs():
    x = torch.rand(6, 2, 3) * 3
    n = AdaptiveLIF(step_mode="m", store_v_seq=True)
    n(x)
    assert n.v_seq.shape == (6, 2, 3) and n.a_seq is None
    n = AdaptiveLIF(step_mode="m", store_state_seqs=("a",))
    n(x)
    assert n.v_seq is None and n.a_seq.shape == (6, 2, 3)
    n = AdaptiveLIF(step_mode="m", store_state_seqs=True)
    n(x)
    _, seqs = _loop(AdaptiveLIF(), x)
    assert torch.equal(n.v_seq, seqs[0]) and torch.equal(n.a_seq, seqs[1])
    n.reset()
    assert n.v_seq is None and n.a_seq is None
    with pytest.raises(ValueError, match=r"store_state_seqs must be True, False or a tuple of state names"):
        n.store_state_seqs = ("b",)


def test_a_step_returning_the_wrong_number_of_values_is_a_clear_error():
    class Short(BaseNode):
        states = ("v", "a")

        def step(self, x, v, a):
            return x, v

    with pytest.raises(TypeError, match=r"Short.step must return \(spike, v, a\), got tuple of length 2"):
        Short(step_mode="m", backend="torch")(torch.rand(2, 3))


def test_record_plot_and_meter_a_two_state_neuron():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), AdaptiveLIF(step_mode="m"))
    x = torch.rand(9, 2, 3) * 3
    rec = viz.record(net, x, v=True)
    assert list(rec) == ["1"] and rec.v["1"].shape == rec.states["1"]["a"].shape == (9, 2, 8)
    assert net[1].store_state_seqs is False and net[1].a_seq is None  # the recorder restores the flags
    with torch.no_grad():
        spikes, seqs = _loop(net[1], net[0](x))
    assert torch.equal(rec["1"], spikes) and torch.equal(rec.states["1"]["a"], seqs[1])
    assert list(pickle.loads(pickle.dumps(rec)).states["1"]) == ["a"] and "a" in rec.copy().states["1"]
    ax = viz.membrane_trace(rec, layer="1")
    assert ax.lines
    meters = {}
    for name, neuron in (("two", AdaptiveLIF(step_mode="m")), ("one", neuroq.neuron.LIFNode(step_mode="m"))):
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), neuron)
        m = EnergyMeter(model, energy="simple")
        with m:
            model(x)
        meters[name] = m.report()["energy_models"]["simple"]["layers"]["1"]["components_pj"]["state_memory"]
    assert meters["two"] == pytest.approx(2 * meters["one"])  # v and a are read and written every step
