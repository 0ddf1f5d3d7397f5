"""Does energy-aware training still pay once memory is counted?  The synaptic penalty and the Lemaire model
penalty, each judged under every energy model.

A LIF MLP (T = 4, two hidden layers of 256, direct encoding) is trained on scikit-learn's digits (offline)
without a penalty and with

* the spiking synaptic penalty (``--penalty-kind synaptic``: fan-out-weighted spikes = SOPs), and
* the Lemaire model penalty (``--penalty-kind lemaire``: the pJ Lemaire et al.'s model charges the spikes,
  :class:`neuroq.energy.ModelPenalty`),

each at relative strengths ``alpha`` (``lambda = alpha / penalty(baseline)``: alpha = 1 makes the penalty as
large as one nat of cross-entropy at the baseline's activity), over several seeds.  Every trained network
is metered on the test set under ``compute``, ``simple``, ``lemaire`` and ``loihi``; the JSON records accuracy
and energy per model, and the saving against the baseline of the same seed.

    python -m examples.energy_penalty_models          # ~5 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from neuroq.data import load_dataset
from neuroq.io import atomic_write_json, machine_info
from neuroq.training import TrainConfig, fit, get
from neuroq.training.report import inference_model, meter_run

MODELS = "compute,simple,lemaire,loihi"
HIDDEN = (256, 256)
KINDS = {"synaptic": "compute", "lemaire": "lemaire"}   # penalty kind -> the model whose spike part it equals


def spike_part(rep: dict, model: str, scale: float = 1.0) -> float:
    """The energy of the synaptic layers fed spikes under ``model`` (what the penalty of that model measures)."""
    return sum(d["energy_pj_per_sample"] for k, d in rep["energy_models"][model]["layers"].items()
               if d["kind"] == "synapse" and rep["layers"].get(k, {}).get("input") == "spikes") / scale


def run(data, seed: int, epochs: int, kind: str = "synaptic", lam: float = 0.0, samples: int = 360) -> dict:
    method = get("lif", T=4, tau=2.0, hidden=HIDDEN)
    cfg = TrainConfig(dataset="digits", epochs=epochs, batch_size=64, seed=seed, energy_penalty=lam,
                      penalty_kind=kind)
    t0 = time.time()
    model, metrics = fit(method, data, cfg, label=None)
    net = inference_model(method, model)
    rep = meter_run(method, net, data.test, samples=samples, energy=MODELS).report()
    return dict(kind=kind if lam else "none", lam=lam, seed=seed, test_acc=metrics["final_test_acc"],
                energy_pj={m: r["total"]["energy_pj_per_sample"] for m, r in rep["energy_models"].items()},
                components_pj={m: r["total"]["components_pj_per_sample"] for m, r in rep["energy_models"].items()},
                penalty_base={"synaptic": rep["total"]["sops_per_sample"], "lemaire": spike_part(rep, "lemaire")},
                firing_rate=rep["total"]["firing_rate"], time_s=time.time() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--alphas", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    p.add_argument("--out", default="examples/results/energy_penalty_models.json")
    a = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_dataset("digits")
    runs = []
    for seed in range(a.seeds):
        base = run(data, seed, a.epochs)
        runs.append(base)
        for kind in KINDS:
            for alpha in a.alphas:
                r = run(data, seed, a.epochs, kind, alpha / base["penalty_base"][kind])
                r["alpha"] = alpha
                runs.append(r)
                print(f"seed {seed} {kind:>8} alpha {alpha:g}: acc {r['test_acc']:.4f} (base {base['test_acc']:.4f}), "
                      + ", ".join(f"{m} {r['energy_pj'][m] / base['energy_pj'][m] - 1:+.1%}" for m in r["energy_pj"]))
    models = list(runs[0]["energy_pj"])
    summary = []
    for kind in KINDS:
        for alpha in a.alphas:
            rs = [(r, next(b for b in runs if b["kind"] == "none" and b["seed"] == r["seed"]))
                  for r in runs if r["kind"] == kind and r.get("alpha") == alpha]
            summary.append(dict(
                kind=kind, alpha=alpha,
                acc_change_points=statistics.fmean(100 * (r["test_acc"] - b["test_acc"]) for r, b in rs),
                energy_change={m: statistics.fmean(r["energy_pj"][m] / b["energy_pj"][m] - 1 for r, b in rs)
                               for m in models}))
    net = "LIF MLP 64-" + "-".join(map(str, HIDDEN)) + "-10, T=4, tau 2"
    out = dict(example="energy_penalty_models", dataset="digits", network=net,
               epochs=a.epochs, seeds=a.seeds, alphas=a.alphas, models=models, runs=runs, summary=summary,
               machine=machine_info("cpu"))
    atomic_write_json(Path(a.out), out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
