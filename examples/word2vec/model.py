"""The skip-gram model: its parameters and its two losses.

The two embedding tables are :class:`jaxgraph.Variable` s read through :func:`jaxgraph.nn.embedding_lookup`, so a
jaxgraph optimizer's ``minimize`` gets ``IndexedSlices`` gradients and applies one in-place scatter per table.

* ``--loss neg`` (default): word2vec's skip-gram with negative sampling, in the word2vec paper's orientation (the
  centre's input vector predicts its context words' output vectors). Each pair's loss is word2vec's
  ``-log s(v.u_ctx) - sum of --negatives (K, 5) terms -log s(-v.u_neg)``, its K negative terms estimated from
  negatives shared by several pairs, weighted so that the estimate is unbiased; a pair skips a negative equal to
  the word it predicts (its context), as word2vec does (:func:`group_negatives_weights`).

  - ``--negative-sharing group`` (default), :func:`skipgram_group_negatives_loss`: a step's centres fall into
    groups of about ``--pairs-per-group`` (256) pairs of consecutive centres; ``--shared-negatives`` (S, 64) per
    group serve all its centres (weight ``K/S`` per pair), scored with one ``[centres, S]`` matrix product per
    group, and the context rows are read once per token of the step's band (:func:`band_logits`). Every centre
    sees 64 distinct negatives (word2vec: ~30) at a fraction of the row traffic of its own draws, which closed
    most of the earlier scheme's analogy gap (``benchmarks/README.md``). The group size bounds the weight one
    drawn row carries (256 x K / S = 20 pair-draws): one set for a whole step of 1,024 pairs (80) diverged
    (``benchmarks/notes/issue14-research.md``).
  - ``--negative-sharing centre``, :func:`skipgram_negative_sampling_loss`: ``--negatives-per-centre`` (M,
    default 2K) per *centre*, shared by its ``2b`` pairs (weight ``K/M``), one row of ``2W + M`` dot products
    per centre. With M = 10 it scored ~0.6-0.7x gensim's analogy accuracy per epoch; ``--negatives-per-centre
    50`` closes that gap at about a fifth of the speed.

  Both sum a step's updates of a row, computed from the same vectors, where word2vec applies them one pair at a
  time; a row in many of a step's pairs (a frequent word, a centre at window 10, a taxonomy list repeating
  "order") can then take a step past the edge of stability. ``step_cap`` (``--step-cap``, the default with
  grouped negatives and SGD) shortens those steps to that edge; at 300-d / window 10 it raised analogy accuracy
  to 1.5-1.7x gensim's on two corpora of three (``benchmarks/README.md``).
  A batched step also misses the coupling between its pairs that word2vec's pair-by-pair updates have (each pair
  sees the rows the pairs before it moved); ``sequential_lr`` (``--sequential-correction``, opt-in) puts it back
  to first order in the rate: :func:`_sequential_gradients`.
* ``--loss nce``, :func:`skipgram_nce_loss`: ``jaxgraph.nn.nce_loss`` with TF's shared, unique, log-uniform
  negatives (64 by default).

Both losses are the *sum* over the batch's pairs, so plain SGD at ``--learning-rate 0.025`` applies the same
per-pair step as word2vec and gensim.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxgraph as jg

__all__ = ["band_logits", "group_negatives_weights", "init_params", "skipgram_group_negatives_loss",
           "skipgram_negative_sampling_loss", "skipgram_nce_loss", "window_band"]


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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _neg_log_sigmoid_sum(z: jax.Array, weight: jax.Array, max_logit: float | None = None) -> jax.Array:
    """``-sum(weight * log_sigmoid(z))`` over flat float32 arrays, with a hand-written gradient (0 for the terms
    with ``|z| >= max_logit``, when given: :func:`_trained`).

    Differentiating ``jnp.where(weight, jax.nn.log_sigmoid(z), 0)`` leaves XLA's CPU backend several
    passes over the logits (softplus, its derivative, the selects), which cost as much as the pair
    products themselves; here one pass computes ``e = exp(-|z|)`` once and from it both the loss
    (``max(-z, 0) + log1p(e)``) and the gradient (``-weight * sigmoid(-z)``), which the backward pass
    only scales. About 4x less time for this part of the step.
    """
    return _neg_log_sigmoid_sum_fwd(z, weight, max_logit)[0]


def _neg_log_sigmoid_sum_fwd(z, weight, max_logit):
    e = jnp.exp(-jnp.abs(z))
    r = 1.0 / (1.0 + e)
    sigmoid_neg_z = jnp.where(z >= 0, e * r, r)
    loss = jnp.sum(weight * (jnp.maximum(-z, 0.0) + jnp.log1p(e)))
    return loss, (_trained(z, -(weight * sigmoid_neg_z), max_logit),)


def _trained(z: jax.Array, dz: jax.Array, max_logit: float | None) -> jax.Array:
    """The terms' derivatives ``dz``, 0 where the logit ``z`` is beyond ``+-max_logit`` (``--max-logit``: gensim's
    ``MAX_EXP`` rule, which skips such terms; word2vec's C code gives them the sigmoid's limit, the exact
    gradient's); ``dz`` itself when ``max_logit`` is None."""
    return dz if max_logit is None else jnp.where(jnp.abs(z) < max_logit, dz, 0.0)


