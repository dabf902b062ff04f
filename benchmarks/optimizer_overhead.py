"""Does jaxgraph's TF1 optimizer API cost anything at run time? A dense MLP trained two ways.

Both sides run the same model, data and update math under ``jax.jit`` with the parameters and the
optimizer state donated:

- **jaxgraph**: ``Variable`` parameter tree, ``opt.minimize(loss_fn, params, opt_state)`` (which runs
  ``compute_gradients``' structural analysis at trace time, then ``apply_gradients``).
- **hand-written**: plain arrays, ``jax.value_and_grad`` + an ``optax`` transformation +
  ``optax.apply_updates``.

Optimizers: ``GradientDescentOptimizer(lr)`` vs ``optax.sgd(lr)`` (identical math), and
``AdamOptimizer(lr)`` vs ``optax.adam(lr, eps=...)``. TF1's Adam adds epsilon to the uncorrected
sqrt(v) ("epsilon hat"), optax after bias correction; they agree when optax's eps is
``eps_tf / sqrt(1 - beta2**t)``. We pass that value for t = 1 (the difference afterwards is far below
float32 resolution of these updates, and the cost is the same either way).

Timings interleave the two implementations (alternating which goes first) over ``--repeats`` rounds of
``--steps`` steps each, and report the median ms/step of each and the ratio jaxgraph / optax. The last
line of output is one JSON object.

    python benchmarks/optimizer_overhead.py --steps 20 --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

import jaxgraph as jg  # noqa: E402
from jaxgraph.train import AdamOptimizer, GradientDescentOptimizer  # noqa: E402

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


def init_arrays(sizes: list[int], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    layers = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers[f"dense{i}"] = {
            "w": (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)).astype(np.float32),
            "b": np.zeros((fan_out,), np.float32),
        }
    return layers


def mlp(layers: dict, x: jax.Array, read=lambda v: v) -> jax.Array:
    names = sorted(layers, key=lambda n: int(n[len("dense"):]))
    for i, name in enumerate(names):
        x = x @ read(layers[name]["w"]) + read(layers[name]["b"])
        if i < len(names) - 1:
            x = jax.nn.relu(x)
    return x


def xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def make_jaxgraph_step(kind: str, lr: float):
    opt = GradientDescentOptimizer(lr) if kind == "sgd" else AdamOptimizer(lr, BETA1, BETA2, EPS)

    def loss_fn(params, x, y):
        return xent(mlp(params, x, read=lambda v: v.value), y)

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y):
        return opt.minimize(lambda p: loss_fn(p, x, y), params, opt_state)

    return opt, step


def make_optax_step(kind: str, lr: float):
    if kind == "sgd":
        tx = optax.sgd(lr)
    else:
        tx = optax.adam(lr, b1=BETA1, b2=BETA2, eps=EPS / np.sqrt(1.0 - BETA2))

    def loss_fn(params, x, y):
        return xent(mlp(params, x), y)

    @partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return tx, step


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def bench(kind: str, args, sizes: list[int], batches) -> dict:
    arrays = init_arrays(sizes)
    lr = 0.01 if kind == "sgd" else 1e-3

    jg_opt, jg_step = make_jaxgraph_step(kind, lr)
    jg_params = jax.tree_util.tree_map(lambda a: jg.Variable(jnp.asarray(a)), arrays)
    jg_state = jg_opt.init(jg_params)
    tx, ox_step = make_optax_step(kind, lr)
    ox_params = jax.tree_util.tree_map(jnp.asarray, arrays)
    ox_state = tx.init(ox_params)

    # Warm up (compile) and check that both compute the same thing over a few steps.
    t0 = time.perf_counter()
    for x, y in batches[:3]:
        jg_params, jg_state, jg_loss = jg_step(jg_params, jg_state, x, y)
    jax.block_until_ready(jg_loss)
    jg_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for x, y in batches[:3]:
        ox_params, ox_state, ox_loss = ox_step(ox_params, ox_state, x, y)
    jax.block_until_ready(ox_loss)
    ox_compile = time.perf_counter() - t0
    # Same math? Compare the parameter changes of the 3 steps: ||d_jaxgraph - d_optax|| / ||d_optax||.
    max_rel_diff = max(
        float(np.linalg.norm(a - b) / (np.linalg.norm(b - a0) + 1e-30))
        for a, b, a0 in zip(_leaves(jg_params), _leaves(ox_params), _leaves(arrays), strict=True)
    )

    times: dict[str, list[float]] = {"jaxgraph": [], "optax": []}
    n = len(batches)
    for r in range(args.repeats):
        order = ["jaxgraph", "optax"] if r % 2 == 0 else ["optax", "jaxgraph"]
        for impl in order:
            t0 = time.perf_counter()
            if impl == "jaxgraph":
                for i in range(args.steps):
                    x, y = batches[i % n]
                    jg_params, jg_state, loss = jg_step(jg_params, jg_state, x, y)
            else:
                for i in range(args.steps):
                    x, y = batches[i % n]
                    ox_params, ox_state, loss = ox_step(ox_params, ox_state, x, y)
            jax.block_until_ready(loss)
            times[impl].append((time.perf_counter() - t0) * 1e3 / args.steps)

    jg_ms = statistics.median(times["jaxgraph"])
    ox_ms = statistics.median(times["optax"])
    return {
        "optimizer": kind,
        "jaxgraph_ms_per_step": round(jg_ms, 3),
        "optax_ms_per_step": round(ox_ms, 3),
        "ratio_jaxgraph_over_optax": round(jg_ms / ox_ms, 4),
        "jaxgraph_ms_all": [round(t, 3) for t in times["jaxgraph"]],
        "optax_ms_all": [round(t, 3) for t in times["optax"]],
        "warmup_3_steps_s": {"jaxgraph": round(jg_compile, 3), "optax": round(ox_compile, 3)},
        "max_rel_update_diff_after_3_steps": max_rel_diff,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per implementation")
    parser.add_argument("--optimizer", choices=["sgd", "adam", "both"], default="both")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=str, default="1024,2048,2048,10", help="layer widths, input first")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    rng = np.random.default_rng(1)
    batches = [
        (jnp.asarray(rng.standard_normal((args.batch, sizes[0])).astype(np.float32)),
         jnp.asarray(rng.integers(0, sizes[-1], size=args.batch).astype(np.int32)))
        for _ in range(4)
    ]
    config = {
        "model": "MLP " + "-".join(map(str, sizes)),
        "parameters": n_params,
        "batch": args.batch,
        "steps": args.steps,
        "repeats": args.repeats,
        "jax": jax.__version__,
        "optax": optax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }
    print("configuration:", json.dumps(config))
    kinds = ["sgd", "adam"] if args.optimizer == "both" else [args.optimizer]
    results = []
    for kind in kinds:
        res = bench(kind, args, sizes, batches)
        results.append(res)
        print(
            f"{kind:5s} jaxgraph {res['jaxgraph_ms_per_step']:9.3f} ms/step   optax {res['optax_ms_per_step']:9.3f}"
            f" ms/step   ratio {res['ratio_jaxgraph_over_optax']:.3f}   "
            f"(max rel update diff after 3 steps {res['max_rel_update_diff_after_3_steps']:.1e})"
        )
    out = {"benchmark": "optimizer_overhead", "config": config, "results": results}
    print(json.dumps(out))
    sys.stdout.flush()
    return out


if __name__ == "__main__":
    main()
