r"""The energy meter: SOPs and MACs per synaptic layer, spikes per neuron layer, energy in pJ
(the counting rules are in :mod:`neuroq.energy.rules`)."""
from __future__ import annotations

import json
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn

from .._validate import check_choice, check_int, check_real
from ..neuron.base import is_neuron
from .rules import CONV_FANOUTS, E_AC_PJ, E_MAC_PJ, is_spike_tensor, synaptic_fns


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
        batch_dim: axis of the model's first input that indexes samples (1 for ``[T, N, ...]``,
            0 for ``[N, ...]``); ``None`` disables sample counting (use :meth:`add_samples`).
    """

    def __init__(self, model: nn.Module, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ,
                 conv_fanout: str = "nominal", graded: bool = False, batch_dim: Optional[int] = 1):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.e_ac = check_real("e_ac", e_ac, ge=0)
        self.e_mac = check_real("e_mac", e_mac, ge=0)
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, CONV_FANOUTS)
        self.graded = bool(graded)
        self.batch_dim = None if batch_dim is None else check_int("batch_dim", batch_dim, ge=0)
        self._handles = []
        self.reset()

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
        if self.batch_dim is not None:
            self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        return self


    def add_samples(self, n: int) -> None:
        self.samples += int(n)

    def _count_samples(self, module, args):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() > self.batch_dim:
            self.samples += int(args[0].shape[self.batch_dim])

    def _synapse_hook(self, key, sop_fn, mac_fn):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0]
            rec = self.layers[key]
            with torch.no_grad():
                if is_spike_tensor(x, self.graded):
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
        return dict(samples=n, e_ac_pj=self.e_ac, e_mac_pj=self.e_mac, conv_fanout=self.conv_fanout,
                    layers=layers, neurons=neurons, total=total)

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
