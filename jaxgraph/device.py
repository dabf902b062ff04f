"""TF1's ``tf.device`` scopes on JAX: TF device strings resolved to a ``jax.Device``.

``device(spec)`` is ``jax.default_device(parse_device_spec(spec))`` plus TF1's rules for nested
partial specs. Inside the block, arrays created without an explicit placement land on that device:
that includes Variables built there (``Variable.__init__`` converts its initial value with
``jnp.asarray``, which follows ``jax.default_device``), arrays made by ``jnp``/``jax.random`` calls,
and the outputs of jitted functions called there with uncommitted inputs.

Accepted specs (device types are case-insensitive; ``*`` or no index means the first device):

* ``"/cpu:0"``, ``"/gpu:1"``, ``"/GPU:0"``, ``"cpu:0"`` (TF's legacy short forms);
* ``"/device:CPU:0"``, ``"/device:GPU:1"``, ``"/device:TPU:0"``;
* ``"/job:worker/replica:0/task:1/device:GPU:0"``: ``job`` and ``replica`` are accepted and ignored
  (JAX has no jobs); ``task`` selects the devices of that process (``jax.process_index()``), so
  ``/task:1/device:GPU:0`` is process 1's first GPU, as in TF a task's local GPU 0;
* a ``jax.Device``, used as is; ``None`` or ``""`` clears the scope (TF: ``tf.device(None)``).

Nested scopes merge as in TF1: an inner spec's missing fields come from the outer one, so
``device("/task:1")`` then ``device("/gpu:0")`` means ``/task:1/device:GPU:0``.

A device that is not present raises ``ValueError`` listing the devices that are.

Caveat: ``jax.default_device`` places *uncommitted* arrays. A jitted call outside the block with
only uncommitted inputs runs on the default device of that moment (copying them); commit with
``jax.device_put(x, dev)`` where a value must stay put.

>>> import jax, jax.numpy as jnp
>>> from jaxgraph import Variable
>>> with device("/cpu:0") as dev:
...     v = Variable(jnp.zeros(3), name="v")
>>> v.value.devices() == {dev} == {jax.devices("cpu")[0]}
True
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import re
from collections.abc import Iterator
from typing import TypeAlias

import jax

__all__ = ["DeviceLike", "DeviceSpec", "current_device", "device", "parse_device_spec"]

# TF device type -> JAX platform name.
_PLATFORMS = {"CPU": "cpu", "GPU": "gpu", "TPU": "tpu"}

_FORMS = "'/cpu:0', '/gpu:1', '/device:GPU:0', '/job:worker/replica:0/task:0/device:CPU:0'"


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """The parsed parts of a TF device string; ``None`` means unspecified."""

    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    @classmethod
    def from_string(cls, spec: str) -> DeviceSpec:
        """Parse a TF device string.

        >>> DeviceSpec.from_string("/job:worker/replica:0/task:1/device:gpu:0")
        DeviceSpec(job='worker', replica=0, task=1, device_type='GPU', device_index=0)
        >>> DeviceSpec.from_string("/cpu:3").to_string()
        '/device:CPU:3'
        """
        fields: dict[str, object] = {}

        def put(key: str, value: object, part: str) -> None:
            if key in fields:
                raise ValueError(f"Malformed device spec {spec!r}: {key} given twice (at {part!r})")
            fields[key] = value

        def index(text: str, part: str) -> int | None:
            if text == "*":
                return None
            if not re.fullmatch(r"\d+", text):
                raise ValueError(f"Malformed device spec {spec!r}: {text!r} in {part!r} is not an index")
            return int(text)

        for part in spec.strip().split("/"):
            if not part:
                continue
            pieces = part.split(":")
            key = pieces[0].lower()
            if key == "job" and len(pieces) == 2 and re.fullmatch(r"[A-Za-z0-9_.\-]+", pieces[1]):
                put("job", pieces[1], part)
            elif key in ("replica", "task") and len(pieces) == 2:
                put(key, index(pieces[1], part), part)
            elif key == "device" and len(pieces) in (2, 3) and pieces[1]:
                put("device_type", pieces[1].upper(), part)
                put("device_index", index(pieces[2], part) if len(pieces) == 3 else None, part)
            elif key.upper() in _PLATFORMS and len(pieces) in (1, 2):
                put("device_type", key.upper(), part)
                put("device_index", index(pieces[1], part) if len(pieces) == 2 else None, part)
            else:
                raise ValueError(
                    f"Malformed device spec {spec!r}: cannot parse {part!r}; use forms like {_FORMS}"
                )
        return cls(**fields)  # type: ignore[arg-type]

    def merged_into(self, outer: DeviceSpec | None) -> DeviceSpec:
        """TF1's nesting: this spec's fields, falling back to ``outer``'s where unspecified."""
        if outer is None:
            return self
        merged = [
            mine if mine is not None else theirs
            for mine, theirs in zip(_astuple(self), _astuple(outer), strict=True)
        ]
        if self.device_type is not None:
            # A new device type does not inherit the outer index (TF: "/gpu:1" then "/cpu" -> CPU, any).
            merged[4] = self.device_index
        return DeviceSpec(*merged)  # type: ignore[arg-type]

    def to_string(self) -> str:
        parts = []
        if self.job is not None:
            parts.append(f"/job:{self.job}")
        if self.replica is not None:
            parts.append(f"/replica:{self.replica}")
        if self.task is not None:
            parts.append(f"/task:{self.task}")
        if self.device_type is not None:
            idx = "*" if self.device_index is None else self.device_index
            parts.append(f"/device:{self.device_type}:{idx}")
        return "".join(parts)


