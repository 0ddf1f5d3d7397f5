"""Spectral pruning of recurrent networks on sequential MNIST: IRNN and spiking RNN, against baselines.

Furuya et al., "Spectral Pruning for Recurrent Neural Networks" (AISTATS 2022, arXiv 2105.10832):
remove hidden units of a trained RNN by choosing the subset J that best reconstructs all hidden
states from the time-mean covariance of the states, and absorb the reconstruction matrix A_J into the
weights that read the state (``neuroq.prune.spectral_prune``; docs/spectral_pruning.md).

For each network (``irnn``: ReLU RNN with identity-initialised recurrence, Le et al. 2015; ``srnn``: a
recurrent LIF network, spikes as the hidden state) and each seed the example

1. trains the base network with the library loop (``fit(get(net, ...), data, TrainConfig(...))``;
   checkpoints under ``--work`` so a stopped run resumes),
2. collects the hidden-state covariance once on ``--calib-samples`` training sequences
   (``collect_hidden_covariance``) and reports N̂(λ) = Tr[Σ̂(Σ̂+λI)⁻¹],
3. prunes to every ``--keep`` fraction with ``spectral`` (greedy selection + reconstruction),
   ``magnitude`` (largest outgoing-weight norm, plain deletion), ``random`` (plain deletion) and the
   ablation ``magnitude+rec`` (magnitude-chosen units with the spectral reconstruction),
4. evaluates each pruned network on the test set (and records how far its hidden states drift from
   the kept units' original ones over the steps, on the first calibration batch), then fine-tunes a copy briefly with the same loop
   (``fit(method, data_ft, TrainConfig(epochs=--finetune-epochs, lr=--finetune-lr), model=pruned)``)
   and evaluates again,

and writes one JSON (per-seed numbers, mean ± std over seeds, N̂(λ), parameter counts, the targets of
issue 13 evaluated) after every result, so an interrupted run continues where it stopped.

The sequence: ``--sequence rows`` (default on CPU: MNIST as 28 steps of 28-pixel rows) or ``pixels``
(14x14 average-pooled MNIST as 196 steps of one pixel; 784-step pixel MNIST, the paper's task, is
``--sequence pixels --pool 1``, for a GPU).  The choice is named in the JSON (``task``).

    python -m examples.spectral_pruning_mnist --data-dir DATA/mnist
    python -m examples.spectral_pruning_mnist --data-dir DATA/mnist --sequence pixels --device cuda --pool 1
    python -m visualizations.spectral_pruning       # -> visualizations/spectral_pruning.png
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from neuroq import reset_net
from neuroq.data import ArrayDataset, TaskData, load_dataset, register_dataset, sequential_mnist
from neuroq.io import atomic_write_json, machine_info
from neuroq.layer import Lowpass
from neuroq.prune import (
    collect_hidden_covariance, degrees_of_freedom, magnitude_prune, magnitude_reconstruct_prune, random_prune,
    spectral_prune,
)
from neuroq.prune.surgery import adapter_for
from neuroq.training import TrainConfig, evaluate, fit, get

#: the networks and their method options (``neuroq.training.methods.rnn``); --hidden overrides the width
NETS = {
    "irnn": dict(method="irnn", options=dict(readout="last", grad_clip=1.0), lr=1e-3),
    "srnn": dict(method="srnn", options=dict(readout="mean", tau=2.0, v_threshold=0.5), lr=2e-3),
}
PRUNERS = ("spectral", "magnitude", "random", "magnitude+rec")
#: ablations on request (--methods): ``spectral-rates`` selects and reconstructs from the covariance of the
#: hidden spike trains lowpass-filtered with the neuron's tau (firing rates) instead of the raw spikes
ABLATIONS = ("spectral-rates",)
FORMAT = "neuroq-spectral-pruning-1"


def load_task(a) -> TaskData:
    """The sequence task of ``--sequence``/``--pool`` (a registered dataset name, so TrainConfig records it)."""
    if a.sequence == "rows" and a.pool == 1:
        name = "smnist-rows"
    elif a.sequence == "pixels" and a.pool == 1:
        name = "smnist"
    else:   # register the pooled variant under the name sequential_mnist gives it (e.g. smnist-pool2)
        data = sequential_mnist(a.data_dir, a.data_dir is None, order=a.sequence, pool=a.pool)
        name = data.name
        register_dataset(name, lambda data_dir=None, download=True: data)
    return load_dataset(name, a.data_dir, download=a.data_dir is None, limit_train=a.limit_train,
                        limit_test=a.limit_test)


def subset(data: TaskData, idx: torch.Tensor) -> TaskData:
    """``data`` with the training split restricted to ``idx`` (fine-tuning data)."""
    x, y = data.train.take(idx)
    return TaskData(data.name, ArrayDataset(x, y), data.test, data.num_classes, data.in_shape, data.kind, data.meta)


def calibration(data: TaskData, n: int, seed: int, batch: int = 500) -> list:
    """``n`` training sequences (a seeded draw) as time-first batches ``[T, B, F]``."""
    idx = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(7919 + seed))[:n]
    x, _ = data.train.take(idx)
    return [x[i:i + batch].transpose(0, 1).contiguous() for i in range(0, len(x), batch)]


def prune(kind: str, model, keep: float, stats, a, seed: int):
    common = dict(stats=stats, lam=a.lam, theta=a.theta, z=a.z)
    if kind in ("spectral", "spectral-rates"):  # (the caller passes the rates' statistics for the latter)
        return spectral_prune(model, None, keep, selection=a.selection, **common)
    if kind == "magnitude":
        return magnitude_prune(model, keep, **common)
    if kind == "magnitude+rec":
        return magnitude_reconstruct_prune(model, None, keep, **common)
    if kind == "random":
        return random_prune(model, keep, seed=seed, **common)
    raise ValueError(kind)


@torch.no_grad()
def hidden_states(model, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The hidden states ``[T, N, m]`` the recurrent layer ``layer`` produces for ``x`` (its pruning adapter's hook)."""
    mod = model.get_submodule(layer) if layer else model
    out = []
    handles = adapter_for(mod).attach(mod, lambda k, h: out.append(h.detach()))
    try:
        model.eval()
        reset_net(model)
        model(x)
    finally:
        for h in handles:
            h.remove()
        reset_net(model)
    return out[-1]


