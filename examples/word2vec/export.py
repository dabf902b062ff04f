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

from examples.word2vec.ranges import byte_ranges

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
    if vec.shape[1] == 0 and vec.shape[0]:
        raise ValueError(f"vectors of shape {vec.shape} have no values to write (dimension 0)")
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
    column at the end). :class:`_GText` says how.

    >>> chars, lengths = format_g(np.array([0.5, -1e-5, 123456789.0, 0.0, -0.0, 100.0, 0.00012], np.float32), 6)
    >>> [bytes(c[:n]).decode() for c, n in zip(chars, lengths)]
    ['0.5', '-1e-05', '1.23457e+08', '0', '-0', '100', '0.00012']
    """
    text = _GText(values, precision)
    n, width = len(text.length), precision + 7  # "-0.000" + p digits, or "-d." + p - 1 digits + "e-XX"; spare
    out = np.full(n * width + text.slack, 48, np.uint8)
    text.place(out, np.arange(0, n * width, width, dtype=np.int64))
    return out[: n * width].reshape(n, width), text.length


class _GText:
    """The ``%.{precision}g`` text of float32 values, worked out once (digits, exponent, layout, length) and
    written by :meth:`place` at any offsets of a byte buffer: a row each (:func:`format_g`) or one after the
    other as the lines of a file (:func:`_lines`).

    The text is Python's, byte for byte: the value (a float32, exact in float64) is scaled to ``precision``
    digits in float64, whose error (at most 2^-52 relative) is far below the distance to a rounding boundary
    except for a value within ``10**precision * 2**-44`` of a tie or of a power of ten (exact ties happen:
    0.001953125 = 2^-9 has 7 digits ending in 5); those, and infinities and NaN, are formatted by Python.
    Each digit then goes to its place in %g's layout (fixed notation for exponents -4 .. precision - 1,
    ``d.ddde+XX`` otherwise, trailing zeros dropped).
    """

    def __init__(self, values: np.ndarray, precision: int) -> None:
        if not 1 <= precision <= 9:  # the digits are an int32: 10 of them would overflow it
            raise ValueError(f"precision {precision} out of range: 1 to 9 significant digits")
        with np.errstate(invalid="ignore"):  # a signalling NaN sets the flag when widened
            v = np.asarray(values, np.float32).ravel().astype(np.float64)
        p = self.precision = precision
        a = np.abs(v)
        finite_nonzero = np.isfinite(v) & (a > 0)
        safe = np.where(finite_nonzero, a, 1.0)
        # floor(log10(safe)) is floor(binary exponent * log10(2)), or one more (both tried below), cheaper than
        # log10; _LOG10_2 makes that floor exact in integers (tests/test_word2vec_export.py checks every exponent).
        exp10 = ((safe.view(np.int64) >> 52).astype(np.int32) - 1023) * _LOG10_2[0] >> _LOG10_2[1]
        exp10 += safe * _POW10[p - 1 - exp10 + _POW10_ZERO] >= 10.0**p
        y = safe * _POW10[p - 1 - exp10 + _POW10_ZERO]
        eps = 10.0**p * 2.0**-44
        ambiguous = (np.abs(y - np.floor(y) - 0.5) < eps) | (np.abs(y - 10.0 ** (p - 1)) < eps)
        python = ~np.isfinite(v) | (finite_nonzero & (ambiguous | (y >= 10.0**p) | (y < 10.0 ** (p - 1))))
        r = np.rint(np.where(python | ~finite_nonzero, 10.0 ** (p - 1), y)).astype(np.int32)
        carry = r >= 10**p  # 999999.6 -> 1000000: one digit more, one power of ten up
        r = np.where(carry, r // 10, r)
        exp10 += carry
        self.digits = np.empty((p, len(v)), np.uint8)  # ASCII, most significant first
        rest = r.astype(np.uint32)  # numpy divides 32-bit integers by a constant 3-4x faster than 64-bit ones
        for j in range(p - 1, -1, -1):
            q = rest // 10
            self.digits[j] = rest - q * 10 + 48
            rest = q
        sig = np.full(len(v), p, np.int32)  # significant digits once %g drops trailing zeros
        zero_tail = np.ones(len(v), bool)
        for j in range(p - 1, 0, -1):
            zero_tail &= self.digits[j] == 48
            sig -= zero_tail
        negative = np.signbit(v)
        s = negative.astype(np.int32)
        fixed_pos = (exp10 >= 0) & (exp10 < p)
        fixed_neg = (exp10 < 0) & (exp10 >= -4)
        # Digit j goes to offset lead + j + (j > point_after): the point follows digit exp10 in fixed notation
        # (none before "0.000ddd"'s digits), digit 0 in d.ddde+XX.
        self.point_after = np.where(fixed_pos, exp10, np.where(fixed_neg, p, 0))
        self.lead = np.where(fixed_neg, s + 1 - exp10, s)
        point = np.where(fixed_pos, exp10 + 1 < sig, fixed_neg | (sig > 1)) & ~python
        self.point_rows = np.flatnonzero(point)
        self.point_offset = np.where(fixed_neg, s + 1, self.lead + self.point_after + 1)[self.point_rows]
        mantissa_end = s + 1 + np.where(point, sig, 0)
        self.length = np.where(fixed_pos, s + np.maximum(sig, exp10 + 1) + point,
                               np.where(fixed_neg, s + 1 - exp10 + sig, mantissa_end + 4)).astype(np.int64)
        self.exp_rows = np.flatnonzero(~fixed_pos & ~fixed_neg & finite_nonzero & ~python)
        e = exp10[self.exp_rows]
        self.exp_offset = mantissa_end[self.exp_rows]
        self.exp_chars = (np.full(len(e), ord("e")), np.where(e < 0, ord("-"), ord("+")), np.abs(e) // 10 + 48,
                          np.abs(e) % 10 + 48)
        self.zero_rows = np.flatnonzero(~finite_nonzero & ~python)  # "0" or "-0"
        self.zero_offset = s[self.zero_rows]
        self.negative_rows = np.flatnonzero(negative & ~python)
        self.python_rows = np.flatnonzero(python)  # a handful per million values
        self.python_text = [(f"%.{p}g" % v[i]).encode("ascii") for i in self.python_rows.tolist()]
        self.length[self.python_rows] = [len(t) for t in self.python_text]
        # Bytes a buffer needs past the last text: digits past a value's text land beyond it (see place).
        self.slack = p + 8

    def place(self, out: np.ndarray, base: np.ndarray) -> None:
        """Write value ``i``'s text at ``out[base[i]: base[i] + length[i]]``. ``out`` (uint8) is filled with
        ASCII ``'0'`` beforehand and has ``slack`` bytes past the last text; the texts do not overlap.

        Every digit is written, the zeros past the significant ones too (no mask to compute). Such a zero may
        land past its value's text, at an offset of the next text smaller than its own digit's index; the
        digits are written from the last to the first, so the next text's own byte there is written after it.
        The point, sign and exponent come after all digits. Python's texts are written last, over their own; the
        placeholder digits of those values go to the slack, so that the argument above does not rest on how long
        Python's text is. (No value is known to need it: the 13,588 values of the tests' tricky floats that Python
        formats, at precisions 1, 4, 6 and 9, read right beside every kind of neighbour without it.)"""
        lead = base + self.lead
        lead[self.python_rows] = len(out) - self.slack
        for j in range(self.precision - 1, -1, -1):
            out[lead + j + (self.point_after < j)] = self.digits[j]
        out[base[self.point_rows] + self.point_offset] = 46  # "."
        at = base[self.exp_rows] + self.exp_offset
        for k, chars in enumerate(self.exp_chars):
            out[at + k] = chars
        out[base[self.zero_rows] + self.zero_offset] = 48
        out[base[self.negative_rows]] = 45  # "-"
        for i, text in zip(self.python_rows.tolist(), self.python_text, strict=True):
            out[base[i]: base[i] + len(text)] = np.frombuffer(text, np.uint8)


# log10(2) ~ 78913 / 2^18: floor(e * log10(2)) == (e * 78913) >> 18 for every float64 exponent e.
_LOG10_2 = (78913, 18)
_POW10_ZERO = 64
_POW10 = np.array([10.0**k for k in range(-_POW10_ZERO, _POW10_ZERO)])


def format_rows(vec: np.ndarray, precision: int, sep: bytes, words: Sequence[str] | None = None) -> bytes:
    """The lines ``[word sep] v1 sep v2 ... vD \\n`` of ``vec``'s rows, each value as ``"%.{precision}g"``
    formats it (:func:`format_g`), as UTF-8 bytes.

    >>> format_rows(np.array([[1.5, -0.25], [1e-7, 3.0]], np.float32), 6, b" ", ["a", "b"])
    b'a 1.5 -0.25\\nb 1e-07 3\\n'
    """
    return _lines(_GText(vec, precision), vec.shape[1], sep, words)


def _lines(text: _GText, dim: int, sep: bytes, words: Sequence[str] | None) -> bytes:
    """``text``'s values as lines of ``dim`` values, each after its word and ``sep`` if ``words`` is given,
    every text written straight to its offset in the block's bytes (one pass; no fixed-width rows to cut)."""
    if len(text.length) == 0:
        return b""
    widths = text.length + 1  # the value and the separator or line break after it
    if words is not None:
        prefix = [w.encode("utf-8") for w in words]
        if len(prefix) * dim != len(widths):
            raise ValueError(f"{len(prefix)} words for {len(widths) // dim} rows")
        prefix_lengths = np.fromiter(map(len, prefix), np.int64, len(prefix)) + len(sep)
        widths[::dim] += prefix_lengths
    ends = np.cumsum(widths)
    base = ends - text.length - 1
    out = np.full(int(ends[-1]) + text.slack, 48, np.uint8)
    text.place(out, base)
    separators = np.full(len(base), sep[0], np.uint8)
    separators[dim - 1:: dim] = ord("\n")
    out[base + text.length] = separators
    if words is not None:
        out[byte_ranges(base[::dim] - prefix_lengths, prefix_lengths)] = np.frombuffer(sep.join(prefix) + sep,
                                                                                        np.uint8)
    return out[: int(ends[-1])].tobytes()


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
            text = _GText(block, precision)
            txt.buffer.write(_lines(text, vec.shape[1], b" ", words[start: start + step]))  # type: ignore[attr-defined]
            tsv.buffer.write(_lines(text, vec.shape[1], b"\t", None))  # type: ignore[attr-defined]

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
