"""The checkpoint directory: its ``checkpoint`` index, its writer's lock, atomic writes, writability.

What :class:`~jaxgraph.train.Saver` relies on, independent of the checkpoint file format:

* **The index** (``checkpoint``, TF's text ``CheckpointState``): :func:`read_checkpoint_state` says
  what it lists and, when it cannot be read, why (``damage``); :func:`write_checkpoint_state` replaces
  it atomically.
* **Atomic writes** (:func:`atomic_write`): a temporary file in the same directory, flushed,
  ``fsync``-ed, renamed into place, then the directory ``fsync``-ed. A crash leaves the old file or the
  new one, never a mix; on any error the temporary file is removed.
* **One writer per directory** (:class:`DirectoryLock`, held through :func:`hold_directory`): the lock
  file ``checkpoint.lock`` records the writing process (pid, host, boot id, start time) and is locked
  with ``flock`` for as long as the process writes there. A second process gets a
  :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` naming the owner. The lock of a process that died
  (killed, crashed) is taken over with a :class:`~jaxgraph.errors.JaxgraphWarning` saying so: on one
  machine ``flock`` tells for sure (the kernel releases it when a process dies), and a lock written
  before the machine rebooted is stale too. A lock written by a process on another machine is not
  taken over, since its owner may be alive: the error says to delete the lock file if it is gone.
  Savers within one process share the directory (one lock, one index).
* **Writability** (:func:`check_writable_dir`): create the directory, write, ``fsync`` and remove a
  probe file, optionally check the free space, before any work starts.

>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> write_checkpoint_state(d, f"{d}/model-2", [f"{d}/model-1", f"{d}/model-2"])
>>> with open(os.path.join(d, "checkpoint")) as f:
...     print(f.read(), end="")
model_checkpoint_path: "model-2"
all_model_checkpoint_paths: "model-1"
all_model_checkpoint_paths: "model-2"
>>> state = read_checkpoint_state(d)
>>> os.path.basename(state.model_checkpoint_path), state.damage
('model-2', None)
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import shutil
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import IO, Any, NamedTuple

from jaxgraph.errors import JaxgraphWarning
from jaxgraph.train.checkpoint_error import CheckpointWriteError

try:  # POSIX; elsewhere the lock falls back to the recorded pid
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "INDEX_FILENAME",
    "LOCK_FILENAME",
    "CheckpointState",
    "DirectoryLock",
    "atomic_write",
    "check_writable_dir",
    "directory_mutex",
    "hold_directory",
    "os_cause",
    "read_checkpoint_state",
    "release_directory",
    "write_checkpoint_state",
]

INDEX_FILENAME = "checkpoint"
LOCK_FILENAME = "checkpoint.lock"


def os_cause(error: OSError) -> str:
    """An ``OSError``'s cause in words (``No space left on device``), without the errno noise."""
    return error.strerror or str(error) or type(error).__name__


# -- atomic writes ---------------------------------------------------------------------------------
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


def atomic_write(filename: str, write: Callable[[IO[bytes]], object]) -> None:
    """Write ``filename`` through ``write(file)`` atomically; on any error nothing new is left behind."""
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


# -- the index -------------------------------------------------------------------------------------
class CheckpointState(NamedTuple):
    """What a directory's ``checkpoint`` index says (TF's ``CheckpointState``), with paths made absolute.

    ``exists`` is False when there is no index; ``damage`` says why it could not be read fully (then
    the paths hold whatever was readable), ``None`` when it was fine.
    """

    model_checkpoint_path: str | None
    all_model_checkpoint_paths: list[str]
    exists: bool
    damage: str | None


_INDEX_LINE = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*(".*")\s*$')
# Other CheckpointState fields TF may write (timestamps); not used, not damage.
_OTHER_FIELD = re.compile(r"^\s*(all_model_checkpoint_timestamps|last_preserved_timestamp)\s*:")


def read_checkpoint_state(checkpoint_dir: str) -> CheckpointState:
    """Read ``checkpoint_dir``'s index; never raises for a missing or damaged one (see ``damage``)."""
    dirname = os.fspath(checkpoint_dir)
    try:
        with open(os.path.join(dirname, INDEX_FILENAME), "rb") as f:
            raw = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return CheckpointState(None, [], False, None)
    except OSError as e:
        return CheckpointState(None, [], True, f"unreadable: {os_cause(e)}")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        return CheckpointState(None, [], True, "not text")
    latest, all_paths, damage = None, [], None
    for number, line in enumerate(lines, 1):
        if not line.strip() or _OTHER_FIELD.match(line):
            continue
        m = _INDEX_LINE.match(line)
        value = None
        if m:
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(m.group(2))
        if m is None or not isinstance(value, str) or not value:
            damage = damage or f"line {number} is not a CheckpointState entry: {line[:60]!r}"
            continue
        path = value if os.path.isabs(value) else os.path.join(dirname, value)
        if m.group(1) == "model_checkpoint_path":
            latest = path
        else:
            all_paths.append(path)
    if latest is None and damage is None:
        damage = "it names no model_checkpoint_path" if lines else "it is empty"
    return CheckpointState(latest, all_paths, True, damage)


