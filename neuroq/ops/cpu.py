r"""The fused CPU backend (``backend='cpu'``): C++ build, cache and launchers.

``neuron_kernels_cpu.cpp`` + ``kernels.cuh`` (beside this file, the same per-neuron math the CUDA
kernels run) are compiled once per storage dtype by the system C++ compiler with

    -O3 -std=c++17 -fPIC -fopenmp -march=native -DNQ_STORAGE=<type>
      -DNQ_PART=1 -ffp-contract=off    (forward, the backward's recompute: bit-exact)
      -DNQ_PART=2 -ffp-contract=fast   (the reverse-time gradient loops: FMA allowed)

into ``$NEUROQ_CACHE_DIR`` (default ``$XDG_CACHE_HOME/neuroq/ops`` or ``~/.cache/neuroq/ops``), under
a name keyed by a hash of the inlined source, the flags, the compiler's version and the CPU
(``-march=native``).  The build writes to a temporary file and renames it (atomic), under a
process lock and a lock file, so threads and processes may race safely.  Without a compiler
:func:`status` says why and ``backend='auto'`` runs the torch reference after a one-line notice.

Loops (see the .cpp): OpenMP over blocks of neurons, the time loop outside, a SIMD loop over the
block inside (GCC's ``-fopt-info-vec`` reports these loops vectorised with 64-byte vectors on AVX-512).
Forward writes only the outputs; backward recomputes the block's forward from the saved inputs
(bit-identical) into an L2-sized scratch, so nothing but the inputs is kept for backward.  Threads:
``torch.get_num_threads()``.  fp32 forward is bit-identical to the torch reference (true division
by :math:`\tau`, as torch on CPU -- a multiplication only for a power-of-two tau, where it is
exact; FMA contraction off); gradients agree to 1e-5 (the surrogate's exponential is a
vectorisable polynomial, ~2 ulp).

Example::

    >>> import torch
    >>> from neuroq.neuron import LIFNode
    >>> node = LIFNode(step_mode="m", backend="cpu")   # doctest: +SKIP
    >>> node(torch.rand(16, 1024)).shape               # doctest: +SKIP
    torch.Size([16, 1024])
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from . import KernelOut, Unsupported, kernel_source, register
from .params import (NEURON_FIELDS, SAF_FIELDS, SURROGATE_FIELDS, exact_reciprocal, neuron_constants,
                     require_storage, require_surrogate, saf_constants)

SOURCE = "neuron_kernels_cpu.cpp"
BASE_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-fopenmp")
ARCH_FLAGS = ("-march=native",)
#: the two translation units of SOURCE: exact forward/recompute, and the gradient loops with FMA
UNITS = (("-DNQ_PART=1", "-ffp-contract=off"), ("-DNQ_PART=2", "-ffp-contract=fast"))
LINK_FLAGS = ("-shared", "-fopenmp")
_ENTRY_POINTS = ("nq_cpu_abi", "nq_cpu_if_forward", "nq_cpu_if_backward", "nq_cpu_saf_forward",
                 "nq_cpu_saf_backward", "nq_cpu_surrogate_backward", "nq_cpu_advise_huge")
#: output buffers at least this large get the huge-page advice (see nq_cpu_advise_huge)
HUGE_PAGE_MIN_BYTES = 8 << 20


# ---- C structs (kernels.cuh) -----------------------------------------------------------------
def _struct(name, fields):
    def ctype(f):
        return ctypes.c_int if f in ("charge", "hard_reset", "detach_reset", "recip_div", "kind", "inner",
                                     "t_ref", "decay_input", "detach_state") else ctypes.c_float
    return type(name, (ctypes.Structure,), {"_fields_": [(f, ctype(f)) for f in fields]})


NQNeuron = _struct("NQNeuron", NEURON_FIELDS)
NQSurrogate = _struct("NQSurrogate", SURROGATE_FIELDS)
NQSAF = _struct("NQSAF", SAF_FIELDS)


def _fill(struct_type, values):
    return struct_type(*[v.item() for v in values])


# ---- build and cache -------------------------------------------------------------------------
def cache_dir() -> Path:
    """Where built libraries live: ``$NEUROQ_CACHE_DIR``, else ``$XDG_CACHE_HOME/neuroq/ops``, else
    ``~/.cache/neuroq/ops``."""
    env = os.environ.get("NEUROQ_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "neuroq" / "ops"


def find_compiler() -> Optional[str]:
    """``$CXX`` if set, else the first of ``g++``, ``c++``, ``clang++`` on the PATH."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx) or (cxx if os.path.isfile(cxx) else None)
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except Exception as e:  # pragma: no cover
        return f"unknown ({e})"


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its flags."""
    ident = [platform.machine(), platform.processor()]
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    ident.append(line.strip())
                    if len(ident) > 6:
                        break
    except OSError:
        pass
    return "\n".join(ident)


_BUILD_LOCK = threading.Lock()


def build(source_text: str, flags: tuple, stem: str, cxx: Optional[str] = None,
          directory: Optional[Path] = None, units: Optional[tuple] = None, link_flags: tuple = ("-shared",)) -> Path:
    """Compile ``source_text`` into a shared library in the cache (or return the cached one).

    ``units``: compile the source once per tuple of extra flags (``-c``) and link the objects with
    ``link_flags`` (one library from several translation units); without it one ``flags`` compile.
    The file name holds a hash of (source, flags, units, compiler version, CPU); the build writes a
    temporary file in the cache directory and renames it into place, under a thread lock and an
    ``fcntl`` lock file, so concurrent builders never see a partial library.  Raises
    ``RuntimeError`` with the compiler's message when the build fails."""
    cxx = cxx or find_compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (looked for $CXX, g++, c++, clang++)")
    directory = Path(directory) if directory is not None else cache_dir()
    key = hashlib.sha256("\0".join([source_text, " ".join(flags), repr(units), " ".join(link_flags), cxx,
                                    _compiler_version(cxx), _cpu_id()]).encode()).hexdigest()[:20]
    out = directory / f"{stem}-{key}.so"
    if out.exists():
        return out
    directory.mkdir(parents=True, exist_ok=True)
    with _BUILD_LOCK, _FileLock(directory / f"{stem}-{key}.lock"):
        if out.exists():  # another thread / process built it meanwhile
            return out
        with tempfile.TemporaryDirectory(dir=directory, prefix=".build-") as tmp:
            src = Path(tmp) / f"{stem}.cpp"
            src.write_text(source_text)
            tmp_so = Path(tmp) / f"{stem}.so"
            if units is None:
                cmds = [[cxx, *flags, *link_flags, str(src), "-o", str(tmp_so)]]
            else:
                objs = [str(Path(tmp) / f"{stem}.{i}.o") for i in range(len(units))]
                cmds = [[cxx, *flags, *u, "-c", str(src), "-o", o] for u, o in zip(units, objs)]
                cmds.append([cxx, *link_flags, *objs, "-o", str(tmp_so)])
            for cmd in cmds:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if res.returncode != 0:
                    raise RuntimeError(f"compiling the neuroq CPU kernels failed: {' '.join(cmd)}\n"
                                       f"{res.stderr[-2000:]}")
            os.replace(tmp_so, out)  # atomic on POSIX: readers see no file or the whole file
    return out


