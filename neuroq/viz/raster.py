"""Spike raster plot (SpikingJelly's ``plot_1d_spikes`` / snnTorch's ``spikeplot.raster``)."""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Mapping, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.colors import is_color_like  # noqa: E402
from matplotlib.path import Path as MPath  # noqa: E402
from matplotlib.transforms import IdentityTransform, blended_transform_factory  # noqa: E402

from .._validate import check_choice, check_real  # noqa: E402
from ._checks import (RECORDING_TYPES, check_axes, check_indices, check_layer_tensor, check_names,  # noqa: E402
                      check_positive_or_none, check_sample)
from ..labels import recorded_labels, resolve_labels  # noqa: E402
from .style import GREY, color, styled, time_axis  # noqa: E402

SELECT = ("active", "even", "first")
_NOTE = {"active": "most active", "even": "evenly spaced", "first": "first"}


def _to_time_major(s, sample: Optional[int], batched: bool, name: str = "spikes") -> np.ndarray:
    """``[T, N, ...]`` (batched) or ``[T, ...]`` -> ``[T, neurons]`` float array of one sample.

    With ``sample=None`` a batched recording is averaged over the batch (firing probabilities). ``s`` is checked
    first (:func:`neuroq.viz._checks.check_layer_tensor`: shape, at least one step, sample and neuron, finite
    values); errors name it as ``name``."""
    s = check_layer_tensor(name, s, batched)
    if s.dim() == 1:
        s = s[:, None]
    if batched:
        if s.dim() < 3 and s.shape[1] != 1 and sample not in (0, None):
            raise ValueError(f"{name}: batched spikes must be [T, N, ...]")
        if s.dim() >= 2:
            if sample is None:
                s = s.float().mean(1)
            else:
                check_sample(sample, s.shape[1])
                s = s[:, sample]
    return s.reshape(s.shape[0], -1).float().numpy()


def _check_layers(spikes: Mapping):
    """A recording maps layer names to tensors: say so when an entry is itself a mapping."""
    for k, v in spikes.items():
        if isinstance(v, Mapping):
            raise TypeError(f"spikes[{k!r}] is a {type(v).__name__}, not a [T, N, ...] tensor: pass a "
                            "neuroq.viz.Recording (what viz.record returns) or a {layer: tensor} mapping")


def _check_spikes(spikes, layers=None) -> Optional[list]:
    """Refuse what is not a recording (type error naming :data:`RECORDING_TYPES`), an empty recording (a model
    without spiking neurons), and a ``layers`` that is empty, names a layer twice or one not recorded; returns
    ``layers`` as a list (``None`` for all)."""
    layers = check_names("layers", layers)
    if isinstance(spikes, Mapping):
        _check_layers(spikes)
        if not spikes:
            raise ValueError("spikes is an empty recording: nothing was recorded (the model has no spiking neurons)")
        if layers is not None:
            missing = [k for k in layers if k not in spikes]
            if missing:
                raise ValueError(f"layers {missing} were not recorded; recorded: {list(spikes)}")
    elif isinstance(spikes, (str, bytes)) or not isinstance(spikes, (torch.Tensor, np.ndarray, list, tuple)):
        raise TypeError(f"spikes must be {RECORDING_TYPES}; got {type(spikes).__name__}")
    return layers


def layer_items(spikes, sample: Optional[int] = 0, layers: Optional[Sequence[str]] = None):
    """``[(layer name, [T, neurons] array of one sample)]`` from a recording or a single tensor."""
    sample = check_sample(sample, allow_none=True)
    layers = _check_spikes(spikes, layers)
    if isinstance(spikes, Mapping):
        if layers is not None:
            spikes = OrderedDict((k, spikes[k]) for k in layers)
        return [(k, _to_time_major(v, sample, True, f"spikes[{k!r}]")) for k, v in spikes.items()]
    return [("spikes", _to_time_major(spikes, 0 if sample is None else sample, False))]


def display_labels(spikes, names, labels=None) -> list:
    """Label of each plotted layer: ``labels`` > the recording's own (``record()``) > a fallback."""
    tensors = spikes if isinstance(spikes, Mapping) else {}
    return resolve_labels(names, labels, recorded_labels(spikes), tensors)


