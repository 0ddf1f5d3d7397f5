"""Packaging: the wheel that ``pip install .`` builds installs a working ``neuroq`` command into a fresh
environment -- every subpackage, the kernel sources (the CPU kernels compile from the installed files) and
the console script -- run from a folder where the repository is not importable."""
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_a_working_neuroq_command(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(dist)], check=True, capture_output=True)
    wheel = next(dist.glob("neuroq-*.whl"))
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    py = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    # the dependencies (torch, SpikingJelly ...) come from this environment; neuroq itself only from the wheel
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEUROQ_IMPORT")}
    work = tmp_path / "work"
    work.mkdir()

    def run(*args):
        return subprocess.run(args, cwd=work, env=clean, check=True, capture_output=True, text=True)

    where = run(str(py), "-c", "import neuroq, neuroq.ops.build as b; print(neuroq.__file__); "
                               "print(all((b.Path(b.__file__).parent / f).is_file() for f in "
                               "('kernels.cuh', 'neuron_kernels_cpu.cpp', 'neuron_kernels.cu', 'entry_points.cuh', "
                               "'step_kernels_cpu.cpp', 'step_kernels.cu', 'step_entry_points.cuh')))")
    path, sources = where.stdout.split()
    assert Path(path).is_relative_to(env) and sources == "True"
    assert "neuroq 0.1.0" in run(str(env / "bin" / "neuroq"), "--version").stdout
    run(str(env / "bin" / "neuroq"), "train", "--method", "lif", "--dataset", "digits", "--epochs", "1",
        "--limit-train", "64", "--limit-test", "32", "--hidden", "16", "-T", "2", "--quiet", "--out", "run")
    assert (work / "run" / "checkpoint.pt").is_file() and (work / "run" / "raster.png").is_file()
