"""The compiled training program of ``examples/word2vec/word2vec_basic.py`` against an earlier version of it.

Both programs come from ``make_train_fn``: the working tree's, and the one in ``--baseline-rev`` (read with
``git show`` and loaded as a module). Each runs in a fresh subprocess set up as that revision's
``word2vec_basic`` sets up JAX and compiles the program (``start_jax_backend`` and ``compile_train_program``
where the revision has them: the backend's thread setting is per process, hence the subprocesses), on the
same parameters, key and batches (Zipf-like ids, the tutorial's sizes: vocabulary 10,000, batch 128, 128-d,
64 sampled, ``--steps-per-call`` steps per call). The subprocesses alternate (``--repeats`` pairs); the script
checks that both compute the same losses and tables, and prints CPU and wall time per step of each (median
over the pairs) and the ratio baseline / new. The batch generator is measured the same way
(``basic_batches.generate_batches`` on 547,301 random ids, 100 batches per call, TF's sizes). Last, in this
process, the event writer: ``FileWriter.add_summary`` of a call's stacked losses (the hand-encoded scalar
events) against the same steps as a list of dicts (the protobuf classes), CPU per event.

Usage::

    PYTHONPATH=. python benchmarks/tutorial_step.py --baseline-rev b1f3dce --calls 20 --repeats 5
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

# The options word2vec_basic passed to XLA:CPU for its training program (YNN fusions off) before it had
# compile_train_program; a revision that has it is compiled with it.
_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_revision(rev: str, path: str):
    """``path`` (a module under the repository) as it was at ``rev``."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], check=True, capture_output=True, text=True,
                            cwd=_REPO).stdout
    name = f"{os.path.basename(path)[:-3]}_{rev.replace('/', '_')}"
    file = os.path.join(tempfile.mkdtemp(), f"{name}.py")
    with open(file, "w", encoding="utf-8") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(args) -> dict:
    """One variant in this process: its step's CPU/wall per step and a digest of what it computed."""
    if args.child == "baseline":
        w2v = _load_revision(args.baseline_rev, "examples/word2vec/word2vec_basic.py")
        batches = _load_revision(args.baseline_rev, "examples/word2vec/basic_batches.py")
    else:
        from examples.word2vec import basic_batches as batches
        from examples.word2vec import word2vec_basic as w2v
    if hasattr(w2v, "start_jax_backend"):
        w2v.start_jax_backend()
    import jax

    import jaxgraph as jg
    from examples.word2vec.data import BatchState

    k = args.steps_per_call
    optimizer = jg.train.GradientDescentOptimizer(1.0)
    init_fn = w2v.make_init_fn(optimizer, args.vocabulary_size, args.embedding_size, 0)
    params, opt_state, key = jax.eval_shape(init_fn)
    lowered = w2v.make_train_fn(optimizer, args.num_sampled, args.vocabulary_size).lower(
        params, opt_state, key,
        jax.ShapeDtypeStruct((k, args.batch_size), np.int32),
        jax.ShapeDtypeStruct((k, args.batch_size, 1), np.int32),
        jax.ShapeDtypeStruct((), np.int32),
    )
    if hasattr(w2v, "compile_train_program"):
        program, _ = w2v.compile_train_program(lowered)
    else:
        program = lowered.compile(_OPTIONS)

    rng = np.random.default_rng(0)
    ids = np.minimum(rng.zipf(1.3, size=(args.calls, k, args.batch_size)) - 1, args.vocabulary_size - 1)
    labels = np.minimum(rng.zipf(1.3, size=(args.calls, k, args.batch_size, 1)) - 1, args.vocabulary_size - 1)
    ids, labels = jax.device_put(ids.astype(np.int32)), jax.device_put(labels.astype(np.int32))

    digest = hashlib.sha256()
    params, opt_state, key = init_fn()
    for c in range(3):
        params, opt_state, loss, summaries = program(params, opt_state, key, ids[c], labels[c], np.int32(k))
        assert np.array_equal(np.asarray(summaries["loss"]), np.asarray(loss)), "summaries differ from the losses"
        digest.update(np.asarray(loss).tobytes())
    for name in ("embeddings", "nce_weights", "nce_biases"):
        digest.update(np.asarray(params[name].value).tobytes())

    params, opt_state, key = init_fn()
    params, opt_state, _, _ = program(params, opt_state, key, ids[0], labels[0], np.int32(k))
    jax.block_until_ready(params)
    c0, w0 = time.process_time(), time.perf_counter()
    for c in range(args.calls):
        params, opt_state, loss, _ = program(params, opt_state, key, ids[c], labels[c], np.int32(k))
    jax.block_until_ready((params, loss))
    steps = args.calls * k
    step_cpu, step_wall = (time.process_time() - c0) / steps * 1e6, (time.perf_counter() - w0) / steps * 1e6

    words = np.random.default_rng(1).integers(0, args.vocabulary_size, 547301).astype(np.int32)
    word_list, state = words.tolist(), BatchState.seeded(0)
    c0 = time.process_time()
    for _ in range(args.calls):
        inputs, batch_labels = batches.generate_batches(word_list, k, args.batch_size, 2, 1, state, words)
        digest.update(inputs.tobytes() + batch_labels.tobytes())
    batch_cpu = (time.process_time() - c0) / steps * 1e6
    digest.update(repr(state.rng.getstate()).encode())
    return {"step_cpu_us": step_cpu, "step_wall_us": step_wall, "batch_cpu_us": batch_cpu,
            "digest": digest.hexdigest(), "load": os.getloadavg()[0]}


