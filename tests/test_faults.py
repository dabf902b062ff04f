"""Fault injection against the two word2vec programs (``train.py``, ``word2vec_basic.py``) and the trainer's
multi-process runtime: each case injects one fault and asserts the outcome a user sees: the exit status, the one
``error:`` line (no traceback), and that nothing was lost (files present and restorable, results identical to an
uninterrupted run where promised). The README's "Reliability of the word2vec programs" lists the promises.

The trainer runs in-process through ``main(argv, _after_call=...)`` (a hook after each compiled call, where a
fault is injected) on the small corpus of ``conftest.py``; the cases that need a process of their own (a file
size limit, several processes, a lock held by another process) run ``python -m examples.word2vec.train``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import jax
import numpy as np
import pytest

from examples.word2vec import data as w2v_data
from examples.word2vec import distributed, step, train
from examples.word2vec import word2vec_basic as basic
from examples.word2vec.cli import Interrupted, raise_on_signals, signal_name
from examples.word2vec.model import init_params
from jaxgraph.train import Saver

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--embedding-size", "16", "--batch-size", "96", "--steps-per-call", "8", "--window", "3", "--min-count",
         "2", "--no-progress", "--no-tensorboard", "--no-eval", "--seed", "7"]
RUN = ["--steps", "43", "--checkpoint-every", "20", "--keep-checkpoints", "5"]  # calls of 8, 8, 4 | 8, 8, 4 | 3
TABLES = ("variables/emb_in", "variables/emb_out", "variables/global_step", "variables/position", "variables/epoch")


def _train(corpus: str, out: Path, *extra: str, **kw) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, *extra], **kw)


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in TABLES}


def _checkpoints(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "checkpoints").glob("model.ckpt-*.npz"))}


def _one_error(err: str, *needles: str) -> str:
    """The single ``error:`` line of ``err`` (every other line a one-line warning), with each needle in it."""
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _same_tables(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    for key in TABLES:
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    """An uninterrupted run of 43 steps (not a multiple of --steps-per-call 8) with checkpoints at 20, 40, 43."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _train(corpus, out, *RUN) == 0
    return out


def _no_corpus_read(monkeypatch) -> None:
    """Make reading the corpus fail the test: faults that must be found before any work come first."""

    def read(*_args, **_kw):
        raise AssertionError("the corpus was read before the fault was found")

    monkeypatch.setattr(w2v_data, "load_corpus", read)  # word2vec_basic
    monkeypatch.setattr(w2v_data, "corpus_source", read)  # the trainer (it reads through corpus_ids)


def _writable(directory: Path) -> bool:
    try:
        (directory / ".probe").write_bytes(b"x")
    except OSError:
        return False
    (directory / ".probe").unlink()
    return True


