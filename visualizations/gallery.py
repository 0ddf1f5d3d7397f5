"""Render neuroq's visualization gallery from real training runs.

    python visualizations/gallery.py                # trains what is missing, then renders
    python visualizations/gallery.py --no-train     # render from existing runs only
    python visualizations/gallery.py --formats png pdf svg   # vector copies for a paper or slides

The run shown is the one of ``neuroq train --method lif --dataset digits -T 4 --epochs 30
--out runs/gallery/demo``; a small sweep (LIF at T = 1, 2, 8, IF, the ReLU ANN and a convolutional LIF,
same options otherwise) gives the points of the accuracy-energy plot, the feature maps and the
convolutional raster. Every figure is written to ``--out`` by :func:`neuroq.viz.save` (PNG, and
PDF/SVG with ``--formats``; plus a GIF of the raster) and described in ``gallery.json`` with the
numbers it shows and the machine the runs were trained on. Energies are shown in nJ throughout
(figures and table).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

# `python visualizations/gallery.py` puts visualizations/ on sys.path, not the checkout: use this
# checkout's neuroq, not whichever one is installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from neuroq import viz  # noqa: E402
from neuroq.cli import main as cli  # noqa: E402
from neuroq.io import atomic_write_json, machine_info  # noqa: E402
from neuroq.training import load_run, meter_run  # noqa: E402
from neuroq.viz.save import FORMATS  # noqa: E402

DEMO = ["--method", "lif", "--dataset", "digits", "-T", "4", "--epochs", "30"]
# name -> options that differ from DEMO
SWEEP = {
    "lif-T1": ["-T", "1"],
    "lif-T2": ["-T", "2"],
    "lif-T8": ["-T", "8"],
    "if-T4": ["--method", "if"],
    "ann": ["--method", "ann"],
    "lif-cnn-T4": ["--arch", "cnn"],
}


def _opts(extra):
    opts = list(DEMO)
    for i in range(0, len(extra), 2):
        k, v = extra[i], extra[i + 1]
        if k in opts:
            opts[opts.index(k) + 1] = v
        else:
            opts += [k, v]
    if opts[opts.index("--method") + 1] == "ann":  # one step: -T does not apply
        i = opts.index("-T")
        del opts[i:i + 2]
    return opts


def ensure_run(out: Path, extra, train: bool) -> Path:
    if (out / "checkpoint.pt").is_file() and (out / "energy.json").is_file():
        return out
    if not train:
        raise SystemExit(f"{out} has no finished run; run without --no-train")
    print(f"training {out} ({' '.join(_opts(extra))})", flush=True)
    if cli(["train", *_opts(extra), "--out", str(out), "--quiet"]) != 0:
        raise SystemExit(f"training {out} failed")
    return out


def markdown_table(gallery: dict) -> str:
    """The runs of ``gallery.json`` as a Markdown table (pasted into docs/viz.md, never typed)."""
    front = set(gallery["pareto_front"])
    rows = ["| run | method | T | test acc | SOPs / sample | MACs / sample | energy / sample (nJ) | firing rate | Pareto |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in gallery["runs"]:
        fr = "–" if r["firing_rate"] is None else f"{r['firing_rate']:.3f}"
        rows.append(f"| {r['label']} | {r['method']} | {r['T']} | {r['accuracy']:.4f} | {r['sops']:,.0f} | "
                    f"{r['macs']:,.0f} | {r['energy_pj'] / 1000:.1f} | {fr} | {'yes' if r['label'] in front else ''} |")
    m = gallery["machine"]
    rows.append("")
    rows.append(f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}, "
                f"SpikingJelly {m['spikingjelly']} (from `visualizations/gallery.json`).")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--demo", default="runs/gallery/demo", help="folder of the demo run (trained if missing)")
    p.add_argument("--runs", default="runs/gallery", help="folder of the sweep runs (trained if missing)")
    p.add_argument("--out", default="visualizations", help="where the figures go")
    p.add_argument("--sample", type=int, default=0, help="test sample shown in raster/membrane/animation")
    p.add_argument("--dpi", type=int, default=150, help="resolution of the PNGs")
    p.add_argument("--formats", nargs="+", default=["png"], choices=FORMATS,
                   help="file formats of each figure (the GIF is always a GIF)")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--table", action="store_true", help="only print gallery.json's runs as a Markdown table")
    a = p.parse_args(argv)
    if a.table:
        print(markdown_table(json.loads((Path(a.out) / "gallery.json").read_text())))
        return
    torch.set_num_threads(a.threads)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = ensure_run(Path(a.demo), [], not a.no_train)
    sweep = {name: ensure_run(Path(a.runs) / name, extra, not a.no_train) for name, extra in SWEEP.items()}
    files = {}
    unit = "nJ"  # one unit for every energy in the gallery and its table

    def save(fig, name, what):
        for path in viz.save(fig, out / name, formats=a.formats, dpi=a.dpi):
            files[path.name] = what
            print(path)

    method, model, ds, args = load_run(demo / "checkpoint.pt")
    net = method.inference_network(model).eval()
    K = a.sample
    label = int(ds.y_test[K])
    one = method.record_input(ds.x_test[K:K + 1])
    rec = viz.record(net, one, v=True)
    tag = f"LIF MLP on digits (T={method.T}), test sample {K} (label {label})"

    save(viz.raster(rec, max_neurons=None, title=f"Spike raster: {tag}"),
         "raster.png", "spike raster of every hidden neuron for one test sample")
    batch = viz.record(net, method.record_input(ds.x_test))
    save(viz.firing_rates(batch, title=f"Firing rates over the {len(ds.x_test)} digits test samples (T={method.T})"),
         "rates.png", "per-layer histogram of neuron firing rates and rate heatmap over time (data colour scale)")
    # the T=8 run of the sweep gives longer traces than the T=4 demo
    lm, lmodel, lds, largs = load_run(sweep["lif-T8"] / "checkpoint.pt")
    lrec = viz.record(lm.inference_network(lmodel).eval(), lm.record_input(lds.x_test[K:K + 1]),
                      v=True)
    first = next(iter(lrec.v))
    ax = viz.membrane_trace(lrec, layer=first, max_traces=3,
                            title=f"Membrane potential, first hidden layer: LIF MLP (T={lm.T}), sample {K}")
    save(ax, "membrane.png", f"membrane potential before (H) and after (V) reset of neurons {ax.neurons} of "
                             f"{lrec.labels[first]} (lif-T8 run)")
    meter = meter_run(method, net, ds.test, samples=len(ds.x_test))
    rep = meter.report()
    save(viz.energy_bars(meter, unit=unit, title=f"Energy per sample by layer ({rep['samples']} test samples)"),
         "energy.png", "per-layer SOP/MAC energy of the demo network")
    fig = viz.animate_raster(rec, out / "raster.gif", max_neurons=64, fps=2, dpi=100,
                             title=f"Spikes step by step, sample {K} (the most active neurons, at most 64 per layer)")
    plt.close(fig)
    files["raster.gif"] = "animated raster, one frame per time step"

    cm, cmodel, cds, cargs = load_run(sweep["lif-cnn-T4"] / "checkpoint.pt")
    cnet = cm.inference_network(cmodel).eval()
    crec = viz.record(cnet, cm.record_input(cds.x_test[K:K + 1]))
    conv1 = next(k for k, v in crec.items() if v.dim() == 5)
    save(viz.feature_maps(crec, layer=conv1, sample=0,
                          title=f"Conv LIF on digits (T={cm.T}), test sample {K} (label {label})"),
         "feature_maps.png", "spike-rate maps of every channel of the first convolutional layer")
    save(viz.raster(crec, max_neurons=150, title=f"Spike raster of the conv LIF network (T={cm.T}), sample {K}"),
         "raster_cnn.png", "spike raster of the convolutional network: the most active neurons of each layer")

    runs = [demo, *sweep.values()]
    summaries = [viz.load_run_summary(r) for r in runs]
    for s, name in zip(summaries, ["lif-T4 (shown)", *sweep]):
        s["label"] = name
    ax = viz.accuracy_energy(summaries, unit=unit, title="Accuracy vs energy on digits (30 epochs each)")
    front_idx = ax.pareto
    save(ax, "accuracy_energy.png", "final test accuracy against energy per sample, Pareto front dashed")

    front = [summaries[i]["label"] for i in front_idx]
    atomic_write_json(out / "gallery.json", dict(
        demo=str(demo), sample=K, label=label, files=files, energy=rep,
        runs=summaries, pareto_front=front, machine=machine_info("cpu"),
        command=" ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])])))
    print(out / "gallery.json")
    print(markdown_table(json.loads((out / "gallery.json").read_text())))


if __name__ == "__main__":
    main()
