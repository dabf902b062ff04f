"""The trainer's checkpoints: where they live, what they hold, when a run may resume from one.

Checkpoints (``<output-dir>/checkpoints/model.ckpt-<step>.npz``) are written atomically by
:class:`jaxgraph.train.Saver` every ``--checkpoint-every`` steps, at the end, and on Ctrl-C or SIGTERM; the last
``--keep-checkpoints`` are kept. Each holds the parameters (the tables, the global step, the corpus cursor), the
optimizer state, and a :func:`fingerprint` of the corpus, vocabulary and training configuration: ``--resume``
refuses a checkpoint whose fingerprint differs. All randomness derives from ``(seed, step, position)``
(``hashing.py``), so an interrupted and resumed run ends with exactly the embeddings of an uninterrupted one.

Nothing is lost: the chief process owns ``checkpoints/`` from the start of the run (the Saver's lock file
``checkpoint.lock``: a second trainer writing the same directory is refused before it does any work);
``--resume`` finds the newest intact checkpoint even when the ``checkpoint`` index is missing or damaged, and
falls back past a corrupt newest checkpoint to the previous intact one (saying so in one ``warning:`` line);
``--overwrite`` removes only the files the trainer writes (:data:`TRAINER_FILES`), never anything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import jaxgraph as jg
from examples.word2vec.cli import UsageError
from examples.word2vec.corpus_ids import IdFile
from examples.word2vec.distributed import host_values
from jaxgraph.train import CheckpointCorruptError, CheckpointError, Saver, latest_checkpoint

__all__ = ["CHECKPOINT_FILES", "TRAINER_FILES", "TRAINING_KEYS", "Checkpointer", "fingerprint", "remove_run_files"]

#: The configuration a run's result depends on: a checkpoint resumes only a run with the same values.
TRAINING_KEYS = (
    "min_count", "max_vocab", "subsample", "window", "loss", "negatives", "negative_sharing", "shared_negatives",
    "pairs_per_group", "step_cap", "sequential_correction", "max_logit", "negatives_per_centre", "batch_size",
    "embedding_size", "optimizer", "learning_rate", "total_steps", "seed", "replicas",
)
#: Keys that count only when set (not None), so that the fingerprints of runs without them stay as they were:
#: ``steps_per_sync``, the steps between ``--replica-sync call``'s sums of the devices' updates.
OPTIONAL_TRAINING_KEYS = ("steps_per_sync",)
_CKPT_NAME = "model.ckpt"
_FINGERPRINT = "run_fingerprint"
#: What the trainer writes in ``checkpoints/`` (regular expressions; the Saver's temporary files of interrupted
#: writes included). The lock file ``checkpoint.lock`` is the Saver's too, but the running trainer holds it: it stays.
CHECKPOINT_FILES = (r"checkpoint", r"model\.ckpt-\d+\.npz", r"\.model\.ckpt-\d+\.npz\.tmp-.+",
                    r"\.checkpoint\.tmp-.+")
#: What the trainer writes in ``--output-dir`` (``export.py``'s temporary files and TensorBoard's event files
#: included).
_OUTPUTS = r"(vectors\.txt|vectors\.tsv|metadata\.tsv|projector_config\.pbtxt|metrics\.json)"
TRAINER_FILES = (_OUTPUTS, rf"\.{_OUTPUTS}\..+\.tmp", r"events\.out\.tfevents\..+")


def fingerprint(vocab: Sequence[str], ids: np.ndarray | IdFile, config: Mapping[str, Any]) -> bytes:
    """sha256 of the vocabulary, the corpus ids (an array, or an id file read block by block: the same digest)
    and the :data:`TRAINING_KEYS` of ``config`` (with those of :data:`OPTIONAL_TRAINING_KEYS` it sets).

    >>> config = dict.fromkeys(TRAINING_KEYS, 1)
    >>> fingerprint(["a", "b"], np.array([0, 1]), config) == fingerprint(["a", "b"], np.array([1, 0]), config)
    False
    """
    h = hashlib.sha256()
    h.update("\n".join(vocab).encode("utf-8"))
    h.update(b"\0")
    for block in ids.blocks() if isinstance(ids, IdFile) else [ids]:
        h.update(np.ascontiguousarray(block, dtype="<i4").data)  # the array's own buffer: no copy of the corpus
    keys = {k: config[k] for k in TRAINING_KEYS}
    keys.update({k: config[k] for k in OPTIONAL_TRAINING_KEYS if config.get(k) is not None})
    h.update(json.dumps(keys, sort_keys=True).encode())
    return h.digest()


def remove_run_files(output_dir: str, checkpoint_dir: str) -> list[str]:
    """``--overwrite``: delete the files a previous run of the trainer wrote (:data:`CHECKPOINT_FILES` in
    ``checkpoint_dir``, :data:`TRAINER_FILES` in ``output_dir``) and nothing else; their names.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "checkpoints").mkdir()
    >>> for name in ("checkpoints/model.ckpt-8.npz", "checkpoints/notes.txt", "vectors.txt", "mine.txt"):
    ...     _ = (d / name).write_text("x")
    >>> remove_run_files(str(d), str(d / "checkpoints"))
    ['model.ckpt-8.npz', 'vectors.txt']
    >>> sorted(p.name for p in d.rglob("*"))
    ['checkpoints', 'mine.txt', 'notes.txt']
    """
    removed = []
    for directory, patterns in ((checkpoint_dir, CHECKPOINT_FILES), (output_dir, TRAINER_FILES)):
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue
        for name in names:
            path = os.path.join(directory, name)
            if any(re.fullmatch(p, name) for p in patterns) and os.path.isfile(path) and not os.path.islink(path):
                os.remove(path)
                removed.append(name)
    return removed


class Checkpointer:
    """Atomic checkpoints carrying a run fingerprint: :class:`jaxgraph.train.Saver` (one atomic ``.npz`` per
    checkpoint and a TF-style index) with the fingerprint stored as one more variable.

    :meth:`claim` takes the directory before any work (the chief); the fingerprint is set once the corpus is
    read (:attr:`fp`).
    """

    def __init__(self, directory: str, keep: int, fingerprint: bytes = b"") -> None:
        self.dir = directory
        self.fp = np.frombuffer(fingerprint, np.uint8).copy()
        self.saver = Saver(max_to_keep=keep)

    def set_fingerprint(self, fingerprint: bytes) -> None:
        self.fp = np.frombuffer(fingerprint, np.uint8).copy()

    def claim(self, needed_bytes: int = 0) -> None:
        """Create the directory, check that a checkpoint (``needed_bytes``) can be written there, and own it (the
        Saver's lock: another trainer writing here is refused). Raises ``CheckpointWriteError`` naming the cause."""
        self.saver.check_writable(self.dir, needed_bytes=needed_bytes)

    def close(self) -> None:
        """Release the directory (its lock) for another writer."""
        self.saver.close()

    def _with_fp(self, params: dict[str, Any], fp: np.ndarray) -> dict[str, Any]:
        tree = dict(params)
        tree[_FINGERPRINT] = jg.Variable(fp, trainable=False, name=_FINGERPRINT)
        return tree

    def latest(self) -> str | None:
        """The newest intact checkpoint's path (its prefix), or None; a missing or damaged index or a corrupt
        newest file is recovered from by :func:`jaxgraph.train.latest_checkpoint`, which says so in a warning."""
        return latest_checkpoint(self.dir) if os.path.isdir(self.dir) else None

    def save(self, params: dict[str, Any], opt_state: Any) -> str:
        """Save (replicated arrays, maybe spread over processes) as ``model.ckpt-<global step>``; its path.
        Raises ``CheckpointWriteError`` (one line: the file and the cause) and leaves the directory as it was."""
        params, opt_state = host_values((params, opt_state))
        tree = self._with_fp(params, self.fp)
        step = int(params["global_step"].value)
        return self.saver.save(tree, opt_state, os.path.join(self.dir, _CKPT_NAME), global_step=step)

    def _read_fp(self, path: str) -> np.ndarray | None:
        template = self._with_fp({}, np.zeros_like(self.fp))
        try:
            restored, _ = Saver(var_list=[_FINGERPRINT]).restore(template, None, path)
        except CheckpointCorruptError:
            raise
        except CheckpointError as e:
            if _FINGERPRINT in str(e) and "not found" in str(e):
                return None
            raise
        return np.asarray(restored[_FINGERPRINT].value)

    def _refuse(self, path: str) -> UsageError:
        return UsageError(
            f"checkpoint {path} belongs to a different run (corpus, vocabulary or training flags differ); resume "
            "with the same flags, or use --overwrite or another --output-dir to start afresh")

    def restore(self, params: dict[str, Any], opt_state: Any, latest: str) -> tuple[dict[str, Any], Any, str]:
        """``(params, opt_state, path)`` from the newest intact checkpoint of the directory, ``latest`` (from
        :meth:`latest`) unless its data fails its checksums: then the previous intact one (one warning names both).
        It must belong to this run (same fingerprint)."""
        try:
            stored = self._read_fp(latest)
        except CheckpointCorruptError:  # damaged: the directory restore below falls back past it
            stored = self.fp
        if stored is None or not np.array_equal(stored, self.fp):
            raise self._refuse(latest)
        tree, opt_state = self.saver.restore(self._with_fp(params, self.fp), opt_state, self.dir)
        if not np.array_equal(np.asarray(tree.pop(_FINGERPRINT).value), self.fp):
            raise self._refuse(self.dir)
        path = os.path.join(self.dir, f"{_CKPT_NAME}-{int(tree['global_step'].value)}")
        return tree, opt_state, path

    def start(self, *, resume: bool, overwrite: bool, chief: bool, output_dir: str) -> str | None:
        """The checkpoint to resume from (None: start afresh). Checkpoints already here are resumed with
        ``resume``, refused otherwise, and with ``overwrite`` the previous run's files are deleted by the chief
        (:func:`remove_run_files`; the other processes start afresh without racing it)."""
        latest = self.latest() if chief or not overwrite else None
        if latest is not None and not resume:
            if not overwrite:
                raise UsageError(
                    f"{self.dir} already holds checkpoints (latest {latest}); pass --resume to continue that run "
                    "or --overwrite to start afresh")
            latest = None
        if overwrite and chief:
            remove_run_files(output_dir, self.dir)
        return latest
