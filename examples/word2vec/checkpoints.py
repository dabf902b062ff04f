"""The trainer's checkpoints: where they live, what they hold, when a run may resume from one.

Checkpoints (``<output-dir>/checkpoints/model.ckpt-<step>.npz``) are written atomically by
:class:`jaxgraph.train.Saver` every ``--checkpoint-every`` steps, at the end, and on Ctrl-C; the last
``--keep-checkpoints`` are kept. Each holds the parameters (the tables, the global step, the corpus cursor), the
optimizer state, and a :func:`fingerprint` of the corpus, vocabulary and training configuration: ``--resume``
refuses a checkpoint whose fingerprint differs. All randomness derives from ``(seed, step, position)``
(``hashing.py``), so an interrupted and resumed run ends with exactly the embeddings of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import jaxgraph as jg
from examples.word2vec.cli import UsageError
from examples.word2vec.corpus_ids import IdFile
from examples.word2vec.distributed import host_values
from jaxgraph.train import CheckpointError, Saver, latest_checkpoint

__all__ = ["TRAINING_KEYS", "Checkpointer", "fingerprint", "open_checkpoints"]

#: The configuration a run's result depends on: a checkpoint resumes only a run with the same values.
TRAINING_KEYS = (
    "min_count", "max_vocab", "subsample", "window", "loss", "negatives", "negative_sharing", "shared_negatives",
    "pairs_per_group", "step_cap", "negatives_per_centre", "batch_size",
    "embedding_size", "optimizer", "learning_rate", "total_steps", "seed",
)
_CKPT_NAME = "model.ckpt"
_FINGERPRINT = "run_fingerprint"


def fingerprint(vocab: Sequence[str], ids: np.ndarray | IdFile, config: Mapping[str, Any]) -> bytes:
    """sha256 of the vocabulary, the corpus ids (an array, or an id file read block by block: the same digest)
    and the :data:`TRAINING_KEYS` of ``config``.

    >>> config = dict.fromkeys(TRAINING_KEYS, 1)
    >>> fingerprint(["a", "b"], np.array([0, 1]), config) == fingerprint(["a", "b"], np.array([1, 0]), config)
    False
    """
    h = hashlib.sha256()
    h.update("\n".join(vocab).encode("utf-8"))
    h.update(b"\0")
    for block in ids.blocks() if isinstance(ids, IdFile) else [ids]:
        h.update(np.ascontiguousarray(block, dtype="<i4").tobytes())
    h.update(json.dumps({k: config[k] for k in TRAINING_KEYS}, sort_keys=True).encode())
    return h.digest()


class Checkpointer:
    """Atomic checkpoints carrying a run fingerprint: :class:`jaxgraph.train.Saver` (one atomic ``.npz`` per
    checkpoint and a TF-style index) with the fingerprint stored as one more variable."""

    def __init__(self, directory: str, keep: int, fingerprint: bytes) -> None:
        self.dir = directory
        self.fp = np.frombuffer(fingerprint, np.uint8).copy()
        self.saver = Saver(max_to_keep=keep)

    def _with_fp(self, params: dict[str, Any], fp: np.ndarray) -> dict[str, Any]:
        tree = dict(params)
        tree[_FINGERPRINT] = jg.Variable(fp, trainable=False, name=_FINGERPRINT)
        return tree

    def latest(self) -> str | None:
        """The newest checkpoint's path (its prefix), or None."""
        return latest_checkpoint(self.dir) if os.path.isdir(self.dir) else None

    def save(self, params: dict[str, Any], opt_state: Any) -> str:
        """Save (replicated arrays, maybe spread over processes) as ``model.ckpt-<global step>``; its path."""
        params, opt_state = host_values((params, opt_state))
        tree = self._with_fp(params, self.fp)
        step = int(params["global_step"].value)
        return self.saver.save(tree, opt_state, os.path.join(self.dir, _CKPT_NAME), global_step=step)

    def _read_fp(self, path: str) -> np.ndarray | None:
        template = self._with_fp({}, np.zeros_like(self.fp))
        try:
            restored, _ = Saver(var_list=[_FINGERPRINT]).restore(template, None, path)
        except CheckpointError as e:
            if _FINGERPRINT in str(e) and "not found" in str(e):
                return None
            raise
        return np.asarray(restored[_FINGERPRINT].value)

    def restore(self, params: dict[str, Any], opt_state: Any, path: str) -> tuple[dict[str, Any], Any]:
        """``(params, opt_state)`` from ``path``, which must belong to this run (same fingerprint)."""
        stored = self._read_fp(path)
        if stored is None or not np.array_equal(stored, self.fp):
            raise UsageError(
                f"checkpoint {path} belongs to a different run (corpus, vocabulary or training flags "
                "differ); resume with the same flags, or use --overwrite or another --output-dir to "
                "start afresh"
            )
        tree, opt_state = self.saver.restore(self._with_fp(params, self.fp), opt_state, path)
        tree.pop(_FINGERPRINT)
        return tree, opt_state


def open_checkpoints(output_dir: str, keep: int, fingerprint: bytes, *, resume: bool, overwrite: bool,
                     chief: bool) -> tuple[Checkpointer, str | None]:
    """The run's :class:`Checkpointer` and the checkpoint to resume from (None: start afresh).

    Checkpoints already in ``<output_dir>/checkpoints`` are resumed with ``resume``, deleted with ``overwrite``
    (by the chief; the other processes start afresh without racing its deletion), and refused otherwise.
    """
    os.makedirs(output_dir, exist_ok=True)
    ckpt = Checkpointer(os.path.join(output_dir, "checkpoints"), keep, fingerprint)
    latest = ckpt.latest() if chief or not overwrite else None
    if latest is not None and not resume:
        if not overwrite:
            raise UsageError(
                f"{ckpt.dir} already holds checkpoints (latest {latest}); pass --resume to continue that run "
                "or --overwrite to start afresh"
            )
        shutil.rmtree(ckpt.dir)
        latest = None
    return ckpt, latest
