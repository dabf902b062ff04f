"""``CheckpointReader``: TF's checkpoint reader (``tf.train.load_checkpoint``) without TensorFlow.

A TF checkpoint (format V2, a "tensor bundle", written by ``tf.compat.v1.train.Saver``,
``tf.train.Checkpoint`` and Keras) is ``<prefix>.index``, a table (:mod:`.table`) mapping each tensor
name to a ``BundleEntryProto`` (:mod:`.protos`), and ``<prefix>.data-SSSSS-of-NNNNN`` files holding the
raw bytes. Reading is lazy: opening parses only the small index; :meth:`CheckpointReader.get_tensor`
memory-maps the data file and reads that tensor's bytes alone, so one table of a multi-GB checkpoint
costs its own size. Each tensor's CRC-32C is verified against the index before it is returned.

Names are TF's: a TF1 graph's variable names (``embeddings/Variable``, ``beta1_power``,
``<var>/Adam``), or a TF2 object-graph checkpoint's paths
(``model/layer/kernel/.ATTRIBUTES/VARIABLE_VALUE``). Partitioned variables appear once, under their
full name, and are reassembled from their slices.

>>> import tempfile, numpy as np
>>> from jaxgraph.train.tf_checkpoint.writer import write_checkpoint
>>> prefix = tempfile.mkdtemp() + "/model.ckpt"
>>> write_checkpoint(prefix, {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3)})
>>> reader = CheckpointReader(prefix)
>>> reader.get_variable_to_shape_map()
{'w': [2, 3]}
>>> reader.get_tensor("w")[1].tolist()
[3.0, 4.0, 5.0]
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from typing import Any

import numpy as np

from jaxgraph import crc32c
from jaxgraph.train.checkpoint_error import CheckpointCorruptError, CheckpointError
from jaxgraph.train.tf_checkpoint.protos import (
    DT_STRING,
    NUMPY_DTYPES,
    TF_DTYPE_NAMES,
    BundleEntry,
    decode_entry,
    decode_header,
)
from jaxgraph.train.tf_checkpoint.slices import check_cover, encode_slice_key, slice_index
from jaxgraph.train.tf_checkpoint.table import TableError, has_table_magic, read_table
from jaxgraph.train.tf_checkpoint.wire import WireError, read_varint

__all__ = [
    "CheckpointReader", "OBJECT_GRAPH_KEY", "index_file", "data_file", "tf_prefix", "is_tf_checkpoint",
    "checkpoint_files", "saved_model_variables", "not_found_message",
]

#: The key under which TF2's ``tf.train.Checkpoint`` stores its object graph.
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_DATA_FILE = re.compile(r"^(?P<prefix>.*)\.data-\d{5}-of-\d{5}$")
_BUNDLE_VERSION = 1  # TF's kTensorBundleVersion: the newest format version this reader knows


def index_file(prefix: str) -> str:
    return prefix + ".index"


def data_file(prefix: str, shard: int, num_shards: int) -> str:
    """TF's ``DataFilename``: ``<prefix>.data-00000-of-00001``."""
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


def _is_v1_file(path: str) -> bool:
    # A V1 checkpoint is a single table file (no .index next to it).
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 48:
                return False
            f.seek(-8, os.SEEK_END)
            return has_table_magic(f.read(8))
    except OSError:
        return False


def tf_prefix(path: str) -> str | None:
    """The prefix of the TF checkpoint that ``path`` names, or ``None`` if it names none.

    ``path`` may be the prefix (``model.ckpt-200``), its ``.index`` or ``.meta`` file, one of its data
    files, or a V1 checkpoint file (returned as is; reading it raises a clear error).
    """
    if os.path.isfile(index_file(path)):
        return path
    for suffix in (".index", ".meta"):
        if path.endswith(suffix) and os.path.isfile(index_file(path[: -len(suffix)])):
            return path[: -len(suffix)]
    m = _DATA_FILE.match(path)
    if m and os.path.isfile(index_file(m.group("prefix"))):
        return m.group("prefix")
    if os.path.isfile(path) and _is_v1_file(path):
        return path
    return None


