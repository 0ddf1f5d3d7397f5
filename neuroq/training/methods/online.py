r"""Online training through time: ``saf-e``, ``saf-f`` (Saiin et al., "Spike Accumulation Forwarding for
Effective Training of Spiking Neural Networks", TMLR 2024, arXiv 2310.02772) and ``ottt-o``, ``ottt-a``
(Xiao et al., NeurIPS 2022) on the same soft-reset LIF networks.

All four build the reference MLP/CNN without normalization (BatchNorm is not linear over time, so SAF
does not allow it) with soft-reset LIF neurons (``decay_input=False``, :math:`\lambda = 1 - 1/\tau`)
and convert it (:mod:`neuroq.convert`); the per-step loss is OTTT's ``(1-w) CE + w MSE(onehot)``
(``--mse-weight``, default 0.05).  Prediction: mean of the per-step outputs (SAF-E, OTTT), the final
weighted average (SAF-F).  ``inference_network`` returns the equivalent plain LIF network (same
spikes), which is what the energy report and the rasters use.  Mixed precision and the energy penalty
are refused: these methods train with their own step.

**OTTT** (Online Training Through Time).  The LIF membrane is detached between steps and every
neuron keeps a presynaptic trace :math:`\hat a[t] = \lambda\hat a[t-1] + s[t]` (no gradient).  Each
synaptic op runs **twice** per step: on the spikes for the forward value and on the trace for the
gradient (:class:`~neuroq.layer.OTTTSequential`):

.. math::
    o = \mathrm{op}(s)\ \text{(value)},\qquad \nabla_W = \delta\,\hat a^\top,\qquad
    \partial L/\partial s = W^\top\delta .

OTTT_O steps the optimizer after every time step's loss :math:`L[t]`, OTTT_A accumulates the T
gradients and steps once.  neuroq's OTTT (:class:`neuroq.layer.OTTTSequential`) works on SpikingJelly 0.0.0.0.14 and 2.0.0; with
``input_trace=True`` (default) the first layer also uses the (accumulated) input as its trace, which
is what makes Theorem 1 below exact; ``input_trace=False`` is the OTTT code's choice (the first layer
sees the instantaneous input), for which the first layer's weight gradient is :math:`1/c_t` times
SAF-E's for a constant input.

**SAF-E** (SAF, loss at each step).  The SAF network (:func:`neuroq.convert.saf_from_lif`) runs
one step at a time with one synaptic op per layer, the loss :math:`L[t]` on
:math:`o[t] = \hat U^{out}[t] - \lambda\hat U^{out}[t-1]` and an optimizer step every time step.

*Theorem 1 (SAF paper) as tested here:* for the same weights and input, at every step t the
weight gradients of SAF-E equal those of OTTT_O: both are :math:`\delta^{l+1}[t]\,\hat a^l[t]^\top`
with :math:`\delta^{l+1} = SG'(u^{l+1}[t]-V_{th})\odot W^{l+1\top}\delta^{l+2}`.  Bias gradients
differ by the factor :math:`c_t` (SAF's bias enters :math:`\hat U[t]` as :math:`c_t b`: the bias's own
"trace").  With online updates the two forward passes then drift apart: SAF applies the new
weights to the whole accumulation :math:`W_t\hat a[t]`, LIF/OTTT's membrane keeps the old
:math:`W_{t'}s[t']` — the reason the firing rates of the two are close but not identical.

**SAF-F** (SAF, loss on the final accumulation).  Steps :math:`1..T-1` run without a graph (all T-1
steps at once in multi-step mode); step T runs with the graph and the loss on
:math:`\hat U^{out}[T]/c_T = W\,a^N + b`, :math:`a = \hat a[T]/c_T`; one backward per minibatch.

*Theorem 2 (SAF paper) as tested here* — relation to the Spike Representation (DSR, Meng et al.
CVPR 2022), whose backward maps the weighted firing rate
:math:`a^{l+1} \approx \mathrm{clamp}(\tilde I^{l+1}/V_{th}, 0, 1)`, :math:`\tilde I^{l+1} = W^l a^l + b`,
so :math:`\partial a^{l+1}/\partial\tilde I^{l+1} = \mathbb 1[0<\tilde I<V_{th}]/V_{th}`.  SAF-F's
backward through a neuron is :math:`\partial a/\partial\tilde I = \partial\hat a[T]/\partial\hat U[T]`.
Under the conditions

* (C1) :math:`\hat a[T-1]` detached (``detach_state=True``, the default), and
* (C2) the spike's backward at step T is the SR indicator,
  :math:`\partial s[T]/\partial\hat U[T] = \mathbb 1[0 < \hat U[T]/c_T < V_{th}]`
  (``SAFNode(sr_box=True)``; a smooth surrogate only approximates it),

every neuron's SAF-F backward is exactly :math:`V_{th}` times SR's, so the gradient reaching the
input of the last hidden layer (and that layer's weights) is :math:`V_{th}\times` the SR gradient,
and a weight :math:`k` neuron layers below the readout gets :math:`V_{th}^k\times` (equal for
:math:`V_{th}=1`).  The SR reference the test holds SAF-F against is written out in
``tests/training/methods/test_saf.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import _sj
from ...convert import lif_from_ottt, lif_from_saf, ottt_from_lif, saf_from_lif
from ...layer.container import run_steps, set_step_mode
from ...layer.saf import SAFReadout
from ...models import classifier
from ...neuron.lif import LIFNode
from ...functional import LIFParameters
from ..config import positive_int, option, record_option
from .base import FeedForwardConfig, Method, TimeConfig, register


def ottt_loss(o: torch.Tensor, y: torch.Tensor, mse_weight: float = 0.05) -> torch.Tensor:
    r"""OTTT's per-step loss: :math:`(1-w)\,\mathrm{CE}(o, y) + w\,\mathrm{MSE}(o, \mathrm{onehot}(y))`."""
    ce = F.cross_entropy(o, y)
    if mse_weight == 0:
        return ce
    return (1 - mse_weight) * ce + mse_weight * F.mse_loss(o, F.one_hot(y, o.shape[-1]).to(o.dtype))


