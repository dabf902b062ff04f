"""The kinds of leaf that are variables in a parameter tree, and how each is read, rebuilt and frozen.

A parameter tree may hold:

* :class:`jaxgraph.Variable` s: trainable and collections as tagged (TF's rules);
* plain arrays (``jax.Array``, NumPy arrays, ``ShapeDtypeStruct`` templates): every one is a global
  variable, and the floating-point ones are trainable (Equinox's ``is_inexact_array`` convention), so a
  dict model or an Equinox module trains as it is;
* :class:`jaxgraph.FrozenArray`: a plain array marked not trainable (what :func:`jaxgraph.freeze`
  makes of a plain array);
* Flax NNX variables (``nnx.Param``, ``nnx.BatchStat``, ``nnx.RngKey`` ...), in an ``nnx.State`` or an
  NNX module given directly: ``nnx.Param`` (and its subclasses) is trainable unless frozen (a
  ``jaxgraph_frozen`` metadata entry), every other type is not.

Flax is never imported here: NNX variables are recognised only when the program has imported
``flax.nnx`` already (a tree cannot hold one otherwise).

>>> import jax.numpy as jnp
>>> info = inspect_leaf(jnp.zeros(3))
>>> info.kind, info.trainable, info.collections
('array', True, ('variables', 'trainable_variables'))
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.frozen import FrozenArray
from jaxgraph.variables import GraphKeys, Variable

__all__ = [
    "LeafInfo",
    "NNX_FROZEN_KEY",
    "for_loss",
    "inspect_leaf",
    "is_array",
    "is_variable_node",
    "rebuild",
    "with_trainable",
]

NNX_FROZEN_KEY = "jaxgraph_frozen"
"""The metadata entry :func:`jaxgraph.freeze` sets on an ``nnx.Param`` (kept by ``nnx.split``/``merge``
and ``jit``, since NNX carries metadata in the tree structure)."""

_GLOBAL = (GraphKeys.GLOBAL_VARIABLES,)
_GLOBAL_TRAINABLE = (GraphKeys.GLOBAL_VARIABLES, GraphKeys.TRAINABLE_VARIABLES)


@dataclasses.dataclass(frozen=True)
class LeafInfo:
    """What a variable leaf is.

    Attributes:
      kind: ``"Variable"``, ``"array"``, ``"frozen array"`` or ``"nnx.<Type>"``.
      value: the array (a tracer under ``jit``).
      trainable: whether it is in ``GraphKeys.TRAINABLE_VARIABLES``.
      collections: its collections.
      own_name: a jaxgraph Variable's own name (else ``None``: named by its path in the tree).
      untrainable_reason: why it is not trainable (``None`` when it is).
    """

    kind: str
    value: Any
    trainable: bool
    collections: tuple[str, ...]
    own_name: str | None = None
    untrainable_reason: str | None = None


def _nnx_variable_type() -> type | None:
    nnx = sys.modules.get("flax.nnx")
    return getattr(nnx, "Variable", None)


def _nnx_param_type() -> type | None:
    nnx = sys.modules.get("flax.nnx")
    return getattr(nnx, "Param", None)


def is_array(x: Any) -> bool:
    """A plain array leaf: ``jax.Array`` (tracers included), NumPy array or scalar, ``ShapeDtypeStruct``."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct))


def _is_nnx_variable(x: Any) -> bool:
    nnx_variable = _nnx_variable_type()
    if nnx_variable is None or not isinstance(x, nnx_variable):
        return False
    leaves = jax.tree_util.tree_leaves(x)
    return len(leaves) == 1 and is_array(leaves[0])  # an NNX variable holding one array


def is_variable_node(x: Any) -> bool:
    """Whether ``x`` is a variable that is a pytree node (flatten trees with this as ``is_leaf``)."""
    return isinstance(x, (Variable, FrozenArray)) or _is_nnx_variable(x)


def _inexact(value: Any) -> bool:
    return jnp.issubdtype(value.dtype, jnp.inexact)


def inspect_leaf(x: Any) -> LeafInfo | None:
    """The :class:`LeafInfo` of a variable leaf, or ``None`` for any other leaf (a Python number, a
    string, a function ...)."""
    if isinstance(x, Variable):
        return LeafInfo("Variable", x.value, x.trainable, x.collections, x.name,
                        None if x.trainable else "frozen (trainable=False)")
    if isinstance(x, FrozenArray):
        return LeafInfo("frozen array", x.value, False, _GLOBAL, None, "frozen (jaxgraph.freeze)")
    if is_array(x):
        if _inexact(x):
            return LeafInfo("array", x, True, _GLOBAL_TRAINABLE)
        return LeafInfo("array", x, False, _GLOBAL, None, f"{x.dtype} array: not differentiable")
    if _is_nnx_variable(x):
        nnx_variable: Any = x
        (value,) = jax.tree_util.tree_leaves(nnx_variable)
        kind = f"nnx.{type(x).__name__}"
        param = _nnx_param_type()
        if param is None or not isinstance(x, param):
            return LeafInfo(kind, value, False, _GLOBAL, None, f"{kind} is not an nnx.Param")
        if nnx_variable.get_metadata().get(NNX_FROZEN_KEY, False):
            return LeafInfo(kind, value, False, _GLOBAL, None, "frozen (jaxgraph.freeze)")
        return LeafInfo(kind, value, True, _GLOBAL_TRAINABLE)
    return None


def rebuild(x: Any, value: Any) -> Any:
    """A leaf of the same kind and metadata as ``x`` holding ``value``; the tree's structure is kept."""
    if isinstance(x, Variable):
        return Variable.from_value(value, x.name, x.trainable, x.collections)
    if isinstance(x, FrozenArray):
        return FrozenArray(value)
    if is_array(x):
        return value
    # an NNX variable: the same type and metadata
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(x), [value])


def for_loss(x: Any, value: Any) -> Any:
    """What a loss function sees for leaf ``x`` holding ``value``: the leaf rebuilt, except that a
    :class:`FrozenArray` is handed over as its plain array (so ``lax`` primitives accept it)."""
    return value if isinstance(x, FrozenArray) else rebuild(x, value)


def with_trainable(x: Any, trainable: bool) -> Any:
    """``x`` frozen (``trainable=False``) or unfrozen; kinds that cannot change are returned as they are.

    Plain arrays become :class:`FrozenArray` s and back; NNX params get or lose the
    ``jaxgraph_frozen`` metadata entry (a copy: the original variable is not changed); other NNX
    variable types and integer arrays are never trainable and stay as they are.
    """
    if isinstance(x, Variable):
        return x.replace(trainable=trainable)
    if isinstance(x, FrozenArray):
        return x.value if trainable else x
    if is_array(x):
        return FrozenArray(x) if not trainable and _inexact(x) else x
    param = _nnx_param_type()
    if param is not None and isinstance(x, param):
        nnx_param: Any = x
        frozen = bool(nnx_param.get_metadata().get(NNX_FROZEN_KEY, False))
        if frozen == (not trainable):
            return x
        copy = nnx_param.copy()
        if trainable:
            copy.del_metadata(NNX_FROZEN_KEY)
        else:
            copy.set_metadata(**{NNX_FROZEN_KEY: True})
        return copy
    return x
