"""neuroq.prune: covariance, reconstruction, losses and selection against numpy references; the API."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from neuroq.layer.lmu import LMU, LMUCell
from neuroq.layer.recurrent import SpikingRNN
from neuroq.prune import (
    HiddenCovariance, LayerAdapter, collect_hidden_covariance, degrees_of_freedom, greedy_select,
    information_losses, magnitude_prune, magnitude_reconstruct_prune, path_losses, pivoted_select,
    random_prune, reconstruction_matrix, register_layer, resolve_keep, spectral_prune,
)
from neuroq.prune.surgery import absorb_columns


# ---- numpy references (no neuroq code) -----------------------------------------------------------
def np_ridge(H, J, lam):
    """argmin_A (1/N)||H - H_J A^T||^2 + lam ||A||_F^2 by least squares on the augmented system."""
    N, m = H.shape
    X = H[:, J]
    Xa = np.vstack([X, np.sqrt(N * lam) * np.eye(len(J))])
    Ya = np.vstack([H, np.zeros((len(J), m))])
    At, *_ = np.linalg.lstsq(Xa, Ya, rcond=None)
    return At.T


def np_losses(H, J, lam, Z):
    """(L_A, L_B) as the penalised reconstruction objectives at the ridge optimum."""
    N, m = H.shape
    if len(J) == 0:
        E, A = H, np.zeros((m, 0))
    else:
        A = np_ridge(H, J, lam)
        E = H - H[:, J] @ A.T
    la = (E ** 2).sum() / N + lam * (A ** 2).sum()
    lb = ((E @ Z.T) ** 2).sum() / N + lam * ((Z @ A) ** 2).sum()
    return la, lb


def np_closed(S, J, lam, Z):

    R = S.copy()
    if J:
        K = S[np.ix_(J, J)] + lam * np.eye(len(J))
        R = S - S[:, J] @ np.linalg.solve(K, S[J, :])
    return np.trace(R), np.trace(Z @ R @ Z.T)


def np_greedy(S, k, lam, theta, Z):
    J, path = [], [np_closed(S, [], lam, Z)]
    for _ in range(k):
        best, bj = None, None
        for j in range(S.shape[0]):
            if j in J:
                continue
            la, lb = np_closed(S, J + [j], lam, Z)
            f = theta * la + (1 - theta) * lb
            if best is None or f < best - 1e-12:
                best, bj = f, j
        J.append(bj)
        path.append(np_closed(S, J, lam, Z))
    return J, path


def _states(N=400, m=12, rank=7, seed=0):
    g = np.random.default_rng(seed)
    H = g.normal(size=(N, rank)) @ g.normal(size=(rank, m)) + 0.05 * g.normal(size=(N, m)) + 0.3
    return H


# ---- covariance ----------------------------------------------------------------------------------
def test_covariance_streaming_matches_numpy_for_any_split():
    g = np.random.default_rng(1)
    H = g.normal(size=(7 * 5 * 3, 6)) * 3 + 10.0    # large mean: the pairwise update keeps precision
    cov = HiddenCovariance(6)
    cov.update(torch.from_numpy(H[:35]).reshape(7, 5, 6))  # [T, N, m]
    cov.update(torch.from_numpy(H[35:36]))
    cov.update(torch.from_numpy(H[36:]).reshape(-1, 3, 6))
    ref = H.T @ H / len(H)
    np.testing.assert_allclose(cov.second_moment.numpy(), ref, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cov.mean.numpy(), H.mean(0), rtol=1e-13)
    np.testing.assert_allclose(cov.covariance.numpy(), np.cov(H.T, bias=True), rtol=1e-10, atol=1e-10)
    assert cov.count == len(H) and cov.second_moment.dtype == torch.float64
    a, b = HiddenCovariance(6), HiddenCovariance(6)
    a.update(torch.from_numpy(H[:50]))
    b.update(torch.from_numpy(H[50:]))
    np.testing.assert_allclose(a.merge(b).second_moment.numpy(), ref, rtol=1e-12, atol=1e-10)
    with pytest.raises(ValueError, match=r"\[\.\.\., 6\]"):
        cov.update(torch.zeros(3, 5))
    with pytest.raises(RuntimeError, match="no hidden states"):
        HiddenCovariance(3).second_moment


# ---- closed forms --------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [1e-3, 0.5])
def test_reconstruction_matrix_is_the_ridge_solution(lam):
    H = _states()
    S = torch.from_numpy(H.T @ H / len(H))
    J = [3, 0, 7, 9]
    A_ref = np_ridge(H, J, lam)
    A = reconstruction_matrix(S, J, lam, exact_kept=False).numpy()
    np.testing.assert_allclose(A, A_ref, rtol=1e-8, atol=1e-10)
    A_exact = reconstruction_matrix(S, J, lam, exact_kept=True).numpy()
    others = [i for i in range(12) if i not in J]
    np.testing.assert_allclose(A_exact[others], A_ref[others], rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(A_exact[J], np.eye(len(J)))
    assert np.abs(A_ref[J] - np.eye(len(J))).max() > 1e-6   # the two forms differ for lam > 0


def test_information_losses_equal_the_penalised_objectives():
    H = _states()
    S = torch.from_numpy(H.T @ H / len(H))
    Z = np.random.default_rng(3).normal(size=(5, 12))
    for J in ([], [4], [1, 2, 8, 11], list(range(12))):
        la, lb = information_losses(S, J, 0.02, torch.from_numpy(Z))
        ra, rb = np_losses(H, J, 0.02, Z)
        assert la == pytest.approx(ra, rel=1e-8) and lb == pytest.approx(rb, rel=1e-8)
    la, lb = information_losses(S, [1, 2], 0.02)          # z=None: Z = I
    assert la == pytest.approx(lb)


def test_degrees_of_freedom_closed_form():
    H = _states()
    S = H.T @ H / len(H)
    mu = np.linalg.eigvalsh(S)
    for lam in (1e-4, 0.1, 10.0):
        assert degrees_of_freedom(torch.from_numpy(S), lam) == pytest.approx((mu / (mu + lam)).sum(), rel=1e-10)
    Hc = np.hstack([H[:, :5], H[:, :2] * 2.0])               # rank 5
    assert degrees_of_freedom(torch.from_numpy(Hc.T @ Hc / len(Hc)), 0.0) == 5


# ---- selection -----------------------------------------------------------------------------------
@pytest.mark.parametrize("theta", [1.0, 0.5, 0.0])
def test_greedy_matches_bruteforce_forward_selection(theta):
    H = _states(seed=4)
    S = H.T @ H / len(H)
    Z = np.random.default_rng(5).normal(size=(8, 12))
    lam = 0.01
    J, path = np_greedy(S, 8, lam, theta, Z)
    res = greedy_select(torch.from_numpy(S), 8, lam, theta, torch.from_numpy(Z))
    assert res.order == J
    np.testing.assert_allclose(res.loss_input, [p[0] for p in path], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.loss_output, [p[1] for p in path], rtol=1e-8, atol=1e-10)
    assert res.objective[-1] == pytest.approx(theta * path[-1][0] + (1 - theta) * path[-1][1], rel=1e-8)


def test_greedy_with_lam_zero_on_rank_deficient_states():
    H = _states(rank=4, seed=6)[:, :4]
    H = np.hstack([H, H[:, :2] * 3.0, H[:, 1:2] - H[:, 2:3], np.zeros((len(H), 1))])  # rank 4 of 8
    S = torch.from_numpy(H.T @ H / len(H))
    res = greedy_select(S, 6, 0.0, theta=1.0)
    assert all(np.isfinite(res.loss_input))
    assert res.loss_input[4] < 1e-9 * res.loss_input[0]
    assert 7 not in res.order[:4]                              # a dead unit is never worth keeping first
    A = reconstruction_matrix(S, sorted(res.order[:4]), 0.0)
    np.testing.assert_allclose(H[:, sorted(res.order[:4])] @ A.numpy().T, H, atol=1e-8)


def test_pivoted_path_losses_are_exact_and_monotone():
    H = _states(seed=7)
    S = H.T @ H / len(H)
    Z = np.random.default_rng(8).normal(size=(6, 12))
    res = pivoted_select(torch.from_numpy(S), 10, 0.05, 0.3, torch.from_numpy(Z))
    assert len(set(res.order)) == 10
    for i in range(11):
        la, lb = np_closed(S, res.order[:i], 0.05, Z)
        assert res.loss_input[i] == pytest.approx(la, rel=1e-8, abs=1e-10)
        assert res.loss_output[i] == pytest.approx(lb, rel=1e-8, abs=1e-10)
    assert all(np.diff(res.loss_input) <= 1e-12) and all(np.diff(res.loss_output) <= 1e-12)
    # on states spanned by 7 units it finds a spanning set within 7 picks
    Hd = np.hstack([H[:, :7], H[:, :3] @ np.random.default_rng(9).normal(size=(3, 5))])
    r2 = pivoted_select(torch.from_numpy(Hd.T @ Hd / len(Hd)), 7, 1e-12, 1.0)
    assert r2.loss_input[-1] < 1e-8 * r2.loss_input[0]


def test_path_losses_along_a_given_order():
    H = _states(seed=10)
    S = H.T @ H / len(H)
    Z = np.random.default_rng(11).normal(size=(4, 12))
    order = [5, 1, 11, 0, 3]
    res = path_losses(torch.from_numpy(S), order, 0.1, 0.5, torch.from_numpy(Z))
    assert res.order == order
    for i in range(6):
        la, lb = np_closed(S, order[:i], 0.1, Z)
        assert res.loss_input[i] == pytest.approx(la, rel=1e-8) and res.loss_output[i] == pytest.approx(lb, rel=1e-8)


def test_resolve_keep_counts_and_fractions():
    assert resolve_keep(5, 10) == 5 and resolve_keep(0.5, 10) == 5 and resolve_keep(1.0, 10) == 10
    assert resolve_keep(0.01, 10) == 1
    for bad, err in ((0, ValueError), (11, ValueError), (0.0, ValueError), (1.5, ValueError), (True, TypeError),
                     ("5", TypeError)):
        with pytest.raises(err, match="keep"):
            resolve_keep(bad, 10)


# ---- the API on models -----------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self, hidden=10, nonlinearity="tanh", layers=1, batch_first=False):
        super().__init__()
        self.rnn = nn.RNN(3, hidden, layers, nonlinearity=nonlinearity, batch_first=batch_first)
        self.head = nn.Linear(hidden, 4)
        self.batch_first = batch_first

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.head(h[:, -1] if self.batch_first else h[-1])


def _data(n=3, T=6, N=8, batch_first=False):
    xs = [torch.randn(T, N, 3) for _ in range(n)]
    return [(x.transpose(0, 1) if batch_first else x, torch.zeros(N)) for x in xs]


def test_layer_and_readout_discovery_and_errors():
    net = Net()
    data = _data()
    _, rep = spectral_prune(net, data, keep=4)
    assert rep.layer == "rnn" and rep.readout == "head" and rep.layer_type == "RNN"
    with pytest.raises(ValueError, match="not a submodule"):
        spectral_prune(net, data, keep=4, layer="nope")
    with pytest.raises(TypeError, match="no pruning adapter"):
        spectral_prune(nn.Sequential(nn.LSTM(3, 4)), data, keep=2, layer="0")
    with pytest.raises(ValueError, match="no prunable"):
        spectral_prune(nn.Sequential(nn.Linear(3, 4)), data, keep=2)
    two = nn.ModuleDict(dict(a=nn.RNN(3, 4), b=nn.RNN(3, 4)))
    with pytest.raises(ValueError, match="2 prunable"):
        spectral_prune(two, data, keep=2)
    with pytest.raises(ValueError, match="bidirectional"):
        spectral_prune(nn.RNN(3, 4, bidirectional=True), data, keep=2)
    amb = Net()
    amb.extra = nn.Linear(10, 2)
    with pytest.raises(ValueError, match="several nn.Linear"):
        spectral_prune(amb, data, keep=4)
    with pytest.raises(ValueError, match="in_features=10"):
        spectral_prune(net, data, keep=4, readout="rnn")
    with pytest.raises(ValueError, match="data is required"):
        spectral_prune(net, None, keep=4)
    with pytest.raises(ValueError, match="theta"):
        spectral_prune(net, data, keep=4, theta=1.5)
    with pytest.raises(ValueError, match="z"):
        spectral_prune(net, data, keep=4, z="weird")
    with pytest.raises(ValueError, match=r"\[p, 10\]"):
        spectral_prune(net, data, keep=4, z=torch.randn(3, 9))
    with pytest.raises(ValueError, match="selection"):
        spectral_prune(net, data, keep=4, selection="lazy")
    with pytest.raises(TypeError, match="iterable"):
        spectral_prune(net, 3, keep=4)
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(6, 2, 3), [6, 4])
    with pytest.raises(TypeError, match="PackedSequence"):
        spectral_prune(nn.RNN(3, 4), [packed], keep=2, forward=lambda m, b: m(b))


def test_report_fields_json_and_untouched_original():
    net = Net(hidden=10, nonlinearity="relu")
    data = _data()
    x = data[0][0]
    before = net(x).detach().clone()
    pruned, rep = spectral_prune(net, data, keep=0.3)
    assert torch.equal(net(x), before) and net.rnn.hidden_size == 10           # a copy was pruned
    assert pruned.rnn.hidden_size == 3 and pruned.head.in_features == 3
    assert rep.keep == 3 and len(rep.kept[0]) == 3 and rep.kept[0] == sorted(rep.order[0])
    assert len(rep.loss_input[0]) == 4 and rep.n_states == [3 * 6 * 8]
    assert rep.dof[0] > 0 and rep.lam[0] > 0
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["method"] == "spectral-greedy" and d["params_after"] == rep.params_after
    same, _ = spectral_prune(net, data, keep=3, inplace=True)
    assert same is net and net.rnn.hidden_size == 3


def test_stats_reuse_custom_forward_and_max_batches():
    net = Net()
    data = _data(n=4)
    stats = collect_hidden_covariance(net, data, max_batches=2)
    assert stats[0].count == 2 * 6 * 8
    p1, r1 = spectral_prune(net, None, keep=5, stats=stats)
    p2, r2 = spectral_prune(net, data, keep=5, max_batches=2)
    p3, r3 = spectral_prune(net, [b[0] for b in data[:2]], keep=5, forward=lambda m, b: m(b))
    assert r1.kept == r2.kept == r3.kept
    x = data[3][0]
    assert torch.equal(p1(x), p2(x)) and torch.equal(p1(x), p3(x))
    with pytest.raises(ValueError, match="saw no data"):
        collect_hidden_covariance(net, [])


def test_baselines_selection_and_plain_deletion():
    net = Net(hidden=10)
    data = _data()
    r_a = random_prune(net, 4, seed=1)[1]
    r_b = random_prune(net, 4, seed=1)[1]
    r_c = random_prune(net, 4, seed=2)[1]
    assert r_a.kept == r_b.kept and r_a.kept != r_c.kept and r_a.loss_input == [None]
    # magnitude: the largest outgoing norms of [W_hh; W_o] columns (numpy, from the weights)
    Z = np.vstack([net.rnn.weight_hh_l0.detach().numpy(), net.head.weight.detach().numpy()])
    top = sorted(np.argsort(-np.linalg.norm(Z, axis=0))[:4].tolist())
    pruned, rep = magnitude_prune(net, 4)
    assert rep.kept == [top] and rep.method == "magnitude"
    W_in = np.hstack([net.rnn.weight_ih_l0.detach().numpy(), net.rnn.weight_hh_l0.detach().numpy()])
    top_in = sorted(np.argsort(-np.linalg.norm(W_in, axis=1))[:4].tolist())
    assert magnitude_prune(net, 4, by="incoming")[1].kept == [top_in]
    # without reconstruction: plain deletion of rows and columns
    torch.testing.assert_close(pruned.head.weight, net.head.weight[:, top], rtol=0, atol=0)
    torch.testing.assert_close(pruned.rnn.weight_hh_l0, net.rnn.weight_hh_l0[top][:, top], rtol=0, atol=0)
    torch.testing.assert_close(pruned.rnn.bias_hh_l0, net.rnn.bias_hh_l0[top], rtol=0, atol=0)
    # magnitude + reconstruction: the same units, readout W_o A_ridge
    pr, rr = magnitude_reconstruct_prune(net, data, 4, exact_kept=False)
    assert rr.kept == [top] and rr.method == "magnitude+reconstruction" and rr.loss_input[0] is not None
    H = np.concatenate([net.rnn(b[0])[0].detach().double().reshape(-1, 10).numpy() for b in data])
    A = np_ridge(H, top, rr.lam[0])
    np.testing.assert_allclose(pr.head.weight.detach().numpy(), net.head.weight.detach().double().numpy() @ A,
                               rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="data is required"):
        random_prune(net, 4, reconstruct=True)


class Elman(nn.Module):
    """A toy recurrent layer outside neuroq: h_t = tanh(U x_t + W h_{t-1}), input [T, N, I]."""

    def __init__(self, i, m):
        super().__init__()
        self.U = nn.Parameter(torch.randn(m, i))
        self.W = nn.Parameter(torch.randn(m, m) * 0.3)

    def forward(self, x):
        h = x.new_zeros(x.shape[1], self.W.shape[0])
        out = []
        for xt in x.unbind(0):
            h = torch.tanh(xt @ self.U.T + h @ self.W.T)
            out.append(h)
        return torch.stack(out)


class ElmanAdapter(LayerAdapter):
    def state_size(self, layer):
        return layer.W.shape[0]

    def attach(self, layer, sink):
        return [layer.register_forward_hook(lambda mod, args, out: sink(0, out))]

    def recurrent_weights(self, layer, k):
        return layer.W

    def incoming_weights(self, layer, k):
        return torch.cat([layer.U, layer.W], 1)

    def shrink(self, layer, recons):
        (f,) = recons
        new = Elman(layer.U.shape[1], len(f.kept)).to(layer.W.dtype)
        with torch.no_grad():
            new.U.copy_(layer.U[f.index])
            new.W.copy_(absorb_columns(layer.W[f.index], f.A))
        return new


def test_register_a_new_layer_type():
    register_layer(Elman, ElmanAdapter())
    torch.manual_seed(3)
    layer = Elman(3, 7).double()
    layer = Elman(3, 7).double()
    with torch.no_grad():            # units 5, 6 copy units 0, 2: exactly reconstructible
        layer.U[5:] = layer.U[[0, 2]]
        layer.W[5:] = layer.W[[0, 2]]
    model = nn.Sequential(layer, nn.Linear(7, 2).double())
    data = [torch.randn(6, 4, 3, dtype=torch.float64) for _ in range(3)]
    pruned, rep = spectral_prune(model, data, keep=5, lam=1e-12)
    assert rep.layer == "0" and rep.readout == "1" and isinstance(pruned[0], Elman)
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(pruned(x), model(x), atol=1e-8, rtol=0)
    assert sum(p.numel() for p in pruned.parameters()) == 5 * 3 + 25 + 2 * 5 + 2


def test_spiking_rnn_pruned_layer_is_a_fresh_spiking_rnn():
    net = nn.Sequential(SpikingRNN(3, 8, v_threshold=0.3), nn.Linear(8, 2))
    data = [torch.rand(5, 4, 3) for _ in range(2)]
    pruned, rep = spectral_prune(net, data, keep=4)
    rnn = pruned[0]
    assert isinstance(rnn, SpikingRNN) and rnn.hidden_size == 4 and rnn.v_threshold == 0.3 and rnn.v == 0.0
    assert rnn.ih.weight.shape == (4, 3) and rnn.hh.weight.shape == (4, 4) and pruned[1].in_features == 4
    assert pruned(data[0]).shape == (5, 4, 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_model_prunes_like_the_cpu_model():
    net = Net(hidden=10, nonlinearity="relu").double()
    data = [(x.double(), y) for x, y in _data()]
    p_cpu, r_cpu = spectral_prune(net, data, keep=5)
    p_gpu, r_gpu = spectral_prune(net.cuda(), data, keep=5)
    assert r_gpu.kept == r_cpu.kept and next(p_gpu.parameters()).is_cuda
    x = data[0][0]
    torch.testing.assert_close(p_gpu(x.cuda()).cpu(), p_cpu.cpu()(x), atol=1e-9, rtol=0)
    _, r_mag = magnitude_prune(net, 5, data)
    assert r_mag.loss_input[0] is not None


def test_lmu_cell_alone_streaming_and_unsupported_hidden_cells():
    from neuroq.prune.surgery import supported_layers
    assert {"LMU", "LMUCell"} <= set(supported_layers())
    torch.manual_seed(0)
    cell = LMUCell(2, 6, order=3, theta=5.0, hidden_recurrent=True, step_mode="m").double()
    data = [torch.randn(7, 4, 2, dtype=torch.float64) for _ in range(2)]
    pruned, rep = spectral_prune(cell, data, keep=6)
    assert rep.layer == "" and rep.readout is None and isinstance(pruned, LMUCell)
    x = torch.randn(7, 3, 2, dtype=torch.float64)
    cell.reset(), pruned.reset()
    assert torch.equal(pruned(x), cell(x))
    small, rep = spectral_prune(cell, data, keep=3)        # the output itself shrinks to the kept units
    small.reset()
    assert small(x).shape == (7, 3, 3) and small.hidden_size == 3
    # a custom hidden cell needs its own adapter
    lmu = LMU(2, 4, order=3, theta=5.0, hidden_cell=nn.Sequential(nn.Linear(3, 4), nn.Tanh()))
    with pytest.raises(TypeError, match="LMUHiddenCell"):
        spectral_prune(lmu, [torch.randn(5, 2, 2)], keep=2)


def test_bad_calibration_data_and_statistics_are_refused_by_what_is_wrong():
    """NaN calibration data (or a NaN weight) is named where the hidden states are accumulated, not blamed on
    lam; a sigma that is not a second-moment matrix, an empty kept set and keep=0 are refused."""
    from neuroq.prune import degrees_of_freedom, greedy_select, information_losses, pivoted_select, \
        reconstruction_matrix

    net = Net()
    data = _data(n=2)
    bad = [(b[0].clone().fill_(float("nan")), b[1]) for b in data]
    with pytest.raises(ValueError, match="hidden-state rows hold NaN or inf"):
        collect_hidden_covariance(net, bad)
    with pytest.raises(ValueError, match="hidden-state rows hold NaN or inf"):
        spectral_prune(net, bad, keep=0.5)
    nan = torch.full((4, 4), float("nan"))
    for call in (lambda: greedy_select(nan, 2, 1e-3), lambda: information_losses(nan, [0], 1e-3),
                 lambda: degrees_of_freedom(nan, 1e-3)):
        with pytest.raises(ValueError, match="sigma holds NaN"):
            call()
    with pytest.raises(ValueError, match="symmetric with a non-negative diagonal"):
        greedy_select(-torch.eye(4, dtype=torch.float64), 2, 1e-3)
    with pytest.raises(ValueError, match="kept must name at least one unit"):
        reconstruction_matrix(torch.eye(4), [], 1e-3)
    with pytest.raises(ValueError, match="keep must be >= 1"):
        pivoted_select(torch.eye(4), 0, 1e-3)


def test_transform_of_the_hidden_states_enters_the_covariance():
    """``transform``: the statistics are those of the transformed states. For a spiking RNN whose spike
    trains are lowpass-filtered into firing rates, the second moment equals one computed by hand from the
    recorded spikes filtered by an explicit loop y_t = (1 - a) s_t + a y_{t-1}, a = exp(-1/tau)."""
    from neuroq.layer import Lowpass
    from neuroq.prune.surgery import adapter_for

    torch.manual_seed(0)
    layer = SpikingRNN(5, 12, tau=2.0, v_threshold=0.3, step_mode="m")
    x = torch.rand(9, 4, 5) * 2                                        # [T, N, F]
    recorded = []
    handles = adapter_for(layer).attach(layer, lambda k, h: recorded.append(h.detach()))
    with torch.no_grad():
        layer(x)
    for h in handles:
        h.remove()
    s = recorded[0].double()
    assert 0 < s.mean() < 1                                            # spikes, some of them
    a = float(torch.exp(torch.tensor(-1 / 2.0)))
    y, rates = torch.zeros_like(s[0]), []
    for t in range(s.shape[0]):
        y = (1 - a) * s[t] + a * y
        rates.append(y)
    r = torch.stack(rates).reshape(-1, 12)
    stats = collect_hidden_covariance(layer, [x], transform=lambda h: Lowpass(2.0, learn_tau=False, step_mode="m")(h))
    torch.testing.assert_close(stats[0].second_moment, r.T @ r / r.shape[0], rtol=1e-5, atol=1e-7)
    raw = collect_hidden_covariance(layer, [x])[0].second_moment
    torch.testing.assert_close(raw, s.reshape(-1, 12).T @ s.reshape(-1, 12) / r.shape[0], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="shape"):
        collect_hidden_covariance(layer, [x], transform=lambda h: h[:, :, :3])
    with pytest.raises(TypeError, match="transform must be callable"):
        collect_hidden_covariance(layer, [x], transform=3)
