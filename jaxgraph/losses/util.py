"""TF1's loss collections (``LOSSES``, ``REGULARIZATION_LOSSES``) without a global graph.

TF1 adds every ``tf.losses.*`` result to ``GraphKeys.LOSSES`` and regularizers to
``GraphKeys.REGULARIZATION_LOSSES``; ``get_total_loss()`` sums them. jaxgraph's collections are views
of a parameter tree, and losses are values, not Variables, so here the collections live in a
:func:`record_losses` block, the same pattern as :func:`jaxgraph.summary.record_summaries`: inside the
block, the loss functions and :func:`add_loss` record their values; ``get_losses``,
``get_regularization_losses``, ``get_regularization_loss`` and ``get_total_loss`` read what the
innermost block holds. Outside any block nothing is recorded (TF 2's eager mode behaves the same way).

Open the block inside the function that computes the losses (the loss function given to
``compute_gradients`` / ``minimize``), so the recorded values belong to the same trace as the loss:

>>> import jax.numpy as jnp
>>> import jaxgraph as jg
>>> def loss_fn(w):
...     with jg.losses.record_losses():
...         jg.losses.mean_squared_error(jnp.array([1.0, 2.0]), w * jnp.array([1.0, 1.0]))
...         jg.losses.add_loss(0.5 * jg.nn.l2_loss(w), jg.GraphKeys.REGULARIZATION_LOSSES)
...         return jg.losses.get_total_loss()
>>> float(loss_fn(jnp.float32(2.0)))    # MSE 0.5, regularization 0.5 * 2
1.5

Each recorded loss carries a name, ``<name scope>/<loss name>`` (``"mean_squared_error"``, or the
``scope`` argument), which the ``scope`` filters match with ``re.match``, as TF does.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp

from jaxgraph.variables import GraphKeys, current_name_scope

__all__ = [
    "add_loss",
    "get_losses",
    "get_regularization_loss",
    "get_regularization_losses",
    "get_total_loss",
    "record_losses",
]

Collections = dict[str, list[tuple[str, jax.Array]]]

_collector: contextvars.ContextVar[Collections | None] = contextvars.ContextVar("jaxgraph_losses", default=None)


@contextlib.contextmanager
def record_losses() -> Iterator[Collections]:
    """Collect the losses added inside the block: ``{collection key: [(name, value), ...]}``.

    Blocks nest; the innermost one collects.
    """
    collected: Collections = {}
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)


def add_loss(loss: Any, loss_collection: str | None = GraphKeys.LOSSES, name: str | None = None) -> None:
    """``tf.compat.v1.losses.add_loss``: add ``loss`` to ``loss_collection`` of the innermost block.

    Does nothing when ``loss_collection`` is ``None`` or no :func:`record_losses` block is open. ``name``
    (default: none) is appended to the current name scope to name the entry for ``scope`` filters.
    """
    collected = _collector.get()
    if not loss_collection or collected is None:
        return
    scope = current_name_scope()
    full_name = "/".join(part for part in (scope, name or "") if part)
    collected.setdefault(loss_collection, []).append((full_name, jnp.asarray(loss)))


def get_losses(scope: str | None = None, loss_collection: str = GraphKeys.LOSSES) -> list[jax.Array]:
    """``tf.compat.v1.losses.get_losses``: the losses in ``loss_collection``, those whose name
    ``re.match``-es ``scope`` if given, in the order they were added."""
    collected = _collector.get() or {}
    entries = collected.get(loss_collection, [])
    if scope is not None:
        pattern = re.compile(scope)
        entries = [(n, v) for n, v in entries if pattern.match(n)]
    return [v for _, v in entries]


def get_regularization_losses(scope: str | None = None) -> list[jax.Array]:
    """``tf.compat.v1.losses.get_regularization_losses``: the ``REGULARIZATION_LOSSES`` collection."""
    return get_losses(scope, GraphKeys.REGULARIZATION_LOSSES)


def get_regularization_loss(scope: str | None = None, name: str = "total_regularization_loss") -> jax.Array:
    """``tf.compat.v1.losses.get_regularization_loss``: their sum, or ``0.0`` when there are none."""
    del name
    losses = get_regularization_losses(scope)
    if not losses:
        return jnp.zeros((), jnp.float32)
    return _add_n(losses)


def get_total_loss(add_regularization_losses: bool = True, name: str = "total_loss",
                   scope: str | None = None) -> jax.Array:
    """``tf.compat.v1.losses.get_total_loss``: the sum of ``LOSSES`` (and ``REGULARIZATION_LOSSES``).

    Raises TF's ``add_n`` error when there is nothing to sum (no losses recorded, or no block open).
    """
    del name
    losses = get_losses(scope) + (get_regularization_losses(scope) if add_regularization_losses else [])
    if not losses:
        raise ValueError(
            "inputs must be a list of at least one Tensor/IndexedSlices with the same dtype and shape: no losses "
            "were recorded (compute them inside a jaxgraph.losses.record_losses() block)"
        )
    return _add_n(losses)


def _add_n(values: list[jax.Array]) -> jax.Array:
    first = values[0]
    for v in values[1:]:
        if v.shape != first.shape or v.dtype != first.dtype:
            raise ValueError(
                "inputs must be a list of at least one Tensor/IndexedSlices with the same dtype and shape, got "
                f"{first.dtype}{list(first.shape)} and {v.dtype}{list(v.shape)}"
            )
    total = first
    for v in values[1:]:
        total = total + v
    return total
