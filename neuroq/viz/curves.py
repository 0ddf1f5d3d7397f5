"""Learning curves: a metric per epoch of several runs, the mean over seeds with a ±1 std band."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .style import color, styled

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # with the colours, tells apart neighbouring hues


@styled
def learning_curves(runs: Mapping[str, Sequence[Sequence[Mapping]]], key: str = "test_acc",
                    ax: Optional[plt.Axes] = None, title: Optional[str] = None):
    """``key`` per epoch for each labelled group of runs.

    Args:
        runs: ``{label: [history, ...]}``, one history (a list of per-epoch records with ``epoch``
            and ``key``, as in ``metrics.json``) per seed. Seeds are averaged epoch by epoch over the
            runs that have that epoch; with two or more the band is one standard deviation.
        key: the record field to plot (``test_acc``, ``val_acc``, ``train_loss`` ...).
    Returns:
        the ``Axes``; ``ax.lines[i]`` is the mean curve of the ``i``-th label (x: epochs, y: values).
    """
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty {label: [history, ...]} mapping")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    values_all = []
    for i, (label, histories) in enumerate(runs.items()):
        per_epoch: dict[int, list[float]] = {}
        for h in histories:
            for rec in h:
                if key not in rec or rec[key] is None:
                    continue
                per_epoch.setdefault(int(rec["epoch"]), []).append(float(rec[key]))
        if not per_epoch:
            raise ValueError(f"runs[{label!r}]: no epoch record has {key!r}")
        epochs = np.array(sorted(per_epoch))
        mean = np.array([np.mean(per_epoch[e]) for e in epochs])
        std = np.array([np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0.0 for e in epochs])
        ax.plot(epochs, mean, color=color(i), label=str(label), linewidth=1.6, marker=MARKERS[i % len(MARKERS)],
                markersize=4, linestyle="-" if i < len(MARKERS) else "--")
        if np.any(std > 0):
            ax.fill_between(epochs, mean - std, mean + std, color=color(i), alpha=0.18, linewidth=0)
        values_all.append(mean)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(key.replace("_", " ").replace("acc", "accuracy"))
    vals = np.concatenate(values_all)
    if key.endswith("acc") and np.all((vals >= 0) & (vals <= 1)):
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right" if key.endswith("acc") else "upper right", ncols=2)
    if title:
        ax.set_title(title)
    return ax
