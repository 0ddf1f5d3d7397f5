"""Backend selection for multi-step neurons.

* ``'torch'`` -- the reference (:mod:`neuroq.functional`), any device, any dtype;
* ``'cpu'``   -- the fused C++ kernels (:mod:`neuroq.ops.cpu`) for CPU tensors, built on first use
  by the C++ compiler and cached (:mod:`neuroq.ops.build`);
* ``'cupy'``  -- the fused CUDA kernels (:mod:`neuroq.ops.cuda`) for CUDA tensors, through CuPy;
* ``'auto'``  -- the fused kernel for the tensor's device when it is available, else ``'torch'``
  (without a C++ compiler: once, a one-line notice).

Asking for an unavailable backend raises an error that says how to get it.

Example::

    >>> import torch
    >>> from neuroq.ops.dispatch import resolve
    >>> resolve("torch", torch.zeros(2, 3), "lif")
    'torch'
"""
from __future__ import annotations

import functools
import os
import warnings

from . import has_kernel

BACKENDS = ("auto", "torch", "cpu", "cupy")

CUPY_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install neuroq[cuda12]` "
    "(cupy-cuda12x) or `pip install neuroq[cuda13]` (cupy-cuda13x)"
)
CPU_INSTALL_HINT = (
    "install a C++ compiler with OpenMP (e.g. `apt install g++`, or set CXX=/path/to/compiler); "
    "NEUROQ_CPU_KERNELS=0 turns the CPU kernels off"
)


@functools.lru_cache(maxsize=1)
def cupy_status() -> tuple[bool, str]:
    """(usable, reason): whether CuPy imports and sees a CUDA device."""
    try:
        import cupy  # noqa: F401
    except Exception as e:  # ImportError, or a broken CUDA install
        return False, f"CuPy could not be imported ({type(e).__name__}: {e}); {CUPY_INSTALL_HINT}"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return False, f"CuPy is installed but found no usable CUDA device ({e})"
    if n < 1:
        return False, "CuPy is installed but found no CUDA device"
    return True, "ok"


def cpu_status() -> tuple[bool, str]:
    """(usable, reason): whether the fused CPU kernels are built (building them on first call)."""
    if os.environ.get("NEUROQ_CPU_KERNELS", "1").strip().lower() in ("0", "false", "no", "off"):
        return False, "the CPU kernels are turned off (NEUROQ_CPU_KERNELS=0)"
    from .build import cpu_status

    return cpu_status()


_NOTICED: set = set()


def _notice_once(key: str, message: str) -> None:
    if key not in _NOTICED:
        _NOTICED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve(backend: str, x, family: str | None = None) -> str:
    """Return the backend that will actually run for tensor ``x`` and kernel ``family``.

    ``'cpu'`` / ``'cupy'`` for a tensor on the other device, without a compiler / CuPy, or for a
    family with no kernel raise a clear error; ``'auto'`` falls back to ``'torch'`` in those cases.
    """
    if backend == "torch":
        return "torch"
    if backend == "auto":
        if getattr(x, "is_cuda", False):
            if has_kernel("cupy", family) and cupy_status()[0]:
                return "cupy"
            return "torch"
        if getattr(x, "device", None) is not None and x.device.type == "cpu" and has_kernel("cpu", family):
            ok, why = cpu_status()
            if ok:
                return "cpu"
            if "NEUROQ_CPU_KERNELS=0" not in why:
                _notice_once("cpu", f"neuroq: fused CPU kernels unavailable ({why}); running the torch reference")
        return "torch"
    if backend == "cpu":
        if getattr(x, "device", None) is None or x.device.type != "cpu":
            raise RuntimeError(
                f"backend='cpu' needs a CPU tensor, got one on {getattr(x, 'device', '?')}; use backend='cupy' "
                "for CUDA tensors, or 'auto' / 'torch'")
        if not has_kernel("cpu", family):
            raise RuntimeError(f"backend='cpu': neuroq has no CPU kernel for {family!r} neurons; use 'torch'")
        ok, why = cpu_status()
        if not ok:
            raise RuntimeError(f"backend='cpu' is not available: {why}; {CPU_INSTALL_HINT}")
        return "cpu"
    if backend == "cupy":
        if not getattr(x, "is_cuda", False):
            raise RuntimeError(
                f"backend='cupy' needs a CUDA tensor, got one on {x.device}; move the model and "
                "data to the GPU (.cuda()) or use backend='cpu' / 'torch' / 'auto'"
            )
        ok, why = cupy_status()
        if not ok:
            raise RuntimeError(f"backend='cupy' is not available: {why}")
        if not has_kernel("cupy", family):
            raise RuntimeError(f"backend='cupy': neuroq has no CuPy kernel for {family!r} neurons; use 'torch'")
        return "cupy"
    raise ValueError(f"backend must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}")


def surrogate_backward(x, grad, consts: tuple):
    """``grad * sg'(x)`` by the fused kernel of ``x``'s device (``consts``: surrogate constants of
    :mod:`neuroq.ops.params`), or ``None`` when no kernel is available (the caller uses torch)."""
    if x.device.type == "cpu":
        if not cpu_status()[0]:
            return None
        from . import cpu

        return cpu.surrogate_backward_cpu(x, grad, consts)
    if x.is_cuda and cupy_status()[0]:
        from . import cuda

        return cuda.surrogate_backward_cuda(x, grad, consts)
    return None
