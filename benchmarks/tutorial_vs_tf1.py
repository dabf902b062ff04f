"""TF's own ``word2vec_basic.py`` under ``tf.compat.v1`` against its port ``examples/word2vec/word2vec_basic.py``.

Both programs run as subprocesses of this one, one after the other and alternating which goes first, on the
same corpus with the same steps and sizes; each repeat prints both speeds and their ratio, and the summary
gives the median ratio and the machine's load average around the runs.

* **The baseline** (``--tf-program``) is TF's tutorial program as of its late 1.x version (the
  ``tensorflow/examples/tutorials/word2vec/word2vec_basic.py`` that ``/work/shared/reference/tf1-semantics.md``
  section 7.1 describes), rebuilt here under ``tf.compat.v1`` in graph mode: the same graph (placeholders,
  ``/cpu:0`` tables in their name scopes, ``nce_loss`` with its default sampler, ``summary.scalar('loss')``,
  ``GradientDescentOptimizer(1.0)``, the normalised-embedding similarity, ``merge_all``, ``Saver``), and the
  same loop: per step ``generate_batch`` (Python), one ``session.run([optimizer, merged, loss])`` with a
  ``RunMetadata``, ``writer.add_summary`` of that step's summary, the average loss every 2,000 steps and the
  nearest words every 10,000; then ``metadata.tsv``, the checkpoint and the projector config. Deliberate
  differences, shared with the port: the corpus and vocabulary come from ``examples/word2vec/data.py`` (TF's
  ``build_dataset`` and ``generate_batch``, the latter holding ``data_index`` and the random generator in a
  state object instead of globals), every random stream is seeded, and the t-SNE plot is skipped (TF's exact
  t-SNE takes minutes and is not training; the port runs with ``--plot-only 0``).
* **The port**: ``python -m examples.word2vec.word2vec_basic`` with the same flags.

Figures per program: ``steps/s`` = steps / seconds of the training loop (TF: the ``for step`` loop; the port:
``train_seconds`` in its ``metrics.json``, the loop after compilation), the same with the port's setup and
compilation added (``incl. compilation``; TF builds its graph before its loop, a second or so), the CPU time
of the whole process per training step (all threads; less sensitive to other jobs than wall time, but the
port's batch thread and compiled steps run side by side on two cores, so its wall time per step on an idle
machine is below its CPU time), and the wall time of the whole process (reading the corpus included). The
headline is the median over repeats of the port / TF1 ratio of steps/s.

Usage (from the repository root, TensorFlow installed: ``pip install tensorflow-cpu``)::

    python benchmarks/tutorial_vs_tf1.py --steps 20001 --repeats 3
    python benchmarks/tutorial_vs_tf1.py --steps 100001 --repeats 1 --corpus text8.zip
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TF_MISSING = ("TensorFlow is not installed in this Python ({python}): this benchmark's baseline is TF's own "
              "program. Install it (pip install tensorflow-cpu) or run with a Python that has it")


# --------------------------------------------------------------------------------------------------
# The baseline: TF's word2vec_basic under tf.compat.v1 (run in its own process by --tf-program).


def tf_program(args: argparse.Namespace) -> dict:
    """TF's graph and training loop; returns the figures (printed as one JSON line by ``main``)."""
    t_process = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import math

    import numpy as np
    import tensorflow as tf

    from examples.word2vec import data as w2v_data

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    log_dir = args.output_dir
    os.makedirs(log_dir, exist_ok=True)

    # Steps 1-2: the corpus and TF's build_dataset.
    vocabulary, description = w2v_data.load_corpus(args.corpus)
    print("Data size", len(vocabulary))
    data, count, _, reverse_dictionary = w2v_data.build_dataset(vocabulary, args.vocabulary_size)
    vocabulary_size = len(reverse_dictionary)
    del vocabulary
    print("Most common words (+UNK)", count[:5])
    data = data.tolist()  # TF's generator indexes a Python list

    # Step 3: TF's generate_batch, and its demo call (which moves data_index to 4).
    state = w2v_data.BatchState.seeded(args.seed)

    def generate_batch(batch_size, num_skips, skip_window):
        return w2v_data.generate_batch(data, batch_size, num_skips, skip_window, state)

    batch, labels = generate_batch(batch_size=8, num_skips=2, skip_window=1)
    for i in range(8):
        print(batch[i], reverse_dictionary[batch[i]], "->", labels[i, 0], reverse_dictionary[labels[i, 0]])

    # Step 4: the skip-gram graph.
    batch_size, embedding_size = args.batch_size, args.embedding_size
    skip_window, num_skips, num_sampled = args.skip_window, args.num_skips, args.num_sampled
    valid_size, valid_window = 16, 100
    valid_examples = np.random.RandomState(args.seed).choice(valid_window, valid_size, replace=False)

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(args.seed)
        with tf.name_scope("inputs"):
            train_inputs = v1.placeholder(tf.int32, shape=[batch_size])
            train_labels = v1.placeholder(tf.int32, shape=[batch_size, 1])
            valid_dataset = tf.constant(valid_examples, dtype=tf.int32)
        with tf.device("/cpu:0"):
            with tf.name_scope("embeddings"):
                embeddings = tf.Variable(v1.random_uniform([vocabulary_size, embedding_size], -1.0, 1.0))
                embed = tf.nn.embedding_lookup(embeddings, train_inputs)
            with tf.name_scope("weights"):
                nce_weights = tf.Variable(v1.truncated_normal([vocabulary_size, embedding_size],
                                                              stddev=1.0 / math.sqrt(embedding_size)))
            with tf.name_scope("biases"):
                nce_biases = tf.Variable(tf.zeros([vocabulary_size]))
        with tf.name_scope("loss"):
            loss = tf.reduce_mean(v1.nn.nce_loss(weights=nce_weights, biases=nce_biases, labels=train_labels,
                                                 inputs=embed, num_sampled=num_sampled,
                                                 num_classes=vocabulary_size))
        v1.summary.scalar("loss", loss)
        with tf.name_scope("optimizer"):
            optimizer = v1.train.GradientDescentOptimizer(args.learning_rate).minimize(loss)
        norm = tf.sqrt(tf.reduce_sum(tf.square(embeddings), 1, keepdims=True))
        normalized_embeddings = embeddings / norm
        valid_embeddings = tf.nn.embedding_lookup(normalized_embeddings, valid_dataset)
        similarity = tf.matmul(valid_embeddings, normalized_embeddings, transpose_b=True)
        merged = v1.summary.merge_all()
        init = v1.global_variables_initializer()
        saver = v1.train.Saver()

    # Step 5: training, TF's loop.
    num_steps = args.steps
    average_losses = []
    with v1.Session(graph=graph) as session:
        writer = v1.summary.FileWriter(log_dir, session.graph)
        init.run()
        print("Initialized")
        average_loss = 0.0
        t_loop, cpu_loop = time.perf_counter(), time.process_time()
        for step in range(num_steps):
            batch_inputs, batch_labels = generate_batch(batch_size, num_skips, skip_window)
            feed_dict = {train_inputs: batch_inputs, train_labels: batch_labels}
            run_metadata = v1.RunMetadata()
            _, summary, loss_val = session.run([optimizer, merged, loss], feed_dict=feed_dict,
                                               run_metadata=run_metadata)
            average_loss += loss_val
            writer.add_summary(summary, step)
            if step == num_steps - 1:
                writer.add_run_metadata(run_metadata, f"step{step}")
            if step % 2000 == 0:
                if step > 0:
                    average_loss /= 2000
                print("Average loss at step ", step, ": ", average_loss)
                average_losses.append([step, float(average_loss)])
                average_loss = 0
            if step % 10000 == 0:
                sim = similarity.eval()
                for i in range(valid_size):
                    nearest = (-sim[i, :]).argsort()[1:9]
                    print(f"Nearest to {reverse_dictionary[valid_examples[i]]}:",
                          ", ".join(reverse_dictionary[nearest[k]] for k in range(8)))
        loop_seconds, loop_cpu_seconds = time.perf_counter() - t_loop, time.process_time() - cpu_loop
        normalized_embeddings.eval()
        with open(os.path.join(log_dir, "metadata.tsv"), "w") as f:
            for i in range(vocabulary_size):
                f.write(reverse_dictionary[i] + "\n")
        saver.save(session, os.path.join(log_dir, "model.ckpt"))
        from tensorboard.plugins import projector

        config = projector.ProjectorConfig()
        embedding_conf = config.embeddings.add()
        embedding_conf.tensor_name = embeddings.name
        embedding_conf.metadata_path = os.path.join(log_dir, "metadata.tsv")
        projector.visualize_embeddings(log_dir, config)
    writer.close()
    return {"program": "tf1", "tensorflow": tf.__version__, "corpus": description, "steps": num_steps,
            "vocabulary_size": vocabulary_size, "loop_seconds": loop_seconds,
            "cpu_ms_per_step": loop_cpu_seconds / num_steps * 1e3,
            "steps_per_sec": num_steps / loop_seconds, "average_losses": average_losses,
            "process_seconds_in_python": time.perf_counter() - t_process}


