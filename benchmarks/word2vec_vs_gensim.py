"""The fast word2vec trainer against gensim, same corpus, same wall-clock training budget, same run.

Both train skip-gram with negative sampling (window 5, 5 negatives, min_count 5, 100 dimensions,
subsampling 1e-3, linear learning-rate decay). gensim uses ``workers = os.cpu_count()``. Each side gets
``--seconds`` of *training* time (vocabulary building, compilation and evaluation are excluded and
reported separately): a short calibration run measures each one's speed, then the number of steps
(jaxgraph) or epochs (gensim) that fits the budget is trained from scratch. Both sets of vectors are
scored by the same code (``examples/word2vec/evaluation.py``): WordSim353 Spearman and Google analogy
accuracy, with coverage. Raw words/sec counts every corpus token consumed (out-of-vocabulary and
subsampled ones included), as gensim's "raw words" do.

Usage::

    python benchmarks/word2vec_vs_gensim.py --seconds 60                  # embedded default corpus
    python benchmarks/word2vec_vs_gensim.py --corpus text8.zip --seconds 600
    python benchmarks/word2vec_vs_gensim.py --trainer-args "--devices 2"  # data-parallel on 2 CPU devices

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec import (
    evaluation,  # noqa: E402
    train,  # noqa: E402
)


def _scores(vectors, key_to_index) -> dict[str, float | None]:
    try:
        r = evaluation.evaluate_all(vectors, key_to_index)
    except evaluation.EvaluationUnavailable as e:
        print(f"evaluation unavailable: {e}")
        return {}

    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    return {k: clean(v) for k, v in r.items()}


def run_jaxgraph(corpus_path: str, seconds: float, workdir: str, extra: list[str]) -> dict:
    common = ["--corpus", corpus_path, "--no-progress", "--no-tensorboard", "--quiet",
              "--checkpoint-every", "0"]
    common += extra
    calib_dir = os.path.join(workdir, "calibration")
    k = 128
    if "--steps-per-call" in extra:
        k = int(extra[extra.index("--steps-per-call") + 1])
    # Long enough (8 calls) that one slow call on a busy machine does not skew the estimate.
    code = train.main(common + ["--output-dir", calib_dir, "--steps", str(8 * k), "--no-eval"])
    if code != 0:
        raise SystemExit(f"jaxgraph calibration run failed with status {code}")
    with open(os.path.join(calib_dir, "metrics.json")) as f:
        calib = json.load(f)
    steps_per_sec = calib["steps_this_run"] / calib["train_seconds"]
    steps = max(k, int(seconds * steps_per_sec) // k * k)
    print(f"jaxgraph: calibration {steps_per_sec:.1f} steps/s -> {steps} steps for {seconds:.0f}s")
    out = os.path.join(workdir, "jaxgraph")
    t0 = time.perf_counter()
    code = train.main(common + ["--output-dir", out, "--steps", str(steps), "--no-eval"])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"jaxgraph run failed with status {code}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(os.path.join(out, "vectors.txt"))
    return {
        "train_seconds": m["train_seconds"],
        "wall_seconds_incl_setup_and_compile": wall,
        "words_per_sec": m["words_per_sec"],
        "examples_per_sec": m["examples_per_sec"],
        "epochs": m["epochs_completed"],
        "steps": m["steps"],
        "vocabulary_size": m["vocabulary_size"],
        "device": m["device"],
        "devices": m.get("devices", 1),
        "config": {k: m["config"][k] for k in ("batch_size", "steps_per_call", "learning_rate", "optimizer",
                                                 "negatives", "loss", "window", "embedding_size")},
        **_scores(kv.vectors, kv.key_to_index),
    }


def run_gensim(words: list[str], seconds: float, seed: int) -> dict:
    from gensim.models import Word2Vec

    logging.getLogger("gensim").setLevel(logging.WARNING)
    sentences = [words[i: i + 10000] for i in range(0, len(words), 10000)]  # gensim's 10k-token limit
    workers = os.cpu_count() or 1
    kwargs = dict(sg=1, window=5, negative=5, workers=workers, min_count=5, vector_size=100, sample=1e-3,
                  seed=seed)
    t0 = time.perf_counter()
    calib = Word2Vec(**kwargs)
    calib.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    calib.train(sentences, total_examples=len(sentences), epochs=1)
    epoch_seconds = time.perf_counter() - t0
    epochs = max(1, round(seconds / epoch_seconds))
    print(f"gensim: calibration {epoch_seconds:.1f} s/epoch -> {epochs} epochs for {seconds:.0f}s")
    model = Word2Vec(**kwargs)
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    train_seconds = time.perf_counter() - t0
    return {
        "train_seconds": train_seconds,
        "vocab_seconds": vocab_seconds,
        "words_per_sec": len(words) * epochs / train_seconds,
        "epochs": epochs,
        "workers": workers,
        "vocabulary_size": len(model.wv),
        **_scores(model.wv.vectors, model.wv.key_to_index),
    }


def _fmt(name: str, r: dict) -> str:
    def pct(x):
        return "n/a" if x is None else f"{x:.1%}"

    def num(x):
        return "n/a" if x is None else f"{x:.3f}"

    return (
        f"{name:9s} WordSim353 {num(r.get('wordsim353_spearman'))} "
        f"(coverage {pct(r.get('wordsim353_coverage'))}), "
        f"SimLex-999 {num(r.get('simlex999_spearman'))}, "
        f"analogy {pct(r.get('analogy_accuracy'))} (coverage {pct(r.get('analogy_coverage'))}), "
        f"{r['words_per_sec']:,.0f} raw words/s, {r['epochs']:.2f} epochs in {r['train_seconds']:.1f}s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="text file (default: the embedded default corpus)")
    p.add_argument("--seconds", type=float, default=60.0, help="training budget for each side")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--trainer-args", default="", help="extra flags for the jaxgraph trainer, one string")
    args = p.parse_args(argv)
    try:
        if args.corpus:
            words, description = w2v_data.read_words(args.corpus), args.corpus
        else:
            words, description = w2v_data.default_corpus()
    except w2v_data.CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"corpus: {description}; {len(words):,} tokens; budget {args.seconds:.0f}s of training each; "
          f"{os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory(prefix="w2v_bench_") as workdir:
        # The same tokens for both: written space-separated, they re-tokenise to themselves.
        corpus_path = os.path.join(workdir, "corpus.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            for i in range(0, len(words), 10000):
                f.write(" ".join(words[i: i + 10000]) + "\n")
        extra = ["--seed", str(args.seed)] + args.trainer_args.split()
        train.configure_host_devices(extra)  # `--trainer-args "--devices 2"`: virtual CPU devices, before JAX starts
        jx = run_jaxgraph(corpus_path, args.seconds, workdir, extra)
        gs = run_gensim(words, args.seconds, args.seed)
    print(_fmt("jaxgraph", jx))
    print(_fmt("gensim", gs))
    ratios = {"words_per_sec": jx["words_per_sec"] / gs["words_per_sec"]}
    for key in ("wordsim353_spearman", "analogy_accuracy"):
        if jx.get(key) is not None and gs.get(key):
            ratios[key] = jx[key] / gs[key]
    for key, value in ratios.items():
        print(f"ratio jaxgraph/gensim {key}: {value:.2f}")
    print(json.dumps({"corpus": description, "tokens": len(words), "seconds": args.seconds,
                      "jaxgraph": jx, "gensim": gs, "ratios": ratios}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
