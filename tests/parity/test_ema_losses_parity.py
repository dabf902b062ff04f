"""Parity with real TensorFlow: ExponentialMovingAverage over TF1 graph-mode training (with and without
num_updates, zero_debias for a tensor), get_or_create_global_step, and every tf.losses function with weights,
reductions, label smoothing, NaN inputs and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxgraph as jg
from jaxgraph import losses, train

pytestmark = pytest.mark.parity

STEPS = 6


@pytest.mark.parametrize("use_num_updates", [False, True])
@pytest.mark.parametrize("zero_debias", [False, True])
def test_ema_over_training(use_num_updates, zero_debias):
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3,)).astype(np.float32)
    b0 = np.float32(0.5)
    xs = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(STEPS)]
    decay = 0.9

    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.Variable(w0, name="w")
        b = tf.compat.v1.Variable(b0, name="b")
        step = tf.compat.v1.train.get_or_create_global_step()
        x = tf.compat.v1.placeholder(tf.float32, [4, 3])
        loss = tf.identity(tf.reduce_sum(tf.tanh(tf.linalg.matvec(x, w) + b) ** 2), name="loss")
        train_op = tf.compat.v1.train.GradientDescentOptimizer(0.3).minimize(loss, global_step=step)
        ema = tf.compat.v1.train.ExponentialMovingAverage(decay, num_updates=step if use_num_updates else None,
                                                          zero_debias=zero_debias)
        with tf.control_dependencies([train_op]):
            ema_op = ema.apply([w, b, loss])
        names = sorted(v.op.name for v in tf.compat.v1.global_variables())
        averages = [ema.average(w), ema.average(b), ema.average(loss)]
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            history = []
            for xv in xs:
                sess.run(ema_op, {x: xv})
                history.append(sess.run(averages))
            restore_map = sorted(ema.variables_to_restore())

    params = {"w": jg.Variable(w0, name="w"), "b": jg.Variable(b0, name="b"), "global_step": jg.create_global_step()}
    opt = train.GradientDescentOptimizer(0.3)
    jg_ema = train.ExponentialMovingAverage(decay, num_updates=params["global_step"] if use_num_updates else None,
                                            zero_debias=zero_debias)

    @jax.jit
    def step_fn(params, state, ema_state, xv):
        params, state, loss_value = opt.minimize(
            lambda p: jnp.sum(jnp.tanh(xv @ p["w"].value + p["b"].value) ** 2), params, state,
            global_step=params["global_step"])
        return params, state, jg_ema.apply(params, ema_state, tensors={"loss": loss_value})

    state = opt.init(params)
    ema_state = jg_ema.init(params, tensors={"loss": jnp.float32(0.0)})
    for xv, want in zip(xs, history, strict=True):
        params, state, ema_state = step_fn(params, state, ema_state, xv)
        got = [np.asarray(jg_ema.average(ema_state, n).value) for n in ("w", "b", "loss")]
        for g, t in zip(got, want, strict=True):
            np.testing.assert_allclose(g, t, rtol=1e-5, atol=1e-6)
    # The same variable names, so a checkpoint of {**params, "ema": ema_state} has TF's names.
    jg_names = sorted(v.name for v in jg.global_variables({**params, "ema": ema_state}))
    assert jg_names == names
    assert sorted(jg_ema.variables_to_restore({**params, "ema": ema_state})) == restore_map


# -- losses -----------------------------------------------------------------------------------------------------
RNG = np.random.default_rng(1)
B, C = 4, 3
PRED = RNG.uniform(0.05, 0.95, size=(B, C)).astype(np.float32)
LABELS = (RNG.uniform(size=(B, C)) > 0.5).astype(np.float32)
LOGITS = RNG.normal(size=(B, C)).astype(np.float32) * 2
ONEHOT = np.eye(C, dtype=np.float32)[RNG.integers(0, C, size=B)]
SPARSE = RNG.integers(0, C, size=(B,)).astype(np.int32)
UNIT = (LOGITS / np.linalg.norm(LOGITS, axis=1, keepdims=True)).astype(np.float32)
UNIT_L = (PRED / np.linalg.norm(PRED, axis=1, keepdims=True)).astype(np.float32)

ELEMENT_WEIGHTS = [1.0, 2.5, np.array([[1.0], [0.0], [2.0], [0.5]], np.float32),
                   np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, 0.5], [1.0, 1.0, 0.0]], np.float32),
                   np.zeros((B, C), np.float32)]
EXAMPLE_WEIGHTS = [1.0, 2.5, np.array([1.0, 0.0, 2.0, 0.5], np.float32), np.zeros((B,), np.float32)]

CASES = [  # (name, (labels, predictions or logits), kwargs, weights to try)
    ("absolute_difference", (LABELS, PRED), {}, ELEMENT_WEIGHTS),
    ("mean_squared_error", (LABELS, PRED), {}, ELEMENT_WEIGHTS),
    ("huber_loss", (LABELS, LOGITS), {"delta": 0.7}, ELEMENT_WEIGHTS),
    ("log_loss", (LABELS, PRED), {"epsilon": 1e-6}, ELEMENT_WEIGHTS),
    ("hinge_loss", (LABELS, LOGITS), {}, ELEMENT_WEIGHTS),
    ("sigmoid_cross_entropy", (LABELS, LOGITS), {}, ELEMENT_WEIGHTS),
    ("sigmoid_cross_entropy", (LABELS, LOGITS), {"label_smoothing": 0.2}, ELEMENT_WEIGHTS[:3]),
    ("softmax_cross_entropy", (ONEHOT, LOGITS), {}, EXAMPLE_WEIGHTS),
    ("softmax_cross_entropy", (ONEHOT, LOGITS), {"label_smoothing": 0.1}, EXAMPLE_WEIGHTS[:3]),
    ("sparse_softmax_cross_entropy", (SPARSE, LOGITS), {}, EXAMPLE_WEIGHTS),
    ("sparse_softmax_cross_entropy", (SPARSE[:, None], LOGITS), {}, [np.array([[1.0], [0.0], [2.0], [0.5]])]),
    ("cosine_distance", (UNIT_L, UNIT), {"axis": 1}, [1.0, np.array([[1.0], [0.0], [2.0], [0.5]], np.float32)]),
]
REDUCTIONS = [losses.Reduction.NONE, losses.Reduction.SUM, losses.Reduction.MEAN,
              losses.Reduction.SUM_OVER_BATCH_SIZE, losses.Reduction.SUM_BY_NONZERO_WEIGHTS]


@pytest.mark.parametrize("name, args, kwargs, weight_list", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_losses_values_and_gradients(name, args, kwargs, weight_list):
    tf_fn = getattr(tf.compat.v1.losses, name)
    jg_fn = getattr(losses, name)
    for weights in weight_list:
        for reduction in REDUCTIONS:
            second = tf.Variable(args[1])
            with tf.GradientTape() as tape:
                want = tf_fn(args[0], second, weights=weights, reduction=reduction, **kwargs)
                total = tf.reduce_sum(want)
            want_grad = tape.gradient(total, second).numpy()
            got_value = jg_fn(args[0], args[1], weights=weights, reduction=reduction, **kwargs)
            got_grad = jax.grad(lambda a, w=weights, r=reduction: jnp.sum(jg_fn(args[0], a, weights=w, reduction=r,
                                                                                **kwargs)))(jnp.asarray(args[1]))
            np.testing.assert_allclose(np.asarray(got_value), want.numpy(), rtol=2e-6, atol=1e-6,
                                       err_msg=f"{name} weights={weights} reduction={reduction}")
            np.testing.assert_allclose(np.asarray(got_grad), want_grad, rtol=2e-5, atol=1e-6,
                                       err_msg=f"{name} gradient weights={weights} reduction={reduction}")


@pytest.mark.parametrize("name, args", [
    ("mean_squared_error", (LABELS, PRED)), ("log_loss", (LABELS, PRED)), ("sigmoid_cross_entropy", (LABELS, LOGITS)),
    ("softmax_cross_entropy", (ONEHOT, LOGITS)), ("sparse_softmax_cross_entropy", (SPARSE, LOGITS)),
])
def test_losses_with_nan_inputs(name, args):
    """A NaN input gives NaN where TF's formula does, even under a zero weight (NaN * 0)."""
    bad = np.array(args[1], copy=True)
    bad[1, 1] = np.nan
    example = name.startswith(("softmax", "sparse"))
    for weights in (1.0, np.array([1.0, 0.0, 1.0, 1.0]) if example else np.array([[1.0], [0.0], [1.0], [1.0]])):
        for reduction in (losses.Reduction.NONE, losses.Reduction.SUM_BY_NONZERO_WEIGHTS):
            want = getattr(tf.compat.v1.losses, name)(args[0], bad, weights=weights, reduction=reduction).numpy()
            got = np.asarray(getattr(losses, name)(args[0], bad, weights=weights, reduction=reduction))
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=2e-6, atol=1e-6)


