"""What ``--replica-sync call``'s sum of the devices' updates costs, and what other collectives would.

Two float32 tables (``--vocabulary-size`` x ``--embedding-size``, as the trainer's two embedding tables) on two
virtual CPU devices under ``shard_map``; each device makes an update, and the devices' updates are combined by:
``psum`` (the trainer's ``step._sum_updates``), a reduce-scatter + all-gather, or a ``ppermute`` of the update (two
devices only). ``none`` does the same elementwise work with no collective: the baseline of the same run. Each
figure: milliseconds per sum (median of ``--rounds`` rounds of ``--repeats`` calls), and the collective's own cost
(minus ``none``). Every variant's result is checked against ``psum``'s.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/replica_sync_sum.py --vocabulary-size 34000 --embedding-size 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

VARIANTS = ("none", "psum", "reduce_scatter_all_gather", "ppermute")


def combiner(kind: str, mesh: Mesh):
    """A jitted ``(a, b) -> (a', b')``: each device adds its own update, then the updates are combined by ``kind``."""
    def combine(delta):
        if kind == "none":
            return delta * 2
        if kind == "psum":
            return jax.lax.psum(delta, "data")
        if kind == "reduce_scatter_all_gather":
            part = jax.lax.psum_scatter(delta, "data", scatter_dimension=0, tiled=True)
            return jax.lax.all_gather(part, "data", axis=0, tiled=True)
        return delta + jax.lax.ppermute(delta, "data", [(0, 1), (1, 0)])

    def per_device(a, b):
        d = jax.lax.axis_index("data") + 1
        return tuple(x + combine((x + d * scale) - x) for x, scale in ((a, 1e-3), (b, 2e-3)))

    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocabulary-size", type=int, default=34_000, help="rows per table (even: the reduce-scatter)")
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    opts = p.parse_args(argv)
    if opts.vocabulary_size < 2 or opts.vocabulary_size % 2:
        raise SystemExit("error: --vocabulary-size must be an even number (the reduce-scatter splits the rows)")
    if len(jax.devices("cpu")) < 2:
        raise SystemExit("error: needs 2 CPU devices; JAX started before XLA_FLAGS could ask for them")
    mesh = Mesh(np.array(jax.devices("cpu")[:2]), ("data",))
    shape = (opts.vocabulary_size, opts.embedding_size)
    fns = {kind: combiner(kind, mesh) for kind in VARIANTS}
    start = (jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32))
    reference = fns["psum"](*start)
    for kind in VARIANTS[2:]:
        for got, want in zip(fns[kind](*start), reference, strict=True):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, err_msg=kind)
    times: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    for r in range(opts.rounds):
        for kind in VARIANTS if r % 2 == 0 else reversed(VARIANTS):
            state = jax.block_until_ready(fns[kind](*start))
            t0 = time.perf_counter()
            for _ in range(opts.repeats):
                state = fns[kind](*state)
            jax.block_until_ready(state)
            times[kind].append((time.perf_counter() - t0) / opts.repeats * 1e3)
    base = statistics.median(times["none"])
    print(f"# replica_sync_sum: two {shape[0]:,} x {shape[1]} float32 tables, 2 virtual CPU devices, jax "
          f"{jax.__version__}; ms per sum, median of {opts.rounds} rounds of {opts.repeats}")
    for kind in VARIANTS:
        median = statistics.median(times[kind])
        extra = "" if kind == "none" else f"  (collective {median - base:6.1f} ms)"
        print(f"{kind:>26}: {median:7.1f} ms{extra}")


if __name__ == "__main__":
    main()
