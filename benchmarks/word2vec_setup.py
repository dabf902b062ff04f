"""The word2vec trainer's setup and export against gensim's, on the same corpus, in the same run.

* **Reading + vocabulary**: what the trainer runs before training (``corpus_ids.read_corpus``: the corpus read
  block by block, tokenised, counted, ranked, as ids) and the public ``data.load_corpus`` +
  ``data.build_vocabulary`` pair, against gensim reading the file into memory (``LineSentence``, whitespace
  tokens: less work than our tokeniser) and ``Word2Vec.build_vocab`` (min_count 5).
* **Export**: ``export.save_word2vec_format`` (``vectors.txt``) and ``export.save_embeddings`` (``vectors.txt`` +
  the projector's ``vectors.tsv`` + ``metadata.tsv``, what the trainer writes) against gensim's
  ``KeyedVectors.save_word2vec_format`` of the same vectors (the corpus's vocabulary, ``--dim`` values per word
  drawn from N(0, 0.3^2), like trained vectors), in MB of ``vectors.txt`` per second.
* ``--before DIR``: also the same steps of another checkout (e.g. main before this change), its modules loaded
  from their files, and its ``read_corpus`` (the trainer's path) in a process of its own, to report the speed-up.
* ``read_corpus, processes=1``: the trainer's reader with one reader process (what it does by default from
  256 MiB on 2 cores), to show what a reader process buys or costs on the machine as loaded.

Every step runs ``--repeats`` times, alternating the systems, and the best time counts (the machine is shared);
CPU seconds (of the process and its reader processes) are reported beside wall seconds. Usage::

    python benchmarks/make_large_corpus.py /tmp/corpus_14m.txt --tokens 14000000
    PYTHONPATH=. python benchmarks/word2vec_setup.py --corpus /tmp/corpus_14m.txt --before ../main
    PYTHONPATH=. python benchmarks/word2vec_setup.py --wiki-copies 29      # real text: gensim's Wikipedia excerpt

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from examples.word2vec import corpus_ids, export  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402

MIN_COUNT = 5


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the trainer's reader processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), _cpu()
    result = fn()
    return time.perf_counter() - wall, _cpu() - cpu, result


def _load_module(directory: str, name: str) -> Any:
    """``examples/word2vec/<name>.py`` of another checkout, as a module of its own."""
    path = os.path.join(directory, "examples", "word2vec", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"before_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# Another checkout's read_corpus, timed inside a process of its own (its reader processes import that checkout's
# modules by name): wall and CPU seconds of the call alone (its process and reader processes), and the tokens read.
_ELSEWHERE = """
import json, resource, sys, time
from examples.word2vec import corpus_ids
def cpu():
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime
wall, c = time.perf_counter(), cpu()
corpus = corpus_ids.read_corpus(sys.argv[1], int(sys.argv[3]), None, memory_bytes=1 << 40, spill_dir=sys.argv[2])
print(json.dumps({"wall_s": time.perf_counter() - wall, "cpu_s": cpu() - c, "result": corpus.raw_tokens}))
"""


def _read_corpus_elsewhere(checkout: str, path: str, workdir: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
    out = subprocess.run([sys.executable, "-c", _ELSEWHERE, os.path.abspath(path), workdir, str(MIN_COUNT)],
                         cwd=checkout, env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def setup_steps(path: str, workdir: str, before: str | None) -> dict[str, Callable[[], Any]]:
    """Each system's reading + vocabulary of ``path``; each returns the number of tokens read."""
    from gensim.models import Word2Vec
    from gensim.models.word2vec import LineSentence

    def trainer() -> int:
        corpus = corpus_ids.read_corpus(path, MIN_COUNT, None, memory_bytes=1 << 40, spill_dir=workdir)
        return corpus.raw_tokens

    def one_reader() -> int:
        corpus = corpus_ids.read_corpus(path, MIN_COUNT, None, memory_bytes=1 << 40, spill_dir=workdir, processes=1)
        return corpus.raw_tokens

    def public_api() -> int:
        words, _ = w2v_data.load_corpus(path)
        w2v_data.build_vocabulary(words, MIN_COUNT)
        return len(words)

    def gensim() -> int:
        sentences = list(LineSentence(path, max_sentence_length=10000))
        Word2Vec(min_count=MIN_COUNT, workers=os.cpu_count()).build_vocab(sentences)
        return sum(map(len, sentences))

    steps = {"jaxgraph read_corpus": trainer, "jaxgraph read_corpus, processes=1": one_reader,
             "jaxgraph load_corpus + build_vocabulary": public_api, "gensim LineSentence + build_vocab": gensim}
    if before:
        old = _load_module(before, "data")

        def previous_trainer() -> dict[str, float]:
            return _read_corpus_elsewhere(before, path, workdir)

        steps["before: read_corpus"] = previous_trainer

        def previous() -> int:
            words = old.read_words(path)
            old.build_vocabulary(words, MIN_COUNT)
            return len(words)

        steps["before: read_words + build_vocabulary"] = previous
    return steps


