"""Multi-step LIF speed: neuroq's fused kernels against its torch reference, SpikingJelly and the
memory bound, measured side by side in one run.

Rows (forward and forward+backward time per (impl, T, N, threads)):

* ``neuroq_cpu``     -- ``neuroq.neuron.LIFNode(backend='cpu')`` (fused C++/OpenMP kernels; CPU)
* ``neuroq_cupy``    -- ``neuroq.neuron.LIFNode(backend='cupy')`` (fused CUDA kernels; GPU + CuPy)
* ``neuroq_torch``   -- ``neuroq.neuron.LIFNode(backend='torch')`` (the reference)
* ``sj2_eager``      -- SpikingJelly 2.0.0's ``LIFNode(step_mode='m')`` as it comes
* ``sj2_compiled``   -- the same module through ``torch.compile`` (compile time excluded, reported)
* ``sj14_torch``     -- SpikingJelly 0.0.0.0.14's ``LIFNode(step_mode='m', backend='torch')``, in a
  persistent child process with ``.sj14`` first on ``PYTHONPATH`` (both versions cannot share one
  process), driven round by round like the others
* ``read_write``     -- the memory bound: one read + one write of the T*N values into a buffer that
  already exists (``y.copy_(x)``)
* ``read_write_alloc`` -- the same into a fresh tensor (``x.clone()``: what any op returning a new
  [T, N] tensor pays for the allocation, page faults included when the allocator returns fresh memory)

Memory: by default the run re-executes itself with glibc's ``malloc`` keeping freed blocks in the heap
(``--malloc heap_reuse``, ``benchmarks/malloc_settings.py``), so that the rows time the kernels and not
the page faults of fresh 64 MiB outputs, which land at random in one row or another on a VM;
``benchmarks/large_tensor_cost.py`` measures that share, and ``--malloc default`` runs as the process
starts.

LIF: tau=2, decay_input, hard reset to 0, Sigmoid(alpha=4) surrogate, float32.  Forward is timed
under ``torch.no_grad()``; forward+backward with ``x.requires_grad`` and ``spikes.backward(g)``.
Timing: wall clock (``perf_counter``; CUDA events on GPU) and process CPU time, the median of
``--repeats`` rounds; each round runs every row once, in turn, so a changing machine load hits all
rows alike.  Peak memory (GPU only): ``torch.cuda.max_memory_allocated`` above the inputs.

Targets (issue 16, CPU, T x N in {16 x 1M, 64 x 256k}, 1 and 2 threads): ``neuroq_cpu``
forward+backward <= 0.1x ``sj2_eager`` and <= 0.5x ``sj2_compiled``; forward <= 2x and
forward+backward <= 4x ``read_write``; time per step flat in T: T=64 within 15 % of T=16 per step
(N = 64k, the issue's case) for ``neuroq_cpu`` and ``neuroq_torch``.  On a GPU the issue-5 targets (T=16, N=4M).

    python benchmarks/neuron_kernels.py                       # sizes for the device found
    python benchmarks/neuron_kernels.py --table               # markdown table of the recorded JSON
    python benchmarks/neuron_kernels.py --table some.json
    python benchmarks/neuron_kernels.py --render docs/kernels.md # refresh the generated blocks of a page
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.malloc_settings import MALLOC, run_under  # noqa: E402

M, K = 2 ** 20, 2 ** 10
CPU_SIZES = [(16, M), (64, 256 * K), (16, 64 * K), (64, 64 * K)]
GPU_SIZES = [(4, 4 * M), (16, 4 * M), (64, M)]
CPU_IMPLS = ("neuroq_cpu", "neuroq_torch", "sj2_eager", "sj2_compiled", "sj14_torch", "read_write",
             "read_write_alloc")
GPU_IMPLS = ("neuroq_cupy", "neuroq_torch", "sj2_eager", "sj2_compiled", "sj14_torch", "read_write",
             "read_write_alloc")
TARGET_SIZES = [(16, M), (64, 256 * K)]
#: per-step flatness (the issue's N = 64k: 1.9 ms/step at T=16 -> 4.7 at T=64 before); only the
#: neuroq rows run at these sizes
FLAT = ((16, 64 * K), (64, 64 * K))
FLAT_IMPLS = ("neuroq_cpu", "neuroq_torch")


class Unavailable(Exception):
    """An implementation that cannot run here (the reason goes into the JSON)."""


def _sj_lif(device, compiled: bool):
    from spikingjelly.activation_based import neuron, surrogate

    from neuroq import _sj

    kw = dict(tau=2.0, step_mode="m", surrogate_function=surrogate.Sigmoid(alpha=4.0))
    if not _sj.IS_SJ2:
        kw["backend"] = "torch"
    m = neuron.LIFNode(**kw).to(device)
    return torch.compile(m) if compiled else m, m


class Row:
    """One implementation at one size: ``fwd()`` and ``fb()`` closures on fixed inputs."""

    def __init__(self, impl: str, T: int, N: int, device: torch.device):
        self.impl, self.T, self.N, self.device = impl, T, N, device
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.x = (torch.randn(T, N, generator=gen) * 1.5 + 0.5).to(device)
        self.g = torch.randn(T, N, generator=gen).to(device)
        self.xg = self.x.clone().requires_grad_(True)
        self.compile_s = None
        from neuroq import _sj

        if impl == "read_write":
            y = torch.empty_like(self.x)
            self.fwd = lambda: y.copy_(self.x)
            self.fb = None
            return
        if impl == "read_write_alloc":
            self.fwd = lambda: self.x.clone()
            self.fb = None
            return
        if impl in ("neuroq_cpu", "neuroq_cupy", "neuroq_torch"):
            from neuroq.neuron import LIFNode
            from neuroq.ops import dispatch

            be = impl.split("_")[1]
            if be == "cupy" and (device.type != "cuda" or not dispatch.cupy_status()[0]):
                raise Unavailable("needs a CUDA GPU and CuPy" if device.type != "cuda" else dispatch.cupy_status()[1])
            if be == "cpu":
                if device.type != "cpu":
                    raise Unavailable("CPU kernels need CPU tensors")
                ok, why = dispatch.cpu_status()
                if not ok:
                    raise Unavailable(why)
            self.module = m = LIFNode(tau=2.0, step_mode="m", backend=be).to(device)
            self.call = m
        elif impl in ("sj2_eager", "sj2_compiled", "sj14_torch"):
            want_sj2 = impl != "sj14_torch"
            if want_sj2 != _sj.IS_SJ2:
                raise Unavailable(f"SpikingJelly {_sj.VERSION} is installed in this process")
            self.call, self.module = _sj_lif(device, impl == "sj2_compiled")
        else:
            raise ValueError(impl)
        m = self.module

        def fwd():
            m.reset()
            with torch.no_grad():
                self.call(self.x)

        def fb():
            m.reset()
            self.xg.grad = None
            self.call(self.xg).backward(self.g)

        self.fwd, self.fb = fwd, fb
        if impl == "sj2_compiled":  # compile both graphs now, outside the timed runs
            t0 = time.perf_counter()
            fwd()
            fb()
            self.compile_s = time.perf_counter() - t0

    def time(self, mode: str) -> tuple[float, float]:
        """(wall ms, process CPU ms) of one call."""
        fn = self.fwd if mode == "fwd" else self.fb
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            c0 = time.process_time()
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return start.elapsed_time(end), (time.process_time() - c0) * 1e3
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3

    def peak_mib(self, mode: str):
        if self.device.type != "cuda":
            return None
        fn = self.fwd if mode == "fwd" else self.fb
        torch.cuda.synchronize(self.device)
        base = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        fn()
        torch.cuda.synchronize(self.device)
        return (torch.cuda.max_memory_allocated(self.device) - base) / 2 ** 20


# ---- SpikingJelly 0.0.0.0.14 in a persistent child process -----------------------------------
class RemoteRow:
    """A :class:`Row` living in a child process (``--serve``), timed on request."""

    def __init__(self, proc, impl, T, N, device):
        self.proc, self.impl, self.T, self.N = proc, impl, T, N
        self.compile_s = None
        reply = self._ask(dict(op="setup", impl=impl, T=T, N=N, device=str(device)))
        if "unavailable" in reply:
            raise Unavailable(reply["unavailable"])
        self.has_fb = reply["has_fb"]
        self.fb = True if self.has_fb else None

    def _ask(self, msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise Unavailable(f"worker died: {self.proc.stderr.read()[-500:]}")
        return json.loads(line)

    def time(self, mode):
        r = self._ask(dict(op="time", impl=self.impl, T=self.T, N=self.N, mode=mode))
        return r["wall_ms"], r["cpu_ms"]

    def peak_mib(self, mode):
        return self._ask(dict(op="peak", impl=self.impl, T=self.T, N=self.N, mode=mode))["mib"]


def start_sj14(path: Path, threads: int):
    if not (path / "spikingjelly").is_dir():
        raise Unavailable(f"SpikingJelly 0.0.0.0.14 not found in {path} (make test-sj14 installs it)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path.resolve()), str(ROOT)]))
    return subprocess.Popen([sys.executable, __file__, "--serve", "--threads", str(threads)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def serve(threads: int) -> int:
    torch.set_num_threads(threads)
    rows = {}
    for line in sys.stdin:
        msg = json.loads(line)
        key = (msg["impl"], msg["T"], msg["N"])
        if msg["op"] == "setup":
            try:
                rows[key] = Row(msg["impl"], msg["T"], msg["N"], torch.device(msg["device"]))
                reply = dict(has_fb=rows[key].fb is not None)
            except Unavailable as e:
                reply = dict(unavailable=str(e))
        elif msg["op"] == "time":
            w, c = rows[key].time(msg["mode"])
            reply = dict(wall_ms=w, cpu_ms=c)
        else:
            reply = dict(mib=rows[key].peak_mib(msg["mode"]))
        print(json.dumps(reply), flush=True)
    return 0


# ---- the run -------------------------------------------------------------------------------
def run(impls, sizes, threads_list, device, repeats, warmup, sj14_path) -> list[dict]:
    out = []
    for threads in threads_list:
        if device.type == "cpu":
            torch.set_num_threads(threads)
        proc = None
        rows, dead = [], []
        for T, N in sizes:
            for impl in impls:
                if (T, N) in FLAT and (T, N) not in TARGET_SIZES and impl not in FLAT_IMPLS and device.type == "cpu":
                    continue  # the flatness sizes are about neuroq's own rows
                try:
                    if impl == "sj14_torch":
                        if proc is None:
                            proc = start_sj14(sj14_path, threads)
                        rows.append(RemoteRow(proc, impl, T, N, device))
                    else:
                        rows.append(Row(impl, T, N, device))
                except Unavailable as e:
                    dead.append(dict(impl=impl, T=T, N=N, threads=threads, unavailable=str(e)))
                print(f"  set up {impl} {T}x{N} ({threads} thread(s))", file=sys.stderr, flush=True)
        modes = {id(r): ["fwd"] + (["fb"] if r.fb is not None else []) for r in rows}
        times = {(id(r), m): [] for r in rows for m in modes[id(r)]}
        for _ in range(warmup):
            for r in rows:
                for m in modes[id(r)]:
                    r.time(m)
        for k in range(repeats):  # interleaved: every row once per round
            for r in rows:
                for m in modes[id(r)]:
                    times[(id(r), m)].append(r.time(m))
            print(f"  round {k + 1}/{repeats} done ({threads} thread(s))", file=sys.stderr, flush=True)
        for r in rows:
            rec = dict(impl=r.impl, T=r.T, N=r.N, dtype="float32", threads=threads)
            for m, key in (("fwd", "forward"), ("fb", "forward_backward")):
                if m in modes[id(r)]:
                    ts = times[(id(r), m)]
                    rec[f"{key}_ms"] = statistics.median(t[0] for t in ts)
                    rec[f"{key}_cpu_ms"] = statistics.median(t[1] for t in ts)
                    rec[f"{key}_ms_all"] = [round(t[0], 3) for t in ts]
                    rec[f"{key}_peak_mib"] = r.peak_mib(m)
                else:
                    rec[f"{key}_ms"] = rec[f"{key}_cpu_ms"] = rec[f"{key}_peak_mib"] = None
            if r.compile_s is not None:
                rec["compile_s"] = r.compile_s
            out.append(rec)
        out += dead
        del rows
        if proc is not None:
            proc.stdin.close()
            proc.wait(timeout=60)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def _get(rows, impl, T, N, threads, key):
    for r in rows:
        if r["impl"] == impl and r.get("T") == T and r.get("N") == N and r.get("threads") == threads:
            return r.get(key)
    return None


def evaluate_targets(rows: list[dict], on_gpu: bool, threads_list) -> dict:
    out = dict(evaluated=True, device="cuda" if on_gpu else "cpu", items=[])

    def target(name, value, limit, le=True, **where):
        met = None if value is None else bool(value <= limit if le else value >= limit)
        out["items"].append(dict(target=name, value=value, limit=limit, met=met, **where))

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    if on_gpu:  # issue 5 (T=16, N=4M)
        T, N, th = 16, 4 * M, threads_list[0]
        f, fb = _get(rows, "neuroq_cupy", T, N, th, "forward_ms"), _get(rows, "neuroq_cupy", T, N, th, "forward_backward_ms")
        target("fwd_bwd / sj2_eager fwd_bwd", ratio(fb, _get(rows, "sj2_eager", T, N, th, "forward_backward_ms")), 0.75, T=T, N=N)
        target("fwd / read_write", ratio(f, _get(rows, "read_write", T, N, th, "forward_ms")), 1.2, T=T, N=N)
        target("sj14_torch fwd_bwd / fwd_bwd", ratio(_get(rows, "sj14_torch", T, N, th, "forward_backward_ms"), fb), 10.0,
               le=False, T=T, N=N)
        return out
    for th in threads_list:
        for T, N in TARGET_SIZES:
            f = _get(rows, "neuroq_cpu", T, N, th, "forward_ms")
            fb = _get(rows, "neuroq_cpu", T, N, th, "forward_backward_ms")
            rw = _get(rows, "read_write", T, N, th, "forward_ms")
            target("fwd_bwd / sj2_eager fwd_bwd", ratio(fb, _get(rows, "sj2_eager", T, N, th, "forward_backward_ms")), 0.1,
                   T=T, N=N, threads=th)
            target("fwd_bwd / sj2_compiled fwd_bwd",
                   ratio(fb, _get(rows, "sj2_compiled", T, N, th, "forward_backward_ms")), 0.5, T=T, N=N, threads=th)
            target("fwd / read_write", ratio(f, rw), 2.0, T=T, N=N, threads=th)
            target("fwd_bwd / read_write", ratio(fb, rw), 4.0, T=T, N=N, threads=th)
        (T0, N0), (T1, N1) = FLAT
        for impl in ("neuroq_cpu", "neuroq_torch"):
            a = _get(rows, impl, T0, N0, th, "forward_backward_ms")
            b = _get(rows, impl, T1, N1, th, "forward_backward_ms")
            target(f"{impl} fwd_bwd per step T={T1} / T={T0}", None if None in (a, b) else (b / T1) / (a / T0), 1.15,
                   T=f"{T0},{T1}", N=N0, threads=th)
    return out


def markdown_table(data: dict) -> str:
    """Markdown tables of a result file: times, ratios to neuroq's kernel, targets."""
    m = data["machine"]
    where = m.get("gpu") or f"CPU {m.get('processor')} ({m.get('cpu_count')} cores)"
    lines = [f"Measured on {where}, {m.get('platform')}, torch {m.get('torch')}, SpikingJelly "
             f"{m.get('spikingjelly')}" + (f", CuPy {m['cupy']}" if "cupy" in m else "")
             + f"; median of {data['settings']['repeats']} interleaved rounds (wall clock)"
             + (f", glibc malloc `{data['settings']['malloc']['setting']}`" if "malloc" in data["settings"] else "")
             + ".", ""]
    if data.get("note"):
        lines += [data["note"], ""]
    lines += ["| impl | T | N | threads | forward ms | fwd+bwd ms | fwd+bwd peak MiB |",
              "|---|---:|---:|---:|---:|---:|---:|"]

    def f(v, nd=1):
        return "–" if v is None else f"{v:.{nd}f}"

    for r in data["rows"]:
        if "unavailable" in r:
            continue
        extra = f" (compile {r['compile_s']:.0f} s)" if r.get("compile_s") else ""
        lines.append(f"| {r['impl']}{extra} | {r['T']} | {r['N']} | {r['threads']} | {f(r['forward_ms'])} | "
                     f"{f(r['forward_backward_ms'])} | {f(r.get('forward_backward_peak_mib'))} |")
    skipped = sorted({(r["impl"], r["unavailable"]) for r in data["rows"] if "unavailable" in r})
    if skipped:
        lines += ["", "Not run here: " + "; ".join(f"`{i}` ({why})" for i, why in skipped) + "."]
    t = data.get("targets", {})
    if t.get("evaluated"):
        lines += ["", "| target | T | N | threads | value | limit | met |", "|---|---:|---:|---:|---:|---:|---|"]
        for it in t["items"]:
            met = {True: "yes", False: "**no**", None: "–"}[it["met"]]
            lines.append(f"| {it['target']} | {it.get('T')} | {it.get('N')} | {it.get('threads', '')} | "
                         f"{f(it['value'], 3)} | {it['limit']} | {met} |")
    return "\n".join(lines)


