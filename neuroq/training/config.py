"""Typed configurations of a training run and their command-line form.

A run is described by two dataclasses: :class:`TrainConfig` (data, optimisation, seeds: what every
method shares) and the method's own ``Config`` (architecture, neuron parameters, quantizer states ...,
see :mod:`neuroq.training.methods`).  Both are stored in every checkpoint, so a run can be rebuilt,
resumed and compared exactly.

Fields declare their command-line option through :func:`option` metadata (help text, choices, a
short flag, whether the CLI shows it); :func:`add_options` turns a set of dataclasses into argparse
options -- one option per field name, shared by every method that has that field (``--tau`` is the
membrane time constant of every neuron family) -- and :func:`from_namespace` builds the dataclasses
back from what the user typed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from .._validate import check_bool, check_choice, check_int, check_real
from ..data.encode import ENCODINGS
from ..energy.penalty import penalty_kinds
from .log import LOGGERS

_MISSING = dataclasses.MISSING


def option(default=_MISSING, help: str = "", *, choices: Optional[Sequence] = None, flag: Optional[str] = None,
           parse: Optional[Callable[[str], Any]] = None, nargs: Optional[str] = None, cli: bool = True,
           metavar: Optional[str] = None, default_factory=_MISSING):
    """A dataclass field with its command-line description (see the module docstring)."""
    meta = dict(help=help, choices=choices, flag=flag, parse=parse, nargs=nargs, cli=cli, metavar=metavar)
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def record_option(record_type, name: str, **kw):
    """An option for field ``name`` of a neuron's parameter record (``neuroq.functional.LIFParameters``
    ...): the record's own default and help text, so the record is the one description of the parameter."""
    f = {g.name: g for g in dataclasses.fields(record_type)}[name]
    return option(f.default, f.metadata.get("help", ""), **kw)


def cli_name(name: str) -> str:
    """The command-line spelling of field ``name`` (``-T`` for the one-letter field ``T``)."""
    return "-" + name if len(name) == 1 else "--" + name.replace("_", "-")


def _positive(cast, name, strict=False, minimum=None):
    kind = "an integer" if cast is int else "a number"
    lo = (0 if strict else 1) if minimum is None else minimum

    def parse(s):
        try:
            v = cast(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be {kind}, got {s!r}")
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name} must be a finite number, got {s!r}")
        if not (v > lo if strict else v >= lo):
            raise argparse.ArgumentTypeError(f"{name} must be {'>' if strict else '>='} {lo}, got {v}")
        return v
    return parse


def finite_float(name):
    """argparse type: any finite number (the type of a float option without bounds)."""
    return _positive(float, name, minimum=-math.inf)


def positive_int(name):
    """argparse type: an integer >= 1, with an error naming the option."""
    return _positive(int, name)


def positive_float(name):
    """argparse type: a number > 0."""
    return _positive(float, name, strict=True)


def nonneg_float(name):
    """argparse type: a number >= 0."""
    return _positive(float, name, minimum=0)


def nonneg_int(name):
    """argparse type: an integer >= 0."""
    return _positive(int, name, minimum=0)


SCHEDULES = ("cosine", "cosine-step", "onecycle", "constant")
SHUFFLES = ("epoch", "stream")


def _check_dataset(spec):
    from ..data import check_dataset  # the data package registers its loaders on import

    return check_dataset(spec)


