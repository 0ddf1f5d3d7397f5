"""Parameter records, attribute access, subclass overrides and bad input of neuroq's neurons.

* records (IF/LIF/SAF/S2NN): frozen, validated in __post_init__ (each error names the field; NaN,
  inf, tau <= 1 and v_threshold <= v_reset refused), one help text per field;
* modules hold a record: ``node.tau`` etc. read and write it (validated); from_params;
* issue 15.3: a subclass overriding neuronal_charge / neuronal_fire / step is honoured in
  multi-step mode on every backend (the fused paths run only the class's own equations: a kernel
  generated from its own step, or the loop after one notice);
* issue 15.9: T = 0 is a clear error (was an IndexError); NaN thresholds, v_threshold <= v_reset and
  s2nn_gradient(t_ref=0) are refused (were accepted / NaN);
* the docstring examples of the neurons, records and references run as written (doctest).
"""
from __future__ import annotations

import dataclasses
import doctest
import importlib
import math
import warnings

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import neuron as sjn
from spikingjelly.activation_based import surrogate

from neuroq import _sj
from neuroq.functional import IFParameters, LIFParameters, S2NNParameters, SAFParameters, field_help
from neuroq.neuron import BaseNode, IFNode, LIFNode, OnlineLIFNode, S2NNNode, SAFNode
from neuroq.surrogate import S2NN, s2nn_gradient

RECORDS = (IFParameters, LIFParameters, SAFParameters, S2NNParameters)
BACKENDS = ["torch", "auto", "cpu"]


# ---------------------------------------------------------------------------------------------
# records
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_records_are_frozen_documented_and_normalised(cls):
    p = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.v_threshold = 2.0
    helps = field_help(cls)
    assert helps and all(h and isinstance(h, str) for _, h in helps.values())
    assert dataclasses.replace(p) == p and hash(p) == hash(cls())  # usable as a cache key
    with pytest.raises(TypeError):
        cls(1.0)  # keyword-only: no silent positional mix-up


