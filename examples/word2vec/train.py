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
``plan.py``        how many steps a run takes (exactly), and how they are cut into calls
``resources.py``   the memory and disk a configuration needs, checked before anything is allocated
``distributed.py`` devices, the mesh, ``jax.distributed`` for several processes, lost peers
``checkpoints.py`` the run fingerprint, saving and resuming, ``--overwrite``
``loop.py``        the training loop: calls, progress, TensorBoard, stop signals, periodic evaluation and checkpoints
``evaluation.py``  WordSim353, SimLex-999, analogies, nearest neighbours
``export.py``      ``vectors.txt``, the projector files, ``metrics.json``
``ranges.py``      index arithmetic on byte buffers shared by the reader and the export
``cli.py``         what both programs share: errors and exit statuses, warnings as lines, stop signals
=================  =====================================================================================

Outputs in ``--output-dir``: ``vectors.txt`` (word2vec text format: gensim's ``KeyedVectors.load_word2vec_format``
reads it), ``vectors.tsv`` + ``metadata.tsv`` + ``projector_config.pbtxt`` (TensorBoard projector), TensorBoard
scalars (when tensorboardX is installed), ``checkpoints/`` and ``metrics.json``. Bad input and faults (unreadable
corpus, invalid flags, an output that cannot be written, a configuration that cannot fit in memory, a mismatched
checkpoint, a failed save, a lost process, ...) print one line ``error: ...`` on stderr and exit with status 2;
Ctrl-C or SIGTERM stops after the current call with a checkpoint (exit status 130 or 143; before the setup is
done and after the loop, at once). The README's "Reliability of the word2vec programs" lists every promise and the
test that keeps it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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

from examples.word2vec import corpus_ids, distributed, evaluation, export, flags, resources, sampling  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec.batches import BatchMaker  # noqa: E402
from examples.word2vec.checkpoints import Checkpointer, fingerprint  # noqa: E402
from examples.word2vec.cli import (  # noqa: E402
    Interrupted,
    StopRequest,
    UsageError,
    exit_status,
    interrupt_status,
    prepare_output_dir,
    raise_on_signals,
    report_warnings,
    signal_name,
    stop_signal,
)
from examples.word2vec.data import build_vocabulary  # noqa: E402
from examples.word2vec.feed import CorpusFeed, StreamingFeed, corpus_device_bytes  # noqa: E402
from examples.word2vec.flags import build_parser  # noqa: E402
from examples.word2vec.loop import Outcome, Progress, RunStats, TrainingLoop, stop_requests, summary_writer  # noqa: E402
from examples.word2vec.model import init_params, skipgram_negative_sampling_loss  # noqa: E402
from examples.word2vec.optimizer import linear_decay, make_optimizer  # noqa: E402
from examples.word2vec.plan import RunPlan, epoch_steps, replica_steps_per_call  # noqa: E402
from examples.word2vec.step import centres_per_group, make_multi_step  # noqa: E402
from jaxgraph.train import CheckpointError, CheckpointWriteError  # noqa: E402

#: What can go wrong while a run is set up (before training), in any process: said in one line, exit status 2.
SETUP_ERRORS = (UsageError, OSError, w2v_data.CorpusError, CheckpointError)

# The names users and tests import from here; each lives in the module of its job.
__all__ = ["BatchMaker", "build_parser", "build_vocabulary", "configure_host_devices", "main", "run",
           "skipgram_negative_sampling_loss"]


def main(argv: Sequence[str] | None = None, *, _after_call: Callable[[int], None] | None = None) -> int:
    """Run the trainer; returns the exit status: 0, 2 for bad input or a fault (one ``error:`` line), 130 after
    Ctrl-C, 143 after SIGTERM."""

    def body() -> int:
        args = flags.parse_flags(argv)
        if args.devices is not None and args.devices > 1:
            request_cpu_devices(args.devices)  # a no-op once JAX has started
        distributed.start_processes(args.coordinator_address, args.num_processes, args.process_id,
                                    args.distributed_auto, args.initialization_timeout)
        with raise_on_signals():  # again: jax.distributed puts in its own SIGTERM handler, which only logs it
            return run(args, _after_call)

    with raise_on_signals(), report_warnings():
        try:
            return exit_status(body, (w2v_data.CorpusError, CheckpointError, evaluation.EvaluationUnavailable),
                               memory_hint=resources.MEMORY_HINT)
        except KeyboardInterrupt as e:  # before or after the training loop, or a second stop signal in it
            signum = stop_signal(e)
            distributed.stopped_by_signal(signum)
            print(f"interrupted by {signal_name(signum)} outside the training loop: stopped without a new checkpoint "
                  "(those written so far are kept)", file=sys.stderr)
            return interrupt_status(e)


