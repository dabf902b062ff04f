"""TF1 optimizer semantics, checked against TensorFlow's own test vectors.

The expected numbers come from TF's tests (``gradient_descent_test.py``, ``optimizer_test.py``,
``momentum_test.py``, ``adam_test.py``, ``adagrad_test.py``, ``rmsprop_test.py``; see
``shared/reference/tf1-semantics.md`` §3) or from the numpy re-implementations of TF's update formulas
below, written from the kernels' equations and not from the library's code. Comparisons use TF's
``assertAllCloseAccordingToType`` tolerances: 1e-3 for float16, 1e-6 for float32 and float64.
float64 cases run inside ``jax.enable_x64(True)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices
from jaxgraph.train import (
    AdagradOptimizer,
    AdamOptimizer,
    GradientDescentOptimizer,
    LazyAdamOptimizer,
    MomentumOptimizer,
    RMSPropOptimizer,
)

try:  # the public lookup; gather_rows is what it calls for a single table
    from jaxgraph.nn import embedding_lookup
except ImportError:  # pragma: no cover
    from jaxgraph.gradients import gather_rows as embedding_lookup


# ------------------------------------------------------------------------------------------------
# Tolerances and fixtures
# ------------------------------------------------------------------------------------------------

_TOL = {np.dtype(np.float16): 1e-3, np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-6}


def assert_close(actual, expected, dtype=None, tol=None):
    """``assertAllCloseAccordingToType``: rtol = atol = 1e-3 (half), 1e-6 (float32/float64)."""
    actual = np.asarray(actual.value if isinstance(actual, jg.Variable) else actual)
    if tol is None:
        tol = _TOL[np.dtype(dtype if dtype is not None else actual.dtype)]
    np.testing.assert_allclose(actual.astype(np.float64), np.asarray(expected, np.float64), rtol=tol, atol=tol)


@pytest.fixture(params=["float16", "float32", "float64"])
def dtype(request):
    """The dtype of a case; float64 cases run with x64 enabled for the whole test."""
    if request.param == "float64":
        with jax.enable_x64(True):
            yield np.float64
    else:
        yield np.dtype(request.param).type


@pytest.fixture(params=["float32", "float64"])
def dtype_f32_f64(request):
    if request.param == "float64":
        with jax.enable_x64(True):
            yield np.float64
    else:
        yield np.float32


def standard_params(dtype):
    """TF's standard two-variable fixture."""
    return {
        "var0": jg.Variable(np.array([1.0, 2.0], dtype), name="var0"),
        "var1": jg.Variable(np.array([3.0, 4.0], dtype), name="var1"),
    }


def standard_grads(dtype):
    return jnp.asarray(np.array([0.1, 0.1], dtype)), jnp.asarray(np.array([0.01, 0.01], dtype))


def make_apply(opt, maybe_jit, global_step=None):
    def apply(params, state, g0, g1):
        return opt.apply_gradients([(g0, "var0"), (g1, "var1")], params, state, global_step=global_step)

    return maybe_jit(apply)


# ------------------------------------------------------------------------------------------------
# numpy references of TF's update formulas (float64 unless the caller passes another dtype)
# ------------------------------------------------------------------------------------------------


def np_gd(var, g, lr):
    return var - lr * g


def np_momentum(var, accum, g, lr, mu, nesterov=False):
    if nesterov:  # momentum_test._update_nesterov_momentum_numpy
        var = var + accum * lr * mu
        accum = accum * mu + g
        var = var - lr * accum
        var = var - accum * lr * mu
        return var, accum
    accum = mu * accum + g
    return var - lr * accum, accum


def np_adam(param, g, t, m, v, alpha=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """adam_test.adam_update_numpy."""
    alpha_t = alpha * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    m_t = beta1 * m + (1 - beta1) * g
    v_t = beta2 * v + (1 - beta2) * g * g
    param_t = param - alpha_t * m_t / (np.sqrt(v_t) + epsilon)
    return param_t, m_t, v_t


def np_adagrad(var, accum, g, lr):
    accum = accum + g * g
    return var - lr * g / np.sqrt(accum), accum


def np_rmsprop(var, g, mg, rms, mom, lr, decay, momentum, epsilon, centered):
    """rmsprop_test._rmsprop_update_numpy."""
    rms_t = rms * decay + (1 - decay) * g * g
    denom_t = rms_t + epsilon
    if centered:
        mg_t = mg * decay + (1 - decay) * g
        denom_t = denom_t - mg_t * mg_t
    else:
        mg_t = mg
    mom_t = momentum * mom + lr * g / np.sqrt(denom_t)
    return var - mom_t, mg_t, rms_t, mom_t


def np_sparse_rows(update, var, slots, indices, values, **kw):
    """Apply a per-row ``update(var_rows, *slot_rows, g_rows, **kw)`` lazily after summing duplicates."""
    var = var.copy()
    slots = [s.copy() for s in slots]
    uniq = list(dict.fromkeys(int(i) for i in indices))
    summed = {i: np.zeros_like(var[0]) for i in uniq}
    for i, row in zip(indices, values, strict=True):
        summed[int(i)] = summed[int(i)] + row
    for i in uniq:
        out = update(var[i], *[s[i] for s in slots], summed[i], **kw)
        var[i] = out[0]
        for s, new in zip(slots, out[1:], strict=True):
            s[i] = new
    return var, slots


# ================================================================================================
# GradientDescent (gradient_descent_test.py, lr = 3.0)
# ================================================================================================


def test_gd_basic(dtype, maybe_jit):
    _gd_basic(dtype, maybe_jit, 3.0)


@pytest.mark.parametrize("lr_kind", ["tensor", "callable"])
def test_gd_tensor_and_callable_learning_rate(maybe_jit, lr_kind):
    _gd_basic(np.float32, maybe_jit, {"tensor": jnp.asarray(3.0), "callable": lambda: 3.0}[lr_kind])


def _gd_basic(dtype, maybe_jit, lr):
    opt = GradientDescentOptimizer(lr)
    params = standard_params(dtype)
    state = opt.init(params)
    assert opt.variables(state) == []
    params, state = make_apply(opt, maybe_jit)(params, state, *standard_grads(dtype))
    assert_close(params["var0"], [1.0 - 3.0 * 0.1, 2.0 - 3.0 * 0.1], dtype)
    assert_close(params["var1"], [3.0 - 3.0 * 0.01, 4.0 - 3.0 * 0.01], dtype)
    assert params["var0"].dtype == dtype
    assert opt.variables(state) == []
    assert opt.get_slot_names() == []


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "embedding_lookup"])
def test_gd_minimize_resource_variable(dtype, sparse):
    params = {
        "var0": jg.Variable(np.array([[1.0, 2.0]], dtype), name="var0"),
        "var1": jg.Variable(np.array([3.0], dtype), name="var1"),
    }
    x = jnp.asarray(np.array([[4.0], [5.0]], dtype))

    def loss(p):
        rows = embedding_lookup(p["var0"], jnp.array([0])) if sparse else p["var0"].value
        pred = jnp.matmul(rows, x) + p["var1"].value
        return pred * pred

    opt = GradientDescentOptimizer(1.0)
    _, gv = opt.compute_gradients(loss, params)
    assert isinstance(gv[0][0], IndexedSlices) == sparse
    params, _, loss_value = jax.jit(lambda p: opt.minimize(loss, p))(params)
    # pred = 17, dloss/dpred = 34
    assert_close(loss_value, [[289.0]], dtype)
    assert_close(params["var0"], [[1.0 - 34 * 4, 2.0 - 34 * 5]], dtype)
    assert_close(params["var1"], [3.0 - 34], dtype)


