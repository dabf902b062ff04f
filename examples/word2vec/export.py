"""Export trained word vectors: word2vec text format and the TensorBoard projector files.

>>> import numpy as np, tempfile, os, pathlib
>>> d = tempfile.mkdtemp()
>>> save_word2vec_format(os.path.join(d, "vec.txt"), np.eye(2), ["UNK", "the"])   # doctest: +ELLIPSIS
'.../vec.txt'
>>> pathlib.Path(d, "vec.txt").read_text()
'2 2\\nUNK 1 0\\nthe 0 1\\n'

Every file is written atomically (:func:`atomic_write`): a reader, or a run killed half-way, never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "format_g", "format_rows", "save_embeddings", "save_projector_config", "save_projector_tsv",
           "save_word2vec_format", "write_metrics"]


def atomic_write(path: str, write: Callable[[IO[str]], None]) -> str:
    """Write ``path`` through ``write(f)`` into a temporary file in the same directory, then rename it into
    place: readers never see half a file, and a failure leaves the previous file as it was. The file gets mode
    0644 (it is meant to be shared). Returns the absolute path."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; exported files are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _check(vectors: Any, words: Sequence[str], forbidden: str, fmt_name: str) -> np.ndarray:
    vec = np.asarray(vectors, dtype=np.float32)
    if vec.ndim != 2:
        raise ValueError(f"vectors must be a 2-D [words, dim] array, got shape {vec.shape}")
    if len(words) != vec.shape[0]:
        raise ValueError(f"{len(words)} words for {vec.shape[0]} vectors")
    # One search over all the words at once (a loop over every word's characters took ~10% of the export); the
    # words are searched one by one only to name the one at fault.
    bad = re.compile(f"[{re.escape(forbidden)}]")
    if not all(words) or bad.search("".join(words)):
        w = next(w for w in words if not w or bad.search(w))
        raise ValueError(f"word {w!r} cannot be written in {fmt_name} (empty or contains whitespace)")
    return vec