class Corpus(NamedTuple):
    """The training corpus as the run sees it."""

    vocab: list[str]
    counts: np.ndarray  # per word
    # The corpus, out-of-vocabulary tokens dropped: in a file when streamed; None once it is on the device whole.
    ids: np.ndarray | corpus_ids.IdFile | None
    n_tokens: int  # its length
    raw_tokens: int  # before dropping them
    description: str
    keep_prob: np.ndarray  # subsampling, per word
    keep_mean: float  # the share of the tokens subsampling keeps, expected (w2v_data.expected_keep_fraction)


class Reporter(NamedTuple):
    """Where the run speaks: ``log`` (progress lines: the chief's, unless ``--quiet``) and ``say`` (the final
    summary line: the chief's, also under ``--quiet``)."""

    log: Callable[[str], None]
    say: Callable[[str], None]


def run(args: argparse.Namespace, after_call: Callable[[int], None] | None = None) -> int:
    """One run of the trainer with checked flags (``flags.parse_flags``); returns the exit status.

    With several processes, process 0 (the chief) prints and writes every output; the others train in step
    with it and only report errors. Before the corpus is read, the chief checks that every output can be written
    (``--output-dir`` for the vectors, projector files, TensorBoard events and ``metrics.json``; its
    ``checkpoints/``, which it then owns until the run ends).
    """
    runtime = distributed.select_runtime(args.device, args.devices)
    out = Reporter(print if runtime.chief and not args.quiet else _silent, print if runtime.chief else _silent)
    ckpt = Checkpointer(os.path.join(args.output_dir, "checkpoints"), args.keep_checkpoints)
    with contextlib.ExitStack() as cleanup:  # the checkpoints' lock, the corpus feed's thread and id file
        cleanup.callback(ckpt.close)
        return _run(args, runtime, ckpt, out, after_call, cleanup)


