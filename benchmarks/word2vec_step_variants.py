"""The word2vec trainer's compiled K-step call under several flag sets, interleaved in one process: milliseconds
per step, and each variant's ratio to the first (the baseline, measured in the same rounds).

Each variant is a string of trainer flags (``examples/word2vec/flags.py``). All variants train from the same
initial tables on the same corpus (its first ``--words`` words), each from its own state; every round calls each
variant's program once (K = its ``--steps-per-call`` steps), in turn, so that load from other jobs falls on all of
them alike. Only the step is timed: the batch making, negatives, loss, gradients and update that a call of the
trainer runs (``step.make_multi_step``), not reading, export or evaluation. The first round (compilation warm-up)
is dropped.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/word2vec_step_variants.py --corpus /tmp/mix-5m.txt --rounds 15 \\
        --variant="--no-sequential-correction" --variant="" --variant="--batch-size 2048"

(``--variant=...`` with ``=``: a value that starts with ``--`` is otherwise read as an option.)

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec import flags, model, sampling  # noqa: E402
from examples.word2vec.batches import BatchMaker  # noqa: E402
from examples.word2vec.optimizer import linear_decay, make_optimizer  # noqa: E402
from examples.word2vec.step import centres_per_group, make_multi_step  # noqa: E402


def compiled_variant(flag_text: str, ids: np.ndarray, counts: np.ndarray) -> dict:
    """The trainer's K-step program for these flags, compiled, with its initial state and data."""
    args = flags.parse_flags(shlex.split(flag_text))
    keep = w2v_data.subsample_keep_prob(counts, int(counts.sum()), args.subsample).astype(np.float32)
    batches = BatchMaker(len(ids), args.window, args.batch_size, w2v_data.expected_keep_fraction(counts, keep),
                         args.seed, row_multiple=centres_per_group(args))
    schedule = linear_decay(args.learning_rate, 10**6)  # a long run's early steps
    optimizer = make_optimizer(args.optimizer, schedule)
    params = model.init_params(len(counts), args.embedding_size, args.loss, args.seed)
    data = {"corpus": jnp.asarray(batches.pad(ids)), "keep": jnp.asarray(keep),
            **{k: jnp.asarray(x) for k, x in sampling.unigram_tables(counts).items()}}
    program = make_multi_step(optimizer, batches, args, len(counts), learning_rate=schedule)
    opt_state = optimizer.init(params)
    program.compile(params, opt_state, data)
    return {"program": program, "state": (params, opt_state), "data": data, "k": args.steps_per_call,
            "ms_per_step": []}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="text file (as the trainer's --corpus)")
    p.add_argument("--words", type=int, default=1_000_000, help="use the corpus's first N words (default 1M)")
    p.add_argument("--min-count", type=int, default=5)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--variant", action="append", required=True,
                   help="trainer flags of one variant (repeat; the first is the baseline)")
    a = p.parse_args(argv)
    if a.rounds < 2:
        p.error(f"--rounds must be at least 2 (the first is dropped), got {a.rounds}")
    words = w2v_data.read_words(a.corpus)[: a.words]
    _, counts, ids = w2v_data.build_vocabulary(words, a.min_count, None)
    print(f"corpus {a.corpus}: first {len(words):,} words, vocabulary {len(counts):,} (min-count {a.min_count})")
    variants = {text: compiled_variant(text, ids, counts) for text in a.variant}
    for r in range(a.rounds):
        for v in variants.values():
            start = time.perf_counter()
            params, opt_state, losses, _ = v["program"](*v["state"], v["data"])
            losses.block_until_ready()
            v["ms_per_step"].append((time.perf_counter() - start) / v["k"] * 1e3)
            v["state"] = (params, opt_state)
        print(f"round {r + 1}/{a.rounds}, load average {os.getloadavg()[0]:.2f}")
    base = variants[a.variant[0]]["ms_per_step"][1:]
    result = []
    for text, v in variants.items():
        times = v["ms_per_step"][1:]
        ratio = statistics.median(t / b for t, b in zip(times, base, strict=True))
        result.append({"flags": text, "steps_per_call": v["k"], "median_ms": statistics.median(times),
                       "min_ms": min(times), "ratio_to_first": ratio})
        print(f"[{text}] median {statistics.median(times):.3f} ms/step, min {min(times):.3f}; "
              f"{ratio:.2f}x the first (median of per-round ratios)")
    print(json.dumps({"corpus": a.corpus, "words": len(words), "rounds": a.rounds, "variants": result}))


if __name__ == "__main__":
    main()
