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
   seeded from ``--seed``); the demo call ``generate_batch(8, 2, 1)`` prints ``id word -> id word``
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
   loss of every step, a t-SNE plot ``tsne.png`` of the ``--plot-only`` most frequent words, and
   ``metrics.json``, all in ``--output-dir``.

Performance: each call to the compiled step runs ``--steps-per-call`` training steps with ``lax.scan``
(parameters and optimizer state donated, so the tables are updated in place). The step's PRNG key is
derived inside the compiled step from the global step. The batches come from TF's Python generator,
which runs in a background thread while the previous steps compute.

Defaults: TF's, except two that depend on the corpus (``--help`` says the same):

* ``--steps``: TF's 100001 with ``--corpus`` or ``--download-text8``; **50001** on the default corpus
  (about 6 passes over its centre words), so that the README's quick start (``nox -s word2vec``)
  finishes within about 4 minutes, t-SNE included, on a 2-core CPU even when other jobs share it. TF's
  Python batch generator (0.5-1 ms per batch there) is the bottleneck; the compiled steps run beside it.
  Measured for the whole default run on this 2-core machine with other jobs keeping its load average
  at 5-8: 40001 steps 2 min 7 s; 50001 steps 1 min 44 s; 100001 steps 2 min 44 s in one run and
  4 min 24 s in another.

* ``--vocabulary-size``: TF's 50000 with ``--corpus``/text8; **10000** on the default corpus, which
  has only about 38,000 distinct words, 23,000 of them seen once or twice. 10000 keeps the words that
  occur at least 5 times (text8's 50000 cut off at 9 occurrences); with 50000 the vocabulary would
  shrink to every distinct word and the nearest-neighbour lists fill with barely trained rare words.

Differences from TF's script, all deliberate: every random stream is seeded from ``--seed`` (TF's
were not); t-SNE uses Barnes-Hut unless ``--exact-tsne`` (TF: ``method='exact'``, minutes for 500
points) and writes ``tsne.png`` to ``--output-dir`` (TF: the temp directory); the projector config also
names ``vectors.tsv``, since TensorBoard cannot read jaxgraph's ``.npz`` checkpoint; a nearest-neighbour
list drops the query word itself rather than assuming it ranks first; ``--num-sampled`` must be
smaller than the vocabulary (a unique sampler cannot draw more distinct classes than exist).

Bad input and faults (a missing, empty or binary corpus, a failed download, impossible flag combinations,
an output directory that cannot be written, checked before the corpus is read, a full disk, running out of
memory, a diverged loss) print one ``error: ...`` line to stderr and exit with status 2; a diverged run writes
no outputs (nothing with NaN in it). Ctrl-C or SIGTERM stops training after the current compiled call, writes
the checkpoint ``model.ckpt.npz`` and the projector files of the step reached, and exits with status 130 or 143
(no t-SNE, no ``metrics.json``); a second one stops at once.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import queue
import signal
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
    "DEFAULT_CORPUS_STEPS", "DEFAULT_CORPUS_VOCABULARY_SIZE", "TF_NUM_STEPS", "TF_VOCABULARY_SIZE", "BatchPrefetcher",
    "Chunk", "LossReport", "NearestWords", "build_model", "build_parser", "chunk_plan", "main", "make_train_fn",
    "parse_args", "plot_with_labels", "prepare_output_dir", "run", "tsne_plot",
]

TF_NUM_STEPS = 100001
TF_VOCABULARY_SIZE = 50000
DEFAULT_CORPUS_STEPS = 50001
DEFAULT_CORPUS_VOCABULARY_SIZE = 10000
TSNE_MISSING = "Please install sklearn, matplotlib, and scipy to show embeddings."
MEMORY_HINT = "lower --batch-size, --embedding-size or --vocabulary-size"
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
                   help="t-SNE plot of this many most frequent words (0: no plot)")
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


