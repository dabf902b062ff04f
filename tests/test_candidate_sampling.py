"""Candidate samplers: TF1's distributions and expected counts, unique=True under jit, accidental hits."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph.nn import candidate_sampling as cs
from jaxgraph.nn import (
    compute_accidental_hits,
    fixed_unigram_candidate_sampler,
    log_uniform_candidate_sampler,
    uniform_candidate_sampler,
)

KEY = jax.random.key(1234)


def test_log_uniform_probabilities_match_reference():
    # reference §6.4 (computed), range_max = 50000. With unique=False and num_sampled=1, the true
    # expected count is exactly P(c).
    classes = [0, 1, 2, 9, 99, 999, 49999]
    expected = [0.0640629, 0.0374744, 0.0265885, 0.00880887, 9.19641e-4, 9.2377e-5, 1.84844e-6]
    _, true_ec, _ = log_uniform_candidate_sampler(jnp.array([classes]), len(classes), 1, False, 50000, KEY)
    np.testing.assert_allclose(true_ec[0], expected, rtol=2e-5)
    # and it is a distribution: the probabilities sum to 1 over the range
    p = cs._log_uniform_prob(50000)(jnp.arange(50000))
    np.testing.assert_allclose(float(jnp.sum(p)), 1.0, rtol=1e-4)


@pytest.mark.parametrize(
    "num_tries,expected",
    [
        (64, [4.1000, 2.3984, 0.51468, 0.0059062]),
        (70, [0.99029, 0.93100, 0.43176, 0.0064394]),
        (100, [0.99867, 0.97806, 0.55400, 0.0091864]),
    ],
)
def test_expected_count_helper_reference_values(num_tries, expected):
    p = cs._log_uniform_prob(50000)(jnp.array([0, 1, 10, 1000]))
    got = cs._expected_count(p, 64, jnp.int32(num_tries))
    np.testing.assert_allclose(got, expected, rtol=2e-4)


def _replay_unique(key, draw, num_sampled, chunk):
    """TF's sequential rejection loop over the very draws the jitted sampler makes."""
    picked, tries = [], 0
    while len(picked) < num_sampled:
        key, sub = jax.random.split(key)
        for v in np.asarray(draw(sub, chunk)).tolist():
            tries += 1
            if v not in picked:
                picked.append(v)
                if len(picked) == num_sampled:
                    break
    return picked, tries


# Small range: several chunks, duplicates across and within chunks; word2vec-sized: one chunk.
@pytest.mark.parametrize("range_max,num_sampled,chunk", [(10, 10, 3), (50000, 64, 128)])
def test_unique_matches_sequential_rejection(range_max, num_sampled, chunk):
    draw = cs._log_uniform_draw(range_max)
    f = jax.jit(lambda k: cs._sample_unique(draw, k, num_sampled, chunk))
    for seed in range(2):
        key = jax.random.fold_in(KEY, seed)
        samples, tries = f(key)
        expected, expected_tries = _replay_unique(key, draw, num_sampled, chunk)
        assert np.asarray(samples).tolist() == expected  # distinct, in first-seen (draw) order
        assert int(tries) == expected_tries


def test_unique_sampler_counts_consistent_with_num_tries(maybe_jit):
    labels = jnp.array([[0], [3], [49999]])
    f = maybe_jit(lambda k: log_uniform_candidate_sampler(labels, 1, 64, True, 50000, k))
    sampled, true_ec, sampled_ec = f(KEY)
    assert sampled.dtype == jnp.int32 and sampled.shape == (64,)
    assert len(set(np.asarray(sampled).tolist())) == 64
    assert np.all((np.asarray(sampled) >= 0) & (np.asarray(sampled) < 50000))
    # Solve 1 - (1 - p)^n = Q for n on class 0 (p = 0.064, never rounds away): n must be an integer
    # > 64 (class 0 alone makes duplicates near certain) and must reproduce every other count.
    p_true = cs._log_uniform_prob(50000)(labels)
    n = np.log1p(-float(true_ec[0, 0])) / np.log1p(-float(p_true[0, 0]))
    assert abs(n - round(n)) < 1e-2 and round(n) > 64
    n = jnp.int32(round(n))
    np.testing.assert_allclose(true_ec, cs._expected_count(p_true, 64, n), rtol=1e-6)
    p_s = cs._log_uniform_prob(50000)(sampled)
    np.testing.assert_allclose(sampled_ec, cs._expected_count(p_s, 64, n), rtol=1e-6)


