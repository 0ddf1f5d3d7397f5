r"""Spectral pruning of recurrent hidden units (Furuya, Suetake, Taniguchi, Kusumoto, Saiin, Daimon,
"Spectral Pruning for Recurrent Neural Networks", AISTATS 2022, arXiv 2105.10832), built on the
spectral pruning of Suzuki et al. (IJCAI 2020, arXiv 1808.08558).

Structured pruning that is not a heuristic: from the **time-mean (uncentred) covariance** of the
hidden states over calibration data,

.. math::
    \hat\Sigma = \frac{1}{nT}\sum_{i=1}^{n}\sum_{t=1}^{T} h_t^{(i)} h_t^{(i)\top}\quad(m\times m),

choose the subset :math:`J` (:math:`|J| = m^\sharp`) of units that best reconstructs all of them,
with ridge :math:`\lambda`:

.. math::
    \hat A_J &= \hat\Sigma_{F,J}(\hat\Sigma_{J,J} + \lambda I)^{-1} \quad (m\times m^\sharp,\ h\approx\hat A_J h_J)\\
    R(J) &= \hat\Sigma_{F,F} - \hat\Sigma_{F,J}(\hat\Sigma_{J,J}+\lambda I)^{-1}\hat\Sigma_{J,F}
        &&\text{residual}\\
    L_A(J) &= \operatorname{Tr}[R(J)]             &&\text{input information loss}\\
    L_B(J) &= \operatorname{Tr}[Z\,R(J)\,Z^\top]  &&\text{output information loss}\\
    J &= \arg\min_{|J| = m^\sharp}\ \theta L_A(J) + (1-\theta) L_B(J)

(:math:`Z` = the downstream weights that read the hidden state; default :math:`W_{hh}` and
:math:`W_o` stacked), then absorb :math:`\hat A_J` into the remaining weights
(:mod:`neuroq.prune.surgery`): :math:`W_{hh}^\sharp = (W_{hh})_{J,:}\hat A_J`,
:math:`W_o^\sharp = W_o\hat A_J`.  The degrees of freedom
:math:`\hat N(\lambda) = \operatorname{Tr}[\hat\Sigma(\hat\Sigma+\lambda I)^{-1}]` bound the
compressed network's generalisation error in the paper; they are reported.

The paper's algorithm box, its defaults for :math:`\theta`, :math:`\lambda` and its search
procedure were not available to us; the procedure above is neuroq's reading of Furuya et al.'s
abstract and of Suzuki et al.'s method, and every open choice is an argument with a documented
neuroq default (:func:`spectral_prune`).

Selection (both exact in their losses; they differ in how the next unit is picked):

* ``'greedy'`` (forward selection): add the unit with the largest decrease of the objective.
  With the residual :math:`R = \hat\Sigma - \hat\Sigma_{F,J}(\hat\Sigma_{J,J}+\lambda I)^{-1}\hat\Sigma_{J,F}`
  and :math:`P = Z^\top Z`, adding unit :math:`j` decreases :math:`L_A` by
  :math:`\|R_{:,j}\|^2/(R_{jj}+\lambda)` and :math:`L_B` by :math:`R_{:,j}^\top P R_{:,j}/(R_{jj}+\lambda)`
  and updates :math:`R \leftarrow R - R_{:,j}R_{:,j}^\top/(R_{jj}+\lambda)` (rank one; block
  inverse); the per-column scores follow from two or three matrix-vector products.  Cost
  :math:`O(p\,m^2)` once (:math:`Z\hat\Sigma`, :math:`Z^\top Z`; :math:`Z` is ``[p, m]``) plus
  :math:`O(m^2)` per added unit: :math:`O(p m^2 + m^\sharp m^2)` time, :math:`O(m^2)` memory; no
  system is solved from scratch.
* ``'pivoted'`` (fast, for large :math:`m`): a ridge-pivoted Cholesky factorisation
  :math:`\hat\Sigma_{F,J}(\hat\Sigma_{J,J}+\lambda I)^{-1}\hat\Sigma_{J,F} = LL^\top`; the next
  pivot maximises the diagonal proxy :math:`w_j R_{jj}^2/(R_{jj}+\lambda)`,
  :math:`w_j = \theta + (1-\theta)\|Z_{:,j}\|^2` (the gain when unit :math:`j` only explained
  itself).  Only :math:`\operatorname{diag}R` and the :math:`m^\sharp` columns of :math:`L` are
  kept: :math:`O(m\,m^{\sharp 2} + p\,m\,m^\sharp)` time, :math:`O(m\,m^\sharp)` memory (plus one
  :math:`O(p m^2)` product for the starting :math:`L_B`).  The losses along its path are exact.

Reconstruction: with ``exact_kept=True`` (default) the kept rows of :math:`\hat A_J` are the
identity and only the removed units use the ridge formula (a kept unit's state is available, so
it is not shrunk towards zero); ``exact_kept=False`` is the formula above for every row.  The two
agree as :math:`\lambda\to 0`; only the first gives an unchanged network when every unit is kept.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real
from ..layer.lowpass import Lowpass
from .surgery import Reconstruction, adapter_for, absorb_linear, supported_layers

_F64 = torch.float64


# ---- covariance ---------------------------------------------------------------------------------
class HiddenCovariance:
    r"""Streaming float64 moments of hidden states: :math:`\hat\Sigma = \frac{1}{N}\sum_s h_s h_s^\top`.

    Every row of every batch counts once (for ``[T, N, m]`` states that is the time mean over
    :math:`N T` vectors).  Batches are merged with Chan's pairwise update of the mean and the
    centred scatter, all in float64 on the device of the first batch, so the result does not
    depend on how the data are split and the data never need to fit in memory.

    Args:
        size: number of hidden units :math:`m`.

    Inputs: :meth:`update` takes ``h`` of shape ``[..., m]`` (any leading axes, any float dtype).

    Example::

        >>> cov = HiddenCovariance(64)
        >>> for h in batches_of_states:           # each [T, N, 64]
        ...     cov.update(h)
        >>> sigma = cov.second_moment             # [64, 64] float64
    """

    def __init__(self, size: int):
        self.size = check_int("size", size, ge=1)
        self.count = 0
        self._mean: Optional[torch.Tensor] = None
        self._scatter: Optional[torch.Tensor] = None

    def update(self, h: torch.Tensor) -> None:
        """Add every row of ``h`` ``[..., m]`` (detached, in float64) to the running mean and scatter; an empty
        batch changes nothing."""
        if not isinstance(h, torch.Tensor):
            raise TypeError(f"HiddenCovariance.update: h must be a torch.Tensor, got {type(h).__name__}")
        if h.dim() < 1 or h.shape[-1] != self.size:
            raise ValueError(f"HiddenCovariance.update: h must have shape [..., {self.size}], got {tuple(h.shape)}")
        x = h.detach().reshape(-1, self.size).to(_F64)
        nb = x.shape[0]
        if nb == 0:
            return
        bad = (~torch.isfinite(x)).any(1).sum()
        if bool(bad):
            raise ValueError(f"HiddenCovariance.update: {int(bad)} of {nb} hidden-state rows hold NaN or inf (the "
                             "calibration data or the model produced them); the statistics were not updated")
        mb = x.mean(0)
        xc = x - mb
        sb = xc.T @ xc
        if self._mean is None:
            self._mean, self._scatter, self.count = mb, sb, nb
            return
        mb, sb = mb.to(self._mean.device), sb.to(self._mean.device)
        n = self.count
        tot = n + nb
        delta = mb - self._mean
        self._mean = self._mean + delta * (nb / tot)
        self._scatter = self._scatter + sb + torch.outer(delta, delta) * (n * nb / tot)
        self.count = tot

    def merge(self, other: "HiddenCovariance") -> "HiddenCovariance":
        """Add another accumulator's states (e.g. from another process); returns ``self``."""
        if not isinstance(other, HiddenCovariance) or other.size != self.size:
            raise ValueError("merge: other must be a HiddenCovariance of the same size")
        if other.count == 0:
            return self
        if self.count == 0:
            self._mean, self._scatter, self.count = other._mean.clone(), other._scatter.clone(), other.count
            return self
        n, nb = self.count, other.count
        tot = n + nb
        delta = other._mean.to(self._mean.device) - self._mean
        self._mean = self._mean + delta * (nb / tot)
        self._scatter = (self._scatter + other._scatter.to(self._mean.device)
                         + torch.outer(delta, delta) * (n * nb / tot))
        self.count = tot
        return self

    def _need(self):
        if self.count == 0:
            raise RuntimeError("HiddenCovariance: no hidden states were collected (was the layer run on any data?)")

    @property
    def mean(self) -> torch.Tensor:
        """Time-mean hidden state ``[m]`` (float64)."""
        self._need()
        return self._mean

    @property
    def covariance(self) -> torch.Tensor:
        """Centred covariance ``[m, m]`` (float64), for reference; pruning uses :attr:`second_moment`."""
        self._need()
        return self._scatter / self.count

    @property
    def second_moment(self) -> torch.Tensor:
        r"""The paper's :math:`\hat\Sigma = \frac{1}{N}\sum h h^\top` ``[m, m]`` (float64, symmetric)."""
        self._need()
        s = self._scatter / self.count + torch.outer(self._mean, self._mean)
        return 0.5 * (s + s.T)


