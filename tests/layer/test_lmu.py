"""LMU: the Legendre matrices and their discretisation against scipy, the FFT form against the
recurrence and scipy's state-space simulation, the whole layer against an explicit numpy loop of
the equations, streaming == whole sequence, shapes, gradients, initialisation and argument checks;
and the Lowpass synapse against scipy.signal.lfilter.

keras-lmu is TensorFlow-only and TensorFlow is not installed here: the references are scipy and
explicit loops of the equations (Voelker, Kajić, Eliasmith, NeurIPS 2019, with the matrices as
keras-lmu builds them)."""
import numpy as np
import pytest
import scipy.signal as ss
import torch
import torch.nn as nn

import neuroq
from neuroq.functional import lmu as FL
from neuroq.layer.lmu import LMU, LegendreMemory, LMUCell, LMUHiddenCell
from neuroq.layer.lowpass import Lowpass
from neuroq.neuron.hybrid import SpikingActivation


def _legendre_by_hand(d):
    A = np.zeros((d, d))
    B = np.zeros((d, 1))
    for i in range(d):
        B[i, 0] = (2 * i + 1) * (-1) ** i
        for j in range(d):
            A[i, j] = (2 * i + 1) * (-1 if i < j else (-1) ** (i - j + 1))
    return A, B


def _assert_same_gradients_fft_and_recurrent(lmu, x):
    """Gradients to the input and every parameter agree between the FFT and the recurrent form."""
    grads = []
    for mode in ("fft", "recurrent"):
        lmu.mode = mode
        lmu.zero_grad()
        x.grad = None
        (lmu(x) ** 2).sum().backward()
        grads.append([x.grad.clone()] + [p.grad.clone() for p in lmu.parameters()])
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-11)


# ---- matrices -----------------------------------------------------------------------------------

@pytest.mark.parametrize("order,theta", [(1, 1.0), (6, 10.0), (31, 50.5), (256, 784.0)])
@pytest.mark.parametrize("method", ["zoh", "euler"])

def test_discretised_matrices_equal_scipy_cont2discrete(order, theta, method):
    A, B = _legendre_by_hand(order)
    At, Bt = FL.legendre_ab(order)
    assert np.array_equal(At.numpy(), A) and np.array_equal(Bt.numpy(), B)
    ad, bd, *_ = ss.cont2discrete((A / theta, B / theta, np.eye(order), np.zeros((order, 1))), dt=1.0,
                                  method=method)
    cell = LMUCell(1, 4, order=order, theta=theta, discretizer=method)
    assert cell.A.shape == (order, order) and cell.B.shape == (order, 1)
    assert "memory.A" in dict(cell.named_buffers()) and "memory.B" in dict(cell.named_buffers())
    np.testing.assert_allclose(cell.A.numpy(), ad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cell.B.numpy(), bd, rtol=0, atol=1e-12)


