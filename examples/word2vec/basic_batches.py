"""Many of TF's tutorial batches at once: ``generate_batch`` called ``n`` times, batch for batch identical.

``word2vec_basic.py`` trains on TF's Python ``generate_batch`` (``data.generate_batch``), which spends most
of its time moving one word at a time through a ``deque`` and into numpy arrays. :func:`generate_batches`
makes the same batches with the same calls to the random generator (one ``random.sample`` per centre word,
in the same order), but reads the words with numpy: every centre of a batch sits at a known offset from the
batch's first one, as long as the batch does not reach the end of the data. A batch that does is made by
``generate_batch`` itself, so TF's wrap-around (which restarts the window at the data's first words) stays
exactly TF's. ``state`` ends where ``n`` calls of ``generate_batch`` leave it.

The ``random.sample`` calls themselves (one per centre word, 64 per tutorial batch, most of the CPU time
once the words are read with numpy) are replayed by :func:`random_samples` from Mersenne Twister words drawn
in bulk with numpy's ``MT19937``, which is the same generator as Python's: the same results, and Python's
generator left in the same state.

>>> from examples.word2vec.data import BatchState, generate_batch
>>> data = list(range(100, 130))
>>> a, b = BatchState.seeded(1), BatchState.seeded(1)
>>> inputs, labels = generate_batches(data, 5, 8, 2, 1, a)
>>> singles = [generate_batch(data, 8, 2, 1, b) for _ in range(5)]
>>> all((inputs[i] == x).all() and (labels[i] == y).all() for i, (x, y) in enumerate(singles))
True
>>> a.data_index == b.data_index and a.rng.getstate() == b.rng.getstate()
True
"""

from __future__ import annotations

import functools
import math
import random
import warnings
from collections.abc import Sequence

import numpy as np

from examples.word2vec.data import BatchState, generate_batch

__all__ = ["generate_batches", "random_samples"]


