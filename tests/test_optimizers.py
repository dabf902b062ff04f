"""TF1 optimizer semantics: one contract every optimizer joins, and TensorFlow's own test vectors.

- **The contract** (rows in ``tests/optimizer_cases.py``, every hyper-parameter away from its default):
  TF's values after three dense steps (float32, float64, and float16 where TF has the kernel), jit and
  not; sparse updates with repeated ids against the dense rule on the same rows, untouched rows and
  slots bit-identical for lazy optimizers, ``None`` gradients skipped without slots; slot names, TF's
  slot-variable names and initial values; schedules reading the global step.
- **TF's test vectors** (``TF_VECTORS``): the numbers in TF's ``gradient_descent_test.py``,
  ``momentum_test.py``, ``adam_test.py``, ``adagrad_test.py``, ``rmsprop_test.py``, ``ftrl_test.py``,
  ``adadelta_test.py``, ``proximal_gradient_descent_test.py``, ``proximal_adagrad_test.py`` and
  ``adagrad_da_test.py`` (see ``shared/reference/tf1-semantics.md`` §3), or float64 recomputations of
  their reference formulas where the test computes them. Tolerances are TF's
  ``assertAllCloseAccordingToType``: 1e-3 for float16, 1e-6 for float32 and float64, unless the TF test
  says otherwise. float64 cases run inside ``jax.enable_x64(True)``.
- Case-by-case tests for what a table cannot say (Adam's non-lazy sparse rule, divergent Nesterov,
  schedules, argument validation, the base class's ``optimizer_test.py`` behaviours).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optimizer_cases import CASE_IDS, CASES, DENSE_GRADS, DENSE_STEPS, DENSE_VARS

import jaxgraph as jg
from jaxgraph import IndexedSlices
from jaxgraph.nn import embedding_lookup
from jaxgraph.train import (
    AdadeltaOptimizer,
    AdagradDAOptimizer,
    AdagradOptimizer,
    AdamOptimizer,
    FtrlOptimizer,
    GradientDescentOptimizer,
    LazyAdamOptimizer,
    MomentumOptimizer,
    ProximalAdagradOptimizer,
    ProximalGradientDescentOptimizer,
    RMSPropOptimizer,
)

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


def x64(dtype: Any):
    """float64 cases need x64 for the whole case; others run as users do (x64 off)."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


@pytest.fixture(params=["float16", "float32", "float64"])
def dtype(request):
    """The dtype of a case; float64 cases run with x64 enabled for the whole test."""
    with x64(request.param):
        yield np.dtype(request.param).type


@pytest.fixture(params=["float32", "float64"])
def dtype_f32_f64(request):
    with x64(request.param):
        yield np.dtype(request.param).type


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
# The contract every optimizer joins (one row each in tests/optimizer_cases.py)
# ================================================================================================

_CASE = pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
_DENSE_RUNS = [
    pytest.param(case, dtype_name, use_jit, id=f"{case.id}-{dtype_name}-{'jit' if use_jit else 'nojit'}")
    for case in CASES
    for dtype_name, use_jit in [("float32", False), ("float32", True), ("float64", True), ("float16", True)]
    if dtype_name != "float16" or case.float16  # TF has no float16 kernel for the proximal ones and AdagradDA
]


def _fresh_params(dtype, step=0):
    params = {"var0": jg.Variable(np.array(DENSE_VARS[0], dtype), name="var0"),
              "var1": jg.Variable(np.array(DENSE_VARS[1], dtype), name="var1"),
              "global_step": jg.create_global_step()}
    params["global_step"] = params["global_step"].assign(step)
    return params


@pytest.mark.parametrize(("case", "dtype_name", "use_jit"), _DENSE_RUNS)
def test_contract_dense_matches_tf(case, dtype_name, use_jit):
    """TF's values after three steps (TensorFlow 2.21, float32), with every hyper-parameter non-default."""
    with x64(dtype_name):
        dtype = np.dtype(dtype_name).type
        opt = case.make()
        params = _fresh_params(dtype)
        grads = [jnp.asarray(np.array(g, dtype)) for g in DENSE_GRADS]
        step = make_apply(opt, jax.jit if use_jit else (lambda f: f), global_step="global_step")
        state = opt.init(params)
        for _ in range(DENSE_STEPS):
            params, state = step(params, state, *grads)
        # float16 follows TF's float32 trajectory as far as half precision reaches (ftrl_test's half_rtol).
        tol = 1e-2 if dtype == np.float16 else 1e-6
        for name in ("var0", "var1"):
            assert params[name].dtype == dtype
            assert_close(params[name], case.expected[name], tol=tol)
        for slot in case.slots:
            assert opt.get_slot(state, "var0", slot).dtype == dtype
            assert_close(opt.get_slot(state, "var0", slot), case.expected[slot], tol=tol)
        assert int(params["global_step"].value) == DENSE_STEPS
        assert int(state.iterations) == DENSE_STEPS


@_CASE
def test_contract_slots_and_names(case):
    params = _fresh_params(np.float32)
    opt = case.make()
    state = opt.init(params)  # the trainable variables only: no slots for the global step
    assert opt.get_slot_names() == list(case.slots)
    assert tuple(v.name for v in opt.variables(state)) == case.variables
    assert all(not v.trainable for v in opt.variables(state))
    for slot in case.slots:
        for var in ("var0", "var1"):
            value = opt.get_slot(state, var, slot)
            assert value.name == opt.slot_variable_name(var, slot)
            assert not value.trainable and jg.GraphKeys.TRAINABLE_VARIABLES not in value.collections
            assert (value.shape, value.dtype) == (params[var].shape, params[var].dtype)
            np.testing.assert_array_equal(np.asarray(value.value), np.full(2, case.initial[slot], np.float32))
    assert opt.get_slot(state, "var0", "nope") is None
    with pytest.raises(ValueError, match="has no slot 'nope'"):
        opt.slot_variable_name("var0", "nope")
    # apply_gradients without a state creates slots only for the variables that have a gradient
    _, state = opt.apply_gradients([(jnp.asarray(DENSE_GRADS[0]), "var0"), (None, "var1")], params)
    assert all(list(per_var) == ["var0"] for per_var in state.slots.values())
    assert [v.name for v in opt.variables(state)] == [n for n in case.variables if not n.startswith("var1/")]