def test_gd_grad_wrt_ref(dtype):
    params = {"a": jg.Variable(np.array([1.0], dtype)), "b": jg.Variable(np.array([3.0], dtype))}
    opt = GradientDescentOptimizer(3.0)
    _, gv = opt.compute_gradients(lambda p: p["a"].value + p["b"].value, params, var_list=["a", "b"])
    assert [v.name for _, v in gv] == ["a", "b"]
    for g, _ in gv:
        assert_close(g, [1.0], dtype)


def test_gd_with_global_step(dtype, maybe_jit):
    params = standard_params(dtype)
    params["global_step"] = jg.create_global_step()
    opt = GradientDescentOptimizer(3.0)
    apply = make_apply(opt, maybe_jit, global_step="global_step")
    params, state = apply(params, opt.init(params), *standard_grads(dtype))
    assert int(params["global_step"].value) == 1
    assert_close(params["var0"], [0.7, 1.7], dtype)
    assert_close(params["var1"], [2.97, 3.97], dtype)
    params, state = apply(params, state, *standard_grads(dtype))
    assert int(params["global_step"].value) == 2
    assert_close(params["var0"], [0.4, 1.4], dtype)


def test_gd_sparse_basic(dtype, maybe_jit):
    params = {
        "var0": jg.Variable(np.array([[1.0], [2.0]], dtype), name="var0"),
        "var1": jg.Variable(np.array([[3.0], [4.0]], dtype), name="var1"),
    }
    g0 = IndexedSlices(jnp.asarray(np.array([[0.1]], dtype)), jnp.array([0]), (2, 1))
    g1 = IndexedSlices(jnp.asarray(np.array([[0.01]], dtype)), jnp.array([1]), (2, 1))
    opt = GradientDescentOptimizer(3.0)
    params, _ = make_apply(opt, maybe_jit)(params, opt.init(params), g0, g1)
    assert_close(params["var0"], [[1.0 - 3.0 * 0.1], [2.0]], dtype)
    assert_close(params["var1"], [[3.0], [4.0 - 3.0 * 0.01]], dtype)


def test_gd_sparse_duplicate_indices_accumulate(maybe_jit):
    params = {"var0": jg.Variable(np.array([[1.0], [2.0], [3.0]], np.float32), name="var0"),
              "var1": jg.Variable(np.zeros((1,), np.float32), name="var1")}
    g0 = IndexedSlices(jnp.array([[0.1], [0.2], [0.4]]), jnp.array([2, 0, 2]), (3, 1))
    opt = GradientDescentOptimizer(2.0)
    params, _ = make_apply(opt, maybe_jit)(params, opt.init(params), g0, jnp.zeros((1,)))
    assert_close(params["var0"], [[1.0 - 0.4], [2.0], [3.0 - 2.0 * 0.5]])


# ================================================================================================
# Optimizer base class (optimizer_test.py, GradientDescent lr = 3.0)
# ================================================================================================


def test_optimizer_basic_vector_loss_is_summed(dtype, maybe_jit):
    params = standard_params(dtype)
    params["global_step"] = jg.create_global_step()

    def loss(p):  # a vector: differentiated as its sum
        return 5 * p["var0"].value + 3 * p["var1"].value

    opt = GradientDescentOptimizer(3.0)
    step = maybe_jit(lambda p: opt.minimize(loss, p, global_step="global_step", var_list=["var0", "var1"]))
    params, _, loss_value = step(params)
    assert loss_value.shape == (2,)
    assert_close(loss_value, [5 * 1 + 3 * 3, 5 * 2 + 3 * 4], dtype)
    assert_close(params["var0"], [-14.0, -13.0], dtype)
    assert_close(params["var1"], [-6.0, -5.0], dtype)
    assert int(params["global_step"].value) == 1


def test_optimizer_precomputed_gradient(dtype, maybe_jit):
    params = standard_params(dtype)
    grad_loss = jnp.asarray(np.array([42.0, -42.0], dtype))
    opt = GradientDescentOptimizer(3.0)

    def step(p, gl):
        return opt.minimize(lambda q: 5 * q["var0"].value + 3 * q["var1"].value, p, grad_loss=gl)

    params, _, _ = maybe_jit(step)(params, grad_loss)
    assert_close(params["var0"], [1.0 - 3.0 * 5 * 42.0, 2.0 - 3.0 * 5 * (-42.0)], dtype)
    assert_close(params["var1"], [3.0 - 3.0 * 3 * 42.0, 4.0 - 3.0 * 3 * (-42.0)], dtype)


def test_optimizer_no_variables():
    params = {"a": jg.Variable(jnp.array([1.0, 2.0]), trainable=False),
              "b": jg.Variable(jnp.array([3.0, 4.0]), trainable=False)}
    opt = GradientDescentOptimizer(3.0)
    with pytest.raises(ValueError, match="No.*variables"):
        opt.minimize(lambda p: 5 * p["a"].value + 3 * p["b"].value, params)


def test_optimizer_no_gradients():
    params = standard_params(np.float32)
    opt = GradientDescentOptimizer(3.0)
    with pytest.raises(ValueError, match="No gradients"):
        opt.minimize(lambda p: 5 * p["var0"].value, params, var_list=["var1"])


def test_optimizer_no_gradients_for_any_variable_minimize():
    params = standard_params(np.float32)
    opt = GradientDescentOptimizer(3.0)
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.minimize(lambda p: jnp.asarray(5.0), params, var_list=["var0", "var1"])


def test_optimizer_no_gradients_for_any_variable_apply_gradients():
    params = standard_params(np.float32)
    opt = GradientDescentOptimizer(3.0)
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.apply_gradients([(None, params["var0"]), (None, params["var1"])], params)


def test_optimizer_gradients_as_variables(dtype):
    params = standard_params(dtype)
    opt = GradientDescentOptimizer(3.0)
    _, gv = opt.compute_gradients(lambda p: 5 * p["var0"].value + 3 * p["var1"].value, params,
                                  var_list=["var0", "var1"])
    converted = [(jg.Variable(g, trainable=False, name=f"g{i}"), v) for i, (g, v) in enumerate(gv)]
    params, _ = opt.apply_gradients(converted, params)
    assert_close(params["var0"], [-14.0, -13.0], dtype)
    assert_close(params["var1"], [-6.0, -5.0], dtype)


