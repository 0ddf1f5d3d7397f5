"""How the interactive report scales: a page with more than a million spikes, measured in headless Chromium.

    python benchmarks/report_scale.py            # writes benchmarks/results/report_scale.json
    python benchmarks/report_scale.py --docs     # rewrites the measurements in docs/viz.md from that JSON

Three measurements, each in a fresh headless Chromium (the Debian ``chromium`` the browser tests use; without a GPU
it draws WebGL with SwiftShader, in software):

1. ``million``: a synthetic recording of three layers (8,192, 4,096 and 512 neurons), 16 samples of T = 20 steps,
   about 1.1 million spikes, with membrane potentials, built into a report page as ``neuroq report`` builds a run
   (raster with traces, rates; :func:`neuroq.report.page_html`). Recorded: spikes, file size, time to build it in
   Python, time from navigation to the drawn raster (median of ``--loads`` fresh loads; the target is < 3 s), and
   frame times of a scripted zoom and pan (range changes, each timed until two animation frames later, i.e. painted;
   run twice, the second time warmed up),
   with the report's default backend ``auto`` (canvas here: this browser's WebGL is software) and with WebGL forced.
2. ``marks``: the cost of drawing one mark per spike, the view below :data:`neuroq.viz.interactive.MARKS_MAX`: pages
   of 5,000 to 100,000 spikes all drawn as marks, WebGL and canvas, frame time of a zoom step.
3. the page's spike count and a drawn canvas are checked (not timed).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroq import viz  # noqa: E402
from neuroq.io import atomic_write_json, machine_info  # noqa: E402
from neuroq.viz import _browser  # noqa: E402
from neuroq.viz import interactive as I  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "report_scale.json"
FIND = "const find = (n) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name(n); if (m) return m; } return null; };"

# zoom in 8 steps to 1/16 of the time axis around its middle, pan 8 steps, zoom back out: each step is timed from
# the range change until two animation frames later (the frame after the one that painted it)
FRAMES = FIND + r"""
const done = arguments[arguments.length - 1];
const r = find(arguments[0]);
const s0 = r.start, e0 = r.end, c = (s0 + e0) / 2, w0 = e0 - s0;
const steps = [];
for (let i = 1; i <= 8; i++) { const w = w0 / Math.pow(2, i / 2); steps.push([c - w / 2, c + w / 2]); }
const w = w0 / 16;
for (let i = 1; i <= 8; i++) { const s = c - w / 2 + i * w / 4; steps.push([s, s + w]); }
for (let i = 7; i >= 0; i--) { const ww = w0 / Math.pow(2, i / 2); steps.push([c - ww / 2, c + ww / 2]); }
const times = [];
let k = 0;
function step() {
  if (k >= steps.length) { r.setv({start: s0, end: e0}); done(times); return; }
  const t0 = performance.now();
  r.setv({start: steps[k][0], end: steps[k][1]});
  requestAnimationFrame(() => requestAnimationFrame(() => { times.push(performance.now() - t0); k++; setTimeout(step, 0); }));
}
step();
"""


def synthetic_recording(S=16, T=20, sizes=((32, 16, 16), (64, 8, 8), (512,)), rates=(0.3, 0.25, 0.2), seed=0):
    """A recording of ``len(sizes)`` layers, ``[T, S, *size]`` spikes with a rate per layer that rises and falls
    over the steps (and membrane potentials), deterministic."""
    g = torch.Generator().manual_seed(seed)
    spikes, v, h, labels = {}, {}, {}, {}
    for i, (shape, rate) in enumerate(zip(sizes, rates)):
        k = str(2 * i + 1)
        wave = rate * (1.0 + 0.5 * torch.sin(torch.linspace(0, 3.14, T)))[:, None, None] / 1.3
        p = wave.expand(T, S, int(np.prod(shape))).reshape(T, S, *shape)
        s = (torch.rand(T, S, *shape, generator=g) < p).float()
        spikes[k] = s
        v[k] = torch.rand(T, S, *shape, generator=g) * (1 - s)
        h[k] = v[k] + s * (1.0 + torch.rand(T, S, *shape, generator=g) * 0.3)
        labels[k] = f"LIF {i + 1} ({'conv' if len(shape) > 1 else 'fc'} {'×'.join(map(str, shape))})"
    return viz.Recording(spikes, labels=labels, v=v, h=h, v_threshold={k: 1.0 for k in spikes})


def report_page(rec, path: Path, marks_max=None, backend="auto", rates=True) -> dict:
    """Build ``rec`` into a report page (as ``neuroq report`` builds a run's section) at ``path``; ``backend`` as
    ``neuroq report --backend`` (``auto``: WebGL where the browser has it in hardware, else canvas)."""
    from bokeh.layouts import column

    from neuroq.report import page_html

    t0 = time.perf_counter()
    raster = viz.interactive_raster(rec, name="run", backend="canvas" if backend == "canvas" else "webgl",
                                    marks_max=I.MARKS_MAX if marks_max is None else marks_max)
    parts = [raster]
    if rates:
        parts.append(viz.interactive_rates(rec, x_range=raster.select_one({"name": "run:time"}), name="run:rates"))
    html = page_html([("run", "synthetic", column(*parts))], "neuroq report: scale benchmark", backend=backend)
    path.write_text(html, encoding="utf-8")
    return dict(build_s=round(time.perf_counter() - t0, 3), file_bytes=path.stat().st_size)


def drawn_pixels(driver, name) -> int:
    """Non-white pixels of the plotting area of figure ``name`` in a screenshot."""
    import io

    from PIL import Image

    box = driver.execute_script(FIND + """
const pv = Bokeh.index.find_one(find(arguments[0])); const r = pv.el.getBoundingClientRect(); const f = pv.frame.bbox;
return [r.left + f.left, r.top + f.top, f.width, f.height];""", name)
    im = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L")
    x, y, w, h = (int(round(v)) for v in box)
    crop = np.asarray(im.crop((x + 2, y + 2, x + w - 2, y + h - 2)), dtype=float)
    return int((crop < 200).sum())


def measure_million(tmp: Path, loads: int, backend: str = "auto") -> dict:
    rec = synthetic_recording()
    spikes = {k: int((t > 0).sum()) for k, t in rec.items()}
    total = sum(spikes.values())
    assert total >= 1_000_000, total
    page = tmp / f"million_{backend}.html"
    built = report_page(rec, page, backend=backend)
    times = []
    with _browser.headless(1280, 1000) as d:
        for _ in range(loads):
            d.get("about:blank")
            times.append(_browser.load(d, page))
        errors = _browser.page_errors(d)
        drawn_with = d.execute_script(FIND + "return find(arguments[0]).output_backend", f"run:layer:{next(iter(rec))}")
        held = {k: d.execute_script(FIND + "return find(arguments[0]).data.x.length", f"run:spikes:{k}") for k in rec}
        titles = [d.execute_script(FIND + "return find(arguments[0]).title.text", f"run:layer:{k}") for k in rec]
        pixels = drawn_pixels(d, f"run:layer:{next(iter(rec))}")
        frames = d.execute_async_script(FRAMES, "run:time")
        again = d.execute_async_script(FRAMES, "run:time")  # the same zoom and pan once more: warmed up
        deep = d.execute_script(FIND + "const r = find('run:time'); r.setv({start: 9.5, end: 15.5});"
                                "return null;")
        time.sleep(0.5)
        deep_titles = [d.execute_script(FIND + "return find(arguments[0]).title.text", f"run:layer:{k}") for k in rec]
        requests = [u for u in _browser.requests(d) if not u.startswith(("file://", "data:", "blob:"))]
        errors += _browser.page_errors(d)
    del deep
    layers = {k: dict(label=rec.labels[k], neurons=int(np.prod(t.shape[2:])), spikes=spikes[k]) for k, t in rec.items()}
    return dict(backend=backend, drawn_with=drawn_with, samples=16, T=20, layers=layers, spikes=total, **built, file_mib=round(built["file_bytes"] / 2**20, 2),
                loads=loads, load_to_drawn_ms=[round(t) for t in times], load_to_drawn_ms_median=round(statistics.median(times)),
                target_ms=3000, target_met=statistics.median(times) < 3000,
                spikes_held_by_the_page=held, spikes_held_equal_recorded=held == spikes,
                first_view_titles=titles, first_raster_drawn_pixels=pixels,
                zoom_pan_frames=len(frames), frame_ms_median=round(statistics.median(frames), 1),
                frame_ms_p90=round(float(np.percentile(frames, 90)), 1), frame_ms_max=round(max(frames), 1),
                frame_ms=[round(f, 1) for f in frames],
                again_frame_ms_median=round(statistics.median(again), 1),
                again_frame_ms_p90=round(float(np.percentile(again, 90)), 1), again_frame_ms_max=round(max(again), 1),
                again_frame_ms=[round(f, 1) for f in again], zoomed_to_6_columns_titles=deep_titles,
                requests_leaving_the_page=requests, javascript_errors=errors)


def measure_marks(tmp: Path, sizes=(5_000, 20_000, 100_000)) -> list:
    """Every spike drawn as a mark (marks_max above the count): frame times of the zoom and pan, WebGL and canvas."""
    out = []
    g = torch.Generator().manual_seed(1)
    for n in sizes:
        rate = n / (16 * 8 * 2048)
        rec = viz.Recording({"1": (torch.rand(8, 16, 2048, generator=g) < rate).float()}, labels={"1": "LIF 1 (fc 2048)"})
        count = int((rec["1"] > 0).sum())
        for backend in ("webgl", "canvas"):
            page = tmp / f"marks_{n}_{backend}.html"
            built = report_page(rec, page, marks_max=10**9, backend=backend, rates=False)
            with _browser.headless(1280, 1000) as d:
                ms = _browser.load(d, page)
                frames = d.execute_async_script(FRAMES, "run:time")
                errors = _browser.page_errors(d)
            out.append(dict(spikes=count, backend=backend, file_bytes=built["file_bytes"], load_to_drawn_ms=round(ms),
                            frame_ms_median=round(statistics.median(frames), 1),
                            frame_ms_p90=round(float(np.percentile(frames, 90)), 1), frame_ms_max=round(max(frames), 1),
                            javascript_errors=errors))
            print(f"  marks: {count:,} spikes, {backend}: load {ms:.0f} ms, frame median "
                  f"{statistics.median(frames):.0f} ms", flush=True)
    return out


BEGIN, END = "<!-- report-scale:begin -->", "<!-- report-scale:end -->"
DOCS = ROOT / "docs" / "viz.md"


def docs_block(res: dict) -> str:
    """The measurements of ``docs/viz.md`` (between the report-scale markers), from the JSON."""
    m, w = res["million"], res["million_webgl_forced"]
    mach = res["machine"]
    sizes = ", ".join(f"{v['neurons']:,}" for v in m["layers"].values())
    lines = [f"Measured by `python benchmarks/report_scale.py` (`benchmarks/results/report_scale.json`) in headless "
             f"{res['browser'].split(' built')[0]} (WebGL in software: SwiftShader) with Bokeh {res['bokeh']} on "
             f"{mach['processor']}, {mach['cpu_count']} CPUs:", "",
             f"* **{m['spikes']:,} spikes** (3 layers of {sizes} "
             f"neurons, {m['samples']} samples × T = {m['T']}, with membrane traces): a {m['file_mib']} MiB page, built "
             f"in {m['build_s']:.1f} s; **drawn {m['load_to_drawn_ms_median'] / 1000:.2f} s after the navigation starts** "
             f"(median of {m['loads']} loads: {', '.join(f'{t / 1000:.2f}' for t in m['load_to_drawn_ms'])} s; "
             f"target < {m['target_ms'] / 1000:.0f} s: {'met' if m['target_met'] else '**not met**'}); the page holds "
             f"every spike ({'equal to the recording' if m['spikes_held_equal_recorded'] else '**not** equal to the recording'}).",
             f"* zoom and pan of that page ({m['zoom_pan_frames']} range changes, each timed until painted; "
             f"{m['drawn_with']}, the `auto` choice here): median {m['frame_ms_median']:.0f} ms, 90th percentile "
             f"{m['frame_ms_p90']:.0f} ms, worst {m['frame_ms_max']:.0f} ms on the first pass; "
             f"{m['again_frame_ms_median']:.0f} / {m['again_frame_ms_p90']:.0f} / {m['again_frame_ms_max']:.0f} ms "
             f"once warm. With WebGL forced (read back from software every frame): median {w['frame_ms_median']:.0f} ms, "
             f"worst {w['frame_ms_max']:.0f} ms.",
             "* one mark per spike (`marks_max` above the count; a page of one layer of 2,048 neurons, 16 samples × "
             "T = 8), frame time median / worst:"]
    for n in sorted({r["spikes"] for r in res["marks"]}):
        by = {r["backend"]: r for r in res["marks"] if r["spikes"] == n}
        lines.append(f"  * {n:,} spikes: canvas {by['canvas']['frame_ms_median']:.0f} / {by['canvas']['frame_ms_max']:.0f} ms, "
                     f"WebGL {by['webgl']['frame_ms_median']:.0f} / {by['webgl']['frame_ms_max']:.0f} ms;")
    lines[-1] = lines[-1].rstrip(";") + "."
    lines += ["", "A frame time includes two animation frames (at least 33 ms at 60 Hz). Only this browser, without a "
              "GPU, was measured; where WebGL runs in hardware `auto` draws with it, and that was not measured here."]
    return "\n".join(lines)


def write_docs(res: dict) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {BEGIN} ... {END} block")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOCS.write_text(head + BEGIN + "\n" + docs_block(res) + "\n" + END + tail)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", type=int, default=3, help="fresh loads of the million-spike page (default: 3)")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--no-marks", action="store_true", help="skip the marks measurement")
    ap.add_argument("--docs", action="store_true", help="only rewrite the block of docs/viz.md from --out, measure nothing")
    args = ap.parse_args(argv)
    if args.docs:
        write_docs(json.loads(Path(args.out).read_text()))
        print(f"rewrote the report-scale block of {DOCS}")
        return 0
    reason = _browser.missing()
    if reason:
        print(f"report_scale: headless Chromium cannot run here: {reason}", file=sys.stderr)
        return 2
    import bokeh
    import selenium

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        million = measure_million(tmp, args.loads)
        print(f"million: {million['spikes']:,} spikes, {million['file_mib']} MiB, load to drawn "
              f"{million['load_to_drawn_ms']} ms, zoom/pan frame median {million['frame_ms_median']} ms "
              f"(max {million['frame_ms_max']})", flush=True)
        forced = measure_million(tmp, 1, backend="webgl")
        print(f"million, WebGL forced: load to drawn {forced['load_to_drawn_ms']} ms, zoom/pan frame median "
              f"{forced['frame_ms_median']} ms (max {forced['frame_ms_max']})", flush=True)
        marks = [] if args.no_marks else measure_marks(tmp)
    res = dict(benchmark="report_scale", marks_max=I.MARKS_MAX, trace_max=I.TRACE_MAX, million=million,
               million_webgl_forced={k: forced[k] for k in ("drawn_with", "load_to_drawn_ms", "frame_ms_median",
                                                            "frame_ms_p90", "frame_ms_max", "again_frame_ms_median",
                                                            "again_frame_ms_max", "javascript_errors")},
               marks=marks,
               browser=_browser.version(), bokeh=bokeh.__version__, selenium=selenium.__version__,
               machine=machine_info("cpu"),
               note="headless Chromium without a GPU: WebGL runs in SwiftShader (software); frame = range change "
                    "until two animation frames later")
    atomic_write_json(Path(args.out), res)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
