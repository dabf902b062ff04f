"""Corpora and vocabularies for both word2vec programs, and the tutorial's batch generator.

* :func:`read_words` reads text8 (or any UTF-8 text, plain or ``.gz`` / ``.bz2`` / ``.zip``, every member of a
  zip archive in order) into tokens; :func:`token_blocks` (:func:`text_blocks` + :func:`block_tokens`) reads the
  same tokens a few megabytes at a time, never holding the file; :func:`corpus_source` / :func:`load_corpus` are
  what both programs' ``--corpus`` / ``--download-text8`` / default corpus flags read.
* :func:`build_dataset` is TF's tutorial vocabulary (``word2vec_basic.py``): UNK is id 0, then
  ``Counter.most_common``; :func:`generate_batch` is the tutorial's batch generator, with its ``data_index``
  backtrack. Both are TF1's code, kept exact where observable.
* :func:`build_vocabulary` is the fast trainer's vocabulary (``--min-count``, no UNK: out-of-vocabulary
  tokens are dropped, as gensim and word2vec's C tool do), built in one pass from provisional ids in order of
  first appearance (:func:`first_seen_index`, :func:`index_tokens`, :func:`rank_vocabulary`; the trainer does
  the same for a file block by block, ``corpus_ids.py``), and :func:`subsample_keep_prob` its subsampling rule
  (from ``models/embedding/word2vec.py``). The trainer's batches are built on the device (``batches.py``).

Tokenisation
------------
* **text8-style input** (only the bytes ``a-z``, space and newline, as in text8 itself): split on
  whitespace, exactly TF's ``read_data`` (``f.read(...).split()``).
* **Any other text**: decoded as UTF-8 (a BOM is dropped), lowercased, and split into maximal runs of
  Unicode letters and digits (regex ``[^\\W_]+``). Punctuation, apostrophes and underscores separate
  tokens (``"Don't stop_now"`` -> ``don t stop now``), the same way text8 was made from Wikipedia.

The two rules agree on text8-style input, so the block reader applies the second everywhere, fast: ASCII is
lowercased and split with one ``bytes.translate`` + ``split`` (the regex's result for ASCII), and only the
whitespace-delimited pieces holding other bytes go through the regex; blocks are cut after ASCII whitespace,
which ends every token, UTF-8 sequence and lowercasing context (Greek final sigma looks past ``'`` and ``.``,
never past whitespace). ``tests/test_word2vec_corpus_ids.py`` checks it against the whole-file reader.

Every bad-input problem raises :class:`CorpusError` with a one-line message naming the file and the
problem, so a command-line front end can print it and exit non-zero without a traceback.
"""

from __future__ import annotations

import bz2
import codecs
import collections
import contextlib
import dataclasses
import gzip
import hashlib
import itertools
import os
import random
import re
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import IO, NamedTuple

import numpy as np

__all__ = [
    "TEXT8_SHA256",
    "TEXT8_SIZE",
    "TEXT8_URL",
    "BatchState",
    "CorpusError",
    "Dataset",
    "Vocabulary",
    "build_dataset",
    "block_token_text",
    "block_tokens",
    "build_vocabulary",
    "corpus_source",
    "default_corpus",
    "download_text8",
    "expected_keep_fraction",
    "first_seen_index",
    "generate_batch",
    "index_tokens",
    "load_corpus",
    "rank_vocabulary",
    "read_words",
    "subsample_keep_prob",
    "text_blocks",
    "token_blocks",
    "tokenize",
]

TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"
TEXT8_SIZE = 31344016
TEXT8_SHA256 = "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"

# gensim's test data: the files the offline default corpus is made of.
WIKI_EXCERPT = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
LEE_BACKGROUND = "lee_background.cor"

_TOKEN_RE = re.compile(r"[^\W_]+")
_NON_TOKEN_RE = re.compile(r"[\W_]+")  # its complement: what separates two tokens
# ASCII text: letters lowercased, digits kept, every other byte (a separator for the regex too) a space.
_ASCII_TABLE = bytes(c + 32 if 65 <= c <= 90 else c if 97 <= c <= 122 or 48 <= c <= 57 else 32 for c in range(256))
_ASCII_WHITESPACE = [b" ", b"\n", b"\t", b"\r", b"\x0b", b"\x0c"]
_IS_ASCII_WHITESPACE = np.zeros(256, bool)
_IS_ASCII_WHITESPACE[[ord(c) for c in _ASCII_WHITESPACE]] = True
# Bytes of text per block (the first block holds at least the sniffed characters). A block's numpy passes over its
# tokens then mostly stay in the CPU's caches: 1 MiB blocks read three corpora 1.01-1.55x as fast as 4 MiB ones;
# smaller ones were no faster overall (each block is merged into the table) (benchmarks/word2vec_block_sizes.py).
_BLOCK_BYTES = 1 << 20
# A text file is mostly letters and digits; binary data that happens to be valid UTF-8 is not.
_MIN_WORD_CHAR_FRACTION = 0.5
_SNIFF_CHARS = 1 << 20