@contextlib.contextmanager
def _read_only(directory: Path):
    """``directory`` read-only: ``chmod 555``, and for root (whom permissions do not stop) the immutable flag."""
    os.chmod(directory, 0o555)
    immutable = False
    try:
        if _writable(directory) and shutil.which("chattr"):
            immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
        if _writable(directory):
            pytest.skip("this file system cannot make a directory read-only for this user (root without chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        os.chmod(directory, 0o755)


def _make_read_only_at(directory: Path, step: int, stack: contextlib.ExitStack):
    """An ``_after_call`` hook that makes ``directory`` read-only after the call that ends at ``step``."""

    def hook(reached: int) -> None:
        if reached == step:
            stack.enter_context(_read_only(directory))

    return hook


# ---------------------------------------------------------------------------------------------------------------
# Exact counts


def test_steps_checkpoints_and_stop_are_exact(corpus, reference, tmp_path, capsys):
    """--steps 43 with --steps-per-call 8 runs 43 steps (not 48) in two compiled programs, checkpoints at exactly
    20 and 40 (--checkpoint-every 20) and at the end; --stop-at-step 13 stops at 13, and resuming ends with the
    uninterrupted run's tables, bit for bit."""
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["steps"] == metrics["total_steps"] == 43 and metrics["traces"] == 2
    assert list(_checkpoints(reference)) == ["model.ckpt-20.npz", "model.ckpt-40.npz", "model.ckpt-43.npz"]
    assert _npz(reference / "checkpoints" / "model.ckpt-43.npz")["variables/global_step"] == 43

    split = tmp_path / "split"
    capsys.readouterr()
    assert _train(corpus, split, *RUN, "--stop-at-step", "13") == 0
    assert "stopped at step 13 of 43" in capsys.readouterr().out
    assert list(_checkpoints(split)) == ["model.ckpt-13.npz"]
    first = tmp_path / "first"  # the case: --stop-at-step 1 ran a whole call of 128 steps
    assert _train(corpus, first, *RUN, "--stop-at-step", "1") == 0
    assert list(_checkpoints(first)) == ["model.ckpt-1.npz"]
    assert _npz(first / "checkpoints" / "model.ckpt-1.npz")["variables/global_step"] == 1
    assert _train(corpus, split, *RUN, "--resume") == 0
    assert list(_checkpoints(split)) == ["model.ckpt-13.npz", "model.ckpt-20.npz", "model.ckpt-40.npz",
                                         "model.ckpt-43.npz"]
    _same_tables(_npz(reference / "checkpoints" / "model.ckpt-43.npz"), _npz(split / "checkpoints" /
                                                                             "model.ckpt-43.npz"))


def test_the_plan_line_says_what_will_run(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    flags = [a for a in SMALL if a != "--no-eval"]
    assert train.main(["--corpus", corpus, "--output-dir", str(out), *flags, "--no-eval", "--steps", "19"]) == 0
    stdout = capsys.readouterr().out
    assert "19 steps of 24 centres" in stdout
    assert "3 calls: 2 of 8 steps and 1 shorter (3 steps; a second compiled program)" in stdout
    # The share subsampling keeps: word2vec's keep probability averaged over the in-vocabulary tokens (--min-count 2).
    tokens = w2v_data.read_words(corpus)
    counts = {w: n for w, n in collections.Counter(tokens).items() if n >= 2}
    keep = dict(zip(counts, w2v_data.subsample_keep_prob(list(counts.values()), sum(counts.values())), strict=True))
    assert f"{np.mean([keep[w] for w in tokens if w in keep]):.1%} kept by subsampling on average" in stdout


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_whole_epochs_end_exactly_at_the_epoch_boundary(corpus, tmp_path, capsys, epochs):
    out = tmp_path / "run"
    assert _train(corpus, out, "--epochs", epochs, "--checkpoint-every", "0") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (last,) = _checkpoints(out)
    tables = _npz(out / "checkpoints" / last)
    assert int(tables["variables/epoch"]) == int(epochs) and int(tables["variables/position"]) == 0
    assert metrics["epochs_completed"] == float(epochs)
    assert f"exactly {epochs} epoch" in capsys.readouterr().out


def test_a_fractional_epoch_stops_at_the_first_step_past_it(corpus, tmp_path):
    out = tmp_path / "half"
    assert _train(corpus, out, "--epochs", "0.5", "--checkpoint-every", "0") == 0
    steps = json.loads((out / "metrics.json").read_text())["steps"]
    n = len(w2v_data.build_vocabulary(w2v_data.read_words(corpus), 2).ids)
    end = _npz(out / "checkpoints" / f"model.ckpt-{steps}.npz")
    assert int(end["variables/epoch"]) == 0 and int(end["variables/position"]) >= n / 2
    before = tmp_path / "one-step-less"
    assert _train(corpus, before, "--epochs", "0.5", "--checkpoint-every", "0", "--stop-at-step",
                  str(steps - 1)) == 0
    assert int(_npz(before / "checkpoints" / f"model.ckpt-{steps - 1}.npz")["variables/position"]) < n / 2


def test_an_epoch_of_one_huge_batch_is_one_epoch(corpus, tmp_path, capsys):
    """--batch-size 50000 on a 12,000-token corpus: one step is the whole epoch (was 128 steps: 42 epochs)."""
    out = tmp_path / "run"
    assert _train(corpus, out, "--epochs", "1", "--batch-size", "50000") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 1 and metrics["epochs_completed"] == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epoch_steps_replays_the_device_cursor(seed):
    """plan.epoch_steps against the device's own batches, step by step, on corpora whose subsampling leaves
    sparse stretches (short steps that jump by the raw span) as well as dense ones."""
    from examples.word2vec.batches import BatchMaker
    from examples.word2vec.plan import epoch_steps

    rng = np.random.default_rng(seed)
    n, words = 600, 40
    ids = rng.integers(0, words, n).astype(np.int32)
    ids[n // 2:] %= 8  # the second half uses only words 0-7, which subsampling rarely keeps: ~10 short steps
    keep = jax.numpy.asarray(np.where(np.arange(words) < 8, 0.05, rng.uniform(0.5, 1.0, words)), np.float32)
    maker = BatchMaker(n, window=2, batch_size=15, keep_mean=float(np.asarray(keep)[ids].mean()), seed=seed)
    corpus = jax.numpy.asarray(maker.pad(ids))
    step = jax.jit(lambda e, p: maker(corpus, keep, e, p)[3:])
    for epoch in (0, 1):
        kept = maker.kept_positions(ids, keep, epoch, chunk=256)  # chunks of the corpus, the last one shorter
        positions, e, p = [], np.int32(epoch), np.int32(0)
        while int(e) == epoch:
            e, p = step(e, p)
            positions.append(int(p) if int(e) == epoch else n)
        assert epoch_steps(kept, n, maker.centres, maker.forward) == len(positions)
        for stop_at in (1, n / 3, n / 2):
            expected = next(i + 1 for i, q in enumerate(positions) if q >= stop_at)
            assert epoch_steps(kept, n, maker.centres, maker.forward, stop_at=stop_at) == expected


def test_a_zip_corpus_is_read_whole(tmp_path):
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "alpha beta")
        zf.writestr("b.txt", "gamma delta")
    words, description = w2v_data.load_corpus(str(archive))
    assert words == ["alpha", "beta", "gamma", "delta"]
    assert "2 files of the zip archive, in order" in description


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: nothing lost


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_a_damaged_or_missing_index_resumes_from_the_newest_checkpoint(corpus, reference, tmp_path, capsys,
                                                                       damage):
    out = tmp_path / "run"
    assert _train(corpus, out, *RUN, "--checkpoint-every", "8", "--stop-at-step", "24") == 0
    index = out / "checkpoints" / "checkpoint"
    if damage == "garbage":
        index.write_text("garbage\n")
    else:
        index.unlink()
    capsys.readouterr()
    assert _train(corpus, out, *RUN, "--checkpoint-every", "8", "--resume") == 0
    err = capsys.readouterr().err
    assert err and all(line.startswith("warning: ") for line in err.splitlines()), err  # one line each
    assert "model.ckpt-24" in err.splitlines()[0] and "index" in err.splitlines()[0]
    assert {"model.ckpt-8.npz", "model.ckpt-16.npz"} <= set(_checkpoints(out))  # never overwritten or deleted
    _same_tables(_npz(reference / "checkpoints" / "model.ckpt-43.npz"), _npz(out / "checkpoints" /
                                                                           "model.ckpt-43.npz"))


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(corpus, reference, tmp_path, capsys):
    """A bit flipped inside model.ckpt-24's table (its zip structure intact, so only the checksum sees it): resume
    uses model.ckpt-16, says so naming both, and still ends with the uninterrupted run's tables."""
    out = tmp_path / "run"
    assert _train(corpus, out, *RUN, "--checkpoint-every", "8", "--stop-at-step", "24") == 0
    newest = out / "checkpoints" / "model.ckpt-24.npz"
    raw = bytearray(newest.read_bytes())
    at = bytes(raw).find(_npz(newest)["variables/emb_in"].tobytes()[:64])
    raw[at + 17] ^= 0x10
    newest.write_bytes(bytes(raw))
    capsys.readouterr()
    assert _train(corpus, out, *RUN, "--checkpoint-every", "8", "--resume") == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "model.ckpt-24.npz" in warnings[0] and "model.ckpt-16" in warnings[0], captured.err
    assert "resumed from" in captured.out and "model.ckpt-16 at step 16" in captured.out
    _same_tables(_npz(reference / "checkpoints" / "model.ckpt-43.npz"), _npz(out / "checkpoints" /
                                                                           "model.ckpt-43.npz"))


def test_resume_of_a_finished_run_changes_nothing(corpus, reference, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _train(corpus, out, *RUN, "--resume", "--quiet") == 0
    assert "is already complete (step 43 of 43" in capsys.readouterr().out
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # metrics.json keeps its figures (was rewritten with nulls)


def test_overwrite_removes_only_the_trainers_files(corpus, tmp_path):
    out = tmp_path / "run"
    assert _train(corpus, out, *RUN, "--stop-at-step", "8") == 0
    (out / "checkpoints" / "notes.txt").write_text("mine")
    (out / "README.txt").write_text("mine too")
    (out / "metrics.json").write_text("{}")  # an earlier run's
    assert _train(corpus, out, *RUN, "--overwrite") == 0
    assert (out / "checkpoints" / "notes.txt").read_text() == "mine"
    assert (out / "README.txt").read_text() == "mine too"
    assert list(_checkpoints(out)) == ["model.ckpt-20.npz", "model.ckpt-40.npz", "model.ckpt-43.npz"]
    assert json.loads((out / "metrics.json").read_text())["steps"] == 43


def test_a_failed_periodic_checkpoint_keeps_the_vectors(corpus, reference, tmp_path, capsys):
    """checkpoints/ turns read-only after step 8: the checkpoint of step 20 fails, training stops there, and the
    vectors of step 20 are exported (exit 2, one line). They are the uninterrupted run's step-20 vectors."""
    from gensim.models import KeyedVectors

    out = tmp_path / "run"
    with contextlib.ExitStack() as stack:
        rc = _train(corpus, out, *RUN, _after_call=_make_read_only_at(out / "checkpoints", 8, stack))
    assert rc == 2
    _one_error(capsys.readouterr().err, "Cannot write checkpoint", "model.ckpt-20.npz", "stopped at step 20 of 43",
               "vectors.txt")
    assert not _checkpoints(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["checkpoint"] is None and "Cannot write" in metrics["checkpoint_error"]
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    emb = _npz(reference / "checkpoints" / "model.ckpt-20.npz")["variables/emb_in"]
    np.testing.assert_allclose(np.stack([kv[w] for w in kv.index_to_key]), emb, rtol=1e-5, atol=1e-7)


def test_a_failed_final_checkpoint_keeps_the_vectors(corpus, reference, tmp_path, capsys):
    from gensim.models import KeyedVectors

    out = tmp_path / "run"
    with contextlib.ExitStack() as stack:
        rc = _train(corpus, out, *RUN, "--checkpoint-every", "0",
                    _after_call=_make_read_only_at(out / "checkpoints", 40, stack))
    assert rc == 2
    _one_error(capsys.readouterr().err, "model.ckpt-43.npz", "stopped at step 43 of 43")
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    emb = _npz(reference / "checkpoints" / "model.ckpt-43.npz")["variables/emb_in"]
    np.testing.assert_allclose(np.stack([kv[w] for w in kv.index_to_key]), emb, rtol=1e-5, atol=1e-7)


def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_earlier_checkpoint(corpus, tmp_path, capsys):
    """A file size limit (ulimit -f) set after step 20's checkpoint: step 40's fails (EFBIG), and so does the
    export; one error line says both, exit 2, and model.ckpt-20 is intact and restorable."""
    out = tmp_path / "run"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit_files(step: int) -> None:
        if step == 28:
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, limit[1]))

    try:
        rc = _train(corpus, out, *RUN, _after_call=limit_files)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    assert rc == 2
    _one_error(capsys.readouterr().err, "model.ckpt-40.npz", "File too large", "could not be written either")
    assert list(_checkpoints(out)) == ["model.ckpt-20.npz"]
    assert not [p.name for p in out.rglob(".*tmp*")]  # no half-written file left
    vocabulary = len(w2v_data.build_vocabulary(w2v_data.read_words(corpus), 2).words)
    tree, _ = Saver().restore(init_params(vocabulary, 16, "neg", 7), None, str(out / "checkpoints"))
    assert int(tree["global_step"].value) == 20


def _python(module: str, *args: str, file_size_limit: int | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m module args`` in a process of its own, with a file size limit (``ulimit -f``) if given (set in
    the child itself: a ``preexec_fn`` would fork this multithreaded process)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    script = ("import resource, runpy, sys\n"
              "if sys.argv[1] != 'None':\n"
              "    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))\n"
              "sys.argv = sys.argv[2:]\n"
              "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", script, str(file_size_limit), module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_a_file_size_limit_too_small_for_a_checkpoint_is_refused_before_training(corpus, tmp_path):
    proc = _python("examples.word2vec.train", "--corpus", corpus, "--output-dir", str(tmp_path / "out"), *SMALL,
                   *RUN, file_size_limit=4096)
    assert proc.returncode == 2, proc.stderr
    _one_error(proc.stderr, "a checkpoint or vectors file needs", "ulimit -f")
    assert "compiled" not in proc.stdout and not _checkpoints(tmp_path / "out")


def test_another_writer_of_the_same_checkpoints_is_refused_before_work(corpus, tmp_path):
    out = tmp_path / "run"
    with Saver() as saver:  # this process owns out/checkpoints, as a running trainer would
        saver.check_writable(str(out / "checkpoints"))
        proc = _python("examples.word2vec.train", "--corpus", corpus, "--output-dir", str(out), *SMALL, *RUN)
    assert proc.returncode == 2
    _one_error(proc.stderr, "in use by another writer", f"pid {os.getpid()}")
    assert "corpus:" not in proc.stdout


# ---------------------------------------------------------------------------------------------------------------
# Outputs that cannot be written: found before any work, in both programs


def _unwritable(tmp_path: Path, case: str, stack: contextlib.ExitStack) -> tuple[Path, str]:
    """An --output-dir for ``case`` and the words the error must say."""
    if case == "a file":
        (tmp_path / "out").write_text("x")
        return tmp_path / "out", "is a file, not a directory"
    if case == "under a file":
        (tmp_path / "file").write_text("x")
        return tmp_path / "file" / "out", "is under a file"
    (tmp_path / "out").mkdir()
    if case == "read-only":
        stack.enter_context(_read_only(tmp_path / "out"))
        return tmp_path / "out", "is not writable"
    (tmp_path / "out" / "checkpoints").mkdir()
    stack.enter_context(_read_only(tmp_path / "out" / "checkpoints"))
    return tmp_path / "out", "checkpoints"


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only", "read-only checkpoints"])
def test_an_unwritable_output_is_found_before_the_corpus_is_read(corpus, tmp_path, capsys, monkeypatch, case):
    _no_corpus_read(monkeypatch)
    with contextlib.ExitStack() as stack:
        out, needle = _unwritable(tmp_path, case, stack)
        assert _train(corpus, out, *RUN) == 2
    _one_error(capsys.readouterr().err, str(out), needle)


@pytest.mark.parametrize("case", ["a file", "under a file", "read-only"])
def test_word2vec_basic_finds_an_unwritable_output_before_the_corpus(tmp_path, capsys, monkeypatch, case):
    _no_corpus_read(monkeypatch)
    with contextlib.ExitStack() as stack:
        out, needle = _unwritable(tmp_path, case, stack)
        assert basic.main(["--output-dir", str(out), "--steps", "10"]) == 2
    _one_error(capsys.readouterr().err, "--output-dir", needle)


# ---------------------------------------------------------------------------------------------------------------
# Memory


@pytest.mark.parametrize("flags", [["--embedding-size", "100000000"], ["--batch-size", "1000000000"]])
def test_a_configuration_that_cannot_fit_in_memory_is_refused_with_the_figure(corpus, tmp_path, capsys, flags):
    assert _train(corpus, tmp_path / "out", "--epochs", "1", *flags) == 2
    line = _one_error(capsys.readouterr().err, "this configuration needs at least", "lower ")
    assert re.search(r"needs at least [\d.]+ [GT]B of memory", line) and flags[0] in line
    assert not _checkpoints(tmp_path / "out")


def test_xla_out_of_memory_is_one_line(corpus, tmp_path, capsys, monkeypatch):
    """A configuration the estimate let through (here: no estimate) that XLA cannot allocate: its
    RESOURCE_EXHAUSTED, on one line, with what to change."""
    monkeypatch.setattr(train, "_check_resources", lambda *args: "not checked")
    assert _train(corpus, tmp_path / "out", *RUN, "--embedding-size", str(1 << 36)) == 2
    _one_error(capsys.readouterr().err, "out of memory: RESOURCE_EXHAUSTED", "lower --batch-size")


def test_word2vec_basic_out_of_memory_is_one_line(tmp_path, capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 280000000000 bytes.\nmore")

    monkeypatch.setattr(basic, "_train", exhausted)
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat sat on the mat and the dog ran " * 50)
    rc = basic.main(["--corpus", str(corpus), "--output-dir", str(tmp_path / "out"), "--steps", "10",
                     "--num-sampled", "4", "--vocabulary-size", "9", "--valid-window", "8", "--valid-size", "2",
                     "--plot-only", "0"])
    assert rc == 2
    _one_error(capsys.readouterr().err, "out of memory: RESOURCE_EXHAUSTED", "--vocabulary-size")


@pytest.mark.parametrize(("flags", "part"), [(["--embedding-size", "1000000000"], "--embedding-size"),
                                             (["--batch-size", "1000000000"], "lower --batch-size")])
def test_word2vec_basic_refuses_a_configuration_that_cannot_fit_before_allocating(tmp_path, capsys, monkeypatch,
                                                                                   flags, part):
    def allocate(*args, **kwargs):
        raise AssertionError("the tables were built before the memory check")

    monkeypatch.setattr(basic, "make_init_fn", allocate)
    out = tmp_path / "out"
    assert basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC, *flags]) == 2
    line = _one_error(capsys.readouterr().err, "this configuration needs at least", part)
    assert re.search(r"needs at least [\d.]+ [GT]B of memory \(tables .*\) but \S+ has ", line), line
    assert not (out / "model.ckpt.npz").exists()


# ---------------------------------------------------------------------------------------------------------------
# Signals


def test_sigterm_in_training_saves_a_checkpoint_and_exits_143(corpus, reference, tmp_path, capsys):
    out = tmp_path / "run"

    def terminate(step: int) -> None:
        if step == 16:
            signal.raise_signal(signal.SIGTERM)

    assert _train(corpus, out, *RUN, _after_call=terminate) == 143
    assert "interrupted by SIGTERM at step 16: checkpoint" in capsys.readouterr().err
    assert list(_checkpoints(out)) == ["model.ckpt-16.npz"]
    assert _train(corpus, out, *RUN, "--resume") == 0
    _same_tables(_npz(reference / "checkpoints" / "model.ckpt-43.npz"), _npz(out / "checkpoints" /
                                                                           "model.ckpt-43.npz"))


def test_sigterm_before_training_exits_143_with_a_line(corpus, tmp_path, capsys, monkeypatch):
    source = w2v_data.corpus_source  # what the trainer calls first to find its corpus

    def find_then_terminate(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return source(*args, **kwargs)

    monkeypatch.setattr(w2v_data, "corpus_source", find_then_terminate)
    assert _train(corpus, tmp_path / "out", *RUN) == 143
    err = capsys.readouterr().err
    assert err.strip() == ("interrupted by SIGTERM outside the training loop: stopped without a new checkpoint "
                           "(those written so far are kept)")


def test_sigterm_while_compiling_stops_after_the_first_call_with_a_checkpoint(corpus, tmp_path, capsys,
                                                                              monkeypatch):
    """Once setup is done, a stop signal waits for the end of the first call, as in the loop: with several
    processes, one that left while compiling would leave the others waiting at that call's collective."""
    compile_step = step.MultiStep.compile

    def terminate_then_compile(self, *args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return compile_step(self, *args, **kwargs)

    monkeypatch.setattr(step.MultiStep, "compile", terminate_then_compile)
    out = tmp_path / "out"
    assert _train(corpus, out, *RUN) == 143
    assert "interrupted by SIGTERM at step 8: checkpoint" in capsys.readouterr().err  # RUN's first call: 8 steps
    assert list(_checkpoints(out)) == ["model.ckpt-8.npz"]


def test_sigterm_during_the_export_stops_at_once_with_the_final_checkpoint(corpus, tmp_path, capsys, monkeypatch):
    save_embeddings = train.export.save_embeddings

    def terminate_then_save(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return save_embeddings(*args, **kwargs)

    monkeypatch.setattr(train.export, "save_embeddings", terminate_then_save)
    out = tmp_path / "out"
    assert _train(corpus, out, *RUN) == 143
    assert capsys.readouterr().err.strip() == ("interrupted by SIGTERM outside the training loop: stopped without a "
                                               "new checkpoint (those written so far are kept)")
    assert "model.ckpt-43.npz" in _checkpoints(out) and not (out / "metrics.json").exists()


def _basic_corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(40)]
    path = tmp_path / "basic.txt"
    path.write_text(" ".join(rng.choice(words, 4000)) + "\n")
    return path


BASIC = ["--steps", "401", "--steps-per-call", "50", "--log-every", "50", "--eval-every", "10000",
         "--plot-only", "0", "--num-sampled", "8", "--embedding-size", "16", "--valid-size", "2",
         "--valid-window", "20", "--vocabulary-size", "30"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_word2vec_basic_stops_on_a_signal_with_a_checkpoint(tmp_path, capsys, monkeypatch, signum):
    """Ctrl-C or SIGTERM during training (here: while the host reads the first calls' losses): the run stops after
    the current call, writes model.ckpt.npz and the projector files of that step, and exits 130 or 143."""
    add = basic.LossReport.add

    def add_then_signal(self, chunk, losses, summaries):
        add(self, chunk, losses, summaries)
        if chunk.start == 1:  # the first 50-step call (step 0 runs alone: TF evaluates after it)
            signal.raise_signal(signum)

    monkeypatch.setattr(basic.LossReport, "add", add_then_signal)
    out = tmp_path / "out"
    rc = basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC])
    assert rc == 128 + signum
    err = capsys.readouterr().err
    match = re.search(r"interrupted by (\S+(?: \(SIGINT\))?) at step (\d+): checkpoint (\S+)\.npz", err)
    assert match and match[1] == signal_name(signum), err
    step = int(match[2])
    assert 51 <= step < 401
    restored, _ = Saver().restore(basic.build_model(30, 16, jax.random.PRNGKey(1)), None, match[3])
    assert int(restored["global_step"].value) == step
    vectors = np.loadtxt(out / "vectors.tsv", delimiter="\t")
    assert vectors.shape == (30, 16) and np.isfinite(vectors).all()
    assert not (out / "metrics.json").exists()


def test_a_second_sigterm_stops_the_trainer_at_once(corpus, tmp_path, capsys):
    def twice(step: int) -> None:
        if step == 8:
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGTERM)

    assert _train(corpus, tmp_path / "out", *RUN, _after_call=twice) == 143
    assert capsys.readouterr().err.strip() == ("interrupted twice (SIGTERM) near step 8: exiting without a new "
                                               "checkpoint (the last one, if any, is intact)")
    assert not _checkpoints(tmp_path / "out")


def test_word2vec_basic_sigterm_before_training_exits_143_with_a_line(tmp_path, capsys, monkeypatch):
    source = w2v_data.corpus_source  # what the trainer calls first to find its corpus

    def find_then_terminate(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)
        return source(*args, **kwargs)

    monkeypatch.setattr(w2v_data, "corpus_source", find_then_terminate)
    out = tmp_path / "out"
    assert basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC]) == 143
    assert capsys.readouterr().err.strip() == ("interrupted by SIGTERM: stopped without writing a checkpoint or the "
                                               "projector files")
    assert not list(out.iterdir())


def test_word2vec_basic_second_ctrl_c_stops_at_once(tmp_path, capsys, monkeypatch):
    add = basic.LossReport.add

    def add_then_two_signals(self, chunk, losses, summaries):
        add(self, chunk, losses, summaries)
        if chunk.start == 1:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(basic.LossReport, "add", add_then_two_signals)
    out = tmp_path / "out"
    assert basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC]) == 130
    assert capsys.readouterr().err.strip() == ("interrupted by Ctrl-C (SIGINT): stopped without writing a checkpoint "
                                               "or the projector files")
    assert [p.name for p in out.iterdir() if not p.name.startswith("events.out.tfevents")] == []


