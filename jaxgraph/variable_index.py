"""``VariableIndex``: one resolved view of a parameter tree, built once and passed down.

Everything jaxgraph does with a tree (collections, ``var_list``, gradients, slots, the global step,
checkpoints, sharding rules) needs the same facts: which leaves are variables, their unique names,
paths, values, trainable flags and collections. The index computes them in one pass over the tree; an
optimizer's ``minimize`` builds it once per call and hands it to ``compute_gradients`` and
``apply_gradients`` (each also accepts a plain tree and indexes it itself), and rebuilding the tree
with new values goes through the index's tree structure instead of resolving names again.

Names: a jaxgraph Variable's own ``name`` if it has one, else the leaf's path in the tree
(``"encoder/w"``, ``"layers/0/b"``); clashing names get TF's ``_1``, ``_2`` suffixes in tree order,
compared without regard to case, as TF does.

>>> import jax.numpy as jnp
>>> from jaxgraph import Variable
>>> index = VariableIndex({"emb": jnp.zeros((3, 2)), "w": Variable(jnp.ones(2), name="w"), "step": jnp.int32(0)})
>>> [(e.name, e.kind, e.trainable) for e in index.entries]
[('emb', 'array', True), ('step', 'array', False), ('w', 'Variable', True)]
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxgraph import leaf_kinds
from jaxgraph.variables import Variable

__all__ = [
    "VALID_DTYPES",
    "VALID_DTYPE_NAMES",
    "Description",
    "IndexEntry",
    "VariableIndex",
    "check_differentiable_dtype",
    "path_to_name",
]

PyTree = Any

VALID_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)
"""The dtypes TF1's optimizers differentiate."""
VALID_DTYPE_NAMES = "[tf.float16, tf.bfloat16, tf.float32, tf.float64]"


def check_differentiable_dtype(dtype: Any, what: str) -> None:
    """TF's ``Invalid type ... expected: [...]`` for a variable or loss of another dtype."""
    if dtype not in VALID_DTYPES:
        raise ValueError(f"Invalid type {dtype} for {what}, expected: {VALID_DTYPE_NAMES}.")


