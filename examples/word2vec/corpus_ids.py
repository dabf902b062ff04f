"""The trainer's corpus as token ids, built in one pass over the text, held in memory or in a file.

:func:`read_corpus` reads a corpus file block by block (``data.text_blocks``), gives every token a provisional
id in order of first appearance (:func:`index_block` per block, in numpy: a token of up to 8 bytes is its own
64-bit key, a longer one is hashed and checked byte for byte; the blocks merged in order into the ids of one pass,
as ``data.index_tokens`` would give them), counts them, and ranks the vocabulary
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

import collections
import concurrent.futures
import ctypes
import hashlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from examples.word2vec import data
from examples.word2vec.ranges import byte_ranges

__all__ = ["BlockIndex", "CorpusIds", "HashCollision", "IdFile", "index_block", "read_corpus", "release_freed_memory"]

# Provisional ids are counted and remapped this many at a time (64 MiB of int32).
_IDS_PER_BLOCK = 1 << 24
# Files this large get reader processes by default (see _reader_processes).
_READER_PROCESS_BYTES = 256 << 20
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

    def remap_held(self, remap: np.ndarray, kept: int) -> np.ndarray:
        """The ids held in memory, through ``remap`` (int32; -1: out of the vocabulary, dropped), as one array of
        the ``kept`` ones. Block by block, each held block remapped in place and freed once copied: the result is
        the only new array of the corpus's size (concatenating, remapping and dropping made three: reading the
        22M-word mix in a fresh process took 1.08x as long, with 23 MiB more peak memory; benchmarks/README.md)."""
        ids = np.empty(kept, np.int32)
        at = freed = 0
        self.held.reverse()
        while self.held:
            block = self.held.pop()  # the list's reference gone: the block is freed once copied
            np.take(remap, block, out=block, mode="clip")  # the ids are in range: no bounds check, no buffer
            freed += block.nbytes
            block = block[block >= 0]
            ids[at: at + len(block)] = block
            at += len(block)
            if freed > _TRIM_BYTES:  # else the freed blocks stay the process's while the result fills
                release_freed_memory()
                freed = 0
        if at != kept:
            raise AssertionError(f"{at} in-vocabulary ids for counts that sum to {kept}")
        return ids

    def finish(self, vocab_size_seen: int) -> np.ndarray:
        self._count()
        return np.pad(self.counts, (0, vocab_size_seen - len(self.counts)))


#: Bytes of blocks freed between two calls of :func:`release_freed_memory` while the held ids are copied out.
_TRIM_BYTES = 256 << 20


def release_freed_memory() -> None:
    """Give memory freed on the heap back to the system (glibc's ``malloc_trim``; elsewhere nothing to do).

    The ids are read in blocks of a few MiB, which glibc's allocator serves from its heap and, once freed, keeps for
    reuse rather than returning: after reading 500M tokens the trainer's process held 2.3 GB that it never used
    again, on top of the ids themselves (``benchmarks/README.md``, ``word2vec_large_corpus.py``).
    """
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError, TypeError):  # not glibc (TypeError: Windows has no CDLL(None))
        pass


class BlockIndex(NamedTuple):
    """:func:`index_block`'s result: the block's distinct tokens in the order of their ``keys`` (one 64-bit key
    each, ascending: the token's own bytes for a token of at most 8 bytes, else a hash), their ``lengths``, the
    UTF-8 bytes of those longer than 8 bytes one after the other (``text``), the position of each one's ``first``
    appearance in the block; and the block's tokens as ``ids`` (int32) into that list."""

    keys: np.ndarray
    lengths: np.ndarray
    text: bytes
    first: np.ndarray
    ids: np.ndarray


class HashCollision(Exception):
    """Two different tokens have the same 64-bit key (n distinct tokens longer than 8 bytes: probability about
    n^2 / 2^65, 3 in a million for n = 10^7): :func:`read_corpus` then warns and reads the file again with a dict of
    the tokens themselves."""


# The low k bytes of a little-endian 8-byte word. A token holds no NUL byte, so a token of at most 8 bytes is its
# own key (zero-padded): exact, no hash.
_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(9)], np.uint64)
# Longer tokens are hashed 8 bytes per vectorised round; beyond this many bytes (rare) one by one.
_VECTOR_HASH_BYTES = 64
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, a bijection of 64-bit words."""
    h = h ^ (h >> np.uint64(30))
    h *= _MIX1
    h ^= h >> np.uint64(27)
    h *= _MIX2
    return h ^ (h >> np.uint64(31))


def _token_keys(buf: np.ndarray, words: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The key of each token (at ``starts`` in ``buf``; ``words[i]`` is the 8 bytes from offset ``i``): its bytes
    if it has at most 8, else a hash of its length and bytes (equal keys are checked byte for byte by the caller)."""
    keys = words[starts] & _LOW_BYTES[np.minimum(lengths, 8)]
    long = np.flatnonzero(lengths > 8)
    if len(long) == 0:
        return keys
    vector = long[lengths[long] <= _VECTOR_HASH_BYTES]
    h = lengths[vector].astype(np.uint64) * _GOLDEN
    for j in range(0, _VECTOR_HASH_BYTES, 8):
        left = lengths[vector] - j
        live = np.flatnonzero(left > 0)
        if len(live) == 0:
            break
        h[live] = _mix(h[live] ^ (words[starts[vector[live]] + j] & _LOW_BYTES[np.minimum(left[live], 8)]))
    keys[vector] = h
    for i in long[lengths[long] > _VECTOR_HASH_BYTES].tolist():
        token = buf[starts[i]: starts[i] + lengths[i]].tobytes()
        keys[i] = int.from_bytes(hashlib.blake2b(token, digest_size=8).digest(), "little")
    return keys