def test_word2vec_basic_ctrl_c_during_tsne_names_what_was_written(tmp_path, capsys, monkeypatch):
    def interrupted_tsne(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(basic, "tsne_plot", interrupted_tsne)
    out = tmp_path / "out"
    assert basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted by Ctrl-C (SIGINT): stopped after writing checkpoint {out / 'model.ckpt'}.npz and the "
                   "projector files (no tsne.png, no metrics.json)")
    assert {"model.ckpt.npz", "vectors.tsv", "metadata.tsv"} <= {p.name for p in out.iterdir()}
    assert not (out / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------------------------
# Messages that say what is wrong


@pytest.mark.parametrize(("flags", "message"), [
    (["--max-vocab", "1"], "--max-vocab must be at least 2"),
    (["--learning-rate", "inf"], "--learning-rate must be a finite number, got inf"),
    (["--epochs", "inf"], "--epochs must be a finite number, got inf"),
    (["--initialization-timeout", "0"], "--initialization-timeout must be at least 1"),
])
def test_trainer_messages_name_the_real_problem(corpus, tmp_path, capsys, flags, message):
    assert _train(corpus, tmp_path / "out", *flags) == 2
    _one_error(capsys.readouterr().err, message)


def test_word2vec_basic_learning_rate_inf_is_not_finite(tmp_path, capsys):
    assert basic.main(["--learning-rate", "inf", "--output-dir", str(tmp_path)]) == 2
    _one_error(capsys.readouterr().err, "--learning-rate must be a finite number, got inf")


def test_quiet_prints_only_the_final_summary(corpus, tmp_path, capsys):
    assert _train(corpus, tmp_path / "out", *RUN, "--quiet") == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert [line.split(":")[0] for line in captured.out.splitlines()] == ["done"], captured.out


def test_word2vec_basic_names_its_device_plainly(tmp_path, capsys):
    out = tmp_path / "out"
    assert basic.main(["--corpus", str(_basic_corpus(tmp_path)), "--output-dir", str(out), *BASIC]) == 0
    device = json.loads((out / "metrics.json").read_text())["device"]
    d = jax.devices()[0]
    assert device == (str(d) if d.platform == "cpu" else f"{d} ({d.device_kind})")
    assert "cpu:cpu" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------
# Several processes (one CPU device each): a peer that never comes, a peer that dies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(corpus: str, out: Path, port: int, ids: list[int], *extra: str,
               launcher: tuple[str, ...] = ("-m", "examples.word2vec.train")) -> list[subprocess.Popen]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    logs = out.parent / "logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for i in ids:
        cmd = [sys.executable, *launcher, "--corpus", corpus, "--output-dir", str(out), *SMALL,
               "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i), *extra]
        with open(logs / f"{i}.out", "w") as stdout, open(logs / f"{i}.err", "w") as stderr:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=stdout, stderr=stderr))
    return procs


