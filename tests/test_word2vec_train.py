"""Short runs of the fast word2vec trainer (examples/word2vec/train.py) on a small synthetic corpus."""

from __future__ import annotations

import json
import signal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.word2vec import optimizer, step, train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SMALL = ["--embedding-size", "16", "--batch-size", "96", "--steps-per-call", "8", "--window", "3",
         "--min-count", "2", "--no-progress", "--no-tensorboard", "--quiet", "--seed", "7"]


def _run(corpus: str, out, *extra: str, **kw) -> int:
    return train.main(["--corpus", corpus, "--output-dir", str(out), *SMALL, *extra], **kw)


def _run_loud(corpus: str, out, *extra: str) -> int:
    """:func:`_run` without ``--quiet``: the plan line and progress reach stdout."""
    return train.main(["--corpus", corpus, "--output-dir", str(out), *[a for a in SMALL if a != "--quiet"], *extra])


def test_metrics_and_export(corpus, tmp_path, capsys):
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
    from gensim.models import KeyedVectors

    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    assert len(kv) == metrics["vocabulary_size"] and kv.vector_size == 16
    assert "the" in kv.key_to_index and "UNK" not in kv.key_to_index
    assert (out / "vectors.tsv").exists() and (out / "metadata.tsv").exists()
    assert (out / "projector_config.pbtxt").exists()
    assert "Nearest to" in capsys.readouterr().out


def test_step_cap_is_on_where_it_applies(corpus, tmp_path, trainer_tables, capsys):
    """--step-cap is on by default with grouped negatives and plain SGD (off by default elsewhere, an error when
    asked for there), inside the one compiled step, and the plan line says so; it changes only rows past the edge
    of stability (tests/test_word2vec_loss.py checks which), so at the default rate the tables stay close to the
    uncapped run's."""
    assert _run_loud(corpus, tmp_path / "capped", "--steps", "32") == 0
    assert "(--step-cap)" in capsys.readouterr().out
    assert _run(corpus, tmp_path / "plain", "--steps", "32", "--no-step-cap") == 0
    assert _run(corpus, tmp_path / "adagrad", "--steps", "8", "--optimizer", "adagrad") == 0
    config = {name: json.loads((tmp_path / name / "metrics.json").read_text())["config"]
              for name in ("capped", "plain", "adagrad")}
    assert [config[n]["step_cap"] for n in ("capped", "plain", "adagrad")] == [True, False, False]
    assert json.loads((tmp_path / "capped" / "metrics.json").read_text())["traces"] == 1
    plain, capped = trainer_tables(tmp_path / "plain"), trainer_tables(tmp_path / "capped")
    assert np.all(np.isfinite(capped["variables/emb_in"]))
    np.testing.assert_allclose(capped["variables/emb_out"], plain["variables/emb_out"], atol=0.05)


def test_sequential_correction_is_opt_in(corpus, tmp_path, trainer_tables):
    """Off by default; asked for (with grouped negatives and plain SGD) it runs inside the one compiled step and
    changes the tables, by a small amount over a few steps."""
    assert _run(corpus, tmp_path / "on", "--steps", "32", "--sequential-correction") == 0
    assert _run(corpus, tmp_path / "off", "--steps", "32") == 0
    config = {name: json.loads((tmp_path / name / "metrics.json").read_text())["config"] for name in ("on", "off")}
    assert [config[n]["sequential_correction"] for n in ("on", "off")] == [True, False]
    assert json.loads((tmp_path / "on" / "metrics.json").read_text())["traces"] == 1
    on, off = trainer_tables(tmp_path / "on"), trainer_tables(tmp_path / "off")
    assert np.all(np.isfinite(on["variables/emb_in"]))
    difference = np.abs(on["variables/emb_out"] - off["variables/emb_out"]).max()
    assert 0 < difference < 0.05


