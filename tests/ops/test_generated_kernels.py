"""Kernels generated from a neuron's own pure step (neuroq/ops/codegen.py traces and emits,
neuroq/ops/generated.py compiles and launches through neuroq/ops/launch.py) against the torch loop over
the same step (the definition of correct).

On the CPU (fp32): spikes exact; states exact for steps of + - * / and comparisons, to 1e-6 where the
step uses exp/tanh (the C library's functions, torch's are SLEEF's); gradients to 1e-6 of the
gradient's scale (max(1, |largest gradient|)), for

* LIF (a LIFNode whose hand-written kernel is switched off) -- also equal to the hand-written kernel:
  every reset mode, detach_reset, decay_input, true-division and power-of-two tau;
* a quadratic IF, an adaptive LIF (2 states), Izhikevich (2 states) and a neuron of exp / tanh / where
  / clamp, over random shapes and T, hard and soft reset, detach_reset;
* a neuron made of every other supported op;
* fp16/bf16 storage (against the fp32 loop on the upcast input), single-step mode, a state carried
  over calls, 1 and 2 threads, what backward keeps, the vectorised loops.

Dispatch: backend='auto' runs the generated kernel; a LIFNode subclass that overrides its charge
gets one; a step with an unsupported op runs the torch loop after a one-line notice naming the op;
neuroq.ops.generated_source shows the code; neurons that differ only in their numbers share one
compiled library (the cache of the hand-written kernels).

CUDA: the generated source compiles with nvcc and NVRTC (CuPy's options); its entry points, compiled
for the CPU and run over an emulated grid, equal the torch loop, also through the Python launch path;
on a GPU (``@pytest.mark.cuda``) backend='cupy' equals backend='torch'.
"""
from __future__ import annotations

import ctypes
import glob
import math
import os
import re
import shutil
import site
import subprocess
import warnings
import zlib

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import surrogate

import neuroq
from neuroq.functional import neuron as neuron_fn
from neuroq.neuron import BaseNode, LIFNode
from neuroq.ops import KERNEL_DIR, build, codegen, cpu, expand_includes, generated
from neuroq.ops import cuda as nk

SURROGATES = [surrogate.Sigmoid(alpha=4.0), surrogate.ATan(alpha=2.0), surrogate.PiecewiseQuadratic(alpha=1.0)]


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = cpu.status()
    if not ok:
        pytest.skip(f"CPU kernels unavailable here: {why}")


# ---------------------------------------------------------------------------------------------
# the neurons
# ---------------------------------------------------------------------------------------------
class GenLIF(LIFNode):
    """LIF's own equations with the hand-written kernel switched off: the generated kernel runs."""

    kernel_family = None


class QIF(BaseNode):
    r"""Quadratic integrate-and-fire: :math:`H = V + (X + a_0 (V - V_{rest})(V - V_c)) / \tau`."""

    def __init__(self, tau=2.0, a0=1.0, v_rest=0.0, v_c=0.8, **kw):
        super().__init__(**kw)
        self.tau, self.a0, self.v_rest, self.v_c = tau, a0, v_rest, v_c

    def neuronal_charge(self, x, v):
        return v + (x + self.a0 * (v - self.v_rest) * (v - self.v_c)) / self.tau


class AdaptiveLIF(BaseNode):
    states = ("v", "a")

    def __init__(self, tau=2.0, beta=0.5, rho=0.8, **kw):
        super().__init__(**kw)
        self.tau, self.beta, self.rho = tau, beta, rho

    def step(self, x, v, a):
        h = v + (x - v) / self.tau
        s = self.surrogate_function(h - self.v_threshold - self.beta * a)
        return s, self.neuronal_reset(h, s), self.rho * a + s


class Izhikevich(BaseNode):
    """Izhikevich (2003), one Euler step of dt (ms) per time step, v in units of 100 mV."""

    states = {"v": -0.65, "u": -0.13}

    def __init__(self, a=0.02, b=0.2, c=-0.65, d=0.08, dt=0.5, **kw):
        super().__init__(v_threshold=0.3, v_reset=c, **kw)
        self.a, self.b, self.d, self.dt = a, b, d, dt

    def step(self, x, v, u):
        h = v + self.dt * (4.0 * v * v + 5.0 * v + 1.4 - u + x)
        s = self.neuronal_fire(h)
        return s, self.neuronal_reset(h, s), u + self.dt * self.a * (self.b * v - u) + self.d * s


class ExpTanh(BaseNode):
    """exp, tanh, where and clamp: the adaptation w strengthens an exponential leak."""

    states = ("v", "w")

    def step(self, x, v, w):
        leak = torch.exp(-0.5 * torch.clamp(w, 0.0, 2.0))
        h = v * leak + torch.tanh(x)
        s = self.surrogate_function(h - self.v_threshold)
        v_new = torch.where(s > 0, h - self.v_threshold, h)
        return s, v_new, 0.8 * w + 0.5 * s


class GatedNode(BaseNode):
    """A gate of both inputs (a boolean) that the backward reads: the fewest values it keeps include that
    boolean (stored as 1 / 0)."""

    def neuronal_charge(self, x, v):
        gate = (x > 0.5) & (v < 0.3)
        return torch.where(gate, v * 0.5 + x, v + 0.25 * x) + 0.1


