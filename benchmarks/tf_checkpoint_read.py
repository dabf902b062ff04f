"""How fast does jaxgraph read a TF checkpoint without TensorFlow? CRC-32C and ``get_tensor``.

Measures, on the same random data in the same run:

- ``crc32c``: jaxgraph's CRC-32C with ``google-crc32c`` (``crc32c.value``, when installed) and with
  numpy alone (``crc32c.extend_numpy``, the fallback), against the stdlib's C ``zlib.crc32`` (another
  polynomial, so only a speed reference: what a C CRC costs);
- ``get_tensor``: ``jaxgraph.train.load_checkpoint(prefix).get_tensor`` of one float32 tensor
  (memory-mapped read plus CRC check) against TensorFlow's ``tf.train.load_checkpoint`` reading the
  same checkpoint, when TensorFlow is installed (run in a subprocess so it does not share the process).

Each figure is the median of ``--repeats`` runs; the file is read once before timing (page cache warm).

    python benchmarks/tf_checkpoint_read.py --megabytes 256 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a checkout

from jaxgraph import crc32c  # noqa: E402
from jaxgraph.train import load_checkpoint  # noqa: E402
from jaxgraph.train.tf_checkpoint import write_checkpoint  # noqa: E402

TF_READ = """
import sys, time, statistics, tensorflow as tf
prefix, repeats = sys.argv[1], int(sys.argv[2])
reader = tf.train.load_checkpoint(prefix)
reader.get_tensor("big")
times = []
for _ in range(repeats):
    t = time.perf_counter(); reader.get_tensor("big"); times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = args.megabytes << 20
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; {args.megabytes} MiB, "
          f"median of {args.repeats}")

    c_crc = median_time(lambda: zlib.crc32(data), args.repeats)
    result = {"crc32c_backend": crc32c.BACKEND, "zlib_crc32_mb_s": args.megabytes / c_crc}
    line = f"zlib.crc32 (C): {result['zlib_crc32_mb_s']:.0f} MiB/s"
    for name, fn in (("crc32c", crc32c.value), ("crc32c_numpy", lambda d: crc32c.extend_numpy(0, d))):
        seconds = median_time(lambda fn=fn: fn(data), args.repeats)
        result[f"{name}_mb_s"] = args.megabytes / seconds
        line += f"; {name}: {result[f'{name}_mb_s']:.0f} MiB/s ({c_crc / seconds:.2f}x zlib)"
    print(f"crc32c backend {crc32c.BACKEND}: " + line)

    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "model.ckpt")
        write_checkpoint(prefix, {"big": data.view(np.float32), "small": np.zeros(3, np.float32)})
        with load_checkpoint(prefix) as reader:
            read = median_time(lambda: reader.get_tensor("big"), args.repeats)
        result["get_tensor_mb_s"] = args.megabytes / read
        line = f"get_tensor (jaxgraph, no TF): {result['get_tensor_mb_s']:.0f} MiB/s"
        tf_out = subprocess.run([sys.executable, "-c", TF_READ, prefix, str(args.repeats)], capture_output=True,
                                text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
        if tf_out.returncode == 0:
            tf_read = float(tf_out.stdout.strip().splitlines()[-1])
            result["tf_get_tensor_mb_s"] = args.megabytes / tf_read
            line += f"; TensorFlow: {result['tf_get_tensor_mb_s']:.0f} MiB/s; ratio jaxgraph/TF {tf_read / read:.2f}x"
        else:
            line += "; TensorFlow not available for the baseline"
        print(line)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
