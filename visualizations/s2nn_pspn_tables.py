"""Render the markdown result tables of docs/s2nn.md and docs/pspn.md from the example JSON files.

    python -m visualizations.s2nn_pspn_tables                      # prints the tables
    python -m visualizations.s2nn_pspn_tables --pspn examples/results/pspn_depth.json other.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _machine(m: dict) -> str:
    dev = m.get("gpu") or f"CPU ({m.get('processor')}, {m.get('cpu_count')} cores, {m.get('torch_threads')} torch thread(s))"
    return f"{dev}; torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}"


def s2nn_table(path: Path) -> str:
    d = json.loads(path.read_text())
    c = d["config"]
    sg = (f"S2NN surrogate published (SpikingJelly's), alpha={c['alpha']}, beta={c.get('beta')}"
          if c.get("surrogate") == "published" else f"S2NN T_ref={c['t_ref']}, alpha={c['alpha']}")
    lines = [f"From `{path}` — {d['dataset']}, {d['n_train']} training / {d['n_test']} test images, "
             f"{c['epochs']} epochs, {sg}; machine: {_machine(d['machine'])}.",
             "",
             "| network | T | test acc (%) | train time / epoch (s) | energy / inference (µJ) | SOPs | MACs | hidden firing rate |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    names = {"s2nn": "S2NN (S2NNNode)", "lif": "LIF", "ann": "ReLU (ANN)"}
    for k, r in d["results"].items():
        rate = "–" if r["hidden_firing_rate"] is None else f"{r['hidden_firing_rate']:.3f}"
        lines.append(f"| {names.get(k, k)} | {r['T']} | {100 * r['final_test_acc']:.2f} | "
                     f"{r['train_time_per_epoch_s']:.1f} | {r['energy_pj_per_inference'] / 1e6:.3f} | "
                     f"{r['sops_per_inference']:.3g} | {r['macs_per_inference']:.3g} | {rate} |")
    t = d.get("targets")
    if t:
        lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
        if "acc_met" in t:
            lines.append(f"| S2NN within {t['acc_target_points']} points of ReLU | {t['acc_gap_to_relu_points']:.2f} "
                         f"points below | {'yes' if t['acc_met'] else 'no'} |")
        if "energy_met" in t:
            lines.append(f"| S2NN energy <= {t['energy_target_ratio']}x LIF T=4 | {t['energy_ratio_to_lif']:.3f}x "
                         f"| {'yes' if t['energy_met'] else 'no'} |")
    return "\n".join(lines)


def s2nn_ablation_table(paths) -> str:
    """One row per S2NN run: how the surrogate's T_ref and alpha change accuracy and firing."""
    lines = ["| train images | epochs | surrogate | T_ref | alpha | beta | test acc (%) | energy / inference (µJ) | "
             "hidden firing rate | file |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        r = d["results"].get("s2nn")
        if r is not None:
            c = d["config"]
            sg = c.get("surrogate", "reduced")
            rows.append(((d["n_train"], c["epochs"], sg, c["t_ref"], c["alpha"]), c.get("beta"), r, path))
    for (n, ep, sg, t_ref, alpha), beta, r, path in sorted(rows, key=lambda x: x[0]):
        lines.append(f"| {n} | {ep} | {sg} | {t_ref if sg == 'reduced' else '–'} | {alpha} | "
                     f"{beta if sg == 'published' else '–'} | {100 * r['final_test_acc']:.2f} | "
                     f"{r['energy_pj_per_inference'] / 1e6:.3f} | {r['hidden_firing_rate']:.3f} | `{path}` |")
    return "\n".join(lines)


def _curves(paths) -> dict:
    """``{label: history}`` of every network in the run files ``paths`` (S2NN labelled by its surrogate; a
    network met in several files is kept once)."""
    names = {"ann": "ReLU", "lif": "LIF (T = 4)"}
    out = {}
    for path in paths:
        d = json.loads(Path(path).read_text())
        sg = d["config"].get("surrogate", "reduced")
        for k, r in d["results"].items():
            label = f"S2NN, {sg} surrogate" if k == "s2nn" else names.get(k, k)
            out.setdefault(label, r["history"])
    return out


def s2nn_curve_table(paths) -> str:
    """Test accuracy per epoch of every network of the runs ``paths`` (their learning curves), side by side."""
    curves = _curves(paths)
    labels = list(curves)
    lines = ["Learning curves from " + ", ".join(f"`{p}`" for p in paths) + " (one seed each):", "",
             "| epoch | " + " | ".join(f"{k} (%)" for k in labels) + " |",
             "| --- |" + " --- |" * len(labels)]
    epochs = sorted({h["epoch"] for hs in curves.values() for h in hs})
    for e in epochs:
        row = []
        for k in labels:
            acc = next((h["test_acc"] for h in curves[k] if h["epoch"] == e), None)
            row.append("–" if acc is None else f"{100 * acc:.2f}")
        lines.append(f"| {e} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def _curve_figure(curves: dict, title: str, out: Path) -> Path:
    """``{label: history}`` as test accuracy per epoch in one figure (:func:`neuroq.viz.learning_curves`)."""
    from neuroq import viz

    ax = viz.learning_curves({k: [h] for k, h in curves.items()}, key="test_acc", title=title)
    ax.set_ylabel("test accuracy")
    viz.save(ax, out, dpi=150)
    return out


def s2nn_curve_figure(paths, out: Path) -> Path:
    """The learning curves of the runs ``paths`` in one figure."""
    d = json.loads(Path(paths[0]).read_text())
    return _curve_figure(_curves(paths), f"{d['dataset']}, {d['n_train']} training images: test accuracy per epoch",
                         out)


def _pspn_curves(path: Path) -> dict:
    """``{label: history}`` of every network of a ``pspn_depth --curves`` run file."""
    d = json.loads(Path(path).read_text())
    names = {"pspn": "PSPN", "bn": "BatchNorm", "none": "no norm"}
    return {f"{names[r['norm']]}, depth {r['depth']}": r["history"] for r in d["runs"]}


def pspn_curve_table(path: Path) -> str:
    """Test accuracy per epoch (normalization statistics re-estimated before each evaluation) of every
    network of a ``pspn_depth --curves`` run, side by side, and the depth-110 - depth-20 gap per norm."""
    d = json.loads(Path(path).read_text())
    c = d["config"]
    curves = _pspn_curves(path)
    labels = list(curves)
    gaps = [n for n in ("PSPN", "BatchNorm", "no norm") if f"{n}, depth 20" in curves and f"{n}, depth 110" in curves]
    lines = [f"Learning curves from `{path}` — {d['dataset']} ({d['n_train']} training / {d['n_test']} test "
             f"images, {'x'.join(map(str, d['image_shape'][1:]))} pixels), width {c['width']}, T={c['T']}, lr {c['lr']} "
             f"(constant), test accuracy after each epoch with the normalization statistics re-estimated on "
             f"{c['recal_batches']} training batches; machine: {_machine(d['machine'])}.", "",
             "| " + " | ".join(["epoch"] + [f"{k} (%)" for k in labels] + [f"{n}: 20 − 110 (points)" for n in gaps])
             + " |",
             "| --- |" + " --- |" * (len(labels) + len(gaps))]
    epochs = sorted({h["epoch"] for hs in curves.values() for h in hs})

    def acc(k, e):
        return next((h.get("test_acc") for h in curves[k] if h["epoch"] == e), None)

    for e in epochs:
        row = ["–" if acc(k, e) is None else f"{100 * acc(k, e):.2f}" for k in labels]
        for n in gaps:
            a20, a110 = acc(f"{n}, depth 20", e), acc(f"{n}, depth 110", e)
            row.append("–" if None in (a20, a110) else f"{100 * (a20 - a110):+.2f}")
        lines.append(f"| {e} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def pspn_curve_figure(path: Path, out: Path) -> Path:
    """The learning curves of a ``pspn_depth --curves`` run in one figure."""
    d = json.loads(Path(path).read_text())
    return _curve_figure(_pspn_curves(path), f"spiking pre-activation ResNets, {d['n_train']} {d['dataset']} images",
                         out)


def pspn_table(path: Path) -> str:
    d = json.loads(path.read_text())
    c = d["config"]
    lines = [f"From `{path}` — {d['dataset']} ({d['n_train']} training / {d['n_test']} test images, "
             f"{'x'.join(map(str, d['image_shape'][1:]))} pixels), width {c['width']}, T={c['T']}, "
             f"{c['epochs']} epochs, lr {c['lr']}; machine: {_machine(d['machine'])}.",
             "",
             "| depth | norm | test acc (%) | diverged | near chance | rates at init: layer1 / layer2 / layer3 / head | "
             "rates trained: layer1 / layer2 / layer3 / head | block-rate range trained | s / epoch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in d["runs"]:
        def rates(key):
            return " / ".join("–" if v is None else f"{v:.3f}" for v in r[key]["stage_rates"].values())
        br = list(r["rates_final"]["block_rates"].values())
        lines.append(f"| {r['depth']} | {r['norm']} | {100 * r['final_test_acc']:.2f} | {'yes' if r['diverged'] else 'no'} | "
                     f"{'yes' if r['failed_to_learn'] else 'no'} | {rates('rates_init')} | {rates('rates_final')} | "
                     f"{min(br):.3f}–{max(br):.3f} | {r['train_time_per_epoch_s']:.0f} |")
    t = d.get("targets", {})
    if "pspn_110_vs_20_gap_points" in t:
        lines += ["", f"Target: PSPN depth 110 within {t['gap_target_points']} points of depth 20 — measured "
                      f"{t['pspn_110_vs_20_gap_points']:.2f} points below: **{'met' if t['depth_met'] else 'not met'}**."]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--s2nn", nargs="*", default=["examples/results/s2nn_fashion_mnist.json",
                                                 "examples/results/s2nn_fashion_mnist_60k.json"])
    p.add_argument("--s2nn-ablation", nargs="*", default=[
        "examples/results/s2nn_fashion_mnist_tref1.json", "examples/results/s2nn_fashion_mnist.json",
        "examples/results/s2nn_fashion_mnist_tref16.json", "examples/results/s2nn_fashion_mnist_60k.json",
        "examples/results/s2nn_fashion_mnist_60k_alpha2.json", "examples/results/s2nn_fashion_mnist_60k_published.json",
        "examples/results/s2nn_fashion_mnist_published.json", "examples/results/s2nn_fashion_mnist_60k_20ep.json",
        "examples/results/s2nn_fashion_mnist_60k_20ep_published.json"])
    p.add_argument("--pspn", nargs="*", default=["examples/results/pspn_depth.json",
                                                 "examples/results/pspn_depth_long.json",
                                                 "examples/results/pspn_depth_long56.json"])
    p.add_argument("--s2nn-curves", nargs="*", default=["examples/results/s2nn_fashion_mnist_60k_20ep.json",
                                                       "examples/results/s2nn_fashion_mnist_60k_20ep_published.json"])
    p.add_argument("--figure", default=None, help="also draw the learning curves of --s2nn-curves to this PNG")
    p.add_argument("--pspn-curves", default="examples/results/pspn_depth_curves.json",
                   help="a pspn_depth --curves run: its learning-curve table")
    p.add_argument("--pspn-figure", default=None, help="also draw the learning curves of --pspn-curves to this PNG")
    a = p.parse_args(argv)
    if Path(a.pspn_curves).exists():
        print(pspn_curve_table(Path(a.pspn_curves)) + "\n")
        if a.pspn_figure:
            print(f"wrote {pspn_curve_figure(Path(a.pspn_curves), Path(a.pspn_figure))}")
    curves = [f for f in a.s2nn_curves if Path(f).exists()]
    if curves:
        print(s2nn_curve_table(curves) + "\n")
        if a.figure:
            print(f"wrote {s2nn_curve_figure(curves, Path(a.figure))}")
    for f in a.s2nn:
        if Path(f).exists():
            print(s2nn_table(Path(f)) + "\n")
    abl = [f for f in a.s2nn_ablation if Path(f).exists()]
    if abl:
        print(s2nn_ablation_table(abl) + "\n")
    for f in a.pspn:
        if Path(f).exists():
            print(pspn_table(Path(f)) + "\n")


if __name__ == "__main__":
    main()
