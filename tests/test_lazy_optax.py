"""lazy_optax: optax transformations on IndexedSlices touch only their rows, and say so when they cannot."""

import re
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices
from jaxgraph import Variable as V
from jaxgraph.slot_owners import slot_owners
from jaxgraph.train import NotRowSeparable, OptaxOptimizer, apply_updates, dense_global_norm, lazy_optax

ROWS, DIM = 12, 3
# Every step touches rows 2, 5 and 7 (2 twice: the duplicate is summed) plus one explicit padding id.
IDS = np.array([2, 5, 2, 7, ROWS])
TOUCHED = np.array([2, 5, 7])
UNTOUCHED = np.setdiff1d(np.arange(ROWS), TOUCHED)


def _params():
    rng = np.random.default_rng(0)
    return {"emb": jnp.asarray(rng.standard_normal((ROWS, DIM)), jnp.float32),
            "w": jnp.asarray(rng.standard_normal(DIM), jnp.float32)}


def _grads(step):
    rng = np.random.default_rng(10 + step)
    values = jnp.asarray(rng.standard_normal((len(IDS), DIM)), jnp.float32)
    return {"emb": IndexedSlices(values, jnp.asarray(IDS), (ROWS, DIM)),
            "w": jnp.asarray(rng.standard_normal(DIM), jnp.float32)}


def _dense(grads):
    return {k: g.to_dense() if isinstance(g, IndexedSlices) else g for k, g in grads.items()}


def _user_sign_ema():
    """A user-written element-wise transformation (sign descent scaled by a per-row EMA of |g|)."""

    def init(params):
        return {"ema": jax.tree.map(jnp.zeros_like, params)}

    def update(updates, state, params=None):
        ema = jax.tree.map(lambda e, g: 0.9 * e + 0.1 * jnp.abs(g), state["ema"], updates)
        return jax.tree.map(lambda g, e: -0.1 * jnp.sign(g) * e, updates, ema), {"ema": ema}

    return optax.GradientTransformation(init, update)


def _user(rule):
    """A user-written stateless transformation applying ``rule(g, p)`` to each leaf."""
    def update(updates, state, params=None):
        return jax.tree.map(rule, updates, params), state

    return lambda: optax.GradientTransformation(lambda p: optax.EmptyState(), update)


SEPARABLE = {
    "sgd": lambda: optax.sgd(0.1),
    "momentum": lambda: optax.sgd(0.1, momentum=0.9),
    "nesterov": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
    "adagrad": lambda: optax.adagrad(0.3),
    "rmsprop": lambda: optax.rmsprop(0.05, decay=0.8),
    "rmsprop_centered_momentum": lambda: optax.rmsprop(0.05, centered=True, momentum=0.9),
    "adam": lambda: optax.adam(0.05),
    "adamw": lambda: optax.adamw(0.05, weight_decay=0.1),
    "scale": lambda: optax.scale(-0.5),
    "scale_by_schedule": lambda: optax.chain(optax.scale_by_adam(),
                                             optax.scale_by_schedule(optax.exponential_decay(-0.1, 1, 0.5))),
    "scale_by_learning_rate": lambda: optax.chain(optax.scale_by_rms(),
                                                  optax.scale_by_learning_rate(optax.linear_schedule(0.1, 0.0, 5))),
    "inject_hyperparams_adam": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=0.05),
    "clip_then_adam": lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adam(0.05)),
    "centralize_then_momentum": lambda: optax.chain(optax.centralize(), optax.sgd(0.1, momentum=0.9)),
    "normalize_by_update_norm": lambda: optax.chain(optax.normalize_by_update_norm(0.5), optax.sgd(1.0)),
    "masked_adam": lambda: optax.masked(optax.adam(0.05), {"emb": True, "w": False}),
    "multi_transform": lambda: optax.multi_transform({"a": optax.adam(0.05), "b": optax.sgd(0.1, momentum=0.9)},
                                                     {"emb": "a", "w": "b"}),
    "user_elementwise": _user_sign_ema,
    # reads that look global but are exact on the row block
    "user_times_sum_of_gradient": _user(lambda g, p: g * jnp.sum(g)),
    "user_per_row_norm": _user(lambda g, p: g / (jnp.linalg.norm(g, axis=-1, keepdims=True) + 1e-6)),
    "user_column_sums": _user(lambda g, p: g - jnp.sum(g, axis=0, keepdims=True) + 0.01 * p),
    "user_cond_on_gradient_norm": _user(lambda g, p: jax.lax.cond(jnp.sum(g * g) > 1.0, lambda x: x * 0.5,
                                                                  lambda x: x, g)),
}


