r"""Energy-aware training: the spiking synaptic penalty (Suetake, Ushimaru, Saiin, Sawada, arXiv
2302.01500) and the firing-rate baselines.  The penalty counts with the meter's own rules, so with
``p = 1`` its value equals :class:`neuroq.energy.EnergyMeter`'s SOPs for the same batch."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn

from .._validate import check_choice, check_int, check_real
from .meter import _Hooked, samples_in_call
from .models import energy_models, get_energy_model
from .rules import (_CONVS, _TCONVS, CONV_FANOUTS, SynapseRule, check_real_input, is_spike_tensor, merge_time,
                    synaptic_fns)

#: the paper's penalty and the rate baselines; every energy model name is a kind too (:class:`ModelPenalty`)
PENALTY_KINDS = ("synaptic", "rate-l1", "rate-l2")


def penalty_kinds() -> tuple:
    """Every kind :func:`make_penalty` takes: :data:`PENALTY_KINDS` and the registered energy models."""
    return PENALTY_KINDS + tuple(energy_models())


class SpikePenalty(_Hooked):
    r"""Differentiable penalty on the spikes that enter a model's synaptic layers.

    Base class of :class:`SynapticPenalty` (each spike weighted by the fan-out of the layer that
    receives it: the energy metric itself) and :class:`RatePenalty` (plain spike count, no
    fan-out weighting).  Forward hooks on the synaptic layers (the same layers, found by the same
    :func:`synaptic_fns` rule, as :class:`~neuroq.energy.EnergyMeter`) collect a differentiable term from each
    layer's spike input during the forward pass; :meth:`penalty` returns their sum (per sample
    with ``normalize='sample'``) and clears the buffer.

    .. math::
        \Omega^{(p)}(x) = \frac{1}{N}\sum_{l}\sum_{e} w^l_e \, \big(c^l_e\big)^p ,\qquad
        c^l_e = \sum_{t} s^l_e[t]

    * :math:`e` runs over the elements (presynaptic neurons, per sample) of layer :math:`l`'s input;
    * :math:`c^l_e` is the **per-sample spike count of that element over the time steps the layer
      sees in one call**: :math:`T` in multi-step mode (``[T, N, ...]`` input, or the ``[T*N, ...]``
      input of a ``SeqToANNContainer``), one step in single-step mode (then :math:`c\in\{0,1\}`);
    * :math:`w^l_e` is the fan-out of element :math:`e` (synaptic penalty) or 1 (rate penalty).

    **What p acts on.**  The power is applied to :math:`c^l_e`, the time-aggregated spike count of
    one presynaptic neuron for one sample, *before* the fan-out weighting.  With :math:`p=1` the
    value is exactly the (fan-out weighted) spike count, computed with the layer's own SOP rule
    (``sop_fn``), so the synaptic penalty equals :class:`~neuroq.energy.EnergyMeter`'s SOPs for the same batch.
    For binary single-step spikes :math:`c^p = c`, so the value does not depend on :math:`p` and
    only the gradient :math:`p\,c^{p-1}` changes (the reading of Suetake et al. 2023, arXiv
    2302.01500, where :math:`p=1` works best).  For :math:`p<1` the gradient of :math:`c^p` is
    unbounded at :math:`c=0`; the power is then smoothed as :math:`(c+\epsilon)^p-\epsilon^p`
    (``eps``), which is 0 at 0 and tends to :math:`c^p` as ``eps`` -> 0.

    Args:
        model: any ``nn.Module``; works with neuroq and SpikingJelly neurons, single or multi-step.
        p: exponent (> 0).
        normalize: ``'sample'`` (divide by the number of samples seen, the meter's
            ``*_per_sample`` convention) or ``'none'`` (sum over the batch).
        graded: treat non-negative integer inputs as spike counts (as the meter's ``graded``).
        batch_dim: ``'auto'`` (default), or the axis of the model's first input that indexes samples,
            as :class:`~neuroq.energy.EnergyMeter`'s.
        skip_no_grad: do not collect during forward passes run under ``torch.no_grad()`` (so an
            evaluation between training steps never leaks into the next penalty).
        eps: smoothing of the power for ``p < 1`` (see above).
    """

    #: whether each spike is weighted by its fan-out
    fanout_weighted = True

    def __init__(self, model: nn.Module, p: float = 1.0, normalize: str = "sample", graded: bool = False,
                 batch_dim="auto", skip_no_grad: bool = True, eps: float = 1e-3,
                 conv_fanout: str = "nominal"):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.p = check_real("p", p, gt=0)
        self.normalize = check_choice("normalize", normalize, ("sample", "none"))
        if not isinstance(graded, bool):
            raise TypeError(f"graded must be True or False, got {graded!r}")
        self.graded = graded
        self.batch_dim = batch_dim if batch_dim == "auto" else check_int("batch_dim", batch_dim, ge=0)
        if not isinstance(skip_no_grad, bool):
            raise TypeError(f"skip_no_grad must be True or False, got {skip_no_grad!r}")
        self.skip_no_grad = skip_no_grad
        self.eps = check_real("eps", eps, gt=0)
        self.conv_fanout = check_choice("conv_fanout", conv_fanout, CONV_FANOUTS)
        self._handles = []
        self._fanout_cache: dict = {}
        self._tn = None
        self.clear()

    # ---- hooks --------------------------------------------------------------------------
    def clear(self) -> None:
        """Drop what was collected since the last :meth:`penalty`."""
        self._terms: list = []
        self._per_layer: "OrderedDict[str, list]" = OrderedDict()
        self.samples = 0

    def start(self) -> "SpikePenalty":
        """Hook every synaptic layer of the model (and the model itself, to count samples); returns ``self``.
        Idempotent; ``ValueError`` when the model has no synaptic layer.  :meth:`stop` removes the hooks."""
        if self._handles:
            return self
        n_layers = 0
        for name, m in self.model.named_modules():
            fns = synaptic_fns(m)
            if fns is not None:
                self._handles.append(m.register_forward_hook(self._hook(name or type(m).__name__, fns[0])))
                n_layers += 1
        if n_layers == 0:
            raise ValueError(f"{type(self).__name__}: model has no synaptic layer (Linear/Conv or a type "
                             "registered with neuroq.energy.register_synaptic) to penalize")
        self._handles.append(self.model.register_forward_pre_hook(self._count_samples))
        return self


    def _count_samples(self, module, args):
        if self.skip_no_grad and not torch.is_grad_enabled():
            return
        if args and isinstance(args[0], torch.Tensor):
            new, t, n = samples_in_call(self.model, args[0], self.batch_dim)
            self._tn = (t, n)
            self.samples += new

    def _hook(self, key, sop_fn):
        def hook(m, args, out):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            if self.skip_no_grad and not torch.is_grad_enabled():
                return
            x = args[0]
            if not is_spike_tensor(x, self.graded):
                check_real_input(x, key)
                return  # real-valued input: MACs, not penalized (as the meter charges it)
            if not x.is_floating_point():
                x = x.float()
            elif x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()  # exact counts under autocast
            term = self._term(m, x, sop_fn, out)
            self._terms.append(term)
            self._per_layer.setdefault(key, []).append(term)
        return hook

    # ---- the per-layer term -------------------------------------------------------------
    def _counts(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample spike counts ``[N, *features]`` of one call's input (summed over its time axis)."""
        if self._tn is None:
            return x
        t, n = self._tn
        if x.dim() >= 2 and x.shape[0] == t and x.shape[1] == n and t > 1:
            return x.sum(0)  # [T, N, ...]
        if t > 1 and x.shape[0] == t * n:
            return x.reshape(t, n, *x.shape[1:]).sum(0)  # [T*N, ...] (SeqToANNContainer)
        return x  # [N, ...] single step (or an unknown layout: per-element, no time aggregation)

    def _fanout_map(self, m: nn.Module, feat: tuple, sop_fn, x: torch.Tensor) -> torch.Tensor:
        """Fan-out of each input element (shape ``feat``): the gradient of the layer's (linear) SOP rule."""
        key = (id(m), feat, self.conv_fanout, x.dtype, x.device)
        f = self._fanout_cache.get(key)
        if f is None:
            with torch.enable_grad():
                z = torch.zeros((1, *feat), dtype=x.dtype, device=x.device, requires_grad=True)
                (f,) = torch.autograd.grad(sop_fn(m, _conv_layout(m, z), self.conv_fanout), z)
            f = f[0].detach()
            self._fanout_cache[key] = f
        return f

    def _power(self, c: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return c
        if self.p < 1.0:
            return (c + self.eps) ** self.p - self.eps ** self.p
        return c ** self.p

    def _term(self, m: nn.Module, x: torch.Tensor, sop_fn, out=None) -> torch.Tensor:
        if self.p == 1.0:
            if self.fanout_weighted:
                return sop_fn(m, _conv_layout(m, x), self.conv_fanout)  # the meter's own rule
            return x.sum()
        c = self._counts(x)
        cp = self._power(c)
        if not self.fanout_weighted:
            return cp.sum()
        f = self._fanout_map(m, tuple(c.shape[1:]), sop_fn, c)
        return (cp * f).sum()

    # ---- results ------------------------------------------------------------------------
    def penalty(self, clear: bool = True) -> torch.Tensor:
        """The collected penalty (a differentiable scalar; per sample with ``normalize='sample'``); 0 when nothing
        was collected since the last call (no forward pass, or only real-valued inputs)."""
        if self._terms:
            total = torch.stack([t.reshape(()) for t in self._terms]).sum()
        else:
            total = torch.zeros(())
        if self.normalize == "sample" and self.samples:
            total = total / self.samples
        if clear:
            self.clear()
        return total

    def per_layer(self) -> "OrderedDict[str, float]":
        """Collected value per synaptic layer (floats, normalized like :meth:`penalty`; does not clear)."""
        d = self.samples if (self.normalize == "sample" and self.samples) else 1
        return OrderedDict((k, float(sum(float(t.detach()) for t in v)) / d) for k, v in self._per_layer.items())

    def __call__(self) -> torch.Tensor:
        return self.penalty()

    def __repr__(self):
        return (f"{type(self).__name__}(p={self.p}, normalize={self.normalize!r}, conv_fanout={self.conv_fanout!r}, "
                f"layers={sum(1 for _ in self._handles) - 1 if self._handles else 0})")


def _conv_layout(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A conv's input with a multi-step time axis merged into the batch (:func:`neuroq.energy.rules.merge_time`)."""
    return merge_time(m, x) if isinstance(m, _CONVS + _TCONVS) else x


class SynapticPenalty(SpikePenalty):
    r"""Spiking synaptic penalty (Suetake, Ushimaru, Saiin, Sawada, arXiv 2302.01500).

    The penalty is the energy metric itself: every spike that enters a synaptic layer is weighted
    by the layer's fan-out (the number of weights it is multiplied with), so with ``p = 1`` its
    value is the number of synaptic operations per sample, :math:`\#SOP(x)`, exactly as
    :class:`~neuroq.energy.EnergyMeter` counts them, and :math:`E_{SNN}(x) = E_{AC}\cdot\Omega_{syn}(x)` for the
    spiking layers:

    .. math::
        \Omega_{syn}^{(p)}(x) = \frac{1}{N}\sum_l \sum_e f^l_e\,(c^l_e)^p, \qquad
        L = L_{task} + \lambda\,\Omega_{syn}^{(p)}

    with :math:`f^l_e` = ``out_features`` (linear), :math:`C_{out}k_hk_w/(s_hs_w)` (conv,
    ``conv_fanout='nominal'``) or the border-aware count (``'exact'``), and :math:`c^l_e` the
    per-sample spike count of presynaptic element :math:`e` (see :class:`SpikePenalty` for what
    ``p`` acts on).  With ``p = 1`` the gradient with respect to a neuron's membrane potential is
    :math:`f\,\sigma'(H-V_{th})/N` (fan-out times surrogate derivative; in multi-step mode the
    same-step part, later steps add their own terms through the membrane recurrence).

    Usage::

        pen = SynapticPenalty(model).start()
        loss = F.cross_entropy(model(x).mean(0), y) + lam * pen.penalty()
    """

    fanout_weighted = True


class RatePenalty(SpikePenalty):
    r"""Firing-rate (spiking-activity) penalty: the baseline without fan-out weighting.

    .. math::
        \Omega_{act}^{(p)}(x) = \frac{1}{N}\sum_l \sum_e (c^l_e)^p

    over the same spikes as :class:`SynapticPenalty` (those entering synaptic layers); ``p = 1`` is
    the L1 penalty (total spike count), ``p = 2`` the L2 penalty (squared per-neuron spike counts).
    It treats all layers alike and so does not match :math:`E_{SNN}` (Suetake et al.,
    arXiv 2302.01500, compare against this "spiking activity" penalty).  ``conv_fanout`` is unused.
    """

    fanout_weighted = False


class ModelPenalty(SpikePenalty):
    r"""Training against the energy model you report: the differentiable spike-driven part of an energy
    model (:meth:`neuroq.energy.EnergyModel.spike_energy`), in pJ per sample.

    For every spike input entering a synaptic layer it adds the energy the model charges per input spike:
    under ``'lemaire'`` the accumulates, address computations, FIFO read, weight reads and the potential
    reads and writes the spike causes at each synapse it meets; under ``'simple'`` the accumulate and the
    weight read of every synapse it meets (border-aware); under ``'compute'`` :math:`E_{AC}` per SOP (the
    synaptic penalty times :math:`E_{AC}`).  Each of these is linear in the spikes, so the value equals the
    :class:`~neuroq.energy.EnergyMeter`'s energy of the same layers' spike inputs (bias and neuron terms
    excluded: they do not depend on the spikes a layer receives) for the same batch, and its gradient is
    the model's cost per spike times the surrogate gradient.

    Usage::

        pen = ModelPenalty(model, energy="lemaire").start()
        loss = F.cross_entropy(model(x).mean(0), y) + lam * pen.penalty()     # lam per pJ
    """

    fanout_weighted = True

    def __init__(self, model: nn.Module, energy="lemaire", **kwargs):
        if kwargs.get("p", 1.0) != 1.0:
            raise ValueError("ModelPenalty prices spikes linearly (p = 1); use SynapticPenalty for another exponent")
        self.energy = get_energy_model(energy)
        super().__init__(model, **kwargs)

    def _term(self, m: nn.Module, x: torch.Tensor, sop_fn, out=None) -> torch.Tensor:
        rule = SynapseRule(sop_fn, None, self.conv_fanout)
        return self.energy.spike_energy(m, _conv_layout(m, x), out, rule)

    def __repr__(self):
        return f"ModelPenalty(energy={self.energy!r}, normalize={self.normalize!r})"


def make_penalty(kind: str, model: nn.Module, **kwargs) -> SpikePenalty:
    """``'synaptic'`` -> :class:`SynapticPenalty` (p=1 unless given), ``'rate-l1'`` / ``'rate-l2'`` ->
    :class:`RatePenalty` with p = 1 / 2, an energy model name (``'lemaire'``, ``'simple'`` ...) ->
    :class:`ModelPenalty` under that model.  The hooks are not started (call ``.start()``)."""
    check_choice("kind", kind, penalty_kinds())
    if kind not in PENALTY_KINDS:
        return ModelPenalty(model, energy=kind, **kwargs)
    if kind == "synaptic":
        return SynapticPenalty(model, **kwargs)
    if "p" in kwargs:
        raise ValueError(f"p is fixed by kind={kind!r}; use RatePenalty(model, p=...) for another exponent")
    return RatePenalty(model, p=1.0 if kind == "rate-l1" else 2.0, **kwargs)
