"""neuroq's CuPy kernels (neuroq/ops/neuron_kernels.cu: the entry points of entry_points.cuh over
kernels.cuh, compiled by neuroq.ops.build, launched by neuroq.ops.cuda on neuroq.ops.launch).

On any machine (CI):
* every kernel source compiles with ``nvcc`` to PTX and with NVRTC (the compiler CuPy uses, with
  the exact source and options the launcher passes), when those are installed;
* the struct field lists of ``kernels.cuh`` are the order and types of neuroq.ops.params' constants;
* the CUDA entry points (``entry_points.cuh``, the code the GPU kernels run, NQ_ILP neurons per
  thread) compiled for the CPU by ``cuda_host_harness.cpp`` -- the same definition, not a copy --
  and called for every (block, thread) of an emulated grid equal neuroq's torch reference: spikes and states bit for bit, input gradients to 1e-5, over IF/LIF, hard/soft
  reset, decay_input, detach_reset, every device surrogate, T in {1, 2, 7, 16, 64}, fp32 and
  fp16/bf16 storage (H saved in the storage dtype);
* the same for the SAF neuron's loops against neuroq.functional.saf (when it exists);
* the Python launch path (autograd Functions, reshapes, contiguity, None gradients, argument
  packing checked against the kernels' PTX signatures) with the CPU harness standing in for the GPU;
* backend selection: 'cupy' on a CPU tensor / without CuPy raises a clear error, 'auto' runs torch,
  a surrogate without a device version falls back to torch with a one-time warning.

On a CUDA GPU with CuPy (``@pytest.mark.cuda``, skipped elsewhere): backend='cupy' equals
backend='torch' on the same GPU over random shapes, T, reset modes, dtypes, non-contiguous inputs
and T*N larger than one grid; the same for SAF.
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
import sys
import warnings
import zlib

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import surrogate

from neuroq.functional import neuron as neuron_fn
from neuroq.functional.neuron import IFParameters, LIFParameters
from neuroq.functional.saf import SAFParameters
from neuroq.neuron import IFNode, LIFNode
from neuroq.ops import KERNEL_DIR, build
from neuroq.ops import cuda as nk
from neuroq.ops import dispatch as nqbackend
from neuroq.ops import params as kp

HERE = os.path.dirname(os.path.abspath(__file__))
HARNESS = os.path.join(HERE, "cuda_host_harness.cpp")
STORAGE = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
ENTRIES = ("nq_if_family_forward", "nq_if_family_backward", "nq_saf_forward_kernel", "nq_saf_backward_kernel",
           "nq_surrogate_backward_kernel")


def _surrogates():
    out = [("sigmoid", surrogate.Sigmoid(alpha=4.0)), ("atan", surrogate.ATan(alpha=2.0)),
           ("pq", surrogate.PiecewiseQuadratic(alpha=1.0))]
    if hasattr(surrogate, "Rect"):  # SpikingJelly 2.0.0 only
        out.append(("rect", surrogate.Rect(alpha=1.0)))
    try:
        from neuroq.surrogate import S2NN

        out.append(("s2nn", S2NN(t_ref=4, alpha=4.0, v_threshold=1.0)))
        out.append(("s2nn-atan", S2NN(t_ref=3, alpha=2.0, v_threshold=1.0, per_step="atan")))
    except ImportError:
        pass
    return out


SURROGATES = _surrogates()


# ---------------------------------------------------------------------------------------------
# (a) the kernel sources compile: nvcc -> PTX, and NVRTC as CuPy calls it
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", list(kp.STORAGE_TYPES))
@pytest.mark.parametrize("source", build.KERNEL_SOURCES)
def test_kernel_sources_compile_with_nvcc(source, dtype, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH")
    out = tmp_path / "k.ptx"
    cmd = [nvcc, "--ptx", "-arch=compute_75", "-I", str(KERNEL_DIR), *build.compile_options(dtype),
           str(KERNEL_DIR / source), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr}"
    ptx = out.read_text()
    for entry in ENTRIES:
        assert f".entry {entry}(" in ptx
    # --fmad=false: the forward kernel's own arithmetic has no fused multiply-add (bit-exactness)
    fwd = ptx.split(".entry nq_if_family_forward(")[1].split(".entry")[0]
    assert "fma." not in fwd


def _nvrtc():
    names = []
    for sp in site.getsitepackages() + [site.getusersitepackages()]:
        names += glob.glob(os.path.join(sp, "nvidia", "*", "lib", "libnvrtc.so*"))
        names += glob.glob(os.path.join(sp, "nvidia", "cuda_nvrtc", "lib", "libnvrtc.so*"))
    names += glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*")
    for name in sorted(n for n in names if "builtins" not in n and ".alt." not in n):
        d = os.path.dirname(name)
        try:
            for b in sorted(glob.glob(os.path.join(d, "libnvrtc-builtins.so*"))):
                if ".alt." not in b:
                    ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@pytest.mark.parametrize("dtype", list(kp.STORAGE_TYPES))
def test_kernel_source_compiles_with_nvrtc_as_cupy_does(dtype):
    lib = _nvrtc()
    if lib is None:
        pytest.skip("libnvrtc not found")
    from neuroq.ops import kernel_source

    src = kernel_source("neuron_kernels.cu")
    assert '#include "' not in src  # headers inlined: CuPy's source-hash cache key sees them
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"neuron_kernels.cu", 0, None, None) == 0
    opts = [o.encode() for o in build.compile_options(dtype) + build.CUPY_ADDED_OPTIONS + ("-arch=compute_75",)]
    rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value + 1)
    lib.nvrtcGetProgramLog(prog, log)
    assert rc == 0, log.value.decode(errors="replace")
    size = ctypes.c_size_t()
    lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value + 1)
    lib.nvrtcGetPTX(prog, ptx)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    ptx = ptx.value.decode()
    for entry in ENTRIES:
        assert f".entry {entry}(" in ptx
    assert "fma." not in ptx.split(".entry nq_if_family_forward(")[1].split(".entry")[0]


def test_struct_field_lists_are_the_order_and_types_of_the_constants():
    """The field lists of kernels.cuh (the C structs, the CUDA kernels' argument lists and the ctypes
    structs all come from them) name the constants neuroq.ops.params builds, in order, each of the
    C type of its numpy scalar."""
    from neuroq.ops import abi

    c_type = {np.int32: "int", np.float32: "float"}
    cases = (("NQ_NEURON_FIELDS", kp.NEURON_FIELDS, kp.neuron_constants(LIFParameters(), True), abi.NQNeuron),
             ("NQ_SURROGATE_FIELDS", kp.SURROGATE_FIELDS, kp.s2nn_constants(4, 4.0, 1.0, "atan"), abi.NQSurrogate),
             ("NQ_SAF_FIELDS", kp.SAF_FIELDS, kp.saf_constants(SAFParameters(), True), abi.NQSAF))
    for macro, names, values, struct in cases:
        fields = abi.struct_fields(macro)
        assert [f for _, f in fields] == list(names), macro
        assert [t for t, _ in fields] == [c_type[type(v)] for v in values], macro
        assert [(f, c) for f, c in struct._fields_] == [(f, abi._CTYPES[t]) for t, f in fields]


# ---------------------------------------------------------------------------------------------
# (b) the CUDA entry points, run on the CPU over an emulated grid, equal the torch reference
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("nqhost") / "libnqhost.so")
    gxx, nvcc = shutil.which("g++"), shutil.which("nvcc")
    if gxx:
        cmd = [gxx, "-O1", "-std=c++14", "-ffp-contract=off", "-fPIC", "-shared"]
    elif nvcc:
        cmd = [nvcc, "-x", "cu", "--fmad=false", "-Xcompiler", "-fPIC,-ffp-contract=off", "-shared"]
    else:
        pytest.skip("no C++ compiler (g++ or nvcc) for the CPU harness")
    cmd += ["-I", str(KERNEL_DIR), HARNESS, "-o", out]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr
    return ctypes.CDLL(out)


def test_harness_is_made_of_the_gpu_entry_points(harness):
    """One definition: the GPU kernels (neuron_kernels.cu) and the harness functions are both the entry
    points of entry_points.cuh; neither file has an entry point body of its own, and the harness has
    every GPU entry point for every storage type."""
    entries = (KERNEL_DIR / "entry_points.cuh").read_text()
    assert ["nq_" + name for name in re.findall(r"^NQ_ENTRY\((\w+)\)\(", entries, re.M)] == list(ENTRIES)
    cu = (KERNEL_DIR / "neuron_kernels.cu").read_text()
    with open(HARNESS) as f:
        host = f.read()
    assert cu.count('#include "entry_points.cuh"') == 1
    assert host.count('#include "entry_points.cuh"') == len(STORAGE)
    for text in (cu, host):
        assert "_tile<" not in text and "NQNeuron p" not in text
        assert not re.search(r"void nq_(host_)?(if_family|saf|surrogate_backward)\w*\s*\(", text)
    for name in ENTRIES:
        for sfx in STORAGE.values():
            assert hasattr(harness, f"nq_host_{name[3:]}_{sfx}"), (name, sfx)


def _cargs(values):
    conv = {np.int32: ctypes.c_int, np.int64: ctypes.c_longlong, np.float32: ctypes.c_float}
    return [conv[type(v)](v.item()) for v in values]


def _ptr(t):
    return ctypes.c_void_p(0 if t is None else t.data_ptr())


def record(family, **p):
    """The parameter record of a test case (``family`` 'if' or 'lif')."""
    if family == "if":
        p.pop("tau", None)
        p.pop("decay_input", None)
        return IFParameters(**p)
    return LIFParameters(**p)


def host_run(lib, family, x, v0, sg, grads=None, recip_div=False, store_v_seq=True, **params):
    """Run the emulated CUDA kernels: x [T, ...] and v0 [...] CPU tensors of one storage dtype.

    Returns (spike, v_last, v_seq, g_x, g_v0) shaped like the inputs (grads only with ``grads``)."""
    shape, dtype = x.shape, x.dtype
    T, N = shape[0], math.prod(shape[1:])
    sfx = STORAGE[dtype]
    x2, v2 = x.contiguous().reshape(T, N), v0.contiguous().reshape(N)
    spike, v_last = torch.empty_like(x2), torch.empty_like(v2)
    v_seq = torch.empty_like(x2) if store_v_seq else None
    saved = torch.empty_like(x2)  # H in the storage dtype, as on the GPU
    neuron = kp.neuron_constants(record(family, **params), recip_div)
    getattr(lib, f"nq_host_if_family_forward_{sfx}")(
        _ptr(x2), _ptr(v2), _ptr(spike), _ptr(v_seq), _ptr(saved), _ptr(v_last), _ptr(None), _ptr(None),
        ctypes.c_float(0.0), ctypes.c_longlong(N), ctypes.c_int(T), *_cargs(neuron))
    out = [spike.reshape(shape), v_last.reshape(shape[1:]), v_seq.reshape(shape) if store_v_seq else None]
    if grads is not None:
        g_s, g_vs, g_vl = (None if g is None else g.to(dtype).contiguous() for g in grads)
        g_x, g_v0 = torch.empty_like(x2), torch.empty_like(v2)
        getattr(lib, f"nq_host_if_family_backward_{sfx}")(
            _ptr(g_s), _ptr(g_vs), _ptr(g_vl), _ptr(saved), _ptr(g_x), _ptr(g_v0), ctypes.c_longlong(N),
            ctypes.c_int(T), *_cargs(neuron), *_cargs(kp.surrogate_constants(sg)))
        out += [g_x.reshape(shape), g_v0.reshape(shape[1:])]
    return out


class _RoundedSurrogate(torch.autograd.Function):
    """Heaviside forward; backward ``sg'(round(x))`` with ``x = H - V_th`` rounded to ``dtype`` (what the
    GPU kernels evaluate from the H they saved in a 16-bit storage dtype)."""

    @staticmethod
    def forward(ctx, x, sg, dtype):
        ctx.save_for_backward(x)
        ctx.sg, ctx.dtype = sg, dtype
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xr = x.detach().to(ctx.dtype).float().requires_grad_(True)
            (g,) = torch.autograd.grad(ctx.sg(xr).sum(), xr)
        return grad * g, None, None


class rounded(torch.nn.Module):
    """Surrogate module: ``sg`` with its backward evaluated at ``x`` rounded to ``dtype``."""

    def __init__(self, sg, dtype):
        super().__init__()
        self.sg, self.dtype = sg, dtype

    def forward(self, x):
        return _RoundedSurrogate.apply(x, self.sg, self.dtype)


def torch_reference(family, x, v0, sg, grads, charge=None, **p):
    """Reference outputs and input gradients (autograd through neuroq.functional.neuron)."""
    x = x.detach().clone().requires_grad_(True)
    v0 = v0.detach().clone().requires_grad_(True)
    if charge is not None:  # a custom charge (torch-on-CUDA arithmetic emulation)
        def step(xt, v):
            h = charge(xt, v)
            s = neuron_fn.fire(h, p["v_threshold"], sg)
            return s, neuron_fn.hard_or_soft_reset(h, s, p["v_threshold"], p["v_reset"], p["detach_reset"])
        s, vl, vs = neuron_fn.multi_step(step, x, v0, True)
    elif family == "if":
        s, vl, vs = neuron_fn.if_multi_step(x, v0, record("if", **p), sg, True)
    else:
        s, vl, vs = neuron_fn.lif_multi_step(x, v0, record("lif", **p), sg, True)
    g_s, g_vs, g_vl = grads
    loss = (s * g_s).sum() + (vs * g_vs).sum() + (vl * g_vl).sum()
    g_x, g_v0 = torch.autograd.grad(loss, (x, v0))
    return s.detach(), vl.detach(), vs.detach(), g_x, g_v0


def _case(T, seed, v_th=1.0):
    gen = torch.Generator().manual_seed(seed)
    shape = (T,) + tuple(int(d) for d in torch.randint(1, 9, (int(torch.randint(1, 4, (1,), generator=gen)),),
                                                       generator=gen))
    n = math.prod(shape[1:])
    shape = shape if n >= 24 else shape + (24,)
    x = torch.randn(shape, generator=gen) * 1.2 + 0.35 * v_th
    v0 = torch.randn(shape[1:], generator=gen) * 0.4
    grads = (torch.randn(shape, generator=gen), torch.randn(shape, generator=gen) * 0.3,
             torch.randn(shape[1:], generator=gen))
    return x, v0, grads


def _params(family, v_reset, detach, decay_input, tau=2.5, v_threshold=1.0):
    p = dict(v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach)
    if family == "lif":
        p.update(tau=tau, decay_input=decay_input)
    return p


def _assert_matches(host, ref, spikes_nontrivial=True):
    s, vl, vs, gx, gv0 = host
    rs, rvl, rvs, rgx, rgv0 = ref
    assert torch.equal(s, rs), f"{(s != rs).sum().item()} spikes differ"
    assert torch.equal(vs, rvs) and torch.equal(vl, rvl)
    if spikes_nontrivial:
        assert 0 < s.sum() < s.numel()
    torch.testing.assert_close(gx, rgx, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gv0, rgv0, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 2, 7, 16, 64])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.4])
@pytest.mark.parametrize("detach", [False, True])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_host_loops_equal_torch_reference(harness, family, v_reset, detach, T):
    """Spikes, v_seq, v_last bit-identical; d/dx and d/dv0 to 1e-5 (fp32, true division = CPU torch)."""
    seed = zlib.crc32(repr((family, v_reset, detach, T)).encode()) % 10_000
    name, sg = SURROGATES[seed % len(SURROGATES)]
    for decay_input in ([True, False] if family == "lif" else [True]):
        x, v0, grads = _case(T, seed)
        p = _params(family, v_reset, detach, decay_input)
        host = host_run(harness, family, x, v0, sg, grads, **p)
        ref = torch_reference(family, x, v0, sg, grads, **p)
        _assert_matches(host, ref, spikes_nontrivial=x.numel() >= 100)


@pytest.mark.parametrize("name,sg", SURROGATES, ids=[n for n, _ in SURROGATES])
def test_host_every_device_surrogate(harness, name, sg):
    x, v0, grads = _case(16, 7)
    for family in ("if", "lif"):
        for v_reset in (0.0, None):
            p = _params(family, v_reset, False, True, tau=3.0)
            _assert_matches(host_run(harness, family, x, v0, sg, grads, **p),
                            torch_reference(family, x, v0, sg, grads, **p))


@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None, 0.3])
def test_host_reciprocal_division_mode_equals_torch_cuda_arithmetic(harness, decay_input, v_reset):
    """The GPU kernels divide by tau as torch's CUDA kernels do, ``a * float32(1/float32(tau))``.
    Emulated here with CPU torch ops, the results are again bit-identical."""
    tau = 3.0  # 1/3 is inexact: true division and reciprocal multiply differ often
    inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(tau, dtype=torch.float32)
    vr = 0.0 if v_reset is None else v_reset

    def charge(x, v):
        if decay_input:
            return v + (x - v) * inv if vr == 0.0 else v + (x - (v - vr)) * inv
        return v * (1.0 - 1.0 / tau) + x if vr == 0.0 else v - (v - vr) * inv + x

    x, v0, grads = _case(64, 3)
    p = _params("lif", v_reset, False, decay_input, tau=tau)
    host = host_run(harness, "lif", x, v0, surrogate.Sigmoid(alpha=4.0), grads, recip_div=True, **p)
    ref = torch_reference("lif", x, v0, surrogate.Sigmoid(alpha=4.0), grads, charge=charge, **p)
    _assert_matches(host, ref)
    if decay_input or v_reset not in (0.0, None):  # the mode really changes the arithmetic
        true_div = host_run(harness, "lif", x, v0, surrogate.Sigmoid(alpha=4.0), None, **p)
        assert not torch.equal(true_div[2], host[2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_host_half_storage_fp32_state(harness, family, dtype):
    """fp16/bf16 storage: read, computed in fp32, written rounded; H is saved as H - V_th in the storage
    dtype.  Equal to the fp32 reference on the upcast input: spikes exactly, v_seq/v_last = round(fp32
    state); gradients to storage precision of the fp32 BPTT whose surrogate sees the saved (rounded)
    H - V_th, and close to the plain fp32 BPTT."""
    x, v0, grads = _case(16, 11)
    x, v0 = x.to(dtype), v0.to(dtype)
    grads = tuple(g.to(dtype) for g in grads)
    sg = surrogate.ATan(alpha=2.0)
    p = _params(family, None, False, True)
    s, vl, vs, gx, gv0 = host_run(harness, family, x, v0, sg, grads, **p)
    fgrads = tuple(g.float() for g in grads)
    rs, rvl, rvs, rgx, rgv0 = torch_reference(family, x.float(), v0.float(), rounded(sg, dtype), fgrads, **p)
    assert s.dtype == dtype and torch.equal(s.float(), rs)
    assert torch.equal(vs, rvs.to(dtype)) and torch.equal(vl, rvl.to(dtype))
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(gx.float(), rgx, atol=1e-5, rtol=eps)
    torch.testing.assert_close(gv0.float(), rgv0, atol=1e-5, rtol=eps)
    # against the unrounded fp32 BPTT: the rounding of H - V_th moves sg' by O(eps) per step
    _, _, _, fgx, _ = torch_reference(family, x.float(), v0.float(), sg, fgrads, **p)
    rel = (gx.float() - fgx).norm() / fgx.norm()
    assert rel < 8 * eps, float(rel)


def test_host_half_storage_spike_sign_survives_rounding(harness):
    """H saved as H - V_th in fp16/bf16 keeps its sign: the spike backward recomputes from it is the
    forward's fp32 spike for every H, including H - V_th = +-tiny that round to +-0."""
    gen = torch.Generator().manual_seed(0)
    tiny = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-10, -1e-10, 2.0 ** -26, -2.0 ** -26, 1e-45, -1e-45])
    for v_th, h in ((0.75, torch.randn(100_000, generator=gen) * 2), (0.0, tiny)):  # tiny: round to +-0
        want = ((h - v_th) >= 0).float()
        for name in ("f16", "bf16"):
            s = torch.empty_like(h)
            getattr(harness, f"nq_host_saved_spike_{name}")(_ptr(h), ctypes.c_float(v_th), _ptr(s),
                                                            ctypes.c_longlong(h.numel()))
            assert torch.equal(s, want), (name, v_th)


