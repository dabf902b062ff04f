"""Variables: the leaves of a jaxgraph parameter tree, and TF1's naming helpers.

A :class:`Variable` is a pytree node whose only child is its value. Its name, trainable flag and
collections are static metadata, so they survive ``jit``, ``tree_map``, ``lax.scan``, ``vmap`` and
flatten/unflatten unchanged.

Reading a variable is explicit: ``var.value`` is the array. A Variable is not an array, and passing
one where JAX expects an array raises a ``TypeError`` that says to read ``.value``, so the places
where a model reads its parameters stay visible in its code.

>>> import jax.numpy as jnp
>>> from jaxgraph import Variable, name_scope
>>> with name_scope("embeddings"):
...     emb = Variable(jnp.zeros((4, 2)))
>>> emb.name, emb.trainable, emb.value.shape
('embeddings/Variable', True, (4, 2))
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.device import current_device

__all__ = ["GraphKeys", "Variable", "create_global_step", "current_name_scope", "name_scope"]


class GraphKeys:
    """TF1's standard collection names (the same string values as ``tf.compat.v1.GraphKeys``)."""

    GLOBAL_VARIABLES = "variables"
    VARIABLES = GLOBAL_VARIABLES  # deprecated alias, as in TF
    LOCAL_VARIABLES = "local_variables"
    METRIC_VARIABLES = "metric_variables"
    MODEL_VARIABLES = "model_variables"
    TRAINABLE_VARIABLES = "trainable_variables"
    TRAINABLE_RESOURCE_VARIABLES = "trainable_resource_variables"
    MOVING_AVERAGE_VARIABLES = "moving_average_variables"
    CONCATENATED_VARIABLES = "concatenated_variables"
    SUMMARIES = "summaries"
    UPDATE_OPS = "update_ops"
    LOSSES = "losses"
    REGULARIZATION_LOSSES = "regularization_losses"
    SAVEABLE_OBJECTS = "saveable_objects"
    RESOURCES = "resources"
    LOCAL_RESOURCES = "local_resources"
    QUEUE_RUNNERS = "queue_runners"
    TABLE_INITIALIZERS = "table_initializer"
    ASSET_FILEPATHS = "asset_filepaths"
    INIT_OP = "init_op"
    LOCAL_INIT_OP = "local_init_op"
    READY_OP = "ready_op"
    READY_FOR_LOCAL_INIT_OP = "ready_for_local_init_op"
    SUMMARY_OP = "summary_op"
    GLOBAL_STEP = "global_step"
    EVAL_STEP = "eval_step"
    TRAIN_OP = "train_op"
    SAVERS = "savers"
    WEIGHTS = "weights"
    BIASES = "biases"
    ACTIVATIONS = "activations"


_name_stack: contextvars.ContextVar[str] = contextvars.ContextVar("jaxgraph_name_stack", default="")


@contextlib.contextmanager
def name_scope(name: str | None) -> Iterator[str]:
    """Prefix the names of Variables created inside the block, as ``tf.name_scope`` does.

    Scopes nest with ``/``. A name ending in ``/`` re-enters that exact scope, and ``None`` or ``""``
    resets to the root. Unlike TF there is no global graph, so re-entering ``name_scope("a")`` does not
    become ``a_1``: clashing variable names are made unique per tree instead (see
    :func:`jaxgraph.named_variables`).

    >>> with name_scope("outer"):
    ...     with name_scope("inner") as scope:
    ...         print(scope)
    outer/inner/
    """
    current = _name_stack.get()
    if not name:
        new = ""
    elif name.endswith("/"):
        new = name[:-1]
    else:
        new = f"{current}/{name}" if current else name
    token = _name_stack.set(new)
    try:
        yield new + "/" if new else ""
    finally:
        _name_stack.reset(token)


def current_name_scope() -> str:
    """The active name scope, without a trailing slash (``""`` at the root)."""
    return _name_stack.get()


