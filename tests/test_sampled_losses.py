"""nce_loss / sampled_softmax_loss against a NumPy transcription of TF1's _compute_sampled_logits."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgraph import Variable, gradients
from jaxgraph.nn import nce_loss, sampled_softmax_loss
from jaxgraph.nn.sampled_losses import _sigmoid_cross_entropy_with_logits

FLT_MAX = np.finfo(np.float32).max
V, D, B = 12, 4, 3


def _np_logits(w, b, labels, inputs, sampled, true_ec, sampled_ec, remove_hits):
    """TF1's _compute_sampled_logits in float64 NumPy, written from §6.2 independently of jaxgraph."""
    batch, num_true = labels.shape
    true_w = w[labels]  # [B, T, D]
    true_logits = np.einsum("bd,btd->bt", inputs, true_w) + b[labels]
    sampled_logits = inputs @ w[sampled].T + b[sampled]
    if remove_hits:
        last_pos = {int(v): k for k, v in enumerate(sampled)}
        for i in range(batch):
            for j in range(num_true):
                if int(labels[i, j]) in last_pos:
                    sampled_logits[i, last_pos[int(labels[i, j])]] = -FLT_MAX
    true_logits = true_logits - np.log(true_ec)
    sampled_logits = sampled_logits - np.log(sampled_ec)
    logits = np.concatenate([true_logits, sampled_logits], 1)
    targets = np.concatenate([np.full_like(true_logits, 1.0 / num_true), np.zeros_like(sampled_logits)], 1)
    return logits, targets


def _np_nce(logits, z):
    return np.sum(np.maximum(logits, 0) - logits * z + np.log1p(np.exp(-np.abs(logits))), axis=1)


def _np_softmax_xent(logits, z):
    m = logits.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.sum(np.exp(logits - m), axis=1))
    return -np.sum(z * (logits - lse[:, None]), axis=1)


def _problem(num_true, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(V, D)).astype(np.float32)
    b = rng.normal(size=(V,)).astype(np.float32)
    inputs = rng.normal(size=(B, D)).astype(np.float32)
    labels = np.array([[1, 5], [3, 0], [5, 7]][:B], np.int32)[:, :num_true]
    sampled = np.array([5, 2, 9, 0, 11], np.int32)  # 5 and 0 collide with true labels
    true_ec = rng.uniform(0.1, 0.9, size=(B, num_true)).astype(np.float32)
    sampled_ec = rng.uniform(0.1, 0.9, size=(5,)).astype(np.float32)
    return w, b, labels, inputs, (sampled, true_ec, sampled_ec)


def test_sigmoid_cross_entropy_reference_values():
    got = _sigmoid_cross_entropy_with_logits(jnp.array([1.0, 0.0, 1.0]), jnp.array([-2.0, 0.0, 3.0]))
    np.testing.assert_allclose(got, [2.126928, 0.693147, 0.048587], rtol=1e-5)


@pytest.mark.parametrize("num_true", [1, 2])
def test_losses_match_numpy(maybe_jit, num_true):
    w, b, labels, inputs, sv = _problem(num_true)
    variants = [(fn, hits) for fn in (nce_loss, sampled_softmax_loss) for hits in (False, True)]

    # All four variants in one function: one compilation under jit instead of four.
    def all_losses(w, b, labels, inputs, sv):
        return [
            fn(w, b, labels, inputs, 5, V, num_true=num_true, sampled_values=sv, remove_accidental_hits=hits)
            for fn, hits in variants
        ]

    got = maybe_jit(all_losses)(w, b, labels, inputs, sv)
    for (fn, hits), loss in zip(variants, got, strict=True):
        logits, z = _np_logits(w.astype(np.float64), b.astype(np.float64), labels, inputs.astype(np.float64), *sv, hits)
        expected = _np_nce(logits, z) if fn is nce_loss else _np_softmax_xent(logits, z)
        assert loss.shape == (B,)
        np.testing.assert_allclose(loss, expected, rtol=2e-5, err_msg=f"{fn.__name__}, hits={hits}")


def test_accidental_hits_change_the_loss():
    w, b, labels, inputs, sv = _problem(1)
    kept = nce_loss(w, b, labels, inputs, 5, V, sampled_values=sv)
    removed = nce_loss(w, b, labels, inputs, 5, V, sampled_values=sv, remove_accidental_hits=True)
    # Rows 0 (label 1) has no hit; rows 1 and 2 (labels 3, 5): 5 is sampled at position 0.
    assert float(kept[0]) == pytest.approx(float(removed[0]), rel=1e-6)
    assert float(kept[1]) == pytest.approx(float(removed[1]), rel=1e-6)
    assert float(removed[2]) < float(kept[2])