def test_unconnected_variable_gets_none_and_no_slot(maybe_jit):
    params = standard_params(np.float32)
    params["global_step"] = jg.create_global_step()
    opt = MomentumOptimizer(2.0, 0.9)
    _, gv = opt.compute_gradients(lambda p: jnp.sum(p["var0"].value), params)
    assert [v.name for _, v in gv] == ["var0", "var1"]
    assert gv[1][0] is None
    params, state = opt.apply_gradients(gv, params, global_step="global_step")
    assert opt.get_slot(state, "var1", "momentum") is None
    assert_close(opt.get_slot(state, "var0", "momentum"), [1.0, 1.0])
    assert_close(params["var1"], [3.0, 4.0])
    assert_close(params["var0"], [-1.0, 0.0])
    assert int(params["global_step"].value) == 1


# ================================================================================================
# Momentum (momentum_test.py, lr = 2.0, momentum = 0.9)
# ================================================================================================


def test_momentum_basic(dtype, maybe_jit):
    _momentum_basic(dtype, maybe_jit, "float")


@pytest.mark.parametrize("hyper_kind", ["tensor", "callable"])
def test_momentum_tensor_and_callable_hyperparameters(maybe_jit, hyper_kind):
    _momentum_basic(np.float32, maybe_jit, hyper_kind)


def _momentum_basic(dtype, maybe_jit, hyper_kind):
    if hyper_kind == "float":
        opt = MomentumOptimizer(learning_rate=2.0, momentum=0.9)
    elif hyper_kind == "tensor":
        opt = MomentumOptimizer(learning_rate=jnp.asarray(2.0), momentum=jnp.asarray(0.9))
    else:
        opt = MomentumOptimizer(learning_rate=lambda: 2.0, momentum=lambda: 0.9)
    params = standard_params(dtype)
    state = opt.init(params)
    assert opt.get_slot_names() == ["momentum"]
    for name in ("var0", "var1"):
        slot = opt.get_slot(state, name, "momentum")
        assert slot.shape == params[name].shape
        assert slot.dtype == params[name].dtype
        assert not slot.trainable
        assert slot.name == f"{name}/Momentum"
        assert jg.GraphKeys.TRAINABLE_VARIABLES not in slot.collections
    assert [v.name for v in opt.variables(state)] == ["var0/Momentum", "var1/Momentum"]
    apply = make_apply(opt, maybe_jit)
    params, state = apply(params, state, *standard_grads(dtype))
    assert_close(opt.get_slot(state, "var0", "momentum"), [0.1, 0.1], dtype)
    assert_close(opt.get_slot(state, "var1", "momentum"), [0.01, 0.01], dtype)
    assert_close(params["var0"], [1.0 - 0.1 * 2.0, 2.0 - 0.1 * 2.0], dtype)
    assert_close(params["var1"], [3.0 - 0.01 * 2.0, 4.0 - 0.01 * 2.0], dtype)
    params, state = apply(params, state, *standard_grads(dtype))
    assert_close(opt.get_slot(state, "var0", "momentum"), [0.9 * 0.1 + 0.1] * 2, dtype)
    assert_close(opt.get_slot(state, "var1", "momentum"), [0.9 * 0.01 + 0.01] * 2, dtype)
    assert_close(params["var0"], [1.0 - 0.2 - 0.19 * 2.0, 2.0 - 0.2 - 0.19 * 2.0], dtype)
    assert_close(params["var1"], [2.98 - 0.019 * 2.0, 3.98 - 0.019 * 2.0], dtype)


# float64 recomputation of the 4-step Nesterov trajectory (reference §3.3).
_NESTEROV_VAR0 = [[-37.0, -74.0], [1352.8, 2705.6], [-49468.78, -98937.56], [1808955.838, 3617911.676]]
_NESTEROV_VAR1 = [[-8.4, -7.4], [-24.66, -23.66], [-45.294, -44.294], [-69.8646, -68.8646]]


def _nesterov_reference(np_dtype):
    var0, var1 = np.array([1.0, 2.0], np_dtype), np.array([3.0, 4.0], np_dtype)
    acc0, acc1 = np.zeros(2, np_dtype), np.zeros(2, np_dtype)
    out = []
    for _ in range(4):
        g0 = var0 * 10
        var0, acc0 = np_momentum(var0, acc0, g0, 2.0, 0.9, nesterov=True)
        var1, acc1 = np_momentum(var1, acc1, np.full(2, 3.0, np_dtype), 2.0, 0.9, nesterov=True)
        out.append((g0, var0.copy(), var1.copy()))
    return out


def test_momentum_nesterov(dtype_f32_f64, maybe_jit):
    dt = dtype_f32_f64
    params = standard_params(dt)
    params["global_step"] = jg.create_global_step()
    opt = MomentumOptimizer(learning_rate=2.0, momentum=0.9, use_nesterov=True)

    def cost(p):
        return 5 * p["var0"].value * p["var0"].value + 3 * p["var1"].value

    step = maybe_jit(lambda p, s: opt.minimize(cost, p, s, global_step="global_step",
                                               var_list=["var0", "var1"])[:2])
    state = opt.init(params, ["var0", "var1"])
    ref = _nesterov_reference(np.float64)
    # The trajectory diverges on purpose (x37 per step): compare relatively. float32 rounding of the
    # growing values stays within a few ulps relative.
    rtol = 1e-6 if dt == np.float64 else 2e-6
    for t in range(4):
        params, state = step(params, state)
        np.testing.assert_allclose(np.asarray(params["var0"].value), ref[t][1], rtol=rtol)
        np.testing.assert_allclose(np.asarray(params["var1"].value), ref[t][2], rtol=rtol)
        np.testing.assert_allclose(ref[t][1], _NESTEROV_VAR0[t], rtol=1e-6)
        np.testing.assert_allclose(ref[t][2], _NESTEROV_VAR1[t], rtol=1e-6)
    assert int(params["global_step"].value) == 4


def test_momentum_sparse_nesterov(dtype_f32_f64):
    dt = dtype_f32_f64
    ref = _nesterov_reference(dt)
    params = standard_params(dt)
    opt = MomentumOptimizer(learning_rate=2.0, momentum=0.9, use_nesterov=True)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    rtol = 1e-6 if dt == np.float64 else 2e-6
    for t in range(4):
        g0 = IndexedSlices(jnp.asarray(ref[t][0]), jnp.array([0, 1]), (2,))
        params, state = apply(params, state, g0, jnp.asarray(np.array([3.0, 3.0], dt)))
        np.testing.assert_allclose(np.asarray(params["var0"].value), ref[t][1], rtol=rtol)
        np.testing.assert_allclose(np.asarray(params["var1"].value), ref[t][2], rtol=rtol)


