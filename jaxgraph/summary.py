"""Summaries under ``jit``: TF1's ``SUMMARIES`` collection as ordinary step outputs.

``scalar`` and ``histogram`` may be called anywhere inside a loss or step function. Inside a
:func:`record_summaries` block they record their value into a dict (the analogue of TF1's
``SUMMARIES`` collection, scoped to one trace instead of a global graph). The step returns that dict
like any other output, so a compiled step has no host callback: the host receives the values with the
step's other results and hands them to a :class:`FileWriter`, which writes TensorBoard event files
(events built with tensorboardX's protobuf classes, imported only when a writer is made, and written by
:mod:`jaxgraph.event_file`: the steps of one call in one write).

>>> import jax, jax.numpy as jnp
>>> from jaxgraph import summary
>>> @jax.jit
... def step(x):
...     with summary.record_summaries() as summaries:
...         loss = jnp.sum(x ** 2)
...         summary.scalar("loss", loss)
...         summary.histogram("x", x)
...     return loss, summaries
>>> loss, summaries = step(jnp.arange(4.0))
>>> float(summaries["loss"]), summaries["x"].shape  # a histogram is [buckets, 3]
(14.0, (30, 3))

On the host, ``FileWriter(logdir).add_summary(summaries, global_step)`` writes them. A step that runs
``K`` training steps with ``lax.scan`` returns the dict stacked along a leading axis of length ``K``;
``add_summary(stacked, global_step=first_step)`` writes steps ``first_step .. first_step + K - 1``.

Outside any :func:`record_summaries` block:

* with concrete values (no ``jit``) and a default writer (``with writer.as_default(step=...)``, as in
  TF2), the value is written at once at ``step=`` or the default step;
* otherwise the call does nothing. In particular a value being traced is never stored anywhere
  outside a collector, so no tracer can leak out of a ``jit``.

Histograms are reduced on the device to a fixed ``[buckets, 3]`` array of ``(left edge, right edge,
count)`` rows, TensorBoard's own histogram layout (TF2's ``tf.summary.histogram`` computes the same):
the output size does not depend on the input size, so a histogram of an embedding table costs a few
hundred bytes per step to bring back, and ``lax.scan`` can stack it for ``K`` steps. Only finite values
are counted. The sum and sum of squares TensorBoard's v1 histogram record asks for are estimated on
the host from the bucket centres (TensorBoard's histogram and distribution views use only the buckets).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import struct
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.variables import current_name_scope

__all__ = [
    "DEFAULT_BUCKET_COUNT",
    "FileWriter",
    "create_file_writer",
    "get_step",
    "histogram",
    "merge_all",
    "record_summaries",
    "scalar",
    "set_step",
    "write",
]

DEFAULT_BUCKET_COUNT = 30
"""Number of equal-width histogram buckets between the minimum and maximum (TF2's default)."""

_collector: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "jaxgraph_summaries", default=None
)
_default_writer: contextvars.ContextVar[FileWriter | None] = contextvars.ContextVar(
    "jaxgraph_default_summary_writer", default=None
)
_default_step: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "jaxgraph_default_summary_step", default=None
)


# -- recording ------------------------------------------------------------------------------------
@contextlib.contextmanager
def record_summaries() -> Iterator[dict[str, Any]]:
    """Collect the summaries written inside the block into a dict ``{tag: value}``.

    Use it inside the jitted step and return the dict as an ordinary output. Blocks nest; the
    innermost one collects. Repeated tags get TF's ``_1``, ``_2`` suffixes.

    >>> with record_summaries() as s:
    ...     scalar("a", 1.0)
    ...     scalar("a", 2.0)
    >>> sorted(s)
    ['a', 'a_1']
    """
    collected: dict[str, Any] = {}
    token = _collector.set(collected)
    try:
        yield collected
    finally:
        _collector.reset(token)


def merge_all() -> dict[str, Any]:
    """A copy of everything the innermost :func:`record_summaries` block has recorded so far.

    TF1's ``tf.summary.merge_all()``: the summaries a step should return. ``{}`` outside a block.

    >>> with record_summaries():
    ...     scalar("loss", 0.5)
    ...     merged = merge_all()
    >>> list(merged)
    ['loss']
    """
    collected = _collector.get()
    return dict(collected) if collected is not None else {}


