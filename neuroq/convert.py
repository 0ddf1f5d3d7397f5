r"""Conversions between the three forms of one soft-reset LIF network, sharing its weights.

* :func:`saf_from_lif` / :func:`lif_from_saf`: Spike Accumulation Forwarding (Saiin et al., TMLR 2024,
  arXiv 2310.02772).  The SAF twin carries spike accumulations between layers with one synaptic
  operation per step; it emits the LIF network's spikes and outputs exactly (:mod:`neuroq.layer.saf`).
* :func:`ottt_from_lif` / :func:`lif_from_ottt`: neuroq's OTTT network (Xiao et al., NeurIPS 2022;
  :mod:`neuroq.layer.ottt`); :func:`sj_ottt_from_lif`: SpikingJelly 2.0.0's own OTTT modules.

The LIF network is a (nested) ``nn.Sequential`` of ``nn.Linear`` / ``nn.Conv2d`` /
:class:`~neuroq.layer.ws.ScaledWSConv2d` (or SpikingJelly's ``WSConv2d``), soft-reset LIF neurons
(neuroq's or SpikingJelly's, all with the same ``tau``) and linear stateless ops, taking
``[T, N, ...]`` and returning the last layer's output ``o[t]``.
"""
from __future__ import annotations

import copy

import torch.nn as nn

from . import _sj
from .layer.container import SeqOp, leaves
from .layer.ottt import OTTTSequential
from .layer.saf import (SAFConv2d, SAFInput, SAFLinear, SAFNonLinearError, SAFReadout, SAFSequential, SAFWSConv2d,
                        _SAFSynapse, _why_nonlinear)
from .neuron.lif import LIFNode
from .neuron.ottt import OnlineLIFNode
from .neuron.saf import SAFNode


def is_lif(m: nn.Module) -> bool:
    """True for neuroq's and SpikingJelly's LIF neurons (and their subclasses)."""
    return isinstance(m, LIFNode) or isinstance(m, _sj.sj_neuron_module().LIFNode)


def soft_lif_params(m: nn.Module) -> tuple:
    """``(tau, decay_input, v_threshold, surrogate)`` of a soft-reset LIF neuron (neuroq or SpikingJelly)."""
    if m.v_reset is not None:
        raise ValueError(f"{type(m).__name__}: SAF/OTTT need soft reset (v_reset=None), got v_reset={m.v_reset}")
    return (float(m.tau), bool(getattr(m, "decay_input", False)), float(m.v_threshold),
            getattr(m, "surrogate_function", None))


def shared_tau(model: nn.Module, who: str) -> float:
    """The one ``tau`` all LIF neurons of ``model`` share (error otherwise)."""
    taus = {float(m.tau) for _, m, _ in leaves(model) if is_lif(m)}
    if len(taus) != 1:
        raise ValueError(f"{who} needs LIF neurons that all share one tau, found {sorted(taus) or 'none'}")
    return taus.pop()


def saf_from_lif(model: nn.Module, readout: str = "step", step_mode: str = "s") -> SAFSequential:
    r"""SAF twin of a feed-forward soft-reset LIF network (weights copied; module docstring).

    The result is ``SAFSequential(SAFInput, ..., SAFReadout(mode=readout))``: with ``readout='step'``
    its output equals ``model``'s output for every step; its neurons emit :math:`\hat a`, whose spikes
    equal the LIF spikes.
    """
    tau = shared_tau(model, "saf_from_lif")
    out = [SAFInput(tau, step_mode)]
    for name, m, flat in leaves(model):
        if is_lif(m):
            t, di, vth, sg = soft_lif_params(m)
            out.append(SAFNode(tau=t, decay_input=di, v_threshold=vth, surrogate_function=sg, step_mode=step_mode))
        elif isinstance(m, nn.Linear):
            out.append(SAFLinear.from_module(m, tau, step_mode))
        elif isinstance(m, nn.Conv2d) and hasattr(m, "get_weight") and hasattr(m, "eps"):
            out.append(SAFWSConv2d.from_module(m, tau, step_mode))
        elif isinstance(m, nn.Conv2d):
            out.append(SAFConv2d.from_module(m, tau, step_mode))
        elif isinstance(m, nn.Flatten) and not flat:
            # a top-level Flatten of a multi-step model sees [T, N, ...]; SeqOp applies it to [T*N, ...]
            if m.start_dim < 2:
                raise ValueError(f"saf_from_lif: {name!r} flattens the time axis (start_dim={m.start_dim})")
            out.append(SeqOp(nn.Flatten(m.start_dim - 1, m.end_dim), step_mode=step_mode))
        else:
            why = _why_nonlinear(m)
            if why is not None:
                raise SAFNonLinearError(f"saf_from_lif: module {name!r} ({type(m).__name__}): {why}")
            out.append(SeqOp(copy.deepcopy(m), step_mode=step_mode))
    out.append(SAFReadout(tau, readout, step_mode))
    return SAFSequential(*out)


