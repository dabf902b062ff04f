"""The TF1 Optimizer contract: compute_gradients / apply_gradients / minimize (reference sections 1 and 8).

Per-optimizer update math lives in tests/test_optimizers.py; this file checks the API around it.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph as jg
from jaxgraph import Variable as V
from jaxgraph.train import GradientDescentOptimizer, MomentumOptimizer, OptaxOptimizer


def _params():
    return {
        "a": V(jnp.array([1.0, 2.0])),
        "b": V(jnp.array([[0.5, -1.0], [2.0, 3.0]])),
        "c": V(jnp.array(3.0)),
        "global_step": jg.create_global_step(),
    }


def _loss(p):
    # uses a and b densely; c is not used
    return jnp.sum(jnp.tanh(p["b"].value @ p["a"].value)) + jnp.sum(p["a"].value ** 2)


def _ref_loss(a, b):
    return jnp.sum(jnp.tanh(b @ a)) + jnp.sum(a**2)


def _gv_names(gv):
    return [v.name for _, v in gv]


# -- compute_gradients -----------------------------------------------------------------------------
def test_compute_gradients_returns_loss_and_pairs_in_var_list_order(maybe_jit):
    p = _params()
    opt = GradientDescentOptimizer(0.1)
    loss, gv = maybe_jit(lambda p: opt.compute_gradients(_loss, p, var_list=["b", "c", "a"]))(p)
    a, b = p["a"].value, p["b"].value
    ga, gb = jax.grad(_ref_loss, argnums=(0, 1))(a, b)
    assert _gv_names(gv) == ["b", "c", "a"]
    np.testing.assert_allclose(float(loss), float(_ref_loss(a, b)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gv[0][0]), np.asarray(gb), rtol=1e-6)
    assert gv[1][0] is None
    np.testing.assert_allclose(np.asarray(gv[2][0]), np.asarray(ga), rtol=1e-6)
    assert all(isinstance(v, V) for _, v in gv)


def test_default_var_list_is_trainable_in_tree_order():
    p = _params()
    _, gv = GradientDescentOptimizer(0.1).compute_gradients(_loss, p)
    assert _gv_names(gv) == ["a", "b", "c"]  # global_step is not trainable
    assert gv[2][0] is None


def test_none_for_unused_stop_gradient_shape_only_and_integer_paths(maybe_jit):
    p = {
        "used": V(jnp.array([1.0, 2.0])),
        "unused": V(jnp.array(1.0)),
        "stopped": V(jnp.array([3.0])),
        "shape_only": V(jnp.zeros((4, 2))),
        "int_path": V(jnp.array([1.7, 2.2])),
        "zero_grad": V(jnp.array(5.0)),
    }

    def loss(p):
        return (
            jnp.sum(p["used"].value ** 2)
            + jnp.sum(jax.lax.stop_gradient(p["stopped"].value)) * 10.0
            + p["shape_only"].shape[0]
            + p["shape_only"].value.shape[1]
            + jnp.sum(p["int_path"].value.astype(jnp.int32)).astype(jnp.float32)
            + p["zero_grad"].value * 0.0  # connected: a zero gradient, not None
        )

    loss_value, gv = maybe_jit(lambda p: GradientDescentOptimizer(1.0).compute_gradients(loss, p))(p)
    grads = {v.name: g for g, v in gv}
    np.testing.assert_allclose(float(loss_value), 5.0 + 30.0 + 4 + 2 + 3)
    np.testing.assert_array_equal(np.asarray(grads["used"]), [2.0, 4.0])
    assert grads["unused"] is None
    assert grads["stopped"] is None
    assert grads["shape_only"] is None
    assert grads["int_path"] is None
    assert grads["zero_grad"] is not None and float(grads["zero_grad"]) == 0.0


def test_non_scalar_loss_is_summed():
    p = {"v0": V(jnp.array([1.0, 2.0])), "v1": V(jnp.array([3.0, 4.0]))}
    # optimizer_test.testBasic: cost = 5*var0 + 3*var1 (a vector)
    loss, gv = GradientDescentOptimizer(3.0).compute_gradients(
        lambda p: 5 * p["v0"].value + 3 * p["v1"].value, p
    )
    np.testing.assert_array_equal(np.asarray(loss), [14.0, 22.0])  # the loss value itself, unsummed
    np.testing.assert_array_equal(np.asarray(gv[0][0]), [5.0, 5.0])
    np.testing.assert_array_equal(np.asarray(gv[1][0]), [3.0, 3.0])
    new, _, _ = GradientDescentOptimizer(3.0).minimize(lambda p: 5 * p["v0"].value + 3 * p["v1"].value, p)
    np.testing.assert_allclose(np.asarray(new["v0"].value), [-14.0, -13.0])
    np.testing.assert_allclose(np.asarray(new["v1"].value), [-6.0, -5.0])


def test_grad_loss_weights_the_loss():
    p = {"v": V(jnp.array([1.0, 2.0]))}
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(
        lambda p: p["v"].value ** 2, p, grad_loss=jnp.array([10.0, -1.0])
    )
    np.testing.assert_array_equal(np.asarray(gv[0][0]), [20.0, -4.0])


def test_grad_loss_wrong_shape():
    p = {"v": V(jnp.array([1.0, 2.0]))}
    with pytest.raises(ValueError, match=r"^grad_loss has shape \(3,\), but the loss has shape \(2,\)"):
        GradientDescentOptimizer(1.0).compute_gradients(lambda p: p["v"].value, p, grad_loss=jnp.ones(3))


def test_var_list_as_variables_or_names_restricts_differentiation():
    p = _params()
    opt = GradientDescentOptimizer(0.1)
    by_var = opt.compute_gradients(_loss, p, var_list=[p["b"]])[1]  # a leaf taken straight from the tree
    by_named = opt.compute_gradients(_loss, p, var_list=jg.trainable_variables(p, "b"))[1]
    by_name = opt.compute_gradients(_loss, p, var_list=["b"])[1]
    for gv in (by_var, by_named, by_name):
        assert _gv_names(gv) == ["b"]
        np.testing.assert_array_equal(np.asarray(gv[0][0]), np.asarray(by_name[0][0]))
    new, _, _ = opt.minimize(_loss, p, var_list=["b"])
    np.testing.assert_array_equal(np.asarray(new["a"].value), np.asarray(p["a"].value))
    assert not np.array_equal(np.asarray(new["b"].value), np.asarray(p["b"].value))


def test_second_of_two_same_named_variables_resolves_by_identity():
    p = [V(jnp.array(1.0), name="w"), V(jnp.array(2.0), name="w")]
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(lambda p: p[0].value + 3 * p[1].value, p,
                                                            var_list=[p[1]])
    assert _gv_names(gv) == ["w_1"]
    assert float(gv[0][0]) == 3.0


def test_frozen_variable_listed_explicitly_is_differentiated():
    p = jg.freeze({"w": V(jnp.array(2.0)), "u": V(jnp.array(1.0))}, "w")
    opt = GradientDescentOptimizer(0.5)
    _, gv = opt.compute_gradients(lambda p: p["w"].value ** 2 + p["u"].value, p)
    assert _gv_names(gv) == ["u"]
    new, _, _ = opt.minimize(lambda p: p["w"].value ** 2 + p["u"].value, p, var_list=["w"])
    assert float(new["w"].value) == 0.0  # 2 - 0.5 * 4
    assert float(new["u"].value) == 1.0


def test_default_var_list_skips_integer_trainable_variables():
    p = {"w": V(jnp.array(2.0)), "ids": V(jnp.array([1, 2]))}  # int Variables are trainable by default
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(lambda p: p["w"].value * p["ids"].value.sum(), p)
    assert _gv_names(gv) == ["w"]
    assert float(gv[0][0]) == 3.0


# -- error messages --------------------------------------------------------------------------------
def test_no_variables_to_optimize():
    opt = GradientDescentOptimizer(1.0)
    with pytest.raises(ValueError, match=r"^No variables to optimize\.$"):
        opt.compute_gradients(lambda p: p["w"].value, {"w": V(1.0)}, var_list=[])
    with pytest.raises(ValueError, match=r"^No variables to optimize\.$"):
        opt.compute_gradients(lambda p: p["w"].value, {"w": V(1.0, trainable=False)})
    with pytest.raises(ValueError, match=r"^No variables to optimize\.$"):
        opt.minimize(lambda p: p["w"].value, {"w": V(1.0, trainable=False)})


def test_minimize_with_all_none_gradients():
    p = {"a": V(jnp.array(1.0)), "b": V(jnp.array(2.0))}
    with pytest.raises(
        ValueError,
        match=r"^No gradients provided for any variable, check your graph for ops that do not support "
        r"gradients, between variables \['a', 'b'\] and loss ",
    ):
        GradientDescentOptimizer(1.0).minimize(lambda p: jax.lax.stop_gradient(p["a"].value) + 1.0, p)


def test_apply_gradients_with_all_none_lists_names():
    p = {"a": V(jnp.array(1.0)), "b": V(jnp.array(2.0))}
    with pytest.raises(ValueError, match=r"^No gradients provided for any variable: \['a', 'b'\]\.$"):
        GradientDescentOptimizer(1.0).apply_gradients([(None, "a"), (None, p["b"])], p)
    with pytest.raises(ValueError, match=r"^No variables provided\.$"):
        GradientDescentOptimizer(1.0).apply_gradients([], p)


def test_var_list_entry_not_in_tree():
    p = {"a": V(jnp.array(1.0))}
    opt = GradientDescentOptimizer(1.0)
    with pytest.raises(ValueError, match=r"^var_list entry 'zz' is not a variable of the parameter tree$"):
        opt.compute_gradients(lambda p: p["a"].value, p, var_list=["zz"])
    with pytest.raises(ValueError, match=r"var_list entry 'other' is not a variable of the parameter tree"):
        opt.compute_gradients(lambda p: p["a"].value, p, var_list=[V(1.0, name="other")])
    with pytest.raises(ValueError, match=r"var_list entry Variable\(name=None.* has no name"):
        opt.compute_gradients(lambda p: p["a"].value, p, var_list=[V(1.0)])
    with pytest.raises(ValueError, match=r"^Variable 'zz' is not a variable of the parameter tree$"):
        opt.apply_gradients([(jnp.ones(()), "zz")], p)


def test_non_float_variable_in_var_list():
    p = {"a": V(jnp.array(1.0)), "i": V(jnp.array([1, 2]))}
    msg = r"^Invalid type int32 for i, expected: \[tf\.float16, tf\.bfloat16, tf\.float32, tf\.float64\]\.$"
    with pytest.raises(ValueError, match=msg):
        GradientDescentOptimizer(1.0).compute_gradients(lambda p: p["a"].value, p, var_list=["a", "i"])


def test_integer_loss_is_invalid():
    p = {"a": V(jnp.array([1.0, 2.0]))}
    with pytest.raises(ValueError, match=r"^Invalid type int32 for loss"):
        GradientDescentOptimizer(1.0).compute_gradients(lambda p: jnp.sum(p["a"].value.astype(jnp.int32)), p)


def test_apply_gradients_shape_and_dtype_mismatch():
    p = {"a": V(jnp.array([1.0, 2.0]))}
    opt = GradientDescentOptimizer(1.0)
    with pytest.raises(
        ValueError, match=r"^Gradient for variable 'a' has shape \(3,\), but the variable has shape \(2,\)$"
    ):
        opt.apply_gradients([(jnp.ones(3), "a")], p)
    with pytest.raises(
        ValueError, match=r"^Gradient for variable 'a' has dtype float16, but the variable has dtype float32$"
    ):
        opt.apply_gradients([(jnp.ones(2, jnp.float16), "a")], p)
    with pytest.raises(ValueError, match=r"Gradient for variable 'a' has shape \(5,\)"):
        opt.apply_gradients([(jg.IndexedSlices(jnp.ones((1,)), jnp.array([0]), (5,)), "a")], p)


def test_unknown_gate_gradients():
    p = {"a": V(jnp.array(1.0))}
    msg = (r"^gate_gradients must be one of: Optimizer\.GATE_NONE, Optimizer\.GATE_OP, "
           r"Optimizer\.GATE_GRAPH\.  Not 5$")
    with pytest.raises(ValueError, match=msg):
        GradientDescentOptimizer(1.0).compute_gradients(lambda p: p["a"].value, p, gate_gradients=5)
    for gate in (0, 1, 2):
        _, gv = GradientDescentOptimizer(1.0).compute_gradients(
            lambda p: p["a"].value, p, gate_gradients=gate
        )
        assert float(gv[0][0]) == 1.0


def test_non_callable_loss():
    p = {"a": V(jnp.array(1.0))}
    msg = r"`loss` passed to Optimizer\.compute_gradients must be a callable.*got Array"
    with pytest.raises(TypeError, match=msg):
        GradientDescentOptimizer(1.0).compute_gradients(jnp.array(1.0), p)


# -- global_step and slots -------------------------------------------------------------------------
def test_global_step_incremented_once_per_apply(maybe_jit):
    p = _params()
    opt = GradientDescentOptimizer(0.1)
    step = maybe_jit(lambda p: opt.minimize(_loss, p, global_step=p["global_step"])[0])
    for expected in (1, 2, 3):
        p = step(p)
        assert int(p["global_step"].value) == expected
        assert p["global_step"].dtype == jnp.int32
    by_name = opt.apply_gradients([(jnp.ones(()), "c")], p, global_step="global_step")[0]
    assert int(by_name["global_step"].value) == 4


def test_minimize_without_global_step_leaves_it():
    p = _params()
    new, _, _ = GradientDescentOptimizer(0.1).minimize(_loss, p)
    assert int(new["global_step"].value) == 0


def test_global_step_errors():
    p = _params()
    opt = GradientDescentOptimizer(0.1)
    with pytest.raises(ValueError, match=r"global_step must be a Variable of the parameter tree.*'nope'"):
        opt.apply_gradients([(jnp.ones(()), "c")], p, global_step="nope")
    with pytest.raises(ValueError, match=r"^global_step 'c' must be an integer variable, got dtype float32$"):
        opt.apply_gradients([(jnp.ones(()), "c")], p, global_step="c")


def test_global_step_moves_even_when_only_some_grads_exist():
    p = _params()
    new, _ = MomentumOptimizer(0.1, 0.9).apply_gradients(
        [(None, "a"), (jnp.ones(()), "c")], p, global_step=p["global_step"]
    )
    assert int(new["global_step"].value) == 1
    np.testing.assert_array_equal(np.asarray(new["a"].value), np.asarray(p["a"].value))


def test_apply_gradients_without_state_creates_slots_only_for_variables_with_gradients():
    p = _params()
    opt = MomentumOptimizer(2.0, 0.9)
    new, state = opt.apply_gradients([(None, "a"), (jnp.full((2, 2), 0.5), "b"), (None, "c")], p)
    assert list(state.slots) == ["momentum"]
    assert list(state.slots["momentum"]) == ["b"]
    np.testing.assert_array_equal(np.asarray(state.slots["momentum"]["b"]), np.full((2, 2), 0.5))
    assert opt.get_slot(state, "a", "momentum") is None
    with pytest.raises(ValueError, match=r"get_slot needs the variable's name; Variable\(name=None"):
        opt.get_slot(state, p["b"], "momentum")  # a path-named leaf: its name is only known with the tree
    slot = opt.get_slot(state, jg.trainable_variables(p, "b")[0], "momentum")
    assert opt.get_slot(state, "b", "nope") is None
    assert slot.name == "b/Momentum" and slot.trainable is False
    np.testing.assert_allclose(np.asarray(new["b"].value), np.asarray(p["b"].value) - 1.0)
    assert int(state.iterations) == 1
    # init() up front covers every trainable variable instead
    assert sorted(opt.init(p).slots["momentum"]) == ["a", "b", "c"]


# -- the loss value and the forward pass -----------------------------------------------------------
def test_loss_value_equals_forward_and_python_call_count():
    p = _params()
    calls = []

    def loss(p):
        calls.append(1)
        return _loss(p)

    value, _ = GradientDescentOptimizer(0.1).compute_gradients(loss, p)
    np.testing.assert_allclose(float(value), float(_loss(p)), rtol=1e-6)
    # One Python call per compute_gradients: the loss is traced once, and the traced program is what
    # gets analysed and differentiated; the compiled program runs the forward once (next test).
    assert len(calls) == 1


def test_forward_is_computed_once_in_compiled_step():
    p = _params()
    opt = GradientDescentOptimizer(0.1)

    def loss(p):
        return jnp.sum(jnp.cos(p["a"].value)) * p["c"].value

    def step(p, s):
        return opt.minimize(loss, p, s)

    hlo = jax.jit(step).lower(p, opt.init(p)).compile().as_text()
    cos_lines = [line for line in hlo.splitlines() if " cosine(" in line]
    assert len(cos_lines) == 1, "\n".join(cos_lines)

    def tanh_step(p, s):
        return opt.minimize(_loss, p, s)

    hlo = jax.jit(tanh_step).lower(p, opt.init(p)).compile().as_text()
    tanh_lines = [line for line in hlo.splitlines() if " tanh(" in line]
    assert len(tanh_lines) == 1, "\n".join(tanh_lines)


def _run_steps(step, p, s, n):
    losses = []
    for _ in range(n):
        p, s, loss = step(p, s)
        losses.append(float(loss))
    return p, s, losses


@pytest.mark.parametrize(
    "make_opt",
    [lambda: GradientDescentOptimizer(0.1), lambda: MomentumOptimizer(0.1, 0.9)],
    ids=["gd", "momentum"],
)
def test_jit_and_no_jit_agree(maybe_jit, make_opt):
    opt = make_opt()
    p = _params()

    def step(p, s):
        return opt.minimize(_loss, p, s, global_step="global_step")

    p1, s1, l1 = _run_steps(maybe_jit(step), p, opt.init(p), 3)
    # independent reference: plain jax.grad on arrays
    a, b = p["a"].value, p["b"].value
    ma, mb = jnp.zeros_like(a), jnp.zeros_like(b)
    mu = 0.9 if isinstance(opt, MomentumOptimizer) else 0.0
    ref_losses = []
    for _ in range(3):
        ref_losses.append(float(_ref_loss(a, b)))
        ga, gb = jax.grad(_ref_loss, argnums=(0, 1))(a, b)
        ma, mb = mu * ma + ga, mu * mb + gb
        a, b = a - 0.1 * ma, b - 0.1 * mb
    np.testing.assert_allclose(l1, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p1["a"].value), np.asarray(a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p1["b"].value), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert int(p1["global_step"].value) == 3


def test_jitted_minimize_traces_once_and_donates():
    opt = MomentumOptimizer(0.1, 0.9)
    p = _params()
    state = opt.init(p)

    @chex.assert_max_traces(n=1)
    def step(p, s):
        return opt.minimize(_loss, p, s, global_step=p["global_step"])

    jstep = jax.jit(step, donate_argnums=(0, 1))
    for i in range(5):
        old_a, old_slot = p["a"].value, state.slots["momentum"]["b"]
        p, state, _ = jstep(p, state)
        assert old_a.is_deleted(), f"params not donated at step {i}"
        assert old_slot.is_deleted(), f"opt_state not donated at step {i}"
    assert int(p["global_step"].value) == 5
    assert int(state.iterations) == 5


def test_python_scalar_variable_does_not_retrace():
    opt = GradientDescentOptimizer(0.1)
    p = {"c": V(3.0), "w": V(jnp.ones(2))}  # V(3.0) must not be weakly typed

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(p, s):
        return opt.minimize(lambda q: q["c"].value ** 2 + q["w"].value.sum(), p, s)

    s = opt.init(p)
    for _ in range(3):
        p, s, _ = step(p, s)
    np.testing.assert_allclose(float(p["c"].value), 3.0 * 0.8**3, rtol=1e-6)


# -- pytree structures -----------------------------------------------------------------------------
class Lin(jg.Module):
    def __init__(self):
        self.w = V(jnp.array([[1.0, -1.0], [0.5, 2.0]]))
        self.b = V(jnp.array([0.1, 0.2]))
        self.act = "tanh"


@dataclasses.dataclass
class DC:
    w: V
    scale: float


jax.tree_util.register_dataclass(DC, data_fields=["w"], meta_fields=["scale"])


@pytest.mark.parametrize("kind", ["dict", "module", "dataclass", "list"])
def test_pytree_structures(kind, maybe_jit):
    w0, b0 = jnp.array([[1.0, -1.0], [0.5, 2.0]]), jnp.array([0.1, 0.2])
    x = jnp.array([1.0, 3.0])
    if kind == "dict":
        p = {"layer": {"w": V(w0), "b": V(b0)}}
        get = lambda p: (p["layer"]["w"].value, p["layer"]["b"].value)  # noqa: E731
        names = ["layer/b", "layer/w"]
    elif kind == "module":
        p = {"net": [Lin()]}
        get = lambda p: (p["net"][0].w.value, p["net"][0].b.value)  # noqa: E731
        names = ["net/0/w", "net/0/b"]
    elif kind == "dataclass":
        p = {"d": DC(V(w0), 1.0), "b": V(b0)}
        get = lambda p: (p["d"].w.value * p["d"].scale, p["b"].value)  # noqa: E731
        names = ["b", "d/w"]
    else:
        p = [V(w0), V(b0)]
        get = lambda p: (p[0].value, p[1].value)  # noqa: E731
        names = ["0", "1"]

    def loss(p):
        w, b = get(p)
        return jnp.sum(jnp.tanh(x @ w + b) ** 2)

    opt = GradientDescentOptimizer(0.5)
    new, _, value = maybe_jit(lambda p: opt.minimize(loss, p))(p)
    assert [v.name for v in jg.trainable_variables(new)] == names
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(p)

    def ref(w, b):
        return jnp.sum(jnp.tanh(x @ w + b) ** 2)

    gw, gb = jax.grad(ref, argnums=(0, 1))(w0, b0)
    new_w, new_b = get(new)
    np.testing.assert_allclose(float(value), float(ref(w0, b0)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new_w), np.asarray(w0 - 0.5 * gw), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new_b), np.asarray(b0 - 0.5 * gb), rtol=1e-6)


# -- OptaxOptimizer --------------------------------------------------------------------------------
def test_optax_adam_matches_hand_written_optax(maybe_jit):
    p = _params()
    tx = optax.adam(0.05)
    opt = OptaxOptimizer(tx)
    state = opt.init(p)

    def step(p, s):
        return opt.minimize(_loss, p, s, global_step="global_step")

    jstep = maybe_jit(step)

    @jax.jit
    def ref_step(ref, ref_state):  # a hand-written optax step on plain arrays
        ga, gb = jax.grad(_ref_loss, argnums=(0, 1))(ref["a"], ref["b"])
        grads = {"a": ga, "b": gb, "c": jnp.zeros_like(ref["c"])}
        updates, ref_state = tx.update(grads, ref_state, ref)
        return optax.apply_updates(ref, updates), ref_state

    ref = {"a": p["a"].value, "b": p["b"].value, "c": p["c"].value}
    ref_state = tx.init(ref)
    for _ in range(2):
        p, state, _ = jstep(p, state)
        ref, ref_state = ref_step(ref, ref_state)
    np.testing.assert_allclose(np.asarray(p["a"].value), np.asarray(ref["a"]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(p["b"].value), np.asarray(ref["b"]), rtol=1e-5)
    assert int(p["global_step"].value) == 2
    # c has a None gradient: its value is kept exactly (adam with zero grads would leave it anyway;
    # the next test uses a transform that moves it)
    assert float(p["c"].value) == 3.0


def test_optax_none_gradient_keeps_value():
    p = {"w": V(jnp.array(1.0)), "u": V(jnp.array(5.0))}
    opt = OptaxOptimizer(optax.add_decayed_weights(0.5))  # would move u even with a zero gradient
    new, _, _ = opt.minimize(lambda p: p["w"].value * 2.0, p, opt.init(p))
    assert float(new["u"].value) == 5.0
    assert float(new["w"].value) == 1.0 + (2.0 + 0.5 * 1.0)  # updates are added: g + 0.5 * w


def test_optax_inject_hyperparams_state_is_not_mistaken_for_the_variables():
    # the hyper-parameter dict is the first dict in this state; it used to be read as variable names
    p = _params()
    opt = OptaxOptimizer(optax.inject_hyperparams(optax.adam)(learning_rate=0.05))
    plain = OptaxOptimizer(optax.adam(0.05))
    new, state, _ = opt.minimize(_loss, p, opt.init(p), global_step="global_step")
    ref, _, _ = plain.minimize(_loss, p, plain.init(p), global_step="global_step")
    chex.assert_trees_all_close(new, ref)
    assert float(state.non_slots["optax"].hyperparams["learning_rate"]) == pytest.approx(0.05)


def test_optax_none_gradient_keeps_the_variables_state_but_counters_advance():
    p = {"w": V(jnp.array([1.0])), "u": V(jnp.array([5.0]))}
    opt = OptaxOptimizer(optax.adam(0.1))
    p, state, _ = opt.minimize(lambda p: jnp.sum(p["w"].value * p["u"].value), p, opt.init(p))
    before = state.non_slots["optax"][0]
    assert float(before.mu["u"][0]) != 0.0
    # u gets no gradient: TF skips it, so its value and its moments stay (a zero gradient would decay them)
    new, state, _ = opt.minimize(lambda p: jnp.sum(p["w"].value * 2.0), p, state)
    after = state.non_slots["optax"][0]
    assert float(new["u"].value[0]) == float(p["u"].value[0])
    np.testing.assert_array_equal(after.mu["u"], before.mu["u"])
    np.testing.assert_array_equal(after.nu["u"], before.nu["u"])
    assert float(after.mu["w"][0]) != float(before.mu["w"][0])
    assert int(after.count) == 2  # shared counters advance once per step, like TF's beta1_power


def test_optax_state_not_made_by_init_is_a_clear_error():
    p = _params()
    opt = OptaxOptimizer(optax.sgd(0.1))
    state = jg.train.OptimizerState(jnp.zeros((), jnp.int32), {}, {"optax": optax.EmptyState()})
    with pytest.raises(ValueError, match="not made by OptaxOptimizer.init"):
        opt.minimize(_loss, p, state)


def test_optax_variables_are_the_state_leaves_by_path():
    p = {"w": V(jnp.ones(2), name="w")}
    opt = OptaxOptimizer(optax.adam(0.1))
    names = [v.name for v in opt.variables(opt.init(p))]
    assert names == ["Optax/0/count", "Optax/0/mu/w", "Optax/0/nu/w"]


# -- lax.scan --------------------------------------------------------------------------------------
def test_minimize_inside_scan_equals_python_loop():
    opt = MomentumOptimizer(0.1, 0.9)
    p = _params()
    state = opt.init(p)

    def step(carry, _):
        p, s = carry
        p, s, loss = opt.minimize(_loss, p, s, global_step="global_step")
        return (p, s), loss

    (p_scan, s_scan), losses = jax.jit(lambda c: jax.lax.scan(step, c, None, length=4))((p, state))
    p_loop, s_loop = p, state
    loop_losses = []
    for _ in range(4):
        (p_loop, s_loop), loss = step((p_loop, s_loop), None)
        loop_losses.append(float(loss))
    np.testing.assert_allclose(np.asarray(losses), loop_losses, rtol=1e-5)
    chex.assert_trees_all_close(p_scan, p_loop, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(s_scan, s_loop, rtol=1e-5, atol=1e-6)
    assert int(p_scan["global_step"].value) == 4
