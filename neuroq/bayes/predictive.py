r"""Posterior-predictive quantities from :math:`S` weight samples, and the metrics that score them.

With :math:`\theta_s\sim q` (:math:`s = 1..S`) and class probabilities :math:`p_s = p(y\mid x,\theta_s)`:

.. math::
    \bar p &= \frac1S\sum_s p_s                          &&\text{predictive mean}\\
    \mathcal H[\bar p] &= -\sum_c\bar p_c\log\bar p_c      &&\text{predictive entropy (total uncertainty)}\\
    \mathcal I &= \mathcal H[\bar p] - \frac1S\sum_s\mathcal H[p_s] &&\text{mutual information (epistemic; BALD)}\\
    \mathrm{NLL} &= -\frac1N\sum_n\log\bar p_{n,y_n}\\
    \mathrm{ECE} &= \sum_b\frac{|B_b|}{N}\,\big|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\big|
        &&\text{equal-width confidence bins (Guo et al., ICML 2017)}

AUROC for out-of-distribution detection uses scikit-learn's ``roc_auc_score`` (OOD examples are
the positives, ranked by an uncertainty score such as :math:`\mathcal H[\bar p]` or :math:`\mathcal I`).
For regression with Gaussian noise of std :math:`\sigma`, :func:`gaussian_predictive_nll` scores the
mixture predictive :math:`\frac1S\sum_s\mathcal N(y; f_{\theta_s}(x), \sigma^2)`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_callable, check_choice, check_int, check_real, check_samples
from .elbo import _check_model
from .mixture import mixture_groups, systematic_components


@torch.no_grad()
def predictive_samples(model: nn.Module, x: torch.Tensor, n_samples: int = 32,
                       readout: Optional[Callable] = None, reset: bool = True,
                       components: str = "random") -> torch.Tensor:
    r"""Run ``model`` on ``x`` once per weight sample: ``[S, *readout(model(x)).shape]``.

    Before each run the network is reset with SpikingJelly's ``reset_net`` (``reset=True``), which
    clears the neurons' state and draws new weights for ``resample='reset'`` groups; ``'forward'``
    groups draw at every call anyway.  One weight sample is shared by the whole batch ``x`` (and all
    its time steps).  The model's train/eval mode is left as it is.

    Args:
        model: a network with Gaussian-mixture layers (see :func:`~neuroq.bayes.bayesify`); one without them
            is refused, as its ``S`` samples would all be the same.
        readout: applied to each output, e.g. ``lambda out: out.mean(0)`` for a spiking network's
            ``[T, N, C]`` output (default: identity).
        components: ``'random'`` (every sample draws its component from the mixing weights) or
            ``'systematic'`` (each mixture group's components for the ``S`` samples come from
            :func:`~neuroq.bayes.mixture.systematic_components`: :math:`\approx S w_k` samples of
            component :math:`k`, exactly :math:`S/K` for uniform weights and ``S`` a multiple of ``K``;
            still unbiased for :math:`\bar p`, with less variance).  The noise is fresh either way.

    Example::

        >>> net = torch.nn.Sequential(GaussianMixtureLinear(4, 3, K=2))
        >>> predictive_samples(net, torch.randn(5, 4), n_samples=8).shape
        torch.Size([8, 5, 3])
    """
    _check_model(model)  # a network without mixture layers would give S identical "samples"
    S = check_int("n_samples", n_samples, ge=1)
    check_bool("reset", reset)
    if readout is not None:
        check_callable("readout", readout)
    check_choice("components", components, ("random", "systematic"))
    groups = mixture_groups(model) if components == "systematic" else []
    plan = [systematic_components(g.weights, S) for g in groups]
    before = [g.fixed_component for g in groups]
    outs = []
    try:
        for s in range(S):
            for g, ks in zip(groups, plan):
                g.fixed_component = int(ks[s])
                g.clear()
            if reset:
                _sj.reset_net(model)
            out = model(x)
            outs.append(readout(out) if readout is not None else out)
    finally:
        for g, b in zip(groups, before):
            g.fixed_component = b
            g.clear()
    if reset:
        _sj.reset_net(model)
    return torch.stack(outs)


def predictive_probs(model: nn.Module, x: torch.Tensor, n_samples: int = 32,
                     readout: Optional[Callable] = None, components: str = "random") -> torch.Tensor:
    """Softmax class probabilities of each weight sample: ``[S, N, C]`` (see :func:`predictive_samples`)."""
    return torch.softmax(predictive_samples(model, x, n_samples, readout, components=components), dim=-1)


def _check_probs_shape(probs, name="probs", rank=3):
    layout = "[S, N, C]" if rank == 3 else "[N, C]"
    if not isinstance(probs, torch.Tensor) or probs.dim() != rank:
        raise ValueError(f"{name} must be a tensor of shape {layout}, got {getattr(probs, 'shape', probs)!r}")
    # an empty batch N = 0 of [S, N, C] gives empty outputs; S = 0, C = 0 or (for [N, C] metrics) N = 0 has
    # no meaning
    need = (0, -1) if rank == 3 else (0, 1)
    if any(probs.shape[d] < 1 for d in need):
        raise ValueError(f"{name} must be a non-empty tensor of shape {layout}, got {tuple(probs.shape)}")
    if not probs.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of probabilities, got dtype {probs.dtype}")


def _check_probs_values(probs, name="probs"):
    """Finite, in [0, 1], every row (last dimension) summing to 1 (to 1e-4, or a few ulps of a low-precision
    dtype): class probabilities, e.g. a softmax, not logits or unnormalised scores."""
    p = probs.detach()
    bad = int((~torch.isfinite(p)).sum())
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite values (of {p.numel()})")
    if not p.numel():
        return
    lo, hi = float(p.min()), float(p.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must be probabilities in [0, 1], got values in [{lo:.6g}, {hi:.6g}] "
                         "(pass softmax(logits), not logits)")
    tol = max(1e-4, 8 * torch.finfo(p.dtype).eps)
    err = float((p.double().sum(-1) - 1.0).abs().max())
    if err > tol:
        raise ValueError(f"{name} rows (last dimension) must sum to 1, got a row sum off by {err:.3g} "
                         "(pass softmax(logits), not unnormalised scores)")


def _check_probs(probs, name="probs", rank=3):
    _check_probs_shape(probs, name, rank)
    _check_probs_values(probs, name)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(p, p).sum(-1)


def predictive_mean(probs: torch.Tensor) -> torch.Tensor:
    r""":math:`\bar p = \frac1S\sum_s p_s`: ``[S, N, C] -> [N, C]``."""
    _check_probs(probs)
    return probs.mean(0)


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathcal H[\bar p]` per example: ``[S, N, C] -> [N]`` (nats)."""
    return _entropy(predictive_mean(probs))


