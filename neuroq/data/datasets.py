"""Datasets: the offline default, IDX folders, torchvision, event cameras, audio, and your own.

* ``digits`` (default, offline): scikit-learn's 1797 real 8x8 handwritten digits, shipped inside
  scikit-learn (no download).  Split 80/20, stratified, fixed seed.
* ``mnist``, ``fashion-mnist``: from ``data_dir`` holding the standard IDX files
  (``train-images-idx3-ubyte[.gz]`` ...), or downloaded through torchvision when ``download=True``.
* ``cifar10`` (:mod:`neuroq.data.vision`), ``nmnist`` (:mod:`neuroq.data.events`), ``fsdd``
  (:mod:`neuroq.data.audio`), ``smnist``/``psmnist``/``smnist-rows`` (:mod:`neuroq.data.sequences`).
* any torch ``Dataset``: :func:`from_datasets` (Python), or ``package.module:factory`` as the name.

:func:`load_dataset` returns a :class:`TaskData`: the train and test splits as torch ``Dataset`` s
(in-memory ones are :class:`ArrayDataset`, which the loop batches by tensor indexing; any other is
read sample by sample through a ``DataLoader``), the number of classes and the per-sample input shape.
Images are float tensors, shape ``[C, H, W]`` per sample; the training loop encodes a batch
``[N, C, H, W]`` into the multi-step layout ``[T, N, C, H, W]`` (:func:`neuroq.data.encode`).
Sequences ``[T, F]`` and frames ``[T, C, H, W]`` already have a time axis: a batch is put time-first.

A dataset *spec* is ``NAME``, ``NAME?key=value&key=value`` (the loader's options, e.g.
``nmnist?T=10``) or ``package.module:factory[?key=value...]``; :func:`parse_spec` reads it.
Register another named dataset with :func:`register_dataset`.
"""
from __future__ import annotations

import contextlib
import gzip
import importlib
import inspect
import numbers
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validate import check_choice, check_int


class MissingPackageError(ImportError, ValueError):
    """A dataset needs a package that is not installed (an ``ImportError``; also a ``ValueError``, so the
    command line reports it as a plain error)."""


