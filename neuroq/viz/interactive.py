r"""Interactive views of what a network does, drawn with `Bokeh <https://bokeh.org>`_ (the ``report``
extra: ``pip install 'neuroq[report]'``): the spike raster of every spiking layer, firing rates,
membrane potentials, per-layer energy and the accuracy-energy frontier of a comparison. Each function
returns a Bokeh layout: ``bokeh.io.show`` displays it (in Jupyter after ``bokeh.io.output_notebook()``)
and :func:`save_html` writes it as one self-contained HTML file that opens offline. ``neuroq report``
(:mod:`neuroq.report`) is built from them. Matplotlib (the rest of :mod:`neuroq.viz`) stays for
paper figures.

How a raster scales. The page holds every recorded spike once, as its ``(x, neuron)`` cell, and
draws what is in view:

* at most :data:`MARKS_MAX` spikes in view: one mark per spike (WebGL where the browser has it);
* more: each pixel of the view shows how many spikes fall in it (the cells it covers are counted in
  the page, at most one pixel per cell, so zooming in goes down to single spikes and then to marks).

No spike is dropped or sampled: each layer's title says ``showing k of n spikes`` (``k`` in view,
``n`` recorded) and how they are drawn. Drawing a mark costs the same for every mark, so marks stop
at :data:`MARKS_MAX` (``benchmarks/report_scale.py`` measures both views in headless Chromium).

The time axis of a raster of ``S`` samples and ``T`` steps puts sample ``s``, step ``t`` at
:math:`x = s\,(T+1) + t` (a blank column between samples); for ``T = 1`` it is :math:`x = s`, one
column per sample (neurons × samples).
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..labels import recorded_labels, resolve_labels
from ._checks import check_indices, check_names
from .style import GREY, PALETTE, color

#: spikes in view up to which a raster draws one mark per spike; above, each pixel shows a count
MARKS_MAX = 20_000
#: membrane-potential values (samples × steps × neurons, over all layers) a raster keeps for its traces
TRACE_MAX = 1_000_000
#: the Python package of the ``report`` extra
EXTRA = "report"
#: plot width in pixels (the plotting area of a raster)
WIDTH = 880

# the page may run its own inline scripts and styles and nothing else: no request leaves it
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'none'; worker-src blob:")
_TRANSPARENT = (0, 0, 0, 0)
_FONT = "11px"


def require_bokeh():
    """The ``bokeh`` module, or an ``ImportError`` that names the extra to install."""
    try:
        import bokeh
        from bokeh.models import CustomJSTicker  # noqa: F401  (the version tested: 3.9)
    except ImportError as e:
        raise ImportError("interactive plots (neuroq.viz.interactive_raster, `neuroq report`) need Bokeh >= 3.9, "
                          f"which the {EXTRA!r} extra installs: pip install 'neuroq[{EXTRA}]'") from e
    return bokeh


# --------------------------------------------------------------------------------------------- helpers


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _fmt_int(n) -> str:
    return f"{int(n):,}"


def _layout_x(S: int, T: int) -> tuple:
    """``(P, W)``: the x period of one sample (``T + 1``, or 1 for ``T = 1``) and the number of columns."""
    P = T + 1 if T > 1 else 1
    return P, S * P - (1 if T > 1 else 0)


def _sample_index(n_batch: int, samples) -> np.ndarray:
    if samples is None:
        return np.arange(n_batch)
    if isinstance(samples, (int, np.integer)) and not isinstance(samples, bool):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        return np.arange(min(int(samples), n_batch))
    return check_indices("samples", samples, n_batch, "samples of the recording")


def _to_np(t) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().float().numpy()
    return np.asarray(t, dtype=np.float32)


class _Raster:
    """The recording's spikes of the chosen samples, per layer ``[S, T, neurons]``, and their labels."""

    def __init__(self, recording, samples=None, layers=None, labels=None, sample_ids=None, sample_labels=None):
        if not isinstance(recording, Mapping):
            if isinstance(recording, torch.Tensor) or hasattr(recording, "shape"):
                recording = {"spikes": recording}
            else:
                raise TypeError("recording must be a neuroq.viz.Recording (what viz.record returns), a "
                                f"{{layer: [T, N, ...]}} mapping or one [T, N, ...] tensor; got {type(recording).__name__}")
        names = list(recording) if layers is None else check_names("layers", layers)
        missing = [k for k in names if k not in recording]
        if missing:
            raise ValueError(f"layers {missing} were not recorded; recorded: {list(recording)}")
        for k in names:
            if isinstance(recording[k], Mapping) or np.ndim(recording[k]) < 2:
                raise TypeError(f"recording[{k!r}] must be a [T, N, ...] spike tensor")
        self.recording = recording
        self.names = names
        self.labels = resolve_labels(names, labels, recorded_labels(recording), recording)
        first = recording[names[0]] if names else None
        n_batch = int(first.shape[1]) if first is not None else 0
        self.idx = _sample_index(n_batch, samples) if names else np.arange(0)
        self.S = len(self.idx)
        self.T = int(first.shape[0]) if first is not None else 1
        for k in names:
            if int(recording[k].shape[0]) != self.T or int(recording[k].shape[1]) != n_batch:
                raise ValueError(f"every layer must have the same T and batch: {k!r} is {tuple(recording[k].shape[:2])}, "
                                 f"{names[0]!r} is {(self.T, n_batch)}")
        self.ids = [int(i) for i in (self.idx if sample_ids is None else list(sample_ids))]
        if len(self.ids) != self.S:
            raise ValueError(f"sample_ids has {len(self.ids)} entries for {self.S} samples")
        self.sample_labels = None if sample_labels is None else [str(v) for v in sample_labels]
        if self.sample_labels is not None and len(self.sample_labels) != self.S:
            raise ValueError(f"sample_labels has {len(self.sample_labels)} entries for {self.S} samples")
        self.P, self.W = _layout_x(self.S, self.T)

    def spikes(self, name) -> np.ndarray:
        """``[S, T, neurons]`` bool: which neurons fired (a graded output > 0 counts as a spike)."""
        t = self.recording[name]
        t = t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
        t = t.detach().cpu()[:, torch.as_tensor(self.idx)]
        return (t.reshape(self.T, self.S, -1) > 0).permute(1, 0, 2).numpy()

    def values(self, table, name) -> Optional[np.ndarray]:
        """``[S, T, neurons]`` float32 of ``table[name]`` (``recording.v`` or ``.h``), or ``None``."""
        t = (table or {}).get(name)
        if t is None:
            return None
        t = t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
        t = t.detach().cpu()[:, torch.as_tensor(self.idx)]
        return t.reshape(self.T, self.S, -1).permute(1, 0, 2).float().numpy()

    def sample_text(self, b: int) -> str:
        lab = f" (label {self.sample_labels[b]})" if self.sample_labels is not None else ""
        return f"#{self.ids[b]}{lab}"

    def tick_text(self, b: int) -> str:
        lab = f" ({self.sample_labels[b]})" if self.sample_labels is not None else ""
        return f"#{self.ids[b]}{lab}"


