"""embedding_lookup_sparse / safe_embedding_lookup_sparse: TF's test cases (ported from TF's
``embedding_ops_test.py``), a reference in numpy for every combiner, sharded tables, gradients over the
real ids only, and lazy optimizers leaving every other row bit-identical."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices, SparseTensor, sparse
from jaxgraph.nn import embedding_lookup_sparse, safe_embedding_lookup_sparse
from jaxgraph.nn.embedding import embedding_lookup_masked

RNG = np.random.default_rng(0)
TABLE = RNG.normal(size=(4, 4)).astype(np.float32)

# TF's _ids_and_weights_2d: row 0 several ids (one invalid), row 1 only invalid, row 2 none,
# row 3 one id, row 4 only weights <= 0.
INDICES_2D = [[0, 0], [0, 1], [0, 2], [1, 0], [3, 0], [4, 0], [4, 1]]
IDS_2D = [0, 1, -1, -1, 2, 0, 1]
WEIGHTS_2D = [1.0, 2.0, 1.0, 1.0, 3.0, 0.0, -0.5]
INDICES_3D = [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]]


def sp(indices, values, shape):
    return SparseTensor(jnp.array(indices), jnp.array(values), shape)


def ids_2d():
    return sp(INDICES_2D, IDS_2D, [5, 4]), sp(INDICES_2D, WEIGHTS_2D, [5, 4])


def ids_3d():
    return sp(INDICES_3D, IDS_2D, [2, 3, 4]), sp(INDICES_3D, WEIGHTS_2D, [2, 3, 4])


# -- TF's SafeEmbeddingLookupSparseTest ---------------------------------------------------------------
def test_safe_return_zero_vector():
    ids, weights = ids_2d()
    out = jax.jit(safe_embedding_lookup_sparse)(TABLE, ids, weights)
    w = TABLE
    np.testing.assert_allclose(out, [(1.0 * w[0] + 2.0 * w[1]) / 3.0, [0] * 4, [0] * 4, w[2], [0] * 4], rtol=1e-6)


def test_safe_return_special_vector():
    ids, weights = ids_2d()
    out = jax.jit(lambda t, i, w: safe_embedding_lookup_sparse(t, i, w, default_id=3))(TABLE, ids, weights)
    w = TABLE
    np.testing.assert_allclose(out, [(1.0 * w[0] + 2.0 * w[1]) / 3.0, w[3], w[3], w[2], w[3]], rtol=1e-6)


def test_safe_no_weights_and_partitioned():
    ids, _ = ids_2d()
    w = TABLE
    expected = [(w[0] + w[1]) / 2.0, [0] * 4, [0] * 4, w[2], (w[0] + w[1]) / 2.0]
    # fixed_size_partitioner(3) over 4 rows, default strategy "div": shards of 2, 1, 1 rows.
    shards = [TABLE[:2], TABLE[2:3], TABLE[3:]]
    both = jax.jit(lambda t, s, i: (safe_embedding_lookup_sparse(t, i, None), safe_embedding_lookup_sparse(s, i, None)))
    for out in both(TABLE, shards, ids):
        np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_safe_3d():
    ids, weights = ids_3d()
    w = TABLE
    zero = [0] * 4
    outs = jax.jit(lambda t, i, ws: (
        safe_embedding_lookup_sparse(t, i, ws),
        safe_embedding_lookup_sparse(t, i, ws, default_id=3),
        safe_embedding_lookup_sparse([t[:2], t[2:3], t[3:]], i, None),
    ))(TABLE, ids, weights)
    np.testing.assert_allclose(outs[0], [[(1.0 * w[0] + 2.0 * w[1]) / 3.0, zero, zero], [w[2], zero, zero]],
                               rtol=1e-6)
    np.testing.assert_allclose(outs[1], [[(1.0 * w[0] + 2.0 * w[1]) / 3.0, w[3], w[3]], [w[2], w[3], w[3]]],
                               rtol=1e-6)
    np.testing.assert_allclose(outs[2], [[(w[0] + w[1]) / 2.0, zero, zero], [w[2], (w[0] + w[1]) / 2.0, zero]],
                               rtol=1e-6)


def test_safe_inconsistent_shard_dtypes():
    ids, _ = ids_2d()
    with pytest.raises(TypeError, match="same dtype"):
        safe_embedding_lookup_sparse([TABLE[:2], TABLE[2:3].astype(jnp.bfloat16), TABLE[3:]], ids)


def test_safe_sum_keeps_non_positive_weights():
    ids, weights = ids_2d()
    out = jax.jit(lambda t, i, w: safe_embedding_lookup_sparse(t, i, w, combiner="sum"))(TABLE, ids, weights)
    np.testing.assert_allclose(out[4], 0.0 * TABLE[0] - 0.5 * TABLE[1], rtol=1e-6)


# -- embedding_lookup_sparse against a reference --------------------------------------------------------
def reference(table, rows, weights, combiner, max_norm=None):
    """TF's documented math, row by row, in float64."""
    table = np.asarray(table, np.float64)
    out = np.zeros((len(rows), table.shape[1]))
    for r, (ids, ws) in enumerate(zip(rows, weights, strict=True)):
        if not ids:
            continue
        e = table[ids]
        if max_norm is not None:
            norms = np.linalg.norm(e, axis=1, keepdims=True)
            e = e * max_norm / np.maximum(norms, max_norm)
        ws = np.asarray(ws, np.float64)[:, None]
        s = np.sum(e * ws, axis=0)
        denom = {"sum": 1.0, "mean": ws.sum(), "sqrtn": np.sqrt((ws**2).sum())}[combiner]
        out[r] = s / denom if denom != 0 else 0.0
    return out


