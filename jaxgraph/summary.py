"""Summaries under jit: ``scalar`` records values while tracing; they leave the step as outputs."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import jax.numpy as jnp

_collector: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "jaxgraph_summaries", default=None
)


@contextlib.contextmanager
def record_summaries() -> Iterator[dict[str, Any]]:
    """Collect the summaries written inside the block into a dict ``{tag: value}``.

    Use it inside the jitted step and return the dict as an ordinary output.
    """
    collected: dict[str, Any] = {}
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)


def _unique_tag(collected: dict[str, Any], name: str) -> str:
    tag, n = name, 0
    while tag in collected:
        n += 1
        tag = f"{name}_{n}"
    return tag


def _emit(name: str, value: Any) -> None:
    collected = _collector.get()
    if collected is not None:
        collected[_unique_tag(collected, name)] = value


def scalar(name: str, value: Any) -> None:
    """Record a scalar summary (``tf.summary.scalar``); a no-op outside :func:`record_summaries`."""
    _emit(name, jnp.asarray(value))
