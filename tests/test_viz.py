"""neuroq.viz: every plot rendered headless and checked against the recording it draws, the GIF's
frames, the accuracy-energy Pareto front, the potential before reset against an explicit loop of the
neuron equations, readable layer labels, data-driven colour scales and units, vector output (the
`neuroq viz` / `neuroq energy` verbs: tests/test_cli.py)."""
import json
import xml.etree.ElementTree as ET
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
from neuroq.energy import EnergyMeter  # noqa: E402
from neuroq.models import spiking_cnn  # noqa: E402
from neuroq.neuron import LIFNode, Neuron  # noqa: E402

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
    assert isinstance(r, viz.Recording)
    assert list(r) == ["2", "4"] and list(r.v) == ["2", "4"]
    x = _x()
    _sj.reset_net(net)
    with torch.no_grad():
        h1 = net[1](net[0](x))
        s1 = net[2](h1)
        s2 = net[4](net[3](s1))
    assert torch.equal(r["2"], s1) and torch.equal(r["4"], s2)
    assert r["2"].sum() > 0, "the test net must fire"
    # v after reset: below threshold everywhere; hard reset puts it at v_reset=0 where a spike was
    for k in ("2", "4"):
        assert r.v[k].shape == r[k].shape and (r.v[k] < 1.0).all()
    assert (r.v["2"][r["2"] > 0] == 0).all()
    assert r.v_threshold == OrderedDict([("2", 1.0), ("4", 1.0)])
    assert net[2].store_v_seq is False, "record must restore store_v_seq"


def test_record_single_step_stacks_time():
    net = _mlp("s")
    x = _x()
    with viz.Recorder(net, v=True) as r:
        for t in range(T):
            net(x[t])
    _sj.reset_net(net)
    multi = viz.record(_mlp("m"), x, v=True)
    assert isinstance(r.recording, viz.Recording)  # the one type record() returns
    assert torch.equal(r.recording["2"], multi["2"])
    assert torch.allclose(r.recording.v["4"], multi.v["4"])


def test_record_returns_one_type_with_or_without_v(rec):
    import copy
    import pickle
    net, full = rec
    plain = viz.record(net, _x())
    for r in (plain, full):  # the same type, the same mapping: {layer: spikes}
        assert type(r) is viz.Recording and list(r) == ["2", "4"] and list(r.labels) == ["2", "4"]
    assert all(torch.equal(plain[k], full[k]) for k in full)
    assert plain.v == {} and plain.h == {} and plain.v_threshold == {}  # not recorded: empty
    for other in (copy.deepcopy(full), pickle.loads(pickle.dumps(full)), full.copy(), copy.copy(full)):
        assert type(other) is viz.Recording and list(other) == list(full) and other.labels == full.labels
        assert list(other.v) == list(full.v) and list(other.h) == list(full.h)
        assert other.v_threshold == full.v_threshold
        assert all(torch.equal(other.v[k], full.v[k]) and torch.equal(other.h[k], full.h[k]) for k in full.v)
    with pytest.raises(TypeError, match="Recorder"):
        viz.record(net, None)
    recorder = viz.Recorder(net)
    with pytest.raises(RuntimeError, match="with"):
        recorder.recording  # noqa: B018 - nothing recorded yet
    with pytest.raises(TypeError, match="Recording"):  # the old {'spikes', 'v', ...} dict: said so
        viz.raster({"spikes": dict(full), "v": full.v})


def _lif_loop(x, tau, v_th, v_reset):
    """Explicit loop of LIF (decay_input) charge, fire and reset: the independent reference for H."""
    v = torch.full_like(x[0], 0.0 if v_reset is None else v_reset)
    hs, ss, vs = [], [], []
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - (0.0 if v_reset is None else v_reset))) / tau
        s = (h >= v_th).float()
        v = h - v_th * s if v_reset is None else h * (1 - s) + v_reset * s
        hs.append(h), ss.append(s), vs.append(v)
    return torch.stack(hs), torch.stack(ss), torch.stack(vs)


def test_record_keeps_h_before_reset_against_the_equations(rec):
    net, r = rec
    x = _x()
    with torch.no_grad():
        h1, s1, v1 = _lif_loop(net[1](net[0](x)), 2.0, 1.0, 0.0)  # hard reset
        h2, s2, v2 = _lif_loop(net[3](s1), 2.0, 1.0, None)        # soft reset
    assert list(r.h) == ["2", "4"]
    assert torch.allclose(r.h["2"], h1, atol=1e-6) and torch.equal(r["2"], s1)
    assert torch.allclose(r.h["4"], h2, atol=1e-6) and torch.allclose(r.v["4"], v2, atol=1e-6)
    # the defining property: H crosses the threshold exactly where a spike is recorded
    assert ((r.h["2"] >= 1.0) == (r["2"] > 0)).all()
    assert (r.h["2"][r["2"] > 0] >= 1.0).all() and r["2"].sum() > 0


