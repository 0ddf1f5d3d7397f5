r"""Recurrent classifiers for sequential MNIST: the IRNN and a spiking RNN (pruning experiments).

* :func:`~neuroq.data.image_to_sequence` (defined in :mod:`neuroq.data.sequences`, used here): an
  image batch as a sequence, rows (sequential MNIST by rows: :math:`T = 28` steps of 28 pixels) or
  pixels (pixel MNIST: :math:`T = 784` steps of one pixel, optionally permuted: psMNIST).
* :class:`IRNNClassifier`: ``nn.RNN`` with ReLU and identity-initialised recurrent weights
  (Le, Jaitly, Hinton 2015, "A simple way to initialize recurrent networks of rectified linear
  units", arXiv 1504.00941), the model of Furuya et al.'s Pixel-MNIST experiment.
* :class:`SpikingRNNClassifier`: :class:`neuroq.layer.recurrent.SpikingRNN` (LIF units, recurrent
  spikes) with a linear readout of the time-mean spike counts.

Both return logits ``[N, classes]`` (the training loop uses a 2-D output as is) and name their
parts ``rnn`` and ``readout``, which :func:`neuroq.prune.spectral_prune` finds on its own.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .._validate import check_choice, check_int, check_real, check_step_input
from ..data.sequences import image_to_sequence
from ..layer.recurrent import SpikingRNN


class _SequenceClassifier(nn.Module):
    def __init__(self, num_classes: int, readout_from: str, sequence: Optional[str]):
        super().__init__()
        check_int("num_classes", num_classes, ge=2)
        self.readout_from = check_choice("readout_from", readout_from, ("last", "mean"))
        self.sequence = None if sequence is None else check_choice("sequence", sequence, ("rows", "pixels"))
        self.register_buffer("permutation", None)

    def _as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        if self.sequence is not None:
            return image_to_sequence(x, self.sequence, self.permutation)
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise ValueError(f"{type(self).__name__} expects a sequence [T, N, features] (or images with "
                             f"sequence='rows'/'pixels'), got {getattr(x, 'shape', type(x).__name__)}")
        check_step_input(type(self).__name__, x, "m")
        want = getattr(self, "input_size", None) or getattr(getattr(self, "rnn", None), "input_size", None)
        if want is not None and x.shape[-1] != want:
            raise ValueError(f"{type(self).__name__} was built for {want} features per step, got a sequence of shape "
                             f"{tuple(x.shape)}")
        return x

    def _read(self, h_seq: torch.Tensor) -> torch.Tensor:
        feat = h_seq[-1] if self.readout_from == "last" else h_seq.mean(0)
        return self.readout(feat)


class IRNNClassifier(_SequenceClassifier):
    r"""IRNN: ReLU RNN with identity recurrent initialisation (Le et al. 2015) and a linear readout.

    .. math::
        h_t = \mathrm{ReLU}(W_{hh} h_{t-1} + W_{ih} x_t + b_{ih} + b_{hh}),\quad h_0 = 0,\qquad
        y = W_o\, r(h_{1..T}) + b_o

    with :math:`W_{hh} = I` (times ``recurrent_scale``), biases 0 and
    :math:`W_{ih} \sim \mathcal N(0, \text{input\_std}^2)` at initialisation (Le et al. use
    0.001; ``input_std=None`` keeps PyTorch's default), and :math:`r` = the last state
    (``readout_from='last'``, default, as in Le et al.) or the time mean.

    Args:
        input_size: features per step (28 for rows, 1 for pixels).
        hidden_size: recurrent units :math:`m`.
        num_classes: outputs.
        num_layers: stacked ``nn.RNN`` layers (all identity-initialised).
        readout_from: ``'last'`` or ``'mean'``.
        sequence: ``None`` (input is a sequence ``[T, N, input_size]``), or ``'rows'`` /
            ``'pixels'`` (input is images ``[N, C, H, W]``, turned into a sequence by
            :func:`image_to_sequence`; a ``permutation`` buffer may be set for psMNIST).

    Inputs / Outputs: ``[T, N, input_size]`` (or images) -> logits ``[N, num_classes]``.

    Example::

        >>> model = IRNNClassifier(28, 128, 10, sequence="rows")
        >>> model(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4, 10])
    """

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, num_layers: int = 1,
                 readout_from: str = "last", sequence: Optional[str] = None, input_std: Optional[float] = 1e-3,
                 recurrent_scale: float = 1.0):
        super().__init__(num_classes, readout_from, sequence)
        check_int("input_size", input_size, ge=1)
        check_int("hidden_size", hidden_size, ge=1)
        check_int("num_layers", num_layers, ge=1)
        check_real("input_std", input_std, gt=0, allow_none=True)
        check_real("recurrent_scale", recurrent_scale)
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="relu")
        with torch.no_grad():
            for k in range(num_layers):
                getattr(self.rnn, f"weight_hh_l{k}").copy_(torch.eye(hidden_size) * recurrent_scale)
                getattr(self.rnn, f"bias_ih_l{k}").zero_()
                getattr(self.rnn, f"bias_hh_l{k}").zero_()
                if input_std is not None:
                    getattr(self.rnn, f"weight_ih_l{k}").normal_(0.0, input_std)
        self.readout = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of a sequence ``[T, N, input_size]`` (or images, with ``sequence``)."""
        h_seq, _ = self.rnn(self._as_sequence(x))
        return self._read(h_seq)


class SpikingRNNClassifier(_SequenceClassifier):
    r"""Recurrent spiking classifier: :class:`~neuroq.layer.recurrent.SpikingRNN` and a linear
    readout of the spikes.

    .. math::
        s_{1..T} = \mathrm{SpikingRNN}(x_{1..T}),\qquad y = W_o\,\tfrac{1}{T}\textstyle\sum_t s_t + b_o

    (``readout_from='mean'``, default: the firing rates; ``'last'`` reads :math:`s_T`).  The
    readout is linear in the spikes, so spectral pruning absorbs into it exactly as for the RNN.
    Reset the state between batches (``functional.reset_net``; neuroq's training loop does).

    Args:
        input_size, hidden_size, num_classes, readout_from, sequence: as :class:`IRNNClassifier`.
        **lif: LIF arguments of :class:`~neuroq.layer.recurrent.SpikingRNN` (``tau``,
            ``v_threshold``, ``v_reset``, ``surrogate_function``, ``detach_reset``, ``decay_input``).

    Inputs / Outputs: ``[T, N, input_size]`` (or images) -> logits ``[N, num_classes]``.

    Example::

        >>> model = SpikingRNNClassifier(28, 128, 10, sequence="rows", tau=2.0)
        >>> model(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4, 10])
    """

    def __init__(self, input_size: int, hidden_size: int, num_classes: int, readout_from: str = "mean",
                 sequence: Optional[str] = None, **lif):
        super().__init__(num_classes, readout_from, sequence)
        self.rnn = SpikingRNN(input_size, hidden_size, step_mode="m", **lif)
        self.readout = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of a sequence ``[T, N, input_size]`` (or images, with ``sequence``); the
        spiking state carries over between calls until it is reset."""
        return self._read(self.rnn(self._as_sequence(x)))
