import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    try:
        import cupy  # noqa: F401
        has_cupy = True
    except Exception:
        has_cupy = False
    skip = pytest.mark.skip(reason="needs a CUDA GPU and CuPy")
    for item in items:
        if "cuda" in item.keywords and not (has_cuda and has_cupy):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _cpu_kernels():
    """Build (or load from the on-disk cache) the fused CPU kernels once per test run, before the first
    test, instead of inside whichever test first runs a LIF neuron.  Fixtures do not run when pytest
    only collects.  Without a C++ compiler (or with NEUROQ_CPU_KERNELS=0) this does nothing: the kernel
    tests skip themselves and backend='auto' runs the torch reference."""
    from neuroq.ops.dispatch import cpu_status

    cpu_status()  # (usable, reason); never raises


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def avx512() -> bool:
    """Whether this is a CPU with AVX-512F (Linux: /proc/cpuinfo), where the CPU kernels are built for
    512-bit vectors (neuroq.ops.build.ARCH_FLAGS)."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(ln.startswith("flags") and " avx512f" in ln for ln in f)
    except OSError:
        return False
