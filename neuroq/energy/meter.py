r"""The energy meter: SOPs and MACs per synaptic layer, spikes per neuron layer, energy in pJ
(the counting rules are in :mod:`neuroq.energy.rules`).

Hybrid-spiking networks (:class:`neuroq.neuron.SpikingActivation`, Voelker, Rasmussen, Eliasmith,
arXiv 2002.03553) are metered by the same :class:`EnergyMeter`: a layer fed by spike counts
:math:`a = n/dt` is charged :math:`|n|\cdot` fan-out SOPs (per input feature for ``nn.Linear``, so
``cat([spiking m, real x])`` is charged SOPs and MACs by block), every LMU memory
(:class:`neuroq.layer.lmu.LegendreMemory`) its streaming recurrence (:math:`\text{order}^2` MACs per step
and channel for :math:`\bar A m`, plus :math:`|n|\cdot\text{order}` SOPs or :math:`\text{order}` MACs
for :math:`\bar B u`), and every SpikingActivation gets ``report()["activity"]``:

* ``bits_of_activity``: per neuron :math:`\lceil\log_2(1+\max|n|)\rceil` plus a sign bit if it ever
  emits a negative count (max over all steps and samples seen), averaged over the layer's neurons --
  the bits an integer register needs for that neuron's activity (the paper's "at most 3.74 bits on
  average");
* ``significant_bits``: the mean :math:`\lceil\log_2(1+|n|)\rceil` over the nonzero counts (the
  paper's "significant bits multiplying each weight").
"""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Optional, Union

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_choice, check_int, check_real
from ..functional.hybrid import bit_length
from ..layer.lmu import LegendreMemory
from ..neuron.base import is_neuron
from ..neuron.hybrid import SpikingActivation
from .rules import CONV_FANOUTS, E_AC_PJ, E_MAC_PJ, is_spike_tensor, memory_count_ops, synaptic_count_ops, synaptic_fns


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


def _is_multi_step(model: nn.Module) -> bool:
    """Does ``model`` take the multi-step layout ``[T, N, ...]``?  True when any of its modules runs in
    step mode ``'m'`` (neurons, :class:`neuroq.layer.SeqOp`) or is one of SpikingJelly's multi-step
    containers (``SeqToANNContainer``)."""
    for m in model.modules():
        if getattr(m, "step_mode", None) == "m" or isinstance(m, _sj.base.MultiStepModule):
            return True
    return False


def _stateful(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, _sj.MemoryModule) and getattr(m, "_memories", None)]


def _fresh(mods: list) -> bool:
    """True when every stateful module holds its reset value (the first step after ``reset_net``)."""
    for m in mods:
        for k, v in m._memories.items():
            rv = m._memories_rv.get(k)
            if isinstance(v, torch.Tensor) and not (isinstance(rv, torch.Tensor) and v is not rv and v.shape == rv.shape
                                                   and bool(torch.equal(v.detach().cpu(), rv.detach().cpu()))):
                return False
    return True


def samples_in_call(model: nn.Module, x: torch.Tensor, batch_dim="auto") -> tuple[int, int, int]:
    """``(new samples, T, N)`` of one call ``model(x)``.

    ``batch_dim='auto'``: a multi-step model (:func:`_is_multi_step`) takes ``[T, N, ...]`` and every call
    is a new batch of N sequences; a single-step model with state takes ``[N, ...]`` once per time step,
    so only the first call after ``reset_net`` (all state at its reset value) brings N new samples; a model
    without state (an ANN, a single-step spiking network) takes ``[N, ...]`` and every call is new.  An
    integer ``batch_dim`` counts ``x.shape[batch_dim]`` at every call."""
    if batch_dim != "auto":
        n = int(x.shape[batch_dim]) if x.dim() > batch_dim else 0
        return n, (int(x.shape[0]) if batch_dim == 1 else 1), n
    if x.dim() >= 2 and _is_multi_step(model):
        return int(x.shape[1]), int(x.shape[0]), int(x.shape[1])
    n = int(x.shape[0]) if x.dim() >= 1 else 0
    mods = _stateful(model)
    return (n if not mods or _fresh(mods) else 0), 1, n


