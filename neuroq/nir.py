r"""Exchange with the Neuromorphic Intermediate Representation (NIR).

:func:`export` writes a neuroq network as a :class:`nir.NIRGraph`; :func:`load` builds a neuroq
multi-step network from one; :func:`trace` is the ``torch.fx`` trace both rest on.  NIR (Pedersen
et al., "Neuromorphic intermediate representation: a unified instruction set for interoperable
brain-inspired computing", Nature Communications 15, 8122, 2024) describes neurons as
continuous-time ODEs; every simulator discretises them with its own time step ``dt``.

**Neuron mapping** (forward Euler with step ``dt``; neuroq's ``tau`` is in steps).  NIR's LIF is
:math:`\tau_{N}\dot v = (v_{leak} - v) + r\,I` with spike :math:`z = [v > v_{th}]` and hard reset
:math:`v \leftarrow v_{reset}`.  One Euler step gives
:math:`v \leftarrow v + \frac{dt}{\tau_N}\left(v_{leak} - v + r\,I\right)`, and neuroq's charge is

* ``decay_input=True``:  :math:`H = V + \frac{1}{\tau}\left(X - (V - V_{reset})\right)`
* ``decay_input=False``: :math:`H = V - \frac{1}{\tau}(V - V_{reset}) + X`

so the two agree term by term with

.. math::
    \tau_N = \tau\,dt,\qquad v_{leak} = V_{reset},\qquad
    r = \begin{cases} 1 & \text{decay\_input}\\ \tau & \text{otherwise}\end{cases},\qquad
    v_{th} = V_{th},\qquad v_{reset} = V_{reset}.

NIR's IF is :math:`\dot v = r\,I`; neuroq's :math:`H = V + X` gives :math:`r = 1/dt`.  The reverse
mapping (:func:`load`) inverts these: :math:`\tau = \tau_N/dt`, ``decay_input`` from whether
:math:`r = 1` or :math:`r = \tau`, and it needs :math:`v_{leak} = v_{reset}` (neuroq leaks
towards the reset potential).  With the default ``dt = 1`` every parameter is copied exactly, so
``load(export(m, x))`` reproduces ``m``'s outputs bit for bit.  Peers: SpikingJelly 2.0's
``nir_exchange`` uses the same mapping (default ``dt = 1e-4``); snnTorch's importer assumes
``dt = 1e-4``; Norse's ``from_nir`` takes ``dt`` (use ``dt=1.0`` for a graph exported with ``dt=1``).

**What NIR cannot say** (:func:`export` raises ``ValueError`` rather than writing a different
network): soft reset (``v_reset=None``: NIR neurons only reset *to* a potential), neuron classes
other than neuroq's / SpikingJelly's exact ``IFNode`` and ``LIFNode`` (subclasses change the charge),
a normalization that does not directly follow a Linear/Conv2d (it is folded into that layer), and
modules with no NIR primitive.  Not carried by NIR, so :func:`load` takes them as arguments: the surrogate
gradient, ``detach_reset``, the backend.  At :math:`H = V_{th}` exactly, neuroq (like SpikingJelly)
fires while NIR's :math:`v > v_{th}` (and snnTorch, Norse) does not; with real-valued weights the tie
has probability zero.

**Supported networks**: chains, i.e. an ``nn.Sequential`` of (possibly nested ``nn.Sequential`` /
SpikingJelly ``SeqToANNContainer`` holding) ``nn.Linear``, ``nn.Conv2d`` (and their weight-quantized /
weight-standardized versions, exported with the weight they apply,
:func:`neuroq.layer.norm.effective_weight`), ``nn.AvgPool2d``, ``nn.Flatten``, the normalizations
that :func:`neuroq.layer.norm.fold` folds (``nn.BatchNorm1d/2d``, PSPN, Layer-Batch Norm: folded into
the Linear/Conv2d before them with their eval-mode statistics by
:func:`neuroq.layer.norm.folded_parameters`, in float64), ``nn.Dropout``/``nn.Identity`` (dropped:
export is of the inference network) and the neurons above, or any module whose ``forward``
:func:`trace` s to such a chain.  Residual additions and other functions are refused with the op named.  Multi-step
networks (neurons in ``step_mode='m'``, input ``[T, N, ...]``) and single-step ones (``[N, ...]``)
both export; NIR's shapes exclude the batch (and time) axes.  ``nir.Flatten``'s dimensions count
from the first non-batch axis, as the NIR spec and SpikingJelly's exporter have it (so neuroq's
``nn.Flatten(start_dim=2)`` on ``[T, N, C, H, W]`` becomes ``start_dim=0``); note that snnTorch's and
Norse's importers pass these numbers straight to ``torch.nn.Flatten`` and so flatten one axis too
early.

Example::

    import nir, torch, torch.nn as nn
    import neuroq, neuroq.nir
    net = nn.Sequential(nn.Flatten(start_dim=2), nn.Linear(784, 100),
                        neuroq.neuron.LIFNode(tau=2.0, step_mode="m"), nn.Linear(100, 10))
    x = torch.rand(8, 4, 1, 28, 28)                  # [T, N, C, H, W]
    graph = neuroq.nir.export(net, x)                  # nir.NIRGraph
    nir.write("net.nir", graph)
    net2 = neuroq.nir.load("net.nir")                 # neuroq multi-step nn.Sequential
    assert torch.equal(net(x), net2(x))
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.fx
import torch.nn as nn

from . import _sj
from ._validate import check_callable, check_real
from .layer.container import SeqOp
from .layer.norm.fold import effective_weight, folded_parameters, is_foldable
from .neuron import IFNode, LIFNode

#: containers that run their ops on [T*N, ...] in multi-step mode
_FOLD = (SeqOp, _sj.SeqToANNContainer)

__all__ = ["Tracer", "trace", "export", "load", "to_spikingjelly"]

_NIR_HINT = "neuroq.nir needs the 'nir' and 'nirtorch' packages: pip install 'neuroq[nir]'"


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - exercised only without nir
        raise ImportError(f"{_NIR_HINT}: {e}") from e
    return nir


# --------------------------------------------------------------------------------------------
# torch.fx
# --------------------------------------------------------------------------------------------
class Tracer(torch.fx.Tracer):
    """``torch.fx`` tracer that keeps stateful SpikingJelly/neuroq modules and ``SeqToANNContainer`` whole.

    Neurons hold their membrane in Python state and loop over ``T`` in multi-step mode, so fx
    cannot (and should not) trace into them; they become ``call_module`` nodes, like ``torch.nn``
    layers do under the default tracer.  ``SeqToANNContainer`` reshapes ``[T, N, ...]`` to
    ``[T*N, ...]`` around its children and is kept whole for the same reason, and the normalizations
    :func:`neuroq.layer.norm.fold` folds (PSPN, Layer-Batch Norm) are leaves like ``nn.BatchNorm``.

    Inputs/Outputs: as ``torch.fx.Tracer`` (``trace(root) -> torch.fx.Graph``).

    Example::

        graph = neuroq.nir.Tracer().trace(net)   # or neuroq.nir.trace(net) for a GraphModule
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """Stateful modules (neurons ...), the time-folding containers (:class:`~neuroq.layer.SeqOp`,
        ``SeqToANNContainer``) and the foldable normalizations are leaves; otherwise as ``torch.fx.Tracer``."""
        if isinstance(m, (_sj.MemoryModule,) + _FOLD) or is_foldable(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module) -> torch.fx.GraphModule:
    """Symbolically trace ``model`` with :class:`Tracer` (neurons stay ``call_module`` leaves).

    Inputs: ``model`` (any ``nn.Module``).  Outputs: a ``torch.fx.GraphModule`` that shares
    ``model``'s submodules (parameters and neuron state are not copied) and computes the same
    function, e.g. ``[T, N, ...] -> [T, N, ...]`` for a multi-step network.

    Example::

        gm = neuroq.nir.trace(nn.Sequential(nn.Linear(4, 3), neuroq.neuron.LIFNode(step_mode="m")))
        [n.op for n in gm.graph.nodes]   # ['placeholder', 'call_module', 'call_module', 'output']
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if Tracer().is_leaf_module(model, ""):
        model = nn.Sequential(model)  # a leaf root would otherwise be traced into
    tracer = Tracer()
    graph = tracer.trace(model)
    return torch.fx.GraphModule(tracer.root, graph, type(model).__name__)


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def _sj_neuron_classes():
    sj = _sj.sj_neuron_module()
    return sj.IFNode, sj.LIFNode


def _neuron_kind(m: nn.Module) -> Optional[str]:
    """'if' / 'lif' for the exact neuron classes NIR can hold, else None."""
    sj_if, sj_lif = _sj_neuron_classes()
    if type(m) in (IFNode, sj_if):
        return "if"
    if type(m) in (LIFNode, sj_lif):
        return "lif"
    return None


def _chain_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The traced chain of ``(qualified name, leaf module)``; refuses anything but a chain."""
    gm = trace(model)
    prev = None
    chain = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise ValueError("neuroq.nir.export supports models with one input; "
                                 f"found a second input {node.target!r}")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise ValueError("neuroq.nir.export supports chains: the model's output must be the "
                                 "last module's output")
            break
        if node.op != "call_module":
            raise ValueError(
                f"neuroq.nir.export supports chains of modules (nn.Sequential trees); the model calls "
                f"{node.op} {getattr(node.target, '__name__', node.target)!r}, which has no NIR export here "
                "(residual additions and tensor functions are not supported)")
        inputs = node.all_input_nodes
        if len(inputs) != 1 or inputs[0] is not prev or node.kwargs:
            raise ValueError(f"neuroq.nir.export supports chains: module {node.target!r} does not take "
                             "exactly the previous module's output")
        chain.append((str(node.target), gm.get_submodule(node.target)))
        prev = node
    return chain


