"""A TF1 job's checkpoint resumes in jaxgraph by TF names, optimizer state included; and back.

The word2vec fixtures hold TF's checkpoint after 3 steps plus the next 3 batches, TF's losses on them
and every variable after them (``make_fixtures.py``): restoring and training those batches here must
give TF's numbers. No TensorFlow is imported.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph as jg
from jaxgraph.train import (
    AdagradOptimizer,
    AdamOptimizer,
    CheckpointError,
    MomentumOptimizer,
    OptaxOptimizer,
    RMSPropOptimizer,
    Saver,
    latest_checkpoint,
    load_checkpoint,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "fixtures", "tf_checkpoints")
VOCAB, DIM, NUM_SAMPLED = 12, 4, 3
OPTIMIZERS = {
    "adam": lambda: AdamOptimizer(0.1),
    "momentum": lambda: MomentumOptimizer(0.5, 0.9),
    "adagrad": lambda: AdagradOptimizer(0.5),
}


def word2vec_model(scope=None):
    """The tutorial's variables, named by name_scope as TF1 names them (zeros: a fresh template)."""
    with jg.name_scope(scope):
        with jg.name_scope("embeddings"):
            embeddings = jg.Variable(jnp.zeros((VOCAB, DIM)))
        with jg.name_scope("weights"):
            nce_weights = jg.Variable(jnp.zeros((VOCAB, DIM)))
        with jg.name_scope("biases"):
            nce_biases = jg.Variable(jnp.zeros((VOCAB,)))
    return {"embeddings": embeddings, "nce_weights": nce_weights, "nce_biases": nce_biases,
            "global_step": jg.create_global_step()}


def make_step(opt):
    @jax.jit
    def step(params, opt_state, inputs, labels, sampled, true_expected, sampled_expected):
        def loss(p):
            embed = jg.nn.embedding_lookup(p["embeddings"], inputs)
            return jnp.mean(jg.nn.nce_loss(
                weights=p["nce_weights"], biases=p["nce_biases"], labels=labels, inputs=embed,
                num_sampled=NUM_SAMPLED, num_classes=VOCAB,
                sampled_values=(sampled, true_expected, sampled_expected)))
        return opt.minimize(loss, params, opt_state, global_step=params["global_step"])
    return step


def close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_tf1_word2vec_job_resumes_with_the_same_losses(opt_name):
    ckpt_dir = os.path.join(FIXTURES, f"word2vec_{opt_name}")
    opt = OPTIMIZERS[opt_name]()
    # The two-line recipe: build the model and state as usual, restore by TF names.
    params = word2vec_model()
    params, opt_state = Saver().restore(params, opt.init(params), ckpt_dir, optimizer=opt)

    with np.load(os.path.join(FIXTURES, f"word2vec_{opt_name}.npz")) as saved:
        for v in jg.named_variables(params) + opt.variables(opt_state):
            np.testing.assert_array_equal(np.asarray(v.value), saved[v.name], err_msg=v.name)
        assert sorted(saved.files) == sorted(v.name for v in jg.named_variables(params) + opt.variables(opt_state))
    assert int(params["global_step"].value) == 3 and int(opt_state.iterations) == 3
    assert params["global_step"].dtype == jnp.int32  # TF's int64 step, cast because every value fits

    step = make_step(opt)
    with np.load(os.path.join(FIXTURES, f"word2vec_{opt_name}_continue.npz")) as later:
        losses = []
        for i in range(3):
            batch = [later[f"batches/{k}"][i] for k in
                     ("inputs", "labels", "sampled", "true_expected", "sampled_expected")]
            params, opt_state, loss = step(params, opt_state, *batch)
            losses.append(float(loss))
        close(losses, later["losses"], "losses")
        for v in jg.named_variables(params) + opt.variables(opt_state):
            close(v.value, later[f"after/{v.name}"], v.name)
    assert int(params["global_step"].value) == 6


