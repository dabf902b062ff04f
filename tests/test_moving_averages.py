"""ExponentialMovingAverage and get_or_create_global_step: TF's test cases (ported from TF's
``moving_averages_test.py``: decay 0.25, with and without num_updates, Variables and plain arrays, names),
zero_debias, num_updates read from the tree, jit, and the Saver names."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph.train import ExponentialMovingAverage, get_or_create_global_step


def make_tree(dim):
    shape = () if dim == 1 else (dim,)
    return {"v0": jg.Variable(jnp.full(shape, 10.0), name="v0"), "v1": jg.Variable(jnp.full(shape, 30.0), name="v1")}


@pytest.mark.parametrize("dim", [1, 5])
@pytest.mark.parametrize("num_updates, dk", [(None, 0.25), (1, 0.181818)])   # (1 + 1) / (10 + 1)
def test_check_decay(dim, num_updates, dk):
    # TF's _CheckDecay: v0 = 10, v1 = 30, and the plain tensor v0 + v1 (TF names it "add").
    tree = make_tree(dim)
    ema = ExponentialMovingAverage(0.25, num_updates=num_updates)
    tensors = {"add": tree["v0"].value + tree["v1"].value}
    state = ema.init(tree, tensors=tensors)
    assert sorted(state) == ["add/ExponentialMovingAverage", "v0/ExponentialMovingAverage",
                             "v1/ExponentialMovingAverage"]
    assert not any(v.trainable for v in state.values())
    np.testing.assert_allclose(ema.average(state, tree["v0"]).value, np.full(dim if dim > 1 else (), 10.0))
    np.testing.assert_allclose(ema.average(state, "add").value, 0.0)   # a plain array's average starts at 0
    expected = {"v0": 10.0, "v1": 30.0, "add": 0.0}
    for _ in range(2):
        state = ema.apply(tree, state, tensors=tensors)
        expected = {"v0": expected["v0"] * dk + 10.0 * (1 - dk), "v1": expected["v1"] * dk + 30.0 * (1 - dk),
                    "add": expected["add"] * dk + 40.0 * (1 - dk)}
        for name, value in expected.items():
            np.testing.assert_allclose(ema.average(state, name).value, value, rtol=1e-5)


def test_names_and_variables_to_restore():
    # TF's testAverageVariablesNames.
    tree = {"v0": jg.Variable(10.0, name="v0"), "v1": jg.Variable(30.0, name="v1"),
            "v2": jg.Variable(20.0, name="v2", trainable=False)}
    ema = ExponentialMovingAverage(0.25, name="foo_avg")
    assert ema.average_name(tree["v0"]) == "v0/foo_avg" and ema.average_name("add") == "add/foo_avg"
    state = ema.apply(tree, None, tensors={"add": tree["v0"].value + tree["v1"].value})
    # The state goes into the tree (so a Saver stores it); its Variables keep their own names.
    full = {**tree, "ema": state}
    restore = ema.variables_to_restore(full)
    assert sorted(restore) == ["add/foo_avg", "v0/foo_avg", "v1/foo_avg", "v2"]
    assert restore["v0/foo_avg"].name == "v0" and restore["add/foo_avg"].name == "add/foo_avg"
    assert ema.average(state, "v0").name == "v0/foo_avg"
    saved = {v.name for v in jg.global_variables(full)}
    assert {"v0/foo_avg", "v1/foo_avg", "add/foo_avg"} <= saved


def test_control_deps_case_and_averaged_tree():
    # TF's testAverageVariablesWithControlDeps: v1 = [10] averaged, then v1 := [20], apply -> 17.5.
    tree = {"v1": jg.Variable(jnp.array([10.0]), name="v1"), "frozen": jg.Variable(1.0, trainable=False)}
    ema = ExponentialMovingAverage(0.25)
    state = ema.init(tree)
    tree = {**tree, "v1": tree["v1"].assign(jnp.array([20.0]))}
    state = ema.apply(tree, state)
    assert ema.average(state, "v1").value.tolist() == [17.5]
    averaged = ema.averaged_tree(tree, state)
    assert averaged["v1"].value.tolist() == [17.5] and float(averaged["frozen"].value) == 1.0
    assert ema.average(state, "frozen") is None


def test_zero_debias_for_arrays_only():
    decay = 0.9
    tree = {"w": jg.Variable(jnp.array([2.0]), name="w")}
    ema = ExponentialMovingAverage(decay, zero_debias=True)
    state = ema.init(tree, tensors={"loss": jnp.float32(0.0)})
    assert sorted(state) == ["loss/ExponentialMovingAverage", "loss/ExponentialMovingAverage/biased",
                             "loss/ExponentialMovingAverage/local_step", "w/ExponentialMovingAverage"]
    values = [4.0, 1.0, 3.0]
    biased = 0.0
    for step, value in enumerate(values, start=1):
        state = ema.apply(tree, state, tensors={"loss": jnp.float32(value)})
        biased = biased * decay + value * (1 - decay)
        np.testing.assert_allclose(ema.average(state, "loss").value, biased / (1 - decay**step), rtol=1e-5)
    # The first debiased average is the first value itself; a Variable's average is not debiased.
    np.testing.assert_allclose(ema.average(state, "w").value, [2.0])


def test_num_updates_read_from_the_tree_under_jit():
    step_var = jg.create_global_step()
    tree = {"w": jg.Variable(jnp.array([0.0]), name="w"), "global_step": step_var}
    ema = ExponentialMovingAverage(0.99, num_updates=step_var)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def advance(tree, state):
        tree = {**tree, "w": tree["w"].assign(tree["w"].value + 1.0),
                "global_step": tree["global_step"].assign_add(1)}
        return tree, ema.apply(tree, state)

    state = ema.init(tree)
    avg = 0.0
    for _ in range(4):
        tree, state = advance(tree, state)
        n = float(tree["global_step"].value)
        dk = min(0.99, (1 + n) / (10 + n))
        avg = avg * dk + float(tree["w"].value[0]) * (1 - dk)
        np.testing.assert_allclose(ema.average(state, "w").value, [avg], rtol=1e-6)
    explicit = ema.apply(tree, state, num_updates=1000)   # min(0.99, 1001/1010) = 0.99
    np.testing.assert_allclose(explicit["w/ExponentialMovingAverage"].value, [avg * 0.99 + 4.0 * 0.01], rtol=1e-6)


def test_errors():
    tree = {"i": jg.Variable(jnp.array([1, 2]), name="i"), "w": jg.Variable(1.0, name="w")}
    ema = ExponentialMovingAverage(0.5)
    with pytest.raises(TypeError, match="The variables must be half, float, or double: i"):
        ema.init(tree, var_list=["i"])
    with pytest.raises(ValueError, match="not a variable of the tree"):
        ema.init(tree, var_list=["nope"])
    with pytest.raises(TypeError, match="tensors="):
        ema.init(tree, var_list=[jnp.ones(2)])
    with pytest.raises(ValueError, match="not in the tree given to apply"):
        ExponentialMovingAverage(0.5, num_updates="global_step").apply(tree)
    with pytest.raises(ValueError, match="has none"):
        ema.average_name(jg.Variable(1.0))
    with pytest.raises(ValueError, match="also a variable"):
        ema.init(tree, tensors={"w": 1.0})


def test_get_or_create_global_step():
    tree = {"w": jg.Variable(jnp.zeros(2), name="w")}
    new, step = get_or_create_global_step(tree)
    assert "global_step" not in tree and new["global_step"] is step
    assert jg.GraphKeys.GLOBAL_STEP in step.collections and not step.trainable
    again, same = get_or_create_global_step(new)
    assert again is new and same.name == "global_step"
    with pytest.raises(TypeError, match="can only add one to a dict, not a list"):
        get_or_create_global_step([jg.Variable(1.0)])
    with pytest.raises(ValueError, match="is not a global step"):
        get_or_create_global_step({"global_step": jg.Variable(0.0)})


def test_variables_to_restore_as_assignment_map_of_a_tf_checkpoint(tmp_path):
    # TF1's evaluation recipe: a checkpoint holding the averages, restored into the variables by name map.
    tree = {"w": jg.Variable(jnp.array([10.0, 1.0]), name="w"), "global_step": jg.create_global_step()}
    ema = ExponentialMovingAverage(0.5)
    state = ema.init(tree)
    tree = {**tree, "w": tree["w"].assign(jnp.array([20.0, 3.0]))}
    state = ema.apply(tree, state)                                   # average: [15, 2]
    path = jg.train.Saver(format="tf").save({**tree, "ema": state}, None, str(tmp_path / "model.ckpt"))
    fresh = {"w": jg.Variable(jnp.zeros(2), name="w"), "global_step": jg.create_global_step()}
    restored, _ = jg.train.Saver().restore(fresh, None, path, assignment_map=ema.variables_to_restore(fresh))
    np.testing.assert_array_equal(restored["w"].value, [15.0, 2.0])
