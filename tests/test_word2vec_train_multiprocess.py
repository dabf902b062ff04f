"""The word2vec trainer as several processes (``jax.distributed``, gloo CPU collectives) against one process.

``--coordinator-address/--num-processes/--process-id`` join the processes into one mesh of
``--num-processes x --devices`` devices; the tables stay replicated, and each step's centres are split over
the global mesh in the same order as over one process's devices. Here 2 processes of 2 virtual CPU devices
each run the trainer (``python -m examples.word2vec.train`` from the repository root, so that the trainer
creates its devices and joins the others before JAX starts) and are compared with one process of 1 and
of 4 devices, run in-process.

Tolerance: as in ``test_word2vec_train_multidevice.py``. With ``--loss neg`` the all-gathered
``IndexedSlices`` are the one-device step's exactly, and the tables come out bit-for-bit equal in our
runs; the comparison allows float32 rounding (``rtol=1e-5, atol=1e-6``) in case XLA orders a per-centre
sum differently. The reported losses are summed over the devices by an all-reduce (order not fixed),
hence ``rel=1e-5`` on the final average loss.

The flag checks at the end run in-process and launch nothing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from examples.word2vec import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6
# As test_word2vec_train_multidevice.py, without --quiet (process 0 prints, the others must not): 25
# centres per step, not a multiple of the 4 devices (padding rows).
SMALL = ["--embedding-size", "16", "--batch-size", "100", "--steps-per-call", "8", "--window", "3",
         "--min-count", "2", "--no-progress", "--no-tensorboard", "--seed", "7", "--no-eval", "--steps", "32"]
TIMEOUT_S = 300  # per launch; a run takes ~10 s on a 2-core CPU


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(corpus: str, out: Path, *extra: str, processes: int = 2, devices: int = 2,
            only: dict[int, list[str]] | None = None, status: int = 0) -> list[str]:
    """Run the trainer as ``processes`` processes of ``devices`` CPU devices each (``only[i]``: more flags for
    process i); returns their stdouts, or their stderrs if ``status`` is not 0. Fails (after killing them
    all) if any exits with another status than ``status`` or they take longer than TIMEOUT_S."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)  # the trainer asks for --devices CPU devices itself
    cmd = [sys.executable, "-m", "examples.word2vec.train", "--corpus", corpus, "--output-dir", str(out), *SMALL,
           "--devices", str(devices), "--coordinator-address", f"127.0.0.1:{_free_port()}",
           "--num-processes", str(processes), *extra]
    logs = out.parent / f"{out.name}-logs"
    logs.mkdir(exist_ok=True)
    procs, files = [], []
    try:
        for i in range(processes):
            # Files, not pipes: a worker blocked on a full pipe would stall the others in a collective.
            stdout, stderr = open(logs / f"{i}.out", "w+"), open(logs / f"{i}.err", "w+")  # noqa: SIM115
            files += [stdout, stderr]
            procs.append(subprocess.Popen(cmd + ["--process-id", str(i), *(only or {}).get(i, [])], cwd=ROOT,
                                          env=env, stdout=stdout, stderr=stderr))
        deadline = time.monotonic() + TIMEOUT_S
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                break
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in files:
            f.close()
    outs = [(logs / f"{i}.out").read_text() for i in range(len(procs))]
    errs = [(logs / f"{i}.err").read_text() for i in range(len(procs))]
    report = "\n".join(f"--- process {i}: exit status {p.returncode}\nstdout: {outs[i][-1000:]}\n"
                       f"stderr: {errs[i][-3000:]}" for i, p in enumerate(procs))
    assert len(procs) == processes and all(p.returncode == status for p in procs), f"{' '.join(cmd)}\n{report}"
    return errs if status else outs


def _run(corpus: str, out: Path, *extra: str) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, "--quiet", *extra])


def _assert_close(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=key)
    for key in ("variables/global_step", "variables/position", "variables/epoch"):
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


@pytest.fixture(scope="module")
def one_process(corpus, tmp_path_factory) -> Path:
    """The reference: one process, one device, 32 steps."""
    if jax.device_count() < 4:
        pytest.fail(f"needs 4 devices, found {jax.device_count()}: run `nox -s tests_multidevice`")
    out = tmp_path_factory.mktemp("one") / "d1"
    assert _run(corpus, out, "--devices", "1") == 0
    return out


