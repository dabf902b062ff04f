"""``ProximalGradientDescentOptimizer``: FOBOS (Duchi & Singer, 2009), TF's
``ApplyProximalGradientDescent`` kernel::

    prox = var - lr * grad
    var  = sign(prox) * max(|prox| - lr * l1, 0) / (1 + lr * l2)

Sparse gradients are summed per row, then only those rows move (``SparseApplyProximalGradientDescent``).

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = ProximalGradientDescentOptimizer(3.0, l1_regularization_strength=0.001, l2_regularization_strength=2.0)
>>> params, _ = opt.apply_gradients([(jnp.array([0.1, 0.2]), "v")], params)
>>> [round(float(x), 5) for x in params["v"].value]
[0.09957, 0.19957]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer


def fobos_step(var: jax.Array, grad: jax.Array, lr: jax.Array, l1: jax.Array, l2: jax.Array) -> jax.Array:
    """One forward-backward splitting step, TF's proximal kernels' update (``lr`` may be per element).

    TF branches on ``l1 > 0``; with ``l1 == 0`` the soft threshold below is exactly ``prox / (1 + l2 * lr)``.
    """
    prox = var - grad * lr
    return jnp.sign(prox) * jnp.maximum(jnp.abs(prox) - lr * l1, 0) / (1 + l2 * lr)


class ProximalGradientDescentOptimizer(Optimizer):
    """TF1's proximal gradient descent. No slots. TF validates neither regularization strength."""

    def __init__(self, learning_rate: Hyper, l1_regularization_strength: Hyper = 0.0,
                 l2_regularization_strength: Hyper = 0.0, use_locking: bool = False,
                 name: str = "ProximalGradientDescent") -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "l1_regularization_strength": l1_regularization_strength,
                       "l2_regularization_strength": l2_regularization_strength}

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        return fobos_step(var, grad, hyper["learning_rate"], hyper["l1_regularization_strength"],
                          hyper["l2_regularization_strength"]), slots


__all__ = ["ProximalGradientDescentOptimizer", "fobos_step"]
