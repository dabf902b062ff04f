"""TensorBoard event files: serialized ``Event`` records in TFRecord framing, written in batches.

An event file is a sequence of records, each ``uint64 length``, ``uint32 masked CRC-32C of the length``,
the data, ``uint32 masked CRC-32C of the data`` (little-endian), the first record being an ``Event``
with ``file_version = "brain.Event:2"``. :class:`EventFileWriter` writes such a file from already
serialized events. It is the writing half of :class:`jaxgraph.summary.FileWriter`, which builds the
events.

Why not tensorboardX's writer: it sends every event through a ``multiprocessing`` queue to a worker
thread that checksums it byte by byte in Python: about 0.1-0.4 ms of Python per event. A training loop
that writes the loss of every step (as TF1's tutorials do) spent more time there than in training.
Here :meth:`EventFileWriter.write_events` takes a whole batch (the steps of one ``lax.scan`` call),
checksums it with the CRC-32C that reads TF checkpoints (:mod:`jaxgraph.crc32c`:
Google's C library), and hands the batch to the file in one write. Writes are synchronous, so an error
(a full disk) is raised by the call that caused it.

>>> import tempfile
>>> with EventFileWriter(tempfile.mkdtemp()) as f:
...     f.write_events([b"a serialized Event", b"another"])
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

from jaxgraph import crc32c

__all__ = ["EventFileWriter"]

# The file version TensorBoard needs to order events by SessionLog (not by step).
_FILE_VERSION = "brain.Event:2"
_counter = itertools.count()


def _frame(records: Sequence[bytes]) -> bytes:
    """The records in TFRecord framing (masked CRC-32C of the length and of the data), as one bytes object."""
    header_crcs: dict[int, bytes] = {}  # the records of one call mostly share a few lengths
    parts: list[bytes] = []
    for r in records:
        header = struct.pack("<Q", len(r))
        if len(r) not in header_crcs:
            header_crcs[len(r)] = struct.pack("<I", crc32c.mask(crc32c.value(header)))
        parts += (header, header_crcs[len(r)], r, struct.pack("<I", crc32c.mask(crc32c.value(r))))
    return b"".join(parts)


def _version_event(wall_time: float) -> bytes:
    """``Event(wall_time=..., file_version="brain.Event:2")``, serialized (fields 1 and 3)."""
    version = _FILE_VERSION.encode()
    return b"\x09" + struct.pack("<d", wall_time) + b"\x1a" + bytes([len(version)]) + version


class EventFileWriter:
    """Writes serialized ``Event`` protos to a new event file in ``logdir``.

    Args:
      logdir: the directory (created if missing).
      flush_secs: a background thread flushes (and fsyncs) the file this often while there are
        unflushed events.
      max_queue: at most this many events wait in the process's buffer; more are handed to the
        operating system at once (written, not yet fsynced).
      filename_suffix: appended to the file's name.

    The file is named ``events.out.tfevents.<seconds>.<host>.<pid>.<n><suffix>`` (TF2's pattern) and
    opened exclusively, so two writers never share or clobber a file. The first record is the
    ``file_version`` event TensorBoard needs. :meth:`close` (also on garbage collection and at exit)
    flushes and fsyncs.
    """

    def __init__(self, logdir: str, flush_secs: float = 120, max_queue: int = 10, filename_suffix: str = "") -> None:
        if not flush_secs > 0:
            raise ValueError(f"flush_secs must be positive, got {flush_secs}")
        if int(max_queue) < 0:
            raise ValueError(f"max_queue must not be negative, got {max_queue}")
        self._logdir = str(logdir)
        os.makedirs(self._logdir, exist_ok=True)
        now = time.time()
        name = (f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.{next(_counter)}"
                f"{filename_suffix}")
        self._path = os.path.join(self._logdir, name)
        self._file = open(self._path, "xb")  # noqa: SIM115 - closed by close() or the finalizer
        self._lock = threading.Lock()
        self._max_queue = int(max_queue)
        self._pending = 0  # events in the process's buffer
        self._unsynced = False
        self._error: BaseException | None = None  # from the flushing thread, raised by the next call
        self._closed = threading.Event()
        self._finalizer = weakref.finalize(self, _close_file, self._file, self._lock)
        self.write_events([_version_event(now)])
        self._file.flush()  # the file shows up in TensorBoard with its version record, as TF's does
        self._flusher = threading.Thread(target=_flush_periodically, args=(weakref.ref(self), float(flush_secs),
                                                                           self._closed), daemon=True)
        self._flusher.start()

    @property
    def path(self) -> str:
        """The event file's path."""
        return self._path

    def write_events(self, events: Sequence[bytes]) -> None:
        """Append serialized events, in order, in one write."""
        if not events:
            return
        blob = _frame(events)
        with self._lock:
            self._raise_pending_error()
            if self._closed.is_set():
                raise RuntimeError(f"event file {self._path} is closed")
            self._file.write(blob)
            self._pending += len(events)
            self._unsynced = True
            if self._pending > self._max_queue:
                self._file.flush()
                self._pending = 0

    def flush(self) -> None:
        """Write buffered events to disk (flush and fsync)."""
        with self._lock:
            self._raise_pending_error()
            if not self._closed.is_set():
                self._sync()

    def _sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._pending = 0
        self._unsynced = False

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise OSError(f"writing event file {self._path} failed: {error}") from error

    def close(self) -> None:
        """Flush, fsync and close; further writes raise. Safe to call twice."""
        if self._closed.is_set():
            return
        with self._lock:
            self._closed.set()
            try:
                self._sync()
            finally:
                self._finalizer.detach()
                self._file.close()
        self._flusher.join()
        with self._lock:
            self._raise_pending_error()

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventFileWriter({self._path!r}{', closed' if self._closed.is_set() else ''})"


def _close_file(file, lock: threading.Lock) -> None:
    with lock:
        if not file.closed:
            file.flush()
            file.close()


def _flush_periodically(ref: weakref.ref, every: float, closed: threading.Event) -> None:
    # Holds only a weak reference, so that a writer nobody closed can still be garbage-collected.
    while not closed.wait(every):
        writer = ref()
        if writer is None:
            return
        with writer._lock:
            if closed.is_set():
                return
            if writer._unsynced:
                try:
                    writer._sync()
                except OSError as e:  # raised by the writer's next call
                    writer._error = e
        del writer
