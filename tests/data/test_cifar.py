"""CIFAR-10 through torchvision, on a tiny fake folder in torchvision's own format (cifar-10-batches-py
pickles; there is no network here and the real files are 163 MB)."""
import json
import pickle

import numpy as np
import pytest
import torch

from neuroq.cli import main
from neuroq.data import load_dataset
from neuroq.data.vision import CIFAR10_MEAN, CIFAR10_STD

torchvision = pytest.importorskip("torchvision", reason="cifar10 is read through torchvision")


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    """cifar-10-batches-py with 5 x 6 training and 8 test images of random pixels.  torchvision checks the
    MD5 of every file against the real release, which fake files cannot match: that check alone is patched."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    arrays = {}
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 8)]:
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        arrays[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                     "ship", "truck"]}, f)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    return tmp_path, arrays


def test_images_are_the_pickled_pixels_normalised_per_channel(fake_cifar):
    root, arrays = fake_cifar
    d = load_dataset("cifar10", str(root), download=False)
    assert (d.kind, d.in_shape, d.num_classes, len(d.train), len(d.test)) == ("image", (3, 32, 32), 10, 30, 8)
    mean, std = np.array(CIFAR10_MEAN)[:, None, None], np.array(CIFAR10_STD)[:, None, None]
    for split, name, i, j in ((d.train, "data_batch_1", 0, 0), (d.train, "data_batch_3", 14, 2), (d.test, "test_batch", 7, 7)):
        data, labels = arrays[name]
        img = data[j].reshape(3, 32, 32) / 255.0  # the batches store rows of R, then G, then B planes
        x, y = split[i]
        np.testing.assert_allclose(x.numpy(), (img - mean) / std, atol=1e-6)
        assert y == labels[j]
    raw = load_dataset("cifar10?normalize=0", str(root / "cifar-10-batches-py"), download=False)
    np.testing.assert_allclose(raw.test[0][0].numpy(), arrays["test_batch"][0][0].reshape(3, 32, 32) / 255.0, atol=1e-6)
    assert raw.meta == dict(normalize=False, augment=False)


def test_augmentation_is_seeded_and_only_on_training_images(fake_cifar):
    root, _ = fake_cifar
    d = load_dataset("cifar10?augment=1", str(root), download=False)
    torch.manual_seed(5)
    a = [d.train[i][0] for i in range(6)]
    torch.manual_seed(5)
    b = [d.train[i][0] for i in range(6)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    plain = load_dataset("cifar10", str(root), download=False)
    assert any(not torch.equal(u, plain.train[i][0]) for i, u in enumerate(a))
    assert torch.equal(d.test[0][0], plain.test[0][0])


def test_missing_folder_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py.*missing or corrupted"):
        load_dataset("cifar10", str(tmp_path), download=False)
    assert main(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--no-download", "--quiet"]) == 2
    assert "allow the download" in capsys.readouterr().err


def test_cli_trains_on_cifar10(fake_cifar, capsys):
    root, _ = fake_cifar
    out = root / "run"
    rc = main(["train", "--method", "lif", "--dataset", "cifar10", "--data-dir", str(root), "--no-download", "-T", "2",
               "--epochs", "1", "-b", "8", "--limit-test", "8", "--quiet", "--no-report", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "cifar10" and m["train_samples"] == 27 and m["data_meta"]["mean"] == list(CIFAR10_MEAN)
