"""Network builders: wrong input shapes are clear errors naming what was expected."""
import pytest
import torch

from neuroq.models import maqd_cnn, preact_resnet, spiking_cnn, spiking_mlp
from neuroq.neuron import LIFNode


def _lif():
    return LIFNode(step_mode="m")


def test_mlp_feature_mismatch():
    net = spiking_mlp(64, (16,), 10, _lif)
    assert net(torch.rand(2, 3, 1, 8, 8)).shape == (2, 3, 10)
    with pytest.raises(ValueError, match=r"built for samples of 64 values .*got input \(2, 3, 1, 7, 7\)"):
        net(torch.rand(2, 3, 1, 7, 7))
    with pytest.raises(ValueError, match=r"multi-step input \[T, N"):
        net(torch.rand(3, 64))


def test_unencoded_batch_fed_to_a_trained_mlp_is_refused():
    """A batch of images ``[N, C, H, W]`` fed straight to the reference MLP of a dataset must not be read as
    ``[T, N, H, W]`` (it has as many values per "sample"): the error names the time-first layout and the
    call that encodes."""
    from neuroq.models import classifier

    net = classifier((1, 8, 8), 10, _lif, "mlp", (16,))
    assert net(torch.rand(2, 3, 1, 8, 8)).shape == (2, 3, 10)
    assert net(torch.rand(2, 3, 64)).shape == (2, 3, 10)  # already flat
    with pytest.raises(ValueError, match=r"shape \[1, 8, 8\] \(or \[64\]\).*\[T, N, \*sample\].*got input "
                                         r"\(5, 1, 8, 8\).*load_run\(path\).predict"):
        net(torch.rand(5, 1, 8, 8))
    with pytest.raises(ValueError, match="sample_shape"):
        spiking_mlp(64, (16,), 10, _lif, sample_shape=(1, 7, 7))


def test_cnn_shape_checks():
    with pytest.raises(ValueError, match=r"in_shape must be \(C, H, W\)"):
        spiking_cnn((28, 28), 10, _lif)
    net = spiking_cnn((1, 8, 8), 10, _lif, channels=(4, 4), hidden=16)
    with pytest.raises(ValueError, match=r"samples of shape \[1, 8, 8\]"):
        net(torch.rand(2, 3, 3, 8, 8))


def test_resnet_channel_mismatch():
    net = preact_resnet(8, in_channels=1, width=4, T=2)
    with pytest.raises(ValueError, match=r"in_channels=1\) got an input with 3 channels"):
        net(torch.rand(2, 3, 8, 8))


def test_quant_layers_channel_mismatch():
    from neuroq.layer import QuantConv2d, QuantLinear

    with pytest.raises(ValueError, match=r"QuantConv2d\(in_channels=3\) got an input with 1 channels"):
        QuantConv2d(3, 4, 3)(torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match=r"QuantLinear\(in_features=5\) expects input \[\.\.\., 5\]"):
        QuantLinear(5, 2)(torch.rand(2, 4))
    with pytest.raises(ValueError, match="fan-in of at least 2"):
        QuantLinear(1, 4)
    model = maqd_cnn((1, 8, 8), 10, channels=(4, 4))
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 2, 3, 8, 8))


def test_the_default_cnn_fires_and_trains_on_small_images():
    """The method's default CNN (``neuroq train --arch cnn``) on 8x8 digits: every spiking layer fires at
    initialisation (before the fix the hidden linear layer was silent and the loss sat at ln 10 for an epoch)
    and it learns within a few epochs (benchmarks/results/default_cnn_digits.json: 37.8 % after 5 epochs before,
    93.6 % now)."""
    from neuroq import viz
    from neuroq.data import load_dataset
    from neuroq.training import TrainConfig, fit, get

    torch.manual_seed(0)
    data = load_dataset("digits")
    method = get("lif", arch="cnn")
    method.bind(TrainConfig(), data)
    net = method.build_model(data).train()
    with torch.no_grad():
        rec = viz.record(net, method.record_input(data.test.x[:256]))
    rates = {k: float(v.float().mean()) for k, v in rec.items()}
    assert len(rates) == 3 and all(r > 0.01 for r in rates.values()), rates
    _, metrics = fit(get("lif", arch="cnn"), data, TrainConfig(epochs=3), label=None)
    assert metrics["history"][0]["train_loss"] < 2.2          # not stuck at ln 10 = 2.303
    assert metrics["final_test_acc"] > 0.8
