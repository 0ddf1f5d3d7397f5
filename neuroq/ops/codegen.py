r"""Generated kernels, part 1: from a neuron's pure step to C++ / CUDA source.

A neuron's :meth:`~neuroq.neuron.BaseNode.step` ``(x, *states) -> (spike, *states)`` is

1. **traced** by ``torch.fx`` (symbolic tracing of a wrapper that calls ``node.step``), with every
   SpikingJelly surrogate module a leaf: the spike :math:`\Theta(\cdot)` of the step;
2. **lowered** to a small graph of elementwise fp32 operations (:class:`StepGraph`): every tensor is
   one value per neuron, every Python number met while tracing (``tau``, ``v_threshold`` ...) a
   *run-time constant* (the kernel reads it from an array, so a new ``tau`` needs no new compile);
   anything else -- an op that is not elementwise, Python control flow on a tensor, a tensor
   attribute, an in-place op -- raises :class:`~neuroq.ops.Unsupported` naming it;
3. **differentiated** in reverse mode on that graph: the vector-Jacobian product of one step, with
   torch's derivative for every op (its conventions at ties and kinks: ``clamp``, ``maximum``,
   ``abs``, ``relu``), zero through ``detach`` and comparisons, and the surrogate's device
   derivative (``kernels.cuh``'s ``nq_surrogate_grad``) for each spike;
4. **emitted** as ``struct NQStep`` with three functions per neuron and step -- ``forward(c, x, st)``
   (updates the states ``st`` in place, returns the spike), ``forward_save(c, x, st, sv)`` (the same, also
   writing the ``NSAVE`` values the backward needs into ``sv``: the fewest values every value of the
   vector-Jacobian product can be recomputed from, :func:`save_set`, e.g. ``H`` alone for a LIF) and
   ``backward(c, sg, sv, g_spike, gs)`` (recomputes what it needs from ``sv`` with the forward's own
   expressions, turns ``gs`` = dL/d(new states) into dL/d(old states), returns dL/dx) -- which the loop
   templates of the hand-written kernels run
   (``step_kernels_cpu.cpp`` on the CPU, the tiles of ``kernels.cuh`` through ``step_entry_points.cuh``
   on CUDA).

The forward repeats torch's arithmetic operation by operation in fp32 (no FMA contraction; the CPU's
reverse-time loop may contract the gradient's arithmetic, :func:`keep_exact`), with
torch's own choices: a Python number is rounded to fp32; ``tensor / number`` is a true division on
the CPU (a multiplication by the exact reciprocal for a power of two) and a multiplication by
``1.0f / float(number)`` on CUDA, as torch's CUDA division by a scalar; ``number / tensor`` is
``reciprocal(tensor) * number`` (torch's ``__rtruediv__``); ``x ** 2`` is ``x * x``.  Hence
spikes and states equal the torch loop's bit for bit for steps built from ``+ - * /``,
comparisons, ``where``, ``clamp`` and the like; ``exp``/``log``/``tanh``/``sigmoid`` use the C
library's functions where torch uses SLEEF's (both within 1 ulp), so states agree to rounding.

Supported: ``+ - * /`` and unary ``-`` with tensors or numbers, ``**`` a number, ``abs``, ``exp``,
``log``, ``tanh``, ``sigmoid``, ``sqrt``, ``rsqrt``, ``reciprocal``, ``relu``, ``sin``, ``cos``,
``square``, ``sign``, ``maximum``/``minimum``, ``clamp``/``clip``/``clamp_min``/``clamp_max`` with
number bounds, ``where``, ``masked_fill``, comparisons, ``& | ^ ~`` and ``logical_*`` on booleans,
``.float()``/``.to(x)``/``.type_as(x)``/``.bool()``, ``detach``, ``zeros_like``/``ones_like``/
``full_like``, and each SpikingJelly surrogate with a device version (``Sigmoid``, ``ATan``,
``PiecewiseQuadratic``, ``Rect``, neuroq's ``S2NN``).
"""
from __future__ import annotations

import functools
import hashlib
import math
import operator
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F

from . import Unsupported
from .params import exact_reciprocal, require_surrogate, torch_reciprocal


# ---------------------------------------------------------------------------------------------
# the graph
# ---------------------------------------------------------------------------------------------
@dataclass
class Op:
    """One value of the step: ``kind`` (``'x'``, ``'state'``, ``'const'``, or an operation), its operands
    (indices of earlier values), ``dtype`` (``'f'`` fp32, ``'b'`` boolean), an attribute (a state index, a
    constant slot, a surrogate index, an exponent) and the fx node it came from (for the comments)."""

    kind: str
    args: tuple = ()
    dtype: str = "f"
    attr: object = None
    note: str = ""


@dataclass
class StepGraph:
    """The lowered step: values in topological order, the outputs (spike, new states), the run-time
    constants and the surrogate modules (one per distinct module)."""

    ops: list = field(default_factory=list)
    outputs: tuple = ()
    n_states: int = 1
    consts: list = field(default_factory=list)
    surrogates: list = field(default_factory=list)
    name: str = "step"

    def _pow2(self, slot) -> bool:
        """Whether constant ``slot`` is a power of two (dividing by it is multiplying by an exact reciprocal)."""
        v = self.consts[slot]
        return v != 0 and math.isfinite(v) and exact_reciprocal(abs(v))


