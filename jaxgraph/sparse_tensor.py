"""``SparseTensor``: TF's sparse input (``indices``, ``values``, ``dense_shape``) with a fixed capacity.

Under ``jit`` every shape is static, so a ``SparseTensor`` holds a fixed number of entry slots (its
*capacity*) and marks the slots it does not use. **Padding convention:** a slot whose row index
``indices[k, 0]`` equals ``dense_shape[0]`` (one past the last row) is empty; empty slots hold index
``(dense_shape[0], 0, ...)`` and value ``0``, and every op here ignores them. This mirrors
:class:`~jaxgraph.IndexedSlices`, whose padding index is also ``dense_shape[0]``.
``dense_shape`` is static (a tuple of ints), so a batch of a new shape or capacity traces anew: keep
both fixed (``capacity=``, ``dense_shape=``) for a step that traces once.

The constructors put the real entries first, in row-major order, and the empty slots last (the
*canonical* order TF's sparse ops expect); :func:`reorder` restores it.

>>> import jax.numpy as jnp
>>> sp = from_ragged([[3, 1], [], [7]], capacity=4)
>>> sp.indices.tolist(), sp.values.tolist(), sp.dense_shape
([[0, 0], [0, 1], [2, 0], [3, 0]], [3, 1, 7, 0], (3, 2))
>>> to_dense(sp, default_value=-1).tolist()
[[3, 1], [-1, -1], [7, -1]]
>>> from_padded(jnp.array([[3, 1], [-1, -1], [7, -1]]), padding=-1).values.tolist()
[3, 1, 7, 0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SparseTensor",
    "from_dense",
    "from_padded",
    "from_ragged",
    "reorder",
    "retain",
    "sparse_reorder",
    "sparse_retain",
    "sparse_tensor_to_dense",
    "to_dense",
]


def _is_concrete(*xs: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def _index_text(row: np.ndarray) -> str:
    return "[" + ",".join(str(int(i)) for i in row) + "]"


@jax.tree_util.register_pytree_with_keys_class
class SparseTensor:
    """TF's ``tf.SparseTensor(indices, values, dense_shape)``, as a pytree with a fixed capacity.

    Args:
      indices: integer ``[capacity, rank]``: the position of each entry; a slot whose first coordinate is
        ``dense_shape[0]`` is empty (see the module's padding convention).
      values: ``[capacity]``: each entry's value (ids, weights, ...).
      dense_shape: the shape of the dense tensor, a tuple of ints (static).

    With concrete ``indices``, each one must lie inside ``dense_shape`` (TF's "is out of bounds"
    error) or be an empty slot. Under ``jit`` they are not checked.

    >>> import jax.numpy as jnp
    >>> sp = SparseTensor(indices=[[0, 0], [1, 2]], values=jnp.array([1, 2]), dense_shape=[3, 4])
    >>> sp
    SparseTensor(capacity=2, dense_shape=(3, 4), dtype=int32)
    >>> to_dense(sp).tolist()
    [[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    """

    __slots__ = ("indices", "values", "dense_shape")

    def __init__(self, indices: Any, values: Any, dense_shape: Sequence[int]) -> None:
        if isinstance(dense_shape, jax.core.Tracer):
            raise TypeError("SparseTensor's dense_shape must be static (a tuple of ints), not a traced array")
        dense_shape = tuple(int(d) for d in np.asarray(dense_shape).reshape(-1))
        if not dense_shape:
            raise ValueError("SparseTensor needs a dense_shape of rank >= 1")
        indices = jnp.asarray(indices)
        if indices.size == 0:
            indices = indices.reshape(0, len(dense_shape)).astype(jnp.int32)
        values = jnp.asarray(values)
        if not jnp.issubdtype(indices.dtype, jnp.integer):
            raise TypeError(f"SparseTensor indices must be integers, got dtype {indices.dtype}")
        if indices.ndim != 2 or indices.shape[1] != len(dense_shape):
            raise ValueError(
                f"SparseTensor indices must have shape [capacity, {len(dense_shape)}] for dense_shape "
                f"{dense_shape}, got {list(indices.shape)}"
            )
        if values.shape != indices.shape[:1]:
            raise ValueError(
                f"SparseTensor values must have shape [{indices.shape[0]}] (one per index), got {list(values.shape)}"
            )
        if _is_concrete(indices):
            host = np.asarray(indices)
            empty = host[:, 0] == dense_shape[0]
            inside = np.all((host >= 0) & (host < np.asarray(dense_shape)), axis=1)
            bad = np.flatnonzero(~(inside | empty))
            if bad.size:
                k = int(bad[0])
                raise ValueError(
                    f"indices[{k}] = {_index_text(host[k])} is out of bounds: need 0 <= index < "
                    f"{_index_text(np.asarray(dense_shape))}"
                )
        self.indices = indices
        self.values = values
        self.dense_shape = dense_shape

    # -- pytree protocol -------------------------------------------------------------------------
    def tree_flatten_with_keys(self):
        keys = jax.tree_util.GetAttrKey
        return ((keys("indices"), self.indices), (keys("values"), self.values)), self.dense_shape

    def tree_flatten(self):
        return (self.indices, self.values), self.dense_shape

    @classmethod
    def tree_unflatten(cls, dense_shape, children):
        obj = object.__new__(cls)
        obj.indices, obj.values = children
        obj.dense_shape = dense_shape
        return obj

    # -- properties --------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape (TF's ``SparseTensor.shape``)."""
        return self.dense_shape

    @property
    def dtype(self) -> Any:
        return self.values.dtype

    @property
    def capacity(self) -> int:
        """The number of entry slots, used or empty (static)."""
        return int(self.indices.shape[0])

    @property
    def mask(self) -> jax.Array:
        """``[capacity]`` bool: True for a real entry, False for an empty slot.

        An entry whose index lies outside ``dense_shape`` (possible only for indices made under ``jit``,
        where they are not checked) counts as empty too: it is ignored, never wrapped around.
        """
        inside = (self.indices >= 0) & (self.indices < jnp.asarray(self.dense_shape, self.indices.dtype))
        return jnp.all(inside, axis=1)

    def nnz(self) -> jax.Array:
        """The number of real entries (a scalar array; traced under ``jit``)."""
        return jnp.sum(self.mask.astype(jnp.int32))

    def with_values(self, new_values: Any) -> SparseTensor:
        """TF's ``with_values``: the same indices with new values (one per slot; empty slots get 0)."""
        new_values = jnp.asarray(new_values)
        if new_values.shape != self.values.shape:
            raise ValueError(f"new values must have shape {list(self.values.shape)}, got {list(new_values.shape)}")
        new_values = jnp.where(self.mask, new_values, jnp.zeros((), new_values.dtype))
        return SparseTensor._make(self.indices, new_values, self.dense_shape)

    @classmethod
    def _make(cls, indices: Any, values: Any, dense_shape: tuple[int, ...]) -> SparseTensor:
        # Skips the host-side bounds check: the callers here build valid indices (and may be traced).
        return cls.tree_unflatten(dense_shape, (indices, values))

    def __repr__(self) -> str:
        return f"SparseTensor(capacity={self.capacity}, dense_shape={self.dense_shape}, dtype={self.dtype})"


def _compact(indices: jax.Array, values: jax.Array, keep: jax.Array, dense_shape: tuple[int, ...]) -> SparseTensor:
    """The entries where ``keep`` is True, in their current order, first; empty slots after them."""
    n = keep.shape[0]
    pad_index = jnp.zeros((len(dense_shape),), indices.dtype).at[0].set(dense_shape[0])
    if n == 0:
        return SparseTensor._make(indices, values, dense_shape)
    (order,) = jnp.nonzero(keep, size=n, fill_value=n)
    used = order < n
    src = jnp.minimum(order, n - 1)
    new_indices = jnp.where(used[:, None], indices[src], pad_index)
    new_values = jnp.where(used, values[src], jnp.zeros((), values.dtype))
    return SparseTensor._make(new_indices, new_values, dense_shape)


def from_padded(tensor: Any, padding: Any = None, lengths: Any = None) -> SparseTensor:
    """A ``SparseTensor`` of the entries of ``tensor`` that are not padding (a ``[batch, max_len]``
    id matrix, or any rank).

    Exactly one of ``padding`` (the value that marks an absent entry, e.g. ``-1``) or ``lengths``
    (``[batch]``: row ``i`` holds ``lengths[i]`` leading entries; rank 2 only) says which entries are
    real. An entry keeps its position (``[i, j]``), so a padding value in the middle of a row just
    leaves a hole. Capacity is ``tensor.size``: nothing can be dropped, and it works under ``jit``.

    >>> import jax.numpy as jnp
    >>> sp = from_padded(jnp.array([[4, 2, 0], [5, 0, 0]]), lengths=jnp.array([2, 1]))
    >>> sp.indices[:3].tolist(), sp.values[:3].tolist()
    ([[0, 0], [0, 1], [1, 0]], [4, 2, 5])
    """
    tensor = jnp.asarray(tensor)
    if (padding is None) == (lengths is None):
        raise ValueError("from_padded needs exactly one of padding= (the absent value) or lengths=")
    if tensor.ndim < 1:
        raise ValueError(f"from_padded needs a tensor of rank >= 1, got a scalar {tensor!r}")
    if padding is not None:
        keep = tensor != jnp.asarray(padding, tensor.dtype)
    else:
        lengths = jnp.asarray(lengths)
        if tensor.ndim != 2 or lengths.shape != tensor.shape[:1]:
            raise ValueError(
                f"lengths= needs a [batch, max_len] tensor and [batch] lengths, got {list(tensor.shape)} "
                f"and {list(lengths.shape)}"
            )
        if _is_concrete(lengths):
            host = np.asarray(lengths)
            if np.any((host < 0) | (host > tensor.shape[1])):
                raise ValueError(f"lengths must lie in [0, {tensor.shape[1]}], got {host.tolist()}")
        keep = jnp.arange(tensor.shape[1])[None, :] < lengths[:, None]
    return _from_mask(tensor, keep)


def from_dense(tensor: Any, name: str | None = None) -> SparseTensor:
    """TF's ``tf.sparse.from_dense``: the non-zero entries of ``tensor`` (capacity ``tensor.size``).

    >>> import jax.numpy as jnp
    >>> sp = from_dense(jnp.array([[0.0, 2.0], [3.0, 0.0]]))
    >>> int(sp.nnz()), sp.values[:2].tolist()
    (2, [2.0, 3.0])
    """
    del name
    tensor = jnp.asarray(tensor)
    if tensor.ndim < 1:
        raise ValueError(f"from_dense needs a tensor of rank >= 1, got a scalar {tensor!r}")
    return _from_mask(tensor, tensor != jnp.zeros((), tensor.dtype))


def _from_mask(tensor: jax.Array, keep: jax.Array) -> SparseTensor:
    grid = jnp.stack(jnp.unravel_index(jnp.arange(tensor.size), tensor.shape), axis=1).astype(jnp.int32)
    return _compact(grid, tensor.reshape(-1), keep.reshape(-1), tuple(tensor.shape))


def from_ragged(rows: Sequence[Sequence[Any]], capacity: int | None = None,
                dense_shape: Sequence[int] | None = None, dtype: Any = None) -> SparseTensor:
    """A rank-2 ``SparseTensor`` from Python lists of different lengths (host side, not under ``jit``).

    ``rows[i][j]`` becomes entry ``[i, j]``. ``capacity`` (default: the number of entries) and
    ``dense_shape`` (default: ``[len(rows), longest row]``) can be made larger, so that batches of
    different sizes share one compiled step. ``dtype`` defaults to int32 for integers, float32 for floats.

    >>> sp = from_ragged([[1.0], [0.5, 2.0]], capacity=4, dense_shape=[2, 3])
    >>> sp.values.tolist(), sp.dense_shape, int(sp.nnz())
    ([1.0, 0.5, 2.0, 0.0], (2, 3), 3)
    """
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise TypeError(f"from_ragged needs a list of lists, got {type(rows).__name__}")
    flat: list[Any] = []
    coords: list[tuple[int, int]] = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
            raise TypeError(f"from_ragged: row {i} is {type(row).__name__}, not a list")
        for j, v in enumerate(row):
            if np.ndim(v) != 0:
                raise ValueError(f"from_ragged: rows[{i}][{j}] is not a scalar (rank-2 ragged lists only)")
            flat.append(v)
            coords.append((i, j))
    width = max((len(r) for r in rows), default=0)
    shape = (len(rows), width) if dense_shape is None else tuple(int(d) for d in dense_shape)
    if len(shape) != 2 or shape[0] < len(rows) or shape[1] < width:
        raise ValueError(f"dense_shape {list(shape)} is too small for {len(rows)} rows of up to {width} entries")
    n = len(flat)
    capacity = n if capacity is None else int(capacity)
    if capacity < n:
        raise ValueError(f"capacity {capacity} is smaller than the {n} entries given")
    host_values = np.asarray(flat) if flat else np.zeros((0,), np.int32)
    if dtype is None:
        dtype = jnp.int32 if np.issubdtype(host_values.dtype, np.integer) else jnp.float32
    indices = np.zeros((capacity, 2), np.int32)
    indices[:, 0] = shape[0]
    if n:
        indices[:n] = np.asarray(coords, np.int32)
    values = np.zeros((capacity,), jnp.dtype(dtype))
    values[:n] = host_values
    return SparseTensor(indices, values, shape)


def _check_no_repeats(sp: SparseTensor) -> None:
    host = np.asarray(sp.indices)
    real = host[host[:, 0] != sp.dense_shape[0]]
    if real.shape[0] < 2:
        return
    _, first, counts = np.unique(real, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        positions = np.flatnonzero(np.all(real == real[first[np.argmax(counts > 1)]], axis=1))
        raise ValueError(f"indices[{int(positions[1])}] = {_index_text(real[positions[1]])} is repeated")


def to_dense(sp_input: SparseTensor, default_value: Any = None, validate_indices: bool = True,
             name: str | None = None) -> jax.Array:
    """TF's ``tf.sparse.to_dense``: the dense tensor, ``default_value`` (0) where there is no entry.

    With ``validate_indices`` and concrete indices, a repeated index raises TF's ``"indices[k] = [..]
    is repeated"``. (TF also insists on row-major order; the order does not matter here.) Under
    ``jit`` repeats are not checked, and which of them wins is unspecified.
    """
    del name
    _require_sparse(sp_input, "to_dense")
    if validate_indices and _is_concrete(sp_input.indices):
        _check_no_repeats(sp_input)
    fill = jnp.zeros((), sp_input.dtype) if default_value is None else jnp.asarray(default_value, sp_input.dtype)
    dense = jnp.full(sp_input.dense_shape, fill, sp_input.dtype)
    # Empty slots (and indices outside the shape) point past the end and are dropped, never wrapped.
    past_end = jnp.asarray(sp_input.dense_shape, sp_input.indices.dtype)
    placed = jnp.where(sp_input.mask[:, None], sp_input.indices, past_end)
    index = tuple(placed[:, d] for d in range(len(sp_input.dense_shape)))
    return dense.at[index].set(sp_input.values, mode="drop")


def reorder(sp_input: SparseTensor, name: str | None = None) -> SparseTensor:
    """TF's ``tf.sparse.reorder``: the entries in row-major order, empty slots last.

    >>> sp = SparseTensor([[1, 0], [0, 1], [2, 0]], [5, 6, 0], [2, 2])   # the last slot is empty
    >>> reorder(sp).indices.tolist(), reorder(sp).values.tolist()
    ([[0, 1], [1, 0], [2, 0]], [6, 5, 0])
    """
    del name
    _require_sparse(sp_input, "reorder")
    # lexsort's last key is the primary one; an empty slot's row (dense_shape[0]) sorts after every real row.
    order = jnp.lexsort(tuple(sp_input.indices[:, d] for d in reversed(range(len(sp_input.dense_shape)))))
    return SparseTensor._make(sp_input.indices[order], sp_input.values[order], sp_input.dense_shape)


def retain(sp_input: SparseTensor, to_retain: Any) -> SparseTensor:
    """TF's ``tf.sparse.retain``: keep the entries where ``to_retain`` (``[capacity]`` bool) is True.

    The kept entries stay in order and come first; the others become empty slots (capacity unchanged).

    >>> sp = from_ragged([[3, -1], [4]])
    >>> retain(sp, sp.values >= 0).values.tolist()
    [3, 4, 0]
    """
    _require_sparse(sp_input, "retain")
    to_retain = jnp.asarray(to_retain)
    if to_retain.shape != (sp_input.capacity,) or to_retain.dtype != jnp.bool_:
        raise ValueError(
            f"to_retain must be a bool vector of length {sp_input.capacity}, "
            f"got {to_retain.dtype}{list(to_retain.shape)}"
        )
    return _compact(sp_input.indices, sp_input.values, to_retain & sp_input.mask, sp_input.dense_shape)


def _require_sparse(sp: Any, what: str) -> None:
    if not isinstance(sp, SparseTensor):
        raise TypeError(f"{what} needs a SparseTensor, got {type(sp).__name__}")


# TF1's top-level names (tf.sparse_reorder, tf.sparse_retain, tf.sparse_tensor_to_dense).
sparse_reorder = reorder
sparse_retain = retain
sparse_tensor_to_dense = to_dense