def test_impulse_response_is_powers_of_A_times_B():
    Ad, Bd = FL.lmu_matrices(12, 30.0)
    H = FL.impulse_response(Ad, Bd, 77)
    a, b = Ad.numpy(), Bd.numpy()
    ref = np.stack([(np.linalg.matrix_power(a, t) @ b)[:, 0] for t in range(77)])
    np.testing.assert_allclose(H.numpy(), ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("T", [1, 5, 64, 101])
def test_fft_memory_equals_recurrence_and_scipy_dlsim(T):
    order, theta = 10, 40.0
    Ad, Bd = FL.lmu_matrices(order, theta)
    u = torch.randn(T, 3, 2, dtype=torch.float64)
    m_fft = FL.memory_fft(u, FL.impulse_response(Ad, Bd, T))
    m_rec = FL.memory_recurrent(u, Ad, Bd)
    assert m_fft.shape == (T, 3, 2, order)
    assert torch.allclose(m_fft, m_rec, rtol=0, atol=1e-12)
    # scipy: x[k+1] = A x[k] + B u[k]; our m_t is the state after step t, i.e. x[t+1]
    sys = (Ad.numpy(), Bd.numpy(), np.eye(order), np.zeros((order, 1)), 1.0)
    for n in range(3):
        for c in range(2):
            uu = np.concatenate([u[:, n, c].numpy(), [0.0]])
            _, _, x = ss.dlsim(sys, uu, x0=np.zeros(order))
            np.testing.assert_allclose(m_rec[:, n, c].numpy(), x[1:], rtol=0, atol=1e-12)


def test_fft_memory_backward_is_the_adjoint():
    """memory_fft has its own backward (FFT cross-correlation): gradcheck, and equal to autograd
    through the recurrence."""
    Ad, Bd = FL.lmu_matrices(4, 15.0)
    H = FL.impulse_response(Ad, Bd, 9)
    u = torch.randn(9, 1, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: FL.memory_fft(v, H), (u,))
    w = torch.randn(9, 1, 2, 4, dtype=torch.float64)
    g_fft, = torch.autograd.grad((FL.memory_fft(u, H) * w).sum(), u)
    g_rec, = torch.autograd.grad((FL.memory_recurrent(u, Ad, Bd) * w).sum(), u)
    assert torch.allclose(g_fft, g_rec, rtol=0, atol=1e-12)


def test_fft_memory_float32_close_to_float64():
    Ad, Bd = FL.lmu_matrices(256, 784.0)
    u = torch.randn(784, 2, 1, dtype=torch.float64)
    ref = FL.memory_recurrent(u, Ad, Bd)
    mem = LegendreMemory(256, 784.0)
    m32 = mem(u.float(), mode="fft")
    assert m32.dtype == torch.float32 and m32.shape == (784, 2, 256)
    assert (m32.double() - ref.flatten(-2)).abs().max() < 1e-4


# ---- the whole layer against an explicit loop ------------------------------------------------------
def _numpy_lmu(cell: LMUCell, x: np.ndarray) -> np.ndarray:
    """keras-lmu's cell equations, looped in numpy with the module's own weights."""
    W = {k: v.detach().double().numpy() for k, v in cell.named_parameters()}
    A, B = cell.A.double().numpy(), cell.B.double().numpy()
    T, N, _ = x.shape
    d, o, H = cell.memory_d, cell.order, cell.hidden_size
    m = np.zeros((N, d, o))
    h = np.zeros((N, H))
    out = []
    for t in range(T):
        u = x[t] @ W["input_encoder.weight"].T if cell.input_encoder is not None else x[t].copy()
        if cell.hidden_to_memory:
            u = u + h @ W["hidden_encoder.weight"].T
        if cell.memory_to_memory:
            u = u + m.reshape(N, d * o) @ W["memory_encoder.weight"].T
        if cell.u_bias is not None:
            u = u + W["u_bias"]
        m = m @ A.T + u[:, :, None] * B[:, 0]
        h_in = m.reshape(N, d * o)
        if cell.input_to_hidden:
            h_in = np.concatenate([h_in, x[t]], axis=1)
        z = h_in @ W["hidden_cell.kernel.weight"].T + W["hidden_cell.kernel.bias"]
        if cell.hidden_cell.recurrent:
            z = z + h @ W["hidden_cell.recurrent_kernel.weight"].T
        h = np.tanh(z)
        out.append(h)
    return np.stack(out)


CONFIGS = [
    dict(),
    dict(input_to_hidden=True, hidden_recurrent=True, kernel_init="ones"),
    dict(memory_d=3, use_bias=True, kernel_init="glorot_normal"),
    dict(hidden_to_memory=True, input_to_hidden=True),
    dict(memory_to_memory=True, memory_d=2, hidden_recurrent=True),
    dict(hidden_to_memory=True, memory_to_memory=True, discretizer="euler"),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "default")
def test_lmu_equals_explicit_loop_in_every_form(cfg):
    cfg = dict(cfg)
    d = cfg.pop("memory_d", 1)
    lmu = LMU(4, 9, d, order=7, theta=20.0, **cfg).double()
    x = torch.randn(33, 5, 4, dtype=torch.float64)
    ref = _numpy_lmu(lmu.cell, x.numpy())
    forms = ["recurrent"] + (["fft"] if lmu.parallel_ok else [])
    assert lmu.resolved_mode() == forms[-1]
    for mode in forms:
        lmu.mode = mode
        np.testing.assert_allclose(lmu(x).detach().numpy(), ref, rtol=0, atol=1e-10)
    stream = LMUCell(4, 9, d, order=7, theta=20.0, **cfg).double()
    stream.load_state_dict(lmu.cell.state_dict())
    hs = [stream(xt) for xt in x.unbind(0)]
    np.testing.assert_allclose(torch.stack(hs).detach().numpy(), ref, rtol=0, atol=1e-10)


def test_fft_and_recurrent_gradients_agree():
    torch.manual_seed(1)
    lmu = LMU(2, 6, order=8, theta=16.0, input_to_hidden=True, hidden_recurrent=True).double()
    x = torch.randn(40, 3, 2, dtype=torch.float64, requires_grad=True)
    _assert_same_gradients_fft_and_recurrent(lmu, x)


def test_streaming_continues_from_the_layer_state():
    lmu = LMU(1, 5, order=6, theta=12.0, hidden_recurrent=True).double()
    x = torch.randn(30, 2, 1, dtype=torch.float64)
    full = lmu(x)
    lmu(x[:18])                              # FFT form, leaves the final state in lmu.cell
    lmu.cell.step_mode = "s"
    rest = torch.stack([lmu.cell(xt) for xt in x[18:].unbind(0)])
    assert torch.allclose(rest, full[18:], atol=1e-10)


def test_shapes_batch_first_return_sequences_and_reset():
    lmu = LMU(3, 4, order=5, theta=10.0, batch_first=True)
    y = lmu(torch.randn(2, 11, 3))
    assert y.shape == (2, 11, 4)
    lmu.return_sequences = False
    assert lmu(torch.randn(2, 11, 3)).shape == (2, 4)
    cell = LMUCell(3, 4, order=5, theta=10.0, step_mode="m")
    assert cell(torch.randn(11, 2, 3)).shape == (11, 2, 4)
    assert cell.m.shape == (2, 5) and cell.h.shape == (2, 4)
    neuroq.reset_net(cell)
    assert cell.m is None and cell.h is None


def test_hidden_cell_with_spiking_activation_same_in_both_forms():
    act = SpikingActivation(torch.tanh, dt=2.0, initial_state="zeros")
    lmu = LMU(2, 6, order=8, theta=16.0, hidden_activation=act,
              u_activation=SpikingActivation(nn.Identity(), dt=2.0, initial_state="zeros"),
              m_activation=SpikingActivation(nn.Identity(), dt=2.0, initial_state="zeros")).double()
    x = torch.randn(25, 3, 2, dtype=torch.float64)
    lmu.mode = "fft"
    y_fft = lmu(x)
    assert act.step_mode == "m"               # feed-forward hidden cell: closed form over T
    lmu.mode = "recurrent"
    y_rec = lmu(x)
    assert act.step_mode == "s"
    assert torch.equal(torch.round(y_fft * 2), y_fft * 2)   # spike counts / dt
    assert torch.allclose(y_fft, y_rec, atol=1e-12)


def test_custom_hidden_cells_follow_the_protocol():
    class Rec(nn.Module):
        recurrent = True

        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6 + 4, 4)

        def forward(self, h_in, h_prev):
            return torch.relu(self.lin(torch.cat([h_in, h_prev], -1)))

    lmu = LMU(1, 4, order=6, theta=9.0, hidden_cell=Rec())
    assert lmu(torch.randn(7, 2, 1)).shape == (7, 2, 4)
    ff = LMU(1, 4, order=6, theta=9.0, hidden_cell=nn.Sequential(nn.Linear(6, 4), SpikingActivation()))
    x = torch.randn(7, 2, 1)
    y = ff(x)
    ff.mode = "recurrent"
    torch.testing.assert_close(y.shape, ff(x).shape)