class _Lower:
    """Builds a :class:`StepGraph` from an fx graph."""

    def __init__(self, root: nn.Module, n_states: int):
        self.root = root
        self.g = StepGraph(n_states=n_states)
        self.sg_index = {}

    # values -------------------------------------------------------------------------------
    def add(self, kind, args=(), dtype="f", attr=None, note="") -> int:
        self.g.ops.append(Op(kind, tuple(args), dtype, attr, note))
        return len(self.g.ops) - 1

    def const(self, value) -> int:
        slot = len(self.g.consts)
        self.g.consts.append(float(value))
        return self.add("const", (), "f", slot)

    @staticmethod
    def is_num(a) -> bool:
        return isinstance(a, (int, float, bool)) and not isinstance(a, _V)

    def f(self, a) -> "_V":
        """``a`` as an fp32 value (a number becomes a constant, a boolean 1.0 / 0.0)."""
        if isinstance(a, _V):
            return a if self.g.ops[a].dtype == "f" else _V(self.add("b2f", (a,), "f"))
        if self.is_num(a):
            return _V(self.const(float(a)))
        raise Unsupported(f"uses a {type(a).__name__} value where a tensor or a number is expected")

    def b(self, a) -> "_V":
        if isinstance(a, _V):
            return a if self.g.ops[a].dtype == "b" else _V(self.add("f2b", (a,), "b"))
        raise Unsupported(f"uses a {type(a).__name__} value as a condition")

    def arith(self, kind, a, b, note=""):
        if isinstance(a, _V) and isinstance(b, _V) and self.g.ops[a].dtype == "b" and self.g.ops[b].dtype == "b":
            raise Unsupported(f"does arithmetic ({kind}) on two boolean tensors")
        return _V(self.add(kind, (self.f(a), self.f(b)), "f", None, note))

    def unary(self, kind, a, note=""):
        return _V(self.add(kind, (self.f(a),), "f", None, note))

    def compare(self, kind, a, b, note=""):
        return _V(self.add(kind, (self.f(a), self.f(b)), "b", None, note))

    def logic(self, kind, *args, note=""):
        return _V(self.add(kind, tuple(self.b(a) for a in args), "b", None, note))

    def where(self, c, a, b, note=""):
        return _V(self.add("where", (self.b(c), self.f(a), self.f(b)), "f", None, note))

    def clamp(self, a, lo=None, hi=None, note=""):
        for bound in (lo, hi):
            if bound is not None and not self.is_num(bound):
                raise Unsupported("uses clamp with a tensor bound (use torch.maximum / torch.minimum)")
        v = self.f(a)
        if lo is not None:
            v = _V(self.add("clamplo", (v, self.f(lo)), "f", None, note))
        if hi is not None:
            v = _V(self.add("clamphi", (v, self.f(hi)), "f", None, note))
        return v

    def power(self, a, e, note=""):
        if not self.is_num(e) or isinstance(a, bool) or self.is_num(a):
            raise Unsupported("uses ** with a tensor exponent (only tensor ** number is supported)")
        e = float(e)
        if e == 1.0:
            return self.f(a)
        if e == 0.0:
            return self.f(1.0)
        return _V(self.add("pow", (self.f(a),), "f", e, note))

    def div(self, a, b, rtrue=False, note=""):
        if rtrue and self.is_num(a):  # number / tensor: torch's __rtruediv__ is reciprocal(t) * number
            return self.arith("mul", self.unary("recip", b, note), a, note)
        return self.arith("div", a, b, note)

    def cast(self, a, target: str):
        if target == "f":
            return self.f(a)
        return self.b(a)

    # the fx graph ---------------------------------------------------------------------------
    def run(self, graph: torch.fx.Graph) -> StepGraph:
        env = {}
        k = 0

        def val(a):
            if isinstance(a, torch.fx.Node):
                return env[a]
            if isinstance(a, (tuple, list)):
                return type(a)(val(x) for x in a)
            return a

        for nd in graph.nodes:
            if nd.op == "placeholder":
                env[nd] = _V(self.add("x", note="x") if k == 0 else self.add("state", (), "f", k - 1, note=nd.name))
                k += 1
            elif nd.op == "get_attr":
                raise Unsupported(f"reads the tensor attribute {nd.target!r} (a step takes every tensor it uses as an "
                                  "argument; a learnable parameter has no generated kernel)")
            elif nd.op == "call_module":
                env[nd] = self.module(nd, [val(a) for a in nd.args], {k2: val(v) for k2, v in nd.kwargs.items()})
            elif nd.op in ("call_function", "call_method"):
                env[nd] = self.call(nd, [val(a) for a in nd.args], {k2: val(v) for k2, v in nd.kwargs.items()})
            elif nd.op == "output":
                out = val(nd.args[0])
                if not isinstance(out, (tuple, list)) or len(out) != self.g.n_states + 1:
                    raise Unsupported(f"returns {type(out).__name__}, not (spike, {self.g.n_states} state(s))")
                vals = []
                for o in out:
                    if isinstance(o, _V) and self.g.ops[o].dtype == "b":
                        raise Unsupported("returns a boolean tensor (convert it with .float() or .to(x))")
                    vals.append(int(self.f(o)))
                self.g.outputs = tuple(vals)
        return self.g

    def module(self, nd, args, kwargs):
        mod = self.root.get_submodule(nd.target)
        from .. import _sj

        if isinstance(mod, _sj.SurrogateFunctionBase):
            if kwargs or len(args) != 1:
                raise Unsupported(f"calls the surrogate {type(mod).__name__} with more than one argument")
            try:
                require_surrogate(mod)
            except Unsupported:
                raise Unsupported(f"uses the surrogate {type(mod).__name__}, which has no device version (or is not in "
                                  "spiking mode)") from None
            idx = self.sg_index.setdefault(id(mod), len(self.g.surrogates))
            if idx == len(self.g.surrogates):
                self.g.surrogates.append(mod)
            return _V(self.add("fire", (self.f(args[0]),), "f", idx, note=nd.name))
        raise Unsupported(f"calls the module {type(mod).__name__} (only surrogate functions are supported in a step)")

    def call(self, nd, args, kwargs):
        target = nd.target
        name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
        note = nd.name
        if nd.op == "call_method":
            if name.endswith("_") and not name.endswith("__"):
                raise Unsupported(f"uses the in-place op {name} (a step must be pure: use the out-of-place form)")
            handler = _METHODS.get(name)
        else:
            handler = _FUNCTIONS.get(target)
        if handler is None:
            shown = f".{name}()" if nd.op == "call_method" else _qualname(target)
            raise Unsupported(f"uses {shown}, which the generated kernels do not support")
        try:
            out = handler(self, list(args), dict(kwargs))
        except Unsupported:
            raise
        except (TypeError, ValueError, IndexError) as e:
            raise Unsupported(f"uses {name} with arguments the generated kernels do not support ({e})") from None
        if isinstance(out, _V) and not self.g.ops[out].note:
            self.g.ops[out].note = note
        return out


