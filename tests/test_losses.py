"""jaxgraph.losses: TF's own test cases (ported from TF's ``losses_test.py``: the same inputs and expected
values), the reductions, the weights rule, the loss collections, and the errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import losses
from jaxgraph.losses import Reduction

PRED = jnp.array([[4.0, 8.0, 12.0], [8.0, 1.0, 3.0]])
LABELS = jnp.array([[1.0, 9.0, 2.0], [-5.0, -2.0, 6.0]])
LOGITS3 = jnp.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
WRONG3 = jnp.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])
BIG3 = jnp.array([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0], [-100.0, -100.0, 100.0]])


def approx(x, expected, places=3):
    assert float(x) == pytest.approx(expected, abs=10 ** (-places))


# -- absolute_difference / mean_squared_error (AbsoluteDifferenceLossTest, MeanSquaredErrorTest) --------
@pytest.mark.parametrize("fn, base, batch, sample, most_zero", [
    (losses.absolute_difference, 5.5, 5.6, 16.6, 6.0),
    (losses.mean_squared_error, 49.5, 767.8 / 6.0, 587 / 5.0, 18.0),
])
def test_regression_losses(maybe_jit, fn, base, batch, sample, most_zero):
    f = maybe_jit(fn)
    approx(f(PRED, PRED), 0.0)
    approx(f(LABELS, PRED), base)
    approx(f(LABELS, PRED, 2.3), base * 2.3)
    batch_w = jnp.array([[1.2], [0.0]]) if fn is losses.absolute_difference else jnp.array([[1.2], [3.4]])
    approx(f(LABELS, PRED, batch_w), batch)
    approx(f(LABELS, PRED, jnp.array([[3.0, 6, 5], [0, 4, 2]])), sample)
    approx(f(LABELS, PRED, jnp.array([[0.0, 0, 0], [0, 0, 2]])), most_zero)
    approx(f(LABELS, PRED, jnp.zeros((2, 3))), 0.0)


def test_mean_squared_error_scalar():
    assert float(losses.mean_squared_error(jnp.int32(0), jnp.int32(0))) == 0.0


# -- cross entropies -----------------------------------------------------------------------------------
def test_softmax_cross_entropy_tf_cases(maybe_jit):
    f = maybe_jit(losses.softmax_cross_entropy)
    approx(f(jnp.eye(3), LOGITS3), 0.0)
    approx(f(WRONG3, LOGITS3), 10.0)
    approx(f(WRONG3, LOGITS3, 2.3), 23.0)
    approx(f(WRONG3, LOGITS3, jnp.array([1.2, 3.4, 5.6])), (1.2 + 3.4 + 5.6) * 10.0 / 3.0)
    approx(f(WRONG3, LOGITS3, jnp.array([1.2, 0.0, 0.0])), 12.0)
    approx(f(WRONG3, LOGITS3, jnp.zeros(3)), 0.0)
    approx(losses.softmax_cross_entropy(jnp.array([[1, 0, 0]]), BIG3[:1], label_smoothing=0.1), 400.0 * 0.1 / 3.0)
    with pytest.raises(ValueError, match="weights can not be broadcast to values"):
        losses.softmax_cross_entropy(jnp.eye(3), BIG3, weights=jnp.ones((3, 3)))


def test_sparse_softmax_cross_entropy_tf_cases(maybe_jit):
    f = maybe_jit(losses.sparse_softmax_cross_entropy)
    approx(f(jnp.array([[0], [1], [2]]), LOGITS3), 0.0)
    approx(f(jnp.array([0, 1, 2]), LOGITS3), 0.0)
    wrong = jnp.array([[2], [0], [1]])
    approx(f(wrong, LOGITS3), 10.0)
    approx(f(jnp.array([2, 0, 1]), LOGITS3, 2.3), 23.0)
    approx(f(wrong, LOGITS3, jnp.array([2.3])), 23.0)
    approx(f(wrong, LOGITS3, jnp.array([[1.2], [3.4], [5.6]])), (1.2 + 3.4 + 5.6) * 10.0 / 3.0)
    approx(f(wrong, LOGITS3, jnp.array([[1.2], [0.0], [0.0]])), 12.0)
    approx(f(wrong, LOGITS3, jnp.zeros((3, 1))), 0.0)


def test_sparse_softmax_cross_entropy_errors():
    labels = jnp.array([[0], [1], [2]])
    with pytest.raises(ValueError, match="weights can not be broadcast"):
        losses.sparse_softmax_cross_entropy(labels, BIG3, weights=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="weights can not be broadcast"):
        losses.sparse_softmax_cross_entropy(labels, BIG3, weights=jnp.array([1.2, 3.4, 5.6, 7.8]))
    with pytest.raises(ValueError, match="`labels.shape` must equal `logits.shape` except for the last dimension"):
        losses.sparse_softmax_cross_entropy(jnp.array([[0], [1], [2], [3]]), BIG3, weights=jnp.array([1.2, 3.4, 5.6]))
    with pytest.raises(ValueError, match=r"`labels.shape.rank` must equal `logits.shape.rank - 1`. Received: "
                                         r"labels.shape=\(2, 2\) of rank 2"):
        losses.sparse_softmax_cross_entropy(jnp.array([[0, 1], [2, 3]]), jnp.zeros((4, 4)), weights=1.2)
    with pytest.raises(ValueError, match=r"Received a label value of 3 which is outside the valid range of \[0, 3\)"):
        losses.sparse_softmax_cross_entropy(jnp.array([0, 3, 1]), BIG3)
    out = jax.jit(losses.sparse_softmax_cross_entropy)(jnp.array([0, 3, 1]), BIG3)
    assert np.isnan(float(out))   # under jit a bad label is a NaN loss, never a silent number


def test_sigmoid_cross_entropy_tf_cases(maybe_jit):
    f = maybe_jit(losses.sigmoid_cross_entropy)
    approx(f(jnp.eye(3), BIG3), 0.0)
    approx(f(jnp.ones((32, 1)), jnp.ones((32, 1)), jnp.ones((32, 1))), 0.313)
    approx(f(WRONG3, BIG3), 600.0 / 9.0)
    approx(f(WRONG3, BIG3, jnp.array([[3.0, 4, 5], [2, 6, 0], [8, 0, 1]])), 1700.0 / 7.0)
    smooth = losses.sigmoid_cross_entropy(jnp.array([[1, 0, 1]]), BIG3[:1], label_smoothing=0.1)
    approx(smooth, (100.0 + 50.0 * 0.1) / 3.0)
    softmax = losses.softmax_cross_entropy(jnp.array([[0, 1], [1, 0], [0, 1]]),
                                           jnp.array([[0.0, 100.0], [100.0, 0.0], [100.0, 0.0]]), label_smoothing=0.1)
    approx(smooth, float(softmax))


# -- log / hinge / huber / cosine ------------------------------------------------------------------------------
LL_PRED = np.asarray([0.9, 0.2, 0.2, 0.8, 0.4, 0.6]).reshape((2, 3))
LL_LABELS = np.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]).reshape((2, 3))
LL_EXPECTED = LL_LABELS * np.log(LL_PRED + 1e-7) + (1 - LL_LABELS) * np.log(1 - LL_PRED + 1e-7)


def test_log_loss_tf_cases():
    approx(losses.log_loss(LL_LABELS, LL_LABELS), 0.0)
    approx(losses.log_loss(LL_LABELS, LL_PRED), -np.sum(LL_EXPECTED) / 6.0)
    approx(losses.log_loss(LL_LABELS, LL_PRED, 2.3), 2.3 * -np.sum(LL_EXPECTED) / 6.0)
    weights = np.array([[1.2], [0.0]])
    approx(losses.log_loss(LL_LABELS, LL_PRED, weights), -np.sum(LL_EXPECTED * weights) / 3.0)
    sample = np.array([3, 6, 5, 0, 4, 2]).reshape((2, 3))
    approx(losses.log_loss(LL_LABELS, LL_PRED, sample), -np.sum(LL_EXPECTED * sample) / 5.0)
    with pytest.raises(ValueError, match="Mismatch at dim 1"):
        losses.log_loss(LL_LABELS, LL_PRED, np.ones((2, 4)))


def test_hinge_loss_tf_cases():
    np.testing.assert_allclose(losses.hinge_loss(jnp.array([1.0, 0.0, 0.0, 1.0]), jnp.array([1.2, -1.4, -1.0, 2.1])),
                               0.0, atol=1e-3)
    np.testing.assert_allclose(losses.hinge_loss(jnp.array([[0.0], [0.0], [1.0], [1.0]]),
                                                 jnp.array([[-0.7], [-1.4], [1.4], [0.6]])), 0.175, atol=1e-3)
    np.testing.assert_allclose(losses.hinge_loss(jnp.array([[[1.0], [0.0], [0.0], [1.0]]]),
                                                 jnp.array([[[1.2], [0.4], [-1.0], [-1.1]]])), 0.875, atol=1e-3)
    with pytest.raises(ValueError, match="incompatible"):
        losses.hinge_loss(jnp.array([0.0, 1.0]), jnp.array([[-1.0], [2.1]]))


def test_huber_loss():
    # Quadratic inside delta, linear beyond, as TF's formula.
    approx(losses.huber_loss(jnp.zeros(3), jnp.array([0.5, -2.0, 3.0]), delta=1.5),
           (0.125 + (0.5 * 1.5**2 + 1.5 * 0.5) + (0.5 * 1.5**2 + 1.5 * 1.5)) / 3.0, places=5)


COS_PRED = np.asarray([[1, 0, 0], [0, 0, -1], [1, 0, 0], [1, 0, 0], [0, 0, -1], [1, 0, 0]]).reshape((3, 2, 3))
COS_LABELS = np.asarray([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]]).reshape((3, 2, 3))


def test_cosine_distance_tf_cases():
    approx(losses.cosine_distance(COS_LABELS, COS_LABELS, dim=2), 0.0, places=5)
    approx(losses.cosine_distance(COS_LABELS, COS_PRED, axis=2), 1.0, places=5)
    assert float(losses.cosine_distance(COS_LABELS, COS_PRED, axis=2, weights=np.reshape([1, 0, 0], (3, 1, 1)))) == 1.0
    weights = np.reshape([1, 0, 0, 1, 1, 1], (3, 2, 1))
    assert float(losses.cosine_distance(COS_LABELS, COS_PRED, axis=2, weights=weights)) == 0.75
    assert float(losses.cosine_distance(COS_LABELS, COS_PRED, axis=2, weights=np.zeros((3, 2, 1)))) == 0.0
    with pytest.raises(ValueError, match="You must specify argument `axis`."):
        losses.cosine_distance(COS_LABELS, COS_PRED)


# -- compute_weighted_loss and the reductions (ComputeWeightedLossTest) -------------------------------------
RAW = np.arange(24, dtype=np.float64).reshape(3, 2, 4)


@pytest.mark.parametrize("weights", [1.0, np.ones((1, 1, 1)), np.ones((1, 1, 4)), np.ones((1, 2, 1)),
                                     np.ones((3, 1, 1)), np.ones((3, 2, 4))])
def test_unweighted(weights):
    approx(losses.compute_weighted_loss(RAW, weights), np.mean(RAW))


def test_reductions():
    w = np.array([[[0.0, 1.0, 2.0, 0.0]]])                      # broadcasts over the first two dims
    weighted = RAW * w
    assert losses.compute_weighted_loss(RAW, w, reduction=Reduction.NONE).shape == (3, 2, 4)
    approx(losses.compute_weighted_loss(RAW, w, reduction=Reduction.SUM), weighted.sum())
    approx(losses.compute_weighted_loss(RAW, w, reduction=Reduction.MEAN), weighted.sum() / (3 * 2 * 3.0))
    approx(losses.compute_weighted_loss(RAW, w, reduction=Reduction.SUM_OVER_BATCH_SIZE), weighted.sum() / 24)
    approx(losses.compute_weighted_loss(RAW, w, reduction=Reduction.SUM_BY_NONZERO_WEIGHTS), weighted.sum() / 12)
    assert Reduction.SUM_OVER_NONZERO_WEIGHTS == Reduction.SUM_BY_NONZERO_WEIGHTS
    assert float(losses.compute_weighted_loss(RAW, 0.0)) == 0.0                                  # 0 / 0 -> 0
    assert float(losses.compute_weighted_loss(RAW, np.zeros((3, 2, 4)), reduction=Reduction.MEAN)) == 0.0


def test_dtype_and_gradient_at_zero_weights():
    out = losses.compute_weighted_loss(jnp.ones(3, jnp.bfloat16), 2.0)
    assert out.dtype == jnp.bfloat16
    grad = jax.grad(lambda p: losses.mean_squared_error(jnp.zeros(2), p, weights=jnp.zeros(2)))(jnp.ones(2))
    np.testing.assert_array_equal(grad, [0.0, 0.0])   # div_no_nan keeps the gradient finite


def test_errors():
    with pytest.raises(ValueError, match="Invalid Reduction Key bogus"):
        losses.compute_weighted_loss(RAW, reduction="bogus")
    for fn in (losses.absolute_difference, losses.mean_squared_error, losses.log_loss):
        with pytest.raises(ValueError, match="`weights` must not be None"):
            fn(PRED, PRED, weights=None)
    with pytest.raises(ValueError, match="`labels` must not be None"):
        losses.mean_squared_error(None, PRED)
    with pytest.raises(ValueError, match=r"values.rank=3. weights.rank=1"):
        losses.compute_weighted_loss(RAW, np.ones(4))
    with pytest.raises(ValueError, match=r"Shapes \(2, 3\) and \(3,\) are incompatible"):
        losses.absolute_difference(jnp.ones(3), PRED)


# -- the loss collections -----------------------------------------------------------------------------------
def test_collections_and_total_loss(maybe_jit):
    def loss_fn(w):
        with losses.record_losses():
            with jg.name_scope("tower_0"):
                losses.mean_squared_error(jnp.array([1.0, 2.0]), w * jnp.ones(2))       # 0.5 at w = 2
            losses.absolute_difference(jnp.zeros(2), w * jnp.ones(2), loss_collection=None)   # not collected
            losses.add_loss(0.5 * jg.nn.l2_loss(w), jg.GraphKeys.REGULARIZATION_LOSSES)        # 1.0 at w = 2
            return (losses.get_total_loss(), losses.get_total_loss(add_regularization_losses=False),
                    losses.get_regularization_loss(), len(losses.get_losses()), len(losses.get_losses("tower_0")),
                    len(losses.get_losses("tower_1")))

    total, data, reg, n, n_tower0, n_tower1 = maybe_jit(loss_fn)(jnp.float32(2.0))
    assert (float(total), float(data), float(reg)) == (1.5, 0.5, 1.0)
    assert (n, n_tower0, n_tower1) == (1, 1, 0)


def test_collections_with_minimize():
    params = {"w": jg.Variable(jnp.array([2.0]), name="w")}

    def loss_fn(p):
        with losses.record_losses():
            losses.mean_squared_error(jnp.array([1.0]), p["w"].value)
            losses.add_loss(jg.nn.l2_loss(p["w"].value), jg.GraphKeys.REGULARIZATION_LOSSES)
            return losses.get_total_loss()

    new, _, loss = jg.train.GradientDescentOptimizer(0.1).minimize(loss_fn, params)
    assert float(loss) == 3.0                                  # 1 + 2
    np.testing.assert_allclose(new["w"].value, [2.0 - 0.1 * (2.0 + 2.0)], rtol=1e-6)


def test_nothing_recorded_outside_a_block():
    losses.mean_squared_error(jnp.ones(2), jnp.zeros(2))
    assert losses.get_losses() == [] and float(losses.get_regularization_loss()) == 0.0
    with pytest.raises(ValueError, match="inputs must be a list of at least one Tensor"):
        losses.get_total_loss()
