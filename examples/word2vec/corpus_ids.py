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

import collections
import concurrent.futures
import os
import pickle
import queue
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any, NamedTuple

import numpy as np

from examples.word2vec import data

__all__ = ["CorpusIds", "IdFile", "index_block", "read_corpus"]

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


def index_block(block: bytes, offset: int, path: str) -> tuple[list[bytes], np.ndarray]:
    """One block of ``data.text_blocks`` tokenised and indexed on its own: its distinct tokens (UTF-8 bytes) in
    order of first appearance, and its tokens as ids into that list. What a reader process does."""
    index = data.first_seen_index()
    ids = data.index_tokens(index, data.block_tokens(block, offset, path, as_bytes=True))
    return list(index), ids


class _Readers:
    """``processes`` child processes (``python -m examples.word2vec.corpus_ids``, which imports only numpy and
    ``data.py``) running :func:`index_block` on blocks sent through their pipes; one thread per process talks
    to it, so the pipes never block the main thread, which merges the results in order."""

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

    def _index(self, block: bytes, offset: int, path: str) -> tuple[list[bytes], np.ndarray]:
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
        return result

    def map(self, blocks: Iterator[tuple[bytes, int]], path: str) -> Iterator[tuple[list[bytes], np.ndarray]]:
        """:func:`index_block` of each block, in order, with at most two blocks per process in flight."""
        pending: collections.deque = collections.deque()
        for block, offset in blocks:
            pending.append(self.threads.submit(self._index, block, offset, path))
            if len(pending) >= 2 * len(self.children):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

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
            reply: tuple = ("ok", index_block(block, offset, path))
        except data.CorpusError as e:
            reply = ("error", str(e))
        _send(stdout, reply)


def _reader_processes(source: str | os.PathLike[str], processes: int | None) -> int:
    """Reader processes for a corpus file: ``processes``, or by default one per core (at most 4) for files of
    32 MiB or more (below that, starting them costs more than they save), none on one core."""
    if processes is not None:
        return processes
    try:
        size = os.path.getsize(source)
    except OSError:
        return 0  # read_corpus reports it
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cores, 4) if cores > 1 and size >= 32 << 20 else 0


def _index_source(source: str | os.PathLike[str] | Sequence[str], index: dict, provisional: _Provisional,
                  processes: int | None) -> None:
    """Pass 1: every token of ``source`` as a provisional id of ``index``, into ``provisional``."""
    if not isinstance(source, (str, os.PathLike)):
        for start in range(0, len(source), 1 << 20):
            provisional.add(data.index_tokens(index, source[start: start + (1 << 20)]))
        return
    path = os.fspath(source)
    processes = _reader_processes(path, processes)
    if processes == 0:
        for tokens in data.token_blocks(path, as_bytes=True):
            provisional.add(data.index_tokens(index, tokens))
        return
    readers = _Readers(processes)
    try:
        for words, local in readers.map(data.text_blocks(path), path):
            # The block's distinct tokens, in their order of first appearance, after the earlier blocks': the
            # same provisional ids as one pass over the tokens.
            provisional.add(data.index_tokens(index, words)[local])
    finally:
        readers.close()
    if provisional.n == 0:
        raise data.CorpusError(f"corpus file {path} contains no words")


def read_corpus(source: str | os.PathLike[str] | Sequence[str], min_count: int, max_vocab: int | None, *,
                memory_bytes: int, spill_dir: str, to_file: bool = False, processes: int | None = None) -> CorpusIds:
    """The vocabulary and in-vocabulary ids of ``source`` (a corpus file, read as ``data.read_words`` reads it,
    or a list of words) with ``--min-count`` / ``--max-vocab``, identical to ``data.build_vocabulary``'s.

    The ids stay in memory if they fit in ``memory_bytes`` (4 bytes per token) and ``to_file`` is false; otherwise
    they are in an :class:`IdFile` in ``spill_dir`` (see the module docstring). A file's blocks are tokenised by
    ``processes`` reader processes (default: one per core, at most 4, for files of 32 MiB or more; 0: in this
    process), the main process merging their distinct tokens in order: the same ids either way.

    Raises:
        CorpusError: see ``data.token_blocks`` and ``data.rank_vocabulary``; more than 2^31 - 2^26 tokens; the id
            file cannot be written.
    """
    index = data.first_seen_index()
    provisional = _Provisional(-1 if to_file else memory_bytes, spill_dir)
    _index_source(source, index, provisional, processes)
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


if __name__ == "__main__":
    _serve()
