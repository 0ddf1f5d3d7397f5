r"""Layer-Batch Normalization (LBN) of MaQD (Sawada, Saiin, Suetake, arXiv 2403.14999).

The abstract states only that LBN is "independent of the mini-batch size" and "does not require any
additional computation cost during inference"; its exact definition could not be read.
neuroq implements two readings that fit the abstract (reconstructions, not confirmed by the paper),
default (a):

**(a) ``reading='a'`` (default)** — one mean and variance per *layer*, over the whole mini-batch
tensor :math:`(N, C, H, W)` in training:

.. math::
    \mu = \operatorname{mean}_{n,c,h,w} x,\qquad \sigma^2 = \operatorname{var}_{n,c,h,w} x,\qquad
    y_{n,c,h,w} = \gamma_c\,\frac{x_{n,c,h,w}-\mu}{\sqrt{\sigma^2+\epsilon}} + \beta_c .

**(b) ``reading='b'``** — per-sample layer statistics over :math:`(C, H, W)` in training
(:math:`\mu_n, \sigma^2_n`, as LayerNorm), whose batch averages feed the running estimates.

In both, the running estimates are updated as in BatchNorm,
:math:`\hat\mu \leftarrow (1-m)\hat\mu + m\,\bar\mu`, :math:`\hat\sigma^2 \leftarrow (1-m)\hat\sigma^2 + m\,\bar\sigma^2_{unbiased}`,
and **evaluation** uses them: :math:`y = a_c x + b_c` with :math:`a_c = \gamma_c/\sqrt{\hat\sigma^2+\epsilon}`,
:math:`b_c = \beta_c - a_c\hat\mu` — a per-channel affine map that does not look at the other samples
(so the output of a sample does not depend on the batch) and that folds into the preceding
convolution or linear layer (:func:`neuroq.layer.norm.fold`), costing nothing at inference.

Compared with BatchNorm, each statistic in training pools :math:`C` times more elements (reading
(a)), or does not use the batch at all (reading (b)), so small mini-batches give stable statistics.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..._validate import check_choice
from .running import RunningNorm

READINGS = ("a", "b")


class _LayerBatchNorm(RunningNorm):
    _expected_dims: tuple = ()
    _layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 reading: str = "a"):
        super().__init__(num_features, eps, momentum, affine)
        self.reading = check_choice("reading", reading, READINGS)
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("running_var", torch.ones(()))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def _check(self, x):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in self._expected_dims:
            raise ValueError(f"{type(self).__name__} expects input {self._layout}, got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}(num_features={self.num_features}) got {x.shape[1]} "
                             f"channels (input shape {tuple(x.shape)})")

    def _channel_view(self, v, x):
        return v.view(1, -1, *([1] * (x.dim() - 2)))

    def inference_affine(self) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Eval-mode map :math:`y = a\,x + b` per channel: :math:`a = \gamma/\sqrt{\hat\sigma^2+\epsilon}`,
        :math:`b = \beta - a\hat\mu` (shape ``[C]`` each)."""
        inv = torch.rsqrt(self.running_var + self.eps)
        g = self.weight if self.affine else torch.ones(self.num_features, dtype=inv.dtype, device=inv.device)
        beta = self.bias if self.affine else torch.zeros_like(g)
        a = g * inv
        return a, beta - a * self.running_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        if x.numel() == 0:  # an empty batch: nothing to normalize, and no statistic to update
            return x
        if not self.training:
            a, b = self.inference_affine()
            return x * self._channel_view(a, x) + self._channel_view(b, x)
        if self.reading == "a":
            mean = x.mean()
            var = x.var(unbiased=False)
            n = x.numel()
            y = (x - mean) * torch.rsqrt(var + self.eps)
            batch_mean, batch_var = mean, var * (n / max(n - 1, 1))
        else:
            dims = tuple(range(1, x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            var = x.var(dim=dims, unbiased=False, keepdim=True)
            n = x[0].numel()
            y = (x - mean) * torch.rsqrt(var + self.eps)
            batch_mean, batch_var = mean.mean(), (var * (n / max(n - 1, 1))).mean()
        with torch.no_grad():
            m = self._count_batch(batch_mean, batch_var)
            self.running_mean.mul_(1 - m).add_(m * batch_mean.detach())
            self.running_var.mul_(1 - m).add_(m * batch_var.detach())
        if self.affine:
            y = y * self._channel_view(self.weight, x) + self._channel_view(self.bias, x)
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"reading={self.reading!r}")


class LayerBatchNorm2d(_LayerBatchNorm):
    r"""Layer-Batch Normalization for ``[N, C, H, W]`` (MaQD, arXiv 2403.14999); see the module docstring.

    Args:
        num_features: channels :math:`C` (per-channel affine :math:`\gamma_c, \beta_c`).
        eps: :math:`\epsilon`.
        momentum: running-estimate momentum :math:`m \in (0, 1]` (``None``: cumulative average).
        affine: learn :math:`\gamma, \beta`.
        reading: ``'a'`` (default; statistics over :math:`(N,C,H,W)`) or ``'b'`` (per sample over
            :math:`(C,H,W)`, batch-averaged running estimates).
    """

    _expected_dims = (4,)
    _layout = "[N, C, H, W]"


class LayerBatchNorm1d(_LayerBatchNorm):
    r"""Layer-Batch Normalization for ``[N, C]`` or ``[N, C, L]`` (MaQD, arXiv 2403.14999); reading
    (a) pools :math:`(N, C[, L])`, reading (b) :math:`(C[, L])` per sample.  Arguments as
    :class:`LayerBatchNorm2d`."""

    _expected_dims = (2, 3)
    _layout = "[N, C] or [N, C, L]"
