"""TF1's ``tf.losses`` functions: per-element losses, ``weights`` and a ``Reduction`` to a scalar.

Every function follows ``tensorflow/python/ops/losses/losses_impl.py``: inputs are cast to float32
(the cross entropies keep the logits' dtype), the per-element losses are multiplied by ``weights``
(a scalar, or an array of the losses' rank whose every dimension is 1 or the losses' size: TF's
broadcasting rule, stricter than numpy's) and reduced. The default reduction,
``SUM_BY_NONZERO_WEIGHTS``, divides the weighted sum by the number of elements with a non-zero weight
(``0`` when there are none, not ``NaN``). The result has the input's dtype.

Each loss is also added to the ``loss_collection`` (``GraphKeys.LOSSES``) of the innermost
:func:`jaxgraph.losses.record_losses` block, if one is open (see :mod:`jaxgraph.losses.util`).

>>> import jax.numpy as jnp
>>> labels = jnp.array([[1.0, 9.0, 2.0], [-5.0, -2.0, 6.0]])
>>> predictions = jnp.array([[4.0, 8.0, 12.0], [8.0, 1.0, 3.0]])
>>> float(absolute_difference(labels, predictions))                       # TF's test: 5.5
5.5
>>> round(float(absolute_difference(labels, predictions, weights=jnp.array([[1.2], [0.0]]))), 4)
5.6
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.losses.util import add_loss
from jaxgraph.variables import GraphKeys

__all__ = [
    "Reduction",
    "absolute_difference",
    "compute_weighted_loss",
    "cosine_distance",
    "hinge_loss",
    "huber_loss",
    "log_loss",
    "mean_squared_error",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
]


class Reduction:
    """TF's ``tf.compat.v1.losses.Reduction``: how the weighted losses become the returned loss.

    * ``NONE``: the weighted per-element losses, unreduced.
    * ``SUM``: their sum.
    * ``MEAN``: the sum divided by the sum of the (broadcast) weights.
    * ``SUM_OVER_BATCH_SIZE``: the sum divided by the number of elements.
    * ``SUM_BY_NONZERO_WEIGHTS`` (default; alias ``SUM_OVER_NONZERO_WEIGHTS``): the sum divided by the
      number of elements with a non-zero weight.
    """

    NONE = "none"
    SUM = "weighted_sum"
    SUM_OVER_BATCH_SIZE = "weighted_sum_over_batch_size"
    MEAN = "weighted_mean"
    SUM_BY_NONZERO_WEIGHTS = "weighted_sum_by_nonzero_weights"
    SUM_OVER_NONZERO_WEIGHTS = SUM_BY_NONZERO_WEIGHTS

    @classmethod
    def all(cls) -> tuple[str, ...]:
        return (cls.NONE, cls.SUM, cls.MEAN, cls.SUM_OVER_BATCH_SIZE, cls.SUM_OVER_NONZERO_WEIGHTS,
                cls.SUM_BY_NONZERO_WEIGHTS)

    @classmethod
    def validate(cls, key: str) -> None:
        if key not in cls.all():
            raise ValueError(f"Invalid Reduction Key {key}. Key should be one of {cls.all()}.")


def _required(value: Any, name: str) -> jax.Array:
    if value is None:
        raise ValueError(f"Argument `{name}` must not be None.")
    return jnp.asarray(value)


def _compatible(a: jax.Array, b: jax.Array) -> None:
    if a.shape != b.shape:
        raise ValueError(f"Shapes {a.shape} and {b.shape} are incompatible")


def _check_broadcastable(weights: jax.Array, values: jax.Array) -> None:
    """TF's ``assert_broadcastable``: a scalar, or the same rank with every dimension 1 or equal."""
    prefix = "weights can not be broadcast to values."
    if weights.ndim == 0:
        return
    if weights.ndim != values.ndim:
        raise ValueError(
            f"{prefix} values.rank={values.ndim}. weights.rank={weights.ndim}. values.shape={values.shape}. "
            f"weights.shape={weights.shape}."
        )
    for i, (w, v) in enumerate(zip(weights.shape, values.shape, strict=True)):
        if w not in (1, v):
            raise ValueError(
                f"{prefix} Mismatch at dim {i}. values.shape={values.shape}, weights.shape={weights.shape}."
            )


