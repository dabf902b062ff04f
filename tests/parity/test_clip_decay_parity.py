"""Parity with real TensorFlow: clipping and norms (dense, IndexedSlices with duplicate indices, None, NaN and
inf), the path compute_gradients -> clip_by_global_norm -> apply_gradients over several TF1 graph-mode
steps, and every learning-rate decay function over a range of steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

import jaxgraph as jg
from jaxgraph import IndexedSlices, train

pytestmark = pytest.mark.parity

RNG = np.random.default_rng(0)
DENSE = RNG.normal(size=(3, 4)).astype(np.float32)
VECTOR = RNG.normal(size=(5,)).astype(np.float32) * 3
SLICE_VALUES = RNG.normal(size=(4, 2)).astype(np.float32)
SLICE_INDICES = np.array([1, 1, 4, 0], np.int32)         # a duplicate index


def _tf_slices(values=SLICE_VALUES):
    return tf.IndexedSlices(tf.constant(values), tf.constant(SLICE_INDICES), tf.constant([6, 2]))


def _jg_slices(values=SLICE_VALUES):
    return IndexedSlices(jnp.asarray(values), jnp.asarray(SLICE_INDICES), (6, 2))


def _dense_of(x):
    if isinstance(x, tf.IndexedSlices):
        return tf.convert_to_tensor(x).numpy()
    if isinstance(x, IndexedSlices):
        return np.asarray(x.to_dense())
    return np.asarray(x)


def _close(got, want, rtol=1e-6):
    np.testing.assert_allclose(_dense_of(got), _dense_of(want), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("lo, hi", [(-0.5, 0.5), (0.2, 1.0), (1.0, -1.0)])
def test_clip_by_value(lo, hi):
    _close(jg.clip_by_value(DENSE, lo, hi), tf.clip_by_value(DENSE, lo, hi))
    got = jg.clip_by_value(_jg_slices(), lo, hi)
    assert isinstance(got, IndexedSlices)
    _close(got, tf.clip_by_value(_tf_slices(), lo, hi))


@pytest.mark.parametrize("clip", [0.5, 2.0, 100.0, -1.0])
@pytest.mark.parametrize("axes", [None, [0], [1], [0, 1]])
def test_clip_by_norm(clip, axes):
    _close(jg.clip_by_norm(DENSE, clip, axes), tf.clip_by_norm(DENSE, clip, axes))
    _close(jg.clip_by_norm(_jg_slices(), clip, axes), tf.clip_by_norm(_tf_slices(), clip, axes))


@pytest.mark.parametrize("clip", [0.1, 1.0, 100.0])
def test_global_norm_and_clip_by_global_norm(clip):
    tf_list = [tf.constant(DENSE), None, _tf_slices(), tf.constant(VECTOR)]
    jg_list = [DENSE, None, _jg_slices(), VECTOR]
    np.testing.assert_allclose(float(jg.global_norm(jg_list)), tf.compat.v1.global_norm(tf_list).numpy(), rtol=1e-6)
    tf_clipped, tf_norm = tf.clip_by_global_norm(tf_list, clip)
    jg_clipped, jg_norm = jg.clip_by_global_norm(jg_list, clip)
    np.testing.assert_allclose(float(jg_norm), tf_norm.numpy(), rtol=1e-6)
    for got, want in zip(jg_clipped, tf_clipped, strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            assert isinstance(got, IndexedSlices) == isinstance(want, tf.IndexedSlices)
            _close(got, want)


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite(bad):
    dense = DENSE.copy()
    dense[1, 2] = bad
    tf_clipped, tf_norm = tf.clip_by_global_norm([tf.constant(dense), _tf_slices()], 1.0)
    jg_clipped, jg_norm = jg.clip_by_global_norm([dense, _jg_slices()], 1.0)
    np.testing.assert_array_equal(np.asarray(jg_norm), tf_norm.numpy())
    for got, want in zip(jg_clipped, tf_clipped, strict=True):
        np.testing.assert_array_equal(_dense_of(got), _dense_of(want))     # all NaN on both sides
    np.testing.assert_array_equal(np.asarray(jg.clip_by_norm(dense, 1.0)), tf.clip_by_norm(dense, 1.0).numpy())
    np.testing.assert_array_equal(np.asarray(jg.clip_by_value(dense, -1.0, 1.0)),
                                  tf.clip_by_value(dense, -1.0, 1.0).numpy())


@pytest.mark.parametrize("clip", [0.05, 0.3, 10.0])
def test_clip_by_average_norm(clip):
    _close(jg.clip_by_average_norm(DENSE, clip), tf.compat.v1.clip_by_average_norm(DENSE, clip))
    # TF densifies an IndexedSlices (duplicates summed); the jaxgraph result stands for the same tensor.
    _close(jg.clip_by_average_norm(_jg_slices(), clip),
           tf.compat.v1.clip_by_average_norm(tf.convert_to_tensor(_tf_slices()), clip))


def test_l2_loss():
    np.testing.assert_allclose(float(jg.nn.l2_loss(DENSE)), tf.nn.l2_loss(DENSE).numpy(), rtol=1e-6)


# -- compute_gradients -> clip_by_global_norm -> apply_gradients, TF1 graph mode ---------------------------------
STEPS = 5


def _feeds():
    rng = np.random.default_rng(7)
    return [(rng.integers(0, 8, size=6).astype(np.int32), rng.normal(size=(6, 2)).astype(np.float32))
            for _ in range(STEPS)]


def _train_tf(make_opt, emb0, w0, feeds, clip):
    graph = tf.Graph()
    with graph.as_default():
        emb = tf.compat.v1.Variable(emb0, name="emb")
        w = tf.compat.v1.Variable(w0, name="w")
        step = tf.compat.v1.train.get_or_create_global_step()
        ids = tf.compat.v1.placeholder(tf.int32, [6])
        y = tf.compat.v1.placeholder(tf.float32, [6, 2])
        pred = tf.matmul(tf.compat.v1.nn.embedding_lookup(emb, ids), w)
        loss = tf.reduce_sum((pred - y) ** 2)
        opt = make_opt()
        gvs = opt.compute_gradients(loss)
        assert isinstance(gvs[0][0], tf.IndexedSlices)
        clipped, norm = tf.clip_by_global_norm([g for g, _ in gvs], clip)
        train_op = opt.apply_gradients(list(zip(clipped, [v for _, v in gvs], strict=True)), global_step=step)
        norms = []
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for i, target in feeds:
                norms.append(sess.run([train_op, norm], {ids: i, y: target})[1])
            return sess.run(emb), sess.run(w), norms


def _train_jg(make_opt, emb0, w0, feeds, clip):
    params = {"emb": jg.Variable(emb0, name="emb"), "w": jg.Variable(w0, name="w"),
              "global_step": jg.create_global_step()}
    opt = make_opt()

    @jax.jit
    def step(params, state, ids, y):
        def loss_fn(p):
            return jnp.sum((jg.nn.embedding_lookup(p["emb"], ids) @ p["w"].value - y) ** 2)
        _, gvs = opt.compute_gradients(loss_fn, params)
        clipped, norm = jg.clip_by_global_norm([g for g, _ in gvs], clip)
        params, state = opt.apply_gradients(list(zip(clipped, [v for _, v in gvs], strict=True)), params, state,
                                            global_step=params["global_step"])
        return params, state, norm

    state = opt.init(params)
    norms = []
    for i, target in feeds:
        params, state, norm = step(params, state, i, target)
        norms.append(float(norm))
    return np.asarray(params["emb"].value), np.asarray(params["w"].value), norms


@pytest.mark.parametrize("name, make_tf, make_jg", [
    ("momentum", lambda: tf.compat.v1.train.MomentumOptimizer(0.05, 0.9), lambda: train.MomentumOptimizer(0.05, 0.9)),
    ("adagrad", lambda: tf.compat.v1.train.AdagradOptimizer(0.2), lambda: train.AdagradOptimizer(0.2)),
])
@pytest.mark.parametrize("clip", [0.5, 1e3])
def test_clipped_training(name, make_tf, make_jg, clip):
    rng = np.random.default_rng(3)
    emb0 = rng.normal(size=(8, 3)).astype(np.float32)
    w0 = rng.normal(size=(3, 2)).astype(np.float32)
    feeds = _feeds()
    tf_emb, tf_w, tf_norms = _train_tf(make_tf, emb0, w0, feeds, clip)
    jg_emb, jg_w, jg_norms = _train_jg(make_jg, emb0, w0, feeds, clip)
    np.testing.assert_allclose(jg_norms, tf_norms, rtol=1e-5)
    np.testing.assert_allclose(jg_emb, tf_emb, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jg_w, tf_w, rtol=1e-5, atol=1e-6)
    never = sorted(set(range(8)) - {int(i) for ids, _ in feeds for i in ids})
    np.testing.assert_array_equal(jg_emb[never], emb0[never])


# -- learning-rate decay ---------------------------------------------------------------------------------------------
DECAYS = [
    ("exponential_decay", (0.5,), {"decay_steps": 7, "decay_rate": 0.9}),
    ("exponential_decay", (0.5,), {"decay_steps": 7, "decay_rate": 0.9, "staircase": True}),
    ("natural_exp_decay", (0.1,), {"decay_steps": 5, "decay_rate": 0.5}),
    ("natural_exp_decay", (0.1,), {"decay_steps": 5, "decay_rate": 0.5, "staircase": True}),
    ("inverse_time_decay", (0.3,), {"decay_steps": 4, "decay_rate": 0.7}),
    ("inverse_time_decay", (0.3,), {"decay_steps": 4, "decay_rate": 0.7, "staircase": True}),
    ("polynomial_decay", (0.2,), {"decay_steps": 20}),
    ("polynomial_decay", (0.2,), {"decay_steps": 20, "end_learning_rate": 0.01, "power": 0.5}),
    ("polynomial_decay", (0.2,), {"decay_steps": 20, "end_learning_rate": 0.01, "power": 2.0, "cycle": True}),
    ("cosine_decay", (1.0,), {"decay_steps": 30}),
    ("cosine_decay", (1.0,), {"decay_steps": 30, "alpha": 0.1}),
    ("cosine_decay_restarts", (1.0,), {"first_decay_steps": 10}),
    ("cosine_decay_restarts", (1.0,), {"first_decay_steps": 10, "t_mul": 1.0, "m_mul": 0.8, "alpha": 0.05}),
    ("cosine_decay_restarts", (1.0,), {"first_decay_steps": 7, "t_mul": 1.5, "m_mul": 0.9}),
    ("linear_cosine_decay", (1.0,), {"decay_steps": 30}),
    ("linear_cosine_decay", (1.0,), {"decay_steps": 30, "num_periods": 3, "alpha": 0.1, "beta": 1e-3}),
    ("noisy_linear_cosine_decay", (1.0,), {"decay_steps": 30, "initial_variance": 0.0}),
]
STEP_RANGE = list(range(0, 90, 3)) + [7, 10, 20, 30, 31, 60, 1000]


@pytest.mark.parametrize("fn, args, kwargs", DECAYS, ids=[f"{d[0]}-{i}" for i, d in enumerate(DECAYS)])
def test_decay_over_steps(fn, args, kwargs):
    graph = tf.Graph()
    with graph.as_default():
        step = tf.compat.v1.placeholder(tf.int64, [])
        lr = getattr(tf.compat.v1.train, fn)(*args, step, **kwargs)
        with tf.compat.v1.Session(graph=graph) as sess:
            want = [sess.run(lr, {step: s}) for s in STEP_RANGE]
    extra = {"key": jax.random.PRNGKey(0)} if fn.startswith("noisy") else {}
    schedule = getattr(train, fn)(*args, None, **kwargs, **extra)
    got = jax.jit(jax.vmap(schedule))(jnp.asarray(STEP_RANGE, jnp.int32))
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-6, atol=1e-7)
    direct = [float(getattr(train, fn)(*args, s, **kwargs, **extra)) for s in STEP_RANGE[:5]]
    np.testing.assert_allclose(direct, want[:5], rtol=2e-6, atol=1e-7)


def test_piecewise_constant():
    boundaries, values = [10, 20, 35], [1.0, 0.5, 0.1, 0.01]
    graph = tf.Graph()
    with graph.as_default():
        step = tf.compat.v1.placeholder(tf.int32, [])
        lr = tf.compat.v1.train.piecewise_constant(step, boundaries, values)
        with tf.compat.v1.Session(graph=graph) as sess:
            want = [sess.run(lr, {step: s}) for s in STEP_RANGE]
    got = [float(train.piecewise_constant(s, boundaries, values)) for s in STEP_RANGE]
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(want, np.float32))


def test_decayed_rate_as_optimizer_hyperparameter():
    """GradientDescent with exponential_decay(staircase) on the global step, 6 steps from 0 (TF1 graph mode)."""
    init = np.array([1.0, -2.0], np.float32)
    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.Variable(init)
        step = tf.compat.v1.train.get_or_create_global_step()
        lr = tf.compat.v1.train.exponential_decay(0.3, step, 2, 0.5, staircase=True)
        train_op = tf.compat.v1.train.GradientDescentOptimizer(lr).minimize(tf.reduce_sum(w * w), global_step=step)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for _ in range(6):
                sess.run(train_op)
            want = sess.run(w)
    params = {"w": jg.Variable(init, name="w"), "global_step": jg.create_global_step()}
    opt = train.GradientDescentOptimizer(train.exponential_decay(0.3, params["global_step"], 2, 0.5, staircase=True))
    state = opt.init(params)
    step_fn = jax.jit(lambda p, s: opt.minimize(lambda q: jnp.sum(q["w"].value ** 2), p, s,
                                                global_step=p["global_step"])[:2])
    for _ in range(6):
        params, state = step_fn(params, state)
    np.testing.assert_allclose(np.asarray(params["w"].value), want, rtol=1e-6)
