"""``OptaxOptimizer``: any ``optax.GradientTransformation`` behind the TF1 optimizer API.

The optax state covers the variables given to :meth:`init` (default: the trainable ones). Sparse
gradients are densified (optax has no sparse rules), and variables whose gradient is ``None`` keep
their value, as TF skips them; the transformation's own state still advances for them with a zero
gradient, which is the only way to keep optax's state structure fixed.

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
from jaxgraph.sparse import IndexedSlices
from jaxgraph.train.optimizer import Optimizer, OptimizerState
from jaxgraph.variable_collections import replace_values
from jaxgraph.variables import Variable

__all__ = ["OptaxOptimizer"]


class OptaxOptimizer(Optimizer):
    """Wrap ``tx`` (an ``optax.GradientTransformation``). Its state lives in ``non_slots["optax"]``."""

    def __init__(self, tx: optax.GradientTransformation, name: str = "Optax") -> None:
        super().__init__(False, name)
        if not (hasattr(tx, "init") and hasattr(tx, "update")):
            raise TypeError(f"OptaxOptimizer needs an optax.GradientTransformation, got {tx!r}")
        self.tx = tx

    def __repr__(self) -> str:
        return f"OptaxOptimizer({self.tx!r}, name={self._name!r})"

    def init(self, params: Any, var_list: Sequence[Variable | str] | None = None) -> OptimizerState:
        variables = resolve_var_list(params, var_list)
        state = self.tx.init({v.name: v.value for v in variables})
        return OptimizerState(jnp.zeros((), jnp.int32), {}, {"optax": state})

    def apply_gradients(self, grads_and_vars, params, opt_state=None, global_step=None, name=None):
        checked, by_name = self._check_grads_and_vars(grads_and_vars, params)
        if opt_state is None:
            opt_state = self.init(params, [n for g, n in checked if g is not None])
        tx_state = opt_state.non_slots["optax"]
        current = {n: by_name[n].value for n in self._state_names(opt_state, checked)}
        grads = {n: jnp.zeros_like(v) for n, v in current.items()}
        for grad, var_name in checked:
            if grad is None:
                continue
            if var_name not in grads:
                raise ValueError(
                    f"Variable {var_name!r} is not covered by this OptaxOptimizer state; "
                    "include it in the var_list given to init()"
                )
            grads[var_name] = grad.to_dense() if isinstance(grad, IndexedSlices) else grad
        updates, tx_state = self.tx.update(grads, tx_state, current)
        with_grad = {n for g, n in checked if g is not None}
        new_values = {n: current[n] + updates[n] for n in with_grad}
        self._increment_global_step(global_step, by_name, new_values, params)
        params = replace_values(params, new_values)
        return params, OptimizerState(opt_state.iterations + 1, {}, {"optax": tx_state})

    @staticmethod
    def _state_names(opt_state: OptimizerState, checked) -> list[str]:
        # The names the optax state was built for are the dict keys of any of its per-variable trees.
        for leaf_dict in jax.tree_util.tree_leaves(
            opt_state.non_slots["optax"], is_leaf=lambda x: isinstance(x, dict)
        ):
            if isinstance(leaf_dict, dict):
                return list(leaf_dict)
        # A stateless transformation (e.g. plain sgd): cover every variable with a gradient.
        return [n for g, n in checked if g is not None]
