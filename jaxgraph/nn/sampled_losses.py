"""``nce_loss`` and ``sampled_softmax_loss``: TF1's ``_compute_sampled_logits`` and its two heads.

One shared set of ``num_sampled`` negatives per batch (TF's log-uniform sampler with ``unique=True``
unless ``sampled_values`` is given). The true and sampled ids are looked up with a single
:func:`~jaxgraph.nn.embedding_lookup` per table, so ``compute_gradients`` sees one lookup of the
weights and one of the biases and returns one ``IndexedSlices`` for each, as TF does.

>>> import jax, jax.numpy as jnp
>>> from jaxgraph.nn import nce_loss
>>> w, b = jnp.ones((10, 3)), jnp.zeros((10,))
>>> labels, inputs = jnp.array([[1], [4]]), jnp.ones((2, 3))
>>> nce_loss(w, b, labels, inputs, num_sampled=3, num_classes=10, key=jax.random.key(0)).shape
(2,)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.ids import check_ids
from jaxgraph.nn.candidate_sampling import compute_accidental_hits, log_uniform_candidate_sampler
from jaxgraph.nn.embedding import embedding_lookup
from jaxgraph.variables import Variable

__all__ = ["nce_loss", "sampled_softmax_loss"]

SampledValues = tuple[Any, Any, Any]


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _check_rows(weights: Any, biases: Any, num_classes: int) -> int:
    """The weights' row count, after checking that ``num_classes`` fits both tables (it is static)."""
    rows = {}
    for what, table in (("weights", weights), ("biases", biases)):
        shards = table if isinstance(table, (list, tuple)) else [table]
        shapes = [_shape(shard) for shard in shards]
        if any(len(shape) < 1 for shape in shapes):
            raise ValueError(f"{what} must have rank >= 1 to be looked up by row, got shapes {shapes}")
        rows[what] = sum(shape[0] for shape in shapes)
        if num_classes > rows[what]:
            raise ValueError(
                f"num_classes = {num_classes} is larger than the {rows[what]} rows of {what}: sampled ids "
                f"up to {num_classes - 1} would be out of range [0, {rows[what]})"
            )
    return rows["weights"]


