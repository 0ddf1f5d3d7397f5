"""Sequence tasks: images as sequences (sequential / permuted sequential MNIST).

* ``smnist``: MNIST as a sequence of its 784 pixels (one feature per step), raster order;
* ``psmnist``: the same with one fixed permutation of the 784 steps, drawn from a seeded generator
  (seed 0) and stored with the data (``TaskData.meta["permutation"]``), so every run and every
  checkpoint uses the same order;
* ``smnist-rows``: MNIST as 28 steps of 28 pixels (rows).

Samples are ``[T, F]`` (``TaskData.kind == "sequence"``); a batch ``[N, T, F]`` becomes the model
input ``[T, N, F]`` (neuroq's time-first layout).  :func:`sequential_mnist` builds other variants
(``pool=2`` gives 14x14 images: 196 pixels or 14 rows).

The three take the options ``base`` (``mnist``, ``fashion-mnist``, or ``digits``: scikit-learn's 8x8
digits, offline: 64 pixel steps or 8 rows), ``pool`` and, for ``psmnist``, the permutation ``seed``,
through the dataset spec: ``--dataset 'psmnist?pool=2'``, ``load_dataset("smnist-rows?base=digits")``.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .._validate import check_choice, check_int
from .datasets import ArrayDataset, TaskData, load_dataset, register_dataset


def image_to_sequence(x: torch.Tensor, mode: str = "rows", permutation: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Images ``[N, C, H, W]`` (or ``[N, H, W]``) -> a sequence ``[T, N, F]``.

    * ``'rows'``: :math:`T = H`, :math:`F = C W` (step :math:`t` is row :math:`t`, channels side by side);
    * ``'pixels'``: :math:`T = H W`, :math:`F = C` (raster order; ``permutation`` ``[H W]`` reorders the steps).

    Example::

        >>> image_to_sequence(torch.rand(8, 1, 28, 28)).shape
        torch.Size([28, 8, 28])
        >>> image_to_sequence(torch.rand(8, 1, 28, 28), "pixels").shape
        torch.Size([784, 8, 1])
    """
    check_choice("mode", mode, ("rows", "pixels"))
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ValueError(f"image_to_sequence expects images [N, C, H, W] or [N, H, W], got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if x.dim() == 3:
        x = x.unsqueeze(1)
    n, c, h, w = x.shape
    if mode == "rows":
        seq = x.permute(2, 0, 1, 3).reshape(h, n, c * w)
    else:
        seq = x.reshape(n, c, h * w).permute(2, 0, 1)
    if permutation is not None:
        if mode != "pixels":
            raise ValueError("permutation is only used with mode='pixels'")
        perm = torch.as_tensor(permutation, dtype=torch.long, device=seq.device)
        steps = torch.arange(seq.shape[0], device=seq.device)
        if perm.shape != steps.shape or not torch.equal(perm.sort().values, steps):
            raise ValueError(f"permutation must be a permutation of range({seq.shape[0]})")
        seq = seq[perm]
    return seq


def permutation(n: int, seed: int = 0) -> torch.Tensor:
    """The fixed permutation of ``n`` steps drawn from ``torch.Generator().manual_seed(seed)``."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def sequential_mnist(data_dir: Optional[str] = None, download: bool = True, order: str = "pixels",
                     permute: bool = False, seed: int = 0, pool: int = 1, base: str = "mnist") -> TaskData:
    """MNIST (or ``base='fashion-mnist'``) as sequences (module docstring): ``order='pixels'`` or
    ``'rows'``, optionally average-pooled by ``pool`` first and (pixels only) permuted with the fixed
    permutation of ``seed``."""
    check_choice("order", order, ("pixels", "rows"))
    check_int("pool", pool, ge=1)
    if permute and order != "pixels":
        raise ValueError("permute=True needs order='pixels' (psMNIST permutes the pixel steps)")
    img = load_dataset(base, data_dir, download)

    def convert(ds):
        x = ds.x if pool == 1 else F.avg_pool2d(ds.x, pool)
        steps = x.shape[-2] * x.shape[-1] if order == "pixels" else x.shape[-2]
        perm = permutation(steps, seed) if permute else None
        return ArrayDataset(image_to_sequence(x, order, perm).transpose(0, 1).contiguous(), ds.y), perm

    train, perm = convert(img.train)
    test, _ = convert(img.test)
    name = ("ps" if permute else "s") + base.replace("fashion-", "f") + ("" if order == "pixels" else "-rows")
    if pool > 1:
        name += f"-pool{pool}"
    meta = dict(order=order, pool=pool, base=base)
    if permute:
        meta.update(permutation_seed=seed, permutation=perm.tolist())
    return TaskData(name, train, test, img.num_classes, tuple(train.x.shape[1:]), kind="sequence", meta=meta)


def _smnist(data_dir=None, download=True, base="mnist", pool=1):
    return sequential_mnist(data_dir, download, "pixels", pool=pool, base=base)


def _psmnist(data_dir=None, download=True, base="mnist", pool=1, seed=0):
    return sequential_mnist(data_dir, download, "pixels", permute=True, seed=seed, pool=pool, base=base)


def _smnist_rows(data_dir=None, download=True, base="mnist", pool=1):
    return sequential_mnist(data_dir, download, "rows", pool=pool, base=base)


# options through the spec, e.g. 'psmnist?pool=2' (196 steps) or 'smnist-rows?base=digits' (offline, 8 steps)
register_dataset("smnist", _smnist)
register_dataset("psmnist", _psmnist)
register_dataset("smnist-rows", _smnist_rows)
