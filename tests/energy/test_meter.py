"""EnergyMeter counts: hand-computed small cases and SpikingJelly 2.0.0's op_counter."""

import pytest
import torch
import torch.nn as nn

from neuroq import _sj
from neuroq.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter, conv_sops
from neuroq.neuron import LIFNode


def test_linear_sops_and_macs_by_hand():
    net = nn.Sequential(nn.Linear(4, 3), LIFNode(step_mode="m"), nn.Linear(3, 2))
    x = torch.tensor([[[1.0, 0, 1, 0]], [[0, 0, 1, 0]]])  # [T=2, N=1, 4] binary: spikes in
    with EnergyMeter(net) as m:
        net(x)
    rep = m.report()
    first = rep["layers"]["0"]
    assert first["input"] == "spikes"
    assert first["sops"] == 3 * 3  # 3 input spikes x fan-out 3
    assert first["input_rate"] == pytest.approx(3 / 8)
    # real-valued input: MACs = N*T*in*out
    xr = torch.full((2, 5, 4), 0.5)
    _sj.reset_net(net)
    with EnergyMeter(net) as m2:
        net(xr)
    r2 = m2.report()
    assert r2["layers"]["0"]["macs"] == 2 * 5 * 4 * 3
    assert r2["layers"]["0"]["input"] == "real"
    assert r2["samples"] == 5
    hidden_spikes = r2["neurons"]["1"]["spikes"]
    assert r2["layers"]["2"]["sops"] == hidden_spikes * 2
    tot = r2["total"]
    assert tot["energy_pj"] == pytest.approx(tot["sops"] * E_AC_PJ + tot["macs"] * E_MAC_PJ)
    assert tot["energy_pj_per_sample"] == pytest.approx(tot["energy_pj"] / 5)


def test_conv_nominal_fanout_by_hand():
    conv = nn.Conv2d(2, 6, kernel_size=3, stride=2, padding=1)
    x = torch.zeros(1, 2, 8, 8)
    x[0, 0, 3, 3] = 1
    x[0, 1, 0, 0] = 1
    x[0, 1, 5, 2] = 1
    with EnergyMeter(conv, batch_dim=0) as m:
        conv(x)
    assert m.report()["layers"]["Conv2d"]["sops"] == pytest.approx(3 * 6 * 9 / 4)


def test_conv_exact_fanout_counts_weight_uses():
    conv = nn.Conv2d(1, 4, kernel_size=3, stride=1, padding=1, bias=False)
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1  # interior: meets all 9 weights of each of 4 filters
    x[0, 0, 0, 0] = 1  # corner with padding 1: only 4 output positions see it
    exact = conv_sops(conv, x, "exact")
    assert exact.item() == 4 * (9 + 4)
    # grouped conv
    g = nn.Conv2d(4, 8, 3, padding=1, groups=2, bias=False)
    xg = (torch.rand(2, 4, 6, 6) > 0.7).float()
    ref = 0.0
    w_ones = torch.ones_like(g.weight)
    ref = nn.functional.conv2d(xg, w_ones, None, 1, 1, 1, 2).sum()  # weight uses of every spike
    assert conv_sops(g, xg, "exact").item() == pytest.approx(ref.item())


def test_mixed_first_layer_macs_and_neuron_rates():
    net = nn.Sequential(
        _sj.SeqToANNContainer(nn.Conv2d(1, 4, 3, padding=1)), LIFNode(step_mode="m"),
        nn.Flatten(2), nn.Linear(4 * 6 * 6, 10))
    x = torch.rand(3, 2, 1, 6, 6)
    with EnergyMeter(net) as m:
        out = net(x)
    rep = m.report()
    conv_rep = rep["layers"]["0.0"]
    assert conv_rep["macs"] == 3 * 2 * 4 * 6 * 6 * 9
    neuron = rep["neurons"]["1"]
    assert 0 <= neuron["firing_rate"] <= 1
    assert rep["layers"]["3"]["sops"] == neuron["spikes"] * 10
    assert out.shape == (3, 2, 10)


