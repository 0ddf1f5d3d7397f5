"""Who owns what in a Bayesian network: the layers own their means and scales, one MixtureGroup owns the
shared mixing logits and draw.  The state dict holds the group once; deep copies, pickles and state-dict
round trips give networks that share nothing with the original and predict identically."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import layer as sjl

from neuroq import _sj
from neuroq.bayes import (
    GaussianMixtureLinear, MixtureGroup, bayesify, elbo, mixture_groups, mixture_layers, predictive_probs,
    use_component,
)
from neuroq.bayes.mixture import _ClearDraw
from neuroq.neuron import LIFNode

LAYER_KEYS = ["weight_means", "weight_rhos", "bias_means", "bias_rhos"]
# learned logits are a parameter (listed before the buffers), fixed ones a buffer (after the baseline)
GROUP_KEYS = {"learned": ["group.logits", "group.score_baseline", "group.score_baseline_set"],
              "fixed": ["group.score_baseline", "group.score_baseline_set", "group.logits"]}


def _mlp():
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _snn():
    return nn.Sequential(sjl.Conv2d(1, 2, 3, padding=1, step_mode="m"), LIFNode(step_mode="m"),
                         sjl.Flatten(step_mode="m"), sjl.Linear(32, 3, step_mode="m"), LIFNode(step_mode="m"))


def _train(bnet, x, steps=3):
    """A few ELBO steps, so that means, scales and (learned) logits move away from their initial values."""
    opt = torch.optim.SGD(bnet.parameters(), lr=0.1)
    for _ in range(steps):
        out = bnet(x)
        ll = -(out.float().mean(0) if out.dim() == 3 else out).logsumexp(-1).sum()
        opt.zero_grad()
        elbo(bnet, ll, batch_size=x.shape[-4] if x.dim() == 5 else len(x), n_data=100).loss.backward()
        opt.step()
        sjf.reset_net(bnet)


def _ids(model):
    """ids of every module, parameter, buffer, and held noise tensor of ``model``."""
    out = {id(m) for m in model.modules()} | {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    for g in mixture_groups(model):
        if g._draw is not None:
            out |= {id(e) for e in g._draw.eps}
    return out


# ---------------------------------------------------------------------------------------------
# one owner
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mixing", ["fixed", "learned"])
def test_state_dict_holds_the_shared_logits_exactly_once(mixing):
    bnet = bayesify(_mlp(), K=3, mixing=mixing)
    keys = list(bnet.state_dict())
    assert keys == [f"0.{k}" for k in LAYER_KEYS + GROUP_KEYS[mixing]] + [f"2.{k}" for k in LAYER_KEYS]
    assert sum(k.endswith("logits") for k in keys) == 1    # once, under the first layer
    group = bnet[0].group
    assert bnet[2].group is group and mixture_groups(bnet) == [group]
    assert bnet[0].owns_group and not bnet[2].owns_group and "group" not in bnet[2]._modules
    assert [layer for layer, _ in group.blocks()] == [bnet[0], bnet[0], bnet[2], bnet[2]]
    # the parameter order is that of the state dict (optimizer states and digests line up)
    names = [n for n, _ in bnet.named_parameters()]
    assert names == ([f"0.{k}" for k in LAYER_KEYS] + ["0.group.logits"] * (mixing == "learned")
                     + [f"2.{k}" for k in LAYER_KEYS])
    assert sum(p is group.logits for p in bnet.parameters()) == (mixing == "learned")
    # a network of its own modules: the group is a submodule of the first layer of every net it is in
    assert [k for k in bnet[2].state_dict()] == ["weight_means", "weight_rhos", "bias_means", "bias_rhos"]


def test_spiking_network_and_per_layer_groups():
    keys = list(bayesify(_snn(), K=2).state_dict())
    assert [k for k in keys if "group" in k] == [f"0.{k}" for k in GROUP_KEYS["fixed"]]
    per_layer = bayesify(_mlp(), K=2, shared=False)
    assert [k for k in per_layer.state_dict() if k.endswith("logits")] == ["0.group.logits", "2.group.logits"]
    assert per_layer[0].owns_group and per_layer[2].owns_group and len(mixture_groups(per_layer)) == 2


def test_a_group_built_by_hand_belongs_to_its_first_layer():
    group = MixtureGroup(K=2, mixing="learned")
    l1 = GaussianMixtureLinear(3, 4, group=group)
    l2 = GaussianMixtureLinear(4, 2, group=group)
    net = nn.Sequential(l1, nn.ReLU(), l2)
    assert l1.owns_group and not l2.owns_group and l2.group is group
    assert [k for k in net.state_dict() if k.endswith("logits")] == ["0.group.logits"]
    net.double()                                           # moved with its owner
    assert group.logits.dtype == torch.float64 and net(torch.randn(2, 3, dtype=torch.float64)).dtype == torch.float64
    # mixture_groups also finds a group only referenced by the model's layers
    assert mixture_groups(nn.Sequential(l2)) == [group]


def test_state_dicts_that_repeat_the_group_under_every_layer_still_load():
    # before the group had one owner, every member layer listed it: 2.group.* repeated 0.group.*
    src = bayesify(_mlp(), K=3, mixing="learned")
    with torch.no_grad():
        src[0].group.logits.copy_(torch.tensor([0.2, -0.1, 0.4]))
    old = src.state_dict()
    for k in list(old):
        if k.startswith("0.group."):
            old["2" + k[1:]] = old[k].clone()
    dst = bayesify(_mlp(), K=3, mixing="learned")
    dst.load_state_dict(old)                               # strict
    assert torch.equal(dst[0].group.logits, src[0].group.logits) and dst[2].group is dst[0].group
    with pytest.raises(RuntimeError, match="Unexpected key"):
        bayesify(_mlp(), K=3).load_state_dict({**old, "2.unknown": torch.zeros(1)})


# ---------------------------------------------------------------------------------------------
# copies share nothing
# ---------------------------------------------------------------------------------------------
def _roundtrip(m):
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "clone_net"])
def test_copies_are_whole_and_independent(how):
    torch.manual_seed(0)
    bnet = bayesify(_mlp(), K=3, mixing="learned", init_scale=0.1)
    x = torch.randn(5, 3)
    _train(bnet, x)
    bnet(x)                                                 # holds a draw
    copier = {"deepcopy": copy.deepcopy, "pickle": _roundtrip, "clone_net": _sj.clone_net}[how]
    other = copier(bnet)
    assert not (_ids(bnet) & _ids(other))                   # nothing shared
    group = other[0].group
    assert other[2].group is group and group is not bnet[0].group and mixture_groups(other) == [group]
    assert [layer for layer, _ in group.blocks()] == [other[0], other[0], other[2], other[2]]
    hooks = [h for h in other._forward_pre_hooks.values() if isinstance(h, _ClearDraw)]
    assert len(hooks) == 1 and hooks[0].group is group      # resample='forward' clears the copy's own draw
    for a, b in zip(bnet.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    # the copy holds a copy of the draw, its cached statistics recomputed for the copy's parameters
    d0, d1 = bnet[0].group._draw, group._draw
    assert torch.equal(d1.k, d0.k) and all(torch.equal(a, b) for a, b in zip(d1.eps, d0.eps)) and d1.stats is None
    torch.testing.assert_close(other[2].sampled("weight"), bnet[2].sampled("weight"), rtol=0, atol=0)
    torch.manual_seed(1)
    ya = bnet(x)
    torch.manual_seed(1)
    torch.testing.assert_close(other(x), ya, rtol=0, atol=0)
    # training the copy leaves the original alone
    before = {k: v.clone() for k, v in bnet.state_dict().items()}
    _train(other, x)
    assert not torch.equal(other[0].group.logits, bnet[0].group.logits)
    assert all(torch.equal(v, bnet.state_dict()[k]) for k, v in before.items())


def test_a_copy_draws_on_its_own():
    torch.manual_seed(0)
    bnet = bayesify(_snn(), K=3, init_scale=0.2)            # stateful: resample='reset'
    x = torch.rand(4, 2, 1, 4, 4) * 3
    with torch.no_grad():                                   # (neuron states with a graph do not deep-copy)
        bnet(x)
    other = copy.deepcopy(bnet)
    held = bnet[0].sampled("weight").detach().clone()
    sjf.reset_net(other)                                    # clears the copy's draw only
    other(x)
    torch.testing.assert_close(bnet[0].sampled("weight").detach(), held, rtol=0, atol=0)
    with use_component(other, 2):
        other(x)
        assert other[0].group.component == 2 and bnet[0].group.fixed_component is None


# ---------------------------------------------------------------------------------------------
# save and load through the state dict
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spiking", [False, True])
def test_a_model_saved_and_loaded_through_its_state_dict_predicts_identically(spiking):
    torch.manual_seed(0)
    make = _snn if spiking else _mlp
    x = torch.rand(3, 6, 1, 4, 4) * 3 if spiking else torch.randn(6, 3)
    readout = (lambda out: out.mean(0)) if spiking else None
    bnet = bayesify(make(), K=3, mixing="learned", init_scale=0.1)
    _train(bnet, x)
    buf = io.BytesIO()
    torch.save(bnet.state_dict(), buf)
    buf.seek(0)
    torch.manual_seed(123)                                  # a differently initialised network ...
    fresh = bayesify(make(), K=3, mixing="learned", init_scale=0.5)
    fresh.load_state_dict(torch.load(buf))                  # ... strictly loaded
    assert len(mixture_layers(fresh)) == 2 and fresh[0].group is mixture_layers(fresh)[1].group
    for components in ("random", "systematic"):
        torch.manual_seed(7)
        a = predictive_probs(bnet, x, n_samples=6, readout=readout, components=components)
        torch.manual_seed(7)
        b = predictive_probs(fresh, x, n_samples=6, readout=readout, components=components)
        torch.testing.assert_close(b, a, rtol=0, atol=0)