def test_paths_that_name_a_tf_checkpoint():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_momentum")
    prefix = os.path.join(ckpt_dir, "model.ckpt-3")
    assert latest_checkpoint(ckpt_dir) == prefix  # TF's `checkpoint` index, TF's files
    opt = MomentumOptimizer(0.5, 0.9)
    results = []
    for path in (ckpt_dir, prefix, prefix + ".index"):
        params = word2vec_model()
        params, _ = Saver().restore(params, opt.init(params), path, optimizer=opt)
        results.append(np.asarray(params["embeddings"].value))
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_directory_copied_from_another_machine(tmp_path):
    # TF1's Saver writes absolute paths into `checkpoint` unless save_relative_paths=True.
    shutil.copytree(os.path.join(FIXTURES, "word2vec_momentum"), tmp_path / "copied")
    (tmp_path / "copied" / "checkpoint").write_text(
        'model_checkpoint_path: "/cluster/job7/model.ckpt-3"\n'
        'all_model_checkpoint_paths: "/cluster/job7/model.ckpt-3"\n'
    )
    assert latest_checkpoint(str(tmp_path / "copied")) == str(tmp_path / "copied" / "model.ckpt-3")
    params, _ = Saver().restore(word2vec_model(), None, str(tmp_path / "copied"))
    assert int(params["global_step"].value) == 3


def test_partitioned_variable_and_slot_restore_whole():
    with jg.name_scope("emb"):
        table = jg.Variable(jnp.zeros((7, 2)), name="table")
    params = {"table": table, "dense": jg.Variable(jnp.zeros(2), name="dense"), "step": jg.create_global_step()}
    opt = AdagradOptimizer(0.3)
    params, opt_state = Saver().restore(params, opt.init(params), os.path.join(FIXTURES, "partitioned"), optimizer=opt)
    with np.load(os.path.join(FIXTURES, "partitioned.npz")) as saved:
        np.testing.assert_array_equal(np.asarray(params["table"].value), saved["emb/table"])
        accumulator = opt_state.slots["accumulator"]["emb/table"]
        np.testing.assert_array_equal(np.asarray(accumulator), saved["emb/table/Adagrad"])
    assert int(params["step"].value) == 2


def test_variables_only_and_var_list():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_adam")
    params, state = Saver().restore(word2vec_model(), None, ckpt_dir)  # slots left in the checkpoint
    assert state is None and int(params["global_step"].value) == 3
    fresh = word2vec_model()
    params, _ = Saver(var_list=["weights/Variable"]).restore(fresh, None, ckpt_dir)
    assert float(jnp.abs(params["nce_weights"].value).sum()) > 0
    assert float(jnp.abs(params["embeddings"].value).sum()) == 0 and int(params["global_step"].value) == 0


def test_restore_into_abstract_templates(tmp_path):
    # jax.eval_shape builds model and state without allocating them; restore fills in real arrays.
    opt = AdamOptimizer(0.1)
    params = jax.eval_shape(word2vec_model)
    state = jax.eval_shape(lambda: opt.init(word2vec_model()))
    params, state = Saver().restore(params, state, os.path.join(FIXTURES, "word2vec_adam"), optimizer=opt)
    assert int(state.iterations) == 3 and isinstance(state.slots["m"]["weights/Variable"], jax.Array)
    # Without a global step in the checkpoint nothing can fill `iterations` in: said, not left abstract.
    tree = {"w": jg.Variable(jnp.ones(2), name="w")}
    prefix = Saver(format="tf").save(tree, opt.init(tree), str(tmp_path / "c"), optimizer=opt)
    with pytest.raises(CheckpointError, match=r"nothing for the optimizer state entries \['iterations'\]"):
        Saver().restore(tree, jax.eval_shape(lambda: opt.init(tree)), prefix, optimizer=opt)


