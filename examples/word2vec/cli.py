"""Command-line plumbing shared by the two word2vec programs (``train.py`` and ``word2vec_basic.py``).

Both report a fault the same way: one line ``error: ...`` on stderr and exit status 2, never a traceback;
warnings become one ``warning: ...`` line each, printed when they happen. Signals end a run the same way too:
the first Ctrl-C (SIGINT) or SIGTERM (what schedulers send) asks the run to stop after the current compiled call,
with a checkpoint (:func:`stop_requests`, which the trainer enters once its setup is done and leaves when its
loop ends); outside it, or a second time, it raises :class:`Interrupted`. The exit status is then
``128 + signal``: 130 after Ctrl-C, 143 after SIGTERM. Standard library only.

>>> def bad_flag() -> int:
...     raise UsageError("--steps must be at least 1, got 0")
>>> exit_status(bad_flag)          # prints "error: --steps must be at least 1, got 0" on stderr
2
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import os
import pathlib
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["STOP_SIGNALS", "ArgumentParser", "Interrupted", "StopRequest", "UsageError", "exit_status", "first_line",
           "interrupt_status", "one_line", "out_of_memory", "prepare_output_dir", "raise_on_signals",
           "report_warnings", "signal_name", "stop_requests", "stop_signal", "stop_signals_deferred"]

#: The signals that stop a run with a checkpoint: Ctrl-C, and what schedulers (Slurm, Kubernetes, systemd) send.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(Exception):
    """Bad flags or inputs, or a fault: reported as ``error: ...`` with exit status 2."""


class Interrupted(KeyboardInterrupt):
    """A stop signal that ends the program where it is (SIGTERM outside the training loop, or any second stop
    signal); ``signum`` says which. A ``KeyboardInterrupt``, so code that cleans up after Ctrl-C does after it too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """``"Ctrl-C (SIGINT)"``, ``"SIGTERM"``.

    >>> signal_name(signal.SIGINT), signal_name(signal.SIGTERM)
    ('Ctrl-C (SIGINT)', 'SIGTERM')
    """
    name = signal.Signals(signum).name
    return f"Ctrl-C ({name})" if signum == signal.SIGINT else name


def stop_signal(e: KeyboardInterrupt) -> int:
    """The signal that raised ``e``: an :class:`Interrupted`'s ``signum``, SIGINT for a plain ``KeyboardInterrupt``.

    >>> stop_signal(KeyboardInterrupt()) == signal.SIGINT, stop_signal(Interrupted(signal.SIGTERM)) == signal.SIGTERM
    (True, True)
    """
    return getattr(e, "signum", signal.SIGINT)


def interrupt_status(e: KeyboardInterrupt | int) -> int:
    """The exit status after a stop signal: ``128 + signal`` (130 for Ctrl-C, 143 for SIGTERM), as shells report
    a process killed by it.

    >>> interrupt_status(KeyboardInterrupt()), interrupt_status(Interrupted(signal.SIGTERM))
    (130, 143)
    """
    return 128 + int(e if isinstance(e, int) else stop_signal(e))


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors raise :class:`UsageError` (so that :func:`exit_status` reports
    them like every other bad input) instead of printing the usage and exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(message)


