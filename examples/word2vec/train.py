"""A fast skip-gram word2vec trainer on jaxgraph, beyond the TF tutorial: the entry point.

Run it as ``python -m examples.word2vec.train [--corpus PATH] [--output-dir DIR] ...`` (``--help`` lists every
flag). It trains with jaxgraph's public API only: the two embedding tables are :class:`jaxgraph.Variable` s read
through :func:`jaxgraph.nn.embedding_lookup`, so the optimizer gets ``IndexedSlices`` gradients and applies one
in-place scatter per table. The corpus lives on the device (whole, or the chunk in use when it is larger than
``--max-corpus-memory``), batches are made there, and K steps run per compiled call: there is no host work per
step.

This file only wires the run together (:func:`run`, top to bottom); each job has its own module:

=================  =====================================================================================
``flags.py``       the command line, checked, with its dependent defaults
``data.py``        reading the corpus, the vocabulary (``--min-count``; out-of-vocabulary tokens dropped)
``corpus_ids.py``  the corpus as ids in one pass, in memory or in an id file (``--max-corpus-memory``)
``feed.py``        the corpus on the device: whole, or streamed chunk by chunk
``batches.py``     skip-gram windows built on the device (subsampling, dynamic window)
``sampling.py``    the negatives (unigram^0.75 alias table per group or centre; TF's shared set for nce)
``hashing.py``     the counter-based randomness behind both (why resume is exact)
``model.py``       the parameters and the losses (``--loss neg`` with its custom VJP, ``--loss nce``)
``optimizer.py``   the optimizers and the one learning-rate schedule
``step.py``        the compiled K-step function, one device or data-parallel under ``shard_map``
``plan.py``        how many steps a run takes, and when the periodic actions fall
``distributed.py`` devices, the mesh, ``jax.distributed`` for several processes
``checkpoints.py`` the run fingerprint, saving and resuming
``loop.py``        the training loop: calls, progress, TensorBoard, Ctrl-C, periodic evaluation and checkpoints
``evaluation.py``  WordSim353, SimLex-999, analogies, nearest neighbours
``export.py``      ``vectors.txt``, the projector files, ``metrics.json``
``cli.py``         what both programs share: usage errors, exit status 2, warnings as lines
=================  =====================================================================================

Outputs in ``--output-dir``: ``vectors.txt`` (word2vec text format: gensim's ``KeyedVectors.load_word2vec_format``
reads it), ``vectors.tsv`` + ``metadata.tsv`` + ``projector_config.pbtxt`` (TensorBoard projector), TensorBoard
scalars (when tensorboardX is installed), ``checkpoints/`` and ``metrics.json``. Bad input (unreadable corpus,
invalid flags, damaged or mismatched checkpoint, ...) prints one line ``error: ...`` on stderr and exits with
status 2; Ctrl-C stops after the current call with a checkpoint (exit status 130).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from examples.word2vec.host_devices import configure_host_devices, request_cpu_devices

if __name__ == "__main__":  # before jax is imported: XLA reads the device count when it starts
    configure_host_devices()

import jax  # noqa: E402
import numpy as np  # noqa: E402

from examples.word2vec import corpus_ids, distributed, evaluation, export, flags, sampling  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec.batches import BatchMaker  # noqa: E402
from examples.word2vec.checkpoints import Checkpointer, fingerprint, open_checkpoints  # noqa: E402
from examples.word2vec.cli import exit_status  # noqa: E402
from examples.word2vec.data import build_vocabulary  # noqa: E402
from examples.word2vec.feed import CorpusFeed, StreamingFeed, corpus_device_bytes  # noqa: E402
from examples.word2vec.flags import build_parser  # noqa: E402
from examples.word2vec.loop import Progress, RunStats, TrainingLoop, stop_requests, summary_writer  # noqa: E402
from examples.word2vec.model import init_params, skipgram_negative_sampling_loss  # noqa: E402
from examples.word2vec.optimizer import linear_decay, make_optimizer  # noqa: E402
from examples.word2vec.plan import RunPlan  # noqa: E402
from examples.word2vec.step import centres_per_group, make_multi_step  # noqa: E402
from jaxgraph.train import CheckpointError  # noqa: E402

# The names users and tests import from here; each lives in the module of its job.
__all__ = ["BatchMaker", "build_parser", "build_vocabulary", "configure_host_devices", "main", "run",
           "skipgram_negative_sampling_loss"]


def main(argv: Sequence[str] | None = None, *, _after_call: Callable[[int], None] | None = None) -> int:
    """Run the trainer; returns the exit status (0, 2 for bad input, 130 after Ctrl-C)."""

    def body() -> int:
        args = flags.parse_flags(argv)
        if args.devices is not None and args.devices > 1:
            request_cpu_devices(args.devices)  # a no-op once JAX has started
        distributed.start_processes(args.coordinator_address, args.num_processes, args.process_id,
                                    args.distributed_auto)
        return run(args, _after_call)

    try:
        return exit_status(body, (w2v_data.CorpusError, CheckpointError, evaluation.EvaluationUnavailable))
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written by this run; earlier ones are kept)", file=sys.stderr)
        return 130


class Corpus(NamedTuple):
    """The training corpus as the run sees it."""

    vocab: list[str]
    counts: np.ndarray  # per word
    ids: np.ndarray | corpus_ids.IdFile  # the corpus, out-of-vocabulary tokens dropped (in a file when streamed)
    raw_tokens: int  # before dropping them
    description: str
    keep_prob: np.ndarray  # subsampling, per word


def run(args: argparse.Namespace, after_call: Callable[[int], None] | None = None) -> int:
    """One run of the trainer with checked flags (``flags.parse_flags``); returns the exit status.

    With several processes, process 0 (the chief) prints and writes every output; the others train in step
    with it and only report errors.
    """
    with contextlib.ExitStack() as cleanup:  # the corpus feed's thread and id file, however the run ends
        return _run(args, after_call, cleanup)


def _run(args: argparse.Namespace, after_call: Callable[[int], None] | None, cleanup: contextlib.ExitStack) -> int:
    runtime = distributed.select_runtime(args.device, args.devices)
    log = print if runtime.chief and not args.quiet else _silent
    t0 = time.perf_counter()
    corpus = _read_corpus(args, log, cleanup)
    batches, plan, chunk_tokens = _plan(args, corpus, runtime, log)
    config = {**vars(args), "total_steps": plan.total_steps}
    ckpt, latest = open_checkpoints(args.output_dir, args.keep_checkpoints,
                                    fingerprint(corpus.vocab, corpus.ids, config), resume=args.resume,
                                    overwrite=args.overwrite, chief=runtime.chief)
    with jax.default_device(runtime.device):
        schedule = linear_decay(args.learning_rate, plan.total_steps)
        opt = make_optimizer(args.optimizer, schedule)
        params, opt_state = _initial_state(args, corpus, opt, ckpt, latest, runtime, log)
        static = {"keep": corpus.keep_prob, **sampling.unigram_tables(corpus.counts)}
        params, opt_state, static = runtime.place((params, opt_state, static))
        stats = _stats(plan, corpus, params)
        feed = _feed(corpus, batches, plan, chunk_tokens, runtime, static)
        cleanup.callback(feed.close)
        step_fn = make_multi_step(opt, batches, args, len(corpus.vocab), runtime.mesh)
        t_compile = time.perf_counter()
        log(f"compiled the {plan.steps_per_call}-step function in "
            f"{step_fn.compile(params, opt_state, feed.at(stats.position)):.1f}s (setup {t_compile - t0:.1f}s)")
        start = int(distributed.host_values(params["global_step"].value))
        loop = TrainingLoop(step_fn, feed, plan, schedule, stats, checkpointer=ckpt,
                            vocab=corpus.vocab, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                            chief=runtime.chief, after_call=after_call)
        outcome = _train(loop, params, opt_state, start, plan.end_step(start, args.stop_at_step), args, runtime, log)
        if outcome is None:
            return 130
        params, opt_state, interrupted = outcome
        if not runtime.chief:  # the chief saves and writes the outputs: the others are done
            return 130 if interrupted else 0
        status, saved = _checkpoint_at_end(loop, params, opt_state, ckpt, latest, start, interrupted, log)
        if status is not None:
            return status
        emb = distributed.host_values(params["emb_in"].value)
    results = _evaluate(emb, corpus.vocab, args)
    vectors = _export(args.output_dir, emb, corpus.vocab)
    metrics = {"steps": loop.step, "total_steps": plan.total_steps, "steps_this_run": loop.step - start,
               "checkpoint": saved, "traces": step_fn.traces, "config": config, "evaluation": results,
               "vectors": vectors, **_figures(loop.stats, runtime, corpus)}
    export.write_metrics(os.path.join(args.output_dir, "metrics.json"), metrics)
    stats = loop.stats
    rate = f"{stats.words_per_sec:,.0f} words/sec" if stats.words_per_sec else "no training this run"
    log(f"done: {loop.step} steps, {stats.epochs:.2f} epochs, final loss {stats.average_loss}, {rate}; "
        f"outputs in {os.path.abspath(args.output_dir)}")
    return 0


def _train(loop: TrainingLoop, params: Any, opt_state: Any, start: int, end: int, args: argparse.Namespace,
           runtime: distributed.Runtime, log: Callable[[str], None]) -> tuple[Any, Any, bool] | None:
    """The loop with its progress bar, TensorBoard writer and Ctrl-C handler (each closed or restored however
    it ends); None after a second Ctrl-C."""
    show_progress = not (args.no_progress or args.quiet or not runtime.chief)
    with summary_writer(args.output_dir, not args.no_tensorboard and runtime.chief, log) as writer, \
            Progress(loop.plan.total_steps, start, show_progress) as progress, stop_requests() as stop:
        try:
            return loop.run(params, opt_state, start, end, stop=stop, progress=progress, writer=writer)
        except KeyboardInterrupt:  # a second Ctrl-C, maybe mid-call, whose donated inputs are gone: no save
            progress.close()
            print(f"interrupted twice near step {loop.step}: exiting without a new checkpoint (the last one, "
                  "if any, is intact)", file=sys.stderr)
            return None


def _checkpoint_at_end(loop: TrainingLoop, params: Any, opt_state: Any, ckpt: Checkpointer, latest: str | None,
                       start: int, interrupted: bool, log: Callable[[str], None]) -> tuple[int | None, str]:
    """The chief's checkpoint after the loop (none when no step ran since ``latest``), and the exit status if the
    run ends here (Ctrl-C, ``--stop-at-step``; None: the run is complete, go on to the outputs)."""
    saved = ckpt.save(params, opt_state) if loop.step > start or latest is None else latest
    if interrupted:
        print(f"interrupted at step {loop.step}: checkpoint {saved}; continue with --resume", file=sys.stderr)
        return 130, saved
    if loop.step < loop.plan.total_steps:
        log(f"stopped at step {loop.step} of {loop.plan.total_steps} (--stop-at-step): checkpoint {saved}")
        return 0, saved
    return None, saved


def _silent(line: str) -> None:
    pass


def _feed(corpus: Corpus, batches: BatchMaker, plan: RunPlan, chunk_tokens: int | None,
          runtime: distributed.Runtime, static: dict) -> CorpusFeed | StreamingFeed:
    """The corpus on the run's devices: whole (``chunk_tokens`` None), or streamed from its id file."""
    if chunk_tokens is None:
        return CorpusFeed(np.asarray(corpus.ids), batches, runtime.place_data, static)
    assert isinstance(corpus.ids, corpus_ids.IdFile)
    return StreamingFeed(corpus.ids, batches, plan.steps_per_call, chunk_tokens, runtime.place_data, static)


