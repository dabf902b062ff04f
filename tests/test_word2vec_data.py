"""examples/word2vec/data.py: corpora, TF's build_dataset and generate_batch, the trainer's vocabulary and
subsampling."""

import bz2
import collections
import gzip
import hashlib
import os
import random
import time
import zipfile

import numpy as np
import pytest

from examples.word2vec import data as w2v_data
from examples.word2vec.data import (
    BatchState,
    CorpusError,
    build_dataset,
    build_vocabulary,
    default_corpus,
    download_text8,
    generate_batch,
    load_corpus,
    read_words,
    subsample_keep_prob,
    tokenize,
)

TEXT = (
    "anarchism originated as a term of abuse first used against early working class radicals "
    "including the diggers of the english revolution and the sans culottes of the french revolution "
    "whilst the term is still used in a pejorative way to describe any act that used violent means "
    "to destroy the organization of society it has also been taken up as a positive label"
)


# ------------------------------------------------------------------------------------------------
# TF's code, verbatim apart from globals -> arguments: the oracle for the vectorised/stateful versions.


def tf_build_dataset(words, n_words):
    count = [["UNK", -1]]
    count.extend(collections.Counter(words).most_common(n_words - 1))
    dictionary = dict()
    for word, _ in count:
        dictionary[word] = len(dictionary)
    data = list()
    unk_count = 0
    for word in words:
        index = dictionary.get(word, 0)
        if index == 0:
            unk_count += 1
        data.append(index)
    count[0][1] = unk_count
    reversed_dictionary = dict(zip(dictionary.values(), dictionary.keys(), strict=True))
    return data, count, dictionary, reversed_dictionary


