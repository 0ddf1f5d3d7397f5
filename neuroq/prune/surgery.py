r"""Layer surgery for structured pruning of recurrent hidden units: one adapter per layer type.

Spectral pruning (Furuya et al., AISTATS 2022, arXiv 2105.10832; :mod:`neuroq.prune.spectral`)
keeps a subset :math:`J` of the :math:`m` hidden units and reconstructs the full hidden state
from the kept ones, :math:`h \approx \hat A_J h_J` (:math:`\hat A_J` is ``[m, m♯]``).  Every
weight matrix :math:`W` that *reads* the hidden state is then replaced by :math:`W \hat A_J`
(``[*, m♯]``) and every weight row that *produces* a removed unit is dropped.  For a plain RNN
:math:`h_t = \sigma(W_{hh} h_{t-1} + W_{hx} x_t + b)`, :math:`y_t = W_o h_t`:

.. math::
    W_{hh}^\sharp = (W_{hh})_{J,:}\,\hat A_J,\quad W_{hx}^\sharp = (W_{hx})_{J,:},\quad
    b^\sharp = b_J,\quad W_o^\sharp = W_o \hat A_J .

How a layer type exposes its hidden states and weights is described by a :class:`LayerAdapter`;
:func:`register_layer` adds a type (e.g. an LMU hidden layer) without touching this file::

    class MyLayerAdapter(LayerAdapter):
        def state_size(self, layer): return layer.hidden_size
        def attach(self, layer, sink):        # stream hidden states [..., m] to sink(0, h)
            return [layer.register_forward_hook(lambda mod, args, out: sink(0, out))]
        def recurrent_weights(self, layer, k): return layer.w_h          # [*, m] readers of h
        def incoming_weights(self, layer, k): return layer.w_in          # [m, *] rows per unit
        def shrink(self, layer, recons): ...                             # new, smaller layer

    register_layer(MyLayer, MyLayerAdapter())

Built in: ``torch.nn.RNN`` (tanh or ReLU, any ``num_layers``, ``batch_first`` either way, not
bidirectional), :class:`neuroq.layer.recurrent.SpikingRNN` and the Legendre Memory Unit's hidden
state (:class:`neuroq.layer.lmu.LMU` and :class:`~neuroq.layer.lmu.LMUCell`, :class:`LMUAdapter`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn as nn

from .. import _sj
from ..layer.lmu import LMU, LMUCell, LMUHiddenCell
from ..layer.recurrent import SpikingRNN
from ..neuron.hybrid import SpikingActivation

#: ``sink(k, h)`` receives the hidden states ``h`` (shape ``[..., m_k]``) of stacked state ``k``
Sink = Callable[[int, torch.Tensor], None]


@dataclass
class Reconstruction:
    r"""What to keep of one hidden state and how to reconstruct the rest.

    Attributes:
        kept: indices :math:`J` of the kept units, ascending (the order of the units in the pruned layer).
        A: reconstruction matrix :math:`\hat A_J` ``[m, len(kept)]`` (float64), :math:`h \approx A h_J`.
            Plain removal (no reconstruction) is the selection matrix ``I[:, kept]``.
    """

    kept: list
    A: torch.Tensor

    @property
    def index(self) -> torch.Tensor:
        """``kept`` as a ``long`` tensor (for indexing weight rows)."""
        return torch.as_tensor(self.kept, dtype=torch.long)


def absorb_columns(weight: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    r""":math:`W \hat A_J` computed in float64 and returned in ``weight``'s dtype and device."""
    return (weight.detach().to(torch.float64) @ A.to(device=weight.device, dtype=torch.float64)).to(weight.dtype)


