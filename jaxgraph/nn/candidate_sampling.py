"""TF1's candidate samplers, under ``jit`` with an explicit PRNG key.

Each sampler returns ``(sampled_candidates, true_expected_count, sampled_expected_count)`` as TF's
``tf.compat.v1.nn.*_candidate_sampler`` does, with two differences forced by JAX:

* randomness comes from the ``key`` argument (placed after ``range_max``); the same key gives the same
  samples, and ``seed``, if given, is folded into it;
* the candidates are ``int32`` (JAX runs with x64 off; TF returns ``int64``). Ids must fit in int32.

``unique=True`` is TF's rejection sampling: draw until ``num_sampled`` distinct values have been seen,
keep them in first-seen order, and count ``num_tries``, the number of draws up to and including the one
that completed the set. The expected counts then follow TF's ``ExpectedCountHelper``:
``p * num_sampled`` when ``num_tries == num_sampled``, else ``1 - (1 - p) ** num_tries``.
Under ``jit`` the draws happen in fixed-size chunks inside a ``lax.while_loop`` (static shapes), and
duplicates are found with comparison matrices rather than a hash set.

>>> import jax, jax.numpy as jnp
>>> from jaxgraph.nn import log_uniform_candidate_sampler
>>> labels = jnp.array([[0], [7]])
>>> sampled, true_ec, sampled_ec = log_uniform_candidate_sampler(
...     labels, num_true=1, num_sampled=4, unique=True, range_max=10, key=jax.random.key(0))
>>> sampled.shape, sampled.dtype, true_ec.shape, sampled_ec.shape
((4,), dtype('int32'), (2, 1), (4,))
>>> len(set(sampled.tolist()))
4
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxgraph.ids import check_ids
from jaxgraph.variables import Variable

__all__ = [
    "alias_table",
    "compute_accidental_hits",
    "fixed_unigram_candidate_sampler",
    "log_uniform_candidate_sampler",
    "uniform_candidate_sampler",
]

SamplerOutput = tuple[jax.Array, jax.Array, jax.Array]
_DrawFn = Callable[[jax.Array, int], jax.Array]
_ProbFn = Callable[[jax.Array], jax.Array]

FLT_MAX = float(np.finfo(np.float32).max)

# TF's CandidateSamplerOp message for a true class outside the sampler's range.
_TRUE_CANDIDATE_MESSAGE = "`true_candidate` out of range [0, {n}), received {v}"

# log-uniform draws split u = (a + b) / _LOG_UNIFORM_BINS: `a` picks a precomputed (float64-exact)
# power of (range_max + 1) and `b` a short float32 exp. A plain float32 u (23 bits) would put only ~15
# grid points in the top class of a 50,000 range and skew its frequency by several percent.
_LOG_UNIFORM_BITS = 12
_LOG_UNIFORM_BINS = 1 << _LOG_UNIFORM_BITS


# -- validation ------------------------------------------------------------------------------------
def _int_array(x: Any, what: str) -> jax.Array:
    if isinstance(x, Variable):
        raise TypeError(f"{what} must be an integer array, not a Variable; read `.value` first")
    arr = x if isinstance(x, jax.Array) else np.asarray(x)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{what} must be integers (int32 or int64), got dtype {arr.dtype}")
    return jnp.asarray(arr, dtype=jnp.int32)


def _check_true_classes(true_classes: Any, num_true: int, range_max: int | None) -> jax.Array:
    raw = true_classes
    classes = _int_array(true_classes, "true_classes")
    if classes.ndim != 2:
        raise ValueError("true_classes must be a matrix")
    if classes.shape[1] != num_true:
        raise ValueError(f"true_classes must have num_true columns, expected: {classes.shape[1]} was: {num_true}")
    if range_max is not None:
        # Checked on the caller's values before the int32 cast, as TF's kernel does on int64. Under jit
        # an out-of-range class becomes range_max, whose expected count is 0 (see _run_sampler).
        classes = check_ids(raw, range_max, message=_TRUE_CANDIDATE_MESSAGE, what="true_classes")
        classes = classes.astype(jnp.int32)
    return classes


def _check_common(num_true: int, num_sampled: int, unique: bool, range_max: int, key: Any) -> None:
    for name, value in (("num_true", num_true), ("num_sampled", num_sampled), ("range_max", range_max)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a Python int (it fixes shapes under jit), got {value!r}")
    if range_max <= 0:
        raise ValueError("range_max must be positive")
    if num_sampled < 0:
        raise ValueError(f"num_sampled must be >= 0, got {num_sampled}")
    if unique and num_sampled > range_max:
        raise ValueError("Sampler's range is too small.")
    if key is None:
        raise ValueError(
            "candidate samplers need an explicit PRNG key (TF's op-level random state has no JAX "
            "equivalent): pass key=jax.random.key(seed), and a fresh key each step"
        )


def _prepare_key(key: Any, seed: int | None) -> jax.Array:
    if seed is not None:
        key = jax.random.fold_in(key, seed)
    return key


# -- the sampling loop -----------------------------------------------------------------------------
def _expected_count(p: jax.Array, num_sampled: int, num_tries: jax.Array) -> jax.Array:
    """TF's ``ExpectedCountHelper(p, batch_size=num_sampled, num_tries)``, in float32 as TF."""
    p = p.astype(jnp.float32)
    with_replacement = p * jnp.float32(num_sampled)
    without = -jnp.expm1(num_tries.astype(jnp.float32) * jnp.log1p(-p))
    return jnp.where(num_tries == num_sampled, with_replacement, without)


