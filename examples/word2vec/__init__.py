"""word2vec on jaxgraph: TF's tutorial (``word2vec_basic.py``) and a fast trainer (``train.py``), split by job
into modules (data, batches, sampling, model, optimizer, step, plan, loop, checkpoints, distributed, evaluation,
export; the README's "Layout" table and ``train.py``'s docstring say which file does what)."""
