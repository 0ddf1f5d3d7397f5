r"""Kernel constants from the parameter records of :mod:`neuroq.functional` (one place for the CPU
and the CUDA launchers).  Every constant is rounded to fp32 exactly as torch rounds the Python
scalar of the reference expression, which is what makes the kernels' forward bit-identical.

Division by :math:`\tau`: torch on CPU divides (``a / tau``, true fp32 division); torch on CUDA
multiplies by the reciprocal (ATen's ``div_true_kernel_cuda`` with a CPU-scalar divisor computes
``a * (1.0f / float(tau))``).  ``recip_div`` chooses between the two; :func:`torch_reciprocal`
computes that reciprocal on the host (no device sync, safe inside CUDA-graph capture).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from ..functional.neuron import IFParameters, LIFParameters
from ..functional.saf import SAFParameters
from . import Unsupported

#: storage dtype -> the C type the kernels see
STORAGE_TYPES = {torch.float32: "float", torch.float16: "nq_f16", torch.bfloat16: "nq_bf16"}

# charge modes and surrogate kinds (must match kernels.cuh)
CHARGE_IF, CHARGE_LIF_DI0, CHARGE_LIF_DI, CHARGE_LIF_NODI0, CHARGE_LIF_NODI = range(5)
SG_SIGMOID, SG_ATAN, SG_PIECEWISE_QUADRATIC, SG_RECT, SG_S2NN = range(1, 6)

#: field order of the C structs (kernels.cuh) -- also the CUDA kernels' argument order
NEURON_FIELDS = ("charge", "hard_reset", "detach_reset", "recip_div", "tau", "inv_tau", "decay", "dh_dx",
                 "dh_dv", "v_th", "v_reset")
SURROGATE_FIELDS = ("kind", "inner", "t_ref", "a0", "a1", "a2", "vth")
SAF_FIELDS = ("decay_input", "detach_state", "recip_div", "tau", "inv_tau", "lam", "dd_du", "v_th")


def torch_reciprocal(tau: float) -> np.float32:
    """The fp32 reciprocal torch multiplies by when it divides a CUDA tensor by the Python scalar
    ``tau``: ``1.0f / float(tau)`` (computed here, on the host; ``benchmarks/gpu_check.py`` checks it
    against torch on the GPU)."""
    return np.float32(1.0) / np.float32(tau)


def exact_reciprocal(tau: float) -> bool:
    """Whether ``a * (1/tau) == a / tau`` for every fp32 ``a``: true exactly when ``float32(tau)`` is a
    power of two (its reciprocal is then exact).  The CPU kernels multiply in that case."""
    t = float(np.float32(tau))
    return t > 0 and math.frexp(t)[0] == 0.5


def family_of(p) -> str:
    """Kernel family of a record: ``'lif'``, ``'if'`` or ``'saf'``."""
    if isinstance(p, LIFParameters):
        return "lif"
    if isinstance(p, IFParameters):
        return "if"
    if isinstance(p, SAFParameters):
        return "saf"
    raise TypeError(f"no kernel family for parameter record {type(p).__name__}")


def neuron_constants(p: IFParameters, recip_div: bool) -> tuple:
    """Kernel arguments (:data:`NEURON_FIELDS`) of an IF/LIF record as numpy scalars."""
    f32, i32 = np.float32, np.int32
    hard = p.v_reset is not None
    vr = 0.0 if p.v_reset is None else float(p.v_reset)
    if isinstance(p, LIFParameters):
        tau = p.tau
        zero = vr == 0.0
        if p.decay_input:
            charge = CHARGE_LIF_DI0 if zero else CHARGE_LIF_DI
            dh_dx = 1.0 / tau
        else:
            charge = CHARGE_LIF_NODI0 if zero else CHARGE_LIF_NODI
            dh_dx = 1.0
        dh_dv = 1.0 - 1.0 / tau
    elif isinstance(p, IFParameters):
        tau, charge, dh_dx, dh_dv = 2.0, CHARGE_IF, 1.0, 1.0
    else:
        raise TypeError(f"expected IFParameters or LIFParameters, got {type(p).__name__}")
    return (i32(charge), i32(hard), i32(bool(p.detach_reset)), i32(bool(recip_div)), f32(tau),
            torch_reciprocal(tau), f32(1.0 - 1.0 / tau), f32(dh_dx), f32(dh_dv), f32(p.v_threshold), f32(vr))


def saf_constants(p: SAFParameters, recip_div: bool) -> tuple:
    r"""Kernel arguments (:data:`SAF_FIELDS`) of an SAF record (:mod:`neuroq.functional.saf`):

    .. math::
        D[t] = \hat U[t]\ (/\tau),\quad s[t] = \Theta\big(D[t] - V_{th}(\lambda\hat a[t-1] + 1)\big),
        \quad \hat a[t] = \lambda\hat a[t-1] + s[t],\quad \lambda = 1 - 1/\tau ."""
    if p.sr_box:
        raise Unsupported("SAF with sr_box=True has no kernel (its backward is the torch SR indicator)")
    f32, i32 = np.float32, np.int32
    return (i32(bool(p.decay_input)), i32(bool(p.detach_state)), i32(bool(recip_div)), f32(p.tau),
            torch_reciprocal(p.tau), f32(1.0 - 1.0 / p.tau), f32(1.0 / p.tau if p.decay_input else 1.0),
            f32(p.v_threshold))


def _basic_surrogate(kind: str, alpha: float):
    """(kind id, a0, a1, a2) of a per-step surrogate, constants as neuroq/SpikingJelly compute them."""
    f32 = np.float32
    if kind == "sigmoid":
        return SG_SIGMOID, f32(alpha), f32(0.0), f32(0.0)
    if kind == "atan":
        return SG_ATAN, f32(alpha / 2.0), f32(math.pi / 2.0 * alpha), f32(0.0)
    if kind == "piecewise_quadratic":
        return SG_PIECEWISE_QUADRATIC, f32(1.0 / alpha), f32(-(alpha ** 2)), f32(alpha)
    if kind == "rect":
        return SG_RECT, f32(0.5 / alpha), f32(0.0), f32(alpha)
    raise ValueError(kind)


def surrogate_constants(surrogate_function) -> Optional[tuple]:
    """Kernel arguments (:data:`SURROGATE_FIELDS`) of a surrogate with a device version, or ``None``.

    Matched by exact type (a subclass may change the gradient): SpikingJelly's ``Sigmoid``,
    ``ATan``, ``PiecewiseQuadratic``, ``Rect`` (2.0.0), and a surrogate with a ``kernel_constants()``
    method (neuroq's ``S2NN`` with a string ``per_step``), in spiking mode."""
    from spikingjelly.activation_based import surrogate as sjs

    sg = surrogate_function
    if not getattr(sg, "spiking", False):
        return None
    i32, f32 = np.int32, np.float32
    basic = {sjs.Sigmoid: "sigmoid", sjs.ATan: "atan", sjs.PiecewiseQuadratic: "piecewise_quadratic"}
    rect = getattr(sjs, "Rect", None)
    if rect is not None:
        basic[rect] = "rect"
    name = basic.get(type(sg))
    alpha = getattr(sg, "alpha", None)
    if name is not None:
        if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0 or not math.isfinite(alpha):
            return None
        kind, a0, a1, a2 = _basic_surrogate(name, float(alpha))
        return (i32(kind), i32(0), i32(0), a0, a1, a2, f32(0.0))
    own = getattr(sg, "kernel_constants", None)  # neuroq's surrogates (S2NN) say their own constants
    return own() if callable(own) else None


def s2nn_constants(t_ref: int, alpha: float, v_threshold: float, per_step: str) -> tuple:
    """Kernel arguments (:data:`SURROGATE_FIELDS`) of the S2NN surrogate with a string ``per_step``."""
    inner, a0, a1, a2 = _basic_surrogate(per_step, float(alpha))
    return (np.int32(SG_S2NN), np.int32(inner), np.int32(int(t_ref)), a0, a1, a2, np.float32(v_threshold))


def require_surrogate(surrogate_function) -> tuple:
    """:func:`surrogate_constants` or :class:`Unsupported` naming the surrogate."""
    sg = surrogate_constants(surrogate_function)
    if sg is None:
        raise Unsupported(f"no device version of surrogate {type(surrogate_function).__name__} "
                          "(or it is not in spiking mode)")
    return sg


def require_storage(dtype: torch.dtype) -> str:
    """The kernels' storage type name of ``dtype`` (``'float'``, ``'nq_f16'``, ``'nq_bf16'``); :class:`Unsupported`
    for any other dtype."""
    if dtype not in STORAGE_TYPES:
        raise Unsupported(f"the kernels store fp32, fp16 or bf16, not {dtype}")
    return STORAGE_TYPES[dtype]
