"""``embedding_lookup``: TF1's row gather over one table or a list of shards.

Every row read is a plain row gather (:func:`jaxgraph.gradients.gather_rows`, one per table), which
``compute_gradients`` recognises in the traced program and turns into an ``IndexedSlices`` gradient for
the table (TF1's ``_GatherGrad``) instead of a dense ``[V, D]`` one.

>>> import jax.numpy as jnp
>>> from jaxgraph.nn import embedding_lookup
>>> shards = [jnp.array([[0.0], [2.0], [4.0]]), jnp.array([[1.0], [3.0], [5.0]])]  # ids 0,2,4 | 1,3,5
>>> embedding_lookup(shards, jnp.array([5, 0, 2]), partition_strategy="mod")[:, 0].tolist()
[5.0, 0.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgraph import gradients
from jaxgraph.clip_ops import clip_by_norm
from jaxgraph.ids import as_ids, check_ids
from jaxgraph.variables import Variable

__all__ = ["embedding_lookup", "embedding_lookup_masked", "embedding_lookup_v2"]

_STRATEGIES = ("mod", "div")


def _as_shard_list(params: Any) -> list[Any]:
    if params is None:
        raise ValueError("params must be specified")
    if isinstance(params, (list, tuple)):
        if not params:
            raise ValueError("Need at least one param")
        shards = list(params)
    else:
        shards = [params]
    out = []
    for shard in shards:
        if shard is None:
            raise ValueError("params must be specified")
        # Variables stay Variables; gather_rows reads their arrays.
        out.append(shard if isinstance(shard, Variable) else jnp.asarray(shard))
    return out


def _rows_and_tail(shard: Any) -> tuple[int, tuple[int, ...]]:
    shape = tuple(shard.shape)
    if len(shape) < 1:
        raise ValueError(f"params must have rank >= 1 to be looked up by row, got shape {shape}")
    return shape[0], shape[1:]


def _partition(flat_ids: Any, strategy: str, sizes: Sequence[int], xp: Any) -> tuple[Any, Any]:
    """Shard index and shard-local row of each id, as TF's ``_embedding_lookup_and_transform``.

    ``xp`` is ``np`` for the host-side range check and ``jnp`` inside the computation, so both use the
    very same arithmetic.
    """
    num_shards = len(sizes)
    if strategy == "mod":
        return flat_ids % num_shards, flat_ids // num_shards
    total = sum(sizes)
    ids_per_partition, extras = divmod(total, num_shards)
    if ids_per_partition == 0:
        # TF would divide by zero here; fewer rows than shards only makes sense with one row each.
        raise ValueError(f"'div' partitioning needs at least as many rows ({total}) as shards ({num_shards})")
    assignments = xp.maximum(flat_ids // (ids_per_partition + 1), (flat_ids - extras) // ids_per_partition)
    new_ids = xp.where(
        assignments < extras,
        flat_ids % (ids_per_partition + 1),
        (flat_ids - extras) % ids_per_partition,
    )
    return assignments, new_ids


def _in_layout(strategy: str, sizes: Sequence[int]) -> Any:
    """``in_range`` for :func:`~jaxgraph.ids.check_ids`: the id's shard exists and has its row."""

    def in_range(flat_ids: Any, xp: Any) -> Any:
        p, local = _partition(flat_ids, strategy, sizes, xp)
        size_of = xp.asarray(sizes)[xp.clip(p, 0, len(sizes) - 1)]
        return (p >= 0) & (p < len(sizes)) & (local >= 0) & (local < size_of)

    return in_range


