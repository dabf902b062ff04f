"""TF's immutable sorted table (LevelDB's SSTable format), the ``.index`` file of a checkpoint.

Layout (TF's ``table_format.txt``): data blocks of sorted key/value entries, a metaindex block (empty
in TF's files), an index block whose entries map a key >= every key of a data block to that block's
``BlockHandle`` (varint offset, varint size), and a 48-byte footer: the metaindex and index handles,
zero padding to 40 bytes, then the magic number ``0xdb4775248b80fb57`` (little-endian). Every block
is followed by a 5-byte trailer: a compression byte (0 none, 1 Snappy) and the masked CRC-32C of the
block and that byte. Within a block, each entry stores how many bytes of the previous key it shares,
the rest of its key and its value; every 16th entry (a "restart point") shares nothing, and the
block ends with the restart offsets (uint32 each) and their count.

>>> data = build_table([(b"", b"header"), (b"a", b"1"), (b"ab", b"2")])
>>> read_table(data)
[(b'', b'header'), (b'a', b'1'), (b'ab', b'2')]
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from jaxgraph import crc32c
from jaxgraph.train.tf_checkpoint import snappy
from jaxgraph.train.tf_checkpoint.wire import WireError, encode_varint, read_varint

__all__ = ["TableError", "MAGIC", "FOOTER_SIZE", "has_table_magic", "read_table", "build_table"]

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
_TRAILER_SIZE = 5
_NO_COMPRESSION, _SNAPPY = 0, 1
_BLOCK_SIZE = 262144  # TF's table::Options default
_RESTART_INTERVAL = 16


class TableError(ValueError):
    """The bytes are not a valid table: truncated, corrupt, or not a table at all."""


def has_table_magic(data: bytes) -> bool:
    """Whether ``data`` (a file's contents, or at least its last 8 bytes) ends with the table magic."""
    return len(data) >= 8 and struct.unpack_from("<Q", data, len(data) - 8)[0] == MAGIC


def _read_handle(buf: bytes, pos: int) -> tuple[int, int, int]:
    offset, pos = read_varint(buf, pos)
    size, pos = read_varint(buf, pos)
    return offset, size, pos


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + _TRAILER_SIZE
    if end > len(data) - FOOTER_SIZE:
        raise TableError(f"{what} at offset {offset} (size {size}) runs past the end of the table (truncated?)")
    contents = data[offset : offset + size + 1]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if crc32c.value(contents) != crc32c.unmask(stored):
        raise TableError(f"{what} at offset {offset}: block checksum mismatch (corrupt file)")
    kind = contents[-1]
    if kind == _NO_COMPRESSION:
        return contents[:-1]
    if kind == _SNAPPY:
        try:
            return snappy.decompress(contents[:-1])
        except snappy.SnappyError as e:
            raise TableError(f"{what} at offset {offset}: corrupt Snappy-compressed block: {e}") from None
    raise TableError(f"{what} at offset {offset}: unknown block compression type {kind}")


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise TableError(f"{what}: block too short")
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TableError(f"{what}: bad restart count {num_restarts}")
    entries = []
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        value_size, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_size > limit:
            raise TableError(f"{what}: corrupt entry at offset {pos}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_size]))
        pos += value_size
    return entries


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every ``(key, value)`` of the table in ``data`` (the whole file), in key order.

    Raises :class:`TableError` for a file too short for a footer, a wrong magic number, a block whose
    checksum does not match, or keys out of order.
    """
    if len(data) < FOOTER_SIZE:
        raise TableError(f"file has {len(data)} bytes, fewer than a table footer's {FOOTER_SIZE} (truncated?)")
    if not has_table_magic(data):
        raise TableError("not a table: bad magic number at the end of the file (truncated or not a TF index?)")
    footer = data[len(data) - FOOTER_SIZE :]
    try:
        _, _, pos = _read_handle(footer, 0)  # the metaindex: TF writes it empty and never reads it
        index_offset, index_size, _ = _read_handle(footer, pos)
        index = _block_entries(_read_block(data, index_offset, index_size, "index block"), "index block")
        entries: list[tuple[bytes, bytes]] = []
        for n, (_, handle) in enumerate(index):
            offset, size, _ = _read_handle(handle, 0)
            entries += _block_entries(_read_block(data, offset, size, f"data block {n}"), f"data block {n}")
    except WireError as e:
        raise TableError(f"corrupt table: {e}") from None
    for (a, _), (b, _) in zip(entries, entries[1:], strict=False):
        if not a < b:
            raise TableError(f"corrupt table: keys out of order ({a!r} before {b!r})")
    return entries


class _BlockBuilder:
    def __init__(self, restart_interval: int) -> None:
        self.interval = restart_interval
        self.buf = bytearray()
        self.restarts = [0]
        self.count = 0
        self.last = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < self.interval:
            limit = min(len(key), len(self.last))
            while shared < limit and key[shared] == self.last[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.count = 0
        self.buf += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        self.buf += key[shared:] + value
        self.last = key
        self.count += 1

    def finish(self) -> bytes:
        return bytes(self.buf) + b"".join(struct.pack("<I", r) for r in self.restarts) + struct.pack(
            "<I", len(self.restarts)
        )


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    # TF's (LevelDB's) FindShortestSeparator: a short key in [start, limit).
    n = 0
    while n < min(len(start), len(limit)) and start[n] == limit[n]:
        n += 1
    if n < min(len(start), len(limit)) and start[n] < 0xFF and start[n] + 1 < limit[n]:
        return start[:n] + bytes([start[n] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    # TF's FindShortSuccessor: a short key >= ``key``.
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


def build_table(
    entries: Iterable[tuple[bytes, bytes]], snappy_compress: Callable[[bytes], bytes] | None = None
) -> bytes:
    """A table file holding ``entries`` (keys strictly increasing), byte for byte as TF's
    ``TableBuilder`` writes it (uncompressed, 256 KiB blocks, short index keys).

    ``snappy_compress`` (a Snappy block compressor) stores every block compressed, as TF 1.1 wrote
    index files; TF today, and :mod:`.writer`, write them uncompressed.
    """
    out = bytearray()
    index = _BlockBuilder(restart_interval=1)
    block = _BlockBuilder(_RESTART_INTERVAL)
    pending: bytes | None = None  # the handle of a flushed block, indexed once the next key is known
    last: bytes | None = None

    def write_block(builder: _BlockBuilder) -> bytes:
        contents = builder.finish()
        trailer = bytes([_NO_COMPRESSION])
        if snappy_compress is not None:
            contents, trailer = snappy_compress(contents), bytes([_SNAPPY])
        handle = encode_varint(len(out)) + encode_varint(len(contents))
        out.extend(contents + trailer + struct.pack("<I", crc32c.mask(crc32c.value(contents + trailer))))
        return handle

    for key, value in entries:
        if last is not None:
            if not last < key:
                raise ValueError(f"table keys must be strictly increasing: {last!r} then {key!r}")
            if len(key) + len(value) >= 2 * _BLOCK_SIZE and block.buf:
                pending = write_block(block)
                block = _BlockBuilder(_RESTART_INTERVAL)
        if pending is not None:
            index.add(_shortest_separator(last or b"", key), pending)
            pending = None
        block.add(key, value)
        last = key
        if len(block.buf) + 4 * len(block.restarts) + 4 >= _BLOCK_SIZE:
            pending = write_block(block)
            block = _BlockBuilder(_RESTART_INTERVAL)
    if block.buf:
        pending = write_block(block)
    metaindex = write_block(_BlockBuilder(_RESTART_INTERVAL))
    if pending is not None:
        index.add(_short_successor(last or b""), pending)
    index_handle = write_block(index)
    footer = (metaindex + index_handle).ljust(FOOTER_SIZE - 8, b"\0") + struct.pack("<Q", MAGIC)
    return bytes(out + footer)
