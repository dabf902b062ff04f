"""Write a large synthetic English-like corpus for the word2vec benchmarks: deterministic for a seed.

Words are drawn from a Zipf distribution (``p(rank) ~ 1 / rank**exponent``, as word frequencies in English) over a
vocabulary of ``--vocabulary`` pseudo-words made of syllables (rank ``r`` written in base 40 with one syllable per
digit: frequent words are short, every rank a distinct word). Sentences of 5-24 words start with a capital letter
and end with ``.`` and a line break, so the reader sees upper case and punctuation as in real text (ASCII only).
Topics are not modelled: the corpus measures reading, memory and speed, not the quality of the vectors.

Usage (the files are large: write them outside the repository)::

    python benchmarks/make_large_corpus.py /tmp/corpus_500m.txt --tokens 500000000     # ~3.3 GB, ~2 minutes
    python benchmarks/make_large_corpus.py /tmp/corpus_14m.txt --tokens 14000000

The last line printed is a JSON object: path, tokens, bytes, seconds, the configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"][:40]
BLOCK = 4_000_000  # tokens per block written


def pseudo_words(n: int) -> np.ndarray:
    """``n`` distinct lowercase words, shortest for the smallest ranks (an object array of bytes)."""
    words = []
    for rank in range(n):
        syllables = [SYLLABLES[rank % 40]]
        rank //= 40
        while rank:
            syllables.append(SYLLABLES[rank % 40])
            rank //= 40
        words.append("".join(syllables).encode())
    return np.array(words, dtype=object)


def write_corpus(path: str, tokens: int, vocabulary: int, exponent: float, seed: int) -> int:
    """Write the corpus; returns its size in bytes."""
    rng = np.random.default_rng(seed)
    plain = pseudo_words(vocabulary)
    capital = np.array([w[:1].upper() + w[1:] for w in plain], dtype=object)
    final = np.array([w + b".\n" for w in plain], dtype=object)
    cdf = np.cumsum(1.0 / np.arange(1, vocabulary + 1, dtype=np.float64) ** exponent)
    cdf /= cdf[-1]
    written = 0
    size = 0
    with open(path, "wb") as f:
        while written < tokens:
            n = min(BLOCK, tokens - written)
            ids = np.minimum(np.searchsorted(cdf, rng.random(n)), vocabulary - 1)
            lengths = rng.integers(5, 25, n // 5 + 2)
            ends = np.cumsum(lengths) - 1
            ends = ends[ends < n]
            words = plain[ids]
            words[ends] = final[ids[ends]]
            starts = np.concatenate([[0], ends + 1])
            starts = starts[starts < n]
            words[starts] = capital[ids[starts]]
            text = b" ".join(words.tolist()) + b" "
            f.write(text)
            size += len(text)
            written += n
    return size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path")
    p.add_argument("--tokens", type=int, default=500_000_000)
    p.add_argument("--vocabulary", type=int, default=500_000, help="distinct words drawn from (default 500,000)")
    p.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent (default 1.0)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    size = write_corpus(args.path, args.tokens, args.vocabulary, args.exponent, args.seed)
    print(json.dumps({"path": os.path.abspath(args.path), "tokens": args.tokens, "bytes": size,
                      "seconds": round(time.perf_counter() - t0, 1), "vocabulary": args.vocabulary,
                      "exponent": args.exponent, "seed": args.seed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
