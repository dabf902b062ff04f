"""Sharded tables and data parallelism on a device mesh (run by `nox -s tests_multidevice`: 8 CPU devices)."""

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jaxgraph as jg
from jaxgraph.sharding import (
    make_mesh,
    shard_batch,
    shard_opt_state,
    shard_params,
    spec_for,
    tree_shardings,
)

pytestmark = pytest.mark.multidevice

V, D, B, S = 16_000, 32, 64, 16
RULES = [("embeddings|nce_weights|nce_biases", P("data"))]


@pytest.fixture(scope="module")
def mesh():
    if jax.device_count() < 8:
        pytest.fail(f"needs 8 devices, found {jax.device_count()}: run `nox -s tests_multidevice`")
    return make_mesh(8)


def _host_params():
    rng = np.random.default_rng(0)
    return {
        "embeddings": jg.Variable(rng.uniform(-1, 1, (V, D)).astype(np.float32)),
        "nce_weights": jg.Variable((rng.standard_normal((V, D)) / np.sqrt(D)).astype(np.float32)),
        "nce_biases": jg.Variable(np.zeros(V, np.float32)),
        "scale": jg.Variable(np.ones((), np.float32)),
    }


def _step_fn(opt):
    def step(params, opt_state, x, y):
        key = jax.random.fold_in(jax.random.PRNGKey(3), opt_state.iterations)

        def loss(p):
            embed = jg.nn.embedding_lookup(p["embeddings"], x) * p["scale"].value
            return jnp.mean(jg.nn.nce_loss(p["nce_weights"], p["nce_biases"], y, embed, S, V, key=key))

        return opt.minimize(loss, params, opt_state)

    return step


def _batches(n):
    rng = np.random.default_rng(1)
    return rng.integers(0, V, (n, B)).astype(np.int32), rng.integers(0, V, (n, B, 1)).astype(np.int32)


