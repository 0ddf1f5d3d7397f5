"""Argument checks of :mod:`neuroq.viz`, built on :mod:`neuroq._validate`: each error names the argument and what
was expected, so a bad call fails on entry rather than deep inside torch, numpy, matplotlib or PIL."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional

import numpy as np
import torch

from .._validate import check_int

#: what a recording argument may be (said in every type error about one)
RECORDING_TYPES = ("a neuroq.viz.Recording (what viz.record returns), a {layer: [T, N, ...]} mapping "
                   "or a [T, neurons...] tensor")


def as_tensor(name: str, value, expected: str = "a torch.Tensor or numpy array") -> torch.Tensor:
    """``value`` as a CPU tensor of real numbers (bool, integer or floating point), else a ``TypeError`` naming
    ``name`` and ``expected``."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        if isinstance(value, (str, bytes, Mapping)) or value is None:
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
        try:
            arr = np.asarray(value)
        except Exception:  # ragged lists and the like
            raise TypeError(f"{name} must be {expected}, got {type(value).__name__}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be {expected} of numbers, got {type(value).__name__} "
                            f"(numpy dtype {arr.dtype})")
        t = torch.as_tensor(arr)
    if t.is_complex():
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    return t


def check_finite(name: str, t: torch.Tensor) -> torch.Tensor:
    """``t`` if every value is finite, else a ``ValueError`` naming ``name`` and the count."""
    if t.is_floating_point():
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite values (of {t.numel()}): expected finite values")
    return t


def check_layer_tensor(name: str, value, batched: bool = True) -> torch.Tensor:
    """A recorded layer: ``[T, N, ...]`` (``batched``; one sample's ``[T, neurons...]`` otherwise, ``[T]`` for one
    neuron) of finite real values with at least one step, sample and neuron, as a CPU tensor."""
    layout = "[T, N, ...]" if batched else "[T, neurons...]"
    t = as_tensor(name, value, f"a {layout} tensor")
    if t.dim() < (2 if batched else 1):
        raise ValueError(f"{name} must be a {layout} tensor (time first{', then the samples' if batched else ''}), "
                         f"got shape {tuple(t.shape)}")
    if t.shape[0] < 1:
        raise ValueError(f"{name} has no time step (shape {tuple(t.shape)}): expected {layout} with T >= 1")
    if batched and t.shape[1] < 1:
        raise ValueError(f"{name} holds no sample (shape {tuple(t.shape)}): expected {layout} with N >= 1")
    if t.numel() == 0:
        raise ValueError(f"{name} has zero neurons (shape {tuple(t.shape)}): expected {layout} with at least one")
    return check_finite(name, t)


def check_names(name: str, values, allow_none: bool = True) -> Optional[list]:
    """A list of layer names: not a bare string, not empty, no name twice (``None`` passes when ``allow_none``)."""
    if values is None and allow_none:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of layer names, got {type(values).__name__} {values!r}"
                        + (f" (for one layer: [{values!r}])" if isinstance(values, str) else ""))
    values = list(values)
    if not values:
        raise ValueError(f"{name} is empty: name at least one layer (or pass None for all)")
    seen = set()
    for v in values:
        if v in seen:
            raise ValueError(f"{name} names {v!r} twice: {values}")
        seen.add(v)
    return values


def check_indices(name: str, values, n: int, what: str) -> np.ndarray:
    """Indices into ``n`` items (``what``, e.g. ``"neurons of layer '2'"``): integers in ``0 .. n - 1``, at least one,
    none twice; a tensor or array is flattened."""
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values).reshape(-1).tolist()
    elif isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(f"{name} must be a list of integer indices, got {type(values).__name__} {values!r}")
    values = [check_int(f"{name} entry", v) for v in values]
    if not values:
        raise ValueError(f"{name} is empty: give at least one index into the {n} {what}")
    seen = set()
    for v in values:
        if not 0 <= v < n:
            raise ValueError(f"{name} {values}: index {v} is out of range for the {n} {what} (valid: 0 to {n - 1})")
        if v in seen:
            raise ValueError(f"{name} {values} lists index {v} twice")
        seen.add(v)
    return np.asarray(values, dtype=int)


def check_sample(value, n: Optional[int] = None, name: str = "sample", allow_none: bool = False) -> Optional[int]:
    """A sample index: an integer ``>= 0`` (``< n`` when ``n`` is given), or ``None`` when ``allow_none``."""
    if value is None and allow_none:
        return None
    value = check_int(name, value, ge=0)
    if n is not None and value >= n:
        raise ValueError(f"{name}={value} is out of range: the recording holds {n} samples (valid: 0 to {n - 1})")
    return value


def check_positive_or_none(name: str, value) -> Optional[int]:
    """``None`` or an integer ``>= 1``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer or None, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def check_axes(ax):
    """``None`` or a matplotlib ``Axes``."""
    from matplotlib.axes import Axes

    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax
