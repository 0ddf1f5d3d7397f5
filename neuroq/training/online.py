r"""Online training through time: SAF-E, SAF-F (Saiin et al., TMLR 2024) and OTTT_O, OTTT_A (Xiao et al.,
NeurIPS 2022) on the same soft-reset LIF networks.

**OTTT** (Online Training Through Time).  The LIF membrane is detached between steps and every
neuron keeps a presynaptic trace :math:`\hat a[t] = \lambda\hat a[t-1] + s[t]` (no gradient).  Each
synaptic op runs **twice** per step: on the spikes for the forward value and on the trace for the
gradient (:class:`OTTTSequential`):

.. math::
    o = \mathrm{op}(s)\ \text{(value)},\qquad \nabla_W = \delta\,\hat a^\top,\qquad
    \partial L/\partial s = W^\top\delta .

OTTT_O steps the optimizer after every time step's loss :math:`L[t]`, OTTT_A accumulates the T
gradients and steps once.  This implementation works on SpikingJelly 0.0.0.0.14 and 2.0.0; with
``input_trace=True`` (default) the first layer also uses the (accumulated) input as its trace, which
is what makes Theorem 1 below exact; ``input_trace=False`` is the OTTT code's choice (the first layer
sees the instantaneous input), for which the first layer's weight gradient is :math:`1/c_t` times
SAF-E's for a constant input.

**SAF-E** (SAF, loss at each step).  The SAF network (:func:`neuroq.layer.saf.saf_from_lif`) runs
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
:math:`V_{th}=1`).  :func:`spike_representation_grads` is the SR reference.
"""
from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as tF

from .. import _sj
from .._validate import check_bool, check_real
from ..functional import saf as FS
from ..layer import saf as LS
from ..neuron.lif import LIFNode
from ..neuron.ottt import OnlineLIFNode

# OTTT's VGG ("online_spiking_vgg11_ws"): A = 2x2 average pooling
OTTT_VGG11 = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512)


# ---------------------------------------------------------------------------------------------
# OTTT (neuroq implementation, both SpikingJelly versions)
# ---------------------------------------------------------------------------------------------
class _Replace(torch.autograd.Function):
    """Forward value of ``x_value``; gradient goes to ``x_grad`` (and to ``x_value``)."""

    @staticmethod
    def forward(ctx, x_grad, x_value):
        return x_value.view_as(x_value)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def _has_params(m: nn.Module) -> bool:
    return next(m.parameters(), None) is not None


def ottt_op(op: nn.Module, spike: torch.Tensor, trace: torch.Tensor) -> torch.Tensor:
    r"""OTTT synapse: value ``op(spike)`` (no graph), gradient through ``op(trace)`` — two ops."""
    with torch.no_grad():
        value = op(spike)
    for_grad = op(_Replace.apply(spike, trace))
    return _Replace.apply(for_grad, value)


class OTTTSequential(_sj.MemoryModule):
    r"""Single-step OTTT network: a flat sequence (``layers``) of synapses, :class:`OnlineLIFNode` s and
    stateless ops.

    In training mode with gradients enabled, synapses (modules with parameters) after a neuron run
    :func:`ottt_op` on (spike, trace), stateless ops run on both; with ``input_trace`` the network
    input is treated like a spike train too (trace :math:`\hat x[t] = \lambda\hat x[t-1] + x[t]`).
    In eval mode (or without grad) it is the plain LIF network, one step per call.  Step mode
    ``'m'`` (``[T, N, ...]``) loops over the steps.
    """

    def __init__(self, *modules, tau: float = 2.0, input_trace: bool = True, step_mode: str = "s"):
        super().__init__()
        self.layers = nn.ModuleList(modules)
        self.tau = check_real("tau", tau, gt=1.0)
        self.input_trace = check_bool("input_trace", input_trace)
        self.step_mode = step_mode
        self.register_memory("in_trace", None)

    def __iter__(self):
        return iter(self.layers)

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def single_step_forward(self, x):
        online = self.training and torch.is_grad_enabled()
        if not online:
            for m in self.layers:
                x = m(x)
            return x
        if self.input_trace:
            xd = x.detach()
            tr = xd if self.in_trace is None else FS.decay(self.tau) * self.in_trace + xd
            self.in_trace = tr
            spike, trace = x, tr
        else:
            spike, trace = x, None
        for m in self.layers:
            if isinstance(m, OnlineLIFNode):
                spike = m(spike)
                trace = m.trace
            elif trace is not None and _has_params(m):
                spike, trace = ottt_op(m, spike, trace), None
            elif trace is not None:
                spike = m(spike)
                with torch.no_grad():
                    trace = m(trace)
            else:
                spike = m(spike)
        return spike

    def multi_step_forward(self, x_seq):
        return torch.stack([self.single_step_forward(x_seq[t]) for t in range(x_seq.shape[0])])