class _V(int):
    """A value of the graph under construction (its index), told apart from Python numbers."""


def _qualname(fn) -> str:
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", repr(fn))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch"):
        return f"torch.{name}" if "functional" not in mod else f"torch.nn.functional.{name}"
    return f"{mod}.{name}" if mod else name


def _no_kwargs(kwargs, *allowed):
    extra = {k: v for k, v in kwargs.items() if k not in allowed}
    if extra:
        raise ValueError(f"keyword arguments {sorted(extra)}")


def _bin(kind):
    def h(lo, args, kwargs):
        alpha = kwargs.pop("alpha", 1)
        _no_kwargs(kwargs)
        if alpha != 1:
            raise Unsupported(f"uses {kind} with alpha={alpha}")
        a, b = args
        return lo.arith(kind, a, b)
    return h


def _truediv(lo, args, kwargs):
    _no_kwargs(kwargs)
    return lo.div(args[0], args[1], rtrue=True)


def _div(lo, args, kwargs):
    if kwargs.get("rounding_mode") is not None:
        raise Unsupported(f"uses division with rounding_mode={kwargs['rounding_mode']!r}")
    return lo.div(args[0], args[1])


def _un(kind):
    def h(lo, args, kwargs):
        if kwargs.get("inplace") is False:  # F.relu(x, inplace=False)
            del kwargs["inplace"]
        if len(args) == 2 and args[1] is False:
            args = args[:1]
        _no_kwargs(kwargs)
        (a,) = args
        if kind == "identity":
            return a
        if kind == "square":
            return lo.power(a, 2)
        return lo.unary(kind, a)
    return h


def _cmp(kind):
    def h(lo, args, kwargs):
        _no_kwargs(kwargs)
        return lo.compare(kind, *args)
    return h


def _logic(kind):
    def h(lo, args, kwargs):
        _no_kwargs(kwargs)
        return lo.logic(kind, *args)
    return h


def _bitwise(kind):
    def h(lo, args, kwargs):
        _no_kwargs(kwargs)
        for a in args:
            if not (isinstance(a, _V) and lo.g.ops[a].dtype == "b"):
                raise Unsupported(f"uses a bitwise {kind} on a non-boolean value")
        return lo.logic(kind, *args)
    return h


def _pow(lo, args, kwargs):
    _no_kwargs(kwargs)
    return lo.power(args[0], args[1])


def _maxmin(kind):
    def h(lo, args, kwargs):
        _no_kwargs(kwargs)
        if len(args) != 2:
            raise Unsupported(f"uses {kind} as a reduction (only the elementwise two-tensor form is supported)")
        return lo.arith(kind, args[0], args[1])
    return h


def _clamp(lo, args, kwargs):
    a = args[0]
    mn = args[1] if len(args) > 1 else kwargs.pop("min", None)
    mx = args[2] if len(args) > 2 else kwargs.pop("max", None)
    _no_kwargs(kwargs)
    return lo.clamp(a, mn, mx)


def _clamp_min(lo, args, kwargs):
    _no_kwargs(kwargs)
    return lo.clamp(args[0], args[1], None)


def _clamp_max(lo, args, kwargs):
    _no_kwargs(kwargs)
    return lo.clamp(args[0], None, args[1])


def _where(lo, args, kwargs):
    _no_kwargs(kwargs)
    if len(args) != 3:
        raise Unsupported("uses the one-argument torch.where (nonzero)")
    return lo.where(*args)


def _where_method(lo, args, kwargs):  # x.where(cond, y) == torch.where(cond, x, y)
    _no_kwargs(kwargs)
    x, cond, y = args
    return lo.where(cond, x, y)


def _masked_fill(lo, args, kwargs):  # x.masked_fill(mask, value) == torch.where(mask, value, x)
    _no_kwargs(kwargs)
    x, mask, value = args
    return lo.where(mask, value, x)


def _like(value):
    def h(lo, args, kwargs):
        if kwargs.get("dtype", torch.float32) in _FLOATS:
            kwargs.pop("dtype", None)
        _no_kwargs(kwargs, "device", "memory_format", "requires_grad", "layout")
        v = args[1] if value is None else value
        if not lo.is_num(v):
            raise Unsupported("uses full_like with a tensor fill value")
        return lo.f(float(v))
    return h


_FLOATS = (torch.float32, torch.float)


def _target_dtype(lo, spec):
    if isinstance(spec, _V):
        return lo.g.ops[spec].dtype
    if isinstance(spec, torch.dtype):
        if spec in _FLOATS:
            return "f"
        if spec is torch.bool:
            return "b"
        raise Unsupported(f"converts to {spec} (the generated kernels compute in fp32)")
    return None  # a device or a string: no conversion


def _to(lo, args, kwargs):
    a = args[0]
    kwargs.pop("non_blocking", None)
    kwargs.pop("copy", None)
    kwargs.pop("device", None)
    dt = kwargs.pop("dtype", None)
    _no_kwargs(kwargs, "memory_format")
    target = None
    for spec in list(args[1:]) + ([dt] if dt is not None else []):
        t = _target_dtype(lo, spec)
        target = t if t is not None else target
    return a if target is None else lo.cast(a, target)


def _type_as(lo, args, kwargs):
    _no_kwargs(kwargs)
    return lo.cast(args[0], _target_dtype(lo, args[1]))


def _cast(target):
    def h(lo, args, kwargs):
        _no_kwargs(kwargs, "memory_format")
        return lo.cast(args[0], target)
    return h


def _detach(lo, args, kwargs):
    _no_kwargs(kwargs)
    a = args[0]
    if not isinstance(a, _V) or lo.g.ops[a].dtype == "b":
        return a
    return _V(lo.add("detach", (a,), "f"))


def _identity(lo, args, kwargs):
    _no_kwargs(kwargs, "memory_format")
    return args[0]