def generate_batches(
    data: Sequence[int] | np.ndarray,
    n: int,
    batch_size: int,
    num_skips: int,
    skip_window: int,
    state: BatchState,
    data_array: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` consecutive ``generate_batch(data, batch_size, num_skips, skip_window, state)`` results, stacked:
    ``inputs[n, batch_size]`` and ``labels[n, batch_size, 1]``, int32.

    ``data_array`` (``np.asarray(data, np.int32)``, made once by a caller that calls this often) saves the
    conversion; ``data`` itself is only read by the batches that reach the end of the data.
    """
    inputs = np.empty((n, batch_size), np.int32)
    labels = np.empty((n, batch_size, 1), np.int32)
    if n == 0:
        return inputs, labels
    words = np.asarray(data, np.int32) if data_array is None else data_array
    span = 2 * skip_window + 1
    centres = batch_size // num_skips
    length = len(words)
    context_words = [w for w in range(span) if w != skip_window]
    # generate_batch makes exactly `centres` sample() calls per batch, wrapping or not: draw them all now.
    all_offsets = random_samples(state.rng, context_words, num_skips, n * centres).reshape(n, centres, num_skips)
    first_centre = np.arange(centres)[:, None]
    for b in range(n):
        start = 0 if state.data_index + span > length else state.data_index
        if start + span + centres - 1 >= length:  # this batch wraps around the data's end: TF's code does it
            replay = BatchState(state.data_index, _Replay(all_offsets[b]))  # type: ignore[arg-type]
            inputs[b], labels[b] = generate_batch(data, batch_size, num_skips, skip_window, replay)
            state.data_index = replay.data_index
            continue
        # The i-th centre's window is words[start + i : start + i + span]; sample() picks positions in it.
        inputs[b] = np.repeat(words[start + skip_window : start + skip_window + centres], num_skips)
        labels[b, :, 0] = words[(start + first_centre + all_offsets[b]).reshape(-1)]
        state.data_index = start + centres  # TF's backtrack leaves it at the next batch's first window
    return inputs, labels


class _Replay:
    """Stands in for ``random.Random`` in ``generate_batch``: ``sample`` returns the draws made beforehand."""

    def __init__(self, rows: np.ndarray) -> None:
        self._rows = iter(rows.tolist())

    def sample(self, population: Sequence[int], k: int) -> list[int]:  # noqa: ARG002 (random.Random.sample's signature)
        return next(self._rows)


def random_samples(rng: random.Random, population: Sequence[int], k: int, calls: int) -> np.ndarray:
    """``calls`` consecutive ``rng.sample(population, k)`` results as an int64 array ``[calls, k]``, with
    ``rng`` left in the state those calls leave it in.

    CPython's ``sample`` on a small population picks ``j = _randbelow(n - i)`` for ``i < k`` from a pool, and
    ``_randbelow(m)`` takes the top ``m.bit_length()`` bits of one 32-bit Mersenne Twister word, drawing again
    while the value is ``>= m``. Here the words come from numpy's ``MT19937`` started from ``rng``'s state;
    the accepted positions are found with array operations (the start of every call by pointer doubling), so
    Python runs a fixed number of numpy calls per ``calls`` rather than ~100 bytecodes per call. Where that
    description might not hold (a ``random.Random`` subclass, a large population, a Python whose ``sample``
    gives other results in a check made once per ``(n, k)``: a ``RuntimeWarning`` says so), it calls
    ``rng.sample`` itself.

    >>> a, b = random.Random(7), random.Random(7)
    >>> random_samples(a, [0, 1, 2, 3], 2, 3).tolist() == [b.sample([0, 1, 2, 3], 2) for _ in range(3)]
    True
    >>> a.getstate() == b.getstate()
    True
    """
    population = list(population)
    if not (type(rng) is random.Random and _replayable(len(population), k)):
        return np.array([rng.sample(population, k) for _ in range(calls)], np.int64).reshape(calls, k)
    return _bulk_samples(rng, population, k, calls)


@functools.cache
def _replayable(n: int, k: int) -> bool:
    # sample()'s pool branch (CPython 3.9-3.13): small populations only; then a check against the real thing.
    setsize = 21 + (4 ** math.ceil(math.log(k * 3, 4)) if k > 5 else 0)
    if not (0 < k <= n <= setsize):
        return False
    population = list(range(n))
    mine, reference = random.Random(12345), random.Random(12345)
    ok = _bulk_samples(mine, population, k, 500).tolist() == [reference.sample(population, k) for _ in range(500)]
    if not (ok and mine.getstate() == reference.getstate()):
        warnings.warn(f"random_samples: this Python's random.sample({n} of {k}) draws differently from CPython "
                      "3.9-3.13's; calling random.sample itself (same batches, slower)", RuntimeWarning, stacklevel=3)
        return False
    return True


def _bulk_samples(rng: random.Random, population: list[int], k: int, calls: int) -> np.ndarray:
    version, internal, gauss_next = rng.getstate()
    start_state = {"bit_generator": "MT19937", "state": {"key": np.array(internal[:-1], np.uint32),
                                                          "pos": internal[-1]}}
    n = len(population)
    # Each _randbelow(m) accepts a word with probability m / 2**bit_length(m) > 1/2: at most 2k words per
    # call on average (sd ~sqrt(2k) per call); start with 12% more and double while the draws run past them.
    size = 2 * k * calls * 9 // 8 + 256
    while True:
        generator = np.random.MT19937()
        generator.state = start_state
        words = generator.random_raw(size)
        picks, used = _accepted(words, n, k, calls)
        if used <= size:
            break
        size *= 2
    generator = np.random.MT19937()
    generator.state = start_state
    generator.random_raw(used)
    key, pos = generator.state["state"]["key"], generator.state["state"]["pos"]
    rng.setstate((version, (*key.tolist(), int(pos)), gauss_next))
    # The pool: result[i] = pool[j_i], then the pool's last live entry fills the hole.
    pool = np.tile(np.asarray(population, np.int64), (calls, 1))
    rows = np.arange(calls)
    out = np.empty((calls, k), np.int64)
    for i, j in enumerate(picks):
        out[:, i] = pool[rows, j]
        pool[rows, j] = pool[:, n - i - 1]
    return out


def _accepted(words: np.ndarray, n: int, k: int, calls: int) -> tuple[list[np.ndarray], int]:
    """The ``j`` of every ``_randbelow(n - i)`` of ``calls`` sample() calls read from ``words``, and how many
    words they used (more than ``len(words)`` when the words ran out)."""
    size = len(words)
    values, accepts = [], []
    for i in range(k):
        m = n - i
        values.append((words >> np.uint64(32 - m.bit_length())).astype(np.int32))
        accepts.append(values[-1] < m)
    if all(np.array_equal(accepts[0], a) for a in accepts[1:]):
        # Every draw accepts the same words (k = 1, or sizes that are powers of two, as the tutorial's
        # sample(2 of 2)): the c-th call's draws are simply accepted words c*k ... c*k + k - 1.
        at = np.flatnonzero(accepts[0])[: calls * k]
        if len(at) < calls * k:
            return [], size + 1
        at = at.reshape(calls, k)
        return [value[at[:, i]] for i, value in enumerate(values)], int(at[-1, -1]) + 1 if calls else 0
    positions = np.arange(size + 1, dtype=np.int32)
    # next_i[p]: the first word at or after p that _randbelow(n - i) accepts (size: none).
    nexts = [np.minimum.accumulate(np.where(np.append(a, True), positions, size)[::-1])[::-1] for a in accepts]
    # One call maps its first word to the next call's: apply the k draws.
    after_call = positions
    for nxt in nexts:
        after_call = np.minimum(nxt[after_call] + 1, size)
    # Every call's first word: starts[c] = after_call applied c times to 0, by doubling.
    starts, jump = np.zeros(1, np.int32), after_call
    while len(starts) < calls:
        starts = np.concatenate([starts, jump[starts]])
        jump = jump[jump]
    starts = starts[:calls]
    picks, cursor = [], starts
    for nxt, value in zip(nexts, values, strict=True):
        at = nxt[cursor]
        if at.size and at[-1] >= size:
            return [], size + 1
        picks.append(value[at])
        cursor = at + 1
    return picks, int(cursor[-1]) if calls else 0
