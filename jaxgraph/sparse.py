"""``IndexedSlices``: TF1's sparse gradient, a set of rows of a dense tensor; and TF's ``tf.sparse`` ops.

This module is also jaxgraph's ``tf.sparse``: :class:`~jaxgraph.SparseTensor` and ``from_dense``,
``to_dense``, ``reorder``, ``retain``, ``from_padded``, ``from_ragged`` (defined in
:mod:`jaxgraph.sparse_tensor`) are importable from here.

``IndexedSlices(values, indices, dense_shape)`` stands for the dense array that is zero everywhere
except rows ``indices[i]``, which hold ``values[i]``; repeated indices add up. It is a pytree (values
and indices are children, ``dense_shape`` is static), so it passes through ``jit``.

>>> import jax.numpy as jnp
>>> g = IndexedSlices(jnp.array([[1.0], [1.0], [2.0]]), jnp.array([0, 0, 2]), (3, 1))
>>> g.to_dense().ravel().tolist()
[2.0, 0.0, 2.0]
>>> c = g.coalesce()
>>> c.to_dense().ravel().tolist()
[2.0, 0.0, 2.0]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.ids import check_ids

# TF's `tf.sparse` namespace: the SparseTensor type and its ops live in jaxgraph.sparse_tensor.
from jaxgraph.sparse_tensor import SparseTensor as SparseTensor
from jaxgraph.sparse_tensor import from_dense as from_dense
from jaxgraph.sparse_tensor import from_padded as from_padded
from jaxgraph.sparse_tensor import from_ragged as from_ragged
from jaxgraph.sparse_tensor import reorder as reorder
from jaxgraph.sparse_tensor import retain as retain
from jaxgraph.sparse_tensor import to_dense as to_dense
from jaxgraph.variables import Variable

__all__ = [
    "IndexedSlices",
    "SparseTensor",
    "convert_to_tensor_or_indexed_slices",
    "from_dense",
    "from_padded",
    "from_ragged",
    "reorder",
    "retain",
    "to_dense",
]


@jax.tree_util.register_pytree_with_keys_class
class IndexedSlices:
    """Rows ``indices`` of a dense tensor of shape ``dense_shape``, holding ``values``.

    Args:
      values: ``[n, *dense_shape[1:]]``.
      indices: integer ``[n]``; may repeat (repeats add up) and may hold the padding index
        ``dense_shape[0]``, which every consumer drops: a captured read of a row out of range, a
        sharded lookup's id that a shard does not own, or, after :meth:`coalesce`, an unused slot.
        Any other index outside ``[0, dense_shape[0])`` is an error when concrete (TF's
        ``indices[i] = v is not in [0, n)``) and, under ``jit``, is treated as padding: dropped, never
        wrapped (see :mod:`jaxgraph.ids`). Captured gradients never hold a negative index.
      dense_shape: the shape of the dense tensor (a tuple of ints).
    """

    __slots__ = ("values", "indices", "dense_shape")

    def __init__(self, values: Any, indices: Any, dense_shape: Any) -> None:
        self.values = values
        self.indices = indices
        self.dense_shape = tuple(int(d) for d in dense_shape)
        vshape = getattr(values, "shape", None)
        ishape = getattr(indices, "shape", None)
        if vshape is not None and ishape is not None:
            if len(ishape) != 1:
                raise ValueError(f"IndexedSlices indices must be one-dimensional, got shape {tuple(ishape)}")
            if tuple(vshape[:1]) != tuple(ishape) or tuple(vshape[1:]) != self.dense_shape[1:]:
                raise ValueError(
                    f"IndexedSlices values of shape {tuple(vshape)} do not match indices of shape "
                    f"{tuple(ishape)} and dense_shape {self.dense_shape}"
                )

    # -- pytree protocol -------------------------------------------------------------------------
    def tree_flatten_with_keys(self):
        keys = jax.tree_util.GetAttrKey
        return ((keys("values"), self.values), (keys("indices"), self.indices)), self.dense_shape

    def tree_flatten(self):
        return (self.values, self.indices), self.dense_shape

    @classmethod
    def tree_unflatten(cls, dense_shape, children):
        obj = object.__new__(cls)
        obj.values, obj.indices = children
        obj.dense_shape = dense_shape
        return obj

    # -- properties --------------------------------------------------------------------------------
    @property
    def dtype(self) -> Any:
        return self.values.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape (TF's ``IndexedSlices.shape``)."""
        return self.dense_shape

    # -- conversions -------------------------------------------------------------------------------
    def to_dense(self) -> jax.Array:
        """The dense array these slices stand for (repeats summed, padding dropped)."""
        zeros = jnp.zeros(self.dense_shape, dtype=self.values.dtype)
        return zeros.at[self.checked_indices()].add(self.values, mode="drop")

    def checked_indices(self) -> jax.Array:
        """The indices after :func:`jaxgraph.ids.check_ids` (padding allowed): concrete ones out of
        range raise TF's message; traced ones out of range become the padding index."""
        return check_ids(self.indices, self.dense_shape[0], allow_padding=True, what="IndexedSlices indices")

    def coalesce(self) -> IndexedSlices:
        """Sum the values of repeated indices (TF's ``_deduplicate_indexed_slices``).

        Static shapes are kept for ``jit``: the result has as many slots as the input; unique indices
        come first (sorted), and the remaining slots hold index ``dense_shape[0]`` with zero values.
        """
        n = self.indices.shape[0]
        pad = self.dense_shape[0]
        indices = self.checked_indices()
        # Padding slots already in the input (a sharded lookup's stand-ins, out-of-range ids under jit)
        # carry values that every consumer drops; zero them, so the padding slot of the result holds
        # zeros as documented (norms and lazy updates read the coalesced values).
        is_pad = (indices == pad).reshape((-1,) + (1,) * (self.values.ndim - 1))
        values = jnp.where(is_pad, jnp.zeros((), self.values.dtype), self.values)
        unique, inverse = jnp.unique(indices, size=n, fill_value=pad, return_inverse=True)
        summed = jax.ops.segment_sum(values, inverse.reshape(-1), num_segments=n)
        return IndexedSlices(summed, unique.astype(self.indices.dtype), self.dense_shape)

    def scale(self, factor: Any) -> IndexedSlices:
        """These slices times a scalar (what gradient clipping or averaging does to a sparse grad)."""
        return IndexedSlices(self.values * factor, self.indices, self.dense_shape)

    def __mul__(self, factor: Any) -> IndexedSlices:
        if np.ndim(factor) != 0:
            return NotImplemented
        return self.scale(factor)

    __rmul__ = __mul__

    def __repr__(self) -> str:
        vshape = getattr(self.values, "shape", None)
        return f"IndexedSlices(values.shape={vshape}, dense_shape={self.dense_shape})"


def convert_to_tensor_or_indexed_slices(value: Any) -> jax.Array | IndexedSlices:
    """An IndexedSlices passes through; anything else becomes an array (TypeError if it cannot)."""
    if isinstance(value, IndexedSlices):
        return value
    if isinstance(value, Variable):
        return value.value
    try:
        return jnp.asarray(value)
    except TypeError as exc:
        raise TypeError(f"Gradient must be convertible to a Tensor or IndexedSlices, or None: {value}") from exc
