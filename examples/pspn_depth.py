"""Deep pre-activation spiking ResNets: PSPN vs BatchNorm vs no normalization, depth 20/56/110.

For every (depth, norm) pair this trains :func:`neuroq.models.preact_resnet` (LIF neurons, tau 2,
decay_input=False, T direct-encoded steps, BPTT, Adam) on a real dataset and records:

* test accuracy after each epoch (the library loop, :class:`neuroq.training.Trainer`) and, as the final
  number, after re-estimating the running statistics of every normalization layer
  (:func:`neuroq.layer.norm.recalibrate`), and whether training diverged (a non-finite loss: the loop
  stops) or failed to learn (final test accuracy below 20 %, i.e. near chance);
* hidden firing rates per stage (``layer1``, ``layer2``, ``layer3``, ``head``) and per block, measured
  with :class:`neuroq.energy.EnergyMeter` on test images: at initialization (normalization with batch
  statistics) and after training (eval mode with running statistics, and with batch statistics);
* time per epoch and energy per inference.

Targets (issue 3): the 110-layer PSPN network within 2 points of its 20-layer version, and PSPN's
hidden firing rates bounded while the others' grow or die.

The CPU defaults are tiny (width 4, T = 2, 2,000 training images pooled to 14x14, 2 epochs) so the
nine runs finish on a shared laptop CPU; the full-size configuration needs a GPU::

    python -m examples.pspn_depth --data-dir DATA/fashion-mnist                 # CPU, small
    python -m examples.pspn_depth --device cuda --width 16 -T 4 --limit-train 60000 \\
        --epochs 30 --pool-input 1 --out examples/results/pspn_depth_gpu.json              # GPU

Results are written to the JSON after every run (``--out``), with the machine they came from.
"""
from __future__ import annotations

import argparse
import copy
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

import neuroq
from neuroq.data import ArrayDataset, batches, load_dataset
from neuroq.energy import EnergyMeter
from neuroq.io import atomic_write_json, machine_info, seed_everything
from neuroq.layer.norm import recalibrate
from neuroq.models import preact_resnet
from neuroq.neuron import LIFNode
from neuroq.training import TrainConfig, Trainer, evaluate, get

STAGES = ("layer1", "layer2", "layer3", "head")


@torch.no_grad()
def firing_report(model, x, bs=256, batch_stats=False) -> dict:
    """Hidden firing rates per stage and per block, and energy per inference, in eval mode (or, with
    ``batch_stats``, with the normalization layers using the batch's statistics, on a copy)."""
    if batch_stats:
        model = copy.deepcopy(model).train()
    else:
        model.eval()
    with EnergyMeter(model, batch_dim=0) as meter:
        for i in range(0, len(x), bs):
            neuroq.reset_net(model)
            model(x[i:i + bs])
    rep = meter.report()
    stage = OrderedDict((s, [0.0, 0]) for s in STAGES)
    blocks = OrderedDict()
    for name, r in rep["neurons"].items():
        s = name.split(".")[0]
        s = s if s in stage else "head"
        n = meter.neurons[name]["elements"]
        stage[s][0] += r["spikes"]
        stage[s][1] += n
        blk = ".".join(name.split(".")[:2]) if s != "head" else "head"
        b = blocks.setdefault(blk, [0.0, 0])
        b[0] += r["spikes"]
        b[1] += n
    neuroq.reset_net(model)
    return dict(stage_rates={k: (v[0] / v[1] if v[1] else None) for k, v in stage.items()},
                block_rates={k: v[0] / v[1] for k, v in blocks.items()},
                mean_rate=rep["total"]["firing_rate"],
                energy_pj_per_inference=rep["total"].get("energy_pj_per_sample"))


