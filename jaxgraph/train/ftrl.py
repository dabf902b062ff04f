"""``FtrlOptimizer``: FTRL-Proximal (McMahan et al., 2013), TF's ``ApplyFtrl`` / ``ApplyFtrlV2`` kernels.

With ``p = -learning_rate_power`` (``sqrt`` on the ``-0.5`` fast path) and ``g_s = grad + 2 * l2_shrinkage * var``::

    new_accum = accum + grad**2
    linear   += g_s - (new_accum**p - accum**p) / lr * var
    quadratic = new_accum**p / lr + 2 * l2          # l2 + beta / (2 * lr), as TF folds beta in
    var       = (l1 * sign(linear) - linear) / quadratic  if |linear| > l1  else 0
    accum     = new_accum

Sparse updates are lazy (TF's ``SparseApplyFtrl`` computes the same per row): shrinkage and the
accumulators touch only the rows in the gradient.

>>> import jax.numpy as jnp, jaxgraph as jg
>>> params = {"v": jg.Variable(jnp.array([0.0, 0.0]))}
>>> opt = FtrlOptimizer(3.0, initial_accumulator_value=0.1)
>>> state = opt.init(params)
>>> for _ in range(3):
...     params, state = opt.apply_gradients([(jnp.array([0.1, 0.2]), "v")], params, state)
>>> [round(float(x), 4) for x in params["v"].value]  # ftrl_test: [-2.60260963, -4.29698515]
[-2.6026, -4.297]
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxgraph.train.optimizer import Hyper, Optimizer


class FtrlOptimizer(Optimizer):
    """TF1's FTRL. Slots ``"accum"`` (``initial_accumulator_value``) and ``"linear"`` (zeros), named
    ``<var>/<accum_name or name>`` and ``<var>/<linear_name or name>`` (``"w/Ftrl"``, ``"w/Ftrl_1"``)."""

    _slot_names = ("accum", "linear")

    def __init__(self, learning_rate: Hyper, learning_rate_power: float = -0.5,
                 initial_accumulator_value: float = 0.1, l1_regularization_strength: float = 0.0,
                 l2_regularization_strength: float = 0.0, use_locking: bool = False, name: str = "Ftrl",
                 accum_name: str | None = None, linear_name: str | None = None,
                 l2_shrinkage_regularization_strength: float = 0.0, beta: float | None = None) -> None:
        super().__init__(use_locking, name)
        if initial_accumulator_value < 0.0:
            raise ValueError(f"initial_accumulator_value {initial_accumulator_value:f} needs to be positive or zero")
        if learning_rate_power > 0.0:
            raise ValueError(f"learning_rate_power {learning_rate_power:f} needs to be negative or zero")
        for arg, value in [("l1_regularization_strength", l1_regularization_strength),
                           ("l2_regularization_strength", l2_regularization_strength),
                           ("l2_shrinkage_regularization_strength", l2_shrinkage_regularization_strength)]:
            if value < 0.0:
                raise ValueError(f"{arg} {value:f} needs to be positive or zero")
        if isinstance(learning_rate, int | float) and not learning_rate > 0:
            # TF's kernel refuses it when it runs; a zero rate would divide by zero.
            raise ValueError(f"lr is not a positive scalar: {learning_rate}")
        self._hyper = {"learning_rate": learning_rate, "learning_rate_power": learning_rate_power,
                       "l1_regularization_strength": l1_regularization_strength,
                       "l2_regularization_strength": l2_regularization_strength,
                       "l2_shrinkage_regularization_strength": l2_shrinkage_regularization_strength,
                       "beta": 0.0 if beta is None else beta}
        self._initial_accumulator_value = initial_accumulator_value
        self._op_names = {"accum": accum_name or name, "linear": linear_name or name}
        # Static kernel choices, as TF makes them in Python: ApplyFtrlV2 only with shrinkage, sqrt for -0.5.
        self._shrinkage = l2_shrinkage_regularization_strength > 0.0
        self._sqrt_power = learning_rate_power == -0.5

    def _slot_initial_value(self, slot_name, value):
        return jnp.full_like(value, self._initial_accumulator_value) if slot_name == "accum" else jnp.zeros_like(value)

    def _slot_op_name(self, slot_name):
        return self._op_names[slot_name]

    def _prepare(self, step, read_global_step):
        hyper = super()._prepare(step, read_global_step)
        # TF's _prepare: "L2 regularization strength with beta added in", before the cast to var's dtype.
        hyper["l2_regularization_strength"] = hyper["l2_regularization_strength"] + hyper["beta"] / (
            2.0 * jnp.maximum(hyper["learning_rate"], 1e-36))
        return hyper

    def _apply_dense(self, grad, var, slots, hyper, non_slots):
        lr, l1, l2 = hyper["learning_rate"], hyper["l1_regularization_strength"], hyper["l2_regularization_strength"]
        power = jnp.sqrt if self._sqrt_power else (lambda x: x ** -hyper["learning_rate_power"])
        shrunk = grad + 2 * hyper["l2_shrinkage_regularization_strength"] * var if self._shrinkage else grad
        accum = slots["accum"] + grad * grad
        linear = slots["linear"] + shrunk - (power(accum) - power(slots["accum"])) / lr * var
        quadratic = power(accum) / lr + 2 * l2
        var = jnp.where(jnp.abs(linear) > l1, (l1 * jnp.sign(linear) - linear) / quadratic, 0)
        return var, {"accum": accum, "linear": linear}


__all__ = ["FtrlOptimizer"]
