"""Evaluation of word vectors: word similarity, analogies and nearest neighbours.

The data sets are the copies gensim ships as test data (so they install offline from the package
registry, via the ``examples`` extra), found where ``gensim.test.utils.datapath`` looks:

* ``wordsim353.tsv``: WordSim-353, 353 pairs with human similarity scores;
* ``simlex999.txt``: SimLex-999, 999 pairs;
* ``questions-words.txt``: the Google analogy set (19,544 questions, the file TF's models/word2vec
  evaluated on).

Lookups are case-insensitive (the exact word first, then its lowercase form). Pairs or questions with a
word outside the vocabulary are skipped and reported through ``coverage``, as TF's ``read_analogies``
counted them as "Skipped".

>>> import numpy as np
>>> emb = np.eye(3, dtype=np.float32)
>>> nearest_neighbours(emb, [0], k=2)
[[1, 2]]
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "COMPARED_SCORES",
    "AnalogyItems",
    "AnalogyResult",
    "EvaluationUnavailable",
    "SimilarityItems",
    "SimilarityResult",
    "analogy_items",
    "analogy_result",
    "compare_scores",
    "evaluate_all",
    "evaluate_analogies",
    "evaluate_similarity",
    "evaluation_items",
    "format_evaluation",
    "format_nearest",
    "gensim_test_data_path",
    "load_google_analogies",
    "load_simlex999",
    "load_wordsim353",
    "nearest_lines",
    "nearest_neighbours",
    "results_from_items",
    "similarity_items",
    "similarity_result",
    "spearman",
]

WORDSIM353_FILE = "wordsim353.tsv"
SIMLEX999_FILE = "simlex999.txt"
ANALOGIES_FILE = "questions-words.txt"


class EvaluationUnavailable(Exception):
    """An evaluation data set cannot be found; the message says what to install."""


class SimilarityResult(NamedTuple):
    """Spearman correlation on the covered pairs, the fraction of pairs covered, and how many were used."""

    spearman: float
    coverage: float
    n_pairs: int


class AnalogyResult(NamedTuple):
    """Precision@1 on the covered questions, the fraction of questions covered, and how many were used."""

    accuracy: float
    coverage: float
    n_questions: int


# --------------------------------------------------------------------------------------------------
# Data sets


def gensim_test_data_path(filename: str) -> str | None:
    """Where ``gensim.test.utils.datapath(filename)`` points, or None when gensim is not installed.

    Found without importing gensim, whose import (scipy and all) takes seconds.
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "test", "test_data", filename)


def _datapath(filename: str, what: str) -> str:
    path = gensim_test_data_path(filename)
    if path is None:
        raise EvaluationUnavailable(
            f"{what} needs gensim's test data: pip install gensim (or the examples extra)"
        )
    if not os.path.isfile(path):
        raise EvaluationUnavailable(
            f"{what} file {path} is missing from gensim's test data: reinstall gensim"
        )
    return path


