"""``AdagradOptimizer``: ``accum += grad**2; var -= lr * grad / sqrt(accum)`` (accumulator first).

The accumulator starts at ``initial_accumulator_value`` (0.1). Sparse updates are lazy.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = AdagradOptimizer(3.0)
>>> for _ in range(3):
...     params, state = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params, None if _ == 0 else state)
>>> [round(float(x), 5) for x in params["v"].value]
[-1.60261, -0.60261]
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer

__all__ = ["AdagradOptimizer"]


class AdagradOptimizer(Optimizer):
    """TF1's Adagrad. Slot: ``"accumulator"``, filled with ``initial_accumulator_value``."""

    _slot_names = ("accumulator",)

    def __init__(self, learning_rate: Hyper, initial_accumulator_value: float = 0.1,
                 use_locking: bool = False, name: str = "Adagrad") -> None:
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: {initial_accumulator_value}")
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate}
        self._initial_accumulator_value = initial_accumulator_value

    def _slot_initial_value(self, slot_name, value):
        return jnp.full_like(value, self._initial_accumulator_value)

    # ApplyAdagrad; SparseApplyAdagrad is the same per row.
    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        accum = slots["accumulator"] + grad * grad
        return var - grad * hyper["learning_rate"] * jnp.reciprocal(jnp.sqrt(accum)), {"accumulator": accum}


__all__ = ["AdagradOptimizer"]