def _label_chars(T: int, ids) -> int:
    """Characters of the longest time-axis label: a step number, or for ``T = 1`` a sample's name."""
    return len(str(T - 1)) if T > 1 else max((len(i) for i in ids), default=1)


def _spike_coords(a: np.ndarray, P: int) -> tuple:
    """Cells ``(x, neuron)`` of every spike of ``a`` ``[S, T, N]``, sorted by ``x`` (then neuron)."""
    s, t, n = np.nonzero(a)
    x = s * P + t
    big = max(int(x.max(initial=0)), int(n.max(initial=0)))
    dt = np.uint16 if big < 2 ** 16 else np.int32
    return x.astype(dt), n.astype(dt)


def _hex_mix(c: str, frac: float) -> str:
    """``c`` mixed with white: ``frac`` 0 is white, 1 is ``c``."""
    c = c.lstrip("#")
    rgb = [int(c[i:i + 2], 16) for i in (0, 2, 4)]
    return "#" + "".join(f"{round(255 + (v - 255) * frac):02x}" for v in rgb)


def _ramp(c: str, n: int = 64) -> list:
    return [_hex_mix(c, 0.25 + 0.75 * i / (n - 1)) for i in range(n)]


def _style_figure(p) -> None:
    p.toolbar.logo = None
    p.title.text_font_size = "12px"
    p.title.text_font_style = "normal"
    for ax in list(p.xaxis) + list(p.yaxis):
        ax.major_label_text_font_size = _FONT
        ax.axis_label_text_font_size = _FONT
        ax.axis_label_text_font_style = "normal"
    p.xgrid.grid_line_color = None
    p.ygrid.grid_line_alpha = 0.35
    p.outline_line_color = None


# JS of a raster panel's view: which spikes are in view, drawn as marks or counted per pixel; run once per range
# change (a zoom sets start and end: one update, as a microtask, before the next paint)
_VIEW_JS = r"""
if (img.__nq_pending) return;
img.__nq_pending = true;
queueMicrotask(() => { img.__nq_pending = false; update(); });
function update() {
const xs = src.data.x, ys = src.data.y;
function lb(v) { let lo = 0, hi = xs.length; while (lo < hi) { const m = (lo + hi) >> 1; if (xs[m] < v) lo = m + 1; else hi = m; } return lo; }
const cx0 = Math.max(0, Math.floor(xr.start + 0.5)), cx1 = Math.min(W - 1, Math.ceil(xr.end - 0.5));
const cy0 = Math.max(0, Math.floor(yr.start + 0.5)), cy1 = Math.min(N - 1, Math.ceil(yr.end - 0.5));
const nf = (v) => String(v).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
const Ctor = img.data.image[0].constructor;
let k = 0, lo = 0, hi = 0;
if (cx1 >= cx0 && cy1 >= cy0) {
  lo = lb(cx0); hi = lb(cx1 + 1);
  if (hi - lo <= MAX) k = 0;  // few enough in the time window: marks, count them below
  else for (let i = lo; i < hi && k <= MAX; i++) { const y = ys[i]; if (y >= cy0 && y <= cy1) k++; }  // more than MAX?
}
if (k <= MAX) {
  k = 0;
  for (let i = lo; i < hi; i++) { const y = ys[i]; if (y >= cy0 && y <= cy1) k++; }
  const mx = new Float32Array(k), my = new Float32Array(k);
  let j = 0;
  for (let i = lo; i < hi; i++) { const y = ys[i]; if (y >= cy0 && y <= cy1) { mx[j] = xs[i]; my[j] = y; j++; } }
  const px_x = FW / Math.max(1e-9, xr.end - xr.start), px_y = FH / Math.max(1e-9, yr.end - yr.start);
  glyph.width = Math.max(0.7, 2 / px_x);
  glyph.height = Math.max(0.8, 2 / px_y);
  marks.data = {x: mx, y: my};
  if (img.data.dw[0] != 0) img.data = {image: [new Ctor(new Float32Array(1), [1, 1])], x: [0], y: [0], dw: [0], dh: [0]};
  plot.title.text = `${label}: showing ${nf(k)} of ${nf(TOTAL)} spikes (those in view), one mark each`;
} else {
  const ncx = cx1 - cx0 + 1, ncy = cy1 - cy0 + 1;
  const bx = Math.ceil(ncx / FW), by = Math.ceil(ncy / FH);
  const w = Math.ceil(ncx / bx), h = Math.ceil(ncy / by);
  const grid = new Float32Array(w * h);
  let top = 0;
  k = 0;
  for (let i = lo; i < hi; i++) {
    const y = ys[i];
    if (y < cy0 || y > cy1) continue;
    const g = Math.floor((y - cy0) / by) * w + Math.floor((xs[i] - cx0) / bx);
    const c = grid[g] + 1; grid[g] = c; if (c > top) top = c;
    k++;
  }
  if (marks.data.x.length) marks.data = {x: new Float32Array(0), y: new Float32Array(0)};
  mapper.high = Math.max(top, 1);
  img.data = {image: [new Ctor(grid, [h, w])], x: [cx0 - 0.5], y: [cy0 - 0.5], dw: [w * bx], dh: [h * by]};
  const cell = (bx == 1 && by == 1) ? "one pixel per neuron and step" :
    `spikes per pixel of ${bx} column${bx > 1 ? "s" : ""} × ${by} neuron${by > 1 ? "s" : ""}`;
  plot.title.text = `${label}: showing ${nf(k)} of ${nf(TOTAL)} spikes (those in view), counted: ${cell}`;
}
}
"""

