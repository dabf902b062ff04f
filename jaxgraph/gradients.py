"""Gradients with TF1's sparse rows: ``compute_gradients``' machinery, and ``value_and_grad`` / ``grad``.

Both differentiate through :mod:`jaxgraph.capture`, which reads the traced program: an array that the
loss reads only through row gathers (``x[ids]``, ``jnp.take``, ``x.at[ids].get()``, ``embedding_lookup``,
in any model) gets an :class:`~jaxgraph.IndexedSlices` gradient; an array read any other way gets a
dense one, as TF converts; an array the loss does not depend on gets ``None`` from
:func:`value_and_gradients` (TF) and zeros from :func:`value_and_grad` (JAX).

>>> import jax, jax.numpy as jnp
>>> params = {"emb": jnp.arange(8.0).reshape(4, 2), "w": jnp.ones(2)}
>>> loss, grads = value_and_grad(lambda p, ids: jnp.sum(p["emb"][ids] @ p["w"]))(params, jnp.array([3, 1]))
>>> float(loss), grads["emb"].indices.tolist(), grads["w"].tolist()
(18.0, [3, 1], [8.0, 10.0])
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph import capture, summary
from jaxgraph.ids import check_ids
from jaxgraph.variable_collections import resolved_name
from jaxgraph.variable_index import VariableIndex, check_differentiable_dtype
from jaxgraph.variables import Variable

__all__ = ["gather_rows", "grad", "resolve_var_list", "value_and_grad", "value_and_gradients"]


def gather_rows(params: Variable | jax.Array, ids: Any, *, padded: bool = False) -> jax.Array:
    """Rows ``ids`` of one table: ``params[ids]``, shaped ``ids.shape + params.shape[1:]``.

    A plain row gather (``jnp.take``): ``compute_gradients`` captures it as it captures any row gather
    of a differentiated array. Ids go through :func:`jaxgraph.ids.check_ids`: concrete ids out of range
    raise TF's ``indices[i] = v is not in [0, n)``; under ``jit`` an out-of-range id (negative included)
    reads zeros and its gradient row carries the padding index (dropped by every update), and
    :func:`jaxgraph.checked` raises TF's message instead.

    With ``padded=True`` the id ``params.shape[0]`` is allowed as a stand-in for "no row": it reads
    zeros, and in a captured gradient it becomes the padding index that every sparse update drops
    (a sharded lookup uses it for the ids a shard does not own).

    >>> import jax.numpy as jnp
    >>> gather_rows(jnp.arange(6.0).reshape(3, 2), jnp.array([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    table = params.value if isinstance(params, Variable) else jnp.asarray(params)
    # Out-of-range ids come back as the padding index `rows`, which the fill-mode gather reads as zeros
    # and the captured gradient carries as the padding index.
    ids = check_ids(ids, table.shape[0], allow_padding=padded)
    return jnp.take(table, ids, axis=0, mode="fill", fill_value=0)


def resolve_var_list(params: Any, var_list: Sequence[Any] | None) -> list[Variable]:
    """The named Variables of ``params`` (a tree or its index) that ``var_list`` designates (default:
    the trainable floating-point variables; see :meth:`VariableIndex.select`)."""
    return [entry.variable for entry in VariableIndex.of(params).select(var_list)]


def _objective(loss: jax.Array, grad_loss: Any) -> jax.Array:
    check_differentiable_dtype(loss.dtype, "loss")
    if grad_loss is None:
        return jnp.sum(loss)
    gl = jnp.asarray(grad_loss, dtype=loss.dtype)
    if gl.shape != loss.shape:
        raise ValueError(f"grad_loss has shape {gl.shape}, but the loss has shape {loss.shape}")
    return jnp.sum(loss * gl)


def value_and_gradients(
    loss_fn: Callable[..., Any],
    params: Any,
    variables: Sequence[Variable],
    grad_loss: Any = None,
    has_aux: bool = False,
    return_updates: bool = False,
) -> tuple[Any, ...]:
    """Loss value and one gradient per variable (dense array, ``IndexedSlices`` or ``None``).

    ``params`` is the tree or its :class:`VariableIndex`; ``variables`` are named Variables of it (see
    :func:`resolve_var_list`). The loss function receives the tree with those variables' values
    (frozen plain arrays as plain arrays). A non-scalar loss is differentiated as its sum, or as
    ``sum(loss * grad_loss)`` when ``grad_loss`` is given (TF's ``grad_ys``). With ``has_aux`` the
    loss function returns ``(loss, aux)`` and so does this. Summaries the loss records are passed on to
    the enclosing :func:`jaxgraph.summary.record_summaries` block. With ``return_updates`` a third
    result holds ``{name: value}`` for the other variables the loss changed in place (Flax NNX modules
    are mutable: batch statistics, RNG counts).
    """
    index = VariableIndex.of(params)
    names = [resolved_name(v) for v in variables]
    primals = [index.by_name[name].value for name in names]

    def fn(*values: Any):
        tree = index.loss_tree(dict(zip(names, values, strict=True)))
        with summary.record_summaries() as summaries:
            out = loss_fn(tree)
        loss, aux = out if has_aux else (out, None)
        loss = jnp.asarray(loss)
        updates = index.changed_in_place(tree, exclude=names)
        return _objective(loss, grad_loss), (loss, aux, summaries, updates)

    (loss, aux, summaries, updates), grads = capture.value_and_grad_flat(fn, primals)
    for tag, value in summaries.items():
        summary.write(tag, jax.lax.stop_gradient(value))
    value = (loss, aux) if has_aux else loss
    return (value, grads, updates) if return_updates else (value, grads)


def _float0_zeros(leaf: Any) -> np.ndarray:
    return np.zeros(np.shape(leaf), dtype=jax.dtypes.float0)


def value_and_grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    *,
    allow_int: bool = False,
) -> Callable[..., tuple[Any, Any]]:
    """``jax.value_and_grad`` with TF1's sparse rows: an array ``fun`` reads only through row gathers
    gets an :class:`~jaxgraph.IndexedSlices` gradient instead of a dense one.

    Same signature and behaviour as ``jax.value_and_grad``: the gradient has the structure of the
    differentiated arguments (a jaxgraph Variable's or NNX variable's gradient sits in its node), a
    leaf ``fun`` does not depend on gets zeros, ``fun`` must return a real scalar, integer inputs need
    ``allow_int=True`` (they get ``float0`` zeros). ``fun`` is traced once per call, runs once, and
    the whole works under ``jit`` (with donation) and ``vmap``.

    >>> import jax, jax.numpy as jnp
    >>> emb = jnp.zeros((1000, 4))
    >>> value, g = jax.jit(value_and_grad(lambda e, ids: jnp.sum(jnp.take(e, ids, axis=0) + 1.0)))(
    ...     emb, jnp.array([7, 7, 2]))
    >>> float(value), g.indices.tolist(), g.values.shape, g.dense_shape
    (12.0, [7, 7, 2], (3, 4), (1000, 4))
    """

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
        nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
        for n in nums:
            if not -len(args) <= n < len(args):
                raise TypeError(
                    f"differentiating with respect to argnums={argnums} requires at least {n + 1} positional "
                    f"arguments to be passed by the caller, but got only {len(args)} positional arguments."
                )
        leaves, treedef = jax.tree_util.tree_flatten(tuple(args[n] for n in nums))
        at: list[int] = []
        for k, leaf in enumerate(leaves):
            dtype = jnp.result_type(leaf)
            if jnp.issubdtype(dtype, jnp.inexact):
                at.append(k)
            elif not allow_int:
                raise TypeError(
                    "grad requires real- or complex-valued inputs (input dtype that is a sub-dtype of "
                    f"np.inexact), but got {jnp.dtype(dtype).name}. If you want to use Boolean- or "
                    "integer-valued inputs, use vjp or set allow_int to True."
                )

        def fn(*values: Any):
            new_leaves = list(leaves)
            for k, value in zip(at, values, strict=True):
                new_leaves[k] = value
            call_args = list(args)
            for n, arg in zip(nums, jax.tree_util.tree_unflatten(treedef, new_leaves), strict=True):
                call_args[n] = arg
            out = fun(*call_args, **kwargs)
            value, aux = out if has_aux else (out, None)
            value = jnp.asarray(value)
            if value.shape != ():
                raise TypeError(f"Gradient only defined for scalar-output functions. Output had shape: {value.shape}.")
            if not jnp.issubdtype(value.dtype, jnp.floating):
                raise TypeError(
                    "grad requires real-valued outputs (output dtype that is a sub-dtype of np.floating), "
                    f"but got {value.dtype.name}."
                )
            return value, (value, aux)

        (value, aux), grads = capture.value_and_grad_flat(fn, [jnp.asarray(leaves[k]) for k in at])
        out_leaves: list[Any] = [_float0_zeros(leaf) for leaf in leaves]
        for k, g in zip(at, grads, strict=True):
            out_leaves[k] = jnp.zeros_like(jnp.asarray(leaves[k])) if g is None else g
        g_args = jax.tree_util.tree_unflatten(treedef, out_leaves)
        g_out = g_args[0] if isinstance(argnums, int) else g_args
        return ((value, aux) if has_aux else value), g_out

    return wrapper


def grad(
    fun: Callable[..., Any],
    argnums: int | Sequence[int] = 0,
    has_aux: bool = False,
    *,
    allow_int: bool = False,
) -> Callable[..., Any]:
    """``jax.grad`` with TF1's sparse rows (see :func:`value_and_grad`); with ``has_aux`` it returns
    ``(gradient, aux)``.

    >>> import jax.numpy as jnp
    >>> g = grad(lambda x: jnp.sum(x.at[jnp.array([0, 2])].get() ** 2))(jnp.arange(6.0).reshape(3, 2))
    >>> g.indices.tolist(), g.to_dense().tolist()
    ([0, 2], [[0.0, 2.0], [0.0, 0.0], [8.0, 10.0]])
    """
    value_and_grad_f = value_and_grad(fun, argnums, has_aux, allow_int=allow_int)

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        value, g = value_and_grad_f(*args, **kwargs)
        return (g, value[1]) if has_aux else g

    return wrapper
