r"""Energy accounting for spiking networks.

:class:`EnergyMeter` hooks the layers that receive activations (``nn.Linear``, ``nn.Conv1d/2d/3d``
and anything registered with :func:`register_synaptic`) and counts, per layer:

* **SOPs** (synaptic operations, accumulates) for spike inputs: each input spike costs the
  *fan-out* of the receiving layer, i.e. how many weights it is multiplied with:

  - linear: ``out_features``
  - conv (``conv_fanout='nominal'``, the default): :math:`C_{out} k_h k_w / (s_h s_w)` per input
    element (``/groups`` is already in ``C_out`` per group: :math:`C_{out}/g \cdot g` cancels) —
    the rule of the spiking-synaptic-penalty paper (Suetake et al., arXiv 2302.01500);
  - conv (``conv_fanout='exact'``): the number of weights an input spike actually meets, which
    differs from the nominal rule at padded borders and when the stride does not tile the input
    (this is what SpikingJelly 2.0.0's ``op_counter.SynOpCounter`` counts).

* **MACs** for real-valued inputs (e.g. the first layer of a directly encoded image): linear
  ``N·in·out``, conv ``out.numel()·C_in/g·k_h·k_w``.

Energy: :math:`E = E_{AC}\cdot \#SOP + E_{MAC}\cdot \#MAC`, with 45 nm constants
:math:`E_{AC}=0.9` pJ, :math:`E_{MAC}=4.6` pJ (Horowitz, ISSCC 2014) by default.

An input counts as spikes when every value is 0 or 1 (or, with ``graded=True``, a non-negative
integer spike count, which costs ``count × fan-out``).
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as tF

from . import _sj
from ._validate import check_choice, check_int, check_real

E_AC_PJ = 0.9
E_MAC_PJ = 4.6

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# user-registered synaptic layer types: cls -> (sop_fn(module, x, mode) -> tensor, mac_fn(module, x, out) -> int)
_REGISTRY: "OrderedDict[type, tuple[Callable, Callable]]" = OrderedDict()


def register_synaptic(cls: type, sop_fn: Callable, mac_fn: Callable) -> None:
    """Teach the meter (and :class:`SynapticPenalty`) a new synaptic layer type.

    ``sop_fn(module, x, conv_fanout) -> tensor`` returns the differentiable SOP count of spike input
    ``x``; ``mac_fn(module, x, out) -> int`` the MACs for real-valued input.
    """
    _REGISTRY[cls] = (sop_fn, mac_fn)


def _conv_nominal_fanout(m: nn.Module) -> float:
    k = math.prod(m.kernel_size)
    s = math.prod(m.stride)
    return m.out_channels * k / s


def conv_sops(m: nn.Module, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    """SOPs of spike tensor ``x`` entering conv ``m`` (differentiable in ``x``)."""
    if conv_fanout == "nominal":
        return x.sum() * _conv_nominal_fanout(m)
    # exact: each output position sums the spikes in its window, for C_out/g output channels
    dims = len(m.kernel_size)
    if x.dim() == dims + 3:  # SpikingJelly step-mode conv in multi-step mode: [T, N, C, ...]
        x = x.flatten(0, 1)
    conv = (tF.conv1d, tF.conv2d, tF.conv3d)[dims - 1]
    ones = torch.ones((1, m.in_channels // m.groups, *m.kernel_size), dtype=x.dtype, device=x.device)
    if m.groups == 1:
        counts = conv(x, ones, None, m.stride, _padding(m), m.dilation)
        return counts.sum() * m.out_channels
    xs = x.reshape(x.shape[0] * m.groups, m.in_channels // m.groups, *x.shape[2:])
    counts = conv(xs, ones, None, m.stride, _padding(m), m.dilation)
    return counts.sum() * (m.out_channels // m.groups)


def _padding(m):
    if isinstance(m.padding, str):  # 'same' / 'valid'
        if m.padding == "valid":
            return 0
        return tuple(d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size))
    return m.padding


def conv_macs(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    return int(out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size))


def linear_sops(m: nn.Linear, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    return x.sum() * m.out_features


def linear_macs(m: nn.Linear, x: torch.Tensor, out: torch.Tensor) -> int:
    return int(out.numel() * m.in_features)


def synaptic_fns(module: nn.Module):
    """``(sop_fn, mac_fn)`` for a synaptic layer, or ``None`` when the module is not one."""
    for cls, fns in _REGISTRY.items():
        if isinstance(module, cls):
            return fns
    if isinstance(module, _CONVS):
        return conv_sops, conv_macs
    if isinstance(module, nn.Linear):
        return linear_sops, linear_macs
    return None


def is_spike_tensor(x: torch.Tensor, graded: bool = False) -> bool:
    """True when ``x`` holds spikes: only 0/1 (or non-negative integers with ``graded``)."""
    if x.dtype == torch.bool:
        return True
    if not x.is_floating_point():
        return bool((x >= 0).all()) if graded else bool(((x == 0) | (x == 1)).all())
    xd = x.detach()
    if graded:
        return bool(((xd >= 0) & (xd == torch.round(xd))).all())
    return bool(((xd == 0) | (xd == 1)).all())


def _is_neuron(m: nn.Module) -> bool:
    from .neuron.base import is_neuron

    return is_neuron(m)


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
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, ("nominal", "exact"))
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
            elif _is_neuron(m):
                self.neurons[name or type(m).__name__] = dict(type=type(m).__name__, spikes=0.0, elements=0)

    def start(self) -> "EnergyMeter":
        if self._handles:
            return self
        for name, m in self.model.named_modules():
            key = name or type(m).__name__
            fns = synaptic_fns(m)
            if fns is not None:
                self._handles.append(m.register_forward_hook(self._synapse_hook(key, *fns)))
            elif _is_neuron(m):
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
        rep = self.report()
        from .training.checkpoint import atomic_write_text

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


# =========================================================================================
# Energy-aware training: the spiking synaptic penalty and the firing-rate baselines
# =========================================================================================

PENALTY_KINDS = ("synaptic", "rate-l1", "rate-l2")


class SpikePenalty(_Hooked):
    r"""Differentiable penalty on the spikes that enter a model's synaptic layers.

    Base class of :class:`SynapticPenalty` (each spike weighted by the fan-out of the layer that
    receives it: the energy metric itself) and :class:`RatePenalty` (plain spike count, no
    fan-out weighting).  Forward hooks on the synaptic layers (the same layers, found by the same
    :func:`synaptic_fns` rule, as :class:`EnergyMeter`) collect a differentiable term from each
    layer's spike input during the forward pass; :meth:`penalty` returns their sum (per sample
    with ``normalize='sample'``) and clears the buffer.

    .. math::
        \Omega^{(p)}(x) = \frac{1}{N}\sum_{l}\sum_{e} w^l_e \, \big(c^l_e\big)^p ,\qquad
        c^l_e = \sum_{t} s^l_e[t]

    * :math:`e` runs over the elements (presynaptic neurons, per sample) of layer :math:`l`'s input;
    * :math:`c^l_e` is the **per-sample spike count of that element over the time steps the layer
      sees in one call**: :math:`T` in multi-step mode (``[T, N, ...]`` input, or the ``[T*N, ...]``
      input of a ``SeqToANNContainer``), one step in single-step mode (then :math:`c\in\{0,1\}`);
    * :math:`w^l_e` is the fan-out of element :math:`e` (synaptic penalty) or 1 (rate penalty).

    **What p acts on.**  The power is applied to :math:`c^l_e`, the time-aggregated spike count of
    one presynaptic neuron for one sample, *before* the fan-out weighting.  With :math:`p=1` the
    value is exactly the (fan-out weighted) spike count, computed with the layer's own SOP rule
    (``sop_fn``), so the synaptic penalty equals :class:`EnergyMeter`'s SOPs for the same batch.
    For binary single-step spikes :math:`c^p = c`, so the value does not depend on :math:`p` and
    only the gradient :math:`p\,c^{p-1}` changes (the reading of Suetake et al. 2023, arXiv
    2302.01500, where :math:`p=1` works best).  For :math:`p<1` the gradient of :math:`c^p` is
    unbounded at :math:`c=0`; the power is then smoothed as :math:`(c+\epsilon)^p-\epsilon^p`
    (``eps``), which is 0 at 0 and tends to :math:`c^p` as ``eps`` -> 0.

    Args:
        model: any ``nn.Module``; works with neuroq and SpikingJelly neurons, single or multi-step.
        p: exponent (> 0).
        normalize: ``'sample'`` (divide by the number of samples seen, the meter's
            ``*_per_sample`` convention) or ``'none'`` (sum over the batch).
        graded: treat non-negative integer inputs as spike counts (as the meter's ``graded``).
        batch_dim: axis of the model's first input that indexes samples (1 for ``[T, N, ...]``,
            0 for ``[N, ...]``).
        skip_no_grad: do not collect during forward passes run under ``torch.no_grad()`` (so an
            evaluation between training steps never leaks into the next penalty).
        eps: smoothing of the power for ``p < 1`` (see above).
    """

    #: whether each spike is weighted by its fan-out
    fanout_weighted = True

    def __init__(self, model: nn.Module, p: float = 1.0, normalize: str = "sample", graded: bool = False,
                 batch_dim: int = 1, skip_no_grad: bool = True, eps: float = 1e-3,
                 conv_fanout: str = "nominal"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.p = check_real("p", p, gt=0)
        self.normalize = check_choice("normalize", normalize, ("sample", "none"))
        if not isinstance(graded, bool):
            raise TypeError(f"graded must be True or False, got {graded!r}")
        self.graded = graded
        self.batch_dim = check_int("batch_dim", batch_dim, ge=0)
        if not isinstance(skip_no_grad, bool):
            raise TypeError(f"skip_no_grad must be True or False, got {skip_no_grad!r}")
        self.skip_no_grad = skip_no_grad
        self.eps = check_real("eps", eps, gt=0)
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, ("nominal", "exact"))
        self._handles = []
        self._fanout_cache: dict = {}
        self._tn = None
        self.clear()

    # ---- hooks --------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop what was collected since the last :meth:`penalty`."""
        self._terms: list = []
        self._per_layer: "OrderedDict[str, list]" = OrderedDict()
        self.samples = 0

    def start(self) -> "SpikePenalty":
        if self._handles:
            return self
        n_layers = 0
        for name, m in self.model.named_modules():
            fns = synaptic_fns(m)
            if fns is not None:
                self._handles.append(m.register_forward_hook(self._hook(name or type(m).__name__, fns[0])))
                n_layers += 1
        if n_layers == 0:
            raise ValueError(f"{type(self).__name__}: model has no synaptic layer (Linear/Conv or a type "
                             "registered with neuroq.energy.register_synaptic) to penalize")
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        return self


    def _count_samples(self, module, args):
        if self.skip_no_grad and not torch.is_grad_enabled():
            return
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() > self.batch_dim:
            x = args[0]
            n = int(x.shape[self.batch_dim])
            t = int(x.shape[0]) if self.batch_dim == 1 else 1
            self._tn = (t, n)
            self.samples += n

    def _hook(self, key, sop_fn):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            if self.skip_no_grad and not torch.is_grad_enabled():
                return
            x = args[0]
            if not is_spike_tensor(x, self.graded):
                return  # real-valued input: MACs, not penalized (as the meter charges it)
            if not x.is_floating_point():
                x = x.float()
            elif x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()  # exact counts under autocast
            term = self._term(m, x, sop_fn)
            self._terms.append(term)
            self._per_layer.setdefault(key, []).append(term)
        return hook

    # ---- the per-layer term -------------------------------------------------------------
    def _counts(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample spike counts ``[N, *features]`` of one call's input (summed over its time axis)."""
        if self._tn is None:
            return x
        t, n = self._tn
        if x.dim() >= 2 and x.shape[0] == t and x.shape[1] == n and t > 1:
            return x.sum(0)  # [T, N, ...]
        if t > 1 and x.shape[0] == t * n:
            return x.reshape(t, n, *x.shape[1:]).sum(0)  # [T*N, ...] (SeqToANNContainer)
        return x  # [N, ...] single step (or an unknown layout: per-element, no time aggregation)

    def _fanout_map(self, m: nn.Module, feat: tuple, sop_fn, x: torch.Tensor) -> torch.Tensor:
        """Fan-out of each input element (shape ``feat``): the gradient of the layer's (linear) SOP rule."""
        key = (id(m), feat, self.conv_fanout, x.dtype, x.device)
        f = self._fanout_cache.get(key)
        if f is None:
            with torch.enable_grad():
                z = torch.zeros((1, *feat), dtype=x.dtype, device=x.device, requires_grad=True)
                (f,) = torch.autograd.grad(sop_fn(m, _conv_layout(m, z), self.conv_fanout), z)
            f = f[0].detach()
            self._fanout_cache[key] = f
        return f

    def _power(self, c: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return c
        if self.p < 1.0:
            return (c + self.eps) ** self.p - self.eps ** self.p
        return c ** self.p

    def _term(self, m: nn.Module, x: torch.Tensor, sop_fn) -> torch.Tensor:
        if self.p == 1.0:
            if self.fanout_weighted:
                return sop_fn(m, _conv_layout(m, x), self.conv_fanout)  # the meter's own rule
            return x.sum()
        c = self._counts(x)
        cp = self._power(c)
        if not self.fanout_weighted:
            return cp.sum()
        f = self._fanout_map(m, tuple(c.shape[1:]), sop_fn, c)
        return (cp * f).sum()

    # ---- results ------------------------------------------------------------------------
    def penalty(self, clear: bool = True) -> torch.Tensor:
        """The collected penalty (a differentiable scalar; per sample with ``normalize='sample'``)."""
        if self._terms:
            total = torch.stack([t.reshape(()) for t in self._terms]).sum()
        else:
            total = torch.zeros(())
        if self.normalize == "sample" and self.samples:
            total = total / self.samples
        if clear:
            self.clear()
        return total

    def per_layer(self) -> "OrderedDict[str, float]":
        """Collected value per synaptic layer (floats, normalized like :meth:`penalty`; does not clear)."""
        d = self.samples if (self.normalize == "sample" and self.samples) else 1
        return OrderedDict((k, float(sum(float(t.detach()) for t in v)) / d) for k, v in self._per_layer.items())

    def __call__(self) -> torch.Tensor:
        return self.penalty()

    def __repr__(self):
        return (f"{type(self).__name__}(p={self.p}, normalize={self.normalize!r}, conv_fanout={self.conv_fanout!r}, "
                f"layers={sum(1 for _ in self._handles) - 1 if self._handles else 0})")


def _conv_layout(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Fold a multi-step ``[T, N, C, ...]`` input of a SpikingJelly step-mode conv to ``[T*N, C, ...]``."""
    if isinstance(m, _CONVS) and x.dim() == len(m.kernel_size) + 3:
        return x.flatten(0, 1)
    return x


class SynapticPenalty(SpikePenalty):
    r"""Spiking synaptic penalty (Suetake, Ushimaru, Saiin, Sawada, arXiv 2302.01500).

    The penalty is the energy metric itself: every spike that enters a synaptic layer is weighted
    by the layer's fan-out (the number of weights it is multiplied with), so with ``p = 1`` its
    value is the number of synaptic operations per sample, :math:`\#SOP(x)`, exactly as
    :class:`EnergyMeter` counts them, and :math:`E_{SNN}(x) = E_{AC}\cdot\Omega_{syn}(x)` for the
    spiking layers:

    .. math::
        \Omega_{syn}^{(p)}(x) = \frac{1}{N}\sum_l \sum_e f^l_e\,(c^l_e)^p, \qquad
        L = L_{task} + \lambda\,\Omega_{syn}^{(p)}

    with :math:`f^l_e` = ``out_features`` (linear), :math:`C_{out}k_hk_w/(s_hs_w)` (conv,
    ``conv_fanout='nominal'``) or the border-aware count (``'exact'``), and :math:`c^l_e` the
    per-sample spike count of presynaptic element :math:`e` (see :class:`SpikePenalty` for what
    ``p`` acts on).  With ``p = 1`` the gradient with respect to a neuron's membrane potential is
    :math:`f\,\sigma'(H-V_{th})/N` (fan-out times surrogate derivative; in multi-step mode the
    same-step part, later steps add their own terms through the membrane recurrence).

    Usage::

        pen = SynapticPenalty(model).start()
        loss = F.cross_entropy(model(x).mean(0), y) + lam * pen.penalty()
    """

    fanout_weighted = True


class RatePenalty(SpikePenalty):
    r"""Firing-rate (spiking-activity) penalty: the baseline without fan-out weighting.

    .. math::
        \Omega_{act}^{(p)}(x) = \frac{1}{N}\sum_l \sum_e (c^l_e)^p

    over the same spikes as :class:`SynapticPenalty` (those entering synaptic layers); ``p = 1`` is
    the L1 penalty (total spike count), ``p = 2`` the L2 penalty (squared per-neuron spike counts).
    It treats all layers alike and so does not match :math:`E_{SNN}` (Suetake et al.,
    arXiv 2302.01500, compare against this "spiking activity" penalty).  ``conv_fanout`` is unused.
    """

    fanout_weighted = False


def make_penalty(kind: str, model: nn.Module, **kwargs) -> SpikePenalty:
    """``'synaptic'`` -> :class:`SynapticPenalty` (p=1 unless given), ``'rate-l1'`` / ``'rate-l2'`` ->
    :class:`RatePenalty` with p = 1 / 2.  The hooks are not started (call ``.start()``)."""
    check_choice("kind", kind, PENALTY_KINDS)
    if kind == "synaptic":
        return SynapticPenalty(model, **kwargs)
    if "p" in kwargs:
        raise ValueError(f"p is fixed by kind={kind!r}; use RatePenalty(model, p=...) for another exponent")
    return RatePenalty(model, p=1.0 if kind == "rate-l1" else 2.0, **kwargs)
