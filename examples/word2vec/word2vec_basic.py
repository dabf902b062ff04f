"""TensorFlow's ``word2vec_basic.py`` (late 1.x tutorial), step for step, on jaxgraph.

Run from the repository root::

    python -m examples.word2vec.word2vec_basic --output-dir runs/word2vec_basic

The five steps of TF's script, with the same printouts:

1. **Data.** By default the offline corpus embedded with the package's test dependencies
   (``data.default_corpus()``: a Wikipedia excerpt plus the Lee news corpus, about 547,000 words).
   ``--corpus PATH`` reads any text file (plain, ``.gz``, ``.bz2``, ``.zip``, text8 included);
   ``--download-text8`` fetches and verifies TF's ``text8.zip`` into ``--data-dir``.
2. **Vocabulary.** TF's ``build_dataset``: UNK is id 0, then the most common words. Prints
   ``Most common words (+UNK)`` and ``Sample data``.
3. **Batches.** TF's ``generate_batch`` (Python, with its global ``data_index`` and Python's ``random``,
   seeded from ``--seed``; training takes its batches from ``basic_batches.generate_batches``, the same
   batches made with numpy); the demo call ``generate_batch(8, 2, 1)`` prints ``id word -> id word``
   lines before training and advances ``data_index`` to 4, as in TF.
4. **Model.** ``embeddings/Variable`` ~ U(-1, 1), ``weights/Variable`` ~ truncated normal with stddev
   ``1/sqrt(embedding_size)``, ``biases/Variable`` = 0; ``loss = mean(nce_loss(...))`` with the default
   unique log-uniform sampler, ``summary.scalar("loss", loss)``, and
   ``GradientDescentOptimizer(1.0).minimize(loss, global_step=...)`` over all trainable variables. The
   gradients of the three tables are sparse (``IndexedSlices``) and are applied as scatters.
5. **Training.** ``Average loss at step  2000 :  ...`` every ``--log-every`` steps (step 0 prints the
   first batch's loss), ``Nearest to the: ...`` for 16 validation words every ``--eval-every`` steps and
   at the end. Then ``metadata.tsv``, ``vectors.tsv`` and ``projector_config.pbtxt`` for TensorBoard's
   projector, a checkpoint ``model.ckpt.npz`` (jaxgraph's ``Saver``), TensorBoard event files with the
   loss of every step, a t-SNE plot ``tsne.png`` of the ``--plot-only`` most frequent words (at most
   5,000; it prints its progress and the time left every 10 seconds), and ``metrics.json``, all in
   ``--output-dir``.

Performance: a run compiles three programs: the initialisation (tables, optimizer state, sampler key), the
training steps and the evaluation (normalised embeddings and nearest words). Each call to the training
program runs up to ``--steps-per-call`` steps in a ``fori_loop`` whose trip count is an argument, so calls of
any length (step 0 alone, then full calls, a shorter last one) share one program; it is traced at once and
compiled in a background thread while the tables are initialised, and parameters and optimizer state are
donated (the tables are updated in place). The step's PRNG key is derived inside the compiled step from the
global step; a call draws all its steps' negatives (nce_loss's default sampler, with those keys) in one
vectorised draw before its loop. JAX's CPU client is started with one intra-op thread (see
:func:`start_jax_backend`), so XLA does not split the step's small gathers across the two cores. The
batches come from TF's Python generator (``basic_batches``: the same batches and ``random.sample`` draws,
replayed in bulk), which runs in a background thread while earlier steps compute. Up to two calls wait on
the device while the host reads earlier calls' losses and writes them to TensorBoard, every step's value,
all of a call's steps in one write (``jaxgraph.summary.FileWriter``).
``benchmarks/tutorial_vs_tf1.py`` measures the program against TF's own under ``tf.compat.v1``.

Defaults: TF's, except two that depend on the corpus (``--help`` says the same):

* ``--steps``: TF's 100001 with ``--corpus`` or ``--download-text8``; **50001** on the default corpus
  (about 6 passes over its centre words), so that the README's quick start (``nox -s word2vec``)
  finishes within about 4 minutes, t-SNE included, on a 2-core CPU even when other jobs share it. The
  whole default run took 49 s on this 2-core machine with other jobs keeping its load average at 12
  (22 s of training, 6 s of setup and compilation, 13 s of t-SNE and plot).

* ``--vocabulary-size``: TF's 50000 with ``--corpus``/text8; **10000** on the default corpus, which
  has only about 38,000 distinct words, 23,000 of them seen once or twice. 10000 keeps the words that
  occur at least 5 times (text8's 50000 cut off at 9 occurrences); with 50000 the vocabulary would
  shrink to every distinct word and the nearest-neighbour lists fill with barely trained rare words.

Differences from TF's script, all deliberate: every random stream is seeded from ``--seed`` (TF's
were not); t-SNE uses Barnes-Hut unless ``--exact-tsne`` (TF: ``method='exact'``, minutes for 500
points) and writes ``tsne.png`` to ``--output-dir`` (TF: the temp directory); the projector config also
names ``vectors.tsv``, since TensorBoard cannot read jaxgraph's ``.npz`` checkpoint; a nearest-neighbour
list drops the query word itself rather than assuming it ranks first; ``--num-sampled`` must be
smaller than the vocabulary (a unique sampler cannot draw more distinct classes than exist), and
``--valid-size`` must not exceed ``--valid-window``, nor that the vocabulary size (TF would have failed
later); when the corpus's vocabulary comes out smaller than ``--valid-window`` or ``--plot-only``, a
``warning:`` line says what they were cut to.

Bad input and faults (a missing, empty or binary corpus, a failed download, impossible flag combinations,
an output directory that cannot be written, checked before the corpus is read, a full disk, running out of
memory (a configuration that cannot fit is refused before anything is allocated: :func:`memory_needed`), a
diverged loss) print one ``error: ...`` line to stderr and exit with status 2; a diverged run writes
no outputs (nothing with NaN in it). Ctrl-C or SIGTERM stops training after the current compiled call, writes
the checkpoint ``model.ckpt.npz`` and the projector files of the step reached, and exits with status 130 or 143
(no t-SNE, no ``metrics.json``); a second one stops at once.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import math
import os
import queue
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from examples.word2vec import cli, export
from examples.word2vec.cli import ArgumentParser, UsageError, exit_status, prepare_output_dir, report_warnings

__all__ = [
    "DEFAULT_CORPUS_STEPS", "DEFAULT_CORPUS_VOCABULARY_SIZE", "TF_NUM_STEPS", "TF_VOCABULARY_SIZE", "TSNE_MAX_POINTS",
    "BatchPrefetcher", "Chunk", "LossReport", "NearestWords", "TsneProgress", "build_model", "build_parser",
    "MEMORY_REMEDIES", "chunk_plan", "compile_train_program", "main", "make_evaluate_fn", "make_init_fn",
    "make_train_fn", "memory_needed", "parse_args", "plot_with_labels", "prepare_output_dir", "run",
    "start_jax_backend", "tsne_plot", "validation_window",
]

TF_NUM_STEPS = 100001
TF_VOCABULARY_SIZE = 50000
DEFAULT_CORPUS_STEPS = 50001
DEFAULT_CORPUS_VOCABULARY_SIZE = 10000
TSNE_MISSING = "Please install sklearn, matplotlib, and scipy to show embeddings."
MEMORY_HINT = "lower --batch-size, --embedding-size or --vocabulary-size"
#: What to change when a configuration cannot fit in memory, by its largest part (:func:`memory_needed`).
MEMORY_REMEDIES = {"tables": "lower --embedding-size or --vocabulary-size",
                   "evaluation": "lower --embedding-size or --vocabulary-size",
                   "batches": "lower --batch-size or --steps-per-call",
                   "step buffers": "lower --batch-size, --embedding-size or --num-sampled"}
#: Calls' batches alive at once: the prefetcher's queue (4), the one being made, and the calls queued on the device.
_BATCHES_ALIVE = 8
TSNE_MAX_POINTS = 5000
EMBEDDINGS_TENSOR_NAME = "embeddings/Variable"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m examples.word2vec.word2vec_basic",
        description="TensorFlow's word2vec_basic.py (skip-gram, NCE loss, SGD) on jaxgraph.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", metavar="PATH", help="a text corpus (plain, .gz, .bz2, .zip; text8 works). "
                     "Default: the offline corpus from gensim's test data")
    src.add_argument("--download-text8", action="store_true",
                     help="download TF's text8.zip (31 MB, checked by size and sha256) into --data-dir")
    p.add_argument("--data-dir", default=tempfile.gettempdir(), help="where --download-text8 puts text8.zip")
    p.add_argument("--output-dir", default=os.path.join("runs", "word2vec_basic"),
                   help="TensorBoard logs, projector files, checkpoint, tsne.png, metrics.json")
    p.add_argument("--vocabulary-size", type=int, default=None,
                   help=f"words kept, UNK included (default: {TF_VOCABULARY_SIZE} with --corpus/text8, "
                   f"{DEFAULT_CORPUS_VOCABULARY_SIZE} on the default corpus)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default: TF's {TF_NUM_STEPS} with --corpus/text8, "
                   f"{DEFAULT_CORPUS_STEPS} on the default corpus, to keep the quick start within minutes)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--skip-window", type=int, default=1, help="context words on each side")
    p.add_argument("--num-skips", type=int, default=2, help="times each centre word is used per batch")
    p.add_argument("--num-sampled", type=int, default=64, help="negative samples per batch")
    p.add_argument("--valid-size", type=int, default=16, help="words whose nearest neighbours are printed")
    p.add_argument("--valid-window", type=int, default=100, help="validation words come from this many "
                   "most frequent ids")
    p.add_argument("--learning-rate", type=float, default=1.0)
    p.add_argument("--steps-per-call", type=int, default=100,
                   help="training steps per compiled call (lax.scan)")
    p.add_argument("--log-every", type=int, default=2000, help="print the average loss every N steps")
    p.add_argument("--eval-every", type=int, default=10000, help="print nearest words every N steps")
    p.add_argument("--plot-only", type=int, default=500,
                   help=f"t-SNE plot of this many most frequent words, at most {TSNE_MAX_POINTS} (0: no plot)")
    p.add_argument("--tsne-iter", type=int, default=5000, help="t-SNE iterations (TF: 5000)")
    p.add_argument("--exact-tsne", action="store_true",
                   help="TF's method='exact' t-SNE (slow); default: Barnes-Hut")
    p.add_argument("--device", default=None, metavar="SPEC",
                   help="a TF device string for the tables and the steps, e.g. /cpu:0 (TF's tutorial pinned "
                   "them there) or /gpu:0. Default: JAX's default device")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initialisation, the sampler, Python's random (batches) and the "
                   "validation words (TF left them unseeded)")
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    positive = ["batch_size", "embedding_size", "skip_window", "num_skips", "num_sampled", "steps_per_call",
                "log_every", "eval_every"]
    for name in positive:
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.plot_only > TSNE_MAX_POINTS:
        raise UsageError(f"--plot-only {args.plot_only} is more than {TSNE_MAX_POINTS}: a t-SNE of that many words "
                         "takes tens of minutes and their labels do not fit TF's 18-inch plot (drawing them takes "
                         f"about 5 ms each); use at most {TSNE_MAX_POINTS}, or 0 for no plot")
    if args.tsne_iter < 250:
        raise UsageError(f"--tsne-iter must be at least 250 (scikit-learn's minimum), got {args.tsne_iter}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.vocabulary_size is not None and args.vocabulary_size < 2:
        raise UsageError(
            f"--vocabulary-size must be at least 2 (UNK and one word), got {args.vocabulary_size}"
        )
    for name in ("valid_size", "valid_window", "plot_only"):
        if getattr(args, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must not be negative, got {getattr(args, name)}")
    if args.valid_size > args.valid_window:
        raise UsageError(f"--valid-size ({args.valid_size}) must not exceed --valid-window ({args.valid_window}): the "
                         "validation words are distinct words drawn from the --valid-window most frequent")
    if not math.isfinite(args.learning_rate):
        raise UsageError(f"--learning-rate must be a finite number, got {args.learning_rate}")
    if not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}")
    if args.num_skips > 2 * args.skip_window:
        raise UsageError(f"--num-skips ({args.num_skips}) must not exceed 2 * --skip-window "
                         f"({2 * args.skip_window}): each centre word has only that many context words")
    if args.batch_size % args.num_skips:
        raise UsageError(
            f"--batch-size ({args.batch_size}) must be a multiple of --num-skips ({args.num_skips})"
        )
    default_corpus = args.corpus is None and not args.download_text8
    if args.steps is None:
        args.steps = DEFAULT_CORPUS_STEPS if default_corpus else TF_NUM_STEPS
    if args.vocabulary_size is None:
        args.vocabulary_size = DEFAULT_CORPUS_VOCABULARY_SIZE if default_corpus else TF_VOCABULARY_SIZE
    if args.valid_window > args.vocabulary_size:
        raise UsageError(f"--valid-window ({args.valid_window}) must not exceed --vocabulary-size "
                         f"({args.vocabulary_size}): the validation words are among the most frequent ids")
    return args


# --------------------------------------------------------------------------------------------------
# Step 4: the model


def build_model(vocabulary_size: int, embedding_size: int, key) -> dict[str, Any]:
    """The three tables under TF's name scopes, plus the global step."""
    import jax
    import jax.numpy as jnp

    import jaxgraph as jg

    k_emb, k_nce = jax.random.split(key)
    with jg.name_scope("embeddings"):
        embeddings = jg.Variable(
            jax.random.uniform(k_emb, (vocabulary_size, embedding_size), jnp.float32, -1.0, 1.0)
        )
    with jg.name_scope("weights"):
        nce_weights = jg.Variable(
            jax.random.truncated_normal(k_nce, -2.0, 2.0, (vocabulary_size, embedding_size), jnp.float32)
            * (1.0 / math.sqrt(embedding_size))
        )
    with jg.name_scope("biases"):
        nce_biases = jg.Variable(jnp.zeros((vocabulary_size,), jnp.float32))
    return {
        "embeddings": embeddings,
        "nce_weights": nce_weights,
        "nce_biases": nce_biases,
        "global_step": jg.create_global_step(),
    }


