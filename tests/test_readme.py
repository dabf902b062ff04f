"""The README's examples run as written and do what the text says."""

import contextlib
import io
import re
import textwrap
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


def test_writing_an_optimizer_example_runs_dense_and_lazy_sparse():
    namespace: dict = {}
    exec(compile(_block_after("### Writing an optimizer"), "README.md", "exec"), namespace)
    params, opt, opt_state = namespace["params"], namespace["opt"], namespace["opt_state"]
    emb = np.asarray(params["emb"].value)
    np.testing.assert_allclose(emb[3], [0.9, 1.2], rtol=1e-6)  # m = 0.1 g; scale 1 + 1 = 2 at step 0
    np.testing.assert_array_equal(np.delete(emb, 3, axis=0), np.ones((4, 2)))
    slot = opt.get_slot(opt_state, "emb", "m")
    assert slot.name == "emb/AddSign"
    np.testing.assert_allclose(np.asarray(slot.value)[3], [0.05, -0.1], rtol=1e-6)
    np.testing.assert_array_equal(np.delete(np.asarray(slot.value), 3, axis=0), np.zeros((4, 2)))
    assert int(params["global_step"].value) == 1
    # the same rule on a dense gradient, with the schedule now read at global step 1 (sign_decay 0.5)
    params, opt_state = opt.apply_gradients([(jnp.full((5, 2), 0.5), "emb")], params, opt_state,
                                            global_step="global_step")
    m = np.where(np.arange(5)[:, None] == 3, [0.05, -0.1], 0.0) * 0.9 + 0.05
    expected = emb - 0.1 * (1.0 + 0.5 * np.sign(m)) * 0.5
    np.testing.assert_allclose(np.asarray(params["emb"].value), expected, rtol=1e-6)


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


def test_tf1_migration_recipe_and_its_reverse(tmp_path, monkeypatch):
    tf1_job = Path(__file__).parent / "fixtures" / "tf_checkpoints" / "word2vec_adam"  # written by TF
    recipe = _block_after("### Moving a TF1 model to jaxgraph")
    assert '"tf1_job/"' in recipe
    namespace: dict = {}
    exec(compile(recipe.replace('"tf1_job/"', repr(str(tf1_job))), "README.md", "exec"), namespace)
    params, opt_state = namespace["params"], namespace["opt_state"]
    assert int(params["global_step"].value) == 3 and int(opt_state.iterations) == 3
    assert float(opt_state.non_slots["beta1_power"]) == np.float32(0.9) ** 4  # TF's, after 3 steps

    monkeypatch.chdir(tmp_path)
    exec(compile(_block_after("And the reverse"), "README.md", "exec"), namespace)
    from jaxgraph.train import list_variables, load_checkpoint

    assert list_variables("for_tf") == list_variables(str(tf1_job))
    theirs, ours = load_checkpoint(str(tf1_job)), load_checkpoint("for_tf/model.ckpt-3")
    for name in theirs.get_variable_to_shape_map():
        np.testing.assert_array_equal(ours.get_tensor(name), theirs.get_tensor(name))


def test_several_optimizers_recipe_restores_a_tf1_wide_and_deep_job():
    tf1_job = Path(__file__).parent / "fixtures" / "tf_checkpoints" / "wide_deep"  # written by TF
    recipe = textwrap.dedent(_block_after("* **Several optimizers**"))  # a block inside a list item
    namespace: dict = {}
    exec(compile(recipe.replace('"tf1_job/"', repr(str(tf1_job))), "README.md", "exec"), namespace)
    wide_opt, wide_state = namespace["wide_opt"], namespace["wide_state"]
    deep_opt, deep_state = namespace["deep_opt"], namespace["deep_state"]
    with np.load(tf1_job.parent / "wide_deep.npz") as saved:
        for opt, state in ((wide_opt, wide_state), (deep_opt, deep_state)):
            for v in opt.variables(state):
                np.testing.assert_array_equal(np.asarray(v.value), saved[f"saved/{v.name}"], err_msg=v.name)
        assert [v.name for v in wide_opt.variables(wide_state)][:2] == ["linear/bias/Ftrl", "linear/bias/Ftrl_1"]
        assert int(namespace["params"]["global_step"].value) == saved["saved/global_step"] == 4
