"""Parity with real TensorFlow 1 optimizers (``tf.compat.v1.train.*`` in graph mode, with a Session).

Run with the TF environment (the ``parity`` nox session)::

    PYTHONPATH=. python -m pytest tests/parity/test_optimizer_parity.py

Every optimizer, at TF's defaults and with every hyper-parameter away from its default (the rows of
``tests/optimizer_cases.py``), trains the same random problem (fixed numpy seeds, several shapes) for 5
steps in TF and in jaxgraph, through ``compute_gradients`` + ``apply_gradients(global_step=...)``: a
dense variable, or an embedding table read with ``tf.gather`` / ``embedding_lookup`` with duplicate ids
(an ``IndexedSlices`` gradient on both sides), plus one variable the loss does not use (``None``
gradient, no slot, unchanged). Parameters and every slot are compared after each step, in float32.
Learning-rate schedules are compared with the global step restored at a non-zero value, and the
contract table's hard-coded TF values and names are checked against TF here.

Each TF case builds its own ``tf.Graph()`` and runs it in a ``tf.compat.v1.Session``: inside the graph
the ops are graph-mode ops (``executing_eagerly()`` is False), so this is TF1's graph path. We do not call
``tf.compat.v1.disable_eager_execution()`` because it is process-wide and would break the eager-mode
parity tests collected in the same session; ``test_graph_mode`` checks that the graph path is the one used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from tf_optimizer_vectors import CASES, dense_run, tf_optimizer

import jaxgraph as jg
from jaxgraph.gradients import gather_rows
from jaxgraph.nn import embedding_lookup
from jaxgraph.train import (
    AdadeltaOptimizer,
    AdagradDAOptimizer,
    AdagradOptimizer,
    AdamOptimizer,
    FtrlOptimizer,
    GradientDescentOptimizer,
    MomentumOptimizer,
    ProximalAdagradOptimizer,
    ProximalGradientDescentOptimizer,
    RMSPropOptimizer,
)

pytestmark = pytest.mark.parity

STEPS = 5

# rtol 1e-6 holds for every optimizer, dense and sparse, with atol = rtol * max|TF value| (see _close).
# Measured worst cases (needed rtol): parameters <= 1.4e-7 (Nesterov); slots <= 8.6e-7 (RMSProp's
# rms, dense), 6.1e-7 (momentum accumulator), 3.3e-7 (Adam's m/v). The gradients themselves differ by
# float32 ulps (TF's Eigen tanh vs XLA's), so bitwise equality is not expected; Adam and RMSProp did not
# need the looser 1e-5 that sqrt-vs-rsqrt differences could have called for.
RTOL = 1e-6

# (name, TF constructor given TF's global step, jaxgraph constructor, lazy sparse update): TF's defaults,
# then every contract case (all hyper-parameters non-default; LazyAdam has no TF1 sparse counterpart).
tf1 = tf.compat.v1
OPTIMIZERS = [
    ("gd", lambda gs: tf1.train.GradientDescentOptimizer(0.1), lambda: GradientDescentOptimizer(0.1), True),
    ("momentum_default", lambda gs: tf1.train.MomentumOptimizer(0.1, 0.9), lambda: MomentumOptimizer(0.1, 0.9), True),
    ("adam_default", lambda gs: tf1.train.AdamOptimizer(0.01), lambda: AdamOptimizer(0.01), False),
    ("adagrad_default", lambda gs: tf1.train.AdagradOptimizer(0.1), lambda: AdagradOptimizer(0.1), True),
    ("rmsprop_default", lambda gs: tf1.train.RMSPropOptimizer(0.01), lambda: RMSPropOptimizer(0.01), True),
    ("rmsprop_centered_default", lambda gs: tf1.train.RMSPropOptimizer(0.01, centered=True),
     lambda: RMSPropOptimizer(0.01, centered=True), True),
    ("ftrl_default", lambda gs: tf1.train.FtrlOptimizer(0.1), lambda: FtrlOptimizer(0.1), True),
    ("adadelta_default", lambda gs: tf1.train.AdadeltaOptimizer(1.0), lambda: AdadeltaOptimizer(1.0), True),
    ("proximal_gd_default", lambda gs: tf1.train.ProximalGradientDescentOptimizer(0.1),
     lambda: ProximalGradientDescentOptimizer(0.1), True),
    ("proximal_adagrad_default", lambda gs: tf1.train.ProximalAdagradOptimizer(0.1),
     lambda: ProximalAdagradOptimizer(0.1), True),
    ("adagrad_da_default", lambda gs: tf1.train.AdagradDAOptimizer(0.1, gs),
     lambda: AdagradDAOptimizer(0.1, "global_step"), True),
] + [(c.id, lambda gs, c=c: tf_optimizer(c, gs), c.make, c.lazy) for c in CASES if c.id != "lazy_adam"]
OPT_IDS = [o[0] for o in OPTIMIZERS]

DENSE_SHAPES = [(5,), (4, 3), (2, 3, 4)]
SPARSE_CASES = [  # (table shape, number of ids); ids always contain duplicates
    ((10, 4), 6),
    ((6, 2, 3), 8),
]


def _problem(seed, var_shape, n_ids=None):
    """Initial values and per-step feeds, from a fixed numpy seed."""
    rng = np.random.RandomState(seed)
    init = rng.randn(*var_shape).astype(np.float32)
    if n_ids is not None:
        # Away from tanh's saturation: 1 - tanh(w)**2 near 0 turns TF's and XLA's ulp-apart tanh into
        # 1e-5 relative differences in the gradient, which says nothing about the optimizers.
        init = (0.5 * init).astype(np.float32)
    unused = rng.randn(3).astype(np.float32)
    feeds = []
    for _ in range(STEPS):
        if n_ids is None:
            feeds.append((None, rng.randn(*var_shape).astype(np.float32)))
        else:
            # the last two rows are never looked up: lazy optimizers must leave them as they are
            ids = rng.randint(0, var_shape[0] - 2, size=n_ids).astype(np.int32)
            ids[1] = ids[0]  # a guaranteed duplicate
            ids[-1] = ids[0]
            # One sign per row: the gradients of a row's duplicates add up without cancelling. (A cancelling
            # sum is ill-conditioned: TF's and XLA's ulp-apart tanh gradients then differ by 1e-5 relative.)
            sign = np.where(ids % 2 == 0, 1.0, -1.0).reshape((-1,) + (1,) * (len(var_shape) - 1))
            coef = sign * (np.abs(rng.randn(n_ids, *var_shape[1:])) + 0.1)
            feeds.append((ids, coef.astype(np.float32)))
    return init, unused, feeds


# The same loss on both sides: the coefficients change every step, and tanh makes the gradient depend
# on the variable.
def _tf_loss(w, coef):
    return tf.reduce_sum(tf.tanh(w) * coef) + 0.05 * tf.reduce_sum(w * w)


def _jax_loss(w, coef):
    return jnp.sum(jnp.tanh(w) * coef) + 0.05 * jnp.sum(w * w)


def _run_tf(make_opt, init, unused, feeds, lookup, use_resource=True):
    graph = tf.Graph()
    with graph.as_default():
        assert not tf.executing_eagerly()
        w = tf.compat.v1.Variable(init, name="w", use_resource=use_resource)
        u = tf.compat.v1.Variable(unused, name="unused", use_resource=use_resource)
        global_step = tf.compat.v1.train.get_or_create_global_step()
        coef = tf.compat.v1.placeholder(tf.float32, feeds[0][1].shape)
        if lookup is None:
            loss = _tf_loss(w, coef) + tf.stop_gradient(tf.reduce_sum(u))
        else:
            ids = tf.compat.v1.placeholder(tf.int32, feeds[0][0].shape)
            if lookup == "gather":
                rows = tf.gather(w, ids)
            else:
                rows = tf.compat.v1.nn.embedding_lookup(w, ids)
            loss = tf.reduce_sum(tf.tanh(rows) * coef) + tf.stop_gradient(tf.reduce_sum(u))
        opt = make_opt(global_step)
        grads_and_vars = opt.compute_gradients(loss, var_list=[w, u])
        assert grads_and_vars[1][0] is None
        assert isinstance(grads_and_vars[0][0], tf.IndexedSlices) == (lookup is not None)
        train = opt.apply_gradients(grads_and_vars, global_step=global_step)
        slot_names = opt.get_slot_names()
        slots = {s: opt.get_slot(w, s) for s in slot_names}
        assert all(opt.get_slot(u, s) is None for s in slot_names)
        slot_var_names = {s: v.op.name for s, v in slots.items()}
        opt_var_names = sorted(v.op.name for v in opt.variables())
        history = []
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step_ids, step_coef in feeds:
                feed = {coef: step_coef}
                if lookup is not None:
                    feed[ids] = step_ids
                sess.run(train, feed_dict=feed)
                history.append(sess.run({"w": w, "unused": u, "step": global_step,
                                         "slots": {s: v for s, v in slots.items()}}))
    return history, slot_names, slot_var_names, opt_var_names


def _run_jaxgraph(make_opt, init, unused, feeds, lookup):
    params = {
        "w": jg.Variable(init, name="w"),
        "unused": jg.Variable(unused, name="unused"),
        "global_step": jg.create_global_step(),
    }
    opt = make_opt()

    def loss_fn(p, ids, coef):
        if lookup is None:
            main = _jax_loss(p["w"].value, coef)
        else:
            rows = gather_rows(p["w"], ids) if lookup == "gather" else embedding_lookup(p["w"], ids)
            main = jnp.sum(jnp.tanh(rows) * coef)
        return main + jax.lax.stop_gradient(jnp.sum(p["unused"].value))

    _, gv = opt.compute_gradients(lambda p: loss_fn(p, feeds[0][0], feeds[0][1]), params,
                                  var_list=["w", "unused"])
    assert gv[1][0] is None
    assert isinstance(gv[0][0], jg.IndexedSlices) == (lookup is not None)

    @jax.jit
    def step(params, state, ids, coef):
        _, grads_and_vars = opt.compute_gradients(lambda p: loss_fn(p, ids, coef), params,
                                                  var_list=["w", "unused"])
        return opt.apply_gradients(grads_and_vars, params, state, global_step="global_step")

    state = opt.init(params, ["w"])
    history = []
    for step_ids, step_coef in feeds:
        params, state = step(params, state, step_ids, step_coef)
        history.append({
            "w": np.asarray(params["w"].value),
            "unused": np.asarray(params["unused"].value),
            "step": int(params["global_step"].value),
            "slots": {s: np.asarray(opt.get_slot(state, "w", s).value) for s in opt.get_slot_names()},
        })
    assert all(opt.get_slot(state, "unused", s) is None for s in opt.get_slot_names())
    slot_var_names = {s: opt.get_slot(state, "w", s).name for s in opt.get_slot_names()}
    opt_var_names = sorted(v.name for v in opt.variables(state))
    return history, opt.get_slot_names(), slot_var_names, opt_var_names


def _close(actual, desired, rtol, msg):
    """rtol per element, and atol = rtol * max|desired| so that an element that is a small difference of
    large terms (a momentum accumulator crossing zero) is judged at the scale of its array."""
    atol = rtol * float(np.max(np.abs(desired)))
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol, err_msg=msg)


def _compare(tf_out, jg_out, rtol, unused):
    tf_hist, tf_slot_names, tf_slot_vars, tf_opt_vars = tf_out
    jg_hist, jg_slot_names, jg_slot_vars, jg_opt_vars = jg_out
    assert jg_slot_names == tf_slot_names
    assert jg_slot_vars == tf_slot_vars
    assert jg_opt_vars == tf_opt_vars
    for t, (a, b) in enumerate(zip(tf_hist, jg_hist, strict=True), start=1):
        _close(b["w"], a["w"], rtol, f"w after step {t}")
        for s in tf_slot_names:
            _close(b["slots"][s], a["slots"][s], rtol, f"slot {s} after step {t}")
        assert a["step"] == b["step"] == t
        np.testing.assert_array_equal(b["unused"], unused)
        np.testing.assert_array_equal(a["unused"], unused)
    # it really trained
    assert not np.allclose(jg_hist[-1]["w"], jg_hist[0]["w"])


@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "make_tf", "make_jg", "lazy"), OPTIMIZERS, ids=OPT_IDS)
def test_dense_parity(name, make_tf, make_jg, lazy, shape):
    init, unused, feeds = _problem(seed=len(shape) * 7 + 1, var_shape=shape)
    _compare(_run_tf(make_tf, init, unused, feeds, None), _run_jaxgraph(make_jg, init, unused, feeds, None),
             RTOL, unused)


@pytest.mark.parametrize("lookup", ["gather", "embedding_lookup"])
@pytest.mark.parametrize(("table_shape", "n_ids"), SPARSE_CASES, ids=["10x4", "6x2x3"])
@pytest.mark.parametrize(("name", "make_tf", "make_jg", "lazy"), OPTIMIZERS, ids=OPT_IDS)
def test_sparse_parity(name, make_tf, make_jg, lazy, table_shape, n_ids, lookup):
    init, unused, feeds = _problem(seed=len(table_shape) * 11 + n_ids, var_shape=table_shape, n_ids=n_ids)
    tf_out = _run_tf(make_tf, init, unused, feeds, lookup)
    _compare(tf_out, _run_jaxgraph(make_jg, init, unused, feeds, lookup), RTOL, unused)
    touched = set(np.concatenate([f[0] for f in feeds]).tolist())
    assert set(range(table_shape[0])) - touched, "the problem must leave some rows untouched"
    for row in set(range(table_shape[0])) - touched:
        # a row never looked up keeps its value (lazy ones by rule; Adam's because its m stays 0)
        np.testing.assert_array_equal(tf_out[0][-1]["w"][row], init[row])
        if lazy:
            for slot in tf_out[1]:
                assert np.array_equal(tf_out[0][-1]["slots"][slot][row], tf_out[0][0]["slots"][slot][row])


@pytest.mark.parametrize(("name", "make_tf", "make_jg", "lazy"), OPTIMIZERS, ids=OPT_IDS)
def test_sparse_parity_ref_variable(name, make_tf, make_jg, lazy):
    """TF's ref-variable sparse path (``_apply_sparse``, ``scatter_sub`` for GD) agrees too."""
    init, unused, feeds = _problem(seed=5, var_shape=(10, 4), n_ids=6)
    _compare(_run_tf(make_tf, init, unused, feeds, "gather", use_resource=False),
             _run_jaxgraph(make_jg, init, unused, feeds, "gather"), RTOL, unused)


