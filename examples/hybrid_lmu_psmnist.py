"""The LMU and the hybrid-spiking LMU on psMNIST: accuracy, bits of activity, energy, time per epoch.

Two networks of the same size (order 256, theta = 784, 212 hidden units: keras-lmu's psMNIST example),
both with a hidden cell that has no recurrence of its own, h_t = f(W [m_t; x_t] + b), so training is
parallel over time (Chilkuri & Eliasmith, ICML 2021):

1. ``lmu`` (non-spiking, f = tanh): the linear readout reads h at the last step, so training needs only
   m_{T-1} = sum_s H_{T-1-s} u_s (one matrix product per batch, the last-step form).
2. ``hybrid-lmu`` (Voelker, Rasmussen, Eliasmith, arXiv 2002.03553): f = SpikingActivation(tanh, dt),
   h_t = n_t / dt with integer spike counts n_t, run at every step; the readout reads the counts of the
   last step (``--readout last``; ``--readout lowpass`` filters the spike trains instead).  It starts
   from the trained LMU's weights (the non-spiking end of the interpolation) and is trained while
   ``--dt-schedule`` moves dt towards spiking (one value per epoch, applied by the method's
   ``on_epoch``); the default ends at dt = 3, the largest dt whose counts (-3..3) fit 3 bits.

Both are trained by the library (:class:`neuroq.training.Trainer`, one checkpoint per epoch under
``--runs``; a stopped run resumes).  Then, for each: test accuracy (all test sequences), the
EnergyMeter over ``--meter-samples`` test sequences (energy per sequence, bits of activity, significant
bits), time per epoch (the training history), and the recurrent vs parallel form's time per training
batch, measured side by side (interleaved batches of the same model in both forms, per-batch median of
wall and CPU time) and scaled to an epoch.  One JSON (``--out``) holds everything, with the machine
and the targets of issue 12 evaluated::

    python -m examples.hybrid_lmu_psmnist --data-dir DATA/mnist \\
        --out examples/results/hybrid_lmu_psmnist.json
    python -m examples.hybrid_lmu_psmnist --render examples/results/hybrid_lmu_psmnist.json \\
        --write-doc docs/hybrid_lmu.md

Pilots (a short fine-tuning of the hybrid on the first ``--hybrid-train`` sequences, stored under
``pilots[KEY]`` of ``--out``) use ``--pilot KEY``; the LMU stage is shared with the full run (same
``--runs`` folder, so it is trained once).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from neuroq.data import batches, load_dataset
from neuroq.data.datasets import TaskData
from neuroq.io import atomic_write_json, machine_info
from neuroq.neuron import SpikingActivation
from neuroq.training import TrainConfig, Trainer, evaluate, get, meter_run, train_step
from neuroq.training.config import to_dict
from neuroq.training.methods import Context

#: issue 12's targets
TARGET_LMU_ACC = 0.96          # keras-lmu's psMNIST example
TARGET_GAP = 0.01              # hybrid within 1 point of the LMU
TARGET_BITS = 3.74             # "at most 3.74 bits on average" (the paper's abstract)
START, END = "<!-- hybrid-lmu-results:start -->", "<!-- hybrid-lmu-results:end -->"   # = markers("results")


# ---- configuration -----------------------------------------------------------------------------
def lmu_method(a):
    return get("lmu", hidden=(a.hidden,), order=a.order, theta=a.theta)


def hybrid_method(a):
    return get("hybrid-lmu", hidden=(a.hidden,), order=a.order, theta=a.theta, readout=a.readout,
               readout_tau=a.readout_tau if a.readout == "lowpass" else None, dt_schedule=a.dt_schedule,
               spiking_m=a.spiking_m, spiking_u=a.spiking_u, spike_seed=a.seed)


def train_config(a, epochs, lr, limit_train=None, limit_test=None, val_fraction=0.0):
    """The run's TrainConfig.  ``val_fraction`` is explicit: the results train on every training sequence
    (0, as the committed results did before the option existed); the LMU of validation pilots holds out
    ``--val-fraction`` (the Trainer's seeded split)."""
    return TrainConfig(dataset="psmnist", data_dir=a.data_dir, download=False, epochs=epochs, batch_size=a.batch_size,
                       lr=lr, seed=a.seed, device=a.device, limit_train=limit_train, limit_test=limit_test,
                       val_fraction=val_fraction)


def split_of(a) -> dict:
    """What the pilots of these options are trained and evaluated on (stored in the JSON as ``split``)."""
    if a.pilot is not None and a.val_fraction > 0:
        return dict(lmu_train=f"the training sequences minus a validation split of {a.val_fraction:g} "
                              f"(neuroq.training.loop.split_validation, seed {a.seed})",
                    pilot_train=f"the first {a.hybrid_train} sequences of the LMU's training split",
                    pilot_eval=f"the first {a.limit_test} sequences of the validation split", val_fraction=a.val_fraction,
                    seed=a.seed)
    return dict(lmu_train="every training sequence", pilot_train=f"the first {a.hybrid_train} training sequences",
                pilot_eval=f"the first {a.limit_test} test sequences", val_fraction=0.0, seed=a.seed)


def head(data: TaskData, n_train=None, n_test=None) -> TaskData:
    """``data`` with only the first ``n_train`` training and ``n_test`` test sequences."""
    return TaskData(data.name, data.train.head(n_train), data.test.head(n_test), data.num_classes, data.in_shape,
                    data.kind, data.meta)


def par_reps(a, model) -> int:
    """Parallel batches per timing round: many for the LMU's millisecond last-step form, else one."""
    return a.ratio_par_reps or (20 if model.lmu.last_step_ok else 1)


def init_from(hybrid: torch.nn.Module, lmu: torch.nn.Module) -> list:
    """Copy every LMU weight into the hybrid (same names and shapes); returns the hybrid's keys that
    kept their own value (the lowpass time constants and the activation's dt)."""
    res = hybrid.load_state_dict(lmu.state_dict(), strict=False)
    if res.unexpected_keys:
        raise RuntimeError(f"LMU weights without a place in the hybrid: {res.unexpected_keys}")
    return list(res.missing_keys)


# ---- measurements ------------------------------------------------------------------------------
def reseed(model, seed):
    """Deterministic spiking initial states for a measurement."""
    for k, m in enumerate(x for x in model.modules() if isinstance(x, SpikingActivation)):
        m.reseed(seed + k)


def measure(method, model, data, a) -> dict:
    """Test accuracy and the EnergyMeter's figures of a trained model (eval mode, its current dt)."""
    net = method.inference_network(model).to(a.device).eval()
    reseed(net, 12345)
    t0 = time.time()
    acc = evaluate(method, net, data.test, device=a.device, batch_size=a.eval_batch)
    eval_s = time.time() - t0
    reseed(net, 12345)
    meter = meter_run(method, net, data.test, device=a.device, samples=a.meter_samples, batch_size=a.eval_batch)
    rep = meter.report()
    tot = rep["total"]
    dts = sorted({m.dt for m in net.modules() if isinstance(m, SpikingActivation)})
    return dict(test_acc=acc, test_sequences=len(data.test), eval_time_s=eval_s, metered_sequences=rep["samples"],
                energy_pj_per_sequence=tot["energy_pj_per_sample"], sops_per_sequence=tot["sops_per_sample"],
                macs_per_sequence=tot["macs_per_sample"], bits_of_activity=tot.get("bits_of_activity"),
                significant_bits=tot.get("significant_bits"), dt=dts[0] if len(dts) == 1 else (dts or None),
                params=sum(p.numel() for p in model.parameters()),
                layers={k: dict(input=d["input"], sops_per_sequence=d["sops_per_sample"],
                                macs_per_sequence=d["macs_per_sample"],
                                energy_pj_per_sequence=d["energy_pj_per_sample"]) for k, d in rep["layers"].items()},
                activity=rep.get("activity"))


def time_forms(method, model, data, a, steps_per_epoch: int) -> dict:
    """Time training batches of ``model`` in the parallel (its own) and the recurrent form, interleaved:
    ``--ratio-rounds`` rounds of ``reps`` parallel batches and one recurrent batch, on copies of the model
    (the trained weights are not touched).  Per-batch medians of wall and CPU time; epoch = median x batches."""
    par = copy.deepcopy(model).to(a.device).train()
    rec = copy.deepcopy(model).to(a.device).train()
    rec.lmu.mode = "recurrent"
    par_form = "last-step" if par.lmu.last_step_ok else par.lmu.resolved_mode()
    opts = {id(par): torch.optim.Adam(par.parameters(), lr=1e-4), id(rec): torch.optim.Adam(rec.parameters(), lr=1e-4)}
    xb, yb = next(batches(data.train, torch.arange(a.batch_size), a.batch_size))
    xb, yb = xb.to(a.device), yb.to(a.device)
    ctx = Context()

    def one(m):
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        c0, t0 = time.process_time(), time.perf_counter()
        train_step(method, m, xb, yb, opts[id(m)], ctx)
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0

    one(par)
    one(rec)                                       # warm-up
    reps = par_reps(a, model)
    rows = {"parallel": [], "recurrent": []}
    for _ in range(a.ratio_rounds):
        for _ in range(reps):
            rows["parallel"].append(one(par))
        rows["recurrent"].append(one(rec))
    out = dict(parallel_form=par_form, recurrent_form="recurrent", batch_size=a.batch_size,
               batches_per_epoch=steps_per_epoch, rounds=a.ratio_rounds, parallel_batches_per_round=reps,
               load_avg_1min=os.getloadavg()[0])
    for k, v in rows.items():
        wall = statistics.median(t for t, _ in v)
        cpu = statistics.median(c for _, c in v)
        out[k] = dict(batch_wall_s=wall, batch_cpu_s=cpu, epoch_wall_s=wall * steps_per_epoch,
                      epoch_cpu_s=cpu * steps_per_epoch, batches=len(v))
    out["ratio_wall"] = out["recurrent"]["batch_wall_s"] / out["parallel"]["batch_wall_s"]
    out["ratio_cpu"] = out["recurrent"]["batch_cpu_s"] / out["parallel"]["batch_cpu_s"]
    return out


def epoch_times(history) -> dict:
    tr = [h["train_time_s"] for h in history]
    return dict(epochs=len(history), train_time_s_per_epoch=tr, mean_train_time_s_per_epoch=sum(tr) / len(tr) if tr else None,
                test_acc_per_epoch=[h["test_acc"] for h in history])


def hybrid_keys(results: dict) -> list:
    """The hybrid runs of a result dict: ``hybrid`` (the main one) and any ``hybrid-*`` variant."""
    return [k for k in results if k == "hybrid" or k.startswith("hybrid-")]


def targets(results: dict) -> dict:
    """Issue 12's targets, evaluated for the LMU and every hybrid run (``_<variant>`` suffixes)."""
    t = {}
    lmu = results.get("lmu")
    if lmu:
        t["lmu_test_acc_at_least_96"] = dict(target=TARGET_LMU_ACC, value=lmu["test_acc"],
                                              met=lmu["test_acc"] >= TARGET_LMU_ACC)
    for key in hybrid_keys(results):
        hyb, sfx = results[key], key[len("hybrid"):].replace("-", "_")
        if lmu:
            gap = lmu["test_acc"] - hyb["test_acc"]
            t["hybrid_within_1_point" + sfx] = dict(target=TARGET_GAP, value=gap, met=gap <= TARGET_GAP, run=key)
        b = hyb["bits_of_activity"]
        t["hybrid_bits_at_most_3_74" + sfx] = dict(target=TARGET_BITS, value=b, met=b is not None and b <= TARGET_BITS,
                                                 run=key)
    return t


def describe(cfg: dict) -> str:
    """What spikes in a hybrid run, from its method config."""
    parts = ["h"] + (["u"] if cfg.get("spiking_u") else []) + (["m"] if cfg.get("spiking_m") else [])
    return f"{', '.join(parts)} spiking, readout {cfg.get('readout')}"


# ---- the markdown tables (docs/hybrid_lmu.md is written from the JSON) -------------------------
def _pct(x):
    return "–" if x is None else f"{100 * x:.2f} %"


def _num(x, fmt="{:.2f}"):
    return "–" if x is None else fmt.format(x)


def render_markdown(doc: dict) -> str:
    lines = []
    res, cfg = doc.get("results", {}), doc.get("config", {})
    m = doc.get("machine", {})
    mach = (m.get("gpu") or f"CPU ({m.get('cpu_count')} cores, {m.get('torch_threads')} torch thread(s))") + \
        f", torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}"
    if res:
        lines += [f"Full psMNIST ({doc.get('n_train')} training / {doc.get('n_test')} test sequences, permutation seed "
                  f"{doc.get('permutation_seed')}), measured on {mach}; generated from `{doc.get('path', 'the JSON')}`.",
                  "",
                  "| model | epochs | test acc | dt (end) | mean bits of activity | significant bits | energy / sequence "
                  "| SOPs / sequence | MACs / sequence | train time / epoch (parallel form) | recurrent / parallel time per batch (CPU) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        rows = [("lmu", "LMU (non-spiking)")] + [
            (k, f"hybrid LMU ({describe(cfg.get(k, {}))}; end of schedule)") for k in hybrid_keys(res)]
        for key, name in rows:
            r = res.get(key)
            if not r:
                continue
            tf = r.get("timing", {})
            ratio = tf.get("ratio_cpu")
            lines.append(
                f"| {name} | {r['epochs']['epochs']} | {_pct(r['test_acc'])} | {_num(r['dt'], '{:g}')} "
                f"| {_num(r['bits_of_activity'])} | {_num(r['significant_bits'])} "
                f"| {r['energy_pj_per_sequence'] / 1e6:.1f} µJ | {r['sops_per_sequence']:.3g} | {r['macs_per_sequence']:.3g} "
                f"| {r['epochs']['mean_train_time_s_per_epoch']:.0f} s | "
                f"{_num(ratio, '{:.1f}×')} ({tf.get('parallel_form', '')}: {tf.get('parallel', {}).get('batch_cpu_s', 0):.3g} s, "
                f"recurrent: {tf.get('recurrent', {}).get('batch_cpu_s', 0):.3g} s) |")
        lines += ["", "Targets (issue 12):", "", "| target | value | met |", "|---|---:|---|"]
        names = dict(lmu_test_acc_at_least_96="non-spiking LMU test accuracy ≥ 96 %",
                     hybrid_within_1_point="hybrid LMU within 1 point of the LMU (LMU − hybrid ≤ 1 point)",
                     hybrid_bits_at_most_3_74="hybrid LMU mean bits of activity ≤ 3.74")
        for k, t in doc.get("targets", {}).items():
            v = t["value"]
            base = next((b for b in names if k.startswith(b)), k)
            run = f" — `{t['run']}` ({describe(cfg.get(t['run'], {}))})" if "run" in t else ""
            val = (f"{100 * v:.2f} points" if base == "hybrid_within_1_point" else
                   _pct(v) if base.startswith("lmu_test") else _num(v))
            lines.append(f"| {names.get(base, k)}{run} | {val} | {'**met**' if t['met'] else '**not met**'} |")

        def accs(key):
            return [round(100 * x, 2) for x in res.get(key, {}).get("epochs", {}).get("test_acc_per_epoch", [])
                    if x is not None]

        lines += ["", f"Test accuracy per epoch (from the training history, random initial states): LMU {accs('lmu')}."]
        for k in hybrid_keys(res):
            lines.append(f"`{k}`: schedule `{cfg.get(k, {}).get('dt_schedule')}`, dt per epoch "
                         f"{res[k].get('dt_per_epoch')}, test accuracy per epoch {accs(k)}, started from "
                         f"{'the trained LMU' if res[k].get('init') == 'lmu' else 'scratch'}.")
    pil = doc.get("pilots", {})
    if pil:
        ref = doc.get("lmu_reference")
        split = doc.get("split") or dict(lmu_train="every training sequence", pilot_train="the first training sequences",
                                         pilot_eval="the first test sequences")
        where = "validation" if split.get("val_fraction") else "test"
        lines += ["", f"Pilot runs (the LMU trained on {split['lmu_train']}; the hybrid fine-tuned from it on "
                      f"{split['pilot_train']} for the epochs shown, evaluated on {split['pilot_eval']}; "
                      "**pilots, not results**)"
                  + (f". The trained LMU scores {_pct(ref['test_acc'])} on the same {ref['test_sequences']} {where} "
                     "sequences" if ref else "") + ":", "",
                  f"| pilot | hybrid options | train seq. × epochs | {where} seq. | {where} acc before fine-tuning "
                  f"| {where} acc after | mean bits | significant bits | energy / sequence | train time / batch |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k, p in pil.items():
            h = p["hybrid"]
            opts = p["options"]
            desc = (f"readout {opts['readout']}" + (f" (tau {opts['readout_tau']:g})" if opts['readout'] == 'lowpass' else "")
                    + f", dt `{opts['dt_schedule']}`" + (", spiking m" if opts.get("spiking_m") else "")
                    + (", spiking u" if opts.get("spiking_u") else ""))
            per_batch = p.get("train_time_s_per_batch")
            lines.append(f"| {k} | {desc} | {p['n_train']} × {p['epochs']} | {h['test_sequences']} "
                         f"| {_pct(p.get('test_acc_before'))} | {_pct(h['test_acc'])} | {_num(h['bits_of_activity'])} "
                         f"| {_num(h['significant_bits'])} | {h['energy_pj_per_sequence'] / 1e6:.1f} µJ "
                         f"| {_num(per_batch, '{:.2f} s')} |")
    return "\n".join(lines)


def markers(block: str) -> tuple:
    """The comment lines around a generated block of the docs page (``results`` or ``pilots``)."""
    return f"<!-- hybrid-lmu-{block}:start -->", f"<!-- hybrid-lmu-{block}:end -->"


def write_doc(path: Path, md: str, block: str = "results") -> None:
    start, end = markers(block)
    text = path.read_text()
    i, j = text.index(start) + len(start), text.index(end)
    path.write_text(text[:i] + "\n" + md + "\n" + text[j:])


# ---- main ----------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--order", type=int, default=256)
    p.add_argument("--theta", type=float, default=784.0)
    p.add_argument("--hidden", type=int, default=212)
    p.add_argument("--lmu-epochs", type=int, default=15)
    p.add_argument("--lmu-lr", type=float, default=1e-3)
    p.add_argument("--hybrid-epochs", type=int, default=3)
    p.add_argument("--hybrid-lr", type=float, default=3e-4)
    p.add_argument("--dt-schedule", default="geometric:30:3:2",
                   help="the hybrid's SpikingSchedule spec kind:start_dt:end_dt:epochs[:warmup]")
    p.add_argument("--readout", default="last", choices=("last", "lowpass"),
                   help="the hybrid's readout: spike counts of the last step, or a lowpass of the spike trains")
    p.add_argument("--readout-tau", type=float, default=20.0)
    p.add_argument("--spiking-m", action="store_true")
    p.add_argument("--spiking-u", action="store_true")
    p.add_argument("--init", default="lmu", choices=("lmu", "scratch"),
                   help="start the hybrid from the trained LMU's weights (default) or from scratch")
    p.add_argument("--hybrid-train", type=int, default=None, help="train the hybrid on the first N sequences only")
    p.add_argument("--limit-test", type=int, default=None, help="evaluate on the first N test sequences only")
    p.add_argument("-b", "--batch-size", type=int, default=100)
    p.add_argument("--eval-batch", type=int, default=250)
    p.add_argument("--meter-samples", type=int, default=10000, help="test sequences the EnergyMeter sees")
    p.add_argument("--ratio-rounds", type=int, default=3, help="rounds of the recurrent-vs-parallel timing (0: skip)")
    p.add_argument("--ratio-par-reps", type=int, default=None,
                   help="parallel batches per round (default: 20 for the LMU's last-step form, 1 otherwise)")
    p.add_argument("--pilot", default=None, metavar="KEY", help="a pilot: store the hybrid under pilots[KEY] of --out")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="pilots: the LMU holds out this fraction of the training sequences and the pilots are evaluated "
                        "on it, never on the test set (0: the first --limit-test test sequences, as the first pilots)")
    p.add_argument("--key", default="hybrid",
                   help="store the hybrid under results[KEY] (hybrid, or hybrid-<variant> for another configuration)")
    p.add_argument("--only", default="all", choices=("all", "lmu", "hybrid"), help="which stage(s) to run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--runs", default="runs/examples/hybrid_lmu_psmnist", help="checkpoint folders of the runs")
    p.add_argument("--out", default="runs/examples/hybrid_lmu_psmnist.json",
                   help="result JSON (the committed results are examples/results/hybrid_lmu_psmnist*.json)")
    p.add_argument("--render", default=None, metavar="JSON", help="only print the markdown tables of this JSON")
    p.add_argument("--write-doc", default=None, metavar="MD",
                   help="with --render: replace the text between the hybrid-lmu-results markers of this file "
                        "(hybrid-lmu-pilots for a JSON holding only pilots, hybrid-lmu-pilots-val for pilots on a "
                        "validation split)")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    if a.render:
        doc = json.loads(Path(a.render).read_text())
        doc.setdefault("path", a.render)
        md = render_markdown(doc)
        if a.write_doc:
            block = "results" if doc.get("results") else (
                "pilots-val" if doc.get("split", {}).get("val_fraction") else "pilots")
            write_doc(Path(a.write_doc), md, block)
        print(md)
        return None
    if not (a.key == "hybrid" or a.key.startswith("hybrid-")):
        raise SystemExit(f"--key must be 'hybrid' or 'hybrid-<variant>', got {a.key!r}")
    torch.set_num_threads(a.threads)
    data = load_dataset("psmnist", a.data_dir, download=a.data_dir is None)
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    runs = Path(a.runs)
    mine: dict = {}          # the entries this process wrote (kept when save() merges with the file)

    def put(part, key, value):
        doc.setdefault(part, {})[key] = value
        mine.setdefault(part, {})[key] = value

    def save():
        if out.exists():   # merge: another run (e.g. a hybrid variant) may have written its keys meanwhile
            disk = json.loads(out.read_text())
            for part in ("results", "config", "pilots"):
                if part in disk or part in doc:
                    doc[part] = {**disk.get(part, {}), **mine.get(part, {})}
        doc.update(example="hybrid_lmu_psmnist", dataset=data.name, n_train=len(data.train), n_test=len(data.test),
                   permutation_seed=data.meta.get("permutation_seed"), machine=machine_info(a.device))
        if "results" in doc:
            doc["targets"] = targets(doc["results"])
        atomic_write_json(out, doc)

    # 1. the non-spiking LMU (trained once; every later call resumes its finished checkpoint)
    lmu = lmu_method(a)
    validating = a.pilot is not None and a.val_fraction > 0
    cfg_lmu = train_config(a, a.lmu_epochs, a.lmu_lr, val_fraction=a.val_fraction if validating else 0.0)
    tr = Trainer(lmu, data, cfg_lmu, out=runs / (f"lmu-val{a.val_fraction:g}" if validating else "lmu"), resume=True,
                 label="lmu ")
    tr.fit()
    lmu_model = tr.model
    if validating:  # pilots never see the test set: trained on the LMU's training split, evaluated on its validation
        data = TaskData(data.name, tr.train_set, tr.val_set, data.num_classes, data.in_shape, data.kind, data.meta)
    if a.pilot is None and a.only in ("all", "lmu"):
        r = measure(lmu, lmu_model, data, a)
        r["epochs"] = epoch_times(tr.history)
        if a.ratio_rounds:
            r["timing"] = time_forms(lmu, lmu_model, data, a, tr.steps_per_epoch)
        r["train"] = to_dict(cfg_lmu)
        put("results", "lmu", r)
        put("config", "lmu", to_dict(lmu.config))
        save()
        print(json.dumps({k: v for k, v in r.items() if k not in ("layers", "activity")}, indent=1), flush=True)
    if a.only == "lmu":
        return doc

    # 2. the hybrid LMU, from the LMU's weights, with the dt schedule
    hyb = hybrid_method(a)
    hdata = head(data, a.hybrid_train, a.limit_test)
    cfg_h = train_config(a, a.hybrid_epochs, a.hybrid_lr, a.hybrid_train, a.limit_test)
    hdir = runs / (a.key if a.pilot is None else f"pilot-{a.pilot}")
    torch.manual_seed(a.seed)
    model = hyb.build_model(hdata)
    kept = init_from(model, lmu_model) if a.init == "lmu" else None
    before = None
    if a.pilot is not None and not (hdir / "checkpoint.pt").exists():
        hyb.on_epoch(model, 0)
        before = measure(hyb, model, hdata, dict_args(a, meter_samples=1))["test_acc"]
    tr_h = Trainer(hyb, hdata, cfg_h, model=model, out=hdir, resume=True, label="hybrid ")
    tr_h.fit()
    r = measure(hyb, tr_h.model, hdata, a)
    r["epochs"] = epoch_times(tr_h.history)
    r["dt_per_epoch"] = [hyb.dt_at(e) for e in range(len(tr_h.history))]
    r["init"] = a.init
    r["init_kept_keys"] = kept
    r["train"] = to_dict(cfg_h)
    if a.pilot is not None:
        doc["lmu_reference"] = dict(test_sequences=len(hdata.test), test_acc=evaluate(
            lmu, lmu_model.eval(), hdata.test, device=a.device, batch_size=a.eval_batch))
        steps = sum(math.ceil(len(hdata.train) / a.batch_size) for _ in tr_h.history)
        prev = doc.get("pilots", {}).get(a.pilot, {})
        doc["split"] = split_of(a)
        put("pilots", a.pilot, dict(
            options=dict(readout=a.readout, readout_tau=a.readout_tau, dt_schedule=a.dt_schedule,
                         spiking_m=a.spiking_m, spiking_u=a.spiking_u, init=a.init, lr=a.hybrid_lr),
            n_train=len(hdata.train), epochs=len(tr_h.history),
            test_acc_before=before if before is not None else prev.get("test_acc_before"),
            train_time_s_per_batch=r["epochs"]["mean_train_time_s_per_epoch"] * len(tr_h.history) / max(1, steps),
            hybrid=r, config=to_dict(hyb.config)))
    else:
        if a.ratio_rounds:
            r["timing"] = time_forms(hyb, tr_h.model, hdata, a, tr_h.steps_per_epoch)
        put("results", a.key, r)
        put("config", a.key, to_dict(hyb.config))
    save()
    print(json.dumps({k: v for k, v in r.items() if k not in ("layers", "activity")}, indent=1), flush=True)
    return doc


def dict_args(a, **kw):
    b = copy.copy(a)
    for k, v in kw.items():
        setattr(b, k, v)
    return b


if __name__ == "__main__":
    main()
