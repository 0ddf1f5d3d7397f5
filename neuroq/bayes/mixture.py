r"""The Gaussian-mixture variational distribution: density, pathwise sampling, and the group of
weight tensors that share one mixture.

The variational family of Furuya et al. (arXiv 2202.13059) over a parameter vector
:math:`\theta\in\mathbb{R}^D`:

.. math::
    q(\theta) = \sum_{k=1}^{K} w_k\,\mathcal N\!\big(\theta;\ \mu_k,\ \mathrm{diag}\,\sigma_k^2\big),
    \qquad w = \mathrm{softmax}(\ell),\quad \sigma_k = \mathrm{softplus}(\rho_k).

**Sampling** draws one component :math:`k\sim\mathrm{Cat}(w)` and one
:math:`\varepsilon\sim\mathcal N(0, I)`, and sets :math:`\theta = \mu_k + \sigma_k\odot\varepsilon`.
Drawing :math:`k` has no gradient, so the backward pass uses *implicit (pathwise)
reparameterisation* (Jankowiak & Karaletsos, "Pathwise Derivatives for Multivariate
Distributions", AISTATS 2019; the idea behind pyro's ``MixtureOfDiagNormals``, re-derived and written
here): for a parameter :math:`\phi` of :math:`q`, any velocity field :math:`v^\phi(\theta)` with

.. math::
    \frac{\partial q}{\partial\phi} + \nabla_\theta\!\cdot\!\big(q\,v^\phi\big) = 0
    \quad\Longrightarrow\quad
    \frac{\partial}{\partial\phi}\,\mathbb E_q[f] = \mathbb E_q\big[\nabla f(\theta)\cdot v^\phi(\theta)\big]

gives an unbiased single-sample gradient :math:`\nabla f(\theta)\cdot v^\phi(\theta)`.  The fields used:

* means and scales of component :math:`j`:
  :math:`v^{\mu_{ji}} = r_j(\theta)\,e_i`, :math:`v^{\sigma_{ji}} = r_j(\theta)\,\tilde\varepsilon_{ji}\,e_i` with
  the responsibility :math:`r_j(\theta) = w_j\mathcal N_j(\theta)/q(\theta)` and
  :math:`\tilde\varepsilon_{j} = (\theta-\mu_j)/\sigma_j`.  This is the Rao-Blackwellised form of the
  ordinary reparameterisation gradient of the drawn component (same mean, lower variance); for
  :math:`K = 1` it *is* the ordinary reparameterisation gradient.
* mixing logits: :math:`\partial q/\partial\ell_j = w_j(\mathcal N_j - q)
  = w_j\sum_k w_k(\mathcal N_j-\mathcal N_k)`.  With a reference component 0, the flux
  :math:`U_j` with :math:`\nabla\cdot U_j = -(\mathcal N_j - \mathcal N_0)` is built coordinate by coordinate
  (a telescoping sum over the intermediate densities
  :math:`P_m = \prod_{i\le m}\mathcal N_{0,i}\prod_{i>m}\mathcal N_{j,i}`):

  .. math::
      U_{j,m}(\theta) = \Big[\prod_{i<m}\mathcal N_{0,i}(\theta_i)\Big]\Big[\prod_{i>m}\mathcal N_{j,i}(\theta_i)\Big]
      \big(\Phi_{0,m}(\theta_m) - \Phi_{j,m}(\theta_m)\big),

  and :math:`q\,v^{\ell_j} = w_j\big(U_j - \sum_k w_k U_k\big)`.  All products are evaluated in log space
  (float64), so the field stays finite in any dimension.  In one dimension it reduces to the
  inverse-CDF gradient :math:`v = w_j(F - F_j)/q`.

  Variance caveats (the gradients to means and scales have neither): (i) the intermediate products
  mix coordinates of component 0 and component :math:`j`, so the estimator has finite variance when
  every per-coordinate scale ratio satisfies :math:`\sigma_{j,i}/\sigma_{0,i}\in(1/\sqrt2,\sqrt2)`
  (bounding :math:`q\ge w_0\mathcal N_0`) and may have heavy tails beyond; (ii) for well-separated
  components the flux must cross regions where :math:`q` is tiny, so the variance grows with the
  separation (like :math:`e^{s^2/2}` in the separation ratio :math:`s`).  This is why the mixing
  weights are fixed-uniform by default.

  For well-separated components use ``weight_grad='score'`` instead: the Rao-Blackwellised
  score-function estimator :math:`\partial_{\ell_j}\mathbb E_q[f] = \mathbb E_q\big[(r_j(\theta) - w_j)
  (f(\theta) - b)\big]` (the conditional expectation, given :math:`\theta`, of the score of the drawn
  component; :math:`b` a running-mean baseline, allowed because :math:`\mathbb E_q[r_j - w_j] = 0`).  It needs
  the value of :math:`f`, so :func:`neuroq.bayes.elbo` applies it; its variance is bounded by that of
  :math:`f` and it is lowest exactly when the components separate.

The mixture may span several weight tensors ("blocks", e.g. all the weights and biases of a
network): :class:`MixtureGroup` draws **one** component index for all of them, so
:math:`q` is a mixture over the concatenated vector, as in the paper.  The coordinate order of the
flux is block by block, so each block's backward needs only scalars from the other blocks (the
responsibilities, :math:`\log q`, and the log densities of the blocks before and after it).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_choice, check_int

_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
def _check_finite(who: str, name: str, t: torch.Tensor) -> None:
    bad = int((~torch.isfinite(t.detach())).sum())
    if bad:
        raise ValueError(f"{who}: {name} must be finite, got {bad} NaN or infinite values (of {t.numel()})")


def check_weights(weights: torch.Tensor, who: str, K: Optional[int] = None) -> int:
    """Validate mixing weights ``[K]``: a floating-point tensor, finite, non-negative, summing to 1
    (within ``1e-4``, or a few ulps of a low-precision dtype); return ``K``."""
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{who}: weights must be a torch.Tensor, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise TypeError(f"{who}: weights must be a floating-point tensor, got dtype {weights.dtype}")
    if weights.dim() != 1 or weights.shape[0] < 1:
        raise ValueError(f"{who}: weights must have shape [K] with K >= 1, got {tuple(weights.shape)}")
    if K is not None and weights.shape[0] != K:
        raise ValueError(f"{who}: weights must have shape [K] with K={K}, got {tuple(weights.shape)}")
    w = weights.detach()
    _check_finite(who, "weights", w)
    tol = max(1e-4, 8 * torch.finfo(w.dtype).eps)
    if bool((w < 0).any()) or abs(float(w.double().sum()) - 1.0) > tol:
        raise ValueError(f"{who}: weights must be non-negative and sum to 1, got {w.tolist()}")
    return weights.shape[0]


def check_components(means: torch.Tensor, scales: torch.Tensor, who: str, K: Optional[int] = None) -> int:
    """Validate ``means [K, D...]`` (finite) and ``scales`` of the same shape (finite, > 0); return ``K``."""
    for name, t in (("means", means), ("scales", scales)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{who}: {name} must be a floating-point tensor, got dtype {t.dtype}")
    if means.dim() < 2 or means.shape[0] < 1 or (K is not None and means.shape[0] != K):
        with_k = f" with K={K}" if K is not None else ""
        raise ValueError(f"{who}: means must have shape [K, D...]{with_k}, got {tuple(means.shape)}")
    if scales.shape != means.shape:
        raise ValueError(f"{who}: scales must have the shape of means {tuple(means.shape)}, "
                         f"got {tuple(scales.shape)}")
    _check_finite(who, "means", means)
    _check_finite(who, "scales", scales)
    if not bool((scales.detach() > 0).all()):
        raise ValueError(f"{who}: scales must all be > 0")
    return means.shape[0]


def check_mixture(weights: torch.Tensor, means: torch.Tensor, scales: torch.Tensor, who: str) -> int:
    """Validate ``weights [K]`` (finite, non-negative, summing to 1), ``means [K, ...]`` (finite) and
    ``scales [K, ...]`` (finite, positive); return ``K``."""
    for name, t in (("weights", weights), ("means", means), ("scales", scales)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if weights.dim() != 1:
        raise ValueError(f"{who}: weights must have shape [K], got {tuple(weights.shape)}")
    K = weights.shape[0]
    if means.dim() < 2 or means.shape[0] != K:
        raise ValueError(f"{who}: means must have shape [K, D...] with K={K}, got {tuple(means.shape)}")
    check_components(means, scales, who, K)
    return check_weights(weights, who, K)


def _check_points(z: torch.Tensor, means: torch.Tensor, who: str) -> None:
    """``z [S, D...]`` with the trailing shape of ``means [K, D...]``, floating-point and finite."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{who}: z must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != means.dim() or z.shape[1:] != means.shape[1:]:
        raise ValueError(f"{who}: z must have shape [S, {', '.join(map(str, means.shape[1:]))}], "
                         f"got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{who}: z must be a floating-point tensor, got dtype {z.dtype}")
    _check_finite(who, "z", z)


