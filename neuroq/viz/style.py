r"""One look for every :mod:`neuroq.viz` figure: font sizes, line widths, a colour-blind-safe palette.

Every plotting function of :mod:`neuroq.viz` draws inside :func:`style` (through the
:func:`styled` decorator), so the figures of a paper or a talk match without per-plot settings.
Your own figures get the same look with ``with viz.style(): ...``.

* Categorical colours: the Okabe–Ito palette (Okabe & Ito, *Color Universal Design*, 2008;
  Wong, *Nature Methods* 8:441, 2011), distinguishable with the common colour-vision deficiencies.
* Continuous data: ``viridis`` (perceptually uniform, readable in grey scale).
* Vector output keeps text as text: TrueType fonts in PDF (``pdf.fonttype = 42``), real
  ``<text>`` in SVG (``svg.fonttype = 'none'``), so figures stay editable.

Example::

    from neuroq import viz
    with viz.style():
        fig, ax = plt.subplots()
        ax.plot(x, y, color=viz.color(0))
"""
from __future__ import annotations

import contextlib
import functools
from typing import Optional

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.ticker import FixedLocator, MaxNLocator  # noqa: E402

#: Okabe–Ito colours, ordered so that neighbours differ most (yellow last: weak on white)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: colour map for rates, potentials and spike maps
CMAP = "viridis"
#: neutral colour for secondary marks (dominated runs, separators)
GREY = "#7F7F7F"

RC = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.labelsize": 9.0,
    "xtick.labelsize": 8.0,
    "ytick.labelsize": 8.0,
    "legend.fontsize": 8.0,
    "legend.title_fontsize": 8.0,
    "figure.titlesize": 11.0,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.5,
    "lines.markersize": 4.0,
    "xtick.major.width": 0.8,
    "ytick.major.width": 0.8,
    "xtick.minor.width": 0.6,
    "ytick.minor.width": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "axes.titlepad": 6.0,
    "axes.formatter.useoffset": False,
    "axes.formatter.use_mathtext": True,
    "legend.frameon": False,
    "image.cmap": CMAP,
    "image.interpolation": "nearest",
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}


def color(i: int) -> str:
    """The ``i``-th colour of :data:`PALETTE` (cycling)."""
    return PALETTE[int(i) % len(PALETTE)]


@contextlib.contextmanager
def style(**overrides):
    """Context manager: matplotlib settings of :data:`RC` (updated with ``overrides``, rcParams
    names) for everything created inside it."""
    rc = dict(RC)
    rc.update(overrides)
    with plt.rc_context(rc):
        yield


def _fix_ticks(fig) -> None:
    # Tick objects are created lazily, possibly at draw time outside the style: store the style's
    # tick label sizes on every axes, so ticks made later follow it too.
    rc = plt.rcParams
    for ax in fig.axes:
        for a in ("x", "y"):
            ax.tick_params(axis=a, which="both", labelsize=rc[f"{a}tick.labelsize"])


def styled(fn):
    """Decorator: run a plotting function inside :func:`style`."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            out = fn(*args, **kwargs)
            fig = getattr(out, "figure", out)
            if hasattr(fig, "axes"):
                _fix_ticks(fig)
        return out
    return wrapper


def points(key: str = "xtick.labelsize") -> float:
    """The font size of rc setting ``key`` in points (rc sizes may be names such as ``'small'``)."""
    from matplotlib.font_manager import FontProperties

    return float(FontProperties(size=plt.rcParams[key]).get_size_in_points())


def time_axis(ax, T: int, label: Optional[str] = "time step") -> None:
    """x axis of ``T`` integer time steps, ``[-0.5, T - 0.5]``; one tick and a note for ``T = 1``."""
    ax.set_xlim(-0.5, T - 0.5)
    if T == 1:
        ax.xaxis.set_major_locator(FixedLocator([0]))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        if label:
            ax.set_xlabel(f"{label} (T = 1: a single step)")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=min(T, 3)))
        if label:
            ax.set_xlabel(label)
