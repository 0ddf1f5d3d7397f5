r"""``neuroq train --method lmu`` and ``--method hybrid-lmu``: Legendre Memory Unit classifiers of
sequences (psMNIST, sMNIST, ...), non-spiking and hybrid-spiking.

* ``lmu``: the LMU (Voelker, Kajić, Eliasmith, NeurIPS 2019) as :func:`neuroq.models.lmu_classifier`
  builds it.  By default the hidden cell has no recurrence of its own,
  :math:`h_t = \tanh(W[m_t; x_t] + b)`, so the whole network is parallel over time (Chilkuri &
  Eliasmith, ICML 2021) and, reading only the last step, trains in the last-step form
  (:math:`m_{T-1} = \sum_s H_{T-1-s}u_s`, one matrix product); ``--hidden-recurrent`` gives
  keras-lmu's ``SimpleRNNCell`` (sequential over time).
* ``hybrid-lmu``: the same network with the hidden activation (and optionally :math:`u`, :math:`m`)
  made hybrid-spiking, :math:`h_t = n_t/dt` (:class:`neuroq.neuron.SpikingActivation`; Voelker,
  Rasmussen, Eliasmith, arXiv 2002.03553), trained while ``dt`` moves from the non-spiking to the
  spiking regime with ``--dt-schedule`` (:class:`neuroq.neuron.SpikingSchedule`, applied at the start
  of every epoch).  The readout reads the spike counts of the last step (``--readout last``, the
  default) or the spike trains through a lowpass filter (``--readout lowpass``).

Both take sequence data (``TaskData.kind == 'sequence'``, samples ``[T, F]``)::

    neuroq train --method lmu --dataset psmnist --data-dir DIR --epochs 10 -b 100
    neuroq train --method hybrid-lmu --dataset psmnist --data-dir DIR --dt-schedule geometric:30:3:2
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

import torch.nn as nn

from ...layer.lmu import KERNEL_INITS, MODES
from ...models.lmu import hybrid_lmu_classifier, lmu_classifier
from ...neuron.hybrid import SpikingActivation, SpikingSchedule
from ..config import option, positive_float, positive_int
from .base import Method, MethodConfig, register

READOUTS = ("last", "lowpass")
#: the lowpass readout's initial time constant when ``readout_tau`` is not given (steps)
DEFAULT_READOUT_TAU = 20.0


def parse_schedule(s: str) -> str:
    """argparse type: a :meth:`SpikingSchedule.from_string` spec (checked, kept as the string)."""
    try:
        SpikingSchedule.from_string(s)
    except (TypeError, ValueError) as e:
        raise argparse.ArgumentTypeError(str(e))
    return s


@dataclass
class LMUConfig(MethodConfig):
    """Options of the LMU classifier (:func:`neuroq.models.lmu_classifier`)."""

    hidden: tuple = option((212,), "hidden widths: the LMU's hidden size (one LMU layer: give one width)",
                           nargs="+", parse=positive_int("--hidden"))
    order: int = option(256, "LMU order d: Legendre polynomials per memory channel", parse=positive_int("--order"))
    theta: Optional[float] = option(None, "LMU window theta in steps (default: the sequence length)",
                                    parse=positive_float("--theta"))
    memory_d: int = option(1, "LMU memory channels d_m (the width of u)", parse=positive_int("--memory-d"))
    hidden_recurrent: bool = option(False, "LMU hidden cell adds U h_{t-1} (keras SimpleRNNCell; sequential "
                                    "over time) instead of h_t = f(W [m_t; x_t] + b)")
    input_to_hidden: bool = option(True, "do not feed x_t to the LMU hidden cell beside m_t")
    kernel_init: str = option("ones", "initialiser of the LMU input encoder u = W_x x (keras names; ones = "
                              "keras-lmu's psMNIST example)", choices=KERNEL_INITS)
    readout: str = option("last", "what the linear readout reads: the last hidden step, or the hidden "
                          "sequence through a lowpass filter (learnable tau per unit) at the last step",
                          choices=READOUTS)
    readout_tau: Optional[float] = option(None, f"initial time constant (steps) of --readout lowpass "
                                          f"(default {DEFAULT_READOUT_TAU:g})", parse=positive_float("--readout-tau"))
    form: str = option("auto", "LMU form: auto (parallel FFT / last-step form when nothing feeds back into the "
                       "memory), fft, or recurrent (the streaming recurrence)", choices=MODES)

    def __post_init__(self):
        if isinstance(self.hidden, int) and not isinstance(self.hidden, bool):
            self.hidden = (self.hidden,)
        if not isinstance(self.hidden, (tuple, list)):
            raise ValueError(f"hidden must be one positive width for the LMU (one layer), got {self.hidden!r}")
        self.hidden = tuple(self.hidden)
        if len(self.hidden) != 1 or isinstance(self.hidden[0], bool) or not isinstance(self.hidden[0], int) \
                or self.hidden[0] < 1:
            raise ValueError(f"hidden must be one positive width for the LMU (one layer), got {self.hidden!r}")
        for k in ("order", "memory_d"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        if self.theta is not None and (isinstance(self.theta, bool) or not isinstance(self.theta, (int, float))
                                       or not self.theta > 0):
            raise ValueError(f"theta must be a number > 0 (or None: the sequence length), got {self.theta!r}")
        if self.kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {KERNEL_INITS}, got {self.kernel_init!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout_tau is not None:
            if isinstance(self.readout_tau, bool) or not isinstance(self.readout_tau, (int, float)) \
                    or not self.readout_tau > 0:
                raise ValueError(f"readout_tau must be a number > 0, got {self.readout_tau!r}")
            if self.readout != "lowpass":
                raise ValueError("readout_tau is the time constant of readout='lowpass'; it does not apply to "
                                 f"readout={self.readout!r}")
        if self.form not in MODES:
            raise ValueError(f"form must be one of {MODES}, got {self.form!r}")

    def lmu_kwargs(self, data) -> dict:
        """Keyword arguments of :func:`neuroq.models.lmu_classifier` for sequences ``data`` (``[T, F]``)."""
        steps, features = data.in_shape
        tau = None
        if self.readout == "lowpass":
            tau = DEFAULT_READOUT_TAU if self.readout_tau is None else float(self.readout_tau)
        return dict(input_size=features, num_classes=data.num_classes, hidden_size=self.hidden[0], order=self.order,
                    theta=float(steps) if self.theta is None else float(self.theta), memory_d=self.memory_d,
                    hidden_recurrent=self.hidden_recurrent, input_to_hidden=self.input_to_hidden,
                    kernel_init=self.kernel_init, mode=self.form, readout_tau=tau)


@dataclass
class HybridLMUConfig(LMUConfig):
    """Options of the hybrid-spiking LMU (:func:`neuroq.models.hybrid_lmu_classifier`)."""

    dt_schedule: str = option("geometric:30:3:2", "how dt (spikes per unit of activation per step) moves over "
                              "the epochs: kind:start_dt:end_dt:epochs[:warmup], kind geometric|linear|constant "
                              "(neuroq.neuron.SpikingSchedule); e.g. constant:1:1:1 spikes at dt=1 from the start",
                              parse=parse_schedule, metavar="SPEC")
    spiking_u: bool = option(False, "hybrid LMU: also quantise the memory input u to spike counts")
    spiking_m: bool = option(False, "hybrid LMU: also quantise the memory m (as the hidden cell reads it)")
    spike_seed: int = option(0, "seed of the spiking activations' random initial states (epoch e reseeds with "
                             "it and e, so a resumed run repeats the uninterrupted one)", parse=int)

    def __post_init__(self):
        super().__post_init__()
        self.schedule = SpikingSchedule.from_string(self.dt_schedule)
        if isinstance(self.spike_seed, bool) or not isinstance(self.spike_seed, int) or self.spike_seed < 0:
            raise ValueError(f"spike_seed must be an integer >= 0, got {self.spike_seed!r}")


class _LMUBase(Method):
    kinds = ("sequence",)

    def check(self, train, data=None) -> None:
        if train.amp:
            raise ValueError(f"--amp (mixed precision) is not supported by --method {self.name}: the LMU memory "
                             "(FFT over 2T points) and the spike counts run in full precision")
        if train.energy_penalty > 0:
            raise ValueError(f"--energy-penalty is not supported by --method {self.name}: the penalty counts binary "
                             "spikes, not the LMU's real-valued or multi-spike (n/dt) activities")
        if data is not None and data.kind == "sequence" and len(data.in_shape) != 2:
            raise ValueError(f"--method {self.name} needs sequences of shape [T, F]; --dataset {data.name} has "
                             f"samples of shape {tuple(data.in_shape)}")
        super().check(train, data)


@register("lmu")
class LMUMethod(_LMUBase):
    """``--method lmu``: the non-spiking LMU sequence classifier."""

    help = ("Legendre Memory Unit on sequences (psMNIST ...): linear Legendre memory + tanh hidden cell, "
            "parallel over time unless --hidden-recurrent")
    Config = LMUConfig

    def build_model(self, data) -> nn.Module:
        """:func:`~neuroq.models.lmu_classifier` for the sequences ``data``."""
        return lmu_classifier(**self.config.lmu_kwargs(data))


@register("hybrid-lmu")
class HybridLMUMethod(_LMUBase):
    """``--method hybrid-lmu``: the LMU classifier with hybrid-spiking activations whose ``dt`` follows
    ``dt_schedule`` over the epochs (:meth:`on_epoch`)."""

    help = ("hybrid-spiking LMU: hidden activation quantised to spike counts n/dt (SpikingActivation), dt moved "
            "from non-spiking to spiking by --dt-schedule")
    Config = HybridLMUConfig

    def build_model(self, data) -> nn.Module:
        """:func:`~neuroq.models.hybrid_lmu_classifier` for ``data``, starting at the schedule's epoch-0 ``dt``."""
        c = self.config
        return hybrid_lmu_classifier(dt=c.schedule.dt_at(0), spiking_u=c.spiking_u, spiking_m=c.spiking_m,
                                     seed=c.spike_seed, **c.lmu_kwargs(data))

    @staticmethod
    def activations(model: nn.Module) -> list:
        """The model's :class:`~neuroq.neuron.SpikingActivation` s, in module order."""
        return [m for m in model.modules() if isinstance(m, SpikingActivation)]

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """Set every activation's ``dt`` to ``schedule.dt_at(epoch)`` and reseed its initial states
        from ``(spike_seed, epoch, index)``."""
        model = getattr(model, "module", model)          # DistributedDataParallel
        self.config.schedule.apply(model, epoch)
        for k, act in enumerate(self.activations(model)):
            act.reseed((self.config.spike_seed * 1_000_003 + epoch * 1009 + k) % (2 ** 62))

    def dt_at(self, epoch: int) -> float:
        """``dt`` during epoch ``epoch`` (0-based)."""
        return self.config.schedule.dt_at(epoch)
