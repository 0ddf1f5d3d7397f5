"""neuroq.viz: every plot rendered headless and checked against the recording it draws, the GIF's
frames, the accuracy-energy Pareto front, and the `neuroq viz` / `neuroq energy` verbs on
checkpoints the tests train themselves (every registered method)."""
import json
from collections import OrderedDict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from PIL import Image  # noqa: E402

from neuroq import _sj, viz  # noqa: E402
from neuroq.cli import main  # noqa: E402
from neuroq.energy import EnergyMeter  # noqa: E402
from neuroq.models import spiking_cnn  # noqa: E402
from neuroq.neuron import LIFNode  # noqa: E402
from neuroq.training import methods as M  # noqa: E402

T = 6


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _mlp(step_mode="m"):
    torch.manual_seed(1)
    return nn.Sequential(nn.Flatten(start_dim=1 if step_mode == "s" else 2),
                         nn.Linear(20, 30), LIFNode(tau=2.0, step_mode=step_mode),
                         nn.Linear(30, 12), LIFNode(tau=2.0, step_mode=step_mode, v_reset=None),
                         nn.Linear(12, 3))


def _x(n=5):
    g = torch.Generator().manual_seed(2)
    return torch.rand(T, n, 20, generator=g) * 1.5


@pytest.fixture(scope="module")
def rec():
    net = _mlp()
    return net, viz.record(net, _x(), v=True)


def _png_ok(fig, path):
    fig.savefig(path, dpi=50)
    im = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert im.std() > 1.0, "the image is blank"


# ---- record ---------------------------------------------------------------------------------
def test_record_matches_a_manual_forward(rec):
    net, r = rec
    assert list(r["spikes"]) == ["2", "4"] and list(r["v"]) == ["2", "4"]
    x = _x()
    _sj.reset_net(net)
    with torch.no_grad():
        h1 = net[1](net[0](x))
        s1 = net[2](h1)
        s2 = net[4](net[3](s1))
    assert torch.equal(r["spikes"]["2"], s1) and torch.equal(r["spikes"]["4"], s2)
    assert r["spikes"]["2"].sum() > 0, "the test net must fire"
    # v after reset: below threshold everywhere; hard reset puts it at v_reset=0 where a spike was
    for k in ("2", "4"):
        assert r["v"][k].shape == r["spikes"][k].shape and (r["v"][k] < 1.0).all()
    assert (r["v"]["2"][r["spikes"]["2"] > 0] == 0).all()
    assert r["v_threshold"] == OrderedDict([("2", 1.0), ("4", 1.0)])
    assert net[2].store_v_seq is False, "record must restore store_v_seq"


def test_record_single_step_stacks_time():
    net = _mlp("s")
    x = _x()
    with viz.record(net, v=True) as r:
        for t in range(T):
            net(x[t])
    _sj.reset_net(net)
    multi = viz.record(_mlp("m"), x, v=True)
    assert torch.equal(r.spikes["2"], multi["spikes"]["2"])
    assert torch.allclose(r.v["4"], multi["v"]["4"])


# ---- raster ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", [0, 3])
def test_raster_draws_one_point_per_spike(rec, tmp_path, sample):
    _, r = rec
    ax = viz.raster(r, sample=sample, max_neurons=None)
    assert len(ax.collections) == 2
    off = 0
    for coll, k in zip(ax.collections, ("2", "4")):
        s = r["spikes"][k][:, sample]
        pts = coll.get_offsets()
        assert len(pts) == int(s.sum())
        t, n = np.nonzero(s.numpy())
        assert sorted(map(tuple, np.asarray(pts).astype(int))) == sorted(zip(t, n + off))
        off += s.shape[1]
    _png_ok(ax.figure, tmp_path / "r.png")


def test_raster_neuron_subset_and_layers(rec):
    _, r = rec
    ax = viz.raster(r, layers=["4"], neurons=[1, 5, 7])
    s = r["spikes"]["4"][:, 0, [1, 5, 7]]
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == int(s.sum())
    ax = viz.raster(r, max_neurons=4)
    assert len(ax.collections[0].get_offsets()) == int(r["spikes"]["2"][:, 0, :4].sum())
    with pytest.raises(ValueError, match="layers"):
        viz.raster(r, layers=["nope"])
    with pytest.raises(ValueError, match="neurons"):
        viz.raster(r, neurons=[99])
    empty = viz.raster({})  # a model without neurons (ANN): axes that say so, no points
    assert not empty.collections and "no spiking neurons" in empty.texts[0].get_text()
    with pytest.raises(ValueError, match="empty"):
        viz.firing_rates({})