def _check_same(buf_a: np.ndarray, starts_a: np.ndarray, lengths_a: np.ndarray,
                buf_b: np.ndarray, starts_b: np.ndarray, lengths_b: np.ndarray) -> None:
    """Tokens whose keys are equal: raise :class:`HashCollision` unless they are equal byte for byte."""
    if not (np.array_equal(lengths_a, lengths_b)
            and np.array_equal(buf_a[byte_ranges(starts_a, lengths_a)], buf_b[byte_ranges(starts_b, lengths_b)])):
        raise HashCollision


def _same_key(keys: np.ndarray) -> np.ndarray:
    """For each key, the position of one key equal to it (the same for all of them). A hash table in numpy: each
    key is written into its slot (some key wins each slot) and read back; the keys that lost their slot to a
    different key (a few percent: each such key loses with all its copies) are grouped by a sort."""
    table = np.empty(1 << max(4, int(len(keys) - 1).bit_length()), np.int32)
    slot = (_mix(keys) >> np.uint64(64 - table.size.bit_length() + 1)).astype(np.intp)
    positions = np.arange(len(keys), dtype=np.int32)
    table[slot] = positions
    rep = table[slot]
    lost = np.flatnonzero(keys[rep] != keys)
    if len(lost):
        order = lost[np.argsort(keys[lost])]
        starts = np.flatnonzero(np.concatenate([[True], keys[order[1:]] != keys[order[:-1]]]))
        rep[order] = np.repeat(order[starts], np.diff(np.append(starts, len(order))))
    return rep