def _unique_tag(collected: dict[str, Any], name: str) -> str:
    tag, n = name, 0
    while tag in collected:
        n += 1
        tag = f"{name}_{n}"
    return tag


def _is_traced(value: Any) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def write(tag: str, value: Any, step: Any = None) -> None:
    """Hand an already-prepared summary value (a scalar, or a ``[k, 3]`` histogram) on, under ``tag``
    as given (no name scope is added), like TF2's ``tf.summary.write``.

    Into the innermost collector if there is one; else, when the value is concrete and a default
    writer is set, straight to that writer; else nowhere. ``compute_gradients`` uses this to pass on
    what the differentiated function recorded.

    >>> with record_summaries() as s:
    ...     write("outer/loss", 0.5)
    >>> s
    {'outer/loss': 0.5}
    """
    name = tag
    collected = _collector.get()
    if collected is not None:
        collected[_unique_tag(collected, name)] = value
        return
    writer = _default_writer.get()
    if writer is None or _is_traced(value):
        # Dropping is TF1's behaviour for a summary op nobody fetches; storing a tracer would leak it.
        return
    if step is None:
        step = _default_step.get()
    if step is None:
        raise ValueError(
            f"summary {name!r}: no step given. Pass step=..., or set one with "
            "writer.as_default(step=...) or jaxgraph.summary.set_step(...)."
        )
    writer._write_one(name, np.asarray(jax.device_get(value)), _to_int(step), None)


def _scoped(name: str) -> str:
    # TF1 prefixes a summary's tag with the enclosing name scope.
    scope = current_name_scope()
    return f"{scope}/{name}" if scope else name


def scalar(name: str, value: Any, step: Any = None) -> None:
    """Record a scalar summary (``tf.summary.scalar``); the tag is prefixed by the name scope.

    ``value`` must have shape ``()``. ``step`` is used only when writing directly to a default writer
    (outside any :func:`record_summaries` block, without ``jit``).

    >>> with record_summaries() as s:
    ...     scalar("lr", 0.1)
    >>> round(float(s["lr"]), 3)
    0.1
    """
    value = jnp.asarray(value)
    if value.shape != ():
        raise ValueError(f"summary.scalar({name!r}) needs a scalar value, got shape {value.shape}")
    write(_scoped(name), value, step)


def histogram(name: str, values: Any, step: Any = None, buckets: int = DEFAULT_BUCKET_COUNT) -> None:
    """Record a histogram summary of ``values`` (any shape), ``tf.summary.histogram``.

    The value recorded is a ``[buckets, 3]`` float32 array of ``(left, right, count)`` rows over
    ``buckets`` equal-width buckets between the finite minimum and maximum, computed where ``values``
    live (see the module docstring for why).

    >>> with record_summaries() as s:
    ...     histogram("w", [0.0, 1.0, 1.0, 2.0], buckets=2)
    >>> s["w"].tolist()
    [[0.0, 1.0, 1.0], [1.0, 2.0, 3.0]]
    """
    if int(buckets) < 1:
        raise ValueError(f"summary.histogram({name!r}): buckets must be >= 1, got {buckets}")
    if _collector.get() is None and _default_writer.get() is None:
        return  # nobody would see it: skip the bucketing
    write(_scoped(name), _buckets(jnp.asarray(values), int(buckets)), step)


# Compiled once per shape even when called eagerly (op-by-op it is ~20 dispatches); inlined under jit.
@functools.partial(jax.jit, static_argnums=1)
def _buckets(values: jax.Array, k: int) -> jax.Array:
    data = jnp.ravel(values).astype(jnp.float32)
    if data.size == 0:
        return jnp.zeros((k, 3), jnp.float32)
    finite = jnp.isfinite(data)
    lo = jnp.min(jnp.where(finite, data, jnp.inf))
    hi = jnp.max(jnp.where(finite, data, -jnp.inf))
    any_finite = jnp.any(finite)
    lo = jnp.where(any_finite, lo, 0.0)
    hi = jnp.where(any_finite, hi, 0.0)
    width = hi - lo
    # A single distinct value goes to the last bucket with every edge at that value (TF2's layout).
    safe_width = jnp.where(width > 0, width, 1.0)
    idx = jnp.floor((data - lo) / safe_width * k).astype(jnp.int32)
    idx = jnp.where(width > 0, jnp.clip(idx, 0, k - 1), k - 1)
    # Non-finite values are sent to an extra bucket that is then dropped.
    idx = jnp.where(finite, idx, k)
    counts = jnp.bincount(idx, length=k + 1)[:k].astype(jnp.float32)
    edges = lo + width * (jnp.arange(k + 1, dtype=jnp.float32) / k)
    edges = edges.at[-1].set(hi)
    return jnp.stack([edges[:-1], edges[1:], counts], axis=1)


