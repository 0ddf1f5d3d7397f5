r"""neuroq's neuron base class.

A subclass states its **charge** equation and, where it differs from the default, its fire and
reset -- or, for a neuron with several states, its whole pure :meth:`~BaseNode.step`; it gets single-
and multi-step modes, ``functional.reset_net``, ``store_v_seq`` / ``store_state_seqs``, backend
dispatch, a generated fused kernel (:mod:`neuroq.ops.generated`), :class:`neuroq.energy.EnergyMeter`
and :mod:`neuroq.viz` for free.

Per time step (SpikingJelly's three-stage convention):

.. math::
    H[t] &= f(V[t-1], X[t])                    &&\text{charge (subclass)}\\
    S[t] &= \Theta(H[t] - V_{th})              &&\text{fire (surrogate gradient backward)}\\
    V[t] &= \begin{cases} H[t](1-S[t]) + V_{reset}S[t] & \text{hard reset}\\
                          H[t] - V_{th}S[t] & \text{soft reset } (V_{reset}=\text{None})\end{cases}

Rules for a subclass: :meth:`BaseNode.step` (and the ``neuronal_*`` methods it calls) must be
**pure** -- take the states as arguments and return the new ones, never assign ``self.v`` or another
state inside it (the base class stores what ``step`` returns).  A neuron with more states than the
membrane ``v`` declares them in :attr:`BaseNode.states` (``states = ("v", "a")``); the base class
registers them (their initial values, their shapes: one value per neuron, like ``v``), passes them
to ``step(x, v, a) -> (spike, v, a)`` and stores what it returns (see ``examples/custom_neuron.py``
and ``docs/neurons.md``).  A neuron without a hand-written kernel, or a subclass of one (``IFNode``,
``LIFNode``) that overrides ``neuronal_charge``, ``neuronal_fire``, ``neuronal_reset`` or ``step``,
runs a kernel generated from its own step (:mod:`neuroq.ops.generated`); a step the generator cannot
compile runs the generic loop over :meth:`~BaseNode.step`, with a one-line notice naming the op.

Example -- a quadratic integrate-and-fire neuron::

    class QIFNode(neuroq.neuron.BaseNode):
        def __init__(self, tau=2.0, **kw):
            super().__init__(**kw)
            self.tau = tau
        def neuronal_charge(self, x, v):
            return v + (x + v * v) / self.tau

Example -- an adaptive-threshold LIF neuron with two states::

    class AdaptiveLIFNode(neuroq.neuron.BaseNode):
        states = ("v", "a")              # v starts at v_reset, a at 0 (a dict gives other values)
        def __init__(self, tau=2.0, beta=0.5, rho=0.8, **kw):
            super().__init__(**kw)
            self.tau, self.beta, self.rho = tau, beta, rho
        def step(self, x, v, a):
            h = v + (x - v) / self.tau
            s = self.surrogate_function(h - self.v_threshold - self.beta * a)
            return s, self.neuronal_reset(h, s), self.rho * a + s
"""
from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Optional

import torch
import torch.fx

from .. import _sj
from .. import ops
from .._validate import check_bool, check_callable, check_choice, check_step_input
from ..functional import neuron as neuron_fn
from ..functional.neuron import IFParameters
from ..ops.dispatch import BACKENDS, resolve
from ..ops.params import STORAGE_TYPES