def _default_collections(collections: Iterable[str] | None, trainable: bool) -> tuple[str, ...]:
    if collections is None:
        result = [GraphKeys.GLOBAL_VARIABLES]
    elif isinstance(collections, (set, frozenset)):
        # A set has no order of its own (it changes with PYTHONHASHSEED); sort it so the metadata,
        # and with it the tree structure jit keys on, is the same in every run.
        result = sorted(collections)
    elif isinstance(collections, (list, tuple)):
        result = list(collections)
    else:
        raise ValueError(
            "collections argument to Variable constructor must be a list, tuple, or set. "
            f"Got {collections} of type {type(collections)}"
        )
    if trainable and GraphKeys.TRAINABLE_VARIABLES not in result:
        result.append(GraphKeys.TRAINABLE_VARIABLES)
    # dict.fromkeys keeps the order and drops repeats, so the metadata hashes stably.
    return tuple(dict.fromkeys(result))


@jax.tree_util.register_pytree_with_keys_class
class Variable:
    """A named, taggable parameter: TF1's ``tf.Variable`` as an immutable pytree node.

    Args:
      initial_value: an array-like, or a zero-argument callable returning one (as TF accepts).
      trainable: whether the variable joins ``GraphKeys.TRAINABLE_VARIABLES`` (default ``True``).
      name: the variable's name. Inside :func:`name_scope` it is prefixed with the scope; a variable
        created inside a scope without a name is called ``"<scope>/Variable"``. A variable with no name
        outside any scope takes the path of its attribute or key in the tree it lives in.
      collections: collection keys; default ``[GraphKeys.GLOBAL_VARIABLES]``, plus
        ``TRAINABLE_VARIABLES`` when trainable (TF1's rule).
      dtype: converts the initial value.

    Variables are immutable: :meth:`assign` returns a new one. Optimizers return a new parameter tree.

    >>> import jax.numpy as jnp
    >>> v = Variable(jnp.array([1.0, 2.0]), name="w")
    >>> v
    Variable(name='w', shape=(2,), dtype=float32, trainable=True)
    >>> (v.value * 2).tolist()
    [2.0, 4.0]
    """

    __slots__ = ("_value", "name", "trainable", "collections")

    def __init__(
        self,
        initial_value: Any,
        trainable: bool = True,
        name: str | None = None,
        collections: Iterable[str] | None = None,
        dtype: Any = None,
    ) -> None:
        if initial_value is None:
            raise ValueError("initial_value must be specified.")
        if callable(initial_value) and not hasattr(initial_value, "shape"):
            initial_value = initial_value()
        if isinstance(initial_value, Variable):
            initial_value = initial_value.value
        value = jnp.asarray(initial_value, dtype=dtype)
        # A Python scalar gives a weakly-typed array; the first update makes it strongly typed, and jit
        # would then trace the step a second time. A variable's dtype is definite, as in TF.
        self._value = jnp.asarray(value, dtype=value.dtype) if getattr(value, "weak_type", False) else value
        placed_on = current_device()
        if placed_on is not None and not isinstance(self._value, jax.core.Tracer):
            # Inside jaxgraph.device(...) the variable is pinned there (committed), as tf.device pins it.
            self._value = jax.device_put(self._value, placed_on)
        scope = current_name_scope()
        if name is None:
            name = f"{scope}/Variable" if scope else None
        elif scope:
            name = f"{scope}/{name}"
        if name is not None and (not isinstance(name, str) or name.endswith(":0")):
            raise ValueError(f"Variable name must be a string without the ':0' suffix, got {name!r}")
        self.name: str | None = name
        self.trainable: bool = bool(trainable)
        self.collections: tuple[str, ...] = _default_collections(collections, self.trainable)

    @classmethod
    def from_value(
        cls,
        value: Any,
        name: str | None,
        trainable: bool = True,
        collections: tuple[str, ...] | None = None,
    ) -> Variable:
        """A Variable holding ``value`` as it is, with the given metadata: no conversion, no name scope,
        no device placement.

        JAX rebuilds Variables this way with tracers, ``ShapeDtypeStruct`` s, shardings or gradients
        as values; jaxgraph uses it for the named views it returns (slots, plain-array leaves).
        ``collections=None`` gives TF's default for ``trainable``.

        >>> import jax.numpy as jnp
        >>> Variable.from_value(jnp.zeros(2), "w/Adam", trainable=False).collections
        ('variables',)
        """
        obj = object.__new__(cls)
        obj._value = value
        obj.name = name
        obj.trainable = bool(trainable)
        obj.collections = (
            _default_collections(None, obj.trainable) if collections is None else tuple(collections)
        )
        return obj

    _make = from_value  # the former private spelling, kept for code written against it

    # -- pytree protocol ------------------------------------------------------------------------
    def tree_flatten_with_keys(self):
        return ((jax.tree_util.GetAttrKey("value"), self._value),), (self.name, self.trainable, self.collections)

    def tree_flatten(self):
        return (self._value,), (self.name, self.trainable, self.collections)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls.from_value(children[0], *aux)

    # -- reading --------------------------------------------------------------------------------
    @property
    def value(self) -> jax.Array:
        """The variable's array.

        Reading it records nothing: ``compute_gradients`` decides from the traced program whether the
        loss uses the array densely or only through row gathers.
        """
        return self._value

    def read_value(self) -> jax.Array:
        """TF's name for :attr:`value`."""
        return self.value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self._value))

    @property
    def dtype(self) -> Any:
        return self._value.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def get_shape(self) -> tuple[int, ...]:
        return self.shape

    # -- functional updates ---------------------------------------------------------------------
    def replace(self, **changes: Any) -> Variable:
        """A copy with some of ``value``, ``name``, ``trainable``, ``collections`` changed."""
        value = changes.pop("value", self._value)
        name = changes.pop("name", self.name)
        trainable = changes.pop("trainable", self.trainable)
        collections = changes.pop("collections", None)
        if changes:
            raise TypeError(f"Variable.replace got unexpected fields {sorted(changes)}")
        if collections is None:
            collections = tuple(
                c for c in self.collections if c != GraphKeys.TRAINABLE_VARIABLES or trainable
            )
            if trainable and GraphKeys.TRAINABLE_VARIABLES not in collections:
                collections = collections + (GraphKeys.TRAINABLE_VARIABLES,)
        return Variable.from_value(value, name, bool(trainable), tuple(collections))

    def assign(self, value: Any) -> Variable:
        """A new Variable holding ``value`` (same shape and dtype required), like ``tf.assign``."""
        new = jnp.asarray(value, dtype=self.dtype)
        if new.shape != self.shape:
            raise ValueError(
                f"Cannot assign a value of shape {new.shape} to variable {self.name!r} of shape {self.shape}"
            )
        return self.replace(value=new)

    def assign_add(self, delta: Any) -> Variable:
        return self.assign(self._value + delta)

    def assign_sub(self, delta: Any) -> Variable:
        return self.assign(self._value - delta)

    # -- guards ---------------------------------------------------------------------------------
    def __jax_array__(self):
        raise TypeError(
            f"Variable {self.name!r} was used where an array is expected; read its array explicitly "
            "with `.value` (or use jaxgraph.nn.embedding_lookup for row lookups)."
        )

    def _operator_guard(self, *args: Any) -> Any:
        # Python operators do not go through __jax_array__; without this, `w * x` fails with a bare
        # "unsupported operand type(s)" that does not say how to read the array.
        self.__jax_array__()

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _operator_guard
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _operator_guard
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __abs__ = _operator_guard
    __getitem__ = _operator_guard

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self._value, dtype=dtype)

    def __bool__(self) -> bool:
        raise TypeError(f"The truth value of Variable {self.name!r} is ambiguous; read `.value`.")

    def __repr__(self) -> str:
        value = self._value
        shape = getattr(value, "shape", None)
        dtype = getattr(value, "dtype", None)
        return (
            f"Variable(name={self.name!r}, shape={tuple(shape) if shape is not None else None}, "
            f"dtype={dtype}, trainable={self.trainable})"
        )


def create_global_step(name: str = "global_step") -> Variable:
    """A non-trainable int64-like step counter (int32 unless x64 is enabled), as
    ``tf.train.create_global_step``. Put it in the parameter tree and pass it to ``apply_gradients``.

    >>> step = create_global_step()
    >>> step.name, int(step.value), step.trainable
    ('global_step', 0, False)
    """
    with name_scope(None):
        return Variable(
            # int64 as canonicalized by the jax_enable_x64 setting: int32 unless x64 is enabled.
            jnp.zeros((), dtype=jax.dtypes.canonicalize_dtype(jnp.int64)),
            trainable=False,
            name=name,
            collections=[GraphKeys.GLOBAL_VARIABLES, GraphKeys.GLOBAL_STEP],
        )
