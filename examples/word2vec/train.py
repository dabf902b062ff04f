"""A fast skip-gram word2vec trainer on jaxgraph, beyond the TF tutorial.

Run it as ``python -m examples.word2vec.train [--corpus PATH] [--output-dir DIR] ...`` (``--help``
lists every flag). It trains with jaxgraph's public API only: the two embedding tables are
:class:`jaxgraph.Variable` s read through :func:`jaxgraph.nn.embedding_lookup`, so a jaxgraph
optimizer's ``minimize`` gets ``IndexedSlices`` gradients and applies one in-place scatter per table.

What it does, and the choices made
----------------------------------
* **Vocabulary**: words with at least ``--min-count`` occurrences, most frequent first (ties in
  first-appearance order), at most ``--max-vocab``. Out-of-vocabulary tokens are *dropped* from the
  training stream before windowing, as gensim and the original word2vec C tool do, instead of being
  trained as an ``UNK`` vector (TF's tutorials): an ``UNK`` row soaks up a large share of the updates
  and pollutes its neighbours' contexts. The exported vocabulary has no ``UNK``.
* **Subsampling** (``--subsample t``) uses ``models/embedding/word2vec.py``'s keep probability
  ``(sqrt(f/(tN)) + 1) tN/f``. Subsampled tokens are removed before windowing (so windows reach
  further, as in word2vec). The keep decision for a token is a hash of ``(seed, epoch, position)``
  computed on the device, so every epoch gets a fresh draw and any step can be recomputed exactly.
* **Dynamic window**: each centre gets ``b ~ U{1..window}`` (hash of ``(seed, epoch, position)``)
  and pairs with the ``b`` kept tokens on each side. Windows never cross an epoch boundary.
* **Batches are built on the device** inside the jitted step: the corpus (int32 ids) lives on the
  device; a step takes the raw span after the current position, subsamples and compacts it, and takes
  the next ``C = batch_size / (window + 1)`` kept tokens as centres, each with ``2 * window`` context
  slots of which the ``2b`` nearest kept tokens are active (so about ``--batch-size`` pairs per step).
  The position and epoch are Variables of the state, negatives use a key folded from
  ``(seed, global_step)``, so there is no host work per step. ``--steps-per-call`` K steps run per
  call with ``lax.scan``; parameters and optimizer state are donated, and the K-step function is
  compiled once (ahead of time) per run.
* **Losses**: ``--loss neg`` (default) is word2vec's skip-gram with negative sampling, in the word2vec
  paper's orientation (the centre's input vector predicts its context words' output vectors). Each
  pair's loss is word2vec's ``-log s(v.u_ctx) - sum of --negatives (K, 5) terms -log s(-v.u_neg)``,
  with negatives from ``unigram**0.75`` (an alias table on the device: the distribution of
  ``jaxgraph.nn.fixed_unigram_candidate_sampler`` with ``distortion=0.75``; the draws are a hash of
  ``(seed, step, slot)`` rather than ``jax.random``, whose threefry loops cost 0.3 ms/step on CPU, and
  are the same however the batch is split over devices). Instead of K fresh negatives per *pair*,
  ``--negatives-per-centre`` (M, default 2K) are drawn per *centre* and shared by its ``2b`` pairs,
  each pair's K negative terms estimated as ``K/M`` times the sum over the M (an unbiased estimate of
  word2vec's objective); a negative equal to the centre is skipped, as word2vec does. A step then
  computes one row of ``2W + M`` dot products per centre instead of ``2b`` rows of ``1 + K``: on the
  2-core CPU this took the trainer from 0.73x to 1.33x gensim's words/sec, with the same WordSim353
  score at the same training time, a lower SimLex-999 and analogy score (``benchmarks/README.md``);
  ``--negatives-per-centre 50`` gives gensim's scores per epoch at about a fifth of the speed.
  TF's one shared set per *batch* would be cheaper still, but sends the summed gradient of thousands
  of pairs into a few rows (unstable for plain SGD at word2vec's rate). ``--loss nce`` is
  ``jaxgraph.nn.nce_loss`` with TF's shared, unique, log-uniform negatives (64 by default; ids are in
  frequency order, as that sampler assumes).
* **Several devices** (``--devices N``): data-parallel under ``shard_map`` on a ``jaxgraph.sharding``
  mesh. The tables are replicated; each device takes ``1/N`` of the step's centres (the batch rows are
  padded to a multiple of N with masked rows), computes their ``IndexedSlices``, and one all-gather per
  step (ids and row gradients: row-sized data, never the tables) gives every device the whole step's
  slices in centre order, which it applies with the same single scatter per table as one device. With
  ``--loss neg`` the result is the one-device run's, bit for bit in our tests; with ``--loss nce`` the
  shared negatives' rows are summed per device first (float32 rounding, ~1e-8). On CPU the trainer
  creates N virtual CPU devices itself (before JAX starts); each runs in its own thread.
  ``tests/test_word2vec_train_multidevice.py`` checks equality with one device and exact resume.
  **Several processes** (hosts): run the same command once per process with ``--coordinator-address
  HOST:PORT`` (process 0's host and a free port, reachable by all), ``--num-processes P`` and each its own
  ``--process-id`` (``--distributed-auto`` instead lets ``jax.distributed.initialize()`` detect a Cloud
  TPU, Slurm or Open MPI cluster). ``main`` joins them with ``jax.distributed`` before JAX's backends start
  (CPU collectives through gloo); ``--devices`` then counts each process's *local* devices and the mesh
  spans all ``P x N`` of them, in process order, with the same result as one process of ``P x N`` devices
  (``tests/test_word2vec_train_multiprocess.py``: 2 processes x 2 CPU devices). Every process reads the
  corpus and, with ``--resume``, the latest checkpoint of ``--output-dir``, so they need the same files
  (one machine or a shared filesystem); before training they check that they agree on the corpus,
  flags, devices and start step. Process 0 alone prints and writes checkpoints, TensorBoard events,
  vectors and ``metrics.json`` (``"processes"``, and ``"devices"`` counting all of them); the others
  only report errors. Every process runs the same steps: Ctrl-C in any process stops all of them after
  the current call, with a checkpoint (exit status 130 everywhere); a second Ctrl-C ends that process at
  once. A process that dies, or fails alone, makes the others fail too, but only once JAX's distributed
  runtime notices (seconds to a few minutes).
* **Loss scale and learning rate**: the loss is the *sum* over the batch's pairs, so plain SGD with
  ``--learning-rate 0.025`` applies the same per-pair step as word2vec/gensim. The rate decays
  linearly to ``lr * 1e-4`` over the run (a schedule ``lambda step: ...`` given to the optimizer).
* **Length of a run**: ``--epochs`` is converted to a number of steps from the expected number of
  pairs per epoch, rounded up to a multiple of K (``--steps`` sets it directly); metrics report the
  epochs actually completed. ``--stop-at-step`` ends a run early (with a checkpoint) without
  changing its schedule, so that ``--resume`` continues the same run.
* **Checkpoints** (``<output-dir>/checkpoints``) are written atomically by
  ``jaxgraph.train.saver.Saver`` every ``--checkpoint-every`` steps, at the end, and on Ctrl-C (then
  the exit status is 130). They hold a fingerprint of the corpus, vocabulary and training
  configuration; ``--resume`` refuses a checkpoint whose fingerprint differs. All randomness derives
  from ``(seed, step, position)``, so an interrupted and resumed run ends with exactly the embeddings
  of an uninterrupted one.
* **Outputs** in ``--output-dir``: ``vectors.txt`` (word2vec text format, gensim's
  ``KeyedVectors.load_word2vec_format`` reads it), ``vectors.tsv`` + ``metadata.tsv`` +
  ``projector_config.pbtxt`` (TensorBoard projector; ``tensorboard --logdir <output-dir>``), TensorBoard
  scalars (``jaxgraph.summary.FileWriter``, when tensorboardX is installed), and ``metrics.json``.

Bad input (unreadable corpus, invalid flags, damaged or mismatched checkpoint, ...) prints one line
``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from examples.word2vec.host_devices import configure_host_devices, request_cpu_devices  # noqa: E402

if __name__ == "__main__":  # before jax is imported: XLA reads the device count when it starts
    configure_host_devices()

import jax  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph as jg  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec import distributed, evaluation, export, sampling  # noqa: E402
from examples.word2vec.batches import BatchMaker  # noqa: E402
from examples.word2vec.cli import ArgumentParser, UsageError, exit_status  # noqa: E402
from examples.word2vec.data import build_vocabulary  # noqa: E402,F401  (re-exported)
from examples.word2vec.model import init_params, skipgram_negative_sampling_loss  # noqa: E402
from examples.word2vec.optimizer import DEFAULT_LEARNING_RATE, linear_decay, make_optimizer  # noqa: E402
from examples.word2vec.step import make_multi_step  # noqa: E402
from jaxgraph.train import CheckpointError, Saver, latest_checkpoint  # noqa: E402

__all__ = ["BatchMaker", "build_parser", "build_vocabulary", "configure_host_devices", "main",
           "skipgram_negative_sampling_loss"]

_TRAINING_KEYS = (
    "min_count", "max_vocab", "subsample", "window", "loss", "negatives", "negatives_per_centre", "batch_size",
    "embedding_size", "optimizer", "learning_rate", "total_steps", "seed",
)
_CKPT_NAME = "model.ckpt"
_FINGERPRINT = "run_fingerprint"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m examples.word2vec.train",
        description="Fast skip-gram word2vec on jaxgraph (device-side batches, sparse gradients).",
    )
    g = p.add_argument_group("corpus and vocabulary")
    g.add_argument("--corpus", help="text file (plain, .gz, .bz2 or .zip); default: the embedded corpus")
    g.add_argument("--download-text8", action="store_true", help="download text8 into --data-dir and use it")
    g.add_argument("--data-dir", default="data", help="where --download-text8 stores text8.zip")
    g.add_argument("--min-count", type=int, default=5, help="drop words rarer than this (default 5)")
    g.add_argument("--max-vocab", type=int, default=None, help="keep at most this many words")
    g = p.add_argument_group("model and training")
    g.add_argument("--embedding-size", type=int, default=100)
    g.add_argument("--window", type=int, default=5, help="maximum window; each centre draws b ~ U{1..window}")
    g.add_argument("--subsample", type=float, default=1e-3, help="subsampling threshold t (0: off)")
    g.add_argument("--loss", choices=("neg", "nce"), default="neg")
    g.add_argument("--negatives", type=int, default=None,
                   help="negatives per pair (default 5 for neg, as word2vec's -negative; 64 for nce)")
    g.add_argument("--negatives-per-centre", type=int, default=None,
                   help="--loss neg: negatives drawn per centre word and shared by its pairs, each pair's "
                        "--negatives terms estimated from them (default 2 * --negatives)")
    g.add_argument("--batch-size", type=int, default=1024,
                   help="skip-gram pairs per step, on average (centres per step: batch / (window + 1))")
    g.add_argument("--epochs", type=float, default=5.0)
    g.add_argument("--steps", type=int, default=None, help="total steps (overrides --epochs)")
    g.add_argument("--optimizer", choices=("sgd", "adagrad", "lazyadam"), default="sgd")
    g.add_argument("--learning-rate", type=float, default=None,
                   help="initial rate, decayed linearly to lr*1e-4 (default: sgd 0.025, adagrad 0.25, "
                        "lazyadam 0.002)")
    g.add_argument("--steps-per-call", type=int, default=128, help="steps per jitted call (lax.scan)")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--device", default=None, help="cpu, gpu, tpu, or a device such as gpu:1 (default: JAX's)")
    g.add_argument("--devices", type=int, default=None,
                   help="data-parallel over this many devices of --device's platform (default 1); on CPU "
                        "the trainer creates that many virtual CPU devices itself (one thread each); with "
                        "several processes, devices PER PROCESS (the mesh spans every process's devices)")
    g = p.add_argument_group(
        "multi-process",
        "Run the same command once per process (the same flags everywhere but --process-id): JAX's "
        "jax.distributed joins them (CPU collectives through gloo) into one data-parallel mesh of "
        "--num-processes x --devices devices, with the result of one process. Process 0 writes every output "
        "and prints; the others are silent except for errors. All processes read --corpus and, with "
        "--resume, the checkpoint in --output-dir: give them the same files (one machine, or a shared "
        "filesystem).")
    g.add_argument("--coordinator-address", metavar="HOST:PORT", default=None,
                   help="process 0's host and a free port, reachable from every process (e.g. 127.0.0.1:12345 "
                        "on one machine)")
    g.add_argument("--num-processes", type=int, metavar="N", default=None, help="how many processes in all")
    g.add_argument("--process-id", type=int, metavar="I", default=None, help="this process: 0 .. N-1")
    g.add_argument("--distributed-auto", action="store_true",
                   help="instead of the three flags above: jax.distributed.initialize() without arguments, "
                        "which detects the cluster (Cloud TPU, Slurm, Open MPI, ...)")
    g = p.add_argument_group("output, checkpoints, reporting")
    g.add_argument("--output-dir", default="word2vec_out")
    g.add_argument("--checkpoint-every", type=int, default=10000, help="steps between checkpoints (0: only "
                   "at the end and on Ctrl-C)")
    g.add_argument("--keep-checkpoints", type=int, default=3)
    g.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --output-dir")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --output-dir holds checkpoints (they are deleted)")
    g.add_argument("--stop-at-step", type=int, default=None,
                   help="stop (with a checkpoint) at this global step without changing the schedule")
    g.add_argument("--eval-every", type=int, default=0, help="print nearest neighbours every N steps")
    g.add_argument("--no-eval", action="store_true", help="skip the WordSim/SimLex/analogy evaluation")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-tensorboard", action="store_true")
    g.add_argument("--quiet", action="store_true", help="only errors and the final summary")
    return p


def _validate(args: argparse.Namespace) -> None:
    positive = ("min_count", "embedding_size", "window", "batch_size", "steps_per_call", "keep_checkpoints")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("max_vocab", "steps", "negatives", "negatives_per_centre", "devices"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    for name in ("checkpoint_every", "eval_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not (math.isfinite(args.epochs) and args.epochs > 0):
        raise UsageError(f"--epochs must be positive, got {args.epochs}")
    if not (math.isfinite(args.subsample) and args.subsample >= 0):
        raise UsageError(f"--subsample must be >= 0, got {args.subsample}")
    if args.learning_rate is not None and not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.corpus and args.download_text8:
        raise UsageError("give either --corpus or --download-text8, not both")
    if args.resume and args.overwrite:
        raise UsageError("give either --resume or --overwrite, not both")
    if args.stop_at_step is not None and args.stop_at_step < 0:
        raise UsageError(f"--stop-at-step must be >= 0, got {args.stop_at_step}")
    flags = {"--coordinator-address": args.coordinator_address, "--num-processes": args.num_processes,
             "--process-id": args.process_id}
    given = [name for name, value in flags.items() if value is not None]
    if given and args.distributed_auto:
        raise UsageError(f"give either --distributed-auto or {', '.join(flags)}, not both")
    if given and len(given) < len(flags):
        missing = [name for name in flags if name not in given]
        raise UsageError(f"{' and '.join(given)} also needs {' and '.join(missing)}: give all three "
                         "multi-process flags, or none")
    if given:
        host, colon, port = args.coordinator_address.rpartition(":")
        if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
            raise UsageError(f"--coordinator-address must be HOST:PORT, got {args.coordinator_address!r}")
        if args.num_processes < 1:
            raise UsageError(f"--num-processes must be at least 1, got {args.num_processes}")
        if not 0 <= args.process_id < args.num_processes:
            raise UsageError(f"--process-id must be in 0..{args.num_processes - 1} (--num-processes "
                             f"{args.num_processes}), got {args.process_id}")


# --------------------------------------------------------------------------------------------------
# Vocabulary and corpus


def _fingerprint(vocab: Sequence[str], ids: np.ndarray, config: dict[str, Any]) -> bytes:
    h = hashlib.sha256()
    h.update("\n".join(vocab).encode("utf-8"))
    h.update(b"\0")
    h.update(np.ascontiguousarray(ids, dtype="<i4").tobytes())
    h.update(json.dumps({k: config[k] for k in _TRAINING_KEYS}, sort_keys=True).encode())
    return h.digest()


class _Checkpointer:
    """Atomic checkpoints carrying a run fingerprint: ``jaxgraph.train.Saver`` (one atomic ``.npz`` per
    checkpoint and a TF-style index) with the fingerprint stored as one more variable."""

    def __init__(self, directory: str, keep: int, fingerprint: bytes) -> None:
        self.dir = directory
        self.fp = np.frombuffer(fingerprint, np.uint8).copy()
        self.saver = Saver(max_to_keep=keep)

    def _with_fp(self, params: dict[str, Any], fp: np.ndarray) -> dict[str, Any]:
        tree = dict(params)
        tree[_FINGERPRINT] = jg.Variable(fp, trainable=False, name=_FINGERPRINT)
        return tree

    def latest(self) -> str | None:
        return latest_checkpoint(self.dir) if os.path.isdir(self.dir) else None

    def save(self, params: dict[str, Any], opt_state: Any) -> str:
        params, opt_state = distributed.host_values((params, opt_state))  # replicated, maybe over processes
        tree = self._with_fp(params, self.fp)
        step = int(params["global_step"].value)
        return self.saver.save(tree, opt_state, os.path.join(self.dir, _CKPT_NAME), global_step=step)

    def _read_fp(self, path: str) -> np.ndarray | None:
        template = self._with_fp({}, np.zeros_like(self.fp))
        try:
            restored, _ = Saver(var_list=[_FINGERPRINT]).restore(template, None, path)
        except CheckpointError as e:
            if _FINGERPRINT in str(e) and "not found" in str(e):
                return None
            raise
        return np.asarray(restored[_FINGERPRINT].value)

    def restore(self, params: dict[str, Any], opt_state: Any, path: str) -> tuple[dict[str, Any], Any]:
        stored = self._read_fp(path)
        if stored is None or not np.array_equal(stored, self.fp):
            raise UsageError(
                f"checkpoint {path} belongs to a different run (corpus, vocabulary or training flags "
                "differ); resume with the same flags, or use --overwrite or another --output-dir to "
                "start afresh"
            )
        tree, opt_state = self.saver.restore(self._with_fp(params, self.fp), opt_state, path)
        tree.pop(_FINGERPRINT)
        return tree, opt_state


class _Progress:
    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = None
        self.enabled = enabled
        self.total = total
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, n: int, loss: float, wps: float, epoch: float, lr: float) -> None:
        if not self.enabled:
            return
        text = f"epoch {epoch:6.2f} loss {loss:7.4f} lr {lr:.5f} words/sec {wps:,.0f}"
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"\rstep {step}/{self.total} {text}", end="", file=sys.stderr, flush=True)

    def write(self, lines: Sequence[str]) -> None:
        if self.bar is not None:
            for line in lines:
                self.bar.write(line, file=sys.stderr)
        else:
            if self.enabled:
                print(file=sys.stderr)
            print("\n".join(lines), flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            print(file=sys.stderr)


def _probe_words(vocab_size: int) -> list[int]:
    return [i for i in (3, 8, 15, 30, 60, 120) if i < vocab_size]


def _neighbour_lines(emb: np.ndarray, vocab: Sequence[str]) -> list[str]:
    norm = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ids = _probe_words(len(vocab))
    near = evaluation.nearest_neighbours(norm, ids, k=8)
    return evaluation.format_nearest(ids, near, dict(enumerate(vocab)))


# --------------------------------------------------------------------------------------------------
# main


def main(argv: Sequence[str] | None = None, *, _after_call: Callable[[int], None] | None = None) -> int:
    """Run the trainer; returns the exit status (0, 2 for bad input, 130 after Ctrl-C)."""
    def body() -> int:
        args = build_parser().parse_args(argv)
        _validate(args)
        if args.devices is not None and args.devices > 1:
            request_cpu_devices(args.devices)  # a no-op once JAX has started
        distributed.start_processes(args.coordinator_address, args.num_processes, args.process_id,
                                    args.distributed_auto)
        return _run(args, _after_call)

    try:
        return exit_status(body, (w2v_data.CorpusError, CheckpointError, evaluation.EvaluationUnavailable))
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written by this run; earlier ones are kept)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, after_call: Callable[[int], None] | None) -> int:
    # With several processes, process 0 (the chief) writes every output and prints; the others only
    # train, in step with it, and report errors.
    runtime = distributed.select_runtime(args.device, args.devices)
    chief = runtime.chief
    log = (lambda s: None) if args.quiet or not chief else print
    if args.negatives is None:
        args.negatives = 5 if args.loss == "neg" else 64
    if args.negatives_per_centre is None:
        args.negatives_per_centre = 2 * args.negatives if args.loss == "neg" else None
    elif args.loss != "neg":
        raise UsageError("--negatives-per-centre applies to --loss neg only")
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LEARNING_RATE[args.optimizer]
    device, n_dev, n_proc = runtime.device, len(runtime.devices), runtime.processes

    t0 = time.perf_counter()
    words, description = w2v_data.load_corpus(args.corpus, args.download_text8, args.data_dir, log)
    vocab, counts, ids = w2v_data.build_vocabulary(words, args.min_count, args.max_vocab)
    n_raw = len(words)
    del words
    vocab_size = len(vocab)
    if args.negatives >= vocab_size:
        raise UsageError(
            f"--negatives ({args.negatives}) must be smaller than the vocabulary ({vocab_size} words)"
        )
    if args.loss == "neg" and args.negatives_per_centre >= vocab_size:
        raise UsageError(f"--negatives-per-centre ({args.negatives_per_centre}) must be smaller than the "
                         f"vocabulary ({vocab_size} words)")
    if len(ids) < 10 * args.window:
        raise UsageError(
            f"the corpus has only {len(ids)} in-vocabulary tokens; need at least "
            f"10 * --window = {10 * args.window}"
        )
    keep_prob = w2v_data.subsample_keep_prob(counts, int(counts.sum()), args.subsample).astype(np.float32)
    keep_mean = float(np.mean(keep_prob[ids]))
    batches = BatchMaker(len(ids), args.window, args.batch_size, keep_mean, args.seed, row_multiple=n_dev)
    steps_per_epoch = keep_mean * len(ids) / batches.centres
    k = args.steps_per_call
    total = args.steps if args.steps is not None else max(1, math.ceil(args.epochs * steps_per_epoch))
    total = math.ceil(total / k) * k
    config = {key: value for key, value in vars(args).items()}
    config["total_steps"] = total
    fingerprint = _fingerprint(vocab, ids, config)
    log(f"corpus: {description}")
    log(f"{n_raw:,} tokens, vocabulary {vocab_size:,} (min-count {args.min_count}), "
        f"{len(ids):,} in-vocabulary tokens, {keep_mean:.1%} kept by subsampling on average; "
        f"{total:,} steps of {batches.centres} centres (~{batches.centres * (args.window + 1)} pairs), "
        f"~{total / steps_per_epoch:.2f} epochs, on {runtime.describe()}")

    os.makedirs(args.output_dir, exist_ok=True)
    ckpt = _Checkpointer(os.path.join(args.output_dir, "checkpoints"), args.keep_checkpoints, fingerprint)
    # --overwrite: only the chief looks (and deletes); the others start afresh without racing its rmtree.
    latest = ckpt.latest() if chief or not args.overwrite else None
    if latest is not None and not args.resume:
        if not args.overwrite:
            raise UsageError(
                f"{ckpt.dir} already holds checkpoints (latest {latest}); pass --resume to continue that run "
                "or --overwrite to start afresh"
            )
        shutil.rmtree(ckpt.dir)
        latest = None

    with jax.default_device(device):
        params = init_params(vocab_size, args.embedding_size, args.loss, args.seed)
        schedule = linear_decay(args.learning_rate, total)
        opt = make_optimizer(args.optimizer, schedule)
        opt_state = opt.init(params)
        if latest is not None:
            params, opt_state = ckpt.restore(params, opt_state, latest)
            log(f"resumed from {latest} at step {int(params['global_step'].value)}")
        elif args.resume:
            log("no checkpoint to resume from: starting afresh")
        local = jax.local_devices(backend=device.platform)
        distributed.processes_agree({
            "fingerprint": np.frombuffer(fingerprint, np.uint8), "local devices": n_dev // n_proc,
            "first local device": local.index(device) if device in local else -1,
            "start step": int(params["global_step"].value)})
        data = {"corpus": batches.pad(ids), "keep": keep_prob, **sampling.unigram_tables(counts)}
        params, opt_state, data = runtime.place((params, opt_state, data))

        compiled = make_multi_step(opt, batches, args, vocab_size, runtime.mesh)
        t_compile = time.perf_counter()
        log(f"compiled the {k}-step function in {compiled.compile(params, opt_state, data):.1f}s "
            f"(setup {t_compile - t0:.1f}s)")

        writer = None
        if not args.no_tensorboard and chief:
            try:
                writer = jg.summary.FileWriter(args.output_dir)
            except Exception as e:  # tensorboardX missing: not fatal
                log(f"TensorBoard summaries disabled: {e}")

        stop = {"requested": False}

        def on_sigint(signum, frame):
            if stop["requested"]:
                raise KeyboardInterrupt
            stop["requested"] = True

        old_handler = None
        try:
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        except ValueError:  # not the main thread
            pass

        step = int(distributed.host_values(params["global_step"].value))
        start_step = step
        end_step = total if args.stop_at_step is None else min(total, max(args.stop_at_step, step))
        progress = _Progress(total, step, not (args.no_progress or args.quiet or not chief))
        raw_per_token = n_raw / len(ids)
        epoch_now, pos_now = distributed.host_values((params["epoch"].value, params["position"].value))
        last_pos = int(epoch_now) * len(ids) + int(pos_now)
        recent: collections.deque = collections.deque(maxlen=max(1, 2000 // k))
        train_time = 0.0
        pairs_total = 0
        tokens_total = 0
        interrupted = False
        try:
            while step < end_step:
                t_call = time.perf_counter()
                params, opt_state, losses, pairs = compiled(params, opt_state, data)
                losses, pairs, epoch_now, pos_now = distributed.host_values(
                    (losses, pairs, params["epoch"].value, params["position"].value))
                dt = time.perf_counter() - t_call
                train_time += dt
                first = step
                step += k
                cur = int(epoch_now) * len(ids) + int(pos_now)
                tokens_total += cur - last_pos
                pairs_total += int(pairs.sum())
                recent.append((float(losses.sum()), int(pairs.sum())))
                avg = sum(x for x, _ in recent) / max(sum(n for _, n in recent), 1)
                wps = (cur - last_pos) * raw_per_token / max(dt, 1e-9)
                last_pos = cur
                lr_now = float(schedule(step))
                progress.update(step, k, avg, wps, cur / len(ids), lr_now)
                if writer is not None:
                    per_step = losses / np.maximum(pairs, 1)
                    writer.add_summary({"loss": per_step}, global_step=first + 1)
                    writer.add_scalar("words_per_sec", wps, global_step=step)
                    writer.add_scalar("learning_rate", lr_now, global_step=step)
                if not np.all(np.isfinite(losses)):
                    progress.close()
                    raise UsageError(f"the loss diverged (non-finite) at step {step}; lower --learning-rate")
                if after_call is not None:
                    after_call(step)
                if distributed.stop_everywhere(stop["requested"]):  # Ctrl-C in any process stops them all here
                    interrupted = True
                    break
                if args.eval_every and step // args.eval_every != first // args.eval_every and step < total and chief:
                    progress.write(_neighbour_lines(distributed.host_values(params["emb_in"].value), vocab))
                if (args.checkpoint_every and step // args.checkpoint_every != first // args.checkpoint_every
                        and chief):
                    ckpt.save(params, opt_state)
        except KeyboardInterrupt:
            # A second Ctrl-C, possibly in the middle of a call whose donated inputs are gone: no save.
            progress.close()
            if writer is not None:
                writer.close()
            print(f"interrupted twice near step {step}: exiting without a new checkpoint (the last one, "
                  "if any, is intact)", file=sys.stderr)
            return 130
        finally:
            progress.close()
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
        if not chief:  # the chief saves and writes the outputs: the others are done
            return 130 if interrupted else 0
        if step > start_step or latest is None:
            saved = ckpt.save(params, opt_state)
        else:
            saved = latest
        if interrupted:
            if writer is not None:
                writer.close()
            print(f"interrupted at step {step}: checkpoint {saved}; continue with --resume", file=sys.stderr)
            return 130
        if step < total:
            if writer is not None:
                writer.close()
            log(f"stopped at step {step} of {total} (--stop-at-step): checkpoint {saved}")
            return 0

        emb, epoch_now, pos_now = distributed.host_values(
            (params["emb_in"].value, params["epoch"].value, params["position"].value))
        epochs_done = (int(epoch_now) * len(ids) + int(pos_now)) / len(ids)

    words_per_sec = tokens_total * raw_per_token / train_time if train_time else None
    examples_per_sec = pairs_total / train_time if train_time else None
    if not args.quiet:
        print("\n".join(_neighbour_lines(emb, vocab)))
    results: dict[str, Any] = {}
    if not args.no_eval:
        try:
            results = evaluation.evaluate_all(emb, {w: i for i, w in enumerate(vocab)})
            for line in evaluation.format_evaluation(results):
                print(line)
        except evaluation.EvaluationUnavailable as e:
            print(f"evaluation unavailable: {e}")
            results = {"unavailable": str(e)}

    vectors_path = export.save_word2vec_format(os.path.join(args.output_dir, "vectors.txt"), emb, vocab)
    tsv, meta = export.save_projector_tsv(args.output_dir, emb, vocab)
    export.save_projector_config(args.output_dir, "embeddings", os.path.basename(meta), os.path.basename(tsv))
    if writer is not None:
        writer.close()

    final_loss = sum(x for x, _ in recent) / max(sum(n for _, n in recent), 1) if recent else None
    metrics = {
        "steps": step,
        "total_steps": total,
        "steps_this_run": step - start_step,
        "epochs_completed": epochs_done,
        "final_average_loss": final_loss,
        "words_per_sec": words_per_sec,
        "examples_per_sec": examples_per_sec,
        "train_seconds": train_time,
        "device": str(device),
        "devices": n_dev,
        "processes": n_proc,
        "platform": device.platform,
        "corpus": description,
        "corpus_tokens": n_raw,
        "in_vocabulary_tokens": int(len(ids)),
        "vocabulary_size": vocab_size,
        "evaluation": results,
        "config": config,
        "checkpoint": saved,
        "vectors": vectors_path,
        "traces": compiled.traces,
    }
    export.write_metrics(os.path.join(args.output_dir, "metrics.json"), metrics)
    rate = f"{words_per_sec:,.0f} words/sec" if words_per_sec else "no training this run"
    log(f"done: {step} steps, {epochs_done:.2f} epochs, final loss {final_loss}, {rate}; "
        f"outputs in {os.path.abspath(args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
