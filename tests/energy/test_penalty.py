"""Spiking synaptic penalty (issue 6): the penalty is the energy metric itself.

* its value equals an independent count of spikes x fan-out (forward hooks and an explicit loop over
  positions, no meter code) and SpikingJelly 2.0.0's ``op_counter``, and EnergyMeter's SOP count, for
  the same model and batch (MLP, strided/padded CNN, residual; neuroq and SpikingJelly neurons; single
  and multi-step; nominal and exact fan-out);
* with p = 1 its gradient w.r.t. each neuron's membrane potential is fan-out x surrogate derivative;
* p acts on the per-sample spike count of each presynaptic neuron; the rate baselines are the
  unweighted counts;
* raising lambda lowers the *measured* energy of a network trained on a real task (sklearn digits)
  through ``neuroq train --energy-penalty``.
"""
from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn as nn

from neuroq import _sj
from neuroq.energy import EnergyMeter, SynapticPenalty, make_penalty
from neuroq.models import spiking_cnn, spiking_mlp
from neuroq.neuron import IFNode, LIFNode

torch.set_num_threads(1)


def _sj_lif(step_mode="m"):
    return _sj.sj_neuron_module().LIFNode(tau=2.0, detach_reset=True, step_mode=step_mode)


def _nq_lif(step_mode="m"):
    return LIFNode(tau=2.0, detach_reset=True, step_mode=step_mode)


NEURONS = {"neuroq": _nq_lif, "spikingjelly": _sj_lif}


class _Residual(nn.Module):
    """Spikes -> conv(stride 2) -> LIF -> conv, plus a 1x1 stride-2 shortcut conv of the same spikes."""

    def __init__(self, neuron):
        super().__init__()
        self.stem = _sj.SeqToANNContainer(nn.Conv2d(1, 6, 3, padding=1))
        self.n0 = neuron()
        self.c1 = _sj.SeqToANNContainer(nn.Conv2d(6, 8, 3, stride=2, padding=1))
        self.n1 = neuron()
        self.c2 = _sj.SeqToANNContainer(nn.Conv2d(8, 8, 3, padding=1))
        self.short = _sj.SeqToANNContainer(nn.Conv2d(6, 8, 1, stride=2))
        self.n2 = neuron()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        s = self.n0(self.stem(x))
        y = self.n2(self.c2(self.n1(self.c1(s))) + self.short(s))
        return self.fc(y.flatten(2))


def _strided_cnn(neuron):
    return nn.Sequential(
        _sj.SeqToANNContainer(nn.Conv2d(1, 6, 3, stride=2, padding=1)), neuron(),   # 9x9 -> 5x5
        _sj.SeqToANNContainer(nn.Conv2d(6, 8, 3, stride=2, padding=2)), neuron(),   # 5x5 -> 4x4 (pad 2)
        _sj.SeqToANNContainer(nn.Conv2d(8, 8, 2, stride=1, padding=0)), neuron(),   # 4x4 -> 3x3
        nn.Flatten(2), nn.Linear(8 * 9, 10))


def _sj_layer_cnn(neuron):
    """SpikingJelly step-mode layers ([T, N, C, H, W] reaches the conv itself)."""
    L = _sj.layer
    return nn.Sequential(
        L.Conv2d(1, 6, 3, stride=2, padding=1, step_mode="m"), neuron(),
        L.Conv2d(6, 8, 3, stride=2, padding=1, step_mode="m"), neuron(),
        L.Flatten(step_mode="m"), L.Linear(8 * 3 * 3, 10, step_mode="m"))


ARCHS = {
    "mlp": (lambda nf: spiking_mlp(81, (40, 30), 10, nf), (1, 9, 9)),
    "cnn_stride_pad": (_strided_cnn, (1, 9, 9)),
    "residual": (_Residual, (1, 8, 8)),
    "sj_layer_cnn": (_sj_layer_cnn, (1, 9, 9)),
    "spiking_cnn": (lambda nf: spiking_cnn((1, 8, 8), 10, nf, channels=(4, 6), hidden=12), (1, 8, 8)),
}


