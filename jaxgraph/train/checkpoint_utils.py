"""TF's ``tf.train.load_checkpoint`` and ``tf.train.list_variables``, for TF checkpoints, without TF.

Both take a checkpoint prefix (``ckpt/model.ckpt-200``), its ``.index`` file, or a directory (its
latest checkpoint, from the ``checkpoint`` index file TF's Saver keeps there). The reader is lazy and
memory-maps the data files: ``get_tensor`` reads one tensor's bytes, not the file
(:class:`~jaxgraph.train.tf_checkpoint.reader.CheckpointReader`).

>>> import tempfile, numpy as np
>>> from jaxgraph.train.tf_checkpoint import write_checkpoint
>>> d = tempfile.mkdtemp()
>>> write_checkpoint(f"{d}/model.ckpt", {"w": np.ones((2, 3), np.float32), "global_step": np.int64(5)})
>>> list_variables(f"{d}/model.ckpt")
[('global_step', []), ('w', [2, 3])]
>>> int(load_checkpoint(f"{d}/model.ckpt").get_tensor("global_step"))
5
"""

from __future__ import annotations

import os

from jaxgraph.train.checkpoint_error import CheckpointError
from jaxgraph.train.saver import latest_checkpoint
from jaxgraph.train.tf_checkpoint import CheckpointReader, not_found_message, saved_model_variables

__all__ = ["load_checkpoint", "list_variables"]


def load_checkpoint(ckpt_dir_or_file: str) -> CheckpointReader:
    """A :class:`CheckpointReader` for the TF checkpoint at ``ckpt_dir_or_file`` (TF's function)."""
    path = os.fspath(ckpt_dir_or_file)
    if os.path.isdir(path):
        if saved_model_variables(path) is not None:
            raise CheckpointError(not_found_message(path))
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"Couldn't find 'checkpoint' file or checkpoints in given directory {path}")
        path = latest
    if path.endswith(".npz") or os.path.isfile(path + ".npz"):
        raise CheckpointError(f"{path} is a jaxgraph checkpoint (.npz), not TF's; read it with numpy.load")
    return CheckpointReader(path)


def list_variables(ckpt_dir_or_file: str) -> list[tuple[str, list[int]]]:
    """``[(name, shape), ...]`` of every tensor in the checkpoint, sorted by name (TF's function)."""
    with load_checkpoint(ckpt_dir_or_file) as reader:
        return sorted(reader.get_variable_to_shape_map().items())
