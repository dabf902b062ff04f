"""A corpus streamed to the device chunk by chunk (examples/word2vec/feed.py ``StreamingFeed``, the ids in a
``corpus_ids.IdFile``) trains exactly as the whole corpus on the device: the same batches step by step (windows
across chunk boundaries and epoch wraps inside a call included), the same vectors.txt byte for byte, and resuming
works across chunks and across the two modes."""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.word2vec import train
from examples.word2vec.batches import BatchMaker
from examples.word2vec.checkpoints import TRAINING_KEYS, fingerprint
from examples.word2vec.corpus_ids import IdFile
from examples.word2vec.feed import CorpusFeed, StreamingFeed

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _calls(maker: BatchMaker, data_at, n: int, steps_per_call: int, calls: int, keep: jax.Array):
    """Runs ``calls`` calls of ``steps_per_call`` batches (a lax.scan, as the trainer does), each call's data from
    ``data_at(position)``; returns every step's (centres, contexts, mask, epoch, position)."""

    @jax.jit
    def call(data, epoch, pos):
        def one(carry, _):
            epoch, pos = carry
            out = maker(data["corpus"], keep, epoch, pos, data.get("corpus_window"))
            return (out[3], out[4]), out

        return jax.lax.scan(one, (epoch, pos), None, length=steps_per_call)

    epoch, pos, steps = jnp.int32(0), jnp.int32(0), []
    for _ in range(calls):
        (epoch, pos), out = call(data_at(int(epoch) * n + int(pos)), epoch, pos)
        steps.append([np.asarray(x) for x in out])
    return [np.concatenate(parts) for parts in zip(*steps, strict=True)]


@pytest.mark.parametrize("n,chunk,keep", [(3000, 257, 0.6), (1500, 1, 1.0), (400, 64, 0.5), (120, 1000, 1.0)])
def test_streamed_batches_are_the_in_memory_batches(tmp_path, n, chunk, keep):
    """Every step of every call, bit for bit: chunks of 1 to 257 positions, and corpora shorter than a call's reach
    (several epoch wraps inside one call, read from the buffer's wrapped part)."""
    ids = np.random.default_rng(n).integers(0, 50, n).astype(np.int32)
    maker = BatchMaker(n, window=3, batch_size=48, keep_mean=keep, seed=3)
    keep_prob = jnp.full((50,), keep, jnp.float32)
    whole = CorpusFeed(ids, maker, jnp.asarray, {})
    file = IdFile(str(tmp_path))
    file.append(ids)
    streamed = StreamingFeed(file, maker, steps_per_call=4, chunk_tokens=chunk, place=jnp.asarray, static={})
    try:
        expected = _calls(maker, whole.at, n, 4, 40, keep_prob)
        got = _calls(maker, streamed.at, n, 4, 40, keep_prob)
    finally:
        streamed.close()
        file.close()
    epochs = expected[3]
    assert epochs[-1] >= 1, "the walk wrapped into the next epoch"
    for e, g, name in zip(expected, got, ["centres", "contexts", "mask", "epoch", "position"], strict=True):
        np.testing.assert_array_equal(g, e, err_msg=name)
    if chunk < n:
        assert streamed.loads > 2 and streamed.chunk >= 0


@pytest.mark.parametrize("chunk", [1 << 12, 1 << 20])  # several chunks, the last one shorter; one chunk
def test_the_whole_corpus_is_padded_on_the_device_without_a_host_copy(chunk):
    """On one device the trainer's whole corpus is ``pad(ids)``, built on the device chunk by chunk: the host never
    holds a padded copy of the ids (numpy's allocations are what tracemalloc sees; the device's are XLA's)."""
    n = 1 << 18
    ids = np.random.default_rng(1).integers(0, 1000, n).astype(np.int32)
    maker = BatchMaker(n, window=3, batch_size=48, keep_mean=0.7, seed=3)
    device = jax.devices()[0]
    CorpusFeed(ids[:5000], maker, jnp.asarray, {}, device=device, chunk=chunk)  # compiled before the measurement
    tracemalloc.start()
    try:
        corpus = CorpusFeed(ids, maker, jnp.asarray, {}, device=device, chunk=chunk).at(0)["corpus"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(np.asarray(corpus), maker.pad(ids))
    assert corpus.devices() == {device}
    assert peak < ids.nbytes // 4, peak


SMALL = ["--embedding-size", "16", "--batch-size", "96", "--steps-per-call", "8", "--window", "3",
         "--min-count", "2", "--no-progress", "--no-tensorboard", "--seed", "7", "--no-eval"]


def _run(corpus: str, out, *extra: str) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, *extra])


