r"""Integer export of a MaQD model (Sawada, Saiin, Suetake, arXiv 2403.14999).

:func:`export` turns a model of :class:`neuroq.layer.QuantConv2d` / :class:`~neuroq.layer.QuantLinear`
layers into integer weights plus per-output-channel scales (optionally folding a following
:class:`~neuroq.layer.LayerBatchNorm2d` into the scales and bias), and :func:`check_export` runs
the model with those integers and compares with the fake-quantized model.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import _sj
from .._validate import check_bool, check_real, check_samples
from ..layer.norm import LayerBatchNorm1d, LayerBatchNorm2d, inference_affine
from ..layer.quant import QuantAct, QuantConv2d, QuantLinear

__all__ = ["export", "integer_forward", "check_export"]

_RECORD_KEYS = ("kind", "int_weight", "scale", "bias")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _following_norms(model: nn.Module) -> dict:
    """``{id(quant layer): (norm name, norm)}`` for an LBN that directly follows a quant layer in a
    ``nn.Sequential`` (the layout the fold is defined for)."""
    qtypes = (QuantConv2d, QuantLinear)
    ntypes = (LayerBatchNorm1d, LayerBatchNorm2d)
    pairs = {}
    for pname, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        kids = list(parent.named_children())
        for (na, a), (nb, b) in zip(kids, kids[1:]):
            if isinstance(a, qtypes) and isinstance(b, ntypes):
                pairs[id(a)] = (f"{pname}.{nb}" if pname else nb, b)
    return pairs


@torch.no_grad()
def export(model: nn.Module, fold_norm: bool = True) -> "OrderedDict[str, dict]":
    r"""Integer weights and scales of every quantized layer of ``model`` (MaQD inference form).

    For each :class:`~neuroq.layer.QuantConv2d` / :class:`~neuroq.layer.QuantLinear` with
    ``w_states`` set, the layer computes :math:`y_o = s_o\,(W^{int} * x)_o + b_o` with

    * ``int_weight`` :math:`W^{int}` (``torch.int32``; at most :math:`M_w` distinct values),
    * ``scale`` :math:`s_o` per output channel (quantizer scale × optional gain),
    * ``bias`` :math:`b_o` (float, zeros when the layer has none).

    With ``fold_norm=True`` a :class:`~neuroq.layer.LayerBatchNorm1d`/``2d`` that directly follows the
    layer in an ``nn.Sequential`` is folded (eval statistics):
    :math:`s_o \leftarrow a_o s_o`, :math:`b_o \leftarrow a_o b_o + \beta'_o` with
    :math:`a_o = \gamma_o/\sqrt{\hat\sigma^2+\epsilon}`, :math:`\beta'_o = \beta_o - a_o\hat\mu`, so the
    normalization costs nothing at inference; its name is stored under ``folded_norm``.

    ``in_step`` is the step :math:`\Delta_a` of the :class:`~neuroq.layer.QuantAct` that feeds the layer
    (the nearest one before it in module registration order, i.e. forward order for ``nn.Sequential``
    models; ``None`` for a layer fed by real values): the layer's integer input is :math:`x/\Delta_a`
    and the integer form computes :math:`y_o = (s_o\Delta_a)\,(W^{int} * (x/\Delta_a))_o + b_o`.

    Returns ``OrderedDict[layer name -> dict(kind, states, int_weight, scale, bias, folded_norm, in_step,
    stride, padding, dilation, groups)]`` (plain tensors; save with ``torch.save``).
    """
    _check_model(model)
    check_bool("fold_norm", fold_norm)
    qtypes = (QuantConv2d, QuantLinear)

    norms = _following_norms(model) if fold_norm else {}
    out: "OrderedDict[str, dict]" = OrderedDict()
    in_step = None
    for name, m in model.named_modules():
        if isinstance(m, QuantAct):
            in_step = m.step  # None for a full-precision QuantAct
            continue
        if not isinstance(m, qtypes):
            continue
        if m.quantizer is None:
            in_step = None
            continue
        ints, scale = m.integer_weight()
        bias = m.bias.detach().clone() if m.bias is not None else torch.zeros(ints.shape[0], dtype=scale.dtype)
        folded = None
        if id(m) in norms:
            folded, norm = norms[id(m)]
            a, b = inference_affine(norm)
            scale = scale * a
            bias = a * bias + b
        rec = dict(kind="conv2d" if ints.dim() == 4 else "linear", states=m.quantizer.states,
                   int_weight=ints, scale=scale, bias=bias, folded_norm=folded, in_step=in_step)
        in_step = None
        if ints.dim() == 4:
            rec.update(stride=tuple(m.stride), padding=m.padding, dilation=tuple(m.dilation), groups=m.groups)
        out[name] = rec
    if not out:
        raise ValueError("export: model has no QuantConv2d/QuantLinear layer with w_states set")
    return out


def _integer_input(rec: dict, x: torch.Tensor):
    """``(x / in_step as float64, is_integer)``: the activation indices when ``x`` lies on the grid."""
    step = rec.get("in_step")
    z = x.double() / step if step else x.double()
    r = torch.round(z)
    ok = bool(((z - r).abs() <= 1e-6 * torch.clamp(r.abs(), min=1.0)).all())
    return (r if ok else z), ok


def _int_layer_forward(rec: dict, x: torch.Tensor):
    """``(scale * in_step) * (W_int * x_int) + bias`` accumulated in float64 (exact integer arithmetic for
    integer operands below 2**53), returned in ``x``'s dtype, plus whether ``x_int`` was integer."""
    xd, is_int = _integer_input(rec, x)
    w = rec["int_weight"].to(torch.float64)
    if rec["kind"] == "conv2d":
        acc = F.conv2d(xd, w, None, rec["stride"], rec["padding"], rec["dilation"], rec["groups"])
        shape = (1, -1, 1, 1)
    else:
        acc = F.linear(xd, w)
        shape = (1, -1) if acc.dim() == 2 else (-1,)
    scale = rec["scale"].double() * (rec.get("in_step") or 1.0)
    y = acc * scale.view(shape) + rec["bias"].double().view(shape)
    return y.to(x.dtype), is_int


