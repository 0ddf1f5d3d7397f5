"""The main job: training loop, atomic checkpoints, SIGKILL + resume, torchrun data parallel, CLI errors."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from neuroq import _sj
from neuroq.cli import main
from neuroq.io import atomic_write_text, load_checkpoint, save_checkpoint

PY = sys.executable
BASE = ["train", "--method", "lif", "--dataset", "digits", "-T", "2", "--hidden", "64", "--quiet"]


def _weights(path):
    return load_checkpoint(path)["model"]


def test_train_writes_all_outputs(tmp_path):
    out = tmp_path / "run"
    assert main(BASE + ["--epochs", "2", "--limit-train", "400", "--out", str(out)]) == 0
    for f in ("checkpoint.pt", "metrics.json", "energy.json", "raster.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_done"] == 2 and 0 <= m["final_test_acc"] <= 1 and "machine" in m
    e = json.loads((out / "energy.json").read_text())
    assert e["total"]["energy_pj_per_sample"] > 0
    first = next(iter(e["layers"].values()))
    assert first["input"] == "real" and first["macs"] > 0  # direct encoding: first layer does MACs
    ck = torch.load(out / "checkpoint.pt", weights_only=True)  # loads without pickle
    assert ck["epoch"] == 2


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    args = BASE + ["--epochs", "8", "--no-report"]
    ref = tmp_path / "ref"
    subprocess.run([PY, "-m", "neuroq.cli", *args, "--out", str(ref)], check=True, capture_output=True)
    run = tmp_path / "killed"
    p = subprocess.Popen([PY, "-m", "neuroq.cli", *args, "--out", str(run)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and p.poll() is None:
        mp = run / "metrics.json"
        if mp.exists():
            try:
                done = json.loads(mp.read_text())["epochs_done"]
            except (json.JSONDecodeError, KeyError):
                done = 0  # never happens with atomic writes, but be safe
            if done >= 2:
                p.send_signal(signal.SIGKILL)
                killed_at = done
                break
        time.sleep(0.02)
    p.wait()
    assert killed_at is not None and killed_at < 8, "run finished before it could be killed"
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] < 8
    subprocess.run([PY, "-m", "neuroq.cli", *args, "--out", str(run), "--resume"], check=True, capture_output=True)
    a, b = _weights(ref / "checkpoint.pt"), _weights(run / "checkpoint.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = json.loads((ref / "metrics.json").read_text())["history"]
    hb = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["test_acc"] for h in ha] == [h["test_acc"] for h in hb]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_resume_refuses_other_options(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(BASE + ["--epochs", "1", "--limit-train", "100", "--out", str(out), "--no-report"]) == 0
    code = main(BASE[:-3] + ["-T", "3", "--hidden", "64", "--quiet", "--epochs", "2", "--limit-train", "100",
                             "--out", str(out), "--resume", "--no-report"])
    assert code == 2
    assert "T=2" in capsys.readouterr().err


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"a": torch.ones(2)})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(Exception):
        save_checkpoint(path, {"a": Boom()})
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp files left
    atomic_write_text(tmp_path / "t.json", "{}")
    assert (tmp_path / "t.json").read_text() == "{}"


@pytest.mark.slow
def test_torchrun_two_ranks_stay_in_sync(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", "29533",
           "-m", "neuroq.cli", *BASE, "--epochs", "1", "--limit-train", "256", "--out", str(out), "--no-report"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2
    digests = m["param_sha256_per_rank"]  # parameters and normalization buffers
    assert len(digests) == 2 and digests[0] == digests[1]
    # the epoch's training loss and accuracy cover every rank's shard
    assert m["history"][0]["samples"] == m["train_samples"] == 256 - round(0.1 * 256)


@pytest.mark.parametrize("argv,msg", [
    (["train", "-T", "0"], "-T must be >= 1"),
    (["train", "--dataset", "cifar"], "invalid choice"),
    (["train", "--method", "nope"], "invalid choice"),
    (["train", "--lr", "-1"], "--lr must be > 0"),
])
def test_cli_rejects_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert msg in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path, capsys):
    code = main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--no-download", "--quiet"])
    assert code == 2
    assert "lacks IDX files" in capsys.readouterr().err


def test_energy_penalty_refused_for_online_methods(capsys):
    code = main(["train", "--method", "saf-e", "--energy-penalty", "1e-3", "--epochs", "1", "--quiet"])
    assert code == 2
    assert "--energy-penalty is not supported by --method saf-e" in capsys.readouterr().err


# ---- issue 15: errors that say what to do, resume extension, validation, DDP records ------------------
def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err and "weights_only" not in err, err
    return err


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(BASE + ["--epochs", "1", "--limit-train", "120", "--limit-test", "40", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "foreign"])
@pytest.mark.parametrize("verb", ["resume", "viz", "energy"])
def test_bad_checkpoints_are_one_line_errors(kind, verb, tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    ck = run / "checkpoint.pt"
    good = (tiny_run / "checkpoint.pt").read_bytes()
    if kind == "truncated":
        ck.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        ck.write_bytes(os.urandom(4096))
    elif kind == "empty":
        ck.write_bytes(b"")
    else:
        torch.save(torch.nn.Linear(2, 2).state_dict(), ck)
    if verb == "resume":
        code = main(BASE + ["--epochs", "2", "--out", str(run), "--resume"])
    elif verb == "viz":
        code = main(["viz", str(ck), "--out", str(tmp_path / "v")])
    else:
        code = main(["energy", str(ck)])
    assert code == 2
    err = _one_line_error(capsys)
    assert "checkpoint" in err


@pytest.mark.parametrize("device,msg", [("cuda", "no CUDA GPU is available"), ("tpu", "--device must be")])
def test_bad_device_is_a_one_line_error(device, msg, tmp_path, capsys):
    try:
        code = main(BASE + ["--epochs", "1", "--device", device, "--out", str(tmp_path / "r")])
    except SystemExit as e:  # refused by the option's own parser
        code = e.code
    assert code == 2 and msg in _one_line_error(capsys)


def test_out_naming_a_file_is_a_one_line_error(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(BASE + ["--epochs", "1", "--out", str(f)]) == 2
    _one_line_error(capsys)


def test_download_without_network_is_a_clear_error(tmp_path, capsys, monkeypatch):
    import urllib.error

    import torchvision

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    assert main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--epochs", "1", "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert "download failed" in err and "--data-dir" in err


def test_resume_with_more_epochs_replans_the_schedule(tmp_path):
    out = tmp_path / "r"
    args = BASE + ["--limit-train", "128", "--no-report", "--lr", "0.01", "--out", str(out)]
    assert main(args + ["--epochs", "2"]) == 0
    assert main(args + ["--epochs", "4", "--resume"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    lrs = [h["lr"] for h in m["history"]]
    import math
    # epochs 1-2 on the 2-epoch cosine, epochs 3-4 on the 4-epoch cosine (closed form at each epoch)
    assert lrs[:2] == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 2)) / 2 for e in (1, 2)], abs=1e-12)
    assert lrs[2:] == pytest.approx([0.01 * (1 + math.cos(math.pi * e / 4)) / 2 for e in (3, 4)], abs=1e-12)
    assert m["extensions"] == [dict(after_epoch=2, epochs_before=2, epochs_after=4,
                                    lr_now=pytest.approx(0.01 * (1 + math.cos(math.pi / 2)) / 2))]
    assert main(args + ["--epochs", "1", "--resume"]) == 2  # fewer epochs than done: refused


def test_one_epoch_accuracy_is_meaningful_and_best_epoch_uses_validation(tmp_path):
    """BatchNorm statistics are re-estimated before every evaluation (the eval network was dead after one
    epoch: 10 % test accuracy); the best epoch is chosen on a held-out validation split."""
    from neuroq.data import encode
    from neuroq.training import load_run

    out = tmp_path / "r"
    assert main(["train", "--method", "lif", "--epochs", "1", "--quiet", "--no-report", "--out", str(out)]) == 0
    m = json.loads((out / "metrics.json").read_text())
    method, model, data, _ = load_run(out / "checkpoint.pt")
    model.train()  # the same weights with batch statistics over the whole test set
    _sj.reset_net(model)
    with torch.no_grad():
        train_mode_acc = float((model(encode(data.x_test, method.T)).mean(0).argmax(1) == data.y_test).double().mean())
    assert train_mode_acc > 0.5
    assert abs(m["final_test_acc"] - train_mode_acc) < 0.1, (m["final_test_acc"], train_mode_acc)
    assert m["val_samples"] == round(0.1 * 1437) and m["train_samples"] == 1437 - m["val_samples"]
    assert "best_test_acc" not in m
    assert m["best_epoch"] == 1 and m["test_acc_at_best_epoch"] == m["history"][0]["test_acc"]
    assert (out / "best.pt").is_file()
    out2 = tmp_path / "r2"
    assert main(BASE + ["--epochs", "3", "--no-report", "--out", str(out2)]) == 0
    m2 = json.loads((out2 / "metrics.json").read_text())
    vals = [h["val_acc"] for h in m2["history"]]
    assert m2["best_epoch"] == vals.index(max(vals)) + 1
    assert m2["test_acc_at_best_epoch"] == m2["history"][m2["best_epoch"] - 1]["test_acc"]


def test_checkpoint_files_and_permissions(tmp_path):
    from neuroq.io import atomic_write_text

    path = tmp_path / "c.json"
    for i in range(3):  # writers killed mid-write leave temporaries behind ...
        (tmp_path / f".c.json.{i}abc.tmp").write_bytes(b"x" * 100)
    atomic_write_text(path, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]  # ... the next write removes them
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_load_run_of_python_data_needs_that_data(tmp_path):
    """A run on data given in Python stores the default ``--dataset``; rebuilding it from that spec would
    evaluate the model on other data, so ``load_run`` refuses and takes the data instead."""
    from neuroq.data import ArrayDataset, from_datasets
    from neuroq.io import CheckpointError
    from neuroq.training import TrainConfig, fit, get, load_run

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(96, 12, generator=g), torch.arange(96) % 3
    data = from_datasets(ArrayDataset(x[:64], y[:64]), ArrayDataset(x[64:], y[64:]), name="blobs")
    out = tmp_path / "py"
    fit(get("lif", T=2, hidden=(16,)), data, TrainConfig(epochs=1, val_fraction=0, recalibrate_batches=0), out=out,
        progress=False)
    with pytest.raises(CheckpointError, match=r"trained on data 'blobs' \(name='blobs'\).*data=\.\.\."):
        load_run(out / "checkpoint.pt")
    method, model, back, _ = load_run(out / "checkpoint.pt", data=data)
    assert back is data and model(torch.rand(2, 5, 12)).shape == (2, 5, 3)
    with pytest.raises(TypeError, match="data must be a neuroq.data.TaskData"):
        load_run(out / "checkpoint.pt", data=(x, y))


# ---- the loop owns the step; the method binds its layout once ----------------------------------
def _explicit_step(model, x, y, opt, weight, pen):
    """One Adam step written out by hand: cross-entropy of the time-averaged readout + weight * penalty."""
    opt.zero_grad(set_to_none=True)
    pen.clear()
    _sj.reset_net(model)
    logits = model(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).mean(0)
    loss = torch.nn.functional.cross_entropy(logits, y) + weight * pen.penalty()
    loss.backward()
    opt.step()
    return float(loss.detach())


def test_the_loop_step_is_compute_loss_plus_penalty_then_one_update():
    """``train_step`` for a method with the default step equals the explicit loop of the same equations
    (forward over T direct-encoded steps, CE, + lambda x synaptic penalty, backward, Adam): the weights after
    three steps are identical, and the method itself never touches the optimiser."""
    import copy

    from neuroq.data import load_dataset
    from neuroq.energy import make_penalty
    from neuroq.training import Context, TrainConfig, get, train_step

    data = load_dataset("digits", limit_train=64, limit_test=8)
    method = get("lif", T=2, hidden=(16,)).bind(TrainConfig(), data)
    torch.manual_seed(0)
    a = method.build_model(data)
    b = copy.deepcopy(a)
    opt_a, opt_b = torch.optim.Adam(a.parameters(), 1e-2), torch.optim.Adam(b.parameters(), 1e-2)
    pen_a, pen_b = make_penalty("synaptic", a).start(), make_penalty("synaptic", b).start()
    x, y = data.train.x[:32], data.train.y[:32]
    for _ in range(3):
        got, _ = train_step(method, a, x, y, opt_a, Context(), penalty=pen_a, penalty_weight=1e-3)
        want = _explicit_step(b, x, y, opt_b, 1e-3, pen_b)
        assert got == pytest.approx(want, rel=1e-6)
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=n)
    # a non-finite loss is no update
    before = [p.detach().clone() for p in a.parameters()]
    loss, _ = train_step(method, a, x, y, opt_a, Context(), penalty=pen_a, penalty_weight=float("inf"))
    assert not math.isfinite(loss) and all(torch.equal(p, q) for p, q in zip(before, a.parameters()))
    assert not method.steps_itself() and get("saf-e").steps_itself() and get("ottt-a").steps_itself()
    with pytest.raises(NotImplementedError, match="stepped by the loop"):
        method.train_step(a, x, y, opt_a, Context())
    with pytest.raises(ValueError, match="its own step"):
        train_step(get("saf-e", T=2), a, x, y, opt_a, Context(), amp=True)


def test_bind_fixes_the_layout_once():
    from neuroq.data import ArrayDataset, TaskData, load_dataset
    from neuroq.training import Layout, TrainConfig, get

    data = load_dataset("digits", limit_train=8, limit_test=8)
    m = get("lif", T=3)
    assert m.layout == Layout("direct", "image", 3)                   # unbound: direct input of its first kind
    assert get("lmu").layout.kind == "sequence"
    assert m.bind(TrainConfig(encoding="rate"), data) is m and m.layout == Layout("rate", "image", 3)
    x = data.test.x[:4]
    spikes = m.record_input(x)
    assert spikes.shape == (3, 4, 1, 8, 8) and set(spikes.unique().tolist()) <= {0.0, 1.0}
    seq = TaskData("s", ArrayDataset(torch.rand(4, 5, 2), torch.zeros(4, dtype=torch.long)),
                   ArrayDataset(torch.rand(4, 5, 2), torch.zeros(4, dtype=torch.long)), 2, (5, 2), kind="sequence")
    assert get("lmu").bind(data=seq).record_input(seq.test.x).shape == (5, 4, 2)   # time-first
    with pytest.raises(ValueError, match="takes image or frames data"):
        get("lif").bind(data=seq)
    with pytest.raises(ValueError, match="kind must be one of"):
        Layout(kind="video")
    with pytest.raises(TypeError, match="train must be a neuroq.training.TrainConfig"):
        m.bind(dict(encoding="rate"))


def test_load_dataset_takes_the_run_configuration():
    from neuroq.data import load_dataset
    from neuroq.training import TrainConfig

    cfg = TrainConfig(dataset="digits", limit_train=10, limit_test=7)
    d = load_dataset(cfg)
    assert (len(d.train), len(d.test)) == (10, 7)
    assert (len(load_dataset(cfg, limit_train=None).train), len(load_dataset(cfg, limit_test=3).test)) == (1797 - 360,
                                                                                                          3)
    with pytest.raises(TypeError, match="dataset spec"):
        load_dataset(3)


def test_the_same_command_resumes_ctrl_c_is_one_line_and_another_run_is_refused(tmp_path, capsys, monkeypatch):
    """Ctrl-C after epoch 1 prints one line and leaves the checkpoint; the same command, run again without
    any flag, resumes (no epoch is trained twice); a different run in that folder is refused with the
    option named and --overwrite offered; --overwrite starts over."""
    from neuroq.training.loop import Trainer

    out = tmp_path / "r"
    cmd = BASE + ["--epochs", "2", "--limit-train", "100", "--out", str(out), "--no-report"]
    real = Trainer.run_epoch

    def stop_after_first(self, epoch):
        rec = real(self, epoch)
        if epoch == 0:
            raise KeyboardInterrupt
        return rec

    monkeypatch.setattr(Trainer, "run_epoch", stop_after_first)
    assert main(cmd) == 130
    err = capsys.readouterr().err
    assert err.strip() == "neuroq train: interrupted after epoch 1 of 2; run the same command to resume"
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(Trainer, "run_epoch", real)
    first = json.loads((out / "metrics.json").read_text())["history"][0]
    assert main(cmd) == 0
    assert "resumed from" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_done"] == 2 and m["history"][0] == first
    # another method in the same folder: refused, naming the difference and the way out
    assert main(["train", "--method", "if", *cmd[3:]]) == 2
    err = capsys.readouterr().err
    assert "holds a run of --method lif, this run asks for --method if" in err and "--overwrite" in err
    assert main(["train", "--method", "if", *cmd[3:], "--overwrite"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["method"] == "if"


def test_load_run_predict_is_the_training_readout(tmp_path):
    """``neuroq.load_run(path).predict(x)`` takes samples as the dataset gives them (a batch or one sample),
    encodes, resets and reads out as training did: its accuracy on the test set is the run's reported
    test accuracy; a wrong layout is refused with the expected shape named."""
    import neuroq

    out = tmp_path / "p"
    assert main(BASE + ["--epochs", "2", "--limit-train", "300", "--out", str(out), "--no-report"]) == 0
    run = neuroq.load_run(out)
    method, model, data, cfg = run                        # still unpacks as before
    scores = run.predict(data.test.x)
    assert scores.shape == (len(data.test), 10)
    acc = float((scores.argmax(1) == data.test.y).double().mean())
    assert acc == pytest.approx(json.loads((out / "metrics.json").read_text())["final_test_acc"], abs=1e-12)
    torch.testing.assert_close(run.predict(data.test.x[3]), scores[3:4])
    with pytest.raises(ValueError, match=r"x must be samples of shape \(1, 8, 8\)"):
        run.predict(torch.rand(5, 8, 8))
    assert neuroq.neuron.LIFNode is not None and "viz" in dir(neuroq)   # subpackages load on first use
