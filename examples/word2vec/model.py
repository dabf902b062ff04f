"""The skip-gram model: its parameters and its two losses.

The two embedding tables are :class:`jaxgraph.Variable` s read through :func:`jaxgraph.nn.embedding_lookup`, so a
jaxgraph optimizer's ``minimize`` gets ``IndexedSlices`` gradients and applies one in-place scatter per table.

* ``--loss neg`` (default), :func:`skipgram_negative_sampling_loss`: word2vec's skip-gram with negative sampling,
  in the word2vec paper's orientation (the centre's input vector predicts its context words' output vectors).
  Each pair's loss is word2vec's ``-log s(v.u_ctx) - sum of --negatives (K, 5) terms -log s(-v.u_neg)``. Instead
  of K fresh negatives per *pair*, ``--negatives-per-centre`` (M, default 2K) are drawn per *centre* and shared by
  its ``2b`` pairs, each pair's K negative terms estimated as ``K/M`` times the sum over the M (an unbiased
  estimate of word2vec's objective); a negative equal to the centre is skipped, as word2vec does. A step then
  computes one row of ``2W + M`` dot products per centre instead of ``2b`` rows of ``1 + K``: on the 2-core CPU
  this took the trainer from 0.73x to 1.33x gensim's words/sec, with the same WordSim353 score at the same
  training time, a lower SimLex-999 and analogy score (``benchmarks/README.md``); ``--negatives-per-centre 50``
  gives gensim's scores per epoch at about a fifth of the speed. TF's one shared set per *batch* would be cheaper
  still, but sends the summed gradient of thousands of pairs into a few rows (unstable for plain SGD at
  word2vec's rate).
* ``--loss nce``, :func:`skipgram_nce_loss`: ``jaxgraph.nn.nce_loss`` with TF's shared, unique, log-uniform
  negatives (64 by default).

Both losses are the *sum* over the batch's pairs, so plain SGD at ``--learning-rate 0.025`` applies the same
per-pair step as word2vec and gensim.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxgraph as jg

__all__ = ["init_params", "skipgram_negative_sampling_loss", "skipgram_nce_loss"]


def init_params(vocab_size: int, dim: int, loss: str, seed: int) -> dict[str, Any]:
    """The training state's Variables: ``emb_in`` ~ U(-0.5/dim, 0.5/dim) (word2vec's), ``emb_out`` = 0, the global
    step, the corpus ``epoch`` and ``position`` (non-trainable: the batches' cursor), and ``nce_biases`` for nce.

    >>> sorted(init_params(10, 4, "neg", seed=1))
    ['emb_in', 'emb_out', 'epoch', 'global_step', 'position']
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x1217)
    params = {
        "emb_in": jg.Variable(
            jax.random.uniform(key, (vocab_size, dim), jnp.float32, -0.5 / dim, 0.5 / dim), name="emb_in"
        ),
        "emb_out": jg.Variable(jnp.zeros((vocab_size, dim), jnp.float32), name="emb_out"),
        "global_step": jg.create_global_step(),
        "epoch": jg.Variable(jnp.zeros((), jnp.int32), trainable=False, name="epoch"),
        "position": jg.Variable(jnp.zeros((), jnp.int32), trainable=False, name="position"),
    }
    if loss == "nce":
        params["nce_biases"] = jg.Variable(jnp.zeros((vocab_size,), jnp.float32), name="nce_biases")
    return params


@jax.custom_vjp
def _neg_log_sigmoid_sum(z: jax.Array, weight: jax.Array) -> jax.Array:
    """``-sum(weight * log_sigmoid(z))`` over flat float32 arrays, with a hand-written gradient.

    Differentiating ``jnp.where(weight, jax.nn.log_sigmoid(z), 0)`` leaves XLA's CPU backend several
    passes over the logits (softplus, its derivative, the selects), which cost as much as the pair
    products themselves; here one pass computes ``e = exp(-|z|)`` once and from it both the loss
    (``max(-z, 0) + log1p(e)``) and the gradient (``-weight * sigmoid(-z)``), which the backward pass
    only scales. About 4x less time for this part of the step.
    """
    return _neg_log_sigmoid_sum_fwd(z, weight)[0]


