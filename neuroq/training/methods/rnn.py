r"""Recurrent sequence classifiers trained with BPTT: ``irnn`` (the IRNN) and ``srnn`` (a recurrent
spiking network), the networks of the spectral-pruning experiments (Furuya et al., AISTATS 2022).

* ``irnn``: :class:`neuroq.models.rnn.IRNNClassifier`, a ReLU ``nn.RNN`` with identity-initialised
  recurrent weights (Le, Jaitly, Hinton 2015, arXiv 1504.00941),
  :math:`h_t = \mathrm{ReLU}(W_{hh} h_{t-1} + W_{ih} x_t + b)`, :math:`W_{hh}(0) = I`;
* ``srnn``: :class:`neuroq.models.rnn.SpikingRNNClassifier`, LIF units whose input current includes
  their own previous spikes, :math:`I_t = W_x x_t + W_h s_{t-1} + b`, surrogate-gradient BPTT.

Both take sequence data (``TaskData.kind == 'sequence'``: ``smnist``, ``psmnist``, ``smnist-rows``,
:func:`neuroq.data.sequential_mnist`); a batch ``[N, T, F]`` enters the model time-first
``[T, N, F]`` and the model returns logits ``[N, classes]`` read from the last hidden state or the
time mean (``readout``).  Image data ``[N, C, H, W]`` is read row by row: ``H`` steps of ``C W``
pixels (sequential MNIST by rows; ``neuroq train --method irnn --dataset mnist`` works).

**Gradient clipping** (``grad_clip``, both methods).  Backpropagation through a long ReLU
recurrence with :math:`W_{hh} \approx I` produces occasional very large gradients, so ``irnn``
rescales the gradient before every optimizer step to a global norm of at most ``grad_clip``
(Pascanu, Mikolov, Bengio 2013):
:math:`g \leftarrow g \cdot \min(1, c / \|g\|_2)`.  It is installed as a step pre-hook of the
optimizer that :meth:`Method.make_optimizer` returns (:func:`clip_gradients_on_step`), so the
loop's train step, mixed precision (the scaler unscales before the step) and resuming are
unchanged; ``grad_clip=0`` turns it off.

Example::

    from neuroq.data import sequential_mnist
    from neuroq.training import TrainConfig, fit, get

    data = sequential_mnist("DATA/mnist", order="pixels", pool=2)   # 196 steps of one pixel
    model, metrics = fit(get("irnn", hidden=(128,)), data, TrainConfig(dataset="smnist", epochs=5, lr=1e-3))

CLI: ``neuroq train --method irnn --dataset smnist-rows --hidden 128 --grad-clip 1``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from ..._validate import check_real, check_samples
from ...data import image_to_sequence
from ...models.rnn import IRNNClassifier, SpikingRNNClassifier
from ..config import nonneg_float, option, positive_float, positive_int
from .base import Context, Method, MethodConfig, register

READOUTS = ("last", "mean")


def clip_gradients_on_step(optimizer: torch.optim.Optimizer, max_norm: float) -> torch.optim.Optimizer:
    r"""Clip the global gradient norm of ``optimizer``'s parameters to ``max_norm`` before each step.

    :math:`g \leftarrow g\,\min(1, c/\|g\|_2)` over all parameters together
    (``torch.nn.utils.clip_grad_norm_``), run by an optimizer step pre-hook, so any loop that calls
    ``optimizer.step()`` (or ``GradScaler.step``, which unscales first) clips.  ``max_norm = 0``
    leaves the optimizer unchanged.  Returns ``optimizer``.

    Example::

        opt = clip_gradients_on_step(torch.optim.Adam(model.parameters(), 1e-3), max_norm=1.0)
    """
    c = check_real("max_norm", max_norm, ge=0)
    if c == 0:
        return optimizer

    def hook(opt, args, kwargs):
        params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
        if params:
            torch.nn.utils.clip_grad_norm_(params, c)

    optimizer.register_step_pre_hook(hook)
    return optimizer


@dataclass
class RNNConfig(MethodConfig):
    """Options shared by the recurrent sequence classifiers."""

    hidden: tuple = option((128,), "recurrent units (irnn: one width per stacked nn.RNN layer, all equal; "
                           "srnn: one width)", nargs="+", parse=positive_int("--hidden"))
    readout: str = option("last", "what the linear readout reads: the last hidden step, or the time mean of the "
                          "hidden states (the firing rates of a spiking layer)", choices=READOUTS)
    grad_clip: float = option(0.0, "clip the global gradient norm to this value before every optimizer step "
                              "(0: off)", parse=nonneg_float("--grad-clip"))

    def __post_init__(self):
        if isinstance(self.hidden, int) and not isinstance(self.hidden, bool):
            self.hidden = (self.hidden,)
        if not isinstance(self.hidden, (tuple, list)):
            raise ValueError(f"hidden must be a width or a sequence of widths, got {self.hidden!r}")
        self.hidden = tuple(self.hidden)
        if not self.hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be positive integer widths, got {self.hidden!r}")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        check_real("grad_clip", self.grad_clip, ge=0)


@dataclass
class IRNNConfig(RNNConfig):
    """Options of ``--method irnn``: :class:`RNNConfig` (gradient clipping on, at 1, by default) plus the
    initial input-weight std and recurrent scale; every stacked layer has the same width."""

    grad_clip: float = option(1.0, "clip the global gradient norm to this value before every optimizer step "
                              "(0: off)", parse=nonneg_float("--grad-clip"))
    input_std: Optional[float] = option(1e-3, "std of the IRNN's initial input weights (Le et al.: 0.001)",
                                        parse=positive_float("--input-std"))
    recurrent_scale: float = option(1.0, "initial recurrent weights W_hh = scale * I (the IRNN: 1)")

    def __post_init__(self):
        super().__post_init__()
        if len(set(self.hidden)) != 1:
            raise ValueError(f"irnn: nn.RNN has one hidden size for all its layers; got hidden={self.hidden!r}")
        check_real("input_std", self.input_std, gt=0, allow_none=True)
        check_real("recurrent_scale", self.recurrent_scale)


@dataclass
class SRNNConfig(RNNConfig):
    """Options of ``--method srnn``: :class:`RNNConfig` (time-mean readout by default) plus the LIF units'
    ``tau`` and ``v_threshold``; one recurrent layer."""

    readout: str = option("mean", "what the linear readout reads: the last hidden step, or the time mean of the "
                          "hidden states (the firing rates of a spiking layer)", choices=READOUTS)
    tau: float = option(2.0, "membrane time constant tau (> 1)")
    v_threshold: float = option(1.0, "firing threshold V_th")

    def __post_init__(self):
        super().__post_init__()
        if len(self.hidden) != 1:
            raise ValueError(f"srnn: the spiking RNN has one recurrent layer; give one width, got hidden={self.hidden!r}")
        check_real("tau", self.tau, gt=1.0)
        check_real("v_threshold", self.v_threshold, gt=0)


class _SequenceMethod(Method):
    #: sequences ``[T, F]``; images ``[C, H, W]`` are read row by row (``T = H`` steps of ``C W`` pixels)
    kinds = ("sequence", "image")

    @staticmethod
    def _input_size(data) -> int:
        shape = tuple(data.in_shape)
        if data.kind == "image" and len(shape) == 3:
            return shape[0] * shape[2]
        if data.kind == "sequence" and len(shape) == 2:
            return shape[1]
        raise ValueError(f"method needs sequence samples [T, F] or images [C, H, W]; dataset {data.name} has "
                         f"{data.kind} samples {shape}")

    def inputs(self, x: torch.Tensor, ctx: Optional[Context] = None) -> torch.Tensor:
        """Sequences ``[N, T, F]`` -> ``[T, N, F]``; images ``[N, C, H, W]`` -> their rows ``[H, N, C W]``
        (:func:`neuroq.data.image_to_sequence`, sequential MNIST by rows)."""
        if self.layout.kind == "image":
            check_samples("x", x)
            return image_to_sequence(x, "rows")
        return super().inputs(x, ctx)

    def make_optimizer(self, model: nn.Module, lr: float) -> torch.optim.Optimizer:
        """Adam at ``lr`` with the gradient clipped to ``grad_clip`` before every step
        (:func:`clip_gradients_on_step`)."""
        return clip_gradients_on_step(super().make_optimizer(model, lr), self.config.grad_clip)


@register("irnn")
class IRNNMethod(_SequenceMethod):
    """``--method irnn``: the IRNN sequence classifier, trained by BPTT with gradient clipping."""

    help = "IRNN (ReLU RNN, identity-initialised recurrence; Le et al. 2015) on sequences, BPTT"
    Config = IRNNConfig

    def build_model(self, data) -> nn.Module:
        """An :class:`~neuroq.models.rnn.IRNNClassifier` sized for ``data``."""
        c = self.config
        return IRNNClassifier(self._input_size(data), c.hidden[0], data.num_classes, num_layers=len(c.hidden),
                              readout_from=c.readout, input_std=c.input_std, recurrent_scale=c.recurrent_scale)


@register("srnn")
class SpikingRNNMethod(_SequenceMethod):
    """``--method srnn``: the recurrent LIF sequence classifier, trained by surrogate-gradient BPTT."""

    help = "recurrent spiking network (LIF units fed back their spikes) on sequences, surrogate BPTT"
    Config = SRNNConfig

    def build_model(self, data) -> nn.Module:
        """A :class:`~neuroq.models.rnn.SpikingRNNClassifier` sized for ``data`` (reset detached)."""
        c = self.config
        return SpikingRNNClassifier(self._input_size(data), c.hidden[0], data.num_classes, readout_from=c.readout,
                                    tau=c.tau, v_threshold=c.v_threshold, detach_reset=True)
