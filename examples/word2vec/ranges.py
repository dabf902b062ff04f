"""Index arithmetic on flat byte buffers, shared by the corpus reader (``corpus_ids.py``: token bytes) and the
export (``export.py``: the words of the lines)."""

from __future__ import annotations

import numpy as np

__all__ = ["byte_ranges"]


def byte_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The offsets ``starts[i] .. starts[i] + lengths[i] - 1`` of every ``i``, one range after the other.

    >>> byte_ranges(np.array([10, 3]), np.array([2, 3])).tolist()
    [10, 11, 3, 4, 5]
    """
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(ends[-1] if len(ends) else 0)