class _FileLock:
    """Exclusive ``fcntl`` lock on a file (a no-op where fcntl does not exist)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


_LIBS: dict = {}
_FAILED: dict = {}
_LOAD_LOCK = threading.Lock()


def compile_flags(dtype: torch.dtype, arch: bool = True, openmp: bool = True) -> tuple:
    """Compiler flags for storage ``dtype``; without ``openmp`` the kernels run on one thread and keep
    their SIMD loops (``-fopenmp-simd``), for compilers without an OpenMP runtime (Apple clang)."""
    base = BASE_FLAGS if openmp else tuple("-fopenmp-simd" if f == "-fopenmp" else f for f in BASE_FLAGS)
    return base + (ARCH_FLAGS if arch else ()) + (f"-DNQ_STORAGE={require_storage(dtype)}",)


def library(dtype: torch.dtype = torch.float32) -> ctypes.CDLL:
    """The loaded kernel library for storage ``dtype`` (built on first use; ``RuntimeError`` if the
    build fails, with the compiler's message)."""
    lib = _LIBS.get(dtype)
    if lib is not None:
        return lib
    with _LOAD_LOCK:
        if dtype in _LIBS:
            return _LIBS[dtype]
        if dtype in _FAILED:
            raise RuntimeError(_FAILED[dtype])
        text = kernel_source(SOURCE)
        stem = f"neuroq_cpu_{require_storage(dtype)}"
        try:
            path, errors = None, []
            for arch, omp in ((True, True), (False, True), (False, False)):  # -march=native, OpenMP: optional
                try:
                    path = build(text, compile_flags(dtype, arch, omp), stem, units=UNITS,
                                 link_flags=LINK_FLAGS if omp else ("-shared",))
                    break
                except RuntimeError as e:
                    errors.append(str(e))
                    if "no C++ compiler" in str(e):
                        break
            if path is None:
                raise RuntimeError(errors[0])
            lib = ctypes.CDLL(str(path))
            _declare(lib)
            _check_abi(lib, dtype)
        except Exception as e:
            _FAILED[dtype] = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RuntimeError(_FAILED[dtype]) from e
        _LIBS[dtype] = lib
        return lib


def _declare(lib) -> None:
    P, LL, I, F = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_float
    lib.nq_cpu_abi.argtypes = [P]
    lib.nq_cpu_if_forward.argtypes = [P, P, P, P, P, P, P, P, F, LL, I, I]
    lib.nq_cpu_if_backward.argtypes = [P, P, P, P, P, P, P, P, P, LL, I, I]
    lib.nq_cpu_saf_forward.argtypes = [P, P, P, P, P, LL, I, I]
    lib.nq_cpu_saf_backward.argtypes = [P, P, P, P, P, P, P, P, LL, I, I]
    lib.nq_cpu_surrogate_backward.argtypes = [P, P, P, P, LL, I]
    lib.nq_cpu_advise_huge.argtypes = [P, LL]
    for name in _ENTRY_POINTS:
        getattr(lib, name).restype = None
    lib.nq_cpu_advise_huge.restype = I


def _check_abi(lib, dtype) -> None:
    out = (ctypes.c_int * 5)()
    lib.nq_cpu_abi(out)
    want = (ctypes.sizeof(NQNeuron), ctypes.sizeof(NQSurrogate), ctypes.sizeof(NQSAF),
            torch.tensor([], dtype=dtype).element_size())
    if tuple(out[:4]) != want:
        raise RuntimeError(f"neuroq CPU kernel ABI mismatch: C sizes {tuple(out[:4])}, Python {want}")


def status() -> tuple[bool, str]:
    """(usable, reason) of the fp32 CPU kernels, building them if needed (once per process)."""
    try:
        library(torch.float32)
    except RuntimeError as e:
        return False, str(e)
    return True, "ok"


# ---- launch ------------------------------------------------------------------------------------
def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else t.data_ptr()


def _empty(like: torch.Tensor, lib) -> torch.Tensor:
    """``torch.empty_like`` for a kernel output; a large one is advised to use huge pages before
    the kernel first touches it (a fresh 4 KiB-paged 64 MiB buffer costs more page faults than
    the kernel's own work)."""
    out = torch.empty_like(like, memory_format=torch.contiguous_format)
    nbytes = out.numel() * out.element_size()
    if nbytes >= HUGE_PAGE_MIN_BYTES:
        lib.nq_cpu_advise_huge(out.data_ptr(), nbytes)
    return out


def _recip(params) -> bool:
    """CPU torch divides by tau; multiplying instead is bit-identical only for a power-of-two tau."""
    tau = getattr(params, "tau", None)
    return tau is not None and exact_reciprocal(tau)


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _flat(x_seq: torch.Tensor, v0: torch.Tensor):
    shape = x_seq.shape
    T, N = shape[0], math.prod(shape[1:])
    if tuple(v0.shape) != tuple(shape[1:]):
        v0 = v0.expand(shape[1:])
    x2 = x_seq.contiguous().reshape(T, N)
    v2 = v0.to(dtype=x_seq.dtype).contiguous().reshape(N)
    return shape, T, N, x2, v2


def _grad(g: Optional[torch.Tensor], shape, dtype) -> Optional[torch.Tensor]:
    return None if g is None else g.to(dtype).contiguous().reshape(shape)


class _Consts:
    """Kernel constants of one call (ctypes structs are built once and kept by the autograd ctx)."""

    __slots__ = ("neuron", "sg", "store_v_seq", "trace_decay", "state_shape")

    def __init__(self, neuron, sg, store_v_seq=False, trace_decay=0.0, state_shape=()):
        self.neuron, self.sg, self.store_v_seq, self.trace_decay = neuron, sg, store_v_seq, trace_decay
        self.state_shape = tuple(state_shape)


def _if_forward(lib, x2, v2, c: _Consts, trace0: Optional[torch.Tensor]):
    T, N = x2.shape
    spike = _empty(x2, lib)
    v_last = torch.empty(c.state_shape, dtype=v2.dtype)  # not a view: SpikingJelly detach_()es states
    v_seq = _empty(x2, lib) if c.store_v_seq else None
    tr_last = torch.empty(c.state_shape, dtype=v2.dtype) if trace0 is not None else None
    lib.nq_cpu_if_forward(ctypes.byref(c.neuron), _ptr(x2), _ptr(v2), _ptr(spike), _ptr(v_seq), _ptr(v_last),
                          _ptr(trace0), _ptr(tr_last), c.trace_decay, N, T, _threads())
    return spike, v_last, v_seq, tr_last


class IFFamilyCPU(torch.autograd.Function):
    """``(x [T,N], v0 [N], trace0 [N] | None) -> (spike, v_last, v_seq | None, trace_last | None)``;
    saves only its inputs (backward recomputes the forward per block)."""

    @staticmethod
    def forward(ctx, x2, v2, trace0, c):
        ctx.set_materialize_grads(False)
        lib = library(x2.dtype)
        spike, v_last, v_seq, tr_last = _if_forward(lib, x2, v2, c, trace0)
        ctx.save_for_backward(x2, v2)
        ctx.c = c
        if tr_last is not None:
            ctx.mark_non_differentiable(tr_last)
        return spike, v_last, v_seq, tr_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spike, g_v_last, g_v_seq, _g_trace):
        x2, v2 = ctx.saved_tensors
        T, N = x2.shape
        dtype = x2.dtype
        gs = _grad(g_spike, (T, N), dtype)
        if gs is None:
            gs = torch.zeros_like(x2)
        gvs = _grad(g_v_seq, (T, N), dtype)
        gvl = _grad(g_v_last, (N,), dtype)
        lib = library(dtype)
        g_x = _empty(x2, lib)
        g_v0 = torch.empty_like(v2) if ctx.needs_input_grad[1] else None
        lib.nq_cpu_if_backward(ctypes.byref(ctx.c.neuron), ctypes.byref(ctx.c.sg), _ptr(x2), _ptr(v2),
                                          _ptr(gs), _ptr(gvs), _ptr(gvl), _ptr(g_x), _ptr(g_v0), N, T, _threads())
        return g_x, g_v0, None, None