@pytest.mark.multidevice
def test_two_processes_match_one_process(corpus, tmp_path, one_process, trainer_tables):
    ref = trainer_tables(one_process)
    assert np.abs(ref["variables/emb_out"]).max() > 1e-3  # the tables did move
    assert _run(corpus, tmp_path / "d4", "--devices", "4") == 0
    _assert_close(ref, trainer_tables(tmp_path / "d4"))

    out0, out1 = _launch(corpus, tmp_path / "mp", "--checkpoint-every", "16")
    _assert_close(ref, trainer_tables(tmp_path / "mp"))
    metrics = json.loads((tmp_path / "mp" / "metrics.json").read_text())
    m1 = json.loads((one_process / "metrics.json").read_text())
    assert metrics["devices"] == 4 and metrics["processes"] == 2 and m1["processes"] == 1
    assert metrics["steps"] == 32 and metrics["steps_this_run"] == 32 and metrics["traces"] == 1
    assert metrics["final_average_loss"] == pytest.approx(m1["final_average_loss"], rel=1e-5)
    assert metrics["config"]["num_processes"] == 2 and metrics["config"]["process_id"] == 0
    # Only process 0 reports. (Both stdouts also hold gloo's "[Gloo] Rank ... is connected" lines, which
    # its threads may interleave, so the check looks for the trainer's own lines.)
    for line in ("corpus: ", "(2 processes)", "compiled the step function", "Nearest to ", "done: 32 steps"):
        assert line in out0, out0
        assert line not in out1, f"process 1 printed:\n{out1}"
    steps = sorted(f.name for f in (tmp_path / "mp" / "checkpoints").glob("*.npz"))
    assert steps == ["model.ckpt-16.npz", "model.ckpt-32.npz"]
    assert (tmp_path / "mp" / "vectors.txt").read_text().startswith("126 16\n")


@pytest.mark.multidevice
def test_two_processes_stop_and_resume(corpus, tmp_path, one_process, trainer_tables):
    # Process 0 writes the checkpoint at --stop-at-step; both processes read it back with --resume.
    out = tmp_path / "split"
    _launch(corpus, out, "--stop-at-step", "16")
    assert trainer_tables(out)["variables/global_step"] == 16
    _launch(corpus, out, "--resume")
    _assert_close(trainer_tables(one_process), trainer_tables(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps_this_run"] == 16 and metrics["processes"] == 2 and metrics["devices"] == 4


@pytest.mark.multidevice
def test_processes_with_different_flags_stop_with_an_error(corpus, tmp_path):
    # Process 1 trains another run (--seed): both find out before the first step and exit with status 2.
    errs = _launch(corpus, tmp_path / "bad", only={1: ["--seed", "8"]}, status=2)
    for err in errs:
        lines = [line for line in err.splitlines() if line.startswith("error: ")]
        assert lines and "the processes disagree on the corpus, vocabulary or training flags" in lines[0], err
    assert not list((tmp_path / "bad" / "checkpoints").glob("model.ckpt-*"))  # process 0 claimed it, wrote nothing


BAD_FLAGS = [
    (["--num-processes", "2"], "--num-processes also needs --coordinator-address and --process-id"),
    (["--coordinator-address", "127.0.0.1:1234", "--process-id", "0"], "also needs --num-processes"),
    (["--coordinator-address", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0..1"),
    (["--coordinator-address", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "-1"],
     "--process-id must be in 0..1"),
    (["--coordinator-address", "127.0.0.1:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes must be at least 1"),
    (["--coordinator-address", "localhost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--coordinator-address", "localhost:http", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
    (["--distributed-auto", "--coordinator-address", "127.0.0.1:1234", "--num-processes", "2",
      "--process-id", "0"], "either --distributed-auto or"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_FLAGS, ids=[str(i) for i in range(len(BAD_FLAGS))])
def test_bad_multiprocess_flags_are_errors(corpus, tmp_path, capsys, flags, message):
    assert _run(corpus, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_multiprocess_flags_after_jax_started_are_an_error(corpus, tmp_path, capsys):
    jax.devices()  # JAX has started in this process: jax.distributed can no longer initialize
    flags = ["--coordinator-address", f"127.0.0.1:{_free_port()}", "--num-processes", "1", "--process-id", "0"]
    assert _run(corpus, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "python -m examples.word2vec.train" in err and err.count("\n") == 1, err
    assert jax.process_count() == 1
