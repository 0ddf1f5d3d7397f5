"""Minibatches of a dataset in a given order (fast tensor indexing for in-memory data)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .._validate import check_int
from .datasets import ArrayDataset


def batches(dataset: Dataset, order: torch.Tensor, batch_size: int, num_workers: int = 0,
            pin_memory: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``dataset`` taken in ``order`` (a 1-D index tensor),
    ``batch_size`` at a time (the last batch may be smaller).

    An :class:`ArrayDataset` is indexed as tensors; any other dataset is read through a ``DataLoader``
    whose batch sampler is exactly these chunks of ``order`` (so both paths give the same batches in the
    same order), with ``num_workers`` worker processes and ``pin_memory`` (page-locked batches, for
    copies to a CUDA device).

    Example::

        >>> ds = ArrayDataset(torch.arange(5.0)[:, None], torch.arange(5))
        >>> [y.tolist() for _, y in batches(ds, torch.tensor([4, 0, 2, 1, 3]), 2)]
        [[4, 0], [2, 1], [3]]
    """
    check_int("batch_size", batch_size, ge=1)
    check_int("num_workers", num_workers, ge=0)
    if isinstance(dataset, ArrayDataset):
        for s in range(0, len(order), batch_size):
            yield dataset.take(order[s:s + batch_size])
        return
    chunks = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
    yield from DataLoader(dataset, batch_sampler=chunks, num_workers=num_workers, pin_memory=pin_memory)


def num_batches(n: int, batch_size: int) -> int:
    """How many batches of at most ``batch_size`` samples cover ``n`` samples (``ceil(n / batch_size)``)."""
    return (n + batch_size - 1) // batch_size
