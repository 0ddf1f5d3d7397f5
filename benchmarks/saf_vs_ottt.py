"""Time per minibatch and peak memory of SAF-E, SAF-F, OTTT_O, OTTT_A (neuroq's and SpikingJelly 2.0.0's)
and plain BPTT on OTTT's VGG-11-WS setup (Saiin et al., TMLR 2024, arXiv 2310.02772; Xiao et al. 2022).

    python benchmarks/saf_vs_ottt.py                     # GPU setup if CUDA is available, else the CPU one
    python benchmarks/saf_vs_ottt.py --config gpu --device cuda
    python benchmarks/saf_vs_ottt.py --config cpu --out benchmarks/results/saf_vs_ottt_cpu.json

* ``gpu`` config: the paper's setup — cfg [64,128,A,256,256,A,512,512,A,512,512], ScaledWSConv2d + LIF
  (tau=2, soft reset, sigmoid surrogate alpha=4) + Scale(2.74), light classifier, T=6, batch 128,
  3x32x32 random input (time and memory do not depend on the data).
* ``saf-f-step`` is SAF-F with its graph-free steps run one at a time (``chunk=1``) instead of all
  T-1 at once: less transient memory, more op calls.
* neuroq's methods are the library's own (``neuroq.training.get('saf-e', T=...)``: the model from
  ``method.from_lif`` and the minibatch from ``method.train_step``); neuroq's OTTT uses the input trace
  in the first layer (``input_trace=True``, what makes SAF-E's Theorem 1 exact).
* ``cpu`` config: the same network with every width divided by ``--width-div`` (default 8), batch 32.

Memory: every method runs in its own subprocess (so the peak is its own).  Time: ``time_s`` is the
median wall time of ``--reps`` minibatches after ``--warmup``, all methods in one process and
interleaved round by round (a changing machine load then hits all alike).  Memory is ``torch.cuda.max_memory_allocated`` on
GPU; on CPU the peak bytes of tensor storages alive at once during a minibatch (counted with a
``TorchDispatchMode`` and storage finalizers: values, states, saved tensors, gradients, temporaries)
and, separately, the peak held by autograd for backward (``saved_tensors_hooks``).
``sj-ottt-*`` use SpikingJelly 2.0.0's ``OTTTLIFNode``/``OTTTSequential`` (its ``ottt_spiking_vggws``
builder for the full-width config); they are skipped on SpikingJelly 0.0.0.0.14.
Synaptic-op calls per time step are counted with forward hooks.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import weakref
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuroq import _sj  # noqa: E402
from neuroq.convert import sj_ottt_from_lif  # noqa: E402
from neuroq.data import encode  # noqa: E402
from neuroq.io import machine_info  # noqa: E402
from neuroq.layer import SAFConv2d, SAFLinear  # noqa: E402
from neuroq.models import OTTT_VGG11, lif_vgg_bn, lif_vgg_ws  # noqa: E402
from neuroq.training import Context, get, train_step  # noqa: E402
from neuroq.training.methods import online as O  # noqa: E402

METHODS = ("saf-e", "saf-f", "saf-f-step", "ottt-o", "ottt-a", "sj-ottt-o", "sj-ottt-a", "bptt", "sj-bptt")

# numbers this script does NOT measure, kept beside the measurements for comparison
REFERENCE = {
    "paper_cifar10_gpu": {
        "source": "Saiin et al., arXiv 2310.02772 (TMLR 2024; later revision, via a secondary review), CIFAR-10, T=6",
        "saf-e": {"time_s": 0.468, "memory_gb": 1.184}, "ottt-o": {"time_s": 0.666, "memory_gb": 1.656},
        "saf-f": {"time_s": 0.247, "memory_gb": 1.157}, "ottt-a": {"time_s": 0.661, "memory_gb": 1.656},
    },
    "issue_h100_random_data": {
        "source": "measured beforehand on an H100 and stated in the issue (same setup, random data)",
        "sj-ottt-o": {"time_s": 0.214, "memory_gib": 4.01}, "sj-ottt-a": {"time_s": 0.189, "memory_gib": 4.43},
        "bptt": {"time_s": 0.032, "memory_gib": 5.42},
    },
    "targets": {"saf-e_time_vs_sj-ottt-o": 0.5, "saf-e_memory_vs_sj-ottt-o": 0.7,
                "saf-f_time_vs_bptt": 1.0, "saf-f_memory_vs_bptt": 0.35},
}


class SavedTensorPeak:
    """Peak bytes of tensors held by autograd for backward (live saved tensors, storages deduplicated)."""

    def __init__(self):
        self.live = {}
        self.cur = 0
        self.peak = 0

    def _pack(self, t):
        key = (t.untyped_storage().data_ptr(), t.device)
        n = t.untyped_storage().nbytes()
        cnt = self.live.get(key, (0, n))[0]
        if cnt == 0:
            self.cur += n
            self.peak = max(self.peak, self.cur)
        self.live[key] = (cnt + 1, n)
        return _Held(self, key, t)

    @staticmethod
    def _unpack(h):
        return h.t

    def release(self, key):
        cnt, n = self.live[key]
        if cnt == 1:
            del self.live[key]
            self.cur -= n
        else:
            self.live[key] = (cnt - 1, n)

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)


class _Held:
    __slots__ = ("owner", "key", "t")

    def __init__(self, owner, key, t):
        self.owner, self.key, self.t = owner, key, t

    def __del__(self):
        self.owner.release(self.key)


class LiveTensorPeak(torch.utils._python_dispatch.TorchDispatchMode):
    """Peak bytes of all tensor storages created inside the mode and alive at the same time (forward
    values, states, saved tensors, gradients, temporaries): a device-independent memory measure.
    Storages are tracked with finalizers (PyTorch keeps one Python object per storage)."""

    def __init__(self):
        super().__init__()
        self.cur = 0
        self.peak = 0
        self._seen = set()

    def _track(self, t):
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            return
        st = t.untyped_storage()
        key = id(st)
        if key in self._seen:
            return
        n = st.nbytes()
        self._seen.add(key)
        self.cur += n
        self.peak = max(self.peak, self.cur)
        weakref.finalize(st, self._free, key, n)

    def _free(self, key, n):
        self._seen.discard(key)
        self.cur -= n

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else (out,)):
            self._track(t)
        return out


def cfg_for(config: str, width_div: int):
    if config == "gpu":
        return OTTT_VGG11
    return tuple(v if v == "A" else max(1, int(v) // width_div) for v in OTTT_VGG11)


#: neuroq's methods measured here, as ``neuroq.training.get(name, **options)``
NEUROQ_METHODS = {"saf-e": ("saf-e", {}), "saf-f": ("saf-f", dict(chunk=None)), "saf-f-step": ("saf-f", dict(chunk=1)),
                  "ottt-o": ("ottt-o", {}), "ottt-a": ("ottt-a", {})}


def build(method: str, cfg, full_width: bool, T: int, num_classes=10):
    sg = _sj.default_surrogate()
    if method == "bptt":
        return lif_vgg_bn(cfg, 3, num_classes, 2.0, sg)
    if method == "sj-bptt":  # the same network with SpikingJelly's own LIF neuron (its default backend)
        sjn = _sj.sj_neuron_module()
        return lif_vgg_bn(cfg, 3, num_classes, 2.0, sg, neuron=lambda: sjn.LIFNode(
            tau=2.0, decay_input=False, v_reset=None, detach_reset=True, surrogate_function=sg, step_mode="m"))
    lif = lif_vgg_ws(cfg, 3, num_classes, 2.0, sg)
    if method in NEUROQ_METHODS:
        name, opts = NEUROQ_METHODS[method]
        return get(name, T=T, **opts).from_lif(lif)
    sj = _sj.ottt_modules()
    if sj is None:
        raise RuntimeError("SpikingJelly 2.0.0's OTTT modules are not installed")
    if full_width:
        return sj["ottt_spiking_vggws"](spiking_neuron=sj["OTTTLIFNode"], num_classes=num_classes, tau=2.0,
                                        surrogate_function=sg)
    return sj_ottt_from_lif(lif)


def bptt_train_step(model: torch.nn.Module, x_seq, y, optimizer, loss_fn=O.ottt_loss):
    """Plain BPTT minibatch on a multi-step network with the online methods' per-step loss averaged over the
    steps: the baseline row of this benchmark."""
    _sj.reset_net(model)
    optimizer.zero_grad(set_to_none=True)
    out = model(x_seq)
    loss = sum(loss_fn(o, y) for o in out.unbind(0)) / out.shape[0]
    loss.backward()
    optimizer.step()
    return float(loss.detach()), out.detach()


def step_fn(method: str, T: int):
    """``fn(model, images, labels, optimizer)``: one minibatch (direct encoding over ``T`` steps) -- the
    library method's own train step for neuroq's methods, the online step for SpikingJelly's OTTT."""
    if method in NEUROQ_METHODS:
        name, opts = NEUROQ_METHODS[method]
        m, ctx = get(name, T=T, **opts), Context()
        return lambda model, x, y, opt: train_step(m, model, x, y, opt, ctx)
    if method in ("sj-ottt-o", "sj-ottt-a"):
        online = method == "sj-ottt-o"
        return lambda model, x, y, opt: O.ottt_train_step(model, encode(x, T), y, opt, O.ottt_loss, online=online)
    return lambda model, x, y, opt: bptt_train_step(model, encode(x, T), y, opt, O.ottt_loss)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def count_synaptic_calls(model, method, x, y, T):
    """Synaptic-op (conv / linear) calls per time step, with forward hooks, on one minibatch."""
    calls = {"n": 0}
    syn = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, SAFLinear, SAFConv2d))]
    hs = [m.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1)) for m in syn]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    step_fn(method, T)(model, x, y, opt)
    if method in ("saf-f", "saf-f-step"):  # graph-free multi-step calls, then step T
        per_step = None
    else:
        per_step = calls["n"] / (1 if method in ("bptt", "sj-bptt") else T)
    for h in hs:
        h.remove()
    return dict(synapse_layers=len(syn), calls_per_minibatch=calls["n"], calls_per_step=per_step)


