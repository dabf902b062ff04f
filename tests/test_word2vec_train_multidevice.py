"""The word2vec trainer data-parallel over several devices (``--devices N``) against one device.

Run by ``nox -s tests_multidevice`` (8 virtual CPU devices). ``--devices N`` splits each step's centres
over N devices; the tables stay replicated and the sparse row gradients (ids and rows, row-sized) are
all-gathered in centre order, so every device applies the same scatter as the one-device step.

Tolerance: with ``--loss neg --negative-sharing centre`` the gathered ``IndexedSlices`` are the one-device
step's exactly (same ids, same order, each row's gradient computed by the same per-centre arithmetic), and
the tables come out bit-for-bit equal in our runs. The comparison still allows float32 rounding
(``rtol=1e-5, atol=1e-6`` on entries of size ~0.05, i.e. a few hundred ulps after K steps), because
XLA may fuse or order a per-centre sum differently for a smaller per-device batch. With the default
``--negative-sharing group`` (every device's rows hold whole groups, whose negatives depend on the group's
index only) and with ``--loss nce`` (shared negatives), a row shared by several devices' slices (a
negative, or a band row at a device boundary) gets its gradient summed per device first, then across
devices: a float32 summation-order difference (observed below 1e-7 after 64 steps), inside the same
tolerance.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from examples.word2vec import train

pytestmark = [pytest.mark.multidevice, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

RTOL, ATOL = 1e-5, 1e-6
# --batch-size 100 with --window 3: 25 centres per step, not a multiple of 2 or 4 (padding rows).
SMALL = ["--embedding-size", "16", "--batch-size", "100", "--steps-per-call", "8", "--window", "3",
         "--min-count", "2", "--no-progress", "--no-tensorboard", "--quiet", "--seed", "7", "--no-eval"]


@pytest.fixture(scope="module", autouse=True)
def enough_devices():
    if jax.device_count() < 4:
        pytest.fail(f"needs 4 devices, found {jax.device_count()}: run `nox -s tests_multidevice`")


def _run(corpus: str, out, *extra: str, **kw) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, *extra], **kw)


def _assert_close(a, b):
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=RTOL, atol=ATOL, err_msg=key)


SCHEMES = {
    # 25 centres per step in groups of 6 (--pairs-per-group 24, window 3): 5 groups (30 rows) on one device,
    # 6 (36 rows) on 2 and 8 (48 rows) on 4: each device's rows hold whole groups.
    "neg-groups": ["--loss", "neg", "--pairs-per-group", "24"],
    "neg-centre": ["--loss", "neg", "--negative-sharing", "centre"],
    "nce": ["--loss", "nce", "--negatives", "8"],
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_devices_match_one_device(corpus, tmp_path, scheme, trainer_tables):
    extra = ["--steps", "48", *SCHEMES[scheme]]
    assert _run(corpus, tmp_path / "d1", "--devices", "1", *extra) == 0
    one = trainer_tables(tmp_path / "d1")
    for n in (2, 4):
        assert _run(corpus, tmp_path / f"d{n}", "--devices", str(n), *extra) == 0
        many = trainer_tables(tmp_path / f"d{n}")
        _assert_close(one, many)
        np.testing.assert_array_equal(many["variables/position"], one["variables/position"])
        metrics = json.loads((tmp_path / f"d{n}" / "metrics.json").read_text())
        assert metrics["devices"] == n and metrics["traces"] == 1
        m1 = json.loads((tmp_path / "d1" / "metrics.json").read_text())
        assert metrics["final_average_loss"] == pytest.approx(m1["final_average_loss"], rel=1e-5)
    assert np.abs(one["variables/emb_out"]).max() > 1e-3  # the tables did move


def test_resume_is_exact_with_two_devices(corpus, tmp_path, trainer_tables):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(corpus, straight, "--devices", "2", "--steps", "32") == 0
    assert _run(corpus, split, "--devices", "2", "--steps", "32", "--stop-at-step", "16") == 0
    assert trainer_tables(split)["variables/global_step"] == 16
    assert _run(corpus, split, "--devices", "2", "--steps", "32", "--resume") == 0
    a, b = trainer_tables(straight), trainer_tables(split)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)

    # Off the K-step grid: the shorter calls (to step 13, then to 16) run in the second compiled program, sharded too.
    off_grid = tmp_path / "off-grid"
    assert _run(corpus, off_grid, "--devices", "2", "--steps", "32", "--stop-at-step", "13") == 0
    assert trainer_tables(off_grid)["variables/global_step"] == 13
    assert _run(corpus, off_grid, "--devices", "2", "--steps", "32", "--resume") == 0
    c = trainer_tables(off_grid)
    for key in a:
        np.testing.assert_array_equal(a[key], c[key], err_msg=key)

    # The device count is not part of the run: a run stopped on 2 devices resumes on 1 (and 4).
    for n in (1, 4):
        other = tmp_path / f"other{n}"
        assert _run(corpus, other, "--devices", "2", "--steps", "32", "--stop-at-step", "16") == 0
        assert _run(corpus, other, "--devices", str(n), "--steps", "32", "--resume") == 0
        _assert_close(a, trainer_tables(other))


def test_too_many_devices_is_an_error(corpus, tmp_path, capsys):
    n = jax.device_count() + 1
    assert _run(corpus, tmp_path / "out", "--devices", str(n), "--steps", "8") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--devices" in err and err.count("\n") == 1


def test_streamed_corpus_on_two_devices(corpus, tmp_path, trainer_tables):
    """The chunk buffers are placed replicated on the mesh like the whole corpus: the same tables bit for bit."""
    assert _run(corpus, tmp_path / "whole", "--devices", "2", "--steps", "48") == 0
    assert _run(corpus, tmp_path / "streamed", "--devices", "2", "--steps", "48", "--corpus-chunk-tokens", "500") == 0
    a, b = trainer_tables(tmp_path / "whole"), trainer_tables(tmp_path / "streamed")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# --replica-sync call: each device trains its own half of the corpus, the updates summed once per call.
REPLICAS = ["--devices", "2", "--replica-sync", "call"]


def test_replica_sync_call_sums_the_devices_updates():
    """``step._sum_updates``: ``before + sum over devices of (after_d - before)`` on float leaves, identical on
    every device; integer leaves (the global step) as they are; ``_gather_cursor`` gives every device each
    stream's cursor from the device that moved it."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    from examples.word2vec.step import _gather_cursor, _sum_updates

    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    before = {"table": np.arange(6.0, dtype=np.float32).reshape(3, 2), "step": np.int32(5)}

    def per_device(before):
        d = jax.lax.axis_index("data")
        after = {"table": before["table"] + (d + 1) * 10.0 * (np.arange(3)[:, None] == d), "step": before["step"] + 1}
        cursor = np.array([100, 200], np.int32) + d * np.array([0, 7], np.int32)  # device d moved stream d only
        summed = _sum_updates(before, after)
        return summed["table"][None], summed["step"][None], _gather_cursor(cursor + (d == 0) * 3, d)[None]

    fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P("data"), check_vma=False))
    tables, steps, cursors = (np.asarray(x) for x in fn(before))
    expected = before["table"].copy()
    expected[0] += 10.0
    expected[1] += 20.0
    for d in range(2):
        np.testing.assert_array_equal(tables[d], expected)
        assert steps[d] == 6
        np.testing.assert_array_equal(cursors[d], [103, 207])


