"""``neuroq train --method lmu / hybrid-lmu``: CLI runs on a small IDX set (sequential MNIST rows),
the dt schedule applied at every epoch and carried by the checkpoint, resume == uninterrupted, options
refused for other methods, the energy / viz verbs on the checkpoints, and the psMNIST example end to end
on tiny sizes.  The data are synthetic IDX files (CI has no MNIST)."""
import gzip
import json
import struct

import numpy as np
import pytest
import torch

from neuroq.cli import main
from neuroq.data import load_dataset
from neuroq.neuron import SpikingActivation
from neuroq.training import TrainConfig, Trainer, get, load_run
from neuroq.training.methods.lmu import HybridLMUConfig, LMUConfig

SMALL = ["--order", "8", "--hidden", "12", "-b", "40", "--quiet"]


def _idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    """160 train / 40 test 28x28 'digits': class k lights rows 2k..2k+3, plus noise."""
    d = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 160), ("t10k", 40)):
        y = np.arange(n) % 10
        x = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(y):
            x[i, 2 * k:2 * k + 4] = 255
        _idx(d / f"{split}-images-idx3-ubyte.gz", x)
        _idx(d / f"{split}-labels-idx1-ubyte.gz", y)
    return str(d)


def _train(mnist_dir, out, *extra):
    return main(["train", "--dataset", "smnist-rows", "--data-dir", mnist_dir, "--no-download", "--out", str(out),
                 *SMALL, *extra])


def test_lmu_cli_run_and_energy_verb(mnist_dir, tmp_path):
    run = tmp_path / "lmu"
    assert _train(mnist_dir, run, "--method", "lmu", "--epochs", "2", "--lr", "3e-3") == 0
    met = json.loads((run / "metrics.json").read_text())
    assert met["method"] == "lmu" and met["epochs_done"] == 2 and met["method_config"]["order"] == 8
    assert met["history"][-1]["train_loss"] < met["history"][0]["train_loss"]
    assert main(["energy", str(run), "--samples", "20"]) == 0           # a run folder works too
    rep = json.loads((run / "energy.json").read_text())
    # streaming memory: T steps x (order^2 for A m + order for B u) MACs per sequence (28 rows of MNIST)
    assert rep["layers"]["lmu.cell.memory"]["macs_per_sample"] == 28 * (8 * 8 + 8)
    # last-step form: the hidden cell runs once per sequence, on [m_T (8); x_T (28)]
    assert rep["layers"]["lmu.cell.hidden_cell.kernel"]["macs_per_sample"] == (8 + 28) * 12
    assert "activity" not in rep
    assert main(["viz", str(run), "--kind", "energy", "--samples", "20"]) == 0
    assert (run / "energy.png").exists()
    assert main(["viz", str(run), "--kind", "raster"]) == 2              # no spiking neurons: a clear error
    assert main(["viz", str(run), "--kind", "all", "--samples", "16", "--out", str(tmp_path / "v")]) == 0
    assert not (tmp_path / "v" / "raster_0.png").exists()