# -- assignment_map -------------------------------------------------------------------------------------
def test_assignment_map_renamed_scope_brings_slots_along():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_adam")
    opt = AdamOptimizer(0.1)
    params = word2vec_model(scope="model")  # model/embeddings/Variable, ...; global_step at the root
    params, state = Saver().restore(params, opt.init(params), ckpt_dir, optimizer=opt,
                                    assignment_map={"/": "model/", "global_step": "global_step"})
    with np.load(os.path.join(FIXTURES, "word2vec_adam.npz")) as saved:
        np.testing.assert_array_equal(np.asarray(params["embeddings"].value), saved["embeddings/Variable"])
        np.testing.assert_array_equal(
            np.asarray(opt.get_slot(state, "model/weights/Variable", "v").value), saved["weights/Variable/Adam_1"])
        np.testing.assert_array_equal(np.asarray(state.non_slots["beta1_power"]), saved["beta1_power"])
    assert int(state.iterations) == 3


def test_assignment_map_partial_load_and_single_names():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_momentum")
    with np.load(os.path.join(FIXTURES, "word2vec_momentum.npz")) as saved:
        expected = {k: saved[k] for k in saved.files}
    # Only the embeddings, into a differently named variable; everything else keeps its value.
    params = {"enc": jg.Variable(jnp.ones((VOCAB, DIM)), name="encoder/table"),
              "head": jg.Variable(jnp.ones((VOCAB, DIM)), name="head/w")}
    params, state = Saver().restore(params, None, ckpt_dir, assignment_map={"embeddings/Variable": "encoder/table"})
    np.testing.assert_array_equal(np.asarray(params["enc"].value), expected["embeddings/Variable"])
    assert np.all(np.asarray(params["head"].value) == 1.0) and state is None
    # Later (sorted) keys override earlier ones: everything by name, except one variable.
    params = word2vec_model()
    assignment_map = {"/": "/", "weights/Variable": "embeddings/Variable"}
    params, _ = Saver().restore(params, None, ckpt_dir, assignment_map=assignment_map)
    np.testing.assert_array_equal(np.asarray(params["embeddings"].value), expected["weights/Variable"])
    np.testing.assert_array_equal(np.asarray(params["nce_weights"].value), expected["weights/Variable"])


def test_assignment_map_reads_tf2_object_checkpoints():
    with jg.name_scope("dense"):
        params = {"kernel": jg.Variable(jnp.zeros((3, 2)), name="kernel"),
                  "bias": jg.Variable(jnp.ones(2), name="bias")}
    path = os.path.join(FIXTURES, "tf2", "ckpt")
    with pytest.raises(CheckpointError, match=r"TF2 object-based checkpoint .* assignment_map=\{'<checkpoint path>'"):
        Saver().restore(params, None, path)
    params, _ = Saver().restore(params, None, path, assignment_map={"model/": "dense/"})
    assert params["kernel"].value.tolist() == [[0, 1], [2, 3], [4, 5]] and params["bias"].value.tolist() == [0, 0]


def test_assignment_map_errors():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_momentum")
    params = word2vec_model()
    with pytest.raises(CheckpointError, match="'emb' .* is neither a variable of the tree nor a scope"):
        Saver().restore(params, None, ckpt_dir, assignment_map={"embeddings/Variable": "emb"})
    with pytest.raises(CheckpointError, match="scope 'decoder/' matches no variable"):
        Saver().restore(params, None, ckpt_dir, assignment_map={"/": "decoder/"})
    with pytest.raises(CheckpointError, match="should map to scope only 'embeddings/Variable'"):
        Saver().restore(params, None, ckpt_dir, assignment_map={"embeddings/Variable": "weights/"})
    # TF's rule: 'embeddings/Variable' under the scope 'embeddings/' is 'Variable' under 'old/'.
    with pytest.raises(CheckpointError, match=r"found in the checkpoint: \['old/Variable \(for embeddings/Variable\)'"):
        Saver().restore(params, None, ckpt_dir, assignment_map={"old/": "embeddings/"})


