"""Acceptance checks of spectral pruning (Furuya et al., AISTATS 2022; issue 13).

* keep = all units gives identical outputs;
* units that are exact linear combinations of kept units are pruned with no change of output
  (to 1e-6) as lambda -> 0 (ReLU, tanh, stacked and spiking RNNs);
* the absorbed reconstruction equals the ridge least-squares solution computed independently
  (numpy lstsq on the augmented system) on the states the layer produces;
* the input (and output) loss never increases as units are added along the selection path;
* parameter counts of the pruned module;
* the LMU's hidden state (neuroq.layer.lmu) prunes the same way: keep = all is the identity and units
  that copy kept units are removed without change (feed-forward and recurrent hidden cells, the
  hidden-to-memory encoder, a hybrid-spiking hidden activation); a per-unit Lowpass is refused;
* the sequence methods ``irnn`` / ``srnn`` train through the library loop (images are read row by
  row), their gradient clipping
  equals the closed form g * min(1, c / ||g||), and a pruned network fine-tunes through the same loop.
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
from sklearn.datasets import load_digits
from spikingjelly.activation_based import functional as sjf

from neuroq.data import ArrayDataset, TaskData
from neuroq.layer.lmu import LMU
from neuroq.layer.recurrent import SpikingRNN
from neuroq.models.lmu import LMUClassifier, hybrid_lmu_classifier
from neuroq.neuron.hybrid import SpikingActivation
from neuroq.training import TrainConfig, evaluate, fit, get
from neuroq.training.methods.rnn import clip_gradients_on_step
from neuroq.models.rnn import IRNNClassifier, SpikingRNNClassifier
from neuroq.prune import magnitude_prune, random_prune, spectral_prune

D = torch.float64


def np_ridge(H, J, lam):
    """argmin_A (1/N)||H - H_J A^T||^2 + lam ||A||^2 (augmented least squares)."""
    N, m = H.shape
    Xa = np.vstack([H[:, J], np.sqrt(N * lam) * np.eye(len(J))])
    Ya = np.vstack([H, np.zeros((len(J), m))])
    return np.linalg.lstsq(Xa, Ya, rcond=None)[0].T


class Net(nn.Module):
    """nn.RNN + linear readout of the last step."""

    def __init__(self, inp=3, hidden=9, nonlinearity="tanh", layers=1, batch_first=False, dtype=torch.float32):
        super().__init__()
        self.rnn = nn.RNN(inp, hidden, layers, nonlinearity=nonlinearity, batch_first=batch_first, dtype=dtype)
        self.readout = nn.Linear(hidden, 4, dtype=dtype)
        self.bf = batch_first

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.readout(h[:, -1] if self.bf else h[-1])


def _seq(n, T=7, N=6, inp=3, dtype=torch.float32, positive=False, batch_first=False):
    xs = [torch.rand(T, N, inp, dtype=dtype) if positive else torch.randn(T, N, inp, dtype=dtype) for _ in range(n)]
    return [x.transpose(0, 1).contiguous() if batch_first else x for x in xs]


def _drive(rnn):
    """Weights under which most units of a SpikingRNN fire at intermediate rates on inputs in [0, 1]."""
    with torch.no_grad():
        rnn.ih.weight.normal_(0, 1.0)
        rnn.ih.bias.uniform_(0.2, 0.8)
        rnn.hh.weight.normal_(0, 0.4)
    return rnn


def _spiking(hidden=9):
    return nn.Sequential(_drive(SpikingRNN(3, hidden, v_threshold=0.5)), nn.Linear(hidden, 4))


def _out(model, x):
    sjf.reset_net(model)
    with torch.no_grad():
        y = model(x)
    sjf.reset_net(model)
    return y


# ---- keep = all --------------------------------------------------------------------------------------
@pytest.mark.parametrize("selection", ["greedy", "pivoted"])
@pytest.mark.parametrize("case", ["tanh", "relu", "batch_first", "stacked", "spiking", "irnn"])
def test_keep_all_units_gives_identical_outputs(case, selection):
    bf = case == "batch_first"
    if case == "spiking":
        model = _spiking()
    elif case == "irnn":
        model = IRNNClassifier(3, 9, 4, input_std=0.5)
    else:
        model = Net(nonlinearity="relu" if case in ("relu", "stacked") else "tanh",
                    layers=2 if case == "stacked" else 1, batch_first=bf)
    data = _seq(3, batch_first=bf, positive=case == "spiking")
    pruned, rep = spectral_prune(model, data, keep=1.0, lam=1e-2, selection=selection)
    assert rep.keep == 9 and rep.lam[0] > 0
    x = _seq(1, N=5, batch_first=bf, positive=case == "spiking")[0]
    assert torch.equal(_out(pruned, x), _out(model, x))
    assert rep.params_after == rep.params_before


# ---- exact linear combinations ------------------------------------------------------------------------
def _relu_linear_regime(m=10, k=4, inp=3, seed=0):
    """A ReLU RNN whose states are h_t = C g_t (rank k, pre-activations > 0 on inputs x >= 0):
    W_hh = C W_g C^+, W_ih = C U_g, b = C b_g, so every unit is a linear combination of k others."""
    g = torch.Generator().manual_seed(seed)
    Wg = torch.rand(k, k, generator=g, dtype=D) * 0.5 / k
    Ug = torch.rand(k, inp, generator=g, dtype=D)
    bg = torch.rand(k, generator=g, dtype=D) + 0.1
    C = torch.cat([torch.eye(k, dtype=D), torch.rand(m - k, k, generator=g, dtype=D)])[torch.randperm(m, generator=g)]
    net = Net(inp, m, "relu", dtype=D)
    with torch.no_grad():
        net.rnn.weight_hh_l0.copy_(C @ Wg @ torch.linalg.pinv(C))
        net.rnn.weight_ih_l0.copy_(C @ Ug)
        net.rnn.bias_ih_l0.copy_(0.3 * C @ bg)        # the two biases differ; only their sum matters
        net.rnn.bias_hh_l0.copy_(0.7 * C @ bg)
    return net


def _tanh_with_copies(base=6, seed=1):
    """tanh RNN: units 6, 7 copy units 0, 3 and unit 8 is the negative of unit 4 (tanh is odd): their
    rows (input weights, biases, recurrent weights over the whole state) are (-1 x) the sources'."""
    torch.manual_seed(seed)
    src, sign = [0, 3, 4], torch.tensor([1.0, 1.0, -1.0], dtype=D)
    net = Net(3, base + 3, "tanh", dtype=D)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            w = getattr(net.rnn, name)
            w[base:] = w[src] * (sign[:, None] if w.dim() == 2 else sign)
    return net