@pytest.mark.slow
def test_hybrid_cli_schedule_is_stored_and_reloaded(mnist_dir, tmp_path):
    run = tmp_path / "hyb"
    assert _train(mnist_dir, run, "--method", "hybrid-lmu", "--epochs", "3", "--dt-schedule", "geometric:8:2:2",
                  "--no-report") == 0
    method, model, data, cfg = load_run(run / "checkpoint.pt")
    assert method.config.dt_schedule == "geometric:8:2:2" and method.config.readout == "last"
    acts = [m for m in model.modules() if isinstance(m, SpikingActivation)]
    assert len(acts) == 1 and acts[0].dt == 2.0                          # the dt of the last epoch came back
    assert main(["energy", str(run / "checkpoint.pt"), "--samples", "20"]) == 0
    rep = json.loads((run / "energy.json").read_text())
    act = rep["activity"]["lmu.cell.hidden_cell.activation"]
    assert act["dt"] == 2.0 and act["max_count"] <= 2                    # |n| <= ceil(|tanh| dt) = 2
    assert rep["total"]["bits_of_activity"] <= 3.0                       # 2 magnitude bits + sign
    assert rep["layers"]["readout"]["input"] == "spikes"                 # the readout reads counts n/dt
    assert main(["viz", str(run), "--kind", "all", "--samples", "16", "--out", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "raster_0.png").is_file() and (tmp_path / "v" / "energy.png").is_file()


def test_schedule_applied_at_every_epoch(mnist_dir):
    data = load_dataset("smnist-rows", mnist_dir, download=False, limit_train=40, limit_test=20)
    method = get("hybrid-lmu", order=4, hidden=(6,), dt_schedule="geometric:16:1:4:1")
    tr = Trainer(method, data, TrainConfig(dataset="smnist-rows", epochs=6, batch_size=40), label=None)
    act = next(m for m in tr.model.modules() if isinstance(m, SpikingActivation))
    seen = []
    for e in range(6):
        order = tr.begin_epoch(e)
        seen.append(act.dt)
        for xb, yb in [data.train.take(order)]:
            tr.train_batch(xb, yb)
        tr.end_epoch(e, evaluate=False)
    # independent closed form: held at 16 for the warm-up epoch, then 16 * (1/16)^((e-1)/4), then 1
    want = [16.0] + [16.0 * (1 / 16) ** ((e - 1) / 4) for e in range(1, 5)] + [1.0]
    assert seen == pytest.approx(want, rel=1e-12)


def test_hybrid_resume_equals_uninterrupted(mnist_dir, tmp_path):
    data = load_dataset("smnist-rows", mnist_dir, download=False, limit_train=80, limit_test=20)
    method = get("hybrid-lmu", order=4, hidden=(6,), dt_schedule="geometric:8:2:1")

    def run(out, epochs):
        cfg = TrainConfig(dataset="smnist-rows", epochs=epochs, batch_size=40, lr=1e-2, schedule="constant")
        return Trainer(method, data, cfg, out=out, resume=True, label=None).fit()

    full = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2)
    assert resumed["param_sha256_per_rank"] == full["param_sha256_per_rank"]
    assert resumed["final_test_acc"] == full["final_test_acc"]


def test_options_refused_where_they_do_not_apply(mnist_dir, capsys, tmp_path):
    assert _train(mnist_dir, tmp_path / "x", "--method", "lif", "--epochs", "1") == 2
    assert "--order does not apply to --method lif" in capsys.readouterr().err
    assert main(["train", "--method", "lmu", "--dt-schedule", "constant:1:1:1", "--dataset", "smnist-rows",
                 "--data-dir", mnist_dir, "--no-download", "--quiet", "--out", str(tmp_path / "y")]) == 2
    assert "--dt-schedule does not apply to --method lmu" in capsys.readouterr().err
    assert main(["train", "--method", "lmu", "--dataset", "digits", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "z")]) == 2
    assert "takes sequence data" in capsys.readouterr().err
    assert main(["train", "--method", "lmu", "--amp", "--dataset", "smnist-rows", "--data-dir", mnist_dir,
                 "--no-download", "--quiet", "--out", str(tmp_path / "w")]) == 2
    assert "--amp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--method", "hybrid-lmu", "--dt-schedule", "geometric:8:2"])
    assert "kind:start_dt:end_dt:epochs" in capsys.readouterr().err
    with pytest.raises(ValueError, match="one positive width"):
        LMUConfig(hidden=(8, 8))
    with pytest.raises(ValueError, match="readout_tau"):
        LMUConfig(readout_tau=5.0)
    with pytest.raises(ValueError, match="spike_seed"):
        HybridLMUConfig(spike_seed=-1)
    assert LMUConfig(readout="lowpass", readout_tau=5.0).readout_tau == 5.0