@pytest.mark.parametrize("dtype", ["float16", "float32"], indirect=True)
def test_momentum_minimize_sparse_resource_variable(dtype):
    params = {"var0": jg.Variable(np.array([[1.0, 2.0]], dtype), name="var0")}
    x = jnp.asarray(np.array([[4.0], [5.0]], dtype))

    def loss(p):
        pred = jnp.matmul(embedding_lookup(p["var0"], jnp.array([0])), x)
        return pred * pred

    opt = MomentumOptimizer(learning_rate=1.0, momentum=0.0)
    _, gv = opt.compute_gradients(loss, params)
    assert isinstance(gv[0][0], IndexedSlices)
    params, _, _ = jax.jit(lambda p: opt.minimize(loss, p))(params)
    # pred = 14, grad = 28 * [4, 5]
    assert_close(params["var0"], [[1.0 - 28 * 4, 2.0 - 28 * 5]], dtype)


def test_momentum_minimize_with_2d_indices_for_embedding_lookup():
    params = {"var0": jg.Variable(jnp.ones((2, 2)), name="var0")}
    opt = MomentumOptimizer(learning_rate=1.0, momentum=0.0)
    loss = lambda p: jnp.sum(embedding_lookup(p["var0"], jnp.array([[1]])))  # noqa: E731
    params, _, _ = jax.jit(lambda p: opt.minimize(loss, p))(params)
    assert_close(params["var0"], [[1.0, 1.0], [0.0, 0.0]])


# momentum_test._dbParamsMom01: the gradients fed to a zero 10-vector (lr = 0.1, momentum = 0.1),
# and some of the outputs TF's test expects.
_DB_GRAD = [
    [0.00096264342, 0.17914793, 0.93945462, 0.41396621, 0.53037018,
     0.93197989, 0.78648776, 0.50036013, 0.55345792, 0.96722615],
    [0.17075552, 0.88821375, 0.20873757, 0.25236958, 0.57578111, 0.15312378,
     0.5513742, 0.94687688, 0.16012503, 0.22159521],
    [0.35077485, 0.47304362, 0.44412705, 0.44368884, 0.078527533, 0.81223965,
     0.31168157, 0.43203235, 0.16792089, 0.24644311],
    [0.9694621, 0.75035888, 0.28171822, 0.83813518, 0.53807181, 0.3728098,
     0.81454384, 0.03848977, 0.89759839, 0.93665648],
    [0.38578293, 0.8536852, 0.88722926, 0.66276771, 0.13678469, 0.94036359,
     0.69107032, 0.81897682, 0.5433259, 0.67860287],
    [0.27885768, 0.76100707, 0.24625534, 0.81354135, 0.18959245, 0.48038563,
     0.84163809, 0.41172323, 0.83259648, 0.44941229],
    [0.27233034, 0.056316052, 0.5039115, 0.24105175, 0.35697976, 0.75913221,
     0.73577434, 0.16014607, 0.57500273, 0.071136251],
    [0.58697265, 0.2494842, 0.08106143, 0.39954534, 0.15892942, 0.12683646,
     0.74053431, 0.16033, 0.66625422, 0.73515922],
    [0.8215279, 0.41994119, 0.95172721, 0.68000203, 0.79439718, 0.43384039,
     0.55561525, 0.22567581, 0.93331909, 0.29438227],
    [0.68297005, 0.67758518, 0.1748755, 0.13266537, 0.70697063, 0.055731893,
     0.68593478, 0.50580865, 0.12602448, 0.093537711],
]
_DB_OUT = {
    0: [-9.6264346e-05, -0.017914793, -0.093945466, -0.041396622, -0.053037018,
        -0.093197994, -0.078648776, -0.050036013, -0.055345792, -0.096722618],
    1: [-0.017181443, -0.10852765, -0.12421377, -0.070773244, -0.11591884,
        -0.11783017, -0.14165108, -0.14972731, -0.076892875, -0.1285544],
    9: [-0.49369633, -0.58184016, -0.52132869, -0.5396927, -0.44306302,
        -0.56181377, -0.73774242, -0.46082234, -0.60366184, -0.52012295],
}


def test_momentum_like_dist_belief_mom01(maybe_jit):
    params = {"var0": jg.Variable(jnp.zeros(10), name="var0")}
    opt = MomentumOptimizer(learning_rate=0.1, momentum=0.1)
    apply = maybe_jit(lambda p, s, g: opt.apply_gradients([(g, "var0")], p, s))
    state = opt.init(params)
    ref_var, ref_acc = np.zeros(10), np.zeros(10)
    for i, g in enumerate(_DB_GRAD):
        params, state = apply(params, state, jnp.asarray(g, jnp.float32))
        ref_var, ref_acc = np_momentum(ref_var, ref_acc, np.asarray(g), 0.1, 0.1)
        assert_close(params["var0"], ref_var)  # assertAllClose: 1e-6
        if i in _DB_OUT:
            assert_close(params["var0"], _DB_OUT[i])
            assert_close(ref_var, _DB_OUT[i], tol=1e-6)


@pytest.mark.parametrize("dtype", ["float32"], indirect=True)
def test_momentum_sparse_is_lazy(dtype):
    params = {
        "var0": jg.Variable(np.zeros((4, 2), dtype), name="var0"),
        "var1": jg.Variable(np.ones((4, 2), dtype), name="var1"),
    }
    g0 = IndexedSlices(jnp.asarray(np.array([[0.1, 0.1]], dtype)), jnp.array([1]), (4, 2))
    g1 = IndexedSlices(jnp.asarray(np.array([[0.01, 0.01], [0.01, 0.01]], dtype)), jnp.array([2, 3]), (4, 2))
    opt = MomentumOptimizer(learning_rate=2.0, momentum=0.9)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    params, state = apply(params, state, g0, g1)
    slot0 = np.asarray(opt.get_slot(state, "var0", "momentum").value)
    slot1 = np.asarray(opt.get_slot(state, "var1", "momentum").value)
    assert_close(slot0[0], [0, 0], dtype)
    assert_close(slot0[1], [0.1, 0.1], dtype)
    assert_close(slot1[2], [0.01, 0.01], dtype)
    assert_close(params["var0"].value[0], [0, 0], dtype)
    assert_close(params["var0"].value[1], [-0.2, -0.2], dtype)
    assert_close(params["var1"].value[2], [0.98, 0.98], dtype)
    params, state = apply(params, state, g0, g1)
    slot0 = np.asarray(opt.get_slot(state, "var0", "momentum").value)
    slot1 = np.asarray(opt.get_slot(state, "var1", "momentum").value)
    assert_close(slot0[0], [0, 0], dtype)
    assert_close(slot0[1], [0.19, 0.19], dtype)
    assert_close(slot1[2], [0.019, 0.019], dtype)
    assert_close(params["var0"].value[0], [0, 0], dtype)
    assert_close(params["var0"].value[1], [-0.2 - 0.38, -0.2 - 0.38], dtype)
    assert_close(params["var1"].value[2], [0.98 - 0.038, 0.98 - 0.038], dtype)
    assert_close(params["var1"].value[:2], np.ones((2, 2)), dtype)  # untouched rows
    assert_close(slot1[:2], np.zeros((2, 2)), dtype)


