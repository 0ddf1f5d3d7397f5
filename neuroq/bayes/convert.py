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
"""
from __future__ import annotations

import warnings
import torch.nn as nn
from spikingjelly.activation_based import layer as sj_layer

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real
from .layers import GaussianMixtureConv2d, GaussianMixtureLinear
from .mixture import MixtureGroup
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
            :class:`~neuroq.bayes.MixtureGroup`).

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
            # SpikingJelly's step-mode layers in step_mode='m' get [T, N, ...]: the mixture layers
            # take both layouts (linear: any leading dims; conv: rank 4 or 5)
            setattr(module, name, new)
            n += 1
        else:
            n += _replace(child, kw, skipped, path + ".")
    return n
