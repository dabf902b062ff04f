"""What a configuration of the trainer needs, checked before anything is allocated or trained.

* **Device memory** (:func:`memory_needed`): the two tables (and ``nce_biases``), the optimizer's slots, the corpus
  and the negatives' tables kept on the device, and the largest buffers of one step (the gathered rows of the
  centres' contexts and negatives and their gradients, the span scanned for centres). It is a lower bound: XLA
  adds its own scratch space. :func:`check_memory` refuses a configuration that cannot fit the device (one line
  with the figures and what to change) instead of letting XLA fail half-way with ``RESOURCE_EXHAUSTED``.
* **Disk** (:func:`checkpoint_bytes`, :func:`export_bytes`): one checkpoint and the exported vectors must fit
  the free space of ``--output-dir`` and the file size limit (``ulimit -f``).

>>> from types import SimpleNamespace
>>> args = SimpleNamespace(embedding_size=100, loss="neg", negative_sharing="centre", optimizer="sgd", window=5,
...                        negatives=5, negatives_per_centre=10)
>>> need = memory_needed(args, vocab_size=10_000, corpus_slots=1_000_000, rows=171, span=900, copies=1)
>>> need.total > need.parts["tables"] == 8_000_000
True
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
from collections.abc import Mapping

import jax

from examples.word2vec.cli import UsageError

__all__ = ["Needs", "available_memory", "check_file_size", "check_memory", "checkpoint_bytes", "export_bytes",
           "human", "memory_needed"]

_F32 = 4
#: Slots per trainable variable of each optimizer (Adagrad: the accumulator; LazyAdam: m and v).
_SLOTS = {"sgd": 0, "adagrad": 1, "lazyadam": 2}
#: What to change when a configuration does not fit, by the part that is too large, and in general.
_REMEDY = {"tables": "lower --embedding-size or --max-vocab (or raise --min-count)",
           "optimizer slots": "lower --embedding-size or --max-vocab, or use --optimizer sgd (no slots)",
           "corpus": "use a smaller --corpus",
           "step buffers": "lower --batch-size or --embedding-size (or --shared-negatives, --negatives-per-centre)"}
MEMORY_HINT = "lower --batch-size, --embedding-size, --max-vocab (or raise --min-count) or --negatives-per-centre"


def human(n: float) -> str:
    """Bytes in words: ``"1.5 GB"``.

    >>> human(1.5e9), human(2048)
    ('1.5 GB', '2.0 kB')
    """
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@dataclasses.dataclass(frozen=True)
class Needs:
    """Bytes per part (``tables``, ``optimizer slots``, ``corpus``, ``step buffers``) and their total."""

    parts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{name} {human(n)}" for name, n in self.parts.items() if n)


def memory_needed(args: argparse.Namespace, vocab_size: int, corpus_slots: int, rows: int, span: int,
                  copies: int, group: int = 1) -> Needs:
    """The device memory a run of the trainer needs, at least: ``args`` (its flags), a vocabulary of
    ``vocab_size``, ``corpus_slots`` corpus ids on the device (padding included), ``rows`` centre rows per step,
    ``span`` raw tokens scanned per step, ``copies`` of the state (2 when it is not donated), and ``group``
    centres per negatives group (``--negative-sharing group``)."""
    d, w = args.embedding_size, args.window
    table = vocab_size * d * _F32
    trainable = 2 * table + (vocab_size * _F32 if args.loss == "nce" else 0)
    if args.loss == "neg" and args.negative_sharing == "group":
        negatives = -(-rows // group) * args.shared_negatives  # each group's shared negative rows
        gathered = (2 * rows + 2 * w + negatives) * d  # the centres, their band of context rows, the negatives
        logits = rows * (4 * w + args.shared_negatives)  # band products (twice the window) and negatives
        step = 2 * (gathered + logits) * _F32  # and their gradients
    elif args.loss == "neg":
        gathered = rows * (2 * w + args.negatives_per_centre) * d  # the centres' context and negative rows
        step = 2 * (gathered + rows * d) * _F32  # the rows and their gradients
    else:
        pairs = rows * 2 * w
        step = 2 * (pairs * d + args.negatives * d + pairs * (args.negatives + 1)) * _F32
    step += 12 * span * _F32  # the span's tokens, offsets, hashes, ranks, compacted copies
    return Needs({"tables": copies * trainable,
                  "optimizer slots": copies * _SLOTS[args.optimizer] * trainable,
                  "corpus": (corpus_slots + 3 * vocab_size) * _F32,
                  "step buffers": step})


def available_memory(device: jax.Device) -> tuple[int | None, str]:
    """The memory ``device`` can hold (bytes; None when unknown) and what that figure is: an accelerator's
    limit, or for a CPU the host's available memory (within its cgroup's limit, if any)."""
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # some backends do not implement it
        pass
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"free on {device}"
    if device.platform != "cpu":
        return None, ""
    free = _meminfo_available()
    limit = _cgroup_free()
    if limit is not None and (free is None or limit < free):
        return limit, "free for this process (cgroup limit)"
    return free, "available host memory"


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_free() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else int(limit) - used


def check_memory(needs: Needs, device: jax.Device, remedies: Mapping[str, str] | None = None) -> str:
    """Refuse (:class:`UsageError`) a configuration whose memory cannot fit ``device``, naming what to change for
    its largest part (``remedies``, by part; the trainer's flags by default); a phrase for the plan line
    (``"needs at least 12.3 MB of 22.0 GB available host memory"``)."""
    free, what = available_memory(device)
    if free is not None and needs.total > free:
        largest = max(needs.parts, key=needs.parts.__getitem__)
        remedy = (_REMEDY if remedies is None else remedies)[largest]
        raise UsageError(f"this configuration needs at least {human(needs.total)} of memory ({needs.describe()}) "
                         f"but {device} has {human(free)} ({what}): {remedy}")
    return f"needs at least {human(needs.total)}" + (f" of {human(free)} {what}" if free is not None else "")


def checkpoint_bytes(needs: Needs, copies: int) -> int:
    """The size of one checkpoint file: the state (tables and slots, one copy) and the file's overhead."""
    return (needs.parts["tables"] + needs.parts["optimizer slots"]) // copies + (1 << 16)


def export_bytes(vocab_size: int, dim: int) -> int:
    """The size of the exported vectors, at most: ``vectors.txt`` and ``vectors.tsv`` (up to 14 characters per
    ``%.6g`` value with its separator) and the words."""
    return 2 * vocab_size * dim * 14 + vocab_size * 200


def check_file_size(needed: int, what: str) -> None:
    """Refuse a run whose largest file (``needed`` bytes, ``what``) exceeds this process's file size limit
    (``ulimit -f``), which would stop its first save half-way."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and needed > soft:
        raise UsageError(f"{what} needs {human(needed)} but files are limited to {human(soft)} (ulimit -f): raise "
                         "the limit, or lower --embedding-size or --max-vocab")