@torch.no_grad()
def integer_forward(model: nn.Module, exported: dict, x: torch.Tensor):
    """Run ``model`` on ``x`` with every exported layer replaced by its integer form (and every
    folded norm by the identity).  Returns ``(output, integer_inputs)`` where ``integer_inputs[name]``
    says whether that layer's input, divided by ``in_step``, was integer-valued (then its accumulation is
    pure integer arithmetic on the activation indices; the first layer of a directly encoded image gets
    real pixels)."""
    _check_model(model)
    if not isinstance(exported, dict):
        raise TypeError(f"exported must be the dict returned by neuroq.quant.export, got {type(exported).__name__}")
    if not exported:
        raise ValueError("exported is empty: it must hold at least one layer (the dict returned by "
                         "neuroq.quant.export(model))")
    for name, rec in exported.items():
        if not isinstance(rec, dict) or any(k not in rec for k in _RECORD_KEYS):
            raise ValueError(f"exported[{name!r}] must be a layer record of neuroq.quant.export (a dict with "
                             f"{', '.join(_RECORD_KEYS)}), got "
                             + (f"keys {sorted(rec)}" if isinstance(rec, dict) else type(rec).__name__))
    check_samples("x", x)
    mods = dict(model.named_modules())
    missing = [k for k in exported if k not in mods]
    missing += [rec["folded_norm"] for rec in exported.values()
                if rec.get("folded_norm") and rec["folded_norm"] not in mods]
    if missing:
        raise ValueError(f"exported layers {missing} are not in the model")
    integer_inputs = OrderedDict()
    handles = []

    def layer_hook(name):
        def hook(m, args, out):
            y, integer_inputs[name] = _int_layer_forward(exported[name], args[0])
            return y
        return hook

    def identity_hook(m, args, out):
        return args[0]

    try:
        for name, rec in exported.items():
            handles.append(mods[name].register_forward_hook(layer_hook(name)))
            if rec.get("folded_norm"):
                handles.append(mods[rec["folded_norm"]].register_forward_hook(identity_hook))
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, integer_inputs


@torch.no_grad()
def check_export(model: nn.Module, x: torch.Tensor, fold_norm: bool = True, atol: float = 1e-4,
                 rtol: float = 1e-4) -> dict:
    """Compare the fake-quantized ``model(x)`` (eval mode) with :func:`integer_forward` of
    :func:`export`'s integers.  Returns ``dict(ok, max_abs_diff, argmax_agreement, integer_inputs,
    layers)``; ``ok`` when ``allclose(atol, rtol)``."""
    _check_model(model)
    check_samples("x", x)
    check_bool("fold_norm", fold_norm)
    atol = check_real("atol", atol, ge=0)
    rtol = check_real("rtol", rtol, ge=0)
    was_training = model.training
    model.eval()
    try:
        _sj.reset_net(model)
        ref = model(x)
        ex = export(model, fold_norm=fold_norm)
        _sj.reset_net(model)
        got, ints = integer_forward(model, ex, x)
    finally:
        model.train(was_training)
    diff = float((ref - got).abs().max()) if ref.numel() else 0.0
    agree = None
    if ref.dim() >= 2:
        agree = float((ref.argmax(-1) == got.argmax(-1)).double().mean())
    return dict(ok=bool(torch.allclose(ref, got, atol=atol, rtol=rtol)), max_abs_diff=diff,
                argmax_agreement=agree, integer_inputs=dict(ints), layers=list(ex))
