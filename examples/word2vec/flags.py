"""The trainer's flags: the command line, checked, with the defaults that depend on other flags filled in.

:func:`parse_flags` returns the run's configuration (an ``argparse.Namespace``; ``metrics.json`` records it
under ``"config"``); a bad value or combination raises :class:`~examples.word2vec.cli.UsageError`, which the
trainer reports as one ``error: ...`` line with exit status 2. :func:`check_against_vocabulary` checks what
can only be checked once the corpus is read.

>>> args = parse_flags(["--loss", "neg", "--negatives", "3"])
>>> args.negatives, args.negative_sharing, args.shared_negatives, args.pairs_per_group, args.learning_rate
(3, 'group', 64, 256, 0.025)
>>> parse_flags(["--negative-sharing", "centre", "--negatives", "3"]).negatives_per_centre
6
"""

from __future__ import annotations

import argparse
import math
import warnings
from collections.abc import Callable, Sequence

from examples.word2vec.cli import ArgumentParser, UsageError
from examples.word2vec.optimizer import DEFAULT_LEARNING_RATE, OPTIMIZERS

__all__ = ["DEFAULT_STEPS_PER_CALL", "build_parser", "check_against_vocabulary", "parse_flags",
           "settle_steps_per_call"]

#: ``--steps-per-call`` unless given (with ``--replica-sync call``: chosen per run, ``plan.replica_steps_per_call``).
DEFAULT_STEPS_PER_CALL = 128


