"""The negatives of a step, drawn inside the compiled step.

* ``--loss neg``: :func:`centre_negatives`, ``drawn`` per row of the step: per group of consecutive centres
  (``--shared-negatives`` with ``--negative-sharing group``, a row is a group) or per centre
  (``--negatives-per-centre`` with ``--negative-sharing centre``), from ``unigram**0.75`` (the
  distribution of ``jaxgraph.nn.fixed_unigram_candidate_sampler`` with ``distortion=0.75``), by the alias table of
  :func:`jaxgraph.nn.candidate_sampling.alias_table` (built once on the host by :func:`unigram_tables` and kept
  on the device). The randomness is a hash of ``(seed, step, slot)`` (``hashing.py``), so a centre's negatives
  are the same however the batch is split over devices.
* ``--loss nce``: :func:`shared_nce_negatives`, TF's one shared set per batch of unique log-uniform negatives
  (``jaxgraph.nn.log_uniform_candidate_sampler``; ids are in frequency order, as that sampler assumes).

>>> import numpy as np, jax.numpy as jnp
>>> tables = unigram_tables(np.array([100, 10, 1]))
>>> centre_negatives(tables, seed=1, step=jnp.int32(0), first_row=0, n_rows=2, drawn=3).shape
(2, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxgraph as jg
from examples.word2vec import hashing
from jaxgraph.nn.candidate_sampling import alias_table

__all__ = ["centre_negatives", "shared_nce_negatives", "unigram_tables"]


def unigram_tables(counts: np.ndarray, distortion: float = 0.75) -> dict[str, np.ndarray]:
    """``{"accept", "alias"}``: the alias table of ``counts ** distortion`` (word2vec's noise distribution)."""
    accept, alias = alias_table(np.asarray(counts, np.float64) ** distortion)
    return {"accept": accept, "alias": alias}


def centre_negatives(tables: dict[str, jax.Array], seed: int, step: jax.Array, first_row: jax.Array | int,
                     n_rows: int, drawn: int) -> jax.Array:
    """Negatives of the centre rows ``first_row .. first_row + n_rows`` of a step (``[n_rows, drawn]``)."""
    vocab_size = tables["accept"].shape[0]
    slot = (first_row * drawn + jnp.arange(n_rows * drawn, dtype=jnp.int32)).astype(jnp.uint32)
    u1 = hashing.uniform(hashing.position_hash(seed, hashing.NEGATIVE_ID, step, slot))
    u2 = hashing.uniform(hashing.position_hash(seed, hashing.NEGATIVE_ACCEPT, step, slot))
    i = jnp.minimum((u1 * vocab_size).astype(jnp.int32), vocab_size - 1)
    return jnp.where(u2 < tables["accept"][i], i, tables["alias"][i]).reshape(n_rows, drawn)


def shared_nce_negatives(centres: jax.Array, key: jax.Array, n_centres: int, context_slots: int, negatives: int,
                         vocab_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(sampled [negatives], true_expected [rows, context_slots], sampled_expected [negatives])``: one set for
    the whole batch, with the expected counts of the labels (each centre, once per context slot) of the first
    ``n_centres`` rows (independent of the device count); the padding rows' are 1."""
    real = centres[:n_centres]
    sampled, true_exp, sampled_exp = jg.nn.log_uniform_candidate_sampler(
        jnp.repeat(real, context_slots)[:, None], 1, negatives, True, vocab_size, key)
    rows = centres.shape[0]
    true_exp = jnp.pad(true_exp.reshape(n_centres, context_slots), ((0, rows - n_centres), (0, 0)),
                       constant_values=1.0)
    return sampled, true_exp, sampled_exp
