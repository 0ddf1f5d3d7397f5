"""Energy views: per-layer SOP/MAC energy bars and the accuracy-energy Pareto plot."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, PercentFormatter  # noqa: E402

from .._validate import check_bool, check_real  # noqa: E402
from ..labels import resolve_labels, layer_labels  # noqa: E402
from ._checks import check_axes  # noqa: E402
from .style import GREY, PALETTE, points, styled  # noqa: E402


def _load_report(report) -> dict:
    if hasattr(report, "report") and callable(report.report):  # an EnergyMeter
        return report.report()
    if isinstance(report, (str, os.PathLike)):
        p = Path(report)
        if p.is_dir():
            p = p / "energy.json"
        with open(p) as f:
            return json.load(f)
    if isinstance(report, Mapping) and "layers" in report:
        return dict(report)
    raise TypeError("report must be EnergyMeter.report()'s dict, an EnergyMeter, or a path to energy.json; "
                    f"got {type(report).__name__}")


UNITS = (("pJ", 1.0), ("nJ", 1e3), ("µJ", 1e6), ("mJ", 1e9), ("J", 1e12))


def energy_unit(values_pj, unit: Optional[str] = None) -> tuple:
    r"""``(name, pJ per unit)`` for showing energies given in pJ: the largest of pJ, nJ, µJ, mJ, J
    in which the largest :math:`|E|` is at least 1 (so tick values lie in :math:`[1, 1000)`), or
    the named ``unit`` (``"uJ"`` is accepted for µJ).

    Example::

        viz.energy_unit([3.3e5, 2.4e4])        # ('nJ', 1000.0): 330 nJ and 24 nJ
    """
    names = dict(UNITS)
    if unit is not None:
        unit = "µJ" if unit in ("uJ", "μJ") else unit
        if unit not in names:
            raise ValueError(f"unit must be one of {', '.join(names)} (or None to choose from the data); got {unit!r}")
        return unit, names[unit]
    vals = np.abs(np.asarray(values_pj, dtype=float).reshape(-1))
    if not np.isfinite(vals).all():
        raise ValueError(f"values_pj must be finite energies, got {int((~np.isfinite(vals)).sum())} NaN or infinite "
                         f"of {vals.size}")
    top = float(vals.max()) if vals.size else 0.0
    name, factor = UNITS[0]
    for n, f in UNITS:
        if top >= f:
            name, factor = n, f
    return name, factor


def _unit_formatter(factor: float):
    def fmt(x, pos=None):
        v = x / factor
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return FuncFormatter(fmt)


def _log_energy_formatter():
    """Tick labels of a log energy axis (values in pJ): each decade in its own unit, ``100 pJ``, ``1 nJ``,
    ``10 µJ``, so a span of many decades needs no exponent."""
    def fmt(x, pos=None):
        if x <= 0:
            return ""
        unit, factor = energy_unit([x])
        return f"{x / factor:.3g} {unit}"
    return FuncFormatter(fmt)


def _energy_axis(ax, log: bool, factor: float, uname: str, per: bool) -> None:
    """The y axis of an energy plot: one unit (``uname``) on a linear axis; on a log axis each tick in its own
    unit (the label then names none)."""
    if log:
        ax.yaxis.set_major_formatter(_log_energy_formatter())
        ax.set_ylabel("energy" + (" / sample" if per else "") + " (log scale)")
    else:
        ax.yaxis.set_major_formatter(_unit_formatter(factor))
        ax.set_ylabel(f"energy ({uname}" + (" / sample)" if per else ")"))


def _fmt_energy(e_pj: float, unit: str, factor: float) -> str:
    return f"{e_pj / factor:.4g} {unit}"


def _bar_labels(rep: dict, meter, labels) -> list:
    names = list(rep["layers"])
    defaults = {}
    model = getattr(meter, "model", None)
    if model is not None:
        defaults = layer_labels(model)
    else:
        count = {}
        for k in names:
            typ = str(rep["layers"][k].get("type", "layer"))
            kind = "Conv" if typ == "Conv2d" else typ
            count[kind] = count.get(kind, 0) + 1
            defaults[k] = f"{kind} {count[kind]}"
    shown = resolve_labels(names, labels, defaults)
    inputs = {"real": "real input", "spikes": "spike input", "mixed": "mixed input"}
    return [f"{lab}\n{inputs.get(rep['layers'][k].get('input'), '')}".strip() for lab, k in zip(shown, names)]


def _auto_log(log, positive) -> bool:
    """``log`` of the energy plots: ``True``/``False``, or ``'auto'``: log when the nonzero values span more than
    100×."""
    if log == "auto":
        return bool(positive.size) and float(positive.max() / positive.min()) > 100
    if not isinstance(log, bool):
        raise ValueError(f"log must be True, False or 'auto', got {log!r}")
    return log


def bar_figure_width(n: int, least: float, per_bar: float, extra: float, most: float = 12.0) -> float:
    """Width (inches) of a figure of ``n`` bars: ``per_bar`` each plus ``extra``, at least ``least`` and at most
    ``most`` (a deep network's bars get narrower instead of the figure growing past a page)."""
    return min(most, max(least, per_bar * n + extra))


@styled
def energy_bars(report, per_sample: bool = True, ax: Optional[plt.Axes] = None, log="auto",
                title: Optional[str] = None, annotate: bool = True, labels=None, unit: Optional[str] = None):
    r"""Per-layer energy of an :class:`neuroq.energy.EnergyMeter` report, split into SOP and MAC parts.

    Layer :math:`l`'s bar is stacked from

    .. math::
        E^{SOP}_l = E_{AC}\,\#SOP_l, \qquad E^{MAC}_l = E_{MAC}\,\#MAC_l,

    (per sample when the report knows its sample count and ``per_sample``), the accounting of
    the meter (45 nm constants of Horowitz, ISSCC 2014, by default). A spike-driven layer has only
    the SOP part, the first layer of a directly encoded image only the MAC part. The axis is in
    the unit that suits the data (pJ, nJ, µJ ...; :func:`energy_unit`), without an offset.

    Args:
        report: ``EnergyMeter.report()``, the meter itself, or a path to ``energy.json`` (or its folder).
        per_sample: plot ``*_per_sample`` values (falls back to totals when ``samples`` is 0).
        log: logarithmic y axis: ``True``, ``False``, or ``'auto'`` (the default): log when the nonzero bars
            differ by more than 100×, as a MAC-driven first layer and its spike-driven successors do (on a
            linear axis the spike layers would not show).
        annotate: write each layer's SOP/MAC counts above its bar.
        labels: layer labels ``{layer path: label}`` or one per layer (default: from the meter's
            model, :func:`neuroq.viz.layer_labels`, when a meter is given; else ``Linear 1`` ...).
        unit: ``"pJ"``, ``"nJ"``, ``"µJ"``, ``"mJ"`` or ``"J"`` (default: chosen from the data).
    Returns:
        the ``Axes``; ``ax.containers[0]`` holds the SOP bars, ``ax.containers[1]`` the MAC bars
        (stacked on the SOP ones), in the report's layer order, their heights in pJ (the report's
        numbers; the tick labels show ``ax.energy_unit``).

    Example::

        with EnergyMeter(net) as meter:
            net(x_seq)
        ax = viz.energy_bars(meter)
    """
    check_bool("per_sample", per_sample)
    check_bool("annotate", annotate)
    check_axes(ax)
    meter = report if hasattr(report, "report") and callable(report.report) else None
    rep = _load_report(report)
    layers = rep["layers"]
    if not layers:
        raise ValueError("the report has no synaptic layers: the meter saw no Linear/Conv input")
    per = per_sample and bool(rep.get("samples"))
    suf = "_per_sample" if per else ""
    e_ac, e_mac = float(rep["e_ac_pj"]), float(rep["e_mac_pj"])
    names = list(layers)
    ticklabels = _bar_labels(rep, meter, labels)
    sops = np.array([layers[k]["sops" + suf] for k in names], dtype=float)
    macs = np.array([layers[k]["macs" + suf] for k in names], dtype=float)
    e_sop, e_macs = sops * e_ac, macs * e_mac
    total_bar = e_sop + e_macs
    uname, factor = energy_unit(total_bar, unit)
    positive = total_bar[total_bar > 0]
    log = _auto_log(log, positive)
    if ax is None:
        _, ax = plt.subplots(figsize=(bar_figure_width(len(names), 4.8, 1.25, 2.2), 3.8), layout="constrained")
    x = np.arange(len(names))
    ax.bar(x, e_sop, color=PALETTE[0], width=0.7, label=f"SOP × {e_ac:g} pJ (spike input)")
    ax.bar(x, e_macs, bottom=e_sop, color=PALETTE[1], width=0.7, label=f"MAC × {e_mac:g} pJ (real-valued input)")
    if annotate:
        for xi, s_, m_, top in zip(x, sops, macs, total_bar):
            parts = ([f"{_si(s_)} SOP"] if s_ else []) + ([f"{_si(m_)} MAC"] if m_ else [])
            if top <= 0 and log:
                continue  # nothing to draw on a log axis (the bar is absent; the x label names the layer)
            ax.annotate("\n".join(parts) or "0", (xi, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=points() * (0.8 if len(names) > 8 else 1.0),
                        rotation=90 if len(names) > 12 else 0)
    rot = 0 if len(names) <= 4 else (25 if len(names) <= 10 else 60)
    ax.set_xticks(x, ticklabels, rotation=rot, ha="right" if rot else "center")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        if positive.size:
            ax.set_ylim(positive.min() / 3, positive.max() * (30 if len(names) > 12 else 6))
    else:
        ax.set_ylim(0, max(1e-12, float(total_bar.max())) * 1.3)
    _energy_axis(ax, log, factor, uname, per)
    total = rep["total"]["energy_pj" + suf]
    ax.legend(loc="upper right", title=f"total {_fmt_energy(total, uname, factor)}" + (" / sample" if per else ""))
    if title:
        ax.set_title(title)
    ax.energy_unit = uname
    return ax


def _si(x: float) -> str:
    for div, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{p}"
    return f"{x:.3g}"


def pareto_front(energy: Sequence[float], accuracy: Sequence[float]) -> list:
    r"""Indices of the runs no other run beats, sorted by energy.

    Run :math:`i` is dominated when some :math:`j` has :math:`E_j \le E_i` and
    :math:`a_j \ge a_i` with one of them strict; the front is the non-dominated set.
    """
    try:
        e = np.asarray(energy, dtype=float)
        a = np.asarray(accuracy, dtype=float)
    except (TypeError, ValueError):
        raise TypeError("energy and accuracy must be sequences of real numbers") from None
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"energy and accuracy must be 1-D of equal length, got {e.shape} and {a.shape}")
    for what, v in (("energy", e), ("accuracy", a)):
        bad = np.flatnonzero(~np.isfinite(v))
        if bad.size:
            raise ValueError(f"{what}[{int(bad[0])}] is {v[bad[0]]}: energies and accuracies must be finite")
    front = []
    for i in range(len(e)):
        dominated = np.any((e <= e[i]) & (a >= a[i]) & ((e < e[i]) | (a > a[i])))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (e[i], -a[i]))