def make_init_fn(optimizer, vocabulary_size: int, embedding_size: int, seed: int):
    """A jitted ``() -> (params, opt_state, sample_key)``: the tables, the optimizer's state and the sampler's
    key in one compiled program (made op by op they were nine programs to compile)."""
    import jax

    def init():
        init_key, sample_key = jax.random.split(jax.random.PRNGKey(seed))
        params = build_model(vocabulary_size, embedding_size, init_key)
        return params, optimizer.init(params), sample_key

    return jax.jit(init)


def make_train_fn(optimizer, num_sampled: int, vocabulary_size: int):
    """A jitted ``(params, opt_state, base_key, inputs[K, B], labels[K, B, 1], num_steps) -> (params, opt_state,
    losses[K], summaries)`` running the first ``num_steps`` (at most K) training steps; params and state are
    donated.

    The steps run in a ``fori_loop`` whose trip count is an argument, so one compiled program serves calls of
    every length (step 0 alone, K steps, the run's shorter last call). Rows of ``losses`` and of the stacked
    summaries from ``num_steps`` on are zeros.
    """
    import jax
    import jax.numpy as jnp

    import jaxgraph as jg

    def loss_fn(params, train_inputs, train_labels, sampled_values):
        embed = jg.nn.embedding_lookup(params["embeddings"], train_inputs)
        loss = jnp.mean(
            jg.nn.nce_loss(
                weights=params["nce_weights"],
                biases=params["nce_biases"],
                labels=train_labels,
                inputs=embed,
                num_sampled=num_sampled,
                num_classes=vocabulary_size,
                sampled_values=sampled_values,
            )
        )
        jg.summary.scalar("loss", loss)
        return loss

    def sample(base_key, first_step, labels):
        """Every step's negatives at once: nce_loss's default sampler (unique log-uniform), with step
        ``first_step + i``'s key folded from the global step as before. They do not depend on the tables,
        and one vectorised draw for K steps costs a fraction of K draws inside the loop."""
        steps = first_step + jnp.arange(labels.shape[0], dtype=first_step.dtype)
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base_key, steps)
        return jax.vmap(
            lambda true, key: jg.nn.log_uniform_candidate_sampler(true, 1, num_sampled, True, vocabulary_size, key)
        )(labels, keys)

    def one_step(params, opt_state, train_inputs, train_labels, sampled_values):
        with jg.summary.record_summaries() as summaries:
            params, opt_state, loss = optimizer.minimize(
                lambda p: loss_fn(p, train_inputs, train_labels, sampled_values),
                params,
                opt_state,
                global_step=params["global_step"],
            )
        return params, opt_state, loss, dict(summaries)

    def train_steps(params, opt_state, base_key, inputs, labels, num_steps):
        k = inputs.shape[0]
        negatives = sample(base_key, params["global_step"].value, labels)
        step_values = jax.tree_util.tree_map(lambda a: a[0], negatives)
        _, _, loss_shape, summary_shapes = jax.eval_shape(
            one_step, params, opt_state, inputs[0], labels[0], step_values)
        stacked = jax.tree_util.tree_map(lambda s: jnp.zeros((k, *s.shape), s.dtype), (loss_shape, summary_shapes))

        def body(i, carry):
            params, opt_state, (losses, summaries) = carry
            step_values = jax.tree_util.tree_map(lambda a: a[i], negatives)
            params, opt_state, loss, step_summaries = one_step(params, opt_state, inputs[i], labels[i], step_values)
            stacked = jax.tree_util.tree_map(lambda acc, v: acc.at[i].set(v), (losses, summaries),
                                             (loss, step_summaries))
            return params, opt_state, stacked

        params, opt_state, (losses, summaries) = jax.lax.fori_loop(
            0, jnp.minimum(num_steps, k), body, (params, opt_state, stacked)
        )
        return params, opt_state, losses, summaries

    return jax.jit(train_steps, donate_argnums=(0, 1))