def _parse_dataset(s: str) -> str:
    """argparse type of ``--dataset``: a registered name, ``NAME?key=value&...`` or ``package.module:factory``."""
    try:
        return _check_dataset(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid choice: {e}")


@dataclass
class TrainConfig:
    """What every training run shares: the data, the optimisation, the seeds.

    ``shuffle='epoch'`` shuffles epoch ``e`` with a generator seeded ``seed * shuffle_seed_stride + e``
    (so a resumed run needs no saved RNG state); ``'stream'`` draws every epoch's order from one
    generator seeded with ``seed`` (its state is checkpointed).  ``schedule='cosine'`` anneals the
    learning rate over the epochs (one step per epoch), ``'cosine-step'`` over all minibatches.
    """

    dataset: str = option("digits", "dataset: digits (offline, from scikit-learn), mnist, fashion-mnist, cifar10, "
                          "nmnist (event frames), fsdd (audio), smnist, psmnist, smnist-rows, or any registered "
                          "name; NAME?key=value&... sets the dataset's options (quote it: 'nmnist?T=10'); "
                          "package.module:factory[?key=value...] calls your factory, which returns a TaskData or "
                          "(train, test) torch Datasets (docs/data.md)", parse=_parse_dataset, metavar="SPEC")
    data_dir: Optional[str] = option(None, "folder (or archive) with the dataset's files: IDX files for "
                                     "mnist/fashion-mnist, cifar-10-batches-py's parent for cifar10, tonic's NMNIST "
                                     "folder or the N-MNIST small-subset folder/.tar.gz for nmnist, the FSDD "
                                     "recordings folder/.tar.gz for fsdd")
    download: bool = option(True, "never download missing data (torchvision, tonic); fail if --data-dir lacks the "
                            "files")
    limit_train: Optional[int] = option(None, "use only the first N training samples", parse=positive_int("--limit-train"))
    limit_test: Optional[int] = option(None, "use only the first N test samples", parse=positive_int("--limit-test"))
    encoding: str = option("direct", "input encoding: direct (the analog input at every step) or rate "
                           "(Bernoulli spikes)", choices=ENCODINGS)
    epochs: int = option(30, "training epochs", parse=positive_int("--epochs"))
    batch_size: int = option(64, "minibatch size (split over the ranks with torchrun)", flag="-b",
                             parse=positive_int("--batch-size"))
    lr: float = option(1e-3, "learning rate (Adam)", parse=positive_float("--lr"))
    schedule: str = option("cosine", "learning-rate schedule: cosine over epochs, cosine over minibatches, "
                           "one-cycle (peak at --lr) over minibatches, or constant", choices=SCHEDULES)
    seed: int = option(0, "seed of the initialisation, the shuffling and the encoding noise", parse=int)
    amp: bool = option(False, "mixed precision (fp16 on CUDA, bf16 on CPU)")
    energy_penalty: float = option(0.0, "add LAM * penalty (per sample) to the loss; 0 disables "
                                   "(neuroq.energy.SynapticPenalty)", parse=nonneg_float("--energy-penalty"),
                                   metavar="LAM")
    penalty_kind: str = option("synaptic", "synaptic: spikes weighted by fan-out (= SOPs); rate-l1/rate-l2: plain "
                               "spike counts; an energy model name (lemaire, simple, loihi ...): the pJ that "
                               "model charges the spikes (neuroq.energy.ModelPenalty; LAM per pJ)",
                               choices=penalty_kinds())
    shuffle: str = option("epoch", "epoch order RNG (see TrainConfig)", choices=SHUFFLES, cli=False)
    shuffle_seed_stride: int = option(100003, "epoch e shuffles with seed * stride + e", cli=False)
    eval_every: int = option(1, "evaluate every N epochs (0: only after the last)", cli=False)
    val_fraction: float = option(0.1, "fraction of the training set held out (seeded) to choose the best epoch; "
                                 "0: no validation split (no best-epoch selection)")
    recalibrate_batches: int = option(10, "before each evaluation, re-estimate BatchNorm/PSPN/LBN running "
                                      "statistics over this many training batches (0: keep the moving averages)",
                                      parse=int)
    device: str = option("cpu", "cpu, cuda, cuda:0 ...", parse=lambda s: _device_arg(s))
    log: tuple = option((), "per-epoch logs in the output folder: csv (log.csv) and/or tensorboard (tensorboard/): "
                        "loss, accuracies, lr, energy per sample and per-layer firing rates", nargs="+",
                        choices=LOGGERS)
    log_samples: int = option(256, "samples metered for the per-epoch energy and firing rates of --log",
                              parse=positive_int("--log-samples"))
    num_workers: int = option(0, "DataLoader worker processes for datasets that are not in memory (cifar10, "
                              "nmnist, your own; batches are pinned for a CUDA device)", parse=int)

    #: fields that may differ when a run is resumed (they do not change what is computed)
    RESUMABLE = ("data_dir", "download", "device", "epochs", "log", "log_samples", "num_workers")

    def __post_init__(self):
        _check_dataset(self.dataset)
        check_choice("encoding", self.encoding, ENCODINGS)
        check_int("epochs", self.epochs, ge=1)
        check_int("batch_size", self.batch_size, ge=1)
        check_real("lr", self.lr, gt=0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("seed", self.seed)
        check_real("energy_penalty", self.energy_penalty, ge=0)
        check_choice("penalty_kind", self.penalty_kind, penalty_kinds())
        check_choice("shuffle", self.shuffle, SHUFFLES)
        check_int("shuffle_seed_stride", self.shuffle_seed_stride, ge=1)
        check_int("eval_every", self.eval_every, ge=0)
        check_real("val_fraction", self.val_fraction, ge=0, lt=1)
        check_int("recalibrate_batches", self.recalibrate_batches, ge=0)
        self.log = tuple(self.log)
        for k in self.log:
            check_choice("log", k, LOGGERS)
        check_device_name(self.device)
        if len(set(self.log)) != len(self.log):
            raise ValueError(f"log names a logger more than once: {list(self.log)}")
        check_int("log_samples", self.log_samples, ge=1)
        check_int("num_workers", self.num_workers, ge=0)
        for k in ("limit_train", "limit_test"):
            if getattr(self, k) is not None:
                check_int(k, getattr(self, k), ge=1)
        check_fields(self)


def _device_arg(text: str) -> str:
    try:
        return check_device_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--device must be cpu, cuda or cuda:N, got {text!r}") from None


def check_device_name(device) -> str:
    """``device`` names a torch device neuroq runs on: ``cpu``, ``cuda`` or ``cuda:N`` (whether it is present is
    checked when the run starts)."""
    import torch

    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, got {device!r}")
    return device


def to_dict(cfg) -> dict:
    """A config as plain data (tuples as lists), for checkpoints and JSON."""
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(cfg) for v in [getattr(cfg, f.name)]}


def from_dict(cls, d: dict, strict: bool = True):
    """Rebuild a config of class ``cls`` from :func:`to_dict` output (lists back to tuples).  A field the stored
    dict lacks (the config was written before the field existed) takes the value those runs had, from the
    class's ``STORED_BEFORE`` mapping where it names one, else the field's default."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown and strict:
        raise ValueError(f"{cls.__name__} has no fields {unknown}")
    kw = {k: v for k, v in getattr(cls, "STORED_BEFORE", {}).items() if k not in d}
    for k, v in d.items():
        if k in names:
            kw[k] = tuple(v) if isinstance(v, list) and isinstance(names[k].default, tuple) else v
    return cls(**kw)


def check_fields(cfg) -> None:
    """Check every field of the config dataclass ``cfg`` as the command line would: its type (from the
    default: bool, int, float, str, tuples of them; ``None`` only where that is the default), finite numbers,
    its ``choices`` and its option's ``parse`` (the bounds ``--lr`` or ``--hidden`` check on the command line).
    A bad value is a ``ValueError``/``TypeError`` naming the field and what was expected."""
    for f in dataclasses.fields(cfg):
        v, d, meta = getattr(cfg, f.name), _default(f), f.metadata
        if v is None:
            if d is None or "Optional" in str(f.type) or "None" in str(f.type):
                continue
            raise TypeError(f"{f.name} must be set (default {d!r}), got None")
        if len(_union_members(f.type)) > 1:  # several types (e.g. 'same', 'fp' or a number): the config checks it
            continue
        if meta.get("choices") and not isinstance(v, (tuple, list)):
            check_choice(f.name, v, meta["choices"])
        seq = isinstance(v, (tuple, list)) and isinstance(d, (tuple, list))
        items = v if seq else (v,)
        if seq and not v and d and meta.get("nargs") == "+":
            raise ValueError(f"{f.name} needs at least one value, got {v!r}")
        like = d[0] if isinstance(d, (tuple, list)) and d else d
        if like is None:
            t = str(f.type)
            like = 0.0 if "float" in t else 0 if "int" in t else "" if "str" in t else None
        for item in items:
            where = f"{f.name} (an element of {tuple(v)!r})" if seq else f.name
            if isinstance(like, bool):
                check_bool(where, item)
            elif isinstance(like, int):
                if not isinstance(item, numbers.Integral) or isinstance(item, bool):
                    if meta.get("parse") is None or isinstance(item, (bool, float)):
                        raise TypeError(f"{where} must be an integer, got {item!r}")
            elif isinstance(like, float):
                if not (isinstance(item, numbers.Real) and not isinstance(item, bool)):
                    if meta.get("parse") is None or not isinstance(item, str):
                        raise TypeError(f"{where} must be a number, got {item!r} ({type(item).__name__})")
                elif not math.isfinite(item):
                    raise ValueError(f"{where} must be a finite number, got {item!r}")
            elif isinstance(like, str) and not isinstance(item, str):
                raise TypeError(f"{where} must be a string, got {item!r} ({type(item).__name__})")
            parse = meta.get("parse")
            if parse is not None and parse not in (int, float, str):
                try:
                    parse(item if isinstance(item, str) else repr(item))
                except argparse.ArgumentTypeError as e:
                    raise ValueError(f"{where}: {e}") from None
    return None


def _union_members(annotation) -> set:
    """The non-None types a field's annotation names when it is a ``Union`` (or ``X | Y``); else empty."""
    t = annotation if isinstance(annotation, str) else str(annotation)
    if t.startswith(("Union[", "typing.Union[")):
        inner = t[t.index("[") + 1:-1]
    elif "|" in t and "[" not in t:
        inner = t.replace("|", ",")
    else:
        return set()
    return {p.strip() for p in inner.split(",")} - {"None", "NoneType", ""}


def _fields(cls) -> list:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _default(f):
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    return None


def add_options(parser: argparse.ArgumentParser, configs: dict[str, type], title: str = "method options") -> None:
    """Add one option per field of the dataclasses in ``configs`` (``{owner name: class}``).

    A field name shared by several classes becomes one option (its choices the union); its help says
    which owners use it.  Defaults are not set here (``argparse.SUPPRESS``): :func:`from_namespace`
    takes each class's own default, and knows which options the user actually gave."""
    by_name: dict[str, list] = {}
    for owner, cls in configs.items():
        for f in _fields(cls):
            by_name.setdefault(f.name, []).append((owner, f))
    group = parser.add_argument_group(title)
    for name, uses in by_name.items():
        owners = [o for o, _ in uses]
        f = uses[0][1]
        meta = f.metadata
        helps = {}
        for o, g in uses:
            helps.setdefault(g.metadata.get("help", ""), []).append(o)
        text = "; ".join(f"{', '.join(os_)}: {h}" if len(helps) > 1 else h for h, os_ in helps.items())
        defaults = {o: _default(g) for o, g in uses}
        if len(configs) > 1:
            dflt = ", ".join(f"{o}={_fmt(v)}" for o, v in defaults.items()) if len(set(map(repr, defaults.values()))) > 1 \
                else _fmt(next(iter(defaults.values())))
            text += f" [{'/'.join(owners) if len(owners) < len(configs) else 'all'}; default {dflt}]"
        elif not isinstance(_default(f), bool):
            text += f" (default: {_fmt(_default(f))})"
        flags = list(dict.fromkeys(([meta["flag"]] if meta.get("flag") else []) + [cli_name(name)]))
        d = _default(f)
        kw = dict(dest=name, default=argparse.SUPPRESS, help=text)
        if isinstance(d, bool):
            if d:
                group.add_argument("--no-" + name.replace("_", "-"), action="store_false", **kw)
            else:
                group.add_argument(*flags, action="store_true", **kw)
            continue
        choices = []
        for _, g in uses:
            cs = g.metadata.get("choices") or ()
            for c in (cs() if callable(cs) else cs):
                if c not in choices:
                    choices.append(c)
        if choices:
            kw["choices"] = choices
        parse = meta.get("parse")
        if parse is None and isinstance(d, float):
            parse = finite_float(flags[-1])
        elif parse is None and d is not None and not isinstance(d, (tuple, list)):
            parse = type(d)
        if parse is not None:
            kw["type"] = parse
        if meta.get("nargs"):
            kw["nargs"] = meta["nargs"]
        if meta.get("metavar"):
            kw["metavar"] = meta["metavar"]
        group.add_argument(*flags, **kw)


def _fmt(v):
    if isinstance(v, (tuple, list)):
        return " ".join(map(str, v))
    return str(v)


def given(ns: argparse.Namespace, cls) -> dict:
    """The fields of ``cls`` the user gave on the command line (present in the namespace)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(ns).items() if k in names}


def from_namespace(cls, ns: argparse.Namespace, **extra):
    """``cls(**given options, **extra)``: unspecified fields keep the class's defaults."""
    kw = given(ns, cls)
    kw.update(extra)
    for f in dataclasses.fields(cls):
        if f.name in kw and isinstance(kw[f.name], list) and isinstance(_default(f), tuple):
            kw[f.name] = tuple(kw[f.name])
    return cls(**kw)


def field_names(cls) -> Iterable[str]:
    """The field names of the dataclass ``cls``, in declaration order."""
    return [f.name for f in dataclasses.fields(cls)]