def write_checkpoint_state(checkpoint_dir: str, latest: str, all_paths: Sequence[str]) -> None:
    """Replace the index atomically; paths inside the directory are written relative, as TF does."""
    dirname = os.path.abspath(checkpoint_dir)

    def rel(p: str) -> str:
        return os.path.basename(p) if os.path.dirname(os.path.abspath(p)) == dirname else p

    text = f"model_checkpoint_path: {json.dumps(rel(latest))}\n" + "".join(
        f"all_model_checkpoint_paths: {json.dumps(rel(p))}\n" for p in all_paths
    )
    atomic_write(os.path.join(dirname, INDEX_FILENAME), lambda f: f.write(text.encode("utf-8")))


# -- writability -----------------------------------------------------------------------------------
def _blocking_file(path: str) -> str | None:
    """The nearest ancestor of ``path`` (itself included) that exists and is not a directory."""
    current = os.path.abspath(path)
    while True:
        if os.path.lexists(current):
            return None if os.path.isdir(current) else current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _make_dirs(directory: str) -> str:
    directory = os.path.abspath(os.fspath(directory))
    blocker = _blocking_file(directory)
    if blocker is not None:
        what = "is a file" if blocker == directory else f"is under a file ({blocker})"
        raise CheckpointWriteError(
            errno.ENOTDIR, f"Cannot write checkpoints to {directory}: it {what}, not a directory"
        )
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        raise CheckpointWriteError(
            e.errno, f"Cannot create checkpoint directory {directory}: {os_cause(e)}"
        ) from e
    return directory


