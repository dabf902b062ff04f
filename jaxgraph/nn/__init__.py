"""Neural-network ops with TF1 semantics: embedding lookups, candidate samplers, sampled losses."""

from jaxgraph.clip_ops import l2_loss as l2_loss
from jaxgraph.nn.candidate_sampling import compute_accidental_hits as compute_accidental_hits
from jaxgraph.nn.candidate_sampling import fixed_unigram_candidate_sampler as fixed_unigram_candidate_sampler
from jaxgraph.nn.candidate_sampling import log_uniform_candidate_sampler as log_uniform_candidate_sampler
from jaxgraph.nn.candidate_sampling import uniform_candidate_sampler as uniform_candidate_sampler
from jaxgraph.nn.embedding import embedding_lookup as embedding_lookup
from jaxgraph.nn.embedding import embedding_lookup_v2 as embedding_lookup_v2
from jaxgraph.nn.embedding_sparse import embedding_lookup_sparse as embedding_lookup_sparse
from jaxgraph.nn.embedding_sparse import safe_embedding_lookup_sparse as safe_embedding_lookup_sparse
from jaxgraph.nn.sampled_losses import nce_loss as nce_loss
from jaxgraph.nn.sampled_losses import sampled_softmax_loss as sampled_softmax_loss

__all__ = [
    "compute_accidental_hits",
    "embedding_lookup",
    "embedding_lookup_sparse",
    "embedding_lookup_v2",
    "fixed_unigram_candidate_sampler",
    "l2_loss",
    "log_uniform_candidate_sampler",
    "nce_loss",
    "safe_embedding_lookup_sparse",
    "sampled_softmax_loss",
    "uniform_candidate_sampler",
]
