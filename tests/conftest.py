"""Shared test setup: CPU by default, float32 everywhere, x64 off (as users run)."""

import contextlib
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=[False, True], ids=["nojit", "jit"])
def maybe_jit(request):
    """Run a function eagerly and under jax.jit: every behaviour must hold both ways."""
    return jax.jit if request.param else (lambda f, **kw: f)


# A script run as separate processes by test_sharding.py, not a test module; and the scripts that made
# the fixtures (they import TensorFlow or cramjam, which the core suite never installs), which
# `--doctest-modules` would otherwise import.
collect_ignore = ["distributed/worker.py"]
collect_ignore_glob = ["fixtures/*.py", "fixtures/*/*.py"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """A small topical corpus for the word2vec trainer tests: about 12k tokens, 4 topics of 30 words
    each plus shared function words."""
    rng = np.random.default_rng(0)
    topics = [[f"t{t}w{i}" for i in range(30)] for t in range(4)]
    glue = ["the", "of", "and", "a", "to", "in"]
    sentences = []
    for _ in range(600):
        topic = topics[rng.integers(4)]
        words = [topic[rng.integers(30)] if rng.random() < 0.7 else glue[rng.integers(6)] for _ in range(20)]
        sentences.append(" ".join(words))
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(sentences) + "\n")
    return str(path)


def _trainer_tables(output_dir) -> dict[str, np.ndarray]:
    from jaxgraph.train.saver import latest_checkpoint

    path = latest_checkpoint(os.path.join(output_dir, "checkpoints"))
    with np.load(path + ".npz") as z:
        return {k: z[k] for k in ("variables/emb_in", "variables/emb_out", "variables/global_step",
                                  "variables/position", "variables/epoch")}


@pytest.fixture
def trainer_tables():
    """Reads the word2vec trainer's latest checkpoint in an ``--output-dir``: both tables, the global step
    and the corpus position (``{"variables/emb_in": ..., ...}``)."""
    return _trainer_tables


@contextlib.contextmanager
def _python_child(script: str, *args, stdin: bool = False):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    child = subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdin, child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def python_child():
    """``python_child(script, *args, stdin=False)``: a context manager running ``python -c script args``
    with this checkout importable (text pipes for stdout, stderr and optionally stdin); on exit the child
    is killed if still running, reaped, and its pipes closed."""
    return _python_child
