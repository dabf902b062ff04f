"""Sparse gradients read from the traced program: every row gather of a differentiated array.

TF1 turned the gradient of any ``tf.gather`` of a variable into an ``IndexedSlices``. JAX has no such
notion: the gradient of ``table[ids]`` is a dense scatter into zeros of the table's size. This module
gets TF's result for any JAX program, whatever built it (plain indexing, ``jnp.take``, Equinox, Flax
NNX, :func:`jaxgraph.nn.embedding_lookup`), from the program itself:

1. **Trace** the function once (``jax.make_jaxpr``) with respect to the differentiated arrays.
2. **Analyse** the program: follow each differentiated input through harmless ops
   (``convert_element_type``, ``copy``, ``reduce_precision``, reshapes and squeezes that keep axis 0)
   and into nested programs (``jit``, ``checkpoint``, ``scan`` constants, ``cond`` operands) to its
   uses. A *row read* is a ``gather`` whose dimension numbers take whole rows (axis 0 indexed with
   slice size 1, every other axis taken whole, no batching dims), or a ``dynamic_slice`` of whole
   rows. Any other use that can reach the objective (arithmetic, a slice, a column gather, a
   transpose, a custom-derivative function given the whole array) is a dense use. Uses that cannot
   reach the objective (behind ``stop_gradient``, through integers, feeding only auxiliary outputs
   such as summaries) are ignored.
3. **Connect**: the JVP of the traced program tells which inputs the objective depends on at all;
   the others get ``None`` (TF's rule; decided structurally, never by comparing with zero).
4. **Differentiate** once: a small interpreter evaluates the traced program. Every row read of an
   array that only row reads use gets a zero *perturbation* added to the rows it reads; the array
   itself is a constant. ``jax.value_and_grad`` with respect to the dense arrays and the perturbations
   gives the dense gradients and the gathered rows' gradients, which become an ``IndexedSlices`` with
   the reads' normalised ids. The program runs once: its outputs come back with the gradients.

Ids follow the read's semantics: ids the program wrapped (numpy-style negative indexing) arrive
wrapped; ``mode="clip"`` gathers and ``dynamic_slice`` clamp, so the clamped id is used; an id out of
range under ``fill``/``drop`` or promise-in-bounds (whose gradient JAX drops) becomes the padding index
``dense_shape[0]``, which ``IndexedSlices.to_dense`` and every sparse update drop. No id is ever
negative. Nothing of the array's size is made for a sparse gradient.

Row reads inside ``scan`` bodies (the array a scan constant), ``jax.checkpoint`` / ``remat`` and
``cond`` branches are captured (the perturbations are threaded through the rebuilt construct); an
array passed whole to a ``custom_jvp`` / ``custom_vjp`` function, carried or sliced by a ``scan``, or
used in a ``while`` loop gets a dense gradient.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend import core as jex

from jaxgraph.sparse import IndexedSlices

__all__ = ["Gradient", "value_and_grad_flat"]

Gradient = jax.Array | IndexedSlices | None

_CALLS = {"pjit", "jit", "closed_call", "core_call"}
_REMATS = {"checkpoint", "remat2", "remat"}
_ELEMENTWISE_PASSTHROUGH = {"copy", "copy_p", "reduce_precision", "sharding_constraint"}


# -- the plan: what the interpreter changes ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Read:
    """A captured row read: its perturbation slot, the input it reads, and its shapes."""

    slot: int
    leaf: int
    eqn: Any  # the gather / dynamic_slice equation
    rows: int  # the array's axis-0 size (the padding index)
    stack: tuple[int, ...]  # lengths of the scans around it, outermost first
    ids_shape: tuple[int, ...]  # ids per evaluation (the gather's batch shape, or the window)

    @property
    def out_aval(self) -> Any:
        return self.eqn.outvars[0].aval


@dataclasses.dataclass(frozen=True)
class _Nested:
    """An equation holding programs with captured reads: ``call``, ``remat``, ``scan`` or ``cond``."""

    kind: str
    plans: tuple[dict[int, Any], ...]
    stack: tuple[int, ...]


def _is_var(v: Any) -> bool:
    return isinstance(v, jex.Var)


def _is_float(v: Any) -> bool:
    dtype = getattr(v.aval, "dtype", None)
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


def _inner(eqn: Any, key: str) -> tuple[Any, list[Any]]:
    program = eqn.params[key]
    if isinstance(program, jex.ClosedJaxpr):
        return program.jaxpr, list(program.consts)
    return program, []


def _call_key(eqn: Any) -> str:
    return "jaxpr" if "jaxpr" in eqn.params else "call_jaxpr"


def _relevant(jaxpr: Any, relevant_out: Sequence[bool]) -> set[Any]:
    """Float vars through which a gradient can flow to the relevant outputs (backward liveness that
    stops at ``stop_gradient`` and at non-float values)."""
    live = {v for v, r in zip(jaxpr.outvars, relevant_out, strict=True) if r and _is_var(v) and _is_float(v)}
    for eqn in reversed(jaxpr.eqns):
        if eqn.primitive.name == "stop_gradient":
            continue
        if any(_is_var(o) and o in live for o in eqn.outvars):
            live.update(v for v in eqn.invars if _is_var(v) and _is_float(v))
    return live


def _row_gather(eqn: Any) -> bool:
    operand = eqn.invars[0].aval
    dn = eqn.params["dimension_numbers"]
    sizes = tuple(eqn.params["slice_sizes"])
    shape = tuple(operand.shape)
    return (
        len(shape) >= 1
        and not dn.operand_batching_dims
        and not dn.start_indices_batching_dims
        and sizes[0] == 1
        and sizes[1:] == shape[1:]
        and 0 in dn.start_index_map
    )


def _row_window(eqn: Any) -> bool:
    shape = tuple(eqn.invars[0].aval.shape)
    sizes = tuple(eqn.params["slice_sizes"])
    return len(shape) >= 1 and sizes[1:] == shape[1:]


def _keeps_rows(eqn: Any) -> bool:
    """An op whose output's row ``i`` is the input's row ``i`` (possibly reshaped or converted)."""
    name = eqn.primitive.name
    if len(eqn.invars) != 1 or len(eqn.outvars) != 1:
        return False
    src, dst = eqn.invars[0].aval, eqn.outvars[0].aval
    if not (len(src.shape) >= 1 and len(dst.shape) >= 1 and src.shape[0] == dst.shape[0]):
        return False
    if name == "convert_element_type":
        return jnp.issubdtype(dst.dtype, jnp.inexact)
    if name == "reshape":
        return eqn.params.get("dimensions") is None
    if name == "squeeze":
        return 0 not in eqn.params["dimensions"]
    return name in _ELEMENTWISE_PASSTHROUGH


class _Analysis:
    """Walks a program and its nested programs: captured reads, and inputs used densely."""

    def __init__(self) -> None:
        self.reads: list[_Read] = []
        self.dense: set[int] = set()

    def walk(self, jaxpr: Any, tracked: dict[Any, int], relevant_out: Sequence[bool],
             stack: tuple[int, ...]) -> dict[int, Any]:
        relevant = _relevant(jaxpr, relevant_out)
        tracked = dict(tracked)
        plan: dict[int, Any] = {}
        for i, eqn in enumerate(jaxpr.eqns):
            uses = [(pos, tracked[v]) for pos, v in enumerate(eqn.invars) if _is_var(v) and v in tracked]
            if not uses or not any(_is_var(o) and o in relevant for o in eqn.outvars):
                continue  # no use of a tracked array, or one whose result cannot reach the objective
            action = self._use(eqn, uses, relevant, tracked, stack)
            if action is not None:
                plan[i] = action
        for v in jaxpr.outvars:
            if _is_var(v) and v in tracked and v in relevant:
                self.dense.add(tracked[v])  # the array itself is an output
        return plan

    def _read(self, eqn: Any, leaf: int, stack: tuple[int, ...], ids_shape: tuple[int, ...]) -> _Read:
        read = _Read(len(self.reads), leaf, eqn, int(eqn.invars[0].aval.shape[0]), stack, ids_shape)
        self.reads.append(read)
        return read

    def _use(self, eqn: Any, uses: list[tuple[int, int]], relevant: set[Any], tracked: dict[Any, int],
             stack: tuple[int, ...]) -> Any:
        name = eqn.primitive.name
        positions = [pos for pos, _ in uses]
        leaf = uses[0][1]
        if name == "gather" and positions == [0] and _row_gather(eqn):
            return self._read(eqn, leaf, stack, tuple(eqn.invars[1].aval.shape[:-1]))
        if name == "dynamic_slice" and positions == [0] and _row_window(eqn):
            return self._read(eqn, leaf, stack, (int(eqn.params["slice_sizes"][0]),))
        if positions == [0] and _keeps_rows(eqn):
            tracked[eqn.outvars[0]] = leaf
            return None
        out_relevant = [_is_var(o) and o in relevant for o in eqn.outvars]
        if name in _CALLS or name in _REMATS:
            inner, _ = _inner(eqn, _call_key(eqn))
            sub = self.walk(inner, {inner.invars[pos]: lf for pos, lf in uses}, out_relevant, stack)
            return _Nested("remat" if name in _REMATS else "call", (sub,), stack) if sub else None
        if name == "scan":
            if any(pos >= eqn.params["num_consts"] for pos in positions):
                self.dense.update(lf for _, lf in uses)  # carried or sliced along axis 0: a dense use
                return None
            body = eqn.params["jaxpr"].jaxpr
            sub = self.walk(body, {body.invars[pos]: lf for pos, lf in uses}, [True] * len(body.outvars),
                            stack + (int(eqn.params["length"]),))
            return _Nested("scan", (sub,), stack) if sub else None
        if name == "cond":
            plans = []
            for branch in eqn.params["branches"]:
                inner = branch.jaxpr
                plans.append(self.walk(inner, {inner.invars[pos - 1]: lf for pos, lf in uses}, out_relevant,
                                       stack))
            return _Nested("cond", tuple(plans), stack) if any(plans) else None
        self.dense.update(lf for _, lf in uses)
        return None


def _slots(plan: dict[int, Any]) -> list[_Read]:
    out: list[_Read] = []
    for action in plan.values():
        if isinstance(action, _Read):
            out.append(action)
        else:
            for sub in action.plans:
                out.extend(_slots(sub))
    return out


def _prune(plan: dict[int, Any], active: set[int]) -> dict[int, Any]:
    """The plan restricted to the reads in ``active`` (the others are evaluated as written)."""
    out: dict[int, Any] = {}
    for i, action in plan.items():
        if isinstance(action, _Read):
            if action.slot in active:
                out[i] = action
        else:
            subs = tuple(_prune(sub, active) for sub in action.plans)
            if any(subs):
                out[i] = dataclasses.replace(action, plans=subs)
    return out


# -- ids: what each read means ----------------------------------------------------------------------
def _in_range(x: jax.Array, lo: int, hi: int) -> jax.Array:
    info = np.iinfo(x.dtype)
    below = x < lo if lo > info.min else jnp.zeros(x.shape, bool)
    above = x > min(hi, info.max) if hi < info.max else jnp.zeros(x.shape, bool)
    return ~(below | above)


def _clamp(x: jax.Array, lo: int, hi: int) -> jax.Array:
    info = np.iinfo(x.dtype)
    return jnp.clip(x, max(lo, info.min), min(hi, info.max)).astype(jnp.int32)


def _read_ids(read: _Read, invals: Sequence[Any]) -> jax.Array:
    """The row each read slot stands for, as the read's own semantics define it (int32)."""
    eqn, rows = read.eqn, read.rows
    if eqn.primitive.name == "dynamic_slice":
        k = int(eqn.params["slice_sizes"][0])
        start = jnp.asarray(invals[1])
        return _clamp(start, 0, rows - k) + jnp.arange(k, dtype=jnp.int32)
    indices = invals[1]
    dn = eqn.params["dimension_numbers"]
    shape = eqn.invars[0].aval.shape
    sizes = eqn.params["slice_sizes"]
    ids = indices[..., dn.start_index_map.index(0)]
    if eqn.params["mode"] == lax.GatherScatterMode.CLIP:
        return _clamp(ids, 0, rows - 1)
    # Fill-or-drop and promise-in-bounds gathers: JAX's gradient drops an out-of-range window.
    valid = jnp.ones(ids.shape, bool)
    for j, dim in enumerate(dn.start_index_map):
        valid &= _in_range(indices[..., j], 0, int(shape[dim]) - int(sizes[dim]))
    return jnp.where(valid, ids.astype(jnp.int32), rows)