def test_max_logit_trains_with_a_single_trace(corpus, tmp_path, trainer_tables, capsys):
    """--max-logit reaches the compiled step (one trace) in both negative schemes, says so in the plan line, and
    is part of the run's configuration; at this scale few logits pass 1, so a threshold of 1 changes the tables."""
    assert _run(corpus, tmp_path / "exact", "--steps", "32", "--learning-rate", "0.5") == 0
    capsys.readouterr()
    assert _run_loud(corpus, tmp_path / "cut", "--steps", "32", "--learning-rate", "0.5", "--max-logit", "1") == 0
    assert "terms with |logit| >= 1 get no gradient (--max-logit)" in capsys.readouterr().out
    assert _run(corpus, tmp_path / "centre", "--steps", "8", "--negative-sharing", "centre", "--max-logit", "1") == 0
    for name in ("cut", "centre"):
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert metrics["traces"] == 1 and metrics["config"]["max_logit"] == 1.0
    exact, cut = trainer_tables(tmp_path / "exact"), trainer_tables(tmp_path / "cut")
    assert np.all(np.isfinite(cut["variables/emb_in"]))
    assert np.abs(cut["variables/emb_out"] - exact["variables/emb_out"]).max() > 1e-4


def test_the_step_is_traced_once_per_run(corpus, tmp_path, monkeypatch):
    """What runs per call is the jitted K-step function, guarded by chex: a second trace (a recompilation, e.g.
    because the state a call returns differs in type or layout from what it took) raises."""
    chex.clear_trace_counter()
    monkeypatch.setattr(step, "TRACE_GUARD", lambda fn: chex.assert_max_traces(fn, n=1))
    out = tmp_path / "run"
    assert _run(corpus, out, "--steps", "24", "--no-eval") == 0  # 3 calls
    assert json.loads((out / "metrics.json").read_text())["traces"] == 1


def test_the_trace_guard_sees_a_retrace(monkeypatch):
    chex.clear_trace_counter()
    monkeypatch.setattr(step, "TRACE_GUARD", lambda fn: chex.assert_max_traces(fn, n=1))
    fn = step.MultiStep(lambda params, opt_state, data: (params, opt_state, data, data))
    fn.compile(jnp.zeros(2), jnp.zeros(2), jnp.zeros(3))
    fn(jnp.zeros(2), jnp.zeros(2), jnp.zeros(3))
    assert fn.traces == 1
    with pytest.raises(AssertionError, match="traced > 1 times"):
        fn(jnp.zeros(2), jnp.zeros(2), jnp.zeros(4))


def test_learning_rate_schedule_is_one_function_on_host_and_device():
    """The optimizer evaluates the schedule inside the compiled step, the progress bar and TensorBoard on the
    host: the same function, the same rates (to float32 rounding), the same linear decay to its floor."""
    schedule = optimizer.linear_decay(0.025, total_steps=1000)
    steps = np.array([0, 1, 250, 999, 1000, 1500], np.int32)
    host = np.array([schedule(int(s)) for s in steps])
    device = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)))
    # 1 - step / total cancels near the end: a few float32 ulps of the fraction (XLA multiplies by the
    # reciprocal and fuses the subtraction) are ~1e-4 of the rate there.
    np.testing.assert_allclose(host, device, rtol=1e-4)
    np.testing.assert_allclose(host, 0.025 * np.maximum(1e-4, 1 - steps / 1000), rtol=1e-4)


def test_vectors_txt_rows_are_their_words_rows(corpus, tmp_path, trainer_tables):
    """vectors.txt holds each word with its own row of the trained input table (read back with gensim), the
    vocabulary in the order the trainer's build_vocabulary gives it."""
    from gensim.models import KeyedVectors

    from examples.word2vec import data

    out = tmp_path / "run"
    assert _run(corpus, out, "--steps", "16", "--no-eval") == 0
    emb = trainer_tables(out)["variables/emb_in"]
    vocab = data.build_vocabulary(data.read_words(corpus), min_count=2).words  # SMALL's --min-count
    kv = KeyedVectors.load_word2vec_format(str(out / "vectors.txt"))
    assert kv.index_to_key == vocab
    assert len({tuple(row) for row in emb}) == len(vocab)  # distinct rows: a permutation would show
    for i, word in enumerate(vocab):
        np.testing.assert_allclose(kv[word], emb[i], rtol=1e-5, atol=1e-7, err_msg=word)
    tsv = np.loadtxt(out / "vectors.tsv", delimiter="\t", dtype=np.float32)
    assert (out / "metadata.tsv").read_text().splitlines() == vocab
    np.testing.assert_allclose(tsv, emb, rtol=1e-5, atol=1e-7)


