"""Summaries: recorded while tracing, returned as step outputs, written and read back by TensorBoard."""

import ast
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from jaxgraph import name_scope, summary


def _read(logdir):
    acc = ea.EventAccumulator(str(logdir), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def _scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _step(x):
    with summary.record_summaries() as summaries:
        loss = jnp.sum(x**2)
        summary.scalar("loss", loss)
        summary.scalar("loss", loss + 1)  # a repeated tag gets TF's suffix
        summary.histogram("x", x)
    return loss, summaries


def test_record_returns_values_as_outputs(maybe_jit):
    x = jnp.arange(4.0)
    loss, summaries = maybe_jit(_step)(x)
    assert sorted(summaries) == ["loss", "loss_1", "x"]
    assert float(summaries["loss"]) == 14.0
    assert float(summaries["loss_1"]) == 15.0
    assert not isinstance(summaries["loss"], jax.core.Tracer)
    counts = np.asarray(summaries["x"])[:, 2]
    assert counts.sum() == 4 and counts[0] == 1 and counts[-1] == 1


def test_compiled_step_has_no_host_callback():
    jaxpr = str(jax.make_jaxpr(_step)(jnp.arange(4.0)))
    assert "callback" not in jaxpr
    hlo = jax.jit(_step).lower(jnp.arange(4.0)).as_text()
    assert "callback" not in hlo.lower() and "custom_call_target=\"xla_python" not in hlo


@pytest.mark.parametrize("buckets", [1, 30])
def test_histogram_matches_numpy(buckets):
    values = jnp.asarray(np.random.default_rng(0).standard_normal(1000), jnp.float32)

    def f(v):
        with summary.record_summaries() as s:
            summary.histogram("h", v, buckets=buckets)
        return s["h"]

    table = np.asarray(jax.jit(f)(values))
    counts, edges = np.histogram(np.asarray(values), bins=buckets)
    assert table.shape == (buckets, 3)
    np.testing.assert_array_equal(table[:, 2], counts)
    np.testing.assert_allclose(table[:, 0], edges[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(table[:, 1], edges[1:], rtol=1e-5, atol=1e-6)


def test_histogram_edge_cases(maybe_jit):
    def f(v):
        with summary.record_summaries() as s:
            summary.histogram("h", v, buckets=4)
        return s["h"]

    single = np.asarray(maybe_jit(f)(jnp.full((5,), 2.5)))
    np.testing.assert_array_equal(single[:, :2], 2.5)
    np.testing.assert_array_equal(single[:, 2], [0, 0, 0, 5])

    # The same input shape throughout: one compile of the bucketing per mode keeps this test fast.
    nonfinite = np.asarray(maybe_jit(f)(jnp.array([0.0, 4.0, jnp.nan, jnp.inf, -jnp.inf])))
    assert nonfinite[0, 0] == 0.0 and nonfinite[-1, 1] == 4.0
    np.testing.assert_array_equal(nonfinite[:, 2], [1, 0, 0, 1])

    all_nan = np.asarray(maybe_jit(f)(jnp.full((5,), jnp.nan)))
    np.testing.assert_array_equal(all_nan, np.zeros((4, 3)))
    np.testing.assert_array_equal(np.asarray(f(jnp.zeros((0,)))), np.zeros((4, 3)))


def test_tags_take_the_name_scope(maybe_jit):
    def f(x):
        with summary.record_summaries() as s, name_scope("train"):
            summary.scalar("loss", x)
            with name_scope("layer"):
                summary.histogram("w", x, buckets=2)
        return s

    assert sorted(maybe_jit(f)(jnp.float32(1.0))) == ["train/layer/w", "train/loss"]


def test_scalar_rejects_non_scalar():
    with summary.record_summaries(), pytest.raises(ValueError, match="'bad'.*shape \\(2,\\)"):
        summary.scalar("bad", jnp.ones(2))


def test_nested_blocks_and_emit_to_outer(maybe_jit):
    # compute_gradients records inside the differentiated function and passes it on with write.
    def f(x):
        with summary.record_summaries() as outer:
            summary.scalar("before", x)
            with summary.record_summaries() as inner:
                summary.scalar("inner", 2 * x)
                assert summary.merge_all().keys() == {"inner"}
            assert list(outer) == ["before"]
            for name, value in inner.items():
                summary.write(name, value)
        return outer

    out = maybe_jit(f)(jnp.float32(3.0))
    assert {k: float(v) for k, v in out.items()} == {"before": 3.0, "inner": 6.0}
    assert summary.merge_all() == {}


def test_outside_a_block_under_jit_drops_and_never_leaks(tmp_path):
    writer = summary.FileWriter(tmp_path)

    @jax.jit
    def f(x):
        summary.scalar("traced", x)
        summary.histogram("traced_h", x)
        return x + 1

    with writer.as_default(step=1):
        assert float(f(jnp.float32(1.0))) == 2.0
        summary.scalar("eager", 5.0)  # concrete: written at once
    writer.close()
    acc = _read(tmp_path)
    assert acc.Tags()["scalars"] == ["eager"] and acc.Tags()["histograms"] == []
    assert _scalars(acc, "eager") == [(1, 5.0)]


def test_default_writer_eager_calls(tmp_path):
    with summary.create_file_writer(tmp_path) as writer:
        with writer.as_default():
            with pytest.raises(ValueError, match="no step"):
                summary.scalar("x", 1.0)
            summary.scalar("x", 1.0, step=3)
            summary.set_step(jnp.int32(4))
            try:
                summary.scalar("x", 2.0)
                summary.histogram("h", jnp.array([1.0, 2.0, 3.0]), buckets=3)
            finally:
                summary.set_step(None)
        summary.scalar("x", 9.0, step=5)  # no default writer any more: nothing written
    acc = _read(tmp_path)
    assert _scalars(acc, "x") == [(3, 1.0), (4, 2.0)]
    h = acc.Histograms("h")
    assert [e.step for e in h] == [4] and list(h[0].histogram_value.bucket) == [1.0, 1.0, 1.0]


def test_file_writer_roundtrip_one_step_list_and_scan(tmp_path, maybe_jit):
    def train_k_steps(w, xs):
        # K steps per call, as the word2vec trainer runs: summaries come out stacked by lax.scan.
        def body(w, x):
            with summary.record_summaries() as s:
                loss = (w - x) ** 2
                summary.scalar("loss", loss)
                summary.histogram("w", jnp.stack([w, w + 1.0, w + 2.0]), buckets=2)
            return w - 0.5, s

        return jax.lax.scan(body, w, xs)

    w = jnp.float32(4.0)
    w, stacked = maybe_jit(train_k_steps)(w, jnp.zeros(3))
    assert stacked["loss"].shape == (3,) and stacked["w"].shape == (3, 2, 3)
    _, one = maybe_jit(_step)(jnp.arange(3.0))

    with summary.FileWriter(tmp_path) as writer:
        writer.add_summary(stacked, global_step=jnp.int32(100))  # steps 100, 101, 102
        writer.add_summary([{"loss": jnp.float32(0.5)}, {"loss": jnp.float32(0.25)}], global_step=103)
        writer.add_summary(one, global_step=7)
        writer.add_scalar("lr", jnp.float32(0.1), global_step=7)
        writer.add_histogram("direct", np.array([0.0, 1.0, 1.0, 3.0]), global_step=8, buckets=3)
        writer.flush()

    acc = _read(tmp_path)
    assert sorted(acc.Tags()["scalars"]) == ["loss", "loss_1", "lr"]
    assert sorted(acc.Tags()["histograms"]) == ["direct", "w", "x"]
    expected = [(7, 5.0), (100, 16.0), (101, 12.25), (102, 9.0), (103, 0.5), (104, 0.25)]
    assert sorted(_scalars(acc, "loss")) == expected
    assert _scalars(acc, "loss_1") == [(7, 6.0)]
    assert _scalars(acc, "lr") == [(7, pytest.approx(0.1))]

    hists = acc.Histograms("w")
    assert [e.step for e in hists] == [100, 101, 102]
    first = hists[0].histogram_value
    assert (first.min, first.max, first.num) == (4.0, 6.0, 3.0)
    assert list(first.bucket_limit) == [5.0, 6.0] and list(first.bucket) == [1.0, 2.0]
    assert hists[2].histogram_value.min == 3.0
    direct = acc.Histograms("direct")[0].histogram_value
    assert list(direct.bucket) == [1.0, 2.0, 1.0] and direct.max == 3.0


def _records(path):
    """The event file's records (TFRecord framing: length, its CRC, data, its CRC), the header event dropped."""
    blob, records, at = path.read_bytes(), [], 0
    while at < len(blob):
        size = int.from_bytes(blob[at : at + 8], "little")
        records.append(blob[at + 12 : at + 12 + size])
        at += 16 + size
    return records[1:]


@pytest.mark.parametrize("step", [0, -3, 100, 2**40])
@pytest.mark.parametrize("walltime", [0.0, -0.0, 1.7e9 + 0.123])
def test_stacked_scalars_serialize_as_the_protobuf_classes_do(tmp_path, step, walltime):
    # Stacked scalars are encoded by hand (one event per step, cheaply); a list of dicts goes through the
    # protobuf classes. Same input, same bytes: zeros, signs, nan, inf, float32 overflow, ints, unicode tags.
    columns = {
        "loss": np.array([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf, 1e-45, 3.4e38, 1e39, 7.0]),
        "é/ü" * 50: np.arange(10, dtype=np.int64) * 2**60,
        "flag": np.arange(10) % 2 == 0,
        "f32": np.linspace(-1, 1, 10, dtype=np.float32),
    }
    with summary.FileWriter(tmp_path / "stacked") as writer:
        writer.add_summary(columns, global_step=step, walltime=walltime)
    with summary.FileWriter(tmp_path / "listed") as writer:
        writer.add_summary([{t: v[i] for t, v in columns.items()} for i in range(10)], global_step=step,
                           walltime=walltime)
    (stacked,), (listed,) = (list((tmp_path / d).iterdir()) for d in ("stacked", "listed"))
    assert len(_records(stacked)) == 10
    assert _records(stacked) == _records(listed)


def test_add_summary_errors(tmp_path):
    writer = summary.FileWriter(tmp_path)
    with pytest.raises(ValueError, match="needs global_step"):
        writer.add_summary({"loss": jnp.ones(3)})
    with pytest.raises(ValueError, match="needs global_step"):
        writer.add_summary([{"a": 1.0}, {"a": 2.0}])
    with pytest.raises(ValueError, match="different numbers of steps"):
        writer.add_summary({"a": jnp.ones(3), "b": jnp.ones(4)}, global_step=0)
    with pytest.raises(ValueError, match=r"\['a'\] are stacked"):
        writer.add_summary({"a": jnp.ones(3), "b": jnp.float32(1.0)}, global_step=0)
    with pytest.raises(ValueError, match="'m' has shape \\(2, 2\\)"):
        writer.add_summary({"m": jnp.ones((2, 2))}, global_step=0)
    with pytest.raises(TypeError, match="dict of summaries"):
        writer.add_summary(3.0, global_step=0)
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.add_scalar("a", 1.0)


def test_tensorboardx_is_imported_lazily_with_a_clear_error(monkeypatch, tmp_path):
    # Only a module-level import would load tensorboardX with jaxgraph; check there is none.
    tree = ast.parse(pathlib.Path(summary.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top_level for alias in node.names] + [
        node.module for node in top_level if isinstance(node, ast.ImportFrom)
    ]
    assert not [n for n in names if n and n.startswith(("tensorboard", "tensorflow"))], names
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        summary.FileWriter(tmp_path)