def _spiking_with_copies(base=6, seed=2):
    torch.manual_seed(seed)
    net = nn.Sequential(_drive(SpikingRNN(3, base + 3, v_threshold=0.5)).double(), nn.Linear(base + 3, 4).double())
    r = net[0]
    with torch.no_grad():
        r.ih.weight[base:] = r.ih.weight[[0, 2, 5]]
        r.ih.bias[base:] = r.ih.bias[[0, 2, 5]]
        r.hh.weight[base:] = r.hh.weight[[0, 2, 5]]
    return net


def _stacked_with_copies(base=5, seed=3):
    """Two-layer ReLU nn.RNN (batch_first): in both layers units 5, 6 copy units 1, 3."""
    torch.manual_seed(seed)
    net = Net(3, base + 2, "relu", layers=2, batch_first=True, dtype=D)
    with torch.no_grad():
        for k in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                w = getattr(net.rnn, f"{name}_l{k}")
                w[base:] = w[[1, 3]].clone()
    return net


CASES = {
    "relu_linear_regime": (lambda: _relu_linear_regime(), 4, dict(positive=True, dtype=D)),
    "tanh_copies": (lambda: _tanh_with_copies(), 6, dict(dtype=D)),
    "stacked_copies": (lambda: _stacked_with_copies(), 5, dict(dtype=D, batch_first=True)),
    "spiking_copies": (lambda: _spiking_with_copies(), 6, dict(dtype=D, positive=True)),
}


