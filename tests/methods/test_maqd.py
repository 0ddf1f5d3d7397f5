"""MaQD: scaled round-clip quantizers, quantized layers, Layer-Batch Normalization, integer export."""
import math

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroq import quant as Q
from neuroq.energy import EnergyMeter
from neuroq.layer import LayerBatchNorm1d, LayerBatchNorm2d, QuantAct, QuantConv2d, QuantLinear, fold
from neuroq.models import maqd_cnn, maqd_mlp

HSET = settings(max_examples=25, deadline=None)


@pytest.fixture
def one_thread():
    """Training loops are far faster on one thread on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
shapes = st.lists(st.integers(1, 6), min_size=1, max_size=4)
deltas = st.floats(0.01, 10.0, allow_nan=False, allow_infinity=False)


def _cover(delta, lo, hi, shape, seed, offset=0.0):
    """Random tensor of ``shape`` plus a grid that reaches every bin of [lo, hi] (and beyond)."""
    g = torch.Generator().manual_seed(seed)
    rnd = (torch.randn(shape, generator=g, dtype=torch.float64) * (hi - lo + 2) * delta / 2).flatten()
    grid = torch.linspace(lo - 2, hi + 2, int(8 * (hi - lo + 4)), dtype=torch.float64) * delta + offset
    return torch.cat([rnd, grid])


# ---------------------------------------------------------------- quantizer levels


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_weight_quantizer_has_exactly_M_symmetric_levels(M, delta, shape, seed):
    c = (M - 1) / 2
    x = _cover(delta, -c, c, shape, seed)
    q = Q.quantize_weight(x, M, delta)
    levels = torch.unique(q)
    assert levels.numel() == M
    expect = delta * (torch.arange(M, dtype=torch.float64) - c)
    assert torch.allclose(levels, expect, rtol=0, atol=1e-12 * delta)
    assert torch.allclose(levels, -levels.flip(0), rtol=0, atol=1e-12 * delta)  # symmetric about 0
    assert (0.0 in levels.tolist()) == (M % 2 == 1)  # odd M includes 0, even M does not


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_activation_quantizer_has_exactly_M_nonnegative_levels(M, delta, shape, seed):
    x = _cover(delta, 0, M - 1, shape, seed)
    q = Q.quantize_activation(x, M, delta)
    levels = torch.unique(q)
    assert levels.numel() == M
    assert torch.equal(levels, delta * torch.arange(M, dtype=torch.float64))


@HSET
@given(M=st.integers(2, 17), delta=deltas, shape=shapes, seed=st.integers(0, 10_000))
def test_quantizers_are_idempotent(M, delta, shape, seed):
    x = _cover(delta, -M, M, shape, seed)
    qw = Q.quantize_weight(x, M, delta)
    assert torch.equal(Q.quantize_weight(qw, M, delta), qw)
    qa = Q.quantize_activation(x, M, delta)
    assert torch.equal(Q.quantize_activation(qa, M, delta), qa)
    r = Q.round_clip(x, delta, -3, 5)
    assert torch.equal(Q.round_clip(r, delta, -3, 5), r)


def test_round_clip_definition_and_round_half_up():
    x = torch.tensor([-10.0, -1.5, -0.5, 0.0, 0.49, 0.5, 1.5, 2.5, 10.0])
    got = Q.round_clip(x, 1.0, -1, 2)
    assert got.tolist() == [-1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0]
    # delta scales input and output
    assert torch.equal(Q.round_clip(3 * x, 3.0, -1, 2), 3 * got)


def test_two_activation_states_are_spikes():
    h = torch.randn(1000, dtype=torch.float64) * 2
    act = QuantAct(2)
    s = act(h)
    assert torch.equal(s, (h >= 0.5).to(h.dtype))  # Theta(h - Delta/2) with Delta = 1
    assert act.v_threshold == 0.5


# ---------------------------------------------------------------- gradients


@HSET
@given(M=st.integers(2, 9), delta=st.floats(0.1, 5.0), seed=st.integers(0, 10_000))
def test_ste_gradient_is_one_inside_clip_range_and_zero_outside(M, delta, seed):
    g = torch.Generator().manual_seed(seed)
    # activations: clip range [0, (M-1) delta]
    z = (torch.rand(500, generator=g, dtype=torch.float64) * (M + 3) - 2)
    z = z[(z - z.round()).abs() > 1e-6]  # keep away from the range ends
    h = (z * delta).requires_grad_(True)
    Q.quantize_activation(h, M, delta).sum().backward()
    inside = (z >= 0) & (z <= M - 1)
    assert torch.equal(h.grad, inside.to(h.dtype))
    assert inside.any() and (~inside).any()
    # weights: clip range |w| <= c delta
    c = (M - 1) / 2
    w = ((torch.rand(500, generator=g, dtype=torch.float64) * 2 - 1) * (c + 2) * delta)
    w = w[((w.abs() / delta) - c).abs() > 1e-6].requires_grad_(True)
    Q.quantize_weight(w, M, delta).sum().backward()
    assert torch.equal(w.grad, (w.detach().abs() <= c * delta).to(w.dtype))


def test_surrogate_backward_is_sum_of_step_surrogates():
    from spikingjelly.activation_based import surrogate

    alpha, M, delta = 4.0, 4, 0.7
    h = torch.linspace(-2, 4, 301, dtype=torch.float64).requires_grad_(True)
    q = Q.quantize_activation(h, M, delta, surrogate=surrogate.Sigmoid(alpha=alpha))
    assert torch.equal(q.detach(), Q.quantize_activation(h.detach(), M, delta))  # same forward
    q.sum().backward()
    z = h.detach() / delta
    expect = torch.zeros_like(z)
    for k in range(1, M):
        s = torch.sigmoid(alpha * (z - k + 0.5))
        expect += alpha * s * (1 - s)  # d/dh [delta * sg(h/delta - k + 1/2)] = sg'(.)
    assert torch.allclose(h.grad, expect, atol=1e-12)


def test_s2nn_surrogate_plugs_in():
    S = pytest.importorskip("neuroq.surrogate")
    sg = S.S2NN(t_ref=4, alpha=4.0)
    act = QuantAct(3, surrogate=sg)  # a_range 1: step 1/2
    assert act.step == 0.5
    h = torch.linspace(-1, 3, 201, dtype=torch.float64).requires_grad_(True)
    a = act(h)
    assert torch.equal(a.detach(), Q.quantize_activation(h.detach(), 3, 0.5))
    a.sum().backward()
    expect = sum(sg.gradient(h.detach() / 0.5 - k + 0.5) for k in (1, 2))
    assert torch.allclose(h.grad, expect, atol=1e-12)
    assert QuantAct(2, surrogate="s2nn").quantizer.surrogate is not None


@pytest.mark.parametrize("M", [2, 3, 16, 64])
def test_quant_act_range_is_fixed_and_tends_to_clipped_relu(M):
    r = 1.5
    act = QuantAct(M, a_range=r)
    h = torch.linspace(-2, 4, 2001, dtype=torch.float64)
    a = act(h)
    assert float(a.min()) == 0.0 and abs(float(a.max()) - r) < 1e-12  # output range [0, r] for every M
    assert torch.unique(a).numel() == M
    assert float((a - h.clamp(0, r)).abs().max()) <= act.step / 2 + 1e-12  # error <= half a step


def test_gaussian_mse_step_binary_closed_form_and_monotone():
    # M = 2: the optimal level is E|X| = sqrt(2/pi), i.e. step 2 sqrt(2/pi)
    assert abs(Q.gaussian_mse_step(2) - 2 * math.sqrt(2 / math.pi)) < 1e-3
    steps = [Q.gaussian_mse_step(m) for m in (2, 3, 5, 16)]
    assert steps == sorted(steps, reverse=True)


# ---------------------------------------------------------------- quantized layers


def test_quant_layers_weight_standardization_and_levels():
    torch.manual_seed(0)
    conv = QuantConv2d(4, 6, 3, w_states=5)
    w_hat = conv.standardized_weight()
    assert torch.allclose(w_hat.mean((1, 2, 3)), torch.zeros(6), atol=1e-5)
    v = conv.weight.detach().var((1, 2, 3), unbiased=False)
    assert torch.allclose(w_hat.var((1, 2, 3), unbiased=False), v / (v + conv.ws_eps), atol=1e-6)
    wq = conv.quantized_weight()
    assert torch.unique(wq).numel() == 5
    ints, scale = conv.integer_weight()
    assert torch.equal(ints.float() * scale.view(-1, 1, 1, 1), wq.detach())
    lin = QuantLinear(30, 5, w_states=4, gain=True)
    ints, scale = lin.integer_weight()
    assert set(torch.unique(ints).tolist()) <= {-3, -1, 1, 3}
    assert torch.allclose(ints.float() * scale.view(-1, 1), lin.quantized_weight().detach(), atol=1e-7)
    # full-precision master weights receive gradients
    x = torch.randn(2, 4, 5, 5)
    conv(x).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_argument_validation_names_the_argument():
    with pytest.raises(ValueError, match="w_states"):
        QuantConv2d(1, 2, 3, w_states=1)
    with pytest.raises(ValueError, match="a_states"):
        QuantAct(1)
    with pytest.raises(ValueError, match="reading"):
        LayerBatchNorm2d(4, reading="c")
    with pytest.raises(ValueError, match="delta"):
        Q.round_clip(torch.zeros(3), 0.0, 0, 1)
    with pytest.raises(ValueError, match="hi"):
        Q.round_clip(torch.zeros(3), 1.0, 2, 1)
    with pytest.raises(ValueError, match="num_features"):
        LayerBatchNorm2d(4)(torch.zeros(2, 3, 4, 4))


# ---------------------------------------------------------------- LBN


def _lbn_data(n=64, c=8, hw=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    # per-channel offsets and scales so channel statistics differ
    off = torch.randn(1, c, 1, 1, generator=g) * 2
    sc = torch.rand(1, c, 1, 1, generator=g) + 0.5
    return torch.randn(n, c, hw, hw, generator=g) * sc + off


@pytest.mark.parametrize("reading", ["a", "b"])
def test_lbn_eval_output_of_a_sample_does_not_depend_on_the_batch(reading):
    torch.manual_seed(0)
    lbn = LayerBatchNorm2d(8, reading=reading)
    with torch.no_grad():
        lbn.weight.uniform_(0.5, 1.5)
        lbn.bias.uniform_(-1, 1)
    x = _lbn_data()
    for _ in range(20):
        lbn(x)  # fill running statistics
    lbn.eval()
    alone = lbn(x[5:6])
    batch = lbn(x)[5:6]
    assert torch.equal(alone, batch)


def test_lbn_training_mode_batch_dependence_measured():
    """Training mode: reading (b) is per-sample (no batch dependence up to float rounding); reading (a)
    depends on the batch through one layer-wide mean/var, much less than BatchNorm's per-channel ones."""
    x = _lbn_data()
    diffs = {}
    for name, mod in [("lbn-a", LayerBatchNorm2d(8, reading="a")), ("lbn-b", LayerBatchNorm2d(8, reading="b")),
                      ("bn", nn.BatchNorm2d(8))]:
        mod.train()
        with torch.no_grad():
            diffs[name] = float((mod(x[5:6]) - mod(x)[5:6]).abs().max())
    print("train-mode max |alone - in batch of 64|:", diffs)
    assert diffs["lbn-b"] < 1e-5
    assert diffs["lbn-a"] < diffs["bn"]
    # reading (a) in training normalises the whole tensor (identity affine): zero mean, unit variance
    with torch.no_grad():
        y = LayerBatchNorm2d(8)(x)
    assert abs(float(y.mean())) < 1e-5 and abs(float(y.var(unbiased=False)) - 1) < 1e-4


