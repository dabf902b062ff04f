"""The fast word2vec trainer against gensim, same corpus, same wall-clock training budget, same run.

Both train skip-gram with negative sampling (window 5, 5 negatives, min_count 5, 100 dimensions,
subsampling 1e-3, linear learning-rate decay). gensim uses ``workers = os.cpu_count()``. Each side gets
``--seconds`` of *training* time (vocabulary building, compilation and evaluation are excluded and
reported separately): a short calibration run measures each one's speed, then the number of steps
(jaxgraph) or epochs (gensim) that fits the budget is trained from scratch. Both sets of vectors are
scored by the same code (``examples/word2vec/evaluation.py``): WordSim353 and SimLex-999 Spearman and
Google analogy accuracy. With ``--seeds`` both sides train once per seed (alternating, so that a change
in the machine's load hits both) and the scores are reported as mean +- sd: on the small default corpus
a single run's WordSim353 varies by about +-0.02 between seeds. Raw words/sec counts every corpus token
consumed (out-of-vocabulary and subsampled ones included), as gensim's "raw words" do.

Usage::

    python benchmarks/word2vec_vs_gensim.py --seconds 60                  # embedded default corpus
    python benchmarks/word2vec_vs_gensim.py --corpus text8.zip --seconds 600
    python benchmarks/word2vec_vs_gensim.py --seconds 60 --seeds 1,2,3     # mean +- sd over 3 seeds
    python benchmarks/word2vec_vs_gensim.py --trainer-args "--devices 2"  # data-parallel on 2 CPU devices

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
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


def _jaxgraph_common(corpus_path: str, extra: list[str]) -> list[str]:
    return ["--corpus", corpus_path, "--no-progress", "--no-tensorboard", "--quiet", "--checkpoint-every", "0",
            *extra]


def calibrate_jaxgraph(corpus_path: str, seconds: float, workdir: str, extra: list[str]) -> int:
    """The number of steps (a multiple of --steps-per-call) that fits ``seconds`` of training."""
    k = 128
    if "--steps-per-call" in extra:
        k = int(extra[extra.index("--steps-per-call") + 1])
    calib_dir = os.path.join(workdir, "calibration")
    # 32 calls; the rate is taken over the last 24, after the first calls' warm-up (page faults on the
    # fresh tables, caches), which made a short calibration underestimate the steady speed by ~1/3.
    stamps: list[tuple[int, float]] = []
    code = train.main(_jaxgraph_common(corpus_path, extra) + ["--output-dir", calib_dir, "--steps", str(32 * k),
                                                              "--no-eval"],
                      _after_call=lambda step: stamps.append((step, time.perf_counter())))
    if code != 0:
        raise SystemExit(f"jaxgraph calibration run failed with status {code}")
    (s0, t0), (s1, t1) = stamps[7], stamps[-1]
    steps_per_sec = (s1 - s0) / (t1 - t0)
    steps = max(k, int(seconds * steps_per_sec) // k * k)
    print(f"jaxgraph: calibration {steps_per_sec:.1f} steps/s -> {steps} steps for {seconds:.0f}s")
    return steps


def run_jaxgraph(corpus_path: str, steps: int, workdir: str, extra: list[str], seed: int) -> dict:
    out = os.path.join(workdir, f"jaxgraph_seed{seed}")
    t0 = time.perf_counter()
    code = train.main(_jaxgraph_common(corpus_path, extra) + ["--seed", str(seed), "--output-dir", out,
                                                              "--steps", str(steps), "--no-eval"])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"jaxgraph run failed with status {code}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(os.path.join(out, "vectors.txt"))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "seed": seed,
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
                                                 "negatives", "negatives_per_centre", "loss", "window",
                                                 "embedding_size") if k in m["config"]},
        **_scores(kv.vectors, kv.key_to_index),
    }


def _gensim_setup(words: list[str]):
    logging.getLogger("gensim").setLevel(logging.WARNING)
    sentences = [words[i: i + 10000] for i in range(0, len(words), 10000)]  # gensim's 10k-token limit
    workers = os.cpu_count() or 1
    kwargs = dict(sg=1, window=5, negative=5, workers=workers, min_count=5, vector_size=100, sample=1e-3)
    return sentences, kwargs


def calibrate_gensim(words: list[str], seconds: float) -> int:
    """The number of epochs that fits ``seconds`` of gensim training."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    sentences, kwargs = _gensim_setup(words)
    calib = Word2Vec(**kwargs, seed=1)
    calib.build_vocab(sentences)
    # Two epochs, timing the second: the first includes starting the worker threads and warming up.
    ends: list[float] = []

    class _EpochEnd(CallbackAny2Vec):
        def on_epoch_end(self, model):
            ends.append(time.perf_counter())

    calib.train(sentences, total_examples=len(sentences), epochs=2, callbacks=[_EpochEnd()])
    epoch_seconds = ends[1] - ends[0]
    epochs = max(1, round(seconds / epoch_seconds))
    print(f"gensim: calibration {epoch_seconds:.1f} s/epoch -> {epochs} epochs for {seconds:.0f}s")
    return epochs