_TABLE = (6, 3)
_IDS = [[4, 1, 4, 1], [1, 2, 2, 2], [0, 4, 4, 4]]  # repeats in every step; rows 3 and 5 never touched
_UNTOUCHED = [3, 5]


def _sparse_problem():
    rng = np.random.RandomState(7)
    params = {"emb": jg.Variable(rng.uniform(-1, 1, _TABLE).astype(np.float32), name="emb"),
              "w": jg.Variable(rng.uniform(-1, 1, 2).astype(np.float32), name="w"),
              "unused": jg.Variable(np.ones(3, np.float32), name="unused"),
              "global_step": jg.create_global_step()}
    grads = [(IndexedSlices(jnp.asarray(0.3 * rng.randn(len(ids), _TABLE[1]).astype(np.float32)), jnp.array(ids),
                            _TABLE), jnp.asarray(0.3 * rng.randn(2).astype(np.float32))) for ids in _IDS]
    return params, grads


def _apply_step(opt, params, state, g_emb, g_w):
    return opt.apply_gradients([(g_emb, "emb"), (g_w, "w"), (None, "unused")], params, state,
                               global_step="global_step")


def _tree_arrays(params, state):
    return {"params": {k: np.asarray(v.value) for k, v in params.items()},
            "slots": jax.tree.map(np.asarray, state.slots), "non_slots": jax.tree.map(np.asarray, state.non_slots)}


@_CASE
def test_contract_sparse(case):
    """Repeated ids are summed, then the update equals the dense rule on the touched rows; a lazy
    optimizer leaves every other row of the variable and of its slots bit-identical; a ``None``
    gradient is skipped; jit and no-jit agree (to an ulp: XLA fuses the jitted step)."""
    opt = case.make()

    @jax.jit
    def sparse_and_dense(p, s, g_emb, g_w):  # one compilation: the sparse step, and the dense rule from the same state
        return _apply_step(opt, p, s, g_emb, g_w), _apply_step(opt, p, s, g_emb.to_dense(), g_w)

    params, grads = _sparse_problem()
    state = opt.init(params, ["emb", "w"])
    initial = _tree_arrays(params, state)
    for t, (g_emb, g_w) in enumerate(grads, start=1):
        before = _tree_arrays(params, state)
        (params, state), (ref_params, ref_state) = sparse_and_dense(params, state, g_emb, g_w)
        after, ref = _tree_arrays(params, state), _tree_arrays(ref_params, ref_state)
        touched = np.isin(np.arange(_TABLE[0]), np.asarray(g_emb.indices))
        got = [after["params"]["emb"]] + [after["slots"][s]["emb"] for s in case.slots]
        dense = [ref["params"]["emb"]] + [ref["slots"][s]["emb"] for s in case.slots]
        old = [before["params"]["emb"]] + [before["slots"][s]["emb"] for s in case.slots]
        for g, d, o in zip(got, dense, old, strict=True):
            np.testing.assert_allclose(g, np.where(touched[:, None], d, o) if case.lazy else d,
                                       rtol=1e-5, atol=1e-6, err_msg=f"step {t}")
            if case.lazy:
                np.testing.assert_array_equal(g[~touched], o[~touched])
        jax.tree.map(np.testing.assert_array_equal, after["non_slots"], ref["non_slots"])
        np.testing.assert_array_equal(after["params"]["w"], ref["params"]["w"])
        np.testing.assert_array_equal(after["params"]["unused"], initial["params"]["unused"])
        assert int(params["global_step"].value) == t
    if case.lazy:
        for got, init in [(after["params"]["emb"], initial["params"]["emb"])] + [
                (after["slots"][s]["emb"], initial["slots"][s]["emb"]) for s in case.slots]:
            np.testing.assert_array_equal(got[_UNTOUCHED], init[_UNTOUCHED])
    assert not np.allclose(after["params"]["emb"][[0, 1, 2, 4]], initial["params"]["emb"][[0, 1, 2, 4]])
    # the same steps without jit
    eager_params, eager_state = _sparse_problem()[0], opt.init(params, ["emb", "w"])
    for g_emb, g_w in grads:
        eager_params, eager_state = _apply_step(opt, eager_params, eager_state, g_emb, g_w)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 after, _tree_arrays(eager_params, eager_state))


_BIG = (20_000, 16)


@pytest.mark.parametrize("case", [c for c in CASES if c.lazy], ids=[c.id for c in CASES if c.lazy])
def test_contract_lazy_update_scatters_once_per_buffer(case):
    """The compiled sparse step (buffers donated) writes the table and each of its slots with one
    in-place scatter and makes no other table-sized value: no copy, no broadcast, no full-table math."""
    opt = case.make()
    params = {"emb": jg.Variable(jnp.zeros(_BIG), name="emb"), "global_step": jg.create_global_step()}

    def step(p, s, values, ids):
        return opt.apply_gradients([(IndexedSlices(values, ids, _BIG), "emb")], p, s, global_step="global_step")

    hlo = jax.jit(step, donate_argnums=(0, 1)).lower(
        params, opt.init(params), jnp.ones((64, _BIG[1])), jnp.zeros((64,), jnp.int32)).compile().as_text()
    table_type = f"f32[{_BIG[0]},{_BIG[1]}]"
    ops = [re.match(r"\s*(?:ROOT\s+)?%\S+\s*=\s*(\S+)\s+([\w-]+)\(", line) for line in hlo.splitlines()]
    table_ops = [m.group(2) for m in ops if m and m.group(1).startswith(table_type)]
    assert set(table_ops) <= {"parameter", "scatter", "fusion"}, sorted(set(table_ops))
    assert table_ops.count("scatter") == 1 + len(case.slots)


