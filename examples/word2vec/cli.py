"""Command-line plumbing shared by the two word2vec programs (``train.py`` and ``word2vec_basic.py``).

Both report bad input the same way: one line ``error: ...`` on stderr and exit status 2, never a
traceback; warnings become one ``warning: ...`` line each. Standard library only.

>>> def bad_flag() -> int:
...     raise UsageError("--steps must be at least 1, got 0")
>>> exit_status(bad_flag)          # prints "error: --steps must be at least 1, got 0" on stderr
2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator

__all__ = ["ArgumentParser", "UsageError", "exit_status", "first_line", "one_line", "report_warnings"]


class UsageError(Exception):
    """Bad flags or inputs: reported as ``error: ...`` with exit status 2."""


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


def exit_status(run: Callable[[], int], errors: tuple[type[BaseException], ...] = ()) -> int:
    """Run a program's body and return its exit status.

    ``--help`` (argparse's ``SystemExit``) returns its status; a :class:`UsageError` or one of ``errors`` prints
    ``error: <message on one line>`` on stderr and returns 2. Anything else propagates (a bug, or Ctrl-C, which
    each program handles itself).
    """
    try:
        return run()
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, *errors) as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def report_warnings() -> Iterator[None]:
    """Print each warning raised inside the block as one ``warning: <message>`` line on stderr (instead of
    Python's file-and-line dump), when the block ends."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for w in caught:
                print(f"warning: {w.message}", file=sys.stderr)
