"""Parity with real TensorFlow: the wide-and-deep example (``examples/wide_deep.py``) against the same model
written in TF1 (graph mode, ``tf.compat.v1``): same initial values, same batches, one optimizer for the wide
part and one for the deep part; the loss of every step and every variable at the end."""

import numpy as np
import pytest
import tensorflow as tf

from examples import wide_deep

pytestmark = pytest.mark.parity

STEPS = 25

# wide optimizer name -> TF constructor, matching wide_deep.default_optimizers.
TF_WIDE = {"ftrl": lambda: tf.compat.v1.train.FtrlOptimizer(0.2),
           "adagrad": lambda: tf.compat.v1.train.AdagradOptimizer(0.2)}


def _sparse_value(rows, dtype, n):
    idx = [[i, j] for i, r in enumerate(rows) for j in range(len(r))]
    return tf.compat.v1.SparseTensorValue(np.asarray(idx, np.int64).reshape(-1, 2),
                                          np.asarray([v for r in rows for v in r], dtype), [n, wide_deep.MAX_IDS])


def _train_tf(wide: str, batches):
    init = wide_deep.initial_values()
    graph = tf.Graph()
    with graph.as_default():
        v = {name: tf.compat.v1.Variable(value, name=name) for name, value in init.items()}
        step = tf.compat.v1.train.get_or_create_global_step()
        wide_ids = tf.compat.v1.sparse_placeholder(tf.int64)
        wide_weights = tf.compat.v1.sparse_placeholder(tf.float32)
        deep_ids = tf.compat.v1.sparse_placeholder(tf.int64)
        dense = tf.compat.v1.placeholder(tf.float32, [None, wide_deep.DENSE])
        labels = tf.compat.v1.placeholder(tf.float32, [None, 1])
        linear = tf.compat.v1.nn.safe_embedding_lookup_sparse(v["linear/weights"], wide_ids, wide_weights,
                                                              combiner="sum") + v["linear/bias"]
        embedded = tf.compat.v1.nn.safe_embedding_lookup_sparse(v["dnn/embeddings"], deep_ids, None, combiner="mean")
        hidden = tf.nn.relu(tf.matmul(tf.concat([embedded, dense], 1), v["dnn/hidden/kernel"]) + v["dnn/hidden/bias"])
        logits = linear + tf.matmul(hidden, v["dnn/logits/kernel"]) + v["dnn/logits/bias"]
        loss = tf.compat.v1.losses.sigmoid_cross_entropy(labels, logits)
        wide_vars = [v[n] for n in wide_deep.WIDE_VARS]
        deep_vars = [v[n] for n in wide_deep.DEEP_VARS]
        grads = tf.gradients(loss, wide_vars + deep_vars)
        assert isinstance(grads[0], tf.IndexedSlices) and isinstance(grads[2], tf.IndexedSlices)
        train_wide = TF_WIDE[wide]().apply_gradients(list(zip(grads[:2], wide_vars, strict=True)))
        train_deep = tf.compat.v1.train.AdagradOptimizer(0.05).apply_gradients(
            list(zip(grads[2:], deep_vars, strict=True)), global_step=step)
        train_op = tf.group(train_wide, train_deep)
        history = []
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for batch in batches:
                n = len(batch["labels"])
                feed = {wide_ids: _sparse_value(batch["wide_ids"], np.int64, n),
                        wide_weights: _sparse_value(batch["wide_weights"], np.float32, n),
                        deep_ids: _sparse_value(batch["deep_ids"], np.int64, n),
                        dense: batch["dense"], labels: batch["labels"]}
                history.append(sess.run([train_op, loss], feed)[1])
            return {name: sess.run(var) for name, var in v.items()}, int(sess.run(step)), history


@pytest.mark.parametrize("wide", sorted(TF_WIDE))
def test_wide_deep_matches_tf1(wide):
    batches = wide_deep.make_batches(STEPS)
    want, want_step, want_history = _train_tf(wide, batches)
    params, history = wide_deep.train_model(STEPS, wide=wide, batches=batches)
    assert int(params["global_step"].value) == want_step == STEPS
    np.testing.assert_allclose(history, want_history, rtol=1e-5, atol=1e-6)
    for name, value in want.items():
        np.testing.assert_allclose(np.asarray(params[name].value), value, rtol=1e-5, atol=1e-6, err_msg=name)
