"""examples/word2vec/export.py's vectorised float formatting: the text of Python's ``%.Ng``, byte for byte."""

from __future__ import annotations

import pathlib
import re
from fractions import Fraction

import numpy as np
import pytest

from examples.word2vec import export


def _tricky_floats() -> np.ndarray:
    rng = np.random.default_rng(0)
    # every kind of float32: NaN, infinities, subnormals
    patterns = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    tens = np.array([10.0**k for k in range(-45, 39)], np.float32)
    dyadic = np.ldexp(np.float32(1), np.arange(-149, 128)).astype(np.float32)  # exact ties: 2^-9 = 0.001953125
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 999999.5, 9999995, 99999.95, 123456.5, 0.00012,
                        1e-5, 9.99999e-5, 3.4028235e38, 1.4e-45, 1 / 3], np.float32)
    return np.concatenate([patterns, rng.normal(0, 0.3, 100_000).astype(np.float32), special, tens, dyadic, -dyadic,
                           np.nextafter(tens, np.float32(np.inf)), np.nextafter(tens, np.float32(0)),
                           np.arange(50_000, dtype=np.float32) + np.float32(0.5)])


@pytest.mark.parametrize("precision", [6, 1, 4, 9])
def test_format_g_is_pythons_text(precision):
    values = _tricky_floats()
    chars, lengths = export.format_g(values, precision)
    fmt = f"%.{precision}g"
    got = [bytes(c[:n]).decode() for c, n in zip(chars, lengths, strict=True)]
    expected = [fmt % v for v in values.tolist()]
    mismatches = [(v, g, e) for v, g, e in zip(values.tolist(), got, expected, strict=True) if g != e]
    assert not mismatches, mismatches[:5]


def test_the_decimal_exponent_formula_is_exact():
    """_GText takes floor(log10(x)) from x's binary exponent e as (e * 78913) >> 18, which must equal
    floor(e * log10(2)) for every exponent of a float64 (checked exactly: 10^k <= 2^e < 10^(k+1))."""
    multiplier, shift = export._LOG10_2
    for e in range(-1074, 1024):
        k = e * multiplier >> shift
        assert Fraction(10) ** k <= Fraction(2) ** e < Fraction(10) ** (k + 1), e