def online_train_step(model: nn.Module, x_seq: torch.Tensor, y: torch.Tensor, optimizer, loss_fn: Callable,
                      online: bool = True):
    r"""One minibatch of step-by-step training with the loss :math:`L[t]/T` at every step.

    Used for OTTT_O (``online=True``: optimizer step every time step), OTTT_A (``online=False``: one
    step after accumulating T gradients) — on neuroq's :class:`~neuroq.layer.OTTTSequential` or SpikingJelly
    2.0.0's ``OTTTSequential`` models — and SAF-E (an SAF network in step mode ``'s'`` with
    ``SAFReadout(mode='step')``).  Returns ``(sum_t L[t]/T, outputs [T, N, classes])``.
    """
    T = x_seq.shape[0]
    _sj.reset_net(model)
    if not online:
        optimizer.zero_grad(set_to_none=True)
    total = None
    outs = []
    for x_t in x_seq.unbind(0):
        if online:
            optimizer.zero_grad(set_to_none=True)
        o = model(x_t)
        if isinstance(o, (list, tuple)):
            o = o[0]
        loss = loss_fn(o, y) / T
        loss.backward()
        if online:
            optimizer.step()
        _sj.detach_net(model)
        total = loss.detach() if total is None else total + loss.detach()  # no host sync per step
        outs.append(o.detach())
    if not online:
        optimizer.step()
    return (float(total) if total is not None else 0.0), torch.stack(outs)


def saf_e_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss, online: bool = True):
    """SAF-E minibatch: SAF network stepped one step at a time, loss and update at every step."""
    set_step_mode(model, "s")
    _set_readout(model, "step")
    return online_train_step(model, x_seq, y, optimizer, loss_fn, online)


