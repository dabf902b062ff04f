"""``--replica-sync call``'s K (steps per call) against its speed: the trainer on one device, and on two devices
with local steps at several K and at the K it chooses itself (``plan.replica_steps_per_call``), on the same
corpus and the same batches, rounds interleaved.

Each configuration trains the same number of the one-device run's batches (``--batches``; a local step trains
one batch per device, so the two-device runs take half as many steps) in a subprocess of its own (the virtual
CPU devices must be requested before JAX starts), and reports the trainer's own ``words_per_sec`` from
``metrics.json`` (training calls only: compilation and setup are not counted). Figures: the median over the
rounds, and its ratio to the one-device run's median. The automatic K's line names the K the trainer chose.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/word2vec_replica_k.py --corpus mix-10m --batches 6144 --k 64,128,256,512,1024

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.corpora import corpus_path  # noqa: E402


def run_trainer(corpus: str, flags: list[str], workdir: str) -> dict:
    """One trainer run in a subprocess; its ``metrics.json`` (``words_per_sec``, the configuration)."""
    out = tempfile.mkdtemp(dir=workdir)
    cmd = [sys.executable, "-m", "examples.word2vec.train", "--corpus", corpus, "--output-dir", out, "--no-eval",
           "--no-progress", "--no-tensorboard", "--checkpoint-every", "0", "--quiet", *flags]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the trainer failed ({shlex.join(cmd)}): {done.stderr.strip()[-500:]}")
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="embedded", help="a name from benchmarks/corpora.py or a path")
    p.add_argument("--batches", type=int, default=4096, help="the one-device run's batches each run trains (even)")
    p.add_argument("--k", default="32,128,512", help="comma-separated K for --replica-sync call")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--trainer-args", default="", help="extra flags for every run, one string")
    opts = p.parse_args(argv)
    if opts.batches < 2 or opts.batches % 2:
        raise SystemExit("error: --batches must be an even number of at least 2")
    corpus = opts.corpus if os.path.isfile(opts.corpus) else corpus_path(opts.corpus)
    extra = shlex.split(opts.trainer_args)
    local = ["--devices", "2", "--replica-sync", "call", "--steps", str(opts.batches // 2)]
    configs = {"one device": ["--steps", str(opts.batches)]}
    configs.update({f"K = {k}": [*local, "--steps-per-call", k] for k in opts.k.split(",")})
    configs["K chosen"] = local
    speeds: dict[str, list[float]] = {name: [] for name in configs}
    chosen = None
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(opts.rounds):
            names = list(configs) if r % 2 == 0 else list(reversed(configs))
            for name in names:
                metrics = run_trainer(corpus, [*configs[name], *extra], workdir)
                speeds[name].append(metrics["words_per_sec"])
                if name == "K chosen":
                    chosen = metrics["config"]["steps_per_call"]
                    vocabulary = metrics["vocabulary_size"]
    base = statistics.median(speeds["one device"])
    print(f"# word2vec_replica_k: corpus {opts.corpus} (vocabulary {vocabulary:,}), {opts.batches} batches of the "
          f"one-device run per run, {opts.rounds} rounds, trainer flags {extra or 'defaults'}; "
          f"words/s median over rounds (ratio to one device)")
    rows = {}
    for name, values in speeds.items():
        label = f"K chosen ({chosen})" if name == "K chosen" else name
        median = statistics.median(values)
        rows[label] = {"words_per_sec": values, "median": median, "ratio": median / base}
        print(f"{label:>18}: {median:>12,.0f} words/s  {median / base:.2f}x")
    print(json.dumps({"corpus": opts.corpus, "vocabulary": vocabulary, "batches": opts.batches,
                      "rounds": opts.rounds, "trainer_args": extra, "chosen_k": chosen, "runs": rows}))


if __name__ == "__main__":
    main()
