"""The training-method interface and its registry.

A method is a class with a typed ``Config`` dataclass (its options: architecture, neuron parameters,
quantizer states ...) registered under a name with :func:`register`.  The one training loop
(:mod:`neuroq.training.loop`) calls only the hooks declared here, so adding a method never changes
the loop, the CLI or the checkpoint format::

    @register("my-lif")
    class MyLIF(Method):
        help = "LIF network with my own neuron"

        @dataclass
        class Config(TimeConfig, FeedForwardConfig):
            tau: float = option(2.0, "membrane time constant (> 1)")

        def neuron(self):
            return MyLIFNode(tau=self.config.tau)

Every option of a method's ``Config`` becomes a ``neuroq train`` option of the same name; an option
that the chosen method does not have is refused.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, Optional, Type

import torch
import torch.nn as nn
import torch.nn.functional as tF

from ... import _sj
from ...data import encode
from ...models import ARCHS, classifier
from ..config import option, positive_int, to_dict

_METHODS: Dict[str, Type["Method"]] = {}

# modules that register the built-in methods (imported lazily, in this order)
BUILTIN_MODULES = [
    "neuroq.training.methods.bptt",
    "neuroq.training.methods.s2nn",
    "neuroq.training.methods.online",
    "neuroq.training.methods.maqd",
    "neuroq.training.methods.lmu",
    "neuroq.training.methods.rnn",
    "neuroq.training.methods.gmvi",
]


@dataclass
class MethodConfig:
    """Base of every method's configuration (no options)."""