def _sample_unique(draw: _DrawFn, key: jax.Array, num_sampled: int, chunk: int) -> tuple[jax.Array, jax.Array]:
    """Distinct values in first-seen order, and the number of draws that took."""
    tri_lower = jnp.tril(jnp.ones((chunk, chunk), dtype=bool), k=-1)

    def cond(state):
        _, _, count, _ = state
        return count < num_sampled

    def body(state):
        key, samples, count, tries = state
        key, sub = jax.random.split(key)
        d = draw(sub, chunk)
        # -1 fills the unset slots and never equals a drawn id, so no separate validity mask is needed.
        seen = jnp.any(d[:, None] == samples[None, :], axis=1)
        repeat_in_chunk = jnp.any((d[:, None] == d[None, :]) & tri_lower, axis=1)
        new = ~seen & ~repeat_in_chunk
        total = count + jnp.cumsum(new, dtype=jnp.int32)
        pos = total - 1
        accept = new & (pos < num_sampled)
        samples = samples.at[jnp.where(accept, pos, num_sampled)].set(d, mode="drop")
        done = total[-1] >= num_sampled
        # The draw that completed the set is the first whose running count reaches num_sampled.
        completing = jnp.argmax(total >= num_sampled).astype(jnp.int32)
        tries = tries + jnp.where(done, completing + 1, jnp.int32(chunk))
        return key, samples, jnp.minimum(total[-1], num_sampled), tries

    init = (key, jnp.full((num_sampled,), -1, jnp.int32), jnp.int32(0), jnp.int32(0))
    # The first chunk nearly always completes the set: running it outside the loop lets XLA fuse it
    # with its neighbours (about 2x faster on CPU); the loop only mops up the rare remainder.
    _, samples, _, tries = lax.while_loop(cond, body, body(init))
    return samples, tries


def _draw_and_prob(kind: str, range_max: int, tables: tuple[jax.Array, ...]) -> tuple[_DrawFn, _ProbFn]:
    if kind == "log_uniform":
        return _log_uniform_draw(range_max), _log_uniform_prob(range_max)
    if kind == "uniform":

        def draw(key: jax.Array, n: int) -> jax.Array:
            return jax.random.randint(key, (n,), 0, range_max, dtype=jnp.int32)

        def prob(c: jax.Array) -> jax.Array:
            return jnp.full(c.shape, 1.0 / range_max, jnp.float32)

        return draw, prob
    if kind == "fixed_unigram":
        return _alias_draw(*tables[1:]), _table_prob(tables[0])
    raise AssertionError(kind)


# One compiled program per configuration, so eager calls do not re-trace the while_loop each time;
# under an outer jit this simply inlines.
@functools.partial(jax.jit, static_argnames=("kind", "num_sampled", "unique", "range_max", "chunk"))
def _run_sampler(
    classes: jax.Array,
    key: jax.Array,
    tables: tuple[jax.Array, ...],
    *,
    kind: str,
    num_sampled: int,
    unique: bool,
    range_max: int,
    chunk: int,
) -> SamplerOutput:
    draw, prob = _draw_and_prob(kind, range_max, tables)
    if unique:
        samples, num_tries = _sample_unique(draw, key, num_sampled, chunk)
    else:
        samples = draw(key, num_sampled)
        num_tries = jnp.int32(num_sampled)
    # A true class outside the range (possible only under jit; see jaxgraph.ids) is never drawn.
    true_ec = jnp.where(classes < range_max, _expected_count(prob(classes), num_sampled, num_tries), 0.0)
    sampled_ec = _expected_count(prob(samples), num_sampled, num_tries)
    return samples, true_ec, sampled_ec


