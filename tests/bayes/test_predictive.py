"""Predictive helpers against independent references: scipy's entropy and normal density, torch's
nll_loss, torchmetrics' calibration error (a peer library; skipped where it is not installed) and the
Mann-Whitney U statistic (AUROC = U / (n_in · n_out))."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as tF
from scipy import stats

from neuroq.bayes import (
    GaussianMixtureLinear, auroc, bayesify, calibration_bins, ece, elbo, expected_entropy, gaussian_predictive_nll,
    mutual_information, nll, predictive_entropy, predictive_mean, predictive_probs, predictive_samples,
)
from neuroq.neuron import LIFNode


def _probs(S=6, N=50, C=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(S, N, C, generator=g, dtype=torch.float64), -1)


def test_entropies_and_mutual_information_match_scipy():
    p = _probs()
    pm = p.mean(0).numpy()
    np.testing.assert_allclose(predictive_mean(p).numpy(), pm)
    np.testing.assert_allclose(predictive_entropy(p).numpy(), stats.entropy(pm, axis=1), rtol=1e-12)
    ee = np.mean([stats.entropy(ps, axis=1) for ps in p.numpy()], axis=0)
    np.testing.assert_allclose(expected_entropy(p).numpy(), ee, rtol=1e-12)
    np.testing.assert_allclose(mutual_information(p).numpy(), stats.entropy(pm, axis=1) - ee, atol=1e-12)
    # identical samples carry no epistemic uncertainty
    same = p[:1].expand(5, -1, -1)
    assert float(mutual_information(same).max()) < 1e-12


def test_nll_matches_torch_nll_loss():
    pm = _probs().mean(0)
    y = torch.randint(0, 4, (50,))
    torch.testing.assert_close(nll(pm, y), tF.nll_loss(torch.log(pm), y))


def test_ece_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    for seed in range(3):
        pm = _probs(N=400, seed=seed).mean(0).float()
        y = torch.randint(0, 4, (400,), generator=torch.Generator().manual_seed(seed))
        ref = tm.multiclass_calibration_error(pm, y, num_classes=4, n_bins=15, norm="l1")
        torch.testing.assert_close(ece(pm, y, n_bins=15), ref, rtol=1e-5, atol=1e-6)


def test_calibration_bins_match_numpy_and_give_the_ece():
    pm = _probs(N=300, C=5, seed=4).mean(0)
    y = torch.randint(0, 5, (300,), generator=torch.Generator().manual_seed(4))
    M = 10
    bins = calibration_bins(pm, y, n_bins=M)
    conf, pred = pm.max(1).values.numpy(), pm.argmax(1).numpy()
    b = np.searchsorted(np.linspace(0, 1, M + 1)[1:-1], conf, side="left")  # (b/M, (b+1)/M], 0 in the first
    for i in range(M):
        sel = b == i
        assert int(bins.count[i]) == sel.sum()
        if sel.any():
            assert float(bins.accuracy[i]) == pytest.approx((pred[sel] == y.numpy()[sel]).mean(), abs=1e-12)
            assert float(bins.confidence[i]) == pytest.approx(conf[sel].mean(), abs=1e-12)
        else:
            assert bool(bins.accuracy[i].isnan()) and bool(bins.confidence[i].isnan())
    full = bins.count > 0
    ref = (bins.count[full] / 300 * (bins.accuracy[full] - bins.confidence[full]).abs()).sum()
    torch.testing.assert_close(ece(pm, y, n_bins=M), ref)


def test_ece_of_a_calibrated_predictor_is_small_and_of_an_overconfident_one_large():
    g = torch.Generator().manual_seed(0)
    n = 20000
    conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    correct = torch.rand(n, generator=g, dtype=torch.float64) < conf  # calibrated by construction
    y = torch.where(correct, 0, 1)
    pm = torch.stack([conf, 1 - conf], 1)
    assert float(ece(pm, y)) < 0.02
    sharp = torch.stack([torch.full((n,), 0.99, dtype=torch.float64), torch.full((n,), 0.01, dtype=torch.float64)], 1)
    assert float(ece(sharp, y)) == pytest.approx(0.99 - float(correct.double().mean()), abs=1e-9)


def test_auroc_equals_the_mann_whitney_statistic():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(300, generator=g)
    b = torch.randn(200, generator=g) + 0.7
    u = stats.mannwhitneyu(b.numpy(), a.numpy(), alternative="two-sided").statistic
    assert auroc(a, b) == pytest.approx(u / (300 * 200), rel=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        auroc(a, torch.tensor([]))


def test_gaussian_predictive_nll_matches_scipy():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(7, 30, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    ref = -np.mean(np.log(stats.norm.pdf(y.numpy()[None], f.numpy(), 0.3).mean(0)))
    assert float(gaussian_predictive_nll(f, y, 0.3)) == pytest.approx(ref, rel=1e-12)


def test_predictive_samples_draw_new_weights_and_reset_neurons():
    layer = GaussianMixtureLinear(3, 4, K=3, init_scale=0.3)
    x = torch.randn(5, 3)
    out = predictive_samples(nn.Sequential(layer), x, n_samples=6)
    assert out.shape == (6, 5, 4)
    assert (out[1:] - out[:1]).abs().amax(dim=(1, 2)).min() > 1e-4  # every sample differs
    probs = predictive_probs(nn.Sequential(layer), x, n_samples=4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(4, 5))
    # a spiking network with a held ('reset') sample: reset between samples, readout over T
    snn = bayesify(nn.Sequential(nn.Linear(3, 8), LIFNode(step_mode="m"), nn.Linear(8, 2)), K=2, init_scale=0.2)
    assert snn[0].group.resample_mode == "reset"
    xs = torch.rand(4, 5, 3) * 3  # [T, N, in]
    out = predictive_samples(snn, xs, n_samples=3, readout=lambda o: o.mean(0))
    assert out.shape == (3, 5, 2)
    assert not torch.allclose(out[0], out[1])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"\[S, N, C\]"):
        predictive_entropy(torch.rand(3, 4))
    with pytest.raises(ValueError, match="target must be"):
        nll(torch.rand(3, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="n_bins"):
        ece(torch.rand(3, 4), torch.zeros(3, dtype=torch.long), n_bins=0)
    with pytest.raises(ValueError, match="noise_std"):
        gaussian_predictive_nll(torch.rand(3, 4), torch.rand(4), 0.0)
    with pytest.raises(TypeError, match="readout must be callable"):
        predictive_samples(nn.Sequential(GaussianMixtureLinear(2, 2)), torch.rand(1, 2), readout=3)


_PM = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], dtype=torch.float64)
_Y = torch.tensor([0, 1, 2])


@pytest.mark.parametrize("call,exc,match", [
    # targets: integer class indices in [0, C)
    (lambda: nll(_PM, torch.tensor([0, 1, 7])), ValueError, r"target must hold class indices in \[0, 2\].*got values "
     r"in \[0, 7\]"),
    (lambda: nll(_PM, torch.tensor([0, -1, 2])), ValueError, "target must hold class indices"),
    (lambda: ece(_PM, torch.tensor([0, 1, 9])), ValueError, "target must hold class indices"),
    (lambda: calibration_bins(_PM, torch.tensor([0, 1, 3])), ValueError, "target must hold class indices"),
    (lambda: nll(_PM, torch.tensor([0.0, 1.0, 2.0])), TypeError, "target must be an integer tensor"),
    # probabilities: non-empty, finite, in [0, 1], rows summing to 1
    (lambda: ece(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), ValueError, "probs_mean must be a non-empty"),
    (lambda: nll(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), ValueError, "non-empty"),
    (lambda: nll(torch.full_like(_PM, float("nan")), _Y), ValueError, "probs_mean must be finite"),
    (lambda: nll(_PM * 5, _Y), ValueError, r"probs_mean must be probabilities in \[0, 1\]"),
    (lambda: nll(_PM / 2, _Y), ValueError, "probs_mean rows .* must sum to 1"),
    (lambda: ece(_PM * 1.01, _Y), ValueError, "must sum to 1"),
    (lambda: nll(torch.log(_PM), _Y), ValueError, r"in \[0, 1\]"),
    (lambda: nll(torch.ones(3, 3, dtype=torch.long), _Y), TypeError, "probs_mean must be a floating-point"),
    (lambda: predictive_entropy(torch.full((2, 3, 3), float("nan"))), ValueError, "probs must be finite"),
    (lambda: mutual_information(torch.rand(2, 3, 3) * 3), ValueError, "probs"),
    (lambda: expected_entropy(torch.zeros(0, 3, 3)), ValueError, "non-empty"),
    (lambda: predictive_mean(-_PM.unsqueeze(0)), ValueError, r"in \[0, 1\]"),
    # a model with no Bayesian layer would give S identical samples
    (lambda: predictive_probs(nn.Linear(3, 2), torch.rand(4, 3)), ValueError,
     "model has no Gaussian-mixture layers"),
    (lambda: predictive_samples(nn.Sequential(nn.Linear(3, 2)), torch.rand(4, 3)), ValueError,
     "no Gaussian-mixture layers"),
    (lambda: predictive_samples("net", torch.rand(4, 3)), TypeError, "model must be a torch.nn.Module"),
    # regression predictive and AUROC
    (lambda: gaussian_predictive_nll(torch.full((3, 4), float("nan")), torch.rand(4), 0.3), ValueError,
     "mean_samples holds 12 NaN"),
    (lambda: gaussian_predictive_nll(torch.rand(3, 4), torch.full((4,), float("inf")), 0.3), ValueError,
     "target holds"),
    (lambda: gaussian_predictive_nll(torch.rand(0, 4), torch.rand(4), 0.3), ValueError, "non-empty"),
    (lambda: auroc(torch.tensor([0.1, float("nan")]), torch.tensor([0.5])), ValueError, "score_in must be finite"),
])
def test_refuses_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_refuses_a_non_finite_log_likelihood():
    net = nn.Sequential(GaussianMixtureLinear(3, 2, K=2))
    net(torch.rand(4, 3))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match="log_likelihood must be finite"):
            elbo(net, torch.tensor(bad), batch_size=4, n_data=10)


def test_valid_probabilities_are_still_accepted():
    # float32 softmax rounding and exact 0 / 1 probabilities pass
    pm = torch.softmax(torch.randn(64, 10) * 20, -1)
    y = pm.argmax(1)
    assert float(nll(pm, y)) >= 0.0 and 0.0 <= float(ece(pm, y)) <= 1.0
    one_hot = torch.eye(3)
    assert float(nll(one_hot, _Y)) == 0.0
    assert float(ece(one_hot, _Y)) == 0.0
    assert predictive_entropy(torch.zeros(2, 0, 3)).shape == (0,)  # an empty batch gives an empty output