class TFGenerator:
    def __init__(self, data, seed):
        self.data, self.data_index, self.random = data, 0, random.Random(seed)

    def generate_batch(self, batch_size, num_skips, skip_window):
        data = self.data
        assert batch_size % num_skips == 0
        assert num_skips <= 2 * skip_window
        batch = np.ndarray(shape=(batch_size), dtype=np.int32)
        labels = np.ndarray(shape=(batch_size, 1), dtype=np.int32)
        span = 2 * skip_window + 1
        buffer = collections.deque(maxlen=span)
        if self.data_index + span > len(data):
            self.data_index = 0
        buffer.extend(data[self.data_index : self.data_index + span])
        self.data_index += span
        for i in range(batch_size // num_skips):
            context_words = [w for w in range(span) if w != skip_window]
            words_to_use = self.random.sample(context_words, num_skips)
            for j, context_word in enumerate(words_to_use):
                batch[i * num_skips + j] = buffer[skip_window]
                labels[i * num_skips + j, 0] = buffer[context_word]
            if self.data_index == len(data):
                buffer.extend(data[0:span])
                self.data_index = span
            else:
                buffer.append(data[self.data_index])
                self.data_index += 1
        self.data_index = (self.data_index + len(data) - span) % len(data)
        return batch, labels


# ------------------------------------------------------------------------------------------------
# build_dataset


@pytest.mark.parametrize("n_words", [2, 5, 17, 40])
def test_build_dataset_matches_tf(n_words):
    words = TEXT.split()
    data, count, dictionary, reversed_dictionary = build_dataset(words, n_words)
    tf_data, tf_count, tf_dict, tf_rev = tf_build_dataset(words, n_words)
    assert data.dtype == np.int32
    assert data.tolist() == tf_data
    assert [list(c) for c in count] == [list(c) for c in tf_count]
    assert dictionary == tf_dict and reversed_dictionary == tf_rev
    assert count[0] == ["UNK", tf_data.count(0)]


def test_build_dataset_tie_order_is_first_appearance():
    data, count, dictionary, _ = build_dataset("b a c a b c d".split(), 4)
    assert count == [["UNK", 1], ("b", 2), ("a", 2), ("c", 2)]
    assert data.tolist() == [1, 2, 3, 2, 1, 3, 0]


def test_build_dataset_shrinks_with_warning():
    with pytest.warns(UserWarning, match=r"only 4 distinct words.*vocabulary size 100.*vocabulary of 5"):
        ds = build_dataset("a b c d a".split(), 100)
    assert ds.vocabulary_size == 5 and ds.count[0] == ["UNK", 0]
    assert 0 not in ds.data.tolist()


def test_build_dataset_exact_fit_does_not_warn():
    ds = build_dataset("a b c d a".split(), 5)  # 4 words + UNK: pyproject turns any warning into an error
    assert ds.vocabulary_size == 5


def test_build_dataset_bad_arguments():
    with pytest.raises(ValueError, match="vocabulary size must be at least 2"):
        build_dataset(["a"], 1)
    with pytest.raises(CorpusError, match="no words"):
        build_dataset([], 10)


# ------------------------------------------------------------------------------------------------
# generate_batch


def _data():
    words = TEXT.split()
    return build_dataset(words, 30).data, words


def test_demo_call_matches_reference():
    """word2vec_basic's generate_batch(8, 2, 1) from data_index 0: centres 'originated as a term'."""
    data, words = _data()
    state = BatchState.seeded(123)
    batch, labels = generate_batch(data, 8, 2, 1, state)
    assert state.data_index == 4
    assert batch.shape == (8,) and labels.shape == (8, 1)
    assert batch.dtype == np.int32 and labels.dtype == np.int32
    centre_words = [words[i] for i in (1, 1, 2, 2, 3, 3, 4, 4)]
    ids = {w: i for w, i in zip(words, data.tolist(), strict=True)}
    assert batch.tolist() == [ids[w] for w in centre_words]
    # Udacity's reference labels, up to the random order inside each pair.
    expected = [("as", "anarchism"), ("a", "originated"), ("term", "as"), ("a", "of")]
    for i, pair in enumerate(expected):
        assert sorted(labels[2 * i : 2 * i + 2, 0].tolist()) == sorted(ids[w] for w in pair)


@pytest.mark.parametrize("batch_size,num_skips,skip_window", [(8, 2, 1), (16, 4, 2), (12, 3, 2), (10, 1, 3)])
def test_generate_batch_matches_tf_code(batch_size, num_skips, skip_window):
    data, _ = _data()
    ref = TFGenerator(data.tolist(), seed=7)
    state = BatchState.seeded(7)
    for _ in range(40):  # long enough to wrap around the 70-word corpus several times
        b, lab = generate_batch(data, batch_size, num_skips, skip_window, state)
        rb, rlab = ref.generate_batch(batch_size, num_skips, skip_window)
        np.testing.assert_array_equal(b, rb)
        np.testing.assert_array_equal(lab, rlab)
        assert state.data_index == ref.data_index


@pytest.mark.parametrize("num_skips,skip_window", [(2, 1), (4, 2), (3, 2)])
def test_generate_batch_structure_and_contiguity(num_skips, skip_window):
    positions = np.arange(50)  # data = positions, so labels tell where they came from
    state = BatchState.seeded(0)
    valid_centres = list(range(skip_window, 50 - skip_window))
    expected_centre = iter(valid_centres * 10)
    for _ in range(30):
        batch, labels = generate_batch(positions, 4 * num_skips, num_skips, skip_window, state)
        centres = batch.reshape(-1, num_skips)
        assert (centres == centres[:, :1]).all()  # each centre repeated num_skips times in a row
        for row, lab in zip(centres[:, 0], labels.reshape(-1, num_skips), strict=True):
            assert row == next(expected_centre)  # backtrack: batches continue exactly, wrap to the start
            assert len(set(lab.tolist())) == num_skips
            assert all(0 < abs(x - row) <= skip_window for x in lab)


def test_generate_batch_errors():
    data = np.arange(10)
    with pytest.raises(ValueError, match=r"batch_size \(7\) must be a positive multiple of num_skips \(2\)"):
        generate_batch(data, 7, 2, 1, BatchState())
    with pytest.raises(ValueError, match=r"num_skips \(3\) must not exceed 2 \* skip_window \(2\)"):
        generate_batch(data, 6, 3, 1, BatchState())
    with pytest.raises(ValueError, match="fewer than the window span 5"):
        generate_batch(np.arange(4), 4, 2, 2, BatchState())


# ------------------------------------------------------------------------------------------------
# Reading


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return str(path)


def test_read_plain_and_compressed(tmp_path):
    text = "The Quick brown fox -- jumped over 3 lazy dogs; isn't it?\nÉcole naïve.\n"
    expected = ["the", "quick", "brown", "fox", "jumped", "over", "3", "lazy", "dogs", "isn", "t", "it"]
    expected += ["école", "naïve"]
    raw = text.encode("utf-8")
    assert read_words(_write(tmp_path / "a.txt", raw)) == expected
    assert read_words(_write(tmp_path / "a.txt.gz", gzip.compress(raw))) == expected
    assert read_words(_write(tmp_path / "a.txt.bz2", bz2.compress(raw))) == expected
    assert read_words(_write(tmp_path / "noext", gzip.compress(raw))) == expected  # sniffed, not by name
    assert read_words(_write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + raw)) == expected
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("dir/", "")
        zf.writestr("dir/first.txt", raw)
        zf.writestr("second.txt", b"and this one")  # every member is read, in order (TF read the first only)
    assert read_words(zpath) == expected + ["and", "this", "one"]


