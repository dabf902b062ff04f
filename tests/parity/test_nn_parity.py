"""Parity with real TensorFlow: embedding_lookup, nce_loss, sampled_softmax_loss, sampler counts.

Run with the TF environment: ``/root/tfenv/bin/python -m pytest tests/parity/test_nn_parity.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxgraph as jg
from jaxgraph.errors import InvalidArgumentError
from jaxgraph.nn import candidate_sampling as cs
from jaxgraph.nn import (
    compute_accidental_hits,
    embedding_lookup,
    log_uniform_candidate_sampler,
    nce_loss,
    sampled_softmax_loss,
)

pytestmark = pytest.mark.parity

V, D, B, S = 11, 5, 4, 6


def _shard(table, n, strategy):
    """Split a [V, ...] table into n shards the way TF's partitioned lookups expect."""
    if strategy == "mod":
        return [table[p::n] for p in range(n)]
    ipp, extras = divmod(table.shape[0], n)
    sizes = [ipp + (p < extras) for p in range(n)]
    return np.split(table, np.cumsum(sizes)[:-1])


@pytest.mark.parametrize("strategy", ["mod", "div"])
@pytest.mark.parametrize("num_shards", [1, 3, 4])
@pytest.mark.parametrize("max_norm,row_shape", [(None, (D,)), (1.5, (D,)), (1.5, (2, 3))])
def test_embedding_lookup(strategy, num_shards, max_norm, row_shape):
    # Rows of shape (2, 3): TF clips over every row axis (embedding_ops._clip), not the last one only.
    rng = np.random.default_rng(0)
    table = rng.normal(size=(V, *row_shape)).astype(np.float32)
    shards = _shard(table, num_shards, strategy)
    ids = np.array([[10, 0, 3], [7, 7, 1]], np.int64)
    want = tf.compat.v1.nn.embedding_lookup(
        [tf.constant(s) for s in shards], tf.constant(ids), partition_strategy=strategy, max_norm=max_norm
    )
    got = embedding_lookup([jnp.asarray(s) for s in shards], ids, partition_strategy=strategy, max_norm=max_norm)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-6, atol=1e-7)
    # and the gradient w.r.t. each shard (TF's IndexedSlices made dense)
    cot = rng.normal(size=want.shape).astype(np.float32)
    tf_vars = [tf.Variable(s) for s in shards]
    with tf.GradientTape() as tape:
        out = tf.compat.v1.nn.embedding_lookup(tf_vars, ids, partition_strategy=strategy, max_norm=max_norm)
        loss = tf.reduce_sum(out * cot)
    tf_grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, tf_vars)]
    jax_grads = jax.grad(
        lambda sh: jnp.sum(embedding_lookup(sh, ids, partition_strategy=strategy, max_norm=max_norm) * cot)
    )([jnp.asarray(s) for s in shards])
    for g_tf, g_jax in zip(tf_grads, jax_grads, strict=True):
        np.testing.assert_allclose(np.asarray(g_jax), g_tf, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [V, 100, -1])
def test_out_of_range_id_message_is_tfs(bad):
    table = np.arange(V * D, dtype=np.float32).reshape(V, D)
    ids = np.array([0, bad, 1], np.int64)
    with pytest.raises(tf.errors.InvalidArgumentError) as tf_error:
        tf.compat.v1.nn.embedding_lookup(tf.constant(table), tf.constant(ids))
    with pytest.raises(InvalidArgumentError) as ours:
        embedding_lookup(jnp.asarray(table), ids)
    assert str(ours.value) in tf_error.value.message  # TF adds the op name: "... [Op:GatherV2]"
    with pytest.raises(InvalidArgumentError) as checked_error:
        jg.checked(embedding_lookup)(jnp.asarray(table), jnp.asarray(ids))
    assert str(checked_error.value) == str(ours.value)


def _problem(num_true, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(V, D)).astype(np.float32)
    biases = rng.normal(size=(V,)).astype(np.float32)
    inputs = rng.normal(size=(B, D)).astype(np.float32)
    labels = rng.integers(0, V, size=(B, num_true)).astype(np.int64)
    labels[0, 0] = 3  # guarantee an accidental hit with the sampled set below
    sampled = np.array([3, 8, 0, 10, 5, 1], np.int64)
    true_ec = rng.uniform(0.05, 1.5, size=(B, num_true)).astype(np.float32)
    sampled_ec = rng.uniform(0.05, 1.5, size=(S,)).astype(np.float32)
    return weights, biases, labels, inputs, (sampled, true_ec, sampled_ec)


