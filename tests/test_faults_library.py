"""Fault injection for the library: every fault is a clear error, or a documented recovery said out loud.

Two groups:

* **Out-of-range ids** in every API that reads or writes rows by id: concrete ids raise TF's
  ``indices[i] = v is not in [0, n)``; under ``jax.jit`` they follow the one rule of ``jaxgraph.ids``
  (zeros read, updates dropped, never another row, negatives never wrapping); under
  ``jaxgraph.checked`` a jitted call raises TF's message.
* **Checkpoints** (further down): concurrent writers, damaged or deleted indexes, corrupt newest
  checkpoints, unwritable directories, a file where a directory should be, a full disk, foreign files.
"""

import contextlib
import errno
import json
import os
import pathlib
import re
import resource
import socket
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices, JaxgraphWarning, Variable
from jaxgraph.errors import InvalidArgumentError
from jaxgraph.gradients import gather_rows
from jaxgraph.nn import (
    embedding_lookup,
    fixed_unigram_candidate_sampler,
    log_uniform_candidate_sampler,
    nce_loss,
    sampled_softmax_loss,
    uniform_candidate_sampler,
)
from jaxgraph.train import (
    AdadeltaOptimizer,
    AdagradOptimizer,
    AdamOptimizer,
    CheckpointCorruptError,
    CheckpointWriteError,
    FtrlOptimizer,
    GradientDescentOptimizer,
    LazyAdamOptimizer,
    MomentumOptimizer,
    OptaxOptimizer,
    ProximalAdagradOptimizer,
    ProximalGradientDescentOptimizer,
    RMSPropOptimizer,
    Saver,
    check_writable_dir,
    latest_checkpoint,
)
from jaxgraph.train import saver as saver_module
from jaxgraph.train.checkpoint_management import (
    LOCK_FILENAME,
    read_checkpoint_state,
    write_checkpoint_state,
)

# Every row is non-zero and names its id, so a zero row, a wrapped row or a NaN is told apart.
TABLE = np.arange(1.0, 13.0, dtype=np.float32).reshape(6, 2)
MOD_SHARDS = [TABLE[0::2], TABLE[1::2]]  # ids 0,2,4 | 1,3,5
DIV_SHARDS = [TABLE[:3], TABLE[3:]]  # ids 0,1,2 | 3,4,5


def tf_message(i, v, n):
    return rf"^indices\[{i}\] = {v} is not in \[0, {n}\)$"


LOOKUPS = {
    "table": lambda ids: embedding_lookup(jnp.asarray(TABLE), ids),
    "variable": lambda ids: embedding_lookup(Variable(jnp.asarray(TABLE), name="emb"), ids),
    "mod-shards": lambda ids: embedding_lookup([jnp.asarray(s) for s in MOD_SHARDS], ids),
    "div-shards": lambda ids: embedding_lookup([jnp.asarray(s) for s in DIV_SHARDS], ids, partition_strategy="div"),
    "gather_rows": lambda ids: gather_rows(jnp.asarray(TABLE), ids),
}


# -- embedding_lookup and gather_rows --------------------------------------------------------------
@pytest.mark.parametrize("kind", LOOKUPS)
@pytest.mark.parametrize("bad", [6, 100, -1, -6])
def test_lookup_concrete_out_of_range_raises_tf_message(kind, bad):
    with pytest.raises(InvalidArgumentError, match=tf_message(2, bad, 6)):
        LOOKUPS[kind]([[0, 5], [bad, 1]])


@pytest.mark.parametrize("kind", LOOKUPS)
def test_lookup_under_jit_reads_zeros_never_another_row(kind):
    out = jax.jit(LOOKUPS[kind])(jnp.array([0, 6, 100, -1, -6, 5]))
    np.testing.assert_array_equal(out, [TABLE[0], [0, 0], [0, 0], [0, 0], [0, 0], TABLE[5]])


