"""Export trained word vectors: word2vec text format and the TensorBoard projector files.

>>> import numpy as np, tempfile, os, pathlib
>>> d = tempfile.mkdtemp()
>>> save_word2vec_format(os.path.join(d, "vec.txt"), np.eye(2), ["UNK", "the"])   # doctest: +ELLIPSIS
'.../vec.txt'
>>> pathlib.Path(d, "vec.txt").read_text()
'2 2\\nUNK 1 0\\nthe 0 1\\n'

Every file is written atomically (:func:`atomic_write`): a reader, or a run killed half-way, never sees half a file.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write", "save_projector_config", "save_projector_tsv", "save_word2vec_format", "write_metrics"]


def atomic_write(path: str, write: Callable[[IO[str]], None]) -> str:
    """Write ``path`` through ``write(f)`` into a temporary file in the same directory, then rename it into
    place: readers never see half a file, and a failure leaves the previous file as it was. The file gets mode
    0644 (it is meant to be shared). Returns the absolute path."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; exported files are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _check(vectors: Any, words: Sequence[str], forbidden: str, fmt_name: str) -> np.ndarray:
    vec = np.asarray(vectors, dtype=np.float32)
    if vec.ndim != 2:
        raise ValueError(f"vectors must be a 2-D [words, dim] array, got shape {vec.shape}")
    if len(words) != vec.shape[0]:
        raise ValueError(f"{len(words)} words for {vec.shape[0]} vectors")
    for w in words:
        if not w or any(ch in w for ch in forbidden):
            raise ValueError(f"word {w!r} cannot be written in {fmt_name} (empty or contains whitespace)")
    return vec


def _rows(f: IO[str], vec: np.ndarray, sep: str, fmt: str, prefixes: Sequence[str] | None) -> None:
    row_fmt = sep.join([fmt] * vec.shape[1]) + "\n"
    for i, row in enumerate(vec.tolist()):
        if prefixes is not None:
            f.write(prefixes[i] + sep)
        f.write(row_fmt % tuple(row))


def save_word2vec_format(
    path: str | os.PathLike[str], vectors: Any, words: Sequence[str], fmt: str = "%.6g"
) -> str:
    """Write the word2vec text format that ``gensim.models.KeyedVectors.load_word2vec_format`` reads.

    A ``"<n> <dim>"`` header, then one ``word v1 v2 ...`` line per word, in the given order. ``fmt``
    formats each value (``"%.9g"`` round-trips float32 exactly). Returns the absolute path.

    >>> save_word2vec_format("vectors.txt", final_embeddings, [rev[i] for i in range(V)])  # doctest: +SKIP

    Raises:
        ValueError: shapes disagree, or a word is empty or contains whitespace.
    """
    vec = _check(vectors, words, " \t\n\r\v\f", "word2vec text format")

    def write(f: IO[str]) -> None:
        f.write(f"{vec.shape[0]} {vec.shape[1]}\n")
        _rows(f, vec, " ", fmt, words)

    return atomic_write(os.fspath(path), write)


def save_projector_tsv(
    directory: str | os.PathLike[str],
    vectors: Any,
    words: Sequence[str],
    vectors_name: str = "vectors.tsv",
    metadata_name: str = "metadata.tsv",
    fmt: str = "%.6g",
) -> tuple[str, str]:
    """Write the projector pair: ``vectors.tsv`` (tab-separated rows) and ``metadata.tsv``.

    The metadata has one word per line and no header, which is what the projector expects for a
    single column (word2vec_basic wrote it the same way). Load both at projector.tensorflow.org, or
    point :func:`save_projector_config` at them. Returns ``(vectors_path, metadata_path)``.

    >>> save_projector_tsv("logdir", final_embeddings, words)   # doctest: +SKIP
    ('/abs/logdir/vectors.tsv', '/abs/logdir/metadata.tsv')

    Raises:
        ValueError: shapes disagree, or a word is empty or contains a tab or line break.
    """
    vec = _check(vectors, words, "\t\n\r", "projector metadata")
    directory = os.fspath(directory)
    vectors_path = atomic_write(
        os.path.join(directory, vectors_name), lambda f: _rows(f, vec, "\t", fmt, None)
    )
    metadata_path = atomic_write(
        os.path.join(directory, metadata_name), lambda f: f.writelines(w + "\n" for w in words)
    )
    return vectors_path, metadata_path


def _pbtxt_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def save_projector_config(
    logdir: str | os.PathLike[str],
    tensor_name: str,
    metadata_path: str,
    tensor_path: str | None = None,
) -> str:
    """Write ``projector_config.pbtxt`` in ``logdir`` (the text proto TensorBoard's projector reads).

    ``tensor_name`` names a checkpointed variable (word2vec_basic used ``embeddings/Variable:0``);
    ``tensor_path`` points at a ``vectors.tsv`` instead when there is no TF checkpoint. Relative paths
    are resolved by TensorBoard against ``logdir``. Returns the config's path.

    >>> import pathlib, tempfile
    >>> p = save_projector_config(tempfile.mkdtemp(), "embeddings", "metadata.tsv", "vectors.tsv")
    >>> print(pathlib.Path(p).read_text(), end="")
    embeddings {
      tensor_name: "embeddings"
      metadata_path: "metadata.tsv"
      tensor_path: "vectors.tsv"
    }
    """
    lines = ["embeddings {", f"  tensor_name: {_pbtxt_string(tensor_name)}"]
    lines.append(f"  metadata_path: {_pbtxt_string(metadata_path)}")
    if tensor_path is not None:
        lines.append(f"  tensor_path: {_pbtxt_string(tensor_path)}")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    return atomic_write(os.path.join(os.fspath(logdir), "projector_config.pbtxt"), lambda f: f.write(text))


def write_metrics(path: str | os.PathLike[str], metrics: Mapping[str, Any]) -> list[str]:
    """Write ``metrics`` to ``path`` as strict JSON, atomically (:func:`atomic_write`); keys sorted.

    JSON has no NaN or infinity: a non-finite float (a Spearman over no covered pairs, a diverged loss) is
    written as ``null``, the keys where that happened are listed in ``"non_finite_as_null"`` (dotted paths),
    and one ``warning:`` line on stderr says so. Returns that list (empty when every number was finite).

    >>> import json, math, pathlib, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "metrics.json")
    >>> write_metrics(path, {"steps": np.int64(3), "evaluation": {"spearman": math.nan}})
    ['evaluation.spearman']
    >>> json.loads(pathlib.Path(path).read_text())
    {'evaluation': {'spearman': None}, 'non_finite_as_null': ['evaluation.spearman'], 'steps': 3}
    """
    nulls: list[str] = []

    def clean(obj: Any, where: str) -> Any:
        if isinstance(obj, Mapping):
            return {str(k): clean(v, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if isinstance(obj, (float, np.floating)):
            if math.isfinite(obj):
                return float(obj)
            nulls.append(where)
            return None
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, np.bool_):
            return bool(obj)
        return obj

    doc = clean(metrics, "")
    if nulls:
        doc["non_finite_as_null"] = nulls

    def write(f: IO[str]) -> None:
        json.dump(doc, f, indent=2, sort_keys=True, allow_nan=False)
        f.write("\n")

    atomic_write(os.fspath(path), write)
    if nulls:
        print(f"warning: {os.fspath(path)}: {', '.join(nulls)} not finite, written as null", file=sys.stderr)
    return nulls
