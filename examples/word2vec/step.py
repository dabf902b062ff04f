"""The compiled training step: K steps per call (``--steps-per-call``) with ``lax.scan``, on one device or
data-parallel over a mesh under ``shard_map``.

One step: the batch (``batches.BatchMaker``), its negatives (``sampling.py``), the loss and its sparse
``IndexedSlices`` gradients (``model.py`` through ``Optimizer.compute_gradients``), one in-place scatter per table
(``apply_gradients``), and the corpus cursor moved on. The negatives' randomness comes from the global step inside
the step, so a call needs nothing from the host; the parameters and optimizer state are donated.

**Several devices**: the tables are replicated; each device takes ``1/N`` of the step's centre rows (padded with
masked rows to a multiple of N, times the group size with grouped negatives, so that each device holds whole
groups: :func:`centres_per_group`), computes their ``IndexedSlices``, and one all-gather per step (ids and row
gradients: row-sized data, never the tables) gives every device the whole step's slices in centre order, which
it applies with the same single scatter per table as one device. With ``--negative-sharing centre`` the result
is the one-device run's, bit for bit in our tests; with the default grouped negatives (a band row at a device
boundary is in two devices' slices) and with ``--loss nce`` (shared negatives) such rows are summed per device
first (float32 rounding, ~1e-8). ``tests/test_word2vec_train_multidevice.py`` checks all three.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import jaxgraph as jg
from examples.word2vec import model, sampling
from examples.word2vec.batches import BatchMaker

__all__ = ["TRACE_GUARD", "MultiStep", "centres_per_group", "make_multi_step"]


def _no_guard(fn: Callable) -> Callable:
    return fn


#: Wraps the K-step function before ``jax.jit`` (the tests install ``chex.assert_max_traces(n=1)`` here).
TRACE_GUARD: Callable[[Callable], Callable] = _no_guard


class MultiStep:
    """``(params, opt_state, data) -> (params, opt_state, losses [K], pairs [K])``: K steps in one jitted call
    with the parameters and optimizer state donated. ``data`` holds the corpus (or the chunk of it that the call
    reads, ``feed.py``), the subsampling keep probabilities and the negatives' alias table. ``traces`` counts
    JAX's traces of it: one per run, since :meth:`compile` traces and compiles it once and every call reuses that
    program (a second trace would mean a second compilation)."""

    def __init__(self, fn: Callable) -> None:
        self.traces = 0

        def counted(params: Any, opt_state: Any, data: Any) -> Any:  # named: XLA names its parameters after them
            self.traces += 1
            return fn(params, opt_state, data)

        self._jitted = jax.jit(TRACE_GUARD(counted), donate_argnums=(0, 1))

    def compile(self, params: Any, opt_state: Any, data: Any) -> float:
        """Trace and compile ahead of the first call (which then starts at once); returns the seconds taken."""
        t0 = time.perf_counter()
        self._jitted.lower(params, opt_state, data).compile()
        return time.perf_counter() - t0

    def __call__(self, params: Any, opt_state: Any, data: Any) -> tuple[Any, Any, jax.Array, jax.Array]:
        return self._jitted(params, opt_state, data)


class _Share:
    """This device's share of a step's centre rows: ``rows / N`` consecutive rows, in device order."""

    def __init__(self, rows: int, devices: int) -> None:
        self.devices, self.per = devices, rows // devices

    def first(self) -> jax.Array | int:
        return 0 if self.devices == 1 else jax.lax.axis_index("data") * self.per

    def local(self, x: jax.Array) -> jax.Array:
        if self.devices == 1:
            return x
        return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index("data") * self.per, self.per, axis=0)


def centres_per_group(args: argparse.Namespace) -> int:
    """Centres per negatives group (``--negative-sharing group``): about ``--pairs-per-group`` pairs (a centre has
    window + 1 on average), at most a step's centres; 1 for the other schemes (no grouping).

    >>> import argparse
    >>> centres_per_group(argparse.Namespace(loss="neg", negative_sharing="group", batch_size=1024, window=5,
    ...                                      pairs_per_group=256))
    43
    """
    if args.loss != "neg" or args.negative_sharing != "group":
        return 1
    centres = -(-args.batch_size // (args.window + 1))
    return max(1, min(centres, round(args.pairs_per_group / (args.window + 1))))


def _noise_fn(args: argparse.Namespace, vocab_size: int, batches: BatchMaker, share: _Share) -> Callable:
    """``(data, step, centres) -> this device's noise``: its groups' negatives (neg, grouped), its centres'
    negatives (neg, per centre) or the shared set (nce)."""
    if args.loss == "neg" and args.negative_sharing == "group":
        group = centres_per_group(args)

        def group_negatives(data, step, _centres):  # a "row" of the sampler is a group: whole groups per device
            return sampling.centre_negatives(data, args.seed, step, share.first() // group, share.per // group,
                                             args.shared_negatives)

        return group_negatives
    if args.loss == "neg":
        def centre_negatives(data, step, _centres):
            return sampling.centre_negatives(data, args.seed, step, share.first(), share.per,
                                             args.negatives_per_centre)

        return centre_negatives
    base_key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 0x5EED)

    def shared_negatives(_data, step, centres):
        sampled, true_exp, sampled_exp = sampling.shared_nce_negatives(
            centres, jax.random.fold_in(base_key, step), batches.centres, 2 * args.window, args.negatives, vocab_size)
        return sampled, share.local(true_exp), sampled_exp

    return shared_negatives


def _loss_fn(args: argparse.Namespace, vocab_size: int) -> Callable:
    """``(params, centres, contexts, mask, noise) -> summed loss`` for ``--loss``."""
    if args.loss == "neg" and args.negative_sharing == "group":
        step_cap = args.learning_rate if args.step_cap else None  # --step-cap: the rate whose steps it bounds
        return lambda p, centres, contexts, mask, negs: model.skipgram_group_negatives_loss(
            p, centres, contexts, mask, negs, args.negatives, step_cap)
    if args.loss == "neg":
        return lambda p, centres, contexts, mask, negs: model.skipgram_negative_sampling_loss(
            p, centres, contexts, mask, negs, args.negatives)
    return lambda p, centres, contexts, mask, noise: model.skipgram_nce_loss(
        p, centres, contexts, mask, noise, args.negatives, vocab_size)


def _gather_gradients(grads: list, n_dev: int, keep_rows: Callable[[int], int] | None) -> list:
    """One device's gradients -> the whole batch's, the same on every device.

    All ``IndexedSlices`` (row gradients and their ids, bit-cast) travel in ONE all-gather per step: on virtual
    CPU devices every collective is a rendezvous of the device threads, which costs more than the data it moves.
    ``keep_rows(n)`` (when every lookup is per centre row) is how many of the ``n`` gathered rows to keep: in
    centre order the padding rows come last, and dropping them leaves exactly the single-device step's
    ``IndexedSlices``. Dense gradients (none in this model) are summed.
    """
    sparse = [g for g in grads if isinstance(g, jg.IndexedSlices)]
    # The barrier keeps XLA from fusing the row-gradient arithmetic into the packing copy (a
    # non-vectorised loop, several times slower).
    barrier = jax.lax.optimization_barrier([g.values for g in sparse])
    parts = []
    for g, values in zip(sparse, barrier, strict=True):
        parts += [values.reshape(-1).astype(jnp.float32),
                  jax.lax.bitcast_convert_type(g.indices.astype(jnp.int32), jnp.float32)]
    packed = jax.lax.all_gather(jnp.concatenate(parts), "data")  # [N, L]
    out, offset = {}, 0
    for g in sparse:
        n, width = g.values.shape[0], int(np.prod(g.values.shape[1:], dtype=np.int64))
        values = packed[:, offset: offset + n * width].reshape((n_dev * n,) + g.values.shape[1:])
        offset += n * width
        indices = jax.lax.bitcast_convert_type(packed[:, offset: offset + n], jnp.int32).reshape(-1)
        offset += n
        if keep_rows is not None:
            keep = keep_rows(n_dev * n)
            values, indices = values[:keep], indices[:keep]
        out[id(g)] = jg.IndexedSlices(values.astype(g.values.dtype), indices.astype(g.indices.dtype), g.dense_shape)
    return [out[id(g)] if isinstance(g, jg.IndexedSlices) else
            (None if g is None else jax.lax.psum(g, "data")) for g in grads]


def make_multi_step(opt: jg.train.Optimizer, batches: BatchMaker, args: argparse.Namespace, vocab_size: int,
                    mesh: Mesh | None = None) -> MultiStep:
    """The K-step function of a run (``args``: the trainer's flags), on one device or over ``mesh``."""
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    share = _Share(batches.rows, n_dev)
    noise_fn = _noise_fn(args, vocab_size, batches, share)
    loss_fn = _loss_fn(args, vocab_size)
    # --negative-sharing centre looks rows up per centre row only: the gathered padding rows can be dropped.
    # (Grouped negatives and the band overlap between devices: their rows are partial sums, all kept, which the
    # scatter adds up; padding rows carry zero gradients.)
    per_centre = args.loss == "neg" and args.negative_sharing == "centre"
    keep_rows = (lambda n: n // batches.rows * batches.centres) if per_centre else None

    def one(data, carry, _):
        params, opt_state = carry
        step = params["global_step"].value
        centres, contexts, mask, epoch, pos = batches(
            data["corpus"], data["keep"], params["epoch"].value, params["position"].value, data.get("corpus_window")
        )
        batch = (*(share.local(x) for x in (centres, contexts, mask)), noise_fn(data, step, centres))
        loss, grads_and_vars = opt.compute_gradients(lambda p: loss_fn(p, *batch), params)
        if n_dev > 1:  # the loss stays per device (summed once per call, outside the scan)
            grads = _gather_gradients([g for g, _ in grads_and_vars], n_dev, keep_rows)
            grads_and_vars = [(g, v) for g, (_, v) in zip(grads, grads_and_vars, strict=True)]
        params, opt_state = opt.apply_gradients(grads_and_vars, params, opt_state,
                                                global_step=params["global_step"])
        params = jg.replace_values(params, {"epoch": epoch, "position": pos})
        return (params, opt_state), (loss, jnp.sum(mask.astype(jnp.int32)))

    def multi_step(params, opt_state, data):
        body = lambda carry, x: one(data, carry, x)
        (params, opt_state), (losses, pairs) = jax.lax.scan(body, (params, opt_state), None,
                                                            length=args.steps_per_call)
        return params, opt_state, losses, pairs

    if n_dev == 1:
        return MultiStep(multi_step)

    def per_device(params, opt_state, data):
        params, opt_state, losses, pairs = multi_step(params, opt_state, data)
        return params, opt_state, jax.lax.psum(losses, "data"), pairs

    def sharded(params, opt_state, data):
        # Everything enters and leaves replicated, the losses summed over the devices (so that every
        # process can read them, also with several processes); only row-sized gradients are all-gathered
        # inside.
        fn = jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)
        return fn(params, opt_state, data)

    return MultiStep(sharded)