_FUNCTIONS = {
    operator.add: _bin("add"), torch.add: _bin("add"),
    operator.sub: _bin("sub"), torch.sub: _bin("sub"), torch.subtract: _bin("sub"),
    operator.mul: _bin("mul"), torch.mul: _bin("mul"), torch.multiply: _bin("mul"),
    operator.truediv: _truediv, torch.div: _div, torch.true_divide: _div, torch.divide: _div,
    operator.neg: _un("neg"), torch.neg: _un("neg"), torch.negative: _un("neg"), operator.pos: _un("identity"),
    operator.abs: _un("abs"), torch.abs: _un("abs"), torch.exp: _un("exp"), torch.log: _un("log"),
    torch.tanh: _un("tanh"), torch.sigmoid: _un("sigmoid"), torch.special.expit: _un("sigmoid"),
    F.sigmoid: _un("sigmoid"), F.tanh: _un("tanh"), torch.sqrt: _un("sqrt"), torch.rsqrt: _un("rsqrt"),
    torch.reciprocal: _un("recip"), torch.relu: _un("relu"), F.relu: _un("relu"), torch.sin: _un("sin"),
    torch.cos: _un("cos"), torch.square: _un("square"), torch.sign: _un("sign"),
    operator.pow: _pow, torch.pow: _pow,
    torch.maximum: _maxmin("max"), torch.minimum: _maxmin("min"), torch.max: _maxmin("max"),
    torch.min: _maxmin("min"), torch.clamp: _clamp, torch.clip: _clamp, torch.clamp_min: _clamp_min,
    torch.clamp_max: _clamp_max, torch.where: _where,
    operator.ge: _cmp("ge"), torch.ge: _cmp("ge"), torch.greater_equal: _cmp("ge"),
    operator.gt: _cmp("gt"), torch.gt: _cmp("gt"), torch.greater: _cmp("gt"),
    operator.le: _cmp("le"), torch.le: _cmp("le"), torch.less_equal: _cmp("le"),
    operator.lt: _cmp("lt"), torch.lt: _cmp("lt"), torch.less: _cmp("lt"),
    operator.eq: _cmp("eq"), torch.eq: _cmp("eq"), operator.ne: _cmp("ne"), torch.ne: _cmp("ne"),
    torch.not_equal: _cmp("ne"),
    torch.logical_and: _logic("and"), torch.logical_or: _logic("or"), torch.logical_xor: _logic("xor"),
    torch.logical_not: _logic("not"), operator.and_: _bitwise("and"), operator.or_: _bitwise("or"),
    operator.xor: _bitwise("xor"), operator.invert: _bitwise("not"),
    torch.zeros_like: _like(0.0), torch.ones_like: _like(1.0), torch.full_like: _like(None),
    torch.detach: _detach,
}

_METHODS = {
    "add": _bin("add"), "__add__": _bin("add"), "sub": _bin("sub"), "subtract": _bin("sub"), "mul": _bin("mul"),
    "multiply": _bin("mul"), "div": _div, "divide": _div, "true_divide": _div, "neg": _un("neg"),
    "negative": _un("neg"), "abs": _un("abs"), "exp": _un("exp"), "log": _un("log"), "tanh": _un("tanh"),
    "sigmoid": _un("sigmoid"), "sqrt": _un("sqrt"), "rsqrt": _un("rsqrt"), "reciprocal": _un("recip"),
    "relu": _un("relu"), "sin": _un("sin"), "cos": _un("cos"), "square": _un("square"), "sign": _un("sign"),
    "pow": _pow, "maximum": _maxmin("max"), "minimum": _maxmin("min"), "clamp": _clamp, "clip": _clamp,
    "clamp_min": _clamp_min, "clamp_max": _clamp_max, "where": _where_method, "masked_fill": _masked_fill,
    "ge": _cmp("ge"), "gt": _cmp("gt"), "le": _cmp("le"), "lt": _cmp("lt"), "eq": _cmp("eq"), "ne": _cmp("ne"),
    "greater_equal": _cmp("ge"), "greater": _cmp("gt"), "less_equal": _cmp("le"), "less": _cmp("lt"),
    "logical_and": _logic("and"), "logical_or": _logic("or"), "logical_xor": _logic("xor"),
    "logical_not": _logic("not"), "float": _cast("f"), "bool": _cast("b"), "to": _to, "type_as": _type_as,
    "detach": _detach, "clone": _identity, "contiguous": _identity, "view_as": _identity,
    "reshape_as": _identity, "expand_as": _identity,
}


# ---------------------------------------------------------------------------------------------
# tracing
# ---------------------------------------------------------------------------------------------
class _Tracer(torch.fx.Tracer):
    """fx tracer with SpikingJelly's surrogate modules as leaves (the spike is one op of the step)."""

    def is_leaf_module(self, m, qualname):
        from .. import _sj

        return isinstance(m, _sj.SurrogateFunctionBase) or super().is_leaf_module(m, qualname)


def _wrapper(node: nn.Module, n_states: int) -> nn.Module:
    """A module whose ``forward(x, s0, ...)`` is ``node.step(x, s0, ...)`` (``node`` is its child ``n``)."""
    names = ["x"] + [f"s{i}" for i in range(n_states)]
    ns = {}
    exec(f"def forward(self, {', '.join(names)}):\n    return self.n.step({', '.join(names)})\n", ns)
    cls = type(f"StepOf{type(node).__name__}", (nn.Module,), {"forward": ns["forward"]})
    w = cls()
    w.n = node
    return w


def trace(node: nn.Module) -> StepGraph:
    """The :class:`StepGraph` of ``node.step`` (``node``: a :class:`neuroq.neuron.BaseNode`); raises
    :class:`~neuroq.ops.Unsupported` naming what the generated kernels cannot run."""
    names = node.state_names()
    root = _wrapper(node, len(names))
    try:
        graph = _Tracer().trace(root)
    except Unsupported:
        raise
    except Exception as e:  # a TraceError, or whatever the step does with a Proxy it cannot
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "control flow" in msg:
            raise Unsupported("uses a tensor in Python control flow (if/while on a tensor value), which cannot be "
                              "traced") from None
        raise Unsupported(f"could not be traced by torch.fx ({type(e).__name__}: {msg[:160]})") from None
    g = _Lower(root, len(names)).run(graph)
    g.name = f"{type(node).__qualname__}.step"
    return _prune(g)


