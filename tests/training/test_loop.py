"""The main job: training loop, atomic checkpoints, SIGKILL + resume, torchrun data parallel, CLI errors."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

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


def test_torchrun_two_ranks_stay_in_sync(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", "29533",
           "-m", "neuroq.cli", *BASE, "--epochs", "1", "--limit-train", "256", "--out", str(out), "--no-report"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2
    digests = m["param_sha256_per_rank"]
    assert len(digests) == 2 and digests[0] == digests[1]


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
