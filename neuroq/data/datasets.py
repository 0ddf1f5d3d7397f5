"""Datasets: the offline default, IDX folders, torchvision downloads, and a registry for more.

* ``digits`` (default, offline): scikit-learn's 1797 real 8x8 handwritten digits, shipped inside
  scikit-learn (no download).  Split 80/20, stratified, fixed seed.
* ``mnist``, ``fashion-mnist``: from ``data_dir`` holding the standard IDX files
  (``train-images-idx3-ubyte[.gz]`` ...), or downloaded through torchvision when ``download=True``.

:func:`load_dataset` returns a :class:`TaskData`: the train and test splits as torch ``Dataset`` s
(in-memory ones are :class:`ArrayDataset`), the number of classes and the per-sample input shape.
Images are float tensors in [0, 1], shape ``[C, H, W]`` per sample; the training loop encodes a
batch ``[N, C, H, W]`` into the multi-step layout ``[T, N, C, H, W]`` (:func:`neuroq.data.encode`).
Register another named dataset with :func:`register_dataset`.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validate import check_choice, check_int


class ArrayDataset(Dataset):
    """An in-memory dataset of ``(x[i], y[i])`` pairs held as two tensors (fast batch indexing)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``(x[idx], y[idx])``."""
        return self.x[idx], self.y[idx]

    def head(self, n: Optional[int]) -> "ArrayDataset":
        return self if n is None else ArrayDataset(self.x[:n], self.y[:n])


KINDS = ("image", "sequence", "frames")


@dataclass
class TaskData:
    """A classification task: train/test splits, number of classes, per-sample input shape.

    ``kind`` says what a sample is: ``'image'`` (``[C, H, W]``, encoded over T steps by the method),
    ``'sequence'`` (``[T, F]``) or ``'frames'`` (``[T, C, H, W]``, e.g. binned events); ``meta`` holds
    what must be stored with a run to rebuild the data exactly (e.g. psMNIST's permutation)."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_shape: tuple
    kind: str = "image"
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)

    # in-memory convenience (ArrayDataset splits)
    @property
    def x_train(self) -> torch.Tensor:
        return self.train.x

    @property
    def y_train(self) -> torch.Tensor:
        return self.train.y

    @property
    def x_test(self) -> torch.Tensor:
        return self.test.x

    @property
    def y_test(self) -> torch.Tensor:
        return self.test.y


_LOADERS: dict[str, Callable[..., TaskData]] = {}


def register_dataset(name: str, loader: Callable[..., TaskData]) -> None:
    """Make ``load_dataset(name, ...)`` (and ``neuroq train --dataset name``) call
    ``loader(data_dir=..., download=...)``, which returns a :class:`TaskData`."""
    _LOADERS[name] = loader


def dataset_names() -> tuple:
    return tuple(_LOADERS)


def load_dataset(name: str = "digits", data_dir: Optional[str] = None, download: bool = True,
                 limit_train: Optional[int] = None, limit_test: Optional[int] = None) -> TaskData:
    """Load the named dataset (see the module docstring); ``limit_*`` keep the first samples of a split."""
    check_choice("dataset", name, dataset_names())
    data = _LOADERS[name](data_dir=data_dir, download=download)
    if limit_train is not None:
        check_int("limit_train", limit_train, ge=1)
        data.train = _head(data.train, limit_train)
    if limit_test is not None:
        check_int("limit_test", limit_test, ge=1)
        data.test = _head(data.test, limit_test)
    return data


def _head(ds: Dataset, n: int) -> Dataset:
    if isinstance(ds, ArrayDataset):
        return ds.head(n)
    return torch.utils.data.Subset(ds, range(min(n, len(ds))))


def _digits(data_dir=None, download=True) -> TaskData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return TaskData("digits", ArrayDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)),
                    ArrayDataset(torch.from_numpy(xte), torch.from_numpy(yte)), 10, (1, 8, 8))


_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path} cannot be read as a {'gzip-compressed ' if path.suffix == '.gz' else ''}IDX file "
                         f"({type(e).__name__}: {e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path} is not an IDX file: unknown data type byte 0x{raw[2]:02x} (expected one of "
                         f"{', '.join(f'0x{k:02x}' for k in dtypes)})")
    dtype = dtypes[raw[2]]
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {arr.size} values")
    return arr.reshape(dims)


def _find_idx(data_dir: Path, stem: str) -> Optional[Path]:
    for cand in (data_dir / stem, data_dir / (stem + ".gz"), data_dir / "raw" / stem, data_dir / "raw" / (stem + ".gz")):
        if cand.exists():
            return cand
    return None


def _idx_dataset(name: str, data_dir: Optional[str], download: bool) -> TaskData:
    root = Path(data_dir) if data_dir else Path.home() / ".cache" / "neuroq" / name
    sub = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}[name]
    found = {k: (_find_idx(root, v) or _find_idx(root / sub, v)) for k, v in _IDX_FILES.items()}
    if not all(found.values()):
        if not download:
            missing = [v for k, v in _IDX_FILES.items() if not found[k]]
            raise FileNotFoundError(f"data_dir={str(root)!r} lacks IDX files {missing} for dataset {name!r}; "
                                    "pass a folder with the standard (.gz) IDX files or allow download")
        import torchvision

        cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[name]
        try:
            cls(str(root), train=True, download=True)
            cls(str(root), train=False, download=True)
        except Exception as e:  # no network, a proxy, a full disk ...
            raise FileNotFoundError(f"dataset {name!r}: no IDX files in {str(root)!r} and the download failed "
                                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); pass "
                                    "--data-dir with the standard (.gz) IDX files") from None
        found = {k: (_find_idx(root, v) or _find_idx(root / sub, v)) for k, v in _IDX_FILES.items()}
    xtr = torch.from_numpy(read_idx(found["train_x"]).astype(np.float32) / 255.0)[:, None]
    xte = torch.from_numpy(read_idx(found["test_x"]).astype(np.float32) / 255.0)[:, None]
    ytr = torch.from_numpy(read_idx(found["train_y"]).astype(np.int64))
    yte = torch.from_numpy(read_idx(found["test_y"]).astype(np.int64))
    return TaskData(name, ArrayDataset(xtr, ytr), ArrayDataset(xte, yte), 10, tuple(xtr.shape[1:]))


register_dataset("digits", _digits)
register_dataset("mnist", lambda data_dir=None, download=True: _idx_dataset("mnist", data_dir, download))
register_dataset("fashion-mnist", lambda data_dir=None, download=True: _idx_dataset("fashion-mnist", data_dir, download))