def _input(shape, T=3, N=5, rate=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(T, N, *shape, generator=g)
    return (u < 0.4).float() if rate else 2.0 * u


def _boost(model):
    """Scale weights so every layer fires (a meaningful comparison needs spikes everywhere)."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.uniform_(m.weight, -0.2, 0.6)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.3)


@pytest.mark.parametrize("arch,neuron,fanout,rate", [
    (a, n, f, r) for a, n, f, r in itertools.product(ARCHS, NEURONS, ("nominal", "exact"), (True, False))])
def test_value_equals_energy_meter_sops(arch, neuron, fanout, rate):
    build, shape = ARCHS[arch]
    model = build(NEURONS[neuron])
    _boost(model)
    x = _input(shape, rate=rate)
    with EnergyMeter(model, conv_fanout=fanout) as meter, SynapticPenalty(model, conv_fanout=fanout) as pen:
        _sj.reset_net(model)
        model(x)
    rep = meter.report()
    per_layer = pen.per_layer()
    val = pen.penalty()
    assert val.requires_grad
    sops = rep["total"]["sops_per_sample"]
    assert float(val.detach()) == pytest.approx(sops, rel=1e-6)
    # layer by layer, and the same set of layers (real-valued inputs are MACs for both)
    spiking = {k: d["sops_per_sample"] for k, d in rep["layers"].items() if d["input"] == "spikes"}
    assert set(per_layer) == set(spiking)
    for k in spiking:
        assert spiking[k] > 0
        assert per_layer[k] == pytest.approx(spiking[k], rel=1e-6)
    # the buffer was cleared
    assert float(pen.penalty().detach()) == 0.0


def _independent_sops(model, x, fanout):
    """Synaptic operations per sample counted without the meter's code: forward pre-hooks take the input of
    every Linear/Conv2d, and each spike is charged its fan-out -- an explicit loop over its position for
    ``'exact'`` (:func:`_exact_conv_fanout`), ``C_out k^2 / s^2`` for ``'nominal'``, ``out_features`` for a
    Linear.  Layers whose input is not binary do MACs and are left out."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].detach().clone())))
             for m in model.modules() if type(m) in (nn.Linear, nn.Conv2d) or isinstance(m, _sj.layer.Conv2d)
             or isinstance(m, _sj.layer.Linear)]
    with torch.no_grad():
        _sj.reset_net(model)
        model(x)
    for h in hooks:
        h.remove()
    total = 0.0
    for mod, inp in seen:
        if not bool(((inp == 0) | (inp == 1)).all()):
            continue
        if isinstance(mod, nn.Linear):
            total += float(inp.sum()) * mod.out_features
            continue
        if inp.dim() == 5:
            inp = inp.flatten(0, 1)
        if fanout == "exact":
            per_pixel = _exact_conv_fanout(mod, inp.shape[-2], inp.shape[-1])
            total += float((inp * per_pixel).sum())
        else:
            kh, kw = mod.kernel_size
            sh, sw = mod.stride
            total += float(inp.sum()) * mod.out_channels * kh * kw / (sh * sw)
    return total / x.shape[1]


@pytest.mark.parametrize("arch,neuron,fanout", [
    (a, n, f) for a, n, f in itertools.product(ARCHS, NEURONS, ("nominal", "exact"))])
def test_value_equals_an_independent_count_of_spikes_times_fanout(arch, neuron, fanout):
    """The p = 1 penalty against a count that shares no code with the meter or the penalty (see
    :func:`_independent_sops`), and for the exact rule against SpikingJelly 2.0.0's ``op_counter``."""
    build, shape = ARCHS[arch]
    model = build(NEURONS[neuron])
    _boost(model)
    x = _input(shape, rate=False)            # analog input: the first layer does MACs, the rest SOPs
    want = _independent_sops(model, x, fanout)
    assert want > 0
    with SynapticPenalty(model, conv_fanout=fanout) as pen:
        _sj.reset_net(model)
        model(x)
    assert float(pen.penalty().detach()) == pytest.approx(want, rel=1e-6)
    oc = _sj.op_counter()
    if fanout == "exact" and oc is not None:
        syn = oc.SynOpCounter()
        _sj.reset_net(model)
        with torch.no_grad(), oc.DispatchCounterMode([syn]):
            model(x)
        assert syn.get_total() / x.shape[1] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("neuron", list(NEURONS))
