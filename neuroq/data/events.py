r"""Event-camera data through tonic: N-MNIST as frames ``[T, 2, 34, 34]`` (``--dataset nmnist``).

N-MNIST (Orchard, Jayawant, Cohen & Thakor, *Front. Neurosci.* 9:437, 2015) records MNIST digits with
an ATIS event camera making three saccades: a sample is a list of events :math:`(x, y, t, p)` on a
34x34 sensor with two polarities.  :func:`nmnist` turns each sample into ``T`` frames with tonic's
``ToFrame(n_time_bins=T)``: with the sample's first and last timestamps :math:`t_0, t_{last}` and the
window :math:`w = \lfloor (t_{last} - t_0) / T \rfloor` (integer microseconds), frame :math:`k` counts
the events of each polarity and pixel with :math:`t_0 + k w \le t < t_0 + (k + 1) w`,

.. math:: F[k, p, y, x] = \#\{\text{events } (x, y, t, p) : t_0 + k w \le t < t_0 + (k+1) w\},

so frames are event counts (float32), ``[T, P, H, W]`` per sample, and events at or after
:math:`t_0 + T w` (the remainder of the floor division, the last event among them) fall outside
every frame, as tonic defines it.  The frames are computed when a sample is read (nothing is
materialised; ``cache_dir`` keeps them on disk through ``tonic.DiskCachedDataset``).

Sources (``data_dir``):

* tonic's own download format: ``DIR/NMNIST/Train/<digit>/<id>.bin`` and ``Test/...`` (``DIR`` or
  ``DIR/NMNIST``); downloaded there by tonic when missing and ``download=True``;
* the small subset (slayerPytorch's ``NMNISTsmall``: ``<id>.bs2`` files with the lists
  ``train1K.txt`` / ``test100.txt``, 1000 + 100 samples): the ``NMNISTsmall`` folder, its parent, or
  the ``.tar.gz`` holding it (or a folder holding that archive).

Both use the same reader (``tonic.io.read_mnist_file``, 5 bytes per event) and the same binning.
Number of frames: the option ``T`` (``--dataset 'nmnist?T=10'``, default 4, the multi-step methods'
default ``-T``); the network runs one step per frame, so a method's ``-T`` must equal it.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validate import check_bool, check_int
from .datasets import TaskData, register_dataset, require

#: tonic's sensor size of N-MNIST: (x, y, polarity)
SENSOR_SIZE = (34, 34, 2)
#: frames per sample when ``T`` is not given (the multi-step methods' default ``-T``)
DEFAULT_FRAMES = 4
CLASSES = [str(d) for d in range(10)]
_SMALL_LISTS = {True: "train1K.txt", False: "test100.txt"}
_WHAT = "dataset 'nmnist'"


def _tonic():
    return require("tonic", _WHAT, pip="'neuroq[data]'")


def _events_dtype():
    return _tonic().datasets.NMNIST.dtype


def read_events(raw: bytes) -> np.ndarray:
    """The events of one N-MNIST recording (``.bin``/``.bs2`` bytes, 5 per event) as tonic's structured
    array with fields ``x, y, t, p`` (``tonic.io.read_mnist_file``)."""
    return _tonic().io.read_mnist_file(io.BytesIO(raw), dtype=_events_dtype(), is_stream=True)


def to_frames(T: int, sensor_size=SENSOR_SIZE) -> Callable:
    """tonic's ``ToFrame(sensor_size, n_time_bins=T)``: events -> int16 frames ``[T, P, H, W]`` (module docstring)."""
    check_int("T", T, ge=1)
    return _tonic().transforms.ToFrame(sensor_size=sensor_size, n_time_bins=T)


