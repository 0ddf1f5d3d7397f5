"""Generated kernels: a neuron's own step compiled by neuroq (neuroq/ops/codegen.py) against the torch loop
over the same step, ``torch.compile`` of that loop, neuroq's hand-written LIF kernel and SpikingJelly 2.0
eager, measured side by side in one run on the CPU.

Neurons (float32, Sigmoid(alpha=4) surrogate, hard reset to 0):

* ``lif``          -- LIF (tau=2, decay_input): ``LIFNode`` with its hand-written kernel switched off, so
  the generated one runs (``kernel_family = None``);
* ``qif``          -- quadratic IF, SpikingJelly's equation ``H = V + (X + a0 (V - V_rest)(V - V_c)) / tau``
  (tau=2, a0=1, V_rest=0, V_c=0.8), written as a one-state ``neuronal_charge``;
* ``adaptive_lif`` -- adaptive-threshold LIF with two states (``examples/custom_neuron.py``'s
  ``AdaptiveLIFNode``: tau=2, beta=0.5, rho=0.8).

Rows (forward and forward+backward time per (neuron, impl, T, N, threads)):

* ``generated``     -- the neuron with ``backend='cpu'`` (the kernel generated from its step);
* ``torch_loop``    -- the same neuron with ``backend='torch'`` (the O(T) loop over its step);
* ``torch_compile`` -- ``torch.compile`` of that module (the loop traced and fused by inductor), compiled
  at each thread count (inductor's code has the thread count built in); compile time excluded, reported;
* ``sj2_eager``     -- SpikingJelly 2.0.0 as it comes: its ``LIFNode`` / ``QIFNode``, and the adaptive LIF
  written on its multi-state API (``AdaptBaseNode.single_step_functional_forward``);
* ``hand_written``  -- neuroq's hand-written LIF kernel (``LIFNode(backend='cpu')``), the reference of
  the speed targets, under neuron ``lif``.

Timing: wall clock, the median of ``--repeats`` interleaved rounds (each round runs every row once, so a
changing machine load hits all rows alike), process CPU time alongside.  Forward under
``torch.no_grad()``; forward+backward with ``x.requires_grad`` and ``spikes.backward(g)``.

Memory: by default the run re-executes itself with glibc's ``malloc`` keeping freed blocks in the heap
(``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2**40``, ``--malloc heap_reuse``).  Otherwise every
64 MiB output of every row is a fresh ``mmap`` whose page faults cost 10-200 ms at random on a VM,
whichever row they land in (``benchmarks/large_tensor_cost.py`` measures that cost; docs/kernels.md,
"Large tensors"); ``--malloc default`` measures as the process starts.

Targets (issue): the generated LIF within 1.25x of the hand-written LIF kernel; the generated QIF and
adaptive LIF within 1.5x of it; every generated kernel faster than ``torch.compile`` of the same loop --
at 16 x 1M and 64 x 256k, 1 and 2 threads, forward and forward+backward.

    python benchmarks/generated_kernels.py                        # writes benchmarks/results/generated_kernels_cpu.json
    python benchmarks/generated_kernels.py --table                # markdown tables of the recorded JSON
    python benchmarks/generated_kernels.py --render docs/neurons.md  # refresh the generated blocks of a page
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.malloc_settings import MALLOC, run_under  # noqa: E402

M, K = 2 ** 20, 2 ** 10
SIZES = [(16, M), (64, 256 * K)]
NEURONS = ("lif", "qif", "adaptive_lif")
IMPLS = {"lif": ("hand_written", "generated", "torch_loop", "torch_compile", "sj2_eager"),
         "qif": ("generated", "torch_loop", "torch_compile", "sj2_eager"),
         "adaptive_lif": ("generated", "torch_loop", "torch_compile", "sj2_eager")}


class Unavailable(Exception):
    """An implementation that cannot run here (the reason goes into the JSON)."""


def neuroq_neuron(name: str, backend: str):
    """The neuroq module of neuron ``name`` on ``backend``."""
    from spikingjelly.activation_based import surrogate

    from neuroq.neuron import BaseNode, LIFNode

    class GeneratedLIF(LIFNode):
        kernel_family = None  # LIF's equations, the generated kernel

    class QIF(BaseNode):
        def __init__(self, tau=2.0, a0=1.0, v_rest=0.0, v_c=0.8, **kw):
            super().__init__(**kw)
            self.tau, self.a0, self.v_rest, self.v_c = tau, a0, v_rest, v_c

        def neuronal_charge(self, x, v):
            return v + (x + self.a0 * (v - self.v_rest) * (v - self.v_c)) / self.tau

    from examples.custom_neuron import AdaptiveLIFNode

    kw = dict(step_mode="m", backend=backend, surrogate_function=surrogate.Sigmoid(alpha=4.0))
    if name == "lif":
        return (LIFNode if backend == "cpu-hand" else GeneratedLIF)(tau=2.0, **{**kw, "backend": backend.split("-")[0]})
    if name == "qif":
        return QIF(**kw)
    return AdaptiveLIFNode(tau=2.0, beta=0.5, rho=0.8, **kw)


def sj2_neuron(name: str):
    """SpikingJelly 2.0's eager module of neuron ``name``."""
    from neuroq import _sj

    if not _sj.IS_SJ2:
        raise Unavailable(f"SpikingJelly {_sj.VERSION} is installed (sj2_eager needs 2.0)")
    from spikingjelly.activation_based import neuron, surrogate

    sg = surrogate.Sigmoid(alpha=4.0)
    if name == "lif":
        return neuron.LIFNode(tau=2.0, v_reset=0.0, surrogate_function=sg, step_mode="m")
    if name == "qif":
        return neuron.QIFNode(tau=2.0, v_c=0.8, a0=1.0, v_rest=0.0, v_reset=0.0, surrogate_function=sg, step_mode="m")

    class SJAdaptiveLIF(neuron.AdaptBaseNode):
        """The adaptive-threshold LIF on SpikingJelly 2.0's multi-state API (its memory ``w`` is the adaptation)."""

        def __init__(self, tau=2.0, beta=0.5, rho=0.8, **kw):
            super().__init__(w_rest=0.0, **kw)
            self.tau, self.beta, self.rho = tau, beta, rho

        def single_step_functional_forward(self, inputs, states, **kwargs):
            x, v, a = inputs[0], states[0], states[-1]
            h = v + (x - v) / self.tau
            s = self.surrogate_function(h - self.v_threshold - self.beta * a)
            return (s,), (h * (1.0 - s), self.rho * a + s)

    return SJAdaptiveLIF(v_reset=0.0, surrogate_function=sg, step_mode="m")


