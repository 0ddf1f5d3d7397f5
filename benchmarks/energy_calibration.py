"""Calibrate the ``loihi`` energy profile against a published hardware measurement.

Blouw, Choo, Hunsberger, Eliasmith, "Benchmarking keyword spotting efficiency on neuromorphic hardware"
(arXiv 1812.01739, NICE 2019) measured Loihi's *dynamic* energy at 0.27 mJ per inference (Table 1: 0.081 W
dynamic at 296 inferences/s) for a keyword spotter: a 390-dimensional input frame (26 MFCC features x 15
frames) through two fully connected 256-neuron hidden layers to a 29-dimensional output.  The paper reports
no firing rates; its companion nengo-loihi example runs 10 time steps of 1 ms per inference, and the
output is decoded off-chip.  The paper's scaling runs add N branches of 10 random 256-neuron layers: from
N = 1 to N = 10 (same throughput, ~114 inferences/s) the energy per inference rose by 154 uJ for 90 extra
layers (23,040 neurons, 5.9M synapses).

This script rebuilds the on-chip part (390 -> 256 -> 256, spiking at rate r in every layer, 10 steps),
meters it with neuroq's EnergyMeter under the ``loihi`` profile for a sweep of r, and sets the estimate
beside the measurement; it does the same for the scaling increment and solves for the rate that explains
it.  Writes ``benchmarks/results/energy_calibration.json``.

    python benchmarks/energy_calibration.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroq.energy import EnergyMeter, describe  # noqa: E402
from neuroq.io import atomic_write_json, machine_info  # noqa: E402
from neuroq.neuron import Neuron  # noqa: E402

MEASURED_J = 0.00027            # Table 1, Loihi, J per inference (dynamic)
INCREMENT_J = 0.836e-3 - 0.681e-3   # scaling runs: N = 10 minus N = 1 branches (mean of 3 runs each)
EXTRA_LAYERS = 90
T = 10


class RateNeuron(Neuron):
    """A neuron layer that emits Bernoulli spikes at a fixed rate and keeps a potential (so the meter sees
    one neuron update per neuron and step): stands in for a trained layer at a stated activity."""

    def __init__(self, rate: float, seed: int):
        super().__init__()
        self.rate, self.step_mode = rate, "m"
        self.gen = torch.Generator().manual_seed(seed)
        self.register_memory("v", 0.0)

    def forward(self, x):
        self.v = torch.zeros_like(x[0])
        return (torch.rand(x.shape, generator=self.gen) < self.rate).to(x.dtype)


def estimate(rate: float, sizes=(390, 256, 256), seed: int = 0) -> dict:
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b, bias=False), RateNeuron(rate, seed + i)]
    net = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(seed + 100)
    x = (torch.rand(T, 1, sizes[0], generator=g) < rate).float()
    with torch.no_grad(), EnergyMeter(net, energy="loihi") as meter:
        net(x)
    rep = meter.report()
    return dict(rate=rate, synops=int(sum(r["acs"] for r in meter.layers.values())),   # spike x synapse it meets
                neuron_updates=int(sum(r["updates"] for r in meter.neurons.values())), energy_pj=rep["total"]["energy_pj"])


def main():
    rows = []
    for r in (0.05, 0.1, 0.2, 1.0):
        e = estimate(r)
        e["measured_over_estimate"] = MEASURED_J * 1e12 / e["energy_pj"]
        rows.append(e)
        print(f"rate {r:4.2f}: {e['synops']:9.0f} synops, {e['neuron_updates']} neuron updates, "
              f"{e['energy_pj'] / 1e6:7.2f} uJ; measured 270 uJ is {e['measured_over_estimate']:.1f}x the estimate")
    # the scaling increment: 90 extra 256 -> 256 layers; energy per layer is linear in the rate
    a = estimate(0.0, sizes=(256, 256))["energy_pj"]          # neuron updates only
    b = estimate(1.0, sizes=(256, 256))["energy_pj"]
    per_layer_needed = INCREMENT_J * 1e12 / EXTRA_LAYERS
    rate_fit = (per_layer_needed - a) / (b - a)
    print(f"scaling increment: {INCREMENT_J * 1e6:.0f} uJ for {EXTRA_LAYERS} layers is explained at rate "
          f"{rate_fit:.3f} per neuron and step")
    out = dict(kind="neuroq-energy-calibration-1", profile=describe("loihi"), time_steps=T,
               measured=dict(source="Blouw et al. 2019, arXiv 1812.01739, Table 1 (Loihi dynamic energy)",
                             joules_per_inference=MEASURED_J,
                             scaling_increment_joules=INCREMENT_J, scaling_extra_layers=EXTRA_LAYERS,
                             scaling_source="abr/power_benchmarks logs, N = 1 and N = 10 branches, 3 runs each"),
               network="390 -> 256 -> 256 on chip (output decoded off chip), T = 10 steps, every layer at rate r",
               sweep=rows, scaling=dict(energy_per_layer_at_rate0_pj=a, energy_per_layer_at_rate1_pj=b,
                                        needed_per_layer_pj=per_layer_needed, rate_that_explains_it=rate_fit),
               machine=machine_info("cpu"))
    path = ROOT / "benchmarks" / "results" / "energy_calibration.json"
    atomic_write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