def _run(args: argparse.Namespace, runtime: distributed.Runtime, ckpt: Checkpointer, out: Reporter,
         after_call: Callable[[int], None] | None, cleanup: contextlib.ExitStack) -> int:
    t0 = time.perf_counter()
    with distributed.setup_together(SETUP_ERRORS), jax.default_device(runtime.device):
        if runtime.chief:  # before any work
            prepare_output_dir(args.output_dir)
            ckpt.claim()
        corpus = _read_corpus(args, out.log, cleanup)
        batches, plan, chunk_tokens = _plan(args, corpus, runtime)
        config = {**vars(args), "total_steps": plan.total_steps, "replicas": plan.batches_per_step,
                  "steps_per_sync": plan.steps_per_call if plan.batches_per_step > 1 else None}
        assert corpus.ids is not None  # until the corpus is on the device
        ckpt.set_fingerprint(fingerprint(corpus.vocab, corpus.ids, config))
        memory = _check_resources(args, corpus, batches, plan, chunk_tokens, runtime, ckpt)
        out.log(_describe_plan(args, corpus, batches, plan, chunk_tokens, runtime) + f"; memory: {memory}")
        latest = ckpt.start(resume=args.resume, overwrite=args.overwrite, chief=runtime.chief,
                            output_dir=args.output_dir)
        schedule = linear_decay(args.learning_rate, plan.total_steps)
        opt = make_optimizer(args.optimizer, schedule)
        params, opt_state, latest = _initial_state(args, corpus, opt, ckpt, latest, out.log)
        # From here to the end of the loop (the processes' vote at the end of setup included) a first stop signal
        # waits for the end of the first call, as in the loop: with several processes, one that left while
        # compiling would leave the others waiting at that call's collective (gloo's 30 s), then stopping as for a
        # lost peer.
        until_the_loop_ends = cleanup.enter_context(contextlib.ExitStack())
        stop = until_the_loop_ends.enter_context(stop_requests())
    _processes_agree(ckpt, runtime, params)
    with jax.default_device(runtime.device):
        start = int(distributed.host_values(params["global_step"].value))
        if latest is not None and start >= plan.total_steps and os.path.isfile(_metrics_path(args)):
            out.say(f"the run in {os.path.abspath(args.output_dir)} is already complete (step {start} of "
                    f"{plan.total_steps}, checkpoint {latest}): nothing to do")
            return 0
        end = plan.end_step(start, args.stop_at_step)
        out.log(f"steps {start} to {end}: {plan.describe_calls(start, end, (args.checkpoint_every, args.eval_every))}")
        static = {"keep": corpus.keep_prob, **sampling.unigram_tables(corpus.counts)}
        params, opt_state, static = runtime.place((params, opt_state, static))
        stats = _stats(plan, corpus, params)
        feed = _feed(corpus, batches, plan, chunk_tokens, runtime, static)
        cleanup.callback(feed.close)
        if isinstance(corpus.ids, np.ndarray):  # on the device whole now: the host copy goes (1.9 GB at 500M tokens)
            corpus = corpus._replace(ids=None)
        # Several processes: no donation, so that the state of the last completed call survives a lost peer.
        step_fn = make_multi_step(opt, batches, args, len(corpus.vocab), runtime.mesh,
                                  donate=runtime.processes == 1, total_batches=plan.total_batches,
                                  learning_rate=schedule)
        lengths = set(plan.calls(start, end, (args.checkpoint_every, args.eval_every)))
        t_compile = time.perf_counter()
        seconds = step_fn.compile(params, opt_state, feed.at(stats.position), full=plan.steps_per_call in lengths,
                                  partial=bool(lengths - {plan.steps_per_call}))
        out.log(f"compiled the step function in {seconds:.1f}s (setup {t_compile - t0:.1f}s)")
        loop = TrainingLoop(step_fn, feed, plan, schedule, stats, checkpointer=ckpt,
                            vocab=corpus.vocab, eval_every=args.eval_every, checkpoint_every=args.checkpoint_every,
                            chief=runtime.chief, after_call=after_call)
        try:
            outcome = _train(loop, params, opt_state, start, end, args, runtime, stop, out.log)
        except distributed.PeerLost as e:
            return _peer_lost(loop, e, runtime)
        except Interrupted as e:  # a second stop signal, maybe mid-call, whose donated inputs are gone: no save
            print(f"interrupted twice ({signal_name(e.signum)}) near step {loop.step}: exiting without a new "
                  "checkpoint (the last one, if any, is intact)", file=sys.stderr)
            return interrupt_status(e)
        distributed.loop_ended_together()
        until_the_loop_ends.close()  # a signal during the final save or the export stops at once, as before setup
        return _conclude(loop, outcome, start, latest, args, runtime, corpus, config, out)


def _metrics_path(args: argparse.Namespace) -> str:
    return os.path.join(args.output_dir, "metrics.json")


def _train(loop: TrainingLoop, params: Any, opt_state: Any, start: int, end: int, args: argparse.Namespace,
           runtime: distributed.Runtime, stop: StopRequest, log: Callable[[str], None]) -> Outcome:
    """The loop with its progress bar and TensorBoard writer (each closed however it ends), stopping after the
    call in which ``stop`` was requested."""
    show_progress = not (args.no_progress or args.quiet or not runtime.chief)
    with summary_writer(args.output_dir, not args.no_tensorboard and runtime.chief, log) as writer, \
            Progress(loop.plan.total_steps, start, show_progress) as progress:
        try:
            return loop.run(params, opt_state, start, end, stop=stop, progress=progress, writer=writer)
        finally:
            progress.close()


def _peer_lost(loop: TrainingLoop, lost: distributed.PeerLost, runtime: distributed.Runtime) -> int:
    """Another process is gone: the chief saves the last completed call's state; every survivor says so."""
    where = f"at step {lost.step}"
    if runtime.chief:
        try:
            loop.step = lost.step
            where += f" with checkpoint {loop.save(lost.params, lost.opt_state)}"
        except CheckpointError as e:
            where += f" without a checkpoint ({e})"
    print(f"error: {lost}; stopped {where}; restart every process with --resume", file=sys.stderr)
    return 2