def parse_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The checked flags of ``argv`` (default ``sys.argv[1:]``), defaults filled in: ``--negatives`` (5 for neg,
    as word2vec's ``-negative``; 64 for nce), ``--shared-negatives`` (64) and ``--pairs-per-group`` (256) for
    ``--negative-sharing group``, ``--negatives-per-centre`` (2 * ``--negatives``) for ``centre``, and
    ``--learning-rate`` (per ``--optimizer``). A flag of the other scheme or loss is an error."""
    args = build_parser().parse_args(argv)
    _validate(args)
    if args.negatives is None:
        args.negatives = 5 if args.loss == "neg" else 64
    centre = args.loss == "neg" and args.negative_sharing == "centre"
    grouped = args.loss == "neg" and args.negative_sharing == "group"
    if args.negatives_per_centre is None:
        args.negatives_per_centre = 2 * args.negatives if centre else None
    elif not centre:
        raise UsageError("--negatives-per-centre applies to --loss neg with --negative-sharing centre only")
    for name, default in (("shared_negatives", 64), ("pairs_per_group", 256)):
        if getattr(args, name) is None:
            setattr(args, name, default if grouped else None)
        elif not grouped:
            raise UsageError(f"--{name.replace('_', '-')} applies to --loss neg with --negative-sharing group only")
    if args.max_logit is not None:
        if args.loss != "neg":
            raise UsageError("--max-logit applies to --loss neg only")
        if not (math.isfinite(args.max_logit) and args.max_logit > 0):
            raise UsageError(f"--max-logit must be a positive number, got {args.max_logit}")
    grouped_sgd = grouped and args.optimizer == "sgd"  # where --step-cap and --sequential-correction apply
    if args.step_cap is None:  # on wherever it applies; the plan line says which
        args.step_cap = grouped_sgd
    elif args.step_cap and not grouped_sgd:
        raise UsageError("--step-cap applies to --loss neg --negative-sharing group with --optimizer sgd only")
    if args.sequential_correction and not grouped_sgd:
        raise UsageError("--sequential-correction applies to --loss neg --negative-sharing group with --optimizer "
                         "sgd only (it corrects plain SGD's batched step)")
    if args.replica_sync == "call":
        if (args.devices or 1) < 2:
            raise UsageError("--replica-sync call needs --devices 2 or more (each device trains its own batches "
                             "between synchronisations)")
        if args.num_processes is not None or args.distributed_auto:
            raise UsageError("--replica-sync call runs in one process (its devices: --devices); with several "
                             "processes use --replica-sync step")
        if args.steps_per_call is not None:
            _calls_on_the_sync_grid(args)
    elif args.steps_per_call is None:
        args.steps_per_call = DEFAULT_STEPS_PER_CALL
    if args.learning_rate is None:
        args.learning_rate = DEFAULT_LEARNING_RATE[args.optimizer]
    return args


def settle_steps_per_call(args: argparse.Namespace, steps_per_call: int) -> None:
    """``--replica-sync call`` without ``--steps-per-call``: the K the trainer chose once the corpus is read
    (``plan.replica_steps_per_call``), with the checks and roundings a given K gets at parse time."""
    args.steps_per_call = steps_per_call
    _calls_on_the_sync_grid(args, " chosen for this run")


def _calls_on_the_sync_grid(args: argparse.Namespace, chosen: str = "") -> None:
    """--replica-sync call: the devices synchronise at the end of every call, so a call cut short (a checkpoint, an
    evaluation, a stop) would change the result. Checkpoints and evaluations are moved to multiples of
    ``--steps-per-call`` (said in a warning); ``--stop-at-step`` off that grid is an error."""
    k = args.steps_per_call
    for name in ("checkpoint_every", "eval_every"):
        every = getattr(args, name)
        if every and every % k:
            rounded = -(-every // k) * k
            warnings.warn(f"--{name.replace('_', '-')} {every} rounded up to {rounded}: with --replica-sync call the "
                          f"devices synchronise once per call of --steps-per-call {k} steps{chosen}", stacklevel=2)
            setattr(args, name, rounded)
    if args.stop_at_step is not None and args.stop_at_step % k:
        raise UsageError(f"--stop-at-step ({args.stop_at_step}) must be a multiple of --steps-per-call ({k}{chosen}) "
                         "with --replica-sync call (the devices synchronise once per call)")


def check_against_vocabulary(args: argparse.Namespace, vocab_size: int, n_tokens: int) -> None:
    """The flags that must fit the corpus: negatives below the vocabulary, at least ``10 * --window`` tokens."""
    if args.negatives >= vocab_size:
        raise UsageError(
            f"--negatives ({args.negatives}) must be smaller than the vocabulary ({vocab_size} words)"
        )
    for name in ("negatives_per_centre", "shared_negatives"):
        drawn = getattr(args, name)
        if drawn is not None and drawn >= vocab_size:
            raise UsageError(f"--{name.replace('_', '-')} ({drawn}) must be smaller than the vocabulary "
                             f"({vocab_size} words)")
    if n_tokens < 10 * args.window:
        raise UsageError(
            f"the corpus has only {n_tokens} in-vocabulary tokens; need at least "
            f"10 * --window = {10 * args.window}"
        )


def build_parser() -> argparse.ArgumentParser:
    """The trainer's command line (``--help`` lists every flag)."""
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
    g.add_argument("--max-corpus-memory", type=int, default=1024, metavar="MIB",
                   help="keep the corpus's token ids in memory and whole on the device up to this many MiB (4 bytes "
                        "per in-vocabulary token; default 1024); a larger corpus is streamed: its ids are written "
                        "once to an unlinked temporary file in --output-dir (4 bytes per token of disk) and the "
                        "device holds two chunks of MIB/16 Mi tokens (MIB/4 MiB each)")
    g.add_argument("--corpus-chunk-tokens", type=int, default=None, metavar="N",
                   help="stream the corpus in chunks of N tokens, whatever its size (default: streamed only "
                        "beyond --max-corpus-memory, in chunks of MIB/16 Mi tokens)")
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
    g.add_argument("--step-cap", action=argparse.BooleanOptionalAction, default=None,
                   help="--negative-sharing group with --optimizer sgd (on by default there): shorten the SGD step of "
                        "any table row whose curvature in the step (summed over its occurrences) puts it past the "
                        "edge of stability (lr * h > 2): a row summed over many pairs at once, which word2vec's "
                        "pair-by-pair SGD would move one pair at a time; rows within it keep word2vec's gradient. "
                        "At 300-d / window 10 it raised analogy accuracy from 0.7-1.0x gensim's to 1.5-1.7x on two "
                        "corpora of three (benchmarks/README.md). Costs ~20%% more time per step")
    g.add_argument("--sequential-correction", action=argparse.BooleanOptionalAction, default=False,
                   help="--negative-sharing group with --optimizer sgd: take each row's gradient against the other "
                        "table's rows moved by half of the rest of the step, as word2vec's pair-by-pair SGD sees them "
                        "(to first order in the rate). Without --step-cap it raised WordSim353 from 0.87x to 0.94x "
                        "gensim's on a 10M-word corpus (the step cap alone: 0.97x); with it, SimLex-999 collapsed at "
                        "300-d (benchmarks/README.md). Costs one more pass of the step's products (~0.65x the words/s)")
    g.add_argument("--max-logit", type=float, default=None, metavar="X",
                   help="--loss neg: a term whose logit is beyond +-X gets no gradient (its loss still counts), as "
                        "gensim's MAX_EXP rule does with X = 6 (default: every term's exact gradient, as word2vec's "
                        "C code)")
    g.add_argument("--negatives-per-centre", type=int, default=None,
                   help="--negative-sharing centre: negatives drawn per centre word and shared by its pairs, each "
                        "pair's --negatives terms estimated from them (default 2 * --negatives)")
    g.add_argument("--batch-size", type=int, default=1024,
                   help="skip-gram pairs per step, on average (centres per step: batch / (window + 1))")
    g.add_argument("--epochs", type=float, default=5.0,
                   help="passes over the corpus; the run takes exactly the steps that cover them (default 5)")
    g.add_argument("--steps", type=int, default=None, help="total steps, exactly (overrides --epochs)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd")
    g.add_argument("--learning-rate", type=float, default=None,
                   help="initial rate, decayed linearly to lr*1e-4 (default: sgd 0.025, adagrad 0.25, "
                        "lazyadam 0.002)")
    g.add_argument("--steps-per-call", type=int, default=None,
                   help=f"steps per jitted call (lax.scan; default {DEFAULT_STEPS_PER_CALL}; with --replica-sync call "
                        "chosen for the vocabulary, about 16 pairs per word per device and call, said on the plan "
                        "line); calls that end a run or land on a --checkpoint-every or --eval-every step are "
                        "shorter, in a second compiled program")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--device", default=None,
                   help="cpu, gpu, tpu, or a device such as gpu:1 or /device:GPU:1 (default: JAX's)")
    g.add_argument("--devices", type=int, default=None,
                   help="data-parallel over this many devices of --device's platform (default 1); on CPU "
                        "the trainer creates that many virtual CPU devices itself (one thread each); with "
                        "several processes, devices PER PROCESS (the mesh spans every process's devices)")
    g.add_argument("--replica-sync", choices=("step", "call"), default="step",
                   help="with --devices N: 'step' (default) shares the devices' gradients every step (the result "
                        "of one device); 'call': a call of --steps-per-call K steps covers N K of the one-device "
                        "run's batches, each device training K consecutive ones with no exchange, and sums the "
                        "devices' updates at its end (faster on a CPU's cores; not one device's result)")
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
    g.add_argument("--initialization-timeout", type=int, metavar="SECONDS", default=300,
                   help="how long each process waits for all the others to join before giving up with an error "
                        "(default 300, JAX's); a 'waiting for process i' line on stderr says who is awaited")
    g = p.add_argument_group("output, checkpoints, reporting")
    g.add_argument("--output-dir", default="word2vec_out")
    g.add_argument("--checkpoint-every", type=int, default=10000, help="steps between checkpoints (0: only "
                   "at the end and on Ctrl-C)")
    g.add_argument("--keep-checkpoints", type=int, default=3)
    g.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --output-dir")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh even if --output-dir holds checkpoints: the files an earlier run of the "
                        "trainer wrote there are deleted (checkpoints, vectors, projector files, metrics.json, "
                        "TensorBoard events); any other file stays")
    g.add_argument("--stop-at-step", type=int, default=None,
                   help="stop (with a checkpoint) at exactly this global step without changing the schedule")
    g.add_argument("--eval-every", type=int, default=0, help="print nearest neighbours every N steps")
    g.add_argument("--no-eval", action="store_true", help="skip the WordSim/SimLex/analogy evaluation")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-tensorboard", action="store_true")
    g.add_argument("--quiet", action="store_true", help="only errors, warnings and the final summary line")
    return p


