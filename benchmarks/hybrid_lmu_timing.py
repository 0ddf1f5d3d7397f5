"""Time one forward + backward of the psMNIST LMU and hybrid LMU (keras-lmu's example size: order 256,
theta 784, 212 hidden units) on one batch of 100 sequences of T = 784, in the FFT and the recurrent form.

    python benchmarks/hybrid_lmu_timing.py --out benchmarks/results/hybrid_lmu_timing_cpu.json

Random pixels in [0, 1) (the time does not depend on the data), cross-entropy on random labels,
``torch.set_num_threads(--threads)`` (default 1).  ``time_s`` is the median wall time of ``--reps``
timed minibatches after one warm-up, ``cpu_s`` the median CPU time of this process over the same
minibatch (with one thread it is the compute time, less sensitive to other processes sharing the
CPUs); the 1-minute load average of the machine is recorded beside them.  Writes a JSON file; prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroq import _sj  # noqa: E402
from neuroq.models.lmu import hybrid_lmu_classifier, lmu_classifier  # noqa: E402


def build(kind: str, mode: str, dt: float):
    if kind == "lmu":
        return lmu_classifier(mode=mode)
    if kind == "hybrid":
        return hybrid_lmu_classifier(mode=mode, dt=dt, seed=0)
    if kind == "hybrid-um":
        return hybrid_lmu_classifier(mode=mode, dt=dt, seed=0, spiking_u=True, spiking_m=True)
    raise ValueError(kind)


def one_step(model, x, y):
    c0, t0 = time.process_time(), time.perf_counter()
    _sj.reset_net(model)
    loss = F.cross_entropy(model(x), y)
    t1 = time.perf_counter()
    model.zero_grad(set_to_none=True)
    loss.backward()
    c2, t2 = time.process_time(), time.perf_counter()
    return t1 - t0, t2 - t1, c2 - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--steps", type=int, default=784)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dt", type=float, default=1.0)
    ap.add_argument("--kinds", default="lmu,hybrid,hybrid-um")
    ap.add_argument("--modes", default="fft,recurrent")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.steps, args.batch, 1)
    y = torch.randint(0, 10, (args.batch,))
    rows = []
    for kind in args.kinds.split(","):
        for mode in args.modes.split(","):
            torch.manual_seed(0)
            model = build(kind, mode, args.dt)
            one_step(model, x, y)  # warm-up
            fw, bw, cpu, load = [], [], [], []
            for _ in range(args.reps):
                f, b, c = one_step(model, x, y)
                fw.append(f)
                bw.append(b)
                cpu.append(c)
                load.append(os.getloadavg()[0])
            tot = [f + b for f, b in zip(fw, bw)]
            row = dict(model=kind, form=mode, resolved_form=model.lmu.resolved_mode(),
                       time_s=statistics.median(tot), forward_s=statistics.median(fw),
                       backward_s=statistics.median(bw), cpu_s=statistics.median(cpu), times_s=tot,
                       cpu_times_s=cpu, load_avg_1min=load,
                       params=sum(p.numel() for p in model.parameters()))
            rows.append(row)
            print(json.dumps(row), flush=True)
    res = dict(
        what="one forward+backward of a psMNIST-shaped batch (T x N x 1) through lmu_classifier / "
             "hybrid_lmu_classifier (order 256, theta 784, 212 hidden units, recurrent tanh hidden cell)",
        batch=args.batch, steps=args.steps, threads=args.threads, reps=args.reps, dt=args.dt,
        machine=dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                     torch=torch.__version__, spikingjelly=_sj.VERSION, python=platform.python_version()),
        results=rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2))
        os.replace(tmp, args.out)
    return res


if __name__ == "__main__":
    main()