def lif_from_saf(model: nn.Module, surrogate_function=None) -> nn.Sequential:
    r"""Plain multi-step LIF network equivalent to an SAF network (weights copied): ``[T, N, ...]`` in,
    per-step output :math:`o[t]` out.  SAF neurons become ``neuroq.neuron.LIFNode(tau, decay_input,
    v_reset=None)`` and SAF synapses ``nn.Linear`` / ``nn.Conv2d`` / ``ScaledWSConv2d``."""
    out = []
    for _, m, _ in leaves(model):
        if isinstance(m, (SAFInput, SAFReadout)):
            continue
        if isinstance(m, SAFNode):
            out.append(LIFNode(tau=m.tau, decay_input=m.decay_input, v_threshold=m.v_threshold, v_reset=None,
                               surrogate_function=surrogate_function or m.surrogate_function, step_mode="m"))
        elif isinstance(m, _SAFSynapse):
            out.append(SeqOp(m.to_module()))
        else:
            out.append(SeqOp(copy.deepcopy(m)))
    return nn.Sequential(*out)


def ottt_from_lif(model: nn.Module, input_trace: bool = True) -> OTTTSequential:
    """neuroq OTTT twin of a multi-step soft-reset LIF network (weights copied; module docstring)."""
    tau = shared_tau(model, "ottt_from_lif")
    out = []
    for _, m, flat in leaves(model):
        if is_lif(m):
            t, di, vth, sg = soft_lif_params(m)
            out.append(OnlineLIFNode(t, di, vth, sg))
        elif isinstance(m, nn.Flatten) and not flat:
            out.append(nn.Flatten(m.start_dim - 1, m.end_dim))
        else:
            out.append(copy.deepcopy(m))
    return OTTTSequential(*out, tau=tau, input_trace=input_trace)


def sj_ottt_from_lif(model: nn.Module) -> nn.Module:
    """SpikingJelly 2.0.0's own OTTT form of a multi-step soft-reset LIF network (``OTTTSequential`` with
    ``OTTTLIFNode`` s, weights copied; the first layer sees the instantaneous input).  Raises
    ``RuntimeError`` where SpikingJelly lacks these modules (0.0.0.0.14)."""
    sj = _sj.ottt_modules()
    if sj is None:
        raise RuntimeError(f"SpikingJelly {_sj.VERSION} has no OTTTLIFNode/OTTTSequential; use ottt_from_lif")
    out = []
    for _, m, flat in leaves(model):
        if is_lif(m):
            tau, di, vth, sg = soft_lif_params(m)
            kw = {} if sg is None else dict(surrogate_function=sg)
            out.append(sj["OTTTLIFNode"](tau=tau, decay_input=di, v_threshold=vth, v_reset=None, detach_reset=True,
                                         **kw))
        elif isinstance(m, nn.Flatten) and not flat:
            out.append(nn.Flatten(m.start_dim - 1, m.end_dim))
        else:
            out.append(copy.deepcopy(m))
    return sj["OTTTSequential"](*out)


def lif_from_ottt(model: OTTTSequential) -> nn.Sequential:
    """Plain multi-step LIF network with the weights of an :class:`~neuroq.layer.ottt.OTTTSequential`."""
    out = []
    for m in model.layers:
        if isinstance(m, OnlineLIFNode):
            out.append(LIFNode(tau=m.tau, decay_input=m.decay_input, v_threshold=m.v_threshold, v_reset=None,
                               surrogate_function=m.surrogate_function, step_mode="m"))
        else:
            out.append(SeqOp(copy.deepcopy(m)))
    return nn.Sequential(*out)
