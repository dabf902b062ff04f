"""``write_checkpoint``: a TF checkpoint (format V2) that ``tf.train.load_checkpoint`` and
``tf.compat.v1.train.Saver.restore`` read, written without TensorFlow.

One data file (``<prefix>.data-00000-of-00001``, the tensors' little-endian bytes in key order, as TF's
``BundleWriter`` lays them out) and the index (``<prefix>.index``, byte for byte what TF writes for
the same tensors). The data file is written first and the index last, each through ``write_file``
(by default straight to disk; the :class:`~jaxgraph.train.Saver` passes its atomic writer), so a
reader never sees an index whose data is incomplete.

>>> import tempfile, numpy as np
>>> from jaxgraph.train.tf_checkpoint.reader import CheckpointReader
>>> prefix = tempfile.mkdtemp() + "/model.ckpt"
>>> write_checkpoint(prefix, {"global_step": np.int64(7), "names": np.array([b"a", b"bc"], dtype=object)})
>>> int(CheckpointReader(prefix).get_tensor("global_step"))
7
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import IO, Any

import numpy as np

from jaxgraph import crc32c
from jaxgraph.train.tf_checkpoint.protos import (
    DT_STRING,
    NUMPY_DTYPES,
    BundleEntry,
    BundleHeader,
    encode_entry,
    encode_header,
    tf_dtype_of,
)
from jaxgraph.train.tf_checkpoint.reader import data_file, index_file
from jaxgraph.train.tf_checkpoint.table import build_table
from jaxgraph.train.tf_checkpoint.wire import encode_varint

__all__ = ["write_checkpoint"]

WriteFile = Callable[[str, Callable[[IO[bytes]], object]], None]


def _plain_write(filename: str, write: Callable[[IO[bytes]], object]) -> None:
    with open(filename, "wb") as f:
        write(f)


def _string_tensor(arr: np.ndarray) -> tuple[bytes, int]:
    items = [x.encode("utf-8") if isinstance(x, str) else bytes(x) for x in arr.reshape(-1)]
    lengths = b"".join(encode_varint(len(x)) for x in items)
    crc = crc32c.value(b"".join(struct.pack("<I" if len(x) <= 0xFFFFFFFF else "<Q", len(x)) for x in items))
    length_checksum = struct.pack("<I", crc32c.mask(crc))
    body = b"".join(items)
    crc = crc32c.extend(crc32c.extend(crc, length_checksum), body)
    return lengths + length_checksum + body, crc


def _little_endian(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr


def write_checkpoint(prefix: str, tensors: Mapping[str, Any], write_file: WriteFile | None = None) -> None:
    """Write ``tensors`` (``{TF name: array-like}``) as the TF checkpoint ``prefix``.

    Dtypes: every one :class:`~jaxgraph.train.tf_checkpoint.reader.CheckpointReader` reads (float16,
    bfloat16, float32/64, complex, int8-64, uint8-64, bool) and strings (``bytes``/``str`` elements
    of an object array). ``write_file(filename, write)`` must call ``write(file_object)``; pass an
    atomic writer for crash safety. No ``.meta`` (MetaGraph) file is written: restore into a graph
    built by code, as ``Saver.restore`` does.
    """
    arrays: dict[bytes, np.ndarray] = {}
    for name, value in tensors.items():
        if not name:
            raise ValueError("A TF checkpoint cannot hold a tensor named '' (the key of its header)")
        arr = np.asarray(value)
        if arr.dtype.kind in "SU":
            arr = arr.astype(object)
        tf_dtype_of(arr.dtype)  # fails early, naming the dtype
        arrays[name.encode("utf-8", "surrogateescape")] = arr
    write = write_file or _plain_write
    entries: list[tuple[bytes, bytes]] = []

    def write_data(f: IO[bytes]) -> None:
        offset = 0
        for key in sorted(arrays):
            arr = arrays[key]
            dtype = tf_dtype_of(arr.dtype)
            if dtype == DT_STRING:
                data, crc = _string_tensor(arr)
                f.write(data)
                size = len(data)
            else:
                data_arr = _little_endian(arr.astype(NUMPY_DTYPES[dtype], copy=False))
                raw = data_arr.reshape(-1).view(np.uint8)
                f.write(raw.data)
                size, crc = raw.size, crc32c.value(raw)
            entry = BundleEntry(dtype, tuple(arr.shape), 0, offset, size, crc32c.mask(crc))
            entries.append((key, encode_entry(entry)))
            offset += size

    write(data_file(prefix, 0, 1), write_data)
    header = encode_header(BundleHeader(num_shards=1, big_endian=False))
    index = build_table([(b"", header)] + entries)
    write(index_file(prefix), lambda f: f.write(index))
