"""Saver: name-keyed checkpoints that restore into a fresh model, survive a crash, and fail clearly."""

import errno
import json
import os
import signal
import textwrap
import time
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgraph import JaxgraphWarning, Variable, create_global_step, named_variables
from jaxgraph.train import saver as saver_module
from jaxgraph.train.adam import AdamOptimizer
from jaxgraph.train.optax_optimizer import OptaxOptimizer
from jaxgraph.train.saver import CheckpointError, CheckpointWriteError, Saver, latest_checkpoint


def build_model(seed=None):
    """A model with the same names every time; seed=None gives a 'fresh' all-zeros one."""
    rng = np.random.default_rng(seed)

    def fill(shape, dtype=jnp.float32):
        # numpy, not jax.random: eager jax ops compile one by one, which is slow on a busy CI box.
        return jnp.asarray(np.zeros(shape) if seed is None else rng.standard_normal(shape), dtype=dtype)

    return {
        "emb": Variable(fill((10, 4)), name="embeddings/emb"),
        "proj": {
            "w": Variable(fill((4, 3), jnp.bfloat16), name="proj/w"),
            "b": Variable(fill((3,)), name="proj/b"),
        },
        "step": create_global_step(),
    }


def loss(tree):
    h = tree["emb"].value[jnp.array([1, 2, 3])] @ tree["proj"]["w"].value.astype(jnp.float32)
    return jnp.sum((h + tree["proj"]["b"].value) ** 2)


def perturbed(state, seed):
    # Non-trivial slot values, so a round trip that restored zeros would be caught.
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda leaf: jnp.asarray(np.asarray(leaf) + rng.integers(1, 9, np.shape(leaf)), dtype=leaf.dtype),
        state,
    )


def values_by_name(tree):
    return {v.name: np.asarray(v.value.astype(jnp.float32)) for v in named_variables(tree)}


@pytest.mark.parametrize(
    "make_opt",
    [lambda: AdamOptimizer(0.1), lambda: OptaxOptimizer(optax.adam(0.1))],
    ids=["core-adam", "optax-adam"],
)
def test_roundtrip_into_a_fresh_model(tmp_path, maybe_jit, make_opt):
    opt = make_opt()
    tree = build_model(seed=1)
    tree["step"] = tree["step"].assign(42)
    opt_state = perturbed(opt.init(tree), seed=2)
    prefix = Saver().save(tree, opt_state, str(tmp_path / "model.ckpt"), global_step=jnp.int32(42))
    assert prefix == str(tmp_path / "model.ckpt-42")
    assert os.path.isfile(prefix + ".npz") and latest_checkpoint(tmp_path) == prefix

    fresh = build_model()
    fresh_state = opt.init(fresh)
    restored, restored_state = Saver().restore(fresh, fresh_state, prefix)
    assert values_by_name(restored).keys() == values_by_name(tree).keys()
    for name, value in values_by_name(tree).items():
        np.testing.assert_array_equal(values_by_name(restored)[name], value, err_msg=name)
    assert restored["proj"]["w"].value.dtype == jnp.bfloat16
    assert int(restored["step"].value) == 42
    chex.assert_trees_all_equal(restored_state, opt_state)
    chex.assert_trees_all_equal_structs(restored, fresh)  # metadata kept: no retrace
    assert float(maybe_jit(loss)(restored)) == pytest.approx(float(loss(tree)))

    f = jax.jit(loss)
    f(fresh)
    f(restored)
    assert f._cache_size() == 1


def test_restores_by_name_whatever_holds_the_variables(tmp_path):
    tree = build_model(seed=3)
    prefix = Saver().save(tree, None, str(tmp_path / "ckpt"))
    assert prefix == str(tmp_path / "ckpt")
    # Another container, another order: names are what matter.
    other = [build_model()["step"], build_model()["proj"], build_model()["emb"]]
    restored, state = Saver().restore(other, None, tmp_path)  # a directory means its latest
    assert state is None
    np.testing.assert_array_equal(restored[2].value, tree["emb"].value)
    np.testing.assert_array_equal(restored[1]["b"].value, tree["proj"]["b"].value)


def test_restore_into_an_abstract_template(tmp_path):
    # jax.eval_shape builds the model without allocating it; restore fills in real arrays.
    tree = build_model(seed=10)
    prefix = Saver().save(tree, None, str(tmp_path / "c"))
    abstract = jax.eval_shape(build_model)
    assert isinstance(abstract["emb"].value, jax.ShapeDtypeStruct)
    restored, _ = Saver().restore(abstract, None, prefix)
    np.testing.assert_array_equal(restored["emb"].value, tree["emb"].value)
    assert restored["proj"]["w"].value.dtype == jnp.bfloat16


