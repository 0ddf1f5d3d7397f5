"""``neuroq compare``: every method on the same data, the same seeds and the same budget, metered by one
energy model, and the accuracy-energy frontier across them.

For each method and seed a run trains in its own process (:class:`neuroq.training.Trainer`, so its peak
memory is its own), writes its ``checkpoint.pt``, ``metrics.json``, ``energy.json`` and ``raster.png`` to
``out/<method>/seed<k>/``, and is skipped when it already finished (an interrupted comparison resumes).
Across methods ``compare.json`` holds, per method, the test accuracy (mean ± std over the seeds), the
energy per inference split into its SOP and MAC parts, the time steps, the parameters, the training time
and the peak memory; ``frontier.png`` draws accuracy against energy with the Pareto frontier and one
marker per method with its seed spread as error bars.

The rules that make the comparison fair:

* one :class:`~neuroq.training.TrainConfig` for every run (dataset, epochs, batch size, learning rate,
  schedule, validation split): the same budget of epochs and samples;
* the method options given here apply to every method that has them (``T`` to the methods that simulate
  time, ``arch``/``hidden`` to every reference MLP/CNN); the rest keep each method's defaults;
* one :class:`neuroq.energy.EnergyMeter` setting (``samples``, ``e_ac``, ``e_mac``, ``conv_fanout``)
  meters each method's inference network on the same test samples, priced under every energy model of
  ``energy`` (:mod:`neuroq.energy.models`; ``compute,simple,lemaire,loihi`` by default): ``compare.json``
  holds each method's energy and components under each, ``frontier.png`` one panel per model.

A finished run whose energy setting differs from the requested one is re-metered from its checkpoint
(no retraining), so a comparison can be priced under new models later.

Methods added later join by registering (:func:`neuroq.training.methods.register`): the default
``methods`` are all registered methods that take the dataset's kind of samples.
"""
from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Optional, Sequence

from ..io import atomic_write_json, machine_info
from .config import TrainConfig, from_dict, to_dict
from .methods import available, method_class
from .report import METER_SAMPLES

#: the energy models every comparison is priced under by default (``--energy``)
DEFAULT_ENERGY = "compute,simple,lemaire,loihi"
#: the meter setting every method is measured with
METER_DEFAULTS = dict(samples=METER_SAMPLES, e_ac=0.9, e_mac=4.6, conv_fanout="nominal", energy=DEFAULT_ENERGY)


def applicable_methods(kind: str) -> list[str]:
    """Registered methods that take samples of ``kind`` (``TaskData.kind``)."""
    return [m for m in available() if kind in method_class(m).kinds]


