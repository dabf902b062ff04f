"""Learning-rate decay: TF's own test cases (ported from TF's ``learning_rate_decay_test.py``: the same
inputs and the same reference formulas), the schedule form, and TF's errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import train

STEPS = list(range(0, 1500, 250))


def close(value, expected, tol=1e-6):
    np.testing.assert_allclose(float(value), expected, rtol=tol, atol=tol)


# -- exponential / natural_exp / inverse_time -------------------------------------------------------
def test_exponential_continuous_and_staircase():
    close(train.exponential_decay(0.05, 5, 10, 0.96), 0.05 * 0.96 ** (5.0 / 10.0))     # testContinuous
    lr = train.exponential_decay(0.1, None, 3, 0.96, staircase=True)                     # testStaircase
    for step, expected in [(1, 0.1), (2, 0.1), (100, 0.1 * 0.96 ** (100 // 3))]:
        close(lr(step), expected)


@pytest.mark.parametrize("staircase", [False, True])
def test_natural_exp_and_inverse_time(staircase):
    k, rate = 10, 0.96
    for i in range(k + 1):
        p = (i // k) if staircase else i / k
        close(train.natural_exp_decay(0.1, i, k, rate, staircase=staircase), 0.1 * math.exp(-p * rate))
        close(train.inverse_time_decay(0.1, i, k, rate, staircase=staircase), 0.1 / (1 + p * rate))


# -- piecewise_constant ------------------------------------------------------------------------------
def test_piecewise_constant():
    lr = train.piecewise_constant(None, [100, 110, 120], [1.0, 0.1, 0.01, 0.001])
    for x, expected in [(-999, 1.0), (100, 1.0), (105, 0.1), (110, 0.1), (120, 0.01), (999, 0.001)]:
        close(lr(x), expected)
    assert int(train.piecewise_constant(5, [3], [1, 2])) == 2     # integer values give an integer result
    assert train.piecewise_constant(jnp.int32(4), [1, 2, 3], [0.4, 0.5, 0.6, 0.7]).dtype == jnp.float32


def test_piecewise_constant_errors():
    with pytest.raises(ValueError, match=r"Boundaries \(<dtype: 'float32'>\) must have the same dtype as x "
                                         r"\(<dtype: 'int32'>\)"):
        train.piecewise_constant(0, [-1.0, 1.0], [1, 2, 3])
    with pytest.raises(ValueError, match=r"Values must have elements all with the same dtype \(<dtype: 'float32'> "
                                         r"vs <dtype: 'int32'>\)"):
        train.piecewise_constant(0.0, [-1.0, 1.0], [1.0, 2, 3])
    with pytest.raises(ValueError, match="The length of boundaries should be 1 less than the length of values"):
        train.piecewise_constant(5, [3, 4], [1.0, 2.0])
    with pytest.raises(ValueError, match="increasing order"):
        train.piecewise_constant(5, [10, 5], [1.0, 2.0, 3.0])


# -- polynomial ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("power", [1.0, 0.5])   # LinearDecayTest and SqrtDecayTest
def test_polynomial(power):
    lr, end = 0.05, 0.001
    close(train.polynomial_decay(lr, 5, 10, 0.0, power=power), lr * 0.5**power)
    close(train.polynomial_decay(lr, 10, 10, end, power=power), end)
    close(train.polynomial_decay(lr, 5, 10, end, power=power), (lr - end) * 0.5**power + end)
    close(train.polynomial_decay(lr, 15, 10, end, power=power), end)
    close(train.polynomial_decay(lr, 15, 10, end, power=power, cycle=True), (lr - end) * 0.25**power + end)
    close(train.polynomial_decay(0.001, 0, 10, cycle=True), 0.001)   # testBeginWithCycle


def test_polynomial_fractional_power_at_the_end_under_jit():
    # At the end (1 - p == 0) a fractional power must give end_learning_rate, not NaN from rounding.
    schedule = train.polynomial_decay(0.2, None, 20, end_learning_rate=0.01, power=0.5)
    for s in (20, 21, 40):
        close(jax.jit(schedule)(jnp.int32(s)), 0.01)


# -- cosine family -------------------------------------------------------------------------------------
def np_cosine(step, decay_steps, alpha=0.0):
    step = min(step, decay_steps)
    return (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps)) + alpha


def np_restarts(step, decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0):
    fac = 1.0
    while step >= decay_steps:
        step -= decay_steps
        decay_steps *= t_mul
        fac *= m_mul
    return (1.0 - alpha) * fac * 0.5 * (1.0 + math.cos(math.pi * step / decay_steps)) + alpha


def np_linear_cosine(step, decay_steps, alpha=0.0, beta=0.001, num_periods=0.5):
    step = min(step, decay_steps)
    linear = (decay_steps - step) / decay_steps
    cosine = 0.5 * (1.0 + math.cos(math.pi * 2.0 * num_periods * step / decay_steps))
    return (alpha + linear) * cosine + beta


@pytest.mark.parametrize("alpha", [0.0, 0.1])
def test_cosine_decay(alpha):
    for step in STEPS:
        close(train.cosine_decay(1.0, step, 1000, alpha), np_cosine(step, 1000, alpha), tol=2e-6)


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.1}, {"m_mul": 0.9}, {"t_mul": 1.0}])
def test_cosine_decay_restarts(kwargs):
    for step in STEPS:
        close(train.cosine_decay_restarts(1.0, step, 1000, **kwargs), np_restarts(step, 1000, **kwargs), tol=5e-6)


@pytest.mark.parametrize("kwargs", [{}, {"alpha": 0.1, "beta": 1e-4, "num_periods": 5}])
def test_linear_cosine_decay(kwargs):
    for step in STEPS:
        close(train.linear_cosine_decay(1.0, step, 1000, **kwargs), np_linear_cosine(step, 1000, **kwargs))


def test_noisy_linear_cosine_decay():
    key = jax.random.PRNGKey(0)
    # Without variance it is linear_cosine_decay.
    for step in STEPS:
        close(train.noisy_linear_cosine_decay(1.0, step, 1000, initial_variance=0.0, key=key),
              np_linear_cosine(step, 1000))
    # The noise has the documented spread: std = sqrt(v0 / (1 + step) ** decay) on the linear part.
    lr = train.noisy_linear_cosine_decay(1.0, None, 1000, initial_variance=0.5, variance_decay=0.1,
                                         num_periods=0.0, beta=0.0, key=key)
    steps = jnp.arange(2000, dtype=jnp.int32) % 3   # steps 0, 1, 2; a different key for each entry below
    draws = jax.vmap(lambda i, s: train.noisy_linear_cosine_decay(
        1.0, s, 1000, initial_variance=0.5, variance_decay=0.1, num_periods=0.0, beta=0.0,
        key=jax.random.fold_in(key, i)))(jnp.arange(2000), steps)
    noise = np.asarray(draws) - np.asarray([(1000 - s) / 1000 for s in np.asarray(steps)])
    expected_std = np.sqrt(0.5 / (1.0 + np.asarray(steps)) ** 0.1)
    assert abs(np.std(noise / expected_std) - 1.0) < 0.05
    assert float(lr(7)) == float(lr(7)) and float(lr(7)) != float(lr(8))
    with pytest.raises(ValueError, match="needs key="):
        train.noisy_linear_cosine_decay(1.0, 5, 10)


# -- forms, dtypes and errors ----------------------------------------------------------------------------
def test_schedule_form_and_value_form_agree():
    step_var = jg.create_global_step()
    by_none = train.exponential_decay(0.5, None, 100, 0.96)
    by_var = train.exponential_decay(0.5, step_var, 100, 0.96)
    assert isinstance(by_none, train.LearningRateSchedule) and isinstance(by_var, train.LearningRateSchedule)
    assert by_var.global_step_name == "global_step"
    for s in (0, 7, 250):
        assert float(by_none(s)) == float(by_var(s)) == float(train.exponential_decay(0.5, s, 100, 0.96))
    assert "exponential_decay" in repr(by_none) and "decay_rate=0.96" in repr(by_none)


def test_schedule_under_jit_traces_once():
    lr = train.cosine_decay_restarts(0.1, None, 10)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def at(step):
        return lr(step)

    values = [float(at(jnp.int32(s))) for s in range(25)]
    for s, v in enumerate(values):
        close(v, 0.1 * np_restarts(s, 10))


def test_optimizer_takes_a_schedule():
    params = {"w": jg.Variable(jnp.array([1.0]), name="w")}
    opt = train.GradientDescentOptimizer(train.exponential_decay(0.5, None, 1, 0.5))   # 0.5, 0.25, ...
    state = opt.init(params)
    for _ in range(2):
        params, state = opt.apply_gradients([(jnp.array([1.0]), "w")], params, state)
    close(params["w"].value[0], 1.0 - 0.5 - 0.25)


def test_dtypes_follow_the_learning_rate():
    assert train.exponential_decay(0.5, 3, 10, 0.9).dtype == jnp.float32
    assert train.cosine_decay(jnp.bfloat16(1.0), 3, 10).dtype == jnp.bfloat16
    assert train.polynomial_decay(1.0, jnp.int32(3), 10).dtype == jnp.float32


@pytest.mark.parametrize("fn", [train.exponential_decay, train.natural_exp_decay, train.inverse_time_decay])
def test_errors(fn):
    with pytest.raises(TypeError, match="learning_rate must be a floating-point number"):
        fn(1, 5, 10, 0.5)
    with pytest.raises(ValueError, match="decay_steps must be positive, got 0"):
        fn(1.0, 5, 0, 0.5)
    with pytest.raises(TypeError, match="global_step must be a scalar number"):
        fn(1.0, jnp.array([1, 2]), 10, 0.5)
    with pytest.raises(ValueError, match="scalar Variable"):
        fn(1.0, jg.Variable(jnp.zeros(2), name="s"), 10, 0.5)


def test_schedule_reads_a_restored_global_step():
    # A job restored at global step 200 with a fresh optimizer state trains at the step-200 rate, as TF1.
    params = {"w": jg.Variable(jnp.array([1.0]), name="w"),
              "global_step": jg.create_global_step().assign(200)}
    lr = train.exponential_decay(0.5, params["global_step"], 100, 0.5)          # 0.125 at step 200
    opt = train.GradientDescentOptimizer(lr)
    new, _ = opt.apply_gradients([(jnp.array([1.0]), "w")], params, opt.init(params),
                                 global_step=params["global_step"])
    close(new["w"].value[0], 1.0 - 0.125)
    assert int(new["global_step"].value) == 201