def test_hidden_cell_with_seqop_gets_its_step_mode_in_both_forms():
    # the LMU sets step modes with neuroq.layer.set_step_mode, which covers SeqOp too: per step the
    # SeqOp sees [N, F] ('s'), over a whole sequence [T, N, F] ('m')
    from neuroq.layer import SeqOp

    torch.manual_seed(5)
    seq = SeqOp(nn.Linear(6, 4), nn.Tanh())
    lmu = LMU(1, 4, order=6, theta=9.0, hidden_cell=nn.Sequential(seq)).double()
    x = torch.randn(7, 2, 1, dtype=torch.float64)
    lmu.mode = "fft"
    y_fft = lmu(x)
    assert seq.step_mode == "m"
    lmu.mode = "recurrent"
    y_rec = lmu(x)
    assert seq.step_mode == "s"
    torch.testing.assert_close(y_rec, y_fft, rtol=0, atol=1e-12)


def test_every_call_resets_modules_swapped_in_after_a_call():
    # the LMU resets itself at each call without SpikingJelly 2.0's cached module list: a stateful
    # module put in after the first call is reset too (each call a whole sequence from zero state)
    lmu = LMU(1, 4, order=6, theta=9.0)
    lmu(torch.randn(7, 2, 1))
    lmu.cell.hidden_cell.activation = SpikingActivation(torch.tanh, dt=2.0, initial_state="zeros")
    x = torch.randn(7, 3, 1)
    y = lmu(x)
    assert torch.equal(lmu(x), y)
    assert lmu(torch.randn(7, 5, 1)).shape == (7, 5, 4)   # no state left over from the batch of 3