def test_host_storage_conversions_equal_torch(harness):
    """fp16 <-> fp32 and fp32 -> bf16 conversions round to nearest even exactly like torch."""
    bits = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    halves = bits.view(torch.float16)
    out = torch.empty(1 << 16, dtype=torch.float32)
    harness.nq_host_from_f16(_ptr(halves), _ptr(out), ctypes.c_longlong(1 << 16))
    ref = halves.float()
    nan = torch.isnan(ref)
    assert torch.equal(torch.isnan(out), nan) and torch.equal(out[~nan], ref[~nan])

    gen = torch.Generator().manual_seed(0)
    f = torch.cat([
        torch.randn(100_000, generator=gen) * torch.logspace(-9, 6, 100_000).float(),
        ref[~nan],                                           # every fp16 value
        (ref[~nan].double() * (1 + 2.0 ** -11)).float(),      # fp16 halfway points and neighbours
        torch.tensor([65504.0, 65519.99, 65520.0, 1e30, -1e30, 2.0 ** -25, 2.0 ** -25 * 1.0001, 2.0 ** -26,
                      1e-45, float("inf"), -float("inf"), 0.0, -0.0, 3.4e38]),
    ])
    h = torch.empty(f.numel(), dtype=torch.int16)
    harness.nq_host_to_f16(_ptr(f), _ptr(h), ctypes.c_longlong(f.numel()))
    assert torch.equal(h, f.half().view(torch.int16))
    b = torch.empty(f.numel(), dtype=torch.int16)
    harness.nq_host_to_bf16(_ptr(f), _ptr(b), ctypes.c_longlong(f.numel()))
    assert torch.equal(b, f.bfloat16().view(torch.int16))
    nanv = torch.tensor([float("nan")])
    harness.nq_host_to_f16(_ptr(nanv), _ptr(h), ctypes.c_longlong(1))
    assert torch.isnan(h[:1].view(torch.float16).float()).all()


