"""Block sizes of the word2vec trainer's reader and export, against the old sizes measured in the same run.

* **Reading**: ``corpus_ids.read_corpus`` (one process, the trainer's path) of each ``--corpus`` with
  ``data._BLOCK_BYTES`` set to each of ``--block-bytes`` (the first one listed is the baseline: 4 MiB, the size
  before 2026-11-30).
* **Export**: ``export.save_word2vec_format`` of a ``--words`` x ``--dim`` table of N(0, 0.3^2) float32 values with
  ``export._VALUES_PER_BLOCK`` set to each of ``--values-per-block`` (first: 2^20, the size before).

Every size runs ``--repeats`` times, the sizes alternating, and the best time counts (the machine is shared). Each
line gives the rate and its ratio to the baseline's. Usage::

    PYTHONPATH=. python benchmarks/word2vec_block_sizes.py --corpus ~/.cache/jaxgraph/corpora/mix-10m.txt

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile

import numpy as np

from benchmarks.word2vec_setup import best_of
from examples.word2vec import corpus_ids, data, export

MIN_COUNT = 5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", action="append", default=[], help="a corpus file to read (repeat for several)")
    p.add_argument("--block-bytes", default="4194304,1048576,524288,262144",
                   help="reader block sizes in bytes, comma-separated; the first is the baseline")
    p.add_argument("--words", type=int, default=34000, help="export: rows of the table")
    p.add_argument("--dim", type=int, default=128, help="export: columns of the table")
    p.add_argument("--values-per-block", default="1048576,65536,16384",
                   help="export block sizes in values, comma-separated; the first is the baseline")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    block_bytes = [int(s) for s in args.block_bytes.split(",")]
    values_per_block = [int(s) for s in args.values_per_block.split(",")]
    results: dict = {"repeats": args.repeats, "load_average_start": os.getloadavg()[0], "reading": {}}
    print(f"best of {args.repeats}, sizes alternating, load average {results['load_average_start']:.1f}")
    with tempfile.TemporaryDirectory() as workdir:
        for path in args.corpus:

            def read(size: int, path: str = path) -> int:
                data._BLOCK_BYTES = size
                return corpus_ids.read_corpus(path, MIN_COUNT, None, memory_bytes=1 << 40, spill_dir=workdir,
                                              processes=0).raw_tokens

            runs = best_of({str(size): functools.partial(read, size) for size in block_bytes}, args.repeats)
            best = {size: runs[str(size)]["wall_s"] for size in block_bytes}
            tokens = runs[str(block_bytes[0])]["result"]
            base = best[block_bytes[0]]
            print(f"\nread_corpus {path} ({tokens:,} tokens), one process:")
            for size, seconds in best.items():
                print(f"  blocks of {size >> 10:6,} KiB  {seconds:6.2f} s  {tokens / seconds / 1e6:5.2f}M words/s  "
                      f"{base / seconds:.2f}x the {block_bytes[0] >> 10:,} KiB blocks")
            results["reading"][path] = {"tokens": tokens, "seconds": {str(k): v for k, v in best.items()}}

        vectors = np.random.default_rng(0).normal(0, 0.3, (args.words, args.dim)).astype(np.float32)
        words = [f"w{i}" for i in range(args.words)]
        target = os.path.join(workdir, "vectors.txt")

        def write(size: int) -> None:
            export._VALUES_PER_BLOCK = size
            export.save_word2vec_format(target, vectors, words)

        runs = best_of({str(size): functools.partial(write, size) for size in values_per_block}, args.repeats)
        best = {size: runs[str(size)]["wall_s"] for size in values_per_block}
        megabytes = os.path.getsize(target) / 1e6
        base = best[values_per_block[0]]
        print(f"\nsave_word2vec_format of {args.words:,} x {args.dim} float32 ({megabytes:.1f} MB):")
        for size, seconds in best.items():
            print(f"  blocks of {size:9,} values  {seconds:6.2f} s  {megabytes / seconds:6.1f} MB/s  "
                  f"{base / seconds:.2f}x the {values_per_block[0]:,}-value blocks")
        results["export"] = {"megabytes": megabytes, "words": args.words, "dim": args.dim,
                             "seconds": {str(k): v for k, v in best.items()}}
    results["load_average_end"] = os.getloadavg()[0]
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