def test_single_step_loop_equals_meter(neuron):
    """Single-step neurons, the model called once per time step ([N, ...] input, batch_dim=0)."""
    layers = [nn.Conv2d(1, 6, 3, stride=2, padding=1), NEURONS[neuron]("s"), nn.Flatten(),
              nn.Linear(6 * 5 * 5, 12), NEURONS[neuron]("s"), nn.Linear(12, 10)]
    model = nn.Sequential(*layers)
    _boost(model)
    x = _input((1, 9, 9), T=4, rate=True)
    with EnergyMeter(model, batch_dim=0, conv_fanout="exact") as meter, \
            SynapticPenalty(model, batch_dim=0, conv_fanout="exact") as pen:
        _sj.reset_net(model)
        for t in range(x.shape[0]):
            model(x[t])
    assert meter.report()["total"]["sops"] > 0
    assert float(pen.penalty().detach()) == pytest.approx(meter.report()["total"]["sops_per_sample"], rel=1e-6)


def _exact_conv_fanout(conv: nn.Conv2d, h: int, w: int) -> torch.Tensor:
    """Explicit loop: how many weights each input pixel meets (per input channel)."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    f = torch.zeros(h, w)
    for i, j, a, b in itertools.product(range(oh), range(ow), range(kh), range(kw)):
        y, x = i * sh - ph + a, j * sw - pw + b
        if 0 <= y < h and 0 <= x < w:
            f[y, x] += conv.out_channels
    return f


@pytest.mark.parametrize("fanout", ["nominal", "exact"])
@pytest.mark.parametrize("neuron", ["neuroq", "spikingjelly"])
def test_gradient_wrt_membrane_is_fanout_times_surrogate(fanout, neuron):
    """p = 1: dOmega/dH = f * sigma'(H - V_th) / N for every neuron (IF with v0 = 0 has H = x)."""
    torch.manual_seed(0)
    if neuron == "neuroq":
        n1, n2 = IFNode(step_mode="s"), IFNode(step_mode="s")
    else:
        sjn = _sj.sj_neuron_module()
        n1, n2 = sjn.IFNode(step_mode="s"), sjn.IFNode(step_mode="s")
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    fc = nn.Linear(5 * 4 * 4, 7)
    N = 4

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.n1, self.conv, self.n2, self.fc = n1, conv, n2, fc

        def forward(self, h1, h2):  # h1, h2: membrane potentials of the two neuron layers
            s1 = self.n1(h1)
            self.conv(s1)
            return self.fc(self.n2(h2).flatten(1))

    net = Net()
    h1 = (torch.randn(N, 3, 7, 7) * 0.6 + 1.0).requires_grad_()
    h2 = (torch.randn(N, 5, 4, 4) * 0.6 + 1.0).requires_grad_()
    with SynapticPenalty(net, conv_fanout=fanout, batch_dim=0) as pen:
        _sj.reset_net(net)
        net(h1, h2)
        g1, g2 = torch.autograd.grad(pen.penalty(), (h1, h2))
    # surrogate derivative by autograd through the surrogate alone
    sg = n1.surrogate_function
    z1 = (h1.detach() - 1.0).requires_grad_()
    (d1,) = torch.autograd.grad(sg(z1).sum(), z1)
    z2 = (h2.detach() - 1.0).requires_grad_()
    (d2,) = torch.autograd.grad(sg(z2).sum(), z2)
    if fanout == "nominal":
        f1 = torch.full((7, 7), 5 * 9 / 4)
    else:
        f1 = _exact_conv_fanout(conv, 7, 7)
        assert f1.min() < f1.max()  # borders differ: the per-neuron fan-out is really tested
    torch.testing.assert_close(g1, f1 * d1 / N, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g2, 7.0 * d2 / N, rtol=1e-5, atol=1e-7)
    assert (d1 > 0).any() and (g1 != 0).any()


def test_gradient_wrt_spikes_multi_step_is_fanout():
    """Multi-step: the direct partial dOmega/ds_i[t] = f_i / N for every spike at every step
    (so dOmega/dH = f sigma'); each neuron's output is cut into a leaf to isolate it from the
    later layers' terms."""
    torch.manual_seed(0)
    model = _strided_cnn(_nq_lif)
    _boost(model)
    spikes = {}

    def keep(name):
        def hook(m, a, out):
            leaf = out.detach().requires_grad_()
            spikes[name] = leaf
            return leaf
        return hook

    for i in (1, 3, 5):
        model[i].register_forward_hook(keep(i))
    x = _input((1, 9, 9), T=3, N=5, rate=False)
    with SynapticPenalty(model) as pen:
        _sj.reset_net(model)
        model(x)
        pen.penalty().backward()
    N = 5
    for i, f in ((1, 8 * 9 / 4), (3, 8 * 4 / 1), (5, 10)):
        assert spikes[i].sum() > 0
        torch.testing.assert_close(spikes[i].grad, torch.full_like(spikes[i], f / N))