@pytest.mark.parametrize("cls,bad,match", [
    (IFParameters, dict(v_threshold=float("nan")), "v_threshold must be a finite real number"),
    (IFParameters, dict(v_threshold=float("inf")), "v_threshold must be a finite real number"),
    (IFParameters, dict(v_reset=float("nan")), "v_reset must be a finite real number"),
    (IFParameters, dict(v_threshold=0.0, v_reset=0.0), r"v_threshold must be > v_reset.*v_reset=None"),
    (IFParameters, dict(v_threshold=-1.0, v_reset=0.0), "v_threshold must be > v_reset"),
    (IFParameters, dict(v_threshold="1"), "v_threshold must be a real number"),
    (IFParameters, dict(detach_reset=1), "detach_reset must be True or False"),
    (LIFParameters, dict(tau=1.0), "tau must be > 1"),
    (LIFParameters, dict(tau=float("nan")), "tau must be a finite real number"),
    (LIFParameters, dict(tau=float("inf")), "tau must be a finite real number"),
    (LIFParameters, dict(decay_input="yes"), "decay_input must be True or False"),
    (SAFParameters, dict(v_threshold=0.0), "v_threshold must be > 0"),
    (SAFParameters, dict(tau=0.5), "tau must be > 1"),
    (SAFParameters, dict(detach_state=None), "detach_state must be True or False"),
    (S2NNParameters, dict(t_ref=0), "t_ref must be >= 1"),
    (S2NNParameters, dict(t_ref=2.5), "t_ref must be an integer"),
    (S2NNParameters, dict(alpha=float("nan")), "alpha must be a finite real number"),
    (S2NNParameters, dict(per_step="tanh"), "per_step must be one of"),
])
def test_record_errors_name_the_field(cls, bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        cls(**bad)


def test_soft_reset_allows_any_finite_threshold_and_values_are_floats():
    p = IFParameters(v_threshold=-0.5, v_reset=None)
    assert p.v_threshold == -0.5 and p.v_reset is None
    q = LIFParameters(tau=3, v_threshold=2, v_reset=-1)
    assert type(q.tau) is float and type(q.v_threshold) is float and type(q.v_reset) is float
    assert SAFParameters().v_reset is None and SAFParameters().detach_reset is False


# ---------------------------------------------------------------------------------------------
# modules hold their record
# ---------------------------------------------------------------------------------------------
def test_module_attributes_read_and_write_the_record():
    node = LIFNode(tau=2.0, v_reset=None, step_mode="m")
    assert node.params == LIFParameters(tau=2.0, v_reset=None)
    node.tau = 3.0
    assert node.params.tau == 3.0 and node.tau == 3.0
    node.v_threshold = 0.5
    assert node.params.v_threshold == 0.5
    for name, value, match in (("tau", 1.0, "tau must be > 1"), ("v_threshold", float("nan"), "finite"),
                               ("detach_reset", 2, "True or False")):
        with pytest.raises((ValueError, TypeError), match=match):
            setattr(node, name, value)
    assert node.params == LIFParameters(tau=3.0, v_reset=None, v_threshold=0.5)  # unchanged by the errors
    with pytest.raises(TypeError, match="params must be a LIFParameters"):
        node.params = IFParameters()
    node.params = LIFParameters(tau=4.0, v_reset=-0.2)
    assert node.tau == 4.0 and node.v_reset == -0.2
    _sj.reset_net(nn.Sequential(node))
    assert node.v == -0.2  # the reset value follows v_reset
    with pytest.raises(AttributeError, match="SAFNode.v_reset is fixed"):
        SAFNode().v_reset = 0.0
    saf = SAFNode()
    saf.sr_box, saf.detach_state = True, False
    assert saf.params.sr_box and not saf.params.detach_state
    n2 = LIFNode.from_params(LIFParameters(tau=5.0), step_mode="m", backend="torch")
    assert n2.tau == 5.0 and n2.step_mode == "m" and n2.backend == "torch"
    assert IFNode.from_params(IFParameters(v_threshold=2.0)).v_threshold == 2.0
    assert "tau=3.0" in repr(LIFNode(tau=3.0))


def test_record_drives_the_same_neuron_as_spikingjelly():
    p = LIFParameters(tau=2.5, decay_input=False, v_threshold=0.8, v_reset=-0.1, detach_reset=True)
    ours = LIFNode.from_params(p, step_mode="m", surrogate_function=surrogate.ATan(alpha=2.0))
    ref = sjn.LIFNode(tau=2.5, decay_input=False, v_threshold=0.8, v_reset=-0.1, detach_reset=True,
                      step_mode="m", surrogate_function=surrogate.ATan(alpha=2.0))
    x = torch.randn(9, 30) * 1.3 + 0.3
    assert torch.equal(ours(x), ref(x))


# ---------------------------------------------------------------------------------------------
# issue 15.3: overrides are honoured in multi-step mode
# ---------------------------------------------------------------------------------------------
class SilentLIF(LIFNode):
    """Charge that never reaches the threshold: no spike may ever come out."""

    def neuronal_charge(self, x, v):
        return torch.zeros_like(x) + 0.5 * self.v_threshold


class NeverFire(LIFNode):
    def neuronal_fire(self, h):
        return self.surrogate_function(h - 100.0)


class DoubleStepIF(IFNode):
    def step(self, x, v):
        return super().step(2 * x, v)


@pytest.mark.parametrize("backend", BACKENDS)
def test_overridden_charge_and_fire_are_honoured_in_multi_step(backend):
    x = torch.ones(8, 3) * 2.0  # a plain LIF fires 24 times here
    assert LIFNode(step_mode="m", backend="torch")(x).sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backend='cpu' says once that it runs the loop
        for cls in (SilentLIF, NeverFire):
            out_m = cls(step_mode="m", backend=backend)(x)
            single = cls(step_mode="s", backend=backend)
            out_s = torch.stack([single(xt) for xt in x])
            assert out_m.sum() == 0 and torch.equal(out_m, out_s), cls.__name__
        d = DoubleStepIF(step_mode="m", backend=backend)(torch.full((4, 2), 0.3))
        ref = IFNode(step_mode="m", backend="torch")(torch.full((4, 2), 0.6))
        assert torch.equal(d, ref)


class CumsumLIF(LIFNode):
    """An override the generated kernels cannot compile (cumsum is not elementwise)."""

    def neuronal_charge(self, x, v):
        return v + torch.cumsum(x, dim=-1)


def test_explicit_kernel_backend_says_once_that_an_override_runs_the_loop(monkeypatch):
    """An override gets a kernel generated from its own step (neuroq.ops.generated, no notice); one the
    generator cannot compile runs the loop over its own step after one notice, whatever the backend."""
    import neuroq.neuron.base as base

    monkeypatch.setattr(base, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="CumsumLIF.step uses torch.cumsum.*overrides neuronal_charge.*own step"):
        CumsumLIF(step_mode="m", backend="cpu")(torch.ones(3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CumsumLIF(step_mode="m", backend="cpu")(torch.ones(3, 2))
        CumsumLIF(step_mode="m", backend="auto")(torch.ones(3, 2))  # said once per class and reason
        SilentLIF(step_mode="m", backend="cpu")(torch.ones(3, 2))  # the generated kernel: nothing to say
        SilentLIF(step_mode="m", backend="auto")(torch.ones(3, 2))
    assert LIFNode().kernel_allowed() and not SilentLIF().kernel_allowed()


# ---------------------------------------------------------------------------------------------
# issue 15.9: bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: LIFNode(step_mode="m"), lambda: IFNode(step_mode="m"),
                                  lambda: SAFNode(step_mode="m"), lambda: LIFNode(step_mode="m", backend="torch")],
                         ids=["lif", "if", "saf", "lif-torch"])
def test_zero_time_steps_is_a_clear_error(make):
    with pytest.raises(ValueError, match=r"at least one time step \(T >= 1\), got shape \(0, 4\)"):
        make()(torch.zeros(0, 4))


def test_nan_threshold_and_threshold_not_above_reset_are_refused():
    with pytest.raises(ValueError, match="v_threshold"):
        LIFNode(v_threshold=float("nan"))
    with pytest.raises(ValueError, match="v_threshold"):
        IFNode(v_threshold=0.0, v_reset=0.0)
    with pytest.raises(ValueError, match="v_threshold"):
        LIFNode(v_threshold=-1.0)
    with pytest.raises(ValueError, match="tau"):
        LIFNode(tau=float("nan"))
    with pytest.raises(ValueError, match="v_threshold"):
        S2NNNode(v_threshold=float("nan"))
    with pytest.raises(ValueError, match="v_threshold"):
        SAFNode(v_threshold=float("inf"))


def test_s2nn_gradient_refuses_t_ref_zero():
    u = torch.linspace(-1, 2, 7)
    with pytest.raises(ValueError, match="t_ref must be >= 1"):
        s2nn_gradient(u, 0, 4.0)
    with pytest.raises(ValueError, match="v_threshold"):
        s2nn_gradient(u, 2, 4.0, v_threshold=0.0)
    with pytest.raises(ValueError, match="alpha"):
        s2nn_gradient(u, 2, float("nan"))
    assert torch.isfinite(s2nn_gradient(u, 1, 4.0)).all()


def test_s2nn_surrogate_holds_its_record():
    sg = S2NN(t_ref=6, alpha=2.0, v_threshold=0.5, per_step="atan")
    assert sg.params == S2NNParameters(t_ref=6, alpha=2.0, v_threshold=0.5, per_step="atan")


def test_online_lif_trace_and_detached_membrane():
    """OTTT's neuron: the trace follows a = lambda a + s (no gradient); in training the membrane of
    the previous step carries no gradient; equals a hand loop of the equations."""
    node = OnlineLIFNode(tau=2.0).train()
    xs = [torch.tensor([0.8, 1.2, 0.3]) for _ in range(4)]
    v = torch.zeros(3)
    a = None
    for x in xs:
        xx = x.clone().requires_grad_(True)
        s = node(xx)
        h = v * 0.5 + x
        s_ref = (h >= 1.0).float()
        v = h - s_ref
        a = s_ref if a is None else 0.5 * a + s_ref
        assert torch.equal(s, s_ref) and torch.equal(node.v, v) and torch.equal(node.trace, a)
        assert not node.trace.requires_grad
        g, = torch.autograd.grad(node.v.sum(), xx)  # d v[t] / d x[t] only: v[t-1] is detached
        assert torch.equal(g, torch.ones(3))


# ---------------------------------------------------------------------------------------------
# docstring examples run as written
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["neuroq.neuron.base", "neuroq.neuron.lif", "neuroq.neuron.saf",
                                    "neuroq.neuron.ottt", "neuroq.neuron.s2nn", "neuroq.functional.neuron",
                                    "neuroq.functional.s2nn", "neuroq.surrogate", "neuroq.ops.dispatch"])
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert res.failed == 0
    assert res.attempted > 0 or module == "neuroq.neuron.base"


def test_every_public_neuron_documents_example_and_shapes():
    for cls in (BaseNode, IFNode, LIFNode, SAFNode, OnlineLIFNode, S2NNNode):
        doc = cls.__doc__
        assert "Example" in doc and "Inputs" in doc and "Outputs" in doc and ">>>" in doc, cls.__name__
    assert math.isfinite(LIFParameters().tau)