def _log(out: Path, i: int, stream: str) -> str:
    return (out.parent / "logs" / f"{i}.{stream}").read_text()


@contextlib.contextmanager
def _reaped(procs: list[subprocess.Popen]):
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


def _training_pair(corpus: str, out: Path, checkpoint_every: int = 0) -> list[subprocess.Popen]:
    """Two processes of a long run, returned once process 0 has compiled its step (training is under way), or with
    ``checkpoint_every``, once it has written its first checkpoint: then both processes are in the training loop
    (every call ends in a vote of all processes), where a stop signal is handled. Process 1 prints nothing, and
    after process 0 has compiled it may still be compiling, outside the loop."""
    procs = _processes(corpus, out, _free_port(), [0, 1], "--steps", "1000000", "--checkpoint-every",
                       str(checkpoint_every), "--initialization-timeout", "60")

    def started() -> bool:
        return bool(_checkpoints(out)) if checkpoint_every else "compiled the step function" in _log(out, 0, "out")

    _await(procs, out, started, "the processes did not start training")
    return procs


def _await(procs: list[subprocess.Popen], out: Path, ready: Callable[[], T], what: str) -> T:
    """``ready()``'s first true value, polled for up to 60 s; if a process exits first or time runs out, the
    processes are killed and the test fails with ``what`` and their error logs."""
    deadline = time.monotonic() + 60
    while not (value := ready()):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            for p in procs:
                p.kill()
                p.wait()
            pytest.fail(f"{what}:\n" + "\n".join(_log(out, i, "err") for i in range(len(procs))))
        time.sleep(0.2)
    return value