# ---- closed forms -------------------------------------------------------------------------------
def _as_sigma(sigma) -> torch.Tensor:
    if isinstance(sigma, HiddenCovariance):
        return sigma.second_moment
    if not isinstance(sigma, torch.Tensor) or sigma.dim() != 2 or sigma.shape[0] != sigma.shape[1]:
        raise ValueError(f"sigma must be a square [m, m] tensor (or a HiddenCovariance), got "
                         f"{getattr(sigma, 'shape', type(sigma).__name__)}")
    if not bool(torch.isfinite(sigma).all()):
        raise ValueError("sigma holds NaN or inf values: the second moment of hidden states must be finite")
    S = sigma.to(_F64)
    tol = 1e-6 * (1.0 + float(S.abs().max()))
    if not torch.allclose(S, S.T, atol=tol) or bool((S.diagonal() < -tol).any()):
        raise ValueError("sigma must be a second-moment matrix: symmetric with a non-negative diagonal")
    return S


def _as_z(z, m: int, device) -> Optional[torch.Tensor]:
    if z is None:
        return None
    if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != m:
        raise ValueError(f"z must be a [p, {m}] tensor of downstream weights, got {getattr(z, 'shape', z)!r}")
    return z.detach().to(device=device, dtype=_F64)


def _indices(kept, m: int, name: str = "kept") -> torch.Tensor:
    idx = torch.as_tensor(list(kept), dtype=torch.long)
    if idx.dim() != 1 or len(set(idx.tolist())) != idx.numel():
        raise ValueError(f"{name} must be a list of distinct unit indices, got {list(kept)!r}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= m):
        raise ValueError(f"{name} must hold indices in [0, {m}), got {list(kept)!r}")
    return idx


def _solve_psd(K: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``K^{-1} B`` for symmetric PSD ``K`` (Cholesky; pseudo-inverse when singular, e.g. lam = 0)."""
    L, info = torch.linalg.cholesky_ex(K)
    if int(info) == 0:
        return torch.cholesky_solve(B, L)
    return torch.linalg.pinv(K, hermitian=True) @ B


def reconstruction_matrix(sigma, kept: Sequence[int], lam: float, exact_kept: bool = True) -> torch.Tensor:
    r"""Ridge reconstruction :math:`\hat A_J = \hat\Sigma_{F,J}(\hat\Sigma_{J,J}+\lambda I)^{-1}` ``[m, |J|]``.

    Row :math:`i` is the ridge regression of unit :math:`i` on the kept units,
    :math:`\arg\min_a \frac1N\sum_s (h_{s,i} - a^\top h_{s,J})^2 + \lambda\|a\|^2`.  With
    ``exact_kept`` the rows of the kept units are set to the identity (see the module docstring).

    Args:
        sigma: :math:`\hat\Sigma` ``[m, m]`` or a :class:`HiddenCovariance`.
        kept: indices :math:`J` (columns of the result, in this order).
        lam: absolute ridge :math:`\lambda \ge 0` (0 uses a pseudo-inverse if :math:`\hat\Sigma_{J,J}` is singular).

    Outputs: float64 ``[m, len(kept)]``.

    Example::

        >>> A = reconstruction_matrix(cov.second_moment, [0, 3, 5], lam=1e-4)   # h ≈ A @ h[[0, 3, 5]]
    """
    S = _as_sigma(sigma)
    m = S.shape[0]
    lam = check_real("lam", lam, ge=0)
    J = _indices(kept, m).to(S.device)
    if not len(J):
        raise ValueError("kept must name at least one unit to reconstruct from, got []")
    K = S[J][:, J] + lam * torch.eye(len(J), dtype=_F64, device=S.device)
    A = _solve_psd(K, S[J, :]).T.contiguous()
    if check_bool("exact_kept", exact_kept):
        A[J] = torch.eye(len(J), dtype=_F64, device=S.device)
    return A


def information_losses(sigma, kept: Sequence[int], lam: float, z: Optional[torch.Tensor] = None) -> tuple:
    r"""``(L_A, L_B)`` of the subset ``kept`` by the closed forms of the module docstring.

    They equal the penalised reconstruction errors at the ridge optimum :math:`A = \hat A_J`:
    :math:`L_A = \frac1N\sum_s\|h_s - A h_{s,J}\|^2 + \lambda\|A\|_F^2` and
    :math:`L_B = \frac1N\sum_s\|Z(h_s - A h_{s,J})\|^2 + \lambda\|ZA\|_F^2`.

    Inputs: ``sigma`` ``[m, m]`` (or a :class:`HiddenCovariance`), ``kept`` indices, absolute ``lam``,
    ``z`` ``[p, m]`` (``None``: :math:`Z = I`, then :math:`L_B = L_A`).  Output: two floats.

    Example::

        >>> la, lb = information_losses(cov, [0, 3], lam=1e-4, z=W_o)
    """
    S = _as_sigma(sigma)
    lam = check_real("lam", lam, ge=0)
    J = _indices(kept, S.shape[0]).to(S.device)
    R = S.clone()
    if len(J):
        K = S[J][:, J] + lam * torch.eye(len(J), dtype=_F64, device=S.device)
        R = R - S[:, J] @ _solve_psd(K, S[J, :])
    la = float(torch.trace(R))
    Z = _as_z(z, S.shape[0], S.device)
    lb = la if Z is None else float(((Z @ R) * Z).sum())
    return la, lb


def degrees_of_freedom(sigma, lam: float) -> float:
    r"""Degrees of freedom (Suzuki et al. 2020):
    :math:`\hat N(\lambda) = \operatorname{Tr}[\hat\Sigma(\hat\Sigma+\lambda I)^{-1}] = \sum_i \mu_i/(\mu_i+\lambda)`
    over the eigenvalues :math:`\mu_i` of :math:`\hat\Sigma`.  ``lam = 0`` gives the numerical rank.

    Inputs: ``sigma`` ``[m, m]`` (or a :class:`HiddenCovariance`), absolute ``lam >= 0``.
    Output: a float in ``[0, m]``.

    Example::

        >>> degrees_of_freedom(torch.eye(4), 1.0)
        2.0
    """
    S = _as_sigma(sigma)
    lam = check_real("lam", lam, ge=0)
    mu = torch.linalg.eigvalsh(S).clamp_min(0)
    if lam == 0:
        return float((mu > _tolerance(S)).sum())
    return float((mu / (mu + lam)).sum())


def _tolerance(S: torch.Tensor) -> float:
    top = float(S.diagonal().abs().max()) if S.numel() else 0.0
    return S.shape[0] * torch.finfo(_F64).eps * max(top, 1e-300) * 10


# ---- selection ----------------------------------------------------------------------------------
@dataclass
class SelectionPath:
    """Units in the order they were added, and the losses after 0, 1, ..., len(order) units."""

    order: list
    loss_input: list
    loss_output: list
    theta: float = 0.5

    @property
    def objective(self) -> list:
        """:math:`\theta L_A + (1-\theta) L_B` after 0, 1, ... units (one value per entry of the loss lists)."""
        return [self.theta * a + (1 - self.theta) * b for a, b in zip(self.loss_input, self.loss_output)]


def _check_select_args(sigma, keep, lam, theta, z, keep_min: int = 1):
    S = _as_sigma(sigma)
    m = S.shape[0]
    keep = check_int("keep", keep, ge=keep_min, le=m)
    lam = check_real("lam", lam, ge=0)
    theta = check_real("theta", theta, ge=0, le=1)
    return S, m, keep, lam, theta, _as_z(z, m, S.device)


def _sweep(S, keep, lam, theta, Z, order=None) -> SelectionPath:
    """Rank-one forward sweep over the residual R (greedy when ``order`` is None, else along ``order``).

    Keeps R (``[m, m]``) and, for the greedy scores, the column quantities
    ``na_j = ||R_:j||^2`` and ``nb_j = R_:j^T P R_:j`` (P = Z^T Z); with r = R_:j, d = R_jj + lam,
    R' = R - r r^T / d gives (R symmetric) ``na' = na - 2 r (R r)/d + r^2 |r|^2/d^2`` and
    ``nb' = nb - 2 r (R P r)/d + r^2 (r^T P r)/d^2``: two or three matrix-vector products and one
    rank-one update per step, O(m^2).
    """
    m = S.shape[0]
    R = S.clone()
    P = None if Z is None else Z.T @ Z
    tol = _tolerance(S)
    greedy = order is None
    avail = torch.ones(m, dtype=torch.bool, device=S.device)
    la = [float(torch.trace(R))]
    if P is None:
        lb_cur = la[0]
    else:
        ZR = Z @ R                                     # O(p m^2), once
        lb_cur = float((ZR * Z).sum())                 # Tr(Z R Z^T)
    if greedy:
        na = (R * R).sum(0)
        nb = na if P is None else (ZR * ZR).sum(0)     # ||Z R_:j||^2 = R_:j^T P R_:j
    if P is not None:
        del ZR
    lb = [lb_cur]
    chosen = []
    for i in range(keep):
        if greedy:
            d = R.diagonal() + lam
            ok = d > tol
            dsafe = torch.where(ok, d, torch.ones_like(d))
            score = torch.where(ok, (theta * na + (1 - theta) * nb) / dsafe, torch.zeros_like(d))
            j = int(torch.argmax(score.masked_fill(~avail, -math.inf)))
        else:
            j = int(order[i])
        dj = float(R[j, j]) + lam
        if dj > tol:
            r = R[:, j].clone()
            rr = float(r @ r)
            g = None if P is None else P @ r
            rg = rr if g is None else float(r @ g)
            if greedy:
                w = R @ r
                na = na - (2.0 / dj) * r * w + (rr / dj ** 2) * r * r
                if g is None:
                    nb = na
                else:
                    u = R @ g
                    nb = nb - (2.0 / dj) * r * u + (rg / dj ** 2) * r * r
            R.addr_(r, r, alpha=-1.0 / dj)
            lb_cur -= rg / dj
        avail[j] = False
        chosen.append(j)
        la.append(float(torch.trace(R)))
        lb.append(la[-1] if P is None else lb_cur)
    return SelectionPath(chosen, la, lb, theta)


def greedy_select(sigma, keep: int, lam: float, theta: float = 0.5, z: Optional[torch.Tensor] = None) -> SelectionPath:
    r"""Greedy forward selection of ``keep`` units minimising :math:`\theta L_A + (1-\theta) L_B`.

    Rank-one updates of the residual (module docstring): :math:`O(p m^2 + \text{keep}\cdot m^2)`
    time, :math:`O(m^2)` memory.  Ties go to the lowest index.

    Args:
        sigma: :math:`\hat\Sigma` ``[m, m]`` or a :class:`HiddenCovariance`.
        keep: number of units to select.
        lam: absolute ridge :math:`\lambda \ge 0`.
        theta: weight of the input loss, in ``[0, 1]``.
        z: downstream weights ``[p, m]`` (``None``: :math:`Z = I`).

    Outputs: :class:`SelectionPath` (``order`` and the losses after 0..keep units).

    Example::

        >>> path = greedy_select(cov.second_moment, keep=32, lam=1e-4, theta=0.5, z=W_o)
        >>> path.order[:3], path.loss_input[-1]
    """
    S, m, keep, lam, theta, Z = _check_select_args(sigma, keep, lam, theta, z)
    return _sweep(S, keep, lam, theta, Z)


def path_losses(sigma, order: Sequence[int], lam: float, theta: float = 0.5,
                z: Optional[torch.Tensor] = None) -> SelectionPath:
    r"""The losses :math:`L_A, L_B` after each prefix of a given ``order`` (the baselines' paths).

    Same rank-one sweep as :func:`greedy_select`, :math:`O(p m^2 + |\text{order}|\,m^2)`.
    Inputs as :func:`greedy_select` with ``order`` (distinct unit indices); output a :class:`SelectionPath`.

    Example::

        >>> path = path_losses(cov, order=[5, 1, 7], lam=1e-4, z=W_o)
        >>> path.loss_input     # 4 values: with 0, 1, 2, 3 units
    """
    S, m, _, lam, theta, Z = _check_select_args(sigma, 0, lam, theta, z, keep_min=0)
    idx = _indices(order, m, "order")
    return _sweep(S, len(idx), lam, theta, Z, order=idx.tolist())


def pivoted_select(sigma, keep: int, lam: float, theta: float = 0.5, z: Optional[torch.Tensor] = None) -> SelectionPath:
    r"""Fast selection for large ``m``: ridge-pivoted Cholesky with the pivot score
    :math:`(\theta + (1-\theta)\|Z_{:,j}\|^2)\,R_{jj}^2/(R_{jj}+\lambda)`.

    :math:`O(m\cdot\text{keep}^2 + p\,m\cdot\text{keep})` time (plus one :math:`O(p m^2)`
    product for the starting :math:`L_B`), :math:`O(m\cdot\text{keep})` memory.  Same arguments
    and output as :func:`greedy_select`; the reported losses are exact.

    Example::

        >>> path = pivoted_select(cov.second_moment, keep=512, lam=1e-4, z=W_o)
    """
    S, m, keep, lam, theta, Z = _check_select_args(sigma, keep, lam, theta, z)
    tol = _tolerance(S)
    res = S.diagonal().clone()
    Lc = torch.zeros(m, max(keep, 1), dtype=_F64, device=S.device)
    w = torch.ones(m, dtype=_F64, device=S.device) if Z is None else theta + (1 - theta) * (Z * Z).sum(0)
    la = [float(res.sum())]
    lb = [la[0] if Z is None else float(((Z @ S) * Z).sum())]
    avail = torch.ones(m, dtype=torch.bool, device=S.device)
    chosen = []
    for i in range(keep):
        d = res + lam
        ok = d > tol
        score = torch.where(ok, w * res * res / torch.where(ok, d, torch.ones_like(d)), torch.zeros_like(d))
        j = int(torch.argmax(score.masked_fill(~avail, -math.inf)))
        dj = float(d[j])
        gain_a = gain_b = 0.0
        if dj > tol:
            col = (S[:, j] - Lc[:, :i] @ Lc[j, :i]) / math.sqrt(dj)
            Lc[:, i] = col
            res = res - col * col
            gain_a = float(col @ col)
            gain_b = gain_a if Z is None else float((Z @ col).pow(2).sum())
        avail[j] = False
        chosen.append(j)
        la.append(la[-1] - gain_a)
        lb.append(lb[-1] - gain_b)
    return SelectionPath(chosen, la, lb, theta)


# ---- the pruning engine -------------------------------------------------------------------------
@dataclass
class SelectionContext:
    """What a unit selector sees for one hidden state (``index`` k of the layer).

    ``sigma`` and ``lam`` are ``None`` when no calibration data were given; ``z`` ``[p, m]`` are
    the downstream weights that read the state (those of the output loss, float64), ``incoming``
    ``[m, q]`` each unit's input weights (float64).
    """

    index: int
    hidden_size: int
    keep: int
    sigma: Optional[torch.Tensor]
    lam: Optional[float]
    theta: float
    z: torch.Tensor
    incoming: torch.Tensor
    generator: torch.Generator


#: a selector returns the selection order (a list of ``keep`` unit indices) or a SelectionPath
Selector = Callable[[SelectionContext], Union[Sequence[int], SelectionPath]]


def _select_greedy(ctx: SelectionContext) -> SelectionPath:
    return greedy_select(ctx.sigma, ctx.keep, ctx.lam, ctx.theta, ctx.z)


def _select_pivoted(ctx: SelectionContext) -> SelectionPath:
    return pivoted_select(ctx.sigma, ctx.keep, ctx.lam, ctx.theta, ctx.z)


SELECTIONS = {"greedy": _select_greedy, "pivoted": _select_pivoted}


@dataclass
class PruneReport:
    """Result of one pruning: what was kept, the losses along the selection path, N̂(λ), sizes.

    Lists with one entry per stacked hidden state (``nn.RNN`` layers; one entry otherwise).
    ``loss_input[k][i]`` / ``loss_output[k][i]`` / ``objective[k][i]`` are the losses after the
    first ``i`` units of ``order[k]`` (``i = 0..keep``); they, ``dof`` and ``lam`` are ``None``
    without calibration data.  The losses are those of the spectral reconstruction of the units
    kept so far, also for selectors run with ``reconstruct=False`` (there they rate the unit set,
    not the plain deletion).  :meth:`to_dict` gives a JSON-ready dict.
    """

    method: str
    layer: str
    layer_type: str
    readout: Optional[str]
    hidden_size: int
    keep: int
    kept: list
    order: list
    loss_input: list
    loss_output: list
    objective: list
    dof: list
    lam: list
    n_states: list
    params_before: int
    params_after: int
    lam_given: Optional[float] = None
    lam_relative: bool = True
    theta: float = 0.5
    z: str = "both"
    reconstruct: bool = True
    exact_kept: bool = True
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The report as plain data (``dataclasses.asdict``: nested lists and dicts, for JSON)."""
        return asdict(self)


def _count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _find_layer(model: nn.Module, layer: Optional[str]):
    if layer is None:
        cands = []
        for name, mod in model.named_modules():
            if adapter_for(mod) is not None and not any(name.startswith(c + ".") or c == "" for c, _ in cands):
                cands.append((name, mod))
        if len(cands) != 1:
            found = [n or "<model>" for n, _ in cands]
            raise ValueError(f"layer: the model holds {len(cands)} prunable recurrent layers {found} (supported types: "
                             f"{supported_layers()}); pass layer=<name>" if cands else
                             "layer: the model holds no prunable recurrent layer (supported types: "
                             f"{supported_layers()}; register others with neuroq.prune.register_layer)")
        name, mod = cands[0]
    else:
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a submodule name (str) or None, got {layer!r}")
        try:
            mod = model.get_submodule(layer) if layer else model
        except AttributeError as e:
            raise ValueError(f"layer={layer!r} is not a submodule of the model") from e
        name = layer
    adapter = adapter_for(mod)
    if adapter is None:
        raise TypeError(f"layer {name!r} is a {type(mod).__name__}, which has no pruning adapter (supported: "
                        f"{supported_layers()}; register others with neuroq.prune.register_layer)")
    adapter.check(mod)
    return name, mod, adapter


def _find_readout(model: nn.Module, layer_name: str, m: int, readout):
    if readout is None or (layer_name == "" and readout == "auto"):
        return None, None
    inside = (lambda n: n == layer_name or n.startswith(layer_name + ".")) if layer_name else (lambda n: True)
    if readout == "auto":
        cands = [(n, mod) for n, mod in model.named_modules()
                 if isinstance(mod, nn.Linear) and mod.in_features == m and not inside(n)]
        if len(cands) > 1:
            raise ValueError(f"readout: several nn.Linear layers take {m} features {[n for n, _ in cands]}; pass "
                             "readout=<name> of the one that reads the hidden state (or readout=None)")
        return cands[0] if cands else (None, None)
    if not isinstance(readout, str):
        raise TypeError(f"readout must be 'auto', a submodule name or None, got {readout!r}")
    try:
        mod = model.get_submodule(readout)
    except AttributeError as e:
        raise ValueError(f"readout={readout!r} is not a submodule of the model") from e
    if not isinstance(mod, nn.Linear) or mod.in_features != m:
        raise ValueError(f"readout={readout!r} must be an nn.Linear with in_features={m}, got {mod}")
    return readout, mod


def _check_per_unit_filters(model: nn.Module, layer_name: str, m: int) -> None:
    """Refuse a per-unit :class:`~neuroq.layer.lowpass.Lowpass` outside the layer (e.g. between it and the
    readout): it filters each unit with its own time constant, so it neither commutes with the absorption
    :math:`W_o\\hat A_J` nor shrinks with the layer.  A Lowpass with one shared time constant is linear
    and commutes with the absorption, so it is allowed."""
    inside = (lambda n: n == layer_name or n.startswith(layer_name + ".")) if layer_name else (lambda n: True)
    for n, mod in model.named_modules():
        if isinstance(mod, Lowpass) and not inside(n) and mod.log_tau.dim() >= 1 and mod.log_tau.shape[-1] == m:
            raise ValueError(f"module {n!r} is a Lowpass with one time constant per hidden unit ({m}); pruning through "
                             "a per-unit filter is not supported (it does not commute with the reconstruction). "
                             "Use a Lowpass with a shared tau (units=None) or read the hidden state directly")


def _replace(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    if name == "":
        return new
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model


def _model_device(model: nn.Module):
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _default_forward(model: nn.Module, batch, device) -> None:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not isinstance(x, torch.Tensor):
        raise TypeError("data: each batch must be a tensor or a tuple/list whose first item is the model input "
                        f"(got {type(x).__name__}); pass forward=callable(model, batch) for other layouts")
    model(x.to(device))


def collect_hidden_covariance(model: nn.Module, data, layer: Optional[str] = None, *,
                              forward: Optional[Callable] = None, max_batches: Optional[int] = None,
                              transform: Optional[Callable] = None) -> list:
    r"""Run ``model`` over ``data`` and accumulate :math:`\hat\Sigma` of the layer's hidden states.

    Forward hooks on the recurrent layer stream each batch's states into a
    :class:`HiddenCovariance` (float64), so the calibration set never needs to fit in memory.
    The model runs in eval mode under ``torch.no_grad()``; SpikingJelly state is reset before
    every batch; the hooks are removed afterwards (also on errors).

    Args:
        model: a module holding one supported recurrent layer (or being one).
        data: an iterable of batches (a DataLoader, a list ...); a batch is the model input or a
            tuple/list whose first item is; a single tensor is one batch.
        layer: name of the recurrent submodule (``None``: the only supported one).
        forward: ``forward(model, batch)`` to run a batch another way.
        max_batches: stop after this many batches.
        transform: ``transform(h) -> h'`` applied to each batch's hidden states (``[T, N, m]`` for a
            multi-step layer) before they enter the statistics, e.g. a lowpass filter that turns spike
            trains into firing rates (``neuroq.layer.Lowpass(tau, learn_tau=False, step_mode='m')``);
            the shape must be kept.

    Outputs: a list of :class:`HiddenCovariance`, one per stacked hidden state.

    Example::

        >>> stats = collect_hidden_covariance(model, loader, max_batches=20)
        >>> pruned, report = spectral_prune(model, None, keep=0.5, stats=stats)
    """
    name, mod, adapter = _find_layer(model, layer)
    return _collect(model, data, mod, adapter, forward, max_batches, transform)


def _collect(model, data, mod, adapter, forward, max_batches, transform=None):
    if max_batches is not None:
        check_int("max_batches", max_batches, ge=1)
    if forward is not None and not callable(forward):
        raise TypeError(f"forward must be callable(model, batch), got {forward!r}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable(hidden states) -> hidden states, got {transform!r}")
    if isinstance(data, torch.Tensor):
        data = [data]
    try:
        iter(data)
    except TypeError as e:
        raise TypeError(f"data must be an iterable of batches (e.g. a DataLoader), got {type(data).__name__}") from e
    stats = [HiddenCovariance(adapter.state_size(mod)) for _ in range(adapter.num_states(mod))]

    def sink(k, h):
        if transform is not None:
            t = transform(h)
            if not isinstance(t, torch.Tensor) or t.shape != h.shape:
                raise ValueError(f"transform must return a tensor of the hidden states' shape {tuple(h.shape)}, "
                                 f"got {getattr(t, 'shape', type(t).__name__)}")
            h = t
        stats[k].update(h)

    device = _model_device(model)
    was_training = model.training
    handles = adapter.attach(mod, sink)
    try:
        model.eval()
        with torch.no_grad():
            for batch in itertools.islice(data, max_batches):   # islice: no extra batch is drawn
                _sj.reset_net(model)
                if forward is None:
                    _default_forward(model, batch, device)
                else:
                    forward(model, batch)
    finally:
        for h in handles:
            h.remove()
        _sj.reset_net(model)
        model.train(was_training)
    if any(s.count == 0 for s in stats):
        raise ValueError("collect_hidden_covariance: the recurrent layer saw no data (empty data, or the "
                           "forward never called the layer)")
    return stats


def resolve_keep(keep, m: int) -> int:
    """``keep`` as a count: an int in ``[1, m]``, or a float fraction in ``(0, 1]`` -> ``max(1, round(keep*m))``.

    Example::

        >>> resolve_keep(0.5, 128), resolve_keep(40, 128)
        (64, 40)
    """
    if isinstance(keep, bool):
        raise TypeError(f"keep must be a count (int) or a fraction (float), got {keep!r}")
    if isinstance(keep, float):
        check_real("keep", keep, gt=0, le=1)
        return max(1, int(round(keep * m)))
    return check_int("keep", keep, ge=1, le=m)


def _z_matrix(z, adapter, mod, k, n_states, readout_mod):
    rec = adapter.recurrent_weights(mod, k).detach().to(_F64)
    m = rec.shape[1]
    if k + 1 < n_states:
        down = adapter.next_weights(mod, k).detach().to(_F64)
    elif readout_mod is not None:
        down = readout_mod.weight.detach().to(_F64)
    else:  # the hidden state is the model's output: it is read by the identity
        down = torch.eye(m, dtype=_F64, device=rec.device)
    down = down.to(rec.device)
    if isinstance(z, torch.Tensor):
        zk = z
    elif isinstance(z, (list, tuple)):
        if len(z) != n_states:
            raise ValueError(f"z: got {len(z)} matrices for a layer with {n_states} hidden states")
        zk = z[k]
    else:
        zk = {"both": lambda: torch.cat([rec, down], 0), "recurrent": lambda: rec, "readout": lambda: down}[z]()
    if not isinstance(zk, torch.Tensor) or zk.dim() != 2 or zk.shape[1] != m:
        raise ValueError(f"z for hidden state {k} must be a [p, {m}] tensor, got {getattr(zk, 'shape', zk)!r}")
    return zk.detach().to(device=rec.device, dtype=_F64)


def prune_units(model: nn.Module, keep, data=None, *, select: Union[str, Selector] = "greedy",
                reconstruct: bool = True, lam: float = 1e-3, lam_relative: bool = True, theta: float = 0.5,
                z="both", exact_kept: bool = True, layer: Optional[str] = None, readout="auto",
                stats: Optional[list] = None, forward: Optional[Callable] = None,
                max_batches: Optional[int] = None, seed: int = 0, inplace: bool = False,
                method: Optional[str] = None):
    r"""Remove hidden units of a recurrent layer: one engine for spectral pruning and its baselines.

    Selection (``select``) and reconstruction (``reconstruct``) are independent, so their effects
    can be told apart: ``select`` picks the units (``'greedy'`` / ``'pivoted'`` spectral
    selection, or any :data:`Selector`, e.g. the baselines' random and magnitude selectors), and
    ``reconstruct=True`` absorbs :math:`\hat A_J` (:func:`reconstruction_matrix`) into the
    readers of the hidden state, ``False`` just deletes the other units.  See
    :func:`spectral_prune` for the arguments; ``seed`` seeds selectors that draw at random and
    ``method`` names the result in the report.

    Outputs: ``(pruned_model, PruneReport)``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_bool("reconstruct", reconstruct)
    check_bool("lam_relative", lam_relative)
    check_bool("exact_kept", exact_kept)
    check_bool("inplace", inplace)
    lam_given = check_real("lam", lam, ge=0)
    theta = check_real("theta", theta, ge=0, le=1)
    check_int("seed", seed, ge=0)
    if not (isinstance(z, torch.Tensor) or isinstance(z, (list, tuple))):
        check_choice("z", z, ("both", "recurrent", "readout"))
    if isinstance(select, str):
        sel_name = check_choice("select", select, tuple(SELECTIONS))
        selector = SELECTIONS[sel_name]
        needs_data = True
    elif callable(select):
        sel_name = getattr(select, "__name__", "custom")
        selector = select
        needs_data = getattr(select, "needs_data", False)
    else:
        raise TypeError(f"select must be 'greedy', 'pivoted' or a callable selector, got {select!r}")
    needs_data = needs_data or reconstruct

    name, mod, adapter = _find_layer(model, layer)
    m = adapter.state_size(mod)
    n_states = adapter.num_states(mod)
    k_keep = resolve_keep(keep, m)
    ro_name, ro_mod = _find_readout(model, name, m, readout)
    _check_per_unit_filters(model, name, m)

    if stats is None and data is not None:
        stats = _collect(model, data, mod, adapter, forward, max_batches)
    if stats is not None:
        if isinstance(stats, HiddenCovariance):
            stats = [stats]
        if len(stats) != n_states or any(not isinstance(s, HiddenCovariance) or s.size != m for s in stats):
            raise ValueError(f"stats must be {n_states} HiddenCovariance of size {m} (from collect_hidden_covariance)")
    elif needs_data:
        raise ValueError(f"data is required for select={sel_name!r} / reconstruct={reconstruct} (the hidden-state "
                         "covariance is computed from it); pass calibration batches or stats=")

    gen = torch.Generator().manual_seed(seed)
    recons, rep = [], dict(kept=[], order=[], loss_input=[], loss_output=[], objective=[], dof=[], lam=[], n_states=[])
    for k in range(n_states):
        zk = _z_matrix(z, adapter, mod, k, n_states, ro_mod)
        sigma = lam_abs = None
        if stats is not None:
            sigma = stats[k].second_moment
            lam_abs = lam_given * float(torch.trace(sigma)) / m if lam_relative else lam_given
            zk = zk.to(sigma.device)
        incoming = adapter.incoming_weights(mod, k).detach().to(_F64)
        ctx = SelectionContext(k, m, k_keep, sigma, lam_abs, theta, zk, incoming, gen)
        out = selector(ctx)
        path = out if isinstance(out, SelectionPath) else None
        order = list(path.order if path is not None else out)
        order = _indices(order, m, "selector output").tolist()
        if len(order) != k_keep:
            raise ValueError(f"selector {sel_name!r} returned {len(order)} units, expected {k_keep}")
        if path is None and sigma is not None:
            path = path_losses(sigma, order, lam_abs, theta, zk)
        kept = sorted(order)
        if reconstruct:
            A = reconstruction_matrix(sigma, kept, lam_abs, exact_kept)
        else:
            A = torch.eye(m, dtype=_F64)[:, kept]
        recons.append(Reconstruction(kept, A))
        rep["kept"].append(kept)
        rep["order"].append(order)
        rep["loss_input"].append(path.loss_input if path is not None else None)
        rep["loss_output"].append(path.loss_output if path is not None else None)
        rep["objective"].append(path.objective if path is not None else None)
        rep["dof"].append(degrees_of_freedom(sigma, lam_abs) if sigma is not None else None)
        rep["lam"].append(lam_abs)
        rep["n_states"].append(stats[k].count if stats is not None else 0)

    params_before = _count_params(model)
    _sj.reset_net(model)
    pruned = model if inplace else _sj.clone_net(model)
    p_mod = pruned.get_submodule(name) if name else pruned
    new_layer = adapter.shrink(p_mod, recons)
    if ro_name is not None:
        pruned = _replace(pruned, ro_name, absorb_linear(pruned.get_submodule(ro_name), recons[-1]))
    pruned = _replace(pruned, name, new_layer)
    _sj.invalidate_reset_cache(pruned)
    _sj.reset_net(pruned)
    if method is None:
        method = f"spectral-{sel_name}" if isinstance(select, str) else sel_name
    report = PruneReport(
        method=method, layer=name, layer_type=type(mod).__name__, readout=ro_name, hidden_size=m, keep=k_keep,
        params_before=params_before, params_after=_count_params(pruned), lam_given=lam_given,
        lam_relative=lam_relative, theta=theta,
        z=z if isinstance(z, str) else "custom", reconstruct=reconstruct, exact_kept=exact_kept, **rep)
    return pruned, report


def spectral_prune(model: nn.Module, data, keep, lam: float = 1e-3, theta: float = 0.5, z="both", *,
                   selection: str = "greedy", lam_relative: bool = True, exact_kept: bool = True,
                   layer: Optional[str] = None, readout="auto", stats: Optional[list] = None,
                   forward: Optional[Callable] = None, max_batches: Optional[int] = None,
                   inplace: bool = False):
    r"""Spectral pruning of a recurrent layer's hidden units (Furuya et al., AISTATS 2022).

    Collects :math:`\hat\Sigma` of the hidden states over ``data``, selects ``keep`` units
    minimising :math:`\theta L_A + (1-\theta) L_B` and returns a **genuinely smaller** copy of
    ``model`` with :math:`\hat A_J` absorbed into the recurrent weights and the readout (equations
    in the module docstring and :mod:`neuroq.prune.surgery`).

    Supported layers: ``torch.nn.RNN`` (tanh / ReLU, e.g. the IRNN; any ``num_layers``;
    ``batch_first`` either way), :class:`neuroq.layer.recurrent.SpikingRNN` (spikes as hidden
    states; see :class:`~neuroq.prune.surgery.SpikingRNNAdapter` for what is exact), and any type
    added with :func:`~neuroq.prune.surgery.register_layer` (e.g. an LMU hidden layer).  The
    readout must be an ``nn.Linear`` reading a linear function of the hidden states (one step,
    or their time mean).

    Args:
        model: the network (or the recurrent layer itself).
        data: calibration batches (see :func:`collect_hidden_covariance`); may be ``None`` with ``stats``.
        keep: units to keep: a count (int) or a fraction (float in ``(0, 1]``).
        lam: ridge :math:`\lambda`; relative to the mean eigenvalue :math:`\operatorname{Tr}\hat\Sigma/m`
            when ``lam_relative`` (default), else absolute.  Default ``1e-3`` (neuroq's; the paper's value
            was not available to us).
        theta: weight of the input loss :math:`L_A` against the output loss :math:`L_B`, in ``[0, 1]``
            (default 0.5, neuroq's; the paper's value was not available to us).
        z: the downstream weights :math:`Z` of :math:`L_B`: ``'both'`` (default: the recurrent
            weights and the readout stacked: neuroq's default, as which weights the paper uses is not
            known to us), ``'recurrent'`` (:math:`W_{hh}`),
            ``'readout'`` (:math:`W_o`; for an inner ``nn.RNN`` layer the next layer's
            :math:`W_{ih}`; the identity when the state is the model's output), or a tensor
            ``[p, m]`` (a list of them, one per stacked state).
        selection: ``'greedy'`` (exact forward selection) or ``'pivoted'`` (fast; costs in the module docstring).
        exact_kept: kept units reconstruct themselves exactly (identity rows of :math:`\hat A_J`);
            ``False``: the ridge formula for every row.
        layer: name of the recurrent submodule (``None``: the only supported one).
        readout: ``'auto'`` (the one ``nn.Linear`` outside the layer with ``in_features = m``, if
            any), a submodule name, or ``None`` (the hidden state is the output; it shrinks).
        stats: precomputed :func:`collect_hidden_covariance` result (reuse one pass for many prunings).
        forward, max_batches: see :func:`collect_hidden_covariance`.
        inplace: modify ``model`` instead of a deep copy.

    Outputs:
        ``(pruned, report)``: the smaller model and a :class:`PruneReport` (kept units, the
        losses along the selection path, :math:`\hat N(\lambda)`, parameter counts).

    Example::

        >>> model = neuroq.models.rnn.IRNNClassifier(28, 128, 10)
        >>> pruned, report = spectral_prune(model, calib_loader, keep=0.5, max_batches=20)
        >>> report.params_before, report.params_after, report.dof
    """
    check_choice("selection", selection, tuple(SELECTIONS))
    return prune_units(model, keep, data, select=selection, reconstruct=True, lam=lam, lam_relative=lam_relative,
                       theta=theta, z=z, exact_kept=exact_kept, layer=layer, readout=readout, stats=stats,
                       forward=forward, max_batches=max_batches, inplace=inplace, method=f"spectral-{selection}")