def state_drift(model, pruned, report, x: torch.Tensor) -> dict:
    """How far the pruned layer's states drift from the kept units' original states, step by step:
    ``d_t = sum_n ||h♯_t - h_{t,J}|| / sum_n ||h_{t,J}||`` over the sequences ``x``; its mean over t and
    its value at the last step (the step the IRNN's readout reads)."""
    h = hidden_states(model, report.layer, x)[..., report.kept[0]].double()
    hp = hidden_states(pruned, report.layer, x).double()
    d = (hp - h).norm(dim=-1).sum(1) / h.norm(dim=-1).sum(1).clamp_min(1e-12)
    return dict(drift_mean=float(d.mean()), drift_last=float(d[-1]))


def mean_std(xs: list) -> dict:
    xs = [x for x in xs if x is not None]
    if not xs:
        return dict(mean=None, std=None, n=0)
    return dict(mean=statistics.fmean(xs), std=statistics.stdev(xs) if len(xs) > 1 else 0.0, n=len(xs))


def summarize(res: dict, a) -> dict:
    """mean ± std over seeds (sample std, n - 1) of every accuracy in ``res['runs']``."""
    out = {}
    for net, runs in res["runs"].items():
        seeds = [runs[s] for s in sorted(runs) if runs[s].get("base")]
        if not seeds:
            continue
        s = dict(base_acc=mean_std([r["base"]["test_acc"] for r in seeds]),
                 params=seeds[0]["base"]["params"], hidden=seeds[0]["base"]["hidden"],
                 dof=mean_std([r["calibration"]["dof"] for r in seeds if r.get("calibration")]),
                 dof_fraction=mean_std([r["calibration"]["dof"] / r["base"]["hidden"]
                                        for r in seeds if r.get("calibration")]),
                 prune={})
        for kind in a.methods:
            for keep in a.keep:
                key = f"{keep:g}"
                pairs = [(r, r.get("prune", {}).get(kind, {}).get(key)) for r in seeds]
                pairs = [(r, e) for r, e in pairs if e]
                if not pairs:
                    continue
                e0 = pairs[0][1]
                s["prune"].setdefault(kind, {})[key] = dict(
                    keep_units=e0["keep_units"], params=e0["params_after"], seeds=len(pairs),
                    acc=mean_std([e["acc"] for _, e in pairs]),
                    acc_finetuned=mean_std([e.get("acc_finetuned") for _, e in pairs]),
                    loss_input=mean_std([e["loss_input"] for _, e in pairs]),
                    drift_last=mean_std([e.get("drift_last") for _, e in pairs]),
                    drop_points=mean_std([100 * (r["base"]["test_acc"] - e["acc"]) for r, e in pairs]))
        out[net] = s
    return out


