r"""Turn the linear and convolutional layers of an existing network into Gaussian-mixture layers.

:func:`bayesify` replaces every ``nn.Linear`` / ``nn.Conv2d`` (and SpikingJelly's step-mode
``layer.Linear`` / ``layer.Conv2d``), wherever it sits (inside ``nn.Sequential``, SpikingJelly's
``SeqToANNContainer``, custom modules), by :class:`~neuroq.bayes.GaussianMixtureLinear` /
:class:`~neuroq.bayes.GaussianMixtureConv2d` whose component means are the trained weights
(plus a small jitter, see below) and whose standard deviations start at ``init_scale``:

.. math::
    \mu_k = W + \texttt{init\_scale}\cdot\texttt{mean\_jitter}\cdot\xi_k,\quad \xi_k\sim\mathcal N(0,I),
    \qquad \sigma_k = \texttt{init\_scale}.

As ``init_scale → 0`` every weight sample tends to :math:`W`, so the converted network computes
the original network's outputs (the "zero-variance limit").

With ``shared=True`` (default) the whole network is *one* mixture over all its weights (one component
index per draw, as in Furuya et al., arXiv 2202.13059); ``shared=False`` gives each layer its own
mixture (a product of per-layer mixtures: :math:`K^L` joint modes, entropy the sum of the layers').
Each converted layer owns its means and scales; the one :class:`~neuroq.bayes.MixtureGroup` (mixing
logits, held draw) is a submodule of the first converted layer and a plain reference in the others,
so the network's ``state_dict`` holds it once (``0.group.logits`` for a ``Sequential`` starting with a
Linear layer) and :func:`~neuroq.bayes.mixture_groups` finds it.

The way back: :func:`component_network` gives the deterministic network whose weights are the means
of one component (for ``K = 1`` the posterior-mean network), with the layer types bayesify replaced
(``nn.Linear`` or SpikingJelly's ``layer.Linear`` with its step mode ...), so the energy meter and the
plots see an ordinary network; :func:`load_component` sets one component's means from a deterministic
network of the same architecture (e.g. independently initialised components).
"""
from __future__ import annotations

import warnings
import torch.nn as nn
from spikingjelly.activation_based import layer as sj_layer

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real
import torch

from .layers import GaussianMixtureConv2d, GaussianMixtureLayer, GaussianMixtureLinear
from .mixture import MixtureGroup, _ClearDraw, mixture_groups
from .priors import check_prior

_LINEAR_TYPES = (nn.Linear, sj_layer.Linear)
_CONV_TYPES = (nn.Conv2d, sj_layer.Conv2d)


def _is_stateful(model: nn.Module) -> bool:
    return any(isinstance(m, _sj.MemoryModule) and not isinstance(m, MixtureGroup) for m in model.modules())


