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
        assert k in text
        assert d["energy_pj"] == pytest.approx(d["sops"] * rep["e_ac_pj"] + d["macs"] * rep["e_mac_pj"])
    # the same numbers as metering the model directly
    from neuroq.training import load_run
    method, model, ds, cfg = load_run(lif_run / "checkpoint.pt")
    with torch.no_grad(), EnergyMeter(model) as m:
        _sj.reset_net(model)
        model(method.record_input(ds.x_test[:25]))
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