def _neg_log_sigmoid_sum_bwd(_max_logit, res, g):
    (dz,) = res
    return g * dz, None


_neg_log_sigmoid_sum.defvjp(_neg_log_sigmoid_sum_fwd, _neg_log_sigmoid_sum_bwd)


def skipgram_negative_sampling_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array,
                                    mask: jax.Array, negs: jax.Array, negatives: int,
                                    max_logit: float | None = None) -> jax.Array:
    """The summed ``--loss neg`` loss of a batch: ``centres [C]``, ``contexts [C, S]`` with ``mask [C, S]``
    marking the real pairs, and ``negs [C, M]``, the negatives drawn for each centre.

    Skip-gram as in the word2vec paper: the centre's input vector ``v`` (``params["emb_in"]``) predicts
    the output vectors ``u`` (``params["emb_out"]``) of its context words. A pair's loss is word2vec's
    ``-log s(v.u_ctx) - sum_{k<K} log s(-v.u_neg_k)`` with ``K = negatives``; the centre's M negatives
    serve all its ``n`` pairs, each pair's K negative terms estimated by ``K/M`` times the sum over the
    M, so the negative part of a centre's loss is ``sum_m n_m K/M -log s(-v.u_m)``, computed once, ``n_m`` the
    number of the centre's pairs whose context is not negative m (a pair skips a negative equal to the word
    it predicts, as word2vec does). That is one row of ``S + M`` dot products
    per centre (a matrix-vector product) instead of gensim's ``[S, 1 + K]`` block (context predicts
    centre, negatives per pair), fewer rows and far fewer small products per step. ``max_logit``: as in
    :func:`skipgram_group_negatives_loss`.

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
    weight = group_negatives_weights(centres, contexts, mask, negs, negatives, logits.dtype)  # groups of one centre
    return _neg_log_sigmoid_sum((logits * sign).reshape(-1), weight.reshape(-1), max_logit)


def group_negatives_weights(centres: jax.Array, contexts: jax.Array, mask: jax.Array, negs: jax.Array,
                            negatives: int, dtype: Any = jnp.float32) -> jax.Array:
    """``[C, 2W + S]``: the weights of a batch's ``--loss neg`` terms, laid out as the losses lay out their logits.

    First ``mask [C, 2W]`` (each real pair's positive term), then each centre's group's S negatives (``negs [G, S]``,
    groups of ``ceil(C / G)`` consecutive centres), each weighted ``K / S`` times the number of the centre's pairs
    whose context word differs from it: each pair's K = ``negatives`` terms are estimated by ``K / S`` times the sum
    over the group's S, which keeps the estimate of word2vec's objective unbiased, and a pair skips a negative equal
    to the word it predicts (its context), as word2vec does. (word2vec's code runs the pair the other way round,
    context predicting centre, and skips a negative equal to the centre: the word predicted, in either
    orientation.) Per-centre negatives (``negs [C, M]``, :func:`skipgram_negative_sampling_loss`) are groups of one
    centre: the repeat is then a no-op that XLA removes, so both losses share this one definition at no cost. Groups
    of more than one centre need the windows that :class:`BatchMaker` cuts from one band (:func:`window_band`).

    >>> group_negatives_weights(jnp.array([0, 1, 2]), jnp.array([[5, 1], [0, 2], [1, 7]]),  # band 5 0 1 2 7
    ...                         jnp.array([[True, True], [True, False], [False, True]]),
    ...                         jnp.array([[1, 3], [2, 7]]), 2).tolist()  # centres 0, 1 share [1, 3]; 2 has [2, 7]
    [[1.0, 1.0, 1.0, 2.0], [1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    """
    c = contexts.shape[0]
    groups, drawn = negs.shape
    per = -(-c // groups)
    own = jnp.repeat(negs, per, axis=0)[:c]  # each centre's group's negatives
    n_pairs = jnp.sum(mask, axis=1, keepdims=True).astype(dtype)
    if per == 1:  # per-centre negatives
        matches = jnp.sum(mask[:, :, None] & (contexts[:, :, None] == own[:, None, :]), axis=1).astype(dtype)
    else:
        matches = _context_matches(centres, contexts, mask, negs, per, dtype)
    return jnp.concatenate([mask.astype(dtype), (n_pairs - matches) * (negatives / drawn)], axis=1)


def _context_matches(centres, contexts, mask, negs, per, dtype):
    """``[C, S]``: for each centre and each negative of its group, how many of its real pairs have that negative as
    their context, for windows cut from one band (:func:`window_band`). Each group's negatives are compared with the
    group's stretch of the band once (``[G, S, per + 2W]``), and a banded matrix of the pairs' masks sums them per
    centre in one batched matrix product: the direct ``[C, 2W, S]`` comparison made XLA recompute the negatives'
    draws for every element (+0.15 ms per step)."""
    c, two_w = contexts.shape
    groups, drawn = negs.shape
    w = two_w // 2
    length = per + two_w  # a group's stretch of the band
    band = jnp.pad(window_band(centres, contexts), (0, groups * per - c))
    stretch = band[jnp.arange(groups)[:, None] * per + jnp.arange(length)[None, :]]  # [G, L]
    equal = (negs[:, :, None] == stretch[:, None, :]).astype(dtype)  # [G, S, L]
    # banded[g, i, i + j + (j >= W)] = mask of centre g * per + i's pair j: each row its window, shifted by i.
    window = jnp.concatenate([mask[:, :w], jnp.zeros((c, 1), bool), mask[:, w:]], axis=1).astype(dtype)
    window = jnp.pad(window, ((0, groups * per - c), (0, length - two_w)))  # [G * per, L + 1]
    banded = window.reshape(groups, per * (length + 1))[:, : per * length].reshape(groups, per, length)
    return jnp.einsum("gil,gsl->gis", banded, equal).reshape(groups * per, drawn)[:c]


def window_band(centres: jax.Array, contexts: jax.Array) -> jax.Array:
    """The run of consecutive kept tokens ``[C + 2W]`` from which :class:`BatchMaker` cut a step's windows.

    The step's centres are consecutive kept tokens and each window holds the W kept tokens before and after
    its centre, so the band is the first window's left half, the centres, and the last window's right half:
    ``contexts[i, j] == band[i + j + (j >= W)]`` wherever the pair is real (``mask[i, j]``).

    >>> window_band(jnp.array([5, 6, 7]), jnp.array([[4, 6], [5, 7], [6, 8]])).tolist()
    [4, 5, 6, 7, 8]
    """
    w = contexts.shape[1] // 2
    return jnp.concatenate([contexts[0, :w], centres, contexts[-1, w:]])


def band_logits(v: jax.Array, u_band: jax.Array) -> jax.Array:
    """``[C, 2W]`` dot products of each centre's vector with its window's rows of the band:
    ``out[i, j] = v[i] . u_band[i + j + (j >= W)]`` for ``v [C, D]`` and ``u_band [C + 2W, D]``.

    Nothing of size ``[C, 2W, D]`` is materialised (gathering every window's rows from the table, and
    scattering their gradients back, was most of the step's time): the centres are cut into blocks of
    ``T = 2W``, each block's ``[T, D]`` vectors multiplied with its ``2T`` band rows in one small matrix
    product (twice the products needed), and the ``2W`` wanted diagonals of the ``[T, 2T]`` result read
    by a skew (pad and reshape); its gradient is again matrix products and pads.

    >>> v = jnp.arange(6.0).reshape(3, 2); u = jnp.ones((5, 2))   # C = 3, W = 1
    >>> band_logits(v, u).tolist()
    [[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]
    """
    c, d = v.shape
    t = u_band.shape[0] - c  # 2W
    w = t // 2
    nb = -(-c // t)
    pad = nb * t - c
    vb = jnp.pad(v, ((0, pad), (0, 0))).reshape(nb, t, d)
    ub = jnp.pad(u_band, ((0, pad), (0, 0)))  # (nb + 1) * T rows
    blocks = jnp.concatenate([ub[: nb * t].reshape(nb, t, d), ub[t:].reshape(nb, t, d)], axis=1)  # [nb, 2T, D]
    full = jnp.einsum("btd,bkd->btk", vb, blocks)  # [nb, T, 2T]: centre a of a block against band rows a + s
    # In the flat [T * 2T] layout padded to T * (2T + 1), row a of a [T, 2T + 1] view starts at offset
    # s = 0 of centre a, so its first 2W + 1 entries are the offsets 0 .. 2W (offset W is the centre).
    skew = jnp.pad(full.reshape(nb, 2 * t * t), ((0, 0), (0, t))).reshape(nb, t, 2 * t + 1)
    out = jnp.concatenate([skew[:, :, :w], skew[:, :, w + 1: t + 1]], axis=2)
    return out.reshape(nb * t, t)[:c]


def skipgram_group_negatives_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array,
                                  mask: jax.Array, negs: jax.Array, negatives: int,
                                  step_cap: float | None = None,
                                  sequential_lr: jax.Array | float | None = None,
                                  axis_name: str | None = None, max_logit: float | None = None) -> jax.Array:
    """The summed ``--loss neg`` loss of a batch whose negatives are shared by groups of consecutive centres.

    ``centres [C]``, ``contexts [C, 2W]`` and ``mask [C, 2W]`` as :class:`BatchMaker` makes them (consecutive
    centres, see :func:`window_band`), ``negs [G, S]``: the C centres fall into G groups of ``ceil(C / G)``
    consecutive centres, and group g's S negatives serve all its centres. A pair's loss is word2vec's
    ``-log s(v.u_ctx) - sum_{k<K} log s(-v.u_neg_k)`` with ``K = negatives``, its K negative terms
    estimated by ``K/S`` times the sum over the group's S negatives (a pair skips a negative equal to its
    context, as in :func:`skipgram_negative_sampling_loss`), so a centre adds ``sum_s n_s K/S -log s(-v.u_s)``,
    ``n_s`` its pairs whose context is not negative s: an unbiased estimate of word2vec's objective, from S distinct
    negatives per centre at the row traffic of ``S / (C/G)`` per centre.

    The context rows are read once per token of the band (:func:`band_logits`), the negatives' logits are
    one ``[C/G, S]`` matrix product per group.

    ``step_cap``: for plain SGD at (at most) this learning rate, each table row's gradient is divided by
    ``max(1, step_cap * h / 2)``, ``h`` the curvature of the step's loss along that row (summed over the
    row's occurrences in the step: ``sum w s(z) s(-z) |other row|^2`` over its terms). A gradient step of
    size ``lr`` on a row is stable only while ``lr * h < 2`` (beyond, it overshoots and the row grows
    from step to step); rows within that bound, almost all of them, get word2vec's gradient exactly, a
    row beyond it a step shortened to the bound. Such rows are words repeated many times within one step's
    windows (a taxonomy list repeating "order", at window 10): their summed update, computed from the same
    stale vectors, is what sequential per-pair SGD applies one pair at a time, saturating as it goes.
    Without the cap such rows grew to norms of ~50 in some seeds (``benchmarks/notes/issue14-research.md``).
    The loss value is unchanged.

    ``sequential_lr``: the SGD learning rate of this step (a traced scalar). The gradient of each row is then taken
    against the other table's rows moved by half of the rest of the step's update (:func:`_sequential_gradients`):
    to first order in the rate, what word2vec's pair-by-pair SGD does, where each pair sees the rows that the pairs
    before it moved. The loss value is unchanged.

    ``axis_name``: when the batch's centres are split over the devices of this mapped axis (``shard_map``), the
    by-id sums of both corrections run over every device's share, so that they are the one-device step's.

    ``max_logit`` (``--max-logit``): a term whose logit is beyond ``+-max_logit`` gets no gradient (nor curvature,
    nor correction); its loss still counts. gensim skips such terms (its ``MAX_EXP``, 6); word2vec's C code and the
    default (None) train them with the exact gradient.

    >>> p = {"emb_in": jg.Variable(jnp.ones((4, 2))), "emb_out": jg.Variable(jnp.zeros((4, 2)))}
    >>> loss = skipgram_group_negatives_loss(p, jnp.array([0]), jnp.array([[1, 2]]),
    ...                                      jnp.array([[True, False]]), jnp.array([[3, 3]]), 2)
    >>> round(float(loss / np.log(2)), 4)  # one pair: its positive term and K = 2 negative terms
    3.0
    """
    two_w, groups = contexts.shape[1], negs.shape[0]
    out_ids = jnp.concatenate([window_band(centres, contexts), negs.reshape(-1)])
    v = jg.nn.embedding_lookup(params["emb_in"], centres)  # [C, D]
    # One lookup (one scatter) of the output table: the band's rows, then the negatives'.
    u = jg.nn.embedding_lookup(params["emb_out"], out_ids)
    weight = group_negatives_weights(centres, contexts, mask, negs, negatives, v.dtype)
    if step_cap is None and sequential_lr is None:
        return _group_loss(v, u, weight, two_w, groups, max_logit)
    vocab_size = int(params["emb_out"].shape[0])  # the ids' range: the size of the by-id buffers
    lr = jnp.asarray(0.0 if sequential_lr is None else sequential_lr, v.dtype)
    return _custom_grad_group_loss(v, u, weight, lr, centres, out_ids, two_w, groups, step_cap, vocab_size,
                                   sequential_lr is not None, axis_name, max_logit)


def _group_products(v: jax.Array, u: jax.Array, two_w: int, groups: int) -> jax.Array:
    """``[C, 2W + S]``: each centre's vector dotted with its window's band rows (``u[:C + 2W]``), then with its
    group's S negatives (``u[C + 2W:]``, G sets of S)."""
    c = v.shape[0]
    drawn = (u.shape[0] - c - two_w) // groups
    per = -(-c // groups)
    pos = band_logits(v, u[: c + two_w])  # [C, 2W]
    vg = jnp.pad(v, ((0, groups * per - c), (0, 0))).reshape(groups, per, -1)
    neg = jnp.einsum("gcd,gsd->gcs", vg, u[c + two_w:].reshape(groups, drawn, -1)).reshape(groups * per, drawn)[:c]
    return jnp.concatenate([pos, neg], axis=1)


def _group_loss(v: jax.Array, u: jax.Array, weight: jax.Array, two_w: int, groups: int,
                max_logit: float | None) -> jax.Array:
    return _group_loss_and_logits(v, u, weight, two_w, groups, max_logit)[0]


def _group_loss_and_logits(v: jax.Array, u: jax.Array, weight: jax.Array, two_w: int, groups: int,
                           max_logit: float | None) -> tuple[jax.Array, jax.Array]:
    products = _group_products(v, u, two_w, groups)
    sign = jnp.concatenate([jnp.ones((two_w,), v.dtype), -jnp.ones((products.shape[1] - two_w,), v.dtype)])
    logits = products * sign
    return _neg_log_sigmoid_sum(logits.reshape(-1), weight.reshape(-1), max_logit), logits


# The primal and forward functions take every argument of the backward pass (custom_vjp's signature) but use few.
@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9, 10, 11, 12))
def _custom_grad_group_loss(v, u, weight, lr, centres, out_ids, two_w, groups, step_cap, vocab_size, sequential,  # noqa: ARG001
                            axis_name, max_logit):  # noqa: ARG001
    """:func:`_group_loss` with its gradient corrected for sequential SGD (``sequential``, at rate ``lr``:
    :func:`_sequential_gradients`), then each row's divided by ``max(1, step_cap * h / 2)`` (``step_cap`` not
    None; see :func:`skipgram_group_negatives_loss`)."""
    return _group_loss(v, u, weight, two_w, groups, max_logit)


def _custom_grad_group_loss_fwd(v, u, weight, lr, centres, out_ids, two_w, groups, step_cap, vocab_size,  # noqa: ARG001
                                sequential, axis_name, max_logit):  # noqa: ARG001
    loss, vjp, z = jax.vjp(lambda a, b: _group_loss_and_logits(a, b, weight, two_w, groups, max_logit), v, u,
                           has_aux=True)
    return loss, (vjp, v, u, weight, lr, centres, out_ids, z)


def _custom_grad_group_loss_bwd(two_w, groups, step_cap, vocab_size, sequential, axis_name, max_logit, res, g):
    vjp, v, u, weight, lr, centres, out_ids, z = res
    if sequential:
        gv, gu = _sequential_gradients(v, u, weight, z, g, lr, centres, out_ids, two_w, groups, vocab_size,
                                       axis_name, max_logit)
    else:
        gv, gu = vjp(g)
    if step_cap is not None:
        gv, gu = _cap_steps(v, u, gv, gu, weight, z, g, centres, out_ids, two_w, groups, step_cap, vocab_size,
                            axis_name, max_logit)
    return gv, gu, None, jnp.zeros_like(lr), None, None


_custom_grad_group_loss.defvjp(_custom_grad_group_loss_fwd, _custom_grad_group_loss_bwd)


def _sequential_gradients(v, u, weight, z, g, lr, centres, out_ids, two_w, groups, vocab_size, axis_name,
                          max_logit):
    """The step's row gradients ``gv [C, D]`` (centres) and ``gu [N, D]`` (band and negatives), each taken against
    the other table's rows moved by half of the rest of the step's SGD update at rate ``lr``.

    word2vec applies its pairs' updates one after another, so a pair sees the rows that the pairs before it moved;
    a batched step computes all of them from the same rows. For the bilinear pair terms the difference is, to first
    order in the rate, this: with ``a_ik`` the derivative of the loss in the product of centre i's row and out row
    k, pair (i, k) would see out row k moved by ``-lr sum a_jl v_j`` over the earlier terms (j, l) of the same word
    (row id), and centre row i moved by ``-lr sum a_jl u_l`` over the earlier terms of its word. In a random order
    half of the other terms come first, which gives

        gv_i = sum_k a_ik (u_k - lr/2 (GU[id_k] - a_ik v_i)),   gu_k = sum_i a_ik (v_i - lr/2 (GV[id_i] - a_ik u_k)),

    ``GU``, ``GV`` the step's summed gradients of each row (by id), less the term's own part. It is where the
    batched step's sequential coupling comes back: rows of words that share contexts or negatives within a step
    pull together as they do in word2vec (``benchmarks/notes/issue14-research.md``, round 13).

    The products are linear in each table, so ``gu`` is one gradient pass at the moved centre rows, and ``GU`` is
    summed from that corrected ``gu`` (its own correction changes ``gv`` only at third order in the rate); ``gv``
    takes one pass at ``u`` and one at ``GU``: one pass more than the plain gradient. Each row's move is bounded
    (:func:`_bounded`), which keeps the first-order term from running away at higher rates.
    """
    sign = jnp.concatenate([jnp.ones((two_w,), v.dtype), -jnp.ones((z.shape[1] - two_w,), v.dtype)])
    a = _trained(z, -weight * jax.nn.sigmoid(-z), max_logit) * sign * g  # d loss / d product, [C, 2W + S]
    a2 = a * a

    def grad_v(rows_u):  # sum_k a_ik rows_u[k]
        return jax.vjp(lambda x: _group_products(x, rows_u, two_w, groups), v)[1](a)[0]

    def grad_u(rows_v):  # sum_i a_ik rows_v[i]
        return jax.vjp(lambda x: _group_products(rows_v, x, two_w, groups), u)[1](a)[0]

    def largest_norm(x):  # over the whole step's rows, on every device that shares it
        m = jnp.max(_norms(x))
        return m if axis_name is None else jax.lax.pmax(m, axis_name)

    # A row's move, by id, is -lr/2 times its summed gradient; each term's own part of it (a_ik^2 times the term's
    # other row) is added back (the half * a2 terms).
    half = 0.5 * lr
    gv = grad_v(u)
    shift_v = -half * _sum_by_id(centres, gv, vocab_size, axis_name)  # [C, D]
    keep_v = _bounded(shift_v, largest_norm(u))
    gu = grad_u(v + keep_v * shift_v) + half * _sum_over_terms(a2 * keep_v, two_w, groups) * u
    shift_u = -half * _sum_by_id(out_ids, gu, vocab_size, axis_name)  # [N, D]
    keep_u = _bounded(shift_u, largest_norm(v))
    keep_u_terms = _per_term(keep_u[:, 0], v.shape[0], two_w, groups)  # [C, 2W + S]
    gv = gv + grad_v(keep_u * shift_u) + half * jnp.sum(a2 * keep_u_terms, axis=1, keepdims=True) * v
    return gv, gu


#: ``--sequential-correction`` moves no term's logit by more than this (see :func:`_bounded`).
SEQUENTIAL_LOGIT_BOUND = 4.0


def _norms(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True))


def _bounded(shift: jax.Array, partner_norm: jax.Array) -> jax.Array:
    """``[R, 1]`` factors <= 1 that shorten each row's move so that it changes no product with a row of the step's
    other table (of norm at most ``partner_norm``) by more than ``SEQUENTIAL_LOGIT_BOUND``.

    The correction is first order in the rate: pair-by-pair SGD saturates a frequent row's moves as its logits
    leave the sigmoid's working range, the linear term does not, and at twice the default rate (0.05) its moves of
    frequent rows fed back into each other until the loss diverged (mix-2m, step 456; the plain step trained). Bounded
    to 4, that run trains, and at the default rate the scores are the unbounded correction's (research log, round
    13)."""
    return jnp.minimum(1.0, SEQUENTIAL_LOGIT_BOUND / jnp.maximum(partner_norm * _norms(shift), 1e-30))


def _band_rows(c: int, two_w: int) -> jax.Array:
    """``[C, 2W]``: the band row (:func:`window_band`) of each centre's window entry."""
    w = two_w // 2
    return jnp.arange(c)[:, None] + jnp.asarray([j + (j >= w) for j in range(two_w)])[None, :]


def _per_term(x_out: jax.Array, c: int, two_w: int, groups: int) -> jax.Array:
    """``[C, 2W + S]``: for each term of the step (a centre's window entries, then its group's negatives), the value
    of ``x_out [N]`` (one per out entry: band rows, then the groups' negatives) at the term's out entry."""
    per = -(-c // groups)
    neg = jnp.repeat(x_out[c + two_w:].reshape(groups, -1), per, axis=0)[:c]
    return jnp.concatenate([x_out[_band_rows(c, two_w)], neg], axis=1)


def _sum_over_terms(x: jax.Array, two_w: int, groups: int) -> jax.Array:
    """``[N, 1]``: for each out entry (band rows, then the groups' negatives), the sum of ``x [C, 2W + S]`` over its
    terms (the transpose of :func:`_per_term`)."""
    c = x.shape[0]
    per = -(-c // groups)
    band = jax.ops.segment_sum(x[:, :two_w].reshape(-1), _band_rows(c, two_w).reshape(-1), num_segments=c + two_w)
    neg = jnp.sum(jnp.pad(x[:, two_w:], ((0, groups * per - c), (0, 0))).reshape(groups, per, -1), axis=1)
    return jnp.concatenate([band, neg.reshape(-1)])[:, None]


def _cap_steps(v, u, gv, gu, weight, z, g, centres, out_ids, two_w, groups, step_cap, vocab_size, axis_name,
               max_logit):
    """``--step-cap``: each row's gradient divided by ``max(1, step_cap * h / 2)``, ``h`` its curvature in the step
    (see ``step_cap`` in :func:`skipgram_group_negatives_loss`)."""
    # A term w * softplus(-z) has second derivative w s(z) s(-z) in z, so a row's curvature is the sum, over
    # the terms it takes part in, of that times the squared norm of the other row: the same products as
    # the logits, of squared norms (one feature) instead of vectors.
    a = _trained(z, weight * jax.nn.sigmoid(z) * jax.nn.sigmoid(-z), max_logit)  # no gradient, no curvature
    v2 = jnp.sum(v * v, axis=1)
    h_in = jnp.sum(a * _per_term(jnp.sum(u * u, axis=1), v.shape[0], two_w, groups), axis=1)
    h_out = _sum_over_terms(a * v2[:, None], two_w, groups)[:, 0]
    # A row's occurrences in this step (a word in several windows, or drawn twice) share one scatter-add:
    # their curvatures add up.
    h_in = _sum_by_id(centres, h_in, vocab_size, axis_name)
    h_out = _sum_by_id(out_ids, h_out, vocab_size, axis_name)
    gv = gv / jnp.maximum(1.0, 0.5 * step_cap * g * h_in)[:, None]
    gu = gu / jnp.maximum(1.0, 0.5 * step_cap * g * h_out)[:, None]
    return gv, gu


def _sum_by_id(ids: jax.Array, x: jax.Array, vocab_size: int, axis_name: str | None = None) -> jax.Array:
    """For each entry of ``x [N, ...]``, the sum of ``x`` over the entries with the same id (ids in
    ``[0, vocab_size)``). A vocabulary-sized int32 buffer maps each id to one of its entries (a scatter, then a
    gather: whichever entry the scatter kept, all entries of the id read the same one), and the sum runs over the N
    entries only, so rows of any width cost O(N), not O(vocabulary). (A sort of the ids instead made ``--step-cap``
    cost +48% time per step instead of +19%: ``benchmarks/notes/issue14-research.md``, round 7.) With
    ``axis_name`` (inside ``shard_map``) the sums run over the entries of every device on that axis.

    >>> _sum_by_id(jnp.array([7, 3, 7, 7]), jnp.array([1.0, 2.0, 3.0, 4.0]), 8).tolist()
    [8.0, 2.0, 8.0, 8.0]
    """
    n = ids.shape[0]
    if axis_name is not None:
        every = jax.lax.all_gather(ids, axis_name, tiled=True)
        sums = _sum_by_id(every, jax.lax.all_gather(x, axis_name, tiled=True), vocab_size)
        return jax.lax.dynamic_slice_in_dim(sums, jax.lax.axis_index(axis_name) * n, n)
    slot = jnp.zeros((vocab_size,), jnp.int32).at[ids].set(jnp.arange(n, dtype=jnp.int32))[ids]
    return jax.ops.segment_sum(x, slot, num_segments=n)[slot]


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