def _candidate_sampler(
    true_classes: Any,
    num_true: int,
    num_sampled: int,
    unique: bool,
    range_max: int,
    key: Any,
    seed: int | None,
    kind: str,
    tables: tuple[jax.Array, ...] = (),
    chunk: int | None = None,
) -> SamplerOutput:
    _check_common(num_true, num_sampled, unique, range_max, key)
    classes = _check_true_classes(true_classes, num_true, range_max)
    # Two draws per wanted value finish in one pass for word2vec-like settings (range 50,000,
    # 64 samples: 65-100 tries); the loop only runs again for small ranges.
    chunk = chunk or max(2 * num_sampled, 8)
    key = _prepare_key(key, seed)
    return _run_sampler(
        classes, key, tables, kind=kind, num_sampled=num_sampled, unique=bool(unique),
        range_max=int(range_max), chunk=chunk,
    )  # fmt: skip


# -- log-uniform -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _log_uniform_powers(range_max: int) -> np.ndarray:
    exponents = np.arange(_LOG_UNIFORM_BINS, dtype=np.float64) / _LOG_UNIFORM_BINS
    return np.exp(exponents * np.log1p(range_max)).astype(np.float32)


def _log_uniform_draw(range_max: int) -> _DrawFn:
    log_range = float(np.log1p(range_max))
    step = np.float32(log_range / _LOG_UNIFORM_BINS)

    def draw(key: jax.Array, n: int) -> jax.Array:
        bits = jax.random.bits(key, (2, n), jnp.uint32)
        coarse = (bits[0] >> (32 - _LOG_UNIFORM_BITS)).astype(jnp.int32)
        fine = (bits[1] >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)
        base = jnp.asarray(_log_uniform_powers(range_max))[coarse]
        # base * exp(fine * step), written with expm1 so the small factor keeps its precision.
        value = base + base * jnp.expm1(fine * step)
        return (jnp.floor(value).astype(jnp.int32) - 1) % range_max

    return draw


def _log_uniform_prob(range_max: int) -> _ProbFn:
    log_range = np.float32(np.log1p(range_max))

    def prob(c: jax.Array) -> jax.Array:
        # log((c+2)/(c+1)) as log1p(1/(c+1)): the ratio itself loses ~1e-3 relative in float32 at 50k.
        c = c.astype(jnp.float32)
        return jnp.log1p(1.0 / (c + 1.0)) / log_range

    return prob


def log_uniform_candidate_sampler(true_classes: Any, num_true: int, num_sampled: int, unique: bool, range_max: int,
                                  key: Any, seed: int | None = None, name: str | None = None) -> SamplerOutput:
    """Sample classes from the log-uniform (Zipfian) base distribution, as TF1.

    ``P(class) = log((class + 2) / (class + 1)) / log(range_max + 1)``, sampled as TF's
    ``LogUniformSampler``: ``int(exp(u * log(range_max + 1))) - 1`` (mod ``range_max``).

    Args:
      true_classes: int ``[batch, num_true]``, the target classes (only their expected counts are used).
      num_true, num_sampled, unique, range_max: as TF; static (Python ints/bools) under ``jit``.
      key: a JAX PRNG key (required).
      seed: optional int folded into ``key``. name: unused.

    Returns:
      ``(sampled_candidates int32[num_sampled], true_expected_count float32[batch, num_true],
      sampled_expected_count float32[num_sampled])``.

    >>> import jax, jax.numpy as jnp
    >>> s, t, e = log_uniform_candidate_sampler(jnp.array([[0]]), 1, 3, False, 50000, jax.random.key(1))
    >>> round(float(t[0, 0]), 4)  # P(0) * 3
    0.1922
    """
    del name
    return _candidate_sampler(true_classes, num_true, num_sampled, unique, range_max, key, seed, "log_uniform")


