"""Regenerate the result blocks of README.md from the JSON files that runs wrote.

    python -m visualizations.readme_tables            # rewrite README.md in place
    python -m visualizations.readme_tables --check    # exit 1 if README.md is stale

Blocks are delimited by ``<!-- begin:NAME -->`` / ``<!-- end:NAME -->``; no number in them is
typed by hand.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _machine(m: dict) -> str:
    dev = m.get("gpu") or f"CPU ({m.get('cpu_count')} cores, {m.get('processor')})"
    return f"{dev}, torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}"


def demo_block() -> str:
    res = ROOT / "examples" / "results"
    met = json.loads((res / "demo_metrics.json").read_text())
    en = json.loads((res / "demo_energy.json").read_text())
    t = en["total"]
    hidden = met.get("method_config", {}).get("hidden") or met.get("args", {}).get("hidden")
    best = (f"epoch {met['best_epoch']}: {met['test_acc_at_best_epoch'] * 100:.2f} %" if met.get("best_epoch")
            else "–")
    lines = [
        f"`make demo` on {_machine(met['machine'])}: LIF MLP 64-{'-'.join(map(str, hidden))}-10, "
        f"T={met['T']}, {met['epochs_done']} epochs, digits test set ({en['samples']} samples metered).",
        "",
        "| final test acc | test acc at the best epoch (chosen on validation) | training time | SOPs / sample "
        "| MACs / sample | energy / sample | hidden firing rate |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {met['final_test_acc'] * 100:.2f} % | {best} | {met['train_time_s']:.0f} s "
        f"| {t['sops_per_sample']:.0f} | {t['macs_per_sample']:.0f} | {t['energy_pj_per_sample'] / 1e3:.1f} nJ "
        f"| {t['firing_rate']:.3f} |",
        "",
        "| layer | input | input rate | SOPs / sample | MACs / sample | energy / sample (pJ) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for k, d in en["layers"].items():
        rate = "" if d["input_rate"] is None else f"{d['input_rate']:.3f}"
        lines.append(f"| `{k}` ({d['type']}) | {d['input']} | {rate} | {d['sops_per_sample']:.0f} "
                     f"| {d['macs_per_sample']:.0f} | {d['energy_pj_per_sample']:.0f} |")
    return "\n".join(lines)


BLOCKS = {"demo": demo_block}


def include_block(rel: str) -> str:
    """A docs/ section (itself generated from JSON by the method's report script), with its
    relative links rewritten for the repository root and its top heading demoted one level."""
    path = ROOT / rel
    text = path.read_text().strip("\n")
    base = path.parent.relative_to(ROOT)

    def fix(m):
        target = m.group(2)
        if re.match(r"^[a-z]+://|^#|^/", target):
            return m.group(0)
        return f"{m.group(1)}({(base / target).as_posix() if not target.startswith('..') else _norm(base, target)})"

    text = re.sub(r"(!?\[[^\]]*\])\(([^)\s]+)\)", fix, text)
    # demote headings so the section's top heading is level 3 (under README's "## Methods and results")
    in_code = False
    out, levels = [], [len(m.group(1)) for m in re.finditer(r"^(#+) ", text, flags=re.M)]
    shift = 3 - min(levels) if levels else 0
    for line in text.split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        m = re.match(r"^(#+) ", line)
        if m and not in_code:
            line = "#" * (len(m.group(1)) + shift) + line[len(m.group(1)):]
        out.append(line)
    return "\n".join(out)


def _norm(base: Path, target: str) -> str:
    import posixpath

    return posixpath.normpath(posixpath.join(base.as_posix(), target))


def render(text: str) -> str:
    pat = re.compile(r"(<!-- begin:include (\S+) -->\n)(?:.*?\n)?(<!-- end:include \2 -->)", re.S)
    text = pat.sub(lambda m: m.group(1) + include_block(m.group(2)) + "\n" + m.group(3), text)
    for name, fn in BLOCKS.items():
        pat = re.compile(rf"(<!-- begin:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if pat.search(text):
            text = pat.sub(lambda m: m.group(1) + fn() + "\n" + m.group(2), text)
    return text


def collect_demo(run_dir: Path) -> None:
    """Copy a finished `make demo` run's JSON and raster into the repository."""
    res = ROOT / "examples" / "results"
    res.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "metrics.json", res / "demo_metrics.json")
    shutil.copy(run_dir / "energy.json", res / "demo_energy.json")
    shutil.copy(run_dir / "raster.png", ROOT / "docs" / "img" / "demo_raster.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true")
    p.add_argument("--collect-demo", default=None, help="copy results of this run dir first (e.g. runs/demo)")
    a = p.parse_args(argv)
    if a.collect_demo:
        collect_demo(Path(a.collect_demo))
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