@pytest.mark.parametrize("make_tx", SEPARABLE.values(), ids=SEPARABLE.keys())
def test_touched_rows_match_dense_optax_and_untouched_rows_do_not_move(make_tx):
    tx, lazy = make_tx(), lazy_optax(make_tx())
    params0 = _params()
    dense_p, dense_s = params0, tx.init(params0)
    lazy_p, lazy_s = params0, lazy.init(params0)
    lazy_s0 = lazy_s
    step = jax.jit(lazy.update)
    for i in range(3):
        grads = _grads(i)
        updates, dense_s = tx.update(_dense(grads), dense_s, dense_p)
        dense_p = optax.apply_updates(dense_p, updates)
        updates, lazy_s = step(grads, lazy_s, lazy_p)
        assert isinstance(updates["emb"], IndexedSlices)
        lazy_p = apply_updates(lazy_p, updates)

    # touched rows and the dense leaf: as dense optax (each step touches the same rows, so their
    # histories are the same in both)
    np.testing.assert_allclose(lazy_p["emb"][TOUCHED], dense_p["emb"][TOUCHED], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lazy_p["w"], dense_p["w"], rtol=1e-5, atol=1e-6)
    # untouched rows: bit for bit, in the parameter and in every slot
    np.testing.assert_array_equal(lazy_p["emb"][UNTOUCHED], params0["emb"][UNTOUCHED])
    owners = slot_owners(lazy_s, params0)
    emb = 0  # the index of params0["emb"] among the tree's leaves (dict keys sort)
    for leaf, leaf0, dense_leaf, owner in zip(jax.tree_util.tree_leaves(lazy_s), jax.tree_util.tree_leaves(lazy_s0),
                                              jax.tree_util.tree_leaves(dense_s), owners, strict=True):
        if owner == emb:
            np.testing.assert_array_equal(leaf[UNTOUCHED], leaf0[UNTOUCHED])
            np.testing.assert_allclose(leaf[TOUCHED], dense_leaf[TOUCHED], rtol=1e-5, atol=1e-6)
        else:  # counters (advanced once per step), hyper-parameters, the dense leaf's slots
            np.testing.assert_allclose(leaf, dense_leaf, rtol=1e-5, atol=1e-6)


def test_counter_advances_once_per_step():
    lazy = lazy_optax(optax.adam(0.1))
    state = lazy.init(_params())
    for i in range(3):
        _, state = jax.jit(lazy.update)(_grads(i), state, _params())
    assert int(state[0].count) == 3


def test_adam_weight_decay_is_lazy():
    # adamw in TF's lazy sense: only the touched rows decay
    params = {"emb": jnp.ones((ROWS, DIM))}
    grads = {"emb": IndexedSlices(jnp.zeros((1, DIM)), jnp.array([4]), (ROWS, DIM))}
    lazy = lazy_optax(optax.adamw(1.0, weight_decay=0.5))
    updates, _ = jax.jit(lazy.update)(grads, lazy.init(params), params)
    new = jax.jit(apply_updates)(params, updates)["emb"]
    np.testing.assert_allclose(new[4], 0.5)
    np.testing.assert_array_equal(np.delete(np.asarray(new), 4, axis=0), 1.0)


