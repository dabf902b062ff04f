"""One process of the multi-process test: a sharded word2vec-like NCE step on a global mesh.

Run as ``python tests/distributed/worker.py OUT.npz [COORDINATOR PROCESS_COUNT PROCESS_ID]``; without the
last three it runs as a single process. Every process holds 4 virtual CPU devices, so two processes
form one 8-device mesh, as one process with 8 devices does.
"""

import os
import sys

out_path = sys.argv[1]
distributed = len(sys.argv) > 2
n_local = 4 if distributed else 8
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_local}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

if distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[2], num_processes=int(sys.argv[3]),
                               process_id=int(sys.argv[4]))

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import jaxgraph as jg  # noqa: E402
from jaxgraph.sharding import make_mesh, shard_batch, shard_opt_state, shard_params  # noqa: E402

V, D, B, S, STEPS = 4096, 32, 64, 16, 5
rng = np.random.default_rng(0)
host_params = {
    "embeddings": jg.Variable(rng.uniform(-1, 1, (V, D)).astype(np.float32)),
    "nce_weights": jg.Variable((rng.standard_normal((V, D)) / np.sqrt(D)).astype(np.float32)),
    "nce_biases": jg.Variable(np.zeros(V, np.float32)),
}
inputs = rng.integers(0, V, (STEPS, B)).astype(np.int32)
labels = rng.integers(0, V, (STEPS, B, 1)).astype(np.int32)
opt = jg.train.AdagradOptimizer(0.5)
rules = [("embeddings|nce_weights|nce_biases", P("data"))]
mesh = make_mesh()
assert mesh.devices.size == 8, mesh


def step(params, opt_state, x, y):
    key = jax.random.fold_in(jax.random.PRNGKey(7), opt_state.iterations)

    def loss(p):
        embed = jg.nn.embedding_lookup(p["embeddings"], x)
        return jnp.mean(jg.nn.nce_loss(p["nce_weights"], p["nce_biases"], y, embed, S, V, key=key))

    return opt.minimize(loss, params, opt_state)


params = shard_params(host_params, mesh, rules)
opt_state = shard_opt_state(opt.init(params), params, mesh, rules)
train_step = jax.jit(step, donate_argnums=(0, 1))
losses = []
for i in range(STEPS):
    x, y = shard_batch((inputs[i], labels[i]), mesh)
    params, opt_state, loss = train_step(params, opt_state, x, y)
    losses.append(float(np.asarray(loss.addressable_data(0))))
emb = np.asarray(multihost_utils.process_allgather(params["embeddings"].value, tiled=True))
if jax.process_index() == 0:
    np.savez(out_path, embeddings=emb, losses=np.array(losses))
print("process", jax.process_index(), "of", jax.process_count(), "devices", jax.device_count(), "done")
