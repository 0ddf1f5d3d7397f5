"""Run checkpoints, the one home of their format: what :class:`neuroq.training.loop.Trainer` writes after
every epoch (:func:`save_run`, :func:`save_best`), how a resumed run is checked against it and restored
(:func:`restore_run`), and how a trained model is rebuilt from it (:func:`load_run`, ``neuroq viz`` /
``energy``).  Files are written atomically (:func:`neuroq.io.save_checkpoint`) and hold plain data and
tensors only (they load with ``weights_only=True``)."""
from __future__ import annotations

import weakref

from pathlib import Path
from typing import Any, NamedTuple

from ..io import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig, from_dict, to_dict
from .methods import method_class

#: format tag of a run checkpoint (``checkpoint.pt``: everything a resumed run needs)
FORMAT = "neuroq-run-1"
#: format tag of a weights-only file (``best.pt``: the model of the best validation epoch)
WEIGHTS_FORMAT = "neuroq-weights-1"
#: file names in a run folder
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"


def run_state(trainer) -> dict:
    """Everything a run checkpoint holds for ``trainer`` (a :class:`~neuroq.training.loop.Trainer`)."""
    st = dict(format=FORMAT, epoch=len(trainer.history), model=trainer.model.state_dict(),
              optimizer=trainer.optimizer.state_dict(), history=trainer.history, train=to_dict(trainer.cfg),
              method=trainer.method.name, method_module=type(trainer.method).__module__,
              method_config=to_dict(trainer.method.config),
              data=dict(name=trainer.data.name, in_shape=list(trainer.data.in_shape),
                        num_classes=trainer.data.num_classes, kind=trainer.data.kind, meta=trainer.data.meta))
    if trainer.scheduler is not None:
        st["scheduler"] = trainer.scheduler.state_dict()
    if trainer.scaler is not None:
        st["scaler"] = trainer.scaler.state_dict()
    if trainer.shuffle_rng is not None:
        st["shuffle_rng"] = trainer.shuffle_rng.get_state()
    if trainer.extensions:
        st["extensions"] = trainer.extensions
    return st


def save_run(trainer, folder) -> Path:
    """Write ``folder/checkpoint.pt`` (atomically) for ``trainer``; returns its path."""
    path = Path(folder) / CHECKPOINT
    save_checkpoint(path, run_state(trainer))
    return path


def save_best(trainer, folder, epoch: int, val_acc: float) -> Path:
    """Write ``folder/best.pt``: the weights of ``trainer``'s model after ``epoch`` (its best validation
    accuracy ``val_acc`` so far)."""
    path = Path(folder) / BEST
    save_checkpoint(path, dict(format=WEIGHTS_FORMAT, epoch=epoch, val_acc=val_acc, model=trainer.model.state_dict()))
    return path


def restore_run(trainer, path) -> dict:
    """Load the run checkpoint at ``path`` into ``trainer`` (model, optimiser, schedule, scaler, shuffling
    state, history, extensions; ``trainer.start_epoch``) after checking it was trained with the same method
    and options (:func:`check_compatible`); returns the checkpoint."""
    ck = read_run(path)
    check_compatible(ck, trainer.method, trainer.cfg, path)
    trainer.model.load_state_dict(ck["model"])
    trainer.optimizer.load_state_dict(ck["optimizer"])
    if trainer.scheduler is not None and "scheduler" in ck:
        trainer.scheduler.load_state_dict(ck["scheduler"])
    if trainer.scaler is not None and "scaler" in ck:
        trainer.scaler.load_state_dict(ck["scaler"])
    if trainer.shuffle_rng is not None and "shuffle_rng" in ck:
        trainer.shuffle_rng.set_state(ck["shuffle_rng"])
    trainer.history = list(ck["history"])
    trainer.start_epoch = int(ck["epoch"])
    trainer.extensions = list(ck.get("extensions", []))
    return ck


def read_run(path) -> dict:
    """The checkpoint at ``path``, checked to be a neuroq run checkpoint (:class:`~neuroq.io.CheckpointError`
    otherwise)."""
    ck = load_checkpoint(path)
    if ck.get("format") != FORMAT or not {"model", "method", "method_config", "train", "epoch"} <= set(ck):
        keys = ", ".join(sorted(map(str, ck))[:6])
        raise CheckpointError(f"{str(path)!r} is not a neuroq training checkpoint (format {FORMAT!r}); "
                              f"it holds keys {keys}{' ...' if len(ck) > 6 else ''}")
    return ck


