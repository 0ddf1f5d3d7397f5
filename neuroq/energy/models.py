r"""Energy models: named, documented sets of rules and constants that turn what the meter counted into
picojoules, split into components.

The :class:`~neuroq.energy.EnergyMeter` records, per layer, *what happened* (a ledger: spikes and their
fan-outs, MACs, the elements each layer read and wrote, its weights and their bit width, each neuron
layer's state and updates).  An energy model prices that ledger.  Every model gives each layer the same
five components (pJ):

``compute``
    arithmetic: accumulates, multiply-accumulates, neuron updates;
``weight_memory``
    reading weights and biases;
``state_memory``
    reading and writing membrane potentials (and any other neuron state);
``io``
    reading a layer's input and writing its output (activations, spike events);
``addressing``
    computing memory addresses (only models that count it).

Shipped models (:func:`energy_models` lists them, :func:`describe` gives each one's source, technology,
precision and scope):

* ``compute`` -- :math:`E_{AC}\,\#SOP + E_{MAC}\,\#MAC` (45 nm, Horowitz ISSCC 2014): the meter's
  numbers before energy models existed, unchanged.
* ``simple`` (and ``simple-fp16``, ``simple-int8``) -- SpikingJelly 2.0.0's ``estimate_simple_energy``:
  MACs and ACs (synaptic and neuron-update arithmetic), every weight use reads its weight, every neuron
  reads and writes its state each step, 24.96 pJ per byte (3.12 pJ/bit).
* ``lemaire`` -- Lemaire et al., ICONIP 2022 (arXiv 2210.13107), as SpikingJelly 2.0.0's
  ``estimate_lemaire_energy`` computes it: operations, addressing, and SRAM accesses for inputs/outputs,
  parameters and potentials whose cost per access grows with the memory's size; extended to non-spiking
  networks (dense path for every layer, output writes) so the ANN row of a comparison has a number.
* ``loihi`` / ``spinnaker2`` -- neuromorphic hardware profiles: energy per synaptic operation and per
  neuron update (Davies et al., IEEE Micro 2018; Höppner et al., TCAS-I 2019, as tabulated by
  KerasSpiking's ``ModelEnergy``).  Weights and state live in the cores' memory: no separate memory term.

Every model takes **assumptions** as keyword options (:func:`get_energy_model` ``(name, **options)``,
``EnergyMeter(net, energy="simple", energy_options={...})``, or ``--energy simple:weight_reads=per_sample``
on the command line); each report states the ones it used.  Users add models with
:func:`register_energy_model`.

Bit widths (precision-aware): a layer's weights are read at the bits its type declares (a MaQD layer
with :math:`M` states: :math:`\lceil\log_2 M\rceil` bits, so 3 states = 2 bits), otherwise at the bits of
their dtype; spike inputs are 1 bit; multi-level activations are read at their bits (see the meter).
``simple`` and ``lemaire`` equal SpikingJelly's estimators where SpikingJelly's assumptions hold (fp32
weights; see ``docs/energy.md`` for where and why they differ).
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable

from .._validate import check_bool, check_choice, check_real

COMPONENTS = ("compute", "weight_memory", "state_memory", "io", "addressing")

#: Horowitz (ISSCC 2014), 45 nm: energy per operation in pJ
HOROWITZ_45NM = dict(fp32_add=0.9, fp32_mult=3.7, fp16_add=0.4, fp16_mult=1.1, int8_add=0.03, int8_mult=0.2,
                     int32_add=0.1, int32_mult=3.1)


def zero() -> "OrderedDict[str, float]":
    """A fresh ``{component: 0.0}`` over :data:`COMPONENTS`, in their order."""
    return OrderedDict((c, 0.0) for c in COMPONENTS)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Where a model's rules and constants come from, and what they cover (shown in every report)."""

    name: str
    title: str
    source: str
    technology: str
    precision: str
    scope: str
    uncertain: str = ""