def method_options(name: str, options: dict) -> dict:
    """The subset of ``options`` that method ``name``'s Config has."""
    fields = {f.name for f in dataclasses.fields(method_class(name).Config)}
    return {k: v for k, v in options.items() if k in fields}


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run_one(job: dict, progress) -> dict:
    """Train one (method, seed) in this (child) process; returns its summary."""
    import torch

    from ..data import load_dataset
    from .loop import Trainer
    from .report import inference_model, meter_run, report_run, write_energy_report

    torch.set_num_threads(job["threads"])
    cfg = from_dict(TrainConfig, job["train"])
    cls = method_class(job["method"])
    method = cls(from_dict(cls.Config, job["options"]))
    data = load_dataset(cfg)
    rss0 = _rss_mib()
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    report = None if progress is None else (lambda rec: progress.put((job["method"], job["seed"], rec)))
    tr = Trainer(method, data, cfg, out=job["out"], resume=True, label=None,
                 callbacks=[report] if report else ())
    if report and tr.start_epoch:
        report(dict(resumed_epochs=tr.start_epoch))  # the progress bar starts where the run is
    metrics = tr.fit()
    train_wall = time.time() - t0
    peak = max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0)
    gpu_peak = torch.cuda.max_memory_allocated() / 2**20 if cfg.device.startswith("cuda") else None
    m = job["meter"]
    net = inference_model(method, tr.model, tr.device)
    meter = meter_run(method, net, data.test, tr.device, samples=m["samples"], e_ac=m["e_ac"], e_mac=m["e_mac"],
                      conv_fanout=m["conv_fanout"], energy=m.get("energy", "compute"))
    rep = write_energy_report(meter, method, data, Path(job["out"]) / "energy.json", tr.device)
    report_run(method, tr.model, data, job["out"], tr.device, samples=min(64, m["samples"]), write_energy=False)
    tot = rep["total"]
    return dict(method=method.name, seed=cfg.seed, T=method.T, final_test_acc=metrics["final_test_acc"],
                best_epoch=metrics["best_epoch"], test_acc_at_best_epoch=metrics["test_acc_at_best_epoch"],
                energy_pj=tot["energy_pj_per_sample"], sop_energy_pj=tot["sops_per_sample"] * rep["e_ac_pj"],
                mac_energy_pj=tot["macs_per_sample"] * rep["e_mac_pj"], sops=tot["sops_per_sample"],
                energy_models={k: dict(energy_pj=v["total"]["energy_pj_per_sample"],
                                       components_pj=v["total"]["components_pj_per_sample"])
                               for k, v in rep["energy_models"].items()},
                meter=m, metered_samples=rep["samples"],
                macs=tot["macs_per_sample"], firing_rate=tot.get("firing_rate"),
                params=sum(p.numel() for p in tr.model.parameters()), train_time_s=metrics["train_time_s"],
                wall_time_s=train_wall, peak_memory_mib=gpu_peak if gpu_peak is not None else peak,
                peak_memory_kind="cuda max_memory_allocated" if gpu_peak is not None else "process RSS growth",
                history=[dict(epoch=h["epoch"], train_loss=h["train_loss"], test_acc=h["test_acc"],
                              val_acc=h.get("val_acc")) for h in metrics["history"]],
                options=job["options"], train=job["train"], out=job["out"])


def _child(job, queue, progress):
    try:
        queue.put(("ok", _run_one(job, progress)))
    except BaseException as e:  # report, never hang the parent
        import traceback

        queue.put(("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()[-2000:]}"))


def _summary_path(out: Path) -> Path:
    return out / "summary.json"


def compare(methods: Optional[Sequence[str]], train: TrainConfig, out, seeds: int = 1, options: Optional[dict] = None,
            jobs: int = 1, meter: Optional[dict] = None, progress: bool = True, threads: Optional[int] = None) -> dict:
    """Train every method of ``methods`` (default: all that take the dataset's samples) with ``seeds``
    seeds (``train.seed``, ``train.seed + 1`` ...) and write ``compare.json`` and ``frontier.png`` to
    ``out`` (see the module docstring).  ``jobs`` runs that many trainings at once (one torch thread
    each unless ``threads`` says otherwise); ``options`` are method options applied to every method that
    has them."""
    from ..data import load_dataset

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a folder for the comparison")
    options = dict(options or {})
    meter = dict(METER_DEFAULTS, **(meter or {}))
    kind = load_dataset(train, limit_train=1, limit_test=1).kind
    names = list(methods) if methods else applicable_methods(kind)
    unknown = [m for m in names if m not in available()]
    if unknown:
        raise ValueError(f"--methods: unknown method(s) {unknown}; registered: {', '.join(available())}")
    wrong = [m for m in names if kind not in method_class(m).kinds]
    if wrong:
        raise ValueError(f"--methods {','.join(wrong)} cannot read --dataset {train.dataset} ({kind} samples)")
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds must be an integer >= 1, got {seeds!r}")
    jobs_list = []
    for name in names:
        cls = method_class(name)
        opts = to_dict(cls.Config(**method_options(name, options)))
        cls(from_dict(cls.Config, opts)).check(train)  # refuse before any process starts
        for k in range(seeds):
            cfg = dataclasses.replace(train, seed=train.seed + k)
            jobs_list.append(dict(method=name, seed=cfg.seed, train=to_dict(cfg), options=opts, meter=meter,
                                  out=str(out / name / f"seed{cfg.seed}"),
                                  threads=threads or (1 if jobs > 1 else max(1, os.cpu_count() or 1))))
    out.mkdir(parents=True, exist_ok=True)
    results = _run_all(jobs_list, jobs, progress, train.epochs)
    summary = _aggregate(names, results, train, options, meter, seeds)
    atomic_write_json(out / "compare.json", summary)
    draw_frontier(summary, out / "frontier.png")
    draw_curves(summary, out / "curves.png")
    return summary