def _read_corpus(args: argparse.Namespace, log: Callable[[str], None], cleanup: contextlib.ExitStack) -> Corpus:
    """The corpus, its vocabulary and subsampling probabilities; flags that must fit them are checked. The ids stay
    in memory up to ``--max-corpus-memory``, else go to an id file in ``--output-dir`` (``corpus_ids.py``)."""
    source, describe = w2v_data.corpus_source(args.corpus, args.download_text8, args.data_dir, log)
    t0 = time.perf_counter()
    corpus = corpus_ids.read_corpus(source, args.min_count, args.max_vocab,
                                    memory_bytes=args.max_corpus_memory * 2**20, spill_dir=args.output_dir,
                                    to_file=args.corpus_chunk_tokens is not None)
    seconds = time.perf_counter() - t0
    if isinstance(corpus.ids, corpus_ids.IdFile):
        cleanup.callback(corpus.ids.close)
    flags.check_against_vocabulary(args, len(corpus.words), len(corpus.ids))
    keep_prob = w2v_data.subsample_keep_prob(corpus.counts, int(corpus.counts.sum()), args.subsample)
    description = describe(corpus.raw_tokens)
    log(f"corpus: {description}; read with its vocabulary in {seconds:.1f}s "
        f"({corpus.raw_tokens / max(seconds, 1e-9):,.0f} words/s)")
    return Corpus(corpus.words, corpus.counts, corpus.ids, corpus.raw_tokens, description, keep_prob.astype(np.float32))


