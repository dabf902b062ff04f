"""The README's examples run as written and do what the text says."""

import contextlib
import io
import re
from pathlib import Path
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np

README = Path(__file__).parents[1] / "README.md"


def _block_after(heading: str) -> str:
    text = README.read_text()
    section = text.split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_training_step_example_runs_and_updates_sparsely():
    namespace: dict = {}
    exec(compile(_block_after("## A training step, TF1 style"), "README.md", "exec"), namespace)
    params, loss = namespace["params"], namespace["loss"]
    assert np.isfinite(float(loss))
    assert int(params["global_step"].value) == 1
    assert [v.name for v in namespace["jg"].trainable_variables(params)] == ["model/embeddings", "model/w"]
    assert params["w"].value.shape == (128, 1)
    assert float(jnp.abs(params["w"].value).sum()) > 0.0  # w started at zero and got a gradient


def _blocks_of(heading: str) -> list[str]:
    """Every python block of a README section, up to the next heading of the same or a higher level."""
    level = len(heading.split(" ", 1)[0])
    lines = README.read_text().split(heading, 1)[1].splitlines()
    in_code, end = False, len(lines)
    for i, line in enumerate(lines):
        in_code ^= line.startswith("```")
        if not in_code and re.match(rf"#{{1,{level}}} ", line):
            end = i
            break
    return re.findall(r"```python\n(.*?)```", "\n".join(lines[:end]) + "\n", re.S)


def test_jax_codebases_examples_run_and_train_sparsely():
    namespace: dict = {}
    out = io.StringIO()
    blocks = _blocks_of("## jaxgraph in JAX codebases")
    assert len(blocks) == 5
    with contextlib.redirect_stdout(out):
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    ns = SimpleNamespace(**namespace)
    # the plain dict: only the looked-up rows moved
    changed = np.flatnonzero(np.any(np.asarray(ns.params["emb"]) != np.asarray(
        ns.jax.random.normal(ns.jax.random.PRNGKey(0), (100_000, 64))), axis=1))
    assert changed.tolist() == [3, 7]
    assert np.isfinite(float(ns.loss))
    # Equinox and NNX steps ran; NNX's batch statistics were kept
    assert type(ns.model).__name__ == "Model"
    assert np.any(np.asarray(ns.net.bn.mean.get_value()) != 0.0)
    # value_and_grad: a sparse gradient of the 1M-row table
    assert ns.g.indices.tolist() == [3, 999_999, 3] and ns.g.values.shape == (3, 32)
    assert np.flatnonzero(np.any(np.asarray(ns.table) != 0.0, axis=1)).tolist() == [3, 999_999]
    # describe() prints what the README shows
    shown = [line[2:] for line in blocks[4].splitlines() if line.startswith("# ")]
    assert out.getvalue().splitlines()[-len(shown):] == shown
