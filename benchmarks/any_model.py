"""The word2vec NCE step written as a JAX user would write it, trained through jaxgraph, in the same run as
the jaxgraph reference step and the dense ``jax.value_and_grad`` + optax baseline.

Forms (the same model and math: input embeddings ``[V, D]``, NCE weights ``[V, D]`` and biases ``[V]``,
batch ``B``, ``S`` log-uniform negatives drawn inside the step, TF's NCE logits):

* ``reference``: ``jaxgraph.Variable`` tables, ``jg.nn.embedding_lookup`` and ``jg.nn.nce_loss``;
* ``dict``: a plain dict of arrays read with ``table[ids]``;
* ``equinox``: an ``eqx.Module`` holding ``eqx.nn.Embedding`` layers and a bias array;
* ``nnx``: an ``nnx.Module`` holding ``nnx.Embed`` layers and an ``nnx.Param`` bias;
* ``dense``: the ``dict`` model through ``jax.value_and_grad`` + ``optax.sgd`` (dense gradients).

All jaxgraph forms use ``GradientDescentOptimizer(1.0).minimize``; every step runs under ``jax.jit`` with
the model and optimizer state donated, the PRNG key derived inside the step. Each (form, vocabulary)
runs in its own subprocess, so that its peak resident memory (``VmHWM``, reset after the tables are
built) is its own; forms alternate within each round, and the median over rounds is reported.

Usage::

    python benchmarks/any_model.py --vocabulary-size 10000 100000 1000000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from proc_memory import peak_rss_bytes, reset_peak_rss, rss_bytes
from tables import word2vec_table

FORMS = ("reference", "dict", "equinox", "nnx", "dense")


def run_one(form: str, V: int, D: int, B: int, S: int, steps: int, per_call: int, hlo_to: str | None = None) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jaxgraph as jg

    rss_start = rss_bytes()
    k_emb, k_w, k_data = jax.random.split(jax.random.PRNGKey(0), 3)
    emb = word2vec_table(V, D, k_emb, "uniform")
    nce_w = word2vec_table(V, D, k_w, "truncated_normal")
    nce_b = jnp.zeros((V,))
    rng = np.random.default_rng(0)
    calls = max(1, steps // per_call)
    inputs = jnp.asarray(np.minimum(rng.zipf(1.3, (calls + 1, per_call, B)) - 1, V - 1).astype(np.int32))
    labels = jnp.asarray(np.minimum(rng.zipf(1.3, (calls + 1, per_call, B, 1)) - 1, V - 1).astype(np.int32))

    def sample(labels, key):
        return jg.nn.log_uniform_candidate_sampler(labels, 1, S, True, V, key)

    def nce(embed, true_w, true_b, sampled_w, sampled_b, sampled_values):
        # TF's nce_loss (sampled logits minus log expected counts, sigmoid cross-entropy, summed per row)
        _, true_expected, sampled_expected = sampled_values
        true_logits = jnp.sum(embed * true_w, -1) + true_b - jnp.log(true_expected[:, 0])
        sampled_logits = embed @ sampled_w.T + sampled_b - jnp.log(sampled_expected)
        return jnp.mean(jax.nn.softplus(-true_logits) + jnp.sum(jax.nn.softplus(sampled_logits), -1))

    def dict_loss(p, x, y, key):
        sv = sample(y, key)
        ids = y[:, 0]
        return nce(p["emb"][x], p["nce_w"][ids], p["nce_b"][ids], p["nce_w"][sv[0]], p["nce_b"][sv[0]], sv)

    if form == "reference":
        model = {"embeddings": jg.Variable(emb, name="embeddings"), "nce_weights": jg.Variable(nce_w, name="nce_w"),
                 "nce_biases": jg.Variable(nce_b, name="nce_b")}

        def loss(p, x, y, key):
            embed = jg.nn.embedding_lookup(p["embeddings"], x)
            return jnp.mean(jg.nn.nce_loss(p["nce_weights"], p["nce_biases"], y, embed, S, V,
                                           sampled_values=sample(y, key)))
    elif form in ("dict", "dense"):
        model = {"emb": emb, "nce_w": nce_w, "nce_b": nce_b}
        loss = dict_loss
    elif form == "equinox":
        import equinox as eqx

        class Word2Vec(eqx.Module):
            emb: eqx.nn.Embedding
            nce_w: eqx.nn.Embedding
            nce_b: jax.Array

            def loss(self, x, y, key):
                sv = sample(y, key)
                ids = y[:, 0]
                return nce(jax.vmap(self.emb)(x), jax.vmap(self.nce_w)(ids), self.nce_b[ids],
                           jax.vmap(self.nce_w)(sv[0]), self.nce_b[sv[0]], sv)

        model = Word2Vec(eqx.nn.Embedding(weight=emb), eqx.nn.Embedding(weight=nce_w), nce_b)
        loss = lambda m, x, y, key: m.loss(x, y, key)  # noqa: E731
    elif form == "nnx":
        from flax import nnx

        class Word2Vec(nnx.Module):
            def __init__(self, emb, nce_w, nce_b):
                self.emb = nnx.Embed(V, D, embedding_init=lambda *_: emb, rngs=nnx.Rngs(0))
                self.nce_w = nnx.Embed(V, D, embedding_init=lambda *_: nce_w, rngs=nnx.Rngs(1))
                self.nce_b = nnx.Param(nce_b)

            def loss(self, x, y, key):
                sv = sample(y, key)
                ids = y[:, 0]
                b = self.nce_b[...]
                return nce(self.emb(x), self.nce_w(ids), b[ids], self.nce_w(sv[0]), b[sv[0]], sv)

        model = Word2Vec(emb, nce_w, nce_b)
        loss = lambda m, x, y, key: m.loss(x, y, key)  # noqa: E731
    else:
        raise ValueError(form)
    del emb, nce_w, nce_b

    if form == "dense":
        import optax

        tx = optax.sgd(1.0)
        opt_state = tx.init(model)

        def step(p, s, x, y, i):
            value, g = jax.value_and_grad(loss)(p, x, y, jax.random.fold_in(k_data, i))
            updates, s = tx.update(g, s, p)
            return optax.apply_updates(p, updates), s, value
    else:
        opt = jg.train.GradientDescentOptimizer(1.0)
        opt_state = opt.init(model)

        def step(p, s, x, y, i):
            key = jax.random.fold_in(k_data, i)
            return opt.minimize(lambda q: loss(q, x, y, key), p, s)

    def call(p, s, xs, ys, i):
        # per_call steps in one compiled call (lax.scan), each with its own batch and key
        def body(carry, batch):
            p, s = carry
            x, y, k = batch
            p, s, value = step(p, s, x, y, i * per_call + k)
            return (p, s), value

        (p, s), values = jax.lax.scan(body, (p, s), (xs, ys, jnp.arange(per_call)))
        return p, s, values[-1]

    state_bytes = sum(x.nbytes for x in jax.tree_util.tree_leaves((model, opt_state)) if hasattr(x, "nbytes"))
    step_call = jax.jit(call if per_call > 1 else
                        (lambda p, s, xs, ys, i: step(p, s, xs[0], ys[0], i)), donate_argnums=(0, 1))
    jax.block_until_ready((model, opt_state))
    rss_tables = rss_bytes()
    reset_peak_rss()
    batches = [(inputs[i], labels[i]) for i in range(calls + 1)]
    if hlo_to:  # the compiled step's HLO, for inspection
        with open(hlo_to, "w") as f:
            f.write(step_call.lower(model, opt_state, *batches[0], 0).compile().as_text())
    model, opt_state, value = step_call(model, opt_state, *batches[0], 0)  # compile
    jax.block_until_ready(value)
    first_loss = float(value)
    t0 = time.perf_counter()
    for i in range(1, calls + 1):
        model, opt_state, value = step_call(model, opt_state, *batches[i], i)
    jax.block_until_ready((model, value))
    elapsed = time.perf_counter() - t0
    return {
        "form": form, "vocabulary_size": V, "steps": calls * per_call, "steps_per_call": per_call,
        "ms_per_step": elapsed / (calls * per_call) * 1e3,
        "first_loss": first_loss, "final_loss": float(value), "state_bytes": state_bytes,
        "peak_rss_bytes": peak_rss_bytes(), "rss_start_bytes": rss_start, "rss_tables_bytes": rss_tables,
    }


def _steps_for(form: str, V: int, steps: int) -> int:
    if form != "dense":
        return steps
    return max(3, min(steps, int(2e7 // V)))  # the dense step costs O(V): fewer steps at large V


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocabulary-size", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--embedding-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-sampled", type=int, default=64)
    parser.add_argument("--steps", type=int, default=500, help="timed steps per sparse run")
    parser.add_argument("--rounds", type=int, default=3, help="forms alternate within a round; median reported")
    parser.add_argument("--steps-per-call", type=int, default=1,
                        help="steps per compiled call (lax.scan): 1 measures Python dispatch too")
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = parser.parse_args(argv)
    D, B, S = args.embedding_size, args.batch_size, args.num_sampled

    if args.one:
        form, V, steps = args.one.split(",")
        print(json.dumps(run_one(form, int(V), D, B, S, int(steps), args.steps_per_call)))
        return 0

    import jax

    print(f"# any_model: D={D} B={B} S={S} steps={args.steps} steps/call={args.steps_per_call} (dense: 1) "
          f"rounds={args.rounds} jax {jax.__version__} "
          f"on {jax.devices()[0].platform}; each configuration in its own subprocess")
    results: dict[tuple[str, int], list[dict]] = {}
    for V in args.vocabulary_size:
        for _ in range(args.rounds):
            for form in args.forms:
                cmd = [sys.executable, __file__, "--one", f"{form},{V},{_steps_for(form, V, args.steps)}",
                       "--embedding-size", str(D), "--batch-size", str(B), "--num-sampled", str(S),
                       "--steps-per-call", str(args.steps_per_call if form != "dense" else 1)]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                results.setdefault((form, V), []).append(json.loads(out.strip().splitlines()[-1]))
    print("| vocabulary | form | ms/step (median) | vs reference | dense / form | peak RSS / state | "
          "(peak - RSS before tables) / state | loss first -> last |")
    print("|---|---|---|---|---|---|---|---|")
    for V in args.vocabulary_size:
        med = {f: statistics.median(r["ms_per_step"] for r in results[(f, V)]) for f in args.forms}
        for f in args.forms:
            r = results[(f, V)][-1]
            peak = max(x["peak_rss_bytes"] for x in results[(f, V)])
            vs_ref = f"{med[f] / med['reference']:.3f}x" if "reference" in med else "-"
            vs_dense = f"{med['dense'] / med[f]:,.1f}x" if "dense" in med and f != "dense" else "-"
            print(f"| {V:,} | {f} | {med[f]:.3f} | {vs_ref} | {vs_dense} | {peak / r['state_bytes']:.2f} | "
                  f"{(peak - r['rss_start_bytes']) / r['state_bytes']:.2f} | "
                  f"{r['first_loss']:.2f} -> {r['final_loss']:.2f} |")
        print(f"<!-- V={V} raw ms/step: " + json.dumps(
            {f: [round(x['ms_per_step'], 4) for x in results[(f, V)]] for f in args.forms}) + " -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
