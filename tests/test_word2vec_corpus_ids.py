"""The block-by-block corpus reader (``data.token_blocks``), the one-pass vocabulary (``data.build_vocabulary``,
``corpus_ids.read_corpus``) and the id file, against the whole-file reader and ``Counter`` vocabulary they
replaced (kept here verbatim as the oracle)."""

from __future__ import annotations

import bz2
import collections
import gzip
import itertools
import os
import re
import zipfile

import numpy as np
import pytest

from examples.word2vec import corpus_ids, data
from examples.word2vec.data import CorpusError

# ------------------------------------------------------------------------------------------------
# The previous implementation (whole file in memory, one regex, Counter): the oracle.

_TOKEN_RE = re.compile(r"[^\W_]+")


def old_tokens(raw: bytes) -> list[str]:
    if not raw.translate(None, b"abcdefghijklmnopqrstuvwxyz \n"):
        return raw.decode("ascii").split()
    return _TOKEN_RE.findall(raw.decode("utf-8-sig").lower())


def old_build_vocabulary(words, min_count, max_vocab=None):
    counter = collections.Counter(words)
    kept = [(w, c) for w, c in counter.most_common(max_vocab) if c >= min_count]
    index = {w: i for i, (w, _) in enumerate(kept)}
    ids = np.fromiter(map(index.get, words, itertools.repeat(-1)), dtype=np.int32, count=len(words))
    return [w for w, _ in kept], np.array([c for _, c in kept], dtype=np.int64), ids[ids >= 0]


TRICKY = [
    # Greek final sigma depends on what follows (lower() looks past case-ignorable characters such as '.' and
    # "'", and stops at whitespace); Turkish dotted capital I lowercases to i + a combining dot (a separator).
    "ΟΔΟΣ ΟΔΟΣ. ΟΔΟΣ.Α ΣΑΣ'Α Σ ΣΣ İstanbul İİ ß ẞ Ǆemal ﬁnance",
    # Letters and digits of other scripts, combining marks, fullwidth and superscript digits, emoji, NBSP, BOM
    # in the middle, underscores, apostrophes, dashes, CJK without spaces.
    "naïve café—résumé don't stop_now x²³ ５６ ١٢٣ e\u0301te\u00a0nbsp \ufeffmid 中文字符没有空格 😀smile Ⅻ ①",
    # ASCII control characters and odd whitespace: \x1c-\x1f are whitespace to str.split but not to bytes.split.
    "a\x1cb\x1dc\x1ed\x1fe\x85f\u2028g\u3000h\x0bi\x0cj\rk\tl\x00m",
    # Upper-case ASCII, digits, punctuation runs.
    "The QUICK brown fox -- jumped over 3 lazy dogs; isn't it?? 42_000 A1b2C3 ...___...",
]