def _compute_sampled_logits(
    weights: Any,
    biases: Any,
    labels: Any,
    inputs: Any,
    num_sampled: int,
    num_classes: int,
    num_true: int = 1,
    sampled_values: SampledValues | None = None,
    subtract_log_q: bool = True,
    remove_accidental_hits: bool = False,
    partition_strategy: str = "mod",
    key: Any = None,
    seed: int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """TF1's ``nn_impl._compute_sampled_logits``: ``(logits, labels)``, both ``[batch, T + S]``."""
    if isinstance(inputs, Variable):
        raise TypeError("inputs must be an array; read a Variable with `.value`")
    inputs = jnp.asarray(inputs)
    if inputs.ndim != 2:
        raise ValueError(f"inputs must be [batch, dim], got shape {inputs.shape}")
    if isinstance(labels, Variable):
        raise TypeError("labels must be an integer array, not a Variable")
    label_shape = _shape(labels)
    label_dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
    if not np.issubdtype(label_dtype, np.integer):
        raise TypeError(f"labels must be integers (int32 or int64), got dtype {label_dtype}")
    if len(label_shape) != 2 or label_shape[1] != num_true:
        raise ValueError(f"labels must be [batch, num_true={num_true}], got shape {label_shape}")
    if label_shape[0] != inputs.shape[0]:
        raise ValueError(f"labels and inputs disagree on the batch size: {label_shape[0]} vs {inputs.shape[0]}")
    if not isinstance(num_classes, (int, np.integer)) or isinstance(num_classes, bool) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive Python int (it fixes shapes), got {num_classes!r}")
    rows = _check_rows(weights, biases, int(num_classes))
    # Concrete labels outside [0, num_classes) raise TF's message; traced ones come back as num_classes.
    labels = check_ids(labels, num_classes, what="labels")

    if sampled_values is None:
        if key is None:
            raise ValueError(
                "pass key= (a jax PRNG key, fresh each step) to draw the negatives, or pass "
                "sampled_values=(sampled, true_expected_count, sampled_expected_count)"
            )
        # The sampler validates the concrete labels (range) before they are narrowed to int32.
        sampled_values = log_uniform_candidate_sampler(labels, num_true, num_sampled, True, num_classes, key, seed=seed)
    if len(sampled_values) != 3:
        raise ValueError("sampled_values must be (sampled_candidates, true_expected_count, sampled_expected_count)")
    sampled, true_expected_count, sampled_expected_count = (
        jax.lax.stop_gradient(jnp.asarray(v)) for v in sampled_values
    )
    sampled = sampled.astype(jnp.int32)
    if sampled.ndim != 1:
        raise ValueError(f"sampled candidates must be a vector, got shape {sampled.shape}")
    labels = labels.astype(jnp.int32)
    batch, dim = inputs.shape
    # The jit rule for a label outside [0, num_classes): its rows are looked up at an id past the table
    # (zeros, gradient dropped) and its log Q is taken as 0, so the column is a constant with no gradient.
    label_ok = labels < num_classes
    labels_flat = jnp.where(label_ok, labels, rows).reshape(-1)

    all_ids = jnp.concatenate([labels_flat, sampled], axis=0)
    all_w = embedding_lookup(weights, all_ids, partition_strategy=partition_strategy)
    if all_w.dtype != inputs.dtype:
        all_w = all_w.astype(inputs.dtype)
    if all_w.ndim != 2 or all_w.shape[1] != dim:
        raise ValueError(f"weights rows have shape {all_w.shape[1:]}, inputs rows have ({dim},)")
    n_true = batch * num_true
    true_w, sampled_w = all_w[:n_true], all_w[n_true:]
    sampled_logits = inputs @ sampled_w.T

    all_b = embedding_lookup(biases, all_ids, partition_strategy=partition_strategy)
    if all_b.dtype != inputs.dtype:
        all_b = all_b.astype(inputs.dtype)
    true_b, sampled_b = all_b[:n_true], all_b[n_true:]

    row_wise_dots = inputs[:, None, :] * true_w.reshape(batch, num_true, dim)
    true_logits = jnp.sum(row_wise_dots, axis=-1) + true_b.reshape(batch, num_true)
    sampled_logits = sampled_logits + sampled_b

    if remove_accidental_hits:
        acc_indices, acc_ids, acc_weights = compute_accidental_hits(labels, sampled, num_true)
        # TF's sparse_to_dense assigns (a repeated hit is still -FLT_MAX once); a min-scatter into
        # zeros does the same, and the padding entries (weight 0) change nothing.
        mask = jnp.zeros(sampled_logits.shape, sampled_logits.dtype)
        mask = mask.at[acc_indices, acc_ids].min(acc_weights.astype(sampled_logits.dtype))
        sampled_logits = sampled_logits + mask

    if subtract_log_q:
        true_log_q = jnp.where(label_ok, jnp.log(true_expected_count), 0.0)
        true_logits = true_logits - true_log_q.astype(inputs.dtype)
        sampled_logits = sampled_logits - jnp.log(sampled_expected_count).astype(inputs.dtype)

    out_logits = jnp.concatenate([true_logits, sampled_logits], axis=1)
    out_labels = jnp.concatenate([jnp.ones_like(true_logits) / num_true, jnp.zeros_like(sampled_logits)], axis=1)
    return out_logits, out_labels


def _sigmoid_cross_entropy_with_logits(labels: jax.Array, logits: jax.Array) -> jax.Array:
    # TF's stable form: max(x, 0) - x * z + log(1 + exp(-|x|)).
    return jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def nce_loss(weights: Any, biases: Any, labels: Any, inputs: Any, num_sampled: int, num_classes: int,
             num_true: int = 1, sampled_values: SampledValues | None = None, remove_accidental_hits: bool = False,
             partition_strategy: str = "mod", name: str = "nce_loss", key: Any = None) -> jax.Array:
    """Per-example noise-contrastive estimation loss, as ``tf.compat.v1.nn.nce_loss``.

    Args:
      weights: ``[num_classes, dim]`` table (a :class:`jaxgraph.Variable` or an array) or a list of
        shards of it, split by ``partition_strategy`` as :func:`~jaxgraph.nn.embedding_lookup`.
      biases: ``[num_classes]`` (or shards).
      labels: int ``[batch, num_true]``, in ``[0, num_classes)``. inputs: ``[batch, dim]``.
      num_sampled: negatives per batch (one set shared by every example).
      num_classes: the range of classes; at most the rows of ``weights`` and ``biases`` (a larger
        value is a ``ValueError``: it would sample ids past the tables).
      sampled_values: optional ``(sampled, true_expected_count, sampled_expected_count)``, e.g. from a
        candidate sampler; default: :func:`~jaxgraph.nn.log_uniform_candidate_sampler` with
        ``unique=True``. Gradients never flow into them.
      remove_accidental_hits: mask sampled classes equal to a true class (``-FLT_MAX`` logit).
        Default ``False``, as TF ("NCE"; ``True`` gives "sampled logistic").
      key: a JAX PRNG key, required unless ``sampled_values`` is given. name: unused.

    Returns:
      ``[batch]``: per example, the sum of the sigmoid cross entropies over the ``num_true`` true
      columns (target ``1 / num_true``) and the ``num_sampled`` sampled ones (target 0). TF's
      word2vec takes the mean over the batch.

    Concrete labels outside ``[0, num_classes)`` raise TF's ``indices[i] = v is not in [0, n)``
    (:class:`~jaxgraph.errors.InvalidArgumentError`). Under ``jit`` such a label's column reads zero
    rows and ``log Q = 0``: a constant with no gradient into any row (see :mod:`jaxgraph.ids`);
    :func:`jaxgraph.checked` raises the message instead.

    >>> import jax, jax.numpy as jnp
    >>> w, b = jnp.zeros((5, 2)), jnp.zeros((5,))
    >>> sv = (jnp.array([2, 3]), jnp.ones((1, 1)), jnp.ones((2,)))  # Q = 1: log Q = 0
    >>> loss = nce_loss(w, b, jnp.array([[0]]), jnp.ones((1, 2)), 2, 5, sampled_values=sv)
    >>> round(float(loss[0]), 6)  # three columns of sxe(0, z) = log 2
    2.079442
    """
    del name
    logits, targets = _compute_sampled_logits(
        weights, biases, labels, inputs, num_sampled, num_classes, num_true=num_true, sampled_values=sampled_values,
        subtract_log_q=True, remove_accidental_hits=remove_accidental_hits, partition_strategy=partition_strategy,
        key=key)
    return jnp.sum(_sigmoid_cross_entropy_with_logits(targets, logits), axis=1)


def sampled_softmax_loss(weights: Any, biases: Any, labels: Any, inputs: Any, num_sampled: int, num_classes: int,
                         num_true: int = 1, sampled_values: SampledValues | None = None,
                         remove_accidental_hits: bool = True, partition_strategy: str = "mod",
                         name: str = "sampled_softmax_loss", key: Any = None, seed: int | None = None) -> jax.Array:
    """Per-example sampled softmax loss, as ``tf.compat.v1.nn.sampled_softmax_loss``.

    Arguments as :func:`nce_loss`, except that ``remove_accidental_hits`` defaults to ``True`` (as in
    TF) and ``seed`` (optional) is folded into ``key``. Returns ``[batch]``: the softmax cross entropy
    of the ``[batch, num_true + num_sampled]`` logits against targets ``1 / num_true`` on the true
    columns.

    >>> import jax, jax.numpy as jnp
    >>> w, b = jnp.zeros((5, 2)), jnp.zeros((5,))
    >>> sv = (jnp.array([2, 3]), jnp.ones((1, 1)), jnp.ones((2,)))
    >>> loss = sampled_softmax_loss(w, b, jnp.array([[0]]), jnp.ones((1, 2)), 2, 5, sampled_values=sv)
    >>> round(float(loss[0]), 6)  # log 3: three equal logits
    1.098612
    """
    del name
    logits, targets = _compute_sampled_logits(
        weights, biases, labels, inputs, num_sampled, num_classes, num_true=num_true, sampled_values=sampled_values,
        subtract_log_q=True, remove_accidental_hits=remove_accidental_hits, partition_strategy=partition_strategy,
        key=key, seed=seed)
    targets = jax.lax.stop_gradient(targets)
    log_probs = jax.nn.log_softmax(logits, axis=1)
    # Targets are exactly 0 on masked columns, and -FLT_MAX logits stay finite in log_softmax, so no
    # 0 * inf appears.
    return -jnp.sum(targets * log_probs, axis=1)