def _rows_of(read: _Read, grad: jax.Array, tail: tuple[int, ...], dtype: Any) -> jax.Array:
    """A perturbation's gradient as ``[n, *tail]`` rows in the order of the read's flattened ids."""
    eqn = read.eqn
    depth = len(read.stack)
    if eqn.primitive.name == "gather":
        offset = [depth + d for d in eqn.params["dimension_numbers"].offset_dims]
        grad = jnp.moveaxis(grad, offset, list(range(grad.ndim - len(offset), grad.ndim)))
    return grad.reshape((-1, *tail)).astype(dtype)


# -- the interpreter --------------------------------------------------------------------------------
def _bind(eqn: Any, invals: Sequence[Any]) -> list[Any]:
    params = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(params, tuple):  # older JAX: (subfuns, params)
        subfuns, params = params
        invals = [*subfuns, *invals]
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def _evaluate(jaxpr: Any, consts: Sequence[Any], args: Sequence[Any], plan: dict[int, Any],
              perts: dict[int, Any]) -> tuple[list[Any], dict[int, Any]]:
    """Run ``jaxpr``; reads in ``plan`` add their perturbation. Returns the outputs and each read's ids."""
    env: dict[Any, Any] = {}

    def read(v: Any) -> Any:
        return v.val if isinstance(v, jex.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    ids: dict[int, Any] = {}
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        action = plan.get(i)
        if action is None:
            outs = _bind(eqn, invals)
        elif isinstance(action, _Read):
            outs = [_bind(eqn, invals)[0] + perts[action.slot]]
            ids[action.slot] = _read_ids(action, invals)
        else:
            outs, sub_ids = _NESTED[action.kind](eqn, action, invals, perts)
            ids.update(sub_ids)
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars], ids


