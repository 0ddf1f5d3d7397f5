"""``neuroq`` command line: ``train``, ``compare``, ``energy``, ``viz``, ``report``, ``predict``.

    neuroq train --method lif --dataset digits -T 4 --epochs 30 --out runs/train
    neuroq compare --dataset digits --methods lif,s2nn,saf-e,ottt-o,maqd,ann --out runs/compare
    torchrun --nproc_per_node=2 -m neuroq.cli train ...       # data-parallel

The options of ``train`` are the fields of :class:`neuroq.training.TrainConfig` and of the methods'
``Config`` dataclasses (one option per concept, shared by every method that has it: ``--tau``,
``--v-threshold`` ...); an option the chosen method does not have is refused.  The command builds the
typed configs and calls the library (:mod:`neuroq.training.loop`); it has no logic of its own.
"""
from __future__ import annotations

import argparse
import sys

from .training import config as C
from .io import make_folder
from .training.report import METER_SAMPLES

VIZ_KINDS = ("raster", "rates", "membrane", "maps", "energy", "animation", "all")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: no usage dump, the subcommand's ``--help`` named, and a "did you mean"
    for a mistyped option."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message):
        import difflib
        import re

        subs = {name: parser for a in self._actions if isinstance(a, argparse._SubParsersAction)
                for name, parser in a.choices.items()}
        command = next((w for w in getattr(self, "_argv", []) if w in subs), None)
        where = subs[command] if command else self
        hint = ""
        bad = re.match(r"unrecognized arguments: (.*)", message)
        if bad:
            known = sorted({o for a in where._actions for o in a.option_strings if o.startswith("--")})
            for word in bad.group(1).split():
                close = difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.7)
                if word.startswith("-") and close:
                    hint += f"; {word}: did you mean {close[0]}?"
        self.exit(2, f"{self.prog}: error: {message}{hint} (`{where.prog} --help` lists the options)\n")