def make_train_fn(optimizer, num_sampled: int, vocabulary_size: int):
    """A jitted ``(params, opt_state, base_key, inputs[K, B], labels[K, B, 1]) -> (params, opt_state,
    losses[K], summaries)`` running K steps with ``lax.scan``; params and state are donated."""
    import jax
    import jax.numpy as jnp

    import jaxgraph as jg

    def loss_fn(params, train_inputs, train_labels, key):
        embed = jg.nn.embedding_lookup(params["embeddings"], train_inputs)
        loss = jnp.mean(
            jg.nn.nce_loss(
                weights=params["nce_weights"],
                biases=params["nce_biases"],
                labels=train_labels,
                inputs=embed,
                num_sampled=num_sampled,
                num_classes=vocabulary_size,
                key=key,
            )
        )
        jg.summary.scalar("loss", loss)
        return loss

    def one_step(carry, batch):
        params, opt_state, base_key = carry
        train_inputs, train_labels = batch
        # The sampler's key comes from the global step, inside the compiled step: no host work per step.
        key = jax.random.fold_in(base_key, params["global_step"].value)
        with jg.summary.record_summaries() as summaries:
            params, opt_state, loss = optimizer.minimize(
                lambda p: loss_fn(p, train_inputs, train_labels, key),
                params,
                opt_state,
                global_step=params["global_step"],
            )
        return (params, opt_state, base_key), (loss, dict(summaries))

    def train_steps(params, opt_state, base_key, inputs, labels):
        (params, opt_state, _), (losses, summaries) = jax.lax.scan(
            one_step, (params, opt_state, base_key), (inputs, labels)
        )
        return params, opt_state, losses, summaries

    return jax.jit(train_steps, donate_argnums=(0, 1))


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
    """Cut ``0 .. num_steps-1`` into compiled calls, each evaluation step (``step % eval_every == 0``,
    and the last step) ending a call, so nearest words are printed after exactly that step's update,
    as in TF.

    Calls run ``steps_per_call`` steps, or a single step where fewer are left before the next
    evaluation, so that only two programs are ever compiled (choose ``eval_every`` a multiple of
    ``steps_per_call``: TF's ``step % 10000 == 0`` then gives calls of 1 step (step 0) and of 100).

    >>> [(c.start, c.length, c.evaluate) for c in chunk_plan(6, 2, 3)]
    [(0, 1, True), (1, 2, False), (3, 1, True), (4, 2, True)]
    >>> [(c.start, c.length, c.evaluate) for c in chunk_plan(7, 2, 3)][-2:]
    [(4, 2, False), (6, 1, True)]
    """
    ends = sorted(set(range(0, num_steps, eval_every)) | {num_steps - 1})
    plan, start = [], 0
    for end in ends:
        while start <= end:
            length = steps_per_call if end - start + 1 >= steps_per_call else 1
            plan.append(Chunk(start, length, start + length - 1 == end))
            start += length
    return plan