ROWS = [[3, 1, 3], [], [0], [5, 6, 2, 2], []]          # duplicates and empty rows (last one too)
WEIGHTS = [[0.5, 2.0, 1.0], [], [3.0], [1.0, -0.5, 0.25, 2.0], []]
BIG = RNG.normal(size=(7, 3)).astype(np.float32)


COMBINERS = ("mean", "sqrtn", "sum")


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shards", [1, 3])
def test_lookup_sparse_matches_reference(weighted, shards):
    ids = sparse.from_ragged(ROWS, capacity=12)
    weights = sparse.from_ragged(WEIGHTS, capacity=12) if weighted else None
    params = BIG if shards == 1 else [BIG[p::shards] for p in range(shards)]   # "mod" layout
    outs = jax.jit(lambda p, i, w: [embedding_lookup_sparse(p, i, w, combiner=c) for c in COMBINERS])(
        params, ids, weights)
    ws = WEIGHTS if weighted else [[1.0] * len(r) for r in ROWS]
    for combiner, out in zip(COMBINERS, outs, strict=True):
        np.testing.assert_allclose(out, reference(BIG, ROWS, ws, combiner), rtol=1e-5, atol=1e-6)


def test_lookup_sparse_eager_matches_jit():
    ids = sparse.from_ragged(ROWS, capacity=12)
    weights = sparse.from_ragged(WEIGHTS, capacity=12)
    eager = embedding_lookup_sparse(BIG, ids, weights, combiner="sqrtn")
    np.testing.assert_allclose(eager, reference(BIG, ROWS, WEIGHTS, "sqrtn"), rtol=1e-5, atol=1e-6)


def test_lookup_sparse_div_shards_and_max_norm():
    ids = sparse.from_ragged(ROWS)
    shards = [BIG[:3], BIG[3:5], BIG[5:]]                 # "div" for 7 rows over 3 shards
    out = jax.jit(lambda s, i: embedding_lookup_sparse(s, i, None, partition_strategy="div", max_norm=0.5))(
        shards, ids)
    ws = [[1.0] * len(r) for r in ROWS]
    np.testing.assert_allclose(out, reference(BIG, ROWS, ws, "mean", max_norm=0.5), rtol=1e-5, atol=1e-6)