class Interrupted(Exception):
    """Ctrl-C during a command: the one line to print instead of a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The ``neuroq`` argument parser: the subcommands ``train``, ``compare``, ``energy`` and ``viz``, each with
    its handler as ``func``; ``train``'s options come from :class:`~neuroq.training.TrainConfig` and every
    registered method's ``Config`` (importing the built-in methods)."""
    from . import __version__
    from .training import methods as M

    p = _Parser(prog="neuroq", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"neuroq {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a network with one of neuroq's methods",
                       description="Train a network with one of neuroq's methods; writes checkpoint.pt, "
                                   "metrics.json, energy.json and raster.png to --out.")
    t.add_argument("--method", default="lif", type=method_name, metavar="METHOD",
                   help="training method: " + "; ".join(f"{n}: {M.method_class(n).help}" for n in M.available())
                        + " (your own: --import MODULE)")
    t.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    t.add_argument("--overwrite", action="store_true",
                   help="start over in --out even if it holds a run (by default the same command resumes the run "
                        "in --out, and a run of other options there is refused)")
    t.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)  # the default; kept for old scripts
    t.add_argument("--no-report", action="store_true", help="skip energy.json and raster.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    C.add_options(t, {"train": C.TrainConfig}, title="training options")
    C.add_options(t, M.configs(), title="method options (which methods use each is in brackets)")
    t.set_defaults(func=_cmd_train)

    c = sub.add_parser("compare", help="train several methods on the same data and budget; accuracy-energy frontier",
                       description="Train every method on the same data, seeds and budget, meter each with one "
                                   "energy model, and write compare.json and frontier.png to --out.")
    c.add_argument("--methods", default=None, type=method_list,
                   help="comma-separated methods (default: every registered method that reads the dataset): "
                        + ", ".join(M.available()))
    c.add_argument("--seeds", type=C.positive_int("--seeds"), default=1,
                   help="seeds per method (--seed, --seed+1, ...; default: 1)")
    c.add_argument("--jobs", type=C.positive_int("--jobs"), default=1,
                   help="trainings at once, one torch thread each (default: 1)")
    c.add_argument("--threads", type=C.positive_int("--threads"), default=None,
                   help="torch threads per training (default: 1 with --jobs > 1, else all cores)")
    c.add_argument("--out", default="runs/compare", help="output folder (default: runs/compare)")
    c.add_argument("--samples", type=C.positive_int("--samples"), default=METER_SAMPLES,
                   help=f"test samples every method is metered on (default: {METER_SAMPLES})")
    c.add_argument("--e-ac", type=C.positive_float("--e-ac"), default=0.9, help="pJ per accumulate (default: 0.9)")
    c.add_argument("--e-mac", type=C.positive_float("--e-mac"), default=4.6, help="pJ per MAC (default: 4.6)")
    c.add_argument("--conv-fanout", default="nominal", choices=("nominal", "exact"),
                   help="conv fan-out rule of the meter (default: nominal)")
    c.add_argument("--energy", type=energy_spec, default=None,
                   help="energy models to price every method under, comma-separated, each 'name' or "
                        "'name:option=value' (default: compute,simple,lemaire,loihi; registered: "
                        + ", ".join(_energy_names()) + ")")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    C.add_options(c, {"train": C.TrainConfig}, title="training options (the same for every method)")
    C.add_options(c, M.configs(), title="method options (applied to every compared method that has them)")
    c.set_defaults(func=_cmd_compare)

    e = sub.add_parser("energy", help="per-layer energy report of a trained checkpoint (table + JSON)")
    e.add_argument("checkpoint", help="checkpoint.pt written by `neuroq train` (or its run folder)")
    e.add_argument("--samples", type=C.positive_int("--samples"), default=METER_SAMPLES,
                   help=f"test samples to meter (default: {METER_SAMPLES}, as every energy figure of a run)")
    e.add_argument("--out", default=None, help="JSON file to write (default: energy.json beside the checkpoint)")
    e.add_argument("--e-ac", type=C.positive_float("--e-ac"), default=None, help="pJ per accumulate (default 0.9)")
    e.add_argument("--e-mac", type=C.positive_float("--e-mac"), default=None, help="pJ per MAC (default 4.6)")
    e.add_argument("--conv-fanout", default="nominal", choices=("nominal", "exact"),
                   help="conv fan-out rule: nominal (C_out k^2 / s^2, the paper's) or exact (border-aware)")
    e.add_argument("--energy", type=energy_spec, default=None,
                   help="energy models, comma-separated, each 'name' or 'name:option=value' (default: every "
                        "shipped one: " + ", ".join(_energy_names()) + "); the first is energy_pj in the JSON")
    e.add_argument("-b", "--batch-size", type=C.positive_int("--batch-size"), default=256,
                   help="batch size of the metering pass (default: 256)")
    e.add_argument("--data-dir", default=None, help="dataset folder, if it moved since training")
    e.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ... (default: cpu)")
    e.set_defaults(func=_cmd_energy)

    v = sub.add_parser("viz", help="plots of a trained checkpoint (raster, rates, membrane, maps, energy, animation)")
    v.add_argument("checkpoint", help="checkpoint.pt written by `neuroq train` (or its run folder)")
    v.add_argument("--sample", type=int, default=0, help="index of the test sample to show (default: 0)")
    v.add_argument("--out", default=None, help="output folder (default: beside the checkpoint)")
    v.add_argument("--kind", default="all", choices=VIZ_KINDS, help="which plot(s) (default: all)")
    v.add_argument("--samples", type=C.positive_int("--samples"), default=METER_SAMPLES,
                   help=f"test samples for the energy bars and the rate plot's batch average (default: {METER_SAMPLES}, "
                        "as neuroq energy)")
    v.add_argument("--energy", type=energy_spec, default=None,
                   help="energy model of --kind energy (bars stacked by component; default: compute)")
    v.add_argument("--scale", default="auto", choices=("auto", "log", "linear"),
                   help="y axis of the energy plots: log, linear, or auto (default): log when the layers differ "
                        "by more than 100x")
    v.add_argument("--max-neurons", type=C.positive_int("--max-neurons"), default=200,
                   help="neurons per layer in rasters (default: 200)")
    v.add_argument("--dpi", type=C.positive_int("--dpi"), default=150, help="resolution of the PNGs (default: 150)")
    v.add_argument("--formats", nargs="+", default=["png"], choices=("png", "pdf", "svg"),
                   help="file formats of every plot (pdf and svg keep text as text; default: png)")
    v.add_argument("--select", default="active", choices=("active", "even", "first"),
                   help="which neurons a raster of a layer larger than --max-neurons shows (default: the most active)")
    v.add_argument("--data-dir", default=None, help="dataset folder, if it moved since training")
    v.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ... (default: cpu)")
    v.set_defaults(func=_cmd_viz)

    r = sub.add_parser("report", help="one self-contained interactive HTML page of a run, a comparison or a checkpoint",
                       description="Write report.html: spike rasters of every spiking layer (hover, linked zoom, "
                                   "membrane traces), firing rates, per-layer energy, metrics and config of each run, "
                                   "and for a comparison the accuracy-energy frontier. It opens offline (everything "
                                   "inline). Needs the report extra: pip install 'neuroq[report]'.")
    r.add_argument("path", help="a `neuroq compare` folder (compare.json), a run folder (checkpoint.pt) or a checkpoint")
    r.add_argument("--out", default=None, help="HTML file to write (default: report.html in that folder)")
    r.add_argument("--samples", type=C.positive_int("--samples"), default=16,
                   help="test samples in each raster (default: 16)")
    r.add_argument("--max-marks", type=C.nonneg_int("--max-marks"), default=None,
                   help="spikes in view drawn as marks; more are drawn as spike counts per pixel (default: 20,000)")
    r.add_argument("--energy-samples", type=C.positive_int("--energy-samples"), default=METER_SAMPLES,
                   help=f"test samples metered for a run without energy.json (default: {METER_SAMPLES})")
    r.add_argument("--backend", default="auto", choices=("auto", "webgl", "canvas"),
                   help="how the browser draws the rasters: auto (default) uses WebGL where the browser has it in "
                        "hardware and canvas where it is missing or software")
    r.add_argument("--data-dir", default=None, help="dataset folder, if it moved since training")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ... (default: cpu)")
    r.set_defaults(func=_cmd_report)
    q = sub.add_parser("predict", help="class predictions of a trained run for samples in a file",
                       description="Predict the classes of the samples in --input with a trained run, encoded, reset "
                                   "and read out as training did (neuroq.load_run(RUN).predict). Prints one line per "
                                   "sample: index, predicted class, its score.")
    q.add_argument("checkpoint", metavar="RUN", help="a run folder or its checkpoint.pt")
    q.add_argument("--input", required=True, metavar="FILE",
                   help="samples as the dataset gives them (not encoded), a batch [N, *shape] or one sample: "
                        ".npy, .npz (its only array, or the one named x) or .pt (a tensor)")
    q.add_argument("--out", default=None, metavar="FILE",
                   help="also write the predictions and class scores: .json or .csv")
    q.add_argument("-b", "--batch-size", type=C.positive_int("--batch-size"), default=256,
                   help="samples per forward pass (default: 256)")
    q.add_argument("--data-dir", default=None, help="dataset folder, if it moved since training")
    q.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0 ... (default: cpu)")
    q.set_defaults(func=_cmd_predict)
    for verb in sub.choices.values():
        verb.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                          help="import MODULE first, a module that registers your own methods, neurons or energy "
                               "models (repeatable; docs/training.md, 'Writing a method')")
    return p