def host_saf(lib, u, a0, sg, grads=None, recip_div=False, **params):
    """Harness run of the SAF kernels: ``-> (a_seq, a_last[, g_u, g_a0])``."""
    shape, dtype = u.shape, u.dtype
    T, N = shape[0], math.prod(shape[1:])
    sfx = STORAGE[dtype]
    u2, a2 = u.contiguous().reshape(T, N), a0.contiguous().reshape(N)
    a_seq, a_last = torch.empty_like(u2), torch.empty_like(a2)
    x_seq = torch.empty_like(u2)
    consts = kp.saf_constants(SAFParameters(**params), recip_div)
    getattr(lib, f"nq_host_saf_forward_kernel_{sfx}")(_ptr(u2), _ptr(a2), _ptr(a_seq), _ptr(x_seq), _ptr(a_last),
                                               ctypes.c_longlong(N), ctypes.c_int(T), *_cargs(consts))
    out = [a_seq.reshape(shape), a_last.reshape(shape[1:])]
    if grads is not None:
        g_a, g_l = (g.to(dtype).contiguous() for g in grads)
        g_u, g_a0 = torch.empty_like(u2), torch.empty_like(a2)
        getattr(lib, f"nq_host_saf_backward_kernel_{sfx}")(
            _ptr(g_a), _ptr(g_l), _ptr(x_seq), _ptr(g_u), _ptr(g_a0), ctypes.c_longlong(N), ctypes.c_int(T),
            *_cargs(consts), *_cargs(kp.surrogate_constants(sg)))
        out += [g_u.reshape(shape), g_a0.reshape(shape[1:])]
    return out