def _is_sj_multistep_layer(m: nn.Module) -> bool:
    """SpikingJelly's stateless ``layer.*`` wrappers in step_mode 'm' count dims from ``[N, ...]``."""
    return getattr(m, "step_mode", None) == "m" and _neuron_kind(m) is None and not isinstance(m, _sj.MemoryModule)


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy()


def _layer_parameters(name: str, layer: nn.Module, norm: Optional[nn.Module]):
    """``(W, b)`` NIR gets for a Linear/Conv2d: the weight it applies (:func:`effective_weight`) and its bias,
    with the eval-mode normalization ``norm`` that follows it folded in (computed in float64)."""
    if norm is None:
        return effective_weight(layer), layer.bias
    try:
        w, b = folded_parameters(layer, norm, torch.float64)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{name}: the {type(norm).__name__} after it cannot be folded into it for NIR export "
                         f"(NIR has no normalization layer): {e}") from e
    return w.float(), (b.float() if b is not None else None)


def _pair(v) -> np.ndarray:
    a = np.asarray(v).ravel()
    return np.repeat(a, 2) if a.size == 1 else a


def _uniform_full(shape, value) -> np.ndarray:
    return np.full(tuple(int(s) for s in shape), float(value), dtype=np.float64)


def export(model: nn.Module, sample: torch.Tensor, dt: float = 1.0):
    r"""Write ``model`` as a NIR graph (parameters per the mapping in :mod:`neuroq.nir`).

    ``sample`` is run through the network once (under ``no_grad``, in eval mode) to learn every
    layer's shape; the network's neuron state is reset before and after (``reset_net``) and its
    train/eval flags are restored.  BatchNorm, PSPN and Layer-Batch Norm are folded with their
    running statistics (:func:`neuroq.layer.norm.folded_parameters`) and Dropout dropped, i.e. the
    inference network is exported.

    Args:
        model: a chain of supported modules (see :mod:`neuroq.nir`).
        sample: an input such as the network gets: ``[T, N, ...]`` when its neurons are in
            ``step_mode='m'`` (or it has none), ``[N, ...]`` when they are in ``'s'``.
        dt: the simulation time step in NIR's time unit; neuroq's ``tau`` (in steps) becomes
            :math:`\tau\,dt`.  ``dt = 1`` copies ``tau`` exactly; use ``1e-4`` for snnTorch.

    Returns:
        ``nir.NIRGraph`` with nodes ``input``, one per layer (named after the module path), ``output``.

    Example::

        net = nn.Sequential(nn.Linear(4, 3), neuroq.neuron.IFNode(step_mode="m"))
        g = neuroq.nir.export(net, torch.rand(5, 2, 4))
        type(g.nodes["1"]).__name__     # 'IF'
    """
    nir = _nir()
    dt = check_real("dt", dt, gt=0.0)
    if not isinstance(sample, torch.Tensor):
        raise TypeError(f"sample must be a torch.Tensor, got {type(sample).__name__}")
    chain = _chain_modules(model)
    modes = {m.step_mode for _, m in chain if isinstance(m, _sj.MemoryModule) and hasattr(m, "step_mode")}
    if len(modes) > 1:
        raise ValueError(f"neuroq.nir.export: the model's neurons mix step modes {sorted(modes)}; "
                         "use one ('m' for [T, N, ...] input)")
    lead = 1 if modes == {"s"} else 2
    if sample.dim() <= lead:
        layout = "[T, N, ...]" if lead == 2 else "[N, ...]"
        raise ValueError(f"sample must have shape {layout} with at least one feature axis, "
                         f"got shape {tuple(sample.shape)}")

    # Flatten the chain into per-layer ops with the shapes they see: (name, module, lead, dim_lead, in, out).
    ops = []
    modes_before = [(m, m.training) for m in model.modules()]
    model.eval()  # the inference network: BN running statistics are read, not updated
    _sj.reset_net(model)
    try:
        with torch.no_grad():
            x = sample
            for name, m in chain:
                if isinstance(m, _FOLD):
                    if lead != 2:
                        raise ValueError(f"{name}: SeqToANNContainer needs multi-step ([T, N, ...]) input")
                    t, n = x.shape[:2]
                    y = x.flatten(0, 1)
                    for cname, cm in _expand(m, name):
                        out = cm(y)
                        ops.append((cname, cm, 1, 1, tuple(y.shape[1:]), tuple(out.shape[1:])))
                        y = out
                    x = y.reshape(t, n, *y.shape[1:])
                    continue
                for cname, cm in _expand(m, name):
                    try:
                        out = cm(x)
                    except RuntimeError as e:  # e.g. a sample with the wrong number of features
                        raise ValueError(f"neuroq.nir.export: the sample does not fit layer {cname!r} "
                                         f"({type(cm).__name__}), which got shape {tuple(x.shape)}: "
                                         f"{str(e).splitlines()[0]}") from None
                    dim_lead = lead - 1 if _is_sj_multistep_layer(cm) else lead
                    ops.append((cname, cm, lead, dim_lead, tuple(x.shape[lead:]), tuple(out.shape[lead:])))
                    x = out
    finally:
        _sj.reset_net(model)
        for m, training in modes_before:
            m.train(training)

    nodes = {}
    order = []
    i = 0
    while i < len(ops):
        name, m, op_lead, dim_lead, in_shape, out_shape = ops[i]
        nxt = ops[i + 1] if i + 1 < len(ops) else None
        norm = nxt[1] if nxt is not None and is_foldable(nxt[1]) else None
        if is_foldable(m):
            raise ValueError(f"{name}: {type(m).__name__} can be exported only right after a Linear or Conv2d "
                             "(NIR has no normalization layer; it is folded into that layer)")
        if isinstance(m, (nn.Dropout, nn.Identity)):
            i += 1
            continue
        if isinstance(m, nn.Linear):
            w, b = _layer_parameters(name, m, norm)
            if norm is not None:
                i += 1  # folded into this layer
            node = nir.Affine(_f32(w), _f32(b)) if b is not None else nir.Linear(_f32(w))
        elif isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise ValueError(f"{name}: Conv2d padding_mode={m.padding_mode!r} has no NIR form (only 'zeros')")
            w, b = _layer_parameters(name, m, norm)
            if norm is not None:
                i += 1  # folded into this layer
            bias = _f32(b) if b is not None else np.zeros(w.shape[0], dtype=np.float32)
            node = nir.Conv2d(input_shape=tuple(in_shape[-2:]), weight=_f32(w), stride=tuple(m.stride),
                              padding=m.padding if isinstance(m.padding, str) else tuple(m.padding),
                              dilation=tuple(m.dilation), groups=m.groups, bias=bias)
        elif isinstance(m, nn.AvgPool2d):
            pad = _pair(m.padding)
            if m.ceil_mode or m.divisor_override is not None or (pad.any() and not m.count_include_pad):
                raise ValueError(f"{name}: AvgPool2d with ceil_mode, divisor_override or count_include_pad=False "
                                 "has no NIR form")
            stride = m.stride if m.stride is not None else m.kernel_size
            node = nir.AvgPool2d(kernel_size=_pair(m.kernel_size), stride=_pair(stride), padding=pad)
            node.input_type = {"input": np.array(in_shape)}
            node.output_type = {"output": np.array(out_shape)}
        elif isinstance(m, nn.Flatten):
            rank = len(in_shape) + dim_lead
            start = m.start_dim % rank - dim_lead
            end = m.end_dim if m.end_dim < 0 else m.end_dim - dim_lead
            if start < 0 or (m.end_dim >= 0 and end < 0):
                raise ValueError(f"{name}: Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}) would merge the "
                                 f"{'time/' if dim_lead == 2 else ''}batch axis, which NIR cannot express")
            node = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=start, end_dim=end)
        elif _neuron_kind(m) is not None:
            node = _export_neuron(nir, name, m, in_shape, dt, op_lead)
        else:
            raise ValueError(f"{name}: {type(m).__module__}.{type(m).__name__} has no NIR export in neuroq.nir "
                             "(supported: Linear, Conv2d, AvgPool2d, Flatten, BatchNorm/PSPN/Layer-Batch Norm after "
                             "Linear/Conv2d, "
                             "Dropout, Identity, neuroq/SpikingJelly IFNode and LIFNode)")
        nodes[name] = node
        order.append(name)
        i += 1

    nodes["input"] = nir.Input(input_type=np.array(tuple(sample.shape[lead:])))
    final = ops[-1][5] if ops else tuple(sample.shape[lead:])
    nodes["output"] = nir.Output(output_type=np.array(final))
    names = ["input", *order, "output"]
    edges = list(zip(names[:-1], names[1:]))
    metadata = {"source": "neuroq", "dt": dt, "step_mode": "m" if lead == 2 else "s"}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def _expand(m: nn.Module, name: str):
    """Yield ``(name, leaf)`` for ``m``, descending into plain ``nn.Sequential`` (not neurons)."""
    if isinstance(m, nn.Sequential) and not isinstance(m, _sj.MemoryModule):
        for child_name, child in m.named_children():
            yield from _expand(child, f"{name}.{child_name}")
    else:
        yield name, m


