"""Acceptance checks of "A Spike in Performance" (Voelker, Rasmussen, Eliasmith, arXiv 2002.03553):
the hybrid-spiking activation against ABR's own library (pytorch-spiking) and against an explicit
loop of its code's equations, count conservation, the spiking-aware gradient, reset, device placement
of the state, the dt -> large limit, the hybrid LMU's shapes in both step modes, and the energy
meter's counts on a hand-sized case.

pytorch-spiking 0.1.0 (ABR, pure Python on torch) installs here (`pip install pytorch-spiking`, no
other dependency than torch and numpy); the tests that use it are skipped where it is absent, and
the explicit-loop tests below run everywhere."""
import pytest
import torch
import torch.nn as nn

import neuroq
from neuroq.energy import E_AC_PJ, E_MAC_PJ, EnergyMeter
from neuroq.energy.rules import linear_count_ops, memory_count_ops
from neuroq.layer.lmu import LMU, LegendreMemory, LMUCell
from neuroq.models.lmu import hybrid_lmu_classifier, lmu_classifier
from neuroq.neuron.hybrid import SpikingActivation, SpikingSchedule

ACTS = {
    "relu": (nn.ReLU(), lambda x: (x > 0).to(x.dtype)),
    "tanh": (nn.Tanh(), lambda x: 1 - torch.tanh(x) ** 2),
    "sigmoid": (nn.Sigmoid(), lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x))),
    "identity": (nn.Identity(), lambda x: torch.ones_like(x)),
}


def _abr_loop(x_seq, v0, f, dt):
    """ABR's SpikingActivation code path written out (pytorch_spiking.functional, [T, N, ...] layout):
    rates = f(x) * dt; voltage += rate; n = floor(voltage); voltage -= n; out = n / dt."""
    rates = f(x_seq) * dt
    voltage = v0.to(x_seq.dtype).clone()
    out = []
    for r in rates.unbind(0):
        voltage = voltage + r
        n = torch.floor(voltage)
        voltage = voltage - n
        out.append(n / dt)
    return torch.stack(out)


# ---- ABR's reference semantics ----------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("dt", [0.001, 0.37, 1.0, 4.0])
def test_equals_pytorch_spiking_float64_and_its_gradient(act, dt):
    """ABR's library, same initial state: identical outputs (float64: both accumulations are then
    exact to far below a count's resolution) and identical gradients f'(x)."""
    ps = pytest.importorskip("pytorch_spiking")
    f, _ = ACTS[act]
    scale = 1.0 / dt if dt < 0.01 else 2.0
    x = (torch.randn(6, 120, 9, dtype=torch.float64) * scale).requires_grad_()   # ABR layout [N, T, F]
    v0 = torch.rand(6, 9, dtype=torch.float64)
    ref = ps.SpikingActivation(f, dt=dt, initial_state=v0.clone(), return_sequences=True)(x)
    ours = SpikingActivation(f, dt=dt, initial_state=v0, step_mode="m")(x.transpose(0, 1)).transpose(0, 1)
    assert torch.equal(ours, ref)
    assert (ref != 0).any()
    w = torch.randn_like(ref)
    g_ref, = torch.autograd.grad((ref * w).sum(), x)
    g_ours, = torch.autograd.grad((ours * w).sum(), x)
    assert torch.allclose(g_ours, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dt", [0.37, 1.0, 4.0])
def test_equals_pytorch_spiking_float32(dt):
    """float32: ABR's loop rounds its state to 24 bits each step, neuroq accumulates exactly
    (neuroq.functional.hybrid), so a count at an exact integer boundary can differ by one and the
    next count compensates (about 1e-6 of the counts at psMNIST sizes).  Here: equal at a small size
    (fixed seed), and at 1.2M counts at most 1e-4 of them differ, each by one spike, with the running
    totals never more than one spike apart."""
    ps = pytest.importorskip("pytorch_spiking")
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 50, 8, generator=g) * 2
    v0 = torch.rand(4, 8, generator=g)
    ref = ps.SpikingActivation(nn.ReLU(), dt=dt, initial_state=v0.clone())(x)
    ours = SpikingActivation(nn.ReLU(), dt=dt, initial_state=v0, step_mode="m")(x.transpose(0, 1)).transpose(0, 1)
    assert torch.equal(ours, ref)
    x = torch.randn(20, 784, 80, generator=g) * 2
    v0 = torch.rand(20, 80, generator=g)
    ref = ps.SpikingActivation(nn.ReLU(), dt=dt, initial_state=v0.clone())(x).double() * dt
    ours = SpikingActivation(nn.ReLU(), dt=dt, initial_state=v0, step_mode="m")(
        x.transpose(0, 1)).transpose(0, 1).double() * dt
    diff = torch.round(ours - ref)
    assert (diff != 0).double().mean() < 1e-4 and diff.abs().max() <= 1
    assert (torch.cumsum(diff, dim=1).abs() <= 1).all()


