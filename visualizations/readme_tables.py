"""Regenerate the result blocks of README.md from the JSON files that runs wrote.

    python -m visualizations.readme_tables            # rewrite README.md in place
    python -m visualizations.readme_tables --check    # exit 1 if README.md is stale
    python -m visualizations.readme_tables --collect-demo runs/demo   # copy a `make demo` run first
    python -m visualizations.readme_tables --collect-compare runs/compare-fmnist   # the committed comparison

Blocks are delimited by ``<!-- begin:NAME -->`` / ``<!-- end:NAME -->``; no number in them is typed by
hand.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RES = ROOT / "examples" / "results"


def _compare_table(path: Path) -> str:
    from neuroq.training.compare import markdown_table

    if not path.exists():
        return f"(`{path.relative_to(ROOT)}` has not been recorded yet)"
    return markdown_table(json.loads(path.read_text()))


def demo_block() -> str:
    return _compare_table(RES / "demo_compare.json")


def _flattening(path: Path, last: int = 3) -> str:
    """How much each method's mean test accuracy still rose over the last ``last`` epochs."""
    import numpy as np

    if not path.exists():
        return ""
    d = json.loads(path.read_text())
    parts = []
    for name, r in d["methods"].items():
        curves = np.array([[h["test_acc"] for h in run["history"]] for run in r["runs"]], dtype=float).mean(0)
        if len(curves) > last:
            parts.append(f"{name} {100 * (curves[-1] - curves[-1 - last]):+.2f}")
    return (f"Mean test accuracy gained over the last {last} epochs (points): " + ", ".join(parts) +
            "; the per-epoch curves are in [docs/training.md](docs/training.md#comparing-methods).")


def compare_block() -> str:
    path = RES / "compare_fashion_mnist.json"
    return _compare_table(path) + "\n\n" + _flattening(path)


def performance_block() -> str:
    path = ROOT / "benchmarks" / "results" / "neuron_kernels_cpu.json"
    d = json.loads(path.read_text())
    lines = ["| target (CPU, 1 thread) | T | N | measured | limit | met |", "|---|---:|---:|---:|---:|---|"]
    for t in d["targets"].get("items", []):
        if t.get("threads") != 1:
            continue
        lines.append(f"| {t['target']} | {t['T']} | {t['N']} | {t['value']:.3f} | {t['limit']} | "
                     f"{'yes' if t['met'] else '**no**'} |")
    svo = ROOT / "benchmarks" / "results" / "saf_vs_ottt_cpu.json"
    if svo.exists():
        cpu = json.loads(svo.read_text()).get("cpu_targets") or {}
        for name, t in cpu.items():
            lines.append(f"| {name} (VGG training step, `saf_vs_ottt_cpu.json`) | | | {t['value']:.3f} | {t['limit']} | "
                         f"{'yes' if t['met'] else '**no**'} |")
    m = d["machine"]
    lines += ["", f"From `benchmarks/results/neuron_kernels_cpu.json` ({m.get('processor')}, {m.get('cpu_count')} "
              f"cores, torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}); all rows and the 2-thread "
              "targets in [docs/kernels.md](docs/kernels.md)."]
    return "\n".join(lines)


class _NotRecorded(Exception):
    pass


def _load(name: str):
    path = RES / name
    if not path.exists():
        raise _NotRecorded(name)
    return json.loads(path.read_text())


def _yn(met) -> str:
    return "met" if met else "**not met**"


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def _s2nn():
    t = _load("s2nn_fashion_mnist_published.json")["targets"]
    r = _load("s2nn_fashion_mnist.json")["targets"]
    return (f"published surrogate (default): energy {t['energy_ratio_to_lif']:.3f}x the LIF T=4 network's "
            f"(≤ {t['energy_target_ratio']}x: {_yn(t['energy_met'])}); accuracy {t['acc_gap_to_relu_points']:.2f} "
            f"points behind ReLU (≤ {t['acc_target_points']}: {_yn(t['acc_met'])}); neuroq's reduced surrogate: "
            f"{r['acc_gap_to_relu_points']:.2f} points behind ({_yn(r['acc_met'])})")


