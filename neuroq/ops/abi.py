"""The C interface of the kernels as Python sees it: the parameter structs and the CPU library's
entry points.

The structs are defined once, by the field lists of ``kernels.cuh`` (``NQ_NEURON_FIELDS`` etc.:
``X(type, name)`` per field).  The C structs, the CUDA kernels' argument lists
(``entry_points.cuh``) and the ctypes structures here are all made from those lists; the field
names must equal the order in which :mod:`neuroq.ops.params` builds the constants (checked on
import).  :data:`CPU_ENTRY_POINTS` is the signature of every ``extern "C"`` function of
``neuron_kernels_cpu.cpp``; :func:`check_abi` compares the library's struct sizes with these.
"""
from __future__ import annotations

import ctypes
import re

import torch

from . import KERNEL_DIR
from .params import NEURON_FIELDS, SAF_FIELDS, SURROGATE_FIELDS

_CTYPES = {"int": ctypes.c_int, "float": ctypes.c_float}


def struct_fields(macro: str) -> tuple:
    """``((c_type, name), ...)`` of field list ``macro`` (e.g. ``"NQ_NEURON_FIELDS"``) in ``kernels.cuh``."""
    text = (KERNEL_DIR / "kernels.cuh").read_text()
    m = re.search(r"^#define " + macro + r"\(X\)((?:.*\\\n)*.*)$", text, re.M)
    if m is None:
        raise RuntimeError(f"kernels.cuh defines no field list {macro}")
    body = re.sub(r"/\*.*?\*/", "", m.group(1))
    return tuple(re.findall(r"X\((int|float), (\w+)\)", body))


def _struct(name: str, macro: str, python_order: tuple):
    fields = struct_fields(macro)
    if tuple(f for _, f in fields) != tuple(python_order):
        raise RuntimeError(f"{macro} in kernels.cuh lists {[f for _, f in fields]}, but neuroq.ops.params "
                           f"builds {list(python_order)}")
    return type(name, (ctypes.Structure,), {"_fields_": [(f, _CTYPES[t]) for t, f in fields]})


NQNeuron = _struct("NQNeuron", "NQ_NEURON_FIELDS", NEURON_FIELDS)
NQSurrogate = _struct("NQSurrogate", "NQ_SURROGATE_FIELDS", SURROGATE_FIELDS)
NQSAF = _struct("NQSAF", "NQ_SAF_FIELDS", SAF_FIELDS)


def fill(struct_type, values) -> ctypes.Structure:
    """A ctypes struct from the constants of :mod:`neuroq.ops.params` (numpy scalars, in field order)."""
    return struct_type(*[v.item() for v in values])


_P, _LL, _I, _F = ctypes.c_void_p, ctypes.c_longlong, ctypes.c_int, ctypes.c_float
#: ``name -> (argtypes, restype)`` of the CPU library (struct arguments by pointer, tensors by data_ptr)
CPU_ENTRY_POINTS = {
    "nq_cpu_abi": ([_P], None),
    "nq_cpu_if_forward": ([_P, _P, _P, _P, _P, _P, _P, _P, _F, _LL, _I, _I], None),
    "nq_cpu_if_backward": ([_P, _P, _P, _P, _P, _P, _P, _P, _P, _LL, _I, _I], None),
    "nq_cpu_saf_forward": ([_P, _P, _P, _P, _P, _LL, _I, _I], None),
    "nq_cpu_saf_backward": ([_P, _P, _P, _P, _P, _P, _P, _P, _LL, _I, _I], None),
    "nq_cpu_surrogate_backward": ([_P, _P, _P, _P, _LL, _I], None),
    "nq_cpu_advise_huge": ([_P, _LL], _I),
}


#: ``name -> (argtypes, restype)`` of a generated kernel's CPU library (``step_kernels_cpu.cpp``): the
#: constants and surrogates by pointer, per-state tensors as arrays of pointers
STEP_ENTRY_POINTS = {
    "nq_step_abi": ([_P], None),
    "nq_step_forward": ([_P, _P, _P, _P, _P, _P, _LL, _I, _I], None),
    "nq_step_backward": ([_P, _P, _P, _P, _P, _P, _P, _P, _P, _LL, _I, _I], None),
}


def declare_step(lib: ctypes.CDLL) -> None:
    """Set the argument and result types of a generated kernel library's entry points."""
    for name, (argtypes, restype) in STEP_ENTRY_POINTS.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype


def check_step_abi(lib: ctypes.CDLL, dtype: torch.dtype) -> None:
    """``RuntimeError`` unless a generated library's storage and surrogate struct sizes are the ones ctypes
    uses."""
    out = (ctypes.c_int * 5)()
    lib.nq_step_abi(out)
    want = (torch.tensor([], dtype=dtype).element_size(), ctypes.sizeof(NQSurrogate))
    if (out[3], out[4]) != want:
        raise RuntimeError(f"neuroq generated kernel ABI mismatch: C sizes {(out[3], out[4])}, Python {want}")


def declare(lib: ctypes.CDLL) -> None:
    """Set the argument and result types of the CPU library's entry points."""
    for name, (argtypes, restype) in CPU_ENTRY_POINTS.items():
        fn = getattr(lib, name)
        fn.argtypes = argtypes
        fn.restype = restype


def check_abi(lib: ctypes.CDLL, dtype: torch.dtype) -> None:
    """``RuntimeError`` unless the library's struct and storage sizes are the ones ctypes uses."""
    out = (ctypes.c_int * 5)()
    lib.nq_cpu_abi(out)
    want = (ctypes.sizeof(NQNeuron), ctypes.sizeof(NQSurrogate), ctypes.sizeof(NQSAF),
            torch.tensor([], dtype=dtype).element_size())
    if tuple(out[:4]) != want:
        raise RuntimeError(f"neuroq CPU kernel ABI mismatch: C sizes {tuple(out[:4])}, Python {want}")