def test_a_process_that_never_comes_is_named_after_the_timeout(corpus, tmp_path):
    out = tmp_path / "run"
    t0 = time.monotonic()
    with _reaped(_processes(corpus, out, _free_port(), [0], "--steps", "8", "--initialization-timeout", "5")) as (p,):
        rc = p.wait(timeout=60)
    err = _log(out, 0, "err")
    assert rc == 2 and time.monotonic() - t0 < 40, err
    assert "waiting for process 1 to join at 127.0.0.1:" in err
    _one_error(err, "process 1 did not join", "within --initialization-timeout 5 s")


def test_a_process_that_dies_stops_the_other_with_a_checkpoint(corpus, tmp_path, trainer_tables):
    out = tmp_path / "run"
    with _reaped(_training_pair(corpus, out)) as (chief, peer):
        time.sleep(2)  # a few hundred calls in
        peer.kill()
        rc = chief.wait(timeout=30)
    err = _log(out, 0, "err")
    assert rc == 2, err
    line = _one_error(err, "process 1 stopped responding", "with checkpoint", "restart every process with --resume")
    step = int(re.search(r"stopped at step (\d+) with checkpoint", line)[1])
    assert step > 0 and trainer_tables(out)["variables/global_step"] == step


def test_sigterm_to_one_process_stops_both_with_a_checkpoint(corpus, tmp_path, trainer_tables):
    out = tmp_path / "run"
    with _reaped(_training_pair(corpus, out, checkpoint_every=64)) as (chief, peer):
        peer.send_signal(signal.SIGTERM)
        statuses = [chief.wait(timeout=30), peer.wait(timeout=30)]
    assert statuses == [143, 143], (_log(out, 0, "err"), _log(out, 1, "err"))
    step = int(re.search(r"interrupted by SIGTERM at step (\d+): checkpoint", _log(out, 0, "err"))[1])
    assert trainer_tables(out)["variables/global_step"] == step
    assert "Traceback" not in _log(out, 1, "err")