@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("dt", [0.001, 0.5, 3.0])
def test_equals_explicit_loop_of_abr_equations(act, dt):
    """Runs without pytorch-spiking: the explicit loop of ABR's code (float64), same initial state."""
    f, _ = ACTS[act]
    scale = 1.0 / dt if dt < 0.01 else 2.0
    x = torch.randn(200, 5, 7, dtype=torch.float64) * scale
    v0 = torch.rand(5, 7, dtype=torch.float64)
    ours = SpikingActivation(f, dt=dt, initial_state=v0, step_mode="m")(x)
    assert torch.equal(ours, _abr_loop(x, v0, f, dt))


# ---- count conservation -------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "tanh", "identity"])
@pytest.mark.parametrize("dt", [0.01, 0.3, 1.0, 7.5])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_count_conservation_every_neuron(act, dt, step_mode):
    """|sum_t n_t - sum_t f(x_t) dt| < 1 for every neuron, over psMNIST's T = 784."""
    f, _ = ACTS[act]
    x = torch.randn(784, 8, 13) * (2.0 if dt >= 0.1 else 50.0)
    m = SpikingActivation(f, dt=dt, step_mode=step_mode)
    a = m(x) if step_mode == "m" else torch.stack([m(xt) for xt in x.unbind(0)])
    n = m.counts(a)
    assert torch.equal(n, torch.round(n))
    drift = n.sum(0) - (f(x).double() * dt).sum(0)
    assert drift.abs().max() < 1
    assert n.abs().sum() > 0


# ---- gradient ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_gradient_is_base_activation_derivative(act, step_mode):
    f, df = ACTS[act]
    x = (torch.randn(30, 4, 6, dtype=torch.float64) * 2).requires_grad_()
    w = torch.randn(30, 4, 6, dtype=torch.float64)
    m = SpikingActivation(f, dt=0.7, step_mode=step_mode)
    a = m(x) if step_mode == "m" else torch.stack([m(xt) for xt in x.unbind(0)])
    g, = torch.autograd.grad((a * w).sum(), x)
    assert torch.allclose(g, w * df(x.detach()), rtol=0, atol=1e-12)


def test_spiking_aware_training_off_is_the_base_activation_in_training():
    m = SpikingActivation(nn.Tanh(), dt=1.0, spiking_aware_training=False, step_mode="m")
    x = torch.randn(10, 3, 4)
    assert torch.equal(m(x), torch.tanh(x)) and m.v is None
    m.eval()
    a = m(x)
    assert torch.equal(m.counts(a), torch.round(m.counts(a))) and not torch.equal(a, torch.tanh(x))


# ---- reset and device -----------------------------------------------------------------------------------
def test_reset_net_resets_the_state():
    net = nn.Sequential(nn.Linear(3, 5), SpikingActivation(dt=0.5, seed=3, reseed_on_reset=True, step_mode="m"))
    x = torch.randn(12, 2, 3)
    y1 = net(x)
    y_cont = net(x)                      # no reset: continues from the stored state
    neuroq.reset_net(net)
    assert net[1].v is None
    y2 = net(x)
    assert torch.equal(y1, y2) and not torch.equal(y1, y_cont)


def _devices():
    devs = ["cpu"]
    if torch.cuda.is_available():
        devs.append("cuda")
    return devs


