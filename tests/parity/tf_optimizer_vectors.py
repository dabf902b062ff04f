"""Real TF1 runs of the optimizer contract cases (``tests/optimizer_cases.py``).

Imported by ``test_optimizer_parity.py``, which checks the cases' hard-coded values against it, and
run as a script to print those values (paste them into the table)::

    PYTHONPATH=. python tests/parity/tf_optimizer_vectors.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for optimizer_cases
from optimizer_cases import CASES, DENSE_GRADS, DENSE_STEPS, DENSE_VARS, Case  # noqa: E402

tf1 = tf.compat.v1


def tf_optimizer(case: Case, global_step: tf.Variable, **overrides):
    """The case's TF1 optimizer (same arguments and name as the jaxgraph one)."""
    kwargs = {**case.kwargs, **overrides}
    if "global_step" in kwargs:
        kwargs["global_step"] = global_step
    return getattr(tf1.train, case.tf)(**kwargs, name=case.make().get_name())


def dense_run(case: Case, dtype=np.float32, steps: int = DENSE_STEPS) -> dict:
    """TF's values after ``steps`` dense steps of the fixture, and its slot and variable names."""
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf1.Variable(np.array(v, dtype), name=f"var{i}") for i, v in enumerate(DENSE_VARS)]
        global_step = tf1.train.get_or_create_global_step()
        opt = tf_optimizer(case, global_step)
        grads = [tf.constant(np.array(g, dtype)) for g in DENSE_GRADS]
        train = opt.apply_gradients(list(zip(grads, variables, strict=True)), global_step=global_step)
        names = sorted(v.op.name for v in opt.variables())
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(steps):
                sess.run(train)
            out = {"var0": sess.run(variables[0]), "var1": sess.run(variables[1])}
            out.update({s: sess.run(opt.get_slot(variables[0], s)) for s in opt.get_slot_names()})
    return {"values": out, "slots": tuple(opt.get_slot_names()), "variables": tuple(names)}


def _fmt(values) -> str:
    return "[" + ", ".join(f"{float(x):.9g}" for x in np.ravel(values)) + "]"


if __name__ == "__main__":
    print(f"# TensorFlow {tf.__version__}, tf.compat.v1 graph mode, float32, {DENSE_STEPS} dense steps")
    for case in CASES:
        run = dense_run(case)
        body = ", ".join(f'"{k}": {_fmt(v)}' for k, v in run["values"].items())
        print(f"{case.id}: {{{body}}}")
        print(f"    slots {run['slots']}  variables {run['variables']}")
