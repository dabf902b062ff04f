"""``GradientDescentOptimizer``: ``var -= lr * grad``; sparse grads are one scatter-add.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = GradientDescentOptimizer(3.0)
>>> params, _ = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params)
>>> [round(float(x), 4) for x in params["v"].value]
[0.7, 1.7]
"""

from __future__ import annotations

from jaxgraph.train.optimizer import Hyper, Optimizer

__all__ = ["GradientDescentOptimizer"]


class GradientDescentOptimizer(Optimizer):
    """TF1's plain SGD. No slots."""

    def __init__(self, learning_rate: Hyper, use_locking: bool = False, name: str = "GradientDescent") -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate}

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        return var - grad * hyper["learning_rate"], slots

    # Sparse: TF's scatter_sub without deduplication; the scatter-add sums repeated indices itself.
    def _apply_sparse_duplicate_indices(self, grad, var, slots, hyper, non_slots):
        return var.at[grad.indices].add(-grad.values * hyper["learning_rate"], mode="drop"), slots

    _apply_sparse = _apply_sparse_duplicate_indices


__all__ = ["GradientDescentOptimizer"]
