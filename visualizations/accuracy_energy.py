"""Accuracy-energy curves of the synaptic penalty and the L1 rate penalty (issue 6).

Reads the JSON written by ``examples/energy_penalty.py`` and draws one PNG with two panels: test
accuracy against the EnergyMeter's total energy per inference (left) and against its spiking part,
E_AC x #SOP (right; the first layer's MACs on the real-valued image are the same for every run).
It also writes the results table into ``docs/energy_penalty.md`` between the
``<!-- energy-penalty-table -->`` markers, so the numbers there always come from the JSON::

    python -m visualizations.accuracy_energy [--json examples/results/energy_penalty.json]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {"synaptic": dict(color="tab:red", marker="o", label="synaptic penalty (fan-out weighted, p=1)"),
         "rate-l1": dict(color="tab:blue", marker="s", label="firing-rate penalty (L1)")}
MARK = "<!-- energy-penalty-table -->"
TARGETS_MARK = "<!-- energy-penalty-targets -->"


def plot(res: dict, path: Path) -> None:
    base = res["baseline"]
    direct = res["config"].get("encoding", "direct") == "direct"
    panels = [(lambda r: r["energy_pj_per_inference"],
               "total energy, arithmetic only" + (" (incl. first-layer MACs)" if direct else "")),
              (lambda r: r["spiking_energy_pj_per_inference"], "spiking part: E_AC x #SOP")]
    if "lemaire" in base.get("energy_models", {}):  # the memory-aware model that prices each spike's traffic
        panels.append((lambda r: r["energy_models"]["lemaire"]["energy_pj_per_inference"],
                       "total energy under the memory-aware `lemaire` model"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2))
    for ax, (energy, title) in zip(axes, panels):
        for kind, runs in res["runs"].items():
            pts = sorted([base] + runs, key=energy)
            ax.plot([energy(r) / 1e6 for r in pts], [100 * r["test_acc"] for r in pts], **STYLE[kind])
            for r in runs:
                ax.annotate(f"a={r['alpha']:g}", (energy(r) / 1e6, 100 * r["test_acc"]),
                            xytext=(3, 5) if kind == "synaptic" else (3, -11),
                            textcoords="offset points", fontsize=7, color=STYLE[kind]["color"])
        ax.plot([energy(base) / 1e6], [100 * base["test_acc"]], "k*", ms=13, label="no penalty", zorder=5)
        ax.axhline(100 * base["test_acc"] - 1, color="gray", ls=":", lw=1, label="baseline - 1 pt")
        ax.axvline(0.6 * energy(base) / 1e6, color="gray", ls="--", lw=1, label="40 % energy reduction")
        ax.set_xlabel("energy per inference (uJ)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="lower right")
    m = res.get("machine", {})
    cfg = res["config"]
    fig.suptitle(f"LIF CNN (T={cfg['T']}, {cfg.get('encoding', 'direct')} encoding) on {res['dataset']}: {res['n_train']} train / {res['n_test']} test images, "
                 f"{cfg['epochs']} epochs; {m.get('processor', '')} {m.get('cpu_count', '')} CPUs", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def table(res: dict) -> str:
    base = res["baseline"]
    e0, s0, a0 = base["energy_pj_per_inference"], base["spiking_energy_pj_per_inference"], base["test_acc"]
    models = [m for m in base.get("energy_models", {}) if m != "compute"]  # compute: the "energy" columns
    rows = ["| penalty | alpha | lambda | test acc (%) | Δacc (pt) | energy (µJ/inf) | energy vs none | "
            "spiking energy vs none | " + "".join(f"{m} vs none | " for m in models)
            + "SOPs/inf | firing rates (LIF after conv1, conv2, fc1) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(models) + "---:|---|"]
    for kind, runs in [("none", [base])] + list(res["runs"].items()):
        for r in runs:
            rates = ", ".join(f"{v:.3f}" for v in r["firing_rates"].values())
            per_model = "".join(f"{_model_energy(r, m) / _model_energy(base, m):.3f} | " for m in models)
            rows.append(f"| {kind} | {r.get('alpha', 0):g} | {r['lam']:.3g} | {100 * r['test_acc']:.2f} | "
                        f"{100 * (r['test_acc'] - a0):+.2f} | {r['energy_pj_per_inference'] / 1e6:.3f} | "
                        f"{r['energy_pj_per_inference'] / e0:.3f} | {r['spiking_energy_pj_per_inference'] / s0:.3f} | "
                        f"{per_model}{r['sops_per_inference']:.4g} | {rates} |")
    return "\n".join(rows)


def _model_energy(run: dict, model: str) -> float:
    return run["energy_models"][model]["energy_pj_per_inference"]


def real_input_share(run: dict) -> dict:
    """Per energy model: the share of ``run``'s energy spent in synaptic layers fed real values (the first
    conv on the image), which no spike penalty can lower."""
    real = [k for k, v in run["layers"].items() if v["input"] != "spikes"]
    return {m: sum(r["layers_pj"].get(k, 0.0) for k in real) / r["energy_pj_per_inference"]
            for m, r in run.get("energy_models", {}).items() if "layers_pj" in r}


def targets_text(res: dict) -> str:
    """The issue-6 targets as evaluated by ``examples.energy_penalty.targets`` (stored in the JSON)."""
    t = res.get("targets")
    if not t:
        return "_targets not evaluated yet (sweep unfinished)_"
    lines = []
    share = real_input_share(res["baseline"])
    if share and max(share.values()) == 0:
        lines.append("- **What a spike penalty cannot touch.** No synaptic layer is fed real values: every "
                     "layer's energy follows the spikes under every model.")
    elif share:
        lines.append("- **What a spike penalty cannot touch.** The unpenalized network's layers fed real values "
                     "(the first conv on the image) hold " + ", ".join(
                         f"{100 * v:.1f} % of its energy under `{m}`" for m, v in share.items())
                     + ": no penalty can lower the total by more than the rest.")
    for key, what in (("reduction_total", "total energy"), ("reduction_spiking", "spiking (SOP) energy")):
        r = t[key]
        if r is None:
            continue
        lines.append(f"- **≤ 1 pt accuracy loss at ≥ 40 % {what} reduction: {'met' if r['met'] else 'not met'}.** "
                     + ("Best synaptic run meeting it" if r["met"] else "Largest reduction among the synaptic runs")
                     + f": lambda = {r['lam']:.3g}, "
                     f"{100 * r['energy_reduction']:.1f} % less {what}, accuracy change "
                     f"{0.0 - r['acc_drop_points'] + 0.0:+.2f} pt.")
    for m, r in t.get("reduction_total_by_model", {}).items():
        if m == "compute" or r is None:  # compute: the "total energy" line above
            continue
        lines.append(f"- **≤ 1 pt accuracy loss at ≥ 40 % total energy reduction under `{m}`: "
                     f"{'met' if r['met'] else 'not met'}.** "
                     + ("Best synaptic run meeting it" if r["met"] else "Largest reduction among the synaptic runs")
                     + f": lambda = {r['lam']:.3g}, {100 * r['energy_reduction']:.1f} % less energy, accuracy change "
                     f"{0.0 - r['acc_drop_points'] + 0.0:+.2f} pt.")
    c = t["synaptic_vs_rate"]
    pts = "; ".join(
        f"rate λ={p['rate_lam']:.3g} at {p['energy'] / 1e6:.3f} µJ: rate {100 * p['rate_acc']:.2f} % vs synaptic "
        + (f"{100 * p['synaptic_acc']:.2f} %" if p["synaptic_acc"] is not None else "n/a (below the synaptic sweep)")
        for p in c["points"])
    lines.append(f"- **Synaptic curve at or above the rate curve at every energy level: "
                 f"{'met' if c['met'] else 'not met'}** ({c['judged']} rate runs compared with the synaptic curve, "
                 f"the piecewise-linear upper envelope of the baseline and synaptic runs, at the same total energy; "
                 f"{c['not_reached']} below the synaptic sweep's lowest energy, not judged. {pts}).")
    return "\n".join(lines)


def _fill(text: str, mark: str, body: str):
    pat = re.compile(re.escape(mark) + r".*?" + re.escape(mark), re.S)
    if not pat.search(text):
        return text, False
    return pat.sub(lambda _: f"{mark}\n{body}\n{mark}", text), True


def write_table(res: dict, doc: Path, tag: str = "") -> bool:
    if not doc.exists():
        return False
    text, ok1 = _fill(doc.read_text(), MARK.replace(" -->", f"{tag} -->"), table(res))
    text, ok2 = _fill(text, TARGETS_MARK.replace(" -->", f"{tag} -->"), targets_text(res))
    doc.write_text(text)
    return ok1 or ok2


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default="examples/results/energy_penalty.json")
    p.add_argument("--out", default=None, help="PNG (default: visualizations/<json name>.png)")
    p.add_argument("--doc", default="docs/energy_penalty.md")
    p.add_argument("--tag", default="", help="suffix of the doc's markers, e.g. '-rate' for a second sweep")
    a = p.parse_args(argv)
    res = json.loads(Path(a.json).read_text())
    a.out = a.out or f"visualizations/{Path(a.json).stem}.png"
    plot(res, Path(a.out))
    print(a.out)
    print(table(res))
    print(targets_text(res))
    if write_table(res, Path(a.doc), a.tag):
        print(f"table written into {a.doc}")


if __name__ == "__main__":
    main()