def index_block(block: bytes, offset: int, path: str) -> BlockIndex:
    """One block of ``data.text_blocks`` tokenised (``data.block_token_text``) and indexed on its own: what a
    reader process does. The tokens are found, keyed and grouped (a hash table in numpy, :func:`_same_key`) as
    numpy arrays, never as Python objects.

    >>> b = index_block(b"b a Bb b a Abcdefghij", 0, "x")
    >>> b.keys[:3].tolist(), b.lengths.tolist(), b.text, b.first.tolist(), b.ids.tolist()
    ([97, 98, 25186], [1, 1, 2, 10], b'abcdefghij', [1, 0, 2, 5], [1, 0, 2, 1, 0, 3])

    Raises:
        CorpusError: the block is not UTF-8.
        HashCollision: two different tokens of the block have the same key.
    """
    clean = data.block_token_text(block, offset, path)
    n = len(clean)
    buf = np.frombuffer(clean + bytes(8), np.uint8)
    words = np.ndarray((n + 1,), "<u8", buffer=buf, strides=(1,))  # unaligned, overlapping: 8 bytes per offset
    in_token = np.zeros(n + 2, bool)
    np.not_equal(buf[:n], 32, out=in_token[1:-1])
    edges = np.flatnonzero(in_token[1:] != in_token[:-1])
    starts, lengths = edges[::2], edges[1::2] - edges[::2]
    if len(starts) == 0:
        return BlockIndex(np.zeros(0, np.uint64), np.zeros(0, np.int64), b"", np.zeros(0, np.int64),
                          np.zeros(0, np.int32))
    keys = _token_keys(buf, words, starts, lengths)
    rep = _same_key(keys)
    # Each group's first token (the smallest position with its representative), the groups in key order.
    first_of = np.full(len(keys), len(keys), np.int64)
    np.minimum.at(first_of, rep, np.arange(len(keys)))
    reps = np.flatnonzero(first_of < len(keys))
    reps = reps[np.argsort(keys[reps])]
    first = first_of[reps]
    group = np.empty(len(keys), np.int32)
    group[reps] = np.arange(len(reps), dtype=np.int32)
    group = group[rep]
    check = np.flatnonzero((lengths > 8) | (lengths[rep] > 8))  # keys that are hashes
    if len(check):
        _check_same(buf, starts[check], lengths[check], buf, starts[rep[check]], lengths[rep[check]])
    long = first[lengths[first] > 8]  # a shorter token's bytes are its key
    text = buf[byte_ranges(starts[long], lengths[long])].tobytes()
    return BlockIndex(keys[reps], lengths[first], text, first, group)


def _with_room(array: np.ndarray, used: int, end: int) -> np.ndarray:
    """``array`` (its first ``used`` entries in use) with room for ``end``: itself if it has it, else a copy at
    least twice as long, so that appending costs amortised constant time per entry."""
    if end <= len(array):
        return array
    return np.concatenate([array[:used], np.zeros(max(end, 2 * len(array)) - used, array.dtype)])