# JS of the time axis: ticks at every `per`-th step of each sample in view, `per` the smallest of 1, 2, 5, 10, 20 ...
# that leaves room for the labels; where a sample is too narrow for two, step 0 of every k-th sample
_TICKS_JS = r"""
const {start, end} = cb_data;
function nice(v) { const e = Math.pow(10, Math.floor(Math.log10(Math.max(v, 1)))); for (const m of [1, 2, 5, 10]) if (m * e >= v) return m * e; return 10 * e; }
const out = [];
const px = FW / Math.max(1e-9, end - start);  // pixels per column
const gap = 8 + 6 * LW;  // pixels from one label to the next (LW: characters of the longest label)
const push = (x) => { if (x >= start && x <= end) out.push(x); };
if (T == 1) {
  const step = nice(gap / px);
  for (let x = Math.ceil(Math.max(start, 0) / step) * step; x <= Math.min(end, S - 1); x += step) out.push(x);
  return out;
}
const b0 = Math.max(0, Math.floor(start / P)), b1 = Math.min(S - 1, Math.floor(end / P));
const per = nice(gap / px);
if (per < T) { for (let b = b0; b <= b1; b++) for (let t = 0; t < T; t += per) push(b * P + t); return out; }
const k = Math.max(1, Math.ceil(gap / (px * P)));
for (let b = Math.ceil(b0 / k) * k; b <= b1; b += k) push(b * P);
return out;
"""

_TICK_LABEL_JS = r"""
if (T == 1) { const b = Math.round(tick); return (b >= 0 && b < ids.length) ? ids[b] : ""; }
const b = Math.floor(tick / P); return String(Math.round(tick - b * P));
"""

# hover: sample and step of an x position
_HOVER_X_JS = r"""
const c = Math.round(value), b = Math.floor(c / P), t = c - b * P;
if (b < 0 || b >= ids.length || t >= T) return "–";
return format == "sample" ? ids[b] : String(t);
"""

# click on a raster: the membrane potential of that neuron
_TAP_JS = r"""
const x = Math.round(cb_obj.x), n = Math.round(cb_obj.y);
if (n < 0 || n >= N || x < 0) return;
const b = Math.floor(x / P), t = x - b * P;
if (b >= S || t >= T) return;
const clear = () => { trace.data = {x: [], v: [], h: []}; spk.data = {x: [], y: []}; };
if (data == null) { clear(); tplot.title.text = `${label}, neuron ${n}: this layer's membrane potential was not recorded`; return; }
if (T > 1 && b >= SK) { clear(); tplot.title.text = `${label}, neuron ${n}, test sample ${ids[b]}: no trace kept (traces of the first ${SK} samples are in the page)`; return; }
const d = data.data, hasH = ("h" in d);
const xs = [], vs = [], hs = [], sx = [], sy = [];
const steps = T > 1 ? T : SK;
for (let j = 0; j < steps; j++) {
  const i = T > 1 ? (b * T + j) * N + n : j * N + n;
  xs.push(j); vs.push(d.v[i]); hs.push(hasH ? d.h[i] : NaN);
  if (d.s[i]) { sx.push(j); sy.push(hasH ? d.h[i] : d.v[i]); }
}
trace.data = {x: xs, v: vs, h: hs};
spk.data = {x: sx, y: sy};
thr.data = VTH == null ? {x: [], y: []} : {x: [0, steps - 1], y: [VTH, VTH]};
hline.visible = hasH;
tplot.title.text = `${label}, neuron ${n}` + (T > 1 ? `, test sample ${ids[b]}` : ` (T = 1: one value per test sample)`) + (hasH ? "" : ": V after reset only (H cannot be had for this neuron)");
"""


def _view_title(label: str, k: int, total: int, bx: int = 0, by: int = 0) -> str:
    """A raster panel's title (the same words as the page's JavaScript writes on zoom and pan)."""
    if not bx:
        return f"{label}: showing {k:,} of {total:,} spikes (those in view), one mark each"
    cell = ("one pixel per neuron and step" if bx == 1 and by == 1 else
            f"spikes per pixel of {bx} column{'s' if bx > 1 else ''} × {by} neuron{'s' if by > 1 else ''}")
    return f"{label}: showing {k:,} of {total:,} spikes (those in view), counted: {cell}"