def test_replica_sync_call_trains_each_half_and_resumes_exactly(corpus, tmp_path, trainer_tables, capsys):
    straight, split, one = tmp_path / "straight", tmp_path / "split", tmp_path / "one"
    assert _run(corpus, straight, *REPLICAS, "--steps", "32") == 0
    assert _run(corpus, one, "--devices", "1", "--steps", "32") == 0
    a, b = trainer_tables(straight), trainer_tables(one)
    epoch, position = a["variables/epoch"], a["variables/position"]
    assert epoch.shape == position.shape == (2,)
    n = json.loads((one / "metrics.json").read_text())["in_vocabulary_tokens"]
    # Each device moved its own stream through its own half (32 steps of 25 centres: well inside a half).
    assert 0 < position[0] < n // 2 < position[1] < n and (epoch == 0).all()
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["traces"] == 1 and np.isfinite(metrics["final_average_loss"])
    # Twice the one device's tokens in the same steps; not the one-device result (--replica-sync step's).
    m1 = json.loads((one / "metrics.json").read_text())
    assert metrics["epochs_completed"] == pytest.approx(2 * m1["epochs_completed"], rel=0.05)
    assert np.abs(a["variables/emb_out"]).max() > 1e-3
    assert not np.allclose(a["variables/emb_out"], b["variables/emb_out"])

    assert _run(corpus, split, *REPLICAS, "--steps", "32", "--stop-at-step", "16") == 0
    assert _run(corpus, split, *REPLICAS, "--steps", "32", "--resume") == 0
    c = trainer_tables(split)
    for key in a:
        np.testing.assert_array_equal(a[key], c[key], err_msg=key)

    # The replica count is part of the run: a run stopped in this mode does not resume in the other.
    other = tmp_path / "other"
    assert _run(corpus, other, *REPLICAS, "--steps", "32", "--stop-at-step", "8") == 0
    capsys.readouterr()
    assert _run(corpus, other, "--devices", "2", "--steps", "32", "--resume") == 2
    err = capsys.readouterr().err
    assert "belongs to a different run" in err and err.count("\n") == 1


def test_replica_sync_call_epochs_cover_both_halves(corpus, tmp_path, capsys):
    assert _run(corpus, tmp_path / "out", *REPLICAS, "--epochs", "1", "--steps-per-call", "4") == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # Each half exactly once, the longer stream's epoch decides the steps: the other goes a few steps further.
    assert 1.0 <= metrics["epochs_completed"] < 1.05


def test_replica_sync_call_refuses_a_streamed_corpus(corpus, tmp_path, capsys):
    assert _run(corpus, tmp_path / "out", *REPLICAS, "--steps", "8", "--corpus-chunk-tokens", "500") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--replica-sync call" in err and "streamed" in err and err.count("\n") == 1