# ---------------------------------------------------------------------------------------------
# density
# ---------------------------------------------------------------------------------------------
def component_log_prob(z: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    r"""Log density of every component at ``z``: :math:`\log\mathcal N(z;\mu_k,\mathrm{diag}\,\sigma_k^2)`.

    Inputs: ``z [S, D...]``, ``means``/``scales [K, D...]``.  Output: ``[S, K]`` (summed over ``D...``).
    Differentiable in all three.
    """
    check_components(means, scales, "component_log_prob")
    _check_points(z, means, "component_log_prob")
    return _component_log_prob(z, means, scales)


def _component_log_prob(z: torch.Tensor, means: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """:func:`component_log_prob` without the argument checks (for callers that made them)."""
    u = (z.unsqueeze(1) - means.unsqueeze(0)) / scales.unsqueeze(0)
    lp = -0.5 * u * u - torch.log(scales).unsqueeze(0) - 0.5 * _LOG_2PI
    return lp.flatten(2).sum(-1)


def mixture_log_prob(z: torch.Tensor, weights: torch.Tensor, means: torch.Tensor,
                     scales: torch.Tensor) -> torch.Tensor:
    r"""Log density of the mixture, :math:`\log q(z) = \log\sum_k w_k\,\mathcal N(z;\mu_k,\mathrm{diag}\,\sigma_k^2)`.

    Evaluated with ``logsumexp`` (stable in any dimension).  Differentiable.

    Inputs: ``z [S, D...]`` (``S`` points), ``weights [K]``, ``means``/``scales [K, D...]``.
    Output: ``[S]``.

    Example::

        >>> w = torch.tensor([0.5, 0.5]); mu = torch.tensor([[-2.0], [2.0]]); sd = torch.ones(2, 1)
        >>> mixture_log_prob(torch.zeros(1, 1), w, mu, sd).shape
        torch.Size([1])
    """
    check_mixture(weights, means, scales, "mixture_log_prob")
    _check_points(z, means, "mixture_log_prob")
    return torch.logsumexp(torch.log(weights).unsqueeze(0) + _component_log_prob(z, means, scales), dim=1)


# ---------------------------------------------------------------------------------------------
# pathwise sampling
# ---------------------------------------------------------------------------------------------
@dataclass
class _BlockStats:
    """What one block's backward needs from the whole draw (no gradient; float64)."""

    resp: torch.Tensor        # [S, K] responsibilities r_k(theta)
    log_q: torch.Tensor       # [S]    log q(theta) of the whole (all-block) mixture
    before_ref: torch.Tensor  # [S]    sum over earlier blocks of log N_0 (reference component)
    after: torch.Tensor       # [S, K] sum over later blocks of log N_k


def _draw_stats(logits: torch.Tensor, block_logps: Sequence[torch.Tensor]) -> list[_BlockStats]:
    """Per-block statistics from the per-block component log densities ``[S, K]`` (float64)."""
    totals = torch.stack([lp.double() for lp in block_logps])           # [B, S, K]
    log_w = torch.log_softmax(logits.detach().double(), dim=0)         # [K]
    joint = log_w + totals.sum(0)                                       # [S, K]
    log_q = torch.logsumexp(joint, dim=1)                               # [S]
    resp = torch.exp(joint - log_q.unsqueeze(1))                        # [S, K]
    incl = torch.cumsum(totals, dim=0)                                  # [B, S, K]
    out = []
    for b in range(totals.shape[0]):
        before_ref = (incl[b - 1, :, 0] if b > 0 else torch.zeros_like(log_q))
        after = incl[-1] - incl[b]
        out.append(_BlockStats(resp, log_q, before_ref, after))
    return out


def _cdf_difference(u0: torch.Tensor, uj: torch.Tensor) -> torch.Tensor:
    r""":math:`\Phi(u_0) - \Phi(u_j)` without cancellation in the upper tail."""
    upper = (u0 + uj) > 0
    lo = torch.special.ndtr(u0) - torch.special.ndtr(uj)
    hi = torch.special.ndtr(-uj) - torch.special.ndtr(-u0)
    return torch.where(upper, hi, lo)


def _logit_gradient(g, z, means, scales, logits, st: _BlockStats) -> torch.Tensor:
    """Pathwise gradient to the mixing logits from one block (see the module docstring)."""
    S, K = z.shape[0], means.shape[0]
    gd = g.reshape(S, -1).double()
    zd = z.detach().reshape(S, -1).double()
    mu = means.detach().reshape(K, -1).double()
    sd = scales.detach().reshape(K, -1).double()
    u = (zd.unsqueeze(1) - mu.unsqueeze(0)) / sd.unsqueeze(0)                  # [S, K, D]
    logp = -0.5 * u * u - torch.log(sd).unsqueeze(0) - 0.5 * _LOG_2PI        # [S, K, D]
    ref = logp[:, 0]                                                           # [S, D]
    before = st.before_ref.unsqueeze(1) + torch.cumsum(ref, dim=1) - ref       # sum_{i<m} log N_0,i
    after = (st.after.unsqueeze(2) + logp.sum(2, keepdim=True)
             - torch.cumsum(logp, dim=2))                                      # sum_{i>m} log N_j,i
    log_a = before.unsqueeze(1) + after[:, 1:] - st.log_q.view(S, 1, 1)  # [S, K-1, D]
    d_cdf = _cdf_difference(u[:, :1], u[:, 1:])                               # [S, K-1, D]
    G = torch.zeros(S, K, dtype=torch.float64, device=z.device)
    G[:, 1:] = (gd.unsqueeze(1) * torch.exp(log_a) * d_cdf).sum(2)            # U_0 = 0
    w = torch.softmax(logits.detach().double(), dim=0)
    grad = w * (G - (G * w).sum(1, keepdim=True))
    return grad.sum(0).to(logits.dtype)


class _MixtureRSample(torch.autograd.Function):
    """theta = mu_k + sigma_k * eps with the pathwise backward of the module docstring."""

    @staticmethod
    def forward(ctx, means, scales, logits, eps, k, resp, log_q, before_ref, after):
        z = means[k] + scales[k] * eps
        ctx.save_for_backward(means, scales, logits, z, resp, log_q, before_ref, after)
        return z

    @staticmethod
    def backward(ctx, g):
        means, scales, logits, z, resp, log_q, before_ref, after = ctx.saved_tensors
        S, K = z.shape[0], means.shape[0]
        tail = [1] * (means.dim() - 1)
        r = resp.to(g.dtype).view(S, K, *tail)
        gk = g.unsqueeze(1) * r                                                    # [S, K, D...]
        grad_means = gk.sum(0) if ctx.needs_input_grad[0] else None
        grad_scales = None
        if ctx.needs_input_grad[1]:
            eps_t = (z.unsqueeze(1) - means.unsqueeze(0)) / scales.unsqueeze(0)
            grad_scales = (gk * eps_t).sum(0)
        grad_logits = None
        if ctx.needs_input_grad[2]:
            if K == 1:
                grad_logits = torch.zeros_like(logits)
            else:
                grad_logits = _logit_gradient(g, z, means, scales, logits,
                                              _BlockStats(resp, log_q, before_ref, after))
        return grad_means, grad_scales, grad_logits, None, None, None, None, None, None


def _rsample_block(means, scales, logits, eps, k, st: _BlockStats) -> torch.Tensor:
    return _MixtureRSample.apply(means, scales, logits, eps, k, st.resp, st.log_q, st.before_ref, st.after)


def mixture_rsample(logits: torch.Tensor, means: torch.Tensor, scales: torch.Tensor,
                    n_samples: int = 1, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""Draw ``n_samples`` points of a Gaussian mixture with pathwise gradients to all its parameters.

    .. math::
        k\sim\mathrm{Cat}(\mathrm{softmax}(\ell)),\quad \varepsilon\sim\mathcal N(0,I),\quad
        \theta = \mu_k + \sigma_k\odot\varepsilon

    with the implicit-reparameterisation backward of this module's docstring (gradients to
    ``means``, ``scales`` and ``logits``).

    Inputs: ``logits [K]``, ``means``/``scales [K, D...]``.  Output: ``[n_samples, D...]``.

    Example::

        >>> logits = torch.zeros(2, requires_grad=True)
        >>> mu = torch.tensor([[-1.0, 0.0], [1.0, 0.5]], requires_grad=True)
        >>> z = mixture_rsample(logits, mu, torch.ones(2, 2), n_samples=4)
        >>> z.sin().sum().backward(); logits.grad.shape
        torch.Size([2])
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() != 1:
        raise ValueError(f"mixture_rsample: logits must be a tensor of shape [K], got "
                         f"{getattr(logits, 'shape', logits)!r}")
    if not logits.is_floating_point():
        raise TypeError(f"mixture_rsample: logits must be a floating-point tensor, got dtype {logits.dtype}")
    _check_finite("mixture_rsample", "logits", logits)
    K = check_mixture(torch.softmax(logits.detach(), 0), means, scales, "mixture_rsample")
    n = check_int("n_samples", n_samples, ge=1)
    with torch.no_grad():
        w = torch.softmax(logits.detach().double(), 0)
        # drawn on the CPU (so a CPU generator works for any device), then moved
        k = torch.multinomial(w.cpu(), n, replacement=True, generator=generator).to(means.device)
        eps = torch.randn((n, *means.shape[1:]), generator=generator, dtype=means.dtype).to(means.device)
        z0 = means[k] + scales[k] * eps
        st = _draw_stats(logits, [_component_log_prob(z0.double(), means.double(), scales.double())])[0]
    del K
    return _rsample_block(means, scales, logits, eps, k, st)


# ---------------------------------------------------------------------------------------------
# the group of blocks that share one mixture
# ---------------------------------------------------------------------------------------------
def inverse_softplus(s: torch.Tensor) -> torch.Tensor:
    r""":math:`\rho = \mathrm{softplus}^{-1}(\sigma) = \sigma + \log(1 - e^{-\sigma})` (stable for small σ)."""
    return s + torch.log(-torch.expm1(-s))


class _Draw:
    """One held draw: the component index and the noise of every block (plus cached statistics)."""

    def __init__(self, k: torch.Tensor, eps: list):
        self.k = k            # [1] long
        self.eps = eps        # list of [1, *shape] tensors, one per block
        self.stats = None     # list[_BlockStats]
        self.versions = None  # parameter versions the stats were computed at

    def __getstate__(self):
        # a copy (deepcopy, pickle) keeps the draw but not the statistics: they are cached against the
        # version counters of the original's parameters, which the copy's parameters do not continue
        return {"k": self.k, "eps": self.eps, "stats": None, "versions": None}


class MixtureGroup(_sj.MemoryModule):
    r"""One Gaussian mixture over several weight tensors ("blocks"), with one component index per draw.

    .. math::
        q(\theta_1,\dots,\theta_B) = \sum_{k=1}^K w_k\prod_{b=1}^B
        \mathcal N\!\big(\theta_b;\ \mu_{b,k},\ \mathrm{diag}\,\sigma_{b,k}^2\big)

    (Furuya et al., arXiv 2202.13059: a mixture over *all* the weights).  The mixture layers of
    :mod:`neuroq.bayes.layers` register their weight and bias here; :func:`neuroq.bayes.bayesify`
    gives the whole network one group (``shared=True``) or each layer its own.

    **Who owns what.**  The layers own their means and scales (``weight_means``, ``weight_rhos``, ...).
    The group owns what the layers share: the mixing logits, the score-function baseline and the held
    draw.  It is a submodule (named ``group``) of exactly one module, the first layer that joins it
    (for :func:`~neuroq.bayes.bayesify`, the network's first converted layer), so ``state_dict()``,
    ``parameters()``, ``.to()`` and ``reset_net`` see it once; every other member layer refers to it
    through a plain attribute ``group`` that is not a submodule.  (Not the network itself: an
    ``nn.Sequential`` calls every child it has.)  The group lists its blocks as plain ``(layer, name)``
    references, so ``copy.deepcopy`` and pickling follow them as usual: a copied network gets its own
    group, wired to its own copied layers.

    **What is sampled when.**  A draw is one component index :math:`k` and one noise tensor per
    block: one weight sample for *every example of the minibatch and every time step* of one
    input.  It is held until it is cleared, which happens

    * ``resample='forward'``: before every call of the module the group is :meth:`attach`-ed to (a
      layer for a stand-alone layer, the whole network for :func:`~neuroq.bayes.bayesify`): one new
      weight sample per forward pass (ANNs, and SNNs run in multi-step mode);
    * ``resample='reset'``: only by :meth:`reset`, i.e. by SpikingJelly's ``functional.reset_net``
      (or :meth:`resample`): the weight sample stays fixed over the ``T`` single-step calls of one input.

    The weights are recomputed from the held noise at every call (:math:`\theta=\mu_k+\sigma_k\varepsilon`),
    so each call has its own graph and the parameters may change between calls.

    **Forcing the component.**  While :attr:`fixed_component` is an index (see :func:`use_component`),
    every new draw takes that component instead of :math:`k\sim\mathrm{Cat}(w)` (the noise is still
    drawn afresh).  This is what stratified estimators use: :math:`\mathbb E_q[h] = \sum_k w_k\,
    \mathbb E_{\mathcal N_k}[h]` for *any* function :math:`h` of :math:`\theta`, so one draw per component,
    weighted by :math:`w_k`, is unbiased for the value and for the pathwise gradient (whose single-sample
    form is a function of :math:`\theta`), with lower variance than :math:`K` independent draws.

    Args:
        K: number of components (``K = 1`` is mean-field Gaussian VI).
        mixing: ``'fixed'`` (uniform :math:`w_k = 1/K`, a buffer) or ``'learned'`` (logits
            :math:`\ell` are a parameter).
        resample: ``'forward'`` or ``'reset'`` (see above).
        weight_grad: gradient to learned mixing logits: ``'pathwise'`` (implicit reparameterisation,
            in the backward pass; for overlapping components) or ``'score'`` (Rao-Blackwellised score
            function, added by :func:`neuroq.bayes.elbo`; for well-separated components).  See the
            module docstring.

    Example::

        >>> g = MixtureGroup(K=3, mixing="learned")
        >>> g.weights
        tensor([0.3333, 0.3333, 0.3333], grad_fn=<SoftmaxBackward0>)
    """

    def __init__(self, K: int = 2, mixing: str = "fixed", resample: str = "forward",
                 weight_grad: str = "pathwise"):
        super().__init__()
        self.K = check_int("K", K, ge=1)
        self.mixing = check_choice("mixing", mixing, ("fixed", "learned"))
        self.resample_mode = check_choice("resample", resample, ("forward", "reset"))
        self.weight_grad = check_choice("weight_grad", weight_grad, ("pathwise", "score"))
        self.baseline_decay = 0.9
        self.register_buffer("score_baseline", torch.zeros(()))
        self.register_buffer("score_baseline_set", torch.zeros((), dtype=torch.bool))
        if mixing == "learned":
            self.logits = nn.Parameter(torch.zeros(self.K))
        else:
            self.register_buffer("logits", torch.zeros(self.K))
        self._blocks: list = []          # (layer, name): plain references, not submodules
        self._hook = None                # handle of the forward pre-hook set by attach()
        #: component index every new draw takes (``None``: drawn from the mixing weights)
        self.fixed_component: Optional[int] = None
        self.register_memory("_draw", None)

    # ---- blocks -------------------------------------------------------------------------
    def register_block(self, layer: nn.Module, name: str) -> int:
        """Add the tensor ``layer.<name>_means`` / ``layer.<name>_rhos`` ``[K, ...]``; return its index.

        The group keeps a reference to ``layer`` (it does not become a submodule of the group)."""
        means = getattr(layer, f"{name}_means")
        if means.shape[0] != self.K:
            raise ValueError(f"block {name!r} has {means.shape[0]} components but the group has K={self.K}")
        self._blocks.append((layer, name))
        self.clear()
        return len(self._blocks) - 1

    def blocks(self) -> list:
        """The blocks as ``(layer, name)`` pairs, in the order they were registered."""
        return list(self._blocks)

    def means_and_scales(self):
        """``[(means [K, ...], scales [K, ...]), ...]`` for every block (differentiable)."""
        return [(getattr(layer, f"{name}_means"), layer.scales(name)) for layer, name in self.blocks()]

    def flat_parameters(self):
        """``(weights [K], means [K, D], scales [K, D])`` over all blocks concatenated (for analysis)."""
        ms = self.means_and_scales()
        means = torch.cat([m.reshape(self.K, -1) for m, _ in ms], dim=1)
        scales = torch.cat([s.reshape(self.K, -1) for _, s in ms], dim=1)
        return self.weights, means, scales

    @property
    def weights(self) -> torch.Tensor:
        """Mixing weights :math:`w = \\mathrm{softmax}(\\ell)`, shape ``[K]``."""
        return torch.softmax(self.logits, dim=0)

    # ---- draws --------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget the held draw; the next weight request draws a new one."""
        self._draw = None

    def resample(self) -> None:
        """Alias of :meth:`clear`: the next forward pass uses a new weight sample."""
        self.clear()

    def attach(self, module: nn.Module) -> None:
        """With ``resample='forward'``, clear the draw before every call of ``module``."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.resample_mode == "forward":
            self._hook = module.register_forward_pre_hook(_ClearDraw(self))

    def _params(self):
        out = [self.logits]
        for layer, name in self.blocks():
            out += [getattr(layer, f"{name}_means"), getattr(layer, f"{name}_rhos")]
        return out

    def _ensure_draw(self) -> _Draw:
        d = self._draw
        blocks = self.blocks()
        if d is None or len(d.eps) != len(blocks):
            with torch.no_grad():
                if self.fixed_component is not None:
                    k = torch.tensor([check_int("fixed_component", self.fixed_component, ge=0, le=self.K - 1)],
                                     device=self.logits.device)
                else:
                    w = torch.softmax(self.logits.detach().double(), 0)
                    k = torch.multinomial(w, 1).to(self.logits.device)
                eps = []
                for layer, name in blocks:
                    m = getattr(layer, f"{name}_means")
                    eps.append(torch.randn((1, *m.shape[1:]), dtype=m.dtype, device=m.device))
            d = _Draw(k, eps)
            self._draw = d
        versions = tuple(p._version for p in self._params())
        if d.stats is None or d.versions != versions:
            with torch.no_grad():
                logps = []
                for (means, scales), eps in zip(self.means_and_scales(), d.eps):
                    eps = eps.to(device=means.device, dtype=means.dtype)
                    z = means[d.k] + scales[d.k] * eps
                    logps.append(_component_log_prob(z.double(), means.double(), scales.double()))
                d.stats = _draw_stats(self.logits, logps)
            d.versions = versions
        return d

    @property
    def component(self) -> int:
        """Index of the component of the held draw (draws one if none is held)."""
        return int(self._ensure_draw().k[0])

    def sample_block(self, index: int) -> torch.Tensor:
        """The held weight sample of block ``index`` (shape of the block, pathwise gradients)."""
        d = self._ensure_draw()
        layer, name = self.blocks()[index]
        means = getattr(layer, f"{name}_means")
        scales = layer.scales(name)
        eps = d.eps[index].to(device=means.device, dtype=means.dtype)
        logits = self.logits.detach() if self.weight_grad == "score" else self.logits
        return _rsample_block(means, scales, logits, eps, d.k, d.stats[index])[0]

    def score_surrogate(self, value: torch.Tensor) -> torch.Tensor:
        r"""Zero-valued term whose gradient to the logits is the score estimator :math:`(r - w)(f - b)`.

        ``value`` is :math:`f(\theta)` at the held draw (its gradient is not used); the running-mean
        baseline :math:`b` is updated afterwards.  Zero (no gradient) unless ``mixing='learned'`` and
        ``weight_grad='score'``.
        """
        if self.mixing != "learned" or self.weight_grad != "score" or self.K == 1:
            return self.logits.sum() * 0.0
        d = self._ensure_draw()
        r = d.stats[0].resp[0].to(self.logits.dtype)              # [K], responsibilities of the draw
        f = value.detach().to(self.logits.dtype).reshape(())
        b = self.score_baseline if bool(self.score_baseline_set) else torch.zeros_like(f)
        s = (f - b) * (r * torch.log_softmax(self.logits, 0)).sum()
        with torch.no_grad():
            if bool(self.score_baseline_set):
                self.score_baseline.mul_(self.baseline_decay).add_((1 - self.baseline_decay) * f)
            else:
                self.score_baseline.copy_(f)
                self.score_baseline_set.fill_(True)
        return s - s.detach()

    def samples(self) -> list:
        """The held weight samples of all blocks, in block order."""
        return [self.sample_block(i) for i in range(len(self.blocks()))]

    # ---- densities ----------------------------------------------------------------------
    def log_prob(self, samples: Optional[list] = None) -> torch.Tensor:
        r""":math:`\log q(\theta)` of the whole group at ``samples`` (default: the held draw), scalar."""
        if samples is None:
            samples = self.samples()
        lp = 0.0
        for (means, scales), z in zip(self.means_and_scales(), samples):
            lp = lp + _component_log_prob(z.unsqueeze(0), means, scales)[0]
        return torch.logsumexp(torch.log_softmax(self.logits, 0) + lp, dim=0)

    def component_entropies(self) -> torch.Tensor:
        r""":math:`H(\mathcal N_k) = \sum_i \tfrac12\log(2\pi e\,\sigma_{k,i}^2)` over all blocks, shape ``[K]``."""
        h = 0.0
        for _, scales in self.means_and_scales():
            h = h + (torch.log(scales) + 0.5 * (1.0 + _LOG_2PI)).reshape(self.K, -1).sum(1)
        return h

    def extra_repr(self):
        """``K``, mixing, resampling policy and number of blocks (shown by ``print(model)``)."""
        grad = f", weight_grad={self.weight_grad}" if self.mixing == "learned" else ""
        return (f"K={self.K}, mixing={self.mixing}{grad}, resample={self.resample_mode}, "
                f"blocks={len(self._blocks)}")

    def forward(self, *args, **kwargs):  # pragma: no cover - a group is not called
        """Not used: a group holds parameters and draws, the layers that read them are called."""
        raise RuntimeError("MixtureGroup holds parameters and draws; it is not called on inputs")


class _ClearDraw:
    """Forward pre-hook: clear the group's draw (a class, so models with it deep-copy and pickle)."""

    def __init__(self, group: MixtureGroup):
        self.group = group

    def __call__(self, module, args):
        self.group.clear()
        return None


def mixture_groups(model: nn.Module) -> list:
    """The distinct :class:`MixtureGroup` modules of ``model`` (each once), in module order.

    A group counts when it is a submodule of ``model`` or the ``group`` of one of its mixture layers.
    """
    out, seen = [], set()
    for m in model.modules():
        g = m if isinstance(m, MixtureGroup) else getattr(m, "group", None)
        if isinstance(g, MixtureGroup) and id(g) not in seen:
            seen.add(id(g))
            out.append(g)
    return out


@contextlib.contextmanager
def use_component(model: nn.Module, component: int):
    """Context manager: every mixture group of ``model`` draws component ``component`` (with fresh noise).

    The held draws are cleared on entry and on exit, so the next forward pass inside (outside) the block
    uses the forced (a freely drawn) component.  See :class:`MixtureGroup` ("Forcing the component").

    Example::

        >>> net = bayesify(torch.nn.Sequential(torch.nn.Linear(3, 2)), K=3)
        >>> with use_component(net, 2):
        ...     _ = net(torch.randn(4, 3)); net[0].group.component
        2
    """
    groups = mixture_groups(model)
    if not groups:
        raise ValueError("use_component: model has no Gaussian-mixture layers")
    for g in groups:
        check_int("component", component, ge=0, le=g.K - 1)
    before = [g.fixed_component for g in groups]
    try:
        for g in groups:
            g.fixed_component = int(component)
            g.clear()
        yield model
    finally:
        for g, b in zip(groups, before):
            g.fixed_component = b
            g.clear()


def systematic_components(weights: torch.Tensor, n: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    r"""``n`` component indices by systematic sampling: :math:`k_s = F_w^{-1}\big((s + u)/n\big)`, :math:`u\sim U[0,1)`.

    Every component appears :math:`\lfloor n w_k\rfloor` or :math:`\lceil n w_k\rceil` times and
    :math:`\mathbb E[\#\{s: k_s = k\}] = n w_k`, so the plain mean over the ``n`` draws stays unbiased for
    :math:`\mathbb E_q[\cdot]` with less variance than ``n`` independent draws (for uniform weights and
    ``n`` a multiple of ``K``: exactly ``n/K`` draws per component).

    Inputs: ``weights [K]``.  Output: ``[n]`` (long, in increasing order).

    Example::

        >>> systematic_components(torch.full((3,), 1 / 3), 6).tolist()
        [0, 0, 1, 1, 2, 2]
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() != 1:
        raise ValueError(f"weights must be a tensor of shape [K], got {getattr(weights, 'shape', weights)!r}")
    check_weights(weights, "systematic_components")
    n = check_int("n", n, ge=1)
    w = weights.detach().double().cpu()
    u = float(torch.rand((), generator=generator, dtype=torch.float64))
    cdf = torch.cumsum(w, 0)
    cdf[-1] = 1.0
    pos = (torch.arange(n, dtype=torch.float64) + u) / n
    return torch.searchsorted(cdf, pos, right=True).clamp_max(w.numel() - 1)