def _pspn():
    short, t = _load("pspn_depth_long.json")["targets"], _load("pspn_depth_curves.json")
    e = t["config"]["epochs"]
    t = t["targets"]
    return (f"depth 110 vs 20 on CPU-sized runs, {e} epochs: {t['pspn_110_vs_20_gap_points']:.2f} points behind "
            f"(≤ {t['gap_target_points']}: {_yn(t['depth_met'])}; {short['pspn_110_vs_20_gap_points']:.1f} after 2 "
            f"epochs: the gap was the budget, docs' learning curves)")


def _saf():
    d = _load("saf_fashion_mnist.json")
    g = d["saf-e_minus_ottt-o_points"]
    return (f"SAF-E − OTTT_O on Fashion-MNIST ({d['epochs']} epochs): {g:+.2f} points (within ±0.5: "
            f"{_yn(abs(g) <= 0.5)}); speed and memory in [docs/performance.md](docs/performance.md)")


def _penalty():
    t = _load("energy_penalty.json")["targets"]
    r = t["reduction_spiking"]
    text = (f"spike (SOP) energy −{100 * r['energy_reduction']:.1f} % at −{r['acc_drop_points']:.2f} points "
            f"({_yn(r['met'])}); total energy −{100 * t['reduction_total']['energy_reduction']:.1f} % "
            f"at −{t['reduction_total']['acc_drop_points']:.2f} ({_yn(t['reduction_total']['met'])}: the first "
            f"layer's MACs on the image dominate the arithmetic-only total)")
    for m, r in t.get("reduction_total_by_model", {}).items():
        if m != "compute":
            text += (f"; total under `{m}` −{100 * r['energy_reduction']:.1f} % at −{r['acc_drop_points']:.2f} "
                     f"({_yn(r['met'])})")
    return text


def _maqd():
    def acc(stem, key):
        vals = []
        for f in sorted(RES.glob(f"maqd_fashion_mnist_{stem}*.json")):
            st = json.loads(f.read_text())["results"].get("states", {})
            vals.append(st.get(key, {}).get("test_acc"))
        return _mean(vals)
    fp, w3 = acc("long24", "fp@long24"), acc("long24", "w3a2@long24")
    fp12, w12 = acc("long_", "fp@long"), acc("long_", "w3a2@long")
    fp16, w16 = acc("states", "fp"), acc("states", "w16a16")
    g3, g12, g16 = 100 * (fp - w3), 100 * (fp12 - w12), 100 * (fp16 - w16)
    def signed(v):
        return f"{v:+.2f}".replace("-", "−")
    return (f"vs full precision on Fashion-MNIST: 16-state weights and activations {signed(-g16)} points "
            f"(≤ 0.5 behind: {_yn(g16 <= 0.5)}), 3-state weights with 2-state activations {signed(-g3)} points "
            f"after 24 epochs (≤ 2 behind: {_yn(g3 <= 2.0)}; {signed(-g12)} after 12)")


def _lmu():
    t = _load("hybrid_lmu_psmnist.json")["targets"]
    a, h, b = t["lmu_test_acc_at_least_96"], t["hybrid_within_1_point"], t["hybrid_bits_at_most_3_74"]
    return (f"psMNIST: LMU {100 * a['value']:.2f} % ({_yn(a['met'])}), hybrid {100 * h['value']:.2f} points "
            f"behind ({_yn(h['met'])}) at {b['value']:.2f} bits of activity ({_yn(b['met'])})")


def _prune():
    t = _load("spectral_pruning_mnist.json")["targets"]
    parts = []
    for net, label in (("irnn", "IRNN"), ("srnn", "spiking RNN")):
        w, a = t[net]["within_1pt_at_50"], t[net]["ahead_at_le_50"]
        parts.append(f"{label}: 50 % of units at −{w['drop_points']:.2f} points ({_yn(w['met'])}), ahead of the "
                     f"baselines beyond their spread {_yn(a['met'])}")
    rates = _load("spectral_pruning_rates.json")
    sp = rates["summary"]["srnn"]["prune"]
    dof = [r["calibration"]["rates"]["dof"] for r in rates["runs"]["srnn"].values()]
    parts[-1] += (f"; its activity is nearly full-rank (N̂ ≈ {min(dof):.0f}-{max(dof):.0f} of "
                  f"{rates['summary']['srnn']['hidden']} even as firing rates), and pruning from firing rates "
                  f"instead of spikes gives −{sp['spectral-rates']['0.5']['drop_points']['mean']:.2f} vs "
                  f"−{sp['spectral']['0.5']['drop_points']['mean']:.2f} on new networks (ablation)")
    return "; ".join(parts)