def test_power_acts_on_per_sample_spike_counts():
    """p != 1: Omega = (1/N) sum f * c^p with c the spike count over T; rate L1/L2 drop f."""
    torch.manual_seed(0)
    model = spiking_mlp(81, (20,), 10, _nq_lif, norm=False)
    _boost(model)
    x = _input((1, 9, 9), T=4, N=6)
    with SynapticPenalty(model, p=2.0) as p2, SynapticPenalty(model, p=0.5, eps=1e-9) as ph, \
            SynapticPenalty(model) as p1, make_penalty("rate-l1", model) as r1, \
            make_penalty("rate-l2", model) as r2:
        _sj.reset_net(model)
        model(x)
    N = 6
    c_in = x.flatten(2).sum(0)                  # [N, 81] counts entering the first linear
    s_hidden = []
    _sj.reset_net(model)
    model[2].register_forward_hook(lambda m, a, o: s_hidden.append(o.detach()))
    model(x)
    c_hid = s_hidden[0].sum(0)                  # [N, 20] counts entering the last linear
    assert c_hid.max() > 1                      # several spikes per neuron: p matters
    expect = lambda p, f1, f2: float((f1 * c_in ** p).sum() + (f2 * c_hid ** p).sum()) / N
    assert float(p2.penalty().detach()) == pytest.approx(expect(2, 20, 10), rel=1e-6)
    assert float(ph.penalty().detach()) == pytest.approx(expect(0.5, 20, 10), rel=1e-4)
    assert float(p1.penalty().detach()) == pytest.approx(expect(1, 20, 10), rel=1e-6)
    assert float(r1.penalty().detach()) == pytest.approx(expect(1, 1, 1), rel=1e-6)
    assert float(r2.penalty().detach()) == pytest.approx(expect(2, 1, 1), rel=1e-6)


def test_single_step_power_does_not_change_value_only_gradient():
    torch.manual_seed(0)
    n, fc = IFNode(step_mode="s"), nn.Linear(6, 3)
    net = nn.Sequential(n, fc)
    h = (torch.randn(4, 6) + 1).requires_grad_()
    vals, grads = [], []
    for p in (1.0, 2.0):
        with SynapticPenalty(net, p=p, batch_dim=0) as pen:
            _sj.reset_net(net)
            net(h)
            v = pen.penalty()
            vals.append(float(v.detach()))
            grads.append(torch.autograd.grad(v, h)[0])
    assert vals[0] == vals[1]
    s = (h.detach() >= 1.0).float()
    torch.testing.assert_close(grads[1], grads[0] * 2.0 * s)  # p c^(p-1): 2 where fired, 0 elsewhere


def test_no_grad_forward_is_not_collected_and_arguments_are_checked():
    model = spiking_mlp(81, (20,), 10, _nq_lif)
    pen = SynapticPenalty(model).start()
    with torch.no_grad():
        _sj.reset_net(model)
        model(_input((1, 9, 9)))
    assert float(pen.penalty().detach()) == 0.0
    pen.stop()
    with pytest.raises(ValueError, match="p must be"):
        SynapticPenalty(model, p=0)
    with pytest.raises(ValueError, match="conv_fanout"):
        SynapticPenalty(model, conv_fanout="rough")
    with pytest.raises(ValueError, match="normalize"):
        SynapticPenalty(model, normalize="batch")
    with pytest.raises(ValueError, match="kind"):
        make_penalty("l3", model)
    with pytest.raises(TypeError, match="model"):
        SynapticPenalty("not a model")
    with pytest.raises(ValueError, match="no synaptic layer"):
        SynapticPenalty(nn.Sequential(_nq_lif())).start()


