"""``neuroq report``: one self-contained, interactive HTML page of a training run, a checkpoint or a
``neuroq compare`` folder, built on :mod:`neuroq.viz.interactive` (Bokeh, the ``report`` extra).

For a comparison the page opens on the accuracy-energy frontier (one panel per energy model; hover
for method, seed, accuracy and energy; click a point to open its method) and a table of the methods,
with one tab per method. Each run shows:

* the spike raster of every spiking layer for the first ``samples`` test samples (default 16), stacked
  on a shared, linked time axis (``T = 1`` methods: neurons × samples), with hover (layer, neuron,
  time step, sample) and the membrane potential of a clicked neuron where the model keeps it;
* the firing rates: population rate per step, mean rate per step, histogram of the neurons' rates;
* the energy per inference of every layer, by component, under each energy model of its ``energy.json``
  (metered when the run has none);
* its metrics (accuracy per epoch) and configuration.

The page holds BokehJS and all data inline and a Content-Security-Policy that allows no request, so it
opens offline (:func:`neuroq.viz.save_html`).

    neuroq report runs/demo                  # a compare folder -> runs/demo/report.html
    neuroq report runs/lif --samples 32      # a run folder
    neuroq report runs/lif/checkpoint.pt --out lif.html
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Optional

from .io import make_folder
from .training.report import METER_SAMPLES

#: test samples in each raster
SAMPLES = 16
#: test samples metered when a run has no energy.json
ENERGY_SAMPLES = METER_SAMPLES  # one default for every energy figure of a run (training.report)
#: file name of the page in the folder it describes
REPORT = "report.html"
#: how the rasters are drawn: WebGL where the browser has it in hardware, else canvas ("auto"), or either always
BACKENDS = ("auto", "webgl", "canvas")

_CSS = """
<style>
  .nq { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; font-size: 13px; color: #222; }
  .nq h1 { font-size: 20px; margin: 6px 0 4px 0; }
  .nq h2 { font-size: 16px; margin: 14px 0 4px 0; }
  .nq h3 { font-size: 14px; margin: 10px 0 2px 0; }
  .nq table { border-collapse: collapse; margin: 4px 0; }
  .nq td, .nq th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
  .nq th { background: #f4f4f4; }
  .nq td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .nq .muted { color: #7f7f7f; }
</style>
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _div(body: str, width: int = 1000, name: Optional[str] = None):
    from bokeh.models import Div

    return Div(text=f"{_CSS}<div class='nq'>{body}</div>", width=width, name=name)


def _table(head, rows, num=()) -> str:
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td class='num'>{_e(c)}</td>" if i in num else f"<td>{_e(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    return "".join(out) + "</table>"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def _kv_table(d: dict, head=("option", "value")) -> str:
    return _table(head, [(k, _value(v)) for k, v in d.items()])


def report_kind(path) -> tuple:
    """``("compare", folder)`` for a ``neuroq compare`` folder (or its ``compare.json``), ``("run", checkpoint)``
    for a run folder or a checkpoint file; a ``ValueError`` otherwise."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{str(p)!r} does not exist")
    if p.is_dir() and (p / "compare.json").is_file():
        return "compare", p
    if p.is_file() and p.name == "compare.json":
        return "compare", p.parent
    if p.is_dir() and (p / "checkpoint.pt").is_file():
        return "run", p / "checkpoint.pt"
    if p.is_file() and p.suffix == ".pt":
        return "run", p
    raise ValueError(f"{str(p)!r} is neither a `neuroq compare` folder (with compare.json), a run folder (with "
                     "checkpoint.pt) nor a checkpoint file")


def _metrics(ckpt: Path) -> dict:
    """``metrics.json`` beside the checkpoint, else what the checkpoint itself holds (its history)."""
    f = ckpt.parent / "metrics.json"
    if f.is_file():
        return json.loads(f.read_text())
    from .training.checkpoint import read_run

    ck = read_run(ckpt)
    hist = list(ck.get("history") or [])
    last = hist[-1] if hist else {}
    return dict(method=ck.get("method"), epochs_done=ck.get("epoch"), final_test_acc=last.get("test_acc"),
                history=hist)


def _energy_report(ckpt: Path, method, net, data, device, energy_samples: int) -> dict:
    f = ckpt.parent / "energy.json"
    if f.is_file():
        return json.loads(f.read_text())
    from .energy import energy_models
    from .training.report import meter_run

    meter = meter_run(method, net, data.test, device, samples=energy_samples, energy=",".join(energy_models()))
    return meter.report()


def _curves(history: list, name: str, width: int):
    from bokeh.layouts import row
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    from .viz.interactive import _style_figure
    from .viz.style import PALETTE

    ep = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    acc = figure(frame_width=width // 2 - 110, frame_height=170, title="accuracy per epoch", x_axis_label="epoch",
                 y_axis_label="accuracy (%)", tools="pan,wheel_zoom,reset,save", name=f"{name}:accuracy")
    for j, key in enumerate(("train_acc", "val_acc", "test_acc")):
        ys = [None if h.get(key) is None else 100 * h[key] for h in history]
        if any(y is not None for y in ys):
            ys = [float("nan") if y is None else y for y in ys]
            acc.line(ep, ys, color=PALETTE[j], line_width=2, legend_label=key.replace("_acc", ""))
            acc.scatter(ep, ys, color=PALETTE[j], size=4)
    acc.add_tools(HoverTool(tooltips=[("epoch", "$x{0}"), ("accuracy", "$y{0.00} %")]))
    loss = figure(frame_width=width // 2 - 110, frame_height=170, title="training loss per epoch", x_axis_label="epoch",
                  y_axis_label="loss", tools="pan,wheel_zoom,reset,save", name=f"{name}:loss")
    ys = [h.get("train_loss") for h in history]
    if any(y is not None for y in ys):
        ys = [float("nan") if y is None else y for y in ys]
        loss.line(ep, ys, color=PALETTE[1], line_width=2)
        loss.scatter(ep, ys, color=PALETTE[1], size=4)
    for f in (acc, loss):
        _style_figure(f)
    if acc.legend:
        acc.legend.location = "bottom_right"
        acc.legend.label_text_font_size = "10px"
    return row(acc, loss)


def run_section(ckpt, name: str = "run", samples: int = SAMPLES, marks_max: Optional[int] = None,
                trace_max: Optional[int] = None, device: str = "cpu", data_dir=None,
                energy_samples: int = ENERGY_SAMPLES, backend: str = "auto", heading: Optional[str] = None):
    """The report of one run (its checkpoint file ``ckpt``) as a Bokeh layout, and a summary of it
    (``{method, dataset, T, accuracy, path, spikes}``)."""
    import torch
    from bokeh.layouts import column

    from . import viz
    from .data import batches
    from .training.checkpoint import load_run
    from .training.config import to_dict
    from .training.report import inference_model
    from .viz import interactive as I

    ckpt = Path(ckpt)
    method, model, data, train = load_run(ckpt, device, data_dir)
    net = inference_model(method, model, device)
    n = min(int(samples), len(data.test))
    x, y = next(batches(data.test, torch.arange(n), n))
    rec = viz.record(net, method.record_input(x.to(device)), v=True)
    labels = viz.layer_labels(net, rec)
    ys = [int(v) for v in y.tolist()]
    metrics = _metrics(ckpt)
    rep = _energy_report(ckpt, method, net, data, device, energy_samples)
    width = I.WIDTH
    kw = dict(sample_labels=ys)
    if rec:
        raster = I.interactive_raster(rec, name=name, backend="canvas" if backend == "canvas" else "webgl",
                                      marks_max=I.MARKS_MAX if marks_max is None else marks_max,
                                      trace_max=I.TRACE_MAX if trace_max is None else trace_max, **kw)
        rates = I.interactive_rates(rec, x_range=raster.select_one({"name": f"{name}:time"}), name=f"{name}:rates",
                                    **kw)
    else:  # a model without spiking neurons (the ANN baseline): a note instead of the spike views
        from bokeh.models import Div

        raster = column(Div(text="<p><i>no spiking neurons recorded (the model has no spiking layers)</i></p>",
                            name=f"{name}:empty"), name=name)
        rates = None
    energy = I.interactive_energy(rep, labels=labels, name=f"{name}:energy")
    spikes = {k: int((t > 0).sum()) for k, t in rec.items()}
    acc = metrics.get("final_test_acc")
    models = rep.get("energy_models") or {}
    per = "_per_sample" if rep.get("samples") else ""
    e_rows = [(m, _fmt_pj(v["total"].get("energy_pj" + per))) for m, v in models.items()] or \
        [("compute", _fmt_pj(rep["total"].get("energy_pj" + per)))]
    fr = rep.get("total", {}).get("firing_rate")
    facts = [("method", f"{method.name}: {type(method).help}"), ("dataset", data.name),
             ("time steps T", method.T), ("test accuracy", "–" if acc is None else f"{100 * acc:.2f} %"),
             ("energy per inference", "; ".join(f"{m} {v}" for m, v in e_rows)),
             ("firing rate (metered samples)", "–" if fr is None else f"{fr:.3f}"),
             ("parameters", f"{sum(p.numel() for p in model.parameters()):,}"),
             ("epochs", metrics.get("epochs_done", "–")), ("run", str(ckpt.parent))]
    head = (f"<h2>{_e(heading or f'{method.name} on {data.name}')}</h2>"
            + _table(("", ""), facts).replace("<tr><th></th><th></th></tr>", ""))
    parts = [_div(head, name=f"{name}:summary"),
             _div(f"<h3>Spikes of every spiking layer ({n} test samples)</h3>")]
    parts.append(raster)
    if rates is not None:
        parts += [_div("<h3>Firing rates</h3>"), rates]
    e_note = (f"metered on {rep.get('samples')} test samples" if rep.get("samples") else "")
    parts += [_div(f"<h3>Energy per inference, by layer and component</h3><span class='muted'>{_e(e_note)}; "
                   "accounting numbers from the energy models, not measured power (docs/energy.md)</span>"), energy]
    hist = metrics.get("history") or []
    mtab = {k: v for k, v in metrics.items() if k not in ("history", "train", "method_config", "args")
            and not isinstance(v, (list, dict))}
    parts.append(_div("<h3>Metrics</h3>" + _kv_table(mtab, ("metric", "value"))))
    if hist:
        parts.append(_curves(hist, name, width))
    parts.append(_div("<h3>Configuration</h3><table><tr><td>" + "<b>training</b>" + _kv_table(to_dict(train))
                      + "</td><td><b>method</b>" + _kv_table(to_dict(method.config)) + "</td></tr></table>"))
    summary = dict(method=method.name, dataset=data.name, T=method.T, accuracy=acc, path=str(ckpt.parent),
                   spikes=spikes)
    return column(*parts, name=name), summary


def _fmt_pj(e) -> str:
    if e is None:
        return "–"
    from .viz.energy_plots import energy_unit

    unit, f = energy_unit([e])
    return f"{e / f:.4g} {unit}"


def _key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", str(name)) or "section"


def _compare_sections(folder: Path, **kw):
    """``([(key, title, layout)], page title)`` of a compare folder: the overview, then one section per method."""
    from bokeh.layouts import column
    from bokeh.models import TabPanel, Tabs

    from .viz import interactive as I
    from .viz.style import color

    summary = json.loads((folder / "compare.json").read_text())
    methods = summary["methods"]
    models = list(next(iter(methods.values())).get("energy_models") or {"compute": None})
    fronts = summary.get("pareto_fronts") or {"compute": summary.get("pareto_front", [])}
    frontier = I.interactive_frontier(summary, link=True, name="frontier")
    rows = []
    for m, r in methods.items():
        sd = f" ± {100 * r['accuracy_std']:.2f}" if r.get("accuracy_std") else ""
        cells = [m, r["T"], f"{100 * r['accuracy']:.2f}{sd}"]
        for model in models:
            em = (r.get("energy_models") or {}).get(model)
            cells.append(_fmt_pj(em["energy_pj"] if em else r["energy_pj"]))
        cells += ["–" if r.get("firing_rate") is None else f"{r['firing_rate']:.3f}", f"{r['params']:,}",
                  ", ".join(k for k in models if m in fronts.get(k, ())) or "–"]
        rows.append(cells)
    t = summary.get("train", {})
    counts = {r.get("metered_samples") for row in methods.values() for r in row.get("runs", [])}
    metered = (f"{counts.pop()}" if len(counts) == 1 and None not in counts
               else f"up to {summary['meter']['samples']}")  # compare.json files from before the count was kept
    legend = " ".join(f"<span style='color:{color(i)};font-size:16px'>●</span> {_e(m)} (T = {methods[m]['T']})&nbsp;"
                      for i, m in enumerate(methods))
    head = (f"<h1>neuroq compare: {_e(summary.get('dataset'))}, {len(methods)} methods</h1>"
            f"<span class='muted'>{_e(folder)}: {t.get('epochs')} epochs, batch {t.get('batch_size')}, lr {t.get('lr')}, "
            f"{summary.get('seeds')} seed(s) per method; energy metered on {metered} test samples "
            "under each energy model (accounting numbers, not measured power).</span>"
            "<h2>Test accuracy against energy per inference, one panel per energy model</h2>"
            f"<div>{legend}&nbsp;&nbsp;<span class='muted'>- - Pareto front of the method means. Hover a point for its "
            "method, seed, accuracy and energy; click it to open the method's section.</span></div>")
    table = ("<h2>Methods</h2>" + _table(["method", "T", "test accuracy (%)"] + [f"{m} energy" for m in models]
                                         + ["firing rate", "parameters", "on the Pareto front under"], rows,
                                         num={1, 2, *range(3, 3 + len(models)), 3 + len(models), 4 + len(models)}))
    sections = [("overview", "overview", column(_div(head), frontier, _div(table), name="overview"))]
    for m, r in methods.items():
        runs = []
        for run in r["runs"]:
            seed = run["seed"]
            where = folder / m / f"seed{seed}"
            if not (where / "checkpoint.pt").is_file() and run.get("out"):
                where = Path(run["out"])
            if not (where / "checkpoint.pt").is_file():
                runs.append((seed, _div(f"<p>{_e(m)} seed {seed}: no checkpoint at {_e(folder / m / f'seed{seed}')}</p>")))
                continue
            lay, _ = run_section(where / "checkpoint.pt", name=f"{m}/seed{seed}",
                                 heading=f"{m} (seed {seed}) on {summary.get('dataset')}", **kw)
            runs.append((seed, lay))
        child = runs[0][1] if len(runs) == 1 else Tabs(tabs=[TabPanel(title=f"seed {s}", child=c) for s, c in runs])
        sections.append((_key(m), m, child))
    return sections, f"neuroq report: {summary.get('dataset')} comparison ({len(methods)} methods)"


_PAGE_JS = """
(function () {
  const loaded = {};
  const keys = KEYS;
  // backend "auto": WebGL where the browser draws it in hardware, canvas where WebGL is missing or software
  // (SwiftShader, llvmpipe: there every WebGL frame is read back to the page, slower than canvas)
  const soft = (function () {
    try {
      const c = document.createElement("canvas");
      const gl = c.getContext("webgl2") || c.getContext("webgl");
      if (!gl) return true;
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
      const lose = gl.getExtension("WEBGL_lose_context");
      if (lose) lose.loseContext();
      return /swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
    } catch (e) { return true; }
  })();
  window.neuroq_backend = AUTO ? (soft ? "canvas" : "webgl") : "as built";
  function canvas_only(o) {
    if (Array.isArray(o)) { for (const v of o) canvas_only(v); return; }
    if (o === null || typeof o !== "object") return;
    if (o.output_backend === "webgl") o.output_backend = "canvas";
    for (const k in o) { const v = o[k]; if (v !== null && typeof v === "object") canvas_only(v); }
  }
  function open(name) {
    const key = keys[name] || name;
    const sec = document.getElementById("nq-sec-" + key);
    if (!sec) return false;
    for (const s of document.querySelectorAll(".nq-sec")) s.hidden = (s !== sec);
    for (const a of document.querySelectorAll(".nq-nav a")) a.classList.toggle("on", a.dataset.key === key);
    if (!loaded[key]) {
      const item = JSON.parse(document.getElementById("nq-item-" + key).textContent);
      if (AUTO && soft) canvas_only(item.doc);
      loaded[key] = Bokeh.embed.embed_item(item, "nq-root-" + key);
    }
    if (decodeURIComponent(location.hash.slice(1)) !== key && document.querySelector(".nq-nav")) location.hash = key;
    return true;
  }
  window.neuroq_open = open;
  window.addEventListener("hashchange", () => open(decodeURIComponent(location.hash.slice(1))));
  document.addEventListener("DOMContentLoaded", () => { if (!open(decodeURIComponent(location.hash.slice(1)))) open(FIRST); });
})();
"""

_PAGE_CSS = """
  body { margin: 0; font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; }
  .nq-nav { position: sticky; top: 0; z-index: 10; background: #fafafa; border-bottom: 1px solid #ddd;
            padding: 6px 10px; font-size: 14px; }
  .nq-nav a { display: inline-block; margin-right: 4px; padding: 3px 10px; border-radius: 4px; color: #0072B2;
              text-decoration: none; border: 1px solid transparent; }
  .nq-nav a.on { background: #0072B2; color: #fff; }
  .nq-nav a:hover { border-color: #0072B2; }
  .nq-sec { padding: 6px 10px 30px 10px; }
"""


def page_html(sections, title: str, backend: str = "auto") -> str:
    """One self-contained HTML page of ``sections`` (``[(key, label, Bokeh layout)]``): BokehJS and every
    section's data inline, a navigation bar when there is more than one section, each section drawn
    when it is first opened (``#key`` in the address opens it; ``window.neuroq_open(key)`` from a
    plot), and the Content-Security-Policy of :func:`neuroq.viz.save_html`. ``backend="auto"`` draws
    the WebGL figures on canvas in a browser whose WebGL is missing or software (``window.neuroq_backend``
    says which); ``"webgl"`` or ``"canvas"`` keep the figures as built."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    from bokeh.embed import json_item
    from bokeh.embed.bundle import bundle_for_objs_and_resources
    from bokeh.resources import INLINE

    from .viz.interactive import CSP

    items = [(key, label, json_item(lay)) for key, label, lay in sections]
    js, css = bundle_for_objs_and_resources([lay for _, _, lay in sections], INLINE)
    nav = ""
    if len(sections) > 1:
        nav = ("<nav class='nq-nav'>" + "".join(f"<a href='#{_e(k)}' data-key='{_e(k)}'>{_e(lab)}</a>"
                                                  for k, lab, _ in sections) + "</nav>")
    body = []
    for key, _, item in items:
        data = json.dumps(item).replace("<", "\\u003c")
        body.append(f"<section class='nq-sec' id='nq-sec-{_e(key)}' hidden><div id='nq-root-{_e(key)}'></div></section>\n"
                    f"<script type='application/json' id='nq-item-{_e(key)}'>{data}</script>")
    keys = {lab: key for key, lab, _ in sections}
    script = (_PAGE_JS.replace("KEYS", json.dumps(keys).replace("<", "\\u003c"))
              .replace("FIRST", json.dumps(sections[0][0])).replace("AUTO", json.dumps(backend == "auto")))
    return ("<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">\n<title>{_e(title)}</title>\n"
            f"<style>{_PAGE_CSS}</style>\n{js}\n{css}\n</head>\n<body>\n{nav}\n" + "\n".join(body)
            + f"\n<script>{script}</script>\n</body>\n</html>\n")


def build_report(path, samples: int = SAMPLES, marks_max: Optional[int] = None, trace_max: Optional[int] = None,
                 device: str = "cpu", data_dir=None, energy_samples: int = ENERGY_SAMPLES, backend: str = "auto"):
    """The report of ``path`` (a compare folder, a run folder or a checkpoint) as ``([(key, label, Bokeh
    layout)], title)``: one section per run plus the overview of a comparison."""
    from .viz.interactive import require_bokeh

    require_bokeh()
    kind, where = report_kind(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    kw = dict(samples=samples, marks_max=marks_max, trace_max=trace_max, device=device, data_dir=data_dir,
              energy_samples=energy_samples, backend=backend)
    if kind == "compare":
        return _compare_sections(where, **kw)
    lay, s = run_section(where, name="run", **kw)
    return [("run", s["method"], lay)], f"neuroq report: {s['method']} on {s['dataset']}"


def write_report(path, out=None, **kw) -> Path:
    """Write the report of ``path`` (a compare folder, a run folder or a checkpoint; options as
    :func:`build_report`) to ``out`` (default: ``report.html`` in that folder, beside a checkpoint file);
    returns the file written."""
    sections, title = build_report(path, **kw)
    kind, where = report_kind(path)
    if out is None:
        out = (where if kind == "compare" else where.parent) / REPORT
    out = Path(out)
    if out.is_dir():
        out = out / REPORT
    make_folder(out.parent)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page_html(sections, title, kw.get("backend", "auto")), encoding="utf-8")
    os.replace(tmp, out)
    return out


__all__ = ["build_report", "write_report", "page_html", "run_section", "report_kind", "SAMPLES", "ENERGY_SAMPLES", "REPORT",
           "BACKENDS"]