def test_meter_argument_errors():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        EnergyMeter("net")
    with pytest.raises(ValueError, match="conv_fanout must be one of"):
        EnergyMeter(nn.Linear(2, 2), conv_fanout="approx")
    with pytest.raises(ValueError, match="e_ac must be >= 0"):
        EnergyMeter(nn.Linear(2, 2), e_ac=-1)


@pytest.mark.skipif(_sj.op_counter() is None, reason="SpikingJelly 2.0.0's op_counter not installed")
def test_matches_spikingjelly_op_counter():
    oc = _sj.op_counter()
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), LIFNode(), nn.Conv2d(8, 8, 3, stride=2, padding=1), LIFNode(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    x = (torch.rand(4, 3, 8, 8) > 0.6).float()  # spike input everywhere
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(4)
    syn, mac = oc.SynOpCounter(), oc.MACCounter()
    with torch.no_grad(), oc.DispatchCounterMode([syn, mac]):
        net(x)
    _sj.reset_net(net)
    with torch.no_grad(), EnergyMeter(net, conv_fanout="exact", batch_dim=0) as meter:
        net(x)
    rep = meter.report()
    assert rep["total"]["sops"] > 0
    assert rep["total"]["sops"] == pytest.approx(syn.get_total())
    assert rep["total"]["macs"] == mac.get_total() == 0
    # real-valued input: MACs agree too
    _sj.reset_net(net)
    xr = torch.rand(2, 3, 8, 8)
    syn2, mac2 = oc.SynOpCounter(), oc.MACCounter()
    with torch.no_grad(), oc.DispatchCounterMode([syn2, mac2]):
        net(xr)
    _sj.reset_net(net)
    with torch.no_grad(), EnergyMeter(net, conv_fanout="exact", batch_dim=0) as meter2:
        net(xr)
    r2 = meter2.report()
    assert r2["total"]["macs"] == mac2.get_total()
    assert r2["total"]["sops"] == pytest.approx(syn2.get_total())


# ---- issue 15: the fan-out rules on a grid of convolutions ------------------------------------------
CONV_GRID = [
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, padding=1)),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, groups=2)),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=8, kernel_size=3, padding=1, groups=4)),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="circular")),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, padding=1, padding_mode="reflect")),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=4, padding="same")),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=2, padding="same", dilation=2)),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1)),
    dict(cls=nn.Conv2d, kw=dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding="valid")),
    dict(cls=nn.Conv1d, kw=dict(in_channels=4, out_channels=6, kernel_size=5, padding=2, groups=2)),
    dict(cls=nn.ConvTranspose2d, kw=dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1)),
    dict(cls=nn.ConvTranspose2d, kw=dict(in_channels=4, out_channels=6, kernel_size=2, stride=2, groups=2)),
]


@pytest.mark.skipif(_sj.op_counter() is None, reason="SpikingJelly 2.0.0's op_counter not installed")
@pytest.mark.parametrize("spec", CONV_GRID, ids=lambda s: f"{s['cls'].__name__}-{s['kw']}")
@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel lengths:UserWarning")  # torch's note on the even-kernel case we test on purpose
def test_exact_rule_equals_op_counter_on_a_grid(spec):
    oc = _sj.op_counter()
    torch.manual_seed(3)
    conv = spec["cls"](**spec["kw"])
    shape = (2, 4, 9) if spec["cls"] is nn.Conv1d else (2, 4, 7, 9)
    x = (torch.rand(shape) > 0.5).float()
    syn = oc.SynOpCounter()
    with torch.no_grad(), oc.DispatchCounterMode([syn]):
        conv(x)
    with torch.no_grad(), EnergyMeter(conv, conv_fanout="exact", batch_dim=0) as meter:
        conv(x)
    assert syn.get_total() > 0
    assert meter.report()["total"]["sops"] == pytest.approx(syn.get_total())


