r"""Energy accounting for hybrid-spiking networks (integer spike counts :math:`n/dt`) and the LMU memory.

Rules (Voelker, Rasmussen, Eliasmith, arXiv 2002.03553: spikes turn MACs into additions; the meter's
constants and fan-out rules are those of :mod:`neuroq.energy`):

* **Spike counts.**  An input :math:`a = n/dt` from a :class:`neuroq.neuron.SpikingActivation`
  carries :math:`|n|` spikes (the :math:`1/dt` and the sign are folded into the weights), each a
  synaptic event costing one accumulate per weight it meets, so it costs :math:`|n|\cdot` *fan-out*
  SOPs (linear: ``out_features``; conv: the meter's ``conv_fanout`` rule).
* **Real inputs** cost MACs as in the meter (linear: one MAC per input feature per output feature
  per row).
* **Per feature.**  For ``nn.Linear`` each input feature (last axis) is classified on its own: a
  feature is a spike-count feature when all its values in the call are integer multiples of
  :math:`1/dt` (to a relative tolerance of 1e-6), else real.  So a layer reading
  ``cat([spiking m, real x])`` (the LMU's hidden cell with ``input_to_hidden``) is charged SOPs for
  the first block and MACs for the second.  Other synaptic layers (convs, registered types) are
  classified per tensor.  Caveat: a real feature that is exactly 0 (or a multiple of 1/dt) in every
  value of a call is charged as silent spikes (0 SOPs), not MACs.
* **LMU memory** (:class:`neuroq.layer.lmu.LegendreMemory`), charged as the streaming recurrence
  (also when training used the FFT form): per step, sample and memory channel
  :math:`\text{order}^2` MACs for :math:`\bar A m` (dense, real state) plus, for :math:`\bar B u`,
  :math:`|n|\cdot\text{order}` SOPs when :math:`u` is a spike count (``u_activation``) or
  :math:`\text{order}` MACs when real.

**Bits of activity** (reported per ``SpikingActivation`` layer): :func:`neuroq.functional.hybrid.bits_of_activity`,
:math:`b_i = \lceil\log_2(1+\max|n_i|)\rceil + \mathbb 1[\min n_i < 0]` per neuron :math:`i` (max over
all steps and samples seen), averaged over the layer's neurons; and
:func:`~neuroq.functional.hybrid.significant_bits`, the mean :math:`\lceil\log_2(1+|n|)\rceil` over
nonzero events.

:class:`HybridEnergyMeter` is :class:`neuroq.energy.EnergyMeter` with these rules wired in.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Union

import torch
import torch.nn as nn

from .energy import EnergyMeter, synaptic_fns
from .functional.hybrid import bit_length
from .layer.lmu import LegendreMemory
from .neuron.hybrid import SpikingActivation

#: relative tolerance of the "integer multiple of 1/dt" test
COUNT_RTOL = 1e-6


def as_counts(x: torch.Tensor, dt: float):
    r"""``x`` read as spike counts at ``dt``: ``(n, is_count)`` with :math:`n = \mathrm{round}(x\,dt)`
    (float64) and ``is_count`` True where :math:`|x\,dt - n| \le 10^{-6}\max(1, |n|)`.

    Inputs: ``x`` any shape.  Outputs: two tensors of that shape.

    Example::

        as_counts(torch.tensor([4.0, 0.3]), dt=0.25)   # (tensor([1., 0.]), tensor([True, False]))
    """
    xd = x.detach().to(torch.float64) * float(dt)
    n = torch.round(xd)
    ok = (xd - n).abs() <= COUNT_RTOL * torch.clamp(n.abs(), min=1.0)
    return n, ok


def _empty_ops() -> dict:
    return dict(sops=0.0, macs=0, spikes=0.0, spike_elements=0, spike_features=0, real_features=0)


def linear_count_ops(m: nn.Linear, x: torch.Tensor, dt: float) -> dict:
    r"""Ops of ``nn.Linear`` ``m`` on input ``x`` ``[..., in_features]`` whose spike-count features carry :math:`n/dt`.

    Per input feature :math:`j`: if every value is a count (:func:`as_counts`), SOPs
    :math:`\mathrel{+}= \sum |n_{\cdot j}|\cdot\text{out\_features}`; else MACs
    :math:`\mathrel{+}= \text{rows}\cdot\text{out\_features}` (rows = ``x.numel() / in_features``).

    Returns ``dict(sops, macs, spikes, spike_elements, spike_features, real_features)``
    (``spikes`` = :math:`\sum|n|`, ``spike_elements`` = values in spike-count features).

    Example::

        lin = nn.Linear(3, 4)
        linear_count_ops(lin, torch.tensor([[2.0, 0.0, 0.37]]), dt=0.5)
        # feature 0: n = 1 -> 4 SOPs; feature 1: n = 0 -> 0 SOPs; feature 2: real -> 4 MACs
    """
    f = m.in_features
    n, ok = as_counts(x.reshape(-1, f), dt)
    spike = ok.all(0)                                       # [in_features]
    rows = n.shape[0]
    n_real = int((~spike).sum())
    spikes = float(n[:, spike].abs().sum())
    return dict(sops=spikes * m.out_features, macs=rows * n_real * m.out_features, spikes=spikes,
                spike_elements=rows * (f - n_real), spike_features=f - n_real, real_features=n_real)


def synaptic_count_ops(m: nn.Module, x: torch.Tensor, out: torch.Tensor, dt: float,
                       conv_fanout: str = "nominal") -> dict:
    """Ops of any synaptic layer the meter knows (:func:`neuroq.energy.synaptic_fns`) on an input
    that may carry spike counts :math:`n/dt`: per feature for ``nn.Linear`` (:func:`linear_count_ops`),
    per tensor otherwise (counts -> the layer's SOP rule applied to :math:`|n|`; real -> its MAC rule).

    Returns the dict of :func:`linear_count_ops`.

    Example::

        conv = nn.Conv2d(2, 4, 3, padding=1)
        x = torch.tensor([0.0, 2.0]).reshape(1, 2, 1, 1).expand(1, 2, 3, 3)   # counts 0 / 1 at dt 0.5
        synaptic_count_ops(conv, x, conv(x), dt=0.5)["sops"]   # 9 spikes * (4*3*3) nominal fan-out = 324
    """
    if isinstance(m, nn.Linear) and x.dim() >= 1 and x.shape[-1] == m.in_features:
        return linear_count_ops(m, x, dt)
    fns = synaptic_fns(m)
    if fns is None:
        raise TypeError(f"{type(m).__name__} is not a synaptic layer the energy meter knows")
    sop_fn, mac_fn = fns
    n, ok = as_counts(x, dt)
    ops = _empty_ops()
    if bool(ok.all()):
        a = n.abs()
        ops.update(sops=float(sop_fn(m, a, conv_fanout)), spikes=float(a.sum()), spike_elements=x.numel(),
                   spike_features=1)
    else:
        ops.update(macs=int(mac_fn(m, x, out)), real_features=1)
    return ops


def memory_count_ops(mem: LegendreMemory, u: torch.Tensor, dt: Optional[float] = None) -> dict:
    r"""Ops of the LMU memory :math:`m_t = \bar A m_{t-1} + \bar B u_t` on input ``u`` ``[..., memory_d]``
    (streaming form): rows = ``u.numel() / memory_d`` (steps × samples);
    MACs :math:`= \text{rows}\cdot d_m\cdot\text{order}^2` for :math:`\bar A m`, plus per memory
    channel either :math:`\sum|n|\cdot\text{order}` SOPs (``u`` a spike count at ``dt``) or
    :math:`\text{rows}\cdot\text{order}` MACs (real ``u``, or ``dt=None``).

    Example::

        mem = LegendreMemory(order=2, theta=4.0)
        memory_count_ops(mem, torch.ones(3, 1, 1))   # 3 rows: 3*4 + 3*2 = 18 MACs
    """
    d, o = mem.memory_d, mem.order
    ud = u.reshape(-1, d)
    rows = ud.shape[0]
    ops = _empty_ops()
    ops["macs"] = rows * d * o * o
    if dt is None:
        spike = torch.zeros(d, dtype=torch.bool)
        n = None
    else:
        n, ok = as_counts(ud, dt)
        spike = ok.all(0).cpu()
    n_real = int((~spike).sum())
    ops["macs"] += rows * n_real * o
    ops["real_features"] = n_real
    if n is not None and n_real < d:
        spikes = float(n[:, spike.to(n.device)].abs().sum())
        ops.update(sops=spikes * o, spikes=spikes, spike_elements=rows * (d - n_real), spike_features=d - n_real)
    return ops


class _Activity:
    """Running per-neuron statistics of one SpikingActivation's counts (for the bits figures)."""

    def __init__(self):
        self.max_abs = None
        self.any_neg = None
        self.spikes = 0.0
        self.events = 0
        self.event_bits = 0.0
        self.elements = 0
        self.dt = None

    def add(self, n: torch.Tensor, sample_dims: int, dt: float) -> None:
        c = n.reshape(-1, *n.shape[sample_dims:])
        mx, neg = c.abs().amax(0), c.amin(0) < 0
        if self.max_abs is None or self.max_abs.shape != mx.shape:
            self.max_abs, self.any_neg = mx, neg
        else:
            self.max_abs = torch.maximum(self.max_abs, mx)
            self.any_neg = self.any_neg | neg
        nz = c != 0
        self.spikes += float(c.abs().sum())
        self.events += int(nz.sum())
        self.event_bits += float(bit_length(c[nz]).sum())
        self.elements += c.numel()
        self.dt = dt

    def report(self) -> dict:
        per = bit_length(self.max_abs) + self.any_neg.to(torch.float64)
        return dict(dt=self.dt, neurons=per.numel(), spikes=self.spikes, events=self.events, elements=self.elements,
                    spikes_per_element=self.spikes / self.elements if self.elements else None,
                    bits_of_activity=float(per.mean()),
                    significant_bits=self.event_bits / self.events if self.events else 0.0,
                    max_count=float(self.max_abs.max()) if self.max_abs.numel() else 0.0,
                    _bits_sum=float(per.sum()))


class HybridEnergyMeter(EnergyMeter):
    r""":class:`neuroq.energy.EnergyMeter` that charges spike counts :math:`n/dt` as :math:`|n|` events.

    Everything the base meter counts is kept; in addition (module docstring for the rules):

    * synaptic layers with a ``dt`` (below) go through :func:`synaptic_count_ops` (per-feature SOPs/MACs);
    * every :class:`~neuroq.layer.lmu.LegendreMemory` is a layer charged by :func:`memory_count_ops`;
    * every :class:`~neuroq.neuron.SpikingActivation` gets an entry in ``report()["activity"]``:
      ``spikes`` (:math:`\sum|n|`), ``events`` (nonzero counts), ``bits_of_activity``,
      ``significant_bits``, ``max_count``; ``report()["total"]`` adds the neuron-weighted
      ``bits_of_activity`` and event-weighted ``significant_bits`` over all of them.

    Args:
        model: the model.
        dt: ``None`` (the common ``dt`` of the model's SpikingActivations, read at construction and at
            :meth:`reset`; an error if they differ; the base meter's rules alone if there are
            none), a float (every synaptic layer reads its inputs at this dt), or a dict
            ``{layer name: dt}`` (only those layers; the others use the base rules).  Binary 0/1 spikes
            of other neurons entering a layer with a dt other than 1 are misread: use the dict form.
        **kwargs: as :class:`neuroq.energy.EnergyMeter` (``graded`` does not affect layers with a dt).

    Example::

        with HybridEnergyMeter(model) as meter:
            model(x_seq)
        rep = meter.report(); rep["total"]["energy_pj_per_sample"], rep["activity"]
    """

    def __init__(self, model: nn.Module, dt: Union[None, float, dict] = None, **kwargs):
        if dt is not None and not isinstance(dt, dict):
            if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
                raise ValueError(f"dt must be None, a real number > 0 or a dict {{layer name: dt}}, got {dt!r}")
            dt = float(dt)
        self._dt_arg = dt
        super().__init__(model, **kwargs)

    def _resolve_dts(self) -> dict:
        names = [n or type(m).__name__ for n, m in self.model.named_modules() if synaptic_fns(m) is not None]
        if isinstance(self._dt_arg, dict):
            unknown = set(self._dt_arg) - set(names)
            if unknown:
                raise ValueError(f"HybridEnergyMeter: dt names {sorted(unknown)} are not synaptic layers of the "
                                 f"model (known: {names})")
            return dict(self._dt_arg)
        dt = self._dt_arg
        if dt is None:
            dts = sorted({m.dt for m in self.model.modules() if isinstance(m, SpikingActivation)})
            if len(dts) > 1:
                raise ValueError(f"HybridEnergyMeter: the model's SpikingActivations have different dt {dts}; pass "
                                 "dt={synaptic layer name: dt} to say which layer reads which")
            if not dts:
                return {}
            dt = dts[0]
        return {k: dt for k in names}

    def reset(self) -> None:
        super().reset()
        self._dts = self._resolve_dts()
        self._mem_owner = None
        self.activity: "OrderedDict[str, _Activity]" = OrderedDict()
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            if isinstance(m, LegendreMemory):
                self.layers[key] = dict(type=type(m).__name__, sops=0.0, macs=0, spikes_in=0.0, elements_in=0,
                                        spike_calls=0, real_calls=0)
            elif isinstance(m, SpikingActivation):
                self.activity[key] = _Activity()

    def start(self) -> "HybridEnergyMeter":
        if self._handles:
            return self
        super().start()
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            if isinstance(m, LegendreMemory):
                self._handles.append(m.register_forward_hook(self._memory_hook(key)))
            elif isinstance(m, SpikingActivation):
                self._handles.append(m.register_forward_hook(self._activity_hook(key)))
        return self

    def _add(self, key: str, ops: dict) -> None:
        rec = self.layers[key]
        rec["sops"] += ops["sops"]
        rec["macs"] += ops["macs"]
        rec["spikes_in"] += ops["spikes"]
        rec["elements_in"] += ops["spike_elements"]
        rec["spike_calls"] += 1 if ops["spike_features"] else 0
        rec["real_calls"] += 1 if ops["real_features"] else 0

    def _synapse_hook(self, key, sop_fn, mac_fn):
        base = super()._synapse_hook(key, sop_fn, mac_fn)

        def hook(m, args, out):
            dt = self._dts.get(key)
            if dt is None:
                return base(m, args, out)
            if not args or not isinstance(args[0], torch.Tensor):
                return
            with torch.no_grad():
                self._add(key, synaptic_count_ops(m, args[0], out, dt, self.conv_fanout))
        return hook

    def _memory_hook(self, key):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            u = args[0]
            dt = self._u_dt(m)
            with torch.no_grad():
                self._add(key, memory_count_ops(m, u, dt))
        return hook

    def _u_dt(self, mem: LegendreMemory) -> Optional[float]:
        """dt of the SpikingActivation feeding ``mem`` (the ``u_activation`` of the LMUCell owning it)."""
        owner = self._mem_owner
        if owner is None:
            owner = self._mem_owner = {}
            for m in self.model.modules():
                mm = getattr(m, "memory", None)
                if isinstance(mm, LegendreMemory):
                    owner[id(mm)] = m
        cell = owner.get(id(mem))
        act = getattr(cell, "u_activation", None)
        if isinstance(act, SpikingActivation) and not act._non_spiking():
            return act.dt
        return None

    def _activity_hook(self, key):
        def hook(m, args, out):
            if not isinstance(out, torch.Tensor) or m._non_spiking():
                return
            with torch.no_grad():
                self.activity[key].add(m.counts(out), 2 if m.step_mode == "m" else 1, m.dt)
        return hook

    def report(self) -> dict:
        rep = super().report()
        act = OrderedDict()
        bits = neurons = ev_bits = events = 0.0
        for k, a in self.activity.items():
            if a.max_abs is None:
                continue
            r = a.report()
            bits += r.pop("_bits_sum")
            neurons += r["neurons"]
            ev_bits += a.event_bits
            events += a.events
            act[k] = r
        rep["activity"] = act
        rep["total"]["bits_of_activity"] = bits / neurons if neurons else None
        rep["total"]["significant_bits"] = ev_bits / events if events else None
        return rep