@dataclass
class FeedForwardConfig(MethodConfig):
    """Options of the reference MLP/CNN (:func:`neuroq.models.classifier`)."""

    arch: str = option("auto", "network: mlp, cnn, or auto (MLP for inputs of <= 256 values, else CNN)",
                       choices=ARCHS)
    hidden: tuple = option((256, 256), "hidden widths of the MLP", nargs="+", parse=positive_int("--hidden"))

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        self.hidden = tuple(self.hidden)
        if not self.hidden or any(not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be positive integer widths, got {self.hidden!r}")


@dataclass
class TimeConfig(MethodConfig):
    """Options of methods that simulate several time steps."""

    T: int = option(4, "simulation time steps", flag="-T", parse=positive_int("-T"))

    def __post_init__(self):
        if isinstance(self.T, bool) or not isinstance(self.T, int) or self.T < 1:
            raise ValueError(f"T must be an integer >= 1, got {self.T!r}")
        super_post = getattr(super(), "__post_init__", None)
        if super_post is not None:
            super_post()


@dataclass
class Context:
    """What a step needs besides the batch: the input encoding, the generator of its noise, what a
    sample is (``kind``: ``'image'``, ``'sequence'`` or ``'frames'``, :class:`neuroq.data.TaskData`),
    mixed precision, the energy penalty the loop attached (added to the task loss by
    :meth:`extra_loss`), and ``n_train``, the number of training samples the epoch draws from (the
    training split after the validation hold-out: the data-set size of a Bayesian method's ELBO)."""

    encoding: str = "direct"
    generator: Optional[torch.Generator] = None
    kind: str = "image"
    amp: bool = False
    scaler: Optional[object] = None
    penalty: Optional[object] = None
    penalty_weight: float = 0.0
    n_train: Optional[int] = None

    def extra_loss(self):
        """``penalty_weight * penalty()`` (per sample), or 0 without a penalty."""
        if self.penalty is None or self.penalty_weight == 0.0:
            return 0.0
        return self.penalty_weight * self.penalty.penalty()


def amp_dtype(device: torch.device):
    return torch.float16 if device.type == "cuda" else torch.bfloat16


class Method:
    """Base method: multi-step BPTT with cross-entropy on the time-averaged readout.

    Hooks the loop calls (override what differs): :meth:`build_model`, :meth:`make_optimizer`,
    :meth:`train_step` (default: forward, :meth:`loss` + the loop's penalty, backward, step),
    :meth:`predict`, :meth:`convert_for_inference` (the model to meter and plot) and
    :meth:`record_input` (its input for one batch of images).
    """

    name: ClassVar[str] = "base"
    help: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    #: False where the method's own train step has no autocast (mixed precision)
    supports_amp: ClassVar[bool] = True
    #: False where the method's own train step does not add the loop's energy penalty
    supports_energy_penalty: ClassVar[bool] = True

    def __init__(self, config: Optional[MethodConfig] = None, **options):
        if config is None:
            config = self.Config(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        if not isinstance(config, self.Config):
            raise TypeError(f"method {self.name!r} takes a {self.Config.__qualname__}, got {type(config).__name__}")
        self.config = config

    def __repr__(self):
        return f"{type(self).__name__}({self.config})"

    # ---- what the method is -----------------------------------------------------------------
    @property
    def T(self) -> int:
        """Time steps the model is run for (1 for methods without a time dimension)."""
        return getattr(self.config, "T", 1)

    def check(self, train, data=None) -> None:
        """Refuse training options this method cannot honour (``train`` is a TrainConfig) and data
        it cannot read (``data`` a TaskData)."""
        if data is not None and data.kind not in self.kinds:
            raise ValueError(f"--method {self.name} takes {' or '.join(self.kinds)} data; --dataset {data.name} "
                             f"holds {data.kind}s")
        if data is not None and data.kind != "image":
            self._check_time_axis(train, data)
        if train.amp and not self.supports_amp:
            raise ValueError(f"--amp (mixed precision) is not supported by --method {self.name}: it trains with "
                             "its own step, which runs in full precision")
        if train.energy_penalty > 0 and not self.supports_energy_penalty:
            raise ValueError(f"--energy-penalty is not supported by --method {self.name} (it trains with its own "
                             "online step); use a method with the default training step, e.g. lif, if, s2nn, maqd")

    def _check_time_axis(self, train, data) -> None:
        """Sequences and frames carry their own time axis: the network runs one step per step of the data,
        so a method's ``T`` must equal the data's (it is refused otherwise), and there is nothing to encode."""
        if train.encoding != "direct":
            raise ValueError(f"--encoding {train.encoding} encodes static images over T steps; --dataset {data.name} "
                             f"holds {data.kind} with their own time axis, fed as they are: use --encoding direct")
        T, steps = getattr(self.config, "T", None), data.in_shape[0]
        if T is not None and T != steps:
            opt = data.meta.get("steps_option")
            how = f" or make the data {T} steps long with --dataset '{data.name}?{opt}={T}'" \
                if opt else ""
            raise ValueError(f"--dataset {data.name} holds {data.kind} of {steps} time steps and the network runs "
                             f"one step per step of the data, but --method {self.name} asks for -T {T}: give -T "
                             f"{steps}{how}")

    def neuron(self) -> Callable[[], nn.Module]:
        """Factory of the method's neuron (used by :meth:`build_model`)."""
        raise NotImplementedError(f"method {self.name!r} defines no neuron")

    def build_model(self, data) -> nn.Module:
        """The network for ``data`` (a :class:`neuroq.data.TaskData`): the reference MLP/CNN with
        :meth:`neuron` by default, built for one time step of the data (``data.step_shape``)."""
        cfg = self.config
        return classifier(getattr(data, "step_shape", data.in_shape), data.num_classes, self.neuron(), cfg.arch,
                          cfg.hidden)

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(model.parameters(), lr=lr)

    # ---- steps ------------------------------------------------------------------------------
    #: what samples the method takes (``TaskData.kind``)
    kinds: ClassVar[tuple] = ("image",)

    def inputs(self, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """A batch -> the model input: images ``[N, C, H, W]`` are encoded over ``T`` steps
        (``[T, N, C, H, W]``); sequences ``[N, T, F]`` and frames ``[N, T, C, H, W]`` are put time-first."""
        if ctx.kind == "image":
            return encode(x, self.T, ctx.encoding, ctx.generator)
        return x.transpose(0, 1)

    def forward(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Logits ``[N, classes]`` for images ``x``; resets the network first."""
        _sj.reset_net(model)
        out = model(self.inputs(x, ctx))
        return out.mean(0) if out.dim() == 3 else out

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return tF.cross_entropy(logits, y)

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer, ctx: Context):
        """One minibatch: returns ``(loss value: float, logits)``."""
        optimizer.zero_grad(set_to_none=True)
        if ctx.penalty is not None:
            ctx.penalty.clear()
        with torch.autocast(device_type=x.device.type, dtype=amp_dtype(x.device), enabled=bool(ctx.amp)):
            logits = self.forward(model, x, ctx)
            loss = self.loss(logits, y) + ctx.extra_loss()
        if not torch.isfinite(loss):  # diverged: no update (the loop stops the run)
            return float(loss.detach()), logits.detach()
        if ctx.scaler is not None:
            ctx.scaler.scale(loss).backward()
            ctx.scaler.step(optimizer)
            ctx.scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return float(loss.detach()), logits.detach()

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        return self.forward(model, x, ctx)

    def convert_for_inference(self, model: nn.Module) -> nn.Module:
        """The model to meter and visualize (e.g. SAF -> LIF); the trained model by default."""
        return model

    def record_input(self, x: torch.Tensor, encoding: str = "direct", kind: str = "image") -> torch.Tensor:
        """Input of :meth:`convert_for_inference`'s model for a batch ``x`` (rasters, energy reports)."""
        return self.inputs(x, Context(encoding=encoding, kind=kind))

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called by the loop at the start of every epoch (0-based), e.g. to move a schedule
        (hybrid-spiking activations' ``dt``); nothing by default."""

    def describe(self) -> dict:
        return dict(name=self.name, config=to_dict(self.config))


# ---- registry -------------------------------------------------------------------------------
def register(name: str):
    """Class decorator: make a :class:`Method` subclass available as ``neuroq train --method name``."""
    def deco(cls):
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__name__}")
        if not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass")
        cls.name = name
        _METHODS[name] = cls
        return cls
    return deco


def _load_builtins():
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)


def available() -> list[str]:
    _load_builtins()
    return sorted(_METHODS)


def method_class(name: str) -> Type[Method]:
    _load_builtins()
    if name not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(sorted(_METHODS))}; got {name!r}")
    return _METHODS[name]


def get(name: str, config: Optional[MethodConfig] = None, **options) -> Method:
    """An instance of the method registered as ``name``, configured by ``config`` or ``options``."""
    return method_class(name)(config, **options)


def configs() -> dict[str, type]:
    """``{method name: its Config class}`` of every registered method."""
    _load_builtins()
    return {name: _METHODS[name].Config for name in sorted(_METHODS)}