def test_streamed_run_writes_the_same_vectors(corpus, tmp_path, capsys, trainer_tables):
    """vectors.txt byte for byte and the final tables bit for bit, over ~3 epochs of the test corpus with chunks
    of 700 tokens (the corpus is ~12k): the plan line says how the corpus is held, no id file is left behind."""
    whole, streamed = tmp_path / "whole", tmp_path / "streamed"
    assert _run(corpus, whole, "--steps", "640", "--quiet") == 0
    capsys.readouterr()
    assert _run(corpus, streamed, "--steps", "640", "--corpus-chunk-tokens", "700") == 0
    out = capsys.readouterr().out
    assert "corpus streamed in chunks of 700 tokens from an id file in" in out
    assert json.loads((whole / "metrics.json").read_text())["epochs_completed"] > 2.5
    assert (streamed / "vectors.txt").read_bytes() == (whole / "vectors.txt").read_bytes()
    a, b = trainer_tables(whole), trainer_tables(streamed)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not [f for f in os.listdir(streamed) if "corpus_ids" in f]
    # --max-corpus-memory decides by size: 1 MiB holds this corpus whole, so no id file
    capsys.readouterr()
    assert _run(corpus, tmp_path / "auto", "--steps", "8", "--max-corpus-memory", "1") == 0
    assert "corpus on the device whole" in capsys.readouterr().out


def test_resume_across_chunks_and_modes(corpus, tmp_path, trainer_tables):
    """Stopped mid-chunk while streamed, resumed streamed with other chunks, stopped again, resumed whole: the
    tables of the straight in-memory run (the fingerprint does not depend on how the corpus is held)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(corpus, straight, "--steps", "96", "--quiet") == 0
    assert _run(corpus, split, "--steps", "96", "--stop-at-step", "40", "--corpus-chunk-tokens", "333",
                "--quiet") == 0
    position = int(trainer_tables(split)["variables/position"])
    assert position % 333 != 0 and position > 333
    assert _run(corpus, split, "--steps", "96", "--stop-at-step", "72", "--resume", "--corpus-chunk-tokens", "1000",
                "--quiet") == 0
    assert _run(corpus, split, "--steps", "96", "--resume", "--quiet") == 0
    a, b = trainer_tables(straight), trainer_tables(split)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("extra, needle", [(["--corpus-chunk-tokens", "0"], "--corpus-chunk-tokens"),
                                           (["--max-corpus-memory", "0"], "--max-corpus-memory")])
def test_bad_streaming_flags_exit_2(corpus, tmp_path, capsys, extra, needle):
    assert _run(corpus, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_epochs_of_a_streamed_corpus_are_said_to_be_estimated(corpus, tmp_path, capsys):
    """--epochs is exact for a corpus held whole (the cursor replayed); a streamed corpus is never whole in memory,
    so its epochs come from the expected kept tokens, and the plan line says so rather than claim exactness."""
    assert _run(corpus, tmp_path / "whole", "--epochs", "0.05") == 0
    whole = capsys.readouterr().out
    assert "exactly 0.05 epochs (--epochs)" in whole
    assert _run(corpus, tmp_path / "streamed", "--epochs", "0.05", "--corpus-chunk-tokens", "700") == 0
    streamed = capsys.readouterr().out
    assert "epochs (--epochs of a streamed corpus: counted from the expected kept tokens)" in streamed
    assert "exactly" not in streamed.split("steps of")[1].split("\n")[0]


def test_the_fingerprint_reads_the_ids_in_place(tmp_path):
    """The run's fingerprint hashes an in-memory corpus's ids without a copy of them (at 500M tokens a copy was 1.9 GB
    more peak memory), and an id file of the same ids gets the same digest."""
    ids = (np.arange(1 << 22, dtype=np.int32) * 7919) % 1000  # 16 MiB
    config = dict.fromkeys(TRAINING_KEYS, 1)
    tracemalloc.start()
    try:
        digest = fingerprint(["a", "b"], ids, config)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < ids.nbytes // 16
    spilled = IdFile(str(tmp_path))
    try:
        spilled.append(ids)
        assert fingerprint(["a", "b"], spilled, config) == digest
        assert fingerprint(["a", "b"], ids[1:], config) != digest
    finally:
        spilled.close()


@pytest.mark.parametrize("length", [["--steps", "16"], ["--epochs", "0.5"]])
def test_a_corpus_held_whole_has_no_host_copy_during_training(corpus, tmp_path, monkeypatch, length):
    """Once a corpus held whole is on the device, the trainer lets its host array of ids go (at 500M tokens, 1.9 GB):
    by the training loop nothing refers to it any more."""
    from examples.word2vec import corpus_ids, loop

    read, run, ids, alive = corpus_ids.read_corpus, loop.TrainingLoop.run, [], []

    def reading(*args, **kwargs):
        result = read(*args, **kwargs)
        ids.append(weakref.ref(result.ids))
        return result

    def running(self, *args, **kwargs):
        gc.collect()
        alive.append(ids[0]() is not None)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(corpus_ids, "read_corpus", reading)
    monkeypatch.setattr(loop.TrainingLoop, "run", running)
    assert _run(corpus, tmp_path / "out", *length) == 0
    assert alive == [False]
