"""``basic_batches.generate_batches`` makes exactly the batches of ``n`` calls of TF's ``generate_batch``."""

import random

import numpy as np
import pytest

from examples.word2vec.basic_batches import generate_batches, random_samples
from examples.word2vec.data import BatchState, generate_batch

# The bulk replay of random.sample checks itself against random.sample once per (n, k) and warns (then
# calls random.sample) when they differ: here that is a failure, so the replay itself is what is tested.
pytestmark = pytest.mark.filterwarnings("error:random_samples")


def _singles(data, n, batch_size, num_skips, skip_window, state):
    pairs = [generate_batch(data, batch_size, num_skips, skip_window, state) for _ in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


@pytest.mark.parametrize("length", [23, 64, 65, 66, 67, 200, 1000])  # every way a batch can meet the data's end
@pytest.mark.parametrize("batch_size,num_skips,skip_window", [(8, 2, 1), (128, 2, 1), (16, 4, 2), (12, 3, 2),
                                                              (10, 1, 3), (6, 6, 3)])
def test_same_batches_and_state_as_generate_batch(length, batch_size, num_skips, skip_window):
    if length < 2 * skip_window + 1:
        pytest.skip("shorter than the window")  # generate_batch refuses it too (tested in test_word2vec_data)
    data = np.random.default_rng(length).integers(0, 50, length).astype(np.int32)
    fast, slow = BatchState.seeded(3, data_index=4), BatchState.seeded(3, data_index=4)
    for calls in (1, 7, 30):  # several calls, each continuing where the last left off
        inputs, labels = generate_batches(data.tolist(), calls, batch_size, num_skips, skip_window, fast, data)
        ref_inputs, ref_labels = _singles(data.tolist(), calls, batch_size, num_skips, skip_window, slow)
        np.testing.assert_array_equal(inputs, ref_inputs)
        np.testing.assert_array_equal(labels, ref_labels)
        assert inputs.dtype == labels.dtype == np.int32
        assert (fast.data_index, fast.rng.getstate()) == (slow.data_index, slow.rng.getstate())


def test_no_batches():
    state = BatchState.seeded(0)
    before = state.rng.getstate()
    inputs, labels = generate_batches(list(range(10)), 0, 8, 2, 1, state)
    assert inputs.shape == (0, 8) and labels.shape == (0, 8, 1)
    assert state.data_index == 0 and state.rng.getstate() == before


@pytest.mark.parametrize("length,batch_size", [(22, 8), (134, 128)])
def test_state_after_every_batch(length, batch_size):
    """Lengths where a batch's last window ends exactly at the data's end: TF then wraps data_index to 0."""
    data = np.random.default_rng(0).integers(0, 50, length).astype(np.int32)
    fast, slow = BatchState.seeded(5, data_index=4), BatchState.seeded(5, data_index=4)
    seen = set()
    for _ in range(60):
        inputs, labels = generate_batches(data.tolist(), 1, batch_size, 2, 1, fast, data)
        ref_inputs, ref_labels = _singles(data.tolist(), 1, batch_size, 2, 1, slow)
        np.testing.assert_array_equal(inputs, ref_inputs)
        np.testing.assert_array_equal(labels, ref_labels)
        assert fast.data_index == slow.data_index
        seen.add(slow.data_index)
    assert 0 in seen


class _Subclass(random.Random):
    pass


@pytest.mark.parametrize("population,k", [([0, 2], 2), ([0, 2], 1), ([0, 1, 3, 4], 4), ([0, 1, 3, 4], 3),
                                          (list(range(5)), 2), (list(range(6)), 6), (list(range(7)), 3),
                                          (list(range(40)), 3)])  # the last: sample()'s set branch
@pytest.mark.parametrize("calls", [0, 1, 2, 333, 5000])
@pytest.mark.parametrize("rng_class", [random.Random, _Subclass])
def test_random_samples_equal_sample_calls(population, k, calls, rng_class):
    mine, reference = rng_class(calls), rng_class(calls)
    mine.random(), reference.random()  # not at a fresh state's first word
    mine.gauss(0, 1), reference.gauss(0, 1)  # gauss keeps a value in the state: it must survive
    out = random_samples(mine, population, k, calls)
    assert out.shape == (calls, k)
    assert out.tolist() == [reference.sample(population, k) for _ in range(calls)]
    assert mine.getstate() == reference.getstate()