def _own(action: _Nested, perts: dict[int, Any]) -> dict[int, Any]:
    return {r.slot: perts[r.slot] for sub in action.plans for r in _slots(sub)}


def _eval_call(eqn: Any, action: _Nested, invals: list[Any], perts: dict[int, Any]):
    inner, consts = _inner(eqn, _call_key(eqn))
    return _evaluate(inner, consts, invals, action.plans[0], perts)


def _eval_remat(eqn: Any, action: _Nested, invals: list[Any], perts: dict[int, Any]):
    inner, consts = _inner(eqn, "jaxpr")

    def body(args: list[Any], own: dict[int, Any]):
        return _evaluate(inner, consts, args, action.plans[0], own)

    return jax.checkpoint(body, prevent_cse=eqn.params.get("prevent_cse", True),
                          policy=eqn.params.get("policy"))(invals, _own(action, perts))


def _eval_scan(eqn: Any, action: _Nested, invals: list[Any], perts: dict[int, Any]):
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    body = p["jaxpr"]
    consts, init, xs = invals[:n_consts], invals[n_consts:n_consts + n_carry], invals[n_consts + n_carry:]

    def step(carry: list[Any], x: tuple[list[Any], dict[int, Any]]):
        xs_t, own_t = x
        outs, ids = _evaluate(body.jaxpr, body.consts, [*consts, *carry, *xs_t], action.plans[0], own_t)
        return outs[:n_carry], (outs[n_carry:], ids)

    carry, (ys, ids) = lax.scan(step, init, (xs, _own(action, perts)), length=p["length"],
                                reverse=p["reverse"], unroll=p["unroll"])
    return [*carry, *ys], ids


