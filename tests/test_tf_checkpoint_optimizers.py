"""Every TF1 optimizer's state, a two-optimizer wide-and-deep job and TF's moving averages resume from
checkpoints written by real TF, with the same next steps; no TensorFlow is imported.

The fixtures (``tests/fixtures/tf_checkpoints/make_fixtures.py``) hold TF's checkpoint after a few steps,
every tensor of it as TF reads it (``saved/``), the next batches, TF's losses on them and every variable
after them (``after/``). For every optimizer the problem has a sparse gradient (an embedding table read
with duplicate ids) and dense ones; every row of ``tests/optimizer_cases.py`` (all hyper-parameters away
from their defaults) has its checkpoint.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optimizer_cases import CASE_IDS, CASES

import jaxgraph as jg
from examples import wide_deep
from jaxgraph.train import (
    AdamOptimizer,
    CheckpointError,
    ExponentialMovingAverage,
    MomentumOptimizer,
    Saver,
    load_checkpoint,
)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tf_checkpoints")
VOCAB, DIM, OUT = 8, 3, 2  # make_fixtures.SparseDenseGraph
K = 3  # steps before the save, and after it
WIDE_DEEP_STEPS = 4


def sparse_dense_model():
    """make_fixtures.SparseDenseGraph's variables under TF1's names (zeros: a fresh template)."""
    with jg.name_scope("embedding"):
        table = jg.Variable(jnp.zeros((VOCAB, DIM)), name="table")
    with jg.name_scope("dense"):
        kernel = jg.Variable(jnp.zeros((DIM, OUT)), name="kernel")
        bias = jg.Variable(jnp.zeros(OUT), name="bias")
    return {"table": table, "kernel": kernel, "bias": bias, "global_step": jg.create_global_step()}


def make_sparse_dense_step(opt, ema=None):
    """One jitted step of make_fixtures.SparseDenseGraph: ``(params, opt_state, ema_state, ids, targets)``."""

    @jax.jit
    def step(params, opt_state, ema_state, ids, targets):
        def loss(p):
            logits = jg.nn.embedding_lookup(p["table"], ids) @ p["kernel"].value + p["bias"].value
            return jnp.mean(jnp.square(logits - targets))

        params, opt_state, value = opt.minimize(loss, params, opt_state, global_step=params["global_step"])
        if ema is not None:
            ema_state = ema.apply(params, ema_state)  # after the step, as TF's control dependency
        return params, opt_state, ema_state, value

    return step


def run_steps(step, params, opt_state, ema_state, batches, steps):
    losses = []
    for i in steps:
        params, opt_state, ema_state, loss = step(params, opt_state, ema_state, batches["ids"][i],
                                                  batches["targets"][i])
        losses.append(float(loss))
    return params, opt_state, ema_state, losses


def tf_run(name):
    """The fixture's arrays: ``saved`` and ``after`` by TF name, ``batches``, ``losses``."""
    with np.load(os.path.join(FIXTURES, name + ".npz")) as z:
        groups = {"saved": {}, "after": {}, "batches": {}}
        for key in z.files:
            head, _, rest = key.partition("/")
            if head in groups:
                groups[head][rest] = z[key]
        return {**groups, "losses": z["losses"]}


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=1e-5, atol=1e-6, err_msg=what)


def by_tf_name(params, *optimizers_and_states):
    """Every variable of ``params`` and of the optimizer states by TF name, as numpy copies (a later step may
    donate the arrays)."""
    found = {v.name: np.array(v.value) for v in jg.named_variables(params)}
    for opt, state in optimizers_and_states:
        found.update({v.name: np.array(v.value) for v in opt.variables(state)})
    return found