@pytest.mark.parametrize("kind", LOOKUPS)
def test_lookup_checked_mode_raises_tf_message(kind):
    lookup = jg.checked(LOOKUPS[kind])
    np.testing.assert_array_equal(lookup(jnp.array([5, 0])), TABLE[[5, 0]])
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 6, 6)):
        lookup(jnp.array([0, 6, 1]))
    with pytest.raises(InvalidArgumentError, match=tf_message(2, -1, 6)):
        lookup(jnp.array([[0, 1], [-1, 2]]))


def _sparse_step(opt):
    def step(params, opt_state, ids):
        def loss(p):
            return jnp.sum(embedding_lookup(p["emb"], ids) * p["w"].value)

        return opt.minimize(loss, params, opt_state)

    return step


def _emb_params():
    return {"emb": Variable(jnp.asarray(TABLE), name="emb"), "w": Variable(jnp.ones(2), name="w")}


def test_sparse_minimize_under_jit_drops_out_of_range_rows_and_checked_mode_raises():
    opt = GradientDescentOptimizer(1.0)
    params = _emb_params()
    step = _sparse_step(opt)
    new, _, loss = jax.jit(step)(params, opt.init(params), jnp.array([1, 100, -1]))
    want = TABLE.copy()
    want[1] -= 1.0  # only the valid id moves: neither row 0 (clamped) nor row 5 (wrapped)
    np.testing.assert_array_equal(new["emb"].value, want)
    assert float(loss) == pytest.approx(TABLE[1].sum())  # the bad ids read zeros
    np.testing.assert_array_equal(new["w"].value, 1.0 - TABLE[1])
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 100, 6)):
        jg.checked(step)(params, opt.init(params), jnp.array([1, 100, -1]))


# -- sampled losses -----------------------------------------------------------------------------------
LOSSES = {"nce": nce_loss, "sampled_softmax": sampled_softmax_loss}
SAMPLED = (jnp.array([2, 3]), jnp.full((2, 1), 0.5), jnp.full((2,), 0.5))


def _loss_args(labels):
    w, b = jnp.asarray(TABLE), jnp.arange(6.0) / 10
    return w, b, labels, jnp.ones((2, 2))


@pytest.mark.parametrize("loss", LOSSES)
def test_num_classes_larger_than_the_tables_is_an_error(loss):
    w, b, labels, inputs = _loss_args(jnp.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"num_classes = 7 is larger than the 6 rows of weights"):
        LOSSES[loss](w, b, labels, inputs, 2, 7, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"num_classes = 6 is larger than the 5 rows of biases"):
        LOSSES[loss](w, b[:5], labels, inputs, 2, 6, sampled_values=SAMPLED)
    # Under jit the shapes are known too: the error comes at trace time, not as NaN.
    with pytest.raises(ValueError, match="num_classes = 9"):
        jax.jit(lambda w: LOSSES[loss](w, b, labels, inputs, 2, 9, key=jax.random.key(0)))(w)
    with pytest.raises(ValueError, match="num_classes = 7 is larger than the 6 rows of weights"):
        LOSSES[loss]([w[:3], w[3:]], b, labels, inputs, 2, 7, sampled_values=SAMPLED)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bad", [6, -1])
def test_labels_out_of_range(loss, bad):
    w, b, _, inputs = _loss_args(None)
    fn = LOSSES[loss]
    with pytest.raises(InvalidArgumentError, match=tf_message(1, bad, 6)):
        fn(w, b, jnp.array([[0], [bad]]), inputs, 2, 6, key=jax.random.key(0))
    # Checked against num_classes, even where the tables have more rows.
    below = bad if bad < 0 else 5
    with pytest.raises(InvalidArgumentError, match=tf_message(1, below, 5)):
        fn(w, b, jnp.array([[0], [below]]), inputs, 2, 5, sampled_values=SAMPLED)

    def total(w, b, labels):
        return jnp.sum(fn(w, b, labels, inputs, 2, 6, sampled_values=SAMPLED))

    # Under jit: a finite loss, and the bad label's rows get no gradient (no wrapped or clamped row).
    labels = jnp.array([[1], [bad]])
    value, (gw, gb) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(w, b, labels)
    assert np.isfinite(float(value))
    touched = {1, 2, 3}  # the good label and the two sampled classes
    for row in set(range(6)) - touched:
        assert not np.any(np.asarray(gw[row])) and not np.asarray(gb[row]), row
    with pytest.raises(InvalidArgumentError, match=tf_message(1, bad, 6)):
        jg.checked(total)(w, b, labels)