def is_tf_checkpoint(prefix: str) -> bool:
    """Whether ``prefix`` (from a ``checkpoint`` state file) is a complete-looking TF checkpoint."""
    return os.path.isfile(index_file(prefix)) or _is_v1_file(prefix)


def checkpoint_files(prefix: str) -> list[str]:
    """The files of the TF checkpoint ``prefix`` that exist: its index, data shards and ``.meta``."""
    dirname = os.path.dirname(prefix) or "."
    base = os.path.basename(prefix)
    try:
        names = os.listdir(dirname)
    except OSError:
        return []
    return sorted(
        os.path.join(dirname, n)
        for n in names
        if n in (base + ".index", base + ".meta") or (n.startswith(base + ".data-") and _DATA_FILE.match(n))
    )


def saved_model_variables(path: str) -> str | None:
    """For a SavedModel directory, the prefix of its variables checkpoint; else ``None``."""
    if os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, n)) for n in ("saved_model.pb", "saved_model.pbtxt")
    ):
        return os.path.join(path, "variables", "variables")
    return None


def not_found_message(prefix: str) -> str:
    """Why ``prefix`` is not a readable TF checkpoint, and what to pass instead."""
    if os.path.isdir(prefix):
        variables = saved_model_variables(prefix)
        if variables is not None:
            return (
                f"{prefix} is a SavedModel directory, not a checkpoint prefix; its variables are the "
                f"checkpoint {variables!r}: pass that prefix"
            )
        return f"{prefix} is a directory; pass a checkpoint prefix such as {prefix}/model.ckpt-1000"
    if os.path.isfile(prefix) and _is_v1_file(prefix):
        return (
            f"{prefix} is a TensorFlow V1 checkpoint (one table file, written by Saver(write_version=V1)); "
            "only the V2 format (<prefix>.index + <prefix>.data-*) is read: re-save it with TensorFlow "
            "as README's 'Moving a TF1 model to jaxgraph' shows"
        )
    return f"TF checkpoint {prefix} does not exist (no file {index_file(prefix)})"