def _eval_cond(eqn: Any, action: _Nested, invals: list[Any], perts: dict[int, Any]):
    branches = eqn.params["branches"]
    reads = [r for sub in action.plans for r in _slots(sub)]
    depth = len(action.stack)

    def make(b: int) -> Callable[..., Any]:
        def branch(ops: list[Any], own: dict[int, Any]):
            outs, ids = _evaluate(branches[b].jaxpr, branches[b].consts, ops, action.plans[b], own)
            # Reads of the branches not taken: padding ids (dropped), and their perturbations get zeros.
            full = {r.slot: ids[r.slot] if r.slot in ids else
                    jnp.full(r.stack[depth:] + r.ids_shape, r.rows, jnp.int32) for r in reads}
            return outs, full
        return branch

    return lax.switch(invals[0], [make(b) for b in range(len(branches))], invals[1:], _own(action, perts))


_NESTED = {"call": _eval_call, "remat": _eval_remat, "scan": _eval_scan, "cond": _eval_cond}


# -- connectivity ------------------------------------------------------------------------------------
def _live_inputs(jaxpr: Any, live_out: Sequence[bool]) -> list[bool]:
    """Which inputs of a program can influence its live outputs: backward liveness, per output through
    nested calls, scans and conds (so a nested program's primal output does not make its tangent
    inputs live), conservative (every input) for any other equation."""
    live = {v for v, r in zip(jaxpr.outvars, live_out, strict=True) if r and _is_var(v)}
    for eqn in reversed(jaxpr.eqns):
        outs = [_is_var(o) and o in live for o in eqn.outvars]
        if not any(outs):
            continue
        ins = _eqn_live_inputs(eqn, outs)
        live.update(v for v, r in zip(eqn.invars, ins, strict=True) if r and _is_var(v))
    return [v in live for v in jaxpr.invars]