# -- IndexedSlices given to apply_gradients ------------------------------------------------------------
OPTIMIZERS = {
    "sgd": lambda: GradientDescentOptimizer(0.5),
    "momentum": lambda: MomentumOptimizer(0.5, 0.9),
    "adagrad": lambda: AdagradOptimizer(0.5),
    "adam": lambda: AdamOptimizer(0.5),
    "lazy_adam": lambda: LazyAdamOptimizer(0.5),
    "rmsprop": lambda: RMSPropOptimizer(0.5),
    "ftrl": lambda: FtrlOptimizer(0.5, l2_shrinkage_regularization_strength=0.1),
    "adadelta": lambda: AdadeltaOptimizer(0.5),
    "proximal_gd": lambda: ProximalGradientDescentOptimizer(0.5, 0.01, 0.01),
    "proximal_adagrad": lambda: ProximalAdagradOptimizer(0.5, l1_regularization_strength=0.01),
    "optax": lambda: OptaxOptimizer(optax.sgd(0.5)),
}


def _apply(opt, indices):
    params = {"v": Variable(jnp.ones((4, 2)), name="v")}
    grad = IndexedSlices(jnp.ones((len(indices), 2)), indices, (4, 2))
    return opt.apply_gradients([(grad, "v")], params, opt.init(params))[0]["v"].value


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_apply_gradients_out_of_range_indices(name):
    opt = OPTIMIZERS[name]()
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 10, 4)):
        _apply(opt, jnp.array([0, 10]))
    with pytest.raises(InvalidArgumentError, match=tf_message(0, -1, 4)):
        _apply(opt, jnp.array([-1, 2]))
    # The padding index (dense_shape[0]) is allowed: it is what coalesce and sharded lookups emit.
    # (Constants inside jit are concrete, so this checks them too, at trace time.)
    reference = np.asarray(jax.jit(lambda: _apply(opt, jnp.array([2])))())
    np.testing.assert_array_equal(jax.jit(lambda: _apply(opt, jnp.array([2, 4])))(), reference)
    # Under jit the bad indices are dropped: the result is that of the good index alone.
    jitted = jax.jit(lambda idx: _apply(opt, idx))
    np.testing.assert_array_equal(jitted(jnp.array([2, 10, -1, -4])), reference)
    if name in ("sgd", "optax"):  # one check in the shared base class; two code paths use it
        with pytest.raises(InvalidArgumentError, match=tf_message(2, -1, 4)):
            jg.checked(lambda idx: _apply(opt, idx))(jnp.array([2, 4, -1]))


def test_indexed_slices_to_dense_and_coalesce_never_wrap():
    with pytest.raises(InvalidArgumentError, match=tf_message(1, -1, 3)):
        IndexedSlices(jnp.ones((2, 1)), jnp.array([0, -1]), (3, 1)).to_dense()

    def dense(indices):
        g = IndexedSlices(jnp.ones((3, 1)), indices, (3, 1))
        return g.to_dense(), g.coalesce().to_dense()

    for out in jax.jit(dense)(jnp.array([1, -1, 7])):
        np.testing.assert_array_equal(out.ravel(), [0.0, 1.0, 0.0])


