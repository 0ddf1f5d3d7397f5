"""Firing-rate views: per-layer histogram of neuron rates and per-neuron heatmap over time."""
from __future__ import annotations

from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .raster import display_labels, layer_items  # noqa: E402
from .style import CMAP, GREY, color, styled, time_axis  # noqa: E402


def nice_upper(x: float) -> float:
    """Smallest of 1, 2, 2.5, 5 times a power of ten that is >= ``x`` (``x > 0``), capped at 1.0."""
    if x <= 0:
        return 1.0
    p = 10.0 ** np.floor(np.log10(x))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * p >= x * (1 - 1e-12):
            return float(min(1.0, m * p))
    return 1.0


#: heatmap rows drawn at most; a bigger layer is shown as means of neighbouring neurons
MAX_ROWS = 1024


@styled
def firing_rates(spikes, sample: Optional[int] = None, bins: int = 20, max_neurons: Optional[int] = None,
                 layers: Optional[Sequence[str]] = None, title: Optional[str] = None, cmap: Optional[str] = None,
                 labels=None, hist_range="auto"):
    r"""Firing rates of every recorded layer: a histogram of neuron rates and a rate heatmap.

    For neuron :math:`i` of a layer with spikes :math:`S_{i}[t, n]` (time :math:`t`, sample
    :math:`n` of :math:`N`):

    .. math::
        r_i[t] = \frac{1}{N}\sum_n S_i[t, n], \qquad \bar r_i = \frac{1}{T}\sum_t r_i[t]

    The top row shows, per layer, the histogram of :math:`\bar r_i` over neurons with its mean
    dashed; the bottom row the heatmap :math:`r_i[t]` (neuron on y, time on x), like
    SpikingJelly's ``plot_2d_heatmap``, each with its own colour bar from 0 to the layer's
    largest :math:`r_i[t]` (sparse layers are not drawn uniformly dark). With ``sample=K`` only
    sample ``K`` is used (:math:`N = 1`), so :math:`r_i[t]` is the spike itself.

    Args:
        spikes: the :class:`~neuroq.viz.Recording` of :func:`neuroq.viz.record` (any mapping
            ``{layer: [T, N, ...]}`` will do), or a ``[T, neurons...]`` tensor.
        sample: batch element, or ``None`` to average over the whole recorded batch.
        bins: number of histogram bins.
        max_neurons: heatmap rows per layer (the first neurons), ``None`` for all; the histogram
            always uses every neuron. A layer of more than :data:`MAX_ROWS` neurons is drawn as
            the mean of neighbouring neurons per row (said on its axis), not resampled.
        layers: only these layers.
        cmap: heatmap colour map (default :data:`neuroq.viz.style.CMAP`).
        labels: layer labels, ``{layer: label}`` or one per layer (default: the recording's).
        hist_range: histogram bins on ``[0, hi]``: ``"auto"`` takes ``hi`` from the data (the
            largest :math:`\bar r_i` rounded up by :func:`nice_upper`, the same for all layers), or
            give ``(0, 1)`` or any ``(lo, hi)``.
    Returns:
        the ``Figure``; ``fig.hist_axes[j]`` / ``fig.heatmap_axes[j]`` / ``fig.colorbars[j]`` are
        layer ``j``'s axes and colour bar; ``fig.hist_edges`` the bin edges.

    Example::

        fig = viz.firing_rates(viz.record(net, x_seq))     # x_seq: a batch [T, N, ...]
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    if max_neurons is not None and (isinstance(max_neurons, bool) or not isinstance(max_neurons, int)
                                    or max_neurons < 1):
        raise ValueError(f"max_neurons must be a positive integer or None, got {max_neurons!r}")
    items = layer_items(spikes, sample, layers)
    shown = display_labels(spikes, [k for k, _ in items], labels)
    rates_all = [a.mean(0) for _, a in items]
    if isinstance(hist_range, str) and hist_range == "auto":
        lo, hi = 0.0, nice_upper(max(float(r.max()) if r.size else 0.0 for r in rates_all))
    else:
        try:
            lo, hi = (float(v) for v in hist_range)
        except (TypeError, ValueError):
            raise ValueError(f"hist_range must be 'auto' or a pair (lo, hi), got {hist_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"hist_range must be a pair of finite numbers (lo, hi), got {hist_range!r}")
        if not hi > lo:
            raise ValueError(f"hist_range must have hi > lo, got {hist_range!r}")
    edges = np.linspace(lo, hi, bins + 1)
    L = len(items)
    fig, axes = plt.subplots(2, L, figsize=(max(4.2, 3.4 * L), 5.8), squeeze=False, layout="constrained",
                             gridspec_kw=dict(height_ratios=[1, 1.7]))
    cbars = []
    for j, ((name, a), rates) in enumerate(zip(items, rates_all)):
        hax = axes[0, j]
        hax.hist(np.clip(rates, lo, hi), bins=edges, color=color(j))
        hax.axvline(rates.mean(), color="k", linestyle="--", linewidth=1.0)
        hax.set_xlim(lo, hi)
        hax.set_title(f"{shown[j]}\nmean rate {rates.mean():.3f} ({a.shape[1]:,} neurons)")
        hax.set_xlabel("firing rate (spikes / step)")
        if j == 0:
            hax.set_ylabel("neurons")
        heat = a if max_neurons is None else a[:, :max_neurons]
        rows = heat.shape[1]
        group = -(-rows // MAX_ROWS)  # more rows than pixels: show the mean of `group` neurons per row
        if group > 1:
            pad = (-rows) % group
            padded = np.concatenate([heat, np.full((heat.shape[0], pad), np.nan)], 1)
            heat = np.nanmean(padded.reshape(heat.shape[0], -1, group), 2)
        vmax = float(heat.max()) if heat.size else 0.0
        hm = axes[1, j]
        # nearest: each time step and neuron is one sharp cell (no smoothing across steps)
        im = hm.imshow(heat.T, aspect="auto", interpolation="nearest", origin="lower", cmap=cmap or CMAP,
                       vmin=0.0, vmax=vmax if vmax > 0 else 1.0,
                       extent=(-0.5, heat.shape[0] - 0.5, -0.5, rows - 0.5))
        time_axis(hm, heat.shape[0])
        if j == 0 or group > 1:
            hm.set_ylabel("neuron" + (f" (mean of {group} per row)" if group > 1 else ""))
        if heat.shape[1] < a.shape[1]:
            hm.set_title(f"first {heat.shape[1]:,} of {a.shape[1]:,} neurons", color=GREY)
        if vmax == 0:
            hm.text(0.5, 0.5, "no spikes", transform=hm.transAxes, ha="center", va="center", color="w")
        cb = fig.colorbar(im, ax=hm, fraction=0.08, pad=0.02)
        cb.set_label("spike" if sample is not None else "rate (spikes / step)")
        cbars.append(cb)
    if title:
        fig.suptitle(title)
    fig.hist_axes = list(axes[0, :])
    fig.heatmap_axes = list(axes[1, :])
    fig.colorbars = cbars
    fig.hist_edges = edges
    return fig
