"""``MomentumOptimizer``: ``accum = accum * mu + grad; var -= lr * accum`` (Nesterov: the new accum).

Sparse updates are lazy, as in TF: only the rows in the gradient move, and only their accumulators decay.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = MomentumOptimizer(2.0, 0.9)
>>> params, state = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params)
>>> slot = opt.get_slot(state, "v", "momentum")
>>> [round(float(x), 4) for x in params["v"].value], [round(float(x), 4) for x in slot.value]
([0.8, 1.8], [0.1, 0.1])
"""

from __future__ import annotations

from jaxgraph.train.optimizer import Hyper, Optimizer

__all__ = ["MomentumOptimizer"]


class MomentumOptimizer(Optimizer):
    """TF1's momentum. ``momentum`` has no default, as in TF. Slot: ``"momentum"`` (zeros)."""

    _slot_names = ("momentum",)

    def __init__(self, learning_rate: Hyper, momentum: Hyper, use_locking: bool = False,
                 name: str = "Momentum", use_nesterov: bool = False) -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "momentum": momentum}
        self._use_nesterov = use_nesterov

    # ApplyMomentum; SparseApplyMomentum is the same per row.
    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        lr, mu = hyper["learning_rate"], hyper["momentum"]
        accum = slots["momentum"] * mu + grad
        delta = grad * lr + accum * mu * lr if self._use_nesterov else accum * lr
        return var - delta, {"momentum": accum}


__all__ = ["MomentumOptimizer"]
