"""The fast word2vec trainer against gensim: same corpora, same hyper-parameters, same run.

Both train skip-gram with negative sampling (by default window 5, 5 negatives, min_count 5, 100
dimensions, subsampling 1e-3, linear learning-rate decay; ``--window``, ``--negatives``,
``--embedding-size``, ``--min-count``, ``--subsample`` change both sides). gensim uses ``workers =
os.cpu_count()`` (``--workers``). Two modes:

* **equal time** (``--seconds S``, the default mode): each side gets S seconds of *training* time: a
  short calibration run measures each one's speed, then the number of steps (jaxgraph) or epochs
  (gensim) that fits the budget is trained from scratch;
* **equal epochs** (``--epochs N``): both train N epochs (word2vec's usual comparison).

For every corpus (``--corpus``: one or more, comma-separated; a name from ``benchmarks/corpora.py``
such as ``embedded``, ``mix-5m`` or ``pydocs``, or a path) and every seed (``--seeds``), the two sides
run one after the other (alternating, so that a change in the machine's load hits both), and each run
reports:

* raw words/sec of training (every corpus token consumed, out-of-vocabulary and subsampled ones
  included, as gensim's "raw words"), training seconds and epochs;
* **setup** seconds: reading and tokenising the corpus file and building the vocabulary. jaxgraph: the
  trainer's own ``corpus_ids.read_corpus`` call inside its run (reading, vocabulary and ids), timed by wrapping it;
  gensim: ``LineSentence`` read into memory plus ``build_vocab``. Both read the same file (the corpus's
  tokens, 10,000 a line: gensim's sentence limit, so that its windows see the same running text);
* **export** seconds and MB/s: jaxgraph: the trainer's own export calls (``save_embeddings``: ``vectors.txt`` in
  word2vec text format, the projector's ``vectors.tsv`` + ``metadata.tsv``; ``save_projector_config``), timed by
  wrapping them;
  gensim: ``wv.save_word2vec_format`` (text);
* WordSim353 and SimLex-999 Spearman and Google analogy accuracy, both sides' vectors scored by the same
  code (``examples/word2vec/evaluation.py``).

Per corpus it prints mean +- sd over the seeds for both sides, the ratios jaxgraph / gensim, and for each score
jaxgraph's mean minus gensim's with a 95% interval (``evaluation.compare_scores``: a paired bootstrap over the
evaluated pairs or questions and the seeds). The interval says whether a gap is the systems' or the evaluation
sets' sampling error: on a small corpus the vocabulary covers few of WordSim353's pairs (85 on the 3.5M-word
manual pages), and a Spearman correlation on 85 pairs moves by ~0.1 with the pairs drawn.

Usage::

    python benchmarks/word2vec_vs_gensim.py --seconds 60                       # embedded corpus, equal time
    python benchmarks/word2vec_vs_gensim.py --corpus text8.zip --seconds 600
    python benchmarks/word2vec_vs_gensim.py --seconds 60 --seeds 1,2,3          # mean +- sd over 3 seeds
    python benchmarks/word2vec_vs_gensim.py --trainer-args "--devices 2"       # data-parallel on 2 CPU devices
    python benchmarks/word2vec_vs_gensim.py --corpus embedded,mix-5m --epochs 1 --seeds 1,2,3 --embedding-size 128

The last line printed is one JSON object with every figure (``--json FILE`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import corpora  # noqa: E402
from examples.word2vec import corpus_ids, evaluation, export, train  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402

__all__ = ["main"]

_LINE_TOKENS = 10000  # gensim's max_sentence_length


def _scores(vectors, key_to_index) -> dict[str, Any]:
    """The run's scores, and under ``"items"`` their per-item outcomes (for :func:`evaluation.compare_scores`;
    not written to ``--json``)."""
    try:
        items = evaluation.evaluation_items(vectors, key_to_index)
    except evaluation.EvaluationUnavailable as e:
        print(f"evaluation unavailable: {e}")
        return {}

    def clean(x):
        return None if isinstance(x, float) and math.isnan(x) else x

    return {**{k: clean(v) for k, v in evaluation.results_from_items(items).items()}, "items": items}


@contextlib.contextmanager
def _timing(module: Any, names: tuple[str, ...], seconds: list[float]) -> Iterator[None]:
    """Wrap ``module.<name>`` for each name so that every call adds its duration to ``seconds[0]``."""
    originals = {n: getattr(module, n) for n in names}

    def timed(fn: Callable) -> Callable:
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                seconds[0] += time.perf_counter() - t0
        return wrapper

    for n, fn in originals.items():
        setattr(module, n, timed(fn))
    try:
        yield
    finally:
        for n, fn in originals.items():
            setattr(module, n, fn)


def _hyper(args: argparse.Namespace) -> list[str]:
    return ["--window", str(args.window), "--negatives", str(args.negatives), "--embedding-size",
            str(args.embedding_size), "--min-count", str(args.min_count), "--subsample", str(args.subsample)]


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


def run_jaxgraph(corpus_path: str, length: list[str], workdir: str, extra: list[str], seed: int) -> dict:
    """One trainer run (``length``: ``--steps N`` or ``--epochs N``), its vectors scored."""
    out = os.path.join(workdir, f"jaxgraph_seed{seed}")
    setup, exported = [0.0], [0.0]
    t0 = time.perf_counter()
    with _timing(corpus_ids, ("read_corpus",), setup), \
            _timing(export, ("save_embeddings", "save_projector_config"), exported):
        code = train.main(_jaxgraph_common(corpus_path, extra) + ["--seed", str(seed), "--output-dir", out,
                                                                  *length, "--no-eval"])
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"jaxgraph run failed with status {code}")
    if not (setup[0] and exported[0]):  # the trainer no longer calls what is wrapped: say so, never report 0 s
        raise SystemExit("jaxgraph run: the setup or export calls timed here were not called by the trainer")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    export_bytes = sum(os.path.getsize(os.path.join(out, n)) for n in
                       ("vectors.txt", "vectors.tsv", "metadata.tsv", "projector_config.pbtxt")
                       if os.path.exists(os.path.join(out, n)))
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(os.path.join(out, "vectors.txt"))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "seed": seed,
        "train_seconds": m["train_seconds"],
        "setup_seconds": setup[0],
        "export_seconds": exported[0],
        "export_mb_per_sec": export_bytes / 1e6 / exported[0] if exported[0] else None,
        "wall_seconds_incl_setup_and_compile": wall,
        "words_per_sec": m["words_per_sec"],
        "examples_per_sec": m["examples_per_sec"],
        "epochs": m["epochs_completed"],
        "steps": m["steps"],
        "vocabulary_size": m["vocabulary_size"],
        "device": m["device"],
        "devices": m.get("devices", 1),
        "config": {k: m["config"][k] for k in ("batch_size", "steps_per_call", "learning_rate", "optimizer",
                                                 "negatives", "negative_sharing", "shared_negatives",
                                                 "pairs_per_group", "step_cap", "negatives_per_centre", "loss",
                                                 "window", "embedding_size") if k in m["config"]},
        **_scores(kv.vectors, kv.key_to_index),
    }


def _gensim_kwargs(args: argparse.Namespace) -> dict:
    logging.getLogger("gensim").setLevel(logging.WARNING)
    return dict(sg=1, window=args.window, negative=args.negatives, workers=args.workers, min_count=args.min_count,
                vector_size=args.embedding_size, sample=args.subsample)


def _gensim_read(corpus_path: str) -> list[list[str]]:
    from gensim.models.word2vec import LineSentence

    return list(LineSentence(corpus_path, max_sentence_length=_LINE_TOKENS))


def calibrate_gensim(corpus_path: str, seconds: float, args: argparse.Namespace) -> int:
    """The number of epochs that fits ``seconds`` of gensim training."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    sentences = _gensim_read(corpus_path)
    calib = Word2Vec(**_gensim_kwargs(args), seed=1)
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