def make_evaluate_fn(valid_ids: Sequence[int], top_k: int):
    """A jitted ``embeddings -> (normalized_embeddings, nearest[valid, top_k])``: TF's ``normalized_embeddings``
    and, for each validation word, the ids of its ``top_k`` most similar words (the word itself excluded),
    most similar first."""
    import jax
    import jax.numpy as jnp

    ids = np.asarray(valid_ids, np.int32)

    def evaluate(embeddings):
        normalized = _normalize(embeddings)
        if len(ids) == 0 or top_k < 1:
            return normalized, jnp.zeros((len(ids), 0), jnp.int32)
        similarity = normalized[ids] @ normalized.T
        similarity = similarity.at[np.arange(len(ids)), ids].set(-jnp.inf)
        return normalized, jax.lax.top_k(similarity, top_k)[1]

    return jax.jit(evaluate)


def _normalize(embeddings):
    import jax.numpy as jnp

    norm = jnp.sqrt(jnp.sum(jnp.square(embeddings), 1, keepdims=True))
    return embeddings / norm


# --------------------------------------------------------------------------------------------------
# Step 5: training schedule and batches


class Chunk(NamedTuple):
    start: int  # first step of the chunk
    length: int  # steps in it (one compiled call)
    evaluate: bool  # print nearest words after its last step