def check_compatible(ck: dict, method, cfg: TrainConfig, path) -> None:
    """Refuse to resume from ``ck`` with another method or other options (except ``TrainConfig.RESUMABLE``)."""
    if ck["method"] != method.name:
        raise ValueError(f"{path} holds a run of --method {ck['method']}, this run asks for --method {method.name}: "
                         "give another --out, the same options to resume it, or --overwrite to start over there")
    new = dict(to_dict(cfg), **{f"method.{k}": v for k, v in to_dict(method.config).items()})
    old = dict(ck["train"], **{f"method.{k}": v for k, v in ck["method_config"].items()})
    for k, v in new.items():
        if k in TrainConfig.RESUMABLE:
            continue
        if k in old and old[k] != v:
            name = k.split(".", 1)[-1]
            raise ValueError(f"{path} holds a run trained with {name}={old[k]!r}, this run asks for {name}={v!r}: "
                             "give another --out, the same options to resume it, or --overwrite to start over there")


class Run(NamedTuple):
    """A trained run rebuilt by :func:`load_run`; unpacks as ``method, model, data, train``."""

    method: Any
    model: Any
    data: Any
    train: Any

    def predict(self, x):
        """Class scores ``[N, classes]`` (their argmax is the prediction) for samples ``x`` as the dataset gives
        them -- a batch ``[N, *in_shape]`` or one sample ``in_shape`` (images ``[C, H, W]``, sequences ``[T, F]``,
        frames ``[T, C, H, W]``) -- encoded, reset and read out exactly as in training (the method's bound
        layout and :meth:`~neuroq.training.methods.Method.predict`)."""
        import torch

        x = torch.as_tensor(x)
        if not x.is_floating_point():
            raise TypeError(f"x must be floating-point samples as dataset {self.data.name!r} gives them, got dtype "
                            f"{x.dtype}" + ("" if x.is_complex() or x.dtype == torch.bool else
                                            " (8-bit images: x.float() / 255, digits: / 16)"))
        shape = tuple(self.data.in_shape)
        if tuple(x.shape) == shape:
            x = x.unsqueeze(0)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"x must be samples of shape {shape} ([N, {', '.join(map(str, shape))}] for a batch), as "
                             f"dataset {self.data.name!r} gives them (not encoded), got shape {tuple(x.shape)}")
        if not len(x):
            raise ValueError("x holds no samples")
        self._warn_out_of_range(x)
        p = next(iter(self.model.parameters()), None)
        device = p.device if p is not None else torch.device("cpu")
        self.model.eval()
        return self.method.predict(self.model, x.to(device=device, dtype=torch.get_default_dtype()))


    def _warn_out_of_range(self, x) -> None:
        """Warn when ``x`` lies well outside the range of the training inputs (the usual sign of samples scaled
        differently, e.g. 0..255 pixels for a [0, 1] dataset); finite values are checked by the method."""
        import warnings

        import torch

        ref = getattr(self.data.train, "x", None)
        if not isinstance(ref, torch.Tensor) or not ref.numel() or not x.numel() or not bool(torch.isfinite(x).all()):
            return
        known = _TRAIN_RANGE.get(id(ref))
        if known is None or known[0]() is not ref:  # once per training set, not per predicted batch
            known = _TRAIN_RANGE[id(ref)] = (weakref.ref(ref), float(ref.min()), float(ref.max()))
        _, lo, hi = known
        span = max(hi - lo, 1e-12)
        xl, xh = float(x.min()), float(x.max())
        if xl < lo - 0.5 * span or xh > hi + 0.5 * span:
            warnings.warn(f"x spans [{xl:g}, {xh:g}] but dataset {self.data.name!r} trained on [{lo:g}, {hi:g}]: "
                          "are the samples scaled as the dataset gives them?", stacklevel=3)


#: ``{id: (weakref, min, max)}`` of the training inputs ``Run.predict`` compared samples with (tensors compare
#: elementwise, so they cannot key a WeakKeyDictionary; the weakref tells a reused id from the same tensor)
_TRAIN_RANGE: dict = {}


