"""The exception and warning classes that jaxgraph raises across modules (TF's ``tf.errors`` names).

* :class:`InvalidArgumentError`: TF's ``InvalidArgumentError`` for a bad argument found while running,
  e.g. an id outside its table (``indices[i] = v is not in [0, n)``). It is a ``ValueError``, so code
  written for the plain ``ValueError`` jaxgraph raised before keeps working.
* :class:`CheckpointError` (a ``ValueError``): a checkpoint cannot be restored or saved; its
  subclasses :class:`CheckpointCorruptError` (the file is missing, damaged, truncated or not a jaxgraph
  checkpoint) and :class:`CheckpointWriteError` (also an ``OSError``: the directory cannot be written,
  the disk is full, or another writer owns the directory).
* :class:`JaxgraphWarning`: the one way jaxgraph says that it recovered from a fault on its own (a
  damaged checkpoint index, a corrupt newest checkpoint, the stale lock of a dead process), always in
  one line naming what was wrong and what was used instead. Warnings, not logging: they reach the user
  without any configuration, a test can assert them with ``pytest.warns``, and a program can turn them
  into errors (``warnings.simplefilter("error", JaxgraphWarning)``) or print them its own way.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     warnings.warn(JaxgraphWarning("checkpoint index is damaged; using model.ckpt-90"))
>>> caught[0].category.__name__, str(caught[0].message)
('JaxgraphWarning', 'checkpoint index is damaged; using model.ckpt-90')
"""

from __future__ import annotations

__all__ = [
    "CheckpointCorruptError",
    "CheckpointError",
    "CheckpointWriteError",
    "InvalidArgumentError",
    "JaxgraphWarning",
]


class InvalidArgumentError(ValueError):
    """TF's ``tf.errors.InvalidArgumentError``: an argument's value is invalid (an id out of range...)."""


class JaxgraphWarning(UserWarning):
    """jaxgraph recovered from a fault by itself and says so: what was wrong, and what it used instead."""


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, cannot be written, or does not match the tree it is restored into."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file is missing, damaged, truncated, or not a jaxgraph checkpoint at all."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint cannot be written: the directory is unwritable or owned by another writer, or the disk
    is full. Also an ``OSError``, so code that handles I/O errors catches it; ``errno`` is the cause's.

    >>> import errno
    >>> e = CheckpointWriteError(errno.ENOSPC, "Cannot write checkpoint /d/m-3.npz: No space left on device")
    >>> isinstance(e, OSError), e.errno == errno.ENOSPC, str(e)
    (True, True, 'Cannot write checkpoint /d/m-3.npz: No space left on device')
    """

    def __init__(self, errno_: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = errno_
        self.strerror = message
        self._message = message

    def __str__(self) -> str:
        return self._message
