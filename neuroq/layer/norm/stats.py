"""Running statistics of the normalization layers after training."""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch
import torch.nn as nn

from ... import _sj
from .running import RunningNorm

_NORMS = (RunningNorm, nn.modules.batchnorm._BatchNorm)


def tracked_norms(model: nn.Module) -> list:
    """The PSPN / Layer-Batch Norm / BatchNorm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _NORMS) and getattr(m, "track_running_stats", True)]


@torch.no_grad()
def recalibrate(model: nn.Module, inputs: Iterable[torch.Tensor], forward: Optional[Callable] = None) -> int:
    """Re-estimate the running statistics of every PSPN / Layer-Batch Norm / BatchNorm layer of ``model`` as the plain
    (cumulative) average over ``inputs`` (an iterable of model inputs), with the current weights.

    An exponential moving average started at its initial value lags behind when the potentials shrink
    during training; this replaces it with the exact mean over the given batches.  ``forward(model, x)``
    defaults to ``model(x)`` after ``reset_net``.  Returns the number of batches used; the model is left in
    eval mode."""
    norms = tracked_norms(model)
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    used = 0
    try:
        for x in inputs:
            _sj.reset_net(model)
            if forward is None:
                model(x)
            else:
                forward(model, x)
            used += 1
    finally:
        for m, mom in zip(norms, saved):
            m.momentum = mom
        _sj.reset_net(model)
        model.eval()
    return used