def run_gensim(words: list[str], epochs: int, seed: int) -> dict:
    from gensim.models import Word2Vec

    sentences, kwargs = _gensim_setup(words)
    model = Word2Vec(**kwargs, seed=seed)
    t0 = time.perf_counter()
    model.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    train_seconds = time.perf_counter() - t0
    return {
        "seed": seed,
        "train_seconds": train_seconds,
        "vocab_seconds": vocab_seconds,
        "words_per_sec": len(words) * epochs / train_seconds,
        "epochs": epochs,
        "workers": kwargs["workers"],
        "vocabulary_size": len(model.wv),
        **_scores(model.wv.vectors, model.wv.key_to_index),
    }


_METRICS = ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy", "words_per_sec")


def _summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over the seeds of each score, and the speed."""
    out: dict[str, float | None] = {}
    for key in _METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.fmean(values) if values else None
        out[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else None
    out["epochs"] = statistics.fmean(r["epochs"] for r in runs)
    out["train_seconds"] = statistics.fmean(r["train_seconds"] for r in runs)
    return out


def _fmt(name: str, r: dict) -> str:
    def sd(key, scale=1.0, fmt="{:.3f}"):
        return "" if r.get(key + "_sd") is None else " +- " + fmt.format(r[key + "_sd"] * scale)

    def num(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.3f}{sd(key)}"

    def pct(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.1%}{sd(key, 100, '{:.1f}%')}"

    return (
        f"{name:9s} WordSim353 {num('wordsim353_spearman')}, SimLex-999 {num('simlex999_spearman')}, "
        f"analogy {pct('analogy_accuracy')}, {r['words_per_sec']:,.0f}{sd('words_per_sec', 1, '{:,.0f}')} "
        f"raw words/s, {r['epochs']:.2f} epochs in {r['train_seconds']:.1f}s"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="text file (default: the embedded default corpus)")
    p.add_argument("--seconds", type=float, default=60.0, help="training budget for each side")
    p.add_argument("--seeds", default="1",
                   help="comma-separated seeds: each side trains once per seed (same budget); scores are "
                        "reported per seed and as mean +- sd (default 1)")
    p.add_argument("--trainer-args", default="", help="extra flags for the jaxgraph trainer, one string")
    args = p.parse_args(argv)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds:
        p.error("--seeds: give at least one seed")
    try:
        if args.corpus:
            words, description = w2v_data.read_words(args.corpus), args.corpus
        else:
            words, description = w2v_data.default_corpus()
    except w2v_data.CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"corpus: {description}; {len(words):,} tokens; budget {args.seconds:.0f}s of training each; "
          f"seeds {seeds}; {os.cpu_count()} CPU cores")
    jx_runs, gs_runs = [], []
    with tempfile.TemporaryDirectory(prefix="w2v_bench_") as workdir:
        # The same tokens for both: written space-separated, they re-tokenise to themselves.
        corpus_path = os.path.join(workdir, "corpus.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            for i in range(0, len(words), 10000):
                f.write(" ".join(words[i: i + 10000]) + "\n")
        extra = args.trainer_args.split()
        train.configure_host_devices(extra)  # `--trainer-args "--devices 2"`: virtual CPU devices, before JAX starts
        steps = calibrate_jaxgraph(corpus_path, args.seconds, workdir, extra)
        epochs = calibrate_gensim(words, args.seconds)
        for seed in seeds:  # alternate the two, so that a change in the machine's load hits both
            jx_runs.append(run_jaxgraph(corpus_path, steps, workdir, extra, seed))
            print(_fmt(f"jaxgraph seed {seed}", jx_runs[-1]), flush=True)
            gs_runs.append(run_gensim(words, epochs, seed))
            print(_fmt(f"gensim seed {seed}", gs_runs[-1]), flush=True)
    jx, gs = _summary(jx_runs), _summary(gs_runs)
    print(_fmt("jaxgraph", jx))
    print(_fmt("gensim", gs))
    ratios = {}
    for key in _METRICS:
        if jx.get(key) is not None and gs.get(key):
            ratios[key] = jx[key] / gs[key]
    for key, value in ratios.items():
        print(f"ratio jaxgraph/gensim {key}: {value:.2f}")
    print(json.dumps({"corpus": description, "tokens": len(words), "seconds": args.seconds, "seeds": seeds,
                      "jaxgraph": jx, "gensim": gs, "ratios": ratios,
                      "runs": {"jaxgraph": jx_runs, "gensim": gs_runs}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
