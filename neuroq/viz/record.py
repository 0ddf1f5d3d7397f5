"""Record what a network does: spikes (and optionally membrane potential) of every neuron layer."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn

from .. import _sj


def _is_neuron(m: nn.Module) -> bool:
    from ..neuron.base import is_neuron

    return is_neuron(m)


class Recorder:
    """Context manager that stores each neuron layer's output (``spikes[name]``, ``[T, N, ...]``) and,
    with ``v=True``, its membrane potential after reset (``v[name]``) via ``store_v_seq``.

    Single-step neurons called T times are stacked along a new first axis.
    """

    def __init__(self, model: nn.Module, v: bool = False, layers: Optional[list[str]] = None):
        self.model = model
        self.want_v = v
        self.layers = layers
        self.spikes: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.v: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        #: each recorded layer's firing threshold (``v_threshold``, a float where it is one)
        self.thresholds: "OrderedDict[str, float]" = OrderedDict()
        self._steps: dict = {}
        self._handles = []
        self._saved_flags = {}

    def _targets(self):
        for name, m in self.model.named_modules():
            if _is_neuron(m) and (self.layers is None or name in self.layers):
                yield name or type(m).__name__, m

    def __enter__(self):
        for name, m in self._targets():
            th = getattr(m, "v_threshold", None)
            if isinstance(th, torch.Tensor) and th.numel() == 1:
                th = float(th)
            self.thresholds[name] = th
            if self.want_v and hasattr(m, "store_v_seq"):
                self._saved_flags[name] = m.store_v_seq
                m.store_v_seq = True
            self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name):
        def hook(m, args, out):
            if not isinstance(out, torch.Tensor):
                return
            multi = getattr(m, "step_mode", "s") == "m"
            self._steps.setdefault(name, []).append((multi, out.detach().cpu()))
            if self.want_v:
                vs = getattr(m, "v_seq", None) if multi else getattr(m, "v", None)
                if isinstance(vs, torch.Tensor):
                    self._steps.setdefault(name + "/v", []).append((multi, vs.detach().cpu()))
        return hook

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        for name, m in self._targets():
            if name in self._saved_flags:
                m.store_v_seq = self._saved_flags[name]
        for key, items in self._steps.items():
            seqs = [t if multi else t.unsqueeze(0) for multi, t in items]
            seq = torch.cat(seqs, 0)
            if key.endswith("/v"):
                self.v[key[:-2]] = seq
            else:
                self.spikes[key] = seq
        return False


def record(model: nn.Module, x: Optional[torch.Tensor] = None, v: bool = False, layers=None):
    """Record neuron spikes for input ``x`` and return ``{layer: spikes [T, N, ...]}``.

    With ``x=None`` returns the :class:`Recorder` context manager instead. With ``v=True`` the
    returned dict is ``{'spikes': {...}, 'v': {...}, 'v_threshold': {...}}`` (v after reset, the
    ``store_v_seq`` convention of SpikingJelly: :math:`V[t] = H[t](1-S[t]) + V_{reset}S[t]`).

    Every plot of :mod:`neuroq.viz` takes this dict (or one layer's tensor).
    """
    rec = Recorder(model, v=v, layers=layers)
    if x is None:
        return rec
    _sj.reset_net(model)
    with torch.no_grad(), rec:
        model(x)
    _sj.reset_net(model)
    if v:
        return {"spikes": rec.spikes, "v": rec.v,
                "v_threshold": OrderedDict((k, rec.thresholds.get(k)) for k in rec.v)}
    return rec.spikes
