"""The trainer's corpus as token ids, built in one pass over the text, held in memory or in a file.

:func:`read_corpus` reads a corpus file block by block (``data.token_blocks``), gives every token a provisional
id in order of first appearance (``data.index_tokens``), counts them, and ranks the vocabulary
(``data.rank_vocabulary``: ``--min-count``, ``--max-vocab``, ties in first-appearance order); a second pass over
the *ids* (not the text) maps them to vocabulary ids and drops the out-of-vocabulary ones. The result is exactly
``data.build_vocabulary(data.read_words(path), ...)``, without ever holding the text or its list of tokens.

Where the ids live: in memory while they fit in ``memory_bytes`` (the trainer's ``--max-corpus-memory``);
beyond that they are written once to an :class:`IdFile` in ``spill_dir`` (the run's ``--output-dir``): a flat
little-endian int32 file, unlinked as soon as it is created, so that it disappears when the run ends, however it
ends (even killed), and never shows up in the directory. It takes 4 bytes of disk per token. The second pass
rewrites it in place (in-vocabulary ids only). Reads go through ``os.pread`` into fresh arrays rather than a
memory map, so that the resident set stays bounded by the blocks in use, not the file's size.

>>> import os, pathlib, tempfile
>>> d = tempfile.mkdtemp(); path = os.path.join(d, "c.txt")
>>> _ = pathlib.Path(path).write_text("a b a c a b d")
>>> corpus = read_corpus(path, min_count=2, max_vocab=None, memory_bytes=0, spill_dir=d)
>>> corpus.words, corpus.counts.tolist(), corpus.raw_tokens, type(corpus.ids).__name__
(['a', 'b'], [3, 2], 7, 'IdFile')
>>> corpus.ids.read(0, len(corpus.ids)).tolist(), os.listdir(d)
([0, 1, 0, 0, 1], ['c.txt'])
>>> corpus.ids.close()
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from examples.word2vec import data

__all__ = ["CorpusIds", "IdFile", "read_corpus"]

# Provisional ids are counted and remapped this many at a time (64 MiB of int32).
_IDS_PER_BLOCK = 1 << 24
# Positions are int32 on the device; a step may look this far past the end of the corpus.
_MAX_TOKENS = 2**31 - 2**26


class IdFile:
    """Token ids (int32, little-endian) in an unlinked temporary file of ``directory``: :meth:`append`, then
    :meth:`read` any range. Close it (or let the process end) to free the disk space."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        fd, path = tempfile.mkstemp(prefix=".corpus_ids.", suffix=".int32", dir=directory)
        os.unlink(path)  # nothing is left behind, even if the run is killed
        self._fd: int | None = fd
        self.directory = os.path.abspath(directory)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    @property
    def nbytes(self) -> int:
        return 4 * self._n

    def append(self, ids: np.ndarray) -> None:
        self._write(self._n, ids)
        self._n += len(ids)

    def _write(self, at: int, ids: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(ids, "<i4")).cast("B")
        offset = 4 * at
        try:
            while view:
                done = os.pwrite(self._fileno(), view, offset)
                view, offset = view[done:], offset + done
        except OSError as e:
            raise data.CorpusError(f"cannot write the corpus id file in {self.directory}: "
                                   f"{e.strerror or e} (it needs 4 bytes per token)") from None

    def read(self, start: int, stop: int) -> np.ndarray:
        """Ids ``start .. stop`` (clipped to the file) as a new int32 array."""
        start, stop = max(0, start), min(stop, self._n)
        out = np.empty(max(0, stop - start), np.int32)
        view, offset = memoryview(out).cast("B"), 4 * start
        while view:
            done = os.preadv(self._fileno(), [view], offset)
            if done == 0:
                raise data.CorpusError(f"the corpus id file in {self.directory} ended early (at byte {offset})")
            view, offset = view[done:], offset + done
        return out

    def blocks(self, size: int = _IDS_PER_BLOCK) -> Iterator[np.ndarray]:
        """The ids in order, ``size`` at a time."""
        for start in range(0, self._n, size):
            yield self.read(start, start + size)

    def remap(self, remap: np.ndarray) -> None:
        """Replace every id ``i`` by ``remap[i]``, dropping those that map to -1 (in place, block by block)."""
        kept = 0
        for block in self.blocks():
            new = remap[block]
            new = new[new >= 0]
            self._write(kept, new)  # never ahead of the block being read
            kept += len(new)
        self._n = kept
        os.ftruncate(self._fileno(), 4 * kept)

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError("the corpus id file is closed")
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.close()