def _summary_costs(steps: int, calls: int) -> tuple[float, float]:
    """CPU per event of ``FileWriter.add_summary`` for a call's stacked losses (``{"loss": f32[steps]}``,
    as word2vec_basic writes them) and for the same steps as a list of dicts (the protobuf classes' path)."""
    from jaxgraph import summary

    losses = np.random.default_rng(0).random(steps).astype(np.float32)
    listed = [{"loss": v} for v in losses]
    cost = {"stacked": 0.0, "listed": 0.0}
    with tempfile.TemporaryDirectory() as logdir, summary.FileWriter(logdir) as writer:
        for c in range(calls):
            for name, value in (("stacked", {"loss": losses}), ("listed", listed)):
                c0 = time.process_time()
                writer.add_summary(value, global_step=c * steps)
                cost[name] += time.process_time() - c0
    return cost["stacked"] / (calls * steps) * 1e6, cost["listed"] / (calls * steps) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-rev", default="b1f3dce", help="git revision of the baseline word2vec_basic.py")
    p.add_argument("--vocabulary-size", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--num-sampled", type=int, default=64)
    p.add_argument("--steps-per-call", type=int, default=100)
    p.add_argument("--calls", type=int, default=20, help="timed calls per variant per process")
    p.add_argument("--repeats", type=int, default=5, help="pairs of processes, alternating which goes first")
    p.add_argument("--child", choices=["baseline", "new"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args)))
        return 0

    flags = list(argv if argv is not None else sys.argv[1:])
    env = dict(os.environ, PYTHONPATH=_REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs: dict[str, list[dict]] = {"baseline": [], "new": []}
    for r in range(args.repeats):
        for variant in (["baseline", "new"] if r % 2 == 0 else ["new", "baseline"]):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), *flags, "--child", variant],
                                 check=True, capture_output=True, text=True, cwd=_REPO, env=env).stdout
            runs[variant].append(json.loads(out.strip().splitlines()[-1]))
    digests = {v: {run["digest"] for run in rs} for v, rs in runs.items()}
    same = digests["baseline"] == digests["new"] and len(digests["new"]) == 1
    print(f"baseline {args.baseline_rev} vs working tree: losses, tables, batches and random state after "
          f"{3 * args.steps_per_call} steps / {args.calls * args.steps_per_call} batches "
          f"{'identical' if same else 'DIFFERENT'}")
    print(f"vocabulary {args.vocabulary_size}, batch {args.batch_size}, {args.embedding_size}-d, {args.num_sampled} "
          f"sampled, {args.steps_per_call} steps per call, {args.calls} calls per process, {args.repeats} pairs; "
          f"load average {min(r['load'] for rs in runs.values() for r in rs):.1f}-"
          f"{max(r['load'] for rs in runs.values() for r in rs):.1f}")
    med = {v: {f: statistics.median(r[f] for r in rs) for f in ("step_cpu_us", "step_wall_us", "batch_cpu_us")}
           for v, rs in runs.items()}
    for v, m in med.items():
        print(f"{v:9s} compiled step: CPU {m['step_cpu_us']:6.1f} us/step, wall {m['step_wall_us']:6.1f} us/step; "
              f"batches: CPU {m['batch_cpu_us']:5.1f} us/batch")
    b, n = med["baseline"], med["new"]
    print(f"ratio baseline/new: compiled step CPU {b['step_cpu_us'] / n['step_cpu_us']:.2f}x, "
          f"wall {b['step_wall_us'] / n['step_wall_us']:.2f}x; "
          f"batches CPU {b['batch_cpu_us'] / n['batch_cpu_us']:.2f}x")
    stacked, listed = _summary_costs(args.steps_per_call, 10 * args.calls)
    print(f"FileWriter.add_summary, CPU per event: stacked scalars (encoded by hand) {stacked:.2f} us, the same "
          f"steps as a list of dicts (protobuf classes) {listed:.2f} us: {listed / stacked:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