def test_keras_style_initialisation():
    torch.manual_seed(0)
    cell = LMUCell(3, 50, 2, order=4, theta=8.0, kernel_init="ones", hidden_recurrent=True,
                   memory_to_memory=True, hidden_to_memory=True)
    assert torch.equal(cell.input_encoder.weight, torch.ones(2, 3))
    U = cell.hidden_cell.recurrent_kernel.weight
    assert torch.allclose(U.T @ U, torch.eye(50), atol=1e-5)
    Wm = cell.memory_encoder.weight                   # [memory_d, d*order], orthonormal rows
    assert torch.allclose(Wm @ Wm.T, torch.eye(2), atol=1e-5)
    W = cell.hidden_cell.kernel.weight
    lim = (6.0 / (2 * 4 + 50)) ** 0.5
    assert W.abs().max() <= lim and W.abs().max() > 0.8 * lim
    assert torch.equal(cell.hidden_cell.kernel.bias, torch.zeros(50))
    g = LMUCell(30, 4, 20, order=3, theta=8.0).input_encoder.weight
    assert g.abs().max() <= (6.0 / 50) ** 0.5


def test_lmu_argument_checks():
    with pytest.raises(ValueError, match="mode='fft' needs a memory without recurrence"):
        LMU(1, 3, order=4, theta=5.0, hidden_to_memory=True, mode="fft")
    with pytest.raises(ValueError, match="kernel_init=None"):
        LMUCell(2, 3, 1, order=4, theta=5.0, kernel_init=None)
    with pytest.raises(ValueError, match="discretizer"):
        LMUCell(1, 3, order=4, theta=5.0, discretizer="bilinear")
    with pytest.raises(ValueError, match="kernel_init"):
        LMUCell(1, 3, order=4, theta=5.0, kernel_init="he")
    with pytest.raises(ValueError, match="theta"):
        LMUCell(1, 3, order=4, theta=0.0)
    with pytest.raises(TypeError, match="order"):
        LMUCell(1, 3, order=2.5, theta=3.0)
    with pytest.raises(ValueError, match="input_size=2"):
        LMU(2, 3, order=4, theta=5.0)(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="cannot be combined"):
        LMUCell(1, 3, order=4, theta=5.0, hidden_cell=nn.Linear(4, 3), hidden_recurrent=True)
    cell = LMUCell(1, 3, order=4, theta=5.0)
    cell(torch.randn(2, 1))
    with pytest.raises(RuntimeError, match="reset_net"):
        cell(torch.randn(3, 1))
    assert LMUCell(2, 3, 2, order=4, theta=5.0, kernel_init=None).input_encoder is None
    assert isinstance(LMUCell(1, 3, order=4, theta=5.0).hidden_cell, LMUHiddenCell)