def embedding_lookup(
    params: Any,
    ids: Any,
    partition_strategy: str = "mod",
    name: str | None = None,
    validate_indices: bool = True,
    max_norm: float | None = None,
) -> jax.Array:
    """Look up rows ``ids`` of ``params``, as ``tf.compat.v1.nn.embedding_lookup``.

    Args:
      params: one table (a :class:`jaxgraph.Variable` or an array of shape ``[N, ...]``) or a list of
        shards of it. Shards may hold different row counts; they must share the trailing shape.
      ids: integer array of any shape (a Python list is accepted; ``[]`` is an empty id array).
      partition_strategy: how ids map to shards when there are several: ``"mod"`` (id ``i`` lives in
        shard ``i % n`` at row ``i // n``) or ``"div"`` (contiguous blocks, the first ``N % n`` shards
        holding one extra row). Unlike TF, a bad value is rejected even for a single table.
      name: accepted for TF compatibility; unused.
      validate_indices: deprecated in TF and unused there too.
      max_norm: if set, every looked-up row is scaled down to L2 norm ``<= max_norm``
        (``tf.clip_by_norm`` on the output; the table itself is not changed).

    Returns:
      An array of shape ``ids.shape + params.shape[1:]`` with the params' dtype.

    Raises:
      ValueError: ``params`` missing or empty (TF's messages), unknown strategy.
      InvalidArgumentError: (a ``ValueError``) concrete ``ids`` with an id outside the table, negative
        ones included: ``"indices[i] = x is not in [0, N)"`` (``i`` indexes the flattened ids, ``N``
        counts all rows).
      TypeError: non-integer ``ids``.

    Under ``jax.jit`` the ids are tracers and are not checked (see :mod:`jaxgraph.ids`): an id outside
    the table reads a row of zeros and its gradient is dropped, never another row. Compile with
    :func:`jaxgraph.checked` instead of ``jax.jit`` to have them raise TF's message.

    >>> import jax.numpy as jnp
    >>> table = jnp.arange(6.0).reshape(3, 2)
    >>> embedding_lookup(table, jnp.array([[2], [0]])).shape
    (2, 1, 2)
    >>> embedding_lookup(jnp.array([[3.0, 4.0]]), jnp.array([0]), max_norm=1.0).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    >>> import jax
    >>> jax.jit(embedding_lookup)(table, jnp.array([1, 3, -1])).tolist()  # out of range: zeros
    [[2.0, 3.0], [0.0, 0.0], [0.0, 0.0]]
    """
    del name, validate_indices
    shards, sizes, tail = _shards_and_sizes(params, partition_strategy)
    if len(shards) == 1:
        ids = check_ids(ids, sizes[0])
        # Out-of-range ids now hold the padding index: they read zeros and their gradient is dropped.
        result = gradients.gather_rows(shards[0], ids, padded=True)
    else:
        total = sum(sizes)
        ids = check_ids(ids, total, in_range=_in_layout(partition_strategy, sizes))
        flat_ids = ids.reshape(-1)
        # An out-of-range id (now the padding index `total`) is owned by no shard: zeros everywhere.
        result = _gather_partitioned(shards, sizes, tail, flat_ids, partition_strategy, flat_ids != total)
        result = result.reshape(ids.shape + tail)
    return _clip_rows(result, ids.ndim, max_norm)


def _shards_and_sizes(params: Any, partition_strategy: str) -> tuple[list[Any], list[int], tuple[int, ...]]:
    """The shards, their row counts and their common trailing shape, with TF's checks."""
    shards = _as_shard_list(params)
    if partition_strategy not in _STRATEGIES:
        raise ValueError("Unrecognized partition strategy: " + str(partition_strategy))
    sizes = []
    _, tail = _rows_and_tail(shards[0])  # _as_shard_list never returns an empty list
    for shard in shards:
        rows, shard_tail = _rows_and_tail(shard)
        if shard_tail != tail:
            raise ValueError(f"All shards must have the same trailing shape, got {tail} and {shard_tail}")
        if shard.dtype != shards[0].dtype:
            raise TypeError(f"All shards must have the same dtype, got {shards[0].dtype} and {shard.dtype}")
        sizes.append(rows)
    return shards, sizes, tail


