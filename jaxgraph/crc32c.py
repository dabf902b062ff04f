"""CRC-32C (Castagnoli), as TF checksums checkpoints, table blocks and event records: no C extension needed.

TF stores ``mask(crc32c(bytes))``; :func:`mask` / :func:`unmask` are its ``crc32c::Mask`` /
``Unmask`` (a rotation plus a constant, so a CRC of data holding CRCs does not degenerate).

Two implementations, the same results: Google's C library through the ``google-crc32c`` package
(a dependency: several GB/s, hardware CRC instructions where the CPU has them), used when it is
installed with its C extension; else numpy (:func:`extend_numpy`, always available): the data is cut
into 4,096 equal lanes whose CRCs advance together, 8 bytes a step, through 16-bit lookup tables, then
the lane CRCs are joined with the "append n zero bytes" operator of the CRC (a linear map, precomputed
per length): 80-250 MB/s on one CPU core of this project's machine, about a tenth of TF's reader
(``benchmarks/tf_checkpoint_read.py``). The stdlib's ``zlib.crc32`` is another polynomial.

>>> hex(value(b"123456789"))   # the CRC-32C check value
'0xe3069283'
>>> unmask(mask(0x1234)) == 0x1234
True
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["BACKEND", "value", "extend", "extend_numpy", "mask", "unmask"]

try:
    import google_crc32c as _google_crc32c

    _FAST = _google_crc32c.implementation == "c"  # its pure-Python fallback is far slower than numpy
except ImportError:
    _FAST = False
#: Which implementation :func:`value` and :func:`extend` use: ``"google-crc32c"`` or ``"numpy"``.
BACKEND = "google-crc32c" if _FAST else "numpy"

_POLY = 0x82F63B78  # Castagnoli, bit-reversed
_MASK_DELTA = 0xA282EAD8
_LANES = 4096
_STEPS = 512  # 8-byte words per lane in a full chunk: chunks of 16 MiB


def _byte_tables() -> list[np.ndarray]:
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    tables = [t]
    for _ in range(7):
        prev = tables[-1]
        # Table k advances a byte followed by k zero bytes ("slicing-by-8").
        tables.append(((prev >> 8) ^ t[prev & 0xFF]).astype(np.uint32))
    return tables


_T = _byte_tables()
_T0 = [int(x) for x in _T[0]]
_v = np.arange(65536, dtype=np.uint32)
# 16-bit tables for the 8 bytes of a step: (bytes 0,1), (2,3) meet the running CRC; (4,5), (6,7) do not.
_W01 = _T[7][_v & 0xFF] ^ _T[6][_v >> 8]
_W23 = _T[5][_v & 0xFF] ^ _T[4][_v >> 8]
_W45 = _T[3][_v & 0xFF] ^ _T[2][_v >> 8]
_W67 = _T[1][_v & 0xFF] ^ _T[0][_v >> 8]
del _v


def _bytes_raw(crc: int, data: bytes) -> int:
    for b in data:
        crc = _T0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _apply(columns: list[int], x: int) -> int:
    out, k = 0, 0
    while x:
        if x & 1:
            out ^= columns[k]
        x >>= 1
        k += 1
    return out


@functools.lru_cache(maxsize=64)
def _zeros_operator(n: int) -> tuple[tuple[int, ...], ...]:
    """Byte tables of the linear map 'append n zero bytes' on a raw (un-inverted) CRC register."""
    power = [_T0[(1 << k) & 0xFF] ^ ((1 << k) >> 8) for k in range(32)]  # one zero byte
    result = [1 << k for k in range(32)]
    while n:
        if n & 1:
            result = [_apply(power, c) for c in result]
        power = [_apply(power, c) for c in power]
        n >>= 1
    return tuple(tuple(_apply(result, b << (8 * k)) for b in range(256)) for k in range(4))


def _shift(crc: int, n: int) -> int:
    t = _zeros_operator(n)
    return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24]


def _lanes_raw(buf: np.ndarray, lanes: int, steps: int) -> int:
    """Raw CRC (zero start) of ``buf`` (``lanes * steps * 8`` bytes) computed as ``lanes`` parallel runs."""
    words = buf.view("<u4").reshape(lanes, steps, 2)
    low = np.ascontiguousarray(words[:, :, 0].T)
    high = words[:, :, 1].T
    ahead = _W45[high & 0xFFFF] ^ _W67[high >> 16]  # the half of each step independent of the CRC
    crc = np.zeros(lanes, np.uint32)
    for j in range(steps):
        x = crc ^ low[j]
        crc = _W01[x & 0xFFFF] ^ _W23[x >> 16] ^ ahead[j]
    total = 0
    for lane_crc in crc.tolist():
        total = _shift(total, steps * 8) ^ lane_crc
    return total


def _raw(crc: int, buf: np.ndarray) -> int:
    n, pos = buf.size, 0
    while n - pos >= _LANES * _STEPS * 8:
        crc = _shift(crc, _LANES * _STEPS * 8) ^ _lanes_raw(buf[pos : pos + _LANES * _STEPS * 8], _LANES, _STEPS)
        pos += _LANES * _STEPS * 8
    for lanes in (_LANES, 64):
        steps = (n - pos) // (lanes * 8)
        if steps:
            size = lanes * steps * 8
            crc = _shift(crc, size) ^ _lanes_raw(buf[pos : pos + size], lanes, steps)
            pos += size
    return _bytes_raw(crc, buf[pos:].tobytes())


def _as_bytes(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, np.uint8)


def extend(crc: int, data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """TF's ``crc32c::Extend``: the CRC-32C of ``A + data`` given ``crc`` = CRC-32C of ``A``."""
    if _FAST:
        return int(_google_crc32c.extend(crc, _as_bytes(data)))
    return extend_numpy(crc, data)


def extend_numpy(crc: int, data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """:func:`extend` in numpy alone (what runs without ``google-crc32c``)."""
    buf = _as_bytes(data)
    if buf.size < 1024:  # numpy's per-call cost beats the lanes below this
        return _bytes_raw(crc ^ 0xFFFFFFFF, buf.tobytes()) ^ 0xFFFFFFFF
    # Linearity: the register after data from start s is shift(s, len) ^ (the register from zero).
    return _shift(crc ^ 0xFFFFFFFF, buf.size) ^ _raw(0, buf) ^ 0xFFFFFFFF


def value(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The CRC-32C of ``data`` (bytes, or an array's raw bytes)."""
    return extend(0, data)


def mask(crc: int) -> int:
    """TF's ``crc32c::Mask``: what checkpoints and table blocks store."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    """TF's ``crc32c::Unmask``, the inverse of :func:`mask`."""
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
