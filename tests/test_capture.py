"""Sparse gradients read from the traced program (jaxgraph/capture.py).

Every row-gather form gets an IndexedSlices equal to JAX's dense gradient after to_dense(), with the ids
the gather means (wrapped, clamped, or the padding index); every other read is dense; an unconnected
array gets None; nested constructs are captured; and the compiled, donated step over a 100,000-row table
has no table-sized buffer for any form.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hlo_checks import scatters_into, table_buffer_problems

import jaxgraph as jg
from jaxgraph.gradients import gather_rows
from jaxgraph.train import GradientDescentOptimizer

V, D = 10, 3
TABLE = jnp.asarray(np.arange(V * D, dtype=np.float32).reshape(V, D) / 10.0)
W = jnp.array([0.5, -1.0, 2.0])
IDS = jnp.array([3, 1, 3, 9])
KEY = jax.random.PRNGKey(7)
SAMPLED = jax.random.randint(KEY, (5,), 0, V)


@jax.custom_vjp
def _double(rows):
    return rows * 2.0


_double.defvjp(lambda r: (r * 2.0, None), lambda _, g: (g * 3.0,))  # a deliberately non-standard gradient


@jax.custom_vjp
def _double_rows_of(table, ids):
    return table[ids] * 2.0


_double_rows_of.defvjp(lambda t, i: (t[i] * 2.0, (i, t.shape)),
                       lambda res, g: (jnp.zeros(res[1]).at[res[0]].add(g * 2.0), None))

# name -> (read of the table, the ids its IndexedSlices must carry)
SPARSE_FORMS = {
    "x[ids]": (lambda t: t[IDS], [3, 1, 3, 9]),
    "x[ids, :]": (lambda t: t[IDS, :], [3, 1, 3, 9]),
    "x[ids[:, None]]": (lambda t: t[IDS[:, None]], [3, 1, 3, 9]),
    "x[2-D ids]": (lambda t: t[IDS.reshape(2, 2)], [3, 1, 3, 9]),
    "x[numpy ids]": (lambda t: t[np.array([4, 4, 0])], [4, 4, 0]),
    "negative ids wrap": (lambda t: t[jnp.array([-1, -10, 2])], [9, 0, 2]),
    "jnp.take": (lambda t: jnp.take(t, IDS, axis=0), [3, 1, 3, 9]),
    "take mode=clip": (lambda t: jnp.take(t, jnp.array([3, 12, -20, 2]), axis=0, mode="clip"), [3, 9, 0, 2]),
    # fill mode wraps -1 as numpy does; an id still out of range becomes the padding index V
    "take mode=fill": (lambda t: jnp.take(t, jnp.array([3, 12, -1, 2]), axis=0, mode="fill", fill_value=0),
                       [3, V, 9, 2]),
    "x.at[ids].get()": (lambda t: t.at[IDS].get(), [3, 1, 3, 9]),
    "at.get fill, out of range": (lambda t: t.at[jnp.array([1, 10, -11])].get(mode="fill", fill_value=0.0),
                                  [1, V, V]),
    "embedding_lookup": (lambda t: jg.nn.embedding_lookup(t, IDS), [3, 1, 3, 9]),
    "embedding_lookup max_norm": (lambda t: jg.nn.embedding_lookup(t, IDS, max_norm=1.0), [3, 1, 3, 9]),
    "gather_rows padded": (lambda t: gather_rows(t, jnp.array([2, V, 5]), padded=True), [2, V, 5]),
    "ids computed in the loss": (lambda t: t[jax.random.randint(KEY, (5,), 0, V)], SAMPLED.tolist()),
    "two gathers, duplicates kept": (lambda t: jnp.concatenate([t[IDS], t[jnp.array([0, 3])]]),
                                     [3, 1, 3, 9, 0, 3]),
    "x[i], traced scalar": (lambda t: t[IDS[0]][None], [3]),
    "dynamic_slice of rows": (lambda t: jax.lax.dynamic_slice_in_dim(t, IDS[1], 3, axis=0), [1, 2, 3]),
    "dynamic_slice clamped": (lambda t: jax.lax.dynamic_slice_in_dim(t, IDS[3], 3, axis=0), [7, 8, 9]),
    "vmap of x[i]": (lambda t: jax.vmap(lambda i: t[i])(IDS), [3, 1, 3, 9]),
    "inside jit": (lambda t: jax.jit(lambda t, i: t[i])(t, IDS), [3, 1, 3, 9]),
    "lax.scan body": (lambda t: jax.lax.scan(lambda c, i: (c, t[i]), 0.0, IDS.reshape(2, 2))[1].reshape(4, D),
                      [3, 1, 3, 9]),
    "jax.checkpoint": (lambda t: jax.checkpoint(lambda t: jnp.sin(t[IDS]))(t), [3, 1, 3, 9]),
    # both branches' reads are slots; the branch not taken contributes padding ids and zero rows
    "lax.cond": (lambda t: jax.lax.cond(IDS[0] > 2, lambda t: t[IDS], lambda t: t[IDS[::-1]] * 2.0, t),
                 [V, V, V, V, 3, 1, 3, 9]),
    "custom_vjp of the rows": (lambda t: _double(t[IDS]), [3, 1, 3, 9]),
    "bfloat16 convert": (lambda t: t.astype(jnp.bfloat16)[IDS].astype(jnp.float32), [3, 1, 3, 9]),
    "reshape keeping rows": (lambda t: t.reshape(V, D, 1)[IDS][..., 0], [3, 1, 3, 9]),
}

DENSE_FORMS = {
    "slice": lambda t: t[2:6],
    "static row": lambda t: t[3][None],
    "column": lambda t: jnp.tile(t[:, 1:2], (1, D))[:4],
    "gather along axis 1": lambda t: t[:, jnp.array([0, 2, 1])][:4],
    "transpose": lambda t: t.T[:, IDS].T,
    "arithmetic before the gather": lambda t: (t * 2.0)[IDS],
    "gather plus a dense read": lambda t: t[IDS] + jnp.sum(t),
    "custom_vjp given the table": lambda t: _double_rows_of(t, IDS),
    "scan over the table's rows": lambda t: jax.lax.scan(lambda c, r: (c, r * 2.0), 0.0, t)[1][:4],
}


def _loss(read):
    return lambda t, w: jnp.sum(jnp.tanh(read(t) @ w) ** 2)


def _dense_grads(read):
    return jax.grad(_loss(read), argnums=(0, 1))(TABLE, W)


@pytest.mark.parametrize("name", list(SPARSE_FORMS))
def test_row_gather_forms_give_indexed_slices_equal_to_dense_grad(name):
    # under jit (the way steps run; test_sparse.py and test_value_and_grad.py cover eager calls)
    read, ids = SPARSE_FORMS[name]
    g_table, g_w = jax.jit(jg.grad(_loss(read), argnums=(0, 1)))(TABLE, W)
    dense_table, dense_w = _dense_grads(read)
    assert isinstance(g_table, jg.IndexedSlices), type(g_table)
    assert g_table.dense_shape == (V, D)
    assert g_table.indices.dtype == jnp.int32
    assert np.asarray(g_table.indices).tolist() == ids
    np.testing.assert_allclose(np.asarray(g_table.to_dense()), np.asarray(dense_table), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(g_w), np.asarray(dense_w), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(DENSE_FORMS))
def test_any_other_read_gives_a_dense_gradient(name):
    read = DENSE_FORMS[name]
    g_table, _ = jax.jit(jg.grad(_loss(read), argnums=(0, 1)))(TABLE, W)
    assert isinstance(g_table, jax.Array), type(g_table)
    np.testing.assert_allclose(np.asarray(g_table), np.asarray(_dense_grads(read)[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_sharded_embedding_lookup_gives_one_indexed_slices_per_shard(strategy, maybe_jit):
    shards = {"s0": TABLE[:5], "s1": TABLE[5:]}  # 10 rows over 2 shards: both strategies own 5 each
    ids = jnp.array([0, 7, 4, 4, 9])

    def loss(p):
        return jnp.sum(jnp.tanh(jg.nn.embedding_lookup([p["s0"], p["s1"]], ids, partition_strategy=strategy) @ W))

    grads = maybe_jit(jg.grad(loss))(shards)
    dense = jax.grad(loss)(shards)
    for name in ("s0", "s1"):
        g = grads[name]
        assert isinstance(g, jg.IndexedSlices)
        # every id is looked up in every shard; ids a shard does not own carry its padding index (5)
        assert g.indices.shape == (5,) and set(np.asarray(g.indices).tolist()) <= set(range(6))
        np.testing.assert_allclose(np.asarray(g.to_dense()), np.asarray(dense[name]), rtol=1e-5, atol=1e-6)


def test_no_index_is_ever_negative_and_out_of_range_rows_stay_untouched():
    # .at[neg].add(mode="drop") wraps negative indices in JAX: a negative index would update a real row.
    def loss(p):
        rows = p["emb"].at[jnp.array([-12, 2, 11, -1])].get(mode="fill", fill_value=0.0)
        return jnp.sum(rows * 3.0)

    p = {"emb": TABLE}
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(loss, p)
    g = gv[0][0]
    assert np.asarray(g.indices).tolist() == [V, 2, V, 9]
    new, _, _ = GradientDescentOptimizer(1.0).minimize(loss, p)
    expected = np.asarray(TABLE).copy()
    expected[[2, 9]] -= 3.0
    np.testing.assert_allclose(np.asarray(new["emb"]), expected, rtol=1e-6)


def test_unconnected_reads_give_none_in_compute_gradients_and_zeros_in_grad():
    def loss(p):
        return (
            jnp.sum(jax.lax.stop_gradient(p["stopped"][IDS]) @ p["w"])
            + jnp.sum(jnp.floor(p["floored"][IDS]))  # zero derivative: TF registers no gradient
            + jnp.sum(p["as_int"][IDS].astype(jnp.int32)).astype(jnp.float32)
            + p["unused"].shape[0]
        )

    p = {name: TABLE for name in ("stopped", "floored", "as_int", "unused")} | {"w": W}
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(loss, p)
    grads = {v.name: g for g, v in gv}
    assert {n for n, g in grads.items() if g is None} == {"stopped", "floored", "as_int", "unused"}
    zeros = jg.grad(loss)(p)
    for name in ("stopped", "floored", "as_int", "unused"):
        assert isinstance(zeros[name], jax.Array) and not np.any(np.asarray(zeros[name]))


def test_a_summary_of_the_table_in_the_loss_keeps_its_gradient_sparse():
    # Feeding only a summary output, the histogram cannot affect the loss: it is not a dense use.
    def loss(p):
        jg.summary.histogram("emb", p["emb"])
        value = jnp.sum(p["emb"][IDS] @ W)
        jg.summary.scalar("loss", value)
        return value

    @jax.jit
    def step(p):
        with jg.summary.record_summaries() as summaries:
            _, gv = GradientDescentOptimizer(1.0).compute_gradients(loss, p)
        return gv[0][0], summaries

    g, summaries = step({"emb": TABLE})
    assert isinstance(g, jg.IndexedSlices)
    assert sorted(summaries) == ["emb", "loss"] and summaries["emb"].shape == (30, 3)
    np.testing.assert_allclose(float(summaries["loss"]), float(jnp.sum(TABLE[IDS] @ W)), rtol=1e-6)


def test_jitted_step_traces_once_with_new_ids_each_call():
    opt = GradientDescentOptimizer(0.5)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s, ids):
        return opt.minimize(lambda p: jnp.sum(jnp.take(p["emb"], ids, axis=0) ** 2), p, s)

    p = {"emb": TABLE}
    s = opt.init(p)
    for ids in ([1, 2], [2, 2], [9, 0]):
        p, s, _ = step(p, s, jnp.array(ids))
    # d/drow of row**2 is 2 row, so a step with learning rate 0.5 zeroes each looked-up row
    np.testing.assert_allclose(np.asarray(p["emb"])[[0, 1, 2, 9]], 0.0, atol=1e-7)
    np.testing.assert_allclose(np.asarray(p["emb"])[3:9], np.asarray(TABLE)[3:9])


# -- compiled HLO: nothing table-sized besides the table, one scatter -----------------------------------
HLO_V, HLO_D = 100_000, 8
HLO_TABLE = f"f32[{HLO_V},{HLO_D}]"

HLO_FORMS = {
    "x[ids]": lambda t, ids, key: t[ids],
    "x[ids, :]": lambda t, ids, key: t[ids, :],
    "x[ids[:, None]]": lambda t, ids, key: t[ids[:, None]][:, 0],
    "jnp.take": lambda t, ids, key: jnp.take(t, ids, axis=0),
    "take mode=clip": lambda t, ids, key: jnp.take(t, ids, axis=0, mode="clip"),
    "take mode=fill": lambda t, ids, key: jnp.take(t, ids, axis=0, mode="fill", fill_value=0),
    "x.at[ids].get()": lambda t, ids, key: t.at[ids].get(),
    "embedding_lookup": lambda t, ids, key: jg.nn.embedding_lookup(t, ids),
    "true and sampled rows": lambda t, ids, key: jnp.concatenate(
        [t[ids], t[jax.random.randint(key, (64,), 0, HLO_V)]]),
    "vmap of x[i]": lambda t, ids, key: jax.vmap(lambda i: t[i])(ids),
    "lax.scan body": lambda t, ids, key: jax.lax.scan(lambda c, i: (c, t[i]), 0.0, ids.reshape(4, -1))[1]
    .reshape(-1, HLO_D),
    "jax.checkpoint": lambda t, ids, key: jax.checkpoint(lambda t: t[ids])(t),
    "lax.cond": lambda t, ids, key: jax.lax.cond(ids[0] > 5, lambda t: t[ids], lambda t: t[ids[::-1]], t),
}


def _compiled_step(read, head=jax.nn.softplus):
    opt = GradientDescentOptimizer(0.1)
    params = {"emb": jnp.zeros((HLO_V, HLO_D)), "out": jnp.zeros((HLO_D,))}

    def step(params, opt_state, ids, key):
        def loss(p):
            return jnp.sum(head(read(p["emb"], ids, key) @ p["out"]))
        return opt.minimize(loss, params, opt_state)

    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, opt.init(params), jnp.zeros((128,), jnp.int32), jax.random.PRNGKey(0))
    return lowered.compile().as_text()


@pytest.mark.parametrize("name", list(HLO_FORMS))
def test_compiled_donated_step_has_no_table_sized_buffer(name):
    hlo = _compiled_step(HLO_FORMS[name])
    assert "input_output_alias={ {0}: (0, {}, may-alias)" in hlo  # the table is donated into the output
    problems = table_buffer_problems(hlo, HLO_TABLE)
    assert not problems, "table-sized buffers in the compiled step:\n" + "\n".join(problems)
    assert scatters_into(hlo, HLO_TABLE) == 1


@pytest.mark.parametrize("name", ["x[ids]", "true and sampled rows", "embedding_lookup"])
def test_a_loss_linear_in_the_rows_also_updates_the_table_in_place(name):
    # The rows' gradient then does not depend on the rows read: nothing but jaxgraph's data dependency
    # orders the forward gathers before the in-place scatter (without it XLA copies the table twice).
    hlo = _compiled_step(HLO_FORMS[name], head=lambda z: z)
    problems = table_buffer_problems(hlo, HLO_TABLE)
    assert not problems, "table-sized buffers in the compiled step:\n" + "\n".join(problems)
    assert scatters_into(hlo, HLO_TABLE) == 1


def test_compiled_step_with_a_dense_read_does_have_table_sized_buffers():
    # the check above can fail: one dense read of the same table makes its gradient [V, D]
    hlo = _compiled_step(lambda t, ids, key: t[ids] + 1e-3 * jnp.sum(t))
    assert table_buffer_problems(hlo, HLO_TABLE)