def _eqn_live_inputs(eqn: Any, outs: list[bool]) -> list[bool]:
    name = eqn.primitive.name
    if name in _CALLS or name in _REMATS or name in ("custom_jvp_call", "custom_vjp_call"):
        key = "call_jaxpr" if "call_jaxpr" in eqn.params else "jaxpr"
        inner, _ = _inner(eqn, key)
        if len(inner.invars) == len(eqn.invars) and len(inner.outvars) == len(outs):
            return _live_inputs(inner, outs)
    if name == "scan":
        n_consts, n_carry = eqn.params["num_consts"], eqn.params["num_carry"]
        body = eqn.params["jaxpr"].jaxpr
        carry, ys = list(outs[:n_carry]), outs[n_carry:]
        while True:  # a live carry output makes the body's carry input live on the previous iteration
            ins = _live_inputs(body, carry + ys)
            new = [c or i for c, i in zip(carry, ins[n_consts:n_consts + n_carry], strict=True)]
            if new == carry:
                return ins
            carry = new
    if name == "cond":
        per_branch = [_live_inputs(b.jaxpr, outs) for b in eqn.params["branches"]]
        return [True] + [any(col) for col in zip(*per_branch, strict=True)]
    return [True] * len(eqn.invars)


def _connected(closed: Any, primals: Sequence[Any]) -> list[bool]:
    """For each input, whether the objective (output 0) depends on it: its tangent is live in the JVP."""
    fun = jex.jaxpr_as_fun(closed)

    def tangent_out(p: list[Any], t: list[Any]) -> Any:
        return jax.jvp(lambda *xs: fun(*xs)[0], tuple(p), tuple(t))[1]

    jvp = jax.make_jaxpr(tangent_out)(list(primals), list(primals)).jaxpr
    return _live_inputs(jvp, [True] * len(jvp.outvars))[len(primals):]


