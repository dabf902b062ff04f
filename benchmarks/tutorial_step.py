"""The compiled training program of ``examples/word2vec/word2vec_basic.py`` against an earlier version of it.

Both programs come from ``make_train_fn``: the working tree's, and the one in ``--baseline-rev`` (read with
``git show`` and loaded as a module), each compiled with the XLA:CPU options word2vec_basic uses. They run
alternately in this one process on the same parameters, key and batches (Zipf-like ids, the tutorial's
sizes: vocabulary 10,000, batch 128, 128-d, 64 sampled, ``--steps-per-call`` steps per call), and the
script checks that they compute the same losses and tables before it times them. Printed: CPU and wall
time per step of each (median over ``--repeats`` rounds), and the ratio baseline / new.

Usage::

    PYTHONPATH=. python benchmarks/tutorial_step.py --baseline-rev b1f3dce --calls 40 --repeats 7
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# The options word2vec_basic passes to XLA:CPU for its training program (YNN fusions off).
_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_MODULE = "examples/word2vec/word2vec_basic.py"


def _load_revision(rev: str):
    """``word2vec_basic`` as it was at ``rev``."""
    source = subprocess.run(["git", "show", f"{rev}:{_MODULE}"], check=True, capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), f"word2vec_basic_{rev.replace('/', '_')}.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(f"word2vec_basic_{rev}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _program(module, args, init_fn, k):
    import jax

    import jaxgraph as jg

    optimizer = jg.train.GradientDescentOptimizer(1.0)
    params, opt_state, key = jax.eval_shape(init_fn)
    lowered = module.make_train_fn(optimizer, args.num_sampled, args.vocabulary_size).lower(
        params, opt_state, key,
        jax.ShapeDtypeStruct((k, args.batch_size), np.int32),
        jax.ShapeDtypeStruct((k, args.batch_size, 1), np.int32),
        jax.ShapeDtypeStruct((), np.int32),
    )
    try:
        return lowered.compile(_OPTIONS)
    except Exception:  # an XLA without the option
        return lowered.compile()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-rev", default="b1f3dce", help="git revision of the baseline word2vec_basic.py")
    p.add_argument("--vocabulary-size", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--num-sampled", type=int, default=64)
    p.add_argument("--steps-per-call", type=int, default=100)
    p.add_argument("--calls", type=int, default=40, help="calls per variant per round")
    p.add_argument("--repeats", type=int, default=7, help="rounds, alternating which variant goes first")
    args = p.parse_args(argv)

    import jax

    import jaxgraph as jg
    from examples.word2vec import word2vec_basic as new_module

    base_module = _load_revision(args.baseline_rev)
    k = args.steps_per_call
    optimizer = jg.train.GradientDescentOptimizer(1.0)
    init_fn = new_module.make_init_fn(optimizer, args.vocabulary_size, args.embedding_size, 0)
    variants = {"baseline": _program(base_module, args, init_fn, k), "new": _program(new_module, args, init_fn, k)}

    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, size=(args.calls, k, args.batch_size)) - 1, args.vocabulary_size - 1)
    labels = np.minimum(rng.zipf(1.3, size=(args.calls, k, args.batch_size, 1)) - 1, args.vocabulary_size - 1)
    ids, labels = jax.device_put(ids.astype(np.int32)), jax.device_put(labels.astype(np.int32))

    # Same inputs, same results: the new program computes what the baseline did.
    results = {}
    for name, program in variants.items():
        params, opt_state, key = init_fn()
        losses = []
        for c in range(3):
            params, opt_state, loss, summaries = program(params, opt_state, key, ids[c], labels[c], np.int32(k))
            losses.append(np.asarray(loss))
            assert np.array_equal(np.asarray(summaries["loss"]), losses[-1]), "summaries differ from the losses"
        results[name] = (np.concatenate(losses), jax.device_get(params))
    (base_losses, base_params), (new_losses, new_params) = results["baseline"], results["new"]
    max_loss_diff = float(np.max(np.abs(base_losses - new_losses)))
    max_table_diff = max(
        float(np.max(np.abs(np.asarray(base_params[n].value) - np.asarray(new_params[n].value))))
        for n in ("embeddings", "nce_weights", "nce_biases")
    )
    print(f"after {3 * k} steps: max |loss difference| {max_loss_diff:.3g}, "
          f"max |table difference| {max_table_diff:.3g}")

    def timed(program):
        params, opt_state, key = init_fn()
        params, opt_state, _, _ = program(params, opt_state, key, ids[0], labels[0], np.int32(k))
        jax.block_until_ready(params)
        c0, w0 = time.process_time(), time.perf_counter()
        for c in range(args.calls):
            params, opt_state, loss, _ = program(params, opt_state, key, ids[c], labels[c], np.int32(k))
        jax.block_until_ready((params, loss))
        steps = args.calls * k
        return (time.process_time() - c0) / steps * 1e6, (time.perf_counter() - w0) / steps * 1e6

    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for r in range(args.repeats):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            figures[name].append(timed(variants[name]))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, load average {os.getloadavg()[0]:.1f}; "
          f"vocabulary {args.vocabulary_size}, batch {args.batch_size}, {args.embedding_size}-d, "
          f"{args.num_sampled} sampled, {k} steps per call, {args.calls} calls x {args.repeats} rounds")
    med = {n: (statistics.median(c for c, _ in f), statistics.median(w for _, w in f)) for n, f in figures.items()}
    for name, (cpu, wall) in med.items():
        print(f"{name:9s} CPU {cpu:7.1f} us/step   wall {wall:7.1f} us/step")
    (base_cpu, base_wall), (new_cpu, new_wall) = med["baseline"], med["new"]
    print(f"ratio baseline/new: CPU {base_cpu / new_cpu:.2f}x, wall {base_wall / new_wall:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