# -- uniform ---------------------------------------------------------------------------------------
def uniform_candidate_sampler(true_classes: Any, num_true: int, num_sampled: int, unique: bool, range_max: int,
                              key: Any, seed: int | None = None, name: str | None = None) -> SamplerOutput:
    """Sample classes uniformly from ``[0, range_max)``, as TF1 (``P(class) = 1 / range_max``).

    Arguments and results as :func:`log_uniform_candidate_sampler`.

    >>> import jax, jax.numpy as jnp
    >>> s, t, e = uniform_candidate_sampler(jnp.array([[3]]), 1, 5, True, 5, jax.random.key(0))
    >>> sorted(s.tolist())
    [0, 1, 2, 3, 4]
    """
    del name
    return _candidate_sampler(true_classes, num_true, num_sampled, unique, range_max, key, seed, "uniform")


# -- fixed unigram ---------------------------------------------------------------------------------
def _read_vocab_file(path: str) -> list[float]:
    # TF's FixedUnigramSampler::LoadFromFile: CSV-like lines, the weight is the last field.
    weights = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line:
                continue
            field = line.split(",")[-1]
            try:
                weights.append(float(field))
            except ValueError:
                raise ValueError(f"Wrong vocabulary format at line: {line}") from None
    return weights


def _fixed_unigram_weights(
    unigrams: Sequence[float], distortion: float, num_reserved_ids: int, num_shards: int, shard: int
) -> np.ndarray:
    """``weights_`` of TF's FixedUnigramSampler: reserved zeros, then this shard's ``w ** distortion``."""
    weights = [0.0 for i in range(num_reserved_ids) if i % num_shards == shard]
    word_id = len(weights)  # TF starts counting at weights_.size(), not at num_reserved_ids
    for w in np.asarray(unigrams, dtype=np.float32).reshape(-1):
        if word_id % num_shards == shard:
            weights.append(float(np.power(w, np.float32(distortion), dtype=np.float32)))
        word_id += 1
    return np.asarray(weights, dtype=np.float32)