def test_read_text8_style_is_tf_split(tmp_path):
    text8 = " anarchism originated as a term of abuse first used against early"
    zpath = tmp_path / "text8.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("text8", text8)
    assert read_words(zpath) == text8.split()
    assert tokenize(text8) == text8.split()


@pytest.mark.parametrize(
    "name,payload,message",
    [
        ("empty.txt", b"", "is empty"),
        ("blank.txt", b"  \n\n\t ", "is empty"),
        ("nul.bin", b"hello\x00world" * 10, r"looks binary \(NUL bytes\)"),
        ("latin1.txt", "café au lait".encode("latin-1"), r"is not UTF-8 text \(invalid byte at offset 3\)"),
        ("random.bin", bytes(np.random.default_rng(0).integers(1, 256, 4000, dtype=np.uint8)), "UTF-8"),
        (
            "symbols.txt",
            b"@#$%^&*()[]{}<>~ ===== +++ ---- ||| ;;: ab",
            "does not look like text",
        ),
        ("punct.txt", b"...", "does not look like text"),
        ("bad.gz", b"\x1f\x8bthis is not gzip data", "is not a valid gzip file"),
        ("bad.bz2", b"BZh9garbage", "is not a valid bzip2 file"),
        ("plain.gz", b"hello world", r"is not a valid gz file \(bad header\)"),
        ("bad.zip", b"PK\x03\x04garbage", "is not a valid zip file"),
    ],
)
def test_bad_corpus_messages(tmp_path, name, payload, message):
    path = _write(tmp_path / name, payload)
    with pytest.raises(CorpusError, match=message) as info:
        read_words(path)
    msg = str(info.value)
    assert path in msg and "\n" not in msg


def test_empty_zip_and_zip_of_nothing(tmp_path):
    zpath = tmp_path / "empty.zip"
    with zipfile.ZipFile(zpath, "w"):
        pass
    with pytest.raises(CorpusError, match=r"empty.zip is a zip archive with no members"):
        read_words(zpath)
    zpath2 = tmp_path / "dirs.zip"
    with zipfile.ZipFile(zpath2, "w") as zf:
        zf.writestr("only/", "")
    with pytest.raises(CorpusError, match="no members"):
        read_words(zpath2)
    zpath3 = tmp_path / "blank.zip"
    with zipfile.ZipFile(zpath3, "w") as zf:
        zf.writestr("x.txt", "")
    with pytest.raises(CorpusError, match="is empty"):
        read_words(zpath3)


def test_missing_directory_unreadable(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match=r"corpus file .*nope.txt does not exist"):
        read_words(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match="is a directory"):
        read_words(tmp_path)
    path = _write(tmp_path / "locked.txt", b"some words")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(w2v_data, "open", denied, raising=False)
    with pytest.raises(CorpusError, match=r"locked.txt cannot be read: Permission denied"):
        read_words(path)


def test_default_corpus_offline():
    start = time.process_time()  # CPU time: wall time on a shared, loaded machine says little
    words, description = default_corpus()
    elapsed = time.process_time() - start
    assert len(words) > 500_000
    assert f"{len(words):,} words" in description
    assert "enwiki-latest-pages-articles1" in description and "lee_background.cor" in description
    assert words[:4] == ["anarchism", "is", "a", "political"]
    top = [w for w, _ in collections.Counter(words).most_common(5)]
    assert top[:3] == ["the", "of", "and"]
    assert elapsed < 20