def _export_neuron(nir, name, m, shape, dt, op_lead):
    if getattr(m, "step_mode", "s") == "m" and op_lead != 2:
        raise ValueError(f"{name}: a multi-step neuron cannot sit inside SeqToANNContainer")
    if m.v_reset is None:
        raise ValueError(f"{name}: {type(m).__name__} has soft reset (v_reset=None); NIR's IF/LIF reset to "
                         "v_reset and cannot express subtracting the threshold. Export a hard-reset model "
                         "(v_reset=0.0) instead")
    v_th, v_reset = float(m.v_threshold), float(m.v_reset)
    if _neuron_kind(m) == "if":
        return nir.IF(r=_uniform_full(shape, 1.0 / dt), v_threshold=_uniform_full(shape, v_th),
                      v_reset=_uniform_full(shape, v_reset))
    tau = float(m.tau)
    return nir.LIF(tau=_uniform_full(shape, tau * dt), r=_uniform_full(shape, 1.0 if m.decay_input else tau),
                   v_leak=_uniform_full(shape, v_reset), v_threshold=_uniform_full(shape, v_th),
                   v_reset=_uniform_full(shape, v_reset))


# --------------------------------------------------------------------------------------------
# load
# --------------------------------------------------------------------------------------------
def _scalar(node_name: str, field: str, value) -> float:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"node {node_name!r}: {field} is empty")
    if not np.all(arr == arr[0]):
        raise ValueError(f"node {node_name!r}: neuroq neurons take one scalar {field}, but the graph's values "
                         f"differ across neurons (min {arr.min()}, max {arr.max()})")
    return float(arr[0])