# The trainer as `python -c _PAUSED SETUP FLAGS...`, SETUP a JSON object: "settings", {"module.NAME": value, ...} set
# before it starts (modules under examples.word2vec); "pause", [MARKER, "module.function"]: the function, when first
# called, creates MARKER and waits until the test removes it.
_PAUSED = """
import importlib, json, pathlib, sys, time
from examples.word2vec import distributed, train
setup = json.loads(sys.argv.pop(1))
def attribute(where):
    module, name = where.rsplit(".", 1)
    return importlib.import_module("examples.word2vec." + module), name
for where, value in setup.get("settings", {}).items():
    setattr(*attribute(where), value)
if "pause" in setup:
    marker, (module, name) = pathlib.Path(setup["pause"][0]), attribute(setup["pause"][1])
    function = getattr(module, name)
    def paused(*args, **kwargs):
        if not marker.exists():
            marker.touch()
            while marker.exists():
                time.sleep(0.05)
        return function(*args, **kwargs)
    setattr(module, name, paused)
distributed.leave(train.main(sys.argv[1:]))
"""


def _paused(marker: Path | None, function: str = "", **settings: float) -> tuple[str, ...]:
    """The launcher of a trainer paused at the first call of ``function`` until ``marker`` is removed (not paused
    when ``marker`` is None), with ``settings`` (``module__NAME=value``) made first."""
    setup: dict = {"settings": {where.replace("__", "."): value for where, value in settings.items()}}
    if marker is not None:
        setup["pause"] = [str(marker), function]
    return "-c", _PAUSED, json.dumps(setup)


