"""MaQD (Sawada, Saiin, Suetake, arXiv 2403.14999): quantized layers, Layer-Batch Normalization, training,
the CLI method and its energy (the quantizers: tests/functional/test_quant.py; the integer export:
tests/quant/test_integer.py)."""
import pytest
import torch
import torch.nn as nn

from neuroq import quant as Q
from neuroq.energy import EnergyMeter
from neuroq.layer import LayerBatchNorm1d, LayerBatchNorm2d, QuantAct, QuantConv2d, QuantLinear, fold
from neuroq.models import maqd_cnn, maqd_mlp


@pytest.fixture
def one_thread():
    """Training loops are far faster on one thread on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---------------------------------------------------------------- surrogate gradients and activation range


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


def test_two_activation_states_are_spikes():
    h = torch.randn(1000, dtype=torch.float64) * 2
    act = QuantAct(2)
    s = act(h)
    assert torch.equal(s, (h >= 0.5).to(h.dtype))  # Theta(h - Delta/2) with Delta = 1
    assert act.v_threshold == 0.5


def test_the_published_s2nn_surrogate_is_a_maqd_activation_backward():
    """``surrogate='s2nn-published'``: the 2-state activations train with SpikingJelly's S2NN surrogate."""
    from neuroq.data import load_dataset
    from neuroq.layer import QuantAct
    from neuroq.training import get

    data = load_dataset("digits", limit_train=10, limit_test=10)
    model = get("maqd", w_states=3, a_states=2, surrogate="s2nn-published").build_model(data)
    acts = [m for m in model.modules() if isinstance(m, QuantAct)]
    assert acts and all(type(a.quantizer.surrogate).__name__ == "S2NN" and
                        type(a.quantizer.surrogate).__module__.startswith("spikingjelly") for a in acts)


def test_every_ablation_of_the_example_builds_its_config():
    """The example's ablations (first/last layers at 16 states, other surrogates) are valid configs: a field
    typed as several kinds (``edge_w_states``: 'same', 'fp', None or an integer) takes each of them."""
    from examples.maqd_fashion_mnist import ABLATIONS
    from neuroq.training import get

    for name, w, a, edge, surrogate in ABLATIONS:
        cfg = get("maqd", w_states=w, a_states=a, edge_w_states=edge, surrogate=surrogate).config
        assert cfg.edge_w_states == edge, name
    for bad in (1, 2.5, "x"):
        with pytest.raises(ValueError, match="edge_w_states"):
            get("maqd", edge_w_states=bad)