class CorpusIds(NamedTuple):
    """:func:`read_corpus`'s result: the vocabulary (``words``, most frequent first, and their ``counts``), the
    in-vocabulary token ids (a numpy array, or an :class:`IdFile` when they did not fit in memory) and the number
    of tokens before out-of-vocabulary ones were dropped."""

    words: list[str]
    counts: np.ndarray
    ids: np.ndarray | IdFile
    raw_tokens: int


class _Provisional:
    """Pass 1's provisional ids: in memory up to ``memory_bytes``, then in an :class:`IdFile`; with their counts."""

    def __init__(self, memory_bytes: int, spill_dir: str) -> None:
        self.memory_bytes, self.spill_dir = memory_bytes, spill_dir
        self.held: list[np.ndarray] = []
        self.pending: list[np.ndarray] = []  # not counted yet
        self.file: IdFile | None = None
        self.n = 0
        self.counts = np.zeros(0, np.int64)

    def add(self, ids: np.ndarray) -> None:
        self.n += len(ids)
        if self.n > _MAX_TOKENS:
            raise data.CorpusError(f"the corpus has more than {_MAX_TOKENS:,} tokens: positions on the device "
                                   "are int32; split it into several corpora")
        self.pending.append(ids)
        if sum(map(len, self.pending)) >= _IDS_PER_BLOCK:
            self._count()
        if self.file is None and 4 * self.n > self.memory_bytes:
            self.file = IdFile(self.spill_dir)
            for block in self.held:
                self.file.append(block)
            self.held = []
        if self.file is not None:
            self.file.append(ids)
        else:
            self.held.append(ids)

    def _count(self) -> None:
        if not self.pending:
            return
        ids = np.concatenate(self.pending)
        self.pending = []
        new = np.bincount(ids, minlength=len(self.counts))
        new[: len(self.counts)] += self.counts
        self.counts = new

    def finish(self, vocab_size_seen: int) -> np.ndarray:
        self._count()
        return np.pad(self.counts, (0, vocab_size_seen - len(self.counts)))


def _token_source(source: str | os.PathLike[str] | Sequence[str]) -> Iterator[Sequence]:
    if isinstance(source, (str, os.PathLike)):
        yield from data.token_blocks(source, as_bytes=True)
        return
    for start in range(0, len(source), 1 << 20):
        yield source[start: start + (1 << 20)]


def read_corpus(source: str | os.PathLike[str] | Sequence[str], min_count: int, max_vocab: int | None, *,
                memory_bytes: int, spill_dir: str, to_file: bool = False) -> CorpusIds:
    """The vocabulary and in-vocabulary ids of ``source`` (a corpus file, read as ``data.read_words`` reads it,
    or a list of words) with ``--min-count`` / ``--max-vocab``, identical to ``data.build_vocabulary``'s.

    The ids stay in memory if they fit in ``memory_bytes`` (4 bytes per token) and ``to_file`` is false; otherwise
    they are in an :class:`IdFile` in ``spill_dir`` (see the module docstring).

    Raises:
        CorpusError: see ``data.token_blocks`` and ``data.rank_vocabulary``; more than 2^31 - 2^26 tokens; the id
            file cannot be written.
    """
    index = data.first_seen_index()
    provisional = _Provisional(-1 if to_file else memory_bytes, spill_dir)
    for tokens in _token_source(source):
        provisional.add(data.index_tokens(index, tokens))
    counts = provisional.finish(len(index))
    words, counts, remap = data.rank_vocabulary(list(index), counts, min_count, max_vocab)
    del index
    words = [w.decode("utf-8") if isinstance(w, bytes) else w for w in words]
    if provisional.file is None:
        ids = remap[np.concatenate(provisional.held)]
        return CorpusIds(words, counts, ids[ids >= 0], provisional.n)
    ids_file = provisional.file
    ids_file.remap(remap)
    if not to_file and ids_file.nbytes <= memory_bytes:  # out-of-vocabulary tokens made the difference
        in_memory = ids_file.read(0, len(ids_file))
        ids_file.close()
        return CorpusIds(words, counts, in_memory, provisional.n)
    return CorpusIds(words, counts, ids_file, provisional.n)
