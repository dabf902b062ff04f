"""SparseTensor: constructors (TF-style, padded matrix, ragged lists, from_dense), the padding convention,
to_dense / reorder / retain, jit with static shapes, and the errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import SparseTensor, sparse


def dense_of(sp):
    return np.asarray(sparse.to_dense(sp))


def test_tf_style_constructor_and_properties():
    sp = SparseTensor(indices=[[0, 0], [1, 2]], values=jnp.array([1.0, 2.0]), dense_shape=[3, 4])
    assert sp.shape == sp.dense_shape == (3, 4) and sp.capacity == 2 and sp.dtype == jnp.float32
    np.testing.assert_array_equal(dense_of(sp), [[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]])
    assert int(sp.nnz()) == 2 and np.asarray(sp.mask).tolist() == [True, True]
    assert jg.sparse_tensor_to_dense(sp).shape == (3, 4)


def test_padding_slots_are_ignored_everywhere():
    # Slot 1 is empty: its row index is dense_shape[0].
    sp = SparseTensor([[0, 1], [2, 0], [1, 1]], jnp.array([5, 0, 7]), [2, 3])
    assert np.asarray(sp.mask).tolist() == [True, False, True] and int(sp.nnz()) == 2
    np.testing.assert_array_equal(dense_of(sp), [[0, 5, 0], [0, 7, 0]])
    r = sparse.reorder(sp)
    assert np.asarray(r.indices).tolist() == [[0, 1], [1, 1], [2, 0]] and np.asarray(r.values).tolist() == [5, 7, 0]


def test_from_padded_matrix_keeps_positions():
    ids = jnp.array([[3, -1, 4], [-1, -1, -1], [5, 6, -1]])
    sp = sparse.from_padded(ids, padding=-1)
    assert sp.capacity == 9 and sp.dense_shape == (3, 3)
    assert np.asarray(sp.indices[:4]).tolist() == [[0, 0], [0, 2], [2, 0], [2, 1]]
    assert np.asarray(sp.values[:4]).tolist() == [3, 4, 5, 6]
    assert not np.asarray(sp.mask[4:]).any() and (np.asarray(sp.indices[4:, 0]) == 3).all()
    by_length = sparse.from_padded(jnp.array([[3, 0, 0], [5, 6, 0]]), lengths=jnp.array([1, 2]))
    assert np.asarray(by_length.values[:3]).tolist() == [3, 5, 6] and int(by_length.nnz()) == 3


def test_from_ragged_capacity_and_shape():
    sp = sparse.from_ragged([[1, 2, 3], [], [4]], capacity=6, dense_shape=[4, 5])
    assert sp.capacity == 6 and sp.dense_shape == (4, 5) and sp.dtype == jnp.int32
    np.testing.assert_array_equal(dense_of(sp)[:3, :3], [[1, 2, 3], [0, 0, 0], [4, 0, 0]])
    weights = sparse.from_ragged([[0.5, 1.0, 2.0], [], [1.0]], capacity=6, dense_shape=[4, 5])
    assert weights.dtype == jnp.float32
    np.testing.assert_array_equal(weights.indices, sp.indices)   # same layout: ids and weights pair up
    empty = sparse.from_ragged([[], []])
    assert empty.capacity == 0 and empty.dense_shape == (2, 0)


def test_from_dense_and_roundtrip(maybe_jit):
    x = jnp.array([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    sp = maybe_jit(sparse.from_dense)(x)
    assert sp.capacity == 6 and int(sp.nnz()) == 3
    np.testing.assert_array_equal(maybe_jit(sparse.to_dense)(sp), x)


def test_retain_compacts_and_keeps_order():
    sp = sparse.from_ragged([[3, -1, 4], [-2, 5]])
    kept = sparse.retain(sp, sp.values >= 0)
    assert np.asarray(kept.values).tolist() == [3, 4, 5, 0, 0]
    assert np.asarray(kept.indices[:3]).tolist() == [[0, 0], [0, 2], [1, 1]]
    assert jg.sparse_retain(sp, sp.values >= 0).capacity == sp.capacity


def test_with_values():
    sp = SparseTensor([[0, 0], [2, 0]], jnp.array([1, 0]), [2, 2])
    w = sp.with_values(jnp.array([0.5, 9.0]))
    assert np.asarray(w.values).tolist() == [0.5, 0.0]   # the empty slot's value is zeroed


def test_pytree_under_jit_traces_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def total(sp):
        return jnp.sum(sparse.to_dense(sp))

    for rows in ([[1, 2], [3]], [[4], [5, 6]], [[], [7, 8]]):
        assert int(total(sparse.from_ragged(rows, capacity=4, dense_shape=[2, 2]))) == sum(map(sum, rows))
    leaves, treedef = jax.tree_util.tree_flatten(sparse.from_ragged([[1]]))
    assert len(leaves) == 2 and jax.tree_util.tree_unflatten(treedef, leaves).dense_shape == (1, 1)


def test_reorder_under_jit():
    sp = SparseTensor([[1, 0], [2, 0], [0, 1], [0, 0]], jnp.array([1, 0, 2, 3]), [2, 2])
    r = jax.jit(jg.sparse_reorder)(sp)
    assert np.asarray(r.indices).tolist() == [[0, 0], [0, 1], [1, 0], [2, 0]]
    assert np.asarray(r.values).tolist() == [3, 2, 1, 0]


def test_errors():
    with pytest.raises(ValueError, match=r"indices\[1\] = \[0,4\] is out of bounds: need 0 <= index < \[3,4\]"):
        SparseTensor([[0, 0], [0, 4]], [1, 2], [3, 4])
    with pytest.raises(ValueError, match=r"indices must have shape \[capacity, 2\]"):
        SparseTensor([0, 1], [1, 2], [3, 4])
    with pytest.raises(ValueError, match="values must have shape"):
        SparseTensor([[0, 0]], [1, 2], [3, 4])
    with pytest.raises(TypeError, match="integers"):
        SparseTensor([[0.0, 0.0]], [1], [3, 4])
    with pytest.raises(ValueError, match=r"indices\[1\] = \[0,1\] is repeated"):
        sparse.to_dense(SparseTensor([[0, 1], [0, 1]], [1, 2], [1, 2]))
    with pytest.raises(ValueError, match="exactly one of padding"):
        sparse.from_padded(jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="capacity 1 is smaller than the 2 entries"):
        sparse.from_ragged([[1, 2]], capacity=1)
    with pytest.raises(ValueError, match="too small"):
        sparse.from_ragged([[1, 2]], dense_shape=[1, 1])
    with pytest.raises(TypeError, match="list of lists"):
        sparse.from_ragged("abc")
    with pytest.raises(ValueError, match="lengths must lie in"):
        sparse.from_padded(jnp.zeros((2, 2)), lengths=jnp.array([1, 3]))
    with pytest.raises(TypeError, match="needs a SparseTensor"):
        sparse.reorder(jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="to_retain must be a bool vector of length 2"):
        sparse.retain(sparse.from_ragged([[1, 2]]), jnp.array([True]))
