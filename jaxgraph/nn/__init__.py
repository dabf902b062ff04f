"""Neural-network ops with TF1 semantics: embedding lookups, candidate samplers, sampled losses."""