def test_padding_ids_are_dropped_and_their_update_is_zero():
    params = {"emb": jnp.ones((ROWS, DIM))}
    lazy = lazy_optax(optax.adam(0.1))
    grads = {"emb": IndexedSlices(jnp.full((3, DIM), 5.0), jnp.array([ROWS, 1, ROWS]), (ROWS, DIM))}
    updates, state = jax.jit(lazy.update)(grads, lazy.init(params), params)
    slices = updates["emb"]
    real = np.asarray(slices.indices) < ROWS
    assert real.sum() == 1
    np.testing.assert_array_equal(np.asarray(slices.values)[~real], 0.0)
    new = jax.jit(apply_updates)(params, updates)["emb"]
    np.testing.assert_array_equal(np.delete(np.asarray(new), 1, axis=0), 1.0)  # row ROWS-1 untouched too
    np.testing.assert_array_equal(np.delete(np.asarray(state[0].mu["emb"]), 1, axis=0), 0.0)


def test_an_empty_gradient_still_counts_a_step():
    params = _params()
    lazy = lazy_optax(optax.adam(0.1))
    grads = {"emb": IndexedSlices(jnp.zeros((0, DIM)), jnp.zeros((0,), jnp.int32), (ROWS, DIM)), "w": jnp.ones(DIM)}
    updates, state = lazy.update(grads, lazy.init(params), params)
    np.testing.assert_array_equal(apply_updates(params, updates)["emb"], params["emb"])
    assert int(state[0].count) == 1


# -- norms and clipping ----------------------------------------------------------------------------
def test_clip_by_global_norm_equals_the_dense_computation():
    tx = optax.chain(optax.clip_by_global_norm(0.7), optax.sgd(1.0))
    params = _params()
    grads = _grads(0)
    updates, _ = jax.jit(lazy_optax(tx).update)(grads, tx.init(params), params)
    dense_updates, _ = jax.jit(tx.update)(_dense(grads), tx.init(params), params)
    new = jax.jit(apply_updates)(params, updates)
    chex.assert_trees_all_close(new, optax.apply_updates(params, dense_updates), rtol=1e-6)
    assert float(optax.tree.norm(dense_updates)) == pytest.approx(0.7, rel=1e-5)  # it did clip


def test_global_norm_counts_an_indexed_slices_as_its_dense_array():
    grads = _grads(0)  # with a repeated id: the norm is that of the summed rows
    want = float(optax.tree.norm(_dense(grads)))
    np.testing.assert_allclose(float(dense_global_norm(grads)), want, rtol=1e-6)
    np.testing.assert_allclose(float(jax.jit(dense_global_norm)(grads)), want, rtol=1e-6)


# -- refused and densified transformations ---------------------------------------------------------
def _row_mean_scaling():
    def update(updates, state, params=None):
        return jax.tree.map(lambda g: g / jnp.mean(jnp.abs(g)), updates), state

    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


REFUSED = {
    "lamb": (lambda: optax.lamb(0.1), r"scale_by_trust_ratio is not row-separable: reduce_sum reduces over the rows "
                                      r"of emb"),
    "lars": (lambda: optax.lars(0.1), "scale_by_trust_ratio is not row-separable"),
    "clip_after_adam": (lambda: optax.chain(optax.adam(0.1), optax.clip_by_global_norm(1.0)),
                        "clip_by_global_norm is not row-separable"),
    "sm3": (lambda: optax.sm3(0.1), "scale_by_sm3 is not row-separable: it cannot run on row blocks of emb"),
    "add_noise": (lambda: optax.add_noise(0.1, 0.5, 0), "add_noise is not row-separable: random_bits"),
    "mean_over_rows": (_row_mean_scaling, r"uses the number of rows as a value .*test_lazy_optax.py"),
    "user_sum_of_params": (_user(lambda g, p: g + jnp.sum(p)), "reduce_sum reduces over the rows of emb"),
    "user_max": (_user(lambda g, p: g / jnp.max(g)), "reduce_max reduces over the rows of emb"),
    "user_roll": (_user(lambda g, p: jnp.roll(g, 1, axis=0)), "slice selects or shifts rows of emb"),
    "user_reverse": (_user(lambda g, p: g[::-1]), "rev reverses the rows of emb"),
    "user_cumsum": (_user(lambda g, p: jnp.cumsum(g, axis=0)), "cumsum runs along the rows of emb"),
    "user_sort": (_user(lambda g, p: jnp.sort(g, axis=0)), "sort runs along the rows of emb"),
    "user_first_row": (_user(lambda g, p: g * g[0]), "slice selects or shifts rows of emb"),
    "user_row_position": (_user(lambda g, p: g * jnp.arange(g.shape[0])[:, None] if g.ndim == 2 else g),
                          "iota makes values that depend on a row's position in emb"),
    "user_gram": (_user(lambda g, p: g @ g.T @ g if g.ndim == 2 else g), "pairs every row with every other row"),
}