def targets(summary: dict, a) -> dict:
    """Issue 13's targets, evaluated on the means and (sample) stds over seeds.

    * ``within_1pt_at_50``: spectral pruning to 50 % without fine-tuning loses at most 1 point
      against the unpruned network (mean over seeds of the per-seed drop);
    * ``ahead_at_le_50``: at every kept fraction <= 50 %, spectral's mean accuracy exceeds magnitude's
      and random's by more than the sum of the two stds (the mean ± std bars do not overlap).
    """
    t = {}
    for net, s in summary.items():
        sp = s["prune"].get("spectral", {})
        entry = dict()
        if "0.5" in sp:
            drop = sp["0.5"]["drop_points"]["mean"]
            entry["within_1pt_at_50"] = dict(drop_points=drop, limit_points=1.0, met=bool(drop <= 1.0))
        for ft in (False, True):
            field = "acc_finetuned" if ft else "acc"
            rows, ok = [], True
            for keep in sorted((k for k in a.keep if k <= 0.5), reverse=True):
                key = f"{keep:g}"
                if key not in sp or sp[key][field]["mean"] is None:
                    continue
                row = dict(keep=keep, spectral=sp[key][field]["mean"])
                for base in ("magnitude", "random"):
                    b = s["prune"].get(base, {}).get(key)
                    if b is None or b[field]["mean"] is None:
                        continue
                    gap = sp[key][field]["mean"] - b[field]["mean"]
                    spread = sp[key][field]["std"] + b[field]["std"]
                    met = bool(gap > spread)
                    row[base] = dict(mean=b[field]["mean"], gap_points=100 * gap, spread_points=100 * spread, met=met)
                    ok = ok and met
                rows.append(row)
            if rows:
                entry["ahead_at_le_50" + ("_finetuned" if ft else "")] = dict(rows=rows, met=bool(ok))
        t[net] = entry
    return t


def write(res: dict, a) -> None:
    res["summary"] = summarize(res, a)
    res["targets"] = targets(res["summary"], a)
    res["wall_s"] = res.get("_wall_before", 0.0) + (time.time() - res["_t0"])
    atomic_write_json(Path(a.out), {k: v for k, v in res.items() if not k.startswith("_")})