def test_var_list_subset(tmp_path):
    tree = build_model(seed=4)
    emb = next(v for v in named_variables(tree) if v.name == "embeddings/emb")
    prefix = Saver(var_list=[emb]).save(tree, None, str(tmp_path / "emb-only"))
    with np.load(prefix + ".npz") as z:
        assert sorted(z.files) == ["__jaxgraph_checkpoint__", "variables/embeddings/emb"]

    fresh = build_model()
    restored, _ = Saver(var_list=["embeddings/emb"]).restore(fresh, None, prefix)
    np.testing.assert_array_equal(restored["emb"].value, tree["emb"].value)
    np.testing.assert_array_equal(restored["proj"]["b"].value, 0.0)  # not in var_list: untouched

    # Restoring everything from a subset checkpoint names what is missing.
    with pytest.raises(
        CheckpointError, match=r"\['proj/b', 'proj/w', 'global_step'\] not found in checkpoint"
    ):
        Saver().restore(fresh, None, prefix)
    with pytest.raises(CheckpointError, match=r"var_list names \['nope'\] are not in the tree"):
        Saver(var_list=["nope"]).save(tree, None, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="named_variables"):
        Saver(var_list=[Variable(1.0)])


def test_max_to_keep_and_index(tmp_path):
    tree = build_model(seed=5)
    saver = Saver(max_to_keep=2)
    prefixes = [saver.save(tree, None, str(tmp_path / "m"), global_step=s) for s in (1, 2, 3)]
    assert [os.path.exists(p + ".npz") for p in prefixes] == [False, True, True]
    assert saver.last_checkpoints == prefixes[1:]
    index = (tmp_path / "checkpoint").read_text()
    assert index == (
        'model_checkpoint_path: "m-3"\nall_model_checkpoint_paths: "m-2"\nall_model_checkpoint_paths: "m-3"\n'
    )
    # A new Saver (a resumed run) adopts the kept list, so the limit still holds.
    resumed = Saver(max_to_keep=2)
    resumed.save(tree, None, str(tmp_path / "m"), global_step=4)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".npz")) == ["m-3.npz", "m-4.npz"]
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "m-4")
    # The index names a deleted file: fall back to the newest kept one that exists, and say so.
    os.remove(tmp_path / "m-4.npz")
    with pytest.warns(JaxgraphWarning, match=r"m-4 does not exist .*; using .*/m-3, the newest intact"):
        assert latest_checkpoint(tmp_path) == str(tmp_path / "m-3")
    keep_all = Saver(max_to_keep=None)
    for s in range(5, 9):
        keep_all.save(tree, None, str(tmp_path / "m"), global_step=s)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".npz")]) == 5


@pytest.mark.parametrize(
    "step", [7, np.int64(7), jnp.int32(7), Variable(jnp.int32(7), name="s")], ids=["int", "np", "jax", "Variable"]
)
def test_global_step_forms_and_path_like_paths(tmp_path, step):
    # Every test above passes str paths and one step form; the API takes os.PathLike and any integer.
    tree = build_model(seed=11)
    with Saver(max_to_keep=1) as saver:
        prefix = saver.save(tree, None, tmp_path / "model", global_step=step)
    assert prefix == str(tmp_path / "model-7") and latest_checkpoint(tmp_path) == prefix
    with np.load(prefix + ".npz") as z:
        assert json.loads(bytes(z["__jaxgraph_checkpoint__"]))["global_step"] == 7
    restored, _ = Saver().restore(build_model(), None, tmp_path / "model-7")
    np.testing.assert_array_equal(restored["emb"].value, tree["emb"].value)


def test_no_checkpoint_errors(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "missing") is None
    with pytest.raises(CheckpointError, match="No checkpoint found in directory"):
        Saver().restore(build_model(), None, tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        Saver().restore(build_model(), None, str(tmp_path / "model-5"))


def test_shape_dtype_and_optimizer_mismatch_errors(tmp_path):
    tree = build_model(seed=6)
    opt = AdamOptimizer(0.1)
    prefix = Saver().save(tree, opt.init(tree), str(tmp_path / "ckpt"))

    wrong_shape = build_model()
    wrong_shape["emb"] = Variable(jnp.zeros((12, 4)), name="embeddings/emb")
    with pytest.raises(CheckpointError, match=r"'embeddings/emb'.*shape \(10, 4\).*shape \(12, 4\)"):
        Saver().restore(wrong_shape, None, prefix)

    wrong_dtype = build_model()
    wrong_dtype["proj"]["b"] = Variable(jnp.zeros(3, jnp.int32), name="proj/b")
    with pytest.raises(CheckpointError, match=r"'proj/b'.*dtype float32.*dtype int32"):
        Saver().restore(wrong_dtype, None, prefix)

    with pytest.raises(CheckpointError, match="Optimizer state entries .* not found"):
        Saver().restore(build_model(), OptaxOptimizer(optax.sgd(0.1, momentum=0.9)).init(tree), prefix)
    no_opt = Saver().save(tree, None, str(tmp_path / "no-opt"))
    with pytest.raises(CheckpointError, match="has no optimizer state"):
        Saver().restore(build_model(), opt.init(tree), no_opt)


def _corrupt_variants(path):
    data = path.read_bytes()
    yield "truncated", data[: len(data) // 2]
    yield "empty", b""
    flipped = bytearray(data)
    # Flip a byte inside the embedding array's data (past the zip and .npy headers).
    offset = data.index(np.asarray(build_model(seed=7)["emb"].value).tobytes()[:16]) + 20
    flipped[offset] ^= 0xFF
    yield "bit flip", bytes(flipped)
    yield "garbage", b"\x00not a checkpoint" * 100


def test_corrupt_files_give_a_clear_error(tmp_path):
    prefix = Saver().save(build_model(seed=7), None, str(tmp_path / "ckpt"))
    for what, content in _corrupt_variants(tmp_path / "ckpt.npz"):
        bad = tmp_path / f"bad-{what.replace(' ', '_')}.npz"
        bad.write_bytes(content)
        with pytest.raises(CheckpointError, match=str(bad)):
            Saver().restore(build_model(), None, str(bad))
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.ones(3))
    with pytest.raises(CheckpointError, match="not a jaxgraph checkpoint"):
        Saver().restore(build_model(), None, str(foreign))
    # The intact one still restores.
    Saver().restore(build_model(), None, prefix)


def test_failed_index_write_keeps_previous_latest_and_leaves_no_unlisted_file(tmp_path, monkeypatch):
    tree = build_model(seed=8)
    saver = Saver()
    first = saver.save(tree, None, str(tmp_path / "m"), global_step=1)
    index_before = (tmp_path / "checkpoint").read_bytes()

    def crash(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saver_module, "write_checkpoint_state", crash)
    with pytest.raises(CheckpointWriteError, match=r"^Cannot update the checkpoint index .*: No space left") as e:
        saver.save(tree, None, str(tmp_path / "m"), global_step=2)
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
    assert latest_checkpoint(tmp_path) == first
    assert (tmp_path / "checkpoint").read_bytes() == index_before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "checkpoint.lock", "m-1.npz"]