def test_non_unique_expected_counts_are_p_times_s(maybe_jit):
    labels = jnp.array([[5, 7]])
    f = maybe_jit(lambda k: uniform_candidate_sampler(labels, 2, 6, False, 20, k))
    sampled, true_ec, sampled_ec = f(KEY)
    np.testing.assert_allclose(true_ec, [[0.3, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(sampled_ec, np.full(6, 0.3), rtol=1e-6)
    # unique=True over the whole range must return a permutation of it
    s, _, _ = maybe_jit(lambda k: uniform_candidate_sampler(labels, 2, 20, True, 20, k))(KEY)
    assert sorted(np.asarray(s).tolist()) == list(range(20))


def _assert_frequencies(draws, probs, buckets):
    """Each bucket's count within 5 binomial standard deviations of N * P(bucket).

    With about 60 buckets, a correct sampler fails this with probability < 60 * 5.7e-7 (two-sided
    5 sigma, normal approximation; every bucket has N * P >= 200). A wrong distribution (e.g. the
    float32 `log((c+2)/(c+1))` or an off-by-one in `- 1`) moves the small-id buckets by far more.
    """
    n = draws.size
    counts = np.bincount(draws, minlength=probs.size)
    for lo, hi in buckets:
        p = float(probs[lo:hi].sum())
        assert n * p >= 200, (lo, hi)
        observed = int(counts[lo:hi].sum())
        sigma = np.sqrt(n * p * (1 - p))
        assert abs(observed - n * p) <= 5 * sigma, (lo, hi, observed, n * p)


def test_log_uniform_frequencies():
    range_max, n = 50000, 400_000
    draws = np.asarray(jax.jit(lambda k: cs._log_uniform_draw(range_max)(k, n))(KEY))
    assert draws.min() >= 0 and draws.max() < range_max
    c = np.arange(range_max, dtype=np.float64)
    probs = np.log((c + 2) / (c + 1)) / np.log(range_max + 1)
    edges = list(range(40)) + list(np.unique(np.geomspace(40, range_max, 24).astype(int)))
    buckets = list(zip(edges[:-1], edges[1:], strict=True))
    _assert_frequencies(draws, probs, buckets)


def test_fixed_unigram_frequencies_reserved_and_distortion():
    unigrams = np.arange(1, 31, dtype=np.float64)  # ids 2..31 after 2 reserved ids
    sampled, true_ec, _ = fixed_unigram_candidate_sampler(
        jnp.array([[0], [2], [31]]), 1, 100_000, False, 32, KEY,
        distortion=0.5, num_reserved_ids=2, unigrams=unigrams.tolist(),
    )  # fmt: skip
    w = np.concatenate([[0.0, 0.0], unigrams**0.5])
    probs = w / w.sum()
    draws = np.asarray(sampled)
    assert not np.isin(draws, [0, 1]).any()  # reserved ids have probability 0
    _assert_frequencies(draws, probs, [(i, i + 1) for i in range(2, 32)])
    np.testing.assert_allclose(true_ec[:, 0], probs[[0, 2, 31]] * 100_000, rtol=1e-5)


@pytest.mark.parametrize(
    "weights", [[1.0, 3.0], [5.0, 0.0, 1.0, 2.0, 0.5], np.arange(200.0) ** 0.75 + (np.arange(200) % 7)]
)
def test_alias_table_gives_the_exact_distribution(weights):
    """The distribution a table encodes, read off the table itself: ``P(i) = (accept[i] + sum over j with
    alias[j] == i of (1 - accept[j])) / n``, equal to ``weights / sum(weights)`` (zero weights never drawn)."""
    accept, alias = cs.alias_table(np.asarray(weights))
    n = len(weights)
    assert accept.dtype == np.float32 and alias.dtype == np.int32 and accept.shape == alias.shape == (n,)
    p = accept.astype(np.float64).copy()
    np.add.at(p, alias, 1.0 - accept.astype(np.float64))
    w = np.asarray(weights, np.float64)
    np.testing.assert_allclose(p / n, w / w.sum(), atol=1e-7)
    assert np.all(p[w == 0] == 0)


def test_fixed_unigram_shards_and_vocab_file(tmp_path):
    # TF keeps ids with id % num_shards == shard; candidates index that shard's list.
    _, true_ec, _ = fixed_unigram_candidate_sampler(
        jnp.array([[0, 1, 2]]), 3, 1, False, 3, KEY, num_shards=2, shard=1, unigrams=[9, 1, 9, 2, 9, 7]
    )
    np.testing.assert_allclose(true_ec, [[0.1, 0.2, 0.7]], rtol=1e-6)
    vocab = tmp_path / "vocab.csv"
    vocab.write_text("the,6\nof,3\nzebra,1\n")
    _, true_ec, _ = fixed_unigram_candidate_sampler(jnp.array([[0], [2]]), 1, 2, False, 3, KEY, vocab_file=str(vocab))
    np.testing.assert_allclose(true_ec[:, 0], [0.6 * 2, 0.1 * 2], rtol=1e-6)
    with pytest.raises(ValueError, match="Wrong vocabulary format at line: bad,x"):
        vocab.write_text("bad,x\n")
        fixed_unigram_candidate_sampler(jnp.array([[0]]), 1, 1, False, 1, KEY, vocab_file=str(vocab))
    with pytest.raises(ValueError, match="range is 4 must be equal to weights size  3"):
        fixed_unigram_candidate_sampler(jnp.array([[0]]), 1, 1, False, 4, KEY, unigrams=[1, 2, 3])
    with pytest.raises(ValueError, match="Must provide either vocab_file or unigrams."):
        fixed_unigram_candidate_sampler(jnp.array([[0]]), 1, 1, False, 4, KEY)
    with pytest.raises(ValueError, match="non-zero weight"):
        fixed_unigram_candidate_sampler(jnp.array([[0]]), 1, 2, True, 3, KEY, unigrams=[0, 0, 1])


def test_errors():
    labels = jnp.array([[1], [2]])
    with pytest.raises(ValueError, match="^Sampler's range is too small.$"):
        log_uniform_candidate_sampler(labels, 1, 11, True, 10, KEY)
    log_uniform_candidate_sampler(labels, 1, 11, False, 10, KEY)  # fine with replacement
    with pytest.raises(ValueError, match="^true_classes must be a matrix$"):
        log_uniform_candidate_sampler(jnp.array([1, 2]), 1, 2, True, 10, KEY)
    with pytest.raises(ValueError, match="^true_classes must have num_true columns, expected: 1 was: 2$"):
        log_uniform_candidate_sampler(labels, 2, 2, True, 10, KEY)
    with pytest.raises(TypeError, match="integers"):
        log_uniform_candidate_sampler(labels.astype(jnp.float32), 1, 2, True, 10, KEY)
    with pytest.raises(ValueError, match="PRNG key"):
        uniform_candidate_sampler(labels, 1, 2, True, 10, None)
    with pytest.raises(ValueError, match=r"out of range \[0, 10\), received 10"):
        log_uniform_candidate_sampler(jnp.array([[10]]), 1, 2, True, 10, KEY)


def test_seed_folds_into_key_and_same_key_same_samples():
    labels = jnp.array([[1]])
    a = log_uniform_candidate_sampler(labels, 1, 16, True, 1000, KEY)[0]
    b = log_uniform_candidate_sampler(labels, 1, 16, True, 1000, KEY)[0]
    c = log_uniform_candidate_sampler(labels, 1, 16, True, 1000, KEY, seed=3)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampler_traces_once_under_jit():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(labels, key):
        return log_uniform_candidate_sampler(labels, 1, 64, True, 50000, key)

    for i in range(3):
        labels = jnp.full((128, 1), i, jnp.int32)
        step(labels, jax.random.fold_in(KEY, i))
    chex.clear_trace_counter()


def test_compute_accidental_hits(maybe_jit):
    true = jnp.array([[1, 7], [3, 4], [9, 1]])
    sampled = jnp.array([4, 1, 5, 1, 8])  # 1 repeats: its last position (3) wins, as in TF
    idx, ids, w = maybe_jit(lambda t, s: compute_accidental_hits(t, s, 2))(true, sampled)
    assert idx.shape == ids.shape == w.shape == (6,)  # static: batch * num_true
    hits = np.asarray(w) != 0
    assert np.asarray(idx)[hits].tolist() == [0, 1, 2]
    assert np.asarray(ids)[hits].tolist() == [3, 0, 3]
    np.testing.assert_array_equal(np.asarray(w)[hits], np.full(3, -np.finfo(np.float32).max))
    dense = jnp.zeros((3, 5)).at[idx, ids].min(w)
    expected = np.zeros((3, 5), np.float32)
    expected[0, 3] = expected[1, 0] = expected[2, 3] = -np.finfo(np.float32).max
    np.testing.assert_array_equal(dense, expected)
