r"""Parameter record of the S²NN single-step surrogate (Suetake, Ikegawa, Saiin, Sawada, arXiv
2201.10879): the :math:`T_{ref}`-step soft-reset IF neuron whose BPTT gradient the surrogate reduces to
one step.  The reference math is :func:`neuroq.surrogate.s2nn_gradient`; the surrogate module
:class:`neuroq.surrogate.S2NN` holds one of these records.

Example::

    >>> from neuroq.functional.s2nn import S2NNParameters
    >>> S2NNParameters(t_ref=8, alpha=2.0).per_step
    'sigmoid'
"""
from __future__ import annotations

import dataclasses
from typing import Union

import torch.nn as nn

from .._validate import check_real
from ._records import check_record_int, param, set_field

#: per-step surrogate derivatives known in closed form (and on the fused kernels)
PER_STEP = ("sigmoid", "atan", "rect")


@dataclasses.dataclass(frozen=True, kw_only=True)
class S2NNParameters:
    r"""``t_ref`` (:math:`T_{ref} \ge 1`), ``alpha`` (:math:`\alpha > 0`), ``v_threshold``
    (:math:`V_{th} > 0`) and the per-step surrogate ``per_step`` (``'sigmoid'``, ``'atan'``,
    ``'rect'`` or a SpikingJelly surrogate module, whose own parameters then replace ``alpha``)."""

    t_ref: int = param(4, "steps T_ref of the multi-step IF neuron whose surrogate gradient is reduced (>= 1)")
    alpha: float = param(4.0, "sharpness alpha of the per-step surrogate (> 0)")
    v_threshold: float = param(1.0, "threshold V_th of the reduced IF neuron (> 0)")
    per_step: Union[str, nn.Module] = param("sigmoid", "per-step surrogate: sigmoid, atan or rect")

    def __post_init__(self):
        check_record_int(self, "t_ref", ge=1)
        set_field(self, "alpha", check_real("alpha", self.alpha, gt=0.0))
        set_field(self, "v_threshold", check_real("v_threshold", self.v_threshold, gt=0.0))
        if not isinstance(self.per_step, nn.Module) and self.per_step not in PER_STEP:
            raise ValueError(f"per_step must be one of {PER_STEP} or a SpikingJelly surrogate module, "
                             f"got {self.per_step!r}")