def _conclude(loop: TrainingLoop, outcome: Outcome, start: int, latest: str | None, args: argparse.Namespace,
              runtime: distributed.Runtime, corpus: Corpus, config: dict[str, Any], out: Reporter) -> int:
    """After the loop: the chief's checkpoint (none when no step ran since ``latest``), then either the end of an
    interrupted or stopped run, or the outputs; the exit status. A checkpoint that could not be written (here or
    periodically) still leaves the vectors of the step reached, and ends with one ``error:`` line (status 2)."""
    save_error = outcome.save_error
    saved = latest
    if runtime.chief and save_error is None and (loop.step > start or latest is None):
        try:
            saved = loop.save(outcome.params, outcome.opt_state)
        except CheckpointWriteError as e:
            save_error = str(e)
    if save_error is not None and not runtime.chief:
        print(f"error: {save_error} at step {loop.step}: stopped", file=sys.stderr)
        return 2
    if save_error is None and outcome.signum:
        if runtime.chief:
            print(f"interrupted by {signal_name(outcome.signum)} at step {loop.step}: checkpoint {saved}; continue "
                  "with --resume", file=sys.stderr)
        return interrupt_status(outcome.signum)
    if save_error is None and loop.step < loop.plan.total_steps:
        out.say(f"stopped at step {loop.step} of {loop.plan.total_steps} (--stop-at-step): checkpoint {saved}")
        return 0
    if not runtime.chief:
        return 0
    emb = distributed.host_values(outcome.params["emb_in"].value)
    results = _evaluate(emb, corpus.vocab, args)
    try:
        vectors = _export(args.output_dir, emb, corpus.vocab)
    except OSError as e:
        if save_error is None:
            raise
        print(f"error: {save_error}; training stopped at step {loop.step} of {loop.plan.total_steps}, and its vectors "
              f"could not be written either ({e.strerror or e})", file=sys.stderr)
        return 2
    stats = loop.stats
    metrics = {"steps": loop.step, "total_steps": loop.plan.total_steps, "steps_this_run": loop.step - start,
               "checkpoint": None if save_error else saved, "traces": loop.step_fn.traces, "config": config,
               "evaluation": results, "vectors": vectors, **_figures(stats, runtime, corpus)}
    if save_error:
        metrics["checkpoint_error"] = save_error
    export.write_metrics(_metrics_path(args), metrics)
    if save_error:
        print(f"error: {save_error}; training stopped at step {loop.step} of {loop.plan.total_steps}, whose vectors "
              f"are in {vectors}", file=sys.stderr)
        return 2
    rate = f"{stats.words_per_sec:,.0f} words/sec" if stats.words_per_sec else "no training this run"
    out.say(f"done: {loop.step} steps, {stats.epochs:.2f} epochs, final loss {stats.average_loss}, {rate}; "
            f"outputs in {os.path.abspath(args.output_dir)}")
    return 0


def _silent(line: str) -> None:
    pass


def _feed(corpus: Corpus, batches: BatchMaker, plan: RunPlan, chunk_tokens: int | None,
          runtime: distributed.Runtime, static: dict) -> CorpusFeed | StreamingFeed:
    """The corpus on the run's devices: whole (``chunk_tokens`` None), or streamed from its id file."""
    if chunk_tokens is None:
        return CorpusFeed(np.asarray(corpus.ids), batches, runtime.place_data, static,
                          device=runtime.device if runtime.mesh is None else None)
    assert isinstance(corpus.ids, corpus_ids.IdFile)
    return StreamingFeed(corpus.ids, batches, plan.batches_per_call, chunk_tokens, runtime.place_data, static)


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
    keep_prob = keep_prob.astype(np.float32)
    return Corpus(corpus.words, corpus.counts, corpus.ids, len(corpus.ids), corpus.raw_tokens, description, keep_prob,
                  w2v_data.expected_keep_fraction(corpus.counts, keep_prob))


