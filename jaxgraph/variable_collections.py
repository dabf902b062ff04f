"""TF1's collections over any parameter tree, and ``freeze`` / ``describe``.

There is no global graph: a collection is a view of one parameter tree, computed by a
:class:`~jaxgraph.variable_index.VariableIndex`. The tree's variables are its jaxgraph
:class:`~jaxgraph.Variable` s (tagged as they say), its plain arrays (all global variables; the
floating-point ones trainable, as Equinox has it) and its Flax NNX variables (``nnx.Param`` trainable,
other types not); see :mod:`jaxgraph.leaf_kinds`. Each is named by its own ``name`` if it has one, else
by its path in the tree (``"encoder/w"``, ``"layers/0/b"``); names that clash get TF's ``_1``, ``_2``
suffixes in tree order (compared without regard to case, as TF does), so names are unique within a
tree and stable across runs: they key ``var_list``, optimizer slots and checkpoints.

``scope`` filters are TF's: ``re.match`` of the scope regex against the name (a prefix match,
``.`` is a wildcard).

>>> import jax.numpy as jnp
>>> from jaxgraph import Variable, trainable_variables, global_variables
>>> tree = {"emb": Variable(jnp.zeros((3, 2))), "step": Variable(0, trainable=False), "b": jnp.zeros(2)}
>>> [v.name for v in trainable_variables(tree)]
['b', 'emb']
>>> [v.name for v in global_variables(tree)]
['b', 'emb', 'step']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jaxgraph import leaf_kinds
from jaxgraph.variable_index import Description, IndexEntry, VariableIndex, path_to_name
from jaxgraph.variables import GraphKeys, Variable

__all__ = [
    "all_variables",
    "describe",
    "freeze",
    "get_collection",
    "get_global_step",
    "global_variables",
    "local_variables",
    "map_variables",
    "model_variables",
    "named_variables",
    "names_by_id",
    "path_to_name",
    "replace_values",
    "resolved_name",
    "trainable_variables",
    "unfreeze",
]

PyTree = Any


def named_variables(tree: PyTree) -> list[Variable]:
    """Every variable of ``tree``, in tree order, as a Variable carrying its resolved unique name.

    >>> import jax.numpy as jnp
    >>> [v.name for v in named_variables({"a": Variable(1.0, name="w"), "b": Variable(2.0, name="w")})]
    ['w', 'w_1']
    """
    return VariableIndex.of(tree).variables()


def resolved_name(var: Variable) -> str:
    """The name of a Variable returned by :func:`named_variables` (or a function built on it).

    Those Variables always carry their resolved name, but ``Variable.name`` is typed ``str | None``
    because a Variable taken straight from a tree may have none. ``None`` here is a caller bug.
    """
    if var.name is None:
        raise ValueError(
            f"{var!r} has no resolved name; take it from jaxgraph.named_variables(tree) or give it a name"
        )
    return var.name


def names_by_id(tree: PyTree) -> dict[int, str]:
    """``id(leaf) -> resolved name`` for the variable leaves of ``tree`` itself.

    Lets callers accept a leaf taken straight from the tree (``params["emb"]``), whose ``name`` may be
    ``None`` (path-derived) or a clashing name that :func:`named_variables` suffixed.
    """
    return VariableIndex.of(tree).names_by_id()


def get_collection(tree: PyTree, key: str, scope: str | None = None) -> list[Variable]:
    """The variables of ``tree`` in collection ``key``, optionally filtered by ``scope`` (``re.match``)."""
    return VariableIndex.of(tree).collection(key, scope)


def trainable_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.trainable_variables``: the tree's ``GraphKeys.TRAINABLE_VARIABLES``."""
    return get_collection(tree, GraphKeys.TRAINABLE_VARIABLES, scope)


def global_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.global_variables``: the tree's ``GraphKeys.GLOBAL_VARIABLES``."""
    return get_collection(tree, GraphKeys.GLOBAL_VARIABLES, scope)


def local_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.local_variables``: the tree's ``GraphKeys.LOCAL_VARIABLES``."""
    return get_collection(tree, GraphKeys.LOCAL_VARIABLES, scope)


def model_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.model_variables``: the tree's ``GraphKeys.MODEL_VARIABLES``."""
    return get_collection(tree, GraphKeys.MODEL_VARIABLES, scope)


def all_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """Every variable of the tree, whatever its collections."""
    return VariableIndex.of(tree).variables(scope)


