"""The exception and warning classes that jaxgraph raises across modules (TF's ``tf.errors`` names).

* :class:`InvalidArgumentError`: TF's ``InvalidArgumentError`` for a bad argument found while running,
  e.g. an id outside its table (``indices[i] = v is not in [0, n)``). It is a ``ValueError``, so code
  written for the plain ``ValueError`` jaxgraph raised before keeps working.
* The checkpoint errors live with the checkpoints, in :mod:`jaxgraph.train.checkpoint_error`
  (``CheckpointError`` and its subclasses ``CheckpointCorruptError``, ``CheckpointWriteError``).
* :class:`JaxgraphWarning`: the one way jaxgraph says that it recovered from a fault on its own (a
  damaged checkpoint index, a corrupt newest checkpoint, the stale lock of a dead process), always in
  one line naming what was wrong and what was used instead. Warnings, not logging: they reach the user
  without any configuration, a test can assert them with ``pytest.warns``, and a program can turn them
  into errors (``warnings.simplefilter("error", JaxgraphWarning)``) or print them its own way.

>>> import warnings
>>> with warnings.catch_warnings(record=True) as caught:
...     warnings.simplefilter("always")
...     warnings.warn(JaxgraphWarning("checkpoint index is damaged; using model.ckpt-90"))
>>> caught[0].category.__name__, str(caught[0].message)
('JaxgraphWarning', 'checkpoint index is damaged; using model.ckpt-90')
"""

from __future__ import annotations

__all__ = ["InvalidArgumentError", "JaxgraphWarning"]


class InvalidArgumentError(ValueError):
    """TF's ``tf.errors.InvalidArgumentError``: an argument's value is invalid (an id out of range...)."""


class JaxgraphWarning(UserWarning):
    """jaxgraph recovered from a fault by itself and says so: what was wrong, and what it used instead."""