# -- candidate samplers ----------------------------------------------------------------------------
SAMPLERS = {
    "log_uniform": log_uniform_candidate_sampler,
    "uniform": uniform_candidate_sampler,
    "fixed_unigram": lambda *a, **k: fixed_unigram_candidate_sampler(*a, unigrams=[1.0] * 6, **k),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_true_classes_out_of_range(name):
    sampler = SAMPLERS[name]
    key = jax.random.key(0)
    with pytest.raises(InvalidArgumentError, match=r"^`true_candidate` out of range \[0, 6\), received -2$"):
        sampler(jnp.array([[1], [-2]]), 1, 3, True, 6, key)
    # Under jit an out-of-range class is never drawn: expected count 0, not a value read elsewhere.
    # (unique=False: the rule does not depend on it, and the rejection loop is slow to compile.)
    _, true_ec, _ = jax.jit(lambda c: sampler(c, 1, 3, False, 6, key))(jnp.array([[1], [6], [-1]]))
    assert float(true_ec[0, 0]) > 0 and true_ec[1:].tolist() == [[0.0], [0.0]]
    with pytest.raises(InvalidArgumentError, match=r"received 9$"):
        jg.checked(lambda c: sampler(c, 1, 3, False, 6, key))(jnp.array([[1], [9]]))


# == checkpoints ===================================================================================
def _tree(value):
    # 64 KiB: big enough for a file-size limit to cut it, small enough to stay fast.
    return {
        "w": Variable(jnp.full((128, 128), float(value)), name="w"),
        "b": Variable(jnp.full(3, float(value)), name="b"),
    }


def _template():
    return _tree(0)


def _restored_value(path):
    restored, _ = Saver().restore(_template(), None, path)
    return float(restored["w"].value[0, 0])


def _snapshot(directory):
    """Every file in the directory with its bytes (the lock file's content is the owner's, so only named)."""
    return {
        p.name: (None if p.name == LOCK_FILENAME else p.read_bytes())
        for p in sorted(pathlib.Path(directory).iterdir())
    }


def _save_series(directory, steps, max_to_keep=None, format="npz"):
    with Saver(max_to_keep=max_to_keep, format=format) as saver:
        return [saver.save(_tree(s), None, str(directory / "model"), global_step=s) for s in steps]


WRITER = textwrap.dedent(
    """
    import sys
    import jax.numpy as jnp
    from jaxgraph import Variable
    from jaxgraph.train import Saver

    directory = sys.argv[1]
    saver = Saver(max_to_keep=2)
    for step in range(1, 5):
        tree = {"w": Variable(jnp.full((128, 128), float(step)), name="w"),
                "b": Variable(jnp.full(3, float(step)), name="b")}
        print("SAVED", saver.save(tree, None, directory + "/model", global_step=step), flush=True)
        sys.stdin.readline()  # the test says when to go on
    """
)


def _next_saved(child):
    line = child.stdout.readline()
    assert line.startswith("SAVED "), line + child.stderr.read()
    return line.split(" ", 1)[1].strip()


def test_a_second_writer_process_is_refused_and_deletes_nothing(tmp_path, python_child):
    # Two writers with max_to_keep=2 in one directory used to delete each other's checkpoints. Now the
    # directory has one writer at a time: the other one gets an error naming it, and writes nothing.
    with python_child(WRITER, tmp_path, stdin=True) as child:
        printed = [_next_saved(child)]
        before = _snapshot(tmp_path)
        for attempt in (lambda s: s.save(_tree(99), None, str(tmp_path / "model"), global_step=99),
                        lambda s: s.check_writable(tmp_path)):
            with Saver(max_to_keep=2) as other:
                with pytest.raises(CheckpointWriteError, match=rf"^Checkpoint directory {tmp_path} is in use by "
                                   rf"another writer \(pid {child.pid} on host {socket.gethostname()}, since "):
                    attempt(other)
        assert _snapshot(tmp_path) == before  # nothing written, nothing deleted
        for _ in range(3):
            child.stdin.write("\n")
            child.stdin.flush()
            printed.append(_next_saved(child))
            # Every checkpoint the writer reported and still keeps is there and intact.
            for prefix in printed[-2:]:
                assert _restored_value(prefix) == float(prefix.rsplit("-", 1)[1])
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0, child.stderr.read()
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", LOCK_FILENAME, "model-3.npz", "model-4.npz"]
    # Its Saver released the directory at exit: another writer may now use it (no stale-lock warning),
    # and a checkpoint under another name leaves the first writer's entries listed and in place.
    with Saver(max_to_keep=1) as saver:
        saver.save(_tree(7), None, str(tmp_path / "other"))
    assert read_checkpoint_state(tmp_path).all_model_checkpoint_paths == [
        str(tmp_path / "model-3"), str(tmp_path / "model-4"), str(tmp_path / "other")]
    assert _restored_value(tmp_path / "model-4") == 4.0


def test_lock_of_a_dead_process_is_taken_over_saying_so(tmp_path):
    _save_series(tmp_path, [1])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"pid": dead.pid, "host": socket.gethostname(), "since": "earlier"}
    (tmp_path / LOCK_FILENAME).write_text(json.dumps(record))  # as left by a killed writer
    with pytest.warns(JaxgraphWarning, match=rf"Took over checkpoint directory {tmp_path} from pid {dead.pid} "):
        _save_series(tmp_path, [2])
    assert latest_checkpoint(tmp_path) == str(tmp_path / "model-2")
    # A lock recorded on another machine may belong to a live writer there: refused, saying what to do.
    record.update(host="elsewhere", boot_id="another-kernel")
    (tmp_path / LOCK_FILENAME).write_text(json.dumps(record))
    with pytest.raises(CheckpointWriteError, match=rf"locked by pid {dead.pid} on host elsewhere.*delete "
                       rf"{tmp_path}/{LOCK_FILENAME}$"):
        _save_series(tmp_path, [3])
    assert latest_checkpoint(tmp_path) == str(tmp_path / "model-2")


