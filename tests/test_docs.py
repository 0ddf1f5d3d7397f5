"""The documentation is executable: every ``python`` block of README.md and docs/*.md runs as written, on its
own in a fresh interpreter (the blocks of one page in order, from one empty working directory), the results
its comments promise (``print(...)  # expected``) are printed, and the API reference builds with
warnings as errors."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuroq import _sj

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def test_the_docs_have_snippets():
    with_code = {p.name for p in PAGES if _blocks(p)}
    assert {"README.md", "data.md", "energy_penalty.md", "viz.md", "nir.md"} <= with_code, with_code


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)], ids=lambda p: p.name)
def test_snippets_run(page, tmp_path):
    """Each block runs on its own in a fresh interpreter, as when pasted alone: it imports what it uses and
    defines what it needs. The blocks of a page run in order in one working directory, so files an earlier
    block wrote (a trained run, a module) are there, as for a reader following the page."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEUROQ_IMPORT", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                            if p])  # pages may write a module and import it
    env["MPLBACKEND"] = "Agg"
    for i, code in enumerate(_blocks(page)):
        if "nir_exchange" in code and not _sj.IS_SJ2:
            continue  # SpikingJelly 0.0.0.0.14 has no NIR exchange (the page says so)
        where = f"{page.relative_to(ROOT)}: python block {i + 1}"
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"{where} fails when run on its own:\n{r.stderr[-3000:]}"
        for line in code.splitlines():  # the results the snippet's comments promise
            m = re.match(r"print\(.*\)\s+# (.+)$", line.strip())
            if m:
                assert m.group(1).strip() in r.stdout, (where, m.group(1), r.stdout)


@pytest.mark.slow
def test_api_reference_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="the API reference needs sphinx (the dev extra)")
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(ROOT / "docs" / "api"),
                        str(tmp_path / "html")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "html" / "index.html").is_file()


def test_every_file_of_the_method_table_exists():
    """docs/architecture.md's 'Where each method lives' names every file of each paper method; each must exist
    (library and training-method paths are relative to neuroq/, the rest to the repository), and every method's
    row names its example, docs page and tests."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- begin:method-files -->")[1].split("<!-- end:method-files -->")[0]
    rows = [r for r in table.strip().splitlines()[2:] if r.startswith("|")]
    assert len(rows) == 8
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6, row
        for k, cell in enumerate(cells[1:], start=1):
            for path in re.findall(r"`([^`]+/[^`]*|[^`]+\.py)`", cell):
                where = ROOT / "neuroq" / path if k <= 2 else ROOT / path
                assert where.exists(), f"{cells[0]}: {path} ({where}) does not exist"
        assert "examples/" in cells[3] and "docs/" in cells[4] and "tests/" in cells[5], row


#: the benchmark blocks of the docs: (page, benchmark script whose ``render(path)`` fills them from its JSON)
BENCHMARK_BLOCKS = [("docs/neurons.md", "generated_kernels"), ("docs/kernels.md", "large_tensor_cost"),
                    ("docs/kernels.md", "neuron_kernels")]


@pytest.mark.parametrize("page,script", BENCHMARK_BLOCKS, ids=lambda v: str(v))
def test_benchmark_blocks_are_what_the_committed_json_renders(page, script, tmp_path):
    """Numbers in the docs come from the benchmarks' JSON: re-rendering a page's block from the committed
    results changes nothing (after a benchmark run: ``python benchmarks/<script>.py --render <page>``)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{script}", ROOT / "benchmarks" / f"{script}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    copy = tmp_path / Path(page).name
    copy.write_text((ROOT / page).read_text())
    assert "<!-- begin:" in copy.read_text()
    assert not mod.render(copy), f"{page} is out of date: run python benchmarks/{script}.py --render {page}"
