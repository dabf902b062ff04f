"""The machinery behind ``Optimizer.compute_gradients``: var_list, ``None`` detection, sparse capture.

How one call works (all of it happens while tracing; under ``jit`` it costs nothing per step):

1. **Discover** (``jax.eval_shape``): run the loss once abstractly with a tape that records every
   :func:`gather_rows` (what ``embedding_lookup`` uses) on a differentiated Variable: which variable,
   the ids' shape, the rows' shape.
2. **Connect** (``jax.make_jaxpr`` of the JVP): every differentiated variable's value is a tangent
   input, and every recorded lookup gets a zero "perturbation" added to its gathered rows, also a
   tangent input; the lookup itself reads the table through ``stop_gradient``. A backward liveness walk
   over the JVP program tells, structurally, whether the loss depends on a variable densely (its value
   tangent is live), only through lookups (a perturbation is live), or not at all (``None``, as TF).
3. **Differentiate** (``jax.value_and_grad``, once, returning the loss too): densely used variables are
   differentiated through their values; lookup-only variables are closed over and only their
   perturbations are differentiated, so the gradient is the gathered rows' gradient, returned with the
   ids as an :class:`~jaxgraph.IndexedSlices`. No array of the table's size is made for it.

A variable read both through lookups and densely gets one dense gradient, as TF converts.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from jaxgraph import summary as _summary
from jaxgraph.ids import check_ids
from jaxgraph.sparse import IndexedSlices
from jaxgraph.variable_collections import (
    named_variables,
    names_by_id,
    replace_values,
    resolved_name,
    trainable_variables,
)
from jaxgraph.variables import Variable

_VALID_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
_VALID_DTYPE_NAMES = "[tf.float16, tf.bfloat16, tf.float32, tf.float64]"


class _Tape:
    """Per-pass record of the lookups made on differentiated variables."""

    def __init__(self, watched: dict[int, str], mode: str, plan: dict[str, str] | None = None,
                 perturbations: Sequence[Any] | None = None) -> None:
        self.watched = watched  # id(Variable object handed to the loss) -> name
        self.mode = mode  # "discover", "connect" or "differentiate"
        self.plan = plan or {}  # name -> "dense" | "sparse" | "none" (differentiate pass)
        self.perturbations = perturbations
        self.lookups: list[tuple[str, tuple[int, ...], Any, tuple[int, ...], Any]] = []
        self.ids: list[jax.Array] = []
        self.count = 0

    def lookup(self, name: str, table: jax.Array, ids: jax.Array, padded: bool = False) -> jax.Array:
        k = self.count
        self.count += 1
        if self.mode == "discover":
            self.lookups.append((name, tuple(ids.shape), ids.dtype, tuple(table.shape[1:]), table.dtype))
            return _take(table, ids, padded)
        perturbations = self.perturbations or ()
        if k >= len(perturbations):
            raise RuntimeError(
                "The loss function made more embedding lookups than when it was first traced; "
                "compute_gradients needs a loss whose structure does not change between traces."
            )
        if self.mode == "connect":
            return _take(jax.lax.stop_gradient(table), ids, padded) + perturbations[k]
        kind = self.plan[name]
        if kind == "sparse":
            self.ids.append(ids)
            return _take(table, ids, padded) + perturbations[k]
        return _take(table, ids, padded)


_tape: contextvars.ContextVar[_Tape | None] = contextvars.ContextVar("jaxgraph_tape", default=None)


def _take(table: jax.Array, ids: jax.Array, padded: bool = False) -> jax.Array:
    if padded:
        return jnp.take(table, ids, axis=0, mode="fill", fill_value=0)
    return jnp.take(table, ids, axis=0)


def gather_rows(params: Variable | jax.Array, ids: Any, *, padded: bool = False) -> jax.Array:
    """Rows ``ids`` of one table: ``params[ids]``, shaped ``ids.shape + params.shape[1:]``.

    This is the one place where a lookup of a differentiated Variable is seen by
    ``compute_gradients``, which turns its gradient into an ``IndexedSlices``. Ids go through
    :func:`jaxgraph.ids.check_ids`: concrete ids out of range raise TF's ``indices[i] = v is not in
    [0, n)``; under ``jit`` an out-of-range id (negative included) reads zeros and its gradient is
    dropped, and :func:`jaxgraph.checked` raises TF's message instead.

    With ``padded=True`` the id ``params.shape[0]`` is allowed as a stand-in for "no row": it reads
    zeros, and in a captured gradient it becomes the padding index that every sparse update drops
    (a sharded lookup uses it for the ids a shard does not own).

    >>> import jax.numpy as jnp
    >>> gather_rows(jnp.arange(6.0).reshape(3, 2), jnp.array([2, 0])).tolist()
    [[4.0, 5.0], [0.0, 1.0]]
    """
    table = params.value if isinstance(params, Variable) else jnp.asarray(params)
    rows = table.shape[0]
    # Out-of-range ids come back as the padding index `rows`, which the padded gather reads as zeros.
    ids = check_ids(ids, rows, allow_padding=padded)
    if isinstance(params, Variable):
        tape = _tape.get()
        name = tape.watched.get(id(params)) if tape is not None else None
        if tape is not None and name is not None:
            return tape.lookup(name, table, ids, padded=True)
    return _take(table, ids, padded=True)


def resolve_var_list(params: Any, var_list: Sequence[Variable | str] | None) -> list[Variable]:
    """The named Variables of ``params`` that ``var_list`` designates (default: the trainable ones).

    The default skips trainable variables of non-float dtype (an int ``Variable([1, 2])`` is trainable
    by TF's default), as TF never differentiates them: its dtype check only sees variables with a
    gradient. Naming such a variable in ``var_list`` raises ``Invalid type``.
    """
    if var_list is None:
        selected = [v for v in trainable_variables(params) if v.dtype in _VALID_DTYPES]
    else:
        if isinstance(var_list, (Variable, str)):
            var_list = [var_list]
        by_name = {v.name: v for v in named_variables(params)}
        by_id = names_by_id(params)
        selected, seen = [], set()
        for entry in var_list:
            if isinstance(entry, Variable) and id(entry) in by_id:
                name = by_id[id(entry)]  # a leaf of the tree itself: its resolved name
            elif isinstance(entry, Variable):
                if entry.name is None:
                    raise ValueError(
                        f"var_list entry {entry!r} has no name: take var_list entries from the tree "
                        "(e.g. jaxgraph.trainable_variables(params)) or give names."
                    )
                name = entry.name
            elif isinstance(entry, str):
                name = entry
            else:
                raise TypeError(f"var_list entries must be Variables or names, got {entry!r}")
            if name not in by_name:
                raise ValueError(f"var_list entry {name!r} is not a variable of the parameter tree")
            if name not in seen:
                seen.add(name)
                selected.append(by_name[name])
    if not selected:
        raise ValueError("No variables to optimize.")
    for var in selected:
        if var.dtype not in _VALID_DTYPES:
            raise ValueError(f"Invalid type {var.dtype} for {var.name}, expected: {_VALID_DTYPE_NAMES}.")
    return selected


def _live_inputs(closed_jaxpr: Any) -> list[bool]:
    """Which inputs of a program can influence its outputs (backward liveness over its equations)."""
    jaxpr = closed_jaxpr.jaxpr
    live = {v for v in jaxpr.outvars if isinstance(v, jex_core.Var)}
    for eqn in reversed(jaxpr.eqns):
        if any(isinstance(o, jex_core.Var) and o in live for o in eqn.outvars):
            live.update(v for v in eqn.invars if isinstance(v, jex_core.Var))
    return [v in live for v in jaxpr.invars]


def _loss_dtype_check(loss: Any) -> None:
    if loss.dtype not in _VALID_DTYPES:
        raise ValueError(f"Invalid type {loss.dtype} for loss, expected: {_VALID_DTYPE_NAMES}.")


def value_and_gradients(
    loss_fn: Callable[..., Any],
    params: Any,
    variables: Sequence[Variable],
    grad_loss: Any = None,
    has_aux: bool = False,
) -> tuple[Any, list[jax.Array | IndexedSlices | None]]:
    """Loss value and one gradient per variable (dense array, ``IndexedSlices`` or ``None``).

    ``variables`` are named Variables of ``params`` (see :func:`resolve_var_list`). A non-scalar loss
    is differentiated as its sum, or as ``sum(loss * grad_loss)`` when ``grad_loss`` is given (TF's
    ``grad_ys``). With ``has_aux`` the loss function returns ``(loss, aux)`` and so does this.
    """
    names = [resolved_name(v) for v in variables]
    originals = {name: v.value for name, v in zip(names, variables, strict=True)}

    def run(values: dict[str, Any], tape: _Tape):
        tree = replace_values(params, values)
        # The Variable objects the loss will see, so lookups on the differentiated ones are recorded.
        tape.watched = {key: name for key, name in names_by_id(tree).items() if name in values}
        token = _tape.set(tape)
        try:
            with _summary.record_summaries() as summaries:
                out = loss_fn(tree)
        finally:
            _tape.reset(token)
        loss, aux = out if has_aux else (out, None)
        loss = jnp.asarray(loss)
        return loss, aux, summaries

    def objective(loss: jax.Array) -> jax.Array:
        _loss_dtype_check(loss)
        if grad_loss is None:
            return jnp.sum(loss)
        gl = jnp.asarray(grad_loss, dtype=loss.dtype)
        if gl.shape != loss.shape:
            raise ValueError(f"grad_loss has shape {gl.shape}, but the loss has shape {loss.shape}")
        return jnp.sum(loss * gl)

    # 1. Discover the lookups.
    discover = _Tape({}, "discover")
    jax.eval_shape(lambda vals: objective(run(vals, discover)[0]), originals)
    lookups = discover.lookups
    pert_shapes = [jax.ShapeDtypeStruct(ids_shape + row_shape, dtype)
                   for (_, ids_shape, _, row_shape, dtype) in lookups]

    # 2. Which inputs is the loss connected to, densely or through lookups?
    def connected_loss(values, perts):
        return objective(run(values, _Tape({}, "connect", perturbations=perts))[0])

    def tangent_out(primals, tangents):
        return jax.jvp(lambda p: connected_loss(*p), (primals,), (tangents,))[1]

    value_specs = {n: jax.ShapeDtypeStruct(jnp.shape(originals[n]), originals[n].dtype) for n in names}
    specs = (value_specs, pert_shapes)
    closed = jax.make_jaxpr(tangent_out)(specs, specs)
    live = _live_inputs(closed)
    n_primal = len(jax.tree_util.tree_leaves(specs))
    tangent_live = live[n_primal:]
    # tree_leaves of a dict orders by sorted key.
    sorted_names = sorted(names)
    dense_live = {n for n, is_live in zip(sorted_names, tangent_live[: len(names)], strict=True) if is_live}
    pert_live = tangent_live[len(names):]
    sparse_live = {lookups[k][0] for k, is_live in enumerate(pert_live) if is_live}

    plan = {n: "dense" if n in dense_live else "sparse" if n in sparse_live else "none" for n in names}
    sparse_slots = [k for k, (n, *_) in enumerate(lookups) if plan[n] == "sparse"]

    # 3. Differentiate once, returning the loss and the ids of every sparse lookup.
    def final(dense_values, perts):
        full_perts: list[Any] = [None] * len(lookups)
        for k, p in zip(sparse_slots, perts, strict=True):
            full_perts[k] = p
        tape = _Tape({}, "differentiate", plan=plan, perturbations=full_perts)
        values = dict(originals)
        values.update(dense_values)
        loss, aux, summaries = run(values, tape)
        return objective(loss), (loss, aux, tape.ids, summaries)

    dense_in = {n: originals[n] for n in names if plan[n] == "dense"}
    perts_in = [jnp.zeros(pert_shapes[k].shape, pert_shapes[k].dtype) for k in sparse_slots]
    (_, (loss, aux, ids_list, summaries)), (dense_grads, pert_grads) = jax.value_and_grad(
        final, argnums=(0, 1), has_aux=True
    )(dense_in, perts_in)

    for tag, value in summaries.items():
        _summary._emit(tag, jax.lax.stop_gradient(value))

    rows: dict[str, list[tuple[jax.Array, jax.Array]]] = {}
    for k, g, ids in zip(sparse_slots, pert_grads, ids_list, strict=True):
        name, _, _, row_shape, _ = lookups[k]
        rows.setdefault(name, []).append((g.reshape((-1,) + row_shape), ids.reshape(-1).astype(jnp.int32)))

    grads: list[jax.Array | IndexedSlices | None] = []
    for v, name in zip(variables, names, strict=True):
        kind = plan[name]
        if kind == "dense":
            grads.append(dense_grads[name])
        elif kind == "sparse":
            parts = rows[name]
            values = parts[0][0] if len(parts) == 1 else jnp.concatenate([p[0] for p in parts])
            indices = parts[0][1] if len(parts) == 1 else jnp.concatenate([p[1] for p in parts])
            grads.append(IndexedSlices(values, indices, v.shape))
        else:
            grads.append(None)
    return ((loss, aux) if has_aux else loss), grads