def _plan(args: argparse.Namespace, corpus: Corpus, runtime: distributed.Runtime,
          log: Callable[[str], None]) -> tuple[BatchMaker, RunPlan, int | None]:
    """The batches' shape, the run's length and the corpus's chunk size (None: on the device whole), said in one
    line."""
    keep_mean = w2v_data.expected_keep_fraction(corpus.counts, corpus.keep_prob)
    # Each device's rows hold whole negatives groups: rows are padded (masked) to a multiple of devices x group.
    batches = BatchMaker(len(corpus.ids), args.window, args.batch_size, keep_mean, args.seed,
                         row_multiple=len(runtime.devices) * centres_per_group(args))
    plan = RunPlan.from_flags(epochs=args.epochs, steps=args.steps, steps_per_call=args.steps_per_call,
                              kept_tokens_per_epoch=keep_mean * len(corpus.ids), centres_per_step=batches.centres)
    chunk_tokens = None
    if isinstance(corpus.ids, corpus_ids.IdFile):
        chunk_tokens = args.corpus_chunk_tokens or max(1 << 16, args.max_corpus_memory * 2**20 // 16)
    device_mib = corpus_device_bytes(len(corpus.ids), batches, plan.steps_per_call, chunk_tokens) / 2**20
    memory = (f"corpus on the device whole ({device_mib:,.1f} MiB, --max-corpus-memory {args.max_corpus_memory})"
              if chunk_tokens is None else
              f"corpus streamed in chunks of {chunk_tokens:,} tokens from an id file in "
              f"{corpus.ids.directory} ({device_mib:,.1f} MiB on the device)")
    log(f"{corpus.raw_tokens:,} tokens, vocabulary {len(corpus.vocab):,} (min-count {args.min_count}), "
        f"{len(corpus.ids):,} in-vocabulary tokens, {keep_mean:.1%} kept by subsampling on average; "
        f"{plan.total_steps:,} steps of {batches.centres} centres (~{batches.centres * (args.window + 1)} pairs), "
        f"~{plan.epochs:.2f} epochs, on {runtime.describe()}; {memory}")
    return batches, plan, chunk_tokens


def _stats(plan: RunPlan, corpus: Corpus, params: Any) -> RunStats:
    epoch, position = distributed.host_values((params["epoch"].value, params["position"].value))
    return RunStats(plan.steps_per_call, len(corpus.ids), corpus.raw_tokens / len(corpus.ids),
                    int(epoch) * len(corpus.ids) + int(position))


def _figures(stats: RunStats, runtime: distributed.Runtime, corpus: Corpus) -> dict[str, Any]:
    """What metrics.json reports about the run's speed, devices and corpus."""
    return {"epochs_completed": stats.epochs, "final_average_loss": stats.average_loss,
            "words_per_sec": stats.words_per_sec, "examples_per_sec": stats.examples_per_sec,
            "train_seconds": stats.seconds, "device": str(runtime.device), "devices": len(runtime.devices),
            "processes": runtime.processes, "platform": runtime.device.platform, "corpus": corpus.description,
            "corpus_tokens": corpus.raw_tokens, "in_vocabulary_tokens": int(len(corpus.ids)),
            "vocabulary_size": len(corpus.vocab)}


def _initial_state(args: argparse.Namespace, corpus: Corpus, opt: Any, ckpt: Checkpointer, latest: str | None,
                   runtime: distributed.Runtime, log: Callable[[str], None]) -> tuple[Any, Any]:
    """Fresh parameters and optimizer state, or the checkpoint's; every process checks it starts where the
    others do."""
    params = init_params(len(corpus.vocab), args.embedding_size, args.loss, args.seed)
    opt_state = opt.init(params)
    if latest is not None:
        params, opt_state = ckpt.restore(params, opt_state, latest)
        log(f"resumed from {latest} at step {int(params['global_step'].value)}")
    elif args.resume:
        log("no checkpoint to resume from: starting afresh")
    local = jax.local_devices(backend=runtime.device.platform)
    distributed.processes_agree({
        "fingerprint": np.frombuffer(ckpt.fp, np.uint8), "local devices": len(runtime.devices) // runtime.processes,
        "first local device": local.index(runtime.device) if runtime.device in local else -1,
        "start step": int(params["global_step"].value)})
    return params, opt_state


def _evaluate(emb: np.ndarray, vocab: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Print nearest neighbours and the WordSim353 / SimLex-999 / analogy scores (unless switched off)."""
    if not args.quiet:
        print("\n".join(evaluation.nearest_lines(emb, vocab)))
    if args.no_eval:
        return {}
    try:
        results = evaluation.evaluate_all(emb, {w: i for i, w in enumerate(vocab)})
    except evaluation.EvaluationUnavailable as e:
        print(f"evaluation unavailable: {e}")
        return {"unavailable": str(e)}
    for line in evaluation.format_evaluation(results):
        print(line)
    return results


def _export(output_dir: str, emb: np.ndarray, vocab: list[str]) -> str:
    """``vectors.txt`` and the projector files; the path of ``vectors.txt``."""
    vectors, tsv, meta = export.save_embeddings(output_dir, emb, vocab)
    export.save_projector_config(output_dir, "embeddings", os.path.basename(meta), os.path.basename(tsv))
    return vectors


if __name__ == "__main__":
    sys.exit(main())