@pytest.mark.parametrize("device", _devices())
def test_state_and_generator_live_on_the_input_device(device):
    act = SpikingActivation(dt=0.5, seed=1, step_mode="m").to(device)
    x = torch.randn(5, 3, 4, device=device)
    act(x)
    assert act.v.device.type == x.device.type
    assert list(act._generators) == [str(x.device)]
    assert act._generators[str(x.device)].device.type == x.device.type
    given = SpikingActivation(initial_state=torch.full((4,), 0.5)).to(device)
    given(x[0])
    assert given.v.device.type == x.device.type


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu_for_a_given_state():
    v0 = torch.rand(3, 4)
    x = torch.randn(50, 3, 4)
    cpu = SpikingActivation(torch.tanh, dt=2.0, initial_state=v0, step_mode="m")(x)
    gpu = SpikingActivation(torch.tanh, dt=2.0, initial_state=v0, step_mode="m").cuda()(x.cuda())
    assert torch.equal(cpu, gpu.cpu())


# ---- dt -> large ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dt", [10.0, 1e3, 1e6])
@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_large_dt_recovers_the_activation_within_one_over_dt(dt, act):
    """a_t - f(x_t) = (v_{t-1} - v_t)/dt, so |a_t - f(x_t)| < 1/dt at every step."""
    f, _ = ACTS[act]
    x = torch.randn(100, 4, 9, dtype=torch.float64) * 2
    a = SpikingActivation(f, dt=dt, step_mode="m")(x)
    err = (a - f(x)).abs().max()
    assert err < 1 / dt
    assert err > 0 or dt > 1e5


def test_schedule_interpolates_to_spiking():
    model = hybrid_lmu_classifier(order=8, theta=32.0, hidden_size=6, dt=100.0, seed=0)
    sched = SpikingSchedule(100.0, 1.0, epochs=3)
    x = torch.randn(32, 2, 1)
    levels = []
    for epoch in range(4):
        dt = sched.apply(model, epoch)
        with EnergyMeter(model) as meter:
            model(x)
        levels.append((dt, meter.report()["activity"]["lmu.cell.hidden_cell.activation"]["max_count"]))
    assert levels[0][0] == 100.0 and levels[-1][0] == 1.0
    assert levels[-1][1] <= 1 < levels[0][1]     # tanh at dt = 1: at most one spike per step


# ---- hybrid LMU shapes ---------------------------------------------------------------------------------------
def _spk(f, dt=2.0):
    return SpikingActivation(f, dt=dt)


@pytest.mark.parametrize("hidden_recurrent", [False, True])
@pytest.mark.parametrize("memory_recurrence", [False, True])
def test_hybrid_lmu_forward_backward_shapes_in_both_step_modes(hidden_recurrent, memory_recurrence):
    T, N, I, H, d, order = 20, 3, 2, 6, 2, 8
    kw = dict(order=order, theta=16.0, input_to_hidden=True, hidden_recurrent=hidden_recurrent,
              hidden_to_memory=memory_recurrence, memory_to_memory=memory_recurrence)
    spikes = lambda: dict(hidden_activation=_spk(nn.Tanh()), u_activation=_spk(nn.Identity()),  # noqa: E731
                          m_activation=_spk(nn.Identity()))
    x = torch.randn(T, N, I)
    # whole sequences: LMU in its automatic form and in the recurrent form
    for mode in (["auto", "recurrent"]):
        lmu = LMU(I, H, d, mode=mode, **kw, **spikes())
        y = lmu(x.requires_grad_())
        assert y.shape == (T, N, H)
        y.pow(2).sum().backward()
        assert x.grad.shape == x.shape and torch.isfinite(x.grad).all()
        assert all(p.grad is not None and p.grad.shape == p.shape for p in lmu.parameters())
        x.grad = None
    # the cell, multi-step ('m', [T, N, I]) and single-step ('s', [N, I])
    for step_mode in ("m", "s"):
        cell = LMUCell(I, H, d, step_mode=step_mode, **kw, **spikes())
        xs = x.detach().clone().requires_grad_()
        y = cell(xs) if step_mode == "m" else torch.stack([cell(xt) for xt in xs.unbind(0)])
        assert y.shape == (T, N, H) and cell.m.shape == (N, d * order) and cell.h.shape == (N, H)
        y.pow(2).sum().backward()
        assert xs.grad.shape == xs.shape
        assert all(p.grad is not None for p in cell.parameters())
        neuroq.reset_net(cell)
        assert cell.m is None and cell.hidden_cell.activation.v is None


