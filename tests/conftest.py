"""Shared test setup: CPU by default, float32 everywhere, x64 off (as users run)."""

import os

import jax
import numpy as np
import pytest


@pytest.fixture(params=[False, True], ids=["nojit", "jit"])
def maybe_jit(request):
    """Run a function eagerly and under jax.jit: every behaviour must hold both ways."""
    return jax.jit if request.param else (lambda f, **kw: f)


# A script run as separate processes by test_sharding.py, not a test module.
collect_ignore = ["distributed/worker.py"]


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
