r"""MaQD on Fashion-MNIST (Sawada, Saiin, Suetake, arXiv 2403.14999): quantization-aware training with
weight standardization, scaled round-clip quantizers and Layer-Batch Normalization.

Two experiments on a small single-step CNN (:func:`neuroq.models.maqd_cnn`:
``[QuantConv3x3 -> Norm -> QuantAct -> MaxPool] x 2 -> QuantLinear``):

1. ``states``: full precision vs (M_w, M_a) in {(3,3), (3,2), (5,5), (16,16)} (LBN, batch 128);
   every quantized model is exported to integers and checked against its fake-quantized outputs.
2. ``norm``: LBN (reading a) vs BatchNorm at batch sizes 1, 8, 128 (same epochs and learning rate).

Targets of the issue: (3,2) within 2 points of FP; (16,16) within 0.5 points; LBN at batch 8 within
1 point of its batch-128 accuracy while BatchNorm degrades.  The script writes every number to one
JSON file (with the machine it ran on) and states which targets were met.

    python -m examples.maqd_fashion_mnist --data-dir DATA/fashion-mnist \
        --limit-train 10000 --epochs 5 --out examples/results/maqd_fashion_mnist.json

Small defaults; one thread (``--threads``).  ``--part states|norm|all`` and ``--only`` select runs;
results are merged into an existing ``--out`` file so parts can run separately.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from neuroq import quant as Q
from neuroq.data import load_dataset
from neuroq.io import atomic_write_json, machine_info, seed_everything
from neuroq.training import TrainConfig, Trainer, get, meter_run

STATES = [("fp", None, None), ("w3a3", 3, 3), ("w3a2", 3, 2), ("w5a5", 5, 5), ("w16a16", 16, 16)]
#: ablations (run with --only KEY): (key, M_w, M_a, first/last-layer states, activation surrogate)
ABLATIONS = [("w3a2_edge16", 3, 2, 16, "ste"), ("w3a2_sigmoid", 3, 2, "same", "sigmoid"),
             ("w3a2_s2nn", 3, 2, "same", "s2nn"), ("w3a2_s2nnpub", 3, 2, "same", "s2nn-published")]
NORM_BATCHES = (1, 8, 128)


def train_one(ds, w_states, a_states, norm, batch_size, a, device, edge="same", surrogate="ste") -> dict:
    """One MaQD run with the library loop (cosine schedule over minibatches, one shuffling stream), then
    its energy and the integer-export check (what the example adds)."""
    method = get("maqd", arch="cnn", w_states=w_states, a_states=a_states, channels=tuple(a.channels), norm=norm,
                 edge_w_states=edge, surrogate=surrogate)
    cfg = TrainConfig(dataset=ds.name, val_fraction=0.0, recalibrate_batches=0,  # as the committed results
                      epochs=a.epochs, batch_size=batch_size, lr=a.lr, seed=a.seed,
                      schedule="cosine-step", shuffle="stream", eval_every=1 if a.eval_every else 0, device=device)
    t0 = time.time()
    tr = Trainer(method, ds, cfg, label=f"  [{norm} bs={batch_size} w={w_states} a={a_states}] ")
    tr.fit()
    model, hist = tr.model, tr.history
    rec = dict(w_states=w_states, a_states=a_states, edge_w_states=edge, surrogate=surrogate, norm=norm,
               batch_size=batch_size, epochs=a.epochs, limit_train=len(ds.x_train),
               test_acc=hist[-1]["test_acc"], train_time_s=time.time() - t0, history=hist)
    model.eval()
    tot = meter_run(method, model, ds.test, device=device, samples=512, batch_size=512).report()["total"]
    rec["energy"] = dict(sops_per_sample=tot.get("sops_per_sample"), macs_per_sample=tot.get("macs_per_sample"),
                         energy_pj_per_sample=tot.get("energy_pj_per_sample"), firing_rate=tot.get("firing_rate"))
    xs = ds.x_test[:512].to(device)[None]
    if w_states is not None and a_states is not None:
        chk = Q.check_export(model, xs)
        rec["export_check"] = dict(ok=chk["ok"], max_abs_diff=chk["max_abs_diff"],
                                   argmax_agreement=chk["argmax_agreement"],
                                   integer_inputs=chk["integer_inputs"], samples=int(xs.shape[1]))
        with torch.no_grad():
            ex = Q.export(model)
            model_d = model.double()
            chk64 = Q.check_export(model_d, xs.double(), atol=1e-9, rtol=1e-9)
            model.float()
        rec["export_check_float64"] = dict(ok=chk64["ok"], max_abs_diff=chk64["max_abs_diff"],
                                           argmax_agreement=chk64["argmax_agreement"])
        rec["distinct_int_weights"] = {k: int(torch.unique(v["int_weight"]).numel()) for k, v in ex.items()}
    return rec


@torch.no_grad()
def lbn_batch_dependence(ds, a) -> dict:
    """Max |output of a sample alone - its output inside a batch of 64| for LBN (a), LBN (b) and
    BatchNorm2d applied to the first (random-init) conv's output on 64 test images, train and eval mode."""
    from neuroq.layer import LayerBatchNorm2d, QuantConv2d

    seed_everything(a.seed)
    conv = QuantConv2d(ds.in_shape[0], a.channels[0], 3, padding=1, w_states=3)
    h = conv(ds.x_test[:64])
    out = {}
    for name, mod in (("lbn_a", LayerBatchNorm2d(a.channels[0], reading="a")),
                      ("lbn_b", LayerBatchNorm2d(a.channels[0], reading="b")),
                      ("batchnorm", torch.nn.BatchNorm2d(a.channels[0]))):
        mod.train()
        train_diff = float((mod(h[7:8]) - mod(h)[7:8]).abs().max())
        for _ in range(10):
            mod(h)
        mod.eval()
        eval_diff = float((mod(h[7:8]) - mod(h)[7:8]).abs().max())
        out[name] = dict(train_max_abs_diff=train_diff, eval_max_abs_diff=eval_diff,
                         eval_exactly_equal=bool(eval_diff == 0.0))
    return out