def render(path: Path) -> bool:
    """Fill ``<!-- begin:neuron_kernels_<device> -->`` ... ``<!-- end:... -->`` blocks of ``path`` with the
    tables of ``benchmarks/results/neuron_kernels_<device>.json`` (or a line saying it is not recorded).
    Returns whether the file changed."""
    import re

    text = path.read_text()

    def block(m):
        dev = m.group(2)
        res = ROOT / "benchmarks" / "results" / f"neuron_kernels_{dev}.json"
        body = (markdown_table(json.loads(res.read_text())) if res.exists() else
                f"No `{res.relative_to(ROOT)}` recorded yet (run `python benchmarks/"
                + ("gpu_check.py` on a GPU machine)." if dev == "cuda" else "neuron_kernels.py`)."))
        return f"{m.group(1)}{body}\n{m.group(3)}"

    new = re.sub(r"(<!-- begin:neuron_kernels_(\w+) -->\n)(?:.*?\n)?(<!-- end:neuron_kernels_\2 -->)", block, text,
                 flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", nargs="*", default=None, help="TxN pairs, e.g. 16x1048576 (default: per device)")
    ap.add_argument("--impls", nargs="*", default=None, help="default: all for the device")
    ap.add_argument("--threads", nargs="*", type=int, default=None, help="torch CPU threads (default 1 2 on CPU)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--sj14-path", default=str(ROOT / ".sj14"))
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/neuron_kernels_<device>.json)")
    ap.add_argument("--table", nargs="?", const="", default=None, help="print the markdown table of a result JSON")
    ap.add_argument("--render", default=None, help="refresh the generated benchmark blocks of a markdown file")
    ap.add_argument("--malloc", choices=sorted(MALLOC), default="heap_reuse",
                    help="glibc malloc setting of the run (default heap_reuse: freed blocks stay in the heap)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    if args.serve:
        return serve(args.threads[0] if args.threads else 1)
    if args.table is None and not args.render:
        run_under(args.malloc, __file__, argv)  # (the sj14 child process inherits the setting)
    default_out = ROOT / "benchmarks" / "results" / f"neuron_kernels_{device.type}.json"
    if args.render:
        print(f"{args.render}: {'updated' if render(Path(args.render)) else 'unchanged'}")
        return 0
    if args.table is not None:
        print(markdown_table(json.loads(Path(args.table or default_out).read_text())))
        return 0
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes] if args.sizes else (GPU_SIZES if on_gpu else CPU_SIZES)
    impls = args.impls or list(GPU_IMPLS if on_gpu else CPU_IMPLS)
    threads = args.threads or ([torch.get_num_threads()] if on_gpu else [1, 2])
    repeats = args.repeats or (20 if on_gpu else 5)
    from neuroq.io import machine_info

    t0 = time.perf_counter()
    rows = run(impls, sizes, threads, device, repeats, args.warmup, Path(args.sj14_path))
    data = dict(
        benchmark="neuron_kernels",
        machine=machine_info(device),
        device=str(device),
        settings=dict(sizes=sizes, threads=threads, repeats=repeats, warmup=args.warmup, impls=impls,
                      malloc=dict(setting=args.malloc, env=MALLOC[args.malloc]),
                      lif=dict(tau=2.0, decay_input=True, v_reset=0.0, surrogate="Sigmoid(alpha=4)", dtype="float32"),
                      timing="wall clock median of interleaved rounds (cpu_ms: process CPU time)"),
        wall_s=time.perf_counter() - t0,
        rows=rows,
        targets=evaluate_targets(rows, on_gpu, threads),
    )
    if not on_gpu:
        data["note"] = ("CPU run: the CuPy kernels and the GPU targets are measured by "
                        "`python benchmarks/gpu_check.py` on a GPU machine.")
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(markdown_table(data))
    print(f"wrote {out} in {data['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