@pytest.mark.parametrize("selection", ["greedy", "pivoted"])
@pytest.mark.parametrize("case", list(CASES))
def test_exact_linear_combinations_are_pruned_without_change(case, selection):
    build, k, kw = CASES[case]
    model = build()
    data = _seq(4, **kw)
    x = _seq(1, N=9, **kw)[0]                       # fresh inputs, not the calibration data
    if case != "stacked_copies":                    # preconditions: rank k, every unit active
        H = np.concatenate([_states_of(model, [d]) for d in data])
        assert np.linalg.matrix_rank(H, tol=1e-9 * np.abs(H).max()) == k and (H.std(0) > 1e-3).all()
        if case == "relu_linear_regime":
            assert H.min() > 0                      # the ReLU is in its linear regime
    y = _out(model, x)
    errs = {}
    for lam in (1e-2, 1e-6, 1e-12):
        pruned, rep = spectral_prune(model, data, keep=k, lam=lam, selection=selection)
        errs[lam] = float((_out(pruned, x) - y).abs().max())
    assert errs[1e-12] < 1e-6, errs
    assert errs[1e-2] > 10 * errs[1e-12]             # the exactness is the lambda -> 0 limit
    assert rep.loss_input[0][-1] < 1e-8 * rep.loss_input[0][0]
    if case == "spiking_copies":                     # kept units emit exactly their original spikes
        sjf.reset_net(model)
        with torch.no_grad():
            s_full = model[0](x)
            s_kept = pruned[0](x)
        sjf.reset_net(model)
        sjf.reset_net(pruned)
        assert torch.equal(s_kept, s_full[..., rep.kept[0]]) and 0 < float(s_full.mean()) < 1


# ---- the reconstruction is the ridge solution -------------------------------------------------------
def _states_of(model, data):
    """Hidden states produced by the layer itself (nn.RNN's output / the spikes), stacked as rows."""
    hs = []
    rnn = model.rnn if hasattr(model, "rnn") else model[0]
    for x in data:
        sjf.reset_net(model)
        with torch.no_grad():
            h = rnn(x)[0] if isinstance(rnn, nn.RNN) else rnn(x)
        hs.append(h.reshape(-1, h.shape[-1]).double().numpy())
    sjf.reset_net(model)
    return np.concatenate(hs)


@pytest.mark.parametrize("kind", ["irnn", "spiking"])
@pytest.mark.parametrize("exact_kept", [False, True])
def test_absorbed_reconstruction_is_the_ridge_least_squares_solution(kind, exact_kept):
    if kind == "irnn":
        model = IRNNClassifier(3, 10, 4, input_std=0.7).double()
        data = _seq(4, dtype=D)
    else:
        model = SpikingRNNClassifier(3, 10, 4, v_threshold=0.5)
        _drive(model.rnn)
        model = model.double()
        data = _seq(4, dtype=D, positive=True)
    pruned, rep = spectral_prune(model, data, keep=6, lam=0.05, exact_kept=exact_kept)
    J = rep.kept[0]
    H = _states_of(model, data)
    assert (H.std(0) > 0.1).sum() >= 8          # the states are not trivial (e.g. silent units)
    A = np_ridge(H, J, rep.lam[0])
    if exact_kept:
        A[J] = np.eye(len(J))
    W_o = model.readout.weight.detach().numpy()
    np.testing.assert_allclose(pruned.readout.weight.detach().numpy(), W_o @ A, rtol=1e-7, atol=1e-9)
    W_hh = (model.rnn.weight_hh_l0 if kind == "irnn" else model.rnn.hh.weight).detach().numpy()
    got = (pruned.rnn.weight_hh_l0 if kind == "irnn" else pruned.rnn.hh.weight).detach().numpy()
    np.testing.assert_allclose(got, W_hh[J] @ A, rtol=1e-7, atol=1e-9)
    # the ridge matters here: the plain least-squares solution is different
    assert np.abs(np_ridge(H, J, 1e-14) - A)[[i for i in range(10) if i not in J]].max() > 1e-4


# ---- monotone losses along the path, on real data (scikit-learn digits, rows as a sequence) --------
def _digits(n=300):
    d = load_digits()
    x = torch.tensor(d.images[:n] / 16.0, dtype=torch.float32)    # [n, 8, 8]
    return [x[i:i + 100].permute(1, 0, 2).contiguous() for i in range(0, n, 100)]   # [8, 100, 8] rows


@pytest.mark.parametrize("selection", ["greedy", "pivoted"])
def test_input_loss_never_increases_along_the_selection_path(selection):
    model = IRNNClassifier(8, 32, 10, input_std=0.3)
    data = _digits()
    pruned, rep = spectral_prune(model, data, keep=32, lam=1e-4, selection=selection)
    la, lb = np.array(rep.loss_input[0]), np.array(rep.loss_output[0])
    assert la[0] > 0 and np.all(np.diff(la) <= 1e-12 * la[0]) and np.all(np.diff(lb) <= 1e-12 * lb[0])
    assert la[-1] < 1e-2 * la[0]
    # the reported losses are the closed forms on the independently collected states
    H = _states_of(model, data)
    S = H.T @ H / len(H)
    for i in (1, 8, 20):
        J = rep.order[0][:i]
        K = S[np.ix_(J, J)] + rep.lam[0] * np.eye(i)
        ref = np.trace(S - S[:, J] @ np.linalg.solve(K, S[J, :]))
        assert la[i] == pytest.approx(ref, rel=1e-8)
    # baselines report their losses along their own order, and greedy is no worse at every size
    for _, r in (random_prune(model, 32, data, seed=0), magnitude_prune(model, 32, data)):
        assert np.all(np.diff(r.loss_input[0]) <= 1e-12 * la[0])
    if selection == "greedy":
        rr = random_prune(model, 16, data, seed=0)[1]
        assert la[16] <= rr.loss_input[0][16]


