"""Accuracy against kept fraction of hidden units: spectral pruning vs magnitude and random (issue 13).

Reads the JSON written by ``examples/spectral_pruning_mnist.py`` and draws one figure: a row per
network (IRNN, spiking RNN), a column without / with the short fine-tune; test accuracy (mean ± std
over seeds) against the fraction of hidden units kept, the unpruned network (mean ± std band, and
1 point below it), and the degrees of freedom N̂(λ)/m of the hidden-state covariance marked on the
x axis.  It also writes the results and target tables into ``docs/spectral_pruning.md`` between
the ``<!-- spectral-pruning-table -->`` / ``<!-- spectral-pruning-targets -->`` markers (and the
pixel-sequence pilot's line between ``<!-- spectral-pruning-pilot -->``), so the numbers there always
come from the JSON::

    python -m visualizations.spectral_pruning [--json examples/results/spectral_pruning_mnist.json]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from neuroq import viz  # noqa: E402
from neuroq.viz.style import GREY  # noqa: E402

NET_TITLES = {"irnn": "IRNN", "srnn": "spiking RNN"}
METHODS = {
    "spectral": dict(label="spectral (greedy + reconstruction)", color=viz.color(0), marker="o", ls="-", zorder=5),
    "magnitude": dict(label="magnitude (deletion)", color=viz.color(1), marker="s", ls="-", zorder=4),
    "random": dict(label="random (deletion)", color=viz.color(2), marker="^", ls="-", zorder=3),
    "magnitude+rec": dict(label="magnitude + reconstruction (ablation)", color=viz.color(3), marker="D",
                          ls="--", zorder=2),
    "spectral-rates": dict(label="spectral on firing rates (ablation)", color=viz.color(4), marker="v",
                           ls="--", zorder=1),
}
MARK = "<!-- spectral-pruning-table -->"
TARGETS_MARK = "<!-- spectral-pruning-targets -->"
PILOT_MARK = "<!-- spectral-pruning-pilot -->"


def _series(s: dict, kind: str, field: str):
    pts = sorted((float(k), v[field]) for k, v in s["prune"].get(kind, {}).items() if v[field]["mean"] is not None)
    return ([k for k, _ in pts], [100 * v["mean"] for _, v in pts], [100 * v["std"] for _, v in pts])


def plot(res: dict, path: Path) -> list:
    summary = res["summary"]
    nets = [n for n in ("irnn", "srnn") if n in summary]
    with viz.style():
        fig, axes = plt.subplots(len(nets), 2, figsize=(7.2, 2.9 * len(nets)), squeeze=False, sharex=True)
        for r, net in enumerate(nets):
            s = summary[net]
            base, base_sd = 100 * s["base_acc"]["mean"], 100 * s["base_acc"]["std"]
            dof = s["dof_fraction"]["mean"]
            ft = res["config"].get("finetune_epochs", 0)
            ft_title = f"after a {ft}-epoch fine-tune" if ft else "fine-tuned"
            for c, (field, title) in enumerate((("acc", "no fine-tuning"), ("acc_finetuned", ft_title))):
                ax = axes[r][c]
                ax.axhspan(base - base_sd, base + base_sd, color=GREY, alpha=0.18, lw=0)
                ax.axhline(base, color=GREY, lw=1.0, label="unpruned (mean ± std)")
                ax.axhline(base - 1, color=GREY, lw=0.8, ls=(0, (4, 2)), label="unpruned − 1 point")
                for kind, st in METHODS.items():
                    x, y, e = _series(s, kind, field)
                    if not x:
                        continue
                    ax.errorbar(x + [1.0], y + [base], yerr=e + [base_sd], color=st["color"], marker=st["marker"],
                                ls=st["ls"], label=st["label"], capsize=2.5, zorder=st["zorder"], lw=1.3, ms=4)
                ax.axhline(10.0, color=GREY, lw=0.7, ls=(0, (1, 3)), label="chance (10 %)")
                if dof is not None:
                    right = dof < 0.8
                    ax.axvline(dof, color="k", lw=0.9, ls="-.", zorder=1)
                    ax.annotate(r"$\hat N(\lambda)/m$" + f" = {dof:.2f}", (dof, 0.03), xycoords=("data", "axes fraction"),
                                xytext=(4 if right else -4, 0), textcoords="offset points", fontsize=7.5,
                                ha="left" if right else "right", va="bottom")
                ax.set_xscale("log")
                ticks = sorted({float(k) for k in s["prune"].get("spectral", {})} | {1.0})
                ax.set_xticks(ticks)
                ax.set_xticks([], minor=True)
                ax.set_xticklabels([f"{100 * t:g}" for t in ticks])
                ax.set_xlim(min(ticks) * 0.85, 1.12)
                ax.set_ylim(0, 101)
                ax.grid(alpha=0.25, lw=0.5)
                ax.set_title(f"{NET_TITLES.get(net, net)}, {title}", fontsize=9)
                if r == len(nets) - 1:
                    ax.set_xlabel("hidden units kept (%)")
                if c == 0:
                    ax.set_ylabel("test accuracy (%)")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, bbox_to_anchor=(0.5, -0.005), fontsize=7.5)
        t = res["task"]
        seeds = len(res["config"]["seeds"])
        fig.suptitle(f"Pruning the hidden units of RNNs on sequential MNIST ({t['steps']} steps of {t['features']} "
                     f"pixels), m = {res['config']['hidden']}, {seeds} seeds", fontsize=9.5)
        fig.tight_layout(rect=(0, 0.085 if len(nets) > 1 else 0.15, 1, 1))
        return viz.save(fig, path, formats=("png", "pdf"))


def _pm(v: dict, scale: float = 100.0) -> str:
    if v is None or v["mean"] is None:
        return "–"
    return f"{scale * v['mean']:.2f} ± {scale * v['std']:.2f}"


def table(res: dict) -> str:
    rows = ["| network | method | kept | units | parameters | accuracy, no fine-tune (%) | drop (points) | "
            "accuracy, fine-tuned (%) | L_A / L_A(∅) | state drift at T |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for net, s in res["summary"].items():
        runs = res["runs"][net]
        rows.append(f"| {net} | unpruned | 100 % | {s['hidden']} | {s['params']} | {_pm(s['base_acc'])} | – | – | 0 | 0 |")
        for kind in METHODS:
            for key, v in sorted(s["prune"].get(kind, {}).items(), key=lambda kv: -float(kv[0])):
                rel = [r["prune"][kind][key]["loss_input"] / r["prune"][kind][key]["loss_input_all"]
                       for r in runs.values() if key in r.get("prune", {}).get(kind, {})]
                drift = v.get("drift_last")
                rows.append(f"| {net} | {kind} | {100 * float(key):g} % | {v['keep_units']} | {v['params']} | "
                            f"{_pm(v['acc'])} | {_pm(v['drop_points'], 1.0)} | {_pm(v['acc_finetuned'])} | "
                            f"{sum(rel) / len(rel):.3f} | "
                            f"{'–' if not drift or drift['mean'] is None else format(drift['mean'], '.3f')} |")
    dofs = []  # runs with the firing-rate ablation: both covariances' degrees of freedom per seed
    for net, runs in res["runs"].items():
        for seed, r in sorted(runs.items()):
            c = r.get("calibration", {})
            if "rates" in c:
                dofs.append(f"{net} seed {seed}: spikes {c['dof']:.1f}, rates {c['rates']['dof']:.1f}")
    if dofs:
        m = next(iter(res["summary"].values()))["hidden"]
        rows += ["", f"N̂(λ) of the spike-train and the firing-rate covariance (of m = {m}): " + "; ".join(dofs) + "."]
    return "\n".join(rows)


def targets_text(res: dict) -> str:
    """The issue-13 targets as evaluated by ``examples.spectral_pruning_mnist.targets`` (stored in the JSON), as a table."""
    rows = ["| network | target | result | evidence (mean over seeds; gap and spread in points) |", "|---|---|---|---|"]
    for net, t in res.get("targets", {}).items():
        s = res["summary"][net]
        w = t.get("within_1pt_at_50")
        if w:
            rows.append(f"| {net} | spectral, 50 % kept, no fine-tune: within 1 point of the unpruned network | "
                        f"**{'met' if w['met'] else 'not met'}** | drop {w['drop_points']:.2f} points "
                        f"(unpruned {_pm(s['base_acc'])} %) |")
        for key, what in (("ahead_at_le_50", "no fine-tune"), ("ahead_at_le_50_finetuned", "after the fine-tune")):
            a = t.get(key)
            if not a:
                continue
            parts = []
            for row in a["rows"]:
                for base in ("magnitude", "random"):
                    if base in row:
                        b = row[base]
                        parts.append(f"{100 * row['keep']:g} % vs {base}: {b['gap_points']:+.2f} "
                                     f"(spread {b['spread_points']:.2f}) {'✓' if b['met'] else '✗'}")
            rows.append(f"| {net} | spectral ahead of magnitude and random beyond their seed spread at every kept "
                        f"fraction ≤ 50 % ({what}) | **{'met' if a['met'] else 'not met'}** | {'; '.join(parts)} |")
    if len(rows) == 2:
        return "_targets not evaluated yet (run unfinished)_"
    dofs = "; ".join(f"{net}: N̂(λ) = {s['dof']['mean']:.1f} ± {s['dof']['std']:.1f} of m = {s['hidden']} "
                     f"({100 * s['dof_fraction']['mean']:.0f} %)" for net, s in res["summary"].items())
    return "\n".join(rows) + f"\n\nDegrees of freedom at the pruning's λ: {dofs}."


def _epoch_cost(base: dict) -> tuple:
    h = base["history"]
    return (sum(e["epoch_time_s"] for e in h) / len(h), sum(e["train_time_s"] for e in h) / len(h))


def pilot_text(pilot: dict, main: dict) -> str:
    """One line per network: the pilot's epoch time and accuracy next to the main run's (from the two JSONs)."""
    pt, mt = pilot["task"], main["task"]
    lines = []
    for net, runs in pilot["runs"].items():
        p = runs[sorted(runs)[0]]["base"]
        pe, _ = _epoch_cost(p)
        line = (f"- {net}: {pt['steps']} steps of {pt['features']} pixel: {len(p['history'])} epoch of "
                f"{pt['n_train']} sequences took {pe:.0f} s (with the test evaluation), test accuracy after it "
                f"{100 * p['test_acc']:.1f} %")
        m_runs = main.get("runs", {}).get(net)
        if m_runs:
            m = m_runs[sorted(m_runs)[0]]["base"]
            me, _ = _epoch_cost(m)
            first = m["history"][0]["test_acc"]
            line += (f"; {mt['steps']} rows of {mt['features']} pixels: {me:.0f} s per epoch, test accuracy "
                     f"{100 * first:.1f} % after the first epoch ({len(m['history'])} epochs: {100 * m['test_acc']:.1f} %)")
        lines.append(line + ".")
    return "\n".join(lines)


def _fill(text: str, mark: str, body: str):
    pat = re.compile(re.escape(mark) + r".*?" + re.escape(mark), re.S)
    if not pat.search(text):
        return text, False
    return pat.sub(lambda _: f"{mark}\n{body}\n{mark}", text), True


def write_tables(res: dict, doc: Path, tag: str = "", pilot: dict = None) -> bool:
    if not doc.exists():
        return False
    text, ok1 = _fill(doc.read_text(), MARK.replace(" -->", f"{tag} -->"), table(res))
    text, ok2 = _fill(text, TARGETS_MARK.replace(" -->", f"{tag} -->"), targets_text(res))
    if pilot is not None:
        text, _ = _fill(text, PILOT_MARK, pilot_text(pilot, res))
    doc.write_text(text)
    return ok1 or ok2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default="examples/results/spectral_pruning_mnist.json")
    p.add_argument("--out", default="visualizations/spectral_pruning.png", help="PNG (a PDF is written beside it)")
    p.add_argument("--doc", default="docs/spectral_pruning.md")
    p.add_argument("--tag", default="", help="suffix of the doc's markers, e.g. '-pixels' for a second run")
    p.add_argument("--pilot", default="examples/results/spectral_pruning_mnist_pixels_pilot.json",
                   help="JSON of the pixel-sequence pilot (its line goes into the doc when the file exists)")
    a = p.parse_args(argv)
    res = json.loads(Path(a.json).read_text())
    pilot = json.loads(Path(a.pilot).read_text()) if a.pilot and Path(a.pilot).exists() else None
    if pilot is not None:
        print(pilot_text(pilot, res))
    for f in plot(res, Path(a.out)):
        print(f)
    print(table(res))
    print(targets_text(res))
    if write_tables(res, Path(a.doc), a.tag, pilot):
        print(f"tables written into {a.doc}")


if __name__ == "__main__":
    main()
