"""Fault injection for the library: every fault is a clear error, or a documented recovery said out loud.

Two groups:

* **Out-of-range ids** in every API that reads or writes rows by id: concrete ids raise TF's
  ``indices[i] = v is not in [0, n)``; under ``jax.jit`` they follow the one rule of ``jaxgraph.ids``
  (zeros read, updates dropped, never another row, negatives never wrapping); under
  ``jaxgraph.checked`` a jitted call raises TF's message.
* **Checkpoints** (further down): concurrent writers, damaged or deleted indexes, corrupt newest
  checkpoints, unwritable directories, a file where a directory should be, a full disk, foreign files.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxgraph as jg
from jaxgraph import IndexedSlices, Variable
from jaxgraph.errors import InvalidArgumentError
from jaxgraph.gradients import gather_rows
from jaxgraph.nn import (
    embedding_lookup,
    fixed_unigram_candidate_sampler,
    log_uniform_candidate_sampler,
    nce_loss,
    sampled_softmax_loss,
    uniform_candidate_sampler,
)
from jaxgraph.train import (
    AdagradOptimizer,
    AdamOptimizer,
    GradientDescentOptimizer,
    LazyAdamOptimizer,
    MomentumOptimizer,
    OptaxOptimizer,
    RMSPropOptimizer,
)

# Every row is non-zero and names its id, so a zero row, a wrapped row or a NaN is told apart.
TABLE = np.arange(1.0, 13.0, dtype=np.float32).reshape(6, 2)
MOD_SHARDS = [TABLE[0::2], TABLE[1::2]]  # ids 0,2,4 | 1,3,5
DIV_SHARDS = [TABLE[:3], TABLE[3:]]  # ids 0,1,2 | 3,4,5


def tf_message(i, v, n):
    return rf"^indices\[{i}\] = {v} is not in \[0, {n}\)$"


LOOKUPS = {
    "table": lambda ids: embedding_lookup(jnp.asarray(TABLE), ids),
    "variable": lambda ids: embedding_lookup(Variable(jnp.asarray(TABLE), name="emb"), ids),
    "mod-shards": lambda ids: embedding_lookup([jnp.asarray(s) for s in MOD_SHARDS], ids),
    "div-shards": lambda ids: embedding_lookup([jnp.asarray(s) for s in DIV_SHARDS], ids, partition_strategy="div"),
    "gather_rows": lambda ids: gather_rows(jnp.asarray(TABLE), ids),
}


# -- embedding_lookup and gather_rows --------------------------------------------------------------
@pytest.mark.parametrize("kind", LOOKUPS)
@pytest.mark.parametrize("bad", [6, 100, -1, -6])
def test_lookup_concrete_out_of_range_raises_tf_message(kind, bad):
    with pytest.raises(InvalidArgumentError, match=tf_message(2, bad, 6)):
        LOOKUPS[kind]([[0, 5], [bad, 1]])


@pytest.mark.parametrize("kind", LOOKUPS)
def test_lookup_under_jit_reads_zeros_never_another_row(kind):
    out = jax.jit(LOOKUPS[kind])(jnp.array([0, 6, 100, -1, -6, 5]))
    np.testing.assert_array_equal(out, [TABLE[0], [0, 0], [0, 0], [0, 0], [0, 0], TABLE[5]])


@pytest.mark.parametrize("kind", LOOKUPS)
def test_lookup_checked_mode_raises_tf_message(kind):
    lookup = jg.checked(LOOKUPS[kind])
    np.testing.assert_array_equal(lookup(jnp.array([5, 0])), TABLE[[5, 0]])
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 6, 6)):
        lookup(jnp.array([0, 6, 1]))
    with pytest.raises(InvalidArgumentError, match=tf_message(2, -1, 6)):
        lookup(jnp.array([[0, 1], [-1, 2]]))


def _sparse_step(opt):
    def step(params, opt_state, ids):
        def loss(p):
            return jnp.sum(embedding_lookup(p["emb"], ids) * p["w"].value)

        return opt.minimize(loss, params, opt_state)

    return step


def _emb_params():
    return {"emb": Variable(jnp.asarray(TABLE), name="emb"), "w": Variable(jnp.ones(2), name="w")}


def test_sparse_minimize_under_jit_drops_out_of_range_rows_and_checked_mode_raises():
    opt = GradientDescentOptimizer(1.0)
    params = _emb_params()
    step = _sparse_step(opt)
    new, _, loss = jax.jit(step)(params, opt.init(params), jnp.array([1, 100, -1]))
    want = TABLE.copy()
    want[1] -= 1.0  # only the valid id moves: neither row 0 (clamped) nor row 5 (wrapped)
    np.testing.assert_array_equal(new["emb"].value, want)
    assert float(loss) == pytest.approx(TABLE[1].sum())  # the bad ids read zeros
    np.testing.assert_array_equal(new["w"].value, 1.0 - TABLE[1])
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 100, 6)):
        jg.checked(step)(params, opt.init(params), jnp.array([1, 100, -1]))


# -- sampled losses -----------------------------------------------------------------------------------
LOSSES = {"nce": nce_loss, "sampled_softmax": sampled_softmax_loss}
SAMPLED = (jnp.array([2, 3]), jnp.full((2, 1), 0.5), jnp.full((2,), 0.5))


def _loss_args(labels):
    w, b = jnp.asarray(TABLE), jnp.arange(6.0) / 10
    return w, b, labels, jnp.ones((2, 2))


@pytest.mark.parametrize("loss", LOSSES)
def test_num_classes_larger_than_the_tables_is_an_error(loss):
    w, b, labels, inputs = _loss_args(jnp.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"num_classes = 7 is larger than the 6 rows of weights"):
        LOSSES[loss](w, b, labels, inputs, 2, 7, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"num_classes = 6 is larger than the 5 rows of biases"):
        LOSSES[loss](w, b[:5], labels, inputs, 2, 6, sampled_values=SAMPLED)
    # Under jit the shapes are known too: the error comes at trace time, not as NaN.
    with pytest.raises(ValueError, match="num_classes = 9"):
        jax.jit(lambda w: LOSSES[loss](w, b, labels, inputs, 2, 9, key=jax.random.key(0)))(w)
    with pytest.raises(ValueError, match="num_classes = 7 is larger than the 6 rows of weights"):
        LOSSES[loss]([w[:3], w[3:]], b, labels, inputs, 2, 7, sampled_values=SAMPLED)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("bad", [6, -1])
def test_labels_out_of_range(loss, bad):
    w, b, _, inputs = _loss_args(None)
    fn = LOSSES[loss]
    with pytest.raises(InvalidArgumentError, match=tf_message(1, bad, 6)):
        fn(w, b, jnp.array([[0], [bad]]), inputs, 2, 6, key=jax.random.key(0))
    # Checked against num_classes, even where the tables have more rows.
    below = bad if bad < 0 else 5
    with pytest.raises(InvalidArgumentError, match=tf_message(1, below, 5)):
        fn(w, b, jnp.array([[0], [below]]), inputs, 2, 5, sampled_values=SAMPLED)

    def total(w, b, labels):
        return jnp.sum(fn(w, b, labels, inputs, 2, 6, sampled_values=SAMPLED))

    # Under jit: a finite loss, and the bad label's rows get no gradient (no wrapped or clamped row).
    labels = jnp.array([[1], [bad]])
    value, (gw, gb) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(w, b, labels)
    assert np.isfinite(float(value))
    touched = {1, 2, 3}  # the good label and the two sampled classes
    for row in set(range(6)) - touched:
        assert not np.any(np.asarray(gw[row])) and not np.asarray(gb[row]), row
    with pytest.raises(InvalidArgumentError, match=tf_message(1, bad, 6)):
        jg.checked(total)(w, b, labels)


# -- IndexedSlices given to apply_gradients ------------------------------------------------------------
OPTIMIZERS = {
    "sgd": lambda: GradientDescentOptimizer(0.5),
    "momentum": lambda: MomentumOptimizer(0.5, 0.9),
    "adagrad": lambda: AdagradOptimizer(0.5),
    "adam": lambda: AdamOptimizer(0.5),
    "lazy_adam": lambda: LazyAdamOptimizer(0.5),
    "rmsprop": lambda: RMSPropOptimizer(0.5),
    "optax": lambda: OptaxOptimizer(optax.sgd(0.5)),
}


def _apply(opt, indices):
    params = {"v": Variable(jnp.ones((4, 2)), name="v")}
    grad = IndexedSlices(jnp.ones((len(indices), 2)), indices, (4, 2))
    return opt.apply_gradients([(grad, "v")], params, opt.init(params))[0]["v"].value


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_apply_gradients_out_of_range_indices(name):
    opt = OPTIMIZERS[name]()
    with pytest.raises(InvalidArgumentError, match=tf_message(1, 10, 4)):
        _apply(opt, jnp.array([0, 10]))
    with pytest.raises(InvalidArgumentError, match=tf_message(0, -1, 4)):
        _apply(opt, jnp.array([-1, 2]))
    # The padding index (dense_shape[0]) is allowed: it is what coalesce and sharded lookups emit.
    reference = np.asarray(_apply(opt, jnp.array([2])))
    np.testing.assert_array_equal(_apply(opt, jnp.array([2, 4])), reference)
    # Under jit the bad indices are dropped: the result is that of the good index alone.
    jitted = jax.jit(lambda idx: _apply(opt, idx))
    np.testing.assert_array_equal(jitted(jnp.array([2, 10, -1, -4])), reference)
    if name in ("sgd", "optax"):  # one check in the shared base class; two code paths use it
        with pytest.raises(InvalidArgumentError, match=tf_message(2, -1, 4)):
            jg.checked(lambda idx: _apply(opt, idx))(jnp.array([2, 4, -1]))


def test_indexed_slices_to_dense_and_coalesce_never_wrap():
    with pytest.raises(InvalidArgumentError, match=tf_message(1, -1, 3)):
        IndexedSlices(jnp.ones((2, 1)), jnp.array([0, -1]), (3, 1)).to_dense()

    def dense(indices):
        g = IndexedSlices(jnp.ones((3, 1)), indices, (3, 1))
        return g.to_dense(), g.coalesce().to_dense()

    for out in jax.jit(dense)(jnp.array([1, -1, 7])):
        np.testing.assert_array_equal(out.ravel(), [0.0, 1.0, 0.0])


# -- candidate samplers ----------------------------------------------------------------------------
SAMPLERS = {
    "log_uniform": log_uniform_candidate_sampler,
    "uniform": uniform_candidate_sampler,
    "fixed_unigram": lambda *a, **k: fixed_unigram_candidate_sampler(*a, unigrams=[1.0] * 6, **k),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_true_classes_out_of_range(name):
    sampler = SAMPLERS[name]
    key = jax.random.key(0)
    with pytest.raises(InvalidArgumentError, match=r"^`true_candidate` out of range \[0, 6\), received -2$"):
        sampler(jnp.array([[1], [-2]]), 1, 3, True, 6, key)
    # Under jit an out-of-range class is never drawn: expected count 0, not a value read elsewhere.
    # (unique=False: the rule does not depend on it, and the rejection loop is slow to compile.)
    _, true_ec, _ = jax.jit(lambda c: sampler(c, 1, 3, False, 6, key))(jnp.array([[1], [6], [-1]]))
    assert float(true_ec[0, 0]) > 0 and true_ec[1:].tolist() == [[0.0], [0.0]]
    with pytest.raises(InvalidArgumentError, match=r"received 9$"):
        jg.checked(lambda c: sampler(c, 1, 3, False, 6, key))(jnp.array([[1], [9]]))