def run_gensim(corpus_path: str, epochs: int, seed: int, args: argparse.Namespace, workdir: str) -> dict:
    from gensim.models import Word2Vec

    kwargs = _gensim_kwargs(args)
    t0 = time.perf_counter()
    sentences = _gensim_read(corpus_path)
    read_seconds = time.perf_counter() - t0
    model = Word2Vec(**kwargs, seed=seed)
    t0 = time.perf_counter()
    model.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - t0
    n_words = sum(len(s) for s in sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=epochs)
    train_seconds = time.perf_counter() - t0
    path = os.path.join(workdir, f"gensim_seed{seed}.txt")
    t0 = time.perf_counter()
    model.wv.save_word2vec_format(path)
    export_seconds = time.perf_counter() - t0
    export_bytes = os.path.getsize(path)
    os.remove(path)
    return {
        "seed": seed,
        "train_seconds": train_seconds,
        "setup_seconds": read_seconds + vocab_seconds,
        "read_seconds": read_seconds,
        "vocab_seconds": vocab_seconds,
        "export_seconds": export_seconds,
        "export_mb_per_sec": export_bytes / 1e6 / export_seconds,
        "words_per_sec": n_words * epochs / train_seconds,
        "epochs": epochs,
        "workers": kwargs["workers"],
        "vocabulary_size": len(model.wv),
        **_scores(model.wv.vectors, model.wv.key_to_index),
    }


_METRICS = ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy", "words_per_sec", "setup_seconds",
            "export_seconds", "export_mb_per_sec")


