r"""Readable names for layers: ``LIF 1 (conv 32×4×4)`` instead of the module path ``1``, the one naming used
by the plots, the energy meter's report and table, and the training logs.

A recording of :func:`neuroq.viz.record` is keyed by module path (``"2"``, ``"net.6"``) so it can
be matched with the model and with :class:`neuroq.energy.EnergyMeter` reports; the plots show a
human label instead, made here from the model:

* a spiking layer is ``<neuron kind> <k>`` — the class name without ``Node``, ``k`` its position
  among the spiking layers (1-based) — and, in brackets, what it is a layer of: ``fc <width>``
  after a linear layer, ``conv <C>×<H>×<W>`` after a convolution (per-sample shape of the
  recording, or ``<C> ch`` without one);
* a synaptic layer is ``Linear <k> (<in>→<out>)`` or ``Conv <k> (<in>→<out>, <kh>×<kw>)``, ``k``
  counted per class.

Every plot takes ``labels=`` to use your own names instead: a ``{path: name}`` mapping (layers
it leaves out keep their default label) or a sequence with one name per plotted layer.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, Optional, Sequence

import torch
import torch.nn as nn


_SYNAPSES = (nn.Linear, nn.modules.conv._ConvNd)


def _is_neuron(m: nn.Module) -> bool:
    from .neuron.base import is_neuron

    return is_neuron(m)


def neuron_kind(m) -> str:
    """``LIFNode`` -> ``LIF``, ``S2NNNode`` -> ``S2NN``: the class name without a ``Node`` suffix."""
    name = m if isinstance(m, str) else type(m).__name__
    return name[:-4] if name.endswith("Node") and len(name) > 4 else name


def _dims(shape) -> str:
    return "×".join(str(int(d)) for d in shape)


def _neuron_desc(syn: Optional[nn.Module], shape) -> str:
    conv = isinstance(syn, nn.modules.conv._ConvNd) or (syn is None and shape is not None and len(shape) >= 2)
    if shape is not None and len(shape):
        return f"{'conv' if conv else 'fc'} {_dims(shape)}"
    if isinstance(syn, nn.Linear):
        return f"fc {syn.out_features}"
    if isinstance(syn, nn.modules.conv._ConvNd):
        return f"conv {syn.out_channels} ch"
    return ""


def _synapse_kind(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "Linear"
    return "Conv" if isinstance(m, nn.Conv2d) else type(m).__name__


def _synapse_label(m: nn.Module, k: int) -> str:
    if isinstance(m, nn.Linear):
        return f"Linear {k} ({m.in_features}→{m.out_features})"
    return f"{_synapse_kind(m)} {k} ({m.in_channels}→{m.out_channels}, {_dims(m.kernel_size)})"


def layer_labels(model: nn.Module, recording: Optional[Mapping] = None) -> "OrderedDict[str, str]":
    r"""Human labels of a model's spiking and synaptic layers, keyed by module path.

    Args:
        model: any ``nn.Module`` (neurons: SpikingJelly ``MemoryModule`` with ``v_threshold``).
        recording: optional ``{path: [T, N, ...]}``, e.g. the :class:`~neuroq.viz.Recording` of
            :func:`neuroq.viz.record`: the per-sample shape ``[...]`` goes into the neuron labels.
    Returns:
        ``OrderedDict`` ``{module path: label}`` in module order, e.g. for
        ``spiking_cnn((1, 8, 8), 10, LIFNode)`` and its recording: ``{'0.0': 'Conv 1 (1→32, 3×3)',
        '1': 'LIF 1 (conv 32×4×4)', '2.0': 'Conv 2 (32→64, 3×3)', '3': 'LIF 2 (conv 64×2×2)',
        '5': 'Linear 1 (256→256)', '6': 'LIF 3 (fc 256)', '7': 'Linear 2 (256→10)'}`` (without the
        recording the conv neurons read ``conv 32 ch``).

    Example::

        rec = viz.record(net, x)                         # rec.labels is layer_labels(net, rec)
        viz.energy_bars(meter.report(), labels=viz.layer_labels(net))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    out: "OrderedDict[str, str]" = OrderedDict()
    n_neuron, n_syn = 0, {}
    last_syn = None
    for name, m in model.named_modules():
        key = name or type(m).__name__
        if isinstance(m, _SYNAPSES):
            kind = _synapse_kind(m)
            n_syn[kind] = n_syn.get(kind, 0) + 1
            out[key] = _synapse_label(m, n_syn[kind])
            last_syn = m
        elif _is_neuron(m):
            n_neuron += 1
            rec = recording.get(key) if isinstance(recording, Mapping) else None
            shape = tuple(rec.shape[2:]) if isinstance(rec, torch.Tensor) and rec.dim() >= 2 else None
            desc = _neuron_desc(last_syn, shape)
            out[key] = f"{neuron_kind(m)} {n_neuron}" + (f" ({desc})" if desc else "")
    return out


def with_path(path: str, label: Optional[str]) -> str:
    """A layer's name in tables and logs (the energy table, ``log.csv``, TensorBoard): its label, as the plots
    show it, with the module path beside it, ``'LIF 1 (fc 256) [1]'``; the path alone without a label."""
    return f"{label} [{path}]" if label and label != path else path


def fallback_label(name: str, tensor=None) -> str:
    """Label of a layer known only by its recording key: ``'2'`` -> ``'layer 2 (256)'``; a key
    that is not a module path (a name you gave) is kept as it is."""
    desc = ""
    if isinstance(tensor, torch.Tensor) and tensor.dim() >= 3:
        desc = f" ({_dims(tensor.shape[2:])})"
    if any(part.isdigit() for part in name.split(".")):  # a Sequential path such as '2' or 'net.6'
        return f"layer {name}{desc}"
    return name


def recorded_labels(spikes) -> Mapping:
    """The default labels a recording carries (a :class:`~neuroq.viz.Recording`'s ``.labels``), else ``{}``."""
    labels = getattr(spikes, "labels", None)
    return labels if isinstance(labels, Mapping) else {}


def resolve_labels(names: Sequence[str], labels=None, defaults: Optional[Mapping] = None,
                   tensors: Optional[Mapping] = None) -> list:
    """Display label of each name: ``labels`` (mapping or sequence) > ``defaults`` > :func:`fallback_label`."""
    names = list(names)
    if labels is not None and not isinstance(labels, Mapping):
        if isinstance(labels, str):
            raise TypeError("labels must be a mapping {layer: label} or a sequence of labels, got a str")
        labels = list(labels)
        if len(labels) != len(names):
            raise ValueError(f"labels has {len(labels)} entries for {len(names)} layers {names}")
        return [str(x) for x in labels]
    labels = labels or {}
    defaults = defaults or {}
    tensors = tensors or {}
    return [str(labels[n]) if n in labels else str(defaults[n]) if n in defaults
            else fallback_label(n, tensors.get(n)) for n in names]