def targets(results: dict) -> dict:
    st = results.get("states", {})
    nm = results.get("norm", {})
    out = {}
    fp = st.get("fp", {}).get("test_acc")
    if fp is not None and "w3a2" in st:
        gap = 100 * (fp - st["w3a2"]["test_acc"])
        out["w3a2_within_2_points_of_fp"] = dict(gap_points=gap, met=bool(gap <= 2.0))
    if fp is not None and "w16a16" in st:
        gap = 100 * (fp - st["w16a16"]["test_acc"])
        out["w16a16_within_0.5_points_of_fp"] = dict(gap_points=gap, met=bool(gap <= 0.5))
    if all(f"{n}_bs{b}" in nm for n in ("lbn", "bn") for b in (8, 128)):
        lbn_drop = 100 * (nm["lbn_bs128"]["test_acc"] - nm["lbn_bs8"]["test_acc"])
        bn_drop = 100 * (nm["bn_bs128"]["test_acc"] - nm["bn_bs8"]["test_acc"])
        out["lbn_bs8_within_1_point_of_bs128"] = dict(drop_points=lbn_drop, met=bool(abs(lbn_drop) <= 1.0))
        out["bn_degrades_at_bs8"] = dict(drop_points=bn_drop, degrades_more_than_lbn=bool(bn_drop > lbn_drop))
    return out


def _pct(v):
    return "–" if v is None else f"{100 * v:.2f}"