def _check_number(flag: str, value: float, rule: str, ok: Callable[[float], bool]) -> None:
    """A float flag must be finite (``inf`` and ``nan`` are said to be so) and follow ``rule``."""
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, got {value}")
    if not ok(value):
        raise UsageError(f"{flag} must be {rule}, got {value}")


def _validate(args: argparse.Namespace) -> None:
    """Each flag on its own, and the combinations that cannot work."""
    positive = ("min_count", "embedding_size", "window", "batch_size", "keep_checkpoints", "max_corpus_memory")
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("steps", "steps_per_call", "negatives", "negatives_per_centre", "shared_negatives",
                 "pairs_per_group", "devices", "corpus_chunk_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.max_vocab is not None and args.max_vocab < 2:
        raise UsageError(f"--max-vocab must be at least 2 (a vocabulary needs two words), got {args.max_vocab}")
    for name in ("checkpoint_every", "eval_every"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.initialization_timeout < 1:
        raise UsageError(f"--initialization-timeout must be at least 1 second, got {args.initialization_timeout}")
    _check_number("--epochs", args.epochs, "positive", lambda x: x > 0)
    _check_number("--subsample", args.subsample, ">= 0", lambda x: x >= 0)
    if args.learning_rate is not None:
        _check_number("--learning-rate", args.learning_rate, "positive", lambda x: x > 0)
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
