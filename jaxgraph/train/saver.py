"""TF1's ``tf.train.Saver`` for explicit parameter trees: checkpoints keyed by variable name.

A checkpoint is one plain numpy ``.npz`` file (``<prefix>.npz``): a zip of ``.npy`` arrays, readable
with nothing but ``numpy.load``. Entries are

* ``variables/<name>``: each Variable, by its resolved unique name (:func:`jaxgraph.named_variables`),
  so a checkpoint restores into a freshly built model whatever object holds the variables;
* ``optimizer/<path>``: each leaf of the optimizer state, by its '/'-joined tree path (for the core
  optimizers ``optimizer/slots/<slot name>/<variable name>``; for optax states the state's field
  names), so any optimizer-state pytree round-trips given a template of the same structure;
* ``__jaxgraph_checkpoint__``: JSON metadata: a format marker and version, the global step, and each
  array's shape, dtype and CRC-32.

Why ``.npz``: it needs no new dependency (orbax-checkpoint would pull in tensorstore and asyncio
machinery for what is, here, a single-host dict of arrays; safetensors has no place for the
optimizer's tree paths and metadata beyond strings and is not installed), it is a format every
Python user can inspect, and zip members carry their own CRC-32, which together with the metadata
makes a damaged file an error rather than silently wrong numbers.

Writes are atomic: the file is written to a temporary name in the same directory, flushed and
``fsync``-ed, then ``os.replace``-d into place and the directory ``fsync``-ed; the ``checkpoint`` index
(TF's text format, listing the latest and all kept checkpoints) is replaced the same way, after the
data file, and old checkpoints are deleted last. A crash at any point leaves the index naming a
complete checkpoint. A failed save raises a ``CheckpointWriteError`` and leaves the directory as it
was. One process writes a directory at a time (a lock file; see
:mod:`jaxgraph.train.checkpoint_management`). :func:`latest_checkpoint` and :meth:`Saver.restore` on a
directory recover from a missing or damaged index and skip a damaged newest checkpoint, saying so with
a :class:`~jaxgraph.errors.JaxgraphWarning`. ``Saver(format="tf")`` writes TF's format instead, and
``restore`` reads either (:mod:`jaxgraph.train.tf_checkpoint`).

>>> import tempfile, jax.numpy as jnp
>>> from jaxgraph import Variable
>>> ckpt_dir = tempfile.mkdtemp()
>>> saver = Saver(max_to_keep=2)
>>> tree = {"w": Variable(jnp.arange(3.0), name="w")}
>>> path = saver.save(tree, None, f"{ckpt_dir}/model.ckpt", global_step=10)
>>> path == latest_checkpoint(ckpt_dir) == f"{ckpt_dir}/model.ckpt-10"
True
>>> fresh = {"w": Variable(jnp.zeros(3), name="w")}
>>> restored, _ = saver.restore(fresh, None, path)
>>> restored["w"].value.tolist()
[0.0, 1.0, 2.0]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import warnings
import weakref
import zipfile
import zlib
from collections.abc import Iterable
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.errors import JaxgraphWarning
from jaxgraph.train import tf_checkpoint
from jaxgraph.train.checkpoint_error import CheckpointCorruptError, CheckpointError, CheckpointWriteError
from jaxgraph.train.checkpoint_management import (
    INDEX_FILENAME,
    atomic_write,
    check_writable_dir,
    directory_mutex,
    hold_directory,
    os_cause,
    read_checkpoint_state,
    release_directory,
    write_checkpoint_state,
)
from jaxgraph.variable_collections import get_global_step, path_to_name, resolved_name
from jaxgraph.variable_index import VariableIndex
from jaxgraph.variables import Variable

__all__ = [
    "FORMATS",
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointWriteError",
    "Saver",
    "check_writable_dir",
    "latest_checkpoint",
]

PyTree = Any

FORMAT = "jaxgraph.checkpoint"
FORMATS = ("npz", "tf")
VERSION = 1
SUFFIX = ".npz"
_META_KEY = "__jaxgraph_checkpoint__"
_VAR_PREFIX = "variables/"
_OPT_PREFIX = "optimizer/"


# -- file helpers ---------------------------------------------------------------------------------
def _checkpoint_file(prefix: str) -> str:
    return prefix if prefix.endswith(SUFFIX) else prefix + SUFFIX


def _prefix_of(path: str) -> str:
    return path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path


def _exists(prefix: str) -> bool:
    return os.path.isfile(_checkpoint_file(prefix)) or tf_checkpoint.is_tf_checkpoint(prefix)


def _global_step_name(tree: PyTree | VariableIndex) -> str | None:
    step = get_global_step(tree)
    return None if step is None else resolved_name(step)


def _files_of(prefix: str) -> list[str]:
    return [_checkpoint_file(prefix)] + tf_checkpoint.checkpoint_files(prefix)


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _stored_like(x: Any) -> Any:
    # Typed PRNG keys (e.g. Flax NNX's RngKey) are stored as their raw key data.
    return jax.eval_shape(jax.random.key_data, x) if _is_key(x) else x


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Variable):
        x = x.value
    if _is_key(x):
        x = jax.random.key_data(x)
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return np.asarray(jax.device_get(x))
    # Python scalars: JAX's dtype (int32/float32 without x64), so they match the template on restore.
    return np.asarray(jnp.asarray(x))


def _storable(arr: np.ndarray) -> np.ndarray:
    # .npy has no descriptor for ml_dtypes (bfloat16, float8...): store the raw bytes, view back on load.
    if np.dtype(arr.dtype.str) != arr.dtype:
        return arr.view(np.dtype(f"V{arr.dtype.itemsize}"))
    return arr


def _write_npz(f: IO[bytes], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        entries = {_META_KEY: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays}
        for key, arr in entries.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, _storable(arr), allow_pickle=False)


_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_TF_FILE = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")


def _not_a_checkpoint(filename: str, head: bytes) -> str:
    # TF checkpoints are dispatched to their reader before this one; a TF file here lacks its index.
    if _TF_FILE.search(filename):
        return (
            f"{filename} looks like part of a TensorFlow checkpoint, but its .index file is missing; "
            "pass the checkpoint's prefix with its .index and .data-* files beside it"
        )
    if head.startswith(b"\x93NUMPY"):
        return f"{filename} is a single numpy array (.npy), not a jaxgraph checkpoint"
    return f"{filename} is not a jaxgraph checkpoint (not a zip/.npz file)"


class _Missing(CheckpointCorruptError):
    """The checkpoint file does not exist."""


class _Foreign(CheckpointCorruptError):
    """The file is not a jaxgraph checkpoint at all (no zip, or no jaxgraph metadata)."""


class _Reader:
    """Reads a checkpoint lazily, turning every low-level failure into a CheckpointError: a
    CheckpointCorruptError when the file is not a usable checkpoint (missing, damaged, foreign)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        if not os.path.exists(filename):
            raise _Missing(f"Checkpoint file {filename} does not exist")
        try:
            # Our own file object, so it is closed on every error path (np.load leaks it on a bad zip).
            self._file = open(filename, "rb")
        except OSError as e:
            raise CheckpointCorruptError(f"Cannot read checkpoint file {filename}: {os_cause(e)}") from e
        self._npz: Any = None
        try:
            head = self._file.read(8)
            self._file.seek(0)
            if not head:
                raise CheckpointCorruptError(f"Checkpoint file {filename} is empty (truncated)")
            if not head.startswith(_ZIP_MAGIC):
                # np.load would try pickle next and complain about "pickled data": say what it is instead.
                raise _Foreign(_not_a_checkpoint(filename, head))
            self._npz = np.load(self._file, allow_pickle=False)
            if not hasattr(self._npz, "files") or _META_KEY not in self._npz.files:
                raise _Foreign(f"{filename} is not a jaxgraph checkpoint (no {_META_KEY} entry)")
            meta = json.loads(bytes(self._npz[_META_KEY]).decode("utf-8"))
        except CheckpointError:
            self.close()
            raise
        except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, JSONDecodeError, zlib.error...
            self.close()
            raise CheckpointCorruptError(f"Checkpoint file {filename} is corrupt or truncated: {e!r}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            self.close()
            raise _Foreign(f"{filename} is not a jaxgraph checkpoint (format marker missing)")
        if meta.get("version") != VERSION:
            self.close()
            raise CheckpointCorruptError(
                f"{filename} has checkpoint format version {meta.get('version')}, "
                f"this jaxgraph reads version {VERSION}"
            )
        self.meta = meta
        self.entries: dict[str, dict[str, Any]] = meta["arrays"]
        absent = [k for k in self.entries if k not in self._npz.files]
        if absent:
            self.close()
            raise CheckpointCorruptError(f"Checkpoint file {filename} is corrupt: entries {absent[:3]} are missing")

    def keys(self, prefix: str) -> list[str]:
        return [k[len(prefix) :] for k in self.entries if k.startswith(prefix)]

    def get(self, key: str) -> np.ndarray:
        info = self.entries[key]
        try:
            arr = self._npz[key]
        except Exception as e:
            raise CheckpointCorruptError(
                f"Checkpoint file {self.filename} is corrupt: cannot read {key!r}: {e!r}"
            ) from e
        dtype = jnp.dtype(info["dtype"])
        if arr.dtype != dtype and arr.dtype.itemsize == dtype.itemsize:
            arr = arr.view(dtype)
        intact = list(arr.shape) == info["shape"] and arr.dtype == dtype
        if not intact or zlib.crc32(arr.tobytes()) != info["crc32"]:
            raise CheckpointCorruptError(
                f"Checkpoint file {self.filename} is corrupt: entry {key!r} does not match its recorded "
                f"shape {tuple(info['shape'])}, dtype {info['dtype']} and checksum"
            )
        return arr

    def close(self) -> None:
        if self._npz is not None and hasattr(self._npz, "close"):
            self._npz.close()
        self._file.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- finding the newest intact checkpoint -----------------------------------------------------------
_STEP = re.compile(r"-(\d+)$")


def _scan(checkpoint_dir: str) -> list[str]:
    """Prefixes of the directory's checkpoints (``.npz`` files, TF ``.index`` files), newest first: by the
    step in the name, then by modification time."""
    try:
        names = os.listdir(checkpoint_dir)
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(checkpoint_dir, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue  # hidden names are temporary files of writes in progress or killed
        if name.endswith(SUFFIX):
            prefix = _prefix_of(path)
        elif name.endswith(".index"):  # a TF checkpoint's
            prefix = path[: -len(".index")]
        else:
            continue
        step = _STEP.search(prefix)
        found.append((int(step.group(1)) if step else -1, os.path.getmtime(path), prefix))
    return [prefix for *_, prefix in sorted(found, reverse=True)]


def _probe(prefix: str) -> None:
    """Raise CheckpointCorruptError unless ``prefix`` is a complete checkpoint, checked from its structure
    (the zip directory and the metadata, or a TF checkpoint's index and data file sizes), not from the
    arrays' checksums, which restoring verifies."""
    if tf_checkpoint.is_tf_checkpoint(prefix):
        try:
            with tf_checkpoint.CheckpointReader(prefix):  # reads the index, checks the data files' sizes
                pass
        except CheckpointCorruptError:
            raise
        except CheckpointError as e:
            raise CheckpointCorruptError(str(e)) from e
        return
    if not os.path.exists(_checkpoint_file(prefix)):
        if tf_checkpoint.checkpoint_files(prefix):
            raise CheckpointCorruptError(f"TF checkpoint {prefix} is incomplete: its index {prefix}.index is missing")
        raise _Missing(f"Checkpoint {prefix} does not exist (no {prefix}.npz, nor TF's {prefix}.index)")
    with _Reader(_checkpoint_file(prefix)):
        pass


def _newest_intact(checkpoint_dir: str, attempt: Any) -> tuple[str | None, Any]:
    """Try the directory's checkpoints newest first with ``attempt(prefix)``, which raises
    CheckpointCorruptError for an unusable one: those the index lists (its latest first), then any other
    checkpoint file. Returns ``(prefix, attempt's result)`` or ``(None, None)``, and says in one warning
    what was skipped and why when the index's latest was not the one used."""
    state = read_checkpoint_state(checkpoint_dir)
    listed: list[str] = []
    for prefix in [state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)]:
        if prefix and not _exists(prefix):
            # TF1's Saver records absolute paths: a directory copied from another machine names files
            # that are not there, but are here under their base names.
            moved = os.path.join(checkpoint_dir, os.path.basename(prefix))
            prefix = moved if _exists(moved) else prefix
        if prefix and os.path.abspath(prefix) not in map(os.path.abspath, listed):
            listed.append(prefix)
    seen = set(map(os.path.abspath, listed))
    candidates = listed + [p for p in _scan(checkpoint_dir) if os.path.abspath(p) not in seen]
    index = os.path.join(checkpoint_dir, INDEX_FILENAME)
    if not state.exists:
        trouble = f"{checkpoint_dir} has no '{INDEX_FILENAME}' index"
    elif state.damage:
        trouble = f"the checkpoint index {index} is damaged ({state.damage})"
    else:
        trouble = f"no checkpoint listed in {index} is intact"
    skipped: list[str] = []
    damaged: list[str] = []  # unreadable checkpoint data (not merely absent, nor another program's file)
    for k, prefix in enumerate(candidates):
        try:
            result = attempt(prefix)
        except CheckpointCorruptError as e:
            if k >= len(listed) and isinstance(e, _Foreign):
                continue  # an unrelated .npz file beside the checkpoints
            skipped.append(str(e))
            if not isinstance(e, _Missing):
                damaged.append(str(e))
            continue
        if k < len(listed) and not state.damage:
            if skipped:
                _say(f"{skipped[0]}; using {prefix}, the newest intact checkpoint in {index}")
        else:
            also = f" (skipped: {skipped[0]})" if skipped else ""
            _say(f"{trouble}; using {prefix}, the newest complete checkpoint found in {checkpoint_dir}{also}")
        return prefix, result
    if damaged:
        # None would let a program start afresh (and later delete) over checkpoints that need a look.
        raise CheckpointCorruptError(f"No intact checkpoint in {checkpoint_dir}: {damaged[0]}")
    if skipped or state.damage:
        also = f" ({skipped[0]})" if skipped else ""
        _say(f"{trouble}{also}: no checkpoint in {checkpoint_dir}")
    return None, None


def _say(message: str) -> None:
    warnings.warn(JaxgraphWarning(message), stacklevel=4)


def latest_checkpoint(checkpoint_dir: str) -> str | None:
    """The prefix of the newest complete checkpoint in ``checkpoint_dir``, or ``None`` (as TF).

    The index's latest entry is used when its file is a complete checkpoint. Otherwise, with one
    :class:`~jaxgraph.errors.JaxgraphWarning` naming what was wrong and what is used instead: the newest
    complete one the index lists (when its latest is missing or damaged), else, when the index is
    missing, damaged, or lists nothing intact, the newest complete checkpoint found in the directory
    (by the step in its name, then modification time). TF's checkpoints (``<prefix>.index`` + data
    files, as ``tf.compat.v1.train.Saver`` writes them under the same ``checkpoint`` index) count as
    well as jaxgraph's; an absolute index entry that does not exist (TF1 records absolute paths: a
    directory copied from another machine) is looked for in ``checkpoint_dir`` under its base name.
    A fresh directory (no index, no checkpoint) gives ``None`` silently; so does a directory whose
    index names only files that no longer exist, with a warning. "Complete" is checked from the
    file's structure (cheap); :meth:`Saver.restore` on a directory also verifies checksums.

    Raises ``CheckpointCorruptError`` when the directory holds checkpoints but none is intact: ``None``
    would tell a program to start afresh over data that needs a look.
    """
    checkpoint_dir = os.fspath(checkpoint_dir)
    if not os.path.isdir(checkpoint_dir):
        return None
    return _newest_intact(checkpoint_dir, _probe)[0]


# -- key helpers ----------------------------------------------------------------------------------
def _opt_leaves(opt_state: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(opt_state)
    keyed = [(path_to_name(path) if path else "state", leaf) for path, leaf in leaves]
    names = [k for k, _ in keyed]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError(f"Optimizer state paths {dupes} are ambiguous when joined with '/'")
    return keyed, treedef


def _entry_info(arr: np.ndarray) -> dict[str, Any]:
    return {"shape": list(arr.shape), "dtype": jnp.dtype(arr.dtype).name, "crc32": zlib.crc32(arr.tobytes())}


def _describe(arr: Any) -> str:
    return f"shape {tuple(np.shape(arr))}, dtype {jnp.dtype(arr.dtype).name}"


def _place_like(arr: np.ndarray, template: Any) -> jax.Array:
    # Keep the template's placement (device scope, sharding) so a restored tree runs where it was built.
    # Committed-ness is kept too: it is part of jit's cache key, so changing it would retrace the step.
    if _is_key(template):
        return jax.random.wrap_key_data(_place_like(arr, jax.random.key_data(template)),
                                        impl=jax.random.key_impl(template))
    if isinstance(template, jax.Array) and not isinstance(template, jax.core.Tracer):
        if template.committed:
            return jax.device_put(arr, template.sharding)
        devices = template.devices()
        if len(devices) == 1:
            with jax.default_device(next(iter(devices))):
                return jnp.asarray(arr)
    elif isinstance(getattr(template, "sharding", None), jax.sharding.Sharding):  # a ShapeDtypeStruct
        return jax.device_put(arr, template.sharding)
    return jnp.asarray(arr)


_HOLDER_IDS = itertools.count()


def _release_all(held: set[str], holder: int) -> None:
    for directory in list(held):
        release_directory(directory, holder)
        held.discard(directory)


class Saver:
    """Saves and restores Variables (and optionally optimizer state) by name (``tf.train.Saver``).

    Args:
      var_list: the Variables to save and restore, as Variables carrying their resolved names (from
        :func:`jaxgraph.named_variables` / ``trainable_variables`` / ...) or as names. ``None``: every
        Variable of the tree.
      max_to_keep: how many recent checkpoints to keep; older ones are deleted. ``None`` or ``0``
        keeps all. On the first save into a directory, the checkpoints its index already lists under
        the same save path (``path`` or ``path-<step>``) are adopted (as TF2's ``CheckpointManager``
        does), so a resumed run keeps the limit. Only files this Saver's list names, that are complete
        checkpoints inside the directory, are ever deleted; other entries of the index stay listed.
      format: what :meth:`save` writes: ``"npz"`` (jaxgraph's, below) or ``"tf"``: TF's own format
        (``<prefix>.index`` + ``<prefix>.data-00000-of-00001``), keyed by TF1's names, which
        ``tf.compat.v1.train.Saver`` restores into the TF1 graph of the same program
        (:mod:`jaxgraph.train.tf_checkpoint`). :meth:`restore` reads either, whatever ``format`` is.

    The optimizer state is saved whole when given (``opt_state=None`` skips it), whatever ``var_list``
    says. Restoring it needs a template state of the same structure, e.g. ``opt.init(tree)``.

    **One writer per directory.** From its first save into a directory (or :meth:`check_writable`)
    until :meth:`close` (or the end of a ``with Saver(...) as saver:`` block, or the Saver being garbage
    collected, or the process ending), the Saver's process owns that directory through the lock file
    ``checkpoint.lock`` (see :mod:`jaxgraph.train.checkpoint_management`). A Saver in another process
    then gets a :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` naming the owner (pid, host, since when)
    instead of deleting or overwriting its checkpoints; the lock of a process that died is taken over
    with a :class:`~jaxgraph.errors.JaxgraphWarning`. Savers of one process share the directory.

    >>> import tempfile, jax.numpy as jnp
    >>> from jaxgraph import Variable
    >>> tree = {"a": Variable(1.0, name="a"), "b": Variable(2.0, name="b")}
    >>> d = tempfile.mkdtemp()
    >>> prefix = Saver(var_list=["a"]).save(tree, {"count": jnp.int32(7)}, f"{d}/ckpt")
    >>> fresh = {"a": Variable(0.0, name="a"), "b": Variable(0.0, name="b")}
    >>> restored, opt = Saver(var_list=["a"]).restore(fresh, {"count": jnp.int32(0)}, d)
    >>> float(restored["a"].value), float(restored["b"].value), int(opt["count"])
    (1.0, 0.0, 7)
    """

    def __init__(self, var_list: Iterable[Variable | str] | None = None, max_to_keep: int | None = 5,
                 format: str = "npz") -> None:
        if var_list is None:
            self._names: list[str] | None = None
        else:
            names = []
            for v in var_list:
                name = v.name if isinstance(v, Variable) else v
                if not isinstance(name, str):
                    raise ValueError(
                        f"Saver var_list entries must be Variables with names or strings, got {v!r}; "
                        "take Variables from jaxgraph.named_variables(tree) so they carry their names"
                    )
                names.append(name)
            self._names = list(dict.fromkeys(names))
        if max_to_keep is not None and max_to_keep < 0:
            raise ValueError(f"max_to_keep must be >= 0 or None, got {max_to_keep}")
        self._max_to_keep = max_to_keep or None
        self._kept: dict[str, list[str]] = {}
        if format not in FORMATS:
            raise ValueError(f"Saver format must be one of {FORMATS}, got {format!r}")
        self._format = format
        self._holder = next(_HOLDER_IDS)
        self._held: set[str] = set()
        # Not a method of self: the finalizer must not keep the Saver alive.
        self._finalizer = weakref.finalize(self, _release_all, self._held, self._holder)

    # -- owning directories ---------------------------------------------------------------------
    def _hold(self, directory: str) -> str:
        directory = hold_directory(directory, self._holder)
        self._held.add(directory)
        return directory

    def check_writable(self, directory: str, needed_bytes: int = 0) -> str:
        """Check now, before any work, that this Saver can save into ``directory``; return its absolute
        path. Creates it, writes and removes a probe file, checks ``needed_bytes`` of free space if
        given (see :func:`~jaxgraph.train.checkpoint_management.check_writable_dir`), and takes the
        directory's lock for this process. Raises :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` (an
        ``OSError``) naming the directory and the cause, or the other writer that owns it.

        >>> import tempfile
        >>> with Saver() as saver:
        ...     d = saver.check_writable(tempfile.mkdtemp() + "/ckpt")
        """
        return self._hold(check_writable_dir(directory, needed_bytes))

    def close(self) -> None:
        """Give up the directories this Saver owns (their lock), so that another process may write
        there; a later :meth:`save` takes them again. Called at the end of a ``with`` block."""
        _release_all(self._held, self._holder)

    def __enter__(self) -> Saver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def last_checkpoints(self) -> list[str]:
        """Prefixes of the checkpoints this Saver keeps, oldest first (all directories it saved into)."""
        return [p for paths in self._kept.values() for p in paths]

    def _selected(self, tree: PyTree | VariableIndex, what: str) -> list[Variable]:
        variables = VariableIndex.of(tree).variables()
        if self._names is None:
            return variables
        by_name = {resolved_name(v): v for v in variables}
        missing = [n for n in self._names if n not in by_name]
        if missing:
            raise CheckpointError(
                f"Cannot {what}: var_list names {missing} are not in the tree, which has {sorted(by_name)}"
            )
        return [by_name[n] for n in self._names]

    # -- save -----------------------------------------------------------------------------------
    def save(self, tree: PyTree, opt_state: PyTree | None, path: str, global_step: Any = None, *,
             optimizer: Any = None) -> str:
        """Write a checkpoint; return its prefix (``path``, or ``path-<global_step>`` when given).

        The file is ``<prefix>.npz``; the directory's ``checkpoint`` index is updated to name it the
        latest, and checkpoints beyond ``max_to_keep`` are deleted, all after the new file is durable.
        With ``format="tf"``, TF's files instead (data file, then index), and ``optimizer`` (the
        optimizer that made ``opt_state``) names the slots as TF1 does. A job that splits its variables
        between optimizers passes their states and the optimizers in the same structure:
        ``opt_state=(wide_state, deep_state), optimizer=(wide_opt, deep_opt)`` (or two dicts with the
        same keys), in the order of the TF program's ``apply_gradients`` calls, which decides TF's names
        of shared non-slot variables (a second Adam's ``beta1_power_1``).

        A save is all or nothing: when it fails (an unwritable directory, a path under a file, a full
        disk, another writer owning the directory) it raises
        :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` (an ``OSError``) naming the path and the cause,
        and leaves the directory as it was: no partial file, the previous checkpoints and the index
        intact.
        """
        path = os.fspath(path)
        step = None if global_step is None else int(_to_numpy(global_step))
        prefix = path if step is None else f"{path}-{step}"
        if self._format == "tf":
            target = prefix

            def write() -> None:
                self._save_tf(tree, opt_state, prefix, optimizer)
        else:
            target = _checkpoint_file(prefix)
            arrays: dict[str, np.ndarray] = {}
            for var in self._selected(tree, "save"):
                arrays[_VAR_PREFIX + resolved_name(var)] = _to_numpy(var.value)
            if opt_state is not None:
                keyed, _ = _opt_leaves(opt_state)
                for key, leaf in keyed:
                    arrays[_OPT_PREFIX + key] = _to_numpy(leaf)
            meta = {
                "format": FORMAT,
                "version": VERSION,
                "global_step": step,
                "has_optimizer_state": opt_state is not None,
                "arrays": {k: _entry_info(a) for k, a in arrays.items()},
            }

            def write() -> None:
                atomic_write(target, lambda f: _write_npz(f, arrays, meta))

        dirname = self._hold(os.path.dirname(os.path.abspath(prefix)))
        with directory_mutex(dirname):
            existed = _exists(prefix)
            try:
                try:
                    write()
                except OSError as e:
                    raise CheckpointWriteError(e.errno, f"Cannot write checkpoint {target}: {os_cause(e)}") from e
                try:
                    self._record(dirname, path, prefix)
                except OSError as e:
                    index = os.path.join(dirname, INDEX_FILENAME)
                    raise CheckpointWriteError(
                        e.errno, f"Cannot update the checkpoint index {index}: {os_cause(e)}"
                    ) from e
            except CheckpointWriteError:
                if not existed:  # the index still names the previous checkpoints: leave none unlisted
                    for filename in _files_of(prefix):
                        with contextlib.suppress(OSError):
                            os.remove(filename)
                raise
        return prefix

    def _save_tf(self, tree: PyTree, opt_state: PyTree | None, prefix: str, optimizer: Any) -> None:
        index = VariableIndex.of(tree)
        values = {resolved_name(v): _to_numpy(v.value) for v in self._selected(index, "save")}
        state = None if opt_state is None else jax.tree_util.tree_map(_to_numpy, opt_state)
        tensors = tf_checkpoint.tf_tensors(values, state, optimizer, _global_step_name(index))
        tf_checkpoint.write_checkpoint(prefix, tensors, write_file=atomic_write)

    def _record(self, dirname: str, path: str, prefix: str) -> None:
        """Write the index naming ``prefix`` latest, then delete this Saver's checkpoints beyond the limit."""
        state = read_checkpoint_state(dirname)
        if state.damage:
            _say(f"the checkpoint index {os.path.join(dirname, INDEX_FILENAME)} is damaged ({state.damage}); "
                 "writing a new one (the checkpoints it listed stay on disk)")
        listed = [p for p in state.all_model_checkpoint_paths if _exists(p)]
        kept = self._kept.get(dirname)
        if kept is None:  # the first save here: adopt the index's checkpoints of this save path
            series = re.compile(re.escape(os.path.abspath(path)) + r"(-\d+)?")
            kept = [p for p in listed if series.fullmatch(os.path.abspath(p))]
        key = os.path.abspath(prefix)
        kept = [p for p in kept if os.path.abspath(p) != key] + [prefix]
        removed: list[str] = []
        if self._max_to_keep is not None and len(kept) > self._max_to_keep:
            removed, kept = kept[: -self._max_to_keep], kept[-self._max_to_keep :]
        ours = {os.path.abspath(p) for p in removed + kept}
        others = [p for p in listed if os.path.abspath(p) not in ours]  # other save paths stay listed
        write_checkpoint_state(dirname, prefix, others + kept)
        self._kept[dirname] = kept
        for old in removed:
            if os.path.dirname(os.path.abspath(old)) != dirname:
                continue  # never delete outside the directory this Saver owns
            try:
                _probe(old)  # only complete checkpoints: never a file that merely shares the name
            except CheckpointError:
                continue
            for filename in _files_of(old):
                with contextlib.suppress(OSError):
                    os.remove(filename)

    # -- restore --------------------------------------------------------------------------------
    def restore(self, tree: PyTree, opt_state: PyTree | None, path: str, *, optimizer: Any = None,
                assignment_map: Any = None) -> tuple[PyTree, PyTree | None]:
        """Return ``(tree, opt_state)`` with the checkpoint's values; the inputs are templates.

        ``path`` is a prefix returned by :meth:`save` / :func:`latest_checkpoint`, the ``.npz`` file, or
        a directory: its newest intact checkpoint, found as :func:`latest_checkpoint` does (recovering
        from a missing or damaged index), and here with every checksum verified too: a damaged one is
        skipped for the previous intact one, with a :class:`~jaxgraph.errors.JaxgraphWarning` naming
        both. Every selected Variable must be in the checkpoint with the template's shape and dtype;
        arrays land where the template's arrays live. ``opt_state=None`` skips the optimizer state.
        Raises :class:`CheckpointError` (a ``ValueError``) naming the file and the offending variable;
        :class:`~jaxgraph.train.checkpoint_error.CheckpointCorruptError` for a missing, damaged or foreign file.

        A TF checkpoint (a prefix, its ``.index`` file, or a directory whose ``checkpoint`` index names
        one) is restored by TF names: variables by their resolved names, optimizer state by TF1's
        slot names, which need ``optimizer`` (the optimizer ``opt_state`` belongs to; for several states,
        a tuple or dict of states and the optimizers in the same structure, as for :meth:`save`), and
        ``assignment_map`` (``tf.compat.v1.train.init_from_checkpoint``'s rules) loads a renamed or
        partial subset. See :mod:`jaxgraph.train.tf_checkpoint.names`.
        """
        path = os.fspath(path)
        if os.path.isdir(path):
            if tf_checkpoint.saved_model_variables(path) is not None:
                raise CheckpointError(tf_checkpoint.not_found_message(path))

            def attempt(prefix: str) -> tuple[PyTree, PyTree | None]:
                _probe(prefix)
                filename = prefix if tf_checkpoint.is_tf_checkpoint(prefix) else _checkpoint_file(prefix)
                return self._restore_path(tree, opt_state, filename, optimizer, assignment_map)

            prefix, restored = _newest_intact(path, attempt)
            if prefix is None:
                raise CheckpointError(
                    f"No checkpoint found in directory {path} (none intact in its '{INDEX_FILENAME}' "
                    f"index or among its checkpoint files)"
                )
            return restored
        return self._restore_path(tree, opt_state, self._resolve(path), optimizer, assignment_map)

    def _restore_path(self, tree: PyTree, opt_state: PyTree | None, filename: str, optimizer: Any,
                      assignment_map: Any) -> tuple[PyTree, PyTree | None]:
        tf_prefix = tf_checkpoint.tf_prefix(filename)
        if tf_prefix is not None:
            return self._restore_tf(tree, opt_state, tf_prefix, optimizer, assignment_map)
        if assignment_map is not None:
            raise CheckpointError(
                f"assignment_map applies to TF checkpoints; {filename} is jaxgraph's, restored by name"
            )
        return self._restore_file(tree, opt_state, filename)

    def _restore_file(self, tree: PyTree, opt_state: PyTree | None, filename: str) -> tuple[PyTree, PyTree | None]:
        with _Reader(filename) as reader:
            index = VariableIndex.of(tree)
            variables = self._selected(index, "restore")
            names = [resolved_name(v) for v in variables]
            missing = [n for n in names if _VAR_PREFIX + n not in reader.entries]
            if missing:
                raise CheckpointError(
                    f"Variables {missing} not found in checkpoint {filename}; "
                    f"it holds {reader.keys(_VAR_PREFIX)}"
                )
            values = {}
            for name, var in zip(names, variables, strict=True):
                arr = reader.get(_VAR_PREFIX + name)
                want = _stored_like(var.value)
                if arr.shape != tuple(want.shape) or arr.dtype != want.dtype:
                    raise CheckpointError(
                        f"Variable {name!r}: the checkpoint {filename} has {_describe(arr)} but the "
                        f"tree's variable has {_describe(want)}"
                    )
                values[name] = _place_like(arr, var.value)
            new_tree = index.replace_values(values)
            if opt_state is None:
                return new_tree, None
            if not reader.meta.get("has_optimizer_state"):
                raise CheckpointError(
                    f"Checkpoint {filename} has no optimizer state; "
                    "pass opt_state=None to restore only the variables"
                )
            keyed, treedef = _opt_leaves(opt_state)
            missing = [k for k, _ in keyed if _OPT_PREFIX + k not in reader.entries]
            if missing:
                raise CheckpointError(
                    f"Optimizer state entries {missing} not found in checkpoint {filename}; it holds "
                    f"{reader.keys(_OPT_PREFIX)} (was it saved with a different optimizer?)"
                )
            leaves = []
            for key, leaf in keyed:
                arr = reader.get(_OPT_PREFIX + key)
                # Python scalars in the template compare by JAX's dtype for them, as they were saved.
                want = leaf if hasattr(leaf, "dtype") and hasattr(leaf, "shape") else jnp.asarray(leaf)
                if tuple(arr.shape) != tuple(np.shape(want)) or arr.dtype != want.dtype:
                    raise CheckpointError(
                        f"Optimizer state {key!r}: the checkpoint {filename} has {_describe(arr)} but the "
                        f"template has {_describe(want)}"
                    )
                leaves.append(_place_like(arr, leaf))
            return new_tree, jax.tree_util.tree_unflatten(treedef, leaves)

    def _restore_tf(self, tree: PyTree, opt_state: PyTree | None, prefix: str, optimizer: Any,
                    assignment_map: Any) -> tuple[PyTree, PyTree | None]:
        index = VariableIndex.of(tree)
        variables = self._selected(index, "restore")
        with tf_checkpoint.CheckpointReader(prefix) as reader:
            values, state = tf_checkpoint.restore_values(
                reader, variables, opt_state, optimizer, assignment_map, _global_step_name(index)
            )
        templates = {resolved_name(v): v.value for v in variables}
        new_tree = index.replace_values({n: _place_like(a, templates[n]) for n, a in values.items()})
        if state is None:
            return new_tree, None
        state = jax.tree_util.tree_map(
            lambda new, old: _place_like(new, old) if isinstance(new, np.ndarray) else new, state, opt_state
        )
        abstract = [path_to_name(p) for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
                    if isinstance(leaf, jax.ShapeDtypeStruct)]
        if abstract:
            raise CheckpointError(
                f"TF checkpoint {prefix} has nothing for the optimizer state entries {abstract}, which the "
                "template leaves abstract; pass a concrete template (opt.init(tree))"
            )
        return new_tree, state

    @staticmethod
    def _resolve(path: str) -> str:
        if os.path.isfile(path) or tf_checkpoint.is_tf_checkpoint(path):
            return path
        filename = _checkpoint_file(path)
        if not os.path.exists(filename):
            raise _Missing(
                f"Checkpoint {_prefix_of(path)} does not exist (no file {filename}, nor TF's {path}.index)"
            )
        return filename