def _summary(runs: list[dict]) -> dict:
    """Mean and sample standard deviation over the seeds of each score, the speed and the timings."""
    out: dict[str, float | None] = {}
    for key in _METRICS:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.fmean(values) if values else None
        out[key + "_sd"] = statistics.stdev(values) if len(values) > 1 else None
    out["epochs"] = statistics.fmean(r["epochs"] for r in runs)
    out["train_seconds"] = statistics.fmean(r["train_seconds"] for r in runs)
    out["seeds"] = len(runs)
    return out


def _fmt(name: str, r: dict) -> str:
    def sd(key, scale=1.0, fmt="{:.3f}"):
        return "" if r.get(key + "_sd") is None else " +- " + fmt.format(r[key + "_sd"] * scale)

    def num(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.3f}{sd(key)}"

    def pct(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.1%}{sd(key, 100, '{:.1f}%')}"

    def secs(key):
        return "n/a" if r.get(key) is None else f"{r[key]:.1f}s"

    return (
        f"{name:9s} WordSim353 {num('wordsim353_spearman')}, SimLex-999 {num('simlex999_spearman')}, "
        f"analogy {pct('analogy_accuracy')}, {r['words_per_sec']:,.0f}{sd('words_per_sec', 1, '{:,.0f}')} "
        f"raw words/s, {r['epochs']:.2f} epochs in {r['train_seconds']:.1f}s; setup {secs('setup_seconds')}, "
        f"export {secs('export_seconds')}"
    )


_SCORE_LABELS = {"wordsim353": ("WordSim353", "pairs", 1.0, "{:+.3f}"),
                 "simlex999": ("SimLex-999", "pairs", 1.0, "{:+.3f}"),
                 "analogy": ("analogy", "questions", 100.0, "{:+.1f} pts")}


def _difference_lines(differences: dict[str, dict[str, float]]) -> list[str]:
    """One line per score: jaxgraph's mean minus gensim's, its 95% interval, and what the interval says; a score
    ``compare_scores`` could not compare is named too.

    >>> print(*_difference_lines({"analogy": {"difference": -0.004, "low": -0.011, "high": 0.003, "items": 25}}),
    ...       sep="\\n")  # doctest: +ELLIPSIS
    jaxgraph - gensim WordSim353: not compared (fewer than 2 pairs that every run covers)
    ...
    jaxgraph - gensim analogy: -0.4 pts (95% interval -1.1 pts to +0.3 pts; 25 common questions): no clear difference
    """
    lines = []
    for key, (label, unit, scale, fmt) in _SCORE_LABELS.items():
        if key not in differences:
            lines.append(f"jaxgraph - gensim {label}: not compared (fewer than 2 {unit} that every run covers)")
            continue
        d = differences[key]
        verdict = "above gensim" if d["low"] > 0 else "below gensim" if d["high"] < 0 else "no clear difference"
        lines.append(f"jaxgraph - gensim {label}: {fmt.format(d['difference'] * scale)} (95% interval "
                     f"{fmt.format(d['low'] * scale)} to {fmt.format(d['high'] * scale)}; {d['items']} common {unit}): "
                     f"{verdict}")
    return lines


def _resolve_corpus(spec: str, cache_dir: str) -> tuple[str | None, str]:
    """(path or None for the embedded corpus, description) of a ``--corpus`` item: a corpora.py name or a
    path. The embedded corpus without the cache is read straight from gensim's test data, as before."""
    if spec in corpora.CORPORA:
        return corpora.corpus_path(spec, cache_dir), f"{spec} (benchmarks/corpora.py)"
    return spec, spec


