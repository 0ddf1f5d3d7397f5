"""The one training loop, used by ``neuroq train``, every example and the benchmarks (single process or
``torchrun`` data-parallel).

* :func:`train_step` is the one optimisation step: zero the gradients, the method's
  :meth:`~neuroq.training.methods.Method.compute_loss` under autocast (``--amp``) plus the energy penalty,
  the divergence check, backward (through the GradScaler on CUDA) and the optimiser step.  A method that
  updates several times per batch (the online ones) brings its own ``train_step`` instead.
* :class:`Trainer` holds a run (method, data, model, optimizer, schedule, energy penalty, history)
  and exposes its steps: :meth:`Trainer.begin_epoch` (the epoch's seeded order),
  :meth:`Trainer.train_batch`, :meth:`Trainer.end_epoch`, :meth:`Trainer.evaluate`; :meth:`Trainer.fit`
  runs them for every epoch, writing an atomic checkpoint (:mod:`.checkpoint`) and ``metrics.json``
  after each epoch when it has an output folder.  Examples that train several methods in lockstep call
  the steps themselves.
* :func:`fit` is ``Trainer(...).fit()``; :func:`evaluate` is the accuracy of any model.  Metering and
  reports of a trained model live in :mod:`.report`.

With ``shuffle='epoch'`` (the default) each epoch's order and encoding noise are seeded from
``(seed, epoch)``, so a run stopped at any point and resumed ends with the same weights and metrics as
one that was never interrupted.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from .. import _sj
from ..data import ArrayDataset, batches, num_batches
from ..io import make_folder, atomic_write_json, machine_info, seed_everything
from .checkpoint import CHECKPOINT, restore_run, save_best, save_run
from .config import TrainConfig, to_dict
from .methods import Context, Method

PER_STEP_SCHEDULES = ("cosine-step", "onecycle")


def amp_dtype(device: torch.device):
    """The autocast dtype of ``--amp``: float16 on CUDA, bfloat16 on CPU."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def train_step(method: Method, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optimizer,
               ctx: Optional[Context] = None, *, amp: bool = False, scaler=None, penalty=None,
               penalty_weight: float = 0.0):
    """One minibatch update of ``model`` by ``method``; returns ``(loss value: float, logits)``.

    Zeroes the gradients, clears ``penalty`` (a started :class:`neuroq.energy.SynapticPenalty` or any
    penalty with ``clear()``/``penalty()``), computes ``method.compute_loss`` under autocast when ``amp``,
    adds ``penalty_weight * penalty.penalty()``, and -- unless the loss is not finite (diverged: no update,
    the loop stops the run) -- backpropagates (through ``scaler``, a GradScaler, when given) and steps
    ``optimizer``.  A method that steps itself (``method.steps_itself()``) runs its own
    :meth:`~neuroq.training.methods.Method.train_step`, which takes neither ``amp`` nor a penalty."""
    ctx = Context() if ctx is None else ctx
    if method.steps_itself():
        if amp or (penalty is not None and penalty_weight != 0.0):
            raise ValueError(f"method {method.name!r} trains with its own step: it takes neither amp nor an "
                             "energy penalty")
        return method.train_step(model, x, y, optimizer, ctx)
    optimizer.zero_grad(set_to_none=True)
    if penalty is not None:
        penalty.clear()
    with torch.autocast(device_type=x.device.type, dtype=amp_dtype(x.device), enabled=bool(amp)):
        loss, logits = method.compute_loss(model, x, y, ctx)
        if penalty is not None and penalty_weight != 0.0:
            loss = loss + penalty_weight * penalty.penalty()
    if not torch.isfinite(loss):  # diverged: no update (the loop stops the run)
        return float(loss.detach()), logits.detach()
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach()), logits.detach()


def _dist_setup(device: str):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if device.startswith("cuda"):
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    return rank, world, device


def _make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    if cfg.schedule == "cosine-step":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs * steps_per_epoch))
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * steps_per_epoch))
    return None


