"""examples/word2vec/evaluation.py and export.py: similarity, analogies, neighbours, export formats."""

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from examples.word2vec import evaluation
from examples.word2vec.evaluation import (
    EvaluationUnavailable,
    evaluate_all,
    evaluate_analogies,
    evaluate_similarity,
    format_evaluation,
    format_nearest,
    load_google_analogies,
    load_simlex999,
    load_wordsim353,
    nearest_neighbours,
    spearman,
)
from examples.word2vec.export import save_projector_config, save_projector_tsv, save_word2vec_format, write_metrics

# ------------------------------------------------------------------------------------------------
# Spearman and similarity


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 25]) == pytest.approx(0.8)
    assert math.isnan(spearman([1], [2])) and math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_spearman_with_ties_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 200), rng.integers(0, 7, 200) + rng.integers(0, 5, 200)
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)


def _fan(n):
    """Unit vectors at angles 0..: cosine with row 0 decreases with the index."""
    angles = np.linspace(0, np.pi / 2, n)
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def test_similarity_perfect_and_coverage():
    emb = _fan(6) * np.arange(1, 7)[:, None]  # lengths must not matter: cosine
    vocab = {f"w{i}": i for i in range(6)}
    pairs = [("w0", f"W{i}", 10.0 - i) for i in range(1, 6)]  # upper case: lookup is case-insensitive
    pairs += [("w0", "missing", 3.0), ("nothere", "w1", 2.0)]
    rho, coverage, n = evaluate_similarity(emb, vocab, pairs)
    assert rho == pytest.approx(1.0) and n == 5 and coverage == pytest.approx(5 / 7)
    reversed_pairs = [(a, b, -s) for a, b, s in pairs]
    assert evaluate_similarity(emb, vocab, reversed_pairs).spearman == pytest.approx(-1.0)


def test_similarity_nothing_covered():
    res = evaluate_similarity(np.eye(2), {"a": 0}, [("x", "y", 1.0)])
    assert math.isnan(res.spearman) and res.coverage == 0.0 and res.n_pairs == 0


# ------------------------------------------------------------------------------------------------
# Analogies


def _capitals(n_countries=6, dim=16):
    """country_i = e_i, capital_i = e_i + e_capital: every 'country:capital' analogy is exact."""
    emb = np.zeros((2 * n_countries + 1, dim), dtype=np.float32)
    vocab = {"UNK": 2 * n_countries}
    for i in range(n_countries):
        emb[2 * i, i] = 1.0
        emb[2 * i + 1, i] = 1.0
        emb[2 * i + 1, dim - 1] = 1.0
        vocab[f"country{i}"], vocab[f"capital{i}"] = 2 * i, 2 * i + 1
    emb[-1] = 0.3  # an UNK-like row that must not win
    questions = [
        (f"country{i}", f"capital{i}", f"country{j}", f"capital{j}")
        for i in range(n_countries)
        for j in range(n_countries)
        if i != j
    ]
    return emb, vocab, questions


def tf_analogy_eval(emb, vocab, questions):
    """models/word2vec's eval: top-4 of c + (b - a), skip predictions in {a, b, c}, precision@1."""
    nemb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-30)
    correct = n = 0
    for q in questions:
        ids = [vocab.get(w.lower()) for w in q]
        if None in ids:
            continue
        n += 1
        a, b, c, d = ids
        dist = (nemb[c] + (nemb[b] - nemb[a])) @ nemb.T
        for idx in np.argsort(-dist, kind="stable")[:4]:
            if idx == d:
                correct += 1
                break
            elif idx in (a, b, c):
                continue
            else:
                break
    return correct, n


def test_analogies_exact_toy():
    emb, vocab, questions = _capitals()
    acc, coverage, n = evaluate_analogies(emb, vocab, [tuple(w.upper() for w in q) for q in questions])
    assert acc == 1.0 and coverage == 1.0 and n == len(questions) == 30


def test_analogies_wrong_answers_and_coverage():
    emb, vocab, questions = _capitals()
    wrong = [(a, b, c, "country0" if d != "capital0" else "country1") for a, b, c, d in questions]
    oov = [("country0", "capital0", "atlantis", "capital1"), ("x", "y", "z", "w")]
    acc, coverage, n = evaluate_analogies(emb, vocab, questions[:10] + wrong[:10] + oov)
    assert acc == pytest.approx(0.5) and n == 20 and coverage == pytest.approx(20 / 22)


def test_analogies_restrict_vocab():
    emb, vocab, questions = _capitals()
    # ids 0..5 are countries 0..2 and their capitals: only questions among those are covered.
    acc, coverage, n = evaluate_analogies(emb, vocab, questions, restrict_vocab=6)
    assert acc == 1.0 and n == 6 and coverage == pytest.approx(6 / 30)


