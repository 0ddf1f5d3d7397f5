"""Render the SAF results block of ``docs/saf.md`` from the JSON files written by
``benchmarks/saf_vs_ottt.py`` and ``examples/saf_mnist.py`` (numbers are never typed by hand).

    python benchmarks/saf_report.py            # rewrites the block between the markers in docs/saf.md
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- saf-results:begin -->", "<!-- saf-results:end -->"
LABEL = {"saf-e": "SAF-E", "saf-f": "SAF-F", "saf-f-step": "SAF-F, graph-free steps one at a time", "ottt-o": "OTTT_O (neuroq)", "ottt-a": "OTTT_A (neuroq)",
         "sj-ottt-o": "OTTT_O (SpikingJelly 2.0.0)", "sj-ottt-a": "OTTT_A (SpikingJelly 2.0.0)",
         "bptt": "BPTT, VGG-11-BN (multi-step LIF)"}


def _f(v, fmt="{:.3f}"):
    return "–" if v is None else fmt.format(v)


def bench_block(path: Path) -> list[str]:
    if not path.exists():
        return [f"*(no benchmark result yet: run `python benchmarks/saf_vs_ottt.py` → `{path.name}`)*"]
    d = json.loads(path.read_text())
    m = d["machine"]
    gpu = str(d["device"]).startswith("cuda")
    where = m.get("gpu", "GPU") if gpu else f"{m['processor']}, {m['cpu_count']} cores, {d['threads']} torch thread(s)"
    lines = [f"**Speed and memory** (`{path.relative_to(ROOT)}`, config `{d['config']}`: VGG cfg {d['cfg']}, "
             f"T={d['T']}, batch {d['batch']}, input {d['input']}; {where}; torch {m['torch']}, "
             f"SpikingJelly {m['spikingjelly']}; load average {', '.join(f'{x:.1f}' for x in d['load_average'])}; "
             f"median of {d['reps']} interleaved minibatches).", ""]
    if gpu:
        lines += ["| method | time / minibatch (s) | peak GPU memory (GiB) | synaptic-op calls / step |",
                  "| --- | --- | --- | --- |"]
    else:
        lines += ["| method | time / minibatch (s) | peak live tensors (MiB) | peak autograd-saved (MiB) | "
                  "synaptic-op calls / step |", "| --- | --- | --- | --- | --- |"]
    for k, r in d["results"].items():
        if "skipped" in r or "error" in r:
            lines.append(f"| {LABEL.get(k, k)} | {r.get('skipped') or 'error'} | | |" + ("" if gpu else " |"))
            continue
        ops = r.get("synaptic_ops", {})
        per = ops.get("calls_per_step")
        per = _f(per, "{:.0f}") if per is not None else f"{ops.get('calls_per_minibatch')} per minibatch"
        if gpu:
            lines.append(f"| {LABEL.get(k, k)} | {_f(r.get('time_s'))} | {_f(r.get('gpu_peak_gib'), '{:.2f}')} | {per} |")
        else:
            lines.append(f"| {LABEL.get(k, k)} | {_f(r.get('time_s'))} | {_f(r.get('live_tensor_peak_mib'), '{:.1f}')} "
                         f"| {_f(r.get('autograd_saved_peak_mib'), '{:.1f}')} | {per} |")
    lines += ["", "Ratios (time; memory = " + ("peak GPU memory" if gpu else "peak live-tensor bytes") + "):", "",
              "| ratio | time | memory |", "| --- | --- | --- |"]
    for k, r in d["ratios"].items():
        lines.append(f"| {k} | {_f(r['time'], '{:.2f}')} | {_f(r['memory'], '{:.2f}')} |")
    ref = d["reference"]
    p, h = ref["paper_cifar10_gpu"], ref["issue_h100_random_data"]
    lines += ["", "For comparison (not measured here): the SAF paper reports on CIFAR-10, T=6 — SAF-E "
              f"{p['saf-e']['time_s']} s / {p['saf-e']['memory_gb']} GB vs OTTT_O {p['ottt-o']['time_s']} s / "
              f"{p['ottt-o']['memory_gb']} GB (0.70x time, 0.72x memory); SAF-F {p['saf-f']['time_s']} s / "
              f"{p['saf-f']['memory_gb']} GB vs OTTT_A {p['ottt-a']['time_s']} s / {p['ottt-a']['memory_gb']} GB. "
              f"The issue's H100 reference: SpikingJelly's OTTT_O {h['sj-ottt-o']['time_s']} s / "
              f"{h['sj-ottt-o']['memory_gib']} GiB, OTTT_A {h['sj-ottt-a']['time_s']} s / {h['sj-ottt-a']['memory_gib']} GiB, "
              f"BPTT VGG-11-BN {h['bptt']['time_s']} s / {h['bptt']['memory_gib']} GiB."]
    if d.get("targets_met"):
        lines += ["", "Targets: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in d["targets_met"].items())]
    elif d.get("targets_note"):
        lines += ["", f"Targets: {d['targets_note']}."]
    if d.get("cpu_targets"):
        lines += ["", "Issue 16's CPU targets, measured side by side in this run:", "",
                  "| target | measured | limit | met |", "| --- | --- | --- | --- |"]
        for k, t in d["cpu_targets"].items():
            lines.append(f"| {k} | {t['value']:.3f} | {t['limit']} | {'yes' if t['met'] else '**no**'} |")
    sweep = {T: v for T, v in (d.get("saf_f_memory_by_T") or {}).items() if "live_tensor_peak_mib" in v}
    if sweep:
        lines += ["", "SAF-F as the method runs it (graph-free steps one at a time), peak live tensors by T: "
                  + ", ".join(f"T={T}: {v['live_tensor_peak_mib']:.1f} MiB" for T, v in sweep.items()) + "."]
    return lines


def example_block(path: Path) -> list[str]:
    if not path.exists():
        return [f"*(no example result yet: run `python -m examples.saf_mnist` → `{path.name}`)*"]
    d = json.loads(path.read_text())
    m = d["machine"]
    lines = [f"**Accuracy** (`{path.relative_to(ROOT)}`: {d['dataset']}, {d['train_samples']} training / "
             f"{d['test_samples']} test images, {d['arch']} {d['hidden']}, T={d['T']}, {d['epochs']} epochs, batch "
             f"{d['batch_size']}, Adam lr {d['lr']}, same init and minibatches for every method; "
             f"{m['processor']}, torch {m['torch']}, SpikingJelly {m['spikingjelly']}).", "",
             "| method | test accuracy (%) | time / minibatch (s) | SAF→LIF prediction agreement |",
             "| --- | --- | --- | --- |"]
    for k, r in d["results"].items():
        agree = r.get("lif_conversion_prediction_agreement")
        lines.append(f"| {LABEL.get(k, k).replace(' (neuroq)', '')} | {100 * r['final_test_acc']:.2f} | "
                     f"{r['mean_time_per_minibatch_s']:.4f} | {'–' if agree is None else f'{100 * agree:.2f} %'} |")
    if "saf-e_minus_ottt-o_points" in d:
        lines += ["", f"SAF-E − OTTT_O: {d['saf-e_minus_ottt-o_points']:+.2f} points "
                  f"(target |diff| ≤ 0.5: {'met' if d['target_within_0.5_points'] else 'NOT met'}); "
                  f"SAF-E / OTTT_O time per minibatch: {d['saf-e/ottt-o_time_per_minibatch']:.2f}."]
    return lines


def render() -> str:
    res = ROOT / "benchmarks" / "results"
    blocks = []
    for p in sorted(res.glob("saf_vs_ottt_*.json")):
        blocks += bench_block(p) + [""]
    if not blocks:
        blocks += bench_block(res / "saf_vs_ottt_cpu.json") + [""]
    examples = sorted((ROOT / "examples" / "results").glob("saf_*mnist*.json"))
    for p in examples or [ROOT / "examples" / "results" / "saf_mnist.json"]:
        blocks += example_block(p) + [""]
    return "\n".join(blocks)


def main():
    doc = ROOT / "docs" / "saf.md"
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        print(f"{doc} has no {BEGIN} ... {END} block", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + BEGIN + "\n" + render() + "\n" + END + tail)
    print(f"updated {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
