"""Bayesian layers: Gaussian-mixture variational inference with the entropy approximation of
Furuya et al., "Variational Inference with Gaussian Mixture by Entropy Approximation" (arXiv 2202.13059).

* :mod:`~neuroq.bayes.mixture`  the mixture: density, pathwise sampling, :class:`MixtureGroup`
* :mod:`~neuroq.bayes.entropy`  the entropy approximation, bounds, Monte-Carlo check, separation ratio
* :mod:`~neuroq.bayes.priors`   Gaussian and scale-mixture priors
* :mod:`~neuroq.bayes.layers`   :class:`GaussianMixtureLinear`, :class:`GaussianMixtureConv2d`
* :mod:`~neuroq.bayes.elbo`     the ELBO with its data-set-size scaling
* :mod:`~neuroq.bayes.predictive`  S-sample predictive, entropy / mutual information, NLL, ECE and its
  calibration bins, AUROC
* :mod:`~neuroq.bayes.network`  :func:`bayesify` for existing (spiking) networks, :func:`component_network` back
"""
from .network import bayesify, component_network, load_component  # noqa: F401
from .elbo import ELBOTerms, elbo, entropy, kl_divergence, log_prior  # noqa: F401
from .entropy import (  # noqa: F401
    bhattacharyya_coefficients, entropy_approx_error, entropy_error_bound, gaussian_entropy, mixture_entropy_approx,
    mixture_entropy_lower, mixture_entropy_mc, separation_ratio, weight_entropy,
)
from .layers import GaussianMixtureConv2d, GaussianMixtureLayer, GaussianMixtureLinear, mixture_layers  # noqa: F401
from .mixture import (  # noqa: F401
    MixtureGroup, component_log_prob, mixture_groups, mixture_log_prob, mixture_rsample, systematic_components,
    use_component,
)
from .predictive import (  # noqa: F401
    CalibrationBins, auroc, calibration_bins, ece, expected_entropy, gaussian_predictive_nll, mutual_information,
    nll, predictive_entropy, predictive_mean, predictive_probs, predictive_samples,
)
from .priors import GaussianPrior, ScaleMixturePrior  # noqa: F401

__all__ = [
    "bayesify", "component_network", "load_component", "ELBOTerms", "elbo", "entropy", "kl_divergence",
    "log_prior", "bhattacharyya_coefficients", "entropy_approx_error", "entropy_error_bound",
    "gaussian_entropy", "mixture_entropy_approx", "mixture_entropy_lower", "mixture_entropy_mc",
    "separation_ratio", "weight_entropy", "GaussianMixtureConv2d", "GaussianMixtureLayer",
    "GaussianMixtureLinear", "mixture_layers", "MixtureGroup", "component_log_prob", "mixture_groups",
    "mixture_log_prob", "mixture_rsample", "systematic_components", "use_component", "CalibrationBins",
    "auroc", "calibration_bins", "ece", "expected_entropy", "gaussian_predictive_nll", "mutual_information",
    "nll", "predictive_entropy", "predictive_mean", "predictive_probs", "predictive_samples", "GaussianPrior",
    "ScaleMixturePrior",
]
