"""The corpus on the device: whole, or streamed chunk by chunk, as each compiled call needs it.

A call of K steps (``step.py``) reads the corpus from its start position up to ``K * forward + ahead`` tokens on
(``batches.BatchMaker``: a step moves at most ``forward`` tokens and looks ``ahead`` further, and ``back`` behind).
Before each call the training loop asks the feed for that call's ``data`` (:meth:`CorpusFeed.at`), given the
position the previous call reached.

* :class:`CorpusFeed`: the corpus fits (``--max-corpus-memory``): it is on the device whole, once.
* :class:`StreamingFeed`: the ids are in an id file (``corpus_ids.IdFile``); the corpus is cut into chunks of
  ``C`` positions (``--corpus-chunk-tokens``) and the device holds the buffer of the chunk the call starts in:
  the positions ``chunk * C - back .. (chunk + 1) * C + K * forward + ahead`` (so a call never runs off its
  buffer), followed by the corpus's first ``K * forward + ahead`` positions, which a call reads once it wraps
  into the next epoch. ``BatchMaker`` finds a position in it from ``data["corpus_window"]`` (the chunk's first
  position, the epoch that wraps, where the wrapped part starts). While the device trains on one chunk a
  background thread reads the next from the file and copies it to the device, so a call never waits for the disk
  unless a chunk lasts less than reading one. The steps read the same tokens at the same positions as from the
  whole corpus: the result is the same, bit for bit (``tests/test_word2vec_streaming.py``).

:func:`corpus_device_bytes` is the corpus's share of device memory either way (two chunk buffers when streamed:
the one in use and the next).

>>> import numpy as np
>>> from examples.word2vec.batches import BatchMaker
>>> maker = BatchMaker(n_tokens=10_000, window=2, batch_size=96, keep_mean=1.0, seed=0)
>>> corpus_device_bytes(10_000, maker, steps_per_call=8, chunk_tokens=None)   # whole: pad(ids)
40384
>>> corpus_device_bytes(10_000, maker, steps_per_call=8, chunk_tokens=1000)   # two buffers of one chunk each
16704
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from examples.word2vec.batches import BatchMaker
from examples.word2vec.corpus_ids import IdFile

__all__ = ["CorpusFeed", "StreamingFeed", "corpus_device_bytes"]


def corpus_device_bytes(n_tokens: int, batches: BatchMaker, steps_per_call: int, chunk_tokens: int | None) -> int:
    """Bytes of device memory the corpus takes: the padded corpus (``chunk_tokens`` None), or two chunk buffers
    of a :class:`StreamingFeed` with chunks of ``chunk_tokens`` positions."""
    if chunk_tokens is None:
        return 4 * batches.padded_length(n_tokens)
    return 2 * 4 * _buffer_layout(batches, steps_per_call, chunk_tokens)[2]


def _buffer_layout(batches: BatchMaker, steps_per_call: int, chunk_tokens: int) -> tuple[int, int, int]:
    """``(reach, wrap_start, length)`` of a chunk buffer: how far past its start a call reads, where the
    wrapped part starts, and the buffer's length."""
    reach = steps_per_call * batches.forward + batches.ahead
    wrap_start = batches.back + chunk_tokens + reach
    return reach, wrap_start, wrap_start + batches.back + reach


class CorpusFeed:
    """The whole corpus on the device (``batches.pad(ids)``), with the other arrays of ``static`` (already placed
    on the run's devices). Every call gets the same ``data``.

    On one ``device`` the padded corpus is built there in place, a chunk of ``chunk`` ids at a time (the host
    holds no padded copy of the corpus: at 250M tokens that copy was 1 GB more peak memory); on a mesh
    (``device`` None) ``place`` puts the padded copy on every device."""

    def __init__(self, ids: np.ndarray, batches: BatchMaker, place: Callable[[Any], Any], static: dict,
                 device: jax.Device | None = None, chunk: int = 1 << 24) -> None:
        self.n_tokens = len(ids)
        corpus = place(batches.pad(ids)) if device is None else _padded_on_device(ids, batches, device, chunk)
        self.data = {"corpus": corpus, **static}

    def at(self, position: int) -> dict:  # noqa: ARG002 (the streamed feed's signature)
        """The ``data`` of a call starting at ``position`` (``epoch * n_tokens + position in the epoch``)."""
        return self.data

    def describe(self) -> str:
        return "corpus in memory"

    def close(self) -> None:
        pass