class EnergyModel:
    """Base class of the energy models: prices one layer's ledger record.

    A subclass sets :attr:`info`, :attr:`defaults` (its assumptions, every one changeable by keyword) and
    implements :meth:`synapse` and :meth:`neuron` (and :meth:`norm` where normalisation layers cost
    energy).  Each returns a dict over :data:`COMPONENTS` in pJ for the whole metered run (the meter divides
    by the samples).  :meth:`spike_energy` gives the differentiable spike-driven part used by
    :class:`neuroq.energy.ModelPenalty`.
    """

    info: ModelInfo
    #: the model's assumptions and constants (name -> default); ``choices`` restrict string options
    defaults: dict = {}
    choices: dict = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"energy model {self.info.name!r}: unknown option(s) {unknown}; "
                             f"it takes {sorted(self.defaults)}")
        opts = dict(self.defaults)
        for k, v in options.items():
            d = self.defaults[k]
            if k in self.choices:
                opts[k] = check_choice(k, v, self.choices[k])
            elif isinstance(d, bool):
                opts[k] = check_bool(k, v)
            elif isinstance(d, str) and v == d:
                opts[k] = v  # a named default such as weight_bits='layer'
            else:  # a number (or a number in place of a named default): finite, > 0 for bit widths
                what = f"a number or {d!r}" if isinstance(d, str) else "a number"
                try:
                    num = float(v) if isinstance(v, str) else v
                except ValueError:
                    raise ValueError(f"energy model {self.info.name!r}: {k} must be {what}, got {v!r}") from None
                bits = k.endswith("_bits") or isinstance(d, str)
                opts[k] = check_real(f"energy model {self.info.name!r}: {k}", num, **({"gt": 0} if bits else {"ge": 0}))
        self.options = opts

    @property
    def name(self) -> str:
        """The model's registered name (``info.name``)."""
        return self.info.name

    def describe(self) -> dict:
        """The model's provenance and the assumptions in force (what reports carry)."""
        return dict(dataclasses.asdict(self.info), assumptions=dict(self.options))

    # ---- pricing (overridden) -------------------------------------------------------------
    def synapse(self, r: dict) -> dict:  # pragma: no cover - abstract
        """Components (pJ, whole run) of synaptic layer record ``r`` (:func:`~neuroq.energy.rules.synapse_ledger`);
        every model implements it."""
        raise NotImplementedError

    def neuron(self, r: dict) -> dict:
        """Components (pJ, whole run) of neuron layer record ``r`` (:func:`~neuroq.energy.rules.neuron_ledger`);
        zero unless the model prices neurons."""
        return zero()

    def norm(self, r: dict) -> dict:
        """Components (pJ, whole run) of normalization layer record ``r`` (:func:`~neuroq.energy.rules.norm_ledger`);
        zero unless the model prices normalization."""
        return zero()

    def spike_energy(self, m, x, out, rule) -> "object":
        """Differentiable pJ of spike tensor ``x`` entering synaptic layer ``m`` (output ``out``): the
        spike-driven part of :meth:`synapse`; ``rule`` is the layer's :class:`neuroq.energy.rules.SynapseRule`."""
        raise NotImplementedError(f"energy model {self.name!r} has no differentiable spike-driven part")

    def __repr__(self):
        changed = {k: v for k, v in self.options.items() if self.defaults.get(k) != v}
        return f"{type(self).__name__}({self.name!r}{', ' + str(changed) if changed else ''})"


# ---- the registry ------------------------------------------------------------------------------------
_MODELS: "OrderedDict[str, Callable[..., EnergyModel]]" = OrderedDict()


def register_energy_model(name: str, factory: Callable[..., EnergyModel], overwrite: bool = False) -> None:
    """Add an energy model: ``factory(**options)`` returns an :class:`EnergyModel` (a subclass itself, or a
    ``functools.partial`` of one with other constants).  ``name`` is what ``EnergyMeter(energy=...)`` and
    ``--energy`` take."""
    if not isinstance(name, str) or not name or any(c in name for c in ",:= "):
        raise ValueError(f"energy model name must be a non-empty string without ',', ':', '=' or spaces; got {name!r}")
    if name in _MODELS and not overwrite:
        raise ValueError(f"energy model {name!r} is already registered (pass overwrite=True to replace it)")
    if not callable(factory):
        raise TypeError(f"factory must be callable (an EnergyModel subclass), got {type(factory).__name__}")
    _MODELS[name] = factory


def energy_models() -> list:
    """Names of the registered energy models."""
    return list(_MODELS)