def test_rules_place_variables_by_name(mesh):
    params = shard_params(_host_params(), mesh, RULES)
    assert params["embeddings"].value.sharding.spec == P("data")
    assert params["nce_biases"].value.sharding.spec == P("data")
    assert params["scale"].value.sharding.spec == P()
    assert {s.data.shape for s in params["embeddings"].value.addressable_shards} == {(V // 8, D)}
    assert spec_for("nce_weights", RULES) == P("data") and spec_for("other", RULES) == P()
    shardings = tree_shardings(_host_params(), mesh, RULES)
    assert shardings["embeddings"].value.spec == P("data")


def test_indivisible_table_is_a_clear_error(mesh):
    params = {"embeddings": jg.Variable(np.zeros((10, 2), np.float32))}
    with pytest.raises(ValueError, match=r"'embeddings'.*not divisible by the 8 devices"):
        shard_params(params, mesh, RULES)


def test_slots_follow_their_variables(mesh):
    opt = jg.train.AdagradOptimizer(0.1)
    params = shard_params(_host_params(), mesh, RULES)
    state = shard_opt_state(opt.init(params), params, mesh, RULES)
    assert state.slots["accumulator"]["embeddings"].sharding.spec == P("data")
    assert state.slots["accumulator"]["scale"].sharding.spec == P()


def test_optax_slots_follow_their_variables(mesh):
    opt = jg.train.OptaxOptimizer(optax.adam(0.1))
    params = shard_params(_host_params(), mesh, RULES)
    adam = shard_opt_state(opt.init(params), params, mesh, RULES).non_slots["optax"][0]
    assert adam.mu["embeddings"].sharding.spec == P("data")
    assert adam.nu["nce_weights"].sharding.spec == P("data")
    assert adam.mu["scale"].sharding.spec == P() and adam.count.sharding.spec == P()


@pytest.mark.parametrize("make_opt", [lambda: jg.train.GradientDescentOptimizer(1.0),
                                      lambda: jg.train.AdagradOptimizer(0.5),
                                      lambda: jg.train.OptaxOptimizer(optax.adagrad(0.5))],
                         ids=["sgd", "adagrad", "optax-adagrad"])
def test_sharded_data_parallel_steps_match_one_device(mesh, make_opt):
    xs, ys = _batches(4)
    opt = make_opt()
    step = jax.jit(_step_fn(opt))
    params = _host_params()
    state = opt.init(params)
    for x, y in zip(xs, ys, strict=False):
        params, state, loss_single = step(params, state, x, y)

    opt = make_opt()
    sharded_step = jax.jit(_step_fn(opt), donate_argnums=(0, 1))
    sparams = shard_params(_host_params(), mesh, RULES)
    sstate = shard_opt_state(opt.init(sparams), sparams, mesh, RULES)
    for x, y in zip(xs, ys, strict=False):
        sparams, sstate, loss_sharded = sharded_step(sparams, sstate, *shard_batch((x, y), mesh))
        loss_sharded.block_until_ready()  # one step in flight: 8 virtual devices share 2 cores
    np.testing.assert_allclose(float(loss_sharded), float(loss_single), rtol=1e-5)
    for name in ("embeddings", "nce_weights", "nce_biases", "scale"):
        np.testing.assert_allclose(np.asarray(sparams[name].value), np.asarray(params[name].value),
                                   rtol=1e-5, atol=1e-6, err_msg=name)


_COLLECTIVE = re.compile(r"=\s*\(?([^=]*?)\)?\s*(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)"
                         r"(-start)?\(")


def _collective_shapes(hlo: str):
    shapes = []
    for line in hlo.splitlines():
        m = _COLLECTIVE.search(line)
        if m:
            shapes += [tuple(int(d) for d in dims.split(",") if d)
                       for dims in re.findall(r"\[([\d,]*)\]", m.group(1))]
    return shapes


@pytest.mark.parametrize("make_opt", [lambda: jg.train.GradientDescentOptimizer(1.0),
                                      lambda: jg.train.OptaxOptimizer(optax.adam(0.1))], ids=["sgd", "optax-adam"])
def test_sparse_step_never_moves_a_table_sized_buffer(mesh, make_opt):
    opt = make_opt()
    params = shard_params(_host_params(), mesh, RULES)
    state = shard_opt_state(opt.init(params), params, mesh, RULES)
    x, y = shard_batch(tuple(a[0] for a in _batches(1)), mesh)
    hlo = jax.jit(_step_fn(opt), donate_argnums=(0, 1)).lower(params, state, x, y).compile().as_text()
    shapes = _collective_shapes(hlo)
    assert shapes, "expected some collectives on row-sized data"
    too_big = [s for s in shapes if any(d >= V // 8 for d in s)]
    assert not too_big, f"collectives on table-sized buffers: {too_big}"


def test_dense_step_does_move_table_sized_buffers(mesh):
    # The check above can fail: reading the tables densely all-reduces [V, D]-sized gradients.
    opt = jg.train.GradientDescentOptimizer(1.0)

    def step(params, opt_state, x, y):
        def loss(p):
            embed = p["embeddings"].value[x]
            return jnp.mean(jg.nn.nce_loss(p["nce_weights"].value, p["nce_biases"].value, y, embed, S, V,
                                           key=jax.random.PRNGKey(0)))

        return opt.minimize(loss, params, opt_state)

    rules = [("embeddings", P(None, None)), ("nce", P(None))]  # tables replicated, batch sharded
    params = shard_params(_host_params(), mesh, rules)
    state = shard_opt_state(opt.init(params), params, mesh, rules)
    x, y = shard_batch(tuple(a[0] for a in _batches(1)), mesh)
    hlo = jax.jit(step).lower(params, state, x, y).compile().as_text()
    assert [s for s in _collective_shapes(hlo) if any(d >= V // 8 for d in s)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    worker = Path(__file__).parent / "distributed" / "worker.py"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("XLA_FLAGS", None)
    single = subprocess.run([sys.executable, str(worker), str(tmp_path / "single.npz")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    address = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen([sys.executable, str(worker), str(tmp_path / "multi.npz"), address, "2", str(i)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=False):
        assert p.returncode == 0, err[-2000:]
        assert "of 2 devices 8 done" in out
    a, b = np.load(tmp_path / "single.npz"), np.load(tmp_path / "multi.npz")
    np.testing.assert_allclose(b["losses"], a["losses"], rtol=1e-5)
    np.testing.assert_allclose(b["embeddings"], a["embeddings"], rtol=1e-5, atol=1e-6)
