"""The fused CPU backend (neuroq/ops/cpu.py on the shared launch layer neuroq/ops/launch.py, the library
built by neuroq/ops/build.py from neuron_kernels_cpu.cpp + kernels.cuh) against the torch reference of
neuroq.functional (the definition of correct).

* IF/LIF/SAF forward: spikes, states and accumulations bit-identical in fp32 (true division by tau,
  and the exact-reciprocal shortcut for a power-of-two tau), over reset modes, decay_input,
  detach_reset, every device surrogate, T in {1, 2, 7, 16, 64}, N below / across / above one block;
  gradients to 1e-5; fp16/bf16 storage; 1 and 2 threads give identical results;
* the fused single steps of SAF-E and OTTT equal their torch steps (values, state, trace, gradients);
* the S2NN surrogate's fused backward equals its recursion;
* backward keeps only the inputs (nothing else is saved for it); the torch reference is O(T);
* the build: cached by a hash, atomic under concurrent builders, vectorised (compiler report);
* dispatch: 'auto' picks the kernel for CPU tensors, falls back (once noticed) without a compiler.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import warnings
import zlib

import pytest
import torch
from spikingjelly.activation_based import surrogate

from neuroq.functional import neuron as neuron_fn
from neuroq.functional import saf as FS
from neuroq.functional.neuron import IFParameters, LIFParameters
from neuroq.functional.saf import SAFParameters
from neuroq.neuron import IFNode, LIFNode, OnlineLIFNode, S2NNNode, SAFNode
from neuroq.ops import build, cpu, dispatch
from neuroq.surrogate import S2NN, s2nn_gradient

SURROGATES = [("sigmoid", surrogate.Sigmoid(alpha=4.0)), ("atan", surrogate.ATan(alpha=2.0)),
              ("pq", surrogate.PiecewiseQuadratic(alpha=1.0)), ("s2nn", S2NN(t_ref=4, alpha=4.0)),
              ("s2nn-atan", S2NN(t_ref=3, alpha=2.0, per_step="atan"))]
if hasattr(surrogate, "Rect"):  # SpikingJelly 2.0.0 only
    SURROGATES.append(("rect", surrogate.Rect(alpha=1.0)))


@pytest.fixture(scope="module", autouse=True)
def built():
    ok, why = cpu.status()
    if not ok:
        pytest.skip(f"CPU kernels unavailable here: {why}")


def _case(T, N, seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, generator=gen) * 1.2 + 0.4
    v0 = torch.randn(N, generator=gen) * 0.4
    grads = (torch.randn(T, N, generator=gen), torch.randn(T, N, generator=gen) * 0.3, torch.randn(N, generator=gen))
    return x, v0, grads


def _run(fn, x, v0, grads):
    """Outputs and input gradients of ``fn(x, v0) -> (spikes, v_last, v_seq)`` under a weighted loss."""
    x = x.detach().clone().requires_grad_(True)
    v0 = v0.detach().clone().requires_grad_(True)
    s, vl, vs = fn(x, v0)
    loss = (s * grads[0]).sum() + (vs * grads[1]).sum() + (vl * grads[2]).sum()
    gx, gv0 = torch.autograd.grad(loss, (x, v0))
    return s.detach(), vl.detach(), vs.detach(), gx, gv0


def _record(family, **p):
    if family == "if":
        return IFParameters(v_threshold=p["v_threshold"], v_reset=p["v_reset"], detach_reset=p["detach_reset"])
    return LIFParameters(**p)


def _assert_same(ours, ref, tol=1e-5):
    s, vl, vs, gx, gv0 = ours
    rs, rvl, rvs, rgx, rgv0 = ref
    assert torch.equal(s, rs), f"{(s != rs).sum().item()} spikes differ"
    assert torch.equal(vs, rvs) and torch.equal(vl, rvl)
    torch.testing.assert_close(gx, rgx, atol=tol, rtol=tol)
    torch.testing.assert_close(gv0, rgv0, atol=tol, rtol=tol)


@pytest.mark.parametrize("T", [1, 2, 7, 16, 64])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.4])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_cpu_kernel_equals_torch_reference(family, v_reset, detach, T):
    """Spikes, v_seq, v_last bit-identical; d/dx and d/dv0 to 1e-5 (fp32)."""
    seed = zlib.crc32(repr((family, v_reset, detach, T)).encode()) % 10_000
    name, sg = SURROGATES[seed % len(SURROGATES)]
    N = (5, 333, 4099, 9000)[seed % 4]  # under one SIMD vector, odd, across and above one block
    x, v0, grads = _case(T, N, seed)
    for decay_input in ([True, False] if family == "lif" else [True]):
        for tau in (2.5, 2.0):  # true division, and the exact-reciprocal shortcut
            p = _record(family, tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                        detach_reset=detach)
            ref_fn = neuron_fn.lif_multi_step if family == "lif" else neuron_fn.if_multi_step
            ours = _run(lambda a, b: cpu.if_family_cpu(a, b, p, sg, True)[:3], x, v0, grads)
            ref = _run(lambda a, b: ref_fn(a, b, p, sg, True), x, v0, grads)
            _assert_same(ours, ref)
            if ours[0].numel() >= 100:
                assert 0 < ours[0].sum() < ours[0].numel()


#: the IF/LIF forward's loops (time outside blocks or inside tiles; ordinary or streaming stores), forced by
#: compile flags whatever the size
FORWARD_VARIANTS = {"blocks": ("-DNQ_T_INNER_MAX=0", "-DNQ_STREAM_MIN_BYTES=0x7fffffffffffffff"),
                    "blocks-streamed": ("-DNQ_T_INNER_MAX=0", "-DNQ_STREAM_MIN_BYTES=0"),
                    "tiles": ("-DNQ_T_INNER_MAX=1000", "-DNQ_STREAM_MIN_BYTES=0x7fffffffffffffff"),
                    "tiles-streamed": ("-DNQ_T_INNER_MAX=1000", "-DNQ_STREAM_MIN_BYTES=0")}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("variant", sorted(FORWARD_VARIANTS))
def test_every_if_forward_loop_equals_the_torch_reference(variant, threads, monkeypatch):
    """Each forward loop of the hand-written IF/LIF kernel, forced whatever the size, with v_seq kept, rows
    not aligned to a cache line (N = 4099) and tiles and stream chunks ending mid-way: bit-identical spikes and
    states, gradients to 1e-5, against the torch reference."""
    monkeypatch.setattr(build, "_LIBS", {})
    monkeypatch.setattr(build, "ARCH_FLAGS", build.ARCH_FLAGS + FORWARD_VARIANTS[variant])
    x, v0, grads = _case(9, 4099, 17)
    p = LIFParameters(tau=2.5, decay_input=True, v_threshold=1.0, v_reset=None, detach_reset=False)
    sg = surrogate.Sigmoid(alpha=4.0)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        ours = _run(lambda a, b: cpu.if_family_cpu(a, b, p, sg, True)[:3], x, v0, grads)
    finally:
        torch.set_num_threads(old)
    _assert_same(ours, _run(lambda a, b: neuron_fn.lif_multi_step(a, b, p, sg, True), x, v0, grads))
    assert build._LIBS, "the forced library was not built"


@pytest.mark.parametrize("name,sg", SURROGATES, ids=[n for n, _ in SURROGATES])
def test_cpu_every_device_surrogate_through_the_modules(name, sg):
    """backend='cpu' modules equal backend='torch' ones: spikes/states exactly, gradients to 1e-5,
    a state carried over two calls, a non-contiguous [T, N, C, L] input."""
    x = (torch.randn(12, 3, 8, 41) * 1.2 + 0.4).permute(0, 1, 3, 2)
    assert not x.is_contiguous()
    for cls, kw in ((LIFNode, dict(tau=3.0)), (IFNode, {}), (LIFNode, dict(tau=2.0, decay_input=False, v_reset=None))):
        ours = cls(step_mode="m", backend="cpu", store_v_seq=True, surrogate_function=sg, **kw)
        ref = cls(step_mode="m", backend="torch", store_v_seq=True, surrogate_function=sg, **kw)
        xa, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        oa = torch.cat([ours(xa[:5]), ours(xa[5:])])
        orr = torch.cat([ref(xr[:5]), ref(xr[5:])])
        assert torch.equal(oa, orr) and torch.equal(ours.v, ref.v) and torch.equal(ours.v_seq, ref.v_seq)
        w = torch.randn_like(oa)
        ga, = torch.autograd.grad((oa * w).sum() + ours.v.sum(), xa)
        gr, = torch.autograd.grad((orr * w).sum() + ref.v.sum(), xr)
        torch.testing.assert_close(ga, gr, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cpu_half_storage_fp32_state(dtype):
    """fp16/bf16 storage: read, computed in fp32, written rounded.  Equal to the fp32 reference on
    the upcast input: spikes exactly, v_seq/v_last = round(fp32 state), gradients to storage precision."""
    x, v0, grads = _case(16, 777, 11)
    x, v0 = x.to(dtype), v0.to(dtype)
    sg = surrogate.ATan(alpha=2.0)
    p = LIFParameters(tau=2.5, v_reset=None)
    qgrads = tuple(g.to(dtype) for g in grads)
    s, vl, vs, gx, gv0 = _run(lambda a, b: cpu.if_family_cpu(a, b, p, sg, True)[:3], x, v0, qgrads)
    rs, rvl, rvs, rgx, rgv0 = _run(lambda a, b: neuron_fn.lif_multi_step(a, b, p, sg, True), x.float(), v0.float(),
                                   tuple(g.float() for g in qgrads))
    assert s.dtype == dtype and torch.equal(s.float(), rs)
    assert torch.equal(vs, rvs.to(dtype)) and torch.equal(vl, rvl.to(dtype))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(gx.float(), rgx, atol=1e-5, rtol=eps)
    torch.testing.assert_close(gv0.float(), rgv0, atol=1e-5, rtol=eps)


def test_cpu_one_and_two_threads_identical():
    """Each neuron is computed by one thread: the OpenMP split changes nothing, bit for bit."""
    x, v0, grads = _case(16, 70_001, 3)  # above the parallel threshold, uneven blocks
    p = LIFParameters(tau=2.5, v_reset=-0.2)
    sg = surrogate.Sigmoid(alpha=4.0)
    old = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            outs.append(_run(lambda a, b: cpu.if_family_cpu(a, b, p, sg, True)[:3], x, v0, grads))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


@pytest.mark.parametrize("T", [1, 2, 7, 16, 64])
@pytest.mark.parametrize("detach_state", [True, False])
@pytest.mark.parametrize("decay_input", [False, True])
def test_cpu_saf_equals_torch_reference(decay_input, detach_state, T):
    """SAF: accumulations bit-identical to saf_multi_step, d/dU^ (and d/da0 without detach_state) to 1e-5."""
    gen = torch.Generator().manual_seed(T)
    name, sg = SURROGATES[T % len(SURROGATES)]
    for tau in (2.5, 2.0):
        cur = torch.randn(T, 6, 37 + T, generator=gen) * 1.2 + 0.45
        u = FS.accumulate(cur, tau) * (tau if decay_input else 1.0)
        a0 = torch.rand(6, 37 + T, generator=gen) * 2.0
        g_seq, g_last = torch.randn(u.shape, generator=gen), torch.randn(a0.shape, generator=gen)
        p = SAFParameters(tau=tau, decay_input=decay_input, detach_state=detach_state)
        res = []
        for fn in (lambda a, b: cpu.saf_cpu(a, b, p, sg)[:2], lambda a, b: FS.saf_multi_step(a, b, p, sg)):
            uu, aa = u.clone().requires_grad_(True), a0.clone().requires_grad_(True)
            a_seq, a_last = fn(uu, aa)
            gu, ga0 = torch.autograd.grad((a_seq * g_seq).sum() + (a_last * g_last).sum(), (uu, aa), allow_unused=True)
            res.append((a_seq.detach(), a_last.detach(), gu, ga0))
        (a1, l1, gu1, ga1), (a2, l2, gu2, ga2) = res
        assert torch.equal(a1, a2) and torch.equal(l1, l2)
        spikes = FS.saf_spikes(a1, tau, a0)
        assert 0 < spikes.sum() < spikes.numel()
        torch.testing.assert_close(gu1, gu2, atol=1e-5, rtol=1e-5)
        if detach_state:
            assert (ga1 is None or not ga1.any()) and (ga2 is None or not ga2.any())
        else:
            torch.testing.assert_close(ga1, ga2, atol=1e-5, rtol=1e-5)


def test_fused_single_steps_saf_e_and_ottt_equal_torch_steps():
    """SAF-E's per-step SAF update and OTTT's per-step LIF + trace update are one fused kernel call
    each (backend='cpu'); over several steps with a loss and a backward per step (online training)
    they equal the torch steps: outputs, states and traces exactly, gradients to 1e-5."""
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(8, 50, generator=gen) * 1.2 + 0.5 for _ in range(6)]
    for make in (lambda b: SAFNode(tau=2.0, backend=b), lambda b: OnlineLIFNode(tau=2.0, backend=b),
                 lambda b: LIFNode(tau=2.0, backend=b, v_reset=None)):
        ours, ref = make("cpu").train(), make("torch").train()
        for x in xs:
            xa, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
            oa, orr = ours(xa), ref(xr)
            assert torch.equal(oa, orr) and torch.equal(ours.v, ref.v)
            if isinstance(ours, OnlineLIFNode):
                assert torch.equal(ours.trace, ref.trace)
            ga, = torch.autograd.grad((oa * x).sum() + ours.v.sum(), xa)
            gr, = torch.autograd.grad((orr * x).sum() + ref.v.sum(), xr)
            torch.testing.assert_close(ga, gr, atol=1e-5, rtol=1e-5)
            ours.v, ref.v = ours.v.detach(), ref.v.detach()


def test_fused_single_step_is_one_kernel_call(monkeypatch):
    """The fused single step really runs the kernel (not the torch step) for SAF-E and OTTT."""
    calls = []
    real = cpu.library

    class Spy:
        def __init__(self, lib):
            self.lib = lib

        def __getattr__(self, name):
            fn = getattr(self.lib, name)
            if name.startswith("nq_cpu_") and name.endswith(("forward", "backward")):
                def wrapped(*a):
                    calls.append(name)
                    return fn(*a)
                return wrapped
            return fn

    monkeypatch.setattr(cpu, "library", lambda dtype=torch.float32: Spy(real(dtype)))
    x = torch.randn(4, 30, requires_grad=True)
    OnlineLIFNode(backend="auto").train()(x).sum().backward()
    SAFNode(backend="auto")(x).sum().backward()
    assert calls == ["nq_cpu_if_forward", "nq_cpu_if_backward", "nq_cpu_saf_forward", "nq_cpu_saf_backward"]


@pytest.mark.parametrize("per_step", ["sigmoid", "atan", "rect"])
def test_s2nn_fused_backward_equals_its_recursion(per_step):
    """S2NNNode's reduced gradient (t_ref elementwise torch steps) is one fused pass for fp32 CPU
    tensors: equal to s2nn_gradient to 1e-5; float64 keeps the exact torch recursion."""
    u = torch.linspace(-1.0, 3.0, 4001)
    for t_ref, vth in ((4, 1.0), (7, 0.5)):
        sg = S2NN(t_ref=t_ref, alpha=3.0, v_threshold=vth, per_step=per_step)
        uu = u.clone().requires_grad_(True)
        out = S2NNNode(v_threshold=vth, surrogate_function=sg)(uu)
        g, = torch.autograd.grad(out.sum(), uu)
        ref = s2nn_gradient(u.double(), t_ref, 3.0, vth, per_step).float()
        torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-5)
        assert g.abs().sum() > 0


def test_backward_keeps_only_the_inputs():
    """Forward saves nothing for backward but its inputs (x and v0, held anyway): no H, no spikes."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    x = torch.randn(16, 1000, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = LIFNode(step_mode="m", backend="cpu")(x)
    assert len(saved) == 2
    assert saved[0].data_ptr() == x.data_ptr() and saved[1].numel() == 1000
    s.sum().backward()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        a = SAFNode(step_mode="m", backend="cpu")(x)
    assert len(saved) == 2 and saved[0].data_ptr() == x.data_ptr()
    a.sum().backward()


