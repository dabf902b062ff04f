"""One training step of TF's word2vec NCE model, with jaxgraph's public API, against TF1 in the same run.

The model is word2vec_basic's: ``embedding_lookup`` of the inputs, ``nce_loss`` with the in-graph
unique log-uniform sampler, ``GradientDescentOptimizer(1.0).minimize(loss)`` over all trainable
variables, the step under ``jax.jit`` with the parameters and optimizer state donated. The PRNG key is
derived inside the compiled step from the optimizer's step counter (no host work per step).

If ``tensorflow`` is importable, TF1's own graph (``tf.compat.v1``, ``nce_loss``,
``GradientDescentOptimizer(1.0)``, ``feed_dict`` batches as in the tutorial) runs with the same sizes in
a subprocess of this run, and the ratio is printed.

Usage::

    python benchmarks/word2vec_step.py --vocabulary-size 50000 --steps 2000
    python benchmarks/word2vec_step.py --vocabulary-size 1000000 --dense   # dense gradients, for comparison
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
from proc_memory import peak_rss_bytes, reset_peak_rss
from tables import word2vec_table


def _batches(args, n):
    rng = np.random.default_rng(0)
    # Zipf-like ids, as word2vec's data: frequent words recur within a batch.
    ids = np.minimum(rng.zipf(1.3, size=(n, args.batch_size)) - 1, args.vocabulary_size - 1)
    labels = np.minimum(rng.zipf(1.3, size=(n, args.batch_size, 1)) - 1, args.vocabulary_size - 1)
    return ids.astype(np.int32), labels.astype(np.int32)


def run_jaxgraph(args) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxgraph as jg

    V, D, B, S = args.vocabulary_size, args.embedding_size, args.batch_size, args.num_sampled

    def init(seed):
        # Tables filled block by block into donated buffers: the memory measured in training is theirs.
        key = jax.random.PRNGKey(seed)
        tables = {
            name: jg.Variable(word2vec_table(V, D, jax.random.fold_in(key, i), kind), name=name)
            for i, (name, kind) in enumerate((("embeddings", "uniform"), ("nce_weights", "truncated_normal")))
        }
        tables["nce_biases"] = jg.Variable(jnp.zeros((V,)), name="nce_biases")
        return tables

    opt = (jg.train.GradientDescentOptimizer(1.0) if args.optimizer == "sgd"
           else jg.train.AdagradOptimizer(1.0))
    base_key = jax.random.PRNGKey(1)

    fixed = None
    if args.fixed_samples:
        fixed = jg.nn.log_uniform_candidate_sampler(jnp.zeros((B, 1), jnp.int32), 1, S, True, V,
                                                    jax.random.PRNGKey(5))

    def loss_fn(p, inputs, labels, key):
        if args.dense:
            # Reading .value makes every table a dense read: dense [V, D] gradients, as plain JAX would.
            embed = p["embeddings"].value[inputs]
            weights, biases = p["nce_weights"].value, p["nce_biases"].value
        else:
            embed = jg.nn.embedding_lookup(p["embeddings"], inputs)
            weights, biases = p["nce_weights"], p["nce_biases"]
        if fixed is not None:
            # The same negatives every step, drawn once outside: the step without the sampler's cost.
            return jnp.mean(jg.nn.nce_loss(weights, biases, labels, embed, S, V, sampled_values=fixed))
        return jnp.mean(jg.nn.nce_loss(weights, biases, labels, embed, S, V, key=key))

    def one_step(carry, batch):
        params, opt_state = carry
        inputs, labels = batch
        key = jax.random.fold_in(base_key, opt_state.iterations)
        params, opt_state, loss = opt.minimize(lambda p: loss_fn(p, inputs, labels, key), params, opt_state)
        return (params, opt_state), loss

    K = args.steps_per_call
    if K == 1:
        def step(params, opt_state, inputs, labels):
            (params, opt_state), loss = one_step((params, opt_state), (inputs, labels))
            return params, opt_state, loss
    else:
        def step(params, opt_state, inputs, labels):
            (params, opt_state), losses = jax.lax.scan(one_step, (params, opt_state), (inputs, labels))
            return params, opt_state, losses[-1]

    step = jax.jit(step, donate_argnums=(0, 1))
    n_calls = max(1, args.steps // K)
    ids, labels = _batches(args, n_calls * K)
    shape = (n_calls, K) if K > 1 else (n_calls,)
    ids_dev = jnp.asarray(ids.reshape(shape + (B,)))
    labels_dev = jnp.asarray(labels.reshape(shape + (B, 1)))
    batches = [(ids_dev[i], labels_dev[i]) for i in range(n_calls)]

    params = init(0)
    opt_state = opt.init(params)
    # Parameters plus optimizer slots: the state a training step must hold.
    param_bytes = sum(v.value.nbytes for v in jg.global_variables(params)) + sum(
        x.nbytes for x in jax.tree_util.tree_leaves(opt_state.slots))
    jax.block_until_ready(params)
    reset_peak_rss()
    rss_before = peak_rss_bytes()
    # Warm up (compile) on the first batch, then time.
    params, opt_state, loss = step(params, opt_state, *batches[0])
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for i in range(n_calls):
        params, opt_state, loss = step(params, opt_state, *batches[i])
    jax.block_until_ready((params, loss))
    elapsed = time.perf_counter() - t0
    peak = peak_rss_bytes()
    steps = n_calls * K
    ms = elapsed / steps * 1e3

    return {
        "framework": "jaxgraph", "optimizer": args.optimizer, "vocabulary_size": V, "embedding_size": D,
        "batch_size": B,
        "num_sampled": S, "steps": steps, "steps_per_call": K, "sparse": not args.dense,
        "ms_per_step": round(ms, 4), "examples_per_sec": round(B / ms * 1e3, 1),
        "final_loss": float(loss), "device": str(jax.devices()[0]), "jax": jax.__version__,
        "param_bytes": param_bytes, "peak_rss_bytes": peak, "rss_before_bytes": rss_before,
        "peak_rss_over_param_bytes": round(peak / param_bytes, 3),
        "fixed_samples": bool(args.fixed_samples),
    }


def run_tf(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    V, D, B, S = args.vocabulary_size, args.embedding_size, args.batch_size, args.num_sampled
    graph = tf.Graph()
    with graph.as_default():
        train_inputs = v1.placeholder(tf.int32, shape=[B])
        train_labels = v1.placeholder(tf.int32, shape=[B, 1])
        embeddings = tf.Variable(v1.random_uniform([V, D], -1.0, 1.0))
        embed = tf.nn.embedding_lookup(embeddings, train_inputs)
        nce_weights = tf.Variable(v1.truncated_normal([V, D], stddev=1.0 / math.sqrt(D)))
        nce_biases = tf.Variable(tf.zeros([V]))
        loss = tf.reduce_mean(v1.nn.nce_loss(weights=nce_weights, biases=nce_biases, labels=train_labels,
                                             inputs=embed, num_sampled=S, num_classes=V))
        train_op = v1.train.GradientDescentOptimizer(1.0).minimize(loss)
        init = v1.global_variables_initializer()
    ids, labels = _batches(args, args.steps + 1)
    config = v1.ConfigProto(intra_op_parallelism_threads=0, inter_op_parallelism_threads=0)
    with v1.Session(graph=graph, config=config) as sess:
        sess.run(init)
        sess.run([train_op, loss], {train_inputs: ids[0], train_labels: labels[0]})
        t0 = time.perf_counter()
        for i in range(1, args.steps + 1):
            _, loss_val = sess.run([train_op, loss], {train_inputs: ids[i], train_labels: labels[i]})
        elapsed = time.perf_counter() - t0
    ms = elapsed / args.steps * 1e3
    return {"framework": "tf1", "tensorflow": tf.__version__, "ms_per_step": round(ms, 4),
            "examples_per_sec": round(B / ms * 1e3, 1), "final_loss": float(loss_val)}


def _tf_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("tensorflow") is not None
    except ValueError:
        return False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary-size", type=int, nargs="+", default=[50_000],
                        help="one or more sizes, measured in this order in the same run")
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-sampled", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--steps-per-call", type=int, default=1,
                        help="steps run by one compiled call (lax.scan); 1 = one step per call")
    parser.add_argument("--dense", action="store_true", help="dense gradients (reads through .value)")
    parser.add_argument("--optimizer", choices=["sgd", "adagrad"], default="sgd",
                        help="sgd: the tutorial's GradientDescentOptimizer(1.0); adagrad: one slot per table")
    parser.add_argument("--no-tf", action="store_true", help="skip the TF1 baseline")
    parser.add_argument("--sampler-share", action="store_true",
                        help="also time the step with fixed negatives, to report the sampler's share")
    parser.add_argument("--fixed-samples", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tf-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.vocabulary_size
    if any(args.num_sampled >= v for v in sizes):
        parser.error("--num-sampled must be below --vocabulary-size")

    if args.tf_only:
        args.vocabulary_size = sizes[0]
        print(json.dumps(run_tf(args)))
        return 0

    results = []
    for V in sizes:
        run_args = argparse.Namespace(**{**vars(args), "vocabulary_size": V})
        print(f"config: vocabulary_size={V} embedding_size={args.embedding_size} "
              f"batch_size={args.batch_size} num_sampled={args.num_sampled} steps={args.steps} "
              f"steps_per_call={args.steps_per_call} gradients={'dense' if args.dense else 'sparse'}")
        result = run_jaxgraph(run_args)
        print(f"jaxgraph: {result['ms_per_step']:.4f} ms/step, {result['examples_per_sec']:.0f} examples/s, "
              f"loss {result['final_loss']:.3f}, peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB "
              f"for {result['param_bytes'] / 2**20:.0f} MiB of parameters and slots")
        if args.sampler_share:
            fixed = run_jaxgraph(argparse.Namespace(**{**vars(run_args), "fixed_samples": True}))
            result["ms_per_step_fixed_samples"] = fixed["ms_per_step"]
            result["sampler_share"] = round(1 - fixed["ms_per_step"] / result["ms_per_step"], 3)
            print(f"  same step with fixed negatives: {fixed['ms_per_step']:.4f} ms/step; "
                  f"sampler share of the step: {result['sampler_share']:.1%}")
        if not args.no_tf and _tf_available():
            cmd = [sys.executable, __file__, "--tf-only", "--vocabulary-size", str(V),
                   "--embedding-size", str(args.embedding_size), "--batch-size", str(args.batch_size),
                   "--num-sampled", str(args.num_sampled), "--steps", str(args.steps)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                tf_result = json.loads(proc.stdout.strip().splitlines()[-1])
                result["tf1_ms_per_step"] = tf_result["ms_per_step"]
                result["tf1_examples_per_sec"] = tf_result["examples_per_sec"]
                result["tensorflow"] = tf_result["tensorflow"]
                result["speedup_vs_tf1"] = round(tf_result["ms_per_step"] / result["ms_per_step"], 3)
                print(f"tf1 ({tf_result['tensorflow']}): {tf_result['ms_per_step']:.4f} ms/step, "
                      f"{tf_result['examples_per_sec']:.0f} examples/s; jaxgraph/tf1 examples/s ratio "
                      f"{result['speedup_vs_tf1']:.2f}x")
            else:
                print("tf1 baseline failed:", proc.stderr.strip().splitlines()[-1:] or proc.returncode)
        if results:
            result["ms_per_step_over_first_size"] = round(result["ms_per_step"] / results[0]["ms_per_step"], 3)
            print(f"step time at vocabulary {V} / at {results[0]['vocabulary_size']}: "
                  f"{result['ms_per_step_over_first_size']:.2f}x")
        results.append(result)
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