def _setup(method, args, dev):
    torch.manual_seed(0)
    cfg = cfg_for(args.config, args.width_div)
    model = build(method, cfg, args.config == "gpu", args.T).to(dev)
    model.train()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=g).to(dev)  # direct-encoded over T steps
    y = torch.randint(0, 10, (args.batch,), generator=g).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, x, y, opt


def memory_one(args) -> dict:
    """Peak memory of one method (run in its own process): one warm-up minibatch, one measured."""
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model, x, y, opt = _setup(args.method, args, dev)
    fn = step_fn(args.method, args.T)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rss0 = _rss_bytes()
    fn(model, x, y, opt)  # warm-up: optimizer state, allocator
    sync()
    res = dict(method=args.method, params=sum(p.numel() for p in model.parameters()))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    fn(model, x, y, opt)
    sync()
    if dev.type == "cuda":
        res["gpu_peak_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        res["gpu_peak_above_model_gib"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**30
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res["rss_peak_growth_mib"] = max(0, maxrss - rss0) / 2**20
    res["rss_peak_mib"] = maxrss / 2**20
    saved = SavedTensorPeak()
    with saved.hooks():
        fn(model, x, y, opt)
    res["autograd_saved_peak_mib"] = saved.peak / 2**20
    live = LiveTensorPeak()
    with live:
        fn(model, x, y, opt)
    res["live_tensor_peak_mib"] = live.peak / 2**20
    _sj.reset_net(model)
    res["synaptic_ops"] = count_synaptic_calls(model, args.method, x, y, args.T)
    return res


def time_all(methods, args) -> dict:
    """Median time per minibatch of every method, measured in interleaved rounds (one minibatch of each
    method per round) so that a changing machine load affects all methods alike."""
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    setups = {m: _setup(m, args, dev) for m in methods}
    fns = {m: step_fn(m, args.T) for m in methods}
    for _ in range(args.warmup):
        for m in methods:
            fns[m](*setups[m])
    sync()
    times = {m: [] for m in methods}
    for _ in range(args.reps):
        for m in methods:
            t0 = time.perf_counter()
            fns[m](*setups[m])
            sync()
            times[m].append(time.perf_counter() - t0)
    return {m: dict(time_s=statistics.median(v), times_s=v) for m, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="auto", choices=("auto", "gpu", "cpu"))
    p.add_argument("--device", default=None, help="default: cuda for the gpu config, cpu otherwise")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("-T", type=int, default=6)
    p.add_argument("--batch", type=int, default=None, help="default 128 (gpu) / 32 (cpu)")
    p.add_argument("--size", type=int, default=32, help="input height = width")
    p.add_argument("--width-div", type=int, default=8, help="cpu config: divide every width by this")
    p.add_argument("--reps", type=int, default=None, help="timed minibatches (default 20 gpu / 5 cpu)")
    p.add_argument("--warmup", type=int, default=None, help="untimed minibatches (default 5 gpu / 1 cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--saf-f-memory-T", type=int, nargs="*", default=[6, 64],
                   help="also measure SAF-F's memory (default chunk) at these T (flat-in-T target; none to skip)")
    p.add_argument("--out", default=None)
    p.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method, print JSON
    args = p.parse_args(argv)
    if args.config == "auto":
        args.config = "gpu" if torch.cuda.is_available() else "cpu"
    gpu = args.config == "gpu"
    args.device = args.device or ("cuda" if gpu else "cpu")
    args.batch = args.batch or (128 if gpu else 32)
    args.reps = args.reps or (20 if gpu else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
    if args.method:
        print("RESULT " + json.dumps(memory_one(args)))
        return 0

    results = {}
    runnable = []
    for m in args.methods:
        if m.startswith("sj-") and _sj.ottt_modules() is None:
            results[m] = dict(method=m, skipped=f"SpikingJelly {_sj.VERSION} has no OTTT modules")
            continue
        cmd = [sys.executable, __file__, "--method", m, "--config", args.config, "--device", args.device,
               "-T", str(args.T), "--batch", str(args.batch), "--size", str(args.size), "--width-div",
               str(args.width_div), "--threads", str(args.threads)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            results[m] = dict(method=m, error=(proc.stderr or proc.stdout)[-2000:])
        else:
            results[m] = json.loads(line[-1][7:])
            runnable.append(m)
        print(f"memory {m:10s} {json.dumps(results[m])[:300]}  ({time.time() - t0:.0f}s)", flush=True)
    sweep = {}
    for T in (args.saf_f_memory_T or []):
        # SAF-F as `neuroq train --method saf-f` runs it (chunk=1, its default): the flat-in-T claim
        cmd = [sys.executable, __file__, "--method", "saf-f-step", "--config", args.config, "--device", args.device,
               "-T", str(T), "--batch", str(args.batch), "--size", str(args.size), "--width-div", str(args.width_div),
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        sweep[str(T)] = json.loads(line[-1][7:]) if line else dict(error=(proc.stderr or proc.stdout)[-2000:])
        print(f"memory saf-f (chunk=1) T={T}: {json.dumps(sweep[str(T)])[:200]}", flush=True)
    t0 = time.time()
    for m, r in time_all(runnable, args).items():
        results[m].update(r)
        print(f"time   {m:10s} {r['time_s']:.4f} s/minibatch", flush=True)
    print(f"timing took {time.time() - t0:.0f}s", flush=True)

    def ratio(a, b, key):
        ra, rb = results.get(a, {}), results.get(b, {})
        if key in ra and key in rb and rb[key]:
            return ra[key] / rb[key]
        return None

    on_gpu = torch.device(args.device).type == "cuda"
    mem_key = "gpu_peak_gib" if on_gpu else "live_tensor_peak_mib"
    ratios = {}
    for a, b in (("saf-e", "ottt-o"), ("saf-e", "sj-ottt-o"), ("saf-f", "ottt-a"), ("saf-f", "sj-ottt-a"),
                 ("saf-f", "bptt"), ("saf-f-step", "bptt"), ("saf-f-step", "sj-ottt-a"), ("ottt-o", "sj-ottt-o"),
                 ("bptt", "sj-bptt")):
        ratios[f"{a}/{b}"] = dict(time=ratio(a, b, "time_s"), memory=ratio(a, b, mem_key))
    targets = REFERENCE["targets"]
    met = {}
    r = ratios["saf-e/sj-ottt-o"]
    if r["time"] is not None and r["memory"] is not None:
        met["saf-e_time<=0.5x_sj-ottt-o"] = r["time"] <= targets["saf-e_time_vs_sj-ottt-o"]
        met["saf-e_memory<=0.7x_sj-ottt-o"] = r["memory"] <= targets["saf-e_memory_vs_sj-ottt-o"]
    r = ratios["saf-f/bptt"]
    if r["time"] is not None and r["memory"] is not None:
        met["saf-f_time<=bptt"] = r["time"] <= targets["saf-f_time_vs_bptt"]
        met["saf-f_memory<=0.35x_bptt"] = r["memory"] <= targets["saf-f_memory_vs_bptt"]
    # the CPU targets of issue 16 (time and memory side by side in this run)
    cpu_met = {}
    r = ratios["bptt/sj-bptt"]
    if r["time"] is not None:
        cpu_met["bptt_time<=0.8x_sj-bptt"] = dict(value=r["time"], limit=0.8, met=r["time"] <= 0.8)
    r = ratios["saf-e/sj-ottt-o"]
    if r["time"] is not None and r["memory"] is not None:
        cpu_met["saf-e_time<=0.5x_sj-ottt-o"] = dict(value=r["time"], limit=0.5, met=r["time"] <= 0.5)
        cpu_met["saf-e_memory<=0.7x_sj-ottt-o"] = dict(value=r["memory"], limit=0.7, met=r["memory"] <= 0.7)
    mems = [v.get(mem_key) for v in sweep.values()]
    if len(mems) >= 2 and all(m is not None for m in mems):
        growth = max(mems) / min(mems) - 1
        cpu_met["saf-f_memory_within_10%_over_T"] = dict(value=growth, limit=0.10, met=growth <= 0.10,
                                                         T=list(sweep), memory=mems)
    load = os.getloadavg()
    out = dict(benchmark="saf_vs_ottt", config=args.config, device=args.device, T=args.T, batch=args.batch,
               input=[3, args.size, args.size], cfg=list(cfg_for(args.config, args.width_div)),
               width_div=None if gpu else args.width_div, reps=args.reps, warmup=args.warmup, threads=args.threads,
               memory_measure=("torch.cuda.max_memory_allocated" if on_gpu else
                               "live_tensor_peak_mib: peak bytes of tensor storages alive at once during one "
                               "minibatch (TorchDispatchMode + finalizers); autograd_saved_peak_mib: peak of "
                               "tensors saved for backward; rss_* from getrusage (allocator-dependent)"),
               results=results, saf_f_memory_by_T=sweep, ratios=ratios,
               targets_met=met if (gpu and on_gpu) else None, cpu_targets=cpu_met,
               targets_note=None if (gpu and on_gpu) else
               "the issue's targets are GPU targets (full-size setup on a GPU); this run does not decide them",
               reference=REFERENCE, load_average=load, machine=machine_info(args.device))
    path = Path(args.out or ROOT / "benchmarks" / "results" / f"saf_vs_ottt_{args.config}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
