"""Neural-network ops with TF1 semantics: embedding lookups, candidate samplers, sampled losses."""

from jaxgraph.nn.candidate_sampling import compute_accidental_hits as compute_accidental_hits
from jaxgraph.nn.candidate_sampling import fixed_unigram_candidate_sampler as fixed_unigram_candidate_sampler
from jaxgraph.nn.candidate_sampling import log_uniform_candidate_sampler as log_uniform_candidate_sampler
from jaxgraph.nn.candidate_sampling import uniform_candidate_sampler as uniform_candidate_sampler
from jaxgraph.nn.embedding import embedding_lookup as embedding_lookup
from jaxgraph.nn.embedding import embedding_lookup_v2 as embedding_lookup_v2
from jaxgraph.nn.sampled_losses import nce_loss as nce_loss
from jaxgraph.nn.sampled_losses import sampled_softmax_loss as sampled_softmax_loss

__all__ = [
    "compute_accidental_hits",
    "embedding_lookup",
    "embedding_lookup_v2",
    "fixed_unigram_candidate_sampler",
    "log_uniform_candidate_sampler",
    "nce_loss",
    "sampled_softmax_loss",
    "uniform_candidate_sampler",
]
