r"""Entropy of a Gaussian mixture: the approximation of Furuya et al., its bounds, a Monte-Carlo
estimate, and the separation ratio that controls the approximation error.

For :math:`q = \sum_k w_k\mathcal N_k`, :math:`\mathcal N_k = \mathcal N(\mu_k, \mathrm{diag}\,\sigma_k^2)` in
:math:`\mathbb R^D`:

.. math::
    H(\mathcal N_k) &= \sum_{i=1}^D \tfrac12\log\!\big(2\pi e\,\sigma_{k,i}^2\big)\\
    \underbrace{\sum_k w_k H(\mathcal N_k)}_{\text{lower bound}} \;\le\; H[q] \;\le\;
    \underbrace{\sum_k w_k H(\mathcal N_k) - \sum_k w_k\log w_k}_{\tilde H[q]\ \text{(the approximation)}}

(Furuya et al., "Variational Inference with Gaussian Mixture by Entropy Approximation",
arXiv 2202.13059: :math:`\tilde H` is analytic in any dimension; its error
:math:`\tilde H - H\ge 0` goes to zero as the components separate.)

**Separation ratio** (neuroq's exact definition; the paper states "the ratio of the distances between
the means to the sum of the variances" without a form for diagonal covariances).  For components
:math:`i\ne j`,

.. math::
    s_{ij} = \Big\|\frac{\mu_i - \mu_j}{\sigma_i + \sigma_j}\Big\|_2
           = \Big(\sum_{d=1}^D \frac{(\mu_{i,d}-\mu_{j,d})^2}{(\sigma_{i,d}+\sigma_{j,d})^2}\Big)^{1/2},

the distance between the means over the sum of the standard deviations, coordinate by coordinate:
for isotropic components (:math:`\sigma_i = s_i\mathbf 1`) it is :math:`\|\mu_i-\mu_j\|/(s_i+s_j)`.  The
mixture's ratio is the smallest over pairs, :math:`s = \min_{i\ne j}s_{ij}`.

**Error bound** (derived here [D], not from the paper).  Kolchinsky & Tracey ("Estimating Mixture
Entropy with Pairwise Distances", Entropy 2017) show
:math:`H[q]\ge\sum_i w_iH(\mathcal N_i) - \sum_i w_i\log\sum_j w_j\,\mathrm{BC}_{ij}` with the
Bhattacharyya coefficient :math:`\mathrm{BC}_{ij} = e^{-D_B(\mathcal N_i,\mathcal N_j)}`.  For diagonal
Gaussians :math:`D_B = \sum_d\big[\frac{\Delta_d^2}{4(\sigma_{i,d}^2+\sigma_{j,d}^2)}
+ \frac12\log\frac{\sigma_{i,d}^2+\sigma_{j,d}^2}{2\sigma_{i,d}\sigma_{j,d}}\big] \ge s_{ij}^2/4`, hence

.. math::
    0\;\le\;\tilde H - H\;\le\;\sum_i w_i\log\Big(1+\sum_{j\ne i}\frac{w_j}{w_i}\mathrm{BC}_{ij}\Big)
    \;\le\;(K-1)\,e^{-s^2/4},

which goes to zero as the separation ratio grows (:func:`entropy_error_bound` returns the middle term).

**Measuring the error** [D].  Writing :math:`r_k(\theta) = w_k\mathcal N_k(\theta)/q(\theta)` for the
responsibility of component :math:`k`,

.. math::
    \tilde H - H = \sum_k w_k\,\mathbb E_{\mathcal N_k}\big[\log q(\theta) - \log w_k\mathcal N_k(\theta)\big]
                 = \mathbb E_{k\sim w,\ \theta\sim\mathcal N_k}\big[-\log r_k(\theta)\big]\;\ge 0 ,

so the error is the expected surprise of the component that generated a sample.
:func:`entropy_approx_error` estimates it this way: the integrand lies in :math:`[0, \infty)` and vanishes
where the components do not overlap, so its standard error shrinks with the error itself.  The
difference of two separate estimates (:func:`mixture_entropy_approx` minus :func:`mixture_entropy_mc`)
has a standard error of order :math:`\sqrt{D/2}/\sqrt S` nats in :math:`D` dimensions (the spread of
:math:`\log q`), which hides any error below :math:`\log K` once :math:`D` is in the thousands.

All functions take ``weights [K]``, ``means [K, D...]`` and ``scales [K, D...]`` (the trailing dimensions
are flattened into :math:`D`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .._validate import check_choice, check_int
from .mixture import _check_finite, _component_log_prob, check_components, check_mixture, check_weights, mixture_log_prob

_HALF_LOG_2PIE = 0.5 * (1.0 + math.log(2.0 * math.pi))


def gaussian_entropy(scales: torch.Tensor) -> torch.Tensor:
    r"""Entropy of each diagonal Gaussian component: :math:`\sum_i\tfrac12\log(2\pi e\,\sigma_{k,i}^2)`.

    Input: ``scales [K, D...]`` (finite, > 0).  Output: ``[K]``.  Differentiable.

    Example::

        >>> float(gaussian_entropy(torch.ones(1, 1)))  # 0.5 * log(2 pi e)
        1.4189385...
    """
    if not isinstance(scales, torch.Tensor) or scales.dim() < 2:
        raise ValueError(f"gaussian_entropy: scales must be a tensor of shape [K, D...], got "
                         f"{getattr(scales, 'shape', scales)!r}")
    if not scales.is_floating_point():
        raise TypeError(f"gaussian_entropy: scales must be a floating-point tensor, got dtype {scales.dtype}")
    _check_finite("gaussian_entropy", "scales", scales)
    if not bool((scales.detach() > 0).all()):
        raise ValueError("gaussian_entropy: scales must all be > 0")
    return _gaussian_entropy(scales)


def _gaussian_entropy(scales: torch.Tensor) -> torch.Tensor:
    return (torch.log(scales) + _HALF_LOG_2PIE).reshape(scales.shape[0], -1).sum(1)


def weight_entropy(weights: torch.Tensor) -> torch.Tensor:
    r""":math:`H(w) = -\sum_k w_k\log w_k` (with :math:`0\log 0 = 0`), a scalar.

    ``weights [K]``: finite, non-negative, summing to 1."""
    check_weights(weights, "weight_entropy")
    return _weight_entropy(weights)


def _weight_entropy(weights: torch.Tensor) -> torch.Tensor:
    return -torch.special.xlogy(weights, weights).sum()


def mixture_entropy_lower(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    r"""Lower bound :math:`\sum_k w_k H(\mathcal N_k)\le H[q]` (scalar, differentiable).

    ``means`` only fixes the shapes (the bound does not depend on them).
    """
    check_mixture(weights, means, scales, "mixture_entropy_lower")
    return (weights * _gaussian_entropy(scales)).sum()


def mixture_entropy_approx(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    r"""The entropy approximation of Furuya et al.: :math:`\tilde H = \sum_k w_k H(\mathcal N_k) - \sum_k w_k\log w_k`.

    An upper bound on :math:`H[q]`, exact for :math:`K = 1` and tight as the components separate (see
    the module docstring).  Analytic in any dimension; differentiable in ``weights`` and ``scales``.

    Inputs: ``weights [K]``, ``means [K, D...]`` (shapes only), ``scales [K, D...]``.  Output: scalar.

    Example::

        >>> w = torch.tensor([0.5, 0.5]); mu = torch.tensor([[-50.0], [50.0]]); sd = torch.ones(2, 1)
        >>> float(mixture_entropy_approx(w, mu, sd))  # 0.5 log(2 pi e) + log 2
        2.112085...
    """
    check_mixture(weights, means, scales, "mixture_entropy_approx")
    return (weights * _gaussian_entropy(scales)).sum() + _weight_entropy(weights)


@torch.no_grad()
def mixture_entropy_mc(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor,
                       n_samples: int = 20000, generator: Optional[torch.Generator] = None,
                       chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Monte-Carlo entropy :math:`\hat H = -\frac1S\sum_s\log q(z_s)`, :math:`z_s\sim q`, and its standard error.

    .. math::
        \mathrm{SE} = \frac{\mathrm{std}_s(\log q(z_s))}{\sqrt S}

    Unbiased for :math:`H[q]`; use it to check :func:`mixture_entropy_approx`.  Not differentiable
    (the ELBO's ``entropy='mc'`` is the differentiable single-sample version).

    Inputs: ``weights [K]``, ``means``/``scales [K, D...]``.  Outputs: ``(estimate, standard_error)``, scalars
    (float64).
    """
    K = check_mixture(weights, means, scales, "mixture_entropy_mc")
    n = check_int("n_samples", n_samples, ge=2)
    chunk = check_int("chunk", chunk, ge=1)
    w, mu, sd = weights.double(), means.double(), scales.double()
    vals = []
    left = n
    while left > 0:
        m = min(chunk, left)
        # drawn on the CPU (so a CPU generator works for any device), then moved
        k = torch.multinomial(w.cpu(), m, replacement=True, generator=generator).to(mu.device)
        eps = torch.randn((m, *mu.shape[1:]), generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu[k] + sd[k] * eps
        vals.append(-mixture_log_prob(z, w, mu, sd))
        left -= m
    del K
    h = torch.cat(vals)
    return h.mean(), h.std(unbiased=True) / math.sqrt(n)


def separation_ratio(means: torch.Tensor, scales: torch.Tensor, reduction: str = "min") -> torch.Tensor:
    r"""Separation ratio :math:`s_{ij} = \|(\mu_i-\mu_j)/(\sigma_i+\sigma_j)\|_2` (module docstring).

    Args:
        means, scales: ``[K, D...]``.
        reduction: ``'min'`` (the mixture's ratio, :math:`\min_{i\ne j}s_{ij}`; ``inf`` for ``K = 1``) or
            ``'none'`` (the ``[K, K]`` matrix, zero diagonal).

    Example::

        >>> mu = torch.tensor([[0.0, 0.0], [3.0, 4.0]]); sd = torch.ones(2, 2)
        >>> float(separation_ratio(mu, sd))  # ||(3, 4)|| / (1 + 1)
        2.5
    """
    check_components(means, scales, "separation_ratio")
    check_choice("reduction", reduction, ("min", "none"))
    K = means.shape[0]
    mu, sd = means.reshape(K, -1), scales.reshape(K, -1)
    ratio = (mu.unsqueeze(1) - mu.unsqueeze(0)) / (sd.unsqueeze(1) + sd.unsqueeze(0))
    s = ratio.pow(2).sum(-1).sqrt()
    if reduction == "none":
        return s
    if K == 1:
        return torch.tensor(math.inf, dtype=means.dtype)
    off = ~torch.eye(K, dtype=torch.bool, device=s.device)
    return s[off].min()


def bhattacharyya_coefficients(means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{BC}_{ij} = e^{-D_B(\mathcal N_i,\mathcal N_j)}` between diagonal-Gaussian components, ``[K, K]``.

    .. math::
        D_B = \sum_d\Big[\frac{(\mu_{i,d}-\mu_{j,d})^2}{4(\sigma_{i,d}^2+\sigma_{j,d}^2)}
        + \frac12\log\frac{\sigma_{i,d}^2+\sigma_{j,d}^2}{2\sigma_{i,d}\sigma_{j,d}}\Big]

    Inputs: ``means``/``scales [K, D...]`` (finite; scales > 0).
    """
    K = check_components(means, scales, "bhattacharyya_coefficients")
    mu, sd = means.reshape(K, -1), scales.reshape(K, -1)
    v = sd.unsqueeze(1) ** 2 + sd.unsqueeze(0) ** 2
    d = (mu.unsqueeze(1) - mu.unsqueeze(0)) ** 2 / (4 * v) \
        + 0.5 * torch.log(v / (2 * sd.unsqueeze(1) * sd.unsqueeze(0)))
    return torch.exp(-d.sum(-1))


def entropy_error_bound(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    r"""Upper bound on the approximation error, :math:`0\le\tilde H - H\le\sum_i w_i\log(\sum_j w_j\mathrm{BC}_{ij}/w_i)`.

    Derived in the module docstring from Kolchinsky & Tracey's Bhattacharyya lower bound; it is
    itself :math:`\le (K-1)\,e^{-s^2/4}` with the separation ratio :math:`s`.  Scalar.
    Components with :math:`w_i = 0` contribute nothing.
    """
    check_mixture(weights, means, scales, "entropy_error_bound")
    bc = bhattacharyya_coefficients(means, scales)
    inner = (bc * weights.unsqueeze(0)).sum(1)
    pos = weights > 0
    return (weights[pos] * (torch.log(inner[pos]) - torch.log(weights[pos]))).sum()


@torch.no_grad()
def entropy_approx_error(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, n_samples: int = 4096,
                         generator: Optional[torch.Generator] = None, chunk: int = 1024,
                         stratified: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Monte-Carlo estimate of the approximation error :math:`\tilde H - H\ge 0` and its standard error.

    .. math::
        \tilde H - H = \sum_k w_k\,\mathbb E_{\theta\sim\mathcal N_k}\big[-\log r_k(\theta)\big],\qquad
        r_k(\theta) = \frac{w_k\mathcal N_k(\theta)}{\sum_j w_j\mathcal N_j(\theta)}

    (derived in the module docstring).  With ``stratified=True`` (default) each component gets
    ``n_samples // K`` samples and the per-component means are weighted by :math:`w_k` (components of
    zero weight are skipped); else the component of every sample is drawn from :math:`w`.  Accurate in
    any dimension: the error and its standard error both vanish as the components separate.

    Inputs: ``weights [K]``, ``means``/``scales [K, D...]``.  Outputs: ``(estimate, standard_error)``,
    scalars (float64).

    Example::

        >>> w = torch.tensor([0.5, 0.5]); sd = torch.ones(2, 1)
        >>> float(entropy_approx_error(w, torch.zeros(2, 1), sd)[0])   # identical components: H(w) = log 2
        0.6931...
    """
    K = check_mixture(weights, means, scales, "entropy_approx_error")
    n = check_int("n_samples", n_samples, ge=2)
    chunk = check_int("chunk", chunk, ge=1)
    w, mu, sd = weights.double(), means.double(), scales.double()
    log_w = torch.log(w)

    def surprise(k: torch.Tensor) -> torch.Tensor:
        eps = torch.randn((k.numel(), *mu.shape[1:]), generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu[k] + sd[k] * eps
        joint = log_w.unsqueeze(0) + _component_log_prob(z, mu, sd)            # [m, K]
        log_r = joint.gather(1, k.view(-1, 1)).squeeze(1) - torch.logsumexp(joint, dim=1)
        return (-log_r).clamp_min(0.0)

    def draw(k_all: torch.Tensor) -> torch.Tensor:
        return torch.cat([surprise(k_all[i:i + chunk]) for i in range(0, k_all.numel(), chunk)])

    if not stratified:
        k_all = torch.multinomial(w.cpu(), n, replacement=True, generator=generator).to(mu.device)
        v = draw(k_all)
        return v.mean(), v.std(unbiased=True) / math.sqrt(n)
    per = max(2, n // K)
    est = torch.zeros((), dtype=torch.float64)
    var = torch.zeros((), dtype=torch.float64)
    for k in range(K):
        if float(w[k]) == 0.0:
            continue
        v = draw(torch.full((per,), k, dtype=torch.long, device=mu.device))
        est = est + w[k].cpu() * v.mean().cpu()
        var = var + (w[k].cpu() ** 2) * v.var(unbiased=True).cpu() / per
    return est, var.sqrt()