def require(module: str, what: str, pip: Optional[str] = None):
    """``import module``, or a :class:`MissingPackageError` saying that ``what`` needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingPackageError(f"{what} needs the {module} package ({type(e).__name__}: {e}); install it with "
                                  f"`pip install {pip or module}`") from None


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
        """The first ``n`` samples as a new :class:`ArrayDataset` (sharing storage); ``self`` when ``n`` is ``None``."""
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
        self.in_shape = tuple(int(v) for v in self.in_shape)
        need = {"sequence": 2, "frames": 4}.get(self.kind)
        if need is not None and len(self.in_shape) != need:
            layout = "[T, F]" if self.kind == "sequence" else "[T, C, H, W]"
            raise ValueError(f"TaskData {self.name!r}: kind={self.kind!r} samples are {layout}, got in_shape "
                             f"{self.in_shape}")

    @property
    def steps(self) -> Optional[int]:
        """Time steps of a sample for sequences and frames (``in_shape[0]``); ``None`` for images (the
        method chooses how many steps it encodes them over)."""
        return None if self.kind == "image" else self.in_shape[0]

    @property
    def step_shape(self) -> tuple:
        """What the network reads at one time step: ``in_shape`` for images, ``in_shape[1:]`` for
        sequences (``[F]``) and frames (``[C, H, W]``)."""
        return self.in_shape if self.kind == "image" else self.in_shape[1:]

    # in-memory convenience (ArrayDataset splits)
    @property
    def x_train(self) -> torch.Tensor:
        """Inputs of the training split ``[N, *in_shape]`` (only when it is an :class:`ArrayDataset`)."""
        return self.train.x

    @property
    def y_train(self) -> torch.Tensor:
        """Labels of the training split ``[N]`` (only when it is an :class:`ArrayDataset`)."""
        return self.train.y

    @property
    def x_test(self) -> torch.Tensor:
        """Inputs of the test split ``[N, *in_shape]`` (only when it is an :class:`ArrayDataset`)."""
        return self.test.x

    @property
    def y_test(self) -> torch.Tensor:
        """Labels of the test split ``[N]`` (only when it is an :class:`ArrayDataset`)."""
        return self.test.y


_LOADERS: dict[str, Callable[..., TaskData]] = {}
#: keyword arguments every loader and factory may take besides its own options
_COMMON = ("data_dir", "download")


def register_dataset(name: str, loader: Callable[..., TaskData]) -> None:
    """Make ``load_dataset(name, ...)`` (and ``neuroq train --dataset name``) call
    ``loader(data_dir=..., download=..., **options)``, which returns a :class:`TaskData`; the loader's
    other keyword parameters are its options (``--dataset 'name?key=value'``).

    Example::

        >>> def tiny(data_dir=None, download=True, n=8):
        ...     return from_datasets(ArrayDataset(torch.rand(n, 3), torch.arange(n) % 2),
        ...                          ArrayDataset(torch.rand(4, 3), torch.arange(4) % 2), name="tiny")
        >>> register_dataset("tiny", tiny)
        >>> len(load_dataset("tiny?n=6").train)
        6
    """
    if not isinstance(name, str) or not name or any(c in name for c in "?&=: "):
        raise ValueError(f"dataset name must be a non-empty string without '?', '&', '=', ':' or spaces, "
                         f"got {name!r}")
    if not callable(loader):
        raise TypeError(f"loader must be callable (data_dir=..., download=..., **options) -> TaskData, got {loader!r}")
    _LOADERS[name] = loader


def dataset_names() -> tuple:
    """The registered dataset names."""
    return tuple(_LOADERS)


def _parse_value(text: str, default: Any = inspect.Parameter.empty):
    """An option's text as the type of its default (bool: 1/0/true/false/yes/no), else as an int,
    a float, ``None`` or the string itself."""
    low = text.strip().lower()
    if isinstance(default, bool):
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean (1/0, true/false, yes/no), got {text!r}")
    if low == "none":
        return None
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_spec(spec: str) -> tuple[str, dict]:
    """``'name?key=value&key=value'`` -> ``('name', {'key': 'value', ...})`` (values still text).

    The name is a registered dataset or ``package.module:factory``.

    Example::

        >>> parse_spec("nmnist?T=10&first_saccade_only=1")
        ('nmnist', {'T': '10', 'first_saccade_only': '1'})
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset must be a name, NAME?key=value&... or package.module:factory; got {spec!r}")
    name, _, query = spec.strip().partition("?")
    options: dict = {}
    for part in filter(None, query.split("&")):
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"dataset {spec!r}: option {part!r} must be key=value (options are "
                             "NAME?key=value&key=value)")
        if key in options:
            raise ValueError(f"dataset {spec!r}: option {key!r} is given twice")
        options[key] = value
    return name, options


def check_dataset(spec: str) -> str:
    """``spec`` if it names a registered dataset (with options) or has the ``package.module:factory``
    form; a ``ValueError`` naming the registered datasets otherwise (nothing is imported or loaded)."""
    _checked_spec(spec)
    return spec


def _checked_spec(spec: str) -> tuple[str, dict]:
    """:func:`parse_spec` of a spec that :func:`check_dataset` accepts (the one parse of ``load_dataset``)."""
    name, options = parse_spec(spec)
    if ":" in name:
        module, _, attr = name.partition(":")
        if not module or not attr or not all(p.isidentifier() for p in module.split(".") + [attr]):
            raise ValueError(f"dataset {spec!r}: a factory is given as package.module:function, e.g. "
                             "mypkg.data:make_task")
    elif name not in _LOADERS:
        import difflib

        lower = {n.lower(): n for n in _LOADERS}
        close = [lower[name.lower()]] if name.lower() in lower else \
            difflib.get_close_matches(name, list(_LOADERS), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"dataset must be one of {', '.join(repr(n) for n in _LOADERS)} (optionally "
                         f"NAME?key=value&...), or package.module:factory; got {spec!r}{hint}")
    return name, options