def ottt_from_lif(model: nn.Module, input_trace: bool = True) -> OTTTSequential:
    """neuroq OTTT twin of a multi-step soft-reset LIF network (weights copied; see :func:`saf_from_lif`)."""
    out = []
    taus = set()
    for name, m, flat in LS._leaves(model):
        if LS._is_lif(m):
            tau, di, vth, sg = LS._lif_params(m)
            taus.add(tau)
            out.append(OnlineLIFNode(tau, di, vth, sg))
        elif isinstance(m, nn.Flatten) and not flat:
            out.append(nn.Flatten(m.start_dim - 1, m.end_dim))
        else:
            out.append(copy.deepcopy(m))
    if len(taus) != 1:
        raise ValueError(f"ottt_from_lif needs LIF neurons that share one tau, found {sorted(taus) or 'none'}")
    return OTTTSequential(*out, tau=taus.pop(), input_trace=input_trace)


def sj_ottt_from_lif(model: nn.Module) -> nn.Module:
    """SpikingJelly 2.0.0's own OTTT form of a multi-step soft-reset LIF network (``OTTTSequential`` with
    ``OTTTLIFNode`` s, weights copied; the first layer sees the instantaneous input).  Raises
    ``RuntimeError`` where SpikingJelly lacks these modules (0.0.0.0.14)."""
    sj = _sj.ottt_modules()
    if sj is None:
        raise RuntimeError(f"SpikingJelly {_sj.VERSION} has no OTTTLIFNode/OTTTSequential; use ottt_from_lif")
    out = []
    for name, m, flat in LS._leaves(model):
        if LS._is_lif(m):
            tau, di, vth, sg = LS._lif_params(m)
            kw = {} if sg is None else dict(surrogate_function=sg)
            out.append(sj["OTTTLIFNode"](tau=tau, decay_input=di, v_threshold=vth, v_reset=None, detach_reset=True,
                                         **kw))
        elif isinstance(m, nn.Flatten) and not flat:
            out.append(nn.Flatten(m.start_dim - 1, m.end_dim))
        else:
            out.append(copy.deepcopy(m))
    return sj["OTTTSequential"](*out)


def lif_from_ottt(model: OTTTSequential) -> nn.Sequential:
    """Plain multi-step LIF network with the weights of an :class:`OTTTSequential`."""
    out = []
    for m in model.layers:
        if isinstance(m, OnlineLIFNode):
            out.append(LIFNode(tau=m.tau, decay_input=m.decay_input, v_threshold=m.v_threshold, v_reset=None,
                               surrogate_function=m.surrogate_function, step_mode="m"))
        else:
            out.append(_sj.SeqToANNContainer(copy.deepcopy(m)))
    return nn.Sequential(*out)