def test_lookup_sparse_tf_docstring_example():
    # TF's docstring: [0,0]: id 1 w 2.0; [0,1]: id 3 w 0.5; [1,0]: id 0 w 1.0; [2,3]: id 1 w 3.0.
    params = RNG.normal(size=(10, 20)).astype(np.float32)
    idx = [[0, 0], [0, 1], [1, 0], [2, 3]]
    out = jax.jit(embedding_lookup_sparse)(params, sp(idx, [1, 3, 0, 1], [3, 4]), sp(idx, [2.0, 0.5, 1.0, 3.0], [3, 4]))
    np.testing.assert_allclose(out[0], (params[1] * 2.0 + params[3] * 0.5) / 2.5, rtol=1e-6)
    np.testing.assert_allclose(out[1], params[0], rtol=1e-6)
    np.testing.assert_allclose(out[2], params[1], rtol=1e-6)


def test_low_precision_tables_combine_in_float32():
    ids = sparse.from_ragged([[0, 1, 2]])
    table = jnp.asarray(BIG, jnp.bfloat16)
    out = jax.jit(lambda t, i: embedding_lookup_sparse(t, i, None, combiner="sqrtn"))(table, ids)
    assert out.dtype == jnp.bfloat16
    expected = (np.asarray(table[:3], np.float32).sum(0) / np.sqrt(3.0)).astype(jnp.bfloat16)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(expected))


# -- gradients: IndexedSlices over the real ids only --------------------------------------------------------
def test_gradient_is_indexed_slices_over_distinct_real_ids():
    params = {"emb": jg.Variable(BIG, name="emb")}
    ids = sparse.from_ragged(ROWS, capacity=12)
    weights = sparse.from_ragged(WEIGHTS, capacity=12)

    def loss(p):
        return jnp.sum(embedding_lookup_sparse(p["emb"], ids, weights, combiner="sqrtn") ** 2)

    _, [(grad, _)] = jg.train.GradientDescentOptimizer(1.0).compute_gradients(loss, params)
    assert isinstance(grad, IndexedSlices)
    real = sorted({i for r in ROWS for i in r})
    indices = np.asarray(grad.indices)
    assert indices[: len(real)].tolist() == real and (indices[len(real):] == 7).all()   # 7: the padding index
    assert not np.asarray(grad.values[len(real):]).any()
    dense = jax.grad(lambda t: jnp.sum(embedding_lookup_sparse(t, ids, weights, combiner="sqrtn") ** 2))(BIG)
    np.testing.assert_allclose(grad.to_dense(), dense, rtol=1e-6, atol=1e-7)


def test_safe_gradient_with_default_id_updates_that_row():
    params = {"emb": jg.Variable(TABLE, name="emb")}
    ids, weights = ids_2d()
    grad = jax.jit(lambda p, i, w: jg.train.GradientDescentOptimizer(1.0).compute_gradients(
        lambda q: jnp.sum(safe_embedding_lookup_sparse(q["emb"], i, w, default_id=3)), p)[1][0][0])(
        params, ids, weights)
    touched = sorted(set(np.asarray(grad.indices).tolist()) - {4})
    assert touched == [0, 1, 2, 3]   # row 3 is default_id's, looked up for the three empty rows (as TF)
    np.testing.assert_allclose(np.asarray(grad.to_dense())[3], [3.0] * 4, rtol=1e-6)


@pytest.mark.parametrize("make_opt, shards", [(lambda: jg.train.MomentumOptimizer(0.1, 0.9), 2),
                                              (lambda: jg.train.AdagradOptimizer(0.1), 1)],
                         ids=["momentum-2-shards", "adagrad-1-table"])
