r"""Legendre Memory Unit (LMU) cell and layer, with an optional hybrid-spiking hidden state.

Voelker, Kajić, Eliasmith, "Legendre Memory Units: Continuous-Time Representation in Recurrent
Neural Networks", NeurIPS 2019; the parallel (FFT) form of Chilkuri & Eliasmith, ICML 2021; the
hybrid-spiking LMU of Voelker, Rasmussen, Eliasmith, arXiv 2002.03553.  The
cell follows keras-lmu's ``LMUCell`` (its options and initialisers; the code here is neuroq's own):

.. math::
    u_t &= W_x x_t \;[+\, W_h h_{t-1}]\;[+\, W_m m_{t-1}]\;[+\, b] &&\text{(memory input, } [N, d_m]\text{)}\\
    m_t &= \bar A\, m_{t-1} + \bar B\, u_t &&\text{(per memory channel, } [N, d_m, \text{order}]\text{)}\\
    h_t &= \mathrm{hidden\_cell}\big([\,m_t\,;\,x_t\,]\big) &&\text{(}x_t\text{ only with input\_to\_hidden)}

with the Legendre :math:`(\bar A, \bar B)` of :mod:`neuroq.functional.lmu` kept as buffers ``A``
``[order, order]`` and ``B`` ``[order, 1]``.  The terms in brackets are keras-lmu's
``hidden_to_memory``, ``memory_to_memory`` and ``use_bias``.  The flattened memory is laid out
``[N, d_m * order]`` with the memory channel major (keras-lmu's layout).

**Hybrid spiking.**  ``hidden_activation=SpikingActivation(torch.tanh, dt)`` makes :math:`h` a
spike-count signal (the hybrid LMU); ``u_activation`` / ``m_activation`` quantise :math:`u` (before it
enters the memory) and :math:`m` (as the hidden cell reads it; the memory itself evolves on the
real-valued :math:`m`, so the Legendre dynamics and the FFT form are kept).  Any
:class:`neuroq.neuron.SpikingActivation` or other module works in these places.

**Forms.**  :class:`LMUCell` is the streaming recurrent form (state in SpikingJelly memories ``m``,
``h``; single-step ``[N, input_size]`` or a multi-step chunk ``[T, N, input_size]`` continuing the
state).  :class:`LMU` processes whole sequences: with no recurrence into the memory
(``hidden_to_memory = memory_to_memory = False``) it computes the memory for all steps at once as an
FFT convolution with the impulse response (padded to 2T), otherwise (or with ``mode='recurrent'``) it
runs the recurrence; the two agree to float rounding.

**Hidden cell protocol.**  ``hidden_cell`` may be any module producing ``hidden_size`` features:

* feed-forward (the default; no attribute ``recurrent`` or ``recurrent = False``): called as
  ``cell(h_in)`` with ``h_in`` ``[N, F]`` per step, or ``[T, N, F]`` for a whole sequence in the
  parallel form; the step mode of its SpikingJelly submodules is set to match (``'s'`` / ``'m'``);
* recurrent (``recurrent = True``): called per step as ``cell(h_in, h_prev)`` (``'s'`` modes),
  or, if it has one, ``cell.forward_seq(h_in_seq)`` for a whole sequence.

:class:`LMUHiddenCell` is the default: ``act(W h_in + b)`` (keras ``Dense``) or, with
``recurrent=True``, ``act(W h_in + U h_{t-1} + b)`` (keras ``SimpleRNNCell``, the psMNIST example's cell).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn

from .. import _sj
from .._validate import check_bool, check_choice, check_int, check_real, check_step_input
from ..functional import lmu as FL
from .container import set_step_mode

KERNEL_INITS = ("glorot_uniform", "glorot_normal", "ones", "zeros")
RECURRENT_INITS = ("orthogonal", "glorot_uniform", "zeros")
MODES = ("auto", "fft", "recurrent")


def _init_weight(w: torch.Tensor, kind: str, fan_in: int, fan_out: int) -> None:
    """Initialise a Linear weight ``[out, in]`` like the keras initialiser of the same name."""
    with torch.no_grad():
        if kind == "glorot_uniform":
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            w.uniform_(-lim, lim)
        elif kind == "glorot_normal":  # keras: truncated at 2 std, std corrected for the truncation
            std = math.sqrt(2.0 / (fan_in + fan_out)) / 0.87962566103423978
            nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)
        elif kind == "orthogonal":
            nn.init.orthogonal_(w)
        elif kind == "ones":
            w.fill_(1.0)
        elif kind == "zeros":
            w.zero_()
        else:  # pragma: no cover - checked by the callers
            raise ValueError(kind)


class LegendreMemory(nn.Module):
    r"""The LMU's linear memory :math:`m_t = \bar A m_{t-1} + \bar B u_t`, per memory channel.

    Metered by :class:`neuroq.energy.EnergyMeter` as its streaming recurrence (``energy_rule = 'lmu_memory'``).

    :math:`\bar A` (buffer ``A`` ``[order, order]``) and :math:`\bar B` (buffer ``B`` ``[order, 1]``)
    are the Legendre delay system of window ``theta`` steps discretised by ``discretizer``
    (:func:`neuroq.functional.lmu.lmu_matrices`; float64 buffers, cast to the input's dtype).

    ``forward(u, m=None, mode='step')``:

    * ``'step'``: ``u`` ``[N, memory_d]``, ``m`` ``[N, memory_d*order]`` (default 0) -> ``[N, memory_d*order]``;
    * ``'recurrent'``: ``u`` ``[T, N, memory_d]``, ``m`` the state before the first step -> ``[T, N, memory_d*order]``;
    * ``'fft'``: the same from zero state, as the FFT convolution with the impulse response;
    * ``'last'``: only the final state ``[N, memory_d*order]`` from zero state, as one matrix product
      with the impulse response (:func:`neuroq.functional.lmu.memory_last`).

    Example::

        mem = LegendreMemory(order=256, theta=784.0)
        m_seq = mem(torch.randn(784, 32, 1), mode="fft")     # [784, 32, 256]
        m_end = mem(torch.randn(784, 32, 1), mode="last")    # [32, 256]
    """

    energy_rule = "lmu_memory"

    def __init__(self, order: int, theta: float, memory_d: int = 1, discretizer: str = "zoh"):
        super().__init__()
        self.order = check_int("order", order, ge=1)
        self.theta = check_real("theta", theta, gt=0)
        self.memory_d = check_int("memory_d", memory_d, ge=1)
        self.discretizer = check_choice("discretizer", discretizer, FL.DISCRETIZERS)
        Ad, Bd = FL.lmu_matrices(self.order, self.theta, self.discretizer)
        self.register_buffer("A", Ad)
        self.register_buffer("B", Bd)
        self._cast_key = self._cast = self._h_key = self._h = None

    def _key(self, *extra):
        return (self.A.data_ptr(), self.A._version, self.B.data_ptr(), self.B._version) + extra

    def matrices(self, dtype: torch.dtype, device) -> tuple:
        """``(A, B)`` in ``dtype`` on ``device`` (cached until the buffers change)."""
        key = self._key(dtype, str(device))
        if self._cast_key != key:
            self._cast = (self.A.to(device=device, dtype=dtype), self.B.to(device=device, dtype=dtype))
            self._cast_key = key
        return self._cast

    def impulse_response(self, steps: int) -> torch.Tensor:
        r"""``[steps, order]`` float64, row :math:`t` = :math:`(\bar A^t \bar B)^\top` (cached)."""
        key = self._key(steps)
        if self._h_key != key:
            A, B = self.A.to(torch.float64), self.B.to(torch.float64)
            self._h = FL.impulse_response(A, B, steps)
            self._h_key = key
        return self._h

    def forward(self, u: torch.Tensor, m: Optional[torch.Tensor] = None, mode: str = "step",
                source: Optional[tuple] = None) -> torch.Tensor:
        r"""Update the memory from its input ``u`` (``mode``: ``'step'``, ``'recurrent'``, ``'fft'`` or ``'last'``;
        shapes in the class docstring).  ``m`` is the state before the first step (``None`` = 0; only ``'step'``
        and ``'recurrent'`` take one).  ``source=(x, weight, bias)`` (``'fft'`` only) computes the same memory
        from the input ``x`` of :math:`u = x W^\top + b`, which is cheaper to differentiate. Returns the
        flattened memory, ``[..., memory_d*order]``."""
        mode = check_choice("mode", mode, ("step", "recurrent", "fft", "last"))
        if source is not None:
            if mode != "fft" or m is not None:
                raise ValueError("LegendreMemory: source= is only used with mode='fft' from zero state")
            return self._fft_from_source(u, *source)
        need = 2 if mode == "step" else 3
        if u.dim() != need or u.shape[-1] != self.memory_d:
            layout = "[N, memory_d]" if mode == "step" else "[T, N, memory_d]"
            raise ValueError(f"LegendreMemory(mode={mode!r}) expects u of shape {layout} with memory_d="
                             f"{self.memory_d}, got {tuple(u.shape)}")
        if mode in ("fft", "last"):
            if m is not None:
                raise ValueError(f"LegendreMemory(mode={mode!r}) starts from zero state; pass m=None or use "
                                 "'recurrent'")
            H = self.impulse_response(u.shape[0]).to(u.device)
            return (FL.memory_fft(u, H) if mode == "fft" else FL.memory_last(u, H)).flatten(-2)
        A, B = self.matrices(u.dtype, u.device)
        n = u.shape[-2]
        m3 = (torch.zeros(n, self.memory_d, self.order, dtype=u.dtype, device=u.device) if m is None
              else m.reshape(n, self.memory_d, self.order))
        if mode == "step":
            return FL.memory_step(u, m3, A, B).flatten(-2)
        return FL.memory_recurrent(u, A, B, m3).flatten(-2)

    def _fft_from_source(self, u: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                         bias: Optional[torch.Tensor]) -> torch.Tensor:
        r"""The FFT form for :math:`u_t = W x_t + b` given by its source: by linearity
        :math:`m = (H \ast x)\,W^\top + b\,\textstyle\sum_{s\le t} H_s`, so when ``x`` needs no
        gradient (data) the backward pass is a contraction with the saved :math:`H \ast x`, without
        the FFT of the gradient (about a third of a psMNIST training step on CPU).  ``u`` (equal to
        :math:`W x + b`) is only checked for its shape; it is what the energy meter reads."""
        T, N = x.shape[0], x.shape[1]
        if u.dim() != 3 or u.shape[:2] != (T, N) or u.shape[-1] != self.memory_d or weight.shape != (
                self.memory_d, x.shape[-1]):
            raise ValueError(f"LegendreMemory(source=...): u {tuple(u.shape)}, x {tuple(x.shape)} and weight "
                             f"{tuple(weight.shape)} do not fit u = x W^T + b with memory_d={self.memory_d}")
        H = self.impulse_response(T).to(x.device)
        hx = FL.memory_fft(x, H)                                          # [T, N, F, order]
        m = torch.einsum("tnfk,df->tndk", hx, weight.to(hx.dtype))
        if bias is not None:
            m = m + bias.to(hx.dtype)[:, None] * H[:T].to(hx.dtype).cumsum(0)[:, None, None, :]
        return m.flatten(-2)

    def extra_repr(self):
        """The memory's shape and discretiser, shown in the module's ``repr``."""
        return f"order={self.order}, theta={self.theta}, memory_d={self.memory_d}, discretizer={self.discretizer!r}"


class LMUHiddenCell(nn.Module):
    r"""Default hidden cell: :math:`h = \mathrm{act}(W h_{in} + b)`, or with ``recurrent=True``
    :math:`h_t = \mathrm{act}(W h_{in,t} + U h_{t-1} + b)` (keras ``Dense`` / ``SimpleRNNCell``).

    Initialisation as keras: :math:`W` glorot-uniform, :math:`U` orthogonal, :math:`b = 0`.

    Args:
        in_features: features of :math:`h_{in}` (``memory_d*order`` [+ ``input_size``]).
        hidden_size: output features.
        activation: ``nn.Tanh()`` by default; a :class:`neuroq.neuron.SpikingActivation` makes the
            cell hybrid-spiking (its step mode is set by the cell: ``'s'`` per step, ``'m'`` for a
            whole sequence of a feed-forward cell, where its closed form runs over all T at once).
        recurrent: add :math:`U h_{t-1}` (``h`` is then the activation's output, e.g. spikes).
        bias: use :math:`b`.

    Inputs: ``forward(h_in, h_prev=None)``: one step, ``h_in`` ``[N, in_features]``, ``h_prev``
    ``[N, hidden_size]`` (recurrent only; default 0).  ``forward_seq(h_in_seq, h0=None)``:
    ``[T, N, in_features]`` -> ``[T, N, hidden_size]`` (for a recurrent cell the input projection is
    one matrix product over all T, then the loop adds :math:`U h_{t-1}`).

    Example::

        cell = LMUHiddenCell(257, 212, recurrent=True)
        h = cell.forward_seq(torch.randn(784, 32, 257))     # [784, 32, 212]
    """

    def __init__(self, in_features: int, hidden_size: int, activation: Optional[nn.Module] = None,
                 recurrent: bool = False, bias: bool = True):
        super().__init__()
        self.in_features = check_int("in_features", in_features, ge=1)
        self.hidden_size = check_int("hidden_size", hidden_size, ge=1)
        self.recurrent = check_bool("recurrent", recurrent)
        self.kernel = nn.Linear(in_features, hidden_size, bias=check_bool("bias", bias))
        _init_weight(self.kernel.weight, "glorot_uniform", in_features, hidden_size)
        if bias:
            nn.init.zeros_(self.kernel.bias)
        if recurrent:
            self.recurrent_kernel = nn.Linear(hidden_size, hidden_size, bias=False)
            _init_weight(self.recurrent_kernel.weight, "orthogonal", hidden_size, hidden_size)
        else:
            self.recurrent_kernel = None
        if activation is None:
            activation = nn.Tanh()
        if not callable(activation):
            raise TypeError(f"activation must be callable (a module such as nn.Tanh() or SpikingActivation), "
                            f"got {activation!r}")
        self.activation = activation

    def _act(self, z: torch.Tensor, mode: str) -> torch.Tensor:
        if isinstance(self.activation, nn.Module):
            set_step_mode(self.activation, mode)
        return self.activation(z)

    def forward(self, h_in: torch.Tensor, h_prev: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One step: ``act(W h_in + b)``, plus ``U h_prev`` for a recurrent cell when ``h_prev`` is given. ``h_in``
        ``[N, in_features]`` -> ``[N, hidden_size]``; the activation runs in step mode ``'s'``."""
        z = self.kernel(h_in)
        if self.recurrent and h_prev is not None:
            z = z + self.recurrent_kernel(h_prev)
        return self._act(z, "s")

    def forward_seq(self, h_in_seq: torch.Tensor, h0: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A whole sequence, ``[T, N, in_features]`` -> ``[T, N, hidden_size]``, from the hidden state ``h0``
        (``None`` = 0; only read by a recurrent cell).  A feed-forward cell runs its activation once in step mode
        ``'m'``; a recurrent cell loops over the steps."""
        z_seq = self.kernel(h_in_seq)
        if not self.recurrent:
            return self._act(z_seq, "m")
        h = h0
        out = []
        for z in z_seq.unbind(0):
            if h is not None:
                z = z + self.recurrent_kernel(h)
            h = self._act(z, "s")
            out.append(h)
        return torch.stack(out)

    def extra_repr(self):
        """The cell's sizes and whether it is recurrent, shown in the module's ``repr``."""
        return f"in_features={self.in_features}, hidden_size={self.hidden_size}, recurrent={self.recurrent}"


class LMUCell(_sj.MemoryModule):
    r"""Legendre Memory Unit cell, streaming form (module docstring for the equations).

    Args:
        input_size: features of :math:`x_t`.
        hidden_size: features of :math:`h_t`.
        memory_d: memory channels :math:`d_m` (the width of :math:`u`).
        order: Legendre polynomials per channel (keyword-only, required).
        theta: window length in steps (keyword-only, required).
        hidden_cell: a module (see the module docstring's protocol); default
            ``LMUHiddenCell(memory_d*order [+ input_size], hidden_size, hidden_activation, hidden_recurrent)``.
        hidden_to_memory: add :math:`W_h h_{t-1}` to :math:`u_t` (a recurrence into the memory).
        memory_to_memory: add :math:`W_m m_{t-1}` to :math:`u_t` (a recurrence into the memory).
        input_to_hidden: feed :math:`x_t` to the hidden cell beside :math:`m_t`.
        discretizer: ``'zoh'`` (default) or ``'euler'``.
        kernel_init: initialiser of :math:`W_x` (and :math:`W_h`), keras names ``'glorot_uniform'``
            (default; the fan-in is that of keras' joint kernel over ``[x ; h]``), ``'glorot_normal'``,
            ``'ones'`` (the psMNIST example), ``'zeros'``, or ``None`` for no input encoder
            (:math:`u = x`, needs ``input_size == memory_d`` and no ``hidden_to_memory``).
        recurrent_init: initialiser of :math:`W_m`: ``'orthogonal'`` (keras' default),
            ``'glorot_uniform'``, ``'zeros'``.
        use_bias: add a learnable bias :math:`b` to :math:`u` (initialised 0).
        hidden_activation: activation of the default hidden cell (default ``nn.Tanh()``); pass a
            :class:`neuroq.neuron.SpikingActivation` for the hybrid LMU.
        hidden_recurrent: the default hidden cell adds :math:`U h_{t-1}` (keras ``SimpleRNNCell``).
        u_activation / m_activation: optional modules applied to :math:`u_t` before the memory and
            to :math:`m_t` as the hidden cell reads it (e.g. ``SpikingActivation(nn.Identity(), dt)``).
        step_mode: ``'s'`` (``[N, input_size]`` -> ``[N, hidden_size]``) or ``'m'``
            (``[T, N, input_size]`` -> ``[T, N, hidden_size]``, the state carried through).

    State: SpikingJelly memories ``m`` ``[N, memory_d*order]`` and ``h`` ``[N, hidden_size]``
    (``None`` after ``functional.reset_net``: zeros at the next step).

    Example::

        cell = LMUCell(1, 212, order=256, theta=784.0, hidden_recurrent=True, input_to_hidden=True,
                       kernel_init="ones")
        for x_t in pixels.unbind(0):          # pixels [784, N, 1]
            h = cell(x_t)                      # [N, 212]
        neuroq.reset_net(cell)
    """

    def __init__(self, input_size: int, hidden_size: int, memory_d: int = 1, *, order: int, theta: float,
                 hidden_cell: Optional[nn.Module] = None, hidden_to_memory: bool = False,
                 memory_to_memory: bool = False, input_to_hidden: bool = False, discretizer: str = "zoh",
                 kernel_init: Optional[str] = "glorot_uniform", recurrent_init: str = "orthogonal",
                 use_bias: bool = False, hidden_activation: Optional[nn.Module] = None,
                 hidden_recurrent: bool = False, u_activation: Optional[nn.Module] = None,
                 m_activation: Optional[nn.Module] = None, step_mode: str = "s"):
        super().__init__()
        self.input_size = check_int("input_size", input_size, ge=1)
        self.hidden_size = check_int("hidden_size", hidden_size, ge=1)
        self.memory_d = check_int("memory_d", memory_d, ge=1)
        self.hidden_to_memory = check_bool("hidden_to_memory", hidden_to_memory)
        self.memory_to_memory = check_bool("memory_to_memory", memory_to_memory)
        self.input_to_hidden = check_bool("input_to_hidden", input_to_hidden)
        if kernel_init is not None:
            check_choice("kernel_init", kernel_init, KERNEL_INITS)
        check_choice("recurrent_init", recurrent_init, RECURRENT_INITS)
        self.kernel_init, self.recurrent_init = kernel_init, recurrent_init
        self.memory = LegendreMemory(order, theta, memory_d, discretizer)
        self.order, self.theta, self.discretizer = self.memory.order, self.memory.theta, discretizer

        enc_in = input_size + (hidden_size if hidden_to_memory else 0)
        if kernel_init is None:
            if input_size != memory_d or hidden_to_memory:
                raise ValueError("kernel_init=None (no input encoder, u = x) needs input_size == memory_d and "
                                 f"hidden_to_memory=False; got input_size={input_size}, memory_d={memory_d}, "
                                 f"hidden_to_memory={hidden_to_memory}")
            self.input_encoder = None
        else:
            self.input_encoder = nn.Linear(input_size, memory_d, bias=False)
            _init_weight(self.input_encoder.weight, kernel_init, enc_in, memory_d)
        if hidden_to_memory:
            self.hidden_encoder = nn.Linear(hidden_size, memory_d, bias=False)
            _init_weight(self.hidden_encoder.weight, kernel_init, enc_in, memory_d)
        else:
            self.hidden_encoder = None
        if memory_to_memory:
            self.memory_encoder = nn.Linear(memory_d * self.order, memory_d, bias=False)
            _init_weight(self.memory_encoder.weight, recurrent_init, memory_d * self.order, memory_d)
        else:
            self.memory_encoder = None
        self.u_bias = nn.Parameter(torch.zeros(memory_d)) if check_bool("use_bias", use_bias) else None

        h_in = memory_d * self.order + (input_size if input_to_hidden else 0)
        if hidden_cell is None:
            hidden_cell = LMUHiddenCell(h_in, hidden_size, hidden_activation,
                                        recurrent=check_bool("hidden_recurrent", hidden_recurrent))
        else:
            if not isinstance(hidden_cell, nn.Module):
                raise TypeError(f"hidden_cell must be a torch.nn.Module, got {type(hidden_cell).__name__}")
            if hidden_activation is not None or hidden_recurrent:
                raise ValueError("hidden_activation and hidden_recurrent configure the default hidden cell; "
                                 "they cannot be combined with a given hidden_cell")
        self.hidden_cell = hidden_cell
        self.hidden_in_features = h_in
        self.u_activation = u_activation
        self.m_activation = m_activation
        self.step_mode = check_choice("step_mode", step_mode, ("s", "m"))
        self.register_memory("m", None)
        self.register_memory("h", None)

    # ---- the Legendre matrices ------------------------------------------------------------
    @property
    def A(self) -> torch.Tensor:
        r""":math:`\bar A`, ``[order, order]`` (buffer of :attr:`memory`)."""
        return self.memory.A

    @property
    def B(self) -> torch.Tensor:
        r""":math:`\bar B`, ``[order, 1]`` (buffer of :attr:`memory`)."""
        return self.memory.B

    @property
    def hidden_is_recurrent(self) -> bool:
        """Whether the hidden cell takes ``h_{t-1}`` (its attribute ``recurrent``; False when it has none)."""
        return bool(getattr(self.hidden_cell, "recurrent", False))

    # ---- pieces shared with LMU ---------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`W_x x (+ b)` for one step ``[N, in]`` or a sequence ``[T, N, in]``."""
        u = x if self.input_encoder is None else self.input_encoder(x)
        return u if self.u_bias is None else u + self.u_bias

    @staticmethod
    def _run(module: Optional[nn.Module], z: torch.Tensor, mode: str) -> torch.Tensor:
        if module is None:
            return z
        set_step_mode(module, mode)
        return module(z)

    def hidden_input(self, m: torch.Tensor, x: torch.Tensor, mode: str) -> torch.Tensor:
        """What the hidden cell reads: the memory ``m`` (through ``m_activation``, if any, run in step mode
        ``mode``), followed by ``x`` along the last axis when ``input_to_hidden``."""
        mh = self._run(self.m_activation, m, mode)
        return torch.cat([mh, x], dim=-1) if self.input_to_hidden else mh

    def hidden_step(self, h_in: torch.Tensor, h_prev: Optional[torch.Tensor]) -> torch.Tensor:
        """One step of the hidden cell: ``h_in`` ``[N, F]`` -> ``[N, hidden_size]``.  A recurrent cell also gets
        ``h_prev`` (``None`` = zeros); a feed-forward cell is called on ``h_in`` alone."""
        cell = self.hidden_cell
        if isinstance(cell, LMUHiddenCell):
            return cell(h_in, h_prev)
        set_step_mode(cell, "s")
        if self.hidden_is_recurrent:
            if h_prev is None:
                h_prev = torch.zeros(h_in.shape[0], self.hidden_size, dtype=h_in.dtype, device=h_in.device)
            return cell(h_in, h_prev)
        return cell(h_in)

    def hidden_seq(self, h_in_seq: torch.Tensor) -> torch.Tensor:
        """The hidden cell over a whole sequence ``[T, N, F]`` -> ``[T, N, hidden_size]``, from zero hidden state:
        the cell's ``forward_seq`` if it has one, else a loop of :meth:`hidden_step` for a recurrent cell, else
        one call in step mode ``'m'``."""
        cell = self.hidden_cell
        if hasattr(cell, "forward_seq"):
            return cell.forward_seq(h_in_seq)
        if self.hidden_is_recurrent:
            h, out = None, []
            for h_in in h_in_seq.unbind(0):
                h = self.hidden_step(h_in, h)
                out.append(h)
            return torch.stack(out)
        set_step_mode(cell, "m")
        return cell(h_in_seq)

    def step(self, x: torch.Tensor, m: Optional[torch.Tensor], h: Optional[torch.Tensor]):
        """One step from state ``(m, h)`` (``None`` = zeros): returns ``(h_t, m_t)``."""
        u = self.encode(x)
        if h is not None and self.hidden_encoder is not None:
            u = u + self.hidden_encoder(h)
        if m is not None and self.memory_encoder is not None:
            u = u + self.memory_encoder(m)
        u = self._run(self.u_activation, u, "s")
        m = self.memory(u, m, mode="step")
        h = self.hidden_step(self.hidden_input(m, x, "s"), h)
        return h, m

    # ---- forward ----------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, mode: str) -> None:
        check_step_input(type(self).__name__, x, mode)
        need = 2 if mode == "s" else 3
        if x.dim() != need or x.shape[-1] != self.input_size:
            layout = "[N, input_size]" if mode == "s" else "[T, N, input_size]"
            raise ValueError(f"{type(self).__name__} in step_mode={mode!r} expects input {layout} with "
                             f"input_size={self.input_size}, got shape {tuple(x.shape)}")

    def _state(self, n: int):
        m, h = self.m, self.h
        for name, s in (("m", m), ("h", h)):
            if isinstance(s, torch.Tensor) and s.shape[0] != n:
                raise RuntimeError(f"LMUCell: stored state {name} has batch size {s.shape[0]} but the input has {n}; "
                                   "call functional.reset_net(model) between batches")
        return m, h

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        """One step ``[N, input_size]`` -> ``h_t`` ``[N, hidden_size]``; the memories ``m`` and ``h`` are updated."""
        self._check(x, "s")
        h, m = self.step(x, *self._state(x.shape[0]))
        self.m, self.h = m, h
        return h

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        """A chunk of steps ``[T, N, input_size]`` -> ``[T, N, hidden_size]``, continuing from the stored state and
        leaving the final state in the memories ``m`` and ``h``."""
        self._check(x_seq, "m")
        m, h = self._state(x_seq.shape[1])
        out = []
        for x in x_seq.unbind(0):
            h, m = self.step(x, m, h)
            out.append(h)
        self.m, self.h = m, h
        return torch.stack(out)

    def extra_repr(self):
        """The cell's sizes, connections and step mode, shown in the module's ``repr``."""
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, memory_d={self.memory_d}, "
                f"hidden_to_memory={self.hidden_to_memory}, memory_to_memory={self.memory_to_memory}, "
                f"input_to_hidden={self.input_to_hidden}, step_mode={self.step_mode}")


class LMU(nn.Module):
    r"""Legendre Memory Unit over whole sequences; the parallel FFT form when the memory allows it.

    Same arguments as :class:`LMUCell` (whose instance, :attr:`cell`, holds every parameter), plus:

    Args:
        return_sequences: return every step ``[T, N, hidden_size]`` (default, neuroq's convention)
            or only the last ``[N, hidden_size]`` (keras' default).
        batch_first: accept ``[N, T, input_size]`` (keras' layout) and return ``[N, T, hidden_size]``.
        mode: ``'auto'`` (FFT when ``hidden_to_memory = memory_to_memory = False``, else the
            recurrence), ``'fft'`` (error if the memory has a recurrence), ``'recurrent'``.

    Every call is a whole sequence from zero memory and hidden state: the states of :attr:`cell`
    and of every stateful module inside (e.g. a :class:`~neuroq.neuron.SpikingActivation`) are reset
    first.  Afterwards :attr:`cell` holds the final state, so streaming inference may continue with
    ``lmu.cell`` (single-step) from there.  In the FFT form the memory of all T steps is computed at
    once; the hidden cell then runs over the sequence in one call when feed-forward (a
    ``SpikingActivation`` in it uses its closed form over T), or step by step when recurrent.

    **Last-step form.**  With ``return_sequences=False`` in the FFT form, a feed-forward hidden
    cell without state (no spiking activation inside) and no ``m_activation``, only
    :math:`h_{T-1} = \mathrm{hidden\_cell}([m_{T-1}; x_{T-1}])` is needed, so the memory is
    computed only at the last step, :math:`m_{T-1} = \sum_s H_{T-1-s} u_s` (one matrix product,
    ``LegendreMemory(mode='last')``), and the hidden cell runs once (Chilkuri & Eliasmith 2021).
    The output equals the full forms' last step (:attr:`last_step_ok` says whether it applies).

    Inputs: ``[T, N, input_size]`` (or ``[N, T, input_size]`` with ``batch_first``).
    Outputs: ``[T, N, hidden_size]`` (``[N, T, hidden_size]``), or ``[N, hidden_size]`` with
    ``return_sequences=False``.

    Example::

        lmu = LMU(1, 212, order=256, theta=784.0, input_to_hidden=True, hidden_recurrent=True,
                  kernel_init="ones", return_sequences=False)
        h = lmu(pixels)                        # pixels [784, N, 1] -> h [N, 212]; FFT memory
    """

    def __init__(self, input_size: int, hidden_size: int, memory_d: int = 1, *, order: int, theta: float,
                 return_sequences: bool = True, batch_first: bool = False, mode: str = "auto", **cell_kwargs):
        super().__init__()
        if "step_mode" in cell_kwargs:
            raise ValueError("LMU processes whole sequences and has no step_mode; use LMUCell for single steps")
        self.cell = LMUCell(input_size, hidden_size, memory_d, order=order, theta=theta, step_mode="m",
                            **cell_kwargs)
        self.return_sequences = check_bool("return_sequences", return_sequences)
        self.batch_first = check_bool("batch_first", batch_first)
        self.mode = check_choice("mode", mode, MODES)
        if self.mode == "fft" and not self.parallel_ok:
            raise ValueError("mode='fft' needs a memory without recurrence (hidden_to_memory=False and "
                             "memory_to_memory=False); use mode='auto' or 'recurrent'")

    @property
    def A(self) -> torch.Tensor:
        r""":math:`\bar A`, ``[order, order]`` (buffer of ``cell.memory``)."""
        return self.cell.memory.A

    @property
    def B(self) -> torch.Tensor:
        r""":math:`\bar B`, ``[order, 1]`` (buffer of ``cell.memory``)."""
        return self.cell.memory.B

    @property
    def parallel_ok(self) -> bool:
        """Whether the memory has no recurrence, so the FFT form applies."""
        return not (self.cell.hidden_to_memory or self.cell.memory_to_memory)

    def resolved_mode(self) -> str:
        """The form :meth:`forward` runs: ``'fft'`` or ``'recurrent'`` (``'auto'`` resolved by :attr:`parallel_ok`)."""
        if self.mode == "auto":
            return "fft" if self.parallel_ok else "recurrent"
        return self.mode

    @property
    def last_step_ok(self) -> bool:
        """Whether :meth:`forward` uses the last-step form (class docstring): FFT form,
        ``return_sequences=False``, a stateless feed-forward hidden cell and no ``m_activation``."""
        c = self.cell
        return (not self.return_sequences and self.resolved_mode() == "fft" and not c.hidden_is_recurrent
                and c.m_activation is None
                and not any(isinstance(m, _sj.MemoryModule) for m in c.hidden_cell.modules()))

    def _last_step(self, x_seq: torch.Tensor) -> torch.Tensor:
        c = self.cell
        u = c._run(c.u_activation, c.encode(x_seq), "m")
        m = c.memory(u, mode="last")
        h = c.hidden_step(c.hidden_input(m, x_seq[-1], "s"), None)
        c.m, c.h = m, h
        return h

    def _parallel(self, x_seq: torch.Tensor) -> torch.Tensor:
        c = self.cell
        u = c._run(c.u_activation, c.encode(x_seq), "m")
        if (c.u_activation is None and c.input_encoder is not None and not x_seq.requires_grad
                and c.input_size <= c.memory_d):
            # u = W_x x + b from data: the memory from its source (no FFT in the backward pass)
            m = c.memory(u, mode="fft", source=(x_seq, c.input_encoder.weight, c.u_bias))
        else:
            m = c.memory(u, mode="fft")
        h = c.hidden_seq(c.hidden_input(m, x_seq, "m"))
        c.m, c.h = m[-1], h[-1]
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run a whole sequence from zero state (shapes in the class docstring): the last-step form when
        :attr:`last_step_ok`, else the FFT or recurrent form of :meth:`resolved_mode`."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"LMU: input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.cell.input_size:
            layout = "[N, T, input_size]" if self.batch_first else "[T, N, input_size]"
            raise ValueError(f"LMU expects input {layout} with input_size={self.cell.input_size}, got shape "
                             f"{tuple(x.shape)}")
        x_seq = x.transpose(0, 1) if self.batch_first else x
        check_step_input("LMU", x_seq, "m")
        if x_seq.shape[1] == 0:
            raise ValueError(f"LMU: the batch holds no sequences (shape {tuple(x.shape)})")
        _sj.reset_net(self, cache=False)
        if self.last_step_ok:
            return self._last_step(x_seq)
        if self.resolved_mode() == "fft":
            h = self._parallel(x_seq)
        else:
            h = self.cell.multi_step_forward(x_seq)
        if not self.return_sequences:
            return h[-1]
        return h.transpose(0, 1) if self.batch_first else h

    def extra_repr(self):
        """The output options and the form, shown in the module's ``repr``."""
        return f"return_sequences={self.return_sequences}, batch_first={self.batch_first}, mode={self.mode!r}"
