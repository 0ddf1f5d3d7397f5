"""Data loading/encoding and the custom-neuron example."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroq.data import encode, load_dataset, read_idx


def _write_idx(path, arr, gz):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_idx_folder_loader(tmp_path):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (20, 28, 28)), rng.integers(0, 256, (7, 28, 28))
    ytr, yte = rng.integers(0, 10, 20), rng.integers(0, 10, 7)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", xtr, True)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", ytr, True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", xte, False)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", yte, False)
    ds = load_dataset("fashion-mnist", str(tmp_path), download=False)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (7, 1, 28, 28)
    torch.testing.assert_close(ds.x_train[:, 0], torch.from_numpy(xtr).float() / 255)
    assert torch.equal(ds.y_test, torch.from_numpy(yte).long())
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)


def test_digits_offline_split():
    ds = load_dataset("digits")
    assert ds.x_train.shape[1:] == (1, 8, 8) and len(ds.x_train) + len(ds.x_test) == 1797
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert torch.bincount(ds.y_test).min() >= 30  # stratified
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_dataset("cifar100")


def test_encoders():
    x = torch.rand(500, 1, 4, 4)
    d = encode(x, 3, "direct")
    assert d.shape == (3, 500, 1, 4, 4) and torch.equal(d[2], x)
    g = torch.Generator().manual_seed(0)
    r = encode(x, 200, "rate", g)
    assert set(r.unique().tolist()) <= {0.0, 1.0}
    assert (r.mean(0) - x).abs().mean() < 0.03  # firing probability = intensity
    with pytest.raises(ValueError, match="T must be >= 1"):
        encode(x, 0)
    with pytest.raises(ValueError, match="encoding must be one of"):
        encode(x, 2, "latency")


def test_custom_neuron_example(tmp_path):
    from examples.custom_neuron import AdaptiveLIFNode, main

    res = main(["--epochs", "6", "--out", str(tmp_path)])
    assert res["test_acc"] > 0.85
    assert (tmp_path / "raster.png").stat().st_size > 1000
    # the adaptation state is cleared by reset_net
    n = AdaptiveLIFNode(step_mode="m")
    n(torch.rand(4, 2, 3) * 5)
    assert isinstance(n.a, torch.Tensor)
    from neuroq import reset_net
    reset_net(torch.nn.Sequential(n))
    assert n.a == 0.0


def test_readme_result_blocks_are_generated_from_json():
    """README numbers come from the committed JSON (regenerate with visualizations.readme_tables)."""
    from visualizations.readme_tables import main as readme_main

    assert readme_main(["--check"]) == 0


def test_bad_idx_files_are_clear_errors(tmp_path):
    bad_type = tmp_path / "x-idx1-ubyte"
    bad_type.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 2, 1, 2]))
    with pytest.raises(ValueError, match="unknown data type byte 0x07"):
        read_idx(bad_type)
    not_gz = tmp_path / "x-idx1-ubyte.gz"
    not_gz.write_bytes(bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2]))
    with pytest.raises(ValueError, match="cannot be read as a gzip-compressed IDX file"):
        read_idx(not_gz)


def test_rate_encoding_refuses_unnormalised_images():
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\].*divide 8-bit images by 255"):
        encode(torch.randint(0, 256, (4, 1, 3, 3)).float(), 4, "rate")
    with pytest.raises(ValueError, match=r"intensities in \[0, 1\]"):
        encode(-torch.rand(2, 3), 4, "rate")
    encode(torch.randint(0, 256, (4, 1, 3, 3)).float(), 4, "direct")  # direct encoding takes any value


def test_a_failed_download_leaves_no_folder_and_data_dir_is_checked(tmp_path, monkeypatch):
    """A download that fails removes every folder and partial file it created; --data-dir that does not
    exist with --no-download is an error naming it; a data_dir given to digits (which reads none) is
    refused."""
    import torchvision

    from neuroq.data.datasets import undo_on_failure

    def failing(root, train=True, download=True, **kw):
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        (raw / "train-images-idx3-ubyte.gz.part").write_bytes(b"partial")
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", failing)
    target = tmp_path / "new" / "deeper"
    with pytest.raises(FileNotFoundError, match="download failed"):
        load_dataset("mnist", str(target))
    assert not (tmp_path / "new").exists()                      # the folders it created are gone
    keep = tmp_path / "existing"
    keep.mkdir()
    (keep / "mine.txt").write_text("user file")
    with pytest.raises(FileNotFoundError, match="download failed"):
        load_dataset("mnist", str(keep))
    assert [p.name for p in keep.iterdir()] == ["mine.txt"]     # new files gone, the user's file kept
    with pytest.raises(RuntimeError):
        with undo_on_failure(tmp_path / "x"):
            (tmp_path / "x").mkdir()
            raise RuntimeError("boom")
    assert not (tmp_path / "x").exists()
    with pytest.raises(FileNotFoundError, match="does not exist, and download is off"):
        load_dataset("mnist", str(tmp_path / "nowhere"), download=False)
    with pytest.raises(ValueError, match="reads no folder .* drop --data-dir"):
        load_dataset("digits", str(tmp_path))
