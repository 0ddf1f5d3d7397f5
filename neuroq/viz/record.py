r"""Record what a network does: spikes, and optionally the membrane potential before and after reset,
of every neuron layer.

Per step a neuron charges, fires and resets (SpikingJelly's three-stage convention):

.. math::
    H[t] = f(V[t-1], X[t]),\qquad S[t] = \Theta(H[t] - V_{th}),\qquad
    V[t] = \begin{cases} H[t](1-S[t]) + V_{reset}S[t] & \text{hard reset}\\
                         H[t] - V_{th}S[t] & \text{soft reset}\end{cases}

``store_v_seq`` keeps :math:`V[t]`, the potential *after* the reset, which never shows the
crossing that made the spike. With ``v=True`` :func:`record` also keeps :math:`H[t]`, the
potential the threshold is compared with:

1. from the neuron itself where it offers it (a ``store_h_seq`` flag that makes it keep
   ``h_seq`` ``[T, N, ...]`` in multi-step and ``h`` ``[N, ...]`` in single-step mode), else
2. by re-running the neuron's own charge :math:`f` (``neuronal_charge``: neuroq's
   ``(x, v) -> h`` or SpikingJelly 0.0.0.0.14's in-place ``(x)``) on the recorded input and
   :math:`V[t-1]`, else
3. for a soft reset, by inverting it: :math:`H[t] = V[t] + V_{th}S[t]`;

each kept only where it reproduces the recorded spikes and resets
(:math:`S = \Theta(H - V_{th})` and the reset equation above, to float tolerance).

A layer for which neither works (e.g. SAF, whose state is not a reset potential) has no ``h``
entry; :func:`neuroq.viz.membrane_trace` then shows :math:`V[t]` and says so.
"""
from __future__ import annotations

import inspect
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn as nn

from .. import _sj
from .labels import _is_neuron, layer_labels