def _prune(g: StepGraph) -> StepGraph:
    """Drop the values no output needs; renumber (inputs stay)."""
    live = set()
    stack = list(g.outputs)
    while stack:
        i = stack.pop()
        if i in live:
            continue
        live.add(i)
        stack.extend(g.ops[i].args)
    keep = [i for i, op in enumerate(g.ops) if i in live or op.kind in ("x", "state")]
    new = {old: n for n, old in enumerate(keep)}
    ops = []
    for i in keep:
        op = g.ops[i]
        ops.append(Op(op.kind, tuple(new[a] for a in op.args), op.dtype, op.attr, op.note))
    # the constant slots that are still used, renumbered in order
    slots = sorted({op.attr for op in ops if op.kind == "const"})
    remap = {s: n for n, s in enumerate(slots)}
    for op in ops:
        if op.kind == "const":
            op.attr = remap[op.attr]
    used_sg = sorted({op.attr for op in ops if op.kind == "fire"})
    sg_remap = {s: n for n, s in enumerate(used_sg)}
    for op in ops:
        if op.kind == "fire":
            op.attr = sg_remap[op.attr]
    return StepGraph(ops=ops, outputs=tuple(new[o] for o in g.outputs), n_states=g.n_states,
                     consts=[g.consts[s] for s in slots], surrogates=[g.surrogates[s] for s in used_sg], name=g.name)


#: values that are no arithmetic: inputs, constants, type changes and gradient stops
_FREE = {"x", "state", "const", "b2f", "f2b", "detach"}


def count_ops(g: StepGraph) -> dict:
    """Elementwise operations per neuron and time step of a traced step, for the energy meter: ``{"ops": n,
    "by_kind": {kind: count}}``.  Every operation the outputs need counts once, except inputs, constants, casts
    and ``detach``; a threshold crossing (``fire``) is one comparison, so the subtraction that only feeds it
    (``h - V_th``) is not counted again (SpikingJelly's simple model counts fire as one op the same way)."""
    users: dict = {}
    for i, op in enumerate(g.ops):
        for a in op.args:
            users.setdefault(a, []).append(i)
    by_kind: dict = {}
    for i, op in enumerate(g.ops):
        if op.kind in _FREE:
            continue
        if op.kind in ("sub", "add") and users.get(i) and all(g.ops[u].kind == "fire" for u in users[i]):
            continue  # the comparison with the threshold: counted by fire
        by_kind[op.kind] = by_kind.get(op.kind, 0) + 1
    return dict(ops=sum(by_kind.values()), by_kind=by_kind)


# ---------------------------------------------------------------------------------------------
# what the backward keeps
# ---------------------------------------------------------------------------------------------
def _depends_on_input(g: StepGraph) -> list:
    """Per value: whether it depends on ``x`` or a state (a value of constants alone is recomputed for free)."""
    dep = []
    for op in g.ops:
        dep.append(op.kind in ("x", "state") or any(dep[a] for a in op.args))
    return dep


def save_set(g: StepGraph, used: set) -> tuple:
    """The values the forward keeps so that the backward can recompute every value of ``used`` (indices of
    ``g.ops``, the forward values its vector-Jacobian product reads) without ``x`` or the states: a minimum
    vertex cut between the inputs and ``used`` (max-flow on the split graph, each value costing one fp32 per
    neuron and step), the cut nearest to ``used`` among the minimum ones (the least recomputation).  Keeping
    the inputs themselves is always a cut, so the result never has more than ``n_states + 1`` values.
    Returns the indices in increasing order."""
    dep = _depends_on_input(g)
    used = {i for i in used if dep[i]}
    if not used:
        return ()
    inf = len(g.ops) + 2
    src, snk = "s", "t"
    cap: dict = {}

    def edge(a, b, c):
        cap.setdefault(a, {})
        cap.setdefault(b, {})
        cap[a][b] = cap[a].get(b, 0) + c
        cap[b].setdefault(a, 0)

    for i, op in enumerate(g.ops):
        if not dep[i]:
            continue
        edge(("in", i), ("out", i), 1)
        if op.kind in ("x", "state"):
            edge(src, ("in", i), inf)
        for a in op.args:
            if dep[a]:
                edge(("out", a), ("in", i), inf)
    for i in used:
        edge(("out", i), snk, inf)
    while True:  # Edmonds-Karp: at most n_states + 2 augmenting paths
        prev = {src: None}
        q = deque([src])
        while q and snk not in prev:
            a = q.popleft()
            for b, c in cap[a].items():
                if c > 0 and b not in prev:
                    prev[b] = a
                    q.append(b)
        if snk not in prev:
            break
        path, b = [], snk
        while prev[b] is not None:
            path.append((prev[b], b))
            b = prev[b]
        f = min(cap[a][b] for a, b in path)
        for a, b in path:
            cap[a][b] -= f
            cap[b][a] += f
    # the nodes that still reach the sink in the residual graph; the cut nearest to it is the split edges
    # (value in -> value out) that enter that set
    reach = {snk}
    q = deque([snk])
    while q:
        b = q.popleft()
        for a in cap[b]:
            if a not in reach and cap[a][b] > 0:
                reach.add(a)
                q.append(a)
    return tuple(sorted(i for i in range(len(g.ops)) if dep[i] and ("out", i) in reach and ("in", i) not in reach))


#: ops that compare a float operand (in their value or in their derivative): the reverse loop, compiled with
#: FMA contraction, must recompute such an operand bit for bit (a spike, a kink, a condition)
_COMPARES = {"fire", "ge", "gt", "le", "lt", "eq", "ne", "abs", "relu", "max", "min", "clamplo", "clamphi", "sign"}
_MULS = {"mul", "div", "pow", "neg"}  # (a division by a constant is emitted as a multiplication)