@pytest.mark.parametrize("make_tx,message", REFUSED.values(), ids=REFUSED.keys())
def test_non_separable_transformation_is_refused_by_name(make_tx, message):
    tx = make_tx()
    params = _params()
    with pytest.raises(NotRowSeparable, match=message) as info:
        jax.jit(lazy_optax(tx).update)(_grads(0), tx.init(params), params)
    assert "non_separable='densify'" in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rows_of_two_tables_may_not_be_mixed():
    def update(updates, state, params=None):
        return {"a": updates["a"] + updates["b"], "b": updates["b"]}, state

    tx = optax.GradientTransformation(lambda p: optax.EmptyState(), update)
    params = {"a": jnp.zeros((ROWS, DIM)), "b": jnp.zeros((ROWS, DIM))}
    same_count = IndexedSlices(jnp.ones((2, DIM)), jnp.array([1, 2]), (ROWS, DIM))
    grads = {"a": same_count, "b": IndexedSlices(jnp.ones((2, DIM)), jnp.array([3, 4]), (ROWS, DIM))}
    with pytest.raises(NotRowSeparable, match="rows of a, b"):
        lazy_optax(tx).update(grads, tx.init(params), params)


def test_densify_warns_once_naming_the_transformation_and_equals_dense():
    tx = optax.lamb(0.1)
    lazy = lazy_optax(tx, non_separable="densify")
    params = _params()
    state, dense_state = lazy.init(params), tx.init(params)
    with pytest.warns(UserWarning, match=r"scale_by_trust_ratio is not row-separable.*made dense"):
        updates, state = lazy.update(_grads(0), state, params)
    dense_updates, dense_state = tx.update(_dense(_grads(0)), dense_state, params)
    chex.assert_trees_all_close(updates, dense_updates)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second step says nothing
        lazy.update(_grads(1), state, params)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="non_separable must be 'error' or 'densify'"):
        lazy_optax(optax.sgd(0.1), non_separable="ignore")
    params = _params()
    wrong = {"emb": IndexedSlices(jnp.ones((1, DIM)), jnp.array([0]), (ROWS + 1, DIM)), "w": params["w"]}
    with pytest.raises(ValueError, match=r"emb has dense_shape \(13, 3\), but the parameter has shape \(12, 3\)"):
        lazy_optax(optax.sgd(0.1)).update(wrong, optax.EmptyState(), params)
    with pytest.raises(ValueError, match=r"dense_shape \(13, 3\) for a parameter of shape \(12, 3\)"):
        apply_updates(params, wrong)


def test_apply_updates_keeps_dtypes_and_none():
    params = {"t": jnp.zeros((4, 2), jnp.bfloat16), "b": jnp.zeros(2, jnp.bfloat16), "none": None}
    updates = {"t": IndexedSlices(jnp.ones((1, 2)), jnp.array([3]), (4, 2)), "b": jnp.ones(2), "none": None}
    new = apply_updates(params, updates)
    assert new["t"].dtype == new["b"].dtype == jnp.bfloat16 and new["none"] is None
    np.testing.assert_array_equal(np.asarray(new["t"], np.float32).sum(axis=1), [0, 0, 0, 2])


# -- jit: one trace, donation, nothing table-sized -------------------------------------------------
def test_jitted_donated_step_traces_once():
    lazy = lazy_optax(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1)))
    chex.clear_trace_counter()

    @chex.assert_max_traces(n=1)
    def step(params, state, grads):
        updates, state = lazy.update(grads, state, params)
        return apply_updates(params, updates), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    params, state = _params(), lazy.init(_params())
    for i in range(3):
        old = params["emb"]
        params, state = donated(params, state, _grads(i))
        assert old.is_deleted()  # updated in place
    chex.clear_trace_counter()


