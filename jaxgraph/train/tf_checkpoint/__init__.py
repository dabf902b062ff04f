"""TF checkpoints in and out without TensorFlow: read, write, and map TF1 names.

Modules, each with one job (checksums come from :mod:`jaxgraph.crc32c`): :mod:`.wire` (protobuf encoding),
:mod:`.snappy` (block decompression), :mod:`.table` (the ``.index`` file's table format),
:mod:`.protos` (the index's messages, TF dtypes), :mod:`.slices` (partitioned tensors),
:mod:`.reader` (``CheckpointReader``), :mod:`.writer` (``write_checkpoint``) and :mod:`.names`
(TF1's names for a parameter tree and its optimizer state). Users reach them through
``jaxgraph.train``: ``load_checkpoint``, ``list_variables`` and ``Saver``.
"""

from jaxgraph.train.tf_checkpoint.names import restore_values as restore_values
from jaxgraph.train.tf_checkpoint.names import tf_tensors as tf_tensors
from jaxgraph.train.tf_checkpoint.reader import CheckpointReader as CheckpointReader
from jaxgraph.train.tf_checkpoint.reader import checkpoint_files as checkpoint_files
from jaxgraph.train.tf_checkpoint.reader import is_tf_checkpoint as is_tf_checkpoint
from jaxgraph.train.tf_checkpoint.reader import not_found_message as not_found_message
from jaxgraph.train.tf_checkpoint.reader import saved_model_variables as saved_model_variables
from jaxgraph.train.tf_checkpoint.reader import tf_prefix as tf_prefix
from jaxgraph.train.tf_checkpoint.writer import write_checkpoint as write_checkpoint

__all__ = [
    "CheckpointReader", "checkpoint_files", "is_tf_checkpoint", "not_found_message", "restore_values",
    "saved_model_variables", "tf_prefix", "tf_tensors", "write_checkpoint",
]
