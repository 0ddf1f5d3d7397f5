"""The interactive report (``neuroq report``, :mod:`neuroq.report`, :mod:`neuroq.viz.interactive`): what the
page holds against the recording it shows (every spike, once, at its sample, step and neuron), the view of
counts per pixel above the marks threshold, the membrane traces kept, the self-contained page, the missing
extra; and, in headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by Selenium), a report of a
short run: no JavaScript error, no request leaving the page, the spikes per layer the page holds equal to the
recorded ones, a scripted zoom that moves the linked time axis, hover text naming layer and neuron, a click
that shows that neuron's membrane potential, and a screenshot saved as an artifact
(``$NEUROQ_TEST_ARTIFACTS`` or ``build/test-artifacts``).

Without Chromium, chromedriver or Selenium the browser tests skip and say which is missing; with
``NEUROQ_BROWSER_TESTS=require`` (set by ``.ci/run``) they fail instead."""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroq import viz
from neuroq.cli import main
from neuroq.viz import _browser

TINY = ["--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--hidden", "32", "--quiet"]

try:
    import bokeh  # noqa: F401
    HAVE_BOKEH = True
except ImportError:
    HAVE_BOKEH = False
needs_bokeh = pytest.mark.skipif(not HAVE_BOKEH, reason="the report extra (Bokeh) is not installed: "
                                                        "pip install 'neuroq[report]'")


def _browser_or_skip():
    reason = None if HAVE_BOKEH else "Bokeh is not installed"
    reason = reason or _browser.missing()
    if reason:
        if os.environ.get("NEUROQ_BROWSER_TESTS") == "require":
            pytest.fail(f"NEUROQ_BROWSER_TESTS=require but headless Chromium cannot run: {reason}")
        pytest.skip(f"headless Chromium cannot run here: {reason}")


# ------------------------------------------------------------------------------------- synthetic data


