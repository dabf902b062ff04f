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


# --replica-sync call: a step is the next 2 batches of the one-device run, one per device; the devices' updates are
# summed once per call.
REPLICAS = ["--devices", "2", "--replica-sync", "call"]


def test_replica_sync_call_sums_the_devices_updates():
    """``step._sum_updates``: ``before + sum over devices of (after_d - before)`` on float leaves, identical on
    every device; integer leaves (the global step, the cursor: the same on every device) as they are."""
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    from examples.word2vec.step import _sum_updates

    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    before = {"table": np.arange(6.0, dtype=np.float32).reshape(3, 2), "step": np.int32(5)}

    def per_device(before):
        d = jax.lax.axis_index("data")
        after = {"table": before["table"] + (d + 1) * 10.0 * (np.arange(3)[:, None] == d), "step": before["step"] + 1}
        summed = _sum_updates(before, after)
        return summed["table"][None], summed["step"][None]

    fn = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=P(), out_specs=P("data"), check_vma=False))
    tables, steps = (np.asarray(x) for x in fn(before))
    expected = before["table"].copy()
    expected[0] += 10.0
    expected[1] += 20.0
    for d in range(2):
        np.testing.assert_array_equal(tables[d], expected)
        assert steps[d] == 6


def test_replica_sync_call_trains_the_one_device_batches(corpus, tmp_path, trainer_tables, capsys):
    straight, one = tmp_path / "straight", tmp_path / "one"
    assert _run(corpus, straight, *REPLICAS, "--steps", "32") == 0
    assert _run(corpus, one, "--devices", "1", "--steps", "64") == 0
    a, b = trainer_tables(straight), trainer_tables(one)
    # 32 steps of 2 batches each walked the corpus exactly as 64 one-device steps did.
    assert a["variables/global_step"] == 32
    for key in ("variables/epoch", "variables/position"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    metrics = json.loads((straight / "metrics.json").read_text())
    m1 = json.loads((one / "metrics.json").read_text())
    assert metrics["devices"] == 2 and metrics["traces"] == 1
    assert metrics["epochs_completed"] == m1["epochs_completed"]
    # Not the one-device result (each device misses the other's updates until the call ends), but close to it.
    assert not np.allclose(a["variables/emb_out"], b["variables/emb_out"])
    assert metrics["final_average_loss"] == pytest.approx(m1["final_average_loss"], rel=0.02)

    # --epochs: exactly the one-device run's batches (an odd count leaves the last step's second batch masked).
    assert _run(corpus, tmp_path / "e1", *REPLICAS, "--epochs", "1") == 0
    assert _run(corpus, tmp_path / "e1one", "--devices", "1", "--epochs", "1") == 0
    ea, eb = trainer_tables(tmp_path / "e1"), trainer_tables(tmp_path / "e1one")
    assert ea["variables/global_step"] == -(-eb["variables/global_step"] // 2)
    for key in ("variables/epoch", "variables/position"):
        np.testing.assert_array_equal(ea[key], eb[key], err_msg=key)


def test_replica_sync_call_resumes_exactly_and_streams(corpus, tmp_path, trainer_tables, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(corpus, straight, *REPLICAS, "--steps", "32") == 0
    a = trainer_tables(straight)
    assert _run(corpus, split, *REPLICAS, "--steps", "32", "--stop-at-step", "16") == 0
    assert _run(corpus, split, *REPLICAS, "--steps", "32", "--resume") == 0
    for key, value in trainer_tables(split).items():
        np.testing.assert_array_equal(a[key], value, err_msg=key)
    # A streamed corpus: each call's buffer holds the 2 x K batches it reads; the same tables bit for bit.
    assert _run(corpus, tmp_path / "streamed", *REPLICAS, "--steps", "32", "--corpus-chunk-tokens", "500") == 0
    for key, value in trainer_tables(tmp_path / "streamed").items():
        np.testing.assert_array_equal(a[key], value, err_msg=key)

    # The mode is part of the run: a run stopped in it does not resume in the other.
    other = tmp_path / "other"
    assert _run(corpus, other, *REPLICAS, "--steps", "32", "--stop-at-step", "8") == 0
    capsys.readouterr()
    assert _run(corpus, other, "--devices", "2", "--steps", "32", "--resume") == 2
    err = capsys.readouterr().err
    assert "belongs to a different run" in err and err.count("\n") == 1


def test_virtual_cpu_devices_count_their_copies_in_host_memory(corpus, tmp_path, monkeypatch):
    """``--devices N`` on a CPU: N copies of the state, corpus and step buffers in one host's memory, so the memory
    check asks for N times one device's figure."""
    from examples.word2vec import resources

    one_device, asked = [], []
    memory_needed = resources.memory_needed

    def per_device(*args, **kwargs):
        needs = memory_needed(*args, **kwargs)
        one_device.append(needs.total)
        return needs

    def record(needs, device, remedies=None):
        asked.append(needs.total)
        raise resources.UsageError("stop here")

    monkeypatch.setattr(resources, "memory_needed", per_device)
    monkeypatch.setattr(resources, "check_memory", record)
    for n in (1, 2, 4):
        assert _run(corpus, tmp_path / f"d{n}", "--devices", str(n), "--steps", "8") == 2
    assert asked == [n * total for n, total in zip((1, 2, 4), one_device, strict=True)]


def test_replica_sync_call_chooses_its_steps_per_call(corpus, tmp_path, trainer_tables, capsys):
    """Without --steps-per-call, --replica-sync call takes K from plan.replica_steps_per_call (here the run-length
    bound: 32 steps leave K = 4 for 8 calls), says so on the plan line, records it, and trains as that K given.
    K changes the result, so it is part of the run: a resume with another K is refused."""
    auto = [a for a in SMALL if a not in ("--quiet",)]
    i = auto.index("--steps-per-call")
    del auto[i:i + 2]
    chosen = tmp_path / "chosen"
    assert train.main(["--corpus", corpus, "--output-dir", str(chosen), *auto, *REPLICAS, "--steps", "32"]) == 0
    out = capsys.readouterr().out
    assert "a call of K = 4 steps (chosen for the vocabulary and the step's pairs" in out
    assert json.loads((chosen / "metrics.json").read_text())["config"]["steps_per_call"] == 4
    given = tmp_path / "given"
    assert _run(corpus, given, *REPLICAS, "--steps", "32", "--steps-per-call", "4") == 0
    for key, value in trainer_tables(given).items():
        np.testing.assert_array_equal(trainer_tables(chosen)[key], value, err_msg=key)

    other = tmp_path / "other"
    assert _run(corpus, other, *REPLICAS, "--steps", "32", "--stop-at-step", "16") == 0
    capsys.readouterr()
    assert _run(corpus, other, *REPLICAS, "--steps", "32", "--steps-per-call", "16", "--resume") == 2
    err = capsys.readouterr().err
    assert "belongs to a different run" in err and err.count("\n") == 1
