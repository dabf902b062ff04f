"""TF1's ``tf.train``: optimizers, the global step, the Saver."""

from jaxgraph.train.adadelta import AdadeltaOptimizer as AdadeltaOptimizer
from jaxgraph.train.adagrad import AdagradOptimizer as AdagradOptimizer
from jaxgraph.train.adagrad_da import AdagradDAOptimizer as AdagradDAOptimizer
from jaxgraph.train.adam import AdamOptimizer as AdamOptimizer
from jaxgraph.train.adam import LazyAdamOptimizer as LazyAdamOptimizer
from jaxgraph.train.checkpoint_management import check_writable_dir as check_writable_dir
from jaxgraph.train.checkpoint_utils import list_variables as list_variables
from jaxgraph.train.checkpoint_utils import load_checkpoint as load_checkpoint
from jaxgraph.train.ftrl import FtrlOptimizer as FtrlOptimizer
from jaxgraph.train.gradient_descent import GradientDescentOptimizer as GradientDescentOptimizer
from jaxgraph.train.lazy_optax import NotRowSeparable as NotRowSeparable
from jaxgraph.train.lazy_optax import apply_updates as apply_updates
from jaxgraph.train.lazy_optax import dense_global_norm as dense_global_norm
from jaxgraph.train.lazy_optax import lazy_optax as lazy_optax
from jaxgraph.train.learning_rate_decay import LearningRateSchedule as LearningRateSchedule
from jaxgraph.train.learning_rate_decay import cosine_decay as cosine_decay
from jaxgraph.train.learning_rate_decay import cosine_decay_restarts as cosine_decay_restarts
from jaxgraph.train.learning_rate_decay import exponential_decay as exponential_decay
from jaxgraph.train.learning_rate_decay import inverse_time_decay as inverse_time_decay
from jaxgraph.train.learning_rate_decay import linear_cosine_decay as linear_cosine_decay
from jaxgraph.train.learning_rate_decay import natural_exp_decay as natural_exp_decay
from jaxgraph.train.learning_rate_decay import noisy_linear_cosine_decay as noisy_linear_cosine_decay
from jaxgraph.train.learning_rate_decay import piecewise_constant as piecewise_constant
from jaxgraph.train.learning_rate_decay import piecewise_constant_decay as piecewise_constant_decay
from jaxgraph.train.learning_rate_decay import polynomial_decay as polynomial_decay
from jaxgraph.train.momentum import MomentumOptimizer as MomentumOptimizer
from jaxgraph.train.moving_averages import ExponentialMovingAverage as ExponentialMovingAverage
from jaxgraph.train.optax_optimizer import OptaxOptimizer as OptaxOptimizer
from jaxgraph.train.optimizer import Optimizer as Optimizer
from jaxgraph.train.optimizer import OptimizerState as OptimizerState
from jaxgraph.train.proximal_adagrad import ProximalAdagradOptimizer as ProximalAdagradOptimizer
from jaxgraph.train.proximal_gradient_descent import (
    ProximalGradientDescentOptimizer as ProximalGradientDescentOptimizer,
)
from jaxgraph.train.rmsprop import RMSPropOptimizer as RMSPropOptimizer
from jaxgraph.train.saver import CheckpointCorruptError as CheckpointCorruptError
from jaxgraph.train.saver import CheckpointError as CheckpointError
from jaxgraph.train.saver import CheckpointWriteError as CheckpointWriteError
from jaxgraph.train.saver import Saver as Saver
from jaxgraph.train.saver import latest_checkpoint as latest_checkpoint
from jaxgraph.train.training_util import get_or_create_global_step as get_or_create_global_step
from jaxgraph.variable_collections import get_global_step as get_global_step
from jaxgraph.variables import create_global_step as create_global_step

__all__ = [
    "AdadeltaOptimizer", "AdagradDAOptimizer", "AdagradOptimizer", "AdamOptimizer", "CheckpointCorruptError",
    "CheckpointError", "CheckpointWriteError", "FtrlOptimizer", "GradientDescentOptimizer", "LazyAdamOptimizer",
    "MomentumOptimizer", "NotRowSeparable", "OptaxOptimizer", "Optimizer", "OptimizerState",
    "ProximalAdagradOptimizer", "ProximalGradientDescentOptimizer", "RMSPropOptimizer", "Saver", "apply_updates",
    "check_writable_dir", "create_global_step", "dense_global_norm", "get_global_step", "latest_checkpoint",
    "lazy_optax", "list_variables", "load_checkpoint",
    "ExponentialMovingAverage", "get_or_create_global_step",
    "LearningRateSchedule", "cosine_decay", "cosine_decay_restarts", "exponential_decay", "inverse_time_decay",
    "linear_cosine_decay", "natural_exp_decay", "noisy_linear_cosine_decay", "piecewise_constant",
    "piecewise_constant_decay", "polynomial_decay",
]
