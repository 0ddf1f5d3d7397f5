"""--log csv / tensorboard: per-epoch loss, accuracy, energy and per-layer firing rates."""
import csv
import json

import pytest

from neuroq.cli import main

BASE = ["train", "--method", "lif", "--dataset", "digits", "-T", "2", "--hidden", "32", "32", "--quiet", "--no-report",
        "--limit-train", "200", "--limit-test", "60", "--epochs", "2", "--log-samples", "40"]


def test_csv_and_tensorboard_logs(tmp_path):
    out = tmp_path / "run"
    assert main(BASE + ["--out", str(out), "--log", "csv", "tensorboard"]) == 0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    hist = json.loads((out / "metrics.json").read_text())["history"]
    for r, h in zip(rows, hist):
        assert float(r["train_loss"]) == pytest.approx(h["train_loss"])
        assert float(r["test_acc"]) == pytest.approx(h["test_acc"])
        assert float(r["energy_pj_per_sample"]) > 0
        rates = [k for k in r if k.startswith("firing_rate/")]
        assert len(rates) == 2 and all(0 <= float(r[k]) <= 1 for k in rates)  # the two LIF layers
        # named as the plots name them, with the module path beside
        assert sorted(rates) == ["firing_rate/LIF 1 (fc 32) [2]", "firing_rate/LIF 2 (fc 32) [4]"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train_loss", "test_acc", "energy_pj_per_sample", "firing_rate/LIF 1 (fc 32) [2]"} <= set(tags)
    assert [e.step for e in acc.Scalars("test_acc")] == [1, 2]
    # resuming continues the log instead of starting it again
    assert main(BASE[:-2] + ["--epochs", "3", "--out", str(out), "--log", "csv", "--resume"]) == 0
    with open(out / "log.csv", newline="") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]


def test_log_needs_a_known_logger(capsys):
    with pytest.raises(SystemExit):
        main(BASE + ["--log", "wandb"])
    assert "invalid choice" in capsys.readouterr().err
