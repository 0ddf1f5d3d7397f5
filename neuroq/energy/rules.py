r"""The counting rules of the energy meter: which layers are synaptic, what one input spike costs there
(its fan-out) and how many MACs a real-valued input costs.  Extensible like SpikingJelly's
``op_counter``: :func:`register_synaptic` adds a layer type.

:class:`~neuroq.energy.EnergyMeter` hooks the layers that receive activations (``nn.Linear``, ``nn.Conv1d/2d/3d``
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
import torch.nn.functional as F


E_AC_PJ = 0.9
E_MAC_PJ = 4.6
CONV_FANOUTS = ("nominal", "exact")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
# user-registered synaptic layer types: cls -> (sop_fn(module, x, mode) -> tensor, mac_fn(module, x, out) -> int)
_REGISTRY: "OrderedDict[type, tuple[Callable, Callable]]" = OrderedDict()


def register_synaptic(cls: type, sop_fn: Callable, mac_fn: Callable) -> None:
    """Teach the meter (and :class:`~neuroq.energy.SynapticPenalty`) a new synaptic layer type.

    ``sop_fn(module, x, conv_fanout) -> tensor`` returns the differentiable SOP count of spike input
    ``x``; ``mac_fn(module, x, out) -> int`` the MACs for real-valued input.
    """
    _REGISTRY[cls] = (sop_fn, mac_fn)


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
        fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
        return fn(x, ones, None, m.stride, m.padding, m.output_padding, g, m.dilation)
    ones = torch.ones((g, m.in_channels // g, *m.kernel_size), dtype=x.dtype, device=x.device)
    if isinstance(m, _CONVS):  # nn.Conv*d and subclasses: their padding mode (circular, reflect ...) applies
        return m._conv_forward(x, ones, None)
    fn = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return fn(x, ones, None, m.stride, m.padding, m.dilation, g)


def merge_time(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x``, the input of conv ``m``, with a multi-step time axis merged into the batch
    (``[T, N, C, ...] -> [T N, C, ...]``: a SpikingJelly step-mode conv in multi-step mode); else ``x``."""
    if x.dim() == len(m.kernel_size) + 3:  # SpikingJelly step-mode conv in multi-step mode: [T, N, C, ...]
        return x.flatten(0, 1)
    return x


def _fanout_rule(conv_fanout: str) -> str:
    if conv_fanout not in CONV_FANOUTS:
        raise ValueError(f"conv_fanout must be one of {CONV_FANOUTS}, got {conv_fanout!r}")
    return conv_fanout