def alias_table(weights: Any) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias table ``(accept float32 [n], alias int32 [n])``: O(1) exact draws from the
    distribution ``weights / sum(weights)`` (the table behind :func:`fixed_unigram_candidate_sampler`).

    A draw picks ``i`` uniformly and returns ``i`` if ``u < accept[i]`` (``u ~ U[0, 1)``), else ``alias[i]``.

    >>> accept, alias = alias_table(np.array([1.0, 3.0]))
    >>> accept.tolist(), alias.tolist()
    ([0.5, 1.0], [1, 1])
    """
    weights = np.asarray(weights)
    n = weights.size
    scaled = weights.astype(np.float64) * n / weights.sum(dtype=np.float64)
    accept = np.ones(n, dtype=np.float64)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s] = scaled[s]
        alias[s] = g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    # Whatever is left is 1 up to rounding: keep itself.
    return accept.astype(np.float32), alias


def fixed_unigram_candidate_sampler(
    true_classes: Any, num_true: int, num_sampled: int, unique: bool, range_max: int, key: Any,
    vocab_file: str = "",
    distortion: float = 1.0,
    num_reserved_ids: int = 0,
    num_shards: int = 1,
    shard: int = 0,
    unigrams: Sequence[float] = (),
    seed: int | None = None,
    name: str | None = None,
) -> SamplerOutput:
    """Sample classes from a fixed unigram distribution raised to ``distortion``, as TF1.

    The weights come from ``unigrams`` or from ``vocab_file`` (CSV-like lines whose last field is the
    count, as TF reads them). Ids below ``num_reserved_ids`` get weight 0. With ``num_shards > 1`` only
    ids ``i`` with ``i % num_shards == shard`` are kept, and the returned candidates index that shard's
    list, exactly as TF (so ``range_max`` must equal the shard's count). ``P(c) = w_c / sum(w)``.
    Other arguments and results as :func:`log_uniform_candidate_sampler`.

    >>> import jax, jax.numpy as jnp
    >>> s, t, e = fixed_unigram_candidate_sampler(
    ...     jnp.array([[1]]), 1, 2, False, 3, jax.random.key(0), unigrams=[1.0, 3.0, 0.0])
    >>> float(t[0, 0])  # P(1) * 2
    1.5
    >>> sorted(set(s.tolist()) - {0, 1})
    []
    """
    del name
    _check_common(num_true, num_sampled, unique, range_max, key)
    if not vocab_file and len(unigrams) == 0:
        raise ValueError("Must provide either vocab_file or unigrams.")
    if vocab_file and len(unigrams) != 0:
        raise ValueError("Must only provide one of vocab_file and unigrams.")
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard must be in [0, num_shards={num_shards}), got {shard}")
    counts = _read_vocab_file(vocab_file) if vocab_file else unigrams
    weights = _fixed_unigram_weights(counts, distortion, num_reserved_ids, num_shards, shard)
    if weights.size != range_max:
        raise ValueError(f"range is {range_max} must be equal to weights size  {weights.size}")
    if np.any(weights < 0) or not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        raise ValueError("unigram weights must be finite, non-negative and not all zero")
    if unique and np.count_nonzero(weights) < num_sampled:
        # TF would loop forever here; a jitted while_loop would too.
        raise ValueError(
            f"unique=True needs at least num_sampled={num_sampled} classes with a non-zero weight, "
            f"got {np.count_nonzero(weights)}"
        )
    # TF accumulates total_weight_ in float, one weight at a time.
    total = np.cumsum(weights, dtype=np.float32)[-1]
    probs = (weights / total).astype(np.float32)
    # Passed as arguments, not baked in as constants, so one compiled sampler serves every table.
    tables = tuple(jnp.asarray(t) for t in (probs, *alias_table(weights)))
    return _candidate_sampler(
        true_classes, num_true, num_sampled, unique, range_max, key, seed, "fixed_unigram", tables
    )


def _alias_draw(accept: jax.Array, alias: jax.Array) -> _DrawFn:
    def draw(key: jax.Array, n: int) -> jax.Array:
        k_col, k_acc = jax.random.split(key)
        col = jax.random.randint(k_col, (n,), 0, accept.shape[0], dtype=jnp.int32)
        u = jax.random.uniform(k_acc, (n,), jnp.float32)
        return jnp.where(u < accept[col], col, alias[col])

    return draw


def _table_prob(probs: jax.Array) -> _ProbFn:
    def prob(c: jax.Array) -> jax.Array:
        return jnp.take(probs, c, mode="fill", fill_value=0.0)

    return prob


# -- accidental hits -------------------------------------------------------------------------------
def compute_accidental_hits(
    true_classes: Any,
    sampled_candidates: Any,
    num_true: int,
    seed: int | None = None,
    name: str | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Find sampled candidates equal to a true class, as ``tf.nn.compute_accidental_hits``.

    Returns ``(indices int32[K], ids int32[K], weights float32[K])``: hit ``k`` is row ``indices[k]``,
    column ``ids[k]`` of the ``[batch, num_sampled]`` sampled logits, with weight ``-FLT_MAX``. When a
    value repeats in ``sampled_candidates`` its last position is used, as in TF.

    Unlike TF, whose ``K`` is the (data-dependent) number of hits, ``K`` is always
    ``batch * num_true`` so the result has a static shape under ``jit``: entry ``i * num_true + j``
    stands for ``true_classes[i, j]`` and has weight ``0.0`` (and id 0) when it hit nothing. Scatter
    with ``.at[indices, ids].min(weights)`` into zeros to get TF's dense mask; keep the entries with
    ``weights != 0`` to get TF's exact lists.

    >>> import jax.numpy as jnp
    >>> idx, ids, w = compute_accidental_hits(jnp.array([[1], [2]]), jnp.array([2, 5, 1]), 1)
    >>> idx.tolist(), ids.tolist(), (w != 0).tolist()
    ([0, 1], [2, 0], [True, True])
    """
    del seed, name
    classes = _check_true_classes(true_classes, num_true, None)
    sampled = _int_array(sampled_candidates, "sampled_candidates")
    if sampled.ndim != 1:
        raise ValueError("sampled_candidates must be a vector, which is typically an output from CandidateSampler")
    batch, num_sampled = classes.shape[0], sampled.shape[0]
    if num_sampled == 0:
        hit = jnp.zeros((batch, num_true), bool)
        pos = jnp.zeros((batch, num_true), jnp.int32)
    else:
        eq = classes[:, :, None] == sampled[None, None, :]
        hit = jnp.any(eq, axis=-1)
        pos = (num_sampled - 1 - jnp.argmax(eq[..., ::-1], axis=-1)).astype(jnp.int32)
    indices = jnp.repeat(jnp.arange(batch, dtype=jnp.int32), num_true)
    ids = jnp.where(hit, pos, 0).reshape(-1)
    weights = jnp.where(hit, jnp.float32(-FLT_MAX), jnp.float32(0.0)).reshape(-1)
    return indices, ids, weights