def _gather_partitioned(shards: list[Any], sizes: list[int], tail: tuple[int, ...], flat_ids: jax.Array,
                        strategy: str, valid: jax.Array | None) -> jax.Array:
    """Rows ``flat_ids`` of the partitioned table; where ``valid`` is False, zeros and no gradient.

    Static shapes instead of TF's dynamic_partition/stitch: every shard gathers one row per id, with
    its padding index (one past its last row) standing in where it does not own the id (or the id is
    not valid), then a select keeps the owner's row. The stand-ins read zeros and, in a shard's
    IndexedSlices gradient, carry the padding index that sparse updates drop: no row of a shard is
    touched unless one of its own ids was looked up (lazy optimizers depend on that).
    """
    if len(shards) == 1:
        local = flat_ids if valid is None else jnp.where(valid, flat_ids, sizes[0])
        return gradients.gather_rows(shards[0], local, padded=True)
    assignments, new_ids = _partition(flat_ids, strategy, sizes, jnp)
    result: jax.Array | None = None
    for p, shard in enumerate(shards):
        owned = assignments == p
        if valid is not None:
            owned = owned & valid
        gathered = gradients.gather_rows(shard, jnp.where(owned, new_ids, sizes[p]), padded=True)
        if result is None:
            result = gathered
        else:
            mask = owned.reshape(owned.shape + (1,) * len(tail))
            result = jnp.where(mask, gathered, result)
    assert result is not None  # there are at least two shards here
    return result


def _clip_rows(result: jax.Array, ids_ndim: int, max_norm: Any) -> jax.Array:
    if max_norm is None:
        return result
    # tf.clip_by_norm over each looked-up row's own axes.
    return clip_by_norm(result, max_norm, axes=tuple(range(ids_ndim, result.ndim)))


def embedding_lookup_masked(
    params: Any,
    ids: Any,
    mask: Any,
    partition_strategy: str = "mod",
    max_norm: float | None = None,
) -> jax.Array:
    """:func:`embedding_lookup` of the ids where ``mask`` is True; zeros elsewhere, and no update there.

    Not in TF: the building block of :func:`jaxgraph.nn.embedding_lookup_sparse`, public for models that
    keep padded id matrices. A masked-out id is never read, checked or differentiated (it carries the
    padding index that sparse updates drop), so a lazy optimizer leaves its row bit-identical; its value
    does not matter (``-1`` padding is fine). The unmasked ids follow :mod:`jaxgraph.ids`: a concrete one
    outside the table raises TF's ``"indices[i] = x is not in [0, N)"``; under ``jit`` it reads zeros and
    its gradient is dropped (:func:`jaxgraph.checked` raises instead).

    >>> import jax.numpy as jnp
    >>> table = jnp.arange(6.0).reshape(3, 2)
    >>> ids = jnp.array([[2, -1], [0, 1]])
    >>> embedding_lookup_masked(table, ids, ids >= 0).tolist()
    [[[4.0, 5.0], [0.0, 0.0]], [[0.0, 1.0], [2.0, 3.0]]]
    """
    shards, sizes, tail = _shards_and_sizes(params, partition_strategy)
    ids, _ = as_ids(ids)
    mask = jnp.asarray(mask)
    if mask.shape != ids.shape or mask.dtype != jnp.bool_:
        raise ValueError(f"mask must be a bool array of the ids' shape {ids.shape}, got {mask.dtype}{list(mask.shape)}")
    total = sum(sizes)
    in_range = _in_layout(partition_strategy, sizes) if len(shards) > 1 else None
    # A masked-out slot holds id 0 for the check, so only the real ids are checked (positions kept).
    flat_ids = check_ids(jnp.where(mask, ids, 0), total, in_range=in_range).reshape(-1)
    valid = mask.reshape(-1) & (flat_ids != total)
    result = _gather_partitioned(shards, sizes, tail, flat_ids, partition_strategy, valid)
    return _clip_rows(result.reshape(ids.shape + tail), ids.ndim, max_norm)


def embedding_lookup_v2(params: Any, ids: Any, max_norm: float | None = None, name: str | None = None) -> jax.Array:
    """TF2's ``tf.nn.embedding_lookup``: :func:`embedding_lookup` with ``partition_strategy="div"``.

    >>> import jax.numpy as jnp
    >>> shards = [jnp.array([[0.0], [1.0]]), jnp.array([[2.0]])]
    >>> embedding_lookup_v2(shards, jnp.array([2, 1]))[:, 0].tolist()
    [2.0, 1.0]
    """
    return embedding_lookup(params, ids, partition_strategy="div", name=name, max_norm=max_norm)
