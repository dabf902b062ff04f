"""The fast trainer's ``--loss neg`` against word2vec's objective written out pair by pair: for every real
(centre, context) pair, ``-log s(v_c . u_ctx)`` plus, for each of the negatives its centre shares (the centre's
M with ``--negative-sharing centre``, ``model.skipgram_negative_sampling_loss``; its group's S with the default
``group``, ``model.skipgram_group_negatives_loss``) that is not the centre itself, ``K/M`` (``K/S``) times
``-log s(-v_c . u_neg)``; the band layout of the windows, and ``--step-cap``'s shortened rows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from examples.word2vec.batches import BatchMaker
from examples.word2vec.model import (
    band_logits,
    group_negatives_weights,
    skipgram_group_negatives_loss,
    skipgram_negative_sampling_loss,
    window_band,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

V, D = 40, 8


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _trained_log_sigmoid(max_logit):
    """log s(x) whose gradient is 0 beyond +-max_logit (gensim's MAX_EXP rule), for autodiff references."""
    def log_sigmoid(x):
        y = jax.nn.log_sigmoid(x)
        return jnp.where(jnp.abs(x) < max_logit, y, jax.lax.stop_gradient(y))
    return log_sigmoid


def _beyond(z, max_logit):
    """Whether a term of logit ``z`` is left untrained under ``--max-logit`` (None: every term is trained)."""
    return max_logit is not None and abs(z) >= max_logit


def _pairwise_loss(emb_in, emb_out, centres, contexts, mask, negs, k):
    """word2vec's loss summed over the real pairs, one pair at a time, in float64."""
    total = 0.0
    m = negs.shape[1]
    for c in range(len(centres)):
        v = emb_in[centres[c]]
        for s in range(contexts.shape[1]):
            if not mask[c, s]:
                continue
            total -= _log_sigmoid(v @ emb_out[contexts[c, s]])
            for neg in negs[c]:
                if neg != contexts[c, s]:  # word2vec skips a negative equal to the word the pair predicts
                    total -= k / m * _log_sigmoid(-(v @ emb_out[neg]))
    return total


def _batch(seed, n_centres=7, n_ctx=6, drawn=10):
    rng = np.random.default_rng(seed)
    emb_in = rng.normal(0, 0.5, (V, D))
    emb_out = rng.normal(0, 0.5, (V, D))
    centres = rng.integers(0, V, n_centres)
    contexts = rng.integers(0, V, (n_centres, n_ctx))
    mask = rng.random((n_centres, n_ctx)) < 0.6
    mask[0] = False  # a centre with no pairs contributes nothing
    negs = rng.integers(0, V, (n_centres, drawn))
    contexts[2, 1] = contexts[2, 0]  # the same context twice counts twice
    mask[2, :2] = True
    mask[1, :2] = True
    negs[1, :3] = contexts[1, 0]  # skipped by the pair (1, 0), not by centre 1's other pairs
    negs[3, :2] = centres[3]  # a negative equal to the centre is not skipped (word2vec trains it)
    return emb_in, emb_out, centres, contexts, mask, negs


@pytest.mark.parametrize("k,drawn", [(5, 10), (5, 5), (3, 12)])
def test_loss_is_word2vecs_pairwise_objective(k, drawn):
    emb_in, emb_out, centres, contexts, mask, negs = _batch(0, drawn=drawn)
    params = {"emb_in": jg.Variable(jnp.asarray(emb_in, jnp.float32)),
              "emb_out": jg.Variable(jnp.asarray(emb_out, jnp.float32))}
    got = skipgram_negative_sampling_loss(params, jnp.asarray(centres), jnp.asarray(contexts),
                                          jnp.asarray(mask), jnp.asarray(negs), k)
    want = _pairwise_loss(emb_in, emb_out, centres, contexts, mask, negs, k)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


def test_gradients_match_the_pairwise_objective():
    """The hand-written backward pass against autodiff of the pair-by-pair loss, through jaxgraph's
    optimizer: sparse row gradients for both tables, same values as the dense reference."""
    k = 5
    emb_in, emb_out, centres, contexts, mask, negs = _batch(1)
    params = {"emb_in": jg.Variable(jnp.asarray(emb_in, jnp.float32)),
              "emb_out": jg.Variable(jnp.asarray(emb_out, jnp.float32))}
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    opt = jg.train.GradientDescentOptimizer(1.0)
    _, grads_and_vars = opt.compute_gradients(lambda p: skipgram_negative_sampling_loss(p, *args, k), params)
    got = {}
    for g, var in grads_and_vars:
        assert isinstance(g, jg.IndexedSlices)
        got[var.name] = np.asarray(g.to_dense())

    def reference(ein, eout):
        total = 0.0
        m = negs.shape[1]
        for c in range(len(centres)):
            v = ein[centres[c]]
            for s in range(contexts.shape[1]):
                if mask[c, s]:
                    total -= jax.nn.log_sigmoid(v @ eout[contexts[c, s]])
                    for neg in negs[c]:
                        if neg != contexts[c, s]:
                            total -= k / m * jax.nn.log_sigmoid(-(v @ eout[neg]))
        return total

    want_in, want_out = jax.grad(reference, argnums=(0, 1))(jnp.asarray(emb_in), jnp.asarray(emb_out))
    np.testing.assert_allclose(got["emb_in"], want_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["emb_out"], want_out, rtol=1e-4, atol=1e-6)
    assert np.abs(got["emb_out"]).max() > 1e-3


def test_extreme_logits_stay_finite():
    """|logits| in the hundreds: the loss is linear in them and the gradient saturates, no NaN."""
    emb_in, emb_out, centres, contexts, mask, negs = _batch(2)
    params = {"emb_in": jg.Variable(jnp.asarray(emb_in * 40, jnp.float32)),
              "emb_out": jg.Variable(jnp.asarray(emb_out * 40, jnp.float32))}
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    loss, grads = jax.value_and_grad(lambda p: skipgram_negative_sampling_loss(p, *args, 5))(params)
    want = _pairwise_loss(emb_in * 40, emb_out * 40, centres, contexts, mask, negs, 5)
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    assert all(np.all(np.isfinite(np.asarray(g.value))) for g in (grads["emb_in"], grads["emb_out"]))


# --------------------------------------------------------------------------------------------------
# --negative-sharing group (the default): windows cut from one band of consecutive tokens, negatives
# shared by groups of consecutive centres.



def _band_batch(seed, n_centres=9, w=2, groups=3, drawn=6, repeat=False):
    """Centres that are consecutive tokens of one sequence, each window its W neighbours on each side
    (as BatchMaker cuts them), a random mask, and ``[groups, drawn]`` negatives; ``repeat``: one word four
    times in a row."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, V, n_centres + 2 * w)
    if repeat:
        tokens[w + 3: w + 6] = tokens[w + 2]
    centres = tokens[w: w + n_centres]
    contexts = np.stack([[tokens[i + j + (j >= w)] for j in range(2 * w)] for i in range(n_centres)])
    mask = rng.random((n_centres, 2 * w)) < 0.7
    mask[0] = False
    negs = rng.integers(0, V, (groups, drawn))
    negs[0, :2] = contexts[1, 0]  # skipped by pair (1, 0) where it is real (group 0 holds centre 1)
    negs[0, 2] = centres[2]  # a negative equal to its centre is trained, as in word2vec
    emb_in = rng.normal(0, 0.5, (V, D))
    emb_out = rng.normal(0, 0.5, (V, D))
    return emb_in, emb_out, centres, contexts, mask, negs


def _group_reference(ein, eout, centres, contexts, mask, negs, k, log_sigmoid):
    """word2vec's loss pair by pair: each centre's pairs estimate their K negative terms from the S negatives
    of the centre's group (groups of ceil(C / G) consecutive centres), weight K / S."""
    groups, drawn = negs.shape
    per = -(-len(centres) // groups)
    total = 0.0
    for c in range(len(centres)):
        v = ein[centres[c]]
        for s in range(contexts.shape[1]):
            if mask[c, s]:
                total -= log_sigmoid(v @ eout[contexts[c, s]])
                for neg in negs[c // per]:
                    if neg != contexts[c, s]:
                        total -= k / drawn * log_sigmoid(-(v @ eout[neg]))
    return total


def _params(emb_in, emb_out, scale=1.0):
    return {"emb_in": jg.Variable(jnp.asarray(emb_in * scale, jnp.float32)),
            "emb_out": jg.Variable(jnp.asarray(emb_out * scale, jnp.float32))}


@pytest.mark.parametrize("n_centres,w,groups,drawn,k", [(9, 2, 3, 6, 5), (10, 3, 4, 5, 3), (3, 5, 1, 4, 5)])
def test_group_loss_is_word2vecs_pairwise_objective(n_centres, w, groups, drawn, k):
    emb_in, emb_out, centres, contexts, mask, negs = _band_batch(0, n_centres, w, groups, drawn)
    got = skipgram_group_negatives_loss(_params(emb_in, emb_out), *(jnp.asarray(a) for a in
                                                                     (centres, contexts, mask, negs)), k)
    want = _group_reference(emb_in, emb_out, centres, contexts, mask, negs, k, _log_sigmoid)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)


@pytest.mark.parametrize("n_centres,groups", [(9, 3), (10, 4), (7, 7)])  # the last: per-centre negatives
def test_group_negatives_weights_entry_by_entry(n_centres, groups):
    """Both losses' weights, written out one entry at a time: the mask, then for centre c and each negative of
    its group (c // ceil(C / G)) K / S times the number of c's real pairs whose context is not that negative."""
    k, drawn = 5, 6
    _, _, centres, contexts, mask, negs = _band_batch(3, n_centres, 2, groups, drawn)
    mask[-1, :2] = True
    negs[-1, -1] = contexts[-1, 0]  # the last group's last negative is a context of its last centre
    per = -(-n_centres // groups)
    want = np.zeros((n_centres, mask.shape[1] + drawn))
    for c in range(n_centres):
        want[c, : mask.shape[1]] = mask[c]
        for s, neg in enumerate(negs[c // per]):
            kept = sum(1 for j in range(mask.shape[1]) if mask[c, j] and contexts[c, j] != neg)
            want[c, mask.shape[1] + s] = kept * k / drawn
    some_pairs = mask.sum(axis=1)[:, None] * k / drawn
    assert (want[:, mask.shape[1]:] < some_pairs).any()  # some pairs skip a negative
    got = group_negatives_weights(*(jnp.asarray(a) for a in (centres, contexts, mask, negs)), k)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_group_gradients_match_the_pairwise_objective():
    """Sparse row gradients of both tables (one IndexedSlices each, through jaxgraph's optimizer) against
    autodiff of the pair-by-pair loss."""
    k = 5
    emb_in, emb_out, centres, contexts, mask, negs = _band_batch(1)
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    opt = jg.train.GradientDescentOptimizer(1.0)
    _, grads_and_vars = opt.compute_gradients(
        lambda p: skipgram_group_negatives_loss(p, *args, k), _params(emb_in, emb_out))
    got = {}
    for g, var in grads_and_vars:
        assert isinstance(g, jg.IndexedSlices)
        got[var.name] = np.asarray(g.to_dense())
    want_in, want_out = jax.grad(
        lambda ein, eout: _group_reference(ein, eout, centres, contexts, mask, negs, k, jax.nn.log_sigmoid),
        argnums=(0, 1))(jnp.asarray(emb_in), jnp.asarray(emb_out))
    np.testing.assert_allclose(got["emb_in"], want_in, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["emb_out"], want_out, rtol=1e-4, atol=1e-6)
    assert np.abs(got["emb_out"]).max() > 1e-3


def test_group_loss_extreme_logits_stay_finite():
    emb_in, emb_out, centres, contexts, mask, negs = _band_batch(2)
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    loss, grads = jax.value_and_grad(lambda p: skipgram_group_negatives_loss(p, *args, 5))(
        _params(emb_in, emb_out, 40.0))
    want = _group_reference(emb_in * 40, emb_out * 40, centres, contexts, mask, negs, 5, _log_sigmoid)
    np.testing.assert_allclose(float(loss), want, rtol=1e-4)
    assert all(np.all(np.isfinite(np.asarray(g.value))) for g in (grads["emb_in"], grads["emb_out"]))


@pytest.mark.parametrize("c,w", [(12, 3), (7, 2), (3, 5)])
def test_band_logits_and_gradients(c, w):
    """Every centre against its window's band rows, for C a multiple of 2W or not, and C < 2W."""
    rng = np.random.default_rng(c)
    v = rng.normal(size=(c, 4)).astype(np.float32)
    u = rng.normal(size=(c + 2 * w, 4)).astype(np.float32)
    starts = [j + (j >= w) for j in range(2 * w)]
    want = np.stack([np.sum(v * u[s: s + c], axis=1) for s in starts], axis=1)
    np.testing.assert_allclose(np.asarray(band_logits(jnp.asarray(v), jnp.asarray(u))), want, rtol=1e-5, atol=1e-5)
    weights = jnp.asarray(rng.normal(size=(c, 2 * w)).astype(np.float32))

    def direct(a, b):
        return jnp.sum(weights * jnp.stack([jnp.sum(a * b[s: s + c], axis=1) for s in starts], axis=1))

    got = jax.jit(jax.grad(lambda a, b: jnp.sum(weights * band_logits(a, b)), argnums=(0, 1)))(v, u)
    want_grads = jax.jit(jax.grad(direct, argnums=(0, 1)))(v, u)
    for g, h in zip(got, want_grads, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-5, atol=1e-5)


def test_window_band_holds_every_real_pair_of_batchmaker():
    """BatchMaker's windows are slices of one band: at the start of an epoch (no tokens before), in the
    middle, across the end of the corpus (windows cut short), with rows padded for devices."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, V, 3000).astype(np.int32)
    keep = jnp.asarray(rng.uniform(0.3, 1.0, V).astype(np.float32))
    for window, row_multiple in ((3, 1), (5, 8)):
        batches = BatchMaker(len(ids), window, 200, 0.6, seed=4, row_multiple=row_multiple)
        corpus = jnp.asarray(batches.pad(ids))
        step = jax.jit(lambda pos, b=batches, c=corpus: b(c, keep, jnp.int32(0), pos))
        for pos in (0, 1234, len(ids) - 40):
            centres, contexts, mask, _, _ = step(jnp.int32(pos))
            band = np.asarray(window_band(centres, contexts))
            contexts, mask = np.asarray(contexts), np.asarray(mask)
            assert mask.any()
            i, j = np.nonzero(mask)
            np.testing.assert_array_equal(contexts[i, j], band[i + j + (j >= window)])


def _curvatures(ein, eout, centres, contexts, mask, negs, k, max_logit=None):
    """Each row's curvature in the batch's loss, term by term: sum over its terms of w s(z) s(-z) times the
    squared norm of the term's other row (terms beyond +-max_logit: none, they are not trained)."""
    h_in, h_out = np.zeros(V), np.zeros(V)
    for centre, row, sign, w in _terms(centres, contexts, mask, negs, k):
        v = ein[centre]
        z = sign * (v @ eout[row])
        a = 0.0 if _beyond(z, max_logit) else w / (1 + np.exp(-z)) / (1 + np.exp(z))
        h_in[centre] += a * eout[row] @ eout[row]
        h_out[row] += a * v @ v
    return h_in, h_out


@pytest.mark.parametrize("step_cap", [1e-6, 0.3])
def test_step_cap_shortens_only_rows_past_the_edge_of_stability(step_cap):
    """step_cap = lr: a row whose curvature h (summed over its occurrences) has lr * h > 2 gets its gradient
    divided by lr * h / 2; every other row keeps word2vec's gradient; the loss is unchanged."""
    k = 5
    emb_in, emb_out, centres, contexts, mask, negs = _band_batch(4, n_centres=12, w=2, groups=2, drawn=8,
                                                                 repeat=True)  # a row's occurrences add up
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    opt = jg.train.GradientDescentOptimizer(1.0)
    params = _params(emb_in, emb_out, 2.0)

    def grads(cap):
        loss, gv = opt.compute_gradients(lambda p: skipgram_group_negatives_loss(p, *args, k, cap), params)
        return float(loss), {var.name: np.asarray(g.to_dense()) for g, var in gv}

    loss_plain, plain = grads(None)
    loss_capped, capped = grads(step_cap)
    assert loss_capped == loss_plain
    h_in, h_out = _curvatures(emb_in * 2, emb_out * 2, centres, contexts, mask, negs, k)
    for name, h in (("emb_in", h_in), ("emb_out", h_out)):
        factor = np.maximum(1.0, step_cap * h / 2)
        np.testing.assert_allclose(capped[name], plain[name] / factor[:, None], rtol=1e-4, atol=1e-6)
    if step_cap > 1e-3:  # the test must exercise the cap: some rows are shortened, some are not
        shortened = step_cap * np.concatenate([h_in, h_out]) / 2 > 1
        assert shortened.any() and (~shortened & (np.concatenate([h_in, h_out]) > 0)).any()


def _terms(centres, contexts, mask, negs, k):
    """The batch's loss terms one by one: (centre row, out row, sign, weight), as ``_group_reference`` sums them."""
    groups, drawn = negs.shape
    per = -(-len(centres) // groups)
    terms = []
    for c in range(len(centres)):
        terms += [(centres[c], contexts[c, s], 1.0, 1.0) for s in range(contexts.shape[1]) if mask[c, s]]
        terms += [(centres[c], n, -1.0, k / drawn * sum(1 for s in range(contexts.shape[1])
                                                         if mask[c, s] and contexts[c, s] != n))
                  for n in negs[c // per]]
    return terms


def _term_coefficient(v, u, sign, w, max_logit=None):
    """d(term)/d(v . u) of ``w * -log s(sign * v . u)``; 0 beyond +-max_logit."""
    if _beyond(v @ u, max_logit):
        return 0.0
    return -w * sign / (1.0 + np.exp(sign * (v @ u)))


def _sequential_corrected_grads(ein, eout, terms, lr, largest_in, largest_out, bound=4.0, max_logit=None):
    """The documented correction, term by term in float64: the centre rows' gradients are summed first (GV), the
    out rows' are taken against the centre rows moved by -lr/2 (GV less the term's own part), and the centre rows'
    against the out rows moved by -lr/2 times those corrected out-row gradients (GU, less the term's own part);
    each row's move shortened so that it changes no product with a row of the step (the largest norms
    ``largest_in``, ``largest_out``) by more than ``bound``. Returns the gradients and the rows' shortening
    factors."""
    coef = [_term_coefficient(ein[c], eout[o], sign, w, max_logit) for c, o, sign, w in terms]

    def keep(shift, partner):
        return np.minimum(1.0, bound / np.maximum(partner * np.linalg.norm(shift, axis=1), 1e-30))

    gv_plain = np.zeros_like(ein)
    for (c, o, _, _), a in zip(terms, coef, strict=True):
        gv_plain[c] += a * eout[o]
    keep_in = keep(lr / 2 * gv_plain, largest_out)
    gu = np.zeros_like(eout)
    for (c, o, _, _), a in zip(terms, coef, strict=True):
        gu[o] += a * (ein[c] - keep_in[c] * lr / 2 * (gv_plain[c] - a * eout[o]))
    keep_out = keep(lr / 2 * gu, largest_in)
    gv = gv_plain.copy()
    for (c, o, _, _), a in zip(terms, coef, strict=True):
        gv[c] -= a * keep_out[o] * lr / 2 * (gu[o] - a * ein[c])
    return gv, gu, keep_in, keep_out


def _group_grads(emb_in, emb_out, batch, k, sequential_lr, max_logit=None):
    args = tuple(jnp.asarray(a) for a in batch)
    opt = jg.train.GradientDescentOptimizer(1.0)
    _, gv = opt.compute_gradients(
        lambda p: skipgram_group_negatives_loss(p, *args, k, None, sequential_lr, max_logit=max_logit),
        _params(emb_in, emb_out))
    return {var.name: np.asarray(g.to_dense(), np.float64) for g, var in gv}


@pytest.mark.parametrize("seed,lr", [(0, 0.05), (1, 0.05), (0, 2.0), (1, 2.0)])
def test_sequential_correction_is_its_documented_formula(seed, lr):
    """--sequential-correction's gradients against the formula of ``model._sequential_gradients`` written term by
    term, on a batch where words repeat (so rows are shared by many terms); the correction is not negligible, and
    at the high rate the bound on the rows' moves shortens some of them, not all."""
    k = 5
    emb_in, emb_out, *batch = _band_batch(seed, n_centres=12, w=2, groups=2, drawn=8, repeat=True)
    centres, contexts, _, negs = batch
    largest_in = np.linalg.norm(emb_in[centres], axis=1).max()
    out_rows = np.concatenate([np.asarray(window_band(jnp.asarray(centres), jnp.asarray(contexts))), negs.ravel()])
    largest_out = np.linalg.norm(emb_out[out_rows], axis=1).max()
    got = _group_grads(emb_in, emb_out, batch, k, lr)
    plain = _group_grads(emb_in, emb_out, batch, k, None)
    want_in, want_out, keep_in, keep_out = _sequential_corrected_grads(emb_in, emb_out, _terms(*batch, k), lr,
                                                                       largest_in, largest_out)
    for name, want in (("emb_in", want_in), ("emb_out", want_out)):
        np.testing.assert_allclose(got[name], want, rtol=1e-4, atol=1e-5)
        assert np.abs(want - plain[name]).max() > 100 * 1e-5
    keep = np.concatenate([keep_in[np.unique(centres)], keep_out[np.unique(out_rows)]])
    if lr > 1:
        assert (keep < 0.99).any() and (keep == 1.0).any()
    else:
        assert (keep == 1.0).all()


def _sequential_sgd_frozen_coefficients(ein, eout, terms, lr, orders):
    """Mean update of pair-by-pair SGD over random orders of the terms, each term's coefficient (the derivative of
    its loss in its product) fixed at its batch value: the sequential coupling of the rows alone."""
    coef = [_term_coefficient(ein[c], eout[o], sign, w) for c, o, sign, w in terms]
    dv, du = np.zeros_like(ein), np.zeros_like(eout)
    for order in orders:
        v, u = ein.copy(), eout.copy()
        for t in order:
            c, o = terms[t][:2]
            v[c], u[o] = v[c] - lr * coef[t] * u[o], u[o] - lr * coef[t] * v[c]
        dv += v - ein
        du += u - eout
    return dv / len(orders), du / len(orders)


def test_sequential_correction_is_pair_by_pair_sgds_coupling():
    """What the correction claims: the batched step's update, corrected, is pair-by-pair SGD's (mean over orders of
    the terms) up to the change of the terms' coefficients, which it leaves out. The plain batched step misses the
    coupling; the corrected one is several times closer."""
    k, lr = 5, 0.02
    emb_in, emb_out, *batch = _band_batch(1, n_centres=12, w=2, groups=2, drawn=8, repeat=True)
    terms = _terms(*batch, k)
    rng = np.random.default_rng(0)
    seq_in, seq_out = _sequential_sgd_frozen_coefficients(emb_in, emb_out, terms, lr,
                                                          [rng.permutation(len(terms)) for _ in range(300)])

    def distance(grads):
        return np.sqrt(np.sum((-lr * grads["emb_in"] - seq_in) ** 2) + np.sum((-lr * grads["emb_out"] - seq_out) ** 2))

    plain = distance(_group_grads(emb_in, emb_out, batch, k, None))
    corrected = distance(_group_grads(emb_in, emb_out, batch, k, lr))
    assert corrected < plain / 8, (corrected, plain)


# --------------------------------------------------------------------------------------------------
# --max-logit: gensim's MAX_EXP rule (a term whose logit is beyond +-6 is skipped).


def _beyond_batch(seed=4):
    """A band batch whose rows are scaled so that some of its products are beyond +-6, most within."""
    emb_in, emb_out, *batch = _band_batch(seed, n_centres=12, w=2, groups=2, drawn=8, repeat=True)
    emb_in, emb_out = emb_in * 3.0, emb_out * 3.0
    beyond = [_beyond(emb_in[c] @ emb_out[o], 6.0) for c, o, _, _ in _terms(*batch, 5)]
    assert 0.02 < np.mean(beyond) < 0.5
    return emb_in, emb_out, batch


@pytest.mark.parametrize("scheme", ["group", "group-sequential-at-rate-0", "centre"])
def test_terms_beyond_max_logit_get_no_gradient(scheme):
    """A term whose logit is beyond +-max_logit counts in the loss but gets no gradient: autodiff of the
    pair-by-pair objective with those terms' gradients stopped, and not the exact gradient. In the grouped loss's
    plain backward pass, in the sequential correction's (at rate 0 it is the plain gradient), and in the
    per-centre scheme."""
    k, max_logit = 5, 6.0
    emb_in, emb_out, (centres, contexts, mask, negs) = _beyond_batch()
    ein, eout = jnp.asarray(emb_in), jnp.asarray(emb_out)
    if scheme == "centre":  # each centre its own group: per-centre negatives
        negs = np.repeat(negs, -(-len(centres) // negs.shape[0]), axis=0)[: len(centres)]
    args = tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))
    if scheme == "centre":
        def loss(p):
            return skipgram_negative_sampling_loss(p, *args, k, max_logit)
    else:
        def loss(p):
            return skipgram_group_negatives_loss(p, *args, k, None, 0.0 if "sequential" in scheme else None,
                                                 max_logit=max_logit)
    value, grads = jax.value_and_grad(loss)(_params(emb_in, emb_out))

    def reference(log_sigmoid):
        return lambda a, b: _group_reference(a, b, centres, contexts, mask, negs, k, log_sigmoid)

    np.testing.assert_allclose(float(value), reference(_log_sigmoid)(emb_in, emb_out), rtol=1e-5)
    want = jax.grad(reference(_trained_log_sigmoid(max_logit)), argnums=(0, 1))(ein, eout)
    exact = jax.grad(reference(jax.nn.log_sigmoid), argnums=(0, 1))(ein, eout)
    for got, w, e in zip((grads["emb_in"], grads["emb_out"]), want, exact, strict=True):
        np.testing.assert_allclose(np.asarray(got.value if isinstance(got, jg.IndexedSlices) else got), w,
                                   rtol=1e-4, atol=1e-5)
        assert np.abs(np.asarray(e) - np.asarray(w)).max() > 1e-2  # the rule changed these gradients


def test_max_logit_in_the_sequential_correction_and_the_step_cap():
    """With --max-logit, the correction's coefficients and the cap's curvatures leave out the terms beyond it:
    both against their term-by-term formulas with those terms' coefficients 0."""
    k, max_logit, lr = 5, 6.0, 0.05
    emb_in, emb_out, batch = _beyond_batch()
    centres, contexts, _, negs = batch
    largest_in = np.linalg.norm(emb_in[centres], axis=1).max()
    out_rows = np.concatenate([np.asarray(window_band(jnp.asarray(centres), jnp.asarray(contexts))), negs.ravel()])
    largest_out = np.linalg.norm(emb_out[out_rows], axis=1).max()
    got = _group_grads(emb_in, emb_out, batch, k, lr, max_logit)
    want_in, want_out, _, _ = _sequential_corrected_grads(emb_in, emb_out, _terms(*batch, k), lr, largest_in,
                                                          largest_out, max_logit=max_logit)
    exact_in, _, _, _ = _sequential_corrected_grads(emb_in, emb_out, _terms(*batch, k), lr, largest_in, largest_out)
    np.testing.assert_allclose(got["emb_in"], want_in, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["emb_out"], want_out, rtol=1e-4, atol=1e-4)
    assert np.abs(exact_in - want_in).max() > 1e-2

    step_cap = 0.3
    args = tuple(jnp.asarray(a) for a in batch)
    opt = jg.train.GradientDescentOptimizer(1.0)

    def grads(cap):
        _, gv = opt.compute_gradients(
            lambda p: skipgram_group_negatives_loss(p, *args, k, cap, max_logit=max_logit), _params(emb_in, emb_out))
        return {var.name: np.asarray(g.to_dense()) for g, var in gv}

    plain, capped = grads(None), grads(step_cap)
    h_in, h_out = _curvatures(emb_in, emb_out, *batch, k, max_logit)
    for name, h in (("emb_in", h_in), ("emb_out", h_out)):
        np.testing.assert_allclose(capped[name], plain[name] / np.maximum(1.0, step_cap * h / 2)[:, None],
                                   rtol=1e-4, atol=1e-5)
    assert (step_cap * np.concatenate([h_in, h_out]) / 2 > 1).any()  # the cap binds somewhere
