"""The one module that knows which SpikingJelly is installed.

neuroq builds only on the API that SpikingJelly 0.0.0.0.14 and 2.0.0 share
(``base.MemoryModule``, ``surrogate.SurrogateFunctionBase``, ``functional.reset_net``,
``layer.SeqToANNContainer``).  Everything version-specific goes through here.
"""
from __future__ import annotations

import importlib.metadata as _md

from spikingjelly.activation_based import base, functional, layer, surrogate  # noqa: F401

try:
    VERSION: str = _md.version("spikingjelly")
except _md.PackageNotFoundError:  # pragma: no cover - imported from a source tree
    VERSION = getattr(__import__("spikingjelly"), "__version__", "unknown")

# 0.0.0.0.14 has a top-level neuron.py with backend-aware nodes and CuPy kernels;
# 2.0.0 has a neuron/ package, op_counter, and caches reset_net's module list.
IS_SJ2: bool = not VERSION.startswith("0.0.0.0")

MemoryModule = base.MemoryModule
SurrogateFunctionBase = surrogate.SurrogateFunctionBase
SeqToANNContainer = layer.SeqToANNContainer


def reset_net(net, cache: bool = True) -> None:
    """Reset every stateful module of ``net`` (both SpikingJelly versions): call ``reset()`` of each
    module of ``net`` that has one.

    SpikingJelly 2.0.0 caches that list of modules per network at the first call (so after swapping
    modules of ``net`` call :func:`invalidate_reset_cache`).  ``cache=False`` collects them afresh and
    caches nothing: for a module that resets itself at every call (:class:`neuroq.layer.lmu.LMU`) and
    cannot know whether its parts were swapped since.  0.0.0.0.14 never caches."""
    collect = getattr(functional, "collect_reset_modules", None)
    if cache or collect is None:
        functional.reset_net(net)
    else:
        functional.reset_collected_modules(collect(net))


def clone_net(net):
    """A deep copy of ``net`` that also works after a forward pass with autograd on.

    ``copy.deepcopy`` refuses tensors that are not graph leaves, and a neuron's state after a
    training-mode step is one (``v`` holds the graph of the step). Such state is copied detached;
    ``net`` itself is not touched (it is neither reset nor detached)."""
    import copy

    import torch

    memo = {}
    for m in net.modules():
        for store in (m.__dict__, m.__dict__.get("_memories", {})):
            for value in list(store.values()):
                if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                    memo[id(value)] = value.detach().clone()
    return copy.deepcopy(net, memo)


def invalidate_reset_cache(net) -> None:
    """Forget SpikingJelly 2.0.0's cached list of resettable modules (no-op on 0.14).

    Call it after swapping modules in or out of a network that was already reset once.
    """
    fn = getattr(functional, "invalidate_reset_cache", None)
    if fn is not None:
        fn(net)


def default_surrogate():
    """SpikingJelly's default surrogate, ``Sigmoid(alpha=4.)``, on either version."""
    return surrogate.Sigmoid(alpha=4.0)


def sj_neuron_module():
    """SpikingJelly's neuron module (a file in 0.14, a package in 2.0.0)."""
    from spikingjelly.activation_based import neuron

    return neuron


def op_counter():
    """SpikingJelly 2.0.0's ``op_counter`` package, or ``None`` where it does not exist."""
    if not IS_SJ2:
        return None
    try:
        from spikingjelly.activation_based import op_counter as oc
    except Exception:  # pragma: no cover
        return None
    return oc


def detach_net(net) -> None:
    """Detach every stateful module of ``net`` from the graph of earlier steps (both versions)."""
    for m in net.modules():
        if isinstance(m, base.MemoryModule):
            m.detach()


def ottt_modules():
    """SpikingJelly 2.0.0's OTTT pieces, or ``None`` on versions that lack them (0.0.0.0.14).

    Returns a dict with ``OTTTLIFNode``, ``OTTTSequential`` (``layer``), ``ottt_spiking_vggws`` (the
    OTTT paper's VGG: cfg ``[64,128,A,256,256,A,512,512,A,512,512]``, WS convs, light classifier) and
    ``ottt_spiking_vgg11_ws`` (VGG-11 cfg ``A`` with max-pooling and a 4096-wide classifier).
    """
    if not IS_SJ2:
        return None
    try:
        from spikingjelly.activation_based import layer as sj_layer
        from spikingjelly.activation_based import neuron as sj_neuron
        from spikingjelly.activation_based.model import spiking_vggws_ottt as sj_vgg
    except Exception:  # pragma: no cover
        return None
    need = (hasattr(sj_neuron, "OTTTLIFNode") and hasattr(sj_layer, "OTTTSequential")
            and hasattr(sj_vgg, "ottt_spiking_vggws"))
    if not need:  # pragma: no cover
        return None
    return dict(OTTTLIFNode=sj_neuron.OTTTLIFNode, OTTTSequential=sj_layer.OTTTSequential,
                ottt_spiking_vggws=sj_vgg.ottt_spiking_vggws,
                ottt_spiking_vgg11_ws=getattr(sj_vgg, "ottt_spiking_vgg11_ws", None))
