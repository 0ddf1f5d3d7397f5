"""N-MNIST through tonic: frames [T, 2, 34, 34] equal an explicit binning of the raw events, every source
layout (small-subset archive, its folder, tonic's own NMNIST folder) gives the same samples, the cache,
T consistency with the method, and a CLI training run on 100 samples."""
import json
import pickle
import tarfile

import numpy as np
import pytest
import torch

from neuroq.cli import main
from neuroq.data import load_dataset
from neuroq.training import TrainConfig
from neuroq.training.methods import get

tonic = pytest.importorskip("tonic", reason="the nmnist dataset reads events with tonic (pip install tonic)")


def _raw_members(archive):
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name.split("/")[-1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _labels(text):
    rows = [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return [int(a) for a, _ in rows], [int(b) for _, b in rows]


def explicit_frames(raw: bytes, T: int) -> np.ndarray:
    """The README's 5-byte event format decoded by hand, binned by an explicit loop: window
    w = (t_last - t_first) // T, frame k holds t_first + k w <= t < t_first + (k + 1) w."""
    b = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    x, y, p = b[:, 0], b[:, 1], b[:, 2] >> 7
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    assert np.all(np.diff(t) >= 0)
    w = (t[-1] - t[0]) // T
    out = np.zeros((T, 2, 34, 34))
    for xi, yi, ti, pi in zip(x, y, t, p):
        k = (ti - t[0]) // w
        if k < T:
            out[k, pi, yi, xi] += 1
    return out


def test_frames_equal_an_explicit_binning_of_the_raw_events(nmnist_archive):
    raw = _raw_members(nmnist_archive)
    tr_ids, tr_labels = _labels(raw["train1K.txt"].decode())
    te_ids, te_labels = _labels(raw["test100.txt"].decode())
    for T in (1, 10):
        d = load_dataset(f"nmnist?T={T}", str(nmnist_archive))
        assert (d.kind, d.in_shape, d.num_classes, len(d.train), len(d.test)) == ("frames", (T, 2, 34, 34), 10, 1000, 100)
        for split, ids, labels in ((d.train, tr_ids, tr_labels), (d.test, te_ids, te_labels)):
            for i in (0, 7, len(ids) - 1):
                x, y = split[i]
                assert x.dtype == torch.float32 and x.shape == (T, 2, 34, 34) and y == labels[i]
                ref = explicit_frames(raw[f"{ids[i]}.bs2"], T)
                np.testing.assert_array_equal(x.numpy(), ref)
                n_events = len(raw[f"{ids[i]}.bs2"]) // 5
                assert n_events - 5 * T <= x.sum() <= n_events  # only the tail after T whole windows is left out
    assert explicit_frames(raw["1.bs2"], 10)[:, 1].sum() > 0 and explicit_frames(raw["1.bs2"], 10)[:, 0].sum() > 0


def test_folder_archive_and_tonic_layouts_give_the_same_samples(nmnist_archive, tmp_path):
    with tarfile.open(nmnist_archive, "r:gz") as tar:
        tar.extractall(tmp_path / "small", filter="data")
    from_archive = load_dataset("nmnist?T=5", str(nmnist_archive))
    for where in (tmp_path / "small", tmp_path / "small" / "NMNISTsmall", nmnist_archive.parent):
        d = load_dataset("nmnist?T=5", str(where), download=False)
        assert d.meta["source"] == "small" and len(d.test) == 100
        for i in (0, 50):
            assert torch.equal(d.test[i][0], from_archive.test[i][0]) and d.test[i][1] == from_archive.test[i][1]
    # tonic's own download format: NMNIST/{Train,Test}/<digit>/<id>.bin (same 5-byte records)
    raw = _raw_members(nmnist_archive)
    picked = {}
    for split, listing in (("Train", "train1K.txt"), ("Test", "test100.txt")):
        ids, labels = _labels(raw[listing].decode())
        for sid, lab in list(zip(ids, labels))[:12]:
            folder = tmp_path / "tonic" / "NMNIST" / split / str(lab)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{sid:05d}.bin").write_bytes(raw[f"{sid}.bs2"])
            picked.setdefault(split, []).append((lab, sid))
    d = load_dataset("nmnist?T=5", str(tmp_path / "tonic"), download=False)
    assert d.meta["source"] == "tonic" and (len(d.train), len(d.test)) == (12, 12)
    assert isinstance(d.train.dataset, tonic.datasets.NMNIST)
    again = pickle.loads(pickle.dumps(d.test))  # what a DataLoader worker started by spawn receives
    assert torch.equal(again[3][0], d.test[3][0])
    by_id = {sid: i for i, sid in enumerate(_labels(raw["test100.txt"].decode())[0])}
    for i, (lab, sid) in enumerate(sorted(picked["Test"], key=lambda v: (v[0], f"{v[1]:05d}"))):  # tonic's order
        x, y = d.test[i]
        assert y == lab and torch.equal(x, from_archive.test[by_id[sid]][0])
    assert load_dataset("nmnist?T=5", str(tmp_path / "tonic" / "NMNIST"), download=False).meta["source"] == "tonic"


def test_cache_and_first_saccade(nmnist_archive, tmp_path):
    plain = load_dataset("nmnist?T=3", str(nmnist_archive), limit_test=4)
    cached = load_dataset(f"nmnist?T=3&cache_dir={tmp_path}", str(nmnist_archive), limit_test=4)
    for _ in range(2):  # computed and written, then read back from the cache
        for i in range(4):
            assert torch.equal(cached.test[i][0], plain.test[i][0]) and cached.test[i][1] == plain.test[i][1]
    assert len(list(tmp_path.rglob("*.hdf5"))) == 4
    first = load_dataset("nmnist?T=3&first_saccade_only=1", str(nmnist_archive), limit_test=2)
    raw = _raw_members(nmnist_archive)
    b = np.frombuffer(raw["60001.bs2"], np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
    kept = int((t < 100_000).sum())
    assert kept - 3 * 3 <= first.test[0][0].sum() <= kept < len(t)


def test_sources_that_are_not_there_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds neither tonic's NMNIST folder"):
        load_dataset("nmnist", str(tmp_path), download=False)
    (tmp_path / "NMNIST" / "Train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="holds no <digit>/\\*.bin recordings"):
        load_dataset("nmnist", str(tmp_path), download=False)
    with pytest.raises(ValueError, match="T must be >= 1"):
        load_dataset("nmnist?T=0", str(tmp_path), download=False)


def test_the_method_runs_the_frames_steps(nmnist_archive):
    d = load_dataset("nmnist?T=6", str(nmnist_archive), limit_train=8, limit_test=8)
    with pytest.raises(ValueError, match=r"holds frames of 6 time steps.*-T 4: give -T 6 or make the data 4 steps "
                                         r"long with --dataset 'nmnist\?T=4'"):
        get("lif", T=4).check(TrainConfig(), d)
    with pytest.raises(ValueError, match="--encoding rate encodes static images"):
        get("lif", T=6).check(TrainConfig(encoding="rate"), d)
    with pytest.raises(ValueError, match="--method s2nn takes image data"):
        get("s2nn").check(TrainConfig(), d)
    m = get("lif", T=6, hidden=(32,)).bind(TrainConfig(), d)
    assert m.layout.kind == "frames" and m.layout.T == 6
    net = m.build_model(d)
    from neuroq.data import batches

    x, _ = next(batches(d.train, torch.arange(4), 4))
    assert m.inputs(x).shape == (6, 4, 2, 34, 34)  # time-first, no re-encoding
    assert m.forward(net, x).shape == (4, 10)


@pytest.mark.parametrize("name", ["saf-e", "saf-f", "ottt-o", "ottt-a"])
def test_online_methods_train_on_frames(nmnist_archive, name):
    """The online methods read frame t at step t (their per-step equivalences are checked on
    time-varying inputs in tests/training/methods/test_saf.py): one training step on N-MNIST changes the
    weights and the prediction has one row per sample."""
    from neuroq.data import batches
    from neuroq.training import Context, train_step

    d = load_dataset("nmnist?T=3", str(nmnist_archive), limit_train=8, limit_test=8)
    m = get(name, T=3, hidden=(16,)).bind(TrainConfig(), d)
    torch.manual_seed(0)
    net = m.build_model(d)
    before = [p.detach().clone() for p in net.parameters()]
    x, y = next(batches(d.train, torch.arange(8), 8))
    ctx = Context()
    loss, logits = train_step(m, net, x, y, m.make_optimizer(net, 1e-2), ctx)
    assert torch.isfinite(torch.as_tensor(loss)) and logits.shape == (8, 10)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert m.predict(net, x, ctx).shape == (8, 10)


@pytest.mark.slow
def test_cli_trains_lif_on_100_nmnist_samples(nmnist_archive, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--method", "lif", "--dataset", "nmnist?T=4", "--data-dir", str(nmnist_archive), "-T", "4",
               "--limit-train", "100", "--limit-test", "20", "--epochs", "1", "-b", "25", "--quiet",
               "--num-workers", "1", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "nmnist" and m["T"] == 4 and m["train_samples"] == 90 and m["history"][0]["samples"] == 90
    e = json.loads((out / "energy.json").read_text())
    assert e["samples"] == 20 and e["total"]["energy_pj_per_sample"] > 0
    assert (out / "raster.png").stat().st_size > 1000
    assert main(["energy", str(out), "--samples", "8"]) == 0  # the checkpoint rebuilds the same frames
    # -T must agree with the frames
    assert main(["train", "--method", "lif", "--dataset", "nmnist?T=4", "--data-dir", str(nmnist_archive), "-T", "8",
                 "--limit-train", "10", "--epochs", "1", "--quiet", "--out", str(tmp_path / "bad")]) == 2
    assert "give -T 4 or make the data 8 steps long" in capsys.readouterr().err


def test_a_file_that_is_not_the_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "train.zip"
    bad.write_bytes(b"PK\x03\x04 not the small subset")
    with pytest.raises(ValueError, match="is not a tar archive of the N-MNIST small subset"):
        load_dataset("nmnist", str(bad), download=False)
