"""Everything a GPU machine has to confirm about neuroq's CUDA kernels, in one command (< 8 minutes).

    python benchmarks/gpu_check.py            # -> benchmarks/results/gpu_check_<gpu>.json (+ the files below)

1. the CUDA tests (``tests/ops/test_cuda_kernels.py`` with the ``@pytest.mark.cuda`` ones), recorded by
   ``benchmarks/record_gpu_tests.py`` (``cuda_tests_cuda.json``);
2. the checks the test suite lacks (they need a large GPU):
   * indexing beyond 2^31 elements: a T x N input with T*N > 2^31, a slice of it; spikes, states and
     gradients of neuron slices at the start, across the 2^31 boundary and at the end equal the torch
     reference run on those slices alone (neurons are independent);
   * memory: what forward keeps for backward, and what is left after backward and before
     ``reset_net`` (the saved H must be gone);
   * a side stream and a CUDA-graph capture of forward+backward give the torch results;
   * ``torch_reciprocal`` (host) equals torch's CUDA division by a scalar for many tau;
3. the kernel benchmark (``benchmarks/neuron_kernels.py --device cuda``, ``neuron_kernels_cuda.json``)
   and the SAF/OTTT benchmark (``benchmarks/saf_vs_ottt.py --config gpu``, ``saf_vs_ottt_gpu.json``).

Every phase runs in a child process with a time limit (a phase that overruns is recorded as such and
the next one starts); the summary JSON holds each phase's outcome and ``neuroq.io.machine_info()``.
Without a GPU the script says so and writes nothing.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

#: seconds per phase (sum < 8 minutes)
BUDGET = dict(tests=150, checks=70, kernels=150, saf_ottt=100)


def _phase(name: str, cmd: list, timeout: int) -> dict:
    t0 = time.perf_counter()
    try:
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        rc, out, err = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), ""
    wall = time.perf_counter() - t0
    print(f"[gpu_check] {name}: rc={rc} in {wall:.0f} s", file=sys.stderr, flush=True)
    return dict(command=" ".join(str(c) for c in cmd), returncode=rc, wall_s=round(wall, 1),
                tail=(out.strip().splitlines() + err.strip().splitlines())[-25:])


# ---- phase 2: the checks (run in a child: ``--checks``) -------------------------------------
def checks() -> dict:
    import torch
    from spikingjelly.activation_based import surrogate

    from neuroq.functional.neuron import LIFParameters, lif_multi_step
    from neuroq.neuron import LIFNode
    from neuroq.ops import cuda as nk
    from neuroq.ops import params as kp

    dev = torch.device("cuda")
    out = {}
    sg = surrogate.Sigmoid(alpha=4.0)
    p = LIFParameters(tau=1.7, v_reset=None)

    # (a) T*N > 2^31 on a slice (non-contiguous along N: the launcher copies it)
    T, N = 64, (1 << 25) + 4099
    t0 = time.perf_counter()
    gen = torch.Generator(device=dev).manual_seed(0)
    big = torch.empty(T, N + 64, device=dev)
    big.normal_(0.5, 1.2, generator=gen)
    x = big[:, 32:32 + N]
    assert not x.is_contiguous() and T * N > 2 ** 31
    xg = x.detach().requires_grad_(True)
    node = LIFNode.from_params(p, step_mode="m", backend="cupy", surrogate_function=sg).to(dev)
    s = node(xg)
    w_seed = 123
    gw = torch.Generator(device=dev).manual_seed(w_seed)
    g = torch.randn(T, N, device=dev, generator=gw)
    (gx,) = torch.autograd.grad(s, xg, g)
    v_last = node.v
    boundary = (2 ** 31) % N  # neuron whose element in some row crosses 2^31
    rows_at = (2 ** 31) // N
    slices = {"start": slice(0, 4096), "end": slice(N - 4096, N),
              "boundary": slice(max(0, boundary - 2048), min(N, boundary + 2048))}
    res = {}
    for name, sl in slices.items():
        xs = x[:, sl].detach().clone().requires_grad_(True)
        rs, rv, _ = lif_multi_step(xs, torch.zeros(xs.shape[1], device=dev), p, sg)
        (rg,) = torch.autograd.grad(rs, xs, g[:, sl])
        res[name] = dict(spikes_equal=bool(torch.equal(s[:, sl], rs)), v_equal=bool(torch.equal(v_last[sl], rv)),
                         grad_max_abs_diff=float((gx[:, sl] - rg).abs().max()))
    out["large_index"] = dict(T=T, N=N, elements=T * N, over_2_31=T * N > 2 ** 31, boundary_neuron=boundary,
                              boundary_row=rows_at, slices=res, seconds=round(time.perf_counter() - t0, 1),
                              ok=all(r["spikes_equal"] and r["v_equal"] and r["grad_max_abs_diff"] < 1e-4
                                     for r in res.values()))
    del big, x, xg, s, g, gx, node, v_last
    torch.cuda.empty_cache()

    # (b) memory held for backward, and after it (before reset)
    T, N = 16, 1 << 22
    x = (torch.randn(T, N, device=dev) + 0.5).requires_grad_(True)
    mem = {}
    for dtype in (torch.float32, torch.bfloat16):
        xx = x.detach().to(dtype).requires_grad_(True)
        node = LIFNode(step_mode="m", backend="cupy").to(dev)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        spikes = node(xx)
        torch.cuda.synchronize()
        after_fwd = torch.cuda.memory_allocated() - base
        spikes.backward(torch.ones_like(spikes))
        del spikes
        torch.cuda.synchronize()
        after_bwd = torch.cuda.memory_allocated() - base
        bytes_tn = T * N * xx.element_size()
        mem[str(dtype).replace("torch.", "")] = dict(
            TN_bytes=bytes_tn, held_after_forward=after_fwd, left_after_backward_before_reset=after_bwd,
            saved_freed=bool(after_bwd <= bytes_tn + 2 * N * xx.element_size() + (1 << 20)))
        del xx, node
        torch.cuda.empty_cache()
    out["memory"] = mem

    # (c) side stream, CUDA graph
    xs = torch.randn(8, 1 << 16, device=dev) + 0.5
    ref = LIFNode.from_params(p, step_mode="m", backend="torch").to(dev)(xs)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = LIFNode.from_params(p, step_mode="m", backend="cupy").to(dev)(xs)
    torch.cuda.current_stream().wait_stream(side)
    out["side_stream_equal"] = bool(torch.equal(got, ref))
    node = LIFNode.from_params(p, step_mode="m", backend="cupy").to(dev)
    static_x = xs.clone().requires_grad_(True)
    graph_ok, why = False, ""
    try:
        for _ in range(2):
            with torch.cuda.stream(side):
                node.reset()
                node(static_x).sum().backward()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        static_x.grad = None
        with torch.cuda.graph(graph):
            node.reset()
            static_out = node(static_x)
            static_out.sum().backward()
        static_x.data.copy_(xs * 1.1)
        graph.replay()
        torch.cuda.synchronize()
        graph_ok = bool(torch.equal(static_out, LIFNode.from_params(p, step_mode="m", backend="torch").to(dev)(xs * 1.1)))
    except Exception as e:  # recorded, not raised
        why = f"{type(e).__name__}: {e}"
    out["cuda_graph"] = dict(ok=graph_ok, error=why)

    # (d) the host reciprocal is torch's
    xr = torch.randn(1 << 16, device=dev)
    bad = [tau for tau in (1.1, 1.7, 2.0, 2.5, 3.0, 1 / 0.3, 7.3, 10.0, 1.0001, 123.456, 1e4)
           if not torch.equal(xr / tau, xr * float(kp.torch_reciprocal(tau)))]
    out["torch_reciprocal_matches"] = dict(ok=not bad, mismatched_tau=bad)
    out["ilp"] = nk.ILP
    out["ok"] = bool(out["large_index"]["ok"] and all(m["saved_freed"] for m in mem.values())
                     and out["side_stream_equal"] and graph_ok and not bad)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checks", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip", nargs="*", default=[], choices=list(BUDGET), help="phases to leave out")
    args = ap.parse_args(argv)
    import torch

    if args.checks:
        print(json.dumps(checks()))
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU on this machine -- nothing run, nothing written", file=sys.stderr)
        return 2
    from neuroq.io import machine_info

    t0 = time.perf_counter()
    py = sys.executable
    summary = dict(benchmark="gpu_check", machine=machine_info("cuda"), phases={})
    if "tests" not in args.skip:
        summary["phases"]["tests"] = _phase("tests", [py, "benchmarks/record_gpu_tests.py"], BUDGET["tests"])
        rec = RESULTS / "cuda_tests_cuda.json"
        if rec.exists():
            summary["phases"]["tests"]["record"] = {k: v for k, v in json.loads(rec.read_text()).items()
                                                    if k in ("summary", "counts", "gpu_tests_ran")}
    if "checks" not in args.skip:
        ph = _phase("checks", [py, "benchmarks/gpu_check.py", "--checks"], BUDGET["checks"])
        for line in reversed(ph["tail"]):
            if line.startswith("{"):
                ph["result"] = json.loads(line)
                break
        summary["phases"]["checks"] = ph
    if "kernels" not in args.skip:
        summary["phases"]["kernels"] = _phase(
            "kernels", [py, "benchmarks/neuron_kernels.py", "--device", "cuda", "--repeats", "10",
                        "--sizes", "16x4194304", "64x1048576", "4x4194304"], BUDGET["kernels"])
    if "saf_ottt" not in args.skip:
        summary["phases"]["saf_ottt"] = _phase(
            "saf_ottt", [py, "benchmarks/saf_vs_ottt.py", "--config", "gpu", "--device", "cuda", "--reps", "10",
                         "--warmup", "3", "--out", str(RESULTS / "saf_vs_ottt_gpu.json")], BUDGET["saf_ottt"])
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["ok"] = all(ph.get("returncode") == 0 for ph in summary["phases"].values()) and \
        summary["phases"].get("checks", {}).get("result", {}).get("ok", False)
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", summary["machine"].get("gpu", "gpu")).strip("_").lower()
    out = RESULTS / f"gpu_check_{gpu}.json"
    out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: (v.get("returncode") if isinstance(v, dict) else v)
                      for k, v in summary["phases"].items()}), file=sys.stderr)
    print(f"wrote {out} in {summary['wall_s']:.0f} s (ok={summary['ok']})", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