def bayesify(model: nn.Module, K: int = 2, prior=None, init_scale: float = 1e-3, mean_jitter: float = 1.0,
             mixing: str = "fixed", resample: str = "auto", shared: bool = True, inplace: bool = False,
             weight_grad: str = "pathwise") -> nn.Module:
    r"""Replace the Linear/Conv2d layers of ``model`` by Gaussian-mixture layers around their weights.

    Args:
        model: any ``nn.Module`` (neuroq's and SpikingJelly's spiking networks included).
        K: number of mixture components (1 = mean-field Gaussian).
        prior: weight prior for every converted layer (default :class:`~neuroq.bayes.GaussianPrior` ``(0, 1)``).
        init_scale: initial posterior std of every weight (and the size of the mean jitter).
        mean_jitter: jitter of the component means, in units of ``init_scale`` (0 = all components at
            the trained weights; they then get identical expected gradients and stay together).
        mixing: ``'fixed'`` (uniform) or ``'learned'`` mixing weights.
        resample: ``'forward'`` (a new weight sample at every call of the returned model), ``'reset'``
            (held until SpikingJelly's ``reset_net``: one sample over the ``T`` single-step calls of one
            input), or ``'auto'``: ``'reset'`` when the model has stateful SpikingJelly modules (neurons),
            else ``'forward'``.
        shared: one mixture over the whole network (default) or one per layer.
        inplace: convert ``model`` itself instead of a deep copy.
        weight_grad: gradient to learned mixing weights, ``'pathwise'`` or ``'score'`` (see
            :class:`~neuroq.bayes.MixtureGroup`); it matters with ``mixing='learned'`` only.  The default ``'pathwise'``
            suits overlapping components; its gradient to the mixing weights is heavy-tailed once the components
            separate (its variance grows like :math:`e^{s^2/2}` in the separation ratio :math:`s`; docs/gm_vi.md
            measures it), so for separated components -- what a trained mixture usually has -- use ``'score'`` with the
            loss from :func:`~neuroq.bayes.elbo`, which applies it (``--method gm-vi`` does).

    Returns: the converted model.  Other subclasses of ``nn.Linear``/``nn.Conv2d`` (e.g. quantised or
    weight-standardised layers, whose forward transforms the weight) are left as they are, with a warning.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> bnet = bayesify(net, K=3)
        >>> type(bnet[0]).__name__
        'GaussianMixtureLinear'
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    K = check_int("K", K, ge=1)
    prior = check_prior(prior)
    check_real("init_scale", init_scale, gt=0)
    check_real("mean_jitter", mean_jitter, ge=0)
    check_choice("mixing", mixing, ("fixed", "learned"))
    check_choice("resample", resample, ("auto", "forward", "reset"))
    check_bool("shared", shared)
    check_bool("inplace", inplace)
    check_choice("weight_grad", weight_grad, ("pathwise", "score"))
    if resample == "auto":
        resample = "reset" if _is_stateful(model) else "forward"
    if not inplace:
        model = _sj.clone_net(model)
    group = MixtureGroup(K, mixing, resample, weight_grad) if shared else None
    if group is not None:
        dev = next((p.device for p in model.parameters()), None)
        if dev is not None:
            group.to(dev)
    skipped = []
    kw = dict(K=K, prior=prior, init_scale=init_scale, mean_jitter=mean_jitter, mixing=mixing,
              resample=resample, group=group, weight_grad=weight_grad)
    n = _replace(model, kw, skipped, prefix="")
    if skipped:
        warnings.warn("bayesify left these layers unchanged (subclasses of nn.Linear/nn.Conv2d with their own "
                      f"forward): {', '.join(skipped)}", stacklevel=2)
    if n == 0:
        raise ValueError("bayesify found no nn.Linear or nn.Conv2d layer to convert")
    if group is not None:
        group.attach(model)
    _sj.invalidate_reset_cache(model)
    return model


def _replace(module, kw, skipped, prefix) -> int:
    n = 0
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        new = None
        if type(child) in _LINEAR_TYPES:
            new = GaussianMixtureLinear.from_linear(child, **kw)
        elif type(child) in _CONV_TYPES:
            new = GaussianMixtureConv2d.from_conv(child, **kw)
        elif isinstance(child, (nn.Linear, nn.Conv2d)):
            skipped.append(f"{path} ({type(child).__name__})")
        if new is not None:
            new.source_type = type(child)          # what component_network rebuilds
            new.source_step_mode = getattr(child, "step_mode", None)
            # SpikingJelly's step-mode layers in step_mode='m' get [T, N, ...]: the mixture layers
            # take both layouts (linear: any leading dims; conv: rank 4 or 5)
            setattr(module, name, new)
            n += 1
        else:
            n += _replace(child, kw, skipped, path + ".")
    return n


def _resolve_component(model: nn.Module, component) -> int:
    groups = mixture_groups(model)
    if not groups:
        raise ValueError("model has no Gaussian-mixture layers (use neuroq.bayes.bayesify)")
    if component is None:
        if len(groups) > 1:
            raise ValueError("model has one mixture per layer (shared=False): give component= explicitly")
        return int(torch.argmax(groups[0].weights.detach()))
    K = groups[0].K
    return check_int("component", component, ge=0, le=K - 1)


def _deterministic_layer(layer: GaussianMixtureLayer, k: int) -> nn.Module:
    kind = getattr(layer, "source_type", None)
    step_mode = getattr(layer, "source_step_mode", None)
    if isinstance(layer, GaussianMixtureLinear):
        cls = kind if kind in _LINEAR_TYPES else nn.Linear
        new = cls(layer.in_features, layer.out_features, bias=layer.has_bias)
    else:
        cls = kind if kind in _CONV_TYPES else nn.Conv2d
        new = cls(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                  padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=layer.has_bias,
                  padding_mode=layer.padding_mode)
    if step_mode is not None and hasattr(new, "step_mode"):
        new.step_mode = step_mode
    with torch.no_grad():
        new.weight.copy_(layer.weight_means[k])
        if layer.has_bias:
            new.bias.copy_(layer.bias_means[k])
    return new.to(layer.weight_means.device, layer.weight_means.dtype)


def component_network(model: nn.Module, component=None) -> nn.Module:
    r"""The deterministic network whose weights are the means :math:`\mu_k` of component ``component``.

    Every Gaussian-mixture layer of (a copy of) ``model`` becomes the layer :func:`bayesify` replaced
    (``nn.Linear``/``nn.Conv2d``, or SpikingJelly's ``layer.Linear``/``layer.Conv2d`` in their step mode;
    layers built directly become ``nn.Linear``/``nn.Conv2d``) with weight :math:`\mu_{k}` and bias;
    everything else (neurons, normalization) is copied as it is.  ``component=None`` takes the heaviest
    component (:math:`\arg\max_k w_k`, the first for uniform weights).  For ``K = 1`` this is the
    posterior-mean network; for :math:`K > 1` it is one mode's mean (the mean of the whole mixture is
    not a network worth running: components may sit in different, permuted modes).

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> det = component_network(bayesify(net, K=3, init_scale=1e-6))
        >>> type(det[0]).__name__, bool((det(torch.ones(1, 4)) - net(torch.ones(1, 4))).abs().max() < 1e-4)
        ('Linear', True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    k = _resolve_component(model, component)
    _sj.reset_net(model)
    out = _sj.clone_net(model)
    _swap_back(out, k)
    for m in out.modules():  # the groups' forward pre-hooks (resample='forward') went with the layers
        for key, hook in list(m._forward_pre_hooks.items()):
            if isinstance(hook, _ClearDraw):
                del m._forward_pre_hooks[key]
    _sj.invalidate_reset_cache(out)
    return out


def _swap_back(module: nn.Module, k: int) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, GaussianMixtureLayer):
            setattr(module, name, _deterministic_layer(child, k))
        elif not isinstance(child, MixtureGroup):
            _swap_back(child, k)