class _HookLIF(LIFNode):
    """A neuron with the proposed BaseNode hook: ``store_h_seq`` keeps ``h_seq`` (multi-step);
    its ``neuronal_charge`` is deliberately useless, so H can only come from the hook."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.store_h_seq = False
        self.h_seq = None

    def neuronal_charge(self, x, v):
        return torch.zeros_like(x) - 5.0

    def multi_step_torch(self, x_seq, v):
        hs, ss, vs = [], [], []
        for t in range(x_seq.shape[0]):
            h = v + (x_seq[t] - v) / self.tau
            s = (h >= self.v_threshold).float()
            v = h * (1 - s)
            hs.append(h), ss.append(s), vs.append(v)
        if self.store_h_seq:
            self.h_seq = torch.stack(hs)
        return torch.stack(ss), v, (torch.stack(vs) if self.store_v_seq else None)


class _OpaqueNode(Neuron):
    """A hard-reset neuron that exposes neither H nor its charge: H cannot be had."""

    def __init__(self):
        super().__init__()
        self.v_threshold, self.v_reset, self.step_mode, self.store_v_seq = 1.0, 0.0, "m", False
        self.register_memory("v", 0.0)

    def multi_step_forward(self, x_seq):
        v, ss, vs = torch.zeros_like(x_seq[0]), [], []
        for t in range(x_seq.shape[0]):
            h = v + x_seq[t]
            s = (h >= 1.0).float()
            v = h * (1 - s)
            ss.append(s), vs.append(v)
        self.v, self.v_seq = v, torch.stack(vs)
        return torch.stack(ss)


def test_record_h_from_the_neuron_hook_and_without_it():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(20, 16), _HookLIF(step_mode="m"), nn.Linear(16, 8), _OpaqueNode())
    x = _x(4)
    r = viz.record(net, x, v=True)
    with torch.no_grad():
        h, s, v = _lif_loop(net[0](x), 2.0, 1.0, 0.0)
    assert torch.allclose(r.h["1"], h, atol=1e-6) and torch.equal(r["1"], s)
    assert net[1].store_h_seq is False, "record must restore store_h_seq"
    assert "3" not in r.h and "3" in r.v  # no H to be had: V only ...
    ax = viz.membrane_trace(r, layer="3", neurons=[0, 1])  # ... and the plot says so
    assert not ax.shows_h and "after reset" in ax.get_ylabel()
    assert np.allclose(ax.lines[0].get_ydata(), r.v["3"][:, 0, 0].numpy())


def test_record_labels_name_layers_from_the_model():
    torch.manual_seed(0)
    c1, c2, hid = 4, 6, 8
    net = spiking_cnn((1, 8, 8), 3, lambda: LIFNode(step_mode="m"), channels=(c1, c2), hidden=hid)
    r = viz.record(net, torch.rand(3, 2, 1, 8, 8) * 3)
    assert isinstance(r, viz.Recording) and list(r) == ["1", "3", "6"]  # still keyed by module path
    assert list(r.labels.values()) == [f"LIF 1 (conv {c1}×4×4)", f"LIF 2 (conv {c2}×2×2)", f"LIF 3 (fc {hid})"]
    labels = viz.layer_labels(net)
    assert labels["0.0"] == f"Conv 1 (1→{c1}, 3×3)" and labels["5"] == f"Linear 1 ({c2 * 4}→{hid})"
    assert labels["6"] == f"LIF 3 (fc {hid})"  # without a recording: the width of the layer before
    assert len(set(labels.values())) == len(labels)
    full = viz.record(net, torch.rand(3, 2, 1, 8, 8) * 3, v=True)
    assert full.labels == r.labels
    import copy
    assert copy.deepcopy(r).labels == r.labels
    with pytest.raises(TypeError, match="model"):
        viz.layer_labels("net")


def test_record_on_spikingjelly_neurons():
    """SpikingJelly's own nodes: spikes and V as before; H where it can be had (soft reset inverts)."""
    from neuroq._sj import sj_neuron_module
    sjn = sj_neuron_module()
    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(20, 16), sjn.IFNode(step_mode="m", v_reset=None))
    x = _x(3)
    r = viz.record(net, x, v=True)
    with torch.no_grad():
        i1 = net[0](x)
    v, hs = torch.zeros_like(i1[0]), []
    for t in range(T):  # IF, soft reset, explicitly
        h = v + i1[t]
        hs.append(h)
        v = h - (h >= 1.0).float()
    assert torch.allclose(r.h["1"], torch.stack(hs), atol=1e-5)
    assert r.labels == OrderedDict([("1", "IF 1 (fc 16)")])
    # a hard reset cannot be inverted: H comes from the neuron's own step (SpikingJelly 2.0's functional step
    # with a threshold it never reaches; 0.0.0.0.14's in-place charge), checked against an explicit loop
    net = nn.Sequential(nn.Linear(20, 16), sjn.LIFNode(tau=2.0, step_mode="m"))
    r = viz.record(net, x * 3, v=True)
    with torch.no_grad():
        i1 = net[0](x * 3)
    v, hs = torch.zeros_like(i1[0]), []
    for t in range(T):
        h = v + (i1[t] - v) / 2.0
        hs.append(h)
        v = h * (h < 1.0).float()
    assert "1" in r.h and torch.allclose(r.h["1"], torch.stack(hs), atol=1e-5)
    assert bool((r.h["1"] >= 1.0).any())       # spikes, whose H the trace now shows above the threshold


def test_membrane_trace_legend_stacked_panels_and_note():
    """The spike marker is in the legend only when a shown neuron spikes; the how-to-read note is a legend
    entry (laid out with the figure, not clipped); ``stacked=True`` gives one panel per neuron, shared axes."""
    T_, n = 6, 4
    v = torch.linspace(0, 0.9, T_)[:, None].repeat(1, n)   # never reaches the threshold
    ax = viz.membrane_trace(v, spikes=torch.zeros(T_, n), neurons=[0, 1], v_threshold=1.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert not any(t.startswith("spike") for t in labels) and "after reset" in labels[-1]
    s = torch.zeros(T_, n)
    s[3, 1] = 1.0
    ax = viz.membrane_trace(v, spikes=s, neurons=[0, 1], v_threshold=1.0)
    assert any(t.get_text().startswith("spike") for t in ax.get_legend().get_texts())
    axes = viz.membrane_trace(v, spikes=s, neurons=[0, 1, 2], v_threshold=1.0, stacked=True, title="t")
    assert len(axes) == 3 and len({id(a.figure) for a in axes}) == 1
    assert [len(a.lines) for a in axes] == [2, 2, 2]           # its trace and the threshold line
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[2])
    with pytest.raises(ValueError, match="stacked=True draws its own panels"):
        viz.membrane_trace(v, spikes=s, stacked=True, ax=axes[0])


def test_feature_maps_print_the_values_of_tiny_maps():
    s = torch.zeros(4, 1, 2, 2, 2)
    s[:2, 0, 0, 0, 1] = 1.0                                      # rate 0.5 at channel 0, (0, 1)
    fig = viz.feature_maps({"c": s}, title="t")
    numbers = [t.get_text() for t in fig.axes[0].texts]
    assert numbers == ["0", ".50", "0", "0"]
    assert fig._suptitle.get_text().startswith("t\nc: all 2 channels")
    big = viz.feature_maps({"c": torch.ones(2, 1, 2, 4, 4)})
    assert not big.axes[0].texts                                # 4x4 and larger: colour only


