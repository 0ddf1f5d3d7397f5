r"""The evidence lower bound of a network with Gaussian-mixture weight posteriors.

For a data set of :math:`N` examples and a minibatch :math:`B` of :math:`|B|` of them:

.. math::
    \mathrm{ELBO} &= \mathbb E_q[\log p(\mathcal D\mid\theta)] + \mathbb E_q[\log p(\theta)] + H[q]\\
    \widehat{\mathrm{ELBO}} &= \frac{N}{|B|}\sum_{n\in B}\log p(y_n\mid x_n,\theta)
        \;+\; \mathbb E_q[\log p(\theta)] \;+\; \tilde H[q],\qquad\theta\sim q

:math:`\widehat{\mathrm{ELBO}}` is unbiased for the ELBO (with the entropy approximation
:math:`\tilde H` of Furuya et al., arXiv 2202.13059, in place of :math:`H`) over the draw of
:math:`\theta` and of a uniformly random minibatch.  **Scaling** (``per_datapoint=True``, the
default) divides everything by :math:`N`:

.. math::
    \frac{\widehat{\mathrm{ELBO}}}{N} = \frac1{|B|}\sum_{n\in B}\log p(y_n\mid x_n,\theta)
        + \frac{\mathbb E_q[\log p(\theta)] + \tilde H[q]}{N},

so the loss :math:`-\widehat{\mathrm{ELBO}}/N` has the size of an ordinary mean cross-entropy and the
learning rate does not depend on :math:`N`.  ``per_datapoint=False`` returns the full-data-set
:math:`\widehat{\mathrm{ELBO}}`.  Either way the prior and entropy terms are **sums over every weight**
of the network (bayesian-torch's layers instead return per-element *means* of their KL, which the user
then scales: ``neuroq``'s KL equals theirs times the number of elements of each tensor).

Terms (all summed over the network's mixture groups / layers):

* entropy: ``'approx'`` :math:`\tilde H = \sum_k w_kH(\mathcal N_k) - \sum_k w_k\log w_k` per group (the
  paper), ``'lower'`` :math:`\sum_k w_kH(\mathcal N_k)`, ``'mc'`` :math:`-\log q(\theta)` at the held sample
  (unbiased for the exact entropy, pathwise gradient);
* prior: ``'auto'`` analytic :math:`\sum_k w_k\mathbb E_{\mathcal N_k}[\log p]` when the prior has it,
  else :math:`\log p(\theta)` at the held sample; ``'analytic'`` / ``'mc'`` to force one.

The MC terms use the weight sample of the last forward pass: call :func:`elbo` after the forward
pass and before ``reset_net``.  For mixture groups with learned mixing weights and
``weight_grad='score'``, :func:`elbo` adds a zero-valued term whose gradient to the mixing logits is the
Rao-Blackwellised score-function estimator (see :mod:`neuroq.bayes.mixture`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .._validate import check_bool, check_choice, check_int
from .entropy import _weight_entropy
from .layers import mixture_layers
from .mixture import mixture_groups


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not mixture_groups(model):
        raise ValueError("model has no Gaussian-mixture layers (use neuroq.bayes.bayesify or the "
                         "GaussianMixtureLinear/Conv2d layers)")


def entropy(model: nn.Module, kind: str = "approx") -> torch.Tensor:
    r"""Entropy of the network's weight posterior, summed over its independent mixture groups (scalar).

    ``kind``: ``'approx'`` (Furuya et al.), ``'lower'``, or ``'mc'`` (see the module docstring).

    Example::

        >>> net = torch.nn.Sequential(GaussianMixtureLinear(2, 2, K=3))
        >>> entropy(net).shape
        torch.Size([])
    """
    _check_model(model)
    check_choice("kind", kind, ("approx", "lower", "mc"))
    total = 0.0
    for g in mixture_groups(model):
        if kind == "mc":
            total = total - g.log_prob()
        else:
            w = g.weights
            h = (w * g.component_entropies()).sum()
            total = total + (h + _weight_entropy(w) if kind == "approx" else h)
    return total


def log_prior(model: nn.Module, kind: str = "auto") -> torch.Tensor:
    r""":math:`\mathbb E_q[\log p(\theta)]`, summed over every weight of the network (scalar).

    ``kind``: ``'auto'`` | ``'analytic'`` | ``'mc'`` (see the module docstring)."""
    _check_model(model)
    total = 0.0
    for layer in mixture_layers(model):
        total = total + layer.expected_log_prior(kind)
    return total


def kl_divergence(model: nn.Module, entropy_kind: str = "approx", prior_kind: str = "auto") -> torch.Tensor:
    r""":math:`\mathrm{KL}(q\,\|\,p) = -\mathbb E_q[\log p(\theta)] - H[q]`, summed over every weight (scalar).

    With ``K = 1`` and a :class:`~neuroq.bayes.GaussianPrior` it is the closed-form Gaussian KL,
    :math:`\sum_i\big[\log\frac{s}{\sigma_i} + \frac{\sigma_i^2 + (\mu_i - m)^2}{2s^2} - \frac12\big]`.
    """
    return -(log_prior(model, prior_kind) + entropy(model, entropy_kind))


@dataclass
class ELBOTerms:
    """The ELBO and its parts, all scaled alike (per data point or for the whole data set)."""

    elbo: torch.Tensor
    log_likelihood: torch.Tensor  #: the data term, scaled (see the module docstring)
    log_prior: torch.Tensor       #: E_q[log p(theta)], scaled
    entropy: torch.Tensor         #: H[q] (or its approximation), scaled
    per_datapoint: bool

    @property
    def kl(self) -> torch.Tensor:
        """``-(log_prior + entropy)``: the KL term, scaled like the rest."""
        return -(self.log_prior + self.entropy)

    @property
    def loss(self) -> torch.Tensor:
        """``-elbo``, the quantity to minimise."""
        return -self.elbo


def elbo(model: nn.Module, log_likelihood: torch.Tensor, batch_size: int, n_data: int,
         entropy_kind: str = "approx", prior_kind: str = "auto", per_datapoint: bool = True) -> ELBOTerms:
    r"""Minibatch ELBO estimate with the data-set-size scaling of the module docstring.

    Args:
        model: a network with mixture layers, just run on the minibatch.
        log_likelihood: :math:`\sum_{n\in B}\log p(y_n\mid x_n,\theta)`, the **sum** over the minibatch
            (e.g. ``-F.cross_entropy(logits, y, reduction='sum')``), scalar.
        batch_size: :math:`|B|`.
        n_data: :math:`N`, the size of the training set.
        entropy_kind: ``'approx'`` (default, the paper) | ``'lower'`` | ``'mc'``.
        prior_kind: ``'auto'`` | ``'analytic'`` | ``'mc'``.
        per_datapoint: divide by :math:`N` (default) or not.

    Returns: :class:`ELBOTerms` (``.loss`` to minimise).

    Example::

        >>> net = torch.nn.Sequential(GaussianMixtureLinear(4, 3, K=2))
        >>> x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
        >>> ll = -torch.nn.functional.cross_entropy(net(x), y, reduction="sum")
        >>> terms = elbo(net, ll, batch_size=16, n_data=1000)
        >>> terms.loss.backward()
    """
    if not isinstance(log_likelihood, torch.Tensor) or log_likelihood.dim() != 0:
        raise ValueError("log_likelihood must be a scalar tensor: the SUM of log p(y|x, theta) over the "
                         f"minibatch, got {getattr(log_likelihood, 'shape', log_likelihood)!r}")
    if not bool(torch.isfinite(log_likelihood.detach())):
        raise ValueError(f"log_likelihood must be finite, got {float(log_likelihood)} (a diverged or NaN "
                         "network output?)")
    B = check_int("batch_size", batch_size, ge=1)
    N = check_int("n_data", n_data, ge=1)
    if B > N:
        raise ValueError(f"batch_size ({B}) must be <= n_data ({N})")
    check_bool("per_datapoint", per_datapoint)
    lp = log_prior(model, prior_kind)
    h = entropy(model, entropy_kind)
    if per_datapoint:
        ll, lp, h = log_likelihood / B, lp / N, h / N
    else:
        ll = log_likelihood * (N / B)
    value = ll + lp + h
    # groups with weight_grad='score': a zero-valued term carrying the score-function gradient to the
    # mixing logits, with f = this sample's objective (its theta-independent parts only shift f by a
    # constant, which E[r - w] = 0 makes harmless)
    for g in mixture_groups(model):
        value = value + g.score_surrogate(value.detach())
    return ELBOTerms(value, ll, lp, h, per_datapoint)
