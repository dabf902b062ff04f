"""Clipping and norms: TF's own test vectors (ported from TF's ``clip_ops_test.py``), IndexedSlices in and
out, ``None`` entries, the NaN/inf rules, and the path ``compute_gradients -> clip -> apply_gradients``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices

X = jnp.array([[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]])        # norm 5
X_GLOBAL = [jnp.array([[-2.0, 0.0, 0.0], [4.0, 0.0, 0.0]]), jnp.array([1.0, -2.0])]   # global norm 5


# -- clip_by_value (TF: testClipByValue*, testClipByValueNonFinite, ...IndexedSlicesClipped) --------
def test_clip_by_value_tf_vectors(maybe_jit):
    x = jnp.arange(1, 7).reshape(2, 3)
    lo = jnp.array([[2, 2, 2], [3, 3, 3]])
    np.testing.assert_array_equal(maybe_jit(jg.clip_by_value)(x, lo, 4), [[2, 2, 3], [4, 4, 4]])
    np.testing.assert_array_equal(jg.clip_by_value(x, 4, jnp.full((2, 3), 6)), [[4, 4, 4], [4, 5, 6]])
    out = jg.clip_by_value(jnp.array([np.nan, np.inf, -np.inf]), -4.0, 4.0)
    np.testing.assert_array_equal(out, [np.nan, 4.0, -4.0])


def test_clip_by_value_indexed_slices():
    values = jnp.array([[[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]], [[0.0, 2.0, 0.0], [0.0, 0.0, -1.0]]])
    g = IndexedSlices(values, jnp.array([2, 6]), (10, 2, 3))
    out = jg.clip_by_value(g, 1.0, 2.0)
    assert isinstance(out, IndexedSlices) and out.dense_shape == (10, 2, 3)
    np.testing.assert_array_equal(out.indices, [2, 6])
    np.testing.assert_allclose(out.values, [[[1, 1, 1], [2, 1, 1]], [[1, 2, 1], [1, 1, 1]]])


def test_clip_by_value_errors():
    x = jnp.ones((2, 3, 1))
    with pytest.raises(ValueError, match="Incompatible shapes"):
        jg.clip_by_value(x, -jnp.array([1.0, 2.0]), jnp.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="integer tensor"):
        jg.clip_by_value(jnp.array([1, 2]), -3.1, 3.1)
    with pytest.raises(TypeError, match=r"\.value"):
        jg.clip_by_value(jg.Variable(jnp.ones(2), name="w"), 0.0, 1.0)
    with pytest.raises(ValueError, match="None"):
        jg.clip_by_value(None, 0.0, 1.0)


# -- clip_by_norm ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "clip, axes, expected",
    [
        (4.0, None, [[-2.4, 0.0, 0.0], [3.2, 0.0, 0.0]]),    # testClipByNormClipped
        (6.0, None, [[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]]),    # testClipByNormNotClipped
        (-1.0, None, [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),    # a negative clip_norm counts as zero
    ],
)
def test_clip_by_norm_tf_vectors(maybe_jit, clip, axes, expected):
    np.testing.assert_allclose(maybe_jit(lambda x: jg.clip_by_norm(x, clip, axes))(X), expected, rtol=1e-6)


def test_clip_by_norm_axes_tf_vectors():
    x = jnp.array([[-3.0, 0.0, 0.0], [4.0, 0.0, 3.0]])
    np.testing.assert_allclose(jg.clip_by_norm(x, 4.0, [0]), [[-2.4, 0.0, 0.0], [3.2, 0.0, 3.0]], rtol=1e-6)
    np.testing.assert_allclose(jg.clip_by_norm(x, 4.0, [1]), [[-3.0, 0.0, 0.0], [3.2, 0.0, 2.4]], rtol=1e-6)
    np.testing.assert_allclose(jg.clip_by_norm(x, 4.0, 1), [[-3.0, 0.0, 0.0], [3.2, 0.0, 2.4]], rtol=1e-6)
    np.testing.assert_array_equal(jg.clip_by_norm(jnp.zeros((2, 3)), 6.0), np.zeros((2, 3)))


def test_clip_by_norm_gradient_at_zero_is_finite():
    # TF's testClipByNormGradientZeros: the safe form gives a gradient of ones at x = 0.
    grad = jax.grad(lambda x: jnp.sum(jg.clip_by_norm(x, 1.0)))(jnp.zeros(3))
    np.testing.assert_array_equal(grad, [1.0, 1.0, 1.0])


def test_clip_by_norm_indexed_slices_uses_values():
    g = IndexedSlices(jnp.array([[3.0], [4.0]]), jnp.array([0, 0]), (3, 1))   # values' norm 5 (dense: 7)
    out = jg.clip_by_norm(g, 1.0)
    assert isinstance(out, IndexedSlices)
    np.testing.assert_allclose(out.values, [[0.6], [0.8]], rtol=1e-6)


def test_clip_by_norm_errors():
    with pytest.raises(ValueError, match="scalar"):
        jg.clip_by_norm(jnp.ones((2, 3, 1)), jnp.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"Invalid reduction dimension \(5 for input with 2 dimension"):
        jg.clip_by_norm(jnp.ones((1, 2)), 1.0, axes=[5])
    with pytest.raises(TypeError, match="floating point"):
        jg.clip_by_norm(jnp.array([3, 4]), 1.0)


# -- global_norm / clip_by_global_norm --------------------------------------------------------------
def test_global_norm_skips_none_and_counts_indexed_slices_values():
    g = IndexedSlices(jnp.array([1.0, -2.0]), jnp.array([3, 4]), (5,))
    assert float(jg.global_norm([X_GLOBAL[0], None, g])) == pytest.approx(5.0)
    assert float(jg.global_norm([])) == 0.0 and float(jg.global_norm([None])) == 0.0
    # Repeated indices are not summed first (TF's rule): values [3, 4] at index 0 have norm 5, not 7.
    assert float(jg.global_norm([IndexedSlices(jnp.array([3.0, 4.0]), jnp.array([0, 0]), (2,))])) == 5.0


@pytest.mark.parametrize("clip, scale", [(4.0, 0.8), (6.0, 1.0)])   # ...Clipped / ...NotClipped
def test_clip_by_global_norm_tf_vectors(maybe_jit, clip, scale):
    ans, norm = maybe_jit(lambda ts: jg.clip_by_global_norm(ts, clip))(tuple(X_GLOBAL))
    assert float(norm) == pytest.approx(5.0)
    for a, x in zip(ans, X_GLOBAL, strict=True):
        np.testing.assert_allclose(a, np.asarray(x) * scale, rtol=1e-6)


def test_clip_by_global_norm_supports_none_and_indexed_slices():
    sparse = IndexedSlices(jnp.array([1.0, -2.0]), jnp.array([3, 4]), (5,))
    ans, norm = jg.clip_by_global_norm([X_GLOBAL[0], None, sparse, None], 4.0)
    assert ans[1] is None and ans[3] is None
    assert isinstance(ans[2], IndexedSlices) and ans[2].dense_shape == (5,)
    np.testing.assert_allclose(ans[2].values, [0.8, -1.6], rtol=1e-6)
    np.testing.assert_array_equal(ans[2].indices, [3, 4])
    np.testing.assert_allclose(ans[0], [[-1.6, 0.0, 0.0], [3.2, 0.0, 0.0]], rtol=1e-6)
    assert float(norm) == pytest.approx(5.0)


def test_clip_by_global_norm_zero_inf_nan():
    ans, norm = jg.clip_by_global_norm([jnp.zeros((2, 3)), jnp.zeros(2)], 6.0)   # testClipByGlobalNormZero
    assert float(norm) == 0.0
    np.testing.assert_array_equal(ans[0], np.zeros((2, 3)))
    for bad in (np.inf, np.nan):                                                  # testClipByGlobalNormInf
        x0 = jnp.array([[-2.0, 0.0, bad], [4.0, 0.0, 0.0]])
        ans, norm = jg.clip_by_global_norm([x0, jnp.array([1.0, -2.0])], 6.0)
        assert np.isnan(float(norm)) if np.isnan(bad) else float(norm) == np.inf
        assert np.isnan(np.asarray(ans[0])).all() and np.isnan(np.asarray(ans[1])).all()


def test_clip_by_global_norm_use_norm_and_errors():
    ans, norm = jg.clip_by_global_norm(X_GLOBAL, 4.0, use_norm=jnp.float32(10.0))
    assert float(norm) == 10.0
    np.testing.assert_allclose(ans[1], [0.4, -0.8], rtol=1e-6)
    with pytest.raises(TypeError, match="`t_list` should be a sequence of tensors"):
        jg.clip_by_global_norm(jnp.array([3.0]), 1.0)
    with pytest.raises(TypeError, match="`t_list` should be a sequence of tensors"):
        jg.global_norm("abc")


# -- clip_by_average_norm -------------------------------------------------------------------------
@pytest.mark.parametrize("clip, expected", [
    (0.8, [[-2.88, 0.0, 0.0], [3.84, 0.0, 0.0]]),     # testClipByAverageNormClipped
    (0.9, [[-3.0, 0.0, 0.0], [4.0, 0.0, 0.0]]),       # testClipByAverageNormNotClipped
])
def test_clip_by_average_norm_tf_vectors(clip, expected):
    np.testing.assert_allclose(jg.clip_by_average_norm(X, clip), expected, rtol=1e-6)
    np.testing.assert_array_equal(jg.clip_by_average_norm(jnp.zeros((2, 3)), 0.9), np.zeros((2, 3)))


def test_clip_by_average_norm_indexed_slices_is_the_dense_result():
    # TF densifies an IndexedSlices first: repeats summed, size of the dense tensor.
    g = IndexedSlices(jnp.array([[-1.5, 0.0, 0.0], [-1.5, 0.0, 0.0], [4.0, 0.0, 0.0]]), jnp.array([0, 0, 1]), (2, 3))
    out = jg.clip_by_average_norm(g, 0.8)
    assert isinstance(out, IndexedSlices)
    np.testing.assert_allclose(out.to_dense(), [[-2.88, 0.0, 0.0], [3.84, 0.0, 0.0]], rtol=1e-6)


def test_l2_loss():
    assert float(jg.nn.l2_loss(jnp.array([[1.0, 2.0], [3.0, 4.0]]))) == 15.0
    assert jg.nn.l2_loss(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


# -- the training path stays sparse ------------------------------------------------------------------
def test_compute_clip_apply_stays_sparse():
    params = {"emb": jg.Variable(jnp.ones((6, 2)), name="emb"), "w": jg.Variable(jnp.ones(2), name="w")}
    opt = jg.train.AdagradOptimizer(0.5)

    @jax.jit
    def step(params, state):
        def loss_fn(p):
            rows = jg.nn.embedding_lookup(p["emb"], jnp.array([1, 1, 4]))
            return jnp.sum((rows @ p["w"].value) ** 2)
        _, gvs = opt.compute_gradients(loss_fn, params)
        grads, norm = jg.clip_by_global_norm([g for g, _ in gvs], 1.0)
        assert isinstance(grads[0], IndexedSlices)
        return opt.apply_gradients(list(zip(grads, [v for _, v in gvs], strict=True)), params, state), norm

    (new, _), norm = step(params, opt.init(params))
    assert float(norm) > 1.0
    untouched = np.asarray(new["emb"].value)[[0, 2, 3, 5]]
    np.testing.assert_array_equal(untouched, np.ones((4, 2)))   # lazy Adagrad: rows never looked up are bit-identical
    assert not np.allclose(np.asarray(new["emb"].value)[[1, 4]], 1.0)