class _TokenTable:
    """The parent's index of the tokens seen so far, by provisional id (order of first appearance): their keys,
    lengths, and the bytes of those longer than 8 (a shorter token's bytes are its key); and the keys sorted, for
    ``np.searchsorted``.

    A block's merge must not cost a copy of the whole table (a corpus with a large vocabulary, read in small
    blocks, would spend its time copying): the arrays by id grow by doubling, and the sorted keys are two runs,
    a large one and one of the keys added since it was last rebuilt, which is merged into it once it holds
    ``_RECENT_KEYS``."""

    _RECENT_KEYS = 1 << 16

    def __init__(self) -> None:
        self.sorted_keys = np.zeros(0, np.uint64)
        self.sorted_ids = np.zeros(0, np.int32)
        self.recent_keys = np.zeros(0, np.uint64)
        self.recent_ids = np.zeros(0, np.int32)
        self._keys = np.zeros(1 << 12, np.uint64)
        self._lengths = np.zeros(1 << 12, np.int64)
        self._starts = np.zeros(1 << 12, np.int64)  # in self.text, of tokens longer than 8 bytes
        self.n = 0
        self.text = np.zeros(1 << 16, np.uint8)
        self.used = 0  # bytes of self.text in use

    def __len__(self) -> int:
        return self.n

    @property
    def keys(self) -> np.ndarray:
        return self._keys[: self.n]

    @property
    def lengths(self) -> np.ndarray:
        return self._lengths[: self.n]

    @property
    def starts(self) -> np.ndarray:
        return self._starts[: self.n]

    def decode(self, ids: np.ndarray) -> list[str]:
        """Tokens ``ids`` as ``str``, all decoded at once (one space between two; a token holds none)."""
        lengths = self.lengths[ids]
        at = np.cumsum(lengths + 1) - (lengths + 1)
        out = np.full(int(lengths.sum()) + len(ids), 32, np.uint8)
        short, long = np.flatnonzero(lengths <= 8), np.flatnonzero(lengths > 8)
        key_bytes = self.keys[ids[short]].astype("<u8").view(np.uint8).reshape(-1, 8)
        out[byte_ranges(at[short], lengths[short])] = key_bytes[np.arange(8) < lengths[short, None]]
        out[byte_ranges(at[long], lengths[long])] = self.text[byte_ranges(self.starts[ids[long]], lengths[long])]
        return out[:-1].tobytes().decode("utf-8").split(" ") if len(ids) else []

    def _lookup(self, keys: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The positions of the sorted ``keys`` already in the table, their ids written into ``ids``."""
        found = []
        for table_keys, table_ids in ((self.sorted_keys, self.sorted_ids), (self.recent_keys, self.recent_ids)):
            if not len(table_keys):
                continue
            pos = np.searchsorted(table_keys, keys)  # both sorted: one merge-like pass
            hit = np.flatnonzero(table_keys[np.minimum(pos, len(table_keys) - 1)] == keys)
            ids[hit] = table_ids[pos[hit]]
            found.append(hit)
        return np.concatenate(found) if found else np.zeros(0, np.int64)

    def _insert_sorted(self, keys: np.ndarray, ids: np.ndarray) -> None:
        """Add the sorted ``keys`` (none in the table yet) with their ``ids`` to the sorted runs."""
        at = np.searchsorted(self.recent_keys, keys)
        self.recent_keys = np.insert(self.recent_keys, at, keys)
        self.recent_ids = np.insert(self.recent_ids, at, ids)
        if len(self.recent_keys) >= self._RECENT_KEYS:
            at = np.searchsorted(self.sorted_keys, self.recent_keys)
            self.sorted_keys = np.insert(self.sorted_keys, at, self.recent_keys)
            self.sorted_ids = np.insert(self.sorted_ids, at, self.recent_ids)
            self.recent_keys, self.recent_ids = self.recent_keys[:0], self.recent_ids[:0]

    def _append(self, keys: np.ndarray, lengths: np.ndarray, starts: np.ndarray) -> None:
        end = self.n + len(keys)
        self._keys, self._lengths, self._starts = (_with_room(a, self.n, end)
                                                   for a in (self._keys, self._lengths, self._starts))
        self._keys[self.n: end], self._lengths[self.n: end], self._starts[self.n: end] = keys, lengths, starts
        self.n = end

    def add(self, block: BlockIndex) -> np.ndarray:
        """The provisional ids of ``block``'s tokens, its new tokens numbered on in their order of first
        appearance: the ids of one pass over the tokens (``data.index_tokens``)."""
        seen = self.n
        ids = np.empty(len(block.keys), np.int32)
        found = self._lookup(block.keys, ids)
        text = np.frombuffer(block.text, np.uint8)
        long = block.lengths > 8
        starts = np.zeros(len(block.keys), np.int64)
        starts[long] = np.cumsum(block.lengths[long]) - block.lengths[long]
        check = found[long[found] | (self.lengths[ids[found]] > 8)]  # keys that are hashes
        if len(check):
            _check_same(text, starts[check], block.lengths[check],
                        self.text, self.starts[ids[check]], self.lengths[ids[check]])
        is_new = np.ones(len(block.keys), bool)
        is_new[found] = False
        by_key = np.flatnonzero(is_new)
        new = by_key[np.argsort(block.first[by_key])]  # in order of first appearance
        ids[new] = np.arange(seen, seen + len(new), dtype=np.int32)
        self._insert_sorted(block.keys[by_key], ids[by_key])
        new_long = new[long[new]]
        new_text = text[byte_ranges(starts[new_long], block.lengths[new_long])]
        self.text = _with_room(self.text, self.used, self.used + len(new_text))
        self.text[self.used: self.used + len(new_text)] = new_text
        new_starts = np.zeros(len(new), np.int64)
        new_starts[long[new]] = self.used + np.cumsum(block.lengths[new_long]) - block.lengths[new_long]
        self.used += len(new_text)
        self._append(block.keys[new], block.lengths[new], new_starts)
        return ids[block.ids]


class _Readers:
    """``processes`` child processes (``python -m examples.word2vec.corpus_ids``, which imports only numpy,
    ``data.py`` and ``ranges.py``) running :func:`index_block` on blocks sent through their pipes; one thread per
    process talks to it, so the pipes never block the main thread, which merges the results in order."""

    def __init__(self, processes: int) -> None:
        paths = [os.path.abspath(p or os.curdir) for p in sys.path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        self.children = [subprocess.Popen([sys.executable, "-m", "examples.word2vec.corpus_ids"], env=env,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                         for _ in range(processes)]
        self.free: queue.Queue = queue.Queue()
        for child in self.children:
            self.free.put(child)
        self.threads = concurrent.futures.ThreadPoolExecutor(processes, thread_name_prefix="corpus-reader")

    def _index(self, block: bytes, offset: int, path: str) -> BlockIndex:
        child = self.free.get()
        try:
            _send(child.stdin, (block, offset, path))
            status, result = _receive(child.stdout)
        except (OSError, EOFError, ValueError) as e:
            raise data.CorpusError(f"a corpus reader process failed while reading {path}: {e}") from None
        finally:
            self.free.put(child)
        if status == "error":
            raise data.CorpusError(result)
        if status == "collision":
            raise HashCollision
        return BlockIndex(*result)

    def map(self, blocks: Iterator[tuple[bytes, int]], path: str) -> Iterator[BlockIndex]:
        """:func:`index_block` of each block, in order, with at most two blocks per process in flight. One block in
        every ``processes + 2`` is indexed by the caller's thread while the processes work on theirs (the caller
        also merges every block, so it takes less than a process's share)."""
        pending: collections.deque = collections.deque()
        local_every = len(self.children) + 2
        for i, (block, offset) in enumerate(blocks):
            if i % local_every == local_every - 1:
                pending.append((block, offset))
            else:
                pending.append(self.threads.submit(self._index, block, offset, path))
            if len(pending) > 2 * len(self.children):
                yield self._result(pending.popleft(), path)
        while pending:
            yield self._result(pending.popleft(), path)

    @staticmethod
    def _result(item: concurrent.futures.Future | tuple[bytes, int], path: str) -> BlockIndex:
        if isinstance(item, tuple):
            return index_block(*item, path)
        return item.result()

    def close(self) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        for child in self.children:
            child.stdin.close()  # the child's loop ends at end of input
        for child in self.children:
            child.wait()
            child.stdout.close()


def _send(stream: IO[bytes], obj: object) -> None:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(payload).to_bytes(8, "little"))
    stream.write(payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the process ended")
    return pickle.loads(stream.read(int.from_bytes(header, "little")))


def _serve() -> None:
    """A reader process: :func:`index_block` on each request until the end of its input."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            block, offset, path = _receive(stdin)
        except EOFError:
            return
        try:
            # A plain tuple: this module is __main__ here, and the parent has no __main__.BlockIndex.
            reply: tuple = ("ok", tuple(index_block(block, offset, path)))
        except data.CorpusError as e:
            reply = ("error", str(e))
        except HashCollision:
            reply = ("collision", None)
        _send(stdout, reply)


def _reader_processes(source: str | os.PathLike[str], processes: int | None) -> int:
    """Reader processes for a corpus file: ``processes``, or by default one per core beyond the first (at most 3:
    the caller's process indexes blocks too, and merges them all) for files of 256 MiB or more, none on one core.
    Below that the file is read in this process: it does ~8M words per CPU second, and a reader process costs
    ~0.2 CPU seconds to start plus the blocks' round trips (~30-50% more CPU in all on a 14M-word file) and gains
    nothing on a machine whose other core is busy (``benchmarks/word2vec_setup.py``)."""
    if processes is not None:
        return processes
    try:
        size = os.path.getsize(source)
    except OSError:
        return 0  # read_corpus reports it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores - 1, 3) if size >= _READER_PROCESS_BYTES else 0


def _index_words(blocks: Iterator[Sequence], provisional: _Provisional) -> list:
    """Pass 1 with a dict of the tokens themselves, block by block: the tokens in order of first appearance."""
    index = data.first_seen_index()
    for tokens in blocks:
        provisional.add(data.index_tokens(index, tokens))
    return list(index)


def _index_file(path: str, provisional: _Provisional, processes: int) -> _TokenTable:
    """Pass 1 of a corpus file: each block's :func:`index_block` (in ``processes`` reader processes, or here),
    merged in order into the provisional ids of one pass over the tokens."""
    table = _TokenTable()
    if processes == 0:
        for block, offset in data.text_blocks(path):
            provisional.add(table.add(index_block(block, offset, path)))
    else:
        readers = _Readers(processes)
        try:
            for block_index in readers.map(data.text_blocks(path), path):
                provisional.add(table.add(block_index))
        finally:
            readers.close()
    if provisional.n == 0:
        raise data.CorpusError(f"corpus file {path} contains no words")
    return table


def read_corpus(source: str | os.PathLike[str] | Sequence[str], min_count: int, max_vocab: int | None, *,
                memory_bytes: int, spill_dir: str, to_file: bool = False, processes: int | None = None) -> CorpusIds:
    """The vocabulary and in-vocabulary ids of ``source`` (a corpus file, read as ``data.read_words`` reads it,
    or a list of words) with ``--min-count`` / ``--max-vocab``, identical to ``data.build_vocabulary``'s.

    The ids stay in memory if they fit in ``memory_bytes`` (4 bytes per token) and ``to_file`` is false; otherwise
    they are in an :class:`IdFile` in ``spill_dir`` (see the module docstring). A file's blocks are tokenised and
    indexed (:func:`index_block`) by ``processes`` reader processes (default: one per core beyond the first, at
    most 3, for files of 256 MiB or more; 0: none) and by this process, which merges them all in order: the same ids
    either way. Should two different tokens longer than 8 bytes share a 64-bit key (:class:`HashCollision`), the
    file is read again with a dict of the tokens (slower, same result), and a ``UserWarning`` says so (the trainer
    prints it as one ``warning:`` line, ``cli.report_warnings``).

    Raises:
        CorpusError: see ``data.token_blocks`` and ``data.rank_vocabulary``; more than 2^31 - 2^26 tokens; the id
            file cannot be written.
    """
    provisional = _Provisional(-1 if to_file else memory_bytes, spill_dir)
    if not isinstance(source, (str, os.PathLike)):
        first_seen: Sequence = _index_words((source[i: i + (1 << 20)] for i in range(0, len(source), 1 << 20)),
                                            provisional)
    else:
        path = os.fspath(source)
        try:
            first_seen = _index_file(path, provisional, _reader_processes(path, processes))
        except HashCollision:
            warnings.warn(f"two different tokens of {path} share a 64-bit key (a hash collision): reading it again "
                          "with the slower exact path (a dict of the tokens; the same result)", stacklevel=2)
            if provisional.file is not None:
                provisional.file.close()
            provisional = _Provisional(-1 if to_file else memory_bytes, spill_dir)
            first_seen = _index_words(data.token_blocks(path, as_bytes=True), provisional)
    counts = provisional.finish(len(first_seen))
    order, counts, remap = data.rank_vocabulary(range(len(first_seen)), counts, min_count, max_vocab)
    if isinstance(first_seen, _TokenTable):
        words = first_seen.decode(np.asarray(order, np.intp))
    else:
        words = [first_seen[i].decode("utf-8") if isinstance(first_seen[i], bytes) else first_seen[i] for i in order]
    del first_seen
    if provisional.file is None:
        ids = provisional.remap_held(remap, int(counts.sum()))
        release_freed_memory()
        return CorpusIds(words, counts, ids, provisional.n)
    ids_file = provisional.file
    ids_file.remap(remap)
    if not to_file and ids_file.nbytes <= memory_bytes:  # out-of-vocabulary tokens made the difference
        in_memory = ids_file.read(0, len(ids_file))
        ids_file.close()
        return CorpusIds(words, counts, in_memory, provisional.n)
    return CorpusIds(words, counts, ids_file, provisional.n)


if __name__ == "__main__":
    _serve()