def parse_spec(spec: str) -> tuple:
    """``"simple:weight_reads=per_sample:e_memory_pj_per_byte=5"`` -> ``("simple", {...})`` (the command
    line form; values stay strings and are converted by the model)."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"energy model spec must be a name such as 'simple', got {spec!r}")
    name, *parts = spec.split(":")
    opts = {}
    for p in parts:
        if "=" not in p:
            raise ValueError(f"energy model spec {spec!r}: option {p!r} must read key=value")
        k, v = p.split("=", 1)
        opts[k] = v
    return name, opts


def get_energy_model(model="compute", **options) -> EnergyModel:
    """An :class:`EnergyModel` from a registered name (with ``options`` or ``name:key=value`` in the
    string) or an instance (returned as is)."""
    if isinstance(model, EnergyModel):
        if options:
            raise ValueError("options apply to a model given by name, not to an EnergyModel instance")
        return model
    name, opts = parse_spec(model)
    if name not in _MODELS:
        raise ValueError(f"energy must be one of {', '.join(_MODELS)} (or an EnergyModel); got {name!r}. "
                         "Add your own with neuroq.energy.register_energy_model")
    opts.update(options)
    return _MODELS[name](**opts)


def describe(name: str) -> dict:
    """Provenance and default assumptions of registered model ``name``."""
    return get_energy_model(name).describe()


# ---- helpers shared by the models ----------------------------------------------------------------------
def _comp(**kw) -> dict:
    c = zero()
    for k, v in kw.items():
        c[k] += float(v)
    return c


def sram_pj_per_byte(capacity_bytes: float, points=((0.0, 0.0), (8192.0, 2.5), (32768.0, 5.0),
                                                    (1048576.0, 25.0))) -> float:
    r"""Cost of one byte read from or written to an SRAM of ``capacity_bytes`` (Lemaire et al. 2022, from
    Horowitz's 10 / 20 / 100 pJ per 64-bit access at 8 KiB / 32 KiB / 1 MiB): piecewise linear through
    ``points``, the capacity clamped to their range."""
    c = min(max(check_real("capacity_bytes", capacity_bytes, ge=0), points[0][0]), points[-1][0])
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if c <= x1:
            return y0 + (y1 - y0) * (c - x0) / (x1 - x0)
    return points[-1][1]  # pragma: no cover


# ---- compute: the meter's original model ------------------------------------------------------------------
class ComputeModel(EnergyModel):
    r""":math:`E = E_{AC}\cdot\#SOP + E_{MAC}\cdot\#MAC` over the synaptic layers: arithmetic only, no memory,
    no neuron updates (the synaptic-penalty paper's metric; Suetake et al., arXiv 2302.01500)."""

    info = ModelInfo(
        name="compute", title="synaptic arithmetic only (SOPs and MACs)",
        source="Horowitz, ISSCC 2014 (45 nm constants); Suetake et al., arXiv 2302.01500 (fan-out rule)",
        technology="45 nm", precision="32-bit floating point (E_AC 0.9 pJ, E_MAC 4.6 pJ)",
        scope="synaptic accumulates for spike inputs and MACs for real inputs; memory, neuron updates and "
              "addressing are not counted")
    defaults = dict(e_ac=0.9, e_mac=4.6)

    def synapse(self, r):
        """``compute`` only: ``e_ac`` per SOP plus ``e_mac`` per MAC."""
        return _comp(compute=r["sops"] * self.options["e_ac"] + r["macs"] * self.options["e_mac"])

    def spike_energy(self, m, x, out, rule):
        """``e_ac`` times the SOPs of ``x`` under the rule's ``conv_fanout``."""
        return rule.sop(m, x, rule.conv_fanout) * self.options["e_ac"]


# ---- simple: SpikingJelly 2.0.0's estimate_simple_energy -----------------------------------------------------
class SimpleModel(EnergyModel):
    r"""SpikingJelly 2.0.0's simple model (``op_counter.estimate_simple_energy``).

    Per synaptic layer: spike input -> one AC per (input spike, weight) pair it meets (border-aware for
    convolutions), real input -> one MAC per weight use; every use reads its weight
    (``weight_reads='per_op'``), every output element reads its bias.  Per neuron layer: the update's
    arithmetic as ACs (``ops_per_update`` per neuron and step: LIF 6 with hard reset, 5 with soft; IF 4 / 3;
    the layer declares it) and one read and one write of its state per step.  Normalisation: the
    BatchNorm arithmetic SpikingJelly counts.  Memory at ``e_memory_pj_per_byte`` (24.96 pJ/byte = 3.12
    pJ/bit, on-chip SRAM).

    Assumptions (options): ``weight_reads`` ``'per_op'`` (SpikingJelly's: every synaptic operation reads its
    weight), ``'per_step'`` (each weight once per sample and time step, then reused), ``'per_sample'``
    (once per sample, cached across steps) or ``'resident'`` (weights never leave the compute units: 0);
    ``weight_bits`` ``'layer'`` (the bits the layer declares; fp32 otherwise) or a number;
    ``state_bits`` ``'dtype'`` (the state tensor's dtype) or a number; ``e_memory_pj_per_byte``
    (24.96 on-chip; ``simple`` with 325 models off-chip DRAM at Horowitz's 2.6 nJ per 64 bits).
    """

    info = ModelInfo(
        name="simple", title="SpikingJelly 2.0 simple model: MAC/AC plus parameter and neuron-state traffic",
        source="SpikingJelly 2.0.0 op_counter.estimate_simple_energy; Horowitz, ISSCC 2014; 3.12 pJ/bit as "
               "cited by STEP (openreview SzwU2XrXIS)",
        technology="45 nm", precision="fp32 arithmetic (E_MAC 4.6, E_AC 0.9 pJ); memory bytes at each "
                                      "tensor's bits",
        scope="synaptic MAC/AC, neuron-update and BatchNorm arithmetic, weight and bias reads per use, "
              "neuron state read and write per step; no input/output traffic, no addressing",
        uncertain="24.96 pJ/byte is one SRAM figure for every memory regardless of its size")
    defaults = dict(e_mac=4.6, e_ac=0.9, e_memory_pj_per_byte=24.96, weight_reads="per_op", weight_bits="layer",
                    state_bits="dtype")
    choices = dict(weight_reads=("per_op", "per_step", "per_sample", "resident"))

    def _wbytes(self, r) -> float:
        bits = r["weight_bits"] if self.options["weight_bits"] == "layer" else float(self.options["weight_bits"])
        return bits / 8.0

    def _weight_reads(self, r) -> float:
        """Weight elements read over the run, under the ``weight_reads`` assumption."""
        mode = self.options["weight_reads"]
        if mode == "per_op":
            return r["acs"] + r["macs"]
        if mode == "per_step":
            return r["weight_numel"] * r["sample_steps"]
        if mode == "per_sample":
            return r["weight_numel"] * r["samples"]
        return 0.0

    def synapse(self, r):
        """``compute``: ACs and MACs; ``weight_memory``: weight reads (as ``weight_reads`` says) and bias reads."""
        o = self.options
        compute = r["acs"] * o["e_ac"] + r["macs"] * o["e_mac"]
        wbytes = self._weight_reads(r) * self._wbytes(r)
        bbytes = r["bias_reads"] * r["bias_bits"] / 8.0 if self.options["weight_reads"] != "resident" else 0.0
        return _comp(compute=compute, weight_memory=(wbytes + bbytes) * o["e_memory_pj_per_byte"])

    def neuron(self, r):
        """``compute``: ``ops_per_update`` ACs per update; ``state_memory``: one read and one write of the state
        per neuron and step."""
        o = self.options
        bits = r["state_bits"] if o["state_bits"] == "dtype" else float(o["state_bits"])
        state_bytes = 2.0 * r["state_element_steps"] * bits / 8.0  # one read + one write per step
        return _comp(compute=r["updates"] * r["ops_per_update"] * o["e_ac"],
                     state_memory=state_bytes * o["e_memory_pj_per_byte"])

    def norm(self, r):
        """``compute``: the BatchNorm MACs and adds the ledger counted."""
        return _comp(compute=r["macs"] * self.options["e_mac"] + r["acs"] * self.options["e_ac"])

    def spike_energy(self, m, x, out, rule):
        """Per weight use (exact fan-out): ``e_ac``, plus the weight's read when ``weight_reads='per_op'``."""
        uses = rule.sop(m, x, "exact")
        per_use = self.options["e_ac"]
        if self.options["weight_reads"] == "per_op":
            per_use = per_use + rule.weight_bits(m) / 8.0 * self.options["e_memory_pj_per_byte"]
        return uses * per_use


def _simple_preset(name, title, e_mac, e_ac):
    class _Preset(SimpleModel):
        info = dataclasses.replace(SimpleModel.info, name=name, title=title,
                                   precision=f"{title} arithmetic (E_MAC {e_mac}, E_AC {e_ac} pJ); memory bytes at "
                                             "each tensor's bits")
        defaults = dict(SimpleModel.defaults, e_mac=e_mac, e_ac=e_ac)

    _Preset.__name__ = f"SimpleModel_{name.replace('-', '_')}"
    return _Preset


SimpleFP16 = _simple_preset("simple-fp16", "fp16", 1.5, 0.4)
SimpleINT8 = _simple_preset("simple-int8", "int8", 0.23, 0.03)


# ---- lemaire: Lemaire et al. 2022 -----------------------------------------------------------------------------
class LemaireModel(EnergyModel):
    r"""Lemaire, Cordone, Castagnetti, Novac, Courtois, Miramond, "An analytical estimation of spiking neural
    networks energy efficiency", ICONIP 2022 (arXiv 2210.13107), with SpikingJelly 2.0.0's reading of it.

    Arithmetic: additions at ``e_add`` (0.1 pJ), multiplications at ``e_mul`` (3.1 pJ; 32-bit integer,
    45 nm).  Memory: every access costs :func:`sram_pj_per_byte` of the memory it touches, a memory as big
    as what it holds for one sample: the layer's parameters, its potentials (one time step), its dense
    input, or a ``fifo_elements``-word spike FIFO.

    Spike input to a synaptic layer (:math:`S` input spikes, fan-out :math:`F = S\cdot C_{out}/g\cdot K`,
    :math:`syn = S\cdot C_{out}/g\cdot\prod\lceil k/s\rceil`; linear :math:`F = syn = S\cdot n_{out}`): ``syn``
    accumulates, ``F`` address additions (+ :math:`2S` address MACs for a convolution), :math:`S` FIFO reads,
    ``F`` weight reads, ``F`` potential reads and ``F`` writes.  Real input: MACs, address additions
    (linear :math:`n_{in}+n_{out}`, conv :math:`n_{in}+n_{out}+C_{out}K`), input reads (linear
    :math:`n_{in}`, conv one per MAC), one weight read per MAC.  Bias: one add and one read per output
    element.  A network without neurons writes each layer's output (the ANN path).  Neuron layers: one
    potential read and write per neuron and step, one add per output spike, a leak multiply (MAC) per
    neuron and step for leaky neurons, one FIFO write per output spike.

    Assumptions (options): ``word_bits`` (32: potentials, events and dense activations), ``weight_bits``
    (``'layer'``: the bits the layer declares, fp32 otherwise), ``weight_reads`` (``'per_op'``, as the paper;
    ``'resident'``: weights held in the synapse array, no reads), ``capacity`` (``'sample'``: memories
    sized for one sample; ``'call'``: sized for everything one call holds, SpikingJelly's reading, which
    makes the cost per sample grow with the batch).
    """

    info = ModelInfo(
        name="lemaire", title="Lemaire et al. 2022: operations, addressing and size-dependent SRAM accesses",
        source="Lemaire et al., ICONIP 2022, arXiv 2210.13107, as SpikingJelly 2.0.0 "
               "op_counter.estimate_lemaire_energy computes it; Horowitz, ISSCC 2014",
        technology="45 nm", precision="32-bit integer arithmetic (add 0.1 pJ, mult 3.1 pJ), 32-bit words",
        scope="synaptic and neuron operations, address computation, reads and writes of inputs/outputs, "
              "weights, biases and potentials, each priced by the size of its memory; non-spiking networks "
              "by the dense path with output writes (neuroq's extension)",
        uncertain="the SRAM cost curve is Horowitz's three points interpolated; BatchNorm, pooling and "
                  "activation functions cost nothing (as in SpikingJelly)")
    defaults = dict(e_add=0.1, e_mul=3.1, word_bits=32.0, weight_bits="layer", fifo_elements=1000.0,
                    weight_reads="per_op", capacity="sample")
    choices = dict(weight_reads=("per_op", "resident"), capacity=("sample", "call"))

    def _cap(self, r, per_sample_elements: float, per_call_elements: float, bits: float) -> float:
        n = per_sample_elements if self.options["capacity"] == "sample" else per_call_elements
        return n * bits / 8.0

    def synapse(self, r):
        """All five components of a synaptic layer, for its spike and its real-valued inputs (see the class
        docstring)."""
        o = self.options
        w = o["word_bits"] / 8.0
        wb = (r["weight_bits"] if o["weight_bits"] == "layer" else float(o["weight_bits"])) / 8.0
        fifo = sram_pj_per_byte(o["fifo_elements"] * w)
        pcap = sram_pj_per_byte(r["weight_numel"] * wb + r["bias_numel"] * r["bias_bits"] / 8.0)
        vcap = sram_pj_per_byte(self._cap(r, r["out_per_sample_step"], r["out_per_call_step"], o["word_bits"]))
        mac_e = o["e_mul"] + o["e_add"]
        S, F, syn = r["spike_events"], r["lem_fan"], r["lem_syn"]
        compute = (syn + r["bias_adds"]) * o["e_add"] + r["macs"] * mac_e
        addressing = (F + r["dense_addr"]) * o["e_add"] + r["conv_event_addr_macs"] * mac_e
        io = S * w * fifo
        if r["dense_in_reads"]:
            icap = sram_pj_per_byte(self._cap(r, r["in_per_sample"], r["in_per_call"], o["word_bits"]))
            io += r["dense_in_reads"] * w * icap
        if r["dense_out_writes"] and not r["network_has_neurons"]:
            ocap = sram_pj_per_byte(self._cap(r, r["out_per_sample"], r["out_per_call"], o["word_bits"]))
            io += r["dense_out_writes"] * w * ocap
        weight = 0.0
        if o["weight_reads"] == "per_op":
            weight = (F + r["macs"]) * wb * pcap + r["bias_reads"] * r["bias_bits"] / 8.0 * pcap
        state = 2.0 * F * w * vcap
        return _comp(compute=compute, addressing=addressing, io=io, weight_memory=weight, state_memory=state)

    def neuron(self, r):
        """``state_memory``: a potential read and write per update (none for stateless neurons); ``compute``: an
        add per spike and, for leaky neurons, a leak MAC per update; ``io``: a FIFO write per spike."""
        o = self.options
        w = o["word_bits"] / 8.0
        if r["state_element_steps"] == 0:  # stateless (S2NN): no potential to keep
            state = 0.0
        else:
            cap = sram_pj_per_byte(self._cap(r, r["per_sample_step"], r["per_call_step"], o["word_bits"]))
            state = 2.0 * r["updates"] * w * cap
        mac_e = o["e_mul"] + o["e_add"]
        compute = r["spikes"] * o["e_add"] + (r["updates"] * mac_e if r["leaky"] else 0.0)
        io = r["spikes"] * w * sram_pj_per_byte(o["fifo_elements"] * w)
        return _comp(compute=compute, state_memory=state, io=io)

    def spike_energy(self, m, x, out, rule):
        """Every term of a spike input is linear in the spike count: syn adds, fan-out address adds (and
        two address MACs per event into a conv), one FIFO read, fan-out weight, potential read and write."""
        o = self.options
        w = o["word_bits"] / 8.0
        geo = rule.geometry(m, x, out)
        wb = (rule.weight_bits(m) if o["weight_bits"] == "layer" else float(o["weight_bits"])) / 8.0
        pcap = sram_pj_per_byte(geo["weight_numel"] * wb + geo["bias_numel"] * geo["bias_bits"] / 8.0)
        vcap = sram_pj_per_byte(geo["out_per_sample_step"] * w)  # per-sample memories (capacity='sample')
        if o["capacity"] != "sample":
            raise ValueError("the lemaire penalty prices per-sample memories; use capacity='sample'")
        fifo = sram_pj_per_byte(o["fifo_elements"] * w)
        per_event = w * fifo + (2 * (o["e_mul"] + o["e_add"]) if geo["conv"] else 0.0)
        per_fan = o["e_add"] + 2.0 * w * vcap + (wb * pcap if o["weight_reads"] == "per_op" else 0.0)
        s = x.sum()
        return s * (per_event + geo["fan"] * per_fan + geo["syn"] * o["e_add"])


# ---- neuromorphic hardware profiles ---------------------------------------------------------------------------
class NeuromorphicModel(EnergyModel):
    r"""A neuromorphic chip as an energy per synaptic operation (one input spike meeting one synapse) and
    per neuron update (one neuron, one time step), as KerasSpiking's ``ModelEnergy`` tabulates them.  The
    network is assumed mapped to the chip as it is: spike inputs cost ``e_synop`` per synaptic operation,
    real-valued inputs cost ``e_synop`` per connection and step (the chip still has to integrate them),
    and non-spiking activations (ReLU) are priced as neurons.  Memory is inside these per-event figures.
    """

    defaults = dict(e_synop=27.1, e_neuron=81.0)

    def synapse(self, r):
        """``compute``: ``e_synop`` per AC and per MAC (one synaptic operation each)."""
        return _comp(compute=(r["acs"] + r["macs"]) * self.options["e_synop"])

    def neuron(self, r):
        """``compute``: ``e_neuron`` per neuron update."""
        return _comp(compute=r["updates"] * self.options["e_neuron"])

    def norm(self, r):
        """Zero: the chip profiles price only synaptic operations and neuron updates."""
        return zero()

    def spike_energy(self, m, x, out, rule):
        """``e_synop`` per synaptic operation of ``x`` (exact fan-out)."""
        return rule.sop(m, x, "exact") * self.options["e_synop"]


class LoihiModel(NeuromorphicModel):
    """``loihi``: Intel Loihi's energy per synaptic operation (27.1 pJ) and per neuron update (81 pJ)."""

    info = ModelInfo(
        name="loihi", title="Intel Loihi: energy per synaptic operation and per neuron update",
        source="Davies et al., IEEE Micro 38(1) 2018, Table 1 (23.6 pJ per synaptic spike op, 3.5 pJ within-tile "
               "spike energy, 81 pJ per active neuron update), as tabulated by KerasSpiking ModelEnergy",
        technology="14 nm (Intel), measured pre-silicon/silicon figures",
        precision="Loihi's native fixed point (up to 9-bit weights, 24-bit potentials); bit widths do not "
                  "change these per-event figures",
        scope="synaptic operations and neuron updates; no host, off-chip I/O, barrier synchronisation or "
              "idle power",
        uncertain="per-event figures from Table 1 of the chip paper; the measured keyword-spotting energy "
                  "(Blouw et al. 2019) is dominated by per-time-step overhead these figures omit, see "
                  "docs/energy.md")
    defaults = dict(e_synop=23.6 + 3.5, e_neuron=81.0)


class SpiNNaker2Model(NeuromorphicModel):
    """``spinnaker2``: the SpiNNaker 2 prototype's energy per synaptic event (450 pJ) and per neuron update
    (2.19 nJ)."""

    info = ModelInfo(
        name="spinnaker2", title="SpiNNaker 2 (prototype): energy per synaptic operation and per neuron update",
        source="Höppner et al., IEEE TCAS-I 66(8) 2019 (arXiv 1903.08941), as tabulated by KerasSpiking "
               "ModelEnergy (450 pJ per synaptic event, 2.19 nJ per neuron update)",
        technology="28 nm FD-SOI prototype", precision="ARM cores, software neuron and synapse updates",
        scope="synaptic events and neuron updates with dynamic power management; no host or I/O",
        uncertain="prototype-chip figures; the final chip's numbers differ")
    defaults = dict(e_synop=450.0, e_neuron=2190.0)


for _cls in (ComputeModel, SimpleModel, SimpleFP16, SimpleINT8, LemaireModel, LoihiModel, SpiNNaker2Model):
    register_energy_model(_cls.info.name, _cls)


def price(model: EnergyModel, kind: str, record: dict) -> dict:
    """Components of one ledger record (``kind`` = ``'synapse'``, ``'neuron'`` or ``'norm'``)."""
    fn = dict(synapse=model.synapse, neuron=model.neuron, norm=model.norm).get(kind)
    if fn is None:
        raise ValueError(f"ledger kind must be synapse, neuron or norm; got {kind!r}")
    return fn(record)


def model_list(energy) -> list:
    """``energy`` as a list of models: one name/spec/model, a comma-separated string, or a sequence."""
    if isinstance(energy, EnergyModel):
        return [energy]
    if isinstance(energy, str):
        return [get_energy_model(s.strip()) for s in energy.split(",") if s.strip()]
    if isinstance(energy, (list, tuple)):
        return [get_energy_model(e) for e in energy]
    raise TypeError(f"energy must be a model name, 'name1,name2', a list of them or an EnergyModel; got {energy!r}")


__all__ = ["COMPONENTS", "EnergyModel", "ModelInfo", "ComputeModel", "SimpleModel", "LemaireModel",
           "NeuromorphicModel", "LoihiModel", "SpiNNaker2Model", "register_energy_model", "energy_models",
           "get_energy_model", "describe", "sram_pj_per_byte", "parse_spec", "model_list", "price"]