class Zoo(BaseNode):
    """Every other supported op once (values kept in the ops' domains)."""

    states = ("v", "a")

    def step(self, x, v, a):
        p = torch.sigmoid(x) * 0.5 + torch.relu(x - 1.0) * 0.25 - torch.abs(v) * 0.125
        q = torch.maximum(v, a - 0.5) + torch.minimum(x, 0.5 * a) - torch.clamp_min(v, -0.25)
        r = torch.sqrt(1.0 + a * a) - torch.rsqrt(2.0 + v * v) + 1.0 / (3.0 + a) + torch.reciprocal(2.0 + x * x)
        z = torch.sin(x) * 0.1 + torch.cos(v) * 0.05 + torch.log(1.5 + torch.tanh(a)) * 0.2 + torch.square(v) * 0.1
        z = z + (v ** 3) * 0.01 + torch.clamp_max(x, 1.5) * 0.1 + torch.sign(x) * 0.02 - (-v) * 0.1
        m = ((x > 0.2) & (v < 0.6)) | ~(a >= 0.1)
        h = 0.5 * v + 0.3 * p + 0.2 * q + 0.1 * r + z + m.float() * 0.05 + torch.zeros_like(v) + x / (2.0 + a)
        h = h.masked_fill(x < -2.5, -0.5)
        s = self.surrogate_function(h - self.v_threshold)
        v_new = torch.where(s.bool(), torch.full_like(h, 0.0), h - 0.1 * s.detach())
        return s, v_new, (0.7 * a + s).clamp(0.0, 3.0)


MAKERS = {
    "qif": lambda **kw: QIF(**kw),
    "adaptive_lif": lambda **kw: AdaptiveLIF(**kw),
    "izhikevich": lambda **kw: Izhikevich(**{k: v for k, v in kw.items() if k not in ("v_reset",)}),
    "exp_tanh": lambda **kw: ExpTanh(**kw),
    "gated": lambda **kw: GatedNode(**kw),
}
EXACT = {"qif": True, "adaptive_lif": True, "izhikevich": True, "exp_tanh": False, "zoo": False, "lif": True,
         "gated": True}


# ---------------------------------------------------------------------------------------------
# comparing the generated kernel with the torch loop
# ---------------------------------------------------------------------------------------------
def _run(node, x, grads, store=True):
    """Spikes, last states, state sequences and d loss / dx of ``node`` (multi-step) under a weighted loss."""
    node.store_state_seqs = store
    x = x.detach().clone().requires_grad_(True)
    s = node(x)
    names = node.state_names()
    lasts = [getattr(node, n) for n in names]
    seqs = [getattr(node, n + "_seq") for n in names] if store else []
    loss = (s * grads[0]).sum() + sum((v * grads[2]).sum() for v in lasts) + sum((q * grads[1]).sum() for q in seqs)
    (gx,) = torch.autograd.grad(loss, x)
    return s.detach(), [v.detach() for v in lasts], [q.detach() for q in seqs], gx


def _case(T, shape, seed, scale=1.2, offset=0.4):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((T,) + tuple(shape), generator=gen) * scale + offset
    grads = (torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen) * 0.3,
             torch.randn(x.shape[1:], generator=gen))
    return x, grads


def _grad_close(g, ref):
    """Gradients to 1e-6 of their scale (max(1, the largest |gradient|))."""
    scale = max(1.0, float(ref.abs().max()))
    torch.testing.assert_close(g, ref, atol=1e-6 * scale, rtol=1e-6)


def _assert_same(ours, ref, exact=True, nontrivial=True):
    s, lasts, seqs, gx = ours
    rs, rlasts, rseqs, rgx = ref
    assert torch.equal(s, rs), f"{(s != rs).sum().item()} spikes differ"
    if nontrivial and s.numel() >= 100:
        assert 0 < s.sum() < s.numel()
    for a, b in zip(lasts + seqs, rlasts + rseqs):
        if exact:
            assert torch.equal(a, b), (a - b).abs().max()
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    _grad_close(gx, rgx)


def _shape(seed):
    gen = torch.Generator().manual_seed(seed)
    dims = int(torch.randint(1, 4, (1,), generator=gen))
    shape = tuple(int(d) for d in torch.randint(1, 40, (dims,), generator=gen))
    return shape if math.prod(shape) >= 30 else shape + (31,)


# ---------------------------------------------------------------------------------------------
# LIF: generated == torch loop == hand-written kernel
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.4])
def test_generated_lif_equals_torch_loop_and_hand_written_kernel(v_reset, detach, decay_input):
    seed = zlib.crc32(repr((v_reset, detach, decay_input)).encode()) % 10_000
    T = (1, 2, 7, 16, 64)[seed % 5]
    shape = ((5,), (333,), (3, 1367), (9000,))[seed % 4]
    sg = SURROGATES[seed % len(SURROGATES)]
    x, grads = _case(T, shape, seed)
    for tau in (2.5, 2.0):  # true division, and the exact reciprocal of a power of two
        kw = dict(tau=tau, decay_input=decay_input, v_reset=v_reset, detach_reset=detach, surrogate_function=sg,
                  step_mode="m")
        ours = _run(GenLIF(backend="cpu", **kw), x, grads)
        _assert_same(ours, _run(GenLIF(backend="torch", **kw), x, grads))
        _assert_same(ours, _run(LIFNode(backend="cpu", **kw), x, grads))  # the hand-written kernel