def test_lazy_optimizers_leave_untouched_rows_bit_identical(make_opt, shards):
    vocab = 10
    table = RNG.normal(size=(vocab, 3)).astype(np.float32)
    if shards == 1:
        params = {"emb": jg.Variable(table, name="emb")}
    else:
        params = {"emb": [jg.Variable(table[p::shards], name=f"emb_{p}") for p in range(shards)]}
    # Row 0 is never named; ids -1 and 9 only appear where they are pruned (invalid id / weight <= 0).
    batches = [([[2, -1], [], [5, 2]], [[1.0, 1.0], [], [0.5, 2.0]]),
               ([[7], [3, 9]], [[1.0], [1.0, -1.0]]),
               ([[], [], [4, 4]], [[], [], [1.0, 1.0]])]
    touched = {2, 5, 7, 3, 4}
    opt = make_opt()
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state, ids, weights):
        def loss(p):
            emb = p["emb"] if shards == 1 else list(p["emb"])
            out = safe_embedding_lookup_sparse(emb, ids, weights, partition_strategy="mod")
            return jnp.sum((out - 1.0) ** 2)
        return opt.minimize(loss, params, state)[:2]

    state = opt.init(params)
    for _ in range(2):
        for rows, ws in batches:
            ids = sparse.from_ragged(rows, capacity=6, dense_shape=[3, 2])
            weights = sparse.from_ragged(ws, capacity=6, dense_shape=[3, 2])
            params, state = step(params, state, ids, weights)
    if shards == 1:
        final = np.asarray(params["emb"].value)
    else:
        final = np.empty_like(table)
        for p in range(shards):
            final[p::shards] = np.asarray(params["emb"][p].value)
    untouched = sorted(set(range(vocab)) - touched)
    np.testing.assert_array_equal(final[untouched], table[untouched])
    assert not np.any(final[sorted(touched)] == table[sorted(touched)])
    slot_name = opt.get_slot_names()[0]
    for v in jg.trainable_variables(params):
        slot = np.asarray(opt.get_slot(state, v, slot_name).value)
        global_ids = [p * shards + int(v.name.split("_")[-1]) if shards > 1 else p for p in range(slot.shape[0])]
        initial = 0.0 if slot_name == "momentum" else 0.1
        for row, gid in enumerate(global_ids):
            if gid not in touched:
                assert (slot[row] == np.float32(initial)).all()


# -- the masked lookup ---------------------------------------------------------------------------------------
def test_embedding_lookup_masked():
    ids = jnp.array([[2, -1], [0, 9]])
    out = embedding_lookup_masked(TABLE, ids, jnp.array([[True, False], [True, False]]))
    np.testing.assert_array_equal(out[0, 0], TABLE[2])
    np.testing.assert_array_equal(out[:, 1], np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"indices\[3\] = 9 is not in \[0, 4\)"):
        embedding_lookup_masked(TABLE, ids, jnp.array([[True, False], [True, True]]))
    jitted = jax.jit(lambda m: embedding_lookup_masked(TABLE, ids, m))(jnp.ones((2, 2), bool))
    np.testing.assert_array_equal(np.asarray(jitted[:, 1]), np.zeros((2, 4)))   # -1 and 9: zero rows under jit
    np.testing.assert_array_equal(np.asarray(jitted[0, 0]), TABLE[2])
    with pytest.raises(ValueError, match="mask must be a bool array"):
        embedding_lookup_masked(TABLE, ids, jnp.ones((2,), bool))


# -- errors --------------------------------------------------------------------------------------------------
def test_errors():
    ids, weights = ids_2d()
    good = sparse.from_ragged([[0, 1]])
    with pytest.raises(ValueError, match="combiner must be one of 'mean', 'sqrtn' or 'sum', got max"):
        embedding_lookup_sparse(TABLE, good, None, combiner="max")
    with pytest.raises(TypeError, match="sp_ids must be SparseTensor"):
        embedding_lookup_sparse(TABLE, jnp.array([[0, 1]]), None)
    with pytest.raises(TypeError, match="sp_weights must be either None or SparseTensor"):
        embedding_lookup_sparse(TABLE, good, jnp.ones((1, 2)))
    with pytest.raises(ValueError, match="is not in"):
        embedding_lookup_sparse(TABLE, ids, None)      # -1 is invalid outside the safe variant (TF's gather error)
    with pytest.raises(ValueError, match=r"indices\[1\] = 4 is not in \[0, 4\)"):
        embedding_lookup_sparse(TABLE, sparse.from_ragged([[0, 4]]), None)
    with pytest.raises(ValueError, match="same indices"):
        embedding_lookup_sparse(TABLE, good, sp([[0, 1], [0, 0]], [1.0, 2.0], [1, 2]))
    with pytest.raises(ValueError, match="incompatible"):
        embedding_lookup_sparse(TABLE, good, sparse.from_ragged([[1.0, 2.0]], capacity=3))
    with pytest.raises(TypeError, match="integer ids"):
        embedding_lookup_sparse(TABLE, weights, None)
    with pytest.raises(ValueError, match="Missing embedding_weights"):
        safe_embedding_lookup_sparse([], ids)
    with pytest.raises(ValueError, match=r"indices\[0\] = 4 is not in \[0, 4\)"):
        safe_embedding_lookup_sparse(TABLE, ids, default_id=4)


