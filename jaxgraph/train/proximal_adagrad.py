"""``ProximalAdagradOptimizer``: FOBOS with Adagrad's per-element rate, TF's ``ApplyProximalAdagrad``::

    accum += grad**2
    rate   = lr / sqrt(accum)
    prox   = var - rate * grad
    var    = sign(prox) * max(|prox| - rate * l1, 0) / (1 + rate * l2)

Sparse updates are lazy (``SparseApplyProximalAdagrad`` computes the same per row).

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = ProximalAdagradOptimizer(3.0, initial_accumulator_value=0.1)
>>> state = opt.init(params)
>>> for _ in range(3):
...     params, state = opt.apply_gradients([(jnp.array([0.1, 0.2]), "v")], params, state)
>>> [round(float(x), 5) for x in params["v"].value]
[-1.60261, -2.29699]
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer
from jaxgraph.train.proximal_gradient_descent import fobos_step


class ProximalAdagradOptimizer(Optimizer):
    """TF1's proximal Adagrad. Slot ``"accumulator"``, filled with ``initial_accumulator_value``."""

    _slot_names = ("accumulator",)

    def __init__(self, learning_rate: Hyper, initial_accumulator_value: float = 0.1,
                 l1_regularization_strength: float = 0.0, l2_regularization_strength: float = 0.0,
                 use_locking: bool = False, name: str = "ProximalAdagrad") -> None:
        if initial_accumulator_value <= 0.0:
            raise ValueError(f"initial_accumulator_value must be positive: {initial_accumulator_value}")
        super().__init__(use_locking, name)
        # TF's CPU kernel refuses these when it runs; numbers are checked here, before any work.
        if isinstance(learning_rate, int | float) and not learning_rate > 0:
            raise ValueError(f"lr is not a positive scalar: {learning_rate}")
        for arg, value in [("l1", l1_regularization_strength), ("l2", l2_regularization_strength)]:
            if value < 0:
                raise ValueError(f"{arg} regularization strength is not a non-negative scalar: {value}")
        self._hyper = {"learning_rate": learning_rate, "l1_regularization_strength": l1_regularization_strength,
                       "l2_regularization_strength": l2_regularization_strength}
        self._initial_accumulator_value = initial_accumulator_value

    def _slot_initial_value(self, slot_name, value):
        return jnp.full_like(value, self._initial_accumulator_value)

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        accum = slots["accumulator"] + grad * grad
        rate = hyper["learning_rate"] * jnp.reciprocal(jnp.sqrt(accum))
        var = fobos_step(var, grad, rate, hyper["l1_regularization_strength"], hyper["l2_regularization_strength"])
        return var, {"accumulator": accum}


__all__ = ["ProximalAdagradOptimizer"]
