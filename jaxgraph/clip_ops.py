"""TF1's clipping and norms: ``clip_by_value``, ``clip_by_norm``, ``clip_by_global_norm``, ``global_norm``.

Every function accepts dense arrays and :class:`~jaxgraph.IndexedSlices`, and returns an
``IndexedSlices`` for an ``IndexedSlices`` (same indices, new values), so ``compute_gradients ->
clip -> apply_gradients`` keeps sparse gradients sparse. The list functions skip ``None`` entries and
keep them in place. The formulas are TF's (``tensorflow/python/ops/clip_ops.py``), in the same
algebraic form, so results agree with TF to float rounding:

* The norm of an ``IndexedSlices`` is TF's: the L2 norm of its ``values`` as stored. Repeated indices
  are not summed first (TF does not either), and the padding slots jaxgraph's gradients may carry hold
  zeros, so they add nothing. Only :func:`clip_by_average_norm`, which TF applies to the dense tensor,
  sums repeated indices first.
* ``clip_by_global_norm`` returns NaN everywhere when the global norm is ``inf`` or ``NaN`` (TF's
  signal that something went wrong), and leaves the tensors unchanged when it is ``0``.

>>> import jax.numpy as jnp
>>> from jaxgraph import IndexedSlices
>>> grads = [jnp.array([3.0, 4.0]), None, IndexedSlices(jnp.array([[12.0]]), jnp.array([1]), (3, 1))]
>>> clipped, norm = clip_by_global_norm(grads, 6.5)
>>> float(norm), clipped[0].tolist(), clipped[1], clipped[2].values.tolist()
(13.0, [1.5, 2.0], None, [[6.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.sparse import IndexedSlices
from jaxgraph.variables import Variable

__all__ = [
    "clip_by_average_norm",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "global_norm",
    "l2_loss",
]

Clippable = Any  # a dense array, an IndexedSlices, or (in lists) None


def _values(t: Any, what: str) -> jax.Array:
    """The array to work on: an IndexedSlices' values, or the dense array."""
    if isinstance(t, IndexedSlices):
        return t.values
    if isinstance(t, Variable):
        raise TypeError(f"{what} got a Variable ({t.name!r}); pass its array, `var.value`.")
    if t is None:
        raise ValueError(f"{what} got None; only the list functions skip None entries.")
    return jnp.asarray(t)


def _float_values(t: Any, what: str) -> jax.Array:
    values = _values(t, what)
    if not jnp.issubdtype(values.dtype, jnp.floating):
        raise TypeError(f"{what} needs floating point values, got dtype {values.dtype}")
    return values


def _like(t: Any, values: jax.Array) -> Any:
    """``values`` in the form of ``t``: an IndexedSlices with ``t``'s indices, or the array itself."""
    if isinstance(t, IndexedSlices):
        return IndexedSlices(values, t.indices, t.dense_shape)
    return values


def _check_list(t_list: Any) -> list[Any]:
    if not isinstance(t_list, Sequence) or isinstance(t_list, str):
        raise TypeError(f"`t_list` should be a sequence of tensors. Received {type(t_list)}.")
    return list(t_list)


def l2_loss(t: Any) -> jax.Array:
    """``tf.nn.l2_loss``: ``sum(t ** 2) / 2``, in ``t``'s dtype (TF's kernel form, ``sum(t * t * 0.5)``).

    >>> float(l2_loss(jnp.array([3.0, 4.0])))
    12.5
    """
    values = _float_values(t, "l2_loss")
    return jnp.sum(values * values * jnp.asarray(0.5, values.dtype))


def clip_by_value(t: Clippable, clip_value_min: Any, clip_value_max: Any, name: str | None = None) -> Clippable:
    """``tf.clip_by_value``: ``min(max(t, clip_value_min), clip_value_max)`` (TF applies the max last:
    ``maximum(minimum(t, max), min)``, so ``min > max`` gives ``min``, as TF).

    The bounds broadcast to ``t`` but may not enlarge it (TF: "Incompatible shapes").

    >>> clip_by_value(jnp.array([-10.0, 0.5, 10.0]), -1.0, 1.0).tolist()
    [-1.0, 0.5, 1.0]
    """
    del name
    values = _values(t, "clip_by_value")
    lo = jnp.asarray(clip_value_min)
    hi = jnp.asarray(clip_value_max)
    for bound in (lo, hi):
        if jnp.issubdtype(values.dtype, jnp.integer) and jnp.issubdtype(bound.dtype, jnp.floating):
            raise TypeError(
                f"Cannot clip an integer tensor ({values.dtype}) to float bounds; cast the tensor to float first."
            )
        try:
            out_shape = np.broadcast_shapes(values.shape, bound.shape)
        except ValueError:
            out_shape = None
        if out_shape != values.shape:
            raise ValueError(f"Incompatible shapes: {list(values.shape)} vs. {list(bound.shape)}")
    result = jnp.maximum(jnp.minimum(values, hi.astype(values.dtype)), lo.astype(values.dtype))
    return _like(t, result)


def _axes(axes: Any, ndim: int) -> tuple[int, ...] | None:
    if axes is None:
        return None
    axes = (axes,) if np.ndim(axes) == 0 else tuple(np.asarray(axes).reshape(-1).tolist())
    for a in axes:
        if not -ndim <= int(a) < ndim:
            raise ValueError(f"Invalid reduction dimension ({a} for input with {ndim} dimension(s))")
    return tuple(int(a) % ndim for a in axes)