def one_line(e: BaseException) -> str:
    """An exception's whole message on one line (whitespace runs collapsed), or its type's name.

    >>> one_line(ValueError("the corpus\\n  is empty"))
    'the corpus is empty'
    """
    return " ".join(str(e).split()) or type(e).__name__


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (JAX's are often dozens of lines long), or its type's name.

    >>> first_line(RuntimeError("DEADLINE_EXCEEDED: barrier timed out\\nStack trace: ..."))
    'DEADLINE_EXCEEDED: barrier timed out'
    """
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def out_of_memory(e: BaseException) -> bool:
    """Whether ``e`` is XLA's out-of-memory error (``RESOURCE_EXHAUSTED``; JAX raises it as a runtime error, or
    as a ``MemoryError`` for host buffers).

    >>> out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 280.00GiB."))
    True
    """
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in first_line(e)


def exit_status(run: Callable[[], int], errors: tuple[type[BaseException], ...] = (), *,
                memory_hint: str = "") -> int:
    """Run a program's body and return its exit status.

    ``--help`` (argparse's ``SystemExit``) returns its status; a :class:`UsageError`, an ``OSError`` (a file that
    cannot be written: disk full, ``ulimit -f``, permissions) or one of ``errors`` prints ``error: <message on one
    line>`` on stderr and returns 2, and so does running out of memory (XLA's ``RESOURCE_EXHAUSTED``, its first
    line, then ``memory_hint``: what to change). Anything else propagates (a bug, or a stop signal, which each
    program handles itself).
    """
    try:
        return run()
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, OSError, *errors) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:
        if not out_of_memory(e):
            raise
        print(f"error: out of memory: {first_line(e).rstrip('.') if str(e) else 'MemoryError'}"
              f"{'; ' + memory_hint if memory_hint else ''}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def report_warnings(category: type[Warning] = UserWarning) -> Iterator[None]:
    """Within the block, print each warning of ``category`` (jaxgraph's ``JaxgraphWarning`` is one) as one
    ``warning: <message>`` line on stderr when it happens, each distinct message once, instead of Python's
    file-and-line dump; other warnings are left to Python's filters."""
    shown: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("always", category)
        previous = warnings.showwarning

        def show(message, cat, filename, lineno, file=None, line=None):
            if not issubclass(cat, category):
                return previous(message, cat, filename, lineno, file, line)
            text = " ".join(str(message).split())
            if text not in shown:
                shown.add(text)
                print(f"warning: {text}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


def _install(handler: Callable[[int, FrameType | None], None]) -> dict[int, object]:
    """Install ``handler`` for the stop signals; the previous handlers (none outside the main thread)."""
    previous = {}
    for signum in STOP_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, handler)
        except ValueError:  # not the main thread: signals are the main thread's
            break
    return previous


def _restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        if handler is not None:  # None: one not installed from Python (jax.distributed's), which cannot be put back
            signal.signal(signum, handler)  # type: ignore[arg-type]


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` as Ctrl-C raises ``KeyboardInterrupt``, so that a
    program ends with a message and exit status 143 rather than being killed mid-write."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    previous = _install(on_signal)
    try:
        yield
    finally:
        _restore(previous)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Within the block, a stop signal waits for the block's end and is then handled by the handler in place around
    it, as if it had arrived there: for statements that must not be cut in two, such as a value written somewhere
    others read it and the record that it was. Outside the main thread, or while a stop signal's handler is one not
    installed from Python (which could not be put back), the block runs as it is.

    >>> with raise_on_signals():
    ...     try:
    ...         with stop_signals_deferred():
    ...             signal.raise_signal(signal.SIGTERM)
    ...             print("the block ends first")
    ...     except Interrupted as e:
    ...         print("then", signal_name(e.signum))
    the block ends first
    then SIGTERM
    """
    if threading.current_thread() is not threading.main_thread() or any(
            signal.getsignal(s) is None for s in STOP_SIGNALS):
        yield
        return
    held: list[int] = []
    previous = _install(lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        _restore(previous)
        for signum in held:  # each to the handler around the block: a stop request, or Interrupted
            signal.raise_signal(signum)


@dataclasses.dataclass
class StopRequest:
    """Set when a stop signal asked the run to stop after the current call: ``signum`` is that signal (0: none)."""

    signum: int = 0

    @property
    def requested(self) -> bool:
        return bool(self.signum)


@contextlib.contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Within the block, a first Ctrl-C (SIGINT) or SIGTERM asks the run to stop after the current call (which
    then saves a checkpoint); a second one raises :class:`Interrupted` at once. Outside the main thread the
    signals are left alone."""
    stop = StopRequest()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.requested:
            raise Interrupted(signum)
        stop.signum = signum

    previous = _install(on_signal)
    try:
        yield stop
    finally:
        _restore(previous)


def prepare_output_dir(path: str, flag: str = "--output-dir") -> str:
    """Create ``path`` and check that files can be written there, before any work; its absolute path. Raises
    :class:`UsageError` naming ``flag``, the path and the cause: a file, a path under a file, no permission, a
    read-only or full file system.

    >>> import tempfile
    >>> prepare_output_dir(os.path.join(tempfile.mkdtemp(), "run", "out")).endswith("out")
    True
    """
    path = os.path.abspath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a file, not a directory")
    existing = next(p for p in (path, *map(str, pathlib.Path(path).parents)) if os.path.lexists(p))
    if not os.path.isdir(existing):
        raise UsageError(f"{flag} {path} is under a file ({existing}), not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path) as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise UsageError(f"{flag} {path} is not writable: {e.strerror or os.strerror(e.errno or errno.EIO)}") from None
    return path