# -- every optimizer ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_every_optimizer_resumes_a_tf1_job(case, tmp_path):
    ckpt_dir = os.path.join(FIXTURES, "optimizers", case.id)
    tf = tf_run(os.path.join("optimizers", case.id))
    opt = case.make()
    params = sparse_dense_model()
    params, opt_state = Saver().restore(params, opt.init(params), ckpt_dir, optimizer=opt)

    # Every tensor TF saved has its place, and each slot is where TF's value belongs: the table's last two
    # rows were never looked up, so every slot still holds its own initial value there (FTRL's accum
    # `<var>/Ftrl` 0.2 and linear `<var>/Ftrl_1` 0, RMSProp's rms 1 and momentum 0, ...).
    assert sorted(by_tf_name(params, (opt, opt_state))) == sorted(tf["saved"])
    for var in jg.trainable_variables(params):
        for slot in opt.get_slot_names():
            restored = opt.get_slot(opt_state, var, slot)
            assert restored.name == opt.slot_variable_name(var.name, slot)
            np.testing.assert_array_equal(np.asarray(restored.value), tf["saved"][restored.name])
    for slot in opt.get_slot_names():
        untouched = np.asarray(opt.get_slot(opt_state, "embedding/table", slot).value)[-2:]
        np.testing.assert_array_equal(untouched, np.float32(case.initial[slot]), err_msg=slot)
    for key, value in opt_state.non_slots.items():  # Adam's beta powers
        np.testing.assert_array_equal(np.asarray(value), tf["saved"][key])
    np.testing.assert_array_equal(np.asarray(params["table"].value), tf["saved"]["embedding/table"])
    assert int(params["global_step"].value) == int(opt_state.iterations) == K

    # The next K steps are TF's (AdagradDA reads the restored global step).
    step = make_sparse_dense_step(opt)
    params, opt_state, _, losses = run_steps(step, params, opt_state, None, tf["batches"], range(K))
    close(losses, tf["losses"], "losses")
    for name, value in by_tf_name(params, (opt, opt_state)).items():
        close(value, tf["after"][name], name)

    # Written back in TF's format, under the names TF gave them.
    prefix = Saver(format="tf").save(params, opt_state, str(tmp_path / "model.ckpt"), optimizer=opt)
    with load_checkpoint(prefix) as reader:
        assert sorted(reader.get_variable_to_shape_map()) == sorted(tf["saved"])


# -- several optimizers --------------------------------------------------------------------------------------
def two_optimizer_job():
    params = {"a": jg.Variable(jnp.arange(3.0), name="a"), "b": jg.Variable(jnp.ones(2), name="b"),
              "global_step": jg.create_global_step()}
    first, second = AdamOptimizer(0.1), AdamOptimizer(0.2, beta1=0.8, name="Adam2")
    states = (first.init(params, var_list=["a"]), second.init(params, var_list=["b"]))
    states = jax.tree_util.tree_map(lambda x: x + 0.5 if x.dtype == jnp.float32 else x, states)
    return params, (first, second), states


