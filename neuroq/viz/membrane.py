"""Membrane-potential traces with threshold and spikes marked (SpikingJelly's ``plot_one_neuron_v_s``)."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .._validate import check_bool, check_real  # noqa: E402
from ..labels import recorded_labels, resolve_labels  # noqa: E402
from ._checks import check_axes, check_indices, check_sample  # noqa: E402
from .raster import _to_time_major  # noqa: E402
from .style import GREY, color, styled, time_axis  # noqa: E402


def _as_array(x, sample, batched, name):
    return _to_time_major(x, sample, batched, name)


def _default_neurons(va, ha, sa, max_traces):
    T, n = va.shape
    count = sa.sum(0) if sa is not None else np.zeros(n)
    peak = (ha if ha is not None else va).max(0)
    # most telling first: neurons that fire but not at every step, then silent ones with the
    # highest peak, then those that always fire
    group = np.where((count > 0) & (count < T), 0, np.where(count == 0, 1, 2))
    order = np.lexsort((np.arange(n), -peak, -count, group))
    # prefer distinct spike trains, so the traces show different behaviour
    pattern = (sa > 0) if sa is not None else np.zeros_like(va, dtype=bool)
    seen, first, rest = set(), [], []
    for i in order:
        key = pattern[:, i].tobytes()
        (rest if key in seen else first).append(i)
        seen.add(key)
        if len(first) == max_traces:
            break
    return np.asarray((first + rest)[:max_traces], dtype=int)


@styled
def membrane_trace(v, spikes=None, layer: Optional[str] = None, neurons: Optional[Sequence[int]] = None,
                   sample: int = 0, v_threshold: Optional[float] = None, max_traces: int = 3,
                   ax: Optional[plt.Axes] = None, title: Optional[str] = None, h=None, labels=None,
                   stacked: bool = False, _color: int = 0, _note: bool = True):
    r"""Membrane potential over time of a few neurons, the threshold dashed, spikes marked where they fire.

    A neuron charges, fires and resets each step (SpikingJelly's three-stage neuron):

    .. math::
        H[t] = f(V[t-1], X[t]),\quad S[t] = \Theta(H[t] - V_{th}),\quad
        V[t] = H[t](1 - S[t]) + V_{reset} S[t] \;(\text{hard}) \text{ or } H[t] - V_{th}S[t] \;(\text{soft}).

    Where the potential before reset :math:`H[t]` is known (``record(..., v=True)`` keeps it for
    neuroq's neurons and soft-reset ones, or pass ``h``), each trace is the path
    :math:`H[0] \to V[0] \to H[1] \to V[1] \dots`: dots at :math:`H[t]`, the value compared with
    the threshold, a vertical drop to :math:`V[t]` where the neuron resets, and the spike ``▲`` on
    the :math:`H[t]` that crossed :math:`V_{th}`. Without :math:`H` the trace is :math:`V[t]` after
    reset (as ``store_v_seq`` keeps it) and a spike is drawn as a dotted rise from :math:`V[t]` to
    the threshold; the axes say so.

    Args:
        v: the :class:`~neuroq.viz.Recording` of ``neuroq.viz.record(model, x, v=True)`` (its
            ``.v``, ``.h`` and ``.v_threshold`` with the spikes it maps), or a ``[T, neurons...]``
            tensor of one sample's potentials after reset.
        spikes: ``[T, neurons...]`` spikes matching a tensor ``v`` (ignored for a recording).
        layer: which recorded layer (default: the first with a recorded potential).
        neurons: flattened neuron indices to draw; default ``max_traces`` neurons that fire in
            some but not all steps of this sample (most spikes first, then highest peak
            potential, distinct spike trains first), then silent ones, then ones that fire at
            every step.
        sample: batch element.
        v_threshold: threshold line; default the layer's recorded ``v_threshold`` (else 1.0).
        h: ``[T, neurons...]`` potentials before reset matching a tensor ``v`` (ignored for a recording).
        labels: layer labels ``{layer: label}`` (default: the recording's, e.g. ``LIF 1 (fc 256)``).
        stacked: one panel per neuron, stacked over a shared time axis, instead of all traces on one axes
            (traces that cross each other are then read apart); needs ``ax=None``.
    Returns:
        the ``Axes``; ``ax.lines[i]`` is neuron ``neurons[i]``'s trace: with :math:`H`, x data
        ``[0, 0, 1, 1, ...]`` and y data ``[H[0], V[0], H[1], V[1], ...]``; without, x data
        ``0..T-1`` and y data the recorded :math:`V`. ``ax.collections[i]`` are its spikes
        (x = spike steps), ``ax.neurons`` the indices drawn, ``ax.shows_h`` whether :math:`H` is drawn.
        With ``T = 1`` the neurons' x positions are spread around 0 (``ax.dodge[i]`` added to t)
        so that their single points do not hide each other. With ``stacked=True``: the list of the
        panels' ``Axes``, one neuron each, in the order of ``neurons``.

    Example::

        rec = viz.record(net, x_seq[:, :1], v=True)
        ax = viz.membrane_trace(rec, layer="2", max_traces=3)
    """
    if isinstance(max_traces, bool) or not isinstance(max_traces, int) or max_traces < 1:
        raise ValueError(f"max_traces must be a positive integer, got {max_traces!r}")
    sample = check_sample(sample)
    check_bool("stacked", stacked)
    check_axes(ax)
    given_th = v_threshold is not None
    if given_th:  # a number (or a one-element tensor), finite
        if isinstance(v_threshold, (torch.Tensor, np.ndarray)):
            size = v_threshold.numel() if isinstance(v_threshold, torch.Tensor) else v_threshold.size
            if size != 1:
                raise ValueError(f"v_threshold must be one number, got an array of shape {tuple(v_threshold.shape)}")
            v_threshold = v_threshold.item()
        v_threshold = check_real("v_threshold", v_threshold)
    if isinstance(v, Mapping):
        vs = getattr(v, "v", None)
        if not isinstance(vs, Mapping):
            raise ValueError("v must be the Recording of neuroq.viz.record(model, x, v=True) "
                             "or a [T, neurons...] tensor")
        if not vs:
            raise ValueError("no membrane potential was recorded: record with neuroq.viz.record(model, x, v=True) "
                             "(and neurons that keep v: store_v_seq)")
        if layer is None:
            layer = next(iter(vs))
        if layer not in vs:
            raise ValueError(f"layer={layer!r} has no recorded potential; recorded: {list(vs)}")
        va = _as_array(vs[layer], sample, True, f"v.v[{layer!r}]")
        sp = v.get(layer)
        sa = None if sp is None else _as_array(sp, sample, True, f"v[{layer!r}]")
        hp = (getattr(v, "h", None) or {}).get(layer)
        ha = None if hp is None else _as_array(hp, sample, True, f"v.h[{layer!r}]")
        if v_threshold is None:
            v_threshold = (getattr(v, "v_threshold", None) or {}).get(layer)
        name = resolve_labels([layer], labels, recorded_labels(v), v)[0]
    else:
        va = _as_array(v, sample, False, "v")
        sa = None if spikes is None else _as_array(spikes, sample, False, "spikes")
        ha = None if h is None else _as_array(h, sample, False, "h")
        name = str(labels[layer]) if isinstance(labels, Mapping) and layer in labels else (layer or "neuron")
    for what, arr in (("spikes", sa), ("h", ha)):
        if arr is not None and arr.shape != va.shape:
            raise ValueError(f"{what} {arr.shape} and v {va.shape} must have the same [T, neurons] shape")
    if v_threshold is None or isinstance(v_threshold, torch.Tensor) and v_threshold.numel() != 1:
        v_threshold = 1.0
    v_threshold = check_real("v_threshold" if given_th else f"the recorded v_threshold of layer {layer!r}",
                             float(v_threshold))
    T, n = va.shape
    if neurons is None:
        neurons = _default_neurons(va, ha, sa, max_traces)
    neurons = check_indices("neurons", neurons, n, f"neurons of {name!r}")
    if stacked:
        if ax is not None:
            raise ValueError("stacked=True draws its own panels: leave ax=None")
        fig, axes = plt.subplots(len(neurons), 1, figsize=(6.4 if T > 1 else 4.0, 1.2 + 1.45 * len(neurons)),
                                 sharex=True, sharey=True, squeeze=False, layout="constrained")
        axes = list(axes[:, 0])
        for k, (a, i) in enumerate(zip(axes, neurons)):
            membrane_trace(va, sa, layer=name, neurons=[i], v_threshold=v_threshold, ax=a, h=ha,
                           _color=k, _note=k == len(axes) - 1)
            if k < len(axes) - 1:
                a.set_xlabel("")
        if title:
            fig.suptitle(title)
        return axes
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4 if T > 1 else 4.0, 3.4), layout="constrained")
    t = np.arange(T)
    # T = 1: the neurons side by side around t = 0 (else their single points would hide each other)
    dodge = (np.arange(len(neurons)) - (len(neurons) - 1) / 2) * (0.6 / max(len(neurons), 1)) if T == 1 \
        else np.zeros(len(neurons))
    for k, i in enumerate(neurons):
        c = color(k + _color)
        if ha is not None:  # H[0] -> V[0] -> H[1] -> ...: charge, then (where it fired) the reset drop
            ax.plot(np.repeat(t + dodge[k], 2), np.column_stack([ha[:, i], va[:, i]]).ravel(), color=c,
                    marker="o", markevery=(0, 2), markersize=3.5, label=f"neuron {i}")
        else:
            ax.plot(t + dodge[k], va[:, i], marker="o", markersize=3.5, color=c, label=f"neuron {i}")
    fired = False
    for k, i in enumerate(neurons):
        ts = np.nonzero(sa[:, i] > 0)[0] if sa is not None else np.zeros(0, dtype=int)
        y = ha[ts, i] if ha is not None else np.full(len(ts), v_threshold)
        ax.scatter(ts + dodge[k], y, marker="^", s=42, color=color(k + _color), edgecolors="k", linewidths=0.5,
                   zorder=3)
        fired = fired or bool(len(ts))
    for k, i in enumerate(neurons if ha is None and sa is not None else []):
        ts = np.nonzero(sa[:, i] > 0)[0]
        if len(ts):
            ax.vlines(ts + dodge[k], va[ts, i], v_threshold, colors=color(k + _color), linestyles=":", linewidth=1.0)
    ax.axhline(v_threshold, color="k", linestyle="--", linewidth=0.9, label=r"$V_{th}$")
    time_axis(ax, T)
    if ha is not None:
        ax.set_ylabel("membrane potential")
        what = r"dots: $H[t]$ before reset, drops: reset to $V[t]$"
    else:
        ax.set_ylabel(r"membrane potential $V[t]$ (after reset)")
        what = r"$V[t]$ after reset ($H[t]$ not recorded); dotted: spike"
    handles, labs = ax.get_legend_handles_labels()
    if fired:  # a spike marker only where a shown neuron spikes
        handles.append(Line2D([], [], marker="^", linestyle="none", color=GREY, markeredgecolor="k",
                              markeredgewidth=0.5, markersize=7))
        labs.append("spike" + (r" (at $H[t] \geq V_{th}$)" if ha is not None else ""))
    if _note:  # how to read the trace, inside the legend (laid out with the figure, never clipped)
        handles.append(Line2D([], [], linestyle="none"))
        labs.append(what.replace(", ", ",\n").replace("; ", ";\n"))
    leg = ax.legend(handles, labs, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, title=name,
                    alignment="left")
    if _note:
        leg.get_texts()[-1].set_color(GREY)
    if title:
        ax.set_title(title)
    ax.neurons = neurons.tolist()
    ax.dodge = dodge.tolist()
    ax.shows_h = ha is not None
    return ax
