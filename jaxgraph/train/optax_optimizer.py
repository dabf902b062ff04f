"""``OptaxOptimizer``: any ``optax.GradientTransformation`` behind the TF1 optimizer API.

The optax state covers the variables given to :meth:`init` (default: the trainable ones); the names it
covers are kept in the state's structure (no arrays), so ``apply_gradients`` never guesses them.

* **Sparse gradients stay sparse.** An ``IndexedSlices`` gradient goes through
  :func:`~jaxgraph.train.lazy_optax`: repeated ids summed, only the touched rows of the variable and of
  its slot-like state updated (TF's lazy sparse rule), nothing of the table's size computed. A
  transformation that is not row-separable raises :class:`~jaxgraph.train.NotRowSeparable` naming it,
  unless ``non_separable="densify"`` (a one-time warning, then dense gradients).
* **``None`` gradients are skipped, as TF does:** the variable keeps its value and its state (the
  state leaves shaped like it, :func:`~jaxgraph.slot_owners.slot_owners`). The transformation
  still runs once per step, so shared counters (``count``, like TF's ``beta1_power``) advance.

>>> import jax.numpy as jnp, optax, jaxgraph as jg
>>> params = {"w": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = OptaxOptimizer(optax.sgd(0.5))
>>> params, state, loss = opt.minimize(lambda p: jnp.sum(p["w"].value ** 2), params, opt.init(params))
>>> params["w"].value.tolist()
[0.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxgraph.gradients import resolve_var_list
from jaxgraph.slot_owners import slot_owners
from jaxgraph.sparse import IndexedSlices
from jaxgraph.train.lazy_optax import NonSeparable, apply_updates, lazy_optax
from jaxgraph.train.optimizer import Optimizer, OptimizerState
from jaxgraph.variable_collections import path_to_name, replace_values, resolved_name
from jaxgraph.variable_index import VariableIndex
from jaxgraph.variables import GraphKeys, Variable

__all__ = ["CoveredVariables", "OptaxOptimizer"]

# non_slots keys: the optax state (its leaves are checkpointed under "optimizer/non_slots/optax/...")
# and the names it covers.
_STATE, _COVERED = "optax", "optax_variables"


@jax.tree_util.register_static
class CoveredVariables(tuple):
    """The variable names an optax state was built for, in order: static (no arrays), so it rides in
    the state's tree structure through ``jit``, donation and checkpoints."""

    __slots__ = ()

__all__ = ["OptaxOptimizer"]


class OptaxOptimizer(Optimizer):
    """Wrap ``tx`` (an ``optax.GradientTransformation``). Its state lives in ``non_slots["optax"]``.

    Args:
      tx: the transformation.
      name: TF's optimizer name.
      non_separable: for sparse gradients when ``tx`` is not row-separable: ``"error"`` (default) or
        ``"densify"`` (see :func:`~jaxgraph.train.lazy_optax`).
    """

    def __init__(self, tx: optax.GradientTransformation, name: str = "Optax",
                 non_separable: NonSeparable = "error") -> None:
        super().__init__(False, name)
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise TypeError(f"OptaxOptimizer needs an optax.GradientTransformation, got {tx!r}")
        self.tx = tx
        self._lazy = lazy_optax(tx, non_separable=non_separable)

    def __repr__(self) -> str:
        return f"OptaxOptimizer({self.tx!r}, name={self._name!r})"

    def init(self, params: Any, var_list: Sequence[Variable | str] | None = None) -> OptimizerState:
        variables = resolve_var_list(params, var_list)
        names = CoveredVariables(resolved_name(v) for v in variables)
        state = self.tx.init({n: v.value for n, v in zip(names, variables, strict=True)})
        return OptimizerState(jnp.zeros((), jnp.int32), {}, {_STATE: state, _COVERED: names})

    def variables(self, opt_state: OptimizerState) -> list[Variable]:
        """TF's ``Optimizer.variables()``: each leaf of the optax state as a non-trainable Variable named
        ``"<optimizer name>/<tree path>"`` (``"Optax/0/mu/w"``), sorted by name."""
        leaves = jax.tree_util.tree_flatten_with_path(opt_state.non_slots[_STATE])[0]
        found = [Variable(x, trainable=False, name=f"{self._name}/{path_to_name(path)}",
                          collections=[GraphKeys.GLOBAL_VARIABLES]) for path, x in leaves]
        return sorted(found, key=resolved_name)

    def apply_gradients(self, grads_and_vars, params, opt_state=None, global_step=None, name=None):
        params = VariableIndex.of(params)  # resolved once for every lookup below
        checked, by_name = self._check_grads_and_vars(grads_and_vars, params)
        if opt_state is None:
            opt_state = self.init(params, [n for g, n in checked if g is not None])
        covered = opt_state.non_slots.get(_COVERED)
        if not isinstance(covered, CoveredVariables):
            raise ValueError("opt_state was not made by OptaxOptimizer.init (it does not say which variables "
                             "its optax state covers)")
        current = {n: by_name[n].value for n in covered}
        grads: dict[str, Any] = {}
        for grad, var_name in checked:
            if grad is None:
                continue
            if var_name not in current:
                raise ValueError(
                    f"Variable {var_name!r} is not covered by this OptaxOptimizer state; "
                    "include it in the var_list given to init()"
                )
            grads[var_name] = grad
        skipped = [n for n in covered if n not in grads]
        # optax needs a gradient for every leaf. A skipped variable gets a stand-in (no rows when the step
        # is sparse, so nothing of its size is computed; else zeros) and its state is put back after.
        sparse_step = any(isinstance(g, IndexedSlices) for g in grads.values())
        all_grads = {n: grads[n] if n in grads else _stand_in(current[n], sparse_step) for n in covered}
        tx_state = opt_state.non_slots[_STATE]
        updates, new_tx_state = self._lazy.update(all_grads, tx_state, current)
        if skipped:
            new_tx_state = _keep_slots(tx_state, new_tx_state, current, [list(covered).index(n) for n in skipped])
        new_values = apply_updates({n: current[n] for n in grads}, {n: updates[n] for n in grads})
        self._increment_global_step(global_step, by_name, new_values, params)
        params = replace_values(params, new_values)
        non_slots = {**opt_state.non_slots, _STATE: new_tx_state}
        return params, OptimizerState(opt_state.iterations + 1, {}, non_slots)


def _stand_in(value: jax.Array, sparse_step: bool) -> jax.Array | IndexedSlices:
    if sparse_step and value.ndim:
        return IndexedSlices(jnp.zeros((0, *value.shape[1:]), value.dtype), jnp.zeros((0,), jnp.int32), value.shape)
    return jnp.zeros_like(value)


def _keep_slots(old: Any, new: Any, params: dict[str, Any], skipped: list[int]) -> Any:
    """``new`` with the state leaves owned by the ``skipped`` parameters taken from ``old``."""
    owners = slot_owners(old, params)
    old_leaves = jax.tree_util.tree_leaves(old)
    new_leaves, treedef = jax.tree_util.tree_flatten(new)
    kept = [o if owner in skipped else n for o, n, owner in zip(old_leaves, new_leaves, owners, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, kept)