_INPUTS: dict = {}


def inputs(T: int, N: int):
    """``(x, g, x with requires_grad)`` of one size, shared by its rows."""
    if (T, N) not in _INPUTS:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(T, N, generator=gen) * 1.5 + 0.5
        _INPUTS[(T, N)] = (x, torch.randn(T, N, generator=gen), x.clone().requires_grad_(True))
    return _INPUTS[(T, N)]


class Row:
    """One (neuron, impl) at one size: ``fwd()`` and ``fb()`` closures on fixed inputs."""

    def __init__(self, neuron: str, impl: str, T: int, N: int):
        self.neuron, self.impl, self.T, self.N = neuron, impl, T, N
        self.x, self.g, self.xg = inputs(T, N)
        self.compile_s = None
        if impl in ("generated", "hand_written"):
            from neuroq.ops import dispatch

            ok, why = dispatch.cpu_status()
            if not ok:
                raise Unavailable(why)
            m = neuroq_neuron(neuron, "cpu-hand" if impl == "hand_written" else "cpu")
            call = m
        elif impl in ("torch_loop", "torch_compile"):
            m = neuroq_neuron(neuron, "torch")
            call = torch.compile(m) if impl == "torch_compile" else m
        elif impl == "sj2_eager":
            m = call = sj2_neuron(neuron)
        else:
            raise ValueError(impl)
        self.module = m

        def fwd():
            m.reset()
            with torch.no_grad():
                call(self.x)

        def fb():
            m.reset()
            self.xg.grad = None
            call(self.xg).backward(self.g)

        self.fwd, self.fb = fwd, fb
        if impl in ("generated", "torch_compile"):  # build / compile both paths now, outside the timed runs
            t0 = time.perf_counter()
            fwd()
            fb()
            if impl == "torch_compile":
                self.compile_s = time.perf_counter() - t0

    def time(self, mode: str) -> tuple[float, float]:
        """(wall ms, process CPU ms) of one call."""
        fn = self.fwd if mode == "fwd" else self.fb
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        return (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def run(neurons, sizes, threads_list, repeats, warmup) -> list[dict]:
    """Set every row up once, then time them at each thread count.  ``torch.compile`` rows are compiled
    afresh at each thread count (inductor bakes the thread count into the code it generates), with
    dynamo's recompile limit raised so that no row silently falls back to eager."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 512
    if hasattr(torch._dynamo.config, "accumulated_cache_size_limit"):
        torch._dynamo.config.accumulated_cache_size_limit = 4096
    out, static, dead = [], [], []

    def build(impls_wanted):
        made = []
        for T, N in sizes:
            for neuron in neurons:
                for impl in IMPLS[neuron]:
                    if impl not in impls_wanted:
                        continue
                    try:
                        made.append(Row(neuron, impl, T, N))
                    except Unavailable as e:
                        dead.append(dict(neuron=neuron, impl=impl, T=T, N=N, unavailable=str(e)))
                    print(f"  set up {neuron}/{impl} {T}x{N} ({torch.get_num_threads()} thread(s))", file=sys.stderr,
                          flush=True)
        return made

    torch.set_num_threads(threads_list[0])
    static = build({"hand_written", "generated", "torch_loop", "sj2_eager"})
    for threads in threads_list:
        torch.set_num_threads(threads)
        rows = static + build({"torch_compile"})
        times = {(id(r), m): [] for r in rows for m in ("fwd", "fb")}
        for _ in range(warmup):
            for r in rows:
                for m in ("fwd", "fb"):
                    r.time(m)
        for k in range(repeats):  # interleaved: every row once per round
            for r in rows:
                for m in ("fwd", "fb"):
                    times[(id(r), m)].append(r.time(m))
            print(f"  round {k + 1}/{repeats} done ({threads} thread(s))", file=sys.stderr, flush=True)
        for r in rows:
            rec = dict(neuron=r.neuron, impl=r.impl, T=r.T, N=r.N, dtype="float32", threads=threads)
            for m, key in (("fwd", "forward"), ("fb", "forward_backward")):
                ts = times[(id(r), m)]
                rec[f"{key}_ms"] = statistics.median(t[0] for t in ts)
                rec[f"{key}_cpu_ms"] = statistics.median(t[1] for t in ts)
                rec[f"{key}_ms_all"] = [round(t[0], 3) for t in ts]
            if r.compile_s is not None:
                rec["compile_s"] = r.compile_s
            out.append(rec)
        out += [dict(d, threads=threads) for d in dead]
        dead.clear()
        del rows
    return out


def _get(rows, neuron, impl, T, N, threads, key):
    for r in rows:
        if (r["neuron"], r["impl"], r.get("T"), r.get("N"), r.get("threads")) == (neuron, impl, T, N, threads):
            return r.get(key)
    return None


def evaluate_targets(rows: list[dict], sizes, threads_list) -> dict:
    out = dict(evaluated=True, items=[])

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    for th in threads_list:
        for T, N in sizes:
            for key, mode in (("forward_ms", "fwd"), ("forward_backward_ms", "fwd_bwd")):
                hand = _get(rows, "lif", "hand_written", T, N, th, key)
                for neuron, limit in (("lif", 1.25), ("qif", 1.5), ("adaptive_lif", 1.5)):
                    gen = _get(rows, neuron, "generated", T, N, th, key)
                    value = ratio(gen, hand)
                    out["items"].append(dict(target=f"{neuron} generated / hand-written LIF ({mode})", value=value,
                                             limit=limit, met=None if value is None else value <= limit, T=T, N=N,
                                             threads=th))
                for neuron in ("lif", "qif", "adaptive_lif"):
                    value = ratio(_get(rows, neuron, "generated", T, N, th, key),
                                  _get(rows, neuron, "torch_compile", T, N, th, key))
                    out["items"].append(dict(target=f"{neuron} generated / torch.compile of its loop ({mode})",
                                             value=value, limit=1.0, met=None if value is None else value < 1.0, T=T,
                                             N=N, threads=th))
    return out


def summary(data: dict) -> list:
    """Bullet lines: the range of each ratio over sizes, thread counts and modes, and torch.compile's compile
    time, all from ``data``."""
    rows = data["rows"]

    def span(values):
        values = [v for v in values if v is not None]
        return "–" if not values else f"{min(values):.2f}–{max(values):.2f}×"

    keys = [(r["T"], r["N"], r["threads"]) for r in rows if r["neuron"] == "lif" and r["impl"] == "hand_written"
            and "unavailable" not in r]
    modes = ("forward_ms", "forward_backward_ms")

    def ratios(neuron, impl, ref_neuron, ref_impl, mode_keys=modes):
        out = []
        for T, N, th in keys:
            for key in mode_keys:
                a, b = _get(rows, neuron, impl, T, N, th, key), _get(rows, ref_neuron, ref_impl, T, N, th, key)
                out.append(None if a is None or not b else a / b)
        return out

    lines = []
    for neuron, label in (("lif", "LIF"), ("qif", "quadratic IF"), ("adaptive_lif", "adaptive LIF (2 states)")):
        lines.append(f"* generated {label}: {span(ratios(neuron, 'generated', 'lif', 'hand_written'))} the "
                     f"hand-written LIF kernel's time; {span(ratios(neuron, 'generated', neuron, 'torch_compile'))} "
                     f"torch.compile's of its loop; {span(ratios(neuron, 'generated', neuron, 'torch_loop'))} the "
                     f"torch loop's; {span(ratios(neuron, 'generated', neuron, 'sj2_eager'))} SpikingJelly 2.0 eager's")
    for neuron, label in (("lif", "LIF"), ("qif", "quadratic IF"), ("adaptive_lif", "adaptive LIF")):
        comp = [r.get("compile_s") for r in rows if r["neuron"] == neuron and r["impl"] == "torch_compile"
                and r.get("compile_s")]
        fwd = span(ratios(neuron, "torch_compile", neuron, "torch_loop", ("forward_ms",)))
        fb = span(ratios(neuron, "torch_compile", neuron, "torch_loop", ("forward_backward_ms",)))
        lines.append(f"* torch.compile of the {label} loop: forward {fwd}, forward+backward {fb} the eager loop's "
                     f"time, after compiling for " + ("–" if not comp else f"{min(comp):.0f}–{max(comp):.0f} s")
                     + " per size (forward and backward graphs)")
    t = data.get("targets", {})
    if t.get("evaluated"):
        items = [it for it in t["items"] if it["met"] is not None]
        missed = [it for it in items if not it["met"]]
        lines.append(f"* targets met: {len(items) - len(missed)} of {len(items)}"
                     + ("" if not missed else "; not met: " + "; ".join(
                         f"{it['target']} at {it['T']} × {it['N']}, {it['threads']} thread(s): {it['value']:.2f}× "
                         f"(limit {it['limit']})" for it in missed)))
    return lines


def markdown_tables(data: dict) -> str:
    """Markdown tables of a result file: times with ratios to the hand-written LIF kernel, then the targets."""
    m = data["machine"]
    lines = [f"Measured on CPU {m.get('processor')} ({m.get('cpu_count')} cores), {m.get('platform')}, torch "
             f"{m.get('torch')}, SpikingJelly {m.get('spikingjelly')}; median of {data['settings']['repeats']} "
             "interleaved rounds (wall clock), float32, glibc malloc "
             f"`{data['settings'].get('malloc', {}).get('setting', 'default')}`; `× hand` is the time over neuroq's "
             "hand-written LIF kernel's in the same run.", ""] + summary(data) + ["",
             "| neuron | impl | T | N | threads | forward ms | × hand | fwd+bwd ms | × hand |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, nd=1):
        return "–" if v is None else f"{v:.{nd}f}"

    rows = data["rows"]
    for r in rows:
        if "unavailable" in r:
            continue
        hf = _get(rows, "lif", "hand_written", r["T"], r["N"], r["threads"], "forward_ms")
        hb = _get(rows, "lif", "hand_written", r["T"], r["N"], r["threads"], "forward_backward_ms")
        extra = f" (compile {r['compile_s']:.0f} s)" if r.get("compile_s") else ""
        lines.append(f"| {r['neuron']} | {r['impl']}{extra} | {r['T']} | {r['N']} | {r['threads']} | "
                     f"{f(r['forward_ms'])} | {f(r['forward_ms'] / hf if hf else None, 2)} | "
                     f"{f(r['forward_backward_ms'])} | {f(r['forward_backward_ms'] / hb if hb else None, 2)} |")
    skipped = sorted({(r["neuron"], r["impl"], r["unavailable"]) for r in rows if "unavailable" in r})
    if skipped:
        lines += ["", "Not run here: " + "; ".join(f"`{n}/{i}` ({why})" for n, i, why in skipped) + "."]
    t = data.get("targets", {})
    if t.get("evaluated"):
        lines += ["", "| target | T | N | threads | value | limit | met |", "|---|---:|---:|---:|---:|---:|---|"]
        for it in t["items"]:
            met = {True: "yes", False: "**no**", None: "–"}[it["met"]]
            lines.append(f"| {it['target']} | {it['T']} | {it['N']} | {it['threads']} | {f(it['value'], 3)} | "
                         f"{it['limit']} | {met} |")
    return "\n".join(lines)


def render(path: Path) -> bool:
    """Fill the ``<!-- begin:generated_kernels_cpu -->`` ... ``<!-- end:generated_kernels_cpu -->`` block of
    ``path`` with the tables of ``benchmarks/results/generated_kernels_cpu.json``.  Returns whether the file
    changed."""
    import re

    text = path.read_text()
    res = ROOT / "benchmarks" / "results" / "generated_kernels_cpu.json"
    body = (markdown_tables(json.loads(res.read_text())) if res.exists() else
            f"No `{res.relative_to(ROOT)}` recorded yet (run `python benchmarks/generated_kernels.py`).")
    new = re.sub(r"(<!-- begin:generated_kernels_cpu -->\n)(?:.*?\n)?(<!-- end:generated_kernels_cpu -->)",
                 lambda m: f"{m.group(1)}{body}\n{m.group(2)}", text, flags=re.S)
    if new != text:
        path.write_text(new)
    return new != text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="*", default=None, help="TxN pairs, e.g. 16x1048576 (default: the issue's)")
    ap.add_argument("--neurons", nargs="*", default=None, choices=NEURONS)
    ap.add_argument("--threads", nargs="*", type=int, default=None, help="torch CPU threads (default 1 2)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/generated_kernels_cpu.json)")
    ap.add_argument("--table", nargs="?", const="", default=None, help="print the markdown tables of a result JSON")
    ap.add_argument("--render", default=None, help="refresh the generated benchmark block of a markdown file")
    ap.add_argument("--malloc", choices=sorted(MALLOC), default="heap_reuse",
                    help="glibc malloc setting of the run (default heap_reuse: freed blocks stay in the heap)")
    args = ap.parse_args(argv)
    want = MALLOC[args.malloc]
    if args.table is None and not args.render:
        run_under(args.malloc, __file__, argv)
    default_out = ROOT / "benchmarks" / "results" / "generated_kernels_cpu.json"
    if args.render:
        print(f"{args.render}: {'updated' if render(Path(args.render)) else 'unchanged'}")
        return 0
    if args.table is not None:
        print(markdown_tables(json.loads(Path(args.table or default_out).read_text())))
        return 0
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes] if args.sizes else SIZES
    neurons = args.neurons or list(NEURONS)
    threads = args.threads or [1, 2]
    from neuroq.io import machine_info

    t0 = time.perf_counter()
    rows = run(neurons, sizes, threads, args.repeats, args.warmup)
    data = dict(
        benchmark="generated_kernels",
        machine=machine_info(torch.device("cpu")),
        device="cpu",
        settings=dict(sizes=sizes, threads=threads, repeats=args.repeats, warmup=args.warmup, neurons=neurons,
                      malloc=dict(setting=args.malloc, env=want),
                      impls=IMPLS, surrogate="Sigmoid(alpha=4)", dtype="float32",
                      timing="wall clock median of interleaved rounds (cpu_ms: process CPU time)"),
        wall_s=time.perf_counter() - t0,
        rows=rows,
        targets=evaluate_targets(rows, sizes, threads),
    )
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(markdown_tables(data))
    print(f"wrote {out} in {data['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