def test_several_optimizer_states_in_one_checkpoint(tmp_path):
    params, opts, states = two_optimizer_job()
    prefix = Saver(format="tf").save(params, states, str(tmp_path / "t" / "model.ckpt"), optimizer=opts)
    with load_checkpoint(prefix) as reader:
        # TF's names: the second Adam's beta powers get the graph-unique suffix, as TF creates them.
        assert sorted(reader.get_variable_to_shape_map()) == [
            "a", "a/Adam", "a/Adam_1", "b", "b/Adam2", "b/Adam2_1", "beta1_power", "beta1_power_1",
            "beta2_power", "beta2_power_1", "global_step"]
        np.testing.assert_array_equal(reader.get_tensor("beta1_power"), np.float32(0.9) + np.float32(0.5))
        np.testing.assert_array_equal(reader.get_tensor("beta1_power_1"), np.float32(0.8) + np.float32(0.5))
    fresh, _, _ = two_optimizer_job()
    template = tuple(opt.init(fresh, var_list=[v]) for opt, v in zip(opts, "ab", strict=True))
    _, restored = Saver().restore(fresh, template, prefix, optimizer=opts)
    assert isinstance(restored, tuple)
    for a, b in zip(jax.tree_util.tree_leaves(states), jax.tree_util.tree_leaves(restored), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # A dict of states with a dict of optimizers: the optimizers' order is TF's creation order, which
    # decides who gets `beta1_power_1` (reversed, the two Adams' beta powers trade places).
    dict_template = {"first": template[0], "second": template[1]}
    for order, second_beta1 in ((("first", "second"), 0.8), (("second", "first"), 0.9)):
        _, restored = Saver().restore(fresh, dict_template, prefix, optimizer={k: dict(zip(
            ("first", "second"), opts, strict=True))[k] for k in order})
        assert list(restored) == ["first", "second"]
        np.testing.assert_array_equal(np.asarray(restored["second"].non_slots["beta1_power"]),
                                      np.float32(second_beta1) + np.float32(0.5))


def test_several_optimizer_states_need_matching_optimizers(tmp_path):
    params, (first, second), states = two_optimizer_job()
    path = str(tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match=r"opt_state is a tuple of 2 states but optimizer= is one AdamOptimizer"):
        Saver(format="tf").save(params, states, path, optimizer=first)
    with pytest.raises(CheckpointError, match=r"sequence of 3 optimizers: .* got 2 states"):
        Saver(format="tf").save(params, states, path, optimizer=(first, second, first))
    with pytest.raises(CheckpointError, match=r"sequence of 2 optimizers: .* got a OptimizerState"):
        Saver(format="tf").save(params, states[0], path, optimizer=(first, second))
    with pytest.raises(CheckpointError, match=r"mapping with keys \['a', 'b'\]: .* got \['a', 'c'\]"):
        Saver(format="tf").save(params, {"a": states[0], "c": states[1]}, path, optimizer={"a": first, "b": second})
    with pytest.raises(CheckpointError, match="without the optimizer"):
        Saver(format="tf").save(params, states, path)
    # Two states with a slot of the same variable under the same TF name: TF would have renamed one.
    twice = (first.init(params, var_list=["a"]), AdamOptimizer().init(params, var_list=["a"]))
    for attempt in (lambda: Saver(format="tf").save(params, twice, path, optimizer=(first, AdamOptimizer())),
                    lambda: Saver().restore(params, twice, os.path.join(FIXTURES, "optimizers", "adam"),
                                            optimizer=(first, AdamOptimizer()))):
        with pytest.raises(CheckpointError, match=r"Two entries would share a TF name: 'a/Adam' \(opt_state\[0\]"):
            attempt()
    assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["checkpoint.lock"]


def test_non_slot_variables_follow_the_name_scope_of_the_optimizer(tmp_path):
    # TF creates Adam's beta powers in the name scope of apply_gradients: `optimizer/beta1_power` for a
    # program that trains under `with tf.name_scope("optimizer"):`. A port builds the optimizer there.
    params = {"w": jg.Variable(jnp.ones(2), name="w")}
    with jg.name_scope("optimizer"):
        scoped = AdamOptimizer(0.1)
    state = jax.tree_util.tree_map(lambda x: x * 0.5, scoped.init(params))
    assert [v.name for v in scoped.variables(state)] == [
        "optimizer/beta1_power", "optimizer/beta2_power", "w/Adam", "w/Adam_1"]
    prefix = Saver(format="tf").save(params, state, str(tmp_path / "scoped"), optimizer=scoped)
    assert [name for name, _ in jg.train.list_variables(prefix)] == [
        "optimizer/beta1_power", "optimizer/beta2_power", "w", "w/Adam", "w/Adam_1"]
    _, restored = Saver().restore(params, scoped.init(params), prefix, optimizer=scoped)
    assert float(restored.non_slots["beta1_power"]) == np.float32(0.45)
    # An optimizer built outside the scope finds them where they are, and says so.
    plain = AdamOptimizer(0.1)
    with pytest.warns(jg.JaxgraphWarning, match=r"restored 'beta1_power' from 'optimizer/beta1_power'.*"
                                                r"jaxgraph.name_scope\('optimizer'\)"):
        _, restored = Saver().restore(params, plain.init(params), prefix, optimizer=plain)
    assert float(restored.non_slots["beta1_power"]) == np.float32(0.45)
    # Two scopes hold a beta1_power each: which one is not guessed.
    two = {"a": jg.Variable(jnp.ones(2), name="a"), "b": jg.Variable(jnp.ones(2), name="b")}
    opts = []
    for scope in ("wide", "deep"):
        with jg.name_scope(scope):
            opts.append(AdamOptimizer(0.1))
    states = tuple(opt.init(two, var_list=[v]) for opt, v in zip(opts, "ab", strict=True))
    prefix = Saver(format="tf").save(two, states, str(tmp_path / "two"), optimizer=tuple(opts))
    with pytest.raises(CheckpointError, match=r"not found in the checkpoint: \['beta1_power \(for non_slots/"
                                              r"beta1_power\)'.*construct each optimizer inside jaxgraph.name_scope"):
        Saver().restore(two, AdamOptimizer(0.1).init(two, var_list=["a"]), prefix, optimizer=AdamOptimizer(0.1))
    _, restored = Saver().restore(two, states, prefix, optimizer=tuple(opts))  # no warning: TF's names
    assert [opt.non_slot_variable_name("beta1_power") for opt in opts] == ["wide/beta1_power", "deep/beta1_power"]
    assert float(restored[1].non_slots["beta1_power"]) == np.float32(0.9)


# -- the wide-and-deep job -----------------------------------------------------------------------------------
def test_tf1_wide_and_deep_job_resumes_with_both_optimizers():
    tf = tf_run("wide_deep")
    # The two-line recipe with two optimizers (examples.wide_deep.restore): FTRL's and Adagrad's slots.
    params, states = wide_deep.restore(os.path.join(FIXTURES, "wide_deep"))
    wide_opt, deep_opt = wide_deep.default_optimizers()
    assert sorted(by_tf_name(params, (wide_opt, states[0]), (deep_opt, states[1]))) == sorted(tf["saved"])
    accum = wide_opt.get_slot(states[0], "linear/weights", "accum")
    assert accum.name == "linear/weights/Ftrl"
    np.testing.assert_array_equal(np.asarray(accum.value), tf["saved"]["linear/weights/Ftrl"])
    # The data never uses the upper half of the wide ids: their accumulators hold FTRL's initial 0.1.
    np.testing.assert_array_equal(np.asarray(accum.value)[wide_deep.WIDE_VOCAB // 2:], np.float32(0.1))
    adagrad = deep_opt.get_slot(states[1], "dnn/embeddings", "accumulator")
    np.testing.assert_array_equal(np.asarray(adagrad.value), tf["saved"]["dnn/embeddings/Adagrad"])
    assert int(params["global_step"].value) == WIDE_DEEP_STEPS

    batches = wide_deep.make_batches(2 * WIDE_DEEP_STEPS)
    params, states, history = wide_deep.train_steps(params, states, WIDE_DEEP_STEPS, batches=batches)
    close(history, tf["losses"], "losses")
    for name, value in by_tf_name(params, (wide_opt, states[0]), (deep_opt, states[1])).items():
        close(value, tf["after"][name], name)


def test_wide_and_deep_resumed_through_tf_format_matches_an_uninterrupted_run(tmp_path, capsys):
    steps = 2
    uninterrupted, history = wide_deep.train_model(2 * steps)
    wide_deep.main(["--steps", str(steps), "--save", str(tmp_path / "model.ckpt"), "--save-format", "tf"])
    assert f"saved {tmp_path / 'model.ckpt'}-{steps} (tf)" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path))[-2:] == [f"model.ckpt-{steps}.data-00000-of-00001", f"model.ckpt-{steps}.index"]
    resumed, second_half = wide_deep.train_model(steps, init_from=str(tmp_path))
    np.testing.assert_allclose(second_half, history[steps:], rtol=1e-6)
    for name in wide_deep.WIDE_VARS + wide_deep.DEEP_VARS:
        np.testing.assert_allclose(np.asarray(resumed[name].value), np.asarray(uninterrupted[name].value),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
    assert int(resumed["global_step"].value) == 2 * steps
    with pytest.raises(SystemExit):
        wide_deep.main(["--steps", "1", "--init-from", str(tmp_path / "missing")])
    assert "error: Checkpoint " in capsys.readouterr().err


# -- moving averages ---------------------------------------------------------------------------------------
def test_tf_moving_averages_restore_into_the_ema_state():
    tf = tf_run("ema")
    opt = MomentumOptimizer(0.1, 0.9)
    ema = ExponentialMovingAverage(0.9, num_updates="global_step")
    params = sparse_dense_model()
    # The EMA state in the tree: its shadow Variables carry TF's names, `<var>/ExponentialMovingAverage`.
    tree, opt_state = Saver().restore({**params, "ema": ema.init(params)}, opt.init(params),
                                      os.path.join(FIXTURES, "ema"), optimizer=opt)
    ema_state = tree.pop("ema")
    assert sorted(ema_state) == sorted(k for k in tf["saved"] if k.endswith("/ExponentialMovingAverage"))
    for var in jg.trainable_variables(tree):
        average = ema.average(ema_state, var)
        np.testing.assert_array_equal(np.asarray(average.value), tf["saved"][f"{var.name}/ExponentialMovingAverage"])
        assert not np.array_equal(np.asarray(average.value), np.asarray(var.value))

    step = make_sparse_dense_step(opt, ema)
    tree, opt_state, ema_state, losses = run_steps(step, tree, opt_state, ema_state, tf["batches"], range(K))
    close(losses, tf["losses"], "losses")
    for name, value in {**by_tf_name(tree, (opt, opt_state)), **{k: v.value for k, v in ema_state.items()}}.items():
        close(value, tf["after"][name], name)

    # TF1's evaluation recipe: the averages restored into the variables themselves.
    fresh = sparse_dense_model()
    averaged, _ = Saver().restore(fresh, None, os.path.join(FIXTURES, "ema"),
                                  assignment_map=ema.variables_to_restore(fresh))
    np.testing.assert_array_equal(np.asarray(averaged["kernel"].value),
                                  tf["saved"]["dense/kernel/ExponentialMovingAverage"])
    assert int(averaged["global_step"].value) == K
