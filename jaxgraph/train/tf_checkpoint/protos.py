"""The messages of a TF checkpoint index, decoded and encoded by hand (``wire``), and TF's dtypes.

``BundleHeaderProto`` (key ``""``): ``num_shards`` (1), ``endianness`` (2: LITTLE=0, BIG=1),
``version`` (3: a ``VersionDef`` of ``producer`` 1, ``min_consumer`` 2, ``bad_consumers`` 3).
``BundleEntryProto`` (every other key): ``dtype`` (1, TF's ``DataType`` enum), ``shape`` (2, a
``TensorShapeProto``: repeated ``dim`` 2 of ``size`` 1; ``unknown_rank`` 3), ``shard_id`` (3),
``offset`` (4), ``size`` (5), ``crc32c`` (6, fixed32, masked) and ``slices`` (7, repeated
``TensorSliceProto``: repeated ``extent`` 1 of ``start`` 1 and ``length`` 2, no length = the whole
dimension). Sources: ``tensor_bundle.proto``, ``tensor_shape.proto``, ``tensor_slice.proto``,
``versions.proto`` and ``types.proto`` in TensorFlow.

>>> entry = BundleEntry(dtype=1, shape=(2, 3), shard_id=0, offset=0, size=24, crc32c=7)
>>> decode_entry(encode_entry(entry)) == entry
True
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np

from jaxgraph.train.tf_checkpoint.wire import field_bytes, field_fixed32, field_varint, iter_fields, to_int64

__all__ = [
    "Extent", "BundleHeader", "BundleEntry", "decode_header", "encode_header", "decode_entry",
    "encode_entry", "DT_STRING", "NUMPY_DTYPES", "TF_DTYPE_NAMES", "tf_dtype_of",
]

#: ``(start, length)`` of one dimension of a slice; ``length == -1`` means the whole dimension.
Extent = tuple[int, int]

DT_STRING = 7
#: TF ``DataType`` enum -> numpy dtype, for every dtype this reader decodes (strings: object arrays).
NUMPY_DTYPES: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.float64),
    3: np.dtype(np.int32),
    4: np.dtype(np.uint8),
    5: np.dtype(np.int16),
    6: np.dtype(np.int8),
    DT_STRING: np.dtype(object),
    8: np.dtype(np.complex64),
    9: np.dtype(np.int64),
    10: np.dtype(np.bool_),
    14: np.dtype(ml_dtypes.bfloat16),
    17: np.dtype(np.uint16),
    18: np.dtype(np.complex128),
    19: np.dtype(np.float16),
    22: np.dtype(np.uint32),
    23: np.dtype(np.uint64),
}
#: TF's names of every ``DataType`` value, for error messages about the ones not read.
TF_DTYPE_NAMES: dict[int, str] = {
    0: "DT_INVALID", 1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16",
    6: "DT_INT8", 7: "DT_STRING", 8: "DT_COMPLEX64", 9: "DT_INT64", 10: "DT_BOOL", 11: "DT_QINT8",
    12: "DT_QUINT8", 13: "DT_QINT32", 14: "DT_BFLOAT16", 15: "DT_QINT16", 16: "DT_QUINT16",
    17: "DT_UINT16", 18: "DT_COMPLEX128", 19: "DT_HALF", 20: "DT_RESOURCE", 21: "DT_VARIANT",
    22: "DT_UINT32", 23: "DT_UINT64", 24: "DT_FLOAT8_E5M2", 25: "DT_FLOAT8_E4M3FN",
    26: "DT_FLOAT8_E4M3FNUZ", 27: "DT_FLOAT8_E4M3B11FNUZ", 28: "DT_FLOAT8_E5M2FNUZ", 29: "DT_INT4",
    30: "DT_UINT4", 31: "DT_INT2", 32: "DT_UINT2",
}


def tf_dtype_of(dtype: np.dtype) -> int:
    """TF's ``DataType`` enum value for a numpy dtype (``object`` and bytes/str: ``DT_STRING``)."""
    dtype = np.dtype(dtype)
    if not dtype.isnative:
        dtype = dtype.newbyteorder()
    if dtype.kind in "OSU":
        return DT_STRING
    for enum, candidate in NUMPY_DTYPES.items():
        if candidate == dtype and enum != DT_STRING:
            return enum
    raise ValueError(f"dtype {dtype} has no TensorFlow checkpoint equivalent")


