"""docs/migrating-from-tf1.md: every jaxgraph snippet runs, in order, in one namespace (the ``python tf1``
blocks show the TF1 code being replaced and are not run); the README links the guide."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
GUIDE = ROOT / "docs" / "migrating-from-tf1.md"


def _blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```([^\n]*)\n(.*?)```", text, re.S)


def test_every_snippet_runs_in_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # the summary and checkpoint snippets write files
    blocks = _blocks(GUIDE.read_text())
    runnable = [code for info, code in blocks if info.strip() == "python"]
    tf1 = [code for info, code in blocks if info.strip() == "python tf1"]
    assert len(runnable) >= 12 and len(tf1) >= 10
    assert {info.strip() for info, _ in blocks} <= {"python", "python tf1"}
    namespace: dict = {}
    for i, code in enumerate(runnable):
        exec(compile(code, f"{GUIDE.name}[snippet {i}]", "exec"), namespace)
    assert int(namespace["params"]["global_step"].value) >= 3


def test_readme_links_the_guide():
    assert "docs/migrating-from-tf1.md" in (ROOT / "README.md").read_text()