def _plan(args: argparse.Namespace, corpus: Corpus,
          runtime: distributed.Runtime) -> tuple[BatchMaker, RunPlan, int | None]:
    """The batches' shape, the run's length (``--epochs`` counted exactly, ``plan.epoch_steps``, for a corpus held
    whole) and the corpus's chunk size (None: on the device whole)."""
    # --replica-sync call: a step is N batches of the one-device run, one per device (whole batches).
    per_step = len(runtime.devices) if args.replica_sync == "call" else 1
    # Each device's rows hold whole negatives groups: rows are padded (masked) to a multiple of devices x group.
    row_devices = len(runtime.devices) // per_step
    batches = BatchMaker(corpus.n_tokens, args.window, args.batch_size, corpus.keep_mean, args.seed,
                         row_multiple=row_devices * centres_per_group(args))
    chunk_tokens = None
    if isinstance(corpus.ids, corpus_ids.IdFile):
        chunk_tokens = args.corpus_chunk_tokens or max(1 << 16, args.max_corpus_memory * 2**20 // 16)

    def steps_for_epochs(epochs: float) -> int:
        ids, keep = np.asarray(corpus.ids), jax.device_put(corpus.keep_prob, runtime.device)
        whole, part = int(epochs), epochs - int(epochs)
        total = 0
        for epoch in range(whole + (part > 0)):
            stop = part * corpus.n_tokens if epoch == whole else None
            total += epoch_steps(batches.kept_positions(ids, keep, epoch), corpus.n_tokens, batches.centres,
                                 batches.forward, stop_at=stop)
        return total

    # A streamed corpus is never whole in memory, so its epochs are converted with the expected figures (the plan
    # line says "~E epochs" then, and why).
    plan = RunPlan.from_flags(epochs=args.epochs, steps=args.steps, steps_per_call=args.steps_per_call or 1,
                              kept_tokens_per_epoch=corpus.keep_mean * corpus.n_tokens,
                              centres_per_step=batches.centres,
                              steps_for_epochs=steps_for_epochs if chunk_tokens is None else None,
                              batches_per_step=per_step)
    if args.steps_per_call is None:  # --replica-sync call without --steps-per-call: K for the vocabulary
        k = replica_steps_per_call(len(corpus.vocab), batches.centres * (args.window + 1), plan.total_steps)
        flags.settle_steps_per_call(args, k)
        plan = dataclasses.replace(plan, steps_per_call=k, steps_per_call_chosen=True)
    return batches, plan, chunk_tokens


def _describe_plan(args: argparse.Namespace, corpus: Corpus, batches: BatchMaker, plan: RunPlan,
                   chunk_tokens: int | None, runtime: distributed.Runtime) -> str:
    if plan.exact_epochs:
        epochs = f"exactly {plan.epochs:g} epoch{'s' if plan.epochs != 1 else ''} (--epochs)"
    elif args.steps is None and chunk_tokens is not None:
        epochs = f"~{plan.epochs:.2f} epochs (--epochs of a streamed corpus: counted from the expected kept tokens)"
    else:
        epochs = f"~{plan.epochs:.2f} epochs"
    device_mib = corpus_device_bytes(corpus.n_tokens, batches, plan.batches_per_call, chunk_tokens) / 2**20
    held = (f"corpus streamed in chunks of {chunk_tokens:,} tokens from an id file in {corpus.ids.directory} "
            f"({device_mib:,.1f} MiB on the device)" if isinstance(corpus.ids, corpus_ids.IdFile) else
            f"corpus on the device whole ({device_mib:,.1f} MiB, --max-corpus-memory {args.max_corpus_memory})")
    return (f"{corpus.raw_tokens:,} tokens, vocabulary {len(corpus.vocab):,} (min-count {args.min_count}), "
            f"{corpus.n_tokens:,} in-vocabulary tokens, {corpus.keep_mean:.1%} kept by subsampling on average; "
            f"{plan.total_steps:,} steps of {batches.centres} centres (~{batches.centres * (args.window + 1)} pairs)"
            f"{plan.describe_batches()}, "
            f"{epochs}, on {runtime.describe()}; {held}"
            + ("; steps of rows past the edge of stability shortened (--step-cap)" if args.step_cap else "")
            + ("; each step's gradients corrected towards word2vec's pair-by-pair SGD (--sequential-correction)"
               if args.sequential_correction else "")
            + (f"; terms with |logit| >= {args.max_logit:g} get no gradient (--max-logit)"
               if args.max_logit is not None else ""))


def _check_resources(args: argparse.Namespace, corpus: Corpus, batches: BatchMaker, plan: RunPlan,
                     chunk_tokens: int | None, runtime: distributed.Runtime, ckpt: Checkpointer) -> str:
    """Before anything is allocated: the device memory the configuration needs (refused when it cannot fit), and
    the chief's disk (one checkpoint and the exported vectors must fit the free space and ``ulimit -f``).
    Returns the memory figure for the plan line."""
    # Two copies of the state: not donated (several processes), or --replica-sync call, which keeps the state
    # before a call to sum the devices' updates at its end.
    copies = 1 if runtime.processes == 1 and plan.batches_per_step == 1 else 2
    corpus_slots = corpus_device_bytes(corpus.n_tokens, batches, plan.batches_per_call, chunk_tokens) // 4
    needs = resources.memory_needed(args, len(corpus.vocab), corpus_slots, batches.rows, batches.span, copies,
                                    centres_per_group(args))
    # This process's virtual CPU devices (--devices N on a CPU) share the host's memory, each with its own copy of
    # the state, the corpus and the step's buffers.
    host_copies = sum(d.platform == "cpu" and d.process_index == jax.process_index() for d in runtime.devices)
    if host_copies > 1:
        needs = resources.Needs({part: host_copies * n for part, n in needs.parts.items()})
    memory = resources.check_memory(needs, runtime.device)
    if runtime.chief:
        checkpoint = resources.checkpoint_bytes(needs, copies)
        exports = resources.export_bytes(len(corpus.vocab), args.embedding_size)
        resources.check_file_size(max(checkpoint, exports // 2), "a checkpoint or vectors file")
        ckpt.claim(needed_bytes=checkpoint + exports)
    return memory


def _stats(plan: RunPlan, corpus: Corpus, params: Any) -> RunStats:
    epoch, position = distributed.host_values((params["epoch"].value, params["position"].value))
    return RunStats(plan.steps_per_call, corpus.n_tokens, corpus.raw_tokens / corpus.n_tokens,
                    int(epoch) * corpus.n_tokens + int(position))


def _figures(stats: RunStats, runtime: distributed.Runtime, corpus: Corpus) -> dict[str, Any]:
    """What metrics.json reports about the run's speed, devices and corpus."""
    return {"epochs_completed": stats.epochs, "final_average_loss": stats.average_loss,
            "words_per_sec": stats.words_per_sec, "examples_per_sec": stats.examples_per_sec,
            "train_seconds": stats.seconds, "device": str(runtime.device), "devices": len(runtime.devices),
            "processes": runtime.processes, "platform": runtime.device.platform, "corpus": corpus.description,
            "corpus_tokens": corpus.raw_tokens, "in_vocabulary_tokens": corpus.n_tokens,
            "vocabulary_size": len(corpus.vocab)}


def _initial_state(args: argparse.Namespace, corpus: Corpus, opt: Any, ckpt: Checkpointer, latest: str | None,
                   log: Callable[[str], None]) -> tuple[Any, Any, str | None]:
    """Fresh parameters and optimizer state, or the newest intact checkpoint's (and its path)."""
    params = init_params(len(corpus.vocab), args.embedding_size, args.loss, args.seed)
    opt_state = opt.init(params)
    if latest is not None:
        params, opt_state, latest = ckpt.restore(params, opt_state, latest)
        log(f"resumed from {latest} at step {int(params['global_step'].value)}")
    elif args.resume:
        log("no checkpoint to resume from: starting afresh")
    return params, opt_state, latest


def _processes_agree(ckpt: Checkpointer, runtime: distributed.Runtime, params: Any) -> None:
    """Every process checks that it starts where the others do: the same run, devices and step."""
    local = jax.local_devices(backend=runtime.device.platform)
    distributed.processes_agree({
        "fingerprint": np.frombuffer(ckpt.fp, np.uint8), "local devices": len(runtime.devices) // runtime.processes,
        "first local device": local.index(runtime.device) if runtime.device in local else -1,
        "start step": int(params["global_step"].value)})


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
    distributed.leave(main())