def load_run(path, device: str = "cpu", data_dir=None, data=None) -> Run:
    """Rebuild the :class:`Run` ``(method, model, data, train config)`` of a ``neuroq train`` checkpoint (its file or
    the run folder); the model is in eval mode on ``device`` and the method is bound to the run's input
    layout (:meth:`~neuroq.training.methods.Method.bind`).

    The data is rebuilt from the stored ``--dataset`` spec (``data_dir`` overrides the stored folder)
    unless ``data`` (a :class:`neuroq.data.TaskData`) is given. A run trained on data given in Python
    (:func:`neuroq.data.from_datasets`) cannot be rebuilt from its spec: that is an error asking for
    ``data``, never a silent evaluation on other data."""
    from ..data import TaskData, load_dataset

    path = checkpoint_path(path)
    ck = read_run(path)
    cls = _method_class_of(ck, path)
    method = cls(from_dict(cls.Config, ck["method_config"]))
    train = from_dict(TrainConfig, ck["train"])
    stored = ck.get("data") or {}
    if data is None:
        data = load_dataset(train, data_dir=data_dir if data_dir is not None else train.data_dir, limit_train=None)
        how = f"rebuilt from its dataset spec {train.dataset!r}"
    elif not isinstance(data, TaskData):
        raise TypeError(f"data must be a neuroq.data.TaskData, got {type(data).__name__}")
    else:
        how = "given as data"
    got = dict(name=data.name, in_shape=list(data.in_shape), num_classes=data.num_classes)
    for key in ("name", "in_shape", "num_classes") if "name" in stored else ():
        if key == "name" and how.startswith("given"):
            continue  # the caller vouches for its own data under any name
        if stored.get(key) != got[key]:
            raise CheckpointError(
                f"{str(path)!r} was trained on data {stored.get('name')!r} ({key}={stored.get(key)!r}) but the data "
                f"{how} has {key}={got[key]!r}; pass the training data: load_run(path, data=...)")
    model = method.build_model(data)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{str(path)!r}: the stored weights do not fit the {ck['method']} model "
                              f"({str(e).splitlines()[0]})") from None
    method.bind(train, data)
    return Run(method, model.to(device).eval(), data, train)


def _method_class_of(ck: dict, path):
    """The class of the run's method; a method from outside neuroq that is not registered here is imported
    from the module the checkpoint records (``method_module``, with a note on stderr), or the error says
    what to add."""
    import sys

    from .. import plugins
    from .methods import available
    from .methods.base import UnknownMethodError

    name = ck["method"]
    try:
        return method_class(name)
    except UnknownMethodError:
        pass
    module = ck.get("method_module")
    if not module or module.startswith("neuroq.") or module == "__main__":
        raise ValueError(f"{str(path)!r} was trained with --method {name}, which is not registered here: add "
                         f"--import MODULE, the module that registers it (registered: {', '.join(available())}; "
                         "docs/training.md)") from None
    try:
        plugins.import_module(module, "--import")
    except plugins.PluginError as e:
        raise ValueError(f"this run was trained with --method {name} from module {module}, which cannot be imported "
                         f"here ({plugins._why(e.__cause__ or e)}): put it on the Python path and add --import "
                         f"{module}") from None
    if name not in available():
        raise ValueError(f"this run was trained with --method {name} from module {module}, but importing {module} "
                         f"registers no method {name!r} (registered: {', '.join(available())})") from None
    print(f"note: imported {module}, which registers --method {name} of this run (its checkpoint says so)",
          file=sys.stderr)
    return method_class(name)


def checkpoint_path(path) -> Path:
    """``path`` itself, or ``path/checkpoint.pt`` for a run folder; a comparison folder (``compare.json``) is an
    error that names its runs."""
    p = Path(path)
    if p.is_dir() and not (p / CHECKPOINT).exists() and (p / "compare.json").exists():
        runs = sorted(str(c.parent) for c in p.glob(f"*/seed*/{CHECKPOINT}"))
        raise CheckpointError(f"{str(p)!r} is a comparison (compare.json), not a run: give one of its runs"
                              + (f", e.g. {', '.join(runs[:3])}{' ...' if len(runs) > 3 else ''}" if runs else ""))
    return p / CHECKPOINT if p.is_dir() else p
