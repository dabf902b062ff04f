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

**Several devices, ``--replica-sync call``** (local steps): a call of K steps covers the next N K batches of the
one-device run (the same batches, with the same negatives) and device d trains the d-th run of K consecutive ones,
with no exchange; at the call's end the devices' updates are summed (``params + sum over devices of (theirs -
params)``: one all-reduce of the tables per call instead of an all-gather per step). A device does not see the
others' updates until the call ends, as asynchronous replicas in TF1 do not see each other's latest updates, so the
result is not the one-device run's, but the batches and the epochs are.
On a CPU host the devices are the cores' threads (``--devices`` virtual CPU devices), where the per-step exchange
cost more than the second core gave.
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
    """``(params, opt_state, data[, n]) -> (params, opt_state, losses [K], pairs [K])``: K steps in one jitted call
    (``n`` < K: the first n, with zeros for the others' losses and pairs), the parameters and optimizer state
    donated unless ``donate=False``. ``data`` holds the corpus (or the chunk of it that the call reads,
    ``feed.py``), the subsampling keep probabilities and the negatives' alias table.

    Two programs at most: ``fn`` (the K-step scan) for full calls, and ``partial(params, opt_state, data, n)``
    (the same step in a loop whose length is an argument) for the shorter calls that end a run or land on a
    checkpoint step. ``traces`` counts JAX's traces of both: one per program used, since :meth:`compile` traces
    and compiles them once and every call reuses those programs (another trace would mean another compilation).
    """

    def __init__(self, fn: Callable, partial: Callable | None = None, *, steps_per_call: int | None = None,
                 donate: bool = True) -> None:
        self.traces = 0
        self.steps_per_call = steps_per_call
        donated = (0, 1) if donate else ()

        def counted(params: Any, opt_state: Any, data: Any) -> Any:  # named: XLA names its parameters after them
            self.traces += 1
            return fn(params, opt_state, data)

        def counted_partial(params: Any, opt_state: Any, data: Any, n: Any) -> Any:
            self.traces += 1
            return partial(params, opt_state, data, n)

        self._jitted = jax.jit(TRACE_GUARD(counted), donate_argnums=donated)
        self._partial = None if partial is None else jax.jit(TRACE_GUARD(counted_partial), donate_argnums=donated)

    def compile(self, params: Any, opt_state: Any, data: Any, *, full: bool = True, partial: bool = False) -> float:
        """Trace and compile the programs a run needs (the K-step one, the shorter calls' one) ahead of the first
        call, which then starts at once; returns the seconds taken."""
        t0 = time.perf_counter()
        if full:
            self._jitted.lower(params, opt_state, data).compile()
        if partial and self._partial is not None:
            self._partial.lower(params, opt_state, data, jnp.int32(0)).compile()
        return time.perf_counter() - t0

    def __call__(self, params: Any, opt_state: Any, data: Any,
                 n: int | None = None) -> tuple[Any, Any, jax.Array, jax.Array]:
        if n is None or n == self.steps_per_call or self._partial is None:
            return self._jitted(params, opt_state, data)
        return self._partial(params, opt_state, data, jnp.int32(n))


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
    negatives (neg, per centre) or the shared set (nce); ``step`` is the batch's index in the one-device run."""
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