class NMNISTSmall(Dataset):
    """The N-MNIST small subset (``NMNISTsmall/<id>.bs2`` + ``train1K.txt``/``test100.txt``) from its
    folder or its ``.tar.gz``, with the interface of ``tonic.datasets.NMNIST``: ``ds[i]`` is
    ``(events, target)`` after ``transform`` (events: tonic's structured array ``x, y, t, p``).

    Args:
        path: the ``NMNISTsmall`` folder, or the ``.tar.gz`` archive holding it.
        train: the 1000 training samples (``train1K.txt``) or the 100 test samples (``test100.txt``).
        transform: applied to the events (e.g. :func:`to_frames`).
        first_saccade_only: keep only the events with :math:`t < 10^5` us (tonic's option).

    Example::

        ds = NMNISTSmall("nmnist-small.tar.gz", train=False)
        events, label = ds[0]     # events["t"] in microseconds
    """

    sensor_size = SENSOR_SIZE
    classes = CLASSES

    def __init__(self, path, train: bool = True, transform: Optional[Callable] = None,
                 first_saccade_only: bool = False):
        check_bool("train", train)
        check_bool("first_saccade_only", first_saccade_only)
        self.path, self.train, self.transform = Path(path), train, transform
        self.first_saccade_only = first_saccade_only
        listing = _SMALL_LISTS[train]
        self._raw: Optional[dict] = None
        if self.path.is_dir():
            text = (self.path / listing).read_text()
        else:
            try:
                tar = tarfile.open(self.path, "r:*")
            except tarfile.TarError as e:
                raise ValueError(f"{_WHAT}: {str(self.path)!r} is not a tar archive of the N-MNIST small subset "
                                 f"({e}); pass its .tar.gz, the NMNISTsmall folder, or tonic's NMNIST folder") from None
            with tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                if listing not in members:
                    raise FileNotFoundError(f"{_WHAT}: archive {str(self.path)!r} holds no {listing} (expected the "
                                            "N-MNIST small subset: NMNISTsmall/<id>.bs2 + train1K.txt/test100.txt)")
                text = tar.extractfile(members[listing]).read().decode()
                ids, _ = _parse_listing(text, listing)
                missing = [f"{i}.bs2" for i in ids if f"{i}.bs2" not in members]
                if missing:
                    raise FileNotFoundError(f"{_WHAT}: archive {str(self.path)!r} lacks {missing[:3]} listed in {listing}")
                # the split's recordings, read once (about 20 kB each); samples are binned when read
                self._raw = {i: tar.extractfile(members[f"{i}.bs2"]).read() for i in ids}
        self.ids, self.targets = _parse_listing(text, listing)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        sid = self.ids[index]
        raw = self._raw[sid] if self._raw is not None else (self.path / f"{sid}.bs2").read_bytes()
        events = read_events(raw)
        if self.first_saccade_only:
            events = events[events["t"] < 1e5]
        if self.transform is not None:
            events = self.transform(events)
        return events, self.targets[index]


def _parse_listing(text: str, name: str) -> tuple[list, list]:
    ids, labels = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{_WHAT}: {name}: expected '<sample id> <class>' per line, got {line!r}")
        ids.append(int(parts[0]))
        labels.append(int(parts[1]))
    return ids, labels


class _Relaxed:
    """tonic's NMNIST that takes an already extracted ``Train``/``Test`` folder as it is (tonic itself wants
    the zip beside it and at least 10000 files, else downloads); used with ``download=False``."""

    @staticmethod
    def build():
        base = _tonic().datasets.NMNIST

        def _check_exists(self):
            return any(Path(self.location_on_system, self.folder_name).glob("*/*.bin"))

        # named NMNIST: tonic reads from save_to/<class name>; pickled by its qualified name (module __getattr__)
        cls = type("NMNIST", (base,), {"_check_exists": _check_exists, "__module__": __name__})
        cls.__qualname__ = "RelaxedNMNIST"
        return cls


_RELAXED = None


def __getattr__(name):  # lets DataLoader workers unpickle RelaxedNMNIST (it is built on first use)
    global _RELAXED
    if name == "RelaxedNMNIST":
        if _RELAXED is None:
            _RELAXED = _Relaxed.build()
        return _RELAXED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Frames(Dataset):
    """``(frames, label)`` of an event dataset whose samples are already frames (numpy): frames become
    a float32 tensor ``[T, P, H, W]``, the label an ``int``."""

    def __init__(self, dataset, classes=CLASSES):
        self.dataset, self.classes = dataset, classes
        self.targets = list(getattr(dataset, "targets", [])) or None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        x, y = self.dataset[index]
        return torch.from_numpy(np.asarray(x, dtype=np.float32)), int(np.asarray(y))