@contextlib.contextmanager
def _process_1_in_its_setup(corpus: str, out: Path, hold_chief: bool = False, **chief: float):
    """Two processes of a short run, given with ``resume`` once process 1 is in its setup, paused just before it reads
    its corpus until ``resume()``; process 0 with the settings ``chief`` (as :func:`_paused`), and paused there too
    with ``hold_chief``."""
    markers = [out.parent / f"process-{i}-about-to-read" for i in (0, 1)]
    port = _free_port()
    with _reaped(_processes(corpus, out, port, [0], "--steps", "16",
                            launcher=_paused(markers[0] if hold_chief else None, "train._read_corpus", **chief)) +
                 _processes(corpus, out, port, [1], "--steps", "16",
                            launcher=_paused(markers[1], "train._read_corpus"))) as procs:
        held = markers if hold_chief else markers[1:]
        _await(procs, out, lambda: all(m.exists() for m in held), "process 1 did not start its setup")
        yield procs, lambda: [m.unlink() for m in held]


def test_sigterm_to_one_process_in_its_setup_stops_the_other_at_once(corpus, tmp_path):
    """Process 0 learns it at the end of its own setup, not 30 s later from a collective that times out."""
    out = tmp_path / "run"
    with _process_1_in_its_setup(corpus, out) as ((chief, peer), _):
        peer.send_signal(signal.SIGTERM)
        statuses = [chief.wait(timeout=20), peer.wait(timeout=20)]
    assert statuses == [2, 143], (_log(out, 0, "err"), _log(out, 1, "err"))
    _one_error(_log(out, 0, "err"), "process 1 was interrupted by SIGTERM before training", "this process stops too")
    assert _log(out, 1, "err").strip() == ("interrupted by SIGTERM outside the training loop: stopped without a new "
                                           "checkpoint (those written so far are kept)")


# Process 0's SILENCE_TIMEOUT_S in the tests that wait for a dead process (30 s by default; the wait is the same).
_SHORT_SILENCE = {"distributed__SILENCE_TIMEOUT_S": 3}


def test_a_process_that_dies_in_its_setup_stops_the_other_with_a_line(corpus, tmp_path):
    """Process 0, at the end of its setup, waits for process 1 until it has shown no sign of life for
    ``SILENCE_TIMEOUT_S``; it says so in one line (and never that process 1 is still working) and leaves at once, not
    through JAX's shutdown barrier (a C++ abort at JAX's heartbeat timeout)."""
    out = tmp_path / "run"
    # The meeting's notice after 0.2 s, not 10: early enough to call process 1 still working, were it to.
    with _process_1_in_its_setup(corpus, out, hold_chief=True, distributed__MEETING_NOTICE_S=0.2,
                                 **_SHORT_SILENCE) as ((chief, peer), resume):
        peer.kill()
        peer.wait()
        resume()
        rc = chief.wait(timeout=60)
    err = _log(out, 0, "err")
    assert rc == 2, err
    assert err.strip() == ("error: process 1 stopped responding (no sign of life for 3 s) before training; this "
                           "process stops too")


def test_a_process_whose_setup_is_slow_is_waited_for(corpus, tmp_path):
    """Process 1 reads its corpus 35 s after process 0 has finished its setup (a larger corpus, a slower disk): process
    0 waits for it at the end of its setup, saying so once, and both train. (A collective there gave up after gloo's
    30 s.)"""
    out = tmp_path / "run"
    with _process_1_in_its_setup(corpus, out) as (procs, resume):
        time.sleep(35)
        assert [p.poll() for p in procs] == [None, None], _log(out, 0, "err")
        resume()
        statuses = [p.wait(timeout=60) for p in procs]
    assert statuses == [0, 0], (_log(out, 0, "err"), _log(out, 1, "err"))
    assert "done: 16 steps" in _log(out, 0, "out")
    assert _log(out, 0, "err").strip() == "waiting for process 1 to end its setup (present, still working)"


@contextlib.contextmanager
def _process_0_after_its_loop(corpus: str, out: Path, peer: tuple[str, ...] = ("-m", "examples.word2vec.train"),
                              peer_ready: Callable[[], object] = lambda: True, **chief: float):
    """Two processes of a short run, given with ``resume`` once both have ended their loop and process 0 has written
    its vectors, paused before ``metrics.json`` (its last output) until ``resume()``; process 0 with the settings
    ``chief`` (as :func:`_paused`), process 1 started with the launcher ``peer``, once ``peer_ready()``."""
    marker = out.parent / "process-0-after-its-loop"
    port = _free_port()
    with _reaped(_processes(corpus, out, port, [0], "--steps", "16",
                            launcher=_paused(marker, "export.write_metrics", **chief)) +
                 _processes(corpus, out, port, [1], "--steps", "16", launcher=peer)) as procs:
        _await(procs, out, lambda: marker.exists() and peer_ready(), "process 0 did not end its loop")
        yield procs, marker.unlink