def _corpora(tmp_path, text: str, bom: bool = False):
    raw = (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")
    plain = tmp_path / "c.txt"
    plain.write_bytes(raw)
    gz = tmp_path / "c.txt.gz"
    gz.write_bytes(gzip.compress(raw))
    bz = tmp_path / "c.bz2"
    bz.write_bytes(bz2.compress(raw))
    zp = tmp_path / "c.zip"
    with zipfile.ZipFile(zp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("c.txt", raw)
    return raw, [plain, gz, bz, zp]


@pytest.mark.parametrize("block_bytes", [1, 7, 64, 1 << 22])
@pytest.mark.parametrize("bom", [False, True])
def test_block_reader_agrees_with_the_whole_file_reader(tmp_path, monkeypatch, block_bytes, bom):
    """Tiny blocks (a block boundary at nearly every whitespace byte), ASCII and non-ASCII blocks, every format."""
    monkeypatch.setattr(data, "_SNIFF_CHARS", 8)  # lets the first block be tiny too
    rng = np.random.default_rng(block_bytes)
    pieces = [t for text in TRICKY for t in text.split(" ")]
    text = "\n".join(" ".join(rng.choice(pieces, 12)) for _ in range(40)) + " " + " ".join(TRICKY)
    raw, paths = _corpora(tmp_path, text, bom)
    expected = old_tokens(raw)
    assert "ςςς" not in expected and "οδος" in expected and "οδοσ" in expected  # the sigma cases are exercised
    for path in paths:
        blocks = list(data.token_blocks(path, block_bytes=block_bytes))
        assert [w for b in blocks for w in b] == expected, path.name
        as_bytes = list(data.token_blocks(path, as_bytes=True, block_bytes=block_bytes))
        assert [w.decode() for b in as_bytes for w in b] == expected, path.name
        text = [data.block_token_text(b, o, str(path)) for b, o in data.text_blocks(path, block_bytes)]
        assert [w.decode() for t in text for w in t.split(b" ") if w] == expected, path.name
    assert data.read_words(paths[0]) == expected


def test_text8_style_and_mixed_blocks(tmp_path, monkeypatch):
    """text8 (a-z, space, newline only) is split on whitespace; a mostly ASCII file with rare non-ASCII words
    takes the fast path around them."""
    monkeypatch.setattr(data, "_SNIFF_CHARS", 64)
    words = ["anarchism", "originated", "as", "a", "term", "of", "abuse"] * 50
    raw, paths = _corpora(tmp_path, " " + " ".join(words) + "\n" + " ".join(words))
    for path in paths:
        assert data.read_words(path) == old_tokens(raw) == words + words
    mixed = " ".join(words[:100]) + " Café-Bar ÉCOLE " + " ".join(words[100:200]) + " Ωmega.\nEnd"
    raw, paths = _corpora(tmp_path, mixed)
    assert data.read_words(paths[0]) == old_tokens(raw)
    assert [w for b in data.token_blocks(paths[0], block_bytes=100) for w in b] == old_tokens(raw)


def test_invalid_utf8_late_in_the_file_names_its_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_SNIFF_CHARS", 16)
    raw = ("word " * 1000).encode() + "café ".encode("latin-1") + b"more words"
    path = tmp_path / "late.txt"
    path.write_bytes(raw)
    offset = raw.index(b"\xe9")
    for block_bytes in (64, 1 << 22):
        with pytest.raises(CorpusError, match=rf"is not UTF-8 text \(invalid byte at offset {offset}\)"):
            list(data.token_blocks(path, block_bytes=block_bytes))
    gz = tmp_path / "late.gz"
    gz.write_bytes(gzip.compress(raw)[:-30])  # truncated stream
    with pytest.raises(CorpusError, match="is not a valid gzip file"):
        data.read_words(gz)


def test_empty_and_wordless(tmp_path):
    for payload, message in [(b"  \n\t ", "is empty"), (b"\xef\xbb\xbf", "contains no words"),
                             (b"\xef\xbb\xbf  ", "contains no words")]:
        path = tmp_path / "x.txt"
        path.write_bytes(payload)
        with pytest.raises(CorpusError, match=message):
            data.read_words(path)


# ------------------------------------------------------------------------------------------------
# Vocabulary


def _zipf_words(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.minimum(rng.zipf(1.3, n), 5000)
    return [f"w{r}" for r in ranks.tolist()]


@pytest.mark.parametrize("min_count,max_vocab", [(1, None), (2, None), (5, 30), (3, 1000)])
def test_build_vocabulary_matches_counter(min_count, max_vocab):
    """Order (count, then first appearance: many ties among the rare words), counts and ids as Counter gave."""
    words = _zipf_words(20_000)
    expected = old_build_vocabulary(words, min_count, max_vocab)
    got = data.build_vocabulary(words, min_count, max_vocab)
    assert got.words == expected[0]
    np.testing.assert_array_equal(got.counts, expected[1])
    np.testing.assert_array_equal(got.ids, expected[2])
    assert got.ids.dtype == np.int32 and got.counts.dtype == np.int64


@pytest.mark.parametrize("memory,to_file", [("ample", False), ("none", False), ("ample", True), ("between", False)])
def test_read_corpus_matches_build_vocabulary(tmp_path, monkeypatch, memory, to_file):
    """In memory, spilled to the id file (from the start or part-way), or spilled and read back: the same
    vocabulary and ids as build_vocabulary(read_words(...)); the id file leaves nothing in the directory."""
    monkeypatch.setattr(corpus_ids, "_IDS_PER_BLOCK", 3000)  # several count and remap blocks
    words = _zipf_words(30_000, seed=1)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(words[i: i + 17]) for i in range(0, len(words), 17)))
    spill = tmp_path / "spill"
    expected = data.build_vocabulary(data.read_words(path), 3)
    # "between": more than the provisional ids need until part-way, enough for the in-vocabulary ones
    memory_bytes = {"ample": 1 << 30, "none": 0, "between": 4 * len(expected.ids)}[memory]
    assert len(expected.ids) < len(words) - 1000
    got = corpus_ids.read_corpus(path, 3, None, memory_bytes=memory_bytes, spill_dir=str(spill), to_file=to_file)
    assert got.words == expected.words and got.raw_tokens == len(words)
    np.testing.assert_array_equal(got.counts, expected.counts)
    ids = got.ids
    if isinstance(ids, corpus_ids.IdFile):
        assert memory_bytes == 0 or to_file
        assert len(ids) == len(expected.ids) and ids.nbytes == 4 * len(ids)
        np.testing.assert_array_equal(np.concatenate(list(ids.blocks(1000))), expected.ids)
        np.testing.assert_array_equal(ids.read(5, 12), expected.ids[5:12])
        assert os.listdir(spill) == []
        ids.close()
        with pytest.raises(ValueError, match="closed"):
            ids.read(0, 1)
    else:
        assert not to_file and memory_bytes != 0  # "between": spilled during the pass, read back at the end
        np.testing.assert_array_equal(ids, expected.ids)


def test_read_corpus_from_a_word_list_and_its_errors(tmp_path, monkeypatch):
    words = _zipf_words(5000)
    got = corpus_ids.read_corpus(words, 2, 50, memory_bytes=1 << 20, spill_dir=str(tmp_path))
    expected = old_build_vocabulary(words, 2, 50)
    assert got.words == expected[0]
    np.testing.assert_array_equal(got.ids, expected[2])
    with pytest.raises(CorpusError, match="the vocabulary has 1 word"):
        corpus_ids.read_corpus(["a", "a", "b"], 2, None, memory_bytes=1 << 20, spill_dir=str(tmp_path))
    monkeypatch.setattr(corpus_ids, "_MAX_TOKENS", 1000)
    with pytest.raises(CorpusError, match="more than 1,000 tokens"):
        corpus_ids.read_corpus(words, 2, None, memory_bytes=1 << 20, spill_dir=str(tmp_path))


def test_id_file_write_error_is_one_line(tmp_path, monkeypatch):
    ids = corpus_ids.IdFile(str(tmp_path))

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(corpus_ids.os, "pwrite", full)
    with pytest.raises(CorpusError, match=r"cannot write the corpus id file in .*: No space left on device"):
        ids.append(np.arange(10, dtype=np.int32))
    ids.close()


def test_reader_processes_give_the_same_ids(tmp_path, monkeypatch):
    """Blocks tokenised in two reader processes and merged in order: the vocabulary and ids of one pass, also when
    the first appearance of many words falls in later blocks; a UTF-8 error found by a reader names its offset."""
    monkeypatch.setattr(data, "_BLOCK_BYTES", 4096)  # text_blocks' default: many blocks
    monkeypatch.setattr(data, "_SNIFF_CHARS", 64)
    words = _zipf_words(40_000, seed=3)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(words[i: i + 11]) for i in range(0, len(words), 11)) + " Ünïcode ok")
    expected = corpus_ids.read_corpus(path, 2, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=0)
    got = corpus_ids.read_corpus(path, 2, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=2)
    assert got.words == expected.words and got.raw_tokens == expected.raw_tokens == len(words) + 2
    np.testing.assert_array_equal(got.counts, expected.counts)
    np.testing.assert_array_equal(got.ids, expected.ids)
    bad = tmp_path / "bad.txt"
    raw = path.read_bytes() + b" caf\xe9 "
    bad.write_bytes(raw)
    offset = raw.index(b"\xe9")
    with pytest.raises(CorpusError, match=rf"invalid byte at offset {offset}\)"):
        corpus_ids.read_corpus(bad, 2, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=2)


