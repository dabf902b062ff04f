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
  are the same however the batch is split over devices). Instead of K fresh negatives per *pair*
  (2bK rows per centre), the default ``--negative-sharing group`` cuts a step's centres into groups of
  about ``--pairs-per-group`` (256) pairs, i.e. ~256 / (window + 1) consecutive centres, and draws
  ``--shared-negatives`` (S, 64) negatives per group, shared by all its centres: each pair's K negative
  terms are estimated as ``K/S`` times the sum over the S (an unbiased estimate of word2vec's objective;
  a negative equal to the centre is skipped, as word2vec does), scored with one ``[centres, S]`` matrix
  product per group. The context rows are read once per token: a step's windows are slices of one band
  of consecutive kept tokens, and each block of 2W centres is multiplied with its 4W band rows
  (``band_logits``), so no ``[C, 2W, D]`` array of window rows is gathered or scattered. Every centre
  thus sees S = 64 distinct negatives (word2vec: 2bK ~ 30), at far less row traffic than a centre's own
  draws. The group size bounds the step a drawn negative takes: its row carries the weight of
  ``pairs x K / S`` (20) pair-draws; one set for a whole step of 1,024 pairs (80) diverged at lr 0.055,
  and at lr 0.025 with 4,096 pairs per step (``benchmarks/notes/issue14-research.md``). The earlier
  scheme, ``--negative-sharing centre``, draws ``--negatives-per-centre`` (M, default 2K) per centre,
  shared by its ``2b`` pairs with weight ``K/M``, and gathers every window's rows: with M = 10 it scored
  ~0.6-0.7x gensim's analogy accuracy per epoch (the variance of ten negatives shared by up to ten pairs),
  ``--negatives-per-centre 50`` closes that gap at about a fifth of the speed. Both schemes sum a step's
  updates of a row computed from the same vectors; a word repeated many times within a step's windows (a
  taxonomy list repeating "order", at window 10) can then take a step past the edge of stability, which in
  some seeds grew rows to norms of ~50 (300-d, window 10, 5 epochs of the embedded corpus, either scheme).
  ``--step-cap`` shortens such rows' steps to that edge (``skipgram_group_negatives_loss``), at ~40% more
  time per step, so it is not on by default. ``--loss nce`` is
  ``jaxgraph.nn.nce_loss`` with TF's shared, unique, log-uniform negatives (64 by default; ids are in
  frequency order, as that sampler assumes).
* **Several devices** (``--devices N``): data-parallel under ``shard_map`` on a ``jaxgraph.sharding``
  mesh. The tables are replicated; each device takes ``1/N`` of the step's centres (the batch rows are
  padded with masked rows to a multiple of N, times the group size with grouped negatives, so that each
  device holds whole groups), computes their ``IndexedSlices``, and one all-gather per step (ids and row
  gradients: row-sized data, never the tables) gives every device the whole step's slices in centre
  order, which it applies with the same single scatter per table as one device. With ``--negative-sharing
  centre`` the result is the one-device run's, bit for bit in our tests; with the default grouped
  negatives (a band row at a device boundary is in two devices' slices) and with ``--loss nce`` (shared
  negatives) such rows are summed per device first (float32 rounding, ~1e-8). On CPU the trainer
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
import functools
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any


def _cpu_device_count_flag(flags: str) -> int | None:
    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", flags)
    return int(m.group(1)) if m else None


def _devices_from_argv(argv: Sequence[str]) -> int | None:
    """``--devices N`` from a raw command line (before argparse), or None."""
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--devices=") else (
            argv[i + 1] if a == "--devices" and i + 1 < len(argv) else None)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_cpu_devices(n: int) -> None:
    """Ask XLA for ``n`` virtual CPU devices (each runs in its own thread, so N cores work in parallel).

    Must happen before JAX's backends start: it sets ``XLA_FLAGS`` (never lowering a count already
    there) and, once jax is imported, ``jax_num_cpu_devices``. After the backends started it does nothing;
    the caller then finds fewer devices and says so.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    current = _cpu_device_count_flag(flags) or 1
    if n > current:
        flags = re.sub(r"\s*--xla_force_host_platform_device_count=\d+", "", flags)
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    jax_mod = sys.modules.get("jax")
    if jax_mod is not None:  # imported but maybe not started: the config wins over XLA_FLAGS then
        try:
            from jax._src import xla_bridge

            started = xla_bridge.backends_are_initialized()
            if not started and jax_mod.config.jax_num_cpu_devices < max(n, current):
                jax_mod.config.update("jax_num_cpu_devices", max(n, current))
        except (ImportError, AttributeError, RuntimeError):  # another jax: XLA_FLAGS alone
            pass


def configure_host_devices(argv: Sequence[str] | None = None) -> None:
    """Create the virtual CPU devices a later ``main(argv)`` will use (``--devices N``). Call it before JAX
    starts (``python -m examples.word2vec.train`` does; ``main`` tries too, which works if JAX has not
    started yet)."""
    argv = sys.argv[1:] if argv is None else argv
    n = _devices_from_argv(argv)
    if n is not None and n > 1:
        _request_cpu_devices(n)


if __name__ == "__main__":  # before jax is imported: XLA reads the device count when it starts
    configure_host_devices()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxgraph as jg  # noqa: E402
from examples.word2vec import data as w2v_data  # noqa: E402
from examples.word2vec import evaluation, export  # noqa: E402
from jaxgraph.sharding import make_mesh, put, shard_opt_state, shard_params  # noqa: E402
from jaxgraph.train import CheckpointError, Saver, latest_checkpoint  # noqa: E402

__all__ = ["main", "build_parser", "build_vocabulary", "configure_host_devices", "skipgram_negative_sampling_loss",
           "skipgram_group_negatives_loss", "band_logits", "window_band", "BatchMaker",
           "TRACE_COUNTS"]

#: How many times each run's K-step function was traced (a test guards it at 1).
TRACE_COUNTS: list[int] = []

_DEFAULT_LR = {"sgd": 0.025, "adagrad": 0.25, "lazyadam": 0.002}
_TRAINING_KEYS = (
    "min_count", "max_vocab", "subsample", "window", "loss", "negatives", "negative_sharing", "shared_negatives",
    "pairs_per_group", "step_cap", "negatives_per_centre", "batch_size",
    "embedding_size", "optimizer", "learning_rate", "total_steps", "seed",
)
_CKPT_NAME = "model.ckpt"
_FINGERPRINT = "run_fingerprint"


class UsageError(Exception):
    """Bad flags or inputs: reported as ``error: ...`` with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    g.add_argument("--negative-sharing", choices=("group", "centre"), default="group",
                   help="--loss neg: draw --shared-negatives negatives per group of about --pairs-per-group "
                        "pairs (consecutive centres), scored against every centre of the group with one matrix "
                        "product (default); or --negatives-per-centre per centre (the earlier scheme)")
    g.add_argument("--shared-negatives", type=int, default=None,
                   help="--negative-sharing group: negatives drawn per group, shared by its centres (default 64)")
    g.add_argument("--pairs-per-group", type=int, default=None,
                   help="--negative-sharing group: about this many pairs (pairs / (window + 1) centres) share one "
                        "set of negatives; each drawn negative then carries the weight of pairs * negatives / "
                        "shared-negatives pair-draws (20 by default), which bounds its step (default 256)")
    g.add_argument("--step-cap", action="store_true",
                   help="--negative-sharing group with --optimizer sgd: shorten the SGD step of any table row whose "
                        "curvature in the step (summed over its occurrences) puts it past the edge of stability "
                        "(lr * h > 2), e.g. a word repeated many times in one step's windows; rows within it, almost "
                        "all, keep word2vec's gradient. Costs ~40%% more time per step (measured on a loaded CPU)")
    g.add_argument("--negatives-per-centre", type=int, default=None,
                   help="--negative-sharing centre: negatives drawn per centre word and shared by its pairs, each "
                        "pair's --negatives terms estimated from them (default 2 * --negatives)")
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
    for name in ("max_vocab", "steps", "negatives", "negatives_per_centre", "shared_negatives", "pairs_per_group",
                 "devices"):
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


