"""``benchmarks/tutorial_vs_tf1.py`` needs TensorFlow for its baseline and says so in one line without it."""

import importlib.util
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fails_clearly_without_tensorflow(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("tutorial_vs_tf1", os.path.join(REPO, "benchmarks",
                                                                                  "tutorial_vs_tf1.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # what an environment without TensorFlow looks like
    assert bench.main(["--steps", "10", "--repeats", "1"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: TensorFlow is not installed in this Python") and err.count("\n") == 1