def _load_pairs(filename: str, what: str) -> list[tuple[str, str, float]]:
    pairs = []
    with open(_datapath(filename, what), encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            w1, w2, score = line.split("\t")[:3]
            pairs.append((w1, w2, float(score)))
    return pairs


def load_wordsim353() -> list[tuple[str, str, float]]:
    """WordSim-353 as ``(word1, word2, human_score)`` triples (353 of them)."""
    return _load_pairs(WORDSIM353_FILE, "WordSim353")


def load_simlex999() -> list[tuple[str, str, float]]:
    """SimLex-999 as ``(word1, word2, human_score)`` triples (999 of them)."""
    return _load_pairs(SIMLEX999_FILE, "SimLex-999")


def load_google_analogies() -> list[tuple[str, str, str, str]]:
    """The Google analogy questions ``a b c d`` ("a is to b as c is to d"), lowercased, as in TF."""
    questions = []
    with open(_datapath(ANALOGIES_FILE, "the Google analogy set"), encoding="utf-8") as f:
        for line in f:
            if line.startswith(":") or not line.strip():
                continue
            a, b, c, d = line.lower().split()
            questions.append((a, b, c, d))
    return questions


# --------------------------------------------------------------------------------------------------
# Metrics


def _lookup(dictionary: Mapping[str, int], word: str) -> int | None:
    idx = dictionary.get(word)
    return dictionary.get(word.lower()) if idx is None else idx


def _normalize(embeddings: Any) -> np.ndarray:
    emb = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    # A zero row (e.g. an untouched UNK) stays zero instead of becoming NaN.
    return emb / np.maximum(norms, np.finfo(np.float32).tiny)


def _rank(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[np.cumsum(new_group) - 1]
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (NaN when fewer than 2 points or a constant input).

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xa) < 2:
        return math.nan
    rx, ry = _rank(xa) - (len(xa) + 1) / 2.0, _rank(ya) - (len(ya) + 1) / 2.0
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    return float(rx @ ry) / denom if denom > 0 else math.nan


class SimilarityItems(NamedTuple):
    """A similarity set's pairs that a vocabulary covers: their positions in the set, the model's cosines and the
    human scores (one entry each), and the set's size."""

    positions: np.ndarray
    cosine: np.ndarray
    human: np.ndarray
    total: int


class AnalogyItems(NamedTuple):
    """An analogy set's questions that a vocabulary covers: their positions in the set, whether each was answered
    right, and the set's size."""

    positions: np.ndarray
    correct: np.ndarray
    total: int


def similarity_items(
    embeddings: Any, dictionary: Mapping[str, int], pairs: Sequence[tuple[str, str, float]]
) -> SimilarityItems:
    """The cosine similarity of each pair whose two words are in ``dictionary``, beside its human score.

    >>> emb = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    >>> items = similarity_items(emb, {"a": 0, "b": 1, "c": 2}, [("a", "z", 3), ("a", "c", 1)])
    >>> items.positions.tolist(), items.cosine.tolist(), items.human.tolist(), items.total
    ([1], [0.0], [1.0], 2)
    """
    emb = _normalize(embeddings)
    index, used_i, used_j, human = [], [], [], []
    for k, (w1, w2, score) in enumerate(pairs):
        i, j = _lookup(dictionary, w1), _lookup(dictionary, w2)
        if i is not None and j is not None:
            index.append(k)
            used_i.append(i)
            used_j.append(j)
            human.append(score)
    cosines = np.einsum("ij,ij->i", emb[used_i], emb[used_j]) if index else np.zeros((0,), np.float32)
    return SimilarityItems(np.asarray(index, np.int64), cosines, np.asarray(human, np.float64), len(pairs))


def similarity_result(items: SimilarityItems) -> SimilarityResult:
    """Spearman correlation, coverage and count of :func:`similarity_items`' pairs."""
    coverage = len(items.positions) / items.total if items.total else 0.0
    if not len(items.positions):
        return SimilarityResult(math.nan, coverage, 0)
    return SimilarityResult(spearman(items.cosine, items.human), coverage, len(items.positions))


def evaluate_similarity(
    embeddings: Any, dictionary: Mapping[str, int], pairs: Sequence[tuple[str, str, float]]
) -> SimilarityResult:
    """Spearman correlation between cosine similarities and human scores.

    >>> emb = np.array([[1, 0], [1, 1], [0, 1]], dtype=np.float32)
    >>> evaluate_similarity(emb, {"a": 0, "b": 1, "c": 2}, [("a", "b", 5), ("a", "c", 1), ("a", "z", 3)])
    SimilarityResult(spearman=1.0, coverage=0.6666666666666666, n_pairs=2)
    """
    return similarity_result(similarity_items(embeddings, dictionary, pairs))


def analogy_items(
    embeddings: Any,
    dictionary: Mapping[str, int],
    questions: Sequence[tuple[str, str, str, str]],
    restrict_vocab: int | None = None,
    chunk: int = 2500,
) -> AnalogyItems:
    """Which of the covered analogy questions are answered right, as TF's models/word2vec ``eval`` answers them.

    Vectors are L2-normalised; ``target = c + (b - a)``; the 4 words nearest to it by dot product are
    taken and the answer is the first of them that is not ``a``, ``b`` or ``c`` (precision@1).
    ``restrict_vocab`` keeps only ids below it, both for the question words and as candidates (ids are
    frequency ranks, so this is "the N most frequent words", as in gensim).

    >>> emb = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32)
    >>> vocab = {"man": 0, "king": 1, "woman": 2, "queen": 3}
    >>> items = analogy_items(emb, vocab, [("man", "x", "woman", "y"), ("man", "king", "woman", "queen")])
    >>> items.positions.tolist(), items.correct.tolist(), items.total
    ([1], [True], 2)
    """
    emb = _normalize(embeddings)
    if restrict_vocab is not None:
        emb = emb[:restrict_vocab]
    n_vocab = emb.shape[0]
    index, ids = [], []
    for k, q in enumerate(questions):
        row = [_lookup(dictionary, w) for w in q]
        if all(i is not None and i < n_vocab for i in row):
            index.append(k)
            ids.append(row)
    q_ids = np.asarray(ids, dtype=np.int64).reshape(-1, 4)
    correct = np.zeros((len(q_ids),), bool)
    for start in range(0, len(q_ids), chunk):
        a, b, c, d = q_ids[start : start + chunk].T
        rows = np.arange(len(a))
        dist = (emb[c] + (emb[b] - emb[a])) @ emb.T
        # TF takes the top 4 and answers with the first that is d or not one of a, b, c. Hiding a, b and c
        # (except d itself) and taking the argmax gives the same answer without a top-k over the vocabulary.
        for x in (a, b, c):
            dist[rows[x != d], x[x != d]] = -np.inf
        correct[start : start + chunk] = np.argmax(dist, axis=1) == d
    return AnalogyItems(np.asarray(index, np.int64), correct, len(questions))


def analogy_result(items: AnalogyItems) -> AnalogyResult:
    """Accuracy, coverage and count of :func:`analogy_items`' questions."""
    coverage = len(items.positions) / items.total if items.total else 0.0
    if not len(items.positions):
        return AnalogyResult(math.nan, coverage, 0)
    return AnalogyResult(float(np.count_nonzero(items.correct)) / len(items.positions), coverage, len(items.positions))


def evaluate_analogies(
    embeddings: Any,
    dictionary: Mapping[str, int],
    questions: Sequence[tuple[str, str, str, str]],
    restrict_vocab: int | None = None,
    chunk: int = 2500,
) -> AnalogyResult:
    """Analogy accuracy as in TF's models/word2vec ``eval`` (see :func:`analogy_items`).

    >>> emb = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=np.float32)
    >>> vocab = {"man": 0, "king": 1, "woman": 2, "queen": 3}
    >>> evaluate_analogies(emb, vocab, [("man", "king", "woman", "queen")])
    AnalogyResult(accuracy=1.0, coverage=1.0, n_questions=1)
    """
    return analogy_result(analogy_items(embeddings, dictionary, questions, restrict_vocab, chunk))


def evaluation_items(
    embeddings: Any, dictionary: Mapping[str, int], restrict_vocab: int | None = None
) -> dict[str, SimilarityItems | AnalogyItems]:
    """The per-item outcomes behind :func:`evaluate_all`: ``wordsim353`` and ``simlex999``
    (:class:`SimilarityItems`), ``analogy`` (:class:`AnalogyItems`). :func:`compare_scores` takes them.

    Raises:
        EvaluationUnavailable: gensim (which ships the data sets) is not installed.
    """
    return {
        "wordsim353": similarity_items(embeddings, dictionary, load_wordsim353()),
        "simlex999": similarity_items(embeddings, dictionary, load_simlex999()),
        "analogy": analogy_items(embeddings, dictionary, load_google_analogies(), restrict_vocab=restrict_vocab),
    }


def results_from_items(items: Mapping[str, SimilarityItems | AnalogyItems]) -> dict[str, float]:
    """:func:`evaluate_all`'s dictionary from :func:`evaluation_items`' outcomes."""
    results: dict[str, float] = {}
    for name in ("wordsim353", "simlex999"):
        sim = similarity_result(items[name])  # type: ignore[arg-type]
        results[f"{name}_spearman"] = sim.spearman
        results[f"{name}_coverage"] = sim.coverage
        results[f"{name}_pairs"] = sim.n_pairs
    ana = analogy_result(items["analogy"])  # type: ignore[arg-type]
    results["analogy_accuracy"] = ana.accuracy
    results["analogy_coverage"] = ana.coverage
    results["analogy_questions"] = ana.n_questions
    return results


def evaluate_all(
    embeddings: Any, dictionary: Mapping[str, int], restrict_vocab: int | None = None
) -> dict[str, float]:
    """WordSim353 and SimLex-999 Spearman, Google analogy accuracy, each with coverage and count.

    Keys: ``wordsim353_spearman``, ``wordsim353_coverage``, ``wordsim353_pairs``, the same three for
    ``simlex999``, and ``analogy_accuracy``, ``analogy_coverage``, ``analogy_questions``.

    >>> import numpy as np
    >>> words = ["king", "queen", "man", "woman", "boy", "girl"]
    >>> results = evaluate_all(np.random.default_rng(0).normal(size=(6, 8)), {w: i for i, w in enumerate(words)})
    >>> results["analogy_questions"], results["wordsim353_pairs"]   # the questions and pairs these words cover
    (6, 2)

    Raises:
        EvaluationUnavailable: gensim (which ships the data sets) is not installed.
    """
    return results_from_items(evaluation_items(embeddings, dictionary, restrict_vocab))


#: The scores :func:`compare_scores` compares: keys of :func:`evaluation_items`.
COMPARED_SCORES = ("wordsim353", "simlex999", "analogy")


def _score_of(items: SimilarityItems | AnalogyItems, take: np.ndarray) -> float:
    """The score of ``items`` restricted to the entries at positions ``take`` (with repeats)."""
    if isinstance(items, AnalogyItems):
        return float(np.mean(items.correct[take]))
    return spearman(items.cosine[take], items.human[take])


def _mean_difference(a: Sequence[tuple[Any, np.ndarray]], b: Sequence[tuple[Any, np.ndarray]],
                     take: np.ndarray) -> float:
    """Mean score of runs ``a`` minus that of runs ``b`` (each ``(items, positions of the common items)``), on
    the common items at ``take``."""
    def mean(runs: Sequence[tuple[Any, np.ndarray]]) -> float:
        return float(np.nanmean([_score_of(items, at[take]) for items, at in runs]))

    return mean(a) - mean(b)


def compare_scores(
    runs_a: Sequence[Mapping[str, SimilarityItems | AnalogyItems]],
    runs_b: Sequence[Mapping[str, SimilarityItems | AnalogyItems]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """How far system A's mean score is from system B's, with a 95% bootstrap interval, for each score.

    ``runs_a`` and ``runs_b``: :func:`evaluation_items` of each run (one per seed) of the two systems. Scores
    are taken on the items that every run covers (the same pairs and questions for both), so that the difference
    is the systems', not their vocabularies'. The interval is a two-level paired bootstrap: each resample draws the
    items (the same draw for all runs: the systems are compared on the same words) and, per system, the runs, both
    with replacement; the difference of the two systems' mean scores over the drawn runs is taken, and its 2.5th
    and 97.5th percentiles over the resamples bound the interval. With few covered items (a small corpus's
    vocabulary covers 85 of WordSim353's 353 pairs) the interval is wide: a difference inside it is not evidence
    that one system scores above the other. Per score: ``difference`` (A minus B, on the common items),
    ``low``, ``high`` and ``items`` (how many). A score that some run lacks, or that fewer than 2 items common
    to every run leave without a correlation, has no entry: the caller says so (the benchmark prints it).

    >>> rng = np.random.default_rng(0)
    >>> def run(noise):
    ...     human = np.arange(50.0)
    ...     return {"wordsim353": SimilarityItems(np.arange(50), human + noise * rng.normal(size=50), human, 50)}
    >>> d = compare_scores([run(5.0), run(5.0)], [run(50.0), run(50.0)], n_resamples=200)["wordsim353"]
    >>> d["low"] > 0 and d["difference"] > 0.1, d["items"]
    (True, 50)
    """
    if not runs_a or not runs_b:
        raise ValueError("compare_scores: each system needs at least one run")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float]] = {}
    for key in COMPARED_SCORES:
        runs = [r[key] for r in (*runs_a, *runs_b) if key in r]
        if len(runs) < len(runs_a) + len(runs_b):
            continue
        common = functools.reduce(np.intersect1d, [r.positions for r in runs])
        if len(common) < 2:
            continue
        # Each run's entries at the common items, in the same order: positions into its own arrays.
        at = [np.searchsorted(r.positions, common) for r in runs]
        paired = list(zip(runs, at, strict=True))
        a, b = paired[: len(runs_a)], paired[len(runs_a):]
        observed = _mean_difference(a, b, np.arange(len(common)))
        resampled = np.array([
            _mean_difference([a[i] for i in rng.integers(0, len(a), len(a))],
                             [b[i] for i in rng.integers(0, len(b), len(b))],
                             rng.integers(0, len(common), len(common)))
            for _ in range(n_resamples)])
        low, high = np.nanpercentile(resampled, [2.5, 97.5])
        out[key] = {"difference": observed, "low": float(low), "high": float(high), "items": len(common)}
    return out


def format_evaluation(results: Mapping[str, float]) -> list[str]:
    """Human-readable lines for :func:`evaluate_all`'s dictionary.

    >>> format_evaluation({"analogy_accuracy": 0.25, "analogy_coverage": 0.5, "analogy_questions": 8})
    ['Google analogies: accuracy 25.0% (8 questions, coverage 50.0%)']
    """
    lines = []
    for key, label in (("wordsim353", "WordSim353"), ("simlex999", "SimLex-999")):
        if f"{key}_spearman" in results:
            lines.append(
                f"{label}: Spearman {results[f'{key}_spearman']:.3f} "
                f"({results[f'{key}_pairs']} pairs, coverage {results[f'{key}_coverage']:.1%})"
            )
    if "analogy_accuracy" in results:
        lines.append(
            f"Google analogies: accuracy {results['analogy_accuracy']:.1%} "
            f"({results['analogy_questions']} questions, coverage {results['analogy_coverage']:.1%})"
        )
    return lines


# --------------------------------------------------------------------------------------------------
# Nearest neighbours (word2vec_basic's printout)


def nearest_neighbours(normalized_embeddings: Any, ids: Sequence[int], k: int = 8) -> list[list[int]]:
    """The ``k`` ids most cosine-similar to each of ``ids``, most similar first, the query excluded.

    TF's tutorial took ``(-sim[i, :]).argsort()[1:k+1]``, assuming the query itself ranks first; that
    fails for a zero or duplicated vector, so the query id is removed explicitly instead.

    >>> emb = np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32)
    >>> nearest_neighbours(emb, [2, 0], k=1)
    [[1], [1]]
    """
    emb = np.asarray(normalized_embeddings, dtype=np.float32)
    query = np.asarray(ids, dtype=np.int64)
    k = min(k, emb.shape[0] - 1)
    if k <= 0 or len(query) == 0:
        return [[] for _ in query]
    sim = emb[query] @ emb.T
    sim[np.arange(len(query)), query] = -np.inf
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable"), 1)
    return top.tolist()


def format_nearest(
    ids: Sequence[int], neighbours: Sequence[Sequence[int]], reversed_dictionary: Mapping[int, str]
) -> list[str]:
    """``Nearest to the: a, its, ...`` lines, as word2vec_basic prints them.

    >>> format_nearest([0], [[2, 1]], {0: "the", 1: "its", 2: "a"})
    ['Nearest to the: a, its']
    """
    return [
        f"Nearest to {reversed_dictionary[int(i)]}: " + ", ".join(reversed_dictionary[int(n)] for n in near)
        for i, near in zip(ids, neighbours, strict=True)
    ]


#: Frequency ranks whose neighbours the trainer prints: a few frequent words and a few rarer ones.
PROBE_RANKS = (3, 8, 15, 30, 60, 120)


def nearest_lines(embeddings: Any, words: Sequence[str], ids: Sequence[int] | None = None, k: int = 8) -> list[str]:
    """``Nearest to ...`` lines for ``ids`` (default: the :data:`PROBE_RANKS` within the vocabulary), from
    unnormalised ``embeddings`` whose row ``i`` is ``words[i]``.

    >>> nearest_lines(np.array([[1, 0], [0.9, 0.1], [0, 1]], dtype=np.float32), ["a", "b", "c"], ids=[0, 2], k=1)
    ['Nearest to a: b', 'Nearest to c: b']
    """
    ids = [i for i in PROBE_RANKS if i < len(words)] if ids is None else list(ids)
    near = nearest_neighbours(_normalize(embeddings), ids, k=k)
    return format_nearest(ids, near, dict(enumerate(words)))