def build_vocabulary(
    words: Sequence[str], min_count: int, max_vocab: int | None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(vocab, counts, ids)``: words with ``count >= min_count`` (most frequent first, at most
    ``max_vocab``), their counts, and the corpus as int32 ids with out-of-vocabulary tokens dropped.

    >>> vocab, counts, ids = build_vocabulary("a b a c a b".split(), 2, None)
    >>> vocab, counts.tolist(), ids.tolist()
    (['a', 'b'], [3, 2], [0, 1, 0, 0, 1])
    """
    counter = collections.Counter(words)
    vocab = [(w, c) for w, c in counter.most_common(max_vocab) if c >= min_count]
    if len(vocab) < 2:
        raise UsageError(
            f"the vocabulary has {len(vocab)} word(s) with at least --min-count {min_count} occurrences; "
            "need at least 2 (lower --min-count or use a larger corpus)"
        )
    index = {w: i for i, (w, _) in enumerate(vocab)}
    ids = np.fromiter(map(index.get, words, itertools.repeat(-1)), dtype=np.int32, count=len(words))
    ids = ids[ids >= 0]
    return [w for w, _ in vocab], np.array([c for _, c in vocab], dtype=np.int64), ids


def _load_words(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[str], str]:
    if args.download_text8:
        path = w2v_data.download_text8(args.data_dir)
        return w2v_data.read_words(path), f"text8 ({path})"
    if args.corpus:
        return w2v_data.read_words(args.corpus), os.path.abspath(args.corpus)
    log("reading the embedded default corpus (gensim test data) ...")
    return w2v_data.default_corpus()


def _fingerprint(vocab: Sequence[str], ids: np.ndarray, config: dict[str, Any]) -> bytes:
    h = hashlib.sha256()
    h.update("\n".join(vocab).encode("utf-8"))
    h.update(b"\0")
    h.update(np.ascontiguousarray(ids, dtype="<i4").tobytes())
    h.update(json.dumps({k: config[k] for k in _TRAINING_KEYS}, sort_keys=True).encode())
    return h.digest()


# --------------------------------------------------------------------------------------------------
# Device-side batches


def _mix32(x: jax.Array) -> jax.Array:
    """lowbias32 integer hash (uint32 in, uint32 out): identical on every backend."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def _position_hash(seed: int, salt: int, epoch: jax.Array, positions: jax.Array) -> jax.Array:
    base = _mix32(jnp.uint32((seed * 0x9E3779B1 + salt * 0x85EBCA77) & 0xFFFFFFFF))
    base = _mix32(base ^ epoch.astype(jnp.uint32))
    return _mix32(base ^ positions.astype(jnp.uint32))


def alias_table(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table ``(accept float32 [V], alias int32 [V])`` for sampling ``weights``.

    A draw picks ``i`` uniformly and returns ``i`` if ``u < accept[i]``, else ``alias[i]``.

    >>> accept, alias = alias_table(np.array([1.0, 3.0]))
    >>> accept.tolist(), alias.tolist()
    ([0.5, 1.0], [1, 1])
    """
    p = np.asarray(weights, np.float64)
    n = len(p)
    scaled = p / p.sum() * n
    accept = np.ones(n, np.float64)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept.astype(np.float32), alias


class BatchMaker:
    """Builds one step's skip-gram windows on the device from ``(epoch, position)``.

    The raw span ``[position - back, position + forward + ahead)`` of the (in-vocabulary) corpus is
    subsampled (hash of seed, epoch, position) and compacted; the first ``centres`` kept tokens from
    ``position`` on are the step's centres, each with ``2 * window`` context slots of which the
    ``b`` nearest kept tokens on each side are active. The next step starts at the first kept token
    not used as a centre.
    """

    def __init__(self, n_tokens: int, window: int, batch_size: int, keep_mean: float, seed: int,
                 row_multiple: int = 1) -> None:
        self.n = n_tokens
        self.window = window
        # batch_size counts pairs: a centre has window + 1 active pairs on average.
        self.centres = max(1, -(-batch_size // (window + 1)))
        # Rows of the batch arrays: `centres` rounded up to a multiple of the device count; the extra
        # rows are masked out (no pairs), so the batch itself does not depend on the device count.
        self.rows = -(-self.centres // row_multiple) * row_multiple
        # Raw tokens scanned for centres: about twice what `centres` kept tokens need, so a batch is
        # full except where subsampling is extreme or an epoch ends.
        need = 2.0 * self.centres / max(keep_mean, 1e-3)
        self.forward = int(min(max(need, 2 * self.centres), 64 * self.centres))
        self.back = 8 * window
        self.ahead = 8 * window
        self.span = self.back + self.forward + self.ahead
        self.seed = seed

    def pad(self, ids: np.ndarray) -> np.ndarray:
        tail = np.zeros(self.forward + self.ahead, np.int32)
        return np.concatenate([np.zeros(self.back, np.int32), ids, tail])

    def __call__(self, corpus: jax.Array, keep_prob: jax.Array, epoch: jax.Array, pos: jax.Array):
        """``(centres [R], contexts [R, 2W], mask [R, 2W], next_epoch, next_position)``; ``R = self.rows``
        (rows from ``self.centres`` on are masked)."""
        w, n_c = self.window, self.centres
        tok = jax.lax.dynamic_slice(corpus, (pos,), (self.span,))
        off = pos - self.back + jnp.arange(self.span, dtype=jnp.int32)
        valid = (off >= 0) & (off < self.n)
        u = (_position_hash(self.seed, 1, epoch, off) >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
        keep = valid & (u < keep_prob[tok])
        rank = jnp.cumsum(keep.astype(jnp.int32)) - 1
        total_kept = rank[-1] + 1
        slot = jnp.where(keep, rank, self.span)
        comp_tok = jnp.zeros(self.span, jnp.int32).at[slot].set(tok, mode="drop")
        comp_off = jnp.full(self.span, self.n, jnp.int32).at[slot].set(off, mode="drop")
        n_back = jnp.sum(keep[: self.back].astype(jnp.int32))
        n_fwd = jnp.sum(keep[self.back: self.back + self.forward].astype(jnp.int32))

        i = jnp.arange(self.rows, dtype=jnp.int32)
        is_centre = (i < n_fwd) & (i < n_c)
        c_idx = jnp.minimum(n_back + i, self.span - 1)
        b = 1 + (_position_hash(self.seed, 2, epoch, comp_off[c_idx]) % jnp.uint32(w)).astype(jnp.int32)
        d = jnp.concatenate([jnp.arange(-w, 0, dtype=jnp.int32), jnp.arange(1, w + 1, dtype=jnp.int32)])
        ctx = c_idx[:, None] + d[None, :]
        mask = (is_centre[:, None] & (jnp.abs(d)[None, :] <= b[:, None]) & (ctx >= 0) & (ctx < total_kept))
        centres = comp_tok[c_idx]
        contexts = comp_tok[jnp.clip(ctx, 0, self.span - 1)]

        first_unused = comp_off[jnp.minimum(n_back + n_c, self.span - 1)]
        next_pos = jnp.where(n_fwd <= n_c, pos + self.forward, first_unused)
        wrap = next_pos >= self.n
        next_epoch = epoch + wrap.astype(epoch.dtype)
        next_pos = jnp.where(wrap, 0, next_pos)
        return centres, contexts, mask, next_epoch, next_pos


# --------------------------------------------------------------------------------------------------
# Model and step


def _init_params(vocab_size: int, dim: int, loss: str, seed: int) -> dict[str, Any]:
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0x1217)
    params = {
        "emb_in": jg.Variable(
            jax.random.uniform(key, (vocab_size, dim), jnp.float32, -0.5 / dim, 0.5 / dim), name="emb_in"
        ),
        "emb_out": jg.Variable(jnp.zeros((vocab_size, dim), jnp.float32), name="emb_out"),
        "global_step": jg.create_global_step(),
        "epoch": jg.Variable(jnp.zeros((), jnp.int32), trainable=False, name="epoch"),
        "position": jg.Variable(jnp.zeros((), jnp.int32), trainable=False, name="position"),
    }
    if loss == "nce":
        params["nce_biases"] = jg.Variable(jnp.zeros((vocab_size,), jnp.float32), name="nce_biases")
    return params


def _make_optimizer(name: str, lr: float, total_steps: int) -> jg.train.Optimizer:
    def schedule(step):
        frac = jnp.asarray(step, jnp.float32) / jnp.float32(max(total_steps, 1))
        return lr * jnp.maximum(jnp.float32(1e-4), 1.0 - frac)

    if name == "sgd":
        return jg.train.GradientDescentOptimizer(schedule)
    if name == "adagrad":
        return jg.train.AdagradOptimizer(schedule)
    return jg.train.LazyAdamOptimizer(schedule)


@jax.custom_vjp
def _neg_log_sigmoid_sum(z: jax.Array, weight: jax.Array) -> jax.Array:
    """``-sum(weight * log_sigmoid(z))`` over flat float32 arrays, with a hand-written gradient.

    Differentiating ``jnp.where(weight, jax.nn.log_sigmoid(z), 0)`` leaves XLA's CPU backend several
    passes over the logits (softplus, its derivative, the selects), which cost as much as the pair
    products themselves; here one pass computes ``e = exp(-|z|)`` once and from it both the loss
    (``max(-z, 0) + log1p(e)``) and the gradient (``-weight * sigmoid(-z)``), which the backward pass
    only scales. About 4x less time for this part of the step.
    """
    return _neg_log_sigmoid_sum_fwd(z, weight)[0]


def _neg_log_sigmoid_sum_fwd(z, weight):
    e = jnp.exp(-jnp.abs(z))
    r = 1.0 / (1.0 + e)
    sigmoid_neg_z = jnp.where(z >= 0, e * r, r)
    loss = jnp.sum(weight * (jnp.maximum(-z, 0.0) + jnp.log1p(e)))
    return loss, (-(weight * sigmoid_neg_z),)


def _neg_log_sigmoid_sum_bwd(res, g):
    (dz,) = res
    return g * dz, None


_neg_log_sigmoid_sum.defvjp(_neg_log_sigmoid_sum_fwd, _neg_log_sigmoid_sum_bwd)


def skipgram_negative_sampling_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array,
                                    mask: jax.Array, negs: jax.Array, negatives: int) -> jax.Array:
    """The summed ``--loss neg`` loss of a batch: ``centres [C]``, ``contexts [C, S]`` with ``mask [C, S]``
    marking the real pairs, and ``negs [C, M]``, the negatives drawn for each centre.

    Skip-gram as in the word2vec paper: the centre's input vector ``v`` (``params["emb_in"]``) predicts
    the output vectors ``u`` (``params["emb_out"]``) of its context words. A pair's loss is word2vec's
    ``-log s(v.u_ctx) - sum_{k<K} log s(-v.u_neg_k)`` with ``K = negatives``; the centre's M negatives
    serve all its ``n`` pairs, each pair's K negative terms estimated by ``K/M`` times the sum over the
    M, so the negative part of a centre's loss is ``n K/M sum_m -log s(-v.u_m)``, computed once (a
    negative equal to the centre is skipped, as in word2vec). That is one row of ``S + M`` dot products
    per centre (a matrix-vector product) instead of gensim's ``[S, 1 + K]`` block (context predicts
    centre, negatives per pair), fewer rows and far fewer small products per step.

    >>> p = {"emb_in": jg.Variable(jnp.ones((4, 2))), "emb_out": jg.Variable(jnp.zeros((4, 2)))}
    >>> loss = skipgram_negative_sampling_loss(p, jnp.array([0]), jnp.array([[1, 2]]),
    ...                                        jnp.array([[True, False]]), jnp.array([[3, 3]]), 2)
    >>> round(float(loss / np.log(2)), 4)  # one pair: its positive term and K = 2 negative terms
    3.0
    """
    outs = jnp.concatenate([contexts, negs], axis=1)  # [C, S + M]
    v = jg.nn.embedding_lookup(params["emb_in"], centres)  # [C, D]
    u = jg.nn.embedding_lookup(params["emb_out"], outs)  # [C, S + M, D]
    logits = jnp.einsum("cd,ckd->ck", v, u)
    n_ctx, drawn = contexts.shape[1], negs.shape[1]
    sign = jnp.asarray(np.array([1.0] * n_ctx + [-1.0] * drawn, np.float32))
    n_pairs = jnp.sum(mask, axis=1, keepdims=True).astype(logits.dtype)
    neg_weight = jnp.where(negs != centres[:, None], n_pairs * (negatives / drawn), 0.0)
    weight = jnp.concatenate([mask.astype(logits.dtype), neg_weight], axis=1)
    return _neg_log_sigmoid_sum((logits * sign).reshape(-1), weight.reshape(-1))


def window_band(centres: jax.Array, contexts: jax.Array) -> jax.Array:
    """The run of consecutive kept tokens ``[C + 2W]`` from which :class:`BatchMaker` cut a step's windows.

    The step's centres are consecutive kept tokens and each window holds the W kept tokens before and after
    its centre, so the band is the first window's left half, the centres, and the last window's right half:
    ``contexts[i, j] == band[i + j + (j >= W)]`` wherever the pair is real (``mask[i, j]``).

    >>> window_band(jnp.array([5, 6, 7]), jnp.array([[4, 6], [5, 7], [6, 8]])).tolist()
    [4, 5, 6, 7, 8]
    """
    w = contexts.shape[1] // 2
    return jnp.concatenate([contexts[0, :w], centres, contexts[-1, w:]])


def band_logits(v: jax.Array, u_band: jax.Array) -> jax.Array:
    """``[C, 2W]`` dot products of each centre's vector with its window's rows of the band:
    ``out[i, j] = v[i] . u_band[i + j + (j >= W)]`` for ``v [C, D]`` and ``u_band [C + 2W, D]``.

    Nothing of size ``[C, 2W, D]`` is materialised (gathering every window's rows from the table, and
    scattering their gradients back, was most of the step's time): the centres are cut into blocks of
    ``T = 2W``, each block's ``[T, D]`` vectors multiplied with its ``2T`` band rows in one small matrix
    product (twice the products needed), and the ``2W`` wanted diagonals of the ``[T, 2T]`` result read
    by a skew (pad and reshape); its gradient is again matrix products and pads.

    >>> v = jnp.arange(6.0).reshape(3, 2); u = jnp.ones((5, 2))   # C = 3, W = 1
    >>> band_logits(v, u).tolist()
    [[1.0, 1.0], [5.0, 5.0], [9.0, 9.0]]
    """
    c, d = v.shape
    t = u_band.shape[0] - c  # 2W
    w = t // 2
    nb = -(-c // t)
    pad = nb * t - c
    vb = jnp.pad(v, ((0, pad), (0, 0))).reshape(nb, t, d)
    ub = jnp.pad(u_band, ((0, pad), (0, 0)))  # (nb + 1) * T rows
    blocks = jnp.concatenate([ub[: nb * t].reshape(nb, t, d), ub[t:].reshape(nb, t, d)], axis=1)  # [nb, 2T, D]
    full = jnp.einsum("btd,bkd->btk", vb, blocks)  # [nb, T, 2T]: centre a of a block against band rows a + s
    # In the flat [T * 2T] layout padded to T * (2T + 1), row a of a [T, 2T + 1] view starts at offset
    # s = 0 of centre a, so its first 2W + 1 entries are the offsets 0 .. 2W (offset W is the centre).
    skew = jnp.pad(full.reshape(nb, 2 * t * t), ((0, 0), (0, t))).reshape(nb, t, 2 * t + 1)
    out = jnp.concatenate([skew[:, :, :w], skew[:, :, w + 1: t + 1]], axis=2)
    return out.reshape(nb * t, t)[:c]


def skipgram_group_negatives_loss(params: dict[str, Any], centres: jax.Array, contexts: jax.Array,
                                  mask: jax.Array, negs: jax.Array, negatives: int,
                                  step_cap: float | None = None) -> jax.Array:
    """The summed ``--loss neg`` loss of a batch whose negatives are shared by groups of consecutive centres.

    ``centres [C]``, ``contexts [C, 2W]`` and ``mask [C, 2W]`` as :class:`BatchMaker` makes them (consecutive
    centres, see :func:`window_band`), ``negs [G, S]``: the C centres fall into G groups of ``ceil(C / G)``
    consecutive centres, and group g's S negatives serve all its centres. A pair's loss is word2vec's
    ``-log s(v.u_ctx) - sum_{k<K} log s(-v.u_neg_k)`` with ``K = negatives``, its K negative terms
    estimated by ``K/S`` times the sum over the group's S negatives (a negative equal to the centre is
    skipped, as in :func:`skipgram_negative_sampling_loss`), so a centre with ``n`` pairs adds
    ``n K/S sum_s -log s(-v.u_s)``: an unbiased estimate of word2vec's objective, from S distinct
    negatives per centre at the row traffic of ``S / (C/G)`` per centre.

    The context rows are read once per token of the band (:func:`band_logits`), the negatives' logits are
    one ``[C/G, S]`` matrix product per group.

    ``step_cap``: for plain SGD at (at most) this learning rate, each table row's gradient is divided by
    ``max(1, step_cap * h / 2)``, ``h`` the curvature of the step's loss along that row (summed over the
    row's occurrences in the step: ``sum w s(z) s(-z) |other row|^2`` over its terms). A gradient step of
    size ``lr`` on a row is stable only while ``lr * h < 2`` (beyond, it overshoots and the row grows
    from step to step); rows within that bound, almost all of them, get word2vec's gradient exactly, a
    row beyond it a step shortened to the bound. Such rows are words repeated many times within one step's
    windows (a taxonomy list repeating "order", at window 10): their summed update, computed from the same
    stale vectors, is what sequential per-pair SGD applies one pair at a time, saturating as it goes.
    Without the cap such rows grew to norms of ~50 in some seeds (``benchmarks/notes/issue14-research.md``).
    The loss value is unchanged.

    >>> p = {"emb_in": jg.Variable(jnp.ones((4, 2))), "emb_out": jg.Variable(jnp.zeros((4, 2)))}
    >>> loss = skipgram_group_negatives_loss(p, jnp.array([0]), jnp.array([[1, 2]]),
    ...                                      jnp.array([[True, False]]), jnp.array([[3, 3]]), 2)
    >>> round(float(loss / np.log(2)), 4)  # one pair: its positive term and K = 2 negative terms
    3.0
    """
    c, two_w = contexts.shape
    groups, drawn = negs.shape
    per = -(-c // groups)
    out_ids = jnp.concatenate([window_band(centres, contexts), negs.reshape(-1)])
    v = jg.nn.embedding_lookup(params["emb_in"], centres)  # [C, D]
    # One lookup (one scatter) of the output table: the band's rows, then the negatives'.
    u = jg.nn.embedding_lookup(params["emb_out"], out_ids)
    own = jnp.repeat(negs, per, axis=0)[:c]  # each centre's group's negatives
    n_pairs = jnp.sum(mask, axis=1, keepdims=True).astype(v.dtype)
    neg_weight = jnp.where(own != centres[:, None], n_pairs * (negatives / drawn), 0.0)
    weight = jnp.concatenate([mask.astype(v.dtype), neg_weight], axis=1)
    if step_cap is None:
        return _group_loss(v, u, weight, two_w, groups)
    return _capped_group_loss(v, u, weight, centres, out_ids, two_w, groups, step_cap)


def _group_products(v: jax.Array, u: jax.Array, two_w: int, groups: int) -> jax.Array:
    """``[C, 2W + S]``: each centre's vector dotted with its window's band rows (``u[:C + 2W]``), then with its
    group's S negatives (``u[C + 2W:]``, G sets of S)."""
    c = v.shape[0]
    drawn = (u.shape[0] - c - two_w) // groups
    per = -(-c // groups)
    pos = band_logits(v, u[: c + two_w])  # [C, 2W]
    vg = jnp.pad(v, ((0, groups * per - c), (0, 0))).reshape(groups, per, -1)
    neg = jnp.einsum("gcd,gsd->gcs", vg, u[c + two_w:].reshape(groups, drawn, -1)).reshape(groups * per, drawn)[:c]
    return jnp.concatenate([pos, neg], axis=1)


def _group_loss(v: jax.Array, u: jax.Array, weight: jax.Array, two_w: int, groups: int) -> jax.Array:
    return _group_loss_and_logits(v, u, weight, two_w, groups)[0]


def _group_loss_and_logits(v: jax.Array, u: jax.Array, weight: jax.Array, two_w: int,
                           groups: int) -> tuple[jax.Array, jax.Array]:
    products = _group_products(v, u, two_w, groups)
    sign = jnp.concatenate([jnp.ones((two_w,), v.dtype), -jnp.ones((products.shape[1] - two_w,), v.dtype)])
    logits = products * sign
    return _neg_log_sigmoid_sum(logits.reshape(-1), weight.reshape(-1)), logits


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _capped_group_loss(v, u, weight, centres, out_ids, two_w, groups, step_cap):
    """:func:`_group_loss`, each row's gradient divided by ``max(1, step_cap * h / 2)`` (see ``step_cap`` in
    :func:`skipgram_group_negatives_loss`)."""
    return _group_loss(v, u, weight, two_w, groups)


def _capped_group_loss_fwd(v, u, weight, centres, out_ids, two_w, groups, step_cap):
    loss, vjp, z = jax.vjp(lambda a, b: _group_loss_and_logits(a, b, weight, two_w, groups), v, u, has_aux=True)
    return loss, (vjp, v, u, weight, centres, out_ids, z)


def _capped_group_loss_bwd(two_w, groups, step_cap, res, g):
    vjp, v, u, weight, centres, out_ids, z = res
    gv, gu = vjp(g)
    # A term w * softplus(-z) has second derivative w s(z) s(-z) in z, so a row's curvature is the sum, over
    # the terms it takes part in, of that times the squared norm of the other row: the same products as
    # the logits, of squared norms (one feature) instead of vectors.
    a = weight * jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)
    c, two_w_ = v.shape[0], two_w
    drawn = (u.shape[0] - c - two_w) // groups
    per = -(-c // groups)
    v2 = jnp.sum(v * v, axis=1)
    u2 = jnp.sum(u * u, axis=1)
    w = two_w_ // 2
    band_row = jnp.arange(c)[:, None] + jnp.asarray([j + (j >= w) for j in range(two_w_)])[None, :]  # [C, 2W]
    a_pos, a_neg = a[:, :two_w_], jnp.pad(a[:, two_w_:], ((0, groups * per - c), (0, 0))).reshape(groups, per, drawn)
    v2g = jnp.pad(v2, (0, groups * per - c)).reshape(groups, per)
    h_in = (jnp.sum(a_pos * u2[band_row], axis=1)
            + jnp.einsum("gcs,gs->gc", a_neg, u2[c + two_w_:].reshape(groups, drawn)).reshape(-1)[:c])
    h_band = jax.ops.segment_sum((a_pos * v2[:, None]).reshape(-1), band_row.reshape(-1), num_segments=c + two_w_)
    h_out = jnp.concatenate([h_band, jnp.einsum("gcs,gc->gs", a_neg, v2g).reshape(-1)])
    # A row's occurrences in this step (a word in several windows, or drawn twice) share one scatter-add:
    # their curvatures add up.
    h_in = _sum_by_id(centres, h_in)
    h_out = _sum_by_id(out_ids, h_out)
    gv = gv / jnp.maximum(1.0, 0.5 * step_cap * g * h_in)[:, None]
    gu = gu / jnp.maximum(1.0, 0.5 * step_cap * g * h_out)[:, None]
    return gv, gu, None, None, None


def _sum_by_id(ids: jax.Array, x: jax.Array) -> jax.Array:
    """For each entry, the sum of ``x`` over the entries with the same id (a sort, not an id-sized buffer).

    >>> _sum_by_id(jnp.array([7, 3, 7, 7]), jnp.array([1.0, 2.0, 3.0, 4.0])).tolist()
    [8.0, 2.0, 8.0, 8.0]
    """
    order = jnp.argsort(ids)
    sorted_ids = ids[order]
    segment = jnp.cumsum(jnp.concatenate([jnp.zeros((1,), jnp.int32),
                                          (sorted_ids[1:] != sorted_ids[:-1]).astype(jnp.int32)]))
    sums = jax.ops.segment_sum(x[order], segment, num_segments=ids.shape[0])
    return jnp.zeros_like(x).at[order].set(sums[segment])


_capped_group_loss.defvjp(_capped_group_loss_fwd, _capped_group_loss_bwd)


def _centres_per_group(args: argparse.Namespace) -> int:
    """Centres per negatives group (--negative-sharing group): about --pairs-per-group pairs (a centre has
    window + 1 on average), at most a step's centres; 1 for the other schemes (no grouping)."""
    if args.loss != "neg" or args.negative_sharing != "group":
        return 1
    centres = -(-args.batch_size // (args.window + 1))
    return max(1, min(centres, round(args.pairs_per_group / (args.window + 1))))


def _make_multi_step(opt, batches: BatchMaker, args, vocab_size: int, counts: np.ndarray,
                     trace_counter: list, mesh=None):
    """The jitted K-step function ``(params, opt_state, data) -> (params, opt_state, losses, pairs)``; ``data``
    holds the corpus, the subsampling keep probabilities and the negatives' alias table.

    With a ``mesh`` of N > 1 devices it runs data-parallel under ``shard_map``: the tables are
    replicated; every device builds the (cheap) batch and negatives, takes its ``R / N`` centre rows,
    computes their sparse gradients, and the ``IndexedSlices`` (ids and row gradients, row-sized) are
    all-gathered in centre order, so every device applies the same single scatter per table as the
    single-device step, to its own copy. Nothing of the table's size crosses devices.
    """
    k_steps = args.steps_per_call
    negatives = args.negatives
    grouped = args.loss == "neg" and args.negative_sharing == "group"
    drawn = (args.shared_negatives if grouped else args.negatives_per_centre) if args.loss == "neg" else negatives
    group = _centres_per_group(args)
    # --step-cap: cap each row's SGD step at the edge of stability (see skipgram_group_negatives_loss).
    step_cap = args.learning_rate if args.step_cap else None
    base_key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 0x5EED)
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    rows, n_c = batches.rows, batches.centres
    two_w = 2 * args.window

    def sample_neg(data, step, first_row, n_rows):
        """Negatives of rows ``first_row ..`` (``[n_rows, drawn]``; a row is a centre, or a group of centres
        with --negative-sharing group): unigram**0.75 by an alias table, the randomness a hash of
        ``(seed, step, row, k)``, so a row's negatives do not depend on how the batch is split over devices.
        (jax.random here cost ~0.3 ms/step on CPU: threefry runs as XLA loops.)"""
        slot = (first_row * drawn + jnp.arange(n_rows * drawn, dtype=jnp.int32)).astype(jnp.uint32)
        h1 = _position_hash(args.seed, 3, step, slot)
        h2 = _position_hash(args.seed, 4, step, slot)
        u1 = (h1 >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
        u2 = (h2 >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
        i = jnp.minimum((u1 * vocab_size).astype(jnp.int32), vocab_size - 1)
        return jnp.where(u2 < data["accept"][i], i, data["alias"][i]).reshape(n_rows, drawn)

    def sample(centres, key):
        """nce: one shared set of negatives; the expected counts of the labels (the centre, once per context
        slot) for the first ``n_c`` rows (independent of the device count), padded to ``rows``."""
        real = centres[:n_c]
        sampled, true_exp, sampled_exp = jg.nn.log_uniform_candidate_sampler(
            jnp.repeat(real, two_w)[:, None], 1, negatives, True, vocab_size, key)
        true_exp = jnp.pad(true_exp.reshape(n_c, two_w), ((0, rows - n_c), (0, 0)), constant_values=1.0)
        return sampled, true_exp, sampled_exp

    def loss_neg(p, centres, contexts, mask, negs):
        if grouped:
            return skipgram_group_negatives_loss(p, centres, contexts, mask, negs, negatives, step_cap)
        return skipgram_negative_sampling_loss(p, centres, contexts, mask, negs, negatives)

    def loss_nce(p, centres, contexts, mask, noise):
        sampled, true_exp, sampled_exp = noise
        v = jg.nn.embedding_lookup(p["emb_in"], contexts.reshape(-1))
        labels = jnp.repeat(centres, contexts.shape[1])[:, None]
        per_pair = jg.nn.nce_loss(p["emb_out"], p["nce_biases"], labels, v, negatives, vocab_size,
                                  sampled_values=(sampled, true_exp.reshape(-1, 1), sampled_exp))
        return jnp.sum(per_pair * mask.reshape(-1))

    loss_impl = loss_neg if args.loss == "neg" else loss_nce

    def local_rows(x):
        """This device's ``rows / N`` centre rows of a per-centre array."""
        per = rows // n_dev
        return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index("data") * per, per, axis=0)

    def combine(grads):
        """One device's gradients -> the whole batch's, the same on every device.

        All ``IndexedSlices`` (row gradients and their ids, bit-cast) travel in ONE all-gather per step:
        on virtual CPU devices every collective is a rendezvous of the device threads, which costs more
        than the data it moves. Dense gradients (none in this model) would be summed.
        """
        sparse = [g for g in grads if isinstance(g, jg.IndexedSlices)]
        # The barrier keeps XLA from fusing the row-gradient arithmetic into the packing copy (a
        # non-vectorised loop, several times slower).
        barrier = jax.lax.optimization_barrier([g.values for g in sparse])
        parts = []
        for g, values in zip(sparse, barrier, strict=True):
            parts += [values.reshape(-1).astype(jnp.float32),
                      jax.lax.bitcast_convert_type(g.indices.astype(jnp.int32), jnp.float32)]
        packed = jax.lax.all_gather(jnp.concatenate(parts), "data")  # [N, L]
        out, offset = {}, 0
        for g in sparse:
            n, width = g.values.shape[0], int(np.prod(g.values.shape[1:], dtype=np.int64))
            values = packed[:, offset: offset + n * width].reshape((n_dev * n,) + g.values.shape[1:])
            offset += n * width
            indices = jax.lax.bitcast_convert_type(packed[:, offset: offset + n], jnp.int32).reshape(-1)
            offset += n
            if args.loss == "neg" and not grouped:
                # Every lookup is per centre row: in centre order, the padding rows come last. Dropping
                # them leaves exactly the single-device step's IndexedSlices (same ids, same order).
                # (Grouped negatives and the band overlap between devices: their rows are partial sums,
                # all kept, which the scatter adds up; padding rows carry zero gradients.)
                keep = n_dev * n // rows * n_c
                values, indices = values[:keep], indices[:keep]
            out[id(g)] = jg.IndexedSlices(values.astype(g.values.dtype), indices.astype(g.indices.dtype),
                                          g.dense_shape)
        return [out[id(g)] if isinstance(g, jg.IndexedSlices) else
                (None if g is None else jax.lax.psum(g, "data")) for g in grads]

    def one(data, carry, _):
        params, opt_state = carry
        step = params["global_step"].value
        centres, contexts, mask, epoch, pos = batches(
            data["corpus"], data["keep"], params["epoch"].value, params["position"].value
        )
        first, per = 0, rows
        if n_dev > 1:
            per = rows // n_dev
            first = jax.lax.axis_index("data") * per
        local = [local_rows(x) for x in (centres, contexts, mask)] if n_dev > 1 else [centres, contexts, mask]
        if grouped:  # this device's rows are whole groups (rows are padded to a multiple of n_dev * group)
            noise = sample_neg(data, step, first // group, per // group)
        elif args.loss == "neg":
            noise = sample_neg(data, step, first, per)
        else:
            sampled, true_exp, sampled_exp = sample(centres, jax.random.fold_in(base_key, step))
            noise = (sampled, local_rows(true_exp) if n_dev > 1 else true_exp, sampled_exp)
        batch = (*local, noise)
        loss, grads_and_vars = opt.compute_gradients(lambda p: loss_impl(p, *batch), params)
        if n_dev > 1:  # the loss stays per device (summed once per call, outside the scan)
            grads = combine([g for g, _ in grads_and_vars])
            grads_and_vars = [(g, v) for g, (_, v) in zip(grads, grads_and_vars, strict=True)]
        params, opt_state = opt.apply_gradients(grads_and_vars, params, opt_state,
                                                global_step=params["global_step"])
        params = jg.replace_values(params, {"epoch": epoch, "position": pos})
        return (params, opt_state), (loss, jnp.sum(mask.astype(jnp.int32)))

    def multi_step(params, opt_state, data):
        trace_counter[0] += 1
        body = functools.partial(one, data)
        (params, opt_state), (losses, pairs) = jax.lax.scan(body, (params, opt_state), None, length=k_steps)
        return params, opt_state, losses, pairs

    if n_dev == 1:
        return jax.jit(multi_step, donate_argnums=(0, 1))

    def per_device(params, opt_state, data):
        params, opt_state, losses, pairs = multi_step(params, opt_state, data)
        return params, opt_state, jax.lax.psum(losses, "data"), pairs

    def sharded(params, opt_state, data):
        # Everything enters and leaves replicated, the losses summed over the devices (so that every
        # process can read them, also with several processes); only row-sized gradients are all-gathered
        # inside.
        fn = jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)
        return fn(params, opt_state, data)

    return jax.jit(sharded, donate_argnums=(0, 1))


# --------------------------------------------------------------------------------------------------
# Devices, checkpoints, reporting


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message (JAX's are often many lines long), or its type's name."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _start_processes(args: argparse.Namespace) -> None:
    """Join the other processes (``jax.distributed.initialize``) when the multi-process flags are given.

    This must happen before JAX's backends start; ``python -m examples.word2vec.train`` starts none before
    ``main`` runs. CPU devices use gloo for the collectives between processes (harmless on GPU/TPU).
    """
    if args.coordinator_address is None and not args.distributed_auto:
        return
    from jax._src import distributed, xla_bridge

    state = distributed.global_state
    if state.client is not None:  # already joined (an earlier main() in this process, or the caller did)
        if args.distributed_auto or (state.num_processes, state.process_id) == (args.num_processes,
                                                                               args.process_id):
            return
        raise UsageError(f"jax.distributed is already initialized as process {state.process_id} of "
                         f"{state.num_processes}, not as --process-id {args.process_id} of {args.num_processes}")
    if xla_bridge.backends_are_initialized():
        raise UsageError("the multi-process flags need jax.distributed to start before JAX's backends, which "
                         "already started in this process: run the trainer as its own process "
                         "(python -m examples.word2vec.train ...)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if args.distributed_auto:
            jax.distributed.initialize()
        else:
            jax.distributed.initialize(coordinator_address=args.coordinator_address,
                                       num_processes=args.num_processes, process_id=args.process_id)
    except (RuntimeError, ValueError) as e:
        first = _first_line(e)
        raise UsageError(f"jax.distributed.initialize failed: {first}") from None


def _host(tree: Any) -> Any:
    """The values of a tree of replicated arrays on the host, read from each array's first local copy (with
    several processes an array spans devices this process cannot read; every process holds a full copy)."""
    local = jax.tree_util.tree_map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)
    return jax.device_get(local)


def _processes_agree(fields: dict[str, Sequence[int] | int]) -> None:
    """With several processes, check that every process has the same ``fields`` (small int32 values): the
    same corpus and training flags, devices, and start step (e.g. all resumed the same checkpoint)."""
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    names, parts = [], []
    for name, value in fields.items():
        value = np.atleast_1d(np.asarray(value, np.int32))
        names += [name] * len(value)
        parts.append(value)
    mine = np.concatenate(parts)
    try:
        everyone = np.asarray(multihost_utils.process_allgather(mine)).reshape(jax.process_count(), len(mine))
    except RuntimeError as e:  # e.g. gloo's 30 s deadline: another process failed before it got here
        first = _first_line(e)
        raise UsageError(f"this process could not reach the other processes (did one of them fail?): {first}"
                         ) from None
    differ = [n for n in fields if n in {names[j] for j in np.nonzero((everyone != everyone[0]).any(axis=0))[0]}]
    if differ:
        shown = [n for n in differ if n != "fingerprint"]
        detail = "; ".join(f"process {i}: " + ", ".join(f"{n} {everyone[i][names.index(n)]}" for n in shown)
                           for i in range(len(everyone)))
        what = ", ".join("the corpus, vocabulary or training flags" if n == "fingerprint" else n for n in differ)
        raise UsageError(f"the processes disagree on {what}{f' ({detail})' if shown else ''}: run every process "
                         "with the same flags and files (--resume: the same checkpoint on a shared filesystem)")


def _stop_everywhere(requested: bool) -> bool:
    """Whether any process asked to stop (Ctrl-C): every process makes the same decision after each call."""
    if jax.process_count() == 1:
        return requested
    from jax.experimental import multihost_utils

    return bool(np.asarray(multihost_utils.process_allgather(np.array([requested], np.int32))).any())


def _resolve_device(spec: str | None):
    if spec is None:
        return jax.local_devices()[0]
    name, _, index = spec.partition(":")
    name = {"cuda": "gpu", "rocm": "gpu"}.get(name.lower(), name.lower())
    try:
        idx = int(index) if index else 0
    except ValueError:
        raise UsageError(f"--device {spec!r}: the device index must be an integer") from None
    try:
        devices = [d for d in jax.devices(name) if d.process_index == jax.process_index()]
    except RuntimeError as e:
        first = _first_line(e)
        raise UsageError(f"--device {spec!r} is not available: {first}") from None
    if not 0 <= idx < len(devices):
        raise UsageError(f"--device {spec!r}: there are {len(devices)} {name} device(s)")
    return devices[idx]


def _resolve_devices(device, requested: int | None) -> list:
    """The devices to train on: ``device`` and the next ones of its platform (``--devices``, default 1).

    One device is the default everywhere: on the 2-core CPU we measured, ``--devices 2`` ran at about 0.2x
    the speed of one device (a rendezvous of the device threads every step, which costs more than the
    ~0.5 ms step itself; the batch, negatives and scatters repeated on each device; and XLA's own
    intra-op threads already using the second core).

    With several processes ``device`` is a local device and ``--devices`` counts local devices: the result
    is every process's devices at the same local positions, process 0's first (the mesh's order).
    """
    same = [d for d in jax.devices(device.platform) if d.process_index == device.process_index]
    start = same.index(device) if device in same else 0
    available = same[start:]
    n = 1 if requested is None else requested
    if n > len(available):
        hint = ""
        if device.platform == "cpu":
            hint = (f"; JAX started with {len(same)} CPU device(s) before the trainer could ask for more: set "
                    f"XLA_FLAGS=--xla_force_host_platform_device_count={requested} before JAX starts")
        per = " in this process" if jax.process_count() > 1 else ""
        raise UsageError(f"--devices {requested}: only {len(available)} {device.platform} device(s) from "
                         f"{device} on{per}{hint}")
    if jax.process_count() == 1:
        return available[:n]
    devices = []
    for p in range(jax.process_count()):
        theirs = [d for d in jax.devices(device.platform) if d.process_index == p][start: start + n]
        if len(theirs) < n:
            raise UsageError(f"--devices {n}: process {p} has only {len(theirs)} {device.platform} device(s) "
                             f"from local device {start} on")
        devices += theirs
    return devices


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
        params, opt_state = _host((params, opt_state))  # replicated arrays, maybe over several processes
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


def _json_safe(obj: Any) -> Any:
    """NaN/inf (e.g. a Spearman over zero covered pairs) become null: metrics.json stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _atomic_json(path: str, obj: Any) -> None:
    def write(f):
        json.dump(_json_safe(obj), f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")

    export._atomic_write(path, write)  # the same temporary-file-and-rename writer as the exports


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
    try:
        args = build_parser().parse_args(argv)
        _validate(args)
        if args.devices is not None and args.devices > 1:
            _request_cpu_devices(args.devices)  # a no-op once JAX has started
        _start_processes(args)
        return _run(args, _after_call)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, w2v_data.CorpusError, CheckpointError, evaluation.EvaluationUnavailable) as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (no checkpoint written by this run; earlier ones are kept)", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, after_call: Callable[[int], None] | None) -> int:
    # With several processes, process 0 (the chief) writes every output and prints; the others only
    # train, in step with it, and report errors.
    chief = jax.process_index() == 0
    log = (lambda s: None) if args.quiet or not chief else print
    if args.negatives is None:
        args.negatives = 5 if args.loss == "neg" else 64
    if args.negatives_per_centre is None:
        args.negatives_per_centre = 2 * args.negatives if args.loss == "neg" else None
    elif args.loss != "neg" or args.negative_sharing != "centre":
        raise UsageError("--negatives-per-centre applies to --loss neg with --negative-sharing centre only")
    if args.step_cap and (args.loss != "neg" or args.negative_sharing != "group" or args.optimizer != "sgd"):
        raise UsageError("--step-cap applies to --loss neg --negative-sharing group with --optimizer sgd only")
    for name, default in (("shared_negatives", 64), ("pairs_per_group", 256)):
        if getattr(args, name) is None:
            setattr(args, name, default)
        elif args.loss != "neg" or args.negative_sharing != "group":
            raise UsageError(f"--{name.replace('_', '-')} applies to --loss neg with --negative-sharing group only")
    if args.learning_rate is None:
        args.learning_rate = _DEFAULT_LR[args.optimizer]
    device = _resolve_device(args.device)
    devices = _resolve_devices(device, args.devices)
    n_dev = len(devices)  # over all processes
    n_proc = jax.process_count()
    mesh = make_mesh(devices=devices) if n_dev > 1 else None

    t0 = time.perf_counter()
    words, description = _load_words(args, log)
    vocab, counts, ids = build_vocabulary(words, args.min_count, args.max_vocab)
    n_raw = len(words)
    del words
    vocab_size = len(vocab)
    if args.negatives >= vocab_size:
        raise UsageError(
            f"--negatives ({args.negatives}) must be smaller than the vocabulary ({vocab_size} words)"
        )
    drawn_name, drawn = (("--shared-negatives", args.shared_negatives) if args.negative_sharing == "group"
                         else ("--negatives-per-centre", args.negatives_per_centre))
    if args.loss == "neg" and drawn >= vocab_size:
        raise UsageError(f"{drawn_name} ({drawn}) must be smaller than the vocabulary ({vocab_size} words)")
    if len(ids) < 10 * args.window:
        raise UsageError(
            f"the corpus has only {len(ids)} in-vocabulary tokens; need at least "
            f"10 * --window = {10 * args.window}"
        )
    keep_prob = w2v_data.subsample_keep_prob(counts, int(counts.sum()), args.subsample).astype(np.float32)
    keep_mean = float(np.mean(keep_prob[ids]))
    group = _centres_per_group(args)
    # Each device's rows must hold whole groups: rows are padded (masked) to a multiple of n_dev * group.
    batches = BatchMaker(len(ids), args.window, args.batch_size, keep_mean, args.seed, row_multiple=n_dev * group)
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
        f"~{total / steps_per_epoch:.2f} epochs, on {device if n_dev == 1 else f'{n_dev} devices: {devices}'}"
        + (f" ({n_proc} processes)" if n_proc > 1 else ""))

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
        params = _init_params(vocab_size, args.embedding_size, args.loss, args.seed)
        opt = _make_optimizer(args.optimizer, args.learning_rate, total)
        opt_state = opt.init(params)
        if latest is not None:
            params, opt_state = ckpt.restore(params, opt_state, latest)
            log(f"resumed from {latest} at step {int(params['global_step'].value)}")
        elif args.resume:
            log("no checkpoint to resume from: starting afresh")
        local = jax.local_devices(backend=device.platform)
        _processes_agree({"fingerprint": np.frombuffer(fingerprint, np.uint8), "local devices": n_dev // n_proc,
                          "first local device": local.index(device) if device in local else -1,
                          "start step": int(params["global_step"].value)})
        accept, alias = alias_table(counts.astype(np.float64) ** 0.75)
        data = {"corpus": batches.pad(ids), "keep": keep_prob, "accept": accept, "alias": alias}
        if mesh is None:
            params, opt_state = jax.device_put((params, opt_state), device)
            data = jax.device_put(data, device)
        else:  # data-parallel: everything replicated (no sharding rules); batches split inside the step
            # (shard_params and put also place global arrays when the mesh spans several processes)
            params = shard_params(params, mesh, [])
            opt_state = shard_opt_state(opt_state, params, mesh, [])
            data = jax.tree_util.tree_map(lambda x: put(x, NamedSharding(mesh, P())), data)

        trace_counter = [0]
        fn = _make_multi_step(opt, batches, args, vocab_size, counts, trace_counter, mesh)
        t_compile = time.perf_counter()
        compiled = fn.lower(params, opt_state, data).compile()
        TRACE_COUNTS.append(trace_counter[0])
        log(f"compiled the {k}-step function in {time.perf_counter() - t_compile:.1f}s "
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

        step = int(_host(params["global_step"].value))
        start_step = step
        end_step = total if args.stop_at_step is None else min(total, max(args.stop_at_step, step))
        progress = _Progress(total, step, not (args.no_progress or args.quiet or not chief))
        raw_per_token = n_raw / len(ids)
        epoch_now, pos_now = _host((params["epoch"].value, params["position"].value))
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
                losses, pairs, epoch_now, pos_now = _host(
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
                lr_now = args.learning_rate * max(1e-4, 1.0 - step / total)
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
                if _stop_everywhere(stop["requested"]):  # Ctrl-C in any process stops them all here
                    interrupted = True
                    break
                if args.eval_every and step // args.eval_every != first // args.eval_every and step < total and chief:
                    progress.write(_neighbour_lines(_host(params["emb_in"].value), vocab))
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

        emb, epoch_now, pos_now = _host((params["emb_in"].value, params["epoch"].value, params["position"].value))
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
        "traces": trace_counter[0],
    }
    _atomic_json(os.path.join(args.output_dir, "metrics.json"), metrics)
    rate = f"{words_per_sec:,.0f} words/sec" if words_per_sec else "no training this run"
    log(f"done: {step} steps, {epochs_done:.2f} epochs, final loss {final_loss}, {rate}; "
        f"outputs in {os.path.abspath(args.output_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
