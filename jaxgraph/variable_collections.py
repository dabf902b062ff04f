"""TF1's collections over any pytree that holds :class:`~jaxgraph.Variable` s.

There is no global graph: a collection is a view of one parameter tree. Each Variable's name is its
own ``name`` if it has one, else the path of its key or attribute in the tree (``"encoder/w"``,
``"layers/0/b"``). Names that clash get TF's ``_1``, ``_2`` suffixes in tree order (compared without
regard to case, as TF does), so names are unique within a tree and stable across runs: they key
``var_list``, optimizer slots and checkpoints.

``scope`` filters are TF's: ``re.match`` of the scope regex against the name (a prefix match,
``.`` is a wildcard).

>>> import jax.numpy as jnp
>>> from jaxgraph import Variable, trainable_variables, global_variables
>>> tree = {"emb": Variable(jnp.zeros((3, 2))), "step": Variable(0, trainable=False)}
>>> [v.name for v in trainable_variables(tree)]
['emb']
>>> [v.name for v in global_variables(tree)]
['emb', 'step']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax

from jaxgraph.variables import GraphKeys, Variable

PyTree = Any


def path_to_name(path: tuple[Any, ...]) -> str:
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


def _flatten_variables(tree: PyTree):
    return jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: isinstance(x, Variable))


def named_variables(tree: PyTree) -> list[Variable]:
    """Every Variable in ``tree``, in tree order, each carrying its resolved unique name.

    >>> import jax.numpy as jnp
    >>> [v.name for v in named_variables({"a": Variable(1.0, name="w"), "b": Variable(2.0, name="w")})]
    ['w', 'w_1']
    """
    leaves, _ = _flatten_variables(tree)
    used: set[str] = set()
    counts: dict[str, int] = {}
    result = []
    for path, leaf in leaves:
        if not isinstance(leaf, Variable):
            continue
        base = leaf.name if leaf.name is not None else path_to_name(path)
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
        result.append(leaf if leaf.name == name else leaf.replace(name=name))
    return result


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
    """``id(variable) -> resolved name`` for the Variable objects of ``tree`` itself.

    Lets callers accept a Variable taken straight from the tree (``params["emb"]``), whose ``name`` may
    be ``None`` (path-derived) or a clashing name that :func:`named_variables` suffixed.
    """
    leaves, _ = _flatten_variables(tree)
    originals = [leaf for _, leaf in leaves if isinstance(leaf, Variable)]
    return {id(leaf): resolved_name(nv) for leaf, nv in zip(originals, named_variables(tree), strict=True)}


def _filter(variables: Iterable[Variable], scope: str | None) -> list[Variable]:
    if scope is None:
        return list(variables)
    regex = re.compile(scope)
    return [v for v in variables if v.name is not None and regex.match(v.name)]


def get_collection(tree: PyTree, key: str, scope: str | None = None) -> list[Variable]:
    """The Variables of ``tree`` in collection ``key``, optionally filtered by ``scope`` (``re.match``)."""
    return _filter((v for v in named_variables(tree) if key in v.collections), scope)


def trainable_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.trainable_variables``: the tree's ``GraphKeys.TRAINABLE_VARIABLES``."""
    return get_collection(tree, GraphKeys.TRAINABLE_VARIABLES, scope)


def global_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """``tf.global_variables``: the tree's ``GraphKeys.GLOBAL_VARIABLES``."""
    return get_collection(tree, GraphKeys.GLOBAL_VARIABLES, scope)


def local_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    return get_collection(tree, GraphKeys.LOCAL_VARIABLES, scope)


def model_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    return get_collection(tree, GraphKeys.MODEL_VARIABLES, scope)


def all_variables(tree: PyTree, scope: str | None = None) -> list[Variable]:
    """Every Variable of the tree, whatever its collections."""
    return _filter(named_variables(tree), scope)


def get_global_step(tree: PyTree) -> Variable | None:
    """The tree's ``GraphKeys.GLOBAL_STEP`` variable, or ``None`` (``tf.train.get_global_step``)."""
    steps = get_collection(tree, GraphKeys.GLOBAL_STEP)
    if len(steps) > 1:
        raise ValueError(f"More than one global step in the tree: {[v.name for v in steps]}")
    return steps[0] if steps else None


def map_variables(fn: Callable[[Variable], Variable], tree: PyTree) -> PyTree:
    """Rebuild ``tree`` with ``fn(variable)`` for every Variable (given with its resolved name).

    The tree's other leaves and structure are kept; ``fn`` sees each Variable once, in tree order.
    """
    leaves, treedef = _flatten_variables(tree)
    named = iter(named_variables(tree))
    out = []
    for _, leaf in leaves:
        out.append(fn(next(named)) if isinstance(leaf, Variable) else leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


def _strip_names_like(original: PyTree, updated: PyTree) -> PyTree:
    # Variables whose name came from their path keep name=None, so the tree's structure (its static
    # metadata) is unchanged and jit does not retrace.
    orig_leaves, _ = _flatten_variables(original)
    new_leaves, treedef = _flatten_variables(updated)
    out = []
    for (_, old), (_, new) in zip(orig_leaves, new_leaves, strict=True):
        if isinstance(old, Variable) and isinstance(new, Variable) and new.name != old.name:
            new = Variable._make(new.value, old.name, new.trainable, new.collections)
        out.append(new)
    return jax.tree_util.tree_unflatten(treedef, out)


def replace_values(tree: PyTree, values: Mapping[str, Any]) -> PyTree:
    """A copy of ``tree`` whose Variables named in ``values`` hold the new arrays.

    Unknown names raise ``KeyError`` naming them. Metadata (name, trainable, collections) is kept.
    """
    missing = set(values) - {v.name for v in named_variables(tree)}
    if missing:
        raise KeyError(f"No variables named {sorted(missing)} in the tree")

    def update(v: Variable) -> Variable:
        name = resolved_name(v)
        return v.replace(value=values[name]) if name in values else v

    updated = map_variables(update, tree)
    return _strip_names_like(tree, updated)


def freeze(tree: PyTree, scope: str | None = None) -> PyTree:
    """A copy of ``tree`` where the Variables matching ``scope`` (all, if ``None``) are not trainable.

    The original tree is not changed. Frozen variables leave ``TRAINABLE_VARIABLES`` and so are never
    differentiated by an optimizer's default ``var_list``.

    >>> import jax.numpy as jnp
    >>> tree = {"enc": {"w": Variable(1.0)}, "dec": {"w": Variable(2.0)}}
    >>> [v.name for v in trainable_variables(freeze(tree, "enc"))]
    ['dec/w']
    """
    return _set_trainable(tree, scope, False)


def unfreeze(tree: PyTree, scope: str | None = None) -> PyTree:
    """The inverse of :func:`freeze`: matching Variables become trainable."""
    return _set_trainable(tree, scope, True)


def _set_trainable(tree: PyTree, scope: str | None, trainable: bool) -> PyTree:
    selected = {v.name for v in _filter(named_variables(tree), scope)}
    updated = map_variables(lambda v: v.replace(trainable=trainable) if v.name in selected else v, tree)
    return _strip_names_like(tree, updated)
