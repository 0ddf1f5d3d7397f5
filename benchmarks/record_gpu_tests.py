"""Run the CuPy kernel tests (GPU ones included) and record the run with the device it ran on.

    python benchmarks/record_gpu_tests.py      # -> benchmarks/results/cuda_tests_<device>.json

(``benchmarks/gpu_check.py`` runs this first, then the checks and benchmarks the suite lacks.)

Writes the pytest command, its exit code, summary line and per-outcome counts, the list of
skipped tests with reasons, and ``neuroq.io.machine_info()``.  A run where the ``cuda`` tests
were skipped (no GPU or no CuPy) is recorded as such (``gpu_tests_ran: false``), never as a pass.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    import torch

    from neuroq.io import machine_info

    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests/ops/test_cuda_kernels.py"]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = res.stdout.strip().splitlines()
    summary = next((ln for ln in reversed(lines) if re.search(r"\d+ (passed|failed|skipped|error)", ln)), "")
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", summary)}
    skipped = [ln for ln in lines if ln.startswith("SKIPPED")]
    gpu_skips = [ln for ln in skipped if "needs a CUDA GPU and CuPy" in ln]
    data = dict(
        command=" ".join(cmd[1:]),
        returncode=res.returncode,
        summary=summary,
        counts=counts,
        gpu_tests_ran=torch.cuda.is_available() and not gpu_skips,
        skipped=skipped,
        machine=machine_info(),
        tail=lines[-40:],
    )
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = ROOT / "benchmarks" / "results" / f"cuda_tests_{dev}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(summary)
    print(f"wrote {out}", file=sys.stderr)
    return res.returncode


if __name__ == "__main__":
    sys.exit(main())