# ---- firing rates ---------------------------------------------------------------------------
def test_firing_rates_histogram_and_heatmap(rec, tmp_path):
    _, r = rec
    fig = viz.firing_rates(r["spikes"], bins=10)
    for j, k in enumerate(("2", "4")):
        s = r["spikes"][k].float()
        rates = s.mean((0, 1)).numpy()
        heights = [p.get_height() for p in fig.hist_axes[j].patches]
        assert sum(heights) == s.shape[2]
        assert heights == list(np.histogram(rates, bins=np.linspace(0, 1, 11))[0])
        img = fig.heatmap_axes[j].images[0].get_array()
        assert np.allclose(img, s.mean(1).numpy().T)
    one = viz.firing_rates(r, sample=2, max_neurons=5)
    assert np.array_equal(one.heatmap_axes[0].images[0].get_array(), r["spikes"]["2"][:, 2, :5].numpy().T)
    _png_ok(fig, tmp_path / "f.png")
    with pytest.raises(ValueError, match="bins"):
        viz.firing_rates(r["spikes"], bins=0)


# ---- membrane -------------------------------------------------------------------------------
def test_membrane_trace_draws_recorded_v_and_spikes(rec, tmp_path):
    _, r = rec
    ax = viz.membrane_trace(r, layer="2", neurons=[0, 4, 9], sample=1)
    for line, i in zip(ax.lines[:3], (0, 4, 9)):
        assert np.allclose(line.get_ydata(), r["v"]["2"][:, 1, i].numpy())
        assert list(line.get_xdata()) == list(range(T))
    for coll, i in zip(ax.collections, (0, 4, 9)):
        assert list(np.asarray(coll.get_offsets())[:, 0]) == list(np.nonzero(r["spikes"]["2"][:, 1, i].numpy())[0])
    th = [ln for ln in ax.lines if ln.get_label() == r"$V_{th}$"]
    assert len(th) == 1 and list(th[0].get_ydata()) == [1.0, 1.0]
    _png_ok(ax.figure, tmp_path / "m.png")
    # default choice: neurons that fire at some but not all steps come first
    ax = viz.membrane_trace(r, max_traces=2)
    s = r["spikes"]["2"][:, 0]
    for i in ax.neurons:
        if ((s.sum(0) > 0) & (s.sum(0) < T)).any():
            assert 0 < s[:, i].sum() < T
    # tensor input with an explicit threshold
    ax = viz.membrane_trace(r["v"]["4"][:, 0], spikes=r["spikes"]["4"][:, 0], neurons=[2], v_threshold=0.5)
    assert np.allclose(ax.lines[0].get_ydata(), r["v"]["4"][:, 0, 2].numpy())
    with pytest.raises(ValueError, match="layer"):
        viz.membrane_trace(r, layer="x")
    with pytest.raises(ValueError, match="v=True"):
        viz.membrane_trace(r["spikes"])


# ---- feature maps ---------------------------------------------------------------------------
def test_feature_maps_show_conv_spikes(tmp_path):
    torch.manual_seed(0)
    net = spiking_cnn((1, 8, 8), 3, lambda: LIFNode(step_mode="m"), channels=(4, 4), hidden=8)
    r = viz.record(net, torch.rand(3, 2, 1, 8, 8) * 3)
    fig = viz.feature_maps(r, sample=1)
    first = next(k for k, v in r.items() if v.dim() == 5)
    assert len(fig.maps) == 4
    assert np.allclose(fig.maps[2], r[first][:, 1, 2].float().mean(0).numpy())
    fig2 = viz.feature_maps(r, layer=first, t=1)
    assert np.array_equal(fig2.maps[0], r[first][1, 0, 0].numpy())
    _png_ok(fig, tmp_path / "fm.png")
    with pytest.raises(ValueError, match="T, N, C, H, W"):
        viz.feature_maps({"a": torch.zeros(2, 1, 3)})