def _call(fn: Callable, what: str, options: dict, data_dir, download):
    """``fn(**common, **options)`` with the options parsed to the types of ``fn``'s defaults; unknown
    options are an error naming ``what`` and the options ``fn`` has."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    own = [n for n, p in params.items() if n not in _COMMON and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if data_dir is not None and getattr(fn, "reads_data_dir", True) is False:
        raise ValueError(f"dataset {what} reads no folder (it ships with a dependency), but data_dir="
                         f"{str(data_dir)!r} was given: drop --data-dir")
    kw = {k: v for k, v in (("data_dir", data_dir), ("download", download)) if k in params or var_kw}
    for key, value in options.items():
        if key in _COMMON:
            raise ValueError(f"dataset {what}: {key} is not an option here; use --{key.replace('_', '-')} "
                             f"(load_dataset's {key}=)")
        if key not in own and not var_kw:
            raise ValueError(f"dataset {what} has no option {key!r} (its options: {', '.join(own) or 'none'})")
        default = params[key].default if key in params else inspect.Parameter.empty
        if isinstance(value, str):
            try:
                value = _parse_value(value, default)
            except ValueError as e:
                raise ValueError(f"dataset {what}: option {key}: {e}") from None
        kw[key] = value
    if data_dir is not None and not download and not Path(data_dir).expanduser().exists():
        raise FileNotFoundError(f"dataset {what}: data_dir={str(data_dir)!r} does not exist, and download is off "
                                "(--no-download): give the folder that holds the dataset's files")
    return fn(**kw)


def _factory(name: str) -> Callable:
    module, _, attr = name.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"dataset {name!r}: cannot import module {module!r} ({type(e).__name__}: {e}); "
                         "a factory is given as package.module:function, importable from here") from None
    fn = getattr(mod, attr, None)
    if fn is None or not callable(fn):
        raise ValueError(f"dataset {name!r}: module {module!r} has no callable {attr!r}"
                         + ("" if fn is None else f" (it is a {type(fn).__name__})"))
    return fn


_UNSET = object()


def load_dataset(name="digits", data_dir=_UNSET, download=_UNSET, limit_train=_UNSET, limit_test=_UNSET,
                 **options) -> TaskData:
    """Load the dataset ``name`` (a spec, see the module docstring); ``limit_*`` keep the first samples of a split.

    ``name`` may also be a run's configuration (:class:`neuroq.training.TrainConfig`, or anything with its
    fields ``dataset``, ``data_dir``, ``download``, ``limit_train``, ``limit_test``): its data is loaded,
    and the arguments given here override its fields (``load_dataset(cfg, limit_train=1)``).

    ``name`` is a registered dataset (``'mnist'``), with options (``'nmnist?T=10'``; ``options`` given as
    keywords here are the same), or ``'package.module:factory'``: ``factory(data_dir=..., download=...,
    **options)`` (the common arguments only where it takes them) returns a :class:`TaskData` or a
    ``(train, test)`` pair of torch Datasets (then :func:`from_datasets` infers the rest).

    Example::

        >>> load_dataset("digits", limit_train=100).in_shape
        (1, 8, 8)
    """
    if not isinstance(name, str) and hasattr(name, "dataset"):  # a run configuration
        cfg, given = name, dict(data_dir=data_dir, download=download, limit_train=limit_train, limit_test=limit_test)
        name = cfg.dataset
        data_dir, download, limit_train, limit_test = (getattr(cfg, k) if v is _UNSET else v for k, v in given.items())
    data_dir = None if data_dir is _UNSET else data_dir
    download = True if download is _UNSET else download
    limit_train = None if limit_train is _UNSET else limit_train
    limit_test = None if limit_test is _UNSET else limit_test
    if not isinstance(name, str):
        raise TypeError(f"name must be a dataset spec (str) or a TrainConfig, got {type(name).__name__}")
    base, spec_options = _checked_spec(name)
    both = sorted(set(spec_options) & set(options))
    if both:
        raise ValueError(f"dataset {name!r}: option(s) {both} given both in the spec and as keywords")
    spec_options.update(options)
    if ":" in base:
        out = _call(_factory(base), repr(base), spec_options, data_dir, download)
        if isinstance(out, (tuple, list)) and len(out) == 2 and not isinstance(out, TaskData):
            data = from_datasets(out[0], out[1], name=name)
        elif isinstance(out, TaskData):
            data = out
        else:
            raise TypeError(f"dataset {base!r}: the factory must return a neuroq.data.TaskData or a (train, test) "
                            f"pair of torch Datasets, got {type(out).__name__}")
    else:
        data = _call(_LOADERS[base], repr(base), spec_options, data_dir, download)
        if not isinstance(data, TaskData):
            raise TypeError(f"dataset {base!r}: its loader returned {type(data).__name__}, not a TaskData")
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


# ---- any torch Dataset ------------------------------------------------------------------------
def _labels(ds) -> Optional[torch.Tensor]:
    """All labels of ``ds`` without reading its samples (``ArrayDataset.y``, a two-tensor
    ``TensorDataset``, ``.targets``, through ``Subset``), or ``None``."""
    if isinstance(ds, ArrayDataset):
        return torch.as_tensor(ds.y).reshape(-1)
    if isinstance(ds, torch.utils.data.Subset):
        inner = _labels(ds.dataset)
        return None if inner is None else inner[torch.as_tensor(list(ds.indices), dtype=torch.long)]
    if isinstance(ds, torch.utils.data.TensorDataset) and len(ds.tensors) == 2:
        t = ds.tensors[1]
        return t.reshape(-1) if t.dim() == 1 and not t.is_floating_point() else None
    t = getattr(ds, "targets", None)
    if t is None or isinstance(t, (str, bytes)):
        return None
    try:
        t = torch.as_tensor(np.asarray(t)).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        return None
    return t if len(t) == len(ds) and not t.is_floating_point() else None


def _classes(ds) -> Optional[int]:
    while isinstance(ds, torch.utils.data.Subset):
        ds = ds.dataset
    c = getattr(ds, "classes", None)
    return len(c) if isinstance(c, (list, tuple)) and c else None


def _sample(ds, what: str):
    try:
        item = ds[0]
    except Exception as e:
        raise ValueError(f"{what}[0] could not be read ({type(e).__name__}: {e})") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise ValueError(f"{what}[0] must be an (input, label) pair, got {type(item).__name__}"
                         + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
    x, y = item
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what}[0]: the input must be a floating-point tensor (or numpy array), got {got}; "
                         "convert it in the dataset (e.g. uint8 images / 255)")
    if isinstance(y, torch.Tensor) and y.numel() == 1 and not y.is_floating_point():
        y = int(y)
    if isinstance(y, bool) or not isinstance(y, numbers.Integral):
        raise ValueError(f"{what}[0]: the label must be an integer class index, got {y!r}")
    return tuple(x.shape), int(y)


def from_datasets(train: Dataset, test: Dataset, num_classes: Optional[int] = None, in_shape=None,
                  kind: Optional[str] = None, name: str = "custom", meta: Optional[dict] = None) -> TaskData:
    """A :class:`TaskData` of any two torch Datasets of ``(input, label)`` pairs, for ``fit``, ``Trainer``
    and ``--dataset package.module:factory``.

    What is not given is inferred: ``in_shape`` from ``train[0]``; ``kind`` from its rank (1 or 3:
    ``'image'`` ``[F]``/``[C, H, W]``, a static input encoded over T steps; 4: ``'frames'`` ``[T, C, H, W]``;
    rank 2 is ambiguous, give ``kind='sequence'`` for ``[T, F]`` or add a channel axis to an image);
    ``num_classes`` from ``.classes``, or from the labels' maximum + 1 where they are known without
    reading samples (``ArrayDataset``, ``TensorDataset(x, y)``, ``.targets``, ``Subset`` of those).  Datasets other than
    :class:`ArrayDataset` are read sample by sample through a ``DataLoader`` (``TrainConfig.num_workers``).

    Example::

        >>> from torch.utils.data import TensorDataset
        >>> x, y = torch.rand(20, 1, 6, 6), torch.arange(20) % 3
        >>> data = from_datasets(TensorDataset(x[:16], y[:16]), TensorDataset(x[16:], y[16:]))
        >>> data.kind, data.in_shape, data.num_classes
        ('image', (1, 6, 6), 3)

    Inputs: samples ``x`` (float) and integer labels.  Output: a :class:`TaskData`.
    """
    for what, ds in (("train", train), ("test", test)):
        if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
            raise TypeError(f"{what} must be a torch Dataset (with __getitem__ and __len__), got {type(ds).__name__}")
        if len(ds) == 0:
            raise ValueError(f"{what} is empty")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    shape, _ = _sample(train, "train")
    test_shape, _ = _sample(test, "test")
    if in_shape is not None:
        in_shape = tuple(int(v) for v in in_shape)
        if in_shape != shape:
            raise ValueError(f"in_shape={in_shape} does not match train[0]'s input shape {shape}")
    if test_shape != shape:
        raise ValueError(f"test samples have shape {test_shape}, train samples {shape}: both splits must match")
    if kind is None:
        kind = {1: "image", 3: "image", 4: "frames"}.get(len(shape))
        if kind is None:
            raise ValueError(f"kind cannot be inferred from samples of shape {shape}: pass kind='sequence' for "
                             "[T, F] sequences or kind='image' (a static input), or reshape images to [C, H, W]")
    check_choice("kind", kind, KINDS)
    labels = [_labels(train), _labels(test)]
    if num_classes is None:
        num_classes = _classes(train)
        if num_classes is None and all(t is not None for t in labels):
            num_classes = int(max(int(t.max()) for t in labels)) + 1
        if num_classes is None:
            raise ValueError("num_classes cannot be inferred without reading every sample (the datasets have no "
                             ".classes or .targets, and are not ArrayDatasets): pass num_classes=")
    check_int("num_classes", num_classes, ge=2)
    for what, t in zip(("train", "test"), labels):
        if t is not None and len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(f"{what} labels must be in 0..{num_classes - 1} (num_classes={num_classes}), got "
                             f"{int(t.min())}..{int(t.max())}")
    return TaskData(name, train, test, int(num_classes), shape, kind=kind, meta=dict(meta or {}))


def _digits(data_dir=None, download=True) -> TaskData:
    """scikit-learn's 8x8 digits (shipped with scikit-learn: no folder, no download)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    return TaskData("digits", ArrayDataset(torch.from_numpy(xtr), torch.from_numpy(ytr)),
                    ArrayDataset(torch.from_numpy(xte), torch.from_numpy(yte)), 10, (1, 8, 8))


_digits.reads_data_dir = False


@contextlib.contextmanager
def undo_on_failure(root: Path):
    """Run a download into ``root``; if it raises, remove every folder and file it created (the folders
    from the first missing ancestor of ``root`` down, and new files under an existing ``root``), then
    re-raise."""
    root = Path(root)
    first_new = None
    for p in [root, *root.parents]:
        if p.exists():
            break
        first_new = p
    before = set(root.rglob("*")) if root.exists() else set()
    try:
        yield
    except BaseException:
        if first_new is not None:
            shutil.rmtree(first_new, ignore_errors=True)
        elif root.exists():
            for p in sorted(set(root.rglob("*")) - before, key=lambda q: len(q.parts), reverse=True):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise


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
        torchvision = require("torchvision", f"downloading dataset {name!r}", pip="'neuroq[data]'")
        cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}[name]
        try:
            with undo_on_failure(root):
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
