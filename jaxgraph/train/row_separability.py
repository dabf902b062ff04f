"""Is an update rule row-separable? Decided on its traced program, not on its name.

A rule is row-separable for a sparse parameter when the new value of row ``i`` (of the update and of
every state leaf shaped like the parameter) reads only row ``i`` of the gradient, the parameter and
that state, plus values that do not depend on rows. Only then may it run on the gathered rows of an
``IndexedSlices`` gradient (TF's lazy sparse update) and leave the other rows alone.

How it is decided, for a program traced twice (:func:`jax.make_jaxpr`), once with each sparse leaf's
row block of ``n`` rows and once with ``n + delta`` rows (a different ``delta`` per leaf):

* **Which axes are rows.** An axis whose size differs between the two programs is a row axis; the
  difference tells which leaf's. A value with two row axes pairs rows with each other: refused.
* **No op moves values between rows.** Element-wise ops, broadcasts, transposes and reshapes that keep
  the row axis, and reductions, slices, sorts, cumulative sums ... along other axes are fine. Any op
  that acts along a row axis (reverse, shift, gather, scatter, sort, ...) is refused, naming it.
* **Sums over rows are exact only of values that are zero at the untouched rows.** The program tracks,
  for each row-shaped value, the value it holds at a row whose gradient is zero, when that is a known
  constant (a gradient row holds 0; ``g * g`` holds 0; ``g * lr + p`` is unknown). A reduction over rows
  is accepted only when that value is the reduction's identity (0 for a sum, ``True`` for ``all``):
  then the rows the step does not touch add nothing, so the row block gives the dense result.
  ``optax.clip_by_global_norm`` passes; a norm of the parameters (LARS, LAMB's trust ratio) does not.
* **The number of rows is not read.** A literal that differs between the two programs (``jnp.mean``
  over rows divides by ``n``) or a program whose structure changes with ``n`` is refused.

>>> import jax, jax.numpy as jnp
>>> def rule(g, p):  # an element-wise update: separable
...     return g * 0.1 + p * 0.01
>>> small = jax.make_jaxpr(rule)(jnp.zeros((3, 2)), jnp.zeros((3, 2)))
>>> large = jax.make_jaxpr(rule)(jnp.zeros((4, 2)), jnp.zeros((4, 2)))
>>> ins = [RowBlock(0, zero_untouched=True), RowBlock(0, zero_untouched=False)]
>>> rows = check_row_separable(small, large, ins, leaf_names=["emb"], deltas=[1])
>>> rows == [0]
True
>>> norm = lambda g, p: g / jnp.sum(p * p)  # reads every row of p
>>> small = jax.make_jaxpr(norm)(jnp.zeros((3, 2)), jnp.zeros((3, 2)))
>>> large = jax.make_jaxpr(norm)(jnp.zeros((4, 2)), jnp.zeros((4, 2)))
>>> check_row_separable(small, large, ins, leaf_names=["emb"], deltas=[1])
Traceback (most recent call last):
...
jaxgraph.train.row_separability.NotRowSeparable: ... reduce_sum reduces over the rows of emb a value ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore
from jax.extend import source_info_util

__all__ = ["NotRowSeparable", "RowBlock", "check_row_separable", "transformation_name"]


class NotRowSeparable(ValueError):
    """An update rule reads other rows, or the number of rows, to update a row.

    Attributes:
      culprit: the optax constructor (``"scale_by_trust_ratio"``) or source location responsible.
      reason: what the program does, in words.
    """

    def __init__(self, culprit: str, reason: str) -> None:
        super().__init__(f"{culprit} is not row-separable: {reason}")
        self.culprit = culprit
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RowBlock:
    """A program input holding the gathered rows of sparse leaf ``leaf`` along axis 0.

    ``zero_untouched``: the dense counterpart is zero at rows the step does not touch (a gradient).
    """

    leaf: int
    zero_untouched: bool


# Ops whose output element depends only on the operand elements at the same position.
_ELEMENTWISE = frozenset("""
    abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp clz complex conj
    convert_element_type copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor
    ge gt igamma igammac imag integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg
    nextafter not or population_count pow real reduce_precision rem round rsqrt select_n shift_left
    shift_right_arithmetic shift_right_logical sign sin sinh sqrt square stop_gradient sub tan tanh
    xor optimization_barrier
