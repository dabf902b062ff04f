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