def run(depth, norm, ds, a, device) -> dict:
    """Train one (depth, norm) network with the library loop (LIF BPTT; it stops on a non-finite loss),
    then re-estimate the normalization statistics and measure firing rates (what the example adds)."""
    method = get("lif", T=a.T, tau=a.tau)
    seed_everything(a.seed)
    model = preact_resnet(depth, norm=norm, T=a.T, width=a.width, in_channels=ds.in_shape[0],
                          num_classes=ds.num_classes,
                          neuron=lambda: LIFNode(tau=a.tau, decay_input=False, detach_reset=True,
                                                 step_mode="m")).to(device)
    xr = ds.x_test[:a.rate_samples].to(device)
    init = firing_report(model, xr, batch_stats=True)
    cfg = TrainConfig(dataset=ds.name, val_fraction=0.0,
                      recalibrate_batches=a.recal_batches if a.curves else 0,  # 0: as the committed results
                      epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed,
                      schedule="onecycle" if a.onecycle else "constant", shuffle_seed_stride=1000, device=device)
    ckpt = None if a.runs is None else Path(a.runs) / f"{norm}-{depth}"
    tr = Trainer(method, ds, cfg, model=model, label=f"depth {depth:3d} {norm:5s} ", out=ckpt, resume=ckpt is not None)
    tr.fit()
    hist, diverged = tr.history, tr.diverged
    order = torch.arange(min(len(ds.train), a.recal_batches * a.batch_size))
    recalibrate(model, (xb.to(device) for xb, _ in batches(ds.train, order, a.batch_size)))
    final = firing_report(model, xr)
    final_batch = firing_report(model, xr, batch_stats=True)
    acc = evaluate(method, model, ds.test, device=device)
    hist[-1]["test_acc_recalibrated"] = acc
    return dict(depth=depth, norm=norm, final_test_acc=acc, diverged=diverged, failed_to_learn=acc < 0.2,
                train_time_per_epoch_s=sum(h["train_time_s"] for h in hist) / len(hist),
                params=sum(p.numel() for p in model.parameters()),
                rates_init=init, rates_final=final, rates_final_batch_stats=final_batch, history=hist)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (default: download with torchvision)")
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist"))
    p.add_argument("--depths", type=int, nargs="+", default=[20, 56, 110])
    p.add_argument("--norms", nargs="+", default=["pspn", "bn", "none"], choices=("pspn", "bn", "none"))
    p.add_argument("-T", type=int, default=2)
    p.add_argument("--tau", type=float, default=2.0)
    p.add_argument("--width", type=int, default=4, help="channels of the first stage (16 in He et al.)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit-train", type=int, default=2000)
    p.add_argument("--limit-test", type=int, default=2000)
    p.add_argument("--pool-input", type=int, default=2, help="average-pool the images by this factor (1: none)")
    p.add_argument("--rate-samples", type=int, default=256)
    p.add_argument("--recal-batches", type=int, default=20,
                   help="training batches used to re-estimate the running statistics after training")
    p.add_argument("-b", "--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--onecycle", action="store_true", help="one-cycle LR schedule (default: constant)")
    p.add_argument("--curves", action="store_true",
                   help="learning curves: every epoch's test accuracy after re-estimating the normalization "
                        "statistics on --recal-batches batches (the loop's recalibrate_batches; default: only the "
                        "final accuracy is re-estimated)")
    p.add_argument("--runs", default=None, help="checkpoint folder per run (one checkpoint per epoch; resumes)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/examples/pspn_depth.json",
                   help="result JSON (the committed results are examples/results/*.json)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset, a.data_dir, download=a.data_dir is None, limit_train=a.limit_train,
                      limit_test=a.limit_test)
    if a.pool_input > 1:
        ds.train = ArrayDataset(F.avg_pool2d(ds.x_train, a.pool_input), ds.y_train)
        ds.test = ArrayDataset(F.avg_pool2d(ds.x_test, a.pool_input), ds.y_test)
        ds.in_shape = tuple(ds.x_train.shape[1:])
    out = dict(example="pspn_depth", dataset=a.dataset, n_train=len(ds.x_train), n_test=len(ds.x_test),
               image_shape=list(ds.in_shape), config=vars(a), machine=machine_info(a.device), runs=[])
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    for norm in a.norms:  # PSPN first: its depth comparison is the main target
        for depth in a.depths:
            out["runs"].append(run(depth, norm, ds, a, a.device))
            out["targets"] = targets(out["runs"])
            atomic_write_json(path, out)
    for r in out["runs"]:
        rates = " ".join(f"{k}={v:.3f}" for k, v in r["rates_final"]["stage_rates"].items() if v is not None)
        print(f"depth {r['depth']:3d} {r['norm']:5s} acc {r['final_test_acc']:.4f} diverged={r['diverged']} "
              f"rates {rates}")
    print(out["targets"])
    return out


def targets(runs) -> dict:
    by = {(r["depth"], r["norm"]): r for r in runs}
    t = {}
    if (20, "pspn") in by and (110, "pspn") in by:
        gap = 100 * (by[(20, "pspn")]["final_test_acc"] - by[(110, "pspn")]["final_test_acc"])
        t.update(pspn_110_vs_20_gap_points=gap, gap_target_points=2.0, depth_met=bool(gap <= 2.0))
    ranges = {}
    for norm in ("pspn", "bn", "none"):
        rs = [v for r in runs if r["norm"] == norm
              for v in r["rates_final"]["block_rates"].values()]
        if rs:
            ranges[norm] = dict(min_block_rate=min(rs), max_block_rate=max(rs))
    t["final_block_rate_range"] = ranges
    return t


if __name__ == "__main__":
    main()
