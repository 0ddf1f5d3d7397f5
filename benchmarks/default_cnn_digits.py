"""Why the reference CNN did not train on 8x8 digits, and what fixed it: firing at initialisation and test
accuracy per epoch of ``neuroq train --method lif --arch cnn --dataset digits`` with the CNN as it was
(``spiking_cnn`` defaults: no BatchNorm on the hidden linear layer, conv BatchNorm scales starting at 1) and as
``neuroq.models.classifier`` builds it now (``fc_norm=True``, ``bn_gain=2``), same seed and data.

    python benchmarks/default_cnn_digits.py      # writes benchmarks/results/default_cnn_digits.json

docs/training.md quotes this file.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroq import viz  # noqa: E402
from neuroq.data import load_dataset  # noqa: E402
from neuroq.io import atomic_write_json, machine_info  # noqa: E402
from neuroq.models import feedforward  # noqa: E402
from neuroq.training import TrainConfig, fit, get  # noqa: E402

VARIANTS = {"before": dict(fc_norm=False, bn_gain=1.0), "now": dict(fc_norm=True, bn_gain=2.0)}


def run(variant: str, epochs: int, seed: int) -> dict:
    opts = VARIANTS[variant]
    original = feedforward.spiking_cnn

    def cnn(in_shape, num_classes, neuron, **kw):
        return original(in_shape, num_classes, neuron, **{**kw, **opts})

    feedforward.spiking_cnn = cnn  # the one place classifier() builds its CNN
    try:
        data = load_dataset("digits")
        torch.manual_seed(seed)
        method = get("lif", arch="cnn")
        method.bind(TrainConfig(seed=seed), data)
        net = method.build_model(data).train()
        with torch.no_grad():
            rec = viz.record(net, method.record_input(data.test.x[:256]))
        rates = {rec.labels.get(k, k): float(v.float().mean()) for k, v in rec.items()}
        _, metrics = fit(get("lif", arch="cnn"), data, TrainConfig(epochs=epochs, seed=seed), label=None)
    finally:
        feedforward.spiking_cnn = original
    return dict(options=opts, init_firing_rates_train_mode=rates,
                history=[dict(epoch=h["epoch"], train_loss=h["train_loss"], test_acc=h["test_acc"])
                         for h in metrics["history"]],
                final_test_acc=metrics["final_test_acc"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "default_cnn_digits.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = dict(benchmark="default_cnn_digits", command="neuroq train --method lif --arch cnn --dataset digits",
               epochs=a.epochs, seed=a.seed, variants={v: run(v, a.epochs, a.seed) for v in VARIANTS},
               machine=machine_info("cpu"))
    atomic_write_json(Path(a.out), out)
    for v, r in out["variants"].items():
        rates = ", ".join(f"{k} {100 * x:.1f} %" for k, x in r["init_firing_rates_train_mode"].items())
        accs = " ".join(f"{100 * h['test_acc']:.1f}" for h in r["history"])
        print(f"{v:6s} init firing: {rates}; test acc per epoch (%): {accs}")
    print(f"wrote {a.out}")
    return out


if __name__ == "__main__":
    main()