def _chain_order(graph) -> list[str]:
    nir = _nir()
    inputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Input)]
    outputs = [k for k, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"neuroq.nir.load builds single-input single-output chains; the graph has inputs "
                         f"{inputs} and outputs {outputs}")
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    pred: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        if a not in graph.nodes or b not in graph.nodes:
            raise ValueError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
        succ[a].append(b)
        pred[b].append(a)
    order = [inputs[0]]
    while order[-1] != outputs[0]:
        cur = order[-1]
        if len(succ[cur]) != 1:
            raise ValueError(f"neuroq.nir.load builds chains; node {cur!r} feeds {len(succ[cur])} nodes "
                             f"{succ[cur]} (fan-out and recurrence are not supported)")
        nxt = succ[cur][0]
        if len(pred[nxt]) != 1:
            raise ValueError(f"neuroq.nir.load builds chains; node {nxt!r} sums {len(pred[nxt])} inputs "
                             f"{pred[nxt]} (fan-in is not supported)")
        if nxt in order:
            raise ValueError(f"neuroq.nir.load builds chains; the graph has a cycle through {nxt!r}")
        order.append(nxt)
    if len(order) != len(graph.nodes):
        extra = sorted(set(graph.nodes) - set(order))
        raise ValueError(f"neuroq.nir.load builds chains; nodes {extra} are not on the input-output path")
    return order[1:-1]


