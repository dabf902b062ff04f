"""The fast trainer's device-side skip-gram batches (examples/word2vec/batches.py ``BatchMaker``).

The batches are checked against a plain-Python reading of the documented rule: the kept tokens (after
subsampling) from the current position on are the centres, in corpus order; a centre with window
``b`` pairs with the ``b`` nearest kept tokens on each side, never across the ends of the corpus; the
next step starts at the first kept token not yet used as a centre, and an epoch wraps to position 0.
The corpus holds each position's own index as its token, so a token tells where it came from.
"""

from __future__ import annotations

import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.word2vec.batches import BatchMaker

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

N, W = 700, 3


def _walk(keep: float, batch_size: int, steps: int, seed: int = 5):
    """Runs ``steps`` batches over an N-token corpus whose token i is i; yields each step's batch as
    numpy arrays together with the (epoch, position) it started from."""
    ids = np.arange(N, dtype=np.int32)
    maker = BatchMaker(N, W, batch_size, keep, seed)
    corpus = jnp.asarray(maker.pad(ids))
    keep_prob = jnp.full((N,), keep, jnp.float32)
    step_fn = jax.jit(maker.__call__)
    epoch, pos = jnp.int32(0), jnp.int32(0)
    for _ in range(steps):
        centres, contexts, mask, next_epoch, next_pos = step_fn(corpus, keep_prob, epoch, pos)
        yield (int(epoch), int(pos)), np.asarray(centres), np.asarray(contexts), np.asarray(mask)
        epoch, pos = next_epoch, next_pos


@pytest.mark.parametrize("keep", [1.0, 0.6])
def test_batches_follow_the_windowing_rule(keep):
    seen_centres: dict[int, list[int]] = {}
    offsets = np.concatenate([np.arange(-W, 0), np.arange(1, W + 1)])
    windows = []
    for (epoch, pos), centres, contexts, mask in _walk(keep, batch_size=96, steps=40):
        rows = mask.any(axis=1)
        n_real = int(rows.sum())
        assert n_real >= 1
        assert not rows[n_real:].any(), "active rows come first"
        real = centres[:n_real]
        assert np.all(np.diff(real) > 0), "centres are in corpus order"
        assert real[0] >= pos
        seen_centres.setdefault(epoch, []).extend(real.tolist())
        # The kept tokens of this epoch, as the step saw them: every centre and every active context.
        for i in range(n_real):
            active = contexts[i][mask[i]]
            d = offsets[mask[i]]
            b = int(np.abs(d).max())
            assert 1 <= b <= W
            windows.append(b)
            left, right = active[d < 0], active[d > 0]
            assert np.all(left < real[i]) and np.all(right > real[i])
            assert np.all(np.diff(active) > 0), "contexts ordered by offset, no duplicates"
            if keep == 1.0:  # no subsampling: the b neighbours on each side, cut at the corpus ends
                expected = [real[i] + o for o in range(-b, b + 1) if o != 0 and 0 <= real[i] + o < N]
                assert active.tolist() == expected
    # Every kept token is a centre exactly once per epoch, in order (epoch 0 is complete after 40 steps).
    assert 1 in seen_centres, "the walk wrapped into a second epoch"
    first = seen_centres[0]
    assert len(first) == len(set(first))
    if keep == 1.0:
        assert first == list(range(N))
    else:
        assert 0.45 * N < len(first) < 0.75 * N
    # b ~ U{1..W}: every window size shows up about equally often.
    counts = np.bincount(windows, minlength=W + 1)[1:]
    assert counts.min() > 0.6 * counts.mean()


def test_contexts_are_kept_tokens_of_the_same_epoch():
    """With subsampling, a centre's active contexts are exactly its ``b`` nearest kept tokens on each
    side (fewer only at the corpus ends); the epoch's kept tokens are read off its centres."""
    steps = list(_walk(0.5, batch_size=96, steps=40))
    kept = sorted(c for (epoch, _), centres, _, mask in steps if epoch == 0
                  for c in centres[mask.any(axis=1)].tolist())
    rank = {t: r for r, t in enumerate(kept)}
    offsets = np.concatenate([np.arange(-W, 0), np.arange(1, W + 1)])
    checked = 0
    for (epoch, _), centres, contexts, mask in steps:
        if epoch != 0:
            continue
        for i in np.flatnonzero(mask.any(axis=1)):
            r = rank[int(centres[i])]
            b = int(np.abs(offsets[mask[i]]).max())
            expected = [kept[r + o] for o in offsets if abs(o) <= b and 0 <= r + o < len(kept)]
            assert contexts[i][mask[i]].tolist() == expected
            checked += len(expected)
    assert checked > 500


def test_kept_positions_are_the_batches_rule_and_hold_little_beyond_them():
    """The positions ``plan.epoch_steps`` counts an epoch's steps over (``--epochs``, a corpus held whole): the
    subsampling decisions of the batches themselves, chunk by chunk, with the host memory of little more than the
    int32 result (at 250M tokens the whole corpus's decisions and int64 positions at once took 2.7 GB)."""
    n, chunk = 1 << 21, 1 << 17
    ids = (np.arange(n, dtype=np.int32) * 7919) % 50
    keep = jnp.linspace(0.05, 1.0, 50, dtype=jnp.float32)
    maker = BatchMaker(n, window=2, batch_size=15, keep_mean=0.5, seed=3)
    one_pass = np.flatnonzero(np.asarray(maker._subsampled(jnp.int32(1), jnp.arange(n, dtype=jnp.int32),
                                                           keep[ids])))
    maker.kept_positions(ids, keep, 1, chunk=chunk)  # compiled before the measurement
    tracemalloc.start()
    try:
        kept = maker.kept_positions(ids, keep, 1, chunk=chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kept.dtype == np.int32
    np.testing.assert_array_equal(kept, one_pass)
    assert peak < kept.nbytes + n // 8 + 16 * chunk, (peak, kept.nbytes)  # the result, the bits, a chunk's arrays
