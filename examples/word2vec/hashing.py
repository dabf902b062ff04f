"""Counter-based randomness: every random choice of the trainer is a hash of ``(seed, salt, counter, position)``.

Nothing random is carried in the training state, so any step can be recomputed exactly (a resumed run ends with
the embeddings of an uninterrupted one), and a draw does not depend on how a batch is split over devices. The hash
is ``lowbias32`` (integer operations on uint32: identical on every backend); ``jax.random``'s threefry cost about
0.3 ms per step on CPU, where it runs as XLA loops. The salts keep the streams apart:
:data:`SUBSAMPLE` and :data:`WINDOW` (per epoch and corpus position, ``batches.py``), :data:`NEGATIVE_ID` and
:data:`NEGATIVE_ACCEPT` (per step and negative slot, ``sampling.py``).

>>> import jax.numpy as jnp
>>> u = uniform(position_hash(1, SUBSAMPLE, jnp.int32(0), jnp.arange(4)))
>>> u.dtype, bool(((0 <= u) & (u < 1)).all())
(dtype('float32'), True)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["NEGATIVE_ACCEPT", "NEGATIVE_ID", "SUBSAMPLE", "WINDOW", "mix32", "position_hash", "uniform"]

SUBSAMPLE, WINDOW, NEGATIVE_ID, NEGATIVE_ACCEPT = 1, 2, 3, 4


def mix32(x: jax.Array) -> jax.Array:
    """lowbias32 integer hash (uint32 in, uint32 out)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def position_hash(seed: int, salt: int, counter: jax.Array, positions: jax.Array) -> jax.Array:
    """uint32 hashes of ``positions`` in the stream ``(seed, salt, counter)`` (the counter: an epoch or a step)."""
    base = mix32(jnp.uint32((seed * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF))
    base = mix32(base ^ counter.astype(jnp.uint32))
    return mix32(base ^ positions.astype(jnp.uint32))


def uniform(h: jax.Array) -> jax.Array:
    """float32 in ``[0, 1)`` from a hash's top 24 bits (all a float32 holds exactly)."""
    return (h >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