def clip_by_norm(t: Clippable, clip_norm: Any, axes: Any = None, name: str | None = None) -> Clippable:
    """``tf.clip_by_norm``: ``t * clip_norm / max(norm(t, axes), clip_norm)``.

    ``axes`` (an int or a list) are the dimensions the L2 norm runs over (default: all), so
    ``axes=[1]`` clips each row of a matrix. A negative ``clip_norm`` counts as zero, as in TF. For an
    ``IndexedSlices`` the dimensions are those of its ``values`` (axis 0 runs over the slices).

    >>> clip_by_norm(jnp.array([[3.0, 4.0], [0.3, 0.4]]), 1.0, axes=[1]).tolist()
    [[0.6000000238418579, 0.800000011920929], [0.30000001192092896, 0.4000000059604645]]
    """
    del name
    values = _float_values(t, "clip_by_norm")
    if np.ndim(clip_norm) != 0:
        raise ValueError(f"clip_norm must be a scalar, got shape {np.shape(clip_norm)}")
    clip = jnp.maximum(jnp.asarray(clip_norm, values.dtype), jnp.zeros((), values.dtype))
    l2sum = jnp.sum(values * values, axis=_axes(axes, values.ndim), keepdims=True)
    pred = l2sum > 0
    # TF's safe form: the gradient of sqrt stays finite at a zero norm.
    l2sum_safe = jnp.where(pred, l2sum, jnp.ones_like(l2sum))
    l2norm = jnp.where(pred, jnp.sqrt(l2sum_safe), l2sum)
    return _like(t, values * clip / jnp.maximum(l2norm, clip))


def global_norm(t_list: Sequence[Clippable], name: str | None = None) -> jax.Array:
    """``tf.global_norm``: ``sqrt(sum(l2norm(t) ** 2 for t in t_list))``, ``None`` entries skipped.

    An ``IndexedSlices`` counts with its values as stored (TF's rule). Computed as TF does, from
    ``l2_loss`` of each entry (in its own dtype), summed and doubled. TF refuses a list of mixed float
    dtypes; here they are promoted to the widest. An empty list (or only ``None``) gives ``0.0``.

    >>> float(global_norm([jnp.array([3.0]), None, jnp.array([4.0])]))
    5.0
    """
    del name
    half_squared = [l2_loss(t) for t in _check_list(t_list) if t is not None]
    if not half_squared:
        return jnp.zeros((), jnp.float32)
    dtype = jnp.result_type(*half_squared)
    total = jnp.sum(jnp.stack([h.astype(dtype) for h in half_squared]))
    return jnp.sqrt(total * jnp.asarray(2.0, dtype))


def clip_by_global_norm(
    t_list: Sequence[Clippable], clip_norm: Any, use_norm: Any = None, name: str | None = None
) -> tuple[list[Clippable], jax.Array]:
    """``tf.clip_by_global_norm``: scale every entry by ``clip_norm / max(global_norm, clip_norm)``.

    Returns ``(list_clipped, global_norm)``: entries in the same order and form (``None`` stays
    ``None``; an ``IndexedSlices`` stays one), and the global norm (``use_norm`` if given, else
    :func:`global_norm` of ``t_list``). When the norm is ``inf`` or ``NaN`` every clipped value is
    ``NaN``, as TF signals the error.

    >>> clipped, norm = clip_by_global_norm([jnp.array([3.0, 4.0])], 10.0)   # under the limit: unchanged
    >>> clipped[0].tolist(), float(norm)
    ([3.0, 4.0], 5.0)
    """
    del name
    t_list = _check_list(t_list)
    if use_norm is None:
        use_norm = global_norm(t_list)
    use_norm = jnp.asarray(use_norm)
    if not jnp.issubdtype(use_norm.dtype, jnp.floating):
        use_norm = use_norm.astype(jnp.float32)
    one = jnp.ones((), use_norm.dtype)
    clip = jnp.asarray(clip_norm, use_norm.dtype)
    # (use_norm - use_norm) is NaN exactly when the norm is inf or NaN: TF's way of poisoning the result.
    scale = clip * jnp.minimum(one / use_norm, one / clip) + (use_norm - use_norm)
    clipped: list[Clippable] = []
    for t in t_list:
        if t is None:
            clipped.append(None)
            continue
        values = _float_values(t, "clip_by_global_norm")
        clipped.append(_like(t, values * scale.astype(values.dtype)))
    return clipped, use_norm


def clip_by_average_norm(t: Clippable, clip_norm: Any, name: str | None = None) -> Clippable:
    """``tf.clip_by_average_norm`` (TF1): clip so that ``norm(t) / size(t) <= clip_norm``.

    ``t * clip_norm * min(size(t) / norm(t), 1 / clip_norm)``, where ``size`` counts the elements of
    the dense tensor. TF converts an ``IndexedSlices`` to a dense tensor first; here the result stays an
    ``IndexedSlices`` that stands for that same dense tensor (its norm is taken after summing repeated
    indices, as the dense tensor's would be).

    >>> clip_by_average_norm(jnp.array([3.0, 4.0]), 1.0).tolist()   # norm 5 over 2 elements: 2.5 > 1
    [1.2000000476837158, 1.600000023841858]
    """
    del name
    values = _float_values(t, "clip_by_average_norm")
    if isinstance(t, IndexedSlices):
        summed = t.coalesce().values
        l2sum = jnp.sum(summed * summed)
        n_element = float(np.prod(t.dense_shape))
    else:
        l2sum = jnp.sum(values * values)
        n_element = float(values.size)
    n = jnp.asarray(n_element, jnp.float32).astype(values.dtype)
    clip = jnp.asarray(clip_norm, values.dtype)
    l2norm_inv = jax.lax.rsqrt(l2sum)
    return _like(t, values * clip * jnp.minimum(l2norm_inv * n, jnp.ones((), values.dtype) / clip))
