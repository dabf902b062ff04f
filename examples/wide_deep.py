"""A wide-and-deep classifier on jaxgraph: sparse features into a linear ("wide") part and an embedding
MLP ("deep") part, two optimizers, TF1 style (``tf.estimator.DNNLinearCombinedClassifier``'s model).

Run from the repository root::

    python -m examples.wide_deep --steps 300

* **Data** (synthetic, seeded): per example a bag of crossed-feature ids with weights for the wide part
  (``sparse.from_ragged``), a bag of category ids for the deep part (some examples have none), three
  dense numbers, and a 0/1 label drawn from a hidden logistic rule. Batches keep one capacity and shape,
  so the jitted step traces once.
* **Wide part**: ``safe_embedding_lookup_sparse(linear_weights, ids, weights, combiner="sum")`` plus a
  bias, the way TF's linear model reads a weighted categorical column. ``linear_weights`` starts at zero.
* **Deep part**: ``safe_embedding_lookup_sparse(embeddings, ids, combiner="mean")`` next to the dense
  features, then two layers (ReLU), one logit.
* **Loss**: ``jaxgraph.losses.sigmoid_cross_entropy`` of the summed logits.
* **Optimizers**: one ``compute_gradients`` over everything, then the wide variables go to the wide
  optimizer (FTRL, as TF's canned model; ``--wide-optimizer adagrad`` for Adagrad) and the deep ones to
  the deep optimizer (Adagrad), each with its own state; the global step moves once. Both tables get
  ``IndexedSlices`` gradients over the ids in the batch, so a row no batch mentions stays
  bit-identical (FTRL's and Adagrad's sparse updates are lazy).

* **Checkpoints**: ``--save PATH`` writes the parameters and both optimizer states at the end (``--save-format
  tf``: TF's format, which ``tf.compat.v1.train.Saver`` restores into the same TF1 graph); ``--init-from PATH``
  resumes from a checkpoint, jaxgraph's or a TF1 job's (``tf.compat.v1.train.Saver`` of the same graph):
  :func:`restore` is the two-line recipe with two optimizers. Batch ``i`` of the data is trained at global step
  ``i``, so a resumed run sees the batches an uninterrupted one would.

``tests/test_wide_deep_example.py`` runs it; ``tests/parity/test_wide_deep_parity.py`` trains the same model
in TensorFlow 1 (graph mode) and compares every variable; ``tests/test_tf_checkpoint_optimizers.py`` resumes a
TF1 job's checkpoint (``tests/fixtures/tf_checkpoints/wide_deep``) and ``tests/parity/test_tf_checkpoint_parity.py``
moves the job from TF to jaxgraph and back.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxgraph as jg
from jaxgraph import losses, sparse, train
from jaxgraph.nn import safe_embedding_lookup_sparse

WIDE_VOCAB = 64          # crossed-feature ids
DEEP_VOCAB = 24          # category ids
EMBED_DIM = 4
DENSE = 3
HIDDEN = 8
MAX_IDS = 3              # per example and column
BATCH = 16

WIDE_VARS = ("linear/weights", "linear/bias")
DEEP_VARS = ("dnn/embeddings", "dnn/hidden/kernel", "dnn/hidden/bias", "dnn/logits/kernel", "dnn/logits/bias")


# -- data --------------------------------------------------------------------------------------------------
def make_batches(num_batches: int, batch_size: int = BATCH, seed: int = 0) -> list[dict[str, Any]]:
    """Host-side batches: ragged id lists (``wide_ids``, ``wide_weights``, ``deep_ids``), ``dense`` and
    ``labels`` as numpy arrays. The labels follow a hidden logistic rule of all three inputs."""
    rng = np.random.default_rng(seed)
    true_wide = rng.normal(size=WIDE_VOCAB)
    true_deep = rng.normal(size=DEEP_VOCAB)
    true_dense = rng.normal(size=DENSE)
    batches = []
    for _ in range(num_batches):
        wide_ids, wide_weights, deep_ids = [], [], []
        dense = rng.normal(size=(batch_size, DENSE)).astype(np.float32)
        logits = dense @ true_dense
        for i in range(batch_size):
            ids = rng.choice(WIDE_VOCAB // 2, size=rng.integers(0, MAX_IDS + 1))   # half the ids never appear
            weights = rng.uniform(0.5, 2.0, size=len(ids)).round(2)
            cats = rng.choice(DEEP_VOCAB - 4, size=rng.integers(0, MAX_IDS + 1))   # the last 4 never appear
            wide_ids.append(ids.tolist())
            wide_weights.append(weights.tolist())
            deep_ids.append(cats.tolist())
            logits[i] += (true_wide[ids] * weights).sum() + (true_deep[cats].mean() if len(cats) else 0.0)
        labels = (rng.uniform(size=batch_size) < 1 / (1 + np.exp(-logits))).astype(np.float32)
        batches.append({"wide_ids": wide_ids, "wide_weights": wide_weights, "deep_ids": deep_ids,
                        "dense": dense, "labels": labels[:, None]})
    return batches


def features(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch as device inputs: SparseTensors of one fixed capacity and shape (one trace for all batches)."""
    n = len(batch["wide_ids"])
    shape = [n, MAX_IDS]
    return {"wide_ids": sparse.from_ragged(batch["wide_ids"], capacity=n * MAX_IDS, dense_shape=shape),
            "wide_weights": sparse.from_ragged(batch["wide_weights"], capacity=n * MAX_IDS, dense_shape=shape,
                                               dtype=jnp.float32),
            "deep_ids": sparse.from_ragged(batch["deep_ids"], capacity=n * MAX_IDS, dense_shape=shape),
            "dense": jnp.asarray(batch["dense"]), "labels": jnp.asarray(batch["labels"])}


