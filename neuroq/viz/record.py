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
   ``(x, v) -> h`` or SpikingJelly 0.0.0.0.14's in-place ``(x)``; for SpikingJelly 2.0's neurons its
   ``single_step_functional_forward`` with the threshold at the largest float, so that it charges and never fires) on
   the recorded input and :math:`V[t-1]`, else
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
from .._validate import check_bool, check_samples
from ._checks import check_names
from ..labels import _is_neuron, layer_labels


class Recording(OrderedDict):
    r"""What :func:`record` (or a :class:`Recorder`) saw: ``{layer path: spikes [T, N, ...]}``, an
    ``OrderedDict`` in module order, with the layers' labels and, when recorded, their potentials.

    Attributes:
        labels: ``{layer: human label}`` (:func:`neuroq.viz.layer_labels`, e.g. ``LIF 1 (fc 256)``),
            used by every plot by default.
        v: ``{layer: [T, N, ...]}`` membrane potential after reset, :math:`V[t]` (``store_v_seq``);
            empty unless recorded with ``v=True``.
        h: ``{layer: [T, N, ...]}`` potential before reset, :math:`H[t]`, for the layers where it
            can be had (module docstring); empty unless recorded with ``v=True``.
        states: ``{layer: {state: [T, N, ...]}}``, the further states of neurons that declare several
            (:attr:`neuroq.neuron.BaseNode.states`, e.g. an adaptation ``a``); empty unless recorded with
            ``v=True``.
        v_threshold: ``{layer: threshold}`` (a float where it is one) of each layer in ``v``.

    The mapping itself is always the spikes, so every plot of :mod:`neuroq.viz` takes a
    ``Recording``; ``copy``, :mod:`copy` and :mod:`pickle` keep the attributes.

    Example::

        rec = viz.Recording({"fc": spikes}, labels={"fc": "LIF 1 (fc 10)"})   # spikes [T, N, 10]
    """

    def __init__(self, *args, labels=None, v=None, h=None, v_threshold=None, states=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels = OrderedDict() if labels is None else OrderedDict(labels)
        self.v = OrderedDict() if v is None else OrderedDict(v)
        self.h = OrderedDict() if h is None else OrderedDict(h)
        self.v_threshold = OrderedDict() if v_threshold is None else OrderedDict(v_threshold)
        self.states = OrderedDict() if states is None else OrderedDict(states)

    def _state(self) -> dict:
        return {"labels": self.labels, "v": self.v, "h": self.h, "v_threshold": self.v_threshold,
                "states": self.states}

    def __reduce__(self):  # keep the attributes through copy/pickle
        return (type(self), (list(self.items()),), self._state())

    def copy(self) -> "Recording":
        """A shallow copy that keeps ``labels``, ``v``, ``h``, ``v_threshold`` and ``states`` (``OrderedDict.copy``
        would not)."""
        return type(self)(self, **self._state())


def _charge(m: nn.Module, x: torch.Tensor, v: torch.Tensor) -> Optional[torch.Tensor]:
    """:math:`H = f(V, X)` by the neuron's own ``neuronal_charge``, without changing its state."""
    fn = getattr(m, "neuronal_charge", None)
    if fn is None:
        return _charge_by_step(m, x, v)
    try:
        n_args = len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None
    if n_args == 2:  # neuroq: pure (x, v) -> h
        try:
            h = fn(x, v)
        except NotImplementedError:  # a neuron that states its whole step instead (several states)
            return None
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


def _charge_by_step(m: nn.Module, x: torch.Tensor, v: torch.Tensor) -> Optional[torch.Tensor]:
    """:math:`H = f(V, X)` of a SpikingJelly 2.0 neuron, which states its step as
    ``single_step_functional_forward((x,), (v,))`` and has no ``neuronal_charge``: the step with the largest
    float threshold never fires, so the state it returns is the charged potential (the caller checks it against the
    recorded spikes and resets)."""
    step = getattr(m, "single_step_functional_forward", None)
    if step is None or not hasattr(m, "v_threshold"):
        return None
    saved = m.v_threshold
    try:
        m.v_threshold = torch.finfo(torch.float32).max  # not inf: a soft reset's 0 * inf would be NaN
        _, states = step((x,), (v.clone(),))
    except Exception:  # any neuron this does not fit: no H, the trace says so
        return None
    finally:
        m.v_threshold = saved
    h = states[0] if isinstance(states, (tuple, list)) and states else None
    return h if isinstance(h, torch.Tensor) else None


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
    """Context manager that records every neuron layer of ``model`` over any number of calls and
    gives the result as a :class:`Recording` (``recording``) when the ``with`` block ends: each
    layer's output spikes and, with ``v=True``, its membrane potential after reset (``v``, via
    ``store_v_seq``) and before reset (``h``, where it can be had; see the module docstring).

    Single-step neurons called T times are stacked along a new first axis. Unlike :func:`record`
    it neither resets the network nor turns off gradients. Each ``with`` block gives a new recording.

    Args:
        model: the network (its neurons are found as for :func:`neuroq.viz.layer_labels`).
        v: also record the membrane potentials.
        layers: record only these module paths (default: every neuron layer); each must be a neuron layer
            of ``model``, named once.

    Example::

        with viz.Recorder(net, v=True) as r:
            for t in range(T):
                net(x_seq[t])                    # single-step network, called T times
        viz.membrane_trace(r.recording)
    """

    def __init__(self, model: nn.Module, v: bool = False, layers: Optional[list[str]] = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module (the network to record), got {type(model).__name__}")
        check_bool("v", v)
        layers = check_names("layers", layers)
        if layers is not None:
            recordable = [name or type(m).__name__ for name, m in model.named_modules() if _is_neuron(m)]
            unknown = [k for k in layers if k not in recordable]
            if unknown:
                raise ValueError(f"layers {unknown} are not spiking neuron layers of the model; recordable: "
                                 + (", ".join(repr(k) for k in recordable) if recordable
                                    else "none (the model has no spiking neurons)"))
        self.model = model
        self.want_v = v
        self.layers = layers
        self._recording: Optional[Recording] = None
        self._thresholds: "OrderedDict[str, object]" = OrderedDict()
        self._steps: dict = {}
        self._pending: dict = {}
        self._no_h: set = set()
        self._handles = []
        self._saved_flags = {}

    @property
    def recording(self) -> Recording:
        """The :class:`Recording` of the last finished ``with`` block."""
        if self._recording is None:
            raise RuntimeError("the recording is ready when the `with Recorder(...)` block has ended")
        return self._recording

    def _targets(self):
        for name, m in self.model.named_modules():
            if _is_neuron(m) and (self.layers is None or (name or type(m).__name__) in self.layers):
                yield name or type(m).__name__, m

    def __enter__(self):
        self._thresholds, self._steps, self._pending, self._no_h, self._saved_flags = OrderedDict(), {}, {}, set(), {}
        for name, m in self._targets():
            th = getattr(m, "v_threshold", None)
            if isinstance(th, torch.Tensor) and th.numel() == 1:
                th = float(th)
            self._thresholds[name] = th
            if self.want_v:
                flags = {}
                for flag in ("store_v_seq", "store_h_seq", "store_state_seqs"):
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
                names = m.state_names() if callable(getattr(m, "state_names", None)) else ("v",)
                for state in names[1:]:  # the further states of a neuron that declares several
                    seq = getattr(m, state + "_seq", None) if multi else getattr(m, state, None)
                    if isinstance(seq, torch.Tensor):
                        self._steps.setdefault(name + "//" + state, []).append((multi, seq.detach().cpu()))
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
        rec = Recording()
        for key, items in self._steps.items():
            seq = torch.cat([t if multi else t.unsqueeze(0) for multi, t in items], 0)
            if "//" in key:
                layer, state = key.split("//")
                rec.states.setdefault(layer, OrderedDict())[state] = seq
            elif key.endswith("/v"):
                rec.v[key[:-2]] = seq
            elif key.endswith("/h"):
                if key[:-2] not in self._no_h:
                    rec.h[key[:-2]] = seq
            else:
                rec[key] = seq
        rec.v_threshold = OrderedDict((k, self._thresholds.get(k)) for k in rec.v)
        rec.labels = OrderedDict((k, lab) for k, lab in layer_labels(self.model, rec).items() if k in rec)
        self._steps = {}
        self._recording = rec
        return False


def record(model: nn.Module, x: torch.Tensor, v: bool = False, layers: Optional[list[str]] = None) -> Recording:
    r"""Run ``model`` on ``x`` once and return what its neuron layers did, as a :class:`Recording`.

    The result maps each layer's module path to its spikes ``[T, N, ...]``; ``.labels`` holds the
    layers' human names (``LIF 1 (fc 256)``, see :func:`neuroq.viz.layer_labels`). With ``v=True``
    it also carries ``.v``, the potential after reset (SpikingJelly's ``store_v_seq``,
    :math:`V[t] = H[t](1-S[t]) + V_{reset}S[t]`), ``.h``, the potential before it, :math:`H[t]`,
    for the layers where it can be had (module docstring), and ``.v_threshold``; without it
    these are empty. The network is reset before and after the pass, which runs without gradients.
    To record several calls (e.g. a single-step network stepped by hand) use :class:`Recorder`.

    Args:
        model: the network.
        x: whatever ``model`` takes (``[T, N, ...]`` for multi-step networks).
        v: also record the membrane potentials (``store_v_seq`` is turned on for the pass and
            restored afterwards).
        layers: record only these module paths (default: every neuron layer); each must be a neuron layer
            of ``model``, named once.
    Returns:
        a :class:`Recording`; every recorded tensor is ``[T, N, ...]`` (single-step neurons called
        T times are stacked).

    Example::

        rec = viz.record(net, x_seq, v=True)
        viz.raster(rec)
        viz.membrane_trace(rec, layer="2")

    Every plot of :mod:`neuroq.viz` takes the recording (or one layer's tensor).
    """
    if x is None:
        raise TypeError("record(model, x) needs the input x; to record calls you make yourself use "
                        "`with viz.Recorder(model, v=...) as r: ...` and then `r.recording`")
    recorder = Recorder(model, v=v, layers=layers)
    if isinstance(x, torch.Tensor):  # the input enters here: a non-empty batch of finite real values
        check_samples("x", x if x.dim() < 2 else x.flatten(0, 1))
    _sj.reset_net(model)
    with torch.no_grad(), recorder:
        model(x)
    _sj.reset_net(model)
    return recorder.recording