def _rows(f: IO[str], vec: np.ndarray, sep: str, fmt: str, prefixes: Sequence[str] | None) -> None:
    precision = _g_precision(fmt)
    if precision is not None:  # the same text, formatted by numpy a block of rows at a time
        f.flush()
        out = f.buffer  # type: ignore[attr-defined]
        step = max(1, _VALUES_PER_BLOCK // max(1, vec.shape[1]))
        for start in range(0, vec.shape[0], step):
            block = vec[start: start + step]
            words = None if prefixes is None else prefixes[start: start + step]
            out.write(format_rows(block, precision, sep.encode(), words))
        return
    row_fmt = sep.join([fmt] * vec.shape[1]) + "\n"
    for i, row in enumerate(vec.tolist()):
        if prefixes is not None:
            f.write(prefixes[i] + sep)
        f.write(row_fmt % tuple(row))


# Values formatted per block: each numpy pass of format_g over a block's float64 temporaries (0.5 MiB apiece at
# 2^16) then stays in the CPU's caches; at 2^20 (8 MiB apiece) every pass went to memory: 1.33x slower
# (benchmarks/word2vec_block_sizes.py).
_VALUES_PER_BLOCK = 1 << 16
_G_FORMAT = re.compile(r"%\.([1-9])g")


def _g_precision(fmt: str) -> int | None:
    match = _G_FORMAT.fullmatch(fmt)
    return int(match.group(1)) if match else None


def format_g(values: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    """``"%.{precision}g" % float(v)`` for every float32 ``v`` of ``values``, vectorised: ``(chars, lengths)``,
    ``chars[i, :lengths[i]]`` the ASCII bytes of value ``i`` (``1 <= precision <= 9``; ``chars`` has one spare
    column at the end).

    The text is Python's, byte for byte: the value (a float32, exact in float64) is scaled to ``precision``
    digits in float64, whose error (at most 2^-52 relative) is far below the distance to a rounding boundary
    except for a value within ``10**precision * 2**-44`` of a tie or of a power of ten (exact ties happen:
    0.001953125 = 2^-9 has 7 digits ending in 5); those, and infinities and NaN, are formatted by Python.
    Each digit then goes to its column of %g's layout (fixed notation for exponents -4 .. precision - 1,
    ``d.ddde+XX`` otherwise, trailing zeros dropped), into a row pre-filled with ``'0'``.

    >>> chars, lengths = format_g(np.array([0.5, -1e-5, 123456789.0, 0.0, -0.0, 100.0, 0.00012], np.float32), 6)
    >>> [bytes(c[:n]).decode() for c, n in zip(chars, lengths)]
    ['0.5', '-1e-05', '1.23457e+08', '0', '-0', '100', '0.00012']
    """
    with np.errstate(invalid="ignore"):  # a signalling NaN sets the flag when widened
        return _format_g(np.asarray(values, np.float32).ravel().astype(np.float64), precision)


def _format_g(v: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(v)
    a = np.abs(v)
    finite_nonzero = np.isfinite(v) & (a > 0)
    safe = np.where(finite_nonzero, a, 1.0)
    exp10 = np.floor(np.log10(safe)).astype(np.int32)
    y = safe * _POW10[p - 1 - exp10 + _POW10_ZERO]
    exp10 += (y >= 10.0**p).astype(np.int32) - (y < 10.0 ** (p - 1)).astype(np.int32)  # log10's rounding
    y = safe * _POW10[p - 1 - exp10 + _POW10_ZERO]
    eps = 10.0**p * 2.0**-44
    ambiguous = (np.abs(y - np.floor(y) - 0.5) < eps) | (np.abs(y - 10.0 ** (p - 1)) < eps)
    python = ~np.isfinite(v) | (finite_nonzero & (ambiguous | (y >= 10.0**p) | (y < 10.0 ** (p - 1))))
    r = np.rint(np.where(python | ~finite_nonzero, 10.0 ** (p - 1), y)).astype(np.int32)
    carry = r >= 10**p  # 999999.6 -> 1000000: one digit more, one power of ten up
    r = np.where(carry, r // 10, r)
    exp10 += carry
    digits = np.empty((p, n), np.uint8)  # most significant first
    rest = r.astype(np.uint64)
    for j in range(p - 1, -1, -1):
        q = (rest * 0xCCCCCCCD) >> 35  # rest // 10, exact below 2^32
        digits[j] = rest - q * 10
        rest = q
    sig = np.full(n, p, np.int32)  # significant digits once %g drops trailing zeros
    zero_tail = np.ones(n, bool)
    for j in range(p - 1, 0, -1):
        zero_tail &= digits[j] == 0
        sig -= zero_tail
    negative = np.signbit(v)
    s = negative.astype(np.int32)
    fixed_pos = (exp10 >= 0) & (exp10 < p)
    fixed_neg = (exp10 < 0) & (exp10 >= -4)
    # Digit j goes to column first + j + (j > point_after): the point follows digit exp10 in fixed notation
    # (none before "0.000ddd"'s digits), digit 0 in d.ddde+XX. Every digit is written: a zero past the
    # significant ones lies beyond the length, or under the "e+XX" written after it.
    point_after = np.where(fixed_pos, exp10, np.where(fixed_neg, p, 0))
    first = np.where(fixed_neg, s + 1 - exp10, s)
    width = p + 7  # "-0.000" + p digits, or "-d." + p - 1 digits + "e-XX"; and a spare column
    chars = np.full((n, width), 48, np.uint8)
    flat = chars.reshape(-1)
    start = np.arange(0, n * width, width, dtype=np.int64) + first
    for j in range(p):
        flat[start + j + (point_after < j)] = digits[j] + 48
    point = np.where(fixed_pos, exp10 + 1 < sig, fixed_neg | (sig > 1))
    row0 = start - first
    flat[row0 + np.where(fixed_neg, s + 1, np.where(point, first + point_after + 1, width - 1))] = 46  # "."
    mantissa_end = s + 1 + np.where(point, sig, 0)
    emitted = np.maximum(sig, exp10 + 1)
    length = np.where(fixed_pos, s + emitted + point, np.where(fixed_neg, s + 1 - exp10 + sig, mantissa_end + 4))
    ex = np.flatnonzero(~fixed_pos & ~fixed_neg & finite_nonzero)
    if len(ex):
        e, at = exp10[ex], row0[ex] + mantissa_end[ex]
        flat[at] = ord("e")
        flat[at + 1] = np.where(e < 0, ord("-"), ord("+"))
        flat[at + 2] = np.abs(e) // 10 + 48
        flat[at + 3] = np.abs(e) % 10 + 48
    zero = np.flatnonzero(~finite_nonzero)
    flat[row0[zero] + s[zero]] = 48
    length[zero] = s[zero] + 1
    flat[row0[np.flatnonzero(negative)]] = 45  # "-"
    for i in np.flatnonzero(python).tolist():  # a handful per million values
        text = (f"%.{p}g" % v[i]).encode("ascii")
        chars[i] = 48
        chars[i, : len(text)] = np.frombuffer(text, np.uint8)
        length[i] = len(text)
    return chars, length.astype(np.int64)


_POW10_ZERO = 64
_POW10 = np.array([10.0**k for k in range(-_POW10_ZERO, _POW10_ZERO)])


def format_rows(vec: np.ndarray, precision: int, sep: bytes, words: Sequence[str] | None = None) -> bytes:
    """The lines ``[word sep] v1 sep v2 ... vD \\n`` of ``vec``'s rows, each value as ``"%.{precision}g"``
    formats it (:func:`format_g`), as UTF-8 bytes.

    >>> format_rows(np.array([[1.5, -0.25], [1e-7, 3.0]], np.float32), 6, b" ", ["a", "b"])
    b'a 1.5 -0.25\\nb 1e-07 3\\n'
    """
    return _join(*format_g(vec, precision), vec.shape[1], sep, words)


def _join(chars: np.ndarray, length: np.ndarray, dim: int, sep: bytes, words: Sequence[str] | None,
          keep: np.ndarray | None = None) -> bytes:
    """:func:`format_g`'s values as lines of ``dim`` values. Each value's separator is written into ``chars``,
    in the column after the value (the spare column at most); ``keep`` (the mask of the columns in use, which
    this computes when None) can be shared by calls on the same ``chars``."""
    ends = np.full(len(length), sep[0], np.uint8)
    ends[dim - 1:: dim] = ord("\n")
    chars.reshape(-1)[np.arange(0, chars.size, chars.shape[1]) + length] = ends
    if keep is None:
        keep = np.arange(chars.shape[1], dtype=np.int64)[None, :] <= length[:, None]
    text = chars[keep].tobytes()
    if words is None:
        return text
    # Each line is its word and sep, then its values' text: both laid out by one mask over the block's bytes
    # (slicing the text line by line in Python took a fifth of the export of a large vocabulary).
    prefix = [w.encode("utf-8") for w in words]
    prefix_lengths = np.fromiter(map(len, prefix), np.int64, len(prefix)) + len(sep)
    value_lengths = (length + 1).reshape(-1, dim).sum(axis=1)
    if len(prefix) != len(value_lengths):
        raise ValueError(f"{len(prefix)} words for {len(value_lengths)} rows")
    is_prefix = np.repeat(np.tile(np.array([True, False]), len(prefix)),
                          np.stack([prefix_lengths, value_lengths], axis=1).reshape(-1))
    out = np.empty(len(is_prefix), np.uint8)
    out[is_prefix] = np.frombuffer(sep.join(prefix) + sep, np.uint8)
    out[~is_prefix] = np.frombuffer(text, np.uint8)
    return out.tobytes()


def save_embeddings(directory: str | os.PathLike[str], vectors: Any, words: Sequence[str],
                    fmt: str = "%.6g") -> tuple[str, str, str]:
    """:func:`save_word2vec_format`'s ``vectors.txt`` and :func:`save_projector_tsv`'s ``vectors.tsv`` and
    ``metadata.tsv`` in ``directory``, the same bytes, with each value formatted once for both files.
    Returns the three absolute paths.

    Raises:
        ValueError: as :func:`save_word2vec_format` and :func:`save_projector_tsv`.
    """
    vec = _check(vectors, words, " \t\n\r\v\f", "word2vec text format")
    directory = os.fspath(directory)
    precision = _g_precision(fmt)
    if precision is None:
        txt = save_word2vec_format(os.path.join(directory, "vectors.txt"), vec, words, fmt)
        return (txt, *save_projector_tsv(directory, vec, words, fmt=fmt))
    step = max(1, _VALUES_PER_BLOCK // max(1, vec.shape[1]))

    def write_both(txt: IO[str], tsv: IO[str]) -> None:
        txt.write(f"{vec.shape[0]} {vec.shape[1]}\n")
        txt.flush()
        for start in range(0, vec.shape[0], step):
            block = vec[start: start + step]
            chars, length = format_g(block, precision)
            keep = np.arange(chars.shape[1], dtype=np.int64)[None, :] <= length[:, None]
            txt.buffer.write(_join(chars, length, vec.shape[1], b" ", words[start: start + step], keep))  # type: ignore
            tsv.buffer.write(_join(chars, length, vec.shape[1], b"\t", None, keep))  # type: ignore[attr-defined]

    tsv_path = os.path.join(directory, "vectors.tsv")
    txt_path = atomic_write(os.path.join(directory, "vectors.txt"),
                            lambda txt: atomic_write(tsv_path, lambda tsv: write_both(txt, tsv)))
    metadata = atomic_write(os.path.join(directory, "metadata.tsv"), lambda f: f.writelines(w + "\n" for w in words))
    return txt_path, os.path.abspath(tsv_path), metadata


def save_word2vec_format(
    path: str | os.PathLike[str], vectors: Any, words: Sequence[str], fmt: str = "%.6g"
) -> str:
    """Write the word2vec text format that ``gensim.models.KeyedVectors.load_word2vec_format`` reads.

    A ``"<n> <dim>"`` header, then one ``word v1 v2 ...`` line per word, in the given order. ``fmt``
    formats each value (``"%.9g"`` round-trips float32 exactly). Returns the absolute path.

    >>> import os, pathlib, tempfile, numpy as np
    >>> path = save_word2vec_format(os.path.join(tempfile.mkdtemp(), "vectors.txt"),
    ...                             np.array([[0.5, -1.0], [0.25, 2.0]]), ["cat", "dog"])
    >>> print(pathlib.Path(path).read_text(), end="")
    2 2
    cat 0.5 -1
    dog 0.25 2

    Raises:
        ValueError: shapes disagree, or a word is empty or contains whitespace.
    """
    vec = _check(vectors, words, " \t\n\r\v\f", "word2vec text format")

    def write(f: IO[str]) -> None:
        f.write(f"{vec.shape[0]} {vec.shape[1]}\n")
        _rows(f, vec, " ", fmt, words)

    return atomic_write(os.fspath(path), write)


def save_projector_tsv(
    directory: str | os.PathLike[str],
    vectors: Any,
    words: Sequence[str],
    vectors_name: str = "vectors.tsv",
    metadata_name: str = "metadata.tsv",
    fmt: str = "%.6g",
) -> tuple[str, str]:
    """Write the projector pair: ``vectors.tsv`` (tab-separated rows) and ``metadata.tsv``.

    The metadata has one word per line and no header, which is what the projector expects for a
    single column (word2vec_basic wrote it the same way). Load both at projector.tensorflow.org, or
    point :func:`save_projector_config` at them. Returns ``(vectors_path, metadata_path)``.

    >>> import os, pathlib, tempfile, numpy as np
    >>> vectors_path, metadata_path = save_projector_tsv(tempfile.mkdtemp(), np.eye(2), ["cat", "dog"])
    >>> [os.path.basename(p) for p in (vectors_path, metadata_path)]
    ['vectors.tsv', 'metadata.tsv']
    >>> [pathlib.Path(p).read_text().splitlines() for p in (vectors_path, metadata_path)]
    [['1\\t0', '0\\t1'], ['cat', 'dog']]

    Raises:
        ValueError: shapes disagree, or a word is empty or contains a tab or line break.
    """
    vec = _check(vectors, words, "\t\n\r", "projector metadata")
    directory = os.fspath(directory)
    vectors_path = atomic_write(
        os.path.join(directory, vectors_name), lambda f: _rows(f, vec, "\t", fmt, None)
    )
    metadata_path = atomic_write(
        os.path.join(directory, metadata_name), lambda f: f.writelines(w + "\n" for w in words)
    )
    return vectors_path, metadata_path


def _pbtxt_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def save_projector_config(
    logdir: str | os.PathLike[str],
    tensor_name: str,
    metadata_path: str,
    tensor_path: str | None = None,
) -> str:
    """Write ``projector_config.pbtxt`` in ``logdir`` (the text proto TensorBoard's projector reads).

    ``tensor_name`` names a checkpointed variable (word2vec_basic used ``embeddings/Variable:0``);
    ``tensor_path`` points at a ``vectors.tsv`` instead when there is no TF checkpoint. Relative paths
    are resolved by TensorBoard against ``logdir``. Returns the config's path.

    >>> import pathlib, tempfile
    >>> p = save_projector_config(tempfile.mkdtemp(), "embeddings", "metadata.tsv", "vectors.tsv")
    >>> print(pathlib.Path(p).read_text(), end="")
    embeddings {
      tensor_name: "embeddings"
      metadata_path: "metadata.tsv"
      tensor_path: "vectors.tsv"
    }
    """
    lines = ["embeddings {", f"  tensor_name: {_pbtxt_string(tensor_name)}"]
    lines.append(f"  metadata_path: {_pbtxt_string(metadata_path)}")
    if tensor_path is not None:
        lines.append(f"  tensor_path: {_pbtxt_string(tensor_path)}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    return atomic_write(os.path.join(os.fspath(logdir), "projector_config.pbtxt"), lambda f: f.write(text))


def write_metrics(path: str | os.PathLike[str], metrics: Mapping[str, Any]) -> list[str]:
    """Write ``metrics`` to ``path`` as strict JSON, atomically (:func:`atomic_write`); keys sorted.

    JSON has no NaN or infinity: a non-finite float (a Spearman over no covered pairs, a diverged loss) is
    written as ``null``, the keys where that happened are listed in ``"non_finite_as_null"`` (dotted paths),
    and one ``warning:`` line on stderr says so. Returns that list (empty when every number was finite).

    >>> import json, math, pathlib, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_metrics(path, {"steps": np.int64(3), "evaluation": {"spearman": math.nan}})
    ['evaluation.spearman']
    >>> json.loads(pathlib.Path(path).read_text())
    {'evaluation': {'spearman': None}, 'non_finite_as_null': ['evaluation.spearman'], 'steps': 3}
    """
    nulls: list[str] = []

    def clean(obj: Any, where: str) -> Any:
        if isinstance(obj, Mapping):
            return {str(k): clean(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, (float, np.floating)):
            if math.isfinite(obj):
                return float(obj)
            nulls.append(where)
            return None
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.bool_):
            return bool(obj)
        return obj

    doc = clean(metrics, "")
    if nulls:
        doc["non_finite_as_null"] = nulls

    def write(f: IO[str]) -> None:
        json.dump(doc, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")

    atomic_write(os.fspath(path), write)
    if nulls:
        print(f"warning: {os.fspath(path)}: {', '.join(nulls)} not finite, written as null", file=sys.stderr)
    return nulls
