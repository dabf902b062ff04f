"""IndexedSlices, and the sparse gradients compute_gradients captures for gather_rows lookups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hlo_checks import scatters_into, table_buffer_problems

from jaxgraph import IndexedSlices
from jaxgraph import Variable as V
from jaxgraph.gradients import gather_rows
from jaxgraph.nn import embedding_lookup
from jaxgraph.train import GradientDescentOptimizer, MomentumOptimizer


# -- IndexedSlices ---------------------------------------------------------------------------------
def _slices():
    return IndexedSlices(jnp.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]), jnp.array([2, 0, 2]), (4, 2))


def test_is_a_pytree_and_round_trips_through_jit():
    g = _slices()
    leaves, treedef = jax.tree_util.tree_flatten(g)
    assert len(leaves) == 2
    back = jax.tree_util.tree_unflatten(treedef, leaves)
    assert isinstance(back, IndexedSlices) and back.dense_shape == (4, 2)
    out = jax.jit(lambda g: IndexedSlices(g.values * 2, g.indices, g.dense_shape))(g)
    assert isinstance(out, IndexedSlices)
    assert out.dense_shape == (4, 2) and out.shape == (4, 2)
    np.testing.assert_array_equal(np.asarray(out.values), [[2, 20], [4, 40], [6, 60]])
    np.testing.assert_array_equal(np.asarray(out.indices), [2, 0, 2])
    assert out.dtype == jnp.float32


def test_to_dense_sums_repeats():
    np.testing.assert_array_equal(
        np.asarray(_slices().to_dense()), [[2.0, 20.0], [0.0, 0.0], [4.0, 40.0], [0.0, 0.0]]
    )


def test_coalesce_sums_repeats_and_pads_with_static_shape():
    c = _slices().coalesce()
    assert c.values.shape == (3, 2) and c.indices.shape == (3,)  # same number of slots
    np.testing.assert_array_equal(np.asarray(c.indices), [0, 2, 4])  # unique (sorted), then dense_shape[0]
    np.testing.assert_array_equal(np.asarray(c.values), [[2.0, 20.0], [4.0, 40.0], [0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(c.to_dense()), np.asarray(_slices().to_dense()))
    # static shapes hold under jit too
    cj = jax.jit(lambda g: g.coalesce())(_slices())
    np.testing.assert_array_equal(np.asarray(cj.indices), [0, 2, 4])
    np.testing.assert_array_equal(np.asarray(cj.values), np.asarray(c.values))


def test_coalesce_zeroes_the_values_of_padding_slots_given_in_the_input(maybe_jit):
    # Index 4 == dense_shape[0] is the padding index (a sharded lookup's stand-in): its values are
    # dropped by every consumer, and the coalesced padding slot must hold zeros, not their sum.
    g = IndexedSlices(jnp.array([[1.0], [5.0], [2.0], [7.0]]), jnp.array([4, 1, 1, 4]), (4, 1))
    c = maybe_jit(lambda s: s.coalesce())(g)
    np.testing.assert_array_equal(np.asarray(c.indices), [1, 4, 4, 4])
    np.testing.assert_array_equal(np.asarray(c.values), [[7.0], [0.0], [0.0], [0.0]])


def test_coalesce_without_repeats_keeps_everything():
    g = IndexedSlices(jnp.array([[1.0], [2.0]]), jnp.array([3, 1]), (5, 1))
    c = g.coalesce()
    np.testing.assert_array_equal(np.asarray(c.indices), [1, 3])
    np.testing.assert_array_equal(np.asarray(c.values), [[2.0], [1.0]])


def test_scale_and_mul():
    g = _slices()
    for scaled in (g.scale(0.5), g * 0.5, 0.5 * g):
        assert isinstance(scaled, IndexedSlices)
        np.testing.assert_array_equal(np.asarray(scaled.values), [[0.5, 5.0], [1.0, 10.0], [1.5, 15.0]])
        np.testing.assert_array_equal(np.asarray(scaled.indices), [2, 0, 2])
    with pytest.raises(TypeError):
        g * jnp.ones(3)  # only scalars scale an IndexedSlices


def test_shape_validation():
    msg = r"^IndexedSlices indices must be one-dimensional, got shape \(3, 1\)$"
    with pytest.raises(ValueError, match=msg):
        IndexedSlices(jnp.ones((3, 2)), jnp.zeros((3, 1), jnp.int32), (4, 2))
    msg = (r"^IndexedSlices values of shape \(3, 2\) do not match indices of shape \(2,\) "
           r"and dense_shape \(4, 2\)$")
    with pytest.raises(ValueError, match=msg):
        IndexedSlices(jnp.ones((3, 2)), jnp.zeros((2,), jnp.int32), (4, 2))
    with pytest.raises(ValueError, match=r"values of shape \(3, 2\) do not match .* dense_shape \(4, 3\)"):
        IndexedSlices(jnp.ones((3, 2)), jnp.zeros((3,), jnp.int32), (4, 3))


# -- gather_rows -----------------------------------------------------------------------------------
def test_gather_rows_checks_ids():
    table = V(jnp.arange(12.0).reshape(6, 2), name="emb")
    rows = gather_rows(table, jnp.array([[5], [0]]))
    np.testing.assert_array_equal(np.asarray(rows), [[[10, 11]], [[0, 1]]])
    with pytest.raises(ValueError, match=r"^indices\[1\] = 6 is not in \[0, 6\)$"):
        gather_rows(table, jnp.array([0, 6]))
    with pytest.raises(TypeError, match=r"^ids must be integers \(int32 or int64\), got dtype float32$"):
        gather_rows(table, jnp.array([1.0]))


# -- sparse gradients from compute_gradients -------------------------------------------------------
TABLE = np.arange(24.0, dtype=np.float32).reshape(8, 3) / 10.0
W = np.array([0.5, -1.0, 2.0], np.float32)


def _params():
    return {"emb": V(jnp.asarray(TABLE)), "w": V(jnp.asarray(W))}


def _cg(loss, p=None, jit=False):
    p = _params() if p is None else p
    fn = lambda p: GradientDescentOptimizer(1.0).compute_gradients(loss, p)  # noqa: E731
    value, gv = (jax.jit(fn) if jit else fn)(p)
    return value, {v.name: g for g, v in gv}


@pytest.mark.parametrize("jit", [False, True], ids=["nojit", "jit"])
def test_lookup_only_variable_gets_indexed_slices(jit):
    ids = jnp.array([3, 1, 3, 7])

    def loss(p):
        return jnp.sum(jnp.tanh(gather_rows(p["emb"], ids) @ p["w"].value) ** 2)

    value, grads = _cg(loss, jit=jit)
    g = grads["emb"]
    assert isinstance(g, IndexedSlices)
    assert g.dense_shape == (8, 3)
    np.testing.assert_array_equal(np.asarray(g.indices), [3, 1, 3, 7])  # in order, duplicates kept

    def ref(rows, w):
        return jnp.sum(jnp.tanh(rows @ w) ** 2)

    rows = jnp.asarray(TABLE)[np.array([3, 1, 3, 7])]
    row_grads, w_grad = jax.grad(ref, argnums=(0, 1))(rows, jnp.asarray(W))
    np.testing.assert_allclose(np.asarray(g.values), np.asarray(row_grads), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(grads["w"]), np.asarray(w_grad), rtol=1e-5)
    np.testing.assert_allclose(float(value), float(ref(rows, jnp.asarray(W))), rtol=1e-6)
    # and it densifies to the dense autodiff gradient of the table
    dense = jax.grad(lambda t: ref(t[np.array([3, 1, 3, 7])], jnp.asarray(W)))(jnp.asarray(TABLE))
    np.testing.assert_allclose(np.asarray(g.to_dense()), np.asarray(dense), rtol=1e-5, atol=1e-7)


def test_several_lookups_give_one_indexed_slices_in_call_order():
    ids_a, ids_b = jnp.array([0, 2]), jnp.array([[5, 0, 6]])

    def loss(p):
        a = gather_rows(p["emb"], ids_a)
        b = gather_rows(p["emb"], ids_b)
        return jnp.sum(a @ p["w"].value) + 3.0 * jnp.sum(b**2)

    _, grads = _cg(loss)
    g = grads["emb"]
    assert isinstance(g, IndexedSlices)
    np.testing.assert_array_equal(np.asarray(g.indices), [0, 2, 5, 0, 6])
    expected = np.concatenate([np.tile(W, (2, 1)), 6.0 * TABLE[[5, 0, 6]]])
    np.testing.assert_allclose(np.asarray(g.values), expected, rtol=1e-6)


def test_ids_of_rank_two_are_flattened():
    ids = jnp.array([[4, 1, 4], [0, 0, 7]])

    def loss(p):
        rows = gather_rows(p["emb"], ids)  # [2, 3, 3]
        weights = jnp.arange(6.0).reshape(2, 3, 1)
        return jnp.sum(rows * weights)

    _, grads = _cg(loss)
    g = grads["emb"]
    assert g.values.shape == (6, 3) and g.indices.shape == (6,)
    np.testing.assert_array_equal(np.asarray(g.indices), [4, 1, 4, 0, 0, 7])
    np.testing.assert_array_equal(np.asarray(g.values), np.repeat(np.arange(6.0), 3).reshape(6, 3))
    assert g.indices.dtype == jnp.int32


def test_lookup_plus_dense_read_gives_dense_gradient():
    ids = jnp.array([1, 1, 4])

    def loss(p):
        return jnp.sum(gather_rows(p["emb"], ids) ** 2) + jnp.sum(p["emb"].value * 0.5)

    _, grads = _cg(loss)
    g = grads["emb"]
    assert isinstance(g, jax.Array)
    dense = jax.grad(lambda t: jnp.sum(t[np.array([1, 1, 4])] ** 2) + jnp.sum(t * 0.5))(jnp.asarray(TABLE))
    np.testing.assert_allclose(np.asarray(g), np.asarray(dense), rtol=1e-6)


def test_stop_gradient_lookup_gives_none():
    ids = jnp.array([1, 2])

    def loss(p):
        return jnp.sum(jax.lax.stop_gradient(gather_rows(p["emb"], ids)) @ p["w"].value)

    _, grads = _cg(loss)
    assert grads["emb"] is None
    np.testing.assert_allclose(np.asarray(grads["w"]), TABLE[[1, 2]].sum(0), rtol=1e-6)


def test_sparse_gradient_applied_by_gd_matches_dense_update():
    ids = jnp.array([2, 2, 5])

    def loss(p):
        return jnp.sum(jnp.sin(gather_rows(p["emb"], ids)))

    new, _, _ = GradientDescentOptimizer(0.5).minimize(loss, _params())
    dense = jax.grad(lambda t: jnp.sum(jnp.sin(t[np.array([2, 2, 5])])))(jnp.asarray(TABLE))
    np.testing.assert_allclose(np.asarray(new["emb"].value), TABLE - 0.5 * np.asarray(dense), rtol=1e-6)


def test_rows_of_several_axes_sparse_gradient_and_lazy_update():
    # Every other sparse test uses [V, D] tables: here rows are [2, 3], through capture, coalesce and a
    # lazy rule (Momentum gathers and scatters slot rows).
    table = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3) / 10.0
    weights = np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(2, 3)
    ids = np.array([[4, 1], [1, 0]])
    params = {"emb": V(jnp.asarray(table), name="emb"), "w": V(jnp.asarray(weights), name="w")}

    def loss(p):
        return jnp.sum(jnp.sin(embedding_lookup(p["emb"], jnp.asarray(ids))) * p["w"].value)

    opt = MomentumOptimizer(0.5, 0.9)
    _, grads_and_vars = opt.compute_gradients(loss, params, var_list=["emb"])
    grad = grads_and_vars[0][0]
    assert isinstance(grad, IndexedSlices)
    assert grad.values.shape == (4, 2, 3) and grad.dense_shape == (5, 2, 3)
    dense = np.cos(table) * weights * np.bincount(ids.ravel(), minlength=5)[:, None, None]
    np.testing.assert_allclose(np.asarray(grad.to_dense()), dense, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad.coalesce().to_dense()), dense, rtol=1e-6)
    sparse_state, dense_state = opt.init(params, ["emb"]), opt.init(params, ["emb"])
    sparse_params = dense_params = params
    for _ in range(2):  # with zero momentum outside the touched rows, the lazy rule equals the dense one
        sparse_params, sparse_state = opt.apply_gradients([(grad, "emb")], sparse_params, sparse_state)
        dense_params, dense_state = opt.apply_gradients([(grad.to_dense(), "emb")], dense_params, dense_state)
    np.testing.assert_allclose(np.asarray(sparse_params["emb"].value), np.asarray(dense_params["emb"].value),
                               rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(sparse_params["emb"].value)[[2, 3]], table[[2, 3]])
    assert not np.allclose(np.asarray(sparse_params["emb"].value)[[0, 1, 4]], table[[0, 1, 4]])


# -- compiled HLO: nothing table-sized besides the table -------------------------------------------
VOCAB, DIM = 100_000, 64
TABLE_TYPE = f"f32[{VOCAB},{DIM}]"
def _compiled_step(loss):
    opt = GradientDescentOptimizer(0.1)
    params = {"emb": V(jnp.zeros((VOCAB, DIM))), "out": V(jnp.zeros((DIM,)))}

    def step(params, opt_state, ids, neg):
        return opt.minimize(lambda p: loss(p, ids, neg), params, opt_state)

    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, opt.init(params), jnp.zeros((128,), jnp.int32), jnp.zeros((64,), jnp.int32)
    )
    return lowered.compile().as_text()


def _sparse_loss(p, ids, neg):
    # two lookups of one table (true and sampled rows): still one scatter, no copy
    true_logits = gather_rows(p["emb"], ids) @ p["out"].value
    neg_logits = gather_rows(p["emb"], neg) @ p["out"].value
    return jnp.sum(jax.nn.softplus(-true_logits)) + jnp.sum(jax.nn.softplus(neg_logits))


def _dense_loss(p, ids, neg):
    # the same lookups plus a dense read of the table (an L2 penalty): the gradient is dense, as in TF
    table = p["emb"].value
    return _sparse_loss(p, ids, neg) + 1e-4 * jnp.sum(table**2)


def test_compiled_sparse_step_has_no_table_sized_buffer():
    hlo = _compiled_step(_sparse_loss)
    assert "input_output_alias={ {0}: (0, {}, may-alias)" in hlo  # the table is donated into the output
    problems = table_buffer_problems(hlo, TABLE_TYPE)
    assert not problems, "table-sized buffers in the compiled sparse step:\n" + "\n".join(problems)
    assert scatters_into(hlo, TABLE_TYPE) == 1


def test_compiled_dense_step_does_have_table_sized_buffers():
    # the check above can fail: a dense gradient of the same table materialises [V, D] buffers
    problems = table_buffer_problems(_compiled_step(_dense_loss), TABLE_TYPE)
    assert any(" broadcast(" in line for line in problems), problems
    assert len(problems) >= 2, problems