def test_nominal_rule_of_grouped_and_transposed_convs():
    """Nominal fan-out (C_out/g) k^2 / s^2 for grouped convs (it counted g times too much), (C_out/g) k^2
    for transposed ones (they counted nothing)."""
    x = (torch.rand(2, 4, 6, 6) > 0.5).float()
    for groups in (1, 2, 4):
        conv = nn.Conv2d(4, 8, 3, stride=1, padding=1, groups=groups)
        with torch.no_grad(), EnergyMeter(conv, batch_dim=0) as m:
            conv(x)
        assert m.report()["total"]["sops"] == pytest.approx(float(x.sum()) * (8 // groups) * 9)
    tconv = nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    with torch.no_grad(), EnergyMeter(tconv, batch_dim=0) as m:
        tconv(x)
    assert m.report()["total"]["sops"] == pytest.approx(float(x.sum()) * 3 * 9)
    with torch.no_grad(), EnergyMeter(tconv, batch_dim=0) as m:
        tconv(torch.rand(2, 4, 6, 6))
    assert m.report()["total"]["macs"] == 2 * 4 * 36 * 3 * 9


# ---- issue 15: samples in single-step and multi-step mode ---------------------------------------------
def _mlp(step_mode):
    return nn.Sequential(nn.Linear(64, 32), LIFNode(step_mode=step_mode), nn.Linear(32, 10))


def test_single_step_loop_and_multi_step_report_the_same_energy_per_sample():
    torch.manual_seed(0)
    net_m = _mlp("m")
    net_s = _mlp("s")
    net_s.load_state_dict(net_m.state_dict())
    x = torch.rand(4, 8, 64) * 3                        # T=4, N=8
    with torch.no_grad(), EnergyMeter(net_m) as mm:
        net_m(x)
    with torch.no_grad(), EnergyMeter(net_s) as ms:    # how snnTorch / SpikingJelly users write loops
        for t in range(4):
            net_s(x[t])
    assert mm.report()["samples"] == 8 and ms.report()["samples"] == 8
    for k in ("sops", "macs", "energy_pj_per_sample", "sops_per_sample"):
        assert ms.report()["total"][k] == pytest.approx(mm.report()["total"][k]), k
    # a second batch after reset_net counts its samples once more
    _sj.reset_net(net_s)
    with torch.no_grad(), ms:
        for t in range(4):
            net_s(x[t, :3])
    assert ms.report()["samples"] == 11


def test_stateless_and_ann_models_count_every_call():
    ann = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad(), EnergyMeter(ann) as m:
        ann(torch.rand(5, 6))
        ann(torch.rand(3, 6))
    assert m.report()["samples"] == 8


def test_meter_on_a_model_with_nothing_to_count_is_an_error():
    with pytest.raises(ValueError, match="nothing to count"):
        EnergyMeter(nn.Sequential(nn.ReLU(), nn.Flatten()))


def test_a_neuron_written_as_a_step_is_metered_by_the_operations_of_that_step():
    """A user's two-state neuron (no declared count): the meter counts the elementwise operations of its
    traced step.  By hand: charge h = v + (x - v)/2 -> sub, div, add (3); fire on h - V_th - 0.5 a -> mul, sub,
    and the comparison (the last subtraction is the comparison itself) (3); hard reset v = h (1 - s) + 0 s ->
    sub, mul, mul, add (4); adaptation a = 0.8 a + s -> mul, add (2): 12 per neuron and step."""
    import torch.nn as nn

    from neuroq.energy import EnergyMeter
    from neuroq.neuron import BaseNode

    class Adaptive(BaseNode):
        states = ("v", "a")

        def step(self, x, v, a):
            h = v + (x - v) / 2.0
            s = self.surrogate_function(h - self.v_threshold - 0.5 * a)
            return s, self.neuronal_reset(h, s), 0.8 * a + s

    net = nn.Sequential(nn.Linear(3, 5), Adaptive(step_mode="m"))
    with torch.no_grad(), EnergyMeter(net, energy="simple") as meter:
        net(torch.rand(4, 2, 3))
    rep = meter.report()
    neuron = rep["energy_models"]["simple"]["layers"]["1"]
    e_ac = meter.energy_models[0].options["e_ac"]
    assert neuron["components_pj"]["compute"] == pytest.approx(4 * 2 * 5 * 12 * e_ac)