# -- model -------------------------------------------------------------------------------------------------------
def initial_values(seed: int = 0) -> dict[str, np.ndarray]:
    """The initial value of every variable by name (numpy), shared with the TF1 parity program."""
    rng = np.random.default_rng(seed + 1)
    glorot = lambda fan_in, fan_out: rng.uniform(-1, 1, size=(fan_in, fan_out)) * np.sqrt(6 / (fan_in + fan_out))
    values = {
        "linear/weights": np.zeros((WIDE_VOCAB, 1)),
        "linear/bias": np.zeros((1,)),
        "dnn/embeddings": rng.normal(size=(DEEP_VOCAB, EMBED_DIM)) / np.sqrt(EMBED_DIM),
        "dnn/hidden/kernel": glorot(EMBED_DIM + DENSE, HIDDEN),
        "dnn/hidden/bias": np.zeros((HIDDEN,)),
        "dnn/logits/kernel": glorot(HIDDEN, 1),
        "dnn/logits/bias": np.zeros((1,)),
    }
    return {k: v.astype(np.float32) for k, v in values.items()}


def init_params(seed: int = 0) -> dict[str, Any]:
    """The parameter tree: the variables above (named by their keys) and the global step."""
    tree: dict[str, Any] = {name: jg.Variable(value, name=name) for name, value in initial_values(seed).items()}
    tree, _ = train.get_or_create_global_step(tree)
    return tree


def logits_fn(params: dict[str, Any], feats: dict[str, Any]) -> jax.Array:
    wide = safe_embedding_lookup_sparse(params["linear/weights"], feats["wide_ids"], feats["wide_weights"],
                                        combiner="sum") + params["linear/bias"].value
    embedded = safe_embedding_lookup_sparse(params["dnn/embeddings"], feats["deep_ids"], combiner="mean")
    hidden = jax.nn.relu(jnp.concatenate([embedded, feats["dense"]], axis=1) @ params["dnn/hidden/kernel"].value
                         + params["dnn/hidden/bias"].value)
    deep = hidden @ params["dnn/logits/kernel"].value + params["dnn/logits/bias"].value
    return wide + deep


def loss_fn(params: dict[str, Any], feats: dict[str, Any]) -> jax.Array:
    return losses.sigmoid_cross_entropy(feats["labels"], logits_fn(params, feats))


# -- training -----------------------------------------------------------------------------------------------------
def default_optimizers(wide: str = "ftrl") -> tuple[train.Optimizer, train.Optimizer]:
    """(wide optimizer, deep optimizer): TF's canned defaults, FTRL (learning rate ``min(0.2, 1/sqrt(number of
    linear columns))`` = 0.2 here) for the wide part and Adagrad (0.05) for the deep part. ``wide="adagrad"``
    uses Adagrad (0.2) for the wide part too."""
    wide_opt = train.FtrlOptimizer(0.2) if wide == "ftrl" else train.AdagradOptimizer(0.2)
    return wide_opt, train.AdagradOptimizer(0.05)


def init_state(seed: int = 0, wide: str = "ftrl") -> tuple[dict[str, Any], tuple[train.OptimizerState, ...]]:
    """Fresh ``(params, (wide_state, deep_state))``: each optimizer's state covers its part's variables."""
    wide_opt, deep_opt = default_optimizers(wide)
    params = init_params(seed)
    return params, (wide_opt.init(params, var_list=list(WIDE_VARS)), deep_opt.init(params, var_list=list(DEEP_VARS)))


def restore(path: str, seed: int = 0, wide: str = "ftrl") -> tuple[dict[str, Any], tuple[train.OptimizerState, ...]]:
    """``(params, (wide_state, deep_state))`` from a checkpoint (a prefix, or a directory: its latest).

    jaxgraph's checkpoints, or a TF1 job's: ``tf.compat.v1.train.Saver`` of the same graph names the variables
    as here and the slots after their optimizers (``linear/weights/Ftrl``, ``linear/weights/Ftrl_1``,
    ``dnn/embeddings/Adagrad``); both states come back with one call, the optimizers given in the states' order.
    """
    params, states = init_state(seed, wide)
    return train.Saver().restore(params, states, path, optimizer=default_optimizers(wide))