def test_max_to_keep_deletes_only_this_writers_complete_checkpoints(tmp_path):
    _save_series(tmp_path, [1])
    with Saver() as best:
        best.save(_tree(50), None, str(tmp_path / "best"))  # another save path, listed in the index
    bystanders = {"notes.txt": b"mine", "model-0.npz": b"not a checkpoint", ".model-9.npz.tmp-1-x": b"partial"}
    for name, data in bystanders.items():
        (tmp_path / name).write_bytes(data)
    # The index lists a "model-0" that is not a checkpoint: never deleted, even when over the limit.
    write_checkpoint_state(tmp_path, str(tmp_path / "best"),
                           [str(tmp_path / "model-0"), str(tmp_path / "model-1"), str(tmp_path / "best")])
    _save_series(tmp_path, [2, 3], max_to_keep=1)
    files = set(os.listdir(tmp_path))
    assert files == {"checkpoint", LOCK_FILENAME, "best.npz", "model-3.npz", *bystanders}
    for name, data in bystanders.items():
        assert (tmp_path / name).read_bytes() == data
    state = read_checkpoint_state(tmp_path)
    assert state.model_checkpoint_path == str(tmp_path / "model-3")
    assert str(tmp_path / "best") in state.all_model_checkpoint_paths
    assert _restored_value(tmp_path / "best") == 50.0


INDEX_DAMAGE = {
    "deleted": None,
    "empty": b"",
    "garbage": b"\x00\xff\x13 not an index",
    "truncated line": b'model_checkpoint_path: "model-',
    "names missing files": b'model_checkpoint_path: "model-7"\nall_model_checkpoint_paths: "model-7"\n',
}


@pytest.mark.parametrize("damage", INDEX_DAMAGE)
def test_missing_or_damaged_index_recovers_the_newest_complete_checkpoint(tmp_path, damage):
    _save_series(tmp_path, [800, 900, 1000])
    index = tmp_path / "checkpoint"
    if INDEX_DAMAGE[damage] is None:
        index.unlink()
        said = rf"{tmp_path} has no 'checkpoint' index"
    else:
        index.write_bytes(INDEX_DAMAGE[damage])
        said = "no checkpoint listed in .* is intact" if damage == "names missing files" else "index .* is damaged"
    newest = str(tmp_path / "model-1000")
    with pytest.warns(JaxgraphWarning, match=rf"{said}.*; using {newest}, the newest complete checkpoint found in"):
        assert latest_checkpoint(tmp_path) == newest
    with pytest.warns(JaxgraphWarning, match=said):
        assert _restored_value(tmp_path) == 1000.0
    # The next save writes a sound index again (saying so if the old one was damaged); nothing is lost.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JaxgraphWarning)
        _save_series(tmp_path, [1100], max_to_keep=2)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "model-1100")
    assert {f"model-{s}.npz" for s in (800, 900, 1000, 1100)} <= set(os.listdir(tmp_path))