# ---------------------------------------------------------------------------------------------
# QIF, adaptive LIF, Izhikevich, exp/tanh/where/clamp
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reset", ["hard", "soft", "hard-detach", "soft-detach"])
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_generated_kernel_equals_torch_loop(name, reset):
    seed = zlib.crc32(repr((name, reset)).encode()) % 10_000
    T = (1, 3, 8, 16, 32)[seed % 5] if name != "izhikevich" else (1, 3, 8, 12)[seed % 4]  # (its BPTT gradient grows ~5x a step)
    shape = _shape(seed)
    kw = dict(v_reset=None if reset.startswith("soft") else 0.0, detach_reset=reset.endswith("detach"),
              surrogate_function=SURROGATES[seed % len(SURROGATES)], step_mode="m")
    scale, offset = (0.3, 0.0) if name == "izhikevich" else (1.2, 0.4)
    x, grads = _case(T, shape, seed, scale, offset)
    ours = _run(MAKERS[name](backend="cpu", **kw), x, grads)
    ref = _run(MAKERS[name](backend="torch", **kw), x, grads)
    _assert_same(ours, ref, exact=EXACT[name], nontrivial=T > 2)


def test_a_step_of_every_supported_op():
    x, grads = _case(9, (7, 101), 3, 1.5, 0.3)
    ours = _run(Zoo(step_mode="m", backend="cpu"), x, grads)
    ref = _run(Zoo(step_mode="m", backend="torch"), x, grads)
    _assert_same(ours, ref, exact=False)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["lif", "adaptive_lif"])
def test_half_storage_fp32_state(name, dtype):
    """fp16/bf16 storage: read, computed in fp32, written rounded.  Equal to the fp32 torch loop on the
    upcast input: spikes exactly, states = round(fp32 state), gradients to storage precision."""
    x, grads = _case(16, (777,), 11)
    x = x.to(dtype)
    qgrads = tuple(g.to(dtype) for g in grads)
    make = (lambda b: GenLIF(tau=2.5, v_reset=None, step_mode="m", backend=b)) if name == "lif" else \
        (lambda b: AdaptiveLIF(tau=2.5, step_mode="m", backend=b))
    s, lasts, seqs, gx = _run(make("cpu"), x, qgrads)
    rs, rlasts, rseqs, rgx = _run(make("torch"), x.float(), tuple(g.float() for g in qgrads))
    assert s.dtype == dtype and torch.equal(s.float(), rs)
    for a, b in zip(lasts + seqs, rlasts + rseqs):
        assert a.dtype == dtype and torch.equal(a, b.to(dtype))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(gx.float(), rgx, atol=1e-5, rtol=eps)


def test_single_step_mode_and_a_state_carried_across_calls(monkeypatch):
    """Single-step mode runs the generated kernel (T = 1 per call); over several calls, and over two
    multi-step calls with the graph connected, values and gradients equal the torch loop's."""
    calls = []
    real = generated.launch
    monkeypatch.setattr(generated, "launch", lambda *a: calls.append(a[0]) or real(*a))
    x, grads = _case(6, (5, 40), 2)
    for mode in ("s", "m"):
        nodes = [AdaptiveLIF(step_mode=mode, backend=b) for b in ("auto", "torch")]
        outs = []
        for node in nodes:
            xx = x.clone().requires_grad_(True)
            if mode == "s":
                s = torch.stack([node(xt) for xt in xx])
            else:
                s = torch.cat([node(xx[:2]), node(xx[2:])])
            loss = (s * grads[0]).sum() + (node.a * grads[2]).sum() + node.v.sum()
            outs.append((s.detach(), node.v.detach(), node.a.detach(), torch.autograd.grad(loss, xx)[0]))
        (s, v, a, g), (rs, rv, ra, rg) = outs
        assert torch.equal(s, rs) and torch.equal(v, rv) and torch.equal(a, ra)
        _grad_close(g, rg)
    assert calls.count("cpu") == 6 + 2


def test_one_and_two_threads_identical():
    """Each neuron is computed by one thread: the OpenMP split changes nothing, bit for bit."""
    x, grads = _case(16, (70_001,), 3)
    old = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(_run(AdaptiveLIF(step_mode="m", backend="cpu"), x, grads))
    finally:
        torch.set_num_threads(old)
    (s1, l1, q1, g1), (s2, l2, q2, g2) = outs
    assert torch.equal(s1, s2) and torch.equal(g1, g2)
    assert all(torch.equal(a, b) for a, b in zip(l1 + q1, l2 + q2))


def _build_with(monkeypatch, *flags):
    """Generated kernels built from here on in the test are compiled with ``flags`` added (checked: the
    library reports its streaming threshold and its time-inside-tiles limit)."""
    monkeypatch.setattr(build, "_STEP_LIBS", {})
    monkeypatch.setattr(build, "STEP_EXTRA_FLAGS", build.STEP_EXTRA_FLAGS + tuple(flags))


def _built_settings():
    assert build._STEP_LIBS, "no generated kernel was built"
    out = set()
    for lib in build._STEP_LIBS.values():
        lib.nq_step_stream_min_bytes.restype = ctypes.c_longlong
        lib.nq_step_t_inner_max.restype = ctypes.c_int
        out.add((lib.nq_step_stream_min_bytes(), lib.nq_step_t_inner_max()))
    return out


