"""Parity with real TensorFlow: the wide-and-deep example (``examples/wide_deep.py``) against the same model
written in TF1 (graph mode, ``tf.compat.v1``; ``WideDeepGraph`` in the TF checkpoint fixtures' script): same
initial values, same batches, one optimizer for the wide part and one for the deep part; the loss of every step
and every variable at the end."""

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

from examples import wide_deep

pytestmark = pytest.mark.parity

STEPS = 25
SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "tf_checkpoints",
                      "make_fixtures.py")
_spec = importlib.util.spec_from_file_location("make_fixtures", SCRIPT)
tf_side = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tf_side)


def _train_tf(wide: str, batches):
    with tf.Graph().as_default():
        graph = tf_side.WideDeepGraph(wide)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            history = [graph.run(sess, batches, i) for i in range(len(batches))]
            return ({name: sess.run(var) for name, var in graph.variables.items()}, int(sess.run(graph.global_step)),
                    history)


@pytest.mark.parametrize("wide", sorted(tf_side.WIDE_OPTIMIZERS))
def test_wide_deep_matches_tf1(wide):
    batches = wide_deep.make_batches(STEPS)
    want, want_step, want_history = _train_tf(wide, batches)
    params, history = wide_deep.train_model(STEPS, wide=wide, batches=batches)
    assert int(params["global_step"].value) == want_step == STEPS
    np.testing.assert_allclose(history, want_history, rtol=1e-5, atol=1e-6)
    for name, value in want.items():
        np.testing.assert_allclose(np.asarray(params[name].value), value, rtol=1e-5, atol=1e-6, err_msg=name)