def select_neurons(a: np.ndarray, max_neurons: Optional[int], select: str = "active") -> np.ndarray:
    r"""Indices (ascending) of at most ``max_neurons`` columns of ``a`` (``[T, neurons]``):

    * ``"active"``: the neurons with the most spikes :math:`\sum_t S_i[t]` (ties: lower index),
      only those that fire at all; a silent layer gives ``min(max_neurons, 32)`` evenly spaced ones;
    * ``"even"``: evenly spaced over the layer, :math:`i_k = \lfloor k\,n / m \rfloor`;
    * ``"first"``: neurons ``0 .. max_neurons - 1``.

    Inputs/Outputs: ``a`` ``[T, neurons]`` (one sample, e.g. ``spikes[:, 0].flatten(1)``) -> ``[m]`` indices.

    Example::

        idx = viz.select_neurons(spikes[:, 0].flatten(1).numpy(), 100)   # the 100 busiest neurons
    """
    check_choice("select", select, SELECT)
    max_neurons = check_positive_or_none("max_neurons", max_neurons)
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"a must be a [T, neurons] array of one sample, got shape {a.shape}")
    n = a.shape[1]
    if max_neurons is None or max_neurons >= n:
        return np.arange(n)
    if select == "active":
        count = (a > 0).sum(0)
        k = min(max_neurons, int((count > 0).sum()))
        if k == 0:
            return select_neurons(a, min(max_neurons, 32), "even")
        order = np.lexsort((np.arange(n), -count))
        return np.sort(order[:k])
    if select == "even":
        return (np.arange(max_neurons) * n) // max_neurons
    return np.arange(max_neurons)


def _select(a: np.ndarray, name: str, neurons, max_neurons: Optional[int], select: str = "active"):
    """``(columns, indices, note)``: ``neurons`` (indices, or ``{layer: indices}``) or a selection."""
    idx = neurons.get(name) if isinstance(neurons, Mapping) else neurons
    n = a.shape[1]
    if idx is not None:
        idx = check_indices(f"neurons[{name!r}]" if isinstance(neurons, Mapping) else "neurons", idx, n,
                            f"neurons of layer {name!r}")
        return a[:, idx], idx, (None if idx.size == n else f"shows {idx.size:,} chosen\nof {n:,} neurons")
    idx = select_neurons(a, max_neurons, select)
    if idx.size == n:
        note = None
    elif select == "active" and idx.size < max_neurons and (a[:, idx] > 0).any():
        note = f"shows the {idx.size:,} active\nof {n:,} neurons"
    elif select == "active" and not (a > 0).any():
        note = f"shows {idx.size:,} of {n:,} neurons"
    else:
        note = f"shows {idx.size:,} {_NOTE[select]}\nof {n:,} neurons"
    return a[:, idx], idx, note


class SpikeMarks(PathCollection):
    """Raster marks sized when drawn: a bar ``width_frac`` of one time step wide (at most
    ``max_width`` points) and ``height_frac`` of one neuron row tall, never under 1.25 device
    pixels, so the raster reads the same at any figure size and dpi (``height`` fixes it in points)."""

    def __init__(self, offsets, transform, width_frac=0.35, height_frac=0.85, max_width=10.0, height=None, **kw):
        self.width_frac, self.height_frac, self.max_width, self.height = width_frac, height_frac, max_width, height
        super().__init__([MPath.unit_rectangle()], sizes=[1.0], offsets=offsets, offset_transform=transform, **kw)
        self.set_transform(IdentityTransform())  # marks in points (scaled by the sizes), placed at the offsets

    def mark_size(self, renderer=None):
        """``(width, height)`` of one mark in points for the axes' current size and the figure's dpi."""
        ax, dpi = self.axes, self.figure.dpi
        px = 72.0 / dpi  # one device pixel in points
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        box = ax.get_window_extent(renderer)
        col = box.width * 72.0 / dpi / max(abs(x1 - x0), 1e-12)
        row = box.height * 72.0 / dpi / max(abs(y1 - y0), 1e-12)
        w = max(min(self.width_frac * col, self.max_width), 1.25 * px)
        h = max(self.height if self.height is not None else self.height_frac * row, 1.25 * px)
        return w, h

    def draw(self, renderer):
        """Size the marks for this renderer (:meth:`mark_size`), then draw them."""
        w, h = self.mark_size(renderer)
        verts = np.array([[-w, -h], [w, -h], [w, h], [-w, h], [-w, -h]]) / 2.0
        self.set_paths([MPath(verts, closed=True)])
        super().draw(renderer)