@pytest.mark.parametrize("T", [1, 2, 7, 16, 64])
@pytest.mark.parametrize("detach_state", [True, False])
@pytest.mark.parametrize("decay_input", [False, True])
def test_host_saf_loops_equal_torch_reference(harness, decay_input, detach_state, T):
    """SAF: accumulations bit-identical to neuroq.functional.saf.saf_multi_step, d/dU^ (and d/da0
    without detach_state) to 1e-5."""
    FS = pytest.importorskip("neuroq.functional.saf")
    name, sg = SURROGATES[T % len(SURROGATES)]
    gen = torch.Generator().manual_seed(T)
    # U^ is an accumulated input: accumulate a random current so the drive looks like SAF's
    cur = torch.randn(T, 6, 37, generator=gen) * 1.2 + 0.45
    u = FS.accumulate(cur, 2.5) * (2.5 if decay_input else 1.0)
    a0 = torch.rand(6, 37, generator=gen) * 2.0
    grads = (torch.randn(T, 6, 37, generator=gen), torch.randn(6, 37, generator=gen))
    p = dict(tau=2.5, decay_input=decay_input, v_threshold=1.0, detach_state=detach_state)
    a_seq, a_last, g_u, g_a0 = host_saf(harness, u, a0, sg, grads, **p)
    uu, aa = u.clone().requires_grad_(True), a0.clone().requires_grad_(True)
    r_seq, r_last = FS.saf_multi_step(uu, aa, SAFParameters(**p), sg)
    assert torch.equal(a_seq, r_seq.detach()) and torch.equal(a_last, r_last.detach())
    spikes = FS.saf_spikes(a_seq, 2.5, a0)
    assert 0 < spikes.sum() < spikes.numel()
    loss = (r_seq * grads[0]).sum() + (r_last * grads[1]).sum()
    r_gu, r_ga0 = torch.autograd.grad(loss, (uu, aa), allow_unused=True)
    torch.testing.assert_close(g_u, r_gu, atol=1e-5, rtol=1e-5)
    if detach_state:
        assert r_ga0 is None or not r_ga0.any()
    else:
        torch.testing.assert_close(g_a0, r_ga0, atol=1e-5, rtol=1e-5)