def check_writable_dir(directory: str, needed_bytes: int = 0) -> str:
    """Make sure files can be written to ``directory`` now, before any work; return its absolute path.

    Creates the directory (and its parents) if needed, then writes, ``fsync``-s and removes a small
    probe file, and, if ``needed_bytes`` is given, checks that the file system has that much free
    space. Raises :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` (an ``OSError``) naming the directory
    and the cause: a path that is or runs through a file, permission denied, a read-only or full file
    system.

    >>> import tempfile
    >>> d = check_writable_dir(tempfile.mkdtemp() + "/run/checkpoints")
    >>> import os; os.listdir(d)
    []
    """
    directory = _make_dirs(directory)
    probe = os.path.join(directory, f".jaxgraph-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(probe, "xb") as f:
            f.write(b"jaxgraph write probe\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CheckpointWriteError(e.errno, f"Cannot write to {directory}: {os_cause(e)}") from e
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)
    if needed_bytes:
        free = shutil.disk_usage(directory).free
        if free < needed_bytes:
            raise CheckpointWriteError(
                errno.ENOSPC,
                f"Not enough space in {directory}: {needed_bytes / 2**20:.1f} MiB needed, "
                f"{free / 2**20:.1f} MiB free",
            )
    return directory


# -- one writer per directory ----------------------------------------------------------------------
def _boot_id() -> str | None:
    # Identical for every process (and container) on one running kernel; changes at reboot.
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    except OSError:  # pragma: no cover - platforms without signal 0
        return True
    return True


_HOST = socket.gethostname()
_BOOT_ID = _boot_id()


def _describe_owner(info: dict[str, Any]) -> str:
    since = f", since {info['since']}" if info.get("since") else ""
    return f"pid {info.get('pid')} on host {info.get('host')}{since}"


class DirectoryLock:
    """The lock file ``<directory>/checkpoint.lock``: exclusive ownership of a checkpoint directory.

    The file holds JSON with the owner's pid, host, boot id and start time, and is ``flock``-ed while
    held, so the kernel releases it when the owner dies. :meth:`acquire` raises
    :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` naming a live owner, and takes over (with a
    :class:`~jaxgraph.errors.JaxgraphWarning`) the lock of one that is gone. :meth:`release` empties
    the file (an empty lock file is free) and unlocks it. Use :func:`hold_directory` rather than this
    class: it shares one lock among the Savers of a process.
    """

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, LOCK_FILENAME)
        self._fd: int | None = None
        self._pid = os.getpid()

    @property
    def held(self) -> bool:
        """Held by this process (a child made by ``fork`` inherits the object, not the ownership)."""
        return self._fd is not None and self._pid == os.getpid()

    def acquire(self) -> None:
        if self.held:
            return
        self._pid = os.getpid()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointWriteError(e.errno, f"Cannot create the lock file {self.path}: {os_cause(e)}") from e
        try:
            locked = self._flock(fd)
            info = self._read(fd)
            if locked is False:
                raise CheckpointWriteError(
                    errno.EBUSY,
                    f"Checkpoint directory {self.directory} is in use by another writer "
                    f"({_describe_owner(info) if info else 'owner unknown'}); one directory takes one "
                    f"writer at a time: stop the other one, or save somewhere else",
                )
            if info:
                self._take_over(info, flock_works=locked is True)
            record = {
                "pid": os.getpid(),
                "host": _HOST,
                "boot_id": _BOOT_ID,
                "since": datetime.datetime.now().isoformat(timespec="seconds"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if self._pid == os.getpid():  # a forked child must not clear its parent's record
                os.ftruncate(fd, 0)  # empty: free, and no stale owner for the next writer to report
        except OSError:
            pass
        finally:
            os.close(fd)  # also drops the flock (once no other process shares the descriptor)

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: another open lock holds it; None: this file system has no flock."""
        if fcntl is None:  # pragma: no cover - Windows
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            return None  # ENOLCK, EOPNOTSUPP, EINVAL: no locking here; the recorded pid decides
        return True

    @staticmethod
    def _read(fd: int) -> dict[str, Any] | None:
        raw = os.pread(fd, 4096, 0)
        if not raw.strip():
            return None
        try:
            info = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {"pid": "?", "host": "?", "unreadable": True}
        return info if isinstance(info, dict) else {"pid": "?", "host": "?", "unreadable": True}

    def _take_over(self, info: dict[str, Any], flock_works: bool) -> None:
        """The lock file names an owner although we could lock it: decide whether that owner is gone."""
        same_kernel = _BOOT_ID is not None and info.get("boot_id") == _BOOT_ID
        same_host = info.get("host") == _HOST
        rebooted = same_host and _BOOT_ID is not None and info.get("boot_id") not in (None, _BOOT_ID)
        pid = info.get("pid")
        if flock_works and (same_kernel or same_host):
            # The kernel drops a dead process's flock, and any live process on this kernel would hold it.
            why = "which ended without releasing it"
        elif rebooted:
            why = "recorded before this machine restarted"
        elif not flock_works and (same_kernel or same_host) and isinstance(pid, int) and pid != os.getpid():
            if _pid_alive(pid):
                raise CheckpointWriteError(
                    errno.EBUSY,
                    f"Checkpoint directory {self.directory} is in use by another writer ({_describe_owner(info)})",
                )
            why = "which is no longer running"
        elif not flock_works and (same_kernel or same_host):
            why = "which no longer holds it"
        else:
            raise CheckpointWriteError(
                errno.EBUSY,
                f"Checkpoint directory {self.directory} is locked by {_describe_owner(info)}, another machine "
                f"(or an unreadable lock), which may still be writing; if that writer is gone, delete {self.path}",
            )
        warnings.warn(
            JaxgraphWarning(
                f"Took over checkpoint directory {self.directory} from {_describe_owner(info)}, {why}"
            ),
            stacklevel=5,
        )


class _Held(NamedTuple):
    lock: DirectoryLock
    holders: set[int]
    mutex: threading.RLock


_held: dict[str, _Held] = {}
_registry = threading.Lock()


def hold_directory(directory: str, holder: int) -> str:
    """Own ``directory`` for ``holder`` (e.g. a Saver's id): create it, lock it for this process if no
    other holder here has yet, and return its absolute path. Raises
    :class:`~jaxgraph.train.checkpoint_error.CheckpointWriteError` when it cannot be created or another
    process owns it."""
    directory = _make_dirs(directory)
    with _registry:
        entry = _held.get(directory)
        if entry is not None and not entry.lock.held:  # inherited through fork: not ours
            del _held[directory]
            entry = None
        if entry is None:
            lock = DirectoryLock(directory)
            lock.acquire()
            entry = _Held(lock, set(), threading.RLock())
            _held[directory] = entry
        entry.holders.add(holder)
    return directory


def release_directory(directory: str, holder: int) -> None:
    """Drop ``holder``'s claim; the last holder in this process releases the lock."""
    with _registry:
        entry = _held.get(directory)
        if entry is None:
            return
        entry.holders.discard(holder)
        if not entry.holders:
            del _held[directory]
            entry.lock.release()


def directory_mutex(directory: str) -> threading.RLock:
    """The in-process mutex of a held directory: one save at a time updates its index."""
    with _registry:
        return _held[directory].mutex