@pytest.mark.parametrize("precision", [6, 9])
def test_lines_of_texts_of_every_length_side_by_side(precision):
    """The lines put each text straight at its offset, and a value's zero digits past its text land on the
    next one's bytes before those are written: every pair of short and long texts, in both orders, still
    reads as Python's."""
    kinds = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.000123456, 1.5e-7, -3.25e+12, 123456.7, np.inf, np.nan, -2**-9,
                      0.1, 7.0], np.float32)
    pairs = np.array([[a, b] for a in kinds for b in kinds], np.float32)
    for dim in (1, 2, 3):
        vec = np.resize(pairs.ravel(), (len(pairs.ravel()) // dim, dim)).astype(np.float32)
        words = [f"w{i}" for i in range(len(vec))]
        got = export.format_rows(vec, precision, b" ", words).decode()
        assert got == _python_rows(vec, words, " ", f"%.{precision}g")
        assert export.format_rows(vec, precision, b"\t").decode() == _python_rows(vec, None, "\t", f"%.{precision}g")


def test_vectors_without_values_are_refused(tmp_path):
    empty = np.zeros((2, 0), np.float32)
    for write in (lambda: export.save_word2vec_format(tmp_path / "v.txt", empty, ["a", "b"]),
                  lambda: export.save_embeddings(tmp_path, empty, ["a", "b"]),
                  lambda: export.save_projector_tsv(tmp_path, empty, ["a", "b"])):
        with pytest.raises(ValueError, match=re.escape("vectors of shape (2, 0) have no values to write")):
            write()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("precision", [0, 10])
def test_a_precision_the_formatter_cannot_hold_is_refused(precision):
    with pytest.raises(ValueError, match=f"precision {precision} out of range: 1 to 9 significant digits"):
        export.format_g(np.ones(3, np.float32), precision)


def _python_rows(vec, words, sep, fmt="%.6g"):
    row_fmt = sep.join([fmt] * vec.shape[1]) + "\n"
    return "".join((w + sep if words is not None else "") + row_fmt % tuple(r)
                   for w, r in zip(words if words is not None else [None] * len(vec), vec.tolist(), strict=True))


def test_files_are_the_python_formatters_bytes(tmp_path, monkeypatch):
    """vectors.txt and vectors.tsv exactly as the per-float Python formatting wrote them, with several blocks,
    non-ASCII words, and formats without a fast path (%.9f) still going through Python."""
    monkeypatch.setattr(export, "_VALUES_PER_BLOCK", 64)
    rng = np.random.default_rng(1)
    vec = np.concatenate([rng.normal(0, 0.3, (40, 7)), rng.normal(0, 1e4, (5, 7)), np.zeros((1, 7))]).astype(np.float32)
    vec[3, 2], vec[4, 4] = -0.0, 2**-9
    words = [f"wörd{i}" for i in range(len(vec))]
    txt, tsv, meta = export.save_embeddings(tmp_path, vec, words)
    text = pathlib.Path(txt).read_bytes()
    assert text == (f"{len(vec)} 7\n" + _python_rows(vec, words, " ")).encode()
    assert pathlib.Path(tsv).read_bytes() == _python_rows(vec, None, "\t").encode()
    assert pathlib.Path(meta).read_text(encoding="utf-8").splitlines() == words
    one = export.save_word2vec_format(tmp_path / "one.txt", vec, words)
    assert pathlib.Path(one).read_bytes() == text
    tsv2, _ = export.save_projector_tsv(tmp_path / "p", vec, words)
    assert pathlib.Path(tsv2).read_bytes() == pathlib.Path(tsv).read_bytes()
    slow = export.save_word2vec_format(tmp_path / "slow.txt", vec, words, fmt="%.9f")
    assert pathlib.Path(slow).read_bytes() == (f"{len(vec)} 7\n" + _python_rows(vec, words, " ", "%.9f")).encode()
    with pytest.raises(ValueError, match="contains whitespace"):
        export.save_embeddings(tmp_path, vec[:2], ["ok", "not ok"])


@pytest.mark.parametrize("bad", ["", "a b", "a\tb", "a\nb", "a\rb", "a\x0bb", "a\x0cb"])
def test_a_word_the_text_format_cannot_hold_is_named(tmp_path, bad):
    """Empty words and words with whitespace are refused by name, wherever they are in the vocabulary; the
    projector's metadata refuses only tabs and line breaks (a space is fine in a TSV cell)."""
    vec = np.zeros((4, 2), np.float32)
    words = ["a", "b", bad, "c"]
    with pytest.raises(ValueError, match=re.escape(f"word {bad!r} cannot be written in word2vec text format")):
        export.save_word2vec_format(tmp_path / "v.txt", vec, words)
    assert not (tmp_path / "v.txt").exists()
    if bad in ("a b", "a\x0bb", "a\x0cb"):
        export.save_projector_tsv(tmp_path, vec, words)
    else:
        with pytest.raises(ValueError, match=re.escape(f"word {bad!r} cannot be written in projector metadata")):
            export.save_projector_tsv(tmp_path, vec, words)


def test_gensim_reads_the_values_written():
    import os
    import tempfile

    import gensim.models as gensim_models  # the examples extra, installed by every test session

    vec = np.random.default_rng(2).normal(0, 0.3, (20, 5)).astype(np.float32)
    words = [f"w{i}" for i in range(20)]
    with tempfile.TemporaryDirectory() as d:
        txt, _, _ = export.save_embeddings(d, vec, words)
        kv = gensim_models.KeyedVectors.load_word2vec_format(txt)
        assert kv.index_to_key == words and os.path.exists(txt)
        expected = np.array([[float(f"{x:.6g}") for x in row] for row in vec.tolist()], np.float32)
        np.testing.assert_array_equal(kv.vectors, expected)
