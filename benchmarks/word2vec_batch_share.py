"""How much of the word2vec trainer's compiled call is batch making, and what prefetching it on a second thread
could save (issue 14: the lever "make call N+1's batches on the idle core while call N trains").

A call (``examples/word2vec/step.py``) runs K steps; each builds its batch on the device (``BatchMaker``: span
slice, subsampling hash, compaction, window hash, masks) and draws its negatives (``sampling.centre_negatives``),
then computes the loss and gradients and applies them. The batches depend only on the corpus and the cursor, so
they could be made by a separate program on another thread. This script times, on the same corpus and state,
interleaved in every round:

* ``full``: the trainer's own K-step program (``make_multi_step``, state donated), one call after another;
* ``batches``: a program of only the K steps' batches and negatives (stacked ``[K, ...]``, the cursor carried);
* ``train``: the K steps' loss, gradients and update over those stacked batches (``lax.scan`` over them as
  ``xs``, state donated): the part a prefetching trainer would still run on the main thread;
* ``pipelined``: ``train`` on the main thread while a second thread runs ``batches`` for the next call (the
  prefetcher's best case: no exactness bookkeeping, partial calls or streaming).

Before timing it checks that ``train`` over ``batches``' output reaches the same state as ``full``, bit for bit
(so both do the same work). Figures are wall milliseconds per call, median and minimum over the rounds, and the
ratios ``batches / full``, ``train / full`` (``1 - train / full`` bounds what any overlap can save) and ``full /
pipelined`` (the speed-up actually reached), each the median of the per-round ratios. The load average is
printed with every round: other jobs on the 2 cores move every figure. Only ``--loss neg`` with the default
grouped negatives is supported (the trainer's default).

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/word2vec_batch_share.py --corpus /tmp/w2vr_corpora2/mix-10m.txt \\
        --rounds 7 --calls 20 -- --embedding-size 128

Arguments after ``--`` are trainer flags (``examples/word2vec/flags.py``). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph as jg  # noqa: E402
from examples.word2vec import corpus_ids, flags, model, sampling  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec.batches import BatchMaker  # noqa: E402
from examples.word2vec.model import init_params  # noqa: E402
from examples.word2vec.optimizer import linear_decay, make_optimizer  # noqa: E402
from examples.word2vec.step import centres_per_group, make_multi_step  # noqa: E402

__all__ = ["main"]


def _programs(args: argparse.Namespace, batches: BatchMaker, opt: jg.train.Optimizer, vocab_size: int,
              schedule):
    """``(batch_program, train_program)``: the two halves of the trainer's K-step call (see the module docstring).
    They mirror ``step.py``'s step for the default loss; the bit-for-bit check in :func:`main` keeps them honest."""
    group = centres_per_group(args)
    step_cap = args.learning_rate if args.step_cap else None
    k = args.steps_per_call

    @jax.jit
    def batch_program(data, epoch, position, step):
        def body(carry, _):
            e, p, s = carry
            centres, contexts, mask, e, p = batches(data["corpus"], data["keep"], e, p)
            negs = sampling.centre_negatives(data, args.seed, s, 0, batches.rows // group, args.shared_negatives)
            return (e, p, s + 1), (centres, contexts, mask, negs, e, p)

        return jax.lax.scan(body, (epoch, position, step), None, length=k)

    def train(params, opt_state, xs):
        def body(carry, x):
            params, opt_state = carry
            centres, contexts, mask, negs, epoch, position = x
            lr = schedule(params["global_step"].value) if args.sequential_correction else None
            loss, grads_and_vars = opt.compute_gradients(
                lambda p: model.skipgram_group_negatives_loss(p, centres, contexts, mask, negs, args.negatives,
                                                              step_cap, lr, max_logit=args.max_logit), params)
            params, opt_state = opt.apply_gradients(grads_and_vars, params, opt_state,
                                                    global_step=params["global_step"])
            params = jg.replace_values(params, {"epoch": epoch, "position": position})
            return (params, opt_state), (loss, jnp.sum(mask.astype(jnp.int32)))

        (params, opt_state), (losses, pairs) = jax.lax.scan(body, (params, opt_state), xs)
        return params, opt_state, losses, pairs

    return batch_program, jax.jit(train, donate_argnums=(0, 1))


def _cursor(params) -> tuple:
    return params["epoch"].value, params["position"].value, params["global_step"].value


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=20, help="calls per mode per round")
    p.add_argument("trainer_flags", nargs="*", help="trainer flags (after --)")
    opts = p.parse_args(argv)
    args = flags.parse_flags(["--corpus", opts.corpus, *opts.trainer_flags])
    if args.loss != "neg" or args.negative_sharing != "group" or args.devices not in (None, 1):
        raise SystemExit("error: only --loss neg with --negative-sharing group on one device is supported")

    with tempfile.TemporaryDirectory() as spill:
        corpus = corpus_ids.read_corpus(opts.corpus, args.min_count, args.max_vocab, memory_bytes=1 << 40,
                                        spill_dir=spill)
    ids, counts = np.asarray(corpus.ids), corpus.counts
    keep = w2v_data.subsample_keep_prob(counts, int(counts.sum()), args.subsample).astype(np.float32)
    batches = BatchMaker(len(ids), args.window, args.batch_size, w2v_data.expected_keep_fraction(counts, keep),
                         args.seed, row_multiple=centres_per_group(args))
    schedule = linear_decay(args.learning_rate, 1_000_000)
    opt = make_optimizer(args.optimizer, schedule)
    data = jax.device_put({"corpus": batches.pad(ids), "keep": keep, **sampling.unigram_tables(counts)})
    full = make_multi_step(opt, batches, args, len(counts), learning_rate=schedule)
    batch_program, train_program = _programs(args, batches, opt, len(counts), schedule)

    def fresh():
        params = init_params(len(counts), args.embedding_size, args.loss, args.seed)
        return jax.device_put((params, opt.init(params)))

    # Same work: train(batches) reaches full's state, bit for bit, from the same start.
    a_params, a_opt, _, _ = full(*fresh(), data)
    b_params, b_opt = fresh()
    _, xs = batch_program(data, *_cursor(b_params))
    b_params, b_opt, _, _ = train_program(b_params, b_opt, xs)
    same = jax.tree_util.tree_all(jax.tree_util.tree_map(
        lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), (a_params, a_opt), (b_params, b_opt)))
    if not same:
        raise SystemExit("error: the split programs do not reproduce the trainer's call: fix _programs")

    state = [a_params, a_opt]  # the trained state carries on from mode to mode (all modes train from it)

    def run_full() -> None:
        params, opt_state = state
        for _ in range(opts.calls):
            params, opt_state, losses, _ = full(params, opt_state, data)
        jax.block_until_ready(losses)
        state[:] = params, opt_state

    def run_batches() -> list:
        carry, out = _cursor(state[0]), []
        for _ in range(opts.calls):
            carry, xs = batch_program(data, *carry)
            out.append(xs)
        jax.block_until_ready(out)
        return out

    def run_train(stacked: list) -> None:
        params, opt_state = state
        for xs in stacked:
            params, opt_state, losses, _ = train_program(params, opt_state, xs)
        jax.block_until_ready(losses)
        state[:] = params, opt_state

    def run_pipelined(pool: concurrent.futures.ThreadPoolExecutor) -> None:
        def make(carry):
            return jax.block_until_ready(batch_program(data, *carry))

        params, opt_state = state
        future = pool.submit(make, _cursor(params))
        for i in range(opts.calls):
            carry, xs = future.result()
            if i + 1 < opts.calls:
                future = pool.submit(make, carry)
            params, opt_state, losses, _ = train_program(params, opt_state, xs)
            jax.block_until_ready(losses)
        state[:] = params, opt_state

    def timed(fn, *a) -> float:
        t0 = time.perf_counter()
        fn(*a)
        return 1e3 * (time.perf_counter() - t0) / opts.calls

    rounds = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches") as pool:
        run_full(), run_pipelined(pool), run_train(run_batches())  # warm up every program
        for r in range(opts.rounds):
            t = {}
            for mode in (("full", "batches", "pipelined", "train") if r % 2 else
                         ("pipelined", "train", "full", "batches")):
                if mode == "full":
                    t[mode] = timed(run_full)
                elif mode == "batches":
                    t0 = time.perf_counter()
                    stacked = run_batches()
                    t[mode] = 1e3 * (time.perf_counter() - t0) / opts.calls
                elif mode == "train":
                    stacked = run_batches()  # the next calls' batches, made before the clock starts
                    t[mode] = timed(run_train, stacked)
                else:
                    t[mode] = timed(run_pipelined, pool)
            t["load"] = os.getloadavg()[0]
            rounds.append(t)
            print(f"round {r}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in t.items() if k != "load")
                  + f" per call; load {t['load']:.2f}", flush=True)

    def med(key: str) -> float:
        return statistics.median(t[key] for t in rounds)

    def ratio(a: str, b: str) -> float:
        return statistics.median(t[a] / t[b] for t in rounds)

    result = {
        "corpus": opts.corpus, "in_vocabulary_tokens": len(ids), "vocabulary": len(counts),
        "flags": opts.trainer_flags, "steps_per_call": args.steps_per_call, "rows": batches.rows,
        "rounds": opts.rounds, "calls": opts.calls, "jax": jax.__version__,
        "ms_per_call_median": {k: med(k) for k in ("full", "batches", "train", "pipelined")},
        "ms_per_call_min": {k: min(t[k] for t in rounds) for k in ("full", "batches", "train", "pipelined")},
        "batches_over_full": ratio("batches", "full"), "train_over_full": ratio("train", "full"),
        "full_over_pipelined": ratio("full", "pipelined"),
        "load_average": [t["load"] for t in rounds],
    }
    print(f"batches / full {result['batches_over_full']:.3f}, train / full {result['train_over_full']:.3f} "
          f"(at most {1 - result['train_over_full']:.1%} to save by overlap), full / pipelined "
          f"{result['full_over_pipelined']:.3f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
