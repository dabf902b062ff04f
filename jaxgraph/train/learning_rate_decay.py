"""TF1's learning-rate decay functions (``tf.compat.v1.train.exponential_decay`` and friends).

Each function takes ``(learning_rate, global_step, ...)`` with TF1's signature, defaults and formula
(TF 2.x computes them with ``keras.optimizers.schedules``; the algebraic form here is the same, so
the numbers agree to float rounding). What comes back depends on ``global_step``:

* **a step value** (a number or an integer array, traced or not): the decayed learning rate at that
  step, a scalar array. TF1 returns a tensor of the global step; in jaxgraph a step function that reads
  ``params["global_step"].value`` and calls the decay function gets exactly that.
* **``None`` or the global-step Variable**: a :class:`LearningRateSchedule`, ``step -> learning rate``.
  Give it to an optimizer as its learning rate and ``apply_gradients(..., global_step=...)`` evaluates
  it at that global step (before the increment; the state's ``iterations`` without one), which is how
  TF1's graph re-reads ``global_step`` on every run. (Passing the Variable does not freeze its
  current value: a jaxgraph Variable is immutable, so reading it once would train at that step's rate
  forever.)

>>> import jax.numpy as jnp
>>> float(exponential_decay(0.5, 100, decay_steps=100, decay_rate=0.96))    # at step 100
0.47999998927116394
>>> lr = exponential_decay(0.5, None, decay_steps=100, decay_rate=0.96, staircase=True)
>>> lr
LearningRateSchedule(exponential_decay, learning_rate=0.5, decay_steps=100, decay_rate=0.96, staircase=True)
>>> [round(float(lr(s)), 4) for s in (0, 99, 100, 250)]
[0.5, 0.5, 0.48, 0.4608]

The dtype is the learning rate's (a Python float gives float32), as in TF; the step is cast to it.
Unlike TF, a ``decay_steps`` that is not positive raises instead of yielding ``0.0`` or ``NaN``, and
``noisy_linear_cosine_decay`` needs an explicit ``key`` (JAX has no global random state).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.variables import Variable

__all__ = [
    "LearningRateSchedule",
    "cosine_decay",
    "cosine_decay_restarts",
    "exponential_decay",
    "inverse_time_decay",
    "linear_cosine_decay",
    "natural_exp_decay",
    "noisy_linear_cosine_decay",
    "piecewise_constant",
    "piecewise_constant_decay",
    "polynomial_decay",
]


class LearningRateSchedule:
    """A decay function waiting for its step: ``schedule(step) -> learning rate`` (a scalar array).

    Made by the decay functions when ``global_step`` is ``None`` or a Variable. Optimizers call a
    one-argument hyper-parameter with the step. ``global_step_name`` is the name of the Variable it was
    made from (``None`` otherwise), for reference only: the step comes from whoever calls it.
    """

    def __init__(self, fn: Callable[[Any], jax.Array], description: str, global_step_name: str | None = None):
        self._fn = fn
        self._description = description
        self.global_step_name = global_step_name

    def __call__(self, step: Any) -> jax.Array:
        return self._fn(step)

    def __repr__(self) -> str:
        return f"LearningRateSchedule({self._description})"


def _describe(fn_name: str, **kwargs: Any) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if v is not None and v is not False)
    return f"{fn_name}, {shown}" if shown else fn_name


def _float_rate(learning_rate: Any, fn_name: str) -> jax.Array:
    if isinstance(learning_rate, Variable):
        learning_rate = learning_rate.value
    rate = jnp.asarray(learning_rate)
    if not jnp.issubdtype(rate.dtype, jnp.floating):
        # TF computes in the learning rate's dtype and then fails inside Pow for an int one.
        raise TypeError(f"{fn_name}: learning_rate must be a floating-point number, got dtype {rate.dtype}")
    return rate


def _positive(value: Any, what: str, fn_name: str) -> None:
    if isinstance(value, jax.core.Tracer):
        return
    if np.ndim(value) != 0:
        raise ValueError(f"{fn_name}: {what} must be a scalar, got shape {np.shape(value)}")
    if not float(value) > 0:
        raise ValueError(f"{fn_name}: {what} must be positive, got {value!r} (TF would compute 0.0 or NaN)")


def _step_value(step: Any, dtype: Any, fn_name: str) -> jax.Array:
    if isinstance(step, Variable):
        step = step.value
    step = jnp.asarray(step)
    if step.ndim != 0 or not (jnp.issubdtype(step.dtype, jnp.integer) or jnp.issubdtype(step.dtype, jnp.floating)):
        raise TypeError(f"{fn_name}: global_step must be a scalar number, got {step.dtype}{list(step.shape)}")
    return step.astype(dtype)


def _as_schedule_or_value(fn_name: str, global_step: Any, compute: Callable[[Any], jax.Array], **shown: Any) -> Any:
    """Evaluate ``compute`` at ``global_step``, or wrap it as a schedule (``None`` or a Variable)."""
    if global_step is None or isinstance(global_step, Variable):
        if isinstance(global_step, Variable) and global_step.shape != ():
            raise ValueError(f"{fn_name}: global_step must be a scalar Variable, got shape {global_step.shape}")
        name = global_step.name if isinstance(global_step, Variable) else None
        return LearningRateSchedule(compute, _describe(fn_name, **shown), name)
    return compute(global_step)


Formula = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def _decay(fn_name: str, learning_rate: Any, global_step: Any, horizon_name: str, horizon: Any, formula: Formula,
           **shown: Any) -> Any:
    """The common frame: TF's dtype rule (the learning rate's), checks, and the value-or-schedule choice.

    ``formula(rate, step, horizon)`` gets the step and the horizon (``decay_steps``) cast to the rate's dtype.
    """
    rate = _float_rate(learning_rate, fn_name)
    _positive(horizon, horizon_name, fn_name)
    dtype = rate.dtype

    def compute(step: Any) -> jax.Array:
        return formula(rate, _step_value(step, dtype, fn_name), jnp.asarray(horizon, dtype))

    return _as_schedule_or_value(fn_name, global_step, compute, learning_rate=learning_rate,
                                 **{horizon_name: horizon}, **shown)


def _ratio_decay(fn_name: str, learning_rate: Any, global_step: Any, decay_steps: Any, decay_rate: Any,
                 staircase: bool, formula: Callable[[jax.Array, jax.Array], jax.Array]) -> Any:
    """The frame of the three ``decay_rate`` schedules: ``formula(rate, p)`` with ``p = global_step /
    decay_steps``, floored when ``staircase``."""

    def ratio_formula(rate: jax.Array, step: jax.Array, horizon: jax.Array) -> jax.Array:
        p = step / horizon
        return formula(rate, jnp.floor(p) if staircase else p)

    return _decay(fn_name, learning_rate, global_step, "decay_steps", decay_steps, ratio_formula,
                  decay_rate=decay_rate, staircase=staircase)


def exponential_decay(learning_rate: Any, global_step: Any, decay_steps: Any, decay_rate: Any,
                      staircase: bool = False, name: str | None = None) -> Any:
    """``learning_rate * decay_rate ** (global_step / decay_steps)``; ``staircase`` floors the exponent.

    >>> float(exponential_decay(1.0, 5, 10, 0.5))
    0.7071067690849304
    """
    del name
    return _ratio_decay("exponential_decay", learning_rate, global_step, decay_steps, decay_rate, staircase,
                        lambda rate, p: rate * jnp.power(jnp.asarray(decay_rate, rate.dtype), p))


def natural_exp_decay(learning_rate: Any, global_step: Any, decay_steps: Any, decay_rate: Any,
                      staircase: bool = False, name: str | None = None) -> Any:
    """``learning_rate * exp(-decay_rate) ** (global_step / decay_steps)`` (TF 2.x's form of
    ``learning_rate * exp(-decay_rate * p)``); ``staircase`` floors the exponent.

    >>> round(float(natural_exp_decay(1.0, 10, 10, 0.5)), 6)
    0.606531
    """
    del name

    def formula(rate: jax.Array, p: jax.Array) -> jax.Array:
        # TF converts decay_rate to a float32 tensor before exp, then casts to the learning rate's dtype.
        natural = jnp.exp(-jnp.asarray(decay_rate, jnp.float32)).astype(rate.dtype)
        return rate * jnp.power(natural, p)

    return _ratio_decay("natural_exp_decay", learning_rate, global_step, decay_steps, decay_rate, staircase, formula)


def inverse_time_decay(learning_rate: Any, global_step: Any, decay_steps: Any, decay_rate: Any,
                       staircase: bool = False, name: str | None = None) -> Any:
    """``learning_rate / (1 + decay_rate * global_step / decay_steps)``; ``staircase`` floors the ratio.

    >>> float(inverse_time_decay(1.0, 10, 10, 0.5))
    0.6666666865348816
    >>> [round(float(inverse_time_decay(1.0, 15, 10, 0.5, staircase=s)), 4) for s in (False, True)]  # p = 1.5, 1
    [0.5714, 0.6667]
    """
    del name
    return _ratio_decay("inverse_time_decay", learning_rate, global_step, decay_steps, decay_rate, staircase,
                        lambda rate, p: rate / (jnp.ones((), rate.dtype) + jnp.asarray(decay_rate, rate.dtype) * p))


def polynomial_decay(learning_rate: Any, global_step: Any, decay_steps: Any, end_learning_rate: Any = 0.0001,
                     power: Any = 1.0, cycle: bool = False, name: str | None = None) -> Any:
    """``(learning_rate - end) * (1 - step / decay_steps) ** power + end``, the step capped at
    ``decay_steps``; with ``cycle`` the horizon grows to the next multiple of ``decay_steps`` instead.

    >>> float(polynomial_decay(1.0, 5, 10, end_learning_rate=0.0))
    0.5
    >>> round(float(polynomial_decay(1.0, 25, 10, cycle=True)), 5)   # horizon 30
    0.16675
    """
    del name

    def formula(rate: jax.Array, step: jax.Array, horizon: jax.Array) -> jax.Array:
        end = jnp.asarray(end_learning_rate, rate.dtype)
        if cycle:
            # The first multiple of decay_steps above the step; 1 at step 0.
            multiplier = jnp.where(step == 0, jnp.ones((), rate.dtype), jnp.ceil(step / horizon))
            horizon = horizon * multiplier
        else:
            step = jnp.minimum(step, horizon)
        p = step / horizon
        # p <= 1 exactly in TF; XLA may compute step / horizon as step * (1 / horizon) with a fused
        # multiply-add, leaving 1 - p a hair below zero at p = 1, where a fractional power is NaN.
        return (rate - end) * jnp.power(jnp.maximum(1 - p, 0), jnp.asarray(power, rate.dtype)) + end

    return _decay("polynomial_decay", learning_rate, global_step, "decay_steps", decay_steps, formula,
                  end_learning_rate=end_learning_rate, power=power, cycle=cycle)


def _dtype_name(dtype: Any) -> str:
    return f"<dtype: '{jnp.dtype(dtype).name}'>"


def piecewise_constant(x: Any, boundaries: Sequence[Any], values: Sequence[Any], name: str | None = None) -> Any:
    """``values[0]`` while ``x <= boundaries[0]``, ``values[i]`` while ``boundaries[i-1] < x <=
    boundaries[i]``, ``values[-1]`` after the last boundary.

    TF's checks: ``len(values) == len(boundaries) + 1``, boundaries of ``x``'s dtype kind (integer
    boundaries for an integer step), values all of one dtype. Boundaries must also be in increasing
    order (TF fails at run time for some steps when they are not).

    >>> [float(piecewise_constant(s, [100, 200], [1.0, 0.5, 0.1])) for s in (100, 101, 201)]
    [1.0, 0.5, 0.10000000149011612]
    """
    del name
    boundaries = list(boundaries)
    values = list(values)
    if len(boundaries) != len(values) - 1:
        raise ValueError("The length of boundaries should be 1 less than the length of values")
    value_arrays = [jnp.asarray(v) for v in values]
    for v in value_arrays[1:]:
        if v.dtype != value_arrays[0].dtype:
            raise ValueError(
                "Values must have elements all with the same dtype "
                f"({_dtype_name(value_arrays[0].dtype)} vs {_dtype_name(v.dtype)})."
            )
    bounds = [jnp.asarray(b) for b in boundaries]
    concrete = [np.asarray(b) for b in boundaries if not isinstance(b, jax.core.Tracer)]
    if len(concrete) == len(bounds) and any(
        np.any(prev > nxt) for prev, nxt in zip(concrete[:-1], concrete[1:], strict=True)
    ):
        raise ValueError(f"piecewise_constant: boundaries must be in increasing order, got {boundaries}")
    stacked_values = jnp.stack(value_arrays)

    def compute(step: Any) -> jax.Array:
        step = jnp.asarray(step.value if isinstance(step, Variable) else step)
        for b in bounds:
            same_kind = jnp.issubdtype(b.dtype, jnp.integer) == jnp.issubdtype(step.dtype, jnp.integer)
            if not same_kind:
                raise ValueError(
                    f"Boundaries ({_dtype_name(b.dtype)}) must have the same dtype as x ({_dtype_name(step.dtype)})."
                )
        # The number of boundaries strictly below the step picks the value (TF's exclusive tf.case).
        index = sum((step > b.astype(step.dtype)).astype(jnp.int32) for b in bounds) if bounds else 0
        return stacked_values[index]

    return _as_schedule_or_value("piecewise_constant", x, compute, boundaries=boundaries, values=values)


piecewise_constant_decay = piecewise_constant


def _cosine(fraction: jax.Array) -> jax.Array:
    # TF multiplies by a float32 constant pi, then takes the cosine in the learning rate's dtype.
    pi = jnp.asarray(math.pi, jnp.float32).astype(fraction.dtype)
    return 0.5 * (1.0 + jnp.cos(pi * fraction))


def cosine_decay(
    learning_rate: Any, global_step: Any, decay_steps: Any, alpha: Any = 0.0, name: str | None = None
) -> Any:
    """``learning_rate * ((1 - alpha) * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)) + alpha)``.

    >>> round(float(cosine_decay(1.0, 5, 10)), 6)
    0.5
    """
    del name

    def formula(rate: jax.Array, step: jax.Array, horizon: jax.Array) -> jax.Array:
        step = jnp.minimum(step, horizon)
        return rate * ((1 - alpha) * _cosine(step / horizon) + alpha)

    return _decay("cosine_decay", learning_rate, global_step, "decay_steps", decay_steps, formula, alpha=alpha)


def cosine_decay_restarts(learning_rate: Any, global_step: Any, first_decay_steps: Any, t_mul: Any = 2.0,
                          m_mul: Any = 1.0, alpha: Any = 0.0, name: str | None = None) -> Any:
    """Cosine decay with warm restarts (SGDR): period ``i`` lasts ``first_decay_steps * t_mul ** i``
    steps and starts at ``learning_rate * m_mul ** i``.

    >>> float(cosine_decay_restarts(1.0, 3, 5)) == float(cosine_decay(1.0, 3, 5))
    True
    >>> float(cosine_decay_restarts(1.0, 5, 5))    # a restart
    1.0
    """
    del name

    def formula(rate: jax.Array, step: jax.Array, first: jax.Array) -> jax.Array:
        dtype = rate.dtype
        a, tm, mm = (jnp.asarray(v, dtype) for v in (alpha, t_mul, m_mul))
        fraction = step / first
        # TF picks one of two formulas with tf.cond on t_mul == 1; both are computed and one selected.
        safe_tm = jnp.where(tm == 1.0, jnp.asarray(2.0, dtype), tm)
        i_geo = jnp.floor(jnp.log(1.0 - fraction * (1.0 - safe_tm)) / jnp.log(safe_tm))
        sum_r = (1.0 - safe_tm**i_geo) / (1.0 - safe_tm)
        frac_geo = (fraction - sum_r) / safe_tm**i_geo
        i_lin = jnp.floor(fraction)
        i_restart = jnp.where(tm == 1.0, i_lin, i_geo)
        fraction = jnp.where(tm == 1.0, fraction - i_lin, frac_geo)
        cosine_decayed = mm**i_restart * _cosine(fraction)
        return rate * ((1 - a) * cosine_decayed + a)

    return _decay("cosine_decay_restarts", learning_rate, global_step, "first_decay_steps", first_decay_steps,
                  formula, t_mul=t_mul, m_mul=m_mul, alpha=alpha)


def _linear_cosine(step: jax.Array, horizon: jax.Array, num_periods: Any, noise: Any, alpha: Any, beta: Any
                   ) -> jax.Array:
    """``(alpha + linear + noise) * cosine + beta``, the step capped at the horizon."""
    dtype = step.dtype
    step = jnp.minimum(step, horizon)
    linear_decayed = (horizon - step) / horizon + noise
    fraction = 2.0 * jnp.asarray(num_periods, dtype) * (step / horizon)
    return (jnp.asarray(alpha, dtype) + linear_decayed) * _cosine(fraction) + jnp.asarray(beta, dtype)


def linear_cosine_decay(learning_rate: Any, global_step: Any, decay_steps: Any, num_periods: Any = 0.5,
                        alpha: Any = 0.0, beta: Any = 0.001, name: str | None = None) -> Any:
    """``learning_rate * ((alpha + linear) * cosine + beta)`` with ``linear = (decay_steps - step) /
    decay_steps`` and ``cosine = 0.5 * (1 + cos(pi * 2 * num_periods * step / decay_steps))``, the step
    capped at ``decay_steps``.

    >>> round(float(linear_cosine_decay(1.0, 5, 10)), 6)
    0.251
    """
    del name

    def formula(rate: jax.Array, step: jax.Array, horizon: jax.Array) -> jax.Array:
        return rate * _linear_cosine(step, horizon, num_periods, 0.0, alpha, beta)

    return _decay("linear_cosine_decay", learning_rate, global_step, "decay_steps", decay_steps, formula,
                  num_periods=num_periods, alpha=alpha, beta=beta)


def noisy_linear_cosine_decay(learning_rate: Any, global_step: Any, decay_steps: Any, initial_variance: Any = 1.0,
                              variance_decay: Any = 0.55, num_periods: Any = 0.5, alpha: Any = 0.0, beta: Any = 0.001,
                              name: str | None = None, *, key: jax.Array | None = None) -> Any:
    """:func:`linear_cosine_decay` with Gaussian noise added to the linear part, of variance
    ``initial_variance / (1 + step) ** variance_decay``.

    ``key`` (a ``jax.random`` key) is required: TF draws from its global seed, JAX has none. A schedule
    draws fresh noise for each step from ``jax.random.fold_in(key, step)``.

    >>> import jax
    >>> lr = noisy_linear_cosine_decay(1.0, None, 10, key=jax.random.PRNGKey(0))
    >>> float(lr(3)) == float(lr(3)), float(lr(3)) != float(lr(4))
    (True, True)
    """
    del name
    if key is None:
        raise ValueError(
            "noisy_linear_cosine_decay needs key=jax.random.PRNGKey(...) for its noise (JAX has no global "
            "random state)"
        )
    scheduled = global_step is None or isinstance(global_step, Variable)

    def formula(rate: jax.Array, step: jax.Array, horizon: jax.Array) -> jax.Array:
        capped = jnp.minimum(step, horizon)
        variance = jnp.asarray(initial_variance, rate.dtype) / jnp.power(
            1.0 + capped, jnp.asarray(variance_decay, rate.dtype))
        step_key = jax.random.fold_in(key, step.astype(jnp.uint32)) if scheduled else key
        noise = jax.random.normal(step_key, (), rate.dtype) * jnp.sqrt(variance)
        return rate * _linear_cosine(step, horizon, num_periods, noise, alpha, beta)

    return _decay("noisy_linear_cosine_decay", learning_rate, global_step, "decay_steps", decay_steps, formula,
                  initial_variance=initial_variance, variance_decay=variance_decay, num_periods=num_periods,
                  alpha=alpha, beta=beta)