def export_steps(words: list[str], vectors: np.ndarray, workdir: str, before: str | None) -> dict[str, Callable]:
    """Each system's export of ``vectors``; each returns the size of the vectors.txt it wrote."""
    from gensim.models import KeyedVectors

    def ours_txt() -> int:
        return os.path.getsize(export.save_word2vec_format(os.path.join(workdir, "a", "vectors.txt"), vectors, words))

    def ours_all() -> int:
        return os.path.getsize(export.save_embeddings(os.path.join(workdir, "b"), vectors, words)[0])

    kv = KeyedVectors(vectors.shape[1])
    kv.add_vectors(words, vectors)

    def gensim() -> int:
        path = os.path.join(workdir, "gensim_vectors.txt")
        kv.save_word2vec_format(path)
        return os.path.getsize(path)

    steps = {"jaxgraph save_word2vec_format": ours_txt, "jaxgraph save_embeddings (txt + tsv)": ours_all,
             "gensim save_word2vec_format": gensim}
    if before:
        old = _load_module(before, "export")

        def previous_txt() -> int:
            return os.path.getsize(old.save_word2vec_format(os.path.join(workdir, "c", "vectors.txt"), vectors, words))

        def previous_all() -> int:
            if hasattr(old, "save_embeddings"):
                return os.path.getsize(old.save_embeddings(os.path.join(workdir, "d"), vectors, words)[0])
            txt = old.save_word2vec_format(os.path.join(workdir, "d", "vectors.txt"), vectors, words)
            old.save_projector_tsv(os.path.join(workdir, "d"), vectors, words)  # what it wrote before save_embeddings
            return os.path.getsize(txt)

        steps["before: save_word2vec_format"] = previous_txt
        steps["before: save_embeddings (txt + tsv)"] = previous_all
    return steps


def best_of(steps: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """Each step ``repeats`` times, the steps alternating; the best wall time, its CPU time and the result."""
    best: dict[str, tuple[float, float, Any]] = {}
    for _ in range(repeats):
        for name, fn in steps.items():
            wall, cpu, result = _timed(fn)
            if isinstance(result, dict):  # timed where it ran (another checkout's process)
                wall, cpu, result = result["wall_s"], result["cpu_s"], result["result"]
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu, result)
    return {name: {"wall_s": round(w, 3), "cpu_s": round(c, 3), "result": r} for name, (w, c, r) in best.items()}