@pytest.mark.parametrize("chunk", [7, 2500])
def test_analogies_match_tf_loop_on_random_vectors(chunk):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(40, 5)).astype(np.float32)
    vocab = {f"w{i}": i for i in range(40)}
    ids = rng.integers(0, 44, size=(300, 4))  # some ids beyond the vocabulary: OOV
    questions = [tuple(f"w{i}" for i in row) for row in ids]
    questions += [("w1", "w2", "w3", "w1"), ("w1", "w2", "w3", "w2")]  # d among a, b, c: TF's order rule
    correct, n = tf_analogy_eval(emb, vocab, questions)
    acc, coverage, got_n = evaluate_analogies(emb, vocab, questions, chunk=chunk)
    assert got_n == n and acc == pytest.approx(correct / n) and coverage == pytest.approx(n / len(questions))
    assert 0 < correct < n  # random vectors: the check is not vacuous


def test_analogy_items_say_which_questions_were_answered_right():
    emb, vocab, questions = _capitals()
    wrong = [(a, b, c, "country0" if d != "capital0" else "country1") for a, b, c, d in questions]
    asked = [("x", "y", "z", "w"), *questions[:3], ("a", "b", "c", "d"), *wrong[:2]]
    items = evaluation.analogy_items(emb, vocab, asked)
    assert items.positions.tolist() == [1, 2, 3, 5, 6] and items.total == 7
    assert items.correct.tolist() == [True, True, True, False, False]
    assert tuple(evaluation.analogy_result(items)) == tuple(evaluate_analogies(emb, vocab, asked))


# ------------------------------------------------------------------------------------------------
# Comparing two systems' scores (benchmarks/word2vec_vs_gensim.py's intervals)


def _similarity_run(rng, noise, n=200, covered=None):
    human = np.linspace(0.0, 10.0, n)
    index = np.arange(n) if covered is None else np.asarray(covered)
    cosine = human[index] + noise * rng.normal(size=len(index))
    return {"wordsim353": evaluation.SimilarityItems(index, cosine, human[index], n)}


def _analogy_run(rng, accuracy, n):
    return {"analogy": evaluation.AnalogyItems(np.arange(n), rng.random(n) < accuracy, n)}


def test_compare_scores_of_identical_runs_is_exactly_zero():
    rng = np.random.default_rng(1)
    runs = [{**_similarity_run(rng, 3.0), **_analogy_run(rng, 0.3, 500)} for _ in range(3)]
    diff = evaluation.compare_scores(runs, runs, n_resamples=100)
    for key in ("wordsim353", "analogy"):
        assert diff[key]["difference"] == 0.0
    # Each resample draws the runs of each system separately, so the interval spans the runs' spread.
    assert diff["analogy"]["low"] <= 0.0 <= diff["analogy"]["high"]


def test_compare_scores_finds_a_real_gap_and_is_antisymmetric():
    rng = np.random.default_rng(2)
    good = [_similarity_run(rng, 2.0) for _ in range(3)]
    poor = [_similarity_run(rng, 8.0) for _ in range(3)]
    ahead = evaluation.compare_scores(good, poor, n_resamples=300)["wordsim353"]
    behind = evaluation.compare_scores(poor, good, n_resamples=300)["wordsim353"]
    expected = np.mean([spearman(r["wordsim353"].cosine, r["wordsim353"].human) for r in good]) - np.mean(
        [spearman(r["wordsim353"].cosine, r["wordsim353"].human) for r in poor])
    assert ahead["difference"] == pytest.approx(expected) and ahead["difference"] > 0.1
    assert 0 < ahead["low"] < ahead["difference"] < ahead["high"]
    assert behind["difference"] == pytest.approx(-ahead["difference"]) and behind["high"] < 0
    assert ahead["items"] == 200


def test_compare_scores_interval_widens_with_fewer_items():
    rng = np.random.default_rng(3)
    few = evaluation.compare_scores([_analogy_run(rng, 0.6, 30)], [_analogy_run(rng, 0.4, 30)], n_resamples=400)
    many = evaluation.compare_scores([_analogy_run(rng, 0.6, 3000)], [_analogy_run(rng, 0.4, 3000)],
                                     n_resamples=400)
    assert many["analogy"]["low"] > 0.1  # 3,000 questions: a 20-point gap is clear
    width = {k: d["analogy"]["high"] - d["analogy"]["low"] for k, d in (("few", few), ("many", many))}
    assert width["few"] > 5 * width["many"]