# ---- raster ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", [0, 3])
def test_raster_draws_one_point_per_spike(rec, tmp_path, sample):
    _, r = rec
    ax = viz.raster(r, sample=sample, max_neurons=None)
    assert len(ax.collections) == 2
    off = 0
    for coll, k in zip(ax.collections, ("2", "4")):
        s = r[k][:, sample]
        pts = coll.get_offsets()
        assert len(pts) == int(s.sum())
        t, n = np.nonzero(s.numpy())
        assert sorted(map(tuple, np.asarray(pts).astype(int))) == sorted(zip(t, n + off))
        off += s.shape[1]
    _png_ok(ax.figure, tmp_path / "r.png")


def test_raster_neuron_subset_and_layers(rec):
    _, r = rec
    ax = viz.raster(r, layers=["4"], neurons=[1, 5, 7])
    s = r["4"][:, 0, [1, 5, 7]]
    assert len(ax.collections) == 1 and len(ax.collections[0].get_offsets()) == int(s.sum())
    ax = viz.raster(r, max_neurons=4, select="first")
    assert len(ax.collections[0].get_offsets()) == int(r["2"][:, 0, :4].sum())
    with pytest.raises(ValueError, match="layers"):
        viz.raster(r, layers=["nope"])
    with pytest.raises(ValueError, match="neurons"):
        viz.raster(r, neurons=[99])
    for plot in (viz.raster, viz.firing_rates):  # a model without neurons (ANN): refused, saying why
        with pytest.raises(ValueError, match="empty recording.*no spiking neurons"):
            plot({})


def _conv_recording(T_=5, silent=200, seed=0):
    """A conv layer [T, 1, 8, 16, 16] whose first ``silent`` flattened neurons never fire."""
    g = torch.Generator().manual_seed(seed)
    s = (torch.rand(T_, 1, 8, 16, 16, generator=g) < 0.05).float()
    flat = s.view(T_, 1, -1)
    flat[:, :, :silent] = 0
    flat[:, :, 1000:1010] = 1.0  # a few always-on neurons
    return OrderedDict(conv=s)