def _source(data_dir, download: bool) -> tuple[str, Path]:
    """``('small', folder or archive)`` or ``('tonic', save_to)`` for ``data_dir`` (module docstring)."""
    if data_dir is None:
        root = Path.home() / ".cache" / "neuroq"
        return "tonic", root
    p = Path(data_dir).expanduser()
    if p.is_file():
        return "small", p
    if not p.is_dir():
        if download:
            return "tonic", p
        raise FileNotFoundError(f"{_WHAT}: data_dir {str(p)!r} does not exist")
    for cand in (p, p / "NMNISTsmall"):
        if (cand / _SMALL_LISTS[True]).is_file() and (cand / _SMALL_LISTS[False]).is_file():
            return "small", cand
    if (p / "NMNIST" / "Train").is_dir() or (p / "NMNIST" / "Test").is_dir():
        return "tonic", p
    if p.name == "NMNIST" and ((p / "Train").is_dir() or (p / "Test").is_dir()):
        return "tonic", p.parent
    archives = sorted(p.glob("*.tar.gz")) + sorted(p.glob("*.tgz"))
    small = [a for a in archives if "nmnist" in a.name.lower()]
    if len(small) == 1:
        return "small", small[0]
    if download:
        return "tonic", p
    raise FileNotFoundError(
        f"{_WHAT}: data_dir {str(p)!r} holds neither tonic's NMNIST folder (NMNIST/Train/<digit>/*.bin, "
        "NMNIST/Test/...) nor the small subset (NMNISTsmall/ with train1K.txt and test100.txt, or its .tar.gz); "
        "pass one of them, or allow the download")


def _tonic_split(save_to: Path, train: bool, transform, first_saccade_only: bool, download: bool):
    tonic = _tonic()
    folder = save_to / "NMNIST" / ("Train" if train else "Test")
    if not download:
        if not any(folder.glob("*/*.bin")):
            raise FileNotFoundError(f"{_WHAT}: {str(folder)!r} holds no <digit>/*.bin recordings (tonic's NMNIST "
                                    "format) and download is off")
        cls = __getattr__("RelaxedNMNIST")
    else:
        cls = tonic.datasets.NMNIST
    try:
        return cls(save_to=str(save_to), train=train, transform=transform, first_saccade_only=first_saccade_only)
    except Exception as e:  # no network, a proxy, a bad archive ...
        if isinstance(e, (FileNotFoundError, ValueError)):
            raise
        raise FileNotFoundError(f"{_WHAT}: tonic could not provide {str(folder)!r} ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); pass --data-dir with tonic's NMNIST "
                                "folder or the small subset") from None


def nmnist(data_dir=None, download: bool = True, T: int = DEFAULT_FRAMES, first_saccade_only: bool = False,
           cache_dir: Optional[str] = None) -> TaskData:
    """N-MNIST as ``T`` frames per sample (module docstring): a :class:`TaskData` of kind ``'frames'``,
    samples ``[T, 2, 34, 34]`` (event counts per polarity, row ``y``, column ``x``), 10 classes.

    Args:
        data_dir: tonic's folder (``DIR/NMNIST/Train``...), or the small subset's folder or ``.tar.gz``;
            ``None``: ``~/.cache/neuroq/NMNIST`` (downloaded by tonic).
        download: let tonic download the full dataset when ``data_dir`` lacks it.
        T: frames per sample (``ToFrame(n_time_bins=T)``); the network runs ``T`` steps.
        first_saccade_only: keep the events of the first saccade only (:math:`t < 100` ms).
        cache_dir: keep the computed frames in this folder (``tonic.DiskCachedDataset``, HDF5 files
            per sample, one subfolder per source, split, ``T`` and saccade option).

    Example::

        data = nmnist("nmnist-small.tar.gz", T=10)     # or load_dataset("nmnist?T=10", "nmnist-small.tar.gz")
        x, y = data.test[0]                            # x: [10, 2, 34, 34] float32 counts
    """
    check_int("T", T, ge=1)
    check_bool("first_saccade_only", first_saccade_only)
    kind, path = _source(data_dir, download)
    frame = to_frames(T)
    splits = {}
    for train in (True, False):
        if kind == "small":
            ds = NMNISTSmall(path, train=train, transform=frame, first_saccade_only=first_saccade_only)
        else:
            ds = _tonic_split(path, train, frame, first_saccade_only, download)
        if cache_dir is not None:
            tag = f"nmnist-{kind}-{'train' if train else 'test'}-T{T}{'-first' if first_saccade_only else ''}-n{len(ds)}"
            cached = _tonic().DiskCachedDataset(ds, cache_path=os.path.join(str(cache_dir), tag))
            cached.targets = ds.targets
            ds = cached
        splits[train] = Frames(ds)
    meta = dict(T=T, source=kind, first_saccade_only=first_saccade_only, frames="event counts [T, P, H, W]",
                steps_option="T")
    return TaskData("nmnist", splits[True], splits[False], 10, (T, SENSOR_SIZE[2], SENSOR_SIZE[1], SENSOR_SIZE[0]),
                    kind="frames", meta=meta)


register_dataset("nmnist", nmnist)