def test_default_corpus_without_gensim(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gensim(name, *args, **kwargs):
        if name.startswith("gensim"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gensim)
    with pytest.raises(CorpusError, match=r"needs gensim's test data: pip install gensim"):
        default_corpus()


# ------------------------------------------------------------------------------------------------
# Download (never touches the network)


def test_download_offline_message(tmp_path):
    url = "http://127.0.0.1:9/text8.zip"
    with pytest.raises(CorpusError) as info:
        download_text8(tmp_path, url=url, timeout=5)
    msg = str(info.value)
    assert msg.startswith(f"could not download text8 from {url}: ")
    assert msg.endswith("check the network or pass --corpus PATH")
    assert os.listdir(tmp_path) == []  # no partial file left behind


def test_download_verifies_checksum(tmp_path):
    payload = b"pretend this is text8.zip" * 100
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    url = src.as_uri()
    dest = tmp_path / "dest"
    sha = hashlib.sha256(payload).hexdigest()

    with pytest.raises(CorpusError, match=r"failed verification: size 2500 bytes, expected 31344016"):
        download_text8(dest, url=url)
    with pytest.raises(CorpusError, match=rf"failed verification: sha256 {sha}, expected 0+"):
        download_text8(dest, url=url, expected_size=len(payload), expected_sha256="0" * 64)
    assert os.listdir(dest) == []

    path = download_text8(dest, url=url, expected_size=len(payload), expected_sha256=sha)
    assert path == str(dest / "text8.zip")
    assert (dest / "text8.zip").read_bytes() == payload
    assert os.listdir(dest) == ["text8.zip"]
    # A verified file is reused: no second download (this URL would fail).
    again = download_text8(dest, url="http://127.0.0.1:9/x", expected_size=len(payload), expected_sha256=sha)
    assert again == path


def test_download_defaults_are_the_tutorials():
    assert w2v_data.TEXT8_URL == "http://mattmahoney.net/dc/text8.zip"
    assert w2v_data.TEXT8_SIZE == 31344016
    assert w2v_data.TEXT8_SHA256 == "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232"


# ------------------------------------------------------------------------------------------------
# Sampling tables


def test_subsample_keep_prob():
    counts = np.array([0, 1, 10, 100, 1000, 100000])
    total, t = 1_000_000, 1e-4
    keep = subsample_keep_prob(counts, total, t)
    tn = t * total
    for c, k in zip(counts[1:], keep[1:], strict=True):
        assert k == pytest.approx(min(1.0, (np.sqrt(c / tn) + 1) * tn / c))
    assert keep[0] == 1.0 and keep[1] == 1.0 and keep[-1] == pytest.approx((np.sqrt(1000) + 1) / 1000)
    assert (np.diff(keep[1:]) <= 0).all()
    np.testing.assert_array_equal(subsample_keep_prob(counts, total, 0.0), np.ones(6))


# ------------------------------------------------------------------------------------------------
# The trainer's vocabulary


def test_build_vocabulary_min_count_max_vocab_and_dropped_tokens():
    words = "c a b a c a b d a e e e".split()  # a:4, e:3, c:2, b:2 (c first seen), d:1
    vocab, counts, ids = build_vocabulary(words, 2)
    assert vocab == ["a", "e", "c", "b"] and counts.tolist() == [4, 3, 2, 2] and counts.dtype == np.int64
    index = {w: i for i, w in enumerate(vocab)}
    assert ids.dtype == np.int32 and ids.tolist() == [index[w] for w in words if w in index]  # "d" dropped
    vocab, counts, ids = build_vocabulary(words, 1, max_vocab=2)
    assert vocab == ["a", "e"] and ids.tolist() == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(CorpusError, match="the vocabulary has 1 word"):
        build_vocabulary(words, 4)


def test_load_corpus_describes_what_it_read(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("one two three two\n")
    words, description = load_corpus(str(path))
    assert words == ["one", "two", "three", "two"] and description == f"{path} (4 words)"
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(str(tmp_path / "missing.txt"))
