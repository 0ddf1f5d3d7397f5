"""Visualization of spiking networks (matplotlib, headless-safe: the Agg backend is used when no
display backend was chosen). Every plot takes the recording of :func:`record` and returns its
``Axes`` or ``Figure``, drawn in one style (:mod:`neuroq.viz.style`); :func:`save` writes it as
PNG and, for papers and slides, vector PDF/SVG:

* :func:`record` — run a model once and return a :class:`Recording`: ``{layer: spikes [T, N, ...]}``
  with ``.labels`` and, with ``v=True``, ``.v``, ``.h`` and ``.v_threshold``
* :class:`Recorder` — context manager that records any number of calls into a :class:`Recording`
* :func:`raster` — spike raster, one band and colour per layer
* :func:`firing_rates` — per-layer histogram of neuron rates + rate heatmap over time
* :func:`membrane_trace` — membrane potential before/after reset with threshold and spikes marked
* :func:`feature_maps` — spike maps of a convolutional layer's channels
* :func:`energy_bars` — per-layer SOP/MAC energy of an :class:`neuroq.energy.EnergyMeter` report
* :func:`energy_components` — per-layer energy of one energy model, stacked by component (compute, memory ...)
* :func:`accuracy_energy` — accuracy vs energy of several runs with their Pareto front
* :func:`learning_curves` — a metric per epoch of several runs, mean ± std over seeds
* :func:`animate_raster` — GIF of the raster filling in step by step
* :func:`layer_labels` — readable layer names (``LIF 1 (conv 32×4×4)``) from a model

Interactive, in the browser (Bokeh, the ``report`` extra; :mod:`neuroq.viz.interactive`), each returning a Bokeh
layout that ``bokeh.io.show`` displays (Jupyter too) and :func:`save_html` writes as one offline HTML file:

* :func:`interactive_raster` — every layer's spikes, stacked on a linked time axis, hover, membrane traces by click
* :func:`interactive_rates` — population rate per step, mean rate per step, histogram of neuron rates
* :func:`interactive_energy` — per-layer energy by component, one panel per energy model
* :func:`interactive_frontier` — accuracy against energy of a ``neuroq compare``, one panel per energy model
"""
from .raster import raster, select_neurons  # noqa: F401
from .record import Recorder, Recording, record  # noqa: F401
from .rates import firing_rates  # noqa: F401
from .membrane import membrane_trace  # noqa: F401
from .feature_maps import feature_maps  # noqa: F401
from .energy_plots import (accuracy_energy, distinct_labels, energy_bars, energy_components, energy_unit,  # noqa: F401
                           load_run_summary, pareto_front)
from .animate import animate_raster  # noqa: F401
from .curves import learning_curves  # noqa: F401
from ..labels import layer_labels  # noqa: F401
from .save import save  # noqa: F401
from .interactive import (interactive_energy, interactive_frontier, interactive_raster, interactive_rates,  # noqa: F401
                          save_html)
from .style import PALETTE, color, style  # noqa: F401
