"""Parity with real TensorFlow: embedding_lookup_sparse / safe_embedding_lookup_sparse, forward, gradients and
several training steps (TF1 graph mode, ``tf.compat.v1``), with duplicate ids, empty rows, invalid ids,
weights, sharded tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxgraph as jg
from jaxgraph import sparse
from jaxgraph.nn import embedding_lookup_sparse, safe_embedding_lookup_sparse

pytestmark = pytest.mark.parity

V, D = 11, 4
# Row 1 is empty, the last row too (TF's embedding_lookup_sparse output stops before a trailing empty row).
ROWS = [[3, 1, 3], [], [0, 10], [5, 6, 2, 2, 2], [7], []]
WEIGHTS = [[0.5, 2.0, 1.0], [], [3.0, 0.25], [1.0, -0.5, 0.25, 2.0, 1.5], [0.0], []]
# For the safe variant: invalid ids (< 0) and weights <= 0 are pruned.
SAFE_ROWS = [[3, -1, 3], [-2], [0, 10], [5, 6, 2], [7, 4], []]
SAFE_WEIGHTS = [[0.5, 1.0, 1.0], [1.0], [3.0, -0.25], [1.0, 0.0, 0.25], [2.0, 1.0], []]


def _shard(table, n, strategy):
    if n == 1:
        return [table]
    if strategy == "mod":
        return [table[p::n] for p in range(n)]
    ipp, extras = divmod(table.shape[0], n)
    sizes = [ipp + (p < extras) for p in range(n)]
    return np.split(table, np.cumsum(sizes)[:-1])


def _tf_sparse(rows, dtype, width=None):
    indices = [[i, j] for i, r in enumerate(rows) for j in range(len(r))]
    values = [v for r in rows for v in r]
    shape = [len(rows), width or max(len(r) for r in rows)]
    return tf.SparseTensor(np.asarray(indices, np.int64).reshape(-1, 2), np.asarray(values, dtype), shape)


def _jg_sparse(rows, capacity=24, width=6):
    return sparse.from_ragged(rows, capacity=capacity, dense_shape=[len(rows), width])


COMBINERS = ("mean", "sqrtn", "sum")


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("strategy, shards, max_norm", [("mod", 1, None), ("mod", 3, None), ("div", 3, 1.2),
                                                         ("mod", 1, 0.9)])
def test_forward_and_gradient(weighted, strategy, shards, max_norm):
    rng = np.random.default_rng(1)
    table = rng.normal(size=(V, D)).astype(np.float32)
    pieces = _shard(table, shards, strategy)
    cot = rng.normal(size=(len(ROWS), D)).astype(np.float32)
    ids, weights = _jg_sparse(ROWS), (_jg_sparse(WEIGHTS) if weighted else None)

    def f(ps, combiner):
        out = embedding_lookup_sparse(ps if shards > 1 else ps[0], ids, weights, partition_strategy=strategy,
                                      combiner=combiner, max_norm=max_norm)
        return jnp.sum(out * cot), out

    jg_results = jax.jit(lambda ps: [jax.value_and_grad(f, has_aux=True)(ps, c) for c in COMBINERS])(
        [jnp.asarray(p) for p in pieces])
    for combiner, ((_, got), grads) in zip(COMBINERS, jg_results, strict=True):
        tf_vars = [tf.Variable(p) for p in pieces]
        with tf.GradientTape() as tape:
            want = tf.compat.v1.nn.embedding_lookup_sparse(
                tf_vars if shards > 1 else tf_vars[0], _tf_sparse(ROWS, np.int64, 6),
                _tf_sparse(WEIGHTS, np.float32, 6) if weighted else None,
                partition_strategy=strategy, combiner=combiner, max_norm=max_norm)
            loss = tf.reduce_sum(want * cot[: want.shape[0]])
        tf_grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, tf_vars)]
        want = want.numpy()
        assert want.shape[0] == len(ROWS) - 1        # TF drops the trailing empty row
        np.testing.assert_allclose(np.asarray(got)[: want.shape[0]], want, rtol=2e-6, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(got)[want.shape[0]:], 0.0)
        for g_tf, g_jax in zip(tf_grads, grads, strict=True):
            np.testing.assert_allclose(np.asarray(g_jax), g_tf, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("default_id", [None, 4])
@pytest.mark.parametrize("shards", [1, 3])
def test_safe_forward(weighted, default_id, shards):
    rng = np.random.default_rng(2)
    table = rng.normal(size=(V, D)).astype(np.float32)
    pieces = _shard(table, shards, "div")
    got = jax.jit(lambda ps, i, w: [safe_embedding_lookup_sparse(ps, i, w, combiner=c, default_id=default_id)
                                    for c in COMBINERS])(
        [jnp.asarray(p) for p in pieces], _jg_sparse(SAFE_ROWS), _jg_sparse(SAFE_WEIGHTS) if weighted else None)
    for combiner, out in zip(COMBINERS, got, strict=True):
        want = tf.compat.v1.nn.safe_embedding_lookup_sparse(
            [tf.constant(p) for p in pieces], _tf_sparse(SAFE_ROWS, np.int64, 6),
            _tf_sparse(SAFE_WEIGHTS, np.float32, 6) if weighted else None, combiner=combiner, default_id=default_id)
        np.testing.assert_allclose(np.asarray(out), want.numpy(), rtol=2e-6, atol=1e-6)


def test_safe_rank3():
    rng = np.random.default_rng(3)
    table = rng.normal(size=(V, D)).astype(np.float32)
    indices = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]], np.int64)
    ids = np.array([0, 1, -1, -1, 2, 0, 1], np.int64)
    weights = np.array([1.0, 2.0, 1.0, 1.0, 3.0, 0.0, -0.5], np.float32)
    shape = [2, 3, 4]
    want = tf.compat.v1.nn.safe_embedding_lookup_sparse(
        tf.constant(table), tf.SparseTensor(indices, ids, shape), tf.SparseTensor(indices, weights, shape),
        default_id=3)
    got = safe_embedding_lookup_sparse(table, jg.SparseTensor(indices, ids, shape),
                                       jg.SparseTensor(indices, weights, shape), default_id=3)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6, atol=1e-7)


# -- several training steps in TF1 graph mode -------------------------------------------------------------
BATCHES = [  # (rows, weights): duplicates, empty rows, invalid ids, non-positive weights
    ([[3, 1, 3], [], [0, 10]], [[0.5, 2.0, 1.0], [], [3.0, 0.25]]),
    ([[5, -1], [2, 2, 2], [7]], [[1.0, 1.0], [0.25, 2.0, 1.5], [-1.0]]),
    ([[], [9, 3], [6]], [[], [1.0, 0.5], [2.0]]),
]
COEF = np.array([[1.0, -0.5], [0.25, 2.0], [-1.5, 0.75]], np.float32)
OPTIMIZERS = [
    ("gd", lambda: tf.compat.v1.train.GradientDescentOptimizer(0.1), lambda: jg.train.GradientDescentOptimizer(0.1)),
    ("adagrad", lambda: tf.compat.v1.train.AdagradOptimizer(0.1), lambda: jg.train.AdagradOptimizer(0.1)),
    ("momentum", lambda: tf.compat.v1.train.MomentumOptimizer(0.05, 0.9),
     lambda: jg.train.MomentumOptimizer(0.05, 0.9)),
    ("ftrl", lambda: tf.compat.v1.train.FtrlOptimizer(0.1, l1_regularization_strength=0.001),
     lambda: jg.train.FtrlOptimizer(0.1, l1_regularization_strength=0.001)),
]


def _valid_batches(safe):
    if safe:
        return BATCHES
    # embedding_lookup_sparse itself takes no invalid ids: drop them (weights stay as they are).
    return [([[i for i in r if i >= 0] for r in rows], [[w for i, w in zip(r, ws, strict=True) if i >= 0]
                                                        for r, ws in zip(rows, weights, strict=True)])
            for rows, weights in BATCHES]


def _train_tf(make_opt, table, dense0, batches, safe, shards, default_id):
    graph = tf.Graph()
    with graph.as_default():
        pieces = [tf.compat.v1.Variable(p, name=f"emb_{k}") for k, p in enumerate(_shard(table, shards, "div"))]
        dense = tf.compat.v1.Variable(dense0, name="dense")
        step = tf.compat.v1.train.get_or_create_global_step()
        ids_ph = tf.compat.v1.sparse_placeholder(tf.int64, shape=[3, 6])
        w_ph = tf.compat.v1.sparse_placeholder(tf.float32, shape=[3, 6])
        params = pieces if shards > 1 else pieces[0]
        if safe:
            emb = tf.compat.v1.nn.safe_embedding_lookup_sparse(params, ids_ph, w_ph, default_id=default_id)
        else:
            emb = tf.compat.v1.nn.embedding_lookup_sparse(params, ids_ph, w_ph, partition_strategy="div",
                                                          combiner="sqrtn")
        emb = tf.pad(emb, [[0, 3 - tf.shape(emb)[0]], [0, 0]])        # TF's output may stop early
        loss = tf.reduce_sum(tf.tanh(tf.matmul(emb, dense)) * COEF)
        opt = make_opt()
        gvs = opt.compute_gradients(loss, var_list=pieces + [dense])
        train = opt.apply_gradients(gvs, global_step=step)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for rows, weights in batches:
                feed = {}
                for ph, data, dtype in ((ids_ph, rows, np.int64), (w_ph, weights, np.float32)):
                    idx = [[i, j] for i, r in enumerate(data) for j in range(len(r))]
                    feed[ph] = tf.compat.v1.SparseTensorValue(np.asarray(idx, np.int64).reshape(-1, 2),
                                                              np.asarray([v for r in data for v in r], dtype), [3, 6])
                sess.run(train, feed)
            return [sess.run(p) for p in pieces], sess.run(dense), int(sess.run(step))


def _train_jg(make_opt, table, dense0, batches, safe, shards, default_id):
    params = {"emb": [jg.Variable(p, name=f"emb_{k}") for k, p in enumerate(_shard(table, shards, "div"))],
              "dense": jg.Variable(dense0, name="dense"), "global_step": jg.create_global_step()}
    opt = make_opt()

    @jax.jit
    def step(params, state, ids, weights):
        def loss_fn(p):
            emb = list(p["emb"]) if shards > 1 else p["emb"][0]
            if safe:
                out = safe_embedding_lookup_sparse(emb, ids, weights, default_id=default_id)
            else:
                out = embedding_lookup_sparse(emb, ids, weights, partition_strategy="div", combiner="sqrtn")
            return jnp.sum(jnp.tanh(out @ p["dense"].value) * COEF)
        return opt.minimize(loss_fn, params, state, global_step=params["global_step"])[:2]

    state = opt.init(params)
    for rows, weights in batches:
        params, state = step(params, state, sparse.from_ragged(rows, capacity=8, dense_shape=[3, 6]),
                             sparse.from_ragged(weights, capacity=8, dense_shape=[3, 6]))
    return [np.asarray(p.value) for p in params["emb"]], np.asarray(params["dense"].value), \
        int(params["global_step"].value)


CASES = [(name, safe, shards, default_id) for name, *_ in OPTIMIZERS
         for safe, shards, default_id in [(False, 1, None), (False, 3, None), (True, 1, 2), (True, 3, None)]
         # Momentum (or FTRL) with empty rows and no default_id: see test_safe_empty_rows_do_not_touch_row_0.
         if not (name in ("momentum", "ftrl") and safe and default_id is None)]


@pytest.mark.parametrize("name, safe, shards, default_id", CASES)
def test_training_steps(name, safe, shards, default_id):
    _, make_tf, make_jg = next(o for o in OPTIMIZERS if o[0] == name)
    rng = np.random.default_rng(4)
    table = rng.normal(size=(V, D)).astype(np.float32)
    dense0 = rng.normal(size=(D, 2)).astype(np.float32)
    batches = _valid_batches(safe) * 2
    tf_pieces, tf_dense, tf_step = _train_tf(make_tf, table, dense0, batches, safe, shards, default_id)
    jg_pieces, jg_dense, jg_step = _train_jg(make_jg, table, dense0, batches, safe, shards, default_id)
    assert tf_step == jg_step == len(batches)
    np.testing.assert_allclose(jg_dense, tf_dense, rtol=1e-5, atol=1e-6)
    tf_table = np.concatenate(tf_pieces)          # "div" shards concatenate back to id order
    jg_table = np.concatenate(jg_pieces)
    np.testing.assert_allclose(jg_table, tf_table, rtol=1e-5, atol=1e-6)
    # Rows that no batch names are bit-identical on both sides.
    named = {i for rows, _ in batches for r in rows for i in r if i >= 0} | ({default_id} if default_id else set())
    untouched = [i for i in range(V) if i not in named]
    assert untouched
    np.testing.assert_array_equal(jg_table[untouched], table[untouched])
    np.testing.assert_array_equal(tf_table[untouched], table[untouched])


def test_safe_empty_rows_do_not_touch_row_0():
    """The one documented difference: TF fills an empty row with id 0 and zeroes its result, so a lazy
    optimizer with state (Momentum; FTRL, which re-solves a row from its slots) gives TF's row 0
    zero-gradient updates; jaxgraph does not look row 0 up. Row 0 is used once (it gets momentum), then
    only empty rows follow."""
    rng = np.random.default_rng(5)
    table = rng.normal(size=(V, D)).astype(np.float32)
    dense0 = rng.normal(size=(D, 2)).astype(np.float32)
    batches = [([[0, 3], [5], [1]], [[1.0, 1.0], [1.0], [1.0]])] + [([[], [5], [1]], [[], [1.0], [1.0]])] * 3
    _, make_tf, make_jg = OPTIMIZERS[2]
    (tf_table,), tf_dense, _ = _train_tf(make_tf, table, dense0, batches, True, 1, None)
    (jg_table,), jg_dense, _ = _train_jg(make_jg, table, dense0, batches, True, 1, None)
    np.testing.assert_allclose(jg_dense, tf_dense, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jg_table[1:], tf_table[1:], rtol=1e-5, atol=1e-6)
    after_first = _train_jg(make_jg, table, dense0, batches[:1], True, 1, None)[0][0][0]
    np.testing.assert_array_equal(jg_table[0], after_first)        # jaxgraph: row 0 stays put after its use
    assert not np.allclose(tf_table[0], after_first)               # TF: momentum keeps moving it