# -- errors ---------------------------------------------------------------------------------------------
def test_missing_unused_and_mismatched_names_in_one_error():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_momentum")
    params = word2vec_model()
    params["extra"] = jg.Variable(jnp.zeros(3), name="extra")
    params["nce_biases"] = jg.Variable(jnp.zeros((VOCAB + 1,)), name="biases/Variable")
    params["nce_weights"] = jg.Variable(jnp.zeros((VOCAB, DIM), jnp.int32), name="weights/Variable")
    with pytest.raises(CheckpointError) as info:
        Saver().restore(params, None, ckpt_dir)
    message = str(info.value)
    assert "not found in the checkpoint: ['extra']" in message
    assert "biases/Variable has shape (12,) and dtype float32, biases/Variable has shape (13,)" in message
    assert ("weights/Variable has shape (12, 4) and dtype float32, "
            "weights/Variable has shape (12, 4) and dtype int32") in message
    assert "checkpoint tensors not used: ['biases/Variable/Momentum', 'embeddings/Variable/Momentum'" in message
    assert "\n" not in message


def test_optimizer_state_needs_the_right_optimizer():
    ckpt_dir = os.path.join(FIXTURES, "word2vec_adam")
    params = word2vec_model()
    with pytest.raises(CheckpointError, match="without the optimizer: TF names slots after it"):
        Saver().restore(params, AdamOptimizer().init(params), ckpt_dir)
    momentum = MomentumOptimizer(0.1, 0.9)
    with pytest.raises(CheckpointError, match=r"embeddings/Variable/Momentum \(for slots/momentum/.*another optimizer"):
        Saver().restore(params, momentum.init(params), ckpt_dir, optimizer=momentum)
    renamed = AdamOptimizer(name="adam_opt")
    with pytest.raises(CheckpointError, match="'<var>/adam_opt'"):
        Saver().restore(params, renamed.init(params), ckpt_dir, optimizer=renamed)
    optax_opt = OptaxOptimizer(optax.adam(0.1))
    with pytest.raises(CheckpointError, match="no TF1 counterpart"):
        Saver().restore(params, optax_opt.init(params), ckpt_dir, optimizer=optax_opt)


def test_integer_casts_must_be_exact(tmp_path):
    prefix = str(tmp_path / "model.ckpt")
    jg.train.tf_checkpoint.write_checkpoint(prefix, {"global_step": np.int64(2**40)})
    with pytest.raises(CheckpointError, match="values that do not fit int32"):
        Saver().restore({"step": jg.create_global_step()}, None, prefix)


def test_unsupported_inputs_through_the_saver(tmp_path):
    with pytest.raises(CheckpointError, match="TensorFlow V1 checkpoint"):
        Saver().restore(word2vec_model(), None, os.path.join(FIXTURES, "v1"))
    saved_model = tmp_path / "export"
    (saved_model / "variables").mkdir(parents=True)
    (saved_model / "saved_model.pb").write_bytes(b"")
    with pytest.raises(CheckpointError, match="SavedModel directory"):
        Saver().restore(word2vec_model(), None, str(saved_model))
    with pytest.raises(CheckpointError, match="assignment_map applies to TF checkpoints"):
        params = {"w": jg.Variable(jnp.zeros(2), name="w")}
        Saver().restore(params, None, Saver().save(params, None, str(tmp_path / "npz")), assignment_map={"/": "/"})


# -- writing TF checkpoints -------------------------------------------------------------------------------
@pytest.mark.parametrize("make_opt", [lambda: AdamOptimizer(0.1), lambda: RMSPropOptimizer(0.1, centered=True)],
                         ids=["adam", "rmsprop-centered"])