def method_list(text: str) -> list:
    """argparse type of ``compare --methods``: comma-separated names, none twice (each trains into its own
    folder), at least one."""
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise argparse.ArgumentTypeError("--methods needs at least one method name")
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"--methods names {', '.join(twice)} more than once; each method is "
                                         "trained once per seed (--seeds N for repeats)")
    return names


def method_name(text: str) -> str:
    """argparse type of ``--method``: a registered method (else an error that names them and how to add one)."""
    from .training import methods as M

    try:
        M.method_class(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"invalid choice: {e}") from None
    return text


def load_plugins(argv) -> list:
    """Before the parser is built (it lists the methods and their options): import the plugins
    (:mod:`neuroq.plugins`: entry points of ``neuroq.plugins``, ``NEUROQ_IMPORT``) and the ``--import MODULE``
    modules of ``argv``, found on the Python path or in the current folder (searched last: it shadows nothing
    installed); returns those modules.  :class:`neuroq.plugins.PluginError` names one that fails."""
    import os

    from . import plugins

    pre = argparse.ArgumentParser(prog="neuroq", add_help=False, allow_abbrev=False)
    pre.add_argument("--import", dest="imports", action="append", default=[])
    imports = pre.parse_known_args(argv)[0].imports
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    plugins.load_default()
    for name in imports:
        plugins.import_module(name, "--import")
    return imports