def load_run_summary(run, accuracy: str = "final_test_acc") -> dict:
    """``{label, method, T, dataset, accuracy, energy_pj, sops, macs, firing_rate, path, args}`` of a
    ``neuroq train`` output folder (its ``metrics.json`` and ``energy.json``); ``args`` are the
    run's training options (used to tell apart runs whose ``"<method> T=<T>"`` labels are alike)."""
    p = Path(run)
    if p.is_file():
        p = p.parent
    try:
        with open(p / "metrics.json") as f:
            m = json.load(f)
        with open(p / "energy.json") as f:
            e = json.load(f)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{p} is not a finished `neuroq train` run: {err.filename} is missing") from None
    if m.get(accuracy) is None:
        raise ValueError(f"{p / 'metrics.json'} has no {accuracy!r} value")
    tot = e["total"]
    per = "_per_sample" if e.get("samples") else ""
    T = m.get("T")  # the steps the method really simulates (1 for the ANN / single-step methods)
    return dict(label=f"{m.get('method', p.name)} T={T}", method=m.get("method"), T=T,
                dataset=m.get("dataset"), accuracy=float(m[accuracy]), energy_pj=float(tot["energy_pj" + per]),
                sops=float(tot["sops" + per]), macs=float(tot["macs" + per]),
                firing_rate=tot.get("firing_rate"), path=str(p),
                args={**(m.get("train") or {}), **(m.get("method_config") or {})} or dict(m.get("args") or {}))


