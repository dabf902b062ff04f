"""TF1's ``tf.train``: optimizers, the global step, the Saver."""

from jaxgraph.train.adagrad import AdagradOptimizer as AdagradOptimizer
from jaxgraph.train.adam import AdamOptimizer as AdamOptimizer
from jaxgraph.train.adam import LazyAdamOptimizer as LazyAdamOptimizer
from jaxgraph.train.gradient_descent import GradientDescentOptimizer as GradientDescentOptimizer
from jaxgraph.train.momentum import MomentumOptimizer as MomentumOptimizer
from jaxgraph.train.optax_optimizer import OptaxOptimizer as OptaxOptimizer
from jaxgraph.train.optimizer import Optimizer as Optimizer
from jaxgraph.train.optimizer import OptimizerState as OptimizerState
from jaxgraph.train.rmsprop import RMSPropOptimizer as RMSPropOptimizer
from jaxgraph.train.saver import CheckpointError as CheckpointError
from jaxgraph.train.saver import Saver as Saver
from jaxgraph.train.saver import latest_checkpoint as latest_checkpoint
from jaxgraph.variable_collections import get_global_step as get_global_step
from jaxgraph.variables import create_global_step as create_global_step

__all__ = [
    "AdagradOptimizer",
    "AdamOptimizer",
    "CheckpointError",
    "create_global_step",
    "get_global_step",
    "GradientDescentOptimizer",
    "latest_checkpoint",
    "LazyAdamOptimizer",
    "MomentumOptimizer",
    "OptaxOptimizer",
    "Optimizer",
    "OptimizerState",
    "RMSPropOptimizer",
    "Saver",
]
