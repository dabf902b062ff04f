"""``lazy_optax(tx)``: an optax transformation that keeps ``IndexedSlices`` gradients sparse.

``lazy_optax(tx).update(updates, state, params)`` accepts update trees whose leaves are arrays or
:class:`~jaxgraph.IndexedSlices`. For each sparse leaf it sums repeated ids (TF's rule), gathers the
rows of the parameter and of every state leaf shaped like it (:func:`slot_owners`), runs ``tx.update``
once on the whole tree with those row blocks in place of the tables, and scatters the new state rows
back (one scatter per buffer, ``mode="drop"`` so the padding id ``dense_shape[0]`` is ignored). The
update it returns for a sparse leaf is an ``IndexedSlices`` of the new rows; apply it with
:func:`apply_updates`. Rows the gradient does not touch keep their value and their state bit for bit,
as in TF's lazy optimizers; counters such as ``count`` advance once per call; nothing of a table's size
is computed.

That is right only for a **row-separable** ``tx``: one whose update of a row reads only that row (plus
scalars such as the step count or a norm of the gradient). ``lazy_optax`` decides it on the traced
program of ``tx.update`` (:mod:`jaxgraph.train.row_separability`), so element-wise transformations
written by the user work as well as optax's own: ``sgd``, ``momentum`` (Nesterov too), ``adagrad``,
``rmsprop`` (centred, with momentum), ``adam``/``adamw`` (lazy: only touched rows decay, weight decay
included), ``scale``, ``scale_by_schedule``, ``scale_by_learning_rate``, ``inject_hyperparams`` and
``chain`` of these. ``clip_by_global_norm`` is accepted before them: a gradient's untouched rows are
zero, so the row block's norm is the dense norm. A transformation that reads other rows (LAMB's and
LARS's trust ratio, a mean over rows, a norm of the parameters) is refused with an error naming it, or,
with ``non_separable="densify"``, run on dense gradients after a one-time warning naming it.

>>> import jax.numpy as jnp, optax, jaxgraph as jg
>>> params = {"emb": jnp.ones((4, 2)), "w": jnp.ones(2)}
>>> tx = lazy_optax(optax.adagrad(1.0))
>>> state = tx.init(params)
>>> grads = {"emb": jg.IndexedSlices(jnp.ones((3, 2)), jnp.array([2, 0, 2]), (4, 2)), "w": jnp.ones(2)}
>>> updates, state = tx.update(grads, state, params)
>>> params = apply_updates(params, updates)
>>> [round(float(x), 3) for x in params["emb"][:, 0]]  # rows 1, 3 untouched; row 2's two ids summed
[0.047, 1.0, 0.012, 1.0]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from jax.extend import core as jcore

from jaxgraph.slot_owners import slot_owners
from jaxgraph.sparse import IndexedSlices
from jaxgraph.train.row_separability import NotRowSeparable, RowBlock, check_row_separable, transformation_name
from jaxgraph.variable_collections import path_to_name

__all__ = ["NotRowSeparable", "apply_updates", "dense_global_norm", "lazy_optax"]

NonSeparable = Literal["error", "densify"]
_MAX_PROGRAMS = 16


def _is_slices(x: Any) -> bool:
    return isinstance(x, IndexedSlices)


def _take_block(x: jax.Array, ids: jax.Array) -> jax.Array:
    # Padding ids (dense_shape[0]) read a real row through the clip; its result is dropped on scatter.
    return jnp.take(x, ids, axis=0, mode="clip")


def apply_updates(params: Any, updates: Any) -> Any:
    """``optax.apply_updates`` for update trees holding :class:`~jaxgraph.IndexedSlices`.

    A sparse update is scatter-added into its rows (padding ids dropped); a dense one is added. The
    result keeps each parameter's dtype, as optax's does. Under ``jit`` with the parameters donated,
    the scatter updates the table in place.

    >>> import jax.numpy as jnp, jaxgraph as jg
    >>> apply_updates({"t": jnp.zeros((3,))}, {"t": jg.IndexedSlices(jnp.ones(2), jnp.array([0, 3]), (3,))})
    {'t': Array([1., 0., 0.], dtype=float32)}
    """

    def apply(p: Any, u: Any) -> Any:
        if p is None:
            return None
        if isinstance(u, IndexedSlices):
            if tuple(u.dense_shape) != tuple(jnp.shape(p)):
                raise ValueError(f"IndexedSlices update of dense_shape {u.dense_shape} for a parameter "
                                 f"of shape {tuple(jnp.shape(p))}")
            return p.at[u.indices].add(u.values.astype(p.dtype), mode="drop")
        return jnp.asarray(p + u).astype(jnp.asarray(p).dtype)

    return jax.tree_util.tree_map(apply, params, updates, is_leaf=lambda x: x is None)


def dense_global_norm(tree: Any) -> jax.Array:
    """The L2 norm of all leaves of ``tree`` together, as ``optax.tree.norm`` of its dense form.

    An ``IndexedSlices`` counts as the dense array it stands for: repeated ids are summed first.
    (``optax.tree.norm`` itself must not be given such a tree: it would count the ids as numbers.)

    >>> import jax.numpy as jnp, jaxgraph as jg
    >>> float(dense_global_norm({"a": jg.IndexedSlices(jnp.array([[3.0], [1.0]]), jnp.array([1, 1]), (5, 1)),
    ...                    "b": jnp.array([3.0])}))
    5.0
    """
    leaves = jax.tree_util.tree_leaves(tree, is_leaf=_is_slices)
    dense = [_in_range(leaf).coalesce().values if isinstance(leaf, IndexedSlices) else leaf for leaf in leaves]
    return optax.tree.norm(dense)


class _RowProgram:
    """``tx.update`` traced on row blocks, checked, ready to run (cached per input signature)."""

    def __init__(self, closed: Any, out_tree: Any, error: NotRowSeparable | None) -> None:
        self.closed, self.out_tree, self.error = closed, out_tree, error


def lazy_optax(tx: optax.GradientTransformation,
               non_separable: NonSeparable = "error") -> optax.GradientTransformationExtraArgs:
    """Wrap ``tx`` so that ``IndexedSlices`` updates touch only their rows (see the module docstring).

    Args:
      tx: any ``optax.GradientTransformation``.
      non_separable: what to do when ``tx`` is not row-separable and a sparse update arrives:
        ``"error"`` raises :class:`NotRowSeparable` naming the transformation; ``"densify"`` warns once
        (naming it) and runs ``tx`` on the dense gradient.

    Returns:
      A ``GradientTransformationExtraArgs`` with ``tx``'s ``init`` and an ``update`` as described.
    """
    if non_separable not in ("error", "densify"):
        raise ValueError(f"non_separable must be 'error' or 'densify', got {non_separable!r}")
    inner = optax.with_extra_args_support(tx)
    programs: dict[Any, _RowProgram] = {}
    warned: set[str] = set()

    def update(updates: Any, state: Any, params: Any = None, **extra_args: Any) -> tuple[Any, Any]:
        leaves, treedef_ = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_is_slices)
        treedef: Any = treedef_
        sparse = [i for i, (_, u) in enumerate(leaves) if isinstance(u, IndexedSlices)]
        if not sparse:
            return inner.update(updates, state, params, **extra_args)
        names = [path_to_name(leaves[i][0]) if leaves[i][0] else "the parameter" for i in sparse]
        grads = [u for _, u in leaves]
        param_leaves = None if params is None else treedef.flatten_up_to(params)
        _check_shapes(grads, param_leaves, sparse, names)
        try:
            return _lazy_update(inner, programs, treedef, grads, state, param_leaves, sparse, names, extra_args)
        except NotRowSeparable as exc:
            if non_separable == "error":
                raise NotRowSeparable(exc.culprit, exc.reason + "; pass non_separable='densify' to "
                                      "apply it to dense gradients instead") from None
            message = (f"lazy_optax: {exc}; the IndexedSlices gradients of {', '.join(names)} are made "
                       "dense for it (a step now costs as much as the tables are large)")
            if message not in warned:
                warned.add(message)
                warnings.warn(message, stacklevel=2)
        dense = [u.to_dense() if isinstance(u, IndexedSlices) else u for u in grads]
        return inner.update(treedef.unflatten(dense), state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(inner.init, update)


def _check_shapes(grads: list[Any], param_leaves: list[Any] | None, sparse: list[int], names: list[str]) -> None:
    for i, name in zip(sparse, names, strict=True):
        g = grads[i]
        if len(g.dense_shape) == 0:
            raise ValueError(f"IndexedSlices update of {name} has a scalar dense_shape")
        if param_leaves is not None and tuple(jnp.shape(param_leaves[i])) != tuple(g.dense_shape):
            raise ValueError(f"IndexedSlices update of {name} has dense_shape {g.dense_shape}, but the "
                             f"parameter has shape {tuple(jnp.shape(param_leaves[i]))}")


def _in_range(g: IndexedSlices) -> IndexedSlices:
    """``g`` with ids read as ``to_dense`` reads them (negative ids count from the end) and ids outside
    the table turned into the padding id with zero values: a row block's untouched slots must be zero,
    or a norm over it would count rows that the dense gradient drops."""
    rows = g.dense_shape[0]
    ids = jnp.where(g.indices < 0, g.indices + rows, g.indices)
    valid = (ids >= 0) & (ids < rows)
    values = jnp.where(valid.reshape((-1,) + (1,) * (g.values.ndim - 1)), g.values, jnp.zeros((), g.values.dtype))
    return IndexedSlices(values, jnp.where(valid, ids, rows).astype(g.indices.dtype), g.dense_shape)


def _lazy_update(inner, programs, treedef, grads, state, param_leaves, sparse, names, extra_args):
    coalesced = {i: _in_range(grads[i]).coalesce() for i in sparse}
    ids = {i: coalesced[i].indices for i in sparse}
    block_of = {i: k for k, i in enumerate(sparse)}  # leaf position -> sparse leaf number

    state_leaves, state_def = jax.tree_util.tree_flatten(state)
    shapes = treedef.unflatten([jax.ShapeDtypeStruct(g.dense_shape, g.dtype) if isinstance(g, IndexedSlices)
                                else g for g in grads])
    owners = slot_owners(state, shapes if param_leaves is None else treedef.unflatten(param_leaves))
    state_blocks = [None if o not in block_of else block_of[o] for o in owners]

    upd_in = [coalesced[i].values if i in coalesced else g for i, g in enumerate(grads)]
    state_in = [x if k is None else _take_block(x, ids[sparse[k]]) for x, k in zip(state_leaves, state_blocks,
                                                                                   strict=True)]
    param_in = None if param_leaves is None else [
        _take_block(p, ids[i]) if i in ids else p for i, p in enumerate(param_leaves)]
    extra_leaves, extra_def = jax.tree_util.tree_flatten(extra_args)

    n_upd, n_state = len(upd_in), len(state_in)
    flat_in = upd_in + state_in + (param_in or []) + extra_leaves
    blocks: list[RowBlock | None] = (
        [RowBlock(block_of[i], True) if i in block_of else None for i in range(n_upd)]
        + [None if k is None else RowBlock(k, False) for k in state_blocks]
        + ([] if param_in is None else [RowBlock(block_of[i], False) if i in block_of else None
                                        for i in range(len(param_in))])
        + [None] * len(extra_leaves)
    )

    def run(*flat: Any) -> Any:
        u = treedef.unflatten(flat[:n_upd])
        s = state_def.unflatten(flat[n_upd:n_upd + n_state])
        rest = flat[n_upd + n_state:]
        p = None if param_in is None else treedef.unflatten(rest[:len(param_in)])
        e = extra_def.unflatten(rest[len(rest) - len(extra_leaves):] if extra_leaves else [])
        return inner.update(u, s, p, **e)

    program = _row_program(programs, run, flat_in, blocks, names, (treedef, state_def, extra_def))
    if program.error is not None:
        raise program.error
    out = jcore.jaxpr_as_fun(program.closed)(*flat_in)
    new_updates, new_state = jax.tree_util.tree_unflatten(program.out_tree, out)
    upd_out = jax.tree_util.tree_leaves(new_updates)
    result = []
    for i, u in enumerate(upd_out):
        if i in coalesced:
            dense_rows = grads[i].dense_shape[0]
            keep = (ids[i] < dense_rows).reshape((-1,) + (1,) * (u.ndim - 1))
            u = IndexedSlices(jnp.where(keep, u, jnp.zeros((), u.dtype)), ids[i], grads[i].dense_shape)
        result.append(u)
    new_leaves = jax.tree_util.tree_leaves(new_state)
    merged = [new if k is None else old.at[ids[sparse[k]]].set(new.astype(old.dtype), mode="drop")
              for old, new, k in zip(state_leaves, new_leaves, state_blocks, strict=True)]
    return treedef.unflatten(result), state_def.unflatten(merged)


def _row_program(programs: dict[Any, _RowProgram], run: Callable[..., Any], flat_in: list[Any],
                 blocks: list[RowBlock | None], names: list[str], structure: Any) -> _RowProgram:
    avals = tuple(_abstract(x) for x in flat_in)
    key = (structure, avals, tuple(blocks))
    cached = programs.get(key)
    if cached is not None:
        return cached
    deltas = [k + 1 for k in range(len(names))]
    larger = tuple(
        a if b is None else jax.ShapeDtypeStruct((a.shape[0] + deltas[b.leaf],) + a.shape[1:], a.dtype)
        for a, b in zip(avals, blocks, strict=True)
    )
    try:
        small, out_shape = jax.make_jaxpr(run, return_shape=True)(*avals)
    except NotRowSeparable:
        raise
    except Exception as exc:  # noqa: BLE001 - reported as the reason the rows cannot be updated alone
        return _RowProgram(None, None, NotRowSeparable(
            _raised_in(exc), f"it cannot run on row blocks of {', '.join(names)} ({_first_line(exc)})"))
    out_tree = jax.tree_util.tree_structure(out_shape)
    for got, want, what in zip(map(jax.tree_util.tree_structure, out_shape), structure[:2], ("updates", "state"),
                               strict=True):
        if got != want:
            raise ValueError(f"lazy_optax: the transformation returned {what} of structure {got}, expected {want}")
    error: NotRowSeparable | None = None
    try:
        large = jax.make_jaxpr(run)(*larger)
    except Exception as exc:  # noqa: BLE001
        error = NotRowSeparable(_raised_in(exc), f"it combines the rows of {', '.join(names)} with arrays "
                                f"of a fixed shape ({_first_line(exc)})")
    if error is None:
        try:
            out_rows = check_row_separable(small, large, blocks, names, deltas)
            _check_outputs(out_rows, out_shape, blocks, names)
        except NotRowSeparable as exc:
            error = exc
    program = _RowProgram(small, out_tree, error)
    if not any(isinstance(c, jax.core.Tracer) for c in small.consts):
        if len(programs) >= _MAX_PROGRAMS:  # eager calls with ever new row counts: keep the newest
            programs.pop(next(iter(programs)))
        programs[key] = program
    return program


def _abstract(x: Any) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(x)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=aval.weak_type)


def _check_outputs(out_rows: list[int | None], out_shape: Any, blocks: list[RowBlock | None],
                   names: list[str]) -> None:
    """Sparse leaves' updates and slots must come out as their rows; nothing else may hold rows."""
    upd_shape, state_shape = out_shape
    n_upd = len(jax.tree_util.tree_leaves(upd_shape))
    n_state = len(jax.tree_util.tree_leaves(state_shape))
    expected = [b.leaf if b is not None else None for b in blocks[:n_upd + n_state]]
    for pos, (got, want) in enumerate(zip(out_rows, expected, strict=True)):
        if got == want:
            continue
        what = "update" if pos < n_upd else "state leaf"
        if want is None and got is not None:
            raise NotRowSeparable("the transformation", f"a {what} that is not shaped like "
                                  f"{names[got]} depends on its rows")
        raise NotRowSeparable("the transformation", f"the {what} of {names[want or 0]} does not keep its rows")


def _raised_in(exc: BaseException) -> str:
    """The optax constructor whose ``update`` raised ``exc``."""
    frames = [tb.tb_frame.f_code.co_qualname for tb in _walk_tb(exc.__traceback__)]
    return transformation_name(reversed(frames))


def _walk_tb(tb: Any) -> list[Any]:
    out = []
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
