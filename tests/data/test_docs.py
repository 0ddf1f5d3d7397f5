"""Every Python snippet of docs/data.md runs as written."""
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_snippets():
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_snippet_runs(i, capsys):
    exec(compile(BLOCKS[i], f"{DOC}:python block {i}", "exec"), {"__name__": f"docs_data_{i}"})
    out = capsys.readouterr().out
    for line in BLOCKS[i].splitlines():  # the results the snippet's comments promise
        m = re.match(r"print\(.*\)\s+# (.+)$", line.strip())
        if m:
            assert m.group(1).strip() in out, (m.group(1), out)