@_CASE
def test_contract_schedules_read_the_global_step(case):
    """A fresh state with the global step at 200: the schedule is evaluated at 200, then 201, exactly
    as an optimizer built with those constant rates (TF1 decay functions read ``global_step``)."""
    lr = case.kwargs["learning_rate"]
    scheduled = case.make(learning_rate=lambda step: lr * 0.5 ** (step - 199))
    params = ref = _fresh_params(np.float32, step=200)
    grads = [(jnp.asarray(np.array(g, np.float32)), f"var{i}") for i, g in enumerate(DENSE_GRADS)]
    state = ref_state = scheduled.init(params)
    for t in range(2):
        params, state = scheduled.apply_gradients(grads, params, state, global_step="global_step")
        fixed = case.make(learning_rate=lr * 0.5 ** (t + 1))
        ref, ref_state = fixed.apply_gradients(grads, ref, ref_state, global_step="global_step")
        jax.tree.map(np.testing.assert_array_equal, _tree_arrays(params, state), _tree_arrays(ref, ref_state))
    assert int(params["global_step"].value) == 202
    assert int(state.iterations) == 2


# ================================================================================================
# TensorFlow's own test vectors
# ================================================================================================

_ALL = ("float16", "float32", "float64")
_STANDARD = ([1.0, 2.0], [3.0, 4.0])
_FTRL_VARS = ([1.0, 2.0], [4.0, 3.0])  # ftrl_test's and the proximal tests' second fixture
_ZEROS = ([0.0, 0.0], [0.0, 0.0])
_UNEVEN = ([0.1, 0.2], [0.01, 0.02])  # ftrl_test's and the proximal tests' gradients
_ADAM_VAR0 = [[0.9990000031622677, 1.9990000031622677], [0.9980000053988899, 1.99800000539889],
              [0.9970000072255417, 1.9970000072255416]]  # float64 recomputation of testBasic (§3.4)
_ADAM_VAR1 = [[2.9990000316217764, 3.9990000316217764], [2.9980000539875484, 3.9980000539875484],
              [2.997000072253766, 3.997000072253766]]
_MOMENTUM_SPARSE_VARS = (np.zeros((4, 2)).tolist(), np.ones((4, 2)).tolist())


def _rows(n, **rows):
    """An (n, 2) expected array: zeros except the given rows (``r1=[...]``)."""
    out = np.zeros((n, 2))
    for k, v in rows.items():
        out[int(k[1:])] = v
    return out.tolist()


@dataclasses.dataclass(frozen=True)
class TFVector:
    """One TF test: ``make(h)`` builds the optimizer (``h`` wraps the learning rate: a float, a tensor or
    a callable, TF's testTensorLearningRate / testBasicCallableParams); ``checks[t]`` holds TF's values
    after step ``t`` (``"var0"``, ``"var1"``, ``"<slot>:var0"``). A gradient is a list (dense) or
    ``(values, indices)`` (an IndexedSlices of the variable's shape)."""

    id: str
    make: Callable[[Callable[[float], Any]], Any]
    checks: dict[int, dict[str, Any]]
    init: tuple = _STANDARD
    grads: tuple = ([0.1, 0.1], [0.01, 0.01])
    dtypes: tuple[str, ...] = _ALL
    tol: dict[str, float] = dataclasses.field(default_factory=dict)
    hyper_kinds: bool = False  # also run with a tensor and a callable learning rate


def _da(lr, **kw):
    return AdagradDAOptimizer(lr, "global_step", initial_gradient_squared_accumulator_value=0.1, **kw)