# ---- energy ---------------------------------------------------------------------------------
def test_energy_bars_heights_are_the_report(rec, tmp_path):
    net, _ = rec
    with torch.no_grad(), EnergyMeter(net, e_ac=0.9, e_mac=4.6) as m:
        _sj.reset_net(net)
        net(_x())
    rep = m.report()
    ax = viz.energy_bars(rep)
    sop_bars, mac_bars = ax.containers[0], ax.containers[1]
    assert len(sop_bars) == len(rep["layers"]) == 3
    for b_s, b_m, d in zip(sop_bars, mac_bars, rep["layers"].values()):
        assert b_s.get_height() == pytest.approx(d["sops_per_sample"] * 0.9)
        assert b_m.get_height() == pytest.approx(d["macs_per_sample"] * 4.6)
        assert b_m.get_y() == pytest.approx(b_s.get_height())  # stacked
        assert b_s.get_height() + b_m.get_height() == pytest.approx(d["energy_pj_per_sample"])
    assert mac_bars[0].get_height() > 0 and sop_bars[0].get_height() == 0  # real-valued input layer
    _png_ok(ax.figure, tmp_path / "e.png")
    (tmp_path / "energy.json").write_text(json.dumps(rep))
    ax2 = viz.energy_bars(tmp_path, per_sample=False, log=True)
    assert [b.get_height() for b in ax2.containers[0]] == pytest.approx([d["sops"] * 0.9 for d in rep["layers"].values()])
    with pytest.raises(TypeError, match="report"):
        viz.energy_bars(3)


# ---- accuracy-energy ------------------------------------------------------------------------
def test_pareto_front_is_the_non_dominated_set():
    rng = np.random.default_rng(0)
    for _ in range(20):
        e, a = rng.integers(1, 6, 12).astype(float), rng.integers(0, 6, 12).astype(float)
        front = viz.pareto_front(e, a)
        for i in range(12):
            dominated = any(e[j] <= e[i] and a[j] >= a[i] and (e[j] < e[i] or a[j] > a[i]) for j in range(12))
            assert (i in front) == (not dominated)
        assert list(e[front]) == sorted(e[front]) and list(a[front]) == sorted(a[front])


def test_accuracy_energy_plot(tmp_path):
    runs = [dict(label="a", energy_pj=100.0, accuracy=0.9), dict(label="b", energy_pj=50.0, accuracy=0.8),
            dict(label="c", energy_pj=120.0, accuracy=0.85), dict(label="d", energy_pj=400.0, accuracy=0.95)]
    ax = viz.accuracy_energy(runs)
    assert ax.pareto == [1, 0, 3]
    assert np.allclose(ax.collections[0].get_offsets(), [[r["energy_pj"], r["accuracy"]] for r in runs])
    assert np.allclose(ax.lines[0].get_xdata(), [50, 100, 400]) and np.allclose(ax.lines[0].get_ydata(), [0.8, 0.9, 0.95])
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c", "d"]
    _png_ok(ax.figure, tmp_path / "p.png")
    with pytest.raises(ValueError, match="labels"):
        viz.accuracy_energy(runs, labels=["x"])
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        viz.accuracy_energy([tmp_path])


# ---- animation ------------------------------------------------------------------------------
def test_animate_raster_gif_has_one_frame_per_step(rec, tmp_path):
    _, r = rec
    path = tmp_path / "a.gif"
    fig = viz.animate_raster(r, path, sample=1, max_neurons=None, fps=5)
    im = Image.open(path)
    assert im.n_frames == T
    frames = []
    for i in range(T):
        im.seek(i)
        frames.append(np.asarray(im.convert("L"), dtype=float))
    assert all(np.abs(frames[i] - frames[i + 1]).sum() > 0 for i in range(T - 1))
    total = sum(int(r["spikes"][k][:, 1].sum()) for k in ("2", "4"))
    for t in range(T):
        expect = sum(int(r["spikes"][k][:t + 1, 1].sum()) for k in ("2", "4"))
        assert sum(len(o) for o in fig.frame_offsets(t)) == expect
    assert sum(len(o) for o in fig.frame_offsets(T - 1)) == total
    with pytest.raises(ValueError, match="fps"):
        viz.animate_raster(r, fps=0)


# ---- CLI ------------------------------------------------------------------------------------
TINY = ["--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--hidden", "32", "-T", "3", "--quiet"]


@pytest.fixture(scope="module")
def lif_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lif")
    assert main(["train", "--method", "lif", *TINY, "--out", str(out)]) == 0
    return out


