"""Any torch Dataset as a task (from_datasets, --dataset package.module:factory, NAME?key=value options)
and the two batching paths (in-memory tensors vs a DataLoader) giving the same seeded epochs."""
import json
import textwrap

import pytest
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from neuroq.cli import main
from neuroq.data import ArrayDataset, batches, check_dataset, from_datasets, load_dataset, parse_spec
from neuroq.training import TrainConfig
from neuroq.training.loop import Trainer, fit
from neuroq.training.methods import get


class PlainDataset(Dataset):
    """The same samples as an ArrayDataset, but read one at a time (what a user's Dataset looks like)."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.reads = 0

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], int(self.y[i])


def _toy(n=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 6, 6, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long() + 2 * (x[:, 0, 0, 0] > 0.5).long()  # 4 learnable classes
    return x, y


# ---- from_datasets: what is inferred, and what is refused --------------------------------------
def test_from_datasets_infers_shape_kind_and_classes():
    x, y = _toy()
    d = from_datasets(TensorDataset(x[:100], y[:100]), TensorDataset(x[100:], y[100:]))
    assert (d.kind, d.in_shape, d.num_classes, d.name) == ("image", (1, 6, 6), int(y.max()) + 1, "custom")
    frames = from_datasets(TensorDataset(torch.rand(4, 5, 2, 3, 3), torch.arange(4)),
                           TensorDataset(torch.rand(2, 5, 2, 3, 3), torch.arange(2)))
    assert frames.kind == "frames" and frames.steps == 5 and frames.step_shape == (2, 3, 3)
    seq = from_datasets(PlainDataset(torch.rand(6, 7, 3), torch.arange(6) % 3),
                        PlainDataset(torch.rand(3, 7, 3), torch.arange(3)), num_classes=3, kind="sequence")
    assert seq.steps == 7 and seq.step_shape == (3,)
    # .targets (torchvision style) and Subset give the labels without reading samples
    plain = PlainDataset(x, y)
    plain.targets = y.tolist()
    d2 = from_datasets(Subset(plain, range(50)), Subset(plain, range(50, 60)))
    assert d2.num_classes == int(y[:60].max()) + 1


@pytest.mark.parametrize("train,kw,match", [
    (PlainDataset(torch.rand(5, 1, 4, 4), torch.arange(5)), {}, "num_classes cannot be inferred"),
    (PlainDataset(torch.rand(5, 4, 4), torch.arange(5)), dict(num_classes=5), "kind cannot be inferred"),
    (PlainDataset(torch.randint(0, 255, (5, 1, 4, 4), dtype=torch.uint8), torch.arange(5)), dict(num_classes=5),
     "floating-point"),
    (TensorDataset(torch.rand(5, 1, 4, 4), torch.arange(5)), dict(in_shape=(1, 5, 5)), "does not match"),
    (TensorDataset(torch.rand(5, 1, 4, 4), torch.arange(5)), dict(num_classes=3), r"labels must be in 0\.\.2"),
    (TensorDataset(torch.rand(5, 1, 4, 4)), dict(num_classes=3), r"\(input, label\) pair"),
    ([1, 2, 3], dict(num_classes=3), "train\\[0\\] must be"),
    (5, {}, "train must be a torch Dataset"),
])
def test_from_datasets_errors_name_what_is_wrong(train, kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        from_datasets(train, train, **kw)


def test_test_split_must_match_train():
    with pytest.raises(ValueError, match="both splits must match"):
        from_datasets(TensorDataset(torch.rand(4, 1, 4, 4), torch.arange(4)),
                      TensorDataset(torch.rand(2, 1, 5, 5), torch.arange(2)))


# ---- the fast path and the DataLoader path give the same seeded epochs -------------------------
def test_epoch_order_is_seeded_and_identical_on_both_paths():
    x, y = _toy()
    cfg = TrainConfig(epochs=2, batch_size=16, seed=3, val_fraction=0.1)
    fast = from_datasets(ArrayDataset(x[:100], y[:100]), ArrayDataset(x[100:], y[100:]))
    slow = from_datasets(PlainDataset(x[:100], y[:100]), PlainDataset(x[100:], y[100:]), num_classes=fast.num_classes)
    m = get("lif", T=2, hidden=(16,))
    tf, ts = Trainer(m, fast, cfg, label=None), Trainer(m, slow, cfg, label=None)
    for epoch in (0, 1):
        of, os_ = tf.begin_epoch(epoch), ts.begin_epoch(epoch)
        assert torch.equal(of, os_)
        bf = list(batches(tf.train_set, of, 16))
        for workers in (0, 2):
            bs = list(batches(ts.train_set, os_, 16, num_workers=workers))
            assert len(bf) == len(bs) == 6  # 90 training samples after the 10% validation split
            for (xa, ya), (xb, yb) in zip(bf, bs):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(tf.begin_epoch(0), tf.begin_epoch(1))  # epochs are shuffled differently
    assert torch.equal(Trainer(m, fast, cfg, label=None).begin_epoch(1), tf.begin_epoch(1))  # ... from the seed


@pytest.mark.parametrize("workers", [0, 2])
def test_training_is_identical_on_both_paths(workers):
    x, y = _toy()
    fast = from_datasets(ArrayDataset(x[:100], y[:100]), ArrayDataset(x[100:], y[100:]))
    slow = from_datasets(PlainDataset(x[:100], y[:100]), PlainDataset(x[100:], y[100:]), num_classes=fast.num_classes)
    cfg = TrainConfig(epochs=2, batch_size=16, seed=1, num_workers=workers)
    _, mf = fit(get("lif", T=2, hidden=(16,)), fast, cfg, label=None)
    _, ms = fit(get("lif", T=2, hidden=(16,)), slow, cfg, label=None)
    assert mf["param_sha256_per_rank"] == ms["param_sha256_per_rank"]
    assert [h["train_loss"] for h in mf["history"]] == [h["train_loss"] for h in ms["history"]]
    assert mf["final_test_acc"] == ms["final_test_acc"]
    if workers == 0:
        assert slow.train.reads > 0  # it really went through __getitem__


# ---- specs: NAME?key=value and package.module:factory ----------------------------------------
def test_parse_spec_and_check_dataset():
    assert parse_spec("nmnist?T=10&cache_dir=/tmp/x") == ("nmnist", {"T": "10", "cache_dir": "/tmp/x"})
    assert parse_spec("pkg.mod:make") == ("pkg.mod:make", {})
    assert check_dataset("fsdd?n_mels=40") == "fsdd?n_mels=40"
    for bad, match in [("cifar100", "dataset must be one of"), ("nmnist?T", "must be key=value"),
                       ("nmnist?T=1&T=2", "given twice"), ("pkg.mod:", "package.module:function"),
                       ("1pkg:f", "package.module:function")]:
        with pytest.raises(ValueError, match=match):
            check_dataset(bad)
    with pytest.raises(ValueError, match="dataset must be one of"):
        TrainConfig(dataset="cifar100")
    assert TrainConfig(dataset="nmnist?T=10").dataset == "nmnist?T=10"


def test_dataset_options_are_typed_and_checked():
    d = load_dataset("digits", limit_train=10)
    assert len(d.train) == 10
    with pytest.raises(ValueError, match="has no option 'T'.*its options: none"):
        load_dataset("digits?T=3")
    with pytest.raises(ValueError, match="option frames: expected an integer"):
        load_dataset("fsdd?frames=abc", "/nonexistent")
    with pytest.raises(ValueError, match="option normalize: expected a boolean"):
        load_dataset("cifar10?normalize=maybe", "/nonexistent", download=False)
    with pytest.raises(ValueError, match="data_dir is not an option here"):
        load_dataset("fsdd?data_dir=/x")


FACTORY = '''
import torch
from torch.utils.data import TensorDataset
from neuroq.data import ArrayDataset, TaskData

def pair(n=64, side=6):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, side, side, generator=g)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    return TensorDataset(x[: n - 16], y[: n - 16]), TensorDataset(x[n - 16:], y[n - 16:])

def task(data_dir=None, download=True, n=64):
    tr, te = pair(n)
    return TaskData("mytask", ArrayDataset(*tr.tensors), ArrayDataset(*te.tensors), 2, (1, 6, 6),
                    meta=dict(data_dir=data_dir))

def bad():
    return 42

NOT_CALLABLE = 3
'''


@pytest.fixture
def factory_module(tmp_path, monkeypatch):
    (tmp_path / "nq_user_data.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "nq_user_data"


def test_factory_spec_returns_pairs_or_taskdata(factory_module, tmp_path):
    d = load_dataset(f"{factory_module}:pair?n=40&side=6")
    assert d.in_shape == (1, 6, 6) and len(d.train) == 24 and len(d.test) == 16 and d.num_classes == 2
    t = load_dataset(f"{factory_module}:task", data_dir=str(tmp_path))
    assert t.name == "mytask" and t.meta["data_dir"] == str(tmp_path)  # data_dir reaches a factory that takes it
    with pytest.raises(TypeError, match="must return a neuroq.data.TaskData or a \\(train, test\\) pair"):
        load_dataset(f"{factory_module}:bad")
    with pytest.raises(ValueError, match="has no callable 'NOT_CALLABLE'"):
        load_dataset(f"{factory_module}:NOT_CALLABLE")
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        load_dataset(f"{factory_module}:nope")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        load_dataset("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="has no option 'm'.*its options: n, side"):
        load_dataset(f"{factory_module}:pair?m=3")


def test_cli_trains_on_a_factory_dataset(factory_module, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--method", "lif", "--dataset", f"{factory_module}:pair?n=80", "-T", "2", "--hidden", "16",
               "--epochs", "1", "--quiet", "--no-report", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["train"]["dataset"] == f"{factory_module}:pair?n=80" and m["epochs_done"] == 1
    assert main(["train", "--dataset", "no_such_module_xyz:f", "--epochs", "1", "--quiet"]) == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err


def test_cli_refuses_a_bad_spec(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "nmnist?T"])
    assert "must be key=value" in capsys.readouterr().err


def test_a_missing_package_is_named_with_its_install_command():
    from neuroq.data import MissingPackageError
    from neuroq.data.datasets import require

    with pytest.raises(MissingPackageError, match=r"dataset 'x' needs the no_such_pkg_xyz package.*pip install "
                                                  r"no-such-pkg") as e:
        require("no_such_pkg_xyz", "dataset 'x'", pip="no-such-pkg")
    assert isinstance(e.value, ImportError) and isinstance(e.value, ValueError)  # the CLI reports ValueErrors