CHILD = textwrap.dedent(
    """
    import sys, time
    import jax.numpy as jnp, numpy as np
    from jaxgraph import Variable
    from jaxgraph.train.saver import Saver

    ckpt_dir = sys.argv[1]
    saver = Saver(max_to_keep=1)  # the save being killed would make room by deleting model-1
    tree = {"big": Variable(jnp.full((1024, 1024), 1.0), name="big"),
            "small": Variable(jnp.ones(3), name="small")}
    saver.save(tree, None, ckpt_dir + "/model", global_step=1)

    real_write = np.lib.format.write_array
    def slow_write(fp, array, *args, **kwargs):
        real_write(fp, array, *args, **kwargs)
        if array.size > 1000:  # the big variable is on disk (in the temp file): stall here
            fp.flush()
            print("WRITING", flush=True)
            time.sleep(60)
    np.lib.format.write_array = slow_write
    tree = {k: v.assign(v.value * 2) for k, v in tree.items()}
    saver.save(tree, None, ckpt_dir + "/model", global_step=2)
    print("FINISHED", flush=True)
    """
)


def test_killed_writer_never_loses_the_previous_checkpoint(tmp_path, python_child):
    # max_to_keep=1: a Saver that wrote its index (or deleted old files) before the new data file was
    # complete would leave nothing to restore after this kill.
    with python_child(CHILD, tmp_path) as child:
        line = child.stdout.readline()
        assert line.strip() == "WRITING", child.stderr.read()
        temp_files = [f for f in os.listdir(tmp_path) if ".tmp-" in f]
        assert len(temp_files) == 1 and os.path.getsize(tmp_path / temp_files[0]) > 4 * 1024 * 1024
        child.send_signal(signal.SIGKILL)  # mid-save: the temp file is half written
        assert child.wait(timeout=30) == -signal.SIGKILL

    assert not (tmp_path / "model-2.npz").exists()
    assert latest_checkpoint(tmp_path) == str(tmp_path / "model-1")
    template = {
        "big": Variable(jnp.zeros((1024, 1024)), name="big"),
        "small": Variable(jnp.zeros(3), name="small"),
    }
    restored, _ = Saver().restore(template, None, tmp_path)
    np.testing.assert_array_equal(restored["big"].value, 1.0)
    np.testing.assert_array_equal(restored["small"].value, 1.0)
    # The next save in the same directory works and becomes the latest; the dead writer's lock is
    # taken over, saying so.
    start = time.monotonic()
    with pytest.warns(JaxgraphWarning, match=rf"Took over checkpoint directory .* from pid {child.pid} "):
        with Saver(max_to_keep=1) as saver:
            saver.save(restored, None, str(tmp_path / "model"), global_step=3)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "model-3") and time.monotonic() - start < 10
    assert not (tmp_path / "model-1.npz").exists()  # adopted from the index, then over the limit
    partial = [f for f in os.listdir(tmp_path) if ".tmp-" in f][0]
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        Saver().restore(template, None, str(tmp_path / partial))


def test_zip_members_are_plain_npy(tmp_path):
    # The format is plain numpy: anyone can read a checkpoint with np.load.
    prefix = Saver().save(build_model(seed=9), None, str(tmp_path / "c"))
    with zipfile.ZipFile(prefix + ".npz") as zf:
        assert "variables/embeddings/emb.npy" in zf.namelist()
    with np.load(prefix + ".npz") as z:
        np.testing.assert_array_equal(z["variables/embeddings/emb"], build_model(seed=9)["emb"].value)
