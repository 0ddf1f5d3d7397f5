"""What a trained run is measured and shown by: its inference model (:func:`inference_model`), the energy
meter run over test samples (:func:`meter_run`), ``energy.json`` (:func:`write_energy_report`) and the
spike raster (:func:`report_run`).  The training loop calls none of this except the per-epoch energy of
``--log``; ``neuroq train``, ``compare``, ``energy`` and ``viz`` do.

Every input follows the method's bound :class:`~neuroq.training.methods.Layout` (``Method.bind``), so no
encoding or kind of sample is passed here.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import _sj
from ..data import batches
from ..io import atomic_write_json, machine_info
from .methods import Method


#: test samples every energy figure of a run is metered on, by default: ``neuroq train``'s energy.json,
#: ``neuroq energy``, ``viz --kind energy``, ``compare`` and ``report`` (one number, so they agree)
METER_SAMPLES = 512


def inference_model(method: Method, model: torch.nn.Module, device="cpu") -> torch.nn.Module:
    """The model to meter and plot: ``method.inference_network(model)`` in eval mode on ``device``."""
    return method.inference_network(model).to(device).eval()


@torch.no_grad()
def meter_run(method: Method, net: torch.nn.Module, dataset, device="cpu", samples: int = METER_SAMPLES,
              batch_size: int = 256, **meter_kw):
    """Run ``net`` (the method's inference model) over the first ``samples`` samples of ``dataset``
    inside an :class:`neuroq.energy.EnergyMeter` (``meter_kw`` are its options) and return the meter
    (samples are counted from the batches, so any model input layout works)."""
    from ..energy import EnergyMeter

    n = min(samples, len(dataset))
    meter = EnergyMeter(net, batch_dim=None, **meter_kw)
    with meter:
        for xb, _ in batches(dataset, torch.arange(n), batch_size):
            xb = xb.to(device)
            _sj.reset_net(net)
            net(method.record_input(xb))
            meter.add_samples(len(xb))
    _sj.reset_net(net)
    return meter


def write_energy_report(meter, method: Method, data, path, device="cpu", **extra) -> dict:
    """``meter.report()`` with the method, the dataset, the machine and ``extra`` added, written to ``path``
    (atomically); returns the report."""
    rep = meter.report()
    rep.update(method=method.name, dataset=data.name, **extra, machine=machine_info(device))
    atomic_write_json(Path(path), rep)
    return rep


#: test samples in the raster of a T = 1 method (neurons × samples: one step has no time axis to show)
RASTER_SAMPLES_T1 = 32


def raster_recording(method: Method, net: torch.nn.Module, data, start: int = 0, device="cpu"):
    """What the raster of a run shows, and its title: the spikes of test sample ``start`` over time, or for a
    network that runs one step (S2NN, MaQD) those of :data:`RASTER_SAMPLES_T1` test samples from ``start``
    (neurons x samples: a single step has no time axis to show); an empty recording for a model without
    spiking neurons.  ``net`` is the method's inference network (:func:`inference_model`)."""
    from .. import viz

    x, y = next(batches(data.test, torch.arange(start, start + 1), 1))
    rec = viz.record(net, method.record_input(x.to(device)))
    if not rec or next(iter(rec.values())).shape[0] != 1:
        return rec, f"{method.name} on {data.name}: test sample {start} (label {int(y[0])})"
    n = min(RASTER_SAMPLES_T1, len(data.test) - start)
    x, _ = next(batches(data.test, torch.arange(start, start + n), n))
    rec = viz.record(net, method.record_input(x.to(device)))
    return rec, f"{method.name} on {data.name}: test samples {start}-{start + n - 1} (T = 1)"


def report_run(method: Method, model: torch.nn.Module, data, out, device="cpu", samples: int = METER_SAMPLES,
               write_energy: bool = True) -> dict:
    """Write ``energy.json`` (EnergyMeter over test samples; unless ``write_energy=False``) and ``raster.png``
    (test sample 0 over time; for a T = 1 method the first :data:`RASTER_SAMPLES_T1` test samples, neurons ×
    samples; none for a model without spiking neurons) to ``out``; returns the energy report (``None``
    without it)."""
    from .. import viz

    net = inference_model(method, model, device)
    rep = None
    if write_energy:
        meter = meter_run(method, net, data.test, device, samples=samples)
        rep = write_energy_report(meter, method, data, Path(out) / "energy.json", device)
        print(meter.table())
    rec, title = raster_recording(method, net, data, 0, device)
    if rec:  # a model without spiking neurons (the ANN baseline) gets no raster
        viz.save(viz.raster(rec, title=title), Path(out) / "raster.png", dpi=150)
    _sj.reset_net(net)
    return rep