# ---- parameter counts ------------------------------------------------------------------------------
def test_parameter_counts_of_the_pruned_module():
    def n_params(m):
        return sum(p.numel() for p in m.parameters())

    I, m, k, out = 3, 9, 4, 4
    cases = [
        (Net(I, m, "relu"), lambda h: (h * I + h * h + 2 * h) + (out * h + out)),
        (Net(I, m, "tanh", layers=2), lambda h: (h * I + h * h + 2 * h) + (h * h + h * h + 2 * h) + (out * h + out)),
        (_spiking(m), lambda h: (h * I + h + h * h) + (out * h + out)),
    ]
    for model, formula in cases:
        data = _seq(2, positive=True)
        assert n_params(model) == formula(m)
        for fn in (lambda mm: spectral_prune(mm, data, keep=k),
                   lambda mm: spectral_prune(mm, data, keep=k, selection="pivoted"),
                   lambda mm: magnitude_prune(mm, k), lambda mm: random_prune(mm, k)):
            pruned, rep = fn(model)
            assert n_params(pruned) == formula(k) == rep.params_after
            assert rep.params_before == formula(m)
    # a bare nn.RNN (no readout): the output itself shrinks to the kept units
    bare = nn.RNN(I, m)
    pruned, rep = spectral_prune(bare, _seq(2), keep=k)
    assert isinstance(pruned, nn.RNN) and rep.readout is None
    assert n_params(pruned) == k * I + k * k + 2 * k and pruned(_seq(1)[0])[0].shape[-1] == k


# ---- the LMU hidden state ----------------------------------------------------------------------------
def _lmu(hidden=9, copies=False, activation=None, **kw):
    """An LMU classifier (float64); with ``copies`` units 6, 7, 8 of h copy units 0, 3, 5 (their rows of the
    hidden kernel W, its bias and the recurrent kernel U over the whole h are the sources')."""
    torch.manual_seed(4)
    lmu = LMU(2, hidden, order=4, theta=8.0, return_sequences=False, hidden_activation=activation, **kw)
    clf = LMUClassifier(lmu, 4).double()
    if copies:
        hc = clf.lmu.cell.hidden_cell
        with torch.no_grad():
            for lin in (hc.kernel, hc.recurrent_kernel):
                if lin is not None:
                    lin.weight[6:] = lin.weight[[0, 3, 5]]
                    if lin.bias is not None:
                        lin.bias[6:] = lin.bias[[0, 3, 5]]
    return clf


def _lmu_states(model, data):
    """h_t of every step, from a hook on the hidden activation (independent of the adapter)."""
    hs = []
    act = model.lmu.cell.hidden_cell.activation
    hook = act.register_forward_hook(lambda mod, args, out: hs.append(out.detach().reshape(-1, out.shape[-1])))
    with torch.no_grad():
        for x in data:
            sjf.reset_net(model)
            model(x)
    hook.remove()
    return torch.cat(hs).numpy()


LMU_CASES = {
    "fft_feedforward": dict(),
    "recurrent_cell": dict(hidden_recurrent=True, input_to_hidden=True),
    "hidden_to_memory": dict(hidden_recurrent=True, hidden_to_memory=True),
}


@pytest.mark.parametrize("case", list(LMU_CASES) + ["hybrid_random"])
def test_lmu_keep_all_units_gives_identical_outputs(case):
    if case == "hybrid_random":
        torch.manual_seed(5)
        model = hybrid_lmu_classifier(2, 4, hidden_size=9, order=4, theta=8.0, dt=2.0, seed=3).double().eval()
    else:
        model = _lmu(**LMU_CASES[case])
    data = [torch.randn(10, 5, 2, dtype=D) for _ in range(3)]
    pruned, rep = spectral_prune(model, data, keep=1.0, lam=1e-2)
    assert rep.layer == "lmu" and rep.readout == "readout" and rep.keep == 9
    x = torch.randn(10, 6, 2, dtype=D)
    assert torch.equal(_out(pruned, x), _out(model, x))
    assert rep.params_after == rep.params_before


