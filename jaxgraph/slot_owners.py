"""Which leaves of an optimizer state are slots of which parameter (TF's slots, found in an optax state).

optax keeps per-parameter state (Adam's ``mu`` and ``nu``, Adagrad's sum of squares) as trees built
like the parameters (``optax.tree_utils.tree_zeros_like(params)``). A state leaf is a *slot* of
parameter ``i`` when it sits at position ``i`` of a subtree with the parameters' tree structure and has
parameter ``i``'s shape; failing that (``optax.masked`` drops leaves from such subtrees), when its tree
path ends with parameter ``i``'s path and the shapes agree. Counters, hyper-parameters and factored
statistics (Adafactor's row and column means) have no owner.

>>> import jax.numpy as jnp, optax
>>> params = {"emb": jnp.zeros((5, 2)), "w": jnp.zeros(2)}
>>> state = optax.adam(0.1).init(params)  # (ScaleByAdamState(count, mu, nu), EmptyState())
>>> slot_owners(state, params)             # count, mu["emb"], mu["w"], nu["emb"], nu["w"]
[None, 0, 1, 0, 1]
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

__all__ = ["slot_owners"]


def slot_owners(state: Any, params: Any) -> list[int | None]:
    """For each leaf of ``state`` (``jax.tree_util.tree_leaves`` order), the index of the leaf of
    ``params`` it is a slot of, or ``None``. ``params`` leaves only need a ``.shape``."""
    param_paths, param_def_ = jax.tree_util.tree_flatten_with_path(params)
    param_def: Any = param_def_
    paths = [p for p, _ in param_paths]
    shapes = [tuple(np.shape(leaf)) for _, leaf in param_paths]

    def built_like_params(node: Any) -> bool:
        return jax.tree_util.tree_structure(node) == param_def

    owners: list[int | None] = []
    for path, chunk in jax.tree_util.tree_flatten_with_path(state, is_leaf=built_like_params)[0]:
        if built_like_params(chunk):
            for i, leaf in enumerate(jax.tree_util.tree_leaves(chunk)):
                owners.append(i if tuple(np.shape(leaf)) == shapes[i] else None)
            continue
        owners.append(_owner_by_path(path, tuple(np.shape(chunk)), paths, shapes))
    return owners


def _owner_by_path(path: tuple[Any, ...], shape: tuple[int, ...], paths: list[Any],
                   shapes: list[tuple[int, ...]]) -> int | None:
    best, best_len = None, 0
    for i, (p, s) in enumerate(zip(paths, shapes, strict=True)):
        if p and len(p) <= len(path) and tuple(path[len(path) - len(p):]) == tuple(p) and s == shape:
            if len(p) > best_len:
                best, best_len = i, len(p)
    return best