def test_psmnist_builders_default_size_and_small_size():
    model = lmu_classifier()
    cell = model.lmu.cell
    assert (cell.order, cell.theta, cell.hidden_size, cell.memory_d) == (256, 784.0, 212, 1)
    assert model.lmu.resolved_mode() == "fft"
    # keras-lmu's psMNIST layers: LMU kernel 1x1, SimpleRNNCell(212) on 256+1 inputs, Dense(10)
    keras_params = 1 + (257 * 212 + 212 * 212 + 212) + (212 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == keras_params
    hyb = hybrid_lmu_classifier(order=12, theta=40.0, hidden_size=10, spiking_u=True, spiking_m=True,
                                readout_tau=4.0, dt=2.0)
    out = hyb(torch.randn(40, 5, 1))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert hyb.lowpass.log_tau.grad is not None
    assert sum(isinstance(m, SpikingActivation) for m in hyb.modules()) == 3


# ---- energy: hand-sized case ------------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(2, 3, bias=False)
        self.act = SpikingActivation(nn.ReLU(), dt=0.5, initial_state="zeros", step_mode="m")
        self.lin2 = nn.Linear(3, 4)
        with torch.no_grad():
            self.lin1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))

    def forward(self, x):
        return self.lin2(self.act(self.lin1(x)))


def test_meter_counts_spike_counts_times_fanout_by_hand():
    x = torch.tensor([[[1.0, 2.0]], [[3.0, 0.5]], [[0.2, 0.4]]])       # [T=3, N=1, 2]
    model = _Tiny()
    # By hand: z_t = (x1, x2, x1+x2) = (1, 2, 3), (3, .5, 3.5), (.2, .4, .6); r = relu(z) * 0.5
    #   neuron 0: v 0 -> .5 (n 0) -> 2.0 (n 2, v 0) -> .1 (n 0)          counts 0, 2, 0
    #   neuron 1: v 0 -> 1.0 (n 1, v 0) -> .25 (n 0) -> .45 (n 0)        counts 1, 0, 0
    #   neuron 2: v 0 -> 1.5 (n 1, v .5) -> 2.25 (n 2, v .25) -> .55 (n 0)  counts 1, 2, 0
    counts = torch.tensor([[[0.0, 1, 1]], [[2, 0, 2]], [[0, 0, 0]]])
    spikes = 6                                  # sum |n|
    sops_lin2 = spikes * 4                      # fan-out = out_features of lin2
    macs_lin1 = 3 * 1 * 2 * 3                   # T * N * in * out, real input
    seen = []
    hook = model.act.register_forward_hook(lambda m, a, out: seen.append(m.counts(out)))
    with EnergyMeter(model) as meter:
        model(x)
    hook.remove()
    assert torch.equal(seen[0], counts.double())
    rep = meter.report()
    assert rep["layers"]["lin1"]["macs"] == macs_lin1 and rep["layers"]["lin1"]["sops"] == 0
    assert rep["layers"]["lin2"]["sops"] == sops_lin2 and rep["layers"]["lin2"]["macs"] == 0
    assert rep["total"]["energy_pj"] == pytest.approx(sops_lin2 * E_AC_PJ + macs_lin1 * E_MAC_PJ)
    assert rep["samples"] == 1
    act = rep["activity"]["act"]
    # bits: neuron maxima 2, 1, 2 -> 2, 1, 2 bits (no negative counts); events 1, 1, 2, 2 -> 1, 1, 2, 2 bits
    assert act["bits_of_activity"] == pytest.approx(5 / 3)
    assert act["significant_bits"] == pytest.approx(6 / 4)
    assert act["spikes"] == spikes and act["events"] == 4 and act["max_count"] == 2
    assert rep["total"]["bits_of_activity"] == pytest.approx(5 / 3)
    # without the count rule (dt={}: no layer reads counts) the graded rule reads n/dt = 2n as 2n spikes
    with EnergyMeter(model, graded=True, dt={}) as base:
        neuroq.reset_net(model)
        model(x)
    assert base.report()["layers"]["lin2"]["sops"] == 2 * sops_lin2