# ---- lowpass ------------------------------------------------------------------------------------------
def test_lowpass_equals_scipy_lfilter_per_unit():
    taus = torch.tensor([0.5, 2.0, 7.0, 30.0], dtype=torch.float64)
    lp = Lowpass(tau=1.0, units=4, dt=0.7, step_mode="m").double()
    with torch.no_grad():
        lp.log_tau.copy_(taus.log())
    x = torch.randn(60, 3, 4, dtype=torch.float64)
    y = lp(x)
    for k in range(4):
        a = float(np.exp(-0.7 / taus[k]))
        ref = ss.lfilter([1 - a], [1, -a], x[:, :, k].numpy(), axis=0)
        np.testing.assert_allclose(y[:, :, k].detach().numpy(), ref, rtol=0, atol=1e-12)
    single = Lowpass(tau=1.0, units=4, dt=0.7).double()
    single.load_state_dict(lp.state_dict())
    ys = torch.stack([single(xt) for xt in x.unbind(0)])
    assert torch.allclose(ys, y, atol=1e-14)


def test_lowpass_tau_gradient_and_options():
    lp = Lowpass(tau=3.0, units=(2, 1, 1), step_mode="m").double()
    x = torch.randn(12, 2, 2, 3, 3, dtype=torch.float64)
    def through_module(log_tau):
        lp.reset()
        return torch.func.functional_call(lp, {"log_tau": log_tau}, (x,))

    assert torch.autograd.gradcheck(through_module, (lp.log_tau.detach().clone().requires_grad_(),))
    lp.reset()
    y = lp(x)
    y.sum().backward()
    assert lp.log_tau.grad.shape == (2, 1, 1)
    assert lp.tau.detach().allclose(torch.full((2, 1, 1), 3.0, dtype=torch.float64))
    neuroq.reset_net(lp)
    assert lp.y is None
    off = Lowpass(tau=3.0, apply_during_training=False, step_mode="m")
    assert torch.equal(off(x.float()), x.float())
    off.eval()
    assert not torch.equal(off(x.float()), x.float())
    assert not Lowpass(tau=2.0, learn_tau=False).log_tau.requires_grad
    with pytest.raises(ValueError, match="does not broadcast"):
        Lowpass(tau=2.0, units=5)(torch.randn(2, 4))
    with pytest.raises(ValueError, match="tau"):
        Lowpass(tau=0.0)



# ---- the last-step form (phase B) ---------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [dict(), dict(input_to_hidden=True, kernel_init="ones"),
                                 dict(memory_d=3, use_bias=True)], ids=["default", "x_to_hidden", "d3_bias"])
def test_last_step_form_equals_explicit_loop_and_its_gradients(cfg):
    cfg = dict(cfg)
    d = cfg.pop("memory_d", 1)
    lmu = LMU(4, 9, d, order=7, theta=20.0, return_sequences=False, **cfg).double()
    assert lmu.last_step_ok
    x = torch.randn(33, 5, 4, dtype=torch.float64, requires_grad=True)
    ref = _numpy_lmu(lmu.cell, x.detach().numpy())[-1]
    h = lmu(x)
    np.testing.assert_allclose(h.detach().numpy(), ref, rtol=0, atol=1e-10)
    _assert_same_gradients_fft_and_recurrent(lmu, x)  # the last-step form (fft + return_sequences=False) vs the loop
    m_end = lmu.cell.memory(torch.randn(33, 5, d, dtype=torch.float64), mode="last")
    assert m_end.shape == (5, d * 7)


def test_last_step_memory_equals_scipy_dlsim():
    A, B = FL.lmu_matrices(6, 15.0)
    u = np.random.default_rng(3).standard_normal(50)
    _, y, xs = ss.dlsim((A.numpy(), B.numpy(), np.eye(6), np.zeros((6, 1)), 1.0), u)
    m = FL.memory_last(torch.from_numpy(u).reshape(50, 1, 1), FL.impulse_response(A, B, 50))
    # dlsim's state x[t] is before input u[t]; m_{T-1} = A x[T-1] + B u[T-1]
    np.testing.assert_allclose(m[0, 0].numpy(), A.numpy() @ xs[-1] + B.numpy()[:, 0] * u[-1], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="impulse response"):
        FL.memory_last(torch.zeros(5, 1, 1), FL.impulse_response(A, B, 4))