def test_out_of_range_id_under_jit_reads_zeros_and_checked_raises():
    ids = sparse.from_ragged([[0, 1], [2], [3]])
    values = jnp.array([0, 1, 9, 3])                       # entry 2 (row 1) names id 9 of a 4-row table
    lookup = lambda v: embedding_lookup_sparse(TABLE, ids.with_values(v), None)
    out = jax.jit(lookup)(values)
    np.testing.assert_array_equal(np.asarray(out[1]), np.zeros(4))     # TF's GPU rule: a zero row, never another
    np.testing.assert_allclose(out[0], (TABLE[0] + TABLE[1]) / 2, rtol=1e-6)
    np.testing.assert_allclose(out[2], TABLE[3], rtol=1e-6)
    with pytest.raises(jg.InvalidArgumentError, match=r"indices\[2\] = 9 is not in \[0, 4\)"):
        jg.checked(lookup)(values)
    # Its gradient is dropped: no row moves for it, and the weight still counts in the mean (TF's GPU rule).
    grad = jax.grad(lambda t: jnp.sum(embedding_lookup_sparse(t, sparse.from_ragged([[1, 0]]).with_values(
        jnp.array([1, 9])), None)))
    with pytest.raises(jg.InvalidArgumentError):
        grad(TABLE)                                        # concrete ids are checked eagerly
    dense = jax.jit(lambda t, v: jax.grad(lambda u: jnp.sum(embedding_lookup_sparse(
        u, sparse.from_ragged([[1, 0]]).with_values(v), None)))(t))(TABLE, jnp.array([1, 9]))
    np.testing.assert_array_equal(np.asarray(dense)[[0, 2, 3]], 0.0)
    np.testing.assert_allclose(np.asarray(dense)[1], 0.5, rtol=1e-6)   # mean over 2 entries, one of them zero


# -- the compiled step: nothing table-sized but the table's in-place update -----------------------------------
def test_compiled_sparse_lookup_step_has_no_table_sized_copy():
    vocab, dim = 100_000, 32
    table_type = f"f32[{vocab},{dim}]"
    params = {"emb": jg.Variable(jnp.zeros((vocab, dim)), name="emb"), "w": jg.Variable(jnp.zeros(dim), name="w")}
    opt = jg.train.GradientDescentOptimizer(0.1)
    ids = sparse.from_ragged([[1, 5, 5], [], [99_999]], capacity=64, dense_shape=[3, 8])

    def step(p, s, ids):
        # (A loss linear in the rows makes XLA copy the table twice, with plain gather_rows too: not this test.)
        def loss(q):
            bags = safe_embedding_lookup_sparse(q["emb"], ids, combiner="sqrtn")
            return jnp.sum(jax.nn.softplus(bags @ q["w"].value))
        return opt.minimize(loss, p, s)

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt.init(params), ids).compile().as_text()
    assert "input_output_alias={ {0}: (0, {}, may-alias)" in hlo           # the table is updated in place
    table_ops = [line.strip() for line in hlo.splitlines() if f"= {table_type}" in line and "parameter(" not in line]
    assert not [op for op in table_ops if " copy(" in op or " broadcast(" in op], table_ops
    assert sum(" scatter(" in op for op in table_ops) == 1, table_ops
