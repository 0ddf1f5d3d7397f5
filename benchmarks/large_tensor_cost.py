"""Why the fused CPU kernels cost more per element-step at 64 MB than at 4 MB, measured.

The LIF kernel (hand-written; the generated kernels share its loop shape) at T = 16 and N = 64k (4 MiB
per [T, N] float32 tensor) and N = 1M (64 MiB), 1 and 2 threads, timed three ways side by side:

* ``module``        -- ``LIFNode(backend='cpu')`` as a user calls it: every call allocates its outputs
  (spikes, v_last; in backward the input gradient and the zero spike gradient);
* ``kernel_reused`` -- the same C entry points called directly into output buffers that already exist
  and have been written before (no allocation, no page fault): the kernel's own cost;
* ``alloc_only``    -- ``torch.empty_like(x)`` plus one write of it (``fill_``): what a fresh output costs;
* ``read_write``    -- the memory traffic alone, into buffers that exist: ``y.copy_(x)`` (forward: read X,
  write S) and, for forward+backward, ``torch.add(x, g, out=z)`` after it (backward: read X and dL/dS,
  write dL/dX), the bound of ``kernel_reused`` at each size;

and the minor page faults per call (``getrusage``).  Each configuration runs in a child process
under two memory settings of glibc's ``malloc``:

* ``default``       -- as the process starts: a block above glibc's mmap threshold (at most 32 MiB) is
  a fresh ``mmap`` on every allocation and is returned to the OS when freed, so every 64 MiB output
  is new memory whose pages fault in on first touch; a 4 MiB block comes back from the heap;
* ``heap_reuse``    -- ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<large>`` (glibc's documented
  tunables, environment variables, no code change): every block comes from the heap and a freed
  64 MiB block is reused by the next call, like a 4 MiB one.

The ratio to read: ns per element-step at 64 MiB over 4 MiB (target: within 15 %).

    python benchmarks/large_tensor_cost.py                 # writes benchmarks/results/large_tensor_cost_cpu.json
    python benchmarks/large_tensor_cost.py --table
    python benchmarks/large_tensor_cost.py --render docs/kernels.md
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.malloc_settings import MALLOC  # noqa: E402

K = 2 ** 10
SIZES = [(16, 64 * K), (16, 1024 * K)]
MODES = ("module", "kernel_reused", "alloc_only", "read_write")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure(T: int, N: int, threads: int, repeats: int) -> list[dict]:
    """The rows of one size and thread count, in this process (its malloc settings)."""
    from spikingjelly.activation_based import surrogate

    from neuroq.neuron import LIFNode
    from neuroq.ops import cpu
    from neuroq.ops.abi import NQNeuron, NQSurrogate, fill
    from neuroq.ops.params import neuron_constants, surrogate_constants

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, N, generator=gen) * 1.5 + 0.5
    g = torch.randn(T, N, generator=gen)
    xg = x.clone().requires_grad_(True)
    node = LIFNode(tau=2.0, step_mode="m", backend="cpu")
    lib = cpu.library(torch.float32)
    p = fill(NQNeuron, neuron_constants(node.params, recip_div=True))
    sg = fill(NQSurrogate, surrogate_constants(node.surrogate_function))
    v0 = torch.zeros(N)
    spike, v_last, g_x, g_v0 = torch.empty_like(x), torch.empty(N), torch.empty_like(x), torch.empty(N)
    y, z = torch.empty_like(x), torch.empty_like(x)
    for t in (spike, v_last, g_x, g_v0, y, z):
        t.fill_(0.0)  # written once: its pages exist

    def module_fwd():
        node.reset()
        with torch.no_grad():
            node(x)

    def module_fb():
        node.reset()
        xg.grad = None
        node(xg).backward(g)

    def kernel_fwd():
        lib.nq_cpu_if_forward(ctypes.byref(p), x.data_ptr(), v0.data_ptr(), spike.data_ptr(), None, v_last.data_ptr(),
                              None, None, 0.0, N, T, threads)

    def kernel_fb():
        kernel_fwd()
        lib.nq_cpu_if_backward(ctypes.byref(p), ctypes.byref(sg), x.data_ptr(), v0.data_ptr(), g.data_ptr(), None, None,
                               g_x.data_ptr(), None, N, T, threads)

    def alloc_fwd():  # the outputs of a forward: spikes (plus v_last, negligible)
        torch.empty_like(x).fill_(0.0)

    def alloc_fb():  # forward + backward: spikes, the input gradient, the zero spike gradient
        for _ in range(3):
            torch.empty_like(x).fill_(0.0)

    def rw_fwd():
        y.copy_(x)

    def rw_fb():
        y.copy_(x)
        torch.add(x, g, out=z)

    fns = {("module", "forward"): module_fwd, ("module", "forward_backward"): module_fb,
           ("kernel_reused", "forward"): kernel_fwd, ("kernel_reused", "forward_backward"): kernel_fb,
           ("alloc_only", "forward"): alloc_fwd, ("alloc_only", "forward_backward"): alloc_fb,
           ("read_write", "forward"): rw_fwd, ("read_write", "forward_backward"): rw_fb}
    times = {k: [] for k in fns}
    faults = {k: [] for k in fns}
    for r in range(repeats + 1):  # round 0: warm-up
        for k, fn in fns.items():
            f0, t0 = _faults(), time.perf_counter()
            fn()
            dt, df = time.perf_counter() - t0, _faults() - f0
            if r:
                times[k].append(dt)
                faults[k].append(df)
    out = []
    for (mode, what), ts in times.items():
        med = statistics.median(ts)
        out.append(dict(mode=mode, what=what, T=T, N=N, mib=T * N * 4 / 2 ** 20, threads=threads, ms=med * 1e3,
                        ns_per_element_step=med * 1e9 / (T * N), minor_faults=statistics.median(faults[(mode, what)]),
                        ms_all=[round(t * 1e3, 3) for t in ts]))
    return out


def child(args) -> int:
    rows = []
    for T, N in SIZES:
        for th in args.threads:
            rows += measure(T, N, th, args.repeats)
    print(json.dumps(rows))
    return 0


def _get(rows, setting, mode, what, N, threads):
    for r in rows:
        if (r["setting"], r["mode"], r["what"], r["N"], r["threads"]) == (setting, mode, what, N, threads):
            return r
    return None


def ratios(rows) -> list[dict]:
    """64 MiB over 4 MiB, per setting, mode, forward / forward+backward and thread count."""
    (_, n_small), (_, n_large) = SIZES
    out = []
    for setting in MALLOC:
        for mode in MODES:
            for what in ("forward", "forward_backward"):
                for th in sorted({r["threads"] for r in rows}):
                    a, b = _get(rows, setting, mode, what, n_large, th), _get(rows, setting, mode, what, n_small, th)
                    if a and b:
                        value = a["ns_per_element_step"] / b["ns_per_element_step"]
                        out.append(dict(setting=setting, mode=mode, what=what, threads=th, value=value,
                                        limit=1.15, met=value <= 1.15))
    return out


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [f"Measured on CPU {m.get('processor')} ({m.get('cpu_count')} cores), {m.get('platform')}, torch "
             f"{m.get('torch')}; transparent huge pages `{data.get('thp', '?')}`; median of "
             f"{data['settings']['repeats']} rounds, each configuration in its own process.", "",
             "| malloc | mode | what | MiB | threads | ms | ns / element-step | minor faults / call |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in data["rows"]:
        lines.append(f"| {r['setting']} | {r['mode']} | {r['what']} | {r['mib']:.0f} | {r['threads']} | {r['ms']:.1f} | "
                     f"{r['ns_per_element_step']:.2f} | {r['minor_faults']:.0f} |")
    lines += ["", "| 64 MiB / 4 MiB per element-step | mode | what | threads | value | limit | met |",
              "|---|---|---|---:|---:|---:|---|"]
    for it in data["ratios"]:
        lines.append(f"| {it['setting']} | {it['mode']} | {it['what']} | {it['threads']} | {it['value']:.2f} | "
                     f"{it['limit']} | {'yes' if it['met'] else '**no**'} |")
    return "\n".join(lines)


def render(path: Path) -> bool:
    import re

    text = path.read_text()
    res = ROOT / "benchmarks" / "results" / "large_tensor_cost_cpu.json"
    body = markdown(json.loads(res.read_text())) if res.exists() else \
        f"No `{res.relative_to(ROOT)}` recorded yet (run `python benchmarks/large_tensor_cost.py`)."
    new = re.sub(r"(<!-- begin:large_tensor_cost_cpu -->\n)(?:.*?\n)?(<!-- end:large_tensor_cost_cpu -->)",
                 lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=None)
    ap.add_argument("--table", nargs="?", const="", default=None)
    ap.add_argument("--render", default=None)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    default_out = ROOT / "benchmarks" / "results" / "large_tensor_cost_cpu.json"
    if args.child:
        return child(args)
    if args.render:
        print(f"{args.render}: {'updated' if render(Path(args.render)) else 'unchanged'}")
        return 0
    if args.table is not None:
        print(markdown(json.loads(Path(args.table or default_out).read_text())))
        return 0
    from neuroq.io import machine_info

    rows = []
    t0 = time.perf_counter()
    for setting, env in MALLOC.items():
        cmd = [sys.executable, __file__, "--child", "--repeats", str(args.repeats), "--threads", *map(str, args.threads)]
        res = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rows += [dict(r, setting=setting) for r in json.loads(res.stdout.strip().splitlines()[-1])]
        print(f"  {setting} done", file=sys.stderr, flush=True)
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        thp = "unknown"
    data = dict(benchmark="large_tensor_cost", machine=machine_info(torch.device("cpu")), thp=thp,
                settings=dict(sizes=SIZES, threads=args.threads, repeats=args.repeats, malloc=MALLOC),
                wall_s=time.perf_counter() - t0, rows=rows, ratios=ratios(rows))
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
