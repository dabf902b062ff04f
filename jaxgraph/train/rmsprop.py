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

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer, _take_rows, cast_hyper

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

    def _step(self, grad, slots, hyper, dtype, sparse):
        h = cast_hyper(hyper, dtype)
        lr, rho, mu, eps = h["learning_rate"], h["decay"], h["momentum"], h["epsilon"]
        one = jnp.ones((), dtype)
        if sparse:
            ms = slots["rms"] * rho + grad * grad * (one - rho)
        else:
            ms = slots["rms"] + (grad * grad - slots["rms"]) * (one - rho)
        new = {"rms": ms}
        denom = ms + eps
        if self._centered:
            mg = slots["mg"] * rho + grad * (one - rho) if sparse else slots["mg"] + (grad - slots["mg"]) * (one - rho)
            new["mg"] = mg
            denom = ms - mg * mg + eps
        new["momentum"] = slots["momentum"] * mu + grad * lr / jnp.sqrt(denom)
        return new

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        new = self._step(grad, slots, hyper, var.dtype, sparse=False)
        return var - new["momentum"], new

    def _apply_sparse(self, grad, var, slots, hyper, non_slots):
        idx = grad.indices
        rows = {k: _take_rows(v, idx) for k, v in slots.items()}
        new_rows = self._step(grad.values, rows, hyper, var.dtype, sparse=True)
        new = {k: slots[k].at[idx].set(new_rows[k], mode="drop") for k in slots}
        return var.at[idx].add(-new_rows["momentum"], mode="drop"), new