def test_momentum_sparse_duplicates_summed_before_update():
    # Momentum is applied once to the summed row (TF dedups before _apply_sparse).
    params = {"var0": jg.Variable(jnp.zeros((3, 1)), name="var0"), "var1": jg.Variable(jnp.zeros(1), name="var1")}
    opt = MomentumOptimizer(learning_rate=1.0, momentum=0.5, use_nesterov=True)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    g_dup = IndexedSlices(jnp.array([[1.0], [2.0]]), jnp.array([1, 1]), (3, 1))
    ref = np.zeros((3, 1))
    acc = np.zeros((3, 1))
    for _ in range(3):
        params, state = apply(params, state, g_dup, jnp.zeros(1))
        ref, (acc,) = np_sparse_rows(lambda v, a, g: np_momentum(v, a, g, 1.0, 0.5, nesterov=True),
                                     ref, [acc], [1, 1], np.array([[1.0], [2.0]]))
        assert_close(params["var0"], ref)
    # Summed first: step 1 is accum = 3, var -= 3 + 0.5 * 3 (per-duplicate updates would differ).
    assert_close(acc[1], [3.0 * (1 + 0.5 + 0.25)])


# ================================================================================================
# Adam (adam_test.py, defaults lr = 0.001, beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8)
# ================================================================================================

# float64 recomputation of testBasic (reference §3.4).
_ADAM_VAR0 = [[0.9990000031622677, 1.9990000031622677], [0.9980000053988899, 1.99800000539889],
              [0.9970000072255417, 1.9970000072255416]]
_ADAM_VAR1 = [[2.9990000316217764, 3.9990000316217764], [2.9980000539875484, 3.9980000539875484],
              [2.997000072253766, 3.997000072253766]]


def test_adam_basic(dtype, maybe_jit):
    _adam_basic(dtype, maybe_jit, 0.001)


@pytest.mark.parametrize("lr_kind", ["tensor", "callable"])
def test_adam_tensor_and_callable_learning_rate(lr_kind):
    _adam_basic(np.float32, jax.jit, {"tensor": jnp.asarray(0.001), "callable": lambda: 0.001}[lr_kind])


def _adam_basic(dtype, maybe_jit, lr):
    opt = AdamOptimizer(learning_rate=lr)
    params = standard_params(dtype)
    state = opt.init(params)
    assert opt.get_slot_names() == ["m", "v"]
    assert [v.name for v in opt.variables(state)] == [
        "beta1_power", "beta2_power", "var0/Adam", "var0/Adam_1", "var1/Adam", "var1/Adam_1"]
    assert opt.get_slot(state, "var0", "m").name == "var0/Adam"
    assert opt.get_slot(state, "var0", "v").name == "var0/Adam_1"
    assert opt.get_slot(state, "var0", "nope") is None
    apply = make_apply(opt, maybe_jit)
    g0, g1 = standard_grads(dtype)
    np0, np1 = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    m0, v0, m1, v1 = (np.zeros(2) for _ in range(4))
    for t in range(1, 4):
        assert_close(state.non_slots["beta1_power"], 0.9**t, tol=1e-6)
        assert_close(state.non_slots["beta2_power"], 0.999**t, tol=1e-6)
        params, state = apply(params, state, g0, g1)
        np0, m0, v0 = np_adam(np0, 0.1, t, m0, v0)
        np1, m1, v1 = np_adam(np1, 0.01, t, m1, v1)
        assert_close(params["var0"], np0, dtype)
        assert_close(params["var1"], np1, dtype)
        assert_close(np0, _ADAM_VAR0[t - 1], tol=1e-12)
        assert_close(np1, _ADAM_VAR1[t - 1], tol=1e-12)
        assert_close(opt.get_slot(state, "var0", "m"), m0, dtype)
        assert_close(opt.get_slot(state, "var0", "v"), v0, dtype)
    assert_close(state.non_slots["beta1_power"], 0.9**4, tol=1e-6)
    assert_close(state.non_slots["beta2_power"], 0.999**4, tol=1e-6)
    assert int(state.iterations) == 3


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
def test_adam_sparse_covering_all_rows(dtype):
    params = standard_params(dtype)
    opt = AdamOptimizer()
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    g0 = IndexedSlices(jnp.asarray(np.array([0.1, 0.1], dtype)), jnp.array([0, 1]), (2,))
    g1 = IndexedSlices(jnp.asarray(np.array([0.01, 0.01], dtype)), jnp.array([0, 1]), (2,))
    for t in range(1, 4):
        assert_close(state.non_slots["beta1_power"], 0.9**t, tol=1e-6)
        params, state = apply(params, state, g0, g1)
        assert_close(params["var0"], _ADAM_VAR0[t - 1], dtype)
        assert_close(params["var1"], _ADAM_VAR1[t - 1], dtype)


@pytest.mark.parametrize(
    ("dtype", "opt_cls"),
    [("float32", AdamOptimizer), ("float16", AdamOptimizer), ("float32", AdagradOptimizer)],
    ids=["adam-float32", "adam-float16", "adagrad-float32"],
    indirect=["dtype"],
)
def test_sparse_repeated_indices(dtype, opt_cls):
    """adam_test / adagrad_test testSparseRepeatedIndices: [1,1] x [0.1,0.1] == [1] x [0.2]."""
    init = np.array([[1.0], [2.0]], dtype)
    rep = {"var0": jg.Variable(init, name="var0"), "var1": jg.Variable(np.zeros(1, dtype), name="var1")}
    agg = {"var0": jg.Variable(init, name="var0"), "var1": jg.Variable(np.zeros(1, dtype), name="var1")}
    g_rep = IndexedSlices(jnp.asarray(np.array([[0.1], [0.1]], dtype)), jnp.array([1, 1]), (2, 1))
    g_agg = IndexedSlices(jnp.asarray(np.array([[0.2]], dtype)), jnp.array([1]), (2, 1))
    opt = opt_cls() if opt_cls is AdamOptimizer else opt_cls(3.0)
    apply = make_apply(opt, jax.jit)
    zero = jnp.zeros(1, dtype)
    s_rep, s_agg = opt.init(rep), opt.init(agg)
    ref, slots = np.array([[1.0], [2.0]]), [np.zeros((2, 1)), np.zeros((2, 1))]
    if opt_cls is AdagradOptimizer:
        slots = [np.full((2, 1), 0.1)]
    for t in range(1, 4):
        rep, s_rep = apply(rep, s_rep, g_rep, zero)
        agg, s_agg = apply(agg, s_agg, g_agg, zero)
        assert_close(rep["var0"], np.asarray(agg["var0"].value), dtype)
        if opt_cls is AdamOptimizer:
            ref, m, v = np_adam(ref, np.array([[0.0], [0.2]]), t, *slots)
            slots = [m, v]
            if dtype == np.float16:
                # TF too: epsilon=1e-8 underflows to 0 in half, and TF's sparse Adam updates every
                # row, so the never-touched row 0 computes 0 / (sqrt(0) + 0) = NaN (TF 2.21 graph mode
                # gives [nan, 1.999]; TF's own test passes because assertAllClose equates NaNs).
                ref[0] = np.nan
        else:
            ref, (acc,) = np_sparse_rows(lambda var, a, g: np_adagrad(var, a, g, 3.0), ref, slots, [1],
                                         np.array([[0.2]]))
            slots = [acc]
        assert_close(rep["var0"], ref, dtype)
    if not (opt_cls is AdamOptimizer and dtype == np.float16):
        assert_close(rep["var0"].value[0], [1.0], dtype)