def out_folder(path) -> None:
    """``--out`` of a verb that writes a folder: not an existing file."""
    import os

    if path is not None and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"--out {str(path)!r} is a file; give a folder (it is created if missing)")


def out_file(path) -> None:
    """``--out`` of a verb that writes one file: not an existing folder."""
    import os

    if path is not None and os.path.isdir(path):
        raise ValueError(f"--out {str(path)!r} is a folder; give a file name")


def check_device(device: str) -> str:
    """``device`` if torch can use it here, else a clear error."""
    import torch

    try:
        C.check_device_name(device)
    except ValueError:
        raise ValueError(f"--device must be cpu, cuda or cuda:N, got {device!r}") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available here (torch.cuda.is_available() is False); "
                         "use --device cpu")
    return device


def train_configs(args: argparse.Namespace):
    """``(method, TrainConfig)`` from parsed ``neuroq train`` options (refusing options the method lacks)."""
    from .training import methods as M

    cls = M.method_class(args.method)
    mine = set(C.field_names(cls.Config))
    for owner_cfg in M.configs().values():
        for name in C.given(args, owner_cfg):
            if name not in mine:
                opts = ", ".join(C.cli_name(n) for n in C.field_names(cls.Config)) or "none"
                raise ValueError(f"{C.cli_name(name)} does not apply to --method {args.method} "
                                 f"(its options: {opts})")
    method = cls(C.from_namespace(cls.Config, args))
    train = C.from_namespace(C.TrainConfig, args)
    check_device(train.device)
    return method, train


def _cmd_train(args):
    from .data import load_dataset
    from .training.loop import Trainer
    from .training.report import report_run

    out_folder(args.out)
    method, cfg = train_configs(args)
    data = load_dataset(cfg)
    if args.overwrite and args.resume:
        raise ValueError("--overwrite starts over and --resume continues: give one of them")
    tr = Trainer(method, data, cfg, out=args.out, resume=not args.overwrite, progress=not args.quiet)
    try:
        tr.fit()
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted after epoch {len(tr.history)} of {cfg.epochs}; run the same command to "
                          "resume") from None
    if tr.is_main and not args.no_report:
        report_run(method, tr.model, data, args.out, tr.device)
    tr.close()


def _cmd_compare(args):
    from .training import methods as M
    from .training.compare import applicable_methods, compare, markdown_table

    train = C.from_namespace(C.TrainConfig, args)
    check_device(train.device)
    options = {}
    for cfg in M.configs().values():
        options.update(C.given(args, cfg))
    names = args.methods
    if names is None:
        from .data import load_dataset

        names = applicable_methods(load_dataset(train, limit_train=1, limit_test=1).kind)
    for name in names:
        M.method_class(name)  # unknown: the registered ones and how to add one
    for k in options:
        if not any(k in C.field_names(M.method_class(m).Config) for m in names if m in M.available()):
            raise ValueError(f"{C.cli_name(k)} applies to none of the compared methods ({', '.join(names)})")
    summary = compare(names, train, args.out, seeds=args.seeds, options=options, jobs=args.jobs, threads=args.threads,
                      meter=dict(samples=args.samples, e_ac=args.e_ac, e_mac=args.e_mac, conv_fanout=args.conv_fanout,
                                 **({"energy": args.energy} if args.energy else {})),
                      progress=not args.quiet)
    print(markdown_table(summary))
    print(f"wrote {args.out}/compare.json and {args.out}/frontier.png")


