"""End-to-end tests of ``examples/word2vec/word2vec_basic.py`` (TF's tutorial program on jaxgraph).

Short runs through ``main(argv)`` in-process (one on a synthetic corpus with strong structure, one on the
offline default corpus), bad inputs that must exit 2 with one ``error:`` line, and one subprocess run
for the real exit status.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys

import pytest

from examples.word2vec import word2vec_basic as w2v

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

AVERAGE_RE = re.compile(r"^Average loss at step  (\d+) :  (\S+)$")
NEAREST_RE = re.compile(r"^Nearest to (\S+): (\S+(?:, \S+)*)$")
DEMO_RE = re.compile(r"^\d+ \S+ -> \d+ \S+$")

TOPICS = [
    ["red", "green", "blue", "yellow", "purple", "orange"],
    ["one", "two", "three", "four", "five", "six"],
    ["cat", "dog", "horse", "cow", "sheep", "goat"],
    ["paris", "london", "berlin", "rome", "madrid", "vienna"],
    ["run", "walk", "jump", "swim", "climb", "crawl"],
    ["oak", "pine", "birch", "maple", "elm", "willow"],
]


def _synthetic_corpus(path) -> int:
    """Sentences that each use the words of one topic only: a word's contexts are its topic's words."""
    rng = random.Random(0)
    words = []
    for _ in range(3000):
        topic = rng.choice(TOPICS)
        words.extend(rng.choice(topic) for _ in range(8))
    path.write_text(" ".join(words) + "\n", encoding="utf-8")
    return len({w for t in TOPICS for w in t}) + 1  # + UNK


def _run(argv, capsys):
    rc = w2v.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), err


def _averages(lines):
    return [(int(m[1]), float(m[2])) for m in map(AVERAGE_RE.match, lines) if m]


def test_synthetic_corpus_end_to_end(tmp_path, capsys):
    corpus = tmp_path / "topics.txt"
    vocabulary_size = _synthetic_corpus(corpus)
    out_dir = tmp_path / "run"
    rc, lines, err = _run(
        ["--corpus", corpus, "--output-dir", out_dir, "--vocabulary-size", 1000, "--steps", 401,
         "--steps-per-call", 50, "--log-every", 100, "--eval-every", 200, "--embedding-size", 32,
         "--num-sampled", 8, "--valid-size", 4, "--valid-window", 20, "--plot-only", 20,
         "--tsne-iter", 250, "--seed", 1, "--device", "/cpu:0"],
        capsys,
    )
    assert rc == 0, err
    assert "Traceback" not in err
    # The vocabulary shrank from 1000 to the corpus' words: one warning line, not a Python warning dump.
    assert [line for line in err.splitlines() if line] == [
        f"warning: the corpus has only {vocabulary_size - 1} distinct words, fewer than the vocabulary size "
        f"1000 minus UNK; using a vocabulary of {vocabulary_size}"
    ]

    # Steps 1-3 printouts, in TF's order, the demo batch before training.
    assert any(line.startswith("Most common words (+UNK) [['UNK', 0], ") for line in lines)
    assert any(line.startswith("Sample data [") for line in lines)
    init = lines.index("Initialized")
    demo = [line for line in lines[:init] if DEMO_RE.match(line)]
    assert len(demo) == 8

    averages = _averages(lines)
    assert [s for s, _ in averages] == [0, 100, 200, 300, 400]
    assert averages[-1][1] < averages[0][1] / 2, averages
    assert averages[-1][1] < averages[1][1], averages

    nearest = [NEAREST_RE.match(line) for line in lines if line.startswith("Nearest to ")]
    assert all(nearest) and len(nearest) == 4 * 3  # steps 0, 200, 400 (the last step)
    assert all(len(m[2].split(", ")) == 8 for m in nearest)
    # The last printout comes after everything else was logged: it reflects the trained embeddings.
    assert lines.index(f"Average loss at step  400 :  {averages[-1][1]}") < lines.index(
        "Nearest to " + nearest[-4][1] + ": " + nearest[-4][2]
    )
    # Strong structure: after training, a topic word's nearest word is from its topic.
    topic_of = {w: i for i, t in enumerate(TOPICS) for w in t}
    final = [(m[1], m[2].split(", ")) for m in nearest[-4:] if m[1] in topic_of]
    hits = sum(topic_of.get(near[0]) == topic_of[word] for word, near in final)
    assert hits >= len(final) - 1, final

    metrics = json.loads((out_dir / "metrics.json").read_text())
    for key in ("steps", "final_average_loss", "examples_per_sec", "device", "vocabulary_size"):
        assert key in metrics
    assert metrics["device"].startswith("cpu:")
    assert metrics["steps"] == 401 and metrics["vocabulary_size"] == vocabulary_size
    assert metrics["examples_per_sec"] > 0 and metrics["final_average_loss"] < averages[0][1]
    metadata = (out_dir / "metadata.tsv").read_text().splitlines()
    assert len(metadata) == vocabulary_size and metadata[0] == "UNK"
    assert len((out_dir / "vectors.tsv").read_text().splitlines()) == vocabulary_size
    assert 'tensor_name: "embeddings/Variable"' in (out_dir / "projector_config.pbtxt").read_text()
    assert (out_dir / "model.ckpt.npz").is_file()
    assert (out_dir / "tsne.png").stat().st_size > 0
    events = [p for p in os.listdir(out_dir) if p.startswith("events.out.tfevents")]
    assert events
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(str(out_dir), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = acc.Scalars("loss")  # the summary.scalar("loss", loss) of every step, from the scan
    assert [e.step for e in scalars] == list(range(401))
    assert scalars[0].value == pytest.approx(averages[0][1], rel=1e-5)


def test_default_corpus_few_steps(tmp_path, capsys):
    out_dir = tmp_path / "run"
    rc, lines, err = _run(["--output-dir", out_dir, "--steps", 1, "--plot-only", 0], capsys)
    assert rc == 0, err
    assert "Traceback" not in err and "warning" not in err
    assert lines[0].startswith("Corpus: gensim test data (offline default)")
    assert any(line.startswith("Most common words (+UNK) [['UNK', ") for line in lines)
    assert len([line for line in lines if DEMO_RE.match(line)]) == 8
    averages = _averages(lines)
    assert [s for s, _ in averages] == [0] and averages[0][1] > 10  # TF: in the hundreds at step 0
    nearest = [line for line in lines if line.startswith("Nearest to ")]
    assert len(nearest) == 16 and all(NEAREST_RE.match(line) for line in nearest)
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["vocabulary_size"] == w2v.DEFAULT_CORPUS_VOCABULARY_SIZE
    assert len((out_dir / "metadata.tsv").read_text().splitlines()) == w2v.DEFAULT_CORPUS_VOCABULARY_SIZE
    assert not (out_dir / "tsne.png").exists()


def test_defaults_depend_on_the_corpus():
    args = w2v.parse_args([])
    defaults = (w2v.DEFAULT_CORPUS_STEPS, w2v.DEFAULT_CORPUS_VOCABULARY_SIZE)
    assert (args.steps, args.vocabulary_size) == defaults
    args = w2v.parse_args(["--corpus", "text8.zip"])
    assert (args.steps, args.vocabulary_size) == (100001, 50000)
    assert (args.batch_size, args.embedding_size, args.skip_window, args.num_skips, args.num_sampled) == (
        128, 128, 1, 2, 64
    )


def test_chunk_plan_ends_calls_at_evaluation_steps():
    plan = w2v.chunk_plan(100001, 100, 10000)
    assert {c.length for c in plan} == {1, 100}
    assert sum(c.length for c in plan) == 100001
    assert [c.start + c.length - 1 for c in plan if c.evaluate] == list(range(0, 100001, 10000))
    plan = w2v.chunk_plan(250, 100, 10000)  # the last step is evaluated too, at the end of a shorter call
    assert [(c.start, c.length) for c in plan] == [(0, 1), (1, 100), (101, 100), (201, 49)]
    assert [c.evaluate for c in plan] == [True, False, False, True]
    plan = w2v.chunk_plan(1000, 64, 300)  # evaluation steps that are not multiples of the call length
    assert all(c.length <= 64 for c in plan) and sum(c.length for c in plan) == 1000
    assert [c.start + c.length - 1 for c in plan if c.evaluate] == [0, 300, 600, 900, 999]
    assert [c.start for c in plan] == [0, *(c.start + c.length for c in plan[:-1])]


SHORT = ["--steps", 101, "--steps-per-call", 50, "--log-every", 50, "--eval-every", 100, "--plot-only", 0,
         "--num-sampled", 8, "--embedding-size", 16, "--valid-size", 2, "--vocabulary-size", 1000]


def _strict_json(path):
    def refuse(constant):
        raise ValueError(f"{path} holds the non-standard JSON constant {constant}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_checkpoint_holds_the_exported_embeddings(tmp_path, capsys):
    """The checkpoint is always written (the Saver ships with jaxgraph) and restores to the embeddings that
    vectors.tsv holds (normalised, as TF's tutorial exported them), row for row with metadata.tsv's words."""
    import jax
    import numpy as np

    from examples.word2vec import data
    from jaxgraph.train import Saver

    corpus = tmp_path / "topics.txt"
    _synthetic_corpus(corpus)
    out = tmp_path / "run"
    rc, _, err = _run(["--corpus", corpus, "--output-dir", out, *SHORT], capsys)
    assert rc == 0, err
    metrics = _strict_json(out / "metrics.json")
    assert metrics["checkpoint"] == str(out / "model.ckpt")
    vocabulary_size = metrics["vocabulary_size"]
    template = w2v.build_model(vocabulary_size, 16, jax.random.PRNGKey(99))
    restored, _ = Saver().restore(template, None, metrics["checkpoint"])
    emb = np.asarray(restored["embeddings"].value)
    assert int(restored["global_step"].value) == 101
    exported = np.loadtxt(out / "vectors.tsv", delimiter="\t", dtype=np.float32)
    np.testing.assert_allclose(exported, emb / np.linalg.norm(emb, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)
    words = (out / "metadata.tsv").read_text().splitlines()
    dataset = data.build_dataset(data.read_words(str(corpus)), vocabulary_size)
    assert words == [dataset.reversed_dictionary[i] for i in range(vocabulary_size)]


def test_diverged_run_is_an_error_and_writes_nothing_with_nan(tmp_path, capsys):
    """Divergence is detected as the fast trainer detects it: one error line naming the step, exit status 2, and
    no output holding NaN (no projector files, no checkpoint, no metrics.json)."""
    corpus = tmp_path / "topics.txt"
    _synthetic_corpus(corpus)
    out = tmp_path / "run"
    rc, _, err = _run(["--corpus", corpus, "--output-dir", out, *SHORT, "--learning-rate", 1e6], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1 and "the loss diverged (non-finite) at step" in errors[0], err
    assert "Traceback" not in err
    assert not {"metrics.json", "vectors.tsv", "model.ckpt.npz"} & {p.name for p in out.iterdir()}


def test_metrics_json_is_replaced_atomically(tmp_path, capsys, monkeypatch):
    """A failure while writing metrics.json (here: the disk fills up half-way) keeps the previous file whole."""
    corpus = tmp_path / "topics.txt"
    _synthetic_corpus(corpus)
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text('{"earlier": true}\n')

    def disk_full(obj, f, **kwargs):
        f.write('{"steps": ')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", disk_full)
    rc, _, err = _run(["--corpus", corpus, "--output-dir", out, *SHORT], capsys)
    assert rc == 2 and "No space left on device" in err
    assert (out / "metrics.json").read_text() == '{"earlier": true}\n'
    assert not [p.name for p in out.iterdir() if p.name.startswith(".metrics.json")]


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(random.Random(0).randrange(256) for _ in range(4096)))
    small = tmp_path / "small.txt"
    small.write_text("the cat sat on the mat " * 20)  # 5 distinct words: vocabulary 6
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    return {
        "missing corpus": (["--corpus", tmp_path / "nope.txt"], "does not exist"),
        "empty corpus": (["--corpus", empty], "empty"),
        "binary corpus": (["--corpus", garbage], str(garbage)),
        "num_sampled >= shrunk vocabulary": (["--corpus", small, "--num-sampled", 6], "--num-sampled (6)"),
        "num_skips > 2 * skip_window": (["--num-skips", 4, "--skip-window", 1], "--num-skips (4)"),
        "batch_size % num_skips": (["--batch-size", 127], "--batch-size (127)"),
        "unwritable output dir": (["--corpus", small, "--output-dir", not_a_dir / "sub"], "--output-dir"),
        "bad flag value": (["--steps", "many"], "--steps"),
        "tsne iterations": (["--tsne-iter", 10], "--tsne-iter"),
        "absent device": (["--device", "/tpu:7"], "--device"),
        "malformed device": (["--device", "/gpu:x"], "--device"),
        "valid_size > valid_window": (["--valid-size", 200, "--valid-window", 100], "--valid-size (200)"),
        "valid_window > vocabulary_size": (["--valid-window", 20000], "--valid-window (20000)"),
        "plot_only over the cap": (["--plot-only", 100000], "--plot-only 100000 is more than 5000"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing corpus", "empty corpus", "binary corpus", "num_sampled >= shrunk vocabulary",
     "num_skips > 2 * skip_window", "batch_size % num_skips", "unwritable output dir", "bad flag value",
     "tsne iterations", "absent device", "malformed device", "valid_size > valid_window",
     "valid_window > vocabulary_size", "plot_only over the cap"],
)
def test_bad_input_exits_2_with_one_error_line(tmp_path, capsys, case):
    argv, needle = _bad_inputs(tmp_path)[case]
    if "--output-dir" not in argv:
        argv = [*argv, "--output-dir", tmp_path / "out"]
    rc, _, err = _run(argv, capsys)
    err_lines = [line for line in err.splitlines() if line and not line.startswith("warning: ")]
    assert rc == 2
    assert len(err_lines) == 1 and err_lines[0].startswith("error: "), err
    assert needle in err_lines[0]
    assert "Traceback" not in err


def test_subprocess_exit_status(tmp_path):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x01\x02\xff" * 1000)
    proc = subprocess.run(
        [sys.executable, "-m", "examples.word2vec.word2vec_basic", "--corpus", str(garbage),
         "--output-dir", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: corpus file") and "\n" not in proc.stderr.strip()
    assert "Traceback" not in proc.stderr


def test_a_run_compiles_three_programs(tmp_path, capsys):
    """Initialisation, the training steps (one program for calls of 1, 50 and 29 steps) and the evaluation:
    nothing else compiles, counted by JAX's own compile event around the whole run."""
    import jax

    corpus = tmp_path / "topics.txt"
    _synthetic_corpus(corpus)
    names = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name"))

    jax.clear_caches()  # programs compiled by earlier tests in this process would not be counted
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        rc, _, err = _run(["--corpus", corpus, "--output-dir", tmp_path / "run", *SHORT, "--steps", 130], capsys)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert rc == 0, err
    assert sorted(names) == ["jit(evaluate)", "jit(init)", "jit(train_steps)"], names
    metrics = _strict_json(tmp_path / "run" / "metrics.json")
    assert metrics["compiled_programs"] == 3 and sorted(metrics["compiled_program_names"]) == sorted(names)


def test_every_step_loss_reaches_the_event_file(tmp_path, capsys):
    """TF writes the loss summary of every step: each step's value is in the event file once, and the values
    average to the printed ``Average loss`` lines (calls of 1, 50, 50 and 29 steps)."""
    import numpy as np
    from tensorboard.backend.event_processing import event_accumulator

    corpus = tmp_path / "topics.txt"
    _synthetic_corpus(corpus)
    out = tmp_path / "run"
    rc, lines, err = _run(["--corpus", corpus, "--output-dir", out, *SHORT, "--steps", 130, "--log-every", 25],
                          capsys)
    assert rc == 0, err
    acc = event_accumulator.EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("loss")
    assert [e.step for e in events] == list(range(130))
    values = np.array([e.value for e in events], np.float64)
    averages = dict(_averages(lines))
    assert sorted(averages) == [0, 25, 50, 75, 100, 125]
    assert values[0] == pytest.approx(averages[0], rel=1e-6)
    for step in (25, 50, 75, 100, 125):
        assert values[step - 24 : step + 1].mean() == pytest.approx(averages[step], rel=1e-5), step


def test_valid_window_cut_to_a_small_vocabulary_says_so(tmp_path, capsys):
    small = tmp_path / "small.txt"
    small.write_text("the cat sat on the mat " * 20)  # 5 distinct words: vocabulary 6
    rc, lines, err = _run(["--corpus", small, "--output-dir", tmp_path / "run", *SHORT, "--steps", 3,
                           "--num-sampled", 2, "--valid-size", 8, "--valid-window", 10, "--vocabulary-size", 10],
                          capsys)
    assert rc == 0, err
    assert "warning: the vocabulary has only 6 words: --valid-window 10 cut to 6 and --valid-size 8 to 6" in err
    nearest = [line for line in lines if line.startswith("Nearest to ")]
    assert len(nearest) == 2 * 6  # steps 0 and 2, all six words


def test_tsne_shows_progress_and_the_time_left(capsys):
    import argparse

    import numpy as np

    emb = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    args = argparse.Namespace(plot_only=60, exact_tsne=False, seed=0, tsne_iter=300)
    words = {i: f"w{i}" for i in range(40)}
    assert w2v.tsne_plot(emb, words, args, os.devnull, progress_every=0) == os.devnull
    out, err = capsys.readouterr()
    assert "warning: --plot-only 60 is more than the vocabulary's 40 words: plotting all 40" in err
    lines = out.splitlines()
    assert lines[0] == "t-SNE of the 40 most frequent words (barnes_hut, 300 iterations; progress every 0 s)"
    progress = [line for line in lines if line.startswith("t-SNE: iteration ")]
    assert [line.split()[2] for line in progress] == ["50/300", "100/300", "150/300", "200/300", "250/300",
                                                      "300/300"]
    assert all(re.search(r"\), \d+ s so far, about \d+ s left$", line) for line in progress), progress
    assert progress[-1].endswith("about 0 s left")
    assert lines[-1].startswith("t-SNE done in ")
    assert lines[-1].endswith(f"drawing 40 labelled points into {os.devnull}")
    assert not any(line.startswith("[t-SNE]") for line in lines)  # scikit-learn's own report is condensed


def test_tsne_progress_time_left_is_extrapolated():
    import io

    clock = iter([100.0, 110.0, 130.0])  # the start, then the time of each report
    progress = w2v.TsneProgress(1000, io.StringIO(), every=5.0, clock=lambda: next(clock))
    progress.write("[t-SNE] Iteration 50: error = 80.5, gradient norm = 0.01 (50 iterations in 1s)\n[t-SNE] It")
    progress.write("eration 100: error = 3.25, gradient norm = 0.01 (50 iterations in 1s)\n")
    assert progress.out.getvalue().splitlines() == [
        "t-SNE: iteration 50/1000 (KL divergence 80.5), 10 s so far, about 3 min 10 s left",
        "t-SNE: iteration 100/1000 (KL divergence 3.25), 30 s so far, about 4 min 30 s left",
    ]