def test_last_step_form_is_used_only_when_it_applies():
    base = dict(order=5, theta=10.0, return_sequences=False)
    assert LMU(1, 4, **base).last_step_ok
    assert not LMU(1, 4, order=5, theta=10.0).last_step_ok                         # return_sequences
    assert not LMU(1, 4, hidden_recurrent=True, **base).last_step_ok              # recurrent hidden cell
    assert not LMU(1, 4, hidden_to_memory=True, **base).last_step_ok              # recurrent memory
    assert not LMU(1, 4, mode="recurrent", **base).last_step_ok
    assert not LMU(1, 4, hidden_activation=SpikingActivation(torch.tanh), **base).last_step_ok   # stateful
    assert not LMU(1, 4, m_activation=nn.Identity(), **base).last_step_ok
    lmu = LMU(1, 4, u_activation=nn.ReLU(), **base)
    assert lmu.last_step_ok
    x = torch.randn(20, 3, 1)
    h = lmu(x)
    lmu.mode = "recurrent"
    assert torch.allclose(h, lmu(x), atol=1e-5)
    assert lmu.cell.m.shape == (3, 5) and lmu.cell.h.shape == (3, 4)


def test_lowpass_final_equals_the_loop_value_and_gradient():
    lp = Lowpass(tau=4.0, units=3, dt=0.5, step_mode="m").double()
    with torch.no_grad():
        lp.log_tau.copy_(torch.tensor([0.1, 4.0, 40.0], dtype=torch.float64).log())
    x = torch.randn(70, 2, 3, dtype=torch.float64, requires_grad=True)
    y_last, grads = [], []
    for f in (lambda z: lp(z)[-1], lp.final):
        lp.reset()
        lp.zero_grad()
        x.grad = None
        y = f(x)
        (y * torch.arange(1.0, 4.0, dtype=torch.float64)).sum().backward()
        y_last.append(y.detach())
        grads.append((x.grad.clone(), lp.log_tau.grad.clone()))
    for k in range(3):   # independent reference: scipy's lfilter of the same recursion
        a = float(np.exp(-0.5 / float(lp.tau[k].detach())))
        ref = ss.lfilter([1 - a], [1, -a], x[:, :, k].detach().numpy(), axis=0)[-1]
        np.testing.assert_allclose(y_last[1][:, k].numpy(), ref, rtol=0, atol=1e-12)
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-10)
    # a stored state decays by a^T and the state is left at the last value: two chunks = one sequence
    xd = x.detach()
    lp.reset()
    lp.final(xd[:30])
    cont = lp.final(xd[30:])
    assert torch.equal(lp.y, cont)
    lp.reset()
    assert torch.allclose(cont, lp(xd)[-1], atol=1e-12)


@pytest.mark.parametrize("inp,d,bias", [(1, 1, False), (1, 2, True), (2, 3, True)])
def test_memory_from_its_linear_source_equals_loop_and_gradients(inp, d, bias):
    """Data x (no gradient): the FFT form computes m = (H * x) W^T + b sum H, whose backward needs no FFT."""
    torch.manual_seed(2)
    lmu = LMU(inp, 5, d, order=6, theta=15.0, use_bias=bias, input_to_hidden=True).double()
    with torch.no_grad():
        if bias:
            lmu.cell.u_bias.normal_()
    x = torch.randn(40, 3, inp, dtype=torch.float64)
    calls = []
    orig = lmu.cell.memory._fft_from_source
    lmu.cell.memory._fft_from_source = lambda *a: calls.append(1) or orig(*a)
    ref = _numpy_lmu(lmu.cell, x.numpy())
    grads = []
    for mode in ("fft", "recurrent"):
        lmu.mode = mode
        lmu.zero_grad()
        h = lmu(x)
        np.testing.assert_allclose(h.detach().numpy(), ref, rtol=0, atol=1e-10)
        (h ** 2).sum().backward()
        grads.append([p.grad.clone() for p in lmu.parameters()])
    assert calls == [1]                                   # the fft form took the source path
    for g1, g2 in zip(*grads):
        assert torch.allclose(g1, g2, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="source"):
        lmu.cell.memory(torch.zeros(40, 3, d), mode="recurrent", source=(x, lmu.cell.input_encoder.weight, None))
