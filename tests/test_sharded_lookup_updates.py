"""Lookups in a list of shards give each shard an IndexedSlices with shard-local indices, and sparse
updates through them touch exactly the rows a single table would (lazy optimizers included)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxgraph as jg

IDS = jnp.array([[2, 4], [4, 7]])  # repeats on purpose
N_ROWS, N_SHARDS = 9, 3


def _table():
    return np.arange(N_ROWS * 2, dtype=np.float32).reshape(N_ROWS, 2) / 10.0


def _shards(strategy):
    table = _table()
    if strategy == "mod":
        return [table[p::N_SHARDS] for p in range(N_SHARDS)]
    return [table[3 * p:3 * p + 3] for p in range(N_SHARDS)]


def _unshard(shards, strategy):
    if strategy == "div":
        return np.concatenate(shards)
    out = np.zeros((N_ROWS, 2), np.float32)
    for p, s in enumerate(shards):
        out[p::N_SHARDS] = s
    return out


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_each_shard_gets_local_indices_of_its_own_ids(strategy):
    params = {f"s{p}": jg.Variable(s) for p, s in enumerate(_shards(strategy))}
    opt = jg.train.GradientDescentOptimizer(1.0)

    def loss(p):
        return jnp.sum(jg.nn.embedding_lookup([p["s0"], p["s1"], p["s2"]], IDS, partition_strategy=strategy))

    _, grads_and_vars = opt.compute_gradients(loss, params)
    owned = {}
    for g, v in grads_and_vars:
        assert isinstance(g, jg.IndexedSlices) and g.dense_shape == (3, 2)
        real = np.asarray(g.indices) < 3           # the rest is the padding index 3, dropped by updates
        assert np.all(np.asarray(g.values)[~real] == 0)
        owned[v.name] = sorted(np.asarray(g.indices)[real].tolist())
    flat = np.asarray(IDS).ravel()
    if strategy == "mod":
        expected = {f"s{p}": sorted((flat[flat % 3 == p] // 3).tolist()) for p in range(3)}
    else:
        expected = {f"s{p}": sorted((flat[flat // 3 == p] % 3).tolist()) for p in range(3)}
    assert owned == expected


@pytest.mark.parametrize("make_opt", [
    lambda: jg.train.MomentumOptimizer(0.5, 0.9),
    lambda: jg.train.RMSPropOptimizer(0.1, momentum=0.5),
    lambda: jg.train.AdagradOptimizer(0.3),
    lambda: jg.train.LazyAdamOptimizer(0.1),
    lambda: jg.train.GradientDescentOptimizer(0.7),
], ids=["momentum", "rmsprop", "adagrad", "lazyadam", "sgd"])
@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_sharded_updates_equal_single_table_updates(make_opt, strategy):
    weights = jnp.arange(2 * 2, dtype=jnp.float32).reshape(2, 2) - 1.5

    def model_loss(rows):
        return jnp.sum(jnp.tanh(rows @ weights))

    opt = make_opt()
    single = {"t": jg.Variable(_table())}
    single_state = opt.init(single)
    step1 = jax.jit(lambda p, s: opt.minimize(lambda q: model_loss(jg.nn.embedding_lookup(q["t"], IDS)), p, s))
    for _ in range(3):
        single, single_state, _ = step1(single, single_state)

    opt = make_opt()
    sharded = {f"s{p}": jg.Variable(s) for p, s in enumerate(_shards(strategy))}
    sharded_state = opt.init(sharded)

    def sharded_loss(q):
        return model_loss(jg.nn.embedding_lookup([q["s0"], q["s1"], q["s2"]], IDS, partition_strategy=strategy))

    step2 = jax.jit(lambda p, s: opt.minimize(sharded_loss, p, s))
    for _ in range(3):
        sharded, sharded_state, _ = step2(sharded, sharded_state)
    got = _unshard([np.asarray(sharded[f"s{p}"].value) for p in range(3)], strategy)
    np.testing.assert_allclose(got, np.asarray(single["t"].value), rtol=1e-6, atol=1e-6)
    untouched = np.setdiff1d(np.arange(N_ROWS), np.asarray(IDS).ravel())
    np.testing.assert_array_equal(got[untouched], _table()[untouched])
