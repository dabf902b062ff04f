"""``CheckpointError``: the one error every checkpoint reader and writer raises for bad files or input."""

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint is missing, damaged, or does not match the tree it is restored into."""