def test_divergence_is_an_error_and_keeps_the_tensorboard_events(corpus, tmp_path, capsys):
    """A diverged run ends with one error line (exit 2) and its TensorBoard writer closed: the events of the
    steps it ran are on disk (an unclosed writer keeps them in its queue and loses them)."""
    from tensorboard.backend.event_processing import event_accumulator

    out = tmp_path / "run"
    args = [a for a in SMALL if a != "--no-tensorboard"]
    rc = train.main(["--corpus", corpus, "--output-dir", str(out), *args, "--steps", "64",
                     "--learning-rate", "1e30"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: the loss diverged") and err.count("\n") == 1, err
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss")]
    assert steps and steps == list(range(1, len(steps) + 1)) and len(steps) % 8 == 0
    assert [e.step for e in acc.Scalars("learning_rate")] == list(range(8, len(steps) + 1, 8))


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
        (["--sequential-correction", "--optimizer", "adagrad"], "--sequential-correction applies to"),
        (["--sequential-correction", "--negative-sharing", "centre"], "--sequential-correction applies to"),
        (["--loss", "nce", "--max-logit", "6"], "--max-logit applies to --loss neg only"),
        (["--max-logit", "0"], "--max-logit must be a positive number"),
        (["--max-logit", "nan"], "--max-logit must be a positive number"),
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


@pytest.mark.parametrize(("flags", "names"), [
    (["--replica-sync", "call"], ["--replica-sync call", "--devices 2"]),
    (["--replica-sync", "call", "--devices", "2", "--num-processes", "2", "--process-id", "0",
      "--coordinator-address", "localhost:1"], ["--replica-sync call", "one process"]),
    (["--replica-sync", "call", "--devices", "2", "--steps-per-call", "8", "--stop-at-step", "12"],
     ["--stop-at-step (12)", "multiple of --steps-per-call (8)"]),
])
def test_replica_sync_call_flag_errors(flags, names):
    from examples.word2vec import flags as w2v_flags
    from examples.word2vec.cli import UsageError

    with pytest.raises(UsageError) as e:
        w2v_flags.parse_flags(flags)
    assert all(name in str(e.value) for name in names) and "\n" not in str(e.value)


def test_replica_sync_call_rounds_checkpoints_out_loud():
    from examples.word2vec import flags as w2v_flags

    with pytest.warns(UserWarning, match=r"^--checkpoint-every 100 rounded up to 104: with --replica-sync call"):
        args = w2v_flags.parse_flags(["--replica-sync", "call", "--devices", "2", "--steps-per-call", "8",
                                      "--checkpoint-every", "100"])
    assert args.checkpoint_every == 104


def test_steps_per_call_default_and_the_replica_choice():
    """--steps-per-call is 128 unless given; with --replica-sync call the trainer chooses it once the corpus is
    read (flags.settle_steps_per_call), rounding --checkpoint-every out loud as for a K given, and refusing a
    --stop-at-step off its grid."""
    from examples.word2vec import flags as w2v_flags
    from examples.word2vec.cli import UsageError

    assert w2v_flags.parse_flags([]).steps_per_call == w2v_flags.DEFAULT_STEPS_PER_CALL == 128
    args = w2v_flags.parse_flags(["--replica-sync", "call", "--devices", "2", "--checkpoint-every", "100"])
    assert args.steps_per_call is None and args.checkpoint_every == 100
    with pytest.warns(UserWarning, match=r"rounded up to 128: .* --steps-per-call 64 steps chosen for this run$"):
        w2v_flags.settle_steps_per_call(args, 64)
    assert (args.steps_per_call, args.checkpoint_every) == (64, 128)
    args = w2v_flags.parse_flags(["--replica-sync", "call", "--devices", "2", "--stop-at-step", "12"])
    with pytest.raises(UsageError, match=r"--stop-at-step \(12\) must be a multiple of --steps-per-call \(8 chosen "):
        w2v_flags.settle_steps_per_call(args, 8)
    with pytest.raises(UsageError, match="--steps-per-call must be at least 1, got 0"):
        w2v_flags.parse_flags(["--steps-per-call", "0"])
