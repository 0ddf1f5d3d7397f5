r"""Building the kernels: the C++ compiler, the on-disk cache and its locks for the CPU library, and
the CuPy compile cache for the CUDA kernels.

**CPU** (:func:`cpu_library`).  ``neuron_kernels_cpu.cpp`` + ``kernels.cuh`` (beside this file, the
same per-neuron math the CUDA kernels run) are compiled once per storage dtype by the system C++
compiler with

    -O3 -std=c++17 -fPIC -fopenmp -march=native [-mprefer-vector-width=512] -DNQ_STORAGE=<type>
      -DNQ_PART=1 -ffp-contract=off    (forward, the backward's recompute: bit-exact)
      -DNQ_PART=2 -ffp-contract=fast   (the reverse-time gradient loops: FMA allowed)

into ``$NEUROQ_CACHE_DIR`` (default ``$XDG_CACHE_HOME/neuroq/ops`` or ``~/.cache/neuroq/ops``), under
a name keyed by a hash of the inlined source, the flags, the compiler's version and the CPU
(``-march=native``).  The build writes to a temporary file and renames it (atomic), under a
process lock and a lock file, so threads and processes may race safely.  ``-march=native`` and
OpenMP are optional: without them the build is retried.  Without a compiler :func:`cpu_status`
says why and ``backend='auto'`` runs the torch reference after a one-line notice.

**Generated kernels** (:func:`step_library`, :func:`cuda_step_function`).  The source emitted from a
neuron's step (:mod:`neuroq.ops.generated`) is compiled the same way: on the CPU the same two translation
units (the forward and the backward's recompute exact, the reverse-time loop with FMA), into the same cache (name
``neuroq_step_<storage>-<hash>.so``; the hash covers the source, so neurons of one structure share a
library); on CUDA through ``cupy.RawModule`` with the options of the hand-written kernels.

**CUDA** (:func:`cuda_function`).  ``neuron_kernels.cu``, with the files it includes inlined (so
CuPy's cache key, a hash of the text, sees every header), is compiled by ``cupy.RawModule`` (NVRTC) once
per (dtype, options) with :func:`compile_options`; CuPy keeps its own on-disk cache.  Importing
this module needs neither a compiler nor CuPy.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch

from . import kernel_source
from .params import STORAGE_TYPES, require_storage

# ---- the C++ compiler, cache and locks -------------------------------------------------------


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


def shared_library(source_text: str, flags: tuple, stem: str, cxx: Optional[str] = None,
                   directory: Optional[Path] = None, units: Optional[tuple] = None,
                   link_flags: tuple = ("-shared",)) -> Path:
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


# ---- the CPU kernel library ------------------------------------------------------------------
#: the CPU source (beside this file; its ``#include "..."`` are inlined before compiling)
CPU_SOURCE = "neuron_kernels_cpu.cpp"
BASE_FLAGS = ("-O3", "-std=c++17", "-fPIC", "-fopenmp")
#: ``-march=native``; on x86-64 also 512-bit vectors where the CPU has AVX-512 (GCC and clang default to
#: 256 bits there): on the development CPU (an AVX-512 Xeon VM) the hand-written and the generated kernels
#: were faster with it in every A/B, both directions, 1 and 2 threads; a CPU without AVX-512 ignores it
ARCH_FLAGS = ("-march=native",) + (("-mprefer-vector-width=512",) if platform.machine().lower() in ("x86_64", "amd64")
                                   else ())
#: the two translation units of CPU_SOURCE: exact forward/recompute, and the gradient loops with FMA
UNITS = (("-DNQ_PART=1", "-ffp-contract=off"), ("-DNQ_PART=2", "-ffp-contract=fast"))
LINK_FLAGS = ("-shared", "-fopenmp")

_LIBS: dict = {}
_FAILED: dict = {}
_LOAD_LOCK = threading.Lock()


def compile_flags(dtype: torch.dtype, arch: bool = True, openmp: bool = True) -> tuple:
    """Compiler flags for storage ``dtype``; without ``openmp`` the kernels run on one thread and keep
    their SIMD loops (``-fopenmp-simd``), for compilers without an OpenMP runtime (Apple clang)."""
    base = BASE_FLAGS if openmp else tuple("-fopenmp-simd" if f == "-fopenmp" else f for f in BASE_FLAGS)
    return base + (ARCH_FLAGS if arch else ()) + (f"-DNQ_STORAGE={require_storage(dtype)}",)


def cpu_library(dtype: torch.dtype = torch.float32) -> ctypes.CDLL:
    """The loaded CPU kernel library for storage ``dtype``: built on first use (or found in the
    cache), declared and ABI-checked (:mod:`neuroq.ops.abi`); ``RuntimeError`` if the build fails,
    with the compiler's message (remembered: one try per process)."""
    lib = _LIBS.get(dtype)
    if lib is not None:
        return lib
    with _LOAD_LOCK:
        if dtype in _LIBS:
            return _LIBS[dtype]
        if dtype in _FAILED:
            raise RuntimeError(_FAILED[dtype])
        text = kernel_source(CPU_SOURCE)
        stem = f"neuroq_cpu_{require_storage(dtype)}"
        try:
            from . import abi

            lib = ctypes.CDLL(str(_build_with_fallbacks(text, dtype, stem, units=UNITS)))
            abi.declare(lib)
            abi.check_abi(lib, dtype)
        except Exception as e:
            _FAILED[dtype] = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RuntimeError(_FAILED[dtype]) from e
        _LIBS[dtype] = lib
        return lib