def test_a_process_that_dies_after_the_loop_leaves_the_chief_a_warning(corpus, tmp_path):
    """Process 1 is killed while process 0 writes its outputs: process 0 finishes them, misses process 1 when they meet
    to leave (SILENCE_TIMEOUT_S, 3 s here), says so on one warning line and exits 0, not through JAX's shutdown
    barrier (a C++ abort, exit -6, after the 100 s heartbeat timeout)."""
    out = tmp_path / "run"
    with _process_0_after_its_loop(corpus, out, **_SHORT_SILENCE) as ((chief, peer), resume):
        peer.kill()
        peer.wait()
        resume()
        rc = chief.wait(timeout=60)
    err = _log(out, 0, "err")
    assert rc == 0, err
    assert "Traceback" not in err and "error:" not in err, err
    warning, = [line for line in err.splitlines() if "process 1" in line]
    assert warning == ("warning: process 1 stopped responding (no sign of life for 3 s) after the training loop; "
                       "leaving without waiting for it")
    assert json.loads((out / "metrics.json").read_text())["steps"] == 16
    assert "done: 16 steps" in _log(out, 0, "out")


@pytest.mark.parametrize(("where", "signum"), [("main", signal.SIGINT), ("meeting", signal.SIGTERM)])
def test_a_stop_signal_to_a_process_after_the_loop_stops_it_at_once(corpus, tmp_path, where, signum):
    """Process 1 has ended its loop while process 0 writes its outputs; a stop signal to process 1 there, either still
    in the trainer (``main``: paused where its run concludes) or already waiting for process 0 (``meeting``: once it
    says so), ends it at once with one line and the signal's status, and process 0 finishes, told so: one warning
    line, status 0, no 30 s wait for a silent process."""
    out = tmp_path / "run"
    seen = out.parent / "process-1-after-its-loop"
    launcher, ready = {"main": (_paused(seen, "train._conclude"), seen.exists),
                       "meeting": (_paused(None, distributed__MEETING_NOTICE_S=0.2),
                                   lambda: "waiting for process 0 to finish" in _log(out, 1, "err"))}[where]
    with _process_0_after_its_loop(corpus, out, launcher, ready) as ((chief, peer), resume):
        peer.send_signal(signum)
        assert peer.wait(timeout=10) == 128 + signum, _log(out, 1, "err")
        resume()
        t0 = time.monotonic()
        rc = chief.wait(timeout=60)
    err = [line for line in _log(out, 1, "err").splitlines() if not line.endswith("(present, still working)")]
    name = signal_name(signum)
    assert err == [{"main": f"interrupted by {name} outside the training loop: stopped without a new checkpoint "
                            "(those written so far are kept)",
                    "meeting": f"interrupted by {name} after the training loop, waiting for the other "
                               "processes"}[where]]
    assert rc == 0, _log(out, 0, "err")
    warning, = [line for line in _log(out, 0, "err").splitlines() if "process 1" in line]
    assert warning == (f"warning: process 1 was interrupted by {name} after the training loop; leaving without "
                       "waiting for it")
    assert time.monotonic() - t0 < 20  # told, not found silent (SILENCE_TIMEOUT_S, 30 s)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 16


def test_a_stop_signal_to_process_0_after_the_loop_lets_the_others_end_normally(corpus, tmp_path):
    """Ctrl-C to process 0 while it writes its outputs: it stops with its line and 130, and process 1, waiting for it
    after the loop, ends with 0 and no word (process 0 comes to the meetings on its way out, not taking the
    coordination service, which it hosts, away from under them)."""
    out = tmp_path / "run"
    with _process_0_after_its_loop(corpus, out) as ((chief, peer), _):
        chief.send_signal(signal.SIGINT)
        statuses = [chief.wait(timeout=20), peer.wait(timeout=20)]
    assert statuses == [130, 0], (_log(out, 0, "err"), _log(out, 1, "err"))
    assert _log(out, 0, "err").strip().endswith("interrupted by Ctrl-C (SIGINT) outside the training loop: stopped "
                                                "without a new checkpoint (those written so far are kept)")
    assert _log(out, 1, "err") == ""
    assert not (out / "metrics.json").exists()


def test_a_stop_signal_during_a_meetings_write_waits_for_its_record(monkeypatch):
    """A signal arriving while a process writes its value for a meeting (the store's round trip) is handled once the
    process has recorded that it came (``_part`` then knows the others will wait for it at JAX's shutdown), not
    between the two."""

    class Store:  # the coordination service's key-value store, with the signal arriving during a write
        def __init__(self) -> None:
            self.values: dict[str, str] = {}

        def key_value_set(self, key: str, value: str) -> None:
            signal.raise_signal(signal.SIGTERM)
            self.values[key] = value

        def key_value_dir_get(self, directory: str) -> list[tuple[str, str]]:
            return [(k, v) for k, v in self.values.items() if k.startswith(directory)]

    monkeypatch.setattr(distributed, "_came_to", [None])
    monkeypatch.setattr(distributed, "_meetings", itertools.count())
    store = Store()
    with raise_on_signals(), pytest.raises(Interrupted):
        distributed._wait_at_meeting(store, "leaving", 0, None)
    assert distributed._came_to == ["leaving"] and list(store.values) == ["examples.word2vec/meeting/0-leaving/0"]


def test_a_setup_error_in_one_process_stops_the_others_at_once(corpus, tmp_path):
    """--output-dir is a file: process 0 says so, and process 1 learns it at the end of its setup (not 30 s later
    from a collective that times out)."""
    out = tmp_path / "run"
    out.write_text("a file")
    with _reaped(_processes(corpus, out, _free_port(), [0, 1], "--steps", "8")) as procs:
        statuses = [p.wait(timeout=60) for p in procs]
    assert statuses == [2, 2]
    _one_error(_log(out, 0, "err"), "--output-dir", "is a file, not a directory")
    _one_error(_log(out, 1, "err"), "process 0 stopped before training")