def write_wiki_text(path: str, copies: int) -> None:
    """gensim's Wikipedia excerpt as raw article text (upper case, punctuation, some non-ASCII: what
    ``filter_wiki`` leaves of the markup), ``copies`` times: real text for the tokeniser's slower path."""
    import bz2

    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with bz2.open(datapath(w2v_data.WIKI_EXCERPT), "rb") as f:
        text = "\n".join(filter_wiki(t) for _, t, _ in extract_pages(f, filter_namespaces=("0",))
                         if not t.lstrip().lower().startswith("#redirect"))
    with open(path, "w", encoding="utf-8") as out:
        for _ in range(copies):
            out.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="a corpus file (make one with make_large_corpus.py)")
    p.add_argument("--wiki-copies", type=int, default=0,
                   help="instead: gensim's Wikipedia excerpt as raw text, this many times (29: 14.1M words)")
    p.add_argument("--dim", type=int, default=128, help="values per word in the export (default 128)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before", default=None, help="another checkout whose reader and export to time as well")
    args = p.parse_args(argv)
    logging.getLogger("gensim").setLevel(logging.WARNING)
    if args.wiki_copies:
        args.corpus = os.path.join(tempfile.mkdtemp(prefix="w2v_setup_wiki_"), "wiki.txt")
        write_wiki_text(args.corpus, args.wiki_copies)
    elif not args.corpus:
        p.error("give --corpus or --wiki-copies")
    print(f"corpus {args.corpus} ({os.path.getsize(args.corpus) / 2**20:,.1f} MiB), min_count {MIN_COUNT}, "
          f"export dim {args.dim}, best of {args.repeats}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, Any] = {"corpus": os.path.abspath(args.corpus), "dim": args.dim, "repeats": args.repeats,
                               "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="w2v_setup_") as workdir:
        setup = best_of(setup_steps(args.corpus, workdir, args.before), args.repeats)
        corpus = corpus_ids.read_corpus(args.corpus, MIN_COUNT, None, memory_bytes=1 << 40, spill_dir=workdir)
        vectors = np.random.default_rng(0).normal(0, 0.3, (len(corpus.words), args.dim)).astype(np.float32)
        exported = best_of(export_steps(corpus.words, vectors, workdir, args.before), args.repeats)
    gensim_setup = setup["gensim LineSentence + build_vocab"]["wall_s"]
    print(f"\nreading + vocabulary ({corpus.raw_tokens:,} tokens, vocabulary {len(corpus.words):,}):")
    for name, r in setup.items():
        print(f"  {name:45s} {r['wall_s']:7.2f} s wall ({r['cpu_s']:6.2f} s CPU)  "
              f"{r['result'] / r['wall_s'] / 1e6:5.2f}M words/s  ({r['result'] / r['cpu_s'] / 1e6:5.2f}M per CPU "
              f"second)  gensim / this: {gensim_setup / r['wall_s']:.2f}x")
    if "before: read_corpus" in setup:
        old, new = setup["before: read_corpus"], setup["jaxgraph read_corpus"]
        print(f"  read_corpus, before / this: {old['wall_s'] / new['wall_s']:.2f}x wall, "
              f"{old['cpu_s'] / new['cpu_s']:.2f}x CPU seconds")
    gensim_export = exported["gensim save_word2vec_format"]["wall_s"]
    print(f"\nexport ({len(corpus.words):,} x {args.dim} float32, vectors.txt "
          f"{exported['gensim save_word2vec_format']['result'] / 1e6:,.1f} MB):")
    for name, r in exported.items():
        print(f"  {name:52s} {r['wall_s']:7.2f} s wall ({r['cpu_s']:6.2f} s CPU)  "
              f"{r['result'] / r['wall_s'] / 1e6:6.1f} MB/s of vectors.txt  gensim / this: "
              f"{gensim_export / r['wall_s']:.2f}x")
    for name in ("save_word2vec_format", "save_embeddings (txt + tsv)"):
        if f"before: {name}" in exported:
            print(f"  {name}, before / this: "
                  f"{exported[f'before: {name}']['wall_s'] / exported[f'jaxgraph {name}']['wall_s']:.2f}x wall")
    results.update(setup=setup, export=exported, tokens=corpus.raw_tokens, vocabulary=len(corpus.words),
                   load_average_end=os.getloadavg()[0])
    if args.wiki_copies:
        os.unlink(args.corpus)
        os.rmdir(os.path.dirname(args.corpus))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