def test_host_saf_spikes_equal_soft_reset_lif(harness):
    """SAF's defining property on the kernel loops: same spikes as the soft-reset LIF
    (decay_input=False) driven by the un-accumulated current (fp32: up to rare ties at threshold)."""
    FS = pytest.importorskip("neuroq.functional.saf")
    gen = torch.Generator().manual_seed(5)
    cur = torch.randn(16, 500, generator=gen) * 1.0 + 0.4
    a_seq, _ = host_saf(harness, FS.accumulate(cur, 2.0), torch.zeros(500), surrogate.Sigmoid(alpha=4.0),
                        tau=2.0, decay_input=False, v_threshold=1.0, detach_state=True)
    s_lif, _, _ = neuron_fn.lif_multi_step(cur, torch.zeros(500),
                                           LIFParameters(tau=2.0, decay_input=False, v_reset=None),
                                           surrogate.Sigmoid(alpha=4.0))
    s_saf = FS.saf_spikes(a_seq, 2.0)
    assert (s_saf != s_lif).float().mean() < 2e-3 and s_lif.sum() > 100


# ---------------------------------------------------------------------------------------------
# the Python launch path (autograd Functions, reshapes, contiguity, None gradients, argument
# packing) on the CPU: ``_launch`` is swapped for the harness, which has the kernels' signatures
# ---------------------------------------------------------------------------------------------
HARNESS_NAMES = {name: "nq_host_" + name[3:] for name in ENTRIES}


@pytest.fixture
def emulated_gpu(harness, monkeypatch):
    """Route neuroq's kernel launches to the CPU harness (true division, as CPU torch divides)."""
    launches = []

    def fake_launch(name, dtype, device, n, args):
        launches.append((name, args))
        conv = []
        for a in args:
            if isinstance(a, np.uint64):
                conv.append(ctypes.c_void_p(int(a)))
            else:
                conv += _cargs([a])
        getattr(harness, f"{HARNESS_NAMES[name]}_{STORAGE[dtype]}")(*conv)

    real_neuron, real_saf = kp.neuron_constants, kp.saf_constants
    monkeypatch.setattr(nk, "_launch", fake_launch)
    monkeypatch.setattr(nk, "neuron_constants", lambda p, recip_div: real_neuron(p, False))
    monkeypatch.setattr(nk, "saf_constants", lambda p, recip_div: real_saf(p, False))

    def fake_resolve(backend, x, family=None):
        return "cupy" if backend == "cupy" else "torch"

    import neuroq.neuron.base as nbase

    monkeypatch.setattr(nbase, "resolve", fake_resolve)
    return launches


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_launch_path_through_neuron_modules(emulated_gpu, family, dtype):
    """backend='cupy' modules (with the harness as device) equal backend='torch': non-contiguous
    input, store_v_seq, state carried over two calls, gradients to x, only-spike and only-v losses."""
    cls = LIFNode if family == "lif" else IFNode
    kw = dict(step_mode="m", store_v_seq=True, v_reset=None, surrogate_function=surrogate.ATan(alpha=2.0))
    ours, ref = cls(backend="cupy", **kw), cls(backend="torch", **kw)
    if dtype != torch.float32:  # the kernels save H - V_th in the storage dtype
        ref.surrogate_function = rounded(kw["surrogate_function"], dtype)
    base = torch.randn(9, 5, 6, 4) * 1.2 + 0.4
    x = base.permute(0, 3, 1, 2)[:, :, ::2].to(dtype)  # non-contiguous
    assert not x.is_contiguous()
    xa = x.detach().clone().requires_grad_(True)
    xr = x.detach().float().requires_grad_(True)
    out_a = torch.cat([ours(xa[:4]), ours(xa[4:])])
    vs_a = ours.v_seq
    out_r0 = ref(xr[:4])
    ref.v = ref.v.to(dtype).float()  # between calls the state is stored in the storage dtype
    out_r = torch.cat([out_r0, ref(xr[4:])])
    assert len(emulated_gpu) == 2 and out_a.dtype == dtype
    assert torch.equal(out_a.float(), out_r) and torch.equal(vs_a, ref.v_seq.to(dtype))
    assert torch.equal(ours.v, ref.v.to(dtype))
    w = torch.randn_like(out_r).to(dtype).float()
    g_a, = torch.autograd.grad((out_a.float() * w).sum() + ours.v.float().sum(), xa)
    g_r, = torch.autograd.grad((out_r * w).sum() + ref.v.sum(), xr)
    assert [n for n, _ in emulated_gpu].count("nq_if_family_backward") == 2
    torch.testing.assert_close(g_a.float(), g_r, atol=1e-5, rtol=torch.finfo(dtype).eps)
    # a loss on v alone (no spike gradient: a null pointer in the kernel)
    ours.reset(), ref.reset()
    xa.grad = None
    ga, = torch.autograd.grad(ours(xa).sum() * 0 + ours.v.float().sum(), xa)
    gr, = torch.autograd.grad(ref(xr).sum() * 0 + ref.v.sum(), xr)
    torch.testing.assert_close(ga.float(), gr, atol=1e-5, rtol=torch.finfo(dtype).eps)
    with torch.no_grad():  # inference: no h_seq written (null pointer)
        ours.reset(), ref.reset()
        n_before = len(emulated_gpu)
        assert torch.equal(ours(x).float(), ref(x.float()))
        assert emulated_gpu[n_before][1][4] == 0
    # the default store_v_seq=False (the Function returns None for v_seq)
    kw["store_v_seq"] = False
    ours, ref = cls(backend="cupy", **kw), cls(backend="torch", **kw)
    if dtype != torch.float32:
        ref.surrogate_function = rounded(kw["surrogate_function"], dtype)
    s1, s2 = ours(xa), ref(xr)
    assert ours.v_seq is None and torch.equal(s1.float(), s2)
    ga, = torch.autograd.grad((s1.float() * w).sum(), xa)
    gr, = torch.autograd.grad((s2 * w).sum(), xr)
    torch.testing.assert_close(ga.float(), gr, atol=1e-5, rtol=torch.finfo(dtype).eps)


