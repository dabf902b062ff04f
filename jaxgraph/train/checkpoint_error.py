"""The errors every checkpoint reader and writer raises for bad files, bad input, or failed writes.

* :class:`CheckpointError` (a ``ValueError``): a checkpoint cannot be restored or saved: a variable
  missing or mismatched, a directory with no checkpoint...
* :class:`CheckpointCorruptError`: the file is missing, damaged, truncated, of an unknown format
  version, or not a checkpoint at all. ``latest_checkpoint`` and ``Saver.restore`` on a directory skip
  such a file for the previous intact one.
* :class:`CheckpointWriteError` (also an ``OSError``): a checkpoint cannot be written: the directory is
  unwritable or owned by another writer, or the disk is full.
"""

__all__ = ["CheckpointCorruptError", "CheckpointError", "CheckpointWriteError"]


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, cannot be written, or does not match the tree it is restored into."""


class CheckpointCorruptError(CheckpointError):
    """A checkpoint file is missing, damaged, truncated, of an unknown format version, or no checkpoint."""


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