#: forward loop variants: (streaming threshold in bytes, time-inside-tiles limit) forced by compile flags
FORWARD_VARIANTS = {"blocks": ("-DNQ_STREAM_MIN_BYTES=0x7fffffffffffffff", "-DNQ_STEP_T_INNER_MAX=0"),
                    "blocks-streamed": ("-DNQ_STREAM_MIN_BYTES=0", "-DNQ_STEP_T_INNER_MAX=0"),
                    "tiles": ("-DNQ_STREAM_MIN_BYTES=0x7fffffffffffffff", "-DNQ_STEP_T_INNER_MAX=1000"),
                    "tiles-streamed": ("-DNQ_STREAM_MIN_BYTES=0", "-DNQ_STEP_T_INNER_MAX=1000")}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", sorted(FORWARD_VARIANTS))
def test_every_forward_loop_equals_the_torch_loop(variant, threads, monkeypatch):
    """Each forward loop of the CPU template (blocks with time outside, tiles with time inside; ordinary or
    streaming stores), forced whatever the size: spikes, both kept state sequences, last states and dL/dx
    equal the torch loop's, with rows not aligned to a cache line (N = 3003) and blocks and tiles ending
    mid-chunk."""
    _build_with(monkeypatch, *FORWARD_VARIANTS[variant])
    x, grads = _case(7, (3, 1001), 5)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ours = _run(AdaptiveLIF(step_mode="m", backend="cpu"), x, grads)
    finally:
        torch.set_num_threads(old)
    _assert_same(ours, _run(AdaptiveLIF(step_mode="m", backend="torch"), x, grads), exact=EXACT["adaptive_lif"])
    stream, t_inner = _built_settings().pop()
    assert (stream == 0) == variant.endswith("streamed") and (t_inner == 1000) == variant.startswith("tiles")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_storage_same_bits_through_every_forward_loop(dtype, monkeypatch):
    """fp16/bf16 outputs through streaming stores and through the tiles are the same bits as through the
    blocks with ordinary stores (which test_half_storage_fp32_state holds to the fp32 torch loop)."""
    x, grads = _case(5, (2, 999), 8)
    x, qgrads = x.to(dtype), tuple(g.to(dtype) for g in grads)
    _build_with(monkeypatch, *FORWARD_VARIANTS["blocks"])
    plain = _run(AdaptiveLIF(step_mode="m", backend="cpu"), x, qgrads)
    for variant in ("blocks-streamed", "tiles", "tiles-streamed"):
        _build_with(monkeypatch, *FORWARD_VARIANTS[variant])
        streamed = _run(AdaptiveLIF(step_mode="m", backend="cpu"), x, qgrads)
        for a, b in zip([plain[0], *plain[1], *plain[2], plain[3]],
                        [streamed[0], *streamed[1], *streamed[2], streamed[3]]):
            assert a.dtype == dtype and torch.equal(a, b), variant


