"""Data-parallel word2vec NCE steps on 1, 2, 4, 8 devices, tables row-sharded (jaxgraph.sharding).

Weak scaling: each device gets ``--per-device-batch`` examples, so the global batch grows with the
device count. On this CPU machine the devices are virtual (``--xla_force_host_platform_device_count``)
and share the same cores, so the figures measure the overhead of sharding (collectives, partitioned
gathers and scatters), not a speed-up; on a machine with several GPUs or TPU cores they measure the
speed-up.

    python benchmarks/scaling.py --vocabulary-size 100000 --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxgraph as jg  # noqa: E402
from jaxgraph.sharding import make_mesh, shard_batch, shard_opt_state, shard_params  # noqa: E402


def run(n_devices: int, args) -> dict:
    V, D, S = args.vocabulary_size, args.embedding_size, args.num_sampled
    B = args.per_device_batch * n_devices
    rng = np.random.default_rng(0)
    host = {
        "embeddings": jg.Variable(rng.uniform(-1, 1, (V, D)).astype(np.float32)),
        "nce_weights": jg.Variable((rng.standard_normal((V, D)) / np.sqrt(D)).astype(np.float32)),
        "nce_biases": jg.Variable(np.zeros(V, np.float32)),
    }
    rules = [("embeddings|nce_weights|nce_biases", P("data"))]
    mesh = make_mesh(n_devices)
    opt = jg.train.GradientDescentOptimizer(1.0)

    def step(params, opt_state, x, y):
        key = jax.random.fold_in(jax.random.PRNGKey(0), opt_state.iterations)

        def loss(p):
            embed = jg.nn.embedding_lookup(p["embeddings"], x)
            return jnp.mean(jg.nn.nce_loss(p["nce_weights"], p["nce_biases"], y, embed, S, V, key=key))

        return opt.minimize(loss, params, opt_state)

    params = shard_params(host, mesh, rules)
    opt_state = shard_opt_state(opt.init(params), params, mesh, rules)
    xs = rng.integers(0, V, (args.steps + 1, B)).astype(np.int32)
    ys = rng.integers(0, V, (args.steps + 1, B, 1)).astype(np.int32)
    batches = [shard_batch((xs[i], ys[i]), mesh) for i in range(args.steps + 1)]
    train_step = jax.jit(step, donate_argnums=(0, 1))
    params, opt_state, loss = train_step(params, opt_state, *batches[0])
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        params, opt_state, loss = train_step(params, opt_state, *batches[i])
        # One step in flight at a time: with many virtual devices on few cores, queued steps can starve
        # a collective's rendezvous (XLA aborts after 40 s); real accelerators do not need this.
        loss.block_until_ready()
    jax.block_until_ready(params)
    elapsed = time.perf_counter() - t0
    return {"devices": n_devices, "global_batch": B, "ms_per_step": round(elapsed / args.steps * 1e3, 4),
            "examples_per_sec": round(B * args.steps / elapsed, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary-size", type=int, default=100_000)
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--per-device-batch", type=int, default=128)
    parser.add_argument("--num-sampled", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args(argv)
    print(f"config: vocabulary_size={args.vocabulary_size} embedding_size={args.embedding_size} "
          f"per_device_batch={args.per_device_batch} num_sampled={args.num_sampled} steps={args.steps} "
          f"platform={jax.devices()[0].platform} device_count={jax.device_count()} cpu_count={os.cpu_count()}")
    results = []
    for n in args.devices:
        if n > jax.device_count():
            print(f"skipping {n} devices: only {jax.device_count()} present")
            continue
        r = run(n, args)
        results.append(r)
        base = results[0]["examples_per_sec"]
        print(f"{n} device(s): {r['ms_per_step']:.3f} ms/step, {r['examples_per_sec']:.0f} examples/s "
              f"({r['examples_per_sec'] / base:.2f}x the 1-device rate)")
    print(json.dumps({"platform": jax.devices()[0].platform, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