def _gmvi():
    t = _load("gm_vi_fashion_mnist.json")["targets"]
    parts = []
    for key, label in (("mlp/gm3-all_vs_mf", "MLP"), ("smlp/gm3-all_vs_mf", "spiking MLP")):
        r = t[key]
        parts.append(f"{label}, K = 3 (all components per step) vs mean-field: NLL {r['nll_gm']:.3f} vs "
                     f"{r['nll_mf']:.3f}, ECE {100 * r['ece_gm']:.2f} vs {100 * r['ece_mf']:.2f} % at equal accuracy "
                     f"({_yn(r['met'])})")
    study = _load("gm_vi_ece_study.json")["ece_study"]["smlp/gm3-all-mf"]["seeds"]
    inside = sum(r["ece_diff_ci95"][0] <= 0 <= r["ece_diff_ci95"][1] for r in study)
    parts[-1] += (f": its ECE gap lies inside the test set's sampling noise (95 % paired-bootstrap interval contains "
                  f"0) on {inside} of {len(study)} retrained seeds, its NLL gap favours the mixture on every seed")
    parts.append(f"entropy error falls with separation ({_yn(t['entropy_error_vs_separation']['met'])})")
    return "; ".join(parts)


METHODS = [
    ("S²NN single-step spiking neurons and the S²NN surrogate", "`neuroq.training.methods.s2nn`", "s2nn", _s2nn),
    ("PSPN and deep pre-activation residual SNNs", "`neuroq.layer.norm.psp_norm`, `neuroq.models.resnet`", "pspn",
     _pspn),
    ("Spike Accumulation Forwarding (SAF-E, SAF-F) with OTTT_O/OTTT_A", "`neuroq.training.methods.online`", "saf",
     _saf),
    ("the spiking synaptic penalty and the energy meter", "`neuroq.energy`", "energy_penalty", _penalty),
    ("MaQD quantization-aware training, Layer-Batch Norm, integer export",
     "`neuroq.training.methods.maqd`, `neuroq.quant`", "maqd", _maqd),
    ("hybrid-spiking activations (temporally diffused error) and the LMU", "`neuroq.neuron.hybrid`, `neuroq.layer.lmu`",
     "hybrid_lmu", _lmu),
    ("spectral pruning of (spiking) RNNs", "`neuroq.prune`", "spectral_pruning", _prune),
    ("Gaussian-mixture variational inference with the entropy approximation", "`neuroq.bayes`", "gm_vi", _gmvi),
]


def methods_block() -> str:
    """The README's method table: each method's headline result and targets, read from its JSON."""
    lines = ["| method | module | headline result and targets (from the committed JSON) | docs |", "|---|---|---|---|"]
    for name, module, page, fn in METHODS:
        try:
            result = fn()
        except _NotRecorded as e:  # a result file not recorded yet (a changed format still raises)
            result = f"(`examples/results/{e}` not recorded yet)"
        lines.append(f"| {name} | {module} | {result} | [docs/{page}.md](docs/{page}.md) |")
    return "\n".join(lines)


def energy_ranks_block() -> str:
    """Each demo method's rank by energy (1 = cheapest) under every energy model, and how far it moves."""
    path = RES / "demo_compare.json"
    if not path.exists():
        return f"(`{path.relative_to(ROOT)}` has not been recorded yet)"
    from neuroq.training.compare import _model_energy, energy_model_names

    d = json.loads(path.read_text())
    models = energy_model_names(d)
    rows = d["methods"]
    rank = {mo: {m: i + 1 for i, m in enumerate(sorted(rows, key=lambda m: _model_energy(rows[m], mo)[0]))}
            for mo in models}
    lines = ["| method | " + " | ".join(f"rank under {mo}" for mo in models) + " | largest move |",
             "|---|" + "---:|" * len(models) + "---:|"]
    for m in sorted(rows, key=lambda m: rank[models[0]][m]):
        r = [rank[mo][m] for mo in models]
        lines.append(f"| {m} | " + " | ".join(str(v) for v in r) + f" | {max(r) - min(r)} |")
    return "\n".join(lines)