def _safe_div(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
    # div_no_nan, with a safe denominator so that the gradient is finite too.
    zero = denominator == 0
    return jnp.where(zero, jnp.zeros((), numerator.dtype),
                     numerator / jnp.where(zero, jnp.ones((), denominator.dtype), denominator))


def compute_weighted_loss(
    losses: Any,
    weights: Any = 1.0,
    scope: str | None = None,
    loss_collection: str | None = GraphKeys.LOSSES,
    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS,
) -> jax.Array:
    """``tf.compat.v1.losses.compute_weighted_loss``: weight ``losses`` and reduce them.

    >>> import jax.numpy as jnp
    >>> float(compute_weighted_loss(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 1.0])))   # (1+3)/2
    2.0
    >>> compute_weighted_loss(jnp.array([1.0, 2.0]), 2.0, reduction=Reduction.NONE).tolist()
    [2.0, 4.0]
    """
    Reduction.validate(reduction)
    losses = _required(losses, "losses")
    weights = _required(weights, "weights")
    _check_broadcastable(weights, losses)
    input_dtype = losses.dtype
    losses = losses.astype(jnp.float32)
    weights = weights.astype(jnp.float32)
    weighted = losses * weights
    if reduction == Reduction.NONE:
        loss = weighted
    else:
        loss = jnp.sum(weighted)
        if reduction == Reduction.MEAN:
            loss = _safe_div(loss, jnp.sum(jnp.ones_like(losses) * weights))
        elif reduction == Reduction.SUM_BY_NONZERO_WEIGHTS:
            present = jnp.broadcast_to(jnp.where(weights == 0.0, 0.0, 1.0), losses.shape)
            loss = _safe_div(loss, jnp.sum(present))
        elif reduction == Reduction.SUM_OVER_BATCH_SIZE:
            loss = _safe_div(loss, jnp.asarray(losses.size, jnp.float32))
    loss = loss.astype(input_dtype)
    add_loss(loss, loss_collection, name=scope or "weighted_loss")
    return loss


def absolute_difference(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None,
                        loss_collection: str | None = GraphKeys.LOSSES,
                        reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """``|predictions - labels|``, weighted and reduced."""
    labels = _required(labels, "labels").astype(jnp.float32)
    predictions = _required(predictions, "predictions").astype(jnp.float32)
    _compatible(predictions, labels)
    return compute_weighted_loss(jnp.abs(predictions - labels), weights, scope or "absolute_difference",
                                 loss_collection, reduction)


def mean_squared_error(labels: Any, predictions: Any, weights: Any = 1.0, scope: str | None = None,
                       loss_collection: str | None = GraphKeys.LOSSES,
                       reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """``(predictions - labels) ** 2``, weighted and reduced.

    >>> float(mean_squared_error(jnp.array([1.0, 2.0]), jnp.array([3.0, 2.0])))
    2.0
    """
    labels = _required(labels, "labels").astype(jnp.float32)
    predictions = _required(predictions, "predictions").astype(jnp.float32)
    _compatible(predictions, labels)
    diff = predictions - labels
    return compute_weighted_loss(diff * diff, weights, scope or "mean_squared_error", loss_collection, reduction)


def huber_loss(labels: Any, predictions: Any, weights: Any = 1.0, delta: float = 1.0, scope: str | None = None,
               loss_collection: str | None = GraphKeys.LOSSES,
               reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """``0.5 * x ** 2`` for ``|x| <= delta``, ``0.5 * delta ** 2 + delta * (|x| - delta)`` beyond, with
    ``x = predictions - labels``.

    >>> float(huber_loss(jnp.array([0.0, 0.0]), jnp.array([0.5, 3.0])))      # (0.125 + 2.5) / 2
    1.3125
    """
    labels = _required(labels, "labels").astype(jnp.float32)
    predictions = _required(predictions, "predictions").astype(jnp.float32)
    _compatible(predictions, labels)
    abs_error = jnp.abs(predictions - labels)
    quadratic = jnp.minimum(abs_error, delta)
    linear = abs_error - quadratic
    losses = 0.5 * (quadratic * quadratic) + delta * linear
    return compute_weighted_loss(losses, weights, scope or "huber_loss", loss_collection, reduction)


def log_loss(labels: Any, predictions: Any, weights: Any = 1.0, epsilon: float = 1e-7, scope: str | None = None,
             loss_collection: str | None = GraphKeys.LOSSES,
             reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """``-labels * log(predictions + epsilon) - (1 - labels) * log(1 - predictions + epsilon)``.

    >>> round(float(log_loss(jnp.array([1.0, 0.0]), jnp.array([0.9, 0.2]))), 5)
    0.16425
    """
    labels = _required(labels, "labels").astype(jnp.float32)
    predictions = _required(predictions, "predictions").astype(jnp.float32)
    _compatible(predictions, labels)
    losses = -(labels * jnp.log(predictions + epsilon)) - (1 - labels) * jnp.log(1 - predictions + epsilon)
    return compute_weighted_loss(losses, weights, scope or "log_loss", loss_collection, reduction)


def hinge_loss(labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None,
               loss_collection: str | None = GraphKeys.LOSSES,
               reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """``max(0, 1 - (2 * labels - 1) * logits)`` for labels in ``{0, 1}``.

    >>> float(hinge_loss(jnp.array([1.0, 0.0]), jnp.array([0.5, 0.5])))   # (0.5 + 1.5) / 2
    1.0
    """
    labels = _required(labels, "labels").astype(jnp.float32)
    logits = _required(logits, "logits").astype(jnp.float32)
    _compatible(logits, labels)
    signs = 2 * labels - jnp.ones_like(labels)
    losses = jax.nn.relu(jnp.ones_like(labels) - signs * logits)
    return compute_weighted_loss(losses, weights, scope or "hinge_loss", loss_collection, reduction)


def cosine_distance(labels: Any, predictions: Any, axis: int | None = None, weights: Any = 1.0,
                    scope: str | None = None, loss_collection: str | None = GraphKeys.LOSSES,
                    reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS, dim: int | None = None) -> jax.Array:
    """``1 - sum(labels * predictions, axis)`` (inputs are assumed unit-normalised, as in TF); the
    per-example losses keep the reduced axis with size 1, so ``weights`` broadcast against that shape.
    ``dim`` is TF's deprecated name for ``axis``.

    >>> float(cosine_distance(jnp.array([[1.0, 0.0]]), jnp.array([[0.6, 0.8]]), axis=1))
    0.3999999761581421
    """
    if axis is not None and dim is not None:
        raise ValueError("Cannot specify both 'axis' and 'dim'")
    axis = dim if axis is None else axis
    if axis is None:
        raise ValueError("You must specify argument `axis`.")
    labels = _required(labels, "labels").astype(jnp.float32)
    predictions = _required(predictions, "predictions").astype(jnp.float32)
    _compatible(predictions, labels)
    losses = 1 - jnp.sum(predictions * labels, axis=(axis,), keepdims=True)
    return compute_weighted_loss(losses, weights, scope or "cosine_distance_loss", loss_collection, reduction)


def _sigmoid_cross_entropy_with_logits(labels: jax.Array, logits: jax.Array) -> jax.Array:
    # TF's stable form: max(x, 0) - x * z + log(1 + exp(-|x|)).
    return jax.nn.relu(logits) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def sigmoid_cross_entropy(multi_class_labels: Any, logits: Any, weights: Any = 1.0, label_smoothing: float = 0,
                          scope: str | None = None, loss_collection: str | None = GraphKeys.LOSSES,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """Element-wise sigmoid cross entropy; ``label_smoothing`` moves labels towards 0.5:
    ``labels * (1 - label_smoothing) + 0.5 * label_smoothing``.

    >>> round(float(sigmoid_cross_entropy(jnp.array([1.0, 0.0]), jnp.array([0.0, 0.0]))), 6)
    0.693147
    """
    logits = _required(logits, "logits")
    labels = _required(multi_class_labels, "multi_class_labels").astype(logits.dtype)
    _compatible(logits, labels)
    if label_smoothing > 0:
        labels = labels * (1 - label_smoothing) + 0.5 * label_smoothing
    losses = _sigmoid_cross_entropy_with_logits(labels, logits)
    return compute_weighted_loss(losses, weights, scope or "sigmoid_cross_entropy_loss", loss_collection, reduction)


def softmax_cross_entropy(onehot_labels: Any, logits: Any, weights: Any = 1.0, label_smoothing: float = 0,
                          scope: str | None = None, loss_collection: str | None = GraphKeys.LOSSES,
                          reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """Softmax cross entropy over the last axis, one loss per example; ``label_smoothing`` mixes the
    one-hot labels with the uniform distribution: ``labels * (1 - s) + s / num_classes``. No gradient
    flows into the labels.

    >>> round(float(softmax_cross_entropy(jnp.array([[0, 0, 1]]), jnp.array([[10.0, 0.0, 0.0]]))), 4)   # TF's test
    10.0001
    """
    logits = _required(logits, "logits")
    labels = _required(onehot_labels, "onehot_labels").astype(logits.dtype)
    _compatible(logits, labels)
    if label_smoothing > 0:
        num_classes = jnp.asarray(labels.shape[-1], logits.dtype)
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    labels = jax.lax.stop_gradient(labels)
    losses = -jnp.sum(labels * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    return compute_weighted_loss(losses, weights, scope or "softmax_cross_entropy_loss", loss_collection, reduction)


def _squeeze_last(x: jax.Array) -> jax.Array:
    return jnp.squeeze(x, -1) if x.ndim and x.shape[-1] == 1 else x


def sparse_softmax_cross_entropy(labels: Any, logits: Any, weights: Any = 1.0, scope: str | None = None,
                                 loss_collection: str | None = GraphKeys.LOSSES,
                                 reduction: str = Reduction.SUM_BY_NONZERO_WEIGHTS) -> jax.Array:
    """Softmax cross entropy with integer class ``labels`` (``[batch]`` or ``[batch, 1]``).

    A concrete label outside ``[0, num_classes)`` raises TF's "Received a label value of ... which is
    outside the valid range"; under ``jit`` such a label gives a NaN loss (as TF on GPU).

    >>> logits = jnp.array([[10.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    >>> round(float(sparse_softmax_cross_entropy(jnp.array([[2], [0]]), logits)), 4)   # (10.0001 + 0.0001) / 2
    5.0001
    """
    labels = _required(labels, "labels")
    logits = _required(logits, "logits")
    weights = _required(weights, "weights")
    # TF's _remove_squeezable_dimensions with expected_rank_diff=1.
    if logits.ndim - labels.ndim == 0:
        labels = _squeeze_last(labels)
    if weights.ndim - labels.ndim == 1:
        weights = _squeeze_last(weights)
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"sparse_softmax_cross_entropy needs integer labels, got dtype {labels.dtype}")
    if labels.ndim != logits.ndim - 1:
        raise ValueError(
            "`labels.shape.rank` must equal `logits.shape.rank - 1`. Received: labels.shape="
            f"{labels.shape} of rank {labels.ndim} and logits.shape={logits.shape} of rank {logits.ndim}"
        )
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            "`labels.shape` must equal `logits.shape` except for the last dimension. Received: labels.shape="
            f"{labels.shape} and logits.shape={logits.shape}"
        )
    num_classes = logits.shape[-1]
    if not isinstance(labels, jax.core.Tracer):
        host = np.asarray(labels).reshape(-1)
        bad = np.flatnonzero((host < 0) | (host >= num_classes))
        if bad.size:
            raise ValueError(
                f"Received a label value of {int(host[bad[0]])} which is outside the valid range of [0, {num_classes})."
                f"  Label values: {' '.join(str(int(v)) for v in host)}"
            )
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, jnp.clip(labels, 0, num_classes - 1)[..., None], axis=-1)[..., 0]
    valid = (labels >= 0) & (labels < num_classes)
    losses = jnp.where(valid, -picked, jnp.asarray(jnp.nan, log_probs.dtype))
    return compute_weighted_loss(losses, weights, scope or "sparse_softmax_cross_entropy_loss", loss_collection,
                                 reduction)