def keep_exact(g: StepGraph, saved: tuple, used: set) -> tuple:
    """``saved`` (from :func:`save_set`) plus every value a comparison in the backward's recomputation reads
    whose recomputation has a contraction candidate (a recomputed multiplication feeding an addition or
    subtraction, which ``-ffp-contract=fast`` may fuse into one FMA and round differently): such a value is
    kept instead, so that spikes, kinks and conditions in the reverse loop equal the forward's bit for bit.
    For the usual neurons (the comparison reads ``H - V_th``, ``H`` kept) nothing is added."""
    keep = set(saved)
    while True:
        slot = {i: 0 for i in keep}
        closure = _recompute_closure(g, used, slot)
        read = sorted({a for i in closure if i not in keep and g.ops[i].kind in _COMPARES
                       for a in g.ops[i].args if g.ops[a].dtype == "f"})
        bad = [v for v in read if v not in keep and _contractible(g, v, keep)]
        if not bad:
            return tuple(sorted(keep))
        keep.add(bad[0])  # the earliest first: keeping it may make the later ones exact


def _contractible(g: StepGraph, v: int, keep: set) -> bool:
    """Whether recomputing ``v`` from the kept values and constants has a multiplication (recomputed) that
    feeds an addition or a subtraction (recomputed)."""
    sub = _recompute_closure(g, {v}, {i: 0 for i in keep})
    recomputed = {i for i in sub if i not in keep and g.ops[i].kind != "const"}
    return any(g.ops[i].kind in ("add", "sub") and any(a in recomputed and g.ops[a].kind in _MULS
                                                       for a in g.ops[i].args) for i in recomputed)


def _recompute_closure(g: StepGraph, used: set, saved: dict) -> set:
    """The values the backward defines: ``used`` and what they are computed from, down to the saved values
    and the constants."""
    out, stack = set(), list(used)
    while stack:
        i = stack.pop()
        if i in out:
            continue
        out.add(i)
        if i in saved:
            continue
        if g.ops[i].kind in ("x", "state"):  # pragma: no cover - save_set cuts every input from used
            raise AssertionError(f"value {i} ({g.ops[i].kind}) is neither saved nor recomputable")
        stack.extend(g.ops[i].args)
    return out


def _as_float(expr: str, op: Op) -> str:
    return f"{expr} ? 1.0f : 0.0f" if op.dtype == "b" else expr


# ---------------------------------------------------------------------------------------------
# emission
# ---------------------------------------------------------------------------------------------
_NO_GRAD = {"const", "detach", "b2f", "f2b", "ge", "gt", "le", "lt", "eq", "ne", "and", "or", "xor", "not", "sign"}
_CMP_C = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "eq": "==", "ne": "!="}
_LOGIC_C = {"and": "&", "or": "|", "xor": "^"}
_UNARY_C = {"exp": "expf({a})", "log": "logf({a})", "tanh": "tanhf({a})", "sin": "sinf({a})", "cos": "cosf({a})",
            "sqrt": "sqrtf({a})", "rsqrt": "1.0f / sqrtf({a})", "recip": "1.0f / {a}", "abs": "fabsf({a})",
            "neg": "-{a}", "sigmoid": "1.0f / (1.0f + expf(-{a}))", "relu": "{a} > 0.0f ? {a} : 0.0f",
            "sign": "{a} > 0.0f ? 1.0f : ({a} < 0.0f ? -1.0f : 0.0f)", "detach": "{a}",
            "b2f": "{a} ? 1.0f : 0.0f", "f2b": "{a} != 0.0f", "fire": "{a} >= 0.0f ? 1.0f : 0.0f"}


def _flit(x: float) -> str:
    """A C literal of the fp32 value of ``x`` (exact: hexadecimal)."""
    f = float(np.float32(x))
    if f == int(f) and abs(f) < 2 ** 24:
        return f"{int(f)}.0f"
    return f"{f.hex()}f" if math.isfinite(f) else ("(1.0f / 0.0f)" if f > 0 else "(-1.0f / 0.0f)")


class Emitted:
    """The emitted source of one graph for one target: ``struct`` (the ``NQStep`` definition and, for
    CUDA, its argument macros), the constant values in slot order (``consts``, fp32) and the surrogates."""

    def __init__(self, struct: str, consts: np.ndarray, surrogates: list, graph: StepGraph, target: str,
                 saved: tuple = ()):
        self.struct, self.consts, self.surrogates, self.graph, self.target = struct, consts, surrogates, graph, target
        self.saved = tuple(saved)  # the values the forward keeps for the backward (indices of graph.ops)

    @property
    def n_save(self) -> int:
        """Values per neuron and step the forward keeps for the backward (``NQStep::NSAVE``)."""
        return len(self.saved)


