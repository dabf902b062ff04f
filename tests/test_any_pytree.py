"""Any pytree is a parameter tree: plain dicts of arrays, Equinox modules, Flax NNX modules and their
nnx.State, mixed with jaxgraph Variables; describe(), freeze/unfreeze on every kind, the Saver."""

import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxgraph as jg
from jaxgraph.train import AdagradOptimizer, GradientDescentOptimizer, Saver

IDS = jnp.array([1, 4, 4, 7])
Y = jnp.array([1.0, -1.0, 0.5, 2.0])


def _float_leaves(tree):
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
            if eqx.is_inexact_array(x)}


def _assert_every_float_leaf_changed(before, after):
    old, new = _float_leaves(before), _float_leaves(after)
    assert old.keys() == new.keys() and old
    unchanged = [k for k in old if np.array_equal(old[k], new[k])]
    assert not unchanged, f"not trained: {unchanged}"


# -- models of each kind ------------------------------------------------------------------------------
def _dict_model():
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"emb": jax.random.normal(k1, (10, 4)), "head": {"w": jax.random.normal(k2, (4,)), "b": jnp.zeros(())}}


def _dict_forward(p, ids):
    return p["emb"][ids] @ p["head"]["w"] + p["head"]["b"]


class EqxModel(eqx.Module):
    emb: eqx.nn.Embedding
    mlp: eqx.nn.MLP

    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.emb = eqx.nn.Embedding(10, 4, key=k1)
        self.mlp = eqx.nn.MLP(4, 1, 8, 2, key=k2)

    def __call__(self, ids):
        return jax.vmap(lambda i: self.mlp(self.emb(i))[0])(ids)


class NNXModel(nnx.Module):
    def __init__(self, rngs):
        self.emb = nnx.Embed(10, 4, rngs=rngs)
        self.hidden = nnx.Linear(4, 8, rngs=rngs)
        self.out = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, ids):
        return self.out(jax.nn.tanh(self.hidden(self.emb(ids))))[:, 0]


def _mse(pred):
    return jnp.mean((pred - Y) ** 2)


# -- every layer of every kind trains -----------------------------------------------------------------------
def test_plain_dict_model_trains_every_array_with_a_sparse_table_gradient(maybe_jit):
    p = _dict_model()
    opt = GradientDescentOptimizer(0.1)
    loss, gv = opt.compute_gradients(lambda p: _mse(_dict_forward(p, IDS)), p)
    grads = {v.name: g for g, v in gv}
    assert sorted(grads) == ["emb", "head/b", "head/w"]
    assert isinstance(grads["emb"], jg.IndexedSlices)
    dense = jax.grad(lambda p: _mse(_dict_forward(p, IDS)))(p)
    np.testing.assert_allclose(np.asarray(grads["emb"].to_dense()), np.asarray(dense["emb"]), rtol=1e-5, atol=1e-7)
    new, _, _ = maybe_jit(lambda p, s: opt.minimize(lambda p: _mse(_dict_forward(p, IDS)), p, s))(p, opt.init(p))
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(p)
    expected = jax.tree_util.tree_map(lambda x, g: x - 0.1 * g, p, dense)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6),
                           new, expected)
    _assert_every_float_leaf_changed(p, new)


def test_equinox_model_trains_every_layer_under_filter_jit_with_donation():
    model = EqxModel(jax.random.PRNGKey(0))
    opt = AdagradOptimizer(0.1)
    _, gv = opt.compute_gradients(lambda m: _mse(m(IDS)), model)
    assert isinstance(dict((v.name, g) for g, v in gv)["emb/weight"], jg.IndexedSlices)
    step = eqx.filter_jit(lambda m, s: opt.minimize(lambda m: _mse(m(IDS)), m, s), donate="all")
    state = opt.init(model)
    before = jax.tree_util.tree_map(np.asarray, eqx.filter(model, eqx.is_array))
    new, state, loss0 = step(model, state)
    _assert_every_float_leaf_changed(before, new)
    assert type(new) is EqxModel
    assert sorted(state.slots["accumulator"]) == sorted(jg.describe(new).trained)
    for _ in range(20):
        new, state, loss = step(new, state)
    assert float(loss) < float(loss0)


