"""``RMSPropOptimizer``: TF1's RMSProp, ``rms`` starting at ONE and epsilon inside the sqrt.

Dense (``ApplyRMSProp``)::

    ms  += (grad**2 - ms) * (1 - decay)
    mom  = mom * momentum + lr * grad / sqrt(ms + epsilon)     # centered: ms - mg**2 + epsilon
    var -= mom

Sparse updates are lazy and use the kernel's ``ms * decay + grad**2 * (1 - decay)`` form.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = RMSPropOptimizer(2.0, decay=0.9, momentum=0.0, epsilon=1.0)
>>> params, state = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params)
>>> [round(float(x), 5) for x in params["v"].value]
[0.85494, 1.85494]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer


def _dense_average(avg: jax.Array, x: jax.Array, rho: jax.Array) -> jax.Array:
    return avg + (x - avg) * (1 - rho)  # ApplyRMSProp: ms += (g^2 - ms) * (1 - rho)


def _sparse_average(avg: jax.Array, x: jax.Array, rho: jax.Array) -> jax.Array:
    return avg * rho + x * (1 - rho)  # SparseApplyRMSProp: same math, another rounding

__all__ = ["RMSPropOptimizer"]


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp. Slots: ``"rms"`` (ones), ``"momentum"`` (zeros), ``"mg"`` (zeros, centered only)."""

    def __init__(self, learning_rate: Hyper, decay: Hyper = 0.9, momentum: Hyper = 0.0,
                 epsilon: Hyper = 1e-10, use_locking: bool = False, centered: bool = False,
                 name: str = "RMSProp") -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "decay": decay, "momentum": momentum, "epsilon": epsilon}
        self._centered = centered
        # TF's creation order, which decides the slot variables' "_1" suffixes.
        self._slot_names = ("rms", "mg", "momentum") if centered else ("rms", "momentum")

    def _slot_initial_value(self, slot_name, value):
        return jnp.ones_like(value) if slot_name == "rms" else jnp.zeros_like(value)

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        return self._update(grad, var, slots, hyper, _dense_average)

    def _apply_sparse_rows(self, grad, var, slots, hyper, non_slots):
        return self._update(grad, var, slots, hyper, _sparse_average)

    def _update(self, grad, var, slots, hyper, average: Callable[..., jax.Array]):
        rho = hyper["decay"]
        new = {"rms": average(slots["rms"], grad * grad, rho)}
        denom = new["rms"] + hyper["epsilon"]
        if self._centered:
            new["mg"] = average(slots["mg"], grad, rho)
            denom = new["rms"] - new["mg"] * new["mg"] + hyper["epsilon"]
        new["momentum"] = slots["momentum"] * hyper["momentum"] + grad * hyper["learning_rate"] / jnp.sqrt(denom)
        return var - new["momentum"], new


__all__ = ["RMSPropOptimizer"]
