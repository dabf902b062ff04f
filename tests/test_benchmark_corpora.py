"""``benchmarks/corpora.py``: the English-prose filter, the text extractors, and that a build is
deterministic (same sources, same bytes), drops duplicates and cuts prefixes at the word limit."""

from __future__ import annotations

import json

import pytest

from benchmarks import corpora
from examples.word2vec import data as w2v_data

ENGLISH = "The trainer reads the corpus once and builds the vocabulary from it, which is then used for every epoch."


@pytest.mark.parametrize("text", [
    ENGLISH,
    "If the file does not exist, an error is raised and nothing is written to the output directory at all.",
])
def test_english_prose_is_kept(text):
    assert corpora.is_english_prose(text)


@pytest.mark.parametrize("text", [
    "x = np.zeros((3, 4), dtype=np.float32); y = x[:, 1:] + 2 * x[:, :-1]  # shift and add the columns",
    "-a, --all  -A, --almost-all  -b, --escape  -B, --ignore-backups  -c  -C  -d, --directory",
    "Der Trainer liest den Korpus einmal und baut daraus das Vokabular, das dann in jeder Epoche dient.",
    "The trainer reads the corpus.",  # too short to judge
])
def test_non_prose_is_dropped(text):
    assert not corpora.is_english_prose(text)


def test_paragraphs_are_cut_at_doctests_and_directives():
    text = f"{ENGLISH}\n>>> f(x)\n{ENGLISH.upper()}\n\n.. note::\n{ENGLISH} again"
    got = corpora.english_paragraphs(text)
    assert got[0] == ENGLISH and got[-1] == f"{ENGLISH} again"
    assert not any(">>>" in p for p in got)


def test_docstrings_of_a_module_without_its_code():
    doc = "Return the square of the input, which is what the caller wants here."
    src = f'def f(x):\n    """{doc}"""\n    return x * x\n'
    assert corpora.docstring_text(src) == doc
    assert corpora.docstring_text("def broken(:\n") == ""


def _fake_sources(monkeypatch, documents):
    def source():
        yield from documents
    monkeypatch.setitem(corpora._SOURCES, "fake", source)
    monkeypatch.setattr(corpora, "_FILTERED", (*corpora._FILTERED, "fake"))
    monkeypatch.setitem(corpora.CORPORA, "fake", (("fake",), None))
    monkeypatch.setitem(corpora.CORPORA, "fake-30", (("fake",), 30))


def test_build_is_deterministic_deduplicated_and_cut(tmp_path, monkeypatch):
    docs = [(f"doc{i}", f"{ENGLISH} Number {i} of them.\n\n{ENGLISH}\n\nx = f(y)") for i in range(6)]
    _fake_sources(monkeypatch, docs)
    first = corpora.build("fake", str(tmp_path / "a.txt"), cache_dir=str(tmp_path / "cache"))
    second = corpora.build("fake", str(tmp_path / "b.txt"), cache_dir=str(tmp_path / "cache"))
    text = (tmp_path / "a.txt").read_text()
    assert text == (tmp_path / "b.txt").read_text() and first["sha256"] == second["sha256"]
    lines = text.splitlines()
    # The shared paragraph is kept once, the code line never; each document's own paragraph once.
    assert len(lines) == 7 and lines.count(" ".join(w2v_data.tokenize(ENGLISH))) == 1
    assert first["words"] == sum(len(line.split()) for line in lines)
    assert first["sources"]["fake"] == {"files": 6, "paragraphs_kept": 7, "paragraphs_duplicate": 5}
    assert json.loads((tmp_path / "a.json").read_text())["sha256"] == first["sha256"]

    cut = corpora.build("fake-30", str(tmp_path / "cut.txt"), cache_dir=str(tmp_path / "cache"))
    words = (tmp_path / "cut.txt").read_text().split()
    assert cut["words"] == len(words) == 30 and words == text.split()[:30]


def test_unknown_corpus_and_missing_text8(tmp_path, monkeypatch):
    with pytest.raises(KeyError, match="unknown corpus 'nope'"):
        corpora.build("nope", str(tmp_path / "x.txt"))
    monkeypatch.chdir(tmp_path)
    assert corpora.main(["text8", "--cache-dir", str(tmp_path)]) == 2