class _Hooked:
    """Shared life cycle of objects that hook a model: ``start()`` registers, ``stop()`` removes,
    and the object is a context manager doing both."""

    _handles: list

    def start(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False


class EnergyMeter(_Hooked):
    """Count SOPs/MACs per synaptic layer and spikes per neuron layer while a model runs.

    Use as a context manager (hooks are removed on exit)::

        with EnergyMeter(model) as meter:
            model(x_seq)
        print(meter.report()["total"]["energy_pj_per_sample"])

    Args:
        model: any ``nn.Module``; hooks go on its synaptic layers and neurons.
        e_ac / e_mac: energy per accumulate / multiply-accumulate in pJ.
        conv_fanout: ``'nominal'`` (the paper's rule) or ``'exact'`` (border-aware).
        graded: treat non-negative integer inputs as spike counts.
        batch_dim: ``'auto'`` (default: ``[T, N, ...]`` for multi-step models; ``[N, ...]`` once per
            sequence for single-step models called T times between ``reset_net`` s, see
            :func:`samples_in_call`), an axis of the model's first input counted at every call, or
            ``None`` (no counting: use :meth:`add_samples`).
        dt: how synaptic layers read spike counts :math:`n/dt` of hybrid-spiking activations (module
            docstring): ``None`` (the common ``dt`` of the model's :class:`~neuroq.neuron.SpikingActivation`
            s, an error if they differ; the plain rules when it has none), a float (every synaptic
            layer), or ``{layer name: dt}`` (only those layers).  Binary 0/1 spikes of other neurons
            entering a layer read at a dt other than 1 are misread: use the dict form for mixed networks.
    """

    def __init__(self, model: nn.Module, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ,
                 conv_fanout: str = "nominal", graded: bool = False, batch_dim: Union[str, int, None] = "auto",
                 dt: Union[None, float, dict] = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.e_ac = check_real("e_ac", e_ac, ge=0)
        self.e_mac = check_real("e_mac", e_mac, ge=0)
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, CONV_FANOUTS)
        self.graded = bool(graded)
        self.batch_dim = batch_dim if batch_dim in (None, "auto") else check_int("batch_dim", batch_dim, ge=0)
        if dt is not None and not isinstance(dt, dict):
            dt = check_real("dt", dt, gt=0)
        self._dt_arg = dt
        self._handles = []
        self.reset()
        if not self.layers and not self.neurons:
            raise ValueError(f"EnergyMeter: model {type(model).__name__} has nothing to count: no synaptic layer "
                             "(Linear/Conv or a type registered with neuroq.energy.register_synaptic) and no neuron")

    def _resolve_dts(self) -> dict:
        """``{synaptic layer name: dt}`` of the layers that read spike counts ``n/dt``."""
        names = [n or type(m).__name__ for n, m in self.model.named_modules() if synaptic_fns(m) is not None]
        if isinstance(self._dt_arg, dict):
            unknown = set(self._dt_arg) - set(names)
            if unknown:
                raise ValueError(f"EnergyMeter: dt names {sorted(unknown)} are not synaptic layers of the model "
                                 f"(known: {names})")
            return dict(self._dt_arg)
        dt = self._dt_arg
        if dt is None:
            dts = sorted({m.dt for m in self.model.modules() if isinstance(m, SpikingActivation)})
            if len(dts) > 1:
                raise ValueError(f"EnergyMeter: the model's SpikingActivations have different dt {dts}; pass "
                                 "dt={synaptic layer name: dt} to say which layer reads which")
            if not dts:
                return {}
            dt = dts[0]
        return {k: dt for k in names}

    # ---- hooks --------------------------------------------------------------------------
    def reset(self) -> None:
        self.layers: "OrderedDict[str, dict]" = OrderedDict()
        self.neurons: "OrderedDict[str, dict]" = OrderedDict()
        self.samples = 0
        for name, m in self.model.named_modules():
            fns = synaptic_fns(m)
            if fns is not None:
                self.layers[name or type(m).__name__] = dict(
                    type=type(m).__name__, sops=0.0, macs=0, spikes_in=0.0, elements_in=0, spike_calls=0,
                    real_calls=0)
            elif is_neuron(m):
                self.neurons[name or type(m).__name__] = dict(type=type(m).__name__, spikes=0.0, elements=0)
            if isinstance(m, LegendreMemory):
                self.layers[name or type(m).__name__] = dict(type=type(m).__name__, sops=0.0, macs=0, spikes_in=0.0,
                                                             elements_in=0, spike_calls=0, real_calls=0)
        self._dts = self._resolve_dts()
        self._mem_owner = None
        self.activity: "OrderedDict[str, _Activity]" = OrderedDict(
            (name or type(m).__name__, _Activity()) for name, m in self.model.named_modules()
            if isinstance(m, SpikingActivation))

    def start(self) -> "EnergyMeter":
        if self._handles:
            return self
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            fns = synaptic_fns(m)
            if fns is not None:
                self._handles.append(m.register_forward_hook(self._synapse_hook(key, *fns)))
            elif is_neuron(m):
                self._handles.append(m.register_forward_hook(self._neuron_hook(key)))
            if isinstance(m, LegendreMemory):
                self._handles.append(m.register_forward_hook(self._memory_hook(key)))
            if isinstance(m, SpikingActivation):
                self._handles.append(m.register_forward_hook(self._activity_hook(key)))
        if self.batch_dim is not None:
            self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        return self


    def add_samples(self, n: int) -> None:
        self.samples += int(n)

    def _count_samples(self, module, args):
        if args and isinstance(args[0], torch.Tensor):
            self.samples += samples_in_call(self.model, args[0], self.batch_dim)[0]

    def _add(self, key: str, ops: dict) -> None:
        rec = self.layers[key]
        rec["sops"] += ops["sops"]
        rec["macs"] += ops["macs"]
        rec["spikes_in"] += ops["spikes"]
        rec["elements_in"] += ops["spike_elements"]
        rec["spike_calls"] += 1 if ops["spike_features"] else 0
        rec["real_calls"] += 1 if ops["real_features"] else 0

    def _synapse_hook(self, key, sop_fn, mac_fn):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            rec = self.layers[key]
            dt = self._dts.get(key)
            with torch.no_grad():
                if dt is not None:
                    self._add(key, synaptic_count_ops(m, x, out, dt, self.conv_fanout))
                elif is_spike_tensor(x, self.graded):
                    xf = x.detach().to(torch.float64) if x.is_floating_point() else x.detach().double()
                    rec["sops"] += float(sop_fn(m, xf, self.conv_fanout))
                    rec["spikes_in"] += float(xf.sum())
                    rec["elements_in"] += x.numel()
                    rec["spike_calls"] += 1
                else:
                    rec["macs"] += int(mac_fn(m, x, out))
                    rec["real_calls"] += 1
        return hook

    def _neuron_hook(self, key):
        def hook(m, args, out):
            if isinstance(out, torch.Tensor):
                rec = self.neurons[key]
                rec["spikes"] += float(out.detach().double().sum())
                rec["elements"] += out.numel()
        return hook

    def _memory_hook(self, key):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            with torch.no_grad():
                self._add(key, memory_count_ops(m, args[0], self._u_dt(m)))
        return hook

    def _u_dt(self, mem: nn.Module) -> Optional[float]:
        """dt of the SpikingActivation feeding ``mem`` (the ``u_activation`` of the LMU cell owning it)."""
        if self._mem_owner is None:
            self._mem_owner = {id(mm): m for m in self.model.modules()
                               for mm in [getattr(m, "memory", None)] if isinstance(mm, LegendreMemory)}
        act = getattr(self._mem_owner.get(id(mem)), "u_activation", None)
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

    # ---- results ------------------------------------------------------------------------
    def report(self) -> dict:
        """Per-layer and total SOPs, MACs, energy (pJ), firing rates; ``*_per_sample`` when samples are known."""
        n = self.samples
        layers = OrderedDict()
        tot_sops = tot_macs = 0.0
        for k, r in self.layers.items():
            if r["spike_calls"] == 0 and r["real_calls"] == 0:
                continue
            e = r["sops"] * self.e_ac + r["macs"] * self.e_mac
            d = dict(type=r["type"], input="spikes" if r["real_calls"] == 0 else (
                "real" if r["spike_calls"] == 0 else "mixed"),
                sops=r["sops"], macs=r["macs"], energy_pj=e,
                input_rate=(r["spikes_in"] / r["elements_in"]) if r["elements_in"] else None)
            if n:
                d.update(sops_per_sample=r["sops"] / n, macs_per_sample=r["macs"] / n, energy_pj_per_sample=e / n)
            layers[k] = d
            tot_sops += r["sops"]
            tot_macs += r["macs"]
        neurons = OrderedDict(
            (k, dict(type=r["type"], spikes=r["spikes"], firing_rate=r["spikes"] / r["elements"]))
            for k, r in self.neurons.items() if r["elements"])
        energy = tot_sops * self.e_ac + tot_macs * self.e_mac
        total = dict(sops=tot_sops, macs=tot_macs, energy_pj=energy)
        if n:
            total.update(sops_per_sample=tot_sops / n, macs_per_sample=tot_macs / n, energy_pj_per_sample=energy / n)
        spikes = sum(r["spikes"] for r in self.neurons.values())
        elems = sum(r["elements"] for r in self.neurons.values())
        total["firing_rate"] = spikes / elems if elems else None
        rep = dict(samples=n, e_ac_pj=self.e_ac, e_mac_pj=self.e_mac, conv_fanout=self.conv_fanout,
                   layers=layers, neurons=neurons, total=total)
        if self.activity:
            act = OrderedDict()
            bits = neurons_n = ev_bits = events = 0.0
            for k, a in self.activity.items():
                if a.max_abs is None:
                    continue
                r = a.report()
                bits += r.pop("_bits_sum")
                neurons_n += r["neurons"]
                ev_bits += a.event_bits
                events += a.events
                act[k] = r
            rep["activity"] = act
            total["bits_of_activity"] = bits / neurons_n if neurons_n else None
            total["significant_bits"] = ev_bits / events if events else None
        return rep

    def save(self, path) -> dict:
        from ..io import atomic_write_text

        rep = self.report()
        atomic_write_text(path, json.dumps(rep, indent=2))
        return rep

    def table(self) -> str:
        """Human-readable per-layer table of the report."""
        rep = self.report()
        per = "_per_sample" if rep["samples"] else ""
        lines = [f"{'layer':<28}{'input':>7}{'rate':>8}{'SOPs' + per:>22}{'MACs' + per:>22}{'pJ' + per:>18}"]
        for k, d in rep["layers"].items():
            rate = "" if d["input_rate"] is None else f"{d['input_rate']:.3f}"
            lines.append(f"{k:<28}{d['input']:>7}{rate:>8}{d['sops' + per]:>22.1f}{d['macs' + per]:>22.1f}"
                         f"{d['energy_pj' + per]:>18.1f}")
        t = rep["total"]
        lines.append(f"{'total':<28}{'':>7}{'':>8}{t['sops' + per]:>22.1f}{t['macs' + per]:>22.1f}{t['energy_pj' + per]:>18.1f}")
        return "\n".join(lines)
