"""SpikingActivation's mechanics: closed form == step loop (bit for bit), the fixed-point arithmetic
against a plain float64 loop, state handling, argument checks and the dt schedule (the bits figures:
tests/functional/test_hybrid.py).

The paper's acceptance checks (ABR's pytorch-spiking, count conservation, gradient, reset, device,
dt -> large) are in tests/layer/test_hybrid_lmu.py."""
import json
import math

import pytest
import torch
import torch.nn as nn

import neuroq
from neuroq import _sj
from neuroq.functional import hybrid as FH
from neuroq.neuron.hybrid import SpikingActivation, SpikingSchedule


def _rates(T, shape, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, *shape, generator=g, dtype=torch.float64) * scale


# ---- closed form == loop ----------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 2, 37, 784])
@pytest.mark.parametrize("scale", [0.3, 3.0, 250.0])
def test_counts_closed_form_equals_step_loop_bit_for_bit(T, scale):
    r = _rates(T, (3, 11), scale, seed=T)
    v0 = torch.rand(3, 11, dtype=torch.float64)
    n_closed, v_closed = FH.spike_counts_multi_step(r, v0)
    v, ns = v0, []
    for rt in r.unbind(0):
        n, v = FH.spike_counts_step(rt, v)
        ns.append(n)
    assert torch.equal(n_closed, torch.stack(ns))
    assert torch.equal(v_closed, v)
    assert bool(((v >= 0) & (v < 1)).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("dt", [0.37, 1.0, 13.0])
def test_module_multi_step_equals_single_step_loop(dtype, dt):
    x = torch.randn(784, 4, 16, dtype=dtype) * 2
    v0 = torch.rand(4, 16)
    m_multi = SpikingActivation(torch.tanh, dt=dt, initial_state=v0, step_mode="m")
    m_single = SpikingActivation(torch.tanh, dt=dt, initial_state=v0, step_mode="s")
    a_multi = m_multi(x)
    a_single = torch.stack([m_single(xt) for xt in x.unbind(0)])
    assert a_multi.dtype == dtype
    assert torch.equal(a_multi, a_single)
    assert torch.equal(m_multi.v, m_single.v)


def test_state_carries_across_chunks():
    """Two multi-step calls without reset equal one call over the concatenated sequence."""
    x = torch.randn(50, 3, 5)
    v0 = torch.rand(3, 5)
    whole = SpikingActivation(nn.ReLU(), dt=0.8, initial_state=v0, step_mode="m")
    parts = SpikingActivation(nn.ReLU(), dt=0.8, initial_state=v0, step_mode="m")
    assert torch.equal(whole(x), torch.cat([parts(x[:20]), parts(x[20:])]))


def test_fixed_point_matches_plain_float64_loop():
    """Independent reference: the equations looped in plain float64 (v += r; n = floor(v); v -= n)."""
    r = _rates(784, (6, 40), 2.5, seed=3)
    v0 = torch.rand(6, 40, dtype=torch.float64)
    v, ns = v0.clone(), []
    for rt in r.unbind(0):
        v = v + rt
        n = torch.floor(v)
        v = v - n
        ns.append(n)
    n_ref = torch.stack(ns)
    n_ours, v_ours = FH.spike_counts_multi_step(r, v0)
    assert torch.equal(n_ours, n_ref)
    assert torch.allclose(v_ours, v, atol=1e-9)


def test_negative_counts_and_non_finite_rates():
    r = torch.tensor([[-0.4], [-0.4], [float("nan")], [-2.5], [float("inf")]], dtype=torch.float64)
    n, v = FH.spike_counts_multi_step(r, torch.full((1,), 0.5, dtype=torch.float64))
    # v: 0.5 -> 0.1 (n=0) -> -0.3 (n=-1, v=0.7) -> nan step (state kept) -> -1.8 (n=-2, v=0.2) -> inf
    assert n[0, 0] == 0 and n[1, 0] == -1 and math.isnan(n[2, 0]) and n[3, 0] == -2 and n[4, 0] == float("inf")
    assert torch.allclose(v, torch.tensor([0.2], dtype=torch.float64), atol=1e-12)


def test_too_many_steps_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(FH, "MAX_STEPS", 8)
    with pytest.raises(ValueError, match="at most 8 steps"):
        FH.spike_counts_multi_step(torch.zeros(9, 2), torch.zeros(2))


# ---- state ------------------------------------------------------------------------------------
def test_v_is_a_spikingjelly_memory_and_initial_states():
    act = SpikingActivation(step_mode="m", initial_state="zeros")
    assert "v" in act._memories and act.v is None
    act(torch.rand(3, 2, 4))
    assert act.v.shape == (2, 4) and act.v.dtype == torch.float64
    _sj.reset_net(nn.Sequential(act))
    assert act.v is None
    # zeros: the first step fires floor(f(x) dt)
    x = torch.tensor([[0.6, 1.7, 2.2]])
    assert torch.equal(SpikingActivation(dt=1.0, initial_state="zeros")(x), torch.tensor([[0.0, 1.0, 2.0]]))


def test_tensor_initial_state_broadcasts_and_moves_with_module():
    v0 = torch.tensor([0.0, 0.5, 0.9])
    act = SpikingActivation(nn.Identity(), dt=1.0, initial_state=v0)
    a = act(torch.full((2, 3), 0.3))
    assert torch.equal(a, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert "initial_v" in dict(act.named_buffers())
    act2 = act.double()
    assert act2.initial_v.dtype == torch.float64


def test_shape_change_without_reset_is_a_clear_error():
    act = SpikingActivation()
    act(torch.rand(4, 3))
    with pytest.raises(RuntimeError, match="reset_net"):
        act(torch.rand(5, 3))


def test_seeded_random_state_is_reproducible_and_reseedable():
    x = torch.rand(20, 4, 6)
    a1 = SpikingActivation(dt=0.5, seed=7, step_mode="m")
    a2 = SpikingActivation(dt=0.5, seed=7, step_mode="m")
    y1, y2 = a1(x), a2(x)
    assert torch.equal(y1, y2) and torch.equal(a1.v, a2.v)
    neuroq.reset_net(a1)
    y1b = a1(x)                       # the stream continues: a new initial state
    assert not torch.equal(y1b, y1)
    a1.reseed()
    neuroq.reset_net(a1)
    assert torch.equal(a1(x), y1)      # restarting the stream repeats the first draw
    fixed = SpikingActivation(dt=0.5, seed=7, step_mode="m", reseed_on_reset=True)
    z1 = fixed(x)
    neuroq.reset_net(fixed)
    assert torch.equal(fixed(x), z1) and torch.equal(z1, y1)


def test_seed_none_follows_torch_manual_seed():
    torch.manual_seed(123)
    s1 = SpikingActivation().seed
    torch.manual_seed(123)
    assert SpikingActivation().seed == s1


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="dt"):
        SpikingActivation(dt=0.0)
    with pytest.raises(ValueError, match="dt"):
        SpikingActivation(dt=float("inf"))
    with pytest.raises(TypeError, match="activation"):
        SpikingActivation(activation=3)
    with pytest.raises(ValueError, match="initial_state"):
        SpikingActivation(initial_state="uniform")
    with pytest.raises(ValueError, match=r"initial_state must hold values in \[0, 1\)"):
        SpikingActivation(initial_state=torch.tensor([0.2, 1.0]))
    with pytest.raises(ValueError, match="step_mode"):
        SpikingActivation(step_mode="x")
    with pytest.raises(ValueError, match="does not broadcast"):
        SpikingActivation(initial_state=torch.zeros(3))(torch.rand(2, 4))
    act = SpikingActivation()
    with pytest.raises(ValueError, match="dt"):
        act.dt = -1.0


def test_counts_helper_recovers_integers():
    act = SpikingActivation(torch.tanh, dt=3.0, step_mode="m")
    a = act(torch.randn(30, 2, 5) * 3)
    n = act.counts(a)
    assert torch.equal(n, torch.round(n)) and n.abs().max() <= 3
    assert torch.allclose((n / 3.0).float(), a)


# ---- schedule ---------------------------------------------------------------------------------
def test_schedule_geometric_linear_constant_and_warmup():
    s = SpikingSchedule(100.0, 1.0, epochs=4)
    dts = [s.dt_at(e) for e in range(6)]
    assert dts[0] == 100.0 and dts[4] == 1.0 and dts[5] == 1.0
    ratios = [dts[i + 1] / dts[i] for i in range(4)]
    assert all(math.isclose(r, 100.0 ** (-1 / 4)) for r in ratios)
    lin = SpikingSchedule(10.0, 2.0, epochs=4, kind="linear", warmup=2)
    assert [lin.dt_at(e) for e in (0, 2, 3, 6, 9)] == [10.0, 10.0, 8.0, 2.0, 2.0]
    assert lin.dt_at(2.5) == 9.0                       # fractional epochs
    assert SpikingSchedule(5.0, 2.0, 3, kind="constant").dt_at(0) == 2.0


def test_schedule_apply_sets_every_spiking_activation():
    model = nn.Sequential(nn.Linear(3, 4), SpikingActivation(dt=50.0), nn.Linear(4, 2),
                          nn.Sequential(SpikingActivation(torch.tanh, dt=7.0)))
    dt = SpikingSchedule(100.0, 1.0, epochs=2).apply(model, 1)
    assert dt == pytest.approx(10.0)
    assert [m.dt for m in model.modules() if isinstance(m, SpikingActivation)] == [dt, dt]
    with pytest.raises(ValueError, match="no SpikingActivation"):
        SpikingSchedule(1.0, 1.0, 1).apply(nn.Linear(2, 2), 0)


def test_schedule_serialises_to_json_and_string():
    s = SpikingSchedule(64.0, 0.5, epochs=6, kind="geometric", warmup=1)
    d = json.loads(json.dumps(s.to_dict()))
    assert SpikingSchedule.from_dict(d) == s
    assert SpikingSchedule.from_string("geometric:64:0.5:6:1") == s
    assert SpikingSchedule.from_string("linear:10:1:5").kind == "linear"
    with pytest.raises(ValueError, match="unknown keys"):
        SpikingSchedule.from_dict({**d, "foo": 1})
    with pytest.raises(ValueError, match="kind:start_dt:end_dt:epochs"):
        SpikingSchedule.from_string("geometric:64:0.5")
    with pytest.raises(ValueError, match="kind"):
        SpikingSchedule.from_string("cosine:64:0.5:3")
    with pytest.raises(ValueError, match="start_dt"):
        SpikingSchedule(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="epochs"):
        SpikingSchedule(2.0, 1.0, 0)


# ---- checkpoints -------------------------------------------------------------------------------
def test_dt_travels_with_the_state_dict():
    """A checkpoint taken during a SpikingSchedule reloads with the dt it was trained at."""
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), SpikingActivation(torch.tanh, dt=5.0))
    SpikingSchedule(100.0, 1.0, epochs=4).apply(net, 2)          # dt = 100 * 0.01 ** 0.5 = 10
    sd = net.state_dict()
    assert sd["1._extra_state"] == {"dt": 10.0}
    other = torch.nn.Sequential(torch.nn.Linear(3, 4), SpikingActivation(torch.tanh, dt=1.0))
    other.load_state_dict(sd)
    assert other[1].dt == 10.0
    with pytest.raises(ValueError, match="dt"):
        other[1].set_extra_state({"tau": 1.0})
    with pytest.raises(ValueError, match="dt"):
        other[1].set_extra_state({"dt": 0.0})