def chunk_plan(num_steps: int, steps_per_call: int, eval_every: int) -> list[Chunk]:
    """Cut ``0 .. num_steps-1`` into compiled calls of at most ``steps_per_call`` steps, each evaluation step
    (``step % eval_every == 0``, and the last step) ending a call, so nearest words are printed after exactly
    that step's update, as in TF. One program runs calls of any length (see :func:`make_train_fn`): TF's
    ``step % 10000 == 0`` with 100 steps per call gives step 0 alone, then calls of 100.

    >>> [(c.start, c.length, c.evaluate) for c in chunk_plan(6, 2, 3)]
    [(0, 1, True), (1, 2, False), (3, 1, True), (4, 2, True)]
    >>> [(c.start, c.length, c.evaluate) for c in chunk_plan(8, 4, 5)]
    [(0, 1, True), (1, 4, False), (5, 1, True), (6, 2, True)]
    """
    ends = sorted(set(range(0, num_steps, eval_every)) | {num_steps - 1})
    plan, start = [], 0
    for end in ends:
        while start <= end:
            length = min(steps_per_call, end - start + 1)
            plan.append(Chunk(start, length, start + length - 1 == end))
            start += length
    return plan


def _batch_producer(plan, data, args, state, out: queue.Queue, stop: threading.Event) -> None:
    from examples.word2vec.basic_batches import generate_batches

    rows = max(c.length for c in plan)  # every call's arrays have the compiled program's shape
    data_array = np.asarray(data, np.int32)
    try:
        for chunk in plan:
            # TF's generate_batch, chunk.length times (batch for batch the same; see basic_batches).
            inputs, labels = generate_batches(data, chunk.length, args.batch_size, args.num_skips,
                                              args.skip_window, state, data_array)
            if chunk.length < rows:
                inputs = np.concatenate([inputs, np.zeros((rows - chunk.length, *inputs.shape[1:]), np.int32)])
                labels = np.concatenate([labels, np.zeros((rows - chunk.length, *labels.shape[1:]), np.int32)])
            while not stop.is_set():
                try:
                    out.put((inputs, labels), timeout=0.1)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return
    except BaseException as e:  # handed to the consumer, which re-raises it
        out.put(e)


class BatchPrefetcher:
    """The plan's stacked batches from TF's generator, made in a background thread a few calls ahead.

    Every call gets ``[K, batch]`` arrays, K the plan's longest call (the compiled program's shape); rows
    past a call's length are zeros and never read. The thread starts at construction, so batches are being
    made while the steps compile. Iterate once.
    """

    def __init__(self, plan, data, args, state, depth: int = 4) -> None:
        self._plan = plan
        self._out: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_batch_producer, args=(plan, data, args, state, self._out, self._stop), daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            for _ in self._plan:
                item = self._out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------
# Output