def test_raising_lambda_lowers_measured_energy_on_digits(tmp_path):
    """``neuroq train --energy-penalty LAM`` on sklearn digits: the EnergyMeter's SOPs per test
    sample fall as LAM grows (the measured energy, not the penalty value)."""
    from neuroq.cli import main

    sops, accs = {}, {}
    for lam in (0.0, 2e-4, 2e-3):
        out = tmp_path / f"lam{lam}"
        rc = main(["train", "--method", "lif", "--dataset", "digits", "-T", "4", "--epochs", "4",
                   "--hidden", "96", "96", "--lr", "3e-3", "--quiet", "--seed", "0", "--out", str(out),
                   "--energy-penalty", str(lam), "--penalty-kind", "synaptic"])
        assert rc == 0
        rep = json.loads((out / "energy.json").read_text())
        sops[lam] = rep["total"]["sops_per_sample"]
        accs[lam] = json.loads((out / "metrics.json").read_text())["final_test_acc"]
    assert sops[0.0] > sops[2e-4] > sops[2e-3]
    assert sops[2e-3] < 0.6 * sops[0.0]
    assert accs[0.0] > 0.8  # the unpenalized network learned the task


def test_example_targets_logic():
    """examples.energy_penalty.targets: the <=1 pt / >=40 % rule and the curve comparison."""
    from examples.energy_penalty import targets

    def r(lam, acc, e, s):
        return dict(lam=lam, test_acc=acc, energy_pj_per_inference=e, spiking_energy_pj_per_inference=s)

    base = r(0.0, 0.90, 10.0, 6.0)
    runs = {"synaptic": [r(1, 0.895, 7.0, 3.0), r(2, 0.85, 5.0, 1.0)],
            "rate-l1": [r(1, 0.89, 8.0, 4.0), r(2, 0.80, 6.0, 2.0), r(3, 0.7, 4.0, 0.5)]}
    t = targets(base, runs)
    assert t["reduction_spiking"]["met"] and t["reduction_spiking"]["lam"] == 1   # 50 % at -0.5 pt
    assert not t["reduction_total"]["met"]                                        # 30 % at -0.5 pt only
    sv = t["synaptic_vs_rate"]
    assert sv["met"] and sv["judged"] == 2 and sv["not_reached"] == 1
    # the synaptic envelope at E=6 interpolates (5, .85)-(7, .895): .8725
    assert sv["points"][1]["synaptic_acc"] == pytest.approx(0.8725)
    runs["rate-l1"][1]["test_acc"] = 0.88                                         # rate beats synaptic at E=6
    assert not targets(base, runs)["synaptic_vs_rate"]["met"]
    # the total-energy rule under each energy model the runs were metered with
    for run, lemaire in zip([base] + runs["synaptic"], (100.0, 55.0, 30.0)):
        run["energy_models"] = {"compute": dict(energy_pj_per_inference=run["energy_pj_per_inference"]),
                                "lemaire": dict(energy_pj_per_inference=lemaire)}
    by = targets(base, runs)["reduction_total_by_model"]
    assert by["compute"] == targets(base, runs)["reduction_total"]
    assert by["lemaire"]["met"] and by["lemaire"]["lam"] == 1                    # 45 % at -0.5 pt
    assert by["lemaire"]["energy_reduction"] == pytest.approx(0.45)


@pytest.mark.parametrize("json_name, tag", [("energy_penalty.json", ""), ("energy_penalty_rate_encoding.json", "-rate"),
                                            ("energy_penalty_seed1.json", "-seed1")])
def test_docs_tables_are_generated_from_the_committed_json(json_name, tag):
    """docs/energy_penalty.md's tables and target lines equal what visualizations.accuracy_energy renders
    from the committed JSON (regenerate: ``python -m visualizations.accuracy_energy --json ... --tag ...``)."""
    import json
    from pathlib import Path

    from visualizations import accuracy_energy as ae

    root = Path(__file__).resolve().parents[2]
    res = json.loads((root / "examples" / "results" / json_name).read_text())
    doc = (root / "docs" / "energy_penalty.md").read_text()
    table_mark = ae.MARK.replace(" -->", f"{tag} -->")
    assert f"{table_mark}\n{ae.table(res)}\n{table_mark}" in doc
    targets_mark = ae.TARGETS_MARK.replace(" -->", f"{tag} -->")
    if targets_mark in doc:
        assert f"{targets_mark}\n{ae.targets_text(res)}\n{targets_mark}" in doc
