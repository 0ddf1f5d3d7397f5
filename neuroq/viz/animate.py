"""Animated raster (snnTorch's ``spikeplot.animator`` idea): one GIF frame per time step."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .raster import layer_items, raster  # noqa: E402
from .style import styled  # noqa: E402


@styled
def animate_raster(spikes, path: Optional[os.PathLike] = None, sample: int = 0, fps: float = 2.0,
                   max_neurons: Optional[int] = 200, layers: Optional[Sequence[str]] = None, neurons=None,
                   title: Optional[str] = None, dpi: int = 80, select: str = "active", labels=None):
    r"""Raster that fills in step by step: frame :math:`t` shows every spike :math:`S_i[t'] = 1`
    with :math:`t' \le t` and shades the current step; written as a GIF through matplotlib's
    ``PillowWriter`` (Pillow only, no ffmpeg).

    Args:
        spikes: as for :func:`neuroq.viz.raster`: the :class:`~neuroq.viz.Recording` of
            :func:`neuroq.viz.record`, a ``{layer: [T, N, ...]}`` mapping or a ``[T, neurons...]`` tensor.
        path: GIF file to write (``None``: build the animation without writing it).
        fps: frames (time steps) per second.
        max_neurons / layers / neurons / select: neuron selection, as for :func:`neuroq.viz.raster`.
        labels: layer labels, as for :func:`neuroq.viz.raster`.
        dpi: resolution of the GIF frames (the marks are sized for it when drawn).
    Returns:
        the ``Figure``; ``fig.animation`` is the ``FuncAnimation`` (T frames),
        ``fig.frame_offsets(t)`` the points per layer drawn in frame ``t``.
    """
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
        raise ValueError(f"fps must be a number > 0, got {fps!r}")
    items = layer_items(spikes, sample, layers)
    T = items[0][1].shape[0]
    ax = raster(spikes, sample=sample, max_neurons=max_neurons, layers=layers, neurons=neurons, title=title,
                select=select, labels=labels)
    fig = ax.figure
    colls = list(ax.collections)
    full = [c.get_offsets().copy() for c in colls]
    band = Rectangle((-0.5, 0.0), 1.0, 1.0, transform=ax.get_xaxis_transform(), color="0.5", alpha=0.15,
                     zorder=0)
    ax.add_patch(band)
    xlabel = ax.get_xlabel()

    def offsets(t):
        return [o[np.asarray(o)[:, 0] <= t] if len(o) else o for o in full]

    def update(t):
        for c, o in zip(colls, offsets(t)):
            c.set_offsets(o if len(o) else np.zeros((0, 2)))
        band.set_x(t - 0.5)
        n_now = sum(int((np.asarray(o)[:, 0] == t).sum()) if len(o) else 0 for o in full)
        ax.set_xlabel(f"{xlabel}    |    t = {t}: {n_now} spikes at this step")
        return [*colls, band, ax.xaxis.label]

    anim = FuncAnimation(fig, update, frames=range(T), blit=False, repeat=False)
    fig.animation = anim
    fig.frame_offsets = offsets
    if path is not None:
        anim.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    return fig