class CorpusError(Exception):
    """A corpus cannot be used; the message is one line naming the file and the problem."""


# --------------------------------------------------------------------------------------------------
# Reading


def tokenize(text: str) -> list[str]:
    """Lowercase ``text`` and split it into runs of letters and digits.

    >>> tokenize("Anarchism (from Greek: anarkhia) isn't 42_000")
    ['anarchism', 'from', 'greek', 'anarkhia', 'isn', 't', '42', '000']
    """
    return _TOKEN_RE.findall(text.lower())


@contextlib.contextmanager
def _decompressed(path: str) -> Iterator[IO[bytes]]:
    """``path`` opened for reading its (decompressed) bytes; the format is sniffed from magic bytes, so a renamed
    text8.zip or an extension-less .gz still works. Read errors surface from :func:`_raw_blocks`."""
    if not os.path.exists(path):
        raise CorpusError(f"corpus file {path} does not exist")
    if os.path.isdir(path):
        raise CorpusError(f"corpus path {path} is a directory, not a file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CorpusError(f"corpus file {path} cannot be read: {e.strerror or e}") from None
    with f:
        magic = f.read(4)
        f.seek(0)
        if magic in (b"PK\x03\x04", b"PK\x05\x06"):
            with _zip_member(f, path) as member:
                yield member
            return
        if magic[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=f) as stream:
                yield stream
            return
        if magic[:3] == b"BZh":
            with bz2.BZ2File(f) as stream:
                yield stream
            return
        if path.endswith((".gz", ".bz2", ".zip")):
            raise CorpusError(f"corpus file {path} is not a valid {path.rsplit('.', 1)[1]} file (bad header)")
        yield f


@contextlib.contextmanager
def _zip_member(f: IO[bytes], path: str) -> Iterator[IO[bytes]]:
    # Every member, in the archive's order, one line break between them (TF's read_data read only namelist()[0],
    # which silently dropped the rest of a multi-member archive); directory entries are skipped.
    try:
        zf = zipfile.ZipFile(f)
        members = [m for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise CorpusError(f"corpus file {path} is a zip archive with no members")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
        raise CorpusError(f"corpus file {path} is not a valid zip file: {e}") from None
    with zf:
        yield _ZipMembers(zf, members)


class _ZipMembers:
    """The members of a zip archive read as one stream, a line break between two members (``read(size)``
    only: what :func:`_raw_blocks` needs); each member is opened when the previous one ends."""

    def __init__(self, zf: zipfile.ZipFile, members: list[zipfile.ZipInfo]) -> None:
        self._zf, self._members, self._current = zf, list(members), None

    def read(self, size: int) -> bytes:
        while self._members or self._current is not None:
            if self._current is None:
                self._current = self._zf.open(self._members.pop(0))
            chunk = self._current.read(size)
            if chunk:
                return chunk
            self._current.close()
            self._current = None
            if self._members:
                return b"\n"
        return b""


def _format_name(magic: bytes) -> str:
    return {b"PK": "zip", b"\x1f\x8b": "gzip", b"BZ": "bzip2"}.get(magic[:2], "")


def _raw_blocks(path: str, first_bytes: int, block_bytes: int) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` in blocks of about ``block_bytes`` (the first about ``first_bytes``),
    each cut after an ASCII whitespace byte (or at the end), so that no token, UTF-8 sequence or lowercasing
    context spans two blocks."""
    with _decompressed(path) as stream:
        carry = b""
        size = first_bytes
        while True:
            try:
                chunk = stream.read(size)
                size = block_bytes
            except (OSError, EOFError, zlib.error, ValueError, zipfile.BadZipFile) as e:
                with open(path, "rb") as f:
                    kind = _format_name(f.read(2))
                if kind:
                    raise CorpusError(f"corpus file {path} is not a valid {kind} file: {e}") from None
                raise CorpusError(f"corpus file {path} cannot be read: {getattr(e, 'strerror', None) or e}") from None
            if not chunk:
                if carry:
                    yield carry
                return
            buf = carry + chunk if carry else chunk
            cut = max(buf.rfind(c) for c in _ASCII_WHITESPACE)
            if cut < 0:  # no whitespace yet: a block never splits a token
                carry = buf
                continue
            carry = buf[cut + 1:]
            yield buf[: cut + 1]


def _check_text(text: str, path: str) -> None:
    """The sniff of the old whole-file reader, on the first million characters: mostly letters and digits."""
    sample = text[:_SNIFF_CHARS]
    non_space = len(sample) - len(re.findall(r"\s", sample))
    word_chars = sum(len(t) for t in _TOKEN_RE.findall(sample))
    if non_space and word_chars < _MIN_WORD_CHAR_FRACTION * non_space:
        raise CorpusError(
            f"corpus file {path} does not look like text "
            f"(only {word_chars / non_space:.0%} of its characters are letters or digits)"
        )


def _zip_members(path: str) -> int:
    """How many files a zip corpus holds (0: not a zip archive)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(1 for m in zf.infolist() if not m.is_dir())
    except (zipfile.BadZipFile, OSError):
        return 0


def _decode(raw: bytes, path: str, offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"corpus file {path} is not UTF-8 text (invalid byte at offset {offset + e.start})"
        raise CorpusError(msg) from None


def _dirty_runs(block: bytes) -> tuple[list[int], list[int]]:
    """The runs of a block's whitespace-delimited pieces that hold a non-ASCII byte (consecutive pieces merged):
    ``(starts, ends)``. Between them the block is ASCII. (The block holds a non-ASCII byte.)"""
    arr = np.frombuffer(block, np.uint8)
    # The whitespace bytes are among those <= 32: one comparison over the block, the table only over those (a
    # lookup of every byte, two copies of the positions and a sort made this ~1.7x slower; a few % of reading).
    low = np.flatnonzero(arr <= 32)
    bounds = np.concatenate([[0], low[_IS_ASCII_WHITESPACE[arr[low]]], [len(block)]])
    # Piece p runs from bounds[p] to bounds[p + 1]; the non-ASCII bytes' pieces come in order, so unique = changes.
    pieces = np.searchsorted(bounds, np.flatnonzero(arr >= 0x80), side="right") - 1
    dirty = pieces[np.concatenate([[True], pieces[1:] != pieces[:-1]])]
    split = np.flatnonzero(np.diff(dirty) > 1) + 1
    return (bounds[dirty[np.concatenate([[0], split])]].tolist(),
            bounds[dirty[np.concatenate([split - 1, [len(dirty) - 1]])] + 1].tolist())


def block_tokens(block: bytes, offset: int, path: str, as_bytes: bool = False) -> list:
    """The tokens of one block of :func:`text_blocks` (see the module docstring), as ``str`` or as UTF-8 ``bytes``;
    ``offset`` and ``path`` name the place of a UTF-8 error.

    ASCII text takes the fast path: one ``bytes.translate`` (letters lowercased, digits kept, every other byte a
    space) and ``split``, which for ASCII is exactly the regex on the lowercased text. Where a block has other
    bytes, only its whitespace-delimited pieces that contain them go through the regex (decoded and lowercased
    piece by piece: ASCII whitespace ends every token and every lowercasing context, e.g. Greek final sigma).
    """
    if block.isascii():
        clean = block.translate(_ASCII_TABLE)
        return clean.split() if as_bytes else clean.decode("ascii").split()
    tokens: list = []
    clean_from = 0
    for lo, hi in zip(*_dirty_runs(block), strict=True):
        clean = block[clean_from:lo].translate(_ASCII_TABLE)
        tokens += clean.split() if as_bytes else clean.decode("ascii").split()
        words = tokenize(_decode(block[lo:hi], path, offset + lo))
        tokens += [w.encode("utf-8") for w in words] if as_bytes else words
        clean_from = hi
    clean = block[clean_from:].translate(_ASCII_TABLE)
    tokens += clean.split() if as_bytes else clean.decode("ascii").split()
    return tokens


def block_token_text(block: bytes, offset: int, path: str) -> bytes:
    """The tokens of one block of :func:`text_blocks` (:func:`block_tokens`'s, as UTF-8) in one ``bytes``, with
    spaces around them (a token holds neither a space nor a NUL byte), without a Python object per token: the
    ASCII stretches through the one ``bytes.translate``, each run of non-ASCII pieces through the regex's
    complement (every maximal run of non-token characters becomes a space: ``tokenize``'s tokens, space-joined).

    >>> block_token_text("Don't  stop_now Café!".encode(), 0, "x").decode().split()
    ['don', 't', 'stop', 'now', 'café']
    """
    if block.isascii():
        return block.translate(_ASCII_TABLE)
    parts: list[bytes] = []
    clean_from = 0
    for lo, hi in zip(*_dirty_runs(block), strict=True):
        parts.append(block[clean_from:lo].translate(_ASCII_TABLE))
        parts.append(_NON_TOKEN_RE.sub(" ", _decode(block[lo:hi], path, offset + lo).lower()).encode("utf-8"))
        clean_from = hi
    parts.append(block[clean_from:].translate(_ASCII_TABLE))
    return b" ".join(parts)


def text_blocks(path: str | os.PathLike[str], block_bytes: int | None = None) -> Iterator[tuple[bytes, int]]:
    """The decompressed bytes of a corpus file in blocks of about ``block_bytes``, each cut after an ASCII
    whitespace byte, with the offset of each in the file's text: ``(block, offset)``, for :func:`block_tokens`.
    The first block is checked (NUL bytes in the first MiB; mostly letters and digits in the first million
    characters; a UTF-8 BOM is dropped), and a file without a non-whitespace byte is an error at the end.

    Raises:
        CorpusError: missing, unreadable, corrupt archive, binary, not text, or empty.
    """
    path = os.fspath(path)
    block_bytes = block_bytes or _BLOCK_BYTES
    offset, any_text = 0, False
    # The first block holds at least the sniffed million characters (4 bytes each at most).
    first_bytes = max(block_bytes, 4 * _SNIFF_CHARS)
    for i, block in enumerate(_raw_blocks(path, first_bytes, block_bytes)):
        start = offset
        offset += len(block)
        any_text = any_text or bool(block.strip())
        if i == 0:
            if b"\x00" in block[:_SNIFF_CHARS]:
                raise CorpusError(f"corpus file {path} looks binary (NUL bytes), not UTF-8 text")
            if block.startswith(codecs.BOM_UTF8):
                block, start = block[3:], start + 3
            _check_text(block.decode("ascii") if block.isascii() else _decode(block, path, start), path)
        yield block, start
    if not any_text:
        raise CorpusError(f"corpus file {path} is empty")


def token_blocks(path: str | os.PathLike[str], *, as_bytes: bool = False,
                 block_bytes: int | None = None) -> Iterator[list]:
    """The tokens of a corpus file, block by block (lists of ``str``, or of UTF-8 ``bytes`` with ``as_bytes``),
    reading a few megabytes at a time: memory does not grow with the file. Together the blocks are exactly
    :func:`read_words`'s list. The checks are the same too, each on the data it needs (:func:`text_blocks`):
    NUL bytes in the first MiB, the share of letters and digits in the first million characters, UTF-8
    throughout, emptiness and the absence of words at the end.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp(), "corpus.txt")
    >>> _ = path.write_text("the quick brown fox\\njumps over the lazy dog\\n")
    >>> [len(b) for b in token_blocks(path)]         # a short file is one block
    [9]

    Raises:
        CorpusError: missing, unreadable, not text, corrupt archive, or no words at all.
    """
    path = os.fspath(path)
    any_tokens = False
    for block, offset in text_blocks(path, block_bytes):
        tokens = block_tokens(block, offset, path, as_bytes)
        if tokens:
            any_tokens = True
            yield tokens
    if not any_tokens:
        raise CorpusError(f"corpus file {path} contains no words")


def read_words(path: str | os.PathLike[str]) -> list[str]:
    """Read a corpus into a list of tokens (see the module docstring for the tokenisation).

    Plain files, ``.gz``, ``.bz2`` and ``.zip`` (every member, in order; TF's ``read_data`` read only the
    first) are accepted; the compression is recognised from the file's magic bytes. :func:`token_blocks` reads
    the same tokens a block at a time.

    >>> import gzip, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "corpus.txt.gz")
    >>> with gzip.open(path, "wt") as f:
    ...     _ = f.write("The quick brown fox\\njumps over the lazy dog\\n")
    >>> words = read_words(path)
    >>> len(words), words[:3]
    (9, ['the', 'quick', 'brown'])

    Raises:
        CorpusError: missing, unreadable, not text, corrupt archive, or no words at all.
    """
    words: list[str] = []
    for tokens in token_blocks(path):
        words += tokens
    return words


def default_corpus() -> tuple[list[str], str]:
    """The offline default corpus: real English text shipped with gensim's test data.

    It is the English Wikipedia excerpt gensim ships (``enwiki-latest-pages-articles1.xml-p000000010-
    p000030302-shortened.bz2``: 107 articles, 486,041 words), read with gensim's own reader
    (``gensim.corpora.wikicorpus.extract_pages`` for the XML and ``filter_wiki`` for the markup; main
    namespace, redirects skipped), followed by the Lee news corpus (``lee_background.cor``: 300
    Australian news articles, 61,260 words): 547,301 words in all (gensim 4.4), tokenised with
    :func:`tokenize`. Reading takes about 5 seconds and needs no network. (gensim's other large text,
    ``head500.noblanks.cor``, is stemmed, so it is left out.)

    >>> words, description = default_corpus()
    >>> len(words), words[:3]
    (547301, ['anarchism', 'is', 'a'])

    Raises:
        CorpusError: gensim or its test data is not installed.
    """
    try:
        from gensim.corpora.wikicorpus import extract_pages, filter_wiki
        from gensim.test.utils import datapath
    except ImportError:
        raise CorpusError(
            "the default corpus needs gensim's test data: pip install gensim (or pass --corpus PATH)"
        ) from None
    wiki_path, lee_path = datapath(WIKI_EXCERPT), datapath(LEE_BACKGROUND)
    for p in (wiki_path, lee_path):
        if not os.path.isfile(p):
            raise CorpusError(f"gensim's test data file {p} is missing: reinstall gensim or pass --corpus")
    wiki_words: list[str] = []
    articles = 0
    try:
        with bz2.open(wiki_path, "rb") as f:
            for _title, text, _pageid in extract_pages(f, filter_namespaces=("0",)):
                if text.lstrip().lower().startswith("#redirect"):
                    continue
                articles += 1
                wiki_words.extend(tokenize(filter_wiki(text)))
    except (OSError, EOFError, ValueError) as e:
        raise CorpusError(f"gensim's Wikipedia excerpt {wiki_path} cannot be read: {e}") from None
    lee_words = read_words(lee_path)
    with open(lee_path, encoding="utf-8") as f:
        lee_docs = sum(1 for line in f if line.strip())
    words = wiki_words + lee_words
    description = (
        f"gensim test data (offline default): English Wikipedia excerpt {WIKI_EXCERPT} "
        f"({articles} articles, {len(wiki_words):,} words, read with gensim.corpora.wikicorpus) + "
        f"Lee news corpus {LEE_BACKGROUND} ({lee_docs} articles, {len(lee_words):,} words) "
        f"= {len(words):,} words"
    )
    return words, description


def download_text8(
    dest_dir: str | os.PathLike[str],
    url: str = TEXT8_URL,
    *,
    expected_size: int = TEXT8_SIZE,
    expected_sha256: str = TEXT8_SHA256,
    timeout: float = 30.0,
) -> str:
    """Download ``text8.zip`` into ``dest_dir`` (only when called), verify it, and return its path.

    An existing file that passes the checks is reused. The download goes to a temporary file in
    ``dest_dir`` and is renamed into place only after the size and sha256 match, so an interrupted
    or corrupted download never leaves a ``text8.zip`` behind.

    >>> path = download_text8("/tmp/data")        # doctest: +SKIP
    >>> words = read_words(path)                   # doctest: +SKIP

    Raises:
        CorpusError: offline / unreachable (``could not download text8 from URL: reason; ...``), or the
            file does not match the expected size or sha256.
    """
    dest_dir = os.fspath(dest_dir)
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, "text8.zip")
    if os.path.isfile(dest) and _verify(dest, expected_size, expected_sha256) is None:
        return dest
    fd, tmp = tempfile.mkstemp(prefix=".text8.", suffix=".part", dir=dest_dir)
    try:
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise CorpusError(
                f"could not download text8 from {url}: {reason}; check the network or pass --corpus PATH"
            ) from None
        problem = _mismatch(size, digest.hexdigest(), expected_size, expected_sha256)
        if problem:
            raise CorpusError(f"downloaded text8 from {url} failed verification: {problem}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _mismatch(size: int, sha256: str, expected_size: int, expected_sha256: str) -> str | None:
    if size != expected_size:
        return f"size {size} bytes, expected {expected_size}"
    if sha256 != expected_sha256:
        return f"sha256 {sha256}, expected {expected_sha256}"
    return None


def _verify(path: str, expected_size: int, expected_sha256: str) -> str | None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return _mismatch(os.path.getsize(path), digest.hexdigest(), expected_size, expected_sha256)


def corpus_source(
    corpus: str | None, download_text8: bool = False, data_dir: str = ".", log: Callable[[str], None] | None = None
) -> tuple[str | list[str], Callable[[int], str]]:
    """The corpus the command-line flags name, as a path to read (``corpus``, or text8 downloaded into
    ``data_dir`` if ``download_text8``) or the words of the offline :func:`default_corpus` (``log`` is told
    first: it takes seconds to read); and a function of its word count that describes it in one line.

    Raises:
        CorpusError: see :func:`download_text8` and :func:`default_corpus`.
    """
    if corpus:
        members = _zip_members(corpus)
        every = f"{members} files of the zip archive, in order, " if members > 1 else ""
        return corpus, lambda n: f"{os.path.abspath(corpus)} ({every}{n:,} words)"
    if download_text8:
        # The flag's name shadows the function here (calling it was a TypeError before): look the function up.
        path = globals()["download_text8"](data_dir)
        return path, lambda n: f"text8 ({path}, {n:,} words)"
    if log is not None:
        log("reading the embedded default corpus (gensim test data) ...")
    words, description = default_corpus()
    return words, lambda _n: description


def load_corpus(
    corpus: str | None, download_text8: bool = False, data_dir: str = ".", log: Callable[[str], None] | None = None
) -> tuple[list[str], str]:
    """The words of the corpus the command-line flags name, and a one-line description of it.

    ``corpus`` (a path) if given, else text8 downloaded into ``data_dir`` if ``download_text8``, else the
    offline :func:`default_corpus` (``log`` is told first: it takes seconds to read). See :func:`corpus_source`.

    Raises:
        CorpusError: see :func:`read_words`, :func:`download_text8` and :func:`default_corpus`.
    """
    source, describe = corpus_source(corpus, download_text8, data_dir, log)
    words = read_words(source) if isinstance(source, str) else source
    return words, describe(len(words))


# --------------------------------------------------------------------------------------------------
# Vocabulary


class Dataset(NamedTuple):
    """``build_dataset``'s result; unpacks as TF's ``data, count, dictionary, reversed_dictionary``."""

    data: np.ndarray
    count: list
    dictionary: dict[str, int]
    reversed_dictionary: dict[int, str]

    @property
    def vocabulary_size(self) -> int:
        """The actual vocabulary size (``n_words`` unless the corpus had fewer distinct words)."""
        return len(self.count)


def build_dataset(words: Sequence[str], n_words: int) -> Dataset:
    """TF's ``build_dataset``: UNK is id 0, the ``n_words - 1`` most common words follow.

    ``count`` is ``[['UNK', n_unk], (word, n), ...]``; ties keep first-appearance order (Python 3.7+
    ``Counter.most_common``). ``data`` is an int32 array of ids. When the corpus has fewer than
    ``n_words - 1`` distinct words the vocabulary shrinks (a warning names both numbers; see
    ``Dataset.vocabulary_size``).

    >>> data, count, dictionary, rev = build_dataset("the cat the dog the end".split(), 3)
    >>> data.tolist(), count
    ([1, 2, 1, 0, 1, 0], [['UNK', 2], ('the', 3), ('cat', 1)])

    Raises:
        ValueError: ``n_words < 2`` (no room for a word besides UNK).
        CorpusError: ``words`` is empty.
    """
    if n_words < 2:
        raise ValueError(f"vocabulary size must be at least 2 (UNK and one word), got {n_words}")
    if len(words) == 0:
        raise CorpusError("the corpus contains no words")
    counter = collections.Counter(words)
    if len(counter) < n_words - 1:
        warnings.warn(
            f"the corpus has only {len(counter)} distinct words, fewer than the vocabulary size {n_words} "
            f"minus UNK; using a vocabulary of {len(counter) + 1}",
            stacklevel=2,
        )
    count: list = [["UNK", -1]]
    count.extend(counter.most_common(n_words - 1))
    dictionary = {word: index for index, (word, _) in enumerate(count)}
    # One C-level pass instead of TF's Python loop: 17M text8 tokens map in about a second.
    data = np.fromiter(map(dictionary.get, words, itertools.repeat(0)), dtype=np.int32, count=len(words))
    count[0][1] = int(np.count_nonzero(data == 0))
    reversed_dictionary = dict(zip(dictionary.values(), dictionary.keys(), strict=True))
    return Dataset(data, count, dictionary, reversed_dictionary)


class Vocabulary(NamedTuple):
    """:func:`build_vocabulary`'s result: the words (most frequent first), their counts (int64) and the corpus
    as int32 ids with out-of-vocabulary tokens dropped (a numpy array; for a streamed corpus, an
    ``examples.word2vec.corpus_ids.IdFile``)."""

    words: list[str]
    counts: np.ndarray
    ids: np.ndarray


def first_seen_index() -> dict:
    """An empty ``{token: provisional id}`` map that gives each new token the next id, in order of first
    appearance (a ``defaultdict`` whose default is the next number of a counter: :func:`index_tokens` runs at C
    speed; the counter, unlike the map's own ``__len__``, makes no reference cycle, which would keep a dropped
    map alive until a full garbage collection).

    >>> index = first_seen_index()
    >>> index_tokens(index, ["b", "a", "b"]).tolist(), list(index)
    ([0, 1, 0], ['b', 'a'])
    """
    return collections.defaultdict(itertools.count().__next__)


def index_tokens(index: dict, tokens: Sequence) -> np.ndarray:
    """The provisional ids (int32) of ``tokens`` in ``index`` (:func:`first_seen_index`), new tokens added."""
    return np.fromiter(map(index.__getitem__, tokens), np.int32, count=len(tokens))


def rank_vocabulary(first_seen: Sequence, counts: np.ndarray, min_count: int,
                    max_vocab: int | None) -> tuple[list, np.ndarray, np.ndarray]:
    """``(words, counts, remap)`` of the words of ``first_seen`` (in order of first appearance, with their
    ``counts``) that the vocabulary keeps: most frequent first, ties in first-appearance order (as
    ``Counter.most_common``), at most ``max_vocab``, each at least ``min_count`` times. ``remap[i]`` is the
    vocabulary id of ``first_seen[i]``, -1 if dropped.

    >>> words, counts, remap = rank_vocabulary(["c", "a", "b"], np.array([1, 3, 2]), 2, None)
    >>> words, counts.tolist(), remap.tolist()
    (['a', 'b'], [3, 2], [-1, 0, 1])

    Raises:
        CorpusError: fewer than 2 words are left.
    """
    counts = np.asarray(counts, np.int64)
    order = np.argsort(-counts, kind="stable")
    if max_vocab is not None:
        order = order[:max_vocab]
    order = order[counts[order] >= min_count]
    if len(order) < 2:
        raise CorpusError(
            f"the vocabulary has {len(order)} word(s) with at least --min-count {min_count} occurrences; "
            "need at least 2 (lower --min-count or use a larger corpus)"
        )
    remap = np.full(len(counts), -1, np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    return [first_seen[i] for i in order.tolist()], counts[order], remap


def build_vocabulary(words: Sequence[str], min_count: int, max_vocab: int | None = None) -> Vocabulary:
    """The fast trainer's vocabulary: words with ``count >= min_count``, most frequent first (ties in
    first-appearance order), at most ``max_vocab``; their counts; and the corpus as ids, out-of-vocabulary
    tokens dropped (as gensim and the original word2vec C tool do; TF's tutorials kept an ``UNK`` row instead,
    which soaks up a large share of the updates and pollutes its neighbours' contexts). One pass over the
    tokens (:func:`index_tokens`); ``examples.word2vec.corpus_ids`` does the same for a file, block by block.

    >>> vocab, counts, ids = build_vocabulary("a b a c a b".split(), 2, None)
    >>> vocab, counts.tolist(), ids.tolist()
    (['a', 'b'], [3, 2], [0, 1, 0, 0, 1])

    Raises:
        CorpusError: fewer than 2 words are left.
    """
    index = first_seen_index()
    provisional = index_tokens(index, words)
    counts = np.bincount(provisional, minlength=len(index))
    vocab, counts, remap = rank_vocabulary(list(index), counts, min_count, max_vocab)
    ids = remap[provisional]
    return Vocabulary(vocab, counts, ids[ids >= 0])


def expected_keep_fraction(counts: np.ndarray, keep_prob: np.ndarray) -> float:
    """The share of the corpus's in-vocabulary tokens that subsampling keeps, expected: ``sum(counts * keep) /
    sum(counts)`` (float64; from the counts, so it needs no pass over the corpus).

    >>> expected_keep_fraction(np.array([3, 1]), np.array([0.5, 1.0], np.float32))
    0.625
    """
    counts = np.asarray(counts, np.float64)
    return float(np.dot(counts, np.asarray(keep_prob, np.float64)) / counts.sum())


# --------------------------------------------------------------------------------------------------
# Batches (word2vec_basic)


@dataclasses.dataclass
class BatchState:
    """What ``word2vec_basic.py`` kept in globals: ``data_index`` and Python's ``random`` module."""

    data_index: int = 0
    rng: random.Random = dataclasses.field(default_factory=random.Random)

    @classmethod
    def seeded(cls, seed: int | None, data_index: int = 0) -> BatchState:
        return cls(data_index=data_index, rng=random.Random(seed))


def _check_batch_args(n_data: int, batch_size: int, num_skips: int, skip_window: int) -> int:
    if skip_window < 1:
        raise ValueError(f"skip_window must be at least 1, got {skip_window}")
    if num_skips < 1:
        raise ValueError(f"num_skips must be at least 1, got {num_skips}")
    if batch_size < 1 or batch_size % num_skips != 0:
        raise ValueError(f"batch_size ({batch_size}) must be a positive multiple of num_skips ({num_skips})")
    if num_skips > 2 * skip_window:
        raise ValueError(
            f"num_skips ({num_skips}) must not exceed 2 * skip_window ({2 * skip_window}): "
            "each centre word has only that many context words"
        )
    span = 2 * skip_window + 1
    if n_data < span:
        raise ValueError(f"the data has {n_data} tokens, fewer than the window span {span}")
    return span


def generate_batch(
    data: Sequence[int] | np.ndarray,
    batch_size: int,
    num_skips: int,
    skip_window: int,
    state: BatchState,
) -> tuple[np.ndarray, np.ndarray]:
    """TF's late-1.x ``generate_batch``, with ``data_index`` and the RNG held in ``state``.

    Each of the ``batch_size // num_skips`` consecutive centre words appears ``num_skips`` times in a
    row with distinct context words drawn by ``random.sample``; at the end ``data_index`` backtracks by
    the span so the next batch continues with the next centre word.

    >>> state = BatchState.seeded(0)
    >>> batch, labels = generate_batch(list(range(10, 20)), 8, 2, 1, state)
    >>> batch.tolist(), state.data_index
    ([11, 11, 12, 12, 13, 13, 14, 14], 4)
    """
    span = _check_batch_args(len(data), batch_size, num_skips, skip_window)
    batch = np.ndarray(shape=(batch_size,), dtype=np.int32)
    labels = np.ndarray(shape=(batch_size, 1), dtype=np.int32)
    buffer: collections.deque = collections.deque(maxlen=span)
    if state.data_index + span > len(data):
        state.data_index = 0
    buffer.extend(data[state.data_index : state.data_index + span])
    state.data_index += span
    for i in range(batch_size // num_skips):
        context_words = [w for w in range(span) if w != skip_window]
        words_to_use = state.rng.sample(context_words, num_skips)
        for j, context_word in enumerate(words_to_use):
            batch[i * num_skips + j] = buffer[skip_window]
            labels[i * num_skips + j, 0] = buffer[context_word]
        if state.data_index == len(data):
            buffer.extend(data[0:span])
            state.data_index = span
        else:
            buffer.append(data[state.data_index])
            state.data_index += 1
    # Backtrack a little bit to avoid skipping words in the end of a batch (TF's comment).
    state.data_index = (state.data_index + len(data) - span) % len(data)
    return batch, labels


# --------------------------------------------------------------------------------------------------
# Subsampling (models/embedding/word2vec.py)


def subsample_keep_prob(counts: Sequence[int] | np.ndarray, total: int, t: float = 1e-3) -> np.ndarray:
    """Probability of keeping each occurrence of a word, as in ``word2vec_kernels.cc``.

    ``keep = (sqrt(f / (t·N)) + 1) · (t·N) / f`` clipped to 1, with ``f`` the word's count and ``N`` the
    corpus size. ``t <= 0`` disables subsampling (all ones); words with count 0 are kept.

    >>> subsample_keep_prob([1000, 10], total=10000, t=1e-3).round(3).tolist()
    [0.11, 1.0]
    """
    f = np.asarray(counts, dtype=np.float64)
    if t <= 0:
        return np.ones_like(f)
    tn = t * float(total)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (np.sqrt(f / tn) + 1.0) * tn / f
    return np.where(f > 0, np.minimum(keep, 1.0), 1.0)
