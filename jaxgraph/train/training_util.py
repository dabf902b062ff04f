"""``get_or_create_global_step``: TF1's ``tf.train.get_or_create_global_step`` for explicit trees.

There is no graph to add a variable to, so the function returns the tree too: ``tree, step =
get_or_create_global_step(tree)``. A tree that already has a global step (a Variable in the
``GLOBAL_STEP`` collection, e.g. from :func:`jaxgraph.create_global_step`) comes back unchanged with it;
a dict without one comes back as a new dict with ``"global_step"`` added. Other containers (a
``Module``, a list) cannot grow a field here: build them with the step in place.

>>> import jax.numpy as jnp
>>> import jaxgraph as jg
>>> tree, step = get_or_create_global_step({"w": jg.Variable(jnp.zeros(2), name="w")})
>>> sorted(tree), step.name, int(step.value)
(['global_step', 'w'], 'global_step', 0)
>>> get_or_create_global_step(tree)[0] is tree
True
"""

from __future__ import annotations

from typing import Any

from jaxgraph.variable_collections import get_global_step
from jaxgraph.variables import GraphKeys, Variable, create_global_step

__all__ = ["get_or_create_global_step"]


def get_or_create_global_step(tree: Any) -> tuple[Any, Variable]:
    """``(tree, global_step)``: the tree's global step, or a dict tree with a new one under ``"global_step"``.

    Raises ``TypeError`` for a tree without a global step that is not a dict, and ``ValueError`` when
    the dict's ``"global_step"`` key holds something else.
    """
    step = get_global_step(tree)
    if step is not None:
        return tree, step
    if not isinstance(tree, dict):
        raise TypeError(
            f"The tree has no global step, and get_or_create_global_step can only add one to a dict, not a "
            f"{type(tree).__name__}: put jaxgraph.create_global_step() in it when you build it."
        )
    if GraphKeys.GLOBAL_STEP in tree:
        raise ValueError(
            f"The tree's {GraphKeys.GLOBAL_STEP!r} entry is not a global step (a non-trainable integer Variable "
            "in the GLOBAL_STEP collection): rename it, or make it with jaxgraph.create_global_step()"
        )
    new_tree = {**tree, GraphKeys.GLOBAL_STEP: create_global_step()}
    new_step = get_global_step(new_tree)
    assert new_step is not None  # it was just added
    return new_tree, new_step