def test_saver_tf_format_round_trip_with_tf_names(tmp_path, make_opt):
    opt = make_opt()
    params = word2vec_model()
    table = jnp.arange(VOCAB * DIM, dtype=jnp.float32).reshape(VOCAB, DIM)
    params = jg.replace_values(params, {"embeddings/Variable": table})
    opt_state = jax.tree_util.tree_map(lambda x: x + 1.5 if x.dtype == jnp.float32 else x, opt.init(params))
    # A consistent job: one apply_gradients per step. TF has no `iterations`; it comes back as the step.
    opt_state = opt_state._replace(iterations=jnp.int32(7))
    params["global_step"] = params["global_step"].assign(7)
    saver = Saver(format="tf", max_to_keep=2)
    prefix = saver.save(params, opt_state, str(tmp_path / "model.ckpt"), global_step=7, optimizer=opt)
    assert prefix == str(tmp_path / "model.ckpt-7") and latest_checkpoint(str(tmp_path)) == prefix
    assert sorted(os.listdir(tmp_path)) == [  # and the Saver's lock (one writer per directory)
        "checkpoint", "checkpoint.lock", "model.ckpt-7.data-00000-of-00001", "model.ckpt-7.index"]
    with load_checkpoint(prefix) as reader:
        names = reader.get_variable_to_shape_map()
        assert set(names) == {v.name for v in jg.named_variables(params) + opt.variables(opt_state)}
        assert reader.get_variable_to_dtype_map()["global_step"] == np.int64  # TF's dtype for it
    fresh = word2vec_model()
    restored, state = Saver().restore(fresh, opt.init(fresh), str(tmp_path), optimizer=opt)
    for a, b in zip(jax.tree_util.tree_leaves((params, opt_state)), jax.tree_util.tree_leaves((restored, state)),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # max_to_keep deletes every file of the oldest TF checkpoint.
    for step in (8, 9):
        saver.save(params, opt_state, str(tmp_path / "model.ckpt"), global_step=step, optimizer=opt)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("model.ckpt-7")]
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-9")


def test_tf_format_writes_index_last_and_atomically(tmp_path, monkeypatch):
    params = {"w": jg.Variable(jnp.ones(3), name="w")}
    saver = Saver(format="tf")
    first = saver.save(params, None, str(tmp_path / "model.ckpt"), global_step=1)
    real_replace = os.replace

    def crash_on_index(src, dst):
        if str(dst).endswith("model.ckpt-2.index"):
            raise OSError("disk full")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_index)
    with pytest.raises(OSError, match="disk full"):
        saver.save(params, None, str(tmp_path / "model.ckpt"), global_step=2)
    monkeypatch.undo()
    assert latest_checkpoint(str(tmp_path)) == first  # the index was not replaced: step 1 is still the latest
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]  # no temporary files left
    restored, _ = Saver().restore({"w": jg.Variable(jnp.zeros(3), name="w")}, None, str(tmp_path))
    assert restored["w"].value.tolist() == [1, 1, 1]


def test_tf_format_refuses_state_without_tf_names(tmp_path):
    params = {"w": jg.Variable(jnp.ones(3), name="w")}
    optax_opt = OptaxOptimizer(optax.sgd(0.1))
    with pytest.raises(CheckpointError, match="no TF1 counterpart"):
        Saver(format="tf").save(params, optax_opt.init(params), str(tmp_path / "c"), optimizer=optax_opt)
    with pytest.raises(CheckpointError, match="without the optimizer"):
        Saver(format="tf").save(params, AdamOptimizer().init(params), str(tmp_path / "c"))
    clash = {"w": jg.Variable(jnp.ones(3), name="w"), "b": jg.Variable(jnp.ones(3), name="w/Adam")}
    opt = AdamOptimizer()
    with pytest.raises(CheckpointError, match="Two entries would share a TF name: 'w/Adam'"):
        Saver(format="tf").save(clash, opt.init(clash, ["w"]), str(tmp_path / "c"), optimizer=opt)
    with pytest.raises(ValueError, match="format must be one of"):
        Saver(format="pb")

