"""Minibatches of a dataset in a given order (fast tensor indexing for in-memory data)."""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from .datasets import ArrayDataset


def batches(dataset: Dataset, order: torch.Tensor, batch_size: int, num_workers: int = 0
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` batches of ``dataset`` taken in ``order`` (a 1-D index tensor),
    ``batch_size`` at a time (the last batch may be smaller)."""
    if isinstance(dataset, ArrayDataset):
        for s in range(0, len(order), batch_size):
            yield dataset.take(order[s:s + batch_size])
        return
    chunks = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
    yield from DataLoader(dataset, batch_sampler=chunks, num_workers=num_workers)


def num_batches(n: int, batch_size: int) -> int:
    return (n + batch_size - 1) // batch_size