def absorb_linear(linear: nn.Linear, recon: Reconstruction) -> nn.Linear:
    r"""A new ``nn.Linear(len(kept), out)`` computing :math:`W \hat A_J h_J + c` (the reader of the hidden state)."""
    new = nn.Linear(len(recon.kept), linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(absorb_columns(linear.weight, recon.A))
        if linear.bias is not None:
            new.bias.copy_(linear.bias)
    new.train(linear.training)
    return new


class LayerAdapter:
    """How pruning reads and rebuilds one recurrent layer type (subclass it and :func:`register_layer`).

    A layer may hold several stacked hidden states (``nn.RNN`` with ``num_layers > 1``); they are
    numbered ``k = 0 .. num_states - 1`` in the order data flows through them, all of size
    :meth:`state_size`.  The last state is the layer's output.
    """

    def check(self, layer: nn.Module) -> None:
        """Raise a clear error when this instance cannot be pruned (e.g. bidirectional)."""

    def num_states(self, layer: nn.Module) -> int:
        """How many stacked hidden states the layer has (1 by default)."""
        return 1

    def state_size(self, layer: nn.Module) -> int:
        """Units :math:`m` per hidden state (every subclass defines it)."""
        raise NotImplementedError

    def attach(self, layer: nn.Module, sink: Sink) -> list:
        """Install forward hooks that call ``sink(k, h)`` with each batch's hidden states; return the handles."""
        raise NotImplementedError

    def recurrent_weights(self, layer: nn.Module, k: int) -> torch.Tensor:
        """The matrix ``[*, m]`` inside the layer that reads state ``k`` at the next time step (e.g. W_hh)."""
        raise NotImplementedError

    def next_weights(self, layer: nn.Module, k: int) -> Optional[torch.Tensor]:
        """The matrix ``[*, m]`` of the next stacked state that reads state ``k``; ``None`` for the last state."""
        return None

    def incoming_weights(self, layer: nn.Module, k: int) -> torch.Tensor:
        """``[m, *]``: row ``j`` holds every weight into unit ``j`` of state ``k`` (magnitude baseline)."""
        raise NotImplementedError

    def shrink(self, layer: nn.Module, recons: list) -> nn.Module:
        """A new layer with ``len(recon.kept)`` units per state, weights absorbed as in the module docstring."""
        raise NotImplementedError


_ADAPTERS: "dict[type, LayerAdapter]" = {}


def register_layer(cls: type, adapter: LayerAdapter) -> None:
    """Teach :func:`neuroq.prune.spectral_prune` (and the baselines) a new recurrent layer type.

    Example::

        register_layer(LMULayer, LMULayerAdapter())   # see the module docstring for an adapter
    """
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"cls must be an nn.Module subclass, got {cls!r}")
    if not isinstance(adapter, LayerAdapter):
        raise TypeError(f"adapter must be a neuroq.prune.LayerAdapter, got {type(adapter).__name__}")
    _ADAPTERS[cls] = adapter


def adapter_for(module: nn.Module) -> Optional[LayerAdapter]:
    """The adapter registered for ``type(module)`` or its nearest base class, else ``None``."""
    for cls in type(module).__mro__:
        if cls in _ADAPTERS:
            return _ADAPTERS[cls]
    return None


def supported_layers() -> list:
    """Class names of the layer types that have an adapter (built in or :func:`register_layer` ed)."""
    return [c.__name__ for c in _ADAPTERS]


