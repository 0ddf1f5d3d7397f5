r"""The counting rules of the energy meter: which layers are synaptic, what one input spike costs there
(its fan-out) and how many MACs a real-valued input costs.  Extensible like SpikingJelly's
``op_counter``: :func:`register_synaptic` adds a layer type.

:class:`EnergyMeter` hooks the layers that receive activations (``nn.Linear``, ``nn.Conv1d/2d/3d``
and anything registered with :func:`register_synaptic`) and counts, per layer:

* **SOPs** (synaptic operations, accumulates) for spike inputs: each input spike costs the
  *fan-out* of the receiving layer, i.e. how many weights it is multiplied with:

  - linear: ``out_features``
  - conv (``conv_fanout='nominal'``, the default): :math:`(C_{out}/g)\,k_h k_w / (s_h s_w)` per input
    element (:math:`g` = groups) -- the rule of the spiking-synaptic-penalty paper (Suetake et al.,
    arXiv 2302.01500) for :math:`g = 1`;
  - conv (``conv_fanout='exact'``): the number of weights an input spike actually meets, which
    differs from the nominal rule at padded borders and when the stride does not tile the input
    (this is what SpikingJelly 2.0.0's ``op_counter.SynOpCounter`` counts; the layer's own padding --
    circular, reflect, asymmetric ``'same'`` -- is applied);
  - transposed conv: :math:`(C_{out}/g)\,k_h k_w` per input element (nominal), or the weights whose
    output lands inside the cropped output (exact).

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
from typing import Callable, Optional

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


_TCONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _conv_nominal_fanout(m: nn.Module) -> float:
    r"""Nominal fan-out of one input element: :math:`(C_{out}/g)\,k_h k_w / (s_h s_w)` (each input channel
    of a group meets the :math:`C_{out}/g` filters of its group)."""
    k = math.prod(m.kernel_size)
    s = math.prod(m.stride)
    return (m.out_channels // m.groups) * k / s


def _window_counts(m: nn.Module, x: torch.Tensor, transposed: bool = False) -> torch.Tensor:
    """For every output position and group, the number of input spikes in its receptive field, computed
    by the layer's own convolution (its padding mode and ``'same'`` padding included) with all-ones
    weights and one output channel per group (differentiable in ``x``)."""
    dims = len(m.kernel_size)
    g = m.groups
    if transposed:
        ones = torch.ones((m.in_channels, 1, *m.kernel_size), dtype=x.dtype, device=x.device)
        fn = (tF.conv_transpose1d, tF.conv_transpose2d, tF.conv_transpose3d)[dims - 1]
        return fn(x, ones, None, m.stride, m.padding, m.output_padding, g, m.dilation)
    ones = torch.ones((g, m.in_channels // g, *m.kernel_size), dtype=x.dtype, device=x.device)
    if isinstance(m, _CONVS):  # nn.Conv*d and subclasses: their padding mode (circular, reflect ...) applies
        return m._conv_forward(x, ones, None)
    fn = (tF.conv1d, tF.conv2d, tF.conv3d)[dims - 1]
    return fn(x, ones, None, m.stride, m.padding, m.dilation, g)


def _unfold_time(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if x.dim() == len(m.kernel_size) + 3:  # SpikingJelly step-mode conv in multi-step mode: [T, N, C, ...]
        return x.flatten(0, 1)
    return x


def conv_sops(m: nn.Module, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    """SOPs of spike tensor ``x`` entering conv ``m`` (differentiable in ``x``): nominal fan-out per spike,
    or (``'exact'``) the weights each spike actually meets, as SpikingJelly 2.0.0's ``op_counter`` counts."""
    if conv_fanout == "nominal":
        return x.sum() * _conv_nominal_fanout(m)
    return _window_counts(m, _unfold_time(m, x)).sum() * (m.out_channels // m.groups)


def conv_macs(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    return int(out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size))


def conv_transpose_sops(m: nn.Module, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    r"""SOPs of spikes entering a transposed conv: each input element meets :math:`(C_{out}/g)\,k_h k_w`
    weights (nominal), or (``'exact'``) only those whose output lands inside the (cropped) output."""
    if conv_fanout == "nominal":
        return x.sum() * ((m.out_channels // m.groups) * math.prod(m.kernel_size))
    return _window_counts(m, _unfold_time(m, x), transposed=True).sum() * (m.out_channels // m.groups)


def conv_transpose_macs(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    x = _unfold_time(m, x)
    return int(x.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size))


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
    if isinstance(module, _TCONVS):
        return conv_transpose_sops, conv_transpose_macs
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


# ---- spike counts n/dt (hybrid-spiking activations) and the LMU memory ------------------------------
# Voelker, Rasmussen, Eliasmith, arXiv 2002.03553: an input a = n/dt from a SpikingActivation carries
# |n| spikes (1/dt and the sign fold into the weights), each costing the fan-out of the layer it meets;
# real inputs cost MACs; the LMU memory is charged as its streaming recurrence.

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
    """Ops of any synaptic layer the meter knows (:func:`synaptic_fns`) on an input
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


def memory_count_ops(mem: nn.Module, u: torch.Tensor, dt: Optional[float] = None) -> dict:
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
