"""Per-epoch logs of a run: ``--log csv`` (``log.csv``) and ``--log tensorboard`` (``tensorboard/``).

Each evaluated epoch logs the training loss and accuracy, the validation and test accuracy, the
learning rate and -- metered on the first ``log_samples`` validation (else test) samples by the one
:class:`neuroq.energy.EnergyMeter` -- the energy per sample (total, SOP and MAC parts) and every neuron
layer's firing rate.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from ..labels import with_path

LOGGERS = ("csv", "tensorboard")


def epoch_scalars(rec: dict, energy: Optional[dict]) -> dict:
    """The flat ``{name: value}`` of one epoch (history record + energy report), as every logger writes it."""
    out = {k: rec.get(k) for k in ("train_loss", "train_acc", "val_acc", "test_acc", "lr", "train_time_s")}
    if energy is not None:
        tot = energy["total"]
        e_ac = energy["e_ac_pj"]
        out.update(energy_pj_per_sample=tot.get("energy_pj_per_sample"), sops_per_sample=tot.get("sops_per_sample"),
                   macs_per_sample=tot.get("macs_per_sample"), firing_rate=tot.get("firing_rate"),
                   spiking_energy_pj_per_sample=(tot["sops_per_sample"] * e_ac) if tot.get("sops_per_sample")
                   is not None else None)
        for name, n in energy.get("neurons", {}).items():
            out[f"firing_rate/{with_path(name, n.get('label'))}"] = n["firing_rate"]
    return {k: v for k, v in out.items() if v is not None}


class CSVLogger:
    """One row per evaluated epoch in ``out/log.csv`` (the header grows when new columns appear)."""

    def __init__(self, out):
        self.path = Path(out) / "log.csv"
        self.rows: list[dict] = []
        if self.path.exists():  # a resumed run continues its log
            with open(self.path, newline="") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]

    def log(self, epoch: int, scalars: dict) -> None:
        """Record ``scalars`` as epoch ``epoch``'s row (dropping rows of that epoch and later ones, as a resumed
        run repeats them) and rewrite the file atomically."""
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [dict(epoch=epoch, **scalars)]
        cols = ["epoch"] + sorted({k for r in self.rows for k in r} - {"epoch"})
        from ..io import atomic_write_text

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def close(self) -> None:
        """Nothing to release: every :meth:`log` writes the whole file."""
        pass


class TensorBoardLogger:
    """Scalars per epoch in ``out/tensorboard`` (``torch.utils.tensorboard``; needs the ``tensorboard``
    package)."""

    def __init__(self, out):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ValueError(f"--log tensorboard needs the tensorboard package (pip install tensorboard): {e}") from None
        self.writer = SummaryWriter(str(Path(out) / "tensorboard"))

    def log(self, epoch: int, scalars: dict) -> None:
        """Add every scalar at step ``epoch`` and flush."""
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def close(self) -> None:
        """Close the summary writer."""
        self.writer.close()


def make_loggers(kinds, out) -> list:
    """One logger per name in ``kinds`` (:data:`LOGGERS`) writing under the folder ``out``; ``ValueError`` if
    loggers are asked for without a folder."""
    if kinds and out is None:
        raise ValueError("--log needs an output folder (out=...)")
    return [{"csv": CSVLogger, "tensorboard": TensorBoardLogger}[k](out) for k in kinds]
