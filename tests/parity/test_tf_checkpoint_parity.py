"""TF checkpoints round-trip between real TensorFlow 1 programs and jaxgraph.

* TF writes: TF's word2vec graph (sparse gradients for all three tables) trains k steps and saves;
  jaxgraph restores it with the optimizer state and trains the next k steps; TF trains the same 2k
  steps in one go. Losses, variables and slots agree to float rounding, for Momentum, Adagrad, Adam
  and RMSProp.
* jaxgraph writes: ``Saver(format="tf")`` after those steps; a fresh TF graph restores it with
  ``tf.compat.v1.train.Saver`` and trains k more steps, as jaxgraph does.
* TF's reader reads every dtype jaxgraph writes; jaxgraph refuses a real SavedModel directory and reads
  its ``variables/variables`` checkpoint as TF does.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf

import jaxgraph as jg
from jaxgraph.train import (
    AdagradOptimizer,
    AdamOptimizer,
    CheckpointError,
    MomentumOptimizer,
    RMSPropOptimizer,
    Saver,
    load_checkpoint,
)

pytestmark = pytest.mark.parity
tf1 = tf.compat.v1
TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 3


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# TF's graph and batches come from the fixture script, jaxgraph's model and step from the core test.
tf_side = _load("make_fixtures", os.path.join(TESTS, "fixtures", "tf_checkpoints", "make_fixtures.py"))
jg_side = _load("tf_checkpoint_restore_tests", os.path.join(TESTS, "test_tf_checkpoint_restore.py"))

OPTIMIZERS = {
    "momentum": (lambda: tf1.train.MomentumOptimizer(0.5, 0.9), lambda: MomentumOptimizer(0.5, 0.9)),
    "adagrad": (lambda: tf1.train.AdagradOptimizer(0.5), lambda: AdagradOptimizer(0.5)),
    "adam": (lambda: tf1.train.AdamOptimizer(0.1), lambda: AdamOptimizer(0.1)),
    "rmsprop": (lambda: tf1.train.RMSPropOptimizer(0.05, momentum=0.5), lambda: RMSPropOptimizer(0.05, momentum=0.5)),
}


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=1e-5, atol=1e-6, err_msg=what)


def jaxgraph_steps(opt, params, opt_state, batches, steps):
    step = jg_side.make_step(opt)
    losses = []
    for i in steps:
        params, opt_state, loss = step(params, opt_state, *[batches[k][i] for k in tf_side.Word2VecGraph.FEEDS])
        losses.append(float(loss))
    return params, opt_state, losses


def tf_values(sess):
    return {v.op.name: sess.run(v) for v in tf1.global_variables()}


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_checkpoints_round_trip_between_tf_and_jaxgraph(tmp_path, opt_name):
    make_tf_opt, make_jg_opt = OPTIMIZERS[opt_name]
    rng = np.random.default_rng(1)
    emb0, w0 = tf_side.word2vec_start(rng)
    batches = tf_side.word2vec_batches(rng, 3 * K)

    # TF: k steps, save, k more steps.
    with tf.Graph().as_default():
        graph = tf_side.Word2VecGraph(make_tf_opt(), emb0, w0)
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for i in range(K):
                graph.run(sess, batches, i)
            tf_prefix = saver.save(sess, str(tmp_path / "tf" / "model.ckpt"), global_step=graph.global_step)
            tf_losses = [graph.run(sess, batches, i) for i in range(K, 2 * K)]
            tf_after = tf_values(sess)

    # jaxgraph: restore TF's checkpoint (the two-line recipe) and train the same k steps.
    opt = make_jg_opt()
    params = jg_side.word2vec_model()
    params, opt_state = Saver().restore(params, opt.init(params), str(tmp_path / "tf"), optimizer=opt)
    assert tf_prefix.endswith("model.ckpt-3") and int(opt_state.iterations) == K
    params, opt_state, losses = jaxgraph_steps(opt, params, opt_state, batches, range(K, 2 * K))
    close(losses, tf_losses, "losses")
    mine = {v.name: v.value for v in jg.named_variables(params) + opt.variables(opt_state)}
    assert sorted(mine) == sorted(tf_after)
    for name, value in tf_after.items():
        close(mine[name], value, name)

    # jaxgraph writes TF's format; TF restores it into a fresh graph and trains k more steps.
    jg_prefix = Saver(format="tf").save(params, opt_state, str(tmp_path / "jg" / "model.ckpt"),
                                        global_step=params["global_step"].value, optimizer=opt)
    _, opt_state_next, jg_losses = jaxgraph_steps(opt, params, opt_state, batches, range(2 * K, 3 * K))
    with tf.Graph().as_default():
        graph = tf_side.Word2VecGraph(make_tf_opt(), np.zeros_like(emb0), np.zeros_like(w0))
        saver = tf1.train.Saver()
        with tf1.Session() as sess:
            saver.restore(sess, jg_prefix)  # every variable of the graph: tables, slots, step, beta powers
            assert sess.run(graph.global_step) == 2 * K
            for name, value in tf_values(sess).items():
                close(value, mine[name], f"restored {name}")
            tf_losses = [graph.run(sess, batches, i) for i in range(2 * K, 3 * K)]
            assert sess.run(graph.global_step) == 3 * K
    close(tf_losses, jg_losses, "losses after TF restored jaxgraph's checkpoint")
    assert tf.train.latest_checkpoint(str(tmp_path / "jg")) == jg_prefix


def test_tensorflow_reads_every_dtype_jaxgraph_writes(tmp_path):
    values = {
        "f16": np.array([1.5, -2.0], np.float16), "f32": np.array([[1.0, np.inf]], np.float32),
        "f64": np.array([np.pi]), "c64": np.array([1 + 2j], np.complex64), "c128": np.array([3j]),
        "i8": np.array([-128], np.int8), "i16": np.array([7], np.int16), "i32": np.array([-5], np.int32),
        "i64": np.array([2**62]), "u8": np.array([255], np.uint8), "u16": np.array([65535], np.uint16),
        "u32": np.array([2**32 - 1], np.uint32), "u64": np.array([2**64 - 1], np.uint64),
        "bool": np.array([True, False]), "scalar": np.float32(4.0), "empty": np.zeros((0, 3), np.float32),
        "bf16": np.array([1.0, -3.5], tf.bfloat16.as_numpy_dtype),
        "strings": np.array([[b"", b"x" * 300], ["\u00e9".encode(), b"\x00"]], dtype=object),
    }
    prefix = str(tmp_path / "all")
    jg.train.tf_checkpoint.write_checkpoint(prefix, values)
    reader = tf.train.load_checkpoint(prefix)
    for name, value in values.items():
        got = reader.get_tensor(name)
        assert np.asarray(got).dtype == np.asarray(value).dtype, name
        assert np.asarray(got).tolist() == np.asarray(value).tolist(), name


def test_saved_model_directory_and_its_variables(tmp_path):
    module = tf.Module()
    module.w = tf.Variable(np.arange(4, dtype=np.float32), name="w")
    module.f = tf.function(lambda x: x * module.w, input_signature=[tf.TensorSpec([4], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "export"))
    with pytest.raises(CheckpointError, match="SavedModel directory"):
        Saver().restore({"w": jg.Variable(np.zeros(4, np.float32), name="w")}, None, str(tmp_path / "export"))
    prefix = str(tmp_path / "export" / "variables" / "variables")
    theirs, mine = tf.train.load_checkpoint(prefix), load_checkpoint(prefix)
    assert mine.get_variable_to_shape_map() == theirs.get_variable_to_shape_map()
    for key in theirs.get_variable_to_shape_map():
        expected = theirs.get_tensor(key)  # bytes for a scalar string (np.asarray would drop trailing NULs)
        got = mine.get_tensor(key)
        assert (got.item() == expected) if isinstance(expected, bytes) else (got.tolist() == expected.tolist()), key