def test_compare_scores_uses_only_the_items_every_run_covers():
    rng = np.random.default_rng(4)
    a = _similarity_run(rng, 1.0, covered=np.arange(0, 150))
    b = _similarity_run(rng, 1.0, covered=np.arange(50, 200))
    diff = evaluation.compare_scores([a], [b], n_resamples=50)["wordsim353"]
    on_common = spearman(a["wordsim353"].cosine[50:], a["wordsim353"].human[50:]) - spearman(
        b["wordsim353"].cosine[:100], b["wordsim353"].human[:100])
    assert diff["items"] == 100 and diff["difference"] == pytest.approx(on_common)


def test_compare_scores_leaves_out_a_score_without_two_common_items():
    rng = np.random.default_rng(5)
    a = {**_similarity_run(rng, 1.0, covered=[0, 1, 2]), **_analogy_run(rng, 0.5, 40)}
    b = {**_similarity_run(rng, 1.0, covered=[2, 3, 4]), **_analogy_run(rng, 0.5, 40)}
    diff = evaluation.compare_scores([a], [b], n_resamples=20)
    assert "wordsim353" not in diff and diff["analogy"]["items"] == 40


def test_compare_scores_needs_runs_of_both_systems():
    with pytest.raises(ValueError, match="each system needs at least one run"):
        evaluation.compare_scores([], [_analogy_run(np.random.default_rng(0), 0.5, 10)])


# ------------------------------------------------------------------------------------------------
# Nearest neighbours


def test_nearest_neighbours_matches_bruteforce():
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(200, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ids = [0, 5, 199]
    got = nearest_neighbours(emb, ids, k=8)
    for i, near in zip(ids, got, strict=True):
        assert near == (-(emb[i] @ emb.T)).argsort()[1:9].tolist()


def test_nearest_neighbours_drops_query_not_rank_zero():
    emb = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)  # rows 0 and 1 identical
    assert nearest_neighbours(emb, [1, 0], k=2) == [[0, 2], [1, 2]]
    (near,) = nearest_neighbours(emb, [3], k=10)  # k is clamped to the 3 other words
    assert near[0] == 2 and sorted(near[1:]) == [0, 1]


def test_format_nearest():
    rev = {0: "UNK", 1: "the", 2: "a", 3: "its"}
    assert format_nearest([1], [[2, 3]], rev) == ["Nearest to the: a, its"]


# ------------------------------------------------------------------------------------------------
# Data sets and evaluate_all


def test_gensim_data_sets():
    from gensim.test.utils import datapath

    assert evaluation.gensim_test_data_path("wordsim353.tsv") == datapath("wordsim353.tsv")
    ws, sl, qs = load_wordsim353(), load_simlex999(), load_google_analogies()
    assert len(ws) == 353 and ws[0] == ("love", "sex", 6.77)
    assert len(sl) == 999 and sl[0] == ("old", "new", 1.58)
    assert len(qs) == 19544 and qs[0] == ("athens", "greece", "baghdad", "iraq")


def test_evaluate_all_keys_and_format():
    words = {w for q in load_google_analogies()[:500] for w in q} | {
        "love",
        "sex",
        "tiger",
        "cat",
        "old",
        "new",
    }
    vocab = {w: i for i, w in enumerate(sorted(words))}
    emb = np.random.default_rng(0).normal(size=(len(vocab), 10))
    res = evaluate_all(emb, vocab)
    assert set(res) == {
        f"{p}_{s}" for p in ("wordsim353", "simlex999") for s in ("spearman", "coverage", "pairs")
    } | {"analogy_accuracy", "analogy_coverage", "analogy_questions"}
    assert res["wordsim353_pairs"] >= 2 and 0 < res["wordsim353_coverage"] < 1
    assert res["analogy_questions"] >= 500 and res["analogy_coverage"] == res["analogy_questions"] / 19544
    lines = format_evaluation(res)
    assert len(lines) == 3 and lines[2].startswith("Google analogies: accuracy ")


def test_unavailable_messages(monkeypatch, tmp_path):
    monkeypatch.setattr(evaluation, "gensim_test_data_path", lambda name: None)
    with pytest.raises(
        EvaluationUnavailable, match=r"^WordSim353 needs gensim's test data: pip install gensim"
    ):
        evaluate_all(np.eye(2), {"a": 0, "b": 1})
    monkeypatch.setattr(evaluation, "gensim_test_data_path", lambda name: str(tmp_path / name))
    with pytest.raises(EvaluationUnavailable, match=r"SimLex-999 file .*simlex999.txt is missing"):
        load_simlex999()


# ------------------------------------------------------------------------------------------------
# Export


