"""neuroq's policy on non-finite values (NaN, inf), in one place.

Always checked, where the cost is one pass over small or once-per-batch data:

* data entering a network: the encoders (:func:`neuroq.data.encode`), every batch a method feeds its model
  (:meth:`neuroq.training.methods.Method.inputs`) and ``Run.predict``;
* the running statistics of PSPN and Layer-Batch Norm: a training batch with non-finite statistics is an
  error and leaves them unchanged;
* the training loop: a non-finite loss stops the run before the optimiser step, the weights untouched;
* hyperparameters: every config field and constructor argument must be a finite number.

Not checked by default: the inputs and outputs of every neuron, quantizer, LMU, Lowpass or other neuroq layer
(a NaN there propagates as in torch, and a neuron compares it as never above threshold).  Checking each call
costs a pass over every activation, so it is a debug mode: ``neuroq.set_checks(True)`` (or the environment
variable ``NEUROQ_CHECKS=1`` at import) makes every neuroq module refuse non-finite tensors in its input and
its output, naming the module's class and whether the input or its own output held them.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

_HANDLES: list = []


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _ours(module: nn.Module) -> bool:
    return type(module).__module__.startswith("neuroq.")


def _check(module, what, obj):
    for t in _tensors(obj):
        if t.is_floating_point() or t.is_complex():
            bad = (~torch.isfinite(t)).sum()
            if bool(bad):
                raise ValueError(f"{type(module).__name__}: its {what} holds {int(bad)} NaN or infinite values (of "
                                 f"{t.numel()}, shape {tuple(t.shape)}) (neuroq.set_checks is on)")


def _pre(module, args):
    if _ours(module):
        _check(module, "input", args)


def _post(module, args, out):
    if _ours(module):
        _check(module, "output", out)


def set_checks(enabled: bool = True) -> bool:
    """Turn the debug checks of non-finite values in every neuroq module's input and output on or off (see the
    module docstring); returns whether they were on before."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be True or False, got {enabled!r}")
    was = bool(_HANDLES)
    if enabled and not was:
        _HANDLES.append(nn.modules.module.register_module_forward_pre_hook(_pre))
        _HANDLES.append(nn.modules.module.register_module_forward_hook(_post))
    elif not enabled:
        while _HANDLES:
            _HANDLES.pop().remove()
    return was


def checks_enabled() -> bool:
    """Whether :func:`set_checks` is on."""
    return bool(_HANDLES)


if os.environ.get("NEUROQ_CHECKS", "").strip() not in ("", "0"):
    set_checks(True)