# ---- torch.nn.RNN -------------------------------------------------------------------------------
class RNNAdapter(LayerAdapter):
    r"""``torch.nn.RNN``:
    :math:`h^{(k)}_t = \sigma(W_{ih}^{(k)} h^{(k-1)}_t + b_{ih}^{(k)} + W_{hh}^{(k)} h^{(k)}_{t-1} + b_{hh}^{(k)})`,
    :math:`h^{(-1)} = x`.  Pruning state :math:`k` with the reconstruction :math:`(J_k, A_k)`:

    .. math::
        W_{hh}^{(k)\sharp} = W^{(k)}_{hh,J_k,:} A_k,\quad
        W_{ih}^{(k)\sharp} = W^{(k)}_{ih,J_k,:} A_{k-1}\ (\text{or } W^{(0)}_{ih,J_0,:}),\quad
        b_{ih}^{(k)\sharp} = b^{(k)}_{ih,J_k},\quad b_{hh}^{(k)\sharp} = b^{(k)}_{hh,J_k}.

    Both biases are kept (only their sum matters).  ``nn.RNN`` has one hidden size for all its
    layers, so every state keeps the same number of units.  With ``num_layers > 1`` the states of
    the inner layers are recomputed in the collection hook by single-layer copies (eval mode, so
    inter-layer dropout is off).  An initial state ``hx`` passed to the pruned layer must have
    the pruned size.
    """

    def check(self, layer):
        """Refuse bidirectional layers (and, defensively, modes or projections ``nn.RNN`` does not have)."""
        if layer.mode not in ("RNN_TANH", "RNN_RELU"):  # pragma: no cover - nn.RNN is always one of these
            raise ValueError(f"nn.RNN mode {layer.mode!r} is not supported")
        if layer.bidirectional:
            raise ValueError("pruning a bidirectional nn.RNN is not supported (the two directions would need "
                             "one shared unit subset); use bidirectional=False")
        if getattr(layer, "proj_size", 0):  # pragma: no cover - nn.RNN has no projections
            raise ValueError("nn.RNN with proj_size is not supported")

    def num_states(self, layer):
        """``num_layers``: one state per stacked layer."""
        return layer.num_layers

    def state_size(self, layer):
        """``hidden_size``."""
        return layer.hidden_size

    @staticmethod
    def _single(layer: nn.RNN, k: int) -> nn.RNN:
        ref = getattr(layer, f"weight_ih_l{k}")
        sub = nn.RNN(ref.shape[1], layer.hidden_size, 1, nonlinearity=layer.nonlinearity, bias=layer.bias,
                     batch_first=layer.batch_first, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if layer.bias else ()):
                getattr(sub, f"{name}_l0").copy_(getattr(layer, f"{name}_l{k}"))
        return sub.eval()

    def attach(self, layer, sink):
        """One forward hook: the layer's output sequence as state 0, or, with several layers, every layer's
        outputs recomputed by single-layer copies; ``PackedSequence`` input is refused."""
        def output_of(out):
            y = out[0]
            if isinstance(y, nn.utils.rnn.PackedSequence):
                raise TypeError("spectral pruning: PackedSequence inputs to nn.RNN are not supported; "
                                "pass padded tensors of equal length")
            return y

        if layer.num_layers == 1:
            def hook(mod, args, out):
                sink(0, output_of(out))
            return [layer.register_forward_hook(hook)]

        singles = [self._single(layer, k) for k in range(layer.num_layers)]

        def hook_stacked(mod, args, kwargs, out):
            output_of(out)
            x = args[0]
            hx = args[1] if len(args) > 1 else kwargs.get("hx")
            for k, sub in enumerate(singles):
                x, _ = sub(x, None if hx is None else hx[k:k + 1])
                sink(k, x)
        return [layer.register_forward_hook(hook_stacked, with_kwargs=True)]

    def recurrent_weights(self, layer, k):
        """:math:`W_{hh}^{(k)}` ``[m, m]``."""
        return getattr(layer, f"weight_hh_l{k}")

    def next_weights(self, layer, k):
        """:math:`W_{ih}^{(k+1)}` ``[m, m]`` of the next stacked layer; ``None`` for the last one."""
        return getattr(layer, f"weight_ih_l{k + 1}") if k + 1 < layer.num_layers else None

    def incoming_weights(self, layer, k):
        r""":math:`[W_{ih}^{(k)}\; W_{hh}^{(k)}]`, one row per unit."""
        return torch.cat([getattr(layer, f"weight_ih_l{k}"), getattr(layer, f"weight_hh_l{k}")], dim=1)

    def shrink(self, layer, recons):
        """A new ``nn.RNN`` with the kept units, weights as in the class docstring; ``ValueError`` unless every
        state keeps the same number of units."""
        sizes = {len(f.kept) for f in recons}
        if len(sizes) != 1:
            raise ValueError(f"nn.RNN needs the same number of kept units in every layer, got {sorted(sizes)}")
        ref = layer.weight_hh_l0
        new = nn.RNN(layer.input_size, sizes.pop(), layer.num_layers, nonlinearity=layer.nonlinearity,
                     bias=layer.bias, batch_first=layer.batch_first, dropout=layer.dropout,
                     bidirectional=False, device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for k, f in enumerate(recons):
                idx = f.index.to(ref.device)
                w_ih = getattr(layer, f"weight_ih_l{k}")[idx]
                if k > 0:
                    w_ih = absorb_columns(w_ih, recons[k - 1].A)
                getattr(new, f"weight_ih_l{k}").copy_(w_ih)
                getattr(new, f"weight_hh_l{k}").copy_(absorb_columns(getattr(layer, f"weight_hh_l{k}")[idx], f.A))
                if layer.bias:
                    getattr(new, f"bias_ih_l{k}").copy_(getattr(layer, f"bias_ih_l{k}")[idx])
                    getattr(new, f"bias_hh_l{k}").copy_(getattr(layer, f"bias_hh_l{k}")[idx])
        new.train(layer.training)
        return new


# ---- neuroq SpikingRNN ---------------------------------------------------------------------------
class SpikingRNNAdapter(LayerAdapter):
    r""":class:`~neuroq.layer.recurrent.SpikingRNN`, spikes :math:`s_t` as the hidden states:

    .. math::
        W_x^\sharp = (W_x)_{J,:},\quad b^\sharp = b_J,\quad W_h^\sharp = (W_h)_{J,:}\hat A_J,\quad
        W_o^\sharp = W_o \hat A_J .

    **What is exact and what is not.**  The absorption replaces the recurrent current
    :math:`W_h s_{t-1}` seen by a kept unit by :math:`W_h \hat A_J s_{J,t-1}`; it is exact at every
    step where the spike vector is a linear function of the kept spikes, :math:`s = \hat A_J s_J`
    (e.g. removed units whose spike trains duplicate kept units, or keeping all units), and then
    the pruned layer emits exactly the kept units' original spikes.  Otherwise it is an
    approximation that is *worse* than for tanh/ReLU RNNs: (i) binary spike trains are poorly
    linearly predictable from each other (each unit's Bernoulli variance sits on the diagonal of
    :math:`\hat\Sigma`), (ii) the current error passes through a threshold, so a small error can
    flip a spike, and a flipped spike changes the membrane potential, which carries the error on
    to later steps (the reset makes the map non-Lipschitz, unlike :math:`\sigma` =
    tanh/ReLU, where a current error :math:`\delta` moves the state by at most :math:`|\delta|`),
    and (iii) the reconstruction is fitted on the unpruned network's spikes, while the pruned
    network's spikes drift from them.  The readout's absorption :math:`W_o\hat A_J` is exact in the same
    cases and is the least-squares (ridge) best linear readout of the original spikes otherwise;
    the readout of a time mean of spikes absorbs the same way (the mean is linear).
    The membrane potentials of removed units are simply dropped (they only act through spikes).
    """

    def state_size(self, layer):
        """``hidden_size``."""
        return layer.hidden_size

    def attach(self, layer, sink):
        """A forward hook sending the layer's output spikes to ``sink(0, s)``."""
        return [layer.register_forward_hook(lambda mod, args, out: sink(0, out))]

    def recurrent_weights(self, layer, k):
        """:math:`W_h` (``layer.hh.weight``, ``[m, m]``)."""
        return layer.hh.weight

    def incoming_weights(self, layer, k):
        r""":math:`[W_x\; W_h]`, one row per unit."""
        return torch.cat([layer.ih.weight, layer.hh.weight], dim=1)

    def shrink(self, layer, recons):
        """A reset copy of the layer (same LIF parameters) with the kept units, weights as in the class docstring."""
        (f,) = recons
        new = copy.deepcopy(layer)       # same LIF parameters, surrogate, step mode
        new.reset()
        idx = f.index.to(layer.hh.weight.device)
        k = len(f.kept)
        ih, hh = layer.ih, layer.hh
        new.hidden_size = k
        new.ih = nn.Linear(ih.in_features, k, bias=ih.bias is not None, device=ih.weight.device, dtype=ih.weight.dtype)
        new.hh = nn.Linear(k, k, bias=False, device=hh.weight.device, dtype=hh.weight.dtype)
        with torch.no_grad():
            new.ih.weight.copy_(ih.weight[idx])
            if ih.bias is not None:
                new.ih.bias.copy_(ih.bias[idx])
            new.hh.weight.copy_(absorb_columns(hh.weight[idx], f.A))
        new.train(layer.training)
        return new


# ---- neuroq LMU (hidden state h) ----------------------------------------------------------------------
class LMUAdapter(LayerAdapter):
    r"""The hidden state :math:`h_t` of a Legendre Memory Unit (:class:`neuroq.layer.lmu.LMUCell`, and
    :class:`~neuroq.layer.lmu.LMU` through its ``cell``) with the default hidden cell
    :class:`~neuroq.layer.lmu.LMUHiddenCell`:

    .. math::
        u_t = W_x x_t + W_h h_{t-1} + W_m m_{t-1} + b,\quad m_t = \bar A m_{t-1} + \bar B u_t,\quad
        h_t = f(W [m_t; x_t] + U h_{t-1} + c)

    (:math:`W_h` only with ``hidden_to_memory``, :math:`U` only with ``hidden_recurrent``).  The units
    are those of :math:`h`; the memory :math:`m` is not pruned.  What *produces* unit :math:`j` is row
    :math:`j` of :math:`W`, :math:`c` and :math:`U`; what *reads* :math:`h` is :math:`U`, the encoder
    :math:`W_h` and the readout.  Pruning with the reconstruction :math:`(J, \hat A_J)`:

    .. math::
        W^\sharp = W_{J,:},\quad c^\sharp = c_J,\quad U^\sharp = U_{J,:}\hat A_J,\quad
        W_h^\sharp = W_h \hat A_J,\quad W_o^\sharp = W_o \hat A_J .

    The downstream weights of the output loss (``z='both'``) are :math:`U` and :math:`W_h` stacked
    (``'recurrent'``; an empty ``[0, m]`` matrix for a feed-forward hidden cell without
    ``hidden_to_memory``) and the readout.  The hidden states are collected at the output of the
    cell's activation, so every step is seen in all forms (FFT or recurrent, ``return_sequences``
    either way).  Exact when :math:`h = \hat A_J h_J` (e.g. keep all units, or removed units that
    duplicate kept ones), as for :class:`RNNAdapter`.  A hybrid-spiking hidden activation
    (:class:`neuroq.neuron.SpikingActivation`) keeps its per-unit initial state for the kept units when
    it is a tensor; with ``initial_state='random'`` the smaller layer draws other phases, so its counts
    are not bit-identical even when the absorption is exact (``'zeros'`` is exact).  Custom hidden cells need
    their own adapter (:func:`register_layer`).
    """

    @staticmethod
    def _cell(layer) -> LMUCell:
        return layer.cell if isinstance(layer, LMU) else layer

    def check(self, layer):
        """Refuse hidden cells other than :class:`~neuroq.layer.lmu.LMUHiddenCell` and activations that are not
        modules (they cannot be hooked)."""
        cell = self._cell(layer)
        if not isinstance(cell.hidden_cell, LMUHiddenCell):
            raise TypeError(f"pruning an LMU needs the default hidden cell (neuroq.layer.lmu.LMUHiddenCell); got "
                            f"{type(cell.hidden_cell).__name__}: register an adapter for it with "
                            "neuroq.prune.register_layer")
        if not isinstance(cell.hidden_cell.activation, nn.Module):
            raise TypeError("pruning an LMU needs the hidden activation to be an nn.Module (its output is hooked to "
                            f"collect the hidden states); got {cell.hidden_cell.activation!r}")

    def state_size(self, layer):
        """The cell's ``hidden_size``."""
        return self._cell(layer).hidden_size

    def attach(self, layer, sink):
        """A forward hook on the hidden cell's activation sending :math:`h` to ``sink(0, h)``."""
        act = self._cell(layer).hidden_cell.activation
        return [act.register_forward_hook(lambda mod, args, out: sink(0, out))]

    def recurrent_weights(self, layer, k):
        """:math:`U` and :math:`W_h` stacked (those present); ``[0, m]`` when neither is."""
        cell = self._cell(layer)
        ws = [w for w in (cell.hidden_cell.recurrent_kernel, cell.hidden_encoder) if w is not None]
        if not ws:
            ref = cell.hidden_cell.kernel.weight
            return torch.zeros(0, cell.hidden_size, dtype=ref.dtype, device=ref.device)
        return torch.cat([w.weight for w in ws], 0)

    def incoming_weights(self, layer, k):
        r""":math:`[W\; U]` (``U`` only with ``hidden_recurrent``), one row per unit."""
        hc = self._cell(layer).hidden_cell
        ws = [hc.kernel.weight] + ([hc.recurrent_kernel.weight] if hc.recurrent_kernel is not None else [])
        return torch.cat(ws, 1)

    def shrink(self, layer, recons):
        """A reset copy of the LMU (or cell) with the kept hidden units, weights as in the class docstring; the
        memory is unchanged."""
        (f,) = recons
        new = copy.deepcopy(layer)
        cell = self._cell(new)
        hc = cell.hidden_cell
        idx = f.index.to(hc.kernel.weight.device)
        k = len(f.kept)
        old_k = hc.kernel
        kern = nn.Linear(old_k.in_features, k, bias=old_k.bias is not None, device=old_k.weight.device,
                         dtype=old_k.weight.dtype)
        with torch.no_grad():
            kern.weight.copy_(old_k.weight[idx])
            if old_k.bias is not None:
                kern.bias.copy_(old_k.bias[idx])
        hc.kernel = kern
        if hc.recurrent_kernel is not None:
            old_u = hc.recurrent_kernel
            rec = nn.Linear(k, k, bias=False, device=old_u.weight.device, dtype=old_u.weight.dtype)
            with torch.no_grad():
                rec.weight.copy_(absorb_columns(old_u.weight[idx], f.A))
            hc.recurrent_kernel = rec
        if cell.hidden_encoder is not None:
            old_h = cell.hidden_encoder
            enc = nn.Linear(k, old_h.out_features, bias=old_h.bias is not None, device=old_h.weight.device,
                            dtype=old_h.weight.dtype)
            with torch.no_grad():
                enc.weight.copy_(absorb_columns(old_h.weight, f.A))
                if old_h.bias is not None:
                    enc.bias.copy_(old_h.bias)
            cell.hidden_encoder = enc
        act = hc.activation
        if isinstance(act, SpikingActivation) and act.initial_v is not None and act.initial_v.dim() >= 1 \
                and act.initial_v.shape[-1] == f.A.shape[0]:
            act.initial_v = act.initial_v[..., idx.to(act.initial_v.device)].clone()
        hc.hidden_size = cell.hidden_size = k
        for mod in new.modules():
            if isinstance(mod, _sj.MemoryModule):
                mod.reset()
        new.train(layer.training)
        return new


register_layer(nn.RNN, RNNAdapter())
register_layer(SpikingRNN, SpikingRNNAdapter())
register_layer(LMUCell, LMUAdapter())
register_layer(LMU, LMUAdapter())
