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
from .._validate import check_bool, check_choice, check_int, check_real
from ..labels import layer_labels, with_path
from ..functional.hybrid import activity_extremes, event_bits, neuron_bits
from .models import COMPONENTS, EnergyModel, model_list, price, zero
from .rules import (
    _NORMS, CONV_FANOUTS, E_AC_PJ, E_MAC_PJ, add_neuron_call, as_counts, add_norm_call, add_synapse_call, is_neuron_module,
    check_real_input, is_spike_tensor, memory_count_ops, neuron_ledger, norm_ledger, synapse_ledger, synaptic_count_ops, synaptic_fns,
)


def _is_memory(m) -> bool:
    return getattr(type(m), "energy_rule", None) == "lmu_memory"


def _emits_counts(m) -> bool:
    return bool(getattr(type(m), "energy_counts", False))


class _Activity:
    """Running per-neuron statistics of one SpikingActivation's counts (for the bits figures): the
    streaming form of :func:`neuroq.functional.hybrid.bits_of_activity` and ``significant_bits``, built
    from their parts (``activity_extremes`` combined by max / or, ``event_bits`` summed, ``neuron_bits``)."""

    def __init__(self):
        self.max_abs = None
        self.any_neg = None
        self.spikes = 0.0
        self.events = 0
        self.event_bits = 0.0
        self.elements = 0
        self.dt = None

    def add(self, n: torch.Tensor, sample_dims: int, dt: float) -> None:
        mx, neg = activity_extremes(n, sample_dims)
        if self.max_abs is None or self.max_abs.shape != mx.shape:
            self.max_abs, self.any_neg = mx, neg
        else:
            self.max_abs = torch.maximum(self.max_abs, mx)
            self.any_neg = self.any_neg | neg
        bits, events = event_bits(n)
        self.spikes += float(n.abs().sum())
        self.events += events
        self.event_bits += bits
        self.elements += n.numel()
        self.dt = dt

    def report(self) -> dict:
        per = neuron_bits(self.max_abs, self.any_neg)
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
        if x.dim() <= batch_dim:
            raise ValueError(f"batch_dim={batch_dim} but the model's input has {x.dim()} dimensions (shape "
                             f"{tuple(x.shape)})")
        n = int(x.shape[batch_dim])
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
    """Count what a model does while it runs, per layer, and price it under one or more energy models.

    Use as a context manager (hooks are removed on exit)::

        with EnergyMeter(model, energy="simple") as meter:
            model(x_seq)
        print(meter.report()["total"]["energy_pj_per_sample"])
        print(meter.report()["total"]["components_pj_per_sample"])   # compute, weight/state memory, io, addressing

    What is recorded (the ledger) is independent of the model: per synaptic layer its SOPs and MACs (the
    counting rules of :mod:`neuroq.energy.rules`), the weight uses, spike events, inputs read and outputs
    written, its weights and their bits; per neuron layer its updates, state read and written per step, and
    spikes; per BatchNorm its arithmetic.  The energy models (:mod:`neuroq.energy.models`) price it.

    Args:
        model: any ``nn.Module``; hooks go on its synaptic layers, neurons and BatchNorm layers.
        energy: the energy model(s): a registered name (:func:`neuroq.energy.energy_models`; ``'compute'``
            by default), ``'name:option=value'``, a comma-separated list, a list, or an
            :class:`~neuroq.energy.EnergyModel`.  The first is the *primary* model: its total is the
            report's ``energy_pj``; every model's layers, components and assumptions are in
            ``report()["energy_models"]``.
        energy_options: assumptions for the primary model given by name (e.g. ``{"weight_reads": "per_sample"}``).
        e_ac / e_mac: energy per accumulate / multiply-accumulate in pJ of the ``compute`` model (and the
            ``e_ac_pj``/``e_mac_pj`` report keys).
        conv_fanout: ``'nominal'`` (the paper's rule) or ``'exact'`` (border-aware) for the SOP counts.
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
                 dt: Union[None, float, dict] = None, energy="compute", energy_options: Optional[dict] = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.e_ac = check_real("e_ac", e_ac, ge=0)
        self.e_mac = check_real("e_mac", e_mac, ge=0)
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, CONV_FANOUTS)
        self.graded = check_bool("graded", graded)
        self.batch_dim = batch_dim if batch_dim in (None, "auto") else check_int("batch_dim", batch_dim, ge=0)
        if dt is not None and not isinstance(dt, dict):
            dt = check_real("dt", dt, gt=0)
        self._dt_arg = dt
        self.energy_models = self._models(energy, energy_options)
        self._handles = []
        self.reset()
        if not self.layers and not self.neurons:
            raise ValueError(f"EnergyMeter: model {type(model).__name__} has nothing to count: no synaptic layer "
                             "(Linear/Conv or a type registered with neuroq.energy.register_synaptic) and no neuron")

    def _models(self, energy, energy_options) -> list:
        from .models import get_energy_model

        if energy_options:
            if not isinstance(energy_options, dict):
                raise TypeError(f"energy_options must be a dict of assumptions, got {type(energy_options).__name__}")
            first, *rest = energy.split(",") if isinstance(energy, str) else (
                list(energy) if isinstance(energy, (list, tuple)) else [energy])
            if isinstance(first, EnergyModel):
                raise ValueError("energy_options apply to a model given by name, not to an EnergyModel instance")
            models = [get_energy_model(first.strip(), **energy_options)] + model_list(list(rest))
        else:
            models = model_list(energy)
        if not models:
            raise ValueError("energy names no model; give at least one of neuroq.energy.energy_models()")
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"energy lists a model twice: {names}")
        # the compute model shares the meter's e_ac / e_mac unless it was given its own
        for m in models:
            if m.name == "compute" and m.options == m.defaults:
                m.options = dict(m.options, e_ac=self.e_ac, e_mac=self.e_mac)
        return models

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
            dts = sorted({m.dt for m in self.model.modules() if _emits_counts(m)})
            if len(dts) > 1:
                raise ValueError(f"EnergyMeter: the model's SpikingActivations have different dt {dts}; pass "
                                 "dt={synaptic layer name: dt} to say which layer reads which")
            if not dts:
                return {}
            dt = dts[0]
        return {k: dt for k in names}

    # ---- hooks --------------------------------------------------------------------------
    def reset(self) -> None:
        """Clear the ledger: empty per-layer, per-neuron and per-norm records for every module of the model, no
        samples counted, the activity records restarted (the hooks, if any, stay registered)."""
        self.layers: "OrderedDict[str, dict]" = OrderedDict()
        self.neurons: "OrderedDict[str, dict]" = OrderedDict()
        self.norms: "OrderedDict[str, dict]" = OrderedDict()
        self.order: list = []
        self.samples = 0
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            if synaptic_fns(m) is not None or _is_memory(m):
                self.layers[key] = synapse_ledger(m)
                self.order.append(("synapse", key))
            elif is_neuron_module(m):
                self.neurons[key] = neuron_ledger(m)
                self.order.append(("neuron", key))
            elif isinstance(m, _NORMS):
                self.norms[key] = norm_ledger(m)
                self.order.append(("norm", key))
        self._has_neurons = bool(self.neurons)
        self._dts = self._resolve_dts()
        self._mem_owner = None
        self._call_nt = (1, 1)
        self.activity: "OrderedDict[str, _Activity]" = OrderedDict(
            (name or type(m).__name__, _Activity()) for name, m in self.model.named_modules() if _emits_counts(m))

    def start(self) -> "EnergyMeter":
        """Register the forward hooks (synaptic layers, neurons, BatchNorm, memories, spike-count activations) and
        the sample counter; returns the meter.  A second call does nothing."""
        if self._handles:
            return self
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            fns = synaptic_fns(m)
            if fns is not None:
                self._handles.append(m.register_forward_hook(self._synapse_hook(key, *fns)))
            elif is_neuron_module(m):
                self._handles.append(m.register_forward_hook(self._neuron_hook(key)))
            elif isinstance(m, _NORMS):
                self._handles.append(m.register_forward_hook(self._norm_hook(key)))
            if _is_memory(m):
                self._handles.append(m.register_forward_hook(self._memory_hook(key)))
            if _emits_counts(m):
                self._handles.append(m.register_forward_hook(self._activity_hook(key)))
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        return self

    def add_samples(self, n: int) -> None:
        """Add ``n`` to the number of samples the per-sample figures divide by (for ``batch_dim=None``)."""
        self.samples += int(n)

    def _count_samples(self, module, args):
        if not args or not isinstance(args[0], torch.Tensor):
            return
        new, t, n = samples_in_call(self.model, args[0], "auto" if self.batch_dim is None else self.batch_dim)
        self._call_nt = (max(1, n), max(1, t))
        if self.batch_dim is not None:
            self.samples += new

    def _add(self, key: str, ops: dict) -> None:
        rec = self.layers[key]
        rec["sops"] += ops["sops"]
        rec["macs"] += ops["macs"]
        rec["acs"] += ops["sops"]
        rec["lem_syn"] += ops["sops"]
        rec["lem_fan"] += ops["sops"]
        rec["spike_events"] += ops["spikes"]
        rec["spikes_in"] += ops["spikes"]
        rec["elements_in"] += ops["spike_elements"]
        rec["spike_calls"] += 1 if ops["spike_features"] else 0
        rec["real_calls"] += 1 if ops["real_features"] else 0

    def _synapse_hook(self, key, sop_fn, mac_fn):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor) or not isinstance(out, torch.Tensor):
                return
            x = args[0]
            rec = self.layers[key]
            dt = self._dts.get(key)
            n_call, t_call = self._call_nt
            with torch.no_grad():
                if dt is not None:
                    ops = synaptic_count_ops(m, x, out, dt, self.conv_fanout)
                    self._add(key, ops)
                    # all spike counts: |n| events; any real feature: the layer reads its input densely
                    counts = as_counts(x, dt)[0].abs() if ops["real_features"] == 0 else None
                    add_synapse_call(rec, m, x, out, counts, n_call, t_call)
                elif is_spike_tensor(x, self.graded):
                    xf = x.detach().to(torch.float64) if x.is_floating_point() else x.detach().double()
                    rec["sops"] += float(sop_fn(m, xf, self.conv_fanout))
                    rec["acs"] += float(sop_fn(m, xf, "exact"))  # weight uses: border-aware
                    rec["spikes_in"] += float(xf.sum())
                    rec["elements_in"] += x.numel()
                    rec["spike_calls"] += 1
                    add_synapse_call(rec, m, x, out, xf, n_call, t_call)
                else:
                    check_real_input(x, key)
                    rec["macs"] += int(mac_fn(m, x, out))
                    rec["real_calls"] += 1
                    add_synapse_call(rec, m, x, out, None, n_call, t_call)
        return hook

    def _neuron_hook(self, key):
        def hook(m, args, out):
            if isinstance(out, torch.Tensor):
                rec = self.neurons[key]
                with torch.no_grad():
                    rec["spikes"] += float(out.detach().double().abs().sum())
                    rec["elements"] += out.numel()
                    if args and isinstance(args[0], torch.Tensor):
                        add_neuron_call(rec, m, args[0], out, self._call_nt[0])
        return hook

    def _norm_hook(self, key):
        def hook(m, args, out):
            if args and isinstance(args[0], torch.Tensor):
                add_norm_call(self.norms[key], m, args[0])
        return hook

    def _memory_hook(self, key):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            with torch.no_grad():
                self._add(key, memory_count_ops(m, args[0], self._u_dt(m)))
                rec = self.layers[key]
                rec["weight_numel"] = m.order * m.order + m.order
                rec["sample_steps"] += args[0].numel() / max(1, m.memory_d)
        return hook

    def _u_dt(self, mem: nn.Module) -> Optional[float]:
        """dt of the SpikingActivation feeding ``mem`` (the ``u_activation`` of the LMU cell owning it)."""
        if self._mem_owner is None:
            self._mem_owner = {id(mm): m for m in self.model.modules()
                               for mm in [getattr(m, "memory", None)] if _is_memory(mm)}
        act = getattr(self._mem_owner.get(id(mem)), "u_activation", None)
        if _emits_counts(act) and not act._non_spiking():
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
    def _priced(self, model: EnergyModel) -> "OrderedDict[str, dict]":
        """``{layer: components (pJ, whole run)}`` in module order, for the layers that ran."""
        out = OrderedDict()
        for kind, key in self.order:
            if kind == "synapse":
                r = self.layers[key]
                if r["spike_calls"] == 0 and r["real_calls"] == 0:
                    continue
                rec = dict(r, samples=self.samples, network_has_neurons=self._has_neurons)
            elif kind == "neuron":
                rec = self.neurons[key]
                if not rec["elements"]:
                    continue
            else:
                rec = self.norms[key]
                if not (rec["macs"] or rec["acs"]):
                    continue
            out[key] = dict(kind=kind, type=rec["type"], components=price(model, kind, rec))
        return out

    def model_report(self, model: EnergyModel) -> dict:
        """One model's pricing of the run: per layer (synaptic, neuron and norm layers in module order) and
        in total, each as ``components_pj`` (and ``components_pj_per_sample`` when samples are known)
        and ``energy_pj`` (their sum), with the model's provenance and assumptions."""
        n = self.samples
        layers = OrderedDict()
        tot = zero()
        for key, d in self._priced(model).items():
            comp = d["components"]
            for c in COMPONENTS:
                tot[c] += comp[c]
            e = sum(comp.values())
            entry = dict(kind=d["kind"], type=d["type"], components_pj=dict(comp), energy_pj=e)
            if n:
                entry.update(components_pj_per_sample={c: v / n for c, v in comp.items()}, energy_pj_per_sample=e / n)
            layers[key] = entry
        e = sum(tot.values())
        total = dict(components_pj=dict(tot), energy_pj=e)
        if n:
            total.update(components_pj_per_sample={c: v / n for c, v in tot.items()}, energy_pj_per_sample=e / n)
        return dict(model=model.describe(), layers=layers, total=total)

    def report(self) -> dict:
        """Per-layer and total SOPs, MACs, energy (pJ), firing rates; ``*_per_sample`` when samples are known.

        ``energy_pj`` (per layer and total) is the primary energy model's (``compute`` by default: the
        SOP/MAC energy); ``total["components_pj_per_sample"]`` splits it into :data:`COMPONENTS`;
        ``energy_models`` holds every requested model's full pricing (:meth:`model_report`)."""
        n = self.samples
        if not n and not any(r["spike_calls"] or r["real_calls"] for r in self.layers.values()) \
                and not any(r["elements"] for r in self.neurons.values()):
            raise ValueError("nothing was metered yet: run the model inside the meter first (with EnergyMeter(model) "
                             "as meter: model(x)), then call report() or table()")
        models = OrderedDict((m.name, self.model_report(m)) for m in self.energy_models)
        primary = models[self.energy_models[0].name]
        layers = OrderedDict()
        tot_sops = tot_macs = 0.0
        names = layer_labels(self.model)
        for k, r in self.layers.items():
            if r["spike_calls"] == 0 and r["real_calls"] == 0:
                continue
            e = primary["layers"][k]["energy_pj"]
            d = dict(label=names.get(k, k), type=r["type"], input="spikes" if r["real_calls"] == 0 else (
                "real" if r["spike_calls"] == 0 else "mixed"),
                sops=r["sops"], macs=r["macs"], energy_pj=e,
                input_rate=(r["spikes_in"] / r["elements_in"]) if r["elements_in"] else None,
                weight_bits=r["weight_bits"])
            if n:
                d.update(sops_per_sample=r["sops"] / n, macs_per_sample=r["macs"] / n, energy_pj_per_sample=e / n)
            layers[k] = d
            tot_sops += r["sops"]
            tot_macs += r["macs"]
        neurons = OrderedDict(
            (k, dict(label=names.get(k, k), type=r["type"], spikes=r["spikes"], firing_rate=r["spikes"] / r["elements"]))
            for k, r in self.neurons.items() if r["elements"])
        energy = primary["total"]["energy_pj"]
        total = dict(sops=tot_sops, macs=tot_macs, energy_pj=energy, components_pj=primary["total"]["components_pj"])
        if n:
            total.update(sops_per_sample=tot_sops / n, macs_per_sample=tot_macs / n, energy_pj_per_sample=energy / n,
                         components_pj_per_sample=primary["total"]["components_pj_per_sample"])
        spikes = sum(r["spikes"] for r in self.neurons.values())
        elems = sum(r["elements"] for r in self.neurons.values())
        total["firing_rate"] = spikes / elems if elems else None
        rep = dict(samples=n, e_ac_pj=self.e_ac, e_mac_pj=self.e_mac, conv_fanout=self.conv_fanout,
                   energy_model=self.energy_models[0].name, layers=layers, neurons=neurons, total=total,
                   energy_models=models)
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
        """Write :meth:`report` to ``path`` as indented JSON (atomically) and return it."""
        from ..io import atomic_write_text

        rep = self.report()
        atomic_write_text(path, json.dumps(rep, indent=2))
        return rep

    def table(self, model: Optional[str] = None) -> str:
        """Human-readable per-layer table: SOPs, MACs and energy under the primary model, or (``model``, a
        name among the meter's models) that model's components per layer."""
        rep = self.report()
        per = "_per_sample" if rep["samples"] else ""
        if model is None:
            w = max([len(with_path(k, d.get('label'))) for k, d in rep["layers"].items()] + [28]) + 1
            lines = [f"{'layer [module path]':<{w}}{'input':>7}{'rate':>8}{'SOPs' + per:>22}{'MACs' + per:>22}"
                     f"{'pJ' + per:>18}"]
            for k, d in rep["layers"].items():
                rate = "" if d["input_rate"] is None else f"{d['input_rate']:.3f}"
                lines.append(f"{with_path(k, d.get('label')):<{w}}{d['input']:>7}{rate:>8}{d['sops' + per]:>22.1f}"
                             f"{d['macs' + per]:>22.1f}{d['energy_pj' + per]:>18.1f}")
            t = rep["total"]
            lines.append(f"{'total':<{w}}{'':>7}{'':>8}{t['sops' + per]:>22.1f}{t['macs' + per]:>22.1f}"
                         f"{t['energy_pj' + per]:>18.1f}")
            if rep["energy_model"] != "compute":
                lines.append(f"(energy under the {rep['energy_model']!r} model; table(model=...) shows its components)")
            return "\n".join(lines)
        if model not in rep["energy_models"]:
            raise ValueError(f"model must be one of this meter's energy models {list(rep['energy_models'])}; "
                             f"got {model!r}")
        mr = rep["energy_models"][model]
        key = "components_pj" + per
        names = {k: with_path(k, (rep["layers"].get(k) or rep["neurons"].get(k) or {}).get("label")) for k in mr["layers"]}
        w = max([len(v) for v in names.values()] + [28]) + 1
        head = f"{'layer [module path]':<{w}}{'kind':>8}" + "".join(f"{c:>15}" for c in COMPONENTS) + f"{'total':>15}"
        lines = [f"energy model {model!r}: pJ{' per sample' if per else ''}", head]
        for k, d in mr["layers"].items():
            lines.append(f"{names[k]:<{w}}{d['kind']:>8}" + "".join(f"{d[key][c]:>15.1f}" for c in COMPONENTS)
                         + f"{d['energy_pj' + per]:>15.1f}")
        t = mr["total"]
        lines.append(f"{'total':<{w}}{'':>8}" + "".join(f"{t[key][c]:>15.1f}" for c in COMPONENTS)
                     + f"{t['energy_pj' + per]:>15.1f}")
        return "\n".join(lines)

