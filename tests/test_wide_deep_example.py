"""The wide-and-deep example trains: the loss falls, the global step counts, the step traces once, and rows
of both tables that no batch mentions stay bit-identical (sparse updates over the real ids only)."""

import numpy as np
import pytest

from examples import wide_deep


@pytest.mark.parametrize("wide", ["ftrl", "adagrad"])
def test_trains_sparsely_and_traces_once(monkeypatch, wide):
    steps = 40
    compiled = []
    make_step = wide_deep.make_step
    monkeypatch.setattr(wide_deep, "make_step", lambda *a: compiled.append(make_step(*a)) or compiled[-1])
    params, history = wide_deep.train_model(steps, wide=wide)
    assert compiled[0]._cache_size() == 1
    assert int(params["global_step"].value) == steps
    assert np.mean(history[-10:]) < np.mean(history[:10]) - 0.05
    initial = wide_deep.initial_values()
    wide_table = np.asarray(params["linear/weights"].value)
    seen = wide_deep.WIDE_VOCAB // 2                 # the data never uses the upper half of the wide ids
    np.testing.assert_array_equal(wide_table[seen:], initial["linear/weights"][seen:])
    assert np.count_nonzero(wide_table[:seen]) > seen // 2
    emb = np.asarray(params["dnn/embeddings"].value)
    np.testing.assert_array_equal(emb[-4:], initial["dnn/embeddings"][-4:])
    assert not np.array_equal(emb[:-4], initial["dnn/embeddings"][:-4])


def test_main_prints_progress(capsys):
    wide_deep.main(["--steps", "6"])
    out = capsys.readouterr().out
    assert "mean loss" in out and "global step 6" in out
    with pytest.raises(SystemExit):
        wide_deep.main(["--steps", "0"])
    assert "--steps must be at least 1" in capsys.readouterr().err
