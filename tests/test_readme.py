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