def conv_sops(m: nn.Module, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    """SOPs of spike tensor ``x`` entering conv ``m`` (differentiable in ``x``): nominal fan-out per spike,
    or (``'exact'``) the weights each spike actually meets, as SpikingJelly 2.0.0's ``op_counter`` counts."""
    if _fanout_rule(conv_fanout) == "nominal":
        return x.sum() * _conv_nominal_fanout(m)
    return _window_counts(m, merge_time(m, x)).sum() * (m.out_channels // m.groups)


def conv_macs(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    r"""MACs of real-valued input entering conv ``m``: every output element (``out``, all steps and samples)
    costs :math:`C_{in}/g\cdot\prod k` of them."""
    return int(out.numel() * (m.in_channels // m.groups) * math.prod(m.kernel_size))


def conv_transpose_sops(m: nn.Module, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    r"""SOPs of spikes entering a transposed conv: each input element meets :math:`(C_{out}/g)\,k_h k_w`
    weights (nominal), or (``'exact'``) only those whose output lands inside the (cropped) output."""
    if _fanout_rule(conv_fanout) == "nominal":
        return x.sum() * ((m.out_channels // m.groups) * math.prod(m.kernel_size))
    return _window_counts(m, merge_time(m, x), transposed=True).sum() * (m.out_channels // m.groups)


def conv_transpose_macs(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    r"""MACs of real-valued input entering transposed conv ``m``: every input element (all steps and samples)
    meets :math:`C_{out}/g\cdot\prod k` weights."""
    x = merge_time(m, x)
    return int(x.numel() * (m.out_channels // m.groups) * math.prod(m.kernel_size))


def linear_sops(m: nn.Linear, x: torch.Tensor, conv_fanout: str = "nominal") -> torch.Tensor:
    """SOPs of spike tensor ``x`` entering linear ``m`` (differentiable in ``x``): ``out_features`` per spike;
    ``conv_fanout`` is accepted for the common signature (checked, then ignored)."""
    _fanout_rule(conv_fanout)
    return x.sum() * m.out_features


def linear_macs(m: nn.Linear, x: torch.Tensor, out: torch.Tensor) -> int:
    """MACs of real-valued input entering linear ``m``: ``in_features`` per output element."""
    return int(out.numel() * m.in_features)


#: counting rules a layer type may declare by name in its ``energy_rule`` class attribute (so this package
#: imports no layer class: a layer states which rule counts it)
NAMED_RULES = {"linear": (linear_sops, linear_macs), "conv": (conv_sops, conv_macs)}


def synaptic_fns(module: nn.Module):
    """``(sop_fn, mac_fn)`` for a synaptic layer, or ``None`` when the module is not one."""
    for cls, fns in _REGISTRY.items():
        if isinstance(module, cls):
            return fns
    declared = getattr(type(module), "energy_rule", None)
    if declared in NAMED_RULES:
        return NAMED_RULES[declared]
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


def check_real_input(x: torch.Tensor, layer: str) -> None:
    """A synaptic layer's real-valued (not spike) input must be finite to be counted: NaN or inf there is an
    error naming the layer (it would otherwise be counted as ordinary MACs, or skipped by a spike penalty)."""
    if x.is_floating_point() and not bool(torch.isfinite(x.detach()).all()):
        raise ValueError(f"the input of synaptic layer {layer!r} holds NaN or infinite values: its energy cannot "
                         "be counted (neuroq.set_checks(True) finds where they come from)")


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


# ---- what the energy models need beyond SOPs and MACs ----------------------------------------------------------
def weight_bits(m: nn.Module) -> float:
    r"""Bits of one stored weight of synaptic layer ``m``: what the layer declares (``energy_weight_bits``),
    :math:`\lceil\log_2 M\rceil` for a quantized layer with ``w_states`` :math:`M` (3 states = 2 bits), else
    the bits of its weight's dtype (32 for float32)."""
    declared = getattr(m, "energy_weight_bits", None)
    if declared is not None:
        return float(declared)
    states = getattr(m, "w_states", None)
    if states:
        return float(max(1, math.ceil(math.log2(int(states)))))
    w = getattr(m, "weight", None)
    if isinstance(w, torch.Tensor):
        return float(torch.finfo(w.dtype).bits if w.is_floating_point() else torch.iinfo(w.dtype).bits)
    return 32.0


def _param_numel(m: nn.Module, name: str) -> int:
    p = getattr(m, name, None)
    return int(p.numel()) if isinstance(p, torch.Tensor) else 0


def _param_bits(m: nn.Module, name: str) -> float:
    p = getattr(m, name, None)
    if isinstance(p, torch.Tensor) and p.is_floating_point():
        return float(torch.finfo(p.dtype).bits)
    return 32.0


def is_conv(m: nn.Module) -> bool:
    """True for a (transposed) ``nn.Conv1d/2d/3d`` or a layer type declaring ``energy_rule = 'conv'``."""
    return isinstance(m, _CONVS + _TCONVS) or getattr(type(m), "energy_rule", None) == "conv"


def out_per_sample_step(m: nn.Module, out: torch.Tensor) -> int:
    """Output elements of one sample at one time step (a linear layer's ``out_features``; a conv's
    ``C_out x spatial``)."""
    if is_conv(m):
        return int(math.prod(out.shape[-(len(m.kernel_size) + 1):]))
    return int(getattr(m, "out_features", out.shape[-1]))


def lemaire_spike_factors(m: nn.Module) -> tuple:
    r"""``(syn, fan)`` per input spike under Lemaire et al. 2022: linear ``(n_out, n_out)``; conv
    :math:`(C_{out}/g\,\prod\lceil k/s\rceil,\ C_{out}/g\,\prod k)` (borders ignored)."""
    if is_conv(m):
        cpg = m.out_channels // m.groups
        if isinstance(m, _TCONVS):
            f = cpg * math.prod(m.kernel_size)
            return f, f
        syn = cpg * math.prod(math.ceil(k / s) for k, s in zip(m.kernel_size, m.stride))
        return syn, cpg * math.prod(m.kernel_size)
    n = int(getattr(m, "out_features", 0))
    return n, n


class SynapseRule:
    """The counting functions of one synaptic layer type, as the energy models use them."""

    def __init__(self, sop: Callable, mac: Callable, conv_fanout: str = "nominal"):
        self.sop, self.mac, self.conv_fanout = sop, mac, conv_fanout

    weight_bits = staticmethod(weight_bits)

    @staticmethod
    def geometry(m: nn.Module, x: torch.Tensor, out: torch.Tensor) -> dict:
        """What the Lemaire model's differentiable spike term needs of layer ``m`` (output ``out``): ``conv``,
        ``syn`` and ``fan`` per input spike (:func:`lemaire_spike_factors`), ``weight_numel``, ``bias_numel``,
        ``bias_bits`` and ``out_per_sample_step``."""
        syn, fan = lemaire_spike_factors(m)
        static = synapse_ledger(m)
        return dict(conv=is_conv(m), syn=syn, fan=fan, weight_numel=static["weight_numel"],
                    bias_numel=static["bias_numel"], bias_bits=static["bias_bits"],
                    out_per_sample_step=out_per_sample_step(m, out))


def synapse_ledger(m: nn.Module) -> dict:
    """An empty ledger record of synaptic layer ``m``: what it counts, and its static facts."""
    return dict(type=type(m).__name__, sops=0.0, macs=0, spikes_in=0.0, elements_in=0, spike_calls=0, real_calls=0,
                acs=0.0, spike_events=0.0, lem_syn=0.0, lem_fan=0.0, conv_event_addr_macs=0.0, dense_addr=0.0,
                dense_in_reads=0.0, dense_out_writes=0.0, bias_adds=0.0, bias_reads=0.0, sample_steps=0.0,
                in_per_sample=0.0, in_per_call=0.0, out_per_sample=0.0, out_per_call=0.0, out_per_sample_step=0.0,
                out_per_call_step=0.0, in_bits=None,
                weight_numel=_param_numel(m, "weight"), bias_numel=_param_numel(m, "bias"),
                weight_bits=weight_bits(m), bias_bits=_param_bits(m, "bias"))


def add_synapse_call(rec: dict, m: nn.Module, x: torch.Tensor, out: torch.Tensor, spikes: Optional[torch.Tensor],
                     n_call: int, t_call: int) -> None:
    """Add one call of synaptic layer ``m`` to its ledger record (everything but SOPs/MACs, which the meter
    adds with the layer's own rules).  ``spikes``: the input as spike counts (float64) when it is a spike
    input, else ``None``; ``n_call`` samples and ``t_call`` time steps in this call."""
    ny = out.numel()
    n_call = max(1, int(n_call))
    step_out = out_per_sample_step(m, out)
    bias = isinstance(getattr(m, "bias", None), torch.Tensor)
    rows = ny / max(1, step_out)                       # (sample, step) pairs this call
    rec["sample_steps"] += rows
    rec["out_per_sample_step"] = step_out
    rec["out_per_call_step"] = ny / max(1, t_call)
    rec["out_per_sample"] = ny / n_call
    rec["out_per_call"] = ny
    if bias:
        rec["bias_adds"] += ny
        rec["bias_reads"] += ny
    if spikes is not None:
        s = float(spikes.sum())
        syn, fan = lemaire_spike_factors(m)
        rec["spike_events"] += s
        rec["lem_syn"] += s * syn
        rec["lem_fan"] += s * fan
        if is_conv(m):
            rec["conv_event_addr_macs"] += 2.0 * s
        return
    nx = x.numel()
    rec["in_per_sample"] = nx / n_call
    rec["in_per_call"] = nx
    rec["dense_out_writes"] += ny
    if is_conv(m):
        rec["dense_in_reads"] += conv_macs(m, x, out)     # one input read per MAC
        rec["dense_addr"] += nx + ny + m.out_channels * math.prod(m.kernel_size)
    else:
        rec["dense_in_reads"] += nx
        rec["dense_addr"] += nx + ny


# ---- neurons -----------------------------------------------------------------------------------------------------
def is_neuron_module(m: nn.Module) -> bool:
    """A neuron layer: a module declaring ``energy_rule = 'neuron'`` (every neuroq neuron) or a stateful
    module of SpikingJelly's ``activation_based.neuron`` package (0.0.0.0.14 and 2.0.0)."""
    if getattr(type(m), "energy_rule", None) == "neuron":
        return True
    from .. import _sj

    return isinstance(m, _sj.MemoryModule) and type(m).__module__.startswith("spikingjelly.activation_based.neuron")


def _sj_kind(m: nn.Module) -> Optional[str]:
    """``'lif'`` / ``'if'`` when ``m`` is (a subclass of) SpikingJelly's LIFNode / IFNode."""
    from .. import _sj

    mod = _sj.sj_neuron_module()
    if isinstance(m, mod.LIFNode):
        return "lif"
    if isinstance(m, mod.IFNode):
        return "if"
    return None


def neuron_ops_per_update(m: nn.Module) -> float:
    r"""Arithmetic operations (adds, subtracts, compares) per neuron and time step, as SpikingJelly's simple
    model counts them: LIF charge 3 (:math:`v - v_r`, with the input, into :math:`v`), IF charge 1, fire 1
    (:math:`h - V_{th}`), hard reset 2 (:math:`1 - s`, the sum), soft reset 1 -- LIF 6 / 5, IF 4 / 3.  A
    neuron class may state its own ``energy_ops_per_update``.  A neuron written as a pure step (a
    :class:`neuroq.neuron.BaseNode` of your own, any number of states) is counted from that step: the
    elementwise operations of its traced graph (:func:`neuroq.ops.codegen.count_ops`, the graph its
    generated kernel runs).  Others count fire plus, with state, charge and reset (3)."""
    declared = getattr(m, "energy_ops_per_update", None)
    if declared is not None:
        return float(declared)
    kind = _sj_kind(m)
    reset = 1.0 if getattr(m, "v_reset", 0.0) is None else 2.0
    if kind == "lif":
        return 3.0 + 1.0 + reset
    if kind == "if":
        return 1.0 + 1.0 + reset
    traced = traced_ops_per_update(m)
    if traced is not None:
        return float(traced)
    return 3.0 if neuron_state_tensors(m) else 1.0


def traced_ops_per_update(m: nn.Module) -> Optional[int]:
    """Operations per update of a neuron written as a pure step, counted on its traced graph; ``None`` for a
    neuron that is not one, or whose step cannot be traced."""
    from ..neuron.base import BaseNode

    if not isinstance(m, BaseNode):
        return None
    from ..ops import codegen

    try:
        return codegen.count_ops(codegen.trace(m))["ops"]
    except Exception:  # Unsupported, or a step torch.fx cannot follow: the generic rule applies
        return None


def neuron_leaky(m: nn.Module) -> bool:
    """Whether a neuron's update multiplies its potential by a leak (LIF-type; a class may state
    ``energy_leaky``)."""
    declared = getattr(m, "energy_leaky", None)
    if declared is not None:
        return bool(declared)
    return _sj_kind(m) == "lif"


def neuron_state_tensors(m: nn.Module) -> list:
    """The tensors a neuron keeps between time steps (its registered memories that are tensors)."""
    mem = getattr(m, "_memories", None) or {}
    return [v for v in mem.values() if isinstance(v, torch.Tensor)]


def neuron_ledger(m: nn.Module) -> dict:
    """An empty ledger record of neuron layer ``m``: zero counts (spikes, updates, state element-steps ...)
    and its static facts (``ops_per_update``, ``leaky``)."""
    return dict(type=type(m).__name__, spikes=0.0, elements=0, updates=0.0, state_element_steps=0.0, state_bits=32.0,
                per_sample_step=0.0, per_call_step=0.0, ops_per_update=neuron_ops_per_update(m),
                leaky=neuron_leaky(m))


def add_neuron_call(rec: dict, m: nn.Module, x: torch.Tensor, out: torch.Tensor, n_call: int) -> None:
    """Add one call of neuron layer ``m`` (input ``x``, output ``out``) to its ledger record: updates
    (neurons x steps), state elements read and written per step, spikes."""
    t = int(x.shape[0]) if getattr(m, "step_mode", "s") == "m" and x.dim() >= 1 else 1
    states = neuron_state_tensors(m)
    rec["updates"] += out.numel()
    rec["state_element_steps"] += sum(s.numel() for s in states) * t
    if states:
        rec["state_bits"] = float(torch.finfo(states[0].dtype).bits) if states[0].is_floating_point() else 32.0
    rec["per_call_step"] = out.numel() / max(1, t)
    rec["per_sample_step"] = rec["per_call_step"] / max(1, int(n_call))


def norm_ledger(m: nn.Module) -> dict:
    """An empty ledger record of normalization layer ``m`` (MACs and adds, filled by :func:`add_norm_call`)."""
    return dict(type=type(m).__name__, macs=0.0, acs=0.0)


def add_norm_call(rec: dict, m: nn.Module, x: torch.Tensor) -> None:
    r"""BatchNorm arithmetic as SpikingJelly's simple model counts it (``n`` elements, ``c`` channels):
    inference :math:`n` MACs (affine) and :math:`n + c` adds; training :math:`n` MACs :math:`+ 2c` (running
    statistics) and :math:`3n + 2c + 1` adds."""
    if x.dim() >= 3 and getattr(m, "step_mode", "s") == "m":
        x = x.flatten(0, 1)
    n, c = x.numel(), int(x.shape[1]) if x.dim() > 1 else 1
    training = m.training or (m.running_mean is None and m.running_var is None)
    running = (not m.training or m.track_running_stats) and m.running_mean is not None
    rec["macs"] += (n if m.weight is not None else 0) + (2 * c if training and running else 0)
    if training:
        rec["acs"] += 3 * n + (2 * c if running else 0) + (1 if m.training and m.track_running_stats else 0)
    else:
        rec["acs"] += n + c


_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