def _tensor(a) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a), dtype=torch.float32).clone()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"the NIR graph holds a parameter with NaN or infinite values (shape {tuple(t.shape)})")
    return t


def read_graph(path) -> "nir.NIRGraph":
    """``nir.read(path)`` with errors that name the path and say what was expected: a missing path, a folder,
    an empty file, a file that is not HDF5 or an HDF5 file that holds no NIR graph."""
    nir = _nir()
    where = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"NIR file {where!r} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{where!r} is a folder; give a NIR file (written by nir.write or neuroq.nir.export)")
    if os.path.getsize(path) == 0:
        raise ValueError(f"NIR file {where!r} is empty")
    try:
        graph = nir.read(path)
    except Exception as e:  # h5py's OSError for a non-HDF5 file, KeyError/TypeError for HDF5 without a graph
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{where!r} is not a readable NIR graph (an HDF5 file written by nir.write): "
                         f"{type(e).__name__}: {first}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{where!r} holds a NIR {type(graph).__name__}, not a graph")
    return graph


def load(graph, dt: float = 1.0, surrogate_function=None, backend: str = "auto",
         detach_reset: bool = False) -> nn.Sequential:
    r"""Build a neuroq multi-step network from a NIR graph (inverse of :func:`export`).

    ``Affine``/``Linear`` become ``nn.Linear`` (applied to ``[T, N, F]`` directly), ``Conv2d`` and
    ``AvgPool2d``/``SumPool2d`` go into a ``SeqToANNContainer``, ``Flatten`` becomes
    ``nn.Flatten`` shifted past the ``T, N`` axes, ``IF``/``LIF`` become :class:`neuroq.neuron.IFNode`
    / :class:`neuroq.neuron.LIFNode` in ``step_mode='m'`` with :math:`\tau = \tau_N/dt`,
    ``decay_input = (r == 1)`` (``r == \tau`` gives ``decay_input=False``) and hard reset.

    Args:
        graph: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
        dt: the time step the graph's time constants are expressed in (as passed to :func:`export`;
            ``1e-4`` for graphs from snnTorch or SpikingJelly's default).
        surrogate_function, backend, detach_reset: given to every neuron (NIR carries no training
            settings); ``None`` is SpikingJelly's default surrogate.

    Returns:
        ``nn.Sequential`` taking ``[T, N, *input_type]`` and returning ``[T, N, *output_type]``.

    Example::

        net2 = neuroq.nir.load(neuroq.nir.export(net, x))
        neuroq.reset_net(net2); y = net2(x)     # x: [T, N, ...]
    """
    nir = _nir()
    dt = check_real("dt", dt, gt=0.0)
    if surrogate_function is not None:
        check_callable("surrogate_function", surrogate_function)
    if isinstance(graph, (str, os.PathLike)):
        graph = read_graph(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a path to a .nir file, got {type(graph).__name__}")

    layers: list[nn.Module] = []
    per_step: list[nn.Module] = []  # consecutive ops that act on [T*N, ...] (SeqToANNContainer)

    def flush():
        if per_step:
            layers.append(SeqOp(*per_step))
            per_step.clear()

    neuron_kw = dict(surrogate_function=surrogate_function, detach_reset=detach_reset, step_mode="m",
                     backend=backend)
    for name in _chain_order(graph):
        node = graph.nodes[name]
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            if w.ndim != 2:
                raise ValueError(f"node {name!r}: {type(node).__name__} weight must be 2-D, got shape {w.shape}")
            has_bias = isinstance(node, nir.Affine)
            lin = nn.Linear(w.shape[1], w.shape[0], bias=has_bias)
            with torch.no_grad():
                lin.weight.copy_(_tensor(w))
                if has_bias:
                    lin.bias.copy_(_tensor(node.bias))
            flush()
            layers.append(lin)
        elif isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            padding = node.padding if isinstance(node.padding, str) else tuple(int(p) for p in _pair(node.padding))
            conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[-2:]),
                             stride=tuple(int(s) for s in _pair(node.stride)), padding=padding,
                             dilation=tuple(int(d) for d in _pair(node.dilation)), groups=int(node.groups), bias=True)
            with torch.no_grad():
                conv.weight.copy_(_tensor(w))
                conv.bias.copy_(_tensor(node.bias))
            per_step.append(conv)
        elif isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
            k = tuple(int(v) for v in _pair(node.kernel_size))
            kw = dict(kernel_size=k, stride=tuple(int(v) for v in _pair(node.stride)),
                      padding=tuple(int(v) for v in _pair(node.padding)))
            if isinstance(node, nir.SumPool2d):
                kw["divisor_override"] = k[0] * k[1]
            per_step.append(nn.AvgPool2d(**kw))
        elif isinstance(node, nir.Flatten):
            flush()
            start, end = int(node.start_dim), int(node.end_dim)
            layers.append(nn.Flatten(start_dim=start + 2 if start >= 0 else start,
                                     end_dim=end + 2 if end >= 0 else end))
        elif isinstance(node, nir.IF):
            flush()
            r = _scalar(name, "r", node.r)
            if not np.isclose(r * dt, 1.0, rtol=1e-6, atol=0.0):
                raise ValueError(f"node {name!r}: IF with r*dt = {r * dt:g}; neuroq's IFNode adds its input "
                                 "unscaled (r = 1/dt). Pass the dt the graph was exported with")
            layers.append(IFNode(v_threshold=_scalar(name, "v_threshold", node.v_threshold),
                                 v_reset=_scalar(name, "v_reset", node.v_reset), **neuron_kw))
        elif isinstance(node, nir.LIF):
            flush()
            layers.append(_load_lif(name, node, dt, neuron_kw))
        else:
            raise ValueError(f"node {name!r}: NIR {type(node).__name__} has no neuroq counterpart in "
                             "neuroq.nir.load (supported: Affine, Linear, Conv2d, AvgPool2d, SumPool2d, Flatten, "
                             "IF, LIF)")
    flush()
    return nn.Sequential(*layers)