def energy_calibration_block() -> str:
    path = ROOT / "benchmarks" / "results" / "energy_calibration.json"
    if not path.exists():
        return f"(`{path.relative_to(ROOT)}` has not been recorded yet)"
    d = json.loads(path.read_text())
    meas = d["measured"]["joules_per_inference"] * 1e6
    lines = ["| rate r (spikes per neuron and step) | synaptic operations | neuron updates | `loihi` estimate (µJ) | "
             f"measured ({meas:.0f} µJ) / estimate |", "|---:|---:|---:|---:|---:|"]
    for r in d["sweep"]:
        lines.append(f"| {r['rate']:.2f} | {r['synops']:,.0f} | {r['neuron_updates']:,} | {r['energy_pj'] / 1e6:.2f} | "
                     f"{r['measured_over_estimate']:.1f}x |")
    sc = d["scaling"]
    lines += ["", f"Scaling runs: {d['measured']['scaling_increment_joules'] * 1e6:.0f} µJ per inference added by "
              f"{d['measured']['scaling_extra_layers']} extra 256-neuron layers; the profile explains it at "
              f"r = {sc['rate_that_explains_it']:.3f}. From `benchmarks/results/energy_calibration.json`."]
    return "\n".join(lines)


def energy_penalty_block() -> str:
    """What the synaptic and the Lemaire model penalty save under each energy model (mean over seeds)."""
    path = RES / "energy_penalty_models.json"
    if not path.exists():
        return f"(`{path.relative_to(ROOT)}` has not been recorded yet)"
    d = json.loads(path.read_text())
    lines = ["| penalty | alpha | accuracy change (points) | " + " | ".join(f"energy change under {m}" for m in d["models"])
             + " |", "|---|---:|---:|" + "---:|" * len(d["models"])]
    for s in d["summary"]:
        lines.append(f"| {s['kind']} | {s['alpha']:g} | {s['acc_change_points']:+.2f} | "
                     + " | ".join(f"{100 * s['energy_change'][m]:+.1f} %" for m in d["models"]) + " |")
    m = d["machine"]
    lines += ["", f"{d['network']} on digits, {d['epochs']} epochs, {d['seeds']} seeds, changes against the unpenalized "
              f"run of the same seed; `examples/results/energy_penalty_models.json` ({m.get('processor')}, "
              f"{m.get('cpu_count')} CPUs, torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')})."]
    return "\n".join(lines)


BLOCKS = {"energy-penalty": energy_penalty_block, "demo": demo_block, "compare": compare_block, "performance": performance_block,
          "methods": methods_block, "energy-demo": demo_block, "energy-ranks": energy_ranks_block,
          "energy-calibration": energy_calibration_block}
#: the pages whose result blocks are generated
PAGES = ("README.md", "docs/energy.md", "docs/performance.md")


def render(text: str) -> str:
    for name, fn in BLOCKS.items():
        pat = re.compile(rf"(<!-- begin:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if pat.search(text):
            text = pat.sub(lambda m: m.group(1) + fn() + "\n" + m.group(2), text)
    return text


def collect(run_dir: Path, name: str, figure: str) -> None:
    """Copy a finished ``neuroq compare`` run's ``compare.json`` and frontier into the repository."""
    RES.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "compare.json", RES / name)
    for suffix in (".png", ".pdf"):
        src = run_dir / ("frontier" + suffix)
        if src.exists():
            shutil.copy(src, ROOT / "docs" / "img" / (figure + suffix))


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true")
    p.add_argument("--collect-demo", default=None, help="copy the results of a `make demo` run (runs/demo) first")
    p.add_argument("--collect-compare", default=None, help="copy the committed Fashion-MNIST comparison run first")
    a = p.parse_args(argv)
    if a.collect_demo:
        collect(Path(a.collect_demo), "demo_compare.json", "demo_frontier")
    if a.collect_compare:
        collect(Path(a.collect_compare), "compare_fashion_mnist.json", "compare_fashion_mnist")
    stale = []
    for page in PAGES:
        path = ROOT / page
        old = path.read_text()
        new = render(old)
        if new != old:
            stale.append(page)
            if not a.check:
                path.write_text(new)
    if a.check and stale:
        print(f"result blocks are stale in {', '.join(stale)}: run python -m visualizations.readme_tables")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