@pytest.mark.parametrize("form", ["module", "nnx.split state"])
def test_nnx_model_trains_every_param(form):
    model = NNXModel(nnx.Rngs(0))
    opt = GradientDescentOptimizer(0.1)
    if form == "module":
        tree, loss_fn = model, lambda m: _mse(m(IDS))
    else:
        graphdef, tree = nnx.split(model)
        loss_fn = lambda s: _mse(nnx.merge(graphdef, s)(IDS))  # noqa: E731
    _, gv = opt.compute_gradients(loss_fn, tree)
    grads = {v.name: g for g, v in gv}
    assert sorted(grads) == ["emb/embedding", "hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    assert isinstance(grads["emb/embedding"], jg.IndexedSlices)
    before = jax.tree_util.tree_map(np.asarray, tree)
    new, _, _ = jax.jit(lambda t, s: opt.minimize(loss_fn, t, s), donate_argnums=(0, 1))(tree, opt.init(tree))
    assert type(new) is type(tree)
    _assert_every_float_leaf_changed(before, new)


def test_nnx_batch_statistics_and_rng_counts_are_kept_by_minimize_and_not_trained():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(4, 1, rngs=rngs)
            self.bn = nnx.BatchNorm(4, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

        def __call__(self, x):
            return self.lin(self.drop(self.bn(x)))[:, 0]

    x = jnp.arange(12.0).reshape(3, 4)
    model = Net(nnx.Rngs(0))
    rows = jg.describe(model)
    assert rows.not_trained == {
        "bn/mean": "nnx.BatchStat is not an nnx.Param", "bn/var": "nnx.BatchStat is not an nnx.Param",
        "drop/rngs/count": "nnx.RngCount is not an nnx.Param", "drop/rngs/key": "nnx.RngKey is not an nnx.Param",
    }
    opt = GradientDescentOptimizer(0.1)
    step = jax.jit(lambda m, s: opt.minimize(lambda m: jnp.mean(m(x) ** 2), m, s))
    new, state, _ = step(model, opt.init(model))
    new, state, _ = step(new, state)
    momentum = 0.99  # NNX's default: mean <- 0.99 mean + 0.01 batch mean, twice
    expected_mean = (1 - momentum) * (1 + momentum) * np.asarray(x.mean(0))
    np.testing.assert_allclose(np.asarray(new.bn.mean.get_value()), expected_mean, rtol=1e-5)
    assert int(new.drop.rngs.count.get_value()) == 2  # two steps drew two dropout masks
    with pytest.warns(UserWarning, match=r"changed variables \['bn/mean', 'bn/var', 'drop/rngs/count'\] in place"):
        opt.compute_gradients(lambda m: jnp.mean(m(x) ** 2), model)


def test_jaxgraph_module_array_attributes_are_variables():
    class Lin(jg.Module):
        def __init__(self):
            self.w = jnp.ones((2, 2))
            self.b = jg.Variable(jnp.zeros(2), name="bias")

    m = Lin()
    new, _, _ = GradientDescentOptimizer(1.0).minimize(lambda m: jnp.sum(m.w @ jnp.ones(2) + m.b.value), m)
    np.testing.assert_allclose(np.asarray(new.w), np.zeros((2, 2)))
    np.testing.assert_allclose(np.asarray(new.b.value), -np.ones(2))
    assert new.b.name == "bias" and type(new) is Lin


# -- the mixed-tree rule, describe() -------------------------------------------------------------------------
def test_mixed_tree_plain_floats_are_trained_ints_and_python_numbers_are_not():
    tree = {
        "emb": jg.Variable(jnp.zeros((5, 2)), name="emb"),
        "frozen_var": jg.Variable(jnp.ones(2), trainable=False),
        "scale": jnp.ones(2),
        "const": jg.freeze(jnp.full(2, 3.0)),
        "counts": jnp.zeros(5, jnp.int32),
        "lr": 0.5,
        "name": "model",
    }
    rows = jg.describe(tree)
    assert [(r.name, r.kind, r.status) for r in rows] == [
        ("const", "frozen array", "frozen (jaxgraph.freeze)"),
        ("counts", "array", "int32 array: not differentiable"),
        ("emb", "Variable", "trained"),
        ("frozen_var", "Variable", "frozen (trainable=False)"),
        ("lr", "Python float", "a Python number, not an array: a constant"),
        ("scale", "array", "trained"),
    ]
    assert rows.trained == ["emb", "scale"]
    assert [v.name for v in jg.global_variables(tree)] == ["const", "counts", "emb", "frozen_var", "scale"]
    table = str(rows)
    assert table.splitlines()[0].split() == ["name", "shape", "dtype", "kind", "trained"]
    assert "scale       (2,)    float32  array         yes" in table
    restricted = jg.describe(tree, var_list=["scale"])
    assert restricted.not_trained["emb"] == "not in var_list" and restricted.trained == ["scale"]

    new, _, _ = GradientDescentOptimizer(1.0).minimize(
        lambda t: jnp.sum(t["scale"] * t["const"] * t["lr"]) + jnp.sum(t["emb"].value), tree)
    np.testing.assert_allclose(np.asarray(new["scale"]), 1.0 - 1.5)
    np.testing.assert_allclose(np.asarray(new["const"]), 3.0)
    assert isinstance(new["const"], jg.FrozenArray)


def test_describe_names_every_float_leaf_of_equinox_and_nnx_models():
    eqx_rows = jg.describe(EqxModel(jax.random.PRNGKey(0)))
    assert eqx_rows.trained == ["emb/weight", "mlp/layers/0/weight", "mlp/layers/0/bias", "mlp/layers/1/weight",
                                "mlp/layers/1/bias", "mlp/layers/2/weight", "mlp/layers/2/bias"]
    assert eqx_rows.not_trained == {}
    nnx_rows = jg.describe(NNXModel(nnx.Rngs(0)))
    assert [(r.name, r.kind, r.shape) for r in nnx_rows] == [
        ("emb/embedding", "nnx.Param", (10, 4)), ("hidden/bias", "nnx.Param", (8,)),
        ("hidden/kernel", "nnx.Param", (4, 8)), ("out/bias", "nnx.Param", (1,)), ("out/kernel", "nnx.Param", (8, 1)),
    ]
    assert all(r.trained for r in nnx_rows)


def test_no_variables_to_optimize_when_everything_is_frozen():
    with pytest.raises(ValueError, match=r"^No variables to optimize\.$"):
        GradientDescentOptimizer(1.0).compute_gradients(lambda p: jnp.sum(p["w"]), jg.freeze({"w": jnp.ones(2)}))


def test_minimize_resolves_the_tree_once(monkeypatch):
    built = []
    original = jg.VariableIndex.__init__

    def counting(self, tree):
        built.append(1)
        original(self, tree)

    monkeypatch.setattr(jg.VariableIndex, "__init__", counting)
    p, opt = _dict_model(), AdagradOptimizer(0.1)
    state = opt.init(p)
    built.clear()
    opt.minimize(lambda p: _mse(_dict_forward(p, IDS)), p, state, global_step=None)
    assert len(built) == 1  # compute_gradients, apply_gradients and the global step share one index


def test_get_slot_of_a_plain_array_names_the_problem():
    p, opt = _dict_model(), AdagradOptimizer(0.1)
    state = opt.init(p)
    assert opt.get_slot(state, "emb", "accumulator").name == "emb/Adagrad"
    assert opt.get_slot(state, jg.trainable_variables(p, "emb")[0], "accumulator") is not None
    with pytest.raises(ValueError, match=r"get_slot needs the variable's name"):
        opt.get_slot(state, p["emb"], "accumulator")


def test_var_list_accepts_the_trees_own_leaves():
    p = _dict_model()
    _, gv = GradientDescentOptimizer(1.0).compute_gradients(lambda p: _mse(_dict_forward(p, IDS)), p,
                                                            var_list=[p["head"]["w"], "emb"])
    assert [v.name for _, v in gv] == ["head/w", "emb"]


# -- freeze / unfreeze on every kind ---------------------------------------------------------------------------
def test_freeze_plain_arrays_keeps_the_forward_pass_and_stops_training():
    p = _dict_model()
    frozen = jg.freeze(p, "emb")
    assert isinstance(frozen["emb"], jg.FrozenArray) and not isinstance(p["emb"], jg.FrozenArray)
    np.testing.assert_array_equal(np.asarray(_dict_forward(frozen, IDS)), np.asarray(_dict_forward(p, IDS)))
    assert jg.describe(frozen).trained == ["head/b", "head/w"]
    new, _, _ = jax.jit(lambda p: GradientDescentOptimizer(0.1).minimize(lambda q: _mse(_dict_forward(q, IDS)), p))(
        frozen)
    assert isinstance(new["emb"], jg.FrozenArray)
    np.testing.assert_array_equal(np.asarray(new["emb"]), np.asarray(p["emb"]))
    assert not np.array_equal(np.asarray(new["head"]["w"]), np.asarray(p["head"]["w"]))
    back = jg.unfreeze(frozen)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(p)


def test_freeze_equinox_linear_keeps_its_forward_pass():
    model = EqxModel(jax.random.PRNGKey(1))
    frozen = jg.freeze(model, "mlp/layers/0")
    assert isinstance(frozen.mlp.layers[0].weight, jg.FrozenArray)
    np.testing.assert_array_equal(np.asarray(frozen(IDS)), np.asarray(model(IDS)))  # self.weight @ x still works
    assert "mlp/layers/0/weight" not in jg.describe(frozen).trained
    opt = GradientDescentOptimizer(0.1)
    new, _, _ = eqx.filter_jit(lambda m: opt.minimize(lambda m: _mse(m(IDS)), m))(frozen)
    np.testing.assert_array_equal(np.asarray(new.mlp.layers[0].weight), np.asarray(model.mlp.layers[0].weight))
    assert not np.array_equal(np.asarray(new.mlp.layers[1].weight), np.asarray(model.mlp.layers[1].weight))


def test_freeze_nnx_params_through_metadata_keeps_the_module_working():
    model = NNXModel(nnx.Rngs(0))
    frozen = jg.freeze(model, "hidden")
    assert model.hidden.kernel.get_metadata().get("jaxgraph_frozen") is None  # the original is untouched
    assert type(frozen.hidden.kernel) is nnx.Param
    np.testing.assert_array_equal(np.asarray(frozen(IDS)), np.asarray(model(IDS)))
    assert jg.describe(frozen).not_trained == {"hidden/bias": "frozen (jaxgraph.freeze)",
                                               "hidden/kernel": "frozen (jaxgraph.freeze)"}
    graphdef, state = nnx.split(frozen)  # the mark survives split and merge
    assert "hidden/kernel" not in jg.describe(state).trained
    opt = GradientDescentOptimizer(0.1)
    new, _, _ = jax.jit(lambda m: opt.minimize(lambda m: _mse(m(IDS)), m))(frozen)
    np.testing.assert_array_equal(np.asarray(new.hidden.kernel.get_value()),
                                  np.asarray(model.hidden.kernel.get_value()))
    assert not np.array_equal(np.asarray(new.out.kernel.get_value()), np.asarray(model.out.kernel.get_value()))
    assert jg.describe(jg.unfreeze(frozen)).not_trained == {}


def test_frozen_array_behaves_as_its_array():
    x = jnp.arange(6.0).reshape(2, 3)
    f = jg.freeze(x)
    assert isinstance(f, jg.FrozenArray) and jg.unfreeze(f) is x
    for got, want in [(f + 1, x + 1), (1 - f, 1 - x), (f @ jnp.ones(3), x @ jnp.ones(3)), (f.T, x.T),
                      (f[jnp.array([1])], x[jnp.array([1])]), (jnp.tanh(f), jnp.tanh(x)), (-f, -x),
                      (f.reshape(3, 2), x.reshape(3, 2)), (f > 2, x > 2), (jnp.take(f, jnp.array([0]), axis=0), x[:1])]:
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert f.shape == (2, 3) and f.dtype == jnp.float32 and len(f) == 2
    assert jax.jit(lambda f: f * 2)(f).shape == (2, 3)


# -- checkpoints of any tree ------------------------------------------------------------------------------------
def test_saver_round_trips_an_equinox_model(tmp_path):
    model = EqxModel(jax.random.PRNGKey(0))
    opt = AdagradOptimizer(0.1)
    state = opt.init(model)
    trained, state, _ = eqx.filter_jit(lambda m, s: opt.minimize(lambda m: _mse(m(IDS)), m, s))(model, state)
    path = Saver().save(trained, state, str(tmp_path / "model.ckpt"))
    fresh = EqxModel(jax.random.PRNGKey(5))
    restored, restored_state = Saver().restore(fresh, opt.init(fresh), path)
    assert type(restored) is EqxModel
    jax.tree_util.tree_map(np.testing.assert_array_equal, eqx.filter(restored, eqx.is_array),
                           eqx.filter(trained, eqx.is_array))
    jax.tree_util.tree_map(np.testing.assert_array_equal, restored_state, state)


def test_saver_round_trips_an_nnx_state_with_rng_keys(tmp_path):
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(3, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.5, rngs=rngs)

    _, state = nnx.split(Net(nnx.Rngs(0)))
    path = Saver().save(state, None, str(tmp_path / "nnx.ckpt"))
    _, fresh = nnx.split(Net(nnx.Rngs(1)))
    restored, _ = Saver().restore(fresh, None, path)
    np.testing.assert_array_equal(np.asarray(restored["lin"]["kernel"].get_value()),
                                  np.asarray(state["lin"]["kernel"].get_value()))
    key = restored["drop"]["rngs"]["key"].get_value()
    assert jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(np.asarray(jax.random.key_data(key)),
                                  np.asarray(jax.random.key_data(state["drop"]["rngs"]["key"].get_value())))


def test_jaxgraph_imports_neither_flax_nor_equinox():
    code = ("import sys, jax.numpy as jnp, jaxgraph as jg; "
            "jg.train.GradientDescentOptimizer(1.0).minimize(lambda p: jnp.sum(p['w'] ** 2), {'w': jnp.ones(2)}); "
            "jg.describe({'w': jnp.ones(2)}); "
            "assert 'flax' not in sys.modules and 'equinox' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sharding_rules_place_plain_arrays_and_nnx_params_by_name():
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jaxgraph.sharding import make_mesh, shard_params, tree_shardings

    mesh = make_mesh()
    rules = [("emb", P("data", None))]
    rows = 4 * len(jax.devices())
    placed = shard_params({"emb": jnp.zeros((rows, 2)), "w": jnp.ones(2)}, mesh, rules)
    assert placed["emb"].sharding.spec == P("data", None) and placed["w"].sharding.spec == P()
    model = nnx.Embed(rows, 2, rngs=nnx.Rngs(0))
    placed_model = shard_params(model, mesh, [("embedding", P("data", None))])
    assert type(placed_model.embedding) is nnx.Param
    assert placed_model.embedding.get_value().sharding.spec == P("data", None)
    shardings = tree_shardings({"emb": jnp.zeros((rows, 2)), "frozen": jg.freeze(jnp.ones(3))}, mesh, rules)
    assert isinstance(shardings["emb"], NamedSharding) and isinstance(shardings["frozen"].value, NamedSharding)
