"""Snappy decompression (the raw block format), for table blocks TF's writer may compress.

TF's bundle writer stores index blocks uncompressed, but the table format allows Snappy blocks, and
index files are small, so a short pure-Python decoder is enough. Format (google/snappy's
``format_description.txt``): a varint of the uncompressed length, then elements whose tag byte's low
two bits say literal (00) or copy with a 1-, 2- or 4-byte offset (01, 10, 11).

>>> decompress(bytes([6, 0x04]) + b"ab" + bytes([0x01, 0x02]))   # literal "ab", copy 4 from 2 back
b'ababab'
"""

from __future__ import annotations

from jaxgraph.train.tf_checkpoint.wire import WireError, read_varint

__all__ = ["SnappyError", "decompress"]


class SnappyError(ValueError):
    """Bytes that are not a valid Snappy block."""


def decompress(data: bytes) -> bytes:
    try:
        length, pos = read_varint(data, 0)
    except WireError as e:
        raise SnappyError(f"bad length preamble: {e}") from None
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                if pos + extra > n:
                    raise SnappyError("truncated literal length")
                size = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            size += 1
            if pos + size > n:
                raise SnappyError("literal runs past the end of the block")
            out += data[pos : pos + size]
            pos += size
            continue
        if kind == 1:
            size = 4 + ((tag >> 2) & 7)
            width = 1
            offset = (tag >> 5) << 8
        else:
            size = 1 + (tag >> 2)
            width = 2 if kind == 2 else 4
            offset = 0
        if pos + width > n:
            raise SnappyError("truncated copy offset")
        offset |= int.from_bytes(data[pos : pos + width], "little")
        pos += width
        if offset == 0 or offset > len(out):
            raise SnappyError(f"copy offset {offset} outside the {len(out)} bytes written so far")
        start = len(out) - offset
        if offset >= size:
            out += out[start : start + size]
        else:  # overlapping copy: repeats the last `offset` bytes
            for i in range(size):
                out.append(out[start + i])
        if len(out) > length:
            break
    if len(out) != length:
        raise SnappyError(f"decompressed {len(out)} bytes, the preamble says {length}")
    return bytes(out)
