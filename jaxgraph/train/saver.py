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
data file. A crash at any point leaves the index naming a complete checkpoint.

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
import json
import os
import re
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxgraph.variable_collections import path_to_name, resolved_name
from jaxgraph.variable_index import VariableIndex
from jaxgraph.variables import Variable

__all__ = ["FORMAT", "INDEX_FILENAME", "SUFFIX", "VERSION", "CheckpointError", "Saver", "latest_checkpoint"]

PyTree = Any

FORMAT = "jaxgraph.checkpoint"
VERSION = 1
SUFFIX = ".npz"
INDEX_FILENAME = "checkpoint"
_META_KEY = "__jaxgraph_checkpoint__"
_VAR_PREFIX = "variables/"
_OPT_PREFIX = "optimizer/"


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not match the tree it is restored into."""


# -- file helpers ---------------------------------------------------------------------------------
def _fsync_dir(dirname: str) -> None:
    # Makes the rename itself durable; some platforms (Windows) cannot open directories.
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(filename: str, write: Callable[[IO[bytes]], object]) -> None:
    dirname = os.path.dirname(filename) or "."
    tmp = os.path.join(dirname, f".{os.path.basename(filename)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(dirname)


def _checkpoint_file(prefix: str) -> str:
    return prefix if prefix.endswith(SUFFIX) else prefix + SUFFIX


def _prefix_of(path: str) -> str:
    return path[: -len(SUFFIX)] if path.endswith(SUFFIX) else path


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


class _Reader:
    """Reads a checkpoint lazily, turning every low-level failure into a CheckpointError."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        if not os.path.exists(filename):
            raise CheckpointError(f"Checkpoint file {filename} does not exist")
        # Our own file object, so it is closed on every error path (np.load leaks it on a bad zip).
        self._file = open(filename, "rb")
        self._npz: Any = None
        try:
            self._npz = np.load(self._file, allow_pickle=False)
            if not hasattr(self._npz, "files") or _META_KEY not in self._npz.files:
                raise CheckpointError(f"{filename} is not a jaxgraph checkpoint (no {_META_KEY} entry)")
            meta = json.loads(bytes(self._npz[_META_KEY]).decode("utf-8"))
        except CheckpointError:
            self.close()
            raise
        except Exception as e:  # zipfile.BadZipFile, EOFError, ValueError, JSONDecodeError, zlib.error...
            self.close()
            raise CheckpointError(f"Checkpoint file {filename} is corrupt or truncated: {e!r}") from e
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            self.close()
            raise CheckpointError(f"{filename} is not a jaxgraph checkpoint (format marker missing)")
        if meta.get("version") != VERSION:
            self.close()
            raise CheckpointError(
                f"{filename} has checkpoint format version {meta.get('version')}, "
                f"this jaxgraph reads version {VERSION}"
            )
        self.meta = meta
        self.entries: dict[str, dict[str, Any]] = meta["arrays"]

    def keys(self, prefix: str) -> list[str]:
        return [k[len(prefix) :] for k in self.entries if k.startswith(prefix)]

    def get(self, key: str) -> np.ndarray:
        info = self.entries[key]
        try:
            arr = self._npz[key]
        except Exception as e:
            raise CheckpointError(
                f"Checkpoint file {self.filename} is corrupt: cannot read {key!r}: {e!r}"
            ) from e
        dtype = jnp.dtype(info["dtype"])
        if arr.dtype != dtype and arr.dtype.itemsize == dtype.itemsize:
            arr = arr.view(dtype)
        intact = list(arr.shape) == info["shape"] and arr.dtype == dtype
        if not intact or zlib.crc32(arr.tobytes()) != info["crc32"]:
            raise CheckpointError(
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


# -- the checkpoint index ("checkpoint" file, TF's text format) -----------------------------------
_INDEX_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*(".*")\s*$')


def _read_index(dirname: str) -> tuple[str | None, list[str]]:
    try:
        with open(os.path.join(dirname, INDEX_FILENAME), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None, []
    latest, all_paths = None, []
    for line in lines:
        m = _INDEX_LINE.match(line)
        if not m:
            continue
        try:
            value = json.loads(m.group(2))
        except json.JSONDecodeError:
            continue
        path = value if os.path.isabs(value) else os.path.join(dirname, value)
        if m.group(1) == "model_checkpoint_path":
            latest = path
        else:
            all_paths.append(path)
    return latest, all_paths


def _write_index(dirname: str, latest: str, all_paths: Sequence[str]) -> None:
    def rel(p: str) -> str:
        return os.path.basename(p) if os.path.dirname(os.path.abspath(p)) == os.path.abspath(dirname) else p

    text = f"model_checkpoint_path: {json.dumps(rel(latest))}\n" + "".join(
        f"all_model_checkpoint_paths: {json.dumps(rel(p))}\n" for p in all_paths
    )
    _atomic_write(os.path.join(dirname, INDEX_FILENAME), lambda f: f.write(text.encode("utf-8")))


def latest_checkpoint(checkpoint_dir: str) -> str | None:
    """The prefix of the newest complete checkpoint in ``checkpoint_dir``, or ``None`` (as TF).

    The index's latest entry is used if its file exists; else the newest kept one that exists.
    """
    latest, all_paths = _read_index(os.fspath(checkpoint_dir))
    for prefix in ([latest] if latest else []) + list(reversed(all_paths)):
        if os.path.isfile(_checkpoint_file(prefix)):
            return prefix
    return None


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


class Saver:
    """Saves and restores Variables (and optionally optimizer state) by name (``tf.train.Saver``).

    Args:
      var_list: the Variables to save and restore, as Variables carrying their resolved names (from
        :func:`jaxgraph.named_variables` / ``trainable_variables`` / ...) or as names. ``None``: every
        Variable of the tree.
      max_to_keep: how many recent checkpoints to keep; older ones are deleted. ``None`` or ``0``
        keeps all. On the first save into a directory, the checkpoints already listed in its index are
        adopted (as TF2's ``CheckpointManager`` does), so a resumed run keeps the limit.

    The optimizer state is saved whole when given (``opt_state=None`` skips it), whatever ``var_list``
    says. Restoring it needs a template state of the same structure, e.g. ``opt.init(tree)``.

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

    def __init__(self, var_list: Iterable[Variable | str] | None = None, max_to_keep: int | None = 5) -> None:
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
    def save(self, tree: PyTree, opt_state: PyTree | None, path: str, global_step: Any = None) -> str:
        """Write a checkpoint; return its prefix (``path``, or ``path-<global_step>`` when given).

        The file is ``<prefix>.npz``; the directory's ``checkpoint`` index is updated to name it the
        latest, and checkpoints beyond ``max_to_keep`` are deleted, all after the new file is durable.
        """
        path = os.fspath(path)
        step = None if global_step is None else int(_to_numpy(global_step))
        prefix = path if step is None else f"{path}-{step}"
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
        dirname = os.path.dirname(os.path.abspath(prefix))
        os.makedirs(dirname, exist_ok=True)
        _atomic_write(_checkpoint_file(prefix), lambda f: _write_npz(f, arrays, meta))
        self._record(dirname, prefix)
        return prefix

    def _record(self, dirname: str, prefix: str) -> None:
        kept = self._kept.get(dirname)
        if kept is None:
            _, existing = _read_index(dirname)
            kept = [p for p in existing if os.path.isfile(_checkpoint_file(p))]
        key = os.path.abspath(prefix)
        kept = [p for p in kept if os.path.abspath(p) != key] + [prefix]
        removed: list[str] = []
        if self._max_to_keep is not None and len(kept) > self._max_to_keep:
            removed, kept = kept[: -self._max_to_keep], kept[-self._max_to_keep :]
        _write_index(dirname, prefix, kept)
        self._kept[dirname] = kept
        for old in removed:
            with contextlib.suppress(OSError):
                os.remove(_checkpoint_file(old))

    # -- restore --------------------------------------------------------------------------------
    def restore(self, tree: PyTree, opt_state: PyTree | None, path: str) -> tuple[PyTree, PyTree | None]:
        """Return ``(tree, opt_state)`` with the checkpoint's values; the inputs are templates.

        ``path`` is a prefix returned by :meth:`save` / :func:`latest_checkpoint`, the ``.npz`` file, or
        a directory (its latest checkpoint). Every selected Variable must be in the checkpoint with the
        template's shape and dtype; arrays land where the template's arrays live. ``opt_state=None``
        skips the optimizer state. Raises :class:`CheckpointError` (a ``ValueError``) naming the file
        and the offending variable.
        """
        filename = self._resolve(os.fspath(path))
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

    @staticmethod
    def _resolve(path: str) -> str:
        if os.path.isdir(path):
            latest = latest_checkpoint(path)
            if latest is None:
                raise CheckpointError(
                    f"No checkpoint found in directory {path} (no valid '{INDEX_FILENAME}' index)"
                )
            return _checkpoint_file(latest)
        if os.path.isfile(path):
            return path
        filename = _checkpoint_file(path)
        if not os.path.exists(filename):
            raise CheckpointError(f"Checkpoint {_prefix_of(path)} does not exist (no file {filename})")
        return filename