class Neuron(_sj.MemoryModule):
    """Marker base class of every neuroq neuron (spiking or quantizing activation with step modes).

    :func:`is_neuron` -- what :mod:`neuroq.viz` records and :class:`neuroq.energy.EnergyMeter`
    counts as a neuron layer -- recognises subclasses of this class and SpikingJelly's own neurons.
    A neuron exposes ``step_mode`` and, where it has one, ``v_threshold``.

    Energy models read three class attributes (override them in a subclass): ``energy_rule`` (``'neuron'``:
    how :mod:`neuroq.energy` recognises a neuron layer without importing this class),
    ``energy_ops_per_update`` (arithmetic operations per neuron and time step; ``None``: the rule of the
    SpikingJelly class it extends, see :func:`neuroq.energy.rules.neuron_ops_per_update`) and
    ``energy_leaky`` (a leak multiply per update; ``None``: True for LIF-type neurons).
    """

    energy_rule = "neuron"
    energy_ops_per_update = None
    energy_leaky = None

    def _stored_state(self, name: str, like: torch.Tensor) -> Optional[torch.Tensor]:
        """The state ``name`` for a step whose state has ``like``'s shape: the stored tensor (an error if
        its shape differs: the network was not reset between batches), the reset value as a tensor
        like ``like`` when it is a number, or ``None`` when it is ``None``."""
        value = getattr(self, name)
        if isinstance(value, torch.Tensor):
            if value.shape != like.shape:
                raise RuntimeError(
                    f"{type(self).__name__}: stored state {name} has shape {tuple(value.shape)} but this step needs "
                    f"shape {tuple(like.shape)}; call spikingjelly's functional.reset_net(model) (or "
                    "neuroq.reset_net) between batches")
            return value
        return None if value is None else torch.full_like(like, float(value))


def is_neuron(m) -> bool:
    """True for neuroq neurons (:class:`Neuron`) and SpikingJelly's own (any stateful module defined
    in ``spikingjelly.activation_based.neuron``, on 0.0.0.0.14 and 2.0.0)."""
    if isinstance(m, Neuron):
        return True
    return isinstance(m, _sj.MemoryModule) and type(m).__module__.startswith("spikingjelly.activation_based.neuron")


def record_property(name: str, doc: str = "") -> property:
    """A module attribute that reads and writes field ``name`` of the module's parameter record
    (``node.tau = 3.0`` builds a new, validated record)."""

    def fget(self):
        return getattr(self.params, name)

    def fset(self, value):
        p = self.params
        if name not in {f.name for f in dataclasses.fields(p)}:
            raise AttributeError(f"{type(self).__name__}.{name} is fixed to {getattr(p, name)!r} "
                                 f"({type(p).__name__} has no field {name!r})")
        self.params = dataclasses.replace(p, **{name: value})

    return property(fget, fset, doc=doc or f"``params.{name}`` (settable; validated by the record)")


#: methods a fused kernel implements: a subclass that overrides one runs the generic loop instead
KERNEL_METHODS = ("neuronal_charge", "neuronal_fire", "neuronal_reset", "step", "multi_step_torch")


@functools.lru_cache(maxsize=None)
def _kernel_owner_check(cls) -> tuple[bool, tuple]:
    """(kernel may run, overridden method names) for neuron class ``cls``."""
    if getattr(cls, "kernel_family", None) is None:
        return False, ()
    owner = next(c for c in cls.__mro__ if "kernel_family" in c.__dict__)
    changed = tuple(m for m in KERNEL_METHODS if getattr(cls, m, None) is not getattr(owner, m, None))
    return not changed, changed


_WARNED: set = set()


def _warn_once(key, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _check_states(cls) -> tuple:
    """``((name, initial value or None), ...)`` of ``cls.states`` (a tuple of names or a dict name -> initial
    value), checked: identifiers, unique, ``v`` first; ``TypeError`` naming the class otherwise."""
    spec = cls.__dict__.get("states", None)
    if spec is None:
        return None
    items = tuple(spec.items()) if isinstance(spec, dict) else tuple((n, None) for n in spec) \
        if isinstance(spec, (tuple, list)) else None
    if not items or not all(isinstance(n, str) and n.isidentifier() for n, _ in items):
        raise TypeError(f"{cls.__name__}.states must be a tuple of state names (or a dict name -> initial value), "
                        f"the membrane 'v' first, e.g. states = ('v', 'a'); got {spec!r}")
    names = [n for n, _ in items]
    if names[0] != "v" or len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__}.states must name each state once, the membrane 'v' first; got {names}")
    for n, init in items:
        if init is not None and (isinstance(init, bool) or not isinstance(init, (int, float))):
            raise TypeError(f"{cls.__name__}.states: the initial value of {n!r} must be a number (or None: "
                            f"v_reset for 'v', 0 for the others), got {init!r}")
    return items