def _batch_producer(plan, data, args, state, out: queue.Queue, stop: threading.Event) -> None:
    from examples.word2vec.data import generate_batch

    try:
        for chunk in plan:
            inputs = np.empty((chunk.length, args.batch_size), np.int32)
            labels = np.empty((chunk.length, args.batch_size, 1), np.int32)
            for i in range(chunk.length):
                inputs[i], labels[i] = generate_batch(
                    data, args.batch_size, args.num_skips, args.skip_window, state
                )
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

    The thread starts at construction, so batches are being made while the steps compile. Iterate once.
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
    """TF's ``plot_with_labels``: an 18x18 inch scatter with each point annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert low_dim_embs.shape[0] >= len(labels), "More labels than embeddings"
    fig = plt.figure(figsize=(18, 18))  # in inches
    for i, label in enumerate(labels):
        x, y = low_dim_embs[i, :]
        plt.scatter(x, y)
        plt.annotate(label, xy=(x, y), xytext=(5, 2), textcoords="offset points", ha="right", va="bottom")
    plt.savefig(filename)
    plt.close(fig)


def tsne_plot(final_embeddings: np.ndarray, reverse_dictionary, args, filename: str) -> str | None:
    """t-SNE of the ``--plot-only`` most frequent words to ``filename``; None when skipped."""
    plot_only = min(args.plot_only, final_embeddings.shape[0])
    if plot_only < 2:
        return None
    try:
        import matplotlib  # noqa: F401
        from sklearn.manifold import TSNE
    except ImportError as ex:
        print(TSNE_MISSING)
        print(ex)
        return None
    # sklearn >= 1.5 renamed n_iter to max_iter; perplexity must stay below the number of points.
    iter_arg = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    tsne = TSNE(
        perplexity=min(30.0, plot_only - 1.0),
        n_components=2,
        init="pca",
        method="exact" if args.exact_tsne else "barnes_hut",
        random_state=args.seed,
        **{iter_arg: args.tsne_iter},
    )
    try:  # One OpenMP thread: on a busy 2-core machine more threads make Barnes-Hut ~7x slower.
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - sklearn depends on threadpoolctl
        low_dim_embs = tsne.fit_transform(final_embeddings[:plot_only].astype(np.float64))
    else:
        with threadpool_limits(limits=1):
            low_dim_embs = tsne.fit_transform(final_embeddings[:plot_only].astype(np.float64))
    labels = [reverse_dictionary[i] for i in range(plot_only)]
    plot_with_labels(low_dim_embs, labels, filename)
    return filename


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


def _train_and_export(args, output_dir, dataset, data_list, state, description, t_start) -> dict[str, Any]:
    import jax

    import jaxgraph as jg

    # Step 4: the skip-gram model.
    init_key, sample_key = jax.random.split(jax.random.PRNGKey(args.seed))
    params = build_model(dataset.vocabulary_size, args.embedding_size, init_key)
    print("Trainable variables:", ", ".join(v.name for v in jg.trainable_variables(params)))
    optimizer = jg.train.GradientDescentOptimizer(args.learning_rate)
    opt_state = optimizer.init(params)
    train_steps = make_train_fn(optimizer, args.num_sampled, dataset.vocabulary_size)

    # TensorBoard: the loss of every step; closed however it ends. A stop signal ends training after a call.
    with _summary_writer(output_dir) as writer, cli.stop_requests() as stop:
        # Step 5: training. The batches for the whole run start coming while the steps compile.
        plan = chunk_plan(args.steps, args.steps_per_call, args.eval_every)
        batches = BatchPrefetcher(plan, data_list, args, state)
        t_compile = time.perf_counter()
        compiled = {length: train_steps.lower(params, opt_state, sample_key, *shapes).compile()
                    for length, shapes in _call_shapes(plan, args.batch_size)}
        compile_seconds = time.perf_counter() - t_compile
        print("Initialized")
        report = LossReport(args.log_every, writer)
        nearest = NearestWords(args, dataset)
        t_train = time.perf_counter()
        params, opt_state = _train(compiled, plan, batches, params, opt_state, sample_key, report, nearest, stop)
        train_seconds = time.perf_counter() - t_train
    final_embeddings = _finite(nearest.normalized(params))
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
        "compile_seconds": compile_seconds,
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
    plot = tsne_plot(final_embeddings, dataset.reversed_dictionary, args, os.path.join(output_dir, "tsne.png"))
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


def _call_shapes(plan: list[Chunk], batch_size: int):
    """``(length, (inputs, labels) shapes)`` of each kind of call in the plan, the longest first."""
    import jax

    for length in sorted({c.length for c in plan}, reverse=True):
        yield length, (jax.ShapeDtypeStruct((length, batch_size), np.int32),
                       jax.ShapeDtypeStruct((length, batch_size, 1), np.int32))


class LossReport:
    """TF's ``Average loss at step N : x`` every ``log_every`` steps (step 0: the first batch's loss), the loss
    of every step to TensorBoard (``writer``, or None), and the average over the last ``log_every`` steps."""

    def __init__(self, log_every: int, writer) -> None:
        self.log_every, self.writer = log_every, writer
        self.average_loss = 0.0
        self.averages: list[list[float]] = []
        self.losses: list[np.ndarray] = []  # every step's loss, for the final average

    def add(self, chunk: Chunk, losses, summaries) -> None:
        """A finished call's losses (read from the device here) and summaries."""
        host_losses = np.asarray(losses, dtype=np.float64)
        if self.writer is not None:
            self.writer.add_summary(summaries, global_step=chunk.start)
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
    most frequent), from the normalised embeddings (normalised on the device)."""

    def __init__(self, args: argparse.Namespace, dataset) -> None:
        import jax

        valid_window = min(args.valid_window, dataset.vocabulary_size)
        valid_size = min(args.valid_size, valid_window)
        self.ids = np.random.RandomState(args.seed).choice(valid_window, valid_size, replace=False).tolist()
        self.words = dataset.reversed_dictionary
        self._normalize = jax.jit(_normalize)

    def normalized(self, params) -> np.ndarray:
        return np.asarray(self._normalize(params["embeddings"].value))

    def print(self, params) -> None:
        from examples.word2vec import evaluation

        near = evaluation.nearest_neighbours(self.normalized(params), self.ids, k=8)
        for line in evaluation.format_nearest(self.ids, near, self.words):
            print(line)
        sys.stdout.flush()


def _train(compiled, plan, batches, params, opt_state, sample_key, report: LossReport, nearest: NearestWords,
           stop=None):
    """Run the plan's calls; the host reads a call's losses while the next one computes, and prints nearest
    words after each evaluation call. ``stop`` (a :class:`~examples.word2vec.cli.StopRequest`) ends the run after
    the call in which it was requested."""
    import jax

    pending = None  # (chunk, losses, summaries) of the call in flight
    for chunk, (inputs, batch_labels) in zip(plan, batches, strict=True):
        params, opt_state, losses, summaries = compiled[chunk.length](
            params, opt_state, sample_key, inputs, batch_labels
        )
        if pending is not None:  # the host handles the previous call while this one computes
            report.add(*pending)
        pending = (chunk, losses, summaries)
        if chunk.evaluate:
            report.add(*pending)
            pending = None
            nearest.print(params)
        if stop is not None and stop.requested:
            batches.close()
            break
    if pending is not None:
        report.add(*pending)
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
            print(f"interrupted by {cli.signal_name(getattr(e, 'signum', signal.SIGINT))}: stopped without writing "
                  "outputs", file=sys.stderr)
            return cli.interrupt_status(e)


if __name__ == "__main__":
    sys.exit(main())
