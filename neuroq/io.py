"""Files and provenance: atomic writes, checkpoints, and the machine a result was measured on.

Every file neuroq writes goes through :func:`atomic_write_bytes`: the data goes to a temporary file
in the target's directory, is flushed and fsynced, and is renamed over the target (``os.replace`` is
atomic on POSIX), so a run killed at any moment leaves either the old or the new file, never a torn
one.  Temporary files left by a writer that was killed mid-write are removed by the next write to the
same target.  Files get the usual permissions (``0o666`` minus the umask), not ``mkstemp``'s ``0o600``.

Checkpoints hold only tensors, numbers, strings, lists and dicts, so they load with
``torch.load(weights_only=True)``; :func:`load_checkpoint` turns a missing, truncated, foreign or
corrupt file into a :class:`CheckpointError` that says what is wrong.
"""
from __future__ import annotations

import io
import json
import os
import platform
import random
import tempfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not one that neuroq wrote."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temps(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


def make_folder(path) -> Path:
    """``mkdir -p path``, with an error naming the part of ``path`` that is a file when one is in the way
    (instead of ``[Errno 17] File exists`` / ``[Errno 20] Not a directory``)."""
    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists() and not part.is_dir():
            raise NotADirectoryError(f"cannot make the folder {str(path)!r}: {str(part)!r} is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a directory")
    make_folder(path.parent)
    _remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (tensors and NumPy scalars as numbers, sets and
    tuples as lists, anything else as its ``str``)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default))


def _json_default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def save_checkpoint(path, state: dict) -> None:
    """``torch.save`` ``state`` atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist" if not path.exists()
                              else f"checkpoint {str(path)!r} is not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(path)!r} is empty")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled objects other than tensors/plain data
        why = ("it holds Python objects other than tensors and plain data, which neuroq never writes"
               if "weights_only" in str(e) and "Unsupported global" in str(e)
               else "the file is truncated, corrupt or not written by torch.save")
        raise CheckpointError(f"checkpoint {str(path)!r} cannot be read as a neuroq checkpoint: {why} "
                              f"({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a neuroq checkpoint")
    return state


def machine_info(device: str | torch.device | None = None) -> dict:
    """What a result was measured on (stored beside every number neuroq writes)."""
    from . import _sj

    info = dict(
        platform=platform.platform(),
        processor=platform.processor() or platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        python=platform.python_version(),
        torch=torch.__version__,
        spikingjelly=_sj.VERSION,
        cuda_available=torch.cuda.is_available(),
    )
    dev = torch.device(device) if device is not None else None
    if torch.cuda.is_available() and (dev is None or dev.type == "cuda"):
        idx = dev.index if dev is not None and dev.index is not None else 0
        info["gpu"] = torch.cuda.get_device_name(idx)
        info["cuda"] = torch.version.cuda
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except Exception:
        pass
    return info


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
