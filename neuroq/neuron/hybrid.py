r"""Hybrid-spiking activation (quantiser with temporally diffused error) and its dt schedule.

Voelker, Rasmussen, Eliasmith, "A Spike in Performance: Training Hybrid-Spiking Neural Networks with
Quantized Activation Functions", arXiv 2002.03553.  The semantics are ABR's
(``pytorch_spiking.SpikingActivation``); the equations and the exact fixed-point arithmetic are in
:mod:`neuroq.functional.hybrid`.

.. math::
    v \leftarrow v + f(x_t)\,dt,\quad n_t = \lfloor v\rfloor,\quad v \leftarrow v - n_t,\quad
    a_t = n_t/dt,\qquad \frac{\partial a_t}{\partial x_t} := f'(x_t)

**The interpolation knob is** ``dt``.  :math:`f(x)\,dt` is the expected number of spikes per step,
so a large ``dt`` gives many spikes per step (multi-bit counts; as ``dt`` grows,
:math:`|a_t - f(x_t)| < 1/dt` for a state in [0, 1): the non-spiking network) and a small ``dt``
gives a true spiking network (for :math:`|f| \le 1`, e.g. ``tanh``, ``dt = 1`` means at most one
spike, of either sign, per step).  neuroq exposes only ``dt``, not a separate "maximum spikes per
step": for a bounded activation :math:`|f| \le f_{max}` the most spikes per step is
:math:`\lceil f_{max}\,dt\rceil`, so the two are one knob, and ``dt`` also covers unbounded
activations (ReLU).  :class:`SpikingSchedule` moves ``dt`` over training.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
import torch.nn as nn

from .._validate import check_bool, check_callable, check_choice, check_int, check_real, check_step_input
from ..functional import hybrid as FH
from .base import Neuron

INITIAL_STATES = ("random", "zeros")


class SpikingActivation(Neuron):
    r"""Hybrid-spiking activation: any base activation :math:`f` turned into integer spike counts.

    .. math::
        v_t = v_{t-1} + f(x_t)\,dt - n_t,\qquad n_t = \lfloor v_{t-1} + f(x_t)\,dt \rfloor,\qquad
        a_t = n_t / dt

    with the state :math:`v \in [0, 1)` carried across steps (the quantisation error is diffused in
    time, so :math:`|\sum_t n_t - \sum_t f(x_t)\,dt| < 1` for every neuron) and the gradient of the
    base activation in backward, :math:`\partial a_t/\partial x_t = f'(x_t)` ("spiking-aware
    training"; Voelker, Rasmussen, Eliasmith, arXiv 2002.03553; ABR's pytorch-spiking).  Negative
    :math:`f` gives negative counts.  The multi-step forward is the closed form
    :math:`n_t = \lfloor C_t\rfloor - \lfloor C_{t-1}\rfloor` of the running sum :math:`C`, computed
    exactly (:mod:`neuroq.functional.hybrid`), so it equals the step-by-step loop bit for bit.

    The state ``v`` is a SpikingJelly memory: ``functional.reset_net`` (or ``neuroq.reset_net``) sets
    it back to ``None`` and the next step draws a new initial state.  Call it between batches.

    Args:
        activation: the base activation :math:`f` (any callable or module; default ``nn.ReLU()``).
        dt: spikes per unit of :math:`f` per step (> 0); the interpolation knob (module docstring).
            Note ABR's default is 0.001 (seconds); neuroq's steps are unitless and its default 1.0.
        spiking_aware_training: if False, in training mode the output is :math:`f(x)` itself (the
            state is left untouched) and spikes are produced only in eval mode (as ABR).
        initial_state: ``'random'`` (uniform in [0, 1), drawn from a seeded ``torch.Generator``
            created on the input's device), ``'zeros'``, or a tensor in [0, 1) broadcastable to one
            step's input ``[N, ...]`` (kept as the buffer ``initial_v``, so it follows ``.to(device)``).
        seed: seed of the generator for ``'random'``; ``None`` draws one from torch's global RNG at
            construction (reproducible under ``torch.manual_seed``).
        reseed_on_reset: with ``'random'``, restart the generator at every reset, so every sequence
            starts from the same random state (deterministic evaluation); by default the stream
            continues and each sequence gets a fresh draw (as ABR's ``torch.rand`` per call).
        step_mode: ``'s'`` (input ``[N, ...]``) or ``'m'`` (input ``[T, N, ...]``).

    Inputs: ``x`` ``[N, ...]`` (``'s'``) or ``[T, N, ...]`` (``'m'``).
    Outputs: the same shape and dtype, values :math:`n/dt` (use :meth:`counts` for :math:`n`).
    State: ``v`` ``[N, ...]`` float64 on the input's device.  ``state_dict()`` carries ``dt`` (extra state).

    Example::

        act = SpikingActivation(torch.tanh, dt=4.0, step_mode="m")
        a = act(torch.randn(784, 32, 212))        # [T, N, F]; values n/4 with n in -4..4
        n = act.counts(a)                          # the integer counts n
        neuroq.reset_net(act)
    """

    #: the energy meter reads its output as spike counts n/dt (``counts``) and records their bits
    energy_counts = True

    def __init__(self, activation: Optional[Callable] = None, dt: float = 1.0,
                 spiking_aware_training: bool = True,
                 initial_state: Union[str, torch.Tensor] = "random", seed: Optional[int] = None,
                 reseed_on_reset: bool = False, step_mode: str = "s"):
        super().__init__()
        self.activation = check_callable("activation", nn.ReLU() if activation is None else activation)
        self.dt = dt
        self.spiking_aware_training = check_bool("spiking_aware_training", spiking_aware_training)
        if isinstance(initial_state, torch.Tensor):
            v0 = initial_state.detach().to(torch.float64)
            if v0.numel() and not bool(((v0 >= 0) & (v0 < 1)).all()):
                raise ValueError("initial_state must hold values in [0, 1), got a tensor with min "
                                 f"{float(v0.min())} and max {float(v0.max())}")
            self.register_buffer("initial_v", v0.clone())
            self.initial_state = "tensor"
        else:
            self.initial_state = check_choice("initial_state", initial_state, INITIAL_STATES)
            self.register_buffer("initial_v", None)
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()))
        self.seed = check_int("seed", seed, ge=0)
        self.reseed_on_reset = check_bool("reseed_on_reset", reseed_on_reset)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self._generators: dict = {}
        self.register_memory("v", None)

    # ---- the knob -------------------------------------------------------------------------
    @property
    def dt(self) -> float:
        """The interpolation knob: spikes per unit of :math:`f` per step (finite, > 0; settable)."""
        return self._dt

    @dt.setter
    def dt(self, value: float):
        """Check (finite, > 0) and set ``dt``."""
        value = check_real("dt", value, gt=0)
        if not math.isfinite(value):
            raise ValueError(f"dt must be finite, got {value!r}")
        self._dt = value

    # the knob travels with the weights: ``state_dict()`` holds ``dt`` (as the module's extra state), so
    # a checkpoint taken at any point of a SpikingSchedule reloads with the dt it was trained at
    def get_extra_state(self) -> dict:
        """``{'dt': dt}``, saved by ``state_dict()`` so a checkpoint keeps the ``dt`` it was trained at."""
        return {"dt": self._dt}

    def set_extra_state(self, state) -> None:
        """Restore ``dt`` from the ``{'dt': ...}`` saved by :meth:`get_extra_state`."""
        if not isinstance(state, dict) or "dt" not in state:
            raise ValueError(f"{type(self).__name__}: extra state must be a dict with 'dt', got {state!r}")
        self.dt = float(state["dt"])

    def counts(self, a: torch.Tensor) -> torch.Tensor:
        """Integer spike counts :math:`n = a\\,dt` of an output ``a`` of this module (float64, rounded)."""
        return torch.round(a.detach().to(torch.float64) * self._dt)

    # ---- state ------------------------------------------------------------------------------
    def _generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        g = self._generators.get(key)
        if g is None:
            g = torch.Generator(device=device)
            g.manual_seed(self.seed)
            self._generators[key] = g
        return g

    def reseed(self, seed: Optional[int] = None) -> None:
        """Restart the random initial-state stream (with a new ``seed`` if given)."""
        if seed is not None:
            self.seed = check_int("seed", seed, ge=0)
        self._generators = {}

    def _initial_v(self, x: torch.Tensor) -> torch.Tensor:
        v = self._stored_state("v", x)
        if v is not None:
            return v
        if self.initial_state == "zeros":
            return torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        if self.initial_state == "random":
            return torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=self._generator(x.device))
        try:
            return self.initial_v.to(device=x.device).expand(x.shape).clone()
        except RuntimeError:
            raise ValueError(f"{type(self).__name__}: initial_state of shape {tuple(self.initial_v.shape)} does "
                             f"not broadcast to the input step shape {tuple(x.shape)}") from None

    def reset(self):
        """Set ``v`` back to ``None`` (the next step draws a new initial state); with ``reseed_on_reset`` also
        restart the random stream."""
        super().reset()
        if self.reseed_on_reset:
            self._generators = {}

    # ---- forward ----------------------------------------------------------------------------
    def _non_spiking(self) -> bool:
        return self.training and not self.spiking_aware_training

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step: ``x`` ``[N, ...]`` -> :math:`n_t/dt` of the same shape, updating ``v`` (:math:`f(x)` itself in
        training when ``spiking_aware_training`` is False)."""
        check_step_input(type(self).__name__, x, "s")
        if self._non_spiking():
            return self.activation(x)
        a, self.v = FH.spiking_activation_step(x, self._initial_v(x), self.activation, self._dt)
        return a

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """``x_seq`` ``[T, N, ...]`` -> :math:`n_t/dt` ``[T, N, ...]`` by the closed form over all steps, leaving
        ``v`` at the last step (:math:`f(x)` itself in training when ``spiking_aware_training`` is False)."""
        check_step_input(type(self).__name__, x_seq, "m")
        if self._non_spiking():
            return self.activation(x_seq)
        a, self.v = FH.spiking_activation_multi_step(x_seq, self._initial_v(x_seq[0]), self.activation, self._dt)
        return a

    def extra_repr(self):
        """``dt``, the training and initial-state options and the step mode, shown in the module's ``repr``."""
        return (f"dt={self._dt}, spiking_aware_training={self.spiking_aware_training}, "
                f"initial_state={self.initial_state!r}, step_mode={self.step_mode}")


# =============================================================================================
# the schedule that moves dt from non-spiking to spiking
# =============================================================================================
SCHEDULE_KINDS = ("geometric", "linear", "constant")


class SpikingSchedule:
    r"""Moves every :class:`SpikingActivation`'s ``dt`` over training, from non-spiking to spiking.

    For epoch :math:`e` (a float: fractional epochs give per-step updates), warm-up :math:`w` and
    progress :math:`p = \mathrm{clip}((e - w)/E, 0, 1)` over :math:`E` = ``epochs``:

    * ``'geometric'``: :math:`dt(e) = dt_0\,(dt_1/dt_0)^{p}` (equal ratios per epoch; the default,
      since the spikes per step, hence the bits per count, change by equal factors);
    * ``'linear'``: :math:`dt(e) = dt_0 + (dt_1 - dt_0)\,p`;
    * ``'constant'``: :math:`dt(e) = dt_1`.

    So :math:`dt(e) = dt_0` up to epoch :math:`w` and :math:`dt_1` from epoch :math:`w + E` on.  The
    paper trains "while smoothly interpolating between the non-spiking and spiking regimes"; its
    exact schedule could not be read: this is neuroq's choice.

    Args:
        start_dt: :math:`dt_0` (> 0), e.g. 100 (many spikes per step: nearly non-spiking).
        end_dt: :math:`dt_1` (> 0), e.g. 1 (at most one spike per step for :math:`|f| \le 1`).
        epochs: :math:`E` (> 0), the epochs over which dt moves.
        kind: ``'geometric'`` | ``'linear'`` | ``'constant'``.
        warmup: :math:`w` (>= 0), epochs held at ``start_dt`` first.

    Serialisable: :meth:`to_dict` / :meth:`from_dict` (a training config holds the dict) and
    :meth:`from_string` (``"geometric:100:1:10"`` = ``kind:start_dt:end_dt:epochs[:warmup]``, for
    the command line).

    Example::

        sched = SpikingSchedule(start_dt=100.0, end_dt=1.0, epochs=10)
        for epoch in range(12):
            sched.apply(model, epoch)     # sets every SpikingActivation's dt; returns it
            train_one_epoch(model)
    """

    def __init__(self, start_dt: float, end_dt: float, epochs: float, kind: str = "geometric",
                 warmup: float = 0.0):
        self.start_dt = check_real("start_dt", start_dt, gt=0)
        self.end_dt = check_real("end_dt", end_dt, gt=0)
        for name, val in (("start_dt", self.start_dt), ("end_dt", self.end_dt)):
            if not math.isfinite(val):
                raise ValueError(f"{name} must be finite, got {val!r}")
        self.epochs = check_real("epochs", epochs, gt=0)
        self.kind = check_choice("kind", kind, SCHEDULE_KINDS)
        self.warmup = check_real("warmup", warmup, ge=0)

    def progress(self, epoch: float) -> float:
        """:math:`p \\in [0, 1]` at ``epoch``."""
        epoch = check_real("epoch", epoch)
        return min(max((epoch - self.warmup) / self.epochs, 0.0), 1.0)

    def dt_at(self, epoch: float) -> float:
        """``dt`` at ``epoch`` (see the class docstring)."""
        p = self.progress(epoch)
        if self.kind == "constant":
            return self.end_dt
        if self.kind == "linear":
            return self.start_dt + (self.end_dt - self.start_dt) * p
        if p == 1.0:
            return self.end_dt
        return self.start_dt * (self.end_dt / self.start_dt) ** p

    def apply(self, model: nn.Module, epoch: float) -> float:
        """Set ``dt`` of every :class:`SpikingActivation` in ``model`` (itself included) to
        :meth:`dt_at` ``(epoch)``; returns that dt.  Raises if ``model`` has none."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        dt = self.dt_at(epoch)
        found = 0
        for m in model.modules():
            if isinstance(m, SpikingActivation):
                m.dt = dt
                found += 1
        if not found:
            raise ValueError("SpikingSchedule.apply: model has no SpikingActivation to schedule")
        return dt

    # ---- serialisation ----------------------------------------------------------------------
    _FIELDS = ("start_dt", "end_dt", "epochs", "kind", "warmup")

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable) that :meth:`from_dict` turns back into an equal schedule."""
        return {k: getattr(self, k) for k in self._FIELDS}

    @classmethod
    def from_dict(cls, d: dict) -> "SpikingSchedule":
        """Build a schedule from a dict of :meth:`to_dict` (keys a subset of the constructor's arguments)."""
        if not isinstance(d, dict):
            raise TypeError(f"SpikingSchedule.from_dict needs a dict, got {type(d).__name__}")
        unknown = set(d) - set(cls._FIELDS)
        if unknown:
            raise ValueError(f"SpikingSchedule.from_dict: unknown keys {sorted(unknown)}; expected a subset of "
                             f"{list(cls._FIELDS)}")
        return cls(**d)

    @classmethod
    def from_string(cls, spec: str) -> "SpikingSchedule":
        """``"kind:start_dt:end_dt:epochs[:warmup]"``, e.g. ``"geometric:100:1:10"``."""
        if not isinstance(spec, str):
            raise TypeError(f"spec must be a string, got {type(spec).__name__}")
        parts = spec.split(":")
        if len(parts) not in (4, 5):
            raise ValueError(f"spiking schedule spec must be 'kind:start_dt:end_dt:epochs[:warmup]' "
                             f"(e.g. 'geometric:100:1:10'), got {spec!r}")
        try:
            nums = [float(p) for p in parts[1:]]
        except ValueError:
            raise ValueError(f"spiking schedule spec {spec!r}: start_dt, end_dt, epochs and warmup must be "
                             "numbers") from None
        return cls(nums[0], nums[1], nums[2], kind=parts[0], warmup=nums[3] if len(nums) == 4 else 0.0)

    def __eq__(self, other):
        return isinstance(other, SpikingSchedule) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return (f"SpikingSchedule(start_dt={self.start_dt}, end_dt={self.end_dt}, epochs={self.epochs}, "
                f"kind={self.kind!r}, warmup={self.warmup})")
