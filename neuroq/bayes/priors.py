r"""Priors over network weights for variational inference.

Every prior factorises over the weights, :math:`p(\theta) = \prod_i p(\theta_i)`, and reports
**sums over all the elements** of a tensor (never per-element means).

* :class:`GaussianPrior`: :math:`p(\theta_i) = \mathcal N(\theta_i; m, s^2)`.  Its expectation under a
  Gaussian component is analytic,

  .. math::
      \mathbb E_{\mathcal N(\mu,\sigma^2)}[\log\mathcal N(\theta; m, s^2)]
      = -\tfrac12\log(2\pi s^2) - \frac{(\mu-m)^2 + \sigma^2}{2s^2},

  so :math:`\mathbb E_q[\log p(\theta)] = \sum_k w_k\sum_i(\dots)` needs no sampling; for
  :math:`K = 1` the ELBO's :math:`-\mathbb E_q[\log p] - H[q]` is then exactly the closed-form
  :math:`\mathrm{KL}(q\,\|\,p)` that bayesian-torch computes (there as a per-element mean).
* :class:`ScaleMixturePrior`: the two-Gaussian scale mixture of Blundell et al., "Weight
  Uncertainty in Neural Networks" (ICML 2015),
  :math:`p(\theta_i) = \pi\,\mathcal N(\theta_i;0,\sigma_1^2) + (1-\pi)\,\mathcal N(\theta_i;0,\sigma_2^2)`.
  Its expectation has no closed form: the ELBO estimates it with the held weight sample.

A custom prior implements ``log_prob(theta) -> scalar`` (sum over elements) and, if it has one,
``expected_log_prob(means [K, ...], scales [K, ...]) -> [K]`` (else return ``None``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .._validate import check_real

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianPrior:
    r"""Isotropic Gaussian prior :math:`\theta_i\sim\mathcal N(m, s^2)` on every weight.

    Args:
        mean: :math:`m`.
        std: :math:`s` (> 0).

    Inputs/outputs: ``log_prob(theta [...]) -> []`` (sum over elements);
    ``expected_log_prob(means [K, ...], scales [K, ...]) -> [K]``.

    Example::

        >>> p = GaussianPrior(0.0, 1.0)
        >>> float(p.log_prob(torch.zeros(3)))  # 3 * log N(0; 0, 1)
        -2.756815...
    """

    analytic = True

    def __init__(self, mean: float = 0.0, std: float = 1.0):
        self.mean = check_real("mean", mean)
        self.std = check_real("std", std, gt=0)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i\log\mathcal N(\theta_i; m, s^2)`."""
        u = (theta - self.mean) / self.std
        return (-0.5 * u * u).sum() - theta.numel() * (math.log(self.std) + 0.5 * _LOG_2PI)

    def expected_log_prob(self, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb E_{\mathcal N(\mu_k,\sigma_k^2)}[\log p(\theta)]` for every component, ``[K]``."""
        K = means.shape[0]
        v = ((means - self.mean) ** 2 + scales ** 2).reshape(K, -1)
        n = v.shape[1]
        return -0.5 * v.sum(1) / self.std ** 2 - n * (math.log(self.std) + 0.5 * _LOG_2PI)

    def __repr__(self):
        return f"GaussianPrior(mean={self.mean}, std={self.std})"


class ScaleMixturePrior:
    r"""Scale mixture of two zero-mean Gaussians on every weight (Blundell et al., ICML 2015).

    .. math::
        p(\theta_i) = \pi\,\mathcal N(\theta_i; 0, \sigma_1^2) + (1-\pi)\,\mathcal N(\theta_i; 0, \sigma_2^2)

    Args:
        pi: weight :math:`\pi\in(0,1)` of the first component.
        std1, std2: :math:`\sigma_1, \sigma_2` (> 0); Blundell et al. take :math:`\sigma_1 > \sigma_2`,
            :math:`\sigma_2\ll 1`.  Defaults :math:`\pi=0.5,\ \sigma_1=1,\ \sigma_2=e^{-6}` (one point of
            their grid).

    Inputs/outputs: ``log_prob(theta [...]) -> []`` (sum over elements);
    ``expected_log_prob`` returns ``None`` (no closed form: the ELBO uses the weight sample).

    Example::

        >>> p = ScaleMixturePrior(0.5, 1.0, 0.01)
        >>> p.log_prob(torch.zeros(2)).shape
        torch.Size([])
    """

    analytic = False

    def __init__(self, pi: float = 0.5, std1: float = 1.0, std2: float = math.exp(-6.0)):
        self.pi = check_real("pi", pi, gt=0, lt=1)
        self.std1 = check_real("std1", std1, gt=0)
        self.std2 = check_real("std2", std2, gt=0)

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i\log p(\theta_i)`, the two parts added by ``logaddexp`` (stable for :math:`\sigma_2\ll 1`)."""
        def log_normal(s):
            return -0.5 * (theta / s) ** 2 - math.log(s) - 0.5 * _LOG_2PI
        a = math.log(self.pi) + log_normal(self.std1)
        b = math.log1p(-self.pi) + log_normal(self.std2)
        return torch.logaddexp(a, b).sum()

    def expected_log_prob(self, means: torch.Tensor, scales: torch.Tensor) -> Optional[torch.Tensor]:
        """``None``: the expectation under a Gaussian component has no closed form (the ELBO uses the sample)."""
        return None

    def __repr__(self):
        return f"ScaleMixturePrior(pi={self.pi}, std1={self.std1}, std2={self.std2})"


def check_prior(prior, name: str = "prior"):
    """``prior`` or the default :class:`GaussianPrior` (0, 1); error when it lacks ``log_prob``."""
    if prior is None:
        return GaussianPrior()
    if not callable(getattr(prior, "log_prob", None)) or not callable(getattr(prior, "expected_log_prob", None)):
        raise TypeError(f"{name} must have log_prob(theta) and expected_log_prob(means, scales) "
                        f"(e.g. neuroq.bayes.GaussianPrior()), got {prior!r}")
    return prior