def _loss_fn(args: argparse.Namespace, vocab_size: int, axis_name: str | None = None) -> Callable:
    """``(params, centres, contexts, mask, noise, lr) -> summed loss`` for ``--loss``; ``lr``, the step's learning
    rate, is read by ``--sequential-correction`` only; ``axis_name``: the devices that share each step's batch."""
    if args.loss == "neg" and args.negative_sharing == "group":
        step_cap = args.learning_rate if args.step_cap else None  # --step-cap: the rate whose steps it bounds
        sequential = bool(getattr(args, "sequential_correction", False))
        return lambda p, centres, contexts, mask, negs, lr: model.skipgram_group_negatives_loss(
            p, centres, contexts, mask, negs, args.negatives, step_cap, lr if sequential else None, axis_name,
            args.max_logit)
    if args.loss == "neg":
        return lambda p, centres, contexts, mask, negs, _lr: model.skipgram_negative_sampling_loss(
            p, centres, contexts, mask, negs, args.negatives, args.max_logit)
    return lambda p, centres, contexts, mask, noise, _lr: model.skipgram_nce_loss(
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


def _sum_updates(before: Any, after: Any) -> Any:
    """``before`` plus every device's update (``after - before``) of the float leaves (tables, optimizer slots);
    the other leaves (the global step, the same on every device) as they are."""
    def combine(b, a):
        if not jnp.issubdtype(a.dtype, jnp.floating):
            return a
        return b + jax.lax.psum(a - b, "data")

    return jax.tree.map(combine, before, after)


def make_multi_step(opt: jg.train.Optimizer, batches: BatchMaker, args: argparse.Namespace, vocab_size: int,
                    mesh: Mesh | None = None, *, donate: bool = True, total_batches: int | None = None,
                    learning_rate: Callable[[jax.Array], jax.Array] | None = None) -> MultiStep:
    """The K-step function of a run (``args``: the trainer's flags), on one device or over ``mesh``; the state is
    donated unless ``donate=False`` (several processes: the state before a failed call must stay readable).
    ``total_batches``: with ``--replica-sync call``, the one-device run's batches (the steps' last ones beyond it are
    masked). ``learning_rate``: ``opt``'s schedule (global step -> rate), which ``--sequential-correction`` needs."""
    n_dev = 1 if mesh is None else int(mesh.devices.size)
    local = n_dev > 1 and getattr(args, "replica_sync", "step") == "call"
    if local and total_batches is None:
        raise ValueError("--replica-sync call needs total_batches (the one-device run's batch count)")
    share = _Share(batches.rows, 1 if local else n_dev)
    noise_fn = _noise_fn(args, vocab_size, batches, share)
    loss_fn = _loss_fn(args, vocab_size, "data" if n_dev > 1 and not local else None)
    if getattr(args, "sequential_correction", False) and learning_rate is None:
        raise ValueError("--sequential-correction needs the optimizer's learning_rate schedule")
    # --negative-sharing centre looks rows up per centre row only: the gathered padding rows can be dropped.
    # (Grouped negatives and the band overlap between devices: their rows are partial sums, all kept, which the
    # scatter adds up; padding rows carry zero gradients.)
    per_centre = args.loss == "neg" and args.negative_sharing == "centre"
    keep_rows = (lambda n: n // batches.rows * batches.centres) if per_centre else None

    def one(data, carry, index=None):
        """One step; ``index`` (``--replica-sync call``): the batch's index in the one-device run, for its negatives
        and to mask a batch past the run's end (which leaves the cursor where it is)."""
        params, opt_state = carry
        step = params["global_step"].value
        cursor = (params["epoch"].value, params["position"].value)
        centres, contexts, mask, epoch, pos = batches(data["corpus"], data["keep"], *cursor, data.get("corpus_window"))
        if index is None:
            index = step
        else:
            within = index < total_batches
            mask = mask & within
            epoch, pos = jnp.where(within, epoch, cursor[0]), jnp.where(within, pos, cursor[1])
        batch = (*(share.local(x) for x in (centres, contexts, mask)), noise_fn(data, index, centres))
        lr = None if learning_rate is None else learning_rate(step)
        loss, grads_and_vars = opt.compute_gradients(lambda p: loss_fn(p, *batch, lr), params)
        if n_dev > 1 and not local:  # the loss stays per device (summed once per call, outside the scan)
            grads = _gather_gradients([g for g, _ in grads_and_vars], n_dev, keep_rows)
            grads_and_vars = [(g, v) for g, (_, v) in zip(grads, grads_and_vars, strict=True)]
        params, opt_state = opt.apply_gradients(grads_and_vars, params, opt_state,
                                                global_step=params["global_step"])
        params = jg.replace_values(params, {"epoch": epoch, "position": pos})
        return (params, opt_state), (loss, jnp.sum(mask.astype(jnp.int32)))

    def multi_step(params, opt_state, data):
        body = lambda carry, _x: one(data, carry)
        (params, opt_state), (losses, pairs) = jax.lax.scan(body, (params, opt_state), None,
                                                            length=args.steps_per_call)
        return params, opt_state, losses, pairs

    def steps_loop(state, data, n, first=None):
        """n steps in a loop of traced length (one program for any n); the losses and pairs of the K - n steps not
        run stay 0. ``first``: the one-device index of the first step's batch (``--replica-sync call``)."""
        def body(i, carry):
            state, losses, pairs = carry
            state, (loss, pair) = one(data, state, None if first is None else first + i)
            return state, losses.at[i].set(loss), pairs.at[i].set(pair)

        zeros = (jnp.zeros(args.steps_per_call, jnp.float32), jnp.zeros(args.steps_per_call, jnp.int32))
        return jax.lax.fori_loop(0, n, body, (state, *zeros))

    def partial_step(params, opt_state, data, n):
        # The first n of K steps: the same step as the scan's, for the shorter calls.
        (params, opt_state), losses, pairs = steps_loop((params, opt_state), data, n)
        return params, opt_state, losses, pairs

    def local_call(params, opt_state, data, n):
        """--replica-sync call, on each device: a call of n steps covers the next N n batches of the one-device run;
        device d trains the d-th run of n of them (so the devices work on text n batches apart, not on neighbouring
        batches, which share more rows), then the devices' updates are summed and the cursor is the last run's."""
        device = jax.lax.axis_index("data")
        start = params["global_step"].value * n_dev  # the call's first batch in the one-device run
        first = start + device * n

        def skip(j, cursor):  # the batches of the runs before this device's: made, not trained (a few % of a step)
            *_, epoch, pos = batches(data["corpus"], data["keep"], *cursor, data.get("corpus_window"))
            within = start + j < total_batches
            return jnp.where(within, epoch, cursor[0]), jnp.where(within, pos, cursor[1])

        cursor = jax.lax.fori_loop(0, device * n, skip, (params["epoch"].value, params["position"].value))
        state = (jg.replace_values(params, {"epoch": cursor[0], "position": cursor[1]}), opt_state)
        (new_params, new_opt_state), losses, pairs = steps_loop(state, data, n, first)
        last = device == n_dev - 1
        cursor = {k: jax.lax.psum(jnp.where(last, new_params[k].value, 0), "data") for k in ("epoch", "position")}
        new_params = jg.replace_values(_sum_updates(params, new_params), cursor)
        return (new_params, _sum_updates(opt_state, new_opt_state), jax.lax.psum(losses, "data"),
                jax.lax.psum(pairs, "data"))

    if n_dev == 1:
        return MultiStep(multi_step, partial_step, steps_per_call=args.steps_per_call, donate=donate)

    def per_device(params, opt_state, data):
        if local:
            return local_call(params, opt_state, data, args.steps_per_call)
        params, opt_state, losses, pairs = multi_step(params, opt_state, data)
        return params, opt_state, jax.lax.psum(losses, "data"), pairs

    def sharded(params, opt_state, data):
        # Everything enters and leaves replicated, the losses summed over the devices (so that every
        # process can read them, also with several processes); only row-sized gradients are all-gathered
        # inside.
        fn = jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)
        return fn(params, opt_state, data)

    def per_device_partial(params, opt_state, data, n):
        if local:
            return local_call(params, opt_state, data, n)
        params, opt_state, losses, pairs = partial_step(params, opt_state, data, n)
        return params, opt_state, jax.lax.psum(losses, "data"), pairs

    def sharded_partial(params, opt_state, data, n):
        fn = jax.shard_map(per_device_partial, mesh=mesh, in_specs=P(), out_specs=P(), check_vma=False)
        return fn(params, opt_state, data, n)

    return MultiStep(sharded, sharded_partial, steps_per_call=args.steps_per_call, donate=donate)