def _flip_a_data_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the 64 KiB array, past every header
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "deleted index and truncated"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous_intact_one(tmp_path, damage):
    _save_series(tmp_path, [1, 2, 3])
    newest = tmp_path / "model-3.npz"
    if damage == "bit flip":
        _flip_a_data_byte(newest)  # the structure is fine: only restoring (checksums) sees it
        assert latest_checkpoint(tmp_path) == str(tmp_path / "model-3")
    else:
        newest.write_bytes(newest.read_bytes()[:5000])
        if damage.startswith("deleted index"):
            (tmp_path / "checkpoint").unlink()
        with pytest.warns(JaxgraphWarning, match=r"model-3.npz is corrupt or truncated.*"
                          rf"|using {tmp_path}/model-2.*skipped: .*model-3.npz is corrupt"):
            assert latest_checkpoint(tmp_path) == str(tmp_path / "model-2")
    with pytest.warns(JaxgraphWarning) as said:
        assert _restored_value(tmp_path) == 2.0
    message = str(said[-1].message)
    assert "model-3.npz is corrupt" in message and f"{tmp_path}/model-2" in message
    with pytest.raises(CheckpointCorruptError, match="model-3.npz is corrupt"):  # an explicit path: no fallback
        Saver().restore(_template(), None, tmp_path / "model-3")


@pytest.mark.parametrize("damage", ["data file truncated", "index deleted"])
def test_damaged_newest_tf_checkpoint_falls_back_too(tmp_path, damage):
    _save_series(tmp_path, [1, 2], format="tf")
    if damage == "index deleted":
        (tmp_path / "model-2.index").unlink()
        said = r"TF checkpoint .*/model-2 is incomplete: its index .*model-2.index is missing; using .*/model-1, "
    else:
        data = tmp_path / "model-2.data-00000-of-00001"
        data.write_bytes(data.read_bytes()[:100])
        said = r"model-2.data-00000-of-00001 is truncated.*; using .*/model-1, the newest intact"
    with pytest.warns(JaxgraphWarning, match=said):
        assert latest_checkpoint(tmp_path) == str(tmp_path / "model-1")
    with pytest.warns(JaxgraphWarning, match=said):
        assert _restored_value(tmp_path) == 1.0


def test_no_intact_checkpoint_is_an_error_not_a_fresh_start(tmp_path):
    # The only checkpoint is damaged: None would let a program start afresh over it; an error instead.
    _save_series(tmp_path, [8])
    (tmp_path / "model-8.npz").write_bytes((tmp_path / "model-8.npz").read_bytes()[:200])
    for find in (latest_checkpoint, lambda d: Saver().restore(_template(), None, d)):
        with pytest.raises(CheckpointCorruptError, match=rf"^No intact checkpoint in {tmp_path}: .*model-8.npz is "
                           r"corrupt or truncated"):
            find(tmp_path)
    # The index names files that are gone (deleted by hand): nothing to lose, so None, saying why.
    (tmp_path / "model-8.npz").unlink()
    with pytest.warns(JaxgraphWarning, match=r"model-8 does not exist .*\): no checkpoint in"):
        assert latest_checkpoint(tmp_path) is None


@contextlib.contextmanager
def _unwritable(directory):
    """The directory cannot be written for the duration: by permission bits, or, as root (whom they do
    not stop), by running as the unprivileged user 'nobody' meanwhile."""
    if os.geteuid() == 0:
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)
    else:
        mode = os.stat(directory).st_mode
        os.chmod(directory, 0o555)
        try:
            yield
        finally:
            os.chmod(directory, mode)


def _assert_failed_save_changed_nothing(directory, before, fault):
    with Saver(max_to_keep=1) as saver:
        with pytest.raises(CheckpointWriteError) as error:
            fault(lambda: saver.save(_tree(9), None, str(directory / "model"), global_step=9))
    assert isinstance(error.value, OSError)
    message = str(error.value)
    assert "\n" not in message and str(directory) in message
    assert _snapshot(directory) == before  # no partial file; the previous checkpoint and the index intact
    assert latest_checkpoint(directory) == str(directory / "model-1") and _restored_value(directory) == 1.0
    return message