VOCAB, WIDTH = 100_000, 64
TABLE = f"f32[{VOCAB},{WIDTH}]"
_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%(\S+)\s*=\s*(\S+)\s+([\w-]+)\((.*)$")
# Table-sized values a lazy step may hold: the donated buffers, their scatters (and fusions around
# them), and the plumbing that passes buffers on.
_ALLOWED = {"parameter", "scatter", "fusion", "tuple", "get-tuple-element", "bitcast"}


def _table_sized_ops(hlo: str) -> list[str]:
    ops = []
    for line in hlo.splitlines():
        m = _INSTR.match(line)
        if m and m.group(2).startswith(TABLE):
            ops.append(m.group(3))
    return ops


def _optax_optimizer_step(opt):
    params = {"emb": V(jnp.zeros((VOCAB, WIDTH))), "out": V(jnp.zeros((WIDTH,)))}

    def step(params, opt_state, ids):
        def loss(p):
            return jnp.sum(jax.nn.softplus(jg.nn.embedding_lookup(p["emb"], ids) @ p["out"].value))

        return opt.minimize(loss, params, opt_state)

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, opt.init(params), jnp.zeros((128,), jnp.int32))


def test_compiled_optax_optimizer_step_has_no_table_sized_arithmetic():
    hlo = _optax_optimizer_step(OptaxOptimizer(optax.adagrad(0.1))).compile().as_text()
    ops = _table_sized_ops(hlo)
    assert set(ops) <= _ALLOWED, ops
    assert ops.count("scatter") == 2  # one per buffer: the table and its accumulator
    # the same count as jaxgraph's own Adagrad
    core = _table_sized_ops(_optax_optimizer_step(jg.train.AdagradOptimizer(0.1)).compile().as_text())
    assert len(ops) <= len(core), (ops, core)


def test_compiled_plain_optax_step_has_no_table_sized_arithmetic():
    lazy = lazy_optax(optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.1)))
    params = {"emb": jnp.zeros((VOCAB, WIDTH)), "out": jnp.zeros((WIDTH,))}

    def step(params, state, ids):
        rows = params["emb"][ids]
        row_grads = jax.grad(lambda r: jnp.sum(jax.nn.softplus(r @ params["out"])))(rows)
        grads = {"emb": IndexedSlices(row_grads, ids, (VOCAB, WIDTH)), "out": jnp.ones(WIDTH)}
        updates, state = lazy.update(grads, state, params)
        return apply_updates(params, updates), state

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(params, lazy.init(params),
                                                         jnp.zeros((128,), jnp.int32)).compile()
    ops = _table_sized_ops(compiled.as_text())
    assert set(ops) <= _ALLOWED, ops
    assert ops.count("scatter") == 3  # table, mu, nu


def test_the_hlo_check_can_fail():
    # a densified step (what OptaxOptimizer did for every sparse gradient before) computes on the table
    with pytest.warns(UserWarning, match="made dense"):
        lowered = _optax_optimizer_step(OptaxOptimizer(optax.lamb(0.1), non_separable="densify"))
    ops = _table_sized_ops(lowered.compile().as_text())
    assert {"broadcast", "multiply"} <= set(ops) - _ALLOWED, ops


# -- TF's lazy sparse rules: OptaxOptimizer against jaxgraph's TF-exact optimizers -----------------
TF_PAIRS = {
    # optax's adagrad adds eps inside the rsqrt; TF adds nothing
    "adagrad": (lambda: jg.train.AdagradOptimizer(0.5), lambda: optax.adagrad(0.5, initial_accumulator_value=0.1,
                                                                            eps=0.0), "accumulator"),
    "momentum": (lambda: jg.train.MomentumOptimizer(0.5, 0.9), lambda: optax.sgd(0.5, momentum=0.9), "momentum"),
    "nesterov": (lambda: jg.train.MomentumOptimizer(0.5, 0.9, use_nesterov=True),
                 lambda: optax.sgd(0.5, momentum=0.9, nesterov=True), "momentum"),
}


