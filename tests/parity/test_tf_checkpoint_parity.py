"""TF checkpoints round-trip between real TensorFlow 1 programs and jaxgraph.

Each job runs three legs of k steps over the same batches. TF trains k steps and saves; (1) TF trains on
(the reference), while jaxgraph restores TF's checkpoint (with the optimizer state, ``optimizer=``) and
trains the same k steps: losses, variables, slots and non-slots agree to float rounding; (2) jaxgraph saves
in TF's format (``Saver(format="tf")``) and trains k more steps, while a fresh TF graph restores that
checkpoint with ``tf.compat.v1.train.Saver`` (every variable of the graph must be in it) and trains the same
k steps: the same losses. The jobs:

* TF's word2vec graph (sparse gradients for all three tables) with Momentum, Adagrad, Adam and RMSProp, and
  with Adam under ``tf.name_scope("optimizer")`` as ``word2vec_basic.py`` builds it (``optimizer/beta1_power``);
* for every row of ``tests/optimizer_cases.py`` (every TF1 optimizer jaxgraph has, all hyper-parameters
  away from their defaults), an embedding table read with repeated ids (IndexedSlices) plus a dense
  kernel and bias (``make_fixtures.SparseDenseGraph``);
* the same with Momentum and ``ExponentialMovingAverage`` shadows (the EMA state under TF's names);
* the wide-and-deep job (``examples/wide_deep.py``: FTRL on the wide part, Adagrad on the deep part, two
  optimizer states in one checkpoint), through the example's own ``restore`` / ``save``;
* two Adam optimizers in one graph (TF names the second one's beta powers ``beta1_power_1``).

Also: TF's reader reads every dtype jaxgraph writes; jaxgraph refuses a real SavedModel directory and
reads its ``variables/variables`` checkpoint as TF does.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import tensorflow as tf
from optimizer_cases import CASE_IDS, CASES

import jaxgraph as jg
from examples import wide_deep
from jaxgraph.train import (
    AdagradOptimizer,
    AdamOptimizer,
    CheckpointError,
    ExponentialMovingAverage,
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


# TF's graphs and batches come from the fixture script, jaxgraph's models and steps from the core tests.
tf_side = _load("make_fixtures", os.path.join(TESTS, "fixtures", "tf_checkpoints", "make_fixtures.py"))
jg_side = _load("tf_checkpoint_restore_tests", os.path.join(TESTS, "test_tf_checkpoint_restore.py"))
jg_opts = _load("tf_checkpoint_optimizer_tests", os.path.join(TESTS, "test_tf_checkpoint_optimizers.py"))
close, by_tf_name = jg_opts.close, jg_opts.by_tf_name

def _scoped_adam():
    with jg.name_scope("optimizer"):  # where word2vec_basic.py builds its training op
        return AdamOptimizer(0.1)


# name: (TF optimizer, jaxgraph optimizer, the name scope TF's training op is built in)
OPTIMIZERS = {
    "momentum": (lambda: tf1.train.MomentumOptimizer(0.5, 0.9), lambda: MomentumOptimizer(0.5, 0.9), None),
    "adagrad": (lambda: tf1.train.AdagradOptimizer(0.5), lambda: AdagradOptimizer(0.5), None),
    "adam": (lambda: tf1.train.AdamOptimizer(0.1), lambda: AdamOptimizer(0.1), None),
    "adam_in_name_scope": (lambda: tf1.train.AdamOptimizer(0.1), _scoped_adam, "optimizer"),
    "rmsprop": (lambda: tf1.train.RMSPropOptimizer(0.05, momentum=0.5), lambda: RMSPropOptimizer(0.05, momentum=0.5),
                None),
}


def tf_to_jaxgraph_and_back(tmp_path, build_tf_graph, batches, resume):
    """The three legs (module docstring). ``build_tf_graph()`` builds the TF job in the default graph (an
    object with ``global_step`` and ``run(sess, batches, i)``); ``resume(tf_dir, save_path)`` does
    jaxgraph's part: restore TF's checkpoint from ``tf_dir``, train steps k..2k, save TF's format to
    ``save_path``, train steps 2k..3k; it returns (losses of k..2k, every value by TF name after 2k, the
    saved prefix, losses of 2k..3k)."""
    with tf.Graph().as_default():
        graph = build_tf_graph()
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for i in range(K):
                graph.run(sess, batches, i)
            tf1.train.Saver().save(sess, str(tmp_path / "tf" / "model.ckpt"), global_step=graph.global_step)
            tf_losses = [graph.run(sess, batches, i) for i in range(K, 2 * K)]
            tf_after = tf_side.values_by_name(sess)

    losses, after, prefix, next_losses = resume(str(tmp_path / "tf"), str(tmp_path / "jg" / "model.ckpt"))
    close(losses, tf_losses, "losses after jaxgraph restored TF's checkpoint")
    assert sorted(after) == sorted(tf_after)
    for name, value in tf_after.items():
        close(after[name], value, name)

    with tf.Graph().as_default():
        graph = build_tf_graph()
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, prefix)  # every variable of the graph: no initializer runs
            assert sess.run(graph.global_step) == 2 * K
            for name, value in tf_side.values_by_name(sess).items():
                close(value, after[name], f"restored {name}")
            tf_losses = [graph.run(sess, batches, i) for i in range(2 * K, 3 * K)]
            assert sess.run(graph.global_step) == 3 * K
    close(tf_losses, next_losses, "losses after TF restored jaxgraph's checkpoint")
    assert tf.train.latest_checkpoint(os.path.dirname(prefix)) == prefix


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_word2vec_job_round_trips_between_tf_and_jaxgraph(tmp_path, opt_name):
    make_tf_opt, make_jg_opt, scope = OPTIMIZERS[opt_name]
    rng = np.random.default_rng(1)
    emb0, w0 = tf_side.word2vec_start(rng)
    batches = tf_side.word2vec_batches(rng, 3 * K)
    opt = make_jg_opt()
    step = jg_side.make_step(opt)

    def steps(params, opt_state, which):
        losses = []
        for i in which:
            params, opt_state, loss = step(params, opt_state, *[batches[k][i] for k in tf_side.Word2VecGraph.FEEDS])
            losses.append(float(loss))
        return params, opt_state, losses

    def resume(tf_dir, save_path):
        params = jg_side.word2vec_model()  # the two-line recipe
        params, opt_state = Saver().restore(params, opt.init(params), tf_dir, optimizer=opt)
        assert int(opt_state.iterations) == K
        params, opt_state, losses = steps(params, opt_state, range(K, 2 * K))
        prefix = Saver(format="tf").save(params, opt_state, save_path, global_step=params["global_step"].value,
                                         optimizer=opt)
        after = by_tf_name(params, (opt, opt_state))
        return losses, after, prefix, steps(params, opt_state, range(2 * K, 3 * K))[2]

    tf_to_jaxgraph_and_back(tmp_path, lambda: tf_side.Word2VecGraph(make_tf_opt(), emb0, w0, scope), batches, resume)


def sparse_dense_job(tmp_path, make_tf_optimizer, opt, ema_decay=None):
    """The SparseDenseGraph job with TF's ``make_tf_optimizer(global_step)`` and jaxgraph's ``opt``."""
    rng = np.random.default_rng(4)
    table0, kernel0 = tf_side.sparse_dense_start(rng)
    batches = tf_side.sparse_dense_batches(rng, 3 * K)
    ema = None if ema_decay is None else ExponentialMovingAverage(ema_decay, num_updates="global_step")
    step = jg_opts.make_sparse_dense_step(opt, ema)

    def resume(tf_dir, save_path):
        params = jg_opts.sparse_dense_model()
        tree = params if ema is None else {**params, "ema": ema.init(params)}
        tree, opt_state = Saver().restore(tree, opt.init(params), tf_dir, optimizer=opt)
        ema_state = tree.pop("ema", None)
        params, opt_state, ema_state, losses = jg_opts.run_steps(step, tree, opt_state, ema_state, batches,
                                                                 range(K, 2 * K))
        tree = params if ema is None else {**params, "ema": ema_state}
        prefix = Saver(format="tf").save(tree, opt_state, save_path, global_step=params["global_step"].value,
                                         optimizer=opt)
        after = by_tf_name(tree, (opt, opt_state))
        return losses, after, prefix, jg_opts.run_steps(step, params, opt_state, ema_state, batches,
                                                        range(2 * K, 3 * K))[3]

    tf_to_jaxgraph_and_back(
        tmp_path, lambda: tf_side.SparseDenseGraph(make_tf_optimizer, table0, kernel0, ema_decay), batches, resume)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_optimizer_round_trips_between_tf_and_jaxgraph(tmp_path, case):
    sparse_dense_job(tmp_path, lambda gs: tf_side.case_optimizer(case, gs), case.make())


def test_moving_averages_round_trip_between_tf_and_jaxgraph(tmp_path):
    sparse_dense_job(tmp_path, lambda gs: tf1.train.MomentumOptimizer(0.1, 0.9), MomentumOptimizer(0.1, 0.9),
                     ema_decay=0.9)


def test_wide_and_deep_job_round_trips_between_tf_and_jaxgraph(tmp_path):
    batches = wide_deep.make_batches(3 * K)
    wide_opt, deep_opt = wide_deep.default_optimizers()

    def resume(tf_dir, save_path):
        params, states = wide_deep.restore(tf_dir)  # both optimizer states, one call
        params, states, losses = wide_deep.train_steps(params, states, K, batches=batches)
        prefix = wide_deep.save(save_path, params, states, format="tf")
        after = by_tf_name(params, (wide_opt, states[0]), (deep_opt, states[1]))
        return losses, after, prefix, wide_deep.train_steps(params, states, K, batches=batches)[2]

    tf_to_jaxgraph_and_back(tmp_path, lambda: tf_side.WideDeepGraph("ftrl"), batches, resume)


def test_two_adam_optimizers_in_one_graph(tmp_path):
    # TF creates the first optimizer's beta powers as `beta1_power`, the second's as `beta1_power_1`.
    values = {"a": np.arange(3, dtype=np.float32), "b": np.ones(2, np.float32)}
    with tf.Graph().as_default():
        a, b = (tf1.Variable(v, name=k) for k, v in values.items())
        step = tf1.train.get_or_create_global_step()
        loss = tf.reduce_sum(tf.square(a)) + tf.reduce_sum(tf.sin(b))
        grad_a, grad_b = tf.gradients(loss, [a, b])
        train = tf.group(tf1.train.AdamOptimizer(0.1).apply_gradients([(grad_a, a)]),
                         tf1.train.AdamOptimizer(0.2, beta1=0.8).apply_gradients([(grad_b, b)], global_step=step))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(2):
                sess.run(train)
            prefix = tf1.train.Saver().save(sess, str(tmp_path / "tf" / "model.ckpt"), global_step=step)
            tf_values = tf_side.values_by_name(sess)
        assert "beta1_power_1" in tf_values
        opts = (AdamOptimizer(0.1), AdamOptimizer(0.2, beta1=0.8))
        params = {k: jg.Variable(np.zeros_like(v), name=k) for k, v in values.items()}
        params["global_step"] = jg.create_global_step()
        states = (opts[0].init(params, var_list=["a"]), opts[1].init(params, var_list=["b"]))
        params, states = Saver().restore(params, states, prefix, optimizer=opts)
        for name, value in jg_opts.by_tf_name(params, *zip(opts, states, strict=True)).items():
            if not name.startswith("beta"):  # variables and slots; opt.variables() names no graph suffixes
                np.testing.assert_array_equal(value, tf_values[name], err_msg=name)
        for state, suffix in zip(states, ("", "_1"), strict=True):
            for key, value in state.non_slots.items():
                np.testing.assert_array_equal(np.asarray(value), tf_values[key + suffix], err_msg=key + suffix)
        np.testing.assert_allclose(np.asarray(states[1].non_slots["beta1_power"]), 0.8 ** 3, rtol=1e-6)
        jg_prefix = Saver(format="tf").save(params, states, str(tmp_path / "jg" / "model.ckpt"), optimizer=opts)
        with tf1.Session() as sess:
            tf1.train.Saver().restore(sess, jg_prefix)
            for name, value in tf_side.values_by_name(sess).items():
                np.testing.assert_array_equal(value, tf_values[name], err_msg=name)


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