def test_sparse_adam_is_not_lazy_but_lazy_adam_is():
    """TF's sparse Adam decays m, v on every row and moves every row with m != 0; LazyAdam does not."""
    init = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    grads = [
        IndexedSlices(jnp.array([[0.1, -0.2]]), jnp.array([0]), (3, 2)),
        IndexedSlices(jnp.array([[0.3, 0.05]]), jnp.array([1]), (3, 2)),
        IndexedSlices(jnp.array([[0.2, 0.1], [-0.1, 0.4]]), jnp.array([1, 0]), (3, 2)),
    ]
    results = {}
    for cls in (AdamOptimizer, LazyAdamOptimizer):
        opt = cls(learning_rate=0.1)
        params = {"var0": jg.Variable(init, name="var0"), "var1": jg.Variable(jnp.zeros(1), name="var1")}
        state = opt.init(params)
        apply = make_apply(opt, jax.jit)
        ref, m, v = init.astype(np.float64), np.zeros((3, 2)), np.zeros((3, 2))
        lazy_m, lazy_v, lazy_ref = m.copy(), v.copy(), ref.copy()
        for t, g in enumerate(grads, start=1):
            params, state = apply(params, state, g, jnp.zeros(1))
            dense_g = np.zeros((3, 2))
            np.add.at(dense_g, np.asarray(g.indices), np.asarray(g.values, np.float64))
            ref, m, v = np_adam(ref, dense_g, t, m, v, alpha=0.1)
            for i in sorted(set(np.asarray(g.indices).tolist())):
                lazy_ref[i], lazy_m[i], lazy_v[i] = np_adam(lazy_ref[i], dense_g[i], t, lazy_m[i], lazy_v[i],
                                                            alpha=0.1)
            expected = ref if cls is AdamOptimizer else lazy_ref
            assert_close(params["var0"], expected, tol=1e-5)
        results[cls] = np.asarray(params["var0"].value)
        if cls is AdamOptimizer:
            # Row 2 never had a gradient: m stays 0, so it does not move even though it decays.
            assert_close(results[cls][2], init[2])
    # After step 2 (only row 1), non-lazy Adam moved row 0 again; lazy did not: they differ.
    assert not np.allclose(results[AdamOptimizer][0], results[LazyAdamOptimizer][0], rtol=1e-5, atol=1e-6)


def test_lazy_adam_dense_equals_adam():
    params = standard_params(np.float32)
    outs = []
    for cls in (AdamOptimizer, LazyAdamOptimizer):
        p, s = params, None
        for _ in range(3):
            p, s = cls().apply_gradients([(jnp.array([0.1, -0.3]), "var0")], p, s)
        outs.append(np.asarray(p["var0"].value))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[0], [1.0 - 0.003, 2.0 + 0.003], tol=1e-6)


# ================================================================================================
# Adagrad (adagrad_test.py, lr = 3.0, initial accumulator 0.1)
# ================================================================================================


def test_adagrad_basic(dtype, maybe_jit):
    _adagrad_basic(dtype, maybe_jit, 3.0)


def test_adagrad_tensor_learning_rate():
    _adagrad_basic(np.float32, jax.jit, jnp.asarray(3.0))


def _adagrad_basic(dtype, maybe_jit, lr):
    opt = AdagradOptimizer(lr, initial_accumulator_value=0.1)
    params = standard_params(dtype)
    state = opt.init(params)
    assert opt.get_slot_names() == ["accumulator"]
    assert_close(opt.get_slot(state, "var0", "accumulator"), [0.1, 0.1], dtype)
    assert opt.get_slot(state, "var0", "accumulator").name == "var0/Adagrad"
    apply = make_apply(opt, maybe_jit)
    for _ in range(3):
        params, state = apply(params, state, *standard_grads(dtype))
    assert_close(params["var0"], [-1.6026098728179932, -0.6026098728179932], dtype)
    assert_close(params["var1"], [2.715679168701172, 3.715679168701172], dtype)
    assert_close(opt.get_slot(state, "var0", "accumulator"), [0.1 + 3 * 0.01] * 2, dtype)


def test_adagrad_sparse_basic(dtype):
    params = {
        "var0": jg.Variable(np.array([[1.0], [2.0]], dtype), name="var0"),
        "var1": jg.Variable(np.array([[3.0], [4.0]], dtype), name="var1"),
    }
    g0 = IndexedSlices(jnp.asarray(np.array([[0.1]], dtype)), jnp.array([0]), (2, 1))
    g1 = IndexedSlices(jnp.asarray(np.array([[0.01]], dtype)), jnp.array([1]), (2, 1))
    opt = AdagradOptimizer(3.0)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    for _ in range(3):
        params, state = apply(params, state, g0, g1)
    assert_close(params["var0"], [[-1.6026098728179932], [2.0]], dtype)
    assert_close(params["var1"], [[3.0], [3.715679168701172]], dtype)
    assert_close(opt.get_slot(state, "var0", "accumulator").value[1], [0.1], dtype)  # lazy


@pytest.mark.parametrize("dtype", ["float32"], indirect=True)
def test_adagrad_sparse_stability(dtype):
    shape = (1, 6)
    var0_np = np.array([[0.00872496, -0.106952, 0.110467, 0.226505, -0.0147257, -0.0105945]], dtype)
    grads0_np = np.array([[-5.91278e-05, 5.31673e-05, -2.5779e-06, 4.29153e-05, -8.4877e-05, -9.48906e-05]],
                         dtype)
    params = {"var0": jg.Variable(var0_np, name="var0"), "var1": jg.Variable(np.zeros(1, dtype), name="var1")}
    g0 = IndexedSlices(jnp.asarray(grads0_np), jnp.array([0]), shape)
    opt = AdagradOptimizer(1.0)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    for _ in range(5):  # the test's values are after any number of steps: the accumulator stays ~0.1
        params, state = apply(params, state, g0, jnp.zeros(1, dtype))
        assert_close(opt.get_slot(state, "var0", "accumulator"), np.full(shape, 0.1), dtype)
    params = {"var0": jg.Variable(var0_np, name="var0"), "var1": jg.Variable(np.zeros(1, dtype), name="var1")}
    params, _ = apply(params, opt.init(params), g0, jnp.zeros(1, dtype))
    assert_close(params["var0"],
                 [[0.00891194, -0.10712013, 0.11047515, 0.22636929, -0.0144573, -0.01029443]], dtype)


