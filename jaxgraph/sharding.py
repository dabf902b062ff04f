"""Place a parameter tree and its optimizer state on a device mesh, by variable name.

TF1 had partitioned variables; Keras has layout maps. jaxgraph uses JAX's own sharding: a list of
``(regex, PartitionSpec)`` rules matched with ``re.match`` against each Variable's name (first match
wins; unmatched variables are replicated). Slots follow their variable's layout, so an embedding
table's Adagrad accumulator is row-sharded with it. Batches are sharded along the data axis.

Sparse gradients stay sparse: a lookup in a row-sharded table gathers rows locally and combines
row-sized results, and the optimizer's scatter updates each shard in place. Nothing of the table's
size is gathered or all-reduced (``tests/test_sharding.py`` checks the compiled program).

>>> import jax, jax.numpy as jnp, jaxgraph as jg
>>> from jax.sharding import PartitionSpec as P
>>> mesh = make_mesh()                      # all devices on one "data" axis
>>> params = {"emb": jg.Variable(jnp.zeros((8 * 4, 2))), "w": jg.Variable(jnp.ones(2))}
>>> params = shard_params(params, mesh, [("emb", P("data", None))])
>>> params["w"].value.sharding.spec == P()          # unmatched: replicated
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxgraph.slot_owners import slot_owners
from jaxgraph.variable_collections import map_variables, resolved_name
from jaxgraph.variable_index import VariableIndex

__all__ = ["Rules", "make_mesh", "put", "shard_batch", "shard_opt_state", "shard_params", "spec_for",
           "tree_shardings", "variable_shardings"]

Rules = Sequence[tuple[str, PartitionSpec]] | dict[str, PartitionSpec]


def make_mesh(num_devices: int | None = None, axis_name: str = "data",
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (default: all, across processes)."""
    devices = list(devices if devices is not None else jax.devices())
    if num_devices is not None:
        if not 1 <= num_devices <= len(devices):
            raise ValueError(f"num_devices={num_devices}, but {len(devices)} devices are present: {devices}")
        devices = devices[:num_devices]
    return Mesh(np.array(devices), (axis_name,))


def _rules(rules: Rules | None) -> list[tuple[re.Pattern[str], PartitionSpec]]:
    items: Iterable[tuple[str, PartitionSpec]] = (rules.items() if isinstance(rules, dict) else rules or [])
    out = []
    for pattern, spec in items:
        if not isinstance(spec, PartitionSpec):
            raise TypeError(f"sharding rule {pattern!r} must map to a PartitionSpec, got {spec!r}")
        out.append((re.compile(pattern), spec))
    return out


def spec_for(name: str, rules: Rules | None) -> PartitionSpec:
    """The PartitionSpec of the first rule whose regex ``re.match``es ``name`` (else replicated)."""
    for regex, spec in _rules(rules):
        if regex.match(name):
            return spec
    return PartitionSpec()


def _check_divisible(name: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh) -> None:
    for dim, axes in enumerate(spec):
        if axes is None:
            continue
        if dim >= len(shape):
            raise ValueError(f"sharding rule for {name!r}: spec {spec} has more dimensions than shape {shape}")
        size = int(np.prod([mesh.shape[a] for a in (axes if isinstance(axes, tuple) else (axes,))]))
        if shape[dim] % size:
            raise ValueError(
                f"variable {name!r} of shape {shape}: dimension {dim} ({shape[dim]}) is not divisible by "
                f"the {size} devices of mesh axes {axes!r}"
            )


def variable_shardings(tree: Any, mesh: Mesh, rules: Rules | None) -> dict[str, NamedSharding]:
    """``{variable name: NamedSharding}`` for every variable of ``tree`` (or its index)."""
    out = {}
    for var in VariableIndex.of(tree).variables():
        name = resolved_name(var)
        spec = spec_for(name, rules)
        _check_divisible(name, var.shape, spec, mesh)
        out[name] = NamedSharding(mesh, spec)
    return out


def tree_shardings(tree: Any, mesh: Mesh, rules: Rules | None) -> Any:
    """A pytree like ``tree`` whose Variables hold their ``NamedSharding`` (for ``jit``'s
    ``in_shardings``/``out_shardings``); other array leaves are replicated."""
    index = VariableIndex.of(tree)
    by_name = variable_shardings(index, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    with_vars = map_variables(lambda v: v.replace(value=by_name[resolved_name(v)]), index)
    return jax.tree_util.tree_map(
        lambda x: x if isinstance(x, NamedSharding) else replicated, with_vars,
        is_leaf=lambda x: isinstance(x, NamedSharding),
    )


def put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Place a host or device array with ``sharding``; with several processes, each process supplies
    the shards its devices hold (every process must pass the same full array)."""
    if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        # A global array (already spread over the processes) is resharded by XLA.
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_params(tree: Any, mesh: Mesh, rules: Rules | None) -> Any:
    """``tree`` with every Variable's value placed on ``mesh`` by the rules (replicated if unmatched)."""
    index = VariableIndex.of(tree)
    by_name = variable_shardings(index, mesh, rules)
    return map_variables(lambda v: v.replace(value=put(v.value, by_name[resolved_name(v)])), index)


def shard_opt_state(opt_state: Any, params: Any, mesh: Mesh, rules: Rules | None) -> Any:
    """Place an :class:`~jaxgraph.train.OptimizerState`: slots like their variables, the rest replicated.

    Slots are the core optimizers' ``slots`` and, in ``non_slots`` (an ``OptaxOptimizer``'s optax
    state), every leaf shaped like a variable and keyed by its name (:func:`~jaxgraph.slot_owners.slot_owners`):
    Adam's ``mu``/``nu`` of a row-sharded table are row-sharded with it.
    """
    index = VariableIndex.of(params)
    by_name = variable_shardings(index, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    slots = {
        slot: {name: put(value, by_name.get(name, replicated)) for name, value in per_var.items()}
        for slot, per_var in opt_state.slots.items()
    }
    values = {entry.name: entry.value for entry in index.entries}
    owners = slot_owners(opt_state.non_slots, values)
    leaves, treedef = jax.tree_util.tree_flatten(opt_state.non_slots)
    names = list(values)
    placed = [put(x, replicated if owner is None else by_name[names[owner]]) for x, owner in zip(leaves, owners,
                                                                                                  strict=True)]
    non_slots = jax.tree_util.tree_unflatten(treedef, placed)
    return type(opt_state)(put(opt_state.iterations, replicated), slots, non_slots)


def shard_batch(batch: Any, mesh: Mesh, axis_name: str = "data") -> Any:
    """Shard every array of ``batch`` along its leading dimension over ``axis_name``."""
    def put_leaf(x):
        spec = PartitionSpec(axis_name, *([None] * (np.ndim(x) - 1))) if np.ndim(x) else PartitionSpec()
        return put(x, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(put_leaf, batch)
