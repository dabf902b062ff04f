"""Short runs of the fast word2vec trainer (examples/word2vec/train.py) on a small synthetic corpus."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from examples.word2vec import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SMALL = ["--embedding-size", "16", "--batch-size", "96", "--steps-per-call", "8", "--window", "3",
         "--min-count", "2", "--no-progress", "--no-tensorboard", "--quiet", "--seed", "7"]


def _run(corpus: str, out, *extra: str, **kw) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, *extra], **kw)


def test_metrics_export_and_single_trace(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(corpus, out, "--steps", "16", "--eval-every", "8") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("steps", "final_average_loss", "words_per_sec", "examples_per_sec", "device", "evaluation",
                "config", "epochs_completed", "vocabulary_size"):
        assert key in metrics, key
    assert metrics["steps"] == 16
    assert metrics["final_average_loss"] > 0 and metrics["words_per_sec"] > 0
    assert metrics["config"]["batch_size"] == 96
    ev = metrics["evaluation"]
    assert {"wordsim353_spearman", "wordsim353_coverage", "simlex999_coverage", "analogy_accuracy",
            "analogy_coverage"} <= set(ev) or "unavailable" in ev
    # The K-step function is traced once per run (retrace guard).
    assert metrics["traces"] == 1 and train.TRACE_COUNTS[-1] == 1

    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    assert len(kv) == metrics["vocabulary_size"] and kv.vector_size == 16
    assert "the" in kv.key_to_index and "UNK" not in kv.key_to_index
    assert (out / "vectors.tsv").exists() and (out / "metadata.tsv").exists()
    assert (out / "projector_config.pbtxt").exists()
    assert "Nearest to" in capsys.readouterr().out


def test_step_cap_trains_with_a_single_trace(corpus, tmp_path, trainer_tables):
    """--step-cap runs inside the compiled step (one trace) and changes only rows past the edge of stability
    (tests/test_word2vec_loss.py checks which): at the default rate the tables stay close to the uncapped
    run's."""
    assert _run(corpus, tmp_path / "plain", "--steps", "32") == 0
    assert _run(corpus, tmp_path / "capped", "--steps", "32", "--step-cap") == 0
    metrics = json.loads((tmp_path / "capped" / "metrics.json").read_text())
    assert metrics["traces"] == 1 and metrics["config"]["step_cap"] is True
    plain, capped = trainer_tables(tmp_path / "plain"), trainer_tables(tmp_path / "capped")
    assert np.all(np.isfinite(capped["variables/emb_in"]))
    np.testing.assert_allclose(capped["variables/emb_out"], plain["variables/emb_out"], atol=0.05)


def test_resume_is_exact(corpus, tmp_path, trainer_tables):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _run(corpus, straight, "--steps", "32") == 0
    assert _run(corpus, split, "--steps", "32", "--stop-at-step", "16") == 0
    assert trainer_tables(split)["variables/global_step"] == 16
    assert not (split / "metrics.json").exists()
    assert _run(corpus, split, "--steps", "32", "--resume") == 0
    a, b = trainer_tables(straight), trainer_tables(split)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert json.loads((split / "metrics.json").read_text())["steps_this_run"] == 16

    # Ctrl-C after the first call: a checkpoint is saved, exit status 130, and resuming is exact too.
    interrupted = tmp_path / "interrupted"

    def press_ctrl_c(step):
        if step == 8:
            signal.raise_signal(signal.SIGINT)

    assert _run(corpus, interrupted, "--steps", "32", _after_call=press_ctrl_c) == 130
    assert trainer_tables(interrupted)["variables/global_step"] == 8
    assert _run(corpus, interrupted, "--steps", "32", "--resume") == 0
    c = trainer_tables(interrupted)
    for key in a:
        np.testing.assert_array_equal(a[key], c[key])


def test_mismatched_resume_and_existing_checkpoints_refused(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(corpus, out, "--steps", "16", "--stop-at-step", "8") == 0
    ckpt_dir = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in ckpt_dir.iterdir()}
    capsys.readouterr()
    assert _run(corpus, out, "--steps", "16", "--window", "2", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "different run" in err and err.count("\n") == 1
    assert _run(corpus, out, "--steps", "16") == 2  # would overwrite: needs --resume or --overwrite
    assert "already holds checkpoints" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in ckpt_dir.iterdir()} == before


def test_corrupt_checkpoint_is_an_error(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(corpus, out, "--steps", "16", "--stop-at-step", "8") == 0
    (npz,) = [p for p in (out / "checkpoints").iterdir() if p.suffix == ".npz"]
    npz.write_bytes(npz.read_bytes()[:200])
    capsys.readouterr()
    assert _run(corpus, out, "--steps", "16", "--resume") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--negatives", "1000"], "--negatives"),
        (["--negative-sharing", "centre", "--negatives-per-centre", "1000"], "--negatives-per-centre"),
        (["--negatives-per-centre", "0"], "--negatives-per-centre"),
        (["--negatives-per-centre", "4"], "--negative-sharing centre only"),
        (["--loss", "nce", "--negatives-per-centre", "4"], "--loss neg with"),
        (["--shared-negatives", "1000"], "--shared-negatives (1000) must be smaller than the vocabulary"),
        (["--shared-negatives", "0"], "--shared-negatives must be at least 1"),
        (["--pairs-per-group", "0"], "--pairs-per-group must be at least 1"),
        (["--negative-sharing", "centre", "--shared-negatives", "8"], "--negative-sharing group only"),
        (["--loss", "nce", "--pairs-per-group", "8"], "--negative-sharing group only"),
        (["--step-cap", "--optimizer", "adagrad"], "--step-cap applies to"),
        (["--batch-size", "0"], "--batch-size"),
        (["--epochs", "-1"], "--epochs"),
        (["--loss", "softmax"], "invalid choice"),
        (["--min-count", "100000"], "vocabulary"),
        (["--device", "tpu"], "--device"),
        (["--learning-rate", "nan"], "--learning-rate"),
    ],
)
def test_bad_flags_exit_2(corpus, tmp_path, capsys, extra, needle):
    assert _run(corpus, tmp_path / "out", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1


def test_bad_corpus_exit_2(tmp_path, capsys):
    assert train.main(["--corpus", str(tmp_path / "missing.txt"), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.txt" in err
    binary = tmp_path / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 100)
    assert train.main(["--corpus", str(binary), "--output-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