@pytest.mark.parametrize("value", [0.0, -0.1])
def test_adagrad_initial_accumulator_must_be_positive(value):
    with pytest.raises(ValueError, match="initial_accumulator_value must be positive"):
        AdagradOptimizer(1.0, initial_accumulator_value=value)


def test_adagrad_repeated_indices_through_embedding_lookup():
    """Duplicate ids from a lookup give an IndexedSlices whose repeats are summed before the update."""
    init = np.array([[1.0], [2.0]], np.float32)
    opt = AdagradOptimizer(3.0)
    rep = {"var0": jg.Variable(init, name="var0")}
    agg = {"var0": jg.Variable(init, name="var0")}
    step_rep = jax.jit(lambda p, s: opt.minimize(
        lambda q: 0.1 * jnp.sum(embedding_lookup(q["var0"], jnp.array([1, 1]))), p, s)[:2])
    step_agg = jax.jit(lambda p, s: opt.minimize(
        lambda q: 0.2 * jnp.sum(embedding_lookup(q["var0"], jnp.array([1]))), p, s)[:2])
    s_rep, s_agg = opt.init(rep), opt.init(agg)
    ref, acc = init.astype(np.float64), np.full((2, 1), 0.1)
    for _ in range(3):
        rep, s_rep = step_rep(rep, s_rep)
        agg, s_agg = step_agg(agg, s_agg)
        ref[1], acc[1] = np_adagrad(ref[1], acc[1], 0.2, 3.0)
        assert_close(rep["var0"], np.asarray(agg["var0"].value))
        assert_close(rep["var0"], ref)


# ================================================================================================
# RMSProp (rmsprop_test.py)
# ================================================================================================


def _rmsprop_run(dtype, maybe_jit, lr, decay, momentum, epsilon, centered, steps=3):
    opt = RMSPropOptimizer(learning_rate=lr, decay=decay, momentum=momentum, epsilon=epsilon,
                           centered=centered)
    params = standard_params(dtype)
    state = opt.init(params)
    apply = make_apply(opt, maybe_jit)
    g = [np.array([0.1, 0.1]), np.array([0.01, 0.01])]
    ref = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
    mg, rms, mom = ([np.zeros(2), np.zeros(2)], [np.ones(2), np.ones(2)], [np.zeros(2), np.zeros(2)])
    history = []
    for _ in range(steps):
        params, state = apply(params, state, *standard_grads(dtype))
        for i in range(2):
            ref[i], mg[i], rms[i], mom[i] = np_rmsprop(ref[i], g[i], mg[i], rms[i], mom[i], lr, decay, momentum,
                                                       epsilon, centered)
        assert_close(params["var0"], ref[0], dtype)
        assert_close(params["var1"], ref[1], dtype)
        assert_close(opt.get_slot(state, "var0", "rms"), rms[0], dtype)
        assert_close(opt.get_slot(state, "var0", "momentum"), mom[0], dtype)
        if centered:
            assert_close(opt.get_slot(state, "var0", "mg"), mg[0], dtype)
        history.append((np.asarray(params["var0"].value), np.asarray(params["var1"].value)))
    return opt, state, history


def test_rmsprop_without_momentum(dtype, maybe_jit):
    opt, state, hist = _rmsprop_run(dtype, maybe_jit, lr=2.0, decay=0.9, momentum=0.0, epsilon=1.0,
                                    centered=False, steps=2)
    assert opt.get_slot_names() == ["momentum", "rms"]
    assert [v.name for v in opt.variables(state)] == [
        "var0/RMSProp", "var0/RMSProp_1", "var1/RMSProp", "var1/RMSProp_1"]
    assert opt.get_slot(state, "var0", "rms").name == "var0/RMSProp"
    assert opt.get_slot(state, "var0", "momentum").name == "var0/RMSProp_1"
    # rmsprop_test's literal expressions
    assert_close(hist[0][0], [1.0 - 2.0 * 0.1 / np.sqrt(0.901 + 1.0), 2.0 - 2.0 * 0.1 / np.sqrt(0.901 + 1.0)],
                 dtype)
    assert_close(hist[0][1], [3.0 - 2.0 * 0.01 / np.sqrt(0.90001 + 1.0)] * 1
                 + [4.0 - 2.0 * 0.01 / np.sqrt(0.90001 + 1.0)], dtype)
    assert_close(hist[0][0], [0.8549429, 1.8549429], np.float16)
    assert_close(hist[1][0], [0.7063621, 1.7063621], np.float16)
    assert_close(hist[1][1], [2.9706247, 3.9706247], np.float16)