def _load(args):
    from .training.checkpoint import checkpoint_path, load_run

    check_device(args.device)
    return load_run(checkpoint_path(args.checkpoint), args.device, args.data_dir)


def _test_slice(data, start, n, what):
    import torch

    from .data import batches

    if not 0 <= start < len(data.test):
        raise ValueError(f"{what}={start} is out of range: the test set has {len(data.test)} samples")
    x, y = next(batches(data.test, torch.arange(start, min(start + n, len(data.test))), n))
    return x, y


def _energy_names() -> list:
    from .energy import energy_models

    return energy_models()


def energy_spec(text: str) -> str:
    """argparse type of ``--energy``: comma-separated registered models, each ``name[:key=value...]``."""
    from .energy import get_energy_model

    specs = [t.strip() for t in text.split(",") if t.strip()]
    if not specs:
        raise argparse.ArgumentTypeError("--energy needs at least one energy model name")
    twice = sorted({t for t in specs if specs.count(t) > 1})
    if twice:
        raise argparse.ArgumentTypeError(f"--energy names {', '.join(twice)} more than once")
    for t in specs:
        try:
            get_energy_model(t)
        except (ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(f"--energy {t!r}: {e}") from None
    return ",".join(specs)


def _cmd_energy(args):
    from pathlib import Path

    from .energy import E_AC_PJ, E_MAC_PJ
    from .training.checkpoint import checkpoint_path
    from .training.report import inference_model, meter_run, write_energy_report

    out_file(args.out)
    method, model, data, cfg = _load(args)
    net = inference_model(method, model, args.device)
    meter = meter_run(method, net, data.test, args.device, args.samples, args.batch_size,
                      e_ac=E_AC_PJ if args.e_ac is None else args.e_ac,
                      e_mac=E_MAC_PJ if args.e_mac is None else args.e_mac, conv_fanout=args.conv_fanout,
                      energy=args.energy or ",".join(_energy_names()))
    out = Path(args.out) if args.out else checkpoint_path(args.checkpoint).parent / "energy.json"
    rep = write_energy_report(meter, method, data, out, args.device, T=method.T, checkpoint=str(args.checkpoint))
    print(f"{method.name} on {data.name}, {rep['samples']} test samples, T={method.T}")
    print(meter.table())
    for m in rep["energy_models"]:
        info = rep["energy_models"][m]["model"]
        print(f"\n{info['title']} ({info['source']}; {info['technology']}; {info['precision']})")
        print(meter.table(model=m))
    if rep["neurons"]:
        print("firing rates: " + ", ".join(f"{k} {d['firing_rate']:.3f}" for k, d in rep["neurons"].items()))
    print(f"wrote {out}")


def _cmd_viz(args):
    from pathlib import Path

    import matplotlib.pyplot as plt

    from . import viz
    from .training.checkpoint import checkpoint_path
    from .training.report import inference_model, meter_run, raster_recording

    method, model, data, cfg = _load(args)
    net = inference_model(method, model, args.device)
    K = args.sample
    x, y = _test_slice(data, K, 1, "--sample")
    x = x.to(args.device)
    out = Path(args.out or checkpoint_path(args.checkpoint).parent)
    out_folder(out)
    make_folder(out)
    kinds = [k for k in VIZ_KINDS if k != "all"] if args.kind == "all" else [args.kind]
    scale = {"auto": "auto", "log": True, "linear": False}[args.scale]
    tag = f"{method.name} on {data.name}, test sample {K} (label {int(y[0])})"
    rec = viz.record(net, method.record_input(x), v="membrane" in kinds)
    names = rec.labels
    written = []

    def save(fig, name):
        written.extend(viz.save(fig, out / name, formats=args.formats, dpi=args.dpi))

    def skip(msg):
        if args.kind != "all":
            raise ValueError(msg)
        print(f"note: {msg}")

    for kind in kinds:
        if kind in ("raster", "rates", "membrane", "maps", "animation") and not rec:
            skip(f"{method.name} model has no spiking neurons: no {kind} plot")
            continue
        if kind == "raster":  # one sample over time, or samples for a one-step network (as train's raster.png)
            spikes, title = raster_recording(method, net, data, K, args.device)
            save(viz.raster(spikes, max_neurons=args.max_neurons, select=args.select, title=title), f"raster_{K}.png")
        elif kind == "rates":
            xb, _ = _test_slice(data, 0, args.samples, "--samples")
            batch = viz.record(net, method.record_input(xb.to(args.device)))
            save(viz.firing_rates(batch, title=f"{method.name} on {data.name}: firing rates over "
                                               f"{len(xb)} test samples"), "rates.png")
        elif kind == "membrane":
            if not rec.v:
                skip(f"{method.name} model's neurons keep no membrane potential: no membrane plot")
                continue
            for layer in rec.v:
                axes = viz.membrane_trace(rec, layer=layer, stacked=True, title=f"{tag}, {names.get(layer, layer)}")
                save(axes[0].figure, f"membrane_{K}_{layer.replace('.', '_').replace('/', '_')}.png")
        elif kind == "maps":
            conv = [k for k, t in rec.items() if t.dim() == 5]
            if not conv:
                skip(f"{method.name} model has no convolutional spiking layer: no feature maps")
                continue
            for layer in conv:
                save(viz.feature_maps(rec, layer=layer, title=tag),  # the figure names the layer itself
                     f"maps_{K}_{layer.replace('.', '_').replace('/', '_')}.png")
        elif kind == "energy":
            if args.energy:
                meter = meter_run(method, net, data.test, args.device, args.samples, energy=args.energy)
                for m in meter.energy_models:
                    save(viz.energy_components(meter, model=m.name, log=scale, title=f"{method.name} on {data.name}: energy per "
                                                 f"sample under {m.name} ({meter.samples} test samples)"),
                         f"energy_{m.name}.png")
            else:
                meter = meter_run(method, net, data.test, args.device, args.samples)
                save(viz.energy_bars(meter, log=scale, title=f"{method.name} on {data.name}: energy per sample "
                                                  f"({meter.samples} test samples)"), "energy.png")
        elif kind == "animation":
            fig = viz.animate_raster(rec, out / f"raster_{K}.gif", max_neurons=args.max_neurons, select=args.select,
                                     title=tag)
            plt.close(fig)
            written.append(out / f"raster_{K}.gif")
    for p in written:
        print(p)


def _cmd_report(args):
    from .report import write_report

    check_device(args.device)
    out_file(args.out)
    try:
        out = write_report(args.path, args.out, samples=args.samples, marks_max=args.max_marks, device=args.device,
                           data_dir=args.data_dir, energy_samples=args.energy_samples, backend=args.backend)
    except ImportError as e:  # the report extra is missing: say which, in one line (status 2)
        if "neuroq[report]" not in str(e):
            raise
        raise ValueError(str(e)) from None
    print(f"wrote {out}")


def read_samples(path):
    """The samples in ``path`` (``--input`` of ``neuroq predict``): a ``.npy`` array, a ``.npz`` archive (its only
    array, or the one named ``x``) or a ``.pt`` tensor, as a float tensor; anything else is an error naming the
    file and the formats."""
    import pickle
    import zipfile
    from pathlib import Path

    import numpy as np
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--input {str(path)!r}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            x = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                if "x" not in keys and len(keys) != 1:
                    raise ValueError(f"--input {str(path)!r} holds the arrays {keys}: name the samples x")
                x = z["x" if "x" in keys else keys[0]]
        elif suffix == ".pt":
            x = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"--input {str(path)!r} holds a {type(x).__name__}, not a tensor")
        else:
            raise ValueError(f"--input {str(path)!r}: expected a .npy, .npz or .pt file of samples")
    except ValueError as e:
        if str(e).startswith("--input"):
            raise
        raise ValueError(f"--input {str(path)!r} is not a readable {suffix} file ({str(e).splitlines()[0]})") from None
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise ValueError(f"--input {str(path)!r} is not a readable {suffix} file ({str(e).splitlines()[0]})") from None
    x = torch.as_tensor(x)
    if x.dtype == torch.bool or x.is_complex() or not (x.is_floating_point() or x.dtype in (
            torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise ValueError(f"--input {str(path)!r}: samples must be real numbers, got dtype {x.dtype}")
    return x.to(torch.get_default_dtype())


def _cmd_predict(args):
    import csv
    import json
    from pathlib import Path

    import torch

    from .io import atomic_write_text
    from .training.checkpoint import checkpoint_path, load_run

    check_device(args.device)
    out = Path(args.out) if args.out else None
    out_file(out)
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"--out {str(out)!r}: expected a .json or .csv file")
    x = read_samples(args.input)
    run = load_run(checkpoint_path(args.checkpoint), args.device, args.data_dir)
    if not torch.isfinite(x).all():
        raise ValueError(f"--input {args.input!r} holds NaN or infinite values")
    one = tuple(x.shape) == tuple(run.data.in_shape)
    xs = x.unsqueeze(0) if one else x
    if xs.dim() == 0 or not len(xs):
        raise ValueError(f"--input {args.input!r} holds no samples")
    with torch.no_grad():
        scores = torch.cat([run.predict(xs[i:i + args.batch_size]).float().cpu()
                            for i in range(0, len(xs), args.batch_size)])
    pred = scores.argmax(1)
    for i, (c, s) in enumerate(zip(pred.tolist(), scores.max(1).values.tolist())):
        print(f"{i}\t{c}\t{s:.6g}")
    if out is not None:
        make_folder(out.parent)
        if out.suffix.lower() == ".json":
            text = json.dumps(dict(run=str(checkpoint_path(args.checkpoint)), method=run.method.name,
                                   dataset=run.data.name, input=str(args.input), predictions=pred.tolist(),
                                   scores=scores.tolist()), indent=1)
        else:
            import io

            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["index", "prediction"] + [f"score_{k}" for k in range(scores.shape[1])])
            for i, (c, row) in enumerate(zip(pred.tolist(), scores.tolist())):
                w.writerow([i, c] + [f"{v:.9g}" for v in row])
            text = buf.getvalue()
        atomic_write_text(out, text)
        print(f"wrote {out}")


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status: 0 on success, 2 after
    printing a ``ValueError``, ``TypeError`` or ``OSError`` as a one-line error (argparse exits on bad usage).
    The plugins and the ``--import`` modules are imported first (:func:`load_plugins`); one that fails to import
    is a one-line error naming it (status 2)."""
    import os

    from . import plugins

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        imports = load_plugins(argv)
        parser = build_parser()
    except plugins.PluginError as e:
        print(f"neuroq: error: {e}", file=sys.stderr)
        return 2
    except argparse.ArgumentError as e:
        print(f"neuroq: error: an option of a registered method clashes with one of neuroq's ({e}): rename that "
              "field of the method's Config", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    env = os.environ.get(plugins.ENV)
    if imports:  # the processes a command starts (compare's workers) import them too
        os.environ[plugins.ENV] = ",".join(dict.fromkeys(plugins.env_modules() + imports))
    try:
        args.func(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"neuroq {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"neuroq {args.command}: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"neuroq {args.command}: interrupted; run the same command to resume (finished work is kept)",
              file=sys.stderr)
        return 130
    finally:
        if imports and env is None:
            os.environ.pop(plugins.ENV, None)
        elif imports:
            os.environ[plugins.ENV] = env
    return 0


if __name__ == "__main__":
    sys.exit(main())