@pytest.mark.parametrize("fmt,tol", [("%.6g", 1e-5), ("%.9g", 0.0)])
def test_word2vec_format_round_trip(tmp_path, fmt, tol):
    from gensim.models import KeyedVectors

    rng = np.random.default_rng(0)
    vec = rng.normal(size=(50, 7)).astype(np.float32)
    words = ["UNK"] + [f"w{i}" for i in range(48)] + ["école"]
    path = save_word2vec_format(tmp_path / "out" / "vectors.txt", vec, words, fmt=fmt)
    assert path == str(tmp_path / "out" / "vectors.txt")
    assert Path(path).read_text(encoding="utf-8").splitlines(keepends=True)[0] == "50 7\n"
    kv = KeyedVectors.load_word2vec_format(path, binary=False)
    assert kv.index_to_key == words
    np.testing.assert_allclose(kv.vectors, vec, rtol=tol, atol=tol)
    assert os.listdir(tmp_path / "out") == ["vectors.txt"]  # no temporary file left


def test_word2vec_format_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="contains whitespace"):
        save_word2vec_format(tmp_path / "v.txt", np.eye(2), ["a b", "c"])
    with pytest.raises(ValueError, match="2 words for 3 vectors"):
        save_word2vec_format(tmp_path / "v.txt", np.eye(3), ["a", "b"])
    assert not (tmp_path / "v.txt").exists()


def test_projector_files(tmp_path):
    vec = np.arange(12, dtype=np.float32).reshape(4, 3) / 4
    words = ["UNK", "the", "of", "and"]
    vpath, mpath = save_projector_tsv(tmp_path, vec, words)
    rows = [line.split("\t") for line in Path(vpath).read_text().splitlines()]
    np.testing.assert_allclose(np.array(rows, dtype=np.float32), vec)
    assert Path(mpath).read_text() == "UNK\nthe\nof\nand\n"  # one column: no header
    cfg = save_projector_config(tmp_path, "embeddings/Variable:0", "metadata.tsv")
    assert (
        Path(cfg).read_text()
        == 'embeddings {\n  tensor_name: "embeddings/Variable:0"\n  metadata_path: "metadata.tsv"\n}\n'
    )
    cfg = save_projector_config(tmp_path, 'we"ird', "m.tsv", tensor_path="vectors.tsv")
    assert (
        'tensor_name: "we\\"ird"' in Path(cfg).read_text()
        and 'tensor_path: "vectors.tsv"' in Path(cfg).read_text()
    )
    with pytest.raises(ValueError, match="projector metadata"):
        save_projector_tsv(tmp_path, vec, ["a\tb", "c", "d", "e"])


def test_projector_config_parses_as_tensorboard_proto(tmp_path):
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    cfg = save_projector_config(tmp_path, "emb", "metadata.tsv", tensor_path="vectors.tsv")
    config = text_format.Parse(Path(cfg).read_text(), ProjectorConfig())
    assert config.embeddings[0].tensor_name == "emb"
    assert config.embeddings[0].metadata_path == "metadata.tsv"
    assert config.embeddings[0].tensor_path == "vectors.tsv"


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds the non-standard JSON constant {constant}")

    return json.loads(Path(path).read_text(), parse_constant=refuse)


def test_write_metrics_is_strict_json_and_says_which_values_were_not_finite(tmp_path, capsys):
    metrics = {"loss": math.nan, "speed": np.float32(2.5), "steps": np.int64(7), "ok": np.bool_(True),
               "evaluation": {"spearman": -math.inf, "coverage": 0.5}, "curve": [[0, 1.0], [100, math.nan]]}
    assert write_metrics(tmp_path / "metrics.json", metrics) == ["loss", "evaluation.spearman", "curve[1][1]"]
    assert _strict_json(tmp_path / "metrics.json") == {
        "loss": None, "speed": 2.5, "steps": 7, "ok": True, "evaluation": {"spearman": None, "coverage": 0.5},
        "curve": [[0, 1.0], [100, None]], "non_finite_as_null": ["loss", "evaluation.spearman", "curve[1][1]"]}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: ") and "loss, evaluation.spearman" in err
    assert write_metrics(tmp_path / "metrics.json", {"loss": 1.0}) == []
    assert _strict_json(tmp_path / "metrics.json") == {"loss": 1.0} and capsys.readouterr().err == ""


def test_write_metrics_failure_keeps_the_previous_file(tmp_path):
    (tmp_path / "metrics.json").write_text('{"earlier": true}\n')
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_metrics(tmp_path / "metrics.json", {"a": 1.0, "z": object()})  # fails half-way through
    assert (tmp_path / "metrics.json").read_text() == '{"earlier": true}\n'
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temporary file left
