r"""Fold an eval-mode normalization into the layer before it (zero cost at inference).

Every normalization neuroq folds has, in eval mode, a per-channel affine map
:math:`y_c = a_c x_c + b_c` (:func:`inference_affine`): PSPN (:math:`a = \gamma/\sqrt{m_2+\epsilon}`,
:math:`b = \beta` or none), Layer-Batch Norm (:math:`a = \gamma/\sqrt{\hat\sigma^2+\epsilon}`,
:math:`b = \beta - a\hat\mu`) and ``nn.BatchNorm``.  With the preceding layer's effective weight
:math:`W` (the fake-quantized weight of :class:`~neuroq.layer.QuantConv2d`, the standardized weight
of a weight-standardized conv) and bias :math:`c`,

.. math:: W'_o = a_o W_o,\qquad c'_o = a_o c_o + b_o,

computed by :func:`folded_parameters`, and :func:`fold` returns a plain ``nn.Conv1d/2d/3d`` / ``nn.Linear``
with ``folded(x) == norm(layer(x))`` in eval mode (up to float rounding; no bias when neither the layer
nor the norm has one); :func:`neuroq.nir.export` writes the same parameters into NIR.  For integer
deployment of MaQD models use :func:`neuroq.quant.export`, which folds the same map into per-channel
scales and keeps the weights integer.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.nn as nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def is_foldable(m: nn.Module) -> bool:
    """True for the normalizations :func:`inference_affine` reads (``nn.BatchNorm*`` and every module with
    an ``inference_affine`` method: PSPN, Layer-Batch Norm)."""
    return isinstance(m, nn.modules.batchnorm._BatchNorm) or callable(getattr(m, "inference_affine", None))


def inference_affine(norm: nn.Module, dtype: Optional[torch.dtype] = None
                     ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(a, b)`` of ``norm``'s eval-mode map :math:`y = a_c x + b_c` (``b`` may be ``None``).

    ``dtype``: compute the map in that dtype (from a converted copy of ``norm``'s parameters and
    statistics; ``norm`` is not modified) instead of ``norm``'s own."""
    if dtype is not None:
        norm = copy.deepcopy(norm).to(dtype)
    if hasattr(norm, "inference_affine"):
        return norm.inference_affine()
    if isinstance(norm, nn.modules.batchnorm._BatchNorm):
        if norm.running_mean is None:
            raise ValueError("fold: the BatchNorm tracks no running statistics")
        inv = torch.rsqrt(norm.running_var + norm.eps)
        a = norm.weight * inv if norm.affine else inv
        b = (norm.bias if norm.affine else torch.zeros_like(a)) - a * norm.running_mean
        return a.detach(), b.detach()
    raise TypeError(f"norm must be a PSPNorm, LayerBatchNorm or nn.BatchNorm, got {type(norm).__name__}")


def effective_weight(layer: nn.Module) -> torch.Tensor:
    """The weight ``layer`` actually applies: quantized (MaQD), standardized (WS conv) or its own."""
    for name in ("quantized_weight", "get_weight"):
        fn = getattr(layer, name, None)
        if callable(fn):
            return fn()
    return layer.weight


def _out_channels(layer: nn.Module) -> int:
    if isinstance(layer, _CONVS):
        return layer.out_channels
    if isinstance(layer, nn.Linear):
        return layer.out_features
    raise TypeError(f"layer must be an nn.Conv1d/2d/3d or nn.Linear (or their Quant/WS versions), "
                    f"got {type(layer).__name__}")


@torch.no_grad()
def folded_parameters(layer: nn.Module, norm: nn.Module, dtype: Optional[torch.dtype] = None
                      ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    r"""``(W', c')`` of ``norm(layer(x))`` in eval mode: :math:`W'_o = a_o W_o`, :math:`c'_o = a_o c_o + b_o`
    (module docstring), with :math:`W` the :func:`effective_weight`; ``c'`` is ``None`` when neither
    ``layer`` nor ``norm`` has a bias.  Computed in ``dtype`` (default: the weight's own dtype).

    :func:`fold` builds its layer from these, and :func:`neuroq.nir.export` writes them (in float64, then
    rounded once to float32)."""
    out_ch = _out_channels(layer)
    a, b = inference_affine(norm, dtype)
    if a.numel() != out_ch:
        raise ValueError(f"fold: the layer has {out_ch} output channels but {type(norm).__name__} "
                         f"normalizes {a.numel()}")
    w = effective_weight(layer).detach()
    if dtype is not None:
        w = w.to(dtype)
    a = a.to(device=w.device, dtype=w.dtype)
    c = layer.bias.detach().to(w.dtype) if layer.bias is not None else None
    bias = None
    if c is not None or b is not None:
        bias = torch.zeros_like(a) if c is None else a * c
        if b is not None:
            bias = bias + b.to(device=w.device, dtype=w.dtype)
    return w * a.view(-1, *([1] * (w.dim() - 1))), bias


@torch.no_grad()
def fold(layer: nn.Module, norm: nn.Module) -> nn.Module:
    """A new plain layer equal to ``norm(layer(x))`` in eval mode (see the module docstring);
    ``layer`` and ``norm`` are not modified."""
    w, bias = folded_parameters(layer, norm)
    if isinstance(layer, _CONVS):
        cls = next(k for k in _CONVS if isinstance(layer, k))
        out = cls(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, layer.groups, bias is not None, layer.padding_mode)
    else:
        out = nn.Linear(layer.in_features, layer.out_features, bias is not None)
    out = out.to(device=w.device, dtype=w.dtype)
    out.weight.copy_(w)
    if bias is not None:
        out.bias.copy_(bias)
    return out
