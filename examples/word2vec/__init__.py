"""word2vec on jaxgraph: the TF tutorial and a fast trainer, with data, evaluation and export."""