def _to_int(step: Any) -> int:
    return int(np.asarray(jax.device_get(step)))


def set_step(step: Any | None) -> None:
    """Set the default step for summaries written directly to a default writer (TF2's
    ``tf.summary.experimental.set_step``). ``None`` clears it."""
    _default_step.set(None if step is None else _to_int(step))


def get_step() -> int | None:
    """The default step set by :func:`set_step` or ``FileWriter.as_default(step=...)``, or ``None``."""
    return _default_step.get()


# -- writing --------------------------------------------------------------------------------------
def _import_tensorboardx():
    try:
        import tensorboardX
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "jaxgraph.summary.FileWriter writes TensorBoard event files with tensorboardX, which is not "
            "installed: `pip install tensorboardX` (or `pip install 'jaxgraph[summary]'`)."
        ) from e
    return tensorboardX


def _summary_protos():
    """tensorboardX's generated ``Event`` and ``Summary`` protobuf classes (TensorBoard's own schema)."""
    _import_tensorboardx()
    from tensorboardX.proto import event_pb2, summary_pb2

    return event_pb2, summary_pb2


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 as its 64-bit two's complement (ten bytes)."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _scalar_events(columns: Mapping[str, np.ndarray], first_step: int, walltime: float) -> list[bytes]:
    """One serialized ``Event`` per step of stacked scalar summaries ``{tag: values[steps]}``, encoded
    here: the bytes ``Event(wall_time, step, summary=Summary(value=[Value(tag, simple_value)...]))``
    serializes to (proto3: a zero ``wall_time`` or ``step`` is left out; ``simple_value`` sits in a oneof
    and is always written), at about a tenth of the protobuf classes' cost per event (the tutorial writes
    one event per training step)."""
    wall = struct.pack("<d", walltime)
    head = b"\x09" + wall if wall != bytes(8) else b""
    prefixes, values = [], []
    for tag, column in columns.items():
        name = tag.encode("utf-8")
        value = b"\x0a" + _varint(len(name)) + name + b"\x15"  # tag (1, bytes), simple_value (2, float)
        prefixes.append(b"\x0a" + _varint(len(value) + 4) + value)  # Summary.value (1, message)
        # Through float64 as the protobuf path's float(value), then to the float32 the field holds (beyond
        # float32's range: +-inf, as protobuf's conversion gives).
        with np.errstate(over="ignore"):
            values.append(np.asarray(column, np.float64).astype("<f4").tobytes())
    summary_size = sum(len(p) + 4 for p in prefixes)
    summary_head = b"\x2a" + _varint(summary_size)  # Event.summary (5, message)
    events = []
    for i in range(len(values[0]) // 4 if values else 0):
        step = first_step + i
        body = b"".join(p + v[4 * i : 4 * i + 4] for p, v in zip(prefixes, values, strict=True))
        events.append(head + (b"\x10" + _varint(step) if step else b"") + summary_head + body)
    return events


def _kind(tag: str, arr: np.ndarray) -> tuple[str, bool]:
    """``(kind, stacked)`` from the array's rank: scalars are ``()``, histograms ``[k, 3]``; a leading
    steps axis (from ``lax.scan``) adds one dimension."""
    if arr.ndim == 0:
        return "scalar", False
    if arr.ndim == 1:
        return "scalar", True
    if arr.ndim == 2 and arr.shape[-1] == 3:
        return "histogram", False
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return "histogram", True
    raise ValueError(
        f"summary {tag!r} has shape {arr.shape}: expected a scalar (), a histogram [k, 3], or either "
        "stacked along one leading steps axis"
    )


def _histogram_proto(summary_pb2, table: np.ndarray):
    """TensorBoard's v1 ``HistogramProto`` from a ``[k, 3]`` table of ``(left, right, count)`` rows."""
    table = table.astype(np.float64)
    left, right, counts = table[:, 0], table[:, 1], table[:, 2]
    centres = (left + right) / 2
    return summary_pb2.HistogramProto(
        min=float(left[0]) if len(left) else 0.0,
        max=float(right[-1]) if len(right) else 0.0,
        num=float(counts.sum()),
        sum=float((counts * centres).sum()),
        sum_squares=float((counts * centres**2).sum()),
        bucket_limit=right.tolist(),
        bucket=counts.tolist(),
    )


class FileWriter:
    """Writes summaries to TensorBoard event files in ``logdir`` (``tf.summary.FileWriter``).

    Args:
      logdir: the directory (created if missing).
      flush_secs: how often a background thread flushes the file to disk.
      max_queue: events held in the process before they are handed to the operating system.
      filename_suffix: appended to the event file's name.

    ``add_summary`` takes what a step returns (device arrays are fetched with one ``device_get``):
    a dict for one step, a list of such dicts for consecutive steps, or a dict whose arrays are stacked
    along a leading steps axis (``lax.scan``); ``global_step`` is the step of the first entry. Each step
    becomes one event holding all of that step's values (TF1's merged summary), and the events of one
    call are written to the file together, synchronously: an error (a full disk) is raised by the call.

    >>> import tempfile, jax.numpy as jnp
    >>> with FileWriter(tempfile.mkdtemp()) as writer:
    ...     writer.add_summary({"loss": jnp.array([3.0, 2.0, 1.0])}, global_step=10)  # steps 10, 11, 12
    ...     writer.add_scalar("lr", 0.1, global_step=12)
    """

    def __init__(
        self, logdir: str, flush_secs: int = 120, max_queue: int = 10, filename_suffix: str = ""
    ) -> None:
        from jaxgraph.event_file import EventFileWriter

        self._event_pb2, self._summary_pb2 = _summary_protos()
        self._logdir = str(logdir)
        self._file = EventFileWriter(
            self._logdir, flush_secs=flush_secs, max_queue=max_queue, filename_suffix=filename_suffix
        )
        self._closed = False

    @property
    def logdir(self) -> str:
        return self._logdir

    def get_logdir(self) -> str:
        """TF's name for :attr:`logdir`."""
        return self._logdir

    # -- adding ---------------------------------------------------------------------------------
    def add_summary(
        self,
        summaries: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        global_step: Any = None,
        walltime: float | None = None,
    ) -> None:
        """Write the summaries of one step, of a list of steps, or of a stacked ``lax.scan`` output.

        ``global_step`` (an int or a scalar array) is the step of the first entry; it is required for
        several steps, so that repeated calls never overwrite one another's steps.
        """
        self._check_open()
        host = jax.device_get(summaries)
        if isinstance(host, Mapping):
            self._write(self._dict_events(host, global_step, walltime))
            return
        if not isinstance(host, Sequence) or isinstance(host, (str, bytes)):
            raise TypeError(
                f"add_summary expects a dict of summaries or a list of them, got {type(summaries).__name__}"
            )
        if global_step is None and len(host) > 1:
            raise ValueError("add_summary of several steps needs global_step (the first entry's step)")
        start = None if global_step is None else _to_int(global_step)
        events = []
        for i, entry in enumerate(host):
            if not isinstance(entry, Mapping):
                raise TypeError(f"add_summary: entry {i} is a {type(entry).__name__}, expected a dict")
            step = None if start is None else start + i
            events += self._dict_events(entry, step, walltime, allow_stacked=False)
        self._write(events)

    def _dict_events(
        self, host: Mapping[str, Any], global_step: Any, walltime: float | None, allow_stacked: bool = True
    ) -> list[bytes]:
        """The serialized events of one dict: one event, or one per step of a stacked dict."""
        arrays = {tag: np.asarray(v) for tag, v in host.items()}
        kinds = {tag: _kind(tag, a) for tag, a in arrays.items()}
        stacked = {tag for tag, (_, s) in kinds.items() if s}
        step = None if global_step is None else _to_int(global_step)
        if not stacked:
            return [self._event({tag: (kinds[tag][0], arr) for tag, arr in arrays.items()}, step, walltime)]
        if not allow_stacked or len(stacked) != len(arrays):
            single = sorted(set(arrays) - stacked)
            raise ValueError(
                f"add_summary: summaries {sorted(stacked)} are stacked along a steps axis but "
                f"{single or 'this entry'} are not; pass one step per dict or stack them all"
            )
        lengths = {tag: arrays[tag].shape[0] for tag in stacked}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"add_summary: stacked summaries have different numbers of steps: {lengths}")
        if step is None:
            raise ValueError("add_summary of stacked summaries needs global_step (the first entry's step)")
        walltime = time.time() if walltime is None else walltime
        if all(kind == "scalar" for kind, _ in kinds.values()):
            return _scalar_events(arrays, step, walltime)
        # Scalars go to Python floats in one call per tag, not one numpy scalar per step.
        columns = {tag: arr.astype(np.float64).tolist() if kinds[tag][0] == "scalar" else arr
                   for tag, arr in arrays.items()}
        return [
            self._event({tag: (kinds[tag][0], col[i]) for tag, col in columns.items()}, step + i, walltime)
            for i in range(next(iter(lengths.values())))
        ]

    def _event(self, values: Mapping[str, tuple[str, Any]], step: int | None, walltime: float | None) -> bytes:
        """One serialized ``Event`` holding ``{tag: (kind, value)}`` at ``step``."""
        s = self._summary_pb2
        summary = s.Summary(value=[
            s.Summary.Value(tag=tag, simple_value=float(value)) if kind == "scalar"
            else s.Summary.Value(tag=tag, histo=_histogram_proto(s, np.asarray(value)))
            for tag, (kind, value) in values.items()
        ])
        event = self._event_pb2.Event(wall_time=time.time() if walltime is None else walltime, summary=summary)
        if step is not None:
            event.step = step
        return event.SerializeToString()

    def _write(self, events: list[bytes]) -> None:
        self._file.write_events(events)

    def _write_one(self, tag: str, arr: np.ndarray, step: int | None, walltime: float | None) -> None:
        kind, _ = _kind(tag, arr)
        self._write([self._event({tag: (kind, arr)}, step, walltime)])

    def add_scalar(
        self, tag: str, value: Any, global_step: Any = None, walltime: float | None = None
    ) -> None:
        """Write one scalar now."""
        self._check_open()
        arr = np.asarray(jax.device_get(value))
        if arr.shape != ():
            raise ValueError(f"add_scalar({tag!r}) needs a scalar, got shape {arr.shape}")
        self._write_one(tag, arr, None if global_step is None else _to_int(global_step), walltime)

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: Any = None,
        buckets: int = DEFAULT_BUCKET_COUNT,
        walltime: float | None = None,
    ) -> None:
        """Write a histogram of ``values`` now (bucketed like :func:`histogram`)."""
        self._check_open()
        table = np.asarray(jax.device_get(_buckets(jnp.asarray(values), int(buckets))))
        self._write_one(tag, table, None if global_step is None else _to_int(global_step), walltime)

    # -- default writer -------------------------------------------------------------------------
    @contextlib.contextmanager
    def as_default(self, step: Any = None) -> Iterator[FileWriter]:
        """Make this the writer that eager ``scalar``/``histogram`` calls outside any
        :func:`record_summaries` block write to (TF2's ``writer.as_default(step)``)."""
        w_token = _default_writer.set(self)
        s_token = _default_step.set(_default_step.get() if step is None else _to_int(step))
        try:
            yield self
        finally:
            _default_step.reset(s_token)
            _default_writer.reset(w_token)

    # -- lifecycle ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"FileWriter for {self._logdir!r} is closed")

    def flush(self) -> None:
        """Write buffered events to disk."""
        if not self._closed:
            self._file.flush()

    def close(self) -> None:
        """Flush and close the event file; further writes raise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._file.close()

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileWriter(logdir={self._logdir!r}{', closed' if self._closed else ''})"


def create_file_writer(
    logdir: str, flush_secs: int = 120, max_queue: int = 10, filename_suffix: str = ""
) -> FileWriter:
    """TF2's name for making a :class:`FileWriter`.

    >>> import tempfile
    >>> writer = create_file_writer(tempfile.mkdtemp())
    >>> with writer.as_default(step=3):
    ...     scalar("accuracy", 0.9)  # written at once: no jit, no record_summaries block
    >>> writer.close()
    """
    return FileWriter(logdir, flush_secs=flush_secs, max_queue=max_queue, filename_suffix=filename_suffix)
