"""The training-method interface and its registry.

A method is a class with a typed ``Config`` dataclass (its options: architecture, neuron parameters,
quantizer states ...) registered under a name with :func:`register`.  The one training loop
(:mod:`neuroq.training.loop`) calls only the hooks declared here, so adding a method never changes
the loop, the CLI or the checkpoint format (:class:`Method` has an example).

Every option of a method's ``Config`` becomes a ``neuroq train`` option of the same name; an option
that the chosen method does not have is refused.  A method registered in your own module is on the
command line after ``--import that.module`` (or a ``neuroq.plugins`` entry point, :mod:`neuroq.plugins`).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, Optional, Type

import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import _sj
from ..._validate import check_choice, check_int, check_samples
from ...data import ENCODINGS, encode
from ...models import ARCHS, classifier
from ..config import TrainConfig, check_fields, option, positive_int, to_dict

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
        if isinstance(self.hidden, int) and not isinstance(self.hidden, bool):
            self.hidden = (self.hidden,)            # one hidden layer
        if not isinstance(self.hidden, (tuple, list)):
            raise ValueError(f"hidden must be a width or a sequence of widths, got {self.hidden!r}")
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


#: what a sample is (:attr:`neuroq.data.TaskData.kind`)
KINDS = ("image", "sequence", "frames")


@dataclass(frozen=True)
class Layout:
    """How a run's samples become the model's input, fixed once per run by :meth:`Method.bind`: the input
    ``encoding`` of images (:data:`neuroq.data.ENCODINGS`), what a sample is (``kind``: ``'image'``,
    ``'sequence'`` or ``'frames'``, :class:`neuroq.data.TaskData`) and the time steps ``T`` the model runs."""

    encoding: str = "direct"
    kind: str = "image"
    T: int = 1

    def __post_init__(self):
        check_choice("encoding", self.encoding, ENCODINGS)
        check_choice("kind", self.kind, KINDS)
        check_int("T", self.T, ge=1)


@dataclass
class Context:
    """What one step needs besides the batch and the method's :class:`Layout`: the generator of the
    encoding noise (seeded per epoch by the loop) and ``n_train``, the number of training samples the
    epoch draws from (the training split after the validation hold-out: the data-set size of a Bayesian
    method's ELBO)."""

    generator: Optional[torch.Generator] = None
    n_train: Optional[int] = None


class Method:
    """Base method: multi-step BPTT with cross-entropy on the time-averaged readout.

    Hooks the loop calls (override what differs): :meth:`build_model`, :meth:`make_optimizer`,
    :meth:`compute_loss` (default: :meth:`forward` and :meth:`loss`), :meth:`predict`,
    :meth:`inference_network` (the model to meter and plot) and :meth:`on_epoch`.  The loop
    (:func:`neuroq.training.loop.train_step`) owns the optimiser step, mixed precision, the energy
    penalty and the divergence check; only a method that updates the weights several times per batch
    (the online ones) overrides :meth:`train_step`, and then takes neither ``--amp`` nor
    ``--energy-penalty``.

    :meth:`bind` fixes the run's input :class:`Layout` once (encoding, kind of sample, T); every
    input the method makes (:meth:`inputs`, :meth:`record_input`) follows it.

    Example: a method with its own neuron, a quadratic integrate-and-fire (QIF) network.  :meth:`neuron`
    returns a *factory* (the network calls it once per spiking layer), not a neuron::

        from dataclasses import dataclass

        from neuroq.neuron import BaseNode
        from neuroq.training import register
        from neuroq.training.config import option
        from neuroq.training.methods import FeedForwardConfig, Method, TimeConfig


        class QIFNode(BaseNode):
            # quadratic integrate-and-fire: H[t] = V[t-1] + (X[t] + V[t-1] (V[t-1] - v_c)) / tau

            def __init__(self, tau=2.0, v_c=0.5, **kw):
                super().__init__(**kw)
                self.tau, self.v_c = tau, v_c

            def neuronal_charge(self, x, v):
                return v + (x + v * (v - self.v_c)) / self.tau


        @register("qif")
        class QIF(Method):
            help = "QIF network (quadratic integrate-and-fire), BPTT with surrogate gradients"

            @dataclass
            class Config(TimeConfig, FeedForwardConfig):
                tau: float = option(2.0, "membrane time constant (> 1)")

            def neuron(self):
                return lambda: QIFNode(tau=self.config.tau, detach_reset=True, step_mode="m")

    In Python, ``neuroq.training.fit(get("qif", T=4), data, TrainConfig())`` trains it; on the command line
    ``neuroq train --import that.module --method qif --tau 3`` (docs/training.md, "Writing a method").
    """

    name: ClassVar[str] = "base"
    help: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    #: what samples the method takes (``TaskData.kind``); the first is the kind of an unbound method
    kinds: ClassVar[tuple] = ("image",)

    def __init__(self, config: Optional[MethodConfig] = None, **options):
        fields = [f.name for f in dataclasses.fields(self.Config)]
        unknown = [k for k in options if k not in fields]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], fields, n=1, cutoff=0.6)
            raise ValueError(f"{unknown[0]} does not apply to method {self.name!r} (its options: "
                             f"{', '.join(fields) or 'none'})" + (f"; did you mean {close[0]}?" if close else ""))
        if config is None:
            config = self.Config(**options)
        elif options:
            config = dataclasses.replace(config, **options)
        if not isinstance(config, self.Config):
            raise TypeError(f"method {self.name!r} takes a {self.Config.__qualname__}, got {type(config).__name__}")
        check_fields(config)
        self.config = config
        self._layout: Optional[Layout] = None

    def __repr__(self):
        return f"{type(self).__name__}({self.config})"

    # ---- what the method is -----------------------------------------------------------------
    @property
    def T(self) -> int:
        """Time steps the model is run for (1 for methods without a time dimension)."""
        return getattr(self.config, "T", 1)

    @property
    def layout(self) -> Layout:
        """The input layout :meth:`bind` fixed; before that, direct input of the method's first kind."""
        return self._layout if self._layout is not None else Layout("direct", self.kinds[0], self.T)

    def bind(self, train: Optional[TrainConfig] = None, data=None) -> "Method":
        """Check the run's training options ``train`` (a :class:`~neuroq.training.TrainConfig`, default
        ``TrainConfig()``) and ``data`` (a :class:`neuroq.data.TaskData`) with :meth:`check`, then fix the
        input :class:`Layout` (``train.encoding``, ``data.kind``, :attr:`T`) that every later input follows.
        Returns the method (``get("lif").bind(cfg, data)``)."""
        train = TrainConfig() if train is None else train
        if not isinstance(train, TrainConfig):
            raise TypeError(f"train must be a neuroq.training.TrainConfig, got {type(train).__name__}")
        self.check(train, data)
        self._layout = Layout(train.encoding, data.kind if data is not None else self.kinds[0], self.T)
        return self

    @classmethod
    def steps_itself(cls) -> bool:
        """True for a method that overrides :meth:`train_step` (it updates several times per batch)."""
        return cls.train_step is not Method.train_step

    def check(self, train, data=None) -> None:
        """Refuse training options this method cannot honour (``train`` is a TrainConfig) and data
        it cannot read (``data`` a TaskData)."""
        if data is not None and data.kind not in self.kinds:
            raise ValueError(f"--method {self.name} takes {' or '.join(self.kinds)} data; --dataset {data.name} "
                             f"holds {data.kind}s")
        if data is not None and data.kind != "image":
            self._check_time_axis(train, data)
        if train.amp and self.steps_itself():
            raise ValueError(f"--amp (mixed precision) is not supported by --method {self.name}: it trains with "
                             "its own step, which runs in full precision")
        if train.energy_penalty > 0 and self.steps_itself():
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
        factory = self.neuron()
        if isinstance(factory, nn.Module):
            raise TypeError(f"{type(self).__name__}.neuron() returned a {type(factory).__name__} module; it must "
                            f"return a factory that makes one neuron per layer: return lambda: "
                            f"{type(factory).__name__}(...)")
        return classifier(getattr(data, "step_shape", data.in_shape), data.num_classes, factory, cfg.arch,
                          cfg.hidden)

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """The optimiser of ``model`` (Adam at ``lr`` by default)."""
        return torch.optim.Adam(model.parameters(), lr=lr)

    # ---- steps ------------------------------------------------------------------------------
    def inputs(self, x: torch.Tensor, ctx: Optional[Context] = None) -> torch.Tensor:
        """A batch -> the model input, as :attr:`layout` says: images ``[N, C, H, W]`` are encoded over ``T``
        steps (``[T, N, C, H, W]``, noise from ``ctx.generator``); sequences ``[N, T, F]`` and frames
        ``[N, T, C, H, W]`` are put time-first."""
        lay = self.layout
        if lay.kind == "image":
            return encode(x, self.T, lay.encoding, ctx.generator if ctx is not None else None)
        check_samples("x", x)
        return x.transpose(0, 1)

    def forward(self, model: nn.Module, x: torch.Tensor, ctx: Optional[Context] = None) -> torch.Tensor:
        """Logits ``[N, classes]`` for the batch ``x``; resets the network first."""
        _sj.reset_net(model)
        out = model(self.inputs(x, ctx))
        return out.mean(0) if out.dim() == 3 else out

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The task loss of ``logits`` for labels ``y`` (cross-entropy by default)."""
        return F.cross_entropy(logits, y)

    def compute_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context):
        """``(loss, logits)`` of one minibatch, with the graph for the backward pass (the loop adds the energy
        penalty, runs it under autocast and steps the optimiser)."""
        logits = self.forward(model, x, ctx)
        return self.loss(logits, y), logits

    def train_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer, ctx: Context):
        """Only for methods that update the weights several times per batch (the online ones): one minibatch
        with their own optimiser steps, returning ``(loss value: float, logits)``.  The loop calls it
        instead of its own step when a method overrides it (:meth:`steps_itself`); train any method with
        :func:`neuroq.training.loop.train_step`."""
        raise NotImplementedError(f"method {self.name!r} is stepped by the loop: call "
                                  "neuroq.training.loop.train_step(method, model, x, y, optimizer, ctx)")

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Optional[Context] = None) -> torch.Tensor:
        """Class scores ``[N, classes]`` of the batch ``x`` (no graph); the argmax is the prediction."""
        return self.forward(model, x, ctx)

    def inference_network(self, model: nn.Module) -> nn.Module:
        """The model to meter and visualize (e.g. SAF -> LIF); the trained model by default."""
        return model

    def record_input(self, x: torch.Tensor) -> torch.Tensor:
        """Input of :meth:`inference_network`'s model for a batch ``x`` (rasters, energy reports)."""
        return self.inputs(x)

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """Called by the loop at the start of every epoch (0-based), e.g. to move a schedule
        (hybrid-spiking activations' ``dt``); nothing by default."""

    def describe(self) -> dict:
        """``{'name', 'config'}``: the method's name and its options as plain data."""
        return dict(name=self.name, config=to_dict(self.config))