class Recording(OrderedDict):
    """``{layer path: spikes [T, N, ...]}`` (an ``OrderedDict``) whose ``labels`` attribute holds each
    layer's human label (:func:`neuroq.viz.layer_labels`), used by every plot by default."""

    def __init__(self, *args, labels=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = OrderedDict() if labels is None else OrderedDict(labels)

    def __reduce__(self):  # keep .labels through copy/pickle
        return (type(self), (list(self.items()),), {"labels": self.labels})


def _charge(m: nn.Module, x: torch.Tensor, v: torch.Tensor) -> Optional[torch.Tensor]:
    """:math:`H = f(V, X)` by the neuron's own ``neuronal_charge``, without changing its state."""
    fn = getattr(m, "neuronal_charge", None)
    if fn is None:
        return None
    try:
        n_args = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    if n_args == 2:  # neuroq: pure (x, v) -> h
        h = fn(x, v)
        return h if isinstance(h, torch.Tensor) else None
    if n_args == 1:  # SpikingJelly: charges self.v in place
        saved = m.v
        try:
            m.v = v.clone()
            fn(x)
            h = m.v
        finally:
            m.v = saved
        return h if isinstance(h, torch.Tensor) else None
    return None


def _consistent(m: nn.Module, h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> bool:
    """Does ``h`` reproduce the recorded spikes ``s`` and after-reset potentials ``v``?"""
    if h.shape != s.shape or v.shape != s.shape:
        return False
    s = s.float()
    if not bool(((s == 0) | (s == 1)).all()):
        return False
    vth = m.v_threshold
    vth = vth.detach().float() if isinstance(vth, torch.Tensor) else float(vth)
    h, v = h.float(), v.float()
    tol = 1e-5 * (1.0 + float(h.abs().max()) if h.numel() else 1.0)
    fired = s > 0
    if not bool(torch.where(fired, h >= vth - tol, h < vth + tol).all()):
        return False
    v_reset = getattr(m, "v_reset", 0.0)
    expect = h - vth * s if v_reset is None else h * (1.0 - s) + float(v_reset) * s
    return bool(torch.allclose(v, expect, rtol=1e-5, atol=tol))


class Recorder:
    """Context manager that stores each neuron layer's output (``spikes[name]``, ``[T, N, ...]``) and,
    with ``v=True``, its membrane potential after reset (``v[name]``, via ``store_v_seq``) and
    before reset (``h[name]``, where it can be had; see the module docstring).

    Single-step neurons called T times are stacked along a new first axis.
    """

    def __init__(self, model: nn.Module, v: bool = False, layers: Optional[list[str]] = None):
        self.model = model
        self.want_v = v
        self.layers = layers
        self.spikes: Recording = Recording()
        self.v: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        self.h: "OrderedDict[str, torch.Tensor]" = OrderedDict()
        #: each recorded layer's firing threshold (``v_threshold``, a float where it is one)
        self.thresholds: "OrderedDict[str, float]" = OrderedDict()
        self._steps: dict = {}
        self._pending: dict = {}
        self._no_h: set = set()
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
            if self.want_v:
                flags = {}
                for flag in ("store_v_seq", "store_h_seq"):
                    if hasattr(m, flag):
                        flags[flag] = getattr(m, flag)
                        setattr(m, flag, True)
                self._saved_flags[name] = flags
                self._handles.append(m.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def _pre_hook(self, name):
        def hook(m, args):
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            v0 = m.v.detach().clone() if isinstance(getattr(m, "v", None), torch.Tensor) else getattr(m, "v", None)
            self._pending[name] = (x.detach() if x is not None else None, v0)
        return hook

    def _h_of(self, name, m, multi, out, vs):
        """H of this call ([T, N, ...] multi-step, [N, ...] single-step), or None."""
        x, v0 = self._pending.pop(name, (None, None))
        own = getattr(m, "h_seq" if multi else "h", None) if hasattr(m, "store_h_seq") else None
        if isinstance(own, torch.Tensor) and own.shape == out.shape:
            return own.detach()
        if x is None or not isinstance(vs, torch.Tensor) or x.shape != out.shape or vs.shape != out.shape:
            return None
        xs, ss, vv = (x, out, vs) if multi else (x[None], out[None], vs[None])
        if isinstance(v0, torch.Tensor):
            if v0.shape != xs.shape[1:]:
                return None
            prev = v0
        else:
            prev = torch.full_like(xs[0], 0.0 if v0 is None else float(v0))
        hs = []
        with torch.no_grad():
            for t in range(xs.shape[0]):
                h = _charge(m, xs[t], prev)
                if h is None or h.shape != xs[t].shape:
                    hs = None
                    break
                hs.append(h.detach())
                prev = vv[t]
            if hs is not None:
                h = torch.stack(hs)
            elif hasattr(m, "v_reset") and m.v_reset is None:  # soft reset inverts: H = V + V_th S
                h = vv.float() + m.v_threshold * ss.float()
            else:
                return None
        if not _consistent(m, h, ss, vv):
            return None
        return h if multi else h[0]

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
                h = None if name in self._no_h else self._h_of(name, m, multi, out, vs)
                if h is None:
                    self._no_h.add(name)  # one call without H: the layer gets no H at all
                else:
                    self._steps.setdefault(name + "/h", []).append((multi, h.cpu()))
        return hook

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        self._pending = {}
        for name, m in self._targets():
            for flag, val in self._saved_flags.get(name, {}).items():
                setattr(m, flag, val)
        for key, items in self._steps.items():
            seq = torch.cat([t if multi else t.unsqueeze(0) for multi, t in items], 0)
            if key.endswith("/v"):
                self.v[key[:-2]] = seq
            elif key.endswith("/h"):
                if key[:-2] not in self._no_h:
                    self.h[key[:-2]] = seq
            else:
                self.spikes[key] = seq
        self.spikes.labels = OrderedDict((k, lab) for k, lab in layer_labels(self.model, self.spikes).items()
                                         if k in self.spikes)
        return False


def record(model: nn.Module, x: Optional[torch.Tensor] = None, v: bool = False, layers=None):
    r"""Record neuron spikes for input ``x`` and return ``{layer: spikes [T, N, ...]}``.

    The result is a :class:`Recording` (an ``OrderedDict`` keyed by module path) whose ``labels``
    are the layers' human names (``LIF 1 (fc 256)``, see :func:`neuroq.viz.layer_labels`).
    With ``x=None`` returns the :class:`Recorder` context manager instead. With ``v=True`` the
    returned dict is ``{'spikes', 'v', 'h', 'v_threshold', 'labels'}``: ``v`` the potential after
    reset (SpikingJelly's ``store_v_seq``, :math:`V[t] = H[t](1-S[t]) + V_{reset}S[t]`), ``h`` the
    potential before it, :math:`H[t]`, for the layers where it can be had (module docstring).

    Inputs/Outputs: ``x`` whatever ``model`` takes (``[T, N, ...]`` for multi-step networks);
    every recorded tensor is ``[T, N, ...]`` (single-step neurons called T times are stacked).

    Example::

        rec = viz.record(net, x_seq, v=True)
        viz.membrane_trace(rec, layer="2")

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
        return {"spikes": rec.spikes, "v": rec.v, "h": rec.h,
                "v_threshold": OrderedDict((k, rec.thresholds.get(k)) for k in rec.v),
                "labels": rec.spikes.labels}
    return rec.spikes