# training options that say where or how verbosely a run was made, not what was trained
_BOOKKEEPING = {"command", "out", "data_dir", "no_download", "download", "device", "resume", "quiet", "no_report",
                "func", "T"}


def distinct_labels(rows: Sequence[Mapping]) -> list:
    """One label per run, no two alike: a run's ``label`` (default ``run <i>``), and where several
    share one, the training options (``args``) in which they differ (``lif T=4, arch=cnn``), else
    their folder names, else a running number.

    Example::

        viz.distinct_labels([dict(label="lif T=4", args=dict(arch="mlp")),
                             dict(label="lif T=4", args=dict(arch="cnn"))])
        # ['lif T=4, arch=mlp', 'lif T=4, arch=cnn']
    """
    labels = [str(r.get("label", f"run {i}")) for i, r in enumerate(rows)]
    groups = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    out = list(labels)
    for lab, idx in groups.items():
        if len(idx) < 2:
            continue
        args = [rows[i].get("args") or {} for i in idx]
        keys = sorted({k for a in args for k in a} - _BOOKKEEPING)
        differ = [k for k in keys if len({repr(a.get(k)) for a in args}) > 1]
        for i, a in zip(idx, args):
            extra = ", ".join(f"{k}={a.get(k)}" for k in differ[:3])
            out[i] = f"{lab}, {extra}" if extra else lab
        if len({out[i] for i in idx}) < len(idx):
            names = [Path(str(rows[i].get("path", ""))).name for i in idx]
            for i, name in zip(idx, names):
                if name and len(set(names)) == len(names):
                    out[i] = f"{out[i]} ({name})"
        current = [out[i] for i in idx]
        seen = {}
        for i, cur in zip(idx, current):
            if current.count(cur) > 1:
                seen[cur] = seen.get(cur, 0) + 1
                out[i] = f"{cur} #{seen[cur]}"
    return out