def ottt_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss, online: bool = True):
    """OTTT_O (``online=True``) or OTTT_A (``online=False``) minibatch."""
    return online_train_step(model, x_seq, y, optimizer, loss_fn, online)


def _set_readout(model, mode):
    for m in model.modules():
        if isinstance(m, SAFReadout):
            m.mode = mode


def saf_f_forward(model: nn.Module, x_seq: torch.Tensor, chunk: Optional[int] = None) -> torch.Tensor:
    r"""SAF-F forward: steps :math:`1..T-1` without graph in multi-step mode, step T with graph;
    returns :math:`\hat U^{out}[T]/c_T` (``SAFReadout(mode='final')``).

    ``chunk``: run the graph-free steps ``chunk`` at a time (default: all T-1 at once, the fastest;
    a smaller chunk lowers the transient memory of that pass)."""
    T = x_seq.shape[0]
    _sj.reset_net(model)
    _set_readout(model, "final")
    if T > 1:
        set_step_mode(model, "m")
        step = T - 1 if chunk is None else max(1, int(chunk))
        with torch.no_grad():
            for t0 in range(0, T - 1, step):
                model(x_seq[t0:min(T - 1, t0 + step)])
    set_step_mode(model, "s")
    return model(x_seq[T - 1])


def saf_f_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss,
                     chunk: Optional[int] = None):
    """SAF-F minibatch: one backward on the loss of the final accumulation; returns ``(loss, logits)``."""
    optimizer.zero_grad(set_to_none=True)
    out = saf_f_forward(model, x_seq, chunk)
    loss = loss_fn(out, y)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), out.detach()


@torch.no_grad()
def saf_predict(model: nn.Module, x_seq: torch.Tensor, readout: str = "step") -> torch.Tensor:
    """Logits of an SAF network in multi-step mode: mean of :math:`o[t]` (``'step'``, = the LIF network's)
    or :math:`\\hat U^{out}[T]/c_T` (``'final'``)."""
    _sj.reset_net(model)
    set_step_mode(model, "m")
    _set_readout(model, readout)
    out = model(x_seq)
    return out.mean(0) if readout == "step" else out[-1]


# ---------------------------------------------------------------------------------------------
# the four methods
# ---------------------------------------------------------------------------------------------
@dataclass
class OnlineConfig(TimeConfig, FeedForwardConfig):
    """Options shared by ``saf-e``, ``saf-f``, ``ottt-o`` and ``ottt-a``: time steps, the reference MLP/CNN,
    the soft-reset LIF neuron's ``tau`` and ``v_threshold``, and the weight ``mse_weight`` of the MSE term
    in :func:`ottt_loss`."""

    tau: float = record_option(LIFParameters, "tau")
    v_threshold: float = record_option(LIFParameters, "v_threshold")
    mse_weight: float = option(0.05, "weight w of OTTT's per-step loss (1-w) CE + w MSE(onehot)")


class _Online(Method):
    """Shared by SAF-E/F and OTTT_O/A: the soft-reset LIF network they are built from and the loss."""

    Config = OnlineConfig
    kinds = ("image", "frames")

    def neuron(self):
        c = self.config
        return lambda: LIFNode(tau=c.tau, decay_input=False, v_threshold=c.v_threshold, v_reset=None,
                               detach_reset=True, step_mode="m")

    def lif_network(self, data) -> nn.Module:
        """Soft-reset LIF MLP (small inputs) or CNN without normalization: the network all four train."""
        c = self.config
        return classifier(data.step_shape, data.num_classes, self.neuron(), c.arch, c.hidden, norm=False)

    def from_lif(self, lif: nn.Module) -> nn.Module:
        """The method's trainable form of a soft-reset LIF network (weights copied)."""
        raise NotImplementedError

    def build_model(self, data) -> nn.Module:
        return self.from_lif(self.lif_network(data))

    def loss_fn(self) -> Callable:
        w = self.config.mse_weight
        return lambda o, y: ottt_loss(o, y, w)

    def forward(self, model, x, ctx):
        return self.predict(model, x, ctx)


