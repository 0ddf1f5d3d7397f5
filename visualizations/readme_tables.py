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


BLOCKS = {"demo": demo_block, "compare": compare_block, "performance": performance_block}


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
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = render(old)
    if a.check:
        if new != old:
            print("README.md result blocks are stale: run python -m visualizations.readme_tables")
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