def test_torch_reference_backward_is_linear_in_T():
    """The reference iterates unbind(0): its backward touches O(T*N) elements, not O(T^2*N) (indexing
    x_seq[t] in the loop would fill a [T, N] zero tensor per step)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for o in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(o, torch.Tensor):
                    self.elements += o.numel()
            return out

    counts = {}
    for T in (8, 32):
        x = torch.randn(T, 64, requires_grad=True)
        s, v, _ = neuron_fn.lif_multi_step(x, torch.zeros(64), LIFParameters(), surrogate.Sigmoid(alpha=4.0))
        with Count() as c:
            s.sum().backward()
        counts[T] = c.elements
    assert counts[32] / counts[8] < 5.0, counts  # linear: ~4; quadratic: ~16


# ---------------------------------------------------------------------------------------------
# build, cache, vectorisation
# ---------------------------------------------------------------------------------------------
TINY = 'extern "C" int nq_answer(void) { return 42; }\n'


def _load_answer(path):
    import ctypes

    return ctypes.CDLL(str(path)).nq_answer()


def test_build_is_cached_and_atomic_under_concurrent_builders(tmp_path):
    """Threads and processes building the same library at once all get the one complete file; a
    second build returns it without compiling; the key changes with the source and the flags."""
    if build.find_compiler() is None:
        pytest.skip("no C++ compiler")
    flags = ("-O1", "-fPIC")
    paths, errors = [], []

    def worker():
        try:
            paths.append(build.shared_library(TINY, flags, "tiny", directory=tmp_path))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    code = ("import sys; sys.path.insert(0, %r); from neuroq.ops import build; "
            "print(build.shared_library(%r, %r, 'tiny', directory=%r))" % (os.getcwd(), TINY, flags, str(tmp_path)))
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert not errors and all(p.returncode == 0 for p in procs)
    assert len({str(p) for p in paths} | set(outs)) == 1
    path = paths[0]
    assert _load_answer(path) == 42
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == [path.name]
    mtime = path.stat().st_mtime_ns
    assert build.shared_library(TINY, flags, "tiny", directory=tmp_path) == path and path.stat().st_mtime_ns == mtime
    assert build.shared_library(TINY + "\n", flags, "tiny", directory=tmp_path) != path
    assert build.shared_library(TINY, flags + ("-DX=1",), "tiny", directory=tmp_path) != path
    two_units = "#if P == 1\n" + TINY + '#else\nextern "C" int nq_seven(void) { return 7; }\n#endif\n'
    two = build.shared_library(two_units, flags, "tiny2", directory=tmp_path, units=(("-DP=1",), ("-DP=2",)))
    import ctypes

    assert _load_answer(two) == 42 and ctypes.CDLL(str(two)).nq_seven() == 7  # two units, one library


def test_build_error_names_the_compiler_message(tmp_path):
    if build.find_compiler() is None:
        pytest.skip("no C++ compiler")
    with pytest.raises(RuntimeError, match="compiling the neuroq CPU kernels failed"):
        build.shared_library("this is not C++", ("-fPIC",), "broken", directory=tmp_path)


def test_simd_loops_vectorise(avx512):
    """Every ``#pragma omp simd`` loop over neurons in the CPU source is vectorised by the compiler
    (GCC's -fopt-info-vec report), with the flags the backend builds with (both units at once)."""
    cxx = build.find_compiler()
    if cxx is None or "clang" in os.path.basename(cxx):
        pytest.skip("needs g++ for -fopt-info-vec")
    from neuroq.ops import kernel_source

    text = kernel_source(build.CPU_SOURCE)
    lines = text.split("\n")
    simd_loops = [i + 2 for i, ln in enumerate(lines) if ln.strip() == "#pragma omp simd"]  # 1-based loop line
    assert len(simd_loops) >= 7
    src = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"nq_vec_{os.getpid()}.cpp")
    with open(src, "w") as f:
        f.write(text)
    try:
        res = subprocess.run([cxx, *build.compile_flags(torch.float32), "-ffp-contract=off", "-fopt-info-vec-optimized",
                              "-c", src, "-o", os.devnull], capture_output=True, text=True, timeout=600)
    finally:
        os.remove(src)
    assert res.returncode == 0, res.stderr[-2000:]
    vectorised = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized", res.stderr)}
    # GCC reports an omp-simd loop at its header or at the first line of its body
    missing = [ln for ln in simd_loops if ln not in vectorised and ln + 1 not in vectorised]
    assert not missing, f"simd loops not vectorised at lines {missing} of the inlined source"
    if avx512:  # the build asks for 512-bit vectors there (build.ARCH_FLAGS): the main loop of each uses them
        wide = {int(m.group(1)) for m in re.finditer(r":(\d+):\d+: optimized: loop vectorized using 64 byte", res.stderr)}
        narrow = [ln for ln in simd_loops if ln not in wide and ln + 1 not in wide]
        assert not narrow, f"simd loops without 64-byte vectors at lines {narrow} on an AVX-512 CPU"



# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------
def test_auto_picks_cpu_kernel_and_falls_back_quietly():
    x = torch.rand(4, 3, 5)
    assert dispatch.resolve("auto", x, "lif") == "cpu"
    assert dispatch.resolve("auto", x, "no-such-family") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 'auto' never warns for a case without a kernel
        s64 = LIFNode(step_mode="m")(x.double())  # float64: torch reference
        LIFNode(step_mode="m", surrogate_function=surrogate.SoftSign(alpha=2.0))(x)
    assert s64.dtype == torch.float64
    with pytest.raises(RuntimeError, match="needs a CPU tensor"):
        dispatch.resolve("cpu", type("FakeCuda", (), {"device": torch.device("cuda", 0), "is_cuda": True})(), "lif")
    with pytest.raises(RuntimeError, match="no CPU kernel"):
        dispatch.resolve("cpu", x, "no-such-family")
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.resolve("jax", x, "lif")


def test_explicit_cpu_backend_warns_once_for_an_unsupported_case(monkeypatch):
    import neuroq.neuron.base as base

    monkeypatch.setattr(base, "_WARNED", set())
    x = torch.rand(5, 7, dtype=torch.float64)
    node = LIFNode(step_mode="m", backend="cpu")
    with pytest.warns(RuntimeWarning, match="fp32, fp16 or bf16"):
        s = node(x)
    assert torch.equal(s, LIFNode(step_mode="m", backend="torch")(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        node.reset()
        node(x)


def test_without_a_compiler_auto_runs_torch_after_one_notice(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "find_compiler", lambda: None)
    monkeypatch.setattr(build, "_LIBS", {})
    monkeypatch.setattr(build, "_FAILED", {})
    monkeypatch.setenv("NEUROQ_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(dispatch, "_NOTICED", set())
    ok, why = cpu.status()
    assert not ok and "no C++ compiler" in why
    x = torch.rand(3, 4)
    with pytest.warns(RuntimeWarning, match="fused CPU kernels unavailable.*torch reference") as rec:
        assert dispatch.resolve("auto", x, "lif") == "torch"
    assert len(rec) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dispatch.resolve("auto", x, "lif") == "torch"  # once only
        s = LIFNode(step_mode="m")(x)
    assert torch.equal(s, LIFNode(step_mode="m", backend="torch")(x))
    with pytest.raises(RuntimeError, match="backend='cpu' is not available.*C\\+\\+ compiler"):
        dispatch.resolve("cpu", x, "lif")
    monkeypatch.setenv("NEUROQ_CPU_KERNELS", "0")
    assert dispatch.cpu_status() == (False, "the CPU kernels are turned off (NEUROQ_CPU_KERNELS=0)")


def test_torch_compile_runs_the_kernel_as_one_eager_call():
    """Under torch.compile the fused launch is compiler-disabled (one opaque eager call, no tracing
    of ctypes): a compiled network with a neuroq LIF gives the eager results, without dynamo's
    warnings about untraceable calls."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 64), LIFNode(step_mode="m"))
    x = torch.randn(4, 8, 32, requires_grad=True)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = torch.compile(net)(x)
        g, = torch.autograd.grad(out.sum(), x)
    assert not [w for w in rec if "ctypes" in str(w.message) or "does not know how to trace" in str(w.message)]
    for m in net.modules():
        if hasattr(m, "reset"):
            m.reset()
    ref = net(x)
    g_ref, = torch.autograd.grad(ref.sum(), x)
    assert torch.equal(out, ref)
    torch.testing.assert_close(g, g_ref)
