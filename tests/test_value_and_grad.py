"""jaxgraph.value_and_grad / grad: jax.value_and_grad's contract, with IndexedSlices for row-gathered arrays."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxgraph as jg

TABLE = jnp.asarray(np.arange(24.0, dtype=np.float32).reshape(8, 3) / 10.0)
W = jnp.array([0.5, -1.0, 2.0])


def _f(p, ids, scale=1.0):
    return scale * jnp.sum(jnp.tanh(p["emb"][ids] @ p["w"]) ** 2) + jnp.sum(p["w"] ** 2)


def _close(a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_matches_jax_value_and_grad_with_the_table_as_indexed_slices(maybe_jit):
    p, ids = {"emb": TABLE, "w": W}, jnp.array([3, 1, 3])
    value, grads = maybe_jit(jg.value_and_grad(_f))(p, ids, scale=2.0)
    ref_value, ref = jax.value_and_grad(_f)(p, ids, scale=2.0)
    _close(value, ref_value)
    assert jax.tree_util.tree_structure(grads, is_leaf=lambda x: isinstance(x, jg.IndexedSlices)) == \
        jax.tree_util.tree_structure(ref)
    assert isinstance(grads["emb"], jg.IndexedSlices) and grads["emb"].indices.tolist() == [3, 1, 3]
    _close(grads["emb"].to_dense(), ref["emb"])
    _close(grads["w"], ref["w"])
    _close(jg.grad(_f)(p, ids, scale=2.0)["w"], ref["w"])


def test_argnums_tuple_has_aux_and_unconnected_zeros(maybe_jit):
    def f(table, w, unused, ids):
        rows = jnp.take(table, ids, axis=0)
        return jnp.sum(rows @ w), {"rows": rows}

    ids = jnp.array([0, 7])
    (value, aux), (g_table, g_w, g_unused) = maybe_jit(jg.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        TABLE, W, jnp.ones(4), ids)
    (ref_value, _), ref = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(TABLE, W, jnp.ones(4), ids)
    _close(value, ref_value)
    _close(aux["rows"], TABLE[ids])
    _close(g_table.to_dense(), ref[0])
    _close(g_w, ref[1])
    assert isinstance(g_unused, jax.Array) and g_unused.shape == (4,) and not np.any(np.asarray(g_unused))
    g, aux2 = jg.grad(f, has_aux=True)(TABLE, W, jnp.ones(4), ids)
    assert isinstance(g, jg.IndexedSlices) and set(aux2) == {"rows"}


def test_errors_match_jax():
    with pytest.raises(TypeError, match=r"grad requires real- or complex-valued inputs .* but got int32"):
        jg.grad(lambda x: jnp.sum(x))(jnp.arange(3))
    with pytest.raises(TypeError, match=r"only defined for scalar-output functions\. Output had shape: \(3,\)"):
        jg.grad(lambda x: x * 2)(jnp.ones(3))
    with pytest.raises(TypeError, match=r"requires at least 2 positional arguments"):
        jg.grad(lambda x, y: jnp.sum(x), argnums=1)(jnp.ones(3))
    g = jg.grad(lambda t, i: jnp.sum(t[i]), argnums=(0, 1), allow_int=True)(TABLE, jnp.array([1]))
    assert g[1].dtype == jax.dtypes.float0 and isinstance(g[0], jg.IndexedSlices)


def test_variables_and_nnx_params_get_their_gradient_in_their_node():
    p = {"emb": jg.Variable(TABLE, name="emb")}
    g = jg.grad(lambda p: jnp.sum(p["emb"].value[jnp.array([2, 2])]))(p)
    assert isinstance(g["emb"], jg.Variable) and isinstance(g["emb"].value, jg.IndexedSlices)
    assert g["emb"].value.indices.tolist() == [2, 2]
    embed = nnx.Embed(8, 3, rngs=nnx.Rngs(0))
    g = jg.grad(lambda m: jnp.sum(m(jnp.array([5, 1]))))(embed)
    slices = jax.tree_util.tree_leaves(g, is_leaf=lambda x: isinstance(x, jg.IndexedSlices))[0]
    assert isinstance(g.embedding, nnx.Param) and isinstance(slices, jg.IndexedSlices)
    assert slices.indices.tolist() == [5, 1]


def test_jit_with_donation_traces_once_and_runs_the_forward_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def sgd(p, ids):
        value, g = jg.value_and_grad(lambda p: jnp.sum(jnp.cos(p["emb"][ids] @ p["w"])))(p)
        emb = p["emb"].at[g["emb"].indices].add(-0.1 * g["emb"].values, mode="drop")
        return {"emb": emb, "w": p["w"] - 0.1 * g["w"]}, value

    step = jax.jit(sgd, donate_argnums=0)
    p = {"emb": TABLE + 0.0, "w": W + 0.0}
    for ids in ([1, 2], [2, 7], [0, 0]):
        old = p["emb"]
        p, _ = step(p, jnp.array(ids))
        assert old.is_deleted()
    hlo = sgd.lower({"emb": TABLE, "w": W}, jnp.array([1, 2])).compile().as_text()
    assert sum(" cosine(" in line for line in hlo.splitlines()) == 1  # one forward pass


def test_vmap_gives_per_example_indexed_slices():
    ids = jnp.array([[1, 2], [2, 2], [7, 0]])
    f = lambda t, i: jnp.sum(jnp.sin(t[i]) * W)  # noqa: E731
    g = jax.vmap(jg.grad(f), in_axes=(None, 0))(TABLE, ids)
    ref = jax.vmap(jax.grad(f), in_axes=(None, 0))(TABLE, ids)
    assert g.values.shape == (3, 2, 3) and g.indices.tolist() == ids.tolist()
    for k in range(3):
        _close(jg.IndexedSlices(g.values[k], g.indices[k], g.dense_shape).to_dense(), ref[k])