def test_a_dead_reader_process_is_an_error(tmp_path, monkeypatch):
    path = tmp_path / "corpus.txt"
    path.write_text("a b c " * 1000)

    def crash(*args):
        raise OSError(32, "Broken pipe")

    monkeypatch.setattr(corpus_ids, "_send", crash)
    with pytest.raises(CorpusError, match="a corpus reader process failed while reading .*Broken pipe"):
        corpus_ids.read_corpus(path, 1, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=1)


def test_reader_processes_by_default_only_for_big_files(tmp_path, monkeypatch):
    small = tmp_path / "small.txt"
    small.write_text("a b " * 10)
    assert corpus_ids._reader_processes(small, None) == 0
    assert corpus_ids._reader_processes(small, 3) == 3
    monkeypatch.setattr(corpus_ids.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(corpus_ids.os.path, "getsize", lambda p: 100 << 20)  # a 14M-word file: read here
    assert corpus_ids._reader_processes(small, None) == 0
    monkeypatch.setattr(corpus_ids.os.path, "getsize", lambda p: 1 << 30)
    assert corpus_ids._reader_processes(small, None) == 1  # the caller's process indexes blocks too
    monkeypatch.setattr(corpus_ids.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert corpus_ids._reader_processes(small, None) == 3
    monkeypatch.setattr(corpus_ids.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert corpus_ids._reader_processes(small, None) == 0


def test_a_dropped_index_is_freed_at_once():
    """first_seen_index makes no reference cycle: a reader process drops one per block, and a cycle kept each
    alive until a full garbage collection (gigabytes over a large corpus)."""
    import gc

    freed = []

    class Token:
        def __del__(self):
            freed.append(True)

    gc.disable()
    try:
        index = data.first_seen_index()
        data.index_tokens(index, [Token(), Token()])
        del index
        assert freed == [True, True]
    finally:
        gc.enable()


def _long_token_corpus(tmp_path, n_lines=400, seed=5):
    """Tokens of every length around the 8-byte key and the 64-byte vectorised hash (upper case, digits, non-ASCII,
    punctuation), so that some blocks are ASCII and some are not."""
    rng = np.random.default_rng(seed)
    stems = ["a", "ab", "abcdefg", "abcdefgh", "abcdefghi", "Abcdefghijklmnop", "abcdefghijklmnopq", "x" * 63,
             "y" * 64, "z" * 65, "w" * 200, "naïveté", "Ωmega-Σίσυφος", "中文字符没有空格", "12345678", "123456789"]
    words = [s + str(i) if i else s for s in stems for i in range(12)]
    lines = [" ".join(rng.choice(words, 15)) for _ in range(n_lines)]
    lines[n_lines // 2] += " Ünïcode"
    path = tmp_path / "long.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("processes", [0, 2])
def test_read_corpus_with_long_tokens_matches_the_whole_file_reader(tmp_path, monkeypatch, processes):
    """Keys are the token's bytes up to 8 bytes, a hash above (vectorised up to 64 bytes, blake2b beyond): the
    vocabulary and ids are still those of Counter over the whole-file reader's tokens, block size 4 KiB; the table's
    recent keys merged into its large sorted run every 64 keys, so lookups find tokens in either run."""
    monkeypatch.setattr(data, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(corpus_ids._TokenTable, "_RECENT_KEYS", 64)
    monkeypatch.setattr(data, "_SNIFF_CHARS", 64)
    path = _long_token_corpus(tmp_path)
    raw = path.read_bytes()
    words, counts, ids = old_build_vocabulary(old_tokens(raw), 2)
    assert max(map(len, words)) > 64 and any(len(w.encode()) == 9 for w in words)
    expected_tokens = data.token_blocks

    def no_fallback(*args, **kwargs):  # the exact dict's reread (a collision) must not be needed
        raise AssertionError("read again after a hash collision")

    monkeypatch.setattr(data, "token_blocks", no_fallback)
    got = corpus_ids.read_corpus(path, 2, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=processes)
    assert got.words == words and got.raw_tokens == len(old_tokens(raw))
    assert sum(map(len, expected_tokens(path))) == got.raw_tokens
    np.testing.assert_array_equal(got.counts, counts)
    np.testing.assert_array_equal(got.ids, ids)


def _reread_warning(path) -> str:
    """The collision fallback's warning: it names the file and the slower exact reread."""
    return rf"^two different tokens of {re.escape(str(path))} share a 64-bit key .*reading it again with the slower"


def _collide(h):
    return np.full_like(h, int.from_bytes(b"abcdefgh", "little"))  # a short token's key too


def test_hash_collisions_are_caught_and_read_again_exactly(tmp_path, monkeypatch):
    """Every long token given the same key (also a short token's): the block check or the table's check finds it,
    and read_corpus says so (a warning naming the file) and reads the file again with the dict: the same result."""
    monkeypatch.setattr(data, "_BLOCK_BYTES", 4096)
    monkeypatch.setattr(data, "_SNIFF_CHARS", 64)
    monkeypatch.setattr(corpus_ids, "_mix", _collide)
    with pytest.raises(corpus_ids.HashCollision):
        corpus_ids.index_block(b"abcdefghi abcdefgh", 0, "x")  # within a block
    table = corpus_ids._TokenTable()
    table.add(corpus_ids.index_block(b"abcdefghi", 0, "x"))
    with pytest.raises(corpus_ids.HashCollision):
        table.add(corpus_ids.index_block(b"abcdefghij", 0, "x"))  # across blocks
    path = _long_token_corpus(tmp_path)
    words, counts, ids = old_build_vocabulary(old_tokens(path.read_bytes()), 2)
    for memory in (1 << 30, 0):
        with pytest.warns(UserWarning, match=_reread_warning(path)) as warned:
            got = corpus_ids.read_corpus(path, 2, None, memory_bytes=memory, spill_dir=str(tmp_path), processes=0)
        assert len(warned) == 1
        assert got.words == words
        np.testing.assert_array_equal(got.counts, counts)
        np.testing.assert_array_equal(np.asarray(got.ids if memory else got.ids.read(0, len(ids))), ids)
    assert [f for f in os.listdir(tmp_path) if "corpus_ids" in f] == []


def test_a_collision_in_a_reader_process_reads_again(tmp_path, monkeypatch):
    """A reader process that reports a collision (the protocol's 'collision' reply): the same exact fallback."""
    path = _long_token_corpus(tmp_path, n_lines=50)
    words, counts, ids = old_build_vocabulary(old_tokens(path.read_bytes()), 2)
    monkeypatch.setattr(corpus_ids, "_receive", lambda stream: ("collision", None))
    with pytest.warns(UserWarning, match=_reread_warning(path)):
        got = corpus_ids.read_corpus(path, 2, None, memory_bytes=1 << 30, spill_dir=str(tmp_path), processes=1)
    assert got.words == words
    np.testing.assert_array_equal(got.ids, ids)


def test_index_block_keys_and_first_appearances():
    """The block's distinct tokens by key, each with its first position (the bytes of those longer than 8 bytes in
    ``text``); the ids point into them."""
    block = "Bb ab B b ab αβγδεζηθ αβγδεζηθ bb".encode()
    got = corpus_ids.index_block(block, 0, "x")
    tokens = old_tokens(block)
    distinct, text = [], got.text
    for key, n in zip(got.keys.tolist(), got.lengths.tolist(), strict=True):  # short: the key's bytes
        distinct.append(key.to_bytes(8, "little")[:n].decode() if n <= 8 else text[:n].decode())
        text = text if n <= 8 else text[n:]
    assert text == b""
    assert sorted(set(tokens), key=distinct.index) == distinct and len(distinct) == len(set(tokens))
    assert [distinct[i] for i in got.ids] == tokens
    assert [tokens.index(w) for w in distinct] == got.first.tolist()
    assert got.keys.tolist() == sorted(got.keys.tolist())
    assert got.keys[distinct.index("ab")] == int.from_bytes(b"ab", "little")


def test_token_table_numbers_new_tokens_in_order_of_first_appearance():
    """Blocks merged in order, whitespace-only blocks among them: the ids of one pass (first_seen_index), also as
    the table's recent keys are merged into its large sorted run (here at 2 keys) and its arrays grow."""
    blocks = [b"   \n ", b"b a bb a ", b"  ", "bb c Abcdefghijk ΩΩ a".encode(), b"d e a Abcdefghijk f"]
    table, index = corpus_ids._TokenTable(), data.first_seen_index()
    table._RECENT_KEYS = 2
    for block in blocks:
        expected = data.index_tokens(index, data.block_tokens(block, 0, "x"))
        np.testing.assert_array_equal(table.add(corpus_ids.index_block(block, 0, "x")), expected)
    assert table.decode(np.arange(len(table))) == list(index) == ["b", "a", "bb", "c", "abcdefghijk", "ωω", "d", "e",
                                                                  "f"]
    assert len(table.sorted_keys) >= 6 and len(table.sorted_keys) + len(table.recent_keys) == len(table)