def test_graph_mode():
    """The TF side really is TF1 graph mode: a v1 Session runs the train op built in a tf.Graph."""
    init, unused, feeds = _problem(seed=0, var_shape=(3,))
    hist, *_ = _run_tf(OPTIMIZERS[0][1], init, unused, feeds[:1], None)
    # one GD step by hand: grad = (1 - tanh(w)^2) * c + 0.1 * w
    w, c = init.astype(np.float64), feeds[0][1]
    expected = w - 0.1 * ((1 - np.tanh(w) ** 2) * c + 0.1 * w)
    np.testing.assert_allclose(hist[0]["w"], expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_contract_table_is_tf(case):
    """The values, slot names and slot-variable names hard-coded in tests/optimizer_cases.py are TF's."""
    run = dense_run(case)
    assert run["slots"] == case.slots
    assert run["variables"] == case.variables
    for key, values in run["values"].items():
        np.testing.assert_allclose(case.expected[key], values, rtol=2e-7, atol=1e-9, err_msg=key)
    assert set(run["values"]) == set(case.expected)


def _run_schedule(make_tf, make_jg, start, steps=4):
    """Dense steps from a global step restored at ``start``: TF's exponential_decay reading global_step,
    jaxgraph's lambda of the step; a fresh optimizer state on both sides."""
    init = np.array([[1.0, -2.0, 0.5], [0.3, 0.8, -1.2]], np.float32)
    coefs = np.random.RandomState(3).randn(steps, *init.shape).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        w = tf1.Variable(init, name="w")
        global_step = tf1.train.get_or_create_global_step()
        coef = tf1.placeholder(tf.float32, init.shape)
        lr = tf1.train.exponential_decay(0.1, global_step, decay_steps=3, decay_rate=0.5)
        opt = make_tf(lr, global_step)
        train = opt.apply_gradients(opt.compute_gradients(_tf_loss(w, coef), var_list=[w]), global_step=global_step)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(global_step.assign(start))
            tf_hist = []
            for c in coefs:
                sess.run(train, feed_dict={coef: c})
                tf_hist.append(sess.run(w))
    params = {"w": jg.Variable(init, name="w"), "global_step": jg.create_global_step()}
    params["global_step"] = params["global_step"].assign(start)
    opt = make_jg(lambda step: 0.1 * 0.5 ** (step / 3))
    step = jax.jit(lambda p, s, c: opt.minimize(lambda q: _jax_loss(q["w"].value, c), p, s,
                                                global_step="global_step")[:2])
    state, jg_hist = opt.init(params), []
    for c in coefs:
        params, state = step(params, state, c)
        jg_hist.append(np.asarray(params["w"].value))
    assert int(params["global_step"].value) == start + steps
    return tf_hist, jg_hist


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_schedules_read_the_global_step(case):
    """Every optimizer with a learning rate decaying on the global step, restored at step 200."""
    tf_hist, jg_hist = _run_schedule(lambda lr, gs: tf_optimizer(case, gs, learning_rate=lr),
                                     lambda lr: case.make(learning_rate=lr), start=200)
    for t, (a, b) in enumerate(zip(tf_hist, jg_hist, strict=True), start=1):
        _close(b, a, 2e-6, f"w after step {t}")


def test_schedule_reads_the_restored_global_step():
    """Issue 13's numbers: exponential_decay(0.5, global_step=200, 50, 0.7) = 0.12005; one step with
    gradient 1 (the core suite hard-codes TF's [0.87995, 1.87995])."""
    graph = tf.Graph()
    with graph.as_default():
        w = tf1.Variable([1.0, 2.0], name="w")
        global_step = tf1.train.get_or_create_global_step()
        lr = tf1.train.exponential_decay(0.5, global_step, 50, 0.7)
        train = tf1.train.GradientDescentOptimizer(lr).apply_gradients([(tf.ones(2), w)], global_step=global_step)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(global_step.assign(200))
            assert abs(sess.run(lr) - 0.12005) < 1e-7
            sess.run(train)
            tf_w = sess.run(w)
    np.testing.assert_allclose(tf_w, [0.87995, 1.87995], rtol=1e-6)
    params = {"w": jg.Variable(jnp.array([1.0, 2.0]), name="w"), "global_step": jg.create_global_step()}
    params["global_step"] = params["global_step"].assign(200)
    opt = GradientDescentOptimizer(lambda step: 0.5 * 0.7 ** (step / 50))
    params, _ = opt.apply_gradients([(jnp.ones(2), "w")], params, opt.init(params), global_step="global_step")
    np.testing.assert_allclose(np.asarray(params["w"].value), tf_w, rtol=1e-7)