_OFFSETS = ((6, 5, "left", "bottom"), (6, -5, "left", "top"), (-6, 5, "right", "bottom"),
            (-6, -5, "right", "top"), (0, 9, "center", "bottom"), (0, -9, "center", "top"),
            (10, 14, "left", "bottom"), (10, -14, "left", "top"), (-10, 14, "right", "bottom"),
            (-10, -14, "right", "top"))


def _place_labels(ax, x, y, labels) -> list:
    """Annotate each point (in run order), choosing per label the first offset whose text box
    overlaps no earlier label, no point, not the legend and stays inside the axes (else the
    least-overlapping one)."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(np.column_stack([x, y]))
    r = 5.0 * fig.dpi / 72.0
    point_boxes = [(px - r, py - r, px + r, py + r) for px, py in pts]
    box = ax.get_window_extent(renderer)
    placed = []
    leg = ax.get_legend()
    if leg is not None:
        e = leg.get_window_extent(renderer)
        placed.append((e.x0, e.y0, e.x1, e.y1))

    def overlap(b, c):
        return max(0.0, min(b[2], c[2]) - max(b[0], c[0])) * max(0.0, min(b[3], c[3]) - max(b[1], c[1]))

    choice = {}
    for i in np.argsort(x, kind="stable"):
        best = None
        for k, (dx, dy, ha, va) in enumerate(_OFFSETS):
            t = ax.annotate(labels[i], (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va)
            e = t.get_window_extent(renderer)
            t.remove()
            b = (e.x0, e.y0, e.x1, e.y1)
            cost = sum(overlap(b, c) for c in placed) + sum(overlap(b, c) for j, c in enumerate(point_boxes) if j != i)
            cost += 2 * ((b[2] - b[0]) * (b[3] - b[1]) - overlap(b, (box.x0, box.y0, box.x1, box.y1)))
            if best is None or cost < best[0]:
                best = (cost, k, b)
            if cost == 0:
                break
        placed.append(best[2])
        choice[i] = best[1]
    texts = []
    for i, lab in enumerate(labels):
        dx, dy, ha, va = _OFFSETS[choice[i]]
        texts.append(ax.annotate(lab, (x[i], y[i]), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va))
    return texts


@styled
def accuracy_energy(runs, labels: Optional[Sequence[str]] = None, ax: Optional[plt.Axes] = None,
                    accuracy: str = "final_test_acc", logx: bool = True, title: Optional[str] = None,
                    unit: Optional[str] = None):
    r"""Accuracy against energy per sample of several runs, the Pareto front drawn as a step line.

    Each run is a point :math:`(E, a)` with :math:`E` the ``energy.json`` total per sample and
    :math:`a` the ``metrics.json`` accuracy; the front (see :func:`pareto_front`) joins the runs
    that no other run beats on both: for an energy budget :math:`E`, the step line is the best
    accuracy :math:`\max\{a_i : E_i \le E\}` of the runs on the front. The energy axis is in one
    unit chosen from the data (:func:`energy_unit`), the accuracy axis in percent.

    Args:
        runs: ``neuroq train`` output folders (or their ``checkpoint.pt``), or dicts with ``energy_pj``
            and ``accuracy`` (and optionally ``label``, ``args``, and ``accuracy_std`` / ``energy_std``,
            drawn as error bars), e.g. from :func:`load_run_summary` or ``neuroq compare``.
        labels: one label per run (default: each run's ``"<method> T=<T>"``, made distinct by
            :func:`distinct_labels` where two are alike).
        accuracy: the ``metrics.json`` key to use (``final_test_acc`` or ``test_acc_at_best_epoch``).
        logx: logarithmic energy axis.
        unit: energy unit (``"pJ"``, ``"nJ"``, ``"µJ"`` ...; default: chosen from the data).
    Returns:
        the ``Axes``; ``ax.collections[0]`` holds one point per run in order (x in pJ),
        ``ax.pareto`` the front's run indices, ``ax.lines[0]`` the front, ``ax.texts`` the labels
        in run order, ``ax.energy_unit`` the unit of the tick labels.

    Example::

        ax = viz.accuracy_energy(["runs/lif-T4", "runs/lif-T8", "runs/ann"])
    """
    check_axes(ax)
    if isinstance(runs, (str, bytes, os.PathLike, Mapping)):
        raise TypeError(f"runs must be a list of run folders or summary dicts, got one {type(runs).__name__} "
                        "(wrap it in a list)")
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty: give at least one run folder or summary dict")
    rows = [dict(r) if isinstance(r, Mapping) else load_run_summary(r, accuracy) for r in runs]
    for i, r in enumerate(rows):
        if "energy_pj" not in r or "accuracy" not in r:
            raise ValueError(f"runs[{i}] needs 'energy_pj' and 'accuracy' entries, got {sorted(r)}")
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(rows):
            raise ValueError(f"labels has {len(labels)} entries for {len(rows)} runs")
    else:
        labels = distinct_labels(rows)
    check_bool("logx", logx)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        run = f"runs[{i}] ({lab!r})"
        check_real(f"{run} energy_pj", r["energy_pj"], ge=0)
        check_real(f"{run} accuracy", r["accuracy"])
        for key in ("accuracy_std", "energy_std"):
            check_real(f"{run} {key}", r.get(key), ge=0, allow_none=True)
    e = np.array([r["energy_pj"] for r in rows], dtype=float)
    a = np.array([r["accuracy"] for r in rows], dtype=float)
    if logx and np.any(e <= 0):
        raise ValueError("logx needs energies > 0; pass logx=False")
    uname, factor = energy_unit(e, unit)
    front = pareto_front(e, a)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    on_front = np.zeros(len(rows), dtype=bool)
    on_front[front] = True
    a_err = np.array([r.get("accuracy_std") or 0.0 for r in rows], dtype=float)
    e_err = np.array([r.get("energy_std") or 0.0 for r in rows], dtype=float)
    if np.any(a_err > 0) or np.any(e_err > 0):  # spread over seeds (one std)
        ax.errorbar(e, a, xerr=e_err, yerr=a_err, fmt="none", ecolor="0.35", elinewidth=1.0, capsize=3, zorder=2)
    ax.scatter(e, a, c=[PALETTE[1] if f else GREY for f in on_front], s=40, zorder=3,
               edgecolors="k", linewidths=0.5)
    ax.step(e[front], a[front], where="post", color=PALETTE[1], linestyle="--", linewidth=1.2,
            label="Pareto front")
    ax.scatter([], [], c=GREY, s=40, edgecolors="k", linewidths=0.5, label="dominated run")
    if logx:
        ax.set_xscale("log")
        # label 1-2-5 over wide ranges, every integer multiple when the runs span about a decade or less
        narrow = np.log10(e.max() / e.min()) < 1.2
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=tuple(range(1, 10)) if narrow else (1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.margins(x=0.15, y=0.15)
    ax.xaxis.set_major_formatter(_unit_formatter(factor))
    ax.set_xlabel(f"energy per sample ({uname})")
    if np.all((a >= 0) & (a <= 1)):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
    ax.set_ylabel(accuracy.replace("_", " ").replace("acc", "accuracy"))
    ax.legend(loc="lower right")
    ax.grid(True, which="major", alpha=0.3)
    if title:
        ax.set_title(title)
    _place_labels(ax, e, a, labels)
    ax.pareto = front
    ax.energy_unit = uname
    return ax


_COMPONENT_LABELS = dict(compute="compute", weight_memory="weight memory", state_memory="state memory",
                         io="input/output", addressing="addressing")


@styled
def energy_components(report, model: Optional[str] = None, per_sample: bool = True, log="auto",
                      ax: Optional[plt.Axes] = None, title: Optional[str] = None, labels=None,
                      unit: Optional[str] = None):
    r"""Per-layer energy of an :class:`neuroq.energy.EnergyMeter` report under one energy model, split into
    its components (compute, weight memory, state memory, input/output, addressing;
    :mod:`neuroq.energy.models`), synaptic and neuron layers in module order.

    Linear axis: each layer's bar is stacked by component.  Log axis (``log=True``, or ``'auto'`` when the
    components span more than two orders of magnitude): the components stand side by side in each layer's
    group, since stacked segments on a log axis do not read as their share.

    Args:
        report: ``EnergyMeter.report()``, the meter, or a path to ``energy.json`` (or its folder).
        model: an energy model of the report (default: the report's primary model).
        per_sample, ax, title, labels, unit: as :func:`energy_bars`.
    Returns:
        the ``Axes``; ``ax.components`` the components drawn (in order), ``ax.containers`` one bar
        container per component, heights in pJ.

    Example::

        with EnergyMeter(net, energy="lemaire") as meter:
            net(x_seq)
        ax = viz.energy_components(meter)
    """
    from ..energy.models import COMPONENTS

    check_bool("per_sample", per_sample)
    check_axes(ax)
    meter = report if hasattr(report, "report") and callable(report.report) else None
    rep = _load_report(report)
    models = rep.get("energy_models")
    if not models:
        raise ValueError("the report has no energy_models: it was written before energy models existed; "
                         "meter it again (neuroq energy RUN)")
    model = model or rep.get("energy_model") or next(iter(models))
    if model not in models:
        raise ValueError(f"model must be one of the report's energy models {list(models)}; got {model!r}")
    mr = models[model]
    per = per_sample and bool(rep.get("samples"))
    key = "components_pj_per_sample" if per else "components_pj"
    names = list(mr["layers"])
    if not names:
        raise ValueError("the report has no metered layers")
    vals = np.array([[mr["layers"][k][key][c] for c in COMPONENTS] for k in names], dtype=float)
    used = [i for i, c in enumerate(COMPONENTS) if vals[:, i].any()]
    vals = vals[:, used]
    comps = [COMPONENTS[i] for i in used]
    positive = vals[vals > 0]
    log = _auto_log(log, positive)
    ticklabels = _component_labels(rep, meter, names, labels)
    uname, factor = energy_unit(vals.sum(1), unit)
    if ax is None:
        _, ax = plt.subplots(figsize=(bar_figure_width(len(names), 5.2, 1.1, 2.6), 3.9), layout="constrained")
    x = np.arange(len(names))
    if log:
        w = 0.8 / max(1, len(comps))
        for j, c in enumerate(comps):
            ax.bar(x - 0.4 + w * (j + 0.5), vals[:, j], width=w, color=PALETTE[j % len(PALETTE)],
                   label=_COMPONENT_LABELS.get(c, c))
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0,)))
        ax.yaxis.set_minor_formatter(NullFormatter())
        if positive.size:
            ax.set_ylim(positive.min() / 3, positive.max() * 6)
    else:
        bottom = np.zeros(len(names))
        for j, c in enumerate(comps):
            ax.bar(x, vals[:, j], bottom=bottom, width=0.7, color=PALETTE[j % len(PALETTE)],
                   label=_COMPONENT_LABELS.get(c, c))
            bottom += vals[:, j]
        ax.set_ylim(0, max(1e-12, float(bottom.max())) * 1.25)
    _energy_axis(ax, log, factor, uname, per)
    rot = 0 if len(names) <= 4 else (25 if len(names) <= 10 else 60)
    ax.set_xticks(x, ticklabels, rotation=rot, ha="right" if rot else "center")
    total = mr["total"]["energy_pj_per_sample" if per else "energy_pj"]
    ax.legend(loc="upper right", fontsize="small",
              title=f"{model}: total {_fmt_energy(total, uname, factor)}" + (" / sample" if per else ""))
    if title:
        ax.set_title(title)
    ax.components = comps
    ax.energy_unit = uname
    return ax


def _component_labels(rep, meter, names, labels):
    if labels is not None:
        if isinstance(labels, Mapping):
            return [labels.get(k, k) for k in names]
        labels = list(labels)
        if len(labels) != len(names):
            raise ValueError(f"labels: expected {len(names)} (one per layer), got {len(labels)}")
        return labels
    if meter is not None:
        found = layer_labels(meter.model)
        return [found.get(k, k) for k in names]
    return names