class CheckpointReader:
    """Reads the TF checkpoint at ``prefix`` lazily; every failure is a :class:`CheckpointError`.

    ``get_tensor`` returns a numpy array (0-d for scalars; ``object`` arrays of ``bytes`` for strings;
    ``ml_dtypes.bfloat16`` for bfloat16). An unpartitioned little-endian tensor is a read-only view of
    the memory-mapped data file: copy it (``np.array(t)``) to modify it. Use as a context manager or
    call :meth:`close` to drop the mappings (arrays already returned keep theirs alive).
    """

    def __init__(self, prefix: str) -> None:
        prefix = os.fspath(prefix)
        found = tf_prefix(prefix)
        if found is not None and not os.path.isfile(index_file(found)):
            raise CheckpointCorruptError(not_found_message(found))
        if found is None:
            raise CheckpointCorruptError(not_found_message(prefix))
        self.prefix = found
        self._maps: dict[int, Any] = {}
        filename = index_file(found)
        with open(filename, "rb") as f:
            data = f.read()
        try:
            rows = read_table(data)
            if not rows or rows[0][0] != b"":
                raise CheckpointCorruptError(
                    f"{filename} has no header entry (key ''); it is not a TF checkpoint index"
                )
            header = decode_header(rows[0][1])
            entries = [(key, decode_entry(value)) for key, value in rows[1:]]
        except (TableError, WireError) as e:
            raise CheckpointCorruptError(f"TF checkpoint index {filename} is corrupt or truncated: {e}") from None
        if header.min_consumer > _BUNDLE_VERSION or _BUNDLE_VERSION in header.bad_consumers:
            raise CheckpointCorruptError(
                f"{filename} needs a reader of bundle format version >= {header.min_consumer} "
                f"(this one reads version {_BUNDLE_VERSION}); it was written by a newer TensorFlow"
            )
        if header.num_shards < 1:
            raise CheckpointCorruptError(f"{filename} is corrupt: its header says {header.num_shards} data shards")
        self._header = header
        self._entries: dict[str, BundleEntry] = {}
        by_key = dict(entries)
        slice_keys: set[bytes] = set()
        for key, entry in entries:
            for extents in entry.slices:
                slice_keys.add(encode_slice_key(key.decode("utf-8", "surrogateescape"), extents))
        for key, entry in entries:
            if key not in slice_keys:
                self._entries[key.decode("utf-8", "surrogateescape")] = entry
        self._slice_entries = {k: by_key[k] for k in slice_keys if k in by_key}
        missing_slices = sorted(slice_keys - set(by_key))
        if missing_slices:
            raise CheckpointCorruptError(
                f"TF checkpoint index {filename} is corrupt: slice entries {missing_slices} are missing"
            )
        self._check_data_files()

    # -- files ------------------------------------------------------------------------------------
    def _check_data_files(self) -> None:
        n = self._header.num_shards
        needed: dict[int, int] = {}
        for entry in list(self._entries.values()) + list(self._slice_entries.values()):
            if entry.slices:
                continue
            if not 0 <= entry.shard_id < n:
                raise CheckpointCorruptError(
                    f"TF checkpoint {self.prefix} is corrupt: an entry names data shard {entry.shard_id} of {n}"
                )
            needed[entry.shard_id] = max(needed.get(entry.shard_id, 0), entry.offset + entry.size)
        missing = [data_file(self.prefix, s, n) for s in range(n) if not os.path.isfile(data_file(self.prefix, s, n))]
        if missing:
            raise CheckpointCorruptError(
                f"TF checkpoint {self.prefix} is incomplete: data files {missing} are missing "
                f"(it has {n} shards; copy every {os.path.basename(self.prefix)}.data-* file)"
            )
        for shard, end in needed.items():
            name = data_file(self.prefix, shard, n)
            size = os.path.getsize(name)
            if size < end:
                raise CheckpointCorruptError(
                    f"TF checkpoint data file {name} is truncated: {size} bytes, the index needs {end}"
                )

    def _shard(self, shard: int) -> Any:
        if shard not in self._maps:
            with open(data_file(self.prefix, shard, self._header.num_shards), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                self._maps[shard] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        return self._maps[shard]

    def close(self) -> None:
        self._maps.clear()  # arrays returned earlier hold their own reference to their mapping

    def __enter__(self) -> CheckpointReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- TF's reader API ----------------------------------------------------------------------------
    def get_variable_to_shape_map(self) -> dict[str, list[int]]:
        """``{name: shape as a list}`` of every tensor (partitioned ones under their full name)."""
        return {name: list(e.shape) for name, e in self._entries.items()}

    def get_variable_to_dtype_map(self) -> dict[str, np.dtype | None]:
        """``{name: numpy dtype}``; ``object`` for strings, ``None`` for a dtype this reader does not
        decode (``DT_VARIANT``, ``DT_RESOURCE``, quantized...: :meth:`tf_dtype_name` names it)."""
        return {name: NUMPY_DTYPES.get(e.dtype) for name, e in self._entries.items()}

    def has_tensor(self, name: str) -> bool:
        return name in self._entries

    def tf_dtype_name(self, name: str) -> str:
        """TF's name of the tensor's dtype (``"DT_FLOAT"``), including dtypes not decoded here."""
        code = self._entry(name).dtype
        return TF_DTYPE_NAMES.get(code, f"DataType {code}")

    def _entry(self, name: str) -> BundleEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise CheckpointError(f"Key {name} not found in checkpoint {self.prefix}") from None

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor ``name``, CRC-checked (see the class docstring for what is returned)."""
        entry = self._entry(name)
        if entry.dtype not in NUMPY_DTYPES:
            raise CheckpointError(
                f"Tensor {name!r} in {self.prefix} has dtype {self.tf_dtype_name(name)}, which jaxgraph "
                f"does not read (it reads {sorted(TF_DTYPE_NAMES[d] for d in NUMPY_DTYPES)})"
            )
        if entry.unknown_rank or any(d < 0 for d in entry.shape):
            raise CheckpointError(f"Tensor {name!r} in {self.prefix} has an invalid shape {entry.shape}")
        if not entry.slices:
            return self._read(name, entry)
        problem = check_cover(entry.slices, entry.shape)
        if problem is not None:
            raise CheckpointCorruptError(f"Partitioned tensor {name!r} in {self.prefix} is corrupt: {problem}")
        out = np.empty(entry.shape, NUMPY_DTYPES[entry.dtype])
        for extents in entry.slices:
            part = self._slice_entries[encode_slice_key(name, extents)]
            index = slice_index(extents, entry.shape)
            if part.dtype != entry.dtype or part.slices:
                raise CheckpointCorruptError(
                    f"Partitioned tensor {name!r} in {self.prefix}: slice {extents} is corrupt"
                )
            out[index] = self._read(f"{name} slice {list(extents)}", part)
        return out

    def _read(self, what: str, entry: BundleEntry) -> np.ndarray:
        dtype = NUMPY_DTYPES[entry.dtype]
        count = int(np.prod(entry.shape, dtype=np.int64))
        buf = self._shard(entry.shard_id)
        view = memoryview(buf)[entry.offset : entry.offset + entry.size]
        where = f"{what!r} in {data_file(self.prefix, entry.shard_id, self._header.num_shards)}"
        if entry.dtype == DT_STRING:
            return self._read_strings(view, count, where, entry).reshape(entry.shape)
        if entry.size != count * dtype.itemsize:
            raise CheckpointCorruptError(
                f"Tensor {where} is corrupt: the index says {entry.size} bytes, its shape {list(entry.shape)} "
                f"and dtype {dtype.name} need {count * dtype.itemsize}"
            )
        arr = np.frombuffer(buf, np.uint8, entry.size, entry.offset) if entry.size else np.zeros(0, np.uint8)
        self._verify(crc32c.value(arr), entry, where)
        if self._header.big_endian and dtype.itemsize > 1:
            # TF's checksum covers the bytes as stored; swap after checking it.
            swapped = dtype.newbyteorder(">") if dtype.kind != "c" else np.dtype(f">c{dtype.itemsize}")
            return arr.view(swapped).astype(dtype).reshape(entry.shape)
        return arr.view(dtype).reshape(entry.shape)

    def _verify(self, actual: int, entry: BundleEntry, where: str) -> None:
        if actual != crc32c.unmask(entry.crc32c):
            raise CheckpointCorruptError(
                f"Tensor {where} is corrupt: its CRC-32C is {actual:08x}, the index recorded "
                f"{crc32c.unmask(entry.crc32c):08x} ({entry.size} bytes at offset {entry.offset})"
            )

    def _read_strings(self, view: memoryview, count: int, where: str, entry: BundleEntry) -> np.ndarray:
        # [varint64 length] * count, [masked crc32c of the lengths as uint32 (uint64 if larger)], bytes.
        # The tensor's checksum covers the lengths (in that fixed-width form), the length checksum's
        # stored bytes and the string bytes (TF's WriteStringTensor / ReadStringTensor).
        order = ">" if self._header.big_endian else "<"
        if entry.size == 0 and count == 0:
            return np.empty(0, dtype=object)
        try:
            lengths, pos = [], 0
            for _ in range(count):
                n, pos = read_varint(view, pos)
                lengths.append(n)
            fixed = b"".join(
                struct.pack(order + ("I" if n <= 0xFFFFFFFF else "Q"), n) for n in lengths
            )
            crc = crc32c.value(fixed)
            if pos + 4 > len(view):
                raise WireError("missing the length checksum")
            (stored,) = struct.unpack_from(order + "I", view, pos)
            if crc32c.unmask(stored) != crc:
                raise CheckpointCorruptError(f"Tensor {where} is corrupt: the string lengths' checksum does not match")
            crc = crc32c.extend(crc, view[pos : pos + 4])
            pos += 4
            if pos + sum(lengths) != len(view):
                raise WireError(f"{pos + sum(lengths)} bytes of lengths and strings, the index says {len(view)}")
        except WireError as e:
            raise CheckpointCorruptError(f"Tensor {where} is corrupt: {e}") from None
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = bytes(view[pos : pos + n])
            pos += n
        crc = crc32c.extend(crc, view[pos - sum(lengths) : pos])
        self._verify(crc, entry, where)
        return out
