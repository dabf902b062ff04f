"""Other layouts of the word2vec trainer's grouped ``--loss neg`` products, against the current one (issue 14).

The default loss (``model.skipgram_group_negatives_loss``) scores each centre against its window's band rows
(``model.band_logits``: blocks of ``T = 2W`` centres against ``2T`` band rows, the wanted diagonals read by a
skew, twice the products needed) and its group's S negatives (one ``[C/G, S]`` product per group). This script
times one training step without the batch making, in a ``lax.fori_loop`` of ``--steps`` steps: the two
tables' row gathers, the weights built from the step's mask and negatives (a different mask every step, as in
the trainer), the loss and its gradients, and the two scatter-adds of ``-lr`` times the row gradients, for:

* ``current``: ``model.skipgram_group_negatives_loss`` itself (its lookups through ``jaxgraph.nn``);
* ``rows``: the same loss written here with plain ``jnp.take`` / ``.at[].add`` (the reference of the others);
* ``blocked``: the band's terms summed where :func:`model.band_logits`' block products lie (the weights placed
  there, zeros at the unused products: no skew of the logits nor its transpose), the negatives' as
  ``[G, C/G, S]``, one loss sum over both;
* ``slices``: the band as its 2W static shifted slices, ``out[:, j] = sum_d v * u_band[s_j: s_j + C]`` (exactly
  the products needed, no matrix product), with a custom VJP of static slices and pads.

The three written here sum the loss as ``-sum(weight * log_sigmoid(z))`` under plain autodiff (the model's
one-pass custom VJP is private to it), so ``current`` against ``rows`` also shows what that VJP and jaxgraph's
lookups change; the layouts are compared among ``rows``, ``blocked`` and ``slices``. All four compute the same
terms; before timing, each variant's loss and row gradients are checked against
``rows`` (float32 rounding: different summation orders). Figures: microseconds per step, median over rounds
(variants interleaved in every round), and each one's ratio to ``rows``, the median of the per-round ratios.
The load average is printed: other jobs on the 2 cores move every figure.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/word2vec_loss_layouts.py --rounds 9

The shapes default to the trainer's defaults at ``--embedding-size 128`` (C = 172 centres, W = 5, G = 4 groups
of S = 64 negatives, a 14,929-word vocabulary). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxgraph as jg  # noqa: E402
from examples.word2vec import model  # noqa: E402

__all__ = ["main"]


def _shifts(t: int) -> list[int]:
    """Band offset of window column j: ``j + (j >= W)``."""
    return [j + (j >= t // 2) for j in range(t)]


def _neg_log_sigmoid_sum(z: jax.Array, weight: jax.Array) -> jax.Array:
    return -jnp.sum(weight * jax.nn.log_sigmoid(z))


def _neg_products(v, u_neg, groups: int) -> jax.Array:
    c = v.shape[0]
    per = -(-c // groups)
    vg = jnp.pad(v, ((0, groups * per - c), (0, 0))).reshape(groups, per, -1)
    return jnp.einsum("gcd,gsd->gcs", vg, u_neg.reshape(groups, -1, v.shape[1]))  # [G, C/G, S]


def loss_rows(v, u, weight, two_w: int, groups: int) -> jax.Array:
    """The current formulation on gathered rows: ``[C, 2W + S]`` logits, one loss sum."""
    c = v.shape[0]
    pos = model.band_logits(v, u[: c + two_w])
    neg = _neg_products(v, u[c + two_w:], groups).reshape(-(-c // groups) * groups, -1)[:c]
    return _neg_log_sigmoid_sum(jnp.concatenate([pos, -neg], axis=1), weight)


def _band_blocks(v, u_band) -> jax.Array:
    """``[nb, T, 2T]`` products of each block of T centres with its 2T band rows (as in ``band_logits``)."""
    c, d = v.shape
    t = u_band.shape[0] - c
    nb = -(-c // t)
    vb = jnp.pad(v, ((0, nb * t - c), (0, 0))).reshape(nb, t, d)
    ub = jnp.pad(u_band, ((0, nb * t - c), (0, 0)))
    blocks = jnp.concatenate([ub[: nb * t].reshape(nb, t, d), ub[t:].reshape(nb, t, d)], axis=1)
    return jnp.einsum("btd,bkd->btk", vb, blocks)


def _block_weights(weight) -> jax.Array:
    """``[C, 2W]`` weights placed at the products of :func:`_band_blocks` they weigh (the skew's inverse)."""
    c, t = weight.shape
    w = t // 2
    nb = -(-c // t)
    ext = jnp.concatenate([weight[:, :w], jnp.zeros((c, 1)), weight[:, w:], jnp.zeros((c, t))], axis=1)
    ext = jnp.pad(ext, ((0, nb * t - c), (0, 0))).reshape(nb, t * (2 * t + 1))
    return ext[:, : 2 * t * t].reshape(nb, t, 2 * t)


def loss_blocked(v, u, weight, two_w: int, groups: int) -> jax.Array:
    c = v.shape[0]
    per = -(-c // groups)
    pos = _band_blocks(v, u[: c + two_w])
    neg = _neg_products(v, u[c + two_w:], groups)
    neg_weight = jnp.pad(weight[:, two_w:], ((0, groups * per - c), (0, 0)))
    return _neg_log_sigmoid_sum(jnp.concatenate([pos.reshape(-1), -neg.reshape(-1)]),
                                jnp.concatenate([_block_weights(weight[:, :two_w]).reshape(-1),
                                                 neg_weight.reshape(-1)]))


@jax.custom_vjp
def band_slices(v, u_band) -> jax.Array:
    c = v.shape[0]
    return jnp.stack([jnp.sum(v * u_band[s: s + c], axis=1) for s in _shifts(u_band.shape[0] - c)], axis=1)


def _band_slices_fwd(v, u_band):
    return band_slices(v, u_band), (v, u_band)


def _band_slices_bwd(res, g):
    v, u_band = res
    c = v.shape[0]
    t = u_band.shape[0] - c
    gv = sum(g[:, j, None] * u_band[s: s + c] for j, s in enumerate(_shifts(t)))
    gu = sum(jnp.pad(g[:, j, None] * v, ((s, t - s), (0, 0))) for j, s in enumerate(_shifts(t)))
    return gv, gu


band_slices.defvjp(_band_slices_fwd, _band_slices_bwd)


def loss_slices(v, u, weight, two_w: int, groups: int) -> jax.Array:
    c = v.shape[0]
    pos = band_slices(v, u[: c + two_w])
    neg = _neg_products(v, u[c + two_w:], groups).reshape(-(-c // groups) * groups, -1)[:c]
    return _neg_log_sigmoid_sum(jnp.concatenate([pos, -neg], axis=1), weight)


VARIANTS = {"rows": loss_rows, "blocked": loss_blocked, "slices": loss_slices}


def make_batches(args, rng):
    """``steps`` batches of consecutive centres with their band, masks and group negatives (random ids)."""
    c, w, g, s, v = args.centres, args.window, args.groups, args.shared_negatives, args.vocab
    band = rng.integers(0, v, (args.steps, c + 2 * w)).astype(np.int32)
    centres = band[:, w: w + c]
    cols = np.array(_shifts(2 * w))
    contexts = band[:, np.arange(c)[:, None] + cols[None, :]]
    mask = rng.random((args.steps, c, 2 * w)) < 0.6
    negs = rng.integers(0, v, (args.steps, g, s)).astype(np.int32)
    return tuple(jnp.asarray(a) for a in (centres, contexts, mask, negs))


def make_run(loss_fn, args):
    """The ``steps``-step program of one variant: ``(emb_in, emb_out, batches) -> (emb_in, emb_out, loss sum)``."""
    lr = 0.025

    def step(i, carry):
        emb_in, emb_out, total, batches = carry
        centres, contexts, mask, negs = (b[i] for b in batches)
        if loss_fn is None:  # the trainer's own loss and its sparse gradients, through jaxgraph
            params = {"emb_in": jg.Variable(emb_in, name="emb_in"), "emb_out": jg.Variable(emb_out, name="emb_out")}
            opt = jg.train.GradientDescentOptimizer(lr)
            loss, grads_and_vars = opt.compute_gradients(
                lambda p: model.skipgram_group_negatives_loss(p, centres, contexts, mask, negs, args.negatives),
                params)
            new = {"emb_in": emb_in, "emb_out": emb_out}
            for grad, var in grads_and_vars:
                new[var.name] = new[var.name].at[grad.indices].add(-lr * grad.values, mode="drop")
            return new["emb_in"], new["emb_out"], total + loss, batches
        out_ids = jnp.concatenate([model.window_band(centres, contexts), negs.reshape(-1)])
        weight = model.group_negatives_weights(centres, contexts, mask, negs, args.negatives)
        loss, (gv, gu) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
            jnp.take(emb_in, centres, axis=0), jnp.take(emb_out, out_ids, axis=0), weight, 2 * args.window,
            args.groups)
        emb_in = emb_in.at[centres].add(-lr * gv)
        emb_out = emb_out.at[out_ids].add(-lr * gu)
        return emb_in, emb_out, total + loss, batches

    @functools.partial(jax.jit, donate_argnums=(0, 1))  # the tables updated in place, as in the trainer
    def run(emb_in, emb_out, batches):
        emb_in, emb_out, total, _ = jax.lax.fori_loop(0, args.steps, step, (emb_in, emb_out, 0.0, batches))
        return emb_in, emb_out, total

    return run


def check_same(args, tables, batches) -> None:
    """Every variant's loss and row gradients against ``rows`` on the first batch (after some training)."""
    centres, contexts, mask, negs = (b[0] for b in batches)
    out_ids = jnp.concatenate([model.window_band(centres, contexts), negs.reshape(-1)])
    weight = model.group_negatives_weights(centres, contexts, mask, negs, args.negatives)
    v, u = jnp.take(tables[0], centres, axis=0), jnp.take(tables[1], out_ids, axis=0)
    want = jax.value_and_grad(loss_rows, argnums=(0, 1))(v, u, weight, 2 * args.window, args.groups)
    for name, fn in VARIANTS.items():
        got = jax.value_and_grad(fn, argnums=(0, 1))(v, u, weight, 2 * args.window, args.groups)
        np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-5, err_msg=name)
        for a, b in zip(got[1], want[1], strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6, err_msg=name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--steps", type=int, default=500, help="steps per timed call")
    p.add_argument("--centres", type=int, default=172)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--shared-negatives", type=int, default=64)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--vocab", type=int, default=14929)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    d = args.embedding_size
    tables = (jnp.asarray(rng.uniform(-0.5 / d, 0.5 / d, (args.vocab, d)).astype(np.float32)),
              jnp.asarray(rng.normal(0, 0.1, (args.vocab, d)).astype(np.float32)))
    batches = make_batches(args, rng)
    runs = {"current": make_run(None, args), **{k: make_run(f, args) for k, f in VARIANTS.items()}}
    check_same(args, tables, batches)
    state = {k: tuple(jnp.copy(t) for t in tables) for k in runs}  # each variant trains its own copy
    for name, run in runs.items():  # compile and warm up
        state[name] = jax.block_until_ready(run(*state[name], batches))[:2]
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            t0 = time.perf_counter()
            state[name] = jax.block_until_ready(runs[name](*state[name], batches))[:2]
            times[name].append((time.perf_counter() - t0) / args.steps * 1e6)
        print(f"round {r}: " + ", ".join(f"{k} {times[k][-1]:.1f}" for k in names)
              + f" us/step; load average {os.getloadavg()[0]:.1f}", flush=True)
    figures = {k: {"us_per_step": statistics.median(v),
                   "ratio_to_rows": statistics.median(a / b for a, b in zip(v, times["rows"], strict=True))}
               for k, v in times.items()}
    for k, f in figures.items():
        print(f"{k:8s} {f['us_per_step']:7.1f} us/step   x{f['ratio_to_rows']:.3f} of rows")
    print(json.dumps({"config": vars(args), "figures": figures, "load_average": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