# --------------------------------------------------------------------------------------------------
# The runs


def _shared_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--steps", args.steps, "--vocabulary-size", args.vocabulary_size, "--batch-size", args.batch_size,
             "--embedding-size", args.embedding_size, "--skip-window", args.skip_window,
             "--num-skips", args.num_skips, "--num-sampled", args.num_sampled, "--learning-rate",
             args.learning_rate, "--seed", args.seed]
    if args.corpus:
        flags += ["--corpus", args.corpus]
    return [str(f) for f in flags]


def _run(cmd: list[str], env: dict) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise SystemExit(f"error: {' '.join(cmd[:4])} ... failed with exit status {proc.returncode}:\n{tail}")
    return proc, wall


def run_tf(args: argparse.Namespace, out_dir: str, env: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--tf-program", "--output-dir", out_dir, *_shared_flags(args)]
    proc, wall = _run(cmd, env)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_seconds"] = wall
    return result


def run_port(args: argparse.Namespace, out_dir: str, env: dict) -> dict:
    cmd = [sys.executable, "-m", "examples.word2vec.word2vec_basic", "--output-dir", out_dir, "--plot-only", "0",
           "--steps-per-call", str(args.steps_per_call), *_shared_flags(args)]
    _, wall = _run(cmd, env)
    with open(os.path.join(out_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return {"program": "port", "loop_seconds": metrics["train_seconds"],
            "compile_seconds": metrics["compile_seconds"],
            "steps_per_sec": args.steps / metrics["train_seconds"],
            "cpu_ms_per_step": metrics["train_cpu_seconds"] / args.steps * 1e3,
            "steps_per_sec_incl_compile": args.steps / (metrics["train_seconds"] + metrics["compile_seconds"]),
            "average_losses": metrics["average_losses"], "process_wall_seconds": wall,
            "compiled_programs": metrics.get("compiled_programs")}


def _tf_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except ValueError:
        return False


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=20001)
    p.add_argument("--repeats", type=int, default=3, help="pairs of runs (TF, port), alternating which goes first")
    p.add_argument("--corpus", default=None, help="default: the embedded corpus both programs default to")
    p.add_argument("--vocabulary-size", type=int, default=None,
                   help="default: the port's (10000 on the embedded corpus, 50000 with --corpus)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--skip-window", type=int, default=1)
    p.add_argument("--num-skips", type=int, default=2)
    p.add_argument("--num-sampled", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-call", type=int, default=100, help="the port's steps per compiled call")
    p.add_argument("--output-dir", default=None, help="(with --tf-program) where TF's program writes")
    p.add_argument("--tf-program", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.vocabulary_size is None:
        args.vocabulary_size = 10000 if args.corpus is None else 50000

    if not _tf_available():
        print("error: " + TF_MISSING.format(python=sys.executable), file=sys.stderr)
        return 2
    if args.tf_program:
        print(json.dumps(tf_program(args)))
        return 0

    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    print(f"config: steps={args.steps} corpus={args.corpus or 'embedded default'} "
          f"vocabulary_size={args.vocabulary_size} batch_size={args.batch_size} "
          f"embedding_size={args.embedding_size} skip_window={args.skip_window} num_skips={args.num_skips} "
          f"num_sampled={args.num_sampled} port --steps-per-call {args.steps_per_call}; "
          f"{os.cpu_count()} CPUs; load average (1/5/15 min) {_load()}")
    ratios: dict[str, list[float]] = {"steps/s": [], "incl. compilation": [], "CPU per step": [], "process": []}
    pairs = []
    with tempfile.TemporaryDirectory(prefix="tutorial_vs_tf1_") as tmp:
        for r in range(args.repeats):
            order = ("tf", "port") if r % 2 == 0 else ("port", "tf")
            res = {}
            for name in order:
                load_before = _load()
                res[name] = (run_tf if name == "tf" else run_port)(args, os.path.join(tmp, f"{name}{r}"), env)
                res[name]["load"] = f"{load_before} -> {_load()}"
            tf_, port = res["tf"], res["port"]
            pair = {"steps/s": port["steps_per_sec"] / tf_["steps_per_sec"],
                    "incl. compilation": port["steps_per_sec_incl_compile"] / tf_["steps_per_sec"],
                    "CPU per step": tf_["cpu_ms_per_step"] / port["cpu_ms_per_step"],
                    "process": tf_["process_wall_seconds"] / port["process_wall_seconds"]}
            for key, value in pair.items():
                ratios[key].append(value)
            pairs.append(res)
            print(f"repeat {r + 1} ({' then '.join(order)}):")
            print(f"  TF1:  {tf_['steps_per_sec']:7,.0f} steps/s, {tf_['cpu_ms_per_step']:.3f} ms CPU/step, "
                  f"process {tf_['process_wall_seconds']:.1f} s (load {tf_['load']})")
            print(f"  port: {port['steps_per_sec']:7,.0f} steps/s ({port['steps_per_sec_incl_compile']:,.0f} "
                  f"with its {port['compile_seconds']:.1f} s of setup and compilation), "
                  f"{port['cpu_ms_per_step']:.3f} ms CPU/step, process {port['process_wall_seconds']:.1f} s "
                  f"(load {port['load']})")
            print("  port / TF1: " + ", ".join(f"{k} {v:.2f}x" for k, v in pair.items())
                  + f"; final average loss TF1 {tf_['average_losses'][-1][1]:.3f}, "
                  f"port {port['average_losses'][-1][1]:.3f}")
    summary = {f"median {k}": statistics.median(v) for k, v in ratios.items()}
    summary.update(tensorflow=pairs[0]["tf"]["tensorflow"], load_after=_load())
    print(f"median port / TF1 over {args.repeats} repeats: "
          + ", ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items())
          + f"; TF {summary['tensorflow']}; load average now {_load()}")
    print(json.dumps({"config": {k: v for k, v in vars(args).items() if k not in ("tf_program", "output_dir")},
                      "summary": summary, "runs": pairs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
