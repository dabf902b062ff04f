"""The word2vec trainer of this checkout against another checkout's (e.g. main's), alternating in one process.

Each round runs both trainers once (the order alternates between rounds) with the same flags on the same
corpus, and times the steps between the second call and the last through the trainers' after-call hook: wall
time and CPU time (``time.process_time``: every thread of the process) per step. CPU time is the steadier
figure on a machine that other jobs load; both are reported as medians over the rounds with the ratio
(this checkout / baseline). The baseline's ``examples/word2vec`` is copied into a temporary package (its
``examples.word2vec`` imports rewritten), so both trainers run on THIS checkout's jaxgraph: the comparison is of
the trainers, not of the library.

Usage (from the repository root; the baseline is any checkout, e.g. a worktree of main)::

    git worktree add --detach ../w2v-baseline main
    PYTHONPATH=. python benchmarks/word2vec_trainer_ab.py --baseline ../w2v-baseline --steps 8192 --rounds 10
    PYTHONPATH=. python benchmarks/word2vec_trainer_ab.py --baseline ../w2v-baseline --trainer-args "--steps-per-call 1"

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASELINE_PACKAGE = "examples_baseline"


def load_baseline(checkout: str, workdir: str):
    """The baseline checkout's ``examples/word2vec/train.py``, importable beside this checkout's."""
    source = os.path.join(checkout, "examples", "word2vec")
    if not os.path.isfile(os.path.join(source, "train.py")):
        raise SystemExit(f"error: {source}/train.py does not exist: --baseline must be a jaxgraph checkout")
    target = os.path.join(workdir, BASELINE_PACKAGE, "word2vec")
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    open(os.path.join(workdir, BASELINE_PACKAGE, "__init__.py"), "w").close()
    for name in os.listdir(target):
        if name.endswith(".py"):
            path = os.path.join(target, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            with open(path, "w", encoding="utf-8") as f:
                f.write(re.sub(r"\bexamples\.word2vec\b", f"{BASELINE_PACKAGE}.word2vec", text))
    sys.path.insert(0, workdir)
    return importlib.import_module(f"{BASELINE_PACKAGE}.word2vec.train")


def time_run(train, flags: list[str]) -> tuple[float, float]:
    """``(wall, cpu)`` milliseconds per step from the second call to the last."""
    stamps: list[tuple[int, float, float]] = []
    status = train.main(flags, _after_call=lambda step: stamps.append((step, time.perf_counter(),
                                                                         time.process_time())))
    if status != 0 or len(stamps) < 3:
        raise SystemExit(f"error: a run failed (status {status}, {len(stamps)} calls; give --steps for >= 3 calls)")
    (s0, w0, c0), (s1, w1, c1) = stamps[1], stamps[-1]
    return (w1 - w0) / (s1 - s0) * 1e3, (c1 - c0) / (s1 - s0) * 1e3


def summary(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    out = {}
    for kind in ("wall", "cpu"):
        base, this = results["baseline"][kind], results["this"][kind]
        ratios = [b / a for a, b in zip(base, this, strict=True)]
        out[kind] = {"baseline_ms_per_step": statistics.median(base), "this_ms_per_step": statistics.median(this),
                     "ratio_of_medians": statistics.median(this) / statistics.median(base),
                     "median_ratio": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="root of the checkout to compare with (e.g. a worktree of main)")
    p.add_argument("--corpus", help="text file (default: the embedded default corpus)")
    p.add_argument("--steps", type=int, default=8192, help="steps per run")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--trainer-args", default="", help="more flags for both trainers, one string")
    args = p.parse_args(argv)
    from examples.word2vec import data
    from examples.word2vec import train as this

    with tempfile.TemporaryDirectory(prefix="w2v_ab_") as workdir:
        baseline = load_baseline(args.baseline, workdir)
        corpus = args.corpus
        if corpus is None:
            corpus = os.path.join(workdir, "corpus.txt")
            with open(corpus, "w", encoding="utf-8") as f:
                f.write(" ".join(data.default_corpus()[0]))
        flags = ["--corpus", corpus, "--overwrite", "--steps", str(args.steps), "--no-eval", "--no-progress",
                 "--no-tensorboard", "--checkpoint-every", "0", "--quiet", *args.trainer_args.split()]
        print(f"config: {' '.join(flags[2:])}; {args.rounds} rounds; baseline {os.path.abspath(args.baseline)}; "
              f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the start", flush=True)
        results: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in ("baseline", "this")}
        for r in range(args.rounds):
            order = [("baseline", baseline), ("this", this)]
            for name, train in order if r % 2 == 0 else order[::-1]:
                wall, cpu = time_run(train, flags + ["--output-dir", os.path.join(workdir, name)])
                results[name]["wall"].append(wall)
                results[name]["cpu"].append(cpu)
            print(f"round {r}: ms/step wall baseline {results['baseline']['wall'][-1]:.4f} this "
                  f"{results['this']['wall'][-1]:.4f}; cpu baseline {results['baseline']['cpu'][-1]:.4f} this "
                  f"{results['this']['cpu'][-1]:.4f}", flush=True)
    figures = summary(results)
    for kind, f in figures.items():
        print(f"{kind}: baseline {f['baseline_ms_per_step']:.4f} ms/step, this {f['this_ms_per_step']:.4f} ms/step, "
              f"this/baseline {f['ratio_of_medians']:.3f} (per-round ratios: median {f['median_ratio']:.3f}, "
              f"range {f['min_ratio']:.2f}-{f['max_ratio']:.2f}); load average {os.getloadavg()[0]:.1f} at the end")
    print(json.dumps({"flags": flags[2:], "rounds": args.rounds, "figures": figures, "runs": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
