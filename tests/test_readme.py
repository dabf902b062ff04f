"""The README's training-step example runs as written and does what the text says."""

import re
from pathlib import Path

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


def test_optax_example_runs_and_touches_only_the_gathered_rows():
    namespace: dict = {}
    exec(compile(_block_after("### optax"), "README.md", "exec"), namespace)
    params, opt_state, loss = namespace["params"], namespace["opt_state"], namespace["loss"]
    assert np.isfinite(float(loss))
    emb = np.asarray(params["emb"])
    moved = np.flatnonzero(np.abs(emb).sum(axis=1))
    assert moved.tolist() == [3, 7]  # ids [3, 7, 3]: only those rows of the 50,000 changed
    adam = opt_state[1][0]
    assert np.flatnonzero(np.abs(np.asarray(adam.mu["emb"])).sum(axis=1)).tolist() == [3, 7]
    assert int(adam.count) == 1