# -- the entry point -----------------------------------------------------------------------------------
def value_and_grad_flat(fn: Callable[..., tuple[Any, Any]], primals: Sequence[Any]) -> tuple[Any, list[Gradient]]:
    """Evaluate ``fn(*primals) -> (objective, outputs)`` once; return ``outputs`` and the gradient of the
    scalar ``objective`` with respect to each primal: a dense array, an :class:`IndexedSlices` (a primal
    read only through row reads), or ``None`` (the objective does not depend on it).

    >>> import jax.numpy as jnp
    >>> table, w = jnp.arange(8.0).reshape(4, 2), jnp.ones(2)
    >>> out, (g_table, g_w) = value_and_grad_flat(lambda t, w: (jnp.sum(t[jnp.array([3, 1])] @ w), None),
    ...                                           [table, w])
    >>> g_table.indices.tolist(), g_table.values.tolist(), g_w.tolist()
    ([3, 1], [[1.0, 1.0], [1.0, 1.0]], [8.0, 10.0])
    """
    primals = list(primals)
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(*primals)
    out_tree = jax.tree_util.tree_structure(out_shape)
    jaxpr = closed.jaxpr
    n_out = len(jaxpr.outvars)
    analysis = _Analysis()
    plan = analysis.walk(jaxpr, {v: i for i, v in enumerate(jaxpr.invars)}, [True] + [False] * (n_out - 1), ())
    connected = _connected(closed, primals)
    read_leaves = {r.leaf for r in analysis.reads}
    kinds: list[str | None] = []
    for i in range(len(primals)):
        if not connected[i]:
            kinds.append(None)
        elif i in analysis.dense or i not in read_leaves:
            kinds.append("dense")
        else:
            kinds.append("sparse")
    active = [r for r in analysis.reads if kinds[r.leaf] == "sparse"]
    plan = _prune(plan, {r.slot for r in active})
    dense_at = [i for i, k in enumerate(kinds) if k == "dense"]
    perts = {r.slot: jnp.zeros(r.stack + tuple(r.out_aval.shape), r.out_aval.dtype) for r in active}

    def run(dense_values: list[Any], perturbations: dict[int, Any]):
        args = list(primals)
        for i, value in zip(dense_at, dense_values, strict=True):
            args[i] = value
        outs, ids = _evaluate(jaxpr, closed.consts, args, plan, perturbations)
        return outs[0], (outs, ids)

    (_, (outs, ids)), (dense_grads, pert_grads) = jax.value_and_grad(run, argnums=(0, 1), has_aux=True)(
        [primals[i] for i in dense_at], perts
    )
    if active:
        # Order the loss's reads of a sparse table before the table's update. When the rows' gradient
        # does not depend on the rows read (a loss linear in them), nothing orders the forward gathers
        # before the optimizer's in-place scatter, and XLA copies the whole donated table (twice) to
        # keep the reads safe; an optimization_barrier does not help (the CPU backend expands it into
        # control edges first). A data dependency on the objective does: adding nan_to_num(loss) * 0
        # leaves every value as it was (a finite number times zero is zero) and costs one scalar op.
        zero = jnp.nan_to_num(jax.lax.stop_gradient(outs[0])) * 0
        pert_grads = {k: g + zero.astype(g.dtype) for k, g in pert_grads.items()}
    outputs = jax.tree_util.tree_unflatten(out_tree, outs)

    grads: list[Gradient] = [None] * len(primals)
    for i, g in zip(dense_at, dense_grads, strict=True):
        grads[i] = g
    for i, kind in enumerate(kinds):
        if kind != "sparse":
            continue
        shape, dtype = tuple(np.shape(primals[i])), primals[i].dtype
        mine = [r for r in active if r.leaf == i]
        values = [_rows_of(r, pert_grads[r.slot], shape[1:], dtype) for r in mine]
        indices = [ids[r.slot].reshape(-1) for r in mine]
        grads[i] = IndexedSlices(
            values[0] if len(values) == 1 else jnp.concatenate(values),
            indices[0] if len(indices) == 1 else jnp.concatenate(indices),
            shape,
        )
    return outputs[1], grads