def emit(g: StepGraph, target: str) -> Emitted:
    """``struct NQStep`` for ``target`` (``'cpu'`` or ``'cuda'``) and its constant table."""
    if target not in ("cpu", "cuda"):
        raise ValueError(target)
    consts = [np.float32(v) for v in g.consts]
    # a division by a constant: CUDA multiplies by 1.0f / float(c) (torch's CUDA division by a scalar), the
    # CPU divides (torch's CPU division) unless 1/c is exact (a power of two), where multiplying is the same
    inv_slot = {}
    for op in g.ops:
        if op.kind == "div" and g.ops[op.args[1]].kind == "const":
            slot = g.ops[op.args[1]].attr
            if slot not in inv_slot and (target == "cuda" or g._pow2(slot)):
                inv_slot[slot] = len(consts)
                consts.append(torch_reciprocal(g.consts[slot]))

    def name(i):
        return f"v{i}"

    def fwd_expr(i, op):
        a = [name(j) for j in op.args]
        k = op.kind
        if k == "x":
            return "x"
        if k == "state":
            return f"st[{op.attr}]"
        if k == "const":
            return f"c[{op.attr}]"
        if k in ("add", "sub", "mul"):
            return f"{a[0]} {'+-*'[('add', 'sub', 'mul').index(k)]} {a[1]}"
        if k == "div":
            d = g.ops[op.args[1]]
            if d.kind == "const" and d.attr in inv_slot:
                return f"{a[0]} * c[{inv_slot[d.attr]}]"
            return f"{a[0]} / {a[1]}"
        if k in _UNARY_C:
            return _UNARY_C[k].format(a=a[0])
        if k == "pow":
            return _pow_expr(a[0], op.attr)
        if k == "max":
            return f"({a[0]} != {a[0]} || {a[0]} > {a[1]}) ? {a[0]} : {a[1]}"
        if k == "min":
            return f"({a[0]} != {a[0]} || {a[0]} < {a[1]}) ? {a[0]} : {a[1]}"
        if k == "clamplo":
            return f"{a[0]} < {a[1]} ? {a[1]} : {a[0]}"
        if k == "clamphi":
            return f"{a[0]} > {a[1]} ? {a[1]} : {a[0]}"
        if k == "where":
            return f"{a[0]} ? {a[1]} : {a[2]}"
        if k in _CMP_C:
            return f"{a[0]} {_CMP_C[k]} {a[1]}"
        if k in _LOGIC_C:
            return f"({a[0]} {_LOGIC_C[k]} {a[1]}) != 0"
        if k == "not":
            return f"!{a[0]}"
        raise AssertionError(k)  # pragma: no cover

    def forward_lines():
        lines = []
        for i, op in enumerate(g.ops):
            ctype = "bool" if op.dtype == "b" else "float"
            note = f"  // {op.note}" if op.note and op.kind not in ("x", "state", "const") else ""
            lines.append(f"const {ctype} {name(i)} = {fwd_expr(i, op)};{note}")
        return lines

    # reverse mode -------------------------------------------------------------------------
    req = []
    for op in g.ops:
        if op.kind in ("x", "state"):
            req.append(True)
        elif op.kind in _NO_GRAD or op.dtype == "b":
            req.append(False)
        else:
            req.append(any(req[j] for j in op.args if g.ops[j].dtype == "f"))

    def backward_lines():
        lines = []
        grad = {}

        def acc(j, expr):
            if not req[j]:
                return
            if j in grad:
                lines.append(f"{grad[j]} = {grad[j]} + ({expr});")
            else:
                grad[j] = f"g{j}"
                lines.append(f"float g{j} = {expr};")

        acc(g.outputs[0], "g_spike")
        for s, o in enumerate(g.outputs[1:]):
            acc(o, f"gs[{s}]")
        for i in range(len(g.ops) - 1, -1, -1):
            op = g.ops[i]
            if i not in grad or op.kind in ("x", "state"):
                continue
            gi, out = grad[i], name(i)
            a = [name(j) for j in op.args]
            k = op.kind
            if k == "add":
                acc(op.args[0], gi)
                acc(op.args[1], gi)
            elif k == "sub":
                acc(op.args[0], gi)
                acc(op.args[1], f"-{gi}")
            elif k == "mul":
                acc(op.args[0], f"{gi} * {a[1]}")
                acc(op.args[1], f"{gi} * {a[0]}")
            elif k == "div":
                d = g.ops[op.args[1]]
                if d.kind == "const" and d.attr in inv_slot:
                    acc(op.args[0], f"{gi} * c[{inv_slot[d.attr]}]")
                else:
                    acc(op.args[0], f"{gi} / {a[1]}")
                acc(op.args[1], f"-{gi} * (({a[0]} / {a[1]}) / {a[1]})")
            elif k == "neg":
                acc(op.args[0], f"-{gi}")
            elif k == "exp":
                acc(op.args[0], f"{gi} * {out}")
            elif k == "log":
                acc(op.args[0], f"{gi} / {a[0]}")
            elif k == "tanh":
                acc(op.args[0], f"{gi} * (1.0f - {out} * {out})")
            elif k == "sigmoid":
                acc(op.args[0], f"{gi} * (1.0f - {out}) * {out}")
            elif k == "sqrt":
                acc(op.args[0], f"{gi} / (2.0f * {out})")
            elif k == "rsqrt":
                acc(op.args[0], f"-0.5f * {gi} * ({out} * {out} * {out})")
            elif k == "recip":
                acc(op.args[0], f"-{gi} * ({out} * {out})")
            elif k == "abs":
                acc(op.args[0], f"{a[0]} > 0.0f ? {gi} : ({a[0]} < 0.0f ? -{gi} : 0.0f)")
            elif k == "relu":
                acc(op.args[0], f"{out} <= 0.0f ? 0.0f : {gi}")
            elif k == "sin":
                acc(op.args[0], f"{gi} * cosf({a[0]})")
            elif k == "cos":
                acc(op.args[0], f"-{gi} * sinf({a[0]})")
            elif k == "pow":
                e = op.attr
                acc(op.args[0], f"{gi} * ({_flit(e)} * {_pow_expr(a[0], e - 1.0)})")
            elif k in ("max", "min"):
                lt = ">" if k == "max" else "<"
                acc(op.args[0], f"{a[0]} == {a[1]} ? {gi} * 0.5f : ({a[0]} {lt} {a[1]} ? {gi} : 0.0f)")
                acc(op.args[1], f"{a[0]} == {a[1]} ? {gi} * 0.5f : ({a[0]} {lt} {a[1]} ? 0.0f : {gi})")
            elif k == "clamplo":  # torch's convention at the bound (strict in torch 2.x)
                acc(op.args[0], f"{a[0]} {'>=' if clamp_at_bound()[0] else '>'} {a[1]} ? {gi} : 0.0f")
            elif k == "clamphi":
                acc(op.args[0], f"{a[0]} {'<=' if clamp_at_bound()[1] else '<'} {a[1]} ? {gi} : 0.0f")
            elif k == "where":
                acc(op.args[1], f"{a[0]} ? {gi} : 0.0f")
                acc(op.args[2], f"{a[0]} ? 0.0f : {gi}")
            elif k == "fire":
                kind, inner = (int(v) for v in require_surrogate(g.surrogates[op.attr])[:2])
                acc(op.args[0], f"{gi} * nq_surrogate_grad({kind}, {inner}, sg[{op.attr}], {a[0]})")
            else:  # pragma: no cover - every differentiable kind is above
                raise AssertionError(k)
        x_i = next(i for i, op in enumerate(g.ops) if op.kind == "x")
        for s in range(g.n_states):
            st_i = next(i for i, op in enumerate(g.ops) if op.kind == "state" and op.attr == s)
            lines.append(f"gs[{s}] = {grad.get(st_i, '0.0f')};")
        lines.append(f"return {grad.get(x_i, '0.0f')};")
        return lines

    fwd = forward_lines()
    new_states = [f"st[{s}] = {name(o)};" for s, o in enumerate(g.outputs[1:])]
    body_f = fwd + new_states + [f"return {name(g.outputs[0])};"]
    # what the backward keeps of the forward: the fewest values that every value its vector-Jacobian product
    # reads can be recomputed from (a minimum vertex cut between the inputs and those values); the backward
    # recomputes the rest from them with the forward's own expressions, so bit for bit
    grads = backward_lines()
    used = {int(m) for m in re.findall(r"\bv(\d+)\b", "\n".join(grads))}  # the forward values they read
    saved = keep_exact(g, save_set(g, used), used)
    slot = {i: k for k, i in enumerate(saved)}
    body_s = fwd + [f"sv[{slot[i]}] = {_as_float(name(i), g.ops[i])};" for i in saved] + body_f[len(fwd):]
    body_b = []
    for i in sorted(_recompute_closure(g, used, slot)):
        op = g.ops[i]
        ctype = "bool" if op.dtype == "b" else "float"
        if i in slot:
            expr = f"sv[{slot[i]}] != 0.0f" if op.dtype == "b" else f"sv[{slot[i]}]"
            body_b.append(f"const {ctype} {name(i)} = {expr};  // saved")
        else:
            body_b.append(fwd[i])
    body_b += grads
    ind = "        "
    struct = (
        f"// {g.name}: {g.n_states} state(s), {len(consts)} constant(s), {len(g.surrogates)} surrogate(s)\n"
        "struct NQStep {\n"
        f"    enum {{ NSTATE = {g.n_states}, NCONST = {len(consts)}, NSG = {len(g.surrogates)}, NSAVE = {len(saved)} }};\n"
        "    // one step: the states st[0..NSTATE) in place (a float* or an accessor), returns the spike\n"
        "    template <typename ST>\n"
        "    static NQ_HD_MEMBER float forward(const float* c, float x, ST st) {\n"
        + "\n".join(ind + ln for ln in body_f) + "\n    }\n"
        "    // the same step, also writing what backward needs into sv[0..NSAVE) (fp32; a condition as 1 / 0)\n"
        "    template <typename ST, typename SV>\n"
        "    static NQ_HD_MEMBER float forward_save(const float* c, float x, ST st, SV sv) {\n"
        + "\n".join(ind + ln for ln in body_s) + "\n    }\n"
        "    // its vector-Jacobian product from the step's sv[]: gs[] = dL/d(new states) in, dL/d(old states)\n"
        "    // out; returns dL/dx\n"
        "    template <typename SV, typename GS>\n"
        "    static NQ_HD_MEMBER float backward(const float* c, const NQSurrogate* sg, SV sv, float g_spike, GS gs) {\n"
        "        (void)sg;\n        (void)sv;\n"
        + "\n".join(ind + ln for ln in body_b) + "\n    }\n"
        "};\n")
    if target == "cuda":
        struct += _cuda_arg_macros(len(consts), len(g.surrogates))
    return Emitted(struct, np.array(consts, dtype=np.float32), list(g.surrogates), g, target, saved)