def test_unwritable_directory(tmp_path):
    _save_series(tmp_path, [1])
    before = _snapshot(tmp_path)

    def fault(save):
        with _unwritable(tmp_path):
            save()

    message = _assert_failed_save_changed_nothing(tmp_path, before, fault)
    assert message.endswith("Permission denied")
    with _unwritable(tmp_path), pytest.raises(CheckpointWriteError, match=r"Permission denied$"):
        check_writable_dir(tmp_path / "sub")


def test_path_under_a_file(tmp_path):
    a_file = tmp_path / "results"
    a_file.write_text("not a directory")
    for target, why in [(a_file, "it is a file"), (a_file / "deeper" / "ckpt", f"it is under a file \\({a_file}\\)")]:
        with pytest.raises(CheckpointWriteError, match=rf"^Cannot write checkpoints to {target}: {why}, not a dir"):
            Saver().save(_tree(1), None, str(target / "model"))
        with pytest.raises(CheckpointWriteError, match=why):
            Saver().check_writable(target)
    assert a_file.read_text() == "not a directory" and os.listdir(tmp_path) == ["results"]


def test_disk_full(tmp_path, monkeypatch):
    _save_series(tmp_path, [1])
    before = _snapshot(tmp_path)

    def file_size_limit(save):
        # `ulimit -f`: the kernel refuses to grow a file past 16 KiB (EFBIG; Python ignores SIGXFSZ).
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (16384, hard))
        try:
            save()
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    message = _assert_failed_save_changed_nothing(tmp_path, before, file_size_limit)
    assert re.fullmatch(rf"Cannot write checkpoint {tmp_path}/model-9.npz: File too large", message)

    real_write = saver_module._write_npz

    def no_space(save):
        def write_then_fail(f, arrays, meta):
            real_write(f, arrays, meta)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with monkeypatch.context() as m:
            m.setattr(saver_module, "_write_npz", write_then_fail)
            save()

    message = _assert_failed_save_changed_nothing(tmp_path, before, no_space)
    assert message == f"Cannot write checkpoint {tmp_path}/model-9.npz: No space left on device"
    with pytest.raises(CheckpointWriteError, match=r"^Not enough space in .*: 1048576.0 MiB needed, [\d.]+ MiB free$"):
        check_writable_dir(tmp_path, needed_bytes=2**40)


def test_foreign_files_are_named_for_what_they_are(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    npy = tmp_path / "array.npy"
    np.save(npy, np.ones(3))
    tf_data = tmp_path / "model.ckpt-5.data-00000-of-00001"  # TF's data file without its .index
    tf_data.write_bytes(b"\x00" * 64)
    cases = [
        (text, r"notes.txt is not a jaxgraph checkpoint \(not a zip/.npz file\)$"),
        (npy, r"array.npy is a single numpy array \(.npy\), not a jaxgraph checkpoint$"),
        (tf_data, r"model.ckpt-5.data-00000-of-00001 looks like part of a TensorFlow checkpoint, but its "
                  r".index file is missing"),
    ]
    for path, expected in cases:
        with pytest.raises(CheckpointCorruptError, match=expected) as error:
            Saver().restore(_template(), None, path)
        assert "pickle" not in str(error.value)
    # No index, no checkpoint (another program's .npz file is not one): a fresh directory, silently.
    np.savez(tmp_path / "arrays.npz", a=np.ones(3))
    assert latest_checkpoint(tmp_path) is None
    assert latest_checkpoint(tmp_path / "absent") is None


def test_check_writable_before_any_work(tmp_path):
    with Saver() as saver:
        directory = saver.check_writable(tmp_path / "run" / "checkpoints", needed_bytes=1024)
        assert directory == str(tmp_path / "run" / "checkpoints")
        assert os.listdir(directory) == [LOCK_FILENAME]  # the probe is gone; the lock is held
        assert json.loads((tmp_path / "run" / "checkpoints" / LOCK_FILENAME).read_text())["pid"] == os.getpid()
    assert (tmp_path / "run" / "checkpoints" / LOCK_FILENAME).read_text() == ""  # released