# ---- registry -------------------------------------------------------------------------------
#: how to add a method, for the errors that name the registered ones
HOW_TO_ADD = ("add your own with @neuroq.training.register in a module and pass --import that.module "
              "(docs/training.md)")


class UnknownMethodError(ValueError):
    """No method is registered under :attr:`name`; the message names the registered ones and how to add one."""

    def __init__(self, name: str, registered):
        self.name = name
        super().__init__(f"unknown method {name!r}; registered: {', '.join(registered)}; {HOW_TO_ADD}")


def register(name: str):
    """Class decorator: make a :class:`Method` subclass available as ``neuroq train --method name`` (from your
    own module: ``neuroq train --import your.module --method name``, :mod:`neuroq.plugins`)."""
    def deco(cls):
        old = _METHODS.get(name)
        if old is not None and old is not cls and (old.__module__, old.__qualname__) != (cls.__module__,
                                                                                            cls.__qualname__):
            raise ValueError(f"method {name!r} is already registered by {old.__module__}.{old.__qualname__}")
        if not dataclasses.is_dataclass(cls.Config):
            raise TypeError(f"{cls.__name__}.Config must be a dataclass")
        cls.name = name
        _METHODS[name] = cls  # the same class again (its module re-imported): the new one
        return cls
    return deco


def _load_builtins():
    for mod in BUILTIN_MODULES:
        importlib.import_module(mod)
    from ... import plugins

    plugins.load_default()  # entry points of neuroq.plugins and NEUROQ_IMPORT modules, once


def available() -> list[str]:
    """Sorted names of every registered method (the built-in ones and the plugins,
    :mod:`neuroq.plugins`, are imported first)."""
    _load_builtins()
    return sorted(_METHODS)


def method_class(name: str) -> Type[Method]:
    """The :class:`Method` subclass registered as ``name``; :class:`UnknownMethodError` (a ``ValueError``)
    naming the registered ones and how to add one if there is none."""
    _load_builtins()
    if name not in _METHODS:
        raise UnknownMethodError(name, sorted(_METHODS))
    return _METHODS[name]


def get(name: str, config: Optional[MethodConfig] = None, **options) -> Method:
    """An instance of the method registered as ``name``, configured by ``config`` or ``options``."""
    return method_class(name)(config, **options)


def configs() -> dict[str, type]:
    """``{method name: its Config class}`` of every registered method."""
    _load_builtins()
    return {name: _METHODS[name].Config for name in sorted(_METHODS)}