@functools.lru_cache(maxsize=None)
def clamp_at_bound() -> tuple:
    """Whether torch's ``clamp`` passes the gradient at its lower / upper bound (torch has used both the
    subgradient 1 and 0 there; the installed torch is asked once, so the kernels follow it)."""
    out = []
    for kw in ({"min": 0.0}, {"max": 0.0}):
        w = torch.zeros(1, requires_grad=True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torch.clamp(w, **kw).sum(), w)
        out.append(bool(g.item() != 0.0))
    return tuple(out)


def _pow_expr(a: str, e: float) -> str:
    """torch's ``tensor ** e`` on the CPU (``pow_tensor_scalar_optimized_kernel``): multiplications and
    square roots for the exponents it special-cases, ``powf`` otherwise."""
    if e == 0.0:
        return "1.0f"
    if e == 1.0:
        return a
    if e == 2.0:
        return f"({a} * {a})"
    if e == 3.0:
        return f"({a} * {a} * {a})"
    if e == 0.5:
        return f"sqrtf({a})"
    if e == -0.5:
        return f"(1.0f / sqrtf({a}))"
    if e == -1.0:
        return f"(1.0f / {a})"
    if e == -2.0:
        return f"(1.0f / ({a} * {a}))"
    return f"powf({a}, {_flit(e)})"


def _cuda_arg_macros(n_const: int, n_sg: int) -> str:
    """The CUDA entry points take the constants and the surrogates' fields as scalar arguments (CuPy
    passes scalars by value): ``NQ_STEP_CONST_ARGS`` / ``NQ_STEP_CONST_INIT`` and ``NQ_STEP_SG_ARGS`` /
    ``NQ_STEP_SG_SET``, from the field list ``NQ_SURROGATE_FIELDS`` of ``kernels.cuh``."""
    from .abi import struct_fields

    fields = struct_fields("NQ_SURROGATE_FIELDS")
    const_args = "".join(f", float c{k}" for k in range(n_const))
    const_init = "{" + (", ".join(f"c{k}" for k in range(n_const)) or "0.0f") + "}"
    sg_args = "".join(f", {t} sg{k}_{f}" for k in range(n_sg) for t, f in fields)
    sg_set = " ".join(f"sg[{k}].{f} = sg{k}_{f};" for k in range(n_sg) for _, f in fields)
    return (f"#define NQ_STEP_CONST_ARGS {const_args}\n"
            f"#define NQ_STEP_CONST_INIT {const_init}\n"
            f"#define NQ_STEP_SG_ARGS {sg_args}\n"
            f"#define NQ_STEP_SG_SET {sg_set}\n")


def source_key(text: str) -> str:
    """A short hash of a source text (names the compiled module)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]