def _bench_corpus(spec: str, args: argparse.Namespace, seeds: list[int], extra: list[str]) -> dict:
    try:
        if spec == "":
            words, description = w2v_data.default_corpus()
        else:
            path, description = _resolve_corpus(spec, args.corpus_cache)
            words = w2v_data.read_words(path)
    except (w2v_data.CorpusError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    mode = f"{args.epochs:g} epoch(s) each" if args.epochs else f"budget {args.seconds:.0f}s of training each"
    print(f"corpus: {description}; {len(words):,} tokens; {mode}; seeds {seeds}; {os.cpu_count()} CPU cores; "
          f"window {args.window}, {args.negatives} negatives, {args.embedding_size}-d, min-count {args.min_count}, "
          f"subsample {args.subsample:g}; gensim workers {args.workers}; trainer flags {' '.join(extra)}", flush=True)
    jx_runs: list[dict] = []
    gs_runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="w2v_bench_") as workdir:
        # The same tokens for both: written space-separated, they re-tokenise to themselves.
        corpus_path = os.path.join(workdir, "corpus.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            for i in range(0, len(words), _LINE_TOKENS):
                f.write(" ".join(words[i: i + _LINE_TOKENS]) + "\n")
        n_words = len(words)
        del words
        if args.epochs:
            length, epochs = ["--epochs", f"{args.epochs:g}"], int(args.epochs)
        else:
            length = ["--steps", str(calibrate_jaxgraph(corpus_path, args.seconds, workdir, extra))] \
                if "jaxgraph" in args.systems else []
            epochs = calibrate_gensim(corpus_path, args.seconds, args) if "gensim" in args.systems else 0
        for seed in seeds:  # alternate the two, so that a change in the machine's load hits both
            if "jaxgraph" in args.systems:
                jx_runs.append(run_jaxgraph(corpus_path, length, workdir, extra, seed))
                print(_fmt(f"jaxgraph seed {seed}", jx_runs[-1]), flush=True)
            if "gensim" in args.systems:
                gs_runs.append(run_gensim(corpus_path, epochs, seed, args, workdir))
                print(_fmt(f"gensim seed {seed}", gs_runs[-1]), flush=True)
    result: dict[str, Any] = {"corpus": description, "tokens": n_words, "runs": {}}
    items = {name: [r.pop("items") for r in runs if "items" in r] for name, runs in
             (("jaxgraph", jx_runs), ("gensim", gs_runs))}
    for name, runs in (("jaxgraph", jx_runs), ("gensim", gs_runs)):
        if runs:
            result[name] = _summary(runs)
            result["runs"][name] = runs
            print(_fmt(name, result[name]))
    if items["jaxgraph"] and items["gensim"]:
        result["differences"] = evaluation.compare_scores(items["jaxgraph"], items["gensim"])
        for line in _difference_lines(result["differences"]):
            print(line)
    if jx_runs and gs_runs:
        jx, gs = result["jaxgraph"], result["gensim"]
        ratios = {k: jx[k] / gs[k] for k in _METRICS if jx.get(k) is not None and gs.get(k)}
        ratios.update({k + "_sd": jx[k + "_sd"] / gs[k + "_sd"] for k in _METRICS[:3]
                       if jx.get(k + "_sd") is not None and gs.get(k + "_sd")})
        result["ratios"] = ratios
        for key, value in ratios.items():
            print(f"ratio jaxgraph/gensim {key}: {value:.2f}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="",
                   help="comma-separated corpora: names from benchmarks/corpora.py (" + ", ".join(corpora.CORPORA)
                        + ") or paths of text files (default: the embedded corpus, read from gensim's test data)")
    p.add_argument("--corpus-cache", default=corpora.DEFAULT_CACHE_DIR, help="where corpora.py keeps built corpora")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--seconds", type=float, default=60.0, help="equal time: training budget for each side")
    mode.add_argument("--epochs", type=float, default=None,
                      help="equal epochs: both sides train this many epochs (a whole number)")
    p.add_argument("--seeds", default="1",
                   help="comma-separated seeds: each side trains once per seed; scores are reported per seed "
                        "and as mean +- sd (default 1)")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--embedding-size", type=int, default=100)
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--subsample", type=float, default=1e-3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="gensim's worker threads")
    p.add_argument("--systems", default="jaxgraph,gensim",
                   help="which to run: jaxgraph, gensim or jaxgraph,gensim (both, the default)")
    p.add_argument("--trainer-args", default="", help="extra flags for the jaxgraph trainer, one string")
    p.add_argument("--json", help="also write the final JSON object to this file")
    args = p.parse_args(argv)
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        p.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if not seeds:
        p.error("--seeds: give at least one seed")
    if args.epochs is not None and (args.epochs < 1 or args.epochs != int(args.epochs)):
        p.error(f"--epochs: gensim trains whole epochs; give a whole number >= 1, got {args.epochs:g}")
    args.systems = {s.strip() for s in args.systems.split(",") if s.strip()}
    if not args.systems or not args.systems <= {"jaxgraph", "gensim"}:
        p.error("--systems: jaxgraph, gensim or jaxgraph,gensim")
    extra = _hyper(args) + args.trainer_args.split()
    train.configure_host_devices(extra)  # `--trainer-args "--devices 2"`: virtual CPU devices, before JAX starts
    specs = [s.strip() for s in args.corpus.split(",")] if args.corpus else [""]
    results = [_bench_corpus(spec, args, seeds, extra) for spec in specs]
    out = {"mode": {"epochs": args.epochs} if args.epochs else {"seconds": args.seconds}, "seeds": seeds,
           "hyper_parameters": {k: getattr(args, k) for k in ("window", "negatives", "embedding_size",
                                                               "min_count", "subsample", "workers")},
           "trainer_args": args.trainer_args, "corpora": results}
    if len(results) == 1:  # the single-corpus layout of earlier versions, kept for their readers
        out.update({k: v for k, v in results[0].items() if k != "runs"}, runs=results[0]["runs"])
    line = json.dumps(out)
    if args.json:
        with open(args.json, "w") as f:
            f.write(line + "\n")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
