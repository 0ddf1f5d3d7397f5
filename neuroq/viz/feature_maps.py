"""Spike maps of a convolutional layer (SpikingJelly's ``plot_2d_spiking_feature_map``)."""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .._validate import check_int  # noqa: E402
from ..labels import recorded_labels, resolve_labels  # noqa: E402
from ._checks import RECORDING_TYPES, as_tensor, check_finite, check_indices, check_sample  # noqa: E402
from .style import CMAP, points, styled  # noqa: E402


def _ranges(idx) -> str:
    """``[0, 1, 2, 5]`` -> ``'0–2, 5'``."""
    out, start, prev = [], None, None
    for i in list(idx) + [None]:
        if start is None:
            start = prev = i
        elif i is not None and i == prev + 1:
            prev = i
        else:
            out.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = prev = i
    return ", ".join(out)


#: maps of at most this many pixels (2×2, 3×3) carry their values as numbers in each pixel
SMALL_MAP = 9


@styled
def feature_maps(spikes, layer: Optional[str] = None, sample: int = 0, t: Optional[int] = None,
                 max_channels: Optional[int] = None, ncols: int = 8, title: Optional[str] = None,
                 cmap: Optional[str] = None, channels: Optional[Sequence[int]] = None, labels=None):
    r"""Grid of per-channel spike maps of a layer recorded as ``[T, N, C, H, W]``, with one colour bar.

    Tile :math:`c` shows :math:`S_c[t, y, x]` for one step ``t``, or the firing rate
    :math:`\frac{1}{T}\sum_t S_c[t, y, x]` with ``t=None``. Every channel is drawn unless
    ``channels`` or ``max_channels`` pick some; then the title says which (``channels 0–15 of 32``).
    All tiles share one colour scale from 0 to the largest value drawn; maps of at most :data:`SMALL_MAP`
    pixels (the 2×2 maps of an 8×8 input after two poolings) also print each pixel's value.

    Args:
        spikes: the :class:`~neuroq.viz.Recording` of :func:`neuroq.viz.record` (or any mapping
            ``{layer: [T, N, ...]}``; its ``[T, N, C, H, W]`` layers are the choice), or one such tensor.
        layer: which layer (default: the first recorded layer with 2-D maps).
        sample: batch element.
        t: time step, or ``None`` for the rate over all steps.
        max_channels: draw only the first this-many channels (``None``: all).
        ncols: tiles per row.
        cmap: colour map (default :data:`neuroq.viz.style.CMAP`).
        channels: draw exactly these channel indices (overrides ``max_channels``).
        labels: layer labels ``{layer: label}`` (default: the recording's, e.g. ``LIF 1 (conv 32×4×4)``).
    Returns:
        the ``Figure``; ``fig.maps[k]`` is the array drawn in tile ``k``, ``fig.channels[k]`` its
        channel index, ``fig.cbar`` the shared colour bar.

    Example::

        fig = viz.feature_maps(viz.record(cnn, x_seq[:, :1]))   # every channel of the first conv layer
    """
    for name, val in (("max_channels", max_channels), ("ncols", ncols)):
        if val is None and name == "max_channels":
            continue
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be a positive integer, got {val!r}")
    sample = check_sample(sample)
    if t is not None:
        t = check_int("t", t, ge=0)
    if isinstance(spikes, Mapping):
        if not spikes:
            raise ValueError("spikes is an empty recording: nothing was recorded (the model has no spiking neurons)")
        spikes_t = {k: as_tensor(f"spikes[{k!r}]", v, "a [T, N, ...] tensor") for k, v in spikes.items()}
        maps = {k: v for k, v in spikes_t.items() if v.dim() == 5}
        if not maps:
            raise ValueError("no recorded layer has [T, N, C, H, W] spikes (feature maps need a conv network); "
                             f"recorded shapes: { {k: tuple(v.shape) for k, v in spikes.items()} }")
        if layer is None:
            layer = next(iter(maps))
        if layer not in maps:
            raise ValueError(f"layer={layer!r} is not a recorded [T, N, C, H, W] layer; choose from {list(maps)}")
        s = maps[layer]
        name = f"spikes[{layer!r}]"
        shown = resolve_labels([layer], labels, recorded_labels(spikes), spikes)[0]
    else:
        s = as_tensor("spikes", spikes, RECORDING_TYPES)
        layer = layer or "spikes"
        name = "spikes"
        shown = str(labels[layer]) if isinstance(labels, Mapping) and layer in labels else layer
        if s.dim() != 5:
            raise ValueError(f"spikes must be [T, N, C, H, W], got shape {tuple(s.shape)}")
    if 0 in s.shape:
        raise ValueError(f"{name} has an empty dimension (shape {tuple(s.shape)}): expected [T, N, C, H, W] with "
                         "at least one step, sample, channel and pixel")
    s = check_finite(name, s.float())
    check_sample(sample, s.shape[1])
    s = s[:, sample]
    if t is None:
        img, what = s.mean(0), "firing rate (spikes / step)"
    else:
        if not t < s.shape[0]:
            raise ValueError(f"t={t} outside the recording's {s.shape[0]} steps (valid: 0 to {s.shape[0] - 1})")
        img, what = s[t], f"spike at t = {t}"
    n_ch = img.shape[0]
    if channels is not None:
        idx = check_indices("channels", channels, n_ch, f"channels of {shown!r}")
    else:
        idx = np.arange(n_ch if max_channels is None else min(max_channels, n_ch))
    img = img[torch.as_tensor(idx)].numpy()
    C = img.shape[0]
    cols = min(ncols, C)
    rows = math.ceil(C / cols)
    hh, ww = img.shape[1:]
    # a fixed grid (no layout engine: fast for 64+ tiles): tiles, then the colour bar on the right
    tile_w = 1.0 if C <= 32 else 0.8
    tile_h = tile_w * hh / max(ww, 1)
    n_lines = 2 if title else 1
    gap_w, gap_h, left, right_pad, top, bottom = 0.12, 0.28, 0.1, 1.0, 0.22 + 0.22 * n_lines, 0.1
    fig_w = left + cols * tile_w + (cols - 1) * gap_w + right_pad
    fig_h = top + rows * tile_h + (rows - 1) * gap_h + bottom
    fig, axes = plt.subplots(rows, cols, figsize=(fig_w, fig_h), squeeze=False, gridspec_kw=dict(
        left=left / fig_w, right=1 - right_pad / fig_w, bottom=bottom / fig_h, top=1 - top / fig_h,
        wspace=gap_w / tile_w, hspace=gap_h / tile_h))
    vmax = float(img.max()) if img.size else 0.0
    vmax = vmax if vmax > 0 else 1.0
    im = None
    for k, a in enumerate(axes.flat):
        a.set_xticks([])
        a.set_yticks([])
        if k < C:
            im = a.imshow(img[k], cmap=cmap or CMAP, vmin=0.0, vmax=vmax, interpolation="nearest")
            if hh * ww <= SMALL_MAP:  # a few pixels read better as numbers than as blocks of colour
                for (yy, xx), v in np.ndenumerate(img[k]):
                    a.text(xx, yy, f"{v:.2f}".lstrip("0") if 0 < v < 1 else f"{v:g}", ha="center", va="center",
                           fontsize=points(),
                           color="white" if v > 0.6 * vmax else "black")
            a.set_title(f"c{idx[k]}", fontsize=plt.rcParams["xtick.labelsize"], pad=2)
            for side in ("top", "right"):
                a.spines[side].set_visible(True)
        else:
            a.axis("off")
    grid_h = rows * tile_h + (rows - 1) * gap_h
    cax = fig.add_axes(((fig_w - right_pad + 0.15) / fig_w, bottom / fig_h, 0.12 / fig_w, grid_h / fig_h))
    cb = fig.colorbar(im, cax=cax)
    cb.set_label(what)
    note = f"all {n_ch} channels" if C == n_ch and channels is None else f"channels {_ranges(idx.tolist())} of {n_ch}"
    where = "rate over all steps" if t is None else f"t = {t}"
    fig.suptitle((title + "\n" if title else "") + f"{shown}: {note}, {hh}×{ww} each, {where}",
                 y=1 - 0.06 / fig_h, va="top")
    fig.maps = [img[k] for k in range(C)]
    fig.channels = idx.tolist()
    fig.cbar = cb
    return fig