@dataclasses.dataclass(frozen=True)
class BundleHeader:
    num_shards: int
    big_endian: bool
    producer: int = 1
    min_consumer: int = 0
    bad_consumers: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class BundleEntry:
    dtype: int
    shape: tuple[int, ...]
    shard_id: int = 0
    offset: int = 0
    size: int = 0
    crc32c: int = 0
    slices: tuple[tuple[Extent, ...], ...] = ()
    unknown_rank: bool = False


def decode_header(buf: bytes) -> BundleHeader:
    num_shards, endianness, producer, min_consumer = 0, 0, 0, 0
    bad: list[int] = []
    for field, _, value in iter_fields(buf):
        if field == 1:
            num_shards = to_int64(int(value))
        elif field == 2:
            endianness = int(value)
        elif field == 3:
            assert isinstance(value, bytes)
            for vfield, _, v in iter_fields(value):
                if vfield == 1:
                    producer = to_int64(int(v))
                elif vfield == 2:
                    min_consumer = to_int64(int(v))
                elif vfield == 3:
                    bad.append(to_int64(int(v)))
    return BundleHeader(num_shards, endianness == 1, producer, min_consumer, tuple(bad))


def encode_header(header: BundleHeader) -> bytes:
    version = field_varint(1, header.producer) if header.producer else b""
    version += field_varint(2, header.min_consumer) if header.min_consumer else b""
    out = field_varint(1, header.num_shards) if header.num_shards else b""
    out += field_varint(2, 1) if header.big_endian else b""
    return out + field_bytes(3, version)


def _decode_shape(buf: bytes) -> tuple[tuple[int, ...], bool]:
    dims, unknown_rank = [], False
    for field, _, value in iter_fields(buf):
        if field == 2:
            assert isinstance(value, bytes)
            size = 0
            for dfield, _, v in iter_fields(value):
                if dfield == 1:
                    size = to_int64(int(v))
            dims.append(size)
        elif field == 3:
            unknown_rank = bool(value)
    return tuple(dims), unknown_rank


def _decode_slice(buf: bytes) -> tuple[Extent, ...]:
    extents = []
    for field, _, value in iter_fields(buf):
        if field == 1:
            assert isinstance(value, bytes)
            start, length = 0, -1
            for efield, _, v in iter_fields(value):
                if efield == 1:
                    start = to_int64(int(v))
                elif efield == 2:
                    length = to_int64(int(v))
            extents.append((start, length))
    return tuple(extents)


def decode_entry(buf: bytes) -> BundleEntry:
    fields: dict[str, object] = {}
    slices = []
    for field, wire_type, value in iter_fields(buf):
        if field == 1 and wire_type == 0:
            fields["dtype"] = int(value)
        elif field == 2 and isinstance(value, bytes):
            fields["shape"], fields["unknown_rank"] = _decode_shape(value)
        elif field in (3, 4, 5) and wire_type == 0:
            fields[("shard_id", "offset", "size")[field - 3]] = to_int64(int(value))
        elif field == 6 and wire_type == 5:
            fields["crc32c"] = int(value)
        elif field == 7 and isinstance(value, bytes):
            slices.append(_decode_slice(value))
    fields.setdefault("dtype", 0)
    fields.setdefault("shape", ())
    return BundleEntry(slices=tuple(slices), **fields)  # type: ignore[arg-type]


def encode_entry(entry: BundleEntry) -> bytes:
    shape = b"".join(field_bytes(2, field_varint(1, d) if d else b"") for d in entry.shape)
    out = field_varint(1, entry.dtype) + field_bytes(2, shape)
    out += field_varint(3, entry.shard_id) if entry.shard_id else b""
    out += field_varint(4, entry.offset) if entry.offset else b""
    out += field_varint(5, entry.size) if entry.size else b""
    out += field_fixed32(6, entry.crc32c) if entry.crc32c else b""
    for extents in entry.slices:
        out += field_bytes(7, b"".join(
            field_bytes(1, (field_varint(1, s) if s else b"") + (field_varint(2, n) if n >= 0 else b""))
            for s, n in extents
        ))
    return out
