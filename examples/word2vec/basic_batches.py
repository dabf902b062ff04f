"""Many of TF's tutorial batches at once: ``generate_batch`` called ``n`` times, batch for batch identical.

``word2vec_basic.py`` trains on TF's Python ``generate_batch`` (``data.generate_batch``), which spends most
of its time moving one word at a time through a ``deque`` and into numpy arrays. :func:`generate_batches`
makes the same batches with the same calls to the random generator (one ``random.sample`` per centre word,
in the same order), but reads the words with numpy: every centre of a batch sits at a known offset from the
batch's first one, as long as the batch does not reach the end of the data. A batch that does is made by
``generate_batch`` itself, so TF's wrap-around (which restarts the window at the data's first words) stays
exactly TF's. ``state`` ends where ``n`` calls of ``generate_batch`` leave it.

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

from collections.abc import Sequence

import numpy as np

from examples.word2vec.data import BatchState, generate_batch

__all__ = ["generate_batches"]


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
    sample = state.rng.sample
    first_centre = np.arange(centres)[:, None]
    for b in range(n):
        start = 0 if state.data_index + span > length else state.data_index
        if start + span + centres - 1 >= length:  # this batch wraps around the data's end: TF's code does it
            inputs[b], labels[b] = generate_batch(data, batch_size, num_skips, skip_window, state)
            continue
        # The i-th centre's window is words[start + i : start + i + span]; sample() picks positions in it.
        offsets = np.array([sample(context_words, num_skips) for _ in range(centres)], np.int64)
        inputs[b] = np.repeat(words[start + skip_window : start + skip_window + centres], num_skips)
        labels[b, :, 0] = words[(start + first_centre + offsets).reshape(-1)]
        state.data_index = start + centres  # TF's backtrack leaves it at the next batch's first window
    return inputs, labels
