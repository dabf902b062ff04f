"""The fast trainer's ``--loss neg`` (``model.skipgram_negative_sampling_loss``) against word2vec's objective
written out pair by pair: for every real (centre, context) pair, ``-log s(v_c . u_ctx)`` plus, for each
of the centre's M shared negatives that is not the centre itself, ``K/M * -log s(-v_c . u_neg)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from examples.word2vec.model import skipgram_negative_sampling_loss

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

V, D = 40, 8


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


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
                if neg != centres[c]:
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
    negs[1, :3] = centres[1]  # negatives equal to the centre are skipped
    contexts[2, 1] = contexts[2, 0]  # the same context twice counts twice
    mask[2, :2] = True
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
                        if neg != centres[c]:
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