def run_steps(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    """Call a single-step network once per step of ``x_seq [T, N, ...]``; returns ``[T, N, ...]``."""
    outs = []
    for t in range(x_seq.shape[0]):
        o = model(x_seq[t])
        outs.append(o[0] if isinstance(o, (list, tuple)) else o)
    return torch.stack(outs)


# ---------------------------------------------------------------------------------------------
# losses and training steps
# ---------------------------------------------------------------------------------------------
def ottt_loss(o: torch.Tensor, y: torch.Tensor, mse_weight: float = 0.05) -> torch.Tensor:
    r"""OTTT's per-step loss: :math:`(1-w)\,\mathrm{CE}(o, y) + w\,\mathrm{MSE}(o, \mathrm{onehot}(y))`."""
    ce = tF.cross_entropy(o, y)
    if mse_weight == 0:
        return ce
    return (1 - mse_weight) * ce + mse_weight * tF.mse_loss(o, tF.one_hot(y, o.shape[-1]).to(o.dtype))


def online_train_step(model: nn.Module, x_seq: torch.Tensor, y: torch.Tensor, optimizer, loss_fn: Callable,
                      online: bool = True):
    r"""One minibatch of step-by-step training with the loss :math:`L[t]/T` at every step.

    Used for OTTT_O (``online=True``: optimizer step every time step), OTTT_A (``online=False``: one
    step after accumulating T gradients) — on neuroq's :class:`OTTTSequential` or SpikingJelly
    2.0.0's ``OTTTSequential`` models — and SAF-E (an SAF network in step mode ``'s'`` with
    ``SAFReadout(mode='step')``).  Returns ``(sum_t L[t]/T, outputs [T, N, classes])``.
    """
    T = x_seq.shape[0]
    _sj.reset_net(model)
    if not online:
        optimizer.zero_grad(set_to_none=True)
    total = 0.0
    outs = []
    for t in range(T):
        if online:
            optimizer.zero_grad(set_to_none=True)
        o = model(x_seq[t])
        if isinstance(o, (list, tuple)):
            o = o[0]
        loss = loss_fn(o, y) / T
        loss.backward()
        if online:
            optimizer.step()
        _sj.detach_net(model)
        total += float(loss.detach())
        outs.append(o.detach())
    if not online:
        optimizer.step()
    return total, torch.stack(outs)


def saf_e_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss, online: bool = True):
    """SAF-E minibatch: SAF network stepped one step at a time, loss and update at every step."""
    LS.set_step_mode(model, "s")
    _set_readout(model, "step")
    return online_train_step(model, x_seq, y, optimizer, loss_fn, online)


def ottt_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss, online: bool = True):
    """OTTT_O (``online=True``) or OTTT_A (``online=False``) minibatch."""
    return online_train_step(model, x_seq, y, optimizer, loss_fn, online)


def _set_readout(model, mode):
    for m in model.modules():
        if isinstance(m, LS.SAFReadout):
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
        LS.set_step_mode(model, "m")
        step = T - 1 if chunk is None else max(1, int(chunk))
        with torch.no_grad():
            for t0 in range(0, T - 1, step):
                model(x_seq[t0:min(T - 1, t0 + step)])
    LS.set_step_mode(model, "s")
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
    LS.set_step_mode(model, "m")
    _set_readout(model, readout)
    out = model(x_seq)
    return out.mean(0) if readout == "step" else out[-1]


# ---------------------------------------------------------------------------------------------
# Spike Representation reference (Theorem 2)
# ---------------------------------------------------------------------------------------------
def spike_representation_grads(lif_model: nn.Module, x_seq: torch.Tensor, y: torch.Tensor,
                               loss_fn: Callable, params: Optional[list] = None):
    r"""Gradients of the Spike-Representation (DSR) training of a multi-step soft-reset LIF network.

    Forward values come from the SNN: weighted firing rates :math:`a^l = \hat a^l[T]/c_T` (the input's
    :math:`a^0 = \hat x[T]/c_T`).  Backward follows the representation map
    :math:`a^{l+1} = \mathrm{clamp}(\tilde I^{l+1}/V_{th}, 0, 1)`, :math:`\tilde I^{l+1} = W^l a^l + b`:
    :math:`\partial a^{l+1}/\partial\tilde I^{l+1} = \mathbb 1[0<\tilde I^{l+1}<V_{th}]/V_{th}`.  The loss is
    ``loss_fn(W^N a^N + b, y)``.  Returns the gradients of ``params`` (default: the model's
    parameters, in order).
    """
    leaves = list(LS._leaves(lif_model))
    tau = next(float(m.tau) for _, m, _ in leaves if LS._is_lif(m))
    T = x_seq.shape[0]
    cT = FS.bias_scale(T, tau)
    rates = []
    hooks = [m.register_forward_hook(lambda mod, a, out: rates.append(FS.accumulate(out.detach(), tau)[-1] / cT))
             for _, m, _ in leaves if LS._is_lif(m)]
    with torch.no_grad():
        _sj.reset_net(lif_model)
        lif_model(x_seq)
    for h in hooks:
        h.remove()
    _sj.reset_net(lif_model)
    cur = FS.accumulate(x_seq, tau)[-1] / cT
    k = 0
    for _, m, flat in leaves:
        if LS._is_lif(m):
            vth = float(m.v_threshold)
            g = torch.clamp(cur / vth, 0.0, 1.0)
            cur = rates[k] + (g - g.detach())
            k += 1
        elif isinstance(m, nn.Flatten) and not flat:
            cur = torch.flatten(cur, m.start_dim - 1, m.end_dim)
        else:
            cur = m(cur)
    loss = loss_fn(cur, y)
    params = list(lif_model.parameters()) if params is None else params
    return torch.autograd.grad(loss, params, allow_unused=True)