@pytest.mark.parametrize("loss_name", ["nce", "sampled_softmax"])
@pytest.mark.parametrize("num_true", [1, 2])
@pytest.mark.parametrize("remove_accidental_hits", [False, True])
@pytest.mark.parametrize("strategy,num_shards", [("mod", 1), ("mod", 3), ("div", 3)])
def test_sampled_losses_and_gradients(loss_name, num_true, remove_accidental_hits, strategy, num_shards):
    weights, biases, labels, inputs, sv = _problem(num_true, seed=num_true)
    shards = _shard(weights, num_shards, strategy)
    kwargs = dict(
        num_sampled=S,
        num_classes=V,
        num_true=num_true,
        remove_accidental_hits=remove_accidental_hits,
        partition_strategy=strategy,
    )
    tf_fn = tf.compat.v1.nn.nce_loss if loss_name == "nce" else tf.compat.v1.nn.sampled_softmax_loss
    jax_fn = nce_loss if loss_name == "nce" else sampled_softmax_loss

    tf_w = [tf.Variable(s) for s in shards]
    tf_b, tf_x = tf.Variable(biases), tf.Variable(inputs)
    tf_sv = (tf.constant(sv[0]), tf.constant(sv[1]), tf.constant(sv[2]))
    with tf.GradientTape() as tape:
        tf_loss = tf_fn(tf_w, tf_b, tf.constant(labels), tf_x, sampled_values=tf_sv, **kwargs)
        total = tf.reduce_sum(tf_loss * tf.constant([1.0, 2.0, 0.5, -1.0]))
    g_w, g_b, g_x = tape.gradient(total, [tf_w, tf_b, tf_x])

    def f(w, b, x):
        loss = jax_fn(w, b, labels, x, sampled_values=sv, **kwargs)
        return jnp.sum(loss * jnp.array([1.0, 2.0, 0.5, -1.0])), loss

    (_, loss), (j_w, j_b, j_x) = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
        [jnp.asarray(s) for s in shards], jnp.asarray(biases), jnp.asarray(inputs)
    )
    np.testing.assert_allclose(np.asarray(loss), tf_loss.numpy(), rtol=1e-5)
    for jw, tw in zip(j_w, g_w, strict=True):
        np.testing.assert_allclose(np.asarray(jw), tf.convert_to_tensor(tw).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(j_b), tf.convert_to_tensor(g_b).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(j_x), g_x.numpy(), rtol=1e-5, atol=1e-6)


def test_compute_accidental_hits():
    true = np.array([[1, 7], [3, 4], [9, 1]], np.int64)
    sampled = np.array([4, 1, 5, 1, 8], np.int64)
    t_idx, t_ids, t_w = tf.nn.compute_accidental_hits(true, sampled, num_true=2)
    idx, ids, w = compute_accidental_hits(true, sampled, 2)
    hit = np.asarray(w) != 0
    np.testing.assert_array_equal(np.asarray(idx)[hit], t_idx.numpy())
    np.testing.assert_array_equal(np.asarray(ids)[hit], t_ids.numpy())
    np.testing.assert_array_equal(np.asarray(w)[hit], t_w.numpy())


RANGE = 50000


def _our_p(classes):
    return cs._log_uniform_prob(RANGE)(jnp.asarray(classes))


def test_log_uniform_expected_counts_without_replacement_rejection():
    # unique=False: TF's counts are p * num_sampled for its own candidates and for the true classes.
    true = np.array([[0], [1], [10], [1000], [49999]], np.int64)
    cand, t_ec, s_ec = tf.random.log_uniform_candidate_sampler(true, 1, 64, False, RANGE, seed=7)
    np.testing.assert_allclose(np.asarray(_our_p(cand.numpy()) * 64), s_ec.numpy(), rtol=1e-5)
    _, our_t_ec, _ = log_uniform_candidate_sampler(true, 1, 64, False, RANGE, jax.random.key(0))
    np.testing.assert_allclose(np.asarray(our_t_ec), t_ec.numpy(), rtol=1e-5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_log_uniform_unique_counts_match_for_implied_num_tries(seed):
    # TF does not report num_tries; solve for it on the most probable candidate and check that our
    # ExpectedCountHelper with that num_tries reproduces every count TF returned.
    true = np.array([[0], [5], [777]], np.int64)
    cand, t_ec, s_ec = tf.random.log_uniform_candidate_sampler(true, 1, 64, True, RANGE, seed=seed)
    cand = cand.numpy()
    assert len(set(cand.tolist())) == 64
    p_s = np.asarray(_our_p(cand))
    k = int(np.argmax(p_s))
    num_tries = round(float(np.log1p(-s_ec.numpy()[k]) / np.log1p(-p_s[k])))
    assert num_tries > 64
    ours_s = cs._expected_count(jnp.asarray(p_s), 64, jnp.int32(num_tries))
    ours_t = cs._expected_count(_our_p(true), 64, jnp.int32(num_tries))
    np.testing.assert_allclose(np.asarray(ours_s), s_ec.numpy(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ours_t), t_ec.numpy(), rtol=1e-5)
