"""``embedding_lookup_sparse`` and ``safe_embedding_lookup_sparse``: TF1's bag-of-ids lookups.

Each row of a :class:`~jaxgraph.SparseTensor` of ids (optionally with a ``SparseTensor`` of weights) is
turned into one embedding: the rows of ``params`` for its ids, weighted and combined (``"sum"``,
``"mean"`` or ``"sqrtn"``). The math is TF's ``embedding_lookup_sparse_impl``: the ids are made unique
first and looked up once each (so the table's gradient is an ``IndexedSlices`` with one slice per
distinct id, summed, as TF's), then gathered per entry, weighted, and reduced per row with
``div_no_nan`` for the mean and sqrtn normalisations.

Empty slots of the ``SparseTensor`` (and, in the safe variant, pruned ids) are never looked up: they
get the padding index that sparse updates drop, so a lazy optimizer leaves every row that no real id
touched bit-identical.

>>> import jax.numpy as jnp
>>> from jaxgraph.sparse import from_ragged
>>> params = jnp.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
>>> ids = from_ragged([[0, 2], [1], []])
>>> embedding_lookup_sparse(params, ids, None, combiner="mean").tolist()
[[1.5, 1.0], [0.0, 1.0], [0.0, 0.0]]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.ids import check_ids
from jaxgraph.nn.embedding import embedding_lookup_masked
from jaxgraph.sparse_tensor import SparseTensor
from jaxgraph.variables import Variable

__all__ = ["embedding_lookup_sparse", "safe_embedding_lookup_sparse"]

_COMBINERS = ("mean", "sqrtn", "sum")


def _total_rows(params: Any) -> int:
    shards = params if isinstance(params, (list, tuple)) else [params]
    return sum(int(np.shape(s.value if isinstance(s, Variable) else s)[0]) for s in shards if s is not None)


def _check_inputs(combiner: str, ids: Any, weights: Any, ids_name: str, weights_name: str) -> jax.Array:
    """TF's argument checks (its texts, with the argument names of the calling function); the ids' values."""
    if combiner not in _COMBINERS:
        raise ValueError(f"combiner must be one of 'mean', 'sqrtn' or 'sum', got {combiner}")
    if not isinstance(ids, SparseTensor):
        raise TypeError(f"{ids_name} must be SparseTensor, got {type(ids)}")
    if weights is not None and not isinstance(weights, SparseTensor):
        # TF's text, missing space included.
        raise TypeError(f"{weights_name} must be either None or SparseTensor,got {type(weights)}")
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise TypeError(f"{ids_name} must hold integer ids, got dtype {ids.dtype}")
    if weights is None:
        return ids.values
    if weights.capacity != ids.capacity:
        raise ValueError(f"Shapes ({weights.capacity},) and ({ids.capacity},) are incompatible")
    if weights.dense_shape != ids.dense_shape:
        raise ValueError(f"Shapes {weights.dense_shape} and {ids.dense_shape} are incompatible")
    if not jnp.issubdtype(weights.dtype, jnp.floating):
        raise TypeError(f"{weights_name} must hold floating point weights, got dtype {weights.dtype}")
    concrete = not isinstance(ids.indices, jax.core.Tracer) and not isinstance(weights.indices, jax.core.Tracer)
    if concrete and not np.array_equal(np.asarray(ids.indices), np.asarray(weights.indices)):
        # TF assumes this and pairs them by position without checking.
        raise ValueError(f"{ids_name} and {weights_name} must have the same indices (pair each id with its weight)")
    return ids.values


def _combine(params: Any, ids: jax.Array, segments: jax.Array, weights: jax.Array | None, real: jax.Array,
             num_segments: int, combiner: str, partition_strategy: str, max_norm: Any) -> jax.Array:
    """``[num_segments, *row_shape]``: each segment's real entries looked up, weighted and combined.

    ``real`` marks the entries that take part; the others are neither read, checked nor differentiated.
    A real id outside the table raises TF's message when concrete; under ``jit`` it reads zeros (its
    weight still counts, as with TF's GPU gather) and its gradient is dropped (:mod:`jaxgraph.ids`).
    """
    total = _total_rows(params)
    # Only the real entries are checked (the others hold 0 for the check); positions are the entries'.
    checked = check_ids(jnp.where(real, ids, 0), total)
    # One lookup per distinct id, as TF (its unique + embedding_lookup): the sentinel `total` collects
    # everything not looked up (empty slots, pruned and out-of-range ids) and reads zeros.
    lookup_ids = jnp.where(real, checked, total)
    unique, position = jnp.unique(lookup_ids, size=ids.shape[0], fill_value=total, return_inverse=True)
    rows = embedding_lookup_masked(params, unique, unique < total, partition_strategy=partition_strategy,
                                   max_norm=max_norm)
    embeddings = jnp.take(rows, position.reshape(-1), axis=0)
    original_dtype = embeddings.dtype
    if original_dtype in (jnp.float16, jnp.bfloat16):
        # TF computes the weighted combination of low-precision embeddings in float32.
        embeddings = embeddings.astype(jnp.float32)
    w = jnp.ones(ids.shape, embeddings.dtype) if weights is None else weights.astype(embeddings.dtype)
    w = jnp.where(real, w, jnp.zeros((), embeddings.dtype))
    w_b = w.reshape(w.shape + (1,) * (embeddings.ndim - 1))
    seg = jnp.where(real, segments, num_segments)  # out of range: dropped by segment_sum
    summed = jax.ops.segment_sum(embeddings * w_b, seg, num_segments=num_segments)
    if combiner != "sum":
        norm = w_b if combiner == "mean" else w_b * w_b
        denom = jax.ops.segment_sum(jnp.broadcast_to(norm, embeddings.shape[:1] + (1,) * (embeddings.ndim - 1)),
                                    seg, num_segments=num_segments)
        if combiner == "sqrtn":
            denom = jnp.sqrt(denom)
        # div_no_nan, with a safe denominator so that the gradient stays finite where it is zero.
        zero = denom == 0
        safe = jnp.where(zero, jnp.ones((), denom.dtype), denom)
        summed = jnp.where(zero, jnp.zeros((), summed.dtype), summed / safe)
    return summed.astype(original_dtype)


def embedding_lookup_sparse(
    params: Any,
    sp_ids: SparseTensor,
    sp_weights: SparseTensor | None,
    partition_strategy: str = "mod",
    name: str | None = None,
    combiner: str | None = None,
    max_norm: float | None = None,
    allow_fast_lookup: bool = False,
) -> jax.Array:
    """``tf.compat.v1.nn.embedding_lookup_sparse``: one combined embedding per row of ``sp_ids``.

    Args:
      params: one table (a :class:`~jaxgraph.Variable` or array ``[N, ...]``) or a list of shards.
      sp_ids: a ``[batch, ...]`` :class:`~jaxgraph.SparseTensor` of integer ids; its first index is the
        row (TF's ``segment_ids``).
      sp_weights: ``None`` (every weight 1) or a float ``SparseTensor`` with the same indices.
      partition_strategy: ``"mod"`` or ``"div"``, for a list of shards.
      combiner: ``"mean"`` (default): ``sum(w * e) / sum(w)``; ``"sqrtn"``: ``sum(w * e) /
        sqrt(sum(w ** 2))``; ``"sum"``: ``sum(w * e)``. A zero denominator gives zeros (``div_no_nan``).
      max_norm: clip each looked-up row to this L2 norm before combining.
      allow_fast_lookup: accepted for TF compatibility; the gradient is always sparse here.

    Returns:
      ``[batch, *params.shape[1:]]``. A row without ids is zeros. (TF's output has ``max(row) + 1``
      rows, fewer when the last rows are empty; static shapes keep all ``batch`` rows.)

    Weights are not pruned: a weight of 0 still looks its id up (a zero-gradient update, as in TF).
    Ids must lie in the table: concrete ones outside it raise TF's ``"indices[k] = x is not in [0,
    N)"`` (``k`` indexes ``sp_ids.values``); under ``jit`` such an id reads zeros (its weight still
    counts, as with TF's GPU kernels) and its gradient is dropped, and :func:`jaxgraph.checked` raises
    the message instead (:mod:`jaxgraph.ids`). The entries need not be in row-major order.

    >>> import jax.numpy as jnp
    >>> from jaxgraph.sparse import from_ragged
    >>> params = jnp.eye(4)
    >>> ids = from_ragged([[1, 3], [0]])
    >>> weights = from_ragged([[2.0, 0.5], [1.0]])
    >>> embedding_lookup_sparse(params, ids, weights, combiner="mean")[0].tolist()
    [0.0, 0.800000011920929, 0.0, 0.20000000298023224]
    """
    del name, allow_fast_lookup
    combiner = "mean" if combiner is None else combiner
    ids = _check_inputs(combiner, sp_ids, sp_weights, "sp_ids", "sp_weights")
    real = sp_ids.mask
    weights = None if sp_weights is None else sp_weights.values
    return _combine(params, ids, sp_ids.indices[:, 0], weights, real, sp_ids.dense_shape[0], combiner,
                    partition_strategy, max_norm)


def safe_embedding_lookup_sparse(
    embedding_weights: Any,
    sparse_ids: SparseTensor,
    sparse_weights: SparseTensor | None = None,
    combiner: str = "mean",
    default_id: int | None = None,
    name: str | None = None,
    partition_strategy: str = "div",
    max_norm: float | None = None,
    allow_fast_lookup: bool = False,
) -> jax.Array:
    """``tf.compat.v1.nn.safe_embedding_lookup_sparse``: :func:`embedding_lookup_sparse` that tolerates
    invalid ids and empty rows.

    * Ids ``< 0`` are dropped, and so (unless ``combiner="sum"``) are ids whose weight is ``<= 0``.
    * A row left without ids gives zeros, or the embedding of ``default_id`` (which is then looked up,
      and updated, as in TF).
    * ``sparse_ids`` of rank ``> 2`` are combined along their last dimension: the output is
      ``dense_shape[:-1] + params.shape[1:]``.

    The default ``partition_strategy`` is ``"div"`` here, as in TF. Ids beyond the table raise TF's
    ``"indices[k] = x is not in [0, N)"`` when concrete (under ``jit``: zeros, no update; see
    :func:`embedding_lookup_sparse`). Unlike TF, an empty
    row with no ``default_id`` does not look up row 0 (TF gathers it and zeroes the result, so a lazy
    optimizer such as Momentum or FTRL gives row 0 a zero-gradient update); here it touches nothing.

    >>> import jax.numpy as jnp
    >>> from jaxgraph.sparse import from_ragged
    >>> params = jnp.array([[1.0], [2.0], [4.0]])
    >>> ids = from_ragged([[1, -1], [], [2]])
    >>> safe_embedding_lookup_sparse(params, ids)[:, 0].tolist()
    [2.0, 0.0, 4.0]
    >>> safe_embedding_lookup_sparse(params, ids, default_id=0)[:, 0].tolist()
    [2.0, 1.0, 4.0]
    """
    del name, allow_fast_lookup
    if embedding_weights is None or (isinstance(embedding_weights, (list, tuple)) and not embedding_weights):
        raise ValueError(f"Missing embedding_weights {embedding_weights}.")
    ids = _check_inputs(combiner, sparse_ids, sparse_weights, "sparse_ids", "sparse_weights")
    shape = sparse_ids.dense_shape
    if len(shape) < 2:
        raise ValueError(f"sparse_ids must have rank >= 2, got dense_shape {shape}")
    total = _total_rows(embedding_weights)
    num_rows = int(np.prod(shape[:-1]))
    real = sparse_ids.mask
    # Higher-rank ids: every dimension but the last one names the output row (TF's sparse_reshape).
    lead = sparse_ids.indices[:, :-1]
    segments = jnp.ravel_multi_index(tuple(lead[:, d] for d in range(lead.shape[1])), shape[:-1], mode="clip")
    keep = real & (ids >= 0)
    weights = None if sparse_weights is None else sparse_weights.values
    if weights is not None and combiner != "sum":
        keep = keep & (weights > 0)
    if default_id is not None:
        check_ids([int(default_id)], total)
        # TF's sparse_fill_empty_rows: an entry (default_id, weight 1) for each row left empty.
        has_ids = jax.ops.segment_sum(keep.astype(jnp.int32), jnp.where(keep, segments, num_rows),
                                      num_segments=num_rows) > 0
        ids = jnp.concatenate([ids, jnp.full((num_rows,), default_id, ids.dtype)])
        segments = jnp.concatenate([segments, jnp.arange(num_rows, dtype=segments.dtype)])
        keep = jnp.concatenate([keep, ~has_ids])
        if weights is not None:
            weights = jnp.concatenate([weights, jnp.ones((num_rows,), weights.dtype)])
    result = _combine(embedding_weights, ids, segments, weights, keep, num_rows, combiner, partition_strategy,
                      max_norm)
    return result.reshape(shape[:-1] + result.shape[1:])
