"""``AdagradDAOptimizer``: Adagrad dual averaging (Duchi et al., 2011), TF's ``ApplyAdagradDA``.

With ``T`` the global step plus one (TF reads the constructor's ``global_step`` before
``apply_gradients`` increments it), ``g`` and ``gg`` the gradient and squared-gradient sums::

    g += grad;  gg += grad**2
    var = -lr * sign(g) * max(|g| - l1 * T, 0) / (l2 * T * lr + sqrt(gg))

The variable is a function of the sums only: rows that a sparse gradient does not touch keep their
value until they are touched, and then jump to where dense updates would have put them.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([1.0, 2.0])), "global_step": jg.create_global_step()}
>>> opt = AdagradDAOptimizer(3.0, global_step="global_step")
>>> params, state = opt.apply_gradients([(jnp.array([0.1, 0.2]), "v")], params, global_step="global_step")
>>> [round(float(x), 5) for x in params["v"].value], int(params["global_step"].value)
([-0.90453, -1.60357], 1)
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer
from jaxgraph.variables import Variable


class AdagradDAOptimizer(Optimizer):
    """TF1's AdagradDA. ``global_step`` (a Variable of the parameter tree, or its name) is required, as
    in TF. Slots ``"gradient_accumulator"`` (zeros) and ``"gradient_squared_accumulator"``
    (``initial_gradient_squared_accumulator_value``)."""

    _slot_names = ("gradient_accumulator", "gradient_squared_accumulator")

    def __init__(self, learning_rate: Hyper, global_step: Variable | str,
                 initial_gradient_squared_accumulator_value: float = 0.1,
                 l1_regularization_strength: float = 0.0, l2_regularization_strength: float = 0.0,
                 use_locking: bool = False, name: str = "AdagradDA") -> None:
        if initial_gradient_squared_accumulator_value <= 0.0:
            raise ValueError("initial_gradient_squared_accumulator_value must be positive: "
                             f"{initial_gradient_squared_accumulator_value}")
        if global_step is None:
            raise ValueError(
                "AdagradDAOptimizer needs global_step: a Variable of the parameter tree or its name, e.g. "
                "jaxgraph.create_global_step() (TF: Tried to convert 'input' to a tensor and failed. "
                "Error: None values not supported.)")
        super().__init__(use_locking, name)
        self._hyper = {"learning_rate": learning_rate, "l1_regularization_strength": l1_regularization_strength,
                       "l2_regularization_strength": l2_regularization_strength}
        self._global_step = global_step
        self._initial_value = initial_gradient_squared_accumulator_value

    def _slot_initial_value(self, slot_name, value):
        if slot_name == "gradient_squared_accumulator":
            return jnp.full_like(value, self._initial_value)
        return jnp.zeros_like(value)

    def _prepare(self, step, read_global_step):
        hyper = super()._prepare(step, read_global_step)
        hyper["global_step"] = read_global_step(self._global_step) + 1  # TF: identity(global_step) + 1
        return hyper

    def _sums(self, grad, slots):
        return {"gradient_accumulator": slots["gradient_accumulator"] + grad,
                "gradient_squared_accumulator": slots["gradient_squared_accumulator"] + grad * grad}

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        lr, t = hyper["learning_rate"], hyper["global_step"]
        new = self._sums(grad, slots)
        g, gg = new["gradient_accumulator"], new["gradient_squared_accumulator"]
        var = (lr * -1 * jnp.sign(g) * jnp.maximum(jnp.abs(g) - t * hyper["l1_regularization_strength"], 0)
               / (hyper["l2_regularization_strength"] * (t * lr) + jnp.sqrt(gg)))
        return var, new

    # SparseApplyAdagradDA divides through by T * lr: the same value, another rounding.
    def _apply_sparse_rows(self, grad, var, slots, hyper, non_slots):
        lr, t = hyper["learning_rate"], hyper["global_step"]
        new = self._sums(grad, slots)
        g, gg = new["gradient_accumulator"], new["gradient_squared_accumulator"]
        var = (-1 * jnp.sign(g) * jnp.maximum(jnp.abs(g) / t - hyper["l1_regularization_strength"], 0)
               / (hyper["l2_regularization_strength"] + jnp.sqrt(gg) / (t * lr)))
        return var, new


__all__ = ["AdagradDAOptimizer"]
