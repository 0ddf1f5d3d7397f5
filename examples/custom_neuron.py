"""Write your own neuron: an adaptive-threshold LIF, trained on scikit-learn's digits.

neuroq's :class:`~neuroq.neuron.BaseNode` asks a neuron with several states to name them and to
write one pure step; single- and multi-step modes, ``functional.reset_net``, a fused kernel
generated from the step, the energy meter and the raster plot then work unchanged (see
``docs/neurons.md``).

    python -m examples.custom_neuron --epochs 15 --out runs/custom_neuron
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch.nn as nn

from neuroq import viz
from neuroq.data import encode, load_dataset
from neuroq.io import atomic_write_json, machine_info, seed_everything
from neuroq.neuron import BaseNode
from neuroq.training import TrainConfig, evaluate, fit, get, meter_run


class AdaptiveLIFNode(BaseNode):
    r"""LIF neuron whose threshold rises after each spike and relaxes back.

    .. math::
        H[t] &= V[t-1] + (X[t] - V[t-1])/\tau \\
        S[t] &= \Theta(H[t] - V_{th} - \beta A[t-1]) \\
        A[t] &= \rho A[t-1] + S[t],\quad V[t] = H[t](1 - S[t])

    Two states, declared in ``states``: the membrane ``v`` (starts at ``v_reset``) and the
    adaptation ``a`` (starts at 0).  The base class registers both (``functional.reset_net`` clears
    them), passes them to the pure :meth:`step` and stores what it returns; there is no forward
    method here.

    Inputs: ``[N, ...]`` (``step_mode='s'``) or ``[T, N, ...]`` (``'m'``).  Outputs: spikes, same shape.
    """

    states = ("v", "a")

    def __init__(self, tau=2.0, beta=0.5, rho=0.8, **kw):
        super().__init__(**kw)
        self.tau, self.beta, self.rho = tau, beta, rho

    def step(self, x, v, a):
        """One step, pure: ``(x, v, a) -> (spike, v_next, a_next)``."""
        h = v + (x - v) / self.tau
        s = self.surrogate_function(h - self.v_threshold - self.beta * a)
        return s, self.neuronal_reset(h, s), self.rho * a + s


def build(hidden=128):
    neuron = lambda: AdaptiveLIFNode(step_mode="m")  # noqa: E731
    return nn.Sequential(nn.Flatten(2), nn.Linear(64, hidden), neuron(), nn.Linear(hidden, 10))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("-T", type=int, default=4)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/custom_neuron")
    args = p.parse_args(argv)
    ds = load_dataset("digits")
    method = get("lif", T=args.T)  # BPTT on T steps; the network below brings its own neuron
    cfg = TrainConfig(dataset="digits", epochs=args.epochs, lr=args.lr, seed=args.seed, schedule="constant",
                      device=args.device)
    seed_everything(args.seed)
    model, _ = fit(method, ds, cfg, model=build(), label=None)
    acc = evaluate(method, model, ds.test, device=args.device)
    meter = meter_run(method, model, ds.test, device=args.device, samples=len(ds.test))
    out = Path(args.out)
    rec = viz.record(model, encode(ds.x_test[:1].to(args.device), args.T))
    ax = viz.raster(rec, title="AdaptiveLIFNode on digits, test sample 0")
    out.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(out / "raster.png", dpi=100, bbox_inches="tight")
    result = dict(test_acc=acc, energy=meter.report()["total"], machine=machine_info(args.device))
    atomic_write_json(out / "result.json", result)
    print(f"test accuracy {acc:.4f}, energy {result['energy']['energy_pj_per_sample']:.0f} pJ/sample -> {out}")
    return result

if __name__ == "__main__":
    main()