def test_collections_total_loss_against_tf():
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.losses.mean_squared_error(LABELS, PRED)
        with tf.name_scope("tower_1"):
            tf.compat.v1.losses.sigmoid_cross_entropy(LABELS, LOGITS, weights=2.0)
        tf.compat.v1.losses.absolute_difference(LABELS, PRED, loss_collection=None)
        tf.compat.v1.losses.add_loss(tf.constant(0.25), tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES)
        ops = [tf.compat.v1.losses.get_total_loss(), tf.compat.v1.losses.get_regularization_loss(),
               tf.add_n(tf.compat.v1.losses.get_losses("tower_1"))]
        counts = (len(tf.compat.v1.losses.get_losses()), len(tf.compat.v1.losses.get_losses("tower_1")))
        with tf.compat.v1.Session(graph=graph) as sess:
            want = sess.run(ops)
    with losses.record_losses():
        losses.mean_squared_error(LABELS, PRED)
        with jg.name_scope("tower_1"):
            losses.sigmoid_cross_entropy(LABELS, LOGITS, weights=2.0)
        losses.absolute_difference(LABELS, PRED, loss_collection=None)
        losses.add_loss(jnp.float32(0.25), jg.GraphKeys.REGULARIZATION_LOSSES)
        got = [losses.get_total_loss(), losses.get_regularization_loss(), sum(losses.get_losses("tower_1"))]
        assert (len(losses.get_losses()), len(losses.get_losses("tower_1"))) == counts
    np.testing.assert_allclose([float(g) for g in got], want, rtol=2e-6)