def render_markdown(docs: list) -> str:
    """Markdown tables of the results (from one or more JSON files written by :func:`main`)."""
    states, norm, machines = {}, {}, []
    cfg = {}
    per_seed: dict = {}  # states key -> {seed: test_acc}
    for d in docs:
        seed = d.get("config", {}).get("seed", 0)
        for part in ("states", "norm"):
            got = d.get("results", {}).get(part, {})
            if not got:
                continue
            if part == "states":
                for k, r in got.items():
                    per_seed.setdefault(k, {})[seed] = r["test_acc"]
                    if k not in states or seed == 0:
                        states[k] = dict(r)
                if not d.get("config", {}).get("tag") and (seed == 0 or "states" not in cfg):
                    cfg["states"] = d.get("config", {})
            else:
                norm.update(got)
                cfg["norm"] = d.get("config", {})
        machines.append(d.get("machine", {}))
    seeds = sorted({sd for v in per_seed.values() for sd in v})
    for k, r in states.items():  # the tables and targets use the mean over the seeds run for a key
        r["test_acc"] = sum(per_seed[k].values()) / len(per_seed[k])

    def cfg_line(part):
        c = cfg.get(part, {})
        sd = ", ".join(str(x) for x in seeds) if part == "states" else c.get("seed")
        return (f"Config: {c.get('limit_train')} training images, {c.get('epochs')} epochs, Adam lr {c.get('lr')} "
                f"(cosine), channels {c.get('channels')}, seed(s) {sd}, full test set.")
    merged = targets({"states": states, "norm": norm})
    dep = next((d["lbn_batch_dependence"] for d in docs if "lbn_batch_dependence" in d), None)
    lines = []
    fp = states.get("fp", {}).get("test_acc")
    if states:
        lines += ["| model (M_w, M_a) | test acc (%), mean over seeds | per seed | drop vs FP (points) | SOPs/sample | "
                  "MACs/sample | integer export == fake-quant (float64) | same check in float32 | train time (s) |",
                  "| --- | ---: | --- | ---: | ---: | ---: | --- | --- | ---: |"]
        base = [k for k, _, _ in STATES] + [k[0] for k in ABLATIONS]
        for key in base + sorted(k for k in states if k not in base):
            r = states.get(key)
            if r is None:
                continue
            name = "full precision (WS + ReLU)" if key.split("@")[0] == "fp" else f"({r['w_states']}, {r['a_states']})"
            if r.get("edge_w_states", "same") != "same":
                name += f", first/last layer {r['edge_w_states']} states (ablation)"
            if r.get("surrogate", "ste") != "ste":
                name += f", {r['surrogate']} surrogate (ablation)"
            if "@" in key:
                name += f" [{key.split('@', 1)[1]}: {r.get('epochs')} epochs, {r.get('limit_train')} images]"
            fp_ref = fp
            if "@" in key:  # tagged variants compare with the full-precision run of the same tag
                fp_ref = states.get("fp@" + key.split("@", 1)[1], {}).get("test_acc")
            gap = "" if fp_ref is None or key.split("@")[0] == "fp" else f"{100 * (fp_ref - r['test_acc']):+.2f}"
            e = r.get("energy", {})
            chk = r.get("export_check_float64")
            chk_s = "–" if chk is None else (f"{'yes' if chk['ok'] else 'NO'} (max abs diff {chk['max_abs_diff']:.1e}, "
                                            f"argmax agree {100 * chk['argmax_agreement']:.1f}%)")
            c32 = r.get("export_check")
            c32_s = "–" if c32 is None else (f"max abs diff {c32['max_abs_diff']:.1e}, "
                                            f"argmax agree {100 * c32['argmax_agreement']:.1f}%")
            ps = ", ".join(f"s{sd}: {_pct(v)}" for sd, v in sorted(per_seed[key].items()))
            lines.append(f"| {name} | {_pct(r['test_acc'])} | {ps} | {gap} | {e.get('sops_per_sample') or 0:.0f} | "
                         f"{e.get('macs_per_sample') or 0:.0f} | {chk_s} | {c32_s} | {r['train_time_s']:.0f} |")
        lines += ["", cfg_line("states") + " Batch size " + str(cfg["states"].get("batch_size")) + ".", ""]
    if norm:
        lines += ["| normalization | batch 1 | batch 8 | batch 128 |", "| --- | ---: | ---: | ---: |"]
        for n, label in (("lbn", "LBN (reading a)"), ("bn", "BatchNorm")):
            row = [_pct(norm.get(f"{n}_bs{b}", {}).get("test_acc")) for b in NORM_BATCHES]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines += ["", cfg_line("norm") + f" (M_w, M_a) = ({cfg['norm'].get('norm_states')}).", ""]
    if dep:
        lines += ["Output of one test image alone vs inside a batch of 64 (max abs difference, first conv "
                  "layer's output normalized):", "",
                  "| normalization | training mode | eval mode | eval exactly equal |", "| --- | ---: | ---: | --- |"]
        for k, label in (("lbn_a", "LBN (reading a)"), ("lbn_b", "LBN (reading b)"), ("batchnorm", "BatchNorm")):
            r = dep[k]
            lines.append(f"| {label} | {r['train_max_abs_diff']:.3g} | {r['eval_max_abs_diff']:.3g} | "
                         f"{r['eval_exactly_equal']} |")
        lines.append("")
    lines.append("Targets (computed from the JSON; accuracy gaps use the mean over seeds):")
    lines.append("")
    for k, v in merged.items():
        lines.append(f"- `{k}`: " + ", ".join(f"{kk} = {vv:.2f}" if isinstance(vv, float) else f"{kk} = {vv}"
                                             for kk, vv in v.items()))
    tags = sorted({k.split("@", 1)[1] for k in per_seed if "@" in k})
    for tag in tags:
        fk, qk = f"fp@{tag}", f"w3a2@{tag}"
        if fk in states and qk in states:
            gap = 100 * (states[fk]["test_acc"] - states[qk]["test_acc"])
            lines.append(f"- `w3a2_within_2_points_of_fp` [{tag}: {states[qk].get('epochs')} epochs, mean over seeds "
                         f"{sorted(per_seed[qk])}]: gap_points = {gap:.2f}, met = {gap <= 2.0}")
    for tag in tags:  # the ablation with first/last layers at 16 states, at the same budget
        fk, ek = f"fp@{tag}", f"w3a2_edge16@{tag}"
        if fk in states and ek in states:
            gap = 100 * (states[fk]["test_acc"] - states[ek]["test_acc"])
            lines.append(f"- ablation: (3, 2) with the first conv and the classifier at 16 states within 2 points of FP "
                         f"[{tag}: {states[ek].get('epochs')} epochs, mean over seeds {sorted(per_seed[ek])}]: "
                         f"gap_points = {gap:.2f}, met = {gap <= 2.0}")
    for key in ["w3a2", "w16a16"] + [f"w3a2@{t}" for t in tags] + [f"w3a2_edge16@{t}" for t in tags]:
        fpk = "fp" if "@" not in key else "fp@" + key.split("@", 1)[1]
        if fpk in per_seed and key in per_seed:
            common = sorted(set(per_seed[fpk]) & set(per_seed[key]))
            if common:
                gaps = ", ".join(f"seed {sd}: {100 * (per_seed[fpk][sd] - per_seed[key][sd]):.2f}" for sd in common)
                lines.append(f"- per-seed gap FP − {key} (points): {gaps}")
    curves = {k: r["history"] for k, r in states.items()
              if any(h.get("test_acc") is not None for h in r.get("history", [])[:-1])}
    if curves:  # runs with --eval-every: their test accuracy per epoch
        keys = sorted(curves)
        epochs = sorted({h["epoch"] for k in keys for h in curves[k]})
        lines += ["", "Learning curves (test accuracy after each epoch, seed 0; runs with `--eval-every`):", "",
                  "| epoch | " + " | ".join(f"{k} (%)" for k in keys) + " |", "| ---: |" + " ---: |" * len(keys)]
        for e in epochs:
            accs = [next((h.get("test_acc") for h in curves[k] if h["epoch"] == e), None) for k in keys]
            lines.append(f"| {e} | " + " | ".join(_pct(a) for a in accs) + " |")
    lines.append("")
    m = machines[0] if machines else {}
    lines.append(f"Machine: {m.get('processor')} ({m.get('cpu_count')} CPUs, {m.get('torch_threads')} torch "
                 f"thread(s)), torch {m.get('torch')}, SpikingJelly {m.get('spikingjelly')}, "
                 f"GPU: {m.get('gpu', 'none')}.")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist", "digits"))
    p.add_argument("--data-dir", default=None, help="folder with the IDX files (e.g. DATA/fashion-mnist)")
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128, help="batch size of the states experiment")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--channels", type=int, nargs=2, default=[16, 32])
    p.add_argument("--norm-states", default="3,2", help="M_w,M_a of the LBN-vs-BN runs ('fp,fp' for ReLU)")
    p.add_argument("--part", default="all", choices=("states", "norm", "lbn-check", "all"))
    p.add_argument("--only", nargs="*", default=None, help="run only these keys (e.g. w3a2 lbn_bs8)")
    p.add_argument("--eval-every", action="store_true", help="test accuracy after every epoch (default: last only)")
    p.add_argument("--tag", default="", help="store states results as KEY@TAG (e.g. a longer-training variant)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/examples/maqd_fashion_mnist.json",
                   help="result JSON (the committed results are examples/results/*.json)")
    p.add_argument("--render", nargs="+", default=None, metavar="JSON",
                   help="only print the markdown tables of these result files")
    p.add_argument("--write-doc", default=None, metavar="MD",
                   help="with --render: replace the text between the maqd-results markers of this file")
    a = p.parse_args(argv)
    if a.render:
        md = render_markdown([json.loads(Path(f).read_text()) for f in a.render])
        if a.write_doc:
            path = Path(a.write_doc)
            text = path.read_text()
            start, end = "<!-- maqd-results:start -->", "<!-- maqd-results:end -->"
            i, j = text.index(start) + len(start), text.index(end)
            path.write_text(text[:i] + "\n" + md + "\n" + text[j:])
        print(md)
        return None
    torch.set_num_threads(a.threads)
    ds = load_dataset(a.dataset, a.data_dir, download=a.data_dir is None, limit_train=a.limit_train,
                      limit_test=a.limit_test)
    out_path = Path(a.out)
    doc = json.loads(out_path.read_text()) if out_path.exists() else {}
    results = doc.get("results", {"states": {}, "norm": {}})
    runs = doc.get("runs", {})

    def save():
        doc.update(example="maqd_fashion_mnist", dataset=ds.name, n_train=len(ds.x_train), n_test=len(ds.x_test),
                   results=results, targets=targets(results), machine=machine_info(a.device))
        runs_cfg = dict(vars(a))
        doc["config"] = runs_cfg
        doc["runs"] = runs
        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_path, doc)

    def want(key):
        return a.only is None or key in a.only

    if a.part in ("lbn-check", "all"):
        doc["lbn_batch_dependence"] = lbn_batch_dependence(ds, a)
        print(json.dumps(doc["lbn_batch_dependence"], indent=1))
        save()
    if a.part in ("states", "all"):
        for key, w, act in STATES:
            if not want(key):
                continue
            print(f"states run {key}", flush=True)
            key = f"{key}@{a.tag}" if a.tag else key
            results["states"][key] = train_one(ds, w, act, "lbn", a.batch_size, a, a.device)
            runs[f"states/{key}"] = dict(epochs=a.epochs, lr=a.lr, limit_train=a.limit_train, seed=a.seed,
                                         batch_size=a.batch_size, channels=a.channels)
            save()
        for key, w, act, edge, sg in ABLATIONS:
            if a.only is None or key not in a.only:
                continue
            print(f"ablation run {key}", flush=True)
            key = f"{key}@{a.tag}" if a.tag else key
            results["states"][key] = train_one(ds, w, act, "lbn", a.batch_size, a, a.device, edge=edge, surrogate=sg)
            runs[f"states/{key}"] = dict(epochs=a.epochs, lr=a.lr, limit_train=a.limit_train, seed=a.seed,
                                         batch_size=a.batch_size, channels=a.channels)
            save()
    if a.part in ("norm", "all"):
        ws, as_ = (None if s in ("fp", "none") else int(s) for s in a.norm_states.split(","))
        for norm in ("lbn", "bn"):
            for bs in NORM_BATCHES:
                key = f"{norm}_bs{bs}"
                if not want(key):
                    continue
                print(f"norm run {key}", flush=True)
                results["norm"][key] = train_one(ds, ws, as_, norm, bs, a, a.device)
                runs[f"norm/{key}"] = dict(epochs=a.epochs, lr=a.lr, limit_train=a.limit_train, seed=a.seed,
                                           batch_size=bs, channels=a.channels, states=a.norm_states)
                save()
    save()
    print(json.dumps(doc["targets"], indent=1))
    return doc


if __name__ == "__main__":
    main()