def get_global_step(tree: PyTree) -> Variable | None:
    """The tree's ``GraphKeys.GLOBAL_STEP`` variable, or ``None`` (``tf.train.get_global_step``)."""
    steps = get_collection(tree, GraphKeys.GLOBAL_STEP)
    if len(steps) > 1:
        raise ValueError(f"More than one global step in the tree: {[v.name for v in steps]}")
    return steps[0] if steps else None


def _put_back(entry: IndexEntry, new: Any) -> Any:
    """The leaf for ``entry`` after a function returned ``new`` for its Variable view."""
    if not isinstance(new, Variable):
        return new
    leaf = entry.leaf
    if isinstance(leaf, Variable):
        # A name that came from the path stays implicit (None), so the tree's structure is unchanged.
        name = leaf.name if new.name == entry.name else new.name
        return Variable.from_value(new.value, name, new.trainable, new.collections)
    rebuilt = leaf_kinds.rebuild(leaf, new.value)
    return rebuilt if new.trainable == entry.trainable else leaf_kinds.with_trainable(rebuilt, new.trainable)


def map_variables(fn: Callable[[Variable], Any], tree: PyTree) -> PyTree:
    """Rebuild ``tree`` with ``fn(variable)`` for every variable (given as a named Variable view).

    The tree's other leaves and structure are kept, and each leaf keeps its kind (a plain array stays
    a plain array holding the returned Variable's value); ``fn`` sees each variable once, in tree order.
    """
    return VariableIndex.of(tree).map(lambda entry: _put_back(entry, fn(entry.variable)))


def replace_values(tree: PyTree, values: Mapping[str, Any]) -> PyTree:
    """A copy of ``tree`` whose variables named in ``values`` hold the new arrays.

    Unknown names raise ``KeyError`` naming them. Metadata (name, trainable, collections, kind) is kept.
    ``tree`` may also be a :class:`~jaxgraph.variable_index.VariableIndex` of the tree.
    """
    return VariableIndex.of(tree).replace_values(values)


def freeze(tree: PyTree, scope: str | None = None) -> PyTree:
    """A copy of ``tree`` where the variables matching ``scope`` (all, if ``None``) are not trainable.

    The original tree is not changed, and the model's code runs on the result as before. Frozen
    variables leave ``TRAINABLE_VARIABLES`` and so are never differentiated by an optimizer's default
    ``var_list``. A jaxgraph Variable gets ``trainable=False``; a plain array becomes a
    :class:`~jaxgraph.FrozenArray` (it still indexes, multiplies and converts as the array); an
    ``nnx.Param`` gets a ``jaxgraph_frozen`` metadata entry. ``freeze(array)`` freezes one array.

    >>> import jax.numpy as jnp
    >>> tree = {"enc": {"w": Variable(1.0)}, "dec": {"w": jnp.ones(2)}}
    >>> [v.name for v in trainable_variables(freeze(tree, "enc"))]
    ['dec/w']
    >>> frozen = freeze(tree, "dec")
    >>> [v.name for v in trainable_variables(frozen)], (frozen["dec"]["w"] * 2).tolist()
    (['enc/w'], [2.0, 2.0])
    """
    return _set_trainable(tree, scope, False)


def unfreeze(tree: PyTree, scope: str | None = None) -> PyTree:
    """The inverse of :func:`freeze`: matching variables become trainable (frozen arrays plain again).

    Variables that are never trainable (integer arrays, NNX types other than ``nnx.Param``) stay so.
    """
    return _set_trainable(tree, scope, True)


def _set_trainable(tree: PyTree, scope: str | None, trainable: bool) -> PyTree:
    index = VariableIndex.of(tree)
    selected = {v.name for v in index.variables(scope)}
    return index.map(
        lambda e: leaf_kinds.with_trainable(e.leaf, trainable) if e.name in selected else e.leaf
    )


def describe(tree: PyTree, var_list: Sequence[Any] | None = None) -> Description:
    """What an optimizer does with each leaf of ``tree``: a table of name, shape, dtype, kind, and
    whether it is trained or why not (frozen, not an ``nnx.Param``, an integer dtype, not in
    ``var_list``, a Python number).

    ``print(jaxgraph.describe(model))`` shows it; the result is also a list of rows with ``.trained``
    (names) and ``.not_trained`` (``{name: reason}``).

    >>> import jax.numpy as jnp
    >>> print(describe({"emb": jnp.zeros((4, 2)), "steps": jnp.int32(0), "frozen": freeze(jnp.ones(2))}))
    name    shape   dtype    kind          trained
    emb     (4, 2)  float32  array         yes
    frozen  (2,)    float32  frozen array  no: frozen (jaxgraph.freeze)
    steps   ()      int32    array         no: int32 array: not differentiable
    """
    return VariableIndex.of(tree).describe(var_list)