def _astuple(spec: DeviceSpec) -> tuple:
    return (spec.job, spec.replica, spec.task, spec.device_type, spec.device_index)


def _tf_name(dev: jax.Device) -> str:
    same = [d for d in _platform_devices(dev.platform) if d.process_index == dev.process_index]
    local = same.index(dev) if dev in same else dev.id
    return f"/task:{dev.process_index}/device:{dev.platform.upper()}:{local} ({dev!r})"


def _platform_devices(platform: str) -> list[jax.Device]:
    try:
        return sorted(jax.devices(platform), key=lambda d: d.id)
    except RuntimeError:
        return []


def _present() -> str:
    devices = list(jax.devices())
    if jax.default_backend() != "cpu":
        devices += _platform_devices("cpu")
    return ", ".join(_tf_name(d) for d in devices)


def _resolve(spec: DeviceSpec, text: str) -> jax.Device:
    if spec.device_type is None:
        platform = jax.default_backend()
    elif spec.device_type in _PLATFORMS:
        platform = _PLATFORMS[spec.device_type]
    else:
        raise ValueError(
            f"Device {text!r}: unknown device type {spec.device_type!r} (known: {sorted(_PLATFORMS)}). "
            f"Devices present: {_present()}"
        )
    candidates = _platform_devices(platform)
    if not candidates:
        raise ValueError(
            f"Device {text!r} is not available: no {platform.upper()} devices. Devices present: {_present()}"
        )
    task = jax.process_index() if spec.task is None else spec.task
    candidates = [d for d in candidates if d.process_index == task]
    index = 0 if spec.device_index is None else spec.device_index
    if index >= len(candidates):
        raise ValueError(
            f"Device {text!r} is not available: task {task} has {len(candidates)} {platform.upper()} "
            f"device(s). Devices present: {_present()}"
        )
    return candidates[index]


DeviceLike: TypeAlias = str | jax.Device | None

_scope: contextvars.ContextVar[tuple[DeviceSpec | None, jax.Device | None]] = contextvars.ContextVar(
    "jaxgraph_device_scope", default=(None, None)
)


def parse_device_spec(spec: str | jax.Device) -> jax.Device:
    """The ``jax.Device`` a TF device string (or a ``jax.Device``) names; ``ValueError`` if absent.

    >>> import jax
    >>> parse_device_spec("/job:localhost/replica:0/task:0/device:CPU:0") == jax.devices("cpu")[0]
    True
    """
    if isinstance(spec, jax.Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"A device spec must be a string or a jax.Device, got {type(spec).__name__}")
    return _resolve(DeviceSpec.from_string(spec), spec)


@contextlib.contextmanager
def device(spec: DeviceLike) -> Iterator[jax.Device | None]:
    """``tf.device``: create arrays and Variables inside the block on the device ``spec`` names.

    Maps onto ``jax.default_device``; yields the ``jax.Device`` (``None`` when ``spec`` clears the
    scope). See the module docstring for the accepted forms and the nesting rule.

    >>> import jax, jax.numpy as jnp
    >>> with device("/device:CPU:0"):
    ...     x = jnp.ones(2)
    >>> x.devices() == {jax.devices("cpu")[0]}
    True
    """
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        parsed, dev = None, None
    elif isinstance(spec, jax.Device):
        parsed, dev = None, spec
    elif isinstance(spec, str):
        outer, _ = _scope.get()
        parsed = DeviceSpec.from_string(spec).merged_into(outer)
        dev = _resolve(parsed, spec if outer is None else f"{spec} (in scope {outer.to_string()})")
    else:
        raise TypeError(f"A device spec must be a string, a jax.Device or None, got {type(spec).__name__}")
    token = _scope.set((parsed, dev))
    try:
        with jax.default_device(dev):
            yield dev
    finally:
        _scope.reset(token)


def current_device() -> jax.Device | None:
    """The device of the innermost :func:`device` scope, or ``None`` outside any (or in a cleared one)."""
    return _scope.get()[1]
