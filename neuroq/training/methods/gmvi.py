r"""``neuroq train --method gm-vi``: variational inference with a Gaussian-mixture weight posterior and the
entropy approximation of Furuya et al., "Variational Inference with Gaussian Mixture by Entropy
Approximation" (arXiv 2202.13059), on the reference ReLU or LIF network (:func:`neuroq.models.classifier`).

The network (``--base lif``: LIF neurons, ``T`` steps, BPTT; ``--base ann``: ReLU, one step) is turned
Bayesian by :func:`neuroq.bayes.bayesify` with **one** mixture over all its weights:

.. math::
    q(\theta) = \sum_{k=1}^{K} w_k\,\mathcal N\big(\theta;\ \mu_k,\ \mathrm{diag}\,\sigma_k^2\big)

and trained by minimising the negative per-data-point ELBO (:func:`neuroq.bayes.elbo`) on each minibatch
:math:`B` of a training split of :math:`N` samples (``Context.n_train``, given by the loop):

.. math::
    \mathcal L = -\frac1{|B|}\sum_{n\in B}\log p(y_n\mid x_n,\theta)
                 - \frac{\mathbb E_q[\log p(\theta)] + \tilde H[q]}{N},\qquad
    \tilde H[q] = \sum_k w_k H(\mathcal N_k) - \sum_k w_k\log w_k ,

with one weight sample :math:`\theta\sim q` per minibatch (``--draw sample``: a component drawn from
:math:`w`, pathwise gradients) or one per component weighted by :math:`w_k` (``--draw all``: the stratified
estimator, :math:`K` forward passes).  With the approximation the objective *decouples*:
:math:`\mathrm{ELBO}_{\tilde H} = \sum_k w_k\,\mathrm{ELBO}_{\rm MF}(\mathcal N_k) + H(w)`, i.e. the
components are mean-field posteriors trained side by side; nothing pushes two of them apart (their
overlap is what :math:`\tilde H` ignores), so they start from independent initialisations
(``--mean-init independent``).  Learned mixing weights would move to
:math:`w_k\propto\exp\mathrm{ELBO}_{\rm MF}(\mathcal N_k)` (full-data-set ELBOs: differences of many
nats), so they are fixed uniform by default; ``--mixing learned`` uses ``--weight-grad`` (score by
default, the one for separated components) after ``--freeze-mixing-epochs`` epochs.

Prediction averages the class probabilities of ``S = --mc-samples`` weight samples, their components
chosen systematically (:math:`\approx S w_k` per component), and returns
:math:`\log\bar p = \log\frac1S\sum_s\mathrm{softmax}(f_{\theta_s}(x))`, so the loop's argmax accuracy and
the NLL :math:`-\log\bar p_y` agree.  ``inference_network`` is the deterministic network with the
means of the heaviest component (:func:`neuroq.bayes.component_network`; for ``K = 1`` the posterior
mean), which the energy meter and ``neuroq viz`` run: a Bayesian prediction costs about ``S`` times its
energy.

BatchNorm is left out by default (``--batch-norm`` keeps it): its parameters are point estimates shared
by all components, and its running statistics would average over components in different modes.

Example::

    neuroq train --method gm-vi --base lif --components 3 --mc-samples 8 --dataset digits --epochs 20
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..._validate import check_choice, check_int, check_real
from ...bayes import (
    GaussianPrior, ScaleMixturePrior, bayesify, component_network, elbo, load_component, mixture_groups,
    predictive_probs, use_component,
)
from ...functional import IFParameters, LIFParameters
from ...models import classifier
from ...neuron import LIFNode
from ..config import nonneg_int, option, positive_float, positive_int, record_option
from .base import Context, FeedForwardConfig, Method, TimeConfig, register

BASES = ("lif", "ann")
PRIORS = ("gaussian", "scale-mixture")
MEAN_INITS = ("independent", "jitter")
DRAWS = ("sample", "all")
ENTROPIES = ("approx", "lower", "mc")


@dataclass
class GMVIConfig(TimeConfig, FeedForwardConfig):
    """Options of ``gm-vi`` (see the module docstring)."""

    base: str = option("lif", "network made Bayesian: lif (LIF neurons, T steps) or ann (ReLU, one step; -T unused)",
                       choices=BASES)
    tau: float = record_option(LIFParameters, "tau")
    v_threshold: float = record_option(IFParameters, "v_threshold")
    components: int = option(3, "K: Gaussian components of the weight posterior (1 = mean-field VI)",
                             parse=positive_int("--components"))
    mc_samples: int = option(8, "S: weight samples whose class probabilities the prediction averages",
                             parse=positive_int("--mc-samples"))
    prior: str = option("gaussian", "weight prior: gaussian N(0, prior_std^2) or scale-mixture "
                        "pi N(0, prior_std^2) + (1 - pi) N(0, prior_std2^2) (Blundell et al. 2015)", choices=PRIORS)
    prior_std: float = option(1.0, "std of the Gaussian prior (scale-mixture: of its wide part)",
                              parse=positive_float("--prior-std"))
    prior_std2: float = option(math.exp(-6.0), "scale-mixture prior: std of its narrow part",
                               parse=positive_float("--prior-std2"))
    prior_pi: float = option(0.5, "scale-mixture prior: weight of its wide part, in (0, 1)",
                             parse=positive_float("--prior-pi"))
    init_scale: float = option(0.01, "initial posterior std of every weight", parse=positive_float("--init-scale"))
    mean_init: str = option("independent", "component means: independent (each its own draw of the network's "
                            "initialiser) or jitter (one draw + init_scale * N(0, 1) per component)",
                            choices=MEAN_INITS)
    mixing: str = option("fixed", "mixing weights: fixed (uniform) or learned", choices=("fixed", "learned"))
    weight_grad: str = option("score", "gradient to learned mixing weights: score (Rao-Blackwellised score "
                              "function; separated components) or pathwise (overlapping ones)",
                              choices=("score", "pathwise"))
    freeze_mixing_epochs: int = option(1, "learned mixing: keep the weights uniform for the first N epochs",
                                       parse=nonneg_int("--freeze-mixing-epochs"))
    draw: str = option("sample", "weight samples per training step: sample (one, its component drawn from the "
                       "mixing weights) or all (one per component, weighted: stratified, K forward passes)",
                       choices=DRAWS)
    entropy: str = option("approx", "entropy term of the ELBO: approx (Furuya et al.), lower (without -sum w log w) "
                          "or mc (-log q at the weight sample)", choices=ENTROPIES)
    batch_norm: bool = option(False, "keep the reference network's BatchNorm (point estimates shared by all "
                              "components)")

    def __post_init__(self):
        super().__post_init__()
        check_choice("base", self.base, BASES)
        check_real("tau", self.tau, gt=1.0)
        check_real("v_threshold", self.v_threshold, gt=0)
        check_int("components", self.components, ge=1)
        check_int("mc_samples", self.mc_samples, ge=1)
        check_choice("prior", self.prior, PRIORS)
        check_real("prior_std", self.prior_std, gt=0)
        check_real("prior_std2", self.prior_std2, gt=0)
        check_real("prior_pi", self.prior_pi, gt=0, lt=1)
        check_real("init_scale", self.init_scale, gt=0)
        check_choice("mean_init", self.mean_init, MEAN_INITS)
        check_choice("mixing", self.mixing, ("fixed", "learned"))
        check_choice("weight_grad", self.weight_grad, ("score", "pathwise"))
        check_int("freeze_mixing_epochs", self.freeze_mixing_epochs, ge=0)
        check_choice("draw", self.draw, DRAWS)
        check_choice("entropy", self.entropy, ENTROPIES)
        if not isinstance(self.batch_norm, bool):
            raise ValueError(f"batch_norm must be True or False, got {self.batch_norm!r}")


@register("gm-vi")
class GMVIMethod(Method):
    """``--method gm-vi``: the reference LIF or ReLU network with one Gaussian-mixture posterior over all its
    weights, trained on the negative ELBO by the common loop (see the module docstring)."""

    help = "Gaussian-mixture variational inference (K components, entropy approximation) of the LIF or ReLU network"
    Config = GMVIConfig

    @property
    def T(self) -> int:
        """1 for ``base='ann'``; the configured ``T`` for the LIF network."""
        return 1 if self.config.base == "ann" else self.config.T

    def check(self, train, data=None) -> None:
        """:meth:`Method.check`, and refuse ``--amp`` and (with ``--draw all``) ``--energy-penalty``."""
        super().check(train, data)
        if train.amp:
            raise ValueError("--amp (mixed precision) is not supported by --method gm-vi: the mixture's sampling "
                             "and its statistics run in full precision")
        if train.energy_penalty > 0 and self.config.draw == "all":
            raise ValueError("--energy-penalty is not supported by --method gm-vi with --draw all (K forward passes "
                             "per step); use --draw sample")

    # ---- the network ------------------------------------------------------------------------
    def neuron(self):
        """``nn.ReLU`` for ``base='ann'``; else a factory of multi-step LIF neurons (hard reset, reset detached)."""
        c = self.config
        if c.base == "ann":
            return nn.ReLU
        return lambda: LIFNode(tau=c.tau, v_threshold=c.v_threshold, detach_reset=True, step_mode="m")

    def make_prior(self):
        """The weight prior of the configuration (:mod:`neuroq.bayes.priors`)."""
        c = self.config
        if c.prior == "gaussian":
            return GaussianPrior(0.0, c.prior_std)
        return ScaleMixturePrior(c.prior_pi, c.prior_std, c.prior_std2)

    def reference_network(self, in_shape, num_classes: int) -> nn.Module:
        """The deterministic network the posterior is over: :func:`neuroq.models.classifier` with the
        method's neuron (BatchNorm only with ``batch_norm``)."""
        c = self.config
        return classifier(in_shape, num_classes, self.neuron(), c.arch, c.hidden, norm=c.batch_norm)

    def build_model(self, data) -> nn.Module:
        """The reference network made Bayesian by :func:`neuroq.bayes.bayesify` with one K-component mixture
        (shared over all weights); with ``mean_init='independent'`` components 1..K-1 get the means of fresh
        reference networks."""
        c = self.config
        ref = self.reference_network(data.in_shape, data.num_classes)
        model = bayesify(ref, K=c.components, prior=self.make_prior(), init_scale=c.init_scale,
                         mean_jitter=1.0 if c.mean_init == "jitter" else 0.0, mixing=c.mixing, resample="auto",
                         shared=True, weight_grad=c.weight_grad)
        if c.mean_init == "independent":
            for k in range(1, c.components):
                load_component(model, k, self.reference_network(data.in_shape, data.num_classes))
        return model

    def on_epoch(self, model: nn.Module, epoch: int) -> None:
        """With learned mixing, freeze the mixing logits for the first ``freeze_mixing_epochs`` epochs."""
        if self.config.mixing == "learned":
            for g in mixture_groups(model):
                g.logits.requires_grad_(epoch >= self.config.freeze_mixing_epochs)

    # ---- training ---------------------------------------------------------------------------
    def n_data(self, ctx: Context, batch: int) -> int:
        """:math:`N` of the ELBO: ``ctx.n_train`` (set by the training loop)."""
        if ctx.n_train is None:
            raise ValueError("gm-vi's ELBO needs the number of training samples: give Context(n_train=N) "
                             "(neuroq.training.Trainer sets it)")
        return max(int(ctx.n_train), batch)

    def elbo_terms(self, model: nn.Module, logits: torch.Tensor, y: torch.Tensor, n_data: int):
        """:func:`neuroq.bayes.elbo` of the weight sample that produced ``logits`` (categorical likelihood)."""
        ll = -F.cross_entropy(logits, y, reduction="sum")
        return elbo(model, ll, batch_size=len(y), n_data=n_data, entropy_kind=self.config.entropy)

    def compute_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: Context):
        """The negative per-data-point ELBO of one minibatch and its logits (``--draw all``: the log of the
        component-weighted mean of the K components' class probabilities)."""
        n = self.n_data(ctx, len(y))
        if self.config.draw == "sample":
            logits = self.forward(model, x, ctx)
            return self.elbo_terms(model, logits, y, n).loss, logits
        w = mixture_groups(model)[0].weights.detach()
        loss, probs = 0.0, 0.0
        for k in range(self.config.components):
            with use_component(model, k):
                lk = self.forward(model, x, ctx)
                loss = loss + w[k] * self.elbo_terms(model, lk, y, n).loss
            probs = probs + w[k] * torch.softmax(lk.detach(), -1)
        return loss, torch.log(probs.clamp_min(1e-30))

    # ---- prediction -------------------------------------------------------------------------
    @torch.no_grad()
    def predict_probs(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        """Class probabilities of ``mc_samples`` weight samples, ``[S, N, classes]`` (components systematic)."""
        inputs = self.inputs(x, ctx)
        return predictive_probs(model, inputs, self.config.mc_samples, readout=_time_mean, components="systematic")

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, ctx: Context) -> torch.Tensor:
        r""":math:`\log\bar p`, the log of the predictive mean over ``mc_samples`` weight samples, ``[N, classes]``."""
        return torch.log(self.predict_probs(model, x, ctx).mean(0).clamp_min(1e-30))

    def inference_network(self, model: nn.Module) -> nn.Module:
        """The deterministic network with the heaviest component's means (posterior mean for K = 1)."""
        return component_network(model)


def _time_mean(out: torch.Tensor) -> torch.Tensor:
    return out.mean(0) if out.dim() == 3 else out