def test_rmsprop_with_momentum(dtype, maybe_jit):
    _, _, hist = _rmsprop_run(dtype, maybe_jit, lr=2.0, decay=0.9, momentum=0.5, epsilon=1e-5,
                              centered=False, steps=2)
    assert_close(hist[0][0], [0.78929968, 1.78929968], np.float16)
    assert_close(hist[1][0], [0.46198884, 1.46198884], np.float16)
    assert_close(hist[0][0], [1.0 - 2.0 * 0.1 / np.sqrt(0.901 + 1e-5)] + [2.0 - 2.0 * 0.1 / np.sqrt(0.901 + 1e-5)],
                 dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_centered(dtype, momentum):
    opt, state, _ = _rmsprop_run(dtype, jax.jit, lr=2.0, decay=0.9, momentum=momentum, epsilon=1e-3,
                                 centered=True, steps=4)
    assert opt.get_slot_names() == ["mg", "momentum", "rms"]
    # TF's creation order: rms, mg, momentum
    assert opt.get_slot(state, "var0", "rms").name == "var0/RMSProp"
    assert opt.get_slot(state, "var0", "mg").name == "var0/RMSProp_1"
    assert opt.get_slot(state, "var0", "momentum").name == "var0/RMSProp_2"


@pytest.mark.parametrize("dtype", ["float32"], indirect=True)
@pytest.mark.parametrize("centered", [False, True])
def test_rmsprop_sparse_is_lazy(dtype, centered):
    lr, decay, mom, eps = 2.0, 0.9, 0.5, 1e-3
    init = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    params = {"var0": jg.Variable(init.astype(dtype), name="var0"), "var1": jg.Variable(np.zeros(1, dtype),
                                                                                      name="var1")}
    opt = RMSPropOptimizer(lr, decay=decay, momentum=mom, epsilon=eps, centered=centered)
    apply = make_apply(opt, jax.jit)
    state = opt.init(params)
    steps = [([0, 0], [[0.1, 0.2], [0.3, -0.1]]), ([2], [[0.05, 0.05]]), ([0, 2], [[-0.2, 0.1], [0.1, 0.1]])]
    ref, mg, rms, mm = init.copy(), np.zeros((3, 2)), np.ones((3, 2)), np.zeros((3, 2))

    def row_update(v, mg_r, rms_r, mom_r, g):
        v, mg_r, rms_r, mom_r = np_rmsprop(v, g, mg_r, rms_r, mom_r, lr, decay, mom, eps, centered)
        return v, mg_r, rms_r, mom_r

    for idx, vals in steps:
        g = IndexedSlices(jnp.asarray(np.array(vals, dtype)), jnp.array(idx), (3, 2))
        params, state = apply(params, state, g, jnp.zeros(1, dtype))
        ref, (mg, rms, mm) = np_sparse_rows(row_update, ref, [mg, rms, mm], idx, np.array(vals))
        assert_close(params["var0"], ref, dtype)
        assert_close(opt.get_slot(state, "var0", "rms"), rms, dtype)
        assert_close(opt.get_slot(state, "var0", "momentum"), mm, dtype)
    # Row 1 never had a gradient: untouched, rms still 1, momentum 0.
    assert_close(params["var0"].value[1], [3.0, 4.0], dtype)
    assert_close(opt.get_slot(state, "var0", "rms").value[1], [1.0, 1.0], dtype)


# ================================================================================================
# Sparse == dense when the IndexedSlices covers every row exactly once
# ================================================================================================


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda: GradientDescentOptimizer(0.5),
        lambda: MomentumOptimizer(0.5, 0.9),
        lambda: AdagradOptimizer(0.5),
        lambda: RMSPropOptimizer(0.1, momentum=0.5, epsilon=1e-6),
        lambda: RMSPropOptimizer(0.1, momentum=0.5, epsilon=1e-6, centered=True),
        lambda: AdamOptimizer(0.1),
        lambda: LazyAdamOptimizer(0.1),
    ],
    ids=["gd", "momentum", "adagrad", "rmsprop", "rmsprop_centered", "adam", "lazy_adam"],
)
def test_sparse_covering_all_rows_equals_dense(make_opt):
    rng = np.random.RandomState(0)
    init = rng.randn(4, 3).astype(np.float32)
    perm = np.array([2, 0, 3, 1])
    opt = make_opt()
    dense = {"var0": jg.Variable(init, name="var0"), "var1": jg.Variable(jnp.zeros(1), name="var1")}
    sparse = {"var0": jg.Variable(init, name="var0"), "var1": jg.Variable(jnp.zeros(1), name="var1")}
    apply = make_apply(opt, jax.jit)
    sd, ss = opt.init(dense), opt.init(sparse)
    for _ in range(4):
        g = rng.randn(4, 3).astype(np.float32)
        dense, sd = apply(dense, sd, jnp.asarray(g), jnp.zeros(1))
        sparse, ss = apply(sparse, ss, IndexedSlices(jnp.asarray(g[perm]), jnp.asarray(perm), (4, 3)),
                           jnp.zeros(1))
        assert_close(sparse["var0"], np.asarray(dense["var0"].value), tol=1e-6)
    # and it really moved
    assert not np.allclose(np.asarray(dense["var0"].value), init)


# ================================================================================================
# Slot naming, variables(), learning-rate schedules
# ================================================================================================


def test_slot_naming_and_variables():
    params = {"b": jg.Variable(jnp.zeros(2), name="var1"), "a": jg.Variable(jnp.zeros(3), name="var0")}
    opt = AdamOptimizer()
    state = opt.init(params)
    names = [v.name for v in opt.variables(state)]
    assert names == ["beta1_power", "beta2_power", "var0/Adam", "var0/Adam_1", "var1/Adam", "var1/Adam_1"]
    assert all(not v.trainable for v in opt.variables(state))
    assert [v.shape for v in opt.variables(state)] == [(), (), (3,), (3,), (2,), (2,)]
    assert GradientDescentOptimizer(1.0).variables(GradientDescentOptimizer(1.0).init(params)) == []
    mom = MomentumOptimizer(0.1, 0.9, name="MyMom")
    assert [v.name for v in mom.variables(mom.init(params))] == ["var0/MyMom", "var1/MyMom"]
    ada = AdagradOptimizer(0.1)
    assert [v.name for v in ada.variables(ada.init(params))] == ["var0/Adagrad", "var1/Adagrad"]
    # slots are created only for variables that get a gradient (get-or-create on apply)
    _, state = opt.apply_gradients([(jnp.ones(3), "var0"), (None, "var1")], params)
    assert [v.name for v in opt.variables(state)] == ["beta1_power", "beta2_power", "var0/Adam", "var0/Adam_1"]


def test_learning_rate_schedule_of_step(maybe_jit):
    params = {"w": jg.Variable(jnp.zeros(2), name="w")}
    opt = GradientDescentOptimizer(lambda step: 1.0 / (step + 1.0))
    apply = maybe_jit(lambda p, s: opt.apply_gradients([(jnp.array([1.0, -2.0]), "w")], p, s))
    state = opt.init(params)
    expected = np.zeros(2)
    for t in range(4):
        params, state = apply(params, state)
        expected = expected - np.array([1.0, -2.0]) / (t + 1.0)
        assert_close(params["w"], expected)
    assert int(state.iterations) == 4


def test_zero_arg_callable_hyperparameters(maybe_jit):
    params = standard_params(np.float32)
    opt = MomentumOptimizer(learning_rate=lambda: 2.0, momentum=lambda: 0.9, use_nesterov=True)
    params, _ = make_apply(opt, maybe_jit)(params, opt.init(params), *standard_grads(np.float32))
    ref, _ = np_momentum(np.array([1.0, 2.0]), np.zeros(2), 0.1, 2.0, 0.9, nesterov=True)
    assert_close(params["var0"], ref)
    adam = AdamOptimizer(learning_rate=lambda: 0.01)
    params2 = standard_params(np.float32)
    params2, _ = make_apply(adam, maybe_jit)(params2, adam.init(params2), *standard_grads(np.float32))
    assert_close(params2["var0"], np_adam(np.array([1.0, 2.0]), 0.1, 1, 0.0, 0.0, alpha=0.01)[0])


def test_adam_schedule_and_beta_powers_under_jit_loop():
    """A jitted step with donated state: beta powers advance once per apply, shared by all variables."""
    params = standard_params(np.float32)
    opt = AdamOptimizer(learning_rate=lambda step: 0.01 * 0.5 ** step)
    step = jax.jit(lambda p, s, g0, g1: opt.apply_gradients([(g0, "var0"), (g1, "var1")], p, s),
                   donate_argnums=(0, 1))
    state = opt.init(params)
    ref0, m, v = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2)
    for t in range(1, 5):
        params, state = step(params, state, *standard_grads(np.float32))
        ref0, m, v = np_adam(ref0, 0.1, t, m, v, alpha=0.01 * 0.5 ** (t - 1))
        assert_close(params["var0"], ref0, tol=1e-6)
        assert_close(state.non_slots["beta1_power"], 0.9 ** (t + 1), tol=1e-6)