class Trainer:
    """A training run of ``method`` on ``data`` with ``cfg`` (see the module docstring).

    Args:
        method: a configured :class:`neuroq.training.methods.Method`.
        data: a :class:`neuroq.data.TaskData`.
        cfg: the :class:`neuroq.training.config.TrainConfig`.
        model: train this model instead of ``method.build_model(data)`` (built after
            ``seed_everything(cfg.seed)`` when not given).
        out: folder for ``checkpoint.pt`` and ``metrics.json`` (``None``: nothing is written).
        resume: continue from ``out/checkpoint.pt`` when it exists (the configs must match, except
            ``TrainConfig.RESUMABLE`` fields).
        progress: show a progress bar per epoch.
        label: prefix of the per-epoch log line (``None``: no log line).
        callbacks: functions called with each epoch's history record (after it is written).
    """

    def __init__(self, method: Method, data, cfg: TrainConfig, model: Optional[torch.nn.Module] = None,
                 out: Optional[str] = None, resume: bool = False, progress: bool = False,
                 label: Optional[str] = "", callbacks=()):
        if not isinstance(method, Method):
            raise TypeError(f"method must be a neuroq.training.methods.Method, got {type(method).__name__}")
        if not isinstance(cfg, TrainConfig):
            raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
        method.bind(cfg, data)
        self.method, self.data, self.cfg = method, data, cfg
        self.rank, self.world, self.device = _dist_setup(cfg.device)
        self.is_main = self.rank == 0
        self.out = Path(out) if out is not None else None
        self.progress, self.label = progress, label
        self.callbacks = list(callbacks)
        if model is None:
            seed_everything(cfg.seed)
            model = method.build_model(data)
        self.model = model.to(self.device)
        self.optimizer = method.make_optimizer(self.model, cfg.lr)
        self.train_set, self.val_set = split_validation(data.train, cfg.val_fraction, cfg.seed)
        self.per_rank_bs = max(1, cfg.batch_size // self.world)
        usable = (len(self.train_set) // self.world) * self.world
        self.steps_per_epoch = num_batches(usable // self.world, self.per_rank_bs)
        self.scheduler = _make_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler("cuda") if (cfg.amp and self.device.startswith("cuda")) else None
        self.history: list[dict] = []
        self.extensions: list[dict] = []
        self.start_epoch = 0
        self.diverged = False
        #: the one generator of every epoch's order with ``shuffle='stream'`` (checkpointed), else None
        self.shuffle_rng = torch.Generator().manual_seed(cfg.seed) if cfg.shuffle == "stream" else None
        if resume and self.out is not None and (self.out / CHECKPOINT).exists():
            self._resume(self.out / CHECKPOINT)
        self.train_model = self.model
        if self.world > 1:
            ids = [int(self.device.split(":")[1])] if self.device.startswith("cuda") else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        from .log import make_loggers

        self.loggers = make_loggers(cfg.log, self.out) if self.is_main else []
        self.penalty = None
        if cfg.energy_penalty > 0:
            from ..energy import make_penalty

            self.penalty = make_penalty(cfg.penalty_kind, self.train_model).start()
        self._epoch_stats = None

    # ---- resuming ---------------------------------------------------------------------------
    def _resume(self, path: Path) -> None:
        ck = restore_run(self, path)
        old_epochs = int(ck["train"]["epochs"])
        if self.cfg.epochs < self.start_epoch:
            raise ValueError(f"{path} has {self.start_epoch} epochs done; --epochs "
                             f"{self.cfg.epochs} asks for fewer (give at least {self.start_epoch})")
        if self.cfg.epochs != old_epochs:
            self._replan_schedule(old_epochs)
        if self.is_main:
            print(f"resumed from {path} after epoch {self.start_epoch}"
                  + (f" (schedule re-planned from {old_epochs} to {self.cfg.epochs} epochs)"
                     if self.cfg.epochs != old_epochs else ""))

    def _replan_schedule(self, old_epochs: int) -> None:
        """A resumed run asks for another number of epochs: the learning-rate schedule is planned anew over
        the new total and continues from where the run is (closed form at the current step), so the rate
        neither wraps nor jumps back; the change is recorded in ``metrics.json`` (``extensions``)."""
        done_steps = self.start_epoch * (self.steps_per_epoch if self.cfg.schedule in PER_STEP_SCHEDULES else 1)
        for group in self.optimizer.param_groups:  # the new schedule starts from the base rate ...
            group["lr"] = group.get("initial_lr", group["lr"])
        self.scheduler = _make_scheduler(self.optimizer, self.cfg, self.steps_per_epoch)
        if self.scheduler is not None:  # ... and is stepped to where the run is
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "step() before optimizer.step()": on purpose
                for _ in range(done_steps):
                    self.scheduler.step()
        self.extensions.append(dict(after_epoch=self.start_epoch, epochs_before=old_epochs,
                                    epochs_after=self.cfg.epochs, lr_now=self.optimizer.param_groups[0]["lr"]))

    # ---- one epoch ----------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> torch.Tensor:
        """Start epoch ``epoch`` (0-based): seed it, put the model in train mode, return this rank's sample order."""
        cfg = self.cfg
        if self.shuffle_rng is None:
            s = cfg.seed * cfg.shuffle_seed_stride + epoch
            torch.manual_seed(s)
            g = torch.Generator().manual_seed(s)
        else:
            g = self.shuffle_rng
        n = len(self.train_set)
        perm = torch.randperm(n, generator=g)
        usable = (n // self.world) * self.world
        self.ctx = Context(generator=g, n_train=n)
        self.method.on_epoch(self.model, epoch)
        self.model.train()
        self._epoch_stats = dict(loss=0.0, correct=0, seen=0, time=0.0, t0=time.time())
        return perm[:usable][self.rank::self.world]

    def train_batch(self, x: torch.Tensor, y: torch.Tensor):
        """One optimizer update on the batch ``(x, y)`` (moved to the device); returns ``(loss, logits)``."""
        x, y = x.to(self.device), y.to(self.device)
        t0 = time.perf_counter()
        loss, logits = train_step(self.method, self.train_model, x, y, self.optimizer, self.ctx, amp=self.cfg.amp,
                                  scaler=self.scaler, penalty=self.penalty, penalty_weight=self.cfg.energy_penalty)
        if self.scheduler is not None and self.cfg.schedule in PER_STEP_SCHEDULES:
            self.scheduler.step()
        st = self._epoch_stats
        st["time"] += time.perf_counter() - t0
        if not math.isfinite(loss):
            self.diverged = True
        st["loss"] += loss * len(y)
        st["correct"] += int((logits.argmax(1) == y).sum())
        st["seen"] += len(y)
        return loss, logits

    def end_epoch(self, epoch: int, evaluate: Optional[bool] = None) -> dict:
        """Finish epoch ``epoch``: schedule step, evaluation when due (``evaluate`` forces it either way),
        the history record, logs, checkpoints; returns the record."""
        if self.scheduler is not None and self.cfg.schedule not in PER_STEP_SCHEDULES:
            self.scheduler.step()
        self._reduce_epoch_stats()
        val_acc, test_acc = self._evaluate_epoch(epoch, evaluate)
        rec = self._epoch_record(epoch, val_acc, test_acc)
        self.history.append(rec)
        self._log_epoch(rec)
        self._save_epoch(rec)
        if self.world > 1:
            dist.barrier()
        for cb in self.callbacks:
            cb(rec)
        return rec

    def _reduce_epoch_stats(self) -> None:
        """Sum the epoch's loss, correct and seen counts over every rank's shard, not rank 0's alone."""
        st = self._epoch_stats
        if self.world > 1:
            tot = torch.tensor([st["loss"], st["correct"], st["seen"]], dtype=torch.float64)
            dist.all_reduce(tot)
            st["loss"], st["correct"], st["seen"] = float(tot[0]), int(tot[1]), int(tot[2])

    def _evaluate_epoch(self, epoch: int, evaluate: Optional[bool]):
        """``(val_acc, test_acc)`` after recalibrating the norms, when the epoch is due (every ``eval_every``,
        the last, a diverged one) or ``evaluate`` says so; ``(None, None)`` otherwise."""
        if evaluate is None:
            every = self.cfg.eval_every
            evaluate = (every and (epoch + 1) % every == 0) or epoch + 1 == self.cfg.epochs or self.diverged
        if not evaluate:
            return None, None
        self.recalibrate()
        val_acc = self.evaluate(self.val_set) if self.val_set is not None else None
        return val_acc, self.evaluate()

    def _epoch_record(self, epoch: int, val_acc, test_acc) -> dict:
        """The history record of epoch ``epoch``."""
        st = self._epoch_stats
        seen = max(1, st["seen"])
        rec = dict(epoch=epoch + 1, train_loss=st["loss"] / seen, train_acc=st["correct"] / seen, samples=st["seen"],
                   val_acc=val_acc,
                   test_acc=test_acc, train_time_s=st["time"], epoch_time_s=time.time() - st["t0"],
                   lr=self.optimizer.param_groups[0]["lr"])
        if self.diverged:
            rec["diverged"] = True
        return rec

    def _log_epoch(self, rec: dict) -> None:
        """The ``--log`` loggers (with the energy of ``log_samples`` samples, on evaluated epochs) and the
        epoch's line on stdout."""
        evaluated = rec["test_acc"] is not None
        if self.loggers and evaluated:
            from .log import epoch_scalars
            from .report import inference_model, meter_run

            ds = self.val_set if self.val_set is not None else self.data.test
            energy = meter_run(self.method, inference_model(self.method, self.model, self.device), ds, self.device,
                               samples=self.cfg.log_samples).report()
            for lg in self.loggers:
                lg.log(rec["epoch"], epoch_scalars(rec, energy))
        if self.is_main and self.label is not None:
            acc = "–" if rec["test_acc"] is None else f"{rec['test_acc']:.4f}"
            val = "" if rec["val_acc"] is None else f"val_acc {rec['val_acc']:.4f}  "
            print(f"{self.label}epoch {rec['epoch']:3d}/{self.cfg.epochs}  loss {rec['train_loss']:.4f}  "
                  f"train_acc {rec['train_acc']:.4f}  {val}test_acc {acc}  ({rec['epoch_time_s']:.1f}s)"
                  f"{'  DIVERGED (non-finite loss): stopping' if self.diverged else ''}", flush=True)

    def _save_epoch(self, rec: dict) -> None:
        """With an output folder (rank 0): ``best.pt`` on a new best validation accuracy, ``checkpoint.pt``
        and ``metrics.json``."""
        if not (self.is_main and self.out is not None):
            return
        val_acc = rec["val_acc"]
        if val_acc is not None and val_acc > max((h["val_acc"] for h in self.history[:-1]
                                                   if h.get("val_acc") is not None), default=-1.0):
            save_best(self, self.out, rec["epoch"], val_acc)
        save_run(self, self.out)
        self.write_metrics()

    def run_epoch(self, epoch: int) -> dict:
        """Train epoch ``epoch`` (0-based) over this rank's shard, stopping early if the loss diverges, then
        :meth:`end_epoch`; returns the epoch's history record."""
        order = self.begin_epoch(epoch)
        bar = tqdm(total=num_batches(len(order), self.per_rank_bs), desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
                   disable=not (self.is_main and self.progress), leave=False, dynamic_ncols=True)
        for xb, yb in batches(self.train_set, order, self.per_rank_bs, self.cfg.num_workers,
                              pin_memory=self.device.startswith("cuda")):
            self.train_batch(xb, yb)
            st = self._epoch_stats
            bar.update(1)
            bar.set_postfix(loss=f"{st['loss'] / st['seen']:.4f}", acc=f"{st['correct'] / st['seen']:.3f}")
            if self.diverged:
                break
        bar.close()
        return self.end_epoch(epoch)

    def fit(self) -> dict:
        """Train for the remaining epochs; returns the metrics (see :meth:`metrics`)."""
        if self.is_main and self.out is not None:
            make_folder(self.out)
        for epoch in range(self.start_epoch, self.cfg.epochs):
            self.run_epoch(epoch)
            if self.diverged:
                break
        return self.finish()

    def finish(self) -> dict:
        """Metrics of the run with every rank's parameter digest (written to ``metrics.json`` with ``out``)."""
        digests = self._param_digests()
        metrics = self.write_metrics(digests) if (self.is_main and self.out is not None) else self.metrics(digests)
        if self.penalty is not None:
            self.penalty.stop()
        for lg in self.loggers:
            lg.close()
        return metrics

    # ---- evaluation and records ---------------------------------------------------------------
    def recalibrate(self) -> int:
        """Re-estimate the normalization layers' running statistics with the current weights over the first
        ``cfg.recalibrate_batches`` training batches (the same batches on every rank), so the eval-mode
        network is meaningful after any number of epochs; returns the batches used (0: nothing to do)."""
        from ..layer.norm import recalibrate
        from ..layer.norm.stats import tracked_norms

        k = self.cfg.recalibrate_batches
        if k == 0 or not tracked_norms(self.model):
            return 0
        ctx = Context(generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + 2))
        order = torch.arange(min(len(self.train_set), k * self.cfg.batch_size))
        used = recalibrate(self.model, (xb.to(self.device) for xb, _ in batches(self.train_set, order,
                                                                                 self.cfg.batch_size)),
                           forward=lambda model, x: self.method.forward(model, x, ctx))
        return used

    def evaluate(self, dataset=None) -> float:
        """Accuracy on ``dataset`` (default: the test split)."""
        return evaluate(self.method, self.model, self.data.test if dataset is None else dataset, self.device,
                        generator=torch.Generator().manual_seed(self.cfg.seed * 7919 + 1),
                        num_workers=self.cfg.num_workers)

    def metrics(self, param_digests=None) -> dict:
        """The run's record: the final test accuracy and, with a validation split, the best epoch chosen on
        it (never on the test set) with that epoch's test accuracy."""
        vals = [(h["val_acc"], h["epoch"]) for h in self.history if h.get("val_acc") is not None]
        best = max(vals, key=lambda v: (v[0], -v[1]), default=None)  # first epoch of the best val accuracy
        best_rec = self.history[best[1] - 1] if best is not None else None
        m = dict(method=self.method.name, method_module=type(self.method).__module__, dataset=self.data.name,
                 T=self.method.T, epochs_done=len(self.history),
                 final_test_acc=self.history[-1]["test_acc"] if self.history else None,
                 final_val_acc=self.history[-1].get("val_acc") if self.history else None,
                 best_epoch=best[1] if best else None, best_val_acc=best[0] if best else None,
                 test_acc_at_best_epoch=best_rec["test_acc"] if best_rec else None,
                 train_samples=len(self.train_set), val_samples=len(self.val_set) if self.val_set is not None else 0,
                 train_time_s=sum(h["train_time_s"] for h in self.history), world_size=self.world,
                 extensions=self.extensions,
                 diverged=self.diverged, history=self.history, train=to_dict(self.cfg), data_meta=self.data.meta,
                 method_config=to_dict(self.method.config), machine=machine_info(self.device))
        if param_digests is not None:
            m["param_sha256_per_rank"] = param_digests
        return m

    def write_metrics(self, param_digests=None) -> dict:
        """Write :meth:`metrics` to ``out/metrics.json`` (atomically) and return them; needs an output folder."""
        m = self.metrics(param_digests)
        atomic_write_json(self.out / "metrics.json", m)
        return m

    def _param_digests(self) -> list[str]:
        """SHA-256 of the parameters and buffers (normalization statistics) on every rank (all equal when
        data-parallel training stayed in sync)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        flat = torch.cat([p.detach().double().reshape(-1).cpu() for p in tensors]) if tensors \
            else torch.zeros(0, dtype=torch.float64)
        digest = hashlib.sha256(flat.numpy().tobytes()).hexdigest()
        if self.world <= 1:
            return [digest]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, digest)
        return gathered

    def close(self) -> None:
        """End data-parallel training: wait for every rank and destroy the process group (nothing single-process)."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


#: fewer validation or training samples than this after the split is warned about
MIN_SPLIT = 10


def split_validation(dataset, fraction: float, seed: int):
    """``(train, val)``: ``fraction`` of ``dataset`` held out for validation, chosen by a generator seeded from
    ``seed`` (``val`` is ``None`` when ``fraction`` is 0)."""
    if fraction <= 0:
        return dataset, None
    n = len(dataset)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise ValueError(f"val_fraction={fraction} leaves no training samples out of {n}")
    if min(n_val, n - n_val) < MIN_SPLIT:
        import warnings

        warnings.warn(f"val_fraction={fraction} of {n} samples leaves {n_val} for validation and {n - n_val} for "
                      f"training: fewer than {MIN_SPLIT} in one of them makes the best epoch a matter of chance "
                      "(or the training a few samples)", stacklevel=2)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 104729))
    val_idx, train_idx = perm[:n_val].sort().values, perm[n_val:].sort().values
    if isinstance(dataset, ArrayDataset):
        return ArrayDataset(dataset.x[train_idx], dataset.y[train_idx]), ArrayDataset(dataset.x[val_idx],
                                                                                        dataset.y[val_idx])
    return torch.utils.data.Subset(dataset, train_idx.tolist()), torch.utils.data.Subset(dataset, val_idx.tolist())


def fit(method: Method, data, cfg: TrainConfig, **kw) -> tuple[torch.nn.Module, dict]:
    """Train ``method`` on ``data`` with ``cfg`` (keyword arguments as :class:`Trainer`); returns
    ``(trained model, metrics)``."""
    tr = Trainer(method, data, cfg, **kw)
    metrics = tr.fit()
    tr.close()
    return tr.model, metrics


@torch.no_grad()
def evaluate(method: Method, model: torch.nn.Module, dataset, device="cpu", batch_size: int = 512,
             generator: Optional[torch.Generator] = None, num_workers: int = 0) -> float:
    """Accuracy of ``model`` (eval mode, ``method.predict``, inputs as the method's bound layout says) on
    ``dataset`` (a dataset that is not in memory is read with ``num_workers`` DataLoader workers)."""
    model.eval()
    correct = 0
    ctx = Context(generator=generator)
    for xb, yb in batches(dataset, torch.arange(len(dataset)), batch_size, num_workers):
        xb, yb = xb.to(device), yb.to(device)
        correct += int((method.predict(model, xb, ctx).argmax(1) == yb).sum())
    _sj.reset_net(model)
    return correct / max(1, len(dataset))
