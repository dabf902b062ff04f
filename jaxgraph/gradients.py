"""Gradient machinery (work in progress)."""
from __future__ import annotations
from typing import Any
import jax
import jax.numpy as jnp
from jaxgraph.variables import Variable


def read_variable(var: Variable) -> jax.Array:
    return var._value


def gather_rows(params: Any, ids: Any) -> jax.Array:
    table = params._value if isinstance(params, Variable) else jnp.asarray(params)
    return jnp.take(table, ids, axis=0)