@styled
def raster(spikes: Union[torch.Tensor, Mapping[str, torch.Tensor]], ax: Optional[plt.Axes] = None,
           sample: Optional[int] = None, max_neurons: Optional[int] = 200, title: Optional[str] = None,
           colors=None, marker_size: Optional[float] = None, layers: Optional[Sequence[str]] = None, neurons=None,
           select: str = "active", labels=None, over: str = "auto"):
    r"""Spike raster: time on x, neurons on y in one band per layer (first layer on top), one colour per layer.

    A mark at :math:`(t, i)` means neuron :math:`i` fired, :math:`S_i[t] = 1` (a graded value
    :math:`S_i[t] > 0` counts as a spike too). A layer with more than ``max_neurons`` neurons shows
    a selection (``select``), said beside its band (``"200 most active of 8,192 neurons"``); a
    band with no spike says so, it is never silently empty. ``T = 1`` (ANN-like single-step
    methods) has no time to show: there, with several samples recorded, the x axis runs over the samples
    instead (``over="samples"``, the default for ``T = 1``): neurons × samples, one column per sample.

    Args:
        spikes: the :class:`~neuroq.viz.Recording` of :func:`neuroq.viz.record` (any mapping
            ``{layer: [T, N, ...]}`` will do; ``sample`` picks the batch element), or a
            ``[T, neurons...]`` tensor for one sample.
        ax: axes to draw on (a new figure when ``None``).
        sample: batch element to plot (default: the first; for ``over="samples"`` every one).
        max_neurons: show at most this many neurons per layer, ``None`` for all.
        title: axes title.
        colors: one matplotlib colour per layer (default: :data:`neuroq.viz.style.PALETTE`).
        marker_size: height of a mark in points (default: sized to the neuron rows when drawn).
        layers: plot only these recorded layers (in this order).
        neurons: plot only these neuron indices (flattened per sample), for every layer, or a dict
            ``{layer: indices}``; overrides ``max_neurons`` for those layers.
        select: which neurons a layer larger than ``max_neurons`` shows: ``"active"`` (most spikes
            in this sample), ``"even"`` (evenly spaced) or ``"first"`` (see :func:`select_neurons`).
        labels: layer labels, ``{layer: label}`` or one per plotted layer (default: the
            recording's, e.g. ``LIF 1 (fc 256)``; see :func:`neuroq.viz.layer_labels`).
        over: what the x axis runs over: ``"time"`` (the steps of sample ``sample``), ``"samples"`` (the
            recording's samples of a ``T = 1`` recording, ``[1, N, ...]``), or ``"auto"``: samples when
            ``T = 1``, more than one sample was recorded and no ``sample`` is given, else time.
    Returns:
        the matplotlib ``Axes``; ``ax.collections[i]`` holds layer ``i``'s spikes (one point
        ``(t, row)`` each, rows counted from the first layer's first shown neuron),
        ``ax.raster_neurons[layer]`` the neuron indices shown, ``ax.raster_labels`` the band labels.
        An empty recording (a model without spiking neurons) is refused with a ``ValueError``.

    Example::

        rec = viz.record(net, x_seq[:, :1])       # [T, 1, ...] input: one sample
        ax = viz.raster(rec, max_neurons=100)
    """
    check_choice("select", select, SELECT)
    check_choice("over", over, ("auto", "time", "samples"))
    check_axes(ax)
    sample = check_sample(sample, allow_none=True)
    max_neurons = check_positive_or_none("max_neurons", max_neurons)
    marker_size = check_real("marker_size", marker_size, gt=0, allow_none=True)
    layers = _check_spikes(spikes, layers)
    if isinstance(spikes, Mapping):
        chosen_layers = OrderedDict((k, check_layer_tensor(f"spikes[{k!r}]", spikes[k]))
                                    for k in (layers if layers is not None else spikes))
        t_n = [tuple(v.shape[:2]) for v in chosen_layers.values()]
        if over == "auto":
            over = "samples" if t_n[0][0] == 1 and t_n[0][1] > 1 and sample is None else "time"
        if over == "samples":
            if t_n[0][0] != 1:
                raise ValueError(f"over='samples' needs a T = 1 recording [1, N, ...], got T = {t_n[0][0]}")
            swapped = OrderedDict((k, v.transpose(0, 1)) for k, v in chosen_layers.items())  # samples as the x axis
            labels = labels if labels is not None else recorded_labels(spikes)
            spikes = swapped
            sample = 0
    elif over == "samples":
        raise ValueError("over='samples' needs a recording {layer: [1, N, ...]}, got a single tensor")
    items = layer_items(spikes, 0 if sample is None else sample, layers)
    names = [name for name, _ in items]
    if isinstance(neurons, Mapping):
        extra = [k for k in neurons if k not in names]
        if extra:
            raise ValueError(f"neurons names layers {extra} that are not plotted; plotted: {names}")
    shown = display_labels(spikes, names, labels)
    chosen = [(name, *_select(a, name, neurons, max_neurons, select)) for name, a in items]
    if colors is not None:
        if isinstance(colors, (str, bytes)) or not isinstance(colors, Iterable):
            raise TypeError(f"colors must be a list of one matplotlib colour per plotted layer, got {colors!r}")
        colors = list(colors)
        if len(colors) != len(chosen):
            raise ValueError(f"colors must give one colour per plotted layer: {len(chosen)} layers "
                             f"{[name for name, *_ in chosen]}, got {len(colors)} colours")
        for i, c in enumerate(colors):
            if not is_color_like(c):
                raise ValueError(f"colors[{i}] = {c!r} is not a matplotlib colour")
    T = chosen[0][1].shape[0]
    n_rows = sum(a.shape[1] for _, a, _, _ in chosen)
    if ax is None:
        width = 3.8 if T == 1 else 6.4  # (T: the columns, samples for over="samples")
        _, ax = plt.subplots(figsize=(width, float(np.clip(1.6 + 0.0075 * n_rows + 0.45 * len(chosen), 2.4, 8.0))),
                             layout="constrained")
    offset = 0
    ticks = []
    right = blended_transform_factory(ax.transAxes, ax.transData)
    total_marks = 0
    for i, (name, a, idx, note) in enumerate(chosen):
        t, n = np.nonzero(a > 0)
        pts = np.column_stack([t, n + offset]).astype(float) if len(t) else np.zeros((0, 2))
        c = colors[i] if colors is not None else color(i)
        coll = SpikeMarks(pts, ax.transData, width_frac=0.6 if T == 1 else 0.35,
                          max_width=1e9 if T == 1 else 10.0, height=marker_size,
                          facecolors=[c], edgecolors="none", linewidths=0, label=shown[i])
        ax.add_collection(coll, autolim=False)
        total_marks += len(pts)
        mid = offset + (a.shape[1] - 1) / 2
        ticks.append(mid)
        if not len(t):
            ax.text((T - 1) / 2, mid, "no spikes", ha="center", va="center", color=GREY, style="italic")
        if note:
            ax.text(1.01, mid, note, transform=right, ha="left", va="center", color=GREY,
                    fontsize=plt.rcParams["xtick.labelsize"])
        offset += a.shape[1]
        if i < len(chosen) - 1:
            ax.axhline(offset - 0.5, color="0.8", linewidth=0.6)
    if total_marks > 20000:  # keep vector files small: the marks go in as one bitmap
        for coll in ax.collections:
            coll.set_rasterized(True)
    if over == "samples":
        time_axis(ax, T, label="test sample (T = 1: one step each)")
    else:
        time_axis(ax, T)
    ax.set_ylim(max(offset, 1) - 0.5, -0.5)  # first layer on top
    ax.set_ylabel("neuron (by layer)")
    ax.set_yticks(ticks, shown)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title)
    ax.raster_neurons = OrderedDict((name, idx.tolist()) for name, _, idx, _ in chosen)
    ax.raster_labels = shown
    return ax
