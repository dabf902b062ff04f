"""``FrozenArray``: a plain array marked "do not train", that the model's code still reads as an array.

In a tree of plain arrays (a dict model, an Equinox module) every floating-point array is a trainable
variable. Freezing one must not change the model's code: ``p["emb"][ids]``, ``self.weight @ x``,
``x + self.bias``, ``jnp.tanh(w)``, ``w.T``, ``w.shape`` keep working. A ``FrozenArray`` is a pytree
node with the array as its only child (so ``jit``, ``vmap``, ``tree_map`` and Equinox's filters see the
array), and the "frozen" mark lives in the tree's structure, where it survives ``jit``. It behaves as
its array for Python operators, indexing, attributes and ``jax.numpy`` functions (through
``__jax_array__``), as ``flax.nnx.Variable`` does.

What it cannot do: ``jax.lax`` primitives called directly (``lax.conv_general_dilated(x, w)``,
``lax.dot_general``) do not accept array-like objects; read ``jnp.asarray(w)`` there. Inside
``compute_gradients`` / ``minimize`` the loss sees the plain array, so training code is unaffected.

Make one with :func:`jaxgraph.freeze` (``jg.freeze(arr)``, or ``jg.freeze(tree, "scope")``); undo it
with :func:`jaxgraph.unfreeze`.

>>> import jax.numpy as jnp
>>> w = FrozenArray(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
>>> (w @ jnp.ones(2)).tolist(), w[jnp.array([1])].tolist(), w.T.shape, float(jnp.sum(w))
([3.0, 7.0], [[3.0, 4.0]], (2, 2), 10.0)
"""

from __future__ import annotations

import operator
from typing import Any

import jax
import numpy as np

__all__ = ["FrozenArray"]


def _delegate(op: Any) -> Any:
    def method(self: FrozenArray, *args: Any) -> Any:
        return op(self.value, *args)
    return method


def _reflected(op: Any) -> Any:
    def method(self: FrozenArray, other: Any) -> Any:
        return op(other, self.value)
    return method


@jax.tree_util.register_pytree_with_keys_class
class FrozenArray:
    """An array that optimizers leave alone (not in ``TRAINABLE_VARIABLES``), usable as the array."""

    __slots__ = ("value",)
    value: Any

    def __init__(self, value: Any) -> None:
        if isinstance(value, FrozenArray):
            value = value.value
        self.value = value

    # -- pytree protocol: the array is the only child ---------------------------------------------
    def tree_flatten_with_keys(self):
        return ((jax.tree_util.GetAttrKey("value"), self.value),), None

    def tree_flatten(self):
        return (self.value,), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        obj.value = children[0]
        return obj

    # -- behaving as the array --------------------------------------------------------------------
    def __jax_array__(self) -> Any:
        return self.value

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.value, dtype=dtype)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not defined here: shape, dtype, ndim, T, at, astype, reshape, sum ...
        if name == "value":  # not yet set (copy/pickle protocols probe before __init__)
            raise AttributeError(name)
        return getattr(self.value, name)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self):
        return iter(self.value)

    def __bool__(self) -> bool:
        return bool(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __index__(self) -> int:
        return operator.index(self.value)

    def __repr__(self) -> str:
        return f"FrozenArray({self.value!r})"

    __getitem__ = _delegate(operator.getitem)
    __neg__ = _delegate(operator.neg)
    __pos__ = _delegate(operator.pos)
    __abs__ = _delegate(operator.abs)
    __invert__ = _delegate(operator.invert)
    __eq__ = _delegate(operator.eq)  # type: ignore[assignment]
    __ne__ = _delegate(operator.ne)  # type: ignore[assignment]
    __lt__ = _delegate(operator.lt)
    __le__ = _delegate(operator.le)
    __gt__ = _delegate(operator.gt)
    __ge__ = _delegate(operator.ge)
    __hash__ = None  # type: ignore[assignment]  # arrays are unhashable too


for _name, _op in [
    ("add", operator.add), ("sub", operator.sub), ("mul", operator.mul), ("truediv", operator.truediv),
    ("floordiv", operator.floordiv), ("mod", operator.mod), ("pow", operator.pow), ("matmul", operator.matmul),
    ("and", operator.and_), ("or", operator.or_), ("xor", operator.xor), ("lshift", operator.lshift),
    ("rshift", operator.rshift), ("divmod", divmod),
]:
    setattr(FrozenArray, f"__{_name}__", _delegate(_op))
    setattr(FrozenArray, f"__r{_name}__", _reflected(_op))
del _name, _op
