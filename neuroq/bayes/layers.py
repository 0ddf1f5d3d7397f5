r"""Linear and convolutional layers whose weights follow a Gaussian-mixture variational posterior.

For the layer's parameters :math:`\theta = (W, b)` (Furuya et al., arXiv 2202.13059):

.. math::
    q(\theta) = \sum_{k=1}^K w_k\,\mathcal N\!\big(\theta;\ \mu_k,\ \mathrm{diag}\,\sigma_k^2\big),\qquad
    \sigma_k = \mathrm{softplus}(\rho_k),\qquad
    y = W x + b \ \text{ with }\ (W, b) = \mu_k + \sigma_k\odot\varepsilon,\ k\sim\mathrm{Cat}(w)

(``k`` and :math:`\varepsilon` are one draw of the layer's :class:`~neuroq.bayes.mixture.MixtureGroup`;
gradients are pathwise, see :mod:`neuroq.bayes.mixture`).  Each layer owns its parameters, stored per
component: ``weight_means``/``weight_rhos`` ``[K, *weight.shape]`` and ``bias_means``/``bias_rhos``
``[K, out]``.  The mixing logits and the held draw belong to the group, which ``layer.group`` names: a
submodule of the group's first layer only, a plain reference in the others (so a network's
``state_dict`` holds the shared logits once, e.g. ``0.group.logits``).

**Sampling granularity.**  One weight sample serves the whole minibatch and all ``T`` time steps of
one input (no per-example sampling: the local reparameterisation trick and flipout would draw
independent noise per example *and per time step*, which breaks a weight held over the ``T`` steps
of a spiking network, and for a mixture they would need ``K`` matmuls per call).  The gradient
estimate is that of one weight sample per minibatch, as in bayesian-torch's
``LinearReparameterization``.  When a new sample is drawn is the group's ``resample`` policy:
``'forward'`` (a new one per call) or ``'reset'`` (held until SpikingJelly's ``reset_net``).

**Multi-step input.**  The layers take single-step ``[N, ...]`` or multi-step ``[T, N, ...]`` input
(linear: any leading dimensions; conv: rank 4 or rank 5, flattened to ``[T·N, ...]``), and work
inside SpikingJelly's ``SeqToANNContainer``; either way one weight sample is used for all ``T`` steps.
They have no ``step_mode`` attribute, so ``functional.set_step_mode`` leaves them alone.

The layers are registered with :class:`neuroq.energy.EnergyMeter` (same fan-out as ``nn.Linear`` /
``nn.Conv2d``).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as tF

from .._validate import check_choice, check_int, check_real
from .mixture import MixtureGroup, inverse_softplus
from .priors import check_prior


def _pair(v, name):
    if isinstance(v, int) and not isinstance(v, bool):
        return (check_int(name, v, ge=0),) * 2
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return tuple(check_int(name, int(x), ge=0) for x in v)
    raise TypeError(f"{name} must be an int or a pair of ints, got {v!r}")


def _jittered_means(mean: torch.Tensor, K: int, init_scale: float, mean_jitter: float) -> torch.Tensor:
    """``K`` copies of a trained tensor plus ``init_scale · mean_jitter · N(0, 1)`` noise, ``[K, ...]``."""
    check_real("init_scale", init_scale, gt=0)
    check_real("mean_jitter", mean_jitter, ge=0)
    means = mean.detach().unsqueeze(0).repeat(K, *([1] * mean.dim())).clone()
    if mean_jitter > 0:
        means += init_scale * mean_jitter * torch.randn_like(means)
    return means


def _group_K(K, group):
    if group is not None:
        return group.K
    return 2 if K is None else check_int("K", K, ge=1)


class GaussianMixtureLayer(nn.Module):
    """Base of the mixture layers: per-component means and scales, a shared group, a prior.

    Subclasses call :meth:`_add_block` for each parameter tensor and use :meth:`sampled` in forward.
    Without ``group`` the layer makes its own :class:`~neuroq.bayes.MixtureGroup` (attached to the layer:
    ``resample='forward'`` draws at every call of it).  The group becomes a submodule (``group``) of the
    first layer that joins it; later members keep ``group`` as a plain attribute, not a submodule.
    """

    def __init__(self, K: Optional[int], prior, init_scale: float, mixing: str, resample: str,
                 group: Optional[MixtureGroup], weight_grad: str = "pathwise"):
        super().__init__()
        self.init_scale = check_real("init_scale", init_scale, gt=0)
        if group is None:
            group = MixtureGroup(2 if K is None else K, mixing, resample, weight_grad)
            group.attach(self)
        elif not isinstance(group, MixtureGroup):
            raise TypeError(f"group must be a neuroq.bayes.MixtureGroup or None, got {type(group).__name__}")
        elif K is not None and check_int("K", K, ge=1) != group.K:
            raise ValueError(f"K={K} differs from the group's K={group.K}")
        if group.blocks():  # the group has a first member already, which owns it: refer to it
            object.__setattr__(self, "group", group)
        else:               # the first member: the group is its submodule
            self.group = group
        self.prior = check_prior(prior)
        self._block_names: list = []

    @property
    def owns_group(self) -> bool:
        """Whether the group is a submodule of this layer (its first member) rather than a reference."""
        return self._modules.get("group") is not None

    @property
    def K(self) -> int:
        """Number of mixture components (the group's)."""
        return self.group.K

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # state dicts written before the group had one owner repeat it under every member layer
        # (``2.group.logits`` next to ``0.group.logits``, the same tensor): the copies are skipped
        if not self.owns_group:
            for key in [k for k in state_dict if k.startswith(prefix + "group.")]:
                del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _add_block(self, name: str, means: torch.Tensor, init_scale: float) -> None:
        """Register ``<name>_means = means [K, ...]`` and ``<name>_rhos`` (σ = ``init_scale``)."""
        setattr(self, f"{name}_means", nn.Parameter(means))
        rho = inverse_softplus(torch.tensor(float(init_scale), dtype=torch.float64)).item()
        setattr(self, f"{name}_rhos", nn.Parameter(torch.full_like(means, rho)))
        self._block_names.append(name)
        self.group.register_block(self, name)

    def _add_weight_and_bias(self, shape: tuple, bias: bool, init_scale: float, means=None) -> None:
        """The ``weight`` block of ``shape`` [out, ...] (and ``bias`` [out]). The means are K independent
        draws of torch's default initialisation of ``nn.Linear``/``nn.Conv2d`` (uniform in
        ±1/√fan_in), or ``means = (weight [K, *shape], bias [K, out] or None)`` as given."""
        if means is None:
            bound = 1.0 / math.sqrt(math.prod(shape[1:]))
            wm = torch.empty(self.group.K, *shape).uniform_(-bound, bound)
            bm = torch.empty(self.group.K, shape[0]).uniform_(-bound, bound) if bias else None
        else:
            wm, bm = means
        self._add_block("weight", wm, init_scale)
        if bias:
            self._add_block("bias", bm, init_scale)
        self.has_bias = bool(bias)

    def scales(self, name: str) -> torch.Tensor:
        r""":math:`\sigma_k = \mathrm{softplus}(\rho_k)` of block ``name`` (``'weight'``/``'bias'``), ``[K, ...]``."""
        return tF.softplus(getattr(self, f"{name}_rhos"))

    def sampled(self, name: str) -> torch.Tensor:
        """The held weight sample of block ``name`` (pathwise gradients)."""
        for i, (layer, n) in enumerate(self.group.blocks()):
            if layer is self and n == name:
                return self.group.sample_block(i)
        raise KeyError(f"{type(self).__name__} has no block {name!r} in its group")

    def sample_parameters(self) -> dict:
        """``{name: tensor}`` of the held sample (e.g. ``{'weight': W, 'bias': b}``)."""
        return {n: self.sampled(n) for n in self._block_names}

    def expected_log_prior(self, kind: str = "auto") -> torch.Tensor:
        r""":math:`\mathbb E_q[\log p(\theta)]` of this layer's parameters, summed over all of them.

        ``kind='analytic'``: :math:`\sum_k w_k\,\mathbb E_{\mathcal N_k}[\log p]` (priors that have it);
        ``'mc'``: :math:`\log p(\theta)` at the held sample (unbiased, pathwise); ``'auto'``: analytic when
        the prior has it, else MC.
        """
        check_choice("kind", kind, ("auto", "analytic", "mc"))
        w = self.group.weights
        total = 0.0
        for name in self._block_names:
            e = None
            if kind != "mc":
                e = self.prior.expected_log_prob(getattr(self, f"{name}_means"), self.scales(name))
                if e is None and kind == "analytic":
                    raise ValueError(f"{self.prior!r} has no analytic expectation; use kind='mc' or 'auto'")
            total = total + ((w * e).sum() if e is not None else self.prior.log_prob(self.sampled(name)))
        return total

    def _common_repr(self):
        return f"K={self.K}, init_scale={self.init_scale}, prior={self.prior!r}"


class GaussianMixtureLinear(GaussianMixtureLayer):
    r"""Linear layer with a :math:`K`-component Gaussian-mixture posterior over its weight and bias.

    .. math::
        y = x W^\top + b,\qquad (W, b)\sim q = \sum_k w_k\,\mathcal N(\mu_k, \mathrm{diag}\,\sigma_k^2)

    (Furuya et al., arXiv 2202.13059; see the module docstring for what is sampled when).

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        K: number of components (1 = mean-field Gaussian, like bayesian-torch's
            ``LinearReparameterization``); default 2, or the ``group``'s.
        prior: weight prior (default :class:`~neuroq.bayes.GaussianPrior` ``(0, 1)``).
        init_scale: initial posterior std :math:`\sigma` of every weight (0.05 ≈ bayesian-torch's
            ``softplus(-3)``).
        mixing: ``'fixed'`` (uniform weights) or ``'learned'``.
        resample: ``'forward'`` (new weight sample per call) or ``'reset'`` (held until ``reset_net``).
        group: share an existing :class:`~neuroq.bayes.MixtureGroup` (then ``K``/``mixing``/``resample``/
            ``weight_grad`` come from it): one component index for all layers of the group.
        weight_grad: gradient to learned mixing weights, ``'pathwise'`` (overlapping components) or ``'score'`` (well-
            separated ones; applied by :func:`~neuroq.bayes.elbo`), see :class:`~neuroq.bayes.MixtureGroup`; it matters
            with ``mixing='learned'`` only.  The default ``'pathwise'`` suits overlapping components; its gradient to
            the mixing weights is heavy-tailed once the components separate (its variance grows like :math:`e^{s^2/2}`
            in the separation ratio :math:`s`; docs/gm_vi.md measures it), so for separated components -- what a trained
            mixture usually has -- use ``'score'`` with the loss from :func:`~neuroq.bayes.elbo`, which applies it
            (``--method gm-vi`` does).

    Component means start from ``nn.Linear``'s initialisation, drawn independently per component.

    Inputs: ``[..., in_features]`` (``[N, in]`` or ``[T, N, in]``).  Output: ``[..., out_features]``.

    Example::

        >>> layer = GaussianMixtureLinear(4, 3, K=2)
        >>> layer(torch.randn(8, 4)).shape
        torch.Size([8, 3])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, K: Optional[int] = None, prior=None,
                 init_scale: float = 0.05, mixing: str = "fixed", resample: str = "forward",
                 group: Optional[MixtureGroup] = None, weight_grad: str = "pathwise",
                 _means: Optional[tuple] = None):
        super().__init__(K, prior, init_scale, mixing, resample, group, weight_grad)
        self.in_features = check_int("in_features", in_features, ge=1)
        self.out_features = check_int("out_features", out_features, ge=1)
        self._add_weight_and_bias((out_features, in_features), bias, init_scale, _means)

    @classmethod
    def from_linear(cls, linear: nn.Linear, K: Optional[int] = None, prior=None, init_scale: float = 1e-3,
                    mean_jitter: float = 1.0, mixing: str = "fixed", resample: str = "forward",
                    group: Optional[MixtureGroup] = None, weight_grad: str = "pathwise") -> "GaussianMixtureLinear":
        r"""Mixture layer around a trained ``nn.Linear``: every component mean is its weight (and bias)
        plus ``init_scale · mean_jitter · N(0, 1)`` (the jitter breaks the symmetry between components,
        which identical components would never break: they receive identical expected gradients)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        Kc = _group_K(K, group)
        wm = _jittered_means(linear.weight, Kc, init_scale, mean_jitter)
        bm = None if linear.bias is None else _jittered_means(linear.bias, Kc, init_scale, mean_jitter)
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, K, prior, init_scale,
                    mixing, resample, group, weight_grad, _means=(wm, bm))
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`x W^\top + b` with the held weight sample, ``[..., in_features] -> [..., out_features]``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GaussianMixtureLinear: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"GaussianMixtureLinear expects input [..., {self.in_features}] "
                             f"([N, in] or [T, N, in]), got shape {tuple(x.shape)}")
        w = self.sampled("weight")
        b = self.sampled("bias") if self.has_bias else None
        return tF.linear(x, w, b)

    def extra_repr(self):
        """Shape, ``K``, initial scale and prior (shown by ``print(model)``)."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.has_bias}, "
                + self._common_repr())


class GaussianMixtureConv2d(GaussianMixtureLayer):
    r"""2-D convolution with a :math:`K`-component Gaussian-mixture posterior over its kernel and bias.

    .. math::
        y = W \star x + b,\qquad (W, b)\sim q = \sum_k w_k\,\mathcal N(\mu_k, \mathrm{diag}\,\sigma_k^2)

    (Furuya et al., arXiv 2202.13059; see the module docstring for what is sampled when).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``.
        K, prior, init_scale, mixing, resample, group, weight_grad: as :class:`GaussianMixtureLinear`.

    Inputs: ``[N, C_in, H, W]`` or multi-step ``[T, N, C_in, H, W]``.
    Output: ``[N, C_out, H', W']`` or ``[T, N, C_out, H', W']``.

    Example::

        >>> conv = GaussianMixtureConv2d(1, 4, 3, padding=1, K=3)
        >>> conv(torch.randn(2, 5, 1, 8, 8)).shape   # T = 2, N = 5
        torch.Size([2, 5, 4, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding: Union[int, tuple, str] = 0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", K: Optional[int] = None, prior=None, init_scale: float = 0.05,
                 mixing: str = "fixed", resample: str = "forward", group: Optional[MixtureGroup] = None,
                 weight_grad: str = "pathwise", _means: Optional[tuple] = None):
        super().__init__(K, prior, init_scale, mixing, resample, group, weight_grad)
        self.in_channels = check_int("in_channels", in_channels, ge=1)
        self.out_channels = check_int("out_channels", out_channels, ge=1)
        self.groups = check_int("groups", groups, ge=1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be "
                             f"divisible by groups ({groups})")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if isinstance(padding, str):
            self.padding = check_choice("padding", padding, ("same", "valid"))
            if padding == "same" and self.stride != (1, 1):
                raise ValueError("padding='same' needs stride=1 (as nn.Conv2d)")
        else:
            self.padding = _pair(padding, "padding")
        self.padding_mode = check_choice("padding_mode", padding_mode, ("zeros", "reflect", "replicate",
                                                                        "circular"))
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self._add_weight_and_bias(shape, bias, init_scale, _means)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, K: Optional[int] = None, prior=None, init_scale: float = 1e-3,
                  mean_jitter: float = 1.0, mixing: str = "fixed", resample: str = "forward",
                  group: Optional[MixtureGroup] = None, weight_grad: str = "pathwise") -> "GaussianMixtureConv2d":
        """Mixture layer around a trained ``nn.Conv2d`` (means = its kernel and bias, jittered as in
        :meth:`GaussianMixtureLinear.from_linear`)."""
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        Kc = _group_K(K, group)
        wm = _jittered_means(conv.weight, Kc, init_scale, mean_jitter)
        bm = None if conv.bias is None else _jittered_means(conv.bias, Kc, init_scale, mean_jitter)
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, K, prior, init_scale,
                    mixing, resample, group, weight_grad, _means=(wm, bm))
        return layer.to(conv.weight.device)

    def _conv(self, x, w, b):
        if self.padding_mode == "zeros":
            return tF.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)
        if self.padding == "valid":
            pad = (0, 0, 0, 0)
        elif self.padding == "same":
            pad = []
            for d, k in zip(reversed(self.dilation), reversed(self.kernel_size)):
                total = d * (k - 1)
                pad += [total // 2, total - total // 2]
        else:
            pad = (self.padding[1], self.padding[1], self.padding[0], self.padding[0])
        x = tF.pad(x, tuple(pad), mode=self.padding_mode)
        return tF.conv2d(x, w, b, self.stride, 0, self.dilation, self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution with the held kernel sample: ``[N, C, H, W]`` or ``[T, N, C, H, W]`` (one sample, all T)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"GaussianMixtureConv2d: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (4, 5) or x.shape[-3] != self.in_channels:
            raise ValueError(f"GaussianMixtureConv2d expects input [N, {self.in_channels}, H, W] or "
                             f"[T, N, {self.in_channels}, H, W], got shape {tuple(x.shape)}")
        w = self.sampled("weight")
        b = self.sampled("bias") if self.has_bias else None
        if x.dim() == 5:
            T, N = x.shape[:2]
            y = self._conv(x.flatten(0, 1), w, b)
            return y.reshape(T, N, *y.shape[1:])
        return self._conv(x, w, b)

    def extra_repr(self):
        """Shape, convolution arguments, ``K``, initial scale and prior (shown by ``print(model)``)."""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.has_bias}, "
                + self._common_repr())


def mixture_layers(model: nn.Module) -> list:
    """The :class:`GaussianMixtureLayer` modules of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, GaussianMixtureLayer)]


def _register_energy() -> None:
    # same fan-out rules as nn.Linear / nn.Conv2d (the layers carry the same attributes)
    from .. import energy

    energy.register_synaptic(GaussianMixtureLinear, energy.linear_sops, energy.linear_macs)
    energy.register_synaptic(GaussianMixtureConv2d, energy.conv_sops, energy.conv_macs)


_register_energy()
