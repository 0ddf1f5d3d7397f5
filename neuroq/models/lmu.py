r"""psMNIST classifiers built on the Legendre Memory Unit: the LMU and the hybrid-spiking LMU.

Defaults follow the psMNIST example of keras-lmu (Applied Brain Research's Keras implementation of the
LMU): one memory channel of order 256 over
a window of θ = 784 steps (the whole sequence), encoder initialised to ones, the input also fed to
the hidden cell, a 212-unit tanh ``SimpleRNNCell``-like hidden cell, and a linear readout of the last
hidden state.  The hybrid variant (Voelker, Rasmussen, Eliasmith, arXiv 2002.03553) puts the hidden
activation, and optionally :math:`u` and :math:`m`, through :class:`neuroq.neuron.SpikingActivation`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from .._validate import check_bool, check_int, check_real
from ..layer.lmu import LMU
from ..layer.lowpass import Lowpass
from ..neuron.hybrid import SpikingActivation


class LMUClassifier(nn.Module):
    r"""``LMU -> [Lowpass] -> last step -> Linear``.

    Inputs: ``[T, N, input_size]`` (psMNIST: ``[784, N, 1]``, the permuted pixels as a sequence).
    Outputs: logits ``[N, num_classes]`` (the readout of the last step).

    With ``readout_tau`` the hidden sequence passes a :class:`neuroq.layer.Lowpass` (learnable
    :math:`\tau` per unit) before the last step is read: for a spiking hidden state this reads a
    filtered rate instead of one step's counts.

    Example::

        clf = LMUClassifier(LMU(1, 32, order=16, theta=64.0, return_sequences=False), num_classes=10)
        logits = clf(torch.rand(64, 8, 1))      # [8, 10]
    """

    def __init__(self, lmu: LMU, num_classes: int, readout_tau: Optional[float] = None):
        super().__init__()
        hidden = lmu.cell.hidden_size
        self.lmu = lmu
        self.lowpass = (None if readout_tau is None else
                        Lowpass(check_real("readout_tau", readout_tau, gt=0), units=hidden, step_mode="m"))
        if self.lowpass is not None:
            lmu.return_sequences = True
        self.readout = nn.Linear(hidden, check_int("num_classes", num_classes, ge=2))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, num_classes]`` of the sequence ``x_seq`` ``[T, N, input_size]`` (the lowpass filter, when
        there is one, is reset first)."""
        h = self.lmu(x_seq)
        if self.lowpass is not None:
            self.lowpass.reset()
            h = self.lowpass.final(h)
        elif h.dim() == 3:
            h = h[-1]
        return self.readout(h)


def lmu_classifier(input_size: int = 1, num_classes: int = 10, hidden_size: int = 212, order: int = 256,
                   theta: float = 784.0, memory_d: int = 1, hidden_recurrent: bool = True,
                   input_to_hidden: bool = True, kernel_init: Optional[str] = "ones", mode: str = "auto",
                   hidden_activation: Optional[nn.Module] = None, u_activation: Optional[nn.Module] = None,
                   m_activation: Optional[nn.Module] = None, readout_tau: Optional[float] = None,
                   **lmu_kwargs) -> LMUClassifier:
    r"""LMU classifier, keras-lmu's psMNIST example by default (order 256, θ = 784, 212 hidden units).

    :math:`u_t = x_t` (encoder of ones), :math:`m_t = \bar A m_{t-1} + \bar B u_t` (FFT form in
    training, since nothing feeds back into the memory),
    :math:`h_t = \tanh(W [m_t; x_t] + U h_{t-1} + b)`, logits :math:`= W_o h_T + b_o`.  Small sizes
    are allowed (e.g. ``order=16, theta=64, hidden_size=32`` for tests).  Extra keyword arguments go
    to :class:`neuroq.layer.LMU`.

    Inputs: ``[T, N, input_size]``.  Outputs: ``[N, num_classes]``.

    Example::

        model = lmu_classifier()                          # 784-step psMNIST, ~ keras-lmu's example
        logits = model(pixels)                            # pixels [784, N, 1] -> [N, 10]
    """
    lmu = LMU(input_size, hidden_size, memory_d, order=order, theta=theta, mode=mode,
              input_to_hidden=check_bool("input_to_hidden", input_to_hidden), kernel_init=kernel_init,
              hidden_recurrent=check_bool("hidden_recurrent", hidden_recurrent),
              hidden_activation=hidden_activation, u_activation=u_activation, m_activation=m_activation,
              return_sequences=readout_tau is not None, **lmu_kwargs)
    return LMUClassifier(lmu, num_classes, readout_tau)


def hybrid_lmu_classifier(input_size: int = 1, num_classes: int = 10, hidden_size: int = 212,
                          order: int = 256, theta: float = 784.0, dt: float = 1.0, spiking_u: bool = False,
                          spiking_m: bool = False, spiking_aware_training: bool = True,
                          initial_state="random", seed: Optional[int] = None,
                          readout_tau: Optional[float] = None, **kwargs) -> LMUClassifier:
    r"""Hybrid-spiking LMU classifier: :func:`lmu_classifier` with spiking activations.

    The hidden activation is ``SpikingActivation(nn.Tanh(), dt)``: :math:`h_t = n_t/dt` with integer
    counts :math:`|n_t| \le \lceil dt\rceil`, fed back through :math:`U` and read out; with
    ``spiking_u`` / ``spiking_m`` the memory input :math:`u` and the memory as read by the hidden
    cell also pass ``SpikingActivation(nn.Identity(), dt)`` (signed counts).  ``dt`` is the
    interpolation knob (:class:`neuroq.neuron.SpikingSchedule` moves it over training).  Which of
    :math:`h, u, m` Voelker, Rasmussen, Eliasmith (arXiv 2002.03553) quantise was not available to us;
    neuroq's default quantises :math:`h` only.

    Inputs: ``[T, N, input_size]``.  Outputs: ``[N, num_classes]``.

    Example::

        model = hybrid_lmu_classifier(dt=100.0)           # nearly non-spiking at the start
        SpikingSchedule(100.0, 1.0, epochs=8).apply(model, epoch)
    """
    check_bool("spiking_u", spiking_u)
    check_bool("spiking_m", spiking_m)
    seeds = [None] * 3 if seed is None else [check_int("seed", seed, ge=0) + k for k in range(3)]

    def act(f, s):
        return SpikingActivation(f, dt=dt, spiking_aware_training=spiking_aware_training,
                                 initial_state=initial_state, seed=s)

    return lmu_classifier(input_size, num_classes, hidden_size, order, theta,
                          hidden_activation=act(nn.Tanh(), seeds[0]),
                          u_activation=act(nn.Identity(), seeds[1]) if spiking_u else None,
                          m_activation=act(nn.Identity(), seeds[2]) if spiking_m else None,
                          readout_tau=readout_tau, **kwargs)