""".split())
# Reductions: the identity, so that rows holding it add nothing to the result.
_REDUCTIONS = {"reduce_sum": 0, "reduce_prod": 1, "reduce_max": -np.inf, "reduce_min": np.inf,
               "reduce_and": True, "reduce_or": False}
# Ops that rearrange an array without changing its values.
_KEEP_UNIFORM = frozenset({"broadcast_in_dim", "reshape", "transpose", "squeeze", "rev", "slice"})
_CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint",
                    "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr"})
_UNKNOWN = None


@dataclasses.dataclass(frozen=True)
class _Fact:
    row: tuple[int, int] | None  # (sparse leaf, axis) of a row-shaped value
    at_untouched: Any  # row values: the (known) value at untouched rows; others: the known value if uniform


class _Walk:
    """One analysis: the two programs walked in lockstep."""

    def __init__(self, leaf_names: Sequence[str], deltas: Sequence[int], sizes: Sequence[int]) -> None:
        self.leaf_names = list(leaf_names)
        self.deltas = list(deltas)
        self.sizes = list(sizes)
        self.stack: list[Any] = []  # enclosing equations, for error locations

    # -- errors -----------------------------------------------------------------------------------
    def fail(self, reason: str) -> NotRowSeparable:
        return NotRowSeparable(_culprit(self.stack), f"{reason} (at {_location(self.stack)})")

    def name(self, row: tuple[int, int]) -> str:
        return self.leaf_names[row[0]]

    # -- which axis is a row axis -----------------------------------------------------------------
    def row_of(self, v1: Any, v2: Any) -> tuple[int, int] | None:
        s1, s2 = getattr(v1.aval, "shape", ()), getattr(v2.aval, "shape", ())
        if len(s1) != len(s2):
            raise self.fail("its program changes with the number of rows")
        axes = [(a, d2 - d1) for a, (d1, d2) in enumerate(zip(s1, s2, strict=True)) if d1 != d2]
        if not axes:
            return None
        if len(axes) > 1:
            raise self.fail(f"a value of shape {tuple(s1)} pairs every row with every other row")
        axis, delta = axes[0]
        for leaf, (d, n) in enumerate(zip(self.deltas, self.sizes, strict=True)):
            if delta == d and s1[axis] == n:
                return (leaf, axis)
        raise self.fail(f"a value of shape {tuple(s1)} merges or resizes the rows")

    # -- programs ---------------------------------------------------------------------------------
    def run(self, j1: Any, j2: Any, consts1: Sequence[Any], consts2: Sequence[Any],
            in_facts: Sequence[_Fact]) -> list[_Fact]:
        if len(j1.eqns) != len(j2.eqns) or len(j1.invars) != len(j2.invars):
            raise self.fail("its program changes with the number of rows")
        env: dict[Any, _Fact] = {}
        for v1, v2, c1, c2 in zip(j1.constvars, j2.constvars, consts1, consts2, strict=True):
            if not _same_constant(c1, c2):
                raise self.fail("it captures an array that depends on the number of rows")
            env[v1] = _Fact(self.row_of(v1, v2), _scalar_value(c1))
        for v, fact in zip(j1.invars, in_facts, strict=True):
            env[v] = fact
        for e1, e2 in zip(j1.eqns, j2.eqns, strict=True):
            self.stack.append(e1)
            try:
                if e1.primitive.name != e2.primitive.name or len(e1.invars) != len(e2.invars):
                    raise self.fail("its program changes with the number of rows")
                ins = [self.read(env, a, b) for a, b in zip(e1.invars, e2.invars, strict=True)]
                out_rows = [self.row_of(a, b) for a, b in zip(e1.outvars, e2.outvars, strict=True)]
                outs = self.eqn(e1, e2, ins, out_rows)
                for v, fact in zip(e1.outvars, outs, strict=True):
                    env[v] = fact
            finally:
                self.stack.pop()
        return [self.read(env, a, b) for a, b in zip(j1.outvars, j2.outvars, strict=True)]

    def read(self, env: dict[Any, _Fact], v1: Any, v2: Any) -> _Fact:
        if isinstance(v1, jcore.Literal):
            if not isinstance(v2, jcore.Literal) or not _same_constant(v1.val, v2.val):
                raise self.fail(f"it uses the number of rows as a value ({v1.val}; {getattr(v2, 'val', v2)} "
                                "with more rows)")
            return _Fact(None, _scalar_value(v1.val))
        return env[v1]

    # -- one equation -----------------------------------------------------------------------------
    def eqn(self, e1: Any, e2: Any, ins: list[_Fact], out_rows: list[Any]) -> list[_Fact]:
        prim = e1.primitive.name
        in_rows = [f.row for f in ins if f.row is not None]
        if prim in _CALLS:
            return self.call(e1, e2, ins)
        if prim == "cond":
            return self.cond(e1, e2, ins)
        if not in_rows and not any(out_rows):
            if prim in _KEEP_UNIFORM:  # a uniform array stays uniform: keep its known value
                return [_Fact(None, ins[0].at_untouched)]
            return [_Fact(None, self.fold(e1, ins)) for _ in e1.outvars]
        if prim in _ELEMENTWISE:
            return [_Fact(r, self.fold(e1, ins)) for r in out_rows]
        rule = getattr(self, "op_" + prim, None)
        if rule is None:
            row = in_rows[0] if in_rows else next(r for r in out_rows if r)
            if not in_rows:
                raise self.fail(f"{prim} makes values that depend on a row's position in {self.name(row)}")
            raise self.fail(f"{prim} is applied to the rows of {self.name(row)}")
        return rule(e1, ins, out_rows)

    def fold(self, e: Any, ins: list[_Fact]) -> Any:
        """The output's value at untouched rows (or its uniform value), when the inputs' are known."""
        prim, vals = e.primitive.name, [f.at_untouched for f in ins]
        if prim not in _ELEMENTWISE or len(e.outvars) != 1:
            return _UNKNOWN
        known = [v for v in vals if v is not _UNKNOWN]
        # Absorbing elements make the result known even when another operand is not.
        if prim == "mul" and any(np.all(v == 0) for v in known):
            return np.zeros((), e.outvars[0].aval.dtype)
        if prim == "and" and any(np.all(v == False) for v in known):  # noqa: E712 (numpy bools)
            return np.zeros((), e.outvars[0].aval.dtype)
        if prim == "or" and any(np.all(v == True) for v in known):  # noqa: E712
            return np.ones((), e.outvars[0].aval.dtype)
        if prim == "div" and vals[0] is not _UNKNOWN and np.all(vals[0] == 0):
            return np.zeros((), e.outvars[0].aval.dtype)
        if prim == "select_n":
            if vals[0] is not _UNKNOWN:
                return vals[1 + int(vals[0])]
            cases = vals[1:]
            if all(c is not _UNKNOWN for c in cases) and all(np.array_equal(c, cases[0]) for c in cases):
                return cases[0]
            return _UNKNOWN
        if len(known) != len(vals):
            return _UNKNOWN
        try:
            with jax.ensure_compile_time_eval():
                out = e.primitive.bind(*[np.asarray(v) for v in vals], **e.params)
            return np.asarray(out)
        except Exception:  # noqa: BLE001 - folding is an optimisation of the analysis; unknown is safe
            return _UNKNOWN

    # -- structural ops with a row axis -----------------------------------------------------------
    def expect(self, got: Any, want: Any, prim: str) -> None:
        if got != want:
            raise self.fail(f"{prim} moves the row axis of {self.name(want or got)} in a way that mixes rows")

    def op_broadcast_in_dim(self, e, ins, out_rows):
        (op, *_), out = ins, out_rows[0]
        if op.row is not None:
            self.expect(out, (op.row[0], e.params["broadcast_dimensions"][op.row[1]]), "broadcast_in_dim")
        return [_Fact(out, op.at_untouched)]  # a new row axis from a broadcast holds the same value in every row

    def op_reshape(self, e, ins, out_rows):
        (op, *_), out = ins, out_rows[0]
        if op.row is None or out is None:
            raise self.fail(f"reshape merges the rows of {self.name(op.row or out)} with another axis")
        in_shape, out_shape = e.invars[0].aval.shape, e.outvars[0].aval.shape
        if op.row[0] != out[0] or in_shape[:op.row[1]] != out_shape[:out[1]]:
            raise self.fail(f"reshape merges the rows of {self.name(op.row)} with another axis")
        return [_Fact(out, op.at_untouched)]

    def op_transpose(self, e, ins, out_rows):
        op = ins[0]
        self.expect(out_rows[0], (op.row[0], list(e.params["permutation"]).index(op.row[1])), "transpose")
        return [_Fact(out_rows[0], op.at_untouched)]

    def op_squeeze(self, e, ins, out_rows):
        op, dims = ins[0], e.params["dimensions"]
        self.expect(out_rows[0], (op.row[0], op.row[1] - sum(d < op.row[1] for d in dims)), "squeeze")
        return [_Fact(out_rows[0], op.at_untouched)]

    def _reduce(self, e, ins, out_rows, axes, identity, combine):
        op = ins[0]
        if op.row is not None and op.row[1] in axes:
            if identity is _UNKNOWN or op.at_untouched is _UNKNOWN or not np.all(op.at_untouched == identity):
                raise self.fail(f"{e.primitive.name} reduces over the rows of {self.name(op.row)} a value that "
                                "rows this step does not touch would change")
            return [_Fact(None, _UNKNOWN)]
        if op.row is not None:
            self.expect(out_rows[0], (op.row[0], op.row[1] - sum(a < op.row[1] for a in axes)), e.primitive.name)
        return [_Fact(out_rows[0], combine(op.at_untouched))]

    def _reduction(self, e, ins, out_rows):
        axes = e.params["axes"]
        identity = _REDUCTIONS[e.primitive.name]
        n = int(np.prod([e.invars[0].aval.shape[a] for a in axes]))
        combine = {"reduce_sum": lambda u: u * n, "reduce_prod": lambda u: u ** n}.get(
            e.primitive.name, lambda u: u)
        return self._reduce(e, ins, out_rows, axes, identity,
                            lambda u: _UNKNOWN if u is _UNKNOWN else np.asarray(combine(u)))

    op_reduce_sum = op_reduce_prod = op_reduce_max = op_reduce_min = op_reduce_and = op_reduce_or = _reduction

    def _argreduce(self, e, ins, out_rows):
        return self._reduce(e, ins, out_rows, e.params["axes"], _UNKNOWN,
                            lambda u: _UNKNOWN if u is _UNKNOWN else np.zeros((), e.params["index_dtype"]))

    op_argmax = op_argmin = _argreduce

    def _along_other_axis(self, e, ins, out_rows, axis: int, prim: str):
        rows = {f.row for f in ins if f.row is not None}
        if len(rows) != 1 or next(iter(rows))[1] == axis:
            row = next(iter(rows))
            raise self.fail(f"{prim} runs along the rows of {self.name(row)}")
        return rows.pop()

    def _cumulative(self, e, ins, out_rows):
        row = self._along_other_axis(e, ins, out_rows, e.params["axis"], e.primitive.name)
        u = ins[0].at_untouched
        keeps = e.primitive.name in ("cummax", "cummin") or (u is not _UNKNOWN and np.all(u == 0))
        return [_Fact(row, u if keeps else _UNKNOWN)]

    op_cumsum = op_cumprod = op_cummax = op_cummin = op_cumlogsumexp = _cumulative

    def op_sort(self, e, ins, out_rows):
        row = self._along_other_axis(e, ins, out_rows, e.params["dimension"], "sort")
        return [_Fact(row if r else None, _UNKNOWN) for r in out_rows]

    def op_split(self, e, ins, out_rows):
        row = self._along_other_axis(e, ins, out_rows, e.params["axis"], "split")
        return [_Fact(row, ins[0].at_untouched) for _ in out_rows]

    def op_concatenate(self, e, ins, out_rows):
        row = self._along_other_axis(e, ins, out_rows, e.params["dimension"], "concatenate")
        vals = [f.at_untouched for f in ins]
        same = all(v is not _UNKNOWN and np.array_equal(v, vals[0]) for v in vals)
        return [_Fact(row, vals[0] if same else _UNKNOWN)]

    def op_rev(self, e, ins, out_rows):
        row = ins[0].row
        if row[1] in e.params["dimensions"]:
            raise self.fail(f"rev reverses the rows of {self.name(row)}")
        return [_Fact(row, ins[0].at_untouched)]

    def op_slice(self, e, ins, out_rows):
        row, shape = ins[0].row, e.invars[0].aval.shape
        strides = e.params["strides"] or (1,) * len(shape)
        a = row[1]
        if (e.params["start_indices"][a], e.params["limit_indices"][a], strides[a]) != (0, shape[a], 1):
            raise self.fail(f"slice selects or shifts rows of {self.name(row)}")
        return [_Fact(row, ins[0].at_untouched)]

    def op_pad(self, e, ins, out_rows):
        row = ins[0].row
        if row is None or tuple(e.params["padding_config"][row[1]]) != (0, 0, 0):
            raise self.fail(f"pad shifts the rows of {self.name(row or out_rows[0])}")
        u, pad = ins[0].at_untouched, ins[1].at_untouched
        same = u is not _UNKNOWN and pad is not _UNKNOWN and np.array_equal(u, pad)
        return [_Fact(row, u if same else _UNKNOWN)]

    def op_dot_general(self, e, ins, out_rows):
        (lc, rc), (lb, rb) = e.params["dimension_numbers"]
        lhs, rhs = ins
        zero = any(f.at_untouched is not _UNKNOWN and np.all(f.at_untouched == 0) for f in (lhs, rhs))
        if lhs.row is not None and rhs.row is not None:
            pairs = list(zip(lc, rc, strict=True)) + list(zip(lb, rb, strict=True))
            if lhs.row[0] != rhs.row[0] or (lhs.row[1], rhs.row[1]) not in pairs:
                raise self.fail(f"dot_general pairs every row of {self.name(lhs.row)} with other rows")
            if lhs.row[1] in lc:  # a sum over rows of a product
                if not zero:
                    raise self.fail(f"dot_general sums over the rows of {self.name(lhs.row)} a product that rows "
                                    "this step does not touch would change")
                return [_Fact(None, _UNKNOWN)]
            self.expect(out_rows[0], (lhs.row[0], list(lb).index(lhs.row[1])), "dot_general")
        else:
            f, contracting = (lhs, lc) if lhs.row is not None else (rhs, rc)
            if f.row[1] in contracting:
                raise self.fail(f"dot_general sums over the rows of {self.name(f.row)} with a fixed array")
        return [_Fact(out_rows[0], np.zeros((), e.outvars[0].aval.dtype) if zero else _UNKNOWN)]

    def op_debug_callback(self, e, ins, out_rows):
        return []

    # -- programs inside programs -----------------------------------------------------------------
    def call(self, e1, e2, ins):
        subs1, subs2 = list(jcore.jaxprs_in_params(e1.params)), list(jcore.jaxprs_in_params(e2.params))
        key = "jaxpr" if "jaxpr" in e1.params else "call_jaxpr"
        sub1, sub2 = e1.params.get(key), e2.params.get(key)
        if sub1 is None or len(subs1) != len(subs2):
            raise self.fail(f"{e1.primitive.name} could not be analysed")
        j1, c1 = (sub1.jaxpr, sub1.consts) if hasattr(sub1, "consts") else (sub1, ())
        j2, c2 = (sub2.jaxpr, sub2.consts) if hasattr(sub2, "consts") else (sub2, ())
        return self.run(j1, j2, c1, c2, ins)

    def cond(self, e1, e2, ins):
        outs = None
        for b1, b2 in zip(e1.params["branches"], e2.params["branches"], strict=True):
            got = self.run(b1.jaxpr, b2.jaxpr, b1.consts, b2.consts, ins[1:])
            outs = got if outs is None else [
                _Fact(a.row, a.at_untouched if _known_equal(a.at_untouched, b.at_untouched) else _UNKNOWN)
                for a, b in zip(outs, got, strict=True)
            ]
        return outs


def _known_equal(a: Any, b: Any) -> bool:
    return a is not _UNKNOWN and b is not _UNKNOWN and np.array_equal(a, b)


def _scalar_value(x: Any) -> Any:
    if isinstance(x, jax.core.Tracer) or np.ndim(x) != 0:
        return _UNKNOWN
    try:
        return np.asarray(x)
    except Exception:  # noqa: BLE001 - e.g. an opaque token: simply not a known number
        return _UNKNOWN


def _same_constant(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, jax.core.Tracer) or isinstance(b, jax.core.Tracer):
        return False
    try:
        return np.shape(a) == np.shape(b) and bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return np.shape(a) == np.shape(b) and bool(np.array_equal(np.asarray(a), np.asarray(b)))


def _frames(stack: Sequence[Any]) -> list[Any]:
    # Each nested program's traceback stops at its jit boundary: join them, innermost first.
    frames: list[Any] = []
    for eqn in reversed(stack):
        tb = getattr(eqn.source_info, "traceback", None)
        frames.extend(tb.frames if tb is not None else ())
    return frames


def _location(stack: Sequence[Any]) -> str:
    for eqn in reversed(stack):
        where = source_info_util.summarize(eqn.source_info)
        if where:
            return where
    return "an unknown location"


def _culprit(stack: Sequence[Any]) -> str:
    return transformation_name(f.function_name for f in _frames(stack))


# optax's plumbing around the transformation that does the work.
_WRAPPERS = frozenset({"with_extra_args_support", "chain", "named_chain", "lazy_optax"})


def transformation_name(qualnames: Iterable[str]) -> str:
    """The optax constructor (``"scale_by_trust_ratio"``) whose ``update`` is the innermost of the
    given function qualnames (innermost first), or ``"the transformation"``."""
    for qualname in qualnames:
        head, sep, tail = qualname.partition(".<locals>.")
        if sep and tail.startswith("update") and head not in _WRAPPERS:
            return head
    return "the transformation"


def check_row_separable(
    small: Any,
    large: Any,
    inputs: Sequence[RowBlock | None],
    leaf_names: Sequence[str],
    deltas: Sequence[int],
) -> list[int | None]:
    """Check that ``small`` (a ``ClosedJaxpr``) is row-separable; return each output's row leaf.

    Args:
      small: the program traced with each sparse leaf's row block of ``n_k`` rows.
      large: the same program traced with ``n_k + deltas[k]`` rows.
      inputs: for each flat input, the :class:`RowBlock` it holds (axis 0), or ``None``.
      leaf_names: a readable name for each sparse leaf, for messages.
      deltas: the row-count difference per sparse leaf (distinct, positive).

    Returns:
      For each output, the sparse leaf whose rows it holds along axis 0 (``None``: no row axis).

    Raises:
      NotRowSeparable: naming the op, its source location and the responsible optax constructor.
    """
    sizes = [-1] * len(deltas)
    for v, block in zip(small.jaxpr.invars, inputs, strict=True):
        if block is not None:
            sizes[block.leaf] = v.aval.shape[0]
    walk = _Walk(leaf_names, deltas, sizes)
    facts = []
    for v1, v2, block in zip(small.jaxpr.invars, large.jaxpr.invars, inputs, strict=True):
        row = walk.row_of(v1, v2)
        if block is not None and row != (block.leaf, 0):
            raise ValueError(f"input {v1} is declared as rows of leaf {block.leaf} but its shape says {row}")
        zero = np.zeros((), v1.aval.dtype) if block is not None and block.zero_untouched else _UNKNOWN
        facts.append(_Fact(row, zero))
    outs = walk.run(small.jaxpr, large.jaxpr, small.consts, large.consts, facts)
    result = []
    for fact in outs:
        if fact.row is not None and fact.row[1] != 0:
            raise NotRowSeparable("the transformation", f"an output holds the rows of "
                                  f"{leaf_names[fact.row[0]]} along axis {fact.row[1]}, not axis 0")
        result.append(None if fact.row is None else fact.row[0])
    return result