def test_per_feature_rule_and_memory_rule_by_hand():
    lin = nn.Linear(3, 5)
    # features 0, 1: counts at dt = 0.25 (values n / 0.25); feature 2: real
    x = torch.tensor([[4.0, -8.0, 0.3], [0.0, 4.0, -1.7]])
    ops = linear_count_ops(lin, x, dt=0.25)
    # |n|: feature 0 -> 1 + 0, feature 1 -> 2 + 1; SOPs = 4 * 5; MACs = 2 rows * 1 real feature * 5
    assert ops["sops"] == 4 * 5 and ops["macs"] == 2 * 5 and ops["spike_features"] == 2
    mem = LegendreMemory(order=2, theta=4.0)
    u_real = torch.tensor([[[0.3]], [[1.1]], [[-0.2]]])                   # [T=3, N=1, 1]
    assert memory_count_ops(mem, u_real, dt=1.0)["macs"] == 3 * 2 * 2 + 3 * 2  # A m: order^2, B u: order
    u_spk = torch.tensor([[[2.0]], [[0.0]], [[-1.0]]])                    # counts 2, 0, -1 at dt = 1
    ops = memory_count_ops(mem, u_spk, dt=1.0)
    assert ops["sops"] == 3 * 2 and ops["macs"] == 3 * 2 * 2


def test_meter_on_hybrid_lmu_follows_the_rules():
    torch.manual_seed(0)
    T, N, order, H = 16, 2, 4, 3
    model = hybrid_lmu_classifier(order=order, theta=8.0, hidden_size=H, dt=1.0, spiking_u=True, seed=0)
    rec = {}
    hooks = [m.register_forward_hook(lambda mod, a, o, k=k: rec.setdefault(k, []).append(o.detach()))
             for k, m in model.named_modules() if isinstance(m, SpikingActivation)]
    x = torch.rand(T, N, 1)
    with EnergyMeter(model) as meter:
        model(x)
    for h in hooks:
        h.remove()
    rep = meter.report()
    h_counts = torch.stack(rec["lmu.cell.hidden_cell.activation"])      # [T, N, H], dt = 1
    u_counts = rec["lmu.cell.u_activation"][0]                           # [T, N, 1]
    L = rep["layers"]
    assert L["lmu.cell.input_encoder"]["macs"] == T * N * 1 * 1
    # hidden kernel reads [spiking? no: real m ; real x] -> MACs on all order + 1 features
    assert L["lmu.cell.hidden_cell.kernel"]["macs"] == T * N * (order + 1) * H
    # recurrent kernel reads h_{t-1} (the first step has none): |n| * H SOPs
    assert L["lmu.cell.hidden_cell.recurrent_kernel"]["sops"] == float(h_counts[:-1].abs().sum()) * H
    assert L["readout"]["sops"] == float(h_counts[-1].abs().sum()) * 10
    assert L["lmu.cell.memory"]["sops"] == float(u_counts.abs().sum()) * order
    assert L["lmu.cell.memory"]["macs"] == T * N * order * order
    assert set(rep["activity"]) == {"lmu.cell.hidden_cell.activation", "lmu.cell.u_activation"}


def test_meter_dt_arguments():
    model = nn.Sequential(nn.Linear(2, 3), SpikingActivation(dt=0.5), nn.Linear(3, 2),
                          SpikingActivation(dt=2.0), nn.Linear(2, 2))
    with pytest.raises(ValueError, match="different dt"):
        EnergyMeter(model)
    with pytest.raises(ValueError, match="not synaptic layers"):
        EnergyMeter(model, dt={"nope": 1.0})
    m = EnergyMeter(model, dt={"2": 0.5, "4": 2.0})
    with m:
        model(torch.randn(4, 2))
    assert m.report()["layers"]["2"]["input"] == "spikes"
    with pytest.raises(ValueError, match="dt must be"):
        EnergyMeter(model, dt=-1.0)