# ---------------------------------------------------------------------------------------------
# reference networks (OTTT's VGG-11-WS and a BPTT VGG-11-BN of the same shape)
# ---------------------------------------------------------------------------------------------
def _soft_lif(tau, surrogate_function=None, v_threshold=1.0):
    return LIFNode(tau=tau, decay_input=False, v_threshold=v_threshold, v_reset=None,
                   surrogate_function=surrogate_function, detach_reset=True, step_mode="m")


def lif_vgg_ws(cfg=OTTT_VGG11, in_channels: int = 3, num_classes: int = 10, tau: float = 2.0,
               surrogate_function=None, ws_scale: float = 2.74) -> nn.Sequential:
    r"""OTTT's VGG-11-WS as a multi-step soft-reset LIF network (``[T, N, C, H, W]`` in, ``[T, N, classes]``
    out): per conv entry ``ScaledWSConv2d(3x3) -> LIF -> Scale(2.74)``, ``'A'`` = 2x2 average pooling,
    then global average pooling and a linear classifier (OTTT's "light classifier").  Convert it with
    :func:`neuroq.layer.saf.saf_from_lif` (SAF-E/F) or :func:`ottt_from_lif` (OTTT_O/A).
    Init as OTTT: Kaiming-normal (fan_out) convs, :math:`N(0, 0.01)` classifier, zero biases."""
    layers: list = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(_sj.SeqToANNContainer(nn.AvgPool2d(2)))
        else:
            conv = LS.ScaledWSConv2d(c, int(v), 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [_sj.SeqToANNContainer(conv), _soft_lif(tau, surrogate_function),
                       _sj.SeqToANNContainer(LS.Scale(ws_scale))]
            c = int(v)
    fc = nn.Linear(c, num_classes)
    nn.init.normal_(fc.weight, 0, 0.01)
    nn.init.zeros_(fc.bias)
    layers += [_sj.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)), fc]
    return nn.Sequential(*layers)


def lif_vgg_bn(cfg=OTTT_VGG11, in_channels: int = 3, num_classes: int = 10, tau: float = 2.0,
               surrogate_function=None) -> nn.Sequential:
    """The same VGG shape with ``Conv -> BatchNorm -> LIF`` (BPTT baseline; not SAF-convertible)."""
    layers: list = []
    c = in_channels
    for v in cfg:
        if v == "A":
            layers.append(_sj.SeqToANNContainer(nn.AvgPool2d(2)))
        else:
            layers += [_sj.SeqToANNContainer(nn.Conv2d(c, int(v), 3, padding=1, bias=False), nn.BatchNorm2d(int(v))),
                       _soft_lif(tau, surrogate_function)]
            c = int(v)
    layers += [_sj.SeqToANNContainer(nn.AdaptiveAvgPool2d(1), nn.Flatten(1)), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def bptt_train_step(model: nn.Module, x_seq, y, optimizer, loss_fn: Callable = ottt_loss):
    """Plain BPTT minibatch on a multi-step network, loss on the mean output (for comparison)."""
    _sj.reset_net(model)
    optimizer.zero_grad(set_to_none=True)
    out = model(x_seq)
    loss = sum(loss_fn(out[t], y) for t in range(out.shape[0])) / out.shape[0]
    loss.backward()
    optimizer.step()
    return float(loss.detach()), out.detach()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = [
    "OTTT_VGG11", "OnlineLIFNode", "OTTTSequential", "ottt_op", "ottt_from_lif", "sj_ottt_from_lif", "lif_from_ottt", "run_steps",
    "ottt_loss", "online_train_step", "saf_e_train_step", "ottt_train_step", "saf_f_forward", "saf_f_train_step",
    "saf_predict", "spike_representation_grads", "lif_vgg_ws", "lif_vgg_bn", "bptt_train_step",
]
