"""``AdamOptimizer`` (TF1's exact form) and ``LazyAdamOptimizer``.

TF1 folds the bias correction into the step size and adds epsilon to the *uncorrected* sqrt(v)::

    alpha = lr * sqrt(1 - beta2_power) / (1 - beta1_power)
    m += (grad - m) * (1 - beta1);  v += (grad**2 - v) * (1 - beta2)
    var -= alpha * m / (sqrt(v) + epsilon)

``beta1_power``/``beta2_power`` start at beta1/beta2, are shared by all variables, and advance once per
``apply_gradients``. TF's sparse path is not lazy: every row of m and v decays and every row moves.
``LazyAdamOptimizer`` updates only the rows in the gradient.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0]))}
>>> opt = AdamOptimizer()
>>> params, state = opt.apply_gradients([(jnp.array([0.1, 0.1]), "v")], params)
>>> [round(float(x), 6) for x in params["v"].value]
[0.999, 1.999]
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer

__all__ = ["AdamOptimizer", "LazyAdamOptimizer"]


class AdamOptimizer(Optimizer):
    """TF1's Adam. Slots ``"m"``, ``"v"`` (zeros); non-slots ``"beta1_power"``, ``"beta2_power"``."""

    _slot_names = ("m", "v")

    def __init__(self, learning_rate: Hyper = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, use_locking: bool = False, name: str = "Adam") -> None:
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "beta1": beta1, "beta2": beta2, "epsilon": epsilon}

    def _create_non_slots(self):
        return {"beta1_power": jnp.asarray(self._hyper["beta1"], jnp.float32),
                "beta2_power": jnp.asarray(self._hyper["beta2"], jnp.float32)}

    def _finish(self, non_slots, hyper):
        return {"beta1_power": non_slots["beta1_power"] * hyper["beta1"].astype(jnp.float32),
                "beta2_power": non_slots["beta2_power"] * hyper["beta2"].astype(jnp.float32)}

    @staticmethod
    def _alpha(hyper, non_slots, dtype):
        b1p, b2p = non_slots["beta1_power"].astype(dtype), non_slots["beta2_power"].astype(dtype)
        return hyper["learning_rate"] * jnp.sqrt(1 - b2p) / (1 - b1p)

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        b1, b2 = hyper["beta1"], hyper["beta2"]
        m = slots["m"] + (grad - slots["m"]) * (1 - b1)
        v = slots["v"] + (grad * grad - slots["v"]) * (1 - b2)
        return var - m * self._alpha(hyper, non_slots, var.dtype) / (jnp.sqrt(v) + hyper["epsilon"]), {"m": m, "v": v}

    # TF's sparse Adam is not lazy: m and v decay on every row, then every row moves.
    def _apply_sparse(self, grad, var, slots, hyper, non_slots):
        b1, b2 = hyper["beta1"], hyper["beta2"]
        idx, g = grad.indices, grad.values
        m = (slots["m"] * b1).at[idx].add(g * (1 - b1), mode="drop")
        v = (slots["v"] * b2).at[idx].add(g * g * (1 - b2), mode="drop")
        return var - self._alpha(hyper, non_slots, var.dtype) * m / (jnp.sqrt(v) + hyper["epsilon"]), {"m": m, "v": v}


class LazyAdamOptimizer(AdamOptimizer):
    """Adam whose sparse updates touch only the rows in the gradient (O(batch) per step).

    Dense gradients follow :class:`AdamOptimizer` exactly; for sparse ones, untouched rows keep their
    m, v and value (the rule of TF's ``tf.contrib.opt.LazyAdamOptimizer``). Its default name is
    ``"Adam"``, as the contrib class inherits it from ``AdamOptimizer``: a TF1 LazyAdam job's checkpoint
    names the slots ``<var>/Adam`` and ``<var>/Adam_1``.
    """

    def __init__(self, learning_rate: Hyper = 0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, use_locking: bool = False, name: str = "Adam") -> None:
        super().__init__(learning_rate, beta1, beta2, epsilon, use_locking, name)

    _apply_sparse = Optimizer._apply_sparse  # the base's lazy row path, not Adam's

    # tf.contrib's LazyAdam: m = beta1 * m + (1 - beta1) * g on the gathered rows.
    def _apply_sparse_rows(self, grad, var, slots, hyper, non_slots):
        b1, b2 = hyper["beta1"], hyper["beta2"]
        m = slots["m"] * b1 + grad * (1 - b1)
        v = slots["v"] * b2 + grad * grad * (1 - b2)
        return var - self._alpha(hyper, non_slots, var.dtype) * m / (jnp.sqrt(v) + hyper["epsilon"]), {"m": m, "v": v}


__all__ = ["AdamOptimizer", "LazyAdamOptimizer"]
