"""Partitioned tensors: the index keys of their slices, and their reassembly into one array.

A partitioned variable (``tf.compat.v1.fixed_size_partitioner``, ``Saver(sharded=True)`` shards...)
is saved as one entry under the full name that lists its slices, plus one entry per slice under a key
made by TF's ``checkpoint::EncodeTensorNameSlice``: the ``OrderedCode`` encoding of the number 0, the
name, the rank, then each dimension's start and length (``-1``: the whole dimension), so slice keys
start with a zero byte and sort before every name. Source: TF's ``saved_tensor_slice_util.cc`` and
``lib/strings/ordered_code.cc``.

>>> encode_slice_key("emb", ((0, 3), (0, -1)))
b'\\x00emb\\x00\\x01\\x01\\x02\\x80\\x83\\x80\\x7f'
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["encode_slice_key", "slice_index", "check_cover"]


def _num_increasing(value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(payload)]) + payload


def _signed_num_increasing(value: int) -> bytes:
    x = ~value if value < 0 else value
    if x < 64:
        return bytes([(0x80 ^ value) & 0xFF])
    length = 2  # n bytes hold [-2**(7n-1), 2**(7n-1))
    while x >= 1 << (7 * length - 1):
        length += 1
    buf = bytearray(value.to_bytes(10, "big", signed=True)[10 - length :])
    # The run of leading bits equal to the sign bit counts the bytes after the first.
    header = (1 << 16) - (1 << (16 - length))  # `length` one-bits from the top of 16
    buf[0] ^= header >> 8
    buf[1] ^= header & 0xFF
    return bytes(buf)


def _string(value: bytes) -> bytes:
    out = bytearray()
    for b in value:  # 0x00 and 0xff are escaped; 0x00 0x01 ends the string
        out += b"\x00\xff" if b == 0 else b"\xff\x00" if b == 0xFF else bytes([b])
    return bytes(out) + b"\x00\x01"


def encode_slice_key(name: str, extents: Sequence[tuple[int, int]]) -> bytes:
    """The index key of the slice ``extents`` (``(start, length)`` per dimension) of tensor ``name``."""
    out = _num_increasing(0) + _string(name.encode("utf-8", "surrogateescape")) + _num_increasing(len(extents))
    for start, length in extents:
        out += _signed_num_increasing(start) + _signed_num_increasing(length)
    return out


def slice_index(extents: Sequence[tuple[int, int]], shape: Sequence[int]) -> tuple[slice, ...]:
    """The numpy index of a slice within the full tensor of ``shape``."""
    return tuple(
        slice(0, dim) if length < 0 else slice(start, start + length)
        for (start, length), dim in zip(extents, shape, strict=True)
    )


def check_cover(slices: Sequence[Sequence[tuple[int, int]]], shape: Sequence[int]) -> str | None:
    """Why ``slices`` do not tile ``shape`` exactly (out of bounds, overlapping, gaps), or ``None``."""
    boxes = []
    for extents in slices:
        if len(extents) != len(shape):
            return f"slice of rank {len(extents)} in a tensor of rank {len(shape)}"
        box = []
        for (start, length), dim in zip(extents, shape, strict=True):
            lo, hi = (0, dim) if length < 0 else (start, start + length)
            if lo < 0 or hi > dim or lo > hi:
                return f"slice {list(extents)} is outside the shape {list(shape)}"
            box.append((lo, hi))
        boxes.append(box)
    for i, a in enumerate(boxes):
        for b in boxes[:i]:
            if all(lo1 < hi2 and lo2 < hi1 for (lo1, hi1), (lo2, hi2) in zip(a, b, strict=True)):
                return f"slices {a} and {b} overlap"
    covered = sum(_volume(box) for box in boxes)
    total = _volume([(0, d) for d in shape])
    if covered != total:
        return f"the slices cover {covered} of the {total} elements"
    return None


def _volume(box: Sequence[tuple[int, int]]) -> int:
    n = 1
    for lo, hi in box:
        n *= hi - lo
    return n
