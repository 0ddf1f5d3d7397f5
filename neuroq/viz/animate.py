"""Animated raster (snnTorch's ``spikeplot.animator`` idea): one GIF frame per time step."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import numpy as np  # noqa: E402
from matplotlib.animation import FuncAnimation, PillowWriter  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from .._validate import check_int, check_real  # noqa: E402
from .raster import layer_items, raster  # noqa: E402
from .style import styled  # noqa: E402


def _gif_path(path) -> Path:
    """``path`` if it names a ``.gif`` file that can be written (missing folders are created when writing)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file name (str or os.PathLike) or None, got {type(path).__name__}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"path {str(p)!r} is a folder: give a .gif file name, e.g. {str(p / 'raster.gif')!r}")
    if p.suffix.lower() != ".gif":
        raise ValueError(f"path {str(p)!r} must name a .gif file (the animation is written as a GIF), "
                         f"got suffix {p.suffix or 'none'!r}")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"path {str(p)!r}: {str(parent)!r} is a file, not a folder")
            break
    return p


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
        path: GIF file to write, its name ending in ``.gif`` (``None``: build the animation without writing it);
            missing folders are created.
        fps: frames (time steps) per second.
        max_neurons / layers / neurons / select: neuron selection, as for :func:`neuroq.viz.raster`.
        labels: layer labels, as for :func:`neuroq.viz.raster`.
        dpi: resolution of the GIF frames (the marks are sized for it when drawn).
    Returns:
        the ``Figure``; ``fig.animation`` is the ``FuncAnimation`` (T frames),
        ``fig.frame_offsets(t)`` the points per layer drawn in frame ``t``.
    """
    fps = check_real("fps", fps, gt=0)
    dpi = check_int("dpi", dpi, ge=1)
    if path is not None:
        path = _gif_path(path)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        anim.save(str(path), writer=PillowWriter(fps=fps), dpi=dpi)
    return fig
