"""The nox sessions run what they say: `tests_multidevice` lists every test file with multi-device tests."""

import ast
import os
import re
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _multidevice_tests() -> list[str]:
    tree = ast.parse(Path(REPO, "noxfile.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [
                "MULTIDEVICE_TESTS"]:
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py defines no MULTIDEVICE_TESTS")


def test_every_multidevice_test_file_runs_in_the_multidevice_session():
    listed = _multidevice_tests()
    marked = []
    for root, _, files in os.walk(os.path.join(REPO, "tests")):
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".py") and re.search(r"mark\.multidevice\b", Path(path).read_text()):
                marked.append(os.path.relpath(path, REPO))
    assert "tests/test_sharding.py" in marked  # the search itself finds the marker
    missing = sorted(set(marked) - set(listed))
    assert not missing, f"tests marked multidevice that nox -s tests_multidevice does not run: {missing}"
    for path in listed:
        assert os.path.exists(os.path.join(REPO, path)), f"noxfile.py lists {path}, which does not exist"