def test_backward_keeps_only_the_inputs():
    """On the CPU the forward saves nothing for backward but its inputs (x and the initial states): no states
    per step (the backward recomputes the values it needs block by block)."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(16, 1000, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = AdaptiveLIF(step_mode="m", backend="cpu")(x)
    assert len(saved) == 3 and saved[0].data_ptr() == x.data_ptr()
    assert all(t.numel() == 1000 for t in saved[1:])
    s.sum().backward()


def _recomputable(g, saved, used):
    """Whether every value of ``used`` follows from ``saved`` and the constants alone (an explicit walk)."""
    def ok(i, seen):
        if i in saved or g.ops[i].kind == "const":
            return True
        if g.ops[i].kind in ("x", "state"):
            return False
        return all(ok(a, seen) for a in g.ops[i].args)
    return all(ok(i, set()) for i in used)


@pytest.mark.parametrize("name", ["lif", "qif", "adaptive_lif", "izhikevich", "exp_tanh", "zoo", "gated"])
def test_backward_keeps_the_fewest_values_it_can_recompute_from(name):
    """What the forward keeps for the backward (codegen.save_set) against a brute-force search: it lets the
    backward recompute every value its vector-Jacobian product reads, and no smaller set of values does; a
    LIF keeps H alone (as the hand-written kernel does), never more than the inputs (x and the states)."""
    import itertools

    node = {"lif": GenLIF, "zoo": Zoo, **MAKERS}[name]()
    g = codegen.trace(node)
    e = codegen.emit(g, "cpu")
    body = e.struct.split("backward(", 1)[1]
    used = {int(m) for m in re.findall(r"\bv(\d+)\b", body.split("float g", 1)[1])} if "float g" in body else set()
    dep = codegen._depends_on_input(g)
    used = {i for i in used if dep[i]}
    cut = set(codegen.save_set(g, used))
    assert _recomputable(g, cut, used)
    assert len(cut) <= g.n_states + 1
    candidates = [i for i in range(len(g.ops)) if dep[i]]
    for k in range(len(cut)):
        assert not any(_recomputable(g, set(r), used) for r in itertools.combinations(candidates, k)), k
    assert e.n_save == generated.StepProgram(g).n_save == codegen.emit(g, "cuda").n_save
    # the kernel keeps the cut, plus (for steps whose comparisons read a recomputed multiply-add: exp_tanh's
    # h = v * leak + tanh(x), zoo's) those operands, so that the reverse loop (FMA allowed) recomputes every
    # spike, kink and condition bit for bit
    assert set(e.saved) >= cut
    assert (set(e.saved) == cut) == (name not in ("exp_tanh", "zoo"))
    for i in set(e.saved) - cut:
        assert any(i in op.args and op.kind in codegen._COMPARES for op in g.ops)
    if name == "lif":
        assert e.n_save == 1 and g.ops[e.saved[0]].kind == "add"  # H = V + (X - V) / tau
    if name == "gated":  # the gate (a boolean) is kept, and read back as one
        assert any(g.ops[i].dtype == "b" for i in e.saved)
        assert re.search(r"const bool v\d+ = sv\[\d\] != 0.0f;", e.struct)


# ---------------------------------------------------------------------------------------------
# dispatch, fallback, source, cache
# ---------------------------------------------------------------------------------------------
class ScaledChargeLIF(LIFNode):
    """A LIFNode subclass that overrides the charge (the hand-written kernel implements LIFNode's)."""

    def neuronal_charge(self, x, v):
        return super().neuronal_charge(1.5 * x, v)


def test_auto_runs_the_generated_kernel_and_a_lif_subclass_gets_one(monkeypatch):
    calls = []
    real = generated.launch
    monkeypatch.setattr(generated, "launch", lambda *a: calls.append(type(a[1]).__name__) or real(*a))
    x = torch.rand(8, 50) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no notice: the kernel runs
        for make in (lambda b: ScaledChargeLIF(step_mode="m", backend=b), lambda b: QIF(step_mode="m", backend=b)):
            ours, ref = make("auto")(x), make("torch")(x)
            assert torch.equal(ours, ref) and ours.sum() > 0
        ScaledChargeLIF(step_mode="m", backend="cpu")(x)
    assert calls == ["StepProgram"] * 3
    assert not ScaledChargeLIF().kernel_allowed() and LIFNode().kernel_allowed()
    LIFNode(step_mode="m")(x)  # the hand-written kernel: no generated launch
    assert len(calls) == 3


class SortNode(BaseNode):
    def neuronal_charge(self, x, v):
        return v + torch.sort(x, dim=-1).values


class BranchNode(BaseNode):
    def neuronal_charge(self, x, v):
        return v + x if (x > 0).all() else v


class ParamNode(BaseNode):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.tau = torch.nn.Parameter(torch.tensor(2.0))

    def neuronal_charge(self, x, v):
        return v + (x - v) / self.tau


class InPlaceNode(BaseNode):
    def neuronal_charge(self, x, v):
        return (v + x).mul_(0.5)


class SortLIF(LIFNode):
    def neuronal_charge(self, x, v):
        return v + torch.cumsum(x, dim=-1)


@pytest.mark.parametrize("cls,match", [
    (SortNode, r"^neuroq: SortNode.step uses torch.sort, which the generated kernels do not support; SortNode runs "
               r"the torch loop over its own step\(\)$"),
    (BranchNode, r"BranchNode.step uses a tensor in Python control flow"),
    (ParamNode, r"ParamNode.step reads the tensor attribute 'n.tau'.*learnable parameter"),
    (InPlaceNode, r"InPlaceNode.step uses the in-place op mul_"),
    (SortLIF, r"SortLIF.step uses torch.cumsum.*\(it overrides neuronal_charge of a neuron with a hand-written "
              r"kernel\); SortLIF runs the torch loop over its own step\(\)"),
])
def test_unsupported_op_runs_the_torch_loop_after_one_notice(cls, match, monkeypatch):
    import neuroq.neuron.base as nbase

    monkeypatch.setattr(nbase, "_WARNED", set())
    x = torch.rand(4, 3, 6) + 0.5
    with pytest.warns(RuntimeWarning, match=match) as rec:
        out = cls(step_mode="m")(x)
    assert len([w for w in rec if "neuroq" in str(w.message)]) == 1 and "\n" not in str(rec[0].message)
    assert torch.equal(out, cls(step_mode="m", backend="torch")(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per class and reason
        cls(step_mode="m")(x)
        cls(step_mode="s")(x[0])


def test_float64_and_a_surrogate_without_device_version(monkeypatch):
    """float64 runs the torch loop silently under 'auto' (as the hand-written kernels); a surrogate without a
    device version is a property of the step: one notice naming it."""
    import neuroq.neuron.base as nbase

    monkeypatch.setattr(nbase, "_WARNED", set())
    x = torch.rand(5, 7, dtype=torch.float64) * 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(QIF(step_mode="m")(x), QIF(step_mode="m", backend="torch")(x))
    with pytest.warns(RuntimeWarning, match=r"QIF.step uses the surrogate SoftSign, which has no device version"):
        QIF(step_mode="m", surrogate_function=surrogate.SoftSign(alpha=2.0))(x.float())


def test_generated_source_shows_the_code_and_neurons_share_one_library(monkeypatch):
    text = neuroq.ops.generated_source(AdaptiveLIF(tau=3.0, beta=0.25))
    assert text.startswith("// neuroq: kernel generated from AdaptiveLIF.step for cpu (storage float)")
    assert "//   c[0] = 3.0" in text and "//   c[2] = 0.25" in text and "Sigmoid: kind=1" in text
    assert "struct NQStep" in text and "enum { NSTATE = 2," in text and '#include "step_kernels_cpu.cpp"' in text
    assert "static NQ_HD_MEMBER float backward" in text and "nq_surrogate_grad(1, 0, sg[0]" in text
    cuda = neuroq.ops.generated_source(AdaptiveLIF(tau=3.0), backend="cupy", dtype=torch.bfloat16)
    assert "storage nq_bf16" in cuda and "#define NQ_STEP_CONST_ARGS" in cuda and '#include "step_kernels.cu"' in cuda
    # numbers are run-time constants: another tau, threshold or alpha compiles nothing new
    x = torch.rand(4, 64)
    AdaptiveLIF(step_mode="m", backend="cpu")(x)
    builds = []
    real = build.shared_library
    monkeypatch.setattr(build, "shared_library", lambda *a, **k: builds.append(a[2]) or real(*a, **k))
    monkeypatch.setattr(build, "_STEP_LIBS", {})  # forget the loaded libraries: the disk cache still has them
    for node in (AdaptiveLIF(tau=3.0, beta=0.1, v_threshold=0.7, step_mode="m", backend="cpu"),
                 AdaptiveLIF(tau=5.0, surrogate_function=surrogate.Sigmoid(alpha=2.0), step_mode="m", backend="cpu")):
        assert torch.equal(node(x), AdaptiveLIF(**{k: getattr(node, k) for k in ("tau", "beta")},
                                                 v_threshold=node.v_threshold, surrogate_function=node.surrogate_function,
                                                 step_mode="m", backend="torch")(x))
    assert len(set(generated.program(AdaptiveLIF(tau=t)).text("cpu") for t in (3.0, 5.0, 7.0))) == 1
    assert generated.program(AdaptiveLIF(tau=2.0)).text("cpu") != generated.program(AdaptiveLIF(tau=3.0)).text("cpu")
    texts = {expand_includes(generated.program(AdaptiveLIF(tau=t)).text("cpu")) for t in (3.0, 5.0)}
    assert len(texts) == 1
    assert len(builds) == 1  # found in the on-disk cache, not recompiled (shared_library returns the cached file)
    with pytest.raises(neuroq.ops.Unsupported, match="torch.sort"):
        neuroq.ops.generated_source(SortNode())


def test_traces_are_cached_per_class_and_attribute_values(monkeypatch):
    traces = []
    real = codegen.trace
    monkeypatch.setattr(codegen, "trace", lambda n: traces.append(type(n).__name__) or real(n))
    monkeypatch.setattr(generated, "_PROGRAMS", type(generated._PROGRAMS)())
    node = AdaptiveLIF(step_mode="m")
    x = torch.rand(3, 20)
    for _ in range(3):
        node(x)
        node.reset()
    assert traces == ["AdaptiveLIF"]
    node.tau = 4.0  # a new number: traced again (its constant), same library
    node(x)
    assert traces == ["AdaptiveLIF"] * 2


def test_generated_cpu_loops_vectorise(avx512):
    """The SIMD loops of the CPU template over a generated step are vectorised (GCC's -fopt-info-vec)."""
    cxx = build.find_compiler()
    if cxx is None or "clang" in os.path.basename(cxx):
        pytest.skip("needs g++ for -fopt-info-vec")
    text = expand_includes(generated.program(AdaptiveLIF(tau=2.5)).text("cpu"))
    lines = text.split("\n")
    simd_loops = [i + 2 for i, ln in enumerate(lines) if ln.strip() == "#pragma omp simd"]
    assert len(simd_loops) >= 5
    src = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nq_genvec_{os.getpid()}.cpp")
    with open(src, "w") as f:
        f.write(text)
    try:
        res = subprocess.run([cxx, *build.compile_flags(torch.float32), "-ffp-contract=off",
                              "-fopt-info-vec-optimized", "-c", src, "-o", os.devnull],
                             capture_output=True, text=True, timeout=600)
    finally:
        os.remove(src)
    assert res.returncode == 0, res.stderr[-2000:]
    vectorised = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized", res.stderr)}
    # the state copies compile to memcpy; the loops that run the step must vectorise (the forward, over
    # blocks or tiles, with ordinary and with streaming stores; the backward's recompute and reverse loop,
    # the latter also with streaming stores)
    step_loops = [ln for ln in simd_loops if "NQStep::" in "\n".join(lines[ln - 1:ln + 3])]
    assert len(step_loops) == 5
    missing = [ln for ln in step_loops if not vectorised & {ln, ln + 1, ln + 2}]  # (a call over lines: its last)
    assert not missing, f"SIMD loops over the step not vectorised at lines {missing}"
    if avx512:  # 512-bit vectors where the CPU has them (build.ARCH_FLAGS)
        wide = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized using 64 byte", res.stderr)}
        narrow = [ln for ln in step_loops if not wide & {ln, ln + 1, ln + 2}]
        assert not narrow, f"SIMD loops over the step without 64-byte vectors at lines {narrow} on an AVX-512 CPU"


# ---------------------------------------------------------------------------------------------
# CUDA: the generated source compiles; its entry points run on the CPU over an emulated grid
# ---------------------------------------------------------------------------------------------
CUDA_NEURONS = {"adaptive_lif": lambda: AdaptiveLIF(tau=2.0), "zoo": lambda: Zoo(), "gated": lambda: GatedNode(),
                "izhikevich": lambda: Izhikevich(), "lif": lambda: GenLIF(tau=2.0, v_reset=-0.25, detach_reset=True)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_generated_cuda_source_compiles_with_nvcc(dtype, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH")
    for name in ("adaptive_lif", "zoo"):
        src = tmp_path / f"{name}.cu"
        src.write_text(generated.program(CUDA_NEURONS[name]()).text("cuda"))
        out = tmp_path / f"{name}.ptx"
        cmd = [nvcc, "--ptx", "-arch=compute_75", "-I", str(KERNEL_DIR), *build.compile_options(dtype), str(src),
               "-o", str(out)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
        ptx = out.read_text()
        assert ".entry nq_step_forward(" in ptx and ".entry nq_step_backward(" in ptx
        fwd = ptx.split(".entry nq_step_forward(")[1].split(".entry")[0]
        if name == "adaptive_lif":  # --fmad=false: no contraction (CUDA's expf/sinf use fma inside, as torch's)
            assert "fma." not in fwd


def _nvrtc():
    names = []
    for sp in site.getsitepackages() + [site.getusersitepackages()]:
        names += glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so*"))
    names += glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*")
    for name in sorted(n for n in names if "builtins" not in n and ".alt." not in n):
        try:
            for b in sorted(glob.glob(os.path.join(os.path.dirname(name), "libnvrtc-builtins.so*"))):
                if ".alt." not in b:
                    ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_generated_cuda_source_compiles_with_nvrtc_as_cupy_does(dtype):
    lib = _nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found")
    src = expand_includes(generated.program(AdaptiveLIF(tau=2.5)).text("cuda"))
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"step.cu", 0, None, None) == 0
    opts = [o.encode() for o in build.compile_options(dtype) + nk.CUPY_ADDED_OPTIONS + ("-arch=compute_75",)]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert rc == 0, log.value.decode(errors="replace")


_HOST_MACROS = r"""
static int g_grid = 3, g_threads = 32;
#define NQ_TILES(BODY)                                                                        \
    for (int blk = 0; blk < g_grid; ++blk)                                                    \
        for (int tid = 0; tid < g_threads; ++tid) {                                           \
            const long long lane = g_threads;                                                 \
            const long long tile = lane * NQ_ILP;                                             \
            for (long long b = (long long)blk * tile; b < n; b += (long long)g_grid * tile) { \
                const long long base = b + tid;                                               \
                BODY;                                                                         \
            }                                                                                 \
        }
#define NQ_S NQ_STORAGE
#define NQ_ENTRY(name) extern "C" void nq_host_##name
#include "step_entry_points.cuh"
"""

_HARNESSES: dict = {}


def _harness(prog, dtype, tmp_dir):
    """The CUDA entry points of ``prog`` (step_entry_points.cuh over the emitted struct), compiled for the
    CPU: nq_host_step_forward / nq_host_step_backward over an emulated grid of 3 blocks of 32 threads."""
    key = (prog.text("cuda"), dtype)
    if key not in _HARNESSES:
        gxx = shutil.which("g++")
        if gxx is None:
            pytest.skip("no g++ for the CPU harness")
        text = prog.text("cuda").replace('#include "step_kernels.cu"', _HOST_MACROS)
        src = os.path.join(tmp_dir, f"h{len(_HARNESSES)}.cpp")
        out = src[:-4] + ".so"
        with open(src, "w") as f:
            f.write(text)
        cmd = [gxx, "-O1", "-std=c++14", "-ffp-contract=off", "-fPIC", "-shared", "-I", str(KERNEL_DIR),
               f"-DNQ_STORAGE={ {torch.float32: 'float', torch.float16: 'nq_f16', torch.bfloat16: 'nq_bf16'}[dtype]}",
               src, "-o", out]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr[-3000:]
        _HARNESSES[key] = ctypes.CDLL(out)
    return _HARNESSES[key]


def _cargs(values):
    conv = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float32: ctypes.c_float, np.uint64: ctypes.c_void_p}
    return [conv[type(v)](v.item()) for v in values]


@pytest.fixture
def emulated_gpu(monkeypatch, tmp_path_factory):
    """Route the generated kernels' CUDA launches to the CPU harness of their own entry points."""
    tmp = str(tmp_path_factory.mktemp("nqstephost"))
    launches = []

    def fake_step_launch(source, name, dtype, device, n, args):
        launches.append(name)
        prog = next(p for p in generated._PROGRAMS.values() if p.text("cuda") == source)
        getattr(_harness(prog, dtype, tmp), name.replace("nq_", "nq_host_"))(*_cargs(args))

    monkeypatch.setattr(nk, "_step_launch", fake_step_launch)
    import neuroq.neuron.base as nbase

    monkeypatch.setattr(nbase, "resolve", lambda backend, x, family=None: "cupy" if backend == "cupy" else "torch")
    return launches


@pytest.mark.parametrize("name,dtype", [(n, torch.float32) for n in sorted(CUDA_NEURONS)]
                         + [(n, torch.bfloat16) for n in ("adaptive_lif", "lif", "zoo")])  # (Izhikevich's -0.65 start
def test_cuda_entry_points_on_an_emulated_grid_equal_the_torch_loop(emulated_gpu, name, dtype):  # is not a bf16)
    """backend='cupy' through the Python launch path (stacked states, the kept sequences' mask, the fp32
    states saved for backward, None gradients) with the CUDA entry points compiled for the CPU: equal to the
    torch loop (power-of-two divisors: CUDA's reciprocal multiplication is then CPU torch's division)."""
    seed = zlib.crc32(name.encode()) % 1000
    scale, offset = (0.3, 0.0) if name == "izhikevich" else (1.2, 0.4)
    x, grads = _case(7, (5, 61), seed, scale, offset)
    make = CUDA_NEURONS[name]
    ours, ref = make(), make()
    ours.step_mode = ref.step_mode = "m"
    ours.backend, ref.backend = "cupy", "torch"
    if dtype == torch.float32:
        a, b = _run(ours, x, grads), _run(ref, x, grads)
        _assert_same(a, b, exact=EXACT[name])
    else:
        xq, gq = x.to(dtype), tuple(g.to(dtype) for g in grads)
        s, lasts, seqs, gx = _run(ours, xq, gq)
        rs, rlasts, rseqs, rgx = _run(ref, xq.float(), tuple(g.float() for g in gq))
        assert torch.equal(s.float(), rs)
        for a, b in zip(lasts + seqs, rlasts + rseqs):
            torch.testing.assert_close(a.float(), b.to(dtype).float(), atol=0.0 if EXACT[name] else 1e-2, rtol=0.0 if EXACT[name] else 1e-2)
        torch.testing.assert_close(gx.float(), rgx, atol=1e-5 * max(1.0, float(rgx.abs().max())), rtol=2e-2)
    assert emulated_gpu.count("nq_step_forward") == 1 and emulated_gpu.count("nq_step_backward") == 1
    # only-spike loss (None state gradients) and no kept sequence
    ours.reset()
    ref.reset()
    xs = x.to(dtype).clone().requires_grad_(True)
    xr = x.to(dtype).float().clone().requires_grad_(True)
    g1, = torch.autograd.grad(ours(xs).float().sum(), xs)
    g2, = torch.autograd.grad(ref(xr).sum(), xr)
    torch.testing.assert_close(g1.float(), g2, atol=1e-5 * max(1.0, float(g2.abs().max())), rtol=2e-2)


def test_cuda_launch_arguments_match_the_kernel_signatures(emulated_gpu, tmp_path):
    """The argument tuples neuroq.ops.cuda builds for the generated kernels have the PTX signatures' types."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH")
    node = AdaptiveLIF(step_mode="m", backend="cupy")
    node.store_state_seqs = ("a",)
    captured = {}
    real = nk._step_launch
    nk_launch = lambda source, name, dtype, device, n, args: (captured.__setitem__(name, args),  # noqa: E731
                                                               real(source, name, dtype, device, n, args))
    import neuroq.ops.cuda as cuda_mod

    cuda_mod._step_launch, saved = nk_launch, cuda_mod._step_launch
    try:
        x = torch.rand(4, 30, requires_grad=True)
        (node(x).sum() + node.a_seq.sum()).backward()
    finally:
        cuda_mod._step_launch = saved
    src = tmp_path / "k.cu"
    src.write_text(generated.program(node).text("cuda"))
    subprocess.run([nvcc, "--ptx", "-arch=compute_75", "-I", str(KERNEL_DIR), *build.compile_options(torch.float32),
                    str(src), "-o", str(tmp_path / "k.ptx")], check=True, capture_output=True, timeout=240)
    ptx = (tmp_path / "k.ptx").read_text()
    width = {np.uint64: ".u64", np.int64: ".u64", np.int32: ".u32", np.float32: ".f32"}
    for name, args in captured.items():
        params = re.findall(r"\.param (\.\w+) ", ptx.split(f".entry {name}(")[1].split(")")[0])
        assert len(params) == len(args), name
        for (ptype, a) in zip(params, args):
            assert ptype == width[type(a)] or (ptype == ".u64" and type(a) is np.uint64), (name, ptype, type(a))


# ---------------------------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["lif", "qif", "adaptive_lif", "izhikevich", "exp_tanh"])
def test_gpu_generated_kernel_equals_torch(name, dtype):
    seed = zlib.crc32(name.encode()) % 1000
    scale, offset = (0.3, 0.0) if name == "izhikevich" else (1.2, 0.4)
    x, grads = _case(12, (3, 4099), seed, scale, offset)
    x, grads = x.cuda().to(dtype), tuple(g.cuda().to(dtype) for g in grads)
    make = (lambda b: GenLIF(tau=2.5, step_mode="m", backend=b)) if name == "lif" else \
        (lambda b: MAKERS[name](step_mode="m", backend=b))
    s, lasts, seqs, gx = _run(make("cupy"), x, grads)
    rs, rlasts, rseqs, rgx = _run(make("torch"), x.float(), tuple(g.float() for g in grads))
    assert torch.equal(s.float(), rs) and 0 < s.sum() < s.numel()
    for a, b in zip(lasts + seqs, rlasts + rseqs):
        torch.testing.assert_close(a.float(), b.to(dtype).float(), atol=1e-6 if dtype == torch.float32 else 1e-2,
                                   rtol=1e-6 if dtype == torch.float32 else 1e-2)
    tol = 1e-6 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(gx.float(), rgx, atol=tol * max(1.0, float(rgx.abs().max())), rtol=tol)


def test_docstring_examples():
    import doctest

    for mod in (generated, neuron_fn):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