class _SAF(_Online):
    readout = "step"

    def from_lif(self, lif):
        return saf_from_lif(lif, readout=self.readout)

    @torch.no_grad()
    def predict(self, model, x, ctx):
        return saf_predict(model, self.inputs(x, ctx), self.readout)

    def inference_network(self, model):
        return lif_from_saf(model).to(next(model.parameters()).device)


@register("saf-e")
class SAFEMethod(_SAF):
    """``--method saf-e``: the SAF network stepped one time step at a time, with a loss and an optimizer
    step at every step (:func:`saf_e_train_step`); predicts the mean of the per-step outputs."""

    help = "SAF-E: spike accumulation forwarding, loss and online update at every time step"
    readout = "step"

    def train_step(self, model, x, y, optimizer, ctx):
        """One minibatch of SAF-E (T optimizer steps); returns ``(mean loss per step, mean output [N, classes])``."""
        loss, outs = saf_e_train_step(model, self.inputs(x, ctx), y, optimizer, self.loss_fn(), online=True)
        return loss, outs.mean(0)


@dataclass
class SAFFConfig(OnlineConfig):
    """Options of ``--method saf-f``: :class:`OnlineConfig` plus ``chunk``, how many graph-free steps run per
    call (``None``: all ``T-1`` at once)."""

    chunk: Optional[int] = option(1, "SAF-F: run the graph-free steps 1..T-1 this many at a time (default 1: "
                                  "memory flat in T; 0 or none: all T-1 at once, fewer calls, memory grows with T)",
                                  parse=lambda s: None if s.lower() in ("0", "none", "all") else positive_int("--chunk")(s))

    def __post_init__(self):
        super().__post_init__()
        if self.chunk is not None and (isinstance(self.chunk, bool) or not isinstance(self.chunk, int)
                                       or self.chunk < 0):
            raise ValueError(f"chunk must be an integer >= 1, or 0/None for all T-1 steps at once, got {self.chunk!r}")


@register("saf-f")
class SAFFMethod(_SAF):
    r"""``--method saf-f``: the SAF network with the loss on the final accumulation
    :math:`\hat U^{out}[T]/c_T`, one backward and one optimizer step per minibatch (:func:`saf_f_train_step`)."""

    help = "SAF-F: spike accumulation forwarding, loss on the final accumulation, one backward per batch"
    readout = "final"
    Config = SAFFConfig

    def train_step(self, model, x, y, optimizer, ctx):
        """One minibatch of SAF-F; returns ``(loss, logits [N, classes])``."""
        return saf_f_train_step(model, self.inputs(x, ctx), y, optimizer, self.loss_fn(), self.config.chunk or None)


class _OTTT(_Online):
    online = True

    def from_lif(self, lif):
        return ottt_from_lif(lif)

    def train_step(self, model, x, y, optimizer, ctx):
        loss, outs = online_train_step(model, self.inputs(x, ctx), y, optimizer, self.loss_fn(), online=self.online)
        return loss, outs.mean(0)

    @torch.no_grad()
    def predict(self, model, x, ctx):
        _sj.reset_net(model)
        return run_steps(model, self.inputs(x, ctx)).mean(0)

    def inference_network(self, model):
        return lif_from_ottt(model).to(next(model.parameters()).device)


@register("ottt-o")
class OTTTOMethod(_OTTT):
    """``--method ottt-o``: OTTT with an optimizer step after every time step's loss."""

    help = "OTTT_O: online training through time, optimizer step at every time step"
    online = True


@register("ottt-a")
class OTTTAMethod(_OTTT):
    """``--method ottt-a``: OTTT with the T per-step gradients accumulated and one optimizer step per minibatch."""

    help = "OTTT_A: online training through time, gradients accumulated over T steps"
    online = False
