"""TF1's ``tf.train``: optimizers, global step, Saver."""