def _run_all(jobs_list: list, jobs: int, progress: bool, epochs: int) -> list:
    from tqdm import tqdm

    ctx = mp.get_context("spawn")
    results, pending = [], []
    for job in jobs_list:
        done = _summary_path(Path(job["out"]))
        if done.exists():
            prev = json.loads(done.read_text())
            if prev.get("options") == job["options"] and prev.get("train") == job["train"]:
                if prev.get("meter") == job["meter"]:
                    results.append(prev)
                    continue
                job = dict(job, remeter=prev)  # trained: only meter again (the checkpoint resumes past its end)
        pending.append(job)
    methods = list(dict.fromkeys(j["method"] for j in jobs_list))
    per_method = {m: sum(1 for j in jobs_list if j["method"] == m) * epochs for m in methods}
    bars = {m: tqdm(total=per_method[m], desc=f"{m:>10}", position=i, leave=True, disable=not progress,
                    dynamic_ncols=True) for i, m in enumerate(methods)}
    for r in results:
        bars[r["method"]].update(epochs)
    prog = ctx.Queue()
    running = []
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                job = pending.pop(0)
                q = ctx.Queue()
                p = ctx.Process(target=_child, args=(job, q, prog), daemon=True)
                p.start()
                running.append((job, p, q))
            time.sleep(0.2)
            while not prog.empty():
                m, seed, rec = prog.get()
                if "resumed_epochs" in rec:
                    bars[m].update(min(rec["resumed_epochs"], epochs))
                    continue
                bars[m].update(1)
                if rec.get("test_acc") is not None:
                    bars[m].set_postfix(seed=seed, test_acc=f"{rec['test_acc']:.3f}")
            for item in list(running):
                job, p, q = item
                if not q.empty():
                    status, payload = q.get()
                    p.join()
                    running.remove(item)
                    if status != "ok":
                        raise RuntimeError(f"compare: {job['method']} seed {job['seed']} failed: {payload}")
                    if "remeter" in job:  # keep what the training measured; take the new energy numbers
                        keep = ("train_time_s", "wall_time_s", "peak_memory_mib", "peak_memory_kind", "history",
                                "final_test_acc", "best_epoch", "test_acc_at_best_epoch")
                        payload = dict(payload, **{k: job["remeter"][k] for k in keep if k in job["remeter"]})
                    atomic_write_json(_summary_path(Path(job["out"])), payload)
                    results.append(payload)
                elif not p.is_alive():
                    running.remove(item)
                    raise RuntimeError(f"compare: the process training {job['method']} seed {job['seed']} died "
                                       f"(exit code {p.exitcode})")
    finally:
        for _, p, _ in running:
            p.terminate()
        for b in bars.values():
            b.close()
    return results


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _aggregate(names, results, train, options, meter, seeds) -> dict:
    rows = {}
    for name in names:
        rs = sorted((r for r in results if r["method"] == name), key=lambda r: r["seed"])
        acc, acc_sd = _mean_std([r["final_test_acc"] for r in rs])
        best, best_sd = _mean_std([r["test_acc_at_best_epoch"] for r in rs])
        e, e_sd = _mean_std([r["energy_pj"] for r in rs])
        models = {}
        for mname in rs[0].get("energy_models", {}):
            me, me_sd = _mean_std([r["energy_models"][mname]["energy_pj"] for r in rs])
            comps = {c: _mean_std([r["energy_models"][mname]["components_pj"][c] for r in rs])[0]
                     for c in rs[0]["energy_models"][mname]["components_pj"]}
            models[mname] = dict(energy_pj=me, energy_std=me_sd, components_pj=comps)
        rows[name] = dict(
            method=name, help=method_class(name).help, seeds=[r["seed"] for r in rs], T=rs[0]["T"],
            accuracy=acc, accuracy_std=acc_sd, test_acc_at_best_epoch=best, test_acc_at_best_epoch_std=best_sd,
            energy_pj=e, energy_std=e_sd, sop_energy_pj=_mean_std([r["sop_energy_pj"] for r in rs])[0],
            mac_energy_pj=_mean_std([r["mac_energy_pj"] for r in rs])[0],
            sops=_mean_std([r["sops"] for r in rs])[0], macs=_mean_std([r["macs"] for r in rs])[0],
            firing_rate=_mean_std([r["firing_rate"] for r in rs])[0], params=rs[0]["params"],
            train_time_s=_mean_std([r["train_time_s"] for r in rs])[0],
            peak_memory_mib=max(r["peak_memory_mib"] for r in rs), peak_memory_kind=rs[0]["peak_memory_kind"],
            energy_models=models, runs=rs)
    from ..viz.energy_plots import pareto_front

    order = list(rows)
    front = pareto_front([rows[m]["energy_pj"] for m in order], [rows[m]["accuracy"] for m in order])
    fronts = {}
    for mname in rows[order[0]]["energy_models"]:
        f = pareto_front([rows[m]["energy_models"][mname]["energy_pj"] for m in order],
                         [rows[m]["accuracy"] for m in order])
        fronts[mname] = [order[i] for i in f]
    from ..energy import describe

    return dict(kind="neuroq-compare-1", dataset=train.dataset, train=to_dict(train), seeds=seeds, options=options,
                meter=meter, methods=rows, pareto_front=[order[i] for i in front], pareto_fronts=fronts,
                energy_models={k: describe(k) for k in fronts}, machine=machine_info(train.device))