def _recording(T=4, N=6, sizes=(12, 7), rate=0.3, v=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    spikes = {f"l{i}": (torch.rand(T, N, n, generator=g) < rate).float() for i, n in enumerate(sizes)}
    labels = {k: f"LIF {i + 1} (fc {n})" for i, (k, n) in enumerate(zip(spikes, sizes))}
    vs = {k: torch.rand(T, N, t.shape[2], generator=g) for k, t in spikes.items()} if v else None
    hs = {k: vs[k] + spikes[k] for k in spikes} if v else None
    return viz.Recording(spikes, labels=labels, v=vs, h=hs, v_threshold={k: 1.0 for k in spikes} if v else None)


def _expected_cells(t: torch.Tensor, samples) -> set:
    """``{(x, neuron)}`` of every spike of ``t`` [T, N, n] in the raster's layout."""
    T = t.shape[0]
    P = T + 1 if T > 1 else 1
    return {(b * P + step, n) for b, s in enumerate(samples)
            for step, n in zip(*np.nonzero(t[:, s].numpy() > 0))}


def _model(layout, name):
    found = layout.select_one({"name": name})
    assert found is not None, name
    return found


@needs_bokeh
def test_the_raster_holds_every_spike_once_at_its_sample_step_and_neuron():
    rec = _recording()
    fig = viz.interactive_raster(rec, samples=[1, 3, 4], sample_labels=["a", "b", "c"], name="r")
    from bokeh.models import Column

    assert isinstance(fig, Column)
    for k, t in rec.items():
        src = _model(fig, f"r:spikes:{k}")
        cells = list(zip(np.asarray(src.data["x"]).tolist(), np.asarray(src.data["y"]).tolist()))
        assert len(cells) == len(set(cells)) == int((t[:, [1, 3, 4]] > 0).sum())
        assert set(cells) == _expected_cells(t, [1, 3, 4])
        marks = _model(fig, f"r:marks:{k}")  # few spikes: the first view draws every one as a mark
        assert sorted(zip(marks.data["x"].tolist(), marks.data["y"].tolist())) == sorted(cells)
        p = _model(fig, f"r:layer:{k}")
        assert p.title.text == f"{rec.labels[k]}: showing {len(cells):,} of {len(cells):,} spikes (those in view), one mark each"
        hover = " ".join(str(h.tooltips) for h in p.tools if type(h).__name__ == "HoverTool")
        assert rec.labels[k] in hover and "neuron" in hover and "time step" in hover and "test sample" in hover
    xr = _model(fig, "r:time")
    assert (xr.start, xr.end) == (-0.5, 3 * 5 - 1 - 0.5)  # 3 samples of T=4, one blank column between them
    assert all(_model(fig, f"r:layer:{k}").x_range is xr for k in rec)  # linked zoom and pan


@needs_bokeh
def test_t1_shows_neurons_by_samples():
    rec = _recording(T=1, N=5)
    fig = viz.interactive_raster(rec, name="r")
    for k, t in rec.items():
        src = _model(fig, f"r:spikes:{k}")
        s, n = np.nonzero(t[0].numpy() > 0)
        assert sorted(zip(src.data["x"].tolist(), src.data["y"].tolist())) == sorted(zip(s.tolist(), n.tolist()))
    xr = _model(fig, "r:time")
    assert (xr.start, xr.end) == (-0.5, 4.5)
    assert "one column per sample" in _model(fig, "r:layer:l1").xaxis[0].axis_label


@needs_bokeh
def test_above_the_threshold_every_spike_is_counted_per_pixel():
    rec = _recording(T=30, N=16, sizes=(900,), rate=0.2, v=False)
    total = int((rec["l0"] > 0).sum())
    fig = viz.interactive_raster(rec, marks_max=100, name="r", width=300)
    src, marks, img = (_model(fig, f"r:{w}:l0") for w in ("spikes", "marks", "counts"))
    assert len(src.data["x"]) == total  # the page still holds every spike
    assert len(marks.data["x"]) == 0
    grid = np.asarray(img.data["image"][0])
    assert grid.sum() == total  # ... and the view counts every one of them
    W = 16 * 31 - 1
    bx, by = -(-W // 300), -(-900 // 260)  # cells per pixel: the frame is 300 x 260 px
    assert grid.shape == (-(-900 // by), -(-W // bx))
    title = _model(fig, "r:layer:l0").title.text
    assert (bx, by) == (2, 4)
    assert f"showing {total:,} of {total:,} spikes" in title and "spikes per pixel of 2 columns × 4 neurons" in title
    # the same cells counted by brute force
    x, y = np.asarray(src.data["x"], dtype=int), np.asarray(src.data["y"], dtype=int)
    brute = np.zeros_like(grid)
    for xi, yi in zip(x, y):
        brute[yi // by, xi // bx] += 1
    assert np.array_equal(brute, grid)


@needs_bokeh
def test_membrane_traces_are_kept_within_their_budget():
    rec = _recording(T=4, N=6, sizes=(12, 7))
    fig = viz.interactive_raster(rec, name="r", trace_max=3 * 4 * (12 + 7) + 10)  # 3 samples of every layer
    d0, d1 = _model(fig, "r:trace_data:l0").data, _model(fig, "r:trace_data:l1").data
    assert len(d0["v"]) == 3 * 4 * 12 and len(d1["v"]) == 3 * 4 * 7
    v = rec.v["l0"][:, :3].permute(1, 0, 2).reshape(-1).numpy()  # [sample, step, neuron]
    assert np.allclose(d0["v"], v) and np.allclose(d0["h"], rec.h["l0"][:, :3].permute(1, 0, 2).reshape(-1).numpy())
    assert np.array_equal(d0["s"], (rec["l0"][:, :3] > 0).permute(1, 0, 2).reshape(-1).numpy())
    note = _model(fig, "r:trace_note").text
    assert "LIF 1 (fc 12): 3 of 6" in note and "LIF 2 (fc 7): 3 of 6" in note
    small = viz.interactive_raster(rec, name="r", trace_max=4 * 12 + 5)  # one sample of the first layer only
    assert len(_model(small, "r:trace_data:l0").data["v"]) == 4 * 12
    assert small.select_one({"name": "r:trace_data:l1"}) is None
    trace = _model(fig, "r:trace").data  # a neuron is shown before any click
    assert len(trace["x"]) == 4 and "neuron" in _model(fig, "r:membrane").title.text
    assert viz.interactive_raster(_recording(v=False), name="q").select_one({"name": "q:membrane"}) is None


@needs_bokeh
def test_rates_energy_and_frontier_draw_what_they_are_given():
    rec = _recording(T=3, N=4, sizes=(10,))
    fig = viz.interactive_rates(rec, name="q")
    pop = _model(fig, "q:population:l0").data
    rate = (rec["l0"] > 0).float().mean(2).T.numpy()  # [sample, step]
    ys = np.asarray(pop["y"], dtype=float).reshape(4, 4)[:, :3]  # a NaN gap after each sample
    assert np.allclose(ys, rate)
    hist = _model(fig, "q:histogram:l0").data
    assert sum(hist["top"]) == 10
    rep = {"samples": 2, "layers": {"0": {"type": "Linear"}, "1": {"type": "LIFNode"}},
           "total": {"energy_pj_per_sample": 3.0},
           "energy_models": {m: {"model": {"title": m}, "total": {"energy_pj_per_sample": 3e3},
                                 "layers": {"0": {"energy_pj_per_sample": 2e3, "components_pj_per_sample":
                                                  {"compute": 5e2, "weight_memory": 1.5e3}},
                                            "1": {"energy_pj_per_sample": 1e3, "components_pj_per_sample":
                                                  {"compute": 1e3, "weight_memory": 0.0}}}}
                             for m in ("compute", "simple")}}
    en = viz.interactive_energy(rep, labels={"0": "Linear 1 (4→10)"}, name="e")
    src = _model(en, "e:simple").data
    assert src["layer"] == ["LIFNode 1", "Linear 1 (4→10)"]  # module order, top down
    assert np.allclose(src["compute"], [1.0, 0.5]) and np.allclose(src["weight_memory"], [0.0, 1.5])  # nJ
    summary = {"methods": {m: {"T": T, "accuracy": a, "energy_pj": e, "energy_models": {"compute": {"energy_pj": e}},
                               "runs": [{"seed": 0, "final_test_acc": a, "energy_models": {"compute": {"energy_pj": e}}}]}
                           for m, T, a, e in (("lif", 4, 0.97, 3e5), ("ann", 1, 0.98, 4e5), ("s2nn", 1, 0.96, 9e4))},
               "pareto_fronts": {"compute": ["s2nn", "lif", "ann"]}}
    fr = viz.interactive_frontier(summary, name="f")
    runs = _model(fr, "f:runs:compute").data
    assert runs["method"] == ["lif", "ann", "s2nn"] and runs["seed"] == [0, 0, 0]
    assert np.allclose(runs["acc"], [97, 98, 96]) and np.allclose(runs["energy"], [300, 400, 90])  # nJ


@needs_bokeh
def test_the_page_is_self_contained(tmp_path):
    path = viz.save_html(viz.interactive_raster(_recording(), name="r"), tmp_path / "a" / "raster.html")
    page = path.read_text()
    from neuroq.viz.interactive import CSP

    assert f'content="{CSP}"' in page[:2000] and "default-src 'none'" in CSP
    assert "<script src=" not in page and "<link " not in page and "cdn.bokeh.org" not in page
    from bokeh.embed.notebook import notebook_content  # what bokeh.io.show uses in Jupyter

    script, div, _ = notebook_content(viz.interactive_raster(_recording(), name="r"))
    assert script and div


def test_a_missing_extra_is_named(monkeypatch, tmp_path, capsys):
    from neuroq.viz.interactive import require_bokeh

    monkeypatch.setitem(sys.modules, "bokeh", None)
    monkeypatch.setitem(sys.modules, "bokeh.models", None)
    with pytest.raises(ImportError, match=r"neuroq\[report\]"):
        require_bokeh()
    with pytest.raises(ImportError, match=r"neuroq\[report\]"):
        viz.interactive_raster(_recording())
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'neuroq[report]'" in err and len(err.strip().splitlines()) == 1


@needs_bokeh
def test_cli_help_states_the_library_defaults(capsys):
    from neuroq import report
    from neuroq.viz.interactive import MARKS_MAX

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {MARKS_MAX:,})" in text and f"(default: {report.SAMPLES})" in text
    assert f"(default: {report.ENERGY_SAMPLES})" in text


# ------------------------------------------------------------------------------------------ short runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for method, extra in (("lif", ["-T", "3"]), ("s2nn", [])):
        out[method] = tmp_path_factory.mktemp(method)
        assert main(["train", "--method", method, *TINY, *extra, "--out", str(out[method])]) == 0
    return out


def _recorded(run, n=16) -> dict:
    """Spikes per layer of the run's first ``n`` test samples, recorded here (not by the report)."""
    from neuroq.data import batches
    from neuroq.training import load_run
    from neuroq.training.report import inference_model

    method, model, data, _ = load_run(run)
    net = inference_model(method, model)
    x, _ = next(batches(data.test, torch.arange(n), n))
    rec = viz.record(net, method.record_input(x))
    return {k: int((t > 0).sum()) for k, t in rec.items()}, rec.labels


@needs_bokeh
def test_cli_report_of_a_run_folder_and_a_checkpoint(runs, tmp_path, capsys):
    run = runs["lif"]
    assert main(["report", str(run)]) == 0
    assert f"wrote {run / 'report.html'}" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert "Content-Security-Policy" in page[:3000] and "<script src=" not in page
    out = tmp_path / "x" / "lif.html"
    assert main(["report", str(run / "checkpoint.pt"), "--out", str(out), "--samples", "4"]) == 0
    assert out.is_file()
    assert main(["report", str(tmp_path)]) == 2
    assert "neither a `neuroq compare` folder" in capsys.readouterr().err
    from neuroq.report import build_report

    sections, title = build_report(run, samples=8)
    assert [k for k, _, _ in sections] == ["run"] and title == "neuroq report: lif on digits"
    counts, _ = _recorded(run, 8)
    for k, n in counts.items():
        assert len(sections[0][2].select_one({"name": f"run:spikes:{k}"}).data["x"]) == n


# ------------------------------------------------------------------------------------------ the browser

FIND = "for (const d of Bokeh.documents) { const m = d.get_model_by_name(arguments[0]); if (m) return m; } return null;"
_FIND_FN = "const find = (n) => { for (const d of Bokeh.documents) { const m = d.get_model_by_name(n); if (m) return m; } return null; };"
PIXEL = _FIND_FN + """
const pv = Bokeh.index.find_one(find(arguments[0]));
const r = pv.el.getBoundingClientRect();
return [r.left + pv.frame.x_scale.compute(arguments[1]), r.top + pv.frame.y_scale.compute(arguments[2])];
"""
# the texts of the tooltips on show (Bokeh draws them in shadow DOMs), or null
TOOLTIPS = """
const out = [];
function walk(root) {
  for (const el of root.querySelectorAll("*")) {
    if (el.shadowRoot) walk(el.shadowRoot);
    const c = typeof el.className === "string" ? el.className : "";
    if (/tooltip/i.test(c) && el.offsetParent !== null && el.innerText.trim()) out.push(el.innerText.trim());
  }
}
walk(document);
return out.length ? out : null;
"""


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    with _browser.headless(1280, 1000) as d:
        yield d


def _js(driver, code, *args):
    return driver.execute_script(_FIND_FN + code, *args)


def _pointer(driver, x, y, click=False):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    a = ActionBuilder(driver)
    move = a.pointer_action.move_to_location(int(round(x)), int(round(y)))
    if click:
        move.click()
    a.perform()


def _wait(driver, code, timeout=10.0, *args):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = _js(driver, code, *args)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {code}")


def _offline_only(urls):
    return [u for u in urls if not u.startswith(("file://", "data:", "blob:"))]


def _screenshot(driver, name):
    from PIL import Image

    path = _browser.screenshot(driver, _browser.artifacts_dir() / name)
    im = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert im.std() > 10, f"{path} looks blank"
    return path


def test_report_of_a_short_run_in_headless_chromium(runs, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    from neuroq.report import write_report

    run = runs["lif"]
    page = write_report(run, tmp_path / "report.html")
    ms = _browser.load(browser, page)
    assert ms < 30000
    assert _browser.page_errors(browser) == []
    assert _offline_only(_browser.requests(browser)) == []
    counts, labels = _recorded(run)
    for k, n in counts.items():  # the spikes the page holds per layer = the recorded ones
        assert _js(browser, "return find(arguments[0]).data.x.length", f"run:spikes:{k}") == n
    layers = list(counts)
    # --backend auto: WebGL where the browser has it in hardware, canvas where it is software (as here, headless)
    backend = browser.execute_script("return window.neuroq_backend")
    assert backend in ("webgl", "canvas")
    assert _js(browser, "return find(arguments[0]).output_backend", f"run:layer:{layers[0]}") == backend
    # hover over a spike: the tooltip names the layer and the neuron
    k = layers[0]
    x, y = _js(browser, "const s = find(arguments[0]); const i = Math.floor(s.data.x.length / 2);"
                        "return [s.data.x[i], s.data.y[i]];", f"run:marks:{k}")
    px, py = browser.execute_script(PIXEL, f"run:layer:{k}", x, y)
    _pointer(browser, px, py)
    tips = _wait(browser, TOOLTIPS)
    assert any(labels[k] in t and f"neuron {int(y)}" in t and "time step" in t and "test sample" in t for t in tips), tips
    # click it: the membrane panel shows that neuron
    _pointer(browser, px, py, click=True)
    title = _wait(browser, "const t = find('run:membrane').title.text; return t.includes('neuron ' + arguments[0] + ',') ? t : null;",
                  10.0, int(y))
    assert labels[k] in title
    # a scripted zoom (the mouse wheel) narrows the time range of every linked panel
    before = _js(browser, "const r = find('run:time'); return [r.start, r.end];")
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_viewport(int(px), int(py)), 0, -400).perform()
    after = _wait(browser, "const r = find('run:time'); return (r.end - r.start) < arguments[0] ? [r.start, r.end] : null;",
                  10.0, before[1] - before[0])
    assert after[1] - after[0] < before[1] - before[0]
    for other in layers + ["run:rates:population"]:
        name = other if other.startswith("run:") else f"run:layer:{other}"
        assert _js(browser, "const p = find(arguments[0]); return [p.x_range.start, p.x_range.end];", name) == after
    shown = _js(browser, "return find(arguments[0]).title.text;", f"run:layer:{layers[-1]}")
    assert f"of {counts[layers[-1]]:,} spikes (those in view)" in shown
    assert _browser.page_errors(browser) == []
    assert _offline_only(_browser.requests(browser)) == []
    _screenshot(browser, "report_run.png")


def test_report_of_a_t1_method_shows_neurons_by_samples(runs, browser, tmp_path):
    from neuroq.report import write_report

    run = runs["s2nn"]
    page = write_report(run, tmp_path / "report.html")
    _browser.load(browser, page)
    assert _browser.page_errors(browser) == []
    counts, _ = _recorded(run)
    for k, n in counts.items():
        assert _js(browser, "return find(arguments[0]).data.x.length", f"run:spikes:{k}") == n
        xs = _js(browser, "return Array.from(find(arguments[0]).data.x)", f"run:spikes:{k}")
        assert max(xs) <= 15  # x is the sample
    assert _js(browser, "const r = find('run:time'); return [r.start, r.end];") == [-0.5, 15.5]
    assert _offline_only(_browser.requests(browser)) == []
    _screenshot(browser, "report_t1.png")


def test_the_counts_view_follows_zoom_down_to_marks(browser, tmp_path):
    _browser_or_skip()
    rec = _recording(T=10, N=16, sizes=(700, 300), rate=0.25, v=False, seed=3)
    page = viz.save_html(viz.interactive_raster(rec, marks_max=2000, name="r"), tmp_path / "big.html")
    _browser.load(browser, page)
    assert _browser.page_errors(browser) == []
    for k, t in rec.items():
        total = int((t > 0).sum())
        assert _js(browser, "return find(arguments[0]).data.x.length", f"r:spikes:{k}") == total
        grid_sum = _js(browser, "const g = find(arguments[0]).data.image[0]; let s = 0; for (const v of g) s += v; return s;",
                       f"r:counts:{k}")
        assert grid_sum == total
    # zoom onto seven steps of one sample: few enough spikes in view for marks, exactly those in the window
    _js(browser, "const r = find('r:time'); r.setv({start: 10.5, end: 17.5});")
    time.sleep(0.3)
    for k, t in rec.items():
        inside = {(x, n) for x, n in _expected_cells(t, range(16)) if 10.5 < x + 0.5 and x - 0.5 < 17.5}
        assert 0 < len(inside) <= 2000
        marks = _js(browser, "const s = find(arguments[0]); return [Array.from(s.data.x), Array.from(s.data.y)];",
                    f"r:marks:{k}")
        assert set(zip(map(int, marks[0]), map(int, marks[1]))) == inside
        assert f"showing {len(inside):,} of {int((t > 0).sum()):,} spikes" in _js(
            browser, "return find(arguments[0]).title.text", f"r:layer:{k}")
    assert _browser.page_errors(browser) == []


@pytest.mark.slow
def test_report_of_a_comparison_opens_each_method_from_the_frontier(browser, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--dataset", "digits", "--methods", "lif,s2nn,ann", "--epochs", "1", "--limit-train", "120",
                 "--limit-test", "40", "--hidden", "32", "-T", "3", "--samples", "32", "--quiet", "--jobs", "2",
                 "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    page = out / "report.html"
    summary = json.loads((out / "compare.json").read_text())
    _browser.load(browser, page)
    assert _browser.page_errors(browser) == []
    models = list(summary["methods"]["lif"]["energy_models"])
    for m in models:  # one frontier panel per energy model, one point per run
        assert _js(browser, "return find(arguments[0]).data.method", f"frontier:runs:{m}") == list(summary["methods"])
    px, py = browser.execute_script(PIXEL, f"frontier:panel:{models[0]}",
                                    *_js(browser, "const s = find(arguments[0]); const i = s.data.method.indexOf('s2nn');"
                                                  "return [s.data.energy[i], s.data.acc[i]];", f"frontier:runs:{models[0]}"))
    _pointer(browser, px, py)
    tips = _wait(browser, TOOLTIPS)
    assert any("s2nn" in t and "seed" in t and "test accuracy" in t and "energy" in t for t in tips), tips
    _pointer(browser, px, py, click=True)  # opens s2nn's section
    _wait(browser, "return location.hash === '#s2nn' && find('s2nn/seed0:layer:2') !== null;")
    time.sleep(0.5)
    for m in summary["methods"]:
        browser.execute_script("window.neuroq_open(arguments[0])", m)
        _wait(browser, "return Bokeh.documents.every((d) => d.is_idle);")
        counts, _ = _recorded(out / m / "seed0")
        for k, n in counts.items():
            assert _js(browser, "return find(arguments[0]).data.x.length", f"{m}/seed0:spikes:{k}") == n
        assert _js(browser, "return find(arguments[0]) !== null", f"{m}/seed0:energy") is True
    assert _browser.page_errors(browser) == []
    assert _offline_only(_browser.requests(browser)) == []
    browser.execute_script("window.neuroq_open('overview')")
    time.sleep(0.5)
    _screenshot(browser, "report_compare.png")
