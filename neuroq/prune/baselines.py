r"""Baselines for hidden-unit pruning, in the same API as :func:`neuroq.prune.spectral_prune`.

neuroq compares spectral pruning (Furuya, Suetake, Taniguchi, Kusumoto, Saiin, Daimon, "Spectral Pruning
for Recurrent Neural Networks", AISTATS 2022, arXiv 2105.10832) against two heuristic baselines of its own
choosing: random units and units of largest weight magnitude.  A third one, magnitude-chosen units **with** the spectral
reconstruction, separates the two halves of spectral pruning: compare

* ``magnitude_prune`` vs ``magnitude_reconstruct_prune``: the effect of the reconstruction
  :math:`\hat A_J` for a fixed, heuristic unit set;
* ``magnitude_reconstruct_prune`` vs ``spectral_prune``: the effect of the selection, for the
  same reconstruction.

Magnitude score of unit :math:`j` (``by``):

* ``'outgoing'`` (default): :math:`\|Z_{:,j}\|_2`, the weights that read the unit (the same
  :math:`Z` as the output loss; default :math:`W_{hh}` and :math:`W_o` stacked);
* ``'incoming'``: :math:`\|[W_{ih}\; W_{hh}]_{j,:}\|_2`, the weights into the unit;
* ``'both'``: :math:`\sqrt{\|Z_{:,j}\|^2 + \|[W_{ih}\;W_{hh}]_{j,:}\|^2}`.

Without reconstruction the other units are simply deleted (:math:`\hat A_J` = the selection
matrix).  All three return ``(pruned, report)``; with calibration ``data`` the report also has
the information losses along the selection order and :math:`\hat N(\lambda)`.
"""
from __future__ import annotations

import torch

from .._validate import check_choice
from .spectral import SelectionContext, prune_units


def _random_selector(ctx: SelectionContext) -> list:
    return torch.randperm(ctx.hidden_size, generator=ctx.generator)[:ctx.keep].tolist()


_random_selector.needs_data = False
_random_selector.__name__ = "random"


def magnitude_scores(ctx: SelectionContext, by: str = "outgoing") -> torch.Tensor:
    """Per-unit weight magnitude ``[m]`` (float64) for the criterion ``by`` (module docstring)."""
    check_choice("by", by, ("outgoing", "incoming", "both"))
    out2 = (ctx.z * ctx.z).sum(0)
    in2 = (ctx.incoming * ctx.incoming).sum(1).to(out2.device)
    return {"outgoing": out2, "incoming": in2, "both": out2 + in2}[by].sqrt()


def _magnitude_selector(by: str):
    def select(ctx: SelectionContext) -> list:
        score = magnitude_scores(ctx, by).cpu()
        # stable descending sort: ties go to the lower index
        order = sorted(range(ctx.hidden_size), key=lambda j: (-float(score[j]), j))
        return order[:ctx.keep]
    select.needs_data = False
    select.__name__ = "magnitude"
    return select


def random_prune(model, keep, data=None, *, seed: int = 0, reconstruct: bool = False, **kwargs):
    r"""Keep ``keep`` units drawn uniformly at random (``seed``); delete the others, or with
    ``reconstruct=True`` absorb the spectral reconstruction :math:`\hat A_J` (needs ``data``).

    ``kwargs`` as :func:`neuroq.prune.spectral_prune` (``lam``, ``theta``, ``z``, ``layer``,
    ``readout``, ``stats`` ...).  Outputs ``(pruned, report)``.

    Example::

        >>> pruned, report = random_prune(model, keep=0.5, seed=3)
    """
    method = "random+reconstruction" if reconstruct else "random"
    return prune_units(model, keep, data, select=_random_selector, reconstruct=reconstruct, seed=seed,
                       method=method, **kwargs)


def magnitude_prune(model, keep, data=None, *, by: str = "outgoing", reconstruct: bool = False, **kwargs):
    r"""Keep the ``keep`` units of largest weight magnitude (``by``, module docstring); delete the
    others, or absorb :math:`\hat A_J` with ``reconstruct=True`` (needs ``data``).

    Outputs ``(pruned, report)``.

    Example::

        >>> pruned, report = magnitude_prune(model, keep=64)
    """
    check_choice("by", by, ("outgoing", "incoming", "both"))
    method = "magnitude+reconstruction" if reconstruct else "magnitude"
    pruned, report = prune_units(model, keep, data, select=_magnitude_selector(by), reconstruct=reconstruct,
                                 method=method, **kwargs)
    report.extra["magnitude_by"] = by
    return pruned, report


def magnitude_reconstruct_prune(model, data, keep, *, by: str = "outgoing", **kwargs):
    r"""Magnitude-chosen units with the spectral reconstruction :math:`\hat A_J` absorbed in
    (selection and reconstruction told apart; module docstring).  Outputs ``(pruned, report)``.

    Example::

        >>> pruned, report = magnitude_reconstruct_prune(model, calib_loader, keep=0.5)
    """
    return magnitude_prune(model, keep, data, by=by, reconstruct=True, **kwargs)
