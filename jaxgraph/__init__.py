"""jaxgraph: TensorFlow 1's training semantics on JAX."""

from jaxgraph import losses as losses
from jaxgraph import nn as nn
from jaxgraph import sharding as sharding
from jaxgraph import sparse as sparse
from jaxgraph import summary as summary
from jaxgraph import train as train
from jaxgraph.clip_ops import clip_by_average_norm as clip_by_average_norm
from jaxgraph.clip_ops import clip_by_global_norm as clip_by_global_norm
from jaxgraph.clip_ops import clip_by_norm as clip_by_norm
from jaxgraph.clip_ops import clip_by_value as clip_by_value
from jaxgraph.clip_ops import global_norm as global_norm
from jaxgraph.device import device as device
from jaxgraph.device import parse_device_spec as parse_device_spec
from jaxgraph.errors import InvalidArgumentError as InvalidArgumentError
from jaxgraph.errors import JaxgraphWarning as JaxgraphWarning
from jaxgraph.frozen import FrozenArray as FrozenArray
from jaxgraph.gradients import grad as grad
from jaxgraph.gradients import value_and_grad as value_and_grad
from jaxgraph.ids import checked as checked
from jaxgraph.module import Module as Module
from jaxgraph.sparse import IndexedSlices as IndexedSlices
from jaxgraph.sparse_tensor import SparseTensor as SparseTensor
from jaxgraph.sparse_tensor import sparse_reorder as sparse_reorder
from jaxgraph.sparse_tensor import sparse_retain as sparse_retain
from jaxgraph.sparse_tensor import sparse_tensor_to_dense as sparse_tensor_to_dense
from jaxgraph.variable_collections import all_variables as all_variables
from jaxgraph.variable_collections import describe as describe
from jaxgraph.variable_collections import freeze as freeze
from jaxgraph.variable_collections import get_collection as get_collection
from jaxgraph.variable_collections import get_global_step as get_global_step
from jaxgraph.variable_collections import global_variables as global_variables
from jaxgraph.variable_collections import local_variables as local_variables
from jaxgraph.variable_collections import map_variables as map_variables
from jaxgraph.variable_collections import model_variables as model_variables
from jaxgraph.variable_collections import named_variables as named_variables
from jaxgraph.variable_collections import replace_values as replace_values
from jaxgraph.variable_collections import trainable_variables as trainable_variables
from jaxgraph.variable_collections import unfreeze as unfreeze
from jaxgraph.variable_index import VariableIndex as VariableIndex
from jaxgraph.variables import GraphKeys as GraphKeys
from jaxgraph.variables import Variable as Variable
from jaxgraph.variables import create_global_step as create_global_step
from jaxgraph.variables import name_scope as name_scope

__all__ = [
    "all_variables",
    "checked",
    "clip_by_average_norm",
    "clip_by_global_norm",
    "clip_by_norm",
    "clip_by_value",
    "create_global_step",
    "describe",
    "device",
    "freeze",
    "FrozenArray",
    "get_collection",
    "get_global_step",
    "global_norm",
    "global_variables",
    "grad",
    "GraphKeys",
    "IndexedSlices",
    "InvalidArgumentError",
    "JaxgraphWarning",
    "local_variables",
    "losses",
    "map_variables",
    "model_variables",
    "Module",
    "name_scope",
    "named_variables",
    "nn",
    "parse_device_spec",
    "replace_values",
    "sharding",
    "sparse",
    "sparse_reorder",
    "sparse_retain",
    "sparse_tensor_to_dense",
    "SparseTensor",
    "summary",
    "train",
    "trainable_variables",
    "unfreeze",
    "value_and_grad",
    "Variable",
    "VariableIndex",
]

__version__ = "0.1.0"
