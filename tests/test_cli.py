"""The command line: ``neuroq viz`` and ``neuroq energy`` on trained checkpoints, and every verb for every
registered method (``neuroq train`` options and refusals: tests/training/test_config.py and test_loop.py)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from neuroq import _sj, viz
from neuroq.cli import main
from neuroq.energy import EnergyMeter
from neuroq.training import methods as M

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


@pytest.mark.slow
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
        assert f"{d['label']} [{k}]" in text        # the plots' name of the layer, its module path beside
        assert d["energy_pj"] == pytest.approx(d["sops"] * rep["e_ac_pj"] + d["macs"] * rep["e_mac_pj"])
    # the same numbers as metering the model directly
    from neuroq.training import load_run
    method, model, ds, cfg = load_run(lif_run / "checkpoint.pt")
    with torch.no_grad(), EnergyMeter(model) as m:
        _sj.reset_net(model)
        model(method.record_input(ds.x_test[:25]))
    assert rep["total"]["sops"] == pytest.approx(m.report()["total"]["sops"])
    labels = viz.layer_labels(model, viz.record(model, method.record_input(ds.x_test[:2])))  # the plots' names
    assert {k: d["label"] for k, d in rep["neurons"].items()} == {k: labels[k] for k in rep["neurons"]}
    assert all(rep["layers"][k]["label"] == labels[k] for k in rep["layers"])
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


@pytest.mark.slow
@pytest.mark.parametrize("method", M.available())
def test_cli_verbs_work_for_every_method(method, tmp_path):
    if "image" not in M.method_class(method).kinds:   # needs MNIST sequences: tests/training/test_lmu_methods.py
        pytest.skip(f"{method} takes sequence data, not digits")
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
    return method.inference_network(model), method.record_input(ds.x_test[:1])


def test_cli_predict_from_a_file_is_run_predict(lif_run, tmp_path, capsys):
    """``neuroq predict RUN --input FILE`` gives ``neuroq.load_run(RUN).predict(x)`` for the samples in a .npy,
    .npz or .pt file (a batch or one sample), prints one line per sample and writes .json/.csv; bad files
    and shapes are one-line errors naming --input."""
    import neuroq

    run = neuroq.load_run(lif_run)
    x = run.data.test.x[:7]
    want = run.predict(x)
    np.save(tmp_path / "x.npy", x.numpy())
    np.savez(tmp_path / "x.npz", x=x.numpy(), y=np.zeros(7))
    torch.save(x[2].clone(), tmp_path / "one.pt")
    assert main(["predict", str(lif_run), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.json")]) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines() if "\t" in ln]
    assert [int(c) for _, c, _ in lines] == want.argmax(1).tolist()
    got = json.loads((tmp_path / "p.json").read_text())
    assert got["predictions"] == want.argmax(1).tolist() and got["method"] == "lif"
    torch.testing.assert_close(torch.tensor(got["scores"]), want.float(), rtol=1e-6, atol=1e-7)
    assert main(["predict", str(lif_run / "checkpoint.pt"), "--input", str(tmp_path / "x.npz"),
                 "--out", str(tmp_path / "p.csv"), "-b", "3"]) == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert len(rows) == 8 and rows[0].startswith("index,prediction,score_0")
    assert [int(r.split(",")[1]) for r in rows[1:]] == want.argmax(1).tolist()
    capsys.readouterr()
    assert main(["predict", str(lif_run), "--input", str(tmp_path / "one.pt")]) == 0
    assert capsys.readouterr().out.split("\t")[1] == str(int(want[2].argmax()))
    np.save(tmp_path / "bad.npy", np.zeros((5, 8, 8), np.float32))
    np.save(tmp_path / "nan.npy", np.full((2, 1, 8, 8), np.nan, np.float32))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    for f, msg in [("bad.npy", "x must be samples of shape (1, 8, 8)"), ("nan.npy", "NaN"),
                   ("junk.npy", "is not a readable .npy file"), ("missing.npy", "no such file"),
                   ("x.txt", "expected a .npy, .npz or .pt file")]:
        (tmp_path / "x.txt").write_text("1")
        assert main(["predict", str(lif_run), "--input", str(tmp_path / f)]) == 2
        err = capsys.readouterr().err
        assert msg in err and "\n" == err[-1] and err.count("\n") == 1, err
    assert main(["predict", str(lif_run), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.txt")]) == 2
    assert "--out" in capsys.readouterr().err


def test_the_raster_of_a_one_step_run_shows_samples(lif_run, tmp_path):
    """train's raster.png and `neuroq viz --kind raster` draw one sample over time, or for a network that runs one
    step (S2NN) 32 test samples side by side (neurons x samples), from one helper."""
    import neuroq
    from neuroq.training.report import RASTER_SAMPLES_T1, inference_model, raster_recording

    out = tmp_path / "s2nn"
    assert main(["train", "--method", "s2nn", *[a for a in TINY if a not in ("-T", "3")], "--out", str(out)]) == 0
    for path, steps, samples in [(lif_run, 3, 1), (out, 1, RASTER_SAMPLES_T1)]:
        run = neuroq.load_run(path)
        rec, title = raster_recording(run.method, inference_model(run.method, run.model), run.data, 2)
        assert {tuple(t.shape[:2]) for t in rec.values()} == {(steps, samples)}
        assert ("test samples 2-33 (T = 1)" in title) == (samples > 1)
    assert (out / "raster.png").is_file()