def if_family_cpu(x_seq: torch.Tensor, v0: torch.Tensor, params, surrogate_function, store_v_seq: bool = False,
                  trace=None) -> KernelOut:
    """CPU launcher of the IF/LIF family (``params``: an :class:`~neuroq.functional.IFParameters` or
    :class:`~neuroq.functional.LIFParameters`): ``x_seq [T, ...]``, ``v0 [...]`` ->
    :class:`~neuroq.ops.KernelOut` ``(spike_seq, v_last, v_seq | None, trace_last | None)``.

    ``trace``: ``(trace0 [...] | None, decay)`` to also run OTTT's presynaptic trace
    :math:`\\hat a[t] = \\lambda\\hat a[t-1] + S[t]` (no gradient).  Raises :class:`~neuroq.ops.Unsupported`
    for a dtype other than fp32/fp16/bf16 or a surrogate without a device version."""
    if x_seq.device.type != "cpu":
        raise Unsupported(f"the CPU kernels need CPU tensors, got {x_seq.device}")
    require_storage(x_seq.dtype)
    sg = require_surrogate(surrogate_function)
    shape, T, N, x2, v2 = _flat(x_seq, v0)
    c = _Consts(_fill(NQNeuron, neuron_constants(params, recip_div=_recip(params))), _fill(NQSurrogate, sg),
                bool(store_v_seq), state_shape=shape[1:])
    tr0 = None
    if trace is not None:
        t0, decay = trace
        c.trace_decay = float(decay)  # rounded to fp32 by ctypes, as torch rounds the scalar
        tr0 = torch.zeros_like(v2) if t0 is None else t0.detach().to(x_seq.dtype).contiguous().reshape(N)
    if torch.is_grad_enabled() and (x2.requires_grad or v2.requires_grad):
        spike, v_last, v_seq, tr = IFFamilyCPU.apply(x2, v2, tr0, c)
    else:
        spike, v_last, v_seq, tr = _if_forward(library(x2.dtype), x2, v2, c, tr0)
    return KernelOut(spike.reshape(shape), v_last, v_seq.reshape(shape) if v_seq is not None else None, tr)


