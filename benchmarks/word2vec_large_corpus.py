"""The word2vec trainer on a corpus larger than its memory budget: streamed against whole, same corpus, same run.

Each configuration runs ``python -m examples.word2vec.train`` in a child process (so that each peak resident set
is its own, read from ``os.wait4``), with the same flags but ``--max-corpus-memory``: **streamed** (a budget
smaller than the corpus's ids: the ids go to an id file and the device holds two chunks) and **whole** (a budget
that holds them: the baseline, the corpus on the device whole). Reported per configuration: peak RSS, the time
from the process's start to the end of its first compiled call ("time to first step": reading, vocabulary, id
file, fingerprint, compilation, the first chunk), the reading + vocabulary time the trainer logs, and the
training words/sec (raw corpus tokens, from metrics.json), and the CPU seconds of the run (its reader processes
included).

Usage (generate the corpus first, outside the repository; it takes ~3 GB for 500M tokens, the streamed run's
id file another 2 GB in --workdir while it runs)::

    python benchmarks/make_large_corpus.py /tmp/corpus_500m.txt --tokens 500000000
    PYTHONPATH=. python benchmarks/word2vec_large_corpus.py --corpus /tmp/corpus_500m.txt --workdir /tmp/w2v_large

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import json, sys, time
start = time.perf_counter()
from examples.word2vec import train
first = []
def after_call(step):
    if not first:
        first.append(time.perf_counter() - start)
status = train.main(sys.argv[1:], _after_call=after_call)
print("BENCH " + json.dumps({"status": status, "first_call_s": first[0] if first else None,
                             "process_s": time.perf_counter() - start}), flush=True)
"""


def run_trainer(argv: list[str], log_path: str) -> dict:
    """One trainer run in a child process; its figures and peak RSS."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log_path, "w") as log:
        child = subprocess.Popen([sys.executable, "-c", CHILD, *argv], stdout=log, stderr=subprocess.STDOUT,
                                 env=env, cwd=REPO)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = open(log_path).read()
    bench = json.loads(re.findall(r"^BENCH (.*)$", text, re.M)[-1]) if "BENCH " in text else {}
    read = re.search(r"read with its vocabulary in ([\d.]+)s \(([\d,]+) words/s\)", text)
    plan = re.search(r"^[\d,]+ tokens, .*$", text, re.M)
    return {"exit_status": child.returncode, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # with its reader processes
            "read_and_vocabulary_s": float(read.group(1)) if read else None,
            "read_words_per_sec": int(read.group(2).replace(",", "")) if read else None,
            "plan_line": plan.group(0) if plan else None, **bench}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--workdir", required=True, help="output directories (and the id file while streaming)")
    p.add_argument("--steps", type=int, default=128 * 400)
    p.add_argument("--streamed-memory", type=int, default=256, help="--max-corpus-memory of the streamed run (MiB)")
    p.add_argument("--whole-memory", type=int, default=4096, help="--max-corpus-memory of the baseline run (MiB)")
    p.add_argument("--trainer-args", default="", help="more trainer flags, for both runs")
    p.add_argument("--only", choices=("streamed", "whole"), default=None)
    args = p.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    common = ["--corpus", args.corpus, "--steps", str(args.steps), "--no-eval", "--no-progress", "--no-tensorboard",
              "--checkpoint-every", "0", "--overwrite", *shlex.split(args.trainer_args)]
    print(f"corpus {args.corpus} ({os.path.getsize(args.corpus) / 2**30:.2f} GiB), {args.steps:,} steps, "
          f"load average {os.getloadavg()[0]:.1f}; trainer flags: {' '.join(common)}", flush=True)
    results: dict = {"corpus": os.path.abspath(args.corpus), "steps": args.steps, "flags": common}
    for name, memory in (("streamed", args.streamed_memory), ("whole", args.whole_memory)):
        if args.only not in (None, name):
            continue
        out = os.path.join(args.workdir, name)
        t0 = time.perf_counter()
        figures = run_trainer([*common, "--output-dir", out, "--max-corpus-memory", str(memory)],
                              os.path.join(args.workdir, f"{name}.log"))
        figures["wall_s"] = round(time.perf_counter() - t0, 1)
        figures["load_average_end"] = os.getloadavg()[0]
        metrics_path = os.path.join(out, "metrics.json")
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                metrics = json.load(f)
            figures.update(words_per_sec=metrics["words_per_sec"], train_seconds=metrics["train_seconds"],
                           vocabulary_size=metrics["vocabulary_size"], corpus_tokens=metrics["corpus_tokens"])
        results[name] = figures
        print(f"{name} (--max-corpus-memory {memory}): {json.dumps(figures)}", flush=True)
    if "streamed" in results and "whole" in results:
        s, w = results["streamed"], results["whole"]
        results["ratios"] = {k: round(s[k] / w[k], 3) for k in ("peak_rss_mib", "first_call_s", "words_per_sec")
                             if s.get(k) and w.get(k)}
        print(f"streamed / whole: {results['ratios']}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
