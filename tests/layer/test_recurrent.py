"""SpikingRNN against an explicit loop of its equations and SpikingJelly's LIFNode; the sequence
classifiers of neuroq.models.rnn."""
import pytest
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional as sjf
from spikingjelly.activation_based import neuron as sjn
from spikingjelly.activation_based import surrogate

from neuroq.energy import EnergyMeter
from neuroq.layer.recurrent import SpikingRNN
from neuroq.data import image_to_sequence
from neuroq.models.rnn import IRNNClassifier, SpikingRNNClassifier


def _explicit(rnn: SpikingRNN, x_seq, sg):
    """The docstring's equations written out (no neuroq code): returns (spikes, v_T, v_seq)."""
    Wx, b, Wh = rnn.ih.weight, rnn.ih.bias, rnn.hh.weight
    T, N, _ = x_seq.shape
    m = Wh.shape[0]
    vr = 0.0 if rnn.v_reset is None else rnn.v_reset
    v = torch.full((N, m), vr, dtype=x_seq.dtype)
    s = torch.zeros(N, m, dtype=x_seq.dtype)
    out, vs = [], []
    for t in range(T):
        cur = x_seq[t] @ Wx.T + b + s @ Wh.T
        if rnn.decay_input:
            h = v + (cur - (v - vr)) / rnn.tau
        else:
            h = v - (v - vr) / rnn.tau + cur
        s = sg(h - rnn.v_threshold)
        v = h - s * rnn.v_threshold if rnn.v_reset is None else h * (1 - s) + rnn.v_reset * s
        out.append(s)
        vs.append(v)
    return torch.stack(out), v, torch.stack(vs)


@pytest.mark.parametrize("v_reset", [0.0, None, -0.3])
@pytest.mark.parametrize("decay_input", [True, False])
def test_matches_explicit_equations_values_and_gradients(v_reset, decay_input):
    sg = surrogate.ATan(alpha=2.0)
    rnn = SpikingRNN(6, 9, tau=2.5, decay_input=decay_input, v_reset=v_reset, surrogate_function=sg,
                     store_v_seq=True).double()
    with torch.no_grad():
        rnn.hh.weight.mul_(3.0)
    x = (torch.randn(12, 4, 6, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
    s1 = rnn(x)
    s2, v2, vseq2 = _explicit(rnn, x, sg)
    assert torch.equal(s1, s2)
    assert 0 < float(s1.detach().mean()) < 1
    torch.testing.assert_close(rnn.v, v2, atol=1e-12, rtol=0)
    torch.testing.assert_close(rnn.v_seq, vseq2, atol=1e-12, rtol=0)
    w = torch.randn_like(s1)
    params = [x, rnn.ih.weight, rnn.hh.weight]
    g1 = torch.autograd.grad((s1 * w).sum(), params)
    g2 = torch.autograd.grad((s2 * w).sum(), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert float(g1[2].abs().sum()) > 0  # the gradient reaches the recurrent weights


def test_without_recurrence_equals_spikingjelly_lif():
    rnn = SpikingRNN(5, 7, tau=3.0, v_reset=None)
    with torch.no_grad():
        rnn.hh.weight.zero_()
    x = torch.randn(10, 3, 5) * 2
    ref = sjn.LIFNode(tau=3.0, v_reset=None, step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0))
    with torch.no_grad():
        assert torch.equal(rnn(x), ref(rnn.ih(x)))


def test_single_step_equals_multi_step_and_reset_net():
    rnn = SpikingRNN(4, 6, v_threshold=0.5)
    x = torch.rand(8, 2, 4) * 2
    with torch.no_grad():
        out_m = rnn(x)
        carried = rnn(x)                       # state carried over: not the same as a fresh run
        sjf.reset_net(rnn)
        again = rnn(x)
        sjf.reset_net(rnn)
        rnn.step_mode = "s"
        out_s = torch.stack([rnn(xt) for xt in x.unbind(0)])
    assert torch.equal(out_m, again) and torch.equal(out_m, out_s)
    assert not torch.equal(out_m, carried)
    sjf.reset_net(rnn)
    assert rnn.v == 0.0 and rnn.s == 0.0
    rnn.step_mode = "m"
    rnn(x)
    with pytest.raises(RuntimeError, match="reset_net"):
        rnn(torch.rand(8, 5, 4))


def test_energy_meter_counts_recurrent_synops():
    rnn = SpikingRNN(4, 6, v_threshold=0.5)
    x = torch.rand(9, 3, 4) * 2
    with EnergyMeter(rnn) as meter, torch.no_grad():
        s = rnn(x)
    rep = meter.layers
    # spikes of steps 1..T-1 reach the next step through hh (fan-out = hidden_size); the last step's do not
    assert rep["hh"]["sops"] == pytest.approx(float(s[:-1].sum()) * 6)
    assert rep["ih"]["macs"] == 9 * 3 * 4 * 6  # real-valued input: MACs
    assert float(s[:-1].sum()) > 0


def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="hidden_size"):
        SpikingRNN(3, 0)
    with pytest.raises(ValueError, match="tau"):
        SpikingRNN(3, 4, tau=1.0)
    with pytest.raises(ValueError, match="step_mode"):
        SpikingRNN(3, 4, step_mode="x")
    rnn = SpikingRNN(3, 4)
    with pytest.raises(ValueError, match=r"\[T, N, input_size\]"):
        rnn(torch.rand(5, 2, 7))
    with pytest.raises(ValueError, match="rank"):
        rnn(torch.rand(3))


def test_image_to_sequence_rows_and_pixels():
    x = torch.rand(3, 2, 4, 5)
    rows = image_to_sequence(x, "rows")
    pix = image_to_sequence(x, "pixels")
    assert rows.shape == (4, 3, 10) and pix.shape == (20, 3, 2)
    for t in range(4):
        assert torch.equal(rows[t], torch.cat([x[:, 0, t], x[:, 1, t]], dim=1))
    for i in range(4):
        for j in range(5):
            assert torch.equal(pix[i * 5 + j], x[:, :, i, j])
    perm = torch.randperm(20)
    assert torch.equal(image_to_sequence(x, "pixels", perm), pix[perm])
    with pytest.raises(ValueError, match="permutation"):
        image_to_sequence(x, "pixels", torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="mode"):
        image_to_sequence(x, "cols")


def test_irnn_initialisation_and_classifiers():
    m = IRNNClassifier(28, 16, 10, num_layers=2, sequence="rows")
    for k in range(2):
        assert torch.equal(getattr(m.rnn, f"weight_hh_l{k}"), torch.eye(16))
        assert not getattr(m.rnn, f"bias_ih_l{k}").any() and not getattr(m.rnn, f"bias_hh_l{k}").any()
    assert m.rnn.nonlinearity == "relu"
    assert float(m.rnn.weight_ih_l0.detach().std()) == pytest.approx(1e-3, rel=0.2)
    x = torch.rand(4, 1, 28, 28)
    assert m(x).shape == (4, 10)
    # the last-step readout is the readout of nn.RNN's last output
    h, _ = m.rnn(image_to_sequence(x))
    torch.testing.assert_close(m(x), m.readout(h[-1]))
    s = SpikingRNNClassifier(1, 12, 10, sequence="pixels", tau=2.0)
    out = s(x[:, :, :6, :6])
    assert out.shape == (4, 10)
    sjf.reset_net(s)
    with pytest.raises(ValueError, match="sequence"):
        IRNNClassifier(28, 8, 10)(x)
    assert isinstance(s.readout, nn.Linear) and s.readout.in_features == 12
