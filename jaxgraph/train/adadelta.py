"""``AdadeltaOptimizer`` (Zeiler, 2012), TF's ``ApplyAdadelta`` kernel::

    accum        = rho * accum + (1 - rho) * grad**2
    update       = sqrt(accum_update + epsilon) / sqrt(accum + epsilon) * grad
    var         -= lr * update
    accum_update = rho * accum_update + (1 - rho) * update**2

Sparse updates are lazy (``SparseApplyAdadelta`` computes the same per row).

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = AdadeltaOptimizer(1.0, rho=0.95, epsilon=1e-8)
>>> params, state = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params)
>>> [round(float(x), 6) for x in params["v"].value], opt.get_slot(state, "v", "accum_update").name
([0.999553, 1.999553], 'v/Adadelta_1')
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer


class AdadeltaOptimizer(Optimizer):
    """TF1's Adadelta. Slots ``"accum"`` and ``"accum_update"`` (zeros). TF1's epsilon is 1e-8."""

    _slot_names = ("accum", "accum_update")

    def __init__(self, learning_rate: Hyper = 0.001, rho: Hyper = 0.95, epsilon: Hyper = 1e-8,
                 use_locking: bool = False, name: str = "Adadelta") -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "rho": rho, "epsilon": epsilon}

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        rho, eps = hyper["rho"], hyper["epsilon"]
        accum = slots["accum"] * rho + grad * grad * (1 - rho)
        update = jnp.sqrt(slots["accum_update"] + eps) * jnp.reciprocal(jnp.sqrt(accum + eps)) * grad
        accum_update = slots["accum_update"] * rho + update * update * (1 - rho)
        return var - update * hyper["learning_rate"], {"accum": accum, "accum_update": accum_update}


__all__ = ["AdadeltaOptimizer"]