def plot_with_labels(low_dim_embs, labels, filename: str) -> None:
    """TF's ``plot_with_labels``: an 18x18 inch scatter with each point annotated.

    TF called ``plt.scatter`` once per point (each point the next colour of the cycle); one call with those
    colours draws the same picture without a collection per point. Drawing the labels (in ``savefig``) is
    what takes the time: about 5 ms a label on a 2-core CPU.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert low_dim_embs.shape[0] >= len(labels), "More labels than embeddings"
    fig = plt.figure(figsize=(18, 18))  # in inches
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    points = np.asarray(low_dim_embs)[: len(labels)]
    plt.scatter(points[:, 0], points[:, 1], c=[cycle[i % len(cycle)] for i in range(len(labels))])
    for i, label in enumerate(labels):
        x, y = points[i, :]
        plt.annotate(label, xy=(x, y), xytext=(5, 2), textcoords="offset points", ha="right", va="bottom")
    plt.savefig(filename)
    plt.close(fig)


class TsneProgress(io.TextIOBase):
    """Stands in for ``sys.stdout`` while scikit-learn's t-SNE runs with ``verbose=2``: its report every 50
    iterations becomes, at most every ``every`` seconds, one line ``t-SNE: iteration 1500/5000 (KL divergence
    1.23), 42 s so far, about 1 min 38 s left`` on ``out`` (the time left extrapolated from the pace so far)."""

    _ITERATION = re.compile(r"Iteration (\d+): error = ([-+0-9.eE]+)")

    def __init__(self, total_iterations: int, out, every: float = 10.0, clock=time.perf_counter) -> None:
        super().__init__()
        self.total, self.out, self.every, self._clock = total_iterations, out, every, clock
        self.start = clock()
        self._last = self.start
        self._pending = ""
        self.lines = 0  # progress lines printed

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            self._report(line)
        return len(text)

    def _report(self, line: str) -> None:
        m = self._ITERATION.search(line)
        now = self._clock()
        if m is None or now - self._last < self.every:
            return
        self._last = now
        done, elapsed = int(m[1]), now - self.start
        left = elapsed / max(done, 1) * max(self.total - done, 0)
        print(f"t-SNE: iteration {done}/{self.total} (KL divergence {float(m[2]):.3g}), {_duration(elapsed)} so far, "
              f"about {_duration(left)} left", file=self.out, flush=True)
        self.lines += 1


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 2 min``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def tsne_plot(final_embeddings: np.ndarray, reverse_dictionary, args, filename: str,
              progress_every: float = 10.0) -> str | None:
    """t-SNE of the ``--plot-only`` most frequent words to ``filename``; None when skipped.

    Says what it does and how far it got: a line before the t-SNE, a progress line with the time left at most
    every ``progress_every`` seconds (scikit-learn's own report, condensed by :class:`TsneProgress`), and one
    before and after drawing. More words than the vocabulary has are cut to the vocabulary, with a warning.
    """
    plot_only = args.plot_only
    if plot_only > final_embeddings.shape[0]:
        plot_only = final_embeddings.shape[0]
        print(f"warning: --plot-only {args.plot_only} is more than the vocabulary's {plot_only} words: plotting "
              f"all {plot_only}", file=sys.stderr)
    if plot_only < 2:
        return None
    try:
        import matplotlib  # noqa: F401
        from sklearn.manifold import TSNE
    except ImportError as ex:
        print(TSNE_MISSING)
        print(ex)
        return None
    method = "exact" if args.exact_tsne else "barnes_hut"
    # sklearn >= 1.5 renamed n_iter to max_iter; perplexity must stay below the number of points.
    iter_arg = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(
        perplexity=min(30.0, plot_only - 1.0),
        n_components=2,
        init="pca",
        method=method,
        random_state=args.seed,
        verbose=2,  # its progress report, condensed by TsneProgress
        **{iter_arg: args.tsne_iter},
    )
    print(f"t-SNE of the {plot_only} most frequent words ({method}, {args.tsne_iter} iterations; progress every "
          f"{progress_every:g} s)", flush=True)
    progress = TsneProgress(args.tsne_iter, sys.stdout, every=progress_every)
    with contextlib.redirect_stdout(progress), _one_thread():
        low_dim_embs = tsne.fit_transform(final_embeddings[:plot_only].astype(np.float64))
    labels = [reverse_dictionary[i] for i in range(plot_only)]
    print(f"t-SNE done in {_duration(time.perf_counter() - progress.start)}; drawing {plot_only} labelled points "
          f"into {filename}", flush=True)
    plot_with_labels(low_dim_embs, labels, filename)
    return filename


def _one_thread():
    """One OpenMP thread for scikit-learn: on a busy 2-core machine more threads make Barnes-Hut ~7x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - sklearn depends on threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def _device_name(array) -> str:
    """``cpu:0``, or with the hardware's name where it says more: ``cuda:0 (NVIDIA H200)``."""
    d = next(iter(array.devices()))
    return str(d) if d.device_kind.lower() in (d.platform, "cpu") else f"{d} ({d.device_kind})"


def _device_scope(spec: str | None):
    """``jaxgraph.device(spec)`` (TF's ``tf.device``), or no scope; a bad spec is a usage error."""
    import contextlib

    if spec is None:
        return contextlib.nullcontext()
    from jaxgraph.device import device, parse_device_spec

    try:
        parse_device_spec(spec)
    except ValueError as e:
        raise UsageError(f"--device {spec!r}: {e}") from None
    return device(spec)


# --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    from examples.word2vec import data as w2v_data

    t_start = time.perf_counter()
    start_jax_backend()  # before anything else touches JAX
    placement = _device_scope(args.device)  # a bad --device fails before the corpus is read
    output_dir = prepare_output_dir(args.output_dir)

    # Step 1: the data.
    vocabulary, description = w2v_data.load_corpus(args.corpus, args.download_text8, args.data_dir)
    print("Corpus:", description)
    print("Data size", len(vocabulary))

    # Step 2: the dictionary; rare words become UNK.
    with report_warnings():  # the shrink warning, as one line
        dataset = w2v_data.build_dataset(vocabulary, args.vocabulary_size)
    del vocabulary  # Hint to reduce memory (TF's comment).
    data, count, _dictionary, reverse_dictionary = dataset
    vocabulary_size = dataset.vocabulary_size
    if args.num_sampled >= vocabulary_size:
        shrunk = " after shrinking" if vocabulary_size < args.vocabulary_size else ""
        raise UsageError(f"--num-sampled ({args.num_sampled}) must be smaller than the vocabulary size "
                         f"({vocabulary_size}{shrunk})")
    span = max(2 * args.skip_window + 1, 3)  # 3: the demo generate_batch(8, 2, 1)
    if len(data) < span:
        raise w2v_data.CorpusError(f"the corpus has {len(data)} words, fewer than the window span {span}")
    print("Most common words (+UNK)", count[:5])
    print("Sample data", data[:10].tolist(), [reverse_dictionary[i] for i in data[:10].tolist()])

    # Step 3: the batch generator. TF's data_index and Python random, in one state object.
    data_list = data.tolist()  # TF's generator indexes a Python list; faster than numpy scalars
    state = w2v_data.BatchState.seeded(args.seed)
    batch, labels = w2v_data.generate_batch(data_list, batch_size=8, num_skips=2, skip_window=1, state=state)
    for i in range(8):
        b, lab = int(batch[i]), int(labels[i, 0])
        print(b, reverse_dictionary[b], "->", lab, reverse_dictionary[lab])

    # Steps 4 and 5, under --device's scope when given (TF pinned the tables to /cpu:0).
    with placement:
        return _train_and_export(args, output_dir, dataset, data_list, state, description, t_start)


def memory_needed(args: argparse.Namespace, vocabulary_size: int):
    """The memory a run needs, at least (a :class:`~examples.word2vec.resources.Needs`, in bytes by part): the
    three tables, the evaluation's normalised copy of the embeddings and its similarities, the calls' stacked
    batches alive at once, and one step's gathered rows, sampled rows and their gradients. XLA adds scratch space.

    >>> from types import SimpleNamespace
    >>> args = SimpleNamespace(embedding_size=128, batch_size=128, steps_per_call=100, num_sampled=64, valid_size=16)
    >>> memory_needed(args, 10_000).parts["tables"]
    10280000
    """
    from examples.word2vec import resources  # imports jax: not before the flags are checked

    f32 = 4
    v, d, b = vocabulary_size, args.embedding_size, args.batch_size
    return resources.Needs({
        "tables": (2 * v * d + v) * f32,
        "evaluation": (v * d + args.valid_size * v) * f32,
        "batches": _BATCHES_ALIVE * 2 * args.steps_per_call * b * f32,
        "step buffers": 2 * (2 * b * d + args.num_sampled * d + b * (args.num_sampled + 1)) * f32,
    })


def _check_memory(args: argparse.Namespace, vocabulary_size: int) -> None:
    """Refuse, before anything is allocated, a configuration that cannot fit the device the tables go to."""
    import jax

    from examples.word2vec import resources
    from jaxgraph.device import current_device

    device = current_device() or jax.devices()[0]
    resources.check_memory(memory_needed(args, vocabulary_size), device, MEMORY_REMEDIES)


def _train_and_export(args, output_dir, dataset, data_list, state, description, t_start) -> dict[str, Any]:
    import jaxgraph as jg

    _check_memory(args, dataset.vocabulary_size)
    with _CompileCounter() as compiles:
        # Step 4: the skip-gram model. The training program compiles in the background meanwhile.
        t_compile = time.perf_counter()
        optimizer = jg.train.GradientDescentOptimizer(args.learning_rate)
        plan = chunk_plan(args.steps, args.steps_per_call, args.eval_every)
        init = make_init_fn(optimizer, dataset.vocabulary_size, args.embedding_size, args.seed)
        train_program = _compile_train_program(optimizer, args, dataset.vocabulary_size, plan, init)
        params, opt_state, sample_key = init()
        print("Trainable variables:", ", ".join(v.name for v in jg.trainable_variables(params)))
        nearest = NearestWords(args, dataset, params)

        # TensorBoard: the loss of every step; closed however it ends. A stop signal ends training after a call.
        with _summary_writer(output_dir) as writer, cli.stop_requests() as stop:
            # Step 5: training. The batches for the whole run start coming while the steps compile.
            batches = BatchPrefetcher(plan, data_list, args, state)
            train_steps, compiler_options = train_program.result()
            compile_seconds = time.perf_counter() - t_compile
            print("Initialized")
            report = LossReport(args.log_every, writer)
            t_train, cpu_train = time.perf_counter(), time.process_time()
            params, opt_state = _train(train_steps, plan, batches, params, opt_state, sample_key, report, nearest,
                                       stop)
            train_seconds, train_cpu_seconds = time.perf_counter() - t_train, time.process_time() - cpu_train
    final_embeddings = _finite(nearest.final_normalized())
    if stop.requested:
        return _interrupted(output_dir, final_embeddings, dataset, params, opt_state, stop.signum)

    # Outputs: projector files, checkpoint, event file, t-SNE, metrics.
    checkpoint = _save(output_dir, final_embeddings, dataset, params, opt_state)
    final_loss, final_steps = report.final_average(args.steps)
    metrics = {
        "steps": args.steps,
        "final_average_loss": final_loss,
        "final_average_loss_steps": final_steps,
        "average_losses": report.averages,
        "examples_per_sec": args.steps * args.batch_size / train_seconds,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "compile_seconds": compile_seconds,
        "compiled_programs": len(compiles.names),
        "compiled_program_names": compiles.names,
        "xla_compile_seconds": compiles.seconds,
        "compiler_options": compiler_options,
        "device": _device_name(params["embeddings"].value),
        "vocabulary_size": dataset.vocabulary_size,
        "corpus_words": int(len(dataset.data)),
        "corpus": description,
        "checkpoint": checkpoint,
        "tensorboard_logdir": output_dir if writer is not None else None,
    }
    print(f"Trained {args.steps} steps in {train_seconds:.1f} s "
          f"({metrics['examples_per_sec']:,.0f} examples/s on {metrics['device']})")

    # Step 6: visualise the embeddings.
    t_plot = time.perf_counter()
    try:
        plot = tsne_plot(final_embeddings, dataset.reversed_dictionary, args, os.path.join(output_dir, "tsne.png"))
    except KeyboardInterrupt as e:  # a stop signal during t-SNE: main() says what was written before it
        e.written = f"checkpoint {checkpoint}.npz and the projector files"  # type: ignore[attr-defined]
        raise
    metrics["tsne_png"] = plot
    metrics["tsne_seconds"] = time.perf_counter() - t_plot
    metrics["total_seconds"] = time.perf_counter() - t_start
    export.write_metrics(os.path.join(output_dir, "metrics.json"), metrics)
    print(f"Wrote {output_dir} (metadata.tsv, vectors.tsv, projector_config.pbtxt, model.ckpt.npz"
          f"{', events' if writer is not None else ''}"
          f"{', tsne.png' if plot else ''}, metrics.json)")
    return metrics


def _summary_writer(output_dir: str):
    """A ``jaxgraph.summary.FileWriter`` as a context manager, or a null one (said in one line) without
    tensorboardX."""
    import contextlib

    import jaxgraph as jg

    try:
        return jg.summary.FileWriter(output_dir)
    except ImportError as e:
        print(f"warning: no TensorBoard event file: {e}", file=sys.stderr)
        return contextlib.nullcontext()


# XLA:CPU's YNN library fusions ran the step's small row-wise dot products and reductions about 20% slower
# (CPU time per step, jaxlib 0.10.2); the option only exists on XLA builds that have them.
_CPU_COMPILER_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def start_jax_backend() -> None:
    """Start JAX's backends with XLA:CPU's intra-op parallelism at one thread. No effect once the process has
    started them (they start once, at the first JAX computation).

    XLA:CPU splits the training step's row gathers and scatter-adds into one part per CPU the process could
    run on when its client started (``outer_dimension_partitions``; no compiler option turns that off). For
    128-192 rows of 512 bytes, handing half to a second thread cost more than the copy: the compiled step
    took 183 us of CPU per step split, 135 us not (measured on the 2-core machine under load; see
    ``benchmarks/README.md``), and the second core is the batch thread's. So the calling thread runs on one
    CPU while the client starts, then every thread of the process gets the full CPU set back. Linux only
    (elsewhere it just starts the backends). With several virtual CPU devices forced
    (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) XLA splits the step anyway (seen in the tests'
    multi-device session). The programs compute the same values either way.
    """
    import jax

    get, set_ = getattr(os, "sched_getaffinity", None), getattr(os, "sched_setaffinity", None)
    if get is None or set_ is None or not os.path.isdir("/proc/self/task"):
        jax.devices()
        return
    cpus = get(0)
    set_(0, {min(cpus)})
    try:
        jax.devices()
    finally:
        for thread in os.listdir("/proc/self/task"):  # the client's own threads inherited the one CPU
            with contextlib.suppress(OSError):  # a thread that has ended since
                set_(int(thread), cpus)


def compile_train_program(lowered) -> tuple[Any, dict[str, Any]]:
    """Compile the lowered training program; returns ``(compiled, compiler_options_used)``: on CPU without
    XLA's YNN fusions (see ``_CPU_COMPILER_OPTIONS``) where the XLA build has the option."""
    import jax

    if jax.default_backend() == "cpu":
        try:
            return lowered.compile(_CPU_COMPILER_OPTIONS), _CPU_COMPILER_OPTIONS
        except Exception as e:  # an XLA without the option: compile with its defaults
            if "compile option" not in str(e) and "valid enum" not in str(e):
                raise
    return lowered.compile(), {}


def _compile_train_program(optimizer, args, vocabulary_size: int, plan: list[Chunk], init):
    """Trace the training program now (from the shapes ``init`` will return) and compile it in a background
    thread (:func:`compile_train_program`); ``.result()`` gives ``(compiled, compiler_options_used)``."""
    import concurrent.futures

    import jax

    params, opt_state, sample_key = jax.eval_shape(init)
    rows = max(c.length for c in plan)
    lowered = make_train_fn(optimizer, args.num_sampled, vocabulary_size).lower(
        params, opt_state, sample_key,
        jax.ShapeDtypeStruct((rows, args.batch_size), np.int32),
        jax.ShapeDtypeStruct((rows, args.batch_size, 1), np.int32),
        jax.ShapeDtypeStruct((), np.int32),
    )

    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile")
    future = executor.submit(compile_train_program, lowered)
    executor.shutdown(wait=False)
    return future


class _CompileCounter:
    """The XLA programs compiled inside the block (JAX's compile-duration event): their names, and the seconds
    XLA spent compiling them (in whichever thread)."""

    def __enter__(self) -> _CompileCounter:
        import jax

        self.names: list[str] = []
        self.seconds = 0.0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == _COMPILE_EVENT:
            self.names.append(str(kwargs.get("fun_name", "?")))
            self.seconds += duration

    def __exit__(self, *exc: Any) -> None:
        import jax

        jax.monitoring.unregister_event_duration_listener(self._listen)


class LossReport:
    """TF's ``Average loss at step N : x`` every ``log_every`` steps (step 0: the first batch's loss), the loss
    of every step to TensorBoard (``writer``, or None), and the average over the last ``log_every`` steps."""

    def __init__(self, log_every: int, writer) -> None:
        self.log_every, self.writer = log_every, writer
        self.average_loss = 0.0
        self.averages: list[list[float]] = []
        self.losses: list[np.ndarray] = []  # every step's loss, for the final average

    def add(self, chunk: Chunk, losses, summaries) -> None:
        """A finished call's losses and stacked summaries (read from the device here; rows past the call's
        length are padding)."""
        import jax

        host_losses = np.asarray(losses, dtype=np.float64)[: chunk.length]
        if self.writer is not None:
            host = jax.device_get(summaries)
            self.writer.add_summary({tag: v[: chunk.length] for tag, v in host.items()}, global_step=chunk.start)
        _check_finite(chunk.start, host_losses)
        self.losses.append(host_losses)
        for i, loss_val in enumerate(host_losses.tolist()):
            step = chunk.start + i
            self.average_loss += loss_val
            if step % self.log_every == 0:
                if step > 0:
                    self.average_loss /= self.log_every
                # The average loss is an estimate of the loss over the last log_every batches.
                print("Average loss at step ", step, ": ", self.average_loss)
                self.averages.append([step, self.average_loss])
                self.average_loss = 0.0

    def final_average(self, steps: int) -> tuple[float, int]:
        """The mean loss of the last ``min(log_every, steps)`` steps, and that count."""
        last = np.concatenate(self.losses)[-min(self.log_every, steps):]
        return float(np.mean(last)), int(len(last))


class NearestWords:
    """TF's ``Nearest to ...`` printout for the validation words (``--valid-size`` of the ``--valid-window``
    most frequent), computed on the device with TF's normalised embeddings, which the last evaluation (after
    the last step) also provides for export."""

    def __init__(self, args: argparse.Namespace, dataset, params) -> None:
        import jax

        valid_window, valid_size = validation_window(args, dataset.vocabulary_size)
        self.ids = np.random.RandomState(args.seed).choice(valid_window, valid_size, replace=False).tolist()
        self.words = dataset.reversed_dictionary
        evaluate = make_evaluate_fn(self.ids, min(8, dataset.vocabulary_size - 1))
        self._evaluate = evaluate.lower(jax.ShapeDtypeStruct(params["embeddings"].value.shape, np.float32)).compile()
        self._normalized = None

    def evaluate(self, params):
        """The nearest ids for ``params``' embeddings; keeps their normalised form for :meth:`final_normalized`."""
        self._normalized, near = self._evaluate(params["embeddings"].value)
        return near

    def print(self, params) -> None:
        from examples.word2vec import evaluation

        near = self.evaluate(params)
        for line in evaluation.format_nearest(self.ids, np.asarray(near).tolist(), self.words):
            print(line)
        sys.stdout.flush()

    def final_normalized(self) -> np.ndarray:
        """The normalised embeddings after the last step (the last call always ends with an evaluation, and a
        stopped run evaluates the step it reached)."""
        assert self._normalized is not None, "no evaluation ran"
        return np.asarray(self._normalized)


def validation_window(args: argparse.Namespace, vocabulary_size: int) -> tuple[int, int]:
    """``(valid_window, valid_size)`` within the vocabulary; says so in a ``warning:`` line when the corpus's
    vocabulary came out smaller than ``--valid-window`` (the flags themselves were checked by
    :func:`parse_args`)."""
    valid_window, valid_size = args.valid_window, args.valid_size
    if valid_window > vocabulary_size:
        valid_window = vocabulary_size
        note = ""
        if valid_size > valid_window:
            valid_size = valid_window
            note = f" and --valid-size {args.valid_size} to {valid_size}"
        print(f"warning: the vocabulary has only {vocabulary_size} words: --valid-window {args.valid_window} "
              f"cut to {valid_window}{note}", file=sys.stderr)
    return valid_window, valid_size


def _train(train_steps, plan, batches, params, opt_state, sample_key, report: LossReport, nearest: NearestWords,
           stop=None, lookahead: int = 2):
    """Run the plan's calls. Up to ``lookahead`` calls are queued on the device while the host reads (and
    writes to TensorBoard) the losses of earlier ones; nearest words are printed after each evaluation call,
    and after the last. ``stop`` (a :class:`~examples.word2vec.cli.StopRequest`) ends the run after the call in
    which it was requested."""
    import collections

    import jax

    pending: collections.deque = collections.deque()  # (chunk, losses, summaries) of calls in flight
    for chunk, (inputs, batch_labels) in zip(plan, batches, strict=True):
        params, opt_state, losses, summaries = train_steps(
            params, opt_state, sample_key, inputs, batch_labels, np.int32(chunk.length)
        )
        pending.append((chunk, losses, summaries))
        if chunk.evaluate:
            while pending:
                report.add(*pending.popleft())
            nearest.print(params)
        elif len(pending) > lookahead:
            report.add(*pending.popleft())
        if stop is not None and stop.requested:
            if not chunk.evaluate:
                nearest.evaluate(params)  # the normalised embeddings of the step reached, for export
            batches.close()
            break
    while pending:
        report.add(*pending.popleft())
    return jax.block_until_ready((params, opt_state))


def _check_finite(start: int, losses: np.ndarray) -> None:
    """Divergence, as the fast trainer detects it: a call's losses (its first step ``start``) must be finite."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise UsageError(f"the loss diverged (non-finite) at step {start + int(bad[0])}; lower --learning-rate "
                         "(no outputs written)")


def _finite(embeddings: np.ndarray) -> np.ndarray:
    """The normalised embeddings, refused (one error line, no output written) if any value is not finite."""
    rows = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if rows.size:
        raise UsageError(f"{rows.size} rows of the trained embeddings are not finite (row {int(rows[0])} first); "
                         "lower --learning-rate (no outputs written)")
    return embeddings


def _interrupted(output_dir: str, final_embeddings: np.ndarray, dataset, params, opt_state,
                 signum: int) -> dict[str, Any]:
    """After a stop signal: the checkpoint and projector files of the step reached, said in one line."""
    checkpoint = _save(output_dir, final_embeddings, dataset, params, opt_state)
    step = int(np.asarray(params["global_step"].value))
    print(f"interrupted by {cli.signal_name(signum)} at step {step}: checkpoint {checkpoint}.npz and the projector "
          f"files written to {output_dir} (no t-SNE, no metrics.json)", file=sys.stderr)
    return {"interrupted_by": signum, "steps": step, "checkpoint": checkpoint}


def _save(output_dir: str, final_embeddings: np.ndarray, dataset, params, opt_state) -> str:
    """The projector files (``metadata.tsv``, ``vectors.tsv``, ``projector_config.pbtxt``) and the checkpoint
    ``model.ckpt.npz``; returns the checkpoint's path."""
    from jaxgraph.train import Saver

    words = [dataset.reversed_dictionary[i] for i in range(dataset.vocabulary_size)]
    export.save_projector_tsv(output_dir, final_embeddings, words)
    export.save_projector_config(output_dir, EMBEDDINGS_TENSOR_NAME, "metadata.tsv", tensor_path="vectors.tsv")
    return Saver().save(params, opt_state, os.path.join(output_dir, "model.ckpt"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tutorial; returns the exit status: 0, 2 after one ``error: ...`` line (bad input or a fault), 130
    after Ctrl-C, 143 after SIGTERM."""
    from examples.word2vec.data import CorpusError

    def body() -> int:
        metrics = run(parse_args(argv))
        return cli.interrupt_status(metrics["interrupted_by"]) if "interrupted_by" in metrics else 0

    with cli.raise_on_signals(), report_warnings():
        try:
            return exit_status(body, (CorpusError,), memory_hint=MEMORY_HINT)
        except KeyboardInterrupt as e:  # outside training (reading, compiling, t-SNE), or a second stop signal
            written = getattr(e, "written", None)
            what = (f"after writing {written} (no tsne.png, no metrics.json)" if written else
                    "without writing a checkpoint or the projector files")
            print(f"interrupted by {cli.signal_name(cli.stop_signal(e))}: stopped {what}",
                  file=sys.stderr)
            return cli.interrupt_status(e)


if __name__ == "__main__":
    sys.exit(main())