def test_raster_shows_the_active_neurons_of_a_big_layer():
    r = _conv_recording()
    s = r["conv"][:, 0].reshape(r["conv"].shape[0], -1).numpy()
    counts = (s > 0).sum(0)
    ax = viz.raster(r)  # default: 200 most active
    shown = np.asarray(ax.raster_neurons["conv"])
    assert len(shown) == 200 and counts[shown].min() >= counts[np.setdiff1d(np.arange(s.shape[1]), shown)].max()
    assert set(range(1000, 1010)) <= set(shown.tolist())
    pts = np.asarray(ax.collections[0].get_offsets())
    assert len(pts) == int(counts[shown].sum()) > 0  # the first 200 are silent, the panel is not
    t, n = np.nonzero(s[:, shown])
    assert sorted(map(tuple, pts.astype(int))) == sorted(zip(t, n))
    notes = [tx.get_text() for tx in ax.texts]
    assert any("200 most active" in tx and "2,048" in tx for tx in notes)
    # the old behaviour, on request, says there is nothing to see instead of an empty panel
    first = viz.raster(r, select="first")
    assert len(first.collections[0].get_offsets()) == 0
    assert any(tx.get_text() == "no spikes" for tx in first.texts)
    even = viz.raster(r, select="even", max_neurons=64)
    assert even.raster_neurons["conv"] == [k * 2048 // 64 for k in range(64)]
    assert any("64 evenly spaced" in tx.get_text() for tx in even.texts)
    one_on = (torch.arange(4) == 2).float().view(1, 1, 1, 2, 2).expand(3, 1, 1, 2, 2)
    few = viz.raster(OrderedDict(conv=one_on), max_neurons=3)
    assert few.raster_neurons["conv"] == [2]  # only the one that fires
    with pytest.raises(ValueError, match="select"):
        viz.raster(r, select="best")


def test_raster_labels_are_readable(rec):
    _, r = rec
    ax = viz.raster(r, max_neurons=None)
    assert ax.raster_labels == ["LIF 1 (fc 30)", "LIF 2 (fc 12)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ax.raster_labels
    ax = viz.raster(r, labels={"4": "readout spikes"})
    assert ax.raster_labels == ["LIF 1 (fc 30)", "readout spikes"]
    ax = viz.raster(r, labels=["a", "b"])
    assert ax.raster_labels == ["a", "b"]
    plain = viz.raster(OrderedDict(r))  # a plain dict keyed by module path
    assert plain.raster_labels == ["layer 2 (30)", "layer 4 (12)"]
    with pytest.raises(ValueError, match="labels"):
        viz.raster(r, labels=["only one"])


@pytest.mark.parametrize("dpi", [50, 100, 300])
def test_raster_marks_scale_with_figure_and_dpi(rec, dpi):
    _, r = rec
    ax = viz.raster(r, max_neurons=None)
    fig = ax.figure
    fig.set_dpi(dpi)
    fig.canvas.draw()
    coll = ax.collections[0]
    w, h = coll.mark_size()
    box = ax.get_window_extent()
    row_pt = box.height * 72 / dpi / (30 + 12)
    col_pt = box.width * 72 / dpi / T
    assert h == pytest.approx(max(0.85 * row_pt, 1.25 * 72 / dpi))  # 85 % of a neuron row
    assert w == pytest.approx(max(min(0.35 * col_pt, 10.0), 1.25 * 72 / dpi))
    fig.set_size_inches(fig.get_size_inches() * 2)  # a bigger figure: bigger rows, bigger marks
    fig.canvas.draw()
    assert coll.mark_size()[1] > h
    big = viz.raster(_conv_recording(), max_neurons=None)  # 2,048 rows: never under 1.25 pixel
    big.figure.set_dpi(dpi)
    big.figure.canvas.draw()
    assert big.collections[0].mark_size()[1] * dpi / 72 >= 1.25 - 1e-9


def test_raster_of_a_single_step():
    r = OrderedDict(a=(torch.rand(1, 2, 40) > 0.5).float(), b=torch.zeros(1, 2, 10))
    ax = viz.raster(r, sample=1)
    assert ax.get_xlim() == (-0.5, 0.5) and list(ax.get_xticks()) == [0]
    assert "T = 1" in ax.get_xlabel()
    assert len(ax.collections[0].get_offsets()) == int(r["a"][0, 1].sum())
    assert np.all(np.asarray(ax.collections[0].get_offsets())[:, 0] == 0)
    assert any(t.get_text() == "no spikes" for t in ax.texts)  # layer b is silent and says so
    assert ax.figure.get_size_inches()[0] < 5  # a narrow figure, not a wide empty axis
    # with several samples and none chosen, T = 1 runs over the samples: neurons x samples, not one column
    r = OrderedDict(a=(torch.rand(1, 6, 40) > 0.5).float(), b=torch.zeros(1, 6, 10))
    for ax in (viz.raster(r), viz.raster(r, over="samples")):
        assert ax.get_xlim() == (-0.5, 5.5) and "test sample" in ax.get_xlabel()
        pts = np.asarray(ax.collections[0].get_offsets())
        assert sorted(map(tuple, pts.astype(int).tolist())) == sorted(
            (int(i), int(j)) for i, j in zip(*np.nonzero(r["a"][0].numpy())))
    with pytest.raises(ValueError, match=r"over='samples' needs a T = 1 recording"):
        viz.raster(OrderedDict(a=torch.zeros(3, 2, 4)), over="samples")


# ---- firing rates ---------------------------------------------------------------------------
def test_firing_rates_histogram_and_heatmap(rec, tmp_path):
    _, r = rec
    fig = viz.firing_rates(OrderedDict(r), bins=10, hist_range=(0, 1))  # a plain {layer: spikes} dict too
    for j, k in enumerate(("2", "4")):
        s = r[k].float()
        rates = s.mean((0, 1)).numpy()
        heights = [p.get_height() for p in fig.hist_axes[j].patches]
        assert sum(heights) == s.shape[2]
        assert heights == list(np.histogram(rates, bins=np.linspace(0, 1, 11))[0])
        img = fig.heatmap_axes[j].images[0].get_array()
        assert np.allclose(img, s.mean(1).numpy().T)
    one = viz.firing_rates(r, sample=2, max_neurons=5)
    assert np.array_equal(one.heatmap_axes[0].images[0].get_array(), r["2"][:, 2, :5].numpy().T)
    _png_ok(fig, tmp_path / "f.png")
    with pytest.raises(ValueError, match="bins"):
        viz.firing_rates(r, bins=0)


def test_firing_rates_colour_scale_and_bins_follow_the_data(rec):
    _, r = rec
    fig = viz.firing_rates(r, bins=8)
    hi_rate = max(float(r[k].float().mean((0, 1)).max()) for k in ("2", "4"))
    edges = fig.hist_edges
    assert edges[0] == 0 and hi_rate <= edges[-1] <= 1.0 and len(edges) == 9
    assert edges[-1] <= 2 * hi_rate + 1e-12  # not the fixed [0, 1]: the data fill the axis
    for j, k in enumerate(("2", "4")):
        s = r[k].float()
        heights = [p.get_height() for p in fig.hist_axes[j].patches]
        assert heights == list(np.histogram(s.mean((0, 1)).numpy(), bins=edges)[0])
        norm = fig.colorbars[j].mappable.norm
        top = float(s.mean(1).max())
        assert norm.vmin == 0 and norm.vmax == pytest.approx(top if top > 0 else 1.0)  # the data max
        assert fig.colorbars[j].mappable is fig.heatmap_axes[j].images[0]
    assert float(r["2"].float().mean(1).max()) > 0
    silent = viz.firing_rates(OrderedDict(z=torch.zeros(3, 2, 5)))
    assert silent.colorbars[0].mappable.norm.vmax == 1.0 and "no spikes" in silent.heatmap_axes[0].texts[0].get_text()
    with pytest.raises(ValueError, match="hist_range"):
        viz.firing_rates(r, hist_range=(1, 0))


# ---- membrane -------------------------------------------------------------------------------
def test_membrane_trace_draws_recorded_v_and_spikes(rec, tmp_path):
    net, r = rec
    ax = viz.membrane_trace(r, layer="2", neurons=[0, 4, 9], sample=1)
    assert ax.shows_h
    for line, i in zip(ax.lines[:3], (0, 4, 9)):  # the path H[0] -> V[0] -> H[1] -> V[1] ...
        assert np.allclose(line.get_ydata()[1::2], r.v["2"][:, 1, i].numpy())
        assert np.allclose(line.get_ydata()[0::2], r.h["2"][:, 1, i].numpy())
        assert list(line.get_xdata()[0::2]) == list(range(T)) == list(line.get_xdata()[1::2])
    for coll, i in zip(ax.collections, (0, 4, 9)):
        fired = np.nonzero(r["2"][:, 1, i].numpy())[0]
        assert list(np.asarray(coll.get_offsets())[:, 0]) == list(fired)
        # the spike sits on the pre-reset peak, at or above the threshold, not floating at V_th
        assert np.allclose(np.asarray(coll.get_offsets())[:, 1], r.h["2"][fired, 1, i].numpy())
        assert (np.asarray(coll.get_offsets())[:, 1] >= 1.0).all()
    th = [ln for ln in ax.lines if ln.get_label() == r"$V_{th}$"]
    assert len(th) == 1 and list(th[0].get_ydata()) == [1.0, 1.0]
    _png_ok(ax.figure, tmp_path / "m.png")
    # default choice: neurons that fire at some but not all steps come first
    ax = viz.membrane_trace(r, max_traces=2)
    s = r["2"][:, 0]
    for i in ax.neurons:
        if ((s.sum(0) > 0) & (s.sum(0) < T)).any():
            assert 0 < s[:, i].sum() < T
    # tensor input with an explicit threshold, without H: the recorded V after reset, said so
    ax = viz.membrane_trace(r.v["4"][:, 0], spikes=r["4"][:, 0], neurons=[2], v_threshold=0.5)
    assert np.allclose(ax.lines[0].get_ydata(), r.v["4"][:, 0, 2].numpy())
    assert not ax.shows_h and "after reset" in ax.get_ylabel()
    ax = viz.membrane_trace(r.v["4"][:, 0], spikes=r["4"][:, 0], h=r.h["4"][:, 0], neurons=[2])
    assert ax.shows_h and np.allclose(ax.lines[0].get_ydata()[0::2], r.h["4"][:, 0, 2].numpy())
    with pytest.raises(ValueError, match="layer"):
        viz.membrane_trace(r, layer="x")
    with pytest.raises(ValueError, match="v=True"):
        viz.membrane_trace(OrderedDict(r))  # spikes only, no potentials
    with pytest.raises(ValueError, match="v=True"):
        viz.membrane_trace(viz.record(net, _x()))  # recorded without v=True


def test_membrane_trace_single_step_and_labels(rec):
    _, r = rec
    one = viz.Recording({k: v[:1] for k, v in r.items()}, v={k: v[:1] for k, v in r.v.items()},
                        h={k: v[:1] for k, v in r.h.items()}, v_threshold=r.v_threshold, labels=r.labels)
    ax = viz.membrane_trace(one, layer="2", neurons=[0, 1, 2])
    assert list(ax.get_xticks()) == [0] and "T = 1" in ax.get_xlabel()
    xs = [line.get_xdata()[0] for line in ax.lines[:3]]
    assert len(set(xs)) == 3 and all(-0.5 < x < 0.5 for x in xs)  # side by side, not on top of each other
    for line, i in zip(ax.lines[:3], (0, 1, 2)):
        assert np.allclose(line.get_ydata(), [r.h["2"][0, 0, i], r.v["2"][0, 0, i]])
    assert ax.get_legend().get_title().get_text() == "LIF 1 (fc 30)"


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


def test_feature_maps_show_every_channel_with_a_colour_bar():
    g = torch.Generator().manual_seed(5)
    s = (torch.rand(4, 1, 32, 5, 5, generator=g) < 0.2).float()
    fig = viz.feature_maps({"c": s})
    assert len(fig.maps) == 32 and fig.channels == list(range(32))  # all of them, not 16
    rate = s[:, 0].mean(0).numpy()
    assert all(np.allclose(fig.maps[c], rate[c]) for c in range(32))
    assert fig.cbar.mappable.norm.vmin == 0 and fig.cbar.mappable.norm.vmax == pytest.approx(rate.max())
    assert "all 32 channels" in fig._suptitle.get_text()
    pick = viz.feature_maps({"c": s}, channels=[3, 7, 8, 9], t=2)
    assert pick.channels == [3, 7, 8, 9] and np.array_equal(pick.maps[1], s[2, 0, 7].numpy())
    assert "channels 3, 7–9 of 32" in pick._suptitle.get_text()
    first = viz.feature_maps({"c": s}, max_channels=16)
    assert len(first.maps) == 16 and "channels 0–15 of 32" in first._suptitle.get_text()
    with pytest.raises(ValueError, match="channels"):
        viz.feature_maps({"c": s}, channels=[32])


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


def test_energy_unit_is_chosen_from_the_data():
    assert viz.energy_unit([999.0]) == ("pJ", 1.0)
    assert viz.energy_unit([1e3]) == ("nJ", 1e3)
    assert viz.energy_unit([3.2e5, 10.0]) == ("nJ", 1e3)
    assert viz.energy_unit([2.5e6]) == ("µJ", 1e6)
    assert viz.energy_unit([1.0], unit="uJ") == ("µJ", 1e6)
    with pytest.raises(ValueError, match="unit"):
        viz.energy_unit([1.0], unit="kWh")


def test_energy_bars_units_labels_no_offset(rec):
    net, _ = rec
    with torch.no_grad(), EnergyMeter(net) as m:
        _sj.reset_net(net)
        net(_x(200))
    rep = m.report()
    for per in (True, False):
        ax = viz.energy_bars(m, per_sample=per, log=False)
        tops = [b_s.get_height() + b_m.get_height() for b_s, b_m in zip(*ax.containers[:2])]
        unit, factor = viz.energy_unit(tops)
        assert ax.energy_unit == unit and f"({unit}" in ax.get_ylabel()
        ax.figure.canvas.draw()
        assert ax.yaxis.get_offset_text().get_text() == ""  # no '1e6' over the title
        for tick, label in zip(ax.get_yticks(), ax.get_yticklabels()):
            if label.get_text():
                assert float(label.get_text().replace("−", "-")) == pytest.approx(tick / factor)
        assert "e" not in "".join(t.get_text() for t in ax.get_yticklabels())
    names = [t.get_text().split("\n") for t in ax.get_xticklabels()]
    assert [n[0] for n in names] == ["Linear 1 (20→30)", "Linear 2 (30→12)", "Linear 3 (12→3)"]
    assert [n[1] for n in names] == ["real input", "spike input", "spike input"]
    assert [t.get_text().split("\n")[0] for t in viz.energy_bars(rep).get_xticklabels()] == \
        ["Linear 1", "Linear 2", "Linear 3"]  # a bare report: type and position
    ax = viz.energy_bars(rep, unit="pJ", log=False)
    assert ax.energy_unit == "pJ"
    # parts more than 100x apart (a MAC layer beside spike layers): a log axis by default, each decade in
    # its own unit, every nonzero bar visible
    tops = np.array([d["energy_pj_per_sample"] for d in rep["layers"].values()])
    ax = viz.energy_bars(rep)
    assert (ax.get_yscale() == "log") == (tops.max() / tops[tops > 0].min() > 100)
    ax = viz.energy_bars(rep, log=True)
    ax.figure.canvas.draw()
    lo, hi = ax.get_ylim()
    assert lo <= tops[tops > 0].min() and hi >= tops.max() and "log scale" in ax.get_ylabel()
    texts = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert texts and all(t.split()[-1] in ("pJ", "nJ", "µJ", "mJ", "J") and "e" not in t.split()[0] for t in texts)
    with pytest.raises(ValueError, match="log must be True, False or 'auto'"):
        viz.energy_bars(rep, log="yes")


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


def test_accuracy_energy_labels_are_distinct_in_one_unit():
    base = dict(method="lif", T=4, args=dict(method="lif", arch="auto", lr=0.001, out="runs/a"))
    runs = [dict(base, label="lif T=4", energy_pj=3.2e5, accuracy=0.97),
            dict(base, label="lif T=4", energy_pj=4.3e5, accuracy=0.96,
                 args=dict(base["args"], arch="cnn", out="runs/b")),
            dict(label="ann T=1", energy_pj=3.9e5, accuracy=0.985)]
    ax = viz.accuracy_energy(runs)
    texts = [t.get_text() for t in ax.texts]
    assert len(set(texts)) == 3
    assert texts == ["lif T=4, arch=auto", "lif T=4, arch=cnn", "ann T=1"]
    assert ax.energy_unit == "nJ" and ax.get_xlabel() == "energy per sample (nJ)"
    ax.figure.canvas.draw()
    ticks = "".join(t.get_text() for t in ax.get_xticklabels())
    assert "10^" not in ticks and "times" not in ticks and "e+" not in ticks
    assert np.allclose(ax.collections[0].get_offsets()[:, 0], [3.2e5, 4.3e5, 3.9e5])  # data stay in pJ
    assert "%" in "".join(t.get_text() for t in ax.get_yticklabels())
    # same options everywhere: the folder names tell them apart
    same = [dict(label="x", path="runs/one", args={}), dict(label="x", path="runs/two", args={}),
            dict(label="y")]
    assert viz.distinct_labels(same) == ["x (one)", "x (two)", "y"]
    assert viz.distinct_labels([dict(label="x"), dict(label="x")]) == ["x #1", "x #2"]


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
    total = sum(int(r[k][:, 1].sum()) for k in ("2", "4"))
    for t in range(T):
        expect = sum(int(r[k][:t + 1, 1].sum()) for k in ("2", "4"))
        assert sum(len(o) for o in fig.frame_offsets(t)) == expect
    assert sum(len(o) for o in fig.frame_offsets(T - 1)) == total
    with pytest.raises(ValueError, match="fps"):
        viz.animate_raster(r, fps=0)


# ---- save and style ---------------------------------------------------------------------------
def test_save_writes_png_and_valid_vector_files(rec, tmp_path):
    _, r = rec
    paths = viz.save(viz.raster(r, title="raster"), tmp_path / "sub" / "raster.png", formats=("png", "pdf", "svg"))
    assert [p.name for p in paths] == ["raster.png", "raster.pdf", "raster.svg"]
    png, pdf, svg = (p.read_bytes() for p in paths)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert b"/FontFile2" in pdf  # TrueType embedded: text stays text (editable, searchable)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert any(el.tag.endswith("text") for el in root.iter())  # svg.fonttype 'none': real <text>
    assert plt.get_fignums() == []  # closed
    # no creation date inside: the same figure gives the same bytes
    again = viz.save(viz.raster(r, title="raster"), tmp_path / "again", formats="pdf")
    assert again[0].read_bytes() == pdf
    only = viz.save(viz.energy_bars({"layers": {"a": dict(type="Linear", input="real", sops=0.0, macs=10,
                                                         energy_pj=46.0)},
                                     "e_ac_pj": 0.9, "e_mac_pj": 4.6, "total": {"energy_pj": 46.0}}),
                    tmp_path / "e.svg")
    assert [p.suffix for p in only] == [".svg"]
    with pytest.raises(ValueError, match="formats"):
        viz.save(plt.figure(), tmp_path / "x", formats=("gif",))
    with pytest.raises(TypeError, match="fig"):
        viz.save("fig", tmp_path / "x")


def test_every_plot_uses_the_one_style(rec):
    from neuroq.viz.style import RC
    _, r = rec
    with torch.no_grad(), EnergyMeter(rec[0]) as m:
        _sj.reset_net(rec[0])
        rec[0](_x())
    figs = [viz.raster(r, title="t").figure, viz.firing_rates(r, title="t"),
            viz.membrane_trace(r, title="t").figure, viz.energy_bars(m, title="t").figure,
            viz.accuracy_energy([dict(label="a", energy_pj=1.0, accuracy=0.5)], title="t").figure,
            viz.feature_maps({"c": torch.ones(2, 1, 2, 3, 3)}, title="t")]
    sizes = {RC[k] for k in ("font.size", "axes.titlesize", "axes.labelsize", "xtick.labelsize",
                             "legend.fontsize", "figure.titlesize")}
    for fig in figs:
        fig.canvas.draw()
        for ax in fig.axes:
            for lab in ax.get_xticklabels() + ax.get_yticklabels():
                assert lab.get_fontsize() == RC["xtick.labelsize"]
        titled = [ax for ax in fig.axes if ax.get_title() == "t"]
        assert all(ax.title.get_fontsize() == RC["axes.titlesize"] for ax in titled)
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text()]
        assert texts and {t.get_fontsize() for t in texts} <= sizes
    ax = viz.raster(r)
    assert [tuple(c.get_facecolor()[0]) for c in ax.collections] == \
        [matplotlib.colors.to_rgba(viz.PALETTE[0]), matplotlib.colors.to_rgba(viz.PALETTE[1])]


def test_learning_curves_draw_the_seed_mean_and_std():
    h = lambda *accs: [dict(epoch=i + 1, test_acc=a) for i, a in enumerate(accs)]  # noqa: E731
    ax = viz.learning_curves({"a": [h(0.5, 0.7, 0.8), h(0.7, 0.9)], "b": [h(0.2, 0.4)]})
    x, y = ax.lines[0].get_data()
    assert list(x) == [1, 2, 3] and np.allclose(y, [0.6, 0.8, 0.8])     # epoch 3: the one run that has it
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert np.isclose(band.max(), 0.8 + np.std([0.7, 0.9], ddof=1))
    assert len(ax.collections) == 1                                        # one seed: no band
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    with pytest.raises(ValueError, match="no epoch record has 'val_acc'"):
        viz.learning_curves({"a": [h(0.5)]}, key="val_acc")


# ---- bad input: refused on entry, naming the argument and what was expected ----------------------------------
NAN = float("nan")


def _nan_layer():
    s = torch.zeros(3, 2, 4)
    s[1, 0, 2] = NAN
    return s


def _conv():
    return {"c": (torch.rand(3, 2, 4, 3, 3) > 0.5).float()}


def _file(tmp):
    f = tmp / "a_file"
    f.write_text("x")
    return f


# (id, call(net, rec, tmp_path), exception, message pattern)
BAD = [
    ("raster-empty-recording", lambda n, r, p: viz.raster(viz.Recording()), ValueError,
     r"empty recording.*no spiking neurons"),
    ("raster-empty-dict", lambda n, r, p: viz.raster({}), ValueError, r"empty recording"),
    ("raster-not-a-recording", lambda n, r, p: viz.raster("not a recording"), TypeError,
     r"spikes must be a neuroq.viz.Recording.*mapping.*tensor; got str"),
    ("raster-zero-neurons", lambda n, r, p: viz.raster({"a": torch.zeros(3, 2, 0)}), ValueError,
     r"spikes\['a'\] has zero neurons.*\[T, N, \.\.\.\]"),
    ("raster-nan", lambda n, r, p: viz.raster({"a": _nan_layer()}), ValueError,
     r"spikes\['a'\] holds 1 NaN.*finite"),
    ("raster-1d-layer", lambda n, r, p: viz.raster({"a": torch.rand(3)}), ValueError,
     r"spikes\['a'\] must be a \[T, N, \.\.\.\] tensor"),
    ("rates-1d-layer", lambda n, r, p: viz.firing_rates({"a": torch.rand(3)}), ValueError, r"spikes\['a'\]"),
    ("rates-nan", lambda n, r, p: viz.firing_rates({"a": _nan_layer()}), ValueError, r"spikes\['a'\] holds 1 NaN"),
    ("animate-nan", lambda n, r, p: viz.animate_raster({"a": _nan_layer()}), ValueError, r"spikes\['a'\] holds"),
    ("raster-sample-negative", lambda n, r, p: viz.raster(r, sample=-1), ValueError, r"sample must be >= 0"),
    ("raster-sample-too-big", lambda n, r, p: viz.raster(r, sample=5), ValueError,
     r"holds 5 samples \(valid: 0 to 4\)"),
    ("raster-neurons-negative", lambda n, r, p: viz.raster(r, neurons=[-1]), ValueError,
     r"index -1 is out of range for the 30 neurons of layer '2' \(valid: 0 to 29\)"),
    ("raster-neurons-float", lambda n, r, p: viz.raster(r, neurons=[1.5]), TypeError,
     r"neurons entry must be an integer"),
    ("raster-neurons-unknown-layer", lambda n, r, p: viz.raster(r, neurons={"9": [0]}), ValueError,
     r"neurons names layers \['9'\] that are not plotted"),
    ("maps-t-negative", lambda n, r, p: viz.feature_maps(_conv(), t=-1), ValueError, r"t must be >= 0"),
    ("maps-sample-negative", lambda n, r, p: viz.feature_maps(_conv(), sample=-1), ValueError, r"sample must be >= 0"),
    ("maps-channels-negative", lambda n, r, p: viz.feature_maps(_conv(), channels=[-1]), ValueError, r"index -1"),
    ("maps-zero-channels", lambda n, r, p: viz.feature_maps({"c": torch.zeros(3, 2, 0, 3, 3)}), ValueError,
     r"spikes\['c'\] has an empty dimension"),
    ("maps-nan", lambda n, r, p: viz.feature_maps({"c": torch.full((3, 2, 1, 3, 3), NAN)}), ValueError,
     r"spikes\['c'\] holds 54 NaN"),
    ("membrane-sample-negative", lambda n, r, p: viz.membrane_trace(r, sample=-1), ValueError, r"sample must be >= 0"),
    ("raster-max-neurons-0", lambda n, r, p: viz.raster(r, max_neurons=0), ValueError,
     r"max_neurons must be a positive integer or None"),
    ("raster-max-neurons-neg", lambda n, r, p: viz.raster(r, max_neurons=-1), ValueError, r"max_neurons"),
    ("raster-max-neurons-float", lambda n, r, p: viz.raster(r, max_neurons=1.5), TypeError,
     r"max_neurons must be a positive integer or None"),
    ("raster-marker-size-neg", lambda n, r, p: viz.raster(r, marker_size=-1), ValueError, r"marker_size must be > 0"),
    ("raster-marker-size-nan", lambda n, r, p: viz.raster(r, marker_size=NAN), ValueError,
     r"marker_size must be a finite"),
    ("raster-colors-too-few", lambda n, r, p: viz.raster(r, colors=["red"]), ValueError,
     r"colors must give one colour per plotted layer: 2 layers"),
    ("raster-colors-bad", lambda n, r, p: viz.raster(r, colors=["red", "nocolour"]), ValueError,
     r"colors\[1\] = 'nocolour' is not a matplotlib colour"),
    ("raster-layers-empty", lambda n, r, p: viz.raster(r, layers=[]), ValueError, r"layers is empty"),
    ("raster-layers-str", lambda n, r, p: viz.raster(r, layers="2"), TypeError, r"layers must be a list .*\['2'\]"),
    ("raster-layers-twice", lambda n, r, p: viz.raster(r, layers=["2", "2"]), ValueError, r"layers names '2' twice"),
    ("rates-layers-twice", lambda n, r, p: viz.firing_rates(r, layers=["4", "4"]), ValueError,
     r"layers names '4' twice"),
    ("membrane-neurons-twice", lambda n, r, p: viz.membrane_trace(r, neurons=[0, 0]), ValueError,
     r"neurons \[0, 0\] lists index 0 twice"),
    ("maps-channels-twice", lambda n, r, p: viz.feature_maps(_conv(), channels=[0, 0]), ValueError,
     r"channels \[0, 0\] lists index 0 twice"),
    ("raster-neurons-twice", lambda n, r, p: viz.raster(r, neurons=[0, 0, 1]), ValueError, r"lists index 0 twice"),
    ("record-layers-twice", lambda n, r, p: viz.record(n, _x(), layers=["2", "2"]), ValueError,
     r"layers names '2' twice"),
    ("select-neurons-bogus", lambda n, r, p: viz.select_neurons(np.zeros((3, 10)), 5, "bogus"), ValueError,
     r"select must be one of"),
    ("select-neurons-1d", lambda n, r, p: viz.select_neurons(np.zeros(10), 5), ValueError, r"\[T, neurons\]"),
    ("membrane-threshold-nan", lambda n, r, p: viz.membrane_trace(r, v_threshold=NAN), ValueError,
     r"v_threshold must be a finite"),
    ("membrane-nan-v", lambda n, r, p: viz.membrane_trace(viz.Recording(r, v={"2": _nan_layer()})), ValueError,
     r"v.v\['2'\] holds 1 NaN"),
    ("membrane-nan-v-tensor", lambda n, r, p: viz.membrane_trace(_nan_layer()[:, 0]), ValueError, r"v holds 1 NaN"),
    ("accuracy-energy-nan", lambda n, r, p: viz.accuracy_energy([dict(label="a", energy_pj=NAN, accuracy=0.9)]),
     ValueError, r"runs\[0\] \('a'\) energy_pj must be a finite"),
    ("accuracy-energy-inf-acc", lambda n, r, p: viz.accuracy_energy(
        [dict(label="a", energy_pj=1.0, accuracy=0.9), dict(label="b", energy_pj=2.0, accuracy=float("inf"))]),
     ValueError, r"runs\[1\] \('b'\) accuracy must be a finite"),
    ("pareto-nan", lambda n, r, p: viz.pareto_front([NAN, 2.0], [0.5, 0.6]), ValueError,
     r"energy\[0\] is nan.*finite"),
    ("energy-unit-nan", lambda n, r, p: viz.energy_unit([NAN]), ValueError, r"values_pj must be finite"),
    ("animate-to-folder", lambda n, r, p: viz.animate_raster(r, p), ValueError, r"is a folder: give a \.gif"),
    ("animate-not-gif", lambda n, r, p: viz.animate_raster(r, p / "a.png"), ValueError, r"must name a \.gif file"),
    ("record-not-a-model", lambda n, r, p: viz.record("not a model", _x()), TypeError,
     r"model must be a torch.nn.Module"),
    ("record-unknown-layer", lambda n, r, p: viz.record(n, _x(), layers=["bogus"]), ValueError,
     r"layers \['bogus'\] are not spiking neuron layers of the model; recordable: '2', '4'"),
    ("record-not-a-neuron", lambda n, r, p: viz.record(n, _x(), layers=["1"]), ValueError, r"recordable: '2', '4'"),
    ("save-under-a-file", lambda n, r, p: viz.save(plt.figure(), _file(p) / "sub" / "x"), ValueError,
     r"a_file' is a file, not a folder"),
    ("save-formats-twice", lambda n, r, p: viz.save(plt.figure(), p / "x", formats=("png", "png")), ValueError,
     r"formats names 'png' twice"),
    ("save-unwritten-suffix", lambda n, r, p: viz.save(plt.figure(), p / "x.jpg"), ValueError,
     r"ends in \.jpg, which save does not write"),
]


@pytest.mark.parametrize("call, exc, match", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_viz_refuses_bad_input(rec, tmp_path, call, exc, match):
    net, r = rec
    with pytest.raises(exc, match=match):
        call(net, r, tmp_path)


def test_viz_keeps_what_bad_input_checks_must_not_refuse(rec, tmp_path):
    net, r = rec
    assert viz.record(nn.Sequential(nn.Linear(20, 3)), _x()) == viz.Recording()  # no neurons: an empty recording
    assert list(viz.record(net, _x(), layers=["4"])) == ["4"]
    assert len(viz.raster(r, colors=["red", "blue"], marker_size=2.0, max_neurons=3).collections) == 2
    assert viz.raster(r, neurons={"2": [0, 1]}).raster_neurons["2"] == [0, 1]
    # a suffix of another format is replaced (`neuroq viz --formats pdf` saves raster_0.png as raster_0.pdf)
    assert [q.name for q in viz.save(plt.figure(), tmp_path / "r.png", formats=("pdf",))] == ["r.pdf"]
    ax = viz.membrane_trace(r, v_threshold=torch.tensor(0.5), neurons=np.array([1, 2]))
    assert ax.neurons == [1, 2]
    fig = viz.animate_raster(r, tmp_path / "new" / "a.GIF", max_neurons=4)  # missing folder: created
    assert (tmp_path / "new" / "a.GIF").is_file() and fig.animation is not None


def test_interactive_refuses_bad_input(rec):
    pytest.importorskip("bokeh")
    _, r = rec
    with pytest.raises(ValueError, match="layers is empty"):
        viz.interactive_raster(r, layers=[])
    with pytest.raises(ValueError, match="layers names '2' twice"):
        viz.interactive_rates(r, layers=["2", "2"])
    with pytest.raises(ValueError, match=r"samples \[-1\]: index -1 is out of range"):
        viz.interactive_raster(r, samples=[-1])
    with pytest.raises(ValueError, match="lists index 1 twice"):
        viz.interactive_raster(r, samples=[1, 1])
    for fn in (viz.interactive_raster, viz.interactive_rates):   # an empty recording: refused, not an empty page
        with pytest.raises(ValueError, match="the recording is empty"):
            fn(viz.Recording())
