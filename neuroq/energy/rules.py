r"""The counting rules of the energy meter: which layers are synaptic, what one input spike costs there
(its fan-out) and how many MACs a real-valued input costs.  Extensible like SpikingJelly's
``op_counter``: :func:`register_synaptic` adds a layer type.

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

import math
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as tF


E_AC_PJ = 0.9
E_MAC_PJ = 4.6
CONV_FANOUTS = ("nominal", "exact")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# user-registered synaptic layer types: cls -> (sop_fn(module, x, mode) -> tensor, mac_fn(module, x, out) -> int)
_REGISTRY: "OrderedDict[type, tuple[Callable, Callable]]" = OrderedDict()


def register_synaptic(cls: type, sop_fn: Callable, mac_fn: Callable) -> None:
    """Teach the meter (and :class:`SynapticPenalty`) a new synaptic layer type.

    ``sop_fn(module, x, conv_fanout) -> tensor`` returns the differentiable SOP count of spike input
    ``x``; ``mac_fn(module, x, out) -> int`` the MACs for real-valued input.
    """
    _REGISTRY[cls] = (sop_fn, mac_fn)


_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    _BUILTINS_LOADED = True
    _builtin_rules()


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


def _builtin_rules() -> None:
    """neuroq's own synaptic layers that are not ``nn.Linear``/``nn.Conv`` subclasses: the SAF synapses do
    what their plain twins do (MACs on real-valued accumulations, SOPs if fed spikes)."""
    from ..layer.saf import SAFConv2d, SAFLinear

    _REGISTRY.setdefault(SAFLinear, (linear_sops, linear_macs))
    _REGISTRY.setdefault(SAFConv2d, (conv_sops, conv_macs))


def synaptic_fns(module: nn.Module):
    """``(sop_fn, mac_fn)`` for a synaptic layer, or ``None`` when the module is not one."""
    if not _BUILTINS_LOADED:
        _load_builtins()
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