def _load_lif(name, node, dt, neuron_kw) -> LIFNode:
    tau_n = _scalar(name, "tau", node.tau)
    tau = tau_n / dt
    if not tau > 1.0:
        raise ValueError(f"node {name!r}: LIF tau/dt = {tau:g} steps, but neuroq's LIFNode needs tau > 1 "
                         "(pass the dt the graph was exported with)")
    r = _scalar(name, "r", node.r)
    if np.isclose(r, 1.0, rtol=1e-6, atol=0.0):
        decay_input = True
    elif np.isclose(r, tau, rtol=1e-6, atol=0.0):
        decay_input = False
    else:
        raise ValueError(f"node {name!r}: LIF with r = {r:g}, tau/dt = {tau:g}: neuroq's LIFNode scales its input "
                         "by 1/tau (r = 1, decay_input=True) or not at all (r = tau/dt, decay_input=False)")
    v_reset = _scalar(name, "v_reset", node.v_reset)
    v_leak = _scalar(name, "v_leak", node.v_leak)
    if not np.isclose(v_leak, v_reset, rtol=1e-6, atol=1e-12):
        raise ValueError(f"node {name!r}: LIF with v_leak = {v_leak:g} != v_reset = {v_reset:g}; neuroq's LIFNode "
                         "leaks towards its reset potential")
    return LIFNode(tau=tau, decay_input=decay_input, v_threshold=_scalar(name, "v_threshold", node.v_threshold),
                   v_reset=v_reset, **neuron_kw)