@pytest.mark.parametrize("make_core,make_tx,slot", TF_PAIRS.values(), ids=TF_PAIRS.keys())
def test_optax_sparse_steps_follow_tfs_lazy_rules(make_core, make_tx, slot):
    # different rows each step (so untouched rows' slots must not decay), with duplicates
    steps = [np.array([1, 3, 3, 0]), np.array([3, 6, 6, 6]), np.array([0, 1, 7, 7])]
    rng = np.random.default_rng(3)
    table = rng.standard_normal((8, 2)).astype(np.float32)

    def loss(p, ids):
        return jnp.sum(jnp.sin(jg.nn.embedding_lookup(p["emb"], ids)) * jnp.arange(1.0, 3.0))

    results = []
    for opt in (make_core(), OptaxOptimizer(make_tx())):
        params = {"emb": V(jnp.asarray(table), name="emb")}
        state = opt.init(params)
        step = jax.jit(lambda p, s, ids, opt=opt: opt.minimize(lambda q: loss(q, ids), p, s)[:2])
        for ids in steps:
            params, state = step(params, state, jnp.asarray(ids))
        results.append((params, state))
    (core_p, core_s), (optax_p, optax_s) = results
    np.testing.assert_allclose(optax_p["emb"].value, core_p["emb"].value, rtol=1e-6, atol=1e-7)
    (optax_slot,) = [x for x, o in zip(jax.tree_util.tree_leaves(optax_s.non_slots["optax"]),
                                       slot_owners(optax_s.non_slots["optax"], {"emb": table}), strict=True)
                     if o == 0]
    np.testing.assert_allclose(optax_slot, core_s.slots[slot]["emb"], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(optax_p["emb"].value[np.array([2, 4, 5])], table[[2, 4, 5]])


def test_optax_optimizer_refuses_or_densifies_a_non_separable_transformation():
    params = {"emb": V(jnp.ones((ROWS, DIM)), name="emb")}

    def loss(p):
        return jnp.sum(jg.nn.embedding_lookup(p["emb"], jnp.array([1, 2])))

    with pytest.raises(NotRowSeparable, match=r"scale_by_trust_ratio is not row-separable.*non_separable='densify'"):
        OptaxOptimizer(optax.lamb(0.1)).minimize(loss, params)
    opt = OptaxOptimizer(optax.lamb(0.1), non_separable="densify")
    with pytest.warns(UserWarning, match="gradients of emb are made dense"):
        new, _, _ = opt.minimize(loss, params, opt.init(params))
    assert not np.array_equal(new["emb"].value[1], params["emb"].value[1])


def test_optax_optimizer_leaves_a_table_without_gradient_alone_in_a_sparse_step():
    params = {"emb": V(jnp.ones((ROWS, DIM)), name="emb"), "other": V(jnp.ones((ROWS, DIM)), name="other")}
    opt = OptaxOptimizer(optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9)))
    step = jax.jit(lambda p, s, f: opt.minimize(f, p, s)[:2], static_argnums=2)

    def both(p):
        return jnp.sum(jg.nn.embedding_lookup(p["emb"], jnp.array([1])) + jg.nn.embedding_lookup(p["other"],
                                                                                                 jnp.array([3])))

    def emb_only(p):
        return jnp.sum(jg.nn.embedding_lookup(p["emb"], jnp.array([1, 2])))

    params, state = step(params, opt.init(params), both)
    trace = state.non_slots["optax"][1][0].trace["other"]
    assert float(trace[3, 0]) != 0.0
    new, state = step(params, state, emb_only)  # "other" has a None gradient
    np.testing.assert_array_equal(new["other"].value, params["other"].value)
    np.testing.assert_array_equal(state.non_slots["optax"][1][0].trace["other"], trace)
    assert not np.array_equal(new["emb"].value[2], params["emb"].value[2])
