"""The trainer's optimizers and its learning-rate schedule.

The rate decays linearly from ``--learning-rate`` to ``1e-4`` of it over the run's planned steps, as word2vec's
does. :func:`linear_decay` is the one place that says so: the optimizer evaluates it inside the compiled step,
and the progress bar, TensorBoard and the metrics evaluate the same function on the host.

>>> schedule = linear_decay(0.025, total_steps=1000)
>>> [round(float(schedule(step)), 9) for step in (0, 500, 1000, 2000)]   # float32: rounded for display
[0.025, 0.0125, 2.5e-06, 2.5e-06]
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import jaxgraph as jg

__all__ = ["DEFAULT_LEARNING_RATE", "OPTIMIZERS", "linear_decay", "make_optimizer"]

#: ``--optimizer`` choices and their default ``--learning-rate``.
DEFAULT_LEARNING_RATE = {"sgd": 0.025, "adagrad": 0.25, "lazyadam": 0.002}
OPTIMIZERS = tuple(DEFAULT_LEARNING_RATE)

Schedule = Callable[[jax.Array | int], jax.Array]


def linear_decay(learning_rate: float, total_steps: int, floor: float = 1e-4) -> Schedule:
    """``step -> learning_rate * max(floor, 1 - step / total_steps)`` in float32.

    ``step`` is the optimizer's step counter inside the compiled step, or a Python int on the host, where numpy
    evaluates the same expression (no device call between two training calls). The two agree to a few float32
    ulps, not bit for bit: XLA turns the division by a constant into a multiplication and fuses the subtraction.
    """

    def schedule(step: jax.Array | int) -> jax.Array:
        xp = np if isinstance(step, (int, np.integer)) else jnp
        frac = xp.asarray(step, xp.float32) / xp.float32(max(total_steps, 1))
        return learning_rate * xp.maximum(xp.float32(floor), 1.0 - frac)

    return schedule


def make_optimizer(name: str, schedule: Schedule) -> jg.train.Optimizer:
    """``--optimizer``: plain SGD (word2vec's), Adagrad or LazyAdam, all with sparse, in-place updates."""
    if name == "sgd":
        return jg.train.GradientDescentOptimizer(schedule)
    if name == "adagrad":
        return jg.train.AdagradOptimizer(schedule)
    if name == "lazyadam":
        return jg.train.LazyAdamOptimizer(schedule)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