@pytest.mark.parametrize("case", list(LMU_CASES) + ["hybrid_zeros"])
def test_lmu_units_that_copy_kept_units_are_pruned_without_change(case):
    if case == "hybrid_zeros":
        act = SpikingActivation(nn.Tanh(), dt=3.0, initial_state="zeros", step_mode="m")
        model = _lmu(copies=True, activation=act, hidden_recurrent=True).eval()
    else:
        model = _lmu(copies=True, **LMU_CASES[case])
    data = [torch.randn(12, 6, 2, dtype=D) for _ in range(4)]
    H = _lmu_states(model, data)
    assert np.linalg.matrix_rank(H, tol=1e-9 * np.abs(H).max()) == 6 and (H.std(0) > 1e-3).all()
    x = torch.randn(12, 7, 2, dtype=D)
    y = _out(model, x)
    errs = {}
    for lam in (1e-2, 1e-12):
        pruned, rep = spectral_prune(model, data, keep=6, lam=lam)
        errs[lam] = float((_out(pruned, x) - y).abs().max())
    assert errs[1e-12] < 1e-6, errs
    if case != "hybrid_zeros":          # integer spike counts may absorb a small error entirely
        assert errs[1e-2] > 10 * errs[1e-12]
    cell = pruned.lmu.cell
    assert cell.hidden_size == 6 and cell.hidden_cell.kernel.weight.shape[0] == 6
    assert pruned.readout.in_features == 6 and rep.params_after < rep.params_before
    if cell.hidden_encoder is not None:
        assert cell.hidden_encoder.weight.shape == (1, 6)
    # the pruned hidden state is the original one of the kept units, at every step
    H_kept = _lmu_states(pruned, data)
    np.testing.assert_allclose(H_kept, H[:, rep.kept[0]], atol=1e-6, rtol=0)