def expected_entropy(probs: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1S\sum_s\mathcal H[p_s]` per example (aleatoric part): ``[S, N, C] -> [N]``."""
    _check_probs(probs)
    return _entropy(probs).mean(0)


def mutual_information(probs: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathcal I = \mathcal H[\bar p] - \frac1S\sum_s\mathcal H[p_s]\ge 0` per example: ``[S, N, C] -> [N]``."""
    _check_probs(probs)
    return (_entropy(probs.mean(0)) - _entropy(probs).mean(0)).clamp_min(0.0)


def _check_targets(probs_mean, target):
    """``probs_mean [N, C]`` class probabilities and ``target [N]`` integer class indices in ``[0, C)``."""
    _check_probs_shape(probs_mean, "probs_mean", rank=2)
    if not isinstance(target, torch.Tensor) or target.shape != probs_mean.shape[:1]:
        raise ValueError(f"target must be a tensor of shape [{probs_mean.shape[0]}] (class indices), "
                         f"got {getattr(target, 'shape', target)!r}")
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must be an integer tensor of class indices, got dtype {target.dtype} "
                        "(convert it: target.long())")
    lo, hi = int(target.min()), int(target.max())
    C = probs_mean.shape[1]
    if lo < 0 or hi >= C:
        raise ValueError(f"target must hold class indices in [0, {C - 1}] (probs_mean has C={C} classes), "
                         f"got values in [{lo}, {hi}]")
    _check_probs_values(probs_mean, "probs_mean")


def nll(probs_mean: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    r"""Mean negative log predictive probability of the targets, :math:`-\frac1N\sum_n\log\bar p_{n,y_n}`.

    Inputs: ``probs_mean [N, C]`` (class probabilities: finite, in ``[0, 1]``, rows summing to 1; ``N >= 1``),
    ``target [N]`` (integer class indices in ``[0, C)``).  Output: scalar (nats).
    ``eps`` floors the probabilities.
    """
    eps = check_real("eps", eps, ge=0)
    _check_targets(probs_mean, target)
    p = probs_mean.gather(1, target.long().unsqueeze(1)).squeeze(1)
    return -torch.log(p.clamp_min(eps)).mean()


class CalibrationBins(NamedTuple):
    """Per confidence bin of :func:`calibration_bins`: ``count [M]`` (long), ``accuracy [M]`` and
    ``confidence [M]`` (the bin's fraction correct and mean top-class probability; NaN where empty)."""

    count: torch.Tensor
    accuracy: torch.Tensor
    confidence: torch.Tensor


def calibration_bins(probs_mean: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> CalibrationBins:
    r"""Equal-width bins of the top-class confidence: size, accuracy and mean confidence of each.

    Bin :math:`b = 1..M` holds the examples whose confidence :math:`\max_c\bar p_c` lies in
    :math:`(\frac{b-1}{M}, \frac bM]` (the first also holds 0).  These are the bins of :func:`ece` and
    of a reliability diagram (accuracy against confidence per bin).  Inputs: ``probs_mean [N, C]``,
    ``target [N]``.  Output: :class:`CalibrationBins` of ``[M]`` tensors (differentiable in the probabilities).

    Example::

        >>> bins = calibration_bins(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]), n_bins=5)
        >>> bins.count.tolist(), bins.accuracy[4].item()
        ([0, 0, 0, 1, 1], 1.0)
    """
    M = check_int("n_bins", n_bins, ge=1)
    _check_targets(probs_mean, target)
    conf, pred = probs_mean.max(1)
    correct = (pred == target.long()).to(probs_mean.dtype)
    idx = torch.clamp(torch.ceil(conf * M).long() - 1, 0, M - 1)
    empty = probs_mean.new_full((), float("nan"))
    count, acc, mean_conf = [], [], []
    for b in range(M):
        sel = idx == b
        cnt = int(sel.sum())
        count.append(cnt)
        acc.append(correct[sel].mean() if cnt else empty)
        mean_conf.append(conf[sel].mean() if cnt else empty)
    return CalibrationBins(torch.tensor(count, dtype=torch.long, device=probs_mean.device), torch.stack(acc),
                           torch.stack(mean_conf))


def ece(probs_mean: torch.Tensor, target: torch.Tensor, n_bins: int = 15) -> torch.Tensor:
    r"""Expected calibration error with ``n_bins`` equal-width bins of the top-class confidence (L1).

    :math:`\sum_b\frac{|B_b|}{N}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|` over the bins of
    :func:`calibration_bins` (:math:`(\frac{b-1}{M}, \frac bM]`, the first also holds 0).  Inputs:
    ``probs_mean [N, C]``, ``target [N]``.  Output: scalar in ``[0, 1]``.
    """
    bins = calibration_bins(probs_mean, target, n_bins)
    n = probs_mean.shape[0]
    total = probs_mean.new_zeros(())
    for b, cnt in enumerate(bins.count.tolist()):
        if cnt:
            total = total + cnt / n * (bins.accuracy[b] - bins.confidence[b]).abs()
    return total


def auroc(score_in: torch.Tensor, score_out: torch.Tensor) -> float:
    """Area under the ROC curve for telling out-of-distribution inputs (positives, ``score_out``) from
    in-distribution ones (``score_in``) by an uncertainty score (higher = more likely OOD).

    Uses ``sklearn.metrics.roc_auc_score``.  Inputs: 1-D tensors or arrays.  Output: float in ``[0, 1]``.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    a = np.asarray(torch.as_tensor(score_in).detach().cpu(), dtype=np.float64).ravel()
    b = np.asarray(torch.as_tensor(score_out).detach().cpu(), dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("auroc needs at least one in-distribution and one out-of-distribution score")
    for name, v in (("score_in", a), ("score_out", b)):
        bad = int((~np.isfinite(v)).sum())
        if bad:
            raise ValueError(f"{name} must be finite, got {bad} NaN or infinite values (of {v.size})")
    labels = np.concatenate([np.zeros(a.size), np.ones(b.size)])
    return float(roc_auc_score(labels, np.concatenate([a, b])))


def gaussian_predictive_nll(mean_samples: torch.Tensor, target: torch.Tensor, noise_std: float) -> torch.Tensor:
    r"""Regression NLL of the mixture predictive :math:`\frac1S\sum_s\mathcal N(y; f_s, \sigma^2)`, averaged over points.

    .. math::
        -\frac1N\sum_n\log\frac1S\sum_s\mathcal N(y_n; f_{s,n}, \sigma^2)

    Inputs: ``mean_samples [S, N]`` (network outputs per weight sample; S, N >= 1), ``target [N]`` (both
    finite), ``noise_std`` σ.  Output: scalar (nats).
    """
    if not isinstance(mean_samples, torch.Tensor) or mean_samples.dim() != 2:
        raise ValueError(f"mean_samples must have shape [S, N], got {getattr(mean_samples, 'shape', None)!r}")
    if not isinstance(target, torch.Tensor) or target.shape != mean_samples.shape[1:]:
        raise ValueError(f"target must have shape [{mean_samples.shape[1]}], got {getattr(target, 'shape', None)!r}")
    s = check_real("noise_std", noise_std, gt=0)
    if mean_samples.shape[0] < 1 or mean_samples.shape[1] < 1:
        raise ValueError(f"mean_samples must be non-empty [S, N] (S, N >= 1), got {tuple(mean_samples.shape)}")
    check_samples("mean_samples", mean_samples)
    check_samples("target", target)
    S = mean_samples.shape[0]
    lp = -0.5 * ((target.unsqueeze(0) - mean_samples) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)
    return -(torch.logsumexp(lp, dim=0) - math.log(S)).mean()