def energy_model_names(summary: dict) -> list:
    """The energy models a ``compare.json`` was priced under (``['compute']`` for files from before models)."""
    first = next(iter(summary["methods"].values()))
    return list(first.get("energy_models") or {"compute": None})


def _model_energy(r: dict, model: str) -> tuple:
    em = r.get("energy_models") or {}
    if model in em:
        return em[model]["energy_pj"], em[model]["energy_std"]
    return r["energy_pj"], r["energy_std"]


def draw_frontier(summary: dict, path) -> None:
    """``frontier.png`` (and ``.pdf``) of a ``compare.json``: accuracy against energy per inference, one
    panel per energy model, one marker per method with its seed spread, each model's Pareto front dashed."""
    import matplotlib.pyplot as plt

    from .. import viz

    models = energy_model_names(summary)
    n = len(summary["methods"][next(iter(summary["methods"]))]["seeds"])
    spread = f"{n} seeds each, mean ± std" if n > 1 else "1 seed each"
    cols = min(2, len(models))
    rows_n = -(-len(models) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(6.2 * cols, 4.4 * rows_n), layout="constrained", squeeze=False)
    for ax, model in zip(axes.flat, models):
        rows = []
        for m, r in summary["methods"].items():
            e, e_sd = _model_energy(r, model)
            rows.append(dict(label=f"{m} (T={r['T']})", energy_pj=e, accuracy=r["accuracy"],
                             accuracy_std=r["accuracy_std"], energy_std=e_sd))
        viz.accuracy_energy(rows, ax=ax, title=f"energy model: {model}")
        ax.set_ylabel("test accuracy")
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    fig.suptitle(f"{summary['dataset']}: test accuracy vs energy per inference ({spread})")
    viz.save(fig, path, formats=("png", "pdf"))


def draw_curves(summary: dict, path) -> None:
    """``curves.png`` (and ``.pdf``) of a ``compare.json``: test accuracy per epoch of every method,
    the mean over seeds with a ±1 std band."""
    from .. import viz

    runs = {f"{m} (T={r['T']})": [run["history"] for run in r["runs"]] for m, r in summary["methods"].items()}
    n = len(summary["methods"][next(iter(summary["methods"]))]["seeds"])
    spread = f"{n} seeds each, mean ± std" if n > 1 else "1 seed each"
    ax = viz.learning_curves(runs, "test_acc", title=f"{summary['dataset']}: test accuracy per epoch ({spread})")
    viz.save(ax, path, formats=("png", "pdf"))


