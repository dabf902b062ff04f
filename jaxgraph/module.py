"""``Module``: a small base class for models that are pytrees.

Attributes holding Variables, arrays, other Modules, or containers of those are the pytree's children;
every other attribute (ints, strings, functions, configuration) is static metadata. Variables without
an explicit name are named by their attribute path (``"encoder/w"``, ``"layers/0/b"``).

>>> import jax.numpy as jnp
>>> from jaxgraph import Module, Variable
>>> class Linear(Module):
...     def __init__(self, n_in, n_out):
...         self.n_out = n_out                       # static
...         self.w = Variable(jnp.zeros((n_in, n_out)))
...         self.b = Variable(jnp.zeros((n_out,)))
...     def __call__(self, x):
...         return x @ self.w.value + self.b.value
>>> class Net(Module):
...     def __init__(self):
...         self.encoder = Linear(3, 2)
...         self.head = Linear(2, 1)
>>> [v.name for v in Net().trainable_variables()]
['encoder/w', 'encoder/b', 'head/w', 'head/b']
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxgraph import variable_collections
from jaxgraph.frozen import FrozenArray
from jaxgraph.variables import Variable

__all__ = ["Module"]


def _is_dynamic(value: Any) -> bool:
    if isinstance(value, (Variable, FrozenArray, Module, jax.Array, np.ndarray)):
        return True
    if isinstance(value, (list, tuple, dict)):
        leaves = jax.tree_util.tree_leaves(value, is_leaf=lambda x: isinstance(x, (Variable, FrozenArray, Module)))
        return any(_is_dynamic(leaf) for leaf in leaves)
    return False


class Module:
    """Base class for pytree models: subclass it and assign attributes in ``__init__``.

    A Module is registered as a pytree automatically; ``jit``, ``grad``, ``tree_map`` and the
    optimizers see its Variables as leaves. Update a module functionally (optimizers return a new one).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        jax.tree_util.register_pytree_with_keys(
            cls, cls._tree_flatten_with_keys, cls._tree_unflatten, cls._tree_flatten
        )

    def _split_fields(self):
        dynamic, static = [], []
        for key, value in vars(self).items():
            (dynamic if _is_dynamic(value) else static).append((key, value))
        return dynamic, static

    def _tree_flatten_with_keys(self):
        dynamic, static = self._split_fields()
        children = [(jax.tree_util.GetAttrKey(k), v) for k, v in dynamic]
        return children, (tuple(k for k, _ in dynamic), tuple(static))

    def _tree_flatten(self):
        dynamic, static = self._split_fields()
        return [v for _, v in dynamic], (tuple(k for k, _ in dynamic), tuple(static))

    @classmethod
    def _tree_unflatten(cls, aux, children):
        keys, static = aux
        obj = object.__new__(cls)
        obj.__dict__.update(static)
        obj.__dict__.update(zip(keys, children, strict=True))
        return obj

    # -- collections, as methods --------------------------------------------------------------------
    def variables(self, scope: str | None = None) -> list[Variable]:
        """All Variables of this module (and its sub-modules), with their resolved names."""
        return variable_collections.all_variables(self, scope)

    def trainable_variables(self, scope: str | None = None) -> list[Variable]:
        return variable_collections.trainable_variables(self, scope)

    def global_variables(self, scope: str | None = None) -> list[Variable]:
        return variable_collections.global_variables(self, scope)

    def get_collection(self, key: str, scope: str | None = None) -> list[Variable]:
        return variable_collections.get_collection(self, key, scope)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"