def test_cli_viz_all_kinds(lif_run, tmp_path, capsys):
    out = tmp_path / "viz"
    assert main(["viz", str(lif_run / "checkpoint.pt"), "--sample", "2", "--out", str(out), "--kind", "all",
                 "--samples", "30"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"raster_2.png", "rates.png", "energy.png", "raster_2.gif"} <= names
    assert any(n.startswith("membrane_2_") for n in names)
    for n in names - {"raster_2.gif"}:
        im = np.asarray(Image.open(out / n).convert("L"), dtype=float)
        assert im.std() > 1.0, n
    assert Image.open(out / "raster_2.gif").n_frames == 3
    assert "no convolutional spiking layer" in capsys.readouterr().out  # MLP: 'all' skips the maps
    assert main(["viz", str(lif_run / "checkpoint.pt"), "--out", str(out), "--kind", "maps"]) == 2
    assert main(["viz", str(lif_run / "checkpoint.pt"), "--sample", "999", "--out", str(out)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_cli_feature_maps_of_a_conv_checkpoint(tmp_path):
    run = tmp_path / "cnn"
    assert main(["train", "--method", "lif", *TINY, "--arch", "cnn", "--limit-test", "8", "--no-report",
                 "--out", str(run)]) == 0
    out = tmp_path / "viz"
    assert main(["viz", str(run / "checkpoint.pt"), "--out", str(out), "--kind", "maps"]) == 0
    maps = sorted(p.name for p in out.iterdir())
    assert maps and all(n.startswith("maps_0_") for n in maps)
    im = np.asarray(Image.open(out / maps[0]).convert("L"), dtype=float)
    assert im.std() > 1.0


def test_cli_energy_table_and_json(lif_run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["energy", str(lif_run / "checkpoint.pt"), "--samples", "25", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rep = json.loads(out.read_text())
    assert rep["samples"] == 25 and rep["method"] == "lif" and "machine" in rep
    for k, d in rep["layers"].items():
        assert k in text
        assert d["energy_pj"] == pytest.approx(d["sops"] * rep["e_ac_pj"] + d["macs"] * rep["e_mac_pj"])
    # the same numbers as metering the model directly
    from neuroq.training import load_run
    method, model, ds, cfg = load_run(lif_run / "checkpoint.pt")
    with torch.no_grad(), EnergyMeter(model) as m:
        _sj.reset_net(model)
        model(method.record_input(ds.x_test[:25], cfg.encoding))
    assert rep["total"]["sops"] == pytest.approx(m.report()["total"]["sops"])
    assert rep["total"]["energy_pj_per_sample"] == pytest.approx(m.report()["total"]["energy_pj_per_sample"])
    assert main(["energy", str(lif_run / "checkpoint.pt"), "--samples", "25", "--out", str(out),
                 "--e-ac", "1.0", "--e-mac", "2.0"]) == 0
    rep2 = json.loads(out.read_text())
    assert rep2["total"]["energy_pj"] == pytest.approx(rep["total"]["sops"] + 2.0 * rep["total"]["macs"])


def test_accuracy_energy_from_run_folders(lif_run, tmp_path):
    ax = viz.accuracy_energy([lif_run, lif_run / "checkpoint.pt"], labels=["x", "y"])
    m = json.loads((lif_run / "metrics.json").read_text())
    e = json.loads((lif_run / "energy.json").read_text())
    assert np.allclose(ax.collections[0].get_offsets()[0],
                       [e["total"]["energy_pj_per_sample"], m["final_test_acc"]])


@pytest.mark.parametrize("method", M.available())
def test_cli_verbs_work_for_every_method(method, tmp_path):
    run = tmp_path / method
    tiny = TINY if "T" in M.configs()[method].__dataclass_fields__ else [a for a in TINY if a not in ("-T", "3")]
    assert main(["train", "--method", method, *tiny, "--no-report", "--out", str(run)]) == 0
    ck = str(run / "checkpoint.pt")
    assert main(["energy", ck, "--samples", "16"]) == 0
    rep = json.loads((run / "energy.json").read_text())
    assert rep["samples"] == 16 and rep["total"]["energy_pj_per_sample"] > 0
    assert main(["viz", ck, "--out", str(tmp_path / "v"), "--samples", "16", "--kind", "all"]) == 0
    assert (tmp_path / "v" / "energy.png").is_file()
    spiking = bool(viz.record(*_inference_net_and_input(ck)))
    assert (tmp_path / "v" / "raster_0.png").is_file() == spiking
    if not spiking:  # asking a non-spiking model for a spike plot is a clear error
        assert main(["viz", ck, "--out", str(tmp_path / "v"), "--kind", "raster"]) == 2


def _inference_net_and_input(ck):
    from neuroq.training import load_run
    method, model, ds, cfg = load_run(ck)
    return method.convert_for_inference(model), method.record_input(ds.x_test[:1], cfg.encoding)