def markdown_table(summary: dict) -> str:
    """The comparison as a Markdown table (for the README and docs; never typed by hand): accuracy, and the
    energy per inference under every energy model the comparison was priced under, with the share of it
    that is memory traffic, followed by :func:`reading`."""
    models = energy_model_names(summary)
    fronts = summary.get("pareto_fronts") or {"compute": summary["pareto_front"]}
    head = ("| method | T | test accuracy (%) | " + " | ".join(f"{m} (nJ)" for m in models) +
            " | firing rate | parameters | training time (s) | peak memory (MiB) | on the frontier under |")
    lines = [head, "|---|---:|---:|" + "---:|" * len(models) + "---:|---:|---:|---:|---|"]
    first = models[0]
    for m, r in sorted(summary["methods"].items(), key=lambda kv: _model_energy(kv[1], first)[0]):
        sd = "" if not r["accuracy_std"] else f" ± {100 * r['accuracy_std']:.2f}"
        fr = "–" if r["firing_rate"] is None else f"{r['firing_rate']:.3f}"
        cells = []
        for model in models:
            e = _model_energy(r, model)[0]
            comps = ((r.get("energy_models") or {}).get(model) or {}).get("components_pj") or {}
            mem = sum(comps.get(c, 0.0) for c in ("weight_memory", "state_memory", "io"))
            cells.append(f"{e / 1e3:.1f}" + (f" ({100 * mem / e:.0f} % mem.)" if mem and e else ""))
        on = ", ".join(k for k in models if m in fronts.get(k, ()))
        lines.append(f"| {m} | {r['T']} | {100 * r['accuracy']:.2f}{sd} | " + " | ".join(cells) +
                     f" | {fr} | {r['params']:,} | {r['train_time_s']:.0f} | {r['peak_memory_mib']:.0f} | {on} |")
    t = summary["train"]
    mach = summary["machine"]
    counts = {r.get("metered_samples") for row in summary["methods"].values() for r in row.get("runs", [])}
    metered = (f"{counts.pop()}" if len(counts) == 1 and None not in counts
               else f"up to {summary['meter']['samples']}")  # files written before the count was kept
    lines += ["", f"{summary['dataset']}, {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']} ({t['schedule']}), "
              f"{summary['seeds']} seed(s) per method, method options {summary['options'] or 'defaults'}; energy "
              f"metered on {metered} test samples under the energy models {', '.join(models)} "
              f"({summary['meter']['conv_fanout']} fan-out for SOPs; \"mem.\": weight, state and I/O traffic); "
              f"machine: {mach.get('gpu') or mach.get('processor')}, {mach.get('cpu_count')} CPUs, torch "
              f"{mach.get('torch')}, SpikingJelly {mach.get('spikingjelly')}."]
    reading_text = reading(summary)
    if reading_text:
        lines += ["", reading_text]
    return "\n".join(lines)


def reading(summary: dict) -> str:
    """What the comparison says under each energy model, generated from it: the order of the methods by
    energy under each model, and which pairwise conclusions hold under every model and which flip."""
    models = energy_model_names(summary)
    if len(models) < 2:
        return ""
    rows = summary["methods"]
    order = {mo: sorted(rows, key=lambda m: _model_energy(rows[m], mo)[0]) for mo in models}
    parts = ["Cheapest first: " + "; ".join(f"{mo}: {' < '.join(order[mo])}" for mo in models) + "."]
    holds, flips = [], []
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            signs = {mo: _model_energy(rows[a], mo)[0] < _model_energy(rows[b], mo)[0] for mo in models}
            if all(signs.values()) or not any(signs.values()):
                lo, hi = (a, b) if all(signs.values()) else (b, a)
                holds.append(f"{lo} < {hi}")
            else:
                cheaper_a = [mo for mo, v in signs.items() if v]
                cheaper_b = [mo for mo, v in signs.items() if not v]
                flips.append(f"{a} < {b} under {', '.join(cheaper_a)} but not under {', '.join(cheaper_b)}")
    if holds:
        parts.append("Under every model: " + ", ".join(holds) + ".")
    if flips:
        parts.append("Flips with the model: " + "; ".join(flips) + ".")
    return " ".join(parts)


__all__ = ["compare", "applicable_methods", "draw_frontier", "markdown_table", "reading", "METER_DEFAULTS",
           "DEFAULT_ENERGY"]
