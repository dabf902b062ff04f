"""What does an optax optimizer cost on an embedding table? Lazy rows against dense optax, one run.

The model: ``loss = mean(softplus(-(table[ids] @ w)))``, a ``[vocabulary, 64]`` table, 128 ids per
step, ``optax.adam(1e-3)``; every step under ``jax.jit`` with parameters and optimizer state donated.
Three ways, timed in the same process (interleaved, alternating which goes first, median ms/step):

- **lazy**: ``jaxgraph.train.OptaxOptimizer(optax.adam(1e-3))`` on ``Variable`` parameters read through
  ``embedding_lookup``: an ``IndexedSlices`` gradient, only the touched rows of the table and of
  Adam's ``mu``/``nu`` updated (``lazy_optax``).
- **dense**: plain JAX: ``jax.value_and_grad`` of the same loss on the table (a dense ``[V, 64]``
  gradient), ``optax.adam`` and ``optax.apply_updates``: every row of the table and moments moves.
  (It is also what ``OptaxOptimizer`` did with sparse gradients before ``lazy_optax``.)
- **core**: jaxgraph's own ``LazyAdamOptimizer(1e-3)`` (TF's lazy Adam rule, written by hand).

The lazy and core steps should not grow with the vocabulary; the dense one grows with it. The last
line of output is one JSON object.

    PYTHONPATH=. python benchmarks/lazy_optax.py --vocabulary-size 10000 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import jaxgraph as jg  # noqa: E402

DIM, BATCH, LR = 64, 128, 1e-3


def _loss(rows: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.mean(jax.nn.softplus(-(rows @ w)))


def jaxgraph_step(opt):
    def step(params, state, ids):
        return opt.minimize(lambda p: _loss(jg.nn.embedding_lookup(p["emb"], ids), p["w"].value), params, state)

    return jax.jit(step, donate_argnums=(0, 1))


def dense_step(tx):
    def step(params, state, ids):
        loss, grads = jax.value_and_grad(lambda p: _loss(p["emb"][ids], p["w"]))(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return jax.jit(step, donate_argnums=(0, 1))


def setup(kind: str, vocab: int):
    rng = np.random.default_rng(0)
    table = (rng.standard_normal((vocab, DIM)) * 0.1).astype(np.float32)
    w = (rng.standard_normal(DIM) * 0.1).astype(np.float32)
    if kind == "dense":
        tx = optax.adam(LR)
        params = {"emb": jnp.asarray(table), "w": jnp.asarray(w)}
        return dense_step(tx), params, tx.init(params)
    opt = jg.train.OptaxOptimizer(optax.adam(LR)) if kind == "lazy" else jg.train.LazyAdamOptimizer(LR)
    params = {"emb": jg.Variable(table, name="emb"), "w": jg.Variable(w, name="w")}
    return jaxgraph_step(opt), params, opt.init(params)


def run(vocab: int, steps: int, repeats: int) -> dict:
    ids = [jnp.asarray(np.random.default_rng(i).integers(0, vocab, BATCH), jnp.int32) for i in range(steps)]
    kinds = ["lazy", "dense", "core"]
    live = {}
    for kind in kinds:
        step, params, state = setup(kind, vocab)
        params, state, loss = step(params, state, ids[0])  # compile
        jax.block_until_ready(loss)
        live[kind] = [step, params, state]
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(repeats):
        for kind in kinds[r % len(kinds):] + kinds[:r % len(kinds)]:
            step, params, state = live[kind]
            t0 = time.perf_counter()
            for i in range(steps):
                params, state, loss = step(params, state, ids[i])
            jax.block_until_ready((params, state))
            times[kind].append((time.perf_counter() - t0) / steps * 1e3)
            live[kind][1:] = [params, state]
    ms = {k: statistics.median(v) for k, v in times.items()}
    return {"vocabulary": vocab, "ms_per_step": {k: round(v, 4) for k, v in ms.items()},
            "dense_over_lazy": round(ms["dense"] / ms["lazy"], 2), "lazy_over_core": round(ms["lazy"] / ms["core"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocabulary-size", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    config = {"dim": DIM, "batch": BATCH, "optimizer": f"adam({LR})", "steps": args.steps,
              "repeats": args.repeats, "jax": jax.__version__, "optax": optax.__version__,
              "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    print("configuration:", json.dumps(config))
    results = []
    for vocab in args.vocabulary_size:
        res = run(vocab, args.steps, args.repeats)
        ms = res["ms_per_step"]
        print(f"V={vocab:>9,}  lazy {ms['lazy']:9.3f} ms  dense {ms['dense']:9.3f} ms  core {ms['core']:9.3f} ms"
              f"  dense/lazy {res['dense_over_lazy']:8.2f}x  lazy/core {res['lazy_over_core']:.3f}", flush=True)
        results.append(res)
    print(json.dumps({"config": config, "results": results}))


if __name__ == "__main__":
    main()