def test_lbn_running_statistics_converge_to_layer_moments():
    x = _lbn_data(n=32)
    lbn = LayerBatchNorm2d(8, momentum=0.5)
    for _ in range(60):
        lbn(x)
    assert torch.allclose(lbn.running_mean, x.mean(), atol=1e-5)
    assert torch.allclose(lbn.running_var, x.var(), rtol=1e-4)
    lbn1 = LayerBatchNorm1d(5, reading="b", momentum=1.0)
    z = torch.randn(16, 5)
    lbn1(z)
    assert torch.allclose(lbn1.running_mean, z.mean(1).mean(), atol=1e-6)


@pytest.mark.parametrize("layer_kind", ["quantconv", "conv", "quantlinear"])
def test_folding_preserves_eval_outputs(layer_kind):
    torch.manual_seed(1)
    if layer_kind == "quantlinear":
        layer, norm, x = QuantLinear(20, 7, w_states=3), LayerBatchNorm1d(7), torch.randn(32, 20)
    else:
        layer = QuantConv2d(3, 6, 3, padding=1, bias=True, w_states=3) if layer_kind == "quantconv" \
            else nn.Conv2d(3, 6, 3, padding=1)
        norm, x = LayerBatchNorm2d(6), torch.randn(16, 3, 8, 8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
        for _ in range(10):
            norm(layer(x))
    norm.eval()
    layer.eval()
    folded = fold(layer, norm)
    with torch.no_grad():
        ref = norm(layer(x))
        got = folded(x)
    assert torch.allclose(ref, got, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- export


@pytest.mark.parametrize("w_states,a_states", [(3, 2), (4, 3), (16, 16)])
def test_exported_integer_inference_equals_fake_quantized(w_states, a_states, one_thread):
    torch.manual_seed(2)
    model = maqd_cnn((1, 8, 8), 10, w_states, a_states, channels=(6, 8))
    x = torch.rand(1, 24, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    y = torch.randint(0, 10, (24,))
    for _ in range(5):  # move weights, LBN affine and running statistics away from their init
        opt.zero_grad()
        nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    model = model.double()
    xd = x.double()
    res = Q.check_export(model, xd, atol=1e-9, rtol=1e-9)
    assert res["ok"], res
    assert res["argmax_agreement"] == 1.0
    ex = Q.export(model)
    for name, rec in ex.items():
        assert torch.unique(rec["int_weight"]).numel() <= w_states
        assert rec["int_weight"].dtype == torch.int32
    # LBNs were folded into the conv scales; the layers after QuantAct received integers
    assert all(rec["folded_norm"] for rec in ex.values() if rec["kind"] == "conv2d")
    ints = res["integer_inputs"]
    assert list(ints.values())[1:] == [True] * (len(ints) - 1)
    # the comparison is not vacuous: a perturbed integer weight changes the output
    first = next(iter(ex))
    ex[first]["int_weight"] = ex[first]["int_weight"].clone()
    ex[first]["int_weight"][0].fill_(0)
    model.eval()
    out_bad, _ = Q.integer_forward(model, ex, xd)
    assert not torch.allclose(out_bad, model(xd), atol=1e-9)


# ---------------------------------------------------------------- training / CLI / energy


def test_maqd_spiking_mlp_learns_digits(one_thread):
    from neuroq.data import load_dataset

    torch.manual_seed(0)
    ds = load_dataset("digits")
    model = maqd_mlp(64, (64,), 10, w_states=3, a_states=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(4):
        perm = torch.randperm(len(ds.x_train), generator=g)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(ds.x_train[b][None])[0], ds.y_train[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(ds.x_test[None])[0].argmax(1) == ds.y_test).float().mean())
    assert acc > 0.8, acc


def test_cli_method_registered_with_state_options():
    from neuroq.cli import build_parser, train_configs

    args = build_parser().parse_args(["train", "--method", "maqd", "--w-states", "5", "--a-states", "fp",
                                      "--norm", "lbn-b"])
    assert args.w_states == 5 and args.a_states is None
    from neuroq.data import load_dataset

    method, _ = train_configs(args)
    assert method.config.w_states == 5 and method.config.a_states is None and method.config.norm == "lbn-b"
    model = method.build_model(load_dataset("digits"))
    qls = [m for m in model.modules() if isinstance(m, QuantLinear)]
    assert qls and all(m.w_states == 5 for m in qls)
    assert all(m.a_states is None for m in model.modules() if isinstance(m, QuantAct))
    assert all(m.reading == "b" for m in model.modules() if isinstance(m, LayerBatchNorm1d))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--method", "maqd", "--w-states", "1"])


def test_energy_meter_counts_quant_layers_and_spikes():
    torch.manual_seed(0)
    model = maqd_cnn((1, 8, 8), 10, 3, 2, channels=(4, 4)).eval()
    x = torch.rand(1, 5, 1, 8, 8)
    with torch.no_grad(), EnergyMeter(model) as meter:
        model(x)
    rep = meter.report()
    kinds = {k: v["input"] for k, v in rep["layers"].items()}
    assert list(kinds.values()) == ["real", "spikes", "spikes"]
    assert rep["samples"] == 5
    assert len(rep["neurons"]) == 2  # the two QuantAct (M_a = 2) layers


def test_maqd_cnn_edge_layers_can_use_other_states():
    m = maqd_cnn((1, 8, 8), 10, 3, 2, channels=(4, 4), edge_w_states=16)
    assert [q.w_states for q in m.modules() if isinstance(q, (QuantConv2d, QuantLinear))] == [16, 3, 16]
    m = maqd_cnn((1, 8, 8), 10, 3, 2, channels=(4, 4), edge_w_states=None)
    assert [q.w_states for q in m.modules() if isinstance(q, (QuantConv2d, QuantLinear))] == [None, 3, None]