def save(path: str, params: dict[str, Any], states: tuple[train.OptimizerState, ...], wide: str = "ftrl",
         format: str = "npz") -> str:
    """Write ``params`` and both optimizer states to ``path-<global step>``; return that prefix. ``format="tf"``
    writes TF's format, which the TF1 program restores with ``tf.compat.v1.train.Saver``."""
    saver = train.Saver(format=format)
    with saver:
        return saver.save(params, states, path, global_step=params["global_step"].value,
                          optimizer=default_optimizers(wide))


def make_step(wide_opt: train.Optimizer, deep_opt: train.Optimizer) -> Callable[..., Any]:
    """The jitted training step ``(params, wide_state, deep_state, feats) -> (params, wide_state, deep_state,
    loss)``, parameters and states donated."""

    def step(params, wide_state, deep_state, feats):
        loss, grads_and_vars = wide_opt.compute_gradients(lambda p: loss_fn(p, feats), params)
        wide = [(g, v) for g, v in grads_and_vars if v.name in WIDE_VARS]
        deep = [(g, v) for g, v in grads_and_vars if v.name in DEEP_VARS]
        params, wide_state = wide_opt.apply_gradients(wide, params, wide_state)
        params, deep_state = deep_opt.apply_gradients(deep, params, deep_state, global_step=params["global_step"])
        return params, wide_state, deep_state, loss

    return jax.jit(step, donate_argnums=(0, 1, 2))


def train_steps(params: dict[str, Any], states: tuple[train.OptimizerState, ...], steps: int, wide: str = "ftrl",
          batches: Sequence[dict[str, Any]] | None = None, seed: int = 0
          ) -> tuple[dict[str, Any], tuple[train.OptimizerState, ...], list[float]]:
    """Train ``steps`` steps from ``(params, states)``: batch ``i`` at global step ``i`` (``batches``, default the
    seeded data). Returns the parameters, the states and the loss of every step."""
    start = int(params["global_step"].value)
    batches = make_batches(start + steps, seed=seed) if batches is None else batches
    if len(batches) < start + steps:
        raise ValueError(f"{steps} steps from global step {start} need {start + steps} batches, got {len(batches)}")
    wide_state, deep_state = states
    step = make_step(*default_optimizers(wide))
    history = []
    for batch in batches[start:start + steps]:
        params, wide_state, deep_state, loss = step(params, wide_state, deep_state, features(batch))
        history.append(float(loss))
    return params, (wide_state, deep_state), history


def train_model(steps: int, seed: int = 0, wide: str = "ftrl", batches: Sequence[dict[str, Any]] | None = None,
                init_from: str | None = None, save_to: str | None = None,
                save_format: str = "npz") -> tuple[dict[str, Any], list[float]]:
    """Train for ``steps`` batches, from scratch or from the checkpoint ``init_from`` (jaxgraph's or a TF1
    job's), and save to ``save_to`` (``save_format`` ``"npz"`` or ``"tf"``) if given; returns the final
    parameters and the loss of every step."""
    params, states = init_state(seed, wide) if init_from is None else restore(init_from, seed, wide)
    params, states, history = train_steps(params, states, steps, wide, batches, seed)
    if save_to is not None:
        save(save_to, params, states, wide, save_format)
    return params, history


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--wide-optimizer", choices=["ftrl", "adagrad"], default="ftrl")
    parser.add_argument("--init-from", metavar="PATH",
                        help="resume from this checkpoint (prefix or directory): jaxgraph's, or a TF1 job's")
    parser.add_argument("--save", metavar="PATH", help="write a checkpoint at the end: PATH-<global step>")
    parser.add_argument("--save-format", choices=["npz", "tf"], default="npz",
                        help="tf: TensorFlow's format, for tf.compat.v1.train.Saver (default: npz)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    try:
        params, history = train_model(args.steps, args.seed, args.wide_optimizer, init_from=args.init_from,
                                      save_to=args.save, save_format=args.save_format)
    except (train.CheckpointError, OSError) as e:
        parser.exit(2, f"error: {e}\n")
    first = int(params["global_step"].value) - args.steps  # a resumed run starts at the checkpoint's step
    if args.init_from is not None:
        print(f"resumed from {args.init_from} at global step {first}")
    window = max(1, args.steps // 10)
    for start in range(0, args.steps, window):
        chunk = history[start:start + window]
        print(f"steps {first + start:5d}-{first + start + len(chunk) - 1:5d}: mean loss {np.mean(chunk):.4f}")
    print(f"global step {int(params['global_step'].value)}")
    if args.save is not None:
        print(f"saved {args.save}-{int(params['global_step'].value)} ({args.save_format})")


if __name__ == "__main__":
    main()
