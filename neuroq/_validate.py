"""Argument checks shared by every public constructor: each error names the argument and
what was expected, so a bad call fails at construction time rather than deep in a forward."""
from __future__ import annotations

import numbers
from typing import Iterable


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_real(name: str, value, *, gt=None, ge=None, lt=None, le=None, allow_none=False, finite=True):
    """``float(value)`` if it is a real number (not a bool) in the bounds, and finite unless ``finite=False``
    (NaN is refused always): else an error naming ``name``."""
    if value is None and allow_none:
        return None
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    if value != value or (finite and value in (float("inf"), float("-inf"))):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    conds = []
    if gt is not None and not value > gt:
        conds.append(f"> {gt}")
    if ge is not None and not value >= ge:
        conds.append(f">= {ge}")
    if lt is not None and not value < lt:
        conds.append(f"< {lt}")
    if le is not None and not value <= le:
        conds.append(f"<= {le}")
    if conds:
        raise ValueError(f"{name} must be {' and '.join(conds)}, got {value!r}")
    return float(value)


def check_int(name: str, value, *, ge=None, gt=None, le=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if ge is not None and value < ge:
        raise ValueError(f"{name} must be >= {ge}, got {value}")
    if gt is not None and value <= gt:
        raise ValueError(f"{name} must be > {gt}, got {value}")
    if le is not None and value > le:
        raise ValueError(f"{name} must be <= {le}, got {value}")
    return int(value)


def check_choice(name: str, value, choices: Iterable):
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")
    return value


def check_bool(name: str, value):
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_callable(name: str, value):
    if not callable(value):
        raise TypeError(f"{name} must be callable (e.g. a spikingjelly surrogate), got {value!r}")
    return value


def check_step_input(module_name: str, x, step_mode: str):
    """Multi-step input is ``[T, N, ...]`` (rank >= 2, ``T >= 1``); single-step input is ``[N, ...]`` (rank >= 1);
    both are floating-point tensors (an integer, bool or complex tensor is refused by name).  An empty batch
    (``N = 0``) gives an empty output, as in torch.

    A ``torch.fx.Proxy`` (symbolic tracing) passes unchecked: it has no concrete shape.
    """
    import torch
    import torch.fx

    if isinstance(x, torch.fx.Proxy):
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{module_name}: input must be a torch.Tensor, got {type(x).__name__}")
    need = 2 if step_mode == "m" else 1
    if x.dim() < need:
        layout = "[T, N, ...]" if step_mode == "m" else "[N, ...]"
        raise ValueError(
            f"{module_name} in step_mode={step_mode!r} expects input of shape {layout} "
            f"(rank >= {need}), got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{module_name}: input must be a floating-point tensor, got dtype {x.dtype}"
                        + ("" if x.is_complex() else " (convert it: x.float())"))
    if step_mode == "m" and x.shape[0] < 1:
        raise ValueError(f"{module_name}: multi-step input [T, N, ...] needs at least one time step (T >= 1), "
                         f"got shape {tuple(x.shape)}")


def check_samples(name: str, x) -> None:
    """``x`` is a batch of input samples: a non-empty real (floating-point) tensor of rank >= 1 with only finite values
    (integer and bool tensors are refused, naming the conversion; NaN/inf name the count). Used where data
    enters a network (encoders, :meth:`Method.inputs`, ``Run.predict``): one pass over the batch."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}"
                        + ("" if x.is_complex() else " (convert it, e.g. x.float() / 255 for 8-bit images)"))
    if x.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    if x.shape[0] == 0:
        raise ValueError(f"{name} holds no samples (shape {tuple(x.shape)})")
    bad = (~torch.isfinite(x)).sum()
    if bool(bad):
        raise ValueError(f"{name} holds {int(bad)} NaN or infinite values (of {x.numel()})")
