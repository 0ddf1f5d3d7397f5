"""Containers for step modes: fold the time axis into the batch, set step modes, build neurons.

:class:`SeqOp` is neuroq's one way of running stateless ops on multi-step data: in step mode ``'m'``
its input ``[T, N, ...]`` is flattened to ``[T·N, ...]``, run through the ops and reshaped back (what
SpikingJelly's ``SeqToANNContainer`` does, whose modules it accepts too), in step mode ``'s'`` the
ops see ``[N, ...]`` directly -- so the same network can be stepped one time step at a time (SAF-E,
OTTT) or run over all steps at once.  BatchNorm inside a ``SeqOp`` in ``'m'`` mode pools its
statistics over T and N.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_choice


class SeqOp(nn.Sequential, _sj.base.StepModule):
    r"""Stateless ops applied per time step: ``'m'``: ``[T, N, ...] -> ops([T·N, ...]) -> [T, N, ...]``;
    ``'s'``: ``[N, ...] -> ops([N, ...])``.

    Example::

        >>> import torch, torch.nn as nn
        >>> op = SeqOp(nn.Conv2d(1, 4, 3, padding=1), nn.AvgPool2d(2))   # step_mode='m'
        >>> op(torch.rand(6, 2, 1, 8, 8)).shape
        torch.Size([6, 2, 4, 4, 4])

    Args:
        *ops: modules applied in order (like ``nn.Sequential``).
        step_mode: ``'m'`` (default, input ``[T, N, ...]``) or ``'s'`` (input ``[N, ...]``).
    """

    def __init__(self, *ops: nn.Module, step_mode: str = "m"):
        for op in ops:
            if not isinstance(op, nn.Module):
                raise TypeError(f"SeqOp takes torch.nn.Module ops, got {type(op).__name__}")
        super().__init__(*ops)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the ops on ``x``: ``[N, ...]`` as is in ``'s'`` mode; ``[T, N, ...]`` folded to ``[T·N, ...]`` and
        unfolded back in ``'m'`` mode."""
        if self.step_mode == "s":
            return super().forward(x)
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise ValueError(f"SeqOp in step_mode='m' expects [T, N, ...], got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        T, N = x.shape[:2]
        y = super().forward(x.flatten(0, 1))
        return y.reshape(T, N, *y.shape[1:])

    def extra_repr(self):
        """The step mode, shown in the module's ``repr``."""
        return f"step_mode={self.step_mode}"


def set_step_mode(model: nn.Module, step_mode: str) -> nn.Module:
    """Set ``step_mode`` of every step-aware module of ``model`` (neurons, :class:`SeqOp`, SAF layers)."""
    check_choice("step_mode", step_mode, ("s", "m"))
    for m in model.modules():
        if isinstance(m, (_sj.MemoryModule, SeqOp)) and hasattr(m, "step_mode"):
            m.step_mode = step_mode
    return model


def make_neuron(factory: Optional[Callable[[], nn.Module]], step_mode: str = "m",
                default: Optional[Callable[[], nn.Module]] = None) -> nn.Module:
    """Call a neuron ``factory`` (``default`` when ``None``) and put the neuron in ``step_mode``."""
    factory = factory or default
    if factory is None or not callable(factory):
        raise TypeError(f"neuron must be a factory (a callable returning an nn.Module), got {factory!r}")
    m = factory()
    if not isinstance(m, nn.Module):
        raise TypeError(f"neuron must be a factory returning an nn.Module, got {type(m).__name__}")
    if hasattr(m, "step_mode"):
        m.step_mode = step_mode
    return m


def leaves(module: nn.Module, prefix: str = "", flat: bool = False):
    """Yield ``(name, module, flat)`` for the ops of a (nested) sequential network in execution order.

    ``nn.Sequential`` containers (:class:`SeqOp` and SpikingJelly's ``SeqToANNContainer`` included) are
    walked into; ``flat`` is True for ops inside a time-folding container (they see ``[T·N, ...]`` in
    multi-step mode)."""
    if isinstance(module, nn.Sequential):
        inner = flat or isinstance(module, SeqOp) or isinstance(module, _sj.SeqToANNContainer)
        for name, child in module.named_children():
            yield from leaves(child, f"{prefix}.{name}" if prefix else name, inner)
    else:
        yield prefix, module, flat


def run_steps(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Call a single-step network once per step of ``x_seq [T, N, ...]``; returns ``[T, N, ...]``."""
    outs = []
    for x in x_seq.unbind(0):
        o = model(x)
        outs.append(o[0] if isinstance(o, (list, tuple)) else o)
    return torch.stack(outs)