TF_VECTORS = [
    # gradient_descent_test.py (lr = 3.0)
    TFVector("gd_basic", lambda h: GradientDescentOptimizer(h(3.0)),
             {1: {"var0": [0.7, 1.7], "var1": [2.97, 3.97]}}, hyper_kinds=True),
    TFVector("gd_with_global_step", lambda h: GradientDescentOptimizer(h(3.0)),
             {1: {"var0": [0.7, 1.7], "var1": [2.97, 3.97]}, 2: {"var0": [0.4, 1.4]}}),
    TFVector("gd_sparse_basic", lambda h: GradientDescentOptimizer(h(3.0)),
             {1: {"var0": [[0.7], [2.0]], "var1": [[3.0], [3.97]]}},
             init=([[1.0], [2.0]], [[3.0], [4.0]]), grads=(([[0.1]], [0]), ([[0.01]], [1]))),
    # momentum_test.py (lr = 2.0, momentum = 0.9)
    TFVector("momentum_basic", lambda h: MomentumOptimizer(h(2.0), h(0.9)),
             {1: {"var0": [0.8, 1.8], "var1": [2.98, 3.98], "momentum:var0": [0.1, 0.1],
                  "momentum:var1": [0.01, 0.01]},
              2: {"var0": [1.0 - 0.2 - 0.19 * 2.0, 2.0 - 0.2 - 0.19 * 2.0], "var1": [2.98 - 0.038, 3.98 - 0.038],
                  "momentum:var0": [0.19, 0.19], "momentum:var1": [0.019, 0.019]}}, hyper_kinds=True),
    TFVector("momentum_sparse", lambda h: MomentumOptimizer(h(2.0), h(0.9)),
             {1: {"var0": _rows(4, r1=[-0.2, -0.2]),
                  "var1": _rows(4, r0=[1, 1], r1=[1, 1], r2=[.98, .98], r3=[.98, .98]),
                  "momentum:var0": _rows(4, r1=[0.1, 0.1]), "momentum:var1": _rows(4, r2=[.01, .01], r3=[.01, .01])},
              2: {"var0": _rows(4, r1=[-0.58, -0.58]),
                  "var1": _rows(4, r0=[1, 1], r1=[1, 1], r2=[.942, .942], r3=[.942, .942]),
                  "momentum:var0": _rows(4, r1=[0.19, 0.19]),
                  "momentum:var1": _rows(4, r2=[.019, .019], r3=[.019, .019])}},
             init=_MOMENTUM_SPARSE_VARS, grads=(([[0.1, 0.1]], [1]), ([[0.01, 0.01], [0.01, 0.01]], [2, 3])),
             dtypes=("float32",)),
    # adam_test.py (defaults)
    TFVector("adam_basic", lambda h: AdamOptimizer(h(0.001)),
             {t: {"var0": _ADAM_VAR0[t - 1], "var1": _ADAM_VAR1[t - 1]} for t in (1, 2, 3)}, hyper_kinds=True),
    TFVector("adam_sparse", lambda h: AdamOptimizer(h(0.001)),
             {t: {"var0": _ADAM_VAR0[t - 1], "var1": _ADAM_VAR1[t - 1]} for t in (1, 2, 3)},
             grads=(([0.1, 0.1], [0, 1]), ([0.01, 0.01], [0, 1])), dtypes=("float32", "float64")),
    # adagrad_test.py (lr = 3.0, initial accumulator 0.1)
    TFVector("adagrad_basic", lambda h: AdagradOptimizer(h(3.0), initial_accumulator_value=0.1),
             {3: {"var0": [-1.6026098728179932, -0.6026098728179932], "var1": [2.715679168701172, 3.715679168701172],
                  "accumulator:var0": [0.13, 0.13]}}, hyper_kinds=True),
    TFVector("adagrad_sparse_basic", lambda h: AdagradOptimizer(h(3.0)),
             {3: {"var0": [[-1.6026098728179932], [2.0]], "var1": [[3.0], [3.715679168701172]],
                  "accumulator:var0": [[0.13], [0.1]]}},
             init=([[1.0], [2.0]], [[3.0], [4.0]]), grads=(([[0.1]], [0]), ([[0.01]], [1]))),
    # rmsprop_test.py (lr = 2.0, decay = 0.9); step 2 values are float64 recomputations (§3.6)
    TFVector("rmsprop_without_momentum", lambda h: RMSPropOptimizer(h(2.0), decay=0.9, momentum=0.0, epsilon=1.0),
             {1: {"var0": [1.0 - 0.2 / np.sqrt(0.901 + 1.0), 2.0 - 0.2 / np.sqrt(0.901 + 1.0)],
                  "var1": [3.0 - 0.02 / np.sqrt(0.90001 + 1.0), 4.0 - 0.02 / np.sqrt(0.90001 + 1.0)],
                  "rms:var0": [0.901, 0.901], "rms:var1": [0.90001, 0.90001]},
              2: {"var0": [0.7063621, 1.7063621], "var1": [2.9706247, 3.9706247]}}),
    TFVector("rmsprop_with_momentum", lambda h: RMSPropOptimizer(h(2.0), decay=0.9, momentum=0.5, epsilon=1e-5),
             {1: {"var0": [0.78929968, 1.78929968]}, 2: {"var0": [0.46198884, 1.46198884]}}),
    # ftrl_test.py (lr = 3.0, initial accumulator 0.1)
    TFVector("ftrl_without_regularization", lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1),
             {3: {"var0": [-2.60260963, -4.29698515], "var1": [-0.28432083, -0.56694895]}},
             init=_ZEROS, grads=_UNEVEN, dtypes=("float16", "float32"), tol={"float16": 1e-2}),
    TFVector("ftrl_without_regularization2", lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1),
             {3: {"var0": [-2.55607247, -3.98729396], "var1": [-0.28232238, -0.56096673]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float16", "float32")),
    TFVector("ftrl_l1", lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1,
                                                l1_regularization_strength=0.001),
             {10: {"var0": [-7.66718769, -10.91273689], "var1": [-0.93460727, -1.86147261]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float16", "float32")),
    TFVector("ftrl_l1_l2", lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1,
                                                   l1_regularization_strength=0.001, l2_regularization_strength=2.0),
             {10: {"var0": [-0.24059935, -0.46829352], "var1": [-0.02406147, -0.04830509]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float16", "float32")),
    TFVector("ftrl_l1_l2_l2_shrinkage",
             lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1, l1_regularization_strength=0.001,
                                     l2_regularization_strength=2.0, l2_shrinkage_regularization_strength=0.1),
             {10: {"var0": [-0.22578995, -0.44345796], "var1": [-0.14378493, -0.13229476]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float16", "float32"), hyper_kinds=True),
    TFVector("ftrl_l1_l2_l2_shrinkage_sparse",
             lambda h: FtrlOptimizer(h(3.0), initial_accumulator_value=0.1, l1_regularization_strength=0.001,
                                     l2_regularization_strength=2.0, l2_shrinkage_regularization_strength=0.1),
             {10: {"var0": [[-0.22578995], [2.0]], "var1": [[4.0], [-0.13229476]]}},
             init=([[1.0], [2.0]], [[4.0], [3.0]]), grads=(([[0.1]], [0]), ([[0.02]], [1])),
             dtypes=("float16", "float32")),
    # proximal_gradient_descent_test.py (lr = 3.0; float32, assertAllClose)
    TFVector("proximal_gd_without_regularization", lambda h: ProximalGradientDescentOptimizer(h(3.0)),
             {3: {"var0": [-0.9, -1.8], "var1": [-0.09, -0.18]}}, init=_ZEROS, grads=_UNEVEN, dtypes=("float32",)),
    TFVector("proximal_gd_without_regularization2", lambda h: ProximalGradientDescentOptimizer(h(3.0)),
             {3: {"var0": [0.1, 0.2], "var1": [3.91, 2.82]}}, init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32",)),
    TFVector("proximal_gd_l1_l2",
             lambda h: ProximalGradientDescentOptimizer(h(3.0), l1_regularization_strength=0.001,
                                                        l2_regularization_strength=2.0),
             {10: {"var0": [-0.0495, -0.0995], "var1": [-0.0045, -0.0095]}}, init=_FTRL_VARS, grads=_UNEVEN,
             dtypes=("float32",), hyper_kinds=True),
    # proximal_adagrad_test.py (lr = 3.0, initial accumulator 0.1; float32, assertAllClose)
    TFVector("proximal_adagrad_without_regularization",
             lambda h: ProximalAdagradOptimizer(h(3.0), initial_accumulator_value=0.1),
             {3: {"var0": [-2.60260963, -4.29698515], "var1": [-0.28432083, -0.56694895]}},
             init=_ZEROS, grads=_UNEVEN, dtypes=("float32",)),
    TFVector("proximal_adagrad_without_regularization2",
             lambda h: ProximalAdagradOptimizer(h(3.0), initial_accumulator_value=0.1),
             {3: {"var0": [-1.60261, -2.296985], "var1": [3.715679, 2.433051]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32",)),
    TFVector("proximal_adagrad_l1",
             lambda h: ProximalAdagradOptimizer(h(3.0), initial_accumulator_value=0.1,
                                                l1_regularization_strength=0.001),
             {10: {"var0": [-6.663634, -9.190331], "var1": [2.959304, 1.029232]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32",)),
    TFVector("proximal_adagrad_l1_l2",
             lambda h: ProximalAdagradOptimizer(h(3.0), initial_accumulator_value=0.1,
                                                l1_regularization_strength=0.001, l2_regularization_strength=2.0),
             {10: {"var0": [-0.0495, -0.0995], "var1": [-0.0045, -0.0095]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32",), hyper_kinds=True),
    # adagrad_da_test.py (lr = 3.0, initial squared accumulator 0.1, one step with the global step)
    TFVector("adagrad_da_without_regularization_basic1", lambda h: _da(h(3.0)),
             {1: {"var0": [-0.904534, -1.603567], "var1": [-0.094821, -0.189358]}},
             init=_ZEROS, grads=_UNEVEN, dtypes=("float32", "float64")),
    TFVector("adagrad_da_without_regularization_basic2", lambda h: _da(h(3.0)),
             {1: {"var0": [-0.904534, -1.603567], "var1": [-0.094821, -0.189358]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32", "float64")),
    TFVector("adagrad_da_l1", lambda h: _da(h(3.0), l1_regularization_strength=0.001),
             {1: {"var0": [-0.895489, -1.59555], "var1": [-0.085339, -0.17989]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32", "float64")),
    TFVector("adagrad_da_l1_l2",
             lambda h: _da(h(3.0), l1_regularization_strength=0.001, l2_regularization_strength=2.0),
             {1: {"var0": [-0.046907, -0.093659], "var1": [-0.004275, -0.009023]}},
             init=_FTRL_VARS, grads=_UNEVEN, dtypes=("float32", "float64"), hyper_kinds=True),
]

_HYPER_KINDS = {"float": lambda x: x, "tensor": jnp.asarray, "callable": lambda x: (lambda: x)}


def _grad(spec, var, dtype):
    if isinstance(spec, tuple):
        values, indices = spec
        return IndexedSlices(jnp.asarray(np.array(values, dtype)), jnp.array(indices), var.shape)
    return jnp.asarray(np.array(spec, dtype))


def _run_tf_vector(vec, dtype, hyper_kind):
    opt = vec.make(_HYPER_KINDS[hyper_kind])
    params = {"var0": jg.Variable(np.array(vec.init[0], dtype), name="var0"),
              "var1": jg.Variable(np.array(vec.init[1], dtype), name="var1"),
              "global_step": jg.create_global_step()}
    grads = [_grad(g, params[f"var{i}"], dtype) for i, g in enumerate(vec.grads)]
    apply = make_apply(opt, jax.jit, global_step="global_step")
    state = opt.init(params)
    tol = vec.tol.get(np.dtype(dtype).name)
    for t in range(1, max(vec.checks) + 1):
        params, state = apply(params, state, *grads)
        for key, expected in vec.checks.get(t, {}).items():
            slot, _, var = key.rpartition(":")
            actual = opt.get_slot(state, var, slot) if slot else params[var]
            assert actual.dtype == dtype
            assert_close(actual, expected, dtype, tol=tol)


@pytest.mark.parametrize(
    ("vec", "dtype_name"),
    [pytest.param(v, d, id=f"{v.id}-{d}") for v in TF_VECTORS for d in v.dtypes],
)
def test_tf_vectors(vec, dtype_name):
    with x64(dtype_name):
        _run_tf_vector(vec, np.dtype(dtype_name).type, "float")


@pytest.mark.parametrize("hyper_kind", ["tensor", "callable"])
@pytest.mark.parametrize("vec", [v for v in TF_VECTORS if v.hyper_kinds], ids=lambda v: v.id)
def test_tf_vectors_with_tensor_and_callable_learning_rates(vec, hyper_kind):
    _run_tf_vector(vec, np.float32, hyper_kind)


# TF's testMinimizeSparseResourceVariable: var0 = [[1, 2]], loss = (embedding_lookup(var0, [0]) @ [[4], [5]])**2,
# one minimize step (an IndexedSlices gradient: pred = 14, grad = 28 * [4, 5]).
MINIMIZE_SPARSE = [
    ("momentum", lambda: MomentumOptimizer(1.0, 0.0), [[-111, -138]], {}, ("float16", "float32")),
    ("ftrl", lambda: FtrlOptimizer(1.0), [[0, 1]], {"atol": 0.01}, _ALL),
    ("adadelta", lambda: AdadeltaOptimizer(1.0, 1.0, 1.0), [[-111, -138]], {}, _ALL),
    ("proximal_gd", lambda: ProximalGradientDescentOptimizer(1.0), [[-111, -138]], {"atol": 0.01},
     ("float32", "float64")),
    ("proximal_adagrad", lambda: ProximalAdagradOptimizer(1.0), [[0, 1]], {"atol": 0.01}, ("float32", "float64")),
    ("adagrad_da", lambda: AdagradDAOptimizer(1.0, "global_step"), [[-1, -1]], {"rtol": 0.01},
     ("float32", "float64")),
]


@pytest.mark.parametrize(
    ("make", "expected", "tol", "dtype_name"),
    [pytest.param(m, e, t, d, id=f"{i}-{d}") for i, m, e, t, ds in MINIMIZE_SPARSE for d in ds],
)
def test_tf_minimize_sparse_resource_variable(make, expected, tol, dtype_name):
    with x64(dtype_name):
        dtype = np.dtype(dtype_name).type
        params = {"var0": jg.Variable(np.array([[1.0, 2.0]], dtype), name="var0"),
                  "global_step": jg.create_global_step()}
        x = jnp.asarray(np.array([[4.0], [5.0]], dtype))

        def loss(p):
            pred = jnp.matmul(embedding_lookup(p["var0"], jnp.array([0])), x)
            return pred * pred

        opt = make()
        _, gv = opt.compute_gradients(loss, params)
        assert isinstance(gv[0][0], IndexedSlices)
        params, _, _ = jax.jit(lambda p: opt.minimize(loss, p))(params)
        rtol = tol.get("rtol", _TOL[np.dtype(dtype)])
        np.testing.assert_allclose(np.asarray(params["var0"].value, np.float64), expected, rtol=rtol,
                                   atol=tol.get("atol", _TOL[np.dtype(dtype)]))


# The tests' equivalences: without regularization FTRL is Adagrad (power -0.5) or GradientDescent (power 0),
# and the proximal optimizers are their plain counterparts. Five steps, dense and sparse.
EQUIVALENT = [
    ("ftrl-adagrad", lambda: FtrlOptimizer(3.0, learning_rate_power=-0.5, initial_accumulator_value=0.1),
     lambda: AdagradOptimizer(3.0, initial_accumulator_value=0.1), 0.0, ("float16", "float32")),
    ("ftrl-gd", lambda: FtrlOptimizer(3.0, learning_rate_power=-0.0, initial_accumulator_value=0.1),
     lambda: GradientDescentOptimizer(3.0), 0.0, ("float16", "float32")),
    ("proximal_gd-gd", lambda: ProximalGradientDescentOptimizer(3.0), lambda: GradientDescentOptimizer(3.0), None,
     ("float32",)),
    ("proximal_adagrad-adagrad", lambda: ProximalAdagradOptimizer(3.0, initial_accumulator_value=0.1),
     lambda: AdagradOptimizer(3.0, initial_accumulator_value=0.1), None, ("float32",)),
]


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize(
    ("make_a", "make_b", "init", "dtype_name"),
    [pytest.param(a, b, i, d, id=f"{n}-{d}") for n, a, b, i, ds in EQUIVALENT for d in ds],
)
def test_tf_equivalences(make_a, make_b, init, dtype_name, sparse):
    dtype = np.dtype(dtype_name).type
    results = []
    for make in (make_a, make_b):
        if sparse:  # applyOptimizer(is_sparse=True): [[x], [y]] tables, one row each
            start = ([[0.0], [0.0]], [[0.0], [0.0]]) if init == 0.0 else ([[1.0], [2.0]], [[3.0], [4.0]])
            grads = (([[0.1]], [0]), ([[0.02]], [1]))
        else:
            start = _ZEROS if init == 0.0 else _STANDARD
            grads = _UNEVEN
        params = {f"var{i}": jg.Variable(np.array(v, dtype), name=f"var{i}") for i, v in enumerate(start)}
        opt = make()
        apply = make_apply(opt, jax.jit)
        state = opt.init(params)
        gs = [_grad(g, params[f"var{i}"], dtype) for i, g in enumerate(grads)]
        for _ in range(5):
            params, state = apply(params, state, *gs)
        results.append([np.asarray(params[f"var{i}"].value) for i in range(2)])
        assert not np.allclose(results[-1][0], start[0])
    tol = 2e-3 if dtype == np.float16 else None  # testEquivAdagradwithoutRegularization's half_rtol
    for a, b in zip(*results, strict=True):
        assert_close(a, b, dtype, tol=tol)


# ================================================================================================
# GradientDescent and the Optimizer base class (gradient_descent_test.py, optimizer_test.py; lr = 3.0)
# ================================================================================================


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
# Momentum (momentum_test.py): Nesterov's divergent trajectory, 2-D ids, DistBelief's vectors
# ================================================================================================



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


# ================================================================================================
# Adam (adam_test.py): beta powers, repeated indices, the non-lazy sparse rule
# ================================================================================================


def test_adam_beta_powers_and_slots(maybe_jit):
    """testBasic's beta powers: 0.9**t and 0.999**t before step t, shared by both variables; m and v
    follow adam_update_numpy."""
    opt = AdamOptimizer()
    params = standard_params(np.float32)
    state = opt.init(params)
    apply = make_apply(opt, maybe_jit)
    np0, m0, v0 = np.array([1.0, 2.0]), np.zeros(2), np.zeros(2)
    for t in range(1, 4):
        assert_close(state.non_slots["beta1_power"], 0.9**t, tol=1e-6)
        assert_close(state.non_slots["beta2_power"], 0.999**t, tol=1e-6)
        params, state = apply(params, state, *standard_grads(np.float32))
        np0, m0, v0 = np_adam(np0, 0.1, t, m0, v0)
        assert_close(opt.get_slot(state, "var0", "m"), m0)
        assert_close(opt.get_slot(state, "var0", "v"), v0)
    assert_close(state.non_slots["beta1_power"], 0.9**4, tol=1e-6)
    assert_close(state.non_slots["beta2_power"], 0.999**4, tol=1e-6)
    assert int(state.iterations) == 3


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


# ================================================================================================
# Adagrad (adagrad_test.py) and RMSProp (rmsprop_test.py)
# ================================================================================================


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



def _rmsprop_run(dtype, maybe_jit, lr, decay, momentum, epsilon, centered, steps=3):
    opt = RMSPropOptimizer(learning_rate=lr, decay=decay, momentum=momentum, epsilon=epsilon,
                           centered=centered)
    params = standard_params(dtype)
    state = opt.init(params)
    apply = make_apply(opt, maybe_jit)
    g = [np.array([0.1, 0.1]), np.array([0.01, 0.01])]
    ref = [np.array([1.0, 2.0]), np.array([3.0, 4.0])]
    mg, rms, mom = ([np.zeros(2), np.zeros(2)], [np.ones(2), np.ones(2)], [np.zeros(2), np.zeros(2)])
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
    return opt, state


@pytest.mark.parametrize("dtype", ["float32", "float64"], indirect=True)
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_centered(dtype, momentum):
    opt, state = _rmsprop_run(dtype, jax.jit, lr=2.0, decay=0.9, momentum=momentum, epsilon=1e-3,
                                 centered=True, steps=4)
    assert opt.get_slot_names() == ["mg", "momentum", "rms"]
    # TF's creation order: rms, mg, momentum
    assert opt.get_slot(state, "var0", "rms").name == "var0/RMSProp"
    assert opt.get_slot(state, "var0", "mg").name == "var0/RMSProp_1"
    assert opt.get_slot(state, "var0", "momentum").name == "var0/RMSProp_2"


# ================================================================================================
# Adadelta, FTRL, the proximal optimizers and AdagradDA: what the tables cannot say
# ================================================================================================


@pytest.mark.parametrize("dtype", ["float16", "float32"], indirect=True)
def test_adadelta_basic(dtype):
    """adadelta_test.testBasic: 4 steps for each gradient and learning rate against the test's own numpy
    loop (rho 0.95, epsilon 1e-8), slots included, rtol 1e-3 as the test."""
    rho, epsilon = 0.95, 1e-8
    for grad in [0.2, 0.1, 0.01]:
        for lr in [1.0, 0.5, 0.1]:
            opt = AdadeltaOptimizer(lr, rho, epsilon)
            params = standard_params(dtype)
            g = jnp.asarray(np.array([grad, grad], dtype))
            state = opt.init(params)
            accum = accum_update = tot_update = 0.0
            for _ in range(4):
                params, state = opt.apply_gradients([(g, "var0"), (g, "var1")], params, state)
                accum = accum * rho + (grad**2) * (1 - rho)
                update = np.sqrt(accum_update + epsilon) * (1.0 / np.sqrt(accum + epsilon)) * grad
                accum_update = accum_update * rho + (update**2) * (1.0 - rho)
                tot_update += update * lr
                for var, init in (("var0", [1.0, 2.0]), ("var1", [3.0, 4.0])):
                    tol = {"rtol": 1e-3, "atol": _TOL[np.dtype(dtype)]}
                    np.testing.assert_allclose(np.asarray(opt.get_slot(state, var, "accum").value, np.float64),
                                               [accum] * 2, **tol)
                    np.testing.assert_allclose(
                        np.asarray(opt.get_slot(state, var, "accum_update").value, np.float64), [accum_update] * 2,
                        **tol)
                    np.testing.assert_allclose(np.asarray(params[var].value, np.float64),
                                               np.array(init) - tot_update, **tol)


def test_ftrl_l2_shrinkage_does_not_change_the_accumulator():
    """ftrl_test.testFtrlWithL2ShrinkageDoesNotChangeLrSchedule: shrinkage pulls the weights to zero,
    the squared-gradient accumulator is the same."""
    with_shrinkage = FtrlOptimizer(3.0, initial_accumulator_value=0.1, l1_regularization_strength=0.001,
                                   l2_regularization_strength=2.0, l2_shrinkage_regularization_strength=0.1)
    without = FtrlOptimizer(3.0, initial_accumulator_value=0.1, l1_regularization_strength=0.001,
                            l2_regularization_strength=2.0)
    results = []
    for opt in (with_shrinkage, without):
        params, state = {"var0": jg.Variable(jnp.array([1.0, 2.0]), name="var0")}, None
        for _ in range(10):
            params, state = opt.apply_gradients([(jnp.array([0.1, 0.2]), "var0")], params, state)
        results.append((np.asarray(params["var0"].value), np.asarray(opt.get_slot(state, "var0", "accum").value)))
    assert (results[0][0] ** 2 < results[1][0] ** 2).all()
    assert_close(results[0][1], results[1][1])


def test_ftrl_slot_names_follow_accum_name_and_linear_name():
    params = {"w": jg.Variable(jnp.zeros(2), name="var0")}
    for kwargs, names in [({"accum_name": "foo"}, ["var0/Ftrl", "var0/foo"]),  # TF 2.21's names, as printed
                          ({"linear_name": "foo"}, ["var0/Ftrl", "var0/foo"]),
                          ({"accum_name": "x", "linear_name": "x"}, ["var0/x", "var0/x_1"]),
                          ({"name": "MyFtrl"}, ["var0/MyFtrl", "var0/MyFtrl_1"])]:
        opt = FtrlOptimizer(0.1, **kwargs)
        assert [v.name for v in opt.variables(opt.init(params))] == names, kwargs


def test_adagrad_da_reads_the_global_step_given_to_its_constructor():
    """TF reads ``identity(global_step) + 1``: without ``apply_gradients(global_step=...)`` the step never
    moves and T stays 1; with it, step t sees T = t. The variable depends only on the sums and T."""
    lr, l1, l2, k = 0.5, 0.01, 0.1, 0.2
    g = np.array([0.1, -0.2])

    def expected(t_steps, sums):
        acc, sq = sums * g, k + sums * g * g
        return -lr * np.sign(acc) * np.maximum(np.abs(acc) - l1 * t_steps, 0) / (l2 * t_steps * lr + np.sqrt(sq))

    for increment in (False, True):
        opt = AdagradDAOptimizer(lr, "global_step", initial_gradient_squared_accumulator_value=k,
                                 l1_regularization_strength=l1, l2_regularization_strength=l2)
        params = {"v": jg.Variable(jnp.array([1.0, 2.0]), name="v"), "global_step": jg.create_global_step()}
        state = opt.init(params)
        for t in (1, 2, 3):
            params, state = opt.apply_gradients([(jnp.asarray(g, jnp.float32), "v")], params, state,
                                                global_step="global_step" if increment else None)
            assert_close(params["v"], expected(t if increment else 1, t), tol=1e-6)
        assert int(params["global_step"].value) == (3 if increment else 0)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: FtrlOptimizer(0.1, initial_accumulator_value=-1.0), ValueError,
         "initial_accumulator_value -1.000000 needs to be positive or zero"),
        (lambda: FtrlOptimizer(0.1, learning_rate_power=0.5), ValueError,
         "learning_rate_power 0.500000 needs to be negative or zero"),
        (lambda: FtrlOptimizer(0.1, l1_regularization_strength=-1.0), ValueError,
         "l1_regularization_strength -1.000000 needs to be positive or zero"),
        (lambda: FtrlOptimizer(0.1, l2_regularization_strength=-1.0), ValueError,
         "l2_regularization_strength -1.000000 needs to be positive or zero"),
        (lambda: FtrlOptimizer(0.1, l2_shrinkage_regularization_strength=-1.0), ValueError,
         "l2_shrinkage_regularization_strength -1.000000 needs to be positive or zero"),
        (lambda: FtrlOptimizer(0.0), ValueError, "lr is not a positive scalar: 0.0"),
        (lambda: FtrlOptimizer(0.1, name=""), ValueError, "Must specify the optimizer name"),
        (lambda: AdagradOptimizer(1.0, initial_accumulator_value=0.0), ValueError,
         "initial_accumulator_value must be positive: 0.0"),
        (lambda: AdagradOptimizer(1.0, initial_accumulator_value=-0.1), ValueError,
         "initial_accumulator_value must be positive: -0.1"),
        (lambda: ProximalAdagradOptimizer(0.1, initial_accumulator_value=0.0), ValueError,
         "initial_accumulator_value must be positive: 0.0"),
        (lambda: ProximalAdagradOptimizer(-1.0), ValueError, "lr is not a positive scalar: -1.0"),
        (lambda: ProximalAdagradOptimizer(0.1, l1_regularization_strength=-0.5), ValueError,
         "l1 regularization strength is not a non-negative scalar: -0.5"),
        (lambda: ProximalAdagradOptimizer(0.1, l2_regularization_strength=-0.5), ValueError,
         "l2 regularization strength is not a non-negative scalar: -0.5"),
        (lambda: AdagradDAOptimizer(0.1, "global_step", initial_gradient_squared_accumulator_value=0.0),
         ValueError, "initial_gradient_squared_accumulator_value must be positive: 0.0"),
        (lambda: AdagradDAOptimizer(0.1, None), ValueError, "AdagradDAOptimizer needs global_step"),
        (lambda: AdagradDAOptimizer(0.1), TypeError, "missing 1 required positional argument: 'global_step'"),
    ],
)
def test_constructor_arguments_are_validated_with_tf_messages(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_adagrad_da_global_step_must_be_in_the_tree():
    opt = AdagradDAOptimizer(0.1, "step")
    params = {"v": jg.Variable(jnp.ones(2), name="v"), "global_step": jg.create_global_step()}
    with pytest.raises(ValueError, match="global_step must be a Variable of the parameter tree.*'step'"):
        opt.apply_gradients([(jnp.ones(2), "v")], params)
    bad = AdagradDAOptimizer(0.1, "v")  # a float variable is no step counter
    with pytest.raises(ValueError, match="global_step 'v' must be an integer variable"):
        bad.apply_gradients([(jnp.ones(2), "v")], params)


# ================================================================================================
# Slot names, schedules and the global step
# ================================================================================================


def test_custom_names_name_the_slots():
    params = {"b": jg.Variable(jnp.zeros(2), name="var1"), "a": jg.Variable(jnp.zeros(3), name="var0")}
    mom = MomentumOptimizer(0.1, 0.9, name="MyMom")
    assert [v.name for v in mom.variables(mom.init(params))] == ["var0/MyMom", "var1/MyMom"]
    adam = AdamOptimizer(name="MyAdam")
    assert [v.name for v in adam.variables(adam.init(params))] == [
        "beta1_power", "beta2_power", "var0/MyAdam", "var0/MyAdam_1", "var1/MyAdam", "var1/MyAdam_1"]
    assert adam.slot_variable_name("embeddings/w", "v") == "embeddings/w/MyAdam_1"


def test_restored_global_step_sets_the_decayed_rate():
    """Issue 13's scenario: variables restored at global_step = 200, a fresh optimizer state. TF 2.21:
    ``exponential_decay(0.5, global_step, 50, 0.7)`` at 200 is 0.12004999, and one GradientDescent step
    with gradient 1 takes [1, 2] to [0.87995, 1.87995] (``test_optimizer_parity.py::
    test_schedule_reads_the_restored_global_step`` checks this against TF)."""
    params = {"w": jg.Variable(jnp.array([1.0, 2.0]), name="w"), "global_step": jg.create_global_step()}
    params["global_step"] = params["global_step"].assign(200)
    schedules = {"lambda": lambda step: 0.5 * 0.7 ** (step / 50),
                 "optax": optax.exponential_decay(0.5, transition_steps=50, decay_rate=0.7)}
    for name, schedule in schedules.items():
        opt = GradientDescentOptimizer(schedule)
        new, state = jax.jit(lambda p, s, opt=opt: opt.apply_gradients(
            [(jnp.ones(2), "w")], p, s, global_step="global_step"))(params, opt.init(params))
        assert_close(new["w"], [0.87995, 1.87995], tol=1e-6)
        assert int(new["global_step"].value) == 201, name
        assert int(state.iterations) == 1


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