def path_to_name(path: tuple[Any, ...]) -> str:
    """``"encoder/layers/0/w"`` for a JAX key path (``"Variable"`` for the root)."""
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        elif isinstance(key, jax.tree_util.FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return "/".join(parts) or "Variable"


@dataclasses.dataclass(frozen=True)
class IndexEntry:
    """One variable of the tree.

    Attributes:
      name: its resolved unique name.
      path: its key path in the tree.
      position: its place among the index's leaves (the tree flattened with variables as leaves).
      leaf: the leaf object itself (a Variable, an array, an NNX variable ...).
      info: what kind of variable it is (:class:`jaxgraph.leaf_kinds.LeafInfo`).
    """

    name: str
    path: tuple[Any, ...]
    position: int
    leaf: Any
    info: leaf_kinds.LeafInfo

    @property
    def value(self) -> Any:
        return self.info.value

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def trainable(self) -> bool:
        return self.info.trainable

    @property
    def collections(self) -> tuple[str, ...]:
        return self.info.collections

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def dtype(self) -> Any:
        return self.value.dtype

    @property
    def variable(self) -> Variable:
        """A :class:`~jaxgraph.Variable` view carrying the resolved name (what collections return)."""
        leaf = self.leaf
        if isinstance(leaf, Variable) and leaf.name == self.name:
            return leaf
        return Variable.from_value(self.value, self.name, self.trainable, self.collections)

    def default_exclusion(self) -> str | None:
        """Why an optimizer's default ``var_list`` leaves this variable out (``None``: it is trained)."""
        if not self.trainable:
            return self.info.untrainable_reason or "not trainable"
        if self.dtype not in VALID_DTYPES:
            return f"{str(self.dtype)}: not differentiable"
        return None


@dataclasses.dataclass(frozen=True)
class DescribedLeaf:
    """One row of :func:`jaxgraph.describe`."""

    name: str
    shape: tuple[int, ...] | None
    dtype: str
    kind: str
    status: str  # "trained", or why not

    @property
    def trained(self) -> bool:
        return self.status == "trained"


class Description(list):
    """The rows of :func:`jaxgraph.describe` (a list of :class:`DescribedLeaf`); ``str()`` is a table."""

    @property
    def trained(self) -> list[str]:
        """Names of the variables an optimizer trains."""
        return [row.name for row in self if row.trained]

    @property
    def not_trained(self) -> dict[str, str]:
        """``{name: reason}`` for everything else."""
        return {row.name: row.status for row in self if not row.trained}

    def __str__(self) -> str:
        header = ("name", "shape", "dtype", "kind", "trained")
        rows = [header] + [
            (r.name, "-" if r.shape is None else str(tuple(r.shape)), r.dtype, r.kind,
             "yes" if r.trained else f"no: {r.status}")
            for r in self
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
            for row in rows
        )

    __repr__ = __str__


class VariableIndex:
    """The variables of one tree, resolved once: names, paths, values, flags, collections.

    Args:
      tree: any pytree (dicts, lists, dataclasses, :class:`jaxgraph.Module` s, Equinox modules, Flax
        NNX modules or ``nnx.State`` s) whose variable leaves are described in
        :mod:`jaxgraph.leaf_kinds`.

    :meth:`of` returns an index unchanged, so functions may accept "a tree or its index".
    """

    def __init__(self, tree: PyTree) -> None:
        if isinstance(tree, VariableIndex):
            raise TypeError("VariableIndex(tree) got an index; use VariableIndex.of(x) to accept either")
        self.tree = tree
        leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=leaf_kinds.is_variable_node)
        self.treedef: Any = treedef
        self.leaves = [leaf for _, leaf in leaves]
        self.paths = [path for path, _ in leaves]
        entries: list[IndexEntry] = []
        used: set[str] = set()
        counts: dict[str, int] = {}
        for position, (path, leaf) in enumerate(leaves):
            info = leaf_kinds.inspect_leaf(leaf)
            if info is None:
                continue
            base = info.own_name if info.own_name is not None else path_to_name(path)
            name = base
            if name.lower() in used:
                n = counts.get(base.lower(), 0)
                while True:
                    n += 1
                    name = f"{base}_{n}"
                    if name.lower() not in used:
                        break
                counts[base.lower()] = n
            used.add(name.lower())
            entries.append(IndexEntry(name, path, position, leaf, info))
        self.entries: tuple[IndexEntry, ...] = tuple(entries)
        self.by_name: dict[str, IndexEntry] = {e.name: e for e in entries}
        self._by_id: dict[int, IndexEntry] = {}
        for e in entries:  # the first of several references to one object wins
            self._by_id.setdefault(id(e.leaf), e)

    @classmethod
    def of(cls, tree_or_index: PyTree | VariableIndex) -> VariableIndex:
        """``tree_or_index`` if it is an index already, else the index of the tree."""
        return tree_or_index if isinstance(tree_or_index, VariableIndex) else cls(tree_or_index)

    # -- lookups ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def variables(self, scope: str | None = None) -> list[Variable]:
        """Every variable as a named :class:`~jaxgraph.Variable` view, in tree order."""
        return [e.variable for e in self._scoped(self.entries, scope)]

    def collection(self, key: str, scope: str | None = None) -> list[Variable]:
        """The variables in collection ``key`` whose names ``re.match`` ``scope``."""
        return [e.variable for e in self._scoped((e for e in self.entries if key in e.collections), scope)]

    @staticmethod
    def _scoped(entries: Iterable[IndexEntry], scope: str | None) -> list[IndexEntry]:
        if scope is None:
            return list(entries)
        regex = re.compile(scope)
        return [e for e in entries if regex.match(e.name)]

    def find(self, ref: Any) -> IndexEntry | None:
        """The entry ``ref`` designates: a leaf object of this tree (a Variable, an array, an NNX variable:
        matched by identity), a Variable view from a collection (by name), or a name."""
        entry = self._by_id.get(id(ref))
        if entry is not None and entry.leaf is ref:
            return entry
        if isinstance(ref, Variable):
            return self.by_name.get(ref.name) if ref.name is not None else None
        if isinstance(ref, str):
            return self.by_name.get(ref)
        return None

    def names_by_id(self) -> dict[int, str]:
        """``id(leaf) -> resolved name`` for the variable leaves of the tree itself."""
        return {i: e.name for i, e in self._by_id.items()}

    def select(self, var_list: Sequence[Any] | Any | None) -> list[IndexEntry]:
        """The entries ``var_list`` designates (default: the trainable floating-point variables).

        Raises TF's errors: ``No variables to optimize.``, ``Invalid type ...``, and names what is
        not in the tree.
        """
        if var_list is None:
            selected = [e for e in self.entries if e.default_exclusion() is None]
        else:
            if isinstance(var_list, (Variable, str)) or leaf_kinds.is_array(var_list):
                var_list = [var_list]
            selected, seen = [], set()
            for ref in var_list:
                entry = self.find(ref)
                if entry is None:
                    raise self._not_in_tree(ref)
                if entry.name not in seen:
                    seen.add(entry.name)
                    selected.append(entry)
        if not selected:
            raise ValueError("No variables to optimize.")
        for entry in selected:
            check_differentiable_dtype(entry.dtype, entry.name)
        return selected

    @staticmethod
    def _not_in_tree(ref: Any) -> Exception:
        if isinstance(ref, Variable) and ref.name is None:
            return ValueError(
                f"var_list entry {ref!r} has no name: take var_list entries from the tree "
                "(e.g. jaxgraph.trainable_variables(params)) or give names."
            )
        if isinstance(ref, Variable):
            return ValueError(f"var_list entry {ref.name!r} is not a variable of the parameter tree")
        if isinstance(ref, str):
            return ValueError(f"var_list entry {ref!r} is not a variable of the parameter tree")
        if leaf_kinds.is_array(ref) or leaf_kinds.is_variable_node(ref):
            return ValueError(
                f"var_list entry of shape {getattr(ref, 'shape', None)} is not a leaf of the parameter tree "
                "(pass the tree's own leaf, a Variable from jaxgraph.trainable_variables, or a name)"
            )
        return TypeError(f"var_list entries must be Variables, leaves of the tree or names, got {ref!r}")

    # -- rebuilding the tree ----------------------------------------------------------------------
    def _rebuild(self, values: Mapping[str, Any], make: Callable[[Any, Any], Any]) -> PyTree:
        unknown = set(values) - set(self.by_name)
        if unknown:
            raise KeyError(f"No variables named {sorted(unknown)} in the tree")
        leaves = list(self.leaves)
        for name, value in values.items():
            entry = self.by_name[name]
            leaves[entry.position] = make(entry.leaf, value)
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def replace_values(self, values: Mapping[str, Any]) -> PyTree:
        """A copy of the tree whose variables named in ``values`` hold the new arrays; every leaf keeps
        its kind and metadata, so the tree's structure (what ``jit`` keys on) is unchanged."""
        return self._rebuild(values, leaf_kinds.rebuild)

    def loss_tree(self, values: Mapping[str, Any]) -> PyTree:
        """The tree a loss function is given: like :meth:`replace_values`, with frozen plain arrays
        handed over as plain arrays."""
        leaves = list(self.leaves)
        for entry in self.entries:
            value = values.get(entry.name, entry.value)
            leaves[entry.position] = leaf_kinds.for_loss(entry.leaf, value)
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def changed_in_place(self, loss_tree: PyTree, exclude: Iterable[str] = ()) -> dict[str, Any]:
        """``{name: new value}`` for the mutable variables (Flax NNX) that a function changed in place in
        ``loss_tree`` (a tree made by :meth:`loss_tree`), except those named in ``exclude``."""
        leaves, treedef = jax.tree_util.tree_flatten(loss_tree, is_leaf=leaf_kinds.is_variable_node)
        if treedef != self.treedef:
            return {}  # the function added or removed attributes: nothing to match its changes against
        skip = set(exclude)
        out = {}
        for entry in self.entries:
            if entry.name in skip or not entry.kind.startswith("nnx."):
                continue
            (value,) = jax.tree_util.tree_leaves(leaves[entry.position])
            if value is not entry.value:
                out[entry.name] = value
        return out

    def map(self, fn: Callable[[IndexEntry], Any]) -> PyTree:
        """The tree with every variable leaf replaced by ``fn(entry)``; other leaves are kept."""
        leaves = list(self.leaves)
        for entry in self.entries:
            leaves[entry.position] = fn(entry)
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    # -- reporting --------------------------------------------------------------------------------
    def describe(self, var_list: Sequence[Any] | None = None) -> Description:
        """Every variable, and every floating-point leaf that is not one, with whether an optimizer
        given ``var_list`` trains it and, if not, why."""
        chosen = None if var_list is None else {e.name for e in self.select(var_list)}
        by_position = {e.position: e for e in self.entries}
        rows = Description()
        for position, (path, leaf) in enumerate(zip(self.paths, self.leaves, strict=True)):
            entry = by_position.get(position)
            if entry is None:
                if isinstance(leaf, (float, complex)):
                    rows.append(DescribedLeaf(path_to_name(path), None, type(leaf).__name__,
                                              f"Python {type(leaf).__name__}",
                                              "a Python number, not an array: a constant"))
                continue
            if chosen is None:
                status = entry.default_exclusion() or "trained"
            else:
                status = "trained" if entry.name in chosen else "not in var_list"
            rows.append(DescribedLeaf(entry.name, entry.shape, str(entry.dtype), entry.kind, status))
        return rows