def test_launch_path_saf_module(emulated_gpu):
    saf = pytest.importorskip("neuroq.neuron.saf")
    FS = pytest.importorskip("neuroq.functional.saf")
    u = FS.accumulate(torch.randn(12, 4, 33) * 1.2 + 0.45, 2.0)
    for detach_state in (True, False):
        ours = saf.SAFNode(tau=2.0, detach_state=detach_state, step_mode="m", backend="cupy", store_v_seq=True)
        ref = saf.SAFNode(tau=2.0, detach_state=detach_state, step_mode="m", backend="torch", store_v_seq=True)
        ua, ur = u.clone().requires_grad_(True), u.clone().requires_grad_(True)
        a1 = torch.cat([ours(ua[:5]), ours(ua[5:])])
        a2 = torch.cat([ref(ur[:5]), ref(ur[5:])])
        assert torch.equal(a1, a2) and torch.equal(ours.v_seq, ref.v_seq) and int(ours.t) == 12
        w = torch.randn_like(a2)
        g1, = torch.autograd.grad((a1 * w).sum() + ours.v.sum(), ua)
        g2, = torch.autograd.grad((a2 * w).sum() + ref.v.sum(), ur)
        torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    assert {n for n, _ in emulated_gpu} == {"nq_saf_forward_kernel", "nq_saf_backward_kernel"}