def _build_with_fallbacks(text: str, dtype: torch.dtype, stem: str, extra: tuple = (), **kw) -> Path:
    """:func:`shared_library` of ``text`` with ``-march=native`` and OpenMP, dropping them in that order when
    the compiler refuses (both optional); ``RuntimeError`` with the first error when no build works."""
    errors = []
    for arch, omp in ((True, True), (False, True), (False, False)):
        try:
            return shared_library(text, compile_flags(dtype, arch, omp) + tuple(extra), stem,
                                  link_flags=LINK_FLAGS if omp else ("-shared",), **kw)
        except RuntimeError as e:
            errors.append(str(e))
            if "no C++ compiler" in str(e):
                break
    raise RuntimeError(errors[0])


#: flags added to every unit of the generated kernels (none; tests force loop shapes through it).  Their units
#: are the hand-written kernels' UNITS: the forward and the backward's recompute exact, the reverse loop with
#: FMA (step_kernels_cpu.cpp)
STEP_EXTRA_FLAGS: tuple = ()
_STEP_LIBS: dict = {}
_STEP_FAILED: dict = {}


def step_library(text: str, dtype: torch.dtype = torch.float32) -> ctypes.CDLL:
    """The loaded library of a generated kernel's CPU source ``text`` (``#include`` lines not yet inlined)
    for storage ``dtype``: built on first use (or found in the on-disk cache), declared and checked
    (:mod:`neuroq.ops.abi`); ``RuntimeError`` with the compiler's message if the build fails (remembered:
    one try per source and process)."""
    key = (text, dtype)
    lib = _STEP_LIBS.get(key)
    if lib is not None:
        return lib
    with _LOAD_LOCK:
        if key in _STEP_LIBS:
            return _STEP_LIBS[key]
        if key in _STEP_FAILED:
            raise RuntimeError(_STEP_FAILED[key])
        from . import abi, expand_includes

        full = expand_includes(text)
        stem = f"neuroq_step_{require_storage(dtype)}"
        try:
            lib = ctypes.CDLL(str(_build_with_fallbacks(full, dtype, stem, extra=STEP_EXTRA_FLAGS, units=UNITS)))
            abi.declare_step(lib)
            abi.check_step_abi(lib, dtype)
        except Exception as e:
            _STEP_FAILED[key] = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise RuntimeError(_STEP_FAILED[key]) from e
        _STEP_LIBS[key] = lib
        return lib


def cpu_status() -> tuple[bool, str]:
    """(usable, reason) of the fp32 CPU kernels, building them if needed (once per process)."""
    try:
        cpu_library(torch.float32)
    except RuntimeError as e:
        return False, str(e)
    return True, "ok"


# ---- the CUDA kernels (CuPy) -----------------------------------------------------------------
#: every CUDA source neuroq compiles (checked by tests/ops/test_cuda_kernels.py with nvcc and NVRTC)
KERNEL_SOURCES = ("neuron_kernels.cu",)
CUDA_SOURCE = KERNEL_SOURCES[0]
#: neurons per thread (registers in flight per thread: 2 * ILP loads with the prefetch)
ILP = 4
#: options every kernel is compiled with (FMA contraction off: bit-exact with torch).  CuPy itself
#: appends ``-ftz=true`` and ``--device-as-default-execution-space`` (see CUPY_ADDED_OPTIONS).
BASE_OPTIONS = ("--fmad=false", f"-DNQ_ILP={ILP}")
#: what ``cupy.RawModule`` adds to every NVRTC compile (CuPy 13/14); ``-ftz=true`` flushes fp32
#: subnormals (``|x| < 1.18e-38``) to zero, which torch's CUDA kernels do not do -- the only place the
#: kernels can differ from the torch reference in the forward pass
CUPY_ADDED_OPTIONS = ("--device-as-default-execution-space", "-ftz=true")

_MODULES: dict = {}    # (dtype, options) -> cupy.RawModule
_FUNCTIONS: dict = {}  # (dtype, options, device index, name) -> kernel


def compile_options(dtype: torch.dtype) -> tuple:
    """NVRTC options for storage ``dtype`` (the second half of the compile-cache key)."""
    if dtype not in STORAGE_TYPES:
        raise TypeError(f"CuPy kernels store fp32, fp16 or bf16, got {dtype}")
    return BASE_OPTIONS + (f"-DNQ_STORAGE={STORAGE_TYPES[dtype]}",)


def cuda_step_function(text: str, name: str, dtype: torch.dtype, device_index: int):
    """Kernel ``name`` of a generated kernel's CUDA source ``text`` (its includes are inlined here) for
    storage ``dtype`` on device ``device_index``, compiled once per (source, dtype) and cached."""
    import cupy

    options = compile_options(dtype)
    key = (text, dtype, options, device_index, name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        mod = _MODULES.get((text, dtype, options))
        if mod is None:
            from . import expand_includes

            mod = cupy.RawModule(code=expand_includes(text), options=options)
            _MODULES[(text, dtype, options)] = mod
        with cupy.cuda.Device(device_index):
            fn = mod.get_function(name)
        _FUNCTIONS[key] = fn
    return fn


def cuda_function(name: str, dtype: torch.dtype, device_index: int):
    """Kernel ``name`` of :data:`CUDA_SOURCE` for storage ``dtype`` on CUDA device ``device_index``
    (compiled on first use, then cached per process)."""
    import cupy

    options = compile_options(dtype)
    key = (dtype, options, device_index, name)
    fn = _FUNCTIONS.get(key)
    if fn is None:
        mod = _MODULES.get((dtype, options))
        if mod is None:
            mod = cupy.RawModule(code=kernel_source(CUDA_SOURCE), options=options)
            _MODULES[(dtype, options)] = mod
        with cupy.cuda.Device(device_index):
            fn = mod.get_function(name)
        _FUNCTIONS[key] = fn
    return fn
