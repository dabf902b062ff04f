"""Row ids are never silently wrong: TF's range check, one rule under ``jit``, and a checked mode.

Every jaxgraph API that reads or writes rows by id passes the ids through :func:`check_ids`:
``embedding_lookup`` and ``gather_rows``, the sampled losses' ``labels``, the ``IndexedSlices`` given to
``apply_gradients`` (and ``IndexedSlices.to_dense`` / ``coalesce``), and the candidate samplers'
``true_classes``.

* **Concrete ids** (eager code, or constants inside a jitted function) are checked on the host: an id
  outside ``[0, n)`` raises :class:`~jaxgraph.errors.InvalidArgumentError` with TF's message
  ``indices[i] = v is not in [0, n)`` (``i`` indexes the flattened ids).
* **Traced ids** (arguments of a jitted function) cannot be checked without a device-to-host round
  trip every step, so one rule applies: an id outside ``[0, n)``, negative ones included (they never
  wrap around), becomes the padding index ``n``. It reads a row of **zeros**, and the sparse gradient
  it produces is **dropped** by every update. That is TF's own behaviour on GPU (its gather kernel
  writes zeros for out-of-range indices, its scatter kernels skip them). Zeros rather than NaN: a NaN
  row would flow into the loss and, through the dense gradients, into every other row of the model,
  while a zero row with a dropped update leaves the model as it was. No other row is ever read or
  written.
* **Checked mode**: :func:`checked` compiles a function as ``jax.jit`` does, with the id checks on; a
  call with an out-of-range id raises TF's message. The checks are ``checkify.debug_check`` s, which
  cost nothing unless the function is transformed by ``jax.experimental.checkify`` (so code that
  already uses ``checkify.checkify(f, errors=checkify.user_checks)`` sees them too).

>>> import jax, jax.numpy as jnp
>>> check_ids([0, 2], 3).tolist()
[0, 2]
>>> check_ids([0, 3], 3)
Traceback (most recent call last):
...
jaxgraph.errors.InvalidArgumentError: indices[1] = 3 is not in [0, 3)
>>> jax.jit(lambda ids: check_ids(ids, 3))(jnp.array([0, 3, -1])).tolist()  # the jit rule
[0, 3, 3]
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxgraph.errors import InvalidArgumentError
from jaxgraph.variables import Variable

__all__ = ["TF_INDICES_MESSAGE", "as_ids", "check_ids", "checked"]

# TF's gather/scatter kernels' text, with format fields for the position, the value and the bound.
TF_INDICES_MESSAGE = "indices[{i}] = {v} is not in [0, {n})"

InRange = Callable[[Any, Any], Any]


def as_ids(ids: Any, what: str = "ids") -> tuple[jax.Array, np.ndarray | None]:
    """``ids`` as an integer JAX array, and a NumPy copy of them when they are concrete (else ``None``).

    A Python list is accepted, the empty one included (an empty id array, as TF). Integer types
    narrower than 32 bits are widened to int32 so that the padding index always fits. The host copy is
    taken before JAX narrows int64 to int32 (x64 off), so a huge id is reported as given.

    >>> as_ids([])[0].shape, as_ids([])[0].dtype
    ((0,), dtype('int32'))
    """
    if isinstance(ids, Variable):
        raise TypeError(f"{what} must be an integer array, not a Variable; pass `.value`")
    if isinstance(ids, jax.core.Tracer):
        concrete = None
        dtype = ids.dtype
    else:
        concrete = np.asarray(ids)
        if concrete.dtype == object:
            raise TypeError(f"{what} must be an integer array, got {ids!r}")
        if concrete.size == 0 and not isinstance(ids, (np.ndarray, jax.Array)):
            concrete = concrete.astype(np.int32)  # `[]` is float64 to NumPy; to TF it is an empty id list
        dtype = concrete.dtype
    if not np.issubdtype(dtype, np.integer):
        raise TypeError(f"{what} must be integers (int32 or int64), got dtype {dtype}")
    array = jnp.asarray(ids if concrete is None else concrete)
    if jnp.iinfo(array.dtype).bits < 32:
        array = array.astype(jnp.int32)
    return array, concrete


def _first_bad(flat: np.ndarray, ok: np.ndarray, num_rows: int, message: str) -> None:
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgumentError(message.format(i=i, v=int(flat[i]), n=num_rows))


def check_ids(
    ids: Any,
    num_rows: int,
    *,
    allow_padding: bool = False,
    in_range: InRange | None = None,
    message: str = TF_INDICES_MESSAGE,
    what: str = "ids",
) -> jax.Array:
    """Check ``ids`` against a table of ``num_rows`` rows; return them with the jit rule applied.

    Concrete ids outside the table raise :class:`~jaxgraph.errors.InvalidArgumentError` with
    ``message`` (TF's ``indices[i] = v is not in [0, n)`` by default; fields ``{i}``, ``{v}``, ``{n}``).
    Traced ids are returned with every bad id replaced by the padding index ``num_rows``, and a
    ``checkify.debug_check`` with the same message is emitted for :func:`checked`.

    Args:
      ids: integer ids of any shape (array, tracer or Python list).
      num_rows: the table's row count ``n``; also the padding index.
      allow_padding: the id ``num_rows`` itself is accepted too (for ``IndexedSlices``, whose padding
        slots hold it, and for lookups that use it to mean "no row").
      in_range: ``in_range(flat_ids, xp) -> bool mask``, a stricter validity test than
        ``0 <= id < num_rows`` (``xp`` is ``numpy`` for concrete ids, ``jax.numpy`` for traced ones);
        a sharded lookup uses it for the shards' own row counts.
      message: the error text, a format string.
      what: the argument's name, for type errors.
    """
    array, concrete = as_ids(ids, what)
    num_rows = int(num_rows)

    def valid(flat: Any, xp: Any) -> Any:
        ok = (flat >= 0) & (flat < num_rows)
        if in_range is not None:
            ok = ok & in_range(flat, xp)
        return ok

    if concrete is not None:
        # Wide types for the host arithmetic, so no comparison or partition formula can overflow.
        wide = np.int64 if np.issubdtype(concrete.dtype, np.signedinteger) else np.uint64
        host = concrete.reshape(-1).astype(wide)
        host_ok = valid(host, np)
        if allow_padding:
            host_ok = host_ok | (host == num_rows)
        _first_bad(host, host_ok, num_rows, message)
        return array
    if array.size == 0:
        return array
    flat = array.reshape(-1)
    ok = valid(flat, jnp)
    acceptable = ok | (flat == num_rows) if allow_padding else ok
    first = jnp.argmin(acceptable)
    # The bound is static: written into the message now, so only the position and value are traced.
    text = message.replace("{n}", str(num_rows))
    checkify.debug_check(jnp.all(acceptable), text, i=first, v=flat[first])
    return jnp.where(ok, flat, jnp.asarray(num_rows, flat.dtype)).reshape(array.shape)


_CHECKIFY_SUFFIX = re.compile(r"\s*\(`?check`? failed[^)]*\)\s*$")


def checked(fun: Callable[..., Any], **jit_kwargs: Any) -> Callable[..., Any]:
    """``jax.jit(fun, **jit_kwargs)`` with jaxgraph's id checks on: a bad id raises TF's message.

    Every id that :func:`check_ids` sees while ``fun`` runs (lookups, labels, ``IndexedSlices``
    indices, sampler classes) is checked on the device; after the call the first failure, in program
    order, raises :class:`~jaxgraph.errors.InvalidArgumentError` (``indices[i] = v is not in [0, n)``).
    The cost is a few comparisons per id and one small device-to-host read per call: a mode for
    debugging and tests, not the training loop (where the jit rule applies: zeros, dropped updates).
    Buffers donated with ``donate_argnums`` are consumed even when the call raises. A function that
    uses ``jax.shard_map`` cannot be checked: checkify itself fails there in jax 0.10 (any
    ``checkify.check``); check the single-device step instead (sharded arrays under ``jit`` work).

    >>> import jax.numpy as jnp
    >>> from jaxgraph.nn import embedding_lookup
    >>> lookup = checked(embedding_lookup)
    >>> lookup(jnp.ones((6, 2)), jnp.array([0, 6]))
    Traceback (most recent call last):
    ...
    jaxgraph.errors.InvalidArgumentError: indices[1] = 6 is not in [0, 6)
    """
    compiled = jax.jit(checkify.checkify(fun, errors=checkify.user_checks), **jit_kwargs)

    @functools.wraps(fun)
    def run(*args: Any, **kwargs: Any) -> Any:
        error, out = compiled(*args, **kwargs)
        text = error.get()
        if text is not None:
            raise InvalidArgumentError(_CHECKIFY_SUFFIX.sub("", text))
        return out

    return run
