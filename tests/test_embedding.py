"""embedding_lookup: TF1's partitioning, shapes, max_norm, errors, gradients; jit and no-jit."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Variable, gradients
from jaxgraph.nn import embedding_lookup, embedding_lookup_v2

# TF's docstring example: 13 ids over 5 shards.
MOD_LAYOUT = [[0, 5, 10], [1, 6, 11], [2, 7, 12], [3, 8], [4, 9]]
DIV_LAYOUT = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10], [11, 12]]


def _shards_for(layout, dim=2):
    """Shards whose row for global id i holds [i, 100 + i, ...]: the output names the id it came from."""
    return [jnp.asarray([[float(i) + 100.0 * k for k in range(dim)] for i in ids], jnp.float32) for ids in layout]


@pytest.mark.parametrize("strategy,layout", [("mod", MOD_LAYOUT), ("div", DIV_LAYOUT)])
def test_thirteen_ids_over_five_shards(maybe_jit, strategy, layout):
    shards = _shards_for(layout)
    ids = jnp.array([12, 0, 7, 9, 3, 3, 11], jnp.int32)
    out = maybe_jit(lambda s, i: embedding_lookup(s, i, partition_strategy=strategy))(shards, ids)
    np.testing.assert_array_equal(out[:, 0], np.asarray(ids, np.float32))
    np.testing.assert_array_equal(out[:, 1], np.asarray(ids, np.float32) + 100.0)


def test_all_ids_roundtrip_both_strategies():
    for strategy, layout in [("mod", MOD_LAYOUT), ("div", DIV_LAYOUT)]:
        out = embedding_lookup(_shards_for(layout), jnp.arange(13), partition_strategy=strategy)
        np.testing.assert_array_equal(out[:, 0], np.arange(13, dtype=np.float32))


def test_div_gives_extras_to_first_shards_and_v2_uses_div():
    # 7 rows over 3 shards: div -> sizes 3, 2, 2 (N % np = 1 extra on shard 0).
    layout = [[0, 1, 2], [3, 4], [5, 6]]
    ids = jnp.arange(7)
    out = embedding_lookup_v2(_shards_for(layout, dim=1), ids)
    np.testing.assert_array_equal(out[:, 0], np.arange(7, dtype=np.float32))


def test_ids_of_any_shape_and_trailing_shape(maybe_jit):
    table = jnp.arange(5 * 2 * 3, dtype=jnp.float32).reshape(5, 2, 3)
    ids = jnp.array([[[4, 0]], [[1, 1]], [[2, 3]]])  # [3, 1, 2]
    out = maybe_jit(embedding_lookup)(table, ids)
    assert out.shape == (3, 1, 2, 2, 3)
    np.testing.assert_array_equal(out, np.asarray(table)[np.asarray(ids)])
    sharded = maybe_jit(lambda t, i: embedding_lookup([t[0::2], t[1::2]], i))(table, ids)
    np.testing.assert_array_equal(sharded, out)
    scalar = embedding_lookup(table, jnp.int32(3))
    assert scalar.shape == (2, 3)


def test_variable_shards_go_through_gather_rows(monkeypatch):
    calls = []
    real = gradients.gather_rows

    def spy(table, ids, **kwargs):
        calls.append((table, ids.shape))
        return real(table, ids, **kwargs)

    monkeypatch.setattr(gradients, "gather_rows", spy)
    shards = [Variable(jnp.ones((3, 2)), name="a"), Variable(jnp.ones((2, 2)), name="b")]
    embedding_lookup(shards, jnp.array([[0, 4], [3, 1]]))
    # One call per shard, with the Variable itself (not its array) and one local id per position.
    assert [type(t) for t, _ in calls] == [Variable, Variable]
    assert [t.name for t, _ in calls] == ["a", "b"]
    assert all(shape == (4,) for _, shape in calls)


def test_max_norm_clips_rows_not_table(maybe_jit):
    table = jnp.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = maybe_jit(lambda t, i: embedding_lookup(t, i, max_norm=1.0))(table, jnp.array([0, 1, 2, 0]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.3, 0.4], [0.0, 0.0], [0.6, 0.8]], rtol=1e-6)
    np.testing.assert_array_equal(table[0], [3.0, 4.0])
    # Sharded path clips the same way; norms are over the row, not over the whole output.
    out2 = embedding_lookup([table[0::2], table[1::2]], jnp.array([[0, 1]]), max_norm=2.5)
    np.testing.assert_allclose(out2[0], [[1.5, 2.0], [0.3, 0.4]], rtol=1e-6)


def test_gradient_of_sharded_lookup_is_per_shard(maybe_jit):
    shards = _shards_for(MOD_LAYOUT, dim=1)
    ids = jnp.array([5, 5, 2, 12])

    def f(shards):
        return jnp.sum(embedding_lookup(shards, ids) * jnp.array([[1.0], [2.0], [3.0], [4.0]]))

    grads = maybe_jit(jax.grad(f))(shards)
    expected = [np.zeros(s.shape, np.float32) for s in shards]
    expected[0][1] = 3.0  # id 5 -> shard 0 row 1, used twice
    expected[2][0] = 3.0  # id 2 -> shard 2 row 0
    expected[2][2] = 4.0  # id 12 -> shard 2 row 2
    for g, e in zip(grads, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_errors():
    table = jnp.zeros((4, 2))
    with pytest.raises(ValueError, match="^params must be specified$"):
        embedding_lookup(None, jnp.array([0]))
    with pytest.raises(ValueError, match="^Need at least one param$"):
        embedding_lookup([], jnp.array([0]))
    with pytest.raises(ValueError, match="^Unrecognized partition strategy: bogus$"):
        embedding_lookup([table, table], jnp.array([0]), partition_strategy="bogus")
    with pytest.raises(TypeError, match="integer"):
        embedding_lookup(table, jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^indices\[2\] = 4 is not in \[0, 4\)$"):
        embedding_lookup(table, jnp.array([0, 3, 4]))
    with pytest.raises(ValueError, match=r"^indices\[0\] = -1 is not in \[0, 4\)$"):
        embedding_lookup(table, [-1])
    # Sharded: 13 rows over 5 shards, id 13 is out of range under both strategies.
    for strategy in ("mod", "div"):
        with pytest.raises(ValueError, match=r"^indices\[1\] = 13 is not in \[0, 13\)$"):
            embedding_lookup(_shards_for(MOD_LAYOUT), jnp.array([0, 13]), partition_strategy=strategy)


def test_out_of_range_under_jit_reads_zeros():
    # Under jit the ids are tracers: the rule of jaxgraph.ids applies (zeros, never another row).
    # tests/test_faults_library.py covers every API, gradients and the checked mode.
    f = jax.jit(lambda t, i: embedding_lookup(t, i))
    np.testing.assert_array_equal(f(jnp.ones((4, 2)), jnp.array([0, 9, -1])), [[1, 1], [0, 0], [0, 0]])


def test_empty_ids():
    # TF: an empty Python list is an empty id array, and the result has shape (0, dim).
    table = jnp.ones((4, 3))
    for ids in ([], (), np.zeros((0,), np.int64), jnp.zeros((2, 0), jnp.int32)):
        out = embedding_lookup(table, ids)
        assert out.shape == np.shape(ids) + (3,) and out.dtype == table.dtype
    assert embedding_lookup([table, table], []).shape == (0, 3)
    with pytest.raises(TypeError, match="integers"):
        embedding_lookup(table, np.zeros((0,), np.float32))  # an explicit float array stays an error


def _tf_clip(rows, ids_rank, max_norm):
    """TF's ``embedding_ops._clip``: ``clip_by_norm(rows, max_norm, axes=range(rank(ids), rank(rows)))``."""
    axes = tuple(range(ids_rank, rows.ndim))
    norm = np.sqrt(np.sum(rows.astype(np.float64) ** 2, axis=axes, keepdims=True))
    return rows * max_norm / np.maximum(norm, max_norm)


