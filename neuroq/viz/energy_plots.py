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


def energy_bars(report, per_sample: bool = True, ax: Optional[plt.Axes] = None, log: bool = False,
                title: Optional[str] = None, annotate: bool = True):
    r"""Per-layer energy of an :class:`neuroq.energy.EnergyMeter` report, split into SOP and MAC parts.

    Layer :math:`l`'s bar is stacked from

    .. math::
        E^{SOP}_l = E_{AC}\,\#SOP_l, \qquad E^{MAC}_l = E_{MAC}\,\#MAC_l,

    (pJ, per sample when the report knows its sample count and ``per_sample``), the accounting of
    the meter (45 nm constants of Horowitz, ISSCC 2014, by default). A spike-driven layer has only
    the SOP part, the first layer of a directly encoded image only the MAC part.

    Args:
        report: ``EnergyMeter.report()``, the meter itself, or a path to ``energy.json`` (or its folder).
        per_sample: plot ``*_per_sample`` values (falls back to totals when ``samples`` is 0).
        log: logarithmic y axis.
        annotate: write each layer's SOP/MAC counts above its bar.
    Returns:
        the ``Axes``; ``ax.containers[0]`` holds the SOP bars, ``ax.containers[1]`` the MAC bars
        (stacked on the SOP ones), in the report's layer order.
    """
    rep = _load_report(report)
    layers = rep["layers"]
    if not layers:
        raise ValueError("the report has no synaptic layers: the meter saw no Linear/Conv input")
    per = per_sample and bool(rep.get("samples"))
    suf = "_per_sample" if per else ""
    e_ac, e_mac = float(rep["e_ac_pj"]), float(rep["e_mac_pj"])
    names = list(layers)
    sops = np.array([layers[k]["sops" + suf] for k in names], dtype=float)
    macs = np.array([layers[k]["macs" + suf] for k in names], dtype=float)
    e_sop, e_macs = sops * e_ac, macs * e_mac
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 2), 3.6))
    x = np.arange(len(names))
    ax.bar(x, e_sop, color="tab:blue", label=f"SOP × {e_ac:g} pJ (spikes)")
    ax.bar(x, e_macs, bottom=e_sop, color="tab:orange", label=f"MAC × {e_mac:g} pJ (real values)")
    if annotate:
        for xi, s, m, top in zip(x, sops, macs, e_sop + e_macs):
            parts = ([f"{_si(s)} SOP"] if s else []) + ([f"{_si(m)} MAC"] if m else [])
            ax.annotate("\n".join(parts) or "0", (xi, top), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{k}\n{layers[k].get('type', '')}".strip() for k in names], rotation=30 if len(names) > 3 else 0, ha="right" if len(names) > 3 else "center",
                       fontsize=8)
    ax.set_ylabel("energy (pJ" + (" / sample)" if per else ")"))
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(0, max(1e-12, float((e_sop + e_macs).max())) * 1.25)
    total = rep["total"]["energy_pj" + suf]
    ax.legend(fontsize=7, loc="upper right", title=f"total {_si(total)} pJ", title_fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
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
    e = np.asarray(energy, dtype=float)
    a = np.asarray(accuracy, dtype=float)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"energy and accuracy must be 1-D of equal length, got {e.shape} and {a.shape}")
    front = []
    for i in range(len(e)):
        dominated = np.any((e <= e[i]) & (a >= a[i]) & ((e < e[i]) | (a > a[i])))
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (e[i], -a[i]))


def load_run_summary(run, accuracy: str = "final_test_acc") -> dict:
    """``{label, method, T, dataset, accuracy, energy_pj, sops, macs, firing_rate, path}`` of a
    ``neuroq train`` output folder (its ``metrics.json`` and ``energy.json``)."""
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
                firing_rate=tot.get("firing_rate"), path=str(p))


def accuracy_energy(runs, labels: Optional[Sequence[str]] = None, ax: Optional[plt.Axes] = None,
                    accuracy: str = "final_test_acc", logx: bool = True, title: Optional[str] = None):
    r"""Accuracy against energy per sample of several runs, the Pareto front drawn as a step line.

    Each run is a point :math:`(E, a)` with :math:`E` the ``energy.json`` total in pJ per sample and
    :math:`a` the ``metrics.json`` accuracy; the front (see :func:`pareto_front`) joins the runs
    that no other run beats on both.

    Args:
        runs: ``neuroq train`` output folders (or their ``checkpoint.pt``), or dicts with ``energy_pj``
            and ``accuracy`` (and optionally ``label``), e.g. from :func:`load_run_summary`.
        labels: one label per run (default: ``"<method> T=<T>"``).
        accuracy: the ``metrics.json`` key to use (``final_test_acc`` or ``best_test_acc``).
        logx: logarithmic energy axis.
    Returns:
        the ``Axes``; ``ax.collections[0]`` holds one point per run in order, ``ax.pareto`` the
        front's run indices, ``ax.lines[0]`` the front.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs is empty: give at least one run folder or summary dict")
    rows = [dict(r) if isinstance(r, Mapping) else load_run_summary(r, accuracy) for r in runs]
    for i, r in enumerate(rows):
        if "energy_pj" not in r or "accuracy" not in r:
            raise ValueError(f"runs[{i}] needs 'energy_pj' and 'accuracy' entries, got {sorted(r)}")
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(rows):
            raise ValueError(f"labels has {len(labels)} entries for {len(rows)} runs")
    else:
        labels = [r.get("label", f"run {i}") for i, r in enumerate(rows)]
    e = np.array([r["energy_pj"] for r in rows], dtype=float)
    a = np.array([r["accuracy"] for r in rows], dtype=float)
    if logx and np.any(e <= 0):
        raise ValueError("logx needs energies > 0; pass logx=False")
    front = pareto_front(e, a)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    on_front = np.zeros(len(rows), dtype=bool)
    on_front[front] = True
    ax.scatter(e, a, c=["tab:red" if f else "tab:gray" for f in on_front], s=36, zorder=3)
    ax.step(e[front], a[front], where="post", color="tab:red", linestyle="--", linewidth=1,
            label="Pareto front")
    for i, lab in enumerate(labels):
        ax.annotate(lab, (e[i], a[i]), xytext=(4, 4), textcoords="offset points", fontsize=7)
    if logx:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.12)
    ax.set_xlabel("energy per sample (pJ)")
    ax.set_ylabel(accuracy.replace("_", " "))
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    ax.pareto = front
    return ax