# --------------------------------------------------------------------------------------------
# SpikingJelly's own exporter
# --------------------------------------------------------------------------------------------
def to_spikingjelly(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with neuroq's ``IFNode``/``LIFNode`` replaced by SpikingJelly's.

    SpikingJelly 2.0's ``nir_exchange.export_to_nir`` (and nirtorch's ``torch_to_nir`` it calls)
    look converters up by the module's exact class, so no neuroq class, subclass or not, can be
    exported by it directly; its copy can.  The replacement has the same parameters
    (``v_threshold``, ``v_reset``, ``tau``, ``decay_input``, ``detach_reset``, ``step_mode``,
    ``store_v_seq``, the surrogate) and, per neuroq's LIF/IF contract, the same spikes; other
    modules are deep-copied unchanged.  Neuron state is not copied (the copy starts reset).

    Inputs/Outputs: as ``model``.

    Example::

        from spikingjelly.activation_based.nir_exchange import export_to_nir   # SpikingJelly 2.0
        graph = export_to_nir(neuroq.nir.to_spikingjelly(net), x, dt=1e-4)
    """
    import copy

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    sj = _sj.sj_neuron_module()

    def convert(m: nn.Module) -> nn.Module:
        kw = dict(v_threshold=m.v_threshold, v_reset=m.v_reset, surrogate_function=copy.deepcopy(m.surrogate_function),
                  detach_reset=m.detach_reset, step_mode=m.step_mode, store_v_seq=m.store_v_seq)
        if not _sj.IS_SJ2:  # 0.0.0.0.14's nodes take a backend; 2.0.0's pick their own
            kw["backend"] = "torch"
        if type(m) is IFNode:
            return sj.IFNode(**kw)
        return sj.LIFNode(tau=m.tau, decay_input=m.decay_input, **kw)

    if type(model) in (IFNode, LIFNode):
        return convert(model)
    out = _sj.clone_net(model)
    for name, m in list(out.named_modules()):
        for child_name, child in list(m.named_children()):
            if type(child) in (IFNode, LIFNode):
                setattr(m, child_name, convert(child))
    _sj.reset_net(out)
    _sj.invalidate_reset_cache(out)
    return out