def _padded_on_device(ids: np.ndarray, batches: BatchMaker, device: jax.Device, chunk: int) -> jax.Array:
    """``batches.pad(ids)`` on ``device``: zeros, then the ids written in, ``chunk`` at a time, in place."""
    corpus = jnp.zeros(batches.padded_length(len(ids)), jnp.int32, device=device)
    for start in range(0, len(ids), chunk):
        part = jax.device_put(np.asarray(ids[start: start + chunk], np.int32), device)
        corpus = _write_at(corpus, part, jnp.int32(batches.back + start))
        corpus.block_until_ready()  # else the loop runs ahead of the writes, and their parts pile up
    return corpus


@functools.partial(jax.jit, donate_argnums=0)
def _write_at(corpus: jax.Array, part: jax.Array, at: jax.Array) -> jax.Array:
    return jax.lax.dynamic_update_slice(corpus, part, (at,))


class StreamingFeed:
    """The corpus streamed from ``ids`` chunk by chunk (see the module docstring); ``place`` puts a host array on
    the run's devices, ``static`` holds the other arrays of ``data`` (already placed)."""

    def __init__(self, ids: IdFile, batches: BatchMaker, steps_per_call: int, chunk_tokens: int,
                 place: Callable[[Any], Any], static: dict) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be at least 1, got {chunk_tokens}")
        self.ids, self.batches, self.chunk_tokens = ids, batches, chunk_tokens
        self.place, self.static = place, static
        self.n_tokens = len(ids)
        self.chunks = -(-self.n_tokens // chunk_tokens)
        self.reach, self.wrap_start, self.length = _buffer_layout(batches, steps_per_call, chunk_tokens)
        # The corpus's first positions as pad() lays them out: the part of every buffer a wrapped call reads.
        self.wrapped = np.zeros(batches.back + self.reach, np.int32)
        head = ids.read(0, self.reach)
        self.wrapped[batches.back: batches.back + len(head)] = head
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="corpus-feed")
        self.next: tuple[int, concurrent.futures.Future] | None = None
        self.chunk, self.buffer = -1, None
        self.key: tuple[int, int] | None = None
        self.window = None
        self.loads = 0  # chunk buffers built (prefetched or not)
        self.waited = 0  # of which the call had to wait for

    def host_buffer(self, chunk: int) -> np.ndarray:
        """Chunk ``chunk``'s buffer on the host."""
        buffer = np.zeros(self.length, np.int32)
        first = chunk * self.chunk_tokens - self.batches.back
        part = self.ids.read(max(first, 0), first + self.wrap_start)
        at = max(first, 0) - first
        buffer[at: at + len(part)] = part
        buffer[self.wrap_start:] = self.wrapped
        return buffer

    def _load(self, chunk: int) -> Any:
        self.loads += 1
        return self.place(self.host_buffer(chunk))

    def at(self, position: int) -> dict:
        """The ``data`` of a call starting at ``position`` (``epoch * n_tokens + position in the epoch``)."""
        epoch, pos = divmod(position, self.n_tokens)
        chunk = pos // self.chunk_tokens
        if chunk != self.chunk:
            if self.next is not None and self.next[0] == chunk:
                future = self.next[1]
                self.waited += not future.done()
                self.buffer = future.result()
            else:  # the first call, or a jump (a resumed run)
                if self.next is not None:
                    self.next[1].result()
                self.waited += 1
                self.buffer = self._load(chunk)
            self.chunk = chunk
            following = chunk + 1 if chunk + 1 < self.chunks else 0
            self.next = (following, self.executor.submit(self._load, following))
        if self.key != (chunk, epoch):
            self.key = (chunk, epoch)
            self.window = self.place(np.array([chunk * self.chunk_tokens, epoch + 1, self.wrap_start], np.int32))
        return {"corpus": self.buffer, "corpus_window": self.window, **self.static}

    def describe(self) -> str:
        return (f"corpus streamed: {self.chunks:,} chunk(s) of {self.chunk_tokens:,} tokens from an id file in "
                f"{self.ids.directory} ({self.ids.nbytes / 2**20:,.0f} MiB, unlinked), 2 buffers of "
                f"{4 * self.length / 2**20:,.1f} MiB on the device")

    def close(self) -> None:
        """Stop the reader thread; the id file stays open (its owner closes it)."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.next = None