def test_sharded_variable_weights_same_as_single_table_and_gradient_matches_numpy():
    w, b, labels, inputs, sv = _problem(2)

    def loss(w_shards, b, inputs):
        return jnp.mean(sampled_softmax_loss(w_shards, b, labels, inputs, 5, V, num_true=2, sampled_values=sv))

    shards = [w[0::3], w[1::3], w[2::3]]  # "mod" over 3 shards

    @jax.jit
    def both(shards, w, b, inputs):
        return (
            loss(shards, b, inputs),
            loss([w], b, inputs),
            jax.grad(loss, argnums=(0, 1, 2))(shards, b, inputs),
            jax.grad(loss)([w], b, inputs)[0],
        )

    sharded, single, (g_shards, g_b, g_in), g_single = both(shards, w, b, inputs)
    np.testing.assert_allclose(sharded, single, rtol=1e-6)
    order = np.argsort(np.r_[0:V:3, 1:V:3, 2:V:3])
    np.testing.assert_allclose(np.concatenate(g_shards)[order], g_single, rtol=1e-6)

    # d loss / d inputs by finite differences of the NumPy reference (float64).
    def np_loss(x):
        logits, z = _np_logits(w.astype(np.float64), b.astype(np.float64), labels, x, *sv, True)
        return _np_softmax_xent(logits, z).mean()

    eps, x0 = 1e-6, inputs.astype(np.float64)
    fd = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        dx = np.zeros_like(x0)
        dx[idx] = eps
        fd[idx] = (np_loss(x0 + dx) - np_loss(x0 - dx)) / (2 * eps)
    np.testing.assert_allclose(g_in, fd, rtol=1e-3, atol=1e-5)
    assert np.all(np.isfinite(g_b))


@pytest.mark.parametrize("strategy", ["mod", "div"])
def test_partition_strategy_is_passed_to_the_lookups(strategy):
    # 12 classes over 5 shards: "div" gives 3, 3, 2, 2, 2 rows, "mod" ids 0,5,10 | 1,6,11 | ...; a loss
    # that looked its shards up with the other strategy (or the default) would read other rows.
    w, b, labels, inputs, sv = _problem(2)
    if strategy == "mod":
        w_shards, b_shards = [w[p::5] for p in range(5)], [b[p::5] for p in range(5)]
    else:
        bounds = [3, 6, 8, 10]
        w_shards, b_shards = np.split(w, bounds), np.split(b, bounds)
    for fn in (nce_loss, sampled_softmax_loss):
        got = fn([jnp.asarray(s) for s in w_shards], [jnp.asarray(s) for s in b_shards], labels, inputs, 5, V,
                 num_true=2, sampled_values=sv, partition_strategy=strategy)
        want = fn(w, b, labels, inputs, 5, V, num_true=2, sampled_values=sv)
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6)


def test_variables_use_one_lookup_per_table(monkeypatch):
    calls = []
    real = gradients.gather_rows

    def spy(table, ids, **kwargs):
        calls.append(table.name if isinstance(table, Variable) else "array")
        return real(table, ids, **kwargs)

    monkeypatch.setattr(gradients, "gather_rows", spy)
    w, b, labels, inputs, sv = _problem(1)
    nce_loss(Variable(w, name="nce_w"), Variable(b, name="nce_b"), labels, inputs, 5, V, sampled_values=sv)
    assert calls == ["nce_w", "nce_b"]


def test_sampler_inside_loss_under_jit_traces_once():
    w, b, labels, inputs, _ = _problem(1)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(w, key):
        return jnp.mean(nce_loss(w, b, labels, inputs, 4, V, key=key))

    values = [float(step(w, jax.random.fold_in(jax.random.key(0), i))) for i in range(3)]
    chex.clear_trace_counter()
    assert all(np.isfinite(values)) and len(set(values)) > 1  # fresh negatives per key


def test_errors():
    w, b, labels, inputs, sv = _problem(1)
    with pytest.raises(ValueError, match="key"):
        nce_loss(w, b, labels, inputs, 5, V)
    with pytest.raises(ValueError, match=r"labels must be \[batch, num_true=2\]"):
        nce_loss(w, b, labels, inputs, 5, V, num_true=2, sampled_values=sv)
    with pytest.raises(ValueError, match="batch size"):
        sampled_softmax_loss(w, b, labels, inputs[:2], 5, V, sampled_values=sv)
    with pytest.raises(TypeError, match="integers"):
        nce_loss(w, b, labels.astype(np.float32), inputs, 5, V, sampled_values=sv)
    with pytest.raises(ValueError, match=r"inputs must be \[batch, dim\]"):
        nce_loss(w, b, labels, inputs[0], 5, V, sampled_values=sv)