def test_lmu_absorbed_weights_are_the_ridge_solution_and_a_per_unit_lowpass_is_refused():
    model = _lmu(hidden_recurrent=True, hidden_to_memory=True)
    data = [torch.randn(10, 6, 2, dtype=D) for _ in range(4)]
    pruned, rep = spectral_prune(model, data, keep=5, lam=0.05, exact_kept=False)
    J = rep.kept[0]
    A = np_ridge(_lmu_states(model, data), J, rep.lam[0])
    c0, c1 = model.lmu.cell, pruned.lmu.cell
    U = c0.hidden_cell.recurrent_kernel.weight.detach().numpy()
    np.testing.assert_allclose(c1.hidden_cell.recurrent_kernel.weight.detach().numpy(), U[J] @ A, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(c1.hidden_encoder.weight.detach().numpy(),
                               c0.hidden_encoder.weight.detach().numpy() @ A, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(pruned.readout.weight.detach().numpy(), model.readout.weight.detach().numpy() @ A,
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(c1.hidden_cell.kernel.weight.detach().numpy(),
                                  c0.hidden_cell.kernel.weight.detach().numpy()[J])
    lp = hybrid_lmu_classifier(2, 4, hidden_size=9, order=4, theta=8.0, readout_tau=3.0, seed=0)
    with pytest.raises(ValueError, match="Lowpass with one time constant per hidden unit"):
        spectral_prune(lp, [torch.randn(10, 5, 2)], keep=4)


# ---- training through the loop: irnn / srnn, gradient clipping, fine-tuning -----------------------------
def _digit_rows(n_train, n_test):
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32)          # [n, 8, 8]: 8 steps of 8 pixels
    y = torch.tensor(d.target)
    return TaskData("digits-rows", ArrayDataset(x[:n_train], y[:n_train]),
                    ArrayDataset(x[n_train:n_train + n_test], y[n_train:n_train + n_test]), 10, (8, 8),
                    kind="sequence")


@pytest.mark.parametrize("max_norm", [0.05, 1e6])
def test_gradient_clipping_equals_the_closed_form(max_norm):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    before = [p.detach().clone() for p in net.parameters()]
    opt = clip_gradients_on_step(torch.optim.SGD(net.parameters(), lr=1.0), max_norm)
    net(torch.randn(16, 5, dtype=D)).pow(2).sum().backward()
    g = np.concatenate([p.grad.detach().numpy().ravel() for p in net.parameters()])
    opt.step()
    step = np.concatenate([(b - p.detach()).numpy().ravel() for b, p in zip(before, net.parameters())])
    norm = np.sqrt((g ** 2).sum())
    np.testing.assert_allclose(step, g * min(1.0, max_norm / norm), rtol=1e-5, atol=1e-12)   # torch adds 1e-6 to the norm
    assert (max_norm < norm) == (max_norm == 0.05)


def test_irnn_and_srnn_methods_train_through_the_loop_and_read_images_by_rows():
    data = _digit_rows(600, 300)
    cfg = TrainConfig(dataset="digits", epochs=3, lr=3e-3, batch_size=32, seed=0)
    m, metrics = fit(get("irnn", hidden=(32,), input_std=0.1), data, cfg, label=None)
    assert isinstance(m.rnn, nn.RNN) and m.rnn.hidden_size == 32 and m.rnn.nonlinearity == "relu"
    assert metrics["final_test_acc"] > 0.4 and metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    s, metrics = fit(get("srnn", hidden=(32,), v_threshold=0.5), data, dataclasses.replace(cfg, lr=1e-2), label=None)
    assert isinstance(s.rnn, SpikingRNN) and s.readout_from == "mean"
    assert metrics["final_test_acc"] > 0.2                           # 10 classes: chance is 0.1
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    # images are read row by row: the same model input as the row sequences
    imgs = data.train.x[:5].unsqueeze(1)                                     # [5, 1, 8, 8]
    images = TaskData("img", ArrayDataset(imgs, torch.zeros(5, dtype=torch.long)),
                      ArrayDataset(imgs, torch.zeros(5, dtype=torch.long)), 10, (1, 8, 8), kind="image")
    assert get("irnn").bind(data=images).layout.kind == "image" and get("irnn").bind(data=data).layout.kind == \
        "sequence"
    assert torch.equal(get("irnn").bind(data=images).inputs(imgs), get("irnn").bind(data=data).inputs(data.train.x[:5]))
    method = get("irnn")
    frames = TaskData("f", ArrayDataset(torch.rand(4, 3, 1, 2, 2), torch.zeros(4, dtype=torch.long)),
                      ArrayDataset(torch.rand(4, 3, 1, 2, 2), torch.zeros(4, dtype=torch.long)), 2, (3, 1, 2, 2),
                      kind="frames")
    with pytest.raises(ValueError, match="takes sequence or image data"):
        fit(method, frames, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="one hidden size"):
        get("irnn", hidden=(8, 16))
    with pytest.raises(ValueError, match="one recurrent layer"):
        get("srnn", hidden=(8, 8))


def test_pruned_network_fine_tunes_through_the_loop():
    data = _digit_rows(600, 300)
    method = get("irnn", hidden=(24,), input_std=0.1)
    cfg = TrainConfig(dataset="digits", epochs=3, lr=3e-3, batch_size=32, seed=1)
    model, _ = fit(method, data, cfg, label=None)
    calib = [data.train.x[:200].transpose(0, 1)]
    pruned, rep = magnitude_prune(model, 8, calib)
    acc0 = evaluate(method, pruned, data.test)
    w0 = pruned.rnn.weight_hh_l0.detach().clone()
    tuned, metrics = fit(method, data, dataclasses.replace(cfg, epochs=2), model=pruned, label=None)
    assert tuned is pruned and tuned.rnn.hidden_size == 8 and tuned.readout.in_features == 8
    assert not torch.equal(tuned.rnn.weight_hh_l0, w0)
    assert metrics["final_test_acc"] > acc0


@pytest.mark.parametrize("json_name, tag", [("spectral_pruning_mnist.json", ""), ("spectral_pruning_rates.json", "-rates")])
def test_docs_tables_are_generated_from_the_committed_json(json_name, tag):
    """docs/spectral_pruning.md's tables equal what visualizations.spectral_pruning renders from the committed
    JSON (regenerate: ``python -m visualizations.spectral_pruning --json ... --tag ...``)."""
    import json
    from pathlib import Path

    from visualizations import spectral_pruning as sp

    root = Path(__file__).resolve().parents[2]
    res = json.loads((root / "examples" / "results" / json_name).read_text())
    mark = sp.MARK.replace(" -->", f"{tag} -->")
    assert f"{mark}\n{sp.table(res)}\n{mark}" in (root / "docs" / "spectral_pruning.md").read_text()
