"""TF1's ``tf.train``: optimizers, the global step, the Saver."""

from jaxgraph.train.adagrad import AdagradOptimizer as AdagradOptimizer
from jaxgraph.train.adam import AdamOptimizer as AdamOptimizer
from jaxgraph.train.adam import LazyAdamOptimizer as LazyAdamOptimizer
from jaxgraph.train.checkpoint_management import check_writable_dir as check_writable_dir
from jaxgraph.train.checkpoint_utils import list_variables as list_variables
from jaxgraph.train.checkpoint_utils import load_checkpoint as load_checkpoint
from jaxgraph.train.gradient_descent import GradientDescentOptimizer as GradientDescentOptimizer
from jaxgraph.train.lazy_optax import NotRowSeparable as NotRowSeparable
from jaxgraph.train.lazy_optax import apply_updates as apply_updates
from jaxgraph.train.lazy_optax import global_norm as global_norm
from jaxgraph.train.lazy_optax import lazy_optax as lazy_optax
from jaxgraph.train.momentum import MomentumOptimizer as MomentumOptimizer
from jaxgraph.train.optax_optimizer import OptaxOptimizer as OptaxOptimizer
from jaxgraph.train.optimizer import Optimizer as Optimizer
from jaxgraph.train.optimizer import OptimizerState as OptimizerState
from jaxgraph.train.rmsprop import RMSPropOptimizer as RMSPropOptimizer
from jaxgraph.train.saver import CheckpointCorruptError as CheckpointCorruptError
from jaxgraph.train.saver import CheckpointError as CheckpointError
from jaxgraph.train.saver import CheckpointWriteError as CheckpointWriteError
from jaxgraph.train.saver import Saver as Saver
from jaxgraph.train.saver import latest_checkpoint as latest_checkpoint
from jaxgraph.variable_collections import get_global_step as get_global_step
from jaxgraph.variables import create_global_step as create_global_step

__all__ = [
    "AdagradOptimizer", "AdamOptimizer", "CheckpointCorruptError", "CheckpointError", "CheckpointWriteError",
    "GradientDescentOptimizer", "LazyAdamOptimizer", "MomentumOptimizer", "NotRowSeparable", "OptaxOptimizer",
    "Optimizer", "OptimizerState", "RMSPropOptimizer", "Saver", "apply_updates", "check_writable_dir",
    "create_global_step", "get_global_step", "global_norm", "latest_checkpoint", "lazy_optax", "list_variables",
    "load_checkpoint",
]
