"""``word2vec_basic.start_jax_backend``: XLA:CPU does not split the training step across threads, and every
thread of the process can run on every CPU afterwards. JAX's backend starts once per process: subprocesses."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = r"""
import json, os, sys
import numpy as np
from examples.word2vec import word2vec_basic as w2v
cpus = os.sched_getaffinity(0)
if sys.argv[1] == "start":
    w2v.start_jax_backend()
import jax
import jaxgraph as jg
optimizer = jg.train.GradientDescentOptimizer(1.0)
init = w2v.make_init_fn(optimizer, 10000, 128, 0)
params, opt_state, key = jax.eval_shape(init)
lowered = w2v.make_train_fn(optimizer, 64, 10000).lower(
    params, opt_state, key, jax.ShapeDtypeStruct((100, 128), np.int32),
    jax.ShapeDtypeStruct((100, 128, 1), np.int32), jax.ShapeDtypeStruct((), np.int32))
compiled, options = w2v.compile_train_program(lowered)
threads = {t: sorted(os.sched_getaffinity(int(t))) for t in os.listdir("/proc/self/task")}
print(json.dumps({"split_ops": compiled.as_text().count("outer_dimension_partitions"), "cpus": sorted(cpus),
                  "threads": threads, "options": options}))
"""


def _run(mode: str) -> dict:
    # The tutorial's own setting: one CPU device (the multi-device session's forced device count is not it).
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], check=True, capture_output=True, text=True,
                         cwd=REPO, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread affinity is Linux's")
def test_start_jax_backend_keeps_the_step_on_one_thread_and_every_cpu_in_reach():
    started = _run("start")
    assert started["split_ops"] == 0
    assert all(cpus == started["cpus"] for cpus in started["threads"].values()), started["threads"]
    if len(started["cpus"]) > 1:  # without it, XLA splits the step's gathers and scatters across the CPUs
        assert _run("plain")["split_ops"] > 0
