"""The protobuf wire format, by hand: the few messages of a checkpoint need no ``protobuf`` package.

A message is a sequence of ``(field number << 3 | wire type)`` varint tags, each followed by a varint
(type 0), 8 bytes (1), a varint length and that many bytes (2: strings and nested messages) or 4 bytes
(5). Unknown fields are skipped, as protobuf does, so newer writers' extra fields are harmless.

>>> msg = field_varint(1, 150) + field_bytes(2, b"hi")
>>> [(f, v) for f, _, v in iter_fields(msg)]
[(1, 150), (2, b'hi')]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "WireError", "read_varint", "encode_varint", "iter_fields", "to_int64",
    "field_varint", "field_bytes", "field_fixed32",
]


class WireError(ValueError):
    """Bytes that are not a well-formed protobuf message (truncated or corrupt)."""


def read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """``(value, next position)`` of the base-128 varint at ``pos``."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint longer than 10 bytes")


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields: two's complement, ten bytes
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def to_int64(value: int) -> int:
    """A varint read as an ``int64`` field (negative values are ten-byte two's complement)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` for each field: ints for types 0, 1, 5; bytes for 2."""
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        field, wire_type = tag >> 3, tag & 7
        value: int | bytes
        if wire_type == 0:
            value, pos = read_varint(buf, pos)
        elif wire_type == 1:
            if pos + 8 > len(buf):
                raise WireError("truncated fixed64 field")
            (value,) = struct.unpack_from("<Q", buf, pos)
            pos += 8
        elif wire_type == 2:
            size, pos = read_varint(buf, pos)
            if pos + size > len(buf):
                raise WireError(f"field {field} runs past the end of the message")
            value = bytes(buf[pos : pos + size])
            pos += size
        elif wire_type == 5:
            if pos + 4 > len(buf):
                raise WireError("truncated fixed32 field")
            (value,) = struct.unpack_from("<I", buf, pos)
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire_type} (field {field})")
        if field == 0:
            raise WireError("field number 0")
        yield field, wire_type, value


def field_varint(field: int, value: int) -> bytes:
    return encode_varint(field << 3) + encode_varint(value)


def field_bytes(field: int, value: bytes) -> bytes:
    return encode_varint(field << 3 | 2) + encode_varint(len(value)) + value


def field_fixed32(field: int, value: int) -> bytes:
    return encode_varint(field << 3 | 5) + struct.pack("<I", value)