def _saf_forward(lib, u2, a2, c: _Consts):
    T, N = u2.shape
    a_seq = _empty(u2, lib)
    a_last = torch.empty(c.state_shape, dtype=a2.dtype)
    lib.nq_cpu_saf_forward(ctypes.byref(c.neuron), _ptr(u2), _ptr(a2), _ptr(a_seq), _ptr(a_last), N, T, _threads())
    return a_seq, a_last


class SAFCPU(torch.autograd.Function):
    """``(u_hat [T,N], a0 [N]) -> (a_seq, a_last)``; saves only its inputs."""

    @staticmethod
    def forward(ctx, u2, a2, c):
        ctx.set_materialize_grads(False)
        a_seq, a_last = _saf_forward(library(u2.dtype), u2, a2, c)
        ctx.save_for_backward(u2, a2)
        ctx.c = c
        return a_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_a_seq, g_a_last):
        u2, a2 = ctx.saved_tensors
        T, N = u2.shape
        dtype = u2.dtype
        ga = _grad(g_a_seq, (T, N), dtype)
        if ga is None:
            ga = torch.zeros_like(u2)
        gl = _grad(g_a_last, (N,), dtype)
        lib = library(dtype)
        g_u = _empty(u2, lib)
        want_a0 = ctx.needs_input_grad[1] and not ctx.c.neuron.detach_state
        g_a0 = torch.empty_like(a2) if want_a0 else None
        lib.nq_cpu_saf_backward(ctypes.byref(ctx.c.neuron), ctypes.byref(ctx.c.sg), _ptr(u2), _ptr(a2),
                                           _ptr(ga), _ptr(gl), _ptr(g_u), _ptr(g_a0), N, T, _threads())
        return g_u, g_a0, None


