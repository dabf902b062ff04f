"""The trainer's skip-gram batches, built on the device inside the compiled step.

The corpus (int32 ids, out-of-vocabulary tokens already dropped) lives on the device. A step takes the raw span
after the current position, subsamples and compacts it, and takes the next ``C = batch_size / (window + 1)``
kept tokens as centres, each with ``2 * window`` context slots of which the ``2b`` nearest kept tokens are active
(so about ``--batch-size`` pairs per step). The position and epoch are Variables of the training state: there is
no host work per step.

* **Subsampling** (``--subsample t``) keeps a token with ``models/embedding/word2vec.py``'s probability
  ``(sqrt(f/(tN)) + 1) tN/f`` (``data.subsample_keep_prob``). Subsampled tokens are removed before windowing, so
  windows reach further, as in word2vec. The decision is a hash of ``(seed, epoch, position)``: every epoch gets a
  fresh draw and any step can be recomputed exactly.
* **Dynamic window**: each centre gets ``b ~ U{1..window}`` (a hash of ``(seed, epoch, position)``) and pairs
  with the ``b`` kept tokens on each side. Windows never cross an epoch boundary.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from examples.word2vec import hashing

__all__ = ["BatchMaker"]


class BatchMaker:
    """Builds one step's skip-gram windows on the device from ``(epoch, position)``.

    The raw span ``[position - back, position + forward + ahead)`` of the (in-vocabulary) corpus is
    subsampled (hash of seed, epoch, position) and compacted; the first ``centres`` kept tokens from
    ``position`` on are the step's centres, each with ``2 * window`` context slots of which the
    ``b`` nearest kept tokens on each side are active. The next step starts at the first kept token
    not used as a centre.

    >>> maker = BatchMaker(n_tokens=100, window=2, batch_size=6, keep_mean=1.0, seed=0)
    >>> corpus, keep = jnp.asarray(maker.pad(np.arange(100, dtype=np.int32))), jnp.ones(100)
    >>> centres, contexts, mask, epoch, position = maker(corpus, keep, jnp.int32(0), jnp.int32(0))
    >>> centres.tolist(), int(epoch), int(position)   # 6 pairs / (window + 1) = 2 centres per step
    ([0, 1], 0, 2)
    """

    def __init__(self, n_tokens: int, window: int, batch_size: int, keep_mean: float, seed: int,
                 row_multiple: int = 1) -> None:
        self.n = n_tokens
        self.window = window
        # batch_size counts pairs: a centre has window + 1 active pairs on average.
        self.centres = max(1, -(-batch_size // (window + 1)))
        # Rows of the batch arrays: `centres` rounded up to a multiple of the device count; the extra
        # rows are masked out (no pairs), so the batch itself does not depend on the device count.
        self.rows = -(-self.centres // row_multiple) * row_multiple
        # Raw tokens scanned for centres: about twice what `centres` kept tokens need, so a batch is
        # full except where subsampling is extreme or an epoch ends.
        need = 2.0 * self.centres / max(keep_mean, 1e-3)
        self.forward = int(min(max(need, 2 * self.centres), 64 * self.centres))
        self.back = 8 * window
        self.ahead = 8 * window
        self.span = self.back + self.forward + self.ahead
        self.seed = seed

    def padded_length(self, n_tokens: int) -> int:
        """The length of :meth:`pad`'s result for a corpus of ``n_tokens``: ``back`` zeros, the ids, ``forward +
        ahead`` zeros."""
        return n_tokens + self.span

    def pad(self, ids: np.ndarray) -> np.ndarray:
        """The corpus as the device keeps it: zeros around it, so that every span slice is in bounds."""
        tail = np.zeros(self.forward + self.ahead, np.int32)
        return np.concatenate([np.zeros(self.back, np.int32), ids, tail])

    def _subsampled(self, epoch: jax.Array, off: jax.Array, keep_prob: jax.Array) -> jax.Array:
        """Whether subsampling keeps the tokens at corpus positions ``off`` in ``epoch`` (their words' keep
        probabilities ``keep_prob``): the one rule, shared by the batches and :meth:`kept_positions`."""
        return hashing.uniform(hashing.position_hash(self.seed, hashing.SUBSAMPLE, epoch, off)) < keep_prob

    def kept_positions(self, ids: np.ndarray, keep_prob: jax.Array, epoch: int, chunk: int = 1 << 24) -> np.ndarray:
        """The corpus positions (of the unpadded host ``ids``) that subsampling keeps in ``epoch``, sorted, as int32:
        what ``plan.epoch_steps`` replays the cursor over.

        Decided ``chunk`` tokens at a time, each chunk's decisions kept as bits: beyond ``ids`` and the result
        (4 bytes per kept token) it holds an eighth of a byte per token and one chunk's buffers. (The whole
        corpus's decisions at once, with int64 positions, took ~13 bytes per token more: 2.7 GB at 250M tokens.)

        >>> maker = BatchMaker(n_tokens=6, window=1, batch_size=2, keep_mean=0.5, seed=0)
        >>> maker.kept_positions(np.array([0, 1, 0, 1, 0, 1], np.int32), jnp.array([1.0, 0.0]), epoch=0, chunk=4)
        array([0, 2, 4], dtype=int32)
        """
        bits, kept = [], 0
        for start in range(0, len(ids), chunk):
            mask = np.asarray(self._kept_mask(ids[start: start + chunk], keep_prob, jnp.int32(epoch),
                                              jnp.int32(start)))
            bits.append(np.packbits(mask))
            kept += int(np.count_nonzero(mask))
        positions = np.empty(kept, np.int32)
        at = 0
        for i, packed in enumerate(bits):
            start = i * chunk
            found = np.flatnonzero(np.unpackbits(packed, count=min(chunk, len(ids) - start)))
            positions[at: at + len(found)] = found + start
            at += len(found)
        return positions

    @functools.cached_property
    def _kept_mask(self):
        return jax.jit(lambda ids, p, e, start: self._subsampled(
            e, start + jnp.arange(ids.shape[0], dtype=jnp.int32), p[ids]))

    def __call__(self, corpus: jax.Array, keep_prob: jax.Array, epoch: jax.Array, pos: jax.Array,
                 window: jax.Array | None = None):
        """``(centres [R], contexts [R, 2W], mask [R, 2W], next_epoch, next_position)``; ``R = self.rows``
        (rows from ``self.centres`` on are masked).

        ``corpus`` is the whole corpus as :meth:`pad` lays it out, or, for a streamed corpus, one chunk's
        buffer with ``window = [base, wrap_epoch, wrap_start]`` (``feed.StreamingFeed``): the buffer holds the
        positions from ``base - back`` on, and from index ``wrap_start`` on the corpus's start again (as
        :meth:`pad` lays it out) for the steps of epochs from ``wrap_epoch`` on. Either way a step reads the
        same tokens at the same positions."""
        w, n_c = self.window, self.centres
        start = pos if window is None else jnp.where(epoch >= window[1], window[2] + pos, pos - window[0])
        tok = jax.lax.dynamic_slice(corpus, (start,), (self.span,))
        off = pos - self.back + jnp.arange(self.span, dtype=jnp.int32)
        valid = (off >= 0) & (off < self.n)
        keep = valid & self._subsampled(epoch, off, keep_prob[tok])
        rank = jnp.cumsum(keep.astype(jnp.int32)) - 1
        total_kept = rank[-1] + 1
        slot = jnp.where(keep, rank, self.span)
        comp_tok = jnp.zeros(self.span, jnp.int32).at[slot].set(tok, mode="drop")
        comp_off = jnp.full(self.span, self.n, jnp.int32).at[slot].set(off, mode="drop")
        n_back = jnp.sum(keep[: self.back].astype(jnp.int32))
        n_fwd = jnp.sum(keep[self.back: self.back + self.forward].astype(jnp.int32))

        i = jnp.arange(self.rows, dtype=jnp.int32)
        is_centre = (i < n_fwd) & (i < n_c)
        c_idx = jnp.minimum(n_back + i, self.span - 1)
        window_hash = hashing.position_hash(self.seed, hashing.WINDOW, epoch, comp_off[c_idx])
        b = 1 + (window_hash % jnp.uint32(w)).astype(jnp.int32)
        d = jnp.concatenate([jnp.arange(-w, 0, dtype=jnp.int32), jnp.arange(1, w + 1, dtype=jnp.int32)])
        ctx = c_idx[:, None] + d[None, :]
        mask = (is_centre[:, None] & (jnp.abs(d)[None, :] <= b[:, None]) & (ctx >= 0) & (ctx < total_kept))
        centres = comp_tok[c_idx]
        contexts = comp_tok[jnp.clip(ctx, 0, self.span - 1)]

        first_unused = comp_off[jnp.minimum(n_back + n_c, self.span - 1)]
        next_pos = jnp.where(n_fwd <= n_c, pos + self.forward, first_unused)
        wrap = next_pos >= self.n
        next_epoch = epoch + wrap.astype(epoch.dtype)
        next_pos = jnp.where(wrap, 0, next_pos)
        return centres, contexts, mask, next_epoch, next_pos
