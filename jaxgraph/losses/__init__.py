"""TF1's ``tf.losses``: weighted, reduced losses and the loss collections (see :mod:`.losses_impl`, :mod:`.util`)."""

from jaxgraph.losses.losses_impl import Reduction as Reduction
from jaxgraph.losses.losses_impl import absolute_difference as absolute_difference
from jaxgraph.losses.losses_impl import compute_weighted_loss as compute_weighted_loss
from jaxgraph.losses.losses_impl import cosine_distance as cosine_distance
from jaxgraph.losses.losses_impl import hinge_loss as hinge_loss
from jaxgraph.losses.losses_impl import huber_loss as huber_loss
from jaxgraph.losses.losses_impl import log_loss as log_loss
from jaxgraph.losses.losses_impl import mean_squared_error as mean_squared_error
from jaxgraph.losses.losses_impl import sigmoid_cross_entropy as sigmoid_cross_entropy
from jaxgraph.losses.losses_impl import softmax_cross_entropy as softmax_cross_entropy
from jaxgraph.losses.losses_impl import sparse_softmax_cross_entropy as sparse_softmax_cross_entropy
from jaxgraph.losses.util import add_loss as add_loss
from jaxgraph.losses.util import get_losses as get_losses
from jaxgraph.losses.util import get_regularization_loss as get_regularization_loss
from jaxgraph.losses.util import get_regularization_losses as get_regularization_losses
from jaxgraph.losses.util import get_total_loss as get_total_loss
from jaxgraph.losses.util import record_losses as record_losses

__all__ = [
    "Reduction",
    "absolute_difference",
    "add_loss",
    "compute_weighted_loss",
    "cosine_distance",
    "get_losses",
    "get_regularization_loss",
    "get_regularization_losses",
    "get_total_loss",
    "hinge_loss",
    "huber_loss",
    "log_loss",
    "mean_squared_error",
    "record_losses",
    "sigmoid_cross_entropy",
    "softmax_cross_entropy",
    "sparse_softmax_cross_entropy",
]
