"""What PSPN and Layer-Batch Norm share: their hyperparameters and the running-average rule of their
statistics (BatchNorm's)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from ..._validate import check_bool, check_int, check_real


class RunningNorm(nn.Module):
    r"""Base of :class:`~neuroq.layer.norm.PSPNorm2d` / ``PSPNorm1d`` and
    :class:`~neuroq.layer.norm.LayerBatchNorm2d` / ``LayerBatchNorm1d``: per-channel normalizations whose
    eval-mode map uses running estimates of a batch statistic (and so folds into the layer before them).

    Holds the validated ``num_features`` (>= 1), ``eps`` (> 0), ``momentum`` (in (0, 1], or ``None``) and
    ``affine``; a subclass registers its parameters and its ``num_batches_tracked`` buffer and calls
    :meth:`_count_batch` once per training batch.
    """

    def __init__(self, num_features: int, eps: float, momentum: Optional[float], affine: bool):
        super().__init__()
        self.num_features = check_int("num_features", num_features, ge=1)
        self.eps = check_real("eps", eps, gt=0)
        self.momentum = check_real("momentum", momentum, gt=0, le=1, allow_none=True)
        self.affine = check_bool("affine", affine)

    def _count_batch(self, *stats) -> float:
        r"""Count one more training batch (``num_batches_tracked``) and return the weight :math:`m` of its
        statistic :math:`s` in the running estimate :math:`\hat s \leftarrow (1-m)\,\hat s + m\,s`:
        ``momentum``, or :math:`1/\text{batches}` (the cumulative average) when it is ``None``.  Call it
        under ``torch.no_grad()`` with the batch's statistics ``stats``: a non-finite one (the batch held NaN
        or inf) is a ``ValueError`` and the running estimates and the count stay as they were, so one bad batch
        never poisons them for good."""
        for s in stats:
            if not bool(torch.isfinite(s).all()):
                raise ValueError(f"{type(self).__name__}({self.num_features}): the training batch holds NaN or "
                                 "infinite values; its statistics were not added to the running estimates (they are "
                                 "unchanged)")
        self.num_batches_tracked.add_(1)
        return (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