def run_seed(net: str, seed: int, data: TaskData, ft_data: TaskData, res: dict, a) -> None:
    spec = NETS[net]
    method = get(spec["method"], hidden=(a.hidden,), **spec["options"])
    rec = res["runs"].setdefault(net, {}).setdefault(str(seed), {})
    cfg = TrainConfig(dataset=data.name, epochs=a.epochs, batch_size=a.batch_size, lr=spec["lr"], seed=seed,
                      val_fraction=0.0, device=a.device)  # every training sequence, as the committed results
    t0 = time.time()
    model, metrics = fit(method, data, cfg, out=str(Path(a.work) / f"{net}-seed{seed}"), resume=True,
                         label=f"{net} seed {seed} ")
    model.eval()
    if not rec.get("base"):
        rec["base"] = dict(test_acc=metrics["final_test_acc"], hidden=a.hidden,
                           params=sum(p.numel() for p in model.parameters()),
                           train_time_s=metrics["train_time_s"], history=metrics["history"],
                           method_config=metrics["method_config"], train=metrics["train"])
        write(res, a)
    t_cal = time.time()
    calib = calibration(data, a.calib_samples, seed)
    stats = collect_hidden_covariance(model, calib)
    sigma = stats[0].second_moment
    lam_abs = a.lam * float(torch.trace(sigma)) / sigma.shape[0]
    rec["calibration"] = dict(samples=a.calib_samples, states=stats[0].count, lam_relative=a.lam, lam=lam_abs,
                              dof=degrees_of_freedom(sigma, lam_abs),
                              dof_curve={f"{r:g}": degrees_of_freedom(sigma, r * float(torch.trace(sigma)) / sigma.shape[0])
                                         for r in (1e-4, 1e-3, 1e-2, 1e-1)},
                              eigenvalues=torch.linalg.eigvalsh(sigma).flip(0).tolist(),
                              time_s=time.time() - t_cal)
    rate_stats = None
    if any(k.endswith("-rates") for k in a.methods):  # the spike trains as firing rates: lowpass with the neuron's tau
        tau = float(spec["options"].get("tau", 2.0))
        rate_stats = collect_hidden_covariance(
            model, calib, transform=lambda h: Lowpass(tau, learn_tau=False, step_mode="m").to(h)(h))
        rec["calibration"]["rates"] = dict(tau=tau, dof=degrees_of_freedom(
            rate_stats[0].second_moment, a.lam * float(torch.trace(rate_stats[0].second_moment)) / sigma.shape[0]))
    pr = rec.setdefault("prune", {})
    for kind in a.methods:
        for keep in a.keep:
            key = f"{keep:g}"
            if key in pr.get(kind, {}) and (a.finetune_epochs == 0 or "acc_finetuned" in pr[kind][key]):
                continue
            t1 = time.time()
            pruned, rep = prune(kind, model, keep, rate_stats if kind.endswith("-rates") else stats, a, seed)
            acc = evaluate(method, pruned, data.test, device=a.device)
            e = dict(keep_units=rep.keep, params_after=rep.params_after, params_before=rep.params_before,
                     acc=acc, loss_input=rep.loss_input[0][-1], loss_output=rep.loss_output[0][-1],
                     loss_input_all=rep.loss_input[0][0], **state_drift(model, pruned, rep, calib[0]),
                     kept=rep.kept[0], prune_eval_s=time.time() - t1)
            if a.finetune_epochs > 0:
                t2 = time.time()
                ft_cfg = TrainConfig(dataset=data.name, epochs=a.finetune_epochs, batch_size=a.batch_size,
                                     lr=a.finetune_lr, schedule="constant", seed=seed, device=a.device)
                _, ft = fit(method, ft_data, ft_cfg, model=copy.deepcopy(pruned), label=None)
                e.update(acc_finetuned=ft["final_test_acc"], finetune_s=time.time() - t2)
            pr.setdefault(kind, {})[key] = e
            print(f"{net} seed {seed} {kind:13s} keep {keep:4.2f} ({rep.keep:3d} units): acc {acc:.4f}"
                  + (f"  fine-tuned {e['acc_finetuned']:.4f}" if "acc_finetuned" in e else ""), flush=True)
            write(res, a)
    rec["wall_s"] = rec.get("wall_s", 0.0) + time.time() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: download)")
    p.add_argument("--sequence", default="rows", choices=("rows", "pixels"),
                   help="rows: one image row per step; pixels: one pixel per step")
    p.add_argument("--pool", type=int, default=None, help="average-pool the images by this factor first "
                   "(default: 1 for rows = 28 steps, 2 for pixels = 196 steps)")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--hidden", type=int, default=256, help="hidden units of both networks")
    p.add_argument("--epochs", type=int, default=10, help="training epochs of the base networks")
    p.add_argument("-b", "--batch-size", type=int, default=128)
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--keep", nargs="+", type=float, default=[0.75, 0.5, 0.25, 0.1], help="kept fractions")
    p.add_argument("--methods", nargs="+", default=list(PRUNERS), choices=PRUNERS + ABLATIONS)
    p.add_argument("--calib-samples", type=int, default=2000, help="training sequences for the covariance")
    p.add_argument("--lam", type=float, default=1e-3, help="ridge lambda relative to Tr(Sigma)/m")
    p.add_argument("--theta", type=float, default=0.5, help="weight of the input loss L_A against L_B")
    p.add_argument("--z", default="both", choices=("both", "recurrent", "readout"), help="downstream weights of L_B")
    p.add_argument("--selection", default="greedy", choices=("greedy", "pivoted"))
    p.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs after pruning (0: none)")
    p.add_argument("--finetune-samples", type=int, default=10000, help="training sequences of the fine-tune")
    p.add_argument("--finetune-lr", type=float, default=1e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", default="runs/examples/spectral_pruning_mnist.json",
                   help="result JSON (the committed result is examples/results/spectral_pruning_mnist.json)")
    p.add_argument("--work", default=None, help="checkpoints of the base networks (default: next to --out)")
    a = p.parse_args(argv)
    if a.pool is None:
        a.pool = 2 if a.sequence == "pixels" else 1
    if a.work is None:
        a.work = str(Path(a.out).with_suffix("")) + "_work"
    torch.set_num_threads(a.threads)
    data = load_task(a)
    n_ft = min(a.finetune_samples, len(data.train))
    ft_data = subset(data, torch.randperm(len(data.train), generator=torch.Generator().manual_seed(4242))[:n_ft])
    config = {k: v for k, v in vars(a).items() if k not in ("out", "work", "threads", "data_dir", "device")}
    res = None
    if Path(a.out).exists():
        import json

        old = json.loads(Path(a.out).read_text())
        if old.get("format") == FORMAT and old.get("config") == config:
            res = old
            res["_wall_before"] = old.get("wall_s", 0.0)
            print(f"resuming {a.out}")
        else:
            raise SystemExit(f"{a.out} holds a run with another configuration; pass another --out")
    if res is None:
        res = dict(format=FORMAT, example="spectral_pruning_mnist", config=config, runs={})
    res["_t0"] = time.time()
    T, F = data.in_shape
    res["task"] = dict(dataset=data.name, sequence=a.sequence, pool=a.pool, steps=T, features=F,
                       n_train=len(data.train), n_test=len(data.test), n_finetune=n_ft,
                       description=(f"MNIST as {T} steps of {F} pixels "
                                    + ("(rows)" if a.sequence == "rows" else "(pixel by pixel)")
                                    + (f", images average-pooled by {a.pool}" if a.pool > 1 else "")))
    res["nets"] = {n: NETS[n] for n in a.nets}
    res["machine"] = machine_info(a.device)
    for net in a.nets:
        for seed in a.seeds:
            run_seed(net, seed, data, ft_data, res, a)
    write(res, a)
    for net, t in res["targets"].items():
        print(net, {k: v["met"] for k, v in t.items()})
    return res


if __name__ == "__main__":
    main()