class BaseNode(Neuron, _sj.sj_neuron_module().BaseNode):
    r"""Spiking neuron with membrane state ``v`` (and any further states it declares); subclasses implement
    :meth:`neuronal_charge`, or :meth:`step` for several states.

    Per step: charge :math:`H[t] = f(V[t-1], X[t])` (subclass), fire
    :math:`S[t] = \Theta(H[t] - V_{th})`, reset hard :math:`V[t] = H[t](1-S[t]) + V_{reset}S[t]` or
    soft :math:`V[t] = H[t] - V_{th}S[t]` (SpikingJelly's convention, Fang et al. 2023).

    Several states: a subclass names them in :attr:`states` (the membrane ``v`` first, e.g.
    ``states = ("v", "a")``, or ``{"v": None, "a": 0.0}`` for initial values) and writes one pure
    ``step(x, v, a) -> (spike, v, a)``.  The base class registers each state as a memory (reset by
    ``functional.reset_net`` to its initial value, one value per neuron like ``v``), passes them to
    ``step`` and stores what it returns; ``store_state_seqs`` keeps ``<name>_seq`` ``[T, N, ...]`` of
    each state in multi-step mode.

    Args:
        v_threshold: firing threshold :math:`V_{th}` (finite; > ``v_reset`` with a hard reset).
        v_reset: reset potential for hard reset, or ``None`` for soft reset (subtract :math:`V_{th}`).
        surrogate_function: any SpikingJelly surrogate (default ``surrogate.Sigmoid(alpha=4.)``).
        detach_reset: detach the spike in the reset path.
        step_mode: ``'s'`` (input ``[N, ...]``) or ``'m'`` (input ``[T, N, ...]``).
        backend: ``'auto'`` | ``'torch'`` | ``'cpu'`` | ``'cupy'`` (see :mod:`neuroq.ops.dispatch`).
        store_v_seq: in multi-step mode keep ``v_seq`` (``[T, N, ...]``, after reset).
        params: the parameter record instead of ``v_threshold``/``v_reset``/``detach_reset``
            (an instance of :attr:`params_type`).
        store_state_seqs: in multi-step mode keep the sequence of every state (``True``) or of the
            named ones (a tuple of names) as ``<name>_seq`` (``v_seq``, ``a_seq`` ...).

    The parameters live in one frozen record, :attr:`params` (:class:`~neuroq.functional.IFParameters`
    here, :class:`~neuroq.functional.LIFParameters` for ``LIFNode`` ...); ``node.v_threshold`` etc.
    read and write its fields (a write builds a new, validated record).

    Inputs: ``x`` ``[N, ...]`` (step mode ``'s'``) or ``x_seq`` ``[T, N, ...]`` (``'m'``, T >= 1).

    Outputs: spikes of the same shape and dtype; the states (``v`` ``[N, ...]`` ...) stay on the module
    (``v_seq`` ``[T, N, ...]`` with ``store_v_seq``).

    Example::

        >>> import torch
        >>> from neuroq.neuron import BaseNode
        >>> class MyIF(BaseNode):
        ...     def neuronal_charge(self, x, v):
        ...         return v + x
        >>> MyIF(step_mode="m")(torch.full((3, 2), 0.6)).tolist()
        [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
        >>> class Adaptive(BaseNode):
        ...     states = ("v", "a")
        ...     def step(self, x, v, a):
        ...         h = v + x
        ...         s = self.surrogate_function(h - self.v_threshold - a)
        ...         return s, self.neuronal_reset(h, s), 0.5 * a + s
        >>> n = Adaptive(step_mode="m", store_state_seqs=True)
        >>> n(torch.full((4, 1), 0.6)).flatten().tolist()
        [0.0, 1.0, 0.0, 0.0]
        >>> n.a_seq.flatten().tolist()
        [0.0, 1.0, 0.5, 0.25]
    """

    #: kernel family in :mod:`neuroq.ops` (None: no hand-written kernel; the generated one runs)
    kernel_family: Optional[str] = None
    #: read by SpikingJelly 2.0's BaseNode machinery (its __init__, which sets it, is not called)
    _neuron_precision = None
    #: the parameter record class of this neuron
    params_type = IFParameters
    #: the states, in the order :meth:`step` takes and returns them after ``x``: a tuple of names, the
    #: membrane ``v`` first, or a dict ``name -> initial value`` (``None``: ``v_reset`` for ``v``, 0 for others)
    states = ("v",)

    v_threshold = record_property("v_threshold", "firing threshold ``params.v_threshold`` (settable)")
    v_reset = record_property("v_reset", "reset potential ``params.v_reset``; None = soft reset (settable)")
    detach_reset = record_property("detach_reset", "``params.detach_reset`` (settable)")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        items = _check_states(cls)
        if items is not None and len(items) > 1 and cls.step is BaseNode.step:
            names = ", ".join(n for n, _ in items)
            raise TypeError(f"{cls.__name__} declares the states ({names}): write its pure step(x, {names}) -> "
                            f"(spike, {names})")

    def __init__(self, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset: bool = False, step_mode: str = "s", backend: str = "auto",
                 store_v_seq: bool = False, params=None, store_state_seqs=False):
        # SpikingJelly's BaseNode is a base class so that its tools (monitors, op_counter) see neuroq's
        # neurons; its __init__ is skipped: it would register `v` itself (a second registration asserts)
        _sj.MemoryModule.__init__(self)
        self.params = params if params is not None else IFParameters(
            v_threshold=v_threshold, v_reset=v_reset, detach_reset=detach_reset)
        if surrogate_function is None:
            surrogate_function = _sj.default_surrogate()
        self.surrogate_function = check_callable("surrogate_function", surrogate_function)
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.backend = backend
        self.store_v_seq = check_bool("store_v_seq", store_v_seq)
        self.register_memory("v", self._v_init())
        self.v_seq = None
        for name, init in self.state_spec()[1:]:
            self.register_memory(name, 0.0 if init is None else float(init))
            setattr(self, name + "_seq", None)
        self.store_state_seqs = store_state_seqs

    # ---- the states ---------------------------------------------------------------------
    @classmethod
    def state_spec(cls) -> tuple:
        """``((name, initial value or None), ...)`` of :attr:`states`, the membrane ``v`` first."""
        for c in cls.__mro__:
            if "states" in c.__dict__:
                return _check_states(c)
        return (("v", None),)

    @classmethod
    def state_names(cls) -> tuple:
        """The names of the states, in the order :meth:`step` takes and returns them (``v`` first)."""
        return tuple(n for n, _ in cls.state_spec())

    @property
    def store_state_seqs(self):
        """Which states keep their sequence ``<name>_seq`` ``[T, N, ...]`` in multi-step mode: ``False``,
        ``True`` (all) or a tuple of state names (settable)."""
        return self._neuroq_store_seqs

    @store_state_seqs.setter
    def store_state_seqs(self, value):
        names = self.state_names()
        if isinstance(value, bool):
            self._neuroq_store_seqs = value
            return
        if isinstance(value, str) or not all(isinstance(v, str) for v in value) or set(value) - set(names):
            raise ValueError(f"{type(self).__name__}.store_state_seqs must be True, False or a tuple of state "
                             f"names out of {names}; got {value!r}")
        self._neuroq_store_seqs = tuple(value)

    def _store_flags(self) -> tuple:
        """Per state, whether multi-step mode keeps its sequence (``v``: ``store_v_seq`` too)."""
        want = self._neuroq_store_seqs
        return tuple((want is True) or (want is not False and n in want) or (n == "v" and bool(self.store_v_seq))
                     for n in self.state_names())

    def _initial_states(self, like: torch.Tensor) -> tuple:
        """The states for a step whose state has ``like``'s shape (:meth:`Neuron._stored_state` of each)."""
        return tuple(self._stored_state(n, like) for n in self.state_names())

    def _set_states(self, values) -> None:
        for name, value in zip(self.state_names(), values):
            setattr(self, name, value)

    # ---- the parameter record -----------------------------------------------------------
    @property
    def params(self):
        """The neuron's frozen parameter record (assign a new record to change several at once)."""
        return self._neuroq_params

    @params.setter
    def params(self, p):
        """Check that ``p`` is a :attr:`params_type` record, store it, and update the reset value of ``v``."""
        if not isinstance(p, self.params_type):
            raise TypeError(f"{type(self).__name__}.params must be a {self.params_type.__name__}, "
                            f"got {type(p).__name__}")
        self._neuroq_params = p
        if "v" in self.__dict__.get("_memories", {}):
            self.set_reset_value("v", self._v_init())

    def _v_init(self) -> float:
        init = dict(self.state_spec()).get("v")
        if init is not None:
            return float(init)
        v_reset = getattr(self.params, "v_reset", None)
        return 0.0 if v_reset is None else float(v_reset)

    @classmethod
    def from_params(cls, params, **kwargs):
        """Build the neuron from a parameter record, e.g. ``LIFNode.from_params(LIFParameters(tau=3.))``;
        ``kwargs``: the module's other arguments (``surrogate_function``, ``step_mode``, ``backend`` ...)."""
        return cls(params=params, **kwargs)

    @property
    def supported_backends(self):
        """The backends this neuron accepts: ``'auto'``, ``'torch'``, ``'cpu'`` and ``'cupy'``."""
        return BACKENDS

    # Our own property: SpikingJelly 0.0.0.0.14's setter would reject 'auto' and import CuPy.
    @property
    def backend(self) -> str:
        """The chosen backend, one of :attr:`supported_backends` (``'auto'`` picks one per call; settable)."""
        return self._neuroq_backend

    @backend.setter
    def backend(self, value: str):
        """Check and set the backend (one of :attr:`supported_backends`)."""
        self._neuroq_backend = check_choice("backend", value, BACKENDS)

    # ---- what a subclass states -------------------------------------------------------
    def neuronal_charge(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Return the pre-spike potential :math:`H[t]` from input ``x`` and state ``v``."""
        raise NotImplementedError(f"{type(self).__name__} must implement neuronal_charge(x, v)")

    def neuronal_fire(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`S = \Theta(H - V_{th})` (surrogate gradient in backward)."""
        return neuron_fn.fire(h, self.params.v_threshold, self.surrogate_function)

    def neuronal_reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        """Hard or soft reset of :math:`H` after ``spike``."""
        p = self.params
        return neuron_fn.hard_or_soft_reset(h, spike, p.v_threshold, p.v_reset, p.detach_reset)

    # ---- machinery ----------------------------------------------------------------------
    def step(self, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One time step, pure: ``(x, v) -> (spike, v_next)`` (must not assign module state); a neuron with
        several :attr:`states` writes ``step(x, v, a, ...) -> (spike, v_next, a_next, ...)``."""
        h = self.neuronal_charge(x, v)
        s = self.neuronal_fire(h)
        return s, self.neuronal_reset(h, s)

    def _initial_v(self, x: torch.Tensor) -> torch.Tensor:
        return self._stored_state("v", x)

    def kernel_allowed(self) -> bool:
        """Whether the hand-written fused kernel of :attr:`kernel_family` implements this neuron: the class
        (or the parent that declares the family) does not override any of ``KERNEL_METHODS``."""
        return _kernel_owner_check(type(self))[0]

    def _kernel(self, x_seq: torch.Tensor, v0: torch.Tensor, store_v_seq: bool, **extra) -> Optional[ops.KernelOut]:
        """Run the fused kernel when the backend and the case allow it, else ``None`` (torch runs)."""
        if self.backend == "torch" or self.kernel_family is None or isinstance(x_seq, torch.fx.Proxy):
            return None  # (checked here, outside the compiler-disabled part: no graph break for 'torch';
            # symbolic tracing has no device to dispatch on and traces the torch reference)
        return self._launch_kernel(x_seq, v0, store_v_seq, **extra)

    @torch.compiler.disable
    def _launch_kernel(self, x_seq, v0, store_v_seq, **extra):
        # Under torch.compile the launch is one opaque eager call (a graph break): the fused kernel
        # runs as in eager mode, the layers around it compile as usual.
        if not _kernel_owner_check(type(self))[0]:
            return None  # the class changes the kernel's equations: the kernel generated from its own step runs
        backend = resolve(self.backend, x_seq, self.kernel_family)
        if backend == "torch":
            return None
        try:
            out = ops.lookup(backend, self.kernel_family)(x_seq, v0, self.params, self.surrogate_function,
                                                          store_v_seq, **extra)
        except ops.Unsupported as e:
            if self.backend != "auto":
                _warn_once(("unsupported", type(self), backend, str(e)),
                           f"neuroq {backend} kernel: {e}; {type(self).__name__} neurons run the torch reference")
            return None
        if out is NotImplemented:  # a third-party launcher declining
            return None
        return out if isinstance(out, ops.KernelOut) else ops.KernelOut(*out)

    def _generated_allowed(self, multi: bool) -> bool:
        """Whether the kernel generated from :meth:`step` may run: not ``backend='torch'``, no hand-written
        kernel for the class (it ran, or declined a case the generated one would decline too) and, in
        multi-step mode, the base class's :meth:`multi_step_torch` (a subclass's own loop is its own)."""
        if self.backend == "torch" or (len(self.state_names()) == 1 and self.kernel_allowed()):
            return False
        return not multi or type(self).multi_step_torch is BaseNode.multi_step_torch

    def _generated_kernel(self, x_seq: torch.Tensor, states0: tuple, store: tuple):
        """The kernel generated from :meth:`step` (:mod:`neuroq.ops.generated`) on ``x_seq`` ``[T, N, ...]``:
        a :class:`neuroq.ops.StepOut`, or ``None`` where it does not run (the torch loop runs)."""
        if isinstance(x_seq, torch.fx.Proxy) or x_seq.dtype not in STORAGE_TYPES:
            return None  # (a float64 tensor: the torch loop, silently, as for the hand-written kernels)
        return self._launch_generated(x_seq, states0, store)

    @torch.compiler.disable
    def _launch_generated(self, x_seq, states0, store):
        backend = resolve(self.backend, x_seq, "generated")
        if backend == "torch":
            return None
        from ..ops import generated

        name = type(self).__name__
        try:
            prog = generated.program(self)
        except ops.Unsupported as e:  # a property of the step: said once, whatever the backend
            ok, changed = _kernel_owner_check(type(self))
            why = f" (it overrides {', '.join(changed)} of a neuron with a hand-written kernel)" if changed else ""
            _warn_once(("generated", type(self), str(e)),
                       f"neuroq: {name}.step {e}{why}; {name} runs the torch loop over its own step()")
            return None
        try:
            return generated.launch(backend, prog, x_seq, states0, store)
        except ops.Unsupported as e:  # a property of this call (device, dtype): said for an explicit backend
            if self.backend != "auto":
                _warn_once(("unsupported", type(self), backend, str(e)),
                           f"neuroq {backend} kernel: {e}; {name} neurons run the torch reference")
            return None
        except RuntimeError as e:  # the generated source did not compile (said once, with the compiler's line)
            if "compil" not in str(e) and "ABI" not in str(e):
                raise
            _warn_once(("compile", type(self), str(e)),
                       f"neuroq: the kernel generated from {name}.step did not build ({str(e).splitlines()[0]}); "
                       f"{name} runs the torch loop over its own step()")
            return None

    def _call_step(self, x: torch.Tensor, states: tuple) -> tuple:
        out = self.step(x, *states)
        if not isinstance(out, tuple) or len(out) != len(states) + 1:
            raise TypeError(f"{type(self).__name__}.step must return (spike, {', '.join(self.state_names())}), "
                            f"got {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, tuple) else ""))
        return out

    def single_step_forward(self, x: torch.Tensor):
        """One step: ``x`` ``[N, ...]`` -> spikes ``[N, ...]`` from the stored states, which are updated (the
        fused kernel with T = 1 when the backend allows it, else :meth:`step`)."""
        check_step_input(type(self).__name__, x, "s")
        states0 = self._initial_states(x)
        out = self._kernel(x.unsqueeze(0), states0[0], False) if len(states0) == 1 else None
        if out is not None:  # fused single step (T = 1)
            s, new = out.out[0], (out.state,)
        else:
            gen = self._generated_kernel(x.unsqueeze(0), states0, (False,) * len(states0)) \
                if self._generated_allowed(False) else None
            if gen is not None:
                s, new = gen.out[0], gen.states
            else:
                s, *new = self._call_step(x, states0)
        self._set_states(new)
        return s

    def multi_step_torch(self, x_seq: torch.Tensor, v: torch.Tensor):
        """Torch reference over T steps of a one-state neuron, the generic O(T) loop over :meth:`step`:
        ``-> (spike_seq, v_last, v_seq | None)`` (several states: :func:`neuroq.functional.neuron.multi_step_states`)."""
        return neuron_fn.multi_step(self.step, x_seq, v, self._store_flags()[0])

    def multi_step_forward(self, x_seq: torch.Tensor):
        """``x_seq`` ``[T, N, ...]`` -> spikes ``[T, N, ...]`` from the stored states, which are left at the last
        step (the fused kernel when the backend allows it, else the torch loop); keeps ``v_seq`` when
        ``store_v_seq`` and ``<name>_seq`` of the states ``store_state_seqs`` names."""
        check_step_input(type(self).__name__, x_seq, "m")
        states0 = self._initial_states(x_seq[0])
        store = self._store_flags()
        out = self._kernel(x_seq, states0[0], store[0]) if len(states0) == 1 else None
        if out is not None:
            spikes, lasts, seqs = out.out, (out.state,), (out.state_seq,)
        else:
            gen = self._generated_kernel(x_seq, states0, store) if self._generated_allowed(True) else None
            if gen is not None:
                spikes, lasts, seqs = gen.out, gen.states, gen.state_seqs
            elif len(states0) == 1:
                spikes, v, v_seq = self.multi_step_torch(x_seq, states0[0])
                lasts, seqs = (v,), (v_seq,)
            else:
                spikes, lasts, seqs = neuron_fn.multi_step_states(self._call_step_fn(), x_seq, states0, store)
        self._set_states(lasts)
        for name, keep, seq in zip(self.state_names(), store, seqs):
            if keep:
                setattr(self, name + "_seq", seq)
        return spikes

    def _call_step_fn(self):
        return lambda x, *states: self._call_step(x, states)

    def reset(self):
        """Reset every state to its initial value and drop the stored sequences (``v_seq`` ...)."""
        super().reset()
        self.v_seq = None
        for name in self.state_names()[1:]:
            setattr(self, name + "_seq", None)

    def extra_repr(self):
        """The neuron's parameters, step mode and backend, shown in the module's ``repr``."""
        p = self.params
        return (f"v_threshold={p.v_threshold}, v_reset={p.v_reset}, detach_reset={p.detach_reset}, "
                f"step_mode={self.step_mode}, backend={self.backend}")