def load_component(model: nn.Module, component: int, source: nn.Module) -> nn.Module:
    r"""Set the means of component ``component`` to the weights of ``source``, in place: :math:`\mu_k \leftarrow W`.

    ``source`` is a deterministic network of the architecture ``model`` was made from by :func:`bayesify`
    (its Linear/Conv2d layers in the same module order and of the same shapes).  Scales are left as they
    are.  Used to give each component its own initialisation (independent draws of the network's
    initialiser), which bayesify's jitter around one network does not.  Returns ``model``.

    Example::

        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 2))
        >>> bnet = bayesify(net, K=2)
        >>> other = torch.nn.Sequential(torch.nn.Linear(4, 2))
        >>> torch.equal(load_component(bnet, 1, other)[0].weight_means[1], other[0].weight)
        True
    """
    layers = [m for m in model.modules() if isinstance(m, GaussianMixtureLayer)]
    if not layers:
        raise ValueError("model has no Gaussian-mixture layers (use neuroq.bayes.bayesify)")
    k = check_int("component", component, ge=0, le=layers[0].K - 1)
    src = [m for m in source.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if len(src) != len(layers):
        raise ValueError(f"source has {len(src)} Linear/Conv2d layers, model has {len(layers)} mixture layers")
    with torch.no_grad():
        for i, (dst, s_) in enumerate(zip(layers, src)):
            if tuple(dst.weight_means.shape[1:]) != tuple(s_.weight.shape) or dst.has_bias != (s_.bias is not None):
                raise ValueError(f"layer {i}: source weight {tuple(s_.weight.shape)} (bias {s_.bias is not None}) "
                                 f"does not fit the mixture layer's {tuple(dst.weight_means.shape[1:])} "
                                 f"(bias {dst.has_bias})")
            dst.weight_means[k].copy_(s_.weight)
            if dst.has_bias:
                dst.bias_means[k].copy_(s_.bias)
    return model