def saf_cpu(u_hat_seq: torch.Tensor, a0: torch.Tensor, params, surrogate_function,
            store_v_seq: bool = False) -> KernelOut:
    """CPU launcher of the SAF neuron (``params``: :class:`~neuroq.functional.SAFParameters`):
    ``-> KernelOut(a_seq, a_last, a_seq | None)`` equal to :func:`neuroq.functional.saf.saf_multi_step`."""
    if u_hat_seq.device.type != "cpu":
        raise Unsupported(f"the CPU kernels need CPU tensors, got {u_hat_seq.device}")
    require_storage(u_hat_seq.dtype)
    consts = saf_constants(params, recip_div=_recip(params))  # Unsupported for sr_box
    sg = require_surrogate(surrogate_function)
    shape, T, N, u2, a2 = _flat(u_hat_seq, a0)
    c = _Consts(_fill(NQSAF, consts), _fill(NQSurrogate, sg), state_shape=shape[1:])
    if torch.is_grad_enabled() and (u2.requires_grad or (a2.requires_grad and not params.detach_state)):
        if params.detach_state:
            a2 = a2.detach()
        a_seq, a_last = SAFCPU.apply(u2, a2, c)
    else:
        a_seq, a_last = _saf_forward(library(u2.dtype), u2, a2.detach() if params.detach_state else a2, c)
    a_seq = a_seq.reshape(shape)
    return KernelOut(a_seq, a_last, a_seq if store_v_seq else None)


def surrogate_backward_cpu(x: torch.Tensor, grad: torch.Tensor, sg: tuple) -> Optional[torch.Tensor]:
    """``grad * sg'(x)`` in one fused pass (``x`` a CPU tensor of a storage dtype, ``sg`` the
    surrogate constants of :mod:`neuroq.ops.params`), or ``None`` when there is no kernel for it."""
    if sg is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return None
    try:
        lib = library(x.dtype)
    except RuntimeError:
        return None
    xc = x.contiguous()
    gc = grad.to(x.dtype).expand_as(x).contiguous()
    out = _empty(xc, lib)
    lib.nq_cpu_surrogate_backward(ctypes.byref(_fill(NQSurrogate, sg)), _ptr(xc), _ptr(gc), _ptr(out),
                                  xc.numel(), _threads())
    return out


register("cpu", "if", if_family_cpu)
register("cpu", "lif", if_family_cpu)
register("cpu", "saf", saf_cpu)