@pytest.mark.parametrize("sharded", [False, True])
def test_max_norm_clips_over_every_row_axis(maybe_jit, sharded):
    # Rows of shape [2, 3]: each row's norm is over all 6 values. Rows 0 and 1 are built so that every
    # [3]-slice is within max_norm while the whole row is not, so a norm over the last axis only (or
    # over the whole output) gives another answer.
    table = np.zeros((4, 2, 3), np.float32)
    table[0] = [[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]  # slices of norm 1, row norm sqrt(2)
    table[1] = [[0.3, 0.0, 0.4], [0.0, 0.0, 0.5]]  # slices of norm 0.5, row norm sqrt(0.5)
    table[2] = [[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]]  # row norm 5
    table[3] = 0.0
    ids = np.array([[0, 1], [2, 3], [0, 2]])
    params = [jnp.asarray(table[0::2]), jnp.asarray(table[1::2])] if sharded else jnp.asarray(table)
    for max_norm in (1.0, 0.6):
        out = maybe_jit(lambda p, i, m=max_norm: embedding_lookup(p, i, max_norm=m))(params, jnp.asarray(ids))
        want = _tf_clip(table[ids], ids.ndim, max_norm)
        np.testing.assert_allclose(np.asarray(out), want, rtol=1e-6, atol=1e-7)
        norms = np.sqrt(np.sum(np.asarray(out, np.float64) ** 2, axis=(2, 3)))
        assert np.all(norms <= max_norm * (1 + 1e-6))
    np.testing.assert_allclose(np.asarray(out)[0, 0], table[0] * 0.6 / np.sqrt(2.0), rtol=1e-6)


def test_traces_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(shards, ids):
        return embedding_lookup(shards, ids, partition_strategy="div", max_norm=1.0)

    shards = _shards_for(DIV_LAYOUT)
    for k in range(3):
        f(shards, jnp.array([k, k + 1, 12]))
    chex.clear_trace_counter()
