"""glibc ``malloc`` settings of the CPU benchmarks, and running a benchmark under one of them.

* ``default``    -- as the process starts: a block above glibc's mmap threshold (at most 32 MiB) is a fresh
  ``mmap``, returned to the OS when freed, so every 64 MiB output pays its page faults again (on the
  development VM 10-200 ms at random, whichever row they land in);
* ``heap_reuse`` -- ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2**40``: freed blocks stay in the heap and
  are reused, already mapped (what a user sets for a training process; docs/kernels.md, "Large tensors").

``benchmarks/large_tensor_cost.py`` measures both side by side (the allocator's share); the kernel
benchmarks run under ``heap_reuse`` by default so that their rows time the kernels, not the page faults.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

#: environment variables of each setting
MALLOC = {"default": {}, "heap_reuse": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 40)}}


def run_under(setting: str, script: str, argv) -> None:
    """Re-execute ``script`` (this process's benchmark) with ``argv`` under malloc ``setting`` unless the
    process already runs under it (glibc reads the variables once, at start-up); returns only then."""
    want = MALLOC[setting]
    if any(os.environ.get(k) != v for k, v in want.items()):
        os.execve(sys.executable, [sys.executable, str(Path(script).resolve()), *(argv if argv is not None else
                                                                                  sys.argv[1:])],
                  {**os.environ, **want})