@pytest.mark.slow
def test_validation_pilots_never_see_the_test_set(mnist_dir, tmp_path, monkeypatch):
    """A pilot with --val-fraction: the LMU trains without the held-out split (the Trainer's seeded split) and
    the pilot's accuracies are measured on that split, never on the test set; the JSON names the split."""
    from examples import hybrid_lmu_psmnist as ex
    from neuroq.training.loop import split_validation

    seen = []
    real = ex.evaluate
    monkeypatch.setattr(ex, "evaluate", lambda method, net, dataset, **kw: seen.append(dataset) or real(
        method, net, dataset, **kw))
    out = tmp_path / "pilots.json"
    args = ["--data-dir", mnist_dir, "--order", "4", "--hidden", "6", "--lmu-epochs", "1", "--hybrid-epochs", "1",
            "--dt-schedule", "constant:3:3:1", "-b", "40", "--meter-samples", "10", "--ratio-rounds", "0",
            "--hybrid-train", "30", "--limit-test", "20", "--val-fraction", "0.25", "--pilot", "p",
            "--runs", str(tmp_path / "runs"), "--out", str(out)]
    doc = ex.main(args)
    data = ex.load_dataset("psmnist", mnist_dir, download=False)
    train, val = split_validation(data.train, 0.25, 0)
    assert seen and all(len(d) == 20 and torch.equal(d.x, val.x[:20]) for d in seen)
    assert doc["split"]["val_fraction"] == 0.25 and "validation" in doc["split"]["pilot_eval"]
    assert doc["pilots"]["p"]["n_train"] == 30 and doc["lmu_reference"]["test_sequences"] == 20
    md = ex.render_markdown(json.loads(out.read_text()))
    assert "validation acc after" in md and "test acc" not in md


@pytest.mark.slow
def test_example_end_to_end_on_tiny_sizes(mnist_dir, tmp_path):
    from examples import hybrid_lmu_psmnist as ex

    out = tmp_path / "res.json"
    args = ["--data-dir", mnist_dir, "--order", "4", "--hidden", "6", "--lmu-epochs", "1", "--hybrid-epochs", "2",
            "--dt-schedule", "geometric:9:3:1", "-b", "40", "--meter-samples", "10", "--ratio-rounds", "1",
            "--ratio-par-reps", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    doc = ex.main(args)
    res = doc["results"]
    assert res["hybrid"]["dt_per_epoch"] == [9.0, 3.0] and res["hybrid"]["dt"] == 3.0
    assert res["hybrid"]["bits_of_activity"] <= 3.0 and res["lmu"]["bits_of_activity"] is None
    assert res["lmu"]["timing"]["parallel_form"] == "last-step"
    assert res["hybrid"]["init_kept_keys"] == ["lmu.cell.hidden_cell.activation._extra_state"]
    t = doc["targets"]
    assert t["lmu_test_acc_at_least_96"]["met"] == (res["lmu"]["test_acc"] >= 0.96)
    assert t["hybrid_within_1_point"]["value"] == pytest.approx(res["lmu"]["test_acc"] - res["hybrid"]["test_acc"])
    saved = json.loads(out.read_text())
    assert saved["machine"]["torch"] == torch.__version__ and saved["n_test"] == 40
    md_file = tmp_path / "doc.md"
    md_file.write_text(f"before\n{ex.START}\nold\n{ex.END}\nafter\n")
    ex.main(["--render", str(out), "--write-doc", str(md_file)])
    text = md_file.read_text()
    assert "old" not in text and "| LMU (non-spiking) | 1 |" in text and text.endswith("after\n")


@pytest.mark.parametrize("json_name, block", [("hybrid_lmu_psmnist.json", "results"),
                                              ("hybrid_lmu_psmnist_pilots.json", "pilots"),
                                              ("hybrid_lmu_psmnist_pilots_val.json", "pilots-val")])
def test_docs_blocks_are_generated_from_the_committed_json(json_name, block):
    """docs/hybrid_lmu.md's generated blocks equal the example's render of the committed JSON
    (regenerate: ``python -m examples.hybrid_lmu_psmnist --render <json> --write-doc docs/hybrid_lmu.md``)."""
    from pathlib import Path

    from examples import hybrid_lmu_psmnist as ex

    root = Path(__file__).resolve().parents[2]
    path = root / "examples" / "results" / json_name
    doc = json.loads(path.read_text())
    doc.setdefault("path", f"examples/results/{json_name}")
    start, end = ex.markers(block)
    text = (root / "docs" / "hybrid_lmu.md").read_text()
    assert text[text.index(start) + len(start):text.index(end)].strip() == ex.render_markdown(doc).strip()