def _initial_view(x: np.ndarray, y: np.ndarray, W: int, N: int, FW: int, FH: int, marks_max: int) -> dict:
    """What the page draws for the whole raster before any zoom, computed as its JavaScript does
    (``_VIEW_JS``): every spike as a mark, or the spike counts per pixel."""
    k = int(x.size)
    if k <= marks_max:
        return dict(kind="marks", k=k, x=x.astype(np.float32), y=y.astype(np.float32),
                    width=max(0.7, 2.0 * W / FW), height=max(0.8, 2.0 * N / FH))
    bx, by = -(-W // FW), -(-N // FH)
    w, h = -(-W // bx), -(-N // by)
    cells = (y.astype(np.int64) // by) * w + x.astype(np.int64) // bx
    grid = np.bincount(cells, minlength=w * h).astype(np.float32).reshape(h, w)
    return dict(kind="counts", k=k, grid=grid, dw=float(w * bx), dh=float(h * by), top=max(1.0, float(grid.max())),
                bx=int(bx), by=int(by))


def _trace_budget(r: _Raster, names, has_v, trace_max: int) -> dict:
    """``{layer: k}``: the traces of the first ``k`` samples are kept, the same ``k`` for every layer (the most
    that fit in ``trace_max`` values); when not even one sample of every layer fits, one sample of each layer
    in order while they fit."""
    per = {k: r.T * int(np.prod(tuple(r.recording[k].shape[2:]), dtype=np.int64)) for k in names if has_v(k)}
    if not per:
        return {}
    k = min(r.S, int(trace_max) // max(1, sum(per.values())))
    if k > 0:
        return {name: k for name in per}
    left, kept = int(trace_max), {}
    for name, n in per.items():
        kept[name] = 1 if n <= left else 0
        left -= n * kept[name]
    return kept


def interactive_raster(recording, samples=None, layers: Optional[Sequence[str]] = None, labels=None,
                       sample_ids: Optional[Sequence[int]] = None, sample_labels: Optional[Sequence] = None,
                       marks_max: int = MARKS_MAX, trace_max: int = TRACE_MAX, membrane: bool = True,
                       title: Optional[str] = None, width: int = WIDTH, backend: str = "webgl", name: str = "raster"):
    r"""Interactive spike raster of every recorded layer: one panel per layer, stacked, sharing the time
    axis (zoom and pan are linked), with hover and, where the recording has membrane potentials, a trace
    panel filled by clicking a neuron.

    Each panel draws neurons (flattened per sample) on y against :math:`x = s\,(T+1) + t` for sample
    ``s`` and step ``t`` (``T = 1``: :math:`x = s`, neurons × samples); the top axis names the samples.
    Hovering tells the layer, neuron, time step and sample. The page holds every spike; up to
    ``marks_max`` spikes in view are drawn as marks, more as spike counts per pixel (module
    docstring); each panel's title says ``showing k of n spikes``.

    Args:
        recording: a :class:`~neuroq.viz.Recording` (:func:`neuroq.viz.record`; ``v=True`` for the
            membrane traces), a ``{layer: [T, N, ...]}`` mapping, or one ``[T, N, ...]`` tensor.
        samples: batch elements to show: all (``None``), the first ``k`` (an int) or these indices.
        layers: show only these recorded layers (in this order).
        labels: layer labels, ``{layer: label}`` or one per layer (default: the recording's).
        sample_ids: the number shown for each sample (default: its batch index), e.g. its test-set index.
        sample_labels: a class label per sample, shown beside its number.
        marks_max: the most spikes in view drawn as marks (default :data:`MARKS_MAX`).
        trace_max: the most membrane-potential values kept in the page (default :data:`TRACE_MAX`;
            the first samples that fit are kept, the trace panel says so).
        membrane: add the membrane-trace panel when the recording has ``.v``.
        title: a heading above the raster.
        width: width of the plotting area in pixels.
        backend: ``"webgl"`` (default; Bokeh falls back to canvas without WebGL) or ``"canvas"``.
        name: prefix of the Bokeh model names (unique per page; ``<name>:spikes:<layer>`` is the data
            source of every spike of a layer: columns ``x`` and ``y``, one row per spike).
    Returns:
        a Bokeh ``Column``: ``bokeh.io.show(fig)`` (Jupyter: after ``bokeh.io.output_notebook()``),
        :func:`save_html` or ``bokeh.io.save``. A recording without layers gives a note saying so.

    Example::

        rec = viz.record(net, x_seq[:, :16], v=True)
        fig = viz.interactive_raster(rec, sample_labels=y[:16].tolist())
        viz.save_html(fig, "raster.html")
    """
    require_bokeh()
    from bokeh.layouts import column, row
    from bokeh.models import (BoxZoomTool, ColumnDataSource, CustomJS, CustomJSHover, CustomJSTickFormatter,
                              CustomJSTicker, Div, FixedTicker, HoverTool, Legend, LinearAxis, LinearColorMapper,
                              NoOverlap, PanTool, Range1d, ResetTool, SaveTool, SingleIntervalTicker,
                              WheelZoomTool)
    from bokeh.plotting import figure

    if backend not in ("webgl", "canvas"):
        raise ValueError(f"backend must be 'webgl' or 'canvas', got {backend!r}")
    if not isinstance(marks_max, (int, np.integer)) or marks_max < 0:
        raise ValueError(f"marks_max must be an integer >= 0, got {marks_max!r}")
    if isinstance(recording, Mapping) and not recording and layers is None:
        raise ValueError("the recording is empty (the model has no spiking neurons): nothing to draw")
    r = _Raster(recording, samples, layers, labels, sample_ids, sample_labels)
    S, T, P, W = r.S, r.T, r.P, r.W
    ids = [r.tick_text(b) for b in range(S)]
    xr = Range1d(-0.5, W - 0.5, bounds=(-0.5, W - 0.5), name=f"{name}:time")
    hover_x = CustomJSHover(args=dict(P=P, T=T, ids=[r.sample_text(b) for b in range(S)]), code=_HOVER_X_JS)
    ticker = CustomJSTicker(args=dict(P=P, T=T, S=S, FW=width, LW=_label_chars(T, ids)), major_code=_TICKS_JS)
    tick_fmt = CustomJSTickFormatter(args=dict(P=P, T=T, ids=ids), code=_TICK_LABEL_JS)

    rec_v = getattr(recording, "v", None) or {}
    rec_h = getattr(recording, "h", None) or {}
    want_trace = membrane and any(k in rec_v for k in r.names)
    kept = _trace_budget(r, r.names, lambda k: k in rec_v, trace_max) if want_trace else {}
    trace = ColumnDataSource(dict(x=[], v=[], h=[]), name=f"{name}:trace")
    spk = ColumnDataSource(dict(x=[], y=[]), name=f"{name}:trace_spikes")
    tplot = None
    if want_trace:
        tplot = figure(frame_width=min(width, 620), frame_height=190, name=f"{name}:membrane",
                       title="membrane potential: click a neuron in the raster",
                       x_axis_label="time step" if T > 1 else "test sample (position in the raster)",
                       y_axis_label="potential", tools="pan,wheel_zoom,box_zoom,reset,save")
        hl = tplot.line("x", "h", source=trace, color=PALETTE[1], line_width=1.5, line_dash="dashed")
        hs = tplot.scatter("x", "h", source=trace, color=PALETTE[1], size=5)
        vl = tplot.line("x", "v", source=trace, color=PALETTE[0], line_width=2)
        vs = tplot.scatter("x", "v", source=trace, color=PALETTE[0], size=5)
        sp = tplot.scatter("x", "y", source=spk, marker="triangle", size=11, color="#000000")
        thr_src = ColumnDataSource(dict(x=[], y=[]), name=f"{name}:threshold")
        thr_r = tplot.line("x", "y", source=thr_src, line_dash="dotted", line_color=GREY, line_width=1.5)
        if T > 1:
            tplot.xaxis.ticker = SingleIntervalTicker(interval=max(1, math.ceil(T / 16)), num_minor_ticks=0)
        tplot.add_layout(Legend(items=[("H[t] before reset", [hl, hs]), ("V[t] after reset", [vl, vs]),
                                       ("spike", [sp]), ("threshold", [thr_r])], label_text_font_size="10px",
                                border_line_color=None), "right")
        tplot.add_tools(HoverTool(renderers=[vs, hs], tooltips=[("step" if T > 1 else "sample", "@x"),
                                                                ("V", "@v{0.000}"), ("H", "@h{0.000}")]))
        if T == 1:
            tplot.xaxis.ticker = CustomJSTicker(args=dict(P=1, T=1, S=S, FW=min(width, 620), LW=_label_chars(1, ids)),
                                                major_code=_TICKS_JS)
            tplot.xaxis.formatter = CustomJSTickFormatter(args=dict(P=1, T=1, ids=ids), code=_TICK_LABEL_JS)
        _style_figure(tplot)

    figs, notes = [], []
    first_trace = None
    total_all = 0
    for i, (k, label) in enumerate(zip(r.names, r.labels)):
        a = r.spikes(k)
        N = a.shape[2]
        x, y = _spike_coords(a, P)
        total = int(x.size)
        total_all += total
        col = color(i)
        fh = int(np.clip(36 + 0.55 * N, 90, 260))
        first = _initial_view(x, y, W, N, width, fh, int(marks_max))
        src = ColumnDataSource(dict(x=x, y=y), name=f"{name}:spikes:{k}")
        none = np.zeros(0, np.float32)
        marks = ColumnDataSource(dict(x=first.get("x", none), y=first.get("y", none)), name=f"{name}:marks:{k}")
        mapper = LinearColorMapper(palette=_ramp(col), low=0.5, high=first.get("top", 1.0), low_color=_TRANSPARENT,
                                   nan_color=_TRANSPARENT)
        if first["kind"] == "counts":
            img = dict(image=[first["grid"]], x=[-0.5], y=[-0.5], dw=[first["dw"]], dh=[first["dh"]])
        else:
            img = dict(image=[np.zeros((1, 1), np.float32)], x=[0.0], y=[0.0], dw=[0.0], dh=[0.0])
        img = ColumnDataSource(img, name=f"{name}:counts:{k}")
        yr = Range1d(-0.5, N - 0.5, bounds=(-0.5, N - 0.5))
        wz = WheelZoomTool(dimensions="width")
        tools = [PanTool(), wz, WheelZoomTool(dimensions="height"), BoxZoomTool(), ResetTool(), SaveTool()]
        p = figure(frame_width=width, frame_height=fh, x_range=xr, y_range=yr, tools=tools,
                   title=_view_title(label, first["k"], total, first.get("bx", 0), first.get("by", 0)),
                   output_backend=backend, name=f"{name}:layer:{k}", min_border_left=70, min_border_right=20,
                   y_axis_label="neuron")
        p.toolbar.active_scroll = wz
        if T > 1:  # shade every other sample
            p.quad(left=[b * P - 0.5 for b in range(1, S, 2)], right=[b * P + T - 0.5 for b in range(1, S, 2)],
                   bottom=-0.5, top=N - 0.5, fill_color="#000000", fill_alpha=0.045, line_color=None, level="underlay")
        ir = p.image(image="image", x="x", y="y", dw="dw", dh="dh", source=img, color_mapper=mapper)
        mr = p.rect("x", "y", width=first.get("width", 0.7), height=first.get("height", 0.8), source=marks,
                    fill_color=col, line_color=None)
        esc = _esc(label)
        p.add_tools(HoverTool(renderers=[mr], formatters={"@x": hover_x}, tooltips=(
            f"<b>{esc}</b><br>neuron <b>@y{{0}}</b><br>"
            + ("time step @x{step}<br>" if T > 1 else "") + "test sample @x{sample}")))
        p.add_tools(HoverTool(renderers=[ir], formatters={"$x": hover_x}, tooltips=(
            f"<b>{esc}</b><br>neuron <b>$y{{0}}</b><br>" + ("time step $x{step}<br>" if T > 1 else "")
            + "test sample $x{sample}<br>spikes here: @image{0}")))
        p.xaxis.ticker = ticker
        p.xaxis.formatter = tick_fmt
        p.xaxis.major_label_policy = NoOverlap()
        p.xaxis.axis_label = ("time step (a blank column between test samples)" if T > 1
                              else "test sample (T = 1: one column per sample)") if i == len(r.names) - 1 else None
        if i == 0 and T > 1:
            top = LinearAxis(ticker=FixedTicker(ticks=[b * P + (T - 1) / 2 for b in range(S)], minor_ticks=[]),
                             major_label_overrides={b * P + (T - 1) / 2: ids[b] for b in range(S)},
                             major_label_policy=NoOverlap(),
                             axis_label="test sample (#index (label))" if r.sample_labels else "test sample (#index)")
            p.add_layout(top, "above")
        _style_figure(p)
        view = CustomJS(args=dict(src=src, marks=marks, img=img, mapper=mapper, glyph=mr.glyph, xr=xr, yr=yr, plot=p,
                                  label=label, TOTAL=total, N=N, W=W, FW=width, FH=fh, MAX=int(marks_max)),
                        code=_VIEW_JS)
        xr.js_on_change("start", view)
        xr.js_on_change("end", view)
        yr.js_on_change("start", view)
        yr.js_on_change("end", view)
        notes.append(f"{_esc(label)}: {_fmt_int(total)}")
        if want_trace:
            store = None
            SK = kept.get(k, 0)
            if k in rec_v and SK > 0:
                v = r.values(rec_v, k)[:SK]
                h = r.values(rec_h, k)
                cols = dict(v=v.reshape(-1).astype(np.float32), s=a[:SK].reshape(-1).astype(np.uint8))
                if h is not None:
                    cols["h"] = h[:SK].reshape(-1).astype(np.float32)
                store = ColumnDataSource(cols, name=f"{name}:trace_data:{k}")
                if first_trace is None:
                    first_trace = (k, label, store, N, SK, a)
            vth = (getattr(recording, "v_threshold", None) or {}).get(k)
            vth = float(vth) if isinstance(vth, (int, float)) or (isinstance(vth, torch.Tensor) and vth.numel() == 1) else None
            tap = CustomJS(args=dict(data=store, trace=trace, spk=spk, thr=thr_src, tplot=tplot, hline=hl, label=label,
                                     N=N, T=T, P=P, S=S, SK=SK, VTH=vth, ids=[r.sample_text(b) for b in range(S)]),
                           code=_TAP_JS)
            p.js_on_event("tap", tap)
        figs.append(p)

    span = f"{r.sample_text(0)} … {r.sample_text(S - 1)}" if S > 1 else r.sample_text(0)
    how = ("T = 1: one column per sample (neurons × samples)" if T == 1 else
           f"T = {T} steps per sample, a blank column between samples")
    head = (f"<div style='font-size:13px'>{'<b>' + _esc(title) + '</b><br>' if title else ''}"
            f"<b>{_fmt_int(total_all)} spikes</b> in {len(r.names)} layer{'s' if len(r.names) > 1 else ''}, "
            f"{S} test sample{'s' if S > 1 else ''} ({_esc(span)}); {how}. Every spike is in the page: up to "
            f"{_fmt_int(marks_max)} in view are drawn as marks, more as spike counts per pixel; each panel says how "
            f"many it shows. Hover for layer, neuron, step and sample; the wheel zooms time, drag pans"
            f"{'; click a neuron for its membrane potential' if want_trace else ''}.<br>"
            f"<span style='color:{GREY}'>spikes per layer: {'; '.join(notes)}</span></div>")
    parts = [Div(text=head, width=width + 90, name=f"{name}:header")] + figs
    if want_trace:
        if first_trace is not None:
            k, label, store, N, SK, a = first_trace
            count = (a[0] if T > 1 else a[:SK, 0]).sum(0).astype(float)  # spikes per neuron, sample 0 (T = 1: all)
            steps = T if T > 1 else SK
            busiest = int(np.argmin(np.where(count > 0, np.abs(count - steps / 2), np.inf)))  # fires, not always
            _initial_trace(store, trace, spk, tplot, thr_src, hl, label, busiest, N, T, SK, r,
                           (getattr(recording, "v_threshold", None) or {}).get(k))
        budget = [f"{_esc(lab)}: {kept.get(k, 0)} of {S}" for k, lab in zip(r.names, r.labels) if k in rec_v]
        note = Div(text=(f"<div style='font-size:12px;color:{GREY};width:230px'>Membrane potential of the clicked "
                         f"neuron: H[t] before the reset (what the threshold is compared with), V[t] after it; "
                         f"threshold dotted, spikes ▲.<br>Samples with traces in the page (at most "
                         f"{_fmt_int(trace_max)} values): {'; '.join(budget)}.</div>"), name=f"{name}:trace_note")
        parts.append(row(tplot, note))
    return column(*parts, name=name)


def _initial_trace(store, trace, spk, tplot, thr, hline, label, n, N, T, SK, r, vth):
    d = store.data
    steps = T if T > 1 else SK
    idx = [(t * N + n) if T > 1 else (t * N + n) for t in range(steps)]
    v = [float(d["v"][i]) for i in idx]
    h = [float(d["h"][i]) for i in idx] if "h" in d else [float("nan")] * steps
    s = [int(d["s"][i]) for i in idx]
    trace.data = dict(x=list(range(steps)), v=v, h=h)
    spk.data = dict(x=[j for j in range(steps) if s[j]], y=[(h if "h" in d else v)[j] for j in range(steps) if s[j]])
    if isinstance(vth, torch.Tensor) and vth.numel() == 1:
        vth = float(vth)
    if isinstance(vth, (int, float)):
        thr.data = dict(x=[0, steps - 1], y=[float(vth)] * 2)
    hline.visible = "h" in d
    where = f", test sample {r.sample_text(0)}" if T > 1 else " (T = 1: one value per test sample)"
    tplot.title.text = f"{label}, neuron {n}{where} (click another neuron)"


def interactive_rates(recording, samples=None, layers: Optional[Sequence[str]] = None, labels=None,
                      sample_ids: Optional[Sequence[int]] = None, sample_labels: Optional[Sequence] = None,
                      x_range=None, width: int = WIDTH,
                      name: str = "rates"):
    r"""Firing rates of every recorded layer: the population rate (fraction of neurons firing) at each
    step of each sample, on the raster's time axis (pass ``x_range`` to link it), the mean rate per time
    step over the samples, and a histogram of the neurons' rates :math:`\frac{1}{ST}\sum_{s,t} S_i[s,t]`.

    Args: as :func:`interactive_raster`; ``x_range`` is the raster's time range (``<name>:time``) to share.
    Returns:
        a Bokeh ``Column`` (a note when nothing was recorded).
    """
    require_bokeh()
    from bokeh.layouts import column, row
    from bokeh.models import (ColumnDataSource, CustomJSHover, CustomJSTickFormatter, CustomJSTicker, Div, HoverTool,
                              NoOverlap, Range1d, SingleIntervalTicker)
    from bokeh.plotting import figure

    if isinstance(recording, Mapping) and not recording and layers is None:
        raise ValueError("the recording is empty (the model has no spiking neurons): no firing rates to draw")
    r = _Raster(recording, samples, layers, labels, sample_ids, sample_labels)
    S, T, P, W = r.S, r.T, r.P, r.W
    ids = [r.tick_text(b) for b in range(S)]
    xr = x_range if x_range is not None else Range1d(-0.5, W - 0.5, bounds=(-0.5, W - 0.5))
    pop = figure(frame_width=width, frame_height=150, x_range=xr, y_range=Range1d(0, 1.02),
                 title="population rate: fraction of the layer's neurons firing at each step",
                 tools="xpan,xwheel_zoom,box_zoom,reset,save", y_axis_label="rate", name=f"{name}:population",
                 min_border_left=70, min_border_right=20)
    pop.xaxis.ticker = CustomJSTicker(args=dict(P=P, T=T, S=S, FW=width, LW=_label_chars(T, ids)), major_code=_TICKS_JS)
    pop.xaxis.formatter = CustomJSTickFormatter(args=dict(P=P, T=T, ids=ids), code=_TICK_LABEL_JS)
    pop.xaxis.axis_label = "time step (a blank column between test samples)" if T > 1 else "test sample"
    hover_x = CustomJSHover(args=dict(P=P, T=T, ids=[r.sample_text(b) for b in range(S)]), code=_HOVER_X_JS)
    per_t = figure(frame_width=300, frame_height=170, title="mean rate per time step (over the samples)",
                   x_axis_label="time step", y_axis_label="rate", tools="pan,wheel_zoom,reset,save",
                   name=f"{name}:per_step")
    hist = figure(frame_width=380, frame_height=170, title="neurons by firing rate (over samples and steps)",
                  x_axis_label="firing rate", y_axis_label="neurons", tools="pan,wheel_zoom,reset,save",
                  name=f"{name}:histogram")
    edges = np.linspace(0, 1, 21)
    top_rate = 0.0
    for i, (k, label) in enumerate(zip(r.names, r.labels)):
        a = r.spikes(k).astype(np.float32)
        c = color(i)
        rate = a.mean(2)  # [S, T]
        top_rate = max(top_rate, float(rate.max(initial=0)))
        xs = (np.arange(S)[:, None] * P + np.arange(T)[None]).astype(float)
        if T > 1:  # a gap (NaN) between samples breaks the line
            xs = np.concatenate([xs, np.full((S, 1), np.nan)], 1)
            ys = np.concatenate([rate, np.full((S, 1), np.nan)], 1)
        else:
            ys = rate
        src = ColumnDataSource(dict(x=xs.reshape(-1), y=ys.reshape(-1)), name=f"{name}:population:{k}")
        pop.line("x", "y", source=src, color=c, line_width=1.6, legend_label=label)
        pts = pop.scatter("x", "y", source=src, color=c, size=3)
        pop.add_tools(HoverTool(renderers=[pts], formatters={"@x": hover_x}, tooltips=(
            f"<b>{_esc(label)}</b><br>test sample @x{{sample}}" + ("<br>time step @x{step}" if T > 1 else "")
            + "<br>rate @y{0.000}")))
        mean_t = ColumnDataSource(dict(t=np.arange(T), y=rate.mean(0)))
        per_t.line("t", "y", source=mean_t, color=c, line_width=2)
        per_t.scatter("t", "y", source=mean_t, color=c, size=6)
        nr = a.mean((0, 1))
        cnt, _ = np.histogram(nr, edges)
        hs = ColumnDataSource(dict(left=edges[:-1], right=edges[1:], top=cnt, label=[label] * len(cnt)),
                              name=f"{name}:histogram:{k}")
        q = hist.quad(left="left", right="right", top="top", bottom=0, source=hs, fill_color=c, fill_alpha=0.3,
                      line_color=c, line_width=1.2, legend_label=label)
        hist.add_tools(HoverTool(renderers=[q], tooltips=[("layer", "@label"), ("rate", "@left{0.00}–@right{0.00}"),
                                                          ("neurons", "@top")]))
    pop.y_range.end = max(0.05, min(1.02, top_rate * 1.15))
    pop.legend.orientation = "horizontal"
    pop.legend.label_text_font_size = "10px"
    pop.legend.border_line_color = None
    pop.legend.click_policy = "hide"
    pop.add_layout(pop.legend[0], "above")
    hist.legend.label_text_font_size = "10px"
    hist.legend.background_fill_alpha = 0.7
    pop.xaxis.major_label_policy = NoOverlap()
    per_t.xaxis.ticker = SingleIntervalTicker(interval=max(1, math.ceil(T / 12)), num_minor_ticks=0)
    for f in (pop, per_t, hist):
        _style_figure(f)
    if T == 1:
        per_t.visible = False
    return column(pop, row(hist, per_t), name=name)


_COMPONENT_NAMES = dict(compute="compute", weight_memory="weight memory", state_memory="state memory",
                        io="input/output", addressing="addressing", sop="SOPs (spike accumulates)",
                        mac="MACs (multiply-accumulates)")


def _energy_tables(rep: Mapping) -> list:
    """``[(model, title, [(layer, type)], components, values [layers, components] pJ/sample, total)]``."""
    out = []
    per = "_per_sample" if rep.get("samples") else ""
    models = rep.get("energy_models") or {}
    for m, mr in models.items():
        layers = [k for k, d in mr["layers"].items() if d.get("energy_pj" + per, 0.0) > 0]
        comps = list(next(iter(mr["layers"].values()))["components_pj" + per]) if mr["layers"] else []
        vals = np.array([[mr["layers"][k]["components_pj" + per][c] for c in comps] for k in layers], dtype=float)
        used = [j for j in range(len(comps)) if vals.size and vals[:, j].any()]
        info = mr.get("model") or {}
        out.append((m, info.get("title", ""), [(k, mr["layers"][k].get("type") or (rep["layers"].get(k) or {}).get("type", ""))
                                            for k in layers],
                    [comps[j] for j in used], vals[:, used] if vals.size else vals, mr["total"].get("energy_pj" + per)))
    if not out:  # a report from before energy models: SOP and MAC energy
        layers = [k for k, d in rep["layers"].items() if d.get("energy_pj" + per, 0.0) > 0]
        vals = np.array([[rep["layers"][k]["sops" + per] * rep["e_ac_pj"], rep["layers"][k]["macs" + per] * rep["e_mac_pj"]]
                         for k in layers], dtype=float).reshape(len(layers), 2)
        out.append(("compute", "SOPs × E_AC + MACs × E_MAC", [(k, rep["layers"][k].get("type", "")) for k in layers],
                    ["sop", "mac"], vals,
                    rep["total"].get("energy_pj" + per)))
    return out


def interactive_energy(report, labels: Optional[Mapping] = None, width: int = WIDTH, name: str = "energy"):
    """Per-layer energy per inference of an :class:`neuroq.energy.EnergyMeter` report, one panel per
    energy model of the report, each layer's bar stacked by component (compute, weight memory, state
    memory, input/output, addressing; SOP and MAC energy for a report without energy models).

    Args:
        report: ``EnergyMeter.report()``, the meter, or a path to ``energy.json`` (or its run folder).
        labels: ``{layer path: label}`` (e.g. :func:`neuroq.viz.layer_labels` of the model).
    Returns:
        a Bokeh layout (a grid of panels, two per row).
    """
    require_bokeh()
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, Div, HoverTool
    from bokeh.plotting import figure

    from .energy_plots import _load_report, energy_unit

    rep = _load_report(report)
    labels = dict(labels or {})
    panels = []
    for m, mtitle, layers, comps, vals, total in _energy_tables(rep):
        if not layers:
            panels.append(Div(text=f"<p>{_esc(m)}: no energy metered</p>"))
            continue
        unit, factor = energy_unit(vals.sum(1))
        names = [labels.get(k) or f"{kind} {k}".strip() for k, kind in layers]
        data = dict(layer=names[::-1])
        for j, c in enumerate(comps):
            data[c] = (vals[::-1, j] / factor).tolist()
        data["total"] = (vals[::-1].sum(1) / factor).tolist()
        src = ColumnDataSource(data, name=f"{name}:{m}")
        h = 60 + 26 * len(layers)
        p = figure(y_range=names[::-1], frame_width=(width - 120) // 2, frame_height=h, tools="hover,save,reset",
                   title=f"{m}: {_fmt_energy(total, unit, factor)} per inference", name=f"{name}:panel:{m}",
                   x_axis_label=f"energy per inference ({unit})", toolbar_location="right")
        p.hbar_stack(comps, y="layer", height=0.7, source=src, color=[PALETTE[j % len(PALETTE)] for j in range(len(comps))],
                     legend_label=[_COMPONENT_NAMES.get(c, c) for c in comps], line_color=None)
        p.select_one(HoverTool).tooltips = ("<b>@layer</b><br>$name: @$name{0.000} " + unit +
                                            "<br>layer total: @total{0.000} " + unit)
        p.x_range.start = 0
        p.legend.orientation = "horizontal"
        p.legend.ncols = 3
        p.legend.label_text_font_size = "10px"
        p.legend.border_line_color = None
        p.add_layout(p.legend[0], "below")
        p.ygrid.grid_line_color = None
        if mtitle:
            p.add_layout(_subtitle(mtitle), "above")
        _style_figure(p)
        panels.append(p)
    grid = gridplot(panels, ncols=2, toolbar_location=None) if len(panels) > 1 else panels[0]
    return column(grid, name=name)


def _subtitle(text: str):
    from bokeh.models import Title

    short = text if len(text) <= 80 else text[:77] + "…"
    return Title(text=short, text_font_size="10px", text_font_style="italic", text_color=GREY)


def _fmt_energy(e_pj, unit: str, factor: float) -> str:
    return "–" if e_pj is None else f"{e_pj / factor:.4g} {unit}"


def interactive_frontier(summary: Mapping, link: bool = False, width: int = WIDTH, name: str = "frontier"):
    """The accuracy-energy frontier of a ``neuroq compare`` summary (``compare.json``): one panel per
    energy model, one point per run (method and seed), the Pareto front of the method means dashed.
    Hover tells the method, seed, accuracy and energy; with ``link`` clicking a point calls the page's
    ``window.neuroq_open(method)`` (the report's pages open that method's section).

    Returns:
        a Bokeh layout (a grid of panels, two per row).
    """
    require_bokeh()
    from bokeh.layouts import column, gridplot
    from bokeh.models import ColumnDataSource, CustomJS, HoverTool, Range1d, TapTool
    from bokeh.plotting import figure

    from .energy_plots import energy_unit

    methods = summary["methods"]
    order = list(methods)
    first = methods[order[0]]
    models = list(first.get("energy_models") or {"compute": None})
    fronts = summary.get("pareto_fronts") or {"compute": summary.get("pareto_front", [])}
    accs = [run["final_test_acc"] for m in order for run in methods[m]["runs"]]
    lo, hi = min(accs), max(accs)
    pad = max(0.01, (hi - lo) * 0.15)
    yr = Range1d(100 * (lo - pad), 100 * min(1.0, hi + pad) + 0.5)
    panels = []
    for mi, model in enumerate(models):
        def energy(d, model=model):
            em = d.get("energy_models") or {}
            return em[model]["energy_pj"] if model in em else d["energy_pj"]
        unit, factor = energy_unit([energy(methods[m]) for m in order])
        p = figure(frame_width=(width - 140) // 2, frame_height=250, x_axis_type="log", y_range=yr,
                   title=f"energy model: {model}", tools="pan,wheel_zoom,box_zoom,reset,save",
                   x_axis_label=f"energy per inference ({unit}, log scale)", y_axis_label="test accuracy (%)",
                   name=f"{name}:panel:{model}")
        front = [m for m in fronts.get(model, []) if m in methods]
        if front:
            fx = [energy(methods[m]) / factor for m in front]
            fy = [100 * methods[m]["accuracy"] for m in front]
            o = np.argsort(fx)
            p.line([fx[i] for i in o], [fy[i] for i in o], line_dash="dashed", color=GREY, line_width=1.3,
                   legend_label="Pareto front (method means)")
        rows = dict(method=[], seed=[], T=[], acc=[], energy=[], e=[], color=[], front=[])
        for ci, m in enumerate(order):
            for run in methods[m]["runs"]:
                rows["method"].append(m)
                rows["seed"].append(run["seed"])
                rows["T"].append(methods[m]["T"])
                rows["acc"].append(100 * run["final_test_acc"])
                rows["energy"].append(energy(run) / factor)
                rows["e"].append(f"{energy(run) / factor:.4g} {unit}")
                rows["color"].append(color(ci))
                rows["front"].append("yes" if m in front else "no")
        src = ColumnDataSource(rows, name=f"{name}:runs:{model}")
        pts = p.scatter("energy", "acc", source=src, color="color", size=11, line_color="#000000", line_width=0.6,
                        legend_field="method", nonselection_alpha=1.0, selection_line_width=2.5)
        p.add_tools(HoverTool(renderers=[pts], tooltips=(
            "<b>@method</b> (T = @T), seed @seed<br>test accuracy @acc{0.00} %<br>energy @e per inference"
            "<br>on the Pareto front: @front" + ("<br><i>click to open its section</i>" if link else ""))))
        if link:
            tap = TapTool(renderers=[pts])
            p.add_tools(tap)
            src.selected.js_on_change("indices", CustomJS(args=dict(src=src), code="""
const i = src.selected.indices[0];
if (i == null) return;
src.selected.indices = [];
if (typeof window.neuroq_open === "function") window.neuroq_open(src.data.method[i]);
"""))
        p.legend.location = "bottom_right"
        p.legend.label_text_font_size = "10px"
        p.legend.background_fill_alpha = 0.7
        p.legend.visible = mi == 0 and not link
        info = (summary.get("energy_models") or {}).get(model) or {}
        if info.get("title"):
            p.add_layout(_subtitle(info["title"]), "above")
        _style_figure(p)
        p.xgrid.grid_line_color = "#e5e5e5"
        panels.append(p)
    grid = gridplot(panels, ncols=2, toolbar_location=None) if len(panels) > 1 else panels[0]
    return column(grid, name=name)


def save_html(obj, path: Union[str, os.PathLike], title: str = "neuroq") -> Path:
    """Write a Bokeh layout (any of this module's figures) to ``path`` as one self-contained HTML
    file: BokehJS and all data inline, and a Content-Security-Policy that lets the page fetch nothing,
    so it opens offline and no request leaves it. Missing folders are created; returns the path."""
    require_bokeh()
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    page = file_html(obj, INLINE, title=title)
    at = page.find("<head>")
    if not 0 <= at < 200:  # the page's own <head> comes first (BokehJS itself contains the string)
        raise RuntimeError("unexpected Bokeh page: no <head> at its top to put the Content-Security-Policy in")
    page = page.replace("<head>", f'<head>\n    <meta http-equiv="Content-Security-Policy" content="{CSP}">', 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


__all__ = ["interactive_raster", "interactive_rates", "interactive_energy", "interactive_frontier", "save_html",
           "require_bokeh", "MARKS_MAX", "TRACE_MAX", "CSP"]
