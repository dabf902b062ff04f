"""word2vec's initial tables, filled block by block into a donated buffer (benchmarks' helper).

Nothing larger than a block is made besides the table itself, so the memory a benchmark measures
afterwards is the tables' own, not an allocator's leftovers from table-sized temporaries.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

__all__ = ["word2vec_table"]

_BLOCK = 1 << 15


@functools.partial(jax.jit, donate_argnums=0, static_argnames=("kind", "rows"))
def _fill(table: jax.Array, key: jax.Array, start: jax.Array, kind: str, rows: int) -> jax.Array:
    shape = (rows, table.shape[1])
    if kind == "uniform":
        values = jax.random.uniform(key, shape, minval=-1.0, maxval=1.0)
    else:
        values = jax.random.truncated_normal(key, -2.0, 2.0, shape) / math.sqrt(table.shape[1])
    return jax.lax.dynamic_update_slice(table, values, (start, 0))


def word2vec_table(rows: int, dim: int, key: jax.Array, kind: str) -> jax.Array:
    """TF's word2vec initialisers: ``"uniform"`` in [-1, 1) (the embeddings) or ``"truncated_normal"``
    with stddev ``1/sqrt(dim)`` (the NCE weights)."""
    block = min(rows, _BLOCK)
    table = jnp.zeros((rows, dim), jnp.float32)
    for i, start in enumerate(range(0, rows, block)):
        # The last block may overlap the previous one (dynamic_update_slice clamps the start).
        table = _fill(table, jax.random.fold_in(key, i), start, kind, block)
    return table