def _neg_log_sigmoid_sum_fwd(z, weight):
    e = jnp.exp(-jnp.abs(z))
    r = 1.0 / (1.0 + e)
    sigmoid_neg_z = jnp.where(z >= 0, e * r, r)
    loss = jnp.sum(weight * (jnp.maximum(-z, 0.0) + jnp.log1p(e)))
    return loss, (-(weight * sigmoid_neg_z),)


def _neg_log_sigmoid_sum_bwd(res, g):
    (dz,) = res
    return g * dz, None


_neg_log_sigmoid_sum.defvjp(_neg_log_sigmoid_sum_fwd, _neg_log_sigmoid_sum_bwd)


def skipgram_negative_sampling_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array,
                                    mask: jax.Array, negs: jax.Array, negatives: int) -> jax.Array:
    """The summed ``--loss neg`` loss of a batch: ``centres [C]``, ``contexts [C, S]`` with ``mask [C, S]``
    marking the real pairs, and ``negs [C, M]``, the negatives drawn for each centre.

    Skip-gram as in the word2vec paper: the centre's input vector ``v`` (``params["emb_in"]``) predicts
    the output vectors ``u`` (``params["emb_out"]``) of its context words. A pair's loss is word2vec's
    ``-log s(v.u_ctx) - sum_{k<K} log s(-v.u_neg_k)`` with ``K = negatives``; the centre's M negatives
    serve all its ``n`` pairs, each pair's K negative terms estimated by ``K/M`` times the sum over the
    M, so the negative part of a centre's loss is ``n K/M sum_m -log s(-v.u_m)``, computed once (a
    negative equal to the centre is skipped, as in word2vec). That is one row of ``S + M`` dot products
    per centre (a matrix-vector product) instead of gensim's ``[S, 1 + K]`` block (context predicts
    centre, negatives per pair), fewer rows and far fewer small products per step.

    >>> p = {"emb_in": jg.Variable(jnp.ones((4, 2))), "emb_out": jg.Variable(jnp.zeros((4, 2)))}
    >>> loss = skipgram_negative_sampling_loss(p, jnp.array([0]), jnp.array([[1, 2]]),
    ...                                        jnp.array([[True, False]]), jnp.array([[3, 3]]), 2)
    >>> round(float(loss / np.log(2)), 4)  # one pair: its positive term and K = 2 negative terms
    3.0
    """
    outs = jnp.concatenate([contexts, negs], axis=1)  # [C, S + M]
    v = jg.nn.embedding_lookup(params["emb_in"], centres)  # [C, D]
    u = jg.nn.embedding_lookup(params["emb_out"], outs)  # [C, S + M, D]
    logits = jnp.einsum("cd,ckd->ck", v, u)
    n_ctx, drawn = contexts.shape[1], negs.shape[1]
    sign = jnp.asarray(np.array([1.0] * n_ctx + [-1.0] * drawn, np.float32))
    n_pairs = jnp.sum(mask, axis=1, keepdims=True).astype(logits.dtype)
    neg_weight = jnp.where(negs != centres[:, None], n_pairs * (negatives / drawn), 0.0)
    weight = jnp.concatenate([mask.astype(logits.dtype), neg_weight], axis=1)
    return _neg_log_sigmoid_sum((logits * sign).reshape(-1), weight.reshape(-1))


def skipgram_nce_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array, mask: jax.Array,
                      noise: tuple[jax.Array, jax.Array, jax.Array], negatives: int, vocab_size: int) -> jax.Array:
    """The summed ``--loss nce`` loss of a batch: each context word's input vector predicts its centre
    (TF's tutorial orientation) against the shared ``noise = (sampled, true_expected [C, S], sampled_expected)``
    of ``sampling.shared_nce_negatives``; ``mask [C, S]`` marks the real pairs."""
    sampled, true_exp, sampled_exp = noise
    v = jg.nn.embedding_lookup(params["emb_in"], contexts.reshape(-1))
    labels = jnp.repeat(centres, contexts.shape[1])[:, None]
    per_pair = jg.nn.nce_loss(params["emb_out"], params["nce_biases"], labels, v, negatives, vocab_size,
                              sampled_values=(sampled, true_exp.reshape(-1, 1), sampled_exp))
    return jnp.sum(per_pair * mask.reshape(-1))