def test_launch_arguments_match_kernel_signatures(emulated_gpu, tmp_path):
    """Every launch passes as many arguments as the compiled kernel has parameters, each of the
    parameter's size and kind (pointer/int64 -> .u64, int32 -> .u32, float32 -> .f32 in the PTX)."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on the PATH")
    out = tmp_path / "k.ptx"
    subprocess.run([nvcc, "--ptx", "-arch=compute_75", *build.compile_options(torch.float32),
                    str(KERNEL_DIR / "neuron_kernels.cu"), "-o", str(out)], check=True, timeout=240)
    ptx = out.read_text()
    x = (torch.randn(5, 40) + 0.5).requires_grad_(True)
    for cls in (LIFNode, IFNode):
        m = cls(step_mode="m", backend="cupy", store_v_seq=True)
        m(x).sum().backward()
    saf = None
    try:
        from neuroq.neuron import saf
    except ImportError:
        pass
    if saf is not None:
        saf.SAFNode(step_mode="m", backend="cupy", detach_state=False)(x).sum().backward()
    from neuroq.neuron import OnlineLIFNode

    node = OnlineLIFNode(backend="cupy").train()  # fused single step with OTTT's trace
    node(x[0]).sum().backward()
    node(x[1])
    assert node.trace is not None
    nk.surrogate_backward_cuda(x.detach(), torch.ones_like(x), kp.s2nn_constants(4, 4.0, 1.0, "sigmoid"))
    ptx_type = {np.uint64: ".u64", np.int64: ".u64", np.int32: ".u32", np.float32: ".f32"}
    seen = set()
    for name, args in emulated_gpu:
        params = re.search(r"\.entry " + name + r"\((.*?)\)", ptx, re.S).group(1)
        kinds = re.findall(r"\.param (\.\w+)", params)
        assert [ptx_type[type(a)] for a in args] == kinds, name
        seen.add(name)
    assert seen == set(ENTRIES)


# ---------------------------------------------------------------------------------------------
# (d) backend selection and fallback (CPU)
# ---------------------------------------------------------------------------------------------
class _FakeCuda:
    is_cuda = True
    device = torch.device("cuda", 0)


def test_cupy_backend_errors_and_auto_fallback(monkeypatch):
    x = torch.rand(4, 3, 5)
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        LIFNode(step_mode="m", backend="cupy")(x)
    assert torch.equal(IFNode(step_mode="m", backend="auto")(x), IFNode(step_mode="m", backend="torch")(x))
    # without CuPy: 'cupy' says how to install it, 'auto' runs torch
    monkeypatch.setattr(nqbackend, "cupy_status", lambda: (False, "CuPy could not be imported; "
                                                                  + nqbackend.CUPY_INSTALL_HINT))
    with pytest.raises(RuntimeError, match=r"not available.*cuda12"):
        nqbackend.resolve("cupy", _FakeCuda(), "lif")
    assert nqbackend.resolve("auto", _FakeCuda(), "lif") == "torch"
    # with CuPy working, 'auto' picks the kernels for CUDA tensors of a family that has them
    monkeypatch.setattr(nqbackend, "cupy_status", lambda: (True, "ok"))
    assert nqbackend.resolve("auto", _FakeCuda(), "lif") == "cupy"
    assert nqbackend.resolve("auto", _FakeCuda(), "if") == "cupy"
    assert nqbackend.resolve("auto", _FakeCuda(), "no-such-family") == "torch"
    # a CPU tensor: 'auto' never picks CuPy (it picks the fused CPU kernels where they build)
    assert nqbackend.resolve("auto", x, "lif") == ("cpu" if nqbackend.cpu_status()[0] else "torch")


def test_surrogate_constants_only_for_device_surrogates():
    assert kp.surrogate_constants(surrogate.Sigmoid(alpha=4.0))[0] == kp.SG_SIGMOID
    assert kp.surrogate_constants(surrogate.ATan(alpha=2.0))[0] == kp.SG_ATAN
    assert kp.surrogate_constants(surrogate.SoftSign(alpha=2.0)) is None
    assert kp.surrogate_constants(surrogate.Sigmoid(alpha=4.0, spiking=False)) is None

    class MySigmoid(surrogate.Sigmoid):  # a subclass may change the gradient: no kernel
        pass

    assert kp.surrogate_constants(MySigmoid(alpha=4.0)) is None
    assert kp.surrogate_constants(lambda x: (x >= 0).float()) is None


def test_unknown_surrogate_falls_back_to_torch_with_one_warning(monkeypatch):
    """The launcher declines (Unsupported) before touching the GPU; BaseNode then runs torch."""
    import neuroq.neuron.base as base

    monkeypatch.setattr(base, "resolve", lambda backend, x, family=None: "cupy")
    monkeypatch.setattr(base, "_WARNED", set())
    sg = surrogate.SoftSign(alpha=2.0)
    x = (torch.randn(6, 4, 5) + 0.5).requires_grad_()
    ours = LIFNode(step_mode="m", surrogate_function=sg, backend="cupy", store_v_seq=True)
    ref = LIFNode(step_mode="m", surrogate_function=sg, backend="torch", store_v_seq=True)
    with pytest.warns(RuntimeWarning, match="no device version of surrogate SoftSign"):
        s1 = ours(x)
    s2 = ref(x)
    assert torch.equal(s1, s2) and torch.equal(ours.v_seq, ref.v_seq)
    g1, = torch.autograd.grad(s1.sum(), x)
    g2, = torch.autograd.grad(s2.sum(), x)
    assert torch.equal(g1, g2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours.reset()
        ours(x)  # second time: no warning


# ---------------------------------------------------------------------------------------------
# (c) GPU: backend='cupy' equals backend='torch' on the same device
# ---------------------------------------------------------------------------------------------
def _gpu_pair(family, **kw):
    cls = LIFNode if family == "lif" else IFNode
    if family == "if":
        kw.pop("tau", None)
        kw.pop("decay_input", None)
    return cls(step_mode="m", backend="cupy", **kw).cuda(), cls(step_mode="m", backend="torch", **kw).cuda()


def _gpu_compare(family, x, kw, grad_tol=1e-5, ref_x=None):
    """Run both backends with store_v_seq; compare spikes exactly, states and gradients (16-bit
    storage: against the fp32 reference whose surrogate sees H - V_th rounded as the kernel saved it)."""
    ours, ref = _gpu_pair(family, store_v_seq=True, **kw)
    if x.dtype != torch.float32:
        ref.surrogate_function = rounded(kw["surrogate_function"], x.dtype)
    xa = x.detach().clone().requires_grad_(True)
    xr = (ref_x if ref_x is not None else x).detach().clone().requires_grad_(True)
    s1, s2 = ours(xa), ref(xr)
    assert s1.dtype == x.dtype
    assert torch.equal(s1.float(), s2.float()), f"{(s1.float() != s2.float()).sum().item()} spikes differ"
    # output gradients representable in the storage dtype, so both sides get the same ones
    w = torch.randn_like(s2.float()).to(x.dtype).float()
    wv = (torch.randn_like(s2.float()) * 0.3).to(x.dtype).float()
    l1 = (s1.float() * w).sum() + (ours.v_seq.float() * wv).sum() + ours.v.float().sum()
    l2 = (s2.float() * w).sum() + (ref.v_seq.float() * wv).sum() + ref.v.float().sum()
    g1, = torch.autograd.grad(l1, xa)
    g2, = torch.autograd.grad(l2, xr)
    if x.dtype == torch.float32:
        torch.testing.assert_close(ours.v_seq, ref.v_seq, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.v, ref.v, atol=1e-5, rtol=0)
        torch.testing.assert_close(g1, g2, atol=grad_tol, rtol=grad_tol)
    else:  # fp32 state rounded to the storage dtype
        assert torch.equal(ours.v_seq, ref.v_seq.to(x.dtype))
        eps = torch.finfo(x.dtype).eps
        torch.testing.assert_close(g1.float(), g2, atol=1e-5, rtol=eps)
    return s1


@pytest.mark.cuda
@pytest.mark.parametrize("T", [1, 2, 7, 16, 64])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.4])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_gpu_cupy_equals_torch_fp32(family, v_reset, T):
    gen = torch.Generator().manual_seed(T * 7 + (0 if v_reset is None else 1))
    for trial, (name, sg) in enumerate(SURROGATES):
        shape = (T,) + tuple(int(d) for d in torch.randint(1, 40, (int(torch.randint(1, 4, (1,), generator=gen)),),
                                                           generator=gen))
        x = (torch.randn(shape, generator=gen) * 1.2 + 0.4).cuda()
        # tau = 1.7 + k is not representable in fp32: exercises torch_reciprocal
        kw = dict(v_reset=v_reset, surrogate_function=sg, detach_reset=bool(trial % 2), tau=1.7 + trial,
                  decay_input=bool(trial % 3))
        _gpu_compare(family, x, kw)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", ["if", "lif"])
def test_gpu_half_storage(family, dtype):
    x = (torch.randn(16, 8, 333) * 1.2 + 0.4).cuda().to(dtype)
    kw = dict(v_reset=None, surrogate_function=surrogate.Sigmoid(alpha=4.0), tau=2.0)
    _gpu_compare(family, x, kw, ref_x=x.float())


@pytest.mark.cuda
def test_gpu_non_contiguous_and_larger_than_one_grid(monkeypatch):
    base = (torch.randn(7, 64, 4, 50) * 1.2 + 0.4).cuda()
    x = base.permute(0, 3, 1, 2)[:, ::2]  # non-contiguous view
    assert not x.is_contiguous()
    _gpu_compare("lif", x, dict(v_reset=0.0, surrogate_function=surrogate.ATan(alpha=2.0)))
    monkeypatch.setattr(nk, "MAX_BLOCKS", 2)  # 512 threads for 12800 neurons: grid-stride loop
    _gpu_compare("lif", x, dict(v_reset=None, surrogate_function=surrogate.ATan(alpha=2.0)))
    _gpu_compare("if", (torch.randn(3, 100_003) + 0.5).cuda(), dict(v_reset=-0.4))


@pytest.mark.cuda
def test_gpu_state_carries_across_calls_and_auto_picks_cupy():
    x = (torch.randn(8, 4, 1000) + 0.5).cuda()
    a = LIFNode(step_mode="m", backend="auto").cuda()
    assert nqbackend.resolve("auto", x, "lif") == "cupy"
    b = LIFNode(step_mode="m", backend="torch").cuda()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a = torch.cat([a(xa[:3]), a(xa[3:])])  # v0 of the second call is the first call's v_last
    out_b = torch.cat([b(xb[:3]), b(xb[3:])])
    assert torch.equal(out_a, out_b)
    ga, = torch.autograd.grad(out_a.sum() + a.v.sum(), xa)
    gb, = torch.autograd.grad(out_b.sum() + b.v.sum(), xb)
    torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # inference path (no h_seq written)
        a.reset()
        b.reset()
        assert torch.equal(a(x), b(x))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("detach_state", [True, False])
def test_gpu_saf_cupy_equals_torch(detach_state, dtype):
    saf = pytest.importorskip("neuroq.neuron.saf")
    FS = pytest.importorskip("neuroq.functional.saf")
    for T in (1, 2, 7, 16, 64):
        u = (FS.accumulate(torch.randn(T, 3, 1111) * 1.2 + 0.45, 2.0)).cuda()
        ours = saf.SAFNode(tau=2.0, detach_state=detach_state, step_mode="m", backend="cupy").cuda()
        ref = saf.SAFNode(tau=2.0, detach_state=detach_state, step_mode="m", backend="torch").cuda()
        if dtype != torch.float32:  # the kernel saves X in the storage dtype
            ref.surrogate_function = rounded(ours.surrogate_function, dtype)
        ua = u.to(dtype).requires_grad_(True)
        ur = u.to(dtype).float().requires_grad_(True)
        a1, a2 = ours(ua), ref(ur)
        w = torch.randn_like(a2).to(dtype).float()
        if dtype == torch.float32:
            assert torch.equal(a1, a2)
        else:
            assert torch.equal(a1, a2.to(dtype))
        g1, = torch.autograd.grad((a1.float() * w).sum() + ours.v.float().sum(), ua)
        g2, = torch.autograd.grad((a2 * w).sum() + ref.v.sum(), ur)
        rtol = 1e-5 if dtype == torch.float32 else torch.finfo(dtype).eps
        torch.testing.assert_close(g1.float(), g2, atol=1e-5, rtol=rtol)


@pytest.mark.cuda
def test_gpu_saved_tensors_freed_by_backward_and_double_backward_refused():
    """What forward saves for backward is freed by backward (before any reset_net): the memory
    after backward is what it was before forward, plus the outputs and gradients still referenced.
    Backward is once_differentiable: a double backward raises instead of being silently wrong."""
    torch.cuda.synchronize()
    x = (torch.randn(16, 1 << 20, device="cuda") + 0.5).requires_grad_(True)
    node = LIFNode(step_mode="m", backend="cupy").cuda()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    s = node(x)
    held = torch.cuda.memory_allocated() - base
    assert held >= 2 * x.numel() * 4  # spikes and saved H
    s.backward(torch.ones_like(s))
    del s
    torch.cuda.synchronize()
    after = torch.cuda.memory_allocated() - base
    # left: x.grad (T*N) and the state v (N); the saved H is gone without reset_net
    assert after <= x.numel() * 4 + 4 * (1 << 20) + (1 << 20), (held, after)
    x.grad = None
    node.reset()
    xs = x.detach().clone().requires_grad_(True)
    out = node(xs)
    g, = torch.autograd.grad(out.sum(), xs, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


@pytest.mark.cuda
def test_gpu_side_stream_and_cuda_graph_capture():
    """Kernels run on torch's current stream (a side stream gives the same result after sync), and
    a forward+backward is capturable in a CUDA graph (no host sync such as .item() inside)."""
    x = (torch.randn(8, 4096, device="cuda") + 0.5)
    ref = LIFNode(step_mode="m", backend="torch", tau=1.7).cuda()(x)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = LIFNode(step_mode="m", backend="cupy", tau=1.7).cuda()(x)
    torch.cuda.current_stream().wait_stream(side)
    assert torch.equal(out, ref)
    node = LIFNode(step_mode="m", backend="cupy", tau=1.7).cuda()
    static_x = x.clone().requires_grad_(True)
    for _ in range(2):  # warm-up on a side stream (compiles the kernels outside the capture)
        with torch.cuda.stream(side):
            node.reset()
            node(static_x).sum().backward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    static_x.grad = None
    with torch.cuda.graph(graph):
        node.reset()
        static_out = node(static_x)
        static_out.sum().backward()
    static_x.data.copy_(x * 1.1)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(static_out, LIFNode(step_mode="m", backend="torch", tau=1.7).cuda()(x * 1.1))


@pytest.mark.cuda
def test_gpu_torch_reciprocal_matches_torch_division():
    """The host-computed reciprocal (1.0f / float(tau)) is what torch's CUDA division multiplies by."""
    x = torch.randn(1 << 16, device="cuda")
    for tau in (1.7, 2.0, 2.5, 3.0, 7.3, 10.0, 1.0001, 123.456):
        assert torch.equal(x / tau, x * float(kp.torch_reciprocal(tau))), tau


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
